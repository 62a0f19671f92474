/* opdash_model: what the panels show, built only from what a client of the
 * daemon can read: event rows (replayed from the ledger, then live), the
 * status reply and observe replies. Pure: no sockets, no terminal, so the
 * layout test drives it with canned events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/opdash.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define DM_FAULT_LINK_MS 120000  /* a ticket opened this long after a fault of its subject is its effect */
#define DM_MOVES_SHOWN 4         /* transfer-leader moves named in the action line */

static const char *const dm_step_names[] = {
#define DM_STEP_NAME(e, name) name,
	DM_STEP_KINDS(DM_STEP_NAME)
#undef DM_STEP_NAME
};

const char *
dm_step_name(enum dm_step_kind k)
{
	return k < DM_STEP_COUNT ? dm_step_names[k] : "?";
}

void
dm_init(struct dm_state *d)
{
	memset(d, 0, sizeof(*d));
	op_strlcpy(d->conn_error, "connecting", sizeof(d->conn_error));
}

void
dm_free(struct dm_state *d)
{
	json_object_put(d->obs);
	d->obs = NULL;
}

void
dm_reset_events(struct dm_state *d)
{
	d->last_seq = 0;
	d->nt = d->nf = 0;
	memset(d->t, 0, sizeof(d->t));
	memset(d->f, 0, sizeof(d->f));
}

/* RFC 3339 as the daemon writes it ("2026-11-28T20:42:04.753Z"), or ms. */
static int64_t
dm_ts_ms(json_object *ev)
{
	json_object *ts;
	struct tm tm;
	int ms = 0;

	if (!json_object_object_get_ex(ev, "ts", &ts))
		return 0;
	if (json_object_is_type(ts, json_type_int))
		return json_object_get_int64(ts);
	const char *s = json_object_get_string(ts);
	memset(&tm, 0, sizeof(tm));
	const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (rest == NULL)
		return 0;
	if (*rest == '.') {
		int digits = 0;
		for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*rest - '0');
		for (; digits < 3; digits++)
			ms *= 10;
	}
	return (int64_t)timegm(&tm) * 1000 + ms;
}

void
dm_fmt_since(char *buf, size_t len, int64_t t0_ms, int64_t ts_ms)
{
	double s = (double)(ts_ms - t0_ms) / 1000.0;

	if (s < 0)
		s = 0;
	if (s < 1000)
		snprintf(buf, len, "+%.1fs", s);
	else
		snprintf(buf, len, "+%.0fm", s / 60);
}

int
dm_ticket_closed(const struct dm_ticket *t)
{
	static const char *const closed[] = {"resolved", "escalated", "cleared", "rejected"};

	for (size_t i = 0; i < OP_ARRAY_LEN(closed); i++)
		if (strcmp(t->status, closed[i]) == 0)
			return 1;
	return 0;
}

struct dm_ticket *
dm_ticket(struct dm_state *d, int64_t id)
{
	for (int i = 0; i < d->nt; i++)
		if (d->t[i].id == id)
			return &d->t[i];
	return NULL;
}

/* A slot for a new ticket: the oldest closed one goes when full, else the oldest. */
static struct dm_ticket *
dm_ticket_new(struct dm_state *d, int64_t id)
{
	int victim = -1;

	if (d->nt < DM_MAX_TICKETS) {
		victim = d->nt++;
	} else {
		for (int i = 0; i < d->nt && victim < 0; i++)
			if (dm_ticket_closed(&d->t[i]))
				victim = i;
		if (victim < 0)
			victim = 0;
		memmove(&d->t[victim], &d->t[victim + 1], sizeof(d->t[0]) * (size_t)(d->nt - victim - 1));
		victim = d->nt - 1;
	}
	memset(&d->t[victim], 0, sizeof(d->t[0]));
	d->t[victim].id = id;
	return &d->t[victim];
}

