/* rlnode_http: the evhttp server, routing and JSON replies. Every error is a
 * JSON object {"error": "..."} that says exactly what was wrong. */
#include "rlnode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "common/jsonutil.h"
#include "common/log.h"

#define RLN_HTTP_BODY_HARD_MAX (1024 * 1024) /* libevent's own cap; ours is RLN_BODY_MAX */
#define RLN_HTTP_HEADERS_MAX (16 * 1024)
#define RLN_HTTP_TIMEOUT_S 30

static const char *
rln_http_reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

void
rln_http_reply_json(struct evhttp_request *req, int code, json_object *o)
{
	struct evbuffer *buf = evbuffer_new();
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	if (buf != NULL) {
		evbuffer_add(buf, s, strlen(s));
		evbuffer_add(buf, "\n", 1);
	}
	evhttp_send_reply(req, code, rln_http_reason(code), buf);
	if (buf != NULL)
		evbuffer_free(buf);
	json_object_put(o);
}

void
rln_http_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_object *o = json_object_new_object();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	op_json_set_str(o, "error", msg);
	rln_http_reply_json(req, code, o);
}

int
rln_key_valid(const char *k, size_t len)
{
	size_t i;

	if (len == 0 || len > RLW_KEY_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
			return 0;
	return 1;
}

/* Reads and parses the body; on failure the reply has been sent. */
static json_object *
rln_http_body(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char err[256];
	json_object *o;
	char *buf;

	if (len > RLN_BODY_MAX) {
		rln_http_error(req, 413, "body is %zu bytes; the limit is %d", len, RLN_BODY_MAX);
		return NULL;
	}
	buf = malloc(len + 1);
	if (buf == NULL) {
		rln_http_error(req, 500, "out of memory");
		return NULL;
	}
	evbuffer_copyout(in, buf, len);
	buf[len] = '\0';
	o = op_json_parse(buf, len, err, sizeof(err));
	free(buf);
	if (o == NULL) {
		rln_http_error(req, 400, "%s", err);
		return NULL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		rln_http_error(req, 400, "body must be a JSON object");
		return NULL;
	}
	return o;
}

static const char *
rln_method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "?";
	}
}

static void
rln_http_405(struct evhttp_request *req, const char *path, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	rln_http_error(req, 405, "method %s not allowed on %s; allowed: %s",
	    rln_method_name(evhttp_request_get_command(req)), path, allow);
}

/* Decodes one path segment into a key; on failure the reply has been sent. */
static char *
rln_http_key(struct evhttp_request *req, const char *seg, size_t seglen)
{
	char *raw = strndup(seg, seglen), *key;
	size_t klen = 0;

	if (raw == NULL) {
		rln_http_error(req, 500, "out of memory");
		return NULL;
	}
	key = evhttp_uridecode(raw, 0, &klen);
	free(raw);
	if (key == NULL || !rln_key_valid(key, klen) || strlen(key) != klen) {
		rln_http_error(req, 400,
		    "key in path must be 1..%d printable characters without spaces",
		    RLW_KEY_MAX);
		free(key);
		return NULL;
	}
	return key;
}

static void
rln_route_check(struct rlnode *n, struct evhttp_request *req)
{
	json_object *body = rln_http_body(req);

	if (body == NULL) {
		n->m.errors++;
		return;
	}
	rln_check_handle(n, req, body);
	json_object_put(body);
}

static int
rln_route_limit_key(struct rlnode *n, struct evhttp_request *req, const char *path,
    enum evhttp_cmd_type m)
{
	static const char pfx[] = RLW_PATH_LIMIT_PFX;
	const char *seg = path + sizeof(pfx) - 1;
	json_object *body;
	char *key;

	if (strncmp(path, pfx, sizeof(pfx) - 1) != 0 || *seg == '\0' || strchr(seg, '/'))
		return 0;
	if (m != EVHTTP_REQ_PUT && m != EVHTTP_REQ_DELETE) {
		rln_http_405(req, path, "PUT, DELETE");
		return 1;
	}
	if ((key = rln_http_key(req, seg, strlen(seg))) == NULL)
		return 1;
	if (m == EVHTTP_REQ_DELETE) {
		rln_api_limit_delete(n, req, key);
	} else if ((body = rln_http_body(req)) != NULL) {
		rln_api_limit_put(n, req, key, body);
		json_object_put(body);
	}
	free(key);
	return 1;
}

