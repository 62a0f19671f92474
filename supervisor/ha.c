/* ha: [ha] inside the supervisor.
 *
 * What the rest of the supervisor sees (each a call from one place):
 *   - gates: ha_leads() (act, dispatch), ha_may_open() (open a ticket);
 *   - the term: ha_job() puts it on every job for the executor's fence,
 *     ha_annotate() on every action event;
 *   - shared settings: ha_settings_changed() after a local mode or kill
 *     switch change writes it to etcd; every instance polls etcd and applies
 *     what another instance wrote;
 *   - approvals given on a standby: ha_forward_decision();
 *   - work in flight: ha_ticket_changed() after a ticket or action moves; the
 *     leader keeps one small record per live ticket in etcd, fenced by its
 *     term, and deletes it when the ticket closes; a new leader reads the
 *     records and the executors' markers and resumes (ha_resume.c);
 *   - status, metrics.
 * Nothing here blocks: every etcd call is asynchronous on od->base. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ahttp.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/ha.h"
#include "supervisor/ha_int.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"


struct ha_state ha;

/* ------------------------------------------------------------- config */

int
ha_configure(const struct op_config *cfg, char *err, size_t errlen)
{
	struct ha_config c;

	if (ha_config_load(cfg, &c, err, errlen) != 0)
		return -1;
	if (ha.node == NULL)
		ha.cfg = c;
	else if (c.enabled != ha.cfg.enabled || strcmp(c.etcd, ha.cfg.etcd) ||
	    strcmp(c.name, ha.cfg.name) || strcmp(c.cluster, ha.cfg.cluster) ||
	    c.lease_ttl_ms != ha.cfg.lease_ttl_ms)
		log_warn("[ha] changed: it takes effect at the next start, not on reload");
	return 0;
}

int
ha_enabled(void)
{
	return ha.cfg.enabled;
}

const char *
ha_name(void)
{
	return ha.cfg.enabled ? ha.cfg.name : NULL;
}

/* -------------------------------------------------------------- gates */

int
ha_leads(const char *subject, int64_t *term)
{
	if (term != NULL)
		*term = 0;
	if (!ha.cfg.enabled)
		return 1;
	if (ha.stopping || ha.node == NULL)
		return 0;
	int64_t t;
	int i = ha_elect_find(ha_node_elect(ha.node), subject);
	if (i < 0 || !ha_node_is_leader(ha.node, subject, &t) || ha.resumed_term[i] != t)
		return 0;
	if (term != NULL)
		*term = t;
	return 1;
}

int
ha_leads_any(void)
{
	if (!ha.cfg.enabled)
		return 1;
	const struct ha_elect *e = ha_node_elect(ha.node);
	for (size_t i = 0; i < e->ns; i++)
		if (ha_leads(e->s[i].name, NULL))
			return 1;
	return 0;
}

json_object *
ha_fp_obj(const char *subject, const char *invariant, const char *entity)
{
	json_object *f = json_object_new_object();

	json_object_object_add(f, "subject", json_object_new_string(subject));
	json_object_object_add(f, "invariant", json_object_new_string(invariant));
	json_object_object_add(f, "entity", json_object_new_string(entity));
	return f;
}

int
ha_may_open(const char *subject, const char *invariant, const char *entity)
{
	if (ha_leads(subject, NULL))
		return 1;
	/* A standby keeps observing but opens nothing. It remembers what fired
	 * so that, should it lead, the observer reports it again. */
	if (ha.suppressed == NULL)
		ha.suppressed = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(ha.suppressed); i++) {
		json_object *f = json_object_array_get_idx(ha.suppressed, i);
		if (!strcmp(op_json_str(f, "subject", ""), subject) &&
		    !strcmp(op_json_str(f, "invariant", ""), invariant) &&
		    !strcmp(op_json_str(f, "entity", ""), entity))
			return 0;
	}
	json_object_array_add(ha.suppressed, ha_fp_obj(subject, invariant, entity));
	return 0;
}

/* As the new leader of subject: the observer forgets what it reported while
 * we were standby, so each violation still present is reported again (after
 * its hold-for) and opens its ticket here. */
