/* tikv_subject: a TiKV cluster as a subject: configuration, the helpers its
 * parts share, the expected outcome of an action, and the operations table.
 * The observation is built in tikv_observe.c and judged in tikv_check.c; all
 * of PD's API is in pdclient.c (requests) and pd_parse.c (decoding).
 *
 * PD is the source of truth for stores, regions and leaders, but it only
 * calls a silent store Disconnected after 20 s; the probe (GET /status)
 * sees a killed store within one poll.
 *
 * The observation stays small at any scale: per-store figures, region counts
 * by category and a few sample ids, never the region list. When PD does not
 * answer, the observation still succeeds with pd.ok = false (the stores
 * known from the last good read, probed): pd_unreachable opens and every
 * other reading is BAND, so nothing is opened or resolved on data PD did
 * not give; "complete" is false, so no firing entity counts as healed for
 * lack of a reading. observe itself fails only when out of memory. */
#include "subjects/tikv/tikv_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

static const struct op_invariant_def tikv_invariants[] = {
	{TIKV_INV_STORE_DOWN, "critical", 0, 2000,
	    "a TiKV store does not answer its status probe, or PD reports it Disconnected, "
	    "Down or Offline"},
	{TIKV_INV_IMBALANCE, "warning", 2000, 3000,
	    "leader counts across the stores that can serve leaders (Up, answering, not "
	    "evicted) differ by more than max(leader_tolerance_min, leader_tolerance x mean)"},
	/* brief elections are normal: only a region leaderless for 3 s is news */
	{TIKV_INV_LEADERLESS, "critical", 3000, 2000,
	    "regions without a live leader (none reported, or the leader's store is down)"},
	{TIKV_INV_UNDER_REPL, "warning", 5000, 3000,
	    "regions with pending or down peers"},
	{TIKV_INV_PD, "critical", 0, 2000,
	    "PD's API does not answer GET /stores and /regions within the timeout, or answers "
	    "garbage"},
	{TIKV_INV_DISK, "warning", 30000, 30000,
	    "a store's available/capacity ratio is below disk_available_min (Prometheus)"},
	{TIKV_INV_LATENCY, "warning", 30000, 30000,
	    "a store's gRPC p99 latency is above latency_p99 (Prometheus)"},
};

/* ------------------------------------------------------------------ */
/* configuration */

static int
tikv_cfg_url(const struct op_config *cfg, const char *key, int required, char *out,
    size_t outlen, char *err, size_t errlen)
{
	const char *v = op_config_get(cfg, TIKV_SECTION, key);

	out[0] = '\0';
	if (v == NULL || *v == '\0') {
		if (required)
			snprintf(err, errlen, "[" TIKV_SECTION "] %s: required (http://HOST:PORT)", key);
		return required ? -1 : 0;
	}
	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
		snprintf(err, errlen, "[" TIKV_SECTION "] %s: \"%s\" is not an http(s) URL", key, v);
		return -1;
	}
	const char *host = strstr(v, "://") + 3;
	if (*host == '\0' || *host == '/' || *host == ':') {
		snprintf(err, errlen, "[" TIKV_SECTION "] %s: \"%s\" has no host", key, v);
		return -1;
	}
	if (op_strlcpy(out, v, outlen) >= outlen) {
		snprintf(err, errlen, "[" TIKV_SECTION "] %s: URL longer than %zu bytes", key,
		    outlen - 1);
		return -1;
	}
	size_t n = strlen(out);
	while (n > 0 && out[n - 1] == '/')
		out[--n] = '\0';
	return 0;
}

static int
tikv_cfg_ratio(const struct op_config *cfg, const char *key, double def, double min, double max,
    double *out, char *err, size_t errlen)
{
	const char *v = op_config_get(cfg, TIKV_SECTION, key);
	char *end;

	*out = def;
	if (v == NULL)
		return 0;
	double d = strtod(v, &end);
	if (end == v || *end != '\0' || !isfinite(d) || d < min || d > max) {
		snprintf(err, errlen, "[" TIKV_SECTION "] %s: \"%s\" is not a number in %g..%g", key,
		    v, min, max);
		return -1;
	}
	*out = d;
	return 0;
}

