/*
 * check_core: the ticket core's guarantees on real processes. A real
 * redis-server, three rlnodes and operatord (harness.c), driven through
 * opsend and read back through optail --json; each test starts operatord
 * afresh with the configuration it needs. Each proves one hole of the
 * ticket-core issue closed:
 *   - a fault still present after its ticket closes is ticketed again;
 *   - a verification resumed after the daemon was down longer than its
 *     timeout really re-checks, and resolves;
 *   - a step with no progress meets its deadline: an event, an escalation,
 *     and the silent worker is restarted;
 *   - an approval that expires with approval_expiry = execute never runs a
 *     risky action;
 *   - a worker that dies before it is ready, again and again, trips the
 *     restart limit (the daemon exits 1) instead of looping for ever;
 *   - a reload of a bad file is refused and changes nothing; a good one
 *     applies mode and [safety];
 *   - an input whose transaction cannot begin (another process holds the
 *     ledger) changes nothing and says so;
 *   - a worker that is busy (stopped) while a burst of settings changes
 *     arrives is not killed for it: its frames wait, settings coalesce;
 *   - an action whose effect is unknown is verified on an explicit reading
 *     of the fault's invariant, and a reopened ticket's attempts start fresh;
 *   - a ticket whose entity the observation cannot account for (a node that
 *     does not answer) is not healed until an explicit reading says so.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define C_TCASE_TIMEOUT 300 /* seconds per test */
#define C_LOOP_MS 90000     /* an event that needs a whole loop */

static const char *
c_str(json_object *o, const char *k)
{
	return op_json_str(o, k, "");
}

static json_object *
c_wait_ev(const char *type, int64_t tid, int64_t after, int ms)
{
	json_object *ev = NULL;
	int ok;

	H_WAIT(ok, ms, h_ev_refresh() && (ev = h_ev_find(type, tid, after)) != NULL);
	H_CHECK(ok, "no %s event for ticket %lld after #%lld", type, (long long)tid,
	    (long long)after);
	return ev;
}

/* The ticket opened (or reopened) for (invariant, entity) after a seq. */
static int64_t
c_wait_ticket(const char *invariant, const char *entity, int64_t after, int ms)
{
	int64_t tid = 0;
	int ok;

	H_WAIT(ok, ms, h_ev_refresh() && (tid = h_ev_ticket(invariant, entity, after)) > 0);
	H_CHECK(ok, "no ticket for %s/%s after #%lld", invariant, entity, (long long)after);
	return tid;
}

static void
c_start(const char *name, const char *mode, const char *operatord_extra, const char *sections)
{
	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin(name);
	H_CHECK(h_od_fresh(mode, operatord_extra, sections) == 0, "operatord did not become ready");
}

static void
c_node_back(int i)
{
	int ok;

	if (H->node_pid[i] > 0)
		return;
	h_start_node(i);
	H_WAIT(ok, H_WAIT_MS, h_node_healthy(i));
	H_CHECK(ok, "rlnode %d did not come back", i + 1);
}

static pid_t
c_worker_pid(const char *name)
{
	json_object *s = h_status();
	pid_t pid = (pid_t)op_json_int(h_worker(s, name), "pid", 0);

	json_object_put(s);
	return pid;
}

static void
c_inject(const char *fault, const char *key, const char *ttl)
{
	char k[96], t[32];
	char *err = NULL;

	snprintf(k, sizeof(k), "key=%s", key);
	snprintf(t, sizeof(t), "ttl=%s", ttl);
	int rc = h_opsend(NULL, &err, "chaos", "inject", fault, k, t, NULL);
	H_CHECK(rc == 0, "opsend chaos inject %s %s exited %d: %s", fault, k, rc, err ? err : "");
	free(err);
}

/* A key with a high limit under load from every node, once every node's
 * accounting covers a whole window (drift is measurable only then). */
static pid_t
c_loaded_key(const char *key, int rps)
{
	int ok;

	H_CHECK(h_set_limit(0, key, 100000), "cannot set the limit of %s", key);
	pid_t load = h_load_start(key, rps, 7);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "the nodes never covered a whole window");
	return load;
}

/* Hole 1: in observe mode an rlnode killed and left dead has a node_down
 * ticket; an operator resolves it by hand; the node is still dead, so a new
 * ticket (a reopening, counted as a flap) follows within a few polls. */
