/*
 * rlnode: one node of the distributed rate limiter.
 *
 * A sliding-window log per key lives in Redis and is maintained by one Lua
 * script that reads Redis TIME, so every node agrees on the clock. Each node
 * also keeps its own log of what it allowed, so the sum over the nodes can be
 * compared with Redis and drift (double counting, ghost allowing) measured.
 */
#ifndef RLNODE_H
#define RLNODE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "subjects/ratelimiter/rl_wire.h"

#define RLN_POOL_SIZE 4             /* /check connections; retries rotate over them */
#define RLN_CONN_MGMT RLN_POOL_SIZE  /* index of the management connection */
#define RLN_NCONN (RLN_POOL_SIZE + 1)
#define RLN_BACKOFF_MIN_MS 1000     /* first reconnect delay */
#define RLN_BACKOFF_MAX_MS 8000     /* reconnect delay cap */
#define RLN_MGMT_TIMEOUT_MS 2000    /* management commands (not /check) */
#define RLN_STOP_TIMEOUT_MS 1000    /* how long shutdown waits to deregister */
#define RLN_BODY_MAX (64 * 1024)    /* request body cap, bytes */
#define RLN_WINDOW_MAX_MS 86400000LL /* longest window; rl:keys keeps this much */
#define RLN_COUNTERS_MAX 1000       /* keys per /api/counters answer */
#define RLN_RECENT_MS 3000          /* node_allowed_recent / node_blocked_recent span */
/* How long the /check script keeps entries in Redis past the window. The
 * allow decision counts only (now - window, now], so this changes no limit;
 * it exists so that GET /api/counters?at=AT, with AT in the recent past,
 * still finds every entry of (AT - window, AT] in Redis. It must exceed the
 * observer's settle margin (it asks for AT = Redis now - 1000 ms), or the
 * oldest part of the observer's interval is pruned from Redis while the
 * nodes' local logs still have it, which reads as false drift. */
#define RLN_PRUNE_SLACK_MS 5000
#define RLN_LOCAL_SLACK_MS 30000    /* local log kept past the window, for ?at= in the past */
/* The local log must cover at least what Redis keeps, or ?at= in the slack
 * would show Redis entries the nodes no longer have. */
_Static_assert(RLN_LOCAL_SLACK_MS >= RLN_PRUNE_SLACK_MS,
    "local log must keep at least window + RLN_PRUNE_SLACK_MS");
#define RLN_LAT_SPAN_MS 10000       /* /health latency and rate span */
#define RLN_LAT_RING 65536          /* latency samples kept (power of two) */
#define RLN_DEGRADED_HOLD_MS 10000  /* degraded stays reported this long after a fail-open */
#define RLN_SWEEP_MS 1000           /* local log sweep period */
/* Drift suspects: keys where Redis may have counted what this node did not
 * (an attempt abandoned, a late script run) or the reverse (a fail-open
 * allow). Kept this long past the key's window after the last mark: an
 * abandoned attempt can still run while Redis is paused, after the mark. */
#define RLN_SUSPECT_GRACE_MS 60000
#define RLN_SUSPECT_KEY "rl:suspect" /* zset key -> Redis time of the last mark, shared */

/* ---- rlnode_map.c: string-keyed chained hash map ---- */
struct rln_ent {
	char *key;
	void *val;
	struct rln_ent *next;
};

struct rln_map {
	struct rln_ent **b;
	size_t nb;
	size_t n;
};

void rln_map_init(struct rln_map *m);
void *rln_map_get(const struct rln_map *m, const char *key);
/* Inserts key if absent (val from mk()) and returns the value. */
void *rln_map_get_or_add(struct rln_map *m, const char *key, void *(*mk)(void));
/* Removes key and returns its value (caller frees), or NULL. */
void *rln_map_del(struct rln_map *m, const char *key);
void rln_map_clear(struct rln_map *m, void (*freeval)(void *));
/* Visits every entry; fn returns nonzero to delete the entry (after freeval). */
void rln_map_each(struct rln_map *m, int (*fn)(const char *, void *, void *), void *arg,
    void (*freeval)(void *));

/* ---- rlnode_acct.c: limits cache and local accounting ---- */
struct rln_limit {
	int64_t limit;
	int64_t window_ms;
};

struct rln_mark {
	int64_t ts_ms; /* Redis time */
	int64_t cost;
};

/* What this node allowed (and blocked) for one key, in Redis time. */
struct rln_acct {
	struct rln_mark *allowed; /* sorted by ts_ms */
	size_t na, capa;
	int64_t *blocked;        /* sorted, only the recent span is kept */
	size_t nbl, capb;
	int64_t reset_at_ms;
};

