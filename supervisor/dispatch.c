/* dispatch: frames from the workers. Each role may send only the message
 * types in its row of dispatch_allowed; anything else is a protocol
 * violation and restarts that worker (relayd's fatalx, one process down).
 * Every frame is handled inside one ledger transaction; what it sends goes
 * out through the outbox only after the commit. */
#include <stdio.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

#define DISPATCH_MAX_ALLOWED 6

/* Which message types each role may send (besides hello, which proc.c takes). */
static const enum op_msg_type dispatch_allowed[OD_NWORKERS][DISPATCH_MAX_ALLOWED] = {
	[OD_OBSERVER] = {OP_MSG_VIOLATION, OP_MSG_CLEARED, OP_MSG_OBSERVED, OP_MSG_OBSERVE_REP},
	[OD_DIAGNOSER] = {OP_MSG_DIAGNOSIS},
	[OD_EXECUTOR] = {OP_MSG_ACTION_RESULT},
	[OD_VERIFIER] = {OP_MSG_VERIFICATION},
	[OD_CHAOS] = {OP_MSG_FAULT, OP_MSG_REPLY},
};

int
dispatch_may_send(enum od_role role, enum op_msg_type type)
{
	for (int i = 0; i < DISPATCH_MAX_ALLOWED; i++)
		if (dispatch_allowed[role][i] == type && type != OP_MSG_INVALID)
			return 1;
	return 0;
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
	struct ticket t;

	op_fingerprint(fp, sizeof(fp), subject, invariant, entity);
	int live = ticket_load_live(&t, fp) == 0;
	outbox_event("violation", live ? t.id : 0, subject, entity, invariant,
	    json_object_get(m->body));
	if (live) {
		ticket_note_violation(&t, message, evidence);
		ticket_free(&t);
		return;
	}
	if (!ha_may_open(subject, invariant, entity))
		return; /* [ha] a standby observes but opens nothing */
	if (ticket_load_recent_resolved(&t, fp, op_wall_ms() - od->safety.flap_window_ms) == 0) {
		int64_t flaps = op_json_int(t.row, "flaps", 0) + 1;
		if (ticket_reopen(&t, flaps, message, evidence) != 0) {
			ticket_free(&t);
			return;
		}
		json_object *d = json_object_new_object();
		json_object_object_add(d, "flaps", json_object_new_int64(flaps));
		json_object_object_add(d, "flap_max", json_object_new_int64(od->safety.flap_max));
		json_object_object_add(d, "flap_window_ms", json_object_new_int64(od->safety.flap_window_ms));
		json_object_object_add(d, "message", json_object_new_string(message));
		ticket_event(&t, "ticket_reopened", d);
		if (flaps >= od->safety.flap_max) {
			char why[160];
			snprintf(why, sizeof(why), "flapping: reopened %lld times within %llds, no more"
			    " automatic action", (long long)flaps,
			    (long long)(od->safety.flap_window_ms / 1000));
			acting_escalate(&t, why);
			ticket_free(&t);
			return;
		}
		if (op_json_int(t.row, "held", 0)) {
			ticket_free(&t);
			return; /* a held ticket waits for its human */
		}
	} else {
		int64_t id = ticket_insert(fp, subject, invariant, entity, severity, message, evidence);
		if (id < 0 || ticket_load(&t, id) != 0)
			return;
		json_object *d = json_object_new_object();
		json_object_object_add(d, "fingerprint", json_object_new_string(fp));
		json_object_object_add(d, "severity", json_object_new_string(severity));
		json_object_object_add(d, "message", json_object_new_string(message));
		ticket_event(&t, "ticket_opened", d);
		log_info("ticket %lld opened: %s", (long long)id, fp);
	}
	acting_start_diagnosis(&t);
	ticket_free(&t);
}

