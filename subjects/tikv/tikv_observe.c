/* tikv_observe: one observation of a TiKV cluster, seen through PD's v1
 * HTTP API plus a direct probe of every store's status address.
 *
 * Every PD read and every probe of an observation runs in parallel
 * (op_http_multi): the probes use the store list of the previous
 * observation, and stores PD reveals for the first time are probed in a
 * second round. GET /regions is decoded as it streams in (pd_regscan): only
 * per-store sums and a few sample ids are kept, never the body or a tree, so
 * the observation costs about its transfer at any scale.
 *
 * The observation stays small: per-store figures, region counts by category
 * and a few sample ids. When PD does not answer, it still succeeds with
 * pd.ok = false (the stores known from the last good read, probed); see
 * tikv_subject.c. observe itself fails only when out of memory. */
#include "subjects/tikv/tikv_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

#define TIKV_RACC_MIN 64        /* first size of the per-store sums table (slots) */


/* Sorted (id, index) pairs: a fast store lookup by id. */
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

/* Region figures are summed while /regions streams in, before the store
 * list is known: per store id (whatever the stores answer will say), with
 * the first few region ids each store leads, so that the regions led from a
 * store found down afterwards can still be quoted. */
struct tikv_racc_st {
	uint64_t id;                  /* 0: free slot (PD store ids start at 1) */
	int64_t leaders, regions, pending, down;
	size_t nled;
	uint64_t led[TIKV_SAMPLES_MAX];
};

struct tikv_racc {
	struct tikv_racc_st *t;       /* open addressing, power-of-two size */
	size_t cap, n;
	int oom;
	int64_t count, leaderless, pending_regions, down_regions, under, max_peers;
	size_t nll, nur;
	uint64_t s_ll[TIKV_SAMPLES_MAX], s_ur[TIKV_SAMPLES_MAX];
	struct pd_regscan scan;
	struct pd_err scan_err;
};

static size_t
tikv_racc_slot(const struct tikv_racc_st *t, size_t cap, uint64_t id)
{
	size_t h = (size_t)(id * 0x9E3779B97F4A7C15ull) & (cap - 1);

	while (t[h].id != 0 && t[h].id != id)
		h = (h + 1) & (cap - 1);
	return h;
}

static struct tikv_racc_st *
tikv_racc_find(const struct tikv_racc *a, uint64_t id)
{
	if (a->cap == 0 || id == 0)
		return NULL;
	size_t h = tikv_racc_slot(a->t, a->cap, id);
	return a->t[h].id == id ? &a->t[h] : NULL;
}

/* NULL for store id 0 (PD never uses it) or out of memory. */
static struct tikv_racc_st *
tikv_racc_get(struct tikv_racc *a, uint64_t id)
{
	struct tikv_racc_st *st = tikv_racc_find(a, id);

	if (st != NULL || id == 0)
		return st;
	if ((a->n + 1) * 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : TIKV_RACC_MIN;
		struct tikv_racc_st *t = calloc(cap, sizeof(*t));
		if (t == NULL) {
			a->oom = 1;
			return NULL;
		}
		for (size_t i = 0; i < a->cap; i++)
			if (a->t[i].id != 0)
				t[tikv_racc_slot(t, cap, a->t[i].id)] = a->t[i];
		free(a->t);
		a->t = t;
		a->cap = cap;
	}
	size_t h = tikv_racc_slot(a->t, a->cap, id);
	a->t[h].id = id;
	a->n++;
	return &a->t[h];
}

