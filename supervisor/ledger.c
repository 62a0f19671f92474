#include "supervisor/ledger.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

struct ledger {
	sqlite3 *db;
	uint64_t errors;  /* statements that failed, ever: a transaction compares */
	int refuse;       /* a BEGIN failed: no statement may run outside it */
};

uint64_t
ledger_errors(struct ledger *l)
{
	return l->errors;
}

void
ledger_refuse(struct ledger *l, int on)
{
	l->refuse = on;
}

int
ledger_refused(struct ledger *l)
{
	return l->refuse;
}

/* Each entry moves the schema one version up; never edit a released one. */
static const char *const ledger_migrations[] = {
	/* 1 */
	"CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE tickets("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" fingerprint TEXT NOT NULL, subject TEXT NOT NULL, invariant TEXT NOT NULL,"
	" entity TEXT NOT NULL, status TEXT NOT NULL, severity TEXT NOT NULL DEFAULT 'warning',"
	" message TEXT NOT NULL DEFAULT '', evidence TEXT,"
	" opened_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, closed_at INTEGER,"
	" occurrences INTEGER NOT NULL DEFAULT 1, flaps INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0,"
	" acked INTEGER NOT NULL DEFAULT 0, reason TEXT);"
	"CREATE UNIQUE INDEX tickets_live ON tickets(fingerprint)"
	" WHERE closed_at IS NULL;"
	"CREATE INDEX tickets_status ON tickets(status);"
	"CREATE TABLE diagnoses("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id INTEGER NOT NULL REFERENCES tickets(id),"
	" created_at INTEGER NOT NULL, backend TEXT NOT NULL, model TEXT,"
	" agreed INTEGER, tokens_in INTEGER NOT NULL DEFAULT 0,"
	" tokens_out INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,"
	" diagnosis TEXT NOT NULL);"
	"CREATE INDEX diagnoses_ticket ON diagnoses(ticket_id);"
	"CREATE TABLE actions("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id INTEGER NOT NULL REFERENCES tickets(id),"
	" step INTEGER NOT NULL, subject TEXT NOT NULL, name TEXT NOT NULL, params TEXT NOT NULL,"
	" reason TEXT, risk TEXT, status TEXT NOT NULL,"
	" created_at INTEGER NOT NULL, not_before INTEGER, dispatched_at INTEGER,"
	" finished_at INTEGER, result TEXT, error TEXT, decided_by TEXT);"
	"CREATE INDEX actions_ticket ON actions(ticket_id);"
	"CREATE INDEX actions_status ON actions(status);"
	"CREATE TABLE verifications("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id INTEGER NOT NULL REFERENCES tickets(id),"
	" action_id INTEGER REFERENCES actions(id), started_at INTEGER, finished_at INTEGER NOT NULL,"
	" result TEXT NOT NULL, figures TEXT);"
	"CREATE TABLE events("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, type TEXT NOT NULL,"
	" ticket INTEGER, subject TEXT, entity TEXT, invariant TEXT, data TEXT);"
	"CREATE INDEX events_ticket ON events(ticket);"
	"CREATE TABLE faults("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, fault TEXT NOT NULL, subject TEXT NOT NULL,"
	" target TEXT, params TEXT, started_at INTEGER NOT NULL, ttl_ms INTEGER,"
	" ended_at INTEGER, undo TEXT, status TEXT NOT NULL);",
	/* 2: an action may need a human even in execute mode (a model's plan the
	 * offline rules disagree with, a risk tier). */
	"ALTER TABLE actions ADD COLUMN needs_approval INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE actions ADD COLUMN approval_reason TEXT;",
	/* 3: acting safely at depth. Retries, approval deadlines, workflows and
	 * budgets live in rows so that any restart resumes them; levels and
	 * token buckets persist so a restart never refills a spent budget. */
	"ALTER TABLE actions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE actions ADD COLUMN max_attempts INTEGER;"
	"ALTER TABLE actions ADD COLUMN next_retry_at INTEGER;"
	"ALTER TABLE actions ADD COLUMN approval_deadline INTEGER;"
	"ALTER TABLE actions ADD COLUMN requested_by TEXT;"
	"ALTER TABLE actions ADD COLUMN workflow INTEGER;"
	"ALTER TABLE actions ADD COLUMN level TEXT;"
	"ALTER TABLE actions ADD COLUMN charged_at INTEGER;"
	"ALTER TABLE actions ADD COLUMN budget TEXT;"
	"ALTER TABLE actions ADD COLUMN applied TEXT;"
	"ALTER TABLE actions ADD COLUMN target TEXT;"
	"CREATE INDEX actions_due ON actions(status, next_retry_at);"
	"ALTER TABLE tickets ADD COLUMN held_by TEXT;"
	"ALTER TABLE tickets ADD COLUMN acked_by TEXT;"
	"ALTER TABLE tickets ADD COLUMN acked_at INTEGER;"
	"ALTER TABLE tickets ADD COLUMN healed_at INTEGER;"
	"ALTER TABLE tickets ADD COLUMN resolved_by TEXT;"
	"CREATE TABLE budgets(scope TEXT PRIMARY KEY, milli INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL);"
	"CREATE TABLE action_levels(subject TEXT NOT NULL, action TEXT NOT NULL,"
	" level TEXT NOT NULL, successes INTEGER NOT NULL DEFAULT 0,"
	" failures INTEGER NOT NULL DEFAULT 0, changed_at INTEGER, changed_by TEXT,"
	" PRIMARY KEY(subject, action));",
	/* 4: every in-flight state has a deadline, so a lost frame never strands
	 * a ticket; a reopened ticket starts a new episode. */
	"ALTER TABLE tickets ADD COLUMN deadline_at INTEGER;"
	"ALTER TABLE tickets ADD COLUMN episode_at INTEGER;"
	"CREATE INDEX tickets_deadline ON tickets(deadline_at) WHERE deadline_at IS NOT NULL;",
	/* 5: [ha] the term an action was dispatched under (supervisor/ha.c). */
	"ALTER TABLE actions ADD COLUMN term INTEGER;",
};

