/* llm_parse: what came back, and whether it may be acted on. */
#include <ctype.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "workers/llm.h"

#define LLM_MAX_ACTIONS 8

void
llm_result_clear(struct llm_result *r)
{
	json_object_put(r->answer);
	json_object_put(r->assistant);
	memset(r, 0, sizeof(*r));
}

static void
llm_why(struct llm_result *r, enum llm_rkind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
llm_why(struct llm_result *r, enum llm_rkind kind, const char *fmt, ...)
{
	va_list ap;

	r->kind = kind;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* Error bodies: anthropic {"type":"error","error":{"type","message"}},
 * openai {"error":{"message","type","code"}}. */
static void
llm_error(const struct llm_http_result *h, struct llm_result *r)
{
	char perr[128];
	json_object *j = h->len ? op_json_parse(h->body, h->len, perr, sizeof(perr)) : NULL;
	json_object *e = op_json_obj(j, "error");
	const char *type = op_json_str(e, "type", "");
	const char *code = op_json_str(e, "code", "");
	char msg[256];
	long st = h->status;

	op_strlcpy(msg, e ? op_json_str(e, "message", "") : "", sizeof(msg));
	if (e == NULL && h->len) {
		/* Not the documented shape (a proxy's HTML page, say): keep a little. */
		op_strlcpy(msg, h->body, sizeof(msg) < 120 ? sizeof(msg) : 120);
		for (char *p = msg; *p; p++)
			if (!isprint((unsigned char)*p))
				*p = ' ';
	}
	if (*type == '\0') {
		switch (st) {
		case 400: type = "invalid_request_error"; break;
		case 401: type = "authentication_error"; break;
		case 403: type = "permission_error"; break;
		case 404: type = "not_found_error"; break;
		case 413: type = "request_too_large"; break;
		case 429: type = "rate_limit_error"; break;
		case 529: type = "overloaded_error"; break;
		default: type = st >= 500 ? "api_error" : "http_error"; break;
		}
	}
	r->delay_ms = h->retry_after_ms;
	if (st == 429 && (!strcmp(code, "insufficient_quota") ||
	    !strcmp(code, "enforced_spend_limit_reached")))
		llm_why(r, LLM_R_FAIL, "HTTP %ld %s (%s): %s", st, type, code, msg);
	else if (st == 429 || st == 408 || st == 409 || st >= 500)
		llm_why(r, LLM_R_RETRY, "HTTP %ld %s: %s", st, type, msg);
	else
		llm_why(r, LLM_R_FAIL, "HTTP %ld %s: %s", st, type, msg);
	if (r->kind == LLM_R_RETRY && r->delay_ms > LLM_RETRY_AFTER_MAX_MS)
		llm_why(r, LLM_R_FAIL, "HTTP %ld %s: retry-after %llds is longer than operatord "
		    "waits (%ds)", st, type, (long long)(r->delay_ms / 1000),
		    LLM_RETRY_AFTER_MAX_MS / 1000);
	json_object_put(j);
}

static void
llm_parse_anthropic(json_object *j, struct llm_result *r)
{
	json_object *u = op_json_obj(j, "usage"), *content = op_json_arr(j, "content");
	const char *stop = op_json_str(j, "stop_reason", "");

	r->tokens_in = op_json_int(u, "input_tokens", 0) +
	    op_json_int(u, "cache_creation_input_tokens", 0) +
	    op_json_int(u, "cache_read_input_tokens", 0);
	r->tokens_out = op_json_int(u, "output_tokens", 0);
	if (content == NULL && strcmp(stop, "refusal") != 0) {
		llm_why(r, LLM_R_RETRY, "response without a content array");
		return;
	}
	r->assistant = json_object_get(content);
	if (!strcmp(stop, "tool_use")) {
		for (size_t i = 0; i < json_object_array_length(content); i++) {
			json_object *b = json_object_array_get_idx(content, i);
			if (strcmp(op_json_str(b, "type", ""), "tool_use") != 0)
				continue;
			op_strlcpy(r->tool_use_id, op_json_str(b, "id", ""), sizeof(r->tool_use_id));
			if (strcmp(op_json_str(b, "name", ""), LLM_TOOL_NAME) != 0) {
				llm_why(r, LLM_R_INVALID, "the model called tool \"%s\", not %s",
				    op_json_str(b, "name", ""), LLM_TOOL_NAME);
				return;
			}
			json_object *in = op_json_obj(b, "input");
			if (in == NULL) {
				llm_why(r, LLM_R_INVALID, "the tool call has no input object");
				return;
			}
			r->answer = json_object_get(in);
			r->kind = LLM_R_OK;
			return;
		}
		llm_why(r, LLM_R_INVALID, "stop_reason tool_use without a tool_use block");
	} else if (!strcmp(stop, "end_turn") || !strcmp(stop, "stop_sequence") ||
	    !strcmp(stop, "pause_turn")) {
		llm_why(r, LLM_R_INVALID, "the model answered without calling %s (stop_reason %s)",
		    LLM_TOOL_NAME, stop);
	} else if (!strcmp(stop, "max_tokens") || !strcmp(stop, "model_context_window_exceeded")) {
		llm_why(r, LLM_R_FAIL, "the answer was truncated (stop_reason %s)", stop);
	} else if (!strcmp(stop, "refusal")) {
		llm_why(r, LLM_R_FAIL, "the model declined to answer (stop_reason refusal)");
	} else {
		llm_why(r, LLM_R_FAIL, "unexpected stop_reason \"%s\"", stop);
	}
}

/* Local models sometimes wrap JSON in a Markdown fence; the inside is unambiguous. */
static json_object *
llm_json_text(const char *s, char *perr, size_t perrlen)
{
	const char *b = s, *e;

	while (isspace((unsigned char)*b))
		b++;
	if (strncmp(b, "```", 3) == 0) {
		b = strchr(b, '\n');
		if (b == NULL)
			return NULL;
		e = strstr(b, "```");
		if (e == NULL)
			e = b + strlen(b);
		return op_json_parse(b, (size_t)(e - b), perr, perrlen);
	}
	return op_json_parse(b, strlen(b), perr, perrlen);
}

static void
llm_parse_openai(json_object *j, struct llm_result *r)
{
	json_object *u = op_json_obj(j, "usage"), *choices = op_json_arr(j, "choices");
	json_object *c = choices && json_object_array_length(choices) > 0
	    ? json_object_array_get_idx(choices, 0) : NULL;
	json_object *m = op_json_obj(c, "message"), *content = NULL;
	const char *fin = op_json_str(c, "finish_reason", "");
	const char *refusal = op_json_str(m, "refusal", NULL);
	char perr[128];

	r->tokens_in = op_json_int(u, "prompt_tokens", 0);
	r->tokens_out = op_json_int(u, "completion_tokens", 0);
	if (m == NULL) {
		llm_why(r, LLM_R_RETRY, "response without choices[0].message");
		return;
	}
	if (refusal != NULL && *refusal) {
		llm_why(r, LLM_R_FAIL, "the model declined to answer (refusal)");
		return;
	}
	if (!strcmp(fin, "length")) {
		llm_why(r, LLM_R_FAIL, "the answer was truncated (finish_reason length)");
		return;
	}
	if (!strcmp(fin, "content_filter")) {
		llm_why(r, LLM_R_FAIL, "the answer was withheld by a content filter "
		    "(finish_reason content_filter)");
		return;
	}
	json_object_object_get_ex(m, "content", &content);
	if (content == NULL || !json_object_is_type(content, json_type_string)) {
		llm_why(r, LLM_R_INVALID, "the answer has no text content (finish_reason %s)",
		    *fin ? fin : "none");
		return;
	}
	r->assistant = json_object_get(content);
	json_object *a = llm_json_text(json_object_get_string(content), perr, sizeof(perr));
	if (a == NULL || !json_object_is_type(a, json_type_object)) {
		llm_why(r, LLM_R_INVALID, "the answer is not a JSON object (%s)",
		    a ? "another JSON value" : perr);
		json_object_put(a);
		return;
	}
	r->answer = a;
	r->kind = LLM_R_OK;
}

void
llm_parse(enum llm_backend b, const struct llm_http_result *h, struct llm_result *r)
{
	char perr[128];

	memset(r, 0, sizeof(*r));
	r->delay_ms = -1;
	if (h->status == 0) {
		if (h->timed_out)
			llm_why(r, LLM_R_FAIL, "no answer in time: %s", h->err);
		else
			llm_why(r, LLM_R_RETRY, "transport error: %s", h->err);
		return;
	}
	if (h->status != 200) {
		llm_error(h, r);
		return;
	}
	if (h->len == 0) {
		llm_why(r, LLM_R_RETRY, "HTTP 200 with an empty body");
		return;
	}
	json_object *j = op_json_parse(h->body, h->len, perr, sizeof(perr));
	if (j == NULL || !json_object_is_type(j, json_type_object)) {
		llm_why(r, LLM_R_RETRY, "HTTP 200 with a malformed body (%s)", j ? "not an object" : perr);
		json_object_put(j);
		return;
	}
	if (b == LLM_ANTHROPIC)
		llm_parse_anthropic(j, r);
	else
		llm_parse_openai(j, r);
	json_object_put(j);
}

/* ---- checks ---- */

struct llm_errs {
	char *buf;
	size_t len, n;
};

static void
llm_err(struct llm_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
llm_err(struct llm_errs *e, const char *fmt, ...)
{
	size_t used = strlen(e->buf);
	va_list ap;

	if (e->n++ > 0 && used + 2 < e->len) {
		strcat(e->buf, "; ");
		used += 2;
	}
	if (used + 1 >= e->len)
		return;
	va_start(ap, fmt);
	vsnprintf(e->buf + used, e->len - used, fmt, ap);
	va_end(ap);
}

static int
llm_is(json_object *o, const char *key, json_type t)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return 0;
	if (t == json_type_double)
		return json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int);
	return json_object_is_type(v, t);
}

static int
llm_in(const char *s, const char *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, set[i]))
			return 1;
	return 0;
}

