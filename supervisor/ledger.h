/* ledger: the supervisor's SQLite database (WAL, single writer). Rows come
 * back as json-c objects so they flow to control replies and events as is. */
#ifndef OD_LEDGER_H
#define OD_LEDGER_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#define OD_LEDGER_BUSY_MS 5000 /* wait for a reader's lock before failing */

struct ledger;

int ledger_open(struct ledger **l, const char *path, char *err, size_t errlen);
void ledger_close(struct ledger *l);
int ledger_schema_version(struct ledger *l);

/* Failed statements so far (reads too): an input whose count moved is rolled back. */
uint64_t ledger_errors(struct ledger *l);
/* While on, every statement fails (a BEGIN failed: nothing may autocommit). */
void ledger_refuse(struct ledger *l, int on);
int ledger_refused(struct ledger *l);
int ledger_begin(struct ledger *l);
int ledger_commit(struct ledger *l);
void ledger_rollback(struct ledger *l);
/* One input inside a larger transaction (a burst of worker frames): its
 * statements are released into the transaction, or rolled back alone. */
int ledger_savepoint(struct ledger *l);
int ledger_release(struct ledger *l);
void ledger_rollback_to(struct ledger *l);

/* Runs one statement. binds is a type string, one letter per ?N:
 * 's' const char * (NULL binds NULL), 'i' int64_t, 'j' json_object * (stored
 * as JSON text, NULL binds NULL). Returns 0 or -1 (logged). */
int ledger_exec(struct ledger *l, const char *sql, const char *binds, ...);
/* As ledger_exec, returns the rowid of the inserted row or -1. */
int64_t ledger_insert(struct ledger *l, const char *sql, const char *binds, ...);
/* First column of the first row as int64, or def when there is no row. */
int64_t ledger_scalar(struct ledger *l, int64_t def, const char *sql, const char *binds, ...);
/* Rows as a JSON array of objects keyed by column name; on a read error an
 * empty array, and ledger_errors() moves, so the input is rolled back. Columns whose name
 * ends in a JSON field name (see ledger.c) are parsed back into JSON. */
json_object *ledger_rows(struct ledger *l, const char *sql, const char *binds, ...);
/* First row or NULL. */
json_object *ledger_row(struct ledger *l, const char *sql, const char *binds, ...);

/* settings */
char *ledger_setting(struct ledger *l, const char *key, const char *def); /* malloc'd */
int ledger_set_setting(struct ledger *l, const char *key, const char *value);

/* events: returns the new seq, or -1 */
int64_t ledger_event(struct ledger *l, int64_t ts_ms, const char *type, int64_t ticket,
    const char *subject, const char *entity, const char *invariant, json_object *data);
json_object *ledger_event_json(struct ledger *l, int64_t seq);

#endif
