/* metrics: the daemon's own Prometheus endpoint (text format 0.0.4), served
 * from the supervisor's event loop. Counts come from the ledger at scrape
 * time, so they survive restarts and never drift from what is recorded. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/metrics.h"
#include "supervisor/od.h"

static struct evhttp *metrics_http;

static void
metrics_group(struct evbuffer *b, const char *name, const char *help, const char *label,
    const char *sql)
{
	json_object *rows = ledger_rows(od->ledger, sql, "");

	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		evbuffer_add_printf(b, "%s{%s=\"%s\"} %lld\n", name, label,
		    op_json_str(r, "k", ""), (long long)op_json_int(r, "n", 0));
	}
	json_object_put(rows);
}

static void
metrics_serve(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b = evbuffer_new();

	(void)arg;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "GET only");
		evbuffer_free(b);
		return;
	}
	evbuffer_add_printf(b, "# HELP operatord_up The daemon answers.\n# TYPE operatord_up gauge\n"
	    "operatord_up 1\n");
	evbuffer_add_printf(b, "# HELP operatord_uptime_seconds Seconds since start.\n"
	    "# TYPE operatord_uptime_seconds gauge\noperatord_uptime_seconds %.3f\n",
	    (double)(op_mono_ms() - od->started_mono) / 1000.0);
	evbuffer_add_printf(b, "# HELP operatord_kill_switch 1 while no action may run.\n"
	    "# TYPE operatord_kill_switch gauge\noperatord_kill_switch %d\n", od->kill_switch);
	evbuffer_add_printf(b, "# HELP operatord_mode The current mode.\n# TYPE operatord_mode gauge\n");
	static const char *const modes[] = {"observe", "approve", "execute"};
	for (size_t i = 0; i < OP_ARRAY_LEN(modes); i++)
		evbuffer_add_printf(b, "operatord_mode{mode=\"%s\"} %d\n", modes[i],
		    strcmp(od->mode, modes[i]) == 0);
	evbuffer_add_printf(b, "# HELP operatord_worker_ready 1 when the worker is ready.\n"
	    "# TYPE operatord_worker_ready gauge\n");
	for (int i = 0; i < OD_NWORKERS; i++)
		evbuffer_add_printf(b, "operatord_worker_ready{worker=\"%s\"} %d\n", od->w[i].name,
		    od->w[i].state == OD_W_READY);
	evbuffer_add_printf(b, "# HELP operatord_worker_restarts_total Restarts since start.\n"
	    "# TYPE operatord_worker_restarts_total counter\n");
	for (int i = 0; i < OD_NWORKERS; i++)
		evbuffer_add_printf(b, "operatord_worker_restarts_total{worker=\"%s\"} %d\n",
		    od->w[i].name, od->w[i].restarts);
	evbuffer_add_printf(b, "# HELP operatord_events_total Events recorded in the ledger.\n"
	    "# TYPE operatord_events_total counter\noperatord_events_total %lld\n",
	    (long long)ledger_scalar(od->ledger, 0, "SELECT MAX(seq) FROM events", ""));
	metrics_group(b, "operatord_tickets", "Tickets by status.", "status",
	    "SELECT status AS k, COUNT(*) AS n FROM tickets GROUP BY status");
	metrics_group(b, "operatord_actions", "Actions by status.", "status",
	    "SELECT status AS k, COUNT(*) AS n FROM actions GROUP BY status");
	metrics_group(b, "operatord_verifications", "Verifications by result.", "result",
	    "SELECT result AS k, COUNT(*) AS n FROM verifications GROUP BY result");
	metrics_group(b, "operatord_faults", "Chaos faults by status.", "status",
	    "SELECT status AS k, COUNT(*) AS n FROM faults GROUP BY status");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

int
metrics_open(const char *listen, char *err, size_t errlen)
{
	char host[256];
	int port;

	if (listen == NULL || *listen == '\0')
		return 0;
	if (op_split_hostport(listen, host, sizeof(host), &port) != 0) {
		snprintf(err, errlen, "[operatord] metrics_listen: \"%s\" is not HOST:PORT", listen);
		return -1;
	}
	metrics_http = evhttp_new(od->base);
	if (metrics_http == NULL || evhttp_bind_socket(metrics_http, host, (ev_uint16_t)port) != 0) {
		snprintf(err, errlen, "[operatord] metrics_listen: cannot listen on %s", listen);
		return -1;
	}
	evhttp_set_allowed_methods(metrics_http, EVHTTP_REQ_GET);
	evhttp_set_cb(metrics_http, "/metrics", metrics_serve, NULL);
	log_info("metrics on http://%s/metrics", listen);
	return 0;
}

void
metrics_close(void)
{
	if (metrics_http)
		evhttp_free(metrics_http);
	metrics_http = NULL;
}
