/* control: the REP socket opsend talks to. One request is handled at a time
 * (REP without contexts); commands a worker must answer (observe, chaos)
 * hold the socket until the worker replies or a timeout passes. */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "protocol/bus.h"
#include "supervisor/od.h"

static void control_on_request(evutil_socket_t fd, short ev, void *arg);

int
control_open(char *err, size_t errlen)
{
	char url[PATH_MAX + 16];
	int rv;

	snprintf(url, sizeof(url), "ipc://%s/ctl.ipc", od->runtime_dir);
	if ((rv = bus_open(&od->ctl, BUS_REP, url, 1)) != 0) {
		snprintf(err, errlen, "%s: %s", url, nng_strerror(rv));
		return -1;
	}
	bus_set_send_timeout(od->ctl, OP_BUS_CTL_TIMEOUT_MS);
	snprintf(url, sizeof(url), "ipc://%s/events.ipc", od->runtime_dir);
	if ((rv = bus_open(&od->pub, BUS_PUB, url, 1)) != 0) {
		snprintf(err, errlen, "%s: %s", url, nng_strerror(rv));
		return -1;
	}
	od->ctl_ev = event_new(od->base, bus_recv_fd(od->ctl), EV_READ | EV_PERSIST,
	    control_on_request, NULL);
	event_add(od->ctl_ev, NULL);
	return 0;
}

void
control_close(void)
{
	if (od->ctl_ev) {
		event_free(od->ctl_ev);
		od->ctl_ev = NULL;
	}
	if (od->ctl_pending.timer) {
		event_free(od->ctl_pending.timer);
		od->ctl_pending.timer = NULL;
	}
	for (int i = 0; i < OD_CTL_DEDUP; i++)
		free(od->ctl_seen[i].reply);
	bus_close(od->ctl);
	bus_close(od->pub);
}

static void
control_send(uint64_t id, int ok, const char *error, json_object *result)
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
	if (op_msg_encode(&m, &sb) != 0) {
		/* Too big to send whole: say so rather than fail silently. */
		op_msg_clear(&m);
		msgpack_sbuffer_destroy(&sb);
		control_send(id, 0, "reply exceeds the frame size limit; narrow the request", NULL);
		return;
	}
	bus_send_raw(od->ctl, sb.data, sb.size, 0);
	/* REQ resends a request whose reply was lost: remember the reply by id. */
	int slot = od->ctl_seen_next++ % OD_CTL_DEDUP;
	free(od->ctl_seen[slot].reply);
	od->ctl_seen[slot].id = id;
	od->ctl_seen[slot].reply = malloc(sb.size);
	if (od->ctl_seen[slot].reply) {
		memcpy(od->ctl_seen[slot].reply, sb.data, sb.size);
		od->ctl_seen[slot].len = sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	op_msg_clear(&m);
}

static void
control_resume(void)
{
	od->ctl_pending.active = 0;
	if (od->ctl_pending.timer)
		evtimer_del(od->ctl_pending.timer);
	if (od->ctl_ev && !od->shutting_down)
		event_add(od->ctl_ev, NULL);
	/* A request may have queued while we were busy. */
	if (od->ctl_ev)
		event_active(od->ctl_ev, EV_READ, 0);
}

static void
control_pending_timeout(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	if (!od->ctl_pending.active)
		return;
	control_send(od->ctl_pending.req_id, 0, "the worker did not answer in time", NULL);
	control_resume();
}

/* Called for every reply-type frame from a worker, and with m == NULL when
 * the worker died, so a waiting opsend is never left hanging. */
void
control_worker_reply(struct od_worker *w, struct op_msg *m)
{
	struct od_ctl_pending *p = &od->ctl_pending;

	if (!p->active || p->waiting_on != w->role)
		return;
	if (m == NULL) {
		control_send(p->req_id, 0, "the worker exited before answering", NULL);
	} else {
		if (m->id != p->fwd_id)
			return;
		int ok = op_json_bool(m->body, "ok", 0);
		json_object *res = NULL;
		if (m->type == OP_MSG_OBSERVE_REP)
			res = json_object_get(op_json_obj(m->body, "observation"));
		else
			json_object_object_get_ex(m->body, "result", &res), json_object_get(res);
		control_send(p->req_id, ok, ok ? NULL : op_json_str(m->body, "error", "failed"), res);
	}
	control_resume();
}

