/* pdsim_store: one simulated TiKV store, run as its own process
 * (`pdsim --store-mode ...`). It serves its status address (/status and
 * /metrics with tikv_raftstore_region_count from the last heartbeat answer)
 * and sends a store heartbeat to pdsim every heartbeat-ms. It shares no
 * memory with pdsim, so SIGKILL of this process is a real store crash. */
#include "subjects/tikv/pdsim/pdsim.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"

#define STORE_HB_TIMEOUT_S 2   /* a heartbeat not answered by then is dropped */

struct store_proc {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_connection *pd;
	struct event *timer;
	uint64_t id;
	char pd_host[64];
	int pd_port;
	int64_t hb_ms;
	int inflight;
	int64_t leader_count, region_count;
	uint64_t hb_ok, hb_failed;
	char address[SIM_ADDR_LEN], status_address[SIM_ADDR_LEN];
	int64_t start_ts;
};

static int
bound_port(struct evhttp_bound_socket *h)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&ss, &sl) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

static void
on_status(struct evhttp_request *req, void *arg)
{
	struct store_proc *sp = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *out = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (path != NULL && strcmp(path, "/metrics") == 0) {
		evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		evbuffer_add_printf(out,
		    "# HELP tikv_raftstore_region_count Number of regions collected in "
		    "region_collection_accessor\n"
		    "# TYPE tikv_raftstore_region_count gauge\n"
		    "tikv_raftstore_region_count{type=\"leader\"} %" PRId64 "\n"
		    "tikv_raftstore_region_count{type=\"region\"} %" PRId64 "\n"
		    "# HELP tikv_store_size_bytes Size of storage.\n"
		    "# TYPE tikv_store_size_bytes gauge\n"
		    "tikv_store_size_bytes{type=\"capacity\"} %llu\n"
		    "tikv_store_size_bytes{type=\"available\"} %llu\n"
		    "# HELP tikv_pd_heartbeat_message_total Total number of PD heartbeat messages.\n"
		    "# TYPE tikv_pd_heartbeat_message_total counter\n"
		    "tikv_pd_heartbeat_message_total{type=\"ok\"} %" PRIu64 "\n"
		    "tikv_pd_heartbeat_message_total{type=\"fail\"} %" PRIu64 "\n"
		    "# HELP process_start_time_seconds Start time of the process.\n"
		    "# TYPE process_start_time_seconds gauge\n"
		    "process_start_time_seconds %" PRId64 "\n",
		    sp->leader_count, sp->region_count, SIM_STORE_CAPACITY,
		    SIM_STORE_CAPACITY / 10 * 9, sp->hb_ok, sp->hb_failed, sp->start_ts);
		evhttp_send_reply(req, 200, "OK", out);
	} else if (path != NULL && strcmp(path, "/status") == 0) {
		/* TiKV's status server answers /status with 200 and no body. */
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
		evbuffer_add_printf(out, "path not found\n");
		evhttp_send_reply(req, 404, "Not Found", out);
	}
	evbuffer_free(out);
}

