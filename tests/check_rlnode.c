/*
 * Integration tests for rlnode: a real redis-server and three real rlnode
 * processes on free ports in a temporary directory. Every wait is a bounded
 * poll on a condition; nothing asserts on elapsed time.
 *
 * Usage: check_rlnode [RLNODE_BIN]   (or RLNODE_BIN in the environment)
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "common/jsonutil.h"
#include "common/util.h"

#define T_WAIT_MS 10000     /* bound for every condition wait */
#define T_POLL_MS 50        /* poll period while waiting */
#define T_IO_TIMEOUT_S 10   /* socket timeout for one HTTP exchange */
#define T_NNODES 3          /* n1, n2 serve traffic; n3 is killed */
#define T_PAUSE_MS "1000"   /* CLIENT PAUSE length in the double-count test */
#define T_SETTLE_MS 1000    /* the observer's margin: it asks for ?at=now-1000 */
#define T_TRAFFIC_MS 3000   /* Redis-time span of steady traffic in the drift test */
#define T_SHORT_WINDOW_MS 1000 /* window of the drift test's key: shorter than the span */

static const char *t_rlnode_bin;
static char t_dir[256];
static int t_redis_port;
static pid_t t_redis_pid;
static int t_node_port[T_NNODES];
static pid_t t_node_pid[T_NNODES];
static const char *const t_node_id[T_NNODES] = {"n1", "n2", "n3"};

struct t_resp {
	int code;
	json_object *json; /* NULL unless the body is JSON */
	char *body;
};

/* ---- helpers ---- */

static int
t_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		perror("t_free_port");
		exit(1);
	}
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static pid_t
t_spawn(char *const argv[], const char *logname)
{
	char path[512];
	pid_t pid;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t_dir, logname);
	pid = fork();
	if (pid == 0) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	return pid;
}

static void
t_resp_free(struct t_resp *r)
{
	json_object_put(r->json);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* One HTTP/1.1 exchange with Connection: close. Returns code 0 on I/O error. */
static struct t_resp
t_http(int port, const char *method, const char *path, const char *body)
{
	struct t_resp r = {0, NULL, NULL};
	struct sockaddr_in a;
	struct timeval tv = {T_IO_TIMEOUT_S, 0};
	char head[1024], *buf = NULL, *p;
	size_t len = 0, cap = 0, blen = body ? strlen(body) : 0;
	ssize_t got;
	char err[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	snprintf(head, sizeof(head),
	    "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
	    method, path, port, blen);
	if (op_write_all(fd, head, strlen(head)) != 0 ||
	    (blen && op_write_all(fd, body, blen) != 0)) {
		close(fd);
		return r;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
		}
		got = read(fd, buf + len, cap - len - 1);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	if (buf == NULL)
		return r;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &r.code) != 1)
		r.code = 0;
	p = strstr(buf, "\r\n\r\n");
	r.body = strdup(p ? p + 4 : "");
	free(buf);
	r.json = op_json_parse(r.body, strlen(r.body), err, sizeof(err));
	return r;
}

static redisContext *
t_redis(void)
{
	struct timeval tv = {2, 0};

	return redisConnectWithTimeout("127.0.0.1", t_redis_port, tv);
}

static int
t_redis_ok(void)
{
	redisContext *c = t_redis();
	redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
	int ok = r && r->type == REDIS_REPLY_STATUS;

	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return ok;
}

static int
t_health_ok(int port)
{
	struct t_resp r = t_http(port, "GET", "/health", NULL);
	int ok = r.code == 200 && strcmp(op_json_str(r.json, "redis", ""), "up") == 0 &&
	    op_json_bool(r.json, "limits_loaded", 0);

	t_resp_free(&r);
	return ok;
}

/* Polls cond(arg) until true or T_WAIT_MS passes. */
static int
t_wait(int (*cond)(void *), void *arg)
{
	int64_t end = op_mono_ms() + T_WAIT_MS;

	do {
		if (cond(arg))
			return 1;
		op_sleep_ms(T_POLL_MS);
	} while (op_mono_ms() < end);
	return cond(arg);
}

static int
t_cond_health(void *arg)
{
	return t_health_ok(*(int *)arg);
}

static int
t_cond_redis(void *arg)
{
	return t_redis_ok();
}

/* ---- fixture ---- */

