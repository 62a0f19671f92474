/* rlnode_api: management endpoints. Reads go through MULTI/EXEC or EVAL_RO
 * so they never modify counters and keep working during CLIENT PAUSE WRITE. */
#include "rlnode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

#define RLN_NODES_MAX 1000  /* registry entries reported */

/* One pending management request: the HTTP request plus the keys it asked
 * Redis about, in the order it asked. */
struct rln_apireq {
	struct evhttp_request *req;
	char **keys;
	int64_t *scores;
	int nkeys;
	int64_t at_ms, now_ms;
	int has_at;
	int truncated;      /* /api/counters: more active keys than RLN_COUNTERS_MAX */
	int suspects;       /* /api/counters?scope=suspects */
	struct rlnode *node;
	int64_t limit, window_ms;
	char key[RLW_KEY_MAX + 1];
};

static struct rln_apireq *
rln_apireq_new(struct evhttp_request *req)
{
	struct rln_apireq *a = calloc(1, sizeof(*a));

	if (a == NULL)
		fatal("out of memory");
	a->req = req;
	return a;
}

static void
rln_apireq_free(struct rln_apireq *a)
{
	int i;

	for (i = 0; i < a->nkeys; i++)
		free(a->keys[i]);
	free(a->keys);
	free(a->scores);
	free(a);
}

static void
rln_apireq_add_key(struct rln_apireq *a, const char *k, int64_t score)
{
	a->keys = realloc(a->keys, ((size_t)a->nkeys + 1) * sizeof(*a->keys));
	a->scores = realloc(a->scores, ((size_t)a->nkeys + 1) * sizeof(*a->scores));
	if (a->keys == NULL || a->scores == NULL || (a->keys[a->nkeys] = strdup(k)) == NULL)
		fatal("out of memory");
	a->scores[a->nkeys++] = score;
}

/* Fails the request for a Redis problem; returns 1 if it did. */
static int
rln_api_redis_failed(struct rln_apireq *a, redisReply *r, const char *err, int want_array)
{
	const char *why = err;

	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		why = r->str;
	else if (r != NULL && want_array && r->type != REDIS_REPLY_ARRAY)
		why = "unexpected reply type";
	else if (r != NULL)
		return 0;
	rln_http_error(a->req, 503, "redis: %s", why ? why : "no reply");
	rln_apireq_free(a);
	return 1;
}

static int
rln_key_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* ---- /health, /metrics ---- */

void
rln_api_health(struct rlnode *n, struct evhttp_request *req)
{
	json_object *o = json_object_new_object();
	double p99;
	uint64_t cnt;
	char p99s[32];

	rln_latency_stats(n, &p99, &cnt);
	op_json_set_str(o, "status", rln_degraded(n) ? "degraded" : "ok");
	op_json_set_str(o, "node_id", n->node_id);
	op_json_set_int(o, "pid", getpid());
	op_json_set_str(o, "redis", rln_redis_up(n) ? "up" : "down");
	op_json_set_int(o, "uptime_ms", op_mono_ms() - n->started_mono_ms);
	snprintf(p99s, sizeof(p99s), "%.3f", p99);
	json_object_object_add(o, "check_p99_ms", json_object_new_double_s(p99, p99s));
	op_json_set_int(o, "checks_recent", (int64_t)cnt);
	json_object_object_add(o, "limits_loaded", json_object_new_boolean(n->limits_loaded));
	op_json_set_int(o, "fail_open_total", (int64_t)n->m.fail_open);
	op_json_set_int(o, "resets_total", (int64_t)n->m.resets);
	op_json_set_int(o, "resyncs_total", (int64_t)n->m.resyncs);
	/* the SHA /check sends with EVALSHA ("" until Redis has the script) */
	op_json_set_str(o, "check_script_sha", n->check_sha);
	op_json_set_int(o, "noscript_total", (int64_t)n->noscript);
	rln_http_reply_json(req, 200, o);
}

