/*
 * check_safety: acting safely at depth, end to end. A real redis-server,
 * three rlnodes and operatord (harness.c), faults injected through opsend,
 * every transition read back from the audit events (optail --json) and every
 * side effect counted on the nodes themselves (GET /health resyncs_total).
 * Each test restarts operatord with its own [safety] section and a fresh
 * ledger; the restart tests SIGKILL it mid-wait and prove that nothing runs
 * twice. The test process never touches nng.
 */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define S_TCASE_TIMEOUT 600 /* seconds per test: several full loops and restarts */
#define S_LOOP_MS 90000     /* an event that needs a whole loop */
#define S_QUIET_MS 3000     /* how long "nothing ran" is watched for */
#define S_GHOST_TTL "300s"  /* faults outlive the test: no undo resyncs mid-count */

static char s_uid[32];

/* ---- operatord with a chosen [safety] section ---- */

static int
s_ready(void)
{
	json_object *s = h_status();
	json_object *ws = op_json_arr(s, "workers");
	int ok = ws != NULL && json_object_array_length(ws) == 5;

	for (size_t i = 0; ok && i < json_object_array_length(ws); i++)
		ok = !strcmp(op_json_str(json_object_array_get_idx(ws, i), "state", ""), "ready");
	json_object_put(s);
	return ok;
}

static void
s_write_conf(const char *mode, const char *safety)
{
	FILE *f = fopen(H->conf, "w");

	ck_assert_msg(f != NULL, "cannot write %s", H->conf);
	fprintf(f, "[operatord]\nruntime_dir = %s\nstate_dir = %s\nmode = %s\n"
	    "verify_delay = %dms\nverify_settle = %dms\nverify_timeout = 8s\n"
	    "poll_interval = 500ms\n\n", H->run, H->state, mode, H_VERIFY_DELAY_MS,
	    H_VERIFY_SETTLE_MS);
	fprintf(f, "[subject.ratelimiter]\nredis = 127.0.0.1:%d\nnodes = ", H->redis_port);
	for (int i = 0; i < H_NNODES; i++)
		fprintf(f, "%shttp://127.0.0.1:%d", i ? "," : "", H->node_port[i]);
	fprintf(f, "\ndrift_tolerance = %d\n\n[chaos]\nenabled = true\n\n[safety]\n%s\n",
	    H_DRIFT_TOL, safety ? safety : "");
	/* The limits are on by default; each test turns off those it does not
	 * study, so that one mechanism is tested at a time. */
	static const char *const limits[] = {"blast_radius", "budget_action", "budget_subject"};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (safety == NULL || strstr(safety, limits[i]) == NULL)
			fprintf(f, "%s = off\n", limits[i]);
	fclose(f);
}

static void
s_spawn_od(void)
{
	char *argv[] = {(char *)h_bin("operatord"), "--config", H->conf, NULL};
	int ok;

	H->od_pid = h_spawn(argv, "operatord.log");
	H_WAIT(ok, H_WAIT_MS, s_ready());
	H_CHECK(ok, "operatord did not become ready");
}

static void
s_stop_od(void)
{
	if (H->od_pid <= 0)
		return;
	kill(H->od_pid, SIGTERM);
	int64_t end = op_mono_ms() + 20000;
	while (op_mono_ms() < end && waitpid(H->od_pid, NULL, WNOHANG) == 0)
		op_sleep_ms(50);
	h_kill_wait(&H->od_pid, SIGKILL);
}

/* A fresh daemon on a fresh ledger with this mode and [safety] section. */
static void
s_start(const char *name, const char *mode, const char *safety)
{
	char path[300];

	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin(name);
	s_stop_od();
	for (int i = 0; i < H_NNODES; i++)
		if (H->node_pid[i] > 0)
			kill(H->node_pid[i], SIGCONT);
	static const char *const files[] = {"ledger.db", "ledger.db-wal", "ledger.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", H->state, files[i]);
		unlink(path);
	}
	s_write_conf(mode, safety);
	s_spawn_od();
	snprintf(s_uid, sizeof(s_uid), "uid:%d", (int)getuid());
}

/* SIGKILL: no shutdown, no undo, whatever was in flight stays in the ledger. */
static void
s_crash_restart(void)
{
	h_kill_wait(&H->od_pid, SIGKILL);
	s_spawn_od();
}

/* ---- events ---- */

static json_object *
s_wait_ev(const char *type, int64_t tid, int64_t after, int ms)
{
	json_object *ev = NULL;
	int ok;

	H_WAIT(ok, ms, h_ev_refresh() && (ev = h_ev_find(type, tid, after)) != NULL);
	H_CHECK(ok, "no %s event for ticket %lld after seq %lld within %d ms", type,
	    (long long)tid, (long long)after, ms);
	return ev;
}

static int
s_count(const char *type, int64_t tid, int64_t action_id)
{
	int n = 0;

	for (size_t i = 0; h_evs && i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (strcmp(op_json_str(e, "type", ""), type) != 0)
			continue;
		if (tid > 0 && op_json_int(e, "ticket", 0) != tid)
			continue;
		if (action_id > 0 && op_json_int(h_ev_data(e), "action_id", 0) != action_id)
			continue;
		n++;
	}
	return n;
}

static int64_t
s_ev_action(json_object *ev)
{
	return op_json_int(h_ev_data(ev), "action_id", 0);
}

static const char *
s_ev_reason(json_object *ev)
{
	return op_json_str(h_ev_data(ev), "reason", "");
}

/* ---- the subject ---- */

static int64_t
s_resyncs(int node)
{
	struct h_resp r = h_http(H->node_port[node], "GET", "/health", NULL);
	int64_t n = op_json_int(r.json, "resyncs_total", -1);

	h_resp_free(&r);
	return n;
}

