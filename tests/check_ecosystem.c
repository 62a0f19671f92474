/*
 * check_ecosystem: operatord among the tools operators already run, all real
 * processes: the harness' redis-server, rlnodes and operatord, plus a real
 * Alertmanager and a real Prometheus (bookworm packages), each on a free
 * port with its storage in the test's temporary directory.
 *
 * One pass, in order:
 *  - ps names every worker "operatord: ROLE" (cmdline) and "od: ROLE" (comm);
 *  - ticket B: rlnode n3 is SIGKILLed, node_down has no safe action and
 *    escalates: Alertmanager shows OperatordEscalation with its labels, and
 *    shows it again after a restart (re-sent); n3 comes back, B clears and
 *    the alert ends;
 *  - ticket A: counter drift (Redis holds entries no node allowed), the
 *    reset_counter action waits for approval: OperatordApprovalNeeded is
 *    shown; the test approves, A is verified resolved and the alert ends;
 *  - ticket D: the same, rejected: the alert ends;
 *  - a worker is SIGKILLed and restarted;
 *  - promtool check metrics passes on operatord's and an rlnode's /metrics,
 *    with tickets, actions and that restart in them; Prometheus, scraping
 *    operatord, answers a query with the restart count;
 *  - Alertmanager hangs (SIGSTOP), POSTs time out only after 60 s: ticket C
 *    still waits for approval, is approved and resolves, opsend answers
 *    meanwhile; Alertmanager dies and the failed POSTs are counted.
 */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define E_TCASE_TIMEOUT 240   /* seconds: the whole pass, with generous bounds */
#define E_LOOP_MS 60000       /* an event that needs a whole loop */
#define E_APPROVAL_TTL "10m"  /* approvals wait for the test, never expire here */
#define E_RESEND "2s"         /* [alerts] resend_interval */
#define E_POST_TIMEOUT "60s"  /* [alerts] timeout: a hung Alertmanager holds a POST this long */

struct e_state {
	pid_t am_pid, prom_pid;
	int am_port, prom_port, metrics_port;
};

static struct e_state *E;

static int
e_get(int port, const char *path, struct h_resp *r)
{
	*r = h_http(port, "GET", path, NULL);
	return r->code;
}

/* ---- Alertmanager ---- */