static void
llm_check_action(const struct op_subject *sj, json_object *ra, size_t i, struct llm_errs *e)
{
	static const char *const urg[] = {"immediate", "soon", "when_convenient"};
	const char *name = op_json_str(ra, "action", NULL);
	json_object *params = op_json_obj(ra, "parameters");
	const struct op_action_def *def;
	char err[256];

	if (!json_object_is_type(ra, json_type_object)) {
		llm_err(e, "recommended_actions[%zu] is not an object", i);
		return;
	}
	if (name == NULL) {
		llm_err(e, "recommended_actions[%zu].action is missing", i);
		return;
	}
	if ((def = op_subject_action(sj, name)) == NULL) {
		llm_err(e, "recommended_actions[%zu].action \"%.64s\" is not in the action catalogue",
		    i, name);
		return;
	}
	if (params == NULL) {
		llm_err(e, "recommended_actions[%zu] (%s): parameters must be an object", i, name);
		return;
	}
	/* null means "not given": the strict schema makes every known name present. */
	const char *drop[32];
	size_t nd = 0;
	json_object_object_foreach(params, k, v)
		if (v == NULL && nd < OP_ARRAY_LEN(drop))
			drop[nd++] = k;
	for (size_t x = 0; x < nd; x++)
		json_object_object_del(params, drop[x]);
	if (op_action_validate(def, params, err, sizeof(err)) != 0)
		llm_err(e, "recommended_actions[%zu] (%s): %s", i, name, err);
	if (!llm_is(ra, "reason", json_type_string))
		llm_err(e, "recommended_actions[%zu].reason must be a string", i);
	if (!llm_in(op_json_str(ra, "urgency", ""), urg, 3))
		llm_err(e, "recommended_actions[%zu].urgency must be immediate, soon or "
		    "when_convenient", i);
	if (!llm_is(ra, "expected_outcome", json_type_string))
		llm_err(e, "recommended_actions[%zu].expected_outcome must be a string", i);
}

