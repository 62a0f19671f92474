/* bench_rl: one rate-limiter observation (observe + check) against a real
 * redis-server and three real rlnodes, with 10k and 100k keys active in the
 * window. The keys are written straight into Redis as the check script
 * writes them (rl:keys and a window entry per key), so the nodes see them as
 * active keys of other nodes, and one in BR_SUSPECT_EVERY is marked a drift
 * suspect (rl:suspect) as a node marks a key whose attempt it abandoned.
 * Prints "BENCH|" rows for scripts/bench.sh and says whether the observation
 * could account for every key (complete).
 *
 *   RLNODE_BIN=build/subjects/ratelimiter/rlnode/rlnode build/bench/bench_rl [keys...]
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "subjects/subject.h"

#define BR_NODES 3
#define BR_RUNS 5                  /* observations timed per size */
#define BR_START_WAIT_MS 20000     /* redis and every node answering */
#define BR_BATCH 1000              /* keys per pipelined write batch */
#define BR_GOAL_MS 1000            /* observation at 100k keys */
#define BR_SUSPECT_EVERY 200       /* share of the keys marked drift suspects */
#define BR_WINDOW "2s"             /* node window: nodes account for a whole one soon */
#define BR_COVER_WAIT_MS 30000     /* until the observation can vouch for every key */

static pid_t pids[1 + BR_NODES];
static size_t npids;
static char dir[64];

