/* dispatch: the ticket state machine of DESIGN §4 and the acting-safely rules
 * of §7. Every input from a worker, a control client or the timer is handled
 * inside one ledger transaction; what it sends goes out through the outbox
 * only after the commit. Everything that waits (an approval, a retry, a
 * schedule, the next step of a workflow) waits in a ledger row, so a restart
 * resumes it and never runs an action twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/od.h"

/* Action states that still wait for something; a closing ticket cancels them. */
#define A_WAITING "('proposed','awaiting_approval','pending','retry_wait','scheduled')"

static void dispatch_advance(json_object *t);
static void dispatch_start_diagnosis(json_object *t);
static void send_verify(json_object *t, json_object *a, int64_t executed_at);

static json_object *
ticket_get(int64_t id)
{
	return ledger_row(od->ledger, "SELECT * FROM tickets WHERE id=?1", "i", id);
}

static json_object *
ticket_live(const char *fp)
{
	return ledger_row(od->ledger,
	    "SELECT * FROM tickets WHERE fingerprint=?1 AND closed_at IS NULL", "s", fp);
}

static json_object *
action_get(int64_t id)
{
	return ledger_row(od->ledger, "SELECT * FROM actions WHERE id=?1", "i", id);
}

#define T_ID(t) op_json_int((t), "id", 0)
#define T_STR(t, k) op_json_str((t), (k), "")
#define A_ID(a) op_json_int((a), "id", 0)

static int
ticket_closed(json_object *t)
{
	return op_json_int(t, "closed_at", 0) > 0;
}

static void
ticket_set_status(json_object *t, const char *status, const char *reason)
{
	int closed = !strcmp(status, "resolved") || !strcmp(status, "cleared") ||
	    !strcmp(status, "rejected");
	int64_t now = op_wall_ms();

	ledger_exec(od->ledger,
	    "UPDATE tickets SET status=?1, updated_at=?2, reason=COALESCE(?3, reason),"
	    " closed_at=CASE WHEN ?4 THEN ?2 ELSE NULL END WHERE id=?5",
	    "sisii", status, now, reason, (int64_t)closed, T_ID(t));
	json_object_object_add(t, "status", json_object_new_string(status));
	if (closed)
		json_object_object_add(t, "closed_at", json_object_new_int64(now));
}

static void
ticket_event(json_object *t, const char *type, json_object *data)
{
	outbox_event(type, T_ID(t), T_STR(t, "subject"), T_STR(t, "entity"),
	    T_STR(t, "invariant"), data);
}

/* The part of an event every action transition carries. */
static json_object *
action_data(json_object *a)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "action_id", json_object_new_int64(A_ID(a)));
	json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
	json_object_object_add(d, "params", json_object_get(op_json_obj(a, "params")));
	json_object_object_add(d, "step", json_object_new_int64(op_json_int(a, "step", 0)));
	if (op_json_int(a, "workflow", 0) > 0)
		json_object_object_add(d, "workflow", json_object_new_int64(op_json_int(a, "workflow", 0)));
	return d;
}

static void
action_event(json_object *t, json_object *a, const char *type, const char *reason,
    json_object *extra)
{
	json_object *d = action_data(a);

	if (reason != NULL)
		json_object_object_add(d, "reason", json_object_new_string(reason));
	if (extra != NULL) {
		json_object_object_foreach(extra, k, v)
			json_object_object_add(d, k, json_object_get(v));
		json_object_put(extra);
	}
	ticket_event(t, type, d);
}

static void
action_set_status(json_object *a, const char *status, const char *error)
{
	int final = strcmp(status, "proposed") && strcmp(status, "awaiting_approval") &&
	    strcmp(status, "pending") && strcmp(status, "retry_wait") && strcmp(status, "scheduled") &&
	    strcmp(status, "dispatched");

	ledger_exec(od->ledger, "UPDATE actions SET status=?1, error=COALESCE(?2, error),"
	    " finished_at=CASE WHEN ?3 THEN ?4 ELSE finished_at END WHERE id=?5", "ssiii", status,
	    error, (int64_t)final, op_wall_ms(), A_ID(a));
	json_object_object_add(a, "status", json_object_new_string(status));
}

/* Cancels what is left of a ticket's plan (or of one workflow when wf > 0). */
static int64_t
cancel_waiting(json_object *t, int64_t wf, const char *why)
{
	int64_t n = ledger_scalar(od->ledger, 0, "SELECT COUNT(*) FROM actions WHERE ticket_id=?1"
	    " AND status IN " A_WAITING " AND (?2=0 OR workflow=?2)", "ii", T_ID(t), wf);

	ledger_exec(od->ledger, "UPDATE actions SET status='cancelled', finished_at=?1,"
	    " error=COALESCE(error, ?2) WHERE ticket_id=?3 AND status IN " A_WAITING
	    " AND (?4=0 OR workflow=?4)", "isii", op_wall_ms(), why, T_ID(t), wf);
	return n;
}

static void
dispatch_escalate(json_object *t, const char *reason)
{
	json_object *d = json_object_new_object();

	cancel_waiting(t, 0, reason);
	ticket_set_status(t, "escalated", reason);
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "attempts", json_object_new_int64(op_json_int(t, "attempts", 0)));
	json_object_object_add(d, "flaps", json_object_new_int64(op_json_int(t, "flaps", 0)));
	ticket_event(t, "ticket_escalated", d);
	log_info("ticket %lld escalated: %s", (long long)T_ID(t), reason);
}

static void
dispatch_close(json_object *t, const char *status, const char *type, json_object *data)
{
	cancel_waiting(t, 0, status);
	ticket_set_status(t, status, op_json_str(data, "reason", NULL));
	/* A hold ends with the ticket: a recurrence must not reopen it frozen. */
	ledger_exec(od->ledger, "UPDATE tickets SET held=0, held_by=NULL WHERE id=?1", "i", T_ID(t));
	json_object_object_add(t, "held", json_object_new_int(0));
	json_object_object_add(data, "duration_ms",
	    json_object_new_int64(op_wall_ms() - op_json_int(t, "opened_at", 0)));
	ticket_event(t, type, data);
}

/* ---- observer ---- */

static void
on_violation(struct op_msg *m)
{
	const char *subject = op_json_str(m->body, "subject", "");
	const char *invariant = op_json_str(m->body, "invariant", "");
	const char *entity = op_json_str(m->body, "entity", "");
	const char *message = op_json_str(m->body, "message", "");
	const char *severity = op_json_str(m->body, "severity", "warning");
	json_object *evidence = op_json_obj(m->body, "evidence");
	char fp[512];
	int64_t now = op_wall_ms();
	json_object *t;

	op_fingerprint(fp, sizeof(fp), subject, invariant, entity);
	t = ticket_live(fp);
	outbox_event("violation", t ? T_ID(t) : 0, subject, entity, invariant,
	    json_object_get(m->body));
	if (t != NULL) {
		ledger_exec(od->ledger,
		    "UPDATE tickets SET occurrences=occurrences+1, updated_at=?1, message=?2,"
		    " evidence=?3, healed_at=NULL WHERE id=?4", "isji", now, message, evidence, T_ID(t));
		json_object_put(t);
		return;
	}
	t = ledger_row(od->ledger,
	    "SELECT * FROM tickets WHERE fingerprint=?1 AND status='resolved'"
	    " AND closed_at > ?2 ORDER BY closed_at DESC LIMIT 1", "si", fp,
	    now - od->safety.flap_window_ms);
	if (t != NULL) {
		int64_t flaps = op_json_int(t, "flaps", 0) + 1;
		ledger_exec(od->ledger,
		    "UPDATE tickets SET status='open', closed_at=NULL, flaps=?1, healed_at=NULL,"
		    " occurrences=occurrences+1, updated_at=?2, message=?3, evidence=?4 WHERE id=?5",
		    "iisji", flaps, now, message, evidence, T_ID(t));
		json_object_object_add(t, "flaps", json_object_new_int64(flaps));
		json_object_object_add(t, "status", json_object_new_string("open"));
		json_object_object_add(t, "closed_at", NULL);
		json_object *d = json_object_new_object();
		json_object_object_add(d, "flaps", json_object_new_int64(flaps));
		json_object_object_add(d, "flap_max", json_object_new_int64(od->safety.flap_max));
		json_object_object_add(d, "flap_window_ms", json_object_new_int64(od->safety.flap_window_ms));
		json_object_object_add(d, "message", json_object_new_string(message));
		ticket_event(t, "ticket_reopened", d);
		if (flaps >= od->safety.flap_max) {
			char why[160];
			snprintf(why, sizeof(why), "flapping: reopened %lld times within %llds, no more"
			    " automatic action", (long long)flaps,
			    (long long)(od->safety.flap_window_ms / 1000));
			dispatch_escalate(t, why);
			json_object_put(t);
			return;
		}
		if (op_json_int(t, "held", 0)) {
			json_object_put(t);
			return; /* a held ticket waits for its human */
		}
	} else {
		int64_t id = ledger_insert(od->ledger,
		    "INSERT INTO tickets(fingerprint,subject,invariant,entity,status,severity,message,"
		    "evidence,opened_at,updated_at) VALUES(?1,?2,?3,?4,'open',?5,?6,?7,?8,?8)",
		    "ssssssji", fp, subject, invariant, entity, severity, message, evidence, now);
		if (id < 0)
			return;
		t = ticket_get(id);
		if (t == NULL)
			return;
		json_object *d = json_object_new_object();
		json_object_object_add(d, "fingerprint", json_object_new_string(fp));
		json_object_object_add(d, "severity", json_object_new_string(severity));
		json_object_object_add(d, "message", json_object_new_string(message));
		ticket_event(t, "ticket_opened", d);
		log_info("ticket %lld opened: %s", (long long)id, fp);
	}
	dispatch_start_diagnosis(t);
	json_object_put(t);
}

