/* ha_resume: the records of work in flight, and resuming them under a new
 * leader.
 *
 * A record (/operatord/C/work/S/H) is a live ticket as its leader last
 * committed it, with its current action. A marker (/operatord/C/exec/S/H)
 * is written by an executor's fencing transaction: the action named there
 * passed the fence under that term and may have run.
 *
 * The new leader, once per term and before it acts on the subject:
 *   - an action dispatched (or unknown, or already being verified) by the
 *     old leader, or any action its marker names: `unknown`, verified on a
 *     fresh window, never re-run (a verification that fails leads to the
 *     next attempt, under the new term);
 *   - an action awaiting approval keeps waiting, with its deadline;
 *   - an escalated ticket stays escalated;
 *   - any other live ticket is diagnosed afresh (nothing of it ran);
 *   - a live ticket of ours that no record names is left as it is (the
 *     executor re-checks the invariant right before acting, so a problem
 *     another leader fixed meanwhile is found healed, never acted on).
 * A live ticket of ours that a record names, written by ourselves under an
 * earlier term, is kept as it is: our own ledger knows it best, and an
 * action of ours dispatched under the old term meets the fence (not_leader)
 * and is planned again under the new one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

#define HA_REC_EVIDENCE_MAX 2048 /* bytes of evidence kept in a record */

/* The action a record carries, by what the ticket is doing: the one
 * awaiting approval, the one in the executor's hands (or cleared to go), or
 * the one being verified (the last that ran). Other states carry none: a
 * new leader diagnoses them afresh. */
static json_object *
ha_current_action(const struct ticket *t)
{
	switch (t->status) {
	case TK_AWAITING_APPROVAL:
		return ledger_row(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
		    " status='awaiting_approval' ORDER BY step LIMIT 1", "i", t->id);
	case TK_ACTING:
	case TK_RETRY_WAIT:
		return ledger_row(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
		    " status IN ('dispatched','pending','retry_wait') ORDER BY step LIMIT 1", "i",
		    t->id);
	case TK_VERIFYING:
		return ledger_row(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
		    " status IN ('executed','unknown') ORDER BY step DESC LIMIT 1", "i", t->id);
	default:
		return NULL;
	}
}

static void
copy(json_object *to, json_object *from, const char *k)
{
	json_object *v;

	if (json_object_object_get_ex(from, k, &v) && v != NULL)
		json_object_object_add(to, k, json_object_get(v));
}

char *
ha_record_build(const struct ticket *t)
{
	json_object *r = json_object_new_object();
	int64_t term = 0;

	ha_leads(t->subject, &term);
	json_object_object_add(r, "v", json_object_new_int(1));
	json_object_object_add(r, "leader", json_object_new_string(ha_name() ? ha_name() : ""));
	json_object_object_add(r, "term", json_object_new_int64(term));
	json_object_object_add(r, "ticket_id", json_object_new_int64(t->id));
	json_object_object_add(r, "status", json_object_new_string(tk_status_name(t->status)));
	static const char *const tk[] = { "fingerprint", "subject", "invariant", "entity",
		"severity", "message", "opened_at", "reason", "held" };
	for (size_t i = 0; i < OP_ARRAY_LEN(tk); i++)
		copy(r, t->row, tk[i]);
	json_object *ev = op_json_obj(t->row, "evidence");
	if (ev != NULL && strlen(json_object_to_json_string(ev)) <= HA_REC_EVIDENCE_MAX)
		json_object_object_add(r, "evidence", json_object_get(ev));
	json_object *a = ha_current_action(t);
	if (a != NULL) {
		json_object *x = json_object_new_object();
		static const char *const ak[] = { "id", "name", "params", "status", "attempt",
			"level", "risk", "reason", "approval_deadline", "approval_reason",
			"needs_approval", "requested_by", "decided_by", "dispatched_at", "applied",
			"workflow", "step" };
		for (size_t i = 0; i < OP_ARRAY_LEN(ak); i++)
			copy(x, a, ak[i]);
		json_object_object_add(r, "action", x);
		json_object_put(a);
	}
	char *s = op_json_dup_string(r);
	json_object_put(r);
	return s;
}

/* ----------------------------------------------------------- resuming */

/* Brings a fresh local ticket from open to `to` through legal moves. */
static int
ha_walk(struct ticket *t, enum tk_status to)
{
	static const enum tk_status path[] = { TK_DIAGNOSING, TK_DIAGNOSED };

	for (size_t i = 0; i < OP_ARRAY_LEN(path) && t->status != to; i++)
		if (ticket_set_status(t, path[i], NULL) != 0)
			return -1;
	if (t->status != to && ticket_set_status(t, to, NULL) != 0)
		return -1;
	return 0;
}

/* The old leader's action (a record's action, or a marker) as a new local
 * row (proposed), loaded into a. */
