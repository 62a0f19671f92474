/* ticket: ticket and action rows, the two status gates, and every statement
 * on the tickets and actions tables the state machine runs. The gates are
 * the only writers of a status: an illegal move is refused, logged and
 * counted (operatord_refused_transitions_total). */
#include <stdio.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

static uint64_t ticket_refused;

uint64_t
ticket_refused_transitions(void)
{
	return ticket_refused;
}

/* ---- tickets ---- */

int
ticket_from_row(struct ticket *t, json_object *row)
{
	memset(t, 0, sizeof(*t));
	if (row == NULL)
		return -1;
	t->row = row;
	t->id = op_json_int(row, "id", 0);
	t->status = tk_status_from(op_json_str(row, "status", NULL));
	t->subject = op_json_str(row, "subject", "");
	t->invariant = op_json_str(row, "invariant", "");
	t->entity = op_json_str(row, "entity", "");
	if (t->id <= 0 || t->status == TK_NONE) {
		log_err("ticket row %lld has status \"%s\"", (long long)t->id,
		    op_json_str(row, "status", "?"));
		ticket_free(t);
		return -1;
	}
	return 0;
}

int
ticket_load(struct ticket *t, int64_t id)
{
	return ticket_from_row(t, ledger_row(od->ledger, "SELECT * FROM tickets WHERE id=?1", "i",
	    id));
}

int
ticket_load_live(struct ticket *t, const char *fp)
{
	return ticket_from_row(t, ledger_row(od->ledger,
	    "SELECT * FROM tickets WHERE fingerprint=?1 AND closed_at IS NULL", "s", fp));
}

int
ticket_load_recent_resolved(struct ticket *t, const char *fp, int64_t since_ms)
{
	return ticket_from_row(t, ledger_row(od->ledger,
	    "SELECT * FROM tickets WHERE fingerprint=?1 AND status='resolved'"
	    " AND closed_at > ?2 ORDER BY closed_at DESC LIMIT 1", "si", fp, since_ms));
}

int64_t
ticket_insert(const char *fp, const char *subject, const char *invariant, const char *entity,
    const char *severity, const char *message, json_object *evidence)
{
	return ledger_insert(od->ledger,
	    "INSERT INTO tickets(fingerprint,subject,invariant,entity,status,severity,message,"
	    "evidence,opened_at,updated_at) VALUES(?1,?2,?3,?4,'open',?5,?6,?7,?8,?8)",
	    "ssssssji", fp, subject, invariant, entity, severity, message, evidence, op_wall_ms());
}

void
ticket_free(struct ticket *t)
{
	json_object_put(t->row);
	memset(t, 0, sizeof(*t));
}

int
ticket_closed(const struct ticket *t)
{
	return tk_status_closed(t->status);
}

int
ticket_set_status(struct ticket *t, enum tk_status to, const char *reason)
{
	int64_t now = op_wall_ms();
	int closed = tk_status_closed(to);

	if (t->status == to)
		return 0;
	if (!tk_transition_legal(t->status, to)) {
		ticket_refused++;
		log_err("ticket %lld: refused transition %s -> %s", (long long)t->id,
		    tk_status_name(t->status), tk_status_name(to));
		return -1;
	}
	/* A new state starts without the old one's deadline; the caller sets
	 * the new one where the state is in flight. */
	if (ledger_exec(od->ledger,
	    "UPDATE tickets SET status=?1, updated_at=?2, reason=COALESCE(?3, reason),"
	    " closed_at=CASE WHEN ?4 THEN ?2 ELSE NULL END, deadline_at=NULL WHERE id=?5",
	    "sisii", tk_status_name(to), now, reason, (int64_t)closed, t->id) != 0)
		return -1;
	t->status = to;
	json_object_object_add(t->row, "status", json_object_new_string(tk_status_name(to)));
	json_object_object_add(t->row, "closed_at", closed ? json_object_new_int64(now) : NULL);
	ha_ticket_changed(t->id); /* [ha] its record follows */
	return 0;
}

int
ticket_reopen(struct ticket *t, int64_t flaps, const char *message, json_object *evidence)
{
	if (ticket_set_status(t, TK_OPEN, NULL) != 0)
		return -1;
	/* A new episode: its remedies are counted afresh (the attempts of the
	 * last one were spent on a fault that was fixed). */
	ledger_exec(od->ledger,
	    "UPDATE tickets SET flaps=?1, healed_at=NULL, attempts=0, occurrences=occurrences+1,"
	    " message=?2, evidence=?3, episode_at=?4 WHERE id=?5", "isjii", flaps, message, evidence,
	    op_wall_ms(), t->id);
	json_object_object_add(t->row, "flaps", json_object_new_int64(flaps));
	json_object_object_add(t->row, "attempts", json_object_new_int64(0));
	return 0;
}

