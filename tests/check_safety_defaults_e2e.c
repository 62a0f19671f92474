/* check_safety_defaults_e2e: safe by default, through the running daemon.
 * A real redis-server, three rlnodes, rlload, pdsim (slow elections), llmsrv
 * as the model, operatord in execute mode, driven by opsend and optail.
 *
 * - defaults: an empty [safety] shows non-zero budgets and a blast radius,
 *   and a burst of drift past the per-action budget escalates;
 * - a model's plan that does not fit the ticket (another key, an action that
 *   does not remedy the invariant) never runs; the rules' plan does;
 * - the kill switch stops rebalance_leaders while it waits for a slow raft
 *   election, before it posts any operator (pdsim's lists stay empty);
 * - an operator's update_limit that opens over_limit fails verification, is
 *   undone, and the key's limit is back, with the events in order.
 * Every wait is on a condition with a generous bound. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define E_LOOP_MS 90000     /* one detect -> act -> verify loop, generously */
#define E_KEY_ENV "OPD_TEST_LLM_KEY"
#define E_KEY "test-key-h7-safe"
#define E_VERIFY_TIMEOUT "verify_timeout = 40s" /* the harness's; shortened here */
#define E_BURST_KEYS 8      /* keys drifted at once: more than the budget of 5 */
#define E_BURST_ROUNDS 4    /* injections per key at most (a drift fault may not bite) */
#define E_BURST_WAIT_MS 25000 /* per round, for the refusal */

/* ---- small helpers ---- */

static json_object *
e_http(int port, const char *method, const char *path, const char *body, long *status)
{
	struct op_http_req r = {0};
	char url[256], err[64];
	json_object *j = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	r.method = method;
	r.url = url;
	r.body = body;
	r.timeout_ms = 5000;
	*status = 0;
	if (op_http_do(&r) == 0) {
		*status = r.status;
		if (r.resp)
			j = op_json_parse(r.resp, r.resp_len, err, sizeof(err));
	}
	op_http_req_reset(&r);
	return j;
}

/* Events of a type (for a ticket when > 0) after seq, in order. */
static size_t
e_events(const char *type, int64_t tid, int64_t since, json_object **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; h_evs && i < json_object_array_length(h_evs) && n < max; i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (h_ev_seq(e) > since && !strcmp(op_json_str(e, "type", ""), type) &&
		    (tid <= 0 || op_json_int(e, "ticket", 0) == tid))
			out[n++] = e;
	}
	return n;
}

/* The verify timeout is the harness's 40 s: the undo case wants a failure sooner. */
static int
e_short_verify(void)
{
	FILE *f = fopen(H->conf, "r");
	char *buf = NULL, *p;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		return -1;
	do {
		if (n + 4096 > cap) {
			cap = (n + 4096) * 2;
			buf = realloc(buf, cap);
		}
		r = fread(buf + n, 1, 4096, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	if ((p = strstr(buf, E_VERIFY_TIMEOUT)) != NULL)
		memcpy(p, "verify_timeout = 8s ", strlen(E_VERIFY_TIMEOUT));
	f = fopen(H->conf, "w");
	if (f == NULL) {
		free(buf);
		return -1;
	}
	fputs(buf, f);
	free(buf);
	return fclose(f);
}

static int64_t
e_wait_ticket(const char *invariant, const char *entity, int64_t since)
{
	int64_t tid = 0;
	int ok;

	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (tid = h_ev_ticket(invariant, entity, since)) > 0);
	H_CHECK(ok, "no %s ticket for %s", invariant, entity);
	return tid;
}

static json_object *
e_wait_event(const char *type, int64_t tid, int64_t since, int64_t ms)
{
	json_object *ev = NULL;
	int ok;

	H_WAIT(ok, ms, h_ev_refresh() && (ev = h_ev_find(type, tid, since)) != NULL);
	H_CHECK(ok, "no %s event for ticket %lld", type, (long long)tid);
	return ev;
}

static void
e_prepare_key(const char *key)
{
	int ok;

	H_CHECK(h_set_limit(0, key, 100000), "PUT /api/limits/%s failed", key);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "rlnode uptime never covered the window");
}