static int
tikv_cfg_read(struct tikv_priv *p, const struct op_config *cfg, char *err, size_t errlen)
{
	struct pd_err pe;

	if (tikv_cfg_url(cfg, "pd", 1, p->pd_url, sizeof(p->pd_url), err, errlen) != 0 ||
	    tikv_cfg_url(cfg, "prometheus", 0, p->prom_url, sizeof(p->prom_url), err, errlen) != 0)
		return -1;
	if (op_config_duration(cfg, TIKV_SECTION, "timeout", TIKV_DEF_TIMEOUT_MS, &p->timeout_ms,
		err, errlen) != 0)
		return -1;
	if (p->timeout_ms < 10 || p->timeout_ms > 120000) {
		snprintf(err, errlen, "[" TIKV_SECTION "] timeout: must be between 10ms and 2m");
		return -1;
	}
	if (op_config_duration(cfg, TIKV_SECTION, "probe_timeout", TIKV_DEF_PROBE_MS, &p->probe_ms,
		err, errlen) != 0)
		return -1;
	if (p->probe_ms < 10 || p->probe_ms > 60000) {
		snprintf(err, errlen, "[" TIKV_SECTION "] probe_timeout: must be between 10ms and 60s");
		return -1;
	}
	if (op_config_duration(cfg, TIKV_SECTION, "election_wait", TIKV_DEF_ELECTION_WAIT_MS,
		&p->election_wait_ms, err, errlen) != 0)
		return -1;
	if (p->election_wait_ms > 60000) {
		snprintf(err, errlen, "[" TIKV_SECTION "] election_wait: at most 60s");
		return -1;
	}
	if (tikv_cfg_ratio(cfg, "leader_tolerance", TIKV_DEF_TOLERANCE, 0, 10, &p->tolerance, err,
		errlen) != 0 ||
	    tikv_cfg_ratio(cfg, "disk_available_min", TIKV_DEF_DISK_MIN, 0, 1, &p->disk_min, err,
		errlen) != 0)
		return -1;
	if (op_config_int(cfg, TIKV_SECTION, "leader_tolerance_min", TIKV_DEF_TOLERANCE_MIN, 0,
		1000000, &p->tolerance_min, err, errlen) != 0)
		return -1;
	if (op_config_int(cfg, TIKV_SECTION, "max_operators", TIKV_DEF_MAX_OPERATORS, 1, 10000,
		&p->max_operators, err, errlen) != 0)
		return -1;
	if (op_config_duration(cfg, TIKV_SECTION, "latency_p99", TIKV_DEF_LATENCY_P99_MS,
		&p->latency_p99_ms, err, errlen) != 0)
		return -1;
	if (p->latency_p99_ms < 1) {
		snprintf(err, errlen, "[" TIKV_SECTION "] latency_p99: must be at least 1ms");
		return -1;
	}
	if (pd_client_init(&p->pd, p->pd_url, p->timeout_ms, p->timeout_ms, &pe) != 0) {
		snprintf(err, errlen, "[" TIKV_SECTION "] pd: %s", pe.message);
		return -1;
	}
	return 0;
}

static int
tikv_create(struct op_subject *s, const struct op_config *cfg, char *err, size_t errlen)
{
	struct tikv_priv *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (tikv_cfg_read(p, cfg, err, errlen) != 0) {
		free(p);
		return -1;
	}
	s->priv = p;
	return 0;
}

static void
tikv_destroy(struct op_subject *s)
{
	free(s->priv);
	s->priv = NULL;
}

/* ------------------------------------------------------------------ */
/* shared helpers */

json_object *
tikv_obs_store(json_object *obs, uint64_t id)
{
	json_object *a = op_json_arr(obs, "stores");

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (op_json_u64(st, "id", 0) == id)
			return st;
	}
	return NULL;
}

