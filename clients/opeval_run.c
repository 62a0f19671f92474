/* opeval_run: the trial loop. Each trial waits until the subject is healthy
 * (no live ticket, no active fault, no violation for the settle time, the
 * cooldown since the previous trial), injects through chaos, follows the
 * ledger's events until a verdict, and scores what it saw. A trial that
 * cannot start is recorded as not_started with the reason, never dropped. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "clients/client.h"
#include "clients/opeval.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define RUN_PAGE 1000 /* events fetched per request */

int
eval_ctl(struct eval_events *e, const char *cmd, json_object *args, json_object **result,
    char *err, size_t errlen)
{
	json_object *reply = NULL;

	*result = NULL;
	if (client_request(e->ctl, cmd, args, &reply) != 0) {
		snprintf(err, errlen, "%s: operatord did not answer", cmd);
		return -1;
	}
	if (!op_json_bool(reply, "ok", 0)) {
		snprintf(err, errlen, "%s", op_json_str(reply, "error", "refused"));
		json_object_put(reply);
		return -1;
	}
	json_object *r = NULL;
	json_object_object_get_ex(reply, "result", &r);
	*result = json_object_get(r);
	json_object_put(reply);
	return 0;
}

int
eval_events_open(struct eval_events *e, const char *runtime_dir, char *err, size_t errlen)
{
	memset(e, 0, sizeof(*e));
	e->runtime_dir = runtime_dir;
	if ((e->ctl = client_connect(runtime_dir, "ctl.sock")) < 0) {
		snprintf(err, errlen, "operatord is not running under %s", runtime_dir);
		return -1;
	}
	e->all = json_object_new_array();
	return eval_events_poll(e, err, errlen);
}

void
eval_events_close(struct eval_events *e)
{
	if (e->ctl >= 0)
		close(e->ctl);
	json_object_put(e->all);
	e->all = NULL;
}

/* Ledger rows may carry data as text: make it an object once, here. */
static void
run_norm_event(json_object *ev)
{
	json_object *d;

	if (json_object_object_get_ex(ev, "data", &d) && json_object_is_type(d, json_type_string)) {
		char perr[64];
		json_object *p = op_json_parse(json_object_get_string(d),
		    (size_t)json_object_get_string_len(d), perr, sizeof(perr));
		json_object_object_add(ev, "data", p ? p : json_object_new_object());
	}
}

int
eval_events_poll(struct eval_events *e, char *err, size_t errlen)
{
	for (;;) {
		json_object *args = json_object_new_array(), *rows;
		char since[32], lim[16];
		snprintf(since, sizeof(since), "%lld", (long long)e->last);
		snprintf(lim, sizeof(lim), "%d", RUN_PAGE);
		json_object_array_add(args, json_object_new_string(since));
		json_object_array_add(args, json_object_new_string(lim));
		if (eval_ctl(e, "events", args, &rows, err, errlen) != 0)
			return -1;
		size_t n = json_object_is_type(rows, json_type_array) ? json_object_array_length(rows) : 0;
		for (size_t i = 0; i < n; i++) {
			json_object *ev = json_object_array_get_idx(rows, i);
			int64_t seq = op_json_int(ev, "seq", 0);
			if (seq <= e->last)
				continue;
			e->last = seq;
			run_norm_event(ev);
			json_object_array_add(e->all, json_object_get(ev));
		}
		json_object_put(rows);
		if (n < RUN_PAGE)
			return 0;
	}
}

/* ------------------------------------------------------------------ */

struct run_ctx {
	const struct eval_campaign *c;
	const struct eval_opts *o;
	struct eval_events ev;
	int64_t prev_end_mono;  /* the previous trial's verdict, for the cooldown */
};

