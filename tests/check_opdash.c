/* opdash driven in tmux, the way fzf and tmux test terminal programs: a real
 * operatord, real redis-server and rlnodes (tests/harness.c), opdash in a
 * detached tmux session with its own socket; keys go in with send-keys, the
 * screen comes back with capture-pane, and every check polls the screen
 * until a condition holds (never a bare sleep).
 *
 *   dashboard_loop: chapters advance with SPACE, a running chapter refuses to
 *     advance and says so, counter drift shows in Detections (fault, ticket)
 *     and in Agent as diagnosis -> reset_counter -> verification success with
 *     figures -> resolved, in that order; Workload shows the key's count.
 *   keys_daemon_gone_and_resize: k toggles the kill switch in the daemon
 *     (after asking); opdash --snapshot prints every panel with the ticket
 *     open; a approves the waiting action (after asking); SIGKILL of
 *     operatord shows "operatord is not running", the frame comes back when a
 *     new operatord is ready; resizing
 *     below 100x30 says so and growing back redraws every panel; q quits. */
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
#include "harness.h"

#define D_KEY "dash"
#define D_SESSION "opdash"
#define D_W 140                 /* the tmux window: room for the whole agent sequence */
#define D_H 45
#define D_SCREEN_MS 15000       /* a frame condition that needs no loop */
#define D_LOOP_MS 90000         /* fault to resolved on the screen */

static char d_sock[200], d_chapters[200];

/* tmux -S SOCK ARGS...; returns the exit code, *out its stdout. */
static int
tmx(char **out, ...)
{
	char *argv[24] = {"tmux", "-S", d_sock};
	int n = 3;
	va_list ap;
	const char *a;

	va_start(ap, out);
	while ((a = va_arg(ap, const char *)) != NULL && n < 23)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	return h_run(argv, 10000, out, NULL);
}