void
ticket_note_violation(struct ticket *t, const char *message, json_object *evidence)
{
	ledger_exec(od->ledger,
	    "UPDATE tickets SET occurrences=occurrences+1, updated_at=?1, message=?2,"
	    " evidence=?3, healed_at=NULL WHERE id=?4", "isji", op_wall_ms(), message, evidence, t->id);
}

/* For the small integer columns operators and the engine flip (held, acked). */
void
ticket_set_int(struct ticket *t, const char *column, int64_t v)
{
	char sql[128];

	/* column is always a literal from this program, never outside input. */
	snprintf(sql, sizeof(sql), "UPDATE tickets SET %s=?1, updated_at=?2 WHERE id=?3", column);
	ledger_exec(od->ledger, sql, "iii", v, op_wall_ms(), t->id);
	json_object_object_add(t->row, column, json_object_new_int64(v));
}

void
ticket_mark_healed(struct ticket *t, int healed)
{
	ticket_set_int(t, "healed_at", healed ? op_wall_ms() : 0);
}

void
ticket_add_attempt(struct ticket *t)
{
	ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1", "i", t->id);
	json_object_object_add(t->row, "attempts",
	    json_object_new_int64(op_json_int(t->row, "attempts", 0) + 1));
}

void
ticket_set_deadline(struct ticket *t, int64_t at_ms)
{
	ledger_exec(od->ledger, "UPDATE tickets SET deadline_at=NULLIF(?1,0) WHERE id=?2", "ii",
	    at_ms, t->id);
}

void
ticket_event(const struct ticket *t, const char *type, json_object *data)
{
	outbox_event(type, t->id, t->subject, t->entity, t->invariant, data);
}

/* Closed tickets of the same subject and invariant, each with what was done
 * and whether verification held: a model (or a human reading the prompt)
 * learns from outcomes, not from earlier guesses. */
json_object *
ticket_history(const struct ticket *t, int max)
{
	json_object *rows = ledger_rows(od->ledger,
	    "SELECT id,entity,status,reason,opened_at,closed_at FROM tickets WHERE subject=?1 AND"
	    " invariant=?2 AND id<>?3 AND status IN ('resolved','escalated','cleared','rejected')"
	    " ORDER BY id DESC LIMIT ?4", "ssii", t->subject, t->invariant, t->id, (int64_t)max);

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *h = json_object_array_get_idx(rows, i);
		int64_t id = op_json_int(h, "id", 0);
		json_object_object_add(h, "actions", ledger_rows(od->ledger,
		    "SELECT name,params,status,error FROM actions WHERE ticket_id=?1 AND status NOT IN"
		    " ('proposed','cancelled') ORDER BY step", "i", id));
		json_object_object_add(h, "verifications", ledger_rows(od->ledger,
		    "SELECT result,figures FROM verifications WHERE ticket_id=?1 ORDER BY id", "i", id));
	}
	return rows;
}

json_object *
ticket_rows_by_status(enum tk_status s)
{
	return ledger_rows(od->ledger, "SELECT * FROM tickets WHERE status=?1 ORDER BY id", "s",
	    tk_status_name(s));
}

json_object *
ticket_live_fingerprints(void)
{
	return ledger_rows(od->ledger, "SELECT subject,invariant,entity FROM tickets"
	    " WHERE closed_at IS NULL", "");
}

json_object *
ticket_rows_past_deadline(int64_t now)
{
	return ledger_rows(od->ledger, "SELECT * FROM tickets WHERE closed_at IS NULL AND"
	    " deadline_at IS NOT NULL AND deadline_at<=?1 ORDER BY id", "i", now);
}

int
ticket_last_verification_ok(int64_t ticket_id)
{
	return ledger_scalar(od->ledger, 0, "SELECT result='success' FROM verifications"
	    " WHERE ticket_id=?1 ORDER BY id DESC LIMIT 1", "i", ticket_id) == 1;
}

/* ---- actions ---- */

