/*
 * check_eval: scored campaigns and the chaos worker's responsiveness, on real
 * processes.
 *
 * chaos_nonblocking: counter_drift with a 20 s write pause; opsend's inject
 * must answer, and the kill switch must undo the fault (CLIENT UNPAUSE) and
 * pause chaos, long before the drift traffic could have finished.
 *
 * campaign_ratelimiter / campaign_tikv: scripts/eval.sh runs a 2-trial
 * campaign end to end (its own Redis, rlnodes, rlload or pdsim, operatord);
 * every score in report.json is then re-derived here from events.jsonl (the
 * raw event stream), never from the runner's own arithmetic.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define E_PAUSE_MS 20000       /* counter_drift write pause in the responsiveness test */
#define E_CAMPAIGN_MS 400000   /* bound on one eval.sh run */
#define E_TTD_SLACK_S 0.0015   /* rounding of ttd/ttf to the ms */

static const char *
e_env(const char *name)
{
	const char *v = getenv(name);

	ck_assert_msg(v && *v, "%s is not set (run through meson test)", name);
	return v;
}

/* ------------------------------------------------------------------ */

START_TEST(t_chaos_nonblocking)
{
	const char *key = "eval-nonblock";
	json_object *res = NULL;
	char pause[32];
	int ok;

	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin("chaos_nonblocking");
	H_CHECK(h_od_fresh("observe", NULL, NULL) == 0, "operatord did not become ready");
	H_CHECK(h_set_limit(0, key, 100000), "cannot set the limit of %s", key);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "the nodes never covered a window");
	int64_t since = h_last_seq();
	snprintf(pause, sizeof(pause), "pause=%dms", E_PAUSE_MS);
	/* 300 calls that each wait out the pause: the old synchronous chaos
	 * answered only after all of them came back */
	H_CHECK(h_opsend(&res, NULL, "chaos", "inject", "counter_drift", "key=eval-nonblock", pause,
	    "requests=300", "ttl=60s", NULL) == 0, "opsend chaos inject failed");
	int64_t answered = op_wall_ms();
	int64_t started = op_json_int(res, "started_at", 0);
	json_object_put(res);
	H_CHECK(started > 0, "the inject reply has no started_at");
	H_CHECK(answered < started + E_PAUSE_MS,
	    "opsend answered %lld ms after the injection: chaos waited for the drift traffic",
	    (long long)(answered - started));
	fprintf(stderr, "chaos_nonblocking: inject answered in %lld ms\n",
	    (long long)(answered - started));
	/* the switch goes on while the pause (and the traffic) still run */
	H_CHECK(h_opsend(NULL, NULL, "kill-switch", "on", NULL) == 0, "kill-switch on failed");
	json_object *cl = NULL;
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (cl = h_ev_find("fault_cleared", 0, since)) != NULL);
	H_CHECK(ok, "the kill switch did not clear the fault");
	json_object *d = h_ev_data(cl);
	H_CHECK(strcmp(op_json_str(d, "reason", ""), "kill switch") == 0,
	    "fault cleared for \"%s\", not the kill switch", op_json_str(d, "reason", ""));
	int64_t ended = op_json_int(d, "ended_at", 0);
	H_CHECK(ended > 0 && ended < started + E_PAUSE_MS,
	    "the undo ran %lld ms after the injection, after the pause it should have cut short",
	    (long long)(ended - started));
	/* writes flow again: CLIENT UNPAUSE ran, so a /check gets a Redis answer */
	struct h_resp r = h_http(H->node_port[0], "POST", "/check", "{\"key\":\"eval-nonblock\"}");
	H_CHECK(r.code == 200 && !op_json_bool(r.json, "degraded", 1),
	    "a /check after the undo was not served by Redis (HTTP %d)", r.code);
	h_resp_free(&r);
	/* chaos is paused: a new injection is refused while the switch is on */
	char *err = NULL;
	H_CHECK(h_opsend(NULL, &err, "chaos", "inject", "counter_drift", "key=eval-nonblock",
	    NULL) != 0 && err && strstr(err, "kill switch"),
	    "an injection under the kill switch was not refused: %s", err ? err : "");
	free(err);
	H_CHECK(h_opsend(NULL, NULL, "kill-switch", "off", NULL) == 0, "kill-switch off failed");
	h_test_end();
}
END_TEST

/* ------------------------------------------------------------------ */
/* campaigns */

static json_object *
e_read_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	json_object *arr = json_object_new_array();
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	ck_assert_msg(f != NULL, "%s is missing", path);
	while ((n = getline(&line, &cap, f)) > 0) {
		char perr[128];
		json_object *o = op_json_parse(line, (size_t)n, perr, sizeof(perr));
		ck_assert_msg(o != NULL, "%s: a line is not JSON: %s", path, perr);
		json_object_array_add(arr, o);
	}
	free(line);
	fclose(f);
	return arr;
}