START_TEST(t_persisting_fault_reticketed)
{
	char id[16];
	int64_t since;

	c_start("persisting_fault_reticketed", "observe", NULL, NULL);
	since = h_last_seq();
	h_kill_wait(&H->node_pid[1], SIGKILL);
	int64_t tid = c_wait_ticket("node_down", "n2", since, H_WAIT_MS);
	snprintf(id, sizeof(id), "%lld", (long long)tid);
	int64_t before = h_last_seq();
	H_CHECK(h_opsend(NULL, NULL, "resolve", id, "--reason", "looked at it", NULL) == 0,
	    "opsend resolve %s failed", id);
	json_object *res = c_wait_ev("ticket_resolved", tid, before, H_WAIT_MS);
	int64_t after = h_ev_seq(res);
	/* poll_interval 500 ms, node_down's hold-for: a few seconds at most. */
	int64_t again = c_wait_ticket("node_down", "n2", after, 15000);
	json_object *t = h_ticket(again);
	const char *st = c_str(op_json_obj(t, "ticket") ? op_json_obj(t, "ticket") : t, "status");
	H_CHECK(strcmp(st, "resolved") && strcmp(st, "cleared") && strcmp(st, "rejected"),
	    "ticket %lld for the dead node is %s, not open", (long long)again, st);
	json_object_put(t);
	json_object *re = h_ev_find("ticket_reopened", again, after);
	H_CHECK(again != tid || (re && op_json_int(h_ev_data(re), "flaps", 0) == 1),
	    "the recurrence of ticket %lld was not counted as a flap", (long long)tid);
	c_node_back(1);
	h_test_end();
}
END_TEST

/* Hole 3: operatord SIGKILLed while a counter_drift ticket is verifying and
 * kept down longer than verify_timeout; on restart the verification starts a
 * fresh window, really checks (its figures say how many times) and the ticket
 * resolves. Before, the verifier failed it on its first look. */
START_TEST(t_verification_resumes_after_long_restart)
{
	const char *key = "core-resume";
	int ok;

	c_start("verification_resumes", "execute", "verify_timeout = 8s\n", NULL);
	pid_t load = c_loaded_key(key, 200);
	int64_t since = h_last_seq();
	c_inject("counter_drift", key, "600s");
	int64_t tid = c_wait_ticket("counter_drift", key, since, C_LOOP_MS);
	json_object *ex = c_wait_ev("action_executed", tid, since, C_LOOP_MS);
	int64_t executed = h_ev_ts_ms(ex);
	int64_t resets = h_nodes_sum("resets_total");
	/* verify_delay is 2 s: still verifying. Down past the 8 s timeout. */
	h_kill_wait(&H->od_pid, SIGKILL);
	H_WAIT(ok, 30000, op_wall_ms() > executed + 8000 + 2000);
	int64_t mark = h_last_seq();
	H_CHECK(h_od_spawn() == 0, "operatord did not come back");
	json_object *v = c_wait_ev("verification", tid, mark, C_LOOP_MS);
	json_object *d = h_ev_data(v);
	json_object *fig = op_json_obj(d, "figures");
	H_CHECK(!strcmp(c_str(d, "result"), "success"), "resumed verification: %s (%s)",
	    c_str(d, "result"), c_str(d, "reason"));
	H_CHECK(op_json_bool(fig, "resumed", 0), "the verification was not marked resumed");
	H_CHECK(op_json_int(fig, "healthy_checks", 0) >= 1 && op_json_int(fig, "checks", 0) >= 1,
	    "the resumed verification checked %lld times", (long long)op_json_int(fig, "checks", 0));
	c_wait_ev("ticket_resolved", tid, mark, H_WAIT_MS);
	/* Verified, not redone: no reset ran after the restart. */
	H_CHECK(h_nodes_sum("resets_total") == resets, "a reset ran again after the restart");
	h_load_stop(load);
	h_test_end();
}
END_TEST

/* Hole 4: the diagnoser stopped (SIGSTOP) never answers; the ticket meets its
 * diagnose_deadline: a step_deadline event, an escalation, and the silent
 * diagnoser is killed and restarted. */