/* What the ghost_allowing fault does, done by the test itself so that no
 * chaos undo (the kill switch pauses chaos and undoes its faults) heals it:
 * the victim's pub/sub connection is killed, then the limit goes to 0. */
static int
s_make_ghost(const char *key, int node)
{
	char name[64], want[80], *list = h_redis("CLIENT LIST");
	long long id = -1;

	snprintf(name, sizeof(name), "rlnode-n%d-sub", node + 1);
	snprintf(want, sizeof(want), " name=%s ", name);
	for (char *line = list ? strtok(list, "\n") : NULL; line; line = strtok(NULL, "\n"))
		if (strstr(line, want) && !strncmp(line, "id=", 3))
			id = strtoll(line + 3, NULL, 10);
	free(list);
	if (id < 0)
		return 0; /* still reconnecting from an earlier kill */
	free(h_redis("CLIENT KILL ID %lld", id));
	return h_set_limit(0, key, 0);
}

/* Sets up a key with a high limit and load on every node, then makes node
 * `node` (0-based) a ghost: it misses the limit's change to 0. With chaos,
 * through opsend chaos inject (the fault is then on record for the
 * postmortem). Returns the ghost_allowing ticket. */
static int64_t
s_ghost_with(const char *key, int node, int64_t *since, int chaos)
{
	char k[96], n[16], *err = NULL;
	json_object *res = NULL;
	int ok;

	H_CHECK(h_set_limit(0, key, 100000), "PUT /api/limits/%s failed", key);
	h_load_start(key, 40, 7);
	*since = h_last_seq();
	snprintf(k, sizeof(k), "key=%s", key);
	snprintf(n, sizeof(n), "node=n%d", node + 1);
	if (chaos) {
		/* the victim's subscriber may still be reconnecting from an earlier fault */
		H_WAIT(ok, H_WAIT_MS, h_opsend(&res, &err, "chaos", "inject", "ghost_allowing", k, n,
		    "ttl=" S_GHOST_TTL, NULL) == 0 || (json_object_put(res), res = NULL, free(err),
		    err = NULL, 0));
		H_CHECK(ok, "chaos inject ghost_allowing %s %s failed: %s", k, n, err ? err : "");
		json_object_put(res);
		free(err);
	} else {
		H_WAIT(ok, H_WAIT_MS, s_make_ghost(key, node));
		H_CHECK(ok, "could not make n%d a ghost for %s", node + 1, key);
	}
	int64_t tid = 0;
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (tid = h_ev_ticket("ghost_allowing", key, *since)) > 0);
	H_CHECK(ok, "no ghost_allowing ticket for %s", key);
	return tid;
}

static int64_t
s_ghost(const char *key, int node, int64_t *since)
{
	return s_ghost_with(key, node, since, 0);
}

static void
s_load_stop_all(void)
{
	for (int i = 0; i < H_MAX_LOADS; i++)
		if (H->load_pid[i] > 0)
			h_load_stop(H->load_pid[i]);
}

/* A key's limit on a node (GET /api/limits): "limit" is what Redis holds,
 * "cached_limit" what the node enforces; -1 when the key is not listed. */
static int64_t
s_limit(int node, const char *key, const char *field)
{
	struct h_resp r = h_http(H->node_port[node], "GET", "/api/limits", NULL);
	json_object *arr = op_json_arr(r.json, "limits");
	int64_t v = -1;

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (!strcmp(op_json_str(e, "key", ""), key))
			v = op_json_int(e, field, -1);
	}
	h_resp_free(&r);
	return v;
}

/* Whether `opsend level` lists this action at this level. */
static int
s_level_is(const char *action, const char *want)
{
	json_object *lv = NULL;
	int seen = 0;

	if (h_opsend(&lv, NULL, "level", NULL) != 0) {
		json_object_put(lv);
		return 0;
	}
	json_object *arr = op_json_arr(lv, "levels");
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *x = json_object_array_get_idx(arr, i);
		if (!strcmp(op_json_str(x, "action", ""), action))
			seen = !strcmp(op_json_str(x, "level", ""), want);
	}
	json_object_put(lv);
	return seen;
}

static int
s_op(const char *a0, const char *a1, const char *a2, const char *a3)
{
	char *err = NULL;
	int rc = h_opsend(NULL, &err, a0, a1, a2, a3, NULL);

	free(err);
	return rc;
}

static void
s_id(char *buf, size_t len, int64_t id)
{
	snprintf(buf, len, "%lld", (long long)id);
}

static json_object *
s_action_row(int64_t aid)
{
	json_object *rows = NULL, *found = NULL;

	if (h_opsend(&rows, NULL, "actions", NULL) != 0)
		return NULL;
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++)
		if (op_json_int(json_object_array_get_idx(rows, i), "id", 0) == aid)
			found = json_object_get(json_object_array_get_idx(rows, i));
	json_object_put(rows);
	return found;
}

static void
s_check_action_status(int64_t aid, const char *want)
{
	json_object *a = s_action_row(aid);

	H_CHECK(a != NULL && !strcmp(op_json_str(a, "status", ""), want),
	    "action %lld is %s, want %s", (long long)aid, a ? op_json_str(a, "status", "") : "absent",
	    want);
	json_object_put(a);
}

static void
s_end(void)
{
	s_load_stop_all();
	h_test_end();
}

/* Nothing of this type shows up for the ticket within S_QUIET_MS. */
static void
s_quiet(const char *type, int64_t tid, int64_t after)
{
	int64_t end = op_mono_ms() + S_QUIET_MS;

	while (op_mono_ms() < end) {
		H_CHECK(!(h_ev_refresh() && h_ev_find(type, tid, after) != NULL),
		    "%s for ticket %lld appeared, but nothing may run", type, (long long)tid);
		op_sleep_ms(H_POLL_MS);
	}
}