static void
ha_replay_suppressed(const char *subject)
{
	json_object *keep = json_object_new_array();

	for (size_t i = 0; ha.suppressed && i < json_object_array_length(ha.suppressed); i++) {
		json_object *f = json_object_array_get_idx(ha.suppressed, i);
		if (strcmp(op_json_str(f, "subject", ""), subject) != 0) {
			json_object_array_add(keep, json_object_get(f));
			continue;
		}
		outbox_send(OD_OBSERVER, OP_MSG_CLOSED, od_new_id(), json_object_get(f));
	}
	json_object_put(ha.suppressed);
	ha.suppressed = keep;
}

int
ha_job(json_object *job, const char *subject, int64_t action_id)
{
	int64_t term;

	if (!ha.cfg.enabled)
		return 0;
	if (!ha_leads(subject, &term))
		return -1;
	json_object_object_add(job, "ha_term", json_object_new_int64(term));
	ledger_exec(od->ledger, "UPDATE actions SET term=?1 WHERE id=?2", "ii", term, action_id);
	return 0;
}

void
ha_annotate(json_object *data, const char *subject)
{
	int64_t term;

	if (!ha.cfg.enabled || data == NULL || subject == NULL)
		return;
	if (ha_leads(subject, &term)) {
		json_object_object_add(data, "term", json_object_new_int64(term));
		json_object_object_add(data, "leader", json_object_new_string(ha.cfg.name));
	}
}

/* ------------------------------------------------------ etcd plumbing */

typedef void (*ha_cb)(int rc, struct etcd_resp *r, void *arg);

int
ha_send(enum etcd_call call, char *body, ha_cb cb, void *arg)
{
	char err[160];

	if (body == NULL)
		return -1;
	struct etcd_areq *q = etcd_async_call(ha_node_http(ha.node), ha_node_client(ha.node), call,
	    body, cb, arg, err, sizeof(err));
	free(body);
	if (q == NULL) {
		log_warn("etcd: %s", err);
		return -1;
	}
	return 0;
}

/* -------------------------------------------------------------- poll */

static void ha_poll_arm(void);
static void ha_resume_start(size_t i);

static void
ha_poll_done(int rc, struct etcd_resp *r, void *arg)
{
	char prefix[ETCD_KEY_MAX], ks_key[ETCD_KEY_MAX], mode_key[ETCD_KEY_MAX], mine[ETCD_KEY_MAX];

	(void)arg;
	ha.poll_inflight = 0;
	if (ha.stopping)
		return;
	ha_poll_arm();
	if (rc != 0)
		return;
	ha_key(prefix, sizeof(prefix), ha.cfg.cluster, "");
	ha_key(ks_key, sizeof(ks_key), ha.cfg.cluster, HA_KEY_KILL_SWITCH);
	ha_key(mode_key, sizeof(mode_key), ha.cfg.cluster, HA_KEY_MODE);
	snprintf(mine, sizeof(mine), "%sdecide/%s/", prefix, ha.cfg.name);
	size_t plen = strlen(prefix), mlen = strlen(mine);
	int ks = 0;
	const char *mode = NULL;
	json_object *work = json_object_new_object(), *exec = json_object_new_object();

	for (size_t i = 0; i < r->nkvs; i++) {
		const struct etcd_kv *kv = &r->kvs[i];
		if (!strcmp(kv->key, ks_key)) {
			ks = 1;
		} else if (!strcmp(kv->key, mode_key)) {
			mode = kv->value;
		} else if (!strncmp(kv->key, mine, mlen)) {
			ha_apply_decision(kv->key, kv->value);
		} else if (!strncmp(kv->key + plen, "work/", 5) || !strncmp(kv->key + plen, "exec/", 5)) {
			char perr[64];
			json_object *v = op_json_parse(kv->value, kv->value_len, perr, sizeof(perr));
			if (v != NULL)
				json_object_object_add(kv->key[plen] == 'w' ? work : exec, kv->key, v);
		}
	}
	json_object_put(ha.work);
	json_object_put(ha.exec);
	ha.work = work;
	ha.exec = exec;
	/* a resume that could not even be sent is tried again from here */
	const struct ha_elect *e = ha_node_elect(ha.node);
	for (size_t i = 0; i < e->ns; i++) {
		int64_t term;
		if (ha_node_is_leader(ha.node, e->s[i].name, &term) && ha.resumed_term[i] != term)
			ha_resume_start(i);
	}
	/* Settings: only an answer newer than our own last write, and none
	 * while a write is out, can tell us what another instance set. */
	if (ha.settings_dirty && ha.settings_writing == 0) {
		ha.settings_dirty = 0;
		ha.ks_etcd = ks;
		if (mode != NULL)
			op_strlcpy(ha.mode_etcd, mode, sizeof(ha.mode_etcd));
		ha_write_settings();
	} else if (ha.settings_writing == 0 && r->revision >= ha.settings_rev) {
		ha.ks_etcd = ks;
		if (mode != NULL)
			op_strlcpy(ha.mode_etcd, mode, sizeof(ha.mode_etcd));
		if (mode == NULL && !ha.mode_creating) {
			/* First instance of the cluster: our mode becomes everyone's. */
			char err[64];
			ha.mode_creating = 1;
			ha_send(ETCD_TXN, etcd_build_txn(&(struct etcd_cmp){ .key = mode_key,
			    .target = ETCD_T_CREATE, .result = ETCD_R_EQUAL, .num = 0 }, 1,
			    &(struct etcd_op){ .kind = ETCD_OP_PUT, .key = mode_key, .value = od->mode },
			    1, NULL, 0, err, sizeof(err)), ha_mode_created, NULL);
			op_strlcpy(ha.mode_etcd, od->mode, sizeof(ha.mode_etcd));
		}
		ha.polled = 1;
		ha_apply_settings(ks, mode);
	}
}

