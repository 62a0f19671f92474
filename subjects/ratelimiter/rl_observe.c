/* rl_observe: one observation of the rate limiter: Redis itself (never
 * through one node only) and every configured node in parallel, so a dead
 * node is one unreachable entry, not a failed observation. Counters are read
 * for a window ending RL_SETTLE_MS in the past, on Redis's clock, so requests
 * still in flight do not look like drift. The nodes list only their drift
 * suspects (GET /api/counters?scope=suspects), so an observation reads a
 * handful of keys whatever the number of keys, and says when it can vouch
 * for the keys it does not list. */
#include "subjects/ratelimiter/rl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

/* The observer's own Redis view: PING for reachability and latency, TIME for
 * the clock every node also uses. Failure is a figure, not an error. */
/* "http://127.0.0.1:8001/x" -> "127.0.0.1:8001" */
static void
rl_url_hostport(const char *url, char *out, size_t outlen)
{
	const char *p = strstr(url, "://");

	p = p ? p + 3 : url;
	size_t n = strcspn(p, "/");
	snprintf(out, outlen, "%.*s", (int)n, p);
}

/* A node down before we ever saw it still has a stable name: the id its
 * heartbeats registered for its address (rl:nodes:addr survives its death). */
static void
rl_learn_ids(struct rl_priv *p)
{
	int missing = 0;
	redisReply *rep;
	char err[128];

	for (size_t i = 0; i < p->nnodes; i++)
		missing |= p->node_ids[i][0] == '\0';
	if (!missing || p->rc == NULL)
		return;
	rep = rl_redis_cmd(p->rc, err, sizeof(err), "HGETALL rl:nodes:addr");
	if (rep == NULL)
		return;
	for (size_t k = 0; rep->type == REDIS_REPLY_ARRAY && k + 1 < rep->elements; k += 2) {
		const char *id = rep->element[k]->str, *addr = rep->element[k + 1]->str;
		const char *port = addr ? strrchr(addr, ':') : NULL;
		for (size_t i = 0; id && port && i < p->nnodes; i++) {
			char hp[256];
			rl_url_hostport(p->nodes[i], hp, sizeof(hp));
			const char *uport = strrchr(hp, ':');
			/* a node bound to 0.0.0.0 registers that: match on the port then */
			int same = strcmp(hp, addr) == 0 ||
			    (uport && strcmp(uport, port) == 0 && strncmp(addr, "0.0.0.0:", 8) == 0);
			if (same && p->node_ids[i][0] == '\0')
				op_strlcpy(p->node_ids[i], id, RL_ID_MAX);
		}
	}
	freeReplyObject(rep);
}

static int
rl_obs_redis(struct rl_priv *p, json_object *obs)
{
	json_object *r = json_object_new_object();
	char err[256] = "";
	int64_t t0 = op_mono_ms(), now_ms = -1;
	redisReply *rep = NULL;

	for (int fresh = p->rc == NULL, tries = 0; tries < 2 && rep == NULL; tries++) {
		if (p->rc == NULL) {
			p->rc = rl_redis_open(p, RL_REDIS_TIMEOUT_MS, err, sizeof(err));
			fresh = 1;
		}
		if (p->rc && (rep = rl_redis_cmd(p->rc, err, sizeof(err), "PING")) != NULL) {
			freeReplyObject(rep);
			rep = rl_redis_cmd(p->rc, err, sizeof(err), "TIME");
		}
		/* a kept connection may have died with a Redis restart: one fresh
		 * try, but never a second wait on a Redis that times out */
		if (rep != NULL || p->rc == NULL || fresh || strcmp(err, "timed out") == 0)
			break;
		redisFree(p->rc);
		p->rc = NULL;
	}
	int64_t lat = op_mono_ms() - t0;
	if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->str && rep->element[1]->str) {
		now_ms = strtoll(rep->element[0]->str, NULL, 10) * 1000 +
		    strtoll(rep->element[1]->str, NULL, 10) / 1000;
		p->redis_off_ms = now_ms - op_wall_ms();
		p->have_off = 1;
	} else if (err[0] == '\0') {
		snprintf(err, sizeof(err), "unexpected TIME reply");
	}
	if (rep)
		freeReplyObject(rep);
	if (now_ms >= 0)
		rl_learn_ids(p);
	if (now_ms < 0 && p->rc) {
		/* a timed-out hiredis context is unusable: reconnect next time */
		redisFree(p->rc);
		p->rc = NULL;
	}
	json_object_object_add(r, "ok", json_object_new_boolean(now_ms >= 0));
	json_object_object_add(r, "error", now_ms >= 0 ? NULL : json_object_new_string(err));
	json_object_object_add(r, "latency_ms", json_object_new_int64(lat));
	json_object_object_add(r, "now_ms", now_ms >= 0 ? json_object_new_int64(now_ms) : NULL);
	json_object_object_add(obs, "redis", r);
	return now_ms >= 0 ? 0 : -1;
}

