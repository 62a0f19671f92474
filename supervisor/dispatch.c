/* dispatch: the ticket state machine of DESIGN §4. Every input from a worker
 * or a control client is handled inside one ledger transaction; what it sends
 * goes out through the outbox only after the commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/od.h"

#define T_COLS "id,fingerprint,subject,invariant,entity,status,severity,message,evidence," \
	"opened_at,updated_at,closed_at,occurrences,flaps,attempts,held,acked,reason"
#define A_COLS "id,ticket_id,step,subject,name,params,reason,risk,status,created_at," \
	"not_before,dispatched_at,finished_at,result,error,decided_by,needs_approval,approval_reason"

static void dispatch_advance(json_object *t);
static void dispatch_start_diagnosis(json_object *t);

static json_object *
ticket_get(int64_t id)
{
	return ledger_row(od->ledger, "SELECT " T_COLS " FROM tickets WHERE id=?1", "i", id);
}

static json_object *
ticket_live(const char *fp)
{
	return ledger_row(od->ledger,
	    "SELECT " T_COLS " FROM tickets WHERE fingerprint=?1 AND closed_at IS NULL", "s", fp);
}

static json_object *
action_get(int64_t id)
{
	return ledger_row(od->ledger, "SELECT " A_COLS " FROM actions WHERE id=?1", "i", id);
}

#define T_ID(t) op_json_int((t), "id", 0)
#define T_STR(t, k) op_json_str((t), (k), "")

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
}

static void
ticket_event(json_object *t, const char *type, json_object *data)
{
	outbox_event(type, T_ID(t), T_STR(t, "subject"), T_STR(t, "entity"),
	    T_STR(t, "invariant"), data);
}

static void
dispatch_escalate(json_object *t, const char *reason)
{
	json_object *d = json_object_new_object();

	ticket_set_status(t, "escalated", reason);
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "attempts", json_object_new_int64(op_json_int(t, "attempts", 0)));
	ticket_event(t, "ticket_escalated", d);
	log_info("ticket %lld escalated: %s", (long long)T_ID(t), reason);
}

static void
dispatch_close(json_object *t, const char *status, const char *type, json_object *data)
{
	ledger_exec(od->ledger,
	    "UPDATE actions SET status='cancelled', finished_at=?1 WHERE ticket_id=?2 AND"
	    " status IN ('proposed','awaiting_approval','pending')", "ii", op_wall_ms(), T_ID(t));
	ticket_set_status(t, status, NULL);
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
		    " evidence=?3 WHERE id=?4", "isji", now, message, evidence, T_ID(t));
		json_object_put(t);
		return;
	}
	t = ledger_row(od->ledger,
	    "SELECT " T_COLS " FROM tickets WHERE fingerprint=?1 AND status='resolved'"
	    " AND closed_at > ?2 ORDER BY closed_at DESC LIMIT 1", "si", fp,
	    now - OD_FLAP_WINDOW_MS);
	if (t != NULL) {
		int64_t flaps = op_json_int(t, "flaps", 0) + 1;
		ledger_exec(od->ledger,
		    "UPDATE tickets SET status='open', closed_at=NULL, flaps=?1,"
		    " occurrences=occurrences+1, updated_at=?2, message=?3, evidence=?4 WHERE id=?5",
		    "iisji", flaps, now, message, evidence, T_ID(t));
		json_object_object_add(t, "flaps", json_object_new_int64(flaps));
		json_object_object_add(t, "status", json_object_new_string("open"));
		json_object *d = json_object_new_object();
		json_object_object_add(d, "flaps", json_object_new_int64(flaps));
		json_object_object_add(d, "message", json_object_new_string(message));
		ticket_event(t, "ticket_reopened", d);
		if (flaps >= OD_FLAP_MAX) {
			dispatch_escalate(t, "flapping: reopened too often, no more automatic action");
			json_object_put(t);
			return;
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
	/* While an action runs or is verified, the verifier decides the outcome. */
	if (!op_json_int(t, "held", 0) && strcmp(st, "acting") != 0 && strcmp(st, "verifying") != 0) {
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

static int
plan_actions(json_object *t, json_object *diag)
{
	struct op_subject fake = {0};
	json_object *recs = op_json_arr(diag, "recommended_actions");
	int64_t step = ledger_scalar(od->ledger, 0,
	    "SELECT MAX(step) FROM actions WHERE ticket_id=?1", "i", T_ID(t));
	int planned = 0;

	fake.ops = op_subject_kind(T_STR(t, "subject"));
	if (fake.ops == NULL && strcmp(T_STR(t, "subject"), "") != 0)
		log_warn("ticket %lld: unknown subject kind", (long long)T_ID(t));
	for (size_t i = 0; recs && i < json_object_array_length(recs); i++) {
		json_object *r = json_object_array_get_idx(recs, i);
		const char *name = op_json_str(r, "action", "");
		json_object *params = op_json_obj(r, "parameters");
		char err[256] = "";
		const struct op_action_def *def = fake.ops ? op_subject_action(&fake, name) : NULL;
		json_object *p = params ? json_object_get(params) : json_object_new_object();
		/* The catalogue and its bounds are checked again here: a diagnosis,
		 * whoever wrote it, never reaches the executor unvalidated. */
		if (def == NULL)
			snprintf(err, sizeof(err), "\"%s\" is not in the action catalogue", name);
		else
			op_action_validate(def, p, err, sizeof(err));
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action", json_object_new_string(name));
		json_object_object_add(d, "params", json_object_get(p));
		json_object_object_add(d, "reason", json_object_new_string(op_json_str(r, "reason", "")));
		if (err[0] != '\0') {
			json_object_object_add(d, "error", json_object_new_string(err));
			ticket_event(t, "action_invalid", d);
			json_object_put(p);
			continue;
		}
		int64_t aid = ledger_insert(od->ledger,
		    "INSERT INTO actions(ticket_id,step,subject,name,params,reason,risk,status,created_at)"
		    " VALUES(?1,?2,?3,?4,?5,?6,?7,'proposed',?8)", "iissjssi",
		    T_ID(t), step + 1 + planned, T_STR(t, "subject"), name, p,
		    op_json_str(r, "reason", ""), def->risk, op_wall_ms());
		json_object_object_add(d, "action_id", json_object_new_int64(aid));
		json_object_object_add(d, "risk", json_object_new_string(def->risk));
		ticket_event(t, "action_proposed", d);
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
	plan_actions(t, diag);
	if (op_json_bool(m->body, "require_approval", 0))
		ledger_exec(od->ledger, "UPDATE actions SET needs_approval=1, approval_reason=?1"
		    " WHERE ticket_id=?2 AND status='proposed'", "si",
		    "the model's plan disagrees with the offline rules", tid);
	dispatch_advance(t);
	json_object_put(t);
}

/* ---- executor ---- */

static void
dispatch_action(json_object *t, json_object *a)
{
	if (od->w[OD_EXECUTOR].state != OD_W_READY)
		return; /* stays pending; resumed when the executor is ready */
	ledger_exec(od->ledger, "UPDATE actions SET status='dispatched', dispatched_at=?1 WHERE id=?2",
	    "ii", op_wall_ms(), op_json_int(a, "id", 0));
	json_object *b = json_object_new_object();
	json_object_object_add(b, "ticket_id", json_object_new_int64(T_ID(t)));
	json_object_object_add(b, "action_id", json_object_new_int64(op_json_int(a, "id", 0)));
	json_object_object_add(b, "subject", json_object_new_string(T_STR(t, "subject")));
	json_object_object_add(b, "invariant", json_object_new_string(T_STR(t, "invariant")));
	json_object_object_add(b, "entity", json_object_new_string(T_STR(t, "entity")));
	json_object_object_add(b, "action", json_object_new_string(op_json_str(a, "name", "")));
	json_object_object_add(b, "params", json_object_get(op_json_obj(a, "params")));
	outbox_send(OD_EXECUTOR, OP_MSG_EXECUTE, od_new_id(), b);
}

/* Picks the next step for a diagnosed ticket: the next proposed action under
 * the current mode and kill switch, or escalation when there is none. */
static void
dispatch_advance(json_object *t)
{
	json_object *a;

	if (strcmp(T_STR(t, "status"), "diagnosed") != 0 || op_json_int(t, "held", 0))
		return;
	a = ledger_row(od->ledger, "SELECT " A_COLS " FROM actions WHERE ticket_id=?1 AND"
	    " status='proposed' ORDER BY step LIMIT 1", "i", T_ID(t));
	if (a == NULL) {
		dispatch_escalate(t, op_json_int(t, "attempts", 0) > 0
		    ? "remedies exhausted: the fix did not hold"
		    : "no safe automatic action for this diagnosis");
		return;
	}
	const char *why = NULL;
	if (od->kill_switch)
		why = "kill switch";
	else if (!strcmp(od->mode, "observe"))
		why = "mode observe";
	if (why != NULL) {
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action_id", json_object_new_int64(op_json_int(a, "id", 0)));
		json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(d, "reason", json_object_new_string(why));
		ticket_event(t, "action_skipped", d);
	} else if (!strcmp(od->mode, "approve") || op_json_int(a, "needs_approval", 0)) {
		ledger_exec(od->ledger, "UPDATE actions SET status='awaiting_approval' WHERE id=?1", "i",
		    op_json_int(a, "id", 0));
		ticket_set_status(t, "awaiting_approval", NULL);
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action_id", json_object_new_int64(op_json_int(a, "id", 0)));
		json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(d, "params", json_object_get(op_json_obj(a, "params")));
		json_object_object_add(d, "reason", json_object_new_string(op_json_int(a, "needs_approval", 0)
		    ? op_json_str(a, "approval_reason", "approval required") : "mode approve"));
		ticket_event(t, "action_awaiting_approval", d);
	} else {
		ledger_exec(od->ledger, "UPDATE actions SET status='pending' WHERE id=?1", "i",
		    op_json_int(a, "id", 0));
		ticket_set_status(t, "acting", NULL);
		dispatch_action(t, a);
	}
	json_object_put(a);
}

static void
send_verify(json_object *t, json_object *a, int64_t executed_at)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ticket_id", json_object_new_int64(T_ID(t)));
	json_object_object_add(b, "action_id", json_object_new_int64(a ? op_json_int(a, "id", 0) : 0));
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
	json_object *d = json_object_new_object();
	json_object_object_add(d, "action_id", json_object_new_int64(aid));
	json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
	json_object_object_add(d, "params", json_object_get(op_json_obj(a, "params")));
	json_object_object_add(d, "duration_ms", json_object_new_int64(op_json_int(m->body, "duration_ms", 0)));
	if (!strcmp(status, "executed")) {
		ledger_exec(od->ledger, "UPDATE actions SET status='executed', finished_at=?1, result=?2"
		    " WHERE id=?3", "iji", now, op_json_obj(m->body, "result"), aid);
		ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1 AND ?2=0",
		    "ii", T_ID(t), (int64_t)was_unknown);
		json_object_object_add(d, "result", json_object_get(op_json_obj(m->body, "result")));
		ticket_event(t, "action_executed", d);
		if (!was_unknown && !strcmp(T_STR(t, "status"), "acting")) {
			ticket_set_status(t, "verifying", NULL);
			send_verify(t, a, now);
		}
	} else if (!strcmp(status, "failed")) {
		ledger_exec(od->ledger, "UPDATE actions SET status='failed', finished_at=?1, error=?2"
		    " WHERE id=?3", "isi", now, reason, aid);
		ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1", "i", T_ID(t));
		json_object_object_add(t, "attempts", json_object_new_int64(op_json_int(t, "attempts", 0) + 1));
		json_object_object_add(d, "error", json_object_new_string(reason));
		ticket_event(t, "action_failed", d);
		if (!strcmp(T_STR(t, "status"), "acting")) {
			ticket_set_status(t, "diagnosed", NULL);
			dispatch_advance(t);
		}
	} else { /* skipped */
		const char *kind = op_json_str(m->body, "kind", "precondition");
		json_object_object_add(d, "reason", json_object_new_string(kind));
		json_object_object_add(d, "detail", json_object_new_string(reason));
		json_object_object_add(d, "figures", json_object_get(op_json_obj(m->body, "result")));
		if (!strcmp(kind, "healed")) {
			ledger_exec(od->ledger, "UPDATE actions SET status='skipped', finished_at=?1,"
			    " error=?2 WHERE id=?3", "isi", now, reason, aid);
			ticket_event(t, "action_skipped", d);
			json_object *c = json_object_new_object();
			json_object_object_add(c, "reason",
			    json_object_new_string("invariant healed before the action ran"));
			dispatch_close(t, "cleared", "ticket_cleared", c);
		} else if (!strcmp(kind, "kill switch") || !strcmp(kind, "mode")) {
			ledger_exec(od->ledger, "UPDATE actions SET status='proposed' WHERE id=?1", "i", aid);
			ticket_event(t, "action_skipped", d);
			ticket_set_status(t, "diagnosed", NULL);
		} else {
			ledger_exec(od->ledger, "UPDATE actions SET status='skipped', finished_at=?1,"
			    " error=?2 WHERE id=?3", "isi", now, reason, aid);
			ticket_event(t, "action_skipped", d);
			ticket_set_status(t, "diagnosed", NULL);
			dispatch_advance(t);
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

	if (t == NULL || strcmp(T_STR(t, "status"), "verifying") != 0) {
		log_info("verification of ticket %lld no longer wanted", (long long)tid);
		json_object_put(t);
		return;
	}
	ledger_insert(od->ledger,
	    "INSERT INTO verifications(ticket_id,action_id,started_at,finished_at,result,figures)"
	    " VALUES(?1,NULLIF(?2,0),?3,?4,?5,?6)", "iiiisj", tid, aid,
	    op_json_int(m->body, "started_at", 0), op_wall_ms(), result,
	    op_json_obj(m->body, "figures"));
	json_object *d = json_object_get(m->body);
	ticket_event(t, "verification", d);
	if (!strcmp(result, "success")) {
		json_object *r = json_object_new_object();
		json_object_object_add(r, "action_id", json_object_new_int64(aid));
		json_object_object_add(r, "figures", json_object_get(op_json_obj(m->body, "figures")));
		dispatch_close(t, "resolved", "ticket_resolved", r);
		log_info("ticket %lld resolved: fix verified", (long long)tid);
	} else {
		ticket_set_status(t, "diagnosed", NULL);
		int64_t left = ledger_scalar(od->ledger, 0, "SELECT COUNT(*) FROM actions WHERE"
		    " ticket_id=?1 AND status='proposed'", "i", tid);
		if (left > 0)
			dispatch_advance(t);
		else if (op_json_int(t, "attempts", 0) < OD_MAX_ATTEMPTS)
			dispatch_start_diagnosis(t); /* a new attempt, from a fresh look */
		else
			dispatch_escalate(t, "the fix did not hold after the last attempt");
	}
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
		rows = ledger_rows(od->ledger, "SELECT " T_COLS " FROM tickets WHERE status='diagnosing'", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++)
			outbox_send(OD_DIAGNOSER, OP_MSG_DIAGNOSE, od_new_id(),
			    ticket_job(json_object_array_get_idx(rows, i)));
		json_object_put(rows);
		break;
	case OD_EXECUTOR:
		rows = ledger_rows(od->ledger, "SELECT " A_COLS " FROM actions WHERE status='pending'"
		    " ORDER BY id", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *a = json_object_array_get_idx(rows, i);
			json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
			if (t != NULL && !od->kill_switch)
				dispatch_action(t, a);
			json_object_put(t);
		}
		json_object_put(rows);
		break;
	case OD_VERIFIER:
		rows = ledger_rows(od->ledger, "SELECT " T_COLS " FROM tickets WHERE status='verifying'", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *t = json_object_array_get_idx(rows, i);
			json_object *a = ledger_row(od->ledger, "SELECT " A_COLS " FROM actions WHERE"
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
	json_object *rows = ledger_rows(od->ledger, "SELECT " A_COLS " FROM actions WHERE"
	    " status='dispatched'", "");

	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *a = json_object_array_get_idx(rows, i);
		json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
		ledger_exec(od->ledger, "UPDATE actions SET status='unknown', finished_at=?1, error=?2"
		    " WHERE id=?3", "isi", op_wall_ms(), why, op_json_int(a, "id", 0));
		ledger_exec(od->ledger, "UPDATE tickets SET attempts=attempts+1 WHERE id=?1", "i",
		    op_json_int(a, "ticket_id", 0));
		if (t == NULL)
			continue;
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action_id", json_object_new_int64(op_json_int(a, "id", 0)));
		json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(d, "reason", json_object_new_string(why));
		ticket_event(t, "action_unknown", d);
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

void
dispatch_recover(void)
{
	mark_dispatched_unknown("daemon restarted while the action was in flight");
	outbox_commit();
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
		json_object *rows = ledger_rows(od->ledger, "SELECT " A_COLS " FROM actions WHERE"
		    " status IN ('awaiting_approval','pending')", "");
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *a = json_object_array_get_idx(rows, i);
			json_object *t = ticket_get(op_json_int(a, "ticket_id", 0));
			ledger_exec(od->ledger, "UPDATE actions SET status='proposed' WHERE id=?1", "i",
			    op_json_int(a, "id", 0));
			if (t != NULL) {
				json_object *d = json_object_new_object();
				json_object_object_add(d, "action_id", json_object_new_int64(op_json_int(a, "id", 0)));
				json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
				json_object_object_add(d, "reason", json_object_new_string("kill switch"));
				ticket_event(t, "action_skipped", d);
				ticket_set_status(t, "diagnosed", NULL);
			}
			json_object_put(t);
		}
		json_object_put(rows);
		return;
	}
	json_object *rows = ledger_rows(od->ledger, "SELECT " T_COLS " FROM tickets WHERE"
	    " status='diagnosed'", "");
	for (size_t i = 0; i < json_object_array_length(rows); i++)
		dispatch_advance(json_object_array_get_idx(rows, i));
	json_object_put(rows);
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
	else {
		ledger_exec(od->ledger, "UPDATE actions SET status='pending', decided_by=?1 WHERE id=?2",
		    "si", who, action_id);
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action_id", json_object_new_int64(action_id));
		json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(d, "by", json_object_new_string(who));
		ticket_event(t, "action_approved", d);
		ticket_set_status(t, "acting", NULL);
		dispatch_action(t, a);
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
		json_object *d = json_object_new_object();
		json_object_object_add(d, "action_id", json_object_new_int64(action_id));
		json_object_object_add(d, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(d, "by", json_object_new_string(who));
		json_object_object_add(d, "reason", json_object_new_string(reason ? reason : ""));
		ticket_event(t, "action_rejected", d);
		dispatch_close(t, "rejected", "ticket_rejected", json_object_new_object());
		rc = 0;
	}
	json_object_put(a);
	json_object_put(t);
	return rc;
}