static void
t_start_node(int i)
{
	char port[16], redis[64];
	char *argv[] = {(char *)t_rlnode_bin, "--port", port, "--redis", redis, "--node-id",
	    (char *)t_node_id[i], "--heartbeat", "200", "--node-ttl", "1000", "--redis-timeout",
	    "150", "--retries", "2", "--limit-refresh", "10m", NULL};
	char log[32];

	t_node_port[i] = t_free_port();
	snprintf(port, sizeof(port), "%d", t_node_port[i]);
	snprintf(redis, sizeof(redis), "127.0.0.1:%d", t_redis_port);
	snprintf(log, sizeof(log), "%s.log", t_node_id[i]);
	t_node_pid[i] = t_spawn(argv, log);
}

static void
t_setup(void)
{
	const char *rs = getenv("REDIS_SERVER") ? getenv("REDIS_SERVER") : "redis-server";
	char port[16];
	int i;

	snprintf(t_dir, sizeof(t_dir), "/tmp/check_rlnode.XXXXXX");
	if (mkdtemp(t_dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	t_redis_port = t_free_port();
	snprintf(port, sizeof(port), "%d", t_redis_port);
	{
		char *argv[] = {(char *)rs, "--port", port, "--bind", "127.0.0.1", "--save", "",
		    "--appendonly", "no", "--dir", t_dir, NULL};
		t_redis_pid = t_spawn(argv, "redis.log");
	}
	if (!t_wait(t_cond_redis, NULL)) {
		fprintf(stderr, "redis-server did not answer PING within %d ms (log in %s)\n",
		    T_WAIT_MS, t_dir);
		exit(1);
	}
	for (i = 0; i < T_NNODES; i++)
		t_start_node(i);
	for (i = 0; i < T_NNODES; i++) {
		if (!t_wait(t_cond_health, &t_node_port[i])) {
			fprintf(stderr, "rlnode %s not healthy within %d ms (log in %s)\n",
			    t_node_id[i], T_WAIT_MS, t_dir);
			exit(1);
		}
	}
}

static void
t_stop(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
		*pid = 0;
	}
}

static void
t_teardown(void)
{
	char cmd[512];
	int i;

	for (i = 0; i < T_NNODES; i++)
		t_stop(&t_node_pid[i]);
	t_stop(&t_redis_pid);
	if (getenv("RLNODE_KEEP_LOGS") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", t_dir);
	}
}

/* ---- test helpers ---- */

static struct t_resp
t_check(int node, const char *key)
{
	char body[300];

	snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
	return t_http(t_node_port[node], "POST", "/check", body);
}

static int
t_check_code(int node, const char *key)
{
	struct t_resp r = t_check(node, key);
	int code = r.code;

	t_resp_free(&r);
	return code;
}

static void
t_put_limit(int node, const char *key, int limit)
{
	char path[300], body[64];
	struct t_resp r;

	snprintf(path, sizeof(path), "/api/limits/%s", key);
	snprintf(body, sizeof(body), "{\"limit\":%d}", limit);
	r = t_http(t_node_port[node], "PUT", path, body);
	ck_assert_msg(r.code == 200, "PUT %s on %s: HTTP %d %s", path, t_node_id[node], r.code,
	    r.body ? r.body : "");
	ck_assert(op_json_bool(r.json, "updated", 0));
	t_resp_free(&r);
}

static void
t_put_limit_window(int node, const char *key, int limit, int window_ms)
{
	char path[300], body[96];
	struct t_resp r;

	snprintf(path, sizeof(path), "/api/limits/%s", key);
	snprintf(body, sizeof(body), "{\"limit\":%d,\"window_ms\":%d}", limit, window_ms);
	r = t_http(t_node_port[node], "PUT", path, body);
	ck_assert_msg(r.code == 200, "PUT %s on %s: HTTP %d %s", path, t_node_id[node], r.code,
	    r.body ? r.body : "");
	ck_assert_int_eq(op_json_int(r.json, "window_ms", -1), window_ms);
	t_resp_free(&r);
}

/* The node's cached limit for key, from GET /api/limits; -1 if absent. */
static int64_t
t_cached_limit(int node, const char *key)
{
	struct t_resp r = t_http(t_node_port[node], "GET", "/api/limits", NULL);
	json_object *arr = op_json_arr(r.json, "limits");
	int64_t v = -1;
	size_t i;

	for (i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (strcmp(op_json_str(e, "key", ""), key) == 0)
			v = op_json_int(e, "cached_limit", -1);
	}
	t_resp_free(&r);
	return v;
}

struct t_cache_want {
	int node;
	const char *key;
	int64_t limit;
};

static int
t_cond_cached(void *arg)
{
	struct t_cache_want *w = arg;

	return t_cached_limit(w->node, w->key) == w->limit;
}

/* Looks one key up in a node's /api/counters; fills at_ms. */
struct t_counter {
	int found;
	int64_t redis_count, node_allowed, limit, cached_limit, at_ms;
};

static struct t_counter
t_counter(int node, const char *key, int64_t at)
{
	struct t_counter c = {0, 0, 0, 0, 0, 0};
	char path[64];
	struct t_resp r;
	json_object *arr;
	size_t i;

	if (at > 0)
		snprintf(path, sizeof(path), "/api/counters?at=%lld", (long long)at);
	else
		snprintf(path, sizeof(path), "/api/counters");
	r = t_http(t_node_port[node], "GET", path, NULL);
	ck_assert_msg(r.code == 200, "GET %s on %s: HTTP %d %s", path, t_node_id[node], r.code,
	    r.body ? r.body : "");
	c.at_ms = op_json_int(r.json, "at_ms", 0);
	arr = op_json_arr(r.json, "counters");
	for (i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (strcmp(op_json_str(e, "key", ""), key) != 0)
			continue;
		c.found = 1;
		c.redis_count = op_json_int(e, "redis_count", -1);
		c.node_allowed = op_json_int(e, "node_allowed", -1);
		c.limit = op_json_int(e, "limit", -1);
		c.cached_limit = op_json_int(e, "cached_limit", -1);
	}
	t_resp_free(&r);
	return c;
}

/* Sums node_allowed over n1 and n2 at one instant; returns redis_count. */
static int64_t
t_counters_pair(const char *key, int64_t *sum)
{
	struct t_counter a = t_counter(0, key, 0);
	struct t_counter b = t_counter(1, key, a.at_ms);

	ck_assert_msg(a.redis_count == b.redis_count,
	    "nodes disagree on redis_count for %s at %lld: %lld vs %lld", key,
	    (long long)a.at_ms, (long long)a.redis_count, (long long)b.redis_count);
	*sum = a.node_allowed + b.node_allowed;
	return a.redis_count;
}

/* Redis now as a node reports it (now_ms of GET /api/counters). */
static int64_t
t_redis_now(int node)
{
	struct t_resp r = t_http(t_node_port[node], "GET", "/api/counters", NULL);
	int64_t now;

	ck_assert_msg(r.code == 200, "GET /api/counters on %s: HTTP %d %s", t_node_id[node],
	    r.code, r.body ? r.body : "");
	now = op_json_int(r.json, "now_ms", 0);
	ck_assert(now > 0);
	t_resp_free(&r);
	return now;
}

/* An integer field of a node's GET /health; -1 if absent. */
static int64_t
t_health_int(int node, const char *field)
{
	struct t_resp r = t_http(t_node_port[node], "GET", "/health", NULL);
	int64_t v;

	ck_assert_msg(r.code == 200, "GET /health on %s: HTTP %d", t_node_id[node], r.code);
	v = op_json_int(r.json, field, -1);
	t_resp_free(&r);
	return v;
}

/* The value of a node's /metrics sample "name{node_id="ID"}"; -1 if absent. */
static long long
t_metric(int node, const char *name)
{
	struct t_resp r = t_http(t_node_port[node], "GET", "/metrics", NULL);
	char pfx[128];
	const char *p;
	long long v = -1;

	ck_assert_int_eq(r.code, 200);
	snprintf(pfx, sizeof(pfx), "\n%s{node_id=\"%s\"} ", name, t_node_id[node]);
	if (r.body && (p = strstr(r.body, pfx)) != NULL)
		v = strtoll(p + strlen(pfx), NULL, 10);
	t_resp_free(&r);
	return v;
}

/* ---- tests ---- */

START_TEST(test_limit_enforced)
{
	struct t_cache_want w = {1, "t-lim", 3};
	struct t_resp r;
	int i;

	t_put_limit(0, "t-lim", 3);
	ck_assert_msg(t_wait(t_cond_cached, &w), "n2 never cached limit 3 for t-lim");
	for (i = 0; i < 3; i++) {
		r = t_check(i % 2, "t-lim");
		ck_assert_msg(r.code == 200, "check %d: HTTP %d %s", i + 1, r.code, r.body);
		ck_assert(op_json_bool(r.json, "allowed", 0));
		ck_assert_int_eq(op_json_int(r.json, "limit", -1), 3);
		t_resp_free(&r);
	}
	r = t_check(1, "t-lim");
	ck_assert_msg(r.code == 429, "4th check should be 429, got %d %s", r.code, r.body);
	ck_assert(!op_json_bool(r.json, "allowed", 1));
	ck_assert_int_eq(op_json_int(r.json, "remaining", -1), 0);
	t_resp_free(&r);
}
END_TEST

START_TEST(test_limit_zero_blocks)
{
	struct t_cache_want w0 = {0, "t-zero", 0}, w1 = {1, "t-zero", 0};

	t_put_limit(1, "t-zero", 0);
	ck_assert_msg(t_wait(t_cond_cached, &w0), "n1 never cached limit 0 for t-zero");
	ck_assert_msg(t_wait(t_cond_cached, &w1), "n2 never cached limit 0 for t-zero");
	ck_assert_int_eq(t_check_code(0, "t-zero"), 429);
	ck_assert_int_eq(t_check_code(1, "t-zero"), 429);
}
END_TEST

START_TEST(test_bad_requests)
{
	struct t_resp r = t_http(t_node_port[0], "POST", "/check", "{\"key\": \"a\"");

	ck_assert_msg(r.code == 400, "malformed JSON: HTTP %d", r.code);
	ck_assert_msg(strstr(op_json_str(r.json, "error", ""), "invalid JSON") != NULL,
	    "error should mention invalid JSON: %s", r.body);
	t_resp_free(&r);

	r = t_http(t_node_port[0], "POST", "/check", "{\"cost\": 1}");
	ck_assert_msg(r.code == 400, "missing key: HTTP %d", r.code);
	ck_assert_msg(strstr(op_json_str(r.json, "error", ""), "\"key\"") != NULL,
	    "error should name the key field: %s", r.body);
	t_resp_free(&r);

	r = t_http(t_node_port[0], "POST", "/check", "{\"key\": 5}");
	ck_assert_int_eq(r.code, 400);
	t_resp_free(&r);

	r = t_http(t_node_port[0], "GET", "/check", NULL);
	ck_assert_int_eq(r.code, 405);
	ck_assert(op_json_str(r.json, "error", NULL) != NULL);
	t_resp_free(&r);

	r = t_http(t_node_port[0], "GET", "/no/such/thing", NULL);
	ck_assert_int_eq(r.code, 404);
	ck_assert(op_json_str(r.json, "error", NULL) != NULL);
	t_resp_free(&r);
}
END_TEST

START_TEST(test_counters_match_and_reset)
{
	struct t_resp r;
	int64_t sum, redis;
	int i;

	for (i = 0; i < 10; i++)
		ck_assert_int_eq(t_check_code(i % 2, "t-cnt"), 200);
	redis = t_counters_pair("t-cnt", &sum);
	ck_assert_msg(redis == 10 && sum == 10,
	    "without faults Redis and the nodes must agree: redis_count=%lld sum=%lld",
	    (long long)redis, (long long)sum);

	r = t_http(t_node_port[0], "POST", "/api/counters/t-cnt/reset", NULL);
	ck_assert_msg(r.code == 200, "reset: HTTP %d %s", r.code, r.body);
	ck_assert(op_json_bool(r.json, "reset", 0));
	ck_assert_int_eq(op_json_int(r.json, "deleted", -1), 1);
	ck_assert(op_json_int(r.json, "reset_at_ms", 0) > 0);
	t_resp_free(&r);

	redis = t_counters_pair("t-cnt", &sum);
	ck_assert_msg(redis == 0 && sum == 0, "after reset: redis_count=%lld sum=%lld",
	    (long long)redis, (long long)sum);
}
END_TEST

/*
 * The observer's question under steady load and no fault: at AT = Redis now
 * minus its settle margin, Redis and the nodes must agree exactly. The key's
 * window is shorter than the traffic span, so (AT - window, AT] lies wholly
 * outside the current window; a /check script that pruned at now - window
 * would already have removed that interval from Redis.
 */
START_TEST(test_counters_at_past_no_drift)
{
	struct t_cache_want w0 = {0, "t-steady", 1000000}, w1 = {1, "t-steady", 1000000};
	struct t_counter a, b;
	int64_t t0, now = 0, end = op_mono_ms() + 3 * T_WAIT_MS, at;
	int i = 0;

	t_put_limit_window(0, "t-steady", 1000000, T_SHORT_WINDOW_MS);
	ck_assert_msg(t_wait(t_cond_cached, &w0), "n1 never cached the t-steady limit");
	ck_assert_msg(t_wait(t_cond_cached, &w1), "n2 never cached the t-steady limit");
	t0 = t_redis_now(0);
	/* Traffic until T_TRAFFIC_MS of Redis time have passed (bounded). */
	do {
		int code = t_check_code(i % 2, "t-steady");
		ck_assert_msg(code == 200, "steady check %d on %s: HTTP %d", i, t_node_id[i % 2],
		    code);
		if (++i % 20 == 0)
			now = t_redis_now(i % 2);
	} while (now - t0 < T_TRAFFIC_MS && op_mono_ms() < end);
	ck_assert_msg(now - t0 >= T_TRAFFIC_MS, "only %lld ms of Redis time in %d checks",
	    (long long)(now - t0), i);

	now = t_redis_now(0);
	at = now - T_SETTLE_MS;
	a = t_counter(0, "t-steady", at);
	b = t_counter(1, "t-steady", at);
	ck_assert_msg(a.found && b.found, "t-steady missing from /api/counters?at=%lld",
	    (long long)at);
	ck_assert_int_eq(a.at_ms, at);
	ck_assert_msg(a.redis_count == b.redis_count,
	    "nodes disagree on redis_count at %lld: %lld vs %lld", (long long)at,
	    (long long)a.redis_count, (long long)b.redis_count);
	ck_assert_msg(a.node_allowed > 0 && b.node_allowed > 0,
	    "both nodes should have allowed traffic in the interval: n1=%lld n2=%lld",
	    (long long)a.node_allowed, (long long)b.node_allowed);
	ck_assert_msg(a.redis_count == a.node_allowed + b.node_allowed,
	    "false drift without any fault at now-%d: Redis counts %lld, nodes allowed %lld "
	    "(n1 %lld + n2 %lld)", T_SETTLE_MS, (long long)a.redis_count,
	    (long long)(a.node_allowed + b.node_allowed), (long long)a.node_allowed,
	    (long long)b.node_allowed);
}
END_TEST

struct t_past {
	int node;
	int64_t t;
};

static int
t_cond_redis_past(void *arg)
{
	struct t_past *p = arg;

	return t_redis_now(p->node) > p->t;
}

/* The score of the zset entry at rank i (oldest first), or -1. */
static int64_t
t_zscore_at(const char *zkey, int i)
{
	redisContext *c = t_redis();
	redisReply *r = c && !c->err ? redisCommand(c, "ZRANGE %s %d %d WITHSCORES", zkey, i, i)
				     : NULL;
	int64_t v = -1;

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str)
		v = strtoll(r->element[1]->str, NULL, 10);
	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return v;
}

