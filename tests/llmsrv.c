/*
 * llmsrv: a local stand-in for the Anthropic Messages API and the OpenAI chat
 * completions API, for tests only. It checks the shape of every request the
 * way the real services document it (headers, model, tool schema, forced
 * tool_choice, response_format json_schema with strict-mode rules), records
 * it, and answers with scripted cases.
 *
 *   llmsrv [--port N] [--port-file PATH] [--key KEY] [--model NAME]
 *
 *   POST /v1/messages           Anthropic Messages API
 *   POST /v1/chat/completions   OpenAI chat completions
 *   POST /_script  {"cases":[CASE...], "default":CASE}  queue answers, in order
 *   POST /_reset   forget cases and recorded requests
 *   GET  /_requests             recorded requests, oldest first
 *   GET  /_health
 *
 * CASE = {"kind": K, ...} with K one of
 *   tool_use     answer with "input" (anthropic tool_use block / openai JSON content)
 *   end_turn     a text answer without the tool (openai: prose, not JSON)
 *   max_tokens   truncated (anthropic stop_reason max_tokens / openai finish_reason length)
 *   refusal      stop_reason refusal / message.refusal
 *   content_filter  openai finish_reason content_filter
 *   error        "status" (400 401 403 404 413 429 500 529 ...), optional "type",
 *                "message", "code", "retry_after" (header value), "echo_key": true
 *                (puts the received key in the message, to test scrubbing)
 *   malformed    HTTP 200 with a cut JSON body
 *   empty        HTTP 200 with an empty body
 *   hang         never answers
 * and optional "delay_ms" (answer later), "usage": {"in": N, "out": M} and
 * "match": TEXT (the case only answers a request whose body contains TEXT).
 * A request whose key is wrong gets 401; one whose shape is wrong gets 400,
 * whatever was scripted. With nothing scripted the answer is a 500.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

static struct {
	struct event_base *base;
	struct evhttp *http;
	char key[512];
	int have_key;
	char model[128];
	json_object *queue;    /* array of cases */
	json_object *dflt;     /* case used when the queue is empty, or NULL */
	json_object *records;  /* array */
	long long seq;
} S;

static const char *const diag_keys[] = {
	"timeline", "affected_components", "metric_readings", "primary_diagnosis", "confidence",
	"supporting_evidence", "alternatives_considered", "severity", "risks",
	"recommended_actions",
};
static const char *const action_keys[] = {
	"action", "parameters", "reason", "urgency", "expected_outcome",
};

static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
jstr(json_object *o, const char *k)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static json_object *
jget(json_object *o, const char *k)
{
	json_object *v = NULL;

	if (o == NULL || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, k, &v))
		return NULL;
	return v;
}

static long long
jint(json_object *o, const char *k, long long def)
{
	json_object *v = jget(o, k);

	return v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : def;
}

static void problem(json_object *probs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
problem(json_object *probs, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_object_array_add(probs, json_object_new_string(buf));
}

/* ---- request shape ---- */

static int
arr_has(json_object *a, const char *s)
{
	for (size_t i = 0; a && json_object_is_type(a, json_type_array) &&
	    i < json_object_array_length(a); i++) {
		json_object *v = json_object_array_get_idx(a, i);
		if (json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), s))
			return 1;
	}
	return 0;
}