void *rln_acct_new(void);
void rln_acct_free(void *p);
void rln_acct_allow(struct rln_acct *a, int64_t ts_ms, int64_t cost);
void rln_acct_block(struct rln_acct *a, int64_t ts_ms);
/* Drops everything at or before reset_at and remembers it. */
void rln_acct_reset(struct rln_acct *a, int64_t reset_at_ms);
/* Drops what is too old to matter at now (window plus slack). */
void rln_acct_prune(struct rln_acct *a, int64_t now_ms, int64_t window_ms);
/* Sum of costs allowed in (lo, hi]. */
int64_t rln_acct_sum(const struct rln_acct *a, int64_t lo, int64_t hi);
int64_t rln_acct_blocked_in(const struct rln_acct *a, int64_t lo, int64_t hi);

/* ---- rlnode.c: the node ---- */
struct rlnode;

struct rln_conn {
	struct rlnode *n;
	int idx;            /* pool index, RLN_CONN_MGMT, or -1 for the subscriber */
	redisAsyncContext *ac;
	int connected;
	int pending;        /* commands in flight */
	int backoff_ms;
	struct event *retry_ev;
};

struct rln_call;
/* reply is NULL on failure; err then says why ("timeout", "disconnected"). */
typedef void rln_call_cb(struct rlnode *n, redisReply *reply, const char *err, void *arg);

struct rln_call {
	struct rlnode *n;
	struct rln_conn *conn;
	struct event *timer;
	rln_call_cb *cb;     /* NULL once the caller has been answered */
	void *arg;
	char *suspect_key;  /* a /check: if its reply comes after the caller gave up,
	                       the script ran late and the key is a drift suspect */
	struct rln_call *prev, *next; /* live list, for shutdown */
};

struct rln_latency {
	int64_t at_ms[RLN_LAT_RING];
	uint32_t us[RLN_LAT_RING];
	uint64_t head;
};

#define RLN_HIST_NB 10
struct rln_metrics {
	uint64_t allowed, blocked, errors;
	uint64_t redis_errors, redis_retries, fail_open;
	uint64_t resets;  /* reset scripts sent to Redis by POST /api/counters/{key}/reset */
	uint64_t resyncs; /* full reloads sent to Redis by POST /api/resync */
	uint64_t hist[RLN_HIST_NB + 1]; /* last is +Inf */
	double hist_sum;
	uint64_t hist_count;
};

struct rlnode {
	/* configuration */
	char node_id[RLW_NODE_ID_MAX + 1];
	char bind[64];
	int port;
	char redis_host[256];
	int redis_port;
	int64_t default_limit;
	int64_t window_ms;
	int64_t redis_timeout_ms;
	int retries;
	int64_t heartbeat_ms;
	int64_t node_ttl_ms;
	int64_t limit_refresh_ms;

	struct event_base *base;
	struct evhttp *http;
	struct event *sigterm_ev, *sigint_ev;
	struct event *heartbeat_ev, *refresh_ev, *sweep_ev, *stop_ev;

	struct rln_conn conns[RLN_NCONN];
	struct rln_conn sub;
	unsigned rr;                /* round-robin cursor over the pool */
	struct rln_call *live;       /* calls still owed an answer */

	struct rln_map limits;       /* key -> struct rln_limit (the cache) */
	struct rln_map acct;         /* key -> struct rln_acct */
	struct rln_map suspects;     /* key -> struct rln_suspect (rlnode_suspect.c) */
	int limits_loaded;          /* initial load done */
	int loading;                /* full reloads in flight */

	int64_t started_mono_ms;
	int64_t started_wall_ms;    /* Redis time of the first heartbeat */
	int64_t boot_ms;            /* wall clock at start: keeps members unique across restarts */
	int64_t redis_off_ms;       /* Redis time minus monotonic time */
	int have_off;
	int64_t last_fail_open_mono;
	uint64_t seq;

	/* SHA1 of rln_check_lua as Redis's SCRIPT LOAD answered it: /check sends
	 * EVALSHA (40 bytes) instead of the whole script once it is known. */
	char check_sha[41];
	int sha_loading;
	uint64_t noscript;          /* NOSCRIPT answers (script cache flushed or Redis restarted) */

	struct rln_latency lat;
	struct rln_metrics m;
	int stopping;
	int stopped;
};

int64_t rln_now_est(const struct rlnode *n);
void rln_note_redis_time(struct rlnode *n, int64_t redis_ms);
int rln_degraded(const struct rlnode *n);
int rln_redis_up(const struct rlnode *n);
const struct rln_limit *rln_limit_for(const struct rlnode *n, const char *key,
    struct rln_limit *tmp);