static void
ha_poll(evutil_socket_t fd, short what, void *arg)
{
	char prefix[ETCD_KEY_MAX], err[64];

	(void)fd;
	(void)what;
	(void)arg;
	if (ha.poll_inflight || ha.stopping)
		return;
	ha_key(prefix, sizeof(prefix), ha.cfg.cluster, "");
	if (ha_send(ETCD_RANGE, etcd_build_range(prefix, 1, err, sizeof(err)), ha_poll_done, NULL)
	    == 0)
		ha.poll_inflight = 1;
	else
		ha_poll_arm();
}

static void
ha_poll_arm(void)
{
	int64_t ms = ha_elect_poll_ms(ha_node_elect(ha.node));
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ha.poll_timer, &tv);
}

/* --------------------------------------------------------- resuming */

struct ha_resume_req {
	size_t i;
	int64_t term;
};

static void
ha_resume_done(int rc, struct etcd_resp *r, void *arg)
{
	struct ha_resume_req *q = arg;
	size_t i = q->i;
	int64_t term = q->term, now_term;
	const struct ha_elect *e = ha_node_elect(ha.node);
	const char *subject = e->s[i].name;

	free(q);
	ha.resume_inflight[i] = 0;
	if (ha.stopping || !ha_node_is_leader(ha.node, subject, &now_term) || now_term != term)
		return; /* lost it meanwhile */
	if (rc != 0) {
		log_warn("%s: reading the work in flight failed (%s); trying again", subject,
		    r->error);
		ha_resume_start(i);
		return;
	}
	char wpre[ETCD_KEY_MAX], xpre[ETCD_KEY_MAX];
	snprintf(wpre, sizeof(wpre), "/operatord/%s/work/%s/", ha.cfg.cluster, subject);
	snprintf(xpre, sizeof(xpre), "/operatord/%s/exec/%s/", ha.cfg.cluster, subject);
	json_object *work = json_object_new_object(), *exec = json_object_new_object();
	for (size_t k = 0; k < r->nkvs; k++) {
		const struct etcd_kv *kv = &r->kvs[k];
		char perr[64];
		int w = !strncmp(kv->key, wpre, strlen(wpre));
		if (!w && strncmp(kv->key, xpre, strlen(xpre)) != 0)
			continue;
		json_object *v = op_json_parse(kv->value, kv->value_len, perr, sizeof(perr));
		if (v == NULL) {
			log_warn("etcd: %s is not JSON (%s); ignored", kv->key, perr);
			continue;
		}
		json_object_object_add(w ? work : exec, kv->key, v);
	}
	ha.resumed_term[i] = term;
	outbox_begin();
	ha_resume(subject, work, exec);
	ha_replay_suppressed(subject);
	/* Chaos runs only where something is led; what waits is picked up
	 * (acting_settings_changed re-advances diagnosed tickets). */
	ha.applying = 1;
	acting_settings_changed();
	ha.applying = 0;
	outbox_commit();
	json_object_put(work);
	json_object_put(exec);
}

