/* opeval_score: one trial's score, from the ledger's events alone.
 *
 * The ticket that counts is the first one opened (or reopened) after the
 * trial started on an invariant the fault declares as expected, for the
 * entity chaos named as its target. Other tickets on the fault's expected or
 * collateral invariants are its collateral; anything else is a false ticket.
 * Fixed means ticket_resolved after a verification whose result was success. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/opeval.h"
#include "common/jsonutil.h"
#include "common/util.h"

const char *const eval_status_names[EVAL_NSTATUS] = {
	"fixed", "escalated", "timeout", "not_detected", "not_started", "cleared", "unproven",
};

/* Actions whose events say something ran (or may have). */
static const char *const score_action_types[] = {
	"action_executed", "action_failed", "action_unknown",
};

int
eval_list_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return 1;
		p = c ? c + 1 : NULL;
	}
	return 0;
}

static void
score_add_unique(json_object *arr, int64_t id)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++)
		if (json_object_get_int64(json_object_array_get_idx(arr, i)) == id)
			return;
	json_object_array_add(arr, json_object_new_int64(id));
}

static json_object *
score_secs(int64_t ms)
{
	return json_object_new_double((double)ms / 1000.0);
}

/* One human line per event for the excerpt of a failed trial. */
static void
score_excerpt(json_object *ex, json_object *ev, int64_t t0)
{
	json_object *d = op_json_obj(ev, "data");
	const char *hint = op_json_str(d, "message", NULL);
	char line[512];

	if (json_object_array_length(ex) >= EVAL_EXCERPT_MAX)
		return;
	if (hint == NULL)
		hint = op_json_str(d, "reason", NULL);
	if (hint == NULL)
		hint = op_json_str(d, "primary_diagnosis", NULL);
	if (hint == NULL)
		hint = op_json_str(d, "result", NULL);
	if (hint == NULL)
		hint = op_json_str(d, "action", NULL);
	snprintf(line, sizeof(line), "%+7.1fs #%lld %s%s%s%s%s%s ticket=%lld%s%s",
	    (double)(op_json_int(ev, "ts", 0) - t0) / 1000.0, (long long)op_json_int(ev, "seq", 0),
	    op_json_str(ev, "type", "?"), op_json_str(ev, "invariant", NULL) ? " " : "",
	    op_json_str(ev, "invariant", ""), op_json_str(ev, "entity", NULL) ? " [" : "",
	    op_json_str(ev, "entity", ""), op_json_str(ev, "entity", NULL) ? "]" : "",
	    (long long)op_json_int(ev, "ticket", 0), hint ? ": " : "", hint ? hint : "");
	json_object_array_add(ex, json_object_new_string(line));
}

static int
score_noise(const char *type)
{
	/* worker chatter says nothing about the trial */
	return strncmp(type, "worker_", 7) == 0 || strcmp(type, "daemon_started") == 0;
}

