/* operator: what a human does to a ticket through the control socket —
 * approve, reject, hold, unhold, ack, resolve, and submit a workflow. Each
 * runs inside the control request's transaction, passes the state gates of
 * ticket.c like any other input, and is audited with who did it. */
#include <stdio.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

/* The ticket of an action awaiting approval, or an error. */
static int
operator_waiting_action(struct action *a, struct ticket *t, int64_t action_id, char *err,
    size_t errlen)
{
	memset(t, 0, sizeof(*t));
	if (action_load(a, action_id) != 0 || ticket_load(t, a->ticket_id) != 0) {
		snprintf(err, errlen, "no action %lld", (long long)action_id);
		return -1;
	}
	if (a->status != ACT_AWAITING_APPROVAL) {
		snprintf(err, errlen, "action %lld is %s, not awaiting approval", (long long)action_id,
		    act_status_name(a->status));
		return -1;
	}
	return 0;
}

static int
operator_open_ticket(struct ticket *t, int64_t id, char *err, size_t errlen)
{
	if (ticket_load(t, id) != 0) {
		snprintf(err, errlen, "no ticket %lld", (long long)id);
		return -1;
	}
	if (ticket_closed(t)) {
		snprintf(err, errlen, "ticket %lld is %s (closed)", (long long)id,
		    tk_status_name(t->status));
		ticket_free(t);
		return -1;
	}
	return 0;
}

int
operator_approve(int64_t action_id, const char *who, char *err, size_t errlen)
{
	struct action a;
	struct ticket t;
	int rc = -1;

	/* [ha] an action another instance leads: the decision goes to it */
	if ((rc = ha_forward_decision("approve", action_id, who, NULL, err, errlen)) != 0)
		return rc > 0 ? 0 : -1;
	rc = -1;
	if (operator_waiting_action(&a, &t, action_id, err, errlen) != 0)
		goto out;
	if (od->kill_switch)
		snprintf(err, errlen, "the kill switch is on: no action may run");
	else if (!strcmp(od->mode, "observe"))
		snprintf(err, errlen, "mode is observe: switch to approve or execute to run actions");
	else if (op_json_int(t.row, "held", 0))
		snprintf(err, errlen, "ticket %lld is held: unhold it first", (long long)t.id);
	else {
		ledger_exec(od->ledger, "UPDATE actions SET decided_by=?1 WHERE id=?2", "si", who,
		    action_id);
		json_object *x = json_object_new_object();
		json_object_object_add(x, "by", json_object_new_string(who));
		action_event(&t, &a, "action_approved", NULL, x);
		acting_go(&t, &a, op_json_str(a.row, "level", "approve"));
		rc = 0;
	}
out:
	action_free(&a);
	ticket_free(&t);
	return rc;
}

int
operator_reject(int64_t action_id, const char *who, const char *reason, char *err, size_t errlen)
{
	struct action a;
	struct ticket t;
	int rc = -1;

	if ((rc = ha_forward_decision("reject", action_id, who, reason, err, errlen)) != 0)
		return rc > 0 ? 0 : -1;
	rc = -1;
	if (operator_waiting_action(&a, &t, action_id, err, errlen) != 0)
		goto out;
	action_set_status(&a, ACT_REJECTED, reason);
	ledger_exec(od->ledger, "UPDATE actions SET decided_by=?1 WHERE id=?2", "si", who, action_id);
	json_object *x = json_object_new_object();
	json_object_object_add(x, "by", json_object_new_string(who));
	action_event(&t, &a, "action_rejected", reason ? reason : "", x);
	json_object *c = json_object_new_object();
	json_object_object_add(c, "by", json_object_new_string(who));
	if (reason)
		json_object_object_add(c, "reason", json_object_new_string(reason));
	acting_close(&t, TK_REJECTED, "ticket_rejected", c);
	rc = 0;
out:
	action_free(&a);
	ticket_free(&t);
	return rc;
}

static void
operator_unheld(struct ticket *t)
{
	if (op_json_int(t->row, "healed_at", 0) > 0 && t->status != TK_ACTING &&
	    t->status != TK_VERIFYING) {
		/* It healed (or a fix verified) while held: close it now. */
		int verified = ticket_last_verification_ok(t->id);
		json_object *c = json_object_new_object();
		json_object_object_add(c, "reason", json_object_new_string(verified
		    ? "fix verified while held" : "invariant healed while held"));
		acting_close(t, verified ? TK_RESOLVED : TK_CLEARED,
		    verified ? "ticket_resolved" : "ticket_cleared", c);
	} else if (t->status == TK_OPEN) {
		/* Reopened while held: it never got its diagnosis. */
		acting_start_diagnosis(t);
	} else {
		acting_advance(t);
		acting_resume_pending();
	}
}

