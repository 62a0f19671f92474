/* control: the control and event sockets (ctl.sock, events.sock) under the
 * runtime directory, framed as protocol/frame.h describes. Any number of
 * clients at once; a command a worker must answer (observe, chaos) is
 * forwarded and answered when the worker replies or a timeout passes. */
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
#include "protocol/frame.h"
#include "supervisor/od.h"

struct ctl_client {
	struct bufferevent *bev;
	int uid;
	int subscriber;       /* on events.sock: only receives */
	struct ctl_client *next;
};

static int nclients;

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
	bufferevent_free(c->bev);
	free(c);
	nclients--;
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

void
control_publish(const struct op_msg *ev)
{
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	if (op_frame_encode(ev, &sb) == 0) {
		for (struct ctl_client *c = od->clients; c; c = c->next) {
			if (c->subscriber <= 0)
				continue; /* control clients, and ones being hung up on (-1) */
			/* Never block on a slow reader: it sees the gap in seq and backfills. */
			if (evbuffer_get_length(bufferevent_get_output(c->bev)) < OD_SUB_MAX_BUF)
				bufferevent_write(c->bev, sb.data, sb.size);
		}
	}
	msgpack_sbuffer_destroy(&sb);
}

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
control_forward(struct ctl_client *c, uint64_t req_id, enum od_role role,
    enum op_msg_type type, json_object *body, char *err, size_t errlen)
{
	struct od_worker *w = &od->w[role];
	struct op_msg m;
	struct od_ctl_pending *p;

