/* pdsim: a PD-compatible simulator with one real process per TiKV store.
 *
 * Split:
 *   pdsim.c          options, main loop, store process management (fork/exec/reap)
 *   pdsim_cluster.c  the model: stores, regions, elections, re-replication,
 *                    operators, schedulers, schedule config (no I/O)
 *   pdsim_http.c     PD's HTTP API with PD's renderers and error bodies
 *   pdsim_json.c     byte-exact JSON writing (Go encoding/json style) and Go
 *                    number/size/duration/time formatting
 *   pdsim_store.c    --store-mode: the store process (status server + heartbeats)
 *
 * All timings are milliseconds and configurable; PD/TiKV defaults are noted. */
#ifndef OP_TIKV_PDSIM_H
#define OP_TIKV_PDSIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#define SIM_MAX_STORES 1000
#define SIM_MAX_REGIONS 2000000
#define SIM_MAX_PEERS 7            /* 5 replicas + room for an add before a remove */
#define SIM_ADDR_LEN 96
#define SIM_MAX_RECORDS 10000      /* finished operators kept for GET /operators/{id} */
#define SIM_EVICT_BATCH 3          /* PD EvictLeaderBatchSize */
#define SIM_REGION_SIZE_MIB 1      /* approximate_size of a fresh region */
#define SIM_REGION_KEYS 1000
#define SIM_STORE_CAPACITY (100ull << 30) /* bytes reported by a store process */

/* Defaults, scaled down from PD/TiKV so that tests run in seconds. */
#define SIM_DEF_HEARTBEAT_MS 200       /* TiKV store heartbeat: 10 s */
#define SIM_DEF_DISCONNECT_MS 1000     /* PD storeDisconnectDuration: 20 s */
#define SIM_DEF_DOWN_MS 3000           /* PD max-store-down-time: 30 min */
#define SIM_DEF_PEER_DOWN_MS 2000      /* TiKV max-peer-down-duration: 10 min */
#define SIM_DEF_ELECTION_MS 1000       /* raft election timeout: 10-20 s */
#define SIM_DEF_BALANCE_MS 1000        /* one balance-leader move per interval */
#define SIM_DEF_EVICT_MS 200           /* evict-leader moves a batch per interval */
#define SIM_DEF_OP_MS 300              /* time an admin operator takes to finish */
#define SIM_DEF_OP_TIMEOUT_MS 5000     /* PD: 60 s for fast steps */
#define SIM_DEF_CATCHUP_MS 500         /* a new or returning peer stays pending */
#define SIM_DEF_TICK_MS 50             /* model step */
#define SIM_DEF_RECORD_MS 600000       /* PD operatorStatusRemainTime: 10 min */
#define SIM_DEF_REPLICA_PER_TICK 64    /* PD replica-schedule-limit */

struct sim_opts {
	char bind[64];
	int port;                     /* 0: any free port (see port_file) */
	char port_file[256];          /* written with the bound port once listening */
	char state_file[256];         /* /pdsim/stores JSON, rewritten on changes */
	int n_stores, n_regions, replicas;
	int64_t heartbeat_ms, disconnect_ms, down_ms, peer_down_ms, unhealthy_ms;
	int64_t election_ms, balance_ms, evict_ms, op_ms, op_timeout_ms, catchup_ms;
	int64_t tick_ms, record_ms;
	int replica_per_tick;
	int store_port_base;          /* 0: stores take any free ports */
	int no_spawn;                 /* model only, no store processes (unit tests) */
	int master_mode;              /* PD master: 404 for an unknown region */
	uint64_t cluster_id, member_id;
	int verbose;
};

struct sim_store {
	uint64_t id;
	char address[SIM_ADDR_LEN], status_address[SIM_ADDR_LEN];
	pid_t pid;                    /* 0 when not running */
	pid_t last_pid;
	int restarts;
	int64_t last_hb_ms;           /* monotonic */
	int64_t last_hb_wall_ns;
	int64_t start_ts;             /* unix seconds of the process start */
	int state;                    /* 0 Up, 1 Offline, 2 Tombstone */
	int node_state;               /* 1 Serving, 2 Removing, 3 Removed */
	int destroyed;                /* physically_destroyed */
	int evicted;                  /* under evict-leader-scheduler */
	uint64_t capacity, available;
	/* recounted every tick */
	int64_t leader_count, region_count, pending_count, learner_count;
	int64_t leader_size, region_size;
};