/* ================================================================== */

/* approve runs it (audited with the uid), reject ends it, and the
 * postmortem of the approved one tells the whole story. */
START_TEST(t_approve_reject_postmortem)
{
	int64_t since, ids;
	char a[32], t[32];

	s_start("approve_reject_postmortem", "approve", "approval_ttl = 10m\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost_with("ap-1", 2, &since, 1);
	json_object *ev = s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	int64_t aid = s_ev_action(ev);
	H_CHECK(!strcmp(op_json_str(op_json_obj(h_ev_data(ev), "params"), "node", ""), "n3"),
	    "awaiting approval for the wrong node");
	s_check_action_status(aid, "awaiting_approval");
	H_CHECK(s_resyncs(2) == r3, "n3 was resynced before anyone approved");
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("approve", a, NULL, NULL) == 0, "opsend approve %s failed", a);
	ev = s_wait_ev("action_approved", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "by", ""), s_uid), "approved by \"%s\", want %s",
	    op_json_str(h_ev_data(ev), "by", ""), s_uid);
	s_wait_ev("action_executed", tid, since, S_LOOP_MS);
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(s_resyncs(2) == r3 + 1, "n3 resyncs %lld, want %lld", (long long)s_resyncs(2),
	    (long long)r3 + 1);

	/* postmortem: fault, detection, diagnosis, action, verification, budgets */
	json_object *pm = NULL;
	s_id(t, sizeof(t), tid);
	H_CHECK(h_opsend(&pm, NULL, "ticket", "show", t, "--postmortem", NULL) == 0 && pm,
	    "opsend ticket show %s --postmortem failed", t);
	json_object *tl = op_json_arr(pm, "timeline");
	static const char *const want[] = {"fault_injected", "ticket_opened", "diagnosis",
		"action_awaiting_approval", "action_approved", "action_executed", "verification",
		"ticket_resolved"};
	size_t at = 0;
	for (size_t i = 0; tl && i < json_object_array_length(tl) && at < OP_ARRAY_LEN(want); i++)
		if (!strcmp(op_json_str(json_object_array_get_idx(tl, i), "type", ""), want[at]))
			at++;
	H_CHECK(at == OP_ARRAY_LEN(want), "postmortem timeline lacks %s (in order)", want[at]);
	for (size_t i = 0; i < json_object_array_length(tl); i++) {
		json_object *e = json_object_array_get_idx(tl, i);
		if (!strcmp(op_json_str(e, "type", ""), "verification") ||
		    !strcmp(op_json_str(e, "type", ""), "action_executed"))
			H_CHECK(op_json_int(e, "duration_ms", -1) >= 0, "%s has no duration",
			    op_json_str(e, "type", ""));
	}
	H_CHECK(op_json_int(op_json_obj(pm, "figures"), "time_to_detect_ms", -1) >= 0,
	    "no time to detect although the fault is known");
	H_CHECK(op_json_int(op_json_obj(pm, "figures"), "time_to_verified_fix_ms", -1) > 0,
	    "no time to verified fix");
	H_CHECK(json_object_array_length(op_json_arr(op_json_obj(pm, "budgets"), "used")) == 1,
	    "postmortem budgets used: want the one action");
	H_CHECK(op_json_obj(op_json_obj(pm, "evidence"), "diagnosis") != NULL, "no evidence");
	json_object_put(pm);
	char *out = NULL;
	char *argv[] = {(char *)h_bin("opsend"), "--runtime-dir", H->run, "ticket", "show", t,
	    "--postmortem", NULL};
	H_CHECK(h_run(argv, 30000, &out, NULL) == 0 && strstr(out, "TIMELINE") &&
	    strstr(out, "BUDGETS USED") && strstr(out, "resync_node"), "text postmortem: %s",
	    out ? out : "");
	free(out);

	/* reject: the ticket ends, nothing runs, the reason and uid are audited */
	s_load_stop_all();
	tid = s_ghost("ap-2", 2, &since);
	aid = s_ev_action(s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS));
	s_id(a, sizeof(a), aid);
	ids = s_resyncs(2);
	H_CHECK(s_op("reject", a, "--reason", "not during the sale") == 0, "opsend reject failed");
	ev = s_wait_ev("action_rejected", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "by", ""), s_uid) &&
	    !strcmp(s_ev_reason(ev), "not during the sale"), "rejection not audited with uid and reason");
	s_wait_ev("ticket_rejected", tid, since, H_WAIT_MS);
	s_check_action_status(aid, "rejected");
	H_CHECK(s_op("approve", a, NULL, NULL) == 1, "a rejected action could be approved");
	H_CHECK(s_resyncs(2) == ids, "a rejected action ran");
	s_end();
}
END_TEST

/* An approval nobody gives expires into the configured outcome (escalate). */
START_TEST(t_approval_ttl)
{
	int64_t since;
	char a[32];

	s_start("approval_ttl", "approve", "approval_ttl = 3s\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("ttl-1", 2, &since);
	json_object *ev = s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	int64_t aid = s_ev_action(ev);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "on_expiry", ""), "escalate"),
	    "default expiry outcome is not escalate");
	ev = s_wait_ev("action_approval_expired", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "outcome", ""), "escalate"), "expired into %s",
	    op_json_str(h_ev_data(ev), "outcome", ""));
	s_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	s_check_action_status(aid, "expired");
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("approve", a, NULL, NULL) == 1, "an expired approval could still be given");
	H_CHECK(s_resyncs(2) == r3, "an expired action ran");
	s_end();
}
END_TEST

/* SIGKILL while an approval waits: after the restart it still waits, and
 * approving it runs it exactly once. */
