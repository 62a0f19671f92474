/* rl_rules: the rate limiter's offline diagnosis playbook. Deterministic:
 * the same ticket and observation give the same diagnosis. Figures come from
 * the fresh observation when it has the entity, else from the ticket's
 * evidence, so a diagnosis is never built on nothing. */
#include "subjects/ratelimiter/rl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"

#define RL_NO_ACTION_RISK_NODE \
	"no automatic action: operatord does not own the rlnode process; an operator must " \
	"restart it (its load is meanwhile served by the other nodes)"
#define RL_NO_ACTION_RISK_REDIS \
	"no automatic action: Redis is outside operatord's control; an operator must check " \
	"the Redis server (process, memory, CLIENT PAUSE, network)"

/* The key's figures: the fresh observation if it has them, else the ticket's. */
static json_object *
rl_diag_keydata(json_object *ticket, json_object *obs, const char *key)
{
	json_object *k = obs ? rl_obs_key(obs, key) : NULL;

	return k ? k : op_json_obj(ticket, "evidence");
}

static void
rl_diag_per_node(json_object *d, json_object *k)
{
	json_object *pn = op_json_obj(k, "per_node");

	if (pn == NULL)
		return;
	json_object_object_foreach(pn, id, v)
	{
		op_diag_add_evidence(d, "node %s: allowed %lld in the window, %lld allowed and %lld "
		    "blocked in the last 3 s, cached limit %lld", id,
		    (long long)op_json_int(v, "allowed", 0), (long long)op_json_int(v, "allowed_recent", 0),
		    (long long)op_json_int(v, "blocked_recent", 0),
		    (long long)op_json_int(v, "cached_limit", -1));
		char comp[RL_ID_MAX + 8];
		snprintf(comp, sizeof(comp), "node:%s", id);
		op_diag_add_component(d, comp);
	}
}

static int
rl_diag_redis_down(json_object *obs)
{
	json_object *nodes = op_json_arr(obs, "nodes");

	if (obs == NULL)
		return 0;
	if (!op_json_bool(op_json_obj(obs, "redis"), "ok", 1))
		return 1;
	for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);
		const char *r = op_json_str(n, "redis", "up");
		if (op_json_bool(n, "reachable", 0) && strcmp(r, "down") == 0)
			return 1;
	}
	return 0;
}

static json_object *
rl_diag_drift(json_object *ticket, json_object *obs, const char *key)
{
	json_object *k = rl_diag_keydata(ticket, obs, key), *d;
	int64_t redis = op_json_int(k, "redis_count", -1), sum = op_json_int(k, "node_allowed_sum", 0);
	int64_t drift = redis >= 0 ? redis - sum : op_json_int(k, "drift", 0);
	char primary[512];

	if (drift > 0)
		snprintf(primary, sizeof(primary), "counter drift on key %s: Redis counts %lld requests "
		    "but the nodes allowed %lld (%lld more in Redis): increments that timed out during a "
		    "Redis stall were retried on another connection and Redis executed both, so they "
		    "were double-counted", key, (long long)redis, (long long)sum, (long long)drift);
	else if (drift < 0)
		snprintf(primary, sizeof(primary), "counter drift on key %s: Redis counts %lld requests "
		    "but the nodes allowed %lld (%lld fewer in Redis): increments were lost, e.g. "
		    "nodes allowed requests while their Redis writes failed", key, (long long)redis,
		    (long long)sum, (long long)-drift);
	else
		snprintf(primary, sizeof(primary), "counter drift on key %s: reported by the "
		    "observer, but the current figures agree (Redis %lld, nodes %lld)", key,
		    (long long)redis, (long long)sum);
	d = op_diag_new(primary, drift != 0 ? 0.85 : 0.4, "warning");
	op_diag_add_timeline(d, "counter_drift opened for key %s", key);
	op_diag_add_component(d, "redis");
	op_diag_add_reading(d, "redis_count", (double)redis, "requests");
	op_diag_add_reading(d, "node_allowed_sum", (double)sum, "requests");
	op_diag_add_reading(d, "drift", (double)drift, "requests");
	op_diag_add_evidence(d, "key %s, window %lld ms ending at the settled time: Redis %lld, "
	    "nodes %lld, drift %lld", key, (long long)op_json_int(k, "window_ms", -1),
	    (long long)redis, (long long)sum, (long long)drift);
	rl_diag_per_node(d, k);
	op_diag_add_alternative(d, "clock skew between nodes", "none",
	    "every timestamp comes from Redis TIME, both in Redis and in the nodes' accounting",
	    "ruled out");
	op_diag_add_alternative(d, "requests still in flight", "none",
	    "the window compared ends 1 s in the past, after in-flight requests settled",
	    "ruled out");
	op_diag_add_alternative(d, "a node restarted and lost its accounting", "none",
	    "the observer only measures drift when every node's uptime covers the window",
	    "ruled out");
	op_diag_add_risk(d, "resetting the counter forgets the window: clients of this key may get "
	    "up to one full limit of requests at once");
	json_object *p = json_object_new_object();
	op_json_set_str(p, "key", key);
	op_diag_add_action(d, "reset_counter", p,
	    "Redis's count for the key no longer matches what was allowed; a reset starts both "
	    "from zero", "soon", "Redis count and nodes' sum aligned (drift within tolerance)");
	return d;
}

