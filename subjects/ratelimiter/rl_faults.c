/* rl_faults: chaos for the rate limiter. Every fault is a real mechanism
 * acting on the real processes (a Redis write pause during traffic, a killed
 * pub/sub connection, a SIGKILL, a stopped Redis); none writes fabricated
 * entries into Redis. Each returns in *undo what its undo needs, with
 * "target" naming the entity a detector should report. */
#include "subjects/ratelimiter/rl_internal.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/http.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

#define RL_FAULT_REDIS_TIMEOUT_MS 1000 /* chaos's own Redis connection */
#define RL_DRIFT_DEF_PAUSE_MS 2000     /* write pause of counter_drift */
#define RL_DRIFT_MAX_PAUSE_MS 30000
#define RL_DRIFT_DEF_REQUESTS 30       /* /check calls sent during the pause */
#define RL_DRIFT_MAX_REQUESTS 1000
#define RL_DRIFT_GRACE_MS 2000         /* /check timeout beyond the pause */
#define RL_OUTAGE_DEF_MS 10000         /* redis_outage length when no ttl_ms is given */
#define RL_OUTAGE_MAX_MS 300000
#define RL_RESPAWN_WAIT_MS 5000        /* node_kill undo waits this long for /health */
#define RL_POLL_MS 100                 /* condition polling step */
#define RL_CMDLINE_MAX 8192            /* bytes of /proc/PID/cmdline read */
#define RL_ARGV_MAX 64                 /* arguments kept for a respawn */
#define RL_PATH_MAX 4096
#define RL_DEF_KEY "demo"

const struct op_fault_def rl_faults[RL_NFAULTS] = {
	{"counter_drift",
	    "CLIENT PAUSE WRITE on Redis while N /check calls hit the nodes: their 150 ms Redis "
	    "timeouts fire, they retry on other connections and Redis later runs both: a real "
	    "double count",
	    30000, "key=NAME pause=DURATION requests=N",
	    /* the pause is Redis-wide: every key with traffic drifts, and every
	     * node's /check latency and its fail-open allowance show it */
	    RL_INV_DRIFT, RL_INV_DRIFT "," RL_INV_LATENCY "," RL_INV_OVER, "reset_counter"},
	{"ghost_allowing",
	    "kills one node's pub/sub subscriber connection (CLIENT KILL ID) and sets the key's "
	    "limit to 0 through another node: the victim misses the change and keeps allowing",
	    30000, "key=NAME node=ID", RL_INV_GHOST, RL_INV_OVER, "resync_node"},
	{"node_kill", "SIGKILL of one rlnode process; undo respawns it with the same argv and cwd",
	    30000, "node=ID", RL_INV_NODE_DOWN,
	    /* a node restarting within the window makes sums incomparable */
	    RL_INV_LATENCY, ""},
	{"redis_outage",
	    "Redis stops answering for ttl_ms: SIGSTOP of a local redis-server (self-healing "
	    "watchdog sends SIGCONT), else CLIENT PAUSE ALL",
	    10000, "ttl_ms=MS", RL_INV_REDIS,
	    RL_INV_LATENCY "," RL_INV_DRIFT "," RL_INV_OVER "," RL_INV_NODE_DOWN, ""},
};

/* ------------------------------------------------------------------ */
/* parameters */

static const char *
rl_fp_str(json_object *params, const char *name, const char *def)
{
	return op_json_str(params, name, def);
}

/* An integer parameter given as a number or a decimal string. */
static int
rl_fp_int(json_object *params, const char *name, int64_t def, int64_t min, int64_t max,
    int64_t *out, char *err, size_t errlen)
{
	json_object *v;

	*out = def;
	if (params == NULL || !json_object_object_get_ex(params, name, &v) || v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_string)) {
		if (op_parse_int(json_object_get_string(v), min, max, out) != 0)
			goto bad;
		return 0;
	}
	if (!json_object_is_type(v, json_type_int))
		goto bad;
	*out = json_object_get_int64(v);
	if (*out >= min && *out <= max)
		return 0;
bad:
	snprintf(err, errlen, "parameter %s: need an integer in %lld..%lld", name, (long long)min,
	    (long long)max);
	return -1;
}

/* A duration given as milliseconds or a string ("2s", "500ms"). */
static int
rl_fp_duration(json_object *params, const char *name, int64_t def, int64_t max, int64_t *out,
    char *err, size_t errlen)
{
	json_object *v;

	*out = def;
	if (params == NULL || !json_object_object_get_ex(params, name, &v) || v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_string)) {
		if (op_parse_duration(json_object_get_string(v), out) != 0)
			goto bad;
	} else if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
	} else {
		goto bad;
	}
	if (*out >= 1 && *out <= max)
		return 0;
bad:
	snprintf(err, errlen, "parameter %s: need a duration between 1ms and %lldms", name,
	    (long long)max);
	return -1;
}

