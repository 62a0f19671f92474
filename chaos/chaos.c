/* chaos: injects the subjects' faults on command, keeps each one's TTL and
 * undo, and undoes everything when it is told to stop. Every injection and
 * every undo is reported as ground truth for scoring. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "workers/worker.h"

#define CHAOS_MAX_TTL_MS (3600 * 1000) /* no fault outlives an hour */
#define CHAOS_MIN_GAP_MS 10000         /* scheduled injections at most this often */
#define CHAOS_DEF_GAP_MS 120000        /* default [chaos] interval */
#define CHAOS_MAX_SCHEDULE 16          /* faults in one schedule */
#define CHAOS_UNDO_TRIES 5             /* attempts at an undo before giving up */
#define CHAOS_UNDO_RETRY_MS 2000       /* between undo attempts */

struct fault {
	int64_t fault_id;       /* ledger id when resumed, 0 when new */
	char name[OP_NAME_MAX];
	struct op_subject *sj;
	json_object *undo;      /* what undo needs, from inject */
	json_object *params;
	int64_t started_at, ttl_ms;
	int undo_failures;
	struct event *timer;
	struct worker *w;
	struct fault *next;
};

struct chaos_entry {
	char fault[OP_NAME_MAX];
	json_object *params;    /* key=value strings, as opsend sends them */
};

struct chaos {
	struct fault *faults;
	struct chaos_entry schedule[CHAOS_MAX_SCHEDULE];
	size_t nschedule, next;
	int64_t gap_ms;
	struct event *sched_timer;
};

static void
chaos_report(struct worker *w, struct fault *f, const char *event, const char *reason,
    const char *error)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "event", json_object_new_string(event));
	json_object_object_add(b, "fault", json_object_new_string(f->name));
	json_object_object_add(b, "subject", json_object_new_string(f->sj->name));
	json_object_object_add(b, "target", json_object_new_string(op_json_str(f->undo, "target", "")));
	json_object_object_add(b, "params", json_object_get(f->params));
	json_object_object_add(b, "started_at", json_object_new_int64(f->started_at));
	json_object_object_add(b, "ttl_ms", json_object_new_int64(f->ttl_ms));
	json_object_object_add(b, "undo", json_object_get(f->undo));
	if (f->fault_id)
		json_object_object_add(b, "fault_id", json_object_new_int64(f->fault_id));
	/* what scoring needs to tell this fault's tickets from false ones */
	const struct op_fault_def *def = op_subject_fault(f->sj, f->name);
	if (def != NULL) {
		json_object_object_add(b, "expected", json_object_new_string(def->expected ? def->expected : ""));
		json_object_object_add(b, "collateral",
		    json_object_new_string(def->collateral ? def->collateral : ""));
		json_object_object_add(b, "remedies", json_object_new_string(def->remedies ? def->remedies : ""));
	}
	if (strcmp(event, "injected") != 0)
		json_object_object_add(b, "ended_at", json_object_new_int64(op_wall_ms()));
	if (reason)
		json_object_object_add(b, "reason", json_object_new_string(reason));
	if (error)
		json_object_object_add(b, "error", json_object_new_string(error));
	worker_send(w, OP_MSG_FAULT, 0, b);
}

static void
chaos_free(struct fault *f)
{
	if (f->timer)
		event_free(f->timer);
	json_object_put(f->undo);
	json_object_put(f->params);
	free(f);
}

