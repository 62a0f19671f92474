/* tikv_subject: a TiKV cluster as a subject, seen through PD's v1 HTTP API
 * plus a direct probe of every store's status address.
 *
 * PD is the source of truth for stores, regions and leaders, but it only
 * calls a silent store Disconnected after 20 s; the probe (GET /status)
 * sees a killed store within one poll. Every PD read and every probe of an
 * observation runs in parallel (op_http_multi): the probes use the store
 * list of the previous observation, and stores PD reveals for the first time
 * are probed in a second round.
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

#define PD_API "/pd/api/v1"

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

static void
tikv_status_url(const char *addr, char *out, size_t outlen)
{
	/* TiKV advertises host:port; a scheme, if any, is kept */
	if (strstr(addr, "://") != NULL)
		snprintf(out, outlen, "%s/status", addr);
	else
		snprintf(out, outlen, "http://%s/status", addr);
}

static void
tikv_req_get(struct op_http_req *r, const char *url, int64_t timeout_ms)
{
	memset(r, 0, sizeof(*r));
	r->url = url;
	r->timeout_ms = timeout_ms;
	/* a dead host must not take the default connect timeout when ours is shorter */
	r->connect_timeout_ms = timeout_ms;
}

static void
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

/* {"store-id-ranges":{"4":[...]},"batch":3}: the keys are the evicted stores. */
static int
tikv_parse_evicted(const char *buf, size_t len, uint64_t *ids, size_t max, size_t *n)
{
	char perr[128];
	json_object *o = op_json_parse(buf, len, perr, sizeof(perr));
	json_object *r = op_json_obj(o, "store-id-ranges");

	*n = 0;
	if (r == NULL) {
		json_object_put(o);
		return -1;
	}
	json_object_object_foreach(r, k, v)
	{
		uint64_t id;
		(void)v;
		if (*n < max && op_parse_u64(k, &id) == 0)
			ids[(*n)++] = id;
	}
	json_object_put(o);
	return 0;
}

/* GET /schedulers first: PD answers the evict-leader store list only while
 * that scheduler exists. Used by actions, which need a fresh answer. */
int
tikv_read_evicted(const struct tikv_priv *p, uint64_t *ids, size_t max, size_t *n, char *err,
    size_t errlen)
{
	struct pd_strlist l;
	struct pd_err pe;
	struct op_http_req r;
	char url[TIKV_URL_MAX];
	int rc = 0;

	*n = 0;
	if (pd_get_schedulers(&p->pd, &l, &pe) != 0) {
		snprintf(err, errlen, "%s", pe.message);
		return -1;
	}
	int evicting = pd_strlist_contains(&l, "evict-leader-scheduler");
	pd_strlist_free(&l);
	if (!evicting)
		return 0;
	snprintf(url, sizeof(url), "%s" PD_API "/scheduler-config/evict-leader-scheduler/list",
	    p->pd_url);
	tikv_req_get(&r, url, p->timeout_ms);
	if (op_http_do(&r) != 0 || r.status != 200 ||
	    tikv_parse_evicted(r.resp, r.resp_len, ids, max, n) != 0) {
		snprintf(err, errlen, "GET evict-leader list: %s",
		    r.err[0] ? r.err : r.status != 200 ? "not HTTP 200" : "unexpected body");
		rc = -1;
	}
	op_http_req_reset(&r);
	return rc;
}

/* ------------------------------------------------------------------ */
/* observe */

enum { R_STORES, R_REGIONS, R_HEALTH, R_SCHED, R_EVICT, R_CONFIG, R_PROM_DISK, R_PROM_LAT,
	R_FIXED };

struct tikv_obs_ctx {
	struct op_http_req *reqs;     /* R_FIXED + one probe per store */
	char (*urls)[TIKV_URL_MAX];
	size_t nreq;
	struct pd_stores stores;
	struct pd_regions regions;
	int stores_ok, regions_ok;
	char pd_err[PD_ERR_MSG_LEN];
	/* per store of the current list (index = position in stores.v, or cache when !ok) */
	int *probe_ok;
	char (*probe_err)[128];
	int64_t *probe_ms;
	int *probed;
	uint64_t evicted[TIKV_STORES_MAX];
	size_t nevicted;
	char evict_err[160];
};

static const char *const tikv_prom_disk_q =
    "tikv_store_size_bytes{type=\"available\"} / ignoring(type) "
    "tikv_store_size_bytes{type=\"capacity\"}";
static const char *const tikv_prom_lat_q =
    "histogram_quantile(0.99, sum by (instance, le) "
    "(rate(tikv_grpc_msg_duration_seconds_bucket[1m])))";