START_TEST(t_restart_approval_wait)
{
	int64_t since;
	char a[32];

	s_start("restart_approval_wait", "approve", "approval_ttl = 10m\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("rap-1", 2, &since);
	int64_t aid = s_ev_action(s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS));
	s_crash_restart();
	s_check_action_status(aid, "awaiting_approval");
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("approve", a, NULL, NULL) == 0, "approve after the restart failed");
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(s_count("action_executed", tid, 0) == 1, "%d executions, want 1",
	    s_count("action_executed", tid, 0));
	H_CHECK(s_resyncs(2) == r3 + 1, "n3 resynced %lld times, want 1",
	    (long long)(s_resyncs(2) - r3));
	s_end();
}
END_TEST

/* The kill switch: cancels what waits, refuses approvals, survives a
 * restart, holds in any mode, pauses chaos; off lets the plan run again. */
START_TEST(t_kill_switch)
{
	int64_t since;
	char a[32];
	json_object *s;

	s_start("kill_switch", "approve", "approval_ttl = 10m\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("ks-1", 2, &since);
	int64_t aid = s_ev_action(s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS));
	int64_t mark = h_last_seq();
	H_CHECK(s_op("kill-switch", "on", NULL, NULL) == 0, "kill-switch on failed");
	json_object *ev = s_wait_ev("action_skipped", tid, mark, H_WAIT_MS);
	H_CHECK(!strcmp(s_ev_reason(ev), "kill switch"), "skip reason \"%s\"", s_ev_reason(ev));
	s_wait_ev("kill_switch", 0, mark, H_WAIT_MS);
	s_check_action_status(aid, "proposed");
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("approve", a, NULL, NULL) == 1, "approve worked with the kill switch on");
	H_CHECK(s_op("chaos", "inject", "node_kill", "node=n1") == 1, "chaos not paused");

	/* persists across a crash, and no mode makes anything run */
	s_crash_restart();
	s = h_status();
	H_CHECK(op_json_bool(s, "kill_switch", 0), "kill switch off after the restart");
	json_object_put(s);
	mark = h_last_seq();
	H_CHECK(s_op("mode", "execute", NULL, NULL) == 0, "mode execute failed");
	s_quiet("action_dispatched", tid, since);
	H_CHECK(s_resyncs(2) == r3, "an action ran with the kill switch on");

	/* off: the plan resumes in execute mode, once */
	H_CHECK(s_op("kill-switch", "off", NULL, NULL) == 0, "kill-switch off failed");
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(s_resyncs(2) == r3 + 1, "n3 resynced %lld times, want 1",
	    (long long)(s_resyncs(2) - r3));
	s_end();
}
END_TEST

/* A per-(subject, action) budget of one: the second ticket escalates
 * instead of acting, and status shows nothing left. */
START_TEST(t_budget)
{
	int64_t since;

	s_start("budget", "execute", "budget_action = 1/1h\nbudget_subject = 5/1h\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("bud-1", 2, &since);
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	s_load_stop_all();
	json_object *s = h_status();
	json_object *b = op_json_arr(op_json_obj(s, "safety"), "budgets");
	int found = 0;
	for (size_t i = 0; b && i < json_object_array_length(b); i++) {
		json_object *x = json_object_array_get_idx(b, i);
		if (!strcmp(op_json_str(x, "scope", ""), "action:ratelimiter/resync_node")) {
			found = 1;
			H_CHECK(op_json_double(x, "left", 9) < 1.0, "budget left %g after one action",
			    op_json_double(x, "left", 9));
		}
	}
	json_object_put(s);
	H_CHECK(found, "status shows no per-action budget");
	tid = s_ghost("bud-2", 2, &since);
	json_object *ev = s_wait_ev("action_skipped", tid, since, S_LOOP_MS);
	H_CHECK(!strcmp(s_ev_reason(ev), "budget"), "skip reason \"%s\", want budget", s_ev_reason(ev));
	ev = s_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(strstr(s_ev_reason(ev), "budget") != NULL, "escalation reason \"%s\"", s_ev_reason(ev));
	H_CHECK(s_resyncs(2) == r3 + 1, "n3 resynced %lld times, want 1",
	    (long long)(s_resyncs(2) - r3));
	s_end();
}
END_TEST

/* Blast radius 34 % of three nodes: one node per window; a second node is refused. */
START_TEST(t_blast_radius)
{
	int64_t since;

	s_start("blast_radius", "execute", "blast_radius = 0.34\nblast_window = 10m\n");
	int64_t r2 = s_resyncs(1);
	int64_t tid = s_ghost("br-1", 2, &since);
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	s_load_stop_all();
	tid = s_ghost("br-2", 1, &since);
	json_object *ev = s_wait_ev("action_skipped", tid, since, S_LOOP_MS);
	H_CHECK(!strcmp(s_ev_reason(ev), "blast radius"), "skip reason \"%s\"", s_ev_reason(ev));
	s_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(s_resyncs(1) == r2, "n2 was resynced despite the blast radius");
	s_end();
}
END_TEST

/* shadow logs exactly what would run and runs nothing; approve with a
 * promotion after one verified success; then it runs on its own. */
START_TEST(t_shadow_promotion)
{
	int64_t since;
	char a[32];

	s_start("shadow_promotion", "execute", "level.resync_node = shadow\npromote_after = 1\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("sh-1", 2, &since);
	json_object *ev = s_wait_ev("action_skipped", tid, since, S_LOOP_MS);
	json_object *would = op_json_obj(h_ev_data(ev), "would");
	H_CHECK(!strcmp(s_ev_reason(ev), "shadow") &&
	    !strcmp(op_json_str(would, "action", ""), "resync_node") &&
	    !strcmp(op_json_str(op_json_obj(would, "params"), "node", ""), "n3"),
	    "shadow event does not say what would run");
	s_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(s_resyncs(2) == r3, "shadow ran the action");
	s_load_stop_all();

	/* The ladder climbs from a configured level: an operator's own setting is
	 * never overridden by promotion (ticket-core hole 5). */
	s_write_conf("execute", "level.resync_node = approve\npromote_after = 1\n");
	H_CHECK(s_op("reload", NULL, NULL, NULL) == 0, "opsend reload failed");
	int lok;
	H_WAIT(lok, H_WAIT_MS, s_level_is("resync_node", "approve"));
	H_CHECK(lok, "the reloaded level is not approve");
	tid = s_ghost("sh-2", 2, &since);
	int64_t aid = s_ev_action(s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS));
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("approve", a, NULL, NULL) == 0, "approve failed");
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	ev = s_wait_ev("level_changed", 0, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "to", ""), "execute"), "not promoted");
	json_object *lv = NULL;
	H_CHECK(h_opsend(&lv, NULL, "level", NULL) == 0, "opsend level (list) failed");
	int seen = 0;
	json_object *arr = op_json_arr(lv, "levels");
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *x = json_object_array_get_idx(arr, i);
		if (!strcmp(op_json_str(x, "action", ""), "resync_node") &&
		    !strcmp(op_json_str(x, "level", ""), "execute"))
			seen = 1;
	}
	json_object_put(lv);
	H_CHECK(seen, "status does not show the promoted level");
	s_load_stop_all();
	tid = s_ghost("sh-3", 2, &since);
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(h_ev_find("action_awaiting_approval", tid, since) == NULL,
	    "the promoted action still waited for approval");
	H_CHECK(s_resyncs(2) == r3 + 2, "n3 resynced %lld times, want 2",
	    (long long)(s_resyncs(2) - r3));
	s_end();
}
END_TEST

