/* bench_hub: frames through the real supervisor, side by side with the same
 * frames over a bare nng PAIR1 ipc pair.
 *
 * operatord runs with OPERATORD_HUB_BENCH set, so its observer is the
 * synthetic one of workers/hub_bench.c. "observe bench:pass:N" makes it send
 * N observed frames (handled in a transaction that writes nothing) and then
 * the reply; "observe bench:commit:N" sends N violation frames of one live
 * ticket (each a ledger transaction that writes an event row). The reply
 * reaching us means all N were handled, so N / (round trip - an empty round
 * trip) is the hub's rate. Latency: sequential round trips with one frame
 * each (an upper bound: it includes the control socket and the reply).
 * Reference: a child process sends the same encoded frames over a bare PAIR1
 * ipc pair (rate), and echoes them one at a time (latency).
 *
 *   OPERATORD_BIN=build/supervisor/operatord build/bench/bench_hub
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clients/client.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/bus.h"
#include "protocol/ctl.h"

#define HB_BURST 20000          /* frames per rate measurement (pass-through, bare) */
#define HB_COMMIT_BURST 2000    /* ... of committing frames (each one an fsync) */
#define HB_ROUNDS 2000          /* sequential round trips for latency */
#define HB_START_WAIT_MS 30000  /* operatord up and its workers ready */
#define HB_GOAL_PASS_RATIO 0.5
#define HB_GOAL_PASS_RATE 100000.0
#define HB_GOAL_COMMIT_RATE 5000.0
#define HB_GOAL_COMMIT_P99_MS 2.0

static char dir[64];
static pid_t od_pid;

static int64_t
hb_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct(int64_t *v, size_t n, double q)
{
	qsort(v, n, sizeof(v[0]), cmp_i64);
	return (double)v[(size_t)(q * (double)(n - 1))] / 1000.0;
}

/* One observe request on the open control connection; 0 when answered ok. */
static int
hb_observe(int fd, const char *subject)
{
	json_object *args = json_object_new_array(), *reply = NULL;

	json_object_array_add(args, json_object_new_string(subject));
	if (client_request(fd, "observe", args, &reply) != 0)
		return -1;
	int ok = op_json_bool(reply, "ok", 0);
	if (!ok)
		fprintf(stderr, "bench_hub: observe %s: %s\n", subject,
		    op_json_str(reply, "error", "failed"));
	json_object_put(reply);
	return ok ? 0 : -1;
}

static int
hb_ready(const char *rt)
{
	char sock[192];
	snprintf(sock, sizeof(sock), "%s/%s", rt, OP_CTL_SOCK);
	if (access(sock, F_OK) != 0)
		return 0; /* not listening yet: client_connect would say so on stderr */
	int fd = client_connect(rt, OP_CTL_SOCK);
	json_object *reply = NULL;
	int ready = 0;

	if (fd < 0)
		return 0;
	if (client_request(fd, "status", NULL, &reply) == 0) {
		json_object *ws = op_json_arr(op_json_obj(reply, "result") ? op_json_obj(reply, "result")
									    : reply, "workers");
		size_t n = 0;
		for (size_t i = 0; ws && i < json_object_array_length(ws); i++)
			n += strcmp(op_json_str(json_object_array_get_idx(ws, i), "state", ""), "ready") == 0;
		ready = ws && n == json_object_array_length(ws) && n > 0;
	}
	json_object_put(reply);
	close(fd);
	return ready;
}

