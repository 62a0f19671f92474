/* verifier: after an action, waits verify_delay, then re-checks the ticket's
 * invariant on fresh observations until it holds for the settle window
 * (success) or the timeout passes (failure). The figures that decided it go
 * back with the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "workers/worker.h"

struct vjob {
	int64_t ticket_id, action_id;
	char subject[OP_NAME_MAX], invariant[OP_NAME_MAX], entity[OP_ENTITY_MAX];
	char action[OP_NAME_MAX];
	json_object *params;
	int64_t executed_at;  /* wall clock ms, as recorded in the ledger */
	int64_t base_mono;    /* executed_at on the monotonic clock: timing uses this */
	int64_t delay_ms, settle_ms, timeout_ms;
	int64_t healthy_since;
	int checks, healthy_checks;
	int unknown;        /* nobody knows whether the action ran: judge the fault itself */
	int resumed;        /* re-sent after a restart, with a fresh window */
	json_object *last;  /* figures of the last check */
	struct vjob *next;
};

struct verifier {
	struct event *timer;
	struct vjob *jobs;
};

static void
ver_free(struct vjob *j)
{
	json_object_put(j->last);
	json_object_put(j->params);
	free(j);
}

static void
ver_arm(struct verifier *v)
{
	struct timeval tv = {0, WK_VERIFY_TICK_MS * 1000};

	if (!evtimer_pending(v->timer, NULL))
		evtimer_add(v->timer, &tv);
}

static json_object *
ver_figures(struct vjob *j, const struct op_reading *r, int64_t now)
{
	json_object *f = json_object_new_object();

	json_object_object_add(f, "invariant", json_object_new_string(j->invariant));
	json_object_object_add(f, "entity", json_object_new_string(j->entity));
	json_object_object_add(f, "state", json_object_new_string(
	    r == NULL ? "absent" : r->state == OP_RD_HEALTHY ? "healthy"
	    : r->state == OP_RD_VIOLATED ? "violated" : "undetermined"));
	if (r != NULL) {
		json_object_object_add(f, "value", json_object_new_double(r->value));
		json_object_object_add(f, "threshold", json_object_new_double(r->threshold));
		json_object_object_add(f, "message", json_object_new_string(r->message));
		json_object_object_add(f, "evidence", json_object_get(r->evidence));
	}
	json_object_object_add(f, "checks", json_object_new_int(j->checks));
	json_object_object_add(f, "judged", json_object_new_string(j->unknown
	    ? "invariant (the action's effect is unknown)" : "invariant or expected outcome"));
	if (j->resumed)
		json_object_object_add(f, "resumed", json_object_new_boolean(1));
	json_object_object_add(f, "healthy_checks", json_object_new_int(j->healthy_checks));
	json_object_object_add(f, "waited_ms", json_object_new_int64(now - j->base_mono));
	json_object_object_add(f, "verify_delay_ms", json_object_new_int64(j->delay_ms));
	json_object_object_add(f, "settle_ms", json_object_new_int64(j->settle_ms));
	return f;
}

static void
ver_finish(struct worker *w, struct vjob *j, const char *result, const char *why, int64_t now)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ticket_id", json_object_new_int64(j->ticket_id));
	json_object_object_add(b, "action_id", json_object_new_int64(j->action_id));
	json_object_object_add(b, "action", json_object_new_string(j->action));
	json_object_object_add(b, "result", json_object_new_string(result));
	json_object_object_add(b, "reason", json_object_new_string(why));
	json_object_object_add(b, "started_at", json_object_new_int64(j->executed_at + j->delay_ms));
	json_object_object_add(b, "figures", j->last ? json_object_get(j->last) : json_object_new_object());
	log_info("ticket %lld verification %s: %s", (long long)j->ticket_id, result, why);
	worker_send(w, OP_MSG_VERIFICATION, 0, b);
	(void)now;
}