static void
on_cleared(struct op_msg *m)
{
	const char *subject = op_json_str(m->body, "subject", "");
	const char *invariant = op_json_str(m->body, "invariant", "");
	const char *entity = op_json_str(m->body, "entity", "");
	char fp[512];
	json_object *t;

	op_fingerprint(fp, sizeof(fp), subject, invariant, entity);
	t = ticket_live(fp);
	if (t == NULL)
		return;
	const char *st = T_STR(t, "status");
	if (op_json_int(t, "held", 0)) {
		/* Held: a human decides when it closes. Remember it healed for unhold. */
		ledger_exec(od->ledger, "UPDATE tickets SET healed_at=?1 WHERE id=?2", "ii",
		    op_wall_ms(), T_ID(t));
		json_object *d = json_object_new_object();
		json_object_object_add(d, "held", json_object_new_boolean(1));
		json_object_object_add(d, "evidence", json_object_get(op_json_obj(m->body, "evidence")));
		ticket_event(t, "ticket_healed", d);
	} else if (strcmp(st, "acting") != 0 && strcmp(st, "verifying") != 0) {
		/* While an action runs or is verified, the verifier decides the outcome. */
		json_object *d = json_object_new_object();
		json_object_object_add(d, "reason", json_object_new_string("invariant healed by itself"));
		json_object_object_add(d, "evidence", json_object_get(op_json_obj(m->body, "evidence")));
		dispatch_close(t, "cleared", "ticket_cleared", d);
		log_info("ticket %lld cleared: healed without action", (long long)T_ID(t));
	}
	json_object_put(t);
}

/* ---- diagnoser ---- */

#define OD_HISTORY_MAX 3 /* similar past tickets given to the diagnoser */

/* Up to three closed tickets of the same subject and invariant, each with
 * what was done and whether verification held: a model (or a human reading
 * the prompt) learns from outcomes, not from earlier guesses. */