static void
check_diag_schema(json_object *schema, const char *where, json_object *probs)
{
	json_object *props = jget(schema, "properties"), *req = jget(schema, "required");

	if (schema == NULL || !json_object_is_type(schema, json_type_object)) {
		problem(probs, "%s: not a JSON schema object", where);
		return;
	}
	if (jstr(schema, "type") == NULL || strcmp(jstr(schema, "type"), "object") != 0)
		problem(probs, "%s.type must be \"object\"", where);
	for (size_t i = 0; i < sizeof(diag_keys) / sizeof(diag_keys[0]); i++) {
		if (jget(props, diag_keys[i]) == NULL)
			problem(probs, "%s.properties lacks %s", where, diag_keys[i]);
		if (!arr_has(req, diag_keys[i]))
			problem(probs, "%s.required lacks %s", where, diag_keys[i]);
	}
	json_object *items = jget(jget(props, "recommended_actions"), "items");
	json_object *ip = jget(items, "properties");
	for (size_t i = 0; i < sizeof(action_keys) / sizeof(action_keys[0]); i++)
		if (jget(ip, action_keys[i]) == NULL)
			problem(probs, "%s recommended_actions.items.properties lacks %s", where,
			    action_keys[i]);
	json_object *alt = jget(jget(jget(props, "alternatives_considered"), "items"), "properties");
	static const char *const ak[] = {"hypothesis", "supporting", "contradicting", "conclusion"};
	for (size_t i = 0; i < 4; i++)
		if (jget(alt, ak[i]) == NULL)
			problem(probs, "%s alternatives_considered.items.properties lacks %s", where, ak[i]);
}

static int
is_object_schema(json_object *s)
{
	json_object *t = jget(s, "type");

	if (t == NULL)
		return jget(s, "properties") != NULL;
	if (json_object_is_type(t, json_type_string))
		return !strcmp(json_object_get_string(t), "object");
	return arr_has(t, "object");
}

/* OpenAI strict mode: every object has additionalProperties false and lists
 * every property in required. */
static void
check_strict(json_object *s, const char *path, json_object *probs)
{
	char sub[256];

	if (s == NULL || !json_object_is_type(s, json_type_object))
		return;
	if (is_object_schema(s)) {
		json_object *ap = jget(s, "additionalProperties"), *props = jget(s, "properties");
		json_object *req = jget(s, "required");
		if (ap == NULL || !json_object_is_type(ap, json_type_boolean) || json_object_get_boolean(ap))
			problem(probs, "strict schema: %s needs additionalProperties false", path);
		if (props != NULL) {
			json_object_object_foreach(props, k, v)
			{
				if (!arr_has(req, k))
					problem(probs, "strict schema: %s.%s must be in required", path, k);
				snprintf(sub, sizeof(sub), "%s.%s", path, k);
				check_strict(v, sub, probs);
			}
		}
	}
	json_object *items = jget(s, "items");
	if (items != NULL) {
		snprintf(sub, sizeof(sub), "%s[]", path);
		check_strict(items, sub, probs);
	}
	json_object *any = jget(s, "anyOf");
	for (size_t i = 0; any && json_object_is_type(any, json_type_array) &&
	    i < json_object_array_length(any); i++)
		check_strict(json_object_array_get_idx(any, i), path, probs);
}

static void
check_common(json_object *body, json_object *probs)
{
	const char *model = jstr(body, "model");
	json_object *mt = jget(body, "max_tokens");

	if (model == NULL || *model == '\0')
		problem(probs, "model: missing");
	else if (S.model[0] && strcmp(model, S.model) != 0)
		problem(probs, "model: \"%s\", expected \"%s\"", model, S.model);
	if (mt != NULL && (!json_object_is_type(mt, json_type_int) || json_object_get_int64(mt) < 1))
		problem(probs, "max_tokens: must be a positive integer");
}