/* Per-key accumulation over the nodes' /api/counters answers. */
struct rl_kacc {
	const char *key;          /* points into a node's answer, alive until merge ends */
	int64_t limit, window_ms, redis_count;
	int64_t allowed_sum, recent_sum;
	int64_t reset_min, reset_max;
	size_t seen;
	json_object *per_node;
};

struct rl_merge {
	struct rl_kacc *k;
	size_t n, cap;
	json_object *index;       /* key -> position in k */
};

static struct rl_kacc *
rl_merge_slot(struct rl_merge *m, const char *key)
{
	json_object *pos;

	if (json_object_object_get_ex(m->index, key, &pos))
		return &m->k[json_object_get_int(pos)];
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 32;
		struct rl_kacc *nk = realloc(m->k, cap * sizeof(*nk));
		if (nk == NULL)
			return NULL;
		m->k = nk;
		m->cap = cap;
	}
	struct rl_kacc *a = &m->k[m->n];
	memset(a, 0, sizeof(*a));
	a->key = key;
	a->limit = a->window_ms = a->redis_count = -1;
	a->reset_min = INT64_MAX;
	a->reset_max = INT64_MIN;
	a->per_node = json_object_new_object();
	json_object_object_add(m->index, key, json_object_new_int((int)m->n));
	m->n++;
	return a;
}

static void
rl_merge_node(struct rl_merge *m, const char *id, json_object *counters)
{
	json_object *arr = op_json_arr(counters, "counters");

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *c = json_object_array_get_idx(arr, i);
		const char *key = op_json_str(c, "key", NULL);
		struct rl_kacc *a;

		if (key == NULL || (a = rl_merge_slot(m, key)) == NULL)
			continue;
		int64_t lim = op_json_int(c, "limit", -1), rc = op_json_int(c, "redis_count", -1);
		int64_t reset = op_json_int(c, "reset_at_ms", 0);
		if (a->limit < 0)
			a->limit = lim;
		if (a->window_ms < 0)
			a->window_ms = op_json_int(c, "window_ms", -1);
		/* every node reads the same settled window; the largest is the latest view */
		if (rc > a->redis_count)
			a->redis_count = rc;
		a->allowed_sum += op_json_int(c, "node_allowed", 0);
		a->recent_sum += op_json_int(c, "node_allowed_recent", 0);
		/* a reset older than the window shapes no count any more, and a node
		 * started since (a restart) never learns it: not an inconsistency */
		if (reset > 0 && a->window_ms > 0 &&
		    reset < op_json_int(counters, "now_ms", 0) - a->window_ms - RL_SETTLE_MS)
			reset = 0;
		a->reset_min = reset < a->reset_min ? reset : a->reset_min;
		a->reset_max = reset > a->reset_max ? reset : a->reset_max;
		a->seen++;
		json_object *pn = json_object_new_object();
		op_json_set_int(pn, "allowed", op_json_int(c, "node_allowed", 0));
		op_json_set_int(pn, "allowed_recent", op_json_int(c, "node_allowed_recent", 0));
		op_json_set_int(pn, "blocked_recent", op_json_int(c, "node_blocked_recent", 0));
		op_json_set_int(pn, "cached_limit", op_json_int(c, "cached_limit", -1));
		json_object_object_add(a->per_node, id, pn);
	}
}

/* A node's accounting starts when its process does: a younger node cannot
 * account for a whole window, so its sum would look like drift. */
static int
rl_node_covers(json_object *node, int64_t window_ms)
{
	int64_t up = op_json_int(node, "uptime_ms", -1);

	return up < 0 || up >= window_ms + RL_SETTLE_MS;
}