static json_object *
ticket_history(json_object *t)
{
	json_object *rows = ledger_rows(od->ledger,
	    "SELECT id,entity,status,reason,opened_at,closed_at FROM tickets WHERE subject=?1 AND"
	    " invariant=?2 AND id<>?3 AND status IN ('resolved','escalated','cleared','rejected')"
	    " ORDER BY id DESC LIMIT ?4", "ssii", T_STR(t, "subject"), T_STR(t, "invariant"),
	    T_ID(t), (int64_t)OD_HISTORY_MAX);

	for (size_t i = 0; i < json_object_array_length(rows); i++) {
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

static json_object *
ticket_job(json_object *t)
{
	json_object *job = json_object_new_object();

	json_object_object_add(job, "ticket", json_object_get(t));
	json_object_object_add(job, "ticket_id", json_object_new_int64(T_ID(t)));
	json_object_object_add(job, "history", ticket_history(t));
	return job;
}

static void
dispatch_start_diagnosis(json_object *t)
{
	ticket_set_status(t, "diagnosing", NULL);
	outbox_send(OD_DIAGNOSER, OP_MSG_DIAGNOSE, od_new_id(), ticket_job(t));
}

/* Validates one step against the catalogue and its bounds; err says why not. */
static const struct op_action_def *
step_validate(const char *subject, const char *name, json_object *p, char *err, size_t errlen)
{
	struct op_subject fake = {0};
	const struct op_action_def *def;

	fake.ops = op_subject_kind(subject);
	def = fake.ops ? op_subject_action(&fake, name) : NULL;
	err[0] = '\0';
	/* The catalogue and its bounds are checked again here: a diagnosis or an
	 * operator's workflow, whoever wrote it, never reaches the executor
	 * unvalidated. */
	if (def == NULL)
		snprintf(err, errlen, "\"%s\" is not in the action catalogue", name);
	else if (op_action_validate(def, p, err, errlen) != 0 && err[0] == '\0')
		snprintf(err, errlen, "invalid parameters");
	return err[0] ? NULL : def;
}

/* Inserts the steps of one workflow: recs = [{action, parameters|params, reason}]. */
static int
plan_steps(json_object *t, json_object *recs, const char *requested_by, int64_t not_before,
    int64_t needs_approval, json_object *planned_ids)
{
	int64_t step = ledger_scalar(od->ledger, 0,
	    "SELECT MAX(step) FROM actions WHERE ticket_id=?1", "i", T_ID(t));
	int64_t wf = 0;
	int planned = 0;

	size_t nrecs = recs ? json_object_array_length(recs) : 0;
	if (nrecs > OD_PLAN_MAX_STEPS) {
		/* A plan that long is not a remedy; a frame may carry 200k values. */
		log_warn("ticket %lld: %zu recommended steps, keeping the first %d", (long long)T_ID(t),
		    nrecs, OD_PLAN_MAX_STEPS);
		nrecs = OD_PLAN_MAX_STEPS;
	}
	for (size_t i = 0; i < nrecs; i++) {
		json_object *r = json_object_array_get_idx(recs, i);
		const char *name = op_json_str(r, "action", "");
		json_object *params = op_json_obj(r, "parameters");
		char err[256] = "";
		if (params == NULL)
			params = op_json_obj(r, "params");
		json_object *p = params ? json_object_get(params) : json_object_new_object();
		const struct op_action_def *def = step_validate(T_STR(t, "subject"), name, p, err,
		    sizeof(err));
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action", json_object_new_string(name));
		json_object_object_add(d, "params", json_object_get(p));
		json_object_object_add(d, "reason", json_object_new_string(op_json_str(r, "reason", "")));
		if (def == NULL) {
			json_object_object_add(d, "error", json_object_new_string(err));
			ticket_event(t, "action_invalid", d);
			json_object_put(p);
			continue;
		}
		int64_t aid = ledger_insert(od->ledger,
		    "INSERT INTO actions(ticket_id,step,subject,name,params,reason,risk,status,created_at,"
		    "max_attempts,requested_by,decided_by,not_before,workflow,target,needs_approval)"
		    " VALUES(?1,?2,?3,?4,?5,?6,?7,'proposed',?8,?9,?10,?10,NULLIF(?11,0),NULLIF(?12,0),"
		    "?13,?14)", "iissjssiisiisi",
		    T_ID(t), step + 1 + planned, T_STR(t, "subject"), name, p,
		    op_json_str(r, "reason", ""), def->risk, op_wall_ms(), od->safety.retry_attempts,
		    requested_by, not_before, wf, policy_target(p), needs_approval);
		if (aid < 0) {
			json_object_put(d);
			json_object_put(p);
			continue;
		}
		if (wf == 0) {
			wf = aid;
			ledger_exec(od->ledger, "UPDATE actions SET workflow=?1 WHERE id=?1", "i", aid);
		}
		json_object_object_add(d, "action_id", json_object_new_int64(aid));
		json_object_object_add(d, "risk", json_object_new_string(def->risk));
		json_object_object_add(d, "step", json_object_new_int64(step + 1 + planned));
		json_object_object_add(d, "workflow", json_object_new_int64(wf));
		if (requested_by)
			json_object_object_add(d, "requested_by", json_object_new_string(requested_by));
		if (not_before > 0)
			json_object_object_add(d, "not_before", json_object_new_int64(not_before));
		ticket_event(t, "action_proposed", d);
		if (planned_ids)
			json_object_array_add(planned_ids, json_object_new_int64(aid));
		json_object_put(p);
		planned++;
	}
	return planned;
}

static void
on_diagnosis(struct op_msg *m)
{
	int64_t tid = op_json_int(m->body, "ticket_id", 0);
	json_object *diag = op_json_obj(m->body, "diagnosis");
	json_object *t = ticket_get(tid);

	if (t == NULL || strcmp(T_STR(t, "status"), "diagnosing") != 0) {
		log_info("diagnosis for ticket %lld no longer wanted (%s)", (long long)tid,
		    t ? T_STR(t, "status") : "unknown ticket");
		json_object_put(t);
		return;
	}
	ledger_insert(od->ledger,
	    "INSERT INTO diagnoses(ticket_id,created_at,backend,model,agreed,tokens_in,tokens_out,"
	    "cost_usd,diagnosis) VALUES(?1,?2,?3,?4,?5,?6,?7,CAST(?8 AS REAL)/1000000.0,?9)",
	    "iissiiiij", tid, op_wall_ms(),
	    op_json_str(m->body, "backend", "rules"), op_json_str(m->body, "model", NULL),
	    op_json_int(m->body, "agreed", 1), op_json_int(m->body, "tokens_in", 0),
	    op_json_int(m->body, "tokens_out", 0),
	    (int64_t)(op_json_double(m->body, "cost_usd", 0) * 1000000.0), diag);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "backend", json_object_new_string(op_json_str(m->body, "backend", "rules")));
	/* Which model said it, what it cost and whether the offline rules agree:
	 * the record an operator needs to trust (or not) a model's plan. */
	static const char *const meta[] = {"model", "agreed", "tokens_in", "tokens_out",
		"cost_usd", "fallback_reason", "require_approval", "cached"};
	for (size_t k = 0; k < sizeof(meta) / sizeof(meta[0]); k++) {
		json_object *v;
		if (json_object_object_get_ex(m->body, meta[k], &v))
			json_object_object_add(d, meta[k], json_object_get(v));
	}
	json_object_object_add(d, "primary_diagnosis",
	    json_object_new_string(op_json_str(diag, "primary_diagnosis", "")));
	json_object_object_add(d, "confidence", json_object_new_double(op_json_double(diag, "confidence", 0)));
	json_object_object_add(d, "diagnosis", json_object_get(diag));
	ticket_event(t, "diagnosis", d);
	ticket_set_status(t, "diagnosed", NULL);
	/* The recommended actions are one workflow: ordered steps, each verified
	 * before the next, stopping at the first that fails. */
	plan_steps(t, op_json_arr(diag, "recommended_actions"), NULL, 0, 0, NULL);
	if (op_json_bool(m->body, "require_approval", 0))
		ledger_exec(od->ledger, "UPDATE actions SET needs_approval=1, approval_reason=?1"
		    " WHERE ticket_id=?2 AND status='proposed'", "si",
		    "the model's plan disagrees with the offline rules", tid);
	dispatch_advance(t);
	json_object_put(t);
}

/* ---- acting ---- */

static void
dispatch_action(json_object *t, json_object *a)
{
	if (od->w[OD_EXECUTOR].state != OD_W_READY)
		return; /* stays pending; resumed when the executor is ready */
	int64_t attempt = op_json_int(a, "attempt", 0) + 1;
	/* Unrecorded means unsent: a pending row would be sent again later. */
	if (ledger_exec(od->ledger, "UPDATE actions SET status='dispatched', dispatched_at=?1,"
	    " attempt=?2, next_retry_at=NULL WHERE id=?3", "iii", op_wall_ms(), attempt, A_ID(a)) != 0)
		return;
	json_object *x = json_object_new_object();
	json_object_object_add(x, "attempt", json_object_new_int64(attempt));
	json_object_object_add(x, "level", json_object_new_string(op_json_str(a, "level", "execute")));
	action_event(t, a, "action_dispatched", NULL, x);
	json_object *b = json_object_new_object();
	json_object_object_add(b, "ticket_id", json_object_new_int64(T_ID(t)));
	json_object_object_add(b, "action_id", json_object_new_int64(A_ID(a)));
	json_object_object_add(b, "attempt", json_object_new_int64(attempt));
	json_object_object_add(b, "subject", json_object_new_string(T_STR(t, "subject")));
	json_object_object_add(b, "invariant", json_object_new_string(T_STR(t, "invariant")));
	json_object_object_add(b, "entity", json_object_new_string(T_STR(t, "entity")));
	json_object_object_add(b, "action", json_object_new_string(op_json_str(a, "name", "")));
	json_object_object_add(b, "params", json_object_get(op_json_obj(a, "params")));
	outbox_send(OD_EXECUTOR, OP_MSG_EXECUTE, od_new_id(), b);
}

/* The gates a go-ahead passes again at the moment it would run: the kill
 * switch and a hold win over any approval, retry or schedule. */
static const char *
dispatch_blocked(json_object *t)
{
	if (od->kill_switch)
		return "kill switch";
	if (!strcmp(od->mode, "observe"))
		return "mode observe";
	if (op_json_int(t, "held", 0))
		return "held";
	return NULL;
}

/* Budget and blast radius for an action that is cleared to run; spends the
 * tokens and hands it to the executor, or skips it and escalates (the
 * circuit breaker: a deeper problem needs a human, not one more try). */
static int
dispatch_go(json_object *t, json_object *a, const char *level)
{
	char detail[512] = "";
	const char *why = policy_check(t, a, detail, sizeof(detail));

	if (why != NULL) {
		char esc[640];
		json_object *x = json_object_new_object();
		json_object_object_add(x, "detail", json_object_new_string(detail));
		action_set_status(a, "skipped", detail);
		action_event(t, a, "action_skipped", why, x);
		snprintf(esc, sizeof(esc), "%s: %s", why, detail);
		dispatch_escalate(t, esc);
		return -1;
	}
	if (op_json_int(a, "charged_at", 0) == 0)
		json_object_put(policy_charge(t, a));
	ledger_exec(od->ledger, "UPDATE actions SET status='pending', level=COALESCE(level, ?1)"
	    " WHERE id=?2", "si", level, A_ID(a));
	ticket_set_status(t, "acting", NULL);
	dispatch_action(t, a);
	return 0;
}

/* Shadow: logs exactly what would run, for every remaining step, and runs
 * nothing; a human takes it from there. */
static void
dispatch_shadow(json_object *t)
{
	json_object *rows = ledger_rows(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
	    " status IN ('proposed','scheduled') ORDER BY step", "i", T_ID(t));
	char names[256] = "";

	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *a = json_object_array_get_idx(rows, i);
		json_object *would = json_object_new_object();
		json_object_object_add(would, "subject", json_object_new_string(T_STR(t, "subject")));
		json_object_object_add(would, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(would, "params", json_object_get(op_json_obj(a, "params")));
		json_object_object_add(would, "risk", json_object_new_string(op_json_str(a, "risk", "")));
		if (policy_target(op_json_obj(a, "params")))
			json_object_object_add(would, "target",
			    json_object_new_string(policy_target(op_json_obj(a, "params"))));
		json_object *x = json_object_new_object();
		json_object_object_add(x, "would", would);
		json_object_object_add(x, "level", json_object_new_string("shadow"));
		ledger_exec(od->ledger, "UPDATE actions SET status='shadowed', level='shadow',"
		    " finished_at=?1 WHERE id=?2", "ii", op_wall_ms(), A_ID(a));
		action_event(t, a, "action_skipped", "shadow", x);
		log_info("shadow: ticket %lld would run %s %s", (long long)T_ID(t),
		    op_json_str(a, "name", ""), json_object_to_json_string_ext(op_json_obj(a, "params"),
		    JSON_C_TO_STRING_PLAIN));
		size_t l = strlen(names);
		snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "", op_json_str(a, "name", ""));
	}
	json_object_put(rows);
	char why[384];
	snprintf(why, sizeof(why), "shadow: would have run %s; nothing was run", names);
	dispatch_escalate(t, why);
}