static void
check_anthropic(struct evkeyvalq *h, json_object *body, json_object *probs)
{
	const char *v = evhttp_find_header(h, "anthropic-version");
	json_object *msgs = jget(body, "messages"), *tools = jget(body, "tools");
	json_object *choice = jget(body, "tool_choice"), *sys = jget(body, "system");

	if (v == NULL || strcmp(v, "2023-06-01") != 0)
		problem(probs, "anthropic-version: header must be 2023-06-01");
	if (jget(body, "max_tokens") == NULL)
		problem(probs, "max_tokens: Field required");
	check_common(body, probs);
	if (sys == NULL || (json_object_is_type(sys, json_type_string) &&
	    json_object_get_string_len(sys) == 0))
		problem(probs, "system: a system prompt is expected");
	if (msgs == NULL || !json_object_is_type(msgs, json_type_array) ||
	    json_object_array_length(msgs) == 0) {
		problem(probs, "messages: must be a non-empty array");
	} else {
		size_t n = json_object_array_length(msgs);
		for (size_t i = 0; i < n; i++) {
			json_object *m = json_object_array_get_idx(msgs, i);
			const char *role = jstr(m, "role");
			const char *want = i % 2 == 0 ? "user" : "assistant";
			json_object *c = jget(m, "content");
			if (role == NULL || strcmp(role, want) != 0)
				problem(probs, "messages.%zu.role: expected %s (roles must alternate, "
				    "starting with user)", i, want);
			if (c == NULL || !(json_object_is_type(c, json_type_string) ||
			    json_object_is_type(c, json_type_array)))
				problem(probs, "messages.%zu.content: must be a string or an array", i);
			/* A tool_use block must be answered by a tool_result with its id. */
			for (size_t k = 0; c && json_object_is_type(c, json_type_array) &&
			    k < json_object_array_length(c); k++) {
				json_object *b = json_object_array_get_idx(c, k);
				const char *type = jstr(b, "type");
				if (type == NULL || strcmp(type, "tool_use") != 0)
					continue;
				json_object *next = i + 1 < n ? json_object_array_get_idx(msgs, i + 1) : NULL;
				json_object *nc = jget(next, "content");
				int found = 0;
				for (size_t q = 0; nc && json_object_is_type(nc, json_type_array) &&
				    q < json_object_array_length(nc); q++) {
					json_object *r = json_object_array_get_idx(nc, q);
					if (jstr(r, "type") && !strcmp(jstr(r, "type"), "tool_result") &&
					    jstr(r, "tool_use_id") && jstr(b, "id") &&
					    !strcmp(jstr(r, "tool_use_id"), jstr(b, "id")))
						found = 1;
				}
				if (!found)
					problem(probs, "messages.%zu: tool_use ids were found without "
					    "tool_result blocks immediately after", i + 1);
			}
		}
		if (n % 2 == 0)
			problem(probs, "messages: the last message must be from the user");
	}
	if (tools == NULL || !json_object_is_type(tools, json_type_array) ||
	    json_object_array_length(tools) != 1) {
		problem(probs, "tools: exactly one tool expected");
	} else {
		json_object *t = json_object_array_get_idx(tools, 0);
		const char *name = jstr(t, "name");
		if (name == NULL || *name == '\0')
			problem(probs, "tools.0.name: missing");
		if (jstr(t, "description") == NULL)
			problem(probs, "tools.0.description: missing");
		check_diag_schema(jget(t, "input_schema"), "tools.0.input_schema", probs);
		if (choice == NULL || jstr(choice, "type") == NULL ||
		    strcmp(jstr(choice, "type"), "tool") != 0 || name == NULL ||
		    jstr(choice, "name") == NULL || strcmp(jstr(choice, "name"), name) != 0)
			problem(probs, "tool_choice: must force the tool ({\"type\":\"tool\",\"name\":...})");
	}
}