/* A precondition failure (node unreachable) is known not to have taken
 * effect: retried with backoff. SIGKILL during the wait; the retry resumes
 * from the ledger and the action runs exactly once. */
START_TEST(t_retry_restart)
{
	int64_t since;
	char a[32];

	s_start("retry_restart", "approve", "retry_min = 4s\nretry_max = 20s\nretry_attempts = 6\n");
	int64_t tid = s_ghost("rt-1", 2, &since);
	int64_t aid = s_ev_action(s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS));
	int64_t r3 = s_resyncs(2);
	kill(H->node_pid[2], SIGSTOP);
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("approve", a, NULL, NULL) == 0, "approve failed");
	json_object *ev = s_wait_ev("action_retry", tid, since, S_LOOP_MS);
	H_CHECK(op_json_int(h_ev_data(ev), "delay_ms", 0) >= 4000, "backoff %lld ms < retry_min",
	    (long long)op_json_int(h_ev_data(ev), "delay_ms", 0));
	s_crash_restart();
	s_check_action_status(aid, "retry_wait");
	kill(H->node_pid[2], SIGCONT);
	s_wait_ev("action_executed", tid, since, S_LOOP_MS);
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(s_count("action_executed", tid, aid) == 1, "executed %d times",
	    s_count("action_executed", tid, aid));
	H_CHECK(s_resyncs(2) == r3 + 1, "n3 resynced %lld times, want 1",
	    (long long)(s_resyncs(2) - r3));
	s_end();
}
END_TEST

/* An operator's workflow: step 1, verified, then step 2 (here not needed:
 * the executor finds the problem fixed). SIGKILL while step 1 is verified;
 * after the restart nothing is re-run. A second workflow whose first step
 * does not hold stops there. */
START_TEST(t_workflow_restart)
{
	int64_t since;
	char t[32];
	json_object *res = NULL;

	/* blast radius off: the workflow touches two of the three nodes */
	s_start("workflow_restart", "execute", "level.resync_node = approve\nblast_radius = off\n");
	int64_t r1 = s_resyncs(0), r3 = s_resyncs(2);
	int64_t tid = s_ghost("wf-1", 2, &since);
	s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	s_id(t, sizeof(t), tid);
	H_CHECK(h_opsend(&res, NULL, "act", t, "resync_node", "node=n3", "then", "resync_node",
	    "node=n1", NULL) == 0, "opsend act failed");
	H_CHECK(json_object_array_length(res) == 2, "workflow has %zu steps, want 2",
	    json_object_array_length(res));
	int64_t s1 = op_json_int(json_object_array_get_idx(res, 0), "id", 0);
	int64_t s2 = op_json_int(json_object_array_get_idx(res, 1), "id", 0);
	json_object_put(res);
	s_wait_ev("workflow_submitted", tid, since, H_WAIT_MS);
	json_object *ex = s_wait_ev("action_executed", tid, since, S_LOOP_MS);
	H_CHECK(s_ev_action(ex) == s1, "first executed action %lld, want step 1 (%lld)",
	    (long long)s_ev_action(ex), (long long)s1);
	s_crash_restart();
	json_object *ver = s_wait_ev("verification", tid, since, S_LOOP_MS);
	int64_t vseq = h_ev_seq(ver);
	json_object *wv = s_wait_ev("workflow_step_verified", tid, since, S_LOOP_MS);
	H_CHECK(op_json_int(h_ev_data(wv), "next_action_id", 0) == s2, "next step is not step 2");
	json_object *fin = s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(h_ev_seq(fin) > vseq, "resolved before step 1 was verified");
	H_CHECK(s_count("action_executed", tid, s1) == 1, "step 1 executed %d times",
	    s_count("action_executed", tid, s1));
	H_CHECK(s_resyncs(2) == r3 + 1 && s_resyncs(0) == r1, "resyncs n3 +%lld n1 +%lld, want +1 +0",
	    (long long)(s_resyncs(2) - r3), (long long)(s_resyncs(0) - r1));
	s_load_stop_all();

	/* stop at the first failed verification: resync of the wrong node */
	tid = s_ghost("wf-2", 2, &since);
	s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	s_id(t, sizeof(t), tid);
	r3 = s_resyncs(2);
	H_CHECK(h_opsend(&res, NULL, "act", t, "resync_node", "node=n1", "then", "resync_node",
	    "node=n3", NULL) == 0, "opsend act failed");
	s2 = op_json_int(json_object_array_get_idx(res, 1), "id", 0);
	json_object_put(res);
	json_object *ev = s_wait_ev("workflow_stopped", tid, since, S_LOOP_MS);
	H_CHECK(op_json_int(h_ev_data(ev), "cancelled_steps", 0) == 1, "cancelled %lld steps",
	    (long long)op_json_int(h_ev_data(ev), "cancelled_steps", 0));
	s_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	s_check_action_status(s2, "cancelled");
	H_CHECK(s_resyncs(2) == r3, "step 2 ran after step 1 failed verification");
	s_end();
}
END_TEST