int
tikv_obs_pd_ok(json_object *obs)
{
	return op_json_bool(op_json_obj(obs, "pd"), "ok", 0);
}

void
tikv_balance_of(const struct tikv_priv *p, json_object *obs, struct tikv_balance *b)
{
	json_object *a = op_json_arr(obs, "stores");

	memset(b, 0, sizeof(*b));
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (!op_json_bool(st, "serving", 0))
			continue;
		int64_t n = op_json_int(st, "leaders", 0);
		uint64_t id = op_json_u64(st, "id", 0);
		if (b->nserving == 0 || n < b->min) {
			b->min = n;
			b->min_store = id;
		}
		if (b->nserving == 0 || n > b->max) {
			b->max = n;
			b->max_store = id;
		}
		b->total += n;
		b->nserving++;
	}
	if (b->nserving == 0)
		return;
	b->mean = (double)b->total / (double)b->nserving;
	b->spread = b->max - b->min;
	b->allowed = fmax((double)p->tolerance_min, p->tolerance * b->mean);
}

void
tikv_status_url(const char *addr, char *out, size_t outlen)
{
	/* TiKV advertises host:port; a scheme, if any, is kept */
	if (strstr(addr, "://") != NULL)
		snprintf(out, outlen, "%s/status", addr);
	else
		snprintf(out, outlen, "http://%s/status", addr);
}

void
tikv_req_get(struct op_http_req *r, const char *url, int64_t timeout_ms)
{
	memset(r, 0, sizeof(*r));
	r->url = url;
	r->timeout_ms = timeout_ms;
	/* a dead host must not take the default connect timeout when ours is shorter */
	r->connect_timeout_ms = timeout_ms;
}

void
tikv_probe_result(struct op_http_req *r, int *ok, char *err, size_t errlen)
{
	*ok = 0;
	if (r->err[0])
		snprintf(err, errlen, "%s", r->err);
	else if (r->status != 200)
		snprintf(err, errlen, "HTTP %ld", r->status);
	else {
		*ok = 1;
		err[0] = '\0';
	}
}

void
tikv_probe(const struct tikv_priv *p, const char *const *addrs, size_t n, int *ok,
    char (*err)[128], int64_t *ms)
{
	struct op_http_req *reqs = calloc(n ? n : 1, sizeof(*reqs));
	char (*urls)[TIKV_URL_MAX] = calloc(n ? n : 1, sizeof(*urls));

	if (reqs == NULL || urls == NULL) {
		for (size_t i = 0; i < n; i++) {
			ok[i] = 0;
			snprintf(err[i], sizeof(err[i]), "out of memory");
		}
		free(reqs);
		free(urls);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		tikv_status_url(addrs[i], urls[i], sizeof(urls[i]));
		tikv_req_get(&reqs[i], urls[i], p->probe_ms);
	}
	op_http_multi(reqs, n);
	for (size_t i = 0; i < n; i++) {
		tikv_probe_result(&reqs[i], &ok[i], err[i], sizeof(err[i]));
		if (ms)
			ms[i] = reqs[i].elapsed_ms;
		op_http_req_reset(&reqs[i]);
	}
	free(reqs);
	free(urls);
}

/* GET /schedulers first: PD answers the evict-leader store list only while
 * that scheduler exists. Used by actions, which need a fresh answer. */
