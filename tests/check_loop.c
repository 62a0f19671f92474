/*
 * The whole loop with real processes: redis-server, three rlnodes, rlload and
 * operatord with its workers, driven through opsend/optail as an operator
 * would. Every wait is a bounded poll on a condition (events, status, HTTP);
 * no assertion is about elapsed time (restart times are printed, not asserted).
 *
 * Binaries come from the environment: OPERATORD_BIN OPSEND_BIN OPTAIL_BIN
 * RLNODE_BIN RLLOAD_BIN (redis-server from $PATH or REDIS_SERVER).
 * CHECK_LOOP_KEEP=1 keeps the temporary directories.
 */
#include <check.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define T_LOOP_MS 90000         /* fault to terminal ticket */
#define T_TCASE_TIMEOUT 400     /* seconds, per test */

static const char *
t_str(json_object *o, const char *k)
{
	return op_json_str(o, k, "");
}

static void
t_begin(const char *name)
{
	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin(name);
}

/* Raises the key's limit and waits until drift is measurable on every node. */
static void
t_prepare_key(const char *key)
{
	int ok;

	H_CHECK(h_set_limit(0, key, 100000), "PUT /api/limits/%s failed", key);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "rlnode uptime never covered the window");
}

static void
t_inject(const char *fault, const char *key, const char *ttl)
{
	char k[128], t[32], *err = NULL;
	json_object *res = NULL;

	snprintf(k, sizeof(k), "key=%s", key);
	snprintf(t, sizeof(t), "ttl=%s", ttl);
	int rc = h_opsend(&res, &err, "chaos", "inject", fault, k, t, NULL);
	H_CHECK(rc == 0, "opsend chaos inject %s %s exited %d: %s", fault, k, rc, err ? err : "");
	H_CHECK(strcmp(t_str(res, "target"), key) == 0, "inject %s: target \"%s\", want %s", fault,
	    t_str(res, "target"), key);
	json_object_put(res);
	free(err);
}

static int64_t
t_wait_ticket(const char *inv, const char *entity, int64_t since)
{
	int64_t tid = 0;
	int ok;

	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (tid = h_ev_ticket(inv, entity, since)) > 0);
	H_CHECK(ok, "no ticket %s/%s opened within %d ms", inv, entity ? entity : "*", H_WAIT_MS);
	return tid;
}

/* counter_drift is a race by nature: writes are paused while /check calls
 * are under way, and only the calls whose timeout fires inside the pause are
 * counted twice. On a machine loaded by other suites a pause can end before
 * any call times out, and no drift exists to detect. Such an injection is
 * given up when its fault clears without a ticket, and the fault injected
 * again (at most T_DRIFT_TRIES times); a ticket that never opens still fails. */
#define T_DRIFT_TRIES 3
#define T_DRIFT_SEEN_MS 30000 /* a real drift is seen in a few seconds */

static int64_t
t_drift_ticket(const char *key, const char *ttl, int64_t since)
{
	int64_t tid = 0;
	int ok = 0;

	for (int i = 0; i < T_DRIFT_TRIES && !ok; i++) {
		int64_t mark = h_last_seq();
		t_inject("counter_drift", key, ttl);
		H_WAIT(ok, T_DRIFT_SEEN_MS, h_ev_refresh() &&
		    (tid = h_ev_ticket("counter_drift", key, since)) > 0);
		if (ok)
			break;
		/* Chaos runs one fault at a time: wait for this one to end. */
		json_object *cl = NULL;
		int gone;
		H_WAIT(gone, H_WAIT_MS, h_ev_refresh() && (cl = h_ev_find("fault_cleared", 0, mark)));
		fprintf(stderr, "check_loop: counter_drift on %s did not bite (try %d)\n", key, i + 1);
	}
	H_CHECK(ok, "no counter_drift ticket for %s after %d injections", key, T_DRIFT_TRIES);
	return tid;
}

static json_object *
t_wait_terminal(int64_t tid, int64_t since)
{
	json_object *ev = NULL;
	int ok;

	H_WAIT(ok, T_LOOP_MS, h_ev_refresh() && (ev = h_ev_terminal(tid, since)) != NULL);
	H_CHECK(ok, "ticket %lld reached no terminal state within %d ms", (long long)tid, T_LOOP_MS);
	return ev;
}

/* Last event of a type for the ticket strictly before seq `before`. */
static json_object *
t_last_before(const char *type, int64_t tid, int64_t before)
{
	json_object *found = NULL;

	for (size_t i = 0; i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (h_ev_seq(e) >= before)
			break;
		if (op_json_int(e, "ticket", 0) == tid && strcmp(t_str(e, "type"), type) == 0)
			found = e;
	}
	return found;
}

