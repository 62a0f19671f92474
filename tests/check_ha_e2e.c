/*
 * HA end to end: a real etcd and two operatord instances ("a" and "b", each
 * with its own runtime and state directories) watching the same real Redis
 * and rlnodes. Drift is made directly in Redis (extra entries in a key's
 * window), so no chaos worker is needed on either instance.
 *
 * Cases, in order, on one environment:
 *   election     exactly one leader; both instances' status agree.
 *   failover     SIGKILL of the leader and its workers right after
 *                action_dispatched: the standby leads within lease_ttl + 2 s,
 *                resumes the ticket, verifies and resolves it; the reset ran
 *                exactly once.
 *   stall        the leader's executor stalls with the action queued, then
 *                the whole leader stalls (SIGSTOP) past its lease: the
 *                standby takes over and fixes it; on SIGCONT the old leader's
 *                executor is fenced (action_skipped, reason not_leader) and
 *                the old leader rejoins as standby. One reset in all.
 *   etcd_down    etcd stopped: no instance leads, a violation opens no
 *                ticket anywhere; etcd back: a leader is elected and fixes it.
 *   kill_switch  set on the standby, it stops the leader's next action;
 *                cleared on the standby, the leader acts.
 *   split        (last: it restarts both instances on another configuration)
 *                two subjects, the rate limiter and a TiKV cluster (pdsim),
 *                a may lead only the first and b only the second: each
 *                leads its own, both agree, and each acts only on the
 *                subject it leads (counter drift fixed by a alone, a killed
 *                store handled by b alone, though both observe both).
 *
 * Env: the harness's binaries, ETCD_BIN, PDSIM_BIN.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_ha_util.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "tests/harness.h"

#define E_N 2
#define E_TTL_S 3               /* [ha] lease_ttl */
#define E_TAKEOVER_MS ((E_TTL_S + 2) * 1000) /* the standby leads within lease_ttl + 2 s */
#define E_START_MS 60000        /* processes starting */
#define E_LOOP_MS 90000         /* violation to a terminal ticket */
#define E_DRIFT 25              /* entries added behind the nodes' back */
#define E_SUBJECT "ratelimiter"
#define E_TIKV "tikv"
#define E_SPLIT_CLUSTER "e2e-split" /* [ha] cluster of the split case: fresh keys */
#define E_PD_STORES 4           /* pdsim --stores in the split case */
#define E_PD_REGIONS 400        /* pdsim --regions */
#define E_STOP_MS 20000         /* operatord SIGTERM to SIGKILL */

struct e_inst {
	char name[8];
	char dir[200], run[220], state[220], conf[220], log[32];
	int metrics_port;
	pid_t pid;
};

struct e_env {
	struct ha_t_etcd etcd;
	struct e_inst in[E_N];
	pid_t pdsim;            /* split case; stopped after the instances */
	int pd_port;
	int setup_failed;
};

static struct e_env *EV;

/* ------------------------------------------------------------ helpers */

static const char *
e_str(json_object *o, const char *k)
{
	return op_json_str(o, k, "");
}

/* Points the harness's opsend/optail at instance i. */
static void
e_use(int i)
{
	op_strlcpy(H->run, EV->in[i].run, sizeof(H->run));
}

static void
e_dump(const char *why)
{
	fprintf(stderr, "---- %s\n", why);
	for (int i = 0; i < E_N; i++) {
		char path[300], cmd[400];
		snprintf(path, sizeof(path), "%s/%s", H->dir, EV->in[i].log);
		snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", path);
		fprintf(stderr, "---- instance %s log:\n", EV->in[i].name);
		if (system(cmd) != 0)
			fprintf(stderr, "(no log)\n");
	}
	if (EV->pdsim > 0) {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "tail -n 20 %s/pdsim.log >&2", H->dir);
		fprintf(stderr, "---- pdsim log:\n");
		if (system(cmd) != 0)
			fprintf(stderr, "(no log)\n");
	}
}

#define E_CHECK(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			e_dump(#cond);                                         \
			ck_abort_msg(__VA_ARGS__);                             \
		}                                                              \
	} while (0)

/* The instance's configuration. lead == NULL: the rate limiter alone;
 * otherwise the rate limiter and pdsim's TiKV, with chaos allowed (for an
 * injection by hand) and the instance allowed to lead `lead` only. */
static int
e_write_conf(int i, const char *lead)
{
	struct e_inst *in = &EV->in[i];
	FILE *f = fopen(in->conf, "w");

	if (f == NULL)
		return -1;
	fprintf(f, "[operatord]\nruntime_dir = %s\nstate_dir = %s\nmode = execute\n"
	    "verify_delay = %dms\nverify_settle = %dms\nverify_timeout = 40s\n"
	    "poll_interval = 500ms\nmetrics_listen = 127.0.0.1:%d\n\n", in->run, in->state,
	    H_VERIFY_DELAY_MS, H_VERIFY_SETTLE_MS, in->metrics_port);
	fprintf(f, "[subject.%s]\nredis = 127.0.0.1:%d\nnodes = ", E_SUBJECT, H->redis_port);
	for (int k = 0; k < H_NNODES; k++)
		fprintf(f, "%shttp://127.0.0.1:%d", k ? "," : "", H->node_port[k]);
	fprintf(f, "\ndrift_tolerance = %d\n\n", H_DRIFT_TOL);
	if (lead != NULL) {
		fprintf(f, "[subject.%s]\npd = http://127.0.0.1:%d\ntimeout = 1s\n\n", E_TIKV,
		    EV->pd_port);
		/* rebalance_leaders moves leaders across most of pdsim's few
		 * stores, more than the default blast radius allows; and the
		 * earlier cases' resets may have spent one instance's per-action
		 * budget (5 an hour, kept in its ledger across restarts) */
		fprintf(f, "[chaos]\nenabled = true\n\n[safety]\nblast_radius = off\n"
		    "budget_action = off\n\n");
	}
	fprintf(f, "[ha]\netcd = %s\nname = %s\ncluster = %s\nlease_ttl = %ds\n", EV->etcd.url,
	    in->name, lead ? E_SPLIT_CLUSTER : "e2e", E_TTL_S);
	if (lead != NULL)
		fprintf(f, "subjects = %s\n", lead);
	return fclose(f);
}

