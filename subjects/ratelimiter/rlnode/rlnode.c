/* rlnode: entry point, options, timers and lifecycle of one limiter node. */
#include "rlnode.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define RLN_DEFAULT_LIMIT 100
#define RLN_DEFAULT_WINDOW_MS 60000
#define RLN_DEFAULT_REDIS_TIMEOUT_MS 150
#define RLN_DEFAULT_RETRIES 2
#define RLN_DEFAULT_HEARTBEAT_MS 1000
#define RLN_DEFAULT_NODE_TTL_MS 5000
#define RLN_DEFAULT_LIMIT_REFRESH_MS 60000
#define RLN_RETRIES_MAX (RLN_POOL_SIZE - 1) /* each retry needs a different connection */

int64_t
rln_now_est(const struct rlnode *n)
{
	/* Without any Redis reply yet, the wall clock is the best guess. */
	return n->have_off ? op_mono_ms() + n->redis_off_ms : op_wall_ms();
}

void
rln_note_redis_time(struct rlnode *n, int64_t redis_ms)
{
	if (redis_ms <= 0)
		return;
	n->redis_off_ms = redis_ms - op_mono_ms();
	n->have_off = 1;
}

int
rln_redis_up(const struct rlnode *n)
{
	int i;

	for (i = 0; i < RLN_POOL_SIZE; i++)
		if (n->conns[i].connected)
			return 1;
	return 0;
}

int
rln_degraded(const struct rlnode *n)
{
	return !rln_redis_up(n) || (n->last_fail_open_mono != 0 &&
	    op_mono_ms() - n->last_fail_open_mono < RLN_DEGRADED_HOLD_MS);
}

const struct rln_limit *
rln_limit_for(const struct rlnode *n, const char *key, struct rln_limit *tmp)
{
	const struct rln_limit *l = rln_map_get(&n->limits, key);

	if (l != NULL)
		return l;
	tmp->limit = n->default_limit;
	tmp->window_ms = n->window_ms;
	return tmp;
}

struct rln_acct *
rln_acct_for(struct rlnode *n, const char *key)
{
	return rln_map_get_or_add(&n->acct, key, rln_acct_new);
}

/* ---- timers ---- */

static void
rln_heartbeat_tick(evutil_socket_t fd, short ev, void *arg)
{
	rln_heartbeat(arg);
}

static void
rln_refresh_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct rlnode *n = arg;

	if (rln_limits_reload(n, NULL, NULL) < 0)
		log_warn("periodic limits refresh skipped: redis not connected");
}

struct rln_sweep {
	struct rlnode *n;
	int64_t now;
};

static int
rln_sweep_one(const char *key, void *val, void *arg)
{
	struct rln_sweep *s = arg;
	struct rln_acct *a = val;
	struct rln_limit tmp;

	rln_acct_prune(a, s->now, rln_limit_for(s->n, key, &tmp)->window_ms);
	/* An empty log carries nothing Redis cannot tell us again (reset time). */
	return a->na == 0 && a->nbl == 0;
}

static void
rln_sweep_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct rlnode *n = arg;
	struct rln_sweep s = {n, rln_now_est(n)};

	rln_map_each(&n->acct, rln_sweep_one, &s, rln_acct_free);
	rln_suspect_sweep(n, s.now);
}

static struct event *
rln_periodic(struct rlnode *n, int64_t ms, event_callback_fn fn)
{
	struct event *ev = event_new(n->base, -1, EV_PERSIST, fn, n);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	if (ev == NULL || event_add(ev, &tv) != 0)
		fatal("cannot create timer");
	return ev;
}

/* ---- shutdown ---- */

static void
rln_stop_done(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		log_warn("deregistration failed: %s", err ? err : "bad reply");
	else
		log_info("deregistered %s", n->node_id);
	event_base_loopbreak(n->base);
}

