/*
 * rlload: paced load generator for rlnode. POSTs /check round-robin across
 * targets and keys at a fixed rate from a timer (never a busy loop), keeps at
 * most --concurrency requests in flight, prints a stats line per second on
 * stderr and one JSON summary line on stdout.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "subjects/ratelimiter/rl_wire.h"
#include "common/log.h"
#include "common/util.h"

#define LD_TICK_MS 5              /* pacing timer period */
#define LD_STATS_MS 1000          /* stats line period */
#define LD_REQ_TIMEOUT_S 5        /* per-request timeout */
#define LD_DRAIN_MS 6000          /* wait for in-flight requests at the end */
#define LD_HIST_STEP_US 10        /* latency histogram resolution */
#define LD_HIST_N 1000000         /* 10 s of 10 us buckets; beyond is the last bucket */
#define LD_TARGETS_MAX 64
#define LD_KEYS_MAX 1024
#define LD_RPS_MAX 1000000

struct ld_slot;

struct ld_target {
	char host[256];
	int port;
	char path[512];        /* base path + "/check" */
	char hosthdr[300];
	struct ld_slot *idle;  /* free connections to this target */
};

struct ld_slot {
	struct ld_load *ld;
	struct ld_target *t;
	struct evhttp_connection *conn;
	struct ld_slot *next;
	int64_t t0_us;
};

struct ld_counts {
	uint64_t sent, allowed, blocked, errors;
};

struct ld_load {
	struct event_base *base;
	struct ld_target targets[LD_TARGETS_MAX];
	int ntargets;
	char *keys[LD_KEYS_MAX];
	int nkeys;
	double rps;
	int64_t duration_ms;
	int concurrency;
	int quiet;
	struct ld_slot *slots;
	int inflight;
	unsigned trr, krr;     /* round-robin cursors */
	int64_t start_ms, last_stats_ms;
	uint64_t due_sent;     /* requests the schedule has asked for */
	struct ld_counts tot, last;
	uint32_t *hist;
	int stopping;
	int64_t stop_ms;
	struct event *tick_ev, *term_ev, *int_ev;
};

static int64_t
ld_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double
ld_quantile(const struct ld_load *ld, double q)
{
	uint64_t total = 0, want, acc = 0;
	size_t i;

	for (i = 0; i < LD_HIST_N; i++)
		total += ld->hist[i];
	if (total == 0)
		return 0;
	want = (uint64_t)ceil(q * (double)total);
	for (i = 0; i < LD_HIST_N; i++) {
		acc += ld->hist[i];
		if (acc >= want)
			return (double)((i + 1) * LD_HIST_STEP_US) / 1000.0;
	}
	return (double)(LD_HIST_N * LD_HIST_STEP_US) / 1000.0;
}

static void
ld_done(struct evhttp_request *req, void *arg)
{
	struct ld_slot *s = arg;
	struct ld_load *ld = s->ld;
	int64_t us = ld_mono_us() - s->t0_us;
	size_t b = (size_t)(us / LD_HIST_STEP_US);
	int code = req ? evhttp_request_get_response_code(req) : 0;

	if (code == 200)
		ld->tot.allowed++;
	else if (code == 429)
		ld->tot.blocked++;
	else
		ld->tot.errors++;
	ld->hist[b < LD_HIST_N ? b : LD_HIST_N - 1]++;
	ld->inflight--;
	s->next = s->t->idle;
	s->t->idle = s;
}

static struct ld_slot *
ld_take_slot(struct ld_load *ld)
{
	int k;

	for (k = 0; k < ld->ntargets; k++) {
		struct ld_target *t = &ld->targets[(ld->trr + (unsigned)k) % (unsigned)ld->ntargets];
		if (t->idle != NULL) {
			struct ld_slot *s = t->idle;
			t->idle = s->next;
			ld->trr = (ld->trr + (unsigned)k + 1) % (unsigned)ld->ntargets;
			return s;
		}
	}
	return NULL;
}

static int
ld_send_one(struct ld_load *ld)
{
	struct ld_slot *s = ld_take_slot(ld);
	struct evhttp_request *req;
	struct evkeyvalq *h;
	const char *key;

	if (s == NULL)
		return -1;
	key = ld->keys[ld->krr++ % (unsigned)ld->nkeys];
	req = evhttp_request_new(ld_done, s);
	if (req == NULL)
		fatal("out of memory");
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", s->t->hosthdr);
	evhttp_add_header(h, "Content-Type", "application/json");
	evbuffer_add_printf(evhttp_request_get_output_buffer(req), "{\"key\":\"%s\"}", key);
	s->t0_us = ld_mono_us();
	ld->inflight++;
	ld->tot.sent++;
	if (evhttp_make_request(s->conn, req, EVHTTP_REQ_POST, s->t->path) != 0) {
		/* libevent has freed req and will not call back */
		ld->inflight--;
		ld->tot.errors++;
		s->next = s->t->idle;
		s->t->idle = s;
	}
	return 0;
}