static void
tikv_prom_url(const struct tikv_priv *p, const char *q, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = (size_t)snprintf(out, outlen, "%s/api/v1/query?query=", p->prom_url);

	for (const unsigned char *c = (const unsigned char *)q; *c && o + 4 < outlen; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		    *c == '-' || *c == '_' || *c == '.' || *c == '~') {
			out[o++] = (char)*c;
		} else {
			out[o++] = '%';
			out[o++] = hex[*c >> 4];
			out[o++] = hex[*c & 15];
		}
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

/* Body of a successful PD GET, or the error text in why. */
static const char *
tikv_pd_body(struct op_http_req *r, const char *what, char *why, size_t whylen)
{
	struct pd_err pe;

	if (r->err[0]) {
		snprintf(why, whylen, "GET %s: %s", what, r->err);
		return NULL;
	}
	if (r->status < 200 || r->status > 299) {
		pd_parse_error(what, r->status, r->resp, r->resp_len, &pe);
		snprintf(why, whylen, "%s", pe.message);
		return NULL;
	}
	return r->resp ? r->resp : "";
}

static void
tikv_obs_pd_reads(struct tikv_priv *p, struct tikv_obs_ctx *c, json_object *pdj)
{
	struct pd_err pe;
	const char *b;
	char why[PD_ERR_MSG_LEN];

	b = tikv_pd_body(&c->reqs[R_STORES], PD_API "/stores", why, sizeof(why));
	if (b != NULL && pd_parse_stores(b, c->reqs[R_STORES].resp_len, &c->stores, &pe) != 0)
		snprintf(why, sizeof(why), "GET " PD_API "/stores: %s", pe.message), b = NULL;
	c->stores_ok = b != NULL;
	if (!c->stores_ok)
		op_strlcpy(c->pd_err, why, sizeof(c->pd_err));
	b = tikv_pd_body(&c->reqs[R_REGIONS], PD_API "/regions", why, sizeof(why));
	if (b != NULL && pd_parse_regions(b, c->reqs[R_REGIONS].resp_len, &c->regions, &pe) != 0)
		snprintf(why, sizeof(why), "GET " PD_API "/regions: %s", pe.message), b = NULL;
	c->regions_ok = b != NULL;
	if (!c->regions_ok && c->pd_err[0] == '\0')
		op_strlcpy(c->pd_err, why, sizeof(c->pd_err));

	/* health: members and how many PD itself calls healthy */
	struct pd_health_list hl;
	b = tikv_pd_body(&c->reqs[R_HEALTH], PD_API "/health", why, sizeof(why));
	if (b != NULL && pd_parse_health(b, c->reqs[R_HEALTH].resp_len, &hl, &pe) == 0) {
		int64_t healthy = 0;
		for (size_t i = 0; i < hl.count; i++)
			healthy += hl.v[i].health != 0;
		op_json_set_int(pdj, "members", (int64_t)hl.count);
		op_json_set_int(pdj, "members_healthy", healthy);
		pd_health_free(&hl);
	} else {
		op_json_set_str(pdj, "health_error", b ? pe.message : why);
	}

	/* max-store-down-time: the rules explain when PD re-replicates */
	struct pd_schedule_config sc;
	b = tikv_pd_body(&c->reqs[R_CONFIG], PD_API "/config/schedule", why, sizeof(why));
	if (b != NULL && pd_parse_schedule_config(b, c->reqs[R_CONFIG].resp_len, &sc, &pe) == 0) {
		op_json_set_int(pdj, "max_store_down_time_ms", sc.max_store_down_time_ms);
		pd_schedule_config_free(&sc);
	}

	/* evicted stores: the list exists only while the scheduler does */
	struct pd_strlist sl;
	b = tikv_pd_body(&c->reqs[R_SCHED], PD_API "/schedulers", why, sizeof(why));
	if (b != NULL && pd_parse_strlist(b, c->reqs[R_SCHED].resp_len, &sl, &pe) == 0) {
		int evicting = pd_strlist_contains(&sl, "evict-leader-scheduler");
		pd_strlist_free(&sl);
		struct op_http_req *r = &c->reqs[R_EVICT];
		if (evicting && (r->err[0] || r->status != 200 ||
		    tikv_parse_evicted(r->resp, r->resp_len, c->evicted, TIKV_STORES_MAX,
			&c->nevicted) != 0))
			snprintf(c->evict_err, sizeof(c->evict_err),
			    "evict-leader-scheduler runs but its store list is unreadable");
	} else {
		snprintf(c->evict_err, sizeof(c->evict_err), "%s", b ? pe.message : why);
	}
}

static int
tikv_is_evicted(const struct tikv_obs_ctx *c, uint64_t id)
{
	for (size_t i = 0; i < c->nevicted; i++)
		if (c->evicted[i] == id)
			return 1;
	return 0;
}

/* Sorted (id, index) pairs: 100k regions x 3 peers need a fast store lookup. */
struct tikv_idx {
	uint64_t id;
	size_t i;
};

static int
tikv_idx_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct tikv_idx *)a)->id, y = ((const struct tikv_idx *)b)->id;

	return x < y ? -1 : x > y;
}