/*
 * Entries that left the window but are still kept for the observer
 * (RL_PRUNE_SLACK_MS) must neither count against the limit nor decide the
 * retry time.
 */
START_TEST(test_limit_exact_with_slack)
{
	struct t_cache_want w = {1, "t-slack", 3};
	struct t_past past = {0, 0};
	struct t_resp r;
	int64_t oldest_b, now, lower;
	int i;

	t_put_limit_window(0, "t-slack", 3, T_SHORT_WINDOW_MS);
	ck_assert_msg(t_wait(t_cond_cached, &w), "n2 never cached the t-slack limit");
	for (i = 0; i < 3; i++) /* batch A */
		ck_assert_int_eq(t_check_code(i % 2, "t-slack"), 200);
	past.t = t_redis_now(0) + T_SHORT_WINDOW_MS; /* A is out of the window after this */
	ck_assert_msg(t_wait(t_cond_redis_past, &past), "Redis time never passed %lld",
	    (long long)past.t);
	for (i = 0; i < 3; i++) { /* batch B: A must not count */
		r = t_check(i % 2, "t-slack");
		ck_assert_msg(r.code == 200, "batch B check %d: HTTP %d %s", i + 1, r.code, r.body);
		ck_assert_int_eq(op_json_int(r.json, "count", -1), i + 1);
		t_resp_free(&r);
	}
	r = t_check(1, "t-slack");
	now = t_redis_now(1);
	ck_assert_msg(r.code == 429, "4th check of batch B should be 429: %d %s", r.code, r.body);
	ck_assert_int_eq(op_json_int(r.json, "count", -1), 3);
	/* Rank 3 is B's oldest while A is still kept; once A is pruned (a stall
	 * past the slack) rank 0 is, and the bound below only gets weaker. */
	oldest_b = t_zscore_at("rl:t-slack", 3);
	if (oldest_b < 0)
		oldest_b = t_zscore_at("rl:t-slack", 0);
	lower = oldest_b + T_SHORT_WINDOW_MS - now;
	ck_assert_msg(op_json_int(r.json, "retry_after_ms", -1) >= lower &&
	    op_json_int(r.json, "retry_after_ms", -1) <= T_SHORT_WINDOW_MS,
	    "retry_after_ms %lld should wait for batch B's oldest entry (>= %lld, <= %d)",
	    (long long)op_json_int(r.json, "retry_after_ms", -1), (long long)lower,
	    T_SHORT_WINDOW_MS);
	t_resp_free(&r);
}
END_TEST