static void
tikv_racc_region(const struct pd_region_brief *r, void *arg)
{
	struct tikv_racc *a = arg;
	struct tikv_racc_st *st;

	a->count++;
	if ((int64_t)r->n_peers > a->max_peers)
		a->max_peers = (int64_t)r->n_peers;
	for (size_t k = 0; k < r->n_peers; k++)
		if ((st = tikv_racc_get(a, r->peers[k])) != NULL)
			st->regions++;
	if (!r->has_leader) {
		a->leaderless++;
		if (a->nll < TIKV_SAMPLES_MAX)
			a->s_ll[a->nll++] = r->id;
	} else if ((st = tikv_racc_get(a, r->leader_store)) != NULL) {
		st->leaders++;
		if (st->nled < TIKV_SAMPLES_MAX)
			st->led[st->nled++] = r->id;
	}
	for (size_t k = 0; k < r->n_pending; k++)
		if ((st = tikv_racc_get(a, r->pending[k])) != NULL)
			st->pending++;
	for (size_t k = 0; k < r->n_down; k++)
		if ((st = tikv_racc_get(a, r->down[k])) != NULL)
			st->down++;
	a->pending_regions += r->n_pending > 0;
	a->down_regions += r->n_down > 0;
	if (r->n_pending > 0 || r->n_down > 0) {
		a->under++;
		if (a->nur < TIKV_SAMPLES_MAX)
			a->s_ur[a->nur++] = r->id;
	}
}

/* op_http sink: /regions bytes straight into the decoder. */
static int
tikv_racc_sink(const char *p, size_t n, void *arg)
{
	struct tikv_racc *a = arg;

	return pd_regscan_feed(&a->scan, p, n, &a->scan_err) == 0 && !a->oom ? 0 : -1;
}

struct tikv_store_acc {
	int64_t leaders, regions, pending, down;
	int live;
};

static json_object *
tikv_ids_json(const uint64_t *v, size_t n)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_uint64(v[i]));
	return a;
}

/* Region figures: counts by category, per-store counts (acc, by position in
 * the store list), a few sample ids. */
static json_object *
tikv_obs_regions(const struct tikv_racc *ra, const struct tikv_idx *ix, size_t nst,
    struct tikv_store_acc *acc)
{
	json_object *j = json_object_new_object(), *samples = json_object_new_object();
	uint64_t dead[TIKV_SAMPLES_MAX];
	size_t ndead = 0;
	int64_t on_dead = 0, pending_live = 0;

	for (size_t i = 0; i < ra->cap; i++) {
		const struct tikv_racc_st *st = &ra->t[i];
		if (st->id == 0)
			continue;
		long si = tikv_idx_find(ix, nst, st->id);
		if (si >= 0) {
			acc[si].leaders = st->leaders;
			acc[si].regions = st->regions;
			acc[si].pending = st->pending;
			acc[si].down = st->down;
			if (acc[si].live)
				pending_live += st->pending;
		}
		/* PD keeps showing a dead leader until raft elects another */
		if (si < 0 || !acc[si].live) {
			on_dead += st->leaders;
			for (size_t k = 0; k < st->nled && ndead < TIKV_SAMPLES_MAX; k++)
				dead[ndead++] = st->led[k];
		}
	}
	op_json_set_int(j, "count", ra->count);
	op_json_set_int(j, "leaderless", ra->leaderless);
	op_json_set_int(j, "leader_on_dead_store", on_dead);
	op_json_set_int(j, "pending_regions", ra->pending_regions);
	op_json_set_int(j, "down_regions", ra->down_regions);
	op_json_set_int(j, "under_replicated", ra->under);
	op_json_set_int(j, "pending_peers_on_live_stores", pending_live);
	op_json_set_int(j, "max_peers", ra->max_peers);
	json_object_object_add(samples, "leaderless", tikv_ids_json(ra->s_ll, ra->nll));
	json_object_object_add(samples, "leader_on_dead_store", tikv_ids_json(dead, ndead));
	json_object_object_add(samples, "under_replicated", tikv_ids_json(ra->s_ur, ra->nur));
	json_object_object_add(j, "samples", samples);
	return j;
}

enum { R_STORES, R_REGIONS, R_HEALTH, R_SCHED, R_EVICT, R_CONFIG, R_PROM_DISK, R_PROM_LAT,
	R_FIXED };