int
action_from_row(struct action *a, json_object *row)
{
	memset(a, 0, sizeof(*a));
	if (row == NULL)
		return -1;
	a->row = row;
	a->id = op_json_int(row, "id", 0);
	a->ticket_id = op_json_int(row, "ticket_id", 0);
	a->workflow = op_json_int(row, "workflow", 0);
	a->status = act_status_from(op_json_str(row, "status", NULL));
	a->name = op_json_str(row, "name", "");
	if (a->id <= 0 || a->status == ACT_NONE) {
		log_err("action row %lld has status \"%s\"", (long long)a->id,
		    op_json_str(row, "status", "?"));
		action_free(a);
		return -1;
	}
	return 0;
}

int
action_load(struct action *a, int64_t id)
{
	return action_from_row(a, ledger_row(od->ledger, "SELECT * FROM actions WHERE id=?1", "i",
	    id));
}

void
action_free(struct action *a)
{
	json_object_put(a->row);
	memset(a, 0, sizeof(*a));
}

int
action_set_status(struct action *a, enum act_status to, const char *error)
{
	int final = act_status_kind(to) == ACT_K_FINAL;

	if (a->status == to)
		return 0;
	if (!act_transition_legal(a->status, to)) {
		ticket_refused++;
		log_err("action %lld: refused transition %s -> %s", (long long)a->id,
		    act_status_name(a->status), act_status_name(to));
		return -1;
	}
	if (ledger_exec(od->ledger, "UPDATE actions SET status=?1, error=COALESCE(?2, error),"
	    " finished_at=CASE WHEN ?3 THEN ?4 ELSE finished_at END WHERE id=?5", "ssiii",
	    act_status_name(to), error, (int64_t)final, op_wall_ms(), a->id) != 0)
		return -1;
	a->status = to;
	json_object_object_add(a->row, "status", json_object_new_string(act_status_name(to)));
	ha_ticket_changed(a->ticket_id); /* [ha] its ticket's record follows */
	return 0;
}

/* The part of an event every action transition carries. */
static json_object *
action_data(const struct action *a)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "action_id", json_object_new_int64(a->id));
	json_object_object_add(d, "action", json_object_new_string(a->name));
	json_object_object_add(d, "params", json_object_get(op_json_obj(a->row, "params")));
	json_object_object_add(d, "step", json_object_new_int64(op_json_int(a->row, "step", 0)));
	if (a->workflow > 0)
		json_object_object_add(d, "workflow", json_object_new_int64(a->workflow));
	return d;
}

void
action_event(const struct ticket *t, const struct action *a, const char *type,
    const char *reason, json_object *extra)
{
	json_object *d = action_data(a);

	ha_annotate(d, t->subject); /* [ha] the term it ran under */
	if (reason != NULL)
		json_object_object_add(d, "reason", json_object_new_string(reason));
	if (extra != NULL) {
		json_object_object_foreach(extra, k, v)
			json_object_object_add(d, k, json_object_get(v));
		json_object_put(extra);
	}
	ticket_event(t, type, d);
}

/* The next step still to run: of one workflow, or of the ticket (workflow 0). */
int
action_load_next(struct action *a, int64_t ticket_id, int64_t workflow)
{
	return action_from_row(a, ledger_row(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1"
	    " AND (?2=0 OR workflow=?2) AND status IN ('proposed','scheduled') ORDER BY step LIMIT 1",
	    "ii", ticket_id, workflow));
}

/* The step whose effect a verification judges. */
int
action_load_last_run(struct action *a, int64_t ticket_id)
{
	return action_from_row(a, ledger_row(od->ledger, "SELECT * FROM actions WHERE"
	    " ticket_id=?1 AND status IN ('executed','unknown') ORDER BY step DESC LIMIT 1", "i",
	    ticket_id));
}

/* Cancels what is left of a ticket's plan (or of one workflow when wf > 0). */
int64_t
action_cancel_waiting(const struct ticket *t, int64_t wf, const char *why)
{
	int64_t n = ledger_scalar(od->ledger, 0, "SELECT COUNT(*) FROM actions WHERE ticket_id=?1"
	    " AND status IN " ACT_WAITING_SQL " AND (?2=0 OR workflow=?2)", "ii", t->id, wf);

	ledger_exec(od->ledger, "UPDATE actions SET status='cancelled', finished_at=?1,"
	    " error=COALESCE(error, ?2) WHERE ticket_id=?3 AND status IN " ACT_WAITING_SQL
	    " AND (?4=0 OR workflow=?4)", "isii", op_wall_ms(), why, t->id, wf);
	return n;
}

