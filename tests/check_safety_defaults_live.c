/* check_safety_defaults_live: cancellation points and undo in the subjects,
 * against real processes and without the daemon: pdsim (real store
 * processes, slow raft elections) and a real redis-server with an rlnode.
 *
 * - rebalance_leaders, cancelled while it waits for elections, posts no
 *   operator (pdsim's operator lists stay empty) and says what it did; the
 *   same action uncancelled then posts operators, so the count can fail.
 * - the undo that rebalance_leaders and transfer_leader record puts every
 *   moved leader back on its store.
 * - update_limit records the key's previous limit (or that it had none), and
 *   its revert restores exactly that.
 * Each condition is waited on with a generous bound; nothing is timed. */
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "subjects/tikv/pdclient.h"

#define L_WAIT_MS 60000        /* bound of any condition wait */
#define L_POLL_MS 100          /* condition polling step */
#define L_ELECTION_MS "4000"   /* pdsim raft election: slow enough to cancel during it */
#define L_CANCEL_AFTER 4       /* cancellation checks before the "kill switch" trips */

static char dir[128];
static pid_t procs[8];
static size_t nprocs;

static pid_t
spawn(char *const argv[], const char *logname)
{
	char log[256];
	pid_t pid;

	snprintf(log, sizeof(log), "%s/%s", dir, logname);
	if ((pid = fork()) == 0) {
		FILE *f = freopen(log, "a", stdout);
		(void)f;
		dup2(STDOUT_FILENO, STDERR_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execvp(argv[0], argv);
		_exit(127);
	}
	ck_assert_int_gt(pid, 0);
	procs[nprocs++] = pid;
	return pid;
}

static int
free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void
stop_all(void)
{
	for (size_t i = 0; i < nprocs; i++) {
		kill(procs[i], SIGTERM);
		int64_t end = op_mono_ms() + 5000;
		while (op_mono_ms() < end && waitpid(procs[i], NULL, WNOHANG) == 0)
			op_sleep_ms(20);
		kill(procs[i], SIGKILL);
		waitpid(procs[i], NULL, 0);
	}
	nprocs = 0;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static const char *
env_bin(const char *var)
{
	const char *b = getenv(var);

	ck_assert_msg(b != NULL && access(b, X_OK) == 0, "set %s", var);
	return b;
}

/* GET/POST on 127.0.0.1:port; the JSON answer (NULL when not JSON). */
static json_object *
http_json(int port, const char *method, const char *path, const char *body, long *status)
{
	struct op_http_req r = {0};
	char url[256], err[64];
	json_object *j = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	r.method = method;
	r.url = url;
	r.body = body;
	r.timeout_ms = 3000;
	*status = 0;
	if (op_http_do(&r) == 0) {
		*status = r.status;
		if (r.resp)
			j = op_json_parse(r.resp, r.resp_len, err, sizeof(err));
	}
	op_http_req_reset(&r);
	return j;
}

#define WAIT(ok, cond)                                                                 \
	do {                                                                           \
		int64_t end_ = op_mono_ms() + L_WAIT_MS;                                 \
		while (!((ok) = (cond)) && op_mono_ms() < end_)                          \
			op_sleep_ms(L_POLL_MS);                                        \
	} while (0)

static struct op_subject *
make_subject(struct op_config **cfg, struct op_subjects *subs, const char *text,
    const char *name)
{
	char err[256];

	*cfg = op_config_parse(text, err, sizeof(err));
	ck_assert_msg(*cfg != NULL, "%s", err);
	ck_assert_msg(op_subjects_create(subs, *cfg, err, sizeof(err)) == 0, "%s", err);
	struct op_subject *s = op_subjects_find(subs, name);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* ---------------------------------------------------------------- TiKV */

static int pd_port;

static int
read_port(const char *path)
{
	FILE *f = fopen(path, "r");
	int port = 0;

	if (f != NULL) {
		if (fscanf(f, "%d", &port) != 1)
			port = 0;
		fclose(f);
	}
	return port;
}

static void
start_pdsim(void)
{
	char pf[192];
	int ok;

	snprintf(pf, sizeof(pf), "%s/pd.port", dir);
	/* PD's own balance-leader is slowed right down: every operator is ours */
	char *argv[] = {(char *)env_bin("PDSIM_BIN"), "--port", "0", "--port-file", pf, "--stores",
	    "3", "--regions", "30", "--election-ms", L_ELECTION_MS, "--disconnect-ms", "3000",
	    "--down-ms", "600000", "--balance-interval-ms", "600000", NULL};
	spawn(argv, "pdsim.log");
	WAIT(ok, (pd_port = read_port(pf)) > 0);
	ck_assert_msg(ok, "pdsim did not start (see %s/pdsim.log)", dir);
}

/* Operators pdsim runs now plus those it finished: every one ever posted. */
static size_t
pd_operators_seen(void)
{
	long st;
	json_object *run = http_json(pd_port, "GET", "/pd/api/v1/operators", NULL, &st);
	size_t n = run && json_object_is_type(run, json_type_array)
	    ? json_object_array_length(run) : 0;
	json_object *rec = http_json(pd_port, "GET", "/pd/api/v1/operators/records", NULL, &st);

	n += rec && json_object_is_type(rec, json_type_array) ? json_object_array_length(rec) : 0;
	json_object_put(run);
	json_object_put(rec);
	return n;
}

static int
all_stores_serving(struct op_subject *s)
{
	json_object *obs = NULL;
	char err[256];
	int n = 0;

	if (s->ops->observe(s, &obs, err, sizeof(err)) != 0)
		return 0;
	json_object *a = op_json_arr(obs, "stores");
	/* "probed": the store's own process registered its status address and
	 * answered. Before its first heartbeat PD's model already says Up, and a
	 * store killed then would still look live to a fresh read. */
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		n += op_json_bool(st, "serving", 0) && op_json_bool(st, "probed", 0);
	}
	json_object_put(obs);
	return n == 3;
}

static uint64_t
leader_of(const struct pd_client *c, uint64_t region)
{
	struct pd_region r;
	struct pd_err pe;
	uint64_t s = 0;

	if (pd_get_region(c, region, &r, &pe) == 0) {
		s = r.has_leader ? r.leader.store_id : 0;
		pd_region_free(&r);
	}
	return s;
}

/* No region of an undo list has its leader on its to_store_id any more:
 * the forward moves landed. */
static int
leaders_moved(const struct pd_client *c, json_object *moves)
{
	for (size_t i = 0; i < json_object_array_length(moves); i++) {
		json_object *m = json_object_array_get_idx(moves, i);
		uint64_t l = leader_of(c, op_json_u64(m, "region_id", 0));
		if (l == 0 || l == op_json_u64(m, "to_store_id", 0))
			return 0;
	}
	return 1;
}

/* Every move of an undo list has its leader on its to_store_id. */
static int
leaders_at(const struct pd_client *c, json_object *moves)
{
	for (size_t i = 0; i < json_object_array_length(moves); i++) {
		json_object *m = json_object_array_get_idx(moves, i);
		if (leader_of(c, op_json_u64(m, "region_id", 0)) != op_json_u64(m, "to_store_id", 0))
			return 0;
	}
	return 1;
}

/* Regions whose leader is on store; -1 when PD does not answer. */
static int
leaders_on(const struct pd_client *c, uint64_t store)
{
	struct pd_regions rs;
	struct pd_err pe;
	int n = 0;

	if (pd_get_regions(c, &rs, &pe) != 0)
		return -1;
	for (size_t i = 0; i < rs.count; i++)
		n += rs.v[i].has_leader && rs.v[i].leader.store_id == store;
	pd_regions_free(&rs);
	return n;
}

/* No region has a pending or down peer (a returned store caught up). */
static int
peers_caught_up(const struct pd_client *c)
{
	struct pd_regions rs;
	struct pd_err pe;
	int ok = 1;

	if (pd_get_regions(c, &rs, &pe) != 0)
		return 0;
	for (size_t i = 0; i < rs.count; i++)
		ok &= rs.v[i].n_pending == 0 && rs.v[i].n_down == 0;
	pd_regions_free(&rs);
	return ok;
}

/* Whether PD's evict-leader-scheduler holds store (a fresh observation). */
static int
evicted(struct op_subject *s, uint64_t store)
{
	json_object *obs = NULL;
	char err[256];
	int ev = -1;

	if (s->ops->observe(s, &obs, err, sizeof(err)) != 0)
		return -1;
	json_object *a = op_json_arr(obs, "stores");
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (op_json_u64(st, "id", 0) == store)
			ev = op_json_bool(st, "evicted", 0);
	}
	json_object_put(obs);
	return ev;
}

static int checks;

static int
kill_switch_after_waits(void *arg)
{
	(void)arg;
	return ++checks >= L_CANCEL_AFTER;
}

static int
store_is_up(struct pd_client *c, uint64_t id)
{
	struct pd_store st;
	struct pd_err pe;
	int up = 0;

	if (pd_get_store(c, id, &st, &pe) == 0) {
		up = strcmp(st.state_name, "Up") == 0;
		pd_store_free(&st);
	}
	return up;
}

START_TEST(t_tikv_cancel_and_undo)
{
	struct op_config *cfg;
	struct op_subjects subs;
	struct pd_client pc;
	struct pd_err pe;
	char text[512], url[128], err[512];
	json_object *res = NULL;
	long st;
	int ok;

	start_pdsim();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", pd_port);
	snprintf(text, sizeof(text), "[subject.tikv]\npd = %s\nelection_wait = 30s\n", url);
	struct op_subject *S = make_subject(&cfg, &subs, text, "tikv");
	ck_assert_int_eq(pd_client_init(&pc, url, 3000, 1000, &pe), 0);
	WAIT(ok, all_stores_serving(S));
	ck_assert_msg(ok, "pdsim's three stores never all served");

	/* A store dies: its leaders wait for a (slow) election. The kill switch
	 * trips while rebalance_leaders waits: it stops before any operator. */
	json_object_put(http_json(pd_port, "POST", "/pdsim/stores/1/kill", "{}", &st));
	ck_assert_int_eq(st, 200);
	struct op_exec_ctx ctx = {kill_switch_after_waits, NULL, -1, NULL};
	op_exec_ctx_set(&ctx);
	json_object *none = json_object_new_object();
	int rc = S->ops->execute(S, "rebalance_leaders", none, &res, err, sizeof(err));
	json_object_put(none);
	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_nonnull(res);
	ck_assert_msg(op_json_bool(res, "cancelled", 0), "not cancelled: %s",
	    json_object_to_json_string(res));
	ck_assert_int_eq(op_json_int(res, "posted", -1), 0);
	ck_assert_ptr_nonnull(strstr(err, "cancelled"));
	ck_assert_int_ge(checks, L_CANCEL_AFTER);
	ck_assert_int_eq(pd_operators_seen(), 0);
	json_object_put(res);

	/* The store comes back with no leader; the same action, not cancelled,
	 * does post operators: moves leaders onto it. */
	op_exec_ctx_set(NULL);
	WAIT(ok, leaders_on(&pc, 1) == 0); /* raft elected elsewhere */
	ck_assert_msg(ok, "the dead store's leaders were never re-elected");
	json_object_put(http_json(pd_port, "POST", "/pdsim/stores/1/restart", "{}", &st));
	ck_assert_int_eq(st, 200);
	WAIT(ok, store_is_up(&pc, 1) && all_stores_serving(S) && peers_caught_up(&pc));
	ck_assert_msg(ok, "store 1 never came back with caught-up peers");
	ck_assert_int_eq(pd_operators_seen(), 0);
	res = NULL;
	json_object *rp = json_object_new_object();
	json_object_object_add(rp, "to_store_id", json_object_new_uint64(1));
	rc = S->ops->execute(S, "rebalance_leaders", rp, &res, err, sizeof(err));
	json_object_put(rp);
	ck_assert_msg(rc == 0, "rebalance failed: %s", err);
	ck_assert_msg(op_json_int(res, "accepted", 0) > 0, "nothing accepted: %s",
	    json_object_to_json_string(res));
	ck_assert_int_gt(pd_operators_seen(), 0);
	ck_assert_int_eq(op_json_int(res, "nodes_total", 0), 3);
	ck_assert_int_ge(json_object_array_length(op_json_arr(res, "touched")), 2);
	json_object *undo = op_json_obj(res, "undo");
	json_object *back = op_json_arr(undo, "moves");
	ck_assert_int_eq((int)json_object_array_length(back), (int)op_json_int(res, "accepted", 0));

	/* Its undo puts each moved leader back where it was. */
	WAIT(ok, leaders_moved(&pc, back)); /* the moves are done first */
	ck_assert_msg(ok, "the rebalance's operators never finished");
	json_object *ures = NULL;
	const struct op_action_def *rb = op_subject_action(S, "rebalance_leaders");
	ck_assert_int_eq(rb->revert(S, undo, &ures, err, sizeof(err)), 0);
	WAIT(ok, leaders_at(&pc, back));
	ck_assert_msg(ok, "undo of rebalance_leaders did not put the leaders back: %s",
	    json_object_to_json_string(back));
	json_object_put(ures);
	json_object_put(res);

	/* transfer_leader records the leader it moves away from; undo returns it. */
	struct pd_regions rs;
	ck_assert_int_eq(pd_get_regions(&pc, &rs, &pe), 0);
	uint64_t region = 0, from = 0, to = 0;
	for (size_t i = 0; i < rs.count && region == 0; i++) {
		const struct pd_region *r = &rs.v[i];
		if (!r->has_leader || r->n_pending || r->n_down)
			continue;
		for (size_t k = 0; k < r->n_peers; k++)
			if (r->peers[k].store_id != r->leader.store_id &&
			    !strcmp(r->peers[k].role, "Voter")) {
				region = r->id, from = r->leader.store_id, to = r->peers[k].store_id;
				break;
			}
	}
	pd_regions_free(&rs);
	ck_assert_msg(region != 0, "no region with a healthy follower");
	json_object *p = json_object_new_object();
	json_object_object_add(p, "region_id", json_object_new_uint64(region));
	json_object_object_add(p, "to_store_id", json_object_new_uint64(to));
	res = NULL;
	rc = S->ops->execute(S, "transfer_leader", p, &res, err, sizeof(err));
	ck_assert_msg(rc == 0, "transfer_leader: %s", err);
	undo = op_json_obj(res, "undo");
	ck_assert_int_eq(op_json_u64(undo, "from_store_id", 0), from);
	WAIT(ok, leader_of(&pc, region) == to);
	ck_assert_msg(ok, "transfer_leader never landed");
	ures = NULL;
	ck_assert_int_eq(op_subject_action(S, "transfer_leader")->revert(S, undo, &ures, err,
	    sizeof(err)), 0);
	WAIT(ok, leader_of(&pc, region) == from);
	ck_assert_msg(ok, "undo of transfer_leader: leader of %llu not back on %llu",
	    (unsigned long long)region, (unsigned long long)from);
	json_object_put(ures);
	json_object_put(res);
	json_object_put(p);

	/* set_max_store_down_time records PD's value; undo puts it back */
	struct pd_schedule_config sc;
	ck_assert_int_eq(pd_get_schedule_config(&pc, &sc, &pe), 0);
	int64_t msdt_before = sc.max_store_down_time_ms;
	pd_schedule_config_free(&sc);
	p = json_object_new_object();
	op_json_set_str(p, "duration", "2h");
	res = ures = NULL;
	ck_assert_msg(S->ops->execute(S, "set_max_store_down_time", p, &res, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_int_eq(pd_get_schedule_config(&pc, &sc, &pe), 0);
	ck_assert_int_eq(sc.max_store_down_time_ms, 2 * 3600 * 1000);
	pd_schedule_config_free(&sc);
	ck_assert_int_eq(op_subject_action(S, "set_max_store_down_time")->revert(S,
	    op_json_obj(res, "undo"), &ures, err, sizeof(err)), 0);
	ck_assert_int_eq(pd_get_schedule_config(&pc, &sc, &pe), 0);
	ck_assert_int_eq(sc.max_store_down_time_ms, msdt_before);
	pd_schedule_config_free(&sc);
	json_object_put(res);
	json_object_put(ures);
	json_object_put(p);

	/* evict_leader records that the store was not evicted; undo lifts it */
	p = json_object_new_object();
	json_object_object_add(p, "store_id", json_object_new_uint64(2));
	res = ures = NULL;
	ck_assert_msg(S->ops->execute(S, "evict_leader", p, &res, err, sizeof(err)) == 0, "%s", err);
	ck_assert(!op_json_bool(op_json_obj(res, "undo"), "evicted", 1));
	ck_assert_int_eq(evicted(S, 2), 1);
	ck_assert_int_eq(op_subject_action(S, "evict_leader")->revert(S, op_json_obj(res, "undo"),
	    &ures, err, sizeof(err)), 0);
	ck_assert_int_eq(evicted(S, 2), 0);
	json_object_put(res);
	json_object_put(ures);
	json_object_put(p);

	op_subjects_destroy(&subs);
	op_config_free(cfg);
}
END_TEST

/* --------------------------------------------------------- rate limiter */

static int node_port, redis_port;

static json_object *
limit_of(const char *key)
{
	long st;
	json_object *all = http_json(node_port, "GET", "/api/limits", NULL, &st), *hit = NULL;
	json_object *l = op_json_arr(all, "limits");

	for (size_t i = 0; l && i < json_object_array_length(l); i++)
		if (!strcmp(op_json_str(json_object_array_get_idx(l, i), "key", ""), key))
			hit = json_object_get(json_object_array_get_idx(l, i));
	json_object_put(all);
	return hit;
}

static int
limit_is(const char *key, int explicit, int64_t limit)
{
	json_object *l = limit_of(key);
	int ok = explicit ? l && op_json_bool(l, "explicit", 0) && op_json_int(l, "limit", -1) == limit
	    : l == NULL || !op_json_bool(l, "explicit", 0);

	json_object_put(l);
	return ok;
}

static int
node_healthy(void)
{
	long st;
	json_object *h = http_json(node_port, "GET", "/health", NULL, &st);

	json_object_put(h);
	return st == 200;
}

START_TEST(t_rl_update_limit_undo)
{
	struct op_config *cfg;
	struct op_subjects subs;
	char port[16], rport[16], redis[64], text[512], err[512];
	int ok;
	long st;

	redis_port = free_port();
	node_port = free_port();
	snprintf(rport, sizeof(rport), "%d", redis_port);
	char *rargv[] = {getenv("REDIS_SERVER") ? getenv("REDIS_SERVER") : "redis-server", "--port",
	    rport, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, NULL};
	spawn(rargv, "redis.log");
	snprintf(port, sizeof(port), "%d", node_port);
	snprintf(redis, sizeof(redis), "127.0.0.1:%d", redis_port);
	char *nargv[] = {(char *)env_bin("RLNODE_BIN"), "--port", port, "--redis", redis,
	    "--node-id", "n1", NULL};
	/* rlnode retries Redis until it answers */
	spawn(nargv, "rlnode.log");
	WAIT(ok, node_healthy());
	ck_assert_msg(ok, "rlnode never became healthy (see %s)", dir);
	snprintf(text, sizeof(text), "[subject.ratelimiter]\nredis = %s\nnodes = "
	    "http://127.0.0.1:%d\n", redis, node_port);
	struct op_subject *S = make_subject(&cfg, &subs, text, "ratelimiter");
	const struct op_action_def *ul = op_subject_action(S, "update_limit");

	/* a key with an explicit limit: undo restores that limit */
	/* the node answers /health before its Redis connection is up */
	WAIT(ok, (json_object_put(http_json(node_port, "PUT", "/api/limits/kx",
	    "{\"limit\":100}", &st)), st == 200));
	ck_assert_msg(ok, "PUT /api/limits/kx: HTTP %ld", st);
	WAIT(ok, limit_is("kx", 1, 100));
	ck_assert(ok);
	json_object *p = json_object_new_object(), *res = NULL, *ures = NULL;
	op_json_set_str(p, "key", "kx");
	op_json_set_int(p, "limit", 5);
	ck_assert_msg(S->ops->execute(S, "update_limit", p, &res, err, sizeof(err)) == 0, "%s", err);
	json_object *undo = op_json_obj(res, "undo");
	ck_assert_int_eq(op_json_int(undo, "limit", -1), 100);
	WAIT(ok, limit_is("kx", 1, 5));
	ck_assert_msg(ok, "update_limit did not set 5");
	ck_assert_msg(ul->revert(S, undo, &ures, err, sizeof(err)) == 0, "revert: %s", err);
	WAIT(ok, limit_is("kx", 1, 100));
	ck_assert_msg(ok, "undo did not restore the limit 100");
	json_object_put(res);
	json_object_put(ures);
	json_object_put(p);

	/* a key on the default: undo removes the explicit limit again */
	p = json_object_new_object();
	res = ures = NULL;
	op_json_set_str(p, "key", "ky");
	op_json_set_int(p, "limit", 7);
	ck_assert_msg(S->ops->execute(S, "update_limit", p, &res, err, sizeof(err)) == 0, "%s", err);
	undo = op_json_obj(res, "undo");
	ck_assert_msg(json_object_object_get_ex(undo, "limit", NULL) &&
	    json_object_object_get(undo, "limit") == NULL, "undo of a default key: %s",
	    json_object_to_json_string(undo));
	WAIT(ok, limit_is("ky", 1, 7));
	ck_assert(ok);
	ck_assert_msg(ul->revert(S, undo, &ures, err, sizeof(err)) == 0, "revert: %s", err);
	WAIT(ok, limit_is("ky", 0, 0));
	ck_assert_msg(ok, "undo left an explicit limit on ky");
	json_object_put(res);
	json_object_put(ures);
	json_object_put(p);
	op_subjects_destroy(&subs);
	op_config_free(cfg);
}
END_TEST

static void
live_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_safety_live.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	op_http_global_init();
	checks = 0;
}

static void
live_teardown(void)
{
	char cmd[256];

	stop_all();
	op_exec_ctx_set(NULL);
	if (getenv("CHECK_SAFETY_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
}

int
main(void)
{
	Suite *s = suite_create("safety_defaults_live");
	TCase *tc = tcase_create("subjects");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, live_setup, live_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_tikv_cancel_and_undo);
	tcase_add_test(tc, t_rl_update_limit_undo);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