static json_object *
rl_merge_key(const struct rl_kacc *a, json_object *nodes, size_t ncounted, size_t nnodes,
    size_t ntruncated)
{
	json_object *k = json_object_new_object();
	/* a node that answered in full but does not list the key allowed none of
	 * it; one whose list was cut, or that lists only its suspects (which every
	 * node lists alike once they reach Redis), may have left it out: then the
	 * sum is partial. ntruncated counts both kinds of partial lists. */
	int complete = ncounted == nnodes && (ntruncated == 0 || a->seen == ncounted);
	int covered = 1;

	for (size_t i = 0; i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);
		if (op_json_bool(n, "counters_ok", 0) && !rl_node_covers(n, a->window_ms))
			covered = 0;
	}
	op_json_set_str(k, "key", a->key);
	op_json_set_int(k, "limit", a->limit);
	op_json_set_int(k, "window_ms", a->window_ms);
	json_object_object_add(k, "redis_count",
	    a->redis_count >= 0 ? json_object_new_int64(a->redis_count) : NULL);
	op_json_set_int(k, "node_allowed_sum", a->allowed_sum);
	json_object_object_add(k, "drift",
	    a->redis_count >= 0 ? json_object_new_int64(a->redis_count - a->allowed_sum) : NULL);
	op_json_set_int(k, "allowed_recent_sum", a->recent_sum);
	json_object_object_add(k, "complete", json_object_new_boolean(complete));
	json_object_object_add(k, "covers_window", json_object_new_boolean(covered));
	/* a reset one node has not applied yet makes the sums incomparable */
	json_object_object_add(k, "reset_consistent",
	    json_object_new_boolean(a->seen == 0 || a->reset_min == a->reset_max));
	json_object_object_add(k, "per_node", json_object_get(a->per_node));
	return k;
}

static json_object *
rl_obs_node_entry(struct rl_priv *p, size_t i, json_object *h, const char *herr)
{
	json_object *n = json_object_new_object();
	const char *id = h ? op_json_str(h, "node_id", NULL) : NULL;

	if (id && *id)
		op_strlcpy(p->node_ids[i], id, RL_ID_MAX);
	/* an unreachable node keeps the id it last had, so its entity is stable */
	op_json_set_str(n, "id", p->node_ids[i][0] ? p->node_ids[i] : p->nodes[i]);
	op_json_set_str(n, "url", p->nodes[i]);
	json_object_object_add(n, "reachable", json_object_new_boolean(h != NULL));
	json_object_object_add(n, "error", h ? NULL : json_object_new_string(herr));
	if (h == NULL)
		return n;
	op_json_set_str(n, "status", op_json_str(h, "status", "unknown"));
	op_json_set_str(n, "redis", op_json_str(h, "redis", "unknown"));
	json_object_object_add(n, "check_p99_ms",
	    json_object_new_double(op_json_double(h, "check_p99_ms", -1)));
	op_json_set_int(n, "checks_recent", op_json_int(h, "checks_recent", -1));
	op_json_set_int(n, "pid", op_json_int(h, "pid", -1));
	op_json_set_int(n, "uptime_ms", op_json_int(h, "uptime_ms", -1));
	return n;
}

