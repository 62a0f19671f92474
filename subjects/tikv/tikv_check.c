/* tikv_check: readings of one TiKV observation, one per invariant and
 * entity. Nothing is judged on data PD did not give: while PD is unreachable
 * every reading but pd_unreachable is BAND. */
#include "subjects/tikv/tikv_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"

static void
tikv_check_pd(json_object *obs, struct op_readings *out)
{
	json_object *pd = op_json_obj(obs, "pd"), *ev = json_object_new_object();
	int ok = op_json_bool(pd, "ok", 0);
	int64_t lat = op_json_int(pd, "latency_ms", -1);

	op_json_set_str(ev, "pd", op_json_str(pd, "url", "?"));
	json_object_object_add(ev, "ok", json_object_new_boolean(ok));
	op_json_set_int(ev, "latency_ms", lat);
	if (ok) {
		op_readings_add(out, TIKV_INV_PD, TIKV_ENTITY_PD, OP_RD_HEALTHY, (double)lat, 0, ev,
		    "PD answers /stores and /regions in %lld ms", (long long)lat);
		return;
	}
	op_json_set_str(ev, "error", op_json_str(pd, "error", "unknown"));
	op_readings_add(out, TIKV_INV_PD, TIKV_ENTITY_PD, OP_RD_VIOLATED, (double)lat, 0, ev,
	    "PD %s unreachable: %s", op_json_str(pd, "url", "?"), op_json_str(pd, "error", "?"));
}

static json_object *
tikv_store_evidence(json_object *st)
{
	json_object *ev = json_object_new_object(), *v;
	static const char *const f[] = {"id", "address", "status_address", "state_name",
	    "probe_ok", "probe_error", "probe_ms", "heartbeat_age_ms", "leaders", "regions",
	    "pd_leader_count", "evicted", "stale"};

	for (size_t i = 0; i < OP_ARRAY_LEN(f); i++)
		if (json_object_object_get_ex(st, f[i], &v))
			json_object_object_add(ev, f[i], json_object_get(v));
	return ev;
}

static void
tikv_check_store(json_object *st, int pd_ok, struct op_readings *out)
{
	char id[32];
	const char *state = op_json_str(st, "state_name", "?");
	int probe_ok = op_json_bool(st, "probe_ok", 0);
	int pd_bad = strcmp(state, "Disconnected") == 0 || strcmp(state, "Down") == 0 ||
	    strcmp(state, "Offline") == 0;
	json_object *ev = tikv_store_evidence(st);

	snprintf(id, sizeof(id), "%" PRIu64, op_json_u64(st, "id", 0));
	if (!pd_ok) {
		op_readings_add(out, TIKV_INV_STORE_DOWN, id, OP_RD_BAND, 0, 1, ev,
		    "store %s: cannot judge while PD is unreachable", id);
		return;
	}
	if (!probe_ok || pd_bad) {
		char why[300];
		if (!probe_ok)
			snprintf(why, sizeof(why), "status probe of %s failed (%s); PD says %s",
			    op_json_str(st, "status_address", "?"), op_json_str(st, "probe_error", "?"),
			    state);
		else
			snprintf(why, sizeof(why), "PD says %s (its status probe answers)", state);
		op_readings_add(out, TIKV_INV_STORE_DOWN, id, OP_RD_VIOLATED, 0, 1, ev,
		    "store %s (%s) down: %s", id, op_json_str(st, "address", "?"), why);
		return;
	}
	op_readings_add(out, TIKV_INV_STORE_DOWN, id, OP_RD_HEALTHY, 1, 1, ev,
	    "store %s (%s) is %s and answers its status probe", id, op_json_str(st, "address", "?"),
	    state);
}

/* Per-store leaders and serving flags, for evidence. */
static json_object *
tikv_leader_map(json_object *obs)
{
	json_object *m = json_object_new_object(), *a = op_json_arr(obs, "stores");

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		char id[32];
		snprintf(id, sizeof(id), "%" PRIu64, op_json_u64(st, "id", 0));
		op_json_set_int(m, id, op_json_int(st, "leaders", 0));
	}
	return m;
}