static void
e_spawn(int i)
{
	struct e_inst *in = &EV->in[i];
	char *argv[] = {(char *)h_bin("operatord"), "--config", in->conf, NULL};

	in->pid = h_spawn(argv, in->log);
}

static json_object *
e_status(int i)
{
	e_use(i);
	return h_status();
}

/* The instance's view of a subject: 1 leader, 0 standby, -1 no answer. */
static int
e_role_of(int i, const char *subject, char *leader, size_t leaderlen, int64_t *term)
{
	json_object *s = e_status(i);
	json_object *sub = op_json_obj(op_json_obj(op_json_obj(s, "ha"), "subjects"), subject);
	int role = -1;

	if (sub != NULL) {
		role = !strcmp(e_str(sub, "role"), "leader");
		if (leader)
			op_strlcpy(leader, e_str(sub, "leader"), leaderlen);
		if (term)
			*term = op_json_int(sub, "term", 0);
	}
	json_object_put(s);
	return role;
}

static int
e_role(int i, char *leader, size_t leaderlen, int64_t *term)
{
	return e_role_of(i, E_SUBJECT, leader, leaderlen, term);
}

static int
e_ready(int i)
{
	json_object *s = e_status(i);
	json_object *ws = op_json_arr(s, "workers");
	int ok = ws != NULL && json_object_array_length(ws) == 5;

	for (size_t k = 0; ok && k < json_object_array_length(ws); k++)
		ok = !strcmp(e_str(json_object_array_get_idx(ws, k), "state"), "ready");
	json_object_put(s);
	return ok;
}

/* Exactly one leader and every instance that answers agrees on it and its
 * term; returns the leader's index or -1. */
static int
e_agreed_leader(int need_all)
{
	int leader = -1, answered = 0;
	char names[E_N][16];
	int64_t terms[E_N];

	for (int i = 0; i < E_N; i++) {
		int r = e_role(i, names[i], sizeof(names[i]), &terms[i]);
		if (r < 0) {
			names[i][0] = '\0';
			continue;
		}
		answered++;
		if (r == 1) {
			if (leader >= 0)
				return -1;
			leader = i;
		}
	}
	if (leader < 0 || (need_all && answered < E_N))
		return -1;
	for (int i = 0; i < E_N; i++) {
		if (names[i][0] == '\0')
			continue;
		if (strcmp(names[i], EV->in[leader].name) || terms[i] != terms[leader])
			return -1;
	}
	return leader;
}

static int
e_nobody_leads(void)
{
	for (int i = 0; i < E_N; i++)
		if (e_role(i, NULL, 0, NULL) != 0)
			return 0;
	return 1;
}

/* Supervisor and its workers (the workers are in sessions of their own). */
static int
e_pids(int i, pid_t *out, int max)
{
	int n = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;

	if (EV->in[i].pid <= 0)
		return 0;
	out[n++] = EV->in[i].pid;
	while (d && (de = readdir(d)) != NULL && n < max) {
		char path[300], buf[512];
		int pid = atoi(de->d_name), ppid = 0;
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *rp = strrchr(buf, ')');
		if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == EV->in[i].pid)
			out[n++] = pid;
	}
	if (d)
		closedir(d);
	return n;
}

static void
e_signal_all(int i, int sig)
{
	pid_t p[16];
	int n = e_pids(i, p, 16);

	for (int k = 0; k < n; k++)
		kill(p[k], sig);
	if (sig == SIGKILL) {
		/* our child, or the fixture's (then its zombie is reaped there) */
		waitpid(EV->in[i].pid, NULL, 0);
		EV->in[i].pid = 0;
	}
}

static pid_t
e_worker_pid(int i, const char *name)
{
	json_object *s = e_status(i);
	pid_t pid = (pid_t)op_json_int(h_worker(s, name), "pid", 0);

	json_object_put(s);
	return pid;
}

static int64_t
e_resets(void)
{
	int64_t sum = 0;

	for (int k = 0; k < H_NNODES; k++) {
		struct h_resp r = h_http(H->node_port[k], "GET", "/health", NULL);
		sum += op_json_int(r.json, "resets_total", 0);
		h_resp_free(&r);
	}
	return sum;
}

/* Counter drift behind the nodes' back: entries in the key's window that no
 * node allowed. The observer sees Redis count more than the nodes. */
static void
e_make_drift(const char *key)
{
	int64_t now = op_wall_ms();

	/* the key index the observer enumerates, as a node's check would */
	char *idx = h_redis("ZADD rl:keys %lld %s", (long long)now, key);
	E_CHECK(idx != NULL, "ZADD rl:keys failed");
	free(idx);
	for (int k = 0; k < E_DRIFT; k++) {
		char *rep = h_redis("ZADD rl:%s %lld ha-drift-%lld-%d", key, (long long)now,
		    (long long)now, k);
		E_CHECK(rep != NULL, "ZADD into rl:%s failed", key);
		free(rep);
	}
}