static void
chaos_undo(struct worker *w, struct fault *f, const char *reason)
{
	struct chaos *c = w->priv;
	char err[512] = "";

	if (f->sj->ops->undo(f->sj, f->name, f->undo, err, sizeof(err)) != 0) {
		/* A transient failure (Redis busy, a node restarting) must not leave
		 * the fault in place: try again, and give up loudly only at the end. */
		/* Only the TTL path retries: kill switch, undo-all and shutdown drain
		 * the list in a loop and must see every fault leave it. */
		if (++f->undo_failures < CHAOS_UNDO_TRIES && strcmp(reason, "ttl expired") == 0) {
			log_warn("undo %s failed (%s); retrying in %d ms", f->name, err,
			    CHAOS_UNDO_RETRY_MS);
			struct timeval tv = {CHAOS_UNDO_RETRY_MS / 1000, (CHAOS_UNDO_RETRY_MS % 1000) * 1000};
			evtimer_add(f->timer, &tv);
			return;
		}
		log_err("undo %s failed for good: %s", f->name, err);
	} else {
		log_info("fault %s undone (%s)", f->name, reason);
	}
	chaos_report(w, f, "cleared", reason, err[0] ? err : NULL);
	for (struct fault **pp = &c->faults; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	chaos_free(f);
}

static void
chaos_on_ttl(evutil_socket_t fd, short ev, void *arg)
{
	struct fault *f = arg;

	(void)fd;
	(void)ev;
	chaos_undo(f->w, f, "ttl expired");
}

static struct op_subject *
chaos_find_subject(struct worker *w, const char *fault, const char *want)
{
	for (size_t i = 0; i < w->subjects.n; i++) {
		struct op_subject *sj = &w->subjects.v[i];
		if (want && strcmp(sj->name, want) != 0)
			continue;
		if (op_subject_fault(sj, fault))
			return sj;
	}
	return NULL;
}

static void
chaos_reply(struct worker *w, uint64_t id, int ok, const char *error, json_object *result)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ok", json_object_new_boolean(ok));
	if (error)
		json_object_object_add(b, "error", json_object_new_string(error));
	json_object_object_add(b, "result", result);
	worker_send(w, OP_MSG_REPLY, id, b);
}

static void
chaos_arm(struct worker *w, struct fault *f)
{
	struct chaos *c = w->priv;
	int64_t left = f->started_at + f->ttl_ms - op_wall_ms();

	if (left < 0)
		left = 0;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	f->w = w;
	f->timer = evtimer_new(w->base, chaos_on_ttl, f);
	evtimer_add(f->timer, &tv);
	f->next = c->faults;
	c->faults = f;
}

/* After a chaos restart the supervisor hands back the faults still active,
 * so their TTL and undo survive the process. */
static void
chaos_resume(struct worker *w, json_object *row)
{
	struct fault *f = calloc(1, sizeof(*f));
	const char *name = op_json_str(row, "fault", "");

	if (f == NULL)
		return;
	f->sj = op_subjects_find(&w->subjects, op_json_str(row, "subject", ""));
	if (f->sj == NULL) {
		free(f);
		return;
	}
	op_strlcpy(f->name, name, sizeof(f->name));
	f->fault_id = op_json_int(row, "id", 0);
	f->undo = json_object_get(op_json_obj(row, "undo"));
	f->params = json_object_get(op_json_obj(row, "params"));
	f->started_at = op_json_int(row, "started_at", op_wall_ms());
	f->ttl_ms = op_json_int(row, "ttl_ms", 0);
	if (f->undo == NULL)
		f->undo = json_object_new_object();
	chaos_arm(w, f);
	log_info("resumed fault %s, %lld ms left", f->name,
	    (long long)(f->started_at + f->ttl_ms - op_wall_ms()));
}

