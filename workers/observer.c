/* observer: polls every subject, evaluates its invariants and turns readings
 * into violation/cleared transitions with hold-for and clear-for hysteresis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "workers/worker.h"

#define OBS_UNREACHABLE "subject_unreachable"
#define OBS_UNREACHABLE_HOLD_MS 0
#define OBS_UNREACHABLE_CLEAR_MS 2000

struct obs_state {
	char fp[512];
	char subject[OP_NAME_MAX], invariant[OP_NAME_MAX], entity[OP_ENTITY_MAX];
	int firing;
	int64_t violated_since, healthy_since;
	struct obs_state *next;
};

struct observer {
	struct event *timer;
	int64_t poll_ms;
	struct obs_state *states;
	uint64_t polls;
};

static struct obs_state *
obs_get(struct observer *o, const char *subject, const char *invariant, const char *entity,
    int create)
{
	char fp[512];

	op_fingerprint(fp, sizeof(fp), subject, invariant, entity);
	for (struct obs_state *s = o->states; s; s = s->next)
		if (strcmp(s->fp, fp) == 0)
			return s;
	if (!create)
		return NULL;
	struct obs_state *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	op_strlcpy(s->fp, fp, sizeof(s->fp));
	op_strlcpy(s->subject, subject, sizeof(s->subject));
	op_strlcpy(s->invariant, invariant, sizeof(s->invariant));
	op_strlcpy(s->entity, entity, sizeof(s->entity));
	s->next = o->states;
	o->states = s;
	return s;
}

static json_object *
obs_body(const char *subject, const char *invariant, const char *entity)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "subject", json_object_new_string(subject));
	json_object_object_add(b, "invariant", json_object_new_string(invariant));
	json_object_object_add(b, "entity", json_object_new_string(entity));
	return b;
}

/* One reading moves the per-fingerprint state; transitions go to the supervisor. */
static void
obs_apply(struct worker *w, struct observer *o, const char *subject, const char *invariant,
    const char *severity, int64_t hold_ms, int64_t clear_ms, const struct op_reading *r,
    int64_t now)
{
	struct obs_state *s = obs_get(o, subject, invariant, r->entity, r->state == OP_RD_VIOLATED);

	if (s == NULL)
		return;
	switch (r->state) {
	case OP_RD_VIOLATED:
		s->healthy_since = 0;
		if (s->violated_since == 0)
			s->violated_since = now;
		if (!s->firing && now - s->violated_since >= hold_ms) {
			s->firing = 1;
			json_object *b = obs_body(subject, invariant, r->entity);
			json_object_object_add(b, "severity", json_object_new_string(severity));
			json_object_object_add(b, "message", json_object_new_string(r->message));
			json_object_object_add(b, "value", json_object_new_double(r->value));
			json_object_object_add(b, "threshold", json_object_new_double(r->threshold));
			json_object_object_add(b, "held_ms", json_object_new_int64(now - s->violated_since));
			json_object_object_add(b, "evidence", json_object_get(r->evidence));
			log_info("violation %s: %s", s->fp, r->message);
			worker_send(w, OP_MSG_VIOLATION, 0, b);
		}
		break;
	case OP_RD_HEALTHY:
		s->violated_since = 0;
		if (s->healthy_since == 0)
			s->healthy_since = now;
		if (s->firing && now - s->healthy_since >= clear_ms) {
			s->firing = 0;
			json_object *b = obs_body(subject, invariant, r->entity);
			json_object_object_add(b, "message", json_object_new_string(r->message));
			json_object_object_add(b, "evidence", json_object_get(r->evidence));
			log_info("cleared %s: %s", s->fp, r->message);
			worker_send(w, OP_MSG_CLEARED, 0, b);
		}
		break;
	case OP_RD_BAND:
		/* Cannot tell, or between thresholds: keep the state, restart the clocks. */
		s->violated_since = 0;
		s->healthy_since = 0;
		break;
	}
}