/* The window is short (H_NODE_WINDOW_MS): added entries age out and the
 * drift would heal by itself. Until a reset ran, it is kept up, so only a
 * reset can fix it. Returns 1 (for use inside a wait condition). */
static int
e_keep_drift(const char *key, int64_t resets_before)
{
	if (e_resets() == resets_before)
		e_make_drift(key);
	return 1;
}

static void
e_prepare_key(const char *key)
{
	int ok;

	E_CHECK(h_set_limit(0, key, 100000), "PUT /api/limits/%s failed", key);
	H_WAIT(ok, E_START_MS, h_nodes_cover_window());
	E_CHECK(ok, "rlnode uptime never covered the window");
}

static int64_t
e_last_seq(int i)
{
	e_use(i);
	return h_last_seq();
}

/* First event of type (for the ticket when > 0) after seq `after` on i. */
static json_object *
e_event(int i, const char *type, int64_t ticket, int64_t after)
{
	e_use(i);
	if (!h_ev_refresh())
		return NULL;
	return h_ev_find(type, ticket, after);
}

static int64_t
e_ticket(int i, const char *entity, int64_t after)
{
	e_use(i);
	if (!h_ev_refresh())
		return 0;
	return h_ev_ticket("counter_drift", entity, after);
}

static json_object *
e_terminal(int i, int64_t tid, int64_t after)
{
	e_use(i);
	if (!h_ev_refresh())
		return NULL;
	return h_ev_terminal(tid, after);
}

static int
e_wait_leader(int64_t ms)
{
	int ok, leader = -1;

	H_WAIT(ok, ms, (leader = e_agreed_leader(1)) >= 0);
	return ok ? leader : -1;
}

/* -------------------------------------------------------- environment */

static void
e_env_start(void)
{
	int ok;

	memset(H, 0, sizeof(*H));
	memset(EV, 0, sizeof(*EV));
	snprintf(H->dir, sizeof(H->dir), "/tmp/check_ha_e2e.XXXXXX");
	if (mkdtemp(H->dir) == NULL) {
		EV->setup_failed = 1;
		return;
	}
	H->redis_port = h_free_port();
	h_start_redis();
	H_WAIT(ok, E_START_MS, h_redis_ok());
	if (!ok) {
		fprintf(stderr, "e2e: redis-server did not answer\n");
		EV->setup_failed = 1;
		return;
	}
	for (int k = 0; k < H_NNODES; k++) {
		H->node_port[k] = h_free_port();
		h_start_node(k);
	}
	for (int k = 0; k < H_NNODES; k++) {
		H_WAIT(ok, E_START_MS, h_node_healthy(k));
		if (!ok) {
			fprintf(stderr, "e2e: rlnode %d not healthy\n", k);
			EV->setup_failed = 1;
			return;
		}
	}
	if (ha_t_etcd_start(&EV->etcd, 0) != 0) {
		EV->setup_failed = 1;
		return;
	}
	for (int i = 0; i < E_N; i++) {
		struct e_inst *in = &EV->in[i];
		snprintf(in->name, sizeof(in->name), "op-%c", 'a' + i);
		snprintf(in->dir, sizeof(in->dir), "%s/%c", H->dir, 'a' + i);
		char dir[200];
		op_strlcpy(dir, in->dir, sizeof(dir));
		snprintf(in->run, sizeof(in->run), "%s/run", dir);
		snprintf(in->state, sizeof(in->state), "%s/state", dir);
		snprintf(in->conf, sizeof(in->conf), "%s/op.conf", dir);
		snprintf(in->log, sizeof(in->log), "%c.log", 'a' + i);
		in->metrics_port = h_free_port();
		mkdir(in->dir, 0755);
		if (e_write_conf(i, NULL) != 0) {
			EV->setup_failed = 1;
			return;
		}
		e_spawn(i);
	}
	for (int i = 0; i < E_N; i++) {
		H_WAIT(ok, E_START_MS, e_ready(i));
		if (!ok) {
			fprintf(stderr, "e2e: instance %s not ready\n", EV->in[i].name);
			e_dump("not ready");
			EV->setup_failed = 1;
			return;
		}
	}
}

/* The process has exited: reaped here, or (not our child: started by the
 * fixture or by another test's process) a zombie or gone. */
