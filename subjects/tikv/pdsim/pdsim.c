/* pdsim: main, options and the store processes (one real child process per
 * TiKV store: fork + exec of this binary in --store-mode). */
#include "subjects/tikv/pdsim/pdsim.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/util.h"

#define SIM_DEF_PORT 2379
#define SIM_DEF_CLUSTER_ID 7301236548852187343ull  /* > 2^53, like real ids */
#define SIM_DEF_MEMBER_ID 16046131278637113011ull  /* > 2^63, like real ids */

struct pdsim {
	struct sim_opts o;
	struct sim_cluster c;
	struct event_base *base;
	struct sim_server *srv;
	int port;
	char self_exe[PATH_MAX];
	int dirty;                /* state file needs rewriting */
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: pdsim [options]\n"
	    "  --port P               PD client port (default %d; 0 = any, see --port-file)\n"
	    "  --bind ADDR            listen address (default 127.0.0.1)\n"
	    "  --port-file PATH       write the bound port here once listening\n"
	    "  --state-file PATH      keep /pdsim/stores JSON (pids, addresses) here\n"
	    "  --stores N             TiKV store processes (default 3)\n"
	    "  --regions M            regions (default 100)\n"
	    "  --replicas R           peers per region (default 3)\n"
	    "  --heartbeat-ms MS      store heartbeat interval (default %d; TiKV 10s)\n"
	    "  --disconnect-ms MS     Up -> Disconnected (default %d; PD 20s)\n"
	    "  --down-ms MS           max-store-down-time, -> Down (default %d; PD 30m)\n"
	    "  --peer-down-ms MS      peer listed in down_peers (default %d; TiKV 10m)\n"
	    "  --unhealthy-ms MS      admin operator target refused (default = peer-down-ms)\n"
	    "  --election-ms MS       raft election timeout (default %d; TiKV 10-20s)\n"
	    "  --balance-interval-ms MS  one balance-leader move per interval (default %d)\n"
	    "  --evict-interval-ms MS evict-leader moves %d leaders per interval (default %d)\n"
	    "  --op-ms MS             admin operator completion time (default %d)\n"
	    "  --op-timeout-ms MS     operator TIMEOUT if not done (default %d)\n"
	    "  --catchup-ms MS        new/returning peer stays pending (default %d)\n"
	    "  --tick-ms MS           model step (default %d)\n"
	    "  --replica-per-tick N   down-peer replacements per tick (default %d)\n"
	    "  --store-port-base B    store i uses ports B+2(i-1) (address), +1 (status)\n"
	    "  --master               PD master behaviour: 404 for an unknown region\n"
	    "  --no-spawn             no store processes (model only)\n"
	    "  --verbose\n"
	    "  --help, --version\n",
	    SIM_DEF_PORT, SIM_DEF_HEARTBEAT_MS, SIM_DEF_DISCONNECT_MS, SIM_DEF_DOWN_MS,
	    SIM_DEF_PEER_DOWN_MS, SIM_DEF_ELECTION_MS, SIM_DEF_BALANCE_MS, SIM_EVICT_BATCH,
	    SIM_DEF_EVICT_MS, SIM_DEF_OP_MS, SIM_DEF_OP_TIMEOUT_MS, SIM_DEF_CATCHUP_MS,
	    SIM_DEF_TICK_MS, SIM_DEF_REPLICA_PER_TICK);
}

