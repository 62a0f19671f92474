/* rlnode_check: POST /check. The script runs on one pool connection with a
 * per-attempt deadline; see rln_check_attempt_failed for what happens when
 * Redis is slow. */
#include "rlnode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/keyvalq_struct.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

#define RLN_LOG_EVERY_MS 1000 /* at most one fail-open warning per second */

static const double rln_hist_bounds[RLN_HIST_NB] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

struct rln_check {
	struct rlnode *n;
	struct evhttp_request *req;
	char key[RLW_KEY_MAX + 1];
	int64_t cost;
	int64_t limit;
	int64_t window_ms;
	int attempts;
	unsigned tried;    /* pool connections already used */
	int conn;          /* pool connection of the attempt in flight */
	int64_t t0_us;
};

static int64_t
rln_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
rln_latency_add(struct rlnode *n, int64_t us)
{
	uint64_t i = n->lat.head++ & (RLN_LAT_RING - 1);
	double s = (double)us / 1e6;
	int b;

	n->lat.at_ms[i] = op_mono_ms();
	n->lat.us[i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	for (b = 0; b < RLN_HIST_NB && s > rln_hist_bounds[b]; b++)
		;
	n->m.hist[b]++;
	n->m.hist_sum += s;
	n->m.hist_count++;
}

static int
rln_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void
rln_latency_stats(struct rlnode *n, double *p99_ms, uint64_t *count)
{
	uint64_t have = n->lat.head < RLN_LAT_RING ? n->lat.head : RLN_LAT_RING, i, k = 0;
	int64_t since = op_mono_ms() - RLN_LAT_SPAN_MS;
	uint32_t *tmp = malloc((have ? have : 1) * sizeof(*tmp));

	*p99_ms = 0;
	*count = 0;
	if (tmp == NULL)
		return;
	for (i = 0; i < have; i++)
		if (n->lat.at_ms[i] >= since)
			tmp[k++] = n->lat.us[i];
	if (k > 0) {
		uint64_t rank = (k * 99 + 99) / 100; /* nearest-rank p99 */
		qsort(tmp, k, sizeof(*tmp), rln_u32_cmp);
		*p99_ms = tmp[rank - 1] / 1000.0;
	}
	*count = k;
	free(tmp);
}

static void
rln_check_reply(struct rln_check *ck, int allowed, int64_t count, int64_t retry_ms,
    int degraded)
{
	struct rlnode *n = ck->n;
	json_object *o = json_object_new_object();
	struct evkeyvalq *h = evhttp_request_get_output_headers(ck->req);
	int64_t remaining = ck->limit - count > 0 ? ck->limit - count : 0;
	char num[24];

	json_object_object_add(o, "allowed", json_object_new_boolean(allowed));
	op_json_set_str(o, "key", ck->key);
	op_json_set_int(o, "limit", ck->limit);
	op_json_set_int(o, "count", count);
	op_json_set_int(o, "remaining", remaining);
	op_json_set_int(o, "retry_after_ms", retry_ms);
	op_json_set_str(o, "node_id", n->node_id);
	json_object_object_add(o, "degraded", json_object_new_boolean(degraded));
	snprintf(num, sizeof(num), "%lld", (long long)ck->limit);
	evhttp_add_header(h, "X-RateLimit-Limit", num);
	snprintf(num, sizeof(num), "%lld", (long long)remaining);
	evhttp_add_header(h, "X-RateLimit-Remaining", num);
	if (!allowed) {
		snprintf(num, sizeof(num), "%lld", (long long)((retry_ms + 999) / 1000));
		evhttp_add_header(h, "Retry-After", num);
		n->m.blocked++;
	} else {
		n->m.allowed++;
	}
	rln_latency_add(n, rln_mono_us() - ck->t0_us);
	rln_http_reply_json(ck->req, allowed ? 200 : 429, o);
	free(ck);
}

/* Earliest wait until cost more fits in the local log (degraded mode). */
static int64_t
rln_local_retry(const struct rln_acct *a, int64_t lo, int64_t now, int64_t window,
    int64_t excess)
{
	int64_t freed = 0;
	size_t i;

	for (i = 0; i < a->na; i++) {
		if (a->allowed[i].ts_ms <= lo)
			continue;
		freed += a->allowed[i].cost;
		if (freed >= excess) {
			int64_t w = a->allowed[i].ts_ms + window - now;
			return w > 1 ? w : 1;
		}
	}
	return window;
}

/*
 * Every attempt failed: fail open. Refusing all traffic because the shared
 * store is slow would turn a Redis hiccup into an outage, so the node
 * enforces its cached limit against what it alone allowed, in estimated
 * Redis time. The cost is that N nodes may together allow up to N times
 * the limit meanwhile; /health says "degraded" so that is visible.
 */
static void
rln_check_fail_open(struct rln_check *ck, const char *why)
{
	struct rlnode *n = ck->n;
	struct rln_acct *a = rln_acct_for(n, ck->key);
	int64_t now = rln_now_est(n), lo = now - ck->window_ms, count, retry = 0;
	static int64_t last_log;
	int allowed;

	n->m.fail_open++;
	n->last_fail_open_mono = op_mono_ms();
	/* allowed here without Redis: Redis will count less than this node */
	rln_suspect_mark(n, ck->key, rln_now_est(n));
	if (n->last_fail_open_mono - last_log >= RLN_LOG_EVERY_MS) {
		last_log = n->last_fail_open_mono;
		log_warn("check %s failed open after %d attempt(s): %s (%llu so far)", ck->key,
		    ck->attempts, why, (unsigned long long)n->m.fail_open);
	}
	if (a->reset_at_ms > lo)
		lo = a->reset_at_ms;
	count = rln_acct_sum(a, lo, now);
	allowed = count + ck->cost <= ck->limit;
	if (allowed) {
		rln_acct_allow(a, now, ck->cost);
		count += ck->cost;
	} else {
		rln_acct_block(a, now);
		retry = ck->cost > ck->limit ? ck->window_ms :
		    rln_local_retry(a, lo, now, ck->window_ms, count + ck->cost - ck->limit);
	}
	rln_check_reply(ck, allowed, count, retry, 1);
}

static void rln_check_send(struct rln_check *ck);

static void
rln_check_done(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_check *ck = arg;
	struct rln_acct *a;
	int64_t v[6];
	size_t i;

	if (n->stopped) {
		n->m.errors++;
		rln_http_error(ck->req, 503, "node is shutting down");
		free(ck);
		return;
	}
	if (r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0) {
		/* Redis lost its script cache: nothing ran, so sending the same
		 * attempt again (EVAL this time) counts nothing twice */
		n->noscript++;
		n->check_sha[0] = '\0';
		rln_script_load(n);
		ck->tried &= ~(1u << ck->conn);
		ck->attempts--;
		rln_check_send(ck);
		return;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 6) {
		n->m.redis_errors++;
		/* the abandoned attempt may still run in Redis: the key may drift */
		rln_suspect_mark(n, ck->key, rln_now_est(n));
		log_debug("check %s attempt %d: %s", ck->key, ck->attempts,
		    err ? err : (r && r->str ? r->str : "unexpected reply"));
		/*
		 * Retry on a different connection. This retry is NOT idempotent:
		 * the abandoned attempt is still queued in Redis (we must not
		 * close its connection, or Redis would drop it) and will run
		 * when Redis recovers, so after a write stall Redis counts the
		 * request once per attempt while this node counts it once.
		 */
		if (ck->attempts <= n->retries && !n->stopping) {
			n->m.redis_retries++;
			rln_check_send(ck);
		} else {
			rln_check_fail_open(ck, err ? err : "redis error");
		}
		return;
	}
	for (i = 0; i < 6; i++)
		v[i] = rln_reply_int(r->element[i], 0);
	rln_note_redis_time(n, v[3]);
	ck->limit = v[2];
	a = rln_acct_for(n, ck->key);
	if (v[4] > 0)
		rln_acct_reset(a, v[4]);
	if (v[0])
		rln_acct_allow(a, v[3], ck->cost);
	else
		rln_acct_block(a, v[3]);
	rln_acct_prune(a, v[3], ck->window_ms);
	rln_check_reply(ck, v[0] != 0, v[1], v[5], 0);
}

static void
rln_check_send(struct rln_check *ck)
{
	struct rlnode *n = ck->n;
	char zkey[RLW_KEY_MAX + 8], rkey[RLW_KEY_MAX + 16], lim[24], win[24], cost[24];
	char member[RLW_NODE_ID_MAX + 64];
	const char *argv[10];
	int i;

	while ((i = rln_pool_pick(n, ck->tried)) >= 0) {
		ck->tried |= 1u << i;
		ck->attempts++;
		snprintf(zkey, sizeof(zkey), "rl:%s", ck->key);
		snprintf(rkey, sizeof(rkey), "rl:reset:%s", ck->key);
		snprintf(lim, sizeof(lim), "%lld", (long long)ck->limit);
		snprintf(win, sizeof(win), "%lld", (long long)ck->window_ms);
		snprintf(cost, sizeof(cost), "%lld", (long long)ck->cost);
		/* A fresh member per attempt: the boot time keeps members unique
		 * across restarts of a node with the same id. */
		snprintf(member, sizeof(member), "%s:%lld:%llu", n->node_id,
		    (long long)n->boot_ms, (unsigned long long)++n->seq);
		/* the 40-byte SHA instead of the script, once Redis has it */
		argv[0] = n->check_sha[0] ? "EVALSHA" : "EVAL";
		argv[1] = n->check_sha[0] ? n->check_sha : rln_check_lua;
		ck->conn = i;
		argv[2] = "3";
		argv[3] = zkey;
		argv[4] = "rl:keys";
		argv[5] = rkey;
		argv[6] = lim;
		argv[7] = win;
		argv[8] = member;
		argv[9] = cost;
		if (rln_call_check(n, &n->conns[i], n->redis_timeout_ms, rln_check_done, ck, 10,
			argv, ck->key) == 0)
			return;
		n->m.redis_errors++;
	}
	rln_check_fail_open(ck, ck->attempts ? "no other redis connection left" :
					       "no redis connection");
}

static int
rln_check_parse(struct rlnode *n, struct evhttp_request *req, json_object *body,
    struct rln_check *ck)
{
	json_object *k, *c;
	const char *key;
	size_t len;

	if (!json_object_object_get_ex(body, "key", &k)) {
		rln_http_error(req, 400, "missing field \"key\" (string)");
		return -1;
	}
	if (!json_object_is_type(k, json_type_string)) {
		rln_http_error(req, 400, "field \"key\" must be a string");
		return -1;
	}
	key = json_object_get_string(k);
	len = (size_t)json_object_get_string_len(k);
	if (!rln_key_valid(key, len) || strlen(key) != len) {
		rln_http_error(req, 400,
		    "field \"key\" must be 1..%d printable characters without spaces",
		    RLW_KEY_MAX);
		return -1;
	}
	memcpy(ck->key, key, len + 1);
	ck->cost = 1;
	if (json_object_object_get_ex(body, "cost", &c)) {
		if (!json_object_is_type(c, json_type_int)) {
			rln_http_error(req, 400, "field \"cost\" must be an integer 1..%d",
			    RLW_COST_MAX);
			return -1;
		}
		ck->cost = json_object_get_int64(c);
		if (ck->cost < 1 || ck->cost > RLW_COST_MAX) {
			rln_http_error(req, 400, "field \"cost\" must be an integer 1..%d, got %lld",
			    RLW_COST_MAX, (long long)ck->cost);
			return -1;
		}
	}
	return 0;
}

void
rln_check_handle(struct rlnode *n, struct evhttp_request *req, json_object *body)
{
	struct rln_check *ck = calloc(1, sizeof(*ck));
	struct rln_limit tmp;
	const struct rln_limit *l;

	if (ck == NULL) {
		n->m.errors++;
		rln_http_error(req, 500, "out of memory");
		return;
	}
	ck->n = n;
	ck->req = req;
	ck->t0_us = rln_mono_us();
	if (rln_check_parse(n, req, body, ck) < 0) {
		n->m.errors++;
		free(ck);
		return;
	}
	/* The cached limit, not a Redis read: keeps /check to one round trip.
	 * See rln_sub_message for how stale it can get. */
	l = rln_limit_for(n, ck->key, &tmp);
	ck->limit = l->limit;
	ck->window_ms = l->window_ms;
	rln_check_send(ck);
}