static int
e_gone(pid_t pid)
{
	char path[64], buf[256];
	pid_t w = waitpid(pid, NULL, WNOHANG);

	if (w == pid)
		return 1;
	if (w == 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 1;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	char *rp = strrchr(buf, ')');
	return rp == NULL || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X';
}

static void
e_wait_gone(pid_t pid, int64_t ms)
{
	int64_t end = op_mono_ms() + ms;

	while (op_mono_ms() < end && !e_gone(pid))
		op_sleep_ms(50);
}

/* SIGTERM (it steps down and undoes its faults), SIGKILL if it hangs. */
static void
e_stop(int i)
{
	if (EV->in[i].pid <= 0)
		return;
	e_signal_all(i, SIGCONT);
	kill(EV->in[i].pid, SIGTERM);
	e_wait_gone(EV->in[i].pid, E_STOP_MS);
	e_signal_all(i, SIGKILL);
}

/* pdsim after the instances (their shutdown undoes a fault through it);
 * SIGTERM takes its store processes with it. */
static void
e_pdsim_stop(void)
{
	if (EV->pdsim <= 0)
		return;
	kill(EV->pdsim, SIGCONT);
	kill(EV->pdsim, SIGTERM);
	e_wait_gone(EV->pdsim, E_STOP_MS);
	h_kill_wait(&EV->pdsim, SIGKILL);
}

static void
e_env_stop(void)
{
	for (int i = 0; i < E_N; i++)
		e_stop(i);
	e_pdsim_stop();
	ha_t_etcd_stop(&EV->etcd);
	/* redis, nodes, loads, the directory */
	h_env_stop();
}

static void
e_begin(const char *name)
{
	ck_assert_msg(!EV->setup_failed, "the environment did not start (see stderr)");
	/* a failed test may have left a process stopped or dead */
	ha_t_etcd_signal(&EV->etcd, SIGCONT);
	for (int i = 0; i < E_N; i++) {
		if (EV->in[i].pid > 0 && kill(EV->in[i].pid, 0) == 0)
			e_signal_all(i, SIGCONT);
		else
			e_spawn(i);
	}
	h_test_begin(name);
}

/* --------------------------------------------------------------- tests */

START_TEST(t_election)
{
	e_begin("election");
	int leader = e_wait_leader(E_START_MS);
	E_CHECK(leader >= 0, "no single leader that both instances agree on");
	int other = 1 - leader;
	char name[16];
	int64_t term, term2;
	E_CHECK(e_role(leader, name, sizeof(name), &term) == 1, "leader changed");
	E_CHECK(e_role(other, name, sizeof(name), &term2) == 0, "the other is not a standby");
	E_CHECK(!strcmp(name, EV->in[leader].name) && term == term2 && term > 0,
	    "standby sees %s/%lld, leader says %s/%lld", name, (long long)term2,
	    EV->in[leader].name, (long long)term);
	json_object *ev = e_event(leader, "leader_elected", 0, 0);
	E_CHECK(ev != NULL && !strcmp(e_str(ev, "subject"), E_SUBJECT) &&
	    op_json_int(h_ev_data(ev), "term", 0) == term, "leader_elected event missing or wrong");
	E_CHECK(e_event(other, "leader_elected", 0, 0) == NULL, "the standby says it was elected");
	/* status carries the contract's shape */
	json_object *s = e_status(other);
	json_object *ha = op_json_obj(s, "ha");
	E_CHECK(ha != NULL && !strcmp(e_str(ha, "name"), EV->in[other].name),
	    "status.ha.name is not the instance name");
	json_object_put(s);
	/* /metrics: role and term */
	for (int i = 0; i < E_N; i++) {
		char want[128], want_t[128];
		struct h_resp m = h_http(EV->in[i].metrics_port, "GET", "/metrics", NULL);
		snprintf(want, sizeof(want), "operatord_ha_leader{subject=\"%s\"} %d\n", E_SUBJECT,
		    i == leader);
		snprintf(want_t, sizeof(want_t), "operatord_ha_term{subject=\"%s\"} %lld\n",
		    E_SUBJECT, (long long)term);
		int has = m.body && strstr(m.body, want) && strstr(m.body, want_t);
		h_resp_free(&m);
		E_CHECK(has, "%s's /metrics lacks \"%s\" and \"%s\"", EV->in[i].name, want, want_t);
	}
	h_test_end();
}
END_TEST

START_TEST(t_failover)
{
	const char *K = "ha-fail-1";

	e_begin("failover");
	int L = e_wait_leader(E_START_MS), S;
	E_CHECK(L >= 0, "no agreed leader");
	S = 1 - L;
	e_prepare_key(K);
	int64_t r0 = e_resets();
	int64_t sinceL = e_last_seq(L), sinceS = e_last_seq(S);
	int ok;
	int64_t tid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (tid = e_ticket(L, K, sinceL)) > 0 &&
	    e_event(L, "action_dispatched", tid, sinceL) != NULL);
	E_CHECK(ok, "the leader dispatched no action for %s", K);
	json_object *disp = e_event(L, "action_dispatched", tid, sinceL);
	E_CHECK(op_json_int(h_ev_data(disp), "term", 0) > 0, "action_dispatched has no term");
	/* the leader's machine dies with its work in flight */
	e_signal_all(L, SIGKILL);
	int64_t killed = op_mono_ms();
	H_WAIT(ok, E_TAKEOVER_MS, e_role(S, NULL, 0, NULL) == 1);
	E_CHECK(ok, "the standby did not lead within lease_ttl + 2 s (%lld ms)",
	    (long long)(op_mono_ms() - killed));
	/* it resumes the ticket (never re-runs a reset that may have run) */
	int64_t stid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (stid = e_ticket(S, K, sinceS)) > 0 &&
	    e_terminal(S, stid, sinceS) != NULL);
	E_CHECK(ok, "the new leader did not bring %s to a terminal state", K);
	json_object *term = e_terminal(S, stid, sinceS);
	E_CHECK(!strcmp(e_str(term, "type"), "ticket_resolved"), "ticket ended %s: %s",
	    e_str(term, "type"), e_str(h_ev_data(term), "reason"));
	E_CHECK(e_event(S, "verification", stid, sinceS) != NULL, "resolved without verification");
	/* every action row records the term it ran under */
	e_use(S);
	json_object *tk = h_ticket(stid);
	json_object *acts = op_json_arr(tk, "actions");
	E_CHECK(acts != NULL && json_object_array_length(acts) > 0, "ticket %lld has no actions",
	    (long long)stid);
	for (size_t k = 0; k < json_object_array_length(acts); k++) {
		json_object *a = json_object_array_get_idx(acts, k);
		E_CHECK(op_json_int(a, "term", 0) > 0, "action %lld (%s) has no term",
		    (long long)op_json_int(a, "id", 0), e_str(a, "status"));
	}
	json_object_put(tk);
	E_CHECK(e_resets() - r0 == 1, "the nodes performed %lld resets, want exactly 1",
	    (long long)(e_resets() - r0));
	/* the old leader comes back as a standby */
	e_spawn(L);
	H_WAIT(ok, E_START_MS, e_ready(L) && e_agreed_leader(1) == S);
	E_CHECK(ok, "the restarted instance did not rejoin as a standby of %s", EV->in[S].name);
	h_test_end();
}
END_TEST

