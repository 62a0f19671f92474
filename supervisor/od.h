/* operatord supervisor: shared state and the prototypes of each module. */
#ifndef OD_H
#define OD_H

#include <event2/event.h>
#include <event2/event_struct.h> /* the timer is embedded: nothing to free at exit */
#include <event2/listener.h>
#include <json-c/json.h>
#include <limits.h>
#include <nng/nng.h>
#include <sys/types.h>

#include "common/config.h"
#include "protocol/msg.h"
#include "supervisor/ledger.h"
#include "supervisor/restart.h"
#include "supervisor/ticket.h"

#define OD_READY_TIMEOUT_MS 10000  /* a worker not ready by then is killed */
#define OD_SHUTDOWN_MS 5000        /* per worker, SIGTERM to SIGKILL */
#define OD_VERIFY_DELAY_MS 5000    /* default verify_delay */
#define OD_VERIFY_SETTLE_MS 3000   /* invariant must hold this long */
#define OD_VERIFY_TIMEOUT_MS 60000 /* give up verifying after this */
#define OD_FLAP_WINDOW_MS (10 * 60 * 1000) /* default [safety] flap_window */
#define OD_FLAP_MAX 3              /* default [safety] flap_max: reopenings before no more auto-action */
#define OD_TICK_MS 250             /* retry, schedule and approval-deadline timer period */
#define OD_APPROVAL_TTL_MS (15 * 60 * 1000) /* default [safety] approval_ttl */
#define OD_RETRY_ATTEMPTS 3        /* default [safety] retry_attempts (executions per action) */
#define OD_RETRY_MIN_MS 1000       /* default [safety] retry_min: first backoff */
#define OD_RETRY_MAX_MS 60000      /* default [safety] retry_max: backoff ceiling */
#define OD_RETRY_JITTER 0.5        /* up to this share of the backoff is added at random */
#define OD_BLAST_WINDOW_MS (10 * 60 * 1000) /* default [safety] blast_window */
#define OD_DAY_MS (24 * 3600 * 1000LL) /* the destructive cap's period (UTC day) */
#define OD_FAULT_LOOKBACK_MS (10 * 60 * 1000) /* postmortem: faults this long before a ticket */
#define OD_MAX_ATTEMPTS 3          /* remediation attempts per ticket */
#define OD_CTL_ASYNC_TIMEOUT_MS 15000 /* chaos/observe forwarded to a worker */
#define OD_CTL_MAX_CLIENTS 64      /* control and event connections at once */
#define OD_EV_PAGE_ROWS 1000       /* events per backfill page by default ... */
#define OD_EV_PAGE_ROWS_MAX 10000  /* ... and at most; bytes are bounded too (events.c) */
#define OD_SUB_MAX_BUF (4u << 20)  /* bytes queued to a slow optail before dropping */
#define OD_WORKER_SENDBUF 1024     /* frames queued per worker channel */
#define OD_WORKER_RECVBUF 1024     /* frames a worker may have sent ahead of us */
#define OD_WORKER_BACKLOG_MAX 65536 /* frames held beyond that before a worker counts as hung */
#define OD_BURST_MAX 256           /* worker frames per group commit: bounds how long the first waits */
#define OD_PLAN_MAX_STEPS 16       /* steps kept from one diagnosis or one workflow */
#define OD_DIAGNOSE_DEADLINE_MS (5 * 60 * 1000) /* default diagnose_deadline: diagnosing at most */
#define OD_ACT_DEADLINE_MS (10 * 60 * 1000) /* default act_deadline: an action in the executor */
#define OD_VERIFY_DEADLINE_SLACK_MS 30000 /* beyond the verifier's own timeout */

enum od_role { OD_OBSERVER, OD_DIAGNOSER, OD_EXECUTOR, OD_VERIFIER, OD_CHAOS, OD_NWORKERS };

enum od_wstate { OD_W_STOPPED, OD_W_STARTING, OD_W_READY, OD_W_BACKOFF, OD_W_STOPPING };

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
	int64_t last_frame_mono; /* anything received: a step deadline tells hung from busy */
	struct od_backlog *backlog, **backlog_tail; /* frames nng could not take yet */
	size_t nbacklog;
	struct event *send_ev; /* the channel can take more: flush the backlog */
	struct od_restart rs;
	int restarts;
	int reloading;        /* stopped on purpose: restart at once, not a crash */
	char last_exit[64];
};

struct ctl_client;

/* A frame for a busy worker, held in order until its channel drains. */
struct od_backlog {
	struct op_msg msg;
	struct od_backlog *next;
};

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