/* Columns holding JSON text; rows() parses them back. */
static const char *const ledger_json_cols[] = {
	"evidence", "diagnosis", "params", "result", "figures", "data", "undo", "budget",
};

static int
ledger_is_json_col(const char *name)
{
	for (size_t i = 0; i < OP_ARRAY_LEN(ledger_json_cols); i++)
		if (strcmp(name, ledger_json_cols[i]) == 0)
			return 1;
	return 0;
}

static int
ledger_migrate(struct ledger *l, char *err, size_t errlen)
{
	int version = ledger_schema_version(l);
	int target = (int)OP_ARRAY_LEN(ledger_migrations);

	if (version > target) {
		snprintf(err, errlen, "ledger schema %d is newer than this operatord (%d)", version,
		    target);
		return -1;
	}
	for (int v = version; v < target; v++) {
		char *emsg = NULL;
		char pragma[64];
		if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, &emsg) != SQLITE_OK ||
		    sqlite3_exec(l->db, ledger_migrations[v], NULL, NULL, &emsg) != SQLITE_OK) {
			snprintf(err, errlen, "migration to schema %d: %s", v + 1,
			    emsg ? emsg : "failed");
			sqlite3_free(emsg);
			sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", v + 1);
		sqlite3_exec(l->db, pragma, NULL, NULL, NULL);
		if (sqlite3_exec(l->db, "COMMIT", NULL, NULL, &emsg) != SQLITE_OK) {
			snprintf(err, errlen, "migration commit: %s", emsg ? emsg : "failed");
			sqlite3_free(emsg);
			return -1;
		}
	}
	return 0;
}

int
ledger_open(struct ledger **out, const char *path, char *err, size_t errlen)
{
	struct ledger *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
		SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, l->db ? sqlite3_errmsg(l->db) : "cannot open");
		ledger_close(l);
		return -1;
	}
	sqlite3_busy_timeout(l->db, OD_LEDGER_BUSY_MS);
	/* WAL lets opsend-side readers never block the writer; synchronous=FULL
	 * because a ticket transition must survive power loss once committed. */
	if (sqlite3_exec(l->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		"PRAGMA foreign_keys=ON;", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(l->db));
		ledger_close(l);
		return -1;
	}
	if (ledger_migrate(l, err, errlen) != 0) {
		ledger_close(l);
		return -1;
	}
	*out = l;
	return 0;
}

