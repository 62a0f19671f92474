/* pdclient: a PD v1 HTTP API client (stores, regions, operators, schedulers,
 * config) following shared/reference/pd-api.md byte for byte.
 *
 * Every pd_parse_* function works on raw response bytes and never touches the
 * network, so the fixtures in shared/fixtures/pd can be fed to it directly.
 * Every pd_get_* / pd_set_* / action call does one blocking libcurl request
 * with a hard timeout and turns every failure (transport, timeout, HTTP error
 * body in any of PD's five forms, unparsable body) into a struct pd_err.
 *
 * IDs are uint64 and PD's real values exceed 2^63, so they are never passed
 * through double or int64. Functions return 0 on success and -1 on error. */
#ifndef OP_TIKV_PDCLIENT_H
#define OP_TIKV_PDCLIENT_H

#include <stddef.h>
#include <stdint.h>

#define PD_URL_LEN 256
#define PD_ADDR_LEN 256
#define PD_SHORT_LEN 64
#define PD_ERR_MSG_LEN 512
#define PD_MAX_LABELS 8
#define PD_MAX_URLS 4
#define PD_OP_TEXT_LEN 1024
#define PD_DEFAULT_TIMEOUT_MS 3000     /* total per request; /regions at 100k needs more */
#define PD_DEFAULT_CONNECT_TIMEOUT_MS 1000

/* Endpoints an observation reads (all of PD's paths live in pdclient). */
#define PD_API_PREFIX "/pd/api/v1"
#define PD_PATH_STORES PD_API_PREFIX "/stores"
#define PD_PATH_REGIONS PD_API_PREFIX "/regions"
#define PD_PATH_HEALTH PD_API_PREFIX "/health"
#define PD_PATH_SCHEDULERS PD_API_PREFIX "/schedulers"
#define PD_PATH_EVICT_LIST PD_API_PREFIX "/scheduler-config/evict-leader-scheduler/list"
#define PD_PATH_SCHEDULE_CONFIG PD_API_PREFIX "/config/schedule"

/* Error kinds (pd_err.kind). */
#define PD_ERR_TRANSPORT "transport" /* no HTTP answer: refused, reset, DNS */
#define PD_ERR_TIMEOUT "timeout"     /* no complete answer within the timeout */
#define PD_ERR_HTTP "http"           /* an answer with a non-2xx status */
#define PD_ERR_PARSE "parse"         /* 2xx but the body is not what PD sends */
#define PD_ERR_INVALID "invalid"     /* bad argument, nothing was sent */

struct pd_err {
	int http_status;             /* 0 when no HTTP answer arrived */
	char kind[16];               /* one of PD_ERR_* */
	char code[PD_SHORT_LEN];     /* "PD:core:ErrStoreNotFound", errcode "input", or "" */
	int not_found;               /* store/region/operator/scheduler does not exist */
	char message[PD_ERR_MSG_LEN]; /* "GET /pd/api/v1/store/7: HTTP 404: [PD:...]..." */
};

struct pd_client {
	char base_url[PD_URL_LEN];   /* "http://127.0.0.1:2379", no trailing slash */
	int64_t timeout_ms;
	int64_t connect_timeout_ms;
};

/* --- data types ---------------------------------------------------------- */

enum pd_store_state { PD_STORE_UP = 0, PD_STORE_OFFLINE = 1, PD_STORE_TOMBSTONE = 2 };

struct pd_label {
	char key[PD_SHORT_LEN];
	char value[PD_SHORT_LEN];
};

struct pd_store {
	uint64_t id;
	char address[PD_ADDR_LEN];
	char status_address[PD_ADDR_LEN];
	char version[PD_SHORT_LEN];
	int state;                    /* enum pd_store_state; absent in JSON = Up */
	int node_state;               /* 0 Preparing (absent), 1 Serving, 2 Removing, 3 Removed */
	char state_name[PD_SHORT_LEN]; /* "Up", "Disconnected", "Down", "Offline", "Tombstone" */
	int physically_destroyed;
	int64_t start_timestamp;      /* unix seconds */
	int64_t last_heartbeat;       /* unix nanoseconds, as PD gives it */
	uint64_t capacity, available, used_size; /* bytes, from ByteSize strings */
	int64_t leader_count, region_count;
	int64_t pending_peer_count, learner_count; /* 0 when absent (omitempty) */
	int64_t leader_size, region_size; /* MiB */
	double leader_weight, region_weight;
	int64_t uptime_ms;            /* Go duration "36m20.48s"; 0 when absent */
	size_t n_labels;
	struct pd_label labels[PD_MAX_LABELS];
};