struct rln_acct *rln_acct_for(struct rlnode *n, const char *key);

/* ---- rlnode_suspect.c: drift suspects, shared through Redis ---- */
struct rln_suspect {
	int64_t at_ms;      /* Redis time of the last mark */
	int pushed;         /* written to RLN_SUSPECT_KEY */
};
/* Marks key a suspect at at_ms (Redis time) and tells the other nodes. */
void rln_suspect_mark(struct rlnode *n, const char *key, int64_t at_ms);
/* Pushes what Redis missed and forgets suspects past their keep time. */
void rln_suspect_sweep(struct rlnode *n, int64_t now_ms);
/* Whether key's suspicion (local) still matters at at_ms for a window. */
int rln_suspect_recent(struct rlnode *n, const char *key, int64_t at_ms, int64_t window_ms);

/* ---- rlnode_redis.c: connections, calls, subscriber, limits cache ---- */
void rln_redis_start(struct rlnode *n);
void rln_redis_stop(struct rlnode *n);
/* Picks a connected pool connection not in the tried mask; -1 when none. */
int rln_pool_pick(struct rlnode *n, unsigned tried_mask);
/* Sends argv on conn; cb runs exactly once (reply, timeout or loss) unless
 * this returns -1, in which case it never runs. */
int rln_call_argv(struct rlnode *n, struct rln_conn *c, int64_t timeout_ms, rln_call_cb *cb,
    void *arg, int argc, const char **argv, const size_t *lens);
/* rln_call_argv for a /check script on key: a reply after the timeout marks
 * the key a drift suspect at the time the script ran. */
int rln_call_check(struct rlnode *n, struct rln_conn *c, int64_t timeout_ms, rln_call_cb *cb,
    void *arg, int argc, const char **argv, const char *key);
/* rln_call_argv on the management connection. */
int rln_call_mgmt(struct rlnode *n, int64_t timeout_ms, rln_call_cb *cb, void *arg, int argc,
    const char **argv);
/* MULTI, the commands, EXEC on the management connection; cb gets the EXEC
 * array, so several reads cost one round trip and are seen atomically. */
struct rln_cmd {
	int argc;
	const char *argv[12];
};
int rln_call_multi(struct rlnode *n, int64_t timeout_ms, rln_call_cb *cb, void *arg,
    const struct rln_cmd *cmds, int ncmd);
void rln_calls_abort_all(struct rlnode *n);
/* Full reload of the limits cache; done(n, count or -1, arg) afterwards. */
typedef void rln_reload_cb(struct rlnode *n, int count, const char *err, void *arg);
int rln_limits_reload(struct rlnode *n, rln_reload_cb *done, void *arg);
void rln_heartbeat(struct rlnode *n);
int rln_deregister(struct rlnode *n, rln_call_cb *cb);
int64_t rln_reply_int(const redisReply *r, int64_t def);
/* SCRIPT LOAD of the /check script, unless it is known or already asked. */
void rln_script_load(struct rlnode *n);
extern const char rln_check_lua[];
extern const char rln_reset_lua[];
extern const char rln_counter_lua[];

/* ---- rlnode_http.c: HTTP API ---- */
int rln_http_start(struct rlnode *n);
void rln_http_reply_json(struct evhttp_request *req, int code, json_object *o);
void rln_http_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rln_key_valid(const char *k, size_t len);

/* ---- rlnode_check.c: POST /check ---- */
void rln_check_handle(struct rlnode *n, struct evhttp_request *req, json_object *body);
void rln_latency_add(struct rlnode *n, int64_t us);
void rln_latency_stats(struct rlnode *n, double *p99_ms, uint64_t *count);

/* ---- rlnode_api.c: management API ---- */
void rln_api_nodes(struct rlnode *n, struct evhttp_request *req);
void rln_api_counters(struct rlnode *n, struct evhttp_request *req, const char *query);
void rln_api_limits_get(struct rlnode *n, struct evhttp_request *req);
void rln_api_limit_put(struct rlnode *n, struct evhttp_request *req, const char *key,
    json_object *body);
void rln_api_limit_delete(struct rlnode *n, struct evhttp_request *req, const char *key);
void rln_api_reset(struct rlnode *n, struct evhttp_request *req, const char *key);
void rln_api_resync(struct rlnode *n, struct evhttp_request *req);
void rln_api_metrics(struct rlnode *n, struct evhttp_request *req);
void rln_api_health(struct rlnode *n, struct evhttp_request *req);

#endif
