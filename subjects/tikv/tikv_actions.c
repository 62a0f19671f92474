/* tikv_actions: the TiKV action catalogue, its preconditions and execution
 * through PD's operators and schedulers.
 *
 * Every precondition is checked on the executor's fresh observation, plus a
 * fresh read of the region an action touches: PD must answer (never act on
 * data from an unhealthy control plane), a target store must be Up, answer
 * its status probe and (for leaders) not be under evict-leader, raft quorum
 * must survive a peer removal, and a region must not already have an
 * operator (PD allows one). rebalance_leaders plans its moves from a fresh
 * region read, never from the observation that opened the ticket. */
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

#define TIKV_MSDT_MIN_NS 1000000000LL             /* max-store-down-time: at least 1 s */
#define TIKV_MSDT_MAX_NS (7LL * 24 * 3600 * 1000000000LL) /* and at most 7 days */
#define TIKV_MOVES_QUOTED 20                      /* moves listed in a rebalance result */
#define TIKV_MSDT_HUMAN_NS (30LL * 60 * 1000000000LL) /* PD's default: shorter needs approval */

static const struct op_param_def p_transfer_leader[] = {
	{"region_id", OP_PARAM_U64, 0, 0, 1, "region whose leader moves"},
	{"to_store_id", OP_PARAM_U64, 0, 0, 1, "store holding a healthy voter of the region"},
};
static const struct op_param_def p_transfer_peer[] = {
	{"region_id", OP_PARAM_U64, 0, 0, 1, "region whose peer moves"},
	{"from_store_id", OP_PARAM_U64, 0, 0, 1, "store that holds the peer now"},
	{"to_store_id", OP_PARAM_U64, 0, 0, 1, "Up store without a peer of the region"},
};
static const struct op_param_def p_region_store[] = {
	{"region_id", OP_PARAM_U64, 0, 0, 1, "region"},
	{"store_id", OP_PARAM_U64, 0, 0, 1, "store"},
};
static const struct op_param_def p_store[] = {
	{"store_id", OP_PARAM_U64, 0, 0, 1, "store"},
};
static const struct op_param_def p_msdt[] = {
	{"duration", OP_PARAM_STRING, 2, 32, 1, "Go duration, e.g. \"30m\" or \"1h\" (1s..168h)"},
};
static const struct op_param_def p_rebalance[] = {
	{"to_store_id", OP_PARAM_U64, 0, 0, 0,
	    "only move leaders to this store (e.g. one that rejoined with none)"},
};

/* What each action may remedy and what it acts on (a plan must fit its
 * ticket): the stores it names must be the ticket's entity or appear in the
 * ticket's evidence (serving_stores, leaders_per_store, the store itself). */
static const char *const rem_leaders[] = {TIKV_INV_IMBALANCE, NULL};
static const char *const rem_peers[] = {TIKV_INV_UNDER_REPL, TIKV_INV_DISK, NULL};
static const char *const rem_add_peer[] = {TIKV_INV_UNDER_REPL, NULL};
static const char *const rem_evict[] = {TIKV_INV_LATENCY, NULL};
static const char *const rem_remove_store[] = {TIKV_INV_STORE_DOWN, NULL};
static const char *const rem_msdt[] = {TIKV_INV_STORE_DOWN, TIKV_INV_UNDER_REPL, NULL};
static const char *const rem_rebalance[] = {TIKV_INV_STORE_DOWN, TIKV_INV_IMBALANCE, NULL};
static const char *const ent_to[] = {"to_store_id", NULL};
static const char *const ent_from[] = {"from_store_id", NULL};
static const char *const ent_store[] = {"store_id", NULL};

static int tikv_revert_leaders(struct op_subject *s, json_object *undo, json_object **result,
    char *err, size_t errlen);
static int tikv_revert_evict(struct op_subject *s, json_object *undo, json_object **result,
    char *err, size_t errlen);
static int tikv_revert_msdt(struct op_subject *s, json_object *undo, json_object **result,
    char *err, size_t errlen);
static int tikv_bounds_msdt(json_object *params, char *why, size_t len);