/* Remediation counters: each action counts once, on the node that ran it. */
START_TEST(test_action_counters)
{
	int64_t r1 = t_health_int(0, "resets_total"), r2 = t_health_int(1, "resets_total");
	int64_t s1 = t_health_int(0, "resyncs_total"), s2 = t_health_int(1, "resyncs_total");
	struct t_resp r;

	ck_assert_msg(r1 >= 0 && r2 >= 0 && s1 >= 0 && s2 >= 0,
	    "/health lacks resets_total or resyncs_total");
	ck_assert_int_eq(t_metric(0, "rlnode_resets_total"), r1);
	ck_assert_int_eq(t_metric(0, "rlnode_resyncs_total"), s1);

	ck_assert_int_eq(t_check_code(0, "t-act"), 200);
	r = t_http(t_node_port[0], "POST", "/api/counters/t-act/reset", NULL);
	ck_assert_msg(r.code == 200, "reset: HTTP %d %s", r.code, r.body);
	t_resp_free(&r);
	/* Refused requests are not actions. */
	r = t_http(t_node_port[0], "GET", "/api/counters/t-act/reset", NULL);
	ck_assert_int_eq(r.code, 405);
	t_resp_free(&r);
	ck_assert_int_eq(t_health_int(0, "resets_total"), r1 + 1);
	ck_assert_int_eq(t_metric(0, "rlnode_resets_total"), r1 + 1);
	ck_assert_int_eq(t_health_int(1, "resets_total"), r2);
	ck_assert_int_eq(t_health_int(0, "resyncs_total"), s1);

	r = t_http(t_node_port[1], "POST", "/api/resync", NULL);
	ck_assert_msg(r.code == 200, "resync: HTTP %d %s", r.code, r.body);
	t_resp_free(&r);
	ck_assert_int_eq(t_health_int(1, "resyncs_total"), s2 + 1);
	ck_assert_int_eq(t_metric(1, "rlnode_resyncs_total"), s2 + 1);
	ck_assert_int_eq(t_health_int(1, "resets_total"), r2);
	ck_assert_int_eq(t_health_int(0, "resyncs_total"), s1);
	ck_assert_int_eq(t_health_int(0, "resets_total"), r1 + 1);
}
END_TEST