/* Picks the next step for a diagnosed ticket: the next proposed action under
 * the kill switch, mode, level, budgets and blast radius, or escalation when
 * there is none. */
static void
dispatch_advance(json_object *t)
{
	json_object *a;
	int64_t now = op_wall_ms();

	if (strcmp(T_STR(t, "status"), "diagnosed") != 0 || op_json_int(t, "held", 0))
		return;
	a = ledger_row(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
	    " status IN ('proposed','scheduled') ORDER BY step LIMIT 1", "i", T_ID(t));
	if (a == NULL) {
		dispatch_escalate(t, op_json_int(t, "attempts", 0) > 0
		    ? "remedies exhausted: the fix did not hold"
		    : "no safe automatic action for this diagnosis");
		return;
	}
	const char *st = op_json_str(a, "status", "");
	int64_t nb = op_json_int(a, "not_before", 0);
	if (!strcmp(st, "scheduled") && nb > now)
		goto out; /* the timer wakes it */
	if (nb > now) {
		json_object *x = json_object_new_object();
		char ts[OP_TS_LEN];
		op_rfc3339(nb, ts);
		json_object_object_add(x, "not_before", json_object_new_int64(nb));
		json_object_object_add(x, "not_before_ts", json_object_new_string(ts));
		action_set_status(a, "scheduled", NULL);
		action_event(t, a, "action_scheduled", NULL, x);
		goto out;
	}
	if (!strcmp(st, "scheduled"))
		action_set_status(a, "proposed", NULL);
	const char *why = NULL;
	if (od->kill_switch)
		why = "kill switch";
	else if (!strcmp(od->mode, "observe"))
		why = "mode observe";
	if (why != NULL) {
		action_event(t, a, "action_skipped", why, NULL);
		goto out;
	}
	const char *level = policy_level(T_STR(t, "subject"), op_json_str(a, "name", ""));
	char lv[16];
	op_strlcpy(lv, level, sizeof(lv));
	if (!strcmp(lv, "shadow")) {
		dispatch_shadow(t);
		goto out;
	}
	/* Refuse before asking a human for something the budget would not allow. */
	char detail[512] = "";
	if ((why = policy_check(t, a, detail, sizeof(detail))) != NULL) {
		dispatch_go(t, a, lv); /* skips and escalates with the same reason */
		goto out;
	}
	const char *need = NULL;
	if (op_json_str(a, "decided_by", NULL) == NULL) {
		if (op_json_int(a, "needs_approval", 0))
			need = op_json_str(a, "approval_reason", "approval required");
		else if (!strcmp(od->mode, "approve"))
			need = "mode approve";
		else if (!strcmp(lv, "approve"))
			need = "level approve";
		else if (policy_risk_needs_approval(op_json_str(a, "risk", "")))
			need = "risk tier requires approval";
	}
	if (need != NULL) {
		int64_t deadline = now + od->safety.approval_ttl_ms;
		char ts[OP_TS_LEN];
		ledger_exec(od->ledger, "UPDATE actions SET status='awaiting_approval',"
		    " approval_deadline=?1, level=?2 WHERE id=?3", "isi", deadline, lv, A_ID(a));
		ticket_set_status(t, "awaiting_approval", NULL);
		json_object *x = json_object_new_object();
		op_rfc3339(deadline, ts);
		json_object_object_add(x, "risk", json_object_new_string(op_json_str(a, "risk", "")));
		json_object_object_add(x, "level", json_object_new_string(lv));
		json_object_object_add(x, "expires_at", json_object_new_string(ts));
		json_object_object_add(x, "ttl_ms", json_object_new_int64(od->safety.approval_ttl_ms));
		json_object_object_add(x, "on_expiry", json_object_new_string(od->safety.approval_expiry));
		action_event(t, a, "action_awaiting_approval", need, x);
	} else {
		dispatch_go(t, a, lv);
	}
out:
	json_object_put(a);
}

static void
send_verify(json_object *t, json_object *a, int64_t executed_at)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ticket_id", json_object_new_int64(T_ID(t)));
	json_object_object_add(b, "action_id", json_object_new_int64(a ? A_ID(a) : 0));
	json_object_object_add(b, "action", json_object_new_string(a ? op_json_str(a, "name", "") : ""));
	json_object_object_add(b, "params", json_object_get(a ? op_json_obj(a, "params") : NULL));
	json_object_object_add(b, "subject", json_object_new_string(T_STR(t, "subject")));
	json_object_object_add(b, "invariant", json_object_new_string(T_STR(t, "invariant")));
	json_object_object_add(b, "entity", json_object_new_string(T_STR(t, "entity")));
	json_object_object_add(b, "executed_at", json_object_new_int64(executed_at));
	json_object_object_add(b, "verify_delay_ms", json_object_new_int64(od->verify_delay_ms));
	json_object_object_add(b, "settle_ms", json_object_new_int64(od->verify_settle_ms));
	json_object_object_add(b, "timeout_ms", json_object_new_int64(od->verify_timeout_ms));
	outbox_send(OD_VERIFIER, OP_MSG_VERIFY, od_new_id(), b);
}

/* A step ended without effect and will not be retried: the workflow stops
 * there (its later steps assumed this one), and a human takes over. */
static void
dispatch_step_failed(json_object *t, json_object *a, const char *why)
{
	int64_t n = cancel_waiting(t, op_json_int(a, "workflow", 0), "workflow stopped");
	char esc[640];

	if (n > 0) {
		json_object *x = json_object_new_object();
		json_object_object_add(x, "cancelled_steps", json_object_new_int64(n));
		action_event(t, a, "workflow_stopped", why, x);
	}
	if (strcmp(T_STR(t, "status"), "acting") != 0 && strcmp(T_STR(t, "status"), "retry_wait") != 0)
		return;
	ticket_set_status(t, "diagnosed", NULL);
	snprintf(esc, sizeof(esc), "step %lld (%s) did not run: %s",
	    (long long)op_json_int(a, "step", 0), op_json_str(a, "name", ""), why);
	dispatch_escalate(t, esc);
}

/* Schedules the next attempt of an action that is known not to have taken
 * effect; false when its attempts are used up. */
static int
dispatch_retry(json_object *t, json_object *a, const char *why)
{
	int64_t attempt = op_json_int(a, "attempt", 0);
	int64_t max = op_json_int(a, "max_attempts", od->safety.retry_attempts);

	if (attempt >= max || strcmp(T_STR(t, "status"), "acting") != 0)
		return 0;
	int64_t delay = policy_backoff_ms(attempt), at = op_wall_ms() + delay;
	char ts[OP_TS_LEN];
	ledger_exec(od->ledger, "UPDATE actions SET status='retry_wait', next_retry_at=?1, error=?2"
	    " WHERE id=?3", "isi", at, why, A_ID(a));
	ticket_set_status(t, "retry_wait", NULL);
	json_object *x = json_object_new_object();
	op_rfc3339(at, ts);
	json_object_object_add(x, "attempt", json_object_new_int64(attempt));
	json_object_object_add(x, "next_attempt", json_object_new_int64(attempt + 1));
	json_object_object_add(x, "max_attempts", json_object_new_int64(max));
	json_object_object_add(x, "delay_ms", json_object_new_int64(delay));
	json_object_object_add(x, "next_at", json_object_new_string(ts));
	json_object_object_add(x, "error", json_object_new_string(why));
	action_event(t, a, "action_retry", "failed without effect", x);
	return 1;
}