void
rln_api_metrics(struct rlnode *n, struct evhttp_request *req)
{
	static const char *const les[RLN_HIST_NB] = {
		"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"};
	struct evbuffer *b = evbuffer_new();
	const char *id = n->node_id;
	uint64_t cum = 0;
	int i;

	if (b == NULL) {
		rln_http_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(b,
	    "# HELP rlnode_requests_total /check requests by result.\n"
	    "# TYPE rlnode_requests_total counter\n"
	    "rlnode_requests_total{node_id=\"%s\",result=\"allowed\"} %llu\n"
	    "rlnode_requests_total{node_id=\"%s\",result=\"blocked\"} %llu\n"
	    "rlnode_requests_total{node_id=\"%s\",result=\"error\"} %llu\n",
	    id, (unsigned long long)n->m.allowed, id, (unsigned long long)n->m.blocked, id,
	    (unsigned long long)n->m.errors);
	evbuffer_add_printf(b, "# HELP rlnode_check_duration_seconds /check latency.\n"
			       "# TYPE rlnode_check_duration_seconds histogram\n");
	for (i = 0; i < RLN_HIST_NB; i++) {
		cum += n->m.hist[i];
		evbuffer_add_printf(b,
		    "rlnode_check_duration_seconds_bucket{node_id=\"%s\",le=\"%s\"} %llu\n", id,
		    les[i], (unsigned long long)cum);
	}
	evbuffer_add_printf(b,
	    "rlnode_check_duration_seconds_bucket{node_id=\"%s\",le=\"+Inf\"} %llu\n"
	    "rlnode_check_duration_seconds_sum{node_id=\"%s\"} %.6f\n"
	    "rlnode_check_duration_seconds_count{node_id=\"%s\"} %llu\n",
	    id, (unsigned long long)n->m.hist_count, id, n->m.hist_sum, id,
	    (unsigned long long)n->m.hist_count);
	evbuffer_add_printf(b,
	    "# HELP rlnode_redis_errors_total Failed Redis attempts (timeout, error, lost).\n"
	    "# TYPE rlnode_redis_errors_total counter\n"
	    "rlnode_redis_errors_total{node_id=\"%s\"} %llu\n"
	    "# HELP rlnode_redis_retries_total /check scripts re-sent after a failed attempt.\n"
	    "# TYPE rlnode_redis_retries_total counter\n"
	    "rlnode_redis_retries_total{node_id=\"%s\"} %llu\n"
	    "# HELP rlnode_fail_open_total /check answered locally because Redis failed.\n"
	    "# TYPE rlnode_fail_open_total counter\n"
	    "rlnode_fail_open_total{node_id=\"%s\"} %llu\n"
	    "# HELP rlnode_resets_total Counter resets this node sent to Redis"
	    " (POST /api/counters/{key}/reset).\n"
	    "# TYPE rlnode_resets_total counter\n"
	    "rlnode_resets_total{node_id=\"%s\"} %llu\n"
	    "# HELP rlnode_resyncs_total Limit cache reloads this node sent to Redis"
	    " (POST /api/resync).\n"
	    "# TYPE rlnode_resyncs_total counter\n"
	    "rlnode_resyncs_total{node_id=\"%s\"} %llu\n"
	    "# HELP rlnode_up 1 while the node runs.\n"
	    "# TYPE rlnode_up gauge\n"
	    "rlnode_up{node_id=\"%s\"} 1\n"
	    "# HELP rlnode_degraded 1 while Redis is down or after a recent fail-open.\n"
	    "# TYPE rlnode_degraded gauge\n"
	    "rlnode_degraded{node_id=\"%s\"} %d\n"
	    "# HELP rlnode_limit_cache_entries Explicit limits in this node's cache.\n"
	    "# TYPE rlnode_limit_cache_entries gauge\n"
	    "rlnode_limit_cache_entries{node_id=\"%s\"} %zu\n",
	    id, (unsigned long long)n->m.redis_errors, id,
	    (unsigned long long)n->m.redis_retries, id, (unsigned long long)n->m.fail_open, id,
	    (unsigned long long)n->m.resets, id, (unsigned long long)n->m.resyncs, id, id,
	    rln_degraded(n), id, n->limits.n);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* ---- /api/nodes ---- */

static const redisReply *
rln_hash_field(const redisReply *h, const char *field)
{
	size_t i;

	if (h == NULL || h->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (i = 0; i + 1 < h->elements; i += 2)
		if (h->element[i]->str && strcmp(h->element[i]->str, field) == 0)
			return h->element[i + 1];
	return NULL;
}

static json_object *
rln_node_json(const char *id, const redisReply *hm, const redisReply *seen,
    const redisReply *addrs, int64_t now)
{
	json_object *o = json_object_new_object();
	int up = hm && hm->type == REDIS_REPLY_ARRAY && hm->elements == 4 &&
	    hm->element[3]->type == REDIS_REPLY_STRING;
	const redisReply *addr = up ? hm->element[0] : rln_hash_field(addrs, id);
	int64_t hb = up ? rln_reply_int(hm->element[3], 0) : rln_reply_int(rln_hash_field(seen, id), 0);

	op_json_set_str(o, "id", id);
	op_json_set_str(o, "address", addr && addr->str ? addr->str : "");
	op_json_set_int(o, "pid", up ? rln_reply_int(hm->element[1], 0) : 0);
	op_json_set_str(o, "state", up ? "up" : "down");
	op_json_set_int(o, "started_ms", up ? rln_reply_int(hm->element[2], 0) : 0);
	op_json_set_int(o, "heartbeat_ms", hb);
	if (hb > 0)
		op_json_set_int(o, "age_ms", now - hb);
	else
		json_object_object_add(o, "age_ms", NULL); /* never seen */
	return o;
}

static void
rln_nodes_details(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	json_object *o, *arr;
	int64_t now;
	int i;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	if ((int)r->elements != a->nkeys + 3 || r->element[0]->type != REDIS_REPLY_ARRAY ||
	    r->element[0]->elements != 2) {
		rln_http_error(a->req, 503, "redis: unexpected reply shape");
		rln_apireq_free(a);
		return;
	}
	now = rln_reply_int(r->element[0]->element[0], 0) * 1000 +
	    rln_reply_int(r->element[0]->element[1], 0) / 1000;
	o = json_object_new_object();
	arr = json_object_new_array();
	for (i = 0; i < a->nkeys; i++)
		json_object_array_add(arr, rln_node_json(a->keys[i], r->element[3 + i],
		    r->element[1], r->element[2], now));
	json_object_object_add(o, "nodes", arr);
	op_json_set_int(o, "now_ms", now);
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

static void
rln_nodes_members(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	struct rln_cmd *cmds;
	char **names;
	int i, nc;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	for (i = 0; i < (int)r->elements && i < RLN_NODES_MAX; i++)
		if (r->element[i]->str)
			rln_apireq_add_key(a, r->element[i]->str, 0);
	if (a->nkeys > 1)
		qsort(a->keys, (size_t)a->nkeys, sizeof(char *), rln_key_cmp);
	nc = a->nkeys + 3;
	cmds = calloc((size_t)nc, sizeof(*cmds));
	names = calloc((size_t)a->nkeys + 1, sizeof(*names));
	if (cmds == NULL || names == NULL)
		fatal("out of memory");
	cmds[0] = (struct rln_cmd){1, {"TIME"}};
	cmds[1] = (struct rln_cmd){2, {"HGETALL", "rl:nodes:seen"}};
	cmds[2] = (struct rln_cmd){2, {"HGETALL", "rl:nodes:addr"}};
	for (i = 0; i < a->nkeys; i++) {
		if (asprintf(&names[i], "rl:node:%s", a->keys[i]) < 0)
			fatal("out of memory");
		cmds[3 + i] = (struct rln_cmd){6, {"HMGET", names[i], "address", "pid",
		    "started_ms", "heartbeat_ms"}};
	}
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_nodes_details, a, cmds, nc) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
	for (i = 0; i < a->nkeys; i++)
		free(names[i]);
	free(names);
	free(cmds);
}

void
rln_api_nodes(struct rlnode *n, struct evhttp_request *req)
{
	struct rln_apireq *a = rln_apireq_new(req);
	const char *argv[] = {"SMEMBERS", "rl:nodes"};

	if (rln_call_mgmt(n, RLN_MGMT_TIMEOUT_MS, rln_nodes_members, a, 2, argv) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
}

/* ---- /api/counters ---- */

static void
rln_counter_json(struct rlnode *n, json_object *arr, struct rln_apireq *a, int i,
    const redisReply *v)
{
	const char *key = a->keys[i];
	int64_t limit, window, reset_at, rcount, lo, allowed = 0, recent = 0, blocked = 0;
	struct rln_acct *acct = rln_map_get(&n->acct, key);
	struct rln_limit tmp;
	json_object *o;

	if (v->type != REDIS_REPLY_ARRAY || v->elements != 4)
		return;
	limit = rln_reply_int(v->element[0], n->default_limit);
	window = rln_reply_int(v->element[1], n->window_ms);
	reset_at = rln_reply_int(v->element[2], 0);
	rcount = rln_reply_int(v->element[3], 0);
	if (acct != NULL) {
		/* Learning a reset another node did is local state, not Redis. */
		rln_acct_reset(acct, reset_at);
		if (acct->reset_at_ms > reset_at)
			reset_at = acct->reset_at_ms;
		lo = a->at_ms - window > reset_at ? a->at_ms - window : reset_at;
		allowed = rln_acct_sum(acct, lo, a->at_ms);
		recent = rln_acct_sum(acct, a->now_ms - RLN_RECENT_MS, a->now_ms);
		blocked = rln_acct_blocked_in(acct, a->now_ms - RLN_RECENT_MS, a->now_ms);
	}
	/* in the full list, a key not active in the window says nothing; a
	 * suspect is listed whatever its figures, so every node lists the same */
	if (!a->suspects && rcount == 0 && allowed == 0 && recent == 0 && blocked == 0 &&
	    a->scores[i] <= a->at_ms - window)
		return;
	o = json_object_new_object();
	op_json_set_str(o, "key", key);
	op_json_set_int(o, "limit", limit);
	op_json_set_int(o, "cached_limit", rln_limit_for(n, key, &tmp)->limit);
	op_json_set_int(o, "window_ms", window);
	op_json_set_int(o, "redis_count", rcount);
	op_json_set_int(o, "node_allowed", allowed);
	op_json_set_int(o, "node_allowed_recent", recent);
	op_json_set_int(o, "node_blocked_recent", blocked);
	op_json_set_int(o, "reset_at_ms", reset_at);
	op_json_set_int(o, "last_seen_ms", a->scores[i]);
	json_object_array_add(arr, o);
}

static int
rln_counter_cmp(const void *x, const void *y)
{
	json_object *a = *(json_object *const *)x, *b = *(json_object *const *)y;

	return strcmp(op_json_str(a, "key", ""), op_json_str(b, "key", ""));
}

static void
rln_counters_reply(struct rlnode *n, struct rln_apireq *a, redisReply *r)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array();
	int i;

	op_json_set_str(o, "node_id", n->node_id);
	op_json_set_int(o, "now_ms", a->now_ms);
	op_json_set_int(o, "at_ms", a->at_ms);
	for (i = 0; r != NULL && i < a->nkeys; i++)
		rln_counter_json(n, arr, a, i, r->element[i]);
	json_object_array_sort(arr, rln_counter_cmp);
	json_object_object_add(o, "counters", arr);
	/* the list is every key active in its window unless this says otherwise:
	 * an observer must not read a key left out as "allowed none" */
	json_object_object_add(o, "truncated", json_object_new_boolean(a->truncated));
	op_json_set_int(o, "keys_max", RLN_COUNTERS_MAX);
	/* "suspects": only keys that may drift are listed; every other key this
	 * node allowed went through the script exactly once (rlnode_suspect.c) */
	op_json_set_str(o, "scope", a->suspects ? "suspects" : "all");
	op_json_set_int(o, "active_keys", (int64_t)n->acct.n);
	op_json_set_int(o, "default_limit", n->default_limit);
	op_json_set_int(o, "default_window_ms", n->window_ms);
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

static void
rln_counters_values(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	if ((int)r->elements != a->nkeys) {
		rln_http_error(a->req, 503, "redis: unexpected reply shape");
		rln_apireq_free(a);
		return;
	}
	rln_counters_reply(n, a, r);
}

static void *
rln_marker(void)
{
	static char mark;

	return &mark;
}

struct rln_collect {
	struct rln_apireq *a;
	struct rln_map *seen;
};

static int
rln_collect_local(const char *key, void *val, void *arg)
{
	struct rln_collect *c = arg;

	if (rln_map_get(c->seen, key) != NULL)
		return 0;
	if (c->a->nkeys >= RLN_COUNTERS_MAX) {
		c->a->truncated = 1; /* a key this node accounts for goes unlisted */
		return 0;
	}
	rln_map_get_or_add(c->seen, key, rln_marker);
	rln_apireq_add_key(c->a, key, 0);
	return 0;
}

static void
rln_counters_send(struct rlnode *n, struct rln_apireq *a)
{
	struct rln_cmd *cmds = calloc((size_t)a->nkeys + 1, sizeof(*cmds));
	char (*names)[3][RLW_KEY_MAX + 16] = calloc((size_t)a->nkeys + 1, sizeof(*names));
	char at[24], dl[24], dw[24];
	int i;

	if (cmds == NULL || names == NULL)
		fatal("out of memory");
	snprintf(at, sizeof(at), "%lld", (long long)a->at_ms);
	snprintf(dl, sizeof(dl), "%lld", (long long)n->default_limit);
	snprintf(dw, sizeof(dw), "%lld", (long long)n->window_ms);
	for (i = 0; i < a->nkeys; i++) {
		snprintf(names[i][0], sizeof(names[i][0]), "rl:%s", a->keys[i]);
		snprintf(names[i][1], sizeof(names[i][1]), "rl:limit:%s", a->keys[i]);
		snprintf(names[i][2], sizeof(names[i][2]), "rl:reset:%s", a->keys[i]);
		cmds[i] = (struct rln_cmd){9, {"EVAL_RO", rln_counter_lua, "3", names[i][0],
		    names[i][1], names[i][2], at, dl, dw}};
	}
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_counters_values, a, cmds, a->nkeys) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
	free(cmds);
	free(names);
}

static int
rln_window_max(const char *key, void *val, void *arg)
{
	const struct rln_limit *l = val;
	int64_t *w = arg;

	if (l->window_ms > *w)
		*w = l->window_ms;
	return 0;
}

/* The longest window of any key: the default or an explicit one. */
static int64_t
rln_window_longest(struct rlnode *n)
{
	int64_t w = n->window_ms;

	rln_map_each(&n->limits, rln_window_max, &w, NULL);
	return w;
}

static void
rln_counters_keys(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	struct rln_collect c;
	struct rln_map seen;
	redisReply *t, *z;
	size_t i;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	t = r->elements == 2 ? r->element[0] : NULL;
	z = r->elements == 2 ? r->element[1] : NULL;
	if (t == NULL || t->type != REDIS_REPLY_ARRAY || t->elements != 2 ||
	    z->type != REDIS_REPLY_ARRAY) {
		rln_http_error(a->req, 503, "redis: unexpected reply shape");
		rln_apireq_free(a);
		return;
	}
	a->now_ms = rln_reply_int(t->element[0], 0) * 1000 + rln_reply_int(t->element[1], 0) / 1000;
	rln_note_redis_time(n, a->now_ms);
	if (!a->has_at)
		a->at_ms = a->now_ms;
	rln_map_init(&seen);
	for (i = 0; i + 1 < z->elements && a->nkeys < RLN_COUNTERS_MAX; i += 2) {
		const char *k = z->element[i]->str;
		if (k == NULL || rln_map_get(&seen, k) != NULL)
			continue;
		rln_map_get_or_add(&seen, k, rln_marker);
		rln_apireq_add_key(a, k, (int64_t)strtoll(z->element[i + 1]->str ?
		    z->element[i + 1]->str : "0", NULL, 10));
	}
	/* rl:keys lists the most recent first: when the cap cut it, the first key
	 * left out was seen no later than the last one listed; if that is within
	 * the longest window, a key active in its window may be missing */
	if (z->elements / 2 >= RLN_COUNTERS_MAX && a->nkeys > 0 &&
	    a->scores[a->nkeys - 1] > a->at_ms - rln_window_longest(n) - RLN_PRUNE_SLACK_MS)
		a->truncated = 1;
	c.a = a;
	c.seen = &seen;
	rln_map_each(&n->acct, rln_collect_local, &c, NULL);
	rln_map_clear(&seen, NULL);
	if (a->nkeys == 0) {
		rln_counters_reply(n, a, NULL);
		return;
	}
	rln_counters_send(n, a);
}

static int
rln_collect_suspect(const char *key, void *val, void *arg)
{
	struct rln_collect *c = arg;
	const struct rln_suspect *sp = val;

	if (rln_map_get(c->seen, key) != NULL ||
	    sp->at_ms <= c->a->at_ms - rln_window_longest(c->a->node) - RLN_SUSPECT_GRACE_MS)
		return 0;
	if (c->a->nkeys >= RLN_COUNTERS_MAX) {
		c->a->truncated = 1;
		return 0;
	}
	rln_map_get_or_add(c->seen, key, rln_marker);
	rln_apireq_add_key(c->a, key, sp->at_ms);
	return 0;
}

/* scope=suspects: the shared suspects, every key with an explicit limit (a
 * stale cached limit is how a key goes over it or ghost-allows) and this
 * node's own suspects Redis may not have yet. */
static void
rln_counters_suspects(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	struct rln_collect c;
	struct rln_map seen;
	redisReply *t, *z, *l;
	size_t i;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	t = r->elements == 3 ? r->element[0] : NULL;
	z = r->elements == 3 ? r->element[1] : NULL;
	l = r->elements == 3 ? r->element[2] : NULL;
	if (t == NULL || t->type != REDIS_REPLY_ARRAY || t->elements != 2 ||
	    z->type != REDIS_REPLY_ARRAY || l->type != REDIS_REPLY_ARRAY) {
		rln_http_error(a->req, 503, "redis: unexpected reply shape");
		rln_apireq_free(a);
		return;
	}
	a->now_ms = rln_reply_int(t->element[0], 0) * 1000 + rln_reply_int(t->element[1], 0) / 1000;
	rln_note_redis_time(n, a->now_ms);
	if (!a->has_at)
		a->at_ms = a->now_ms;
	rln_map_init(&seen);
	for (i = 0; i + 1 < z->elements; i += 2) {
		const char *k = z->element[i]->str;
		if (k == NULL || rln_map_get(&seen, k) != NULL)
			continue;
		if (a->nkeys >= RLN_COUNTERS_MAX) {
			a->truncated = 1;
			break;
		}
		rln_map_get_or_add(&seen, k, rln_marker);
		rln_apireq_add_key(a, k, (int64_t)strtoll(z->element[i + 1]->str ?
		    z->element[i + 1]->str : "0", NULL, 10));
	}
	for (i = 0; i < l->elements; i++) {
		const char *k = l->element[i]->str;
		if (k == NULL || rln_map_get(&seen, k) != NULL)
			continue;
		if (a->nkeys >= RLN_COUNTERS_MAX) {
			a->truncated = 1;
			break;
		}
		rln_map_get_or_add(&seen, k, rln_marker);
		rln_apireq_add_key(a, k, 0);
	}
	c.a = a;
	c.seen = &seen;
	rln_map_each(&n->suspects, rln_collect_suspect, &c, NULL);
	rln_map_clear(&seen, NULL);
	if (a->nkeys == 0) {
		rln_counters_reply(n, a, NULL);
		return;
	}
	rln_counters_send(n, a);
}

void
rln_api_counters(struct rlnode *n, struct evhttp_request *req, const char *query)
{
	struct rln_apireq *a;
	struct evkeyvalq q;
	const char *at;
	char zmax[24];
	struct rln_cmd cmds[2] = {
		{1, {"TIME"}},
		{5, {"ZREVRANGE", "rl:keys", "0", zmax, "WITHSCORES"}},
	};

	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
		rln_http_error(req, 400, "malformed query string");
		return;
	}
	a = rln_apireq_new(req);
	if ((at = evhttp_find_header(&q, "at")) != NULL) {
		if (op_parse_int(at, 1, INT64_MAX / 2, &a->at_ms) < 0) {
			evhttp_clear_headers(&q);
			rln_http_error(req, 400,
			    "query parameter \"at\" must be a positive integer (Redis time, ms)");
			rln_apireq_free(a);
			return;
		}
		a->has_at = 1;
	}
	const char *scope = evhttp_find_header(&q, "scope");
	if (scope != NULL && strcmp(scope, "suspects") != 0 && strcmp(scope, "all") != 0) {
		evhttp_clear_headers(&q);
		rln_http_error(req, 400, "query parameter \"scope\" must be \"all\" or \"suspects\"");
		rln_apireq_free(a);
		return;
	}
	a->suspects = scope != NULL && strcmp(scope, "suspects") == 0;
	a->node = n;
	evhttp_clear_headers(&q);
	if (a->suspects) {
		char lo[32];
		int64_t at_ms = a->has_at ? a->at_ms : rln_now_est(n);
		struct rln_cmd sc[3] = {
			{1, {"TIME"}},
			{5, {"ZRANGEBYSCORE", RLN_SUSPECT_KEY, lo, "+inf", "WITHSCORES"}},
			{2, {"SMEMBERS", "rl:limits"}},
		};
		snprintf(lo, sizeof(lo), "(%lld",
		    (long long)(at_ms - rln_window_longest(n) - RLN_SUSPECT_GRACE_MS));
		if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_counters_suspects, a, sc, 3) < 0)
			rln_api_redis_failed(a, NULL, "not connected", 0);
		return;
	}
	snprintf(zmax, sizeof(zmax), "%d", RLN_COUNTERS_MAX - 1);
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_counters_keys, a, cmds, 2) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
}