static void
e_start_am(void)
{
	char cfg[300], store[300], listen[64], cfgarg[320], storearg[320];
	FILE *f;

	snprintf(cfg, sizeof(cfg), "%s/am.yml", H->dir);
	snprintf(store, sizeof(store), "%s/am-data", H->dir);
	f = fopen(cfg, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n");
	fclose(f);
	if (E->am_port == 0)
		E->am_port = h_free_port(); /* a restart keeps the port the config names */
	snprintf(listen, sizeof(listen), "--web.listen-address=127.0.0.1:%d", E->am_port);
	snprintf(cfgarg, sizeof(cfgarg), "--config.file=%s", cfg);
	snprintf(storearg, sizeof(storearg), "--storage.path=%s", store);
	char *argv[] = {"prometheus-alertmanager", cfgarg, storearg, listen,
		"--cluster.listen-address=", NULL};
	E->am_pid = h_spawn(argv, "alertmanager.log");
	int ok;
	struct h_resp r;
	H_WAIT(ok, H_WAIT_MS, ({
		int up = e_get(E->am_port, "/-/ready", &r) == 200;
		h_resp_free(&r);
		up;
	}));
	H_CHECK(ok, "alertmanager did not become ready on port %d", E->am_port);
}

/* The active alert named `name` whose label `label` is `id`, or NULL (caller
 * frees *all). */
static json_object *
e_am_alert_by(const char *name, const char *label, int64_t id, json_object **all)
{
	struct h_resp r;
	char t[32];

	*all = NULL;
	snprintf(t, sizeof(t), "%lld", (long long)id);
	if (e_get(E->am_port, "/api/v2/alerts", &r) != 200 || r.json == NULL) {
		h_resp_free(&r);
		return NULL;
	}
	*all = json_object_get(r.json);
	h_resp_free(&r);
	for (size_t i = 0; i < json_object_array_length(*all); i++) {
		json_object *a = json_object_array_get_idx(*all, i);
		json_object *l = op_json_obj(a, "labels");
		if (!strcmp(op_json_str(l, "alertname", ""), name) &&
		    !strcmp(op_json_str(l, label, ""), t) &&
		    !strcmp(op_json_str(op_json_obj(a, "status"), "state", ""), "active"))
			return a;
	}
	return NULL;
}

static json_object *
e_am_alert(const char *name, int64_t tid, json_object **all)
{
	return e_am_alert_by(name, "ticket", tid, all);
}

static int
e_am_has_action(int64_t action_id)
{
	json_object *all;
	int has = e_am_alert_by("OperatordApprovalNeeded", "action_id", action_id, &all) != NULL;
	json_object_put(all);
	return has;
}

static int
e_am_has(const char *name, int64_t tid)
{
	json_object *all;
	int has = e_am_alert(name, tid, &all) != NULL;
	json_object_put(all);
	return has;
}

static void
e_check_labels(const char *name, int64_t tid, const char *invariant, const char *entity)
{
	json_object *all, *a = e_am_alert(name, tid, &all);
	H_CHECK(a != NULL, "%s for ticket %lld vanished", name, (long long)tid);
	json_object *l = op_json_obj(a, "labels"), *an = op_json_obj(a, "annotations");
	char pm[96];
	snprintf(pm, sizeof(pm), "opsend ticket show %lld --postmortem", (long long)tid);
	H_CHECK(!strcmp(op_json_str(l, "subject", ""), "ratelimiter") &&
	    !strcmp(op_json_str(l, "invariant", ""), invariant) &&
	    !strcmp(op_json_str(l, "entity", ""), entity) && op_json_str(l, "severity", "")[0] &&
	    !strcmp(op_json_str(an, "postmortem", ""), pm) && op_json_str(an, "summary", "")[0],
	    "%s has wrong labels/annotations: %s", name, json_object_to_json_string(a));
	json_object_put(all);
}

/* ---- Prometheus ---- */

static void
e_start_prometheus(void)
{
	char cfg[300], store[300], listen[64], cfgarg[320], storearg[320];
	FILE *f;

	snprintf(cfg, sizeof(cfg), "%s/prom.yml", H->dir);
	snprintf(store, sizeof(store), "%s/prom-data", H->dir);
	f = fopen(cfg, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
	    "scrape_configs:\n  - job_name: operatord\n    static_configs:\n"
	    "      - targets: ['127.0.0.1:%d']\n", E->metrics_port);
	fclose(f);
	E->prom_port = h_free_port();
	snprintf(listen, sizeof(listen), "--web.listen-address=127.0.0.1:%d", E->prom_port);
	snprintf(cfgarg, sizeof(cfgarg), "--config.file=%s", cfg);
	snprintf(storearg, sizeof(storearg), "--storage.tsdb.path=%s", store);
	char *argv[] = {"prometheus", cfgarg, storearg, listen, NULL};
	E->prom_pid = h_spawn(argv, "prometheus.log");
}

/* The value of an instant query's first sample, as text ("" when none). */
static void
e_prom_query(const char *q, char *out, size_t len)
{
	char path[512], enc[400];
	size_t j = 0;
	struct h_resp r;

	out[0] = '\0';
	for (const char *p = q; *p && j + 4 < sizeof(enc); p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '_')
			enc[j++] = *p;
		else
			j += (size_t)snprintf(enc + j, sizeof(enc) - j, "%%%02X", (unsigned char)*p);
	}
	enc[j] = '\0';
	snprintf(path, sizeof(path), "/api/v1/query?query=%s", enc);
	if (e_get(E->prom_port, path, &r) == 200) {
		json_object *res = op_json_arr(op_json_obj(r.json, "data"), "result");
		json_object *v = res && json_object_array_length(res) > 0
		    ? op_json_arr(json_object_array_get_idx(res, 0), "value") : NULL;
		if (v && json_object_array_length(v) == 2)
			op_strlcpy(out, json_object_get_string(json_object_array_get_idx(v, 1)), len);
	}
	h_resp_free(&r);
}