static long
tikv_idx_find(const struct tikv_idx *ix, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ix[mid].id == id)
			return (long)ix[mid].i;
		if (ix[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

struct tikv_store_acc {
	int64_t leaders, regions, pending, down;
	int live;
};

static void
tikv_sample(json_object *arr, uint64_t id)
{
	if (json_object_array_length(arr) < TIKV_SAMPLES_MAX)
		json_object_array_add(arr, json_object_new_uint64(id));
}

/* Region figures: counts by category, per-store counts, a few sample ids. */
static json_object *
tikv_obs_regions(const struct pd_regions *rs, const struct tikv_idx *ix, size_t nst,
    struct tikv_store_acc *acc)
{
	json_object *j = json_object_new_object(), *samples = json_object_new_object();
	json_object *s_ll = json_object_new_array(), *s_dead = json_object_new_array();
	json_object *s_ur = json_object_new_array();
	int64_t leaderless = 0, on_dead = 0, pending_regions = 0, down_regions = 0, under = 0;
	int64_t pending_live = 0, max_peers = 0;

	for (size_t r = 0; r < rs->count; r++) {
		const struct pd_region *rg = &rs->v[r];
		if ((int64_t)rg->n_peers > max_peers)
			max_peers = (int64_t)rg->n_peers;
		for (size_t k = 0; k < rg->n_peers; k++) {
			long si = tikv_idx_find(ix, nst, rg->peers[k].store_id);
			if (si >= 0)
				acc[si].regions++;
		}
		if (!rg->has_leader) {
			leaderless++;
			tikv_sample(s_ll, rg->id);
		} else {
			long si = tikv_idx_find(ix, nst, rg->leader.store_id);
			if (si >= 0)
				acc[si].leaders++;
			/* PD keeps showing a dead leader until raft elects another */
			if (si < 0 || !acc[si].live) {
				on_dead++;
				tikv_sample(s_dead, rg->id);
			}
		}
		for (size_t k = 0; k < rg->n_pending; k++) {
			long si = tikv_idx_find(ix, nst, rg->pending_peers[k].store_id);
			if (si >= 0) {
				acc[si].pending++;
				pending_live += acc[si].live;
			}
		}
		for (size_t k = 0; k < rg->n_down; k++) {
			long si = tikv_idx_find(ix, nst, rg->down_peers[k].peer.store_id);
			if (si >= 0)
				acc[si].down++;
		}
		pending_regions += rg->n_pending > 0;
		down_regions += rg->n_down > 0;
		if (rg->n_pending > 0 || rg->n_down > 0) {
			under++;
			tikv_sample(s_ur, rg->id);
		}
	}
	op_json_set_int(j, "count", (int64_t)rs->count);
	op_json_set_int(j, "leaderless", leaderless);
	op_json_set_int(j, "leader_on_dead_store", on_dead);
	op_json_set_int(j, "pending_regions", pending_regions);
	op_json_set_int(j, "down_regions", down_regions);
	op_json_set_int(j, "under_replicated", under);
	op_json_set_int(j, "pending_peers_on_live_stores", pending_live);
	op_json_set_int(j, "max_peers", max_peers);
	json_object_object_add(samples, "leaderless", s_ll);
	json_object_object_add(samples, "leader_on_dead_store", s_dead);
	json_object_object_add(samples, "under_replicated", s_ur);
	json_object_object_add(j, "samples", samples);
	return j;
}

/* Prometheus instant vector: value per instance label, matched to a store
 * by its status address (TiKV's metrics come from the status port). */
static void
tikv_prom_apply(struct op_http_req *r, json_object *stores, const char *field, double scale,
    json_object *pdj, const char *errkey)
{
	char perr[128];
	json_object *o, *res;

	if (r->err[0] || r->status != 200) {
		op_json_set_str(pdj, errkey, r->err[0] ? r->err : "prometheus: not HTTP 200");
		return;
	}
	o = op_json_parse(r->resp, r->resp_len, perr, sizeof(perr));
	res = op_json_arr(op_json_obj(o, "data"), "result");
	if (res == NULL) {
		op_json_set_str(pdj, errkey, o ? "prometheus: no data.result" : perr);
		json_object_put(o);
		return;
	}
	for (size_t i = 0; i < json_object_array_length(res); i++) {
		json_object *e = json_object_array_get_idx(res, i);
		const char *inst = op_json_str(op_json_obj(e, "metric"), "instance", "");
		json_object *val = op_json_arr(e, "value");
		json_object *vs = val ? json_object_array_get_idx(val, 1) : NULL;
		if (vs == NULL || !json_object_is_type(vs, json_type_string))
			continue;
		double d = strtod(json_object_get_string(vs), NULL);
		if (!isfinite(d))
			continue;
		for (size_t k = 0; k < json_object_array_length(stores); k++) {
			json_object *st = json_object_array_get_idx(stores, k);
			if (strcmp(op_json_str(st, "status_address", "-"), inst) == 0)
				json_object_object_add(st, field, json_object_new_double(d * scale));
		}
	}
	json_object_put(o);
}

static void
tikv_cache_update(struct tikv_priv *p, const struct pd_stores *ss)
{
	size_t n = 0;

	for (size_t i = 0; i < ss->count && n < TIKV_STORES_MAX; i++) {
		const struct pd_store *st = &ss->v[i];
		if (st->state == PD_STORE_TOMBSTONE)
			continue;
		p->cache[n].id = st->id;
		op_strlcpy(p->cache[n].status_address, st->status_address,
		    sizeof(p->cache[n].status_address));
		op_strlcpy(p->cache[n].address, st->address, sizeof(p->cache[n].address));
		op_strlcpy(p->cache[n].state_name, st->state_name, sizeof(p->cache[n].state_name));
		n++;
	}
	p->ncache = n;
}

static long
tikv_cache_find(const struct tikv_priv *p, uint64_t id, const char *status_address)
{
	for (size_t i = 0; i < p->ncache; i++)
		if (p->cache[i].id == id && strcmp(p->cache[i].status_address, status_address) == 0)
			return (long)i;
	return -1;
}

static json_object *
tikv_store_entry(uint64_t id, const char *address, const char *status_address,
    const char *state_name, int probed, int probe_ok, const char *probe_err, int64_t probe_ms)
{
	json_object *e = json_object_new_object();
	int up = strcmp(state_name, "Up") == 0;

	json_object_object_add(e, "id", json_object_new_uint64(id));
	op_json_set_str(e, "address", address);
	op_json_set_str(e, "status_address", status_address);
	op_json_set_str(e, "state_name", state_name);
	json_object_object_add(e, "probed", json_object_new_boolean(probed));
	/* no status address (very old TiKV): PD's word is all there is */
	json_object_object_add(e, "probe_ok", json_object_new_boolean(probed ? probe_ok : up));
	if (probed && !probe_ok)
		op_json_set_str(e, "probe_error", probe_err);
	if (probed)
		op_json_set_int(e, "probe_ms", probe_ms);
	json_object_object_add(e, "live", json_object_new_boolean(up && (probed ? probe_ok : 1)));
	return e;
}

static void
tikv_obs_ctx_free(struct tikv_obs_ctx *c)
{
	for (size_t i = 0; c->reqs && i < c->nreq; i++)
		op_http_req_reset(&c->reqs[i]);
	free(c->reqs);
	free(c->urls);
	free(c->probe_ok);
	free(c->probe_err);
	free(c->probe_ms);
	free(c->probed);
	pd_stores_free(&c->stores);
	pd_regions_free(&c->regions);
}

/* The stores known from the last good read, probed: PD is not answering. */
static json_object *
tikv_obs_stale_stores(struct tikv_priv *p, struct tikv_obs_ctx *c)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < p->ncache; i++) {
		const struct tikv_cached_store *cs = &p->cache[i];
		json_object *e = tikv_store_entry(cs->id, cs->address, cs->status_address,
		    cs->state_name, c->probed[i], c->probe_ok[i], c->probe_err[i], c->probe_ms[i]);
		json_object_object_add(e, "stale", json_object_new_boolean(1));
		json_object_object_add(e, "serving", json_object_new_boolean(0));
		json_object_array_add(arr, e);
	}
	return arr;
}

