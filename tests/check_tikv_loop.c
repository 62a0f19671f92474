/* check_tikv_loop: the TiKV loop with real processes. pdsim (one real
 * process per store), operatord in execute mode with its workers, driven
 * through opsend and optail as child processes (this process never touches
 * nng). Conditions are polled with generous bounds; nothing is a bare sleep.
 *
 * Env: OPERATORD_BIN, OPSEND_BIN, OPTAIL_BIN, PDSIM_BIN. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define T_POLL_MS 200            /* condition polling step */
#define T_WAIT_MS 60000          /* bound of one condition wait */
#define T_RUN_MS 20000           /* one opsend/optail call */
#define T_POLL_INTERVAL_MS 500   /* poll_interval in the generated config */
#define T_PROBE_MS 500           /* the subject's default probe_timeout */
#define T_STOP_MS 15000          /* operatord SIGTERM to SIGKILL */

/* Shared with the check parent, which tears down what a killed test left. */
struct t_env {
	char dir[64], run[96], conf[96];
	pid_t pdsim, od;
	int pd_port;
};
static struct t_env *E;

static const char *
bin(const char *var)
{
	return getenv(var);
}

/* ------------------------------------------------------------ processes */

static pid_t
spawn(char *const argv[], const char *log)
{
	char path[160];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", E->dir, log);
	fflush(NULL);
	if ((pid = fork()) == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setpgid(0, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Runs argv to completion; returns the exit code (-1 killed/timed out). */
static int
run(char *const argv[], char **out)
{
	int po[2], st = 0;
	size_t len = 0, cap = 8192;
	char *buf = malloc(cap);
	int64_t end = op_mono_ms() + T_RUN_MS;
	pid_t pid;

	buf[0] = '\0';
	if (pipe2(po, O_CLOEXEC) != 0) {
		free(buf);
		return -1;
	}
	fflush(NULL);
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(po[1], 1);
		if (null >= 0)
			dup2(null, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(po[1]);
	for (;;) {
		struct pollfd pf = {po[0], POLLIN, 0};
		int64_t left = end - op_mono_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		if (len + 4096 + 1 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(po[0], buf + len, 4096);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
	}
	close(po[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* opsend --json ARGS...: the parsed answer, or NULL. */
static json_object *
opsend(const char *first, ...)
{
	char *argv[16], *out = NULL, perr[128];
	va_list ap;
	int n = 0;

	argv[n++] = (char *)bin("OPSEND_BIN");
	argv[n++] = "--runtime-dir";
	argv[n++] = E->run;
	argv[n++] = "--json";
	va_start(ap, first);
	for (const char *a = first; a && n < 15; a = va_arg(ap, const char *))
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	int rc = run(argv, &out);
	json_object *j = rc == 0 && out ? op_json_parse(out, strlen(out), perr, sizeof(perr)) : NULL;
	free(out);
	return j;
}

/* Every event so far, as an array (optail --json prints one per line). */
static json_object *
events(void)
{
	char *argv[] = {(char *)bin("OPTAIL_BIN"), "--runtime-dir", E->run, "--json", NULL};
	char *out = NULL;
	json_object *a = json_object_new_array();

	if (run(argv, &out) == 0 && out) {
		char *save = NULL;
		for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			json_object *e = json_tokener_parse(l);
			if (e)
				json_object_array_add(a, e);
		}
	}
	free(out);
	return a;
}

static int64_t
rfc3339_ms(const char *s)
{
	struct tm tm;
	int ms = 0;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

/* First event after seq `after` of this type (and invariant/entity/ticket when given). */
static json_object *
ev_find(json_object *evs, const char *type, const char *inv, const char *entity,
    int64_t ticket, int64_t after)
{
	for (size_t i = 0; i < json_object_array_length(evs); i++) {
		json_object *e = json_object_array_get_idx(evs, i);
		if (op_json_int(e, "seq", 0) <= after || strcmp(op_json_str(e, "type", ""), type) != 0)
			continue;
		if (inv && strcmp(op_json_str(e, "invariant", ""), inv) != 0)
			continue;
		if (entity && strcmp(op_json_str(e, "entity", ""), entity) != 0)
			continue;
		if (ticket > 0 && op_json_int(e, "ticket", 0) != ticket)
			continue;
		return e;
	}
	return NULL;
}

static int64_t
ev_last_seq(void)
{
	json_object *evs = events();
	int64_t m = 0;

	for (size_t i = 0; i < json_object_array_length(evs); i++) {
		int64_t s = op_json_int(json_object_array_get_idx(evs, i), "seq", 0);
		if (s > m)
			m = s;
	}
	json_object_put(evs);
	return m;
}

/* Polls events until the finder matches; returns a new reference or NULL. */
static json_object *
ev_wait(const char *type, const char *inv, const char *entity, int64_t ticket, int64_t after)
{
	int64_t end = op_mono_ms() + T_WAIT_MS;

	for (;;) {
		json_object *evs = events();
		json_object *e = ev_find(evs, type, inv, entity, ticket, after);
		if (e != NULL) {
			json_object_get(e);
			json_object_put(evs);
			return e;
		}
		json_object_put(evs);
		if (op_mono_ms() >= end)
			return NULL;
		op_sleep_ms(T_POLL_MS);
	}
}

static void
dump(const char *why)
{
	char cmd[256];

	fprintf(stderr, "---- %s; events and operatord log follow\n", why);
	json_object *evs = events();
	for (size_t i = 0; i < json_object_array_length(evs); i++)
		fprintf(stderr, "%s\n", json_object_to_json_string_ext(json_object_array_get_idx(evs, i),
		    JSON_C_TO_STRING_PLAIN));
	json_object_put(evs);
	snprintf(cmd, sizeof(cmd), "tail -n 60 %s/operatord.log 1>&2", E->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "(no operatord log)\n");
}

#define T_CHECK(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			dump(#cond);                                           \
			ck_abort_msg(__VA_ARGS__);                             \
		}                                                              \
	} while (0)

/* ------------------------------------------------------------ environment */

static void
start_pdsim(int stores, int regions)
{
	char pf[128], ns[16], nr[16];
	FILE *f;

	snprintf(pf, sizeof(pf), "%s/pd.port", E->dir);
	snprintf(ns, sizeof(ns), "%d", stores);
	snprintf(nr, sizeof(nr), "%d", regions);
	/* PD's own balance-leader is slowed right down: the leaders must be
	 * moved by operatord's operators, not by PD */
	char *argv[] = {(char *)bin("PDSIM_BIN"), "--port", "0", "--port-file", pf, "--stores", ns,
	    "--regions", nr, "--election-ms", "1000", "--disconnect-ms", "3000", "--down-ms",
	    "600000", "--balance-interval-ms", "600000", NULL};
	E->pdsim = spawn(argv, "pdsim.log");
	int64_t end = op_mono_ms() + T_WAIT_MS;
	while (E->pd_port <= 0 && op_mono_ms() < end) {
		if ((f = fopen(pf, "r")) != NULL) {
			if (fscanf(f, "%d", &E->pd_port) != 1)
				E->pd_port = 0;
			fclose(f);
		}
		if (E->pd_port <= 0)
			op_sleep_ms(50);
	}
	ck_assert_msg(E->pd_port > 0, "pdsim did not start (see %s/pdsim.log)", E->dir);
}

static void
start_operatord(void)
{
	char text[1024];
	FILE *f;

	snprintf(text, sizeof(text),
	    "[operatord]\nruntime_dir = %s\nstate_dir = %s/state\nmode = execute\n"
	    "verify_delay = 2s\npoll_interval = %dms\n"
	    "[subject.tikv]\npd = http://127.0.0.1:%d\ntimeout = 1s\n"
	    "[chaos]\nenabled = true\n"
	    /* rebalance_leaders moves leaders across most of pdsim's few stores,
	     * more than the default blast radius (34% of them) allows */
	    "[safety]\nblast_radius = off\n", E->run, E->dir, T_POLL_INTERVAL_MS, E->pd_port);
	f = fopen(E->conf, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	char *argv[] = {(char *)bin("OPERATORD_BIN"), "--config", E->conf, NULL};
	E->od = spawn(argv, "operatord.log");
	int64_t end = op_mono_ms() + T_WAIT_MS;
	for (;;) {
		json_object *st = opsend("status", NULL);
		json_object *w = op_json_arr(st, "workers");
		size_t ready = 0;
		for (size_t i = 0; w && i < json_object_array_length(w); i++)
			ready += strcmp(op_json_str(json_object_array_get_idx(w, i), "state", ""),
			    "ready") == 0;
		int all = w && ready == json_object_array_length(w) && ready >= 5;
		json_object_put(st);
		if (all)
			break;
		T_CHECK(op_mono_ms() < end, "operatord workers not ready");
		op_sleep_ms(T_POLL_MS);
	}
}

/* `opsend --json observe tikv` until every store is live and led. */
static json_object *
wait_healthy(int stores)
{
	int64_t end = op_mono_ms() + T_WAIT_MS;

	for (;;) {
		json_object *o = opsend("observe", "tikv", NULL);
		json_object *a = op_json_arr(o, "stores");
		size_t live = 0;
		for (size_t i = 0; a && i < json_object_array_length(a); i++)
			live += op_json_bool(json_object_array_get_idx(a, i), "live", 0);
		if (op_json_bool(op_json_obj(o, "pd"), "ok", 0) && live == (size_t)stores &&
		    op_json_int(op_json_obj(o, "regions"), "leaderless", 1) == 0 &&
		    op_json_int(op_json_obj(o, "regions"), "leader_on_dead_store", 1) == 0)
			return o;
		json_object_put(o);
		T_CHECK(op_mono_ms() < end, "cluster never healthy");
		op_sleep_ms(T_POLL_MS);
	}
}

static void
env_up(int stores, int regions)
{
	start_pdsim(stores, regions);
	start_operatord();
}

static void
kill_wait(pid_t *pid, int sig, int64_t wait_ms)
{
	int64_t end = op_mono_ms() + wait_ms;

	if (*pid <= 0)
		return;
	kill(*pid, SIGCONT);
	kill(*pid, sig);
	while (op_mono_ms() < end) {
		pid_t w = waitpid(*pid, NULL, WNOHANG);
		/* not our child (reaped elsewhere): gone once it cannot be signalled */
		if (w == *pid || (w < 0 && errno == ECHILD && kill(*pid, 0) != 0)) {
			*pid = 0;
			return;
		}
		op_sleep_ms(50);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

/* Unchecked fixture: runs in the check parent, so it also cleans up after a
 * test that its timeout killed. */
static void
env_setup(void)
{
	memset(E, 0, sizeof(*E));
	snprintf(E->dir, sizeof(E->dir), "/tmp/check_tikv_loop.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(E->dir));
	snprintf(E->run, sizeof(E->run), "%s/run", E->dir);
	snprintf(E->conf, sizeof(E->conf), "%s/operatord.conf", E->dir);
}

static void
env_teardown(void)
{
	char cmd[128];

	/* operatord first: on SIGTERM it undoes its faults, through pdsim */
	kill_wait(&E->od, SIGTERM, T_STOP_MS);
	kill_wait(&E->pdsim, SIGTERM, T_STOP_MS); /* its stores die with it */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", E->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", E->dir);
}

/* ------------------------------------------------------------ tests */

/* node_kill -> store_down ticket within two polls -> diagnosis ->
 * transfer-leader operators accepted by pdsim -> verified -> resolved. */
START_TEST(test_node_kill_loop)
{
	env_up(4, 400);
	json_object *obs = wait_healthy(4);
	/* one observation, compact: per-store figures, no region list */
	T_CHECK(json_object_array_length(op_json_arr(obs, "stores")) == 4, "4 stores observed");
	T_CHECK(op_json_int(op_json_obj(obs, "regions"), "count", 0) == 400, "400 regions");
	T_CHECK(strlen(json_object_to_json_string(obs)) < 16384, "observation is compact");
	json_object_put(obs);

	int64_t seq0 = ev_last_seq();
	json_object *inj = opsend("chaos", "inject", "node_kill", "ttl=60s", NULL);
	T_CHECK(inj != NULL, "chaos inject node_kill failed");
	char victim[32];
	op_strlcpy(victim, op_json_str(inj, "target", ""), sizeof(victim));
	json_object_put(inj);
	T_CHECK(victim[0] != '\0', "node_kill named no target");

	json_object *fi = ev_wait("fault_injected", NULL, NULL, 0, seq0);
	T_CHECK(fi != NULL, "no fault_injected event");
	json_object *op = ev_wait("ticket_opened", "store_down", victim, 0, seq0);
	T_CHECK(op != NULL, "no store_down ticket for store %s", victim);
	int64_t t_fault = op_json_int(op_json_obj(fi, "data"), "started_at",
	    rfc3339_ms(op_json_str(fi, "ts", NULL)));
	int64_t t_open = rfc3339_ms(op_json_str(op, "ts", NULL));
	int64_t tid = op_json_int(op, "ticket", 0);
	fprintf(stderr, "check_tikv_loop: store %s killed, store_down ticket %" PRId64
	    " opened %" PRId64 " ms later\n", victim, tid, t_open - t_fault);
	json_object_put(fi);
	json_object_put(op);

	json_object *dg = ev_wait("diagnosis", NULL, NULL, tid, seq0);
	T_CHECK(dg != NULL, "no diagnosis for ticket %" PRId64, tid);
	json_object_put(dg);

	json_object *ex = ev_wait("action_executed", NULL, NULL, tid, seq0);
	T_CHECK(ex != NULL, "no action executed for ticket %" PRId64, tid);
	json_object *d = op_json_obj(ex, "data"), *res = op_json_obj(d, "result");
	const char *act = op_json_str(d, "action", "");
	T_CHECK(strcmp(act, "rebalance_leaders") == 0 || strcmp(act, "transfer_leader") == 0,
	    "unexpected action %s", act);
	if (strcmp(act, "rebalance_leaders") == 0) {
		fprintf(stderr, "check_tikv_loop: rebalance_leaders %s\n",
		    json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN));
		T_CHECK(op_json_int(res, "accepted", 0) > 0, "pdsim accepted no operator");
		T_CHECK(op_json_int(res, "accepted", 0) <= 256, "more operators than the cap");
	}
	json_object_put(ex);

	json_object *vf = ev_wait("verification", NULL, NULL, tid, seq0);
	T_CHECK(vf != NULL, "no verification for ticket %" PRId64, tid);
	d = op_json_obj(vf, "data");
	T_CHECK(strcmp(op_json_str(d, "result", ""), "success") == 0, "verification %s: %s",
	    op_json_str(d, "result", ""), op_json_str(d, "reason", ""));
	json_object *lps = op_json_obj(op_json_obj(op_json_obj(d, "figures"), "evidence"),
	    "leaders_per_store");
	T_CHECK(lps != NULL && json_object_object_length(lps) == 4,
	    "verification figures lack leader counts");
	json_object_put(vf);

	json_object *rs = ev_wait("ticket_resolved", NULL, NULL, tid, seq0);
	T_CHECK(rs != NULL, "ticket %" PRId64 " not resolved", tid);
	json_object_put(rs);
}
END_TEST

static int
any_closed_since(int64_t after, char *what, size_t len)
{
	json_object *evs = events();
	static const char *const closing[] = {"ticket_resolved", "ticket_cleared", "action_executed"};
	int found = 0;

	for (size_t i = 0; i < 3 && !found; i++) {
		json_object *e = ev_find(evs, closing[i], NULL, NULL, 0, after);
		if (e) {
			snprintf(what, len, "%s", json_object_to_json_string(e));
			found = 1;
		}
	}
	json_object_put(evs);
	return found;
}

/* PD stopped (SIGSTOP: connections hang, as a stuck PD): pd_unreachable
 * opens, a store killed meanwhile is not acted on, nothing is resolved;
 * once PD answers again, the loop resumes. */
START_TEST(test_pd_down)
{
	char what[1024];

	env_up(3, 300);
	json_object_put(wait_healthy(3));
	int64_t seq0 = ev_last_seq();
	T_CHECK(kill(E->pdsim, SIGSTOP) == 0, "SIGSTOP pdsim");
	json_object *op = ev_wait("ticket_opened", "pd_unreachable", "pd", 0, seq0);
	T_CHECK(op != NULL, "no pd_unreachable ticket");
	json_object_put(op);

	/* the one-shot observation still answers, saying PD is not ok */
	json_object *o = opsend("observe", "tikv", NULL);
	T_CHECK(o != NULL && !op_json_bool(op_json_obj(o, "pd"), "ok", 1), "observe with PD down");
	T_CHECK(!op_json_bool(o, "complete", 1), "a PD-less observation is not complete");
	json_object_put(o);

	/* across several polls, nothing resolves, clears or acts */
	int64_t end = op_mono_ms() + 8 * T_POLL_INTERVAL_MS + 2000;
	while (op_mono_ms() < end) {
		T_CHECK(!any_closed_since(seq0, what, sizeof(what)), "while PD was down: %s", what);
		op_sleep_ms(T_POLL_MS * 3);
	}
	T_CHECK(kill(E->pdsim, SIGCONT) == 0, "SIGCONT pdsim");
	int64_t deadline = op_mono_ms() + T_WAIT_MS;
	for (;;) {
		o = opsend("observe", "tikv", NULL);
		int ok = op_json_bool(op_json_obj(o, "pd"), "ok", 0);
		json_object_put(o);
		if (ok)
			break;
		T_CHECK(op_mono_ms() < deadline, "PD never answered again");
		op_sleep_ms(T_POLL_MS);
	}
}
END_TEST


/* A "PD" that answers every request with 200 and a body that is not JSON. */
static pid_t
garbage_pd(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(ls, 0);
	ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(ls, 16), 0);
	ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		    "Content-Length: 19\r\nConnection: close\r\n\r\n{\"stores\": [garbage";
		setpgid(0, 0);
		for (;;) {
			int c = accept(ls, NULL, NULL);
			if (c < 0)
				continue;
			char req[4096];
			if (read(c, req, sizeof(req)) > 0 && write(c, resp, sizeof(resp) - 1) < 0)
				_exit(1);
			close(c);
		}
	}
	close(ls);
	return pid;
}

/* PD answering garbage: pd_unreachable opens with a parse error, no worker
 * crashes, nothing is resolved or acted on. */
START_TEST(test_pd_garbage)
{
	char what[1024];

	E->pdsim = garbage_pd(&E->pd_port);
	start_operatord();
	json_object *op = ev_wait("ticket_opened", "pd_unreachable", "pd", 0, 0);
	T_CHECK(op != NULL, "no pd_unreachable ticket while PD answers garbage");
	json_object_put(op);
	json_object *o = opsend("observe", "tikv", NULL);
	T_CHECK(o != NULL && !op_json_bool(op_json_obj(o, "pd"), "ok", 1),
	    "observe should say PD is not ok");
	const char *perr = op_json_str(op_json_obj(o, "pd"), "error", "");
	T_CHECK(strstr(perr, "JSON") != NULL || strstr(perr, "parse") != NULL,
	    "the PD error should say the answer did not parse: \"%s\"", perr);
	json_object_put(o);
	int64_t end = op_mono_ms() + 6 * T_POLL_INTERVAL_MS;
	while (op_mono_ms() < end) {
		T_CHECK(!any_closed_since(0, what, sizeof(what)), "with a garbage PD: %s", what);
		op_sleep_ms(T_POLL_MS * 3);
	}
	json_object *st = opsend("status", NULL);
	json_object *w = op_json_arr(st, "workers");
	T_CHECK(w != NULL && json_object_array_length(w) == 5, "status without workers");
	for (size_t i = 0; i < json_object_array_length(w); i++) {
		json_object *x = json_object_array_get_idx(w, i);
		T_CHECK(op_json_int(x, "restarts", -1) == 0 &&
		    strcmp(op_json_str(x, "state", ""), "ready") == 0,
		    "worker %s crashed on a garbage PD (restarts %lld, state %s)",
		    op_json_str(x, "name", "?"), (long long)op_json_int(x, "restarts", -1),
		    op_json_str(x, "state", "?"));
	}
	json_object_put(st);
}
END_TEST

/* store_stall: SIGSTOP a store (ports open, nothing answers): the probe
 * times out, store_down opens; the TTL's SIGCONT brings it back live. */
START_TEST(test_store_stall)
{
	env_up(3, 300);
	json_object_put(wait_healthy(3));
	int64_t seq0 = ev_last_seq();
	json_object *inj = opsend("chaos", "inject", "store_stall", "store=2", "ttl=6s", NULL);
	T_CHECK(inj != NULL && strcmp(op_json_str(inj, "target", ""), "2") == 0,
	    "store_stall on store 2 failed");
	json_object_put(inj);
	json_object *op = ev_wait("ticket_opened", "store_down", "2", 0, seq0);
	T_CHECK(op != NULL, "no store_down ticket for the stalled store");
	json_object_put(op);
	json_object *cl = ev_wait("fault_cleared", NULL, NULL, 0, seq0);
	T_CHECK(cl != NULL, "store_stall was not undone");
	json_object_put(cl);
	json_object_put(wait_healthy(3));
}
END_TEST

static Suite *
tikv_loop_suite(void)
{
	Suite *s = suite_create("tikv_loop");
	TCase *tc = tcase_create("loop");

	tcase_add_unchecked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_node_kill_loop);
	suite_add_tcase(s, tc);
	tc = tcase_create("pd_down");
	tcase_add_unchecked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_pd_down);
	suite_add_tcase(s, tc);
	tc = tcase_create("store_stall");
	tcase_add_unchecked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_store_stall);
	suite_add_tcase(s, tc);
	tc = tcase_create("pd_garbage");
	tcase_add_unchecked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_pd_garbage);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	static const char *const vars[] = {"OPERATORD_BIN", "OPSEND_BIN", "OPTAIL_BIN", "PDSIM_BIN"};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (bin(vars[i]) == NULL || access(bin(vars[i]), X_OK) != 0) {
			fprintf(stderr, "check_tikv_loop: set %s\n", vars[i]);
			return 1;
		}
	E = mmap(NULL, sizeof(*E), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E == MAP_FAILED)
		return 1;
	/* a store pdsim restarts, or a worker, comes back to us if orphaned */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	op_http_global_init();
	SRunner *sr = srunner_create(tikv_loop_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
