/* acting: the acting-safely engine of DESIGN §7. It plans the steps of a
 * diagnosis or an operator's workflow, decides for each whether it runs,
 * waits for a human, is shadowed or refused, hands it to the executor and
 * the verifier, retries what is known not to have taken effect, and keeps
 * the timer that wakes retries, schedules, approval deadlines and the
 * deadline of every in-flight state. Everything that waits waits in a
 * ledger row, so a restart resumes it and never runs an action twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

#define OD_HISTORY_MAX 3 /* similar past tickets given to the diagnoser */

static json_object *
acting_job(const struct ticket *t)
{
	json_object *job = json_object_new_object();

	json_object_object_add(job, "ticket", json_object_get(t->row));
	json_object_object_add(job, "ticket_id", json_object_new_int64(t->id));
	json_object_object_add(job, "history", ticket_history(t, OD_HISTORY_MAX));
	return job;
}

void
acting_send_diagnose(const struct ticket *t)
{
	outbox_send(OD_DIAGNOSER, OP_MSG_DIAGNOSE, od_new_id(), acting_job(t));
}

void
acting_start_diagnosis(struct ticket *t)
{
	if (ticket_set_status(t, TK_DIAGNOSING, NULL) != 0)
		return;
	ticket_set_deadline(t, op_wall_ms() + od->diagnose_deadline_ms);
	acting_send_diagnose(t);
}

/* The observer reports a violation only when it starts firing; a ticket
 * that closes while the fault is still there must be reported again, so
 * the observer forgets what it said about the fingerprint. */
static void
acting_tell_observer_closed(const struct ticket *t)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "subject", json_object_new_string(t->subject));
	json_object_object_add(b, "invariant", json_object_new_string(t->invariant));
	json_object_object_add(b, "entity", json_object_new_string(t->entity));
	outbox_send(OD_OBSERVER, OP_MSG_CLOSED, od_new_id(), b);
}

void
acting_escalate(struct ticket *t, const char *reason)
{
	json_object *d;

	action_cancel_waiting(t, 0, reason);
	if (ticket_set_status(t, TK_ESCALATED, reason) != 0)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "attempts", json_object_new_int64(op_json_int(t->row, "attempts", 0)));
	json_object_object_add(d, "flaps", json_object_new_int64(op_json_int(t->row, "flaps", 0)));
	ticket_event(t, "ticket_escalated", d);
	log_info("ticket %lld escalated: %s", (long long)t->id, reason);
}

void
acting_close(struct ticket *t, enum tk_status status, const char *type, json_object *data)
{
	if (ticket_set_status(t, status, op_json_str(data, "reason", NULL)) != 0) {
		json_object_put(data);
		return;
	}
	action_cancel_waiting(t, 0, tk_status_name(status));
	/* A hold ends with the ticket: a recurrence must not reopen it frozen. */
	ledger_exec(od->ledger, "UPDATE tickets SET held=0, held_by=NULL WHERE id=?1", "i", t->id);
	json_object_object_add(t->row, "held", json_object_new_int(0));
	json_object_object_add(data, "duration_ms",
	    json_object_new_int64(op_wall_ms() - op_json_int(t->row, "opened_at", 0)));
	ticket_event(t, type, data);
	acting_tell_observer_closed(t);
}