START_TEST(test_metrics_labels)
{
	struct t_resp r = t_http(t_node_port[1], "GET", "/metrics", NULL);

	ck_assert_int_eq(r.code, 200);
	ck_assert_msg(strstr(r.body, "rlnode_requests_total{node_id=\"n2\",result=\"allowed\"}"),
	    "no labelled requests_total in:\n%s", r.body);
	ck_assert(strstr(r.body, "rlnode_check_duration_seconds_bucket{node_id=\"n2\""));
	ck_assert(strstr(r.body, "rlnode_up{node_id=\"n2\"} 1"));
	t_resp_free(&r);
}
END_TEST

static int
t_cond_not_degraded(void *arg)
{
	struct t_resp r = t_check(0, "t-pause");
	int ok = r.code == 200 && !op_json_bool(r.json, "degraded", 1);

	t_resp_free(&r);
	return ok;
}

START_TEST(test_pause_double_counts)
{
	struct t_cache_want w = {0, "t-pause", 100000};
	redisContext *c;
	redisReply *rep;
	int64_t sum, redis;
	int i, degraded = 0;

	t_put_limit(1, "t-pause", 100000);
	ck_assert_msg(t_wait(t_cond_cached, &w), "n1 never cached the t-pause limit");
	ck_assert_int_eq(t_check_code(0, "t-pause"), 200);
	c = t_redis();
	ck_assert(c && !c->err);
	rep = redisCommand(c, "CLIENT PAUSE %s WRITE", T_PAUSE_MS);
	ck_assert_msg(rep && rep->type == REDIS_REPLY_STATUS, "CLIENT PAUSE failed");
	freeReplyObject(rep);
	redisFree(c);
	/* Each of these times out on every attempt while writes are paused;
	 * the abandoned scripts run when the pause ends. */
	for (i = 0; i < 2; i++) {
		struct t_resp r = t_check(0, "t-pause");
		ck_assert_msg(r.code == 200, "check during pause: HTTP %d %s", r.code, r.body);
		degraded += op_json_bool(r.json, "degraded", 0);
		t_resp_free(&r);
	}
	ck_assert_msg(degraded > 0, "no check failed open during a %s ms write pause",
	    T_PAUSE_MS);
	ck_assert_msg(t_wait(t_cond_not_degraded, NULL), "Redis writes never resumed");
	redis = t_counters_pair("t-pause", &sum);
	ck_assert_msg(redis > sum,
	    "retried scripts should double count: redis_count=%lld, nodes' sum=%lld",
	    (long long)redis, (long long)sum);
}
END_TEST