static void
ver_check_subject(struct worker *w, struct verifier *v, struct op_subject *sj, int64_t now)
{
	json_object *obs = NULL;
	struct op_readings rd = {0};
	char err[512];
	int due = 0, ok;

	for (struct vjob *j = v->jobs; j; j = j->next)
		if (!strcmp(j->subject, sj->name) && now >= j->base_mono + j->delay_ms)
			due = 1;
	if (!due)
		return;
	ok = sj->ops->observe(sj, &obs, err, sizeof(err)) == 0;
	if (ok) {
		/* Every entity judged here needs an explicit reading. */
		for (struct vjob *j = v->jobs; j; j = j->next)
			if (!strcmp(j->subject, sj->name))
				op_obs_focus(obs, j->entity);
		sj->ops->check(sj, obs, &rd);
	}
	for (struct vjob **pp = &v->jobs; *pp;) {
		struct vjob *j = *pp;
		if (strcmp(j->subject, sj->name) != 0 || now < j->base_mono + j->delay_ms) {
			pp = &j->next;
			continue;
		}
		const struct op_reading *r = ok ? op_readings_find(&rd, j->invariant, j->entity) : NULL;
		struct op_reading judged = {0};
		/* An action whose effect nobody knows is verified against the fault
		 * (its invariant), never against the action's expected outcome. */
		if (ok && !j->unknown && sj->ops->outcome != NULL &&
		    sj->ops->outcome(sj, j->invariant, j->entity, j->action, j->params, obs, &judged) == 1)
			r = &judged;
		j->checks++;
		json_object_put(j->last);
		j->last = ver_figures(j, r, now);
		if (ok) { /* issue 9: is the subject worse than before the action? */
			struct op_health h;
			op_health_of(sj, obs, j->invariant, j->entity, &h);
			json_object_object_add(j->last, "health", op_health_json(&h));
		}
		if (!ok) {
			/* Not seeing the system is never evidence that it healed. */
			json_object_object_add(j->last, "error", json_object_new_string(err));
			j->healthy_since = 0;
		} else if (r != NULL && r->state == OP_RD_HEALTHY) {
			/* Only an explicit healthy reading counts: an entity the
			 * observation does not account for (a key that aged out of the
			 * window, a truncated list) has not been shown to be fixed. */
			j->healthy_checks++;
			if (j->healthy_since == 0)
				j->healthy_since = now;
		} else {
			j->healthy_since = 0;
		}
		const char *result = NULL;
		char why[256];
		if (j->healthy_since && now - j->healthy_since >= j->settle_ms) {
			result = "success";
			snprintf(why, sizeof(why), "%s holds for %s after %s (%lld ms settled)",
			    j->invariant, j->entity, j->action, (long long)(now - j->healthy_since));
		} else if (now - j->base_mono > j->timeout_ms) {
			result = "failure";
			snprintf(why, sizeof(why), "%s still not holding for %s %lld ms after %s",
			    j->invariant, j->entity, (long long)(now - j->base_mono), j->action);
		}
		json_object_put(judged.evidence);
		if (result != NULL) {
			ver_finish(w, j, result, why, now);
			*pp = j->next;
			ver_free(j);
			continue;
		}
		pp = &j->next;
	}
	op_readings_clear(&rd);
	json_object_put(obs);
}

static void
ver_on_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct worker *w = arg;
	struct verifier *v = w->priv;
	int64_t now = op_mono_ms();

	(void)fd;
	(void)ev;
	for (size_t i = 0; i < w->subjects.n; i++)
		ver_check_subject(w, v, &w->subjects.v[i], now);
	/* Jobs for subjects this process does not know can never pass. */
	for (struct vjob **pp = &v->jobs; *pp;) {
		struct vjob *j = *pp;
		if (op_subjects_find(&w->subjects, j->subject) == NULL) {
			ver_finish(w, j, "failure", "subject not configured", now);
			*pp = j->next;
			ver_free(j);
			continue;
		}
		pp = &j->next;
	}
	if (v->jobs)
		ver_arm(v);
}

static void
ver_on_msg(struct worker *w, struct op_msg *m)
{
	struct verifier *v = w->priv;
	struct vjob *j;
	int64_t tid, aid;

	if (m->type != OP_MSG_VERIFY)
		return;
	tid = op_json_int(m->body, "ticket_id", 0);
	aid = op_json_int(m->body, "action_id", 0);
	for (j = v->jobs; j; j = j->next)
		if (j->ticket_id == tid && j->action_id == aid)
			return; /* already verifying this one */
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return;
	j->ticket_id = tid;
	j->action_id = aid;
	op_strlcpy(j->subject, op_json_str(m->body, "subject", ""), sizeof(j->subject));
	op_strlcpy(j->invariant, op_json_str(m->body, "invariant", ""), sizeof(j->invariant));
	op_strlcpy(j->entity, op_json_str(m->body, "entity", ""), sizeof(j->entity));
	op_strlcpy(j->action, op_json_str(m->body, "action", ""), sizeof(j->action));
	j->params = json_object_get(op_json_obj(m->body, "params"));
	j->executed_at = op_json_int(m->body, "executed_at", op_wall_ms());
	/* The wall clock only says how long ago it was; from here on an NTP step
	 * must not fail or stall a verification. */
	int64_t ago = op_wall_ms() - j->executed_at;
	j->base_mono = op_mono_ms() - (ago > 0 ? ago : 0);
	j->delay_ms = op_json_int(m->body, "verify_delay_ms", 5000);
	j->settle_ms = op_json_int(m->body, "settle_ms", 3000);
	j->timeout_ms = op_json_int(m->body, "timeout_ms", 60000);
	j->unknown = strcmp(op_json_str(m->body, "applied", "yes"), "yes") != 0;
	j->resumed = op_json_bool(m->body, "resumed", 0);
	j->next = v->jobs;
	v->jobs = j;
	ver_arm(v);
}

static int
ver_init(struct worker *w, char *err, size_t errlen)
{
	struct verifier *v = calloc(1, sizeof(*v));

	(void)err;
	(void)errlen;
	if (v == NULL)
		return -1;
	v->timer = evtimer_new(w->base, ver_on_timer, w);
	w->priv = v;
	return 0;
}

static void
ver_fini(struct worker *w)
{
	struct verifier *v = w->priv;

	if (v == NULL)
		return;
	while (v->jobs) {
		struct vjob *n = v->jobs->next;
		ver_free(v->jobs);
		v->jobs = n;
	}
	event_free(v->timer);
	free(v);
}

const struct worker_role verifier_role = {
	.name = "verifier", .init = ver_init, .on_msg = ver_on_msg, .fini = ver_fini,
};
