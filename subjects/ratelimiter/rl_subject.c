/* rl_subject: the rate limiter as a subject: configuration, the helpers its
 * parts share and the operations table. The observation is built in
 * rl_observe.c and judged in rl_check.c.
 *
 * The observer's own Redis view decides redis_unreachable; every configured
 * node is asked in parallel, so a dead node is one unreachable entry, not a
 * failed observation. Counters are read for a window ending RL_SETTLE_MS in
 * the past, on Redis's clock, so requests still in flight do not look like
 * drift. */
#include "subjects/ratelimiter/rl_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

static const struct op_invariant_def rl_invariants[] = {
	{RL_INV_NODE_DOWN, "critical", 2000, 2000,
	    "a configured rlnode does not answer GET /health"},
	{RL_INV_REDIS, "critical", 1000, 2000,
	    "the operator cannot PING Redis, the limiter's shared state"},
	{RL_INV_DRIFT, "warning", 1000, 3000,
	    "Redis counted a different number of requests for a key than the nodes allowed "
	    "in the same settled window"},
	{RL_INV_OVER, "warning", 1000, 3000,
	    "the nodes together allowed more requests for a key than its limit in one window"},
	{RL_INV_GHOST, "warning", 1000, 3000,
	    "a key whose limit is 0 still has requests allowed by some node"},
	{RL_INV_LATENCY, "warning", 5000, 5000,
	    "a node's /check p99 latency is above the threshold"},
};

/* ------------------------------------------------------------------ */
/* configuration */

static int
rl_cfg_nodes(struct rl_priv *p, const char *list, char *err, size_t errlen)
{
	char buf[RL_NODES_MAX * RL_URL_MAX];
	char *save = NULL;

	if (op_strlcpy(buf, list, sizeof(buf)) >= sizeof(buf)) {
		snprintf(err, errlen, "[" RL_SECTION "] nodes: list too long");
		return -1;
	}
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ' || *t == '\t')
			t++;
		size_t len = strlen(t);
		while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t' || t[len - 1] == '/'))
			t[--len] = '\0';
		if (len == 0)
			continue;
		if (strncmp(t, "http://", 7) != 0 && strncmp(t, "https://", 8) != 0) {
			snprintf(err, errlen, "[" RL_SECTION "] nodes: \"%s\" is not an http(s) URL", t);
			return -1;
		}
		if (len >= RL_URL_MAX) {
			snprintf(err, errlen, "[" RL_SECTION "] nodes: URL longer than %d bytes",
			    RL_URL_MAX - 1);
			return -1;
		}
		if (p->nnodes == RL_NODES_MAX) {
			snprintf(err, errlen, "[" RL_SECTION "] nodes: more than %d nodes",
			    RL_NODES_MAX);
			return -1;
		}
		for (size_t i = 0; i < p->nnodes; i++)
			if (strcmp(p->nodes[i], t) == 0) {
				snprintf(err, errlen, "[" RL_SECTION "] nodes: \"%s\" listed twice", t);
				return -1;
			}
		op_strlcpy(p->nodes[p->nnodes++], t, RL_URL_MAX);
	}
	if (p->nnodes == 0) {
		snprintf(err, errlen, "[" RL_SECTION "] nodes: at least one node URL is required");
		return -1;
	}
	return 0;
}

static int
rl_cfg_read(struct rl_priv *p, const struct op_config *cfg, char *err, size_t errlen)
{
	const char *v = op_config_get(cfg, RL_SECTION, "redis");

	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "[" RL_SECTION "] redis: required (HOST:PORT)");
		return -1;
	}
	if (op_split_hostport(v, p->redis_host, sizeof(p->redis_host), &p->redis_port) != 0 ||
	    p->redis_host[0] == '\0') {
		snprintf(err, errlen, "[" RL_SECTION "] redis: \"%s\" is not HOST:PORT", v);
		return -1;
	}
	v = op_config_get(cfg, RL_SECTION, "nodes");
	if (v == NULL) {
		snprintf(err, errlen, "[" RL_SECTION "] nodes: required (URL,URL,...)");
		return -1;
	}
	if (rl_cfg_nodes(p, v, err, errlen) != 0)
		return -1;
	if (op_config_duration(cfg, RL_SECTION, "timeout", RL_DEF_HTTP_TIMEOUT_MS, &p->timeout_ms,
		err, errlen) != 0)
		return -1;
	if (p->timeout_ms < 10 || p->timeout_ms > 60000) {
		snprintf(err, errlen, "[" RL_SECTION "] timeout: must be between 10ms and 60s");
		return -1;
	}
	if (op_config_int(cfg, RL_SECTION, "drift_tolerance", RL_DEF_DRIFT_TOL, 0, 1000000000,
		&p->drift_tol, err, errlen) != 0)
		return -1;
	if (op_config_int(cfg, RL_SECTION, "latency_p99_ms", RL_DEF_LATENCY_P99_MS, 1, 3600000,
		&p->latency_p99_ms, err, errlen) != 0)
		return -1;
	if (op_config_int(cfg, RL_SECTION, "min_checks", RL_DEF_MIN_CHECKS, 0, 1000000000,
		&p->min_checks, err, errlen) != 0)
		return -1;
	return 0;
}