static int
e_in_list(const char *list, const char *name)
{
	char buf[512], *save = NULL;

	op_strlcpy(buf, list, sizeof(buf));
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (strcmp(t, name) == 0)
			return 1;
	return 0;
}

static double
e_num(json_object *o, const char *key, int *isnull)
{
	json_object *v;

	*isnull = !json_object_object_get_ex(o, key, &v) || v == NULL;
	return *isnull ? 0 : json_object_get_double(v);
}

/* Re-derives one trial's score from the raw events with seq in (lo, hi]. */
static void
e_check_trial(json_object *t, json_object *events, int64_t lo)
{
	const char *fault = op_json_str(t, "fault", "?");
	int trial = (int)op_json_int(t, "trial", 0);
	int64_t hi = op_json_int(t, "to_seq", -1), fstart = op_json_int(t, "fault_started_at", -1);
	json_object *inj = NULL;

	ck_assert_msg(hi > lo, "%s #%d: no to_seq in the report", fault, trial);
	for (size_t i = 0; i < json_object_array_length(events) && inj == NULL; i++) {
		json_object *ev = json_object_array_get_idx(events, i);
		if (!strcmp(op_json_str(ev, "type", ""), "fault_injected") &&
		    op_json_int(h_ev_data(ev), "started_at", -2) == fstart)
			inj = ev;
	}
	ck_assert_msg(inj != NULL, "%s #%d: no fault_injected event started at %lld", fault, trial,
	    (long long)fstart);
	ck_assert_msg(op_json_int(t, "injected_at", 0) == h_ev_ts_ms(inj),
	    "%s #%d: injected_at %lld is not the fault_injected ts %lld", fault, trial,
	    (long long)op_json_int(t, "injected_at", 0), (long long)h_ev_ts_ms(inj));
	json_object *d = h_ev_data(inj);
	const char *target = op_json_str(d, "target", ""), *expected = op_json_str(d, "expected", "");
	const char *coll = op_json_str(d, "collateral", "");
	ck_assert_msg(*expected, "%s: chaos reported no expected invariants", fault);

	int64_t tid = 0, open_ts = 0, fixed_ts = 0, nfalse = 0;
	int verified = 0;
	for (size_t i = 0; i < json_object_array_length(events); i++) {
		json_object *ev = json_object_array_get_idx(events, i);
		int64_t seq = h_ev_seq(ev), tk = op_json_int(ev, "ticket", 0);
		const char *type = op_json_str(ev, "type", ""), *inv = op_json_str(ev, "invariant", "");
		if (seq <= lo || seq > hi)
			continue;
		if (!strcmp(type, "ticket_opened") || !strcmp(type, "ticket_reopened")) {
			if (tid == 0 && e_in_list(expected, inv) &&
			    !strcmp(op_json_str(ev, "entity", ""), target)) {
				tid = tk;
				open_ts = h_ev_ts_ms(ev);
			} else if (!e_in_list(expected, inv) && !e_in_list(coll, inv)) {
				nfalse++;
			}
		} else if (tk && tk == tid && !strcmp(type, "verification")) {
			verified = !strcmp(op_json_str(h_ev_data(ev), "result", ""), "success");
		} else if (tk && tk == tid && !strcmp(type, "ticket_resolved") && verified && !fixed_ts) {
			fixed_ts = h_ev_ts_ms(ev);
		}
	}
	int isnull;
	ck_assert_msg(op_json_int(t, "ticket", 0) == tid, "%s #%d: ticket %lld in the report, %lld in "
	    "the events", fault, trial, (long long)op_json_int(t, "ticket", 0), (long long)tid);
	double ttd = e_num(t, "ttd_s", &isnull);
	ck_assert_msg(tid ? !isnull && fabs(ttd - (double)(open_ts - fstart) / 1000) < E_TTD_SLACK_S :
	    isnull, "%s #%d: ttd_s %.3f, the events say %.3f", fault, trial, ttd,
	    tid ? (double)(open_ts - fstart) / 1000 : -1.0);
	double ttf = e_num(t, "ttf_s", &isnull);
	ck_assert_msg(fixed_ts ? !isnull && fabs(ttf - (double)(fixed_ts - fstart) / 1000) <
	    E_TTD_SLACK_S : isnull, "%s #%d: ttf_s %.3f, the events say %.3f", fault, trial, ttf,
	    fixed_ts ? (double)(fixed_ts - fstart) / 1000 : -1.0);
	const char *st = op_json_str(t, "status", "");
	ck_assert_msg((fixed_ts != 0) == (strcmp(st, "fixed") == 0),
	    "%s #%d: status %s but the events %s a verified resolution", fault, trial, st,
	    fixed_ts ? "show" : "do not show");
	ck_assert_msg(tid != 0 || !strcmp(st, "not_detected"), "%s #%d: status %s without a ticket",
	    fault, trial, st);
	ck_assert_msg((int64_t)json_object_array_length(op_json_arr(t, "false_tickets")) == nfalse,
	    "%s #%d: %zu false tickets in the report, %lld in the events", fault, trial,
	    json_object_array_length(op_json_arr(t, "false_tickets")), (long long)nfalse);
}