/* Nodes of a key that allowed requests recently with a cached limit that is
 * not the authoritative one. */
static size_t
rl_diag_ghosts(json_object *k, int64_t limit, const char **ids, size_t max, char *who,
    size_t wholen)
{
	json_object *pn = op_json_obj(k, "per_node");
	size_t n = 0;

	who[0] = '\0';
	if (pn == NULL)
		return 0;
	json_object_object_foreach(pn, id, v)
	{
		int64_t cl = op_json_int(v, "cached_limit", -1);
		if (op_json_int(v, "allowed_recent", 0) <= 0 || cl == limit || n == max)
			continue;
		ids[n++] = id;
		size_t l = strlen(who);
		snprintf(who + l, wholen - l, "%s%s (cached limit %lld)", l ? ", " : "", id,
		    (long long)cl);
	}
	return n;
}

static json_object *
rl_diag_ghost(json_object *ticket, json_object *obs, const char *key)
{
	json_object *k = rl_diag_keydata(ticket, obs, key), *d;
	int64_t limit = op_json_int(k, "limit", 0), recent = op_json_int(k, "allowed_recent_sum", 0);
	const char *ids[RL_NODES_MAX];
	char who[512], primary[768];
	size_t n = rl_diag_ghosts(k, limit, ids, RL_NODES_MAX, who, sizeof(who));

	if (n > 0)
		snprintf(primary, sizeof(primary), "ghost allowing on key %s: limit is %lld but %s "
		    "still allowed %lld requests in the last 3 s: the node missed the limit-change "
		    "notification (its pub/sub subscriber reconnected without reloading) and "
		    "enforces a stale cached limit", key, (long long)limit, who, (long long)recent);
	else
		snprintf(primary, sizeof(primary), "ghost allowing on key %s: limit is %lld but %lld "
		    "requests were allowed in the last 3 s; no node reports a stale cached limit",
		    key, (long long)limit, (long long)recent);
	d = op_diag_new(primary, n > 0 ? 0.9 : 0.5, "warning");
	op_diag_add_timeline(d, "ghost_allowing opened for key %s", key);
	op_diag_add_reading(d, "limit", (double)limit, "requests");
	op_diag_add_reading(d, "allowed_recent_sum", (double)recent, "requests");
	rl_diag_per_node(d, k);
	op_diag_add_alternative(d, "Redis unreachable, nodes failing open",
	    rl_diag_redis_down(obs) ? "Redis is reported down" : "none",
	    rl_diag_redis_down(obs) ? "none" : "Redis answers and the nodes report it up",
	    rl_diag_redis_down(obs) ? "possible, contributes" : "ruled out");
	op_diag_add_alternative(d, "the limit was never set to 0 (default limit in force)", "none",
	    "the authoritative limit read from Redis is 0", "ruled out");
	if (n > 0) {
		for (size_t i = 0; i < n; i++) {
			json_object *p = json_object_new_object();
			op_json_set_str(p, "node", ids[i]);
			op_diag_add_action(d, "resync_node", p,
			    "the node enforces a stale cached limit; a resync reloads every limit from Redis",
			    "immediate", "the node's cached limit equals the authoritative limit and it "
			    "allows no requests for the key");
		}
		op_diag_add_risk(d, "a resync reloads all limits on that node; requests during the "
		    "reload use the old cache");
	} else {
		json_object *p = json_object_new_object();
		op_json_set_str(p, "key", key);
		json_object_object_add(p, "limit", json_object_new_int64(limit));
		op_diag_add_action(d, "update_limit", p,
		    "no stale node identifiable: re-publishing the limit reaches every subscriber",
		    "immediate", "no node allows requests for the key");
		op_diag_add_risk(d, "re-publishing the limit rewrites it in Redis (same value)");
	}
	return d;
}