/* One range over /operatord/C/ covers both prefixes of the subject; it is
 * read after our election, so every marker an old term could still write
 * is in it (a later fence under that term fails). */
static void
ha_resume_start(size_t i)
{
	char prefix[ETCD_KEY_MAX], err[64];
	int64_t term;
	const struct ha_elect *e = ha_node_elect(ha.node);

	if (ha.resume_inflight[i] || !ha_node_is_leader(ha.node, e->s[i].name, &term))
		return;
	struct ha_resume_req *q = malloc(sizeof(*q));
	if (q == NULL)
		return;
	q->i = i;
	q->term = term;
	ha_key(prefix, sizeof(prefix), ha.cfg.cluster, "");
	if (ha_send(ETCD_RANGE, etcd_build_range(prefix, 1, err, sizeof(err)), ha_resume_done, q)
	    != 0) {
		free(q);
		return; /* the next election event or poll tries again */
	}
	ha.resume_inflight[i] = 1;
}

/* --------------------------------------------------- election events */

static void
ha_on_event(const struct ha_out *o, const struct ha_subject *s, void *arg)
{
	(void)arg;
	if (o->kind == HA_EV_LEADER_SEEN) {
		log_info("%s: the leader is %s (term %lld)", s->name, o->leader[0] ? o->leader : "?",
		    (long long)o->term);
		return;
	}
	outbox_begin();
	json_object *d = json_object_new_object();
	json_object_object_add(d, "name", json_object_new_string(ha.cfg.name));
	json_object_object_add(d, "term", json_object_new_int64(o->term));
	if (o->kind == HA_EV_ELECTED) {
		log_info("%s: elected leader, term %lld", s->name, (long long)o->term);
		outbox_event("leader_elected", 0, s->name, NULL, NULL, d);
		int i = ha_elect_find(ha_node_elect(ha.node), s->name);
		if (i >= 0) {
			ha.resumed_term[i] = 0;
			ha_resume_start((size_t)i);
		}
	} else {
		log_warn("%s: leadership lost (term %lld): %s", s->name, (long long)o->term,
		    o->reason);
		json_object_object_add(d, "reason", json_object_new_string(o->reason));
		outbox_event("leadership_lost", 0, s->name, NULL, NULL, d);
	}
	/* Chaos runs only where something is led; a new leader also picks up
	 * what waits (acting_settings_changed re-advances diagnosed tickets). */
	ha.applying = 1;
	acting_settings_changed();
	ha.applying = 0;
	outbox_commit();
}

/* ------------------------------------------------------- life cycle */

int
ha_start(char *err, size_t errlen)
{
	const char *names[HA_MAX_SUBJECTS];
	size_t n = 0;

	if (!ha.cfg.enabled)
		return 0;
	for (size_t i = 0; i < op_config_section_count(od->cfg) && n < HA_MAX_SUBJECTS; i++) {
		const char *sec = op_config_section_name(od->cfg, i);
		if (strncmp(sec, "subject.", 8) == 0)
			names[n++] = sec + 8;
	}
	ha.node = ha_node_new(od->base, &ha.cfg, names, n, ha_on_event, NULL, err, errlen);
	if (ha.node == NULL)
		return -1;
	ha.poll_timer = evtimer_new(od->base, ha_poll, NULL);
	ha.flush_ev = evtimer_new(od->base, ha_flush, NULL);
	if (ha.poll_timer == NULL || ha.flush_ev == NULL) {
		snprintf(err, errlen, "evtimer_new failed");
		return -1;
	}
	struct timeval now = { 0, 0 };
	evtimer_add(ha.poll_timer, &now);
	log_info("[ha] %s in cluster %s: campaigning for %zu subject(s) through %s (lease %llds)",
	    ha.cfg.name, ha.cfg.cluster, n, ha.cfg.etcd, (long long)(ha.cfg.lease_ttl_ms / 1000));
	return 0;
}