static void
run_log(const struct run_ctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
run_log(const struct run_ctx *r, const char *fmt, ...)
{
	va_list ap;
	char ts[OP_TS_LEN];

	(void)r;
	op_rfc3339(op_wall_ms(), ts);
	fprintf(stderr, "opeval %s: ", ts);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Newest ts of a violation or ticket opening for the subject: the start of
 * the current clean stretch. */
static int64_t
run_last_bad(struct eval_events *e, const char *subject)
{
	for (size_t i = json_object_array_length(e->all); i-- > 0;) {
		json_object *ev = json_object_array_get_idx(e->all, i);
		const char *type = op_json_str(ev, "type", "");
		if (strcmp(op_json_str(ev, "subject", ""), subject) == 0 &&
		    (!strcmp(type, "violation") || !strcmp(type, "ticket_opened") ||
			!strcmp(type, "ticket_reopened")))
			return op_json_int(ev, "ts", 0);
	}
	return 0;
}

/* Live tickets of the campaign's subject; 0 when it cannot tell. */
static int
run_live_tickets(struct run_ctx *r)
{
	json_object *rows, *args = json_object_new_array();
	char err[256];
	int n = 0;

	json_object_array_add(args, json_object_new_string("open"));
	if (eval_ctl(&r->ev, "tickets", args, &rows, err, sizeof(err)) != 0)
		return 0;
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++)
		n += strcmp(op_json_str(json_object_array_get_idx(rows, i), "subject", ""),
		    r->c->subject) == 0;
	json_object_put(rows);
	return n;
}

/* Why the subject is not ready now, or NULL. */
static const char *
run_busy(struct run_ctx *r, char *buf, size_t len, char *err, size_t errlen)
{
	json_object *rows, *args;
	const char *why = NULL;

	if (eval_events_poll(&r->ev, err, errlen) != 0)
		return "operatord stopped answering";
	args = json_object_new_array();
	json_object_array_add(args, json_object_new_string("open"));
	if (eval_ctl(&r->ev, "tickets", args, &rows, err, errlen) != 0)
		return "tickets: no answer";
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *t = json_object_array_get_idx(rows, i);
		if (strcmp(op_json_str(t, "subject", ""), r->c->subject) == 0) {
			snprintf(buf, len, "ticket %lld (%s %s) is %s", (long long)op_json_int(t, "id", 0),
			    op_json_str(t, "invariant", "?"), op_json_str(t, "entity", "?"),
			    op_json_str(t, "status", "?"));
			why = buf;
			break;
		}
	}
	json_object_put(rows);
	if (why)
		return why;
	args = json_object_new_array();
	json_object_array_add(args, json_object_new_string("list"));
	if (eval_ctl(&r->ev, "chaos", args, &rows, err, errlen) != 0)
		return "chaos list: no answer";
	if (rows && json_object_array_length(rows) > 0) {
		json_object *f = json_object_array_get_idx(rows, 0);
		snprintf(buf, len, "fault %s on %s is still active", op_json_str(f, "fault", "?"),
		    op_json_str(f, "target", "?"));
		why = buf;
	}
	json_object_put(rows);
	if (why)
		return why;
	int64_t bad = run_last_bad(&r->ev, r->c->subject), now = op_wall_ms();
	if (bad && now - bad < r->c->settle_ms) {
		snprintf(buf, len, "a violation %.1f s ago (settle %.0f s)", (double)(now - bad) / 1000,
		    (double)r->c->settle_ms / 1000);
		return buf;
	}
	if (r->prev_end_mono && op_mono_ms() - r->prev_end_mono < r->c->cooldown_ms) {
		snprintf(buf, len, "cooldown");
		return buf;
	}
	return NULL;
}

/* 0 when ready; -1 with why in err when the ready time ran out. */
static int
run_wait_ready(struct run_ctx *r, char *err, size_t errlen)
{
	int64_t deadline = op_mono_ms() + r->c->ready_ms;
	char buf[512], e2[256] = "";
	const char *why;

	while ((why = run_busy(r, buf, sizeof(buf), e2, sizeof(e2))) != NULL) {
		if (op_mono_ms() >= deadline) {
			snprintf(err, errlen, "not healthy after %.0f s: %s%s%s",
			    (double)r->c->ready_ms / 1000, why, e2[0] ? ": " : "", e2);
			return -1;
		}
		op_sleep_ms(EVAL_POLL_MS);
	}
	return 0;
}