static int
e_read_port(const char *path, int *port)
{
	FILE *f = fopen(path, "r");
	int got = 0;

	if (f != NULL) {
		got = fscanf(f, "%d", port) == 1;
		fclose(f);
	}
	return got;
}

/* chaos inject without asserting: 0 when injected (a key may still carry a
 * fault, a victim's subscriber may still be reconnecting) */
static int
e_inject_try(const char *fault, const char *key, const char *node)
{
	char k[128], n[32], *err = NULL;
	json_object *res = NULL;
	int rc;

	snprintf(k, sizeof(k), "key=%s", key);
	snprintf(n, sizeof(n), "node=%s", node ? node : "");
	rc = node ? h_opsend(&res, &err, "chaos", "inject", fault, k, n, "ttl=40s", NULL)
	    : h_opsend(&res, &err, "chaos", "inject", fault, k, "ttl=40s", NULL);
	json_object_put(res);
	free(err);
	return rc;
}

/* ---- 1. defaults ---- */

START_TEST(t_defaults_and_budget)
{
	const char *keys[E_BURST_KEYS] = {"sdb1", "sdb2", "sdb3", "sdb4", "sdb5", "sdb6", "sdb7",
	    "sdb8"};
	int ok;

	h_test_begin("defaults_and_budget");
	H_CHECK(h_od_fresh("execute", NULL, "[safety]\n") == 0, "operatord did not start");
	json_object *st = h_status();
	json_object *b = op_json_arr(st, "budgets"), *sf = op_json_obj(st, "safety");
	H_CHECK(b != NULL && json_object_array_length(b) > 0, "status has no budgets");
	int per_action = 0, per_subject = 0;
	for (size_t i = 0; i < json_object_array_length(b); i++) {
		json_object *x = json_object_array_get_idx(b, i);
		const char *scope = op_json_str(x, "scope", "");
		H_CHECK(op_json_int(x, "remaining", -1) == op_json_int(x, "capacity", -2),
		    "an unused bucket is not full: %s", json_object_to_json_string(x));
		H_CHECK(json_object_object_get_ex(x, "refill_in_ms", NULL), "no refill time");
		if (!strcmp(scope, "action:ratelimiter/reset_counter"))
			per_action = op_json_int(x, "capacity", 0) == 5;
		if (!strcmp(scope, "subject:ratelimiter"))
			per_subject = op_json_int(x, "capacity", 0) == 20;
	}
	H_CHECK(per_action && per_subject, "default budgets not 5/1h and 20/1h: %s",
	    json_object_to_json_string(b));
	json_object *br = op_json_obj(sf, "blast_radius");
	H_CHECK(op_json_double(br, "share", 0) > 0.33 && op_json_double(br, "share", 0) < 0.35,
	    "default blast radius %g", op_json_double(br, "share", 0));
	H_CHECK(op_json_int(op_json_obj(sf, "destructive_today"), "cap", 0) == 10, "destructive cap");
	H_CHECK(op_json_int(sf, "promote_after", 0) == 5, "promote_after");
	json_object_put(st);

	/* A burst of drift on eight keys: five resets fit the budget, a sixth
	 * ticket escalates for the budget instead of acting. A drift fault is only
	 * real when a retried increment lands twice, so keys that got no ticket
	 * are injected again (bounded rounds). */
	for (size_t i = 0; i < E_BURST_KEYS; i++)
		H_CHECK(h_set_limit(0, keys[i], 100000), "PUT limit %s", keys[i]);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	int64_t since = h_last_seq();
	pid_t ld = h_load_start("sdb1,sdb2,sdb3,sdb4,sdb5,sdb6,sdb7,sdb8", 160, 7);
	json_object *skip = NULL;
	ok = 0;
	for (int round = 0; round < E_BURST_ROUNDS && !ok; round++) {
		for (size_t i = 0; i < E_BURST_KEYS; i++)
			if (!h_ev_refresh() || h_ev_ticket("counter_drift", keys[i], since) <= 0)
				e_inject_try("counter_drift", keys[i], NULL);
		H_WAIT(ok, E_BURST_WAIT_MS, h_ev_refresh() &&
		    (skip = h_ev_find("action_skipped", 0, since)) &&
		    !strcmp(op_json_str(h_ev_data(skip), "reason", ""), "budget"));
	}
	h_load_stop(ld);
	H_CHECK(ok, "no action was refused for the budget");
	int64_t tid = op_json_int(skip, "ticket", 0);
	json_object *esc = e_wait_event("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(strstr(op_json_str(h_ev_data(esc), "reason", ""), "budget") != NULL,
	    "escalation reason: %s", op_json_str(h_ev_data(esc), "reason", ""));
	json_object *x[16];
	size_t nx = e_events("action_executed", 0, since, x, 16);
	size_t resets = 0;
	for (size_t i = 0; i < nx; i++)
		resets += !strcmp(op_json_str(h_ev_data(x[i]), "action", ""), "reset_counter");
	H_CHECK(resets <= 5, "%zu resets ran past a budget of 5", resets);
	h_test_end();
}
END_TEST

