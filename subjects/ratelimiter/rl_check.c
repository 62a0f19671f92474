/* rl_check: readings of one rate-limiter observation, one per invariant
 * and entity. A key whose figures some node could not give reads BAND,
 * never healthy. */
#include "subjects/ratelimiter/rl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"

static void
rl_check_node_down(json_object *n, struct op_readings *out)
{
	const char *id = op_json_str(n, "id", "?"), *url = op_json_str(n, "url", "?");
	int up = op_json_bool(n, "reachable", 0);
	json_object *ev = json_object_new_object();

	op_json_set_str(ev, "node", id);
	op_json_set_str(ev, "url", url);
	json_object_object_add(ev, "reachable", json_object_new_boolean(up));
	if (up) {
		op_readings_add(out, RL_INV_NODE_DOWN, id, OP_RD_HEALTHY, 1, 1, ev,
		    "node %s (%s) answers /health", id, url);
		/* a node first seen down is known by its URL: heal that entity too */
		if (strcmp(id, url) != 0)
			op_readings_add(out, RL_INV_NODE_DOWN, url, OP_RD_HEALTHY, 1, 1,
			    json_object_get(ev), "node %s (%s) answers /health", id, url);
		return;
	}
	op_json_set_str(ev, "error", op_json_str(n, "error", "unknown"));
	op_readings_add(out, RL_INV_NODE_DOWN, id, OP_RD_VIOLATED, 0, 1, ev,
	    "node %s (%s) does not answer /health: %s", id, url, op_json_str(n, "error", "?"));
}

static void
rl_check_redis(json_object *obs, struct op_readings *out)
{
	json_object *r = op_json_obj(obs, "redis");
	int ok = op_json_bool(r, "ok", 0);
	json_object *ev = json_object_new_object();
	int64_t lat = op_json_int(r, "latency_ms", -1);

	json_object_object_add(ev, "ok", json_object_new_boolean(ok));
	op_json_set_int(ev, "latency_ms", lat);
	if (ok) {
		op_readings_add(out, RL_INV_REDIS, "redis", OP_RD_HEALTHY, (double)lat,
		    RL_REDIS_TIMEOUT_MS, ev, "Redis answers PING and TIME in %lld ms",
		    (long long)lat);
		return;
	}
	op_json_set_str(ev, "error", op_json_str(r, "error", "unknown"));
	op_readings_add(out, RL_INV_REDIS, "redis", OP_RD_VIOLATED, (double)lat,
	    RL_REDIS_TIMEOUT_MS, ev, "Redis does not answer within %d ms: %s",
	    RL_REDIS_TIMEOUT_MS, op_json_str(r, "error", "?"));
}

/* Evidence shared by the per-key invariants. */
static json_object *
rl_key_evidence(json_object *k)
{
	json_object *ev = json_object_new_object(), *v;
	static const char *const f[] = {"key", "limit", "window_ms", "redis_count",
	    "node_allowed_sum", "drift", "allowed_recent_sum", "complete", "covers_window",
	    "per_node"};

	for (size_t i = 0; i < OP_ARRAY_LEN(f); i++)
		if (json_object_object_get_ex(k, f[i], &v))
			json_object_object_add(ev, f[i], json_object_get(v));
	return ev;
}

/* Whether the key's windowed sums are trustworthy: every node answered,
 * every node's accounting spans the window, and all applied the same reset. */
static const char *
rl_key_unsure(json_object *k)
{
	if (!op_json_bool(k, "complete", 0))
		return "not every node answered";
	if (!op_json_bool(k, "covers_window", 1))
		return "a node restarted within the window";
	if (!op_json_bool(k, "reset_consistent", 1))
		return "a counter reset is still propagating";
	return NULL;
}

static void
rl_check_drift(json_object *obs, json_object *k, int64_t tol, struct op_readings *out)
{
	const char *key = op_json_str(k, "key", "?"), *why = rl_key_unsure(k);
	json_object *ev = rl_key_evidence(k), *rc;
	int64_t redis = op_json_int(k, "redis_count", -1), sum = op_json_int(k, "node_allowed_sum", 0);

	op_json_set_int(ev, "tolerance", tol);
	if (!op_json_bool(op_json_obj(obs, "redis"), "ok", 0))
		why = "Redis is unreachable";
	else if (!json_object_object_get_ex(k, "redis_count", &rc) || rc == NULL || redis < 0)
		why = "no node reported the Redis count";
	if (why) {
		op_readings_add(out, RL_INV_DRIFT, key, OP_RD_BAND, 0, (double)tol, ev,
		    "key %s: drift cannot be measured: %s", key, why);
		return;
	}
	int64_t drift = redis - sum, mag = llabs(drift);
	op_readings_add(out, RL_INV_DRIFT, key, mag > tol ? OP_RD_VIOLATED : OP_RD_HEALTHY,
	    (double)mag, (double)tol, ev, "key %s: Redis counts %lld, nodes allowed %lld (drift %lld %s %lld)",
	    key, (long long)redis, (long long)sum, (long long)drift, mag > tol ? ">" : "<=",
	    (long long)tol);
}

