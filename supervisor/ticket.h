/* ticket: the ticket and action state machines of DESIGN §4 and every
 * statement that reads or writes a ticket or an action row.
 *
 * States are enums with name tables (the X-macro style of protocol/msg.h).
 * One transition table per machine says which moves are legal;
 * ticket_set_status() and action_set_status() are the only writers of a
 * status and refuse anything else (logged, counted in /metrics). */
#ifndef OD_TICKET_H
#define OD_TICKET_H

#include <json-c/json.h>
#include <stdint.h>

/* X(enum, name, closed): a closed ticket has closed_at set; only a resolved
 * one can come back (a recurrence within the flap window reopens it). */
#define TK_STATUSES(X)                                      \
	X(TK_OPEN, "open", 0)                               \
	X(TK_DIAGNOSING, "diagnosing", 0)                   \
	X(TK_DIAGNOSED, "diagnosed", 0)                     \
	X(TK_AWAITING_APPROVAL, "awaiting_approval", 0)     \
	X(TK_ACTING, "acting", 0)                           \
	X(TK_RETRY_WAIT, "retry_wait", 0)                   \
	X(TK_VERIFYING, "verifying", 0)                     \
	X(TK_ESCALATED, "escalated", 0)                     \
	X(TK_RESOLVED, "resolved", 1)                       \
	X(TK_CLEARED, "cleared", 1)                         \
	X(TK_REJECTED, "rejected", 1)

enum tk_status {
	TK_NONE = -1, /* not a ticket status (an unknown string) */
#define TK_ENUM(e, name, closed) e,
	TK_STATUSES(TK_ENUM)
#undef TK_ENUM
	TK_NSTATUS
};

/* X(enum, name, kind): waiting = cleared or proposed but not yet handed to
 * the executor (a closing ticket cancels it); flight = in the executor's
 * hands; final = nothing more happens to it. */
#define ACT_STATUSES(X)                                     \
	X(ACT_PROPOSED, "proposed", ACT_K_WAITING)          \
	X(ACT_SCHEDULED, "scheduled", ACT_K_WAITING)        \
	X(ACT_AWAITING_APPROVAL, "awaiting_approval", ACT_K_WAITING) \
	X(ACT_PENDING, "pending", ACT_K_WAITING)            \
	X(ACT_RETRY_WAIT, "retry_wait", ACT_K_WAITING)      \
	X(ACT_DISPATCHED, "dispatched", ACT_K_FLIGHT)       \
	X(ACT_UNKNOWN, "unknown", ACT_K_FLIGHT)             \
	X(ACT_EXECUTED, "executed", ACT_K_FINAL)            \
	X(ACT_FAILED, "failed", ACT_K_FINAL)                \
	X(ACT_SKIPPED, "skipped", ACT_K_FINAL)              \
	X(ACT_CANCELLED, "cancelled", ACT_K_FINAL)          \
	X(ACT_REJECTED, "rejected", ACT_K_FINAL)            \
	X(ACT_EXPIRED, "expired", ACT_K_FINAL)              \
	X(ACT_SHADOWED, "shadowed", ACT_K_FINAL)            \
	X(ACT_UNDONE, "undone", ACT_K_FINAL)

enum act_kind { ACT_K_WAITING, ACT_K_FLIGHT, ACT_K_FINAL };

enum act_status {
	ACT_NONE = -1,
#define ACT_ENUM(e, name, kind) e,
	ACT_STATUSES(ACT_ENUM)
#undef ACT_ENUM
	ACT_NSTATUS
};

/* The SQL list of waiting statuses, for statements (kept beside the table). */
#define ACT_WAITING_SQL "('proposed','scheduled','awaiting_approval','pending','retry_wait')"

/* One ticket row: the core fields typed, the JSON row for the rest. */
struct ticket {
	json_object *row;     /* owned */
	int64_t id;
	enum tk_status status;
	const char *subject, *invariant, *entity; /* point into row */
};