/* Injects one fault. Returns the result object, or NULL with err set. */
static json_object *
chaos_do_inject(struct worker *w, const char *name, json_object *params, char *err,
    size_t errlen)
{
	struct op_subject *sj;
	const struct op_fault_def *def;
	int64_t ttl;

	if (!w->chaos_enabled) {
		snprintf(err, errlen, "chaos is disabled by the configuration ([chaos] enabled = true to allow it)");
		return NULL;
	}
	if (w->kill_switch) {
		snprintf(err, errlen, "the kill switch is on: chaos is paused");
		return NULL;
	}
	sj = chaos_find_subject(w, name, op_json_str(params, "subject", NULL));
	def = sj ? op_subject_fault(sj, name) : NULL;
	if (def == NULL) {
		snprintf(err, errlen, "no fault \"%s\" in any configured subject", name);
		return NULL;
	}
	ttl = def->default_ttl_ms;
	const char *ttls = op_json_str(params, "ttl", NULL);
	if (ttls && (op_parse_duration(ttls, &ttl) != 0 || ttl <= 0 || ttl > CHAOS_MAX_TTL_MS)) {
		snprintf(err, errlen, "ttl=%s: expected a duration up to 1h, e.g. 15s", ttls);
		return NULL;
	}
	json_object *p = json_object_new_object();
	json_object_object_foreach(params, k, v)
	{
		if (strcmp(k, "ttl") != 0 && strcmp(k, "subject") != 0)
			json_object_object_add(p, k, json_object_get(v));
	}
	json_object_object_add(p, "ttl_ms", json_object_new_int64(ttl));
	struct fault *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		json_object_put(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	op_strlcpy(f->name, name, sizeof(f->name));
	f->sj = sj;
	f->params = p;
	f->ttl_ms = ttl;
	f->started_at = op_wall_ms();
	if (sj->ops->inject(sj, name, p, &f->undo, err, errlen) != 0) {
		log_warn("inject %s failed: %s", name, err);
		if (f->undo == NULL)
			f->undo = json_object_new_object();
		chaos_report(w, f, "failed", NULL, err);
		chaos_free(f);
		return NULL;
	}
	if (f->undo == NULL)
		f->undo = json_object_new_object();
	log_info("injected %s on %s for %lld ms", name, op_json_str(f->undo, "target", "?"),
	    (long long)ttl);
	/* Ground truth first, so scoring never misses an injection. */
	chaos_report(w, f, "injected", NULL, NULL);
	json_object *res = json_object_new_object();
	json_object_object_add(res, "fault", json_object_new_string(name));
	json_object_object_add(res, "subject", json_object_new_string(sj->name));
	json_object_object_add(res, "target", json_object_new_string(op_json_str(f->undo, "target", "")));
	json_object_object_add(res, "ttl_ms", json_object_new_int64(ttl));
	json_object_object_add(res, "started_at", json_object_new_int64(f->started_at));
	chaos_arm(w, f);
	return res;
}

static void
chaos_inject(struct worker *w, struct op_msg *m)
{
	char err[512] = "";
	json_object *res;

	if (op_json_obj(m->body, "resume") != NULL) {
		chaos_resume(w, op_json_obj(m->body, "resume"));
		return;
	}
	res = chaos_do_inject(w, op_json_str(m->body, "fault", ""), op_json_obj(m->body, "params"),
	    err, sizeof(err));
	chaos_reply(w, m->id, res != NULL, res ? NULL : err, res);
}

/* The schedule injects its faults in turn, one at a time, never closer than
 * the configured gap and never while another fault is still active. */
static void
chaos_on_schedule(evutil_socket_t fd, short ev, void *arg)
{
	struct worker *w = arg;
	struct chaos *c = w->priv;
	char err[512];

	(void)fd;
	(void)ev;
	if (c->faults == NULL && w->chaos_enabled && !w->kill_switch && c->nschedule > 0) {
		struct chaos_entry *e = &c->schedule[c->next++ % c->nschedule];
		json_object *res = chaos_do_inject(w, e->fault, e->params, err, sizeof(err));
		if (res == NULL)
			log_warn("scheduled %s not injected: %s", e->fault, err);
		json_object_put(res);
	}
	struct timeval tv = {c->gap_ms / 1000, (c->gap_ms % 1000) * 1000};
	evtimer_add(c->sched_timer, &tv);
}

/* Parses "fault key=v key=v, fault ..." into entries; -1 with err on nonsense. */
static int
chaos_parse_schedule(const char *spec, struct chaos_entry *out, size_t max, size_t *n, char *err,
    size_t errlen)
{
	char buf[2048], *save = NULL;

	*n = 0;
	op_strlcpy(buf, spec, sizeof(buf));
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *s2 = NULL, *tok = strtok_r(item, " \t", &s2);
		if (tok == NULL)
			continue;
		if (*n == max) {
			snprintf(err, errlen, "[chaos] schedule: more than %zu faults", max);
			return -1;
		}
		struct chaos_entry *e = &out[(*n)++];
		op_strlcpy(e->fault, tok, sizeof(e->fault));
		e->params = json_object_new_object();
		while ((tok = strtok_r(NULL, " \t", &s2)) != NULL) {
			char *eq = strchr(tok, '=');
			if (eq == NULL || eq == tok) {
				snprintf(err, errlen, "[chaos] schedule: \"%s\" is not key=value", tok);
				return -1;
			}
			*eq = '\0';
			json_object_object_add(e->params, tok, json_object_new_string(eq + 1));
		}
	}
	return 0;
}