/* ---- operatord ---- */

static void
e_write_conf(void)
{
	FILE *f = fopen(H->conf, "w");

	ck_assert_msg(f != NULL, "cannot write %s", H->conf);
	fprintf(f, "[operatord]\nruntime_dir = %s\nstate_dir = %s\nmode = approve\n"
	    "verify_delay = %dms\nverify_settle = %dms\nverify_timeout = 20s\n"
	    "poll_interval = 500ms\nmetrics_listen = 127.0.0.1:%d\n\n", H->run, H->state,
	    H_VERIFY_DELAY_MS, H_VERIFY_SETTLE_MS, E->metrics_port);
	fprintf(f, "[subject.ratelimiter]\nredis = 127.0.0.1:%d\nnodes = ", H->redis_port);
	for (int i = 0; i < H_NNODES; i++)
		fprintf(f, "%shttp://127.0.0.1:%d", i ? "," : "", H->node_port[i]);
	fprintf(f, "\ndrift_tolerance = %d\n\n[chaos]\nenabled = true\n\n", H_DRIFT_TOL);
	fprintf(f, "[safety]\napproval_ttl = %s\napproval_expiry = escalate\nblast_radius = 100%%\n\n",
	    E_APPROVAL_TTL);
	fprintf(f, "[alerts]\nalertmanager = http://127.0.0.1:%d/\nresend_interval = %s\n"
	    "timeout = %s\n", E->am_port, E_RESEND, E_POST_TIMEOUT);
	fclose(f);
}

static int
e_ready(void)
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
e_restart_od(void)
{
	int ok;

	if (H->od_pid > 0) {
		kill(H->od_pid, SIGTERM);
		int64_t end = op_mono_ms() + 20000;
		while (op_mono_ms() < end && waitpid(H->od_pid, NULL, WNOHANG) == 0)
			op_sleep_ms(50);
		h_kill_wait(&H->od_pid, SIGKILL);
	}
	static const char *const files[] = {"ledger.db", "ledger.db-wal", "ledger.db-shm"};
	for (size_t i = 0; i < OP_ARRAY_LEN(files); i++) {
		char path[300];
		snprintf(path, sizeof(path), "%s/%s", H->state, files[i]);
		unlink(path);
	}
	e_write_conf();
	char *argv[] = {(char *)h_bin("operatord"), "--config", H->conf, NULL};
	H->od_pid = h_spawn(argv, "operatord.log");
	H_WAIT(ok, H_WAIT_MS, e_ready());
	H_CHECK(ok, "operatord with [alerts] did not become ready");
}

static int
e_op(json_object **res, const char *a0, const char *a1, const char *a2)
{
	char *err = NULL;
	int rc = h_opsend(res, &err, a0, a1, a2, NULL);

	free(err);
	return rc;
}

/* Counter drift on `key` under load, made by the test itself: Redis gets
 * entries no node allowed (as when a timed-out increment is retried). */
static int64_t
e_drift(const char *key, int64_t *since)
{
	int ok;
	char zkey[96];

	H_CHECK(h_set_limit(0, key, 100000), "PUT /api/limits/%s failed", key);
	h_load_start(key, 20, 7);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "the nodes' uptime never covered their window");
	*since = h_last_seq();
	snprintf(zkey, sizeof(zkey), "rl:%s", key);
	char *r = h_redis("EVAL %s 1 %s", "local t = redis.call('TIME') "
	    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
	    "for i = 1, 20 do redis.call('ZADD', KEYS[1], now, 'extra:' .. now .. ':' .. i) end "
	    "return now", zkey);
	H_CHECK(r != NULL, "EVAL on %s failed", zkey);
	free(r);
	int64_t tid = 0;
	H_WAIT(ok, E_LOOP_MS, h_ev_refresh() && (tid = h_ev_ticket("counter_drift", key, *since)) > 0);
	H_CHECK(ok, "no counter_drift ticket for %s", key);
	return tid;
}

