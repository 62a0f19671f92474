/* control: the control socket (ctl.sock) under the runtime directory, framed
 * as protocol/frame.h describes and dispatched on protocol/ctl.h's command
 * table. Any number of clients within the limits below; a command a worker
 * must answer (observe, chaos) is forwarded and answered when the worker
 * replies or a timeout passes. The event stream is events.c.
 *
 * Nothing here may block the supervisor's loop or be held hostage by a
 * client: who may change things is resolved once (start and reload), every
 * connection has an idle and a partial-frame deadline, one uid gets only a
 * share of the slots, root always gets in, and requests that would queue
 * frames to a worker that is already behind are refused with "busy". */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include "protocol/frame.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"

#define CTL_UID_SHARE 16          /* connections one non-root uid may hold at once */
#define CTL_HARD_MAX 128          /* all connections, root's included (fds are finite) */
/* A connection with nothing to do is closed after this; long, because a
 * dashboard or an evaluation may poll slowly (clients reconnect on EOF). */
#define CTL_IDLE_MS (10 * 60 * 1000)
#define CTL_FRAME_MS 5000         /* a request frame, once begun, must be complete by then */
#define CTL_CLOSE_MS 2000         /* time a client gets to read its last error */
/* A worker holding more frames than this beyond its channel's own queue is
 * not sent more on a client's behalf: the request is refused "busy, retry". */
#define CTL_BACKLOG_HIGH 256
#define CTL_ACL_MAX 4096          /* uids resolved into the control group at most */

struct ctl_client {
	struct bufferevent *bev;
	int uid;
	int privileged;       /* root or the daemon's own user */
	int closing;          /* an error was sent: close once it is flushed */
	int64_t active_mono;  /* last accept or complete request */
	int64_t frame_mono;   /* when the unfinished frame in the input began, 0 if none */
	struct event *deadline;
	struct ctl_client *next;
};

/* One request being handled: what a handler reads and fills. */
struct ctl_req {
	struct ctl_client *c;
	uint64_t id;
	json_object *args;
	char who[64];         /* "uid:N", recorded by operator verbs */
	char err[512];
	json_object *res;
};

static int nclients;
static uid_t *acl;        /* uids in the control group (primary or member) */
static size_t nacl;

static void client_arm(struct ctl_client *c);

/* ---- who may change things: resolved once, never per request ---- */

static void
acl_add(uid_t **v, size_t *n, uid_t uid)
{
	for (size_t i = 0; i < *n; i++)
		if ((*v)[i] == uid)
			return;
	if (*n >= CTL_ACL_MAX)
		return;
	uid_t *nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (nv == NULL)
		return;
	nv[(*n)++] = uid;
	*v = nv;
}

/* getpwent/getgrgid go through NSS (LDAP, SSSD) and can take seconds; they
 * run here, at start and on reload, and never while a client waits. */
void
control_load_acl(void)
{
	uid_t *v = NULL;
	size_t n = 0;

	if (od->ctl_gid != (gid_t)-1) {
		struct group *g = getgrgid(od->ctl_gid);
		for (char **m = g ? g->gr_mem : NULL; m && *m; m++) {
			struct passwd *pw = getpwnam(*m);
			if (pw != NULL)
				acl_add(&v, &n, pw->pw_uid);
		}
		setpwent();
		for (struct passwd *pw; (pw = getpwent()) != NULL;)
			if (pw->pw_gid == od->ctl_gid)
				acl_add(&v, &n, pw->pw_uid);
		endpwent();
	}
	free(acl);
	acl = v;
	nacl = n;
	log_info("control: %zu user(s) besides root and the daemon's may change things", nacl);
}

static int
control_may_mutate(int uid)
{
	if (uid < 0)
		return 0;
	if (uid == 0 || (uid_t)uid == geteuid())
		return 1;
	for (size_t i = 0; i < nacl; i++)
		if (acl[i] == (uid_t)uid)
			return 1;
	return 0;
}

/* ---- back-pressure at the source ---- */

/* The worker furthest behind, when one holds more than CTL_BACKLOG_HIGH
 * frames its channel could not take yet; NULL when all keep up. Settings go
 * to every worker, so any one that is behind counts. */
static struct od_worker *
control_behind(void)
{
	struct od_worker *worst = NULL;

	for (int i = 0; i < OD_NWORKERS; i++)
		if (proc_backlog(&od->w[i]) > CTL_BACKLOG_HIGH &&
		    (worst == NULL || proc_backlog(&od->w[i]) > proc_backlog(worst)))
			worst = &od->w[i];
	return worst;
}