enum sim_role { SIM_VOTER = 0, SIM_LEARNER = 1 };

struct sim_peer {
	uint64_t id;
	uint32_t store;               /* index into cluster.stores */
	uint8_t role;
	int64_t catchup_until_ms;     /* pending while catching up (monotonic) */
};

struct sim_region {
	uint64_t id;
	uint64_t conf_ver, version;
	int64_t size, keys;
	int8_t n_peers;
	int8_t leader;                /* index into peers, -1 none */
	int32_t op;                   /* index into cluster.ops, -1 none */
	struct sim_peer peers[SIM_MAX_PEERS];
};

enum sim_op_kind {
	OPK_TRANSFER_LEADER, OPK_ADD_PEER, OPK_ADD_LEARNER, OPK_REMOVE_PEER,
	OPK_TRANSFER_PEER, OPK_TRANSFER_REGION
};

enum sim_op_status { OPS_RUNNING, OPS_SUCCESS, OPS_CANCEL, OPS_TIMEOUT, OPS_REPLACE };

struct sim_op {
	uint64_t region_id;
	uint32_t region;              /* index */
	int kind;
	int status;
	uint32_t from, to;            /* store indices */
	int n_to;
	uint32_t to_stores[SIM_MAX_PEERS];
	uint8_t to_roles[SIM_MAX_PEERS]; /* 0 voter/follower, 1 learner, 2 leader */
	uint64_t conf_ver, version;
	uint64_t new_peer_id;         /* allocated at creation, for the step text */
	int64_t create_wall_ms;
	int64_t finish_ms, deadline_ms, end_ms; /* monotonic */
	char desc[32];
	char brief[128];
	char steps[320];
	const char *kinds;
};

struct sim_cluster {
	struct sim_opts *o;
	struct sim_store *stores;
	size_t n_stores;
	struct sim_region *regions;   /* sorted by id */
	size_t n_regions;
	uint64_t next_id;
	struct sim_op *ops;           /* running */
	size_t n_ops, cap_ops;
	struct sim_op *records;       /* finished, a ring */
	size_t n_records, rec_head;
	int64_t start_wall_ms;
	int64_t last_balance_ms, last_evict_ms;
	size_t balance_cursor;        /* balance-leader resumes its scan here */
	int64_t max_store_down_ms;    /* live value of max-store-down-time */
	json_object *schedule_cfg;    /* GET /config/schedule, insertion-ordered */
	int sched_enabled[8];         /* see sim_default_schedulers */
	uint64_t balance_moves, evict_moves, elections, replacements;
};

extern const char *const sim_default_schedulers[];
extern const size_t sim_n_default_schedulers;

/* Store liveness as seen at now (monotonic ms). */
const char *sim_store_state_name(const struct sim_cluster *c, const struct sim_store *s,
    int64_t now);
int sim_store_raft_alive(const struct sim_cluster *c, const struct sim_store *s, int64_t now);
int sim_peer_pending(const struct sim_cluster *c, const struct sim_peer *p, int64_t now);
int sim_peer_down(const struct sim_cluster *c, const struct sim_peer *p, int64_t now);

int sim_cluster_init(struct sim_cluster *c, struct sim_opts *o);
void sim_cluster_free(struct sim_cluster *c);
void sim_cluster_tick(struct sim_cluster *c, int64_t now);
struct sim_region *sim_region_find(struct sim_cluster *c, uint64_t id);
struct sim_store *sim_store_find(struct sim_cluster *c, uint64_t id);
/* A heartbeat from a store process; returns 0, or an HTTP status on refusal. */
int sim_store_heartbeat(struct sim_cluster *c, struct sim_store *s, int64_t now);

/* Operator creation with PD's admin checks. Returns the HTTP status and a
 * message: 200 "The operator is created.", 400/500 PD's error text. */