static void
e_campaign(const char *subject, const char *campaign, const char *fault)
{
	char out[256], cpath[512], script[512], jpath[300], epath[300], hpath[300];
	char *o = NULL, *e = NULL;
	const char *src = e_env("OP_SOURCE_ROOT");

	h_test_begin(subject);
	snprintf(out, sizeof(out), "/tmp/check-eval-%s.XXXXXX", subject);
	ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp failed");
	snprintf(cpath, sizeof(cpath), "%s/tests/fixtures/eval/%s", src, campaign);
	snprintf(script, sizeof(script), "%s/scripts/eval.sh", src);
	setenv("BUILD", e_env("OP_BUILD_ROOT"), 1);
	setenv("NO_BUILD", "1", 1);
	setenv("EVAL_FLAP_WINDOW", "5s", 1); /* the fixtures' cooldown is 6 s */
	char *argv[] = {"bash", script, (char *)subject, "--trials", "2", "--campaign", cpath,
		"--out", out, NULL};
	int rc = h_run(argv, E_CAMPAIGN_MS, &o, &e);
	if (rc != 0)
		fprintf(stderr, "eval.sh %s: exit %d\n%s\n%s\n", subject, rc, o ? o : "", e ? e : "");
	ck_assert_msg(rc == 0, "eval.sh %s exited %d", subject, rc);
	fprintf(stderr, "%s", o ? o : "");
	free(o);
	free(e);
	snprintf(jpath, sizeof(jpath), "%s/report.json", out);
	snprintf(epath, sizeof(epath), "%s/events.jsonl", out);
	snprintf(hpath, sizeof(hpath), "%s/report.html", out);
	json_object *rep = json_object_from_file(jpath), *events = e_read_lines(epath);
	ck_assert_msg(rep != NULL, "%s is not JSON", jpath);
	ck_assert_msg(access(hpath, R_OK) == 0, "%s is missing", hpath);
	json_object *trials = op_json_arr(rep, "trials");
	ck_assert_msg(trials && json_object_array_length(trials) == 2, "expected 2 trials");
	int64_t lo = 0;
	int detected = 0;
	for (size_t i = 0; i < json_object_array_length(trials); i++) {
		json_object *t = json_object_array_get_idx(trials, i);
		ck_assert_str_eq(op_json_str(t, "fault", ""), fault);
		ck_assert_str_eq(op_json_str(t, "subject", ""), subject);
		if (!strcmp(op_json_str(t, "status", ""), "not_started")) {
			ck_assert_msg(*op_json_str(t, "why", ""), "a not_started trial without a reason");
			continue;
		}
		e_check_trial(t, events, lo);
		detected += op_json_int(t, "ticket", 0) != 0;
		lo = op_json_int(t, "to_seq", lo);
	}
	/* the faults are real: a campaign that never saw one proves nothing */
	ck_assert_msg(detected > 0, "no trial of %s detected its fault", fault);
	json_object *s = op_json_obj(op_json_obj(rep, "summary"), fault);
	ck_assert_msg(s && op_json_int(s, "trials", 0) == 2, "summary of %s lacks its 2 trials", fault);
	/* compare prints per-fault differences */
	char *argv2[] = {(char *)e_env("OPEVAL_BIN"), "compare", jpath, jpath, NULL};
	o = NULL;
	ck_assert_msg(h_run(argv2, 10000, &o, NULL) == 0 && o && strstr(o, fault) &&
	    strstr(o, "success rate"), "opeval compare: %s", o ? o : "");
	free(o);
	json_object_put(rep);
	json_object_put(events);
	char *rm[] = {"rm", "-rf", out, NULL};
	h_run(rm, 10000, NULL, NULL);
	h_test_end();
}

START_TEST(t_campaign_ratelimiter)
{
	e_campaign("ratelimiter", "ratelimiter-test.campaign", "counter_drift");
}
END_TEST

START_TEST(t_campaign_tikv)
{
	e_campaign("tikv", "tikv-test.campaign", "node_kill");
}
END_TEST

static Suite *
eval_suite(void)
{
	Suite *s = suite_create("eval");
	TCase *tc = tcase_create("chaos");

	tcase_add_unchecked_fixture(tc, h_env_start, h_env_stop);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_chaos_nonblocking);
	suite_add_tcase(s, tc);
	tc = tcase_create("campaign");
	tcase_set_timeout(tc, E_CAMPAIGN_MS / 1000 + 30);
	tcase_add_test(tc, t_campaign_ratelimiter);
	tcase_add_test(tc, t_campaign_tikv);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	h_init();
	SRunner *sr = srunner_create(eval_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