START_TEST(t_stall)
{
	const char *K = "ha-stall-1";

	e_begin("stall");
	int L = e_wait_leader(E_START_MS), S;
	E_CHECK(L >= 0, "no agreed leader");
	S = 1 - L;
	e_prepare_key(K);
	int64_t r0 = e_resets();
	int64_t sinceL = e_last_seq(L), sinceS = e_last_seq(S);
	/* the leader's executor stalls first, so the action waits in its queue */
	pid_t ex = e_worker_pid(L, "executor");
	E_CHECK(ex > 0, "no executor pid in status");
	kill(ex, SIGSTOP);
	int ok;
	int64_t tid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (tid = e_ticket(L, K, sinceL)) > 0 &&
	    e_event(L, "action_dispatched", tid, sinceL) != NULL);
	E_CHECK(ok, "the leader dispatched no action for %s", K);
	/* then the whole machine stalls, longer than the lease */
	e_signal_all(L, SIGSTOP);
	int64_t stopped = op_mono_ms();
	H_WAIT(ok, E_TAKEOVER_MS, e_role(S, NULL, 0, NULL) == 1);
	E_CHECK(ok, "the standby did not lead within lease_ttl + 2 s of the stall (%lld ms)",
	    (long long)(op_mono_ms() - stopped));
	int64_t stid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (stid = e_ticket(S, K, sinceS)) > 0 &&
	    e_terminal(S, stid, sinceS) != NULL);
	E_CHECK(ok, "the new leader did not bring %s to a terminal state", K);
	E_CHECK(!strcmp(e_str(e_terminal(S, stid, sinceS), "type"), "ticket_resolved"),
	    "the new leader did not resolve %s", K);
	E_CHECK(e_resets() - r0 == 1, "%lld resets while the old leader stalled, want 1",
	    (long long)(e_resets() - r0));
	/* The fault comes back, and the new leader only asks a human this time:
	 * so when the old leader wakes, its executor finds the violation still
	 * there and gets as far as the fence. */
	json_object *res = NULL;
	e_use(S);
	E_CHECK(h_opsend(&res, NULL, "level", "reset_counter", "approve", NULL) == 0,
	    "opsend level reset_counter approve failed");
	json_object_put(res);
	int64_t r1 = e_resets();
	int64_t sinceS2 = e_last_seq(S);
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r1) && e_event(S, "action_awaiting_approval", 0,
	    sinceS2) != NULL);
	E_CHECK(ok, "the new leader did not ask for approval on the returning fault");
	/* the old leader wakes with the action queued: fenced, never run */
	e_signal_all(L, SIGCONT);
	json_object *sk = NULL;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r1) &&
	    (sk = e_event(L, "action_skipped", tid, sinceL)) != NULL);
	E_CHECK(ok, "the old leader's queued action was neither run nor skipped");
	sk = e_event(L, "action_skipped", tid, sinceL);
	E_CHECK(!strcmp(e_str(h_ev_data(sk), "reason"), "not_leader"),
	    "action_skipped reason \"%s\" (%s), want not_leader", e_str(h_ev_data(sk), "reason"),
	    e_str(h_ev_data(sk), "detail"));
	E_CHECK(e_event(L, "action_executed", tid, sinceL) == NULL, "the fenced leader acted");
	E_CHECK(e_event(L, "leadership_lost", 0, sinceL) != NULL, "no leadership_lost event");
	H_WAIT(ok, E_START_MS, e_agreed_leader(1) == S);
	E_CHECK(ok, "the old leader did not rejoin as a standby");
	E_CHECK(e_resets() - r0 == 1, "%lld resets after the old leader woke, want 1",
	    (long long)(e_resets() - r0));
	/* the level back first, so no later case depends on this one's end */
	e_use(S);
	E_CHECK(h_opsend(&res, NULL, "level", "reset_counter", "execute", NULL) == 0,
	    "opsend level reset_counter execute failed");
	json_object_put(res);
	/* approve on the standby (the old leader): it reaches the leader, which acts */
	json_object *aw = e_event(S, "action_awaiting_approval", 0, sinceS2);
	char ids[24];
	snprintf(ids, sizeof(ids), "%lld", (long long)op_json_int(h_ev_data(aw), "action_id", 0));
	int64_t t2 = e_ticket(S, K, sinceS2);
	char *aerr = NULL;
	int arc = -1;
	/* until the standby's poll has seen the leader's record of it */
	H_WAIT(ok, E_START_MS, (e_use(L), free(aerr), aerr = NULL,
	    arc = h_opsend(&res, &aerr, "approve", ids, NULL), json_object_put(res), arc == 0));
	E_CHECK(ok, "opsend approve %s on the standby failed: %s", ids, aerr ? aerr : "");
	free(aerr);
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r1) && t2 > 0 && e_terminal(S, t2, sinceS2) != NULL);
	E_CHECK(ok, "the approved action's ticket never ended");
	E_CHECK(!strcmp(e_str(e_terminal(S, t2, sinceS2), "type"), "ticket_resolved"),
	    "the approval from the standby did not lead to a fix");
	json_object *ap = e_event(S, "action_approved", t2, sinceS2);
	E_CHECK(ap != NULL && strstr(e_str(h_ev_data(ap), "by"), EV->in[L].name) != NULL,
	    "the leader's action_approved does not say it came through %s", EV->in[L].name);
	E_CHECK(e_resets() - r0 == 2, "%lld resets in all, want 2 (one per fault)",
	    (long long)(e_resets() - r0));
	h_test_end();
}
END_TEST

