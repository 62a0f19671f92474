/* rlnode_redis: the Redis side of a node. A pool of RLN_POOL_SIZE connections
 * carries /check scripts, one more carries management traffic, and a
 * subscriber connection listens for limit changes. All of it is hiredis
 * async on the node's event loop, so nothing here ever blocks a request. */
#include "rlnode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/adapters/libevent.h>

#include "common/log.h"
#include "common/util.h"

#define RLN_CHANNEL "rl:limits:changed"

#define RLN_STR(x) #x
#define RLN_XSTR(x) RLN_STR(x)

/* Sliding-window check. Time comes from Redis so that nodes with skewed
 * clocks still share one window. The rl:keys index lets readers enumerate
 * active keys without SCAN; it is trimmed here, on the write path, so that
 * readers never have to mutate anything.
 *
 * Entries are pruned only RLN_PRUNE_SLACK_MS after they leave the window, so
 * the set holds more than the window: the decision therefore counts with
 * ZCOUNT over (now - window, +inf) rather than ZCARD, and the retry time
 * ranks within that range only. The upper bound is +inf, not now, so that an
 * entry stamped ahead of now (Redis TIME stepped back) still counts, as it
 * did with ZCARD; with a monotonic TIME the range is (now - window, now]. */
const char rln_check_lua[] =
    "local limit = tonumber(ARGV[1])\n"
    "local window = tonumber(ARGV[2])\n"
    "local cost = tonumber(ARGV[4])\n"
    "local slack = " RLN_XSTR(RLN_PRUNE_SLACK_MS) "\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local reset_at = tonumber(redis.call('GET', KEYS[3])) or 0\n"
    "local lo = '(' .. string.format('%d', now - window)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window - slack))\n"
    "local count = redis.call('ZCOUNT', KEYS[1], lo, '+inf')\n"
    "local allowed = 0\n"
    "local retry = 0\n"
    "if count + cost <= limit then\n"
    "  for i = 1, cost do\n"
    "    redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. i)\n"
    "  end\n"
    "  count = count + cost\n"
    "  allowed = 1\n"
    "  redis.call('PEXPIRE', KEYS[1], window + slack + 1000)\n"
    "elseif cost > limit then\n"
    "  retry = window\n"
    "else\n"
    "  local need = count + cost - limit\n"
    "  local e = redis.call('ZRANGEBYSCORE', KEYS[1], lo, '+inf', 'WITHSCORES', 'LIMIT',"
    " need - 1, 1)\n"
    "  retry = tonumber(e[2]) + window - now\n"
    "  if retry < 1 then retry = 1 end\n"
    "end\n"
    "redis.call('ZADD', KEYS[2], now, string.sub(KEYS[1], 4))\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 86400000)\n"
    "return {allowed, count, limit, now, reset_at, retry}\n";

/* Reset: delete the window and record when, in one step, so no check can
 * slip in between and no node can miss the reset time. */
const char rln_reset_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local d = redis.call('DEL', KEYS[1])\n"
    "redis.call('SET', KEYS[2], now, 'PX', 2 * tonumber(ARGV[1]))\n"
    "return {d, now}\n";

/* Read-only counter view, run with EVAL_RO so a CLIENT PAUSE WRITE does not
 * stall observers. KEYS: rl:{k}, rl:limit:{k}, rl:reset:{k}. */
const char rln_counter_lua[] =
    "local h = redis.call('HMGET', KEYS[2], 'limit', 'window_ms')\n"
    "local limit = tonumber(h[1]) or tonumber(ARGV[2])\n"
    "local window = tonumber(h[2]) or tonumber(ARGV[3])\n"
    "local reset_at = tonumber(redis.call('GET', KEYS[3])) or 0\n"
    "local at = tonumber(ARGV[1])\n"
    "local lo = at - window\n"
    "if reset_at > lo then lo = reset_at end\n"
    "local n = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', lo), at)\n"
    "return {limit, window, reset_at, n}\n";

/* Heartbeat. rl:nodes is never trimmed here, so a node that dies stays
 * listed and shows as down once its TTL'd hash is gone; rl:nodes:seen and
 * rl:nodes:addr keep enough to say when and where it was last seen. */