static char *
screen(void)
{
	char *out = NULL;

	if (tmx(&out, "capture-pane", "-p", "-t", D_SESSION, NULL) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* The inside of the panel titled `title` in a captured screen, its rows
 * joined and runs of blanks squeezed to one. */
static char *
panel(const char *scr, const char *title)
{
	char key[64], *copy, *save = NULL, *lines[256];
	int n = 0;

	if (scr == NULL)
		return NULL;
	copy = strdup(scr);
	for (char *l = strtok_r(copy, "\n", &save); l && n < 256; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	snprintf(key, sizeof(key), "+ %s ", title);
	char *out = calloc(strlen(scr) + 1, 1);
	size_t o = 0;
	for (int y = 0; y < n; y++) {
		char *at = strstr(lines[y], key);
		if (at == NULL)
			continue;
		int x0 = (int)(at - lines[y]);
		char *right = strchr(at + 1, '+');
		int x1 = right ? (int)(right - lines[y]) : (int)strlen(lines[y]);
		for (int yy = y + 1; yy < n; yy++) {
			int len = (int)strlen(lines[yy]);
			if (len <= x0 || lines[yy][x0] == '+')
				break;
			for (int x = x0 + 1; x < x1 && x < len; x++)
				out[o++] = lines[yy][x];
			out[o++] = '\n';
		}
		free(copy);
		/* one line of text: a check must not depend on where a line wrapped */
		size_t w = 0;
		for (size_t r = 0; out[r]; r++) {
			int space = out[r] == ' ' || out[r] == '\n';
			if (space && (w == 0 || out[w - 1] == ' '))
				continue;
			out[w++] = space ? ' ' : out[r];
		}
		out[w] = '\0';
		return out;
	}
	free(copy);
	free(out);
	return NULL;
}

/* Each needle after the previous one, in order. */
static int
in_order(const char *hay, ...)
{
	va_list ap;
	const char *n, *p = hay;

	if (hay == NULL)
		return 0;
	va_start(ap, hay);
	while ((n = va_arg(ap, const char *)) != NULL) {
		p = strstr(p, n);
		if (p == NULL)
			break;
		p += strlen(n);
	}
	va_end(ap);
	return p != NULL;
}

static int
screen_has(const char *needle)
{
	char *s = screen();
	int ok = s && strstr(s, needle) != NULL;

	free(s);
	return ok;
}

/* The Agent panel shows the whole loop of the drift ticket, in order. */
static int
agent_loop_shown(void)
{
	char *s = screen(), *agent = panel(s, "Agent");
	int ok = in_order(agent, "counter_drift " D_KEY " [resolved]", "diagnosis", "counter drift on key "
	    D_KEY, "reset_counter key=" D_KEY " executed", "verify", "success: key " D_KEY ": Redis counts",
	    "drift ", "checks healthy", "resolved", NULL);

	free(agent);
	free(s);
	return ok;
}

static int
detections_shown(void)
{
	char *s = screen(), *det = panel(s, "Detections");
	/* newest first: the ticket above the fault that caused it */
	int ok = in_order(det, "counter_drift", D_KEY, "resolved", NULL) &&
	    in_order(det, "FAULT counter_drift", NULL) &&
	    strstr(det, "resolved") < strstr(det, "FAULT");

	free(det);
	free(s);
	return ok;
}

static int
workload_shown(void)
{
	char *s = screen(), *w = panel(s, "Workload");
	int ok = w && strstr(w, D_KEY " ") && strstr(w, "/100000");

	free(w);
	free(s);
	return ok;
}

static int
every_panel_shown(void)
{
	static const char *const titles[] = {"Cluster", "Chapter", "Detections", "Agent", "Workload"};
	char *s = screen();
	int ok = s && strstr(s, "at least") == NULL;

	for (size_t i = 0; ok && i < OP_ARRAY_LEN(titles); i++) {
		char *p = panel(s, titles[i]);
		ok = p != NULL;
		free(p);
	}
	free(s);
	return ok;
}

static void
dump_screen(const char *why)
{
	char *s = screen();

	fprintf(stderr, "--- screen (%s) ---\n%s--- end of screen ---\n", why, s ? s : "(none)\n");
	free(s);
}

#define D_CHECK(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			dump_screen(#cond);                                    \
			H_CHECK(0, __VA_ARGS__);                               \
		}                                                              \
	} while (0)

static void
d_setup(void)
{
	h_env_start();
	if (H->setup_failed)
		return;
	snprintf(d_sock, sizeof(d_sock), "%s/tmux.sock", H->dir);
	snprintf(d_chapters, sizeof(d_chapters), "%s/test.chapters", H->dir);
	FILE *f = fopen(d_chapters, "w");
	if (f == NULL) {
		H->setup_failed = 1;
		return;
	}
	fprintf(f, "subject: ratelimiter\n"
	    "chapter: Start\nThe rate limiter under load.\n"
	    "chapter: Drift\n"
	    "do: chaos inject counter_drift key=" D_KEY " ttl=30s\n"
	    "wait: ticket_resolved|ticket_escalated invariant=counter_drift entity=$target\n"
	    "timeout: 100s\nA Redis write stall while requests flow.\n"
	    "chapter: End\nBoth closed.\n");
	fclose(f);
}

static void
d_teardown(void)
{
	/* the tmux server is a daemon of its own: stop it (and opdash in it) first */
	if (d_sock[0])
		tmx(NULL, "kill-server", NULL);
	h_env_stop();
}

static void
start_dash(void)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "exec %s --runtime-dir %s --chapters %s", getenv("OPDASH_BIN"),
	    H->run, d_chapters);
	int rc = tmx(NULL, "-f", "/dev/null", "new-session", "-d", "-s", D_SESSION, "-x", "140", "-y",
	    "45", cmd, NULL);
	H_CHECK(rc == 0, "tmux new-session exited %d", rc);
	/* a detached session keeps the size it was given */
	tmx(NULL, "set-option", "-g", "window-size", "manual", NULL);
}