static void
on_cleared(struct op_msg *m)
{
	char fp[512];
	struct ticket t;

	op_fingerprint(fp, sizeof(fp), op_json_str(m->body, "subject", ""),
	    op_json_str(m->body, "invariant", ""), op_json_str(m->body, "entity", ""));
	if (ticket_load_live(&t, fp) != 0)
		return;
	if (op_json_int(t.row, "held", 0)) {
		/* Held: a human decides when it closes. Remember it healed for unhold. */
		ticket_mark_healed(&t, 1);
		json_object *d = json_object_new_object();
		json_object_object_add(d, "held", json_object_new_boolean(1));
		json_object_object_add(d, "evidence", json_object_get(op_json_obj(m->body, "evidence")));
		ticket_event(&t, "ticket_healed", d);
	} else if (t.status != TK_ACTING && t.status != TK_VERIFYING) {
		/* While an action runs or is verified, the verifier decides the outcome. */
		json_object *d = json_object_new_object();
		json_object_object_add(d, "reason", json_object_new_string("invariant healed by itself"));
		json_object_object_add(d, "evidence", json_object_get(op_json_obj(m->body, "evidence")));
		acting_close(&t, TK_CLEARED, "ticket_cleared", d);
		log_info("ticket %lld cleared: healed without action", (long long)t.id);
	}
	ticket_free(&t);
}

/* ---- diagnoser ---- */