/* The fault_injected event of the injection that started at started_at. */
static json_object *
run_find_injected(struct eval_events *e, const char *fault, int64_t started_at, int64_t from)
{
	for (size_t i = json_object_array_length(e->all); i-- > 0;) {
		json_object *ev = json_object_array_get_idx(e->all, i), *d = op_json_obj(ev, "data");
		if (op_json_int(ev, "seq", 0) <= from)
			break;
		if (!strcmp(op_json_str(ev, "type", ""), "fault_injected") &&
		    !strcmp(op_json_str(d, "fault", ""), fault) &&
		    op_json_int(d, "started_at", -1) == started_at)
			return ev;
	}
	return NULL;
}

static int64_t
run_fault_ended(struct eval_events *e, const char *fault, int64_t started_at, int64_t from)
{
	for (size_t i = json_object_array_length(e->all); i-- > 0;) {
		json_object *ev = json_object_array_get_idx(e->all, i), *d = op_json_obj(ev, "data");
		if (op_json_int(ev, "seq", 0) <= from)
			break;
		if (!strcmp(op_json_str(ev, "type", ""), "fault_cleared") &&
		    !strcmp(op_json_str(d, "fault", ""), fault) &&
		    op_json_int(d, "started_at", -1) == started_at)
			return op_json_int(d, "ended_at", op_json_int(ev, "ts", 1));
	}
	return 0;
}

static json_object *
run_trial_new(const struct run_ctx *r, const struct eval_fault *f, int n, int baseline)
{
	json_object *t = json_object_new_object();
	json_object *p = json_object_new_array();

	op_json_set_str(t, "fault", f->name);
	op_json_set_str(t, "subject", r->c->subject);
	op_json_set_int(t, "trial", n);
	json_object_object_add(t, "baseline", json_object_new_boolean(baseline));
	for (size_t i = 0; i < f->nparams; i++)
		json_object_array_add(p, json_object_new_string(f->params[i]));
	json_object_object_add(t, "params", p);
	json_object_object_add(t, "ticket", NULL);
	json_object_object_add(t, "injected_at", NULL);
	json_object_object_add(t, "ttd_s", NULL);
	json_object_object_add(t, "ttf_s", NULL);
	json_object_object_add(t, "false_tickets", json_object_new_array());
	return t;
}

static const char *
run_secs(json_object *t, const char *key, char *buf, size_t len)
{
	json_object *v;

	if (!json_object_object_get_ex(t, key, &v) || v == NULL)
		return "-";
	snprintf(buf, len, "%.1fs", json_object_get_double(v));
	return buf;
}

static void
run_not_started(json_object *t, const char *why)
{
	op_json_set_str(t, "status", eval_status_names[EVAL_NOT_STARTED]);
	op_json_set_str(t, "why", why);
}

/* Whether the trial has its verdict (and the fault is gone, so every ticket
 * it caused is in the window). */
static int
run_done(struct run_ctx *r, const struct eval_truth *tr, int baseline, int64_t ended)
{
	json_object *tmp = json_object_new_object();
	const char *st;
	int done;

	eval_score(r->ev.all, tr, r->ev.last, baseline, tmp);
	st = op_json_str(tmp, "status", "");
	if (baseline)
		done = !strcmp(st, "cleared") || !strcmp(st, "fixed") ||
		    (!strcmp(st, "not_detected") && ended && op_wall_ms() - ended > EVAL_DETECT_GRACE_MS);
	else if (!strcmp(st, "not_detected"))
		done = ended && op_wall_ms() - ended > EVAL_DETECT_GRACE_MS;
	else
		done = ended && (!strcmp(st, "fixed") || !strcmp(st, "escalated") ||
		    !strcmp(st, "cleared") || !strcmp(st, "unproven"));
	json_object_put(tmp);
	return done;
}