/* Whether an earlier step of this action's workflow has been verified. */
static int
workflow_verified(json_object *t, json_object *a)
{
	return ledger_scalar(od->ledger, 0, "SELECT COUNT(*) FROM verifications v JOIN actions x"
	    " ON x.id=v.action_id WHERE v.ticket_id=?1 AND v.result='success' AND x.workflow=?2",
	    "ii", T_ID(t), op_json_int(a, "workflow", 0)) > 0;
}

static void
on_action_result(struct op_msg *m)
{
	int64_t aid = op_json_int(m->body, "action_id", 0);
	const char *status = op_json_str(m->body, "status", "");
	const char *reason = op_json_str(m->body, "reason", "");
	json_object *a = action_get(aid);
	json_object *t = a ? ticket_get(op_json_int(a, "ticket_id", 0)) : NULL;
	int64_t now = op_wall_ms();

	if (a == NULL || t == NULL) {
		log_warn("result for unknown action %lld", (long long)aid);
		goto out;
	}
	const char *ast = op_json_str(a, "status", "");
	int was_unknown = !strcmp(ast, "unknown");
	if (strcmp(ast, "dispatched") != 0 && !was_unknown) {
		log_warn("action %lld: duplicate result ignored (status %s)", (long long)aid, ast);
		goto out;
	}
	if (strcmp(status, "executed") && strcmp(status, "failed") && strcmp(status, "skipped")) {
		/* Nobody knows what happened: never retry it blindly, verify instead. */
		log_warn("action %lld: unrecognised result status \"%s\"; treating it as unknown",
		    (long long)aid, status);
		status = "failed";
		json_object_object_add(m->body, "applied", json_object_new_string("unknown"));
	}
	json_object *x = json_object_new_object();
	json_object_object_add(x, "duration_ms", json_object_new_int64(op_json_int(m->body, "duration_ms", 0)));
	json_object_object_add(x, "attempt", json_object_new_int64(op_json_int(a, "attempt", 0)));
	if (!strcmp(status, "executed")) {
		ledger_exec(od->ledger, "UPDATE actions SET status='executed', finished_at=?1, result=?2,"
		    " applied='yes' WHERE id=?3", "iji", now, op_json_obj(m->body, "result"), aid);
		ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1 AND ?2=0",
		    "ii", T_ID(t), (int64_t)was_unknown);
		json_object_object_add(x, "result", json_object_get(op_json_obj(m->body, "result")));
		action_event(t, a, "action_executed", NULL, x);
		if (!was_unknown && !strcmp(T_STR(t, "status"), "acting")) {
			ticket_set_status(t, "verifying", NULL);
			send_verify(t, a, now);
		}
	} else if (!strcmp(status, "failed")) {
		/* The executor says whether the failure took effect: "no" (refused
		 * before anything was sent) may be retried, "rejected" (the system
		 * refused it) may not, "unknown" is never re-run blindly: verify. */
		const char *applied = op_json_str(m->body, "applied", "unknown");
		json_object_object_add(x, "error", json_object_new_string(reason));
		json_object_object_add(x, "applied", json_object_new_string(applied));
		json_object_object_add(x, "result", json_object_get(op_json_obj(m->body, "result")));
		if (!strcmp(applied, "unknown") && !was_unknown) {
			ledger_exec(od->ledger, "UPDATE actions SET status='unknown', finished_at=?1, error=?2,"
			    " applied='unknown', result=?3 WHERE id=?4", "isji", now, reason,
			    op_json_obj(m->body, "result"), aid);
			ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1", "i",
			    T_ID(t));
			action_event(t, a, "action_unknown", "the failure may have taken effect: verify",
			    x);
			if (!strcmp(T_STR(t, "status"), "acting")) {
				ticket_set_status(t, "verifying", NULL);
				send_verify(t, a, now);
			}
			goto out;
		}
		ledger_exec(od->ledger, "UPDATE actions SET applied=?1, result=?2 WHERE id=?3", "sji",
		    applied, op_json_obj(m->body, "result"), aid);
		json_object_object_add(x, "will_retry", json_object_new_boolean(
		    !strcmp(applied, "no") && !was_unknown &&
		    op_json_int(a, "attempt", 0) < op_json_int(a, "max_attempts", od->safety.retry_attempts) &&
		    !strcmp(T_STR(t, "status"), "acting")));
		action_event(t, a, "action_failed", NULL, x);
		if (!strcmp(applied, "no") && !was_unknown && dispatch_retry(t, a, reason))
			goto out;
		action_set_status(a, "failed", reason);
		ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1", "i", T_ID(t));
		json_object_object_add(t, "attempts", json_object_new_int64(op_json_int(t, "attempts", 0) + 1));
		dispatch_step_failed(t, a, reason);
	} else { /* skipped: the executor refused before any side effect */
		const char *kind = op_json_str(m->body, "kind", "precondition");
		json_object_object_add(x, "detail", json_object_new_string(reason));
		json_object_object_add(x, "figures", json_object_get(op_json_obj(m->body, "result")));
		if (!strcmp(kind, "healed")) {
			action_set_status(a, "skipped", reason);
			action_event(t, a, "action_skipped", kind, x);
			json_object *c = json_object_new_object();
			if (ticket_closed(t)) {
				/* A human closed it while the action was in flight. */
				json_object_put(c);
			} else if (workflow_verified(t, a)) {
				/* An earlier step fixed it; the rest of the chain is not needed. */
				json_object_object_add(c, "reason", json_object_new_string(
				    "fixed by a verified earlier step; the remaining steps were not needed"));
				dispatch_close(t, "resolved", "ticket_resolved", c);
			} else {
				json_object_object_add(c, "reason",
				    json_object_new_string("invariant healed before the action ran"));
				dispatch_close(t, "cleared", "ticket_cleared", c);
			}
		} else if (!strcmp(kind, "kill switch") || !strcmp(kind, "mode")) {
			action_event(t, a, "action_skipped", kind, x);
			if (ticket_closed(t)) {
				/* Closed meanwhile: this plan must never come back on a reopen. */
				action_set_status(a, "cancelled", "ticket closed while the action was refused");
			} else {
				/* Not an attempt, and the go-ahead is void: it must be given again. */
				ledger_exec(od->ledger, "UPDATE actions SET status='proposed',"
				    " attempt=MAX(attempt-1,0), decided_by=CASE WHEN requested_by IS NULL"
				    " THEN NULL ELSE decided_by END WHERE id=?1", "i", aid);
				ticket_set_status(t, "diagnosed", NULL);
				/* The switch may already be off again: decide afresh (it re-checks). */
				dispatch_advance(t);
			}
		} else {
			action_event(t, a, "action_skipped", "precondition", x);
			/* A precondition refusal never took effect: retry while it may pass. */
			if (!strcmp(kind, "precondition") && !was_unknown && dispatch_retry(t, a, reason))
				goto out;
			action_set_status(a, "skipped", reason);
			dispatch_step_failed(t, a, reason);
		}
	}
out:
	json_object_put(a);
	json_object_put(t);
}

/* ---- verifier ---- */

