/* pdsim_cluster: the simulated PD cluster model. No I/O here: the HTTP layer
 * and the process manager call in with the current monotonic time.
 *
 * Liveness is driven only by store heartbeats: a store whose process was
 * SIGKILLed stops heartbeating and so walks Up → Disconnected → Down exactly
 * as PD sees it. Raft is approximated: peers on a store without a heartbeat
 * for election_ms count as unreachable; a region whose leader is unreachable
 * elects a new leader among the reachable voters if they are a majority. */
#include "subjects/tikv/pdsim/pdsim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/util.h"

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *const sim_default_schedulers[] = {
	"balance-leader-scheduler", "balance-hot-region-scheduler", "balance-region-scheduler",
	"evict-slow-store-scheduler", "evict-stopping-store-scheduler",
};
const size_t sim_n_default_schedulers = OP_ARRAY_LEN(sim_default_schedulers);
#define SCHED_BALANCE_LEADER 0

/* ------------------------------------------------------------ liveness */

static int64_t
since_hb(const struct sim_store *s, int64_t now)
{
	return now - s->last_hb_ms;
}

const char *
sim_store_state_name(const struct sim_cluster *c, const struct sim_store *s, int64_t now)
{
	if (s->state == 1)
		return "Offline";
	if (s->state == 2)
		return "Tombstone";
	/* PD overrides state_name only for Up stores; the comparisons are strict. */
	if (since_hb(s, now) > c->max_store_down_ms)
		return "Down";
	if (since_hb(s, now) > c->o->disconnect_ms)
		return "Disconnected";
	return "Up";
}

int
sim_store_raft_alive(const struct sim_cluster *c, const struct sim_store *s, int64_t now)
{
	return s->state != 2 && since_hb(s, now) <= c->o->election_ms;
}

int
sim_peer_pending(const struct sim_cluster *c, const struct sim_peer *p, int64_t now)
{
	/* A leader lists a peer as pending when its raft progress lags: an
	 * unreachable store, or a new/returning peer still catching up. */
	return p->catchup_until_ms > now || !sim_store_raft_alive(c, &c->stores[p->store], now);
}

int
sim_peer_down(const struct sim_cluster *c, const struct sim_peer *p, int64_t now)
{
	return since_hb(&c->stores[p->store], now) > c->o->peer_down_ms;
}

static int
store_up_for_leader(const struct sim_cluster *c, const struct sim_store *s, int64_t now)
{
	/* PD's leaderTarget filter: not Down/Disconnected, not Removing, not evicted. */
	return s->state == 0 && !s->evicted && strcmp(sim_store_state_name(c, s, now), "Up") == 0;
}

/* --------------------------------------------------------------- setup */

struct sim_store *
sim_store_find(struct sim_cluster *c, uint64_t id)
{
	if (id == 0 || id > c->n_stores)
		return NULL;
	return &c->stores[id - 1];
}