/* ---- 2. a model's plan must fit the ticket ---- */

static pid_t srv_pid;
static int srv_port;

/* Processes a test starts beyond the harness's own: the test runs in a
 * forked child, so teardown (in the parent) finds them in this file. */
static void
e_track(pid_t pid)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/extra.pids", H->dir);
	if ((f = fopen(path, "a")) != NULL) {
		fprintf(f, "%d\n", (int)pid);
		fclose(f);
	}
}

static void
e_kill_tracked(void)
{
	char path[256];
	FILE *f;
	int pid;

	snprintf(path, sizeof(path), "%s/extra.pids", H->dir);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fscanf(f, "%d", &pid) == 1) {
		pid_t p = pid;
		if (p > 0 && kill(p, 0) == 0)
			h_kill_wait(&p, SIGTERM);
	}
	fclose(f);
	unlink(path);
}

static void
e_srv_start(void)
{
	char portfile[256];
	int ok;

	snprintf(portfile, sizeof(portfile), "%s/llmsrv.port", H->dir);
	char *argv[] = {getenv("LLMSRV_BIN"), "--port", "0", "--port-file", portfile, "--key",
	    E_KEY, NULL};
	srv_pid = h_spawn(argv, "llmsrv.log");
	e_track(srv_pid);
	H_WAIT(ok, H_WAIT_MS, e_read_port(portfile, &srv_port));
	H_CHECK(ok, "llmsrv did not start");
}

static char *
e_case(const char *match, const char *action, const char *params)
{
	char *s = NULL;

	/* llmsrv matches the raw request body, where the prompt's newline is "\n" */
	if (asprintf(&s, "{\"match\":\"entity: %s\\\\n\",\"kind\":\"tool_use\",\"input\":{"
	    "\"timeline\":[\"drift\"],\"affected_components\":[\"redis\"],\"metric_readings\":[],"
	    "\"primary_diagnosis\":\"scripted\",\"confidence\":0.7,\"supporting_evidence\":[],"
	    "\"alternatives_considered\":[],\"severity\":\"warning\",\"risks\":[],"
	    "\"recommended_actions\":[{\"action\":\"%s\",\"parameters\":%s,\"reason\":\"x\","
	    "\"urgency\":\"soon\",\"expected_outcome\":\"x\"}]}}", match, action, params) < 0)
		return NULL;
	return s;
}