static void
run_trial(struct run_ctx *r, const struct eval_fault *f, int n, int baseline, json_object *out)
{
	json_object *t = run_trial_new(r, f, n, baseline), *args, *res;
	char err[512] = "";
	struct eval_truth tr;

	json_object_array_add(out, t);
	if (run_wait_ready(r, err, sizeof(err)) != 0) {
		run_log(r, "%s trial %d not started: %s", f->name, n, err);
		run_not_started(t, err);
		r->prev_end_mono = op_mono_ms();
		return;
	}
	memset(&tr, 0, sizeof(tr));
	tr.from_seq = r->ev.last;
	args = json_object_new_array();
	json_object_array_add(args, json_object_new_string("inject"));
	json_object_array_add(args, json_object_new_string(f->name));
	for (size_t i = 0; i < f->nparams; i++)
		json_object_array_add(args, json_object_new_string(f->params[i]));
	if (eval_ctl(&r->ev, "chaos", args, &res, err, sizeof(err)) != 0) {
		char why[600];
		snprintf(why, sizeof(why), "chaos refused the injection: %s", err);
		run_log(r, "%s trial %d not started: %s", f->name, n, why);
		run_not_started(t, why);
		r->prev_end_mono = op_mono_ms();
		eval_events_poll(&r->ev, err, sizeof(err));
		return;
	}
	int64_t started = op_json_int(res, "started_at", 0);
	json_object *inj = NULL;
	int64_t until = op_mono_ms() + 10000;
	while ((inj = run_find_injected(&r->ev, f->name, started, tr.from_seq)) == NULL &&
	    op_mono_ms() < until) {
		op_sleep_ms(EVAL_POLL_MS);
		if (eval_events_poll(&r->ev, err, sizeof(err)) != 0)
			break;
	}
	json_object_put(res);
	if (inj == NULL) {
		run_not_started(t, "chaos answered but no fault_injected event reached the ledger");
		return;
	}
	json_object *d = op_json_obj(inj, "data");
	tr.fault = f->name;
	tr.subject = op_json_str(inj, "subject", r->c->subject);
	tr.target = op_json_str(d, "target", "");
	op_strlcpy(tr.expected, op_json_str(d, "expected", ""), sizeof(tr.expected));
	op_strlcpy(tr.collateral, op_json_str(d, "collateral", ""), sizeof(tr.collateral));
	op_strlcpy(tr.remedies, op_json_str(d, "remedies", ""), sizeof(tr.remedies));
	tr.started_at = started;
	op_json_set_str(t, "target", tr.target);
	op_json_set_int(t, "injected_at", op_json_int(inj, "ts", started));
	op_json_set_int(t, "fault_started_at", started);
	op_json_set_int(t, "inject_seq", op_json_int(inj, "seq", 0));
	op_json_set_str(t, "expected", tr.expected);
	op_json_set_str(t, "collateral", tr.collateral);
	op_json_set_str(t, "remedies", tr.remedies);
	run_log(r, "%s trial %d%s: injected on %s", f->name, n, baseline ? " (baseline)" : "",
	    tr.target);
	int64_t deadline = op_mono_ms() + r->c->timeout_ms;
	for (;;) {
		tr.ended_at = run_fault_ended(&r->ev, f->name, started, tr.from_seq);
		if (run_done(r, &tr, baseline, tr.ended_at) || op_mono_ms() >= deadline)
			break;
		op_sleep_ms(EVAL_POLL_MS);
		if (eval_events_poll(&r->ev, err, sizeof(err)) != 0)
			break;
	}
	/* what the fault's end brings (a store back with no leaders) is its
	 * collateral too: follow until the subject has no live ticket */
	while (op_mono_ms() < deadline && run_live_tickets(r) > 0) {
		op_sleep_ms(EVAL_POLL_MS);
		if (eval_events_poll(&r->ev, err, sizeof(err)) != 0)
			break;
	}
	op_json_set_int(t, "to_seq", r->ev.last);
	json_object_object_del(t, "false_tickets");
	eval_score(r->ev.all, &tr, r->ev.last, baseline, t);
	r->prev_end_mono = op_mono_ms();
	char a[32], b[32];
	run_log(r, "%s trial %d%s: %s (ticket %lld, ttd %s, ttf %s)", f->name, n,
	    baseline ? " (baseline)" : "", op_json_str(t, "status", "?"),
	    (long long)op_json_int(t, "ticket", 0), run_secs(t, "ttd_s", a, sizeof(a)),
	    run_secs(t, baseline ? "self_heal_s" : "ttf_s", b, sizeof(b)));
}