int
llm_check_fit(const struct op_subject *sj, json_object *ticket, json_object *obs,
    json_object *d, char *errs, size_t errlen, char *approval, size_t alen)
{
	struct llm_errs e = {errs, errlen, 0}, ap = {approval, alen, 0};
	json_object *acts = op_json_arr(d, "recommended_actions");
	const char *inv = op_json_str(ticket, "invariant", "");
	const char *ent = op_json_str(ticket, "entity", "");
	json_object *ev = op_json_obj(ticket, "evidence");
	char why[512];

	errs[0] = '\0';
	approval[0] = '\0';
	for (size_t i = 0; acts && i < json_object_array_length(acts); i++) {
		json_object *ra = json_object_array_get_idx(acts, i);
		const char *name = op_json_str(ra, "action", "");
		int fit = op_plan_fits(sj, inv, ent, ev, name, op_json_obj(ra, "parameters"), why,
		    sizeof(why));
		if (fit == OP_FIT_NO)
			llm_err(&e, "recommended_actions[%zu] does not fit the ticket (%s on %s): %s", i,
			    inv, ent, why);
		else if (op_plan_ids_seen(sj, name, op_json_obj(ra, "parameters"), obs, why,
		    sizeof(why)) != 0)
			llm_err(&e, "recommended_actions[%zu]: %s", i, why);
		else if (fit == OP_FIT_APPROVAL)
			llm_err(&ap, "%s: %s", name, why);
	}
	return e.n > 0 ? -1 : 0;
}