const struct op_action_def tikv_actions[TIKV_NACTIONS] = {
	{"transfer_leader", "low", p_transfer_leader, OP_ARRAY_LEN(p_transfer_leader),
	    "PD operator transfer-leader: moves one region's leader to another voter",
	    "the region's leader is on to_store_id",
	    rem_leaders, ent_to, OP_TOUCH_PARAM, "the region's leader goes back to its store",
	    tikv_revert_leaders, 0, NULL},
	{"transfer_peer", "medium", p_transfer_peer, OP_ARRAY_LEN(p_transfer_peer),
	    "PD operator transfer-peer: adds a peer on to_store_id, then removes the one on "
	    "from_store_id", "the region's replica lives on to_store_id",
	    rem_peers, ent_from, OP_TOUCH_PARAM, NULL, NULL, 0, NULL},
	{"add_peer", "medium", p_region_store, OP_ARRAY_LEN(p_region_store),
	    "PD operator add-peer: a new voter for the region on store_id",
	    "the region has a caught-up voter on store_id",
	    rem_add_peer, NULL, OP_TOUCH_PARAM, NULL, NULL, 0, NULL},
	{"remove_peer", "high", p_region_store, OP_ARRAY_LEN(p_region_store),
	    "PD operator remove-peer: drops the region's peer on store_id (refused when it would "
	    "break raft quorum)", "the region has no peer on store_id and keeps a live majority",
	    rem_add_peer, ent_store, OP_TOUCH_PARAM, NULL, NULL, 0, NULL},
	{"evict_leader", "medium", p_store, OP_ARRAY_LEN(p_store),
	    "adds store_id to PD's evict-leader-scheduler: its leaders move away, none return",
	    "the store holds no leaders",
	    rem_evict, ent_store, OP_TOUCH_PARAM, "the store leaves the evict-leader-scheduler",
	    tikv_revert_evict, 0, NULL},
	{"remove_evict_leader", "low", p_store, OP_ARRAY_LEN(p_store),
	    "removes store_id from PD's evict-leader-scheduler",
	    "the store may take leaders again",
	    rem_leaders, ent_store, OP_TOUCH_PARAM, "the store is evicted again",
	    tikv_revert_evict, 0, NULL},
	{"remove_store", "high", p_store, OP_ARRAY_LEN(p_store),
	    "DELETE /store/{id}: PD marks it Offline and re-replicates its peers now instead of "
	    "after max-store-down-time", "the store's peers are rebuilt on the other stores",
	    /* an Offline store becomes Tombstone: it never serves again */
	    rem_remove_store, ent_store, OP_TOUCH_PARAM, NULL, NULL, 1, NULL},
	{"set_max_store_down_time", "medium", p_msdt, OP_ARRAY_LEN(p_msdt),
	    "PD schedule config max-store-down-time: how long a silent store may stay before PD "
	    "re-replicates its peers (below 30m needs a human)", "PD's config shows the new "
	    "duration",
	    rem_msdt, NULL, OP_TOUCH_NONE, "PD's previous max-store-down-time",
	    tikv_revert_msdt, 0, tikv_bounds_msdt},
	{"rebalance_leaders", "low", p_rebalance, OP_ARRAY_LEN(p_rebalance),
	    "a batch of transfer-leader operators planned from a fresh region read: leaders move "
	    "from stores above the mean to Up, non-evicted stores below it that hold a voter of "
	    "the region; one operator per region, at most max_operators",
	    "every region has a leader and leader counts across the serving stores are within "
	    "the tolerance",
	    rem_rebalance, ent_to, OP_TOUCH_PLANNED, "each moved leader goes back to its store",
	    tikv_revert_leaders, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* helpers */

static int
tikv_want_store(json_object *obs, uint64_t id, int for_leader, char *why, size_t whylen)
{
	json_object *st = tikv_obs_store(obs, id);

	if (st == NULL) {
		snprintf(why, whylen, "store %" PRIu64 " is not in PD's store list", id);
		return -1;
	}
	if (strcmp(op_json_str(st, "state_name", "?"), "Up") != 0) {
		snprintf(why, whylen, "store %" PRIu64 " is %s, not Up", id,
		    op_json_str(st, "state_name", "?"));
		return -1;
	}
	if (!op_json_bool(st, "probe_ok", 0)) {
		snprintf(why, whylen, "store %" PRIu64 " does not answer its status probe (%s)", id,
		    op_json_str(st, "probe_error", "?"));
		return -1;
	}
	if (for_leader && op_json_bool(st, "evicted", 0)) {
		snprintf(why, whylen, "store %" PRIu64 " is under evict-leader-scheduler", id);
		return -1;
	}
	return 0;
}

static int
tikv_store_live(json_object *obs, uint64_t id)
{
	return op_json_bool(tikv_obs_store(obs, id), "live", 0);
}

static const struct pd_peer *
tikv_region_peer(const struct pd_region *r, uint64_t store)
{
	for (size_t i = 0; i < r->n_peers; i++)
		if (r->peers[i].store_id == store)
			return &r->peers[i];
	return NULL;
}

static int
tikv_peer_unhealthy(const struct pd_region *r, uint64_t store)
{
	for (size_t i = 0; i < r->n_pending; i++)
		if (r->pending_peers[i].store_id == store)
			return 1;
	for (size_t i = 0; i < r->n_down; i++)
		if (r->down_peers[i].peer.store_id == store)
			return 1;
	return 0;
}

/* Live voters of the region when the peer on `without` (0: none) is gone. */
static int
tikv_quorum_after(json_object *obs, const struct pd_region *r, uint64_t without, char *why,
    size_t whylen)
{
	size_t voters = 0, live = 0;

	for (size_t i = 0; i < r->n_peers; i++) {
		if (strcmp(r->peers[i].role, "Voter") != 0 || r->peers[i].store_id == without)
			continue;
		voters++;
		live += tikv_store_live(obs, r->peers[i].store_id) &&
		    !tikv_peer_unhealthy(r, r->peers[i].store_id);
	}
	if (voters == 0 || live < voters / 2 + 1) {
		snprintf(why, whylen, "region %" PRIu64 " would keep %zu live voter(s) of %zu: raft "
		    "quorum needs %zu", r->id, live, voters, voters / 2 + 1);
		return -1;
	}
	return 0;
}

/* Fresh region read plus "no operator running on it". */
static int
tikv_fresh_region(struct tikv_priv *p, uint64_t id, struct pd_region *r, char *why,
    size_t whylen)
{
	struct pd_err pe;
	struct pd_op_status os;

	if (pd_get_region(&p->pd, id, r, &pe) != 0) {
		snprintf(why, whylen, "region %" PRIu64 ": %s", id, pe.message);
		return -1;
	}
	if (pd_get_operator(&p->pd, id, &os, &pe) == 0) {
		if (strcmp(os.status, "RUNNING") == 0 || strcmp(os.status, "CREATED") == 0) {
			snprintf(why, whylen, "region %" PRIu64 " already has an operator: %.300s", id,
			    os.text);
			pd_region_free(r);
			return -1;
		}
	} else if (!pe.not_found) {
		snprintf(why, whylen, "cannot read region %" PRIu64 "'s operator: %s", id, pe.message);
		pd_region_free(r);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* preconditions */

static int
tikv_pre_region(struct tikv_priv *p, const char *action, json_object *params, json_object *obs,
    char *why, size_t whylen)
{
	uint64_t rid = op_json_u64(params, "region_id", 0);
	struct pd_region r;
	int rc = 0;

	if (strcmp(action, "transfer_leader") == 0) {
		uint64_t to = op_json_u64(params, "to_store_id", 0);
		if (tikv_want_store(obs, to, 1, why, whylen) != 0 ||
		    tikv_fresh_region(p, rid, &r, why, whylen) != 0)
			return -1;
		const struct pd_peer *pp = tikv_region_peer(&r, to);
		if (!r.has_leader)
			snprintf(why, whylen, "region %" PRIu64 " has no leader: raft must elect first",
			    rid), rc = -1;
		else if (r.leader.store_id == to)
			snprintf(why, whylen, "region %" PRIu64 "'s leader is already on store %" PRIu64,
			    rid, to), rc = -1;
		else if (pp == NULL || strcmp(pp->role, "Voter") != 0)
			snprintf(why, whylen, "region %" PRIu64 " has no voter on store %" PRIu64, rid, to),
			    rc = -1;
		else if (tikv_peer_unhealthy(&r, to))
			snprintf(why, whylen, "region %" PRIu64 "'s peer on store %" PRIu64
			    " is pending or down", rid, to), rc = -1;
		pd_region_free(&r);
		return rc;
	}
	if (strcmp(action, "transfer_peer") == 0) {
		uint64_t from = op_json_u64(params, "from_store_id", 0);
		uint64_t to = op_json_u64(params, "to_store_id", 0);
		if (from == to) {
			snprintf(why, whylen, "from_store_id and to_store_id are the same store");
			return -1;
		}
		if (tikv_want_store(obs, to, 0, why, whylen) != 0 ||
		    tikv_fresh_region(p, rid, &r, why, whylen) != 0)
			return -1;
		if (tikv_region_peer(&r, from) == NULL)
			snprintf(why, whylen, "region %" PRIu64 " has no peer on store %" PRIu64, rid,
			    from), rc = -1;
		else if (tikv_region_peer(&r, to) != NULL)
			snprintf(why, whylen, "region %" PRIu64 " already has a peer on store %" PRIu64,
			    rid, to), rc = -1;
		else
			/* the new peer catches up before it counts: quorum must hold without `from` */
			rc = tikv_quorum_after(obs, &r, from, why, whylen);
		pd_region_free(&r);
		return rc;
	}
	uint64_t store = op_json_u64(params, "store_id", 0);
	if (strcmp(action, "add_peer") == 0) {
		if (tikv_want_store(obs, store, 0, why, whylen) != 0 ||
		    tikv_fresh_region(p, rid, &r, why, whylen) != 0)
			return -1;
		if (tikv_region_peer(&r, store) != NULL)
			snprintf(why, whylen, "region %" PRIu64 " already has a peer on store %" PRIu64,
			    rid, store), rc = -1;
		pd_region_free(&r);
		return rc;
	}
	/* remove_peer */
	if (tikv_fresh_region(p, rid, &r, why, whylen) != 0)
		return -1;
	if (tikv_region_peer(&r, store) == NULL)
		snprintf(why, whylen, "region %" PRIu64 " has no peer on store %" PRIu64, rid, store),
		    rc = -1;
	else
		rc = tikv_quorum_after(obs, &r, store, why, whylen);
	pd_region_free(&r);
	return rc;
}

static size_t
tikv_count_live(json_object *obs, uint64_t except, int serving)
{
	json_object *a = op_json_arr(obs, "stores");
	size_t n = 0;

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (op_json_u64(st, "id", 0) != except &&
		    op_json_bool(st, serving ? "serving" : "live", 0))
			n++;
	}
	return n;
}

int
tikv_precheck(struct op_subject *s, const char *action, json_object *params, json_object *obs,
    char *why, size_t whylen)
{
	struct tikv_priv *p = s->priv;
	uint64_t store = op_json_u64(params, "store_id", 0);

	if (!tikv_obs_pd_ok(obs)) {
		snprintf(why, whylen, "PD is unreachable (%s): never act on data from an unhealthy "
		    "control plane", op_json_str(op_json_obj(obs, "pd"), "error", "?"));
		return -1;
	}
	if (strcmp(action, "transfer_leader") == 0 || strcmp(action, "transfer_peer") == 0 ||
	    strcmp(action, "add_peer") == 0 || strcmp(action, "remove_peer") == 0)
		return tikv_pre_region(p, action, params, obs, why, whylen);
	if (strcmp(action, "evict_leader") == 0) {
		if (tikv_obs_store(obs, store) == NULL) {
			snprintf(why, whylen, "store %" PRIu64 " is not in PD's store list", store);
			return -1;
		}
		if (tikv_count_live(obs, store, 1) == 0) {
			snprintf(why, whylen, "no other store can serve leaders: evicting store %" PRIu64
			    " would leave its regions nowhere to go", store);
			return -1;
		}
		return 0;
	}
	if (strcmp(action, "remove_evict_leader") == 0)
		return 0; /* lifting an eviction that is not there is harmless */
	if (strcmp(action, "remove_store") == 0) {
		int64_t replicas = op_json_int(op_json_obj(obs, "regions"), "max_peers", 0);
		if (replicas <= 0)
			replicas = TIKV_DEF_REPLICAS;
		if (tikv_obs_store(obs, store) == NULL) {
			snprintf(why, whylen, "store %" PRIu64 " is not in PD's store list", store);
			return -1;
		}
		if ((int64_t)tikv_count_live(obs, store, 0) < replicas) {
			snprintf(why, whylen, "only %zu other live store(s) for %lld replicas: removing "
			    "store %" PRIu64 " leaves PD nowhere to rebuild its peers",
			    tikv_count_live(obs, store, 0), (long long)replicas, store);
			return -1;
		}
		return 0;
	}
	if (strcmp(action, "set_max_store_down_time") == 0) {
		int64_t ns;
		const char *d = op_json_str(params, "duration", "");
		if (pd_parse_go_duration_ns(d, &ns) != 0 || ns < TIKV_MSDT_MIN_NS ||
		    ns > TIKV_MSDT_MAX_NS) {
			snprintf(why, whylen, "duration \"%s\" is not a Go duration within 1s..168h", d);
			return -1;
		}
		return 0;
	}
	if (strcmp(action, "rebalance_leaders") == 0) {
		json_object *v;
		if (json_object_object_get_ex(params, "to_store_id", &v) && v != NULL)
			return tikv_want_store(obs, op_json_u64(params, "to_store_id", 0), 1, why, whylen);
		if (tikv_count_live(obs, 0, 1) < 2) {
			snprintf(why, whylen, "fewer than two stores can serve leaders: nothing to "
			    "balance between");
			return -1;
		}
		return 0;
	}
	snprintf(why, whylen, "unknown action \"%s\"", action);
	return -1;
}

/* ------------------------------------------------------------------ */
/* rebalance_leaders */

struct tikv_move {
	uint64_t region, from, to;
};

struct tikv_plan_store {
	uint64_t id;
	int live, evicted;
	int64_t before, now;
};

static long
tikv_ps_find(const struct tikv_plan_store *ps, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ps[i].id == id)
			return (long)i;
	return -1;
}

static int
tikv_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Region ids of the operators PD runs: "... region:10(1, 5) ..." in each string. */
static uint64_t *
tikv_busy_regions(const struct tikv_priv *p, size_t *n, char *err, size_t errlen)
{
	struct pd_strlist l;
	struct pd_err pe;
	uint64_t *ids;

	*n = 0;
	if (pd_get_operators(&p->pd, &l, &pe) != 0) {
		snprintf(err, errlen, "%s", pe.message);
		return NULL;
	}
	ids = calloc(l.count ? l.count : 1, sizeof(*ids));
	for (size_t i = 0; ids && i < l.count; i++) {
		const char *r = strstr(l.v[i], "region:");
		if (r != NULL)
			ids[(*n)++] = strtoull(r + 7, NULL, 10);
	}
	pd_strlist_free(&l);
	if (ids == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	qsort(ids, *n, sizeof(*ids), tikv_u64_cmp);
	return ids;
}

/* Stores and regions from PD plus the stores' probes. Returns the number of
 * regions still waiting for raft (no leader, or a leader on a dead store). */
static int64_t
tikv_fresh_read(struct tikv_priv *p, struct pd_stores *ss, struct pd_regions *rs,
    struct tikv_plan_store **ps_out, size_t *nps, char *err, size_t errlen)
{
	struct pd_err pe;

	*ps_out = NULL;
	*nps = 0;
	if (pd_get_stores(&p->pd, ss, &pe) != 0) {
		snprintf(err, errlen, "%s", pe.message);
		return -1;
	}
	if (pd_get_regions(&p->pd, rs, &pe) != 0) {
		snprintf(err, errlen, "%s", pe.message);
		pd_stores_free(ss);
		return -1;
	}
	size_t n = ss->count;
	struct tikv_plan_store *ps = calloc(n ? n : 1, sizeof(*ps));
	const char **addrs = calloc(n ? n : 1, sizeof(*addrs));
	int *ok = calloc(n ? n : 1, sizeof(int));
	char (*perr)[128] = calloc(n ? n : 1, sizeof(*perr));
	size_t *map = calloc(n ? n : 1, sizeof(size_t)), np = 0;
	if (!ps || !addrs || !ok || !perr || !map) {
		free(ps), free(addrs), free(ok), free(perr), free(map);
		pd_stores_free(ss);
		pd_regions_free(rs);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		ps[i].id = ss->v[i].id;
		ps[i].live = strcmp(ss->v[i].state_name, "Up") == 0;
		if (ps[i].live && ss->v[i].status_address[0]) {
			addrs[np] = ss->v[i].status_address;
			map[np++] = i;
		}
	}
	tikv_probe(p, addrs, np, ok, perr, NULL);
	for (size_t k = 0; k < np; k++)
		ps[map[k]].live = ok[k];
	free(addrs), free(ok), free(perr), free(map);
	int64_t waiting = 0;
	for (size_t r = 0; r < rs->count; r++) {
		const struct pd_region *rg = &rs->v[r];
		long si = rg->has_leader ? tikv_ps_find(ps, n, rg->leader.store_id) : -1;
		if (si < 0 || !ps[si].live)
			waiting++;
		else
			ps[si].before++;
	}
	*ps_out = ps;
	*nps = n;
	return waiting;
}

/* Picks the region's best receiver: a serving store below the mean that
 * holds a healthy voter, the emptiest one; -1 when none qualifies. */
static long
tikv_pick_receiver(const struct pd_region *rg, struct tikv_plan_store *ps, size_t nps,
    long giver, double mean, uint64_t only)
{
	long best = -1;

	for (size_t k = 0; k < rg->n_peers; k++) {
		const struct pd_peer *pp = &rg->peers[k];
		long si = tikv_ps_find(ps, nps, pp->store_id);
		if (si < 0 || si == giver || !ps[si].live || ps[si].evicted ||
		    strcmp(pp->role, "Voter") != 0 || tikv_peer_unhealthy(rg, pp->store_id))
			continue;
		if (only && ps[si].id != only)
			continue;
		/* moving one leader must shrink the gap, never swap it */
		if ((double)ps[si].now >= mean || ps[giver].now - ps[si].now < 2)
			continue;
		if (best < 0 || ps[si].now < ps[best].now)
			best = si;
	}
	return best;
}

static json_object *
tikv_counts_json(const struct tikv_plan_store *ps, size_t n, int after)
{
	json_object *o = json_object_new_object();

	for (size_t i = 0; i < n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%" PRIu64, ps[i].id);
		op_json_set_int(o, id, after ? ps[i].now : ps[i].before);
	}
	return o;
}

/* POSTs the planned transfer-leader operators, TIKV_POST_BATCH at a time,
 * marking each accepted one in ok[]. Stops before a batch when the action is
 * cancelled; *posted counts the operators sent. */
static void
tikv_post_moves(const struct tikv_priv *p, const struct tikv_move *mv, size_t n, char *ok,
    size_t *posted, size_t *accepted, json_object *rejections)
{
	struct op_http_req reqs[TIKV_POST_BATCH];
	char bodies[TIKV_POST_BATCH][128], url[TIKV_URL_MAX];

	snprintf(url, sizeof(url), "%s/pd/api/v1/operators", p->pd_url);
	*accepted = 0;
	*posted = 0;
	for (size_t off = 0; off < n; off += TIKV_POST_BATCH) {
		if (op_action_cancelled())
			return; /* cancellation point: before each PD operator post */
		size_t b = n - off < TIKV_POST_BATCH ? n - off : TIKV_POST_BATCH;
		for (size_t i = 0; i < b; i++) {
			/* exactly {"name":"transfer-leader","region_id":R,"to_store_id":S} */
			pd_build_transfer_leader_body(bodies[i], sizeof(bodies[i]), mv[off + i].region,
			    mv[off + i].to);
			memset(&reqs[i], 0, sizeof(reqs[i]));
			reqs[i].method = "POST";
			reqs[i].url = url;
			reqs[i].body = bodies[i];
			reqs[i].timeout_ms = TIKV_ACTION_TIMEOUT_MS;
			reqs[i].connect_timeout_ms = TIKV_ACTION_TIMEOUT_MS;
		}
		op_http_multi(reqs, b);
		*posted += b;
		for (size_t i = 0; i < b; i++) {
			struct op_http_req *r = &reqs[i];
			if (!r->err[0] && r->status >= 200 && r->status <= 299) {
				(*accepted)++;
				ok[off + i] = 1;
			} else {
				struct pd_err pe;
				if (r->err[0])
					snprintf(pe.message, sizeof(pe.message), "POST /pd/api/v1/operators: %s",
					    r->err);
				else
					pd_parse_error("POST /pd/api/v1/operators", r->status, r->resp,
					    r->resp_len, &pe);
				if (rejections && json_object_array_length(rejections) < TIKV_REJECTS_MAX) {
					json_object *j = json_object_new_object();
					json_object_object_add(j, "region_id",
					    json_object_new_uint64(mv[off + i].region));
					json_object_object_add(j, "to_store_id",
					    json_object_new_uint64(mv[off + i].to));
					op_json_set_str(j, "error", pe.message);
					json_object_array_add(rejections, j);
				}
			}
			op_http_req_reset(r);
		}
	}
}

static void
tikv_touch(json_object *set, uint64_t store)
{
	char id[32];

	snprintf(id, sizeof(id), "%" PRIu64, store);
	for (size_t i = 0; i < json_object_array_length(set); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(set, i)), id))
			return;
	json_object_array_add(set, json_object_new_string(id));
}

/* Stores a plan touches beyond those already touched in the blast window;
 * -1 with why when it exceeds what the executor allows. */
static int
tikv_blast_fits(json_object *touched, char *why, size_t whylen)
{
	const struct op_exec_ctx *ctx = op_exec_ctx_get();
	int64_t fresh = 0;

	if (ctx == NULL || ctx->blast_new_max < 0)
		return 0;
	for (size_t i = 0; i < json_object_array_length(touched); i++) {
		const char *id = json_object_get_string(json_object_array_get_idx(touched, i));
		int seen = 0;
		for (size_t k = 0; ctx->blast_touched && k < json_object_array_length(ctx->blast_touched);
		     k++)
			seen |= !strcmp(json_object_get_string(json_object_array_get_idx(ctx->blast_touched,
			    k)), id);
		fresh += !seen;
	}
	if (fresh <= ctx->blast_new_max)
		return 0;
	snprintf(why, whylen, "the plan touches %lld store(s) not yet touched in the blast window"
	    " (%s); the blast radius allows %lld more", (long long)fresh,
	    json_object_to_json_string_ext(touched, JSON_C_TO_STRING_PLAIN),
	    (long long)ctx->blast_new_max);
	return -1;
}

static int
tikv_rebalance(struct tikv_priv *p, json_object *params, json_object **result, char *err,
    size_t errlen)
{
	uint64_t only = op_json_u64(params, "to_store_id", 0);
	struct pd_stores ss;
	struct pd_regions rs;
	struct tikv_plan_store *ps = NULL;
	size_t nps = 0, nbusy = 0, skipped_busy = 0;
	int64_t t0 = op_mono_ms(), waiting;
	uint64_t evicted[TIKV_STORES_MAX], *busy;
	size_t nev = 0;
	char everr[256] = "";

	/* Leaders still on a dead store cannot be moved and will land somewhere
	 * when raft elects: plan after the elections, within a bound. */
	for (;;) {
		waiting = tikv_fresh_read(p, &ss, &rs, &ps, &nps, err, errlen);
		if (waiting < 0)
			return -1;
		if (waiting == 0 || op_mono_ms() - t0 >= p->election_wait_ms)
			break;
		free(ps);
		pd_stores_free(&ss);
		pd_regions_free(&rs);
		op_sleep_ms(TIKV_ELECTION_POLL_MS);
		if (op_action_cancelled()) {
			/* cancellation point: after each wait; nothing posted yet */
			json_object *res = json_object_new_object();
			json_object_object_add(res, "cancelled", json_object_new_boolean(1));
			op_json_set_int(res, "planned", 0);
			op_json_set_int(res, "posted", 0);
			op_json_set_int(res, "accepted", 0);
			op_json_set_int(res, "waited_for_elections_ms", op_mono_ms() - t0);
			op_json_set_str(res, "done", "nothing: stopped while waiting for raft elections");
			*result = res;
			snprintf(err, errlen, "cancelled while waiting for elections; no operator posted");
			return -1;
		}
	}
	int64_t waited = op_mono_ms() - t0;
	if (tikv_read_evicted(p, evicted, TIKV_STORES_MAX, &nev, everr, sizeof(everr)) != 0)
		log_warn("%s: evicted stores unknown (%s); PD refuses those targets itself", __func__,
		    everr);
	if ((busy = tikv_busy_regions(p, &nbusy, err, errlen)) == NULL) {
		free(ps);
		pd_stores_free(&ss);
		pd_regions_free(&rs);
		return -1;
	}
	int64_t total = 0;
	size_t nserving = 0;
	for (size_t i = 0; i < nps; i++) {
		for (size_t k = 0; k < nev; k++)
			ps[i].evicted |= evicted[k] == ps[i].id;
		ps[i].now = ps[i].before;
		if (ps[i].live && !ps[i].evicted) {
			total += ps[i].before;
			nserving++;
		}
	}
	double mean = nserving ? (double)total / (double)nserving : 0;
	size_t cap = (size_t)p->max_operators;
	struct tikv_move *mv = calloc(cap, sizeof(*mv));
	size_t nmv = 0;
	if (mv == NULL) {
		snprintf(err, errlen, "out of memory");
		free(ps), free(busy);
		pd_stores_free(&ss);
		pd_regions_free(&rs);
		return -1;
	}
	for (size_t r = 0; r < rs.count && nmv < cap && nserving >= 2; r++) {
		const struct pd_region *rg = &rs.v[r];
		long g = rg->has_leader ? tikv_ps_find(ps, nps, rg->leader.store_id) : -1;
		/* a leader on an evicted store is PD's evict-leader scheduler's to move */
		if (g < 0 || !ps[g].live || ps[g].evicted || (double)ps[g].now <= mean)
			continue;
		long t = tikv_pick_receiver(rg, ps, nps, g, mean, only);
		if (t < 0)
			continue;
		if (bsearch(&rg->id, busy, nbusy, sizeof(*busy), tikv_u64_cmp) != NULL) {
			skipped_busy++; /* PD allows one operator per region */
			continue;
		}
		mv[nmv].region = rg->id;
		mv[nmv].from = ps[g].id;
		mv[nmv].to = ps[t].id;
		nmv++;
		ps[g].now--;
		ps[t].now++;
	}
	json_object *res = json_object_new_object(), *rej = json_object_new_array();
	json_object *moves = json_object_new_array(), *touched = json_object_new_array();
	size_t accepted = 0, posted = 0;
	char *ok = calloc(nmv ? nmv : 1, 1), bwhy[512];
	for (size_t i = 0; i < nmv; i++) {
		tikv_touch(touched, mv[i].from);
		tikv_touch(touched, mv[i].to);
	}
	int blast_ok = tikv_blast_fits(touched, bwhy, sizeof(bwhy)) == 0;
	if (ok != NULL && blast_ok)
		tikv_post_moves(p, mv, nmv, ok, &posted, &accepted, rej);
	int cancelled = blast_ok && posted < nmv && op_action_cancelled();
	/* undo: every accepted move back to the store it came from */
	json_object *undo = json_object_new_object(), *back = json_object_new_array();
	for (size_t i = 0; ok && i < nmv; i++) {
		if (!ok[i])
			continue;
		json_object *m = json_object_new_object();
		json_object_object_add(m, "region_id", json_object_new_uint64(mv[i].region));
		json_object_object_add(m, "to_store_id", json_object_new_uint64(mv[i].from));
		json_object_array_add(back, m);
	}
	json_object_object_add(undo, "moves", back);
	json_object_object_add(res, "undo", undo);
	json_object_object_add(res, "touched", touched);
	op_json_set_int(res, "nodes_total", (int64_t)nps);
	op_json_set_int(res, "posted", (int64_t)posted);
	if (cancelled)
		json_object_object_add(res, "cancelled", json_object_new_boolean(1));
	for (size_t i = 0; i < nmv && i < TIKV_MOVES_QUOTED; i++) {
		json_object *m = json_object_new_object();
		json_object_object_add(m, "region_id", json_object_new_uint64(mv[i].region));
		json_object_object_add(m, "from_store_id", json_object_new_uint64(mv[i].from));
		json_object_object_add(m, "to_store_id", json_object_new_uint64(mv[i].to));
		json_object_array_add(moves, m);
	}
	op_json_set_int(res, "planned", (int64_t)nmv);
	op_json_set_int(res, "accepted", (int64_t)accepted);
	op_json_set_int(res, "rejected", (int64_t)(nmv - accepted));
	json_object_object_add(res, "rejections", rej);
	json_object_object_add(res, "leaders_before", tikv_counts_json(ps, nps, 0));
	json_object_object_add(res, "leaders_planned", tikv_counts_json(ps, nps, 1));
	json_object_object_add(res, "mean", json_object_new_double(mean));
	op_json_set_int(res, "serving_stores", (int64_t)nserving);
	op_json_set_int(res, "max_operators", p->max_operators);
	op_json_set_int(res, "skipped_region_busy", (int64_t)skipped_busy);
	op_json_set_int(res, "regions_awaiting_election", waiting);
	op_json_set_int(res, "waited_for_elections_ms", waited);
	if (only)
		json_object_object_add(res, "to_store_id", json_object_new_uint64(only));
	if (everr[0])
		op_json_set_str(res, "evicted_unknown", everr);
	json_object_object_add(res, "moves", moves);
	log_info("rebalance_leaders: planned %zu, accepted %zu (mean %.1f over %zu stores)", nmv,
	    accepted, mean, nserving);
	int rc = 0;
	if (ok == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	} else if (!blast_ok) {
		snprintf(err, errlen, "blast radius: %s", bwhy);
		op_json_set_str(res, "refused", bwhy);
		op_json_set_str(res, "applied", "rejected"); /* nothing posted; retrying will not help */
		rc = -1;
	} else if (cancelled) {
		snprintf(err, errlen, "cancelled after posting %zu of %zu operators (%zu accepted)",
		    posted, nmv, accepted);
		op_json_set_str(res, "done", err);
		rc = -1;
	} else if (nmv > 0 && accepted == 0) {
		snprintf(err, errlen, "PD rejected all %zu transfer-leader operators: %s", nmv,
		    op_json_str(json_object_array_get_idx(rej, 0), "error", "?"));
		rc = -1;
	}
	*result = res;
	free(ok);
	free(mv), free(ps), free(busy);
	pd_stores_free(&ss);
	pd_regions_free(&rs);
	return rc;
}

/* ------------------------------------------------------------------ */
/* execution */

static json_object *
tikv_op_result(const char *op, json_object *params)
{
	json_object *r = json_object_new_object();

	op_json_set_str(r, "pd_call", op);
	json_object_object_add(r, "params", json_object_get(params));
	return r;
}

/* ------------------------------------------------------------------ */
/* undo */

static json_object *
tikv_store_list(uint64_t a, uint64_t b)
{
	json_object *set = json_object_new_array();

	if (a)
		tikv_touch(set, a);
	if (b)
		tikv_touch(set, b);
	return set;
}

static int
tikv_is_evicted(const struct tikv_priv *p, uint64_t store, int *evicted, char *err,
    size_t errlen)
{
	uint64_t ids[TIKV_STORES_MAX];
	size_t n = 0;

	*evicted = 0;
	if (tikv_read_evicted(p, ids, TIKV_STORES_MAX, &n, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		*evicted |= ids[i] == store;
	return 0;
}

/* What undo needs, read before the change; NULL (err says why) when it
 * cannot be read: a reversible action never runs blind to its undo. *none
 * is set when there is nothing to undo (the state was already as asked). */
static json_object *
tikv_undo_before(struct tikv_priv *p, const char *action, json_object *params, char *err,
    size_t errlen)
{
	struct pd_err pe;
	json_object *undo = json_object_new_object();

	if (strcmp(action, "transfer_leader") == 0) {
		struct pd_region r;
		if (pd_get_region(&p->pd, op_json_u64(params, "region_id", 0), &r, &pe) != 0) {
			snprintf(err, errlen, "reading the region's leader for undo: %s", pe.message);
			json_object_put(undo);
			return NULL;
		}
		json_object *back = json_object_new_array();
		if (r.has_leader) {
			json_object *m = json_object_new_object();
			json_object_object_add(m, "region_id", json_object_new_uint64(r.id));
			json_object_object_add(m, "to_store_id", json_object_new_uint64(r.leader.store_id));
			json_object_array_add(back, m);
			json_object_object_add(undo, "from_store_id",
			    json_object_new_uint64(r.leader.store_id));
		}
		json_object_object_add(undo, "moves", back);
		pd_region_free(&r);
	} else if (strcmp(action, "evict_leader") == 0 ||
	    strcmp(action, "remove_evict_leader") == 0) {
		int ev;
		if (tikv_is_evicted(p, op_json_u64(params, "store_id", 0), &ev, err, errlen) != 0) {
			json_object_put(undo);
			return NULL;
		}
		json_object_object_add(undo, "store_id",
		    json_object_new_uint64(op_json_u64(params, "store_id", 0)));
		/* undo restores what was: never lift an eviction someone else made */
		json_object_object_add(undo, "evicted", json_object_new_boolean(ev));
	} else if (strcmp(action, "set_max_store_down_time") == 0) {
		struct pd_schedule_config sc;
		char dur[32];
		if (pd_get_schedule_config(&p->pd, &sc, &pe) != 0) {
			snprintf(err, errlen, "reading max-store-down-time for undo: %s", pe.message);
			json_object_put(undo);
			return NULL;
		}
		snprintf(dur, sizeof(dur), "%llds", (long long)(sc.max_store_down_time_ms / 1000));
		pd_schedule_config_free(&sc);
		op_json_set_str(undo, "duration", dur);
	} else {
		json_object_put(undo);
		return json_object_new_object();
	}
	return undo;
}

/* Undo of transfer_leader and rebalance_leaders: each moved leader back. */
static int
tikv_revert_leaders(struct op_subject *s, json_object *undo, json_object **result, char *err,
    size_t errlen)
{
	struct tikv_priv *p = s->priv;
	json_object *back = op_json_arr(undo, "moves"), *rej = json_object_new_array();
	size_t n = back ? json_object_array_length(back) : 0, posted = 0, accepted = 0;
	struct tikv_move *mv = calloc(n ? n : 1, sizeof(*mv));
	char *ok = calloc(n ? n : 1, 1);

	*result = NULL;
	if (mv == NULL || ok == NULL) {
		free(mv), free(ok);
		json_object_put(rej);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(back, i);
		mv[i].region = op_json_u64(m, "region_id", 0);
		mv[i].to = op_json_u64(m, "to_store_id", 0);
	}
	tikv_post_moves(p, mv, n, ok, &posted, &accepted, rej);
	json_object *r = json_object_new_object();
	op_json_set_int(r, "moves", (int64_t)n);
	op_json_set_int(r, "accepted", (int64_t)accepted);
	json_object_object_add(r, "rejections", rej);
	*result = r;
	free(mv), free(ok);
	if (n > 0 && accepted == 0) {
		snprintf(err, errlen, "PD accepted none of the %zu transfer-leader operators back", n);
		return -1;
	}
	return 0;
}

/* Undo of evict_leader / remove_evict_leader: the eviction as it was. */
static int
tikv_revert_evict(struct op_subject *s, json_object *undo, json_object **result, char *err,
    size_t errlen)
{
	struct tikv_priv *p = s->priv;
	struct pd_err pe;
	uint64_t store = op_json_u64(undo, "store_id", 0);
	int was = op_json_bool(undo, "evicted", 0), rc;

	rc = was ? pd_evict_leader_add(&p->pd, store, &pe) : pd_evict_leader_remove(&p->pd, store,
	    &pe);
	*result = json_object_new_object();
	json_object_object_add(*result, "store_id", json_object_new_uint64(store));
	json_object_object_add(*result, "evicted", json_object_new_boolean(was));
	if (rc != 0 && !(pe.not_found && !was)) {
		snprintf(err, errlen, "%s", pe.message);
		return -1;
	}
	return 0;
}

static int
tikv_revert_msdt(struct op_subject *s, json_object *undo, json_object **result, char *err,
    size_t errlen)
{
	struct tikv_priv *p = s->priv;
	struct pd_err pe;
	const char *dur = op_json_str(undo, "duration", "");

	*result = json_object_new_object();
	op_json_set_str(*result, "duration", dur);
	if (pd_set_max_store_down_time(&p->pd, dur, &pe) != 0) {
		snprintf(err, errlen, "%s", pe.message);
		return -1;
	}
	return 0;
}

/* Shorter than PD's default, PD re-replicates a store that is only
 * restarting: within bounds, but a human decides. */
static int
tikv_bounds_msdt(json_object *params, char *why, size_t len)
{
	int64_t ns;
	const char *d = op_json_str(params, "duration", "");

	if (pd_parse_go_duration_ns(d, &ns) == 0 && ns < TIKV_MSDT_HUMAN_NS) {
		snprintf(why, len, "max-store-down-time %s is below PD's 30m default: PD would "
		    "re-replicate stores that are only restarting", d);
		return OP_FIT_APPROVAL;
	}
	return OP_FIT_OK;
}

int
tikv_execute(struct op_subject *s, const char *action, json_object *params,
    json_object **result, char *err, size_t errlen)
{
	struct tikv_priv *p = s->priv;
	struct pd_client c = p->pd;
	struct pd_err pe;
	uint64_t rid = op_json_u64(params, "region_id", 0), store = op_json_u64(params, "store_id", 0);
	uint64_t to = op_json_u64(params, "to_store_id", 0);
	int rc;

	*result = NULL;
	err[0] = '\0';
	c.timeout_ms = TIKV_ACTION_TIMEOUT_MS > p->timeout_ms ? TIKV_ACTION_TIMEOUT_MS : p->timeout_ms;
	if (strcmp(action, "rebalance_leaders") == 0)
		return tikv_rebalance(p, params, result, err, errlen);
	json_object *undo = tikv_undo_before(p, action, params, err, errlen);
	if (undo == NULL)
		return -1;
	if (op_action_cancelled()) {
		*result = json_object_new_object();
		json_object_object_add(*result, "cancelled", json_object_new_boolean(1));
		op_json_set_str(*result, "done", "nothing: stopped before the PD call");
		snprintf(err, errlen, "cancelled before the PD call");
		json_object_put(undo);
		return -1;
	}
	if (strcmp(action, "transfer_leader") == 0) {
		rc = pd_transfer_leader(&c, rid, to, &pe);
		*result = tikv_op_result("POST /operators transfer-leader", params);
	} else if (strcmp(action, "transfer_peer") == 0) {
		rc = pd_transfer_peer(&c, rid, op_json_u64(params, "from_store_id", 0), to, &pe);
		*result = tikv_op_result("POST /operators transfer-peer", params);
	} else if (strcmp(action, "add_peer") == 0) {
		rc = pd_add_peer(&c, rid, store, &pe);
		*result = tikv_op_result("POST /operators add-peer", params);
	} else if (strcmp(action, "remove_peer") == 0) {
		rc = pd_remove_peer(&c, rid, store, &pe);
		*result = tikv_op_result("POST /operators remove-peer", params);
	} else if (strcmp(action, "evict_leader") == 0) {
		rc = pd_evict_leader_add(&c, store, &pe);
		*result = tikv_op_result("POST /schedulers evict-leader-scheduler", params);
	} else if (strcmp(action, "remove_evict_leader") == 0) {
		rc = pd_evict_leader_remove(&c, store, &pe);
		*result = tikv_op_result("DELETE /schedulers/evict-leader-scheduler-{id}", params);
	} else if (strcmp(action, "remove_store") == 0) {
		rc = pd_delete_store(&c, store, 0, &pe);
		*result = tikv_op_result("DELETE /store/{id}", params);
	} else if (strcmp(action, "set_max_store_down_time") == 0) {
		rc = pd_set_max_store_down_time(&c, op_json_str(params, "duration", ""), &pe);
		*result = tikv_op_result("POST /config/schedule max-store-down-time", params);
	} else {
		snprintf(err, errlen, "unknown action \"%s\"", action);
		json_object_put(undo);
		return -1;
	}
	json_object_object_add(*result, "accepted", json_object_new_boolean(rc == 0));
	/* what undo needs, and the stores touched (blast radius) */
	if (json_object_object_length(undo) > 0)
		json_object_object_add(*result, "undo", undo);
	else
		json_object_put(undo);
	uint64_t from = op_json_u64(op_json_obj(*result, "undo"), "from_store_id",
	    op_json_u64(params, "from_store_id", 0));
	json_object_object_add(*result, "touched", tikv_store_list(from, to ? to : store));
	if (rc != 0) {
		op_json_set_str(*result, "error", pe.message);
		snprintf(err, errlen, "%s", pe.message);
		return -1;
	}
	return 0;
}