START_TEST(t_etcd_down)
{
	const char *K = "ha-etcd-1";

	e_begin("etcd_down");
	int L = e_wait_leader(E_START_MS);
	E_CHECK(L >= 0, "no agreed leader");
	e_prepare_key(K);
	int64_t r0 = e_resets();
	int64_t since[E_N];
	for (int i = 0; i < E_N; i++)
		since[i] = e_last_seq(i);
	ha_t_etcd_signal(&EV->etcd, SIGSTOP);
	int ok;
	H_WAIT(ok, E_TAKEOVER_MS, e_nobody_leads());
	E_CHECK(ok, "an instance still leads with etcd stopped");
	json_object *lost = e_event(L, "leadership_lost", 0, since[L]);
	E_CHECK(lost != NULL && strstr(e_str(h_ev_data(lost), "reason"), "not renewed") != NULL,
	    "the leader's leadership_lost does not say why (%s)",
	    lost ? e_str(h_ev_data(lost), "reason") : "no event");
	/* a violation now: both observe it, nobody opens a ticket or acts */
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && e_event(0, "violation", 0, since[0]) != NULL &&
	    e_event(1, "violation", 0, since[1]) != NULL);
	E_CHECK(ok, "the standbys stopped observing");
	for (int i = 0; i < E_N; i++) {
		E_CHECK(e_ticket(i, K, since[i]) == 0, "%s opened a ticket without etcd",
		    EV->in[i].name);
		E_CHECK(e_event(i, "action_dispatched", 0, since[i]) == NULL, "%s acted without etcd",
		    EV->in[i].name);
	}
	E_CHECK(e_resets() == r0, "a reset ran with etcd stopped");
	/* etcd back: a leader again, and the work is done */
	ha_t_etcd_signal(&EV->etcd, SIGCONT);
	int nl = e_wait_leader(E_START_MS);
	E_CHECK(nl >= 0, "no leader after etcd came back");
	int64_t tid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (tid = e_ticket(nl, K, since[nl])) > 0 &&
	    e_terminal(nl, tid, since[nl]) != NULL);
	E_CHECK(ok, "the drift seen while etcd was down was never fixed");
	E_CHECK(!strcmp(e_str(e_terminal(nl, tid, since[nl]), "type"), "ticket_resolved"),
	    "not resolved");
	E_CHECK(e_resets() - r0 == 1, "%lld resets, want 1", (long long)(e_resets() - r0));
	h_test_end();
}
END_TEST

START_TEST(t_kill_switch)
{
	const char *K = "ha-ks-1";
	json_object *res = NULL;

	e_begin("kill_switch");
	int L = e_wait_leader(E_START_MS), S;
	E_CHECK(L >= 0, "no agreed leader");
	S = 1 - L;
	e_prepare_key(K);
	int64_t r0 = e_resets();
	int64_t sinceL = e_last_seq(L);
	e_use(S);
	E_CHECK(h_opsend(&res, NULL, "kill-switch", "on", NULL) == 0, "kill-switch on failed");
	json_object_put(res);
	/* no wait for it to spread: the leader's next action must stop anyway */
	int ok;
	int64_t tid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (tid = e_ticket(L, K, sinceL)) > 0 &&
	    e_event(L, "action_skipped", tid, sinceL) != NULL);
	E_CHECK(ok, "the leader's action was not stopped");
	json_object *sk = e_event(L, "action_skipped", tid, sinceL);
	E_CHECK(strstr(e_str(h_ev_data(sk), "reason"), "kill switch") != NULL,
	    "skipped for \"%s\", want the kill switch", e_str(h_ev_data(sk), "reason"));
	E_CHECK(e_event(L, "action_executed", tid, sinceL) == NULL, "the leader acted");
	json_object *st = e_status(L);
	E_CHECK(op_json_bool(st, "kill_switch", 0), "the leader's status has no kill switch");
	json_object_put(st);
	E_CHECK(e_resets() == r0, "a reset ran under the kill switch");
	/* off on the standby: the leader acts */
	e_use(S);
	E_CHECK(h_opsend(&res, NULL, "kill-switch", "off", NULL) == 0, "kill-switch off failed");
	json_object_put(res);
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && e_terminal(L, tid, sinceL) != NULL);
	E_CHECK(ok, "the ticket did not end after the kill switch went off");
	E_CHECK(!strcmp(e_str(e_terminal(L, tid, sinceL), "type"), "ticket_resolved"),
	    "not resolved after the kill switch went off");
	E_CHECK(e_resets() - r0 == 1, "%lld resets, want 1", (long long)(e_resets() - r0));
	h_test_end();
}
END_TEST

/* ------------------------------------------------------ the split case */

/* First event of type after seq `after` on i, of this subject (and
 * invariant, entity, ticket when given). */
static json_object *
e_event_of(int i, const char *type, const char *subject, const char *inv, const char *entity,
    int64_t ticket, int64_t after)
{
	e_use(i);
	if (!h_ev_refresh())
		return NULL;
	for (size_t k = 0; k < json_object_array_length(h_evs); k++) {
		json_object *e = json_object_array_get_idx(h_evs, k);
		if (h_ev_seq(e) <= after || strcmp(e_str(e, "type"), type) != 0)
			continue;
		if ((subject && strcmp(e_str(e, "subject"), subject) != 0) ||
		    (inv && strcmp(e_str(e, "invariant"), inv) != 0) ||
		    (entity && strcmp(e_str(e, "entity"), entity) != 0) ||
		    (ticket > 0 && op_json_int(e, "ticket", 0) != ticket))
			continue;
		return e;
	}
	return NULL;
}

