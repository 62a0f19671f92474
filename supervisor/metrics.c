/* metrics: the daemon's own Prometheus endpoint (text format 0.0.4), served
 * from the supervisor's event loop. Counts come from the ledger at scrape
 * time, so they survive restarts and never drift from what is recorded.
 * Every family has HELP and TYPE, counters end in _total, durations are in
 * seconds: `promtool check metrics` accepts it (tests/check_ecosystem.c). */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/alerts.h"
#include "supervisor/ha.h"
#include "supervisor/metrics.h"
#include "supervisor/od.h"

/* Histogram upper bounds, seconds: detection takes seconds, a verified fix
 * verify_delay + settle and more, a human-approved one minutes to hours. */
static const double metrics_buckets[] = {0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600};

/* Every ticket status, so a graph has a series at 0 before the first one. */
static const char *const metrics_ticket_states[] = {"open", "diagnosing", "diagnosed",
	"awaiting_approval", "acting", "retry_wait", "verifying", "escalated", "resolved", "cleared",
	"rejected"};

/* Action statuses that are final: an action counted here never moves again. */
#define METRICS_ACTION_FINAL \
	"('executed','failed','skipped','cancelled','rejected','expired','shadowed','undone')"

static struct evhttp *metrics_http;

static void
metrics_head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with backslash, double quote and newline escaped. */
static void
metrics_value(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(b, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, s, 1);
	}
}

static void
metrics_tickets(struct evbuffer *b)
{
	json_object *rows = ledger_rows(od->ledger,
	    "SELECT status AS k, COUNT(*) AS n FROM tickets GROUP BY status", "");

	metrics_head(b, "operatord_tickets", "gauge", "Tickets by status.");
	for (size_t s = 0; s < OP_ARRAY_LEN(metrics_ticket_states); s++) {
		long long n = 0;
		for (size_t i = 0; i < json_object_array_length(rows); i++) {
			json_object *r = json_object_array_get_idx(rows, i);
			if (!strcmp(op_json_str(r, "k", ""), metrics_ticket_states[s]))
				n = (long long)op_json_int(r, "n", 0);
		}
		evbuffer_add_printf(b, "operatord_tickets{status=\"%s\"} %lld\n",
		    metrics_ticket_states[s], n);
	}
	json_object_put(rows);
}

/* rows of {k1, k2, ..., n}: one sample per row, labels named in order. */
static void
metrics_rows(struct evbuffer *b, const char *name, const char *type, const char *help,
    const char *const *labels, size_t nlabels, const char *sql)
{
	json_object *rows = ledger_rows(od->ledger, sql, "");
	static const char *const cols[] = {"k1", "k2", "k3"};

	metrics_head(b, name, type, help);
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		evbuffer_add_printf(b, "%s{", name);
		for (size_t l = 0; l < nlabels && l < OP_ARRAY_LEN(cols); l++) {
			evbuffer_add_printf(b, "%s%s=\"", l ? "," : "", labels[l]);
			metrics_value(b, op_json_str(r, cols[l], ""));
			evbuffer_add(b, "\"", 1);
		}
		evbuffer_add_printf(b, "} %lld\n", (long long)op_json_int(r, "n", 0));
	}
	json_object_put(rows);
}

/* A histogram of durations the SQL returns in milliseconds (column ms). */
static void
metrics_histogram(struct evbuffer *b, const char *name, const char *help, const char *sql,
    const char *binds, int64_t bind)
{
	json_object *rows = binds[0] ? ledger_rows(od->ledger, sql, binds, bind)
				     : ledger_rows(od->ledger, sql, "");
	size_t counts[OP_ARRAY_LEN(metrics_buckets)] = {0}, total = 0;
	double sum = 0;

	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		double s = (double)op_json_int(r, "ms", 0) / 1000.0;
		if (s < 0)
			continue; /* clock stepped back between the two records */
		total++;
		sum += s;
		for (size_t k = 0; k < OP_ARRAY_LEN(metrics_buckets); k++)
			if (s <= metrics_buckets[k])
				counts[k]++;
	}
	json_object_put(rows);
	metrics_head(b, name, "histogram", help);
	for (size_t k = 0; k < OP_ARRAY_LEN(metrics_buckets); k++)
		evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %zu\n", name, metrics_buckets[k],
		    counts[k]);
	evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %zu\n%s_sum %.3f\n%s_count %zu\n", name,
	    total, name, sum, name, total);
}