/* Whether node lists key in GET /api/counters?scope=suspects (-1: bad answer). */
static int
t_suspect_listed(int node, const char *key)
{
	struct t_resp r = t_http(t_node_port[node], "GET", "/api/counters?scope=suspects", NULL);
	json_object *arr = op_json_arr(r.json, "counters");
	int found = r.code == 200 && strcmp(op_json_str(r.json, "scope", ""), "suspects") == 0 ? 0 : -1;

	for (size_t i = 0; found == 0 && arr && i < json_object_array_length(arr); i++)
		found = strcmp(op_json_str(json_object_array_get_idx(arr, i), "key", ""), key) == 0;
	t_resp_free(&r);
	return found;
}

static int
t_cond_suspect_on_n2(void *arg)
{
	return t_suspect_listed(1, arg) == 1;
}

/* A key whose /check attempts n1 abandoned during a write pause is a drift
 * suspect on every node (n2 never saw the key); a key checked normally is
 * not, and an unknown scope is refused. */
START_TEST(test_suspects_shared)
{
	redisContext *c;
	redisReply *rep;

	ck_assert_int_eq(t_check_code(0, "t-clean"), 200);
	ck_assert_int_eq(t_check_code(0, "t-susp"), 200);
	ck_assert_int_eq(t_suspect_listed(0, "t-susp"), 0);
	c = t_redis();
	ck_assert(c && !c->err);
	rep = redisCommand(c, "CLIENT PAUSE %s WRITE", T_PAUSE_MS);
	ck_assert_msg(rep && rep->type == REDIS_REPLY_STATUS, "CLIENT PAUSE failed");
	freeReplyObject(rep);
	redisFree(c);
	/* its first attempt times out (the node's Redis timeout is far shorter) */
	struct t_resp r = t_check(0, "t-susp");
	ck_assert_msg(r.code == 200, "check during pause: HTTP %d %s", r.code, r.body);
	t_resp_free(&r);
	ck_assert_int_eq(t_suspect_listed(0, "t-susp"), 1);
	ck_assert_msg(t_wait(t_cond_suspect_on_n2, "t-susp"),
	    "n2 never listed the key n1 marked a suspect");
	ck_assert_int_eq(t_suspect_listed(0, "t-clean"), 0);
	ck_assert_int_eq(t_suspect_listed(1, "t-clean"), 0);
	r = t_http(t_node_port[0], "GET", "/api/counters?scope=some", NULL);
	ck_assert_int_eq(r.code, 400);
	t_resp_free(&r);
}
END_TEST