static void
on_verification(struct op_msg *m)
{
	int64_t tid = op_json_int(m->body, "ticket_id", 0);
	int64_t aid = op_json_int(m->body, "action_id", 0);
	const char *result = op_json_str(m->body, "result", "failure");
	json_object *t = ticket_get(tid);
	json_object *a = aid > 0 ? action_get(aid) : NULL;
	int ok = !strcmp(result, "success");

	if (t == NULL || strcmp(T_STR(t, "status"), "verifying") != 0) {
		log_info("verification of ticket %lld no longer wanted", (long long)tid);
		goto out;
	}
	ledger_insert(od->ledger,
	    "INSERT INTO verifications(ticket_id,action_id,started_at,finished_at,result,figures)"
	    " VALUES(?1,NULLIF(?2,0),?3,?4,?5,?6)", "iiiisj", tid, aid,
	    op_json_int(m->body, "started_at", 0), op_wall_ms(), result,
	    op_json_obj(m->body, "figures"));
	json_object *d = json_object_get(m->body);
	if (a != NULL) {
		json_object_object_add(d, "step", json_object_new_int64(op_json_int(a, "step", 0)));
		if (op_json_int(a, "workflow", 0) > 0)
			json_object_object_add(d, "workflow", json_object_new_int64(op_json_int(a, "workflow", 0)));
	}
	ticket_event(t, "verification", d);
	if (a != NULL)
		policy_record_outcome(t, a, ok);
	if (op_json_int(t, "held", 0)) {
		/* No auto-resolve while held: the outcome waits for unhold. */
		ticket_set_status(t, "diagnosed", ok ? "verified while held" : NULL);
		if (ok)
			ledger_exec(od->ledger, "UPDATE tickets SET healed_at=?1 WHERE id=?2", "ii",
			    op_wall_ms(), tid);
		goto out;
	}
	json_object *next = a ? ledger_row(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
	    " workflow=?2 AND status IN ('proposed','scheduled') ORDER BY step LIMIT 1", "ii", tid,
	    op_json_int(a, "workflow", 0)) : NULL;
	if (ok && next != NULL) {
		/* This step holds: on to the next one of the workflow. */
		json_object *x = json_object_new_object();
		json_object_object_add(x, "next_action_id", json_object_new_int64(A_ID(next)));
		json_object_object_add(x, "next_step", json_object_new_int64(op_json_int(next, "step", 0)));
		action_event(t, a, "workflow_step_verified", NULL, x);
		ticket_set_status(t, "diagnosed", NULL);
		dispatch_advance(t);
	} else if (ok) {
		json_object *r = json_object_new_object();
		json_object_object_add(r, "action_id", json_object_new_int64(aid));
		json_object_object_add(r, "figures", json_object_get(op_json_obj(m->body, "figures")));
		dispatch_close(t, "resolved", "ticket_resolved", r);
		log_info("ticket %lld resolved: fix verified", (long long)tid);
	} else {
		/* The chain stops at the first step that does not hold. */
		int64_t n = a ? cancel_waiting(t, op_json_int(a, "workflow", 0), "workflow stopped") : 0;
		if (n > 0) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "cancelled_steps", json_object_new_int64(n));
			action_event(t, a, "workflow_stopped", "verification failed", x);
		}
		ticket_set_status(t, "diagnosed", NULL);
		if (a != NULL && op_json_str(a, "requested_by", NULL) != NULL) {
			char why[256];
			snprintf(why, sizeof(why), "the operator's workflow stopped at step %lld (%s):"
			    " verification failed", (long long)op_json_int(a, "step", 0),
			    op_json_str(a, "name", ""));
			dispatch_escalate(t, why);
		} else if (op_json_int(t, "attempts", 0) < OD_MAX_ATTEMPTS) {
			dispatch_start_diagnosis(t); /* a new attempt, from a fresh look */
		} else {
			dispatch_escalate(t, "the fix did not hold after the last attempt");
		}
	}
	json_object_put(next);
out:
	json_object_put(a);
	json_object_put(t);
}

/* ---- chaos ---- */

static void
on_fault(struct op_msg *m)
{
	const char *ev = op_json_str(m->body, "event", "");
	const char *fault = op_json_str(m->body, "fault", "");
	const char *subject = op_json_str(m->body, "subject", "");
	const char *target = op_json_str(m->body, "target", NULL);
	int64_t now = op_wall_ms();

	if (!strcmp(ev, "injected")) {
		int64_t fid = ledger_insert(od->ledger,
		    "INSERT INTO faults(fault,subject,target,params,started_at,ttl_ms,undo,status)"
		    " VALUES(?1,?2,?3,?4,?5,?6,?7,'active')", "sssjiij", fault, subject, target,
		    op_json_obj(m->body, "params"), op_json_int(m->body, "started_at", now),
		    op_json_int(m->body, "ttl_ms", 0), op_json_obj(m->body, "undo"));
		json_object *d = json_object_get(m->body);
		json_object_object_add(d, "fault_id", json_object_new_int64(fid));
		outbox_event("fault_injected", 0, subject, target, NULL, d);
	} else if (!strcmp(ev, "cleared")) {
		/* A fault injected by this chaos process has no ledger id yet: it is
		 * known by its name and start time, which the chaos worker echoes. */
		ledger_exec(od->ledger, "UPDATE faults SET status='cleared', ended_at=?1 WHERE"
		    " status='active' AND (id=?2 OR (fault=?3 AND started_at=?4))", "iisi", now,
		    op_json_int(m->body, "fault_id", 0), fault, op_json_int(m->body, "started_at", 0));
		outbox_event("fault_cleared", 0, subject, target, NULL, json_object_get(m->body));
	} else {
		outbox_event("fault_failed", 0, subject, target, NULL, json_object_get(m->body));
	}
}

void
dispatch_worker_msg(struct od_worker *w, struct op_msg *m)
{
	outbox_begin();
	switch (m->type) {
	case OP_MSG_VIOLATION: on_violation(m); break;
	case OP_MSG_CLEARED: on_cleared(m); break;
	case OP_MSG_OBSERVED: break; /* liveness only */
	case OP_MSG_DIAGNOSIS: on_diagnosis(m); break;
	case OP_MSG_ACTION_RESULT: on_action_result(m); break;
	case OP_MSG_VERIFICATION: on_verification(m); break;
	case OP_MSG_FAULT: on_fault(m); break;
	case OP_MSG_OBSERVE_REP:
	case OP_MSG_REPLY:
		control_worker_reply(w, m);
		break;
	default:
		log_warn("%s sent an unexpected %s frame", w->name, op_msg_type_name(m->type));
		break;
	}
	outbox_commit();
}

/* ---- worker lifecycle ---- */

/* Pending = cleared to run but never handed over: safe to send now. Called
 * when the executor is ready and whenever a block (kill switch, mode, hold)
 * lifts, so an action never waits for an unrelated restart. */
static void
dispatch_resume_pending(void)
{
	json_object *rows = ledger_rows(od->ledger, "SELECT * FROM actions WHERE status='pending'"
	    " ORDER BY id", "");

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *a = json_object_array_get_idx(rows, i);
		json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
		if (t != NULL && !ticket_closed(t) && dispatch_blocked(t) == NULL)
			dispatch_action(t, a);
		json_object_put(t);
	}
	json_object_put(rows);
}

void
dispatch_worker_ready(struct od_worker *w)
{
	json_object *rows;

	switch (w->role) {
	case OD_OBSERVER: {
		rows = ledger_rows(od->ledger, "SELECT subject,invariant,entity FROM tickets"
		    " WHERE closed_at IS NULL", "");
		json_object *b = json_object_new_object();
		json_object_object_add(b, "fingerprints", rows);
		outbox_send(OD_OBSERVER, OP_MSG_WATCH, od_new_id(), b);
		break;
	}
	case OD_DIAGNOSER:
		rows = ledger_rows(od->ledger, "SELECT * FROM tickets WHERE status='diagnosing'", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++)
			outbox_send(OD_DIAGNOSER, OP_MSG_DIAGNOSE, od_new_id(),
			    ticket_job(json_object_array_get_idx(rows, i)));
		json_object_put(rows);
		break;
	case OD_EXECUTOR:
		dispatch_resume_pending();
		break;
	case OD_VERIFIER:
		rows = ledger_rows(od->ledger, "SELECT * FROM tickets WHERE status='verifying'", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *t = json_object_array_get_idx(rows, i);
			json_object *a = ledger_row(od->ledger, "SELECT * FROM actions WHERE"
			    " ticket_id=?1 AND status IN ('executed','unknown') ORDER BY step DESC LIMIT 1",
			    "i", T_ID(t));
			send_verify(t, a, a ? op_json_int(a, "finished_at", op_wall_ms()) : op_wall_ms());
			json_object_put(a);
		}
		json_object_put(rows);
		break;
	case OD_CHAOS:
		rows = ledger_rows(od->ledger, "SELECT id,fault,subject,target,params,started_at,ttl_ms,"
		    "undo FROM faults WHERE status='active'", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *f = json_object_array_get_idx(rows, i);
			json_object *b = json_object_new_object();
			json_object_object_add(b, "fault", json_object_new_string(op_json_str(f, "fault", "")));
			json_object_object_add(b, "params", json_object_get(op_json_obj(f, "params")));
			json_object_object_add(b, "resume", json_object_get(f));
			outbox_send(OD_CHAOS, OP_MSG_INJECT, od_new_id(), b);
		}
		json_object_put(rows);
		break;
	default:
		break;
	}
}