static const char rln_heartbeat_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local started = tonumber(ARGV[4])\n"
    "if started == 0 then started = now end\n"
    "redis.call('SADD', KEYS[1], ARGV[1])\n"
    "redis.call('HSET', KEYS[2], 'address', ARGV[2], 'pid', ARGV[3],"
    " 'started_ms', started, 'heartbeat_ms', now)\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[5])\n"
    "redis.call('HSET', KEYS[3], ARGV[1], now)\n"
    "redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])\n"
    "return {now, started}\n";

static void rln_conn_connect(struct rln_conn *c);

int64_t
rln_reply_int(const redisReply *r, int64_t def)
{
	int64_t v;

	if (r == NULL)
		return def;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING &&
	    op_parse_int(r->str, INT64_MIN, INT64_MAX, &v) == 0)
		return v;
	return def;
}

/* ---- calls ---- */

static void
rln_call_unlink(struct rln_call *call)
{
	struct rlnode *n = call->n;

	if (call->prev)
		call->prev->next = call->next;
	else if (n->live == call)
		n->live = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	if (call->timer) {
		event_free(call->timer);
		call->timer = NULL;
	}
}

/* Answers the caller once; the struct itself lives on until hiredis hands
 * it back, because a timed-out command is still queued on its connection. */
static void
rln_call_answer(struct rln_call *call, redisReply *r, const char *err)
{
	rln_call_cb *cb = call->cb;

	if (cb == NULL)
		return;
	call->cb = NULL;
	rln_call_unlink(call);
	cb(call->n, r, err, call->arg);
}

static void
rln_call_done(redisAsyncContext *ac, void *r, void *priv)
{
	struct rln_call *call = priv;
	const char *err = NULL;

	if (call->conn->pending > 0)
		call->conn->pending--;
	if (r == NULL)
		err = ac->errstr[0] ? ac->errstr : "connection lost";
	if (call->cb == NULL && call->suspect_key != NULL && r != NULL) {
		/* the caller gave up (and retried or failed open), yet the script
		 * ran: Redis counted an attempt this node did not */
		redisReply *rr = r;
		if (rr->type == REDIS_REPLY_ARRAY && rr->elements >= 4)
			rln_suspect_mark(call->n, call->suspect_key, rln_reply_int(rr->element[3], 0));
	}
	rln_call_answer(call, r, err);
	free(call->suspect_key);
	free(call);
}

static void
rln_call_timeout(evutil_socket_t fd, short ev, void *arg)
{
	rln_call_answer(arg, NULL, "timeout");
}

static int rln_call_send(struct rlnode *n, struct rln_conn *c, int64_t timeout_ms,
    rln_call_cb *cb, void *arg, int argc, const char **argv, const size_t *lens,
    const char *key);

int
rln_call_argv(struct rlnode *n, struct rln_conn *c, int64_t timeout_ms, rln_call_cb *cb,
    void *arg, int argc, const char **argv, const size_t *lens)
{
	return rln_call_send(n, c, timeout_ms, cb, arg, argc, argv, lens, NULL);
}

int
rln_call_check(struct rlnode *n, struct rln_conn *c, int64_t timeout_ms, rln_call_cb *cb,
    void *arg, int argc, const char **argv, const char *key)
{
	return rln_call_send(n, c, timeout_ms, cb, arg, argc, argv, NULL, key);
}

static int
rln_call_send(struct rlnode *n, struct rln_conn *c, int64_t timeout_ms, rln_call_cb *cb,
    void *arg, int argc, const char **argv, const size_t *lens, const char *key)
{
	struct rln_call *call;
	struct timeval tv;

	if (n->stopped || c == NULL || c->ac == NULL)
		return -1;
	call = calloc(1, sizeof(*call));
	if (call == NULL)
		return -1;
	call->n = n;
	call->conn = c;
	call->cb = cb;
	call->arg = arg;
	if (key != NULL && (call->suspect_key = strdup(key)) == NULL) {
		free(call);
		return -1;
	}
	call->timer = evtimer_new(n->base, rln_call_timeout, call);
	if (call->timer == NULL ||
	    redisAsyncCommandArgv(c->ac, rln_call_done, call, argc, argv, lens) != REDIS_OK) {
		if (call->timer)
			event_free(call->timer);
		free(call->suspect_key);
		free(call);
		return -1;
	}
	c->pending++;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(call->timer, &tv);
	call->next = n->live;
	if (n->live)
		n->live->prev = call;
	n->live = call;
	return 0;
}