static void
on_diagnosis(struct op_msg *m)
{
	int64_t tid = op_json_int(m->body, "ticket_id", 0);
	json_object *diag = op_json_obj(m->body, "diagnosis");
	struct ticket t;

	if (ticket_load(&t, tid) != 0 || t.status != TK_DIAGNOSING) {
		log_info("diagnosis for ticket %lld no longer wanted (%s)", (long long)tid,
		    t.row ? tk_status_name(t.status) : "unknown ticket");
		ticket_free(&t);
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
	for (size_t k = 0; k < OP_ARRAY_LEN(meta); k++) {
		json_object *v;
		if (json_object_object_get_ex(m->body, meta[k], &v))
			json_object_object_add(d, meta[k], json_object_get(v));
	}
	json_object_object_add(d, "primary_diagnosis",
	    json_object_new_string(op_json_str(diag, "primary_diagnosis", "")));
	json_object_object_add(d, "confidence", json_object_new_double(op_json_double(diag, "confidence", 0)));
	json_object_object_add(d, "diagnosis", json_object_get(diag));
	ticket_event(&t, "diagnosis", d);
	ticket_set_status(&t, TK_DIAGNOSED, NULL);
	/* The recommended actions are one workflow: ordered steps, each verified
	 * before the next, stopping at the first that fails. */
	acting_plan(&t, op_json_arr(diag, "recommended_actions"), NULL, 0, NULL);
	if (op_json_bool(m->body, "require_approval", 0))
		ledger_exec(od->ledger, "UPDATE actions SET needs_approval=1, approval_reason=?1"
		    " WHERE ticket_id=?2 AND status='proposed'", "si", op_json_str(m->body,
		    "approval_reason", "the model's plan disagrees with the offline rules"), tid);
	acting_advance(&t);
	ticket_free(&t);
}

/* ---- executor ---- */

static void
on_executed(struct ticket *t, struct action *a, struct op_msg *m, json_object *x, int was_unknown)
{
	action_set_status(a, ACT_EXECUTED, NULL);
	ledger_exec(od->ledger, "UPDATE actions SET result=?1, applied='yes' WHERE id=?2", "ji",
	    op_json_obj(m->body, "result"), a->id);
	json_object_object_add(a->row, "applied", json_object_new_string("yes"));
	if (!was_unknown)
		ticket_add_attempt(t);
	json_object_object_add(x, "result", json_object_get(op_json_obj(m->body, "result")));
	action_event(t, a, "action_executed", NULL, json_object_get(x));
	if (!was_unknown && t->status == TK_ACTING)
		acting_verify(t, a);
}

static void
on_failed(struct ticket *t, struct action *a, struct op_msg *m, json_object *x, int was_unknown)
{
	const char *reason = op_json_str(m->body, "reason", "");
	/* The executor says whether the failure took effect: "no" (refused
	 * before anything was sent) may be retried, "rejected" (the system
	 * refused it) may not, "unknown" is never re-run blindly: verify. */
	const char *applied = op_json_str(m->body, "applied", "unknown");

	json_object_object_add(x, "error", json_object_new_string(reason));
	json_object_object_add(x, "applied", json_object_new_string(applied));
	json_object_object_add(x, "result", json_object_get(op_json_obj(m->body, "result")));
	if (!strcmp(applied, "unknown") && !was_unknown) {
		action_set_status(a, ACT_UNKNOWN, reason);
		ledger_exec(od->ledger, "UPDATE actions SET applied='unknown', result=?1 WHERE id=?2",
		    "ji", op_json_obj(m->body, "result"), a->id);
		json_object_object_add(a->row, "applied", json_object_new_string("unknown"));
		ticket_add_attempt(t);
		action_event(t, a, "action_unknown", "the failure may have taken effect: verify",
		    json_object_get(x));
		if (t->status == TK_ACTING)
			acting_verify(t, a);
		return;
	}
	ledger_exec(od->ledger, "UPDATE actions SET applied=?1, result=?2 WHERE id=?3", "sji",
	    applied, op_json_obj(m->body, "result"), a->id);
	int retry = !strcmp(applied, "no") && !was_unknown &&
	    op_json_int(a->row, "attempt", 0) < op_json_int(a->row, "max_attempts",
	    od->safety.retry_attempts) && t->status == TK_ACTING;
	json_object_object_add(x, "will_retry", json_object_new_boolean(retry));
	action_event(t, a, "action_failed", NULL, json_object_get(x));
	if (retry && acting_retry(t, a, reason))
		return;
	action_set_status(a, ACT_FAILED, reason);
	ticket_add_attempt(t);
	acting_step_failed(t, a, reason);
}

static void
on_skipped(struct ticket *t, struct action *a, struct op_msg *m, json_object *x, int was_unknown)
{
	const char *reason = op_json_str(m->body, "reason", "");
	const char *kind = op_json_str(m->body, "kind", "precondition");

	json_object_object_add(x, "detail", json_object_new_string(reason));
	json_object_object_add(x, "figures", json_object_get(op_json_obj(m->body, "result")));
	if (!strcmp(kind, "healed")) {
		action_set_status(a, ACT_SKIPPED, reason);
		action_event(t, a, "action_skipped", kind, json_object_get(x));
		json_object *c = json_object_new_object();
		if (ticket_closed(t)) {
			/* A human closed it while the action was in flight. */
			json_object_put(c);
		} else if (action_workflow_verified(t, a)) {
			/* An earlier step fixed it; the rest of the chain is not needed. */
			json_object_object_add(c, "reason", json_object_new_string(
			    "fixed by a verified earlier step; the remaining steps were not needed"));
			acting_close(t, TK_RESOLVED, "ticket_resolved", c);
		} else {
			json_object_object_add(c, "reason",
			    json_object_new_string("invariant healed before the action ran"));
			acting_close(t, TK_CLEARED, "ticket_cleared", c);
		}
	} else if (!strcmp(kind, "kill switch") || !strcmp(kind, "mode") ||
	    !strcmp(kind, "not_leader")) {
		action_event(t, a, "action_skipped", kind, json_object_get(x));
		if (ticket_closed(t)) {
			/* Closed meanwhile: this plan must never come back on a reopen. */
			action_set_status(a, ACT_SKIPPED, "ticket closed while the action was refused");
		} else {
			/* Not an attempt, and the go-ahead is void: it must be given again. */
			action_set_status(a, ACT_PROPOSED, NULL);
			ledger_exec(od->ledger, "UPDATE actions SET attempt=MAX(attempt-1,0),"
			    " decided_by=CASE WHEN requested_by IS NULL THEN NULL ELSE decided_by END"
			    " WHERE id=?1", "i", a->id);
			ticket_set_status(t, TK_DIAGNOSED, NULL);
			/* The switch may already be off again: decide afresh (it re-checks).
			 * [ha] fenced: a new term, if ours, advances it (ha.c). */
			if (ha_fenced(kind))
				acting_advance(t);
		}
	} else {
		action_event(t, a, "action_skipped", "precondition", json_object_get(x));
		/* A precondition refusal never took effect: retry while it may pass. */
		if (!strcmp(kind, "precondition") && !was_unknown && acting_retry(t, a, reason))
			return;
		action_set_status(a, ACT_SKIPPED, reason);
		acting_step_failed(t, a, reason);
	}
}

/* issue 9: the kill switch stopped a running action at a cancellation
 * point; its result says what it had already done. A human takes over. */
static void
on_cancelled(struct ticket *t, struct action *a, struct op_msg *m, json_object *x)
{
	const char *reason = op_json_str(m->body, "reason", "kill switch");
	json_object *res = op_json_obj(m->body, "result");
	char why[640];

	ledger_exec(od->ledger, "UPDATE actions SET result=?1, applied=?2 WHERE id=?3", "jsi", res,
	    op_json_int(res, "accepted", 0) > 0 ? "partly" : "no", a->id);
	action_set_status(a, ACT_CANCELLED, reason);
	ticket_add_attempt(t);
	json_object_object_add(x, "reason", json_object_new_string(reason));
	json_object_object_add(x, "done", json_object_new_string(op_json_str(res, "done", "")));
	json_object_object_add(x, "result", json_object_get(res));
	action_event(t, a, "action_cancelled", "kill switch", json_object_get(x));
	snprintf(why, sizeof(why), "cancelled by the kill switch: %s", reason);
	acting_step_failed(t, a, why);
}

static void
on_action_result(struct op_msg *m)
{
	int64_t aid = op_json_int(m->body, "action_id", 0);
	const char *status = op_json_str(m->body, "status", "");
	struct action a;
	struct ticket t = {0};

	if (action_load(&a, aid) != 0 || ticket_load(&t, a.ticket_id) != 0) {
		log_warn("result for unknown action %lld", (long long)aid);
		goto out;
	}
	if (op_json_bool(m->body, "undo", 0)) { /* issue 9: the undo of an executed action */
		acting_undo_result(&t, &a, m->body);
		goto out;
	}
	int was_unknown = a.status == ACT_UNKNOWN;
	if (a.status != ACT_DISPATCHED && !was_unknown) {
		log_warn("action %lld: duplicate result ignored (status %s)", (long long)aid,
		    act_status_name(a.status));
		goto out;
	}
	json_object *x = json_object_new_object();
	json_object_object_add(x, "duration_ms", json_object_new_int64(op_json_int(m->body, "duration_ms", 0)));
	json_object_object_add(x, "attempt", json_object_new_int64(op_json_int(a.row, "attempt", 0)));
	if (!strcmp(status, "executed")) {
		on_executed(&t, &a, m, x, was_unknown);
	} else if (!strcmp(status, "skipped")) {
		on_skipped(&t, &a, m, x, was_unknown);
	} else if (!strcmp(status, "cancelled") && !was_unknown) {
		on_cancelled(&t, &a, m, x);
	} else {
		if (strcmp(status, "failed") != 0) {
			/* Nobody knows what happened: never retry it blindly, verify instead. */
			log_warn("action %lld: unrecognised result status \"%s\"; treating it as unknown",
			    (long long)aid, status);
			json_object_object_add(m->body, "applied", json_object_new_string("unknown"));
		}
		on_failed(&t, &a, m, x, was_unknown);
	}
	json_object_put(x);
out:
	action_free(&a);
	ticket_free(&t);
}

/* ---- verifier ---- */

static void
on_verification(struct op_msg *m)
{
	int64_t tid = op_json_int(m->body, "ticket_id", 0);
	int64_t aid = op_json_int(m->body, "action_id", 0);
	const char *result = op_json_str(m->body, "result", "failure");
	struct ticket t;
	struct action a = {0}, next = {0};
	int ok = !strcmp(result, "success");

	if (ticket_load(&t, tid) != 0 || t.status != TK_VERIFYING) {
		log_info("verification of ticket %lld no longer wanted", (long long)tid);
		goto out;
	}
	if (aid > 0)
		action_load(&a, aid);
	/* issue 9: a heal the action could not have caused earns no credit */
	char uwhy[512];
	int unproven = ok && a.row != NULL && acting_unproven(&t, &a, uwhy, sizeof(uwhy));
	if (unproven) {
		json_object_object_add(m->body, "result", json_object_new_string("unproven"));
		json_object_object_add(m->body, "unproven_reason", json_object_new_string(uwhy));
		result = op_json_str(m->body, "result", "unproven");
	}
	ledger_insert(od->ledger,
	    "INSERT INTO verifications(ticket_id,action_id,started_at,finished_at,result,figures)"
	    " VALUES(?1,NULLIF(?2,0),?3,?4,?5,?6)", "iiiisj", tid, aid,
	    op_json_int(m->body, "started_at", 0), op_wall_ms(), result,
	    op_json_obj(m->body, "figures"));
	json_object *d = json_object_get(m->body);
	if (a.row != NULL) {
		json_object_object_add(d, "step", json_object_new_int64(op_json_int(a.row, "step", 0)));
		if (a.workflow > 0)
			json_object_object_add(d, "workflow", json_object_new_int64(a.workflow));
	}
	ticket_event(&t, "verification", d);
	/* An action whose effect nobody knows (the executor died during the call,
	 * or a new [ha] leader resumed it) may never have run: it earns neither a
	 * promotion's credit nor a demotion's blame. */
	int unknown = a.row != NULL && !strcmp(op_json_str(a.row, "applied", ""), "unknown");
	if (a.row != NULL)
		policy_record_outcome(t.row, a.row, unproven || unknown ? -1 : ok);
	if (op_json_int(t.row, "held", 0)) {
		/* No auto-resolve while held: the outcome waits for unhold. */
		ticket_set_status(&t, TK_DIAGNOSED, ok ? "verified while held" : NULL);
		if (ok)
			ticket_mark_healed(&t, 1);
		goto out;
	}
	int more = a.row != NULL && action_load_next(&next, tid, a.workflow) == 0;
	if (ok && more) {
		/* This step holds: on to the next one of the workflow. */
		json_object *x = json_object_new_object();
		json_object_object_add(x, "next_action_id", json_object_new_int64(next.id));
		json_object_object_add(x, "next_step", json_object_new_int64(op_json_int(next.row, "step", 0)));
		action_event(&t, &a, "workflow_step_verified", NULL, x);
		ticket_set_status(&t, TK_DIAGNOSED, NULL);
		acting_advance(&t);
	} else if (ok) {
		json_object *r = json_object_new_object();
		json_object_object_add(r, "action_id", json_object_new_int64(aid));
		json_object_object_add(r, "figures", json_object_get(op_json_obj(m->body, "figures")));
		if (unproven) /* issue 9: it holds, but not provably thanks to the action */
			json_object_object_add(r, "verification", json_object_new_string("unproven"));
		acting_close(&t, TK_RESOLVED, "ticket_resolved", r);
		log_info("ticket %lld resolved: fix verified", (long long)tid);
	} else {
		/* The chain stops at the first step that does not hold. */
		int64_t n = a.row ? action_cancel_waiting(&t, a.workflow, "workflow stopped") : 0;
		if (n > 0) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "cancelled_steps", json_object_new_int64(n));
			action_event(&t, &a, "workflow_stopped", "verification failed", x);
		}
		ticket_set_status(&t, TK_DIAGNOSED, NULL);
		/* issue 9: a fix that made things worse is undone before anything else */
		if (a.row != NULL && acting_undo_if_worse(&t, &a, op_json_obj(m->body, "figures")))
			goto out;
		if (a.row != NULL && op_json_str(a.row, "requested_by", NULL) != NULL) {
			char why[256];
			snprintf(why, sizeof(why), "the operator's workflow stopped at step %lld (%s):"
			    " verification failed", (long long)op_json_int(a.row, "step", 0), a.name);
			acting_escalate(&t, why);
		} else if (op_json_int(t.row, "attempts", 0) < OD_MAX_ATTEMPTS) {
			acting_start_diagnosis(&t); /* a new attempt, from a fresh look */
		} else {
			acting_escalate(&t, "the fix did not hold after the last attempt");
		}
	}