static json_object *
ld_ms_json(double ms)
{
	char s[32];

	snprintf(s, sizeof(s), "%.3f", ms);
	return json_object_new_double_s(ms, s);
}

static void
ld_stats(struct ld_load *ld, int64_t now)
{
	double secs = (double)(now - ld->last_stats_ms) / 1000.0;

	if (!ld->quiet && secs > 0)
		fprintf(stderr,
		    "rlload: t=%.0fs rate=%.0f/s sent=%llu allowed=%llu blocked=%llu errors=%llu "
		    "inflight=%d\n",
		    (double)(now - ld->start_ms) / 1000.0,
		    (double)(ld->tot.sent - ld->last.sent) / secs,
		    (unsigned long long)ld->tot.sent, (unsigned long long)ld->tot.allowed,
		    (unsigned long long)ld->tot.blocked, (unsigned long long)ld->tot.errors,
		    ld->inflight);
	ld->last = ld->tot;
	ld->last_stats_ms = now;
}

static void
ld_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct ld_load *ld = arg;
	int64_t now = op_mono_ms();

	if (now - ld->last_stats_ms >= LD_STATS_MS)
		ld_stats(ld, now);
	if (!ld->stopping && ld->duration_ms > 0 && now - ld->start_ms >= ld->duration_ms) {
		ld->stopping = 1;
		ld->stop_ms = now;
	}
	if (ld->stopping) {
		if (ld->inflight == 0 || now - ld->stop_ms >= LD_DRAIN_MS)
			event_base_loopbreak(ld->base);
		return;
	}
	/* The schedule is absolute, so a late tick catches up instead of
	 * drifting; a full pool just delays the backlog, it is not dropped. */
	ld->due_sent = (uint64_t)((double)(now - ld->start_ms) * ld->rps / 1000.0);
	while (ld->tot.sent < ld->due_sent)
		if (ld_send_one(ld) < 0)
			break;
}

static void
ld_signal(evutil_socket_t sig, short ev, void *arg)
{
	struct ld_load *ld = arg;

	if (ld->stopping) {
		event_base_loopbreak(ld->base);
		return;
	}
	ld->stopping = 1;
	ld->stop_ms = op_mono_ms();
}

static void
ld_usage(FILE *f, int code)
{
	fprintf(f, "usage: rlload --targets URL[,URL...] --rps N --duration SECONDS\n"
		   "    [--keys K1,K2] [--concurrency C] [--quiet]\n"
		   "       rlload --help | --version\n"
		   "Sends POST /check load to rlnodes at a steady rate. See rlload(1).\n");
	exit(code);
}

static void
ld_add_target(struct ld_load *ld, const char *url)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	struct ld_target *t;
	const char *host, *path;
	size_t plen;

	if (u == NULL || (host = evhttp_uri_get_host(u)) == NULL)
		fatal("bad target URL \"%s\" (want http://HOST:PORT)", url);
	if (ld->ntargets >= LD_TARGETS_MAX)
		fatal("too many targets (max %d)", LD_TARGETS_MAX);
	t = &ld->targets[ld->ntargets++];
	op_strlcpy(t->host, host, sizeof(t->host));
	t->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
	path = evhttp_uri_get_path(u) ? evhttp_uri_get_path(u) : "";
	plen = strlen(path);
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	snprintf(t->path, sizeof(t->path), "%.*s" RLW_PATH_CHECK, (int)plen, path);
	snprintf(t->hosthdr, sizeof(t->hosthdr), "%s:%d", host, t->port);
	evhttp_uri_free(u);
}

