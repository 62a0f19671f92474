/* ha: high availability on etcd. Several operatord instances watch the same
 * subjects; for each subject exactly one, the leader, acts.
 *
 * Election (per subject): the instance holds one etcd lease; the leader key
 * /operatord/CLUSTER/leader/SUBJECT is taken by a transaction that puts it
 * under our lease only if its create_revision is 0 (it does not exist). The
 * key's create_revision is the term: it grows with every new holder, so an
 * action checked against it (the fence, in the executor) can never run
 * under a term that ended. The lease is renewed every TTL/3; an instance
 * that has not renewed for HA_DEADLINE_NUM/DEN of the TTL steps down on its
 * own, before etcd can expire the lease and let another instance lead.
 *
 * Files:
 *   ha_elect.c  the election as a pure state machine: inputs are the clock
 *               and etcd's answers, outputs are etcd requests to send and
 *               role events. No I/O; unit-tested with a fake clock.
 *   ha_conf.c   the [ha] section, validated (--check-config uses it).
 *   ha.c        the driver on the supervisor's event loop (async etcd). */
#ifndef OD_HA_H
#define OD_HA_H

#include <stddef.h>
#include <json-c/json.h>
#include <stdint.h>

#include "common/etcd.h"

struct op_config;

#define HA_MAX_SUBJECTS 32            /* subjects one instance can campaign for */
#define HA_NAME_MAX 64                /* instance name, NUL included */
#define HA_LEASE_TTL_MS 10000         /* default [ha] lease_ttl */
#define HA_LEASE_TTL_MIN_MS 2000      /* etcd's own floor is ~1.5 s with default ticks */
#define HA_LEASE_TTL_MAX_MS 300000
#define HA_KEEPALIVE_DIV 3            /* renew every TTL/3 */
#define HA_DEADLINE_NUM 2             /* step down when not renewed for 2/3 of the TTL: */
#define HA_DEADLINE_DEN 3             /* the lease still has 1/3 of it left at etcd */
#define HA_POLL_MS 1000               /* re-check each leader key at most this often... */
#define HA_POLL_DIV 4                 /* ...and at least every TTL/4 */
#define HA_RETRY_MS 500               /* after a failed request */
#define HA_DEFAULT_CLUSTER "default"

/* ------------------------------------------------------------ ha_conf.c */

struct ha_config {
	int enabled;                  /* the file has an [ha] section */
	char etcd[ETCD_MAX_ENDPOINTS * ETCD_URL_MAX];
	char name[HA_NAME_MAX];       /* default: the host name */
	char cluster[HA_NAME_MAX];
	int64_t lease_ttl_ms;         /* whole seconds: etcd leases are in seconds */
	char subjects[1024];          /* the subjects it may lead, comma-separated; "" all */
};
/* Whether cfg lets this instance lead subject ([ha] subjects). */
int ha_config_may_lead(const struct ha_config *cfg, const char *subject);
/* Reads [ha]; without the section returns 0 with enabled = 0. A bad value:
 * -1 and err = "[ha] key: why". */
int ha_config_load(const struct op_config *cfg, struct ha_config *out, char *err,
    size_t errlen);

/* Keys under /operatord/CLUSTER/ (each helper: -1 when it does not fit). */
#define HA_KEY_KILL_SWITCH "kill_switch" /* exists = on (the fence compares its version to 0) */
#define HA_KEY_MODE "mode"               /* observe | approve | execute */
/* /operatord/CLUSTER/NAME */
int ha_key(char *out, size_t outlen, const char *cluster, const char *name);
/* /operatord/CLUSTER/KIND/SUBJECT/HASH: one ticket's record ("work", written
 * by the leader) or its execution marker ("exec", written by the executor's
 * fence); HASH is a hex FNV-1a of the fingerprint, the record carries it. */
int ha_ticket_key(char *out, size_t outlen, const char *cluster, const char *kind,
    const char *subject, const char *fingerprint);
/* /operatord/CLUSTER/decide/LEADER/ACTION_ID: an approval or rejection given
 * on another instance, for the leader to apply. */
int ha_decide_key(char *out, size_t outlen, const char *cluster, const char *leader,
    int64_t action_id);

/* ----------------------------------------------------------- ha_fence.c
 * In the executor, right before the side effect (it may block: a worker).
 * The job carries "ha_term" when the supervisor runs with [ha]. One etcd
 * transaction checks that the subject's leader key still has that term and
 * that the kill switch is off, and in the same step writes the execution
 * marker a new leader reads (so it verifies rather than re-runs). Returns 0
 * to go on (also without [ha]), -1 to refuse: kind is "not_leader" or
 * "kill switch", why says what etcd said. */
int ha_fence_exec(const struct op_config *cfg, json_object *job, char *kind,
    size_t kindlen, char *why, size_t whylen);

/* ----------------------------------------------------------- ha_elect.c */