static struct dm_step *
dm_step_add(struct dm_ticket *t, enum dm_step_kind k, int64_t ts)
{
	if (t->nsteps == DM_MAX_STEPS) {
		/* keep the diagnosis (first step) and the most recent ones */
		memmove(&t->steps[1], &t->steps[2], sizeof(t->steps[0]) * (DM_MAX_STEPS - 2));
		t->nsteps--;
	}
	struct dm_step *s = &t->steps[t->nsteps++];
	memset(s, 0, sizeof(*s));
	s->kind = k;
	s->ts_ms = ts;
	return s;
}

/* "reset_counter key=drift" */
static void
dm_action_desc(json_object *data, char *buf, size_t len)
{
	json_object *params = op_json_obj(data, "params");
	size_t n = (size_t)snprintf(buf, len, "%s", op_json_str(data, "action", "?"));

	if (params == NULL)
		return;
	json_object_object_foreach(params, k, v)
	{
		if (n >= len)
			return;
		const char *s = v == NULL ? "null" : json_object_get_string(v);
		n += (size_t)snprintf(buf + n, len - n, " %s=%s", k, s);
	}
}

/* The figures that say what an action did. */
static void
dm_action_result(json_object *res, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	if (res == NULL)
		return;
	if (json_object_object_get_ex(res, "planned", NULL)) {
		json_object *moves = op_json_arr(res, "moves");
		n = (size_t)snprintf(buf, len, "%lld transfer-leader moves accepted by PD (planned %lld, "
		    "rejected %lld)", (long long)op_json_int(res, "accepted", 0),
		    (long long)op_json_int(res, "planned", 0), (long long)op_json_int(res, "rejected", 0));
		for (size_t i = 0; moves && i < json_object_array_length(moves) && i < DM_MOVES_SHOWN &&
		    n < len; i++) {
			json_object *m = json_object_array_get_idx(moves, i);
			n += (size_t)snprintf(buf + n, len - n, "%s region %lld: %lld->%lld", i ? "," : ":",
			    (long long)op_json_int(m, "region_id", 0),
			    (long long)op_json_int(m, "from_store_id", 0),
			    (long long)op_json_int(m, "to_store_id", 0));
		}
		if (moves && json_object_array_length(moves) > DM_MOVES_SHOWN && n < len)
			snprintf(buf + n, len - n, ", ...");
		return;
	}
	if (json_object_object_get_ex(res, "http_status", NULL)) {
		const char *url = op_json_str(res, "url", "");
		const char *path = strstr(url, "://") ? strchr(strstr(url, "://") + 3, '/') : NULL;
		snprintf(buf, len, "%s %s on %s: HTTP %lld", op_json_str(res, "method", ""),
		    path ? path : url, op_json_str(res, "node", "?"),
		    (long long)op_json_int(res, "http_status", 0));
		return;
	}
	if (json_object_is_type(res, json_type_string))
		snprintf(buf, len, "%s", json_object_get_string(res));
}

/* The fault a ticket came from: same subject and target first, else the
 * latest fault of the subject injected shortly before (a Redis write stall
 * drifts every busy key, a killed store under-replicates regions). */
static void
dm_link_fault(struct dm_state *d, struct dm_ticket *t)
{
	const struct dm_fault *best = NULL;
	int exact = 0;

	for (int i = 0; i < d->nf; i++) {
		const struct dm_fault *f = &d->f[i];
		if (strcmp(f->subject, t->subject) != 0 || f->started_ms > t->opened_ms ||
		    t->opened_ms - f->started_ms > DM_FAULT_LINK_MS)
			continue;
		int ex = strcmp(f->target, t->entity) == 0;
		if (best == NULL || (ex && !exact) || (ex == exact && f->started_ms > best->started_ms)) {
			best = f;
			exact = ex;
		}
	}
	t->t0_ms = best ? best->started_ms : t->opened_ms;
	op_strlcpy(t->fault, best ? best->fault : "", sizeof(t->fault));
}