int
llm_check_answer(const struct op_subject *sj, json_object *d, char *errs, size_t errlen)
{
	static const char *const sev[] = {"critical", "warning", "info"};
	struct llm_errs e = {errs, errlen, 0};
	json_object *acts;

	errs[0] = '\0';
	if (d == NULL || !json_object_is_type(d, json_type_object)) {
		llm_err(&e, "the diagnosis is not a JSON object");
		return -1;
	}
	/* Keys outside the schema carry nothing operatord uses: drop them. */
	const char *drop[32];
	size_t nd = 0;
	json_object_object_foreach(d, k, v)
	{
		(void)v;
		int known = 0;
		for (size_t i = 0; i < llm_diag_nkeys(); i++)
			known |= !strcmp(k, llm_diag_key(i));
		if (!known && nd < OP_ARRAY_LEN(drop))
			drop[nd++] = k;
	}
	for (size_t x = 0; x < nd; x++)
		json_object_object_del(d, drop[x]);
	static const char *const arrays[] = {"timeline", "affected_components", "metric_readings",
		"supporting_evidence", "alternatives_considered", "risks", "recommended_actions"};
	for (size_t i = 0; i < OP_ARRAY_LEN(arrays); i++)
		if (!llm_is(d, arrays[i], json_type_array))
			llm_err(&e, "%s must be an array", arrays[i]);
	if (!llm_is(d, "primary_diagnosis", json_type_string) ||
	    *op_json_str(d, "primary_diagnosis", "") == '\0')
		llm_err(&e, "primary_diagnosis must be a non-empty string");
	if (!llm_is(d, "confidence", json_type_double))
		llm_err(&e, "confidence must be a number");
	else if (!isfinite(op_json_double(d, "confidence", 0)) ||
	    op_json_double(d, "confidence", 0) < 0 || op_json_double(d, "confidence", 0) > 1)
		llm_err(&e, "confidence %g is outside 0..1", op_json_double(d, "confidence", 0));
	if (!llm_in(op_json_str(d, "severity", ""), sev, 3))
		llm_err(&e, "severity must be critical, warning or info");
	acts = op_json_arr(d, "recommended_actions");
	if (acts != NULL && json_object_array_length(acts) > LLM_MAX_ACTIONS)
		llm_err(&e, "at most %d recommended actions", LLM_MAX_ACTIONS);
	for (size_t i = 0; acts && i < json_object_array_length(acts) && i < LLM_MAX_ACTIONS; i++)
		llm_check_action(sj, json_object_array_get_idx(acts, i), i, &e);
	return e.n == 0 ? 0 : -1;
}

static int
llm_has_action(json_object *d, const char *name)
{
	json_object *acts = op_json_arr(d, "recommended_actions");

	for (size_t i = 0; acts && i < json_object_array_length(acts); i++)
		if (!strcmp(op_json_str(json_object_array_get_idx(acts, i), "action", ""), name))
			return 1;
	return 0;
}

static int
llm_subset(json_object *a, json_object *b)
{
	json_object *acts = op_json_arr(a, "recommended_actions");

	for (size_t i = 0; acts && i < json_object_array_length(acts); i++)
		if (!llm_has_action(b, op_json_str(json_object_array_get_idx(acts, i), "action", "")))
			return 0;
	return 1;
}

int
llm_plans_agree(json_object *a, json_object *b)
{
	return llm_subset(a, b) && llm_subset(b, a);
}

/* List prices in USD per million tokens (input, output), by model-name prefix,
 * most specific first. An estimate: prices change, and cached or batched
 * tokens are billed differently. Unknown models (local ones) cost 0. */
static const struct {
	const char *prefix;
	double in, out;
} llm_prices[] = {
	{"claude-opus-4-5", 5.0, 25.0},
	{"claude-opus-4-6", 5.0, 25.0},
	{"claude-opus", 15.0, 75.0},
	{"claude-sonnet", 3.0, 15.0},
	{"claude-3-7-sonnet", 3.0, 15.0},
	{"claude-3-5-sonnet", 3.0, 15.0},
	{"claude-haiku-4", 1.0, 5.0},
	{"claude-3-5-haiku", 0.8, 4.0},
	{"claude-3-haiku", 0.25, 1.25},
	{"gpt-4o-mini", 0.15, 0.60},
	{"gpt-4o", 2.50, 10.0},
	{"gpt-4.1-nano", 0.10, 0.40},
	{"gpt-4.1-mini", 0.40, 1.60},
	{"gpt-4.1", 2.0, 8.0},
	{"gpt-5-nano", 0.05, 0.40},
	{"gpt-5-mini", 0.25, 2.0},
	{"gpt-5", 1.25, 10.0},
	{"o4-mini", 1.10, 4.40},
	{"o3", 2.0, 8.0},
};

double
llm_cost_usd(const char *model, int64_t tokens_in, int64_t tokens_out)
{
	for (size_t i = 0; model && i < OP_ARRAY_LEN(llm_prices); i++)
		if (!strncmp(model, llm_prices[i].prefix, strlen(llm_prices[i].prefix)))
			return ((double)tokens_in * llm_prices[i].in +
			    (double)tokens_out * llm_prices[i].out) / 1e6;
	return 0.0;
}