static int
tikv_observe(struct op_subject *s, json_object **out, char *err, size_t errlen)
{
	struct tikv_priv *p = s->priv;
	struct tikv_obs_ctx c;
	json_object *obs = NULL, *pdj = json_object_new_object();
	int64_t t0 = op_mono_ms();
	size_t nmax = R_FIXED + TIKV_STORES_MAX;
	static const char *const paths[] = {PD_API "/stores", PD_API "/regions", PD_API "/health",
	    PD_API "/schedulers", PD_API "/scheduler-config/evict-leader-scheduler/list",
	    PD_API "/config/schedule"};

	memset(&c, 0, sizeof(c));
	c.reqs = calloc(nmax, sizeof(*c.reqs));
	c.urls = calloc(nmax, sizeof(*c.urls));
	c.probe_ok = calloc(TIKV_STORES_MAX, sizeof(int));
	c.probe_err = calloc(TIKV_STORES_MAX, sizeof(*c.probe_err));
	c.probe_ms = calloc(TIKV_STORES_MAX, sizeof(int64_t));
	c.probed = calloc(TIKV_STORES_MAX, sizeof(int));
	if (!c.reqs || !c.urls || !c.probe_ok || !c.probe_err || !c.probe_ms || !c.probed) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* round 1, one parallel batch: every PD read, Prometheus, and the probes
	 * of the stores the last read knew */
	for (size_t i = 0; i < OP_ARRAY_LEN(paths); i++) {
		snprintf(c.urls[i], sizeof(c.urls[i]), "%s%s", p->pd_url, paths[i]);
		tikv_req_get(&c.reqs[i], c.urls[i], p->timeout_ms);
	}
	c.nreq = R_PROM_DISK;
	if (p->prom_url[0]) {
		tikv_prom_url(p, tikv_prom_disk_q, c.urls[R_PROM_DISK], sizeof(c.urls[0]));
		tikv_prom_url(p, tikv_prom_lat_q, c.urls[R_PROM_LAT], sizeof(c.urls[0]));
		tikv_req_get(&c.reqs[R_PROM_DISK], c.urls[R_PROM_DISK], p->timeout_ms);
		tikv_req_get(&c.reqs[R_PROM_LAT], c.urls[R_PROM_LAT], p->timeout_ms);
		c.nreq = R_FIXED;
	}
	size_t probe_at[TIKV_STORES_MAX];
	for (size_t i = 0; i < p->ncache; i++) {
		if (p->cache[i].status_address[0] == '\0')
			continue;
		probe_at[i] = c.nreq++;
		tikv_status_url(p->cache[i].status_address, c.urls[probe_at[i]], sizeof(c.urls[0]));
		tikv_req_get(&c.reqs[probe_at[i]], c.urls[probe_at[i]], p->probe_ms);
		c.probed[i] = 1;
	}
	op_http_multi(c.reqs, c.nreq);
	for (size_t i = 0; i < p->ncache; i++) {
		if (!c.probed[i])
			continue;
		tikv_probe_result(&c.reqs[probe_at[i]], &c.probe_ok[i], c.probe_err[i],
		    sizeof(c.probe_err[i]));
		c.probe_ms[i] = c.reqs[probe_at[i]].elapsed_ms;
	}
	tikv_obs_pd_reads(p, &c, pdj);
	int pd_ok = c.stores_ok && c.regions_ok;

	obs = json_object_new_object();
	op_json_set_int(obs, "at_ms", op_wall_ms());
	op_json_set_str(pdj, "url", p->pd_url);
	json_object_object_add(pdj, "ok", json_object_new_boolean(pd_ok));
	if (!pd_ok)
		op_json_set_str(pdj, "error", c.pd_err);
	if (c.evict_err[0])
		op_json_set_str(pdj, "evict_error", c.evict_err);
	op_json_set_int(pdj, "latency_ms",
	    c.reqs[R_STORES].elapsed_ms > c.reqs[R_REGIONS].elapsed_ms ? c.reqs[R_STORES].elapsed_ms
								     : c.reqs[R_REGIONS].elapsed_ms);
	json_object_object_add(obs, "pd", pdj);
	pdj = NULL;
	json_object_object_add(obs, "prometheus", json_object_new_boolean(p->prom_url[0] != 0));

	/* a partial observation: an entity without a reading has not healed */
	json_object_object_add(obs, "complete", json_object_new_boolean(pd_ok));
	if (!pd_ok) {
		json_object_object_add(obs, "stores", tikv_obs_stale_stores(p, &c));
		goto done;
	}

	/* round 2: stores PD reveals that round 1 could not probe */
	size_t nst = c.stores.count < TIKV_STORES_MAX ? c.stores.count : TIKV_STORES_MAX;
	int *ok = calloc(nst ? nst : 1, sizeof(int)), *pr = calloc(nst ? nst : 1, sizeof(int));
	int64_t *ms = calloc(nst ? nst : 1, sizeof(int64_t));
	char (*perr)[128] = calloc(nst ? nst : 1, sizeof(*perr));
	const char **addrs = calloc(nst ? nst : 1, sizeof(char *));
	size_t *map = calloc(nst ? nst : 1, sizeof(size_t));
	struct tikv_idx *ix = calloc(nst ? nst : 1, sizeof(*ix));
	struct tikv_store_acc *acc = calloc(nst ? nst : 1, sizeof(*acc));
	size_t n2 = 0;
	if (!ok || !pr || !ms || !perr || !addrs || !map || !ix || !acc) {
		snprintf(err, errlen, "out of memory");
		free(ok), free(pr), free(ms), free(perr), free(addrs), free(map), free(ix), free(acc);
		goto fail;
	}
	for (size_t i = 0; i < nst; i++) {
		const struct pd_store *st = &c.stores.v[i];
		if (st->status_address[0] == '\0')
			continue;
		long ci = tikv_cache_find(p, st->id, st->status_address);
		if (ci >= 0 && c.probed[ci]) {
			pr[i] = 1;
			ok[i] = c.probe_ok[ci];
			ms[i] = c.probe_ms[ci];
			op_strlcpy(perr[i], c.probe_err[ci], sizeof(perr[i]));
		} else {
			addrs[n2] = st->status_address;
			map[n2++] = i;
		}
	}
	if (n2 > 0) {
		int *ok2 = calloc(n2, sizeof(int));
		int64_t *ms2 = calloc(n2, sizeof(int64_t));
		char (*e2)[128] = calloc(n2, sizeof(*e2));
		if (ok2 && ms2 && e2) {
			tikv_probe(p, addrs, n2, ok2, e2, ms2);
			for (size_t k = 0; k < n2; k++) {
				pr[map[k]] = 1;
				ok[map[k]] = ok2[k];
				ms[map[k]] = ms2[k];
				op_strlcpy(perr[map[k]], e2[k], sizeof(perr[0]));
			}
		}
		free(ok2), free(ms2), free(e2);
	}
	json_object *stores = json_object_new_array();
	for (size_t i = 0; i < nst; i++) {
		const struct pd_store *st = &c.stores.v[i];
		ix[i].id = st->id;
		ix[i].i = i;
		acc[i].live = strcmp(st->state_name, "Up") == 0 && (!pr[i] || ok[i]);
	}
	qsort(ix, nst, sizeof(*ix), tikv_idx_cmp);
	json_object *regions = tikv_obs_regions(&c.regions, ix, nst, acc);
	int64_t now_ns = op_wall_ms() * 1000000;
	for (size_t i = 0; i < nst; i++) {
		const struct pd_store *st = &c.stores.v[i];
		if (st->state == PD_STORE_TOMBSTONE)
			continue;
		json_object *e = tikv_store_entry(st->id, st->address, st->status_address,
		    st->state_name, pr[i], ok[i], perr[i], ms[i]);
		int ev = tikv_is_evicted(&c, st->id);
		json_object_object_add(e, "evicted", json_object_new_boolean(ev));
		json_object_object_add(e, "serving", json_object_new_boolean(acc[i].live && !ev));
		op_json_set_int(e, "leaders", acc[i].leaders);
		op_json_set_int(e, "regions", acc[i].regions);
		op_json_set_int(e, "pending_peers", acc[i].pending);
		op_json_set_int(e, "down_peers", acc[i].down);
		op_json_set_int(e, "pd_leader_count", st->leader_count);
		if (st->last_heartbeat > 0)
			op_json_set_int(e, "heartbeat_age_ms", (now_ns - st->last_heartbeat) / 1000000);
		json_object_array_add(stores, e);
	}
	json_object_object_add(obs, "stores", stores);
	json_object_object_add(obs, "regions", regions);
	if (p->prom_url[0]) {
		json_object *pd2 = op_json_obj(obs, "pd");
		tikv_prom_apply(&c.reqs[R_PROM_DISK], stores, "disk_available_ratio", 1, pd2,
		    "prometheus_disk_error");
		tikv_prom_apply(&c.reqs[R_PROM_LAT], stores, "grpc_p99_ms", 1000, pd2,
		    "prometheus_latency_error");
	}
	tikv_cache_update(p, &c.stores);
	free(ok), free(pr), free(ms), free(perr), free(addrs), free(map), free(ix), free(acc);
done:
	op_json_set_int(obs, "observe_ms", op_mono_ms() - t0);
	tikv_obs_ctx_free(&c);
	*out = obs;
	return 0;
fail:
	json_object_put(pdj);
	json_object_put(obs);
	tikv_obs_ctx_free(&c);
	return -1;
}