static void
dm_on_fault(struct dm_state *d, const char *type, json_object *data, int64_t ts)
{
	int64_t id = op_json_int(data, "fault_id", 0);

	if (strcmp(type, "fault_cleared") == 0) {
		for (int i = 0; i < d->nf; i++)
			if (d->f[i].id == id)
				d->f[i].ended_ms = op_json_int(data, "ended_at", ts);
		return;
	}
	if (d->nf == DM_MAX_FAULTS) {
		memmove(&d->f[0], &d->f[1], sizeof(d->f[0]) * (DM_MAX_FAULTS - 1));
		d->nf--;
	}
	struct dm_fault *f = &d->f[d->nf++];
	memset(f, 0, sizeof(*f));
	f->id = id;
	f->started_ms = op_json_int(data, "started_at", ts);
	op_strlcpy(f->fault, op_json_str(data, "fault", "?"), sizeof(f->fault));
	op_strlcpy(f->subject, op_json_str(data, "subject", ""), sizeof(f->subject));
	op_strlcpy(f->target, op_json_str(data, "target", ""), sizeof(f->target));
}

static void
dm_on_ticket_open(struct dm_state *d, json_object *ev, json_object *data, int64_t ts, int reopened)
{
	int64_t id = op_json_int(ev, "ticket", 0);
	struct dm_ticket *t = dm_ticket(d, id);

	if (t == NULL)
		t = dm_ticket_new(d, id);
	op_strlcpy(t->subject, op_json_str(ev, "subject", ""), sizeof(t->subject));
	op_strlcpy(t->invariant, op_json_str(ev, "invariant", ""), sizeof(t->invariant));
	op_strlcpy(t->entity, op_json_str(ev, "entity", ""), sizeof(t->entity));
	/* a reopening does not repeat the severity */
	if (op_json_str(data, "severity", NULL) != NULL || t->severity[0] == '\0')
		op_strlcpy(t->severity, op_json_str(data, "severity", "warning"), sizeof(t->severity));
	op_strlcpy(t->message, op_json_str(data, "message", ""), sizeof(t->message));
	op_strlcpy(t->status, "open", sizeof(t->status));
	int64_t prev_t0 = t->t0_ms;
	t->opened_ms = ts;
	t->closed_ms = 0;
	t->executed_ms = 0;
	t->awaiting_action = 0;
	dm_link_fault(d, t);
	if (reopened) {
		/* A new fault since the last episode: tell this one from the start.
		 * The same fault still at work (the violation came back): go on with
		 * the story, so what was done before stays on the screen. */
		if (t->t0_ms > prev_t0 && strcmp(t->fault, "") != 0) {
			t->nsteps = 0;
			t->actions = 0;
		} else if (prev_t0 > 0) {
			t->t0_ms = prev_t0;
		}
		struct dm_step *s = dm_step_add(t, DM_STEP_END, ts);
		op_strlcpy(s->word, "reopened", sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "reopened (flap %lld of %lld): %s",
		    (long long)op_json_int(data, "flaps", 0), (long long)op_json_int(data, "flap_max", 0),
		    t->message);
	}
}