static void
metrics_budgets(struct evbuffer *b)
{
	json_object *st = policy_status();
	json_object *budgets = op_json_obj(st, "budgets");
	json_object *dz = op_json_obj(st, "destructive_today");

	metrics_head(b, "operatord_budget_left", "gauge",
	    "Actions a token bucket still allows (scope action:SUBJECT:ACTION or subject:SUBJECT); "
	    "an unused bucket is full and not listed.");
	for (size_t i = 0; budgets && i < json_object_array_length(budgets); i++) {
		json_object *o = json_object_array_get_idx(budgets, i);
		evbuffer_add_printf(b, "operatord_budget_left{scope=\"");
		metrics_value(b, op_json_str(o, "scope", ""));
		evbuffer_add_printf(b, "\"} %.3f\n", op_json_double(o, "left", 0));
	}
	metrics_head(b, "operatord_budget_capacity", "gauge",
	    "Capacity of the token buckets (0: unlimited).");
	json_object *lim = op_json_obj(st, "limits");
	evbuffer_add_printf(b, "operatord_budget_capacity{kind=\"action\"} %lld\n"
	    "operatord_budget_capacity{kind=\"subject\"} %lld\n",
	    (long long)op_json_int(lim, "per_action", 0), (long long)op_json_int(lim, "per_subject", 0));
	metrics_head(b, "operatord_destructive_actions_today", "gauge",
	    "High-risk actions run this UTC day.");
	evbuffer_add_printf(b, "operatord_destructive_actions_today %lld\n",
	    (long long)op_json_int(dz, "used", 0));
	if (op_json_int(dz, "cap", 0) > 0) {
		metrics_head(b, "operatord_destructive_actions_left", "gauge",
		    "High-risk actions still allowed this UTC day.");
		evbuffer_add_printf(b, "operatord_destructive_actions_left %lld\n",
		    (long long)op_json_int(dz, "left", 0));
	}
	json_object_put(st);
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
	metrics_head(b, "operatord_up", "gauge", "The daemon answers.");
	evbuffer_add_printf(b, "operatord_up 1\n");
	metrics_head(b, "operatord_build_info", "gauge", "The running version.");
	evbuffer_add_printf(b, "operatord_build_info{version=\"%s\"} 1\n", OP_VERSION);
	metrics_head(b, "operatord_uptime_seconds", "gauge", "Seconds since start.");
	evbuffer_add_printf(b, "operatord_uptime_seconds %.3f\n",
	    (double)(op_mono_ms() - od->started_mono) / 1000.0);
	metrics_head(b, "operatord_kill_switch", "gauge", "1 while no action may run.");
	evbuffer_add_printf(b, "operatord_kill_switch %d\n", od->kill_switch);
	metrics_head(b, "operatord_refused_transitions_total", "counter",
	    "Ticket or action status changes the state machine refused (a bug if not 0).");
	evbuffer_add_printf(b, "operatord_refused_transitions_total %llu\n",
	    (unsigned long long)ticket_refused_transitions());
	metrics_head(b, "operatord_mode", "gauge", "1 for the current mode.");
	static const char *const modes[] = {"observe", "approve", "execute"};
	for (size_t i = 0; i < OP_ARRAY_LEN(modes); i++)
		evbuffer_add_printf(b, "operatord_mode{mode=\"%s\"} %d\n", modes[i],
		    strcmp(od->mode, modes[i]) == 0);
	metrics_head(b, "operatord_worker_ready", "gauge", "1 when the worker is ready.");
	for (int i = 0; i < OD_NWORKERS; i++)
		evbuffer_add_printf(b, "operatord_worker_ready{worker=\"%s\"} %d\n", od->w[i].name,
		    od->w[i].state == OD_W_READY);
	metrics_head(b, "operatord_worker_restarts_total", "counter",
	    "Worker restarts since the daemon started.");
	for (int i = 0; i < OD_NWORKERS; i++)
		evbuffer_add_printf(b, "operatord_worker_restarts_total{worker=\"%s\"} %d\n",
		    od->w[i].name, od->w[i].restarts);
	metrics_head(b, "operatord_events_total", "counter", "Events recorded in the ledger.");
	evbuffer_add_printf(b, "operatord_events_total %lld\n",
	    (long long)ledger_scalar(od->ledger, 0, "SELECT MAX(seq) FROM events", ""));
	metrics_tickets(b);
	static const char *const l_status[] = {"status"};
	static const char *const l_sar[] = {"subject", "action", "result"};
	static const char *const l_result[] = {"result"};
	metrics_rows(b, "operatord_actions", "gauge", "Actions by status.", l_status, 1,
	    "SELECT status AS k1, COUNT(*) AS n FROM actions GROUP BY status");
	metrics_rows(b, "operatord_actions_finished_total", "counter",
	    "Actions that reached a final status, by subject, action name and result.", l_sar, 3,
	    "SELECT subject AS k1, name AS k2, status AS k3, COUNT(*) AS n FROM actions"
	    " WHERE status IN " METRICS_ACTION_FINAL " GROUP BY subject, name, status");
	metrics_rows(b, "operatord_verifications_total", "counter", "Verifications by result.",
	    l_result, 1, "SELECT result AS k1, COUNT(*) AS n FROM verifications GROUP BY result");
	metrics_rows(b, "operatord_faults", "gauge", "Chaos faults by status.", l_status, 1,
	    "SELECT status AS k1, COUNT(*) AS n FROM faults GROUP BY status");
	metrics_histogram(b, "operatord_time_to_detect_seconds",
	    "From an injected fault to the ticket it caused (tickets opened within the postmortem "
	    "lookback after a fault on their subject).",
	    "SELECT ms FROM (SELECT t.opened_at - (SELECT MAX(f.started_at) FROM faults f"
	    " WHERE f.subject=t.subject AND f.started_at<=t.opened_at"
	    " AND f.started_at>=t.opened_at-?1) AS ms FROM tickets t) WHERE ms IS NOT NULL",
	    "i", OD_FAULT_LOOKBACK_MS);
	metrics_histogram(b, "operatord_time_to_verified_fix_seconds",
	    "From a ticket opening to the verification that closed it resolved.",
	    "SELECT ms FROM (SELECT (SELECT MAX(v.finished_at) FROM verifications v"
	    " WHERE v.ticket_id=t.id AND v.result='success') - t.opened_at AS ms"
	    " FROM tickets t WHERE t.status='resolved') WHERE ms IS NOT NULL", "", 0);
	metrics_budgets(b);
	alerts_metrics(b);
	ha_metrics(b); /* [ha] role and term per subject */
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