struct tikv_obs_ctx {
	struct op_http_req *reqs;     /* R_FIXED + one probe per store */
	char (*urls)[TIKV_URL_MAX];
	size_t nreq;
	struct pd_stores stores;
	struct tikv_racc regions;
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

	b = tikv_pd_body(&c->reqs[R_STORES], PD_PATH_STORES, why, sizeof(why));
	if (b != NULL && pd_parse_stores(b, c->reqs[R_STORES].resp_len, &c->stores, &pe) != 0)
		snprintf(why, sizeof(why), "GET " PD_PATH_STORES ": %s", pe.message), b = NULL;
	c->stores_ok = b != NULL;
	if (!c->stores_ok)
		op_strlcpy(c->pd_err, why, sizeof(c->pd_err));
	struct op_http_req *rr = &c->reqs[R_REGIONS];
	b = NULL;
	if (c->regions.scan.failed) { /* the decoder stopped the transfer at the first bad byte */
		snprintf(why, sizeof(why), "GET " PD_PATH_REGIONS ": %s", c->regions.scan_err.message);
	} else if (c->regions.oom) {
		snprintf(why, sizeof(why), "GET " PD_PATH_REGIONS ": out of memory");
	} else if ((b = tikv_pd_body(rr, PD_PATH_REGIONS, why, sizeof(why))) != NULL &&
	    pd_regscan_finish(&c->regions.scan, &pe) != 0) {
		snprintf(why, sizeof(why), "GET " PD_PATH_REGIONS ": %s", pe.message);
		b = NULL;
	}
	c->regions_ok = b != NULL;
	if (!c->regions_ok && c->pd_err[0] == '\0')
		op_strlcpy(c->pd_err, why, sizeof(c->pd_err));

	/* health: members and how many PD itself calls healthy */
	struct pd_health_list hl;
	b = tikv_pd_body(&c->reqs[R_HEALTH], PD_PATH_HEALTH, why, sizeof(why));
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
	b = tikv_pd_body(&c->reqs[R_CONFIG], PD_PATH_SCHEDULE_CONFIG, why, sizeof(why));
	if (b != NULL && pd_parse_schedule_config(b, c->reqs[R_CONFIG].resp_len, &sc, &pe) == 0) {
		op_json_set_int(pdj, "max_store_down_time_ms", sc.max_store_down_time_ms);
		pd_schedule_config_free(&sc);
	}

	/* evicted stores: the list exists only while the scheduler does */
	struct pd_strlist sl;
	b = tikv_pd_body(&c->reqs[R_SCHED], PD_PATH_SCHEDULERS, why, sizeof(why));
	if (b != NULL && pd_parse_strlist(b, c->reqs[R_SCHED].resp_len, &sl, &pe) == 0) {
		int evicting = pd_strlist_contains(&sl, "evict-leader-scheduler");
		pd_strlist_free(&sl);
		struct op_http_req *r = &c->reqs[R_EVICT];
		if (evicting && (r->err[0] || r->status != 200 ||
		    pd_parse_evicted(r->resp, r->resp_len, c->evicted, TIKV_STORES_MAX,
			&c->nevicted, &pe) != 0))
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
	free(c->regions.t);
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

int
tikv_observe(struct op_subject *s, json_object **out, char *err, size_t errlen)
{
	struct tikv_priv *p = s->priv;
	struct tikv_obs_ctx c;
	json_object *obs = NULL, *pdj = json_object_new_object();
	int64_t t0 = op_mono_ms();
	size_t nmax = R_FIXED + TIKV_STORES_MAX;
	static const char *const paths[] = {PD_PATH_STORES, PD_PATH_REGIONS, PD_PATH_HEALTH,
	    PD_PATH_SCHEDULERS, PD_PATH_EVICT_LIST,
	    PD_PATH_SCHEDULE_CONFIG};

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
	pd_regscan_init(&c.regions.scan, tikv_racc_region, &c.regions);
	c.reqs[R_REGIONS].sink = tikv_racc_sink;
	c.reqs[R_REGIONS].sink_arg = &c.regions;
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