/* A schedule (not_before) survives a SIGKILL and runs once when due. */
START_TEST(t_schedule_restart)
{
	int64_t since;
	char t[32];
	json_object *res = NULL;

	s_start("schedule_restart", "execute", "level.resync_node = approve\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("sc-1", 2, &since);
	s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	s_id(t, sizeof(t), tid);
	H_CHECK(h_opsend(&res, NULL, "act", t, "resync_node", "node=n3", "--in", "8s", NULL) == 0,
	    "opsend act --in failed");
	int64_t aid = op_json_int(json_object_array_get_idx(res, 0), "id", 0);
	json_object_put(res);
	json_object *ev = s_wait_ev("action_scheduled", tid, since, H_WAIT_MS);
	int64_t nb = op_json_int(h_ev_data(ev), "not_before", 0);
	s_crash_restart();
	s_check_action_status(aid, "scheduled");
	ev = s_wait_ev("action_dispatched", tid, since, S_LOOP_MS);
	H_CHECK(h_ev_ts_ms(ev) >= nb, "dispatched %lld ms before not_before",
	    (long long)(nb - h_ev_ts_ms(ev)));
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	H_CHECK(s_count("action_executed", tid, aid) == 1 && s_resyncs(2) == r3 + 1,
	    "the scheduled action ran %d times", s_count("action_executed", tid, aid));
	s_end();
}
END_TEST

/* hold: no action and no auto-clear while held; unhold closes what healed;
 * ack and manual resolve are audited with the uid. */
START_TEST(t_hold_ack_resolve)
{
	int64_t since;
	char a[32], t[32];

	s_start("hold_ack_resolve", "execute", "level.resync_node = approve\n");
	int64_t tid = s_ghost("ho-1", 2, &since);
	int64_t aid = s_ev_action(s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS));
	s_id(t, sizeof(t), tid);
	s_id(a, sizeof(a), aid);
	H_CHECK(s_op("hold", t, NULL, NULL) == 0, "hold failed");
	json_object *ev = s_wait_ev("ticket_held", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "by", ""), s_uid), "hold not audited with uid");
	H_CHECK(s_op("approve", a, NULL, NULL) == 1, "a held ticket's action could be approved");
	H_CHECK(s_op("ack", t, NULL, NULL) == 0, "ack failed");
	ev = s_wait_ev("ticket_acked", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "by", ""), s_uid), "ack not audited with uid");
	/* heal it by hand: the worker must not clear a held ticket */
	struct h_resp r = h_http(H->node_port[2], "POST", "/api/resync", "{}");
	h_resp_free(&r);
	s_wait_ev("ticket_healed", tid, since, S_LOOP_MS);
	json_object *tk = h_ticket(tid);
	H_CHECK(tk && op_json_int(tk, "closed_at", 0) == 0 && op_json_int(tk, "held", 0) == 1 &&
	    op_json_int(tk, "acked", 0) == 1, "held ticket closed or lost hold/ack");
	json_object_put(tk);
	H_CHECK(s_op("unhold", t, NULL, NULL) == 0, "unhold failed");
	s_wait_ev("ticket_unheld", tid, since, H_WAIT_MS);
	ev = s_wait_ev("ticket_cleared", tid, since, H_WAIT_MS);
	s_load_stop_all();

	/* manual resolve */
	tid = s_ghost("ho-2", 2, &since);
	s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	s_id(t, sizeof(t), tid);
	H_CHECK(s_op("resolve", t, "--reason", "fixed by hand") == 0, "resolve failed");
	ev = s_wait_ev("ticket_resolved", tid, since, H_WAIT_MS);
	H_CHECK(op_json_bool(h_ev_data(ev), "manual", 0) &&
	    !strcmp(op_json_str(h_ev_data(ev), "by", ""), s_uid), "manual resolve not audited");
	H_CHECK(s_op("hold", t, NULL, NULL) == 1, "a closed ticket could be held");
	s_end();
}
END_TEST

