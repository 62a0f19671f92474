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
#include "supervisor/od.h"
#include "supervisor/ticket.h"

#define HA_FLUSH_DELAY_MS 0          /* records go out right after the input's commit */

/* One ticket's record being written: at most one write per ticket in
 * flight, the latest state wins (written again when it changed meanwhile). */
struct ha_rec {
	char subject[HA_NAME_MAX];
	char fp[512];
	char *val;                    /* the record; NULL: delete it and its marker */
	int inflight, dirty;
	struct ha_rec *next;
};

static struct {
	struct ha_config cfg;
	struct ha_node *node;
	struct event *poll_timer, *flush_ev;
	int poll_inflight;
	int polled;                   /* at least one poll answered */
	/* settings as etcd has them */
	int ks_etcd;
	char mode_etcd[16];
	int64_t settings_rev;         /* revision of our last settings write */
	int settings_writing;
	int settings_dirty;           /* a local change etcd has not taken yet: ours wins */
	int applying;                 /* applying etcd's settings: do not write back */
	int mode_creating;
	json_object *work;            /* {key: record} of every subject, from the last poll */
	json_object *exec;            /* {key: marker} */
	json_object *suppressed;      /* [{subject, invariant, entity}] seen as standby */
	json_object *dirty;           /* {ticket id: true} to record */
	struct ha_rec *recs;
	int stopping;
	/* per subject (the election's index): the term whose work has been
	 * resumed. A new leader acts only once it has read what its
	 * predecessor left, so it can never run an action a second time. */
	int64_t resumed_term[HA_MAX_SUBJECTS];
	int resume_inflight[HA_MAX_SUBJECTS];
} ha;

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

static json_object *
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

static int
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

/* --------------------------------------------------- shared settings */

static void
ha_settings_done(int rc, struct etcd_resp *r, void *arg)
{
	(void)arg;
	ha.settings_writing--;
	if (rc != 0) {
		/* Written again after the next poll: a kill switch turned on
		 * while etcd was away must not be undone by etcd's old value. */
		log_warn("etcd: writing the shared mode/kill switch failed (%s); will retry",
		    r->error);
		ha.settings_dirty = 1;
		return;
	}
	if (r->revision > ha.settings_rev)
		ha.settings_rev = r->revision;
}

static void
ha_write_settings(void)
{
	char key[ETCD_KEY_MAX], err[160];
	char *body;

	if (od->kill_switch != ha.ks_etcd) {
		ha_key(key, sizeof(key), ha.cfg.cluster, HA_KEY_KILL_SWITCH);
		if (od->kill_switch) {
			char val[160];
			snprintf(val, sizeof(val), "{\"by\":\"%s\",\"at\":%lld}", ha.cfg.name,
			    (long long)op_wall_ms());
			body = etcd_build_put(key, val, 0, 0, err, sizeof(err));
			if (ha_send(ETCD_PUT, body, ha_settings_done, NULL) == 0)
				ha.settings_writing++;
		} else {
			body = etcd_build_delete(key, 0, err, sizeof(err));
			if (ha_send(ETCD_DELETE, body, ha_settings_done, NULL) == 0)
				ha.settings_writing++;
		}
		ha.ks_etcd = od->kill_switch;
	}
	if (strcmp(od->mode, ha.mode_etcd) != 0) {
		ha_key(key, sizeof(key), ha.cfg.cluster, HA_KEY_MODE);
		body = etcd_build_put(key, od->mode, 0, 0, err, sizeof(err));
		if (ha_send(ETCD_PUT, body, ha_settings_done, NULL) == 0)
			ha.settings_writing++;
		op_strlcpy(ha.mode_etcd, od->mode, sizeof(ha.mode_etcd));
	}
}

void
ha_settings_changed(void)
{
	/* Only a change made here goes to etcd; one that came from etcd is
	 * already there. Before the first poll we do not know etcd's values. */
	if (!ha.cfg.enabled || ha.applying || !ha.polled || ha.stopping)
		return;
	ha_write_settings();
}