static struct rln_conn *
rln_mgmt_conn(struct rlnode *n)
{
	int i;

	if (n->conns[RLN_CONN_MGMT].connected)
		return &n->conns[RLN_CONN_MGMT];
	i = rln_pool_pick(n, 0); /* management must keep working if one socket is down */
	return i >= 0 ? &n->conns[i] : &n->conns[RLN_CONN_MGMT];
}

int
rln_call_mgmt(struct rlnode *n, int64_t timeout_ms, rln_call_cb *cb, void *arg, int argc,
    const char **argv)
{
	return rln_call_argv(n, rln_mgmt_conn(n), timeout_ms, cb, arg, argc, argv, NULL);
}

int
rln_call_multi(struct rlnode *n, int64_t timeout_ms, rln_call_cb *cb, void *arg,
    const struct rln_cmd *cmds, int ncmd)
{
	struct rln_conn *c = rln_mgmt_conn(n);
	const char *multi = "MULTI", *exec = "EXEC";
	int i;

	if (n->stopped || c->ac == NULL)
		return -1;
	if (redisAsyncCommandArgv(c->ac, NULL, NULL, 1, &multi, NULL) != REDIS_OK)
		return -1;
	for (i = 0; i < ncmd; i++)
		if (redisAsyncCommandArgv(c->ac, NULL, NULL, cmds[i].argc, (const char **)cmds[i].argv,
			NULL) != REDIS_OK)
			return -1;
	return rln_call_argv(n, c, timeout_ms, cb, arg, 1, &exec, NULL);
}

void
rln_calls_abort_all(struct rlnode *n)
{
	while (n->live != NULL)
		rln_call_answer(n->live, NULL, "shutting down");
}

int
rln_pool_pick(struct rlnode *n, unsigned tried_mask)
{
	int k;

	for (k = 0; k < RLN_POOL_SIZE; k++) {
		int i = (int)((n->rr + (unsigned)k) % RLN_POOL_SIZE);
		if (n->conns[i].connected && !(tried_mask & (1u << i))) {
			n->rr = (unsigned)i + 1;
			return i;
		}
	}
	return -1;
}

/* ---- connections ---- */

static void
rln_conn_schedule(struct rln_conn *c)
{
	struct timeval tv;

	if (c->n->stopped)
		return;
	tv.tv_sec = c->backoff_ms / 1000;
	tv.tv_usec = (c->backoff_ms % 1000) * 1000;
	evtimer_add(c->retry_ev, &tv);
	c->backoff_ms = c->backoff_ms * 2 > RLN_BACKOFF_MAX_MS ? RLN_BACKOFF_MAX_MS
							      : c->backoff_ms * 2;
}

static void
rln_conn_retry(evutil_socket_t fd, short ev, void *arg)
{
	rln_conn_connect(arg);
}

static void
rln_conn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rln_conn *c = ac->data;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this returns */
		log_warn("redis connection %d: %s; retrying in %d ms", c->idx, ac->errstr,
		    c->backoff_ms);
		c->ac = NULL;
		c->connected = 0;
		rln_conn_schedule(c);
		return;
	}
	c->connected = 1;
	c->backoff_ms = RLN_BACKOFF_MIN_MS;
	log_info("redis connection %d up", c->idx);
	if (c->idx >= 0)
		rln_script_load(c->n);
}

static void
rln_script_loaded(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	n->sha_loading = 0;
	if (r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40) {
		memcpy(n->check_sha, r->str, 40);
		n->check_sha[40] = '\0';
		return;
	}
	/* EVAL keeps working; the next connection or NOSCRIPT asks again */
	log_warn("SCRIPT LOAD of the check script failed: %s",
	    err ? err : (r && r->str ? r->str : "unexpected reply"));
}

