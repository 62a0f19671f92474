/* rl_subject: the rate limiter as a subject. Reads the configuration,
 * observes every node and Redis itself (never through one node only), and
 * evaluates the invariants on that observation.
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

static void
rl_req_get(struct op_http_req *r, const char *url, int64_t timeout_ms)
{
	memset(r, 0, sizeof(*r));
	r->url = url;
	r->timeout_ms = timeout_ms;
	/* a dead host must not take the default 1 s connect timeout when ours is shorter */
	r->connect_timeout_ms = timeout_ms;
}

/* Parses a 200 JSON object answer; NULL with err otherwise. */
static json_object *
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

/* ------------------------------------------------------------------ */
/* observe */

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

static int
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

/* ------------------------------------------------------------------ */
/* check */

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