/* Checks the opened -> diagnosis -> executed -> verification -> resolved chain. */
static void
t_check_chain(int64_t tid, int64_t since, const char *diag_words, const char *action,
    json_object **executed_out, json_object **verification_out)
{
	json_object *opened = h_ev_find("ticket_opened", tid, since);
	json_object *resolved = h_ev_find("ticket_resolved", tid, since);

	H_CHECK(opened != NULL, "ticket %lld: no ticket_opened event", (long long)tid);
	H_CHECK(resolved != NULL, "ticket %lld: not resolved (terminal: %s, reason %s)",
	    (long long)tid, t_str(h_ev_terminal(tid, since), "type"),
	    t_str(h_ev_data(h_ev_terminal(tid, since)), "reason"));
	int64_t rseq = h_ev_seq(resolved);
	json_object *ver = t_last_before("verification", tid, rseq);
	H_CHECK(ver != NULL, "ticket %lld resolved without a verification event", (long long)tid);
	json_object *exe = t_last_before("action_executed", tid, h_ev_seq(ver));
	H_CHECK(exe != NULL, "ticket %lld: no action_executed before its verification",
	    (long long)tid);
	json_object *diag = t_last_before("diagnosis", tid, h_ev_seq(exe));
	H_CHECK(diag != NULL, "ticket %lld: no diagnosis before the action", (long long)tid);
	H_CHECK(h_ev_seq(opened) < h_ev_seq(diag), "ticket %lld: diagnosis before ticket_opened",
	    (long long)tid);

	json_object *dd = h_ev_data(diag);
	H_CHECK(strstr(t_str(dd, "primary_diagnosis"), diag_words) != NULL,
	    "ticket %lld: primary_diagnosis \"%s\" does not mention \"%s\"", (long long)tid,
	    t_str(dd, "primary_diagnosis"), diag_words);
	json_object *sup = op_json_arr(op_json_obj(dd, "diagnosis"), "supporting_evidence");
	H_CHECK(sup != NULL && json_object_array_length(sup) > 0,
	    "ticket %lld: diagnosis.supporting_evidence is empty or missing", (long long)tid);

	json_object *xd = h_ev_data(exe);
	H_CHECK(strcmp(t_str(xd, "action"), action) == 0,
	    "ticket %lld: action_executed runs \"%s\", want %s", (long long)tid, t_str(xd, "action"),
	    action);

	json_object *vd = h_ev_data(ver);
	H_CHECK(strcmp(t_str(vd, "result"), "success") == 0,
	    "ticket %lld: verification result \"%s\" (%s)", (long long)tid, t_str(vd, "result"),
	    t_str(vd, "reason"));
	int64_t vts = h_ev_ts_ms(ver), xts = h_ev_ts_ms(exe);
	H_CHECK(vts > 0 && xts > 0 && vts >= xts + H_VERIFY_DELAY_MS,
	    "ticket %lld: verification at %s, action at %s: less than verify_delay %d ms apart",
	    (long long)tid, t_str(ver, "ts"), t_str(exe, "ts"), H_VERIFY_DELAY_MS);
	json_object *fig = op_json_obj(vd, "figures");
	H_CHECK(fig != NULL, "ticket %lld: verification has no figures", (long long)tid);
	H_CHECK(strcmp(t_str(fig, "state"), "healthy") == 0,
	    "ticket %lld: verification figures.state \"%s\"", (long long)tid, t_str(fig, "state"));
	H_CHECK(op_json_int(fig, "waited_ms", 0) >= H_VERIFY_DELAY_MS,
	    "ticket %lld: figures.waited_ms %lld < verify_delay", (long long)tid,
	    (long long)op_json_int(fig, "waited_ms", 0));
	*executed_out = exe;
	*verification_out = ver;
}

static void
t_check_ticket_status(int64_t tid, const char *want)
{
	json_object *ts = NULL;
	int rc = h_opsend(&ts, NULL, "tickets", NULL);
	int found = 0;

	H_CHECK(rc == 0 && json_object_is_type(ts, json_type_array), "opsend --json tickets: rc %d",
	    rc);
	for (size_t i = 0; i < json_object_array_length(ts); i++) {
		json_object *t = json_object_array_get_idx(ts, i);
		if (op_json_int(t, "id", 0) != tid)
			continue;
		found = 1;
		H_CHECK(strcmp(t_str(t, "status"), want) == 0, "ticket %lld is \"%s\" in opsend tickets, "
		    "want %s", (long long)tid, t_str(t, "status"), want);
	}
	H_CHECK(found, "ticket %lld missing from opsend --json tickets", (long long)tid);
	json_object_put(ts);
}

/* ------------------------------------------------------------------ */
/* environment A: the two loops, the opsend contract, bad input */

START_TEST(t_opsend_status_contract)
{
	t_begin("opsend_status_contract");
	json_object *s = h_status();
	static const char *const names[] = {"observer", "diagnoser", "executor", "verifier", "chaos"};

	H_CHECK(s != NULL && json_object_is_type(s, json_type_object),
	    "opsend --json status is not one JSON object");
	H_CHECK(strcmp(t_str(s, "mode"), "execute") == 0, "status.mode \"%s\"", t_str(s, "mode"));
	json_object *ws = op_json_arr(s, "workers");
	H_CHECK(ws != NULL && json_object_array_length(ws) == 5, "status.workers is not 5 entries");
	for (size_t i = 0; i < 5; i++) {
		json_object *w = h_worker(s, names[i]);
		json_object *v;
		H_CHECK(w != NULL, "no worker %s in status", names[i]);
		H_CHECK(json_object_object_get_ex(w, "pid", &v) && json_object_is_type(v, json_type_int) &&
		    json_object_get_int64(v) > 0, "worker %s: bad pid", names[i]);
		H_CHECK(kill((pid_t)json_object_get_int64(v), 0) == 0, "worker %s: pid %lld not alive",
		    names[i], (long long)json_object_get_int64(v));
		H_CHECK(strcmp(t_str(w, "state"), "ready") == 0, "worker %s: state \"%s\"", names[i],
		    t_str(w, "state"));
		H_CHECK(json_object_object_get_ex(w, "restarts", &v) &&
		    json_object_is_type(v, json_type_int), "worker %s: no integer restarts", names[i]);
	}
	json_object_put(s);

	/* No daemon behind the runtime directory: exit code 3. */
	char *argv[] = {(char *)h_bin("opsend"), "--runtime-dir", "/nonexistent/operatord-test",
	    "status", NULL};
	char *err = NULL;
	int rc = h_run(argv, 30000, NULL, &err);
	H_CHECK(rc == 3, "opsend with no daemon exited %d (want 3): %s", rc, err ? err : "");
	free(err);
	h_test_end();
}
END_TEST

