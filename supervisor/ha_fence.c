/* ha_fence: the fencing check at the point of action, in the executor.
 *
 * A lease lock alone cannot give mutual exclusion: a leader that stalls
 * (GC, SIGSTOP, a slow disk) past its lease still believes it leads when
 * it wakes. So the executor asks etcd itself, in one transaction, right
 * before the side effect: is the subject's leader key still at the term
 * this action was dispatched under, and is the kill switch still off? The
 * same transaction writes the execution marker, so whoever leads next knows
 * this action may have run (and verifies instead of running it again).
 *
 * What remains is the window between this transaction and the side effect
 * itself (microseconds to the action's own duration): a leader that stalls
 * exactly there acts once, late. It never acts twice, and no other instance
 * re-runs the action. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/ha.h"

static const struct op_config *fence_cfg; /* the config fence_ha was loaded from */
static struct ha_config fence_ha;
static struct etcd_client fence_client;
static int fence_loaded;

static int
fence_load(const struct op_config *cfg, char *why, size_t whylen)
{
	char err[256];

	if (fence_loaded && fence_cfg == cfg)
		return 0;
	fence_loaded = 0;
	if (ha_config_load(cfg, &fence_ha, err, sizeof(err)) != 0 ||
	    (fence_ha.enabled &&
	    etcd_client_init(&fence_client, fence_ha.etcd, err, sizeof(err)) != 0)) {
		snprintf(why, whylen, "%s", err);
		return -1;
	}
	fence_cfg = cfg;
	fence_loaded = 1;
	return 0;
}

int
ha_fence_exec(const struct op_config *cfg, json_object *job, char *kind, size_t kindlen,
    char *why, size_t whylen)
{
	int64_t term = op_json_int(job, "ha_term", 0);
	const char *subject = op_json_str(job, "subject", "");
	char lkey[ETCD_KEY_MAX], kkey[ETCD_KEY_MAX], mkey[ETCD_KEY_MAX], fp[512], err[160];

	op_strlcpy(kind, "not_leader", kindlen);
	if (term <= 0)
		return 0; /* dispatched without [ha]: nothing to fence */
	if (fence_load(cfg, why, whylen) != 0)
		return -1;
	if (!fence_ha.enabled) {
		snprintf(why, whylen, "the job carries a term but [ha] is not configured here");
		return -1;
	}
	op_fingerprint(fp, sizeof(fp), subject, op_json_str(job, "invariant", ""),
	    op_json_str(job, "entity", ""));
	if (etcd_leader_key(fence_ha.cluster, subject, lkey, sizeof(lkey)) != 0 ||
	    ha_key(kkey, sizeof(kkey), fence_ha.cluster, HA_KEY_KILL_SWITCH) != 0 ||
	    ha_ticket_key(mkey, sizeof(mkey), fence_ha.cluster, "exec", subject, fp) != 0) {
		snprintf(why, whylen, "subject \"%s\" has no usable leader key", subject);
		return -1;
	}
	json_object *m = json_object_new_object();
	json_object_object_add(m, "fingerprint", json_object_new_string(fp));
	json_object_object_add(m, "subject", json_object_new_string(subject));
	json_object_object_add(m, "invariant", json_object_new_string(op_json_str(job, "invariant", "")));
	json_object_object_add(m, "entity", json_object_new_string(op_json_str(job, "entity", "")));
	json_object_object_add(m, "ticket_id", json_object_new_int64(op_json_int(job, "ticket_id", 0)));
	json_object_object_add(m, "action_id", json_object_new_int64(op_json_int(job, "action_id", 0)));
	json_object_object_add(m, "action", json_object_new_string(op_json_str(job, "action", "")));
	json_object_object_add(m, "params", json_object_get(op_json_obj(job, "params")));
	json_object_object_add(m, "term", json_object_new_int64(term));
	json_object_object_add(m, "leader", json_object_new_string(fence_ha.name));
	json_object_object_add(m, "at", json_object_new_int64(op_wall_ms()));
	char *mval = op_json_dup_string(m);
	json_object_put(m);

	struct etcd_cmp cmp[2] = {
		{ .key = lkey, .target = ETCD_T_CREATE, .result = ETCD_R_EQUAL, .num = term },
		{ .key = kkey, .target = ETCD_T_VERSION, .result = ETCD_R_EQUAL, .num = 0 },
	};
	struct etcd_op put = { .kind = ETCD_OP_PUT, .key = mkey, .value = mval };
	struct etcd_op get[2] = { { .kind = ETCD_OP_RANGE, .key = lkey },
		{ .kind = ETCD_OP_RANGE, .key = kkey } };
	char *body = etcd_build_txn(cmp, 2, &put, 1, get, 2, err, sizeof(err));
	free(mval);
	if (body == NULL) {
		snprintf(why, whylen, "cannot build the fencing check: %s", err);
		return -1;
	}
	struct etcd_resp r;
	int rc = etcd_call(&fence_client, ETCD_TXN, body, &r);
	free(body);
	if (rc != 0) {
		snprintf(why, whylen, "cannot confirm leadership of %s: etcd %s error: %s", subject,
		    etcd_errkind_name(r.kind), r.error);
		etcd_resp_free(&r);
		return -1;
	}
	if (r.succeeded) {
		etcd_resp_free(&r);
		return 0;
	}
	const struct etcd_kv *leader = NULL, *ks = NULL;
	for (size_t i = 0; i < r.nkvs; i++) {
		if (strcmp(r.kvs[i].key, lkey) == 0)
			leader = &r.kvs[i];
		else if (strcmp(r.kvs[i].key, kkey) == 0)
			ks = &r.kvs[i];
	}
	if (leader != NULL && leader->create_rev == term && ks != NULL) {
		op_strlcpy(kind, "kill switch", kindlen);
		snprintf(why, whylen, "the kill switch is on for the whole cluster (etcd: %s)",
		    ks->value);
	} else if (leader == NULL) {
		snprintf(why, whylen, "not the leader of %s: no leader holds it now (term %lld ended)",
		    subject, (long long)term);
	} else {
		snprintf(why, whylen, "not the leader of %s: %s leads it under term %lld (ours was %lld)",
		    subject, leader->value, (long long)leader->create_rev, (long long)term);
	}
	etcd_resp_free(&r);
	return -1;
}