static void
dm_on_ticket_event(struct dm_ticket *t, const char *type, json_object *data, int64_t ts)
{
	char desc[DM_TEXT], res[DM_TEXT];
	struct dm_step *s;

	t->last_ms = ts;
	if (strcmp(type, "diagnosis") == 0) {
		const char *model = op_json_str(data, "model", NULL);
		const char *fb = op_json_str(data, "fallback_reason", NULL);
		s = dm_step_add(t, DM_STEP_DIAGNOSIS, ts);
		op_strlcpy(s->word, op_json_str(data, "backend", "?"), sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s%s%s, confidence %.0f%%%s%s: %s",
		    op_json_str(data, "backend", "?"), model ? " " : "", model ? model : "",
		    op_json_double(data, "confidence", 0) * 100.0, fb ? ", fallback: " : "", fb ? fb : "",
		    op_json_str(data, "primary_diagnosis", ""));
		op_strlcpy(t->status, "diagnosed", sizeof(t->status));
	} else if (strcmp(type, "action_awaiting_approval") == 0) {
		dm_action_desc(data, desc, sizeof(desc));
		s = dm_step_add(t, DM_STEP_AWAITING, ts);
		op_strlcpy(s->word, "waiting", sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s waits for approval (action %lld): %s", desc,
		    (long long)op_json_int(data, "action_id", 0), op_json_str(data, "reason", ""));
		t->awaiting_action = op_json_int(data, "action_id", 0);
		op_strlcpy(t->awaiting_desc, desc, sizeof(t->awaiting_desc));
		op_strlcpy(t->status, "awaiting_approval", sizeof(t->status));
	} else if (strcmp(type, "action_approved") == 0 || strcmp(type, "action_rejected") == 0 ||
	    strcmp(type, "action_approval_expired") == 0) {
		int ok = strcmp(type, "action_approved") == 0;
		dm_action_desc(data, desc, sizeof(desc));
		s = dm_step_add(t, ok ? DM_STEP_APPROVED : DM_STEP_REJECTED, ts);
		const char *word = ok ? "approved" : strcmp(type, "action_rejected") == 0 ? "rejected"
		    : "expired";
		op_strlcpy(s->word, word, sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s %s%s%s", desc, word,
		    op_json_str(data, "by", NULL) ? " by " : "", op_json_str(data, "by", ""));
		if (op_json_int(data, "action_id", 0) == t->awaiting_action)
			t->awaiting_action = 0;
	} else if (strcmp(type, "action_skipped") == 0) {
		dm_action_desc(data, desc, sizeof(desc));
		s = dm_step_add(t, DM_STEP_SKIPPED, ts);
		op_strlcpy(s->word, "skipped", sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s not run: %s", desc, op_json_str(data, "reason", ""));
		if (op_json_int(data, "action_id", 0) == t->awaiting_action)
			t->awaiting_action = 0;
	} else if (strcmp(type, "action_dispatched") == 0) {
		dm_action_desc(data, desc, sizeof(desc));
		s = dm_step_add(t, DM_STEP_ACTION, ts);
		op_strlcpy(s->word, "running", sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s (%s mode, attempt %lld)", desc,
		    op_json_str(data, "level", "execute"), (long long)op_json_int(data, "attempt", 1));
		if (op_json_int(data, "action_id", 0) == t->awaiting_action)
			t->awaiting_action = 0;
		op_strlcpy(t->status, "acting", sizeof(t->status));
	} else if (strcmp(type, "action_executed") == 0) {
		dm_action_desc(data, desc, sizeof(desc));
		dm_action_result(op_json_obj(data, "result"), res, sizeof(res));
		/* the dispatched line becomes the executed one */
		s = t->nsteps > 0 && t->steps[t->nsteps - 1].kind == DM_STEP_ACTION ?
		    &t->steps[t->nsteps - 1] : dm_step_add(t, DM_STEP_ACTION, ts);
		s->ts_ms = ts;
		op_strlcpy(s->word, "executed", sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s executed in %lld ms%s%s", desc,
		    (long long)op_json_int(data, "duration_ms", 0), res[0] ? "\n" : "", res);
		t->executed_ms = ts;
		t->actions++;
		op_strlcpy(t->status, "verifying", sizeof(t->status));
	} else if (strcmp(type, "action_failed") == 0 || strcmp(type, "action_unknown") == 0 ||
	    strcmp(type, "action_retry") == 0) {
		dm_action_desc(data, desc, sizeof(desc));
		s = t->nsteps > 0 && t->steps[t->nsteps - 1].kind == DM_STEP_ACTION &&
		    strcmp(t->steps[t->nsteps - 1].word, "running") == 0 ?
		    &t->steps[t->nsteps - 1] : dm_step_add(t, DM_STEP_FAILED, ts);
		s->kind = DM_STEP_FAILED;
		s->ts_ms = ts;
		const char *word = strcmp(type, "action_failed") == 0 ? "failed" :
		    strcmp(type, "action_unknown") == 0 ? "unknown" : "retry";
		op_strlcpy(s->word, word, sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s %s: %s", desc, word,
		    op_json_str(data, "error", op_json_str(data, "reason", "")));
	} else if (strcmp(type, "verification") == 0) {
		json_object *fig = op_json_obj(data, "figures");
		s = dm_step_add(t, DM_STEP_VERIFY, ts);
		op_strlcpy(s->word, op_json_str(data, "result", "?"), sizeof(s->word));
		snprintf(s->text, sizeof(s->text), "%s: %s\nafter %.1f s (verify_delay %.1f s, settle "
		    "%.1f s), %lld of %lld checks healthy", op_json_str(data, "result", "?"),
		    op_json_str(fig, "message", op_json_str(data, "reason", "")),
		    (double)op_json_int(fig, "waited_ms", 0) / 1000.0,
		    (double)op_json_int(fig, "verify_delay_ms", 0) / 1000.0,
		    (double)op_json_int(fig, "settle_ms", 0) / 1000.0,
		    (long long)op_json_int(fig, "healthy_checks", 0), (long long)op_json_int(fig, "checks", 0));
		t->executed_ms = 0;
	} else if (strncmp(type, "ticket_", 7) == 0 && (strcmp(type + 7, "resolved") == 0 ||
	    strcmp(type + 7, "escalated") == 0 || strcmp(type + 7, "cleared") == 0 ||
	    strcmp(type + 7, "rejected") == 0)) {
		s = dm_step_add(t, DM_STEP_END, ts);
		op_strlcpy(s->word, type + 7, sizeof(s->word));
		op_strlcpy(t->status, type + 7, sizeof(t->status));
		const char *why = op_json_str(data, "reason", NULL);
		if (why == NULL && strcmp(type + 7, "resolved") == 0)
			why = "the fix held: ticket closed";
		snprintf(s->text, sizeof(s->text), "%s%s%s", type + 7, why ? ": " : "", why ? why : "");
		t->closed_ms = ts;
		t->executed_ms = 0;
		t->awaiting_action = 0;
	} else if (strcmp(type, "ticket_held") == 0) {
		op_strlcpy(t->status, "held", sizeof(t->status));
	} else if (strcmp(type, "ticket_unheld") == 0 || strcmp(type, "ticket_acked") == 0) {
		if (strcmp(t->status, "held") == 0)
			op_strlcpy(t->status, "open", sizeof(t->status));
	}
}

void
dm_apply_event(struct dm_state *d, json_object *ev)
{
	int64_t seq = op_json_int(ev, "seq", 0);
	const char *type = op_json_str(ev, "type", "");
	json_object *data = op_json_obj(ev, "data");
	int64_t ts = dm_ts_ms(ev);

	if (seq <= d->last_seq)
		return;
	d->last_seq = seq;
	if (strcmp(type, "fault_injected") == 0 || strcmp(type, "fault_cleared") == 0) {
		dm_on_fault(d, type, data, ts);
	} else if (strcmp(type, "ticket_opened") == 0 || strcmp(type, "ticket_reopened") == 0) {
		dm_on_ticket_open(d, ev, data, ts, strcmp(type, "ticket_reopened") == 0);
	} else if (strcmp(type, "mode_changed") == 0) {
		op_strlcpy(d->mode, op_json_str(data, "to", d->mode), sizeof(d->mode));
	} else if (strcmp(type, "kill_switch") == 0) {
		d->kill_switch = op_json_bool(data, "on", d->kill_switch);
	} else if (op_json_int(ev, "ticket", 0) > 0) {
		struct dm_ticket *t = dm_ticket(d, op_json_int(ev, "ticket", 0));
		if (t != NULL)
			dm_on_ticket_event(t, type, data, ts);
	}
}

void
dm_apply_status(struct dm_state *d, json_object *st)
{
	json_object *ws = op_json_arr(st, "workers"), *ts = op_json_arr(st, "tickets");
	json_object *sf = op_json_obj(st, "safety"), *b = op_json_arr(sf, "budgets");
	json_object *lim = op_json_obj(sf, "limits"), *dz = op_json_obj(sf, "destructive_today");
	static const char *const closed[] = {"resolved", "escalated", "cleared", "rejected"};

	d->have_status = 1;
	op_strlcpy(d->version, op_json_str(st, "version", "?"), sizeof(d->version));
	op_strlcpy(d->mode, op_json_str(st, "mode", "?"), sizeof(d->mode));
	d->kill_switch = op_json_bool(st, "kill_switch", 0);
	d->workers_total = ws ? (int)json_object_array_length(ws) : 0;
	d->workers_ready = 0;
	for (int i = 0; i < d->workers_total; i++)
		if (strcmp(op_json_str(json_object_array_get_idx(ws, (size_t)i), "state", ""), "ready") == 0)
			d->workers_ready++;
	d->tickets_open = 0;
	for (size_t i = 0; ts && i < json_object_array_length(ts); i++) {
		json_object *t = json_object_array_get_idx(ts, i);
		int is_closed = 0;
		for (size_t k = 0; k < OP_ARRAY_LEN(closed); k++)
			is_closed |= strcmp(op_json_str(t, "status", ""), closed[k]) == 0;
		if (!is_closed)
			d->tickets_open += (int)op_json_int(t, "count", 0);
	}
	/* budgets left: the subject's bucket, the tightest action bucket, the
	 * destructive cap; scopes are "subject:S" and "action:S/ACTION" */
	size_t n = (size_t)snprintf(d->budgets, sizeof(d->budgets), "budgets");
	double tight = 2;
	json_object *tb = NULL;
	for (size_t i = 0; b && i < json_object_array_length(b); i++) {
		json_object *x = json_object_array_get_idx(b, i);
		const char *scope = op_json_str(x, "scope", "");
		double cap = op_json_double(x, "capacity", 0), left = op_json_double(x, "left", 0);
		if (strncmp(scope, "subject:", 8) == 0 && n < sizeof(d->budgets))
			n += (size_t)snprintf(d->budgets + n, sizeof(d->budgets) - n, " subject %.0f/%.0f",
			    left, cap);
		else if (cap > 0 && left / cap < tight) {
			tight = left / cap;
			tb = x;
		}
	}
	if (tb != NULL && n < sizeof(d->budgets)) {
		const char *scope = op_json_str(tb, "scope", "?"), *slash = strrchr(scope, '/');
		n += (size_t)snprintf(d->budgets + n, sizeof(d->budgets) - n, " %s %.0f/%lld",
		    slash ? slash + 1 : scope, op_json_double(tb, "left", 0),
		    (long long)op_json_int(tb, "capacity", 0));
	}
	if (op_json_int(dz, "cap", 0) > 0 && n < sizeof(d->budgets))
		n += (size_t)snprintf(d->budgets + n, sizeof(d->budgets) - n, " destructive %lld/%lld",
		    (long long)op_json_int(dz, "left", 0), (long long)op_json_int(dz, "cap", 0));
	if (n == strlen("budgets"))
		snprintf(d->budgets, sizeof(d->budgets), "%s", op_json_int(lim, "per_action", 0) == 0 &&
		    op_json_int(lim, "per_subject", 0) == 0 ? "budgets off" : "budgets full");
}

void
dm_apply_observe(struct dm_state *d, const char *subject, json_object *obs, const char *err)
{
	op_strlcpy(d->subject, subject, sizeof(d->subject));
	if (obs == NULL) {
		snprintf(d->obs_error, sizeof(d->obs_error), "%s", err ? err : "no observation");
		return;
	}
	json_object_put(d->obs);
	d->obs = json_object_get(obs);
	d->obs_error[0] = '\0';
	d->obs_ms = op_json_int(obs, "at_ms", op_wall_ms());
}

int
dm_critical_open(const struct dm_state *d)
{
	for (int i = 0; i < d->nt; i++)
		if (!dm_ticket_closed(&d->t[i]) && strcmp(d->t[i].severity, "critical") == 0)
			return 1;
	return 0;
}
