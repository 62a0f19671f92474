/* bench_tikv: observe+check time of the TiKV subject against a real pdsim at
 * 1k, 10k, 100k and 1M regions, side by side with the physical limit of the
 * same work: libcurl transferring the same GET /regions body to nowhere,
 * alternated run by run. A benchmark, not a test: it prints figures (and one
 * "BENCH|" row per size for scripts/bench.sh) and fails only when it cannot
 * run at all.
 *
 *   PDSIM_BIN=build/subjects/tikv/pdsim/pdsim build/bench/bench_tikv [regions...]
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "subjects/subject.h"

#define BENCH_STORES 3
#define BENCH_START_WAIT_MS 60000   /* pdsim listening and every store live ... */
#define BENCH_WAIT_PER_REGION_US 300 /* ... plus this per region (1M: 5 more minutes) */
#define BENCH_PD_TIMEOUT "120s"     /* /regions at 1M is hundreds of MB */
#define BENCH_RUNS_SMALL 20         /* observe+check rounds up to 10k regions */
#define BENCH_RUNS_LARGE 5          /* ... and from 100k */
#define BENCH_GOAL_RATIO 1.5        /* observe+check / curl transfer, from 100k regions */

static pid_t pdsim_pid;
static char dir[64];

static void
bench_stop(void)
{
	if (pdsim_pid > 0) {
		kill(pdsim_pid, SIGTERM);
		waitpid(pdsim_pid, NULL, 0);
		pdsim_pid = 0;
	}
}

static int
bench_start(const char *bin, int regions, int *port)
{
	char pf[128], nreg[24], nst[24], log[128];
	FILE *f;

	snprintf(pf, sizeof(pf), "%s/port.%d", dir, regions);
	snprintf(log, sizeof(log), "%s/pdsim.%d.log", dir, regions);
	snprintf(nreg, sizeof(nreg), "%d", regions);
	snprintf(nst, sizeof(nst), "%d", BENCH_STORES);
	unlink(pf);
	pdsim_pid = fork();
	if (pdsim_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (freopen(log, "w", stderr) == NULL)
			_exit(127);
		execl(bin, bin, "--port", "0", "--port-file", pf, "--stores", nst, "--regions", nreg,
		    (char *)NULL);
		_exit(127);
	}
	int64_t end = op_mono_ms() + BENCH_START_WAIT_MS;
	while (op_mono_ms() < end) {
		if ((f = fopen(pf, "r")) != NULL) {
			int ok = fscanf(f, "%d", port) == 1;
			fclose(f);
			if (ok && *port > 0)
				return 0;
		}
		op_sleep_ms(50);
	}
	fprintf(stderr, "bench_tikv: pdsim did not start (see %s)\n", log);
	return -1;
}