static void
check_openai(json_object *body, json_object *probs)
{
	json_object *msgs = jget(body, "messages"), *rf = jget(body, "response_format");
	json_object *js = jget(rf, "json_schema");

	check_common(body, probs);
	if (msgs == NULL || !json_object_is_type(msgs, json_type_array) ||
	    json_object_array_length(msgs) < 2) {
		problem(probs, "messages: a system and a user message expected");
	} else {
		for (size_t i = 0; i < json_object_array_length(msgs); i++) {
			json_object *m = json_object_array_get_idx(msgs, i);
			const char *role = jstr(m, "role");
			if (role == NULL || (strcmp(role, "system") && strcmp(role, "user") &&
			    strcmp(role, "assistant")))
				problem(probs, "messages[%zu].role: invalid", i);
			if (jstr(m, "content") == NULL)
				problem(probs, "messages[%zu].content: a string expected", i);
		}
		const char *r0 = jstr(json_object_array_get_idx(msgs, 0), "role");
		if (r0 == NULL || strcmp(r0, "system") != 0)
			problem(probs, "messages[0]: the system prompt expected first");
	}
	if (jstr(rf, "type") == NULL || strcmp(jstr(rf, "type"), "json_schema") != 0) {
		problem(probs, "response_format.type: must be json_schema");
		return;
	}
	const char *name = jstr(js, "name");
	int ok = name != NULL && *name && strlen(name) <= 64;
	for (const char *p = name; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
	if (!ok)
		problem(probs, "response_format.json_schema.name: must match ^[a-zA-Z0-9_-]{1,64}$");
	json_object *strict = jget(js, "strict");
	if (strict == NULL || !json_object_is_type(strict, json_type_boolean))
		problem(probs, "response_format.json_schema.strict: a boolean expected");
	check_diag_schema(jget(js, "schema"), "response_format.json_schema.schema", probs);
	if (strict && json_object_get_boolean(strict))
		check_strict(jget(js, "schema"), "schema", probs);
}

/* ---- answers ---- */

struct pending {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	int status;
	char reason[32];
	char *body;
	char retry_after[64];
	char request_id[64];
	int cancelled;
	struct event *timer;
};

static void
send_now(struct pending *p)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *oh = evhttp_request_get_output_headers(p->req);

	evhttp_add_header(oh, "Content-Type", "application/json");
	evhttp_add_header(oh, "request-id", p->request_id);
	if (p->retry_after[0])
		evhttp_add_header(oh, "retry-after", p->retry_after);
	evbuffer_add(b, p->body, strlen(p->body));
	evhttp_connection_set_closecb(p->conn, NULL, NULL);
	evhttp_send_reply(p->req, p->status, p->reason, b);
	evbuffer_free(b);
}

static void
pending_free(struct pending *p)
{
	if (p->timer)
		event_free(p->timer);
	free(p->body);
	free(p);
}

static void
on_conn_close(struct evhttp_connection *c, void *arg)
{
	struct pending *p = arg;

	(void)c;
	p->cancelled = 1;
}

static void
on_delay(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;

	(void)fd;
	(void)what;
	if (!p->cancelled)
		send_now(p);
	pending_free(p);
}

static void
reply(struct evhttp_request *req, int status, const char *reason, json_object *body_json,
    const char *raw, const char *retry_after, long long delay_ms)
{
	struct pending *p = calloc(1, sizeof(*p));

	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	p->status = status;
	snprintf(p->reason, sizeof(p->reason), "%s", reason);
	p->body = strdup(raw ? raw : json_object_to_json_string_ext(body_json,
	    JSON_C_TO_STRING_PLAIN));
	snprintf(p->retry_after, sizeof(p->retry_after), "%s", retry_after ? retry_after : "");
	snprintf(p->request_id, sizeof(p->request_id), "req_llmsrv_%lld", S.seq);
	if (delay_ms <= 0) {
		send_now(p);
		pending_free(p);
		return;
	}
	evhttp_connection_set_closecb(p->conn, on_conn_close, p);
	p->timer = evtimer_new(S.base, on_delay, p);
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
	evtimer_add(p->timer, &tv);
}

static const char *
reason_of(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 529: return "Overloaded";
	default: return "Error";
	}
}

static const char *
anthropic_error_type(int status)
{
	switch (status) {
	case 400: return "invalid_request_error";
	case 401: return "authentication_error";
	case 402: return "billing_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 413: return "request_too_large";
	case 429: return "rate_limit_error";
	case 529: return "overloaded_error";
	default: return "api_error";
	}
}