static int
ha_plan_one(struct ticket *t, json_object *src, json_object *from, struct action *a)
{
	json_object *recs = json_object_new_array(), *ids = json_object_new_array();
	json_object *r = json_object_new_object();
	char reason[256];
	const char *name = op_json_str(src, "name", NULL);

	if (name == NULL)
		name = op_json_str(src, "action", ""); /* a marker */
	snprintf(reason, sizeof(reason), "resumed from %s (term %lld, its action %lld)",
	    op_json_str(from, "leader", "?"), (long long)op_json_int(from, "term", 0),
	    (long long)op_json_int(src, "id", op_json_int(src, "action_id", 0)));
	json_object_object_add(r, "action", json_object_new_string(name));
	json_object_object_add(r, "params", json_object_get(op_json_obj(src, "params")));
	json_object_object_add(r, "reason", json_object_new_string(reason));
	json_object_array_add(recs, r);
	acting_plan(t, recs, NULL, 0, ids);
	int64_t id = json_object_array_length(ids) > 0
	    ? json_object_get_int64(json_object_array_get_idx(ids, 0)) : 0;
	json_object_put(recs);
	json_object_put(ids);
	return id > 0 ? action_load(a, id) : -1;
}

static json_object *
ha_resumed_data(json_object *rec, json_object *mk)
{
	json_object *d = json_object_new_object();
	json_object *src = rec ? rec : mk;

	json_object_object_add(d, "from", json_object_new_string(op_json_str(src, "leader", "?")));
	json_object_object_add(d, "from_term", json_object_new_int64(op_json_int(src, "term", 0)));
	json_object_object_add(d, "from_ticket", json_object_new_int64(op_json_int(src, "ticket_id",
	    0)));
	return d;
}

/* The action ran or may have: unknown, then verified on a fresh window. */
static void
ha_resume_unknown(struct ticket *t, json_object *src, json_object *rec, json_object *mk)
{
	struct action a;

	if (ha_walk(t, TK_DIAGNOSED) != 0 || ha_plan_one(t, src, rec ? rec : mk, &a) != 0)
		return;
	if (action_set_status(&a, ACT_PENDING, NULL) == 0 &&
	    action_set_status(&a, ACT_DISPATCHED, NULL) == 0 &&
	    action_set_status(&a, ACT_UNKNOWN, "dispatched by the previous leader; no result") == 0 &&
	    ticket_set_status(t, TK_ACTING, NULL) == 0) {
		/* the term it was dispatched under: the old leader's */
		json_object *from = rec ? rec : mk;
		ledger_exec(od->ledger, "UPDATE actions SET applied='unknown', attempt=1,"
		    " dispatched_at=?1, decided_by=?2, term=?3 WHERE id=?4", "isii",
		    op_json_int(src, "dispatched_at", op_wall_ms()), "ha:resume",
		    op_json_int(mk ? mk : from, "term", 0), a.id);
		json_object_object_add(a.row, "applied", json_object_new_string("unknown"));
		ticket_add_attempt(t);
		json_object *x = ha_resumed_data(rec, mk);
		json_object_object_add(x, "marker", json_object_new_boolean(mk != NULL));
		action_event(t, &a, "action_unknown", "dispatched by the previous leader and never "
		    "answered: verify, never re-run", x);
		acting_verify(t, &a);
	}
	action_free(&a);
}

static void
ha_resume_approval(struct ticket *t, json_object *act, json_object *rec)
{
	struct action a;

	if (ha_walk(t, TK_DIAGNOSED) != 0 || ha_plan_one(t, act, rec, &a) != 0)
		return;
	if (action_set_status(&a, ACT_AWAITING_APPROVAL, NULL) == 0 &&
	    ticket_set_status(t, TK_AWAITING_APPROVAL, NULL) == 0) {
		int64_t deadline = op_json_int(act, "approval_deadline", 0);
		if (deadline <= 0)
			deadline = op_wall_ms() + od->safety.approval_ttl_ms;
		ledger_exec(od->ledger, "UPDATE actions SET approval_deadline=?1, level=?2,"
		    " approval_reason=?3, needs_approval=?4 WHERE id=?5", "issii", deadline,
		    op_json_str(act, "level", "approve"), op_json_str(act, "approval_reason",
		    "approval required"), op_json_int(act, "needs_approval", 0), a.id);
		json_object *x = ha_resumed_data(rec, NULL);
		char ts[OP_TS_LEN];
		op_rfc3339(deadline, ts);
		json_object_object_add(x, "expires_at", json_object_new_string(ts));
		json_object_object_add(x, "level", json_object_new_string(op_json_str(act, "level",
		    "approve")));
		action_event(t, &a, "action_awaiting_approval", op_json_str(act, "approval_reason",
		    "approval required"), x);
	}
	action_free(&a);
}