out:
	action_free(&next);
	action_free(&a);
	ticket_free(&t);
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
	if (!dispatch_may_send(w->role, m->type)) {
		/* Our own worker speaking out of turn is a bug in us: restart it. */
		log_warn("%s sent a %s frame, which its role never sends; restarting it", w->name,
		    op_msg_type_name(m->type));
		proc_fail_worker(w);
		return;
	}
	/* Frames that change no state pass through without a transaction:
	 * a BEGIN/COMMIT (and its disk sync) per liveness frame is pure cost. */
	switch (m->type) {
	case OP_MSG_OBSERVED: /* liveness, and the node count for the blast radius */
		policy_note_nodes(op_json_str(m->body, "subject", NULL), op_json_int(m->body, "nodes", 0));
		return;
	case OP_MSG_OBSERVE_REP:
	case OP_MSG_REPLY:
		control_worker_reply(w, m);
		return;
	default:
		break;
	}
	outbox_begin();
	switch (m->type) {
	case OP_MSG_VIOLATION: on_violation(m); break;
	case OP_MSG_CLEARED: on_cleared(m); break;
	case OP_MSG_DIAGNOSIS: on_diagnosis(m); break;
	case OP_MSG_ACTION_RESULT: on_action_result(m); break;
	case OP_MSG_VERIFICATION: on_verification(m); break;
	case OP_MSG_FAULT: on_fault(m); break;
	default: break;
	}
	outbox_commit();
}