START_TEST(t_bad_input)
{
	t_begin("bad_input");
	/* malformed JSON to rlnode /check: 400 saying so */
	struct h_resp r = h_http(H->node_port[0], "POST", "/check", "{\"key\": \"abc\", ");
	H_CHECK(r.code == 400, "malformed JSON to /check: HTTP %d (%s)", r.code, r.body ? r.body : "");
	H_CHECK(r.body && strstr(r.body, "invalid JSON") != NULL,
	    "400 body does not say \"invalid JSON\": %s", r.body ? r.body : "");
	h_resp_free(&r);
	r = h_http(H->node_port[1], "POST", "/check", "not json at all");
	H_CHECK(r.code == 400 && r.body && strstr(r.body, "invalid JSON") != NULL,
	    "garbage to /check: HTTP %d %s", r.code, r.body ? r.body : "");
	h_resp_free(&r);

	/* --check-config on broken configurations: exit 1 naming the problem */
	static const struct {
		const char *text, *must;
	} bad[] = {
		{"[operatord]\nruntime_dir = /tmp/x\nstate_dir = /tmp/y\nmode = sometimes\n"
		 "[subject.ratelimiter]\nredis = 127.0.0.1:6379\nnodes = http://127.0.0.1:1\n", "mode"},
		{"[operatord]\nruntime_dir = /tmp/x\nstate_dir = /tmp/y\nverify_delay = banana\n"
		 "[subject.ratelimiter]\nredis = 127.0.0.1:6379\nnodes = http://127.0.0.1:1\n",
		 "verify_delay"},
		{"[operatord]\nruntime_dir = /tmp/x\nstate_dir = /tmp/y\n"
		 "[subject.ratelimiter]\nredis = 127.0.0.1:6379\nnodes = ftp://127.0.0.1:1\n", "nodes"},
		{"[operatord]\nruntime_dir = /tmp/x\nstate_dir = /tmp/y\n[bogus]\nx = 1\n"
		 "[subject.ratelimiter]\nredis = 127.0.0.1:6379\nnodes = http://127.0.0.1:1\n", "bogus"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[256], *out = NULL, *e = NULL;
		snprintf(path, sizeof(path), "%s/bad%zu.conf", H->dir, i);
		FILE *f = fopen(path, "w");
		H_CHECK(f != NULL, "cannot write %s", path);
		fputs(bad[i].text, f);
		fclose(f);
		char *argv[] = {(char *)h_bin("operatord"), "--check-config", "--config", path, NULL};
		int rc = h_run(argv, 30000, &out, &e);
		H_CHECK(rc == 1, "--check-config on bad config %zu exited %d (stdout %s, stderr %s)", i, rc,
		    out, e);
		H_CHECK(strstr(e, bad[i].must) != NULL,
		    "--check-config on bad config %zu: message does not name \"%s\": %s", i,
		    bad[i].must, e);
		free(out);
		free(e);
	}
	/* the good one passes */
	{
		char *e = NULL;
		char *argv[] = {(char *)h_bin("operatord"), "--check-config", "--config", H->conf, NULL};
		int rc = h_run(argv, 30000, NULL, &e);
		H_CHECK(rc == 0, "--check-config on the running config exited %d: %s", rc, e);
		free(e);
	}

	/* a second daemon on the same runtime_dir refuses and the first runs on */
	{
		char *e = NULL;
		char *argv[] = {(char *)h_bin("operatord"), "--config", H->conf, NULL};
		int rc = h_run(argv, 30000, NULL, &e);
		H_CHECK(rc != 0, "a second operatord on %s started (rc %d)", H->run, rc);
		H_CHECK(rc != -1, "a second operatord on %s did not exit within 30 s", H->run);
		H_CHECK(strstr(e, "another operatord") != NULL,
		    "second operatord: message does not mention \"another operatord\": %s", e);
		free(e);
		json_object *s = h_status();
		H_CHECK(s != NULL, "the first operatord no longer answers after the second one tried");
		json_object_put(s);
		H_CHECK(kill(H->od_pid, 0) == 0, "the first operatord died");
	}
	h_test_end();
}
END_TEST

START_TEST(t_counter_drift_loop)
{
	const char *K = "drift-a";
	json_object *exe, *ver;

	t_begin("counter_drift_loop");
	t_prepare_key(K);
	pid_t ld = h_load_start(K, 40, 7);
	int64_t since = h_last_seq();
	int64_t tid = t_drift_ticket(K, "30s", since);
	t_wait_terminal(tid, since);
	t_check_chain(tid, since, "counter drift", "reset_counter", &exe, &ver);
	json_object *params = op_json_obj(h_ev_data(exe), "params");
	H_CHECK(strcmp(t_str(params, "key"), K) == 0, "reset_counter params.key \"%s\", want %s",
	    t_str(params, "key"), K);
	json_object *fig = op_json_obj(h_ev_data(ver), "figures");
	double v = op_json_double(fig, "value", 1e9);
	H_CHECK(v >= -H_DRIFT_TOL && v <= H_DRIFT_TOL,
	    "verification figures.value %g: counters not aligned within %d", v, H_DRIFT_TOL);
	json_object *fev = op_json_obj(fig, "evidence");
	H_CHECK(fev != NULL && op_json_int(fev, "drift", 1000000) >= -H_DRIFT_TOL &&
	    op_json_int(fev, "drift", 1000000) <= H_DRIFT_TOL,
	    "verification evidence drift %lld (redis %lld, nodes %lld)",
	    (long long)op_json_int(fev, "drift", 1000000), (long long)op_json_int(fev, "redis_count", -1),
	    (long long)op_json_int(fev, "node_allowed_sum", -1));
	t_check_ticket_status(tid, "resolved");
	h_load_stop(ld);
	h_test_end();
}
END_TEST

START_TEST(t_ghost_allowing_loop)
{
	const char *G = "ghost-a";
	json_object *exe, *ver;

	t_begin("ghost_allowing_loop");
	t_prepare_key(G);
	pid_t ld = h_load_start(G, 40, 7);
	int64_t since = h_last_seq();
	t_inject("ghost_allowing", G, "60s");
	int64_t tid = t_wait_ticket("ghost_allowing", G, since);
	t_wait_terminal(tid, since);
	t_check_chain(tid, since, "ghost allowing", "resync_node", &exe, &ver);
	json_object *params = op_json_obj(h_ev_data(exe), "params");
	H_CHECK(strcmp(t_str(params, "node"), "n3") == 0,
	    "resync_node params.node \"%s\", want n3 (the victim)", t_str(params, "node"));
	json_object *fig = op_json_obj(h_ev_data(ver), "figures");
	H_CHECK(op_json_double(fig, "value", -1) == 0,
	    "verification figures.value %g: requests still allowed for a limit-0 key",
	    op_json_double(fig, "value", -1));
	H_CHECK(op_json_int(op_json_obj(fig, "evidence"), "limit", -1) == 0,
	    "verification evidence limit %lld, want 0",
	    (long long)op_json_int(op_json_obj(fig, "evidence"), "limit", -1));
	t_check_ticket_status(tid, "resolved");
	h_load_stop(ld);
	h_test_end();
}
END_TEST

START_TEST(t_observe_mode_and_optail)
{
	const char *K = "drift-obs";
	json_object *res = NULL, *skip = NULL;
	int ok;

	t_begin("observe_mode_and_optail");
	t_prepare_key(K);
	H_CHECK(h_opsend(&res, NULL, "mode", "observe", NULL) == 0, "opsend mode observe failed");
	H_CHECK(json_object_is_type(res, json_type_string) &&
	    strcmp(json_object_get_string(res), "observe") == 0, "mode reply is not \"observe\"");
	json_object_put(res);
	json_object *s = h_status();
	H_CHECK(strcmp(t_str(s, "mode"), "observe") == 0, "status.mode \"%s\" after mode observe",
	    t_str(s, "mode"));
	json_object_put(s);

	int64_t since = h_last_seq();
	int64_t tid = t_drift_ticket(K, "30s", since);
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (skip = h_ev_find("action_skipped", tid, since)));
	H_CHECK(ok, "observe mode: no action_skipped for ticket %lld", (long long)tid);
	H_CHECK(strcmp(t_str(h_ev_data(skip), "reason"), "mode observe") == 0,
	    "action_skipped reason \"%s\", want \"mode observe\"", t_str(h_ev_data(skip), "reason"));
	H_CHECK(h_ev_find("diagnosis", tid, since) != NULL, "observe mode: ticket not diagnosed");
	/* Give the daemon several poll cycles to (wrongly) act. */
	int64_t until = op_mono_ms() + 4000;
	while (op_mono_ms() < until)
		op_sleep_ms(H_POLL_MS);
	h_ev_refresh();
	H_CHECK(h_ev_find("action_executed", tid, since) == NULL,
	    "observe mode: an action ran for ticket %lld", (long long)tid);
	H_CHECK(h_ev_find("action_executed", 0, since) == NULL, "observe mode: some action ran");
	json_object *t = h_ticket(tid);
	H_CHECK(t != NULL && strcmp(t_str(t, "status"), "diagnosed") == 0,
	    "observe mode: ticket %lld is \"%s\", want diagnosed", (long long)tid, t_str(t, "status"));
	json_object_put(t);
	H_CHECK(h_opsend(NULL, NULL, "mode", "execute", NULL) == 0, "opsend mode execute failed");

	/* optail --json: seq strictly increasing, RFC 3339 UTC ts, a type on every line */
	char *argv[] = {(char *)h_bin("optail"), "--runtime-dir", H->run, "--json", NULL};
	char *out = NULL, perr[128];
	H_CHECK(h_run(argv, 30000, &out, NULL) == 0, "optail --json failed");
	regex_t re;
	regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$",
	    REG_EXTENDED | REG_NOSUB);
	int64_t prev = 0;
	size_t lines = 0;
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_object *e = op_json_parse(line, strlen(line), perr, sizeof(perr)), *v;
		lines++;
		H_CHECK(e != NULL && json_object_is_type(e, json_type_object),
		    "optail line %zu is not a JSON object: %s", lines, line);
		H_CHECK(json_object_object_get_ex(e, "seq", &v) && json_object_is_type(v, json_type_int),
		    "optail line %zu: no integer seq", lines);
		H_CHECK(json_object_get_int64(v) > prev, "optail line %zu: seq %lld after %lld", lines,
		    (long long)json_object_get_int64(v), (long long)prev);
		prev = json_object_get_int64(v);
		H_CHECK(regexec(&re, t_str(e, "ts"), 0, NULL, 0) == 0,
		    "optail line %zu: ts \"%s\" is not RFC 3339 UTC", lines, t_str(e, "ts"));
		H_CHECK(t_str(e, "type")[0] != '\0', "optail line %zu: no type", lines);
		json_object_put(e);
	}
	regfree(&re);
	free(out);
	H_CHECK(lines > 10, "optail --json printed only %zu lines", lines);
	h_test_end();
}
END_TEST