static int
hb_start(const char *bin, char *rt, size_t rtlen)
{
	char conf[256], state[128], text[512];
	FILE *f;

	snprintf(rt, rtlen, "%s/run", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	mkdir(rt, 0700);
	mkdir(state, 0700);
	snprintf(conf, sizeof(conf), "%s/operatord.conf", dir);
	snprintf(text, sizeof(text),
	    "[operatord]\nruntime_dir = %s\nstate_dir = %s\nmode = observe\n"
	    "[subject.tikv]\npd = http://127.0.0.1:9\n", rt, state);
	if ((f = fopen(conf, "w")) == NULL)
		return -1;
	fputs(text, f);
	fclose(f);
	od_pid = fork();
	if (od_pid == 0) {
		char log[128];
		snprintf(log, sizeof(log), "%s/operatord.log", dir);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		setenv("OPERATORD_HUB_BENCH", "1", 1);
		if (freopen(log, "w", stderr) == NULL)
			_exit(127);
		execl(bin, bin, "--config", conf, (char *)NULL);
		_exit(127);
	}
	int64_t end = op_mono_ms() + HB_START_WAIT_MS;
	while (op_mono_ms() < end) {
		if (hb_ready(rt))
			return 0;
		op_sleep_ms(100);
	}
	fprintf(stderr, "bench_hub: operatord never became ready (see %s)\n", dir);
	return -1;
}

/* The frames the hub carries, encoded as on the wire. */
static void
hb_frame(struct op_msg *m, int commit)
{
	json_object *b = json_object_new_object();

	op_json_set_str(b, "subject", "tikv");
	if (commit) {
		op_json_set_str(b, "invariant", "pd_unreachable");
		op_json_set_str(b, "entity", "pd");
		op_json_set_str(b, "severity", "critical");
		op_json_set_str(b, "message", "hub benchmark");
		json_object_object_add(b, "evidence", json_object_new_object());
	} else {
		json_object_object_add(b, "ok", json_object_new_boolean(1));
		op_json_set_int(b, "nodes", 3);
	}
	op_msg_init(m, commit ? OP_MSG_VIOLATION : OP_MSG_OBSERVED, 0, b);
}

/* The bare pair's other end (a fresh process): a burst, then echoes. */
static int
hb_bare_peer(const char *url)
{
	nng_socket c;
	struct op_msg f, e;
	char err[128];

	if (bus_open(&c, url, 0) != 0)
		return 1;
	hb_frame(&f, 0);
	for (int i = 0; i < HB_BURST; i++)
		if (bus_send(c, &f, 0) != 0)
			return 1;
	for (int i = 0; i < HB_ROUNDS; i++) {
		if (bus_recv(c, &e, 0, err, sizeof(err)) != 1 || bus_send(c, &e, 0) != 0)
			return 1;
		op_msg_clear(&e);
	}
	op_msg_clear(&f);
	bus_close(c);
	return 0;
}

/* The bare pair: the peer sends a burst (rate), then echoes (latency). */
static int
hb_bare(double *rate, double *p50, double *p99)
{
	char url[128], err[128];
	nng_socket s;
	struct op_msg m, r;
	int64_t *lat = calloc(HB_ROUNDS, sizeof(int64_t));

	snprintf(url, sizeof(url), "ipc://%s/bare.ipc", dir);
	if (lat == NULL || bus_open(&s, url, 1) != 0)
		return -1;
	/* nng is not fork-safe: the peer is this program exec'd afresh */
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl("/proc/self/exe", "bench_hub", "--bare-peer", url, (char *)NULL);
		_exit(127);
	}
	int64_t t0 = 0;
	for (int i = 0; i < HB_BURST; i++) {
		if (bus_recv(s, &r, 0, err, sizeof(err)) != 1)
			return -1;
		if (i == 0)
			t0 = hb_us();
		op_msg_clear(&r);
	}
	/* the first frame starts the clock: the child's dial is not timed */
	*rate = (double)(HB_BURST - 1) / ((double)(hb_us() - t0) / 1e6);
	hb_frame(&m, 0);
	for (int i = 0; i < HB_ROUNDS; i++) {
		int64_t a = hb_us();
		if (bus_send(s, &m, 0) != 0 || bus_recv(s, &r, 0, err, sizeof(err)) != 1)
			return -1;
		lat[i] = hb_us() - a;
		op_msg_clear(&r);
	}
	op_msg_clear(&m);
	waitpid(pid, NULL, 0);
	bus_close(s);
	*p50 = pct(lat, HB_ROUNDS, 0.50);
	*p99 = pct(lat, HB_ROUNDS, 0.99);
	free(lat);
	return 0;
}

