/* pdclient: PD v1 HTTP client: endpoints, request bodies and calls. Decoding
 * of the answers is in pd_parse.c. See pdclient.h and shared/reference/pd-api.md. */
#include "subjects/tikv/pdclient.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http.h"
#include "common/util.h"

#define PD_API "/pd/api/v1"
#define PD_BODY_LEN 512        /* bytes; every request body we build fits */

/* ---------------------------------------------------------------- bodies */

static int
fit(int n, size_t size)
{
	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

int
pd_build_transfer_leader_body(char *buf, size_t size, uint64_t region_id, uint64_t to_store_id)
{
	/* "to_store_id", not "store_id": the prior operator's bug (§10.2.1). */
	return fit(snprintf(buf, size,
	    "{\"name\":\"transfer-leader\",\"region_id\":%" PRIu64 ",\"to_store_id\":%" PRIu64 "}",
	    region_id, to_store_id), size);
}

int
pd_build_transfer_peer_body(char *buf, size_t size, uint64_t region_id, uint64_t from_store_id,
    uint64_t to_store_id)
{
	return fit(snprintf(buf, size,
	    "{\"name\":\"transfer-peer\",\"region_id\":%" PRIu64 ",\"from_store_id\":%" PRIu64
	    ",\"to_store_id\":%" PRIu64 "}", region_id, from_store_id, to_store_id), size);
}

static int
safe_name(const char *name)
{
	if (name == NULL || *name == '\0')
		return 0;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return 0;
	return 1;
}

int
pd_build_peer_body(char *buf, size_t size, const char *name, uint64_t region_id,
    uint64_t store_id)
{
	if (!safe_name(name))
		return -1;
	return fit(snprintf(buf, size,
	    "{\"name\":\"%s\",\"region_id\":%" PRIu64 ",\"store_id\":%" PRIu64 "}", name, region_id,
	    store_id), size);
}

int
pd_build_transfer_region_body(char *buf, size_t size, uint64_t region_id,
    const uint64_t *to_store_ids, const char *const *roles, size_t n)
{
	size_t off = 0;
	int k;

#define APPEND(...)                                                      \
	do {                                                             \
		k = snprintf(buf + off, size - off, __VA_ARGS__);        \
		if (k < 0 || (size_t)k >= size - off)                    \
			return -1;                                       \
		off += (size_t)k;                                        \
	} while (0)
	if (size == 0)
		return -1;
	APPEND("{\"name\":\"transfer-region\",\"region_id\":%" PRIu64 ",\"to_store_ids\":[",
	    region_id);
	for (size_t i = 0; i < n; i++)
		APPEND("%s%" PRIu64, i ? "," : "", to_store_ids[i]);
	APPEND("]");
	if (roles != NULL) {
		APPEND(",\"peer_roles\":[");
		for (size_t i = 0; i < n; i++) {
			if (!safe_name(roles[i]))
				return -1;
			APPEND("%s\"%s\"", i ? "," : "", roles[i]);
		}
		APPEND("]");
	}
	APPEND("}");
#undef APPEND
	return (int)off;
}

int
pd_build_scheduler_body(char *buf, size_t size, const char *name, uint64_t store_id)
{
	if (!safe_name(name))
		return -1;
	if (store_id == 0)
		return fit(snprintf(buf, size, "{\"name\":\"%s\"}", name), size);
	return fit(snprintf(buf, size, "{\"name\":\"%s\",\"store_id\":%" PRIu64 "}", name,
	    store_id), size);
}

/* ---------------------------------------------------------------- calls */

int
pd_client_init(struct pd_client *c, const char *base_url, int64_t timeout_ms,
    int64_t connect_timeout_ms, struct pd_err *err)
{
	memset(c, 0, sizeof(*c));
	if (base_url == NULL || (strncmp(base_url, "http://", 7) != 0 &&
	    strncmp(base_url, "https://", 8) != 0) || strlen(base_url) >= sizeof(c->base_url)) {
		pd_err_set(err, 0, PD_ERR_INVALID, "PD URL must be http(s)://host:port, got \"%.100s\"",
		    base_url ? base_url : "(null)");
		return -1;
	}
	op_strlcpy(c->base_url, base_url, sizeof(c->base_url));
	size_t n = strlen(c->base_url);
	while (n > 0 && c->base_url[n - 1] == '/')
		c->base_url[--n] = '\0';
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : PD_DEFAULT_TIMEOUT_MS;
	c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms
						       : PD_DEFAULT_CONNECT_TIMEOUT_MS;
	pd_err_clear(err);
	return 0;
}

/* One request. On success (2xx) returns 0 with the answer in r (caller
 * frees r->resp); on any failure fills err, frees the answer and returns -1.
 * what is "GET /pd/api/v1/stores" for messages. */
static int
pd_request(const struct pd_client *c, const char *method, const char *path, const char *body,
    struct op_http_req *r, char *what, size_t whatlen, struct pd_err *err)
{
	char url[PD_URL_LEN + 256];

	snprintf(what, whatlen, "%s %s", method, path);
	memset(r, 0, sizeof(*r));
	if ((size_t)snprintf(url, sizeof(url), "%s%s", c->base_url, path) >= sizeof(url)) {
		pd_err_set(err, 0, PD_ERR_INVALID, "%s: URL too long", what);
		return -1;
	}
	r->method = method;
	r->url = url;
	r->body = body;
	r->timeout_ms = c->timeout_ms;
	r->connect_timeout_ms = c->connect_timeout_ms;
	if (op_http_do(r) != 0) {
		/* libcurl says "Timeout was reached" (CURLE_OPERATION_TIMEDOUT). */
		int to = strstr(r->err, "imeout") != NULL || strstr(r->err, "timed out") != NULL;
		pd_err_set(err, 0, to ? PD_ERR_TIMEOUT : PD_ERR_TRANSPORT, "%s: %s after %" PRId64
		    " ms: %s", what, to ? "timeout" : "no answer", r->elapsed_ms, r->err);
		op_http_req_reset(r);
		return -1;
	}
	r->url = NULL;
	if (r->status < 200 || r->status > 299) {
		pd_parse_error(what, r->status, r->resp, r->resp_len, err);
		op_http_req_reset(r);
		return -1;
	}
	pd_err_clear(err);
	return 0;
}

/* Prefixes a parse error with the request, so it says which call failed. */
static void
prefix_err(struct pd_err *err, const char *what)
{
	char tmp[PD_ERR_MSG_LEN + 320];

	if (err == NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s: %s", what, err->message);
	op_strlcpy(err->message, tmp, sizeof(err->message));
}

typedef int (*parse_fn)(const char *, size_t, void *, struct pd_err *);

static int
pd_call_parse(const struct pd_client *c, const char *method, const char *path,
    const char *body, parse_fn fn, void *out, struct pd_err *err)
{
	struct op_http_req r;
	char what[300];
	int rc;

	if (pd_request(c, method, path, body, &r, what, sizeof(what), err) != 0)
		return -1;
	rc = fn(r.resp, r.resp_len, out, err);
	if (rc != 0)
		prefix_err(err, what);
	op_http_req_reset(&r);
	return rc;
}

static int
pd_call(const struct pd_client *c, const char *method, const char *path, const char *body,
    struct pd_err *err)
{
	struct op_http_req r;
	char what[300];

	if (pd_request(c, method, path, body, &r, what, sizeof(what), err) != 0)
		return -1;
	op_http_req_reset(&r);
	return 0;
}

int
pd_get_stores(const struct pd_client *c, struct pd_stores *out, struct pd_err *err)
{
	return pd_get_stores_query(c, NULL, out, err);
}

int
pd_get_stores_query(const struct pd_client *c, const char *query, struct pd_stores *out,
    struct pd_err *err)
{
	char path[256];

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), PD_API "/stores%s%s", query ? "?" : "", query ? query : "");
	return pd_call_parse(c, "GET", path, NULL, (parse_fn)pd_parse_stores, out, err);
}