/* pdsim on a port of its choosing; its leader balancing slowed right down,
 * so leaders are moved by an operator's action, not by PD. */
static int
e_pdsim_start(void)
{
	char pf[300], ns[16], nr[16];
	const char *bin = getenv("PDSIM_BIN");

	if (bin == NULL || access(bin, X_OK) != 0) {
		fprintf(stderr, "e2e: set PDSIM_BIN to the pdsim binary\n");
		return -1;
	}
	snprintf(pf, sizeof(pf), "%s/pd.port", H->dir);
	snprintf(ns, sizeof(ns), "%d", E_PD_STORES);
	snprintf(nr, sizeof(nr), "%d", E_PD_REGIONS);
	char *argv[] = {(char *)bin, "--port", "0", "--port-file", pf, "--stores", ns, "--regions",
	    nr, "--election-ms", "1000", "--disconnect-ms", "3000", "--down-ms", "600000",
	    "--balance-interval-ms", "600000", NULL};
	EV->pd_port = 0;
	EV->pdsim = h_spawn(argv, "pdsim.log");
	int64_t end = op_mono_ms() + E_START_MS;
	while (EV->pd_port <= 0 && op_mono_ms() < end) {
		FILE *f = fopen(pf, "r");
		if (f != NULL) {
			if (fscanf(f, "%d", &EV->pd_port) != 1)
				EV->pd_port = 0;
			fclose(f);
		}
		if (EV->pd_port <= 0)
			op_sleep_ms(50);
	}
	return EV->pd_port > 0 ? 0 : -1;
}

/* Every store live and every region led, as instance i observes it. */
static int
e_tikv_healthy(int i)
{
	json_object *o = NULL;
	size_t live = 0;

	e_use(i);
	if (h_opsend(&o, NULL, "observe", E_TIKV, NULL) != 0) {
		json_object_put(o);
		return 0;
	}
	json_object *a = op_json_arr(o, "stores");
	for (size_t k = 0; a && k < json_object_array_length(a); k++)
		live += op_json_bool(json_object_array_get_idx(a, k), "live", 0);
	int ok = op_json_bool(op_json_obj(o, "pd"), "ok", 0) && live == E_PD_STORES &&
	    op_json_int(op_json_obj(o, "regions"), "leaderless", 1) == 0 &&
	    op_json_int(op_json_obj(o, "regions"), "leader_on_dead_store", 1) == 0;
	json_object_put(o);
	return ok;
}

/* Both instances say: `subject` is led by instance `want`, the other is its
 * standby, under one term (returned in *term). */
static int
e_split_agree(const char *subject, int want, int64_t *term)
{
	char names[E_N][16];
	int64_t terms[E_N];

	for (int i = 0; i < E_N; i++) {
		if (e_role_of(i, subject, names[i], sizeof(names[i]), &terms[i]) != (i == want))
			return 0;
		if (strcmp(names[i], EV->in[want].name) != 0 || terms[i] <= 0 ||
		    terms[i] != terms[0])
			return 0;
	}
	*term = terms[0];
	return 1;
}

/* The action events of one ticket ran under this term, led by this name. */
static void
e_check_term(int i, const char *type, int64_t tid, int64_t after, int64_t term)
{
	json_object *ev = e_event(i, type, tid, after);
	E_CHECK(ev != NULL, "%s has no %s for ticket %lld", EV->in[i].name, type, (long long)tid);
	json_object *d = h_ev_data(ev);
	E_CHECK(op_json_int(d, "term", 0) == term, "%s's %s ran under term %lld, want %lld",
	    EV->in[i].name, type, (long long)op_json_int(d, "term", 0), (long long)term);
	E_CHECK(!strcmp(e_str(d, "leader"), EV->in[i].name), "%s's %s names leader \"%s\"",
	    EV->in[i].name, type, e_str(d, "leader"));
}