static int
rl_create(struct op_subject *s, const struct op_config *cfg, char *err, size_t errlen)
{
	struct rl_priv *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (rl_cfg_read(p, cfg, err, errlen) != 0) {
		free(p);
		return -1;
	}
	s->priv = p;
	return 0;
}

static void
rl_destroy(struct op_subject *s)
{
	struct rl_priv *p = s->priv;

	if (p == NULL)
		return;
	if (p->rc)
		redisFree(p->rc);
	free(p);
	s->priv = NULL;
}

/* ------------------------------------------------------------------ */
/* shared helpers */

redisContext *
rl_redis_open(const struct rl_priv *p, int64_t timeout_ms, char *err, size_t errlen)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(p->redis_host, p->redis_port, tv);

	if (c == NULL) {
		snprintf(err, errlen, "redis %s:%d: out of memory", p->redis_host, p->redis_port);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis %s:%d: %s", p->redis_host, p->redis_port, c->errstr);
		redisFree(c);
		return NULL;
	}
	/* the connect timeout does not cover commands: a paused Redis would hang us */
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, errlen, "redis %s:%d: cannot set timeout", p->redis_host,
		    p->redis_port);
		redisFree(c);
		return NULL;
	}
	return c;
}

redisReply *
rl_redis_cmd(redisContext *c, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r == NULL) {
		/* hiredis reports its socket timeout as the bare EAGAIN text */
		if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
			snprintf(err, errlen, "timed out");
		else
			snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "no reply");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s", r->str ? r->str : "error reply");
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

int
rl_http_json(const char *method, const char *url, const char *body, int64_t timeout_ms,
    long *status, json_object **out, char *err, size_t errlen)
{
	struct op_http_req r;
	char perr[128];

	memset(&r, 0, sizeof(r));
	r.method = method;
	r.url = url;
	r.body = body;
	r.timeout_ms = timeout_ms;
	r.connect_timeout_ms = timeout_ms;
	*status = 0;
	*out = NULL;
	if (op_http_do(&r) != 0) {
		snprintf(err, errlen, "%s %s: %s", method ? method : "GET", url, r.err);
		op_http_req_reset(&r);
		return -1;
	}
	*status = r.status;
	if (r.resp && r.resp_len > 0)
		*out = op_json_parse(r.resp, r.resp_len, perr, sizeof(perr));
	if (*out == NULL)
		snprintf(err, errlen, "%s %s: HTTP %ld, %s", method ? method : "GET", url, r.status,
		    r.resp_len ? perr : "empty body");
	op_http_req_reset(&r);
	return 0;
}

int
rl_pct_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *c = (const unsigned char *)in; *c; c++) {
		/* RFC 3986 unreserved characters pass; everything else, '/' included, is escaped */
		int plain = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.' || *c == '~';
		if (o + (plain ? 1 : 3) >= outlen)
			return -1;
		if (plain) {
			out[o++] = (char)*c;
		} else {
			out[o++] = '%';
			out[o++] = hex[*c >> 4];
			out[o++] = hex[*c & 15];
		}
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return 0;
}

void
rl_req_get(struct op_http_req *r, const char *url, int64_t timeout_ms)
{
	memset(r, 0, sizeof(*r));
	r->url = url;
	r->timeout_ms = timeout_ms;
	/* a dead host must not take the default 1 s connect timeout when ours is shorter */
	r->connect_timeout_ms = timeout_ms;
}