struct pd_stores {
	size_t count;
	struct pd_store *v;
};

struct pd_peer {
	uint64_t id;
	uint64_t store_id;
	char role[16];                /* "Voter" when absent, "Learner", "IncomingVoter", ... */
};

struct pd_down_peer {
	struct pd_peer peer;
	uint64_t down_seconds;
};

struct pd_region {
	uint64_t id;                  /* 0 means "no such region" (PD v7.6-v8.5) */
	char *start_key, *end_key;    /* uppercase hex, "" unbounded; malloc'd */
	uint64_t conf_ver, version;
	size_t n_peers;
	struct pd_peer *peers;
	int has_leader;               /* leader absent or {"role_name":""} → 0 */
	struct pd_peer leader;
	size_t n_down;
	struct pd_down_peer *down_peers;
	size_t n_pending;
	struct pd_peer *pending_peers;
	int64_t approximate_size;     /* MiB */
	int64_t approximate_keys;
};

struct pd_regions {
	size_t count;                 /* regions in v (PD's "count" is checked against it) */
	struct pd_region *v;
};

struct pd_health {
	char name[PD_SHORT_LEN];
	uint64_t member_id;
	size_t n_client_urls;
	char client_urls[PD_MAX_URLS][PD_URL_LEN];
	int health;
};

struct pd_health_list {
	size_t count;
	struct pd_health *v;
};

struct pd_member {
	char name[PD_SHORT_LEN];
	uint64_t member_id;
	size_t n_client_urls, n_peer_urls;
	char client_urls[PD_MAX_URLS][PD_URL_LEN];
	char peer_urls[PD_MAX_URLS][PD_URL_LEN];
	char binary_version[PD_SHORT_LEN];
};

struct pd_members {
	uint64_t cluster_id;
	size_t count;
	struct pd_member *v;
	int has_leader;
	struct pd_member leader;
	uint64_t etcd_leader_id;
};

struct pd_cluster {
	uint64_t id;
	uint32_t max_peer_count;
};

struct pd_cluster_status {
	char raft_bootstrap_time[PD_SHORT_LEN];
	int is_initialized;
	char replication_status[PD_SHORT_LEN];
};

struct pd_schedule_config {
	int64_t max_store_down_time_ms;
	uint64_t leader_schedule_limit, region_schedule_limit, replica_schedule_limit;
	uint64_t max_snapshot_count, max_pending_peer_count, merge_schedule_limit;
	uint64_t hot_region_schedule_limit;
	char leader_schedule_policy[PD_SHORT_LEN];
	char *raw;                    /* the whole body, compact JSON; malloc'd */
};

struct pd_strlist {
	size_t count;
	char **v;
};

/* GET /operators/{region_id}: "status: RUNNING, operator: admin-transfer-leader {...}". */
struct pd_op_status {
	char status[16];              /* RUNNING, SUCCESS, TIMEOUT, CANCEL, REPLACE, ... */
	char text[PD_OP_TEXT_LEN];    /* the whole string PD returned */
};

/* --- pure parsing (no I/O) ------------------------------------------------ */

/* "311.7GiB", "937 GiB", "1.2TiB", "0B", "1B" → bytes (base 1024). */
int pd_parse_bytesize(const char *s, uint64_t *bytes);
/* Go time.Duration text: "30m0s", "1h2m3.5s", "2.5ms", "10us", "0s", "-1.5s" → ns. */
int pd_parse_go_duration_ns(const char *s, int64_t *ns);

int pd_parse_stores(const char *buf, size_t len, struct pd_stores *out, struct pd_err *err);
int pd_parse_store(const char *buf, size_t len, struct pd_store *out, struct pd_err *err);
int pd_parse_regions(const char *buf, size_t len, struct pd_regions *out, struct pd_err *err);
int pd_parse_region(const char *buf, size_t len, struct pd_region *out, struct pd_err *err);
int pd_parse_health(const char *buf, size_t len, struct pd_health_list *out, struct pd_err *err);
int pd_parse_members(const char *buf, size_t len, struct pd_members *out, struct pd_err *err);
int pd_parse_cluster(const char *buf, size_t len, struct pd_cluster *out, struct pd_err *err);
int pd_parse_cluster_status(const char *buf, size_t len, struct pd_cluster_status *out,
    struct pd_err *err);
int pd_parse_schedule_config(const char *buf, size_t len, struct pd_schedule_config *out,
    struct pd_err *err);