static int
run_set_mode(struct run_ctx *r, const char *mode, char *err, size_t errlen)
{
	json_object *args = json_object_new_array(), *res;

	json_object_array_add(args, json_object_new_string(mode));
	if (eval_ctl(&r->ev, "mode", args, &res, err, errlen) != 0)
		return -1;
	json_object_put(res);
	return 0;
}

static void
run_campaign_pass(struct run_ctx *r, int baseline, json_object *out)
{
	for (size_t i = 0; i < r->c->nfaults; i++)
		for (int n = 1; n <= r->c->trials; n++)
			run_trial(r, &r->c->faults[i], n, baseline, out);
}

static json_object *
run_header(const struct eval_campaign *c, const struct eval_opts *o)
{
	json_object *rep = json_object_new_object(), *camp = json_object_new_object();
	struct utsname u;
	char ts[OP_TS_LEN], host[256] = "";

	op_json_set_str(camp, "name", c->name);
	op_json_set_str(camp, "subject", c->subject);
	op_json_set_int(camp, "trials_per_fault", c->trials);
	op_json_set_int(camp, "settle_ms", c->settle_ms);
	op_json_set_int(camp, "cooldown_ms", c->cooldown_ms);
	op_json_set_int(camp, "ready_ms", c->ready_ms);
	op_json_set_int(camp, "timeout_ms", c->timeout_ms);
	json_object *fl = json_object_new_array();
	for (size_t i = 0; i < c->nfaults; i++)
		json_object_array_add(fl, json_object_new_string(c->faults[i].name));
	json_object_object_add(camp, "faults", fl);
	json_object_object_add(rep, "campaign", camp);
	op_json_set_str(rep, "subject", c->subject);
	op_json_set_str(rep, "backend", o->backend ? o->backend : "rules");
	json_object_object_add(rep, "baseline", json_object_new_boolean(o->baseline));
	op_rfc3339(op_wall_ms(), ts);
	op_json_set_str(rep, "started", ts);
	if (uname(&u) == 0) {
		char m[700];
		gethostname(host, sizeof(host) - 1);
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		snprintf(m, sizeof(m), "%s %s %s, %ld CPUs", u.sysname, u.release, u.machine, ncpu);
		op_json_set_str(rep, "machine", m);
	}
	return rep;
}

int
eval_run(const struct eval_campaign *c, const struct eval_opts *o, json_object **report,
    char *err, size_t errlen)
{
	struct run_ctx r = {.c = c, .o = o};
	json_object *mode = NULL, *trials = json_object_new_array();
	json_object *base = json_object_new_array();
	char ts[OP_TS_LEN], e2[256];

	*report = NULL;
	if (eval_events_open(&r.ev, o->runtime_dir, err, errlen) != 0) {
		json_object_put(trials);
		json_object_put(base);
		return -1;
	}
	if (eval_ctl(&r.ev, "mode", NULL, &mode, err, errlen) != 0) {
		eval_events_close(&r.ev);
		json_object_put(trials);
		json_object_put(base);
		return -1;
	}
	char was[32];
	op_strlcpy(was, json_object_get_string(mode), sizeof(was));
	json_object_put(mode);
	json_object *rep = run_header(c, o);
	op_json_set_str(rep, "mode", was);
	if (!o->only_baseline)
		run_campaign_pass(&r, 0, trials);
	if (o->baseline) {
		/* the same faults with operatord watching but never acting */
		if (run_set_mode(&r, "observe", err, errlen) != 0) {
			eval_events_close(&r.ev);
			json_object_put(rep);
			json_object_put(trials);
			json_object_put(base);
			return -1;
		}
		r.prev_end_mono = op_mono_ms();
		run_campaign_pass(&r, 1, base);
		if (run_set_mode(&r, was, e2, sizeof(e2)) != 0)
			fprintf(stderr, "opeval: could not restore mode %s: %s\n", was, e2);
	}
	op_json_set_int(rep, "last_seq", r.ev.last);
	op_rfc3339(op_wall_ms(), ts);
	op_json_set_str(rep, "finished", ts);
	json_object_object_add(rep, "trials", trials);
	json_object_object_add(rep, "baseline_trials", base);
	eval_summarize(rep);
	eval_events_close(&r.ev);
	*report = rep;
	return 0;
}