/* An action handed to an executor that died may or may not have run: never
 * run it again blindly, verify what the system looks like instead. */
static void
mark_dispatched_unknown(const char *why)
{
	json_object *rows = ledger_rows(od->ledger, "SELECT * FROM actions WHERE"
	    " status='dispatched'", "");

	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *a = json_object_array_get_idx(rows, i);
		json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
		ledger_exec(od->ledger, "UPDATE actions SET status='unknown', finished_at=?1, error=?2,"
		    " applied='unknown' WHERE id=?3", "isi", op_wall_ms(), why, A_ID(a));
		ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1", "i",
		    op_json_int(a, "ticket_id", 0));
		if (t == NULL)
			continue;
		action_event(t, a, "action_unknown", why, NULL);
		if (!strcmp(T_STR(t, "status"), "acting")) {
			ticket_set_status(t, "verifying", NULL);
			send_verify(t, a, op_wall_ms());
		}
		json_object_put(t);
	}
	json_object_put(rows);
}

void
dispatch_worker_died(struct od_worker *w)
{
	if (w->role == OD_EXECUTOR)
		mark_dispatched_unknown("executor died while the action was in its hands");
}

static void
dispatch_atexit(void)
{
	if (od != NULL)
		policy_free(&od->safety);
}

void
dispatch_recover(void)
{
	char err[512];

	/* [safety] is validated with the rest of the configuration; loaded here
	 * too so the state machine never runs on defaults it did not choose. */
	if (od->safety.levels == NULL && policy_load(od->cfg, &od->safety, err, sizeof(err)) != 0)
		fatal("%s: %s", od->config_path, err);
	atexit(dispatch_atexit);
	outbox_begin();
	mark_dispatched_unknown("daemon restarted while the action was in flight");
	outbox_commit();
	dispatch_tick_start();
}

json_object *
dispatch_settings_body(void)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "mode", json_object_new_string(od->mode));
	json_object_object_add(b, "kill_switch", json_object_new_boolean(od->kill_switch));
	json_object_object_add(b, "chaos_enabled", json_object_new_boolean(od->chaos_enabled));
	return b;
}

void
dispatch_settings_changed(void)
{
	for (int i = 0; i < OD_NWORKERS; i++)
		outbox_send(i, OP_MSG_SETTINGS, od_new_id(), dispatch_settings_body());
	if (od->kill_switch) {
		/* Everything cleared to run loses its go-ahead at once; in-flight
		 * actions meet the executor's own last-moment check. */
		json_object *rows = ledger_rows(od->ledger, "SELECT * FROM actions WHERE"
		    " status IN ('awaiting_approval','pending','retry_wait')", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *a = json_object_array_get_idx(rows, i);
			json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
			ledger_exec(od->ledger, "UPDATE actions SET status='proposed', approval_deadline=NULL,"
			    " next_retry_at=NULL, decided_by=CASE WHEN requested_by IS NULL THEN NULL ELSE"
			    " decided_by END WHERE id=?1", "i", A_ID(a));
			if (t != NULL) {
				json_object *x = json_object_new_object();
				json_object_object_add(x, "cancelled", json_object_new_string(op_json_str(a, "status", "")));
				action_event(t, a, "action_skipped", "kill switch", x);
				if (!ticket_closed(t))
					ticket_set_status(t, "diagnosed", NULL);
			}
			json_object_put(t);
		}
		json_object_put(rows);
		return;
	}
	dispatch_resume_pending();
	json_object *rows = ledger_rows(od->ledger, "SELECT * FROM tickets WHERE"
	    " status='diagnosed'", "");
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++)
		dispatch_advance(json_object_array_get_idx(rows, i));
	json_object_put(rows);
}

/* ---- the timer: retries, schedules and approval deadlines ---- */

static void
tick_expire(json_object *t, json_object *a)
{
	const char *outcome = od->safety.approval_expiry;
	json_object *x = json_object_new_object();
	char why[160];

	json_object_object_add(x, "ttl_ms", json_object_new_int64(od->safety.approval_ttl_ms));
	json_object_object_add(x, "outcome", json_object_new_string(outcome));
	action_event(t, a, "action_approval_expired", "nobody approved or rejected in time", x);
	snprintf(why, sizeof(why), "approval of %s expired after %llds",
	    op_json_str(a, "name", ""), (long long)(od->safety.approval_ttl_ms / 1000));
	if (!strcmp(outcome, "reject")) {
		ledger_exec(od->ledger, "UPDATE actions SET status='rejected', decided_by='approval_ttl',"
		    " error=?1, finished_at=?2 WHERE id=?3", "sii", why, op_wall_ms(), A_ID(a));
		json_object *y = json_object_new_object();
		json_object_object_add(y, "by", json_object_new_string("approval_ttl"));
		action_event(t, a, "action_rejected", why, y);
		json_object *c = json_object_new_object();
		json_object_object_add(c, "reason", json_object_new_string(why));
		dispatch_close(t, "rejected", "ticket_rejected", c);
	} else if (!strcmp(outcome, "execute")) {
		ledger_exec(od->ledger, "UPDATE actions SET decided_by='approval_ttl' WHERE id=?1", "i",
		    A_ID(a));
		json_object *y = json_object_new_object();
		json_object_object_add(y, "by", json_object_new_string("approval_ttl"));
		action_event(t, a, "action_approved", why, y);
		dispatch_go(t, a, op_json_str(a, "level", "approve"));
	} else {
		action_set_status(a, "expired", why);
		dispatch_escalate(t, why);
	}
}

static void
dispatch_tick(evutil_socket_t fd, short ev, void *arg)
{
	int64_t now = op_wall_ms();
	json_object *rows;

	(void)fd;
	(void)ev;
	(void)arg;
	if (od->shutting_down)
		return;
	rows = ledger_rows(od->ledger, "SELECT * FROM actions WHERE (status='retry_wait' AND"
	    " next_retry_at<=?1) OR (status='scheduled' AND COALESCE(not_before,0)<=?1) OR"
	    " (status='awaiting_approval' AND approval_deadline<=?1) ORDER BY id", "i", now);
	if (json_object_array_length(rows) == 0) {
		json_object_put(rows);
		return;
	}
	outbox_begin();
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *a = json_object_array_get_idx(rows, i);
		json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
		const char *st = op_json_str(a, "status", "");
		/* The row may have moved since the select (an earlier one closed its ticket). */
		json_object *cur = action_get(A_ID(a));
		int same = cur && !strcmp(op_json_str(cur, "status", ""), st);
		json_object_put(cur);
		if (t == NULL || !same || ticket_closed(t) || dispatch_blocked(t) != NULL) {
			json_object_put(t);
			continue; /* kill switch, observe or hold: it waits (its row keeps it) */
		}
		if (!strcmp(st, "retry_wait")) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "attempt", json_object_new_int64(op_json_int(a, "attempt", 0) + 1));
			action_event(t, a, "action_retrying", NULL, x);
			dispatch_go(t, a, op_json_str(a, "level", "execute"));
		} else if (!strcmp(st, "scheduled")) {
			action_set_status(a, "proposed", NULL);
			if (!strcmp(T_STR(t, "status"), "diagnosed"))
				dispatch_advance(t);
		} else {
			tick_expire(t, a);
		}
		json_object_put(t);
	}
	json_object_put(rows);
	outbox_commit();
}

void
dispatch_tick_start(void)
{
	struct timeval tv = {0, OD_TICK_MS * 1000};

	if (od->tick_armed)
		return;
	srandom((unsigned)(op_wall_ms() ^ getpid()));
	event_assign(&od->tick, od->base, -1, EV_PERSIST, dispatch_tick, NULL);
	event_add(&od->tick, &tv);
	od->tick_armed = 1;
}

/* ---- operators ---- */