static void
send_error(struct evhttp_request *req, int anthropic, int status, const char *type,
    const char *code, const char *message, const char *retry_after, long long delay_ms)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();

	if (anthropic) {
		json_object_object_add(o, "type", json_object_new_string("error"));
		json_object_object_add(e, "type", json_object_new_string(type ? type
		    : anthropic_error_type(status)));
		json_object_object_add(e, "message", json_object_new_string(message));
		json_object_object_add(o, "error", e);
		char rid[64];
		snprintf(rid, sizeof(rid), "req_llmsrv_%lld", S.seq);
		json_object_object_add(o, "request_id", json_object_new_string(rid));
	} else {
		json_object_object_add(e, "message", json_object_new_string(message));
		json_object_object_add(e, "type", json_object_new_string(type ? type
		    : status == 429 ? "requests" : status >= 500 ? "server_error"
		    : "invalid_request_error"));
		json_object_object_add(e, "param", NULL);
		json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
		json_object_object_add(o, "error", e);
	}
	reply(req, status, reason_of(status), o, NULL, retry_after, delay_ms);
	json_object_put(o);
}

static json_object *
usage_obj(int anthropic, json_object *c)
{
	json_object *u = json_object_new_object(), *cu = jget(c, "usage");
	long long in = jint(cu, "in", 1200), out = jint(cu, "out", 350);

	if (anthropic) {
		json_object_object_add(u, "input_tokens", json_object_new_int64(in));
		json_object_object_add(u, "output_tokens", json_object_new_int64(out));
	} else {
		json_object_object_add(u, "prompt_tokens", json_object_new_int64(in));
		json_object_object_add(u, "completion_tokens", json_object_new_int64(out));
		json_object_object_add(u, "total_tokens", json_object_new_int64(in + out));
	}
	return u;
}

static void
send_anthropic(struct evhttp_request *req, json_object *c, const char *kind, const char *model,
    const char *tool, long long delay)
{
	json_object *o = json_object_new_object(), *content = json_object_new_array();
	char id[64];
	const char *stop = "end_turn";

	snprintf(id, sizeof(id), "msg_llmsrv_%lld", S.seq);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "type", json_object_new_string("message"));
	json_object_object_add(o, "role", json_object_new_string("assistant"));
	json_object_object_add(o, "model", json_object_new_string(model));
	if (!strcmp(kind, "tool_use") || !strcmp(kind, "max_tokens")) {
		json_object *b = json_object_new_object(), *in = jget(c, "input");
		snprintf(id, sizeof(id), "toolu_llmsrv_%lld", S.seq);
		json_object_object_add(b, "type", json_object_new_string("tool_use"));
		json_object_object_add(b, "id", json_object_new_string(id));
		json_object_object_add(b, "name", json_object_new_string(tool ? tool : "tool"));
		json_object_object_add(b, "input", !strcmp(kind, "tool_use") && in
		    ? json_object_get(in) : json_object_new_object());
		json_object_array_add(content, b);
		stop = !strcmp(kind, "tool_use") ? "tool_use" : "max_tokens";
	} else if (!strcmp(kind, "refusal")) {
		stop = "refusal";
	} else {
		json_object *b = json_object_new_object();
		json_object_object_add(b, "type", json_object_new_string("text"));
		json_object_object_add(b, "text", json_object_new_string(
		    "The counters look inconsistent; I would reset them."));
		json_object_array_add(content, b);
	}
	json_object_object_add(o, "content", content);
	json_object_object_add(o, "stop_reason", json_object_new_string(stop));
	json_object_object_add(o, "stop_sequence", NULL);
	json_object_object_add(o, "usage", usage_obj(1, c));
	reply(req, 200, "OK", o, NULL, NULL, delay);
	json_object_put(o);
}