static int
bench_discard(const char *p, size_t n, void *arg)
{
	(void)p;
	*(size_t *)arg += n;
	return 0;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int
bench_one(const char *bin, int regions)
{
	char conf[512], err[512];
	int port;
	struct op_subjects all;
	struct op_config *cfg;

	if (bench_start(bin, regions, &port) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "[subject.tikv]\npd = http://127.0.0.1:%d\ntimeout = %s\n",
	    port, BENCH_PD_TIMEOUT);
	if ((cfg = op_config_parse(conf, err, sizeof(err))) == NULL ||
	    op_subjects_create(&all, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_tikv: %s\n", err);
		op_config_free(cfg);
		return -1;
	}
	struct op_subject *s = op_subjects_find(&all, "tikv");
	/* warm up: every store heartbeating and every region led */
	int64_t end = op_mono_ms() + BENCH_START_WAIT_MS + (int64_t)regions * BENCH_WAIT_PER_REGION_US / 1000;
	for (;;) {
		json_object *obs = NULL;
		int ready = 0;
		if (s->ops->observe(s, &obs, err, sizeof(err)) == 0) {
			json_object *a = op_json_arr(obs, "stores");
			size_t live = 0;
			for (size_t i = 0; a && i < json_object_array_length(a); i++)
				live += op_json_bool(json_object_array_get_idx(a, i), "live", 0);
			ready = live == BENCH_STORES &&
			    op_json_int(op_json_obj(obs, "regions"), "count", 0) == regions;
		}
		json_object_put(obs);
		if (ready)
			break;
		if (op_mono_ms() > end) {
			fprintf(stderr, "bench_tikv: cluster of %d regions never ready\n", regions);
			op_subjects_destroy(&all);
			op_config_free(cfg);
			return -1;
		}
		op_sleep_ms(200);
	}
	int runs = regions >= 100000 ? BENCH_RUNS_LARGE : BENCH_RUNS_SMALL;
	int64_t t_obs[BENCH_RUNS_SMALL], t_chk[BENCH_RUNS_SMALL], t_curl[BENCH_RUNS_SMALL];
	double body_mb = 0;
	char curl_url[128];
	snprintf(curl_url, sizeof(curl_url), "http://127.0.0.1:%d/pd/api/v1/regions", port);
	size_t obs_bytes = 0, nread = 0;
	for (int i = 0; i < runs; i++) {
		json_object *obs = NULL;
		struct op_readings rd = {0};
		/* the reference: libcurl moving the same body to nowhere */
		struct op_http_req cr = {.url = curl_url, .timeout_ms = 120000};
		size_t got = 0;
		cr.sink = bench_discard;
		cr.sink_arg = &got;
		int64_t tc = op_mono_ms();
		if (op_http_do(&cr) != 0 || cr.status != 200) {
			fprintf(stderr, "bench_tikv: transfer of /regions failed: %s\n", cr.err);
			op_http_req_reset(&cr);
			break;
		}
		t_curl[i] = op_mono_ms() - tc;
		op_http_req_reset(&cr);
		body_mb = (double)got / 1e6;
		int64_t t0 = op_mono_ms();
		if (s->ops->observe(s, &obs, err, sizeof(err)) != 0) {
			fprintf(stderr, "bench_tikv: observe: %s\n", err);
			break;
		}
		int64_t t1 = op_mono_ms();
		s->ops->check(s, obs, &rd);
		t_chk[i] = op_mono_ms() - t1;
		t_obs[i] = t1 - t0;
		obs_bytes = strlen(json_object_to_json_string_ext(obs, JSON_C_TO_STRING_PLAIN));
		nread = rd.n;
		op_readings_clear(&rd);
		json_object_put(obs);
	}
	int64_t tot[BENCH_RUNS_SMALL];
	for (int i = 0; i < runs; i++)
		tot[i] = t_obs[i] + t_chk[i];
	qsort(tot, (size_t)runs, sizeof(tot[0]), cmp_i64);
	qsort(t_chk, (size_t)runs, sizeof(t_chk[0]), cmp_i64);
	qsort(t_curl, (size_t)runs, sizeof(t_curl[0]), cmp_i64);
	int64_t ref = t_curl[runs / 2] > 0 ? t_curl[runs / 2] : 1;
	char goal[32];
	if (regions >= 100000)
		snprintf(goal, sizeof(goal), "<= %.1f", BENCH_GOAL_RATIO);
	else
		snprintf(goal, sizeof(goal), "(linear)");
	printf("BENCH|observe+check %d regions|%" PRId64 " ms|transfer of /regions (%.1f MB)|%" PRId64
	    " ms|%.2f|%s\n", regions, tot[runs / 2], body_mb, ref, (double)tot[runs / 2] / (double)ref,
	    goal);
	printf("%7d regions, %d stores: observe+check median %5" PRId64 " ms (min %" PRId64
	    ", max %" PRId64 "; check alone median %" PRId64 " ms) over %d runs; observation "
	    "%zu bytes, %zu readings\n", regions, BENCH_STORES, tot[runs / 2], tot[0],
	    tot[runs - 1], t_chk[runs / 2], runs, obs_bytes, nread);
	fflush(stdout);
	op_subjects_destroy(&all);
	op_config_free(cfg);
	bench_stop();
	return 0;
}

int
main(int argc, char **argv)
{
	const char *bin = getenv("PDSIM_BIN");
	int sizes[8] = {1000, 10000, 100000}, n = 3, rc = 0;

	if (bin == NULL || access(bin, X_OK) != 0) {
		fprintf(stderr, "bench_tikv: set PDSIM_BIN to the pdsim binary\n");
		return 1;
	}
	if (argc > 1) {
		n = 0;
		for (int i = 1; i < argc && n < 8; i++)
			sizes[n++] = atoi(argv[i]);
	}
	snprintf(dir, sizeof(dir), "/tmp/bench_tikv.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	op_http_global_init();
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < n; i++)
		if (bench_one(bin, sizes[i]) != 0)
			rc = 1;
	bench_stop();
	if (rc == 0) {
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_tikv: could not remove %s\n", dir);
	}
	return rc;
}