json_object *
tikv_balance_evidence(const struct tikv_priv *p, json_object *obs, const struct tikv_balance *b)
{
	json_object *ev = json_object_new_object(), *serving = json_object_new_array();
	json_object *a = op_json_arr(obs, "stores");

	json_object_object_add(ev, "leaders_per_store", tikv_leader_map(obs));
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (op_json_bool(st, "serving", 0))
			json_object_array_add(serving, json_object_new_uint64(op_json_u64(st, "id", 0)));
	}
	json_object_object_add(ev, "serving_stores", serving);
	op_json_set_int(ev, "min", b->min);
	op_json_set_int(ev, "max", b->max);
	json_object_object_add(ev, "min_store", json_object_new_uint64(b->min_store));
	json_object_object_add(ev, "max_store", json_object_new_uint64(b->max_store));
	json_object_object_add(ev, "mean", json_object_new_double(b->mean));
	op_json_set_int(ev, "spread", b->spread);
	json_object_object_add(ev, "allowed_spread", json_object_new_double(b->allowed));
	json_object_object_add(ev, "tolerance", json_object_new_double(p->tolerance));
	op_json_set_int(ev, "tolerance_min", p->tolerance_min);
	return ev;
}

int64_t
tikv_elections_pending(json_object *obs)
{
	json_object *r = op_json_obj(obs, "regions");

	return op_json_int(r, "leaderless", 0) + op_json_int(r, "leader_on_dead_store", 0);
}

static void
tikv_check_balance(const struct tikv_priv *p, json_object *obs, int pd_ok,
    struct op_readings *out)
{
	struct tikv_balance b;
	int64_t pending = tikv_elections_pending(obs);

	tikv_balance_of(p, obs, &b);
	json_object *ev = tikv_balance_evidence(p, obs, &b);
	if (!pd_ok) {
		op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER, OP_RD_BAND, 0, 0, ev,
		    "leader balance: cannot judge while PD is unreachable");
		return;
	}
	if (pending > 0) {
		/* counts move on their own until raft has elected every leader */
		op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER, OP_RD_BAND,
		    (double)b.spread, b.allowed, ev,
		    "leader balance: cannot judge while %lld region(s) await a leader",
		    (long long)pending);
		return;
	}
	if (b.nserving < 2) {
		op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER, OP_RD_HEALTHY, 0,
		    b.allowed, ev, "leader balance: %zu store(s) serve leaders, nothing to balance",
		    b.nserving);
		return;
	}
	int bad = (double)b.spread > b.allowed;
	op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER,
	    bad ? OP_RD_VIOLATED : OP_RD_HEALTHY, (double)b.spread, b.allowed, ev,
	    "leaders per serving store range %lld (store %" PRIu64 ") to %lld (store %" PRIu64
	    "), spread %lld %s allowed %.1f (mean %.1f over %zu stores)",
	    (long long)b.min, b.min_store, (long long)b.max, b.max_store, (long long)b.spread,
	    bad ? ">" : "<=", b.allowed, b.mean, b.nserving);
}

static json_object *
tikv_regions_evidence(json_object *obs)
{
	json_object *r = op_json_obj(obs, "regions");

	return r ? json_object_get(r) : json_object_new_object();
}

