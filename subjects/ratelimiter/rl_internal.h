/* rl_internal: the rate-limiter subject's private header, shared by its
 * observer/invariants (rl_subject.c), playbook (rl_rules.c), actions
 * (rl_actions.c) and faults (rl_faults.c). Not part of rlnode. */
#ifndef RL_INTERNAL_H
#define RL_INTERNAL_H

#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http.h"
#include "subjects/ratelimiter/rl_wire.h"
#include "subjects/subject.h"

#define RL_SUBJECT "ratelimiter"
#define RL_SECTION "subject.ratelimiter"

#define RL_NODES_MAX 32              /* configured node URLs */
#define RL_URL_MAX 256               /* bytes in a node base URL */
#define RL_HOST_MAX 256              /* bytes in the Redis host name */
#define RL_ID_MAX (RLW_NODE_ID_MAX + 1) /* node id and NUL */
#define RL_KEYNAME_MAX RLW_KEY_MAX   /* bytes in a rate-limit key */
#define RL_REQ_URL_MAX (RL_URL_MAX + 3 * RL_KEYNAME_MAX + 64) /* base + encoded key + path */

#define RL_REDIS_TIMEOUT_MS 500      /* observer's own Redis connect and command timeout */
#define RL_SETTLE_MS 1000            /* observe counters this far in the past: in-flight settle */
#define RL_DEF_HTTP_TIMEOUT_MS 1000  /* per HTTP call of an observation */
#define RL_DEF_DRIFT_TOL 3           /* requests of drift tolerated */
#define RL_DEF_LATENCY_P99_MS 100    /* /check p99 above this is high latency */
#define RL_DEF_MIN_CHECKS 20         /* fewer recent checks: p99 means nothing */
#define RL_LAT_CLEAR_RATIO 0.8       /* p99 below this share of the threshold is healthy */
#define RL_ACTION_TIMEOUT_MS 3000    /* per HTTP call of an action or a fault */

/* Invariant names: the readings point at these static strings. */
#define RL_INV_NODE_DOWN "node_down"
#define RL_INV_REDIS "redis_unreachable"
#define RL_INV_DRIFT "counter_drift"
#define RL_INV_OVER "over_limit"
#define RL_INV_GHOST "ghost_allowing"
#define RL_INV_LATENCY "high_latency"

#define RL_NACTIONS 3
#define RL_NFAULTS 4

struct rl_priv {
	char redis_host[RL_HOST_MAX];
	int redis_port;
	char nodes[RL_NODES_MAX][RL_URL_MAX];   /* base URLs, no trailing '/' */
	char node_ids[RL_NODES_MAX][RL_ID_MAX]; /* learnt from /health; "" until then */
	size_t nnodes;
	int64_t timeout_ms;
	int64_t drift_tol;
	int64_t latency_p99_ms;
	int64_t min_checks;
	redisContext *rc;        /* observer's connection, reopened after any error */
	int64_t redis_off_ms;    /* Redis TIME minus local wall clock, last seen */
	int have_off;
};

/* One node as a fresh /health saw it (actions and faults). */
struct rl_probe {
	char url[RL_URL_MAX];
	char id[RL_ID_MAX];
	int reachable;
	int64_t pid;
	char err[256];
};

/* ---- rl_subject.c: config, shared helpers ---- */
/* GET of url with timeout_ms as the total and the connect timeout. */
void rl_req_get(struct op_http_req *r, const char *url, int64_t timeout_ms);
/* The JSON object of a 200 answer, or NULL with err. */
json_object *rl_req_json(struct op_http_req *r, char *err, size_t errlen);
/* ---- rl_observe.c ---- */
int rl_observe(struct op_subject *s, json_object **out, char *err, size_t errlen);
/* ---- rl_check.c: rl_check below ---- */
redisContext *rl_redis_open(const struct rl_priv *p, int64_t timeout_ms, char *err,
    size_t errlen);
/* A reply that is not an error, or NULL with err (the reply is freed). */
redisReply *rl_redis_cmd(redisContext *c, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* One HTTP call whose answer is JSON. Returns 0 when an answer arrived
 * (*status set; *out parsed or NULL), -1 on transport failure. */
int rl_http_json(const char *method, const char *url, const char *body, int64_t timeout_ms,
    long *status, json_object **out, char *err, size_t errlen);
/* Percent-encodes a key for a URL path segment; -1 when it does not fit. */
int rl_pct_encode(const char *in, char *out, size_t outlen);
/* Fresh /health of every configured node, in parallel; returns how many answered. */
size_t rl_probe_nodes(struct rl_priv *p, struct rl_probe *out);
/* Resolves a node id or a configured URL; NULL when neither matches. */
const struct rl_probe *rl_probe_find(const struct rl_probe *pr, size_t n, const char *node);
json_object *rl_obs_key(json_object *obs, const char *key);
json_object *rl_obs_node(json_object *obs, const char *id);
void rl_check(struct op_subject *s, json_object *obs, struct op_readings *out);

/* ---- rl_rules.c: offline playbook ---- */
json_object *rl_diagnose(struct op_subject *s, json_object *ticket, json_object *obs);

/* ---- rl_actions.c: catalogue, preconditions, execution ---- */
extern const struct op_action_def rl_actions[RL_NACTIONS];
int rl_precheck(struct op_subject *s, const char *action, json_object *params, json_object *obs,
    char *why, size_t whylen);
int rl_execute(struct op_subject *s, const char *action, json_object *params,
    json_object **result, char *err, size_t errlen);

/* ---- rl_faults.c: chaos catalogue, inject, undo ---- */
extern const struct op_fault_def rl_faults[RL_NFAULTS];
int rl_inject(struct op_subject *s, const char *fault, json_object *params, json_object **undo,
    char *err, size_t errlen);
int rl_undo(struct op_subject *s, const char *fault, json_object *undo, char *err,
    size_t errlen);

#endif