/* Flap detection with K=2: the second reopening escalates without acting. */
START_TEST(t_flap)
{
	int64_t since, since2;

	s_start("flap", "execute", "flap_max = 2\nflap_window = 10m\n");
	int64_t r3 = s_resyncs(2);
	int64_t tid = s_ghost("fl-1", 2, &since);
	s_wait_ev("ticket_resolved", tid, since, S_LOOP_MS);
	for (int round = 1; round <= 2; round++) {
		/* No wait for the observer's clear_for: a closed ticket makes it
		 * forget the fingerprint, so the recurrence is reported at once. */
		s_load_stop_all();
		int64_t t2 = s_ghost("fl-1", 2, &since2);
		H_CHECK(t2 == tid, "recurrence opened ticket %lld, not %lld", (long long)t2,
		    (long long)tid);
		json_object *ev = s_wait_ev("ticket_reopened", tid, since2, H_WAIT_MS);
		H_CHECK(op_json_int(h_ev_data(ev), "flaps", 0) == round, "flaps %lld, want %d",
		    (long long)op_json_int(h_ev_data(ev), "flaps", 0), round);
		if (round == 1) {
			s_wait_ev("ticket_resolved", tid, since2, S_LOOP_MS);
		} else {
			ev = s_wait_ev("ticket_escalated", tid, since2, H_WAIT_MS);
			H_CHECK(strstr(s_ev_reason(ev), "flapping") != NULL, "escalated for \"%s\"",
			    s_ev_reason(ev));
			s_quiet("action_dispatched", tid, since2);
		}
	}
	H_CHECK(s_resyncs(2) == r3 + 2, "n3 resynced %lld times, want 2",
	    (long long)(s_resyncs(2) - r3));
	s_end();
}
END_TEST

/* A daily cap of one destructive (risk high) action: an operator's
 * update_limit runs on the first ticket; the same on a second ticket is
 * refused for the budget, the ticket escalates, and Redis and every node
 * show that only the first limit change happened. */
START_TEST(t_destructive_cap)
{
	int64_t since;
	char t[32];
	json_object *res = NULL;

	s_start("destructive_cap", "execute", "destructive_per_day = 1\napproval_risk = none\n"
	    "level.resync_node = approve\napproval_ttl = 10m\n");
	int64_t tid = s_ghost("dc-1", 2, &since);
	s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	s_id(t, sizeof(t), tid);
	H_CHECK(h_opsend(&res, NULL, "act", t, "update_limit", "key=dc-1", "limit=5000", NULL) == 0,
	    "opsend act %s update_limit failed", t);
	int64_t a1 = op_json_int(json_object_array_get_idx(res, 0), "id", 0);
	json_object_put(res);
	json_object *ev = s_wait_ev("action_executed", tid, since, S_LOOP_MS);
	H_CHECK(s_ev_action(ev) == a1, "executed action %lld, want the update_limit (%lld)",
	    (long long)s_ev_action(ev), (long long)a1);
	int ok;
	H_WAIT(ok, S_LOOP_MS, h_ev_refresh() && h_ev_terminal(tid, since) != NULL);
	H_CHECK(ok, "ticket %lld did not end after its update_limit", (long long)tid);
	H_CHECK(s_limit(0, "dc-1", "limit") == 5000, "dc-1 limit in Redis %lld, want 5000",
	    (long long)s_limit(0, "dc-1", "limit"));
	json_object *st = h_status();
	json_object *dz = op_json_obj(op_json_obj(st, "safety"), "destructive_today");
	H_CHECK(op_json_int(dz, "used", -1) == 1 && op_json_int(dz, "cap", -1) == 1 &&
	    op_json_int(dz, "left", -1) == 0, "status destructive_today used %lld cap %lld left %lld",
	    (long long)op_json_int(dz, "used", -1), (long long)op_json_int(dz, "cap", -1),
	    (long long)op_json_int(dz, "left", -1));
	json_object_put(st);
	s_load_stop_all();

	tid = s_ghost("dc-2", 2, &since);
	s_wait_ev("action_awaiting_approval", tid, since, S_LOOP_MS);
	s_id(t, sizeof(t), tid);
	H_CHECK(h_opsend(&res, NULL, "act", t, "update_limit", "key=dc-2", "limit=6000", NULL) == 0,
	    "opsend act %s update_limit failed", t);
	int64_t a2 = op_json_int(json_object_array_get_idx(res, 0), "id", 0);
	json_object_put(res);
	ev = s_wait_ev("action_skipped", tid, since, S_LOOP_MS);
	H_CHECK(s_ev_action(ev) == a2 && !strcmp(s_ev_reason(ev), "budget"),
	    "skipped action %lld for \"%s\", want %lld for budget", (long long)s_ev_action(ev),
	    s_ev_reason(ev), (long long)a2);
	H_CHECK(strstr(op_json_str(h_ev_data(ev), "detail", ""), "destructive") != NULL,
	    "skip detail \"%s\" does not name the daily cap", op_json_str(h_ev_data(ev), "detail", ""));
	ev = s_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(strstr(s_ev_reason(ev), "budget") != NULL, "escalation reason \"%s\"", s_ev_reason(ev));
	s_check_action_status(a2, "skipped");
	s_quiet("action_dispatched", tid, since);
	H_CHECK(s_count("action_executed", 0, a2) == 0, "the refused update_limit ran");
	H_CHECK(s_count("action_dispatched", 0, a1) == 1, "the first update_limit was dispatched %d"
	    " times", s_count("action_dispatched", 0, a1));
	/* exactly one limit change: dc-1 moved to 5000, dc-2 stayed at 0 everywhere */
	H_CHECK(s_limit(0, "dc-1", "limit") == 5000 && s_limit(0, "dc-2", "limit") == 0,
	    "Redis limits dc-1 %lld dc-2 %lld, want 5000 and 0", (long long)s_limit(0, "dc-1", "limit"),
	    (long long)s_limit(0, "dc-2", "limit"));
	for (int i = 0; i < H_NNODES; i++)
		H_CHECK(s_limit(i, "dc-2", "cached_limit") != 6000, "n%d enforces the refused limit",
		    i + 1);
	s_end();
}
END_TEST

/* promote_after = 1: a verified approval promotes resync_node to execute;
 * then an operator's resync of the wrong node runs without approval, its
 * verification fails, and the action is demoted back to approve: the next
 * ticket waits for a human again. */