static int64_t
e_wait_action(int64_t tid, int64_t since)
{
	json_object *ev = NULL;
	int ok;

	H_WAIT(ok, E_LOOP_MS, h_ev_refresh() &&
	    (ev = h_ev_find("action_awaiting_approval", tid, since)) != NULL);
	H_CHECK(ok, "ticket %lld never waited for approval", (long long)tid);
	return op_json_int(h_ev_data(ev), "action_id", 0);
}

static void
e_wait_terminal(int64_t tid, int64_t since, const char *type)
{
	int ok;
	H_WAIT(ok, E_LOOP_MS, h_ev_refresh() && h_ev_find(type, tid, since) != NULL);
	H_CHECK(ok, "ticket %lld: no %s", (long long)tid, type);
}

/* The sample value of a series (exact "name{labels}" text) in a scrape; -1 if absent. */
static double
e_sample(const char *scrape, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = scrape; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return atof(p + n + 1);
	return -1;
}

/* Saves a /metrics answer and runs promtool check metrics on it. */
static char *
e_promtool_metrics(int port, const char *name)
{
	struct h_resp r;
	char path[300], cmd[400], *out = NULL, *err = NULL;

	H_CHECK(e_get(port, "/metrics", &r) == 200 && r.body, "GET /metrics on %d failed", port);
	char *body = strdup(r.body);
	h_resp_free(&r);
	snprintf(path, sizeof(path), "%s/%s.prom", H->dir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(body, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
	char *argv[] = {"sh", "-c", cmd, NULL};
	int rc = h_run(argv, 30000, &out, &err);
	H_CHECK(rc == 0, "promtool check metrics on %s: exit %d\n%s%s", name, rc, out ? out : "",
	    err ? err : "");
	free(out);
	free(err);
	return body;
}

START_TEST(t_ecosystem)
{
	int ok;
	int64_t sinceA, sinceC;
	char buf[64];

	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin("ecosystem");
	E->metrics_port = h_free_port();
	e_start_am();
	e_start_prometheus();
	e_restart_od();

	/* ps: every worker is "operatord: ROLE", top's comm "od: ROLE". */
	json_object *st = h_status();
	json_object *ws = op_json_arr(st, "workers");
	for (size_t i = 0; ws && i < json_object_array_length(ws); i++) {
		json_object *w = json_object_array_get_idx(ws, i);
		char path[64], want[64], got[256] = "";
		snprintf(path, sizeof(path), "/proc/%lld/cmdline", (long long)op_json_int(w, "pid", 0));
		FILE *f = fopen(path, "r");
		H_CHECK(f != NULL, "no %s", path);
		size_t n = fread(got, 1, sizeof(got) - 1, f);
		fclose(f);
		got[n] = '\0'; /* the title is NUL-terminated: the first string is all of it */
		snprintf(want, sizeof(want), "operatord: %s", op_json_str(w, "name", ""));
		H_CHECK(!strcmp(got, want), "worker cmdline is \"%s\", want \"%s\"", got, want);
		for (size_t k = strlen(got) + 1; k < n; k++)
			H_CHECK(got[k] == '\0', "stale arguments after the title in %s", path);
		snprintf(path, sizeof(path), "/proc/%lld/comm", (long long)op_json_int(w, "pid", 0));
		f = fopen(path, "r");
		n = f ? fread(got, 1, sizeof(got) - 1, f) : 0;
		if (f)
			fclose(f);
		got[n] = '\0';
		got[strcspn(got, "\n")] = '\0';
		snprintf(want, sizeof(want), "od: %.11s", op_json_str(w, "name", ""));
		H_CHECK(!strcmp(got, want), "worker comm is \"%s\", want \"%s\"", got, want);
	}
	H_CHECK(ws && json_object_array_length(ws) == 5, "status lists no workers");
	json_object_put(st);

	/* B: n3 dies; node_down has no safe action and escalates; n3 comes back,
	 * B clears and its escalation alert ends. */
	int64_t sinceB = h_last_seq();
	h_kill_wait(&H->node_pid[2], SIGKILL);
	int64_t tB = 0;
	H_WAIT(ok, E_LOOP_MS, h_ev_refresh() && (tB = h_ev_ticket("node_down", "n3", sinceB)) > 0);
	H_CHECK(ok, "no node_down ticket for n3");
	e_wait_terminal(tB, sinceB, "ticket_escalated");
	H_WAIT(ok, E_LOOP_MS, e_am_has("OperatordEscalation", tB));
	H_CHECK(ok, "Alertmanager never showed OperatordEscalation for ticket %lld", (long long)tB);
	e_check_labels("OperatordEscalation", tB, "node_down", "n3");
	/* Alertmanager keeps alerts in memory only: after a restart the alert is
	 * back because operatord re-sends what still fires. */
	h_kill_wait(&E->am_pid, SIGKILL);
	e_start_am();
	H_WAIT(ok, E_LOOP_MS, e_am_has("OperatordEscalation", tB));
	H_CHECK(ok, "OperatordEscalation for ticket %lld was not re-sent to a restarted "
	    "Alertmanager", (long long)tB);
	h_start_node(2);
	H_WAIT(ok, H_WAIT_MS, h_node_healthy(2));
	H_CHECK(ok, "n3 did not come back");
	H_WAIT(ok, E_LOOP_MS, h_ev_refresh() && (h_ev_find("ticket_cleared", tB, sinceB) ||
	    h_ev_find("ticket_resolved", tB, sinceB)));
	H_CHECK(ok, "escalated ticket %lld did not clear once n3 was back", (long long)tB);
	H_WAIT(ok, E_LOOP_MS, !e_am_has("OperatordEscalation", tB));
	H_CHECK(ok, "OperatordEscalation for ticket %lld did not end", (long long)tB);

	/* A: reset_counter waits for approval; approved, the loop closes and
	 * the approval alert ends. */
	int64_t tA = e_drift("eco-a", &sinceA);
	int64_t aA = e_wait_action(tA, sinceA);
	H_WAIT(ok, E_LOOP_MS, e_am_has("OperatordApprovalNeeded", tA));
	H_CHECK(ok, "Alertmanager never showed OperatordApprovalNeeded for ticket %lld", (long long)tA);
	e_check_labels("OperatordApprovalNeeded", tA, "counter_drift", "eco-a");
	snprintf(buf, sizeof(buf), "%lld", (long long)aA);
	H_CHECK(e_op(NULL, "approve", buf, NULL) == 0, "opsend approve %s failed", buf);
	e_wait_terminal(tA, sinceA, "ticket_resolved");
	H_WAIT(ok, E_LOOP_MS, !e_am_has("OperatordApprovalNeeded", tA));
	H_CHECK(ok, "OperatordApprovalNeeded for ticket %lld did not end", (long long)tA);

	/* D: an approval that is rejected ends its alert too. */
	int64_t sinceD, tD = e_drift("eco-d", &sinceD);
	int64_t aD = e_wait_action(tD, sinceD);
	H_WAIT(ok, E_LOOP_MS, e_am_has_action(aD));
	H_CHECK(ok, "Alertmanager never showed OperatordApprovalNeeded for action %lld", (long long)aD);
	snprintf(buf, sizeof(buf), "%lld", (long long)aD);
	H_CHECK(e_op(NULL, "reject", buf, NULL) == 0, "opsend reject %s failed", buf);
	/* The drift goes on, so the ticket may come back with a new action: the
	 * rejected one's alert is what must end. */
	H_WAIT(ok, E_LOOP_MS, !e_am_has_action(aD));
	H_CHECK(ok, "OperatordApprovalNeeded for rejected action %lld did not end", (long long)aD);

	/* A worker restart, seen by /metrics and Prometheus. */
	json_object *s2 = h_status();
	pid_t dpid = (pid_t)op_json_int(h_worker(s2, "diagnoser"), "pid", 0);
	json_object_put(s2);
	H_CHECK(dpid > 0, "no diagnoser pid");
	kill(dpid, SIGKILL);
	H_WAIT(ok, H_WAIT_MS, ({
		json_object *s3 = h_status();
		json_object *d = h_worker(s3, "diagnoser");
		int back = op_json_int(d, "restarts", 0) == 1 &&
		    !strcmp(op_json_str(d, "state", ""), "ready");
		json_object_put(s3);
		back;
	}));
	H_CHECK(ok, "the diagnoser did not come back after SIGKILL");
	char *m = e_promtool_metrics(E->metrics_port, "operatord");
	H_CHECK(e_sample(m, "operatord_worker_restarts_total{worker=\"diagnoser\"}") == 1,
	    "restart not in /metrics");
	H_CHECK(e_sample(m, "operatord_tickets{status=\"resolved\"}") >= 1 &&
	    e_sample(m, "operatord_tickets{status=\"cleared\"}") >= 1 &&
	    e_sample(m, "operatord_time_to_verified_fix_seconds_count") >= 1 &&
	    e_sample(m, "operatord_time_to_detect_seconds_count") >= 0,
	    "tickets/histograms missing from /metrics:\n%s", m);
	H_CHECK(e_sample(m, "operatord_actions_finished_total{subject=\"ratelimiter\","
	    "action=\"reset_counter\",result=\"executed\"}") >= 1,
	    "actions by name and result missing from /metrics:\n%s", m);
	free(m);
	free(e_promtool_metrics(H->node_port[0], "rlnode"));
	H_WAIT(ok, H_WAIT_MS, (e_prom_query("operatord_worker_restarts_total{worker=\"diagnoser\"}",
	    buf, sizeof(buf)), !strcmp(buf, "1")));
	H_CHECK(ok, "Prometheus query of operatord_worker_restarts_total gave \"%s\", want 1", buf);

	/* Alertmanager hung (SIGSTOP: connections are accepted, nothing answers)
	 * with a 60 s POST timeout: a supervisor that waited on HTTP could not
	 * answer opsend or close the loop meanwhile. Then it dies: the failed
	 * POSTs are counted. */
	kill(E->am_pid, SIGSTOP);
	int64_t tC = e_drift("eco-c", &sinceC);
	int64_t aC = e_wait_action(tC, sinceC);
	json_object *res = NULL;
	H_CHECK(e_op(&res, "status", NULL, NULL) == 0, "opsend status failed");
	json_object_put(res);
	snprintf(buf, sizeof(buf), "%lld", (long long)aC);
	H_CHECK(e_op(NULL, "approve", buf, NULL) == 0, "opsend approve %s failed", buf);
	e_wait_terminal(tC, sinceC, "ticket_resolved");
	h_kill_wait(&E->am_pid, SIGKILL);
	char series[256];
	snprintf(series, sizeof(series), "operatord_alertmanager_posts_total{url=\"http://127.0.0.1:"
	    "%d/api/v2/alerts\",result=\"error\"}", E->am_port);
	H_WAIT(ok, H_WAIT_MS, ({
		struct h_resp mr;
		int got = e_get(E->metrics_port, "/metrics", &mr) == 200 && e_sample(mr.body, series) >= 1;
		h_resp_free(&mr);
		got;
	}));
	H_CHECK(ok, "failed POSTs to the stopped Alertmanager are not counted (%s)", series);
	H_CHECK(e_op(NULL, "status", NULL, NULL) == 0, "opsend status failed");
	h_test_end();
}
END_TEST

static void
e_setup(void)
{
	h_env_start();
}

static void
e_teardown(void)
{
	h_kill_wait(&E->am_pid, SIGKILL);
	h_kill_wait(&E->prom_pid, SIGKILL);
	h_env_stop();
}

int
main(void)
{
	h_init();
	E = mmap(NULL, sizeof(*E), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(E, 0, sizeof(*E));
	Suite *s = suite_create("ecosystem");
	TCase *tc = tcase_create("ecosystem");
	tcase_add_unchecked_fixture(tc, e_setup, e_teardown);
	tcase_set_timeout(tc, E_TCASE_TIMEOUT);
	tcase_add_test(tc, t_ecosystem);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