/* ------------------------------------------------------------------ */
/* environment B: each invariant fires and clears */

START_TEST(t_node_down)
{
	t_begin("node_down");
	int64_t since = h_last_seq();
	kill(H->node_pid[1], SIGKILL);
	int64_t tid = t_wait_ticket("node_down", "n2", since);
	h_start_node(1);
	int ok;
	H_WAIT(ok, H_WAIT_MS, h_node_healthy(1));
	H_CHECK(ok, "restarted n2 is not healthy");
	json_object *ev = NULL;
	H_WAIT(ok, T_LOOP_MS, h_ev_refresh() && (ev = h_ev_find("ticket_cleared", tid, since)));
	H_CHECK(ok, "node_down ticket %lld not cleared after n2 came back (terminal: %s)",
	    (long long)tid, t_str(h_ev_terminal(tid, since), "type"));
	json_object *t = h_ticket(tid);
	H_CHECK(t && strcmp(t_str(t, "status"), "cleared") == 0, "ticket %lld is \"%s\"",
	    (long long)tid, t_str(t, "status"));
	json_object_put(t);
	h_test_end();
}
END_TEST

START_TEST(t_over_limit)
{
	const char *O = "ovl";
	char path[64];
	int ok;

	t_begin("over_limit");
	int64_t since = h_last_seq();
	H_CHECK(h_set_limit(0, O, 100), "PUT limit 100 failed");
	/* n3 must have cached 100 before its subscription is cut. */
	snprintf(path, sizeof(path), "/check");
	struct h_resp r = h_http(H->node_port[2], "POST", path, "{\"key\":\"ovl\"}");
	H_CHECK(r.code == 200, "first check on n3: HTTP %d", r.code);
	h_resp_free(&r);
	H_WAIT(ok, 10000, ({
		struct h_resp c = h_http(H->node_port[2], "GET", "/api/counters", NULL);
		json_object *arr = op_json_arr(c.json, "counters");
		int64_t cl = -1;
		for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
			if (!strcmp(t_str(json_object_array_get_idx(arr, i), "key"), O))
				cl = op_json_int(json_object_array_get_idx(arr, i), "cached_limit", -1);
		h_resp_free(&c);
		cl == 100;
	}));
	H_CHECK(ok, "n3 never cached limit 100 for %s", O);
	/* cut n3's subscriber, then lower the limit through n1: n3 misses it */
	char *list = h_redis("CLIENT LIST");
	H_CHECK(list != NULL, "CLIENT LIST failed");
	long long cid = -1;
	for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, " name=rlnode-n3-sub ") && !strncmp(line, "id=", 3))
			cid = atoll(line + 3);
	free(list);
	H_CHECK(cid > 0, "no Redis client named rlnode-n3-sub");
	char *k = h_redis("CLIENT KILL ID %lld", cid);
	H_CHECK(k != NULL, "CLIENT KILL ID %lld failed", cid);
	free(k);
	H_CHECK(h_set_limit(0, O, 3), "PUT limit 3 failed");
	int allowed = 0;
	for (int i = 0; i < 20; i++) {
		r = h_http(H->node_port[2], "POST", "/check", "{\"key\":\"ovl\"}");
		allowed += r.code == 200;
		h_resp_free(&r);
	}
	H_CHECK(allowed > 3, "stale n3 allowed only %d of 20 (the mechanism did not take)", allowed);
	int64_t tid = t_wait_ticket("over_limit", O, since);
	H_CHECK(tid > 0, "no over_limit ticket");
	/* it heals (resync, or the window slides) and the ticket closes */
	json_object *term = t_wait_terminal(tid, since);
	fprintf(stderr, "over_limit ticket %lld ended %s\n", (long long)tid, t_str(term, "type"));
	h_test_end();
}
END_TEST