static void
rl_check_over(json_object *k, struct op_readings *out)
{
	const char *key = op_json_str(k, "key", "?"), *why = rl_key_unsure(k);
	int64_t limit = op_json_int(k, "limit", -1), sum = op_json_int(k, "node_allowed_sum", 0);
	json_object *ev = rl_key_evidence(k);

	if (limit == 0) {
		op_readings_add(out, RL_INV_OVER, key, OP_RD_HEALTHY, (double)sum, 0, ev,
		    "key %s: limit 0, watched by ghost_allowing", key);
		return;
	}
	if (limit < 0)
		why = "its limit is unknown";
	if (!op_json_bool(k, "reset_consistent", 1))
		limit = -1; /* a node still counting before the reset overstates the sum */
	if (why && !(limit > 0 && sum > limit)) {
		/* a partial sum above the limit already proves it; below proves nothing */
		op_readings_add(out, RL_INV_OVER, key, OP_RD_BAND, (double)sum, (double)limit, ev,
		    "key %s: cannot tell: %s", key, why);
		return;
	}
	op_readings_add(out, RL_INV_OVER, key, sum > limit ? OP_RD_VIOLATED : OP_RD_HEALTHY,
	    (double)sum, (double)limit, ev, "key %s: nodes allowed %lld in %lld ms, limit %lld%s",
	    key, (long long)sum, (long long)op_json_int(k, "window_ms", -1), (long long)limit,
	    sum > limit ? " (over the limit)" : "");
}

static void
rl_check_ghost(json_object *k, struct op_readings *out)
{
	const char *key = op_json_str(k, "key", "?");
	int64_t limit = op_json_int(k, "limit", -1), recent = op_json_int(k, "allowed_recent_sum", 0);
	json_object *ev = rl_key_evidence(k), *pn = op_json_obj(k, "per_node");
	char who[160] = "";

	if (limit != 0) {
		op_readings_add(out, RL_INV_GHOST, key, limit > 0 ? OP_RD_HEALTHY : OP_RD_BAND,
		    (double)recent, 0, ev, "key %s: limit %lld, not a blocked key", key,
		    (long long)limit);
		return;
	}
	if (pn) {
		json_object *ghosts = json_object_new_array();
		/* name the nodes with a stale cache; if none is stale, every node that allowed */
		int any_stale = 0;
		json_object_object_foreach(pn, sid, sv)
		{
			(void)sid;
			if (op_json_int(sv, "allowed_recent", 0) > 0 && op_json_int(sv, "cached_limit", -1) != 0)
				any_stale = 1;
		}
		json_object_object_foreach(pn, id, v)
		{
			if (op_json_int(v, "allowed_recent", 0) <= 0 ||
			    (any_stale && op_json_int(v, "cached_limit", -1) == 0))
				continue;
			json_object *g = json_object_new_object();
			op_json_set_str(g, "node", id);
			op_json_set_int(g, "allowed_recent", op_json_int(v, "allowed_recent", 0));
			op_json_set_int(g, "cached_limit", op_json_int(v, "cached_limit", -1));
			json_object_array_add(ghosts, g);
			size_t l = strlen(who);
			snprintf(who + l, sizeof(who) - l, "%s%s (cached limit %lld)", l ? ", " : "",
			    id, (long long)op_json_int(v, "cached_limit", -1));
		}
		json_object_object_add(ev, "ghost_nodes", ghosts);
	}
	if (recent > 0) {
		op_readings_add(out, RL_INV_GHOST, key, OP_RD_VIOLATED, (double)recent, 0, ev,
		    "key %s: limit 0 but %lld requests allowed in the last 3 s by %s", key,
		    (long long)recent, who[0] ? who : "some node");
		return;
	}
	if (!op_json_bool(k, "complete", 0)) {
		op_readings_add(out, RL_INV_GHOST, key, OP_RD_BAND, 0, 0, ev,
		    "key %s: limit 0, cannot tell: not every node answered", key);
		return;
	}
	op_readings_add(out, RL_INV_GHOST, key, OP_RD_HEALTHY, 0, 0, ev,
	    "key %s: limit 0 and no node allowed a request in the last 3 s", key);
}