/* ---- /api/limits ---- */

static void
rln_limit_json(struct rlnode *n, json_object *arr, const char *key, int64_t limit,
    int64_t window, int explicit)
{
	json_object *o = json_object_new_object();
	const struct rln_limit *c = rln_map_get(&n->limits, key);

	op_json_set_str(o, "key", key);
	op_json_set_int(o, "limit", limit);
	op_json_set_int(o, "window_ms", window);
	op_json_set_int(o, "cached_limit", c ? c->limit : n->default_limit);
	op_json_set_int(o, "cached_window_ms", c ? c->window_ms : n->window_ms);
	json_object_object_add(o, "explicit", json_object_new_boolean(explicit));
	json_object_array_add(arr, o);
}

struct rln_limits_walk {
	struct rlnode *n;
	struct rln_map *seen;
	json_object *arr;
};

static int
rln_limits_cached_only(const char *key, void *val, void *arg)
{
	struct rln_limits_walk *w = arg;

	/* In the cache but gone from Redis: the cache is stale. */
	if (rln_map_get(w->seen, key) == NULL)
		rln_limit_json(w->n, w->arr, key, w->n->default_limit, w->n->window_ms, 0);
	return 0;
}

static void
rln_limits_values(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	json_object *o, *arr;
	struct rln_limits_walk w;
	struct rln_map seen;
	int i;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	o = json_object_new_object();
	arr = json_object_new_array();
	rln_map_init(&seen);
	for (i = 0; i < a->nkeys && i < (int)r->elements; i++) {
		redisReply *h = r->element[i];
		int64_t l, win;
		if (h->type != REDIS_REPLY_ARRAY || h->elements != 2 ||
		    (l = rln_reply_int(h->element[0], -1)) < 0)
			continue;
		win = rln_reply_int(h->element[1], n->window_ms);
		rln_map_get_or_add(&seen, a->keys[i], rln_marker);
		rln_limit_json(n, arr, a->keys[i], l, win, 1);
	}
	w.n = n;
	w.seen = &seen;
	w.arr = arr;
	rln_map_each(&n->limits, rln_limits_cached_only, &w, NULL);
	rln_map_clear(&seen, NULL);
	op_json_set_int(o, "default_limit", n->default_limit);
	op_json_set_int(o, "default_window_ms", n->window_ms);
	json_object_object_add(o, "limits", arr);
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

static void
rln_limits_members(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	struct rln_cmd *cmds;
	char **names;
	int i;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	for (i = 0; i < (int)r->elements; i++)
		if (r->element[i]->str)
			rln_apireq_add_key(a, r->element[i]->str, 0);
	if (a->nkeys > 1)
		qsort(a->keys, (size_t)a->nkeys, sizeof(char *), rln_key_cmp);
	cmds = calloc((size_t)a->nkeys + 1, sizeof(*cmds));
	names = calloc((size_t)a->nkeys + 1, sizeof(*names));
	if (cmds == NULL || names == NULL)
		fatal("out of memory");
	for (i = 0; i < a->nkeys; i++) {
		if (asprintf(&names[i], "rl:limit:%s", a->keys[i]) < 0)
			fatal("out of memory");
		cmds[i] = (struct rln_cmd){4, {"HMGET", names[i], "limit", "window_ms"}};
	}
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_limits_values, a, cmds, a->nkeys) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
	for (i = 0; i < a->nkeys; i++)
		free(names[i]);
	free(names);
	free(cmds);
}

