/* opdash: the live terminal dashboard. A client of a running operatord
 * through the control socket and the event stream only (what opsend and
 * optail read), never the ledger or the subjects.
 *
 *   opdash_model.c     the state the panels show, built from events, status
 *                      and observations (dm_)
 *   opdash_chapters.c  the chapter file of a demo: parser and event matching (chap_)
 *   opdash_layout.c    renders a frame into a character grid, no terminal (lay_)
 *   opdash_conn.c      non-blocking frame reading on the two sockets (conn_)
 *   opdash.c           options, ncurses, the poll loop, keys, running chapters
 */
#ifndef OP_OPDASH_H
#define OP_OPDASH_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "protocol/msg.h"

/* ---- opdash_model.c ---- */

#define DM_MAX_TICKETS 48        /* tickets kept; the oldest closed one goes first */
#define DM_MAX_FAULTS 16         /* injected faults kept */
#define DM_MAX_STEPS 14          /* agent steps kept per ticket */
#define DM_TEXT 240              /* bytes of one line of text (a cause, a figure) */

/* One line of the Agent panel: what the agent did for a ticket, in order. */
#define DM_STEP_KINDS(X)                                                       \
	X(DM_STEP_DIAGNOSIS, "diagnosis")                                      \
	X(DM_STEP_PROPOSED, "proposed")                                        \
	X(DM_STEP_AWAITING, "awaiting approval")                               \
	X(DM_STEP_APPROVED, "approved")                                        \
	X(DM_STEP_REJECTED, "rejected")                                        \
	X(DM_STEP_SKIPPED, "skipped")                                          \
	X(DM_STEP_ACTION, "action")                                            \
	X(DM_STEP_FAILED, "action failed")                                     \
	X(DM_STEP_VERIFY, "verification")                                      \
	X(DM_STEP_END, "end")

enum dm_step_kind {
#define DM_STEP_ENUM(e, name) e,
	DM_STEP_KINDS(DM_STEP_ENUM)
#undef DM_STEP_ENUM
	DM_STEP_COUNT
};

struct dm_step {
	enum dm_step_kind kind;
	int64_t ts_ms;
	char word[24];           /* the result word: success, failure, resolved, ... */
	char text[DM_TEXT];
};

struct dm_ticket {
	int64_t id;
	char subject[32], invariant[48], entity[64], severity[16], status[24];
	char message[DM_TEXT];
	int64_t opened_ms, closed_ms, last_ms;
	int64_t t0_ms;           /* the fault's start when one caused it, else opened_ms */
	char fault[32];          /* that fault's name, or "" */
	int64_t executed_ms;     /* last action_executed, 0 if none since the last verification */
	int64_t awaiting_action; /* an action id waiting for approval, or 0 */
	char awaiting_desc[DM_TEXT];
	int actions;             /* actions executed */
	int nsteps;
	struct dm_step steps[DM_MAX_STEPS];
};

struct dm_fault {
	int64_t id, started_ms, ended_ms;
	char fault[32], subject[32], target[64];
};

struct dm_state {
	int connected;
	char conn_error[160];
	/* from status */
	int have_status;
	char version[24], mode[16];
	int kill_switch, workers_ready, workers_total, tickets_open;
	char budgets[160];
	/* from observe */
	char subject[32];
	json_object *obs;        /* the last observation (owned), or NULL */
	int64_t obs_ms;
	char obs_error[160];
	/* from events */
	int64_t last_seq;
	int nt, nf;
	struct dm_ticket t[DM_MAX_TICKETS];
	struct dm_fault f[DM_MAX_FAULTS];
};

const char *dm_step_name(enum dm_step_kind k);
void dm_init(struct dm_state *d);
void dm_free(struct dm_state *d);
/* Forgets tickets, faults and last_seq (the daemon came back with another ledger). */
void dm_reset_events(struct dm_state *d);
/* Applies one event row ({seq, ts, type, ticket, subject, entity, invariant, data};
 * ts as RFC 3339 or ms). Events at or below last_seq are ignored. */
void dm_apply_event(struct dm_state *d, json_object *ev);
void dm_apply_status(struct dm_state *d, json_object *st);
/* Takes a reference to obs (NULL with err on failure). */
void dm_apply_observe(struct dm_state *d, const char *subject, json_object *obs, const char *err);
struct dm_ticket *dm_ticket(struct dm_state *d, int64_t id);
int dm_critical_open(const struct dm_state *d);
int dm_ticket_closed(const struct dm_ticket *t);
/* "+3.6s" since the ticket's t0 into buf. */
void dm_fmt_since(char *buf, size_t len, int64_t t0_ms, int64_t ts_ms);