static void
on_hb_done(struct evhttp_request *req, void *arg)
{
	struct store_proc *sp = arg;
	int code = req ? evhttp_request_get_response_code(req) : 0;

	sp->inflight = 0;
	if (code == 410) {
		/* PD buried this store: a real TiKV shuts down. */
		log_info("store %" PRIu64 " is tombstone, exiting", sp->id);
		event_base_loopbreak(sp->base);
		return;
	}
	if (code != 200) {
		sp->hb_failed++;
		return;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char buf[512];
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	evbuffer_copyout(in, buf, n);
	buf[n] = '\0';
	json_object *o = json_tokener_parse(buf), *v;
	if (o != NULL) {
		if (json_object_object_get_ex(o, "leader_count", &v))
			sp->leader_count = json_object_get_int64(v);
		if (json_object_object_get_ex(o, "region_count", &v))
			sp->region_count = json_object_get_int64(v);
		json_object_put(o);
	}
	sp->hb_ok++;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct store_proc *sp = arg;
	char body[512];
	(void)fd;
	(void)what;

	if (sp->inflight)
		return; /* pdsim is slow (e.g. rendering 100k regions): skip a beat */
	struct evhttp_request *req = evhttp_request_new(on_hb_done, sp);
	if (req == NULL)
		return;
	snprintf(body, sizeof(body),
	    "{\"store_id\":%" PRIu64 ",\"pid\":%d,\"address\":\"%s\",\"status_address\":\"%s\","
	    "\"start_timestamp\":%" PRId64 ",\"capacity\":%llu,\"available\":%llu}",
	    sp->id, (int)getpid(), sp->address, sp->status_address, sp->start_ts,
	    SIM_STORE_CAPACITY, SIM_STORE_CAPACITY / 10 * 9);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", sp->pd_host);
	evhttp_add_header(h, "Content-Type", "application/json");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	if (evhttp_make_request(sp->pd, req, EVHTTP_REQ_POST, "/pdsim/heartbeat") != 0) {
		sp->hb_failed++;
		return; /* libevent frees req on failure */
	}
	sp->inflight = 1;
}

int
sim_store_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"store-mode", no_argument, NULL, 'M'},
		{"store-id", required_argument, NULL, 'i'},
		{"pd", required_argument, NULL, 'p'},
		{"heartbeat-ms", required_argument, NULL, 'h'},
		{"bind", required_argument, NULL, 'b'},
		{"store-port-base", required_argument, NULL, 'B'},
		{"verbose", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	struct store_proc sp = {.hb_ms = SIM_DEF_HEARTBEAT_MS};
	char bind[64] = "127.0.0.1";
	int64_t v, base_port = 0;
	int c, verbose = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'M': break;
		case 'i':
			if (op_parse_u64(optarg, &sp.id) != 0 || sp.id == 0)
				fatal("bad --store-id %s", optarg);
			break;
		case 'p':
			if (op_split_hostport(optarg, sp.pd_host, sizeof(sp.pd_host), &sp.pd_port) != 0)
				fatal("bad --pd %s (want host:port)", optarg);
			break;
		case 'h':
			if (op_parse_int(optarg, 1, 3600000, &v) != 0)
				fatal("bad --heartbeat-ms %s", optarg);
			sp.hb_ms = v;
			break;
		case 'b': op_strlcpy(bind, optarg, sizeof(bind)); break;
		case 'B':
			if (op_parse_int(optarg, 0, 65000, &base_port) != 0)
				fatal("bad --store-port-base %s", optarg);
			break;
		case 'v': verbose = 1; break;
		default: fatal("usage: pdsim --store-mode --store-id N --pd HOST:PORT ...");
		}
	}
	char name[32];
	snprintf(name, sizeof(name), "pdsim-store-%" PRIu64, sp.id);
	log_init(name, verbose);
	if (sp.id == 0 || sp.pd_port == 0)
		fatal("--store-id and --pd are required");
	signal(SIGPIPE, SIG_IGN);
	sp.start_ts = op_wall_ms() / 1000;
	sp.base = event_base_new();
	sp.http = evhttp_new(sp.base);
	if (sp.base == NULL || sp.http == NULL)
		fatal("libevent init failed");
	evhttp_set_gencb(sp.http, on_status, &sp);
	/* Two listeners: the store "address" and the status address, so a
	 * probe of either fails once the process is gone. */
	int aport = base_port ? (int)(base_port + 2 * (int64_t)(sp.id - 1)) : 0;
	int sport = base_port ? aport + 1 : 0;
	struct evhttp_bound_socket *ha = evhttp_bind_socket_with_handle(sp.http, bind,
	    (ev_uint16_t)aport);
	struct evhttp_bound_socket *hs = evhttp_bind_socket_with_handle(sp.http, bind,
	    (ev_uint16_t)sport);
	if (ha == NULL || hs == NULL)
		fatal("store %" PRIu64 ": cannot listen on %s", sp.id, bind);
	const char *adv = strcmp(bind, "0.0.0.0") == 0 ? "127.0.0.1" : bind;
	snprintf(sp.address, sizeof(sp.address), "%s:%d", adv, bound_port(ha));
	snprintf(sp.status_address, sizeof(sp.status_address), "%s:%d", adv, bound_port(hs));
	sp.pd = evhttp_connection_base_new(sp.base, NULL, sp.pd_host, (ev_uint16_t)sp.pd_port);
	if (sp.pd == NULL)
		fatal("cannot create PD connection");
	evhttp_connection_set_timeout(sp.pd, STORE_HB_TIMEOUT_S);
	sp.timer = event_new(sp.base, -1, EV_PERSIST, on_tick, &sp);
	struct timeval tv = {.tv_sec = (time_t)(sp.hb_ms / 1000),
	    .tv_usec = (suseconds_t)((sp.hb_ms % 1000) * 1000)};
	event_add(sp.timer, &tv);
	on_tick(-1, 0, &sp); /* first heartbeat at once: the store registers */
	log_info("store %" PRIu64 " up: address %s, status %s, pd %s:%d", sp.id, sp.address,
	    sp.status_address, sp.pd_host, sp.pd_port);
	event_base_dispatch(sp.base);
	event_free(sp.timer);
	evhttp_connection_free(sp.pd);
	evhttp_free(sp.http);
	event_base_free(sp.base);
	return 0;
}