/* ---- clients ---- */

static void
client_free(struct ctl_client *c)
{
	for (struct ctl_client **pp = &od->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	for (struct od_ctl_pending *p = od->pending; p; p = p->next)
		if (p->client == c)
			p->client = NULL;
	event_free(c->deadline);
	bufferevent_free(c->bev);
	free(c);
	nclients--;
}

static int
client_waiting(const struct ctl_client *c)
{
	for (struct od_ctl_pending *p = od->pending; p; p = p->next)
		if (p->client == c)
			return 1;
	return 0;
}

static void
control_send(struct ctl_client *c, uint64_t id, int ok, const char *error, json_object *result)
{
	struct op_msg m;
	msgpack_sbuffer sb;
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ok", json_object_new_boolean(ok));
	if (error)
		json_object_object_add(b, "error", json_object_new_string(error));
	json_object_object_add(b, "result", result);
	op_msg_init(&m, OP_MSG_REPLY, id, b);
	msgpack_sbuffer_init(&sb);
	if (op_frame_encode(&m, &sb) != 0) {
		/* Too big to send whole: say so rather than fail silently. */
		op_msg_clear(&m);
		msgpack_sbuffer_destroy(&sb);
		control_send(c, id, 0, "reply exceeds the frame size limit; narrow the request", NULL);
		return;
	}
	if (c != NULL)
		bufferevent_write(c->bev, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	op_msg_clear(&m);
}

/* Says why, stops reading, and closes once the reply is flushed (or after
 * CTL_CLOSE_MS if the client does not read it). */
static void
client_hang_up(struct ctl_client *c, const char *why)
{
	control_send(c, 0, 0, why, NULL);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	c->closing = 1;
	client_arm(c);
}

static void
client_on_deadline(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_client *c = arg;
	char why[128];

	(void)fd;
	(void)ev;
	if (c->closing) {
		client_free(c);
	} else if (c->frame_mono != 0) {
		snprintf(why, sizeof(why), "request frame not completed within %d ms; closing",
		    CTL_FRAME_MS);
		log_warn("control client (uid %d): %s", c->uid, why);
		client_hang_up(c, why);
	} else if (client_waiting(c)) {
		client_arm(c); /* a worker's answer is on its way (or its timeout) */
	} else {
		client_free(c); /* idle: the slot goes back to the pool */
	}
}

/* Sets the one deadline a client has: the rest of its frame, else idleness. */
static void
client_arm(struct ctl_client *c)
{
	int64_t now = op_mono_ms(), due;

	if (c->closing) {
		due = now + CTL_CLOSE_MS;
	} else if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		if (c->frame_mono == 0)
			c->frame_mono = now;
		due = c->frame_mono + CTL_FRAME_MS;
	} else {
		c->frame_mono = 0;
		due = c->active_mono + CTL_IDLE_MS;
	}
	int64_t left = due > now ? due - now : 0;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	evtimer_add(c->deadline, &tv);
}

/* ---- forwarding to a worker ---- */

static void
pending_free(struct od_ctl_pending *p)
{
	for (struct od_ctl_pending **pp = &od->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	event_free(p->timer);
	free(p);
}

static void
pending_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct od_ctl_pending *p = arg;

	(void)fd;
	(void)ev;
	control_send(p->client, p->req_id, 0, "the worker did not answer in time", NULL);
	pending_free(p);
}

/* Called for every reply-type frame from a worker, and with m == NULL when
 * the worker died, so a waiting opsend is never left hanging. */
void
control_worker_reply(struct od_worker *w, struct op_msg *m)
{
	struct od_ctl_pending *p, *next;

	for (p = od->pending; p; p = next) {
		next = p->next;
		if (p->waiting_on != w->role || (m != NULL && m->id != p->fwd_id))
			continue;
		if (m == NULL) {
			control_send(p->client, p->req_id, 0, "the worker exited before answering", NULL);
		} else {
			int ok = op_json_bool(m->body, "ok", 0);
			json_object *res = NULL;
			if (m->type == OP_MSG_OBSERVE_REP)
				res = op_json_obj(m->body, "observation");
			else
				json_object_object_get_ex(m->body, "result", &res);
			control_send(p->client, p->req_id, ok,
			    ok ? NULL : op_json_str(m->body, "error", "failed"), json_object_get(res));
		}
		pending_free(p);
	}
}

static int
control_forward(struct ctl_req *r, enum od_role role, enum op_msg_type type, json_object *body)
{
	struct od_worker *w = &od->w[role];
	struct op_msg m;
	struct od_ctl_pending *p;

	if (w->state != OD_W_READY) {
		snprintf(r->err, sizeof(r->err), "the %s is not running (%s)", w->name,
		    od_worker_state_name(w->state));
		json_object_put(body);
		return -1;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		json_object_put(body);
		snprintf(r->err, sizeof(r->err), "out of memory");
		return -1;
	}
	p->client = r->c;
	p->req_id = r->id;
	p->waiting_on = role;
	p->fwd_id = od_new_id();
	op_msg_init(&m, type, p->fwd_id, body);
	if (proc_send(w, &m) != 0) {
		op_msg_clear(&m);
		free(p);
		snprintf(r->err, sizeof(r->err), "cannot reach the %s", w->name);
		return -1;
	}
	op_msg_clear(&m);
	p->timer = evtimer_new(od->base, pending_timeout, p);
	struct timeval tv = {OD_CTL_ASYNC_TIMEOUT_MS / 1000, 0};
	evtimer_add(p->timer, &tv);
	p->next = od->pending;
	od->pending = p;
	return 0;
}

/* ---- the commands ---- */

static const char *
arg(json_object *args, size_t i)
{
	json_object *v;

	if (args == NULL || i >= json_object_array_length(args))
		return NULL;
	v = json_object_array_get_idx(args, i);
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int
parse_id(struct ctl_req *r, size_t i, int64_t *id)
{
	const char *s = arg(r->args, i);

	if (s == NULL || op_parse_int(s, 1, INT64_MAX, id) != 0) {
		snprintf(r->err, sizeof(r->err), "expected a numeric id, got \"%s\"", s ? s : "");
		return -1;
	}
	return 0;
}

#define CONTROL_LIST_MAX 500 /* rows of a tickets or actions listing */

/* Commits an operator's change; when the ledger refuses it, nothing of it
 * happened (nothing was sent) and the client is told so. */
static int
control_commit(struct ctl_req *r)
{
	if (outbox_commit() == 0)
		return 0;
	snprintf(r->err, sizeof(r->err), "the ledger refused the change (see the daemon's log):"
	    " nothing was done");
	return -1;
}

/* Returns 0 once the setting is committed; -1 when the ledger refused it
 * (then nothing was sent and the caller restores its in-memory value). */
static int
control_set_setting(const char *key, const char *value, const char *evtype, json_object *data)
{
	outbox_begin();
	if (ledger_set_setting(od->ledger, key, value) != 0) {
		json_object_put(data);
		outbox_abort();
		return -1;
	}
	outbox_event(evtype, 0, NULL, NULL, NULL, data);
	acting_settings_changed();
	return outbox_commit();
}

static int
cmd_status(struct ctl_req *r)
{
	json_object *s = json_object_new_object();

	json_object_object_add(s, "mode", json_object_new_string(od->mode));
	json_object_object_add(s, "kill_switch", json_object_new_boolean(od->kill_switch));
	json_object_object_add(s, "pid", json_object_new_int(getpid()));
	json_object_object_add(s, "version", json_object_new_string(OP_VERSION));
	json_object_object_add(s, "uptime_ms", json_object_new_int64(op_mono_ms() - od->started_mono));
	json_object_object_add(s, "chaos_enabled", json_object_new_boolean(od->chaos_enabled));
	json_object_object_add(s, "workers", proc_workers_json());
	json_object_object_add(s, "tickets", ticket_counts_json());
	json_object_object_add(s, "last_seq", json_object_new_int64(ledger_scalar(od->ledger, 0,
	    "SELECT MAX(seq) FROM events", "")));
	json_object_object_add(s, "safety", policy_status());
	json_object_object_add(s, "budgets", policy_budgets()); /* issue 9: every bucket */
	json_object *ha = ha_status(); /* [ha] role, leader and term per subject */
	if (ha != NULL)
		json_object_object_add(s, "ha", ha);
	r->res = s;
	return 0;
}

static int
cmd_workers(struct ctl_req *r)
{
	r->res = proc_workers_json();
	return 0;
}

static int
cmd_tickets(struct ctl_req *r)
{
	const char *filter = arg(r->args, 0);

	r->res = ticket_list_json(filter && !strcmp(filter, "open"), CONTROL_LIST_MAX);
	return 0;
}

static int
ticket_show(struct ctl_req *r, int pm)
{
	int64_t n;

	if (arg(r->args, 0) && !strcmp(arg(r->args, 0), "--postmortem")) {
		pm = 1;
		json_object_array_del_idx(r->args, 0, 1);
	}
	if (arg(r->args, 1) && !strcmp(arg(r->args, 1), "--postmortem"))
		pm = 1;
	if (parse_id(r, 0, &n) == 0 && (r->res = pm ? postmortem_build(n) : ticket_record_json(n)) == NULL)
		snprintf(r->err, sizeof(r->err), "no ticket %lld", (long long)n);
	return 0;
}

static int
cmd_ticket(struct ctl_req *r)
{
	return ticket_show(r, 0);
}

static int
cmd_postmortem(struct ctl_req *r)
{
	return ticket_show(r, 1);
}

static int
cmd_actions(struct ctl_req *r)
{
	r->res = action_list_json(CONTROL_LIST_MAX);
	policy_annotate_undo(r->res); /* issue 9: what would be undone */
	return 0;
}

static int
cmd_faults(struct ctl_req *r)
{
	r->res = ledger_rows(od->ledger, "SELECT * FROM faults ORDER BY id DESC LIMIT 500", "");
	return 0;
}

static int
cmd_events(struct ctl_req *r)
{
	int64_t since = 0, limit = OD_EV_PAGE_ROWS, max_bytes = 0;

	if ((arg(r->args, 0) && op_parse_int(arg(r->args, 0), 0, INT64_MAX, &since) != 0) ||
	    (arg(r->args, 1) && op_parse_int(arg(r->args, 1), 1, OD_EV_PAGE_ROWS_MAX, &limit) != 0) ||
	    (arg(r->args, 2) && op_parse_int(arg(r->args, 2), 1, INT64_MAX, &max_bytes) != 0)) {
		snprintf(r->err, sizeof(r->err), "usage: events [SINCE [LIMIT (1..%d) [MAX_BYTES]]]",
		    OD_EV_PAGE_ROWS_MAX);
		return 0;
	}
	r->res = events_page(since, limit, max_bytes, r->err, sizeof(r->err));
	return 0;
}

static int
cmd_observe(struct ctl_req *r)
{
	const char *subj = arg(r->args, 0);

	if (subj == NULL) {
		snprintf(r->err, sizeof(r->err), "usage: observe SUBJECT");
		return 0;
	}
	json_object *b = json_object_new_object();
	json_object_object_add(b, "subject", json_object_new_string(subj));
	return control_forward(r, OD_OBSERVER, OP_MSG_OBSERVE_REQ, b) == 0;
}

static int
cmd_mode(struct ctl_req *r)
{
	const char *m = arg(r->args, 0);

	if (m == NULL || !strcmp(m, od->mode)) {
		/* Setting the mode it already has changes nothing and sends nothing. */
		r->res = json_object_new_string(od->mode);
		return 0;
	}
	if (strcmp(m, "observe") && strcmp(m, "approve") && strcmp(m, "execute")) {
		snprintf(r->err, sizeof(r->err), "mode must be observe, approve or execute, not \"%s\"", m);
		return 0;
	}
	json_object *d = json_object_new_object();
	json_object_object_add(d, "from", json_object_new_string(od->mode));
	json_object_object_add(d, "to", json_object_new_string(m));
	json_object_object_add(d, "uid", json_object_new_int(r->c->uid));
	char was[sizeof(od->mode)];
	op_strlcpy(was, od->mode, sizeof(was));
	op_strlcpy(od->mode, m, sizeof(od->mode));
	if (control_set_setting("mode", m, "mode_changed", d) != 0) {
		op_strlcpy(od->mode, was, sizeof(od->mode));
		snprintf(r->err, sizeof(r->err), "the ledger did not record the mode; still %s", was);
	} else {
		r->res = json_object_new_string(od->mode);
	}
	return 0;
}

static int
cmd_kill_switch(struct ctl_req *r)
{
	const char *v = arg(r->args, 0);

	if (v != NULL && strcmp(v, "on") && strcmp(v, "off")) {
		snprintf(r->err, sizeof(r->err), "kill-switch takes on or off, not \"%s\"", v);
		return 0;
	}
	if (v == NULL || od->kill_switch == !strcmp(v, "on")) {
		r->res = json_object_new_boolean(od->kill_switch);
		return 0;
	}
	int was = od->kill_switch;
	od->kill_switch = !strcmp(v, "on");
	json_object *d = json_object_new_object();
	json_object_object_add(d, "on", json_object_new_boolean(od->kill_switch));
	json_object_object_add(d, "uid", json_object_new_int(r->c->uid));
	if (control_set_setting("kill_switch", v, "kill_switch", d) != 0) {
		od->kill_switch = was;
		snprintf(r->err, sizeof(r->err), "the ledger did not record the kill switch; "
		    "it is still %s", was ? "on" : "off");
	} else {
		r->res = json_object_new_boolean(od->kill_switch);
	}
	return 0;
}

static int
cmd_approve_reject(struct ctl_req *r, int approve)
{
	int64_t n;

	if (parse_id(r, 0, &n) != 0)
		return 0;
	outbox_begin();
	int rc = approve ? operator_approve(n, r->who, r->err, sizeof(r->err))
	    : operator_reject(n, r->who, arg(r->args, 1), r->err, sizeof(r->err));
	if (rc == 0) {
		if (control_commit(r) == 0)
			r->res = json_object_new_int64(n);
	} else {
		outbox_abort();
	}
	return 0;
}

static int
cmd_approve(struct ctl_req *r)
{
	return cmd_approve_reject(r, 1);
}

static int
cmd_reject(struct ctl_req *r)
{
	return cmd_approve_reject(r, 0);
}

/* hold, unhold, ack, resolve: a verb on one ticket, answered with the ticket. */
static int
ticket_verb(struct ctl_req *r, enum op_ctl_cmd cmd)
{
	int64_t n;
	int rc;

	if (parse_id(r, 0, &n) != 0)
		return 0;
	outbox_begin();
	switch (cmd) {
	case OP_CTL_ACK: rc = operator_ack(n, r->who, r->err, sizeof(r->err)); break;
	case OP_CTL_RESOLVE:
		rc = operator_resolve(n, r->who, arg(r->args, 1), r->err, sizeof(r->err));
		break;
	default: rc = operator_hold(n, cmd == OP_CTL_HOLD, r->who, r->err, sizeof(r->err)); break;
	}
	if (rc == 0) {
		if (control_commit(r) == 0)
			r->res = ticket_record_json(n);
	} else {
		outbox_abort();
	}
	return 0;
}

static int
cmd_hold(struct ctl_req *r)
{
	return ticket_verb(r, OP_CTL_HOLD);
}

static int
cmd_unhold(struct ctl_req *r)
{
	return ticket_verb(r, OP_CTL_UNHOLD);
}

static int
cmd_ack(struct ctl_req *r)
{
	return ticket_verb(r, OP_CTL_ACK);
}

static int
cmd_resolve(struct ctl_req *r)
{
	return ticket_verb(r, OP_CTL_RESOLVE);
}

/* act TICKET ACTION [k=v ...] [then ACTION [k=v ...]] ... [--in DURATION]:
 * an operator's workflow (a single step is a plain action; --in schedules it). */
static json_object *
control_steps(json_object *args, int64_t *not_before, char *err, size_t errlen)
{
	json_object *steps = json_object_new_array(), *cur = NULL;

	for (size_t i = 1; arg(args, i) != NULL; i++) {
		const char *w = arg(args, i);
		if (!strcmp(w, "--in") || !strcmp(w, "--not-before")) {
			int64_t ms;
			if (arg(args, i + 1) == NULL || op_parse_duration(arg(args, i + 1), &ms) != 0) {
				snprintf(err, errlen, "%s needs a duration (30s, 5m)", w);
				goto bad;
			}
			*not_before = op_wall_ms() + ms;
			i++;
		} else if (!strcmp(w, "then")) {
			cur = NULL;
		} else if (strchr(w, '=') != NULL) {
			const char *eq = strchr(w, '=');
			char key[64];
			if (cur == NULL || eq == w) {
				snprintf(err, errlen, "parameter \"%s\" without an action before it", w);
				goto bad;
			}
			snprintf(key, sizeof(key), "%.*s", (int)(eq - w), w);
			json_object_object_add(op_json_obj(cur, "params"), key, json_object_new_string(eq + 1));
		} else {
			if (cur != NULL) {
				snprintf(err, errlen, "\"%s\": separate steps with \"then\"", w);
				goto bad;
			}
			cur = json_object_new_object();
			json_object_object_add(cur, "action", json_object_new_string(w));
			json_object_object_add(cur, "params", json_object_new_object());
			json_object_object_add(cur, "reason", json_object_new_string("requested by an operator"));
			json_object_array_add(steps, cur);
		}
	}
	if (json_object_array_length(steps) > 0)
		return steps;
	snprintf(err, errlen, "usage: act %s", op_ctl_cmds[OP_CTL_ACT].args);
bad:
	json_object_put(steps);
	return NULL;
}

static int
cmd_act(struct ctl_req *r)
{
	int64_t nb = 0, n;
	json_object *steps = control_steps(r->args, &nb, r->err, sizeof(r->err));

	if (steps != NULL && parse_id(r, 0, &n) == 0) {
		outbox_begin();
		if (operator_submit(n, steps, nb, r->who, r->err, sizeof(r->err)) == 0) {
			if (control_commit(r) == 0)
				r->res = action_rows_of_ticket(n, 1);
		} else {
			outbox_abort();
		}
	}
	json_object_put(steps);
	return 0;
}

static int
cmd_level(struct ctl_req *r)
{
	const char *a = arg(r->args, 0), *lv = arg(r->args, 1), *subj = arg(r->args, 2);

	if (a == NULL) {
		r->res = policy_status();
	} else if (lv == NULL) {
		r->res = policy_level_query(subj, a); /* the level in force, and its source */
	} else {
		outbox_begin();
		if (operator_set_level(subj ? subj : "*", a, lv, r->who, r->err, sizeof(r->err)) == 0) {
			if (control_commit(r) == 0)
				r->res = json_object_new_string(lv);
		} else {
			outbox_abort();
		}
	}
	return 0;
}

static json_object *
control_chaos_params(json_object *args, size_t from, char *err, size_t errlen)
{
	json_object *params = json_object_new_object();

	for (size_t i = from; arg(args, i) != NULL; i++) {
		const char *kv = arg(args, i);
		const char *eq = strchr(kv, '=');
		if (eq == NULL || eq == kv) {
			snprintf(err, errlen, "chaos parameter \"%s\" is not key=value", kv);
			json_object_put(params);
			return NULL;
		}
		char key[64];
		snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
		json_object_object_add(params, key, json_object_new_string(eq + 1));
	}
	return params;
}

static int
cmd_chaos(struct ctl_req *r)
{
	const char *sub = arg(r->args, 0);

	if (sub && !strcmp(sub, "inject") && arg(r->args, 1)) {
		json_object *params = control_chaos_params(r->args, 2, r->err, sizeof(r->err));
		if (params == NULL)
			return 0;
		json_object *b = json_object_new_object();
		json_object_object_add(b, "fault", json_object_new_string(arg(r->args, 1)));
		json_object_object_add(b, "params", params);
		return control_forward(r, OD_CHAOS, OP_MSG_INJECT, b) == 0;
	}
	if (sub && !strcmp(sub, "list"))
		r->res = ledger_rows(od->ledger, "SELECT * FROM faults WHERE status='active'", "");
	else
		snprintf(r->err, sizeof(r->err), "usage: chaos %s", op_ctl_cmds[OP_CTL_CHAOS].args);
	return 0;
}

static int
cmd_restart(struct ctl_req *r)
{
	struct od_worker *w = arg(r->args, 0) ? proc_by_name(arg(r->args, 0)) : NULL;

	if (w == NULL) {
		snprintf(r->err, sizeof(r->err),
		    "usage: restart observer|diagnoser|executor|verifier|chaos");
		return 0;
	}
	proc_restart_worker(w);
	r->res = json_object_new_string(w->name);
	return 0;
}

static int
cmd_reload(struct ctl_req *r)
{
	/* A bad file is refused whole; the running configuration stays. */
	if (od_reload(r->who, r->err, sizeof(r->err)) != 0)
		return 0; /* (od_reload resolves control_group again) */
	r->res = json_object_new_string("configuration reloaded; workers restarting");
	return 0;
}

static int
cmd_shutdown(struct ctl_req *r)
{
	control_send(r->c, r->id, 1, NULL, json_object_new_string("shutting down"));
	od_begin_shutdown(0);
	return 1;
}

/* Handlers by command: 0 = answer now with r->res or r->err, 1 = answered
 * already or later (forwarded to a worker). */
static int (*const handlers[OP_CTL_NCMDS])(struct ctl_req *) = {
	[OP_CTL_STATUS] = cmd_status,
	[OP_CTL_WORKERS] = cmd_workers,
	[OP_CTL_TICKETS] = cmd_tickets,
	[OP_CTL_TICKET] = cmd_ticket,
	[OP_CTL_POSTMORTEM] = cmd_postmortem,
	[OP_CTL_ACTIONS] = cmd_actions,
	[OP_CTL_FAULTS] = cmd_faults,
	[OP_CTL_EVENTS] = cmd_events,
	[OP_CTL_OBSERVE] = cmd_observe,
	[OP_CTL_MODE] = cmd_mode,
	[OP_CTL_KILL_SWITCH] = cmd_kill_switch,
	[OP_CTL_APPROVE] = cmd_approve,
	[OP_CTL_REJECT] = cmd_reject,
	[OP_CTL_HOLD] = cmd_hold,
	[OP_CTL_UNHOLD] = cmd_unhold,
	[OP_CTL_ACK] = cmd_ack,
	[OP_CTL_RESOLVE] = cmd_resolve,
	[OP_CTL_ACT] = cmd_act,
	[OP_CTL_LEVEL] = cmd_level,
	[OP_CTL_CHAOS] = cmd_chaos,
	[OP_CTL_RESTART] = cmd_restart,
	[OP_CTL_RELOAD] = cmd_reload,
	[OP_CTL_SHUTDOWN] = cmd_shutdown,
};

static void
control_dispatch(struct ctl_client *c, uint64_t id, const char *name, json_object *args)
{
	const struct op_ctl_cmd_info *info = op_ctl_lookup(name);
	struct ctl_req r = {.c = c, .id = id, .args = args};
	size_t nargs = args ? json_object_array_length(args) : 0;

	if (info == NULL) {
		char names[256];
		op_ctl_names(names, sizeof(names));
		snprintf(r.err, sizeof(r.err), "unknown command \"%.64s\"; try: %s", name, names);
		control_send(c, id, 0, r.err, NULL);
		return;
	}
	int mutates = op_ctl_mutates(info, nargs);
	if (mutates && !control_may_mutate(c->uid)) {
		control_send(c, id, 0, "permission denied: root or the control group only", NULL);
		return;
	}
	/* Back-pressure at the source: a flood of requests must not pile frames
	 * on a worker that is behind (a full channel once cost a worker its life). */
	struct od_worker *behind;
	if ((info->flags & OP_CTL_TO_WORKERS) && (mutates || info->cmd == OP_CTL_OBSERVE) &&
	    (behind = control_behind()) != NULL) {
		snprintf(r.err, sizeof(r.err), "busy: the %s has %zu frames waiting; retry in a moment",
		    behind->name, proc_backlog(behind));
		control_send(c, id, 0, r.err, NULL);
		return;
	}
	snprintf(r.who, sizeof(r.who), "uid:%d", c->uid);
	if (handlers[info->cmd](&r) != 0)
		return;
	if (r.err[0] != '\0') {
		json_object_put(r.res);
		control_send(c, id, 0, r.err, NULL);
	} else {
		control_send(c, id, 1, NULL, r.res);
	}
}

/* ---- the socket ---- */

static void
client_on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[OP_FRAME_HDR];
	char err[256];

	while (!c->closing && evbuffer_get_length(in) >= OP_FRAME_HDR) {
		evbuffer_copyout(in, hdr, sizeof(hdr));
		int64_t n = op_frame_len(hdr, err, sizeof(err));
		if (n < 0) {
			/* The stream cannot be resynchronised: say why, then hang up. */
			char msg[320];
			snprintf(msg, sizeof(msg), "bad request frame: %s", err);
			log_warn("control client (uid %d): %s", c->uid, msg);
			client_hang_up(c, msg);
			return;
		}
		if (evbuffer_get_length(in) < (size_t)n + OP_FRAME_HDR)
			break;
		evbuffer_drain(in, OP_FRAME_HDR);
		uint8_t *buf = evbuffer_pullup(in, n);
		struct op_msg m;
		int rc = op_msg_decode(buf, (size_t)n, &m, err, sizeof(err));
		evbuffer_drain(in, (size_t)n);
		c->active_mono = op_mono_ms();
		c->frame_mono = 0; /* the next frame's clock starts with its first byte */
		if (rc != 0) {
			char msg[320];
			snprintf(msg, sizeof(msg), "bad request frame: %s", err);
			log_warn("control client (uid %d): %s", c->uid, msg);
			control_send(c, 0, 0, msg, NULL);
		} else if (m.type != OP_MSG_REQUEST) {
			control_send(c, m.id, 0, "expected a request frame", NULL);
		} else {
			control_dispatch(c, m.id, op_json_str(m.body, "cmd", ""), op_json_arr(m.body, "args"));
		}
		if (rc == 0)
			op_msg_clear(&m);
		if (od->shutting_down)
			return;
	}
	if (!c->closing)
		client_arm(c);
}

static void
client_on_write(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;

	if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		client_free(c);
}

static void
client_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

/* Refuses a connection with a reply that says why (best effort: the socket
 * is new and empty, so one small write does not block). */
static void
control_refuse(int fd, const char *why)
{
	struct op_msg m;
	msgpack_sbuffer sb;
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ok", json_object_new_boolean(0));
	json_object_object_add(b, "error", json_object_new_string(why));
	op_msg_init(&m, OP_MSG_REPLY, 0, b);
	msgpack_sbuffer_init(&sb);
	if (op_frame_encode(&m, &sb) == 0) {
		ssize_t w = send(fd, sb.data, sb.size, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)w;
	}
	msgpack_sbuffer_destroy(&sb);
	op_msg_clear(&m);
	close(fd);
}

/* The connection that has been idle the longest and is not waiting on a
 * worker: what root's connection replaces when every slot is taken. */
static struct ctl_client *
control_idlest(void)
{
	struct ctl_client *best = NULL;

	for (struct ctl_client *c = od->clients; c; c = c->next)
		if (!client_waiting(c) && (best == NULL || c->active_mono < best->active_mono))
			best = c;
	return best;
}

static void
control_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
    void *arg)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct ctl_client *c;
	int uid, mine = 0, others = 0;
	char why[160];

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	if (od->shutting_down) {
		close(fd);
		return;
	}
	/* The kernel's word on who is calling: not forgeable by the client. */
	uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? (int)cred.uid : -1;
	int privileged = uid == 0 || (uid >= 0 && (uid_t)uid == geteuid());
	for (c = od->clients; c; c = c->next) {
		mine += c->uid == uid;
		others += !c->privileged;
	}
	if (!privileged && (uid < 0 || mine >= CTL_UID_SHARE || others >= OD_CTL_MAX_CLIENTS)) {
		snprintf(why, sizeof(why), "too many control connections (%d for uid %d, %d in all); "
		    "close some and retry", mine, uid, others);
		control_refuse(fd, why);
		return;
	}
	if (nclients >= CTL_HARD_MAX) {
		/* Only root and the daemon's user get here: they always get in. */
		struct ctl_client *old = control_idlest();
		if (old == NULL) {
			control_refuse(fd, "every control connection is waiting on a worker; retry");
			return;
		}
		log_warn("control: all %d connections in use; closing the idlest (uid %d) for uid %d",
		    CTL_HARD_MAX, old->uid, uid);
		client_free(old);
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->uid = uid;
	c->privileged = privileged;
	c->active_mono = op_mono_ms();
	c->bev = bufferevent_socket_new(od->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->deadline = evtimer_new(od->base, client_on_deadline, c);
	bufferevent_setcb(c->bev, client_on_read, client_on_write, client_on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = od->clients;
	od->clients = c;
	nclients++;
	client_arm(c);
}

struct evconnlistener *
control_listen_unix(const char *name, evconnlistener_cb cb, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct evconnlistener *l;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", od->runtime_dir, name);
	/* We hold the runtime directory's lock, so a leftover socket is stale. */
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(sa.sun_path, od->ctl_gid != (gid_t)-1 ? 0660 : 0600) != 0 ||
	    (od->ctl_gid != (gid_t)-1 && chown(sa.sun_path, (uid_t)-1, od->ctl_gid) != 0)) {
		snprintf(err, errlen, "%s: %s", sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	l = evconnlistener_new(od->base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, 16, fd);
	if (l == NULL) {
		snprintf(err, errlen, "%s: cannot listen", sa.sun_path);
		close(fd);
	}
	return l;
}

int
control_open(char *err, size_t errlen)
{
	control_load_acl();
	od->ctl_listener = control_listen_unix(OP_CTL_SOCK, control_accept, err, errlen);
	if (od->ctl_listener == NULL)
		return -1;
	return events_open(err, errlen);
}

void
control_stop_accepting(void)
{
	if (od->ctl_listener)
		evconnlistener_disable(od->ctl_listener);
	events_stop_accepting();
}

void
control_close(void)
{
	while (od->pending)
		pending_free(od->pending);
	while (od->clients)
		client_free(od->clients);
	if (od->ctl_listener)
		evconnlistener_free(od->ctl_listener);
	od->ctl_listener = NULL;
	events_close();
	free(acl);
	acl = NULL;
	nacl = 0;
}