/* Validates one step against the catalogue and its bounds; err says why not. */
const struct op_action_def *
acting_step_validate(const char *subject, const char *name, json_object *p, char *err,
    size_t errlen)
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
int
acting_plan(struct ticket *t, json_object *recs, const char *requested_by, int64_t not_before,
    json_object *planned_ids)
{
	int64_t step = action_max_step(t->id);
	int64_t wf = 0;
	int planned = 0;
	size_t nrecs = recs ? json_object_array_length(recs) : 0;

	if (nrecs > OD_PLAN_MAX_STEPS) {
		/* A plan that long is not a remedy; a frame may carry 200k values. */
		log_warn("ticket %lld: %zu recommended steps, keeping the first %d", (long long)t->id,
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
		const struct op_action_def *def = acting_step_validate(t->subject, name, p, err,
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
		/* issue 9: a plan from any backend must fit the ticket (what it remedies,
		 * what it acts on); an operator's own workflow is a human's call. */
		char fwhy[512] = "";
		int fit = requested_by ? OP_FIT_OK : op_plan_fits_kind(t->subject, t->invariant,
		    t->entity, op_json_obj(t->row, "evidence"), name, p, fwhy, sizeof(fwhy));
		if (fit == OP_FIT_NO) {
			char ferr[600];
			snprintf(ferr, sizeof(ferr), "does not fit the ticket: %s", fwhy);
			json_object_object_add(d, "error", json_object_new_string(ferr));
			ticket_event(t, "action_invalid", d);
			json_object_put(p);
			continue;
		}
		int64_t aid = ledger_insert(od->ledger,
		    "INSERT INTO actions(ticket_id,step,subject,name,params,reason,risk,status,created_at,"
		    "max_attempts,requested_by,decided_by,not_before,workflow,target,needs_approval)"
		    " VALUES(?1,?2,?3,?4,?5,?6,?7,'proposed',?8,?9,?10,?10,NULLIF(?11,0),NULLIF(?12,0),"
		    "?13,0)", "iissjssiisiis",
		    t->id, step + 1 + planned, t->subject, name, p, op_json_str(r, "reason", ""),
		    def->risk, op_wall_ms(), od->safety.retry_attempts, requested_by, not_before, wf,
		    policy_target(p));
		if (aid < 0) {
			json_object_put(d);
			json_object_put(p);
			continue;
		}
		if (wf == 0) {
			wf = aid;
			ledger_exec(od->ledger, "UPDATE actions SET workflow=?1 WHERE id=?1", "i", aid);
		}
		if (fit == OP_FIT_APPROVAL) /* issue 9: within bounds, past what runs unattended */
			ledger_exec(od->ledger, "UPDATE actions SET needs_approval=1, approval_reason=?1"
			    " WHERE id=?2", "si", fwhy, aid);
		else if (!requested_by && def->irreversible && !strcmp(def->risk, "high"))
			/* issue 9: nothing brings it back; above medium risk a human decides,
			 * whatever approval_risk says */
			ledger_exec(od->ledger, "UPDATE actions SET needs_approval=1, approval_reason=?1"
			    " WHERE id=?2", "si", "irreversible action above medium risk", aid);
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
acting_dispatch(struct ticket *t, struct action *a)
{
	if (od->w[OD_EXECUTOR].state != OD_W_READY)
		return; /* stays pending; resumed when the executor is ready */
	if (!ha_leads(t->subject, NULL))
		return; /* [ha] stays pending; resumed when this instance leads */
	int64_t attempt = op_json_int(a->row, "attempt", 0) + 1;
	/* Unrecorded means unsent: a pending row would be sent again later. */
	if (action_set_status(a, ACT_DISPATCHED, NULL) != 0 ||
	    ledger_exec(od->ledger, "UPDATE actions SET dispatched_at=?1, attempt=?2,"
	    " next_retry_at=NULL WHERE id=?3", "iii", op_wall_ms(), attempt, a->id) != 0)
		return;
	json_object_object_add(a->row, "attempt", json_object_new_int64(attempt));
	ticket_set_deadline(t, op_wall_ms() + od->act_deadline_ms);
	json_object *x = json_object_new_object();
	json_object_object_add(x, "attempt", json_object_new_int64(attempt));
	json_object_object_add(x, "level", json_object_new_string(op_json_str(a->row, "level", "execute")));
	action_event(t, a, "action_dispatched", NULL, x);
	json_object *b = json_object_new_object();
	json_object_object_add(b, "ticket_id", json_object_new_int64(t->id));
	json_object_object_add(b, "action_id", json_object_new_int64(a->id));
	json_object_object_add(b, "attempt", json_object_new_int64(attempt));
	json_object_object_add(b, "subject", json_object_new_string(t->subject));
	json_object_object_add(b, "invariant", json_object_new_string(t->invariant));
	json_object_object_add(b, "entity", json_object_new_string(t->entity));
	json_object_object_add(b, "action", json_object_new_string(a->name));
	json_object_object_add(b, "params", json_object_get(op_json_obj(a->row, "params")));
	ha_job(b, t->subject, a->id); /* [ha] the term the executor fences on */
	/* issue 9: nodes an action that picks its own may still touch */
	json_object_object_add(b, "blast", policy_blast_allowance(t->row, a->row));
	outbox_send(OD_EXECUTOR, OP_MSG_EXECUTE, od_new_id(), b);
}

/* The gates a go-ahead passes again at the moment it would run: the kill
 * switch and a hold win over any approval, retry or schedule. */
const char *
acting_blocked(const struct ticket *t)
{
	if (od->kill_switch)
		return "kill switch";
	if (!strcmp(od->mode, "observe"))
		return "mode observe";
	if (op_json_int(t->row, "held", 0))
		return "held";
	return NULL;
}

/* Budget and blast radius for an action that is cleared to run; spends the
 * tokens and hands it to the executor, or skips it and escalates (the
 * circuit breaker: a deeper problem needs a human, not one more try). */
int
acting_go(struct ticket *t, struct action *a, const char *level)
{
	char detail[512] = "";
	const char *why = policy_check(t->row, a->row, detail, sizeof(detail));

	if (why != NULL) {
		char esc[640];
		json_object *x = json_object_new_object();
		json_object_object_add(x, "detail", json_object_new_string(detail));
		action_set_status(a, ACT_SKIPPED, detail);
		action_event(t, a, "action_skipped", why, x);
		snprintf(esc, sizeof(esc), "%s: %s", why, detail);
		acting_escalate(t, esc);
		return -1;
	}
	if (action_set_status(a, ACT_PENDING, NULL) != 0 || ticket_set_status(t, TK_ACTING, NULL) != 0)
		return -1;
	if (op_json_int(a->row, "charged_at", 0) == 0)
		json_object_put(policy_charge(t->row, a->row));
	ledger_exec(od->ledger, "UPDATE actions SET level=COALESCE(level, ?1) WHERE id=?2", "si",
	    level, a->id);
	acting_dispatch(t, a);
	return 0;
}

/* Shadow: logs exactly what would run, for every remaining step, and runs
 * nothing; a human takes it from there. */
static void
acting_shadow(struct ticket *t)
{
	json_object *rows = ledger_rows(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
	    " status IN ('proposed','scheduled') ORDER BY step", "i", t->id);
	char names[256] = "";

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct action a;
		if (action_from_row(&a, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		json_object *params = op_json_obj(a.row, "params");
		json_object *would = json_object_new_object();
		json_object_object_add(would, "subject", json_object_new_string(t->subject));
		json_object_object_add(would, "action", json_object_new_string(a.name));
		json_object_object_add(would, "params", json_object_get(params));
		json_object_object_add(would, "risk", json_object_new_string(op_json_str(a.row, "risk", "")));
		if (policy_target(params))
			json_object_object_add(would, "target", json_object_new_string(policy_target(params)));
		json_object *x = json_object_new_object();
		json_object_object_add(x, "would", would);
		json_object_object_add(x, "level", json_object_new_string("shadow"));
		action_set_status(&a, ACT_SHADOWED, NULL);
		ledger_exec(od->ledger, "UPDATE actions SET level='shadow' WHERE id=?1", "i", a.id);
		action_event(t, &a, "action_skipped", "shadow", x);
		log_info("shadow: ticket %lld would run %s %s", (long long)t->id, a.name,
		    json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN));
		size_t l = strlen(names);
		snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "", a.name);
		action_free(&a);
	}
	json_object_put(rows);
	char why[384];
	snprintf(why, sizeof(why), "shadow: would have run %s; nothing was run", names);
	acting_escalate(t, why);
}

static void
acting_await_approval(struct ticket *t, struct action *a, const char *need, const char *lv)
{
	int64_t deadline = op_wall_ms() + od->safety.approval_ttl_ms;
	char ts[OP_TS_LEN];
	json_object *x;

	if (action_set_status(a, ACT_AWAITING_APPROVAL, NULL) != 0 ||
	    ticket_set_status(t, TK_AWAITING_APPROVAL, NULL) != 0)
		return;
	ledger_exec(od->ledger, "UPDATE actions SET approval_deadline=?1, level=?2,"
	    " approval_reason=COALESCE(approval_reason, ?3) WHERE id=?4", "issi", deadline, lv, need,
	    a->id);
	x = json_object_new_object();
	op_rfc3339(deadline, ts);
	json_object_object_add(x, "risk", json_object_new_string(op_json_str(a->row, "risk", "")));
	json_object_object_add(x, "level", json_object_new_string(lv));
	json_object_object_add(x, "expires_at", json_object_new_string(ts));
	json_object_object_add(x, "ttl_ms", json_object_new_int64(od->safety.approval_ttl_ms));
	json_object_object_add(x, "on_expiry", json_object_new_string(timer_expiry_outcome(a)));
	action_event(t, a, "action_awaiting_approval", need, x);
}

/* Picks the next step for a diagnosed ticket: the next proposed action under
 * the kill switch, mode, level, budgets and blast radius, or escalation when
 * there is none. */
void
acting_advance(struct ticket *t)
{
	struct action a;
	int64_t now = op_wall_ms();

	if (t->status != TK_DIAGNOSED || op_json_int(t->row, "held", 0) ||
	    !ha_leads(t->subject, NULL))
		return;
	if (action_load_next(&a, t->id, 0) != 0) {
		acting_escalate(t, op_json_int(t->row, "attempts", 0) > 0
		    ? "remedies exhausted: the fix did not hold"
		    : "no safe automatic action for this diagnosis");
		return;
	}
	int64_t nb = op_json_int(a.row, "not_before", 0);
	if (a.status == ACT_SCHEDULED && nb > now)
		goto out; /* the timer wakes it */
	if (nb > now) {
		json_object *x = json_object_new_object();
		char ts[OP_TS_LEN];
		op_rfc3339(nb, ts);
		json_object_object_add(x, "not_before", json_object_new_int64(nb));
		json_object_object_add(x, "not_before_ts", json_object_new_string(ts));
		action_set_status(&a, ACT_SCHEDULED, NULL);
		action_event(t, &a, "action_scheduled", NULL, x);
		goto out;
	}
	if (a.status == ACT_SCHEDULED)
		action_set_status(&a, ACT_PROPOSED, NULL);
	const char *why = NULL;
	if (od->kill_switch)
		why = "kill switch";
	else if (!strcmp(od->mode, "observe"))
		why = "mode observe";
	if (why != NULL) {
		action_event(t, &a, "action_skipped", why, NULL);
		goto out;
	}
	char lv[16];
	op_strlcpy(lv, policy_level(t->subject, a.name), sizeof(lv));
	if (!strcmp(lv, "shadow")) {
		acting_shadow(t);
		goto out;
	}
	/* Refuse before asking a human for something the budget would not allow. */
	char detail[512] = "";
	if (policy_check(t->row, a.row, detail, sizeof(detail)) != NULL) {
		acting_go(t, &a, lv); /* skips and escalates with the same reason */
		goto out;
	}
	const char *need = NULL;
	if (op_json_str(a.row, "decided_by", NULL) == NULL) {
		if (op_json_int(a.row, "needs_approval", 0))
			need = op_json_str(a.row, "approval_reason", "approval required");
		else if (!strcmp(od->mode, "approve"))
			need = "mode approve";
		else if (!strcmp(lv, "approve"))
			need = "level approve";
		else if (policy_risk_needs_approval(op_json_str(a.row, "risk", "")))
			need = "risk tier requires approval";
	}
	if (need != NULL)
		acting_await_approval(t, &a, need, lv);
	else
		acting_go(t, &a, lv);
out:
	action_free(&a);
}

void
acting_send_verify(struct ticket *t, const struct action *a, int64_t from_ms, int resumed)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ticket_id", json_object_new_int64(t->id));
	json_object_object_add(b, "action_id", json_object_new_int64(a ? a->id : 0));
	json_object_object_add(b, "action", json_object_new_string(a ? a->name : ""));
	json_object_object_add(b, "params", json_object_get(a ? op_json_obj(a->row, "params") : NULL));
	json_object_object_add(b, "subject", json_object_new_string(t->subject));
	json_object_object_add(b, "invariant", json_object_new_string(t->invariant));
	json_object_object_add(b, "entity", json_object_new_string(t->entity));
	/* An action whose effect nobody knows is judged against the fault
	 * itself (its invariant must read healthy), never against an absence. */
	json_object_object_add(b, "applied", json_object_new_string(
	    a ? op_json_str(a->row, "applied", "yes") : "yes"));
	json_object_object_add(b, "executed_at", json_object_new_int64(from_ms));
	json_object_object_add(b, "resumed", json_object_new_boolean(resumed));
	json_object_object_add(b, "verify_delay_ms", json_object_new_int64(od->verify_delay_ms));
	json_object_object_add(b, "settle_ms", json_object_new_int64(od->verify_settle_ms));
	json_object_object_add(b, "timeout_ms", json_object_new_int64(od->verify_timeout_ms));
	outbox_send(OD_VERIFIER, OP_MSG_VERIFY, od_new_id(), b);
	/* The verifier's own timeout, plus slack for a slow observation. */
	ticket_set_deadline(t, from_ms + od->verify_timeout_ms + od->verify_delay_ms +
	    OD_VERIFY_DEADLINE_SLACK_MS);
}

/* Executed, or unknown: the ticket's outcome is now the verifier's to say. */
void
acting_verify(struct ticket *t, const struct action *a)
{
	if (ticket_set_status(t, TK_VERIFYING, NULL) == 0)
		acting_send_verify(t, a, op_wall_ms(), 0);
}

/* A step ended without effect and will not be retried: the workflow stops
 * there (its later steps assumed this one), and a human takes over. */
void
acting_step_failed(struct ticket *t, struct action *a, const char *why)
{
	int64_t n = action_cancel_waiting(t, a->workflow, "workflow stopped");
	char esc[640];

	if (n > 0) {
		json_object *x = json_object_new_object();
		json_object_object_add(x, "cancelled_steps", json_object_new_int64(n));
		action_event(t, a, "workflow_stopped", why, x);
	}
	if (t->status != TK_ACTING && t->status != TK_RETRY_WAIT)
		return;
	ticket_set_status(t, TK_DIAGNOSED, NULL);
	snprintf(esc, sizeof(esc), "step %lld (%s) did not run: %s",
	    (long long)op_json_int(a->row, "step", 0), a->name, why);
	acting_escalate(t, esc);
}

/* Schedules the next attempt of an action that is known not to have taken
 * effect; false when its attempts are used up. */
int
acting_retry(struct ticket *t, struct action *a, const char *why)
{
	int64_t attempt = op_json_int(a->row, "attempt", 0);
	int64_t max = op_json_int(a->row, "max_attempts", od->safety.retry_attempts);

	if (attempt >= max || t->status != TK_ACTING)
		return 0;
	int64_t delay = policy_backoff_ms(attempt), at = op_wall_ms() + delay;
	char ts[OP_TS_LEN];
	if (action_set_status(a, ACT_RETRY_WAIT, why) != 0 ||
	    ticket_set_status(t, TK_RETRY_WAIT, NULL) != 0)
		return 0;
	ledger_exec(od->ledger, "UPDATE actions SET next_retry_at=?1 WHERE id=?2", "ii", at, a->id);
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

/* ---- issue 9: honest credit, and undoing a fix that made things worse ---- */

/* A verification that passed gives no credit to an action that could not
 * have healed the ticket (another entity, an invariant it does not remedy),
 * nor when the fault's own undo ran in the window: "unproven". */
int
acting_unproven(const struct ticket *t, const struct action *a, char *why, size_t len)
{
	int64_t from = op_json_int(a->row, "dispatched_at", op_json_int(a->row, "created_at", 0));

	why[0] = '\0';
	if (!op_action_can_heal(t->subject, t->invariant, t->entity, op_json_obj(t->row,
	    "evidence"), a->name, op_json_obj(a->row, "params"))) {
		snprintf(why, len, "%s cannot heal %s on %s: it healed without the action's help",
		    a->name, t->invariant, t->entity);
		return 1;
	}
	return policy_fault_undone_in(t->subject, t->entity, from, op_wall_ms(), why, len);
}

/* After a failed verification: when the action recorded an undo and the
 * subject is worse than before it (more invariants violated, or the
 * ticket's figure further from its threshold), the undo goes to the
 * executor at once and the ticket waits for it in acting. 1 when started. */
int
acting_undo_if_worse(struct ticket *t, struct action *a, json_object *figures)
{
	json_object *result = op_json_obj(a->row, "result"), *undo = op_json_obj(result, "undo");
	const struct op_action_def *def;
	struct op_subject fake = {0};
	struct op_health before, after;
	char why[512];

	fake.ops = op_subject_kind(t->subject);
	def = fake.ops ? op_subject_action(&fake, a->name) : NULL;
	if (def == NULL || def->revert == NULL || undo == NULL || a->status != ACT_EXECUTED ||
	    op_health_from_json(op_json_obj(result, "health_before"), &before) != 0 ||
	    op_health_from_json(op_json_obj(figures, "health"), &after) != 0 ||
	    !op_health_worse(&before, &after, why, sizeof(why)))
		return 0;
	if (od->w[OD_EXECUTOR].state != OD_W_READY || acting_blocked(t) != NULL ||
	    ticket_set_status(t, TK_ACTING, NULL) != 0)
		return 0; /* no undo now: the failure path escalates, with the figures */
	json_object *x = json_object_new_object();
	json_object_object_add(x, "why", json_object_new_string(why));
	json_object_object_add(x, "undo", json_object_get(undo));
	json_object_object_add(x, "health_before", json_object_get(op_json_obj(result,
	    "health_before")));
	json_object_object_add(x, "health_after", json_object_get(op_json_obj(figures, "health")));
	action_event(t, a, "action_undoing", "the action made the subject worse", x);
	json_object *b = json_object_new_object();
	json_object_object_add(b, "ticket_id", json_object_new_int64(t->id));
	json_object_object_add(b, "action_id", json_object_new_int64(a->id));
	json_object_object_add(b, "subject", json_object_new_string(t->subject));
	json_object_object_add(b, "invariant", json_object_new_string(t->invariant));
	json_object_object_add(b, "entity", json_object_new_string(t->entity));
	json_object_object_add(b, "action", json_object_new_string(a->name));
	json_object_object_add(b, "params", json_object_get(op_json_obj(a->row, "params")));
	json_object_object_add(b, "undo", json_object_get(undo));
	ha_job(b, t->subject, a->id); /* [ha] an undo is a side effect too: fenced */
	ticket_set_deadline(t, op_wall_ms() + od->act_deadline_ms);
	outbox_send(OD_EXECUTOR, OP_MSG_EXECUTE, od_new_id(), b);
	log_info("ticket %lld: undoing %s (%s)", (long long)t->id, a->name, why);
	return 1;
}

/* The executor's answer to an undo: audited (action_undone), then the next
 * remedy or an escalation, as after any failed verification. */
void
acting_undo_result(struct ticket *t, struct action *a, json_object *body)
{
	const char *status = op_json_str(body, "status", "");
	int done = !strcmp(status, "executed");
	json_object *x = json_object_new_object();
	char why[640];

	if (t->status != TK_ACTING || a->status != ACT_EXECUTED) {
		log_warn("undo result for action %lld ignored (ticket %s, action %s)",
		    (long long)a->id, tk_status_name(t->status), act_status_name(a->status));
		json_object_put(x);
		return;
	}
	json_object_object_add(x, "result", json_object_get(op_json_obj(body, "result")));
	ticket_set_deadline(t, 0);
	ticket_set_status(t, TK_DIAGNOSED, NULL);
	if (done) {
		action_set_status(a, ACT_UNDONE, NULL);
		ledger_exec(od->ledger, "UPDATE actions SET result=json_set(COALESCE(result,'{}'),"
		    " '$.undone', json(?1)) WHERE id=?2", "ji", op_json_obj(body, "result"), a->id);
		action_event(t, a, "action_undone", "the action made the subject worse", x);
	} else {
		json_object_object_add(x, "error", json_object_new_string(op_json_str(body, "reason",
		    "")));
		action_event(t, a, "action_undo_failed", status, x);
		snprintf(why, sizeof(why), "%s made the subject worse and its undo %s: %s", a->name,
		    status, op_json_str(body, "reason", ""));
		acting_escalate(t, why);
		return;
	}
	if (op_json_str(a->row, "requested_by", NULL) != NULL) {
		snprintf(why, sizeof(why), "the operator's workflow stopped at step %lld (%s): it "
		    "made the subject worse and was undone", (long long)op_json_int(a->row, "step", 0),
		    a->name);
		acting_escalate(t, why);
	} else if (op_json_int(t->row, "attempts", 0) < OD_MAX_ATTEMPTS) {
		acting_start_diagnosis(t); /* a new attempt, from a fresh look */
	} else {
		acting_escalate(t, "the fix made things worse and was undone after the last attempt");
	}
}

/* Pending = cleared to run but never handed over: safe to send now. Called
 * when the executor is ready and whenever a block (kill switch, mode, hold)
 * lifts, so an action never waits for an unrelated restart. */
void
acting_resume_pending(void)
{
	json_object *rows = action_rows_by_status(ACT_PENDING);

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct action a;
		struct ticket t;
		if (action_from_row(&a, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		if (ticket_load(&t, a.ticket_id) == 0 && !ticket_closed(&t) && acting_blocked(&t) == NULL)
			acting_dispatch(&t, &a);
		ticket_free(&t);
		action_free(&a);
	}
	json_object_put(rows);
}

json_object *
acting_settings_body(void)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "mode", json_object_new_string(od->mode));
	json_object_object_add(b, "kill_switch", json_object_new_boolean(od->kill_switch));
	json_object_object_add(b, "chaos_enabled", json_object_new_boolean(od->chaos_enabled &&
	    ha_leads_any())); /* [ha] no chaos on a standby */
	return b;
}

void
acting_settings_changed(void)
{
	ha_settings_changed(); /* [ha] a change made here reaches every instance */
	for (int i = 0; i < OD_NWORKERS; i++)
		outbox_send(i, OP_MSG_SETTINGS, od_new_id(), acting_settings_body());
	if (od->kill_switch) {
		/* Everything cleared to run loses its go-ahead at once; in-flight
		 * actions meet the executor's own last-moment check. */
		json_object *rows = action_rows_waiting_for_switch();
		for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
			struct action a;
			struct ticket t;
			if (action_from_row(&a, json_object_get(json_object_array_get_idx(rows, i))) != 0)
				continue;
			const char *was = act_status_name(a.status);
			action_set_status(&a, ACT_PROPOSED, NULL);
			ledger_exec(od->ledger, "UPDATE actions SET approval_deadline=NULL,"
			    " next_retry_at=NULL, decided_by=CASE WHEN requested_by IS NULL THEN NULL ELSE"
			    " decided_by END WHERE id=?1", "i", a.id);
			if (ticket_load(&t, a.ticket_id) == 0) {
				json_object *x = json_object_new_object();
				json_object_object_add(x, "cancelled", json_object_new_string(was));
				action_event(&t, &a, "action_skipped", "kill switch", x);
				if (!ticket_closed(&t))
					ticket_set_status(&t, TK_DIAGNOSED, NULL);
			}
			ticket_free(&t);
			action_free(&a);
		}
		json_object_put(rows);
		return;
	}
	acting_resume_pending();
	json_object *rows = ticket_rows_by_status(TK_DIAGNOSED);
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct ticket t;
		if (ticket_from_row(&t, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		acting_advance(&t);
		ticket_free(&t);
	}
	json_object_put(rows);
}