#define HA_LEASE_STATES(X) \
	X(HA_LEASE_NONE, "none")         /* no lease: grant one */ \
	X(HA_LEASE_GRANTING, "granting") /* grant in flight */ \
	X(HA_LEASE_HELD, "held")         /* renewed within the deadline */ \
	X(HA_LEASE_STOPPED, "stopped")   /* resigned: ask for nothing more */

enum ha_lease_state {
#define X(id, name) id,
	HA_LEASE_STATES(X)
#undef X
	HA_NLEASE_STATES
};

#define HA_ROLES(X) \
	X(HA_STANDBY, "standby") \
	X(HA_LEADER, "leader")

enum ha_role {
#define X(id, name) id,
	HA_ROLES(X)
#undef X
	HA_NROLES
};

/* What the machine asks its driver to do, or tells it happened. */
#define HA_OUTS(X) \
	X(HA_DO_GRANT, "grant")           /* send a lease grant for ttl_s */ \
	X(HA_DO_KEEPALIVE, "keepalive")   /* renew lease */ \
	X(HA_DO_REVOKE, "revoke")         /* best effort: free a lease we gave up */ \
	X(HA_DO_CAMPAIGN, "campaign")     /* the campaign txn for subject under lease */ \
	X(HA_EV_ELECTED, "leader_elected")     /* we lead subject under term */ \
	X(HA_EV_LOST, "leadership_lost")       /* we no longer lead subject (term ended); reason */ \
	X(HA_EV_LEADER_SEEN, "leader_seen")    /* as standby: subject's leader is now leader/term */

enum ha_out_kind {
#define X(id, name) id,
	HA_OUTS(X)
#undef X
	HA_NOUTS
};

struct ha_out {
	enum ha_out_kind kind;
	size_t subject;               /* index, for campaign and the events */
	int64_t lease;                /* keepalive/revoke/campaign: the lease concerned */
	int64_t ttl_s;                /* grant */
	int64_t term;                 /* events: the term elected, lost or seen */
	char leader[HA_NAME_MAX];     /* HA_EV_LEADER_SEEN */
	char reason[160];             /* HA_EV_LOST */
};

struct ha_subject {
	char name[HA_NAME_MAX];
	char key[ETCD_KEY_MAX];
	enum ha_role role;
	int64_t term;                 /* ours when leader, the holder's when standby; 0 unknown */
	char leader[HA_NAME_MAX];     /* the holder's name; "" when unknown */
	int inflight;                 /* a campaign txn is out */
	int64_t next_mono;            /* next campaign (which also polls) */
	int64_t seen_mono;            /* last answer about this key; 0 never */
};

#define HA_OUT_MAX (4 * HA_MAX_SUBJECTS + 8)

struct ha_elect {
	char name[HA_NAME_MAX];
	int64_t ttl_ms;               /* asked for; the granted TTL replaces it */
	enum ha_lease_state lease;
	int64_t lease_id;
	int64_t renewed_mono;         /* when the last successful grant/keepalive was SENT */
	int keepalive_inflight;
	int64_t next_lease_mono;      /* next grant or keepalive */
	int64_t etcd_ok_mono;         /* last answer from etcd; 0 never */
	char last_error[160];         /* the last etcd failure, "" after a success */
	struct ha_subject s[HA_MAX_SUBJECTS];
	size_t ns;
	struct ha_out out[HA_OUT_MAX];
	size_t nout;
};

const char *ha_lease_state_name(enum ha_lease_state s);
const char *ha_role_name(enum ha_role r);
const char *ha_out_name(enum ha_out_kind k);

void ha_elect_init(struct ha_elect *e, const char *name, int64_t ttl_ms);
/* Returns the subject's index, or -1 (too many, or a name unfit for a key). */
int ha_elect_add(struct ha_elect *e, const char *cluster, const char *subject);
int ha_elect_find(const struct ha_elect *e, const char *subject);
/* Derived timings from the TTL in force. */
int64_t ha_elect_keepalive_ms(const struct ha_elect *e);
int64_t ha_elect_deadline_ms(const struct ha_elect *e);
int64_t ha_elect_poll_ms(const struct ha_elect *e);

/* Advances the clock: steps down past the renew deadline, queues the
 * requests that are due. */
void ha_elect_step(struct ha_elect *e, int64_t now);
/* Answers. sent is the clock when the request left; ok is 0 for a good
 * answer and -1 otherwise (why: the error). */
void ha_elect_on_grant(struct ha_elect *e, int64_t now, int64_t sent, int ok, int64_t lease_id,
    int64_t ttl_s, const char *why);
void ha_elect_on_keepalive(struct ha_elect *e, int64_t now, int64_t sent, int ok, int64_t lease,
    int64_t ttl_s, const char *why);
/* The campaign txn's answer for subject i, sent under lease. succeeded: the
 * key was ours to create at revision. Else holder_* describe the key as it
 * is (holder_term 0: no key, which a failed campaign cannot normally see). */