static void
rln_signal(evutil_socket_t sig, short ev, void *arg)
{
	struct rlnode *n = arg;

	if (n->stopping) { /* a second signal: stop waiting */
		event_base_loopbreak(n->base);
		return;
	}
	n->stopping = 1;
	log_info("signal %d: deregistering and stopping", (int)sig);
	if (rln_deregister(n, rln_stop_done) < 0)
		event_base_loopbreak(n->base);
}

static void
rln_free(struct rlnode *n)
{
	struct event *evs[] = {n->sigterm_ev, n->sigint_ev, n->heartbeat_ev, n->refresh_ev,
	    n->sweep_ev};
	size_t i;

	/* Redis first: it answers every HTTP request still waiting on it. */
	rln_redis_stop(n);
	if (n->http)
		evhttp_free(n->http);
	for (i = 0; i < OP_ARRAY_LEN(evs); i++)
		if (evs[i])
			event_free(evs[i]);
	rln_map_clear(&n->limits, free);
	rln_map_clear(&n->acct, rln_acct_free);
	rln_map_clear(&n->suspects, free);
	event_base_free(n->base);
}

/* ---- options ---- */

static void
rln_usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: rlnode --port P --redis HOST:PORT --node-id ID [--bind ADDR]\n"
	    "    [--default-limit N] [--window DURATION] [--redis-timeout MS] [--retries N]\n"
	    "    [--heartbeat MS] [--node-ttl MS] [--limit-refresh DURATION] [-v]\n"
	    "       rlnode --help | --version\n"
	    "A rate-limiter node: sliding windows in Redis, served over HTTP. See rlnode(1).\n");
	exit(code);
}

static int
rln_node_id_valid(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > RLW_NODE_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return 0;
	return 1;
}

static void
rln_opt_int(const char *name, const char *v, int64_t min, int64_t max, int64_t *out)
{
	if (op_parse_int(v, min, max, out) < 0)
		fatal("--%s must be an integer %lld..%lld, got \"%s\"", name, (long long)min,
		    (long long)max, v);
}

static void
rln_opt_dur(const char *name, const char *v, int64_t min, int64_t max, int64_t *out)
{
	if (op_parse_duration(v, out) < 0 || *out < min || *out > max)
		fatal("--%s must be a duration %lldms..%lldms (\"250ms\", \"5s\", \"1m\"), got \"%s\"",
		    name, (long long)min, (long long)max, v);
}