static void
obs_poll_subject(struct worker *w, struct observer *o, struct op_subject *sj, int64_t now)
{
	json_object *obs = NULL;
	char err[512] = "";
	struct op_readings rd = {0};
	int64_t t0 = op_mono_ms();

	if (sj->ops->observe(sj, &obs, err, sizeof(err)) != 0) {
		/* An observation that fails is a violation of its own and never clears anything. */
		json_object *ev = json_object_new_object();
		json_object_object_add(ev, "error", json_object_new_string(err));
		op_readings_add(&rd, OBS_UNREACHABLE, sj->name, OP_RD_VIOLATED, 1, 0, ev,
		    "%s cannot be observed: %s", sj->name, err);
		obs_apply(w, o, sj->name, OBS_UNREACHABLE, "critical", OBS_UNREACHABLE_HOLD_MS,
		    OBS_UNREACHABLE_CLEAR_MS, &rd.v[0], now);
		goto out;
	}
	op_readings_add(&rd, OBS_UNREACHABLE, sj->name, OP_RD_HEALTHY, 0, 0, NULL,
	    "%s observed", sj->name);
	/* What is firing needs an explicit reading to heal. */
	for (struct obs_state *s = o->states; s; s = s->next)
		if (s->firing && !strcmp(s->subject, sj->name))
			op_obs_focus(obs, s->entity);
	sj->ops->check(sj, obs, &rd);
	for (size_t i = 0; i < rd.n; i++) {
		const struct op_reading *r = &rd.v[i];
		const struct op_invariant_def *def = op_subject_invariant(sj, r->invariant);
		if (def != NULL)
			obs_apply(w, o, sj->name, def->name, def->severity, def->hold_for_ms,
			    def->clear_for_ms, r, now);
		else if (strcmp(r->invariant, OBS_UNREACHABLE) == 0)
			obs_apply(w, o, sj->name, OBS_UNREACHABLE, "critical", OBS_UNREACHABLE_HOLD_MS,
			    OBS_UNREACHABLE_CLEAR_MS, r, now);
	}
	/* A firing fingerprint with no reading keeps its state: only an explicit
	 * healthy reading heals. A key missing from a truncated list, or from a
	 * node that did not answer, has not been shown to be fixed. */
	/* Only firing fingerprints and running hold-for clocks need memory: keys
	 * come and go, and the list must not grow with every one ever seen. */
	for (struct obs_state **pp = &o->states; *pp;) {
		struct obs_state *s = *pp;
		if (strcmp(s->subject, sj->name) == 0 && !s->firing && s->violated_since == 0) {
			*pp = s->next;
			free(s);
			continue;
		}
		pp = &s->next;
	}
out:
	if (o->polls % 30 == 0) {
		json_object *b = json_object_new_object();
		json_object_object_add(b, "subject", json_object_new_string(sj->name));
		json_object_object_add(b, "ok", json_object_new_boolean(obs != NULL));
		json_object_object_add(b, "duration_ms", json_object_new_int64(op_mono_ms() - t0));
		/* issue 9: the blast radius's denominator (TiKV: the stores PD lists) */
		json_object_object_add(b, "nodes", json_object_new_int64(op_obs_nodes(obs)));
		worker_send(w, OP_MSG_OBSERVED, 0, b);
	}
	op_readings_clear(&rd);
	json_object_put(obs);
}

static void
obs_on_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct worker *w = arg;
	struct observer *o = w->priv;
	int64_t now = op_mono_ms();

	(void)fd;
	(void)ev;
	for (size_t i = 0; i < w->subjects.n && !w->stopping; i++)
		obs_poll_subject(w, o, &w->subjects.v[i], now);
	o->polls++;
	/* Fixed cadence from now: a slow observation delays, never piles up. */
	struct timeval tv = {o->poll_ms / 1000, (o->poll_ms % 1000) * 1000};
	evtimer_add(o->timer, &tv);
}