void
rln_script_load(struct rlnode *n)
{
	const char *argv[3] = {"SCRIPT", "LOAD", rln_check_lua};

	if (n->check_sha[0] != '\0' || n->sha_loading)
		return;
	if (rln_call_mgmt(n, RLN_MGMT_TIMEOUT_MS, rln_script_loaded, NULL, 3, argv) == 0)
		n->sha_loading = 1;
}

static void
rln_conn_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rln_conn *c = ac->data;

	c->ac = NULL;
	c->connected = 0;
	c->pending = 0;
	if (c->n->stopped)
		return;
	log_warn("redis connection %d lost: %s; retrying in %d ms", c->idx,
	    ac->errstr[0] ? ac->errstr : "closed", c->backoff_ms);
	rln_conn_schedule(c);
}

static void rln_sub_message(redisAsyncContext *ac, void *r, void *priv);

static void
rln_conn_connect(struct rln_conn *c)
{
	struct rlnode *n = c->n;
	char name[RLW_NODE_ID_MAX + 16];
	const char *argv[3];

	if (n->stopped)
		return;
	c->ac = redisAsyncConnect(n->redis_host, n->redis_port);
	if (c->ac == NULL || c->ac->err) {
		log_warn("redis connect %s:%d: %s", n->redis_host, n->redis_port,
		    c->ac ? c->ac->errstr : "out of memory");
		if (c->ac)
			redisAsyncFree(c->ac);
		c->ac = NULL;
		rln_conn_schedule(c);
		return;
	}
	c->ac->data = c;
	redisLibeventAttach(c->ac, n->base);
	redisAsyncSetConnectCallback(c->ac, rln_conn_on_connect);
	redisAsyncSetDisconnectCallback(c->ac, rln_conn_on_disconnect);
	/* Named so that an operator (or the chaos tool) can find and kill one
	 * specific connection with CLIENT LIST / CLIENT KILL. */
	snprintf(name, sizeof(name), c->idx < 0 ? "rlnode-%s-sub" : "rlnode-%s", n->node_id);
	argv[0] = "CLIENT";
	argv[1] = "SETNAME";
	argv[2] = name;
	redisAsyncCommandArgv(c->ac, NULL, NULL, 3, argv, NULL);
	if (c->idx < 0) {
		argv[0] = "SUBSCRIBE";
		argv[1] = RLN_CHANNEL;
		redisAsyncCommandArgv(c->ac, rln_sub_message, c, 2, argv, NULL);
	}
}

/* ---- limits cache ---- */

static void *
rln_limit_new(void)
{
	return calloc(1, sizeof(struct rln_limit));
}

static void
rln_limit_store(struct rln_map *m, const char *key, const redisReply *lim, const redisReply *win,
    int64_t def_window)
{
	int64_t l = rln_reply_int(lim, -1), w = rln_reply_int(win, def_window);
	struct rln_limit *v;

	if (l < 0) { /* no explicit limit any more: fall back to the default */
		free(rln_map_del(m, key));
		return;
	}
	v = rln_map_get_or_add(m, key, rln_limit_new);
	v->limit = l;
	v->window_ms = w > 0 ? w : def_window;
}

struct rln_reload {
	rln_reload_cb *done;
	void *arg;
	char **keys;
	int nkeys;
};

static void
rln_reload_finish(struct rlnode *n, struct rln_reload *rr, int count, const char *err)
{
	int i;

	n->loading--;
	if (err)
		log_warn("limits reload failed: %s", err);
	if (rr->done)
		rr->done(n, count, err, rr->arg);
	for (i = 0; i < rr->nkeys; i++)
		free(rr->keys[i]);
	free(rr->keys);
	free(rr);
}

static void
rln_reload_values(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_reload *rr = arg;
	struct rln_map fresh;
	int i;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || (int)r->elements != rr->nkeys) {
		rln_reload_finish(n, rr, -1, err ? err : (r && r->str ? r->str : "bad reply"));
		return;
	}
	rln_map_init(&fresh);
	for (i = 0; i < rr->nkeys; i++) {
		redisReply *h = r->element[i];
		if (h->type == REDIS_REPLY_ARRAY && h->elements == 2)
			rln_limit_store(&fresh, rr->keys[i], h->element[0], h->element[1],
			    n->window_ms);
	}
	/* Swap whole: a reload is authoritative, so stale entries go too. */
	rln_map_clear(&n->limits, free);
	n->limits = fresh;
	n->limits_loaded = 1;
	log_info("limits reloaded: %zu explicit", n->limits.n);
	rln_reload_finish(n, rr, (int)n->limits.n, NULL);
}