static void
ld_split(const char *s, void (*add)(struct ld_load *, const char *), struct ld_load *ld)
{
	char *copy = strdup(s), *save = NULL, *tok;

	if (copy == NULL)
		fatal("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		add(ld, tok);
	free(copy);
}

static void
ld_add_key(struct ld_load *ld, const char *k)
{
	size_t i;

	if (ld->nkeys >= LD_KEYS_MAX)
		fatal("too many keys (max %d)", LD_KEYS_MAX);
	for (i = 0; k[i]; i++)
		if ((unsigned char)k[i] <= 0x20 || k[i] == '"' || k[i] == '\\' || k[i] == 0x7f)
			fatal("key \"%s\" must be printable without spaces or quotes", k);
	if ((ld->keys[ld->nkeys++] = strdup(k)) == NULL)
		fatal("out of memory");
}

static void
ld_parse(struct ld_load *ld, int argc, char **argv)
{
	static const struct option opts[] = {
		{"targets", required_argument, NULL, 't'},
		{"rps", required_argument, NULL, 'r'},
		{"duration", required_argument, NULL, 'd'},
		{"keys", required_argument, NULL, 'k'},
		{"concurrency", required_argument, NULL, 'c'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int64_t v;
	int c, have_rps = 0, have_dur = 0;

	ld->concurrency = 64;
	while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
		switch (c) {
		case 't': ld_split(optarg, ld_add_target, ld); break;
		case 'r':
			if (op_parse_int(optarg, 1, LD_RPS_MAX, &v) < 0)
				fatal("--rps must be an integer 1..%d", LD_RPS_MAX);
			ld->rps = (double)v;
			have_rps = 1;
			break;
		case 'd':
			if (op_parse_int(optarg, 0, 365LL * 86400, &v) < 0)
				fatal("--duration must be whole seconds >= 0 (0 = until SIGTERM)");
			ld->duration_ms = v * 1000;
			have_dur = 1;
			break;
		case 'k': ld_split(optarg, ld_add_key, ld); break;
		case 'c':
			if (op_parse_int(optarg, 1, 10000, &v) < 0)
				fatal("--concurrency must be an integer 1..10000");
			ld->concurrency = (int)v;
			break;
		case 'q': ld->quiet = 1; break;
		case 'h': ld_usage(stdout, 0); break;
		case 'V': printf("rlload %s\n", OP_VERSION); exit(0);
		default: ld_usage(stderr, 2);
		}
	}
	if (optind != argc || ld->ntargets == 0 || !have_rps || !have_dur)
		ld_usage(stderr, 2);
	if (ld->nkeys == 0)
		ld_add_key(ld, "load");
}

static void
ld_setup(struct ld_load *ld)
{
	int i;

	/* One connection per in-flight request; at least one per target. */
	int n = ld->concurrency < ld->ntargets ? ld->ntargets : ld->concurrency;

	ld->slots = calloc((size_t)n, sizeof(*ld->slots));
	ld->hist = calloc(LD_HIST_N, sizeof(*ld->hist));
	if (ld->slots == NULL || ld->hist == NULL)
		fatal("out of memory");
	for (i = 0; i < n; i++) {
		struct ld_slot *s = &ld->slots[i];
		s->ld = ld;
		s->t = &ld->targets[i % ld->ntargets];
		s->conn = evhttp_connection_base_new(ld->base, NULL, s->t->host,
		    (uint16_t)s->t->port);
		if (s->conn == NULL)
			fatal("cannot create connection to %s", s->t->hosthdr);
		evhttp_connection_set_timeout(s->conn, LD_REQ_TIMEOUT_S);
		s->next = s->t->idle;
		s->t->idle = s;
	}
	ld->concurrency = n;
}

static void
ld_teardown(struct ld_load *ld)
{
	int i;

	for (i = 0; i < ld->concurrency; i++)
		evhttp_connection_free(ld->slots[i].conn);
	for (i = 0; i < ld->nkeys; i++)
		free(ld->keys[i]);
	event_free(ld->tick_ev);
	event_free(ld->term_ev);
	event_free(ld->int_ev);
	free(ld->slots);
	free(ld->hist);
	event_base_free(ld->base);
}

int
main(int argc, char **argv)
{
	static struct ld_load load;
	struct ld_load *ld = &load;
	struct timeval tick = {0, LD_TICK_MS * 1000};
	json_object *o;

	log_init("rlload", 0);
	ld_parse(ld, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	if ((ld->base = event_base_new()) == NULL)
		fatal("event_base_new failed");
	ld_setup(ld);
	ld->tick_ev = event_new(ld->base, -1, EV_PERSIST, ld_tick, ld);
	ld->term_ev = evsignal_new(ld->base, SIGTERM, ld_signal, ld);
	ld->int_ev = evsignal_new(ld->base, SIGINT, ld_signal, ld);
	if (!ld->tick_ev || !ld->term_ev || !ld->int_ev || event_add(ld->tick_ev, &tick) ||
	    evsignal_add(ld->term_ev, NULL) || evsignal_add(ld->int_ev, NULL))
		fatal("cannot set up events");
	ld->start_ms = ld->last_stats_ms = op_mono_ms();
	event_base_dispatch(ld->base);
	ld_stats(ld, op_mono_ms());
	o = json_object_new_object();
	json_object_object_add(o, "sent", json_object_new_int64((int64_t)ld->tot.sent));
	json_object_object_add(o, "allowed", json_object_new_int64((int64_t)ld->tot.allowed));
	json_object_object_add(o, "blocked", json_object_new_int64((int64_t)ld->tot.blocked));
	/* Requests still unanswered after the drain count as errors. */
	json_object_object_add(o, "errors",
	    json_object_new_int64((int64_t)(ld->tot.errors + (uint64_t)ld->inflight)));
	json_object_object_add(o, "p50_ms", ld_ms_json(ld_quantile(ld, 0.50)));
	json_object_object_add(o, "p99_ms", ld_ms_json(ld_quantile(ld, 0.99)));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o);
	ld_teardown(ld);
	return 0;
}