/* Through the supervisor: rate of a burst, and round-trip latency. */
static int
hb_hub(int fd, int commit, double *rate, double *p50, double *p99)
{
	char subj[48];
	int64_t *lat = calloc(HB_ROUNDS, sizeof(int64_t)), empty = INT64_MAX;
	const char *kind = commit ? "commit" : "pass";

	if (lat == NULL)
		return -1;
	for (int i = 0; i < 20; i++) { /* an empty round trip, the floor */
		int64_t a = hb_us();
		if (hb_observe(fd, "bench:pass:0") != 0)
			return -1;
		if (hb_us() - a < empty)
			empty = hb_us() - a;
	}
	int burst = commit ? HB_COMMIT_BURST : HB_BURST;
	snprintf(subj, sizeof(subj), "bench:%s:%d", kind, burst);
	int64_t a = hb_us();
	if (hb_observe(fd, subj) != 0)
		return -1;
	int64_t t = hb_us() - a - empty;
	*rate = (double)burst / ((double)(t > 0 ? t : 1) / 1e6);
	snprintf(subj, sizeof(subj), "bench:%s:1", kind);
	for (int i = 0; i < HB_ROUNDS; i++) {
		int64_t b = hb_us();
		if (hb_observe(fd, subj) != 0)
			return -1;
		lat[i] = hb_us() - b;
	}
	*p50 = pct(lat, HB_ROUNDS, 0.50);
	*p99 = pct(lat, HB_ROUNDS, 0.99);
	free(lat);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *bin = getenv("OPERATORD_BIN");

	if (argc == 3 && strcmp(argv[1], "--bare-peer") == 0)
		return hb_bare_peer(argv[2]);
	char rt[128];
	double br, b50, b99, pr, p50, p99, cr, c50, c99;
	int rc = 1, fd = -1;

	if (bin == NULL || access(bin, X_OK) != 0) {
		fprintf(stderr, "bench_hub: set OPERATORD_BIN to the operatord binary\n");
		return 1;
	}
	snprintf(dir, sizeof(dir), "/tmp/bench_hub.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (hb_bare(&br, &b50, &b99) != 0) {
		fprintf(stderr, "bench_hub: the bare nng pair failed\n");
		goto out;
	}
	if (hb_start(bin, rt, sizeof(rt)) != 0 || (fd = client_connect(rt, OP_CTL_SOCK)) < 0)
		goto out;
	if (hb_hub(fd, 0, &pr, &p50, &p99) != 0 || hb_hub(fd, 1, &cr, &c50, &c99) != 0) {
		fprintf(stderr, "bench_hub: a request through the supervisor failed (see %s)\n", dir);
		goto out;
	}
	printf("BENCH|hub pass-through frames (no ledger writes)|%.0f msgs/s, round trip p50 %.2f "
	    "p99 %.2f ms|bare nng PAIR1 ipc pair|%.0f msgs/s, round trip p50 %.2f p99 %.2f ms|%.2f|"
	    ">= %.1f and >= %.0fk msgs/s\n", pr, p50, p99, br, b50, b99, pr / br, HB_GOAL_PASS_RATIO,
	    HB_GOAL_PASS_RATE / 1000);
	printf("BENCH|hub frames committing a ledger transaction|%.0f msgs/s, round trip p50 %.2f "
	    "p99 %.2f ms|bare nng PAIR1 ipc pair|%.0f msgs/s|%.2f|>= %.0fk msgs/s, p99 <= %.0f ms\n",
	    cr, c50, c99, br, cr / br, HB_GOAL_COMMIT_RATE / 1000, HB_GOAL_COMMIT_P99_MS);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (od_pid > 0) {
		kill(od_pid, SIGTERM);
		waitpid(od_pid, NULL, 0);
	}
	if (rc == 0) {
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_hub: could not remove %s\n", dir);
	}
	return rc;
}