static void
rln_reload_members(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	struct rln_reload *rr = arg;
	struct rln_cmd *cmds;
	char **names;
	int i, nk;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		rln_reload_finish(n, rr, -1, err ? err : (r && r->str ? r->str : "bad reply"));
		return;
	}
	nk = (int)r->elements;
	rr->keys = calloc((size_t)nk + 1, sizeof(char *));
	names = calloc((size_t)nk + 1, sizeof(char *));
	cmds = calloc((size_t)nk + 1, sizeof(*cmds));
	if (rr->keys == NULL || names == NULL || cmds == NULL)
		fatal("out of memory");
	for (i = 0; i < nk; i++) {
		const char *k = r->element[i]->str ? r->element[i]->str : "";
		if ((rr->keys[i] = strdup(k)) == NULL ||
		    asprintf(&names[i], "rl:limit:%s", k) < 0)
			fatal("out of memory");
		cmds[i].argc = 4;
		cmds[i].argv[0] = "HMGET";
		cmds[i].argv[1] = names[i];
		cmds[i].argv[2] = "limit";
		cmds[i].argv[3] = "window_ms";
	}
	rr->nkeys = nk;
	if (rln_call_multi(n, RLN_MGMT_TIMEOUT_MS, rln_reload_values, rr, cmds, nk) < 0)
		rln_reload_finish(n, rr, -1, "redis not connected");
	for (i = 0; i < nk; i++)
		free(names[i]);
	free(names);
	free(cmds);
}

int
rln_limits_reload(struct rlnode *n, rln_reload_cb *done, void *arg)
{
	struct rln_reload *rr = calloc(1, sizeof(*rr));
	const char *argv[] = {"SMEMBERS", "rl:limits"};

	if (rr == NULL)
		return -1;
	rr->done = done;
	rr->arg = arg;
	if (rln_call_argv(n, rln_mgmt_conn(n), RLN_MGMT_TIMEOUT_MS, rln_reload_members, rr, 2, argv,
		NULL) < 0) {
		free(rr);
		return -1;
	}
	n->loading++;
	return 0;
}

static void
rln_limit_fetched(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	char *key = arg;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		rln_limit_store(&n->limits, key, r->element[0], r->element[1], n->window_ms);
		log_info("limit cache updated for %s", key);
	} else {
		log_warn("limit refresh for %s failed: %s", key, err ? err : "bad reply");
	}
	free(key);
}

static void
rln_limit_fetch(struct rlnode *n, const char *key)
{
	char *name, *k = strdup(key);
	const char *argv[4] = {"HMGET", NULL, "limit", "window_ms"};

	if (k == NULL || asprintf(&name, "rl:limit:%s", key) < 0)
		fatal("out of memory");
	argv[1] = name;
	if (rln_call_argv(n, rln_mgmt_conn(n), RLN_MGMT_TIMEOUT_MS, rln_limit_fetched, k, 4, argv,
		NULL) < 0) {
		log_warn("limit refresh for %s not sent: redis not connected", key);
		free(k);
	}
	free(name);
}

/*
 * Subscriber. Known staleness bound: when this connection drops, the node
 * reconnects (backoff from RLN_BACKOFF_MIN_MS) and re-SUBSCRIBEs but does NOT
 * reload the limits. An invalidation published while it was disconnected is
 * therefore missed, and /check keeps enforcing the stale cached limit until
 * the next periodic refresh (--limit-refresh) or POST /api/resync. This is
 * the deliberate trade of the hot-path cache; the counters API exposes it as
 * limit != cached_limit.
 */