int
pd_get_store(const struct pd_client *c, uint64_t id, struct pd_store *out, struct pd_err *err)
{
	char path[96];

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), PD_API "/store/%" PRIu64, id);
	return pd_call_parse(c, "GET", path, NULL, (parse_fn)pd_parse_store, out, err);
}

int
pd_delete_store(const struct pd_client *c, uint64_t id, int force, struct pd_err *err)
{
	char path[96];

	snprintf(path, sizeof(path), PD_API "/store/%" PRIu64 "%s", id, force ? "?force" : "");
	return pd_call(c, "DELETE", path, NULL, err);
}

int
pd_get_regions(const struct pd_client *c, struct pd_regions *out, struct pd_err *err)
{
	memset(out, 0, sizeof(*out));
	return pd_call_parse(c, "GET", PD_API "/regions", NULL, (parse_fn)pd_parse_regions, out,
	    err);
}

int
pd_get_regions_by_store(const struct pd_client *c, uint64_t store_id, struct pd_regions *out,
    struct pd_err *err)
{
	char path[96];

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), PD_API "/regions/store/%" PRIu64, store_id);
	return pd_call_parse(c, "GET", path, NULL, (parse_fn)pd_parse_regions, out, err);
}

int
pd_get_region(const struct pd_client *c, uint64_t id, struct pd_region *out, struct pd_err *err)
{
	char path[96];

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), PD_API "/region/id/%" PRIu64, id);
	if (pd_call_parse(c, "GET", path, NULL, (parse_fn)pd_parse_region, out, err) != 0)
		return -1;
	if (out->id == 0) {
		/* v7.6-v8.5 answer 200 with a zero-valued region. */
		pd_region_free(out);
		pd_err_set(err, 200, PD_ERR_HTTP, "GET %s: region %" PRIu64
		    " not found (PD answered an empty region)", path, id);
		if (err != NULL)
			err->not_found = 1;
		return -1;
	}
	return 0;
}