static json_object *
rl_diag_over(json_object *ticket, json_object *obs, const char *key)
{
	json_object *k = rl_diag_keydata(ticket, obs, key), *d, *pn = op_json_obj(k, "per_node");
	int64_t limit = op_json_int(k, "limit", -1), sum = op_json_int(k, "node_allowed_sum", 0);
	const char *stale[RL_NODES_MAX];
	size_t nstale = 0;
	char primary[640], who[512] = "";

	if (pn) {
		json_object_object_foreach(pn, id, v)
		{
			int64_t cl = op_json_int(v, "cached_limit", -1);
			if (cl > limit && nstale < RL_NODES_MAX) {
				stale[nstale++] = id;
				size_t l = strlen(who);
				snprintf(who + l, sizeof(who) - l, "%s%s (cached %lld)", l ? ", " : "", id,
				    (long long)cl);
			}
		}
	}
	int redis_down = rl_diag_redis_down(obs);
	if (redis_down)
		snprintf(primary, sizeof(primary), "over limit on key %s: nodes allowed %lld > limit "
		    "%lld while Redis is unreachable: the nodes fail open and count locally", key,
		    (long long)sum, (long long)limit);
	else if (nstale > 0)
		snprintf(primary, sizeof(primary), "over limit on key %s: nodes allowed %lld > limit "
		    "%lld because %s enforce a stale, higher cached limit", key, (long long)sum,
		    (long long)limit, who);
	else
		snprintf(primary, sizeof(primary), "over limit on key %s: nodes allowed %lld > limit "
		    "%lld with no stale limit and Redis up; cause not identified", key,
		    (long long)sum, (long long)limit);
	d = op_diag_new(primary, redis_down || nstale ? 0.8 : 0.4, "warning");
	op_diag_add_timeline(d, "over_limit opened for key %s", key);
	op_diag_add_reading(d, "node_allowed_sum", (double)sum, "requests");
	op_diag_add_reading(d, "limit", (double)limit, "requests");
	rl_diag_per_node(d, k);
	op_diag_add_alternative(d, "Redis outage with fail-open nodes",
	    redis_down ? "Redis or the nodes report it down" : "none",
	    redis_down ? "none" : "Redis answers", redis_down ? "primary" : "ruled out");
	op_diag_add_alternative(d, "stale cached limit on a node", nstale ? who : "none",
	    nstale ? "none" : "every node's cached limit is at most the limit",
	    nstale ? "primary" : "ruled out");
	if (redis_down) {
		op_diag_add_risk(d, "no automatic action: the over-admission ends when Redis is back; "
		    "escalated to an operator");
	} else if (nstale > 0) {
		for (size_t i = 0; i < nstale; i++) {
			json_object *p = json_object_new_object();
			op_json_set_str(p, "node", stale[i]);
			op_diag_add_action(d, "resync_node", p,
			    "the node enforces a higher stale limit; a resync reloads it from Redis",
			    "immediate", "the node's cached limit equals the limit and the nodes' sum "
			    "stays within it");
		}
	} else {
		op_diag_add_risk(d, "no safe automatic action: resetting the counter would let even "
		    "more requests through; escalated to an operator");
	}
	return d;
}

static json_object *
rl_diag_node_down(json_object *ticket, json_object *obs, const char *entity)
{
	json_object *ev = op_json_obj(ticket, "evidence"), *n = obs ? rl_obs_node(obs, entity) : NULL;
	const char *err = op_json_str(n ? n : ev, "error", "no answer");
	const char *url = op_json_str(n ? n : ev, "url", entity);
	char primary[512];
	int up = n && op_json_bool(n, "reachable", 0);
	json_object *d;

	if (up)
		snprintf(primary, sizeof(primary), "node %s (%s) was down but answers /health again",
		    entity, url);
	else
		snprintf(primary, sizeof(primary), "node down: rlnode %s (%s) does not answer "
		    "/health (%s): the process died or is cut off; " RL_NO_ACTION_RISK_NODE, entity,
		    url, err);
	d = op_diag_new(primary, up ? 0.5 : 0.9, up ? "warning" : "critical");
	op_diag_add_timeline(d, "node_down opened for %s", entity);
	op_diag_add_component(d, entity);
	op_diag_add_evidence(d, "GET %s/health: %s", url, up ? "answers" : err);
	op_diag_add_alternative(d, "the observer's network to the node is broken",
	    "the node does not answer the observer",
	    "the other nodes and Redis answer on the same host network",
	    "unlikely; check the node's process");
	op_diag_add_risk(d, RL_NO_ACTION_RISK_NODE);
	return d;
}