static json_object *
ticket_open_get(int64_t id, char *err, size_t errlen)
{
	json_object *t = ticket_get(id);

	if (t == NULL)
		snprintf(err, errlen, "no ticket %lld", (long long)id);
	else if (ticket_closed(t)) {
		snprintf(err, errlen, "ticket %lld is %s (closed)", (long long)id, T_STR(t, "status"));
		json_object_put(t);
		t = NULL;
	}
	return t;
}

int
dispatch_approve(int64_t action_id, const char *who, char *err, size_t errlen)
{
	json_object *a = action_get(action_id);
	json_object *t = a ? ticket_get(op_json_int(a, "ticket_id", 0)) : NULL;
	int rc = -1;

	if (a == NULL || t == NULL)
		snprintf(err, errlen, "no action %lld", (long long)action_id);
	else if (strcmp(op_json_str(a, "status", ""), "awaiting_approval") != 0)
		snprintf(err, errlen, "action %lld is %s, not awaiting approval", (long long)action_id,
		    op_json_str(a, "status", ""));
	else if (od->kill_switch)
		snprintf(err, errlen, "the kill switch is on: no action may run");
	else if (!strcmp(od->mode, "observe"))
		snprintf(err, errlen, "mode is observe: switch to approve or execute to run actions");
	else if (op_json_int(t, "held", 0))
		snprintf(err, errlen, "ticket %lld is held: unhold it first", (long long)T_ID(t));
	else {
		ledger_exec(od->ledger, "UPDATE actions SET decided_by=?1 WHERE id=?2", "si", who,
		    action_id);
		json_object *x = json_object_new_object();
		json_object_object_add(x, "by", json_object_new_string(who));
		action_event(t, a, "action_approved", NULL, x);
		dispatch_go(t, a, op_json_str(a, "level", "approve"));
		rc = 0;
	}
	json_object_put(a);
	json_object_put(t);
	return rc;
}

int
dispatch_reject(int64_t action_id, const char *who, const char *reason, char *err, size_t errlen)
{
	json_object *a = action_get(action_id);
	json_object *t = a ? ticket_get(op_json_int(a, "ticket_id", 0)) : NULL;
	int rc = -1;

	if (a == NULL || t == NULL)
		snprintf(err, errlen, "no action %lld", (long long)action_id);
	else if (strcmp(op_json_str(a, "status", ""), "awaiting_approval") != 0)
		snprintf(err, errlen, "action %lld is %s, not awaiting approval", (long long)action_id,
		    op_json_str(a, "status", ""));
	else {
		ledger_exec(od->ledger, "UPDATE actions SET status='rejected', decided_by=?1,"
		    " error=?2, finished_at=?3 WHERE id=?4", "ssii", who, reason, op_wall_ms(), action_id);
		json_object *x = json_object_new_object();
		json_object_object_add(x, "by", json_object_new_string(who));
		action_event(t, a, "action_rejected", reason ? reason : "", x);
		json_object *c = json_object_new_object();
		json_object_object_add(c, "by", json_object_new_string(who));
		if (reason)
			json_object_object_add(c, "reason", json_object_new_string(reason));
		dispatch_close(t, "rejected", "ticket_rejected", c);
		rc = 0;
	}
	json_object_put(a);
	json_object_put(t);
	return rc;
}

int
dispatch_hold(int64_t ticket_id, int hold, const char *who, char *err, size_t errlen)
{
	json_object *t = ticket_open_get(ticket_id, err, errlen);

	if (t == NULL)
		return -1;
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	if (hold) {
		ledger_exec(od->ledger, "UPDATE tickets SET held=1, held_by=?1, updated_at=?2 WHERE id=?3",
		    "sii", who, op_wall_ms(), ticket_id);
		ticket_event(t, "ticket_held", d);
	} else {
		ledger_exec(od->ledger, "UPDATE tickets SET held=0, held_by=NULL, updated_at=?1 WHERE"
		    " id=?2", "ii", op_wall_ms(), ticket_id);
		json_object_object_add(t, "held", json_object_new_int64(0));
		ticket_event(t, "ticket_unheld", d);
		const char *st = T_STR(t, "status");
		if (op_json_int(t, "healed_at", 0) > 0 && strcmp(st, "acting") != 0 &&
		    strcmp(st, "verifying") != 0) {
			/* It healed (or a fix verified) while held: close it now. */
			int verified = ledger_scalar(od->ledger, 0, "SELECT result='success' FROM"
			    " verifications WHERE ticket_id=?1 ORDER BY id DESC LIMIT 1", "i", ticket_id) == 1;
			json_object *c = json_object_new_object();
			json_object_object_add(c, "reason", json_object_new_string(verified
			    ? "fix verified while held" : "invariant healed while held"));
			dispatch_close(t, verified ? "resolved" : "cleared",
			    verified ? "ticket_resolved" : "ticket_cleared", c);
		} else if (!strcmp(st, "open")) {
			/* Reopened while held: it never got its diagnosis. */
			dispatch_start_diagnosis(t);
		} else {
			dispatch_advance(t);
			dispatch_resume_pending();
		}
	}
	json_object_put(t);
	return 0;
}

int
dispatch_ack(int64_t ticket_id, const char *who, char *err, size_t errlen)
{
	json_object *t = ticket_open_get(ticket_id, err, errlen);

	if (t == NULL)
		return -1;
	ledger_exec(od->ledger, "UPDATE tickets SET acked=1, acked_by=?1, acked_at=?2, updated_at=?2"
	    " WHERE id=?3", "sii", who, op_wall_ms(), ticket_id);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	ticket_event(t, "ticket_acked", d);
	json_object_put(t);
	return 0;
}

int
dispatch_resolve(int64_t ticket_id, const char *who, const char *reason, char *err,
    size_t errlen)
{
	json_object *t = ticket_open_get(ticket_id, err, errlen);

	if (t == NULL)
		return -1;
	ledger_exec(od->ledger, "UPDATE tickets SET resolved_by=?1 WHERE id=?2", "si", who,
	    ticket_id);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "manual", json_object_new_boolean(1));
	json_object_object_add(d, "by", json_object_new_string(who));
	json_object_object_add(d, "reason", json_object_new_string(reason && *reason ? reason
	    : "resolved by an operator"));
	dispatch_close(t, "resolved", "ticket_resolved", d);
	json_object_put(t);
	return 0;
}

int
dispatch_submit(int64_t ticket_id, json_object *steps, int64_t not_before, const char *who,
    char *err, size_t errlen)
{
	json_object *t = ticket_open_get(ticket_id, err, errlen);
	int rc = -1;

	if (t == NULL)
		return -1;
	const char *st = T_STR(t, "status");
	/* An action in the executor's or verifier's hands finishes first; one
	 * waiting for approval or a retry is replaced by the operator's plan. */
	if (!strcmp(st, "acting") || !strcmp(st, "verifying")) {
		snprintf(err, errlen, "ticket %lld is %s: wait, reject or resolve it first",
		    (long long)ticket_id, st);
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(steps); i++) {
		json_object *s = json_object_array_get_idx(steps, i);
		char e2[256];
		json_object *p = json_object_get(op_json_obj(s, "params"));
		const struct op_action_def *def = step_validate(T_STR(t, "subject"),
		    op_json_str(s, "action", ""), p ? p : (p = json_object_new_object()), e2, sizeof(e2));
		json_object_put(p);
		if (def == NULL) {
			snprintf(err, errlen, "step %zu: %s", i + 1, e2);
			goto out;
		}
	}
	int64_t replaced = cancel_waiting(t, 0, "replaced by an operator's workflow");
	json_object *ids = json_object_new_array();
	plan_steps(t, steps, who, not_before, 0, ids);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	json_object_object_add(d, "steps", json_object_get(steps));
	json_object_object_add(d, "action_ids", ids);
	json_object_object_add(d, "replaced", json_object_new_int64(replaced));
	if (not_before > 0)
		json_object_object_add(d, "not_before", json_object_new_int64(not_before));
	ticket_event(t, "workflow_submitted", d);
	ticket_set_status(t, "diagnosed", "workflow submitted by an operator");
	dispatch_advance(t);
	rc = 0;
out:
	json_object_put(t);
	return rc;
}