START_TEST(t_model_plan_must_fit)
{
	const char *K = "sdfit";
	char sections[512], *a, *b, *body;
	long st;
	int ok;

	h_test_begin("model_plan_must_fit");
	setenv(E_KEY_ENV, E_KEY, 1);
	e_srv_start();
	snprintf(sections, sizeof(sections), "[diagnoser]\nbackend = anthropic\nmodel = "
	    "claude-sonnet-4-5\nbase_url = http://127.0.0.1:%d\napi_key_env = %s\ntimeout = 10s\n"
	    "max_calls_per_hour = 100\n", srv_port, E_KEY_ENV);
	/* first answer: an action that does not remedy ghost allowing; the
	 * correction: the right action on a node the ticket does not name. Both are
	 * in the catalogue and within bounds; neither fits the ticket. */
	a = e_case(K, "reset_counter", "{\"key\":\"sdfit\",\"limit\":null,\"node\":null}");
	b = e_case(K, "resync_node", "{\"key\":null,\"limit\":null,\"node\":\"n9\"}");
	H_CHECK(asprintf(&body, "{\"default\":{\"kind\":\"error\",\"status\":400,\"message\":"
	    "\"not the ticket under test\"},\"cases\":[%s,%s]}", a, b) > 0, "asprintf");
	json_object_put(e_http(srv_port, "POST", "/_script", body, &st));
	H_CHECK(st == 200, "llmsrv /_script: %ld", st);
	H_CHECK(h_od_fresh("execute", NULL, sections) == 0, "operatord did not start");
	H_CHECK(h_set_limit(0, K, 100000), "PUT /api/limits/%s failed", K);
	pid_t ld = h_load_start(K, 40, 7);
	int64_t since = h_last_seq();
	H_WAIT(ok, H_WAIT_MS, e_inject_try("ghost_allowing", K, "n3") == 0);
	H_CHECK(ok, "chaos inject ghost_allowing failed");
	int64_t tid = e_wait_ticket("ghost_allowing", K, since);
	json_object *d = e_wait_event("diagnosis", tid, since, E_LOOP_MS);
	const char *why = op_json_str(h_ev_data(d), "fallback_reason", "");
	H_CHECK(!strcmp(op_json_str(h_ev_data(d), "backend", ""), "rules") &&
	    strstr(why, "does not fit the ticket") && strstr(why, "node=n9") &&
	    strstr(why, "does not remedy ghost_allowing"),
	    "diagnosis backend %s, fallback_reason: %s", op_json_str(h_ev_data(d), "backend", ""),
	    why);
	/* the rules' own plan still runs unattended: resync the stale node */
	json_object *ev = NULL;
	H_WAIT(ok, E_LOOP_MS, h_ev_refresh() && (ev = h_ev_terminal(tid, since)) != NULL);
	h_load_stop(ld);
	H_CHECK(ok, "ticket %lld never closed", (long long)tid);
	json_object *x[8];
	size_t nx = e_events("action_executed", tid, since, x, 8);
	H_CHECK(nx >= 1, "the rules' plan did not run");
	for (size_t i = 0; i < nx; i++) {
		json_object *p = op_json_obj(h_ev_data(x[i]), "params");
		H_CHECK(!strcmp(op_json_str(h_ev_data(x[i]), "action", ""), "resync_node") &&
		    strcmp(op_json_str(p, "node", ""), "n9") != 0, "ran %s %s",
		    op_json_str(h_ev_data(x[i]), "action", ""), json_object_to_json_string(p));
	}
	H_CHECK(e_events("action_awaiting_approval", tid, since, x, 8) == 0,
	    "the rules' plan waited for a human");
	free(a);
	free(b);
	free(body);
	h_kill_wait(&srv_pid, SIGTERM);
	h_test_end();
}
END_TEST

/* ---- 3. the kill switch stops a running rebalance_leaders ---- */

static int pd_port;
static pid_t pd_pid;

static size_t
e_pd_operators(void)
{
	long st;
	json_object *run = e_http(pd_port, "GET", "/pd/api/v1/operators", NULL, &st);
	size_t n = json_object_is_type(run, json_type_array) ? json_object_array_length(run) : 0;
	json_object *rec = e_http(pd_port, "GET", "/pd/api/v1/operators/records", NULL, &st);

	n += json_object_is_type(rec, json_type_array) ? json_object_array_length(rec) : 0;
	json_object_put(run);
	json_object_put(rec);
	return n;
}

