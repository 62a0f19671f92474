/* llm_engine: one diagnosis job per ticket, several at once, on the worker's
 * event loop. The governor (cache, hourly budget, timeouts, retries) lives
 * here; anything that goes wrong ends in the rules' answer with a reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "workers/llm.h"

#define LLM_HOUR_MS 3600000LL
#define LLM_CACHE_MAX 256

struct llm_job {
	struct llm_engine *e;
	const struct op_subject *sj;
	json_object *ticket, *rules, *messages;
	json_object *obs;         /* the fresh observation the plan's ids must be in */
	char fp[512];
	int64_t ticket_id;
	int retries, corrected, calls;
	char first_problems[512]; /* why the first answer was rejected */
	char approval[512];       /* parameters of a fitting plan that need a human */
	int64_t tokens_in, tokens_out;
	struct llm_http_req *req;
	struct event *timer;
	llm_done_cb done;
	void *arg;
	struct llm_job *next, *prev;
};

struct llm_cache_ent {
	char fp[512];
	int64_t at_ms;
	json_object *diag;
	struct llm_cache_ent *next;
};

struct llm_engine {
	struct event_base *base;
	struct llm_conf conf;
	char *key;
	struct llm_http *http;
	char url[600];
	char *auth;               /* the header that carries the key */
	struct llm_job *jobs;
	size_t njobs;
	int64_t *ring;            /* start times of the calls in the last hour */
	size_t ring_cap, ring_head, ring_n;
	struct llm_cache_ent *cache;
	size_t ncache;
};

struct llm_engine *
llm_engine_new(struct event_base *base, const struct llm_conf *c, const char *key)
{
	struct llm_engine *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->base = base;
	e->conf = *c;
	e->http = llm_http_new(base);
	snprintf(e->url, sizeof(e->url), "%s/v1/%s", c->base_url,
	    c->backend == LLM_ANTHROPIC ? "messages" : "chat/completions");
	if (key != NULL && *key) {
		size_t n = strlen(key) + 32;
		e->key = strdup(key);
		e->auth = malloc(n);
		if (e->auth)
			snprintf(e->auth, n, c->backend == LLM_ANTHROPIC ? "x-api-key: %s"
			    : "Authorization: Bearer %s", key);
	}
	e->ring_cap = c->max_calls_per_hour > 0 ? (size_t)c->max_calls_per_hour : 1;
	e->ring = calloc(e->ring_cap, sizeof(*e->ring));
	if (e->http == NULL || e->ring == NULL || (key && *key && (!e->key || !e->auth))) {
		llm_engine_free(e);
		return NULL;
	}
	return e;
}

static void
llm_job_free(struct llm_job *j)
{
	struct llm_engine *e = j->e;

	if (j->prev)
		j->prev->next = j->next;
	else
		e->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	e->njobs--;
	llm_http_cancel(j->req);
	if (j->timer)
		event_free(j->timer);
	json_object_put(j->ticket);
	json_object_put(j->obs);
	json_object_put(j->rules);
	json_object_put(j->messages);
	free(j);
}

void
llm_engine_free(struct llm_engine *e)
{
	if (e == NULL)
		return;
	while (e->jobs)
		llm_job_free(e->jobs);
	llm_http_free(e->http);
	while (e->cache) {
		struct llm_cache_ent *c = e->cache;
		e->cache = c->next;
		json_object_put(c->diag);
		free(c);
	}
	if (e->key) {
		explicit_bzero(e->key, strlen(e->key));
		free(e->key);
	}
	if (e->auth) {
		explicit_bzero(e->auth, strlen(e->auth));
		free(e->auth);
	}
	free(e->ring);
	free(e);
}

size_t
llm_engine_inflight(const struct llm_engine *e)
{
	return e->njobs;
}

/* ---- governor ---- */

static int
llm_budget_take(struct llm_engine *e)
{
	int64_t now = op_mono_ms();

	if (e->conf.max_calls_per_hour <= 0)
		return 0;
	/* ring_head is the oldest entry once the ring is full. */
	if (e->ring_n == e->ring_cap && e->ring[e->ring_head] > now - LLM_HOUR_MS)
		return 0;
	e->ring[e->ring_head] = now;
	e->ring_head = (e->ring_head + 1) % e->ring_cap;
	if (e->ring_n < e->ring_cap)
		e->ring_n++;
	return 1;
}

static json_object *
llm_cache_get(struct llm_engine *e, const char *fp)
{
	int64_t now = op_mono_ms();

	for (struct llm_cache_ent *c = e->cache; c; c = c->next)
		if (!strcmp(c->fp, fp) && now - c->at_ms < e->conf.cache_ttl_ms)
			return c->diag;
	return NULL;
}