/* One fingerprint: record rec and/or marker mk. */
static void
ha_resume_one(const char *subject, json_object *rec, json_object *mk)
{
	json_object *src = rec ? rec : mk;
	const char *fp = op_json_str(src, "fingerprint", "");
	json_object *act = rec ? op_json_obj(rec, "action") : NULL;
	struct ticket t;

	/* The marker counts when it names the record's current action (or
	 * when there is no record: it was written before the first record). */
	int marked = mk != NULL && (act == NULL ||
	    (op_json_int(mk, "action_id", -1) == op_json_int(act, "id", -2) &&
	    op_json_int(mk, "term", -1) == op_json_int(rec, "term", -2)));
	const char *ast = act ? op_json_str(act, "status", "") : "";
	const char *tst = rec ? op_json_str(rec, "status", "") : "acting";

	if (ticket_load_live(&t, fp) == 0) {
		if (rec != NULL && !strcmp(op_json_str(rec, "leader", ""), ha_name())) {
			ticket_free(&t);
			return; /* ours: the local ledger knows it best */
		}
		/* Someone else worked it since: their record wins over our stale
		 * copy (a verification cannot clear: it goes back a step first). */
		json_object *c = json_object_new_object();
		json_object_object_add(c, "reason", json_object_new_string(
		    "superseded by the work of another instance; resumed from its record"));
		if (t.status == TK_VERIFYING)
			ticket_set_status(&t, TK_DIAGNOSED, NULL);
		acting_close(&t, TK_CLEARED, "ticket_cleared", c);
		int still = !ticket_closed(&t);
		ticket_free(&t);
		if (still)
			return;
	}
	int64_t id = ticket_insert(fp, subject, op_json_str(src, "invariant", ""),
	    op_json_str(src, "entity", ""), op_json_str(rec, "severity", "warning"),
	    op_json_str(rec, "message", "resumed from another instance"),
	    rec ? op_json_obj(rec, "evidence") : NULL);
	if (id < 0 || ticket_load(&t, id) != 0)
		return;
	json_object *d = ha_resumed_data(rec, mk);
	json_object_object_add(d, "fingerprint", json_object_new_string(fp));
	json_object_object_add(d, "resumed", json_object_new_boolean(1));
	json_object_object_add(d, "status_there", json_object_new_string(tst));
	ticket_event(&t, "ticket_opened", d);
	log_info("ticket %lld resumed from %s (%s, action %s)", (long long)id,
	    op_json_str(src, "leader", "?"), tst, ast[0] ? ast : "none");

	if (marked || !strcmp(ast, "dispatched") || !strcmp(ast, "unknown") ||
	    !strcmp(tst, "verifying")) {
		ha_resume_unknown(&t, marked && act == NULL ? mk : (act ? act : mk), rec, mk);
	} else if (!strcmp(ast, "awaiting_approval")) {
		ha_resume_approval(&t, act, rec);
	} else if (!strcmp(tst, "escalated")) {
		if (ha_walk(&t, TK_DIAGNOSING) == 0)
			acting_escalate(&t, op_json_str(rec, "reason", "escalated by the previous leader"));
	} else {
		/* Nothing of it ran: a fresh look, under our term. */
		acting_start_diagnosis(&t);
	}
	ticket_free(&t);
}

void
ha_resume(const char *subject, json_object *work, json_object *exec)
{
	json_object *seen = json_object_new_object();

	/* records, each with its marker */
	json_object_object_foreach(work, wkey, rec) {
		const char *fp = op_json_str(rec, "fingerprint", NULL);
		if (fp == NULL || strcmp(op_json_str(rec, "subject", ""), subject) != 0)
			continue;
		json_object *mk = NULL;
		json_object_object_foreach(exec, xkey, m) {
			(void)xkey;
			if (!strcmp(op_json_str(m, "fingerprint", ""), fp))
				mk = m;
		}
		json_object_object_add(seen, fp, json_object_new_boolean(1));
		ha_resume_one(subject, rec, mk);
		(void)wkey;
	}
	/* markers whose ticket was never recorded */
	json_object_object_foreach(exec, xkey2, m2) {
		(void)xkey2;
		const char *fp = op_json_str(m2, "fingerprint", NULL);
		if (fp == NULL || json_object_object_get_ex(seen, fp, NULL) ||
		    strcmp(op_json_str(m2, "subject", ""), subject) != 0)
			continue;
		json_object_object_add(seen, fp, json_object_new_boolean(1));
		ha_resume_one(subject, NULL, m2);
	}
	/* A live ticket of ours that no record names is left to run its course:
	 * if another leader fixed it meanwhile, the executor's own gate finds it
	 * healed before acting, and the ticket clears. */
	json_object_put(seen);
}