void
eval_score(json_object *events, const struct eval_truth *t, int64_t to_seq, int baseline,
    json_object *trial)
{
	json_object *falses = json_object_new_array(), *coll = json_object_new_array();
	json_object *actions = json_object_new_array(), *outside = json_object_new_array();
	json_object *skipped = json_object_new_array(), *ex = json_object_new_array();
	int64_t ticket = 0, open_ts = 0, effect_ts = 0, fixed_ts = 0, cleared_ts = 0;
	int64_t tin = 0, tout = 0;
	double cost = 0;
	int escalated = 0, verified = 0, unproven = 0;
	char vresult[32] = "";
	const char *why = NULL;

	for (size_t i = 0; i < json_object_array_length(events); i++) {
		json_object *ev = json_object_array_get_idx(events, i), *d = op_json_obj(ev, "data");
		int64_t seq = op_json_int(ev, "seq", 0), ts = op_json_int(ev, "ts", 0);
		int64_t tk = op_json_int(ev, "ticket", 0);
		const char *type = op_json_str(ev, "type", ""), *inv = op_json_str(ev, "invariant", "");
		const char *ent = op_json_str(ev, "entity", ""), *sj = op_json_str(ev, "subject", "");

		/* from the trial's start: a ticket that beat chaos's report still counts */
		if (seq <= t->from_seq)
			continue;
		if (seq > to_seq)
			break;
		if (!score_noise(type))
			score_excerpt(ex, ev, t->started_at);
		int ours_sj = strcmp(sj, t->subject) == 0;
		if (!strcmp(type, "violation") && ours_sj && effect_ts == 0 &&
		    eval_list_has(t->expected, inv) && strcmp(ent, t->target) == 0)
			effect_ts = ts;
		if (!strcmp(type, "ticket_opened") || !strcmp(type, "ticket_reopened")) {
			if (ticket == 0 && ours_sj && eval_list_has(t->expected, inv) &&
			    strcmp(ent, t->target) == 0) {
				ticket = tk;
				open_ts = ts;
			} else if (ours_sj && (eval_list_has(t->expected, inv) ||
			    eval_list_has(t->collateral, inv))) {
				if (tk != ticket)
					score_add_unique(coll, tk);
			} else if (tk != ticket) {
				score_add_unique(falses, tk);
			}
			continue;
		}
		if (!strcmp(type, "diagnosis")) {
			tin += op_json_int(d, "tokens_in", 0);
			tout += op_json_int(d, "tokens_out", 0);
			cost += op_json_double(d, "cost_usd", 0);
		}
		for (size_t k = 0; k < OP_ARRAY_LEN(score_action_types); k++) {
			if (strcmp(type, score_action_types[k]) != 0)
				continue;
			const char *a = op_json_str(d, "action", "?");
			json_object *o = json_object_new_object();
			op_json_set_str(o, "action", a);
			op_json_set_str(o, "event", type);
			op_json_set_int(o, "ticket", tk);
			json_object_array_add(actions, json_object_get(o));
			if (!eval_list_has(t->remedies, a))
				json_object_array_add(outside, json_object_get(o));
			json_object_put(o);
		}
		if (!strcmp(type, "action_skipped")) {
			json_object *o = json_object_new_object();
			op_json_set_str(o, "action", op_json_str(d, "action", "?"));
			op_json_set_str(o, "reason", op_json_str(d, "reason", "?"));
			op_json_set_int(o, "ticket", tk);
			json_object_array_add(skipped, o);
		}
		if (ticket == 0 || tk != ticket)
			continue;
		if (!strcmp(type, "verification")) {
			op_strlcpy(vresult, op_json_str(d, "result", ""), sizeof(vresult));
			verified = strcmp(vresult, "success") == 0;
		} else if (!strcmp(type, "ticket_resolved") && fixed_ts == 0 && cleared_ts == 0) {
			fixed_ts = verified ? ts : 0;
			unproven = !verified && !strcmp(vresult, "unproven");
		}
		else if (!strcmp(type, "ticket_escalated"))
			escalated = 1;
		else if (!strcmp(type, "ticket_cleared") && cleared_ts == 0 && fixed_ts == 0)
			cleared_ts = ts;
	}

	enum eval_status st;
	if (ticket == 0) {
		st = EVAL_NOT_DETECTED;
		why = "no ticket on an expected invariant for the target";
	} else if (baseline) {
		st = cleared_ts ? EVAL_CLEARED : fixed_ts ? EVAL_FIXED : EVAL_TIMEOUT;
	} else if (fixed_ts) {
		st = EVAL_FIXED;
	} else if (unproven) {
		st = EVAL_UNPROVEN;
		why = "resolved, but the verification was unproven (the fault's undo fell in its window)";
	} else if (escalated) {
		st = EVAL_ESCALATED;
	} else if (cleared_ts) {
		st = EVAL_CLEARED;
		why = "the ticket cleared before a verified fix";
	} else {
		st = EVAL_TIMEOUT;
		why = "no verdict before the trial's timeout";
	}
	op_json_set_str(trial, "status", eval_status_names[st]);
	json_object_object_add(trial, "ticket", ticket ? json_object_new_int64(ticket) : NULL);
	json_object_object_add(trial, "ttd_s", open_ts ? score_secs(open_ts - t->started_at) : NULL);
	json_object_object_add(trial, "ttf_s", fixed_ts ? score_secs(fixed_ts - t->started_at) : NULL);
	json_object_object_add(trial, "effect_s",
	    effect_ts ? score_secs(effect_ts - t->started_at) : NULL);
	json_object_object_add(trial, "self_heal_s",
	    baseline && cleared_ts ? score_secs(cleared_ts - t->started_at) : NULL);
	json_object_object_add(trial, "cleared_s",
	    cleared_ts ? score_secs(cleared_ts - t->started_at) : NULL);
	json_object_object_add(trial, "fault_ended_s",
	    t->ended_at ? score_secs(t->ended_at - t->started_at) : NULL);
	json_object_object_add(trial, "false_tickets", falses);
	json_object_object_add(trial, "collateral_tickets", coll);
	op_json_set_int(trial, "actions_count", (int64_t)json_object_array_length(actions));
	json_object_object_add(trial, "actions", actions);
	json_object_object_add(trial, "actions_outside_remedies", outside);
	json_object_object_add(trial, "actions_skipped", skipped);
	op_json_set_int(trial, "tokens_in", tin);
	op_json_set_int(trial, "tokens_out", tout);
	json_object_object_add(trial, "cost_usd", json_object_new_double(cost));
	if (why)
		op_json_set_str(trial, "why", why);
	json_object_object_add(trial, "excerpt", ex);
}

static int
score_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double
eval_pct(json_object *trials, const char *fault, const char *key, double p)
{
	size_t n = trials ? json_object_array_length(trials) : 0, k = 0;
	double *v = calloc(n ? n : 1, sizeof(*v));
	json_object *x;
	double r = NAN;

	if (v == NULL)
		return NAN;
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(trials, i);
		if (strcmp(op_json_str(t, "fault", ""), fault) == 0 &&
		    json_object_object_get_ex(t, key, &x) && x != NULL)
			v[k++] = json_object_get_double(x);
	}
	if (k > 0) {
		qsort(v, k, sizeof(*v), score_cmp);
		size_t rank = (size_t)ceil(p * (double)k);
		r = v[rank ? rank - 1 : 0];
	}
	free(v);
	return r;
}