static void
br_stop(void)
{
	for (size_t i = 0; i < npids; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
	npids = 0;
}

static int
br_spawn(char *const argv[], const char *log)
{
	pid_t p = fork();

	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (freopen(log, "w", stderr) == NULL || freopen(log, "a", stdout) == NULL)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (p < 0)
		return -1;
	pids[npids++] = p;
	return 0;
}

/* A port nothing listens on now (the kernel's pick, released). */
static int
br_port(void)
{
	int port = 0;
	FILE *f = popen("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
			"print(s.getsockname()[1])'", "r");

	if (f == NULL || fscanf(f, "%d", &port) != 1)
		port = 0;
	if (f)
		pclose(f);
	return port;
}

static int
br_wait_url(const char *url)
{
	int64_t end = op_mono_ms() + BR_START_WAIT_MS;

	while (op_mono_ms() < end) {
		struct op_http_req r = {.url = url, .timeout_ms = 500};
		int ok = op_http_do(&r) == 0 && r.status == 200;
		op_http_req_reset(&r);
		if (ok)
			return 0;
		op_sleep_ms(100);
	}
	return -1;
}

static int
br_populate(int rport, int nkeys)
{
	redisContext *c = redisConnect("127.0.0.1", rport);
	redisReply *t;
	long long now;

	if (c == NULL || c->err)
		return -1;
	t = redisCommand(c, "TIME");
	if (t == NULL || t->type != REDIS_REPLY_ARRAY || t->elements != 2)
		return -1;
	now = atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
	freeReplyObject(t);
	redisCommand(c, "FLUSHALL");
	for (int i = 0; i < nkeys; i += BR_BATCH) {
		int n = nkeys - i < BR_BATCH ? nkeys - i : BR_BATCH;
		for (int k = i; k < i + n; k++) {
			redisAppendCommand(c, "ZADD rl:keys %lld bench:%d", now, k);
			redisAppendCommand(c, "ZADD rl:bench:%d %lld other:1:%d:1", k, now, k);
			/* one key in BR_SUSPECT_EVERY is a drift suspect the nodes must read */
			redisAppendCommand(c, "ZADD rl:suspect %lld %s%d", k % BR_SUSPECT_EVERY ? 0LL : now,
			    k % BR_SUSPECT_EVERY ? "clean:" : "bench:", k);
		}
		for (int k = 0; k < 3 * n; k++) {
			redisReply *r;
			if (redisGetReply(c, (void **)&r) != REDIS_OK)
				return -1;
			freeReplyObject(r);
		}
	}
	redisFree(c);
	return 0;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int
br_one(const char *bin, int nkeys)
{
	char rp[16], np[BR_NODES][16], rlog[128], redis[64], conf[1024], err[512], url[128];
	int rport = br_port(), nport[BR_NODES];
	struct op_subjects all;
	struct op_config *cfg;

	snprintf(rp, sizeof(rp), "%d", rport);
	snprintf(rlog, sizeof(rlog), "%s/redis.%d.log", dir, nkeys);
	char *rargv[] = {"redis-server", "--port", rp, "--bind", "127.0.0.1", "--save", "",
	    "--appendonly", "no", "--dir", dir, NULL};
	if (rport <= 0 || br_spawn(rargv, rlog) != 0)
		return -1;
	for (int t = 0; t < 100; t++) {
		redisContext *c = redisConnect("127.0.0.1", rport);
		int ok = c && !c->err;
		redisFree(c);
		if (ok)
			break;
		op_sleep_ms(100);
	}
	if (br_populate(rport, nkeys) != 0) {
		fprintf(stderr, "bench_rl: could not write %d keys into redis\n", nkeys);
		return -1;
	}
	snprintf(redis, sizeof(redis), "127.0.0.1:%d", rport);
	size_t o = (size_t)snprintf(conf, sizeof(conf), "[subject.ratelimiter]\nredis = %s\nnodes = ",
	    redis);
	for (int i = 0; i < BR_NODES; i++) {
		char id[16], log[128];
		nport[i] = br_port();
		snprintf(np[i], sizeof(np[i]), "%d", nport[i]);
		snprintf(id, sizeof(id), "bench%d", i);
		snprintf(log, sizeof(log), "%s/rlnode%d.%d.log", dir, i, nkeys);
		char *argv[] = {(char *)bin, "--port", np[i], "--redis", redis, "--node-id", id,
		    "--window", BR_WINDOW, NULL};
		if (br_spawn(argv, log) != 0)
			return -1;
		o += (size_t)snprintf(conf + o, sizeof(conf) - o, "%shttp://127.0.0.1:%d", i ? "," : "",
		    nport[i]);
	}
	snprintf(conf + o, sizeof(conf) - o, "\ntimeout = 10s\n");
	for (int i = 0; i < BR_NODES; i++) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", nport[i]);
		if (br_wait_url(url) != 0) {
			fprintf(stderr, "bench_rl: rlnode %d did not start (see %s)\n", i, dir);
			return -1;
		}
	}
	if ((cfg = op_config_parse(conf, err, sizeof(err))) == NULL ||
	    op_subjects_create(&all, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_rl: %s\n", err);
		op_config_free(cfg);
		return -1;
	}
	struct op_subject *s = op_subjects_find(&all, "ratelimiter");
	/* until every node has accounted for a whole window (a condition, bounded) */
	int64_t until = op_mono_ms() + BR_COVER_WAIT_MS;
	for (;;) {
		json_object *obs = NULL;
		int done = s->ops->observe(s, &obs, err, sizeof(err)) == 0 && op_json_bool(obs, "complete", 0);
		json_object_put(obs);
		if (done || op_mono_ms() > until)
			break;
		op_sleep_ms(200);
	}
	int64_t t[BR_RUNS];
	int complete = -1, runs = 0;
	int64_t listed = 0, readings = 0;
	for (int i = 0; i < BR_RUNS; i++) {
		json_object *obs = NULL;
		struct op_readings rd = {0};
		int64_t t0 = op_mono_ms();
		if (s->ops->observe(s, &obs, err, sizeof(err)) != 0) {
			fprintf(stderr, "bench_rl: observe: %s\n", err);
			break;
		}
		s->ops->check(s, obs, &rd);
		t[runs++] = op_mono_ms() - t0;
		complete = op_json_bool(obs, "complete", 0);
		json_object *keys = op_json_arr(obs, "keys");
		listed = keys ? (int64_t)json_object_array_length(keys) : 0;
		readings = (int64_t)rd.n;
		op_readings_clear(&rd);
		json_object_put(obs);
	}
	op_subjects_destroy(&all);
	op_config_free(cfg);
	br_stop();
	if (runs == 0)
		return -1;
	qsort(t, (size_t)runs, sizeof(t[0]), cmp_i64);
	printf("BENCH|rate-limiter observe+check, %d keys, %d nodes|%" PRId64
	    " ms (%" PRId64 " keys listed, complete: %s)|-|-|-|<= %d ms%s\n", nkeys, BR_NODES,
	    t[runs / 2], listed, complete ? "yes" : "no", BR_GOAL_MS,
	    complete ? "" : ", and complete");
	printf("  %d keys: observe+check median %" PRId64 " ms (min %" PRId64 ", max %" PRId64
	    ") over %d runs; %" PRId64 " keys in the observation, %" PRId64 " readings, "
	    "complete %d\n", nkeys, t[runs / 2], t[0], t[runs - 1], runs, listed, readings,
	    complete);
	fflush(stdout);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *bin = getenv("RLNODE_BIN");
	int sizes[8] = {10000, 100000}, n = 2, rc = 0;

	if (bin == NULL || access(bin, X_OK) != 0) {
		fprintf(stderr, "bench_rl: set RLNODE_BIN to the rlnode binary\n");
		return 1;
	}
	if (argc > 1) {
		n = 0;
		for (int i = 1; i < argc && n < 8; i++)
			sizes[n++] = atoi(argv[i]);
	}
	snprintf(dir, sizeof(dir), "/tmp/bench_rl.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	op_http_global_init();
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < n; i++)
		if (br_one(bin, sizes[i]) != 0) {
			br_stop();
			rc = 1;
		}
	if (rc == 0) {
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_rl: could not remove %s\n", dir);
	}
	return rc;
}
