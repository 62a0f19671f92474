/* control_cmd: what each control command does, one handler per row of
 * protocol/ctl.h's table. control.c owns the socket, who may ask what, and
 * back-pressure; it calls control_cmd_run once a request is admitted. The
 * ticket and action SQL lives in ticket.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include "supervisor/control.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"


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
	json_object_object_add(d, "uid", json_object_new_int(r->uid));
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
	json_object_object_add(d, "uid", json_object_new_int(r->uid));
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

int
control_cmd_run(struct ctl_req *r, enum op_ctl_cmd cmd)
{
	return handlers[cmd](r);
}