/* ------------------------------------------------------------------ */

int
eval_soak(const char *runtime_dir, const char *subject, int64_t duration_ms,
    json_object **report, char *err, size_t errlen)
{
	struct eval_events e;
	int64_t end = op_mono_ms() + duration_ms, from, t0 = op_wall_ms();
	json_object *fp = json_object_new_array(), *rep = json_object_new_object();
	char ts[OP_TS_LEN];

	*report = NULL;
	if (eval_events_open(&e, runtime_dir, err, errlen) != 0) {
		json_object_put(fp);
		json_object_put(rep);
		return -1;
	}
	from = e.last;
	op_rfc3339(t0, ts);
	op_json_set_str(rep, "started", ts);
	while (op_mono_ms() < end) {
		op_sleep_ms(EVAL_POLL_MS * 4);
		if (eval_events_poll(&e, err, errlen) != 0)
			break;
	}
	for (size_t i = 0; i < json_object_array_length(e.all); i++) {
		json_object *ev = json_object_array_get_idx(e.all, i);
		const char *type = op_json_str(ev, "type", "");
		if (op_json_int(ev, "seq", 0) <= from || (subject && strcmp(op_json_str(ev, "subject",
		    ""), subject) != 0))
			continue;
		if (strcmp(type, "ticket_opened") && strcmp(type, "ticket_reopened"))
			continue;
		json_object *o = json_object_new_object();
		op_json_set_int(o, "ticket", op_json_int(ev, "ticket", 0));
		op_json_set_str(o, "event", type);
		op_json_set_str(o, "invariant", op_json_str(ev, "invariant", ""));
		op_json_set_str(o, "entity", op_json_str(ev, "entity", ""));
		json_object_object_add(o, "at_s", json_object_new_double(
		    (double)(op_json_int(ev, "ts", t0) - t0) / 1000));
		/* the violation that opened it carries the message and the figures */
		for (size_t k = i + 1; k-- > 0;) {
			json_object *v = json_object_array_get_idx(e.all, k), *d = op_json_obj(v, "data");
			if (strcmp(op_json_str(v, "type", ""), "violation") == 0 &&
			    strcmp(op_json_str(v, "invariant", ""), op_json_str(ev, "invariant", "")) == 0 &&
			    strcmp(op_json_str(v, "entity", ""), op_json_str(ev, "entity", "")) == 0) {
				op_json_set_str(o, "message", op_json_str(d, "message", ""));
				json_object_object_add(o, "evidence", json_object_get(op_json_obj(d, "evidence")));
				break;
			}
		}
		json_object_array_add(fp, o);
	}
	op_json_set_str(rep, "subject", subject ? subject : "");
	json_object_object_add(rep, "duration_s", json_object_new_double((double)duration_ms / 1000));
	op_json_set_int(rep, "from_seq", from);
	op_json_set_int(rep, "to_seq", e.last);
	json_object_object_add(rep, "false_positives", fp);
	eval_events_close(&e);
	*report = rep;
	return 0;
}