/* What another instance set: applied here as if typed here, with an event
 * that says where it came from. Inside the caller's input (no commit). */
static void
ha_apply_settings_in(int ks, const char *mode)
{
	int changed = 0;

	if (ks != od->kill_switch) {
		od->kill_switch = ks;
		ledger_set_setting(od->ledger, "kill_switch", ks ? "on" : "off");
		json_object *d = json_object_new_object();
		json_object_object_add(d, "on", json_object_new_boolean(ks));
		json_object_object_add(d, "by", json_object_new_string("etcd"));
		json_object_object_add(d, "source", json_object_new_string("another instance of the cluster"));
		outbox_event("kill_switch", 0, NULL, NULL, NULL, d);
		changed = 1;
	}
	if (mode != NULL && strcmp(mode, od->mode) != 0 &&
	    (!strcmp(mode, "observe") || !strcmp(mode, "approve") || !strcmp(mode, "execute"))) {
		json_object *d = json_object_new_object();
		json_object_object_add(d, "from", json_object_new_string(od->mode));
		json_object_object_add(d, "to", json_object_new_string(mode));
		json_object_object_add(d, "by", json_object_new_string("etcd"));
		op_strlcpy(od->mode, mode, sizeof(od->mode));
		ledger_set_setting(od->ledger, "mode", mode);
		outbox_event("mode_changed", 0, NULL, NULL, NULL, d);
		changed = 1;
	}
	if (changed) {
		ha.applying = 1;
		acting_settings_changed();
		ha.applying = 0;
	}
}

static void
ha_apply_settings(int ks, const char *mode)
{
	if (ks == od->kill_switch && (mode == NULL || !strcmp(mode, od->mode)))
		return; /* nothing to record: no empty input */
	outbox_begin();
	ha_apply_settings_in(ks, mode);
	outbox_commit();
}

int
ha_fenced(const char *kind)
{
	if (!ha.cfg.enabled)
		return 1;
	if (!strcmp(kind, "not_leader"))
		return 0;
	if (!strcmp(kind, "kill switch") && !od->kill_switch) {
		/* The fence read it in etcd before our poll did. */
		ha.ks_etcd = 1;
		ha_apply_settings_in(1, NULL);
	}
	return 1;
}

static void
ha_mode_created(int rc, struct etcd_resp *r, void *arg)
{
	(void)arg;
	ha.mode_creating = 0;
	if (rc == 0 && r->revision > ha.settings_rev)
		ha.settings_rev = r->revision;
}

/* -------------------------------------------------- forwarded decisions */

static json_object *
ha_find_waiting(int64_t action_id)
{
	if (ha.work == NULL)
		return NULL;
	json_object_object_foreach(ha.work, k, rec) {
		(void)k;
		json_object *a = op_json_obj(rec, "action");
		if (a != NULL && op_json_int(a, "id", 0) == action_id &&
		    !strcmp(op_json_str(a, "status", ""), "awaiting_approval") &&
		    strcmp(op_json_str(rec, "leader", ""), ha.cfg.name) != 0)
			return rec;
	}
	return NULL;
}

static void
ha_decide_done(int rc, struct etcd_resp *r, void *arg)
{
	(void)arg;
	if (rc != 0)
		log_warn("etcd: forwarding a decision failed: %s", r->error);
}