/* CLIENT ID of n1's subscriber connection, or 0. */
static long long
t_sub_client_id(void)
{
	redisContext *c = t_redis();
	redisReply *r = c && !c->err ? redisCommand(c, "CLIENT LIST") : NULL;
	long long id = 0;
	char *line, *save = NULL;

	if (r && r->type == REDIS_REPLY_STRING) {
		for (line = strtok_r(r->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			if (strstr(line, " name=rlnode-n1-sub "))
				sscanf(line, "id=%lld", &id);
	}
	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return id;
}

static int
t_cond_sub_back(void *arg)
{
	return t_sub_client_id() != 0;
}

START_TEST(test_missed_invalidation)
{
	struct t_cache_want w = {1, "t-ghost", 0};
	long long id = t_sub_client_id();
	redisContext *c;
	redisReply *rep;
	struct t_resp r;

	ck_assert_msg(id != 0, "n1 has no connection named rlnode-n1-sub");
	c = t_redis();
	ck_assert(c && !c->err);
	rep = redisCommand(c, "CLIENT KILL ID %lld", id);
	ck_assert_msg(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1,
	    "CLIENT KILL ID %lld failed", id);
	freeReplyObject(rep);
	redisFree(c);
	/* Published while n1 is unsubscribed (it waits at least 1 s to reconnect). */
	t_put_limit(1, "t-ghost", 0);
	ck_assert_msg(t_wait(t_cond_cached, &w), "n2 never cached limit 0 for t-ghost");
	ck_assert_msg(t_wait(t_cond_sub_back, NULL), "n1 never re-subscribed");

	ck_assert_msg(t_cached_limit(0, "t-ghost") != 0,
	    "n1 should have missed the invalidation and kept a stale limit");
	r = t_check(0, "t-ghost");
	ck_assert_msg(r.code == 200, "stale n1 should still allow: HTTP %d %s", r.code, r.body);
	t_resp_free(&r);
	ck_assert_int_eq(t_check_code(1, "t-ghost"), 429);

	r = t_http(t_node_port[0], "POST", "/api/resync", NULL);
	ck_assert_msg(r.code == 200, "resync: HTTP %d %s", r.code, r.body);
	ck_assert(op_json_int(r.json, "resynced", -1) >= 1);
	t_resp_free(&r);
	ck_assert_int_eq(t_cached_limit(0, "t-ghost"), 0);
	ck_assert_int_eq(t_check_code(0, "t-ghost"), 429);
}
END_TEST

static const char *
t_node_state(const char *id)
{
	static char state[16];
	struct t_resp r = t_http(t_node_port[0], "GET", "/api/nodes", NULL);
	json_object *arr = op_json_arr(r.json, "nodes");
	size_t i;

	state[0] = '\0';
	for (i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (strcmp(op_json_str(e, "id", ""), id) == 0)
			op_strlcpy(state, op_json_str(e, "state", "?"), sizeof(state));
	}
	t_resp_free(&r);
	return state;
}

static int
t_cond_n3_down(void *arg)
{
	return strcmp(t_node_state("n3"), "down") == 0;
}

START_TEST(test_killed_node_down)
{
	ck_assert_str_eq(t_node_state("n3"), "up");
	kill(t_node_pid[2], SIGKILL);
	waitpid(t_node_pid[2], NULL, 0);
	ck_assert_msg(t_wait(t_cond_n3_down, NULL),
	    "n3 killed with SIGKILL is still \"%s\" in /api/nodes after %d ms",
	    t_node_state("n3"), T_WAIT_MS);
	ck_assert_str_eq(t_node_state("n1"), "up");
	ck_assert_str_eq(t_node_state("n2"), "up");
}
END_TEST

static Suite *
t_suite(void)
{
	Suite *s = suite_create("rlnode");
	TCase *tc = tcase_create("integration");

	tcase_add_unchecked_fixture(tc, t_setup, t_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_limit_enforced);
	tcase_add_test(tc, test_limit_zero_blocks);
	tcase_add_test(tc, test_counters_match_and_reset);
	tcase_add_test(tc, test_counters_at_past_no_drift);
	tcase_add_test(tc, test_action_counters);
	tcase_add_test(tc, test_limit_exact_with_slack);
	tcase_add_test(tc, test_metrics_labels);
	tcase_add_test(tc, test_pause_double_counts);
	tcase_add_test(tc, test_suspects_shared);
	tcase_add_test(tc, test_missed_invalidation);
	tcase_add_test(tc, test_killed_node_down);
	suite_add_tcase(s, tc);
	return s;
}

int
main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	t_rlnode_bin = argc > 1 ? argv[1] : getenv("RLNODE_BIN");
	if (t_rlnode_bin == NULL || access(t_rlnode_bin, X_OK) != 0) {
		fprintf(stderr, "usage: %s RLNODE_BIN (or set RLNODE_BIN)\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(t_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