static int
rl_fp_key(json_object *params, const char **key, char *err, size_t errlen)
{
	*key = rl_fp_str(params, "key", RL_DEF_KEY);
	size_t len = strlen(*key);
	if (len == 0 || len > RL_KEYNAME_MAX) {
		snprintf(err, errlen, "parameter key: length must be 1..%d", RL_KEYNAME_MAX);
		return -1;
	}
	return 0;
}

/* The node a fault aims at: node=ID (or URL), default the last configured. */
static const struct rl_probe *
rl_fp_node(struct rl_priv *p, const struct rl_probe *pr, json_object *params, char *err,
    size_t errlen)
{
	const char *node = rl_fp_str(params, "node", NULL);
	const struct rl_probe *v = node ? rl_probe_find(pr, p->nnodes, node) : &pr[p->nnodes - 1];

	if (v == NULL) {
		snprintf(err, errlen, "unknown node \"%s\"", node);
		return NULL;
	}
	if (!v->reachable) {
		snprintf(err, errlen, "node %s (%s) is unreachable: %s", v->id, v->url, v->err);
		return NULL;
	}
	return v;
}

static redisContext *
rl_f_redis(struct rl_priv *p, char *err, size_t errlen)
{
	return rl_redis_open(p, RL_FAULT_REDIS_TIMEOUT_MS, err, errlen);
}