/* A JSON array of strings (schedulers, operators); null → empty list. */
int pd_parse_strlist(const char *buf, size_t len, struct pd_strlist *out, struct pd_err *err);
int pd_parse_op_status(const char *buf, size_t len, struct pd_op_status *out, struct pd_err *err);
/* Fills *e (NULL is allowed) with a cleaned message; pd_err_clear empties it. */
void pd_err_set(struct pd_err *e, int status, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pd_err_clear(struct pd_err *e);
/* The evict-leader scheduler's store list: its keys are the evicted stores. */
int pd_parse_evicted(const char *buf, size_t len, uint64_t *ids, size_t max, size_t *n,
    struct pd_err *err);
/* Turns a non-2xx answer into *err (kind http). what: "GET /pd/api/v1/store/7". */
void pd_parse_error(const char *what, long status, const char *buf, size_t len,
    struct pd_err *err);

/* Streaming decoder of GET /regions: fed the body in chunks as it arrives,
 * it calls fn once per region with only what an observation needs, and never
 * holds the body or a tree. A region with more than PD_BRIEF_PEERS_MAX peers
 * in one list is a parse error (PD's max-replicas is 3 or 5). */
#define PD_BRIEF_PEERS_MAX 16
#define PD_SCAN_DEPTH 32              /* JSON nesting the decoder accepts */
#define PD_STR_(x) #x
#define PD_STR(x) PD_STR_(x)

struct pd_region_brief {
	uint64_t id;
	int has_leader;               /* leader absent or {"role_name":""} → 0 */
	uint64_t leader_store;
	size_t n_peers, n_pending, n_down;
	uint64_t peers[PD_BRIEF_PEERS_MAX];   /* store ids */
	uint64_t pending[PD_BRIEF_PEERS_MAX]; /* store ids of pending peers */
	uint64_t down[PD_BRIEF_PEERS_MAX];    /* store ids of down peers */
};

typedef void pd_region_brief_fn(const struct pd_region_brief *r, void *arg);

struct pd_scan_frame {
	unsigned char kind;           /* '{' or '[' */
	unsigned char key;            /* the member being read, in an object */
};

struct pd_regscan {
	pd_region_brief_fn *fn;
	void *arg;
	int lex, expect, esc, uni, depth, failed, have_id;
	char tok[32];                 /* the key or number being read */
	size_t ntok;
	int tok_long;
	struct pd_scan_frame frame[PD_SCAN_DEPTH];
	struct pd_region_brief cur;
	int64_t count;                /* PD's "count", -1 until seen */
	size_t nregions;              /* regions handed to fn */
	unsigned long long off;       /* bytes consumed, for error positions */
};

void pd_regscan_init(struct pd_regscan *s, pd_region_brief_fn *fn, void *arg);
/* 0, or -1 with *err (kind parse) at the first bad byte; later feeds then fail. */
int pd_regscan_feed(struct pd_regscan *s, const char *buf, size_t len, struct pd_err *err);
/* The body ended: 0 when it was one complete answer whose count matches. */
int pd_regscan_finish(struct pd_regscan *s, struct pd_err *err);

/* Request bodies, written into buf; return the length or -1 if it does not fit.
 * transfer-leader is exactly {"name":"transfer-leader","region_id":R,"to_store_id":S}. */
int pd_build_transfer_leader_body(char *buf, size_t size, uint64_t region_id,
    uint64_t to_store_id);
int pd_build_transfer_peer_body(char *buf, size_t size, uint64_t region_id,
    uint64_t from_store_id, uint64_t to_store_id);
/* name: "add-peer", "add-learner" or "remove-peer". */
int pd_build_peer_body(char *buf, size_t size, const char *name, uint64_t region_id,
    uint64_t store_id);
/* roles may be NULL; otherwise n strings "voter", "leader", "follower", "learner". */
int pd_build_transfer_region_body(char *buf, size_t size, uint64_t region_id,
    const uint64_t *to_store_ids, const char *const *roles, size_t n);
int pd_build_scheduler_body(char *buf, size_t size, const char *name, uint64_t store_id);

void pd_store_free(struct pd_store *s);   /* no-op today; kept for symmetry */
void pd_stores_free(struct pd_stores *s);
void pd_region_free(struct pd_region *r);
void pd_regions_free(struct pd_regions *r);
void pd_health_free(struct pd_health_list *h);
void pd_members_free(struct pd_members *m);
void pd_schedule_config_free(struct pd_schedule_config *c);
void pd_strlist_free(struct pd_strlist *l);
/* Lookups for observers. */
const struct pd_store *pd_stores_find(const struct pd_stores *s, uint64_t id);
int pd_strlist_contains(const struct pd_strlist *l, const char *s);

/* --- calls ---------------------------------------------------------------- */

/* timeout_ms / connect_timeout_ms of 0 take the PD_DEFAULT_* values. */
int pd_client_init(struct pd_client *c, const char *base_url, int64_t timeout_ms,
    int64_t connect_timeout_ms, struct pd_err *err);

int pd_get_stores(const struct pd_client *c, struct pd_stores *out, struct pd_err *err);
/* state: NULL for PD's default (Up + Offline), else e.g. "state=0&state=1&state=2". */
int pd_get_stores_query(const struct pd_client *c, const char *query, struct pd_stores *out,
    struct pd_err *err);
int pd_get_store(const struct pd_client *c, uint64_t id, struct pd_store *out,
    struct pd_err *err);
/* DELETE /store/{id}[?force]: marks the store Offline (re-replication starts at once). */
int pd_delete_store(const struct pd_client *c, uint64_t id, int force, struct pd_err *err);

int pd_get_regions(const struct pd_client *c, struct pd_regions *out, struct pd_err *err);
int pd_get_regions_by_store(const struct pd_client *c, uint64_t store_id,
    struct pd_regions *out, struct pd_err *err);
/* Region not found is an error with not_found set, for every PD version:
 * ≤v7.5 200 "null", v7.6-v8.5 200 zero region, master 404. */
int pd_get_region(const struct pd_client *c, uint64_t id, struct pd_region *out,
    struct pd_err *err);

int pd_get_health(const struct pd_client *c, struct pd_health_list *out, struct pd_err *err);
int pd_get_members(const struct pd_client *c, struct pd_members *out, struct pd_err *err);
int pd_get_cluster(const struct pd_client *c, struct pd_cluster *out, struct pd_err *err);
int pd_get_cluster_status(const struct pd_client *c, struct pd_cluster_status *out,
    struct pd_err *err);

int pd_get_schedule_config(const struct pd_client *c, struct pd_schedule_config *out,
    struct pd_err *err);
/* json: any subset of the schedule config, e.g. {"max-store-down-time":"1m"}. */
int pd_set_schedule_config(const struct pd_client *c, const char *json, struct pd_err *err);
/* dur: a Go duration string such as "30m" or "1m30s". */
int pd_set_max_store_down_time(const struct pd_client *c, const char *dur, struct pd_err *err);

int pd_get_operators(const struct pd_client *c, struct pd_strlist *out, struct pd_err *err);
int pd_get_operator(const struct pd_client *c, uint64_t region_id, struct pd_op_status *out,
    struct pd_err *err);
/* body: a complete POST /operators body. */
int pd_create_operator(const struct pd_client *c, const char *body, struct pd_err *err);
int pd_delete_operator(const struct pd_client *c, uint64_t region_id, struct pd_err *err);
int pd_transfer_leader(const struct pd_client *c, uint64_t region_id, uint64_t to_store_id,
    struct pd_err *err);
int pd_transfer_peer(const struct pd_client *c, uint64_t region_id, uint64_t from_store_id,
    uint64_t to_store_id, struct pd_err *err);
int pd_transfer_region(const struct pd_client *c, uint64_t region_id,
    const uint64_t *to_store_ids, const char *const *roles, size_t n, struct pd_err *err);
int pd_add_peer(const struct pd_client *c, uint64_t region_id, uint64_t store_id,
    struct pd_err *err);
int pd_remove_peer(const struct pd_client *c, uint64_t region_id, uint64_t store_id,
    struct pd_err *err);

int pd_get_schedulers(const struct pd_client *c, struct pd_strlist *out, struct pd_err *err);
/* store_id 0 sends no store_id (for schedulers that take none). */
int pd_add_scheduler(const struct pd_client *c, const char *name, uint64_t store_id,
    struct pd_err *err);
int pd_remove_scheduler(const struct pd_client *c, const char *name, struct pd_err *err);
/* Stores under evict-leader: GET /schedulers, then the scheduler's list only
 * while it exists (PD answers the list only then). Up to max ids in *n. */
int pd_get_evicted(const struct pd_client *c, uint64_t *ids, size_t max, size_t *n,
    struct pd_err *err);
/* POST {"name":"evict-leader-scheduler","store_id":S}. */
int pd_evict_leader_add(const struct pd_client *c, uint64_t store_id, struct pd_err *err);
/* DELETE /schedulers/evict-leader-scheduler-{id}; 404 (store was not evicted) counts as
 * success because the wanted end state holds, as tidb-operator's EndEvictLeader does. */
int pd_evict_leader_remove(const struct pd_client *c, uint64_t store_id, struct pd_err *err);

#endif
