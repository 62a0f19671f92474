/* llm: the diagnoser's model backends (DESIGN §6). A model plans, operatord
 * checks: every answer is validated against the subject's action catalogue and
 * bounds, compared with the offline rules, cached by fingerprint, capped per
 * hour, timed out, and replaced by the rules' answer on any failure.
 *
 * The pieces, each testable without the worker runtime:
 *   llm_conf.c    [diagnoser] section, API key (env var or 0600 file), scrubbing
 *   llm_http.c    non-blocking POSTs: curl multi driven by a libevent base
 *   llm_prompt.c  schema from the catalogue, system and user prompts, request bodies
 *   llm_parse.c   responses of both APIs, answer checks, agreement, cost estimate
 *   llm_engine.c  one diagnosis job: governor, retries, correction, fallback */
#ifndef OP_LLM_H
#define OP_LLM_H

#include <event2/event.h>
#include <json-c/json.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "subjects/subject.h"

enum llm_backend { LLM_RULES, LLM_ANTHROPIC, LLM_OPENAI };

#define LLM_ANTHROPIC_VERSION "2023-06-01"
#define LLM_TOOL_NAME "record_diagnosis"  /* the one (forced) tool / schema name */
#define LLM_DEFAULT_TIMEOUT_MS 30000
#define LLM_DEFAULT_CALLS_PER_HOUR 60
#define LLM_DEFAULT_CACHE_TTL_MS (10 * 60 * 1000)
#define LLM_DEFAULT_MAX_TOKENS 4096
#define LLM_CONNECT_TIMEOUT_MS 10000  /* capped by timeout */
#define LLM_MAX_RETRIES 2             /* transient failures retried per ticket */
#define LLM_RETRY_AFTER_MAX_MS 60000  /* a longer retry-after falls back at once */
#define LLM_BACKOFF_MS 1000           /* first transient backoff; doubles */
#define LLM_MAX_INFLIGHT 16           /* diagnoses waiting on a model at once */
#define LLM_OBS_MAX 6000              /* bytes of observation in a prompt */
#define LLM_RESP_MAX (4u << 20)       /* larger answers are an error */

struct llm_conf {
	enum llm_backend backend;
	char model[128];
	char base_url[512];       /* no trailing slash, no trailing /v1 */
	char key_env[128];
	char key_file[PATH_MAX];
	int64_t timeout_ms;
	int64_t connect_timeout_ms;
	int64_t max_calls_per_hour;
	int64_t cache_ttl_ms;     /* 0 disables the cache */
	int64_t max_tokens;
	int require_approval_on_disagreement;
};

const char *llm_backend_name(enum llm_backend b);
/* Reads and validates [diagnoser]; err reads "[diagnoser] key: why". */
int llm_conf_load(const struct op_config *cfg, struct llm_conf *c, char *err, size_t errlen);
/* The API key: from the environment variable or the 0600 file the conf names.
 * *key is NULL (and 0 returned) when none is configured. Never logs the key. */
int llm_key_load(const struct llm_conf *c, char **key, char *err, size_t errlen);
/* Replaces every occurrence of key in s (in place) with "[redacted]"-ish text
 * of at most the same length. */
void llm_scrub(char *s, const char *key);

/* ---- http (llm_http.c) ---- */
struct llm_http;
struct llm_http_req;
struct llm_http_result {
	long status;              /* 0: no HTTP answer (err says why) */
	const char *body;         /* NUL-terminated, may be empty */
	size_t len;
	int64_t retry_after_ms;   /* -1 when absent */
	const char *request_id;   /* "" when absent */
	int timed_out;
	const char *err;          /* transport error, "" when an answer arrived */
};
typedef void (*llm_http_cb)(void *arg, const struct llm_http_result *r);

struct llm_http *llm_http_new(struct event_base *base);
/* Aborts whatever is in flight without calling back. */
void llm_http_free(struct llm_http *h);
/* POSTs body (copied) with the headers (NULL-terminated "Name: value"; copied).
 * cb runs from the event loop, never from inside this call. NULL on failure. */
struct llm_http_req *llm_http_post(struct llm_http *h, const char *url,
    const char *const *headers, const char *body, int64_t timeout_ms,
    int64_t connect_timeout_ms, llm_http_cb cb, void *arg);
void llm_http_cancel(struct llm_http_req *r);
size_t llm_http_inflight(const struct llm_http *h);

/* ---- prompt (llm_prompt.c) ---- */
/* The diagnosis schema (DESIGN §6), with the catalogue's action names as an
 * enum and its parameters as typed, nullable properties; strict-mode safe. */