static void
tikv_check_regions(json_object *obs, int pd_ok, struct op_readings *out)
{
	json_object *r = op_json_obj(obs, "regions");
	int64_t ll = op_json_int(r, "leaderless", 0), dead = op_json_int(r, "leader_on_dead_store", 0);
	int64_t ur = op_json_int(r, "under_replicated", 0);
	int64_t pend = op_json_int(r, "pending_regions", 0), down = op_json_int(r, "down_regions", 0);

	if (!pd_ok || r == NULL) {
		op_readings_add(out, TIKV_INV_LEADERLESS, TIKV_ENTITY_CLUSTER, OP_RD_BAND, 0, 0,
		    tikv_regions_evidence(obs), "regions: cannot judge while PD is unreachable");
		op_readings_add(out, TIKV_INV_UNDER_REPL, TIKV_ENTITY_CLUSTER, OP_RD_BAND, 0, 0,
		    tikv_regions_evidence(obs), "regions: cannot judge while PD is unreachable");
		return;
	}
	op_readings_add(out, TIKV_INV_LEADERLESS, TIKV_ENTITY_CLUSTER,
	    ll + dead > 0 ? OP_RD_VIOLATED : OP_RD_HEALTHY, (double)(ll + dead), 0,
	    tikv_regions_evidence(obs),
	    "%lld of %lld regions without a live leader (%lld leaderless, %lld led from a down "
	    "store)", (long long)(ll + dead), (long long)op_json_int(r, "count", 0), (long long)ll,
	    (long long)dead);
	op_readings_add(out, TIKV_INV_UNDER_REPL, TIKV_ENTITY_CLUSTER,
	    ur > 0 ? OP_RD_VIOLATED : OP_RD_HEALTHY, (double)ur, 0, tikv_regions_evidence(obs),
	    "%lld of %lld regions under-replicated (%lld with pending peers, %lld with down peers)",
	    (long long)ur, (long long)op_json_int(r, "count", 0), (long long)pend, (long long)down);
}

static void
tikv_check_prom(const struct tikv_priv *p, json_object *st, int pd_ok, struct op_readings *out)
{
	char id[32];
	json_object *v;

	snprintf(id, sizeof(id), "%" PRIu64, op_json_u64(st, "id", 0));
	if (pd_ok && json_object_object_get_ex(st, "disk_available_ratio", &v)) {
		double d = json_object_get_double(v);
		op_readings_add(out, TIKV_INV_DISK, id, d < p->disk_min ? OP_RD_VIOLATED : OP_RD_HEALTHY,
		    d, p->disk_min, tikv_store_evidence(st),
		    "store %s: %.1f%% of its disk available (minimum %.1f%%)", id, d * 100,
		    p->disk_min * 100);
	} else {
		op_readings_add(out, TIKV_INV_DISK, id, OP_RD_BAND, 0, p->disk_min,
		    tikv_store_evidence(st), "store %s: no disk figures", id);
	}
	if (pd_ok && json_object_object_get_ex(st, "grpc_p99_ms", &v)) {
		double d = json_object_get_double(v);
		op_readings_add(out, TIKV_INV_LATENCY, id,
		    d > (double)p->latency_p99_ms ? OP_RD_VIOLATED : OP_RD_HEALTHY, d,
		    (double)p->latency_p99_ms, tikv_store_evidence(st),
		    "store %s: gRPC p99 %.1f ms (threshold %lld ms)", id, d,
		    (long long)p->latency_p99_ms);
	} else {
		op_readings_add(out, TIKV_INV_LATENCY, id, OP_RD_BAND, 0, (double)p->latency_p99_ms,
		    tikv_store_evidence(st), "store %s: no latency figures", id);
	}
}

void
tikv_check(struct op_subject *s, json_object *obs, struct op_readings *out)
{
	const struct tikv_priv *p = s->priv;
	int pd_ok = tikv_obs_pd_ok(obs);
	json_object *stores = op_json_arr(obs, "stores");

	tikv_check_pd(obs, out);
	for (size_t i = 0; stores && i < json_object_array_length(stores); i++) {
		json_object *st = json_object_array_get_idx(stores, i);
		tikv_check_store(st, pd_ok, out);
		if (p->prom_url[0])
			tikv_check_prom(p, st, pd_ok, out);
	}
	tikv_check_balance(p, obs, pd_ok, out);
	tikv_check_regions(obs, pd_ok, out);
}