/* Stores of a fresh `opsend observe tikv` that answer their probe. */
static size_t
e_tikv_stores(void)
{
	json_object *o = NULL;
	size_t n = 0;

	if (h_opsend(&o, NULL, "observe", "tikv", NULL) == 0) {
		json_object *a = op_json_arr(o, "stores");
		for (size_t i = 0; a && i < json_object_array_length(a); i++)
			n += op_json_bool(json_object_array_get_idx(a, i), "probe_ok", 0);
	}
	json_object_put(o);
	return n;
}

START_TEST(t_kill_switch_stops_rebalance)
{
	char pf[256], sections[512];
	int ok;
	long st;

	h_test_begin("kill_switch_stops_rebalance");
	snprintf(pf, sizeof(pf), "%s/pd.port", H->dir);
	/* slow raft elections: rebalance_leaders waits for them before planning */
	char *argv[] = {getenv("PDSIM_BIN"), "--port", "0", "--port-file", pf, "--stores", "3",
	    "--regions", "30", "--election-ms", "20000", "--disconnect-ms", "3000", "--down-ms",
	    "600000", "--balance-interval-ms", "600000", NULL};
	pd_pid = h_spawn(argv, "pdsim.log");
	e_track(pd_pid);
	H_WAIT(ok, H_WAIT_MS, e_read_port(pf, &pd_port));
	H_CHECK(ok, "pdsim did not start");
	snprintf(sections, sizeof(sections), "[subject.tikv]\npd = http://127.0.0.1:%d\n"
	    "election_wait = 60s\n\n[safety]\nblast_radius = off\n", pd_port);
	H_CHECK(h_od_fresh("execute", NULL, sections) == 0, "operatord did not start");
	H_WAIT(ok, H_WAIT_MS, e_tikv_stores() == 3);
	H_CHECK(ok, "operatord never saw pdsim's three stores");
	int64_t since = h_last_seq();
	json_object_put(e_http(pd_port, "POST", "/pdsim/stores/1/kill", "{}", &st));
	H_CHECK(st == 200, "pdsim kill store 1: %ld", st);
	int64_t tid = e_wait_ticket("store_down", "1", since);
	json_object *disp = e_wait_event("action_dispatched", tid, since, E_LOOP_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(disp), "action", ""), "rebalance_leaders"),
	    "dispatched %s", op_json_str(h_ev_data(disp), "action", ""));
	/* the action now waits for elections inside the executor */
	H_CHECK(h_opsend(NULL, NULL, "kill-switch", "on", NULL) == 0, "kill-switch on");
	json_object *c = e_wait_event("action_cancelled", tid, since, E_LOOP_MS);
	json_object *res = op_json_obj(h_ev_data(c), "result");
	H_CHECK(op_json_int(res, "posted", -1) == 0, "posted %lld operators before stopping",
	    (long long)op_json_int(res, "posted", -1));
	H_CHECK(e_pd_operators() == 0, "pdsim has %zu operators", e_pd_operators());
	json_object *esc = e_wait_event("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(strstr(op_json_str(h_ev_data(esc), "reason", ""), "kill switch") != NULL,
	    "escalation: %s", op_json_str(h_ev_data(esc), "reason", ""));
	json_object *acts = NULL;
	h_opsend(&acts, NULL, "actions", NULL);
	int cancelled = 0;
	for (size_t i = 0; acts && i < json_object_array_length(acts); i++) {
		json_object *r = json_object_array_get_idx(acts, i);
		cancelled |= !strcmp(op_json_str(r, "name", ""), "rebalance_leaders") &&
		    !strcmp(op_json_str(r, "status", ""), "cancelled");
	}
	json_object_put(acts);
	H_CHECK(cancelled, "opsend actions shows no cancelled rebalance_leaders");
	/* still nothing posted once the election is long over */
	H_CHECK(h_opsend(NULL, NULL, "kill-switch", "off", NULL) == 0, "kill-switch off");
	H_CHECK(e_pd_operators() == 0, "operators after the switch");
	h_kill_wait(&pd_pid, SIGTERM);
	h_test_end();
}
END_TEST