struct sim_region *
sim_region_find(struct sim_cluster *c, uint64_t id)
{
	size_t lo = 0, hi = c->n_regions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->regions[mid].id == id)
			return &c->regions[mid];
		if (c->regions[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static json_object *
default_schedule_config(int64_t down_ms)
{
	char dur[48];
	json_object *o = json_object_new_object();

	go_duration(down_ms * 1000000, dur, sizeof(dur));
#define U(k, v) json_object_object_add(o, k, json_object_new_uint64(v))
#define S(k, v) json_object_object_add(o, k, json_object_new_string(v))
	U("max-snapshot-count", 64);
	U("max-pending-peer-count", 64);
	U("max-merge-region-size", 54);
	U("max-merge-region-keys", 540000);
	S("split-merge-interval", "1h0m0s");
	S("switch-witness-interval", "1h0m0s");
	S("enable-one-way-merge", "false");
	S("enable-cross-table-merge", "true");
	S("patrol-region-interval", "10ms");
	S("max-store-down-time", dur);
	S("max-store-preparing-time", "48h0m0s");
	U("leader-schedule-limit", 4);
	S("leader-schedule-policy", "count");
	U("region-schedule-limit", 2048);
	U("witness-schedule-limit", 4);
	U("replica-schedule-limit", 64);
	U("merge-schedule-limit", 8);
	U("hot-region-schedule-limit", 4);
	U("hot-region-cache-hits-threshold", 3);
	json_object_object_add(o, "store-limit", json_object_new_object());
	json_object_object_add(o, "tolerant-size-ratio", json_object_new_int(0));
	json_object_object_add(o, "low-space-ratio", json_object_new_double_s(0.8, "0.8"));
	json_object_object_add(o, "high-space-ratio", json_object_new_double_s(0.7, "0.7"));
	S("region-score-formula-version", "v2");
	U("scheduler-max-waiting-operator", 5);
	S("enable-remove-down-replica", "true");
	S("enable-replace-offline-replica", "true");
	S("enable-make-up-replica", "true");
	S("enable-remove-extra-replica", "true");
	S("enable-location-replacement", "true");
	S("enable-debug-metrics", "false");
	S("enable-joint-consensus", "true");
	S("enable-tikv-split-region", "true");
	S("enable-heartbeat-breakdown-metrics", "true");
	S("enable-heartbeat-concurrent-runner", "true");
	S("enable-diagnostic", "true");
	S("enable-witness", "false");
	S("hot-regions-write-interval", "10m0s");
	U("hot-regions-reserved-days", 7);
	U("max-movable-hot-peer-size", 512);
	S("store-limit-version", "v1");
	U("patrol-region-worker-count", 1);
	U("split-scatter-schedule-limit", 0);
#undef U
#undef S
	return o;
}

int
sim_cluster_init(struct sim_cluster *c, struct sim_opts *o)
{
	int64_t now = op_mono_ms();
	int64_t wall = op_wall_ms();
	int replicas = o->replicas < o->n_stores ? o->replicas : o->n_stores;
	uint64_t stride = (uint64_t)replicas + 1;

	memset(c, 0, sizeof(*c));
	c->o = o;
	c->n_stores = (size_t)o->n_stores;
	c->n_regions = (size_t)o->n_regions;
	c->stores = calloc(c->n_stores, sizeof(*c->stores));
	c->regions = calloc(c->n_regions ? c->n_regions : 1, sizeof(*c->regions));
	c->cap_ops = 64;
	c->ops = calloc(c->cap_ops, sizeof(*c->ops));
	c->records = calloc(SIM_MAX_RECORDS, sizeof(*c->records));
	if (!c->stores || !c->regions || !c->ops || !c->records)
		return -1;
	c->start_wall_ms = wall;
	c->max_store_down_ms = o->down_ms;
	c->last_balance_ms = c->last_evict_ms = now;
	c->schedule_cfg = default_schedule_config(o->down_ms);
	for (size_t i = 0; i < sim_n_default_schedulers; i++)
		c->sched_enabled[i] = 1;
	for (size_t i = 0; i < c->n_stores; i++) {
		struct sim_store *s = &c->stores[i];
		s->id = i + 1;
		s->node_state = 1;
		/* Bootstrapped stores count as just heard from, so they are Up
		 * until the first heartbeat is overdue. */
		s->last_hb_ms = now;
		s->last_hb_wall_ns = wall * 1000000;
		s->start_ts = wall / 1000;
		s->capacity = SIM_STORE_CAPACITY;
		s->available = SIM_STORE_CAPACITY / 10 * 9;
		if (o->store_port_base > 0) {
			snprintf(s->address, sizeof(s->address), "%s:%d", o->bind,
			    o->store_port_base + 2 * (int)i);
			snprintf(s->status_address, sizeof(s->status_address), "%s:%d", o->bind,
			    o->store_port_base + 2 * (int)i + 1);
		}
	}
	/* Region i: peers on stores i, i+1, i+2 (mod N), leader on store i, so
	 * leaders start balanced. Ids come from one allocator, like PD's. */
	for (size_t i = 0; i < c->n_regions; i++) {
		struct sim_region *r = &c->regions[i];
		r->id = 2 + stride * i;
		r->conf_ver = (uint64_t)replicas;
		r->version = 1 + i;
		r->size = SIM_REGION_SIZE_MIB;
		r->keys = SIM_REGION_KEYS;
		r->op = -1;
		r->n_peers = (int8_t)replicas;
		r->leader = replicas > 0 ? 0 : -1;
		for (int k = 0; k < replicas; k++) {
			r->peers[k].id = r->id + 1 + (uint64_t)k;
			r->peers[k].store = (uint32_t)((i + (size_t)k) % c->n_stores);
			r->peers[k].role = SIM_VOTER;
		}
	}
	c->next_id = 2 + stride * c->n_regions;
	sim_cluster_tick(c, now);
	return 0;
}

void
sim_cluster_free(struct sim_cluster *c)
{
	free(c->stores);
	free(c->regions);
	free(c->ops);
	free(c->records);
	json_object_put(c->schedule_cfg);
	memset(c, 0, sizeof(*c));
}

/* -------------------------------------------------------- region helpers */

static int
peer_on_store(const struct sim_region *r, uint32_t store)
{
	for (int i = 0; i < r->n_peers; i++)
		if (r->peers[i].store == store)
			return i;
	return -1;
}

static void
peer_remove(struct sim_region *r, int idx)
{
	if (r->leader == idx)
		r->leader = -1;
	else if (r->leader > idx)
		r->leader--;
	for (int i = idx; i + 1 < r->n_peers; i++)
		r->peers[i] = r->peers[i + 1];
	r->n_peers--;
}

static int
peer_add(struct sim_cluster *c, struct sim_region *r, uint32_t store, uint8_t role,
    uint64_t id, int64_t now)
{
	if (r->n_peers >= SIM_MAX_PEERS)
		return -1;
	struct sim_peer *p = &r->peers[r->n_peers];
	p->id = id ? id : c->next_id++;
	p->store = store;
	p->role = role;
	p->catchup_until_ms = now + c->o->catchup_ms;
	return r->n_peers++;
}

/* A voter that can take leadership now: reachable and caught up. Prefers
 * stores PD would allow as leader targets; spreads choices by region id. */
static int
pick_leader(const struct sim_cluster *c, const struct sim_region *r, int64_t now, int exclude)
{
	int cand[SIM_MAX_PEERS], n = 0, pass;

	for (pass = 0; pass < 2 && n == 0; pass++) {
		for (int i = 0; i < r->n_peers; i++) {
			const struct sim_peer *p = &r->peers[i];
			const struct sim_store *s = &c->stores[p->store];
			if (i == exclude || p->role != SIM_VOTER || p->catchup_until_ms > now ||
			    !sim_store_raft_alive(c, s, now))
				continue;
			if (pass == 0 && !store_up_for_leader(c, s, now))
				continue;
			cand[n++] = i;
		}
	}
	return n ? cand[(r->id / 4 + r->conf_ver) % (uint64_t)n] : -1;
}

/* Raft: with the leader unreachable, the reachable voters elect a new one
 * if they form a majority; otherwise the region stays leaderless. */
static void
region_elect(struct sim_cluster *c, struct sim_region *r, int64_t now)
{
	int voters = 0, alive = 0;

	for (int i = 0; i < r->n_peers; i++) {
		if (r->peers[i].role != SIM_VOTER)
			continue;
		voters++;
		if (sim_store_raft_alive(c, &c->stores[r->peers[i].store], now))
			alive++;
	}
	int old = r->leader;
	r->leader = alive >= voters / 2 + 1 ? (int8_t)pick_leader(c, r, now, -1) : -1;
	if (r->leader >= 0 && r->leader != old)
		c->elections++;
}

/* Down (or Offline) store: replace its peer onto the least loaded Up store
 * that holds no peer of the region. Returns 1 if a peer was replaced. */
static int
region_replace_peer(struct sim_cluster *c, struct sim_region *r, int idx, int64_t now)
{
	uint32_t best = UINT32_MAX;

	for (uint32_t s = 0; s < c->n_stores; s++) {
		const struct sim_store *st = &c->stores[s];
		if (st->state != 0 || !sim_store_raft_alive(c, st, now) ||
		    strcmp(sim_store_state_name(c, st, now), "Up") != 0 || peer_on_store(r, s) >= 0)
			continue;
		if (best == UINT32_MAX || st->region_count < c->stores[best].region_count)
			best = s;
	}
	if (best == UINT32_MAX) {
		/* Nowhere to put a replacement, but the region still has enough
		 * voters without it (after an add-peer): just drop the dead peer. */
		int voters = 0;
		for (int i = 0; i < r->n_peers; i++)
			voters += r->peers[i].role == SIM_VOTER && i != idx;
		if (voters < c->o->replicas || r->leader == idx)
			return 0;
		peer_remove(r, idx);
		r->conf_ver++;
		c->replacements++;
		return 1;
	}
	if (r->leader == idx) {
		int nl = pick_leader(c, r, now, idx);
		if (nl < 0)
			return 0;
		r->leader = (int8_t)nl;
	}
	uint8_t role = r->peers[idx].role;
	uint64_t leader_id = r->leader >= 0 ? r->peers[r->leader].id : 0;
	peer_remove(r, idx);
	peer_add(c, r, best, role, 0, now);
	for (int i = 0; i < r->n_peers; i++)
		if (r->peers[i].id == leader_id)
			r->leader = (int8_t)i;
	r->conf_ver += 2; /* add learner, then promote + remove (joint) */
	c->stores[best].region_count++;
	c->replacements++;
	return 1;
}

static int
transfer_leader_now(struct sim_cluster *c, struct sim_region *r, uint32_t to, int64_t now)
{
	int i = peer_on_store(r, to);

	if (i < 0 || r->peers[i].role != SIM_VOTER || r->leader < 0 ||
	    sim_peer_pending(c, &r->peers[i], now))
		return 0;
	if (r->leader >= 0)
		c->stores[r->peers[r->leader].store].leader_count--;
	r->leader = (int8_t)i;
	c->stores[to].leader_count++;
	return 1;
}

/* ------------------------------------------------------------- operators */

static void
op_finish(struct sim_cluster *c, size_t i, int status, int64_t now)
{
	struct sim_op op = c->ops[i];

	op.status = status;
	op.end_ms = now;
	c->regions[op.region].op = -1;
	c->records[c->rec_head] = op;
	c->rec_head = (c->rec_head + 1) % SIM_MAX_RECORDS;
	if (c->n_records < SIM_MAX_RECORDS)
		c->n_records++;
	c->n_ops--;
	if (i != c->n_ops) {
		c->ops[i] = c->ops[c->n_ops];
		c->regions[c->ops[i].region].op = (int32_t)i;
	}
}

/* Tries to apply a due operator; 1 when done. */
static int
op_apply(struct sim_cluster *c, struct sim_op *op, int64_t now)
{
	struct sim_region *r = &c->regions[op->region];
	int i;

	switch (op->kind) {
	case OPK_TRANSFER_LEADER:
		if (r->leader >= 0 && r->peers[r->leader].store == op->to)
			return 1;
		if (!sim_store_raft_alive(c, &c->stores[op->to], now))
			return 0;
		return transfer_leader_now(c, r, op->to, now);
	case OPK_ADD_PEER:
	case OPK_ADD_LEARNER:
		if (peer_on_store(r, op->to) >= 0)
			return 1;
		if (!sim_store_raft_alive(c, &c->stores[op->to], now) || r->leader < 0)
			return 0;
		if (peer_add(c, r, op->to, op->kind == OPK_ADD_PEER ? SIM_VOTER : SIM_LEARNER,
		    op->new_peer_id, now) < 0)
			return 0;
		r->conf_ver += op->kind == OPK_ADD_PEER ? 2 : 1;
		return 1;
	case OPK_REMOVE_PEER:
		if ((i = peer_on_store(r, op->from)) < 0)
			return 1;
		if (r->leader == i) {
			int nl = pick_leader(c, r, now, i);
			if (nl < 0)
				return 0;
			r->leader = (int8_t)nl;
		}
		peer_remove(r, i);
		r->conf_ver++;
		return 1;
	case OPK_TRANSFER_PEER: {
		if ((i = peer_on_store(r, op->from)) < 0)
			return 1;
		if (!sim_store_raft_alive(c, &c->stores[op->to], now) || r->leader < 0)
			return 0;
		if (r->leader == i) {
			int nl = pick_leader(c, r, now, i);
			if (nl < 0)
				return 0;
			r->leader = (int8_t)nl;
		}
		uint64_t lid = r->peers[r->leader].id;
		uint8_t role = r->peers[i].role;
		peer_remove(r, i);
		peer_add(c, r, op->to, role, op->new_peer_id, now);
		for (int k = 0; k < r->n_peers; k++)
			if (r->peers[k].id == lid)
				r->leader = (int8_t)k;
		r->conf_ver += 3;
		return 1;
	}
	case OPK_TRANSFER_REGION: {
		for (int k = 0; k < op->n_to; k++)
			if (!sim_store_raft_alive(c, &c->stores[op->to_stores[k]], now))
				return 0;
		struct sim_region nr = *r;
		uint64_t lid = r->leader >= 0 ? r->peers[r->leader].id : 0;
		nr.n_peers = 0;
		nr.leader = -1;
		for (int k = 0; k < op->n_to; k++) {
			int old = peer_on_store(r, op->to_stores[k]);
			uint8_t role = op->to_roles[k] == 1 ? SIM_LEARNER : SIM_VOTER;
			if (old >= 0) {
				nr.peers[nr.n_peers] = r->peers[old];
				nr.peers[nr.n_peers].role = role;
				nr.n_peers++;
			} else {
				peer_add(c, &nr, op->to_stores[k], role, 0, now);
				nr.conf_ver++;
			}
			if (op->to_roles[k] == 2)
				nr.leader = (int8_t)(nr.n_peers - 1);
		}
		if (nr.leader < 0)
			for (int k = 0; k < nr.n_peers; k++)
				if (nr.peers[k].id == lid)
					nr.leader = (int8_t)k;
		if (nr.leader < 0)
			nr.leader = (int8_t)pick_leader(c, &nr, now + c->o->catchup_ms + 1, -1);
		nr.conf_ver += (uint64_t)r->n_peers;
		*r = nr;
		return 1;
	}
	}
	return 1;
}

static void
ops_step(struct sim_cluster *c, int64_t now)
{
	for (size_t i = 0; i < c->n_ops;) {
		struct sim_op *op = &c->ops[i];
		if (op->finish_ms > now) {
			i++;
			continue;
		}
		if (op_apply(c, op, now))
			op_finish(c, i, OPS_SUCCESS, now);
		else if (now >= op->deadline_ms)
			op_finish(c, i, OPS_TIMEOUT, now);
		else
			i++;
	}
}

static void
ops_timestr(const struct sim_cluster *c, const struct sim_op *op, char *out, size_t len)
{
	(void)c;
	go_time_string(op->create_wall_ms * 1000000, out, len);
}

void
sim_op_string(const struct sim_cluster *c, const struct sim_op *op, int with_status, char *out,
    size_t len)
{
	static const char *const st[] = {"RUNNING", "SUCCESS", "CANCEL", "TIMEOUT", "REPLACE"};
	char t[64], to[32];
	const struct sim_region *r = &c->regions[op->region];
	size_t steps = 1;

	for (const char *p = op->steps; *p; p++)
		steps += *p == '}' && p[1] == ',';
	ops_timestr(c, op, t, sizeof(t));
	go_duration(c->o->op_timeout_ms * 1000000, to, sizeof(to));
	snprintf(out, len, "%s%s%s%s {%s} (kind:%s, region:%" PRIu64 "(%" PRIu64 ", %" PRIu64
	    "), createAt:%s, startAt:%s, currentStep:%zu, size:%" PRId64 ", steps:[%s], timeout:[%s])%s",
	    with_status ? "status: " : "", with_status ? st[op->status] : "",
	    with_status ? ", operator: " : "", op->desc, op->brief, op->kinds, op->region_id,
	    op->version, op->conf_ver, t, t, op->status == OPS_SUCCESS ? steps : 0, r->size,
	    op->steps, to, op->status == OPS_SUCCESS ? " finished" : op->status == OPS_TIMEOUT ?
	    " timeout" : "");
}

const struct sim_op *
sim_op_lookup(const struct sim_cluster *c, uint64_t region_id, int64_t now)
{
	const struct sim_region *r = sim_region_find((struct sim_cluster *)c, region_id);

	if (r != NULL && r->op >= 0)
		return &c->ops[r->op];
	for (size_t k = 0; k < c->n_records; k++) {
		size_t i = (c->rec_head + SIM_MAX_RECORDS - 1 - k) % SIM_MAX_RECORDS;
		if (c->records[i].region_id == region_id)
			return now - c->records[i].end_ms <= c->o->record_ms ? &c->records[i] : NULL;
	}
	return NULL;
}

int
sim_op_cancel(struct sim_cluster *c, uint64_t region_id, int64_t now)
{
	struct sim_region *r = sim_region_find(c, region_id);

	if (r == NULL || r->op < 0)
		return -1;
	op_finish(c, (size_t)r->op, OPS_CANCEL, now);
	return 0;
}

void
sim_op_cancel_all(struct sim_cluster *c, int64_t now)
{
	while (c->n_ops > 0)
		op_finish(c, c->n_ops - 1, OPS_CANCEL, now);
}

/* PD decodes the body into map[string]any, so numbers are float64 and a
 * string id counts as missing. */
static int
num_field(json_object *in, const char *k, uint64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(in, k, &v) || v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		if (json_object_get_int64(v) < 0)
			return 0;
		*out = json_object_get_uint64(v);
		return 1;
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (d < 0 || d >= 18446744073709551615.0)
			return 0;
		*out = (uint64_t)d;
		return 1;
	}
	return 0;
}

/* PD checkStoreState for admin operator targets. 0 when usable. */
static int
check_store_state(struct sim_cluster *c, uint64_t id, int64_t now, char *msg, size_t len)
{
	struct sim_store *s = sim_store_find(c, id);

	if (s == NULL) {
		snprintf(msg, len, "[PD:core:ErrStoreNotFound]store %" PRIu64 " not found", id);
		return 500;
	}
	if (s->state == 2) {
		snprintf(msg, len, "[PD:core:ErrStoreRemoved]store %" PRIu64 " has been removed", id);
		return 500;
	}
	if (since_hb(s, now) > c->o->unhealthy_ms) {
		snprintf(msg, len, "[PD:core:ErrStoreUnhealthy]store %" PRIu64 " is unhealthy", id);
		return 500;
	}
	return 0;
}

static struct sim_op *
op_new(struct sim_cluster *c, struct sim_region *r, int kind, int64_t now)
{
	if (c->n_ops == c->cap_ops) {
		struct sim_op *n = realloc(c->ops, c->cap_ops * 2 * sizeof(*n));
		if (n == NULL)
			return NULL;
		c->ops = n;
		c->cap_ops *= 2;
	}
	struct sim_op *op = &c->ops[c->n_ops];
	memset(op, 0, sizeof(*op));
	op->region_id = r->id;
	op->region = (uint32_t)(r - c->regions);
	op->kind = kind;
	op->status = OPS_RUNNING;
	op->conf_ver = r->conf_ver;
	op->version = r->version;
	op->create_wall_ms = op_wall_ms();
	op->finish_ms = now + c->o->op_ms;
	op->deadline_ms = now + c->o->op_timeout_ms;
	op->kinds = "admin,region";
	r->op = (int32_t)c->n_ops++;
	return op;
}

#define ADD_OP_FAILED "[PD:operator:ErrAddOperator]failed to add operator, maybe already have one"

static int
create_transfer_leader(struct sim_cluster *c, struct sim_region *r, uint64_t to, int64_t now,
    char *msg, size_t len)
{
	struct sim_store *ts = sim_store_find(c, to);
	int pi = ts ? peer_on_store(r, (uint32_t)(to - 1)) : -1;

	if (pi < 0 || r->peers[pi].role != SIM_VOTER) {
		snprintf(msg, len, "region has no voter in store %" PRIu64, to);
		return 500;
	}
	if (r->leader < 0) {
		snprintf(msg, len, "cannot build operator for region with no leader");
		return 500;
	}
	if (!store_up_for_leader(c, ts, now)) {
		snprintf(msg, len, "cannot create operator: target leader is not allowed");
		return 500;
	}
	if (sim_peer_pending(c, &r->peers[pi], now) || sim_peer_down(c, &r->peers[pi], now)) {
		snprintf(msg, len, "cannot transfer leader to %" PRIu64 ": unhealthy", to);
		return 500;
	}
	if (r->leader == pi) {
		snprintf(msg, len, "no operator step is built");
		return 500;
	}
	if (r->op >= 0) {
		snprintf(msg, len, ADD_OP_FAILED);
		return 500;
	}
	uint64_t from = c->stores[r->peers[r->leader].store].id;
	struct sim_op *op = op_new(c, r, OPK_TRANSFER_LEADER, now);
	if (op == NULL) {
		snprintf(msg, len, "out of memory");
		return 500;
	}
	op->from = r->peers[r->leader].store;
	op->to = (uint32_t)(to - 1);
	snprintf(op->desc, sizeof(op->desc), "admin-transfer-leader");
	snprintf(op->brief, sizeof(op->brief), "transfer leader: store %" PRIu64 " to %" PRIu64,
	    from, to);
	snprintf(op->steps, sizeof(op->steps),
	    "0:{transfer leader from store %" PRIu64 " to store %" PRIu64 "}", from, to);
	op->kinds = "admin,leader";
	return 200;
}

int
sim_op_create(struct sim_cluster *c, json_object *in, int64_t now, char *msg, size_t len)
{
	json_object *nv;
	const char *name;
	uint64_t rid = 0, sid = 0, from = 0;
	int rc;

	if (!json_object_object_get_ex(in, "name", &nv) || !json_object_is_type(nv, json_type_string)) {
		snprintf(msg, len, "missing operator name");
		return 400;
	}
	name = json_object_get_string(nv);
	static const char *const known[] = {"transfer-leader", "transfer-region", "transfer-peer",
	    "add-peer", "add-learner", "remove-peer", "merge-region", "split-region",
	    "scatter-region", "scatter-regions"};
	size_t k;
	for (k = 0; k < OP_ARRAY_LEN(known); k++)
		if (strcmp(name, known[k]) == 0)
			break;
	if (k == OP_ARRAY_LEN(known)) {
		snprintf(msg, len, "unknown operator");
		return 400;
	}
	if (!num_field(in, "region_id", &rid)) {
		snprintf(msg, len, "missing region id");
		return 400;
	}
	if (strcmp(name, "transfer-leader") == 0) {
		if (!num_field(in, "to_store_id", &sid)) {
			snprintf(msg, len, "missing store id to transfer leader to");
			return 400;
		}
	} else if (strcmp(name, "add-peer") == 0 || strcmp(name, "add-learner") == 0 ||
	    strcmp(name, "remove-peer") == 0) {
		if (!num_field(in, "store_id", &sid)) {
			snprintf(msg, len, "invalid store id to transfer peer to");
			return 400;
		}
	} else if (strcmp(name, "transfer-peer") == 0) {
		if (!num_field(in, "from_store_id", &from)) {
			snprintf(msg, len, "invalid store id to transfer peer from");
			return 400;
		}
		if (!num_field(in, "to_store_id", &sid)) {
			snprintf(msg, len, "invalid store id to transfer peer to");
			return 400;
		}
	} else if (strcmp(name, "transfer-region") != 0) {
		/* merge/split/scatter are valid PD operators the simulator does
		 * not model; say so instead of pretending. */
		snprintf(msg, len, "pdsim: operator %s is not simulated", name);
		return 500;
	}

	struct sim_region *r = sim_region_find(c, rid);
	if (r == NULL) {
		snprintf(msg, len, "[PD:region:ErrRegionNotFound]region %" PRIu64 " not found", rid);
		return 500;
	}
	snprintf(msg, len, "The operator is created.");
	if (strcmp(name, "transfer-leader") == 0)
		return create_transfer_leader(c, r, sid, now, msg, len);

	if (strcmp(name, "remove-peer") == 0) {
		int pi = sim_store_find(c, sid) ? peer_on_store(r, (uint32_t)(sid - 1)) : -1;
		if (pi < 0) {
			snprintf(msg, len, "region has no peer in store %" PRIu64, sid);
			return 500;
		}
		if (r->op >= 0) {
			snprintf(msg, len, ADD_OP_FAILED);
			return 500;
		}
		struct sim_op *op = op_new(c, r, OPK_REMOVE_PEER, now);
		if (op == NULL)
			return 500;
		op->from = (uint32_t)(sid - 1);
		snprintf(op->desc, sizeof(op->desc), "admin-remove-peer");
		snprintf(op->brief, sizeof(op->brief), "rm peer: store [%" PRIu64 "]", sid);
		snprintf(op->steps, sizeof(op->steps), "0:{remove peer on store %" PRIu64 "}", sid);
		return 200;
	}
	if (strcmp(name, "add-peer") == 0 || strcmp(name, "add-learner") == 0) {
		if ((rc = check_store_state(c, sid, now, msg, len)) != 0)
			return rc;
		if (peer_on_store(r, (uint32_t)(sid - 1)) >= 0) {
			snprintf(msg, len, "region already has peer in store %" PRIu64, sid);
			return 500;
		}
		if (r->op >= 0) {
			snprintf(msg, len, ADD_OP_FAILED);
			return 500;
		}
		int learner = strcmp(name, "add-learner") == 0;
		struct sim_op *op = op_new(c, r, learner ? OPK_ADD_LEARNER : OPK_ADD_PEER, now);
		if (op == NULL)
			return 500;
		op->to = (uint32_t)(sid - 1);
		op->new_peer_id = c->next_id++;
		snprintf(op->desc, sizeof(op->desc), learner ? "admin-add-learner" : "admin-add-peer");
		snprintf(op->brief, sizeof(op->brief), "add peer: store [%" PRIu64 "]", sid);
		if (learner)
			snprintf(op->steps, sizeof(op->steps),
			    "0:{add learner peer %" PRIu64 " on store %" PRIu64 "}", op->new_peer_id, sid);
		else
			snprintf(op->steps, sizeof(op->steps),
			    "0:{add learner peer %" PRIu64 " on store %" PRIu64 "}, 1:{promote learner peer %"
			    PRIu64 " on store %" PRIu64 " to voter}", op->new_peer_id, sid,
			    op->new_peer_id, sid);
		return 200;
	}
	if (strcmp(name, "transfer-peer") == 0) {
		int pi = sim_store_find(c, from) ? peer_on_store(r, (uint32_t)(from - 1)) : -1;
		if (pi < 0) {
			snprintf(msg, len, "region has no peer in store %" PRIu64, from);
			return 500;
		}
		if ((rc = check_store_state(c, sid, now, msg, len)) != 0)
			return rc;
		if (peer_on_store(r, (uint32_t)(sid - 1)) >= 0) {
			snprintf(msg, len, "region already has peer in store %" PRIu64, sid);
			return 500;
		}
		if (r->op >= 0) {
			snprintf(msg, len, ADD_OP_FAILED);
			return 500;
		}
		struct sim_op *op = op_new(c, r, OPK_TRANSFER_PEER, now);
		if (op == NULL)
			return 500;
		op->from = (uint32_t)(from - 1);
		op->to = (uint32_t)(sid - 1);
		op->new_peer_id = c->next_id++;
		snprintf(op->desc, sizeof(op->desc), "admin-move-peer");
		snprintf(op->brief, sizeof(op->brief), "mv peer: store [%" PRIu64 "] to [%" PRIu64 "]",
		    from, sid);
		snprintf(op->steps, sizeof(op->steps),
		    "0:{add learner peer %" PRIu64 " on store %" PRIu64 "}, 1:{promote learner peer %"
		    PRIu64 " on store %" PRIu64 " to voter}, 2:{remove peer on store %" PRIu64 "}",
		    op->new_peer_id, sid, op->new_peer_id, sid, from);
		return 200;
	}
	/* transfer-region */
	json_object *ids, *roles = NULL;
	if (!json_object_object_get_ex(in, "to_store_ids", &ids) || ids == NULL) {
		snprintf(msg, len, "missing store ids to transfer region to");
		return 400;
	}
	if (!json_object_is_type(ids, json_type_array) || json_object_array_length(ids) == 0 ||
	    json_object_array_length(ids) > SIM_MAX_PEERS) {
		snprintf(msg, len, "invalid store ids to transfer region to");
		return 400;
	}
	size_t n = json_object_array_length(ids);
	uint64_t sids[SIM_MAX_PEERS];
	uint8_t rl[SIM_MAX_PEERS] = {0};
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(ids, i);
		json_object *wrap = json_object_new_object();
		json_object_object_add(wrap, "v", json_object_get(e));
		int ok = num_field(wrap, "v", &sids[i]);
		json_object_put(wrap);
		if (!ok) {
			snprintf(msg, len, "invalid store ids to transfer region to");
			return 400;
		}
	}
	if (json_object_object_get_ex(in, "peer_roles", &roles) && roles != NULL) {
		if (!json_object_is_type(roles, json_type_array) ||
		    json_object_array_length(roles) != n) {
			snprintf(msg, len, "store ids and peer roles have different length");
			return 400;
		}
		for (size_t i = 0; i < n; i++) {
			const char *s = json_object_get_string(json_object_array_get_idx(roles, i));
			if (s == NULL || (strcmp(s, "voter") && strcmp(s, "follower") &&
			    strcmp(s, "leader") && strcmp(s, "learner"))) {
				snprintf(msg, len, "invalid peer role");
				return 400;
			}
			rl[i] = strcmp(s, "learner") == 0 ? 1 : strcmp(s, "leader") == 0 ? 2 : 0;
		}
	} else {
		/* Placement rules are on by default in PD. */
		snprintf(msg, len, "transfer region without peer role is not supported when "
		    "placement rules enabled");
		return 500;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = check_store_state(c, sids[i], now, msg, len)) != 0)
			return rc;
	if (r->op >= 0) {
		snprintf(msg, len, ADD_OP_FAILED);
		return 500;
	}
	struct sim_op *op = op_new(c, r, OPK_TRANSFER_REGION, now);
	if (op == NULL)
		return 500;
	op->n_to = (int)n;
	char list[80] = "";
	for (size_t i = 0; i < n; i++) {
		op->to_stores[i] = (uint32_t)(sids[i] - 1);
		op->to_roles[i] = rl[i];
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s%" PRIu64, i ? " " : "", sids[i]);
	}
	snprintf(op->desc, sizeof(op->desc), "admin-move-region");
	snprintf(op->brief, sizeof(op->brief), "mv region: stores to [%s]", list);
	snprintf(op->steps, sizeof(op->steps), "0:{move region to stores [%s]}", list);
	return 200;
}