json_object *llm_schema(const struct op_subject *sj);
const char *llm_system_prompt(void);
/* A bounded, entity-first summary of an observation (NULL gives null). */
json_object *llm_compact_obs(json_object *obs, const char *entity, size_t max_bytes);
/* The user message: ticket, fresh observation, subject description, catalogue
 * with bounds, similar past tickets with their verified outcomes. malloc'd. */
char *llm_user_prompt(const struct op_subject *sj, json_object *ticket, json_object *history,
    json_object *obs, const char *obs_err);
/* The whole request body for the backend; messages is the conversation so far
 * (user/assistant turns, in the backend's own format; borrowed). malloc'd. */
char *llm_request_body(const struct llm_conf *c, const struct op_subject *sj,
    json_object *messages);
/* The ten keys of a diagnosis (DESIGN §6). */
size_t llm_diag_nkeys(void);
const char *llm_diag_key(size_t i);
/* Appends the backend's first user turn / a correction turn to messages. */
void llm_msgs_first(enum llm_backend b, json_object *messages, const char *user);
void llm_msgs_correct(enum llm_backend b, json_object *messages, json_object *assistant,
    const char *tool_use_id, const char *problems);

/* ---- parse (llm_parse.c) ---- */
enum llm_rkind {
	LLM_R_OK,        /* answer holds a diagnosis to check */
	LLM_R_INVALID,   /* an answer arrived but is unusable: ask once more */
	LLM_R_RETRY,     /* transient: try again after delay_ms */
	LLM_R_FAIL,      /* permanent for this ticket: fall back to rules */
};
struct llm_result {
	enum llm_rkind kind;
	json_object *answer;      /* owned: the diagnosis (OK) */
	json_object *assistant;   /* owned: the assistant turn, for a correction */
	char tool_use_id[128];    /* anthropic: the tool_use block to answer */
	int64_t tokens_in, tokens_out;
	int64_t delay_ms;
	char why[512];
};
void llm_result_clear(struct llm_result *r);
void llm_parse(enum llm_backend b, const struct llm_http_result *h, struct llm_result *r);
/* Checks a diagnosis against the schema's shape, the catalogue and its bounds.
 * Null parameters are dropped (null = not given); "3" -> 3 is the only
 * coercion (op_action_validate). 0, or -1 with every problem in errs. */
int llm_check_answer(const struct op_subject *sj, json_object *d, char *errs, size_t errlen);
/* A valid answer must also fit its ticket (op_plan_fits): each action remedies
 * the ticket's invariant and acts on its entity or one its evidence names,
 * and the store ids it names are stores of the observation (may be NULL).
 * 0, or -1 with every misfit in errs; approval gets the parameters that fit
 * but need a human (e.g. a max-store-down-time below 30 min). */
int llm_check_fit(const struct op_subject *sj, json_object *ticket, json_object *obs,
    json_object *d, char *errs, size_t errlen, char *approval, size_t alen);
/* Same set of action names. */
int llm_plans_agree(json_object *a, json_object *b);
/* USD per million tokens by model family; an estimate (list prices), 0 for
 * unknown (local) models. */
double llm_cost_usd(const char *model, int64_t tokens_in, int64_t tokens_out);

/* ---- engine (llm_engine.c) ---- */
struct llm_outcome {
	json_object *diagnosis;   /* owned by the engine during the callback */
	const char *backend;      /* "anthropic" | "openai" | "rules" (fallback) */
	const char *model;
	int agreed;
	int64_t tokens_in, tokens_out;
	double cost_usd;
	const char *fallback_reason; /* NULL unless fell back; key scrubbed */
	int require_approval;
	const char *approval_reason; /* why a human must approve; NULL when not */
	int cached;
	int calls;                /* HTTP calls made for this ticket */
};
typedef void (*llm_done_cb)(void *arg, const struct llm_outcome *o);

struct llm_engine;
/* key may be NULL (local openai-compatible servers); it is copied. */
struct llm_engine *llm_engine_new(struct event_base *base, const struct llm_conf *c,
    const char *key);
void llm_engine_free(struct llm_engine *e); /* in-flight jobs are dropped */
/* Diagnoses ticket through the model; rules is the offline diagnosis (taken).
 * done runs exactly once, possibly before this returns (cache hit, budget). */
void llm_diagnose(struct llm_engine *e, const struct op_subject *sj, json_object *ticket,
    json_object *history, json_object *obs, const char *obs_err, json_object *rules,
    llm_done_cb done, void *arg);
size_t llm_engine_inflight(const struct llm_engine *e);

#endif