START_TEST(t_step_deadline)
{
	c_start("step_deadline", "execute", "diagnose_deadline = 3s\n", NULL);
	pid_t diag = c_worker_pid("diagnoser");
	H_CHECK(diag > 0, "no diagnoser pid");
	kill(diag, SIGSTOP);
	int64_t since = h_last_seq();
	h_kill_wait(&H->node_pid[2], SIGKILL);
	int64_t tid = c_wait_ticket("node_down", "n3", since, H_WAIT_MS);
	json_object *dl = c_wait_ev("step_deadline", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(c_str(h_ev_data(dl), "state"), "diagnosing"), "deadline in state %s",
	    c_str(h_ev_data(dl), "state"));
	json_object *esc = c_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	H_CHECK(strstr(c_str(h_ev_data(esc), "reason"), "deadline") != NULL, "escalated for \"%s\"",
	    c_str(h_ev_data(esc), "reason"));
	int ok;
	H_WAIT(ok, H_WAIT_MS, c_worker_pid("diagnoser") > 0 && c_worker_pid("diagnoser") != diag);
	H_CHECK(ok, "the hung diagnoser (pid %d) was not replaced", (int)diag);
	kill(diag, SIGCONT);
	c_node_back(2);
	h_test_end();
}
END_TEST

/* Hole 6: with approval_expiry = execute, an action at or above approval_risk
 * that nobody approved escalates on expiry; it never runs. */
START_TEST(t_expiry_never_runs_risky)
{
	const char *key = "core-expiry";

	c_start("expiry_never_runs_risky", "execute", NULL,
	    "[safety]\napproval_ttl = 2s\napproval_expiry = execute\napproval_risk = low\n");
	pid_t load = c_loaded_key(key, 200);
	int64_t resets = h_nodes_sum("resets_total");
	int64_t since = h_last_seq();
	c_inject("counter_drift", key, "600s");
	int64_t tid = c_wait_ticket("counter_drift", key, since, C_LOOP_MS);
	json_object *aw = c_wait_ev("action_awaiting_approval", tid, since, C_LOOP_MS);
	H_CHECK(!strcmp(c_str(h_ev_data(aw), "on_expiry"), "escalate"),
	    "a risky action announces \"%s\" on expiry", c_str(h_ev_data(aw), "on_expiry"));
	json_object *xp = c_wait_ev("action_approval_expired", tid, since, H_WAIT_MS);
	H_CHECK(!strcmp(c_str(h_ev_data(xp), "outcome"), "escalate"), "expiry outcome %s",
	    c_str(h_ev_data(xp), "outcome"));
	c_wait_ev("ticket_escalated", tid, since, H_WAIT_MS);
	h_ev_refresh();
	H_CHECK(h_ev_find("action_dispatched", tid, since) == NULL, "the expired action was dispatched");
	H_CHECK(h_nodes_sum("resets_total") == resets, "a reset ran without a human");
	h_load_stop(load);
	h_test_end();
}
END_TEST

/* Hole 9: a worker that dies before it is ready, every time (its program is
 * gone), backs off; after a run of failed starts the daemon gives up and
 * exits 1 for systemd instead of looking alive for ever. */
START_TEST(t_crash_before_ready_trips_limit)
{
	char active[300];
	int status = 0, ok;

	c_start("crash_before_ready", "execute", NULL, NULL);
	pid_t diag = c_worker_pid("diagnoser");
	H_CHECK(diag > 0, "no diagnoser");
	/* Every later start of a worker fails before it is ready: the validated
	 * configuration it reads is gone. */
	snprintf(active, sizeof(active), "%s/config", H->run);
	H_CHECK(unlink(active) == 0, "cannot remove %s", active);
	kill(diag, SIGKILL);
	/* 1+2+4+8+16 s of backoff, then the run of failed starts is over. */
	H_WAIT(ok, 120000, waitpid(H->od_pid, &status, WNOHANG) == H->od_pid);
	H_CHECK(ok, "operatord still running with a worker that cannot start");
	H->od_pid = 0;
	H_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "operatord ended with status %d",
	    status);
	/* Started again on the same ledger, it says why it gave up. */
	H_CHECK(h_od_spawn() == 0, "operatord did not start again");
	H_CHECK(h_ev_refresh() && h_ev_find("daemon_giving_up", 0, 0) != NULL,
	    "no daemon_giving_up event");
	h_test_end();
}
END_TEST

/* Hole 10: a reload validates first. A bad file is refused with the reason,
 * the workers keep running and nothing changes; a good one applies its mode
 * and [safety] section in the running daemon. */