int sim_op_create(struct sim_cluster *c, json_object *in, int64_t now, char *msg, size_t len);
/* Operator text as PD's OpWithStatus.MarshalJSON renders it. */
void sim_op_string(const struct sim_cluster *c, const struct sim_op *op, int with_status,
    char *out, size_t len);
const struct sim_op *sim_op_lookup(const struct sim_cluster *c, uint64_t region_id, int64_t now);
int sim_op_cancel(struct sim_cluster *c, uint64_t region_id, int64_t now);
void sim_op_cancel_all(struct sim_cluster *c, int64_t now);

/* Schedulers: returns the HTTP status; msg is the JSON string body, or NULL
 * for a body of null. */
int sim_scheduler_add(struct sim_cluster *c, json_object *in, const char **msg, char *buf,
    size_t len);
int sim_scheduler_remove(struct sim_cluster *c, const char *name, const char **msg, char *buf,
    size_t len);
int sim_evicting(const struct sim_cluster *c);

/* Schedule config: applies a POSTed subset; 200 or 400 with msg. */
int sim_config_update(struct sim_cluster *c, json_object *in, char *msg, size_t len);
/* Store removal: DELETE /store/{id}; 200/400/404/410 with msg. */
int sim_store_remove(struct sim_cluster *c, uint64_t id, int force, int64_t now, char *msg,
    size_t len);
int sim_store_set_state(struct sim_cluster *c, uint64_t id, const char *state, int64_t now,
    char *msg, size_t len);

/* --- JSON writing (pdsim_json.c) --- */
struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};
void sb_add(struct sbuf *b, const char *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_putc(struct sbuf *b, char ch);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_u64(struct sbuf *b, uint64_t v);
void sb_i64(struct sbuf *b, int64_t v);
void sb_free(struct sbuf *b);

#define JW_MAX_DEPTH 32
struct jw {
	struct sbuf *b;
	int pretty;
	int depth;
	int after_key;
	int count[JW_MAX_DEPTH];
};
void jw_init(struct jw *w, struct sbuf *b, int pretty);
void jw_obj(struct jw *w);
void jw_obj_end(struct jw *w);
void jw_arr(struct jw *w);
void jw_arr_end(struct jw *w);
void jw_key(struct jw *w, const char *k);
void jw_str(struct jw *w, const char *s);
void jw_u64(struct jw *w, uint64_t v);
void jw_i64(struct jw *w, int64_t v);
void jw_bool(struct jw *w, int v);
void jw_null(struct jw *w);
void jw_double(struct jw *w, double v);
/* Writes any json-c value in the same style (config objects). */
void jw_jsonc(struct jw *w, json_object *o);
/* Go-style JSON string escaping (HTML characters escaped as \u003c etc.). */
void sb_json_str(struct sbuf *b, const char *s);

/* Go formatting helpers. */
void go_bytesize(uint64_t bytes, char *out, size_t len);       /* "311.7GiB" */
void go_duration(int64_t ns, char *out, size_t len);           /* "36m20.48s" */
void go_rfc3339nano(int64_t wall_ns, char *out, size_t len);   /* "2024-...Z" */
void go_time_string(int64_t wall_ns, char *out, size_t len);   /* time.Time.String() */
void go_float(double v, char *out, size_t len);
/* Parses a request body like Go's json.Unmarshal; on failure returns NULL
 * with Go's SyntaxError text in msg and its Offset in *offset. */
const char *go_json_type(json_object *o); /* "number", "string", ... */
json_object *go_json_parse(const char *buf, size_t len, char *msg, size_t msglen, long *offset);

/* --- HTTP (pdsim_http.c) --- */
struct event_base;
struct evhttp;
struct sim_server;
typedef int (*sim_store_action_fn)(void *arg, struct sim_store *s, const char *action,
    char *msg, size_t len);
struct sim_server *sim_http_start(struct event_base *base, struct sim_cluster *c,
    const char *bind, int port, int *bound_port, sim_store_action_fn fn, void *fn_arg);
void sim_http_stop(struct sim_server *srv);
/* GET /pdsim/stores body (also written to --state-file). */
void sim_render_pdsim_stores(struct sim_cluster *c, int64_t now, struct sbuf *b);

/* --- store process (pdsim_store.c) --- */
int sim_store_main(int argc, char **argv);

#endif