void
ledger_close(struct ledger *l)
{
	if (l == NULL)
		return;
	sqlite3_close(l->db);
	free(l);
}

int
ledger_schema_version(struct ledger *l)
{
	sqlite3_stmt *st;
	int v = 0;

	if (sqlite3_prepare_v2(l->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	return v;
}

static int
ledger_simple(struct ledger *l, const char *sql)
{
	char *emsg = NULL;

	if (sqlite3_exec(l->db, sql, NULL, NULL, &emsg) != SQLITE_OK) {
		log_err("%s: %s", sql, emsg ? emsg : "failed");
		sqlite3_free(emsg);
		l->errors++;
		return -1;
	}
	return 0;
}

int
ledger_begin(struct ledger *l)
{
	return ledger_simple(l, "BEGIN IMMEDIATE");
}

int
ledger_commit(struct ledger *l)
{
	return ledger_simple(l, "COMMIT");
}

void
ledger_rollback(struct ledger *l)
{
	if (!sqlite3_get_autocommit(l->db))
		ledger_simple(l, "ROLLBACK");
}

/* Savepoints exist only inside a transaction: outside one, SAVEPOINT would
 * start its own, which autocommits on RELEASE. */
int
ledger_savepoint(struct ledger *l)
{
	if (l->refuse || sqlite3_get_autocommit(l->db)) {
		l->errors++;
		return -1;
	}
	return ledger_simple(l, "SAVEPOINT input");
}

int
ledger_release(struct ledger *l)
{
	return ledger_simple(l, "RELEASE input");
}

void
ledger_rollback_to(struct ledger *l)
{
	if (ledger_simple(l, "ROLLBACK TO input") == 0)
		ledger_simple(l, "RELEASE input");
}

static sqlite3_stmt *
ledger_prepare(struct ledger *l, const char *sql, const char *binds, va_list ap)
{
	sqlite3_stmt *st;

	if (l->refuse) {
		/* Autocommit would make each statement of the input its own
		 * transaction: half an input could be recorded. */
		l->errors++;
		return NULL;
	}
	if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("prepare \"%s\": %s", sql, sqlite3_errmsg(l->db));
		l->errors++;
		return NULL;
	}
	for (int i = 0; binds != NULL && binds[i] != '\0'; i++) {
		int idx = i + 1;
		switch (binds[i]) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (s)
				sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(st, idx);
			break;
		}
		case 'i':
			sqlite3_bind_int64(st, idx, va_arg(ap, int64_t));
			break;
		case 'j': {
			json_object *o = va_arg(ap, json_object *);
			if (o)
				sqlite3_bind_text(st, idx, json_object_to_json_string_ext(o,
				    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), -1,
				    SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(st, idx);
			break;
		}
		default:
			log_err("bad bind type '%c' for \"%s\"", binds[i], sql);
			sqlite3_finalize(st);
			l->errors++;
			return NULL;
		}
	}
	return st;
}

static int
ledger_step_done(struct ledger *l, sqlite3_stmt *st, const char *sql)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_err("\"%s\": %s", sql, sqlite3_errmsg(l->db));
		l->errors++;
		return -1;
	}
	return 0;
}

int
ledger_exec(struct ledger *l, const char *sql, const char *binds, ...)
{
	va_list ap;
	sqlite3_stmt *st;
	int rc;

	va_start(ap, binds);
	st = ledger_prepare(l, sql, binds, ap);
	va_end(ap);
	if (st == NULL)
		return -1;
	rc = ledger_step_done(l, st, sql);
	sqlite3_finalize(st);
	return rc;
}

int64_t
ledger_insert(struct ledger *l, const char *sql, const char *binds, ...)
{
	va_list ap;
	sqlite3_stmt *st;
	int rc;

	va_start(ap, binds);
	st = ledger_prepare(l, sql, binds, ap);
	va_end(ap);
	if (st == NULL)
		return -1;
	rc = ledger_step_done(l, st, sql);
	sqlite3_finalize(st);
	return rc == 0 ? sqlite3_last_insert_rowid(l->db) : -1;
}