static int
rln_route_reset(struct rlnode *n, struct evhttp_request *req, const char *path,
    enum evhttp_cmd_type m)
{
	static const char pfx[] = RLW_PATH_COUNTER_PFX, sfx[] = RLW_PATH_RESET_SFX;
	size_t len = strlen(path), plen = sizeof(pfx) - 1, slen = sizeof(sfx) - 1;
	const char *seg = path + plen;
	size_t seglen;
	char *key;

	if (len <= plen + slen || strncmp(path, pfx, plen) != 0 ||
	    strcmp(path + len - slen, sfx) != 0)
		return 0;
	seglen = len - plen - slen;
	if (memchr(seg, '/', seglen) != NULL)
		return 0;
	if (m != EVHTTP_REQ_POST) {
		rln_http_405(req, path, "POST");
		return 1;
	}
	if ((key = rln_http_key(req, seg, seglen)) == NULL)
		return 1;
	rln_api_reset(n, req, key);
	free(key);
	return 1;
}

struct rln_route {
	const char *path;
	enum evhttp_cmd_type method;
	const char *allow;
	void (*fn)(struct rlnode *, struct evhttp_request *, const char *query);
};

static void
rln_r_check(struct rlnode *n, struct evhttp_request *req, const char *q)
{
	rln_route_check(n, req);
}

static void
rln_r_health(struct rlnode *n, struct evhttp_request *req, const char *q)
{
	rln_api_health(n, req);
}

static void
rln_r_metrics(struct rlnode *n, struct evhttp_request *req, const char *q)
{
	rln_api_metrics(n, req);
}

static void
rln_r_nodes(struct rlnode *n, struct evhttp_request *req, const char *q)
{
	rln_api_nodes(n, req);
}

static void
rln_r_limits(struct rlnode *n, struct evhttp_request *req, const char *q)
{
	rln_api_limits_get(n, req);
}

static void
rln_r_resync(struct rlnode *n, struct evhttp_request *req, const char *q)
{
	rln_api_resync(n, req);
}

static const struct rln_route rln_routes[] = {
	{RLW_PATH_CHECK, EVHTTP_REQ_POST, "POST", rln_r_check},
	{RLW_PATH_HEALTH, EVHTTP_REQ_GET, "GET", rln_r_health},
	{RLW_PATH_METRICS, EVHTTP_REQ_GET, "GET", rln_r_metrics},
	{RLW_PATH_NODES, EVHTTP_REQ_GET, "GET", rln_r_nodes},
	{RLW_PATH_COUNTERS, EVHTTP_REQ_GET, "GET", rln_api_counters},
	{RLW_PATH_LIMITS, EVHTTP_REQ_GET, "GET", rln_r_limits},
	{RLW_PATH_RESYNC, EVHTTP_REQ_POST, "POST", rln_r_resync},
};

static void
rln_http_dispatch(struct evhttp_request *req, void *arg)
{
	struct rlnode *n = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	size_t i;

	if (path == NULL || *path == '\0')
		path = "/";
	for (i = 0; i < sizeof(rln_routes) / sizeof(rln_routes[0]); i++) {
		if (strcmp(path, rln_routes[i].path) != 0)
			continue;
		if (m != rln_routes[i].method) {
			if (strcmp(path, RLW_PATH_CHECK) == 0)
				n->m.errors++;
			rln_http_405(req, path, rln_routes[i].allow);
		} else {
			rln_routes[i].fn(n, req, query);
		}
		return;
	}
	if (rln_route_limit_key(n, req, path, m) || rln_route_reset(n, req, path, m))
		return;
	rln_http_error(req, 404, "no such endpoint: %s", path);
}

int
rln_http_start(struct rlnode *n)
{
	n->http = evhttp_new(n->base);
	if (n->http == NULL)
		return -1;
	/* Accept every method so that wrong ones get our JSON 405, not libevent's. */
	evhttp_set_allowed_methods(n->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(n->http, RLN_HTTP_BODY_HARD_MAX);
	evhttp_set_max_headers_size(n->http, RLN_HTTP_HEADERS_MAX);
	evhttp_set_timeout(n->http, RLN_HTTP_TIMEOUT_S);
	evhttp_set_gencb(n->http, rln_http_dispatch, n);
	if (evhttp_bind_socket(n->http, n->bind, (uint16_t)n->port) != 0) {
		log_err("cannot listen on %s:%d", n->bind, n->port);
		return -1;
	}
	return 0;
}