/* A token bucket: capacity tokens, refilled evenly over period_ms. capacity 0 = unlimited. */
struct od_bucket_cfg {
	int64_t capacity;
	int64_t period_ms;
};

/* The [safety] section (DESIGN §7), validated at start-up. */
struct od_safety {
	int64_t approval_ttl_ms;
	char approval_expiry[16];     /* escalate | reject | execute */
	char approval_risk[8];        /* lowest risk that needs a human: low|medium|high|none */
	int64_t retry_attempts, retry_min_ms, retry_max_ms;
	struct od_bucket_cfg b_action, b_subject;
	int64_t destructive_per_day;  /* risk-high actions per UTC day; 0 = unlimited */
	double blast_share;           /* share of a subject's nodes touched in blast_window */
	int64_t blast_max_nodes;      /* absolute cap (0 = none) */
	int64_t blast_window_ms;
	int64_t flap_window_ms, flap_max;
	int64_t promote_after;        /* 0: no promotion ladder */
	json_object *levels;          /* {"ACTION": "shadow|approve|execute"} from level.ACTION */
};

struct od {
	struct event_base *base;
	struct op_config *cfg;
	char config_path[PATH_MAX];
	char active_config[PATH_MAX + 16]; /* the validated copy the workers read */
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
	int64_t diagnose_deadline_ms, act_deadline_ms; /* in-flight states (ticket.deadline_at) */
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
	struct od_safety safety;
	struct event tick;    /* retries, schedules, approval deadlines */
	int tick_armed;
};

extern struct od *od;

/* main.c */
void od_begin_shutdown(int exit_code);
/* Re-reads the configuration file; a bad one is refused whole (err says why)
 * and the running one stays. Applies mode and [safety], restarts the workers. */
int od_reload(const char *who, char *err, size_t errlen);

/* proc.c */
void proc_init_workers(void);
int proc_spawn(struct od_worker *w);
void proc_reap(void);
void proc_stop_next(void);
struct od_worker *proc_by_name(const char *name);
int proc_send(struct od_worker *w, struct op_msg *m);
size_t proc_backlog(const struct od_worker *w);
int proc_all_ready(void);
json_object *proc_workers_json(void);
void proc_restart_worker(struct od_worker *w);
void proc_fail_worker(struct od_worker *w);
const char *od_worker_state_name(enum od_wstate s);

/* dispatch.c: frames from the workers, and their lifecycle */
int dispatch_may_send(enum od_role role, enum op_msg_type type);
void dispatch_worker_msg(struct od_worker *w, struct op_msg *m);
void dispatch_worker_ready(struct od_worker *w);
void dispatch_worker_died(struct od_worker *w);
void dispatch_recover(void);
void dispatch_undeliverable(enum od_role role, const struct op_msg *m);

/* acting.c: the acting-safely engine (struct ticket/action: ticket.h) */
struct op_action_def;
void acting_send_diagnose(const struct ticket *t);
void acting_start_diagnosis(struct ticket *t);
void acting_escalate(struct ticket *t, const char *reason);
void acting_close(struct ticket *t, enum tk_status status, const char *type, json_object *data);
const struct op_action_def *acting_step_validate(const char *subject, const char *name,
    json_object *p, char *err, size_t errlen);
int acting_plan(struct ticket *t, json_object *recs, const char *requested_by,
    int64_t not_before, json_object *planned_ids);
const char *acting_blocked(const struct ticket *t);
int acting_go(struct ticket *t, struct action *a, const char *level);
void acting_advance(struct ticket *t);
void acting_send_verify(struct ticket *t, const struct action *a, int64_t from_ms, int resumed);
void acting_verify(struct ticket *t, const struct action *a);
void acting_step_failed(struct ticket *t, struct action *a, const char *why);
int acting_retry(struct ticket *t, struct action *a, const char *why);
void acting_resume_pending(void);
json_object *acting_settings_body(void);
void acting_settings_changed(void);
/* acting.c: verification credit and undoing a fix that made things worse */
int acting_unproven(const struct ticket *t, const struct action *a, char *why, size_t len);
int acting_undo_if_worse(struct ticket *t, struct action *a, json_object *figures);
void acting_undo_result(struct ticket *t, struct action *a, json_object *body);

/* timer.c: retries, schedules, approval expiries and step deadlines, on a tick */
void timer_start(void);
/* escalate, reject or execute: what an approval of this action does on expiry */
const char *timer_expiry_outcome(const struct action *a);

/* operator.c: the operator verbs */
int operator_approve(int64_t action_id, const char *who, char *err, size_t errlen);
int operator_reject(int64_t action_id, const char *who, const char *reason, char *err,
    size_t errlen);