static void
write_file_atomic(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	if ((f = fopen(tmp, "w")) == NULL) {
		log_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fwrite(data, 1, len, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		log_warn("cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
	}
}

static void
write_state(struct pdsim *p)
{
	struct sbuf b = {0};

	p->dirty = 0;
	if (p->o.state_file[0] == '\0')
		return;
	sim_render_pdsim_stores(&p->c, op_mono_ms(), &b);
	if (!b.oom)
		write_file_atomic(p->o.state_file, b.p, b.len);
	sb_free(&b);
}

static int
spawn_store(struct pdsim *p, struct sim_store *s)
{
	char id[24], pd[96], hb[24], base[24];
	const char *host = strcmp(p->o.bind, "0.0.0.0") == 0 ? "127.0.0.1" : p->o.bind;
	pid_t parent = getpid();

	snprintf(id, sizeof(id), "%" PRIu64, s->id);
	snprintf(pd, sizeof(pd), "%s:%d", host, p->port);
	snprintf(hb, sizeof(hb), "%" PRId64, p->o.heartbeat_ms);
	snprintf(base, sizeof(base), "%d", p->o.store_port_base);
	char *argv[] = {p->self_exe, "--store-mode", "--store-id", id, "--pd", pd,
	    "--heartbeat-ms", hb, "--bind", p->o.bind, "--store-port-base", base,
	    p->o.verbose ? "--verbose" : NULL, NULL};
	pid_t pid = fork();
	if (pid < 0) {
		log_err("fork for store %" PRIu64 ": %s", s->id, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* Die with pdsim even if it is SIGKILLed; then close the race
		 * where pdsim died before prctl ran. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(p->self_exe, argv);
		_exit(127);
	}
	s->pid = pid;
	s->last_pid = pid;
	p->dirty = 1;
	log_info("store %" PRIu64 " process started, pid %d", s->id, (int)pid);
	return 0;
}

static void
reap(struct pdsim *p)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < p->c.n_stores; i++) {
			struct sim_store *s = &p->c.stores[i];
			if (s->pid != pid)
				continue;
			s->pid = 0;
			p->dirty = 1;
			if (WIFSIGNALED(status))
				log_info("store %" PRIu64 " (pid %d) killed by signal %d", s->id,
				    (int)pid, WTERMSIG(status));
			else
				log_info("store %" PRIu64 " (pid %d) exited with %d", s->id, (int)pid,
				    WEXITSTATUS(status));
		}
	}
}

/* POST /pdsim/stores/{id}/restart and /kill. */
static int
store_action(void *arg, struct sim_store *s, const char *action, char *msg, size_t len)
{
	struct pdsim *p = arg;

	if (strcmp(action, "kill") == 0) {
		if (s->pid <= 0) {
			snprintf(msg, len, "store %" PRIu64 " is not running", s->id);
			return 409;
		}
		pid_t pid = s->pid;
		kill(pid, SIGKILL);
		/* Reap now, so that an immediate restart is not refused. */
		if (waitpid(pid, NULL, 0) == pid)
			s->pid = 0;
		p->dirty = 1;
		snprintf(msg, len, "store %" PRIu64 " killed (pid %d)", s->id, (int)pid);
		return 200;
	}
	if (s->pid > 0) {
		snprintf(msg, len, "store %" PRIu64 " is running (pid %d)", s->id, (int)s->pid);
		return 409;
	}
	if (s->state == 2) {
		snprintf(msg, len, "[PD:core:ErrStoreRemoved]store %" PRIu64 " has been removed", s->id);
		return 410;
	}
	if (spawn_store(p, s) != 0) {
		snprintf(msg, len, "store %" PRIu64 ": fork failed", s->id);
		return 500;
	}
	s->restarts++;
	snprintf(msg, len, "store %" PRIu64 " restarted (pid %d)", s->id, (int)s->pid);
	return 200;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pdsim *p = arg;
	(void)fd;
	(void)what;

	sim_cluster_tick(&p->c, op_mono_ms());
	if (p->dirty)
		write_state(p);
}

static void
on_sigchld(evutil_socket_t fd, short what, void *arg)
{
	struct pdsim *p = arg;
	(void)fd;
	(void)what;

	reap(p);
	if (p->dirty)
		write_state(p);
}

static void
on_term(evutil_socket_t fd, short what, void *arg)
{
	struct pdsim *p = arg;
	(void)what;

	log_info("signal %d, shutting down", (int)fd);
	event_base_loopbreak(p->base);
}

static void
stop_stores(struct pdsim *p)
{
	for (size_t i = 0; i < p->c.n_stores; i++) {
		struct sim_store *s = &p->c.stores[i];
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = 0;
		}
	}
}

static int64_t
opt_ms(const char *name, const char *v)
{
	int64_t ms;

	if (op_parse_int(v, 1, 86400000, &ms) != 0)
		fatal("bad --%s %s (milliseconds, 1..86400000)", name, v);
	return ms;
}