struct action {
	json_object *row;     /* owned */
	int64_t id, ticket_id, workflow;
	enum act_status status;
	const char *name;     /* points into row */
};

/* ticket_state.c: the pure part (no ledger), walked by tests/check_ticket.c */
const char *tk_status_name(enum tk_status s);
enum tk_status tk_status_from(const char *name);
int tk_status_closed(enum tk_status s);
int tk_transition_legal(enum tk_status from, enum tk_status to);
const char *act_status_name(enum act_status s);
enum act_status act_status_from(const char *name);
enum act_kind act_status_kind(enum act_status s);
int act_transition_legal(enum act_status from, enum act_status to);

/* ticket.c: rows, the two gates, and the ticket and action SQL */
uint64_t ticket_refused_transitions(void);
int ticket_from_row(struct ticket *t, json_object *row); /* takes the row; -1 if not a ticket */
int ticket_load(struct ticket *t, int64_t id);           /* -1: none (t zeroed) */
int ticket_load_live(struct ticket *t, const char *fingerprint);
int ticket_load_recent_resolved(struct ticket *t, const char *fingerprint, int64_t since_ms);
int64_t ticket_insert(const char *fingerprint, const char *subject, const char *invariant,
    const char *entity, const char *severity, const char *message, json_object *evidence);
void ticket_free(struct ticket *t);
int ticket_closed(const struct ticket *t);
/* The only writer of tickets.status: -1 (and nothing written) when illegal. */
int ticket_set_status(struct ticket *t, enum tk_status to, const char *reason);
/* Opens a resolved ticket again for a new episode (a flap): attempts start fresh. */
int ticket_reopen(struct ticket *t, int64_t flaps, const char *message, json_object *evidence);
void ticket_note_violation(struct ticket *t, const char *message, json_object *evidence);
void ticket_set_int(struct ticket *t, const char *column, int64_t v);
void ticket_mark_healed(struct ticket *t, int healed);
void ticket_add_attempt(struct ticket *t);
/* Deadline of the in-flight state (0: none), so a lost frame never strands it. */
void ticket_set_deadline(struct ticket *t, int64_t at_ms);
void ticket_event(const struct ticket *t, const char *type, json_object *data);
json_object *ticket_history(const struct ticket *t, int max);
json_object *ticket_rows_by_status(enum tk_status s);
json_object *ticket_live_fingerprints(void);
json_object *ticket_rows_past_deadline(int64_t now);
int ticket_last_verification_ok(int64_t ticket_id);

int action_from_row(struct action *a, json_object *row); /* takes the row */
int action_load(struct action *a, int64_t id);
void action_free(struct action *a);
/* The only writer of actions.status: -1 (and nothing written) when illegal. */
int action_set_status(struct action *a, enum act_status to, const char *error);
void action_event(const struct ticket *t, const struct action *a, const char *type,
    const char *reason, json_object *extra);
int action_load_next(struct action *a, int64_t ticket_id, int64_t workflow);
int action_load_last_run(struct action *a, int64_t ticket_id);
int64_t action_cancel_waiting(const struct ticket *t, int64_t workflow, const char *why);
int64_t action_max_step(int64_t ticket_id);
int action_workflow_verified(const struct ticket *t, const struct action *a);
json_object *action_rows_by_status(enum act_status s);
json_object *action_rows_due(int64_t now);
json_object *action_rows_waiting_for_switch(void);

/* ticket.c: what operators read (control.c, postmortem.c) */
json_object *ticket_row_json(int64_t id);
json_object *ticket_record_json(int64_t id);
json_object *ticket_list_json(int open_only, int limit);
json_object *ticket_counts_json(void);
json_object *ticket_events_json(int64_t id);
json_object *ticket_verifications_json(int64_t id);
json_object *ticket_last_diagnosis_json(int64_t id);
json_object *action_list_json(int limit);
json_object *action_rows_of_ticket(int64_t ticket_id, int requested_only);

#endif