static void
rl_check_latency(const struct rl_priv *p, json_object *n, struct op_readings *out)
{
	const char *id = op_json_str(n, "id", "?");
	double p99 = op_json_double(n, "check_p99_ms", -1), thr = (double)p->latency_p99_ms;
	int64_t checks = op_json_int(n, "checks_recent", -1);
	json_object *ev = json_object_new_object();
	enum op_rd_state st;

	op_json_set_str(ev, "node", id);
	json_object_object_add(ev, "check_p99_ms", json_object_new_double(p99));
	op_json_set_int(ev, "checks_recent", checks);
	op_json_set_int(ev, "min_checks", p->min_checks);
	json_object_object_add(ev, "threshold_ms", json_object_new_double(thr));
	if (!op_json_bool(n, "reachable", 0) || p99 < 0 || checks < 0) {
		op_readings_add(out, RL_INV_LATENCY, id, OP_RD_BAND, p99, thr, ev,
		    "node %s: no latency figures", id);
		return;
	}
	if (checks < p->min_checks) {
		op_readings_add(out, RL_INV_LATENCY, id, OP_RD_HEALTHY, p99, thr, ev,
		    "node %s: only %lld checks recently (< %lld), p99 %.1f ms not meaningful", id,
		    (long long)checks, (long long)p->min_checks, p99);
		return;
	}
	if (p99 > thr)
		st = OP_RD_VIOLATED;
	else if (p99 < RL_LAT_CLEAR_RATIO * thr)
		st = OP_RD_HEALTHY;
	else
		st = OP_RD_BAND;
	op_readings_add(out, RL_INV_LATENCY, id, st, p99, thr, ev,
	    "node %s: /check p99 %.1f ms over %lld checks (threshold %.0f ms)", id, p99,
	    (long long)checks, thr);
}

static int
rl_listed(json_object *arr, const char *field, const char *v)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (!strcmp(op_json_str(json_object_array_get_idx(arr, i), field, ""), v))
			return 1;
	return 0;
}

/* A key asked about (a ticket's) that no node lists: each node lists every
 * key active in its window unless it says "truncated", so in a complete
 * observation (Redis and every node answered, no list cut) an unlisted key
 * is idle: nothing allowed, nothing counted in Redis. That is an explicit
 * account, read as such; in any other observation it cannot be told. */
static void
rl_check_idle_focus(json_object *obs, json_object *nodes, json_object *keys,
    struct op_readings *out)
{
	json_object *focus = op_obs_focus_list(obs);
	int complete = op_obs_complete(obs);

	for (size_t i = 0; focus && i < json_object_array_length(focus); i++) {
		const char *key = json_object_get_string(json_object_array_get_idx(focus, i));
		if (key == NULL || !strcmp(key, "redis") || rl_listed(nodes, "id", key) ||
		    rl_listed(keys, "key", key))
			continue;
		enum op_rd_state st = complete ? OP_RD_HEALTHY : OP_RD_BAND;
		json_object *ev = json_object_new_object();
		op_json_set_str(ev, "key", key);
		json_object_object_add(ev, "listed", json_object_new_boolean(0));
		json_object_object_add(ev, "complete", json_object_new_boolean(complete));
		op_readings_add(out, RL_INV_DRIFT, key, st, 0, 0, json_object_get(ev), complete ?
		    "key %s idle in its window on every node and in Redis: no drift" :
		    "key %s not listed and the observation is incomplete: drift cannot be told", key);
		op_readings_add(out, RL_INV_OVER, key, st, 0, 0, ev, complete ?
		    "key %s idle in its window on every node: nothing allowed" :
		    "key %s not listed and the observation is incomplete", key);
	}
}

void
rl_check(struct op_subject *s, json_object *obs, struct op_readings *out)
{
	const struct rl_priv *p = s->priv;
	json_object *nodes = op_json_arr(obs, "nodes"), *keys = op_json_arr(obs, "keys");

	rl_check_redis(obs, out);
	for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
		rl_check_node_down(json_object_array_get_idx(nodes, i), out);
		rl_check_latency(p, json_object_array_get_idx(nodes, i), out);
	}
	for (size_t i = 0; keys && i < json_object_array_length(keys); i++) {
		json_object *k = json_object_array_get_idx(keys, i);
		rl_check_drift(obs, k, p->drift_tol, out);
		rl_check_over(k, out);
		rl_check_ghost(k, out);
	}
	rl_check_idle_focus(obs, nodes, keys, out);
}