/* ------------------------------------------------------------------ */
/* check */

static void
tikv_check_pd(json_object *obs, struct op_readings *out)
{
	json_object *pd = op_json_obj(obs, "pd"), *ev = json_object_new_object();
	int ok = op_json_bool(pd, "ok", 0);
	int64_t lat = op_json_int(pd, "latency_ms", -1);

	op_json_set_str(ev, "pd", op_json_str(pd, "url", "?"));
	json_object_object_add(ev, "ok", json_object_new_boolean(ok));
	op_json_set_int(ev, "latency_ms", lat);
	if (ok) {
		op_readings_add(out, TIKV_INV_PD, TIKV_ENTITY_PD, OP_RD_HEALTHY, (double)lat, 0, ev,
		    "PD answers /stores and /regions in %lld ms", (long long)lat);
		return;
	}
	op_json_set_str(ev, "error", op_json_str(pd, "error", "unknown"));
	op_readings_add(out, TIKV_INV_PD, TIKV_ENTITY_PD, OP_RD_VIOLATED, (double)lat, 0, ev,
	    "PD %s unreachable: %s", op_json_str(pd, "url", "?"), op_json_str(pd, "error", "?"));
}

static json_object *
tikv_store_evidence(json_object *st)
{
	json_object *ev = json_object_new_object(), *v;
	static const char *const f[] = {"id", "address", "status_address", "state_name",
	    "probe_ok", "probe_error", "probe_ms", "heartbeat_age_ms", "leaders", "regions",
	    "pd_leader_count", "evicted", "stale"};

	for (size_t i = 0; i < OP_ARRAY_LEN(f); i++)
		if (json_object_object_get_ex(st, f[i], &v))
			json_object_object_add(ev, f[i], json_object_get(v));
	return ev;
}