static void
llm_cache_put(struct llm_engine *e, const char *fp, json_object *diag)
{
	struct llm_cache_ent **pp, *c;
	int64_t now = op_mono_ms();

	if (e->conf.cache_ttl_ms <= 0)
		return;
	/* Drop this fingerprint's old entry, anything expired, and (newest
	 * first in the list) whatever lies beyond the size cap. */
	size_t kept = 0;
	for (pp = &e->cache; (c = *pp) != NULL;) {
		if (!strcmp(c->fp, fp) || now - c->at_ms >= e->conf.cache_ttl_ms ||
		    kept >= LLM_CACHE_MAX - 1) {
			*pp = c->next;
			json_object_put(c->diag);
			free(c);
			e->ncache--;
			continue;
		}
		kept++;
		pp = &c->next;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	op_strlcpy(c->fp, fp, sizeof(c->fp));
	c->at_ms = now;
	c->diag = NULL;
	json_object_deep_copy(diag, &c->diag, NULL);
	c->next = e->cache;
	e->cache = c;
	e->ncache++;
}

/* ---- outcomes ---- */

static void
llm_finish(struct llm_job *j, json_object *diag, const char *fallback, int cached)
{
	struct llm_engine *e = j->e;
	struct llm_outcome o;
	char reason[1200];

	memset(&o, 0, sizeof(o));
	o.model = e->conf.model;
	o.tokens_in = j->tokens_in;
	o.tokens_out = j->tokens_out;
	o.cost_usd = llm_cost_usd(e->conf.model, j->tokens_in, j->tokens_out);
	o.calls = j->calls;
	o.cached = cached;
	if (fallback != NULL) {
		op_strlcpy(reason, fallback, sizeof(reason));
		llm_scrub(reason, e->key);
		o.diagnosis = j->rules;
		o.backend = "rules";
		o.agreed = 1;
		o.fallback_reason = reason;
		log_warn("ticket %lld: %s diagnosis fell back to rules after %d call(s): %s",
		    (long long)j->ticket_id, llm_backend_name(e->conf.backend), j->calls, reason);
	} else {
		o.diagnosis = diag;
		o.backend = llm_backend_name(e->conf.backend);
		o.agreed = llm_plans_agree(diag, j->rules);
		o.require_approval = !o.agreed && e->conf.require_approval_on_disagreement;
		if (o.require_approval)
			o.approval_reason = "the model's plan disagrees with the rules";
		if (j->approval[0] != '\0') {
			o.require_approval = 1;
			o.approval_reason = j->approval;
		}
		log_info("ticket %lld: diagnosed by %s %s%s in %d call(s), %lld+%lld tokens "
		    "(~$%.4f), %s the rules", (long long)j->ticket_id, o.backend, o.model,
		    cached ? " (cached)" : "", j->calls, (long long)j->tokens_in,
		    (long long)j->tokens_out, o.cost_usd, o.agreed ? "agrees with" : "disagrees with");
	}
	j->done(j->arg, &o);
}

static void llm_call(struct llm_job *j);

static void
llm_on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	llm_call(arg);
}

static int
llm_contains_key(struct llm_engine *e, json_object *d)
{
	return e->key != NULL && strlen(e->key) >= 4 &&
	    strstr(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN), e->key) != NULL;
}

static void
llm_on_http(void *arg, const struct llm_http_result *h)
{
	struct llm_job *j = arg;
	struct llm_engine *e = j->e;
	struct llm_result r;
	char problems[2048];

	j->req = NULL;
	j->calls++;
	llm_parse(e->conf.backend, h, &r);
	llm_scrub(r.why, e->key);
	j->tokens_in += r.tokens_in;
	j->tokens_out += r.tokens_out;
	if (r.kind == LLM_R_OK) {
		if (llm_check_answer(j->sj, r.answer, problems, sizeof(problems)) == 0 &&
		    llm_check_fit(j->sj, j->ticket, j->obs, r.answer, problems, sizeof(problems), j->approval,
			sizeof(j->approval)) == 0) {
			if (llm_contains_key(e, r.answer)) {
				llm_finish(j, NULL, "the answer contained the API key", 0);
			} else {
				llm_cache_put(e, j->fp, r.answer);
				llm_finish(j, r.answer, NULL, 0);
			}
			goto done;
		}
		r.kind = LLM_R_INVALID;
		op_strlcpy(r.why, problems, sizeof(r.why));
		llm_scrub(r.why, e->key);
	}
	switch (r.kind) {
	case LLM_R_INVALID:
		if (!j->corrected) {
			/* One more chance, told exactly what was wrong. */
			j->corrected = 1;
			op_strlcpy(j->first_problems, r.why, sizeof(j->first_problems));
			log_info("ticket %lld: %s answer rejected, asking once more: %s",
			    (long long)j->ticket_id, llm_backend_name(e->conf.backend), r.why);
			llm_msgs_correct(e->conf.backend, j->messages, r.assistant, r.tool_use_id, r.why);
			llm_result_clear(&r);
			llm_call(j);
			return;
		}
		snprintf(problems, sizeof(problems), "invalid answer after a correction: %s "
		    "(the first answer: %s)", r.why, j->first_problems);
		llm_finish(j, NULL, problems, 0);
		break;
	case LLM_R_RETRY:
		if (j->retries < LLM_MAX_RETRIES) {
			int64_t delay = r.delay_ms >= 0 ? r.delay_ms
			    : (int64_t)LLM_BACKOFF_MS << j->retries;
			j->retries++;
			log_info("ticket %lld: %s call failed (%s); retry %d/%d in %lld ms",
			    (long long)j->ticket_id, llm_backend_name(e->conf.backend), r.why,
			    j->retries, LLM_MAX_RETRIES, (long long)delay);
			struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
			evtimer_add(j->timer, &tv);
			llm_result_clear(&r);
			return;
		}
		snprintf(problems, sizeof(problems), "gave up after %d calls: %s", j->calls, r.why);
		llm_finish(j, NULL, problems, 0);
		break;
	default:
		llm_finish(j, NULL, r.why, 0);
		break;
	}
done:
	llm_result_clear(&r);
	llm_job_free(j);
}