/* ------------------------------------------------------------ schedulers */

int
sim_evicting(const struct sim_cluster *c)
{
	for (size_t i = 0; i < c->n_stores; i++)
		if (c->stores[i].evicted)
			return 1;
	return 0;
}

int
sim_scheduler_add(struct sim_cluster *c, json_object *in, const char **msg, char *buf,
    size_t len)
{
	json_object *nv, *sv;
	const char *name;

	*msg = buf;
	if (!json_object_object_get_ex(in, "name", &nv) || !json_object_is_type(nv, json_type_string)) {
		snprintf(buf, len, "missing scheduler name");
		return 400;
	}
	name = json_object_get_string(nv);
	if (strcmp(name, "evict-leader-scheduler") == 0) {
		uint64_t sid;
		if (!json_object_object_get_ex(in, "store_id", &sv) || sv == NULL) {
			snprintf(buf, len, "missing store id");
			return 400;
		}
		if (!num_field(in, "store_id", &sid)) {
			snprintf(buf, len, "please input a right store id");
			return 400;
		}
		struct sim_store *s = sim_store_find(c, sid);
		if (s == NULL || s->state == 2) {
			snprintf(buf, len, "[PD:core:ErrStoreNotFound]store %" PRIu64 " not found", sid);
			return 400;
		}
		int existed = sim_evicting(c);
		s->evicted = 1;
		snprintf(buf, len, existed ? "The scheduler has been applied to the store."
					   : "The scheduler is created.");
		return 200;
	}
	for (size_t i = 0; i < sim_n_default_schedulers; i++) {
		if (strcmp(name, sim_default_schedulers[i]) != 0)
			continue;
		if (c->sched_enabled[i]) {
			snprintf(buf, len, "[PD:scheduler:ErrSchedulerExisted]scheduler existed");
			return 400;
		}
		c->sched_enabled[i] = 1;
		snprintf(buf, len, "The scheduler is created.");
		return 200;
	}
	snprintf(buf, len, "unknown scheduler");
	return 400;
}

