/* harness: see harness.h. */
#include "tests/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/jsonutil.h"
#include "common/util.h"

#define H_RUN_TIMEOUT_MS 30000     /* one opsend/optail call */
#define H_IO_TIMEOUT_S 10          /* one HTTP exchange */
#define H_STOP_WAIT_MS 20000       /* operatord SIGTERM to SIGKILL */
#define H_START_WAIT_MS 60000      /* processes becoming ready */

struct h_env *H;
json_object *h_evs;

static const char *h_bins[5][2] = {
	{"operatord", "OPERATORD_BIN"}, {"opsend", "OPSEND_BIN"}, {"optail", "OPTAIL_BIN"},
	{"rlnode", "RLNODE_BIN"}, {"rlload", "RLLOAD_BIN"},
};

void
h_init(void)
{
	H = mmap(NULL, sizeof(*H), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (H == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(H, 0, sizeof(*H));
	/* Orphans of a forked test (a restarted node, say) come back to us. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < 5; i++)
		if (getenv(h_bins[i][1]) == NULL || access(getenv(h_bins[i][1]), X_OK) != 0) {
			fprintf(stderr, "check_loop: set %s to the %s binary\n", h_bins[i][1],
			    h_bins[i][0]);
			exit(1);
		}
}

const char *
h_bin(const char *name)
{
	for (size_t i = 0; i < 5; i++)
		if (strcmp(h_bins[i][0], name) == 0)
			return getenv(h_bins[i][1]);
	return name;
}

int
h_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		perror("h_free_port");
		exit(1);
	}
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

pid_t
h_spawn(char *const argv[], const char *logname)
{
	char path[512];
	pid_t pid;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", H->dir, logname);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		/* Own process group: a kill of the test does not reach it by accident. */
		setpgid(0, 0);
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
h_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = realloc(*buf, *cap);
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

int
h_run(char *const argv[], int timeout_ms, char **out, char **err)
{
	int po[2], pe[2], st = 0;
	char *ob = NULL, *eb = NULL, tmp[8192];
	size_t ol = 0, oc = 0, el = 0, ec = 0;
	int64_t end = op_mono_ms() + timeout_ms;
	pid_t pid;
	int timed_out = 0;

	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		dup2(po[1], STDOUT_FILENO);
		dup2(pe[1], STDERR_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	h_append(&ob, &ol, &oc, "", 0);
	h_append(&eb, &el, &ec, "", 0);
	struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
	int open_fds = 2;
	while (open_fds > 0) {
		int64_t left = end - op_mono_ms();
		if (left <= 0) {
			timed_out = 1;
			kill(pid, SIGKILL);
			break;
		}
		if (poll(pf, 2, (int)left) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(pf[i].fd, tmp, sizeof(tmp));
			if (n <= 0) {
				close(pf[i].fd);
				pf[i].fd = -1;
				open_fds--;
				continue;
			}
			if (i == 0)
				h_append(&ob, &ol, &oc, tmp, (size_t)n);
			else
				h_append(&eb, &el, &ec, tmp, (size_t)n);
		}
	}
	for (int i = 0; i < 2; i++)
		if (pf[i].fd >= 0)
			close(pf[i].fd);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (out)
		*out = ob;
	else
		free(ob);
	if (err)
		*err = eb;
	else
		free(eb);
	if (timed_out || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* ---- redis and nodes ---- */

static redisContext *
h_redis_conn(void)
{
	struct timeval tv = {2, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", H->redis_port, tv);

	if (c && !c->err)
		redisSetTimeout(c, tv);
	return c;
}

static void
h_reply_text(redisReply *r, char **out, size_t *len, size_t *cap)
{
	char num[32];

	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_ERROR:
		h_append(out, len, cap, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		snprintf(num, sizeof(num), "%lld", r->integer);
		h_append(out, len, cap, num, strlen(num));
		break;
	case REDIS_REPLY_ARRAY:
		for (size_t i = 0; i < r->elements; i++) {
			h_reply_text(r->element[i], out, len, cap);
			h_append(out, len, cap, "\n", 1);
		}
		break;
	default:
		break;
	}
}

char *
h_redis(const char *fmt, ...)
{
	redisContext *c = h_redis_conn();
	redisReply *r;
	va_list ap;
	char *out = NULL;
	size_t len = 0, cap = 0;

	if (c == NULL || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r != NULL) {
		h_append(&out, &len, &cap, "", 0);
		if (r->type == REDIS_REPLY_ERROR) {
			free(out);
			out = NULL;
		} else {
			h_reply_text(r, &out, &len, &cap);
		}
		freeReplyObject(r);
	}
	redisFree(c);
	return out;
}

int
h_redis_ok(void)
{
	char *r = h_redis("PING");
	int ok = r && strcmp(r, "PONG") == 0;

	free(r);
	return ok;
}

void
h_start_redis(void)
{
	char port[16];
	char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
	    "--appendonly", "no", "--dir", H->dir, NULL};

	if (getenv("REDIS_SERVER"))
		argv[0] = getenv("REDIS_SERVER");
	snprintf(port, sizeof(port), "%d", H->redis_port);
	H->redis_pid = h_spawn(argv, "redis.log");
}

void
h_start_node(int i)
{
	char port[16], redis[64], id[8], win[16];
	char *argv[] = {(char *)h_bin("rlnode"), "--port", port, "--redis", redis, "--node-id", id,
	    "--window", win, "--heartbeat", "200", "--node-ttl", "1000", "--limit-refresh", "10m",
	    NULL};
	char log[32];

	snprintf(port, sizeof(port), "%d", H->node_port[i]);
	snprintf(redis, sizeof(redis), "127.0.0.1:%d", H->redis_port);
	snprintf(id, sizeof(id), "n%d", i + 1);
	snprintf(win, sizeof(win), "%dms", H_NODE_WINDOW_MS);
	snprintf(log, sizeof(log), "n%d.log", i + 1);
	H->node_pid[i] = h_spawn(argv, log);
}

int
h_node_healthy(int i)
{
	struct h_resp r = h_http(H->node_port[i], "GET", "/health", NULL);
	int ok = r.code == 200 && strcmp(op_json_str(r.json, "redis", ""), "up") == 0 &&
	    op_json_bool(r.json, "limits_loaded", 0);

	h_resp_free(&r);
	return ok;
}

void
h_kill_wait(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	/* Our child, or an orphan that came back to us as the subreaper. */
	int64_t end = op_mono_ms() + 5000;
	while (op_mono_ms() < end) {
		pid_t w = waitpid(*pid, NULL, WNOHANG);
		if (w == *pid || (w < 0 && errno == ECHILD && kill(*pid, 0) != 0))
			break;
		op_sleep_ms(20);
	}
	*pid = 0;
}

/* ---- operatord ---- */

/* The configuration of one run: mode, lines added to [operatord] and whole
 * sections appended after the generated ones (both may be NULL). */
static int
h_write_conf_with(const char *mode, const char *operatord_extra, const char *sections)
{
	FILE *f = fopen(H->conf, "w");

	if (f == NULL)
		return -1;
	/* An extra verify_timeout replaces the default one (a key may appear once). */
	int own_timeout = operatord_extra && strstr(operatord_extra, "verify_timeout");
	fprintf(f, "[operatord]\nruntime_dir = %s\nstate_dir = %s\nmode = %s\n"
	    "verify_delay = %dms\nverify_settle = %dms\n%spoll_interval = 500ms\n%s\n", H->run,
	    H->state, mode, H_VERIFY_DELAY_MS, H_VERIFY_SETTLE_MS,
	    own_timeout ? "" : "verify_timeout = 40s\n", operatord_extra ? operatord_extra : "");
	fprintf(f, "[subject.ratelimiter]\nredis = 127.0.0.1:%d\nnodes = ", H->redis_port);
	for (int i = 0; i < H_NNODES; i++)
		fprintf(f, "%shttp://127.0.0.1:%d", i ? "," : "", H->node_port[i]);
	fprintf(f, "\ndrift_tolerance = %d\n\n[chaos]\nenabled = true\n\n%s\n", H_DRIFT_TOL,
	    sections ? sections : "");
	return fclose(f);
}

static int
h_write_conf(void)
{
	return h_write_conf_with("execute", NULL, NULL);
}

int
h_all_ready(void)
{
	json_object *s = h_status();
	json_object *ws = op_json_arr(s, "workers");
	int ok = ws != NULL && json_object_array_length(ws) == 5;

	for (size_t i = 0; ok && i < json_object_array_length(ws); i++)
		ok = strcmp(op_json_str(json_object_array_get_idx(ws, i), "state", ""), "ready") == 0;
	json_object_put(s);
	return ok;
}

void
h_env_start(void)
{
	int ok;

	memset(H, 0, sizeof(*H));
	snprintf(H->dir, sizeof(H->dir), "/tmp/check_loop.XXXXXX");
	if (mkdtemp(H->dir) == NULL) {
		perror("mkdtemp");
		H->setup_failed = 1;
		return;
	}
	snprintf(H->run, sizeof(H->run), "%s/run", H->dir);
	snprintf(H->state, sizeof(H->state), "%s/state", H->dir);
	snprintf(H->conf, sizeof(H->conf), "%s/op.conf", H->dir);
	H->redis_port = h_free_port();
	h_start_redis();
	H_WAIT(ok, H_START_WAIT_MS, h_redis_ok());
	if (!ok) {
		fprintf(stderr, "harness: redis-server did not answer PING\n");
		H->setup_failed = 1;
		return;
	}
	for (int i = 0; i < H_NNODES; i++) {
		H->node_port[i] = h_free_port();
		h_start_node(i);
	}
	for (int i = 0; i < H_NNODES; i++) {
		H_WAIT(ok, H_START_WAIT_MS, h_node_healthy(i));
		if (!ok) {
			fprintf(stderr, "harness: rlnode n%d is not healthy\n", i + 1);
			H->setup_failed = 1;
			return;
		}
	}
	if (h_write_conf() != 0) {
		H->setup_failed = 1;
		return;
	}
	char *argv[] = {(char *)h_bin("operatord"), "--config", H->conf, NULL};
	H->od_pid = h_spawn(argv, "operatord.log");
	H_WAIT(ok, H_START_WAIT_MS, h_all_ready());
	if (!ok) {
		fprintf(stderr, "harness: operatord workers not all ready\n");
		h_dump("operatord did not become ready");
		H->setup_failed = 1;
	}
}

void
h_od_stop(void)
{
	if (H->od_pid <= 0)
		return;
	kill(H->od_pid, SIGCONT);
	kill(H->od_pid, SIGTERM);
	int64_t end = op_mono_ms() + H_STOP_WAIT_MS;
	while (op_mono_ms() < end && waitpid(H->od_pid, NULL, WNOHANG) == 0)
		op_sleep_ms(50);
	h_kill_wait(&H->od_pid, SIGKILL);
}

int
h_od_spawn(void)
{
	char *argv[] = {(char *)h_bin("operatord"), "--config", H->conf, NULL};
	int ok;

	H->od_pid = h_spawn(argv, "operatord.log");
	H_WAIT(ok, H_START_WAIT_MS, h_all_ready());
	return ok ? 0 : -1;
}

int
h_od_fresh(const char *mode, const char *operatord_extra, const char *sections)
{
	char path[300];
	static const char *const files[] = {"ledger.db", "ledger.db-wal", "ledger.db-shm"};

	h_od_stop();
	for (int i = 0; i < H_NNODES; i++)
		if (H->node_pid[i] > 0)
			kill(H->node_pid[i], SIGCONT);
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", H->state, files[i]);
		unlink(path);
	}
	if (h_write_conf_with(mode, operatord_extra, sections) != 0)
		return -1;
	return h_od_spawn();
}

static int
h_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
h_env_stop(void)
{
	if (H->cur_test[0]) {
		/* A test ended without h_test_end: killed by its timeout, or crashed. */
		char why[128];
		snprintf(why, sizeof(why), "test %s did not finish", H->cur_test);
		h_dump(why);
	}
	for (int i = 0; i < H_MAX_LOADS; i++)
		h_kill_wait(&H->load_pid[i], SIGKILL);
	if (H->od_pid > 0) {
		kill(H->od_pid, SIGCONT);
		kill(H->od_pid, SIGTERM);
		int64_t end = op_mono_ms() + H_STOP_WAIT_MS;
		while (op_mono_ms() < end && waitpid(H->od_pid, NULL, WNOHANG) == 0)
			op_sleep_ms(50);
		h_kill_wait(&H->od_pid, SIGKILL);
	}
	for (int i = 0; i < H_NNODES; i++) {
		if (H->node_pid[i] > 0)
			kill(H->node_pid[i], SIGCONT);
		h_kill_wait(&H->node_pid[i], SIGKILL);
	}
	if (H->redis_pid > 0)
		kill(H->redis_pid, SIGCONT);
	h_kill_wait(&H->redis_pid, SIGKILL);
	/* Anything else that came back to us (a respawned node, a watchdog). */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	if (H->dir[0] && getenv("CHECK_LOOP_KEEP") == NULL)
		nftw(H->dir, h_rm, 16, FTW_DEPTH | FTW_PHYS);
	else if (H->dir[0])
		fprintf(stderr, "harness: kept %s\n", H->dir);
	json_object_put(h_evs);
	h_evs = NULL;
}

void
h_test_begin(const char *name)
{
	op_strlcpy(H->cur_test, name, sizeof(H->cur_test));
	fprintf(stderr, "=== %s\n", name);
}

void
h_test_end(void)
{
	fprintf(stderr, "=== %s passed\n", H->cur_test);
	H->cur_test[0] = '\0';
}

/* ---- opsend / optail ---- */

int
h_opsend(json_object **res, char **err, ...)
{
	char *argv[32] = {(char *)h_bin("opsend"), "--runtime-dir", H->run, "--json"};
	int n = 4, rc;
	char *out = NULL, perr[128];
	va_list ap;
	const char *a;

	va_start(ap, err);
	while ((a = va_arg(ap, const char *)) != NULL && n < 31)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	rc = h_run(argv, H_RUN_TIMEOUT_MS, &out, err);
	if (res) {
		*res = out && out[0] ? op_json_parse(out, strlen(out), perr, sizeof(perr)) : NULL;
	}
	free(out);
	return rc;
}

json_object *
h_status(void)
{
	json_object *s = NULL;

	if (h_opsend(&s, NULL, "status", NULL) != 0) {
		json_object_put(s);
		return NULL;
	}
	return s;
}

json_object *
h_worker(json_object *status, const char *name)
{
	json_object *ws = op_json_arr(status, "workers");

	for (size_t i = 0; ws && i < json_object_array_length(ws); i++)
		if (strcmp(op_json_str(json_object_array_get_idx(ws, i), "name", ""), name) == 0)
			return json_object_array_get_idx(ws, i);
	return NULL;
}

json_object *
h_ticket(int64_t id)
{
	char ids[32];
	json_object *t = NULL;

	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	if (h_opsend(&t, NULL, "ticket", "show", ids, NULL) != 0) {
		json_object_put(t);
		return NULL;
	}
	return t;
}

static json_object *h_ev_fetch(void);

int
h_ev_refresh(void)
{
	json_object *arr = h_ev_fetch();

	if (arr == NULL)
		return 0;
	json_object_put(h_evs);
	h_evs = arr;
	return 1;
}

static json_object *
h_ev_fetch(void)
{
	char *argv[] = {(char *)h_bin("optail"), "--runtime-dir", H->run, "--json", NULL};
	char *out = NULL, perr[128];
	int rc = h_run(argv, H_RUN_TIMEOUT_MS, &out, NULL);

	if (rc != 0) {
		free(out);
		return NULL;
	}
	json_object *arr = json_object_new_array();
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_object *ev = op_json_parse(line, strlen(line), perr, sizeof(perr));
		if (ev)
			json_object_array_add(arr, ev);
	}
	free(out);
	return arr;
}

int64_t
h_last_seq(void)
{
	size_t n;

	if (!h_ev_refresh() || (n = json_object_array_length(h_evs)) == 0)
		return 0;
	return op_json_int(json_object_array_get_idx(h_evs, n - 1), "seq", 0);
}

int64_t
h_ev_seq(json_object *ev)
{
	return op_json_int(ev, "seq", 0);
}

json_object *
h_ev_data(json_object *ev)
{
	return op_json_obj(ev, "data");
}

int64_t
h_parse_rfc3339(const char *s)
{
	struct tm tm;
	int ms = 0;
	char frac[16] = "";

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return -1;
	const char *dot = strchr(s, '.');
	if (dot && sscanf(dot + 1, "%15[0-9]", frac) == 1) {
		frac[3] = frac[3] ? '\0' : frac[3];
		ms = atoi(frac);
		for (size_t l = strlen(frac); l < 3; l++)
			ms *= 10;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

int64_t
h_ev_ts_ms(json_object *ev)
{
	return h_parse_rfc3339(op_json_str(ev, "ts", NULL));
}

json_object *
h_ev_find(const char *type, int64_t ticket, int64_t after)
{
	for (size_t i = 0; h_evs && i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (h_ev_seq(e) <= after || strcmp(op_json_str(e, "type", ""), type) != 0)
			continue;
		if (ticket > 0 && op_json_int(e, "ticket", 0) != ticket)
			continue;
		return e;
	}
	return NULL;
}

int64_t
h_ev_ticket(const char *invariant, const char *entity, int64_t after)
{
	for (size_t i = 0; h_evs && i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		const char *t = op_json_str(e, "type", "");
		if (h_ev_seq(e) <= after ||
		    (strcmp(t, "ticket_opened") != 0 && strcmp(t, "ticket_reopened") != 0))
			continue;
		if (strcmp(op_json_str(e, "invariant", ""), invariant) == 0 &&
		    (entity == NULL || strcmp(op_json_str(e, "entity", ""), entity) == 0))
			return op_json_int(e, "ticket", 0);
	}
	return 0;
}

json_object *
h_ev_terminal(int64_t ticket, int64_t after)
{
	static const char *const term[] = {"ticket_resolved", "ticket_escalated", "ticket_cleared",
		"ticket_rejected"};

	for (size_t i = 0; h_evs && i < json_object_array_length(h_evs); i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (h_ev_seq(e) <= after || op_json_int(e, "ticket", 0) != ticket)
			continue;
		for (size_t k = 0; k < sizeof(term) / sizeof(term[0]); k++)
			if (strcmp(op_json_str(e, "type", ""), term[k]) == 0)
				return e;
	}
	return NULL;
}

/* ---- HTTP ---- */

void
h_resp_free(struct h_resp *r)
{
	json_object_put(r->json);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

struct h_resp
h_http(int port, const char *method, const char *path, const char *body)
{
	struct h_resp r = {0, NULL, NULL};
	struct sockaddr_in a;
	struct timeval tv = {H_IO_TIMEOUT_S, 0};
	char head[1024], *buf = NULL, *p, err[128];
	size_t len = 0, cap = 0, blen = body ? strlen(body) : 0;
	ssize_t got;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
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

/* The sum over the nodes of one counter of GET /health (resets_total,
 * resyncs_total): what the nodes themselves say they did. */
int64_t
h_nodes_sum(const char *field)
{
	int64_t sum = 0;

	for (int i = 0; i < H_NNODES; i++) {
		struct h_resp r = h_http(H->node_port[i], "GET", "/health", NULL);
		sum += op_json_int(r.json, field, 0);
		h_resp_free(&r);
	}
	return sum;
}

int
h_set_limit(int node, const char *key, long long limit)
{
	char path[300], body[64];
	struct h_resp r;
	int ok;

	snprintf(path, sizeof(path), "/api/limits/%s", key);
	snprintf(body, sizeof(body), "{\"limit\":%lld}", limit);
	r = h_http(H->node_port[node], "PUT", path, body);
	ok = r.code >= 200 && r.code < 300;
	h_resp_free(&r);
	return ok;
}

int
h_nodes_cover_window(void)
{
	for (int i = 0; i < H_NNODES; i++) {
		struct h_resp r = h_http(H->node_port[i], "GET", "/health", NULL);
		int64_t up = op_json_int(r.json, "uptime_ms", -1);
		h_resp_free(&r);
		/* the subject's settle (1 s) plus a margin */
		if (up < H_NODE_WINDOW_MS + 1500)
			return 0;
	}
	return 1;
}

/* ---- load ---- */

pid_t
h_load_start(const char *keys, int rps, int node_mask)
{
	char targets[512] = "", rpss[16];
	char *argv[] = {(char *)h_bin("rlload"), "--targets", targets, "--rps", rpss, "--duration",
	    "0", "--keys", (char *)keys, "--quiet", NULL};

	for (int i = 0; i < H_NNODES; i++) {
		if (!(node_mask & (1 << i)))
			continue;
		size_t l = strlen(targets);
		snprintf(targets + l, sizeof(targets) - l, "%shttp://127.0.0.1:%d", l ? "," : "",
		    H->node_port[i]);
	}
	snprintf(rpss, sizeof(rpss), "%d", rps);
	pid_t pid = h_spawn(argv, "rlload.log");
	for (int i = 0; i < H_MAX_LOADS; i++)
		if (H->load_pid[i] == 0) {
			H->load_pid[i] = pid;
			break;
		}
	return pid;
}

void
h_load_stop(pid_t pid)
{
	for (int i = 0; i < H_MAX_LOADS; i++)
		if (H->load_pid[i] == pid) {
			h_kill_wait(&H->load_pid[i], SIGTERM);
			return;
		}
}

/* ---- diagnostics ---- */

static void
h_tail(const char *name, int lines)
{
	char path[512], *buf;
	FILE *f;
	long sz;

	snprintf(path, sizeof(path), "%s/%s", H->dir, name);
	if ((f = fopen(path, "r")) == NULL)
		return;
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	long from = sz > 200000 ? sz - 200000 : 0;
	fseek(f, from, SEEK_SET);
	buf = calloc(1, (size_t)(sz - from) + 1);
	size_t n = fread(buf, 1, (size_t)(sz - from), f);
	fclose(f);
	buf[n] = '\0';
	char *p = buf + n;
	int seen = 0;
	while (p > buf && seen <= lines)
		if (*--p == '\n')
			seen++;
	fprintf(stderr, "---- tail of %s ----\n%s\n", name, p == buf ? p : p + 1);
	free(buf);
}

void
h_dump(const char *why)
{
	fprintf(stderr, "\n######## FAILURE in %s: %s\n", H->cur_test[0] ? H->cur_test : "?", why);
	H->cur_test[0] = '\0';
	h_tail("operatord.log", 80);
	for (int i = 0; i < H_NNODES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%d.log", i + 1);
		h_tail(name, 8);
	}
	/* A fresh copy: the cached h_evs may still be referenced by the caller. */
	json_object *evs = h_ev_fetch();
	if (evs == NULL) {
		fprintf(stderr, "---- events: optail failed ----\n");
		return;
	}
	size_t n = json_object_array_length(evs);
	fprintf(stderr, "---- events (last %d of %zu) ----\n", n > 150 ? 150 : (int)n, n);
	for (size_t i = n > 150 ? n - 150 : 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(evs, i);
		const char *d = json_object_to_json_string_ext(h_ev_data(e), JSON_C_TO_STRING_PLAIN);
		fprintf(stderr, "#%lld %s %-22s t=%lld %s/%s %.300s\n", (long long)h_ev_seq(e),
		    op_json_str(e, "ts", ""), op_json_str(e, "type", ""),
		    (long long)op_json_int(e, "ticket", 0), op_json_str(e, "invariant", "-"),
		    op_json_str(e, "entity", "-"), d ? d : "");
	}
	json_object_put(evs);
}