int64_t
action_max_step(int64_t ticket_id)
{
	return ledger_scalar(od->ledger, 0, "SELECT MAX(step) FROM actions WHERE ticket_id=?1", "i",
	    ticket_id);
}

/* Whether an earlier step of this action's workflow has been verified. */
int
action_workflow_verified(const struct ticket *t, const struct action *a)
{
	return ledger_scalar(od->ledger, 0, "SELECT COUNT(*) FROM verifications v JOIN actions x"
	    " ON x.id=v.action_id WHERE v.ticket_id=?1 AND v.result='success' AND x.workflow=?2",
	    "ii", t->id, a->workflow) > 0;
}

json_object *
action_rows_by_status(enum act_status s)
{
	return ledger_rows(od->ledger, "SELECT * FROM actions WHERE status=?1 ORDER BY id", "s",
	    act_status_name(s));
}

/* Retries, schedules and approvals whose time has come. */
json_object *
action_rows_due(int64_t now)
{
	return ledger_rows(od->ledger, "SELECT * FROM actions WHERE (status='retry_wait' AND"
	    " next_retry_at<=?1) OR (status='scheduled' AND COALESCE(not_before,0)<=?1) OR"
	    " (status='awaiting_approval' AND approval_deadline<=?1) ORDER BY id", "i", now);
}

/* Everything with a go-ahead the kill switch takes back. */
json_object *
action_rows_waiting_for_switch(void)
{
	return ledger_rows(od->ledger, "SELECT * FROM actions WHERE"
	    " status IN ('awaiting_approval','pending','retry_wait') ORDER BY id", "");
}

/* ---- what operators read (control.c, postmortem.c) ---- */

json_object *
ticket_row_json(int64_t id)
{
	return ledger_row(od->ledger, "SELECT * FROM tickets WHERE id=?1", "i", id);
}

/* One ticket with its whole record: diagnoses, actions, verifications, events. */
json_object *
ticket_record_json(int64_t id)
{
	json_object *t = ticket_row_json(id);

	if (t == NULL)
		return NULL;
	json_object_object_add(t, "diagnoses", ledger_rows(od->ledger,
	    "SELECT * FROM diagnoses WHERE ticket_id=?1 ORDER BY id", "i", id));
	json_object_object_add(t, "actions", ledger_rows(od->ledger,
	    "SELECT * FROM actions WHERE ticket_id=?1 ORDER BY step", "i", id));
	json_object_object_add(t, "verifications", ticket_verifications_json(id));
	json_object_object_add(t, "events", ticket_events_json(id));
	return t;
}

json_object *
ticket_list_json(int open_only, int limit)
{
	if (open_only)
		return ledger_rows(od->ledger, "SELECT * FROM tickets WHERE closed_at IS NULL"
		    " ORDER BY id DESC", "");
	return ledger_rows(od->ledger, "SELECT * FROM tickets ORDER BY id DESC LIMIT ?1", "i",
	    (int64_t)limit);
}

json_object *
ticket_counts_json(void)
{
	return ledger_rows(od->ledger,
	    "SELECT status, COUNT(*) AS count FROM tickets GROUP BY status", "");
}

json_object *
ticket_events_json(int64_t id)
{
	return ledger_rows(od->ledger, "SELECT seq,ts,type,data FROM events WHERE ticket=?1"
	    " ORDER BY seq", "i", id);
}

json_object *
ticket_verifications_json(int64_t id)
{
	return ledger_rows(od->ledger, "SELECT * FROM verifications WHERE ticket_id=?1 ORDER BY id",
	    "i", id);
}

/* The latest diagnosis of a ticket, or NULL. */
json_object *
ticket_last_diagnosis_json(int64_t id)
{
	return ledger_row(od->ledger, "SELECT backend,model,agreed,diagnosis FROM diagnoses"
	    " WHERE ticket_id=?1 ORDER BY id DESC LIMIT 1", "i", id);
}

json_object *
action_list_json(int limit)
{
	return ledger_rows(od->ledger, "SELECT * FROM actions ORDER BY id DESC LIMIT ?1", "i",
	    (int64_t)limit);
}

json_object *
action_rows_of_ticket(int64_t ticket_id, int requested_only)
{
	return ledger_rows(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
	    " (?2=0 OR requested_by IS NOT NULL) ORDER BY step", "ii", ticket_id,
	    (int64_t)requested_only);
}