void
rln_api_limits_get(struct rlnode *n, struct evhttp_request *req)
{
	struct rln_apireq *a = rln_apireq_new(req);
	const char *argv[] = {"SMEMBERS", "rl:limits"};

	if (rln_call_mgmt(n, RLN_MGMT_TIMEOUT_MS, rln_limits_members, a, 2, argv) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
}

static void *
rln_limit_alloc(void)
{
	return calloc(1, sizeof(struct rln_limit));
}

static void
rln_limit_put_done(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	struct rln_limit *l;
	json_object *o;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	l = rln_map_get_or_add(&n->limits, a->key, rln_limit_alloc);
	l->limit = a->limit;
	l->window_ms = a->window_ms;
	o = json_object_new_object();
	op_json_set_str(o, "key", a->key);
	op_json_set_int(o, "limit", a->limit);
	op_json_set_int(o, "window_ms", a->window_ms);
	json_object_object_add(o, "updated", json_object_new_boolean(1));
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

static int
rln_limit_parse(struct rlnode *n, struct evhttp_request *req, json_object *body,
    struct rln_apireq *a)
{
	json_object *v;

	if (!json_object_object_get_ex(body, "limit", &v)) {
		rln_http_error(req, 400, "missing field \"limit\" (integer >= 0)");
		return -1;
	}
	if (!json_object_is_type(v, json_type_int) || (a->limit = json_object_get_int64(v)) < 0 ||
	    a->limit > RLW_LIMIT_MAX) {
		rln_http_error(req, 400, "field \"limit\" must be an integer 0..%lld",
		    (long long)RLW_LIMIT_MAX);
		return -1;
	}
	a->window_ms = n->window_ms; /* absent or null: the node default */
	if (json_object_object_get_ex(body, "window_ms", &v) && v != NULL) {
		if (!json_object_is_type(v, json_type_int) ||
		    (a->window_ms = json_object_get_int64(v)) < 1 ||
		    a->window_ms > RLN_WINDOW_MAX_MS) {
			rln_http_error(req, 400, "field \"window_ms\" must be an integer 1..%lld",
			    (long long)RLN_WINDOW_MAX_MS);
			return -1;
		}
	}
	return 0;
}

void
rln_api_limit_put(struct rlnode *n, struct evhttp_request *req, const char *key,
    json_object *body)
{
	struct rln_apireq *a = rln_apireq_new(req);
	char name[RLW_KEY_MAX + 16], lim[24], win[24];
	struct rln_cmd cmds[3] = {
		{6, {"HSET", name, "limit", lim, "window_ms", win}},
		{3, {"SADD", "rl:limits", key}},
		{3, {"PUBLISH", "rl:limits:changed", key}},
	};

	if (rln_limit_parse(n, req, body, a) < 0) {
		rln_apireq_free(a);
		return;
	}
	op_strlcpy(a->key, key, sizeof(a->key));
	snprintf(name, sizeof(name), "rl:limit:%s", key);
	snprintf(lim, sizeof(lim), "%lld", (long long)a->limit);
	snprintf(win, sizeof(win), "%lld", (long long)a->window_ms);
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_limit_put_done, a, cmds, 3) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
}

static void
rln_limit_delete_done(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	json_object *o;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	free(rln_map_del(&n->limits, a->key));
	o = json_object_new_object();
	op_json_set_str(o, "key", a->key);
	json_object_object_add(o, "deleted", json_object_new_boolean(
	    r->elements == 3 && rln_reply_int(r->element[0], 0) > 0));
	op_json_set_int(o, "limit", n->default_limit);
	op_json_set_int(o, "window_ms", n->window_ms);
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

void
rln_api_limit_delete(struct rlnode *n, struct evhttp_request *req, const char *key)
{
	struct rln_apireq *a = rln_apireq_new(req);
	char name[RLW_KEY_MAX + 16];
	struct rln_cmd cmds[3] = {
		{2, {"DEL", name}},
		{3, {"SREM", "rl:limits", key}},
		{3, {"PUBLISH", "rl:limits:changed", key}},
	};

	op_strlcpy(a->key, key, sizeof(a->key));
	snprintf(name, sizeof(name), "rl:limit:%s", key);
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_limit_delete_done, a, cmds, 3) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
}

/* ---- reset, resync ---- */

static void
rln_reset_done(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	int64_t deleted, at;
	json_object *o;

	if (rln_api_redis_failed(a, r, err, 1))
		return;
	if (r->elements != 2) {
		rln_http_error(a->req, 503, "redis: unexpected reply shape");
		rln_apireq_free(a);
		return;
	}
	deleted = rln_reply_int(r->element[0], 0);
	at = rln_reply_int(r->element[1], 0);
	rln_note_redis_time(n, at);
	rln_acct_reset(rln_acct_for(n, a->key), at);
	o = json_object_new_object();
	op_json_set_str(o, "key", a->key);
	json_object_object_add(o, "reset", json_object_new_boolean(1));
	op_json_set_int(o, "deleted", deleted);
	op_json_set_int(o, "reset_at_ms", at);
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

void
rln_api_reset(struct rlnode *n, struct evhttp_request *req, const char *key)
{
	struct rln_apireq *a = rln_apireq_new(req);
	char zkey[RLW_KEY_MAX + 8], rkey[RLW_KEY_MAX + 16], win[24];
	struct rln_limit tmp;
	const char *argv[6] = {"EVAL", rln_reset_lua, "2", zkey, rkey, win};

	op_strlcpy(a->key, key, sizeof(a->key));
	snprintf(zkey, sizeof(zkey), "rl:%s", key);
	snprintf(rkey, sizeof(rkey), "rl:reset:%s", key);
	snprintf(win, sizeof(win), "%lld", (long long)rln_limit_for(n, key, &tmp)->window_ms);
	/* Counted once the script is on its way to Redis, not when it answers:
	 * a reset whose reply timed out may still have run, and the count must
	 * show it, or a retried reset would look like a single one. */
	if (rln_call_mgmt(n, RLN_MGMT_TIMEOUT_MS, rln_reset_done, a, 6, argv) < 0)
		rln_api_redis_failed(a, NULL, "not connected", 0);
	else
		n->m.resets++;
}

static void
rln_resync_done(struct rlnode *n, int count, const char *err, void *arg)
{
	struct rln_apireq *a = arg;
	json_object *o;

	if (count < 0) {
		rln_http_error(a->req, 503, "resync failed: %s", err ? err : "redis error");
		rln_apireq_free(a);
		return;
	}
	o = json_object_new_object();
	op_json_set_str(o, "node_id", n->node_id);
	op_json_set_int(o, "resynced", count);
	rln_http_reply_json(a->req, 200, o);
	rln_apireq_free(a);
}

void
rln_api_resync(struct rlnode *n, struct evhttp_request *req)
{
	struct rln_apireq *a = rln_apireq_new(req);

	/* Counted when sent, like resets (see rln_api_reset). rln_resync_done
	 * must not count: it also runs for a reload that was never sent. */
	if (rln_limits_reload(n, rln_resync_done, a) < 0)
		rln_resync_done(n, -1, "redis not connected", a);
	else
		n->m.resyncs++;
}