static int
control_forward(uint64_t req_id, enum od_role role, enum op_msg_type type, json_object *body,
    char *err, size_t errlen)
{
	struct od_worker *w = &od->w[role];
	struct op_msg m;

	if (w->state != OD_W_READY) {
		snprintf(err, errlen, "the %s is not running (%s)", w->name,
		    od_worker_state_name(w->state));
		json_object_put(body);
		return -1;
	}
	struct od_ctl_pending *p = &od->ctl_pending;
	p->active = 1;
	p->req_id = req_id;
	p->waiting_on = role;
	p->fwd_id = od_new_id();
	op_msg_init(&m, type, p->fwd_id, body);
	if (proc_send(w, &m) != 0) {
		op_msg_clear(&m);
		p->active = 0;
		snprintf(err, errlen, "cannot reach the %s", w->name);
		return -1;
	}
	op_msg_clear(&m);
	if (p->timer == NULL)
		p->timer = evtimer_new(od->base, control_pending_timeout, NULL);
	struct timeval tv = {OD_CTL_ASYNC_TIMEOUT_MS / 1000, 0};
	evtimer_add(p->timer, &tv);
	event_del(od->ctl_ev);
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

static void
control_set_setting(const char *key, const char *value, const char *evtype, json_object *data)
{
	ledger_begin(od->ledger);
	ledger_set_setting(od->ledger, key, value);
	outbox_event(evtype, 0, NULL, NULL, NULL, data);
	dispatch_settings_changed();
	outbox_commit();
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

/* Returns 1 when the reply was sent or will be sent by a worker. */
static void
control_dispatch(uint64_t id, const char *cmd, json_object *args, int uid)
{
	char err[512] = "";
	json_object *res = NULL;
	int64_t n;
	static const char *const mutating[] = {"mode", "kill-switch", "approve", "reject",
		"chaos", "diagnose", "reload", "shutdown", "restart"};

	for (size_t i = 0; i < OP_ARRAY_LEN(mutating); i++)
		if (!strcmp(cmd, mutating[i]) && !control_may_mutate(uid)) {
			control_send(id, 0, "permission denied: root or the control group only", NULL);
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
	} else if (!strcmp(cmd, "ticket")) {
		if (parse_id(arg(args, 0), &n, err, sizeof(err)) == 0 && (res = control_ticket(n)) == NULL)
			snprintf(err, sizeof(err), "no ticket %lld", (long long)n);
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
			op_strlcpy(od->mode, m, sizeof(od->mode));
			control_set_setting("mode", m, "mode_changed", d);
			res = json_object_new_string(od->mode);
		}
	} else if (!strcmp(cmd, "kill-switch")) {
		const char *v = arg(args, 0);
		if (v == NULL) {
			res = json_object_new_boolean(od->kill_switch);
		} else if (strcmp(v, "on") && strcmp(v, "off")) {
			snprintf(err, sizeof(err), "kill-switch takes on or off, not \"%s\"", v);
		} else {
			od->kill_switch = !strcmp(v, "on");
			json_object *d = json_object_new_object();
			json_object_object_add(d, "on", json_object_new_boolean(od->kill_switch));
			json_object_object_add(d, "uid", json_object_new_int(uid));
			control_set_setting("kill_switch", v, "kill_switch", d);
			res = json_object_new_boolean(od->kill_switch);
		}
	} else if (!strcmp(cmd, "approve") || !strcmp(cmd, "reject")) {
		char who[64];
		snprintf(who, sizeof(who), "uid:%d", uid);
		if (parse_id(arg(args, 0), &n, err, sizeof(err)) == 0) {
			ledger_begin(od->ledger);
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
				if (control_forward(id, OD_CHAOS, OP_MSG_INJECT, b, err, sizeof(err)) == 0)
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
			if (control_forward(id, OD_OBSERVER, OP_MSG_OBSERVE_REQ, b, err, sizeof(err)) == 0)
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
		control_send(id, 1, NULL, json_object_new_string("shutting down"));
		od_begin_shutdown(0);
		return;
	} else {
		snprintf(err, sizeof(err), "unknown command \"%s\"; try: status workers tickets ticket "
		    "actions events faults mode kill-switch approve reject chaos observe restart "
		    "reload shutdown", cmd);
	}
	if (err[0] != '\0') {
		json_object_put(res);
		control_send(id, 0, err, NULL);
	} else {
		control_send(id, 1, NULL, res);
	}
}

static void
control_on_request(evutil_socket_t fd, short ev, void *arg_)
{
	struct op_msg m;
	char err[256];
	int uid = -1, rc;

	(void)fd;
	(void)ev;
	(void)arg_;
	if (od->ctl_pending.active)
		return;
	rc = bus_recv_peer(od->ctl, &m, 1, &uid, err, sizeof(err));
	if (rc == 0 || rc == -2)
		return;
	if (rc < 0) {
		/* Garbage from a client: answer so it is not left waiting, keep running. */
		log_warn("bad control frame: %s", err);
		char msg[320];
		snprintf(msg, sizeof(msg), "bad request frame: %s", err);
		control_send(0, 0, msg, NULL);
		event_active(od->ctl_ev, EV_READ, 0);
		return;
	}
	if (m.type != OP_MSG_REQUEST) {
		control_send(m.id, 0, "expected a request frame", NULL);
	} else {
		int dup = 0;
		for (int i = 0; i < OD_CTL_DEDUP; i++)
			if (od->ctl_seen[i].reply && od->ctl_seen[i].id == m.id && m.id != 0) {
				bus_send_raw(od->ctl, od->ctl_seen[i].reply, od->ctl_seen[i].len, 0);
				dup = 1;
				break;
			}
		if (!dup)
			control_dispatch(m.id, op_json_str(m.body, "cmd", ""), op_json_arr(m.body, "args"), uid);
	}
	op_msg_clear(&m);
	if (!od->ctl_pending.active)
		event_active(od->ctl_ev, EV_READ, 0);
}