int
ha_forward_decision(const char *verb, int64_t action_id, const char *who, const char *reason,
    char *err, size_t errlen)
{
	struct action a;
	struct ticket t;

	if (!ha.cfg.enabled)
		return 0;
	if (action_load(&a, action_id) == 0) {
		int mine = ticket_load(&t, a.ticket_id) == 0 && ha_leads(t.subject, NULL);
		if (a.ticket_id > 0)
			ticket_free(&t);
		action_free(&a);
		if (mine)
			return 0;
	}
	json_object *rec = ha_find_waiting(action_id);
	if (rec == NULL) {
		/* A standby decides nothing itself: its own rows are stale copies. */
		snprintf(err, errlen, "action %lld is not waiting on a subject this instance leads,"
		    " and none of the %d leader records in etcd shows it waiting for approval",
		    (long long)action_id, ha.work ? json_object_object_length(ha.work) : 0);
		log_info("%s; records: %s", err, ha.work ? json_object_to_json_string(ha.work) : "none");
		return -1;
	}
	const char *leader = op_json_str(rec, "leader", "");
	char key[ETCD_KEY_MAX];
	if (ha_decide_key(key, sizeof(key), ha.cfg.cluster, leader, action_id) != 0) {
		snprintf(err, errlen, "cannot name the decision key for %s", leader);
		return -1;
	}
	json_object *v = json_object_new_object();
	json_object_object_add(v, "verb", json_object_new_string(verb));
	json_object_object_add(v, "who", json_object_new_string(who ? who : ""));
	if (reason)
		json_object_object_add(v, "reason", json_object_new_string(reason));
	json_object_object_add(v, "from", json_object_new_string(ha.cfg.name));
	char *val = op_json_dup_string(v);
	json_object_put(v);
	char *body = etcd_build_put(key, val, 0, 0, err, errlen);
	free(val);
	if (ha_send(ETCD_PUT, body, ha_decide_done, NULL) != 0) {
		snprintf(err, errlen, "cannot reach etcd to forward the %s to %s", verb, leader);
		return -1;
	}
	json_object *d = json_object_new_object();
	json_object_object_add(d, "verb", json_object_new_string(verb));
	json_object_object_add(d, "action_id", json_object_new_int64(action_id));
	json_object_object_add(d, "leader", json_object_new_string(leader));
	json_object_object_add(d, "by", json_object_new_string(who ? who : ""));
	outbox_event("decision_forwarded", 0, op_json_str(rec, "subject", NULL),
	    op_json_str(rec, "entity", NULL), op_json_str(rec, "invariant", NULL), d);
	log_info("%s of action %lld forwarded to the leader %s", verb, (long long)action_id, leader);
	return 1;
}

static void
ha_apply_decision(const char *key, const char *val)
{
	const char *slash = strrchr(key, '/');
	int64_t id = 0;
	char err[256] = "";
	json_object *v = op_json_parse(val, strlen(val), err, sizeof(err));

	if (slash == NULL || op_parse_int(slash + 1, 1, INT64_MAX, &id) != 0 || v == NULL) {
		log_warn("etcd: ignoring the malformed decision %s", key);
	} else {
		const char *verb = op_json_str(v, "verb", "");
		char who[160];
		snprintf(who, sizeof(who), "%s (via %s)", op_json_str(v, "who", "?"),
		    op_json_str(v, "from", "?"));
		outbox_begin();
		int rc = !strcmp(verb, "reject")
		    ? operator_reject(id, who, op_json_str(v, "reason", NULL), err, sizeof(err))
		    : operator_approve(id, who, err, sizeof(err));
		outbox_commit();
		if (rc != 0)
			log_warn("forwarded %s of action %lld: %s", verb, (long long)id, err);
	}
	json_object_put(v);
	char e2[64];
	ha_send(ETCD_DELETE, etcd_build_delete(key, 0, e2, sizeof(e2)), ha_decide_done, NULL);
}

/* ------------------------------------------------------------ records */

static void ha_rec_send(struct ha_rec *rc);

