/* timer: the supervisor's one periodic wake-up (OD_TICK_MS). It starts the
 * retries, schedules and approval expiries whose time has come, and meets
 * the deadline of every in-flight state, so a lost frame or a hung worker
 * never strands a ticket. What to do next is acting.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

/* What an expired approval does. A human must decide on a risky action or on
 * a model's plan the rules disagree with: those escalate whatever the
 * configured outcome, since nobody would have looked at them. */
const char *
timer_expiry_outcome(const struct action *a)
{
	const char *outcome = od->safety.approval_expiry;

	if (!strcmp(outcome, "execute") &&
	    (op_json_int(a->row, "needs_approval", 0) ||
	     policy_risk_needs_approval(op_json_str(a->row, "risk", ""))))
		return "escalate";
	return outcome;
}

static void
timer_expire(struct ticket *t, struct action *a)
{
	const char *outcome = timer_expiry_outcome(a);
	json_object *x = json_object_new_object();
	char why[160];

	json_object_object_add(x, "ttl_ms", json_object_new_int64(od->safety.approval_ttl_ms));
	json_object_object_add(x, "outcome", json_object_new_string(outcome));
	if (strcmp(outcome, od->safety.approval_expiry) != 0)
		json_object_object_add(x, "configured", json_object_new_string(od->safety.approval_expiry));
	action_event(t, a, "action_approval_expired", "nobody approved or rejected in time", x);
	snprintf(why, sizeof(why), "approval of %s expired after %llds", a->name,
	    (long long)(od->safety.approval_ttl_ms / 1000));
	if (!strcmp(outcome, "reject")) {
		action_set_status(a, ACT_REJECTED, why);
		ledger_exec(od->ledger, "UPDATE actions SET decided_by='approval_ttl' WHERE id=?1", "i",
		    a->id);
		json_object *y = json_object_new_object();
		json_object_object_add(y, "by", json_object_new_string("approval_ttl"));
		action_event(t, a, "action_rejected", why, y);
		json_object *c = json_object_new_object();
		json_object_object_add(c, "reason", json_object_new_string(why));
		acting_close(t, TK_REJECTED, "ticket_rejected", c);
	} else if (!strcmp(outcome, "execute")) {
		ledger_exec(od->ledger, "UPDATE actions SET decided_by='approval_ttl' WHERE id=?1", "i",
		    a->id);
		json_object *y = json_object_new_object();
		json_object_object_add(y, "by", json_object_new_string("approval_ttl"));
		action_event(t, a, "action_approved", why, y);
		acting_go(t, a, op_json_str(a->row, "level", "approve"));
	} else {
		action_set_status(a, ACT_EXPIRED, why);
		acting_escalate(t, why);
	}
}

static void
timer_due(int64_t now)
{
	json_object *rows = action_rows_due(now);

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct action a, cur;
		struct ticket t;
		if (action_from_row(&a, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		/* The row may have moved since the select (an earlier one closed its ticket). */
		int same = action_load(&cur, a.id) == 0 && cur.status == a.status;
		action_free(&cur);
		if (!same || ticket_load(&t, a.ticket_id) != 0 || ticket_closed(&t) ||
		    acting_blocked(&t) != NULL) {
			ticket_free(&t);
			action_free(&a);
			continue; /* kill switch, observe or hold: it waits (its row keeps it) */
		}
		if (a.status == ACT_RETRY_WAIT) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "attempt",
			    json_object_new_int64(op_json_int(a.row, "attempt", 0) + 1));
			action_event(&t, &a, "action_retrying", NULL, x);
			acting_go(&t, &a, op_json_str(a.row, "level", "execute"));
		} else if (a.status == ACT_SCHEDULED) {
			action_set_status(&a, ACT_PROPOSED, NULL);
			acting_advance(&t);
		} else {
			timer_expire(&t, &a);
		}
		ticket_free(&t);
		action_free(&a);
	}
	json_object_put(rows);
}

/* A worker that has said nothing since the step was handed to it is hung,
 * not slow: restart it (its jobs are resent from the ledger when it is
 * ready). One that keeps talking is only busy with something else. */