static void
parse_opts(struct pdsim *p, int argc, char **argv)
{
	enum {
		O_PORT = 256, O_BIND, O_PORT_FILE, O_STATE_FILE, O_STORES, O_REGIONS, O_REPLICAS,
		O_HB, O_DISC, O_DOWN, O_PEER_DOWN, O_UNHEALTHY, O_ELECT, O_BAL, O_EVICT, O_OP,
		O_OP_TO, O_CATCHUP, O_TICK, O_RPT, O_PORT_BASE, O_MASTER, O_NO_SPAWN, O_VERBOSE,
		O_HELP, O_RECORD, O_VERSION
	};
	static const struct option lo[] = {
		{"port", required_argument, NULL, O_PORT},
		{"bind", required_argument, NULL, O_BIND},
		{"port-file", required_argument, NULL, O_PORT_FILE},
		{"state-file", required_argument, NULL, O_STATE_FILE},
		{"stores", required_argument, NULL, O_STORES},
		{"regions", required_argument, NULL, O_REGIONS},
		{"replicas", required_argument, NULL, O_REPLICAS},
		{"heartbeat-ms", required_argument, NULL, O_HB},
		{"disconnect-ms", required_argument, NULL, O_DISC},
		{"down-ms", required_argument, NULL, O_DOWN},
		{"peer-down-ms", required_argument, NULL, O_PEER_DOWN},
		{"unhealthy-ms", required_argument, NULL, O_UNHEALTHY},
		{"election-ms", required_argument, NULL, O_ELECT},
		{"balance-interval-ms", required_argument, NULL, O_BAL},
		{"evict-interval-ms", required_argument, NULL, O_EVICT},
		{"op-ms", required_argument, NULL, O_OP},
		{"op-timeout-ms", required_argument, NULL, O_OP_TO},
		{"catchup-ms", required_argument, NULL, O_CATCHUP},
		{"tick-ms", required_argument, NULL, O_TICK},
		{"record-ms", required_argument, NULL, O_RECORD},
		{"replica-per-tick", required_argument, NULL, O_RPT},
		{"store-port-base", required_argument, NULL, O_PORT_BASE},
		{"master", no_argument, NULL, O_MASTER},
		{"no-spawn", no_argument, NULL, O_NO_SPAWN},
		{"verbose", no_argument, NULL, O_VERBOSE},
		{"help", no_argument, NULL, O_HELP},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	struct sim_opts *o = &p->o;
	int64_t v;
	int ch;

	memset(o, 0, sizeof(*o));
	op_strlcpy(o->bind, "127.0.0.1", sizeof(o->bind));
	o->port = SIM_DEF_PORT;
	o->n_stores = 3;
	o->n_regions = 100;
	o->replicas = 3;
	o->heartbeat_ms = SIM_DEF_HEARTBEAT_MS;
	o->disconnect_ms = SIM_DEF_DISCONNECT_MS;
	o->down_ms = SIM_DEF_DOWN_MS;
	o->peer_down_ms = SIM_DEF_PEER_DOWN_MS;
	o->unhealthy_ms = 0;
	o->election_ms = SIM_DEF_ELECTION_MS;
	o->balance_ms = SIM_DEF_BALANCE_MS;
	o->evict_ms = SIM_DEF_EVICT_MS;
	o->op_ms = SIM_DEF_OP_MS;
	o->op_timeout_ms = SIM_DEF_OP_TIMEOUT_MS;
	o->catchup_ms = SIM_DEF_CATCHUP_MS;
	o->tick_ms = SIM_DEF_TICK_MS;
	o->record_ms = SIM_DEF_RECORD_MS;
	o->replica_per_tick = SIM_DEF_REPLICA_PER_TICK;
	o->cluster_id = SIM_DEF_CLUSTER_ID;
	o->member_id = SIM_DEF_MEMBER_ID;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case O_PORT:
			if (op_parse_int(optarg, 0, 65535, &v) != 0)
				fatal("bad --port %s", optarg);
			o->port = (int)v;
			break;
		case O_BIND: op_strlcpy(o->bind, optarg, sizeof(o->bind)); break;
		case O_PORT_FILE: op_strlcpy(o->port_file, optarg, sizeof(o->port_file)); break;
		case O_STATE_FILE: op_strlcpy(o->state_file, optarg, sizeof(o->state_file)); break;
		case O_STORES:
			if (op_parse_int(optarg, 1, SIM_MAX_STORES, &v) != 0)
				fatal("bad --stores %s (1..%d)", optarg, SIM_MAX_STORES);
			o->n_stores = (int)v;
			break;
		case O_REGIONS:
			if (op_parse_int(optarg, 0, SIM_MAX_REGIONS, &v) != 0)
				fatal("bad --regions %s (0..%d)", optarg, SIM_MAX_REGIONS);
			o->n_regions = (int)v;
			break;
		case O_REPLICAS:
			if (op_parse_int(optarg, 1, 5, &v) != 0)
				fatal("bad --replicas %s (1..5)", optarg);
			o->replicas = (int)v;
			break;
		case O_HB: o->heartbeat_ms = opt_ms("heartbeat-ms", optarg); break;
		case O_DISC: o->disconnect_ms = opt_ms("disconnect-ms", optarg); break;
		case O_DOWN: o->down_ms = opt_ms("down-ms", optarg); break;
		case O_PEER_DOWN: o->peer_down_ms = opt_ms("peer-down-ms", optarg); break;
		case O_UNHEALTHY: o->unhealthy_ms = opt_ms("unhealthy-ms", optarg); break;
		case O_ELECT: o->election_ms = opt_ms("election-ms", optarg); break;
		case O_BAL: o->balance_ms = opt_ms("balance-interval-ms", optarg); break;
		case O_EVICT: o->evict_ms = opt_ms("evict-interval-ms", optarg); break;
		case O_OP: o->op_ms = opt_ms("op-ms", optarg); break;
		case O_OP_TO: o->op_timeout_ms = opt_ms("op-timeout-ms", optarg); break;
		case O_CATCHUP: o->catchup_ms = opt_ms("catchup-ms", optarg); break;
		case O_TICK: o->tick_ms = opt_ms("tick-ms", optarg); break;
		case O_RECORD: o->record_ms = opt_ms("record-ms", optarg); break;
		case O_RPT:
			if (op_parse_int(optarg, 0, 1000000, &v) != 0)
				fatal("bad --replica-per-tick %s", optarg);
			o->replica_per_tick = (int)v;
			break;
		case O_PORT_BASE:
			if (op_parse_int(optarg, 0, 65000, &v) != 0)
				fatal("bad --store-port-base %s", optarg);
			o->store_port_base = (int)v;
			break;
		case O_MASTER: o->master_mode = 1; break;
		case O_NO_SPAWN: o->no_spawn = 1; break;
		case O_VERBOSE: o->verbose = 1; break;
		case O_HELP: usage(stdout); exit(0);
		case O_VERSION: printf("pdsim %s\n", OP_VERSION); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
	if (o->unhealthy_ms == 0)
		o->unhealthy_ms = o->peer_down_ms;
	if (o->op_timeout_ms < o->op_ms)
		o->op_timeout_ms = o->op_ms;
}

int
main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--store-mode") == 0)
			return sim_store_main(argc, argv);

	static struct pdsim p; /* large; static keeps it off the stack */
	parse_opts(&p, argc, argv);
	log_init("pdsim", p.o.verbose);
	signal(SIGPIPE, SIG_IGN);
	ssize_t n = readlink("/proc/self/exe", p.self_exe, sizeof(p.self_exe) - 1);
	if (n <= 0)
		fatal("readlink /proc/self/exe: %s", strerror(errno));
	p.self_exe[n] = '\0';
	if (sim_cluster_init(&p.c, &p.o) != 0)
		fatal("out of memory for %d stores / %d regions", p.o.n_stores, p.o.n_regions);
	if ((p.base = event_base_new()) == NULL)
		fatal("event_base_new failed");
	/* Signals go through libevent so that handlers run in the loop. */
	struct event *ev_chld = evsignal_new(p.base, SIGCHLD, on_sigchld, &p);
	struct event *ev_term = evsignal_new(p.base, SIGTERM, on_term, &p);
	struct event *ev_int = evsignal_new(p.base, SIGINT, on_term, &p);
	evsignal_add(ev_chld, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	p.srv = sim_http_start(p.base, &p.c, p.o.bind, p.o.port, &p.port,
	    p.o.no_spawn ? NULL : store_action, &p);
	if (p.srv == NULL)
		fatal("cannot start the HTTP server on %s:%d", p.o.bind, p.o.port);
	if (!p.o.no_spawn)
		for (size_t i = 0; i < p.c.n_stores; i++)
			spawn_store(&p, &p.c.stores[i]);
	struct event *ev_tick = event_new(p.base, -1, EV_PERSIST, on_tick, &p);
	struct timeval tv = {.tv_sec = (time_t)(p.o.tick_ms / 1000),
	    .tv_usec = (suseconds_t)((p.o.tick_ms % 1000) * 1000)};
	event_add(ev_tick, &tv);
	write_state(&p);
	if (p.o.port_file[0]) {
		char buf[32];
		int len = snprintf(buf, sizeof(buf), "%d\n", p.port);
		write_file_atomic(p.o.port_file, buf, (size_t)len);
	}
	log_info("listening on http://%s:%d: %d stores, %d regions, %d replicas", p.o.bind,
	    p.port, p.o.n_stores, p.o.n_regions, p.o.replicas);
	event_base_dispatch(p.base);

	stop_stores(&p);
	event_free(ev_tick);
	event_free(ev_chld);
	event_free(ev_term);
	event_free(ev_int);
	sim_http_stop(p.srv);
	event_base_free(p.base);
	sim_cluster_free(&p.c);
	return 0;
}