START_TEST(t_high_latency)
{
	const char *L = "lat";
	int ok;

	t_begin("high_latency");
	H_CHECK(h_set_limit(0, L, 100000), "PUT limit failed");
	pid_t ld = h_load_start(L, 90, 7);
	H_WAIT(ok, H_WAIT_MS, ({
		int enough = 1;
		for (int i = 0; i < H_NNODES; i++) {
			struct h_resp c = h_http(H->node_port[i], "GET", "/health", NULL);
			enough &= op_json_int(c.json, "checks_recent", 0) >= 60;
			h_resp_free(&c);
		}
		enough;
	}));
	H_CHECK(ok, "load never reached 60 recent checks per node");
	int64_t since = h_last_seq();
	char *p = h_redis("CLIENT PAUSE 3000 WRITE");
	H_CHECK(p != NULL, "CLIENT PAUSE failed");
	free(p);
	int64_t tid = t_wait_ticket("high_latency", NULL, since);
	/* No automatic action for latency: it may escalate, then must clear once
	 * the pause is over and the p99 span has rolled past it. */
	json_object *term = NULL;
	H_WAIT(ok, T_LOOP_MS, h_ev_refresh() &&
	    ((term = h_ev_find("ticket_cleared", tid, since)) ||
	    (term = h_ev_find("ticket_resolved", tid, since))));
	H_CHECK(ok, "high_latency ticket %lld did not clear within %d ms after the pause "
	    "(first terminal: %s)", (long long)tid, T_LOOP_MS, t_str(h_ev_terminal(tid, since), "type"));
	fprintf(stderr, "high_latency ticket %lld ended %s\n", (long long)tid, t_str(term, "type"));
	h_load_stop(ld);
	h_test_end();
}
END_TEST

