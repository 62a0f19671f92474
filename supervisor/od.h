/* operatord supervisor: shared state and the prototypes of each module. */
#ifndef OD_H
#define OD_H

#include <event2/event.h>
#include <json-c/json.h>
#include <limits.h>
#include <nng/nng.h>
#include <sys/types.h>

#include "common/config.h"
#include "protocol/msg.h"
#include "supervisor/ledger.h"
#include "supervisor/restart.h"

#define OD_READY_TIMEOUT_MS 10000  /* a worker not ready by then is killed */
#define OD_SHUTDOWN_MS 5000        /* per worker, SIGTERM to SIGKILL */
#define OD_VERIFY_DELAY_MS 5000    /* default verify_delay */
#define OD_VERIFY_SETTLE_MS 3000   /* invariant must hold this long */
#define OD_VERIFY_TIMEOUT_MS 60000 /* give up verifying after this */
#define OD_FLAP_WINDOW_MS (10 * 60 * 1000) /* a recurrence within this reopens */
#define OD_FLAP_MAX 3              /* reopenings before no more auto-action */
#define OD_MAX_ATTEMPTS 3          /* remediation attempts per ticket */
#define OD_CTL_ASYNC_TIMEOUT_MS 15000 /* chaos/observe forwarded to a worker */
#define OD_CTL_MAX_CLIENTS 64      /* control and event connections at once */
#define OD_SUB_MAX_BUF (4u << 20)  /* bytes queued to a slow optail before dropping */
#define OD_WORKER_SENDBUF 1024     /* frames queued per worker channel */

enum od_role { OD_OBSERVER, OD_DIAGNOSER, OD_EXECUTOR, OD_VERIFIER, OD_CHAOS, OD_NWORKERS };

enum od_wstate { OD_W_STOPPED, OD_W_STARTING, OD_W_READY, OD_W_BACKOFF, OD_W_STOPPING,
	OD_W_DISABLED };

struct od_worker {
	enum od_role role;
	const char *name;
	int counts;           /* within the restart intensity limit (not chaos) */
	enum od_wstate state;
	pid_t pid;
	int lifeline;         /* our end of the child's fd 3 */
	struct event *lifeline_ev;
	struct event *timer;  /* restart delay, ready timeout or stop timeout */
	nng_socket sock;
	struct event *recv_ev;
	char url[PATH_MAX];
	int64_t started_mono, ready_mono;
	struct od_restart rs;
	int restarts;
	char last_exit[64];
};

struct ctl_client;

/* A control request forwarded to a worker, waiting for its answer. */
struct od_ctl_pending {
	struct ctl_client *client; /* NULL once the client went away */
	uint64_t req_id;
	enum od_role waiting_on;
	uint64_t fwd_id;      /* id of the frame forwarded to the worker */
	struct event *timer;
	struct od_ctl_pending *next;
};

struct od_outbox_item {
	int target;           /* worker role, or -1 for the event PUB socket */
	struct op_msg msg;
};

struct od {
	struct event_base *base;
	struct op_config *cfg;
	char config_path[PATH_MAX];
	char runtime_dir[PATH_MAX];
	char state_dir[PATH_MAX];
	struct ledger *ledger;
	struct od_worker w[OD_NWORKERS];
	struct evconnlistener *ctl_listener, *ev_listener;
	struct ctl_client *clients;
	struct od_ctl_pending *pending;
	gid_t ctl_gid;        /* group allowed to mutate, (gid_t)-1 for none */
	struct event *sig_ev[4];
	int64_t verify_delay_ms, verify_settle_ms, verify_timeout_ms;
	int chaos_enabled;
	char mode[16];
	int kill_switch;
	int shutting_down;
	int stop_index;       /* position in the shutdown order */
	int exit_code;
	int notified_ready;
	int64_t started_mono;
	int lock_fd;
	uint64_t next_id;
	struct od_outbox_item *outbox;
	size_t nout, capout;
};

extern struct od *od;

/* main.c */
void od_begin_shutdown(int exit_code);
const char *od_worker_state_name(enum od_wstate s);

/* proc.c */
void proc_init_workers(void);
int proc_spawn(struct od_worker *w);
void proc_reap(void);
void proc_stop_next(void);
struct od_worker *proc_by_name(const char *name);
int proc_send(struct od_worker *w, struct op_msg *m);
int proc_all_ready(void);
json_object *proc_workers_json(void);
void proc_restart_worker(struct od_worker *w);

/* dispatch.c */
void dispatch_worker_msg(struct od_worker *w, struct op_msg *m);
void dispatch_worker_ready(struct od_worker *w);
void dispatch_worker_died(struct od_worker *w);
void dispatch_recover(void);
void dispatch_settings_changed(void);
json_object *dispatch_settings_body(void);
int dispatch_approve(int64_t action_id, const char *who, char *err, size_t errlen);
int dispatch_reject(int64_t action_id, const char *who, const char *reason, char *err,
    size_t errlen);

/* outbox.c: messages and events go out only after the ledger commit. */
void outbox_send(int target, enum op_msg_type type, uint64_t id, json_object *body);
int64_t outbox_event(const char *type, int64_t ticket, const char *subject,
    const char *entity, const char *invariant, json_object *data);
int outbox_commit(void);
void outbox_abort(void);
uint64_t od_new_id(void);

/* control.c */
int control_open(char *err, size_t errlen);
void control_close(void);
void control_worker_reply(struct od_worker *w, struct op_msg *m);
void control_publish(const struct op_msg *ev);
void control_stop_accepting(void);

/* notify.c */
void notify_systemd(const char *state);

#endif