static void
tikv_check_store(json_object *st, int pd_ok, struct op_readings *out)
{
	char id[32];
	const char *state = op_json_str(st, "state_name", "?");
	int probe_ok = op_json_bool(st, "probe_ok", 0);
	int pd_bad = strcmp(state, "Disconnected") == 0 || strcmp(state, "Down") == 0 ||
	    strcmp(state, "Offline") == 0;
	json_object *ev = tikv_store_evidence(st);

	snprintf(id, sizeof(id), "%" PRIu64, op_json_u64(st, "id", 0));
	if (!pd_ok) {
		op_readings_add(out, TIKV_INV_STORE_DOWN, id, OP_RD_BAND, 0, 1, ev,
		    "store %s: cannot judge while PD is unreachable", id);
		return;
	}
	if (!probe_ok || pd_bad) {
		char why[300];
		if (!probe_ok)
			snprintf(why, sizeof(why), "status probe of %s failed (%s); PD says %s",
			    op_json_str(st, "status_address", "?"), op_json_str(st, "probe_error", "?"),
			    state);
		else
			snprintf(why, sizeof(why), "PD says %s (its status probe answers)", state);
		op_readings_add(out, TIKV_INV_STORE_DOWN, id, OP_RD_VIOLATED, 0, 1, ev,
		    "store %s (%s) down: %s", id, op_json_str(st, "address", "?"), why);
		return;
	}
	op_readings_add(out, TIKV_INV_STORE_DOWN, id, OP_RD_HEALTHY, 1, 1, ev,
	    "store %s (%s) is %s and answers its status probe", id, op_json_str(st, "address", "?"),
	    state);
}