int operator_hold(int64_t ticket_id, int hold, const char *who, char *err, size_t errlen);
int operator_ack(int64_t ticket_id, const char *who, char *err, size_t errlen);
int operator_resolve(int64_t ticket_id, const char *who, const char *reason, char *err,
    size_t errlen);
/* Operator-submitted chain of actions (a workflow; one step is a plain action),
 * optionally not before not_before (0: now). steps = [{action, params}]. */
int operator_submit(int64_t ticket_id, json_object *steps, int64_t not_before, const char *who,
    char *err, size_t errlen);

/* limits.c: budgets, the destructive cap and the blast radius */
int64_t policy_destructive_today(int64_t now);
json_object *policy_blast_status(void);
/* Budget and blast radius for one action about to run; NULL when allowed,
 * else the reason kind ("budget" / "blast radius") and a detail. */
const char *policy_check(json_object *t, json_object *a, char *detail, size_t len);
/* Takes the tokens; returns a JSON snapshot of what is left (owned by caller). */
json_object *policy_charge(json_object *t, json_object *a);
int64_t policy_backoff_ms(int64_t attempt);
const char *policy_target(json_object *params);
/* The node count the observer saw (op_obs_nodes): the blast radius's denominator. */
void policy_note_nodes(const char *subject, int64_t n);
/* {nodes_total, cap, new_max, touched[]} for the executor's op_exec_ctx. */
json_object *policy_blast_allowance(json_object *t, json_object *a);
/* Every budget bucket: scope, capacity, remaining, period_s, refill_in_ms, full_in_ms. */
json_object *policy_budgets(void);

/* policy.c: the [safety] section, risk tiers and the levels with their ladder. */
int operator_set_level(const char *subject, const char *action, const char *level,
    const char *who, char *err, size_t errlen);
int policy_load(const struct op_config *cfg, struct od_safety *s, char *err, size_t errlen);
void policy_free(struct od_safety *s);
const char *policy_level(const char *subject, const char *action);
int policy_level_valid(const char *level);
int policy_risk_needs_approval(const char *risk);
/* What remains of every budget, the levels and their records. */
json_object *policy_status(void);
/* Result of a verification of an action run at `level`: promotion/demotion. */
void policy_record_outcome(json_object *t, json_object *a, int success);
/* The level in force and where it came from: "operator", "operator (all
 * subjects)", "promotion", "demotion", "config" or "default" (static). */
const char *policy_level_source(const char *subject, const char *action, const char **source);
/* [{subject, action, level, source}] for each configured subject (or the one named). */
json_object *policy_level_query(const char *subject, const char *action);
/* 1 with why when a chaos fault on this entity ended (its own undo ran)
 * between from_ms and to_ms: a heal in that window is "unproven". */
int policy_fault_undone_in(const char *subject, const char *entity, int64_t from_ms,
    int64_t to_ms, char *why, size_t len);
/* Adds "undo" to action rows: {what, data} when reversible, "irreversible". */
void policy_annotate_undo(json_object *rows);

/* postmortem.c */
json_object *postmortem_build(int64_t ticket_id);

/* outbox.c: messages and events go out only after the ledger commit. */
void outbox_begin(void);
void outbox_send(int target, enum op_msg_type type, uint64_t id, json_object *body);
int64_t outbox_event(const char *type, int64_t ticket, const char *subject,
    const char *entity, const char *invariant, json_object *data);
int outbox_commit(void);
void outbox_abort(void);
/* A burst of inputs (one drain of a worker's socket) as one transaction,
 * a savepoint per input; what they produced goes out after its commit. */
void outbox_batch_begin(void);
void outbox_batch_end(void);
uint64_t od_new_id(void);

/* control.c */
int control_open(char *err, size_t errlen);
void control_close(void);
void control_worker_reply(struct od_worker *w, struct op_msg *m);
void control_stop_accepting(void);
/* Resolves who may change things (control_group) once: at start and reload. */
void control_load_acl(void);
/* Binds RUNTIME/name with the control socket's permissions and listens. */
struct evconnlistener *control_listen_unix(const char *name, evconnlistener_cb cb, char *err,
    size_t errlen);

/* events.c: the event stream (events.sock) and the ledger's event pages */
int events_open(char *err, size_t errlen);
void events_stop_accepting(void);
void events_close(void);
void events_publish(const struct op_msg *ev);
/* Events after seq since: at most limit rows and max_bytes encoded (0: as
 * much as one reply frame holds; the first row always). NULL with err set. */
json_object *events_page(int64_t since, int64_t limit, int64_t max_bytes, char *err,
    size_t errlen);

/* notify.c */
void notify_systemd(const char *state);

#endif