START_TEST(t_redis_unreachable)
{
	const char *K = "red";
	int ok;

	t_begin("redis_unreachable");
	t_prepare_key(K);
	pid_t ld = h_load_start(K, 30, 7);
	int64_t since = h_last_seq();
	/* A ticket in flight when Redis goes: in verification after its reset. */
	int64_t dtid = t_drift_ticket(K, "30s", since);
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && h_ev_find("action_executed", dtid, since));
	H_CHECK(ok, "no action_executed for drift ticket %lld", (long long)dtid);
	H_CHECK(h_ev_terminal(dtid, since) == NULL, "drift ticket %lld closed before Redis went",
	    (long long)dtid);
	int64_t kill_seq = h_last_seq();
	kill(H->redis_pid, SIGKILL);
	int64_t tid = t_wait_ticket("redis_unreachable", "redis", kill_seq);
	/* Keep it down for a while: diagnosis, escalation, several verifier/observer rounds. */
	json_object *ev = NULL;
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (ev = h_ev_find("diagnosis", tid, since)));
	H_CHECK(ok, "redis_unreachable ticket %lld never diagnosed", (long long)tid);
	int64_t until = op_mono_ms() + 8000;
	while (op_mono_ms() < until)
		op_sleep_ms(H_POLL_MS);
	H_CHECK(h_ev_refresh(), "optail failed");
	ev = h_ev_find("ticket_resolved", 0, kill_seq);
	H_CHECK(ev == NULL, "ticket %lld (%s/%s) resolved while Redis was down (#%lld, figures %s)",
	    (long long)op_json_int(ev, "ticket", 0), t_str(ev, "invariant"), t_str(ev, "entity"),
	    (long long)h_ev_seq(ev), json_object_to_json_string(op_json_obj(h_ev_data(ev), "figures")));
	H_CHECK(h_ev_find("ticket_cleared", tid, since) == NULL,
	    "redis_unreachable ticket cleared while Redis was down");
	/* same port, fresh process */
	h_kill_wait(&H->redis_pid, SIGKILL);
	h_start_redis();
	H_WAIT(ok, H_WAIT_MS, h_redis_ok());
	H_CHECK(ok, "restarted redis-server does not answer");
	H_WAIT(ok, T_LOOP_MS, h_ev_refresh() && (ev = h_ev_find("ticket_cleared", tid, since)));
	H_CHECK(ok, "redis_unreachable ticket %lld not cleared after Redis came back (terminal %s)",
	    (long long)tid, t_str(h_ev_terminal(tid, since), "type"));
	h_load_stop(ld);
	h_test_end();
}
END_TEST

/* ------------------------------------------------------------------ */
/* environment C: kill -9 of each worker with a ticket in flight */

static int64_t
t_resets_total(int *missing)
{
	int64_t sum = 0;

	*missing = 0;
	for (int i = 0; i < H_NNODES; i++) {
		struct h_resp r = h_http(H->node_port[i], "GET", "/health", NULL);
		json_object *v;
		if (!json_object_object_get_ex(r.json, "resets_total", &v) || v == NULL)
			*missing = 1;
		else
			sum += json_object_get_int64(v);
		h_resp_free(&r);
	}
	return sum;
}

/* At most one action_executed per action_id, and the ledger's executed
 * reset_counter count equals the resets the nodes performed. */
static void
t_check_no_double(void)
{
	H_CHECK(h_ev_refresh(), "optail failed");
	json_object *seen = json_object_new_object();
	int64_t ev_resets = 0;
	for (size_t i = 0; i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (strcmp(t_str(e, "type"), "action_executed") != 0)
			continue;
		char aid[32];
		snprintf(aid, sizeof(aid), "%lld", (long long)op_json_int(h_ev_data(e), "action_id", 0));
		H_CHECK(!json_object_object_get_ex(seen, aid, NULL),
		    "action %s has two action_executed events (second #%lld)", aid,
		    (long long)h_ev_seq(e));
		json_object_object_add(seen, aid, NULL);
		ev_resets += strcmp(t_str(h_ev_data(e), "action"), "reset_counter") == 0;
	}
	json_object_put(seen);
	json_object *acts = NULL;
	H_CHECK(h_opsend(&acts, NULL, "actions", NULL) == 0, "opsend --json actions failed");
	int64_t ledger_resets = 0;
	for (size_t i = 0; i < json_object_array_length(acts); i++) {
		json_object *a = json_object_array_get_idx(acts, i);
		ledger_resets += !strcmp(t_str(a, "name"), "reset_counter") &&
		    !strcmp(t_str(a, "status"), "executed");
	}
	json_object_put(acts);
	H_CHECK(ledger_resets == ev_resets,
	    "ledger has %lld executed reset_counter actions, events say %lld",
	    (long long)ledger_resets, (long long)ev_resets);
	int missing;
	int64_t node_resets = t_resets_total(&missing);
	H_CHECK(!missing, "rlnode GET /health has no resets_total field: cannot prove no reset "
	    "ran twice (ledger: %lld executed reset_counter)", (long long)ledger_resets);
	H_CHECK(node_resets == ledger_resets,
	    "rlnodes performed %lld resets, the ledger executed %lld reset_counter actions",
	    (long long)node_resets, (long long)ledger_resets);
}

/* Every fault injected is undone at most once (a chaos restart must not undo
 * again what was already undone). */