static json_object *
rl_diag_redis(json_object *ticket, json_object *obs)
{
	json_object *ev = op_json_obj(ticket, "evidence"), *r = op_json_obj(obs, "redis");
	json_object *nodes = op_json_arr(obs, "nodes"), *d;
	const char *err = op_json_str(r ? r : ev, "error", "no answer");
	size_t ndown = 0, nup = 0;
	char primary[512];

	for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);
		if (!op_json_bool(n, "reachable", 0))
			continue;
		if (strcmp(op_json_str(n, "redis", ""), "down") == 0)
			ndown++;
		else
			nup++;
	}
	snprintf(primary, sizeof(primary), "Redis unreachable: the operator's PING fails (%s); "
	    "%zu reachable node(s) also report Redis down, %zu report it up. Nodes fail open and "
	    "count locally meanwhile; " RL_NO_ACTION_RISK_REDIS, err, ndown, nup);
	d = op_diag_new(primary, nup == 0 ? 0.9 : 0.6, "critical");
	op_diag_add_timeline(d, "redis_unreachable opened");
	op_diag_add_component(d, "redis");
	op_diag_add_evidence(d, "observer PING/TIME: %s", err);
	op_diag_add_evidence(d, "nodes reporting Redis down: %zu, up: %zu", ndown, nup);
	op_diag_add_alternative(d, "only the operator's path to Redis is broken",
	    nup ? "some nodes still reach Redis" : "none",
	    nup ? "none" : "the nodes cannot reach Redis either",
	    nup ? "possible" : "ruled out");
	op_diag_add_risk(d, RL_NO_ACTION_RISK_REDIS);
	op_diag_add_risk(d, "while Redis is away, limits are enforced per node only; the keys may "
	    "be over-admitted");
	return d;
}

static json_object *
rl_diag_latency(json_object *ticket, json_object *obs, const char *entity)
{
	json_object *ev = op_json_obj(ticket, "evidence"), *n = obs ? rl_obs_node(obs, entity) : NULL;
	json_object *src = n ? n : ev, *d;
	double p99 = op_json_double(src, "check_p99_ms", -1);
	int64_t checks = op_json_int(src, "checks_recent", -1);
	int64_t rlat = op_json_int(op_json_obj(obs, "redis"), "latency_ms", -1);
	char primary[512];

	snprintf(primary, sizeof(primary), "high latency on node %s: /check p99 %.1f ms over %lld "
	    "recent checks (threshold %.0f ms); Redis answers the operator in %lld ms. No "
	    "automatic action: an operator must check the node's load and its Redis path", entity,
	    p99, (long long)checks, op_json_double(ev, "threshold_ms", RL_DEF_LATENCY_P99_MS),
	    (long long)rlat);
	d = op_diag_new(primary, 0.6, "warning");
	op_diag_add_timeline(d, "high_latency opened for %s", entity);
	op_diag_add_component(d, entity);
	op_diag_add_reading(d, "check_p99_ms", p99, "ms");
	op_diag_add_reading(d, "checks_recent", (double)checks, "requests");
	if (rlat >= 0)
		op_diag_add_reading(d, "redis_latency_ms", (double)rlat, "ms");
	op_diag_add_alternative(d, "Redis is slow for every node",
	    rlat >= 100 ? "the operator's own Redis round trip is slow" : "none",
	    rlat >= 100 ? "none" : "the operator's Redis round trip is fast",
	    rlat >= 100 ? "likely" : "unlikely");
	op_diag_add_risk(d, "no automatic action: restarting a slow node drops its accounting");
	return d;
}

json_object *
rl_diagnose(struct op_subject *s, json_object *ticket, json_object *obs)
{
	const char *inv = op_json_str(ticket, "invariant", "");
	const char *entity = op_json_str(ticket, "entity", "");
	json_object *d;

	(void)s;
	if (strcmp(inv, RL_INV_DRIFT) == 0)
		return rl_diag_drift(ticket, obs, entity);
	if (strcmp(inv, RL_INV_GHOST) == 0)
		return rl_diag_ghost(ticket, obs, entity);
	if (strcmp(inv, RL_INV_OVER) == 0)
		return rl_diag_over(ticket, obs, entity);
	if (strcmp(inv, RL_INV_NODE_DOWN) == 0)
		return rl_diag_node_down(ticket, obs, entity);
	if (strcmp(inv, RL_INV_REDIS) == 0)
		return rl_diag_redis(ticket, obs);
	if (strcmp(inv, RL_INV_LATENCY) == 0)
		return rl_diag_latency(ticket, obs, entity);
	char primary[256];
	snprintf(primary, sizeof(primary), "no playbook entry for invariant \"%s\" (entity %s)",
	    inv, entity);
	d = op_diag_new(primary, 0.1, "warning");
	op_diag_add_risk(d, "escalated: the rules backend has no safe action for this invariant");
	return d;
}