int64_t
ledger_scalar(struct ledger *l, int64_t def, const char *sql, const char *binds, ...)
{
	va_list ap;
	sqlite3_stmt *st;
	int64_t v = def;

	va_start(ap, binds);
	st = ledger_prepare(l, sql, binds, ap);
	va_end(ap);
	if (st == NULL)
		return def;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_err("\"%s\": %s", sql, sqlite3_errmsg(l->db));
		l->errors++;
	}
	sqlite3_finalize(st);
	return v;
}

static json_object *
ledger_column(sqlite3_stmt *st, int i)
{
	const char *name = sqlite3_column_name(st, i);

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return json_object_new_int64(sqlite3_column_int64(st, i));
	case SQLITE_FLOAT:
		return json_object_new_double(sqlite3_column_double(st, i));
	case SQLITE_TEXT: {
		const char *txt = (const char *)sqlite3_column_text(st, i);
		int len = sqlite3_column_bytes(st, i);
		if (ledger_is_json_col(name)) {
			char err[128];
			json_object *o = op_json_parse(txt, (size_t)len, err, sizeof(err));
			if (o != NULL)
				return o;
		}
		return json_object_new_string_len(txt, len);
	}
	default:
		return NULL;
	}
}

static json_object *
ledger_vrows(struct ledger *l, int max, const char *sql, const char *binds, va_list ap)
{
	sqlite3_stmt *st = ledger_prepare(l, sql, binds, ap);
	json_object *arr;
	int rc = SQLITE_DONE;

	if (st == NULL)
		return NULL;
	arr = json_object_new_array();
	while ((max < 0 || (int)json_object_array_length(arr) < max) &&
	    (rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_object *row = json_object_new_object();
		int n = sqlite3_column_count(st);
		for (int i = 0; i < n; i++)
			json_object_object_add(row, sqlite3_column_name(st, i), ledger_column(st, i));
		json_object_array_add(arr, row);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		/* A partial answer must not pass for the whole truth (recovery reads this). */
		log_err("\"%s\": %s", sql, sqlite3_errmsg(l->db));
		l->errors++;
		sqlite3_finalize(st);
		json_object_put(arr);
		return NULL;
	}
	sqlite3_finalize(st);
	return arr;
}

json_object *
ledger_rows(struct ledger *l, const char *sql, const char *binds, ...)
{
	va_list ap;
	json_object *r;

	va_start(ap, binds);
	r = ledger_vrows(l, -1, sql, binds, ap);
	va_end(ap);
	return r ? r : json_object_new_array();
}

json_object *
ledger_row(struct ledger *l, const char *sql, const char *binds, ...)
{
	va_list ap;
	json_object *r, *row = NULL;

	va_start(ap, binds);
	r = ledger_vrows(l, 1, sql, binds, ap);
	va_end(ap);
	if (r != NULL && json_object_array_length(r) == 1)
		row = json_object_get(json_object_array_get_idx(r, 0));
	json_object_put(r);
	return row;
}

char *
ledger_setting(struct ledger *l, const char *key, const char *def)
{
	json_object *row = ledger_row(l, "SELECT value FROM settings WHERE key=?1", "s", key);
	char *v = strdup(row ? op_json_str(row, "value", def) : def);

	json_object_put(row);
	return v;
}

int
ledger_set_setting(struct ledger *l, const char *key, const char *value)
{
	return ledger_exec(l,
	    "INSERT INTO settings(key,value) VALUES(?1,?2)"
	    " ON CONFLICT(key) DO UPDATE SET value=excluded.value", "ss", key, value);
}

int64_t
ledger_event(struct ledger *l, int64_t ts_ms, const char *type, int64_t ticket,
    const char *subject, const char *entity, const char *invariant, json_object *data)
{
	return ledger_insert(l,
	    "INSERT INTO events(ts,type,ticket,subject,entity,invariant,data)"
	    " VALUES(?1,?2,NULLIF(?3,0),?4,?5,?6,?7)", "isisssj", ts_ms, type, ticket, subject,
	    entity, invariant, data);
}

json_object *
ledger_event_json(struct ledger *l, int64_t seq)
{
	return ledger_row(l,
	    "SELECT seq,ts,type,ticket,subject,entity,invariant,data FROM events WHERE seq=?1",
	    "i", seq);
}