/* ---- 4. a fix that makes things worse is undone ---- */

static int
e_limit_is(const char *key, int64_t limit)
{
	struct h_resp r = h_http(H->node_port[0], "GET", "/api/limits", NULL);
	json_object *l = op_json_arr(r.json, "limits");
	int is = 0;

	for (size_t i = 0; l && i < json_object_array_length(l); i++) {
		json_object *x = json_object_array_get_idx(l, i);
		is |= !strcmp(op_json_str(x, "key", ""), key) && op_json_int(x, "limit", 0) == limit;
	}
	h_resp_free(&r);
	return is;
}

START_TEST(t_worse_is_undone)
{
	const char *K = "sdundo";
	int ok;

	h_test_begin("worse_is_undone");
	H_CHECK(h_od_fresh("execute", NULL, NULL) == 0, "operatord did not start");
	h_od_stop();
	H_CHECK(e_short_verify() == 0 && h_od_spawn() == 0, "operatord did not restart");
	e_prepare_key(K);
	pid_t ld = h_load_start(K, 60, 3); /* n1 and n2 */
	int64_t since = h_last_seq();
	/* a dead node: node_down, which no action of the catalogue remedies */
	h_kill_wait(&H->node_pid[2], SIGKILL);
	char n3[8];
	snprintf(n3, sizeof(n3), "n3");
	int64_t tid = e_wait_ticket("node_down", n3, since);
	e_wait_event("ticket_escalated", tid, since, E_LOOP_MS);
	/* an operator lowers the key's limit under load: over_limit opens */
	char t[32], *err = NULL;
	json_object *res = NULL;
	snprintf(t, sizeof(t), "%lld", (long long)tid);
	int rc = h_opsend(&res, &err, "act", t, "update_limit", "key=sdundo", "limit=1", NULL);
	H_CHECK(rc == 0, "opsend act: %d %s", rc, err ? err : "");
	json_object_put(res);
	free(err);
	int64_t s_undone = h_ev_seq(e_wait_event("action_undone", tid, since, E_LOOP_MS));
	json_object *esc = NULL;
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (esc = h_ev_find("ticket_escalated", tid,
	    s_undone)) != NULL);
	h_load_stop(ld);
	H_CHECK(ok, "no escalation after the undo");
	/* the events, in order (one snapshot: a refresh frees the previous one) */
	json_object *ex = h_ev_find("action_executed", tid, since);
	json_object *undoing = h_ev_find("action_undoing", tid, since);
	json_object *undone = h_ev_find("action_undone", tid, since);
	json_object *v[4];
	H_CHECK(ex && undoing && undone, "missing events");
	H_CHECK(e_events("verification", tid, since, v, 4) >= 1, "no verification");
	H_CHECK(!strcmp(op_json_str(h_ev_data(v[0]), "result", ""), "failure"),
	    "verification %s", op_json_str(h_ev_data(v[0]), "result", ""));
	H_CHECK(h_ev_seq(ex) < h_ev_seq(v[0]) && h_ev_seq(v[0]) < h_ev_seq(undoing) &&
	    h_ev_seq(undoing) < h_ev_seq(undone) && h_ev_seq(undone) < h_ev_seq(esc),
	    "events out of order: executed %lld, verification %lld, undoing %lld, undone %lld,"
	    " escalated %lld", (long long)h_ev_seq(ex), (long long)h_ev_seq(v[0]),
	    (long long)h_ev_seq(undoing), (long long)h_ev_seq(undone), (long long)h_ev_seq(esc));
	H_CHECK(strstr(op_json_str(h_ev_data(undoing), "why", ""), "violated") != NULL,
	    "why undone: %s", op_json_str(h_ev_data(undoing), "why", ""));
	/* the subject is back where it was: the key's limit is 100000 again */
	H_WAIT(ok, H_WAIT_MS, e_limit_is(K, 100000));
	H_CHECK(ok, "the limit of %s was not restored", K);
	/* opsend actions shows the undo that was recorded */
	json_object *acts = NULL;
	h_opsend(&acts, NULL, "actions", NULL);
	int shown = 0;
	for (size_t i = 0; acts && i < json_object_array_length(acts); i++) {
		json_object *r = json_object_array_get_idx(acts, i);
		if (!strcmp(op_json_str(r, "name", ""), "update_limit"))
			shown = !strcmp(op_json_str(r, "status", ""), "undone") &&
			    op_json_int(op_json_obj(op_json_obj(r, "undo"), "data"), "limit", 0) == 100000;
	}
	json_object_put(acts);
	H_CHECK(shown, "opsend actions does not show the undone update_limit with its undo");

	/* ticket-core hole 5: the failed verification demoted update_limit for this
	 * subject (a learned row, promote_after = 5 by default); an operator's
	 * level for all subjects wins over it, and the query says where it came from */
	json_object *lv = NULL;
	H_CHECK(h_opsend(&lv, NULL, "level", "update_limit", NULL) == 0, "level");
	H_CHECK(!strcmp(op_json_str(json_object_array_get_idx(lv, 0), "level", ""), "approve") &&
	    !strcmp(op_json_str(json_object_array_get_idx(lv, 0), "source", ""), "demotion"),
	    "after the failure: %s", json_object_to_json_string(lv));
	json_object_put(lv);
	H_CHECK(h_opsend(NULL, NULL, "level", "update_limit", "execute", NULL) == 0, "set level");
	lv = NULL;
	H_CHECK(h_opsend(&lv, NULL, "level", "update_limit", NULL) == 0, "level");
	H_CHECK(!strcmp(op_json_str(json_object_array_get_idx(lv, 0), "subject", ""),
	    "ratelimiter") &&
	    !strcmp(op_json_str(json_object_array_get_idx(lv, 0), "level", ""), "execute") &&
	    !strcmp(op_json_str(json_object_array_get_idx(lv, 0), "source", ""),
	    "operator (all subjects)"), "operator level lost to the learned row: %s",
	    json_object_to_json_string(lv));
	json_object_put(lv);

	/* unproven: an operator resyncs n1 for n3's node_down; n3 then comes back
	 * by itself. The invariant heals, but not thanks to the action. */
	int64_t since2 = h_last_seq();
	res = NULL;
	err = NULL;
	rc = h_opsend(&res, &err, "act", t, "resync_node", "node=n1", NULL);
	H_CHECK(rc == 0, "opsend act resync_node: %d %s", rc, err ? err : "");
	json_object_put(res);
	free(err);
	e_wait_event("action_executed", tid, since2, E_LOOP_MS);
	h_start_node(2);
	json_object *ver = e_wait_event("verification", tid, since2, E_LOOP_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(ver), "result", ""), "unproven") &&
	    strstr(op_json_str(h_ev_data(ver), "unproven_reason", ""), "cannot heal node_down"),
	    "verification %s (%s)", op_json_str(h_ev_data(ver), "result", ""),
	    op_json_str(h_ev_data(ver), "unproven_reason", ""));
	json_object *fin = e_wait_event("ticket_resolved", tid, since2, H_WAIT_MS);
	H_CHECK(!strcmp(op_json_str(h_ev_data(fin), "verification", ""), "unproven"),
	    "resolved without saying unproven");
	json_object *lc[4];
	H_CHECK(e_events("level_changed", tid, since2, lc, 4) == 0, "an unproven fix moved a level");
	H_WAIT(ok, H_WAIT_MS, h_node_healthy(2));
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
	e_kill_tracked();
	h_env_stop();
}

int
main(void)
{
	Suite *s = suite_create("safety_defaults_e2e");
	TCase *tc = tcase_create("e2e");
	SRunner *sr;
	int failed;

	h_init();
	op_http_global_init();
	tcase_add_unchecked_fixture(tc, e_setup, e_teardown);
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, t_defaults_and_budget);
	tcase_add_test(tc, t_model_plan_must_fit);
	tcase_add_test(tc, t_kill_switch_stops_rebalance);
	tcase_add_test(tc, t_worse_is_undone);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
