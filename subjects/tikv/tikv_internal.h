/* tikv_internal: the TiKV subject's private header, shared by its observer
 * and invariants (tikv_subject.c), playbook (tikv_rules.c), actions
 * (tikv_actions.c) and faults (tikv_faults.c). PD is reached through
 * pdclient; the stores' status addresses are probed directly. */
#ifndef TIKV_INTERNAL_H
#define TIKV_INTERNAL_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http.h"
#include "subjects/subject.h"
#include "subjects/tikv/pdclient.h"

#define TIKV_SUBJECT "tikv"
#define TIKV_SECTION "subject.tikv"

#define TIKV_STORES_MAX 1024            /* stores one observation handles (pdsim: 1000) */
#define TIKV_SAMPLES_MAX 20             /* region ids quoted per category in an observation */
#define TIKV_REJECTS_MAX 20             /* rejected operators quoted in a result */
#define TIKV_URL_MAX (PD_URL_LEN + 128) /* base URL plus an API path */

#define TIKV_DEF_TIMEOUT_MS 2000        /* per PD call of an observation */
#define TIKV_DEF_PROBE_MS 500           /* GET /status of a store: a dead one refuses at once */
#define TIKV_DEF_TOLERANCE 0.2          /* leader spread allowed, share of the mean */
#define TIKV_DEF_TOLERANCE_MIN 2        /* leaders: small clusters are never "imbalanced" by 1 */
#define TIKV_DEF_MAX_OPERATORS 256      /* operators one action may create */
#define TIKV_DEF_ELECTION_WAIT_MS 5000  /* rebalance waits this long for raft elections */
#define TIKV_DEF_DISK_MIN 0.2           /* available/capacity below this is low disk */
#define TIKV_DEF_LATENCY_P99_MS 500     /* gRPC p99 above this is high latency */
#define TIKV_ACTION_TIMEOUT_MS 3000     /* per PD call of an action or a fault */
#define TIKV_POST_BATCH 16              /* operators POSTed to PD in parallel */
#define TIKV_ELECTION_POLL_MS 250       /* re-read step while waiting for elections */
#define TIKV_DEF_REPLICAS 3             /* PD max-replicas default */

/* Invariant names: the readings point at these static strings. */
#define TIKV_INV_STORE_DOWN "store_down"
#define TIKV_INV_IMBALANCE "leader_imbalance"
#define TIKV_INV_LEADERLESS "region_leaderless"
#define TIKV_INV_UNDER_REPL "region_under_replicated"
#define TIKV_INV_PD "pd_unreachable"
#define TIKV_INV_DISK "store_disk_low"
#define TIKV_INV_LATENCY "store_high_latency"

#define TIKV_ENTITY_CLUSTER "cluster"
#define TIKV_ENTITY_PD "pd"

#define TIKV_NACTIONS 9
#define TIKV_NFAULTS 2

struct tikv_cached_store {
	uint64_t id;
	char status_address[PD_ADDR_LEN];
	char address[PD_ADDR_LEN];
	char state_name[PD_SHORT_LEN];
};

struct tikv_priv {
	struct pd_client pd;
	char pd_url[PD_URL_LEN];        /* no trailing '/' */
	char prom_url[PD_URL_LEN];      /* "" when not configured */
	int64_t timeout_ms, probe_ms, election_wait_ms;
	double tolerance;
	int64_t tolerance_min, max_operators;
	double disk_min;
	int64_t latency_p99_ms;
	/* The last store list PD gave: probed in parallel with the next PD read,
	 * and kept so that a PD outage still reports every known store (BAND). */
	struct tikv_cached_store cache[TIKV_STORES_MAX];
	size_t ncache;
};

/* Leader balance across the stores that can serve leaders: Up per PD,
 * answering their status probe, and not under evict-leader. */
struct tikv_balance {
	size_t nserving;
	int64_t min, max, total;
	uint64_t min_store, max_store;
	double mean, allowed;           /* allowed spread = max(tolerance_min, tolerance * mean) */
	int64_t spread;
};

/* One store as a fresh read sees it (actions and faults). */
struct tikv_live {
	uint64_t id;
	int up;                         /* PD state_name "Up" */
	int probe_ok;
	int evicted;
	int64_t leaders;
	char state_name[PD_SHORT_LEN];
	char status_address[PD_ADDR_LEN];
};

/* ---- tikv_subject.c: config, outcome, shared helpers ---- */
json_object *tikv_obs_store(json_object *obs, uint64_t id);
/* Serving-store leader balance of an observation; 0 stores when none serve. */
void tikv_balance_of(const struct tikv_priv *p, json_object *obs, struct tikv_balance *b);
/* Whether the observation has PD's answers (pd.ok). */
int tikv_obs_pd_ok(json_object *obs);
/* Probes the status addresses of n stores in parallel; ok[i] 1/0, err[i] why. */
void tikv_probe(const struct tikv_priv *p, const char *const *status_addrs, size_t n, int *ok,
    char (*err)[128], int64_t *ms);
/* Evicted store ids (evict-leader-scheduler) from a fresh PD read; -1 with err. */
int tikv_read_evicted(const struct tikv_priv *p, uint64_t *ids, size_t max, size_t *n,
    char *err, size_t errlen);
void tikv_check(struct op_subject *s, json_object *obs, struct op_readings *out);

/* GET of url with timeout_ms as both the total and the connect timeout. */
void tikv_req_get(struct op_http_req *r, const char *url, int64_t timeout_ms);
/* http://ADDR/status of a store's status address (a scheme, if any, is kept). */
void tikv_status_url(const char *addr, char *out, size_t outlen);
/* A status probe's answer: ok 1 on HTTP 200, else err says why. */
void tikv_probe_result(struct op_http_req *r, int *ok, char *err, size_t errlen);

/* ---- tikv_observe.c: one observation (streams /regions) ---- */
int tikv_observe(struct op_subject *s, json_object **out, char *err, size_t errlen);

/* ---- tikv_check.c: readings ---- */
json_object *tikv_balance_evidence(const struct tikv_priv *p, json_object *obs,
    const struct tikv_balance *b);
/* Regions awaiting a leader: leaderless plus led from a down store. */
int64_t tikv_elections_pending(json_object *obs);

/* ---- tikv_rules.c: offline playbook ---- */
json_object *tikv_diagnose(struct op_subject *s, json_object *ticket, json_object *obs);

/* ---- tikv_actions.c: catalogue, preconditions, execution ---- */
extern const struct op_action_def tikv_actions[TIKV_NACTIONS];
int tikv_precheck(struct op_subject *s, const char *action, json_object *params,
    json_object *obs, char *why, size_t whylen);
int tikv_execute(struct op_subject *s, const char *action, json_object *params,
    json_object **result, char *err, size_t errlen);

/* ---- tikv_faults.c: chaos catalogue, inject, undo ---- */
extern const struct op_fault_def tikv_faults[TIKV_NFAULTS];
int tikv_inject(struct op_subject *s, const char *fault, json_object *params,
    json_object **undo, char *err, size_t errlen);
int tikv_undo(struct op_subject *s, const char *fault, json_object *undo, char *err,
    size_t errlen);

#endif