/* Per-store leaders and serving flags, for evidence. */
static json_object *
tikv_leader_map(json_object *obs)
{
	json_object *m = json_object_new_object(), *a = op_json_arr(obs, "stores");

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		char id[32];
		snprintf(id, sizeof(id), "%" PRIu64, op_json_u64(st, "id", 0));
		op_json_set_int(m, id, op_json_int(st, "leaders", 0));
	}
	return m;
}

static json_object *
tikv_balance_evidence(const struct tikv_priv *p, json_object *obs, const struct tikv_balance *b)
{
	json_object *ev = json_object_new_object(), *serving = json_object_new_array();
	json_object *a = op_json_arr(obs, "stores");

	json_object_object_add(ev, "leaders_per_store", tikv_leader_map(obs));
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (op_json_bool(st, "serving", 0))
			json_object_array_add(serving, json_object_new_uint64(op_json_u64(st, "id", 0)));
	}
	json_object_object_add(ev, "serving_stores", serving);
	op_json_set_int(ev, "min", b->min);
	op_json_set_int(ev, "max", b->max);
	json_object_object_add(ev, "min_store", json_object_new_uint64(b->min_store));
	json_object_object_add(ev, "max_store", json_object_new_uint64(b->max_store));
	json_object_object_add(ev, "mean", json_object_new_double(b->mean));
	op_json_set_int(ev, "spread", b->spread);
	json_object_object_add(ev, "allowed_spread", json_object_new_double(b->allowed));
	json_object_object_add(ev, "tolerance", json_object_new_double(p->tolerance));
	op_json_set_int(ev, "tolerance_min", p->tolerance_min);
	return ev;
}

static int64_t
tikv_elections_pending(json_object *obs)
{
	json_object *r = op_json_obj(obs, "regions");

	return op_json_int(r, "leaderless", 0) + op_json_int(r, "leader_on_dead_store", 0);
}

static void
tikv_check_balance(const struct tikv_priv *p, json_object *obs, int pd_ok,
    struct op_readings *out)
{
	struct tikv_balance b;
	int64_t pending = tikv_elections_pending(obs);

	tikv_balance_of(p, obs, &b);
	json_object *ev = tikv_balance_evidence(p, obs, &b);
	if (!pd_ok) {
		op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER, OP_RD_BAND, 0, 0, ev,
		    "leader balance: cannot judge while PD is unreachable");
		return;
	}
	if (pending > 0) {
		/* counts move on their own until raft has elected every leader */
		op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER, OP_RD_BAND,
		    (double)b.spread, b.allowed, ev,
		    "leader balance: cannot judge while %lld region(s) await a leader",
		    (long long)pending);
		return;
	}
	if (b.nserving < 2) {
		op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER, OP_RD_HEALTHY, 0,
		    b.allowed, ev, "leader balance: %zu store(s) serve leaders, nothing to balance",
		    b.nserving);
		return;
	}
	int bad = (double)b.spread > b.allowed;
	op_readings_add(out, TIKV_INV_IMBALANCE, TIKV_ENTITY_CLUSTER,
	    bad ? OP_RD_VIOLATED : OP_RD_HEALTHY, (double)b.spread, b.allowed, ev,
	    "leaders per serving store range %lld (store %" PRIu64 ") to %lld (store %" PRIu64
	    "), spread %lld %s allowed %.1f (mean %.1f over %zu stores)",
	    (long long)b.min, b.min_store, (long long)b.max, b.max_store, (long long)b.spread,
	    bad ? ">" : "<=", b.allowed, b.mean, b.nserving);
}