static void
ha_rec_done(int rc, struct etcd_resp *r, void *arg)
{
	struct ha_rec *x = arg;

	x->inflight = 0;
	if (rc != 0)
		log_warn("etcd: recording ticket %s failed: %s", x->fp, r->error);
	else if (!r->succeeded)
		log_info("etcd: record of %s not written: no longer the leader of %s", x->fp,
		    x->subject);
	if (x->dirty && !ha.stopping) {
		x->dirty = 0;
		ha_rec_send(x);
		return;
	}
	for (struct ha_rec **pp = &ha.recs; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	free(x->val);
	free(x);
}

/* The write is fenced like an action: only while our term holds. */
static void
ha_rec_send(struct ha_rec *x)
{
	char lkey[ETCD_KEY_MAX], wkey[ETCD_KEY_MAX], mkey[ETCD_KEY_MAX], err[160];
	int64_t term;

	if (!ha_leads(x->subject, &term) ||
	    etcd_leader_key(ha.cfg.cluster, x->subject, lkey, sizeof(lkey)) != 0 ||
	    ha_ticket_key(wkey, sizeof(wkey), ha.cfg.cluster, "work", x->subject, x->fp) != 0 ||
	    ha_ticket_key(mkey, sizeof(mkey), ha.cfg.cluster, "exec", x->subject, x->fp) != 0) {
		x->inflight = 1;
		x->dirty = 0;
		struct etcd_resp r = { .succeeded = 0 };
		ha_rec_done(0, &r, x);
		return;
	}
	struct etcd_cmp c = { .key = lkey, .target = ETCD_T_CREATE, .result = ETCD_R_EQUAL,
		.num = term };
	struct etcd_op ops[2];
	size_t nops;
	memset(ops, 0, sizeof(ops));
	if (x->val != NULL) {
		ops[0] = (struct etcd_op){ .kind = ETCD_OP_PUT, .key = wkey, .value = x->val };
		nops = 1;
	} else {
		ops[0] = (struct etcd_op){ .kind = ETCD_OP_DELETE, .key = wkey };
		ops[1] = (struct etcd_op){ .kind = ETCD_OP_DELETE, .key = mkey };
		nops = 2;
	}
	x->inflight = 1;
	if (ha_send(ETCD_TXN, etcd_build_txn(&c, 1, ops, nops, NULL, 0, err, sizeof(err)),
		ha_rec_done, x) != 0) {
		struct etcd_resp r = { .succeeded = 0 };
		snprintf(r.error, sizeof(r.error), "cannot send");
		ha_rec_done(-1, &r, x);
	}
}

static void
ha_rec_set(const char *subject, const char *fp, char *val)
{
	struct ha_rec *x;

	for (x = ha.recs; x; x = x->next)
		if (!strcmp(x->subject, subject) && !strcmp(x->fp, fp))
			break;
	if (x == NULL) {
		x = calloc(1, sizeof(*x));
		if (x == NULL) {
			free(val);
			return;
		}
		op_strlcpy(x->subject, subject, sizeof(x->subject));
		op_strlcpy(x->fp, fp, sizeof(x->fp));
		x->next = ha.recs;
		ha.recs = x;
	}
	free(x->val);
	x->val = val;
	if (x->inflight)
		x->dirty = 1;
	else
		ha_rec_send(x);
}

void
ha_ticket_changed(int64_t ticket_id)
{
	char k[24];

	if (!ha.cfg.enabled || ticket_id <= 0 || ha.stopping)
		return;
	if (ha.dirty == NULL)
		ha.dirty = json_object_new_object();
	snprintf(k, sizeof(k), "%lld", (long long)ticket_id);
	json_object_object_add(ha.dirty, k, json_object_new_boolean(1));
	/* Written after this input's commit: the record shows committed state. */
	struct timeval tv = { 0, HA_FLUSH_DELAY_MS * 1000 };
	if (ha.flush_ev != NULL && !evtimer_pending(ha.flush_ev, NULL))
		evtimer_add(ha.flush_ev, &tv);
}

static void
ha_flush(evutil_socket_t fd, short what, void *arg)
{
	json_object *dirty = ha.dirty;

	(void)fd;
	(void)what;
	(void)arg;
	ha.dirty = NULL;
	json_object_object_foreach(dirty, k, v) {
		(void)v;
		int64_t id;
		struct ticket t;
		if (op_parse_int(k, 1, INT64_MAX, &id) != 0 || ticket_load(&t, id) != 0)
			continue;
		const char *fp = op_json_str(t.row, "fingerprint", "");
		if (ha_leads(t.subject, NULL))
			ha_rec_set(t.subject, fp, ticket_closed(&t) ? NULL : ha_record_build(&t));
		ticket_free(&t);
	}
	json_object_put(dirty);
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