START_TEST(t_split)
{
	const char *K = "ha-split-1";
	const int A = 0, B = 1; /* a may lead the rate limiter only, b TiKV only */
	int ok;

	e_begin("split");
	E_CHECK(e_pdsim_start() == 0, "pdsim did not start (see %s/pdsim.log)", H->dir);
	/* both restart on the two subjects, each allowed to lead one */
	for (int i = 0; i < E_N; i++)
		e_stop(i);
	E_CHECK(e_write_conf(A, E_SUBJECT) == 0 && e_write_conf(B, E_TIKV) == 0,
	    "could not write the configurations");
	for (int i = 0; i < E_N; i++)
		e_spawn(i);
	for (int i = 0; i < E_N; i++) {
		H_WAIT(ok, E_START_MS, e_ready(i));
		E_CHECK(ok, "%s not ready on two subjects", EV->in[i].name);
	}
	int64_t termR = 0, termT = 0;
	H_WAIT(ok, E_START_MS, e_split_agree(E_SUBJECT, A, &termR) &&
	    e_split_agree(E_TIKV, B, &termT));
	E_CHECK(ok, "both instances do not agree that %s leads %s and %s leads %s",
	    EV->in[A].name, E_SUBJECT, EV->in[B].name, E_TIKV);
	E_CHECK(e_event_of(A, "leader_elected", E_SUBJECT, NULL, NULL, 0, 0) != NULL &&
	    e_event_of(B, "leader_elected", E_TIKV, NULL, NULL, 0, 0) != NULL,
	    "a leader_elected event is missing");

	/* counter drift: the rate limiter's leader alone acts, once */
	e_prepare_key(K);
	int64_t r0 = e_resets();
	int64_t sinceA = e_last_seq(A), sinceB = e_last_seq(B);
	int64_t tid = 0;
	H_WAIT(ok, E_LOOP_MS, e_keep_drift(K, r0) && (tid = e_ticket(A, K, sinceA)) > 0 &&
	    e_terminal(A, tid, sinceA) != NULL);
	E_CHECK(ok, "%s did not bring the drift on %s to a terminal state", EV->in[A].name, K);
	E_CHECK(!strcmp(e_str(e_terminal(A, tid, sinceA), "type"), "ticket_resolved"),
	    "%s's drift ticket was not resolved", EV->in[A].name);
	e_check_term(A, "action_dispatched", tid, sinceA, termR);
	e_check_term(A, "action_executed", tid, sinceA, termR);
	E_CHECK(e_resets() - r0 == 1, "the nodes performed %lld resets, want exactly 1",
	    (long long)(e_resets() - r0));
	/* b left it alone. (Whether b's observer saw the drift before a fixed
	 * it is a race, so it is not asserted; the store below stays down.) */
	E_CHECK(e_ticket(B, K, sinceB) == 0, "%s opened a ticket on a subject it does not lead",
	    EV->in[B].name);
	E_CHECK(e_event_of(B, "ticket_opened", E_SUBJECT, NULL, NULL, 0, sinceB) == NULL &&
	    e_event_of(B, "action_dispatched", E_SUBJECT, NULL, NULL, 0, sinceB) == NULL,
	    "%s acted on %s, which it does not lead", EV->in[B].name, E_SUBJECT);

	/* a store killed: TiKV's leader alone acts */
	H_WAIT(ok, E_START_MS, e_tikv_healthy(B));
	E_CHECK(ok, "the TiKV cluster never looked healthy to %s", EV->in[B].name);
	sinceA = e_last_seq(A);
	sinceB = e_last_seq(B);
	json_object *inj = NULL;
	char *ierr = NULL;
	e_use(B);
	int irc = h_opsend(&inj, &ierr, "chaos", "inject", "node_kill", "subject=" E_TIKV,
	    "ttl=60s", NULL);
	E_CHECK(irc == 0, "chaos inject node_kill on %s failed: %s", EV->in[B].name,
	    ierr ? ierr : "");
	free(ierr);
	char victim[32];
	op_strlcpy(victim, e_str(inj, "target"), sizeof(victim));
	json_object_put(inj);
	E_CHECK(victim[0] != '\0', "node_kill named no target");
	int64_t tt = 0;
	H_WAIT(ok, E_LOOP_MS, (e_use(B), h_ev_refresh()) &&
	    (tt = h_ev_ticket("store_down", victim, sinceB)) > 0 &&
	    e_terminal(B, tt, sinceB) != NULL);
	E_CHECK(ok, "%s did not bring store %s's store_down to a terminal state",
	    EV->in[B].name, victim);
	json_object *end = e_terminal(B, tt, sinceB);
	E_CHECK(!strcmp(e_str(end, "type"), "ticket_resolved"), "store_down ended %s: %s",
	    e_str(end, "type"), e_str(h_ev_data(end), "reason"));
	json_object *rb = e_event(B, "action_dispatched", tt, sinceB);
	E_CHECK(rb != NULL && !strcmp(e_str(h_ev_data(rb), "action"), "rebalance_leaders"),
	    "%s dispatched %s for the killed store, want rebalance_leaders", EV->in[B].name,
	    rb ? e_str(h_ev_data(rb), "action") : "nothing");
	e_check_term(B, "action_dispatched", tt, sinceB, termT);
	e_check_term(B, "action_executed", tt, sinceB, termT);
	/* a saw the store go down (it stays down), and left it alone */
	H_WAIT(ok, E_START_MS, e_event_of(A, "violation", E_TIKV, "store_down", victim, 0,
	    sinceA) != NULL);
	E_CHECK(ok, "%s never observed store %s down", EV->in[A].name, victim);
	E_CHECK(e_event_of(A, "ticket_opened", E_TIKV, NULL, NULL, 0, sinceA) == NULL,
	    "%s opened a ticket on %s, which it does not lead", EV->in[A].name, E_TIKV);
	E_CHECK(e_event_of(A, "action_dispatched", E_TIKV, NULL, NULL, 0, sinceA) == NULL,
	    "%s dispatched an action on %s, which it does not lead", EV->in[A].name, E_TIKV);
	E_CHECK(e_resets() - r0 == 1, "the rate limiter was reset again (%lld in all)",
	    (long long)(e_resets() - r0));
	/* the split held throughout */
	int64_t tr2 = 0, tt2 = 0;
	E_CHECK(e_split_agree(E_SUBJECT, A, &tr2) && tr2 == termR &&
	    e_split_agree(E_TIKV, B, &tt2) && tt2 == termT, "leadership moved during the case");
	h_test_end();
}
END_TEST

int
main(void)
{
	h_init();
	EV = mmap(NULL, sizeof(*EV), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (EV == MAP_FAILED)
		return EXIT_FAILURE;
	memset(EV, 0, sizeof(*EV));
	Suite *s = suite_create("ha_e2e");
	TCase *tc = tcase_create("two_instances");
	tcase_add_unchecked_fixture(tc, e_env_start, e_env_stop);
	tcase_add_test(tc, t_election);
	tcase_add_test(tc, t_failover);
	tcase_add_test(tc, t_stall);
	tcase_add_test(tc, t_etcd_down);
	tcase_add_test(tc, t_kill_switch);
	tcase_add_test(tc, t_split); /* last: it reconfigures both instances */
	tcase_set_timeout(tc, 240);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