static json_object *
tikv_regions_evidence(json_object *obs)
{
	json_object *r = op_json_obj(obs, "regions");

	return r ? json_object_get(r) : json_object_new_object();
}

static void
tikv_check_regions(json_object *obs, int pd_ok, struct op_readings *out)
{
	json_object *r = op_json_obj(obs, "regions");
	int64_t ll = op_json_int(r, "leaderless", 0), dead = op_json_int(r, "leader_on_dead_store", 0);
	int64_t ur = op_json_int(r, "under_replicated", 0);
	int64_t pend = op_json_int(r, "pending_regions", 0), down = op_json_int(r, "down_regions", 0);

	if (!pd_ok || r == NULL) {
		op_readings_add(out, TIKV_INV_LEADERLESS, TIKV_ENTITY_CLUSTER, OP_RD_BAND, 0, 0,
		    tikv_regions_evidence(obs), "regions: cannot judge while PD is unreachable");
		op_readings_add(out, TIKV_INV_UNDER_REPL, TIKV_ENTITY_CLUSTER, OP_RD_BAND, 0, 0,
		    tikv_regions_evidence(obs), "regions: cannot judge while PD is unreachable");
		return;
	}
	op_readings_add(out, TIKV_INV_LEADERLESS, TIKV_ENTITY_CLUSTER,
	    ll + dead > 0 ? OP_RD_VIOLATED : OP_RD_HEALTHY, (double)(ll + dead), 0,
	    tikv_regions_evidence(obs),
	    "%lld of %lld regions without a live leader (%lld leaderless, %lld led from a down "
	    "store)", (long long)(ll + dead), (long long)op_json_int(r, "count", 0), (long long)ll,
	    (long long)dead);
	op_readings_add(out, TIKV_INV_UNDER_REPL, TIKV_ENTITY_CLUSTER,
	    ur > 0 ? OP_RD_VIOLATED : OP_RD_HEALTHY, (double)ur, 0, tikv_regions_evidence(obs),
	    "%lld of %lld regions under-replicated (%lld with pending peers, %lld with down peers)",
	    (long long)ur, (long long)op_json_int(r, "count", 0), (long long)pend, (long long)down);
}

static void
tikv_check_prom(const struct tikv_priv *p, json_object *st, int pd_ok, struct op_readings *out)
{
	char id[32];
	json_object *v;

	snprintf(id, sizeof(id), "%" PRIu64, op_json_u64(st, "id", 0));
	if (pd_ok && json_object_object_get_ex(st, "disk_available_ratio", &v)) {
		double d = json_object_get_double(v);
		op_readings_add(out, TIKV_INV_DISK, id, d < p->disk_min ? OP_RD_VIOLATED : OP_RD_HEALTHY,
		    d, p->disk_min, tikv_store_evidence(st),
		    "store %s: %.1f%% of its disk available (minimum %.1f%%)", id, d * 100,
		    p->disk_min * 100);
	} else {
		op_readings_add(out, TIKV_INV_DISK, id, OP_RD_BAND, 0, p->disk_min,
		    tikv_store_evidence(st), "store %s: no disk figures", id);
	}
	if (pd_ok && json_object_object_get_ex(st, "grpc_p99_ms", &v)) {
		double d = json_object_get_double(v);
		op_readings_add(out, TIKV_INV_LATENCY, id,
		    d > (double)p->latency_p99_ms ? OP_RD_VIOLATED : OP_RD_HEALTHY, d,
		    (double)p->latency_p99_ms, tikv_store_evidence(st),
		    "store %s: gRPC p99 %.1f ms (threshold %lld ms)", id, d,
		    (long long)p->latency_p99_ms);
	} else {
		op_readings_add(out, TIKV_INV_LATENCY, id, OP_RD_BAND, 0, (double)p->latency_p99_ms,
		    tikv_store_evidence(st), "store %s: no latency figures", id);
	}
}

void
tikv_check(struct op_subject *s, json_object *obs, struct op_readings *out)
{
	const struct tikv_priv *p = s->priv;
	int pd_ok = tikv_obs_pd_ok(obs);
	json_object *stores = op_json_arr(obs, "stores");

	tikv_check_pd(obs, out);
	for (size_t i = 0; stores && i < json_object_array_length(stores); i++) {
		json_object *st = json_object_array_get_idx(stores, i);
		tikv_check_store(st, pd_ok, out);
		if (p->prom_url[0])
			tikv_check_prom(p, st, pd_ok, out);
	}
	tikv_check_balance(p, obs, pd_ok, out);
	tikv_check_regions(obs, pd_ok, out);
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