static void
rln_sub_message(redisAsyncContext *ac, void *r, void *priv)
{
	struct rln_conn *c = priv;
	struct rlnode *n = c->n;
	redisReply *rep = r;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->str == NULL)
		return;
	if (strcmp(rep->element[0]->str, "subscribe") == 0) {
		log_info("subscribed to %s", RLN_CHANNEL);
		/* The first load follows the subscription so no change can fall
		 * between load and subscribe at startup. */
		if (!n->limits_loaded && !n->loading && rln_limits_reload(n, NULL, NULL) < 0)
			log_warn("initial limits load not sent; the refresh timer will retry");
	} else if (strcmp(rep->element[0]->str, "message") == 0 && rep->element[2]->str) {
		rln_limit_fetch(n, rep->element[2]->str);
	}
}

/* ---- heartbeat ---- */

static void
rln_heartbeat_done(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		log_warn("heartbeat failed: %s", err ? err : (r && r->str ? r->str : "bad reply"));
		return;
	}
	rln_note_redis_time(n, r->element[0]->integer);
	if (n->started_wall_ms == 0)
		n->started_wall_ms = r->element[1]->integer;
	if (!n->limits_loaded && !n->loading && n->sub.connected)
		rln_limits_reload(n, NULL, NULL); /* the initial load failed; try again */
}

void
rln_heartbeat(struct rlnode *n)
{
	char node[RLW_NODE_ID_MAX + 16], addr[400], pid[24], started[24], ttl[24];
	const char *argv[12];

	snprintf(node, sizeof(node), "rl:node:%s", n->node_id);
	snprintf(addr, sizeof(addr), "%s:%d", n->bind, n->port);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(started, sizeof(started), "%lld", (long long)n->started_wall_ms);
	snprintf(ttl, sizeof(ttl), "%lld", (long long)n->node_ttl_ms);
	argv[0] = "EVAL";
	argv[1] = rln_heartbeat_lua;
	argv[2] = "4";
	argv[3] = "rl:nodes";
	argv[4] = node;
	argv[5] = "rl:nodes:seen";
	argv[6] = "rl:nodes:addr";
	argv[7] = n->node_id;
	argv[8] = addr;
	argv[9] = pid;
	argv[10] = started;
	argv[11] = ttl;
	if (rln_call_argv(n, rln_mgmt_conn(n), n->heartbeat_ms, rln_heartbeat_done, NULL, 12, argv,
		NULL) < 0)
		log_debug("heartbeat skipped: redis not connected");
}

int
rln_deregister(struct rlnode *n, rln_call_cb *cb)
{
	char node[RLW_NODE_ID_MAX + 16];
	struct rln_cmd cmds[4] = {
		{2, {"DEL", node}},
		{3, {"SREM", "rl:nodes", n->node_id}},
		{3, {"HDEL", "rl:nodes:seen", n->node_id}},
		{3, {"HDEL", "rl:nodes:addr", n->node_id}},
	};

	snprintf(node, sizeof(node), "rl:node:%s", n->node_id);
	return rln_call_multi(n, RLN_STOP_TIMEOUT_MS, cb, NULL, cmds, 4);
}

/* ---- lifecycle ---- */

static void
rln_conn_init(struct rlnode *n, struct rln_conn *c, int idx)
{
	c->n = n;
	c->idx = idx;
	c->backoff_ms = RLN_BACKOFF_MIN_MS;
	c->retry_ev = evtimer_new(n->base, rln_conn_retry, c);
	if (c->retry_ev == NULL)
		fatal("evtimer_new failed");
}

void
rln_redis_start(struct rlnode *n)
{
	int i;

	for (i = 0; i < RLN_NCONN; i++) {
		rln_conn_init(n, &n->conns[i], i);
		rln_conn_connect(&n->conns[i]);
	}
	rln_conn_init(n, &n->sub, -1);
	rln_conn_connect(&n->sub);
}

static void
rln_conn_close(struct rln_conn *c)
{
	if (c->retry_ev) {
		event_free(c->retry_ev);
		c->retry_ev = NULL;
	}
	if (c->ac) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		/* Pending callbacks run now with NULL replies; every caller has
		 * already been answered, so they only free their call structs. */
		redisAsyncFree(ac);
	}
}

void
rln_redis_stop(struct rlnode *n)
{
	int i;

	n->stopped = 1;
	rln_calls_abort_all(n);
	for (i = 0; i < RLN_NCONN; i++)
		rln_conn_close(&n->conns[i]);
	rln_conn_close(&n->sub);
}