START_TEST(t_dashboard_loop)
{
	int ok;

	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin("dashboard_loop");
	H_CHECK(h_set_limit(0, D_KEY, 100000), "PUT /api/limits/%s failed", D_KEY);
	pid_t ld = h_load_start(D_KEY, 40, 7);
	start_dash();
	H_WAIT(ok, D_SCREEN_MS, screen_has("[1/3] Start") && screen_has("> done"));
	D_CHECK(ok, "chapter 1 not shown as done");
	D_CHECK(every_panel_shown(), "a panel is missing");
	D_CHECK(screen_has("mode EXECUTE"), "status line has no mode");
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "rlnode uptime never covered the window");
	/* the Workload panel counts the key */
	H_WAIT(ok, D_SCREEN_MS, workload_shown());
	D_CHECK(ok, "the Workload panel does not show %s against its limit", D_KEY);

	tmx(NULL, "send-keys", "-t", D_SESSION, "Space", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("[2/3] Drift") && screen_has("> running"));
	D_CHECK(ok, "SPACE did not enter the drift chapter");
	/* it runs until the loop closes: SPACE is refused and the screen says why */
	tmx(NULL, "send-keys", "-t", D_SESSION, "Space", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("is still running"));
	D_CHECK(ok && screen_has("[2/3] Drift"), "a running chapter advanced or said nothing");

	H_WAIT(ok, D_LOOP_MS, agent_loop_shown());
	D_CHECK(ok, "the Agent panel never showed diagnosis, reset_counter, success with figures, "
	    "resolved in order");
	H_WAIT(ok, D_SCREEN_MS, detections_shown());
	D_CHECK(ok, "the Detections panel does not show the fault and the resolved ticket");
	H_WAIT(ok, D_SCREEN_MS, screen_has("> done: SPACE"));
	D_CHECK(ok, "the drift chapter did not finish when the ticket resolved");
	/* what the screen said is what the daemon recorded */
	h_ev_refresh();
	int64_t tid = h_ev_ticket("counter_drift", D_KEY, 0);
	H_CHECK(tid > 0 && h_ev_find("ticket_resolved", tid, 0) != NULL,
	    "the daemon has no resolved counter_drift ticket for %s", D_KEY);
	char hdr[64];
	snprintf(hdr, sizeof(hdr), "#%lld counter_drift " D_KEY, (long long)tid);
	D_CHECK(screen_has(hdr), "the Agent panel names another ticket than %lld", (long long)tid);

	tmx(NULL, "send-keys", "-t", D_SESSION, "Space", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("[3/3] End"));
	D_CHECK(ok, "SPACE after the loop did not advance");
	(void)ld;   /* the load runs on: the next test injects again */
	h_test_end();
}
END_TEST

