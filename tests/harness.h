/*
 * harness: real-process environment for the operatord integration tests.
 *
 * One environment = a redis-server, three rlnodes and one operatord, all in a
 * fresh temporary directory. Its state lives in shared memory so that the
 * check parent (which owns the unchecked fixture) can tear down processes a
 * forked test restarted, and so that teardown runs even when a test is killed
 * by its timeout. The test process never links nng: opsend/optail run as
 * child processes and their JSON output is parsed.
 */
#ifndef TESTS_HARNESS_H
#define TESTS_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#define H_NNODES 3
#define H_POLL_MS 200              /* condition polling step */
#define H_WAIT_MS 60000            /* default bound of a condition wait */
#define H_VERIFY_DELAY_MS 2000     /* verify_delay in the generated config */
#define H_VERIFY_SETTLE_MS 2000    /* verify_settle in the generated config */
#define H_DRIFT_TOL 3              /* drift_tolerance in the generated config */
#define H_NODE_WINDOW_MS 10000     /* rlnode --window */
#define H_MAX_LOADS 8

struct h_env {
	char dir[128];
	char run[160], state[160], conf[160];
	int redis_port;
	pid_t redis_pid;
	int node_port[H_NNODES];
	pid_t node_pid[H_NNODES];
	pid_t od_pid;
	pid_t load_pid[H_MAX_LOADS];
	int setup_failed;
	char cur_test[64];     /* set while a test runs; teardown dumps if still set */
};

extern struct h_env *H;

struct h_resp {
	int code;              /* 0 on I/O error */
	json_object *json;     /* NULL unless the body is JSON */
	char *body;
};

/* Called once from main: shared memory, subreaper, binaries. */
void h_init(void);
const char *h_bin(const char *name); /* "operatord", "opsend", "optail", "rlnode", "rlload" */
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int h_free_port(void);

/* Unchecked fixture pair (runs in the check parent). */
void h_env_start(void);
void h_env_stop(void);
void h_test_begin(const char *name);
void h_test_end(void);

/* operatord alone: stop it (SIGTERM, then SIGKILL), start it on the current
 * configuration and wait until every worker is ready (0) or not (-1); or
 * start afresh on an empty ledger with this mode, extra [operatord] lines and
 * extra sections. */
void h_od_stop(void);
int h_all_ready(void); /* every worker reports ready */
int h_od_spawn(void);
int h_od_fresh(const char *mode, const char *operatord_extra, const char *sections);

/* Processes. */
pid_t h_spawn(char *const argv[], const char *logname);
/* Runs argv to completion (bounded by timeout_ms); returns the exit code, or
 * -1 when it was killed or timed out. *out and *err (if given) get its output. */
int h_run(char *const argv[], int timeout_ms, char **out, char **err);
void h_start_redis(void);
void h_start_node(int i);
int h_redis_ok(void);
int h_node_healthy(int i);
void h_kill_wait(pid_t *pid, int sig);

/* opsend --runtime-dir RUN --json ARGS... (NULL-terminated). Returns the exit
 * code; *res gets the parsed JSON output when there is one. */
int h_opsend(json_object **res, char **err, ...);
json_object *h_status(void);
json_object *h_worker(json_object *status, const char *name);
json_object *h_ticket(int64_t id);

/* Events through optail --json: the cache h_evs is refreshed by h_ev_refresh. */
extern json_object *h_evs;
int h_ev_refresh(void);
int64_t h_last_seq(void);
/* First event after `after` with this type (and ticket when > 0). */
json_object *h_ev_find(const char *type, int64_t ticket, int64_t after);
/* Ticket id of the first ticket_opened/ticket_reopened for (invariant, entity) after `after`. */
int64_t h_ev_ticket(const char *invariant, const char *entity, int64_t after);
/* Terminal event (ticket_resolved/_escalated/_cleared/_rejected) of a ticket, after `after`. */
json_object *h_ev_terminal(int64_t ticket, int64_t after);
int64_t h_ev_seq(json_object *ev);
int64_t h_ev_ts_ms(json_object *ev);
json_object *h_ev_data(json_object *ev);
int64_t h_parse_rfc3339(const char *s);

/* HTTP to a node. */
struct h_resp h_http(int port, const char *method, const char *path, const char *body);
void h_resp_free(struct h_resp *r);
int h_set_limit(int node, const char *key, long long limit);
/* The sum over the nodes of a GET /health counter, e.g. "resets_total". */
int64_t h_nodes_sum(const char *field);
/* Every node's uptime covers its window: drift becomes measurable. */
int h_nodes_cover_window(void);
/* Redis command on a fresh connection; returns the reply as text (malloc) or NULL. */
char *h_redis(const char *fmt, ...);

/* Load. */
pid_t h_load_start(const char *keys, int rps, int node_mask);
void h_load_stop(pid_t pid);

/* Diagnostics to stderr: daemon log tail and the events. */
void h_dump(const char *why);

#define H_WAIT(ok, ms, cond)                                                   \
	do {                                                                   \
		int64_t end_ = op_mono_ms() + (ms);                            \
		for (;;) {                                                     \
			if (((ok) = !!(cond)))                                 \
				break;                                         \
			if (op_mono_ms() >= end_)                              \
				break;                                         \
			op_sleep_ms(H_POLL_MS);                                \
		}                                                              \
	} while (0)

/* An assertion that dumps the daemon's log and events before failing. */
#define H_CHECK(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			h_dump(#cond);                                         \
			ck_abort_msg(__VA_ARGS__);                             \
		}                                                              \
	} while (0)

#endif