int
chaos_check_config(const struct op_config *cfg, struct op_subjects *subjects, char *err,
    size_t errlen)
{
	struct chaos_entry tmp[CHAOS_MAX_SCHEDULE];
	size_t n = 0;
	int64_t gap;
	const char *spec = op_config_get(cfg, "chaos", "schedule");
	int rc = 0;

	if (op_config_duration(cfg, "chaos", "interval", CHAOS_DEF_GAP_MS, &gap, err, errlen) != 0)
		return -1;
	if (gap < CHAOS_MIN_GAP_MS) {
		snprintf(err, errlen, "[chaos] interval must be at least %d s", CHAOS_MIN_GAP_MS / 1000);
		return -1;
	}
	if (spec != NULL)
		rc = chaos_parse_schedule(spec, tmp, CHAOS_MAX_SCHEDULE, &n, err, errlen);
	for (size_t i = 0; i < n; i++) {
		const struct op_fault_def *def = NULL;
		for (size_t k = 0; subjects != NULL && k < subjects->n && def == NULL; k++)
			def = op_subject_fault(&subjects->v[k], tmp[i].fault);
		if (rc == 0 && subjects != NULL && def == NULL) {
			snprintf(err, errlen, "[chaos] schedule: no fault \"%s\" in any configured subject",
			    tmp[i].fault);
			rc = -1;
		}
		json_object_put(tmp[i].params);
	}
	return rc;
}

static void
chaos_on_msg(struct worker *w, struct op_msg *m)
{
	struct chaos *c = w->priv;

	if (m->type == OP_MSG_INJECT)
		chaos_inject(w, m);
	else if (m->type == OP_MSG_UNDO_ALL || (m->type == OP_MSG_SETTINGS && w->kill_switch))
		while (c->faults)
			chaos_undo(w, c->faults, m->type == OP_MSG_UNDO_ALL ? "undo all" : "kill switch");
}

static void
chaos_on_term(struct worker *w)
{
	struct chaos *c = w->priv;

	/* Faults never outlive the daemon. */
	while (c->faults)
		chaos_undo(w, c->faults, "shutdown");
}

static int
chaos_init(struct worker *w, char *err, size_t errlen)
{
	struct chaos *c = calloc(1, sizeof(*c));
	const char *spec = op_config_get(w->cfg, "chaos", "schedule");

	if (c == NULL)
		return -1;
	w->priv = c;
	if (chaos_check_config(w->cfg, &w->subjects, err, errlen) != 0)
		return -1;
	op_config_duration(w->cfg, "chaos", "interval", CHAOS_DEF_GAP_MS, &c->gap_ms, err, errlen);
	if (spec != NULL && chaos_parse_schedule(spec, c->schedule, CHAOS_MAX_SCHEDULE,
	    &c->nschedule, err, errlen) != 0)
		return -1;
	if (c->nschedule > 0) {
		c->sched_timer = evtimer_new(w->base, chaos_on_schedule, w);
		struct timeval tv = {c->gap_ms / 1000, (c->gap_ms % 1000) * 1000};
		evtimer_add(c->sched_timer, &tv);
	}
	return 0;
}

static void
chaos_fini(struct worker *w)
{
	struct chaos *c = w->priv;

	if (c == NULL)
		return;
	if (c->sched_timer)
		event_free(c->sched_timer);
	for (size_t i = 0; i < c->nschedule; i++)
		json_object_put(c->schedule[i].params);
	while (c->faults) {
		struct fault *n = c->faults->next;
		chaos_free(c->faults);
		c->faults = n;
	}
	free(c);
}

const struct worker_role chaos_role = {
	.name = "chaos", .init = chaos_init, .on_msg = chaos_on_msg, .on_term = chaos_on_term,
	.fini = chaos_fini,
};
