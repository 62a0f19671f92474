/* ha_share: what [ha] instances share through etcd besides the election:
 * the mode and the kill switch, approvals given on a standby, and the
 * leader's small record of each live ticket (fenced by its term), which a
 * new leader resumes from (ha_resume.c). Nothing here blocks. */
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

void
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

void
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

void
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

void
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

void
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