static void
t_check_faults_cleared_once(void)
{
	H_CHECK(h_ev_refresh(), "optail failed");
	json_object *cleared = json_object_new_object();
	for (size_t i = 0; i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (strcmp(t_str(e, "type"), "fault_cleared") != 0)
			continue;
		char k[128];
		snprintf(k, sizeof(k), "%s/%s/%lld", t_str(h_ev_data(e), "fault"),
		    t_str(h_ev_data(e), "target"), (long long)op_json_int(h_ev_data(e), "started_at", 0));
		H_CHECK(!json_object_object_get_ex(cleared, k, NULL),
		    "fault %s cleared twice (second fault_cleared at #%lld, reason \"%s\")", k,
		    (long long)h_ev_seq(e), t_str(h_ev_data(e), "reason"));
		json_object_object_add(cleared, k, NULL);
	}
	json_object_put(cleared);
}

/* The ledger's faults table agrees with the fault_cleared events. */
static void
t_check_fault_ledger(void)
{
	H_CHECK(h_ev_refresh(), "optail failed");
	json_object *faults = NULL;
	H_CHECK(h_opsend(&faults, NULL, "faults", NULL) == 0, "opsend faults failed");
	for (size_t i = 0; i < json_object_array_length(faults); i++) {
		json_object *f = json_object_array_get_idx(faults, i);
		json_object *ce = NULL;
		for (size_t j = 0; j < json_object_array_length(h_evs); j++) {
			json_object *e = json_object_array_get_idx(h_evs, j);
			if (!strcmp(t_str(e, "type"), "fault_cleared") &&
			    !strcmp(t_str(h_ev_data(e), "fault"), t_str(f, "fault")) &&
			    op_json_int(h_ev_data(e), "started_at", 0) == op_json_int(f, "started_at", -1))
				ce = e;
		}
		H_CHECK(ce == NULL || strcmp(t_str(f, "status"), "cleared") == 0,
		    "fault %s on %s (ledger id %lld) was cleared (event #%lld, data.fault_id %lld) but "
		    "the ledger's faults row says \"%s\"", t_str(f, "fault"), t_str(f, "target"),
		    (long long)op_json_int(f, "id", 0), (long long)h_ev_seq(ce),
		    (long long)op_json_int(h_ev_data(ce), "fault_id", 0), t_str(f, "status"));
	}
	json_object_put(faults);
}

static void
t_kill_worker(const char *worker, const char *key)
{
	json_object *s, *w, *ev = NULL;
	int ok;
	int64_t aid = 0;

	t_prepare_key(key);
	int64_t since = h_last_seq();
	int is_exec = !strcmp(worker, "executor");
	if (is_exec)
		H_CHECK(h_opsend(NULL, NULL, "mode", "approve", NULL) == 0, "mode approve failed");
	int64_t tid = t_drift_ticket(key, "15s", since);

	if (is_exec) {
		/* Hold the action at approval, slow the executor's pre-action observation
		 * with a stopped node, approve, and kill it while it holds the action. */
		H_WAIT(ok, H_WAIT_MS, h_ev_refresh() &&
		    (ev = h_ev_find("action_awaiting_approval", tid, since)));
		H_CHECK(ok, "no action_awaiting_approval for ticket %lld", (long long)tid);
		aid = op_json_int(h_ev_data(ev), "action_id", 0);
	} else {
		/* In verification: executed, not yet verified. */
		H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && h_ev_find("action_executed", tid, since));
		H_CHECK(ok, "no action_executed for ticket %lld", (long long)tid);
	}
	s = h_status();
	w = h_worker(s, worker);
	H_CHECK(w && !strcmp(t_str(w, "state"), "ready"), "%s not ready before the kill", worker);
	pid_t old = (pid_t)op_json_int(w, "pid", 0);
	int64_t restarts0 = op_json_int(w, "restarts", 0);
	json_object_put(s);
	H_CHECK(old > 0, "%s has no pid", worker);
	if (is_exec) {
		char ids[32];
		snprintf(ids, sizeof(ids), "%lld", (long long)aid);
		kill(H->node_pid[2], SIGSTOP);
		int rc = h_opsend(NULL, NULL, "approve", ids, NULL);
		H_CHECK(rc == 0, "opsend approve %s exited %d", ids, rc);
		/* Killed only once the action is in its hands (its pre-action
		 * observation waits on the stopped node). */
		H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && h_ev_find("action_dispatched", tid, since));
		kill(old, SIGKILL);
		kill(H->node_pid[2], SIGCONT);
		H_CHECK(ok, "action %s never dispatched", ids);
		H_CHECK(h_opsend(NULL, NULL, "mode", "execute", NULL) == 0, "mode execute failed");
	} else {
		h_ev_refresh();
		H_CHECK(h_ev_terminal(tid, since) == NULL, "ticket %lld closed before the kill: not in flight",
		    (long long)tid);
		kill(old, SIGKILL);
	}
	int64_t t0 = op_mono_ms(), back_ms = -1;
	int64_t end = t0 + 15000;
	while (op_mono_ms() < end) {
		s = h_status();
		w = h_worker(s, worker);
		if (w && op_json_int(w, "pid", 0) > 0 && op_json_int(w, "pid", 0) != old &&
		    !strcmp(t_str(w, "state"), "ready") && op_json_int(w, "restarts", 0) >= 1 &&
		    op_json_int(w, "restarts", 0) > restarts0) {
			back_ms = op_mono_ms() - t0;
			json_object_put(s);
			break;
		}
		json_object_put(s);
		op_sleep_ms(100);
	}
	H_CHECK(back_ms >= 0, "%s (pid %d) not back and ready within 15 s of SIGKILL", worker,
	    (int)old);
	fprintf(stderr, "%s back in %lld ms (observed through opsend polling)\n", worker,
	    (long long)back_ms);

	json_object *term = t_wait_terminal(tid, since);
	const char *tt = t_str(term, "type");
	/* Whatever the kill interrupted, the loop still closes: verified, resolved. */
	H_CHECK(!strcmp(tt, "ticket_resolved"), "ticket %lld ended %s (reason \"%s\"), want resolved",
	    (long long)tid, tt, t_str(h_ev_data(term), "reason"));
	json_object *exited = h_ev_find("worker_exited", 0, since);
	H_CHECK(exited && h_ev_seq(exited) < h_ev_seq(term),
	    "no worker_exited event before ticket %lld closed", (long long)tid);
	t_check_ticket_status(tid, "resolved");

	if (is_exec) {
		json_object *unk = h_ev_find("action_unknown", tid, since);
		H_CHECK(unk != NULL && op_json_int(h_ev_data(unk), "action_id", 0) == aid,
		    "executor killed holding action %lld: no action_unknown for it", (long long)aid);
		for (size_t i = 0; i < json_object_array_length(h_evs); i++) {
			json_object *e = json_object_array_get_idx(h_evs, i);
			H_CHECK(strcmp(t_str(e, "type"), "action_executed") != 0 ||
			    op_json_int(h_ev_data(e), "action_id", 0) != aid,
			    "action %lld marked unknown was executed (#%lld)", (long long)aid,
			    (long long)h_ev_seq(e));
		}
	}
	if (!strcmp(worker, "chaos")) {
		/* The fault survives the chaos restart: its TTL still undoes it, once. */
		json_object *inj = h_ev_find("fault_injected", 0, since);
		H_CHECK(inj != NULL, "no fault_injected event");
		int64_t started = op_json_int(h_ev_data(inj), "started_at", 0);
		H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && ({
			int found = 0;
			for (size_t i = 0; i < json_object_array_length(h_evs); i++) {
				json_object *e = json_object_array_get_idx(h_evs, i);
				found |= !strcmp(t_str(e, "type"), "fault_cleared") &&
				    op_json_int(h_ev_data(e), "started_at", 0) == started;
			}
			found;
		}));
		H_CHECK(ok, "fault injected at %lld never cleared after the chaos restart",
		    (long long)started);
	}
	t_check_no_double();
}