void
ha_shutdown(void)
{
	if (!ha.cfg.enabled || ha.node == NULL || ha.stopping)
		return;
	/* Step down first, so no action starts here while the workers stop,
	 * and the standbys take over at once instead of after the TTL. */
	ha.stopping = 1;
	evtimer_del(ha.poll_timer);
	ha_node_resign(ha.node, "shutting down");
}

void
ha_free(void)
{
	if (ha.node == NULL)
		return;
	ha.stopping = 1;
	ha_node_free(ha.node); /* cancels what is in flight: no callback runs after */
	ha.node = NULL;
	while (ha.recs != NULL) {
		struct ha_rec *x = ha.recs;
		ha.recs = x->next;
		free(x->val);
		free(x);
	}
	if (ha.poll_timer)
		event_free(ha.poll_timer);
	if (ha.flush_ev)
		event_free(ha.flush_ev);
	json_object_put(ha.work);
	json_object_put(ha.exec);
	json_object_put(ha.suppressed);
	json_object_put(ha.dirty);
	memset(&ha, 0, sizeof(ha));
}

/* ------------------------------------------------- status and metrics */

json_object *
ha_status(void)
{
	if (!ha.cfg.enabled || ha.node == NULL)
		return NULL;
	const struct ha_elect *e = ha_node_elect(ha.node);
	int64_t now = op_mono_ms();
	json_object *st = json_object_new_object(), *subs = json_object_new_object();

	json_object_object_add(st, "name", json_object_new_string(ha.cfg.name));
	json_object_object_add(st, "cluster", json_object_new_string(ha.cfg.cluster));
	json_object_object_add(st, "lease", json_object_new_string(ha_lease_state_name(e->lease)));
	json_object_object_add(st, "lease_ttl_ms", json_object_new_int64(e->ttl_ms));
	json_object_object_add(st, "etcd_seen_ms_ago",
	    json_object_new_int64(e->etcd_ok_mono ? now - e->etcd_ok_mono : -1));
	if (e->last_error[0])
		json_object_object_add(st, "last_error", json_object_new_string(e->last_error));
	for (size_t i = 0; i < e->ns; i++) {
		const struct ha_subject *s = &e->s[i];
		int64_t term = 0;
		int lead = ha_elect_is_leader(e, i, now, &term) && !ha.stopping;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "role", json_object_new_string(ha_role_name(
		    lead ? HA_LEADER : HA_STANDBY)));
		json_object_object_add(o, "leader", s->leader[0] ? json_object_new_string(s->leader)
		    : NULL);
		json_object_object_add(o, "term", json_object_new_int64(s->term));
		json_object_object_add(subs, s->name, o);
	}
	json_object_object_add(st, "subjects", subs);
	json_object_object_add(st, "records", json_object_new_int64(
	    ha.work ? json_object_object_length(ha.work) : 0));
	return st;
}

void
ha_metrics(struct evbuffer *b)
{
	if (!ha.cfg.enabled || ha.node == NULL)
		return;
	const struct ha_elect *e = ha_node_elect(ha.node);
	int64_t now = op_mono_ms();

	evbuffer_add_printf(b, "# HELP operatord_ha_leader 1 when this instance leads the "
	    "subject, 0 when it is a standby.\n# TYPE operatord_ha_leader gauge\n");
	for (size_t i = 0; i < e->ns; i++)
		evbuffer_add_printf(b, "operatord_ha_leader{subject=\"%s\"} %d\n", e->s[i].name,
		    ha_elect_is_leader(e, i, now, NULL) && !ha.stopping);
	evbuffer_add_printf(b, "# HELP operatord_ha_term The subject's current term (the leader "
	    "key's create_revision), as this instance last saw it.\n"
	    "# TYPE operatord_ha_term gauge\n");
	for (size_t i = 0; i < e->ns; i++)
		evbuffer_add_printf(b, "operatord_ha_term{subject=\"%s\"} %lld\n", e->s[i].name,
		    (long long)e->s[i].term);
}