static void
timer_check_worker(enum od_role role, int64_t since_wall_ms)
{
	struct od_worker *w = &od->w[role];
	int64_t silent_ms = op_mono_ms() - w->last_frame_mono;

	if (w->state == OD_W_READY && silent_ms > op_wall_ms() - since_wall_ms) {
		log_warn("%s sent nothing for %llds while a step waited on it; killing it", w->name,
		    (long long)(silent_ms / 1000));
		proc_fail_worker(w); /* SIGKILL: a stopped or wedged process ignores SIGTERM */
	}
}

/* An in-flight state whose deadline passed: the step fails with an event and
 * the ticket moves on, so a lost frame never strands a ticket. */
static void
timer_deadline(struct ticket *t, int64_t now)
{
	int64_t deadline = op_json_int(t->row, "deadline_at", now);
	json_object *d = json_object_new_object();
	struct action a;

	json_object_object_add(d, "state", json_object_new_string(tk_status_name(t->status)));
	json_object_object_add(d, "deadline_ms", json_object_new_int64(deadline));
	json_object_object_add(d, "late_ms", json_object_new_int64(now - deadline));
	ticket_event(t, "step_deadline", d);
	log_warn("ticket %lld: no progress in %s before its deadline", (long long)t->id,
	    tk_status_name(t->status));
	switch (t->status) {
	case TK_DIAGNOSING:
		timer_check_worker(OD_DIAGNOSER, op_json_int(t->row, "updated_at", now));
		acting_escalate(t, "no diagnosis before the deadline");
		break;
	case TK_ACTING:
		timer_check_worker(OD_EXECUTOR, op_json_int(t->row, "updated_at", now));
		/* Nobody knows whether it ran: verify, never re-run it. */
		if (action_from_row(&a, ledger_row(od->ledger, "SELECT * FROM actions WHERE"
		    " ticket_id=?1 AND status='dispatched' ORDER BY id DESC LIMIT 1", "i", t->id)) == 0) {
			action_set_status(&a, ACT_UNKNOWN, "no result before the deadline");
			ledger_exec(od->ledger, "UPDATE actions SET applied='unknown' WHERE id=?1", "i", a.id);
			json_object_object_add(a.row, "applied", json_object_new_string("unknown"));
			ticket_add_attempt(t);
			action_event(t, &a, "action_unknown", "no result before the deadline: verify", NULL);
			acting_verify(t, &a);
			action_free(&a);
		} else {
			acting_escalate(t, "acting without an action in flight");
		}
		break;
	case TK_VERIFYING:
		timer_check_worker(OD_VERIFIER, op_json_int(t->row, "updated_at", now));
		acting_escalate(t, "no verdict from the verifier before the deadline");
		break;
	default:
		ticket_set_deadline(t, 0);
		break;
	}
}

static void
timer_tick(evutil_socket_t fd, short ev, void *arg)
{
	int64_t now = op_wall_ms();
	json_object *rows;

	(void)fd;
	(void)ev;
	(void)arg;
	if (od->shutting_down)
		return;
	/* Cheap reads first: most ticks find nothing due and open no transaction. */
	if (ledger_scalar(od->ledger, 0, "SELECT EXISTS(SELECT 1 FROM actions WHERE"
	    " (status='retry_wait' AND next_retry_at<=?1) OR (status='scheduled' AND"
	    " COALESCE(not_before,0)<=?1) OR (status='awaiting_approval' AND approval_deadline<=?1))"
	    " OR EXISTS(SELECT 1 FROM tickets WHERE closed_at IS NULL AND deadline_at<=?1)", "i",
	    now) == 0)
		return;
	outbox_begin();
	timer_due(now);
	rows = ticket_rows_past_deadline(now);
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		struct ticket t;
		if (ticket_from_row(&t, json_object_get(json_object_array_get_idx(rows, i))) != 0)
			continue;
		timer_deadline(&t, now);
		ticket_free(&t);
	}
	json_object_put(rows);
	outbox_commit();
}

void
timer_start(void)
{
	struct timeval tv = {0, OD_TICK_MS * 1000};

	if (od->tick_armed)
		return;
	srandom((unsigned)(op_wall_ms() ^ getpid()));
	event_assign(&od->tick, od->base, -1, EV_PERSIST, timer_tick, NULL);
	event_add(&od->tick, &tv);
	od->tick_armed = 1;
}