START_TEST(t_reload)
{
	char *err = NULL;
	json_object *st;
	FILE *f;

	c_start("reload", "execute", NULL, "[safety]\napproval_ttl = 15m\n");
	pid_t obs = c_worker_pid("observer");
	char good[4096];
	f = fopen(H->conf, "r");
	H_CHECK(f != NULL, "cannot read %s", H->conf);
	size_t n = fread(good, 1, sizeof(good) - 1, f);
	good[n] = '\0';
	fclose(f);
	/* A bad file: an unknown mode. */
	f = fopen(H->conf, "w");
	fputs("[operatord]\nmode = sometimes\n", f);
	fclose(f);
	int rc = h_opsend(NULL, &err, "reload", NULL);
	H_CHECK(rc == 1 && err && strstr(err, "mode"), "bad reload: exit %d, \"%s\"", rc,
	    err ? err : "");
	free(err);
	err = NULL;
	st = h_status();
	H_CHECK(!strcmp(c_str(st, "mode"), "execute"), "mode %s after a refused reload",
	    c_str(st, "mode"));
	json_object_put(st);
	H_CHECK(c_worker_pid("observer") == obs, "a refused reload restarted the workers");
	/* A good one: mode approve and a new approval_ttl. */
	char *mode = strstr(good, "mode = execute");
	H_CHECK(mode != NULL, "no mode line in the generated configuration");
	memcpy(mode, "mode = approve", strlen("mode = approve"));
	char *ttl = strstr(good, "approval_ttl = 15m");
	H_CHECK(ttl != NULL, "no approval_ttl line");
	memcpy(ttl, "approval_ttl = 7m ", strlen("approval_ttl = 7m "));
	f = fopen(H->conf, "w");
	fputs(good, f);
	fclose(f);
	int64_t since = h_last_seq();
	rc = h_opsend(NULL, &err, "reload", NULL);
	H_CHECK(rc == 0, "good reload: exit %d, %s", rc, err ? err : "");
	free(err);
	st = h_status();
	H_CHECK(!strcmp(c_str(st, "mode"), "approve"), "mode %s after the reload", c_str(st, "mode"));
	json_object_put(st);
	json_object *mc = c_wait_ev("mode_changed", 0, since, H_WAIT_MS);
	H_CHECK(!strcmp(c_str(h_ev_data(mc), "to"), "approve"), "mode_changed to %s",
	    c_str(h_ev_data(mc), "to"));
	c_wait_ev("config_reloaded", 0, since, H_WAIT_MS);
	/* The workers restart with it: wait until they are all back. */
	int ok;
	H_WAIT(ok, H_WAIT_MS, c_worker_pid("observer") != obs && h_all_ready());
	H_CHECK(ok, "the workers did not come back after the reload");
	/* [safety] applies at once: an approval now announces the new TTL. */
	const char *key = "core-reload";
	pid_t load = c_loaded_key(key, 200);
	since = h_last_seq();
	c_inject("counter_drift", key, "600s");
	int64_t tid = c_wait_ticket("counter_drift", key, since, C_LOOP_MS);
	json_object *aw = c_wait_ev("action_awaiting_approval", tid, since, C_LOOP_MS);
	H_CHECK(op_json_int(h_ev_data(aw), "ttl_ms", 0) == 7 * 60 * 1000, "approval ttl %lld ms",
	    (long long)op_json_int(h_ev_data(aw), "ttl_ms", 0));
	h_load_stop(load);
	h_test_end();
}
END_TEST

/* Hole 7: one transaction per input, enforced. Another process holds the
 * ledger's write lock: an operator's change cannot begin its transaction, so
 * nothing of it is written, sent or kept in memory, and the operator is told;
 * once the lock is gone the same change goes through. */
START_TEST(t_ledger_refuses)
{
	char db[300], *err = NULL;
	sqlite3 *h = NULL;

	c_start("ledger_refuses", "execute", NULL, NULL);
	snprintf(db, sizeof(db), "%s/ledger.db", H->state);
	H_CHECK(sqlite3_open(db, &h) == SQLITE_OK, "cannot open %s", db);
	H_CHECK(sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK,
	    "cannot lock the ledger: %s", sqlite3_errmsg(h));
	int64_t before = h_last_seq();
	int rc = h_opsend(NULL, &err, "mode", "approve", NULL);
	H_CHECK(rc == 1 && err != NULL && *err, "a change the ledger refused: exit %d, \"%s\"", rc,
	    err ? err : "");
	free(err);
	err = NULL;
	json_object *st = h_status();
	H_CHECK(!strcmp(c_str(st, "mode"), "execute"), "mode %s although nothing was recorded",
	    c_str(st, "mode"));
	json_object_put(st);
	sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(h);
	H_CHECK(h_ev_refresh() && h_ev_find("mode_changed", 0, before) == NULL,
	    "a mode_changed event of the refused change exists");
	rc = h_opsend(NULL, &err, "mode", "approve", NULL);
	H_CHECK(rc == 0, "mode approve after the lock: exit %d, %s", rc, err ? err : "");
	free(err);
	c_wait_ev("mode_changed", 0, before, H_WAIT_MS);
	h_test_end();
}
END_TEST