int
operator_hold(int64_t ticket_id, int hold, const char *who, char *err, size_t errlen)
{
	struct ticket t;

	if (operator_open_ticket(&t, ticket_id, err, errlen) != 0)
		return -1;
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	ledger_exec(od->ledger, "UPDATE tickets SET held_by=?1 WHERE id=?2", "si", hold ? who : NULL,
	    ticket_id);
	ticket_set_int(&t, "held", hold ? 1 : 0);
	ticket_event(&t, hold ? "ticket_held" : "ticket_unheld", d);
	if (!hold)
		operator_unheld(&t);
	ticket_free(&t);
	return 0;
}

int
operator_ack(int64_t ticket_id, const char *who, char *err, size_t errlen)
{
	struct ticket t;

	if (operator_open_ticket(&t, ticket_id, err, errlen) != 0)
		return -1;
	ledger_exec(od->ledger, "UPDATE tickets SET acked_by=?1, acked_at=?2 WHERE id=?3", "sii", who,
	    op_wall_ms(), ticket_id);
	ticket_set_int(&t, "acked", 1);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	ticket_event(&t, "ticket_acked", d);
	ticket_free(&t);
	return 0;
}

int
operator_resolve(int64_t ticket_id, const char *who, const char *reason, char *err,
    size_t errlen)
{
	struct ticket t;

	if (operator_open_ticket(&t, ticket_id, err, errlen) != 0)
		return -1;
	ledger_exec(od->ledger, "UPDATE tickets SET resolved_by=?1 WHERE id=?2", "si", who,
	    ticket_id);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "manual", json_object_new_boolean(1));
	json_object_object_add(d, "by", json_object_new_string(who));
	json_object_object_add(d, "reason", json_object_new_string(reason && *reason ? reason
	    : "resolved by an operator"));
	acting_close(&t, TK_RESOLVED, "ticket_resolved", d);
	ticket_free(&t);
	return 0;
}

int
operator_submit(int64_t ticket_id, json_object *steps, int64_t not_before, const char *who,
    char *err, size_t errlen)
{
	struct ticket t;
	int rc = -1;

	if (operator_open_ticket(&t, ticket_id, err, errlen) != 0)
		return -1;
	/* An action in the executor's or verifier's hands finishes first; one
	 * waiting for approval or a retry is replaced by the operator's plan. */
	if (t.status == TK_ACTING || t.status == TK_VERIFYING || t.status == TK_DIAGNOSING ||
	    t.status == TK_OPEN) {
		snprintf(err, errlen, "ticket %lld is %s: wait, reject or resolve it first",
		    (long long)ticket_id, tk_status_name(t.status));
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(steps); i++) {
		json_object *s = json_object_array_get_idx(steps, i);
		char e2[256];
		json_object *p = json_object_get(op_json_obj(s, "params"));
		if (p == NULL)
			p = json_object_new_object();
		const struct op_action_def *def = acting_step_validate(t.subject,
		    op_json_str(s, "action", ""), p, e2, sizeof(e2));
		json_object_put(p);
		if (def == NULL) {
			snprintf(err, errlen, "step %zu: %s", i + 1, e2);
			goto out;
		}
	}
	int64_t replaced = action_cancel_waiting(&t, 0, "replaced by an operator's workflow");
	/* The ticket goes back to diagnosed before the plan is laid, from
	 * wherever a human may take over (waiting, retrying, escalated). */
	if (ticket_set_status(&t, TK_DIAGNOSED, "workflow submitted by an operator") != 0) {
		snprintf(err, errlen, "ticket %lld is %s: cannot take a workflow", (long long)ticket_id,
		    tk_status_name(t.status));
		goto out;
	}
	json_object *ids = json_object_new_array();
	acting_plan(&t, steps, who, not_before, ids);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	json_object_object_add(d, "steps", json_object_get(steps));
	json_object_object_add(d, "action_ids", ids);
	json_object_object_add(d, "replaced", json_object_new_int64(replaced));
	if (not_before > 0)
		json_object_object_add(d, "not_before", json_object_new_int64(not_before));
	ticket_event(&t, "workflow_submitted", d);
	acting_advance(&t);
	rc = 0;
out:
	ticket_free(&t);
	return rc;
}