/* ---- opdash_chapters.c ---- */

#define CHAP_MAX 32              /* chapters in one file */
#define CHAP_MAX_DO 4            /* control commands on entering one chapter */
#define CHAP_MAX_FILTERS 4       /* key=value filters of one wait */
#define CHAP_NARRATION 2048      /* bytes of narration per chapter */
#define CHAP_DEFAULT_TIMEOUT_MS 180000 /* a wait longer than this unblocks the chapter */

struct chap_match {
	char types[160];         /* event types separated by '|' */
	int nfilters;
	char key[CHAP_MAX_FILTERS][32];
	char val[CHAP_MAX_FILTERS][64]; /* "$target": the target of this chapter's fault */
};

struct chap {
	char title[96];
	char narration[CHAP_NARRATION];
	int ndo;
	char do_cmd[CHAP_MAX_DO][256];
	int has_wait;
	struct chap_match wait;
	int auto_advance;
	int64_t timeout_ms;
};

struct chap_book {
	char subject[32];        /* "subject:" line, or "" */
	int n;
	struct chap c[CHAP_MAX];
};

/* Parses chapter text; -1 with "line N: why" in err. */
int chap_parse(const char *text, struct chap_book *b, char *err, size_t errlen);
int chap_load(const char *path, struct chap_book *b, char *err, size_t errlen);
/* Does the event satisfy the wait? target replaces "$target" ("" if unknown). */
int chap_event_matches(const struct chap_match *m, json_object *ev, const char *target);
/* "ticket_resolved invariant=counter_drift" back as text. */
void chap_match_describe(const struct chap_match *m, char *buf, size_t len);
/* Splits a control command into its name and a JSON array of arguments;
 * -1 with err when it is empty or a quote is not closed. */
int chap_split_cmd(const char *line, char *cmd, size_t cmdlen, json_object **args, char *err,
    size_t errlen);

/* ---- opdash_layout.c ---- */

#define LAY_MIN_W 100            /* columns: below this only a message is drawn */
#define LAY_MIN_H 30             /* rows */

enum lay_color {
	LAY_DEFAULT = 0, LAY_RED, LAY_GREEN, LAY_YELLOW, LAY_BLUE, LAY_MAGENTA, LAY_CYAN, LAY_DIM,
	LAY_NCOLORS
};

#define LAY_BOLD 0x1
#define LAY_REVERSE 0x2
#define LAY_LINE 0x4             /* a border character: drawn with line graphics on a terminal */

struct lay_cell {
	char ch;
	uint8_t color, attr;
};

struct lay_grid {
	int w, h;
	struct lay_cell *c;
};

/* What a frame shows besides the model. */
struct lay_view {
	const struct dm_state *dm;
	const struct chap_book *book; /* NULL: no chapters */
	int chap_cur;                 /* 0-based */
	const char *chap_state;       /* "running: waiting for ...", "done", ... */
	int64_t now_ms;
	int64_t selected;             /* selected ticket id, 0 for none */
	const char *message;          /* bottom line: a prompt, an error, a hint */
};

int lay_grid_init(struct lay_grid *g, int w, int h);
void lay_grid_free(struct lay_grid *g);
void lay_render(struct lay_grid *g, const struct lay_view *v);
/* The grid as plain text, one line per row, trailing blanks trimmed. */
void lay_grid_print(const struct lay_grid *g, FILE *out);
/* Row y as text (trailing blanks trimmed) into buf. */
void lay_grid_row(const struct lay_grid *g, int y, char *buf, size_t len);
/* Tickets the Agent panel shows, in its order (for selection keys). */
int lay_agent_order(const struct dm_state *d, int64_t *ids, int max);

/* ---- opdash_conn.c ---- */

#define CONN_READ_CHUNK 65536    /* bytes read per readable socket */

struct conn_reader {
	uint8_t *buf;
	size_t len, cap;
};

void conn_reader_free(struct conn_reader *r);
/* Reads what is there (after poll said readable); -1 with err on EOF or error. */
int conn_reader_fill(struct conn_reader *r, int fd, char *err, size_t errlen);
/* 1 with *m set, 0 when a whole frame is not there yet, -1 on a bad frame. */
int conn_reader_next(struct conn_reader *r, struct op_msg *m, char *err, size_t errlen);
/* Sends {cmd, args} as a request with this id (args is consumed). */
int conn_send(int fd, uint64_t id, const char *cmd, json_object *args, char *err, size_t errlen);

#endif