/* Hole 14: a stopped executor (as busy as one in a 25 s election wait) while
 * 1,200 mode changes arrive: more frames than its channel holds. It is not
 * killed for being busy, the daemon stays up, and when it runs again it has
 * the last mode. */
START_TEST(t_busy_worker_not_killed)
{
	c_start("busy_worker", "execute", NULL, NULL);
	pid_t ex = c_worker_pid("executor");
	H_CHECK(ex > 0, "no executor");
	int64_t since = h_last_seq();
	kill(ex, SIGSTOP);
	int other = 0;
	for (int i = 0; i < 1200; i++) {
		char *err = NULL;
		int rc = h_opsend(NULL, &err, "mode", i % 2 ? "execute" : "approve", NULL);
		/* "busy" is back-pressure, and allowed; anything else is not. */
		if (rc != 0 && !(err && strstr(err, "busy")))
			other++;
		free(err);
	}
	H_CHECK(other == 0, "%d mode changes failed for another reason than busy", other);
	H_CHECK(c_worker_pid("executor") == ex, "the busy executor was replaced");
	kill(ex, SIGCONT);
	H_CHECK(h_opsend(NULL, NULL, "mode", "execute", NULL) == 0, "mode execute failed");
	H_CHECK(h_ev_refresh(), "optail failed");
	json_object *ex_gone = h_ev_find("worker_exited", 0, since);
	H_CHECK(ex_gone == NULL, "a worker exited during the burst: %s",
	    json_object_to_json_string(ex_gone));
	H_CHECK(h_ev_find("daemon_giving_up", 0, since) == NULL, "the daemon gave up");
	json_object *st = h_status();
	H_CHECK(st != NULL && !strcmp(c_str(st, "mode"), "execute"), "daemon not answering or mode %s",
	    c_str(st, "mode"));
	json_object_put(st);
	h_test_end();
}
END_TEST

/* Hole 17: the executor dies holding a reset (dispatched, never run): the
 * action is unknown and its verification judges the fault's invariant on an
 * explicit reading, never an absent one, without counting a reset that did
 * not happen. The same fault again reopens the ticket with its attempts
 * counted from zero. */
START_TEST(t_unknown_judged_on_the_fault)
{
	const char *key = "core-unknown";

	c_start("unknown_judged", "execute", NULL, NULL);
	pid_t load = c_loaded_key(key, 200);
	pid_t ex = c_worker_pid("executor");
	H_CHECK(ex > 0, "no executor");
	int64_t resets = h_nodes_sum("resets_total");
	kill(ex, SIGSTOP);
	int64_t since = h_last_seq();
	c_inject("counter_drift", key, "600s");
	int64_t tid = c_wait_ticket("counter_drift", key, since, C_LOOP_MS);
	c_wait_ev("action_dispatched", tid, since, C_LOOP_MS);
	kill(ex, SIGKILL);
	c_wait_ev("action_unknown", tid, since, H_WAIT_MS);
	json_object *v = c_wait_ev("verification", tid, since, C_LOOP_MS);
	json_object *fig = op_json_obj(h_ev_data(v), "figures");
	H_CHECK(strstr(c_str(fig, "judged"), "unknown") != NULL, "judged: %s", c_str(fig, "judged"));
	H_CHECK(strcmp(c_str(fig, "state"), "absent") != 0, "an unknown action verified on an absence");
	H_CHECK(h_nodes_sum("resets_total") == resets, "a reset ran although the executor never got to it");
	if (!strcmp(c_str(h_ev_data(v), "result"), "success")) {
		H_CHECK(!strcmp(c_str(fig, "state"), "healthy"), "success on state %s",
		    c_str(fig, "state"));
		c_wait_ev("ticket_resolved", tid, since, H_WAIT_MS);
		/* The fault again: the ticket reopens for a new episode. */
		since = h_last_seq();
		c_inject("counter_drift", key, "600s");
		c_wait_ev("ticket_reopened", tid, since, C_LOOP_MS);
		json_object *t = h_ticket(tid);
		json_object *row = op_json_obj(t, "ticket") ? op_json_obj(t, "ticket") : t;
		H_CHECK(op_json_int(row, "flaps", 0) == 1, "flaps %lld", (long long)op_json_int(row, "flaps", 0));
		H_CHECK(op_json_int(row, "attempts", -1) <= 1, "a reopened ticket starts with %lld attempts",
		    (long long)op_json_int(row, "attempts", -1));
		json_object_put(t);
	}
	h_load_stop(load);
	h_test_end();
}
END_TEST