/* Parses a 200 JSON object answer; NULL with err otherwise. */
json_object *
rl_req_json(struct op_http_req *r, char *err, size_t errlen)
{
	json_object *o;
	char perr[128];

	if (r->err[0]) {
		snprintf(err, errlen, "%s", r->err);
		return NULL;
	}
	if (r->status != 200) {
		snprintf(err, errlen, "HTTP %ld", r->status);
		return NULL;
	}
	o = op_json_parse(r->resp, r->resp_len, perr, sizeof(perr));
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "%s", o ? "answer is not a JSON object" : perr);
		json_object_put(o);
		return NULL;
	}
	return o;
}

size_t
rl_probe_nodes(struct rl_priv *p, struct rl_probe *out)
{
	struct op_http_req reqs[RL_NODES_MAX];
	char urls[RL_NODES_MAX][RL_REQ_URL_MAX];
	size_t ok = 0;

	for (size_t i = 0; i < p->nnodes; i++) {
		snprintf(urls[i], sizeof(urls[i]), "%s" RLW_PATH_HEALTH, p->nodes[i]);
		rl_req_get(&reqs[i], urls[i], p->timeout_ms);
	}
	op_http_multi(reqs, p->nnodes);
	for (size_t i = 0; i < p->nnodes; i++) {
		struct rl_probe *pr = &out[i];
		json_object *h;

		memset(pr, 0, sizeof(*pr));
		op_strlcpy(pr->url, p->nodes[i], sizeof(pr->url));
		h = rl_req_json(&reqs[i], pr->err, sizeof(pr->err));
		if (h != NULL) {
			pr->reachable = 1;
			pr->pid = op_json_int(h, "pid", 0);
			op_strlcpy(pr->id, op_json_str(h, "node_id", ""), sizeof(pr->id));
			if (pr->id[0])
				op_strlcpy(p->node_ids[i], pr->id, RL_ID_MAX);
			ok++;
			json_object_put(h);
		}
		if (pr->id[0] == '\0')
			op_strlcpy(pr->id, p->node_ids[i][0] ? p->node_ids[i] : p->nodes[i],
			    sizeof(pr->id));
		op_http_req_reset(&reqs[i]);
	}
	return ok;
}

const struct rl_probe *
rl_probe_find(const struct rl_probe *pr, size_t n, const char *node)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(pr[i].id, node) == 0 || strcmp(pr[i].url, node) == 0)
			return &pr[i];
	return NULL;
}

static json_object *
rl_find_in(json_object *obs, const char *arr, const char *field, const char *val)
{
	json_object *a = op_json_arr(obs, arr);

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i);
		const char *v = op_json_str(e, field, NULL);
		if (v && strcmp(v, val) == 0)
			return e;
	}
	return NULL;
}

json_object *
rl_obs_key(json_object *obs, const char *key)
{
	return rl_find_in(obs, "keys", "key", key);
}

json_object *
rl_obs_node(json_object *obs, const char *id)
{
	json_object *n = rl_find_in(obs, "nodes", "id", id);

	return n ? n : rl_find_in(obs, "nodes", "url", id);
}

const struct op_subject_ops rl_subject_ops = {
	.name = RL_SUBJECT,
	.description =
	    "A distributed rate limiter: several rlnode processes answer POST /check {key} "
	    "with 200 (allowed) or 429 (blocked). A sliding-window log per key lives in a "
	    "shared Redis ZSET maintained by one Lua script on Redis TIME; per-key limits live "
	    "in Redis hashes, each node caches them and is told of changes by pub/sub "
	    "(rl:limits:changed). Each node also accounts what it allowed, so the sum over the "
	    "nodes can be compared with Redis's count (drift). A node that misses a limit "
	    "change keeps enforcing its stale cached limit until its 60 s refresh or "
	    "POST /api/resync. A node whose Redis call times out (150 ms) retries on another "
	    "connection, so a Redis stall double-counts.",
	.invariants = rl_invariants,
	.ninvariants = OP_ARRAY_LEN(rl_invariants),
	.actions = rl_actions,
	.nactions = RL_NACTIONS,
	.faults = rl_faults,
	.nfaults = RL_NFAULTS,
	.create = rl_create,
	.destroy = rl_destroy,
	.observe = rl_observe,
	.check = rl_check,
	.diagnose = rl_diagnose,
	.precheck = rl_precheck,
	.execute = rl_execute,
	.inject = rl_inject,
	.undo = rl_undo,
};