void ha_elect_on_campaign(struct ha_elect *e, size_t i, int64_t now, int64_t lease, int ok,
    int succeeded, int64_t revision, const char *holder_name, int64_t holder_term,
    int64_t holder_lease, const char *why);
/* Gives everything up (shutdown): each led subject is lost, the lease is
 * revoked, and the machine asks for nothing more. */
void ha_elect_resign(struct ha_elect *e, const char *reason);
/* Pops the next output; 0 when there is none. */
int ha_elect_pop(struct ha_elect *e, struct ha_out *o);
/* Whether we lead subject i now, and under which term. A leader whose lease
 * is past the renew deadline is not one, even before the next step. */
int ha_elect_is_leader(const struct ha_elect *e, size_t i, int64_t now, int64_t *term);
/* The monotonic time of the next thing due (for the driver's timer). */
int64_t ha_elect_next_due(const struct ha_elect *e, int64_t now);

/* ----------------------------------------------------------------- ha.c
 * The supervisor's side (needs od): see the comment at the top of ha.c.
 * Without [ha] every gate says yes and nothing else happens. */
struct evbuffer;
struct ticket;
/* Reads and validates [ha] (start-up, --check-config, reload). */
int ha_configure(const struct op_config *cfg, char *err, size_t errlen);
int ha_enabled(void);
const char *ha_name(void);      /* NULL without [ha] */
/* After the event base and the ledger exist: starts campaigning. */
int ha_start(char *err, size_t errlen);
/* Shutdown begins: step down everywhere and revoke the lease. */
void ha_shutdown(void);
void ha_free(void);
/* Whether this instance may act on subject now (1 without [ha]); term 0
 * without [ha]. */
int ha_leads(const char *subject, int64_t *term);
int ha_leads_any(void);
/* Whether a violation may open a ticket here; a standby remembers it. */
int ha_may_open(const char *subject, const char *invariant, const char *entity);
/* Adds "ha_term" to an executor job and records the term on the action
 * row; -1 when we do not lead subject. 0 and nothing added without [ha]. */
int ha_job(json_object *job, const char *subject, int64_t action_id);
/* The executor refused an action for kind ("not_leader", "kill switch",
 * "mode"): whether the caller should decide again right away. A fenced
 * not_leader waits for a term of ours; an etcd kill switch is applied here
 * at once (inside the caller's input) rather than at the next poll. */
int ha_fenced(const char *kind);
/* Adds "term" and "leader" to an event's data when we lead subject. */
void ha_annotate(json_object *data, const char *subject);
/* After a local mode or kill switch change: write it to etcd. */
void ha_settings_changed(void);
/* An approve/reject typed here for an action another instance leads: 1 when
 * forwarded to that leader through etcd, 0 when it is ours to handle, -1
 * with err on failure. */
int ha_forward_decision(const char *verb, int64_t action_id, const char *who,
    const char *reason, char *err, size_t errlen);
/* A ticket or one of its actions changed: its record is rewritten after
 * the commit (deleted once the ticket is closed). */
void ha_ticket_changed(int64_t ticket_id);
json_object *ha_status(void);   /* NULL without [ha] */
void ha_metrics(struct evbuffer *b);

/* ---------------------------------------------------------- ha_resume.c */
/* The record of a live ticket for etcd (malloc'd JSON). */
char *ha_record_build(const struct ticket *t);
/* Newly elected for subject: resume the work in flight from the records
 * and markers (as last polled: {key: object}); inside an outbox input. */
void ha_resume(const char *subject, json_object *work, json_object *exec);

/* ------------------------------------------------------------ ha_node.c
 * The election driven on a libevent loop: async etcd requests (ahttp),
 * a timer at the machine's next due time, role events to a callback. No
 * dependency on the supervisor, so tests run several nodes in one process. */
struct event_base;
struct ha_node;
/* ev is HA_EV_ELECTED, HA_EV_LOST or HA_EV_LEADER_SEEN; s its subject. */
typedef void (*ha_event_fn)(const struct ha_out *ev, const struct ha_subject *s, void *arg);

struct ha_node *ha_node_new(struct event_base *base, const struct ha_config *cfg,
    const char *const *subjects, size_t nsubjects, ha_event_fn fn, void *arg, char *err,
    size_t errlen);
/* Revokes a lease still held (synchronously, bounded: we are exiting). */
void ha_node_free(struct ha_node *n);
/* Steps down everywhere and revokes the lease (async); asks for nothing more. */
void ha_node_resign(struct ha_node *n, const char *reason);
int ha_node_is_leader(struct ha_node *n, const char *subject, int64_t *term);
const struct ha_elect *ha_node_elect(const struct ha_node *n);
struct etcd_client *ha_node_client(struct ha_node *n);
struct ahttp *ha_node_http(struct ha_node *n);
/* Requests in flight (tests, shutdown). */
size_t ha_node_pending(const struct ha_node *n);
/* Tests only: stop (1) or resume (0) the clock as a stalled process would. */
void ha_node_pause(struct ha_node *n, int paused);

#endif