START_TEST(t_kill_observer)
{
	t_begin("kill_observer");
	t_kill_worker("observer", "kill-obs");
	h_test_end();
}
END_TEST

START_TEST(t_kill_diagnoser)
{
	t_begin("kill_diagnoser");
	t_kill_worker("diagnoser", "kill-diag");
	h_test_end();
}
END_TEST

START_TEST(t_kill_executor)
{
	t_begin("kill_executor");
	t_kill_worker("executor", "kill-exec");
	h_test_end();
}
END_TEST

START_TEST(t_kill_verifier)
{
	t_begin("kill_verifier");
	t_kill_worker("verifier", "kill-ver");
	h_test_end();
}
END_TEST

START_TEST(t_kill_chaos)
{
	t_begin("kill_chaos");
	t_kill_worker("chaos", "kill-chaos");
	t_check_faults_cleared_once();
	h_test_end();
}
END_TEST

START_TEST(t_fault_ledger)
{
	t_begin("fault_ledger");
	int ok;
	/* Runs before the chaos kill: a chaos restart re-reads the faults table.
	 * Wait until every fault so far has had its TTL (15 s) and its undo. */
	H_WAIT(ok, H_WAIT_MS, ({
		json_object *fl = NULL;
		int active = 0;
		h_opsend(&fl, NULL, "faults", NULL);
		h_ev_refresh();
		for (size_t i = 0; fl && i < json_object_array_length(fl); i++) {
			json_object *f = json_object_array_get_idx(fl, i);
			active |= op_json_int(f, "started_at", 0) + op_json_int(f, "ttl_ms", 0) + 5000 >
			    op_wall_ms();
		}
		json_object_put(fl);
		!active;
	}));
	t_check_fault_ledger();
	h_test_end();
}
END_TEST

static Suite *
loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc;

	tc = tcase_create("loops");
	tcase_add_unchecked_fixture(tc, h_env_start, h_env_stop);
	tcase_set_timeout(tc, T_TCASE_TIMEOUT);
	tcase_add_test(tc, t_opsend_status_contract);
	tcase_add_test(tc, t_bad_input);
	tcase_add_test(tc, t_counter_drift_loop);
	tcase_add_test(tc, t_ghost_allowing_loop);
	tcase_add_test(tc, t_observe_mode_and_optail);
	suite_add_tcase(s, tc);

	tc = tcase_create("invariants");
	tcase_add_unchecked_fixture(tc, h_env_start, h_env_stop);
	tcase_set_timeout(tc, T_TCASE_TIMEOUT);
	tcase_add_test(tc, t_node_down);
	tcase_add_test(tc, t_over_limit);
	tcase_add_test(tc, t_high_latency);
	tcase_add_test(tc, t_redis_unreachable);
	suite_add_tcase(s, tc);

	tc = tcase_create("worker_kill");
	tcase_add_unchecked_fixture(tc, h_env_start, h_env_stop);
	tcase_set_timeout(tc, T_TCASE_TIMEOUT);
	tcase_add_test(tc, t_kill_observer);
	tcase_add_test(tc, t_kill_diagnoser);
	tcase_add_test(tc, t_kill_executor);
	tcase_add_test(tc, t_kill_verifier);
	tcase_add_test(tc, t_fault_ledger);
	tcase_add_test(tc, t_kill_chaos);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	h_init();
	SRunner *sr = srunner_create(loop_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