int
tikv_read_evicted(const struct tikv_priv *p, uint64_t *ids, size_t max, size_t *n, char *err,
    size_t errlen)
{
	struct pd_err pe;

	if (pd_get_evicted(&p->pd, ids, max, n, &pe) != 0) {
		snprintf(err, errlen, "%s", pe.message);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* outcome: a store_down ticket is fixed when the surviving stores serve
 * balanced, not when the dead store comes back. */

static int
tikv_outcome(struct op_subject *s, const char *invariant, const char *entity,
    const char *action, json_object *params, json_object *obs, struct op_reading *out)
{
	const struct tikv_priv *p = s->priv;
	struct tikv_balance b;

	(void)params;
	memset(out, 0, sizeof(*out));
	out->invariant = invariant;
	op_strlcpy(out->entity, entity, sizeof(out->entity));
	if (!tikv_obs_pd_ok(obs)) {
		/* never evidence of a fix, whatever the ticket */
		out->state = OP_RD_BAND;
		out->evidence = json_object_new_object();
		op_json_set_str(out->evidence, "pd_error",
		    op_json_str(op_json_obj(obs, "pd"), "error", "unknown"));
		snprintf(out->message, sizeof(out->message), "PD unreachable: cannot judge %s",
		    invariant);
		return 1;
	}
	if (strcmp(invariant, TIKV_INV_STORE_DOWN) != 0 && strcmp(invariant, TIKV_INV_IMBALANCE) != 0 &&
	    strcmp(invariant, TIKV_INV_LEADERLESS) != 0)
		return 0;
	if (strcmp(action, "rebalance_leaders") != 0 && strcmp(action, "transfer_leader") != 0)
		return 0;
	json_object *r = op_json_obj(obs, "regions");
	int64_t leaderless = tikv_elections_pending(obs);
	/* a dead store's peers stay pending until it returns or PD replaces them:
	 * only pending peers on live stores say the survivors are not serving */
	int64_t pending = op_json_int(r, "pending_peers_on_live_stores", 0);
	tikv_balance_of(p, obs, &b);
	int balanced = b.nserving < 2 || (double)b.spread <= b.allowed;
	int ok = leaderless == 0 && balanced && pending == 0 && b.nserving > 0;

	out->state = ok ? OP_RD_HEALTHY : OP_RD_VIOLATED;
	out->value = (double)b.spread;
	out->threshold = b.allowed;
	out->evidence = tikv_balance_evidence(p, obs, &b);
	op_json_set_int(out->evidence, "leaderless", leaderless);
	op_json_set_int(out->evidence, "pending", pending);
	op_json_set_int(out->evidence, "regions", op_json_int(r, "count", 0));
	snprintf(out->message, sizeof(out->message),
	    "%s: %lld region(s) without a live leader, leader spread %lld (allowed %.1f) over "
	    "%zu serving store(s), %lld pending peer(s) on live stores", ok ? "served and balanced"
	    : "not yet", (long long)leaderless, (long long)b.spread, b.allowed, b.nserving,
	    (long long)pending);
	return 1;
}

const struct op_subject_ops tikv_subject_ops = {
	.name = TIKV_SUBJECT,
	.description =
	    "A TiKV cluster managed by PD. PD (HTTP API /pd/api/v1) is the source of truth for "
	    "stores (TiKV processes), regions (key ranges replicated on 3 stores by raft) and "
	    "their leaders. A killed store stops heartbeating: raft elects new leaders among the "
	    "surviving voters after an election timeout (10-20 s on real TiKV), PD marks the store "
	    "Disconnected after 20 s and Down after max-store-down-time (30 min), then re-replicates "
	    "its peers. Leaders do not come back by themselves: PD's balance-leader moves them "
	    "slowly (4 at a time). Operators: transfer-leader (to a healthy voter on an Up store "
	    "not under evict-leader), add/remove/transfer peer, one operator per region. operatord "
	    "probes each store's status address directly, so a dead store is seen at once.",
	.invariants = tikv_invariants,
	.ninvariants = OP_ARRAY_LEN(tikv_invariants),
	.actions = tikv_actions,
	.nactions = TIKV_NACTIONS,
	.faults = tikv_faults,
	.nfaults = TIKV_NFAULTS,
	.create = tikv_create,
	.destroy = tikv_destroy,
	.observe = tikv_observe,
	.check = tikv_check,
	.diagnose = tikv_diagnose,
	.precheck = tikv_precheck,
	.execute = tikv_execute,
	.outcome = tikv_outcome,
	.inject = tikv_inject,
	.undo = tikv_undo,
};