int
pd_get_health(const struct pd_client *c, struct pd_health_list *out, struct pd_err *err)
{
	memset(out, 0, sizeof(*out));
	return pd_call_parse(c, "GET", PD_API "/health", NULL, (parse_fn)pd_parse_health, out, err);
}

int
pd_get_members(const struct pd_client *c, struct pd_members *out, struct pd_err *err)
{
	memset(out, 0, sizeof(*out));
	return pd_call_parse(c, "GET", PD_API "/members", NULL, (parse_fn)pd_parse_members, out,
	    err);
}

int
pd_get_cluster(const struct pd_client *c, struct pd_cluster *out, struct pd_err *err)
{
	return pd_call_parse(c, "GET", PD_API "/cluster", NULL, (parse_fn)pd_parse_cluster, out,
	    err);
}

int
pd_get_cluster_status(const struct pd_client *c, struct pd_cluster_status *out,
    struct pd_err *err)
{
	return pd_call_parse(c, "GET", PD_API "/cluster/status", NULL,
	    (parse_fn)pd_parse_cluster_status, out, err);
}

int
pd_get_schedule_config(const struct pd_client *c, struct pd_schedule_config *out,
    struct pd_err *err)
{
	memset(out, 0, sizeof(*out));
	return pd_call_parse(c, "GET", PD_API "/config/schedule", NULL,
	    (parse_fn)pd_parse_schedule_config, out, err);
}

int
pd_set_schedule_config(const struct pd_client *c, const char *json, struct pd_err *err)
{
	if (json == NULL || *json == '\0') {
		pd_err_set(err, 0, PD_ERR_INVALID, "POST " PD_API "/config/schedule: empty body");
		return -1;
	}
	return pd_call(c, "POST", PD_API "/config/schedule", json, err);
}

int
pd_set_max_store_down_time(const struct pd_client *c, const char *dur, struct pd_err *err)
{
	char body[PD_BODY_LEN];
	int64_t ns;

	/* Checked here because PD would store garbage only to fail later. */
	if (pd_parse_go_duration_ns(dur, &ns) != 0 || ns <= 0) {
		pd_err_set(err, 0, PD_ERR_INVALID, "max-store-down-time: bad duration \"%.40s\"",
		    dur ? dur : "(null)");
		return -1;
	}
	snprintf(body, sizeof(body), "{\"max-store-down-time\":\"%s\"}", dur);
	return pd_set_schedule_config(c, body, err);
}

int
pd_get_operators(const struct pd_client *c, struct pd_strlist *out, struct pd_err *err)
{
	memset(out, 0, sizeof(*out));
	return pd_call_parse(c, "GET", PD_API "/operators", NULL, (parse_fn)pd_parse_strlist, out,
	    err);
}

int
pd_get_operator(const struct pd_client *c, uint64_t region_id, struct pd_op_status *out,
    struct pd_err *err)
{
	char path[96];

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), PD_API "/operators/%" PRIu64, region_id);
	return pd_call_parse(c, "GET", path, NULL, (parse_fn)pd_parse_op_status, out, err);
}

int
pd_create_operator(const struct pd_client *c, const char *body, struct pd_err *err)
{
	return pd_call(c, "POST", PD_API "/operators", body, err);
}

int
pd_delete_operator(const struct pd_client *c, uint64_t region_id, struct pd_err *err)
{
	char path[96];

	snprintf(path, sizeof(path), PD_API "/operators/%" PRIu64, region_id);
	return pd_call(c, "DELETE", path, NULL, err);
}

static int
body_err(int n, const char *what, struct pd_err *err)
{
	if (n < 0) {
		pd_err_set(err, 0, PD_ERR_INVALID, "%s: cannot build request body", what);
		return -1;
	}
	return 0;
}