static void
send_openai(struct evhttp_request *req, json_object *c, const char *kind, const char *model,
    long long delay)
{
	json_object *o = json_object_new_object(), *choices = json_object_new_array();
	json_object *ch = json_object_new_object(), *m = json_object_new_object();
	char id[64];
	const char *fin = "stop";
	json_object *in = jget(c, "input");
	const char *text = in ? json_object_to_json_string_ext(in, JSON_C_TO_STRING_PLAIN) : "{}";

	snprintf(id, sizeof(id), "chatcmpl-llmsrv%lld", S.seq);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object", json_object_new_string("chat.completion"));
	json_object_object_add(o, "created", json_object_new_int64((int64_t)time(NULL)));
	json_object_object_add(o, "model", json_object_new_string(model));
	json_object_object_add(m, "role", json_object_new_string("assistant"));
	if (!strcmp(kind, "tool_use")) {
		json_object_object_add(m, "content", json_object_new_string(text));
		json_object_object_add(m, "refusal", NULL);
	} else if (!strcmp(kind, "max_tokens")) {
		char cut[64];
		snprintf(cut, sizeof(cut), "%.40s", text);
		json_object_object_add(m, "content", json_object_new_string(cut));
		json_object_object_add(m, "refusal", NULL);
		fin = "length";
	} else if (!strcmp(kind, "refusal")) {
		json_object_object_add(m, "content", NULL);
		json_object_object_add(m, "refusal", json_object_new_string(
		    "I'm sorry, I cannot help with that."));
	} else if (!strcmp(kind, "content_filter")) {
		json_object_object_add(m, "content", NULL);
		json_object_object_add(m, "refusal", NULL);
		fin = "content_filter";
	} else {
		json_object_object_add(m, "content", json_object_new_string(
		    "The counters look inconsistent; I would reset them."));
		json_object_object_add(m, "refusal", NULL);
	}
	json_object_object_add(ch, "index", json_object_new_int(0));
	json_object_object_add(ch, "message", m);
	json_object_object_add(ch, "finish_reason", json_object_new_string(fin));
	json_object_array_add(choices, ch);
	json_object_object_add(o, "choices", choices);
	json_object_object_add(o, "usage", usage_obj(0, c));
	reply(req, 200, "OK", o, NULL, NULL, delay);
	json_object_put(o);
}

/* The first queued case whose "match" (if any) occurs in the raw request body:
 * lets a test script answers per ticket while other tickets come and go. */
static json_object *
next_case(const char *raw)
{
	for (size_t i = 0; i < json_object_array_length(S.queue); i++) {
		json_object *c = json_object_array_get_idx(S.queue, i);
		const char *m = jstr(c, "match");
		if (m != NULL && strstr(raw, m) == NULL)
			continue;
		json_object_get(c);
		json_object_array_del_idx(S.queue, i, 1);
		return c;
	}
	if (S.dflt)
		return json_object_get(S.dflt);
	return NULL;
}

static char *
body_of(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *b = malloc(n + 1);

	evbuffer_copyout(in, b, n);
	b[n] = '\0';
	*len = n;
	return b;
}