int
sim_scheduler_remove(struct sim_cluster *c, const char *name, const char **msg, char *buf,
    size_t len)
{
	static const char prefix[] = "evict-leader-scheduler-";

	*msg = buf;
	if (strncmp(name, prefix, sizeof(prefix) - 1) == 0) {
		uint64_t sid;
		struct sim_store *s;
		/* Forwarded to scheduler-config/.../delete/{id}; the body is null. */
		*msg = NULL;
		if (op_parse_u64(name + sizeof(prefix) - 1, &sid) != 0 ||
		    (s = sim_store_find(c, sid)) == NULL || !s->evicted)
			return 404;
		s->evicted = 0;
		return 200;
	}
	if (strcmp(name, "evict-leader-scheduler") == 0 && sim_evicting(c)) {
		for (size_t i = 0; i < c->n_stores; i++)
			c->stores[i].evicted = 0;
		snprintf(buf, len, "The scheduler is removed.");
		return 200;
	}
	for (size_t i = 0; i < sim_n_default_schedulers; i++) {
		if (strcmp(name, sim_default_schedulers[i]) == 0 && c->sched_enabled[i]) {
			c->sched_enabled[i] = 0;
			snprintf(buf, len, "The scheduler is removed.");
			return 200;
		}
	}
	snprintf(buf, len, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found");
	return 404;
}

/* Moves up to SIM_EVICT_BATCH leaders off each evicted store. */
static void
evict_step(struct sim_cluster *c, int64_t now)
{
	for (size_t s = 0; s < c->n_stores; s++) {
		if (!c->stores[s].evicted || c->stores[s].leader_count == 0)
			continue;
		int moved = 0;
		for (size_t i = 0; i < c->n_regions && moved < SIM_EVICT_BATCH; i++) {
			struct sim_region *r = &c->regions[i];
			if (r->leader < 0 || r->peers[r->leader].store != s || r->op >= 0)
				continue;
			int best = -1;
			for (int k = 0; k < r->n_peers; k++) {
				const struct sim_peer *p = &r->peers[k];
				if (k == r->leader || p->role != SIM_VOTER ||
				    sim_peer_pending(c, p, now) ||
				    !store_up_for_leader(c, &c->stores[p->store], now))
					continue;
				if (best < 0 || c->stores[p->store].leader_count <
				    c->stores[r->peers[best].store].leader_count)
					best = k;
			}
			if (best >= 0 && transfer_leader_now(c, r, r->peers[best].store, now)) {
				moved++;
				c->evict_moves++;
			}
		}
	}
}

/* PD's balance-leader, slowed down: at most one move per interval, from the
 * store with the most leaders to the one with the fewest. */
static void
balance_step(struct sim_cluster *c, int64_t now)
{
	long hi = -1, lo = -1;

	for (size_t s = 0; s < c->n_stores; s++) {
		if (!store_up_for_leader(c, &c->stores[s], now))
			continue;
		if (hi < 0 || c->stores[s].leader_count > c->stores[hi].leader_count)
			hi = (long)s;
		if (lo < 0 || c->stores[s].leader_count < c->stores[lo].leader_count)
			lo = (long)s;
	}
	if (hi < 0 || lo < 0 || c->stores[hi].leader_count - c->stores[lo].leader_count <= 1)
		return;
	for (size_t k = 0; k < c->n_regions; k++) {
		struct sim_region *r = &c->regions[(c->balance_cursor + k) % c->n_regions];
		if (r->leader < 0 || r->peers[r->leader].store != (uint32_t)hi || r->op >= 0)
			continue;
		if (transfer_leader_now(c, r, (uint32_t)lo, now)) {
			c->balance_cursor = (size_t)(r - c->regions) + 1;
			c->balance_moves++;
			return;
		}
	}
}

/* ----------------------------------------------------------------- tick */

static void
recount(struct sim_cluster *c, int64_t now)
{
	for (size_t s = 0; s < c->n_stores; s++) {
		struct sim_store *st = &c->stores[s];
		st->leader_count = st->region_count = st->pending_count = st->learner_count = 0;
		st->leader_size = st->region_size = 0;
	}
	for (size_t i = 0; i < c->n_regions; i++) {
		const struct sim_region *r = &c->regions[i];
		for (int k = 0; k < r->n_peers; k++) {
			struct sim_store *st = &c->stores[r->peers[k].store];
			st->region_count++;
			st->region_size += r->size;
			if (r->peers[k].role == SIM_LEARNER)
				st->learner_count++;
			if (r->leader >= 0 && k != r->leader && sim_peer_pending(c, &r->peers[k], now))
				st->pending_count++;
		}
		if (r->leader >= 0) {
			c->stores[r->peers[r->leader].store].leader_count++;
			c->stores[r->peers[r->leader].store].leader_size += r->size;
		}
	}
	/* An Offline store that holds nothing more is buried. */
	for (size_t s = 0; s < c->n_stores; s++) {
		struct sim_store *st = &c->stores[s];
		if (st->state == 1 && st->region_count == 0) {
			st->state = 2;
			st->node_state = 3;
			st->evicted = 0;
		}
	}
}

void
sim_cluster_tick(struct sim_cluster *c, int64_t now)
{
	int budget = c->o->replica_per_tick;
	int8_t down[SIM_MAX_STORES];

	for (size_t s = 0; s < c->n_stores && s < SIM_MAX_STORES; s++) {
		const struct sim_store *st = &c->stores[s];
		down[s] = (int8_t)(st->state == 1 || (st->state == 0 &&
		    strcmp(sim_store_state_name(c, st, now), "Down") == 0));
	}
	for (size_t i = 0; i < c->n_regions; i++) {
		struct sim_region *r = &c->regions[i];
		if (r->leader < 0 ||
		    !sim_store_raft_alive(c, &c->stores[r->peers[r->leader].store], now))
			region_elect(c, r, now);
		if (budget <= 0 || r->leader < 0 || r->op >= 0)
			continue;
		for (int k = 0; k < r->n_peers && budget > 0; k++) {
			if (down[r->peers[k].store] && region_replace_peer(c, r, k, now)) {
				budget--;
				break; /* one conf change per region per tick */
			}
		}
	}
	ops_step(c, now);
	recount(c, now);
	if (sim_evicting(c) && now - c->last_evict_ms >= c->o->evict_ms) {
		c->last_evict_ms = now;
		evict_step(c, now);
	}
	if (c->sched_enabled[SCHED_BALANCE_LEADER] && now - c->last_balance_ms >= c->o->balance_ms) {
		c->last_balance_ms = now;
		balance_step(c, now);
	}
}

int
sim_store_heartbeat(struct sim_cluster *c, struct sim_store *s, int64_t now)
{
	if (s->state == 2)
		return 410; /* PD tells a tombstone store to shut down */
	if (!sim_store_raft_alive(c, s, now)) {
		/* Back after an outage: its peers must catch up from the leaders. */
		uint32_t idx = (uint32_t)(s - c->stores);
		for (size_t i = 0; i < c->n_regions; i++) {
			struct sim_region *r = &c->regions[i];
			int k = peer_on_store(r, idx);
			if (k >= 0)
				r->peers[k].catchup_until_ms = now + c->o->catchup_ms;
		}
	}
	s->last_hb_ms = now;
	s->last_hb_wall_ns = wall_ns();
	return 200;
}

/* ---------------------------------------------------------------- config */

static int
is_duration_key(const char *k)
{
	static const char *const keys[] = {"split-merge-interval", "switch-witness-interval",
	    "patrol-region-interval", "max-store-down-time", "max-store-preparing-time",
	    "hot-regions-write-interval"};
	for (size_t i = 0; i < OP_ARRAY_LEN(keys); i++)
		if (strcmp(k, keys[i]) == 0)
			return 1;
	return 0;
}

int
sim_config_update(struct sim_cluster *c, json_object *in, char *msg, size_t len)
{
	json_object *cur;

	/* Validate everything first so a bad request changes nothing. */
	json_object_object_foreach(in, k, v) {
		if (!json_object_object_get_ex(c->schedule_cfg, k, &cur)) {
			snprintf(msg, len, "config item %s not found", k);
			return 400;
		}
		if (is_duration_key(k)) {
			int64_t ms;
			if (!json_object_is_type(v, json_type_string) ||
			    op_parse_duration(json_object_get_string(v), &ms) != 0) {
				snprintf(msg, len, "time: invalid duration \"%s\"",
				    json_object_get_string(v));
				return 400;
			}
		} else if (json_object_is_type(cur, json_type_int) &&
		    (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)) {
			snprintf(msg, len, "json: cannot unmarshal %s into Go struct field "
			    "ScheduleConfig.schedule.%s of type uint64",
			    go_json_type(v), k);
			return 400;
		}
	}
	json_object_object_foreach(in, k2, v2) {
		if (is_duration_key(k2)) {
			int64_t ms = 0;
			char dur[48];
			op_parse_duration(json_object_get_string(v2), &ms);
			go_duration(ms * 1000000, dur, sizeof(dur));
			json_object_object_add(c->schedule_cfg, k2, json_object_new_string(dur));
			if (strcmp(k2, "max-store-down-time") == 0)
				c->max_store_down_ms = ms;
		} else {
			json_object_object_add(c->schedule_cfg, k2, json_object_get(v2));
		}
	}
	snprintf(msg, len, "The config is updated.");
	return 200;
}

/* ---------------------------------------------------------------- stores */

int
sim_store_remove(struct sim_cluster *c, uint64_t id, int force, int64_t now, char *msg,
    size_t len)
{
	struct sim_store *s = sim_store_find(c, id);
	(void)now;

	if (s == NULL) {
		snprintf(msg, len, "[PD:core:ErrStoreNotFound]store %" PRIu64 " not found", id);
		return 404;
	}
	if (s->state == 2) {
		snprintf(msg, len, "[PD:core:ErrStoreRemoved]store %" PRIu64 " has been removed", id);
		return 410;
	}
	if (s->destroyed && !force) {
		snprintf(msg, len, "[PD:core:ErrStoreDestroyed]store %" PRIu64
		    " has been physically destroyed", id);
		return 400;
	}
	if (s->state == 1 && s->destroyed == force) {
		snprintf(msg, len, "The store is set as Offline.");
		return 200;
	}
	if (!force) {
		/* Counts Preparing/Serving stores, Down ones included, like PD. */
		int up = 0;
		for (size_t i = 0; i < c->n_stores; i++)
			if (&c->stores[i] != s && c->stores[i].state == 0)
				up++;
		if (up < c->o->replicas) {
			snprintf(msg, len, "[PD:core:ErrStoresNotEnough]can not remove store %" PRIu64
			    " since the number of up stores would be %d while need %d", id, up,
			    c->o->replicas);
			return 400;
		}
	}
	s->state = 1;
	s->node_state = 2;
	s->destroyed = force;
	snprintf(msg, len, "The store is set as Offline.");
	return 200;
}

int
sim_store_set_state(struct sim_cluster *c, uint64_t id, const char *state, int64_t now,
    char *msg, size_t len)
{
	struct sim_store *s = sim_store_find(c, id);

	if (state == NULL || (strcasecmp(state, "Up") != 0 && strcasecmp(state, "Offline") != 0)) {
		snprintf(msg, len, "invalid state %s", state ? state : "");
		return 400;
	}
	if (s == NULL) {
		snprintf(msg, len, "[PD:core:ErrStoreNotFound]store %" PRIu64 " not found", id);
		return 404;
	}
	if (strcasecmp(state, "Offline") == 0) {
		int rc = sim_store_remove(c, id, 0, now, msg, len);
		if (rc == 200)
			snprintf(msg, len, "The store's state is updated.");
		return rc;
	}
	if (s->state == 2) {
		snprintf(msg, len, "[PD:core:ErrStoreRemoved]store %" PRIu64 " has been removed", id);
		return 410;
	}
	if (s->destroyed) {
		snprintf(msg, len, "[PD:core:ErrStoreDestroyed]store %" PRIu64
		    " has been physically destroyed", id);
		return 400;
	}
	s->state = 0;
	s->node_state = 1;
	snprintf(msg, len, "The store's state is updated.");
	return 200;
}