/* Runs "verb [sub]" on a fresh connection; 0 when Redis did not refuse it. */
static int
rl_f_redis_simple(struct rl_priv *p, char *err, size_t errlen, const char *verb,
    const char *sub)
{
	redisContext *c = rl_f_redis(p, err, errlen);
	redisReply *r;

	if (c == NULL)
		return -1;
	r = sub ? rl_redis_cmd(c, err, errlen, "%s %s", verb, sub)
		: rl_redis_cmd(c, err, errlen, "%s", verb);
	redisFree(c);
	if (r == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* ------------------------------------------------------------------ */
/* counter_drift */

/* The /check calls of counter_drift run on a detached thread: they wait out
 * the whole pause (up to 30 s), and the chaos worker must keep answering
 * meanwhile (kill switch, TTL undo, the next command). The job owns copies
 * of everything it reads, so nothing it touches is shared with the worker. */
struct rl_drift_job {
	struct op_http_req *reqs;
	size_t n;
	char urls[RL_NODES_MAX][RL_REQ_URL_MAX];
	char key[RL_KEYNAME_MAX + 1];
	char *body;
};

static void
rl_f_drift_job_free(struct rl_drift_job *j)
{
	free(j->reqs);
	free(j->body);
	free(j);
}

static void *
rl_f_drift_run(void *arg)
{
	struct rl_drift_job *j = arg;
	int64_t allowed = 0, blocked = 0, failed = 0;

	op_http_multi(j->reqs, j->n);
	for (size_t i = 0; i < j->n; i++) {
		allowed += j->reqs[i].status == 200;
		blocked += j->reqs[i].status == 429;
		failed += j->reqs[i].status != 200 && j->reqs[i].status != 429;
		op_http_req_reset(&j->reqs[i]);
	}
	log_info("counter_drift traffic on %s done: %lld allowed, %lld blocked, %lld failed",
	    j->key, (long long)allowed, (long long)blocked, (long long)failed);
	rl_f_drift_job_free(j);
	return NULL;
}

/* Starts n /check calls on key spread over the reachable nodes; returns the
 * number of nodes they go to, or -1 with err. Does not wait for them. */
static int
rl_f_drift_traffic(struct rl_priv *p, const struct rl_probe *pr, const char *key, int64_t n,
    int64_t timeout_ms, char *err, size_t errlen)
{
	struct rl_drift_job *j = calloc(1, sizeof(*j));
	json_object *b = json_object_new_object();
	size_t nt = 0;
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	if (j == NULL || (j->reqs = calloc((size_t)n, sizeof(*j->reqs))) == NULL) {
		free(j);
		json_object_put(b);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	j->n = (size_t)n;
	op_strlcpy(j->key, key, sizeof(j->key));
	op_json_set_str(b, "key", key);
	j->body = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
	json_object_put(b);
	for (size_t i = 0; i < p->nnodes; i++)
		if (pr[i].reachable && snprintf(j->urls[nt], sizeof(j->urls[nt]), "%s/check",
		    pr[i].url) < (int)sizeof(j->urls[nt]))
			nt++;
	if (nt == 0 || j->body == NULL) {
		rl_f_drift_job_free(j);
		snprintf(err, errlen, "no rate-limiter node is reachable");
		return -1;
	}
	for (size_t i = 0; i < j->n; i++) {
		j->reqs[i].method = "POST";
		j->reqs[i].url = j->urls[i % nt];
		j->reqs[i].body = j->body;
		j->reqs[i].timeout_ms = timeout_ms;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &attr, rl_f_drift_run, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		rl_f_drift_job_free(j);
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		return -1;
	}
	return (int)nt;
}

static json_object *rl_f_limit_entry(const char *base, const char *key, json_object **all,
    char *err, size_t errlen);

/* Drift is measured only once every node has a full window of history
 * (rl_node_covers): a drift injected before that is invisible, and gone
 * from the window by the time the nodes are old enough to judge it. */
static int
rl_f_drift_measurable(const struct rl_priv *p, const struct rl_probe *pr, const char *key,
    char *err, size_t errlen)
{
	int64_t window = -1;

	for (size_t i = 0; i < p->nnodes && window < 0; i++) {
		json_object *all, *e;
		if (!pr[i].reachable)
			continue;
		e = rl_f_limit_entry(pr[i].url, key, &all, err, errlen);
		window = e ? op_json_int(e, "window_ms", -1) : op_json_int(all, "default_window_ms", -1);
		json_object_put(e);
		json_object_put(all);
	}
	if (window < 0) {
		snprintf(err, errlen, "cannot read the window of key %s from any node", key);
		return -1;
	}
	for (size_t i = 0; i < p->nnodes; i++) {
		char url[RL_REQ_URL_MAX];
		long status;
		json_object *h;
		if (!pr[i].reachable)
			continue;
		snprintf(url, sizeof(url), "%s/health", pr[i].url);
		if (rl_http_json(NULL, url, NULL, RL_ACTION_TIMEOUT_MS, &status, &h, err, errlen) != 0)
			return -1;
		int64_t up = op_json_int(h, "uptime_ms", -1);
		json_object_put(h);
		if (up >= 0 && up < window + RL_SETTLE_MS) {
			snprintf(err, errlen, "node %s is %lld ms old and key %s has a %lld ms window: "
			    "drift cannot be measured until every node covers a window (in %lld ms)",
			    pr[i].id, (long long)up, key, (long long)window,
			    (long long)(window + RL_SETTLE_MS - up));
			return -1;
		}
	}
	return 0;
}

static int
rl_f_drift(struct rl_priv *p, json_object *params, json_object **undo, char *err, size_t errlen)
{
	struct rl_probe pr[RL_NODES_MAX];
	const char *key;
	int64_t pause_ms, n;
	redisContext *c;
	redisReply *r;

	if (rl_fp_key(params, &key, err, errlen) != 0 ||
	    rl_fp_duration(params, "pause", RL_DRIFT_DEF_PAUSE_MS, RL_DRIFT_MAX_PAUSE_MS, &pause_ms,
		err, errlen) != 0 ||
	    rl_fp_int(params, "requests", RL_DRIFT_DEF_REQUESTS, 1, RL_DRIFT_MAX_REQUESTS, &n, err,
		errlen) != 0)
		return -1;
	if (rl_probe_nodes(p, pr) == 0) {
		snprintf(err, errlen, "no rate-limiter node is reachable");
		return -1;
	}
	if (rl_f_drift_measurable(p, pr, key, err, errlen) != 0)
		return -1;
	/* writes (the Lua script) wait; reads and our own UNPAUSE still run */
	if ((c = rl_f_redis(p, err, errlen)) == NULL)
		return -1;
	r = rl_redis_cmd(c, err, errlen, "CLIENT PAUSE %lld WRITE", (long long)pause_ms);
	redisFree(c);
	if (r == NULL)
		return -1;
	freeReplyObject(r);
	int nt = rl_f_drift_traffic(p, pr, key, n, pause_ms + RL_DRIFT_GRACE_MS, err, errlen);
	if (nt < 0) {
		rl_f_redis_simple(p, err + strlen(err), errlen - strlen(err), "CLIENT", "UNPAUSE");
		return -1;
	}
	json_object *st = json_object_new_object();
	op_json_set_str(st, "target", key);
	op_json_set_str(st, "key", key);
	op_json_set_int(st, "pause_ms", pause_ms);
	op_json_set_int(st, "requests", n);
	op_json_set_int(st, "nodes", nt);
	*undo = st;
	log_info("counter_drift on %s: paused writes %lld ms, %lld /check calls under way", key,
	    (long long)pause_ms, (long long)n);
	return 0;
}

/* ------------------------------------------------------------------ */
/* ghost_allowing */

/* CLIENT LIST id of the connection named exactly `name`; -1 when absent. */
static long long
rl_f_client_id(redisContext *c, const char *name, char *err, size_t errlen)
{
	redisReply *r = rl_redis_cmd(c, err, errlen, "CLIENT LIST");
	char want[RL_ID_MAX + 32];
	long long id = -1;

	if (r == NULL)
		return -1;
	snprintf(want, sizeof(want), " name=%s ", name);
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
		char *save = NULL;
		for (char *line = strtok_r(r->str, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			if (strstr(line, want) != NULL && strncmp(line, "id=", 3) == 0) {
				id = strtoll(line + 3, NULL, 10);
				break;
			}
		}
	}
	freeReplyObject(r);
	if (id < 0 && err[0] == '\0')
		snprintf(err, errlen, "no Redis connection named %s", name);
	return id;
}

/* The key's current limit as the cluster sees it, or none set. */
static int
rl_f_prev_limit(const struct rl_probe *via, const char *key, json_object *st, char *err,
    size_t errlen)
{
	char url[RL_REQ_URL_MAX];
	long status;
	json_object *ans, *arr;

	snprintf(url, sizeof(url), "%s/api/limits", via->url);
	if (rl_http_json(NULL, url, NULL, RL_ACTION_TIMEOUT_MS, &status, &ans, err, errlen) != 0)
		return -1;
	if (status != 200 || (arr = op_json_arr(ans, "limits")) == NULL) {
		snprintf(err, errlen, "GET %s: HTTP %ld, no limits list", url, status);
		json_object_put(ans);
		return -1;
	}
	json_object_object_add(st, "prev_limit", NULL);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (strcmp(op_json_str(e, "key", ""), key) != 0)
			continue;
		op_json_set_int(st, "prev_limit", op_json_int(e, "limit", 0));
		op_json_set_int(st, "prev_window_ms", op_json_int(e, "window_ms", 0));
	}
	json_object_put(ans);
	return 0;
}

/* PUT /api/limits/{key} through one node; 0 on 2xx. */
static int
rl_f_put_limit(const char *base, const char *key, int64_t limit, int64_t window_ms, char *err,
    size_t errlen)
{
	char enc[3 * RL_KEYNAME_MAX + 1], url[RL_REQ_URL_MAX], body[96];
	long status;
	json_object *ans;

	if (rl_pct_encode(key, enc, sizeof(enc)) != 0) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	snprintf(url, sizeof(url), "%s/api/limits/%s", base, enc);
	if (window_ms > 0)
		snprintf(body, sizeof(body), "{\"limit\":%lld,\"window_ms\":%lld}", (long long)limit,
		    (long long)window_ms);
	else
		snprintf(body, sizeof(body), "{\"limit\":%lld}", (long long)limit);
	if (rl_http_json("PUT", url, body, RL_ACTION_TIMEOUT_MS, &status, &ans, err, errlen) != 0)
		return -1;
	json_object_put(ans);
	if (status < 200 || status > 299) {
		snprintf(err, errlen, "PUT %s: HTTP %ld", url, status);
		return -1;
	}
	return 0;
}

static const struct rl_probe *
rl_f_other(const struct rl_probe *pr, size_t n, const struct rl_probe *not)
{
	for (size_t i = 0; i < n; i++)
		if (&pr[i] != not && pr[i].reachable)
			return &pr[i];
	return NULL;
}

/* GET /api/limits on one node: the key's entry (owned), or NULL with err. */
static json_object *
rl_f_limit_entry(const char *base, const char *key, json_object **all, char *err, size_t errlen)
{
	char url[RL_REQ_URL_MAX];
	long status;
	json_object *ans, *arr, *found = NULL;

	*all = NULL;
	snprintf(url, sizeof(url), "%s/api/limits", base);
	if (rl_http_json(NULL, url, NULL, RL_ACTION_TIMEOUT_MS, &status, &ans, err, errlen) != 0)
		return NULL;
	if (status != 200 || (arr = op_json_arr(ans, "limits")) == NULL) {
		snprintf(err, errlen, "GET %s: HTTP %ld, no limits list", url, status);
		json_object_put(ans);
		return NULL;
	}
	for (size_t i = 0; i < json_object_array_length(arr) && found == NULL; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (strcmp(op_json_str(e, "key", ""), key) == 0)
			found = json_object_get(e);
	}
	*all = ans;
	return found;
}

/* The limit one node enforces for key from its cache (its default when the
 * key has no explicit limit in its cache). */
static int
rl_f_cached_limit(const struct rl_probe *node, const char *key, int64_t *out, char *err,
    size_t errlen)
{
	json_object *all, *e = rl_f_limit_entry(node->url, key, &all, err, errlen);

	if (all == NULL)
		return -1;
	*out = e ? op_json_int(e, "cached_limit", -1) : op_json_int(all, "default_limit", -1);
	json_object_put(e);
	json_object_put(all);
	return 0;
}

static int rl_u_ghost(struct rl_priv *p, json_object *st, char *err, size_t errlen);

static int
rl_f_ghost(struct rl_priv *p, json_object *params, json_object **undo, char *err, size_t errlen)
{
	struct rl_probe pr[RL_NODES_MAX];
	const struct rl_probe *victim, *via;
	const char *key;
	char name[RL_ID_MAX + 16];
	redisContext *c;

	if (rl_fp_key(params, &key, err, errlen) != 0)
		return -1;
	rl_probe_nodes(p, pr);
	if ((victim = rl_fp_node(p, pr, params, err, errlen)) == NULL)
		return -1;
	if ((via = rl_f_other(pr, p->nnodes, victim)) == NULL) {
		snprintf(err, errlen, "ghost_allowing needs a second reachable node besides %s",
		    victim->id);
		return -1;
	}
	json_object *st = json_object_new_object();
	op_json_set_str(st, "target", key);
	op_json_set_str(st, "key", key);
	op_json_set_str(st, "node", victim->id);
	op_json_set_str(st, "node_url", victim->url);
	if (rl_f_prev_limit(via, key, st, err, errlen) != 0 ||
	    (c = rl_f_redis(p, err, errlen)) == NULL) {
		json_object_put(st);
		return -1;
	}
	snprintf(name, sizeof(name), "rlnode-%s-sub", victim->id);
	long long cid = rl_f_client_id(c, name, err, errlen);
	redisReply *r = cid < 0 ? NULL : rl_redis_cmd(c, err, errlen, "CLIENT KILL ID %lld", cid);
	redisFree(c);
	if (r == NULL) {
		json_object_put(st);
		return -1;
	}
	freeReplyObject(r);
	/* now, before the victim's subscriber is back (its reconnect waits >= 1 s) */
	if (rl_f_put_limit(via->url, key, 0, 0, err, errlen) != 0) {
		json_object_put(st);
		return -1;
	}
	op_json_set_str(st, "via", via->id);
	op_json_set_int(st, "killed_client_id", cid);
	/* The fault exists only if the victim really missed the change: a
	 * subscriber that reconnected before the PUBLISH, or a periodic refresh,
	 * would leave nothing broken, and a campaign would score a non-fault. */
	int64_t cached = -1;
	if (rl_f_cached_limit(victim, key, &cached, err, errlen) != 0 || cached == 0) {
		char uerr[256] = "";
		if (cached == 0)
			snprintf(err, errlen, "node %s already enforces limit 0 on %s: it did not miss "
			    "the change (its subscriber reconnected first, or a limits refresh ran)",
			    victim->id, key);
		if (rl_u_ghost(p, st, uerr, sizeof(uerr)) != 0)
			log_warn("ghost_allowing: restoring %s after a failed injection: %s", key, uerr);
		json_object_put(st);
		return -1;
	}
	op_json_set_int(st, "victim_cached_limit", cached);
	*undo = st;
	log_info("ghost_allowing on %s: killed %s (id %lld), limit 0 set via %s", key, name, cid,
	    via->id);
	return 0;
}

static int
rl_u_ghost(struct rl_priv *p, json_object *st, char *err, size_t errlen)
{
	struct rl_probe pr[RL_NODES_MAX];
	const char *key = op_json_str(st, "key", NULL), *node = op_json_str(st, "node", "");
	const struct rl_probe *any, *victim;
	json_object *prev;
	char url[RL_REQ_URL_MAX], e2[256] = "";
	long status;
	json_object *ans;
	int rc = 0;

	if (key == NULL) {
		snprintf(err, errlen, "undo state has no key");
		return -1;
	}
	rl_probe_nodes(p, pr);
	if ((any = rl_f_other(pr, p->nnodes, NULL)) == NULL) {
		snprintf(err, errlen, "no rate-limiter node is reachable");
		return -1;
	}
	if (json_object_object_get_ex(st, "prev_limit", &prev) && prev != NULL) {
		rc = rl_f_put_limit(any->url, key, json_object_get_int64(prev),
		    op_json_int(st, "prev_window_ms", 0), err, errlen);
	} else {
		char enc[3 * RL_KEYNAME_MAX + 1];
		rl_pct_encode(key, enc, sizeof(enc));
		snprintf(url, sizeof(url), "%s/api/limits/%s", any->url, enc);
		rc = rl_http_json("DELETE", url, NULL, RL_ACTION_TIMEOUT_MS, &status, &ans, err,
		    errlen);
		json_object_put(ans);
		if (rc == 0 && (status < 200 || status > 299) && status != 404) {
			snprintf(err, errlen, "DELETE %s: HTTP %ld", url, status);
			rc = -1;
		}
	}
	/* the victim would otherwise keep the limit it cached until its refresh */
	victim = rl_probe_find(pr, p->nnodes, node);
	if (victim == NULL)
		victim = rl_probe_find(pr, p->nnodes, op_json_str(st, "node_url", ""));
	if (victim && victim->reachable) {
		snprintf(url, sizeof(url), "%s/api/resync", victim->url);
		if (rl_http_json("POST", url, "{}", RL_ACTION_TIMEOUT_MS, &status, &ans, e2,
			sizeof(e2)) != 0 || status != 200) {
			if (rc == 0)
				snprintf(err, errlen, "resync of %s failed: %s (HTTP %ld)", node, e2,
				    status);
			rc = -1;
		}
		json_object_put(ans);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* node_kill */

static int
rl_f_readlink(const char *path, char *out, size_t len)
{
	ssize_t n = readlink(path, out, len - 1);

	if (n < 0)
		return -1;
	out[n] = '\0';
	return 0;
}

/* argv of a process as a JSON array of strings. */
static json_object *
rl_f_cmdline(long long pid, char *err, size_t errlen)
{
	char path[64], buf[RL_CMDLINE_MAX];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%lld/cmdline", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		snprintf(err, errlen, "%s: empty (a zombie or a kernel thread)", path);
		return NULL;
	}
	buf[n] = '\0';
	json_object *a = json_object_new_array();
	for (ssize_t i = 0; i < n && json_object_array_length(a) < RL_ARGV_MAX;
	     i += (ssize_t)strlen(buf + i) + 1)
		json_object_array_add(a, json_object_new_string(buf + i));
	return a;
}

static int
rl_f_kill(struct rl_priv *p, json_object *params, json_object **undo, char *err, size_t errlen)
{
	struct rl_probe pr[RL_NODES_MAX];
	const struct rl_probe *v;
	char path[64], cwd[RL_PATH_MAX], exe[RL_PATH_MAX];
	json_object *argv;

	rl_probe_nodes(p, pr);
	if ((v = rl_fp_node(p, pr, params, err, errlen)) == NULL)
		return -1;
	if (v->pid <= 1 || v->pid == (int64_t)getpid()) {
		snprintf(err, errlen, "node %s reports pid %lld: refusing to kill it", v->id,
		    (long long)v->pid);
		return -1;
	}
	if ((argv = rl_f_cmdline(v->pid, err, errlen)) == NULL)
		return -1;
	snprintf(path, sizeof(path), "/proc/%lld/cwd", (long long)v->pid);
	int have_cwd = rl_f_readlink(path, cwd, sizeof(cwd)) == 0;
	snprintf(path, sizeof(path), "/proc/%lld/exe", (long long)v->pid);
	int have_exe = rl_f_readlink(path, exe, sizeof(exe)) == 0;
	const char *a0 = json_object_get_string(json_object_array_get_idx(argv, 0));
	/* /health could name any pid: only ever kill what is really an rlnode */
	if (!have_cwd || !have_exe || (strstr(a0, "rlnode") == NULL && strstr(exe, "rlnode") == NULL)) {
		snprintf(err, errlen, "pid %lld (%s) of node %s is not an rlnode we can inspect",
		    (long long)v->pid, a0, v->id);
		json_object_put(argv);
		return -1;
	}
	char *del = strstr(exe, " (deleted)");
	if (del)
		*del = '\0'; /* rebuilt since it started: respawn the new binary */
	if (kill((pid_t)v->pid, SIGKILL) != 0) {
		snprintf(err, errlen, "kill %lld: %s", (long long)v->pid, strerror(errno));
		json_object_put(argv);
		return -1;
	}
	json_object *st = json_object_new_object();
	op_json_set_str(st, "target", v->id);
	op_json_set_str(st, "node", v->id);
	op_json_set_str(st, "url", v->url);
	op_json_set_int(st, "pid", v->pid);
	json_object_object_add(st, "argv", argv);
	op_json_set_str(st, "cwd", cwd);
	op_json_set_str(st, "exe", exe);
	*undo = st;
	log_info("node_kill: SIGKILL node %s pid %lld", v->id, (long long)v->pid);
	return 0;
}

/* Closes every inherited descriptor from `from` on except `keep`: a respawned
 * node or a watchdog must not hold the worker's lifeline or nng sockets. */
static void
rl_close_from(int from, int keep)
{
	if (keep < from) {
		if (close_range((unsigned)from, ~0U, 0) == 0)
			return;
	} else if ((keep == from || close_range((unsigned)from, (unsigned)keep - 1, 0) == 0) &&
	    close_range((unsigned)keep + 1, ~0U, 0) == 0) {
		return;
	}
	/* kernels before 5.9 have no close_range: the slow way */
	long max = sysconf(_SC_OPEN_MAX);

	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = from; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

/* Starts argv detached (double fork + setsid) in cwd with its output appended
 * to logpath. Only async-signal-safe calls happen between fork and exec:
 * this runs in workers that hold nng state. Returns 0 once exec succeeded. */
static int
rl_f_spawn(const char *exe, char *const argv[], const char *cwd, const char *logpath,
    char *err, size_t errlen)
{
	int pfd[2], logfd, nullfd, st, ec = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0) {
		snprintf(err, errlen, "%s: %s", logfd < 0 ? logpath : "/dev/null", strerror(errno));
		goto fail;
	}
	if ((pid = fork()) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		if (setsid() < 0 || (pid = fork()) < 0)
			_exit(1);
		if (pid > 0)
			_exit(0);
		/* the worker's blocked or ignored signals would survive exec and
		 * leave a node that SIGTERM cannot stop */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				signal(sig, SIG_DFL);
		if (chdir(cwd) != 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 ||
		    dup2(logfd, 2) < 0)
			goto child_fail;
		rl_close_from(3, pfd[1]);
		execv(exe, argv);
child_fail:
		ec = errno;
		if (write(pfd[1], &ec, sizeof(ec)) < 0)
			_exit(127);
		_exit(127);
	}
	close(pfd[1]);
	pfd[1] = -1;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	ssize_t n;
	while ((n = read(pfd[0], &ec, sizeof(ec))) < 0 && errno == EINTR)
		;
	close(pfd[0]);
	close(logfd);
	close(nullfd);
	if (n == (ssize_t)sizeof(ec)) {
		snprintf(err, errlen, "exec %s in %s: %s", exe, cwd, strerror(ec));
		return -1;
	}
	return 0;
fail:
	close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (logfd >= 0)
		close(logfd);
	if (nullfd >= 0)
		close(nullfd);
	return -1;
}

static int
rl_f_wait_health(const char *url, int64_t wait_ms)
{
	char hurl[RL_REQ_URL_MAX];
	int64_t deadline = op_mono_ms() + wait_ms;

	snprintf(hurl, sizeof(hurl), "%s/health", url);
	do {
		long status;
		json_object *ans;
		char e[128];
		if (rl_http_json(NULL, hurl, NULL, 500, &status, &ans, e, sizeof(e)) == 0 &&
		    status == 200) {
			json_object_put(ans);
			return 0;
		}
		json_object_put(ans);
		op_sleep_ms(RL_POLL_MS);
	} while (op_mono_ms() < deadline);
	return -1;
}

static int
rl_u_kill(struct rl_priv *p, json_object *st, char *err, size_t errlen)
{
	json_object *ja = op_json_arr(st, "argv");
	const char *cwd = op_json_str(st, "cwd", NULL), *exe = op_json_str(st, "exe", NULL);
	const char *url = op_json_str(st, "url", NULL), *node = op_json_str(st, "node", "node");
	char *argv[RL_ARGV_MAX + 1], logpath[RL_PATH_MAX + 80], a0[RL_PATH_MAX + 2];
	size_t n = ja ? json_object_array_length(ja) : 0;
	struct stat sb;

	(void)p;
	if (n == 0 || n > RL_ARGV_MAX || cwd == NULL || url == NULL) {
		snprintf(err, errlen, "undo state lacks argv, cwd or url");
		return -1;
	}
	/* someone (a supervisor, an operator) may have restarted it already */
	if (rl_f_wait_health(url, 0) == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		argv[i] = (char *)json_object_get_string(json_object_array_get_idx(ja, i));
	argv[n] = NULL;
	if (exe == NULL || stat(exe, &sb) != 0) {
		/* the recorded binary is gone: argv[0] as the node was started */
		if (argv[0][0] == '/')
			exe = argv[0];
		else {
			snprintf(a0, sizeof(a0), "%s/%s", cwd, argv[0]);
			exe = a0;
		}
	}
	snprintf(logpath, sizeof(logpath), "%s/rlnode-%s.log", cwd, node);
	if (rl_f_spawn(exe, argv, cwd, logpath, err, errlen) != 0)
		return -1;
	if (rl_f_wait_health(url, RL_RESPAWN_WAIT_MS) != 0) {
		snprintf(err, errlen, "respawned %s but %s/health did not answer within %d ms (see %s)",
		    exe, url, RL_RESPAWN_WAIT_MS, logpath);
		return -1;
	}
	log_info("node_kill undo: node %s respawned, /health answers", node);
	return 0;
}

/* ------------------------------------------------------------------ */
/* redis_outage
 *
 * CLIENT PAUSE ALL would be the natural tool, but Redis 7.0 also holds back
 * CLIENT UNPAUSE while paused ALL (tested: the UNPAUSE only runs when the
 * pause expires), so it cannot be undone early, and shutdown would wait out
 * the TTL. When redis-server runs on this host, the outage is a SIGSTOP
 * instead: connections hang exactly as with a pause, and SIGCONT ends it at
 * once. A detached watchdog sends SIGCONT at the TTL, so the fault heals even
 * if operatord dies meanwhile. A remote Redis falls back to CLIENT PAUSE ALL
 * (self-healing by Redis itself), whose undo waits for it to expire. */

static int
rl_f_is_redis(long long pid)
{
	char path[64], comm[64] = "";
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%lld/comm", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	comm[n > 0 ? n : 0] = '\0';
	return strncmp(comm, "redis-server", 12) == 0 && kill((pid_t)pid, 0) == 0;
}

static long long
rl_f_redis_pid(redisContext *c)
{
	char err[128];
	redisReply *r = rl_redis_cmd(c, err, sizeof(err), "INFO server");
	long long pid = -1;
	const char *s;

	if (r == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STRING && (s = strstr(r->str, "process_id:")) != NULL)
		pid = strtoll(s + 11, NULL, 10);
	freeReplyObject(r);
	return pid;
}

/* Detached: sleeps ttl then SIGCONTs pid. Harmless if undo came first. */
static int
rl_f_watchdog(long long pid, int64_t ttl_ms)
{
	pid_t c = fork();
	int st;

	if (c < 0)
		return -1;
	if (c == 0) {
		if (setsid() < 0 || (c = fork()) != 0)
			_exit(c < 0);
		rl_close_from(0, -1);
		struct timespec ts = {ttl_ms / 1000, (ttl_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		kill((pid_t)pid, SIGCONT);
		_exit(0);
	}
	while (waitpid(c, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int
rl_f_outage(struct rl_priv *p, json_object *params, json_object **undo, char *err,
    size_t errlen)
{
	int64_t ttl;
	redisContext *c;

	if (rl_fp_int(params, "ttl_ms", RL_OUTAGE_DEF_MS, 100, RL_OUTAGE_MAX_MS, &ttl, err,
		errlen) != 0 || (c = rl_f_redis(p, err, errlen)) == NULL)
		return -1;
	long long pid = rl_f_redis_pid(c);
	json_object *st = json_object_new_object();
	op_json_set_str(st, "target", "redis");
	op_json_set_int(st, "ttl_ms", ttl);
	op_json_set_int(st, "until_ms", op_wall_ms() + ttl);
	if (pid > 1 && rl_f_is_redis(pid) && rl_f_watchdog(pid, ttl) == 0) {
		redisFree(c);
		if (kill((pid_t)pid, SIGSTOP) != 0) {
			snprintf(err, errlen, "SIGSTOP redis-server %lld: %s", pid, strerror(errno));
			json_object_put(st);
			return -1;
		}
		op_json_set_str(st, "method", "sigstop");
		op_json_set_int(st, "pid", pid);
	} else {
		redisReply *r = rl_redis_cmd(c, err, errlen, "CLIENT PAUSE %lld ALL", (long long)ttl);
		redisFree(c);
		if (r == NULL) {
			json_object_put(st);
			return -1;
		}
		freeReplyObject(r);
		op_json_set_str(st, "method", "client_pause_all");
	}
	*undo = st;
	log_info("redis_outage for %lld ms (%s)", (long long)ttl, op_json_str(st, "method", "?"));
	return 0;
}

static int
rl_f_wait_redis(struct rl_priv *p, int64_t wait_ms, char *err, size_t errlen)
{
	int64_t deadline = op_mono_ms() + wait_ms;

	do {
		if (rl_f_redis_simple(p, err, errlen, "PING", NULL) == 0)
			return 0;
		op_sleep_ms(RL_POLL_MS);
	} while (op_mono_ms() < deadline);
	return -1;
}

static int
rl_u_outage(struct rl_priv *p, json_object *st, char *err, size_t errlen)
{
	const char *method = op_json_str(st, "method", "");

	if (strcmp(method, "sigstop") == 0) {
		long long pid = op_json_int(st, "pid", -1);
		/* only a redis-server: the pid may have been reused since */
		if (pid > 1 && rl_f_is_redis(pid) && kill((pid_t)pid, SIGCONT) != 0) {
			snprintf(err, errlen, "SIGCONT %lld: %s", pid, strerror(errno));
			return -1;
		}
		return rl_f_wait_redis(p, 2000, err, errlen);
	}
	/* CLIENT PAUSE ALL: nothing ends it early; wait until Redis lifts it */
	int64_t left = op_json_int(st, "until_ms", 0) - op_wall_ms();
	if (left < 0)
		left = 0;
	if (left > RL_OUTAGE_MAX_MS)
		left = RL_OUTAGE_MAX_MS;
	return rl_f_wait_redis(p, left + 2000, err, errlen);
}

/* ------------------------------------------------------------------ */

int
rl_inject(struct op_subject *s, const char *fault, json_object *params, json_object **undo,
    char *err, size_t errlen)
{
	struct rl_priv *p = s->priv;

	*undo = NULL;
	err[0] = '\0';
	if (strcmp(fault, "counter_drift") == 0)
		return rl_f_drift(p, params, undo, err, errlen);
	if (strcmp(fault, "ghost_allowing") == 0)
		return rl_f_ghost(p, params, undo, err, errlen);
	if (strcmp(fault, "node_kill") == 0)
		return rl_f_kill(p, params, undo, err, errlen);
	if (strcmp(fault, "redis_outage") == 0)
		return rl_f_outage(p, params, undo, err, errlen);
	snprintf(err, errlen, "unknown fault \"%s\"", fault);
	return -1;
}

int
rl_undo(struct op_subject *s, const char *fault, json_object *undo, char *err, size_t errlen)
{
	struct rl_priv *p = s->priv;

	err[0] = '\0';
	if (strcmp(fault, "counter_drift") == 0)
		return rl_f_redis_simple(p, err, errlen, "CLIENT", "UNPAUSE");
	if (strcmp(fault, "ghost_allowing") == 0)
		return rl_u_ghost(p, undo, err, errlen);
	if (strcmp(fault, "node_kill") == 0)
		return rl_u_kill(p, undo, err, errlen);
	if (strcmp(fault, "redis_outage") == 0)
		return rl_u_outage(p, undo, err, errlen);
	snprintf(err, errlen, "unknown fault \"%s\"", fault);
	return -1;
}