static void
obs_watch(struct observer *o, json_object *body)
{
	json_object *live = op_json_arr(body, "fingerprints");
	json_object *closed = op_json_arr(body, "closed");

	/* Seeds what the previous incarnation knew, so healed tickets still clear. */
	for (size_t i = 0; live && i < json_object_array_length(live); i++) {
		json_object *f = json_object_array_get_idx(live, i);
		struct obs_state *s = obs_get(o, op_json_str(f, "subject", ""),
		    op_json_str(f, "invariant", ""), op_json_str(f, "entity", ""), 1);
		if (s)
			s->firing = 1;
	}
	/* A closed ticket must be able to open again if the fault is still there. */
	for (size_t i = 0; closed && i < json_object_array_length(closed); i++) {
		json_object *f = json_object_array_get_idx(closed, i);
		struct obs_state *s = obs_get(o, op_json_str(f, "subject", ""),
		    op_json_str(f, "invariant", ""), op_json_str(f, "entity", ""), 0);
		if (s) {
			s->firing = 0;
			s->violated_since = 0;
		}
	}
}

/* A ticket closed (resolved, rejected, cleared by hand): what this observer
 * said about it is forgotten, so a fault still present is reported again
 * after its hold-for and gets a ticket. */
static void
obs_forget(struct observer *o, json_object *body)
{
	struct obs_state *s = obs_get(o, op_json_str(body, "subject", ""),
	    op_json_str(body, "invariant", ""), op_json_str(body, "entity", ""), 0);

	if (s != NULL) {
		s->firing = 0;
		s->violated_since = 0;
	}
}

static void
obs_on_msg(struct worker *w, struct op_msg *m)
{
	struct observer *o = w->priv;

	if (m->type == OP_MSG_WATCH) {
		obs_watch(o, m->body);
	} else if (m->type == OP_MSG_CLOSED) {
		obs_forget(o, m->body);
	} else if (m->type == OP_MSG_OBSERVE_REQ) {
		const char *name = op_json_str(m->body, "subject", "");
		struct op_subject *sj = op_subjects_find(&w->subjects, name);
		json_object *b = json_object_new_object();
		json_object *obs = NULL;
		char err[512];
		json_object_object_add(b, "subject", json_object_new_string(name));
		if (sj == NULL) {
			json_object_object_add(b, "ok", json_object_new_boolean(0));
			snprintf(err, sizeof(err), "no subject \"%s\" is configured", name);
			json_object_object_add(b, "error", json_object_new_string(err));
		} else if (sj->ops->observe(sj, &obs, err, sizeof(err)) != 0) {
			json_object_object_add(b, "ok", json_object_new_boolean(0));
			json_object_object_add(b, "error", json_object_new_string(err));
		} else {
			json_object_object_add(b, "ok", json_object_new_boolean(1));
			json_object_object_add(b, "observation", obs);
		}
		worker_send(w, OP_MSG_OBSERVE_REP, m->id, b);
	}
}

static int
obs_init(struct worker *w, char *err, size_t errlen)
{
	struct observer *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return -1;
	w->priv = o;
	if (op_config_duration(w->cfg, "operatord", "poll_interval", WK_POLL_MS, &o->poll_ms, err,
		errlen) != 0)
		return -1;
	o->timer = evtimer_new(w->base, obs_on_timer, w);
	struct timeval tv = {0, 100 * 1000};
	evtimer_add(o->timer, &tv);
	return 0;
}

static void
obs_fini(struct worker *w)
{
	struct observer *o = w->priv;

	if (o == NULL)
		return;
	event_free(o->timer);
	while (o->states) {
		struct obs_state *n = o->states->next;
		free(o->states);
		o->states = n;
	}
	free(o);
}

const struct worker_role observer_role = {
	.name = "observer", .init = obs_init, .on_msg = obs_on_msg, .fini = obs_fini,
};