static void
llm_call(struct llm_job *j)
{
	struct llm_engine *e = j->e;
	const char *hdrs[5];
	char ver[64];
	size_t n = 0;
	char *body;

	if (!llm_budget_take(e)) {
		char why[160];
		snprintf(why, sizeof(why), "call budget exhausted: max_calls_per_hour = %lld",
		    (long long)e->conf.max_calls_per_hour);
		llm_finish(j, NULL, why, 0);
		llm_job_free(j);
		return;
	}
	hdrs[n++] = "Content-Type: application/json";
	if (e->auth)
		hdrs[n++] = e->auth;
	if (e->conf.backend == LLM_ANTHROPIC) {
		snprintf(ver, sizeof(ver), "anthropic-version: %s", LLM_ANTHROPIC_VERSION);
		hdrs[n++] = ver;
	}
	hdrs[n] = NULL;
	body = llm_request_body(&e->conf, j->sj, j->messages);
	if (body != NULL)
		j->req = llm_http_post(e->http, e->url, hdrs, body, e->conf.timeout_ms,
		    e->conf.connect_timeout_ms, llm_on_http, j);
	free(body);
	if (j->req == NULL) {
		llm_finish(j, NULL, "cannot start the HTTP request", 0);
		llm_job_free(j);
	}
}

void
llm_diagnose(struct llm_engine *e, const struct op_subject *sj, json_object *ticket,
    json_object *history, json_object *obs, const char *obs_err, json_object *rules,
    llm_done_cb done, void *arg)
{
	struct llm_job *j = calloc(1, sizeof(*j));
	json_object *hit;

	if (j == NULL) {
		struct llm_outcome o = {.diagnosis = rules, .backend = "rules", .agreed = 1,
			.model = e->conf.model, .fallback_reason = "out of memory"};
		done(arg, &o);
		json_object_put(rules);
		return;
	}
	j->e = e;
	j->sj = sj;
	j->ticket = json_object_get(ticket);
	j->obs = json_object_get(obs);
	j->rules = rules;
	j->done = done;
	j->arg = arg;
	j->ticket_id = op_json_int(ticket, "id", 0);
	j->messages = json_object_new_array();
	j->timer = evtimer_new(e->base, llm_on_retry_timer, j);
	op_fingerprint(j->fp, sizeof(j->fp), op_json_str(ticket, "subject", ""),
	    op_json_str(ticket, "invariant", ""), op_json_str(ticket, "entity", ""));
	j->next = e->jobs;
	if (e->jobs)
		e->jobs->prev = j;
	e->jobs = j;
	e->njobs++;

	/* A later attempt on the same ticket wants a fresh look, not the plan that
	 * just failed verification. */
	char cerr[512];
	if (op_json_int(ticket, "attempts", 0) == 0 && (hit = llm_cache_get(e, j->fp)) != NULL &&
	    llm_check_fit(sj, ticket, obs, hit, cerr, sizeof(cerr), j->approval,
		sizeof(j->approval)) == 0) {
		json_object *copy = NULL;
		json_object_deep_copy(hit, &copy, NULL);
		llm_finish(j, copy, NULL, 1);
		json_object_put(copy);
		llm_job_free(j);
		return;
	}
	if (e->njobs > LLM_MAX_INFLIGHT) {
		llm_finish(j, NULL, "too many diagnoses already waiting on the model", 0);
		llm_job_free(j);
		return;
	}
	char *user = llm_user_prompt(sj, ticket, history, obs, obs_err);
	if (user == NULL || j->timer == NULL) {
		free(user);
		llm_finish(j, NULL, "cannot build the prompt", 0);
		llm_job_free(j);
		return;
	}
	llm_msgs_first(e->conf.backend, j->messages, user);
	free(user);
	llm_call(j);
}