	if (w->state != OD_W_READY) {
		snprintf(err, errlen, "the %s is not running (%s)", w->name,
		    od_worker_state_name(w->state));
		json_object_put(body);
		return -1;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		json_object_put(body);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->client = c;
	p->req_id = req_id;
	p->waiting_on = role;
	p->fwd_id = od_new_id();
	op_msg_init(&m, type, p->fwd_id, body);
	if (proc_send(w, &m) != 0) {
		op_msg_clear(&m);
		free(p);
		snprintf(err, errlen, "cannot reach the %s", w->name);
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

static int
control_may_mutate(int uid)
{
	if (uid < 0 || uid == 0 || (uid_t)uid == geteuid())
		return uid >= 0;
	if (od->ctl_gid == (gid_t)-1)
		return 0;
	struct passwd *pw = getpwuid((uid_t)uid);
	if (pw == NULL)
		return 0;
	if (pw->pw_gid == od->ctl_gid)
		return 1;
	gid_t groups[64];
	int n = 64;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (groups[i] == od->ctl_gid)
			return 1;
	return 0;
}

static const char *
arg(json_object *args, size_t i)
{
	json_object *v;

	if (args == NULL || i >= json_object_array_length(args))
		return NULL;
	v = json_object_array_get_idx(args, i);
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static json_object *
control_status(void)
{
	json_object *s = json_object_new_object();

	json_object_object_add(s, "mode", json_object_new_string(od->mode));
	json_object_object_add(s, "kill_switch", json_object_new_boolean(od->kill_switch));
	json_object_object_add(s, "pid", json_object_new_int(getpid()));
	json_object_object_add(s, "version", json_object_new_string(OP_VERSION));
	json_object_object_add(s, "uptime_ms", json_object_new_int64(op_mono_ms() - od->started_mono));
	json_object_object_add(s, "chaos_enabled", json_object_new_boolean(od->chaos_enabled));
	json_object_object_add(s, "workers", proc_workers_json());
	json_object_object_add(s, "tickets", ledger_rows(od->ledger,
	    "SELECT status, COUNT(*) AS count FROM tickets GROUP BY status", ""));
	json_object_object_add(s, "last_seq", json_object_new_int64(ledger_scalar(od->ledger, 0,
	    "SELECT MAX(seq) FROM events", "")));
	json_object_object_add(s, "safety", policy_status());
	return s;
}

static json_object *
control_ticket(int64_t id)
{
	json_object *t = ledger_row(od->ledger, "SELECT * FROM tickets WHERE id=?1", "i", id);

	if (t == NULL)
		return NULL;
	json_object_object_add(t, "diagnoses", ledger_rows(od->ledger,
	    "SELECT * FROM diagnoses WHERE ticket_id=?1 ORDER BY id", "i", id));
	json_object_object_add(t, "actions", ledger_rows(od->ledger,
	    "SELECT * FROM actions WHERE ticket_id=?1 ORDER BY step", "i", id));
	json_object_object_add(t, "verifications", ledger_rows(od->ledger,
	    "SELECT * FROM verifications WHERE ticket_id=?1 ORDER BY id", "i", id));
	json_object_object_add(t, "events", ledger_rows(od->ledger,
	    "SELECT seq,ts,type,data FROM events WHERE ticket=?1 ORDER BY seq", "i", id));
	return t;
}

static int
parse_id(const char *s, int64_t *id, char *err, size_t errlen)
{
	if (s == NULL || op_parse_int(s, 1, INT64_MAX, id) != 0) {
		snprintf(err, errlen, "expected a numeric id, got \"%s\"", s ? s : "");
		return -1;
	}
	return 0;
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
	dispatch_settings_changed();
	return outbox_commit();
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
	snprintf(err, errlen, "usage: act TICKET ACTION [key=value ...] [then ACTION ...] [--in DURATION]");
bad:
	json_object_put(steps);
	return NULL;
}

static void
control_dispatch(struct ctl_client *c, uint64_t id, const char *cmd, json_object *args)
{
	char err[512] = "";
	json_object *res = NULL;
	int64_t n;
	int uid = c->uid;
	static const char *const mutating[] = {"mode", "kill-switch", "approve", "reject",
		"chaos", "diagnose", "reload", "shutdown", "restart", "hold", "unhold", "ack",
		"resolve", "act", "level"};

	for (size_t i = 0; i < OP_ARRAY_LEN(mutating); i++)
		if (!strcmp(cmd, mutating[i]) && !control_may_mutate(uid)) {
			control_send(c, id, 0, "permission denied: root or the control group only", NULL);
			return;
		}
	if (!strcmp(cmd, "status")) {
		res = control_status();
	} else if (!strcmp(cmd, "workers")) {
		res = proc_workers_json();
	} else if (!strcmp(cmd, "tickets")) {
		const char *filter = arg(args, 0);
		if (filter && !strcmp(filter, "open"))
			res = ledger_rows(od->ledger, "SELECT * FROM tickets WHERE closed_at IS NULL"
			    " ORDER BY id DESC", "");
		else
			res = ledger_rows(od->ledger, "SELECT * FROM tickets ORDER BY id DESC LIMIT 500", "");
	} else if (!strcmp(cmd, "ticket") || !strcmp(cmd, "postmortem")) {
		int pm = !strcmp(cmd, "postmortem") || (arg(args, 1) && !strcmp(arg(args, 1), "--postmortem"));
		if (arg(args, 0) && !strcmp(arg(args, 0), "--postmortem")) {
			pm = 1;
			json_object_array_del_idx(args, 0, 1);
		}
		if (parse_id(arg(args, 0), &n, err, sizeof(err)) == 0 &&
		    (res = pm ? postmortem_build(n) : control_ticket(n)) == NULL)
			snprintf(err, sizeof(err), "no ticket %lld", (long long)n);
	} else if (!strcmp(cmd, "hold") || !strcmp(cmd, "unhold") || !strcmp(cmd, "ack") ||
	    !strcmp(cmd, "resolve")) {
		char who[64];
		snprintf(who, sizeof(who), "uid:%d", uid);
		if (parse_id(arg(args, 0), &n, err, sizeof(err)) == 0) {
			outbox_begin();
			int rc = !strcmp(cmd, "ack") ? dispatch_ack(n, who, err, sizeof(err))
			    : !strcmp(cmd, "resolve") ? dispatch_resolve(n, who, arg(args, 1), err, sizeof(err))
			    : dispatch_hold(n, !strcmp(cmd, "hold"), who, err, sizeof(err));
			if (rc == 0) {
				outbox_commit();
				res = control_ticket(n);
			} else {
				outbox_abort();
			}
		}
	} else if (!strcmp(cmd, "act")) {
		char who[64];
		int64_t nb = 0;
		snprintf(who, sizeof(who), "uid:%d", uid);
		json_object *steps = control_steps(args, &nb, err, sizeof(err));
		if (steps != NULL && parse_id(arg(args, 0), &n, err, sizeof(err)) == 0) {
			outbox_begin();
			if (dispatch_submit(n, steps, nb, who, err, sizeof(err)) == 0) {
				outbox_commit();
				res = ledger_rows(od->ledger, "SELECT * FROM actions WHERE ticket_id=?1 AND"
				    " requested_by IS NOT NULL ORDER BY step", "i", n);
			} else {
				outbox_abort();
			}
		}
		json_object_put(steps);
	} else if (!strcmp(cmd, "level")) {
		const char *a = arg(args, 0), *lv = arg(args, 1), *subj = arg(args, 2);
		char who[64];
		snprintf(who, sizeof(who), "uid:%d", uid);
		if (a == NULL) {
			res = policy_status();
		} else if (lv == NULL) {
			res = json_object_new_string(policy_level(subj ? subj : "*", a));
		} else {
			outbox_begin();
			if (dispatch_set_level(subj ? subj : "*", a, lv, who, err, sizeof(err)) == 0) {
				outbox_commit();
				res = json_object_new_string(lv);
			} else {
				outbox_abort();
			}
		}
	} else if (!strcmp(cmd, "actions")) {
		res = ledger_rows(od->ledger, "SELECT * FROM actions ORDER BY id DESC LIMIT 500", "");
	} else if (!strcmp(cmd, "faults")) {
		res = ledger_rows(od->ledger, "SELECT * FROM faults ORDER BY id DESC LIMIT 500", "");
	} else if (!strcmp(cmd, "events")) {
		int64_t since = 0, limit = 1000;
		if (arg(args, 0))
			op_parse_int(arg(args, 0), 0, INT64_MAX, &since);
		if (arg(args, 1))
			op_parse_int(arg(args, 1), 1, 10000, &limit);
		res = ledger_rows(od->ledger, "SELECT seq,ts,type,ticket,subject,entity,invariant,data"
		    " FROM events WHERE seq>?1 ORDER BY seq LIMIT ?2", "ii", since, limit);
	} else if (!strcmp(cmd, "mode")) {
		const char *m = arg(args, 0);
		if (m == NULL) {
			res = json_object_new_string(od->mode);
		} else if (strcmp(m, "observe") && strcmp(m, "approve") && strcmp(m, "execute")) {
			snprintf(err, sizeof(err), "mode must be observe, approve or execute, not \"%s\"", m);
		} else {
			json_object *d = json_object_new_object();
			json_object_object_add(d, "from", json_object_new_string(od->mode));
			json_object_object_add(d, "to", json_object_new_string(m));
			json_object_object_add(d, "uid", json_object_new_int(uid));
			char was[sizeof(od->mode)];
			op_strlcpy(was, od->mode, sizeof(was));
			op_strlcpy(od->mode, m, sizeof(od->mode));
			if (control_set_setting("mode", m, "mode_changed", d) != 0) {
				op_strlcpy(od->mode, was, sizeof(od->mode));
				snprintf(err, sizeof(err), "the ledger did not record the mode; still %s", was);
			} else {
				res = json_object_new_string(od->mode);
			}
		}
	} else if (!strcmp(cmd, "kill-switch")) {
		const char *v = arg(args, 0);
		if (v == NULL) {
			res = json_object_new_boolean(od->kill_switch);
		} else if (strcmp(v, "on") && strcmp(v, "off")) {
			snprintf(err, sizeof(err), "kill-switch takes on or off, not \"%s\"", v);
		} else {
			int was = od->kill_switch;
			od->kill_switch = !strcmp(v, "on");
			json_object *d = json_object_new_object();
			json_object_object_add(d, "on", json_object_new_boolean(od->kill_switch));
			json_object_object_add(d, "uid", json_object_new_int(uid));
			if (control_set_setting("kill_switch", v, "kill_switch", d) != 0) {
				od->kill_switch = was;
				snprintf(err, sizeof(err), "the ledger did not record the kill switch; "
				    "it is still %s", was ? "on" : "off");
			} else {
				res = json_object_new_boolean(od->kill_switch);
			}
		}
	} else if (!strcmp(cmd, "approve") || !strcmp(cmd, "reject")) {
		char who[64];
		snprintf(who, sizeof(who), "uid:%d", uid);
		if (parse_id(arg(args, 0), &n, err, sizeof(err)) == 0) {
			outbox_begin();
			int rc = !strcmp(cmd, "approve") ? dispatch_approve(n, who, err, sizeof(err))
			    : dispatch_reject(n, who, arg(args, 1), err, sizeof(err));
			if (rc == 0) {
				outbox_commit();
				res = json_object_new_int64(n);
			} else {
				outbox_abort();
			}
		}
	} else if (!strcmp(cmd, "chaos")) {
		const char *sub = arg(args, 0);
		if (sub && !strcmp(sub, "inject") && arg(args, 1)) {
			json_object *params = control_chaos_params(args, 2, err, sizeof(err));
			if (params != NULL) {
				json_object *b = json_object_new_object();
				json_object_object_add(b, "fault", json_object_new_string(arg(args, 1)));
				json_object_object_add(b, "params", params);
				if (control_forward(c, id, OD_CHAOS, OP_MSG_INJECT, b, err, sizeof(err)) == 0)
					return;
			}
		} else if (sub && !strcmp(sub, "list")) {
			res = ledger_rows(od->ledger, "SELECT * FROM faults WHERE status='active'", "");
		} else {
			snprintf(err, sizeof(err), "usage: chaos inject FAULT [key=value ...] | chaos list");
		}
	} else if (!strcmp(cmd, "observe")) {
		const char *subj = arg(args, 0);
		if (subj == NULL) {
			snprintf(err, sizeof(err), "usage: observe SUBJECT");
		} else {
			json_object *b = json_object_new_object();
			json_object_object_add(b, "subject", json_object_new_string(subj));
			if (control_forward(c, id, OD_OBSERVER, OP_MSG_OBSERVE_REQ, b, err, sizeof(err)) == 0)
				return;
		}
	} else if (!strcmp(cmd, "restart")) {
		struct od_worker *w = arg(args, 0) ? proc_by_name(arg(args, 0)) : NULL;
		if (w == NULL)
			snprintf(err, sizeof(err), "usage: restart observer|diagnoser|executor|verifier|chaos");
		else {
			proc_restart_worker(w);
			res = json_object_new_string(w->name);
		}
	} else if (!strcmp(cmd, "reload")) {
		/* Workers re-read the configuration when they start. */
		for (int i = 0; i < OD_NWORKERS; i++)
			proc_restart_worker(&od->w[i]);
		res = json_object_new_string("workers restarting with the current configuration");
	} else if (!strcmp(cmd, "shutdown")) {
		control_send(c, id, 1, NULL, json_object_new_string("shutting down"));
		od_begin_shutdown(0);
		return;
	} else {
		snprintf(err, sizeof(err), "unknown command \"%s\"; try: status workers tickets ticket "
		    "postmortem actions events faults mode kill-switch approve reject hold unhold ack "
		    "resolve act level chaos observe restart reload shutdown", cmd);
	}
	if (err[0] != '\0') {
		json_object_put(res);
		control_send(c, id, 0, err, NULL);
	} else {
		control_send(c, id, 1, NULL, res);
	}
}

static void
client_on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[OP_FRAME_HDR];
	char err[256];

	while (evbuffer_get_length(in) >= OP_FRAME_HDR) {
		evbuffer_copyout(in, hdr, sizeof(hdr));
		int64_t n = op_frame_len(hdr, err, sizeof(err));
		if (n < 0) {
			/* The stream cannot be resynchronised: say why, then hang up. */
			char msg[320];
			snprintf(msg, sizeof(msg), "bad request frame: %s", err);
			log_warn("control client (uid %d): %s", c->uid, msg);
			control_send(c, 0, 0, msg, NULL);
			bufferevent_disable(bev, EV_READ);
			bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
			c->subscriber = -1; /* close once the error is flushed */
			return;
		}
		if (evbuffer_get_length(in) < (size_t)n + OP_FRAME_HDR)
			return;
		evbuffer_drain(in, OP_FRAME_HDR);
		uint8_t *buf = evbuffer_pullup(in, n);
		struct op_msg m;
		int rc = op_msg_decode(buf, (size_t)n, &m, err, sizeof(err));
		evbuffer_drain(in, (size_t)n);
		if (c->subscriber) {
			/* event subscribers only listen; whatever they send is dropped */
		} else if (rc != 0) {
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
}

static void
client_on_write(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;

	if (c->subscriber == -1 && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		client_free(c);
}

static void
client_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

static void
control_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
    void *arg)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct ctl_client *c;

	(void)l;
	(void)sa;
	(void)len;
	if (nclients >= OD_CTL_MAX_CLIENTS || od->shutting_down) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	/* The kernel's word on who is calling: not forgeable by the client. */
	c->uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? (int)cred.uid : -1;
	c->subscriber = arg != NULL;
	c->bev = bufferevent_socket_new(od->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, client_on_read, client_on_write, client_on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = od->clients;
	od->clients = c;
	nclients++;
}

static struct evconnlistener *
control_listen(const char *name, void *arg, char *err, size_t errlen)
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
	l = evconnlistener_new(od->base, control_accept, arg, LEV_OPT_CLOSE_ON_FREE, 16, fd);
	if (l == NULL) {
		snprintf(err, errlen, "%s: cannot listen", sa.sun_path);
		close(fd);
	}
	return l;
}

int
control_open(char *err, size_t errlen)
{
	static int subscriber_tag;

	od->ctl_listener = control_listen("ctl.sock", NULL, err, errlen);
	if (od->ctl_listener == NULL)
		return -1;
	od->ev_listener = control_listen("events.sock", &subscriber_tag, err, errlen);
	return od->ev_listener ? 0 : -1;
}

void
control_stop_accepting(void)
{
	if (od->ctl_listener)
		evconnlistener_disable(od->ctl_listener);
	if (od->ev_listener)
		evconnlistener_disable(od->ev_listener);
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
	if (od->ev_listener)
		evconnlistener_free(od->ev_listener);
	od->ctl_listener = od->ev_listener = NULL;
}