START_TEST(t_keys_daemon_gone_and_resize)
{
	int ok;

	ck_assert_msg(!H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin("keys_daemon_gone_and_resize");
	if (!screen_has("+ Agent "))
		start_dash();
	H_WAIT(ok, D_SCREEN_MS, screen_has("workers 5/5"));
	D_CHECK(ok, "no status line with the workers");

	/* k asks, y turns the kill switch on in the daemon, k y turns it off */
	tmx(NULL, "send-keys", "-t", D_SESSION, "k", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("turn the kill switch ON"));
	D_CHECK(ok, "k did not ask before turning the kill switch on");
	tmx(NULL, "send-keys", "-t", D_SESSION, "y", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("kill switch ON"));
	D_CHECK(ok, "the status line does not show the kill switch on");
	json_object *st = h_status();
	H_CHECK(op_json_bool(st, "kill_switch", 0), "the daemon's kill switch is not on");
	json_object_put(st);
	tmx(NULL, "send-keys", "-t", D_SESSION, "k", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("turn the kill switch OFF"));
	tmx(NULL, "send-keys", "-t", D_SESSION, "y", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("kill switch off"));
	D_CHECK(ok, "the kill switch did not go off");

	/* in approve mode the action waits; a asks, y approves it through the daemon */
	H_CHECK(h_opsend(NULL, NULL, "mode", "approve", NULL) == 0, "opsend mode approve failed");
	H_CHECK(h_opsend(NULL, NULL, "chaos", "inject", "counter_drift", "key=" D_KEY, "ttl=30s",
	    NULL) == 0, "inject failed");
	H_WAIT(ok, D_LOOP_MS, screen_has("press a to approve") || screen_has("and press a"));
	D_CHECK(ok, "no action waiting for approval on the screen");
	/* --snapshot with a ticket open: one plain frame with every panel */
	{
		char *out = NULL, *err = NULL;
		char *argv[] = {getenv("OPDASH_BIN"), "--runtime-dir", H->run, "--snapshot", "--size",
		    "120x40", NULL};
		int rc = h_run(argv, 30000, &out, &err);
		H_CHECK(rc == 0, "opdash --snapshot exited %d: %s", rc, err ? err : "");
		static const char *const titles[] = {"Cluster", "Chapter", "Detections", "Agent",
			"Workload"};
		for (size_t i = 0; i < OP_ARRAY_LEN(titles); i++) {
			char *p = panel(out, titles[i]);
			H_CHECK(p != NULL, "the snapshot has no %s panel:\n%s", titles[i], out);
			free(p);
		}
		char *agent = panel(out, "Agent");
		H_CHECK(strstr(agent, "[awaiting_approval]") && strstr(agent, "waits for approval"),
		    "the snapshot's Agent panel does not show the open ticket:\n%s", out);
		const char *open = strstr(out, "| open ");
		H_CHECK(open && open[7] >= '1' && open[7] <= '9', "the snapshot's status line does not "
		    "count the open ticket:\n%s", out);
		H_CHECK(strchr(out, '\033') == NULL, "the snapshot is not plain text");
		free(agent);
		free(out);
		free(err);
	}
	tmx(NULL, "send-keys", "-t", D_SESSION, "a", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("approve action"));
	D_CHECK(ok, "a did not ask which action to approve");
	tmx(NULL, "send-keys", "-t", D_SESSION, "y", NULL);
	H_WAIT(ok, D_SCREEN_MS, h_ev_refresh() && h_ev_find("action_approved", 0, 0) != NULL);
	D_CHECK(ok, "the daemon recorded no approval");
	H_WAIT(ok, D_SCREEN_MS, screen_has("approved by uid:"));
	D_CHECK(ok, "the approval is not on the Agent panel");
	H_CHECK(h_opsend(NULL, NULL, "mode", "execute", NULL) == 0, "opsend mode execute failed");

	h_kill_wait(&H->od_pid, SIGKILL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("operatord is not running"));
	D_CHECK(ok, "a killed daemon is not shown as not running");
	H_CHECK(h_od_spawn() == 0, "operatord did not come back");
	H_WAIT(ok, D_SCREEN_MS, !screen_has("operatord is not running") && screen_has("workers 5/5"));
	D_CHECK(ok, "opdash did not reconnect to the new operatord");
	/* events are replayed after the reconnect: the old loop is still told */
	H_WAIT(ok, D_SCREEN_MS, screen_has("reset_counter"));
	D_CHECK(ok, "the agent's history is gone after the reconnect");

	tmx(NULL, "resize-window", "-t", D_SESSION, "-x", "90", "-y", "30", NULL);
	H_WAIT(ok, D_SCREEN_MS, screen_has("at least 100x30"));
	D_CHECK(ok, "90x30 does not say it is too small");
	tmx(NULL, "resize-window", "-t", D_SESSION, "-x", "100", "-y", "30", NULL);
	H_WAIT(ok, D_SCREEN_MS, every_panel_shown());
	D_CHECK(ok, "100x30 did not redraw every panel");
	char *s = screen();
	int rows = 0, wide = 0;
	for (char *p = s; p && *p; rows++) {
		char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		wide |= len > 100;
		p = nl ? nl + 1 : p + len;
	}
	D_CHECK(!wide && rows == 30, "the 100x30 frame is %d rows, wider than 100: %d", rows, wide);
	free(s);

	tmx(NULL, "send-keys", "-t", D_SESSION, "q", NULL);
	H_WAIT(ok, D_SCREEN_MS, tmx(NULL, "has-session", "-t", D_SESSION, NULL) != 0);
	H_CHECK(ok, "q did not quit opdash");
	h_test_end();
}
END_TEST

static Suite *
opdash_suite(void)
{
	Suite *s = suite_create("opdash");
	TCase *tc = tcase_create("tmux");

	tcase_add_unchecked_fixture(tc, d_setup, d_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_dashboard_loop);
	tcase_add_test(tc, t_keys_daemon_gone_and_resize);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	h_init();
	if (getenv("OPDASH_BIN") == NULL || access(getenv("OPDASH_BIN"), X_OK) != 0) {
		fprintf(stderr, "check_opdash: set OPDASH_BIN to the opdash binary\n");
		return 1;
	}
	char *argv[] = {"tmux", "-V", NULL};
	if (h_run(argv, 10000, NULL, NULL) != 0) {
		fprintf(stderr, "check_opdash: tmux is not installed (apt-get install tmux)\n");
		return 1;
	}
	SRunner *sr = srunner_create(opdash_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