/* GET /health and /api/counters from every node at once, then merge. */
static size_t
rl_obs_nodes(struct rl_priv *p, int64_t at_ms, json_object *obs)
{
	size_t nn = p->nnodes, answered = 0, ncounted = 0, ntruncated = 0, nscoped = 0;
	int64_t def_limit = -1, def_window = -1, active_keys = 0;
	int vouch = 1; /* every node can vouch for the keys it does not list */
	struct op_http_req reqs[2 * RL_NODES_MAX];
	char urls[2 * RL_NODES_MAX][RL_REQ_URL_MAX];
	json_object *counters[RL_NODES_MAX] = {0};
	json_object *nodes = json_object_new_array(), *keys = json_object_new_array();
	struct rl_merge m = {NULL, 0, 0, json_object_new_object()};

	for (size_t i = 0; i < nn; i++) {
		snprintf(urls[i], sizeof(urls[i]), "%s" RLW_PATH_HEALTH, p->nodes[i]);
		/* scope=suspects: only the keys that may drift or go over their
		 * limit, whatever the number of keys (rlnode_suspect.c) */
		snprintf(urls[nn + i], sizeof(urls[nn + i]),
		    "%s" RLW_PATH_COUNTERS "?at=%lld&scope=suspects", p->nodes[i],
		    (long long)at_ms);
		rl_req_get(&reqs[i], urls[i], p->timeout_ms);
		rl_req_get(&reqs[nn + i], urls[nn + i], p->timeout_ms);
	}
	op_http_multi(reqs, 2 * nn);
	for (size_t i = 0; i < nn; i++) {
		char herr[256], cerr[256];
		json_object *h = rl_req_json(&reqs[i], herr, sizeof(herr));
		json_object *n = rl_obs_node_entry(p, i, h, herr);

		counters[i] = rl_req_json(&reqs[nn + i], cerr, sizeof(cerr));
		json_object_object_add(n, "counters_ok", json_object_new_boolean(counters[i] != NULL));
		if (counters[i] == NULL && h != NULL)
			op_json_set_str(n, "counters_error", cerr);
		answered += h != NULL || counters[i] != NULL;
		if (counters[i] && op_json_bool(counters[i], "truncated", 0)) {
			/* more active keys than the node lists: the ones left out have
			 * no reading and must not count as healed */
			ntruncated++;
			json_object_object_add(n, "counters_truncated", json_object_new_boolean(1));
		}
		if (counters[i] && strcmp(op_json_str(counters[i], "scope", "all"), "suspects") == 0) {
			int64_t dl = op_json_int(counters[i], "default_limit", -1);
			int64_t dw = op_json_int(counters[i], "default_window_ms", -1);
			nscoped++;
			active_keys += op_json_int(counters[i], "active_keys", 0);
			/* a key no node suspects is clean only if every node enforces the
			 * same default limit and window, and has accounted for the whole
			 * window (a restarted node's earlier allows are in Redis only) */
			if ((def_limit >= 0 && (dl != def_limit || dw != def_window)) || dw < 0 ||
			    !rl_node_covers(n, dw))
				vouch = 0;
			def_limit = dl;
			def_window = dw;
		}
		if (counters[i]) {
			ncounted++;
			rl_merge_node(&m, op_json_str(n, "id", p->nodes[i]), counters[i]);
		}
		json_object_array_add(nodes, n);
		json_object_put(h);
		op_http_req_reset(&reqs[i]);
		op_http_req_reset(&reqs[nn + i]);
	}
	for (size_t k = 0; k < m.n; k++) {
		json_object_array_add(keys, rl_merge_key(&m.k[k], nodes, ncounted, nn,
		    ntruncated + nscoped));
		json_object_put(m.k[k].per_node);
	}
	for (size_t i = 0; i < nn; i++)
		json_object_put(counters[i]);
	free(m.k);
	json_object_put(m.index);
	json_object_object_add(obs, "nodes", nodes);
	json_object_object_add(obs, "keys", keys);
	/* Only a full answer may stand for "this key is gone": see op_obs_complete. */
	json_object_object_add(obs, "complete",
	    json_object_new_boolean(ncounted == nn && ntruncated == 0 && (nscoped == 0 || vouch)));
	op_json_set_int(obs, "nodes_truncated", (int64_t)ntruncated);
	/* what the key list accounts for: "suspects" lists only keys that may be
	 * wrong; every other active key went through the script exactly once on
	 * a node that saw its whole window, so it has no drift and is within its
	 * (default) limit. With "all", an unlisted key was idle. */
	op_json_set_str(obs, "keys_scope", nscoped == 0 ? "all" : nscoped == ncounted ?
	    "suspects" : "mixed");
	op_json_set_int(obs, "active_keys", active_keys);
	json_object_object_add(obs, "keys_vouched", json_object_new_boolean(nscoped == 0 || vouch));
	return answered;
}

int
rl_observe(struct op_subject *s, json_object **out, char *err, size_t errlen)
{
	struct rl_priv *p = s->priv;
	json_object *obs = json_object_new_object();
	int redis_ok = rl_obs_redis(p, obs) == 0;
	int64_t at;

	/* Redis's clock is the one every node stamps requests with; without it,
	 * the last known offset from our wall clock is the best estimate */
	at = op_wall_ms() + (p->have_off ? p->redis_off_ms : 0) - RL_SETTLE_MS;
	op_json_set_int(obs, "at_ms", at);
	op_json_set_str(obs, "at_source", redis_ok ? "redis" : p->have_off ? "estimate" : "local");
	size_t answered = rl_obs_nodes(p, at, obs);
	if (!redis_ok)
		json_object_object_add(obs, "complete", json_object_new_boolean(0));
	if (!redis_ok && answered == 0) {
		json_object *r = op_json_obj(obs, "redis");
		snprintf(err, errlen, "no rate-limiter component answers: redis: %s; %zu node(s) "
		    "unreachable", op_json_str(r, "error", "?"), p->nnodes);
		json_object_put(obs);
		return -1;
	}
	*out = obs;
	return 0;
}