/* ---- worker lifecycle ---- */

static void
dispatch_resend_verifications(void)
{
	json_object *rows = ticket_rows_by_status(TK_VERIFYING);

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct ticket t;
		struct action a;
		if (ticket_from_row(&t, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		int have = action_load_last_run(&a, t.id) == 0;
		/* A resumed verification starts a fresh window from now: the time
		 * the daemon or the verifier was down says nothing about the fix. */
		acting_send_verify(&t, have ? &a : NULL, op_wall_ms(), 1);
		if (have)
			action_free(&a);
		ticket_free(&t);
	}
	json_object_put(rows);
}

void
dispatch_worker_ready(struct od_worker *w)
{
	json_object *rows;

	switch (w->role) {
	case OD_OBSERVER: {
		json_object *b = json_object_new_object();
		json_object_object_add(b, "fingerprints", ticket_live_fingerprints());
		outbox_send(OD_OBSERVER, OP_MSG_WATCH, od_new_id(), b);
		break;
	}
	case OD_DIAGNOSER:
		rows = ticket_rows_by_status(TK_DIAGNOSING);
		for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
			struct ticket t;
			if (ticket_from_row(&t, json_object_get(json_object_array_get_idx(rows, i))) != 0)
				continue;
			acting_send_diagnose(&t);
			ticket_set_deadline(&t, op_wall_ms() + od->diagnose_deadline_ms);
			ticket_free(&t);
		}
		json_object_put(rows);
		break;
	case OD_EXECUTOR:
		acting_resume_pending();
		break;
	case OD_VERIFIER:
		dispatch_resend_verifications();
		break;
	case OD_CHAOS:
		rows = ledger_rows(od->ledger, "SELECT id,fault,subject,target,params,started_at,ttl_ms,"
		    "undo FROM faults WHERE status='active'", "");
		for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
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
	json_object *rows = action_rows_by_status(ACT_DISPATCHED);

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct action a;
		struct ticket t;
		if (action_from_row(&a, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		action_set_status(&a, ACT_UNKNOWN, why);
		ledger_exec(od->ledger, "UPDATE actions SET applied='unknown' WHERE id=?1", "i", a.id);
		json_object_object_add(a.row, "applied", json_object_new_string("unknown"));
		if (ticket_load(&t, a.ticket_id) == 0) {
			ticket_add_attempt(&t);
			action_event(&t, &a, "action_unknown", why, NULL);
			if (t.status == TK_ACTING)
				acting_verify(&t, &a);
		}
		ticket_free(&t);
		action_free(&a);
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
	timer_start();
}

/* A job frame that can never reach its worker (over OP_MSG_MAX): the step
 * fails in its own transaction, with an event, instead of waiting for ever. */
void
dispatch_undeliverable(enum od_role role, const struct op_msg *m)
{
	int64_t tid = op_json_int(m->body, "ticket_id", 0);
	struct ticket t;
	char why[160];

	if (tid <= 0)
		return; /* not a job: nothing waits on it */
	outbox_begin();
	if (ticket_load(&t, tid) == 0 && !ticket_closed(&t)) {
		snprintf(why, sizeof(why), "the %s frame for the %s is over %u bytes and cannot be"
		    " sent", op_msg_type_name(m->type), od->w[role].name, OP_MSG_MAX);
		if (m->type == OP_MSG_EXECUTE) {
			struct action a;
			if (action_load(&a, op_json_int(m->body, "action_id", 0)) == 0) {
				/* Never sent, so it never ran. */
				action_set_status(&a, ACT_FAILED, why);
				ledger_exec(od->ledger, "UPDATE actions SET applied='no' WHERE id=?1", "i", a.id);
				action_event(&t, &a, "action_failed", why, NULL);
				action_free(&a);
			}
			ticket_set_status(&t, TK_DIAGNOSED, NULL);
		} else if (t.status == TK_VERIFYING) {
			ticket_set_status(&t, TK_DIAGNOSED, NULL);
		}
		acting_escalate(&t, why);
	}
	ticket_free(&t);
	outbox_commit();
}