static void
handle_api(struct evhttp_request *req, int anthropic)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	json_object *rec = json_object_new_object(), *probs = json_object_new_array();
	size_t len;
	char *raw = body_of(req, &len);
	json_object *body = json_tokener_parse(raw);
	const char *ct = evhttp_find_header(h, "content-type");
	int key_ok = 1;
	char got[600] = "";

	S.seq++;
	if (anthropic) {
		const char *k = evhttp_find_header(h, "x-api-key");
		snprintf(got, sizeof(got), "%s", k ? k : "");
		if (evhttp_find_header(h, "authorization") != NULL)
			problem(probs, "authorization: not an Anthropic header (use x-api-key)");
	} else {
		const char *a = evhttp_find_header(h, "authorization");
		if (a && !strncmp(a, "Bearer ", 7))
			snprintf(got, sizeof(got), "%s", a + 7);
		else if (a)
			problem(probs, "authorization: must be \"Bearer KEY\"");
	}
	if (S.have_key)
		key_ok = strcmp(got, S.key) == 0;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
		problem(probs, "method: POST expected");
	if (ct == NULL || strncmp(ct, "application/json", 16) != 0)
		problem(probs, "content-type: application/json expected");
	if (body == NULL || !json_object_is_type(body, json_type_object))
		problem(probs, "body: not a JSON object");
	else if (anthropic)
		check_anthropic(h, body, probs);
	else
		check_openai(body, probs);

	json_object *c = next_case(raw);
	const char *kind = c ? jstr(c, "kind") : NULL;
	long long delay = jint(c, "delay_ms", 0);
	const char *model = body ? jstr(body, "model") : NULL;
	const char *tool = NULL;
	json_object *tools = jget(body, "tools");
	if (tools && json_object_is_type(tools, json_type_array) && json_object_array_length(tools))
		tool = jstr(json_object_array_get_idx(tools, 0), "name");

	json_object_object_add(rec, "seq", json_object_new_int64(S.seq));
	json_object_object_add(rec, "t_ms", json_object_new_int64(mono_ms()));
	json_object_object_add(rec, "api", json_object_new_string(anthropic ? "anthropic" : "openai"));
	json_object_object_add(rec, "key_ok", json_object_new_boolean(key_ok));
	json_object_object_add(rec, "problems", probs);
	json_object_object_add(rec, "case", json_object_new_string(kind ? kind : "none"));
	json_object_object_add(rec, "body", body ? json_object_get(body) : json_object_new_string(raw));
	json_object_array_add(S.records, rec);

	if (!key_ok) {
		send_error(req, anthropic, 401, anthropic ? "authentication_error" : NULL,
		    anthropic ? NULL : "invalid_api_key", "invalid x-api-key", NULL, 0);
	} else if (json_object_array_length(probs) > 0) {
		char msg[2048] = "";
		for (size_t i = 0; i < json_object_array_length(probs); i++) {
			size_t used = strlen(msg);
			snprintf(msg + used, sizeof(msg) - used, "%s%s", i ? "; " : "",
			    json_object_get_string(json_object_array_get_idx(probs, i)));
		}
		send_error(req, anthropic, 400, NULL, NULL, msg, NULL, 0);
	} else if (kind == NULL) {
		send_error(req, anthropic, 500, NULL, NULL, "llmsrv: nothing scripted", NULL, 0);
	} else if (!strcmp(kind, "error")) {
		int st = (int)jint(c, "status", 500);
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s%s%s", jstr(c, "message") ? jstr(c, "message")
		    : "scripted error", jget(c, "echo_key") ? "; key was " : "",
		    jget(c, "echo_key") ? got : "");
		send_error(req, anthropic, st, jstr(c, "type"), jstr(c, "code"), msg,
		    jstr(c, "retry_after"), delay);
	} else if (!strcmp(kind, "malformed")) {
		reply(req, 200, "OK", NULL, anthropic
		    ? "{\"id\":\"msg_cut\",\"type\":\"message\",\"content\":[{\"type\":\"tool_use\","
		    : "{\"id\":\"chatcmpl-cut\",\"choices\":[{\"message\":{\"content\":\"{",
		    NULL, delay);
	} else if (!strcmp(kind, "empty")) {
		reply(req, 200, "OK", NULL, "", NULL, delay);
	} else if (!strcmp(kind, "hang")) {
		/* Never answered: the client's timeout must end it. */
	} else if (anthropic) {
		send_anthropic(req, c, kind, model ? model : "?", tool, delay);
	} else {
		send_openai(req, c, kind, model ? model : "?", delay);
	}
	json_object_put(c);
	json_object_put(body);
	free(raw);
}