int
pd_transfer_leader(const struct pd_client *c, uint64_t region_id, uint64_t to_store_id,
    struct pd_err *err)
{
	char body[PD_BODY_LEN];

	if (body_err(pd_build_transfer_leader_body(body, sizeof(body), region_id, to_store_id),
	    "transfer-leader", err))
		return -1;
	return pd_create_operator(c, body, err);
}

int
pd_transfer_peer(const struct pd_client *c, uint64_t region_id, uint64_t from_store_id,
    uint64_t to_store_id, struct pd_err *err)
{
	char body[PD_BODY_LEN];

	if (body_err(pd_build_transfer_peer_body(body, sizeof(body), region_id, from_store_id,
	    to_store_id), "transfer-peer", err))
		return -1;
	return pd_create_operator(c, body, err);
}

int
pd_transfer_region(const struct pd_client *c, uint64_t region_id, const uint64_t *to_store_ids,
    const char *const *roles, size_t n, struct pd_err *err)
{
	char body[PD_BODY_LEN * 4];

	if (body_err(pd_build_transfer_region_body(body, sizeof(body), region_id, to_store_ids,
	    roles, n), "transfer-region", err))
		return -1;
	return pd_create_operator(c, body, err);
}

int
pd_add_peer(const struct pd_client *c, uint64_t region_id, uint64_t store_id,
    struct pd_err *err)
{
	char body[PD_BODY_LEN];

	if (body_err(pd_build_peer_body(body, sizeof(body), "add-peer", region_id, store_id),
	    "add-peer", err))
		return -1;
	return pd_create_operator(c, body, err);
}

int
pd_remove_peer(const struct pd_client *c, uint64_t region_id, uint64_t store_id,
    struct pd_err *err)
{
	char body[PD_BODY_LEN];

	if (body_err(pd_build_peer_body(body, sizeof(body), "remove-peer", region_id, store_id),
	    "remove-peer", err))
		return -1;
	return pd_create_operator(c, body, err);
}

int
pd_get_schedulers(const struct pd_client *c, struct pd_strlist *out, struct pd_err *err)
{
	memset(out, 0, sizeof(*out));
	return pd_call_parse(c, "GET", PD_API "/schedulers", NULL, (parse_fn)pd_parse_strlist, out,
	    err);
}

int
pd_add_scheduler(const struct pd_client *c, const char *name, uint64_t store_id,
    struct pd_err *err)
{
	char body[PD_BODY_LEN];

	if (body_err(pd_build_scheduler_body(body, sizeof(body), name, store_id), "scheduler", err))
		return -1;
	return pd_call(c, "POST", PD_API "/schedulers", body, err);
}

int
pd_remove_scheduler(const struct pd_client *c, const char *name, struct pd_err *err)
{
	char path[256];

	if (!safe_name(name)) {
		pd_err_set(err, 0, PD_ERR_INVALID, "remove scheduler: bad name \"%.60s\"",
		    name ? name : "(null)");
		return -1;
	}
	snprintf(path, sizeof(path), PD_API "/schedulers/%s", name);
	return pd_call(c, "DELETE", path, NULL, err);
}

int
pd_evict_leader_add(const struct pd_client *c, uint64_t store_id, struct pd_err *err)
{
	return pd_add_scheduler(c, "evict-leader-scheduler", store_id, err);
}

int
pd_evict_leader_remove(const struct pd_client *c, uint64_t store_id, struct pd_err *err)
{
	char name[64];

	snprintf(name, sizeof(name), "evict-leader-scheduler-%" PRIu64, store_id);
	if (pd_remove_scheduler(c, name, err) == 0)
		return 0;
	if (err != NULL && err->http_status == 404) {
		pd_err_clear(err); /* not evicted: the wanted state already holds */
		return 0;
	}
	return -1;
}

int
pd_get_evicted(const struct pd_client *c, uint64_t *ids, size_t max, size_t *n,
    struct pd_err *err)
{
	struct pd_strlist l;
	struct op_http_req r;
	char what[300];
	int rc;

	*n = 0;
	if (pd_get_schedulers(c, &l, err) != 0)
		return -1;
	int evicting = pd_strlist_contains(&l, "evict-leader-scheduler");
	pd_strlist_free(&l);
	if (!evicting)
		return 0;
	if (pd_request(c, "GET", PD_PATH_EVICT_LIST, NULL, &r, what, sizeof(what), err) != 0)
		return -1;
	rc = pd_parse_evicted(r.resp, r.resp_len, ids, max, n, err);
	if (rc != 0)
		prefix_err(err, what);
	op_http_req_reset(&r);
	return rc;
}