/* A fresh observation through the observer (opsend observe). */
static json_object *
c_observe(void)
{
	json_object *o = NULL;

	if (h_opsend(&o, NULL, "observe", "ratelimiter", NULL) != 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Whether an observation is blind (not every node answered) and was taken
 * at or after not_before_ms (the subject's own clock, Redis time). */
static int
c_blind_since(int64_t not_before_ms)
{
	json_object *o = c_observe();
	int blind = o && !op_json_bool(o, "complete", 1) &&
	    op_json_int(o, "at_ms", 0) >= not_before_ms;

	json_object_put(o);
	return blind;
}

/* Hole 2: a missing reading is not healed. A counter_drift ticket is open
 * when an rlnode stops answering (SIGSTOP); the fault ends and ages out of
 * the window on the nodes that still answer, but the observation cannot
 * account for the key, so the ticket stays open. Once the node answers
 * again an explicit healthy reading clears it. */
START_TEST(t_blind_spot_not_healed)
{
	const char *key = "core-blind";
	int ok;

	c_start("blind_spot", "observe", NULL, NULL);
	pid_t load = c_loaded_key(key, 60);
	int64_t since = h_last_seq();
	c_inject("counter_drift", key, "5s");
	int64_t tid = c_wait_ticket("counter_drift", key, since, C_LOOP_MS);
	kill(H->node_pid[1], SIGSTOP);
	json_object *end = c_wait_ev("fault_cleared", 0, since, C_LOOP_MS);
	/* Past the window after the fault ended: with every node answering the
	 * drift would read 0 now, and a missing reading taken as healthy would
	 * have cleared the ticket. */
	int64_t aged = h_ev_ts_ms(end) + H_NODE_WINDOW_MS + 2 * H_VERIFY_SETTLE_MS;
	H_WAIT(ok, C_LOOP_MS, c_blind_since(aged));
	h_ev_refresh();
	int64_t blind_until = h_last_seq();
	json_object *closed = h_ev_terminal(tid, since);
	H_CHECK(closed == NULL || !strcmp(c_str(closed, "type"), "ticket_escalated"),
	    "ticket %lld closed (%s) while a node could not be heard from", (long long)tid,
	    closed ? c_str(closed, "type") : "");
	kill(H->node_pid[1], SIGCONT);
	H_WAIT(ok, C_LOOP_MS, h_node_healthy(1));
	H_CHECK(ok, "rlnode 2 did not answer again after SIGCONT");
	json_object *cl = c_wait_ev("ticket_cleared", tid, blind_until, C_LOOP_MS);
	H_CHECK(h_ev_seq(cl) > blind_until, "cleared before the node answered");
	h_load_stop(load);
	h_test_end();
}
END_TEST

static Suite *
core_suite(void)
{
	const struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{"reticket", t_persisting_fault_reticketed},
		{"resume", t_verification_resumes_after_long_restart},
		{"deadline", t_step_deadline},
		{"expiry", t_expiry_never_runs_risky},
		{"startlimit", t_crash_before_ready_trips_limit},
		{"reload", t_reload},
		{"ledger", t_ledger_refuses},
		{"busy", t_busy_worker_not_killed},
		{"unknown", t_unknown_judged_on_the_fault},
		{"blind", t_blind_spot_not_healed},
	};
	Suite *s = suite_create("core");
	TCase *tc = tcase_create("holes");

	/* One environment (Redis, three rlnodes) for every case: each starts its
	 * own operatord on a fresh ledger. CK_RUN_CASE does not pick one test;
	 * CORE_ONLY=NAME does. */
	tcase_add_unchecked_fixture(tc, h_env_start, h_env_stop);
	tcase_set_timeout(tc, C_TCASE_TIMEOUT);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (getenv("CORE_ONLY") == NULL || !strcmp(getenv("CORE_ONLY"), cases[i].name))
			tcase_add_test(tc, cases[i].test);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	h_init();
	SRunner *sr = srunner_create(core_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
