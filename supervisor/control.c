/* control: the control socket (ctl.sock) under the runtime directory, framed
 * as protocol/frame.h describes and dispatched on protocol/ctl.h's command
 * table. Any number of clients within the limits below; a command a worker
 * must answer (observe, chaos) is forwarded and answered when the worker
 * replies or a timeout passes. What each command does is control_cmd.c;
 * the event stream is events.c.
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
#include "supervisor/control.h"
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

void
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

int
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

static void
control_dispatch(struct ctl_client *c, uint64_t id, const char *name, json_object *args)
{
	const struct op_ctl_cmd_info *info = op_ctl_lookup(name);
	struct ctl_req r = {.c = c, .uid = c->uid, .id = id, .args = args};
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
	if (control_cmd_run(&r, info->cmd) != 0)
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