START_TEST(t_demotion)
{
	int64_t since, since2;
	char a[32], t[32];
	json_object *res = NULL;

	/* blast radius off: n3, then n1 are resynced within the window */
	s_start("demotion", "execute", "level.resync_node = approve\npromote_after = 1\n"
	    "approval_ttl = 10m\nblast_radius = off\n");
	int64_t r1 = s_resyncs(0), r3 = s_resyncs(2);
	/* two tickets wait at level approve: n3 misses dm-1, n2 misses dm-2 */
	int64_t t1 = s_ghost("dm-1", 2, &since);
	int64_t a1 = s_ev_action(s_wait_ev("action_awaiting_approval", t1, since, S_LOOP_MS));
	int64_t t2 = s_ghost("dm-2", 1, &since2);
	s_wait_ev("action_awaiting_approval", t2, since2, S_LOOP_MS);
	H_CHECK(s_level_is("resync_node", "approve"), "resync_node does not start at approve");

	/* promotion: one verified success at level approve */
	s_id(a, sizeof(a), a1);
	H_CHECK(s_op("approve", a, NULL, NULL) == 0, "approve %s failed", a);
	s_wait_ev("ticket_resolved", t1, since, S_LOOP_MS);
	json_object *ev = s_wait_ev("level_changed", 0, since, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "from", ""), "approve") &&
	    !strcmp(op_json_str(h_ev_data(ev), "to", ""), "execute"), "not promoted (%s -> %s)",
	    op_json_str(h_ev_data(ev), "from", ""), op_json_str(h_ev_data(ev), "to", ""));
	H_CHECK(s_level_is("resync_node", "execute"), "opsend level does not show execute");
	int64_t mark = h_ev_seq(ev);

	/* a failed verification at level execute: resync n1 for n2's ghost */
	s_id(t, sizeof(t), t2);
	H_CHECK(h_opsend(&res, NULL, "act", t, "resync_node", "node=n1", NULL) == 0,
	    "opsend act %s failed", t);
	int64_t a2 = op_json_int(json_object_array_get_idx(res, 0), "id", 0);
	json_object_put(res);
	ev = s_wait_ev("action_dispatched", t2, mark, S_LOOP_MS);
	H_CHECK(s_ev_action(ev) == a2 && !strcmp(op_json_str(h_ev_data(ev), "level", ""), "execute"),
	    "action %lld dispatched at level %s, want %lld at execute", (long long)s_ev_action(ev),
	    op_json_str(h_ev_data(ev), "level", ""), (long long)a2);
	ev = s_wait_ev("verification", t2, mark, S_LOOP_MS);
	H_CHECK(strcmp(op_json_str(h_ev_data(ev), "result", ""), "success") != 0,
	    "the resync of the wrong node verified");
	int64_t vseq = h_ev_seq(ev);
	ev = s_wait_ev("level_changed", t2, mark, H_WAIT_MS);
	H_CHECK(h_ev_seq(ev) > vseq, "demoted before the verification failed");
	H_CHECK(!strcmp(op_json_str(h_ev_data(ev), "action", ""), "resync_node") &&
	    !strcmp(op_json_str(h_ev_data(ev), "from", ""), "execute") &&
	    !strcmp(op_json_str(h_ev_data(ev), "to", ""), "approve"), "not demoted (%s %s -> %s)",
	    op_json_str(h_ev_data(ev), "action", ""), op_json_str(h_ev_data(ev), "from", ""),
	    op_json_str(h_ev_data(ev), "to", ""));
	H_CHECK(s_level_is("resync_node", "approve"), "opsend level does not show approve");
	s_wait_ev("ticket_escalated", t2, mark, S_LOOP_MS);
	H_CHECK(s_resyncs(0) == r1 + 1 && s_resyncs(2) == r3 + 1,
	    "resyncs n1 +%lld n3 +%lld, want +1 +1", (long long)(s_resyncs(0) - r1),
	    (long long)(s_resyncs(2) - r3));
	s_load_stop_all();

	/* demoted: the next ticket waits for a human again */
	int64_t t3 = s_ghost("dm-3", 2, &since);
	ev = s_wait_ev("action_awaiting_approval", t3, since, S_LOOP_MS);
	H_CHECK(!strcmp(s_ev_reason(ev), "level approve"), "awaiting approval for \"%s\"",
	    s_ev_reason(ev));
	H_CHECK(s_resyncs(2) == r3 + 1, "the demoted action ran without approval");
	s_end();
}
END_TEST

/* CHECK_SAFETY_ONLY=t_budget,t_flap runs only those (for development). */
#define S_ADD(tc, t)                                                           \
	do {                                                                   \
		const char *only_ = getenv("CHECK_SAFETY_ONLY");               \
		if (!only_ || !*only_ || strstr(only_, #t) != NULL)             \
			tcase_add_test(tc, t);                                 \
	} while (0)

static Suite *
safety_suite(void)
{
	Suite *s = suite_create("safety");
	TCase *tc = tcase_create("safety");

	tcase_add_unchecked_fixture(tc, h_env_start, h_env_stop);
	tcase_set_timeout(tc, S_TCASE_TIMEOUT);
	S_ADD(tc, t_approve_reject_postmortem);
	S_ADD(tc, t_approval_ttl);
	S_ADD(tc, t_restart_approval_wait);
	S_ADD(tc, t_kill_switch);
	S_ADD(tc, t_budget);
	S_ADD(tc, t_blast_radius);
	S_ADD(tc, t_retry_restart);
	S_ADD(tc, t_workflow_restart);
	S_ADD(tc, t_schedule_restart);
	S_ADD(tc, t_hold_ack_resolve);
	S_ADD(tc, t_shadow_promotion);
	S_ADD(tc, t_flap);
	S_ADD(tc, t_destructive_cap);
	S_ADD(tc, t_demotion);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	h_init();
	SRunner *sr = srunner_create(safety_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