static void
rln_parse_args(struct rlnode *n, int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"redis", required_argument, NULL, 'r'},
		{"node-id", required_argument, NULL, 'i'},
		{"bind", required_argument, NULL, 'b'},
		{"default-limit", required_argument, NULL, 'l'},
		{"window", required_argument, NULL, 'w'},
		{"redis-timeout", required_argument, NULL, 't'},
		{"retries", required_argument, NULL, 'R'},
		{"heartbeat", required_argument, NULL, 'H'},
		{"node-ttl", required_argument, NULL, 'T'},
		{"limit-refresh", required_argument, NULL, 'L'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int64_t v;
	int c, have_redis = 0;

	n->default_limit = RLN_DEFAULT_LIMIT;
	n->window_ms = RLN_DEFAULT_WINDOW_MS;
	n->redis_timeout_ms = RLN_DEFAULT_REDIS_TIMEOUT_MS;
	n->retries = RLN_DEFAULT_RETRIES;
	n->heartbeat_ms = RLN_DEFAULT_HEARTBEAT_MS;
	n->node_ttl_ms = RLN_DEFAULT_NODE_TTL_MS;
	n->limit_refresh_ms = RLN_DEFAULT_LIMIT_REFRESH_MS;
	op_strlcpy(n->bind, "127.0.0.1", sizeof(n->bind));
	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			rln_opt_int("port", optarg, 1, 65535, &v);
			n->port = (int)v;
			break;
		case 'r':
			if (op_split_hostport(optarg, n->redis_host, sizeof(n->redis_host),
				&n->redis_port) < 0)
				fatal("--redis must be HOST:PORT, got \"%s\"", optarg);
			have_redis = 1;
			break;
		case 'i':
			if (!rln_node_id_valid(optarg))
				fatal("--node-id must be 1..%d of [A-Za-z0-9._-], got \"%s\"",
				    RLW_NODE_ID_MAX, optarg);
			op_strlcpy(n->node_id, optarg, sizeof(n->node_id));
			break;
		case 'b':
			if (op_strlcpy(n->bind, optarg, sizeof(n->bind)) >= sizeof(n->bind))
				fatal("--bind address too long");
			break;
		case 'l': rln_opt_int("default-limit", optarg, 0, 1000000000, &n->default_limit); break;
		case 'w': rln_opt_dur("window", optarg, 1, RLN_WINDOW_MAX_MS, &n->window_ms); break;
		case 't': rln_opt_int("redis-timeout", optarg, 1, 60000, &n->redis_timeout_ms); break;
		case 'R':
			rln_opt_int("retries", optarg, 0, RLN_RETRIES_MAX, &v);
			n->retries = (int)v;
			break;
		case 'H': rln_opt_int("heartbeat", optarg, 10, 600000, &n->heartbeat_ms); break;
		case 'T': rln_opt_int("node-ttl", optarg, 10, 3600000, &n->node_ttl_ms); break;
		case 'L':
			rln_opt_dur("limit-refresh", optarg, 100, RLN_WINDOW_MAX_MS,
			    &n->limit_refresh_ms);
			break;
		case 'v': log_init("rlnode", 1); break;
		case 'h': rln_usage(stdout, 0); break;
		case 'V': printf("rlnode %s\n", OP_VERSION); exit(0);
		default: rln_usage(stderr, 2);
		}
	}
	if (optind != argc || n->port == 0 || !have_redis || n->node_id[0] == '\0')
		rln_usage(stderr, 2);
	if (n->node_ttl_ms <= n->heartbeat_ms)
		log_warn("--node-ttl %lld <= --heartbeat %lld: the node will flap to down",
		    (long long)n->node_ttl_ms, (long long)n->heartbeat_ms);
}

int
main(int argc, char **argv)
{
	static struct rlnode node; /* large (latency ring); static keeps it off the stack */
	struct rlnode *n = &node;

	log_init("rlnode", 0);
	rln_parse_args(n, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	n->started_mono_ms = op_mono_ms();
	n->boot_ms = op_wall_ms();
	rln_map_init(&n->limits);
	rln_map_init(&n->acct);
	rln_map_init(&n->suspects);
	if ((n->base = event_base_new()) == NULL)
		fatal("event_base_new failed");
	if (rln_http_start(n) < 0)
		fatal("cannot start HTTP server on %s:%d", n->bind, n->port);
	n->sigterm_ev = evsignal_new(n->base, SIGTERM, rln_signal, n);
	n->sigint_ev = evsignal_new(n->base, SIGINT, rln_signal, n);
	if (!n->sigterm_ev || !n->sigint_ev || evsignal_add(n->sigterm_ev, NULL) ||
	    evsignal_add(n->sigint_ev, NULL))
		fatal("cannot install signal handlers");
	rln_redis_start(n);
	rln_heartbeat(n);
	n->heartbeat_ev = rln_periodic(n, n->heartbeat_ms, rln_heartbeat_tick);
	n->refresh_ev = rln_periodic(n, n->limit_refresh_ms, rln_refresh_tick);
	n->sweep_ev = rln_periodic(n, RLN_SWEEP_MS, rln_sweep_tick);
	log_info("node %s listening on %s:%d, redis %s:%d, default limit %lld per %lld ms",
	    n->node_id, n->bind, n->port, n->redis_host, n->redis_port,
	    (long long)n->default_limit, (long long)n->window_ms);
	event_base_dispatch(n->base);
	rln_free(n);
	log_info("stopped");
	return 0;
}