static void
send_text(struct evhttp_request *req, int status, const char *ctype, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evbuffer_add(b, text, strlen(text));
	evhttp_send_reply(req, status, reason_of(status), b);
	evbuffer_free(b);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	char path[256];

	(void)arg;
	snprintf(path, sizeof(path), "%s", uri);
	path[strcspn(path, "?")] = '\0';
	if (!strcmp(path, "/v1/messages")) {
		handle_api(req, 1);
	} else if (!strcmp(path, "/v1/chat/completions")) {
		handle_api(req, 0);
	} else if (!strcmp(path, "/_script")) {
		size_t len;
		char *raw = body_of(req, &len);
		json_object *j = json_tokener_parse(raw);
		json_object *cases = jget(j, "cases"), *d = jget(j, "default");
		free(raw);
		if (j == NULL) {
			send_text(req, 400, "text/plain", "bad JSON\n");
			return;
		}
		for (size_t i = 0; cases && i < json_object_array_length(cases); i++)
			json_object_array_add(S.queue, json_object_get(json_object_array_get_idx(cases, i)));
		if (d != NULL) {
			json_object_put(S.dflt);
			S.dflt = json_object_get(d);
		}
		json_object_put(j);
		send_text(req, 200, "application/json", "{\"ok\":true}\n");
	} else if (!strcmp(path, "/_reset")) {
		json_object_put(S.queue);
		json_object_put(S.records);
		json_object_put(S.dflt);
		S.queue = json_object_new_array();
		S.records = json_object_new_array();
		S.dflt = NULL;
		send_text(req, 200, "application/json", "{\"ok\":true}\n");
	} else if (!strcmp(path, "/_requests")) {
		send_text(req, 200, "application/json", json_object_to_json_string_ext(S.records,
		    JSON_C_TO_STRING_PLAIN));
	} else if (!strcmp(path, "/_health")) {
		send_text(req, 200, "text/plain", "ok\n");
	} else {
		send_error(req, 1, 404, "not_found_error", NULL, "not found", NULL, 0);
	}
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopbreak(S.base);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"port-file", required_argument, NULL, 'f'},
		{"key", required_argument, NULL, 'k'},
		{"model", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0},
	};
	int port = 0, c;
	const char *port_file = NULL;

	while ((c = getopt_long(argc, argv, "p:f:k:m:", opts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'f': port_file = optarg; break;
		case 'k': snprintf(S.key, sizeof(S.key), "%s", optarg); S.have_key = 1; break;
		case 'm': snprintf(S.model, sizeof(S.model), "%s", optarg); break;
		default:
			fprintf(stderr, "usage: llmsrv [--port N] [--port-file PATH] [--key KEY] "
			    "[--model NAME]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	S.base = event_base_new();
	S.http = evhttp_new(S.base);
	S.queue = json_object_new_array();
	S.records = json_object_new_array();
	evhttp_set_allowed_methods(S.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
	evhttp_set_max_body_size(S.http, 8 << 20);
	evhttp_set_gencb(S.http, on_request, NULL);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(S.http, "127.0.0.1",
	    (ev_uint16_t)port);
	if (bs == NULL) {
		fprintf(stderr, "llmsrv: cannot listen on 127.0.0.1:%d\n", port);
		return 1;
	}
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
	printf("llmsrv listening on 127.0.0.1:%d\n", port);
	fflush(stdout);
	if (port_file != NULL) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
		    rename(tmp, port_file) != 0) {
			fprintf(stderr, "llmsrv: cannot write %s\n", port_file);
			return 1;
		}
	}
	struct event *sig[2] = {evsignal_new(S.base, SIGTERM, on_signal, NULL),
		evsignal_new(S.base, SIGINT, on_signal, NULL)};
	event_add(sig[0], NULL);
	event_add(sig[1], NULL);
	event_base_dispatch(S.base);
	event_free(sig[0]);
	event_free(sig[1]);
	evhttp_free(S.http);
	event_base_free(S.base);
	json_object_put(S.queue);
	json_object_put(S.records);
	json_object_put(S.dflt);
	return 0;
}
