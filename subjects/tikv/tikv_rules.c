/* tikv_rules: the TiKV offline diagnosis playbook for node loss and rejoin.
 * Deterministic: the same ticket and observation give the same diagnosis.
 * Figures come from the fresh observation when it has them, else from the
 * ticket's evidence. Only leader placement is ever fixed automatically;
 * raft elections, re-replication and PD itself are left to their owners. */
#include "subjects/tikv/tikv_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"

#define TIKV_NO_ACTION_PD \
	"no automatic action: PD is the control plane; an operator must check the PD " \
	"members (process, etcd quorum, network). Nothing is acted on or resolved meanwhile"

static void
tikv_diag_stores(json_object *d, json_object *obs)
{
	json_object *a = op_json_arr(obs, "stores");

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		op_diag_add_evidence(d, "store %" PRIu64 " (%s): PD %s, probe %s, %lld leaders, "
		    "%lld regions%s", op_json_u64(st, "id", 0), op_json_str(st, "address", "?"),
		    op_json_str(st, "state_name", "?"),
		    op_json_bool(st, "probe_ok", 0) ? "ok" : op_json_str(st, "probe_error", "failed"),
		    (long long)op_json_int(st, "leaders", 0), (long long)op_json_int(st, "regions", 0),
		    op_json_bool(st, "evicted", 0) ? ", under evict-leader" : "");
	}
}

static void
tikv_diag_fmt_ms(int64_t ms, char *out, size_t len)
{
	if (ms < 0)
		snprintf(out, len, "unknown");
	else if (ms >= 3600000 && ms % 3600000 == 0)
		snprintf(out, len, "%lldh", (long long)(ms / 3600000));
	else if (ms >= 60000 && ms % 60000 == 0)
		snprintf(out, len, "%lldm", (long long)(ms / 60000));
	else
		snprintf(out, len, "%.1fs", (double)ms / 1000);
}

static json_object *
tikv_diag_store_down(struct tikv_priv *p, json_object *ticket, json_object *obs,
    const char *entity)
{
	uint64_t id = strtoull(entity, NULL, 10);
	json_object *st = obs ? tikv_obs_store(obs, id) : NULL;
	json_object *src = st ? st : op_json_obj(ticket, "evidence"), *d;
	json_object *r = op_json_obj(obs, "regions");
	const char *state = op_json_str(src, "state_name", "?");
	int probe_ok = op_json_bool(src, "probe_ok", 0), back = st && op_json_bool(st, "live", 0);
	int64_t hb = op_json_int(src, "heartbeat_age_ms", -1);
	int64_t waiting = op_json_int(r, "leaderless", 0) + op_json_int(r, "leader_on_dead_store", 0);
	int64_t msdt = op_json_int(op_json_obj(obs, "pd"), "max_store_down_time_ms", -1);
	struct tikv_balance b;
	char primary[768], msdts[32];

	tikv_balance_of(p, obs, &b);
	tikv_diag_fmt_ms(msdt, msdts, sizeof(msdts));
	if (back)
		snprintf(primary, sizeof(primary), "store %s (%s) was down and answers again (PD: %s); "
		    "it holds %lld leaders against a mean of %.1f on the serving stores: leaders do "
		    "not return by themselves", entity, op_json_str(src, "address", "?"), state,
		    (long long)op_json_int(st, "leaders", 0), b.mean);
	else
		snprintf(primary, sizeof(primary), "store %s (%s) is down: its status probe %s and PD "
		    "reports it %s (last heartbeat %.1f s ago). Raft re-elects the leaders of its "
		    "regions among the surviving voters (%lld region(s) still waiting); the leaders "
		    "land unevenly, so the surviving %zu store(s) must be rebalanced to serve evenly. "
		    "PD re-replicates its peers only after max-store-down-time (%s)", entity,
		    op_json_str(src, "address", "?"), probe_ok ? "answers" : "fails", state,
		    hb >= 0 ? (double)hb / 1000 : -1.0, (long long)waiting, b.nserving, msdts);
	d = op_diag_new(primary, probe_ok && strcmp(state, "Up") == 0 ? 0.5 : 0.9,
	    back ? "warning" : "critical");
	op_diag_add_timeline(d, "store_down opened for store %s", entity);
	op_diag_add_component(d, "tikv-store");
	op_diag_add_evidence(d, "GET http://%s/status: %s", op_json_str(src, "status_address", "?"),
	    probe_ok ? "answers" : op_json_str(src, "probe_error", "no answer"));
	op_diag_add_evidence(d, "PD state_name %s, heartbeat age %lld ms", state, (long long)hb);
	op_diag_add_evidence(d, "regions without a live leader: %lld; leader spread %lld over %zu "
	    "serving store(s), allowed %.1f", (long long)waiting, (long long)b.spread, b.nserving,
	    b.allowed);
	tikv_diag_stores(d, obs);
	op_diag_add_reading(d, "regions_awaiting_leader", (double)waiting, "regions");
	op_diag_add_reading(d, "leader_spread", (double)b.spread, "leaders");
	op_diag_add_alternative(d, "only the operator's path to the store is broken",
	    strcmp(state, "Up") == 0 ? "PD still reports the store Up" : "none",
	    strcmp(state, "Up") == 0 ? "PD only calls a store Disconnected after 20 s" :
	    "PD also lost the store's heartbeats", strcmp(state, "Up") == 0 ? "possible; the "
	    "probe is ahead of PD by design" : "ruled out");
	op_diag_add_alternative(d, "a PD outage", "none", "PD answers /stores and /regions",
	    "ruled out");
	op_diag_add_risk(d, "leaders moved to the survivors will move again when the store "
	    "returns (operatord rebalances onto it on leader_imbalance)");
	op_diag_add_risk(d, "the store's peers stay pending until it returns or PD replaces them "
	    "after max-store-down-time; remove_store would start that now but needs a human");
	if (!back && obs != NULL && waiting == 0 && b.nserving > 0 && (double)b.spread <= b.allowed) {
		/* The mitigation already holds (a ticket reopened because the store
		 * is still down): moving leaders again would do nothing. What is
		 * left, restarting or removing the store, is a human's call. */
		op_diag_add_evidence(d, "the surviving stores already serve every region with leaders "
		    "within the tolerance: nothing automatic is left; restart the store, or "
		    "remove_store to re-replicate its peers now");
		return d;
	}
	op_diag_add_action(d, "rebalance_leaders", json_object_new_object(),
	    "the dead store's leaders were re-elected unevenly onto the survivors; PD's own "
	    "balance-leader is slow (a few moves at a time)", "immediate",
	    "every region has a leader, leader counts across the serving stores are within the "
	    "tolerance and no live store has pending peers");
	return d;
}

static json_object *
tikv_diag_imbalance(struct tikv_priv *p, json_object *ticket, json_object *obs)
{
	json_object *ev = op_json_obj(ticket, "evidence"), *d, *prm;
	struct tikv_balance b;
	char primary[640];

	tikv_balance_of(p, obs, &b);
	if (b.nserving == 0) {
		/* no fresh figures: the ticket's evidence */
		b.min = op_json_int(ev, "min", 0);
		b.max = op_json_int(ev, "max", 0);
		b.min_store = op_json_u64(ev, "min_store", 0);
		b.max_store = op_json_u64(ev, "max_store", 0);
		b.mean = op_json_double(ev, "mean", 0);
		b.allowed = op_json_double(ev, "allowed_spread", 0);
		b.spread = b.max - b.min;
	}
	json_object *rmin = obs ? tikv_obs_store(obs, b.min_store) : NULL;
	int rejoined = rmin && b.min == 0 && b.mean > 0;
	snprintf(primary, sizeof(primary), "leader imbalance: store %" PRIu64 " holds %lld leaders, "
	    "store %" PRIu64 " holds %lld (mean %.1f, spread %lld > allowed %.1f)%s", b.min_store,
	    (long long)b.min, b.max_store, (long long)b.max, b.mean, (long long)b.spread, b.allowed,
	    rejoined ? ": the emptiest store has no leader at all, typical of a store that "
	    "rejoined after being down (leaders do not return by themselves)" : "");
	d = op_diag_new(primary, 0.85, "warning");
	op_diag_add_timeline(d, "leader_imbalance opened");
	op_diag_add_component(d, "pd-scheduling");
	tikv_diag_stores(d, obs);
	op_diag_add_reading(d, "leader_spread", (double)b.spread, "leaders");
	op_diag_add_reading(d, "allowed_spread", b.allowed, "leaders");
	op_diag_add_reading(d, "mean_leaders", b.mean, "leaders");
	op_diag_add_alternative(d, "an evict-leader scheduler keeps the store empty", "none",
	    "evicted stores are excluded from the balance", "ruled out");
	op_diag_add_alternative(d, "PD's balance-leader will fix it", "it runs",
	    "it moves a few leaders per interval: minutes for hundreds", "too slow");
	op_diag_add_risk(d, "transfer-leader briefly pauses writes of each moved region (lease "
	    "handover); at most max_operators are created per action");
	prm = json_object_new_object();
	json_object_object_add(prm, "to_store_id", json_object_new_uint64(b.min_store));
	op_diag_add_action(d, "rebalance_leaders", prm,
	    "move leaders from the stores above the mean to the one with the fewest", "soon",
	    "leader counts across the serving stores within the tolerance");
	return d;
}

static json_object *
tikv_diag_leaderless(json_object *ticket, json_object *obs)
{
	json_object *r = obs ? op_json_obj(obs, "regions") : op_json_obj(ticket, "evidence");
	int64_t ll = op_json_int(r, "leaderless", 0), dead = op_json_int(r, "leader_on_dead_store", 0);
	json_object *d, *samp = op_json_arr(op_json_obj(r, "samples"), "leaderless");
	char primary[600];

	snprintf(primary, sizeof(primary), "%lld region(s) have had no live leader for longer than "
	    "the hold time (%lld without a leader, %lld still led from a down store): raft has "
	    "not elected, most likely because a majority of their voters is unreachable. No "
	    "automatic action: transfer-leader needs a leader, and only raft may elect one; "
	    "escalated to an operator", (long long)(ll + dead), (long long)ll, (long long)dead);
	d = op_diag_new(primary, 0.7, "critical");
	op_diag_add_timeline(d, "region_leaderless opened");
	op_diag_add_component(d, "raft");
	op_diag_add_reading(d, "regions_without_leader", (double)(ll + dead), "regions");
	if (samp != NULL)
		op_diag_add_evidence(d, "sample region ids: %s",
		    json_object_to_json_string_ext(samp, JSON_C_TO_STRING_PLAIN));
	tikv_diag_stores(d, obs);
	op_diag_add_alternative(d, "a normal election after a store loss", "a store is down",
	    "elections finish within the raft election timeout (10-20 s)",
	    "possible if it clears soon; the ticket clears by itself then");
	op_diag_add_risk(d, "the regions' keys are unavailable for reads and writes until a leader "
	    "is elected");
	return d;
}

static json_object *
tikv_diag_under_repl(json_object *ticket, json_object *obs)
{
	json_object *r = obs ? op_json_obj(obs, "regions") : op_json_obj(ticket, "evidence");
	json_object *a = op_json_arr(obs, "stores"), *d;
	int64_t msdt = op_json_int(op_json_obj(obs, "pd"), "max_store_down_time_ms", -1);
	int64_t ur = op_json_int(r, "under_replicated", 0), downr = op_json_int(r, "down_regions", 0);
	char primary[900], msdts[32], dead[200] = "";
	size_t ndown = 0;

	tikv_diag_fmt_ms(msdt, msdts, sizeof(msdts));
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (op_json_bool(st, "live", 0))
			continue;
		size_t l = strlen(dead);
		snprintf(dead + l, sizeof(dead) - l, "%s%" PRIu64 " (%s)", l ? ", " : "",
		    op_json_u64(st, "id", 0), op_json_str(st, "state_name", "?"));
		ndown += strcmp(op_json_str(st, "state_name", ""), "Down") == 0;
	}
	if (ndown > 0)
		snprintf(primary, sizeof(primary), "%lld region(s) under-replicated (%lld with down "
		    "peers) because store(s) %s are down past max-store-down-time (%s): PD is now "
		    "replacing their peers on the healthy stores, at its replica-schedule-limit pace. "
		    "No automatic action: re-replication is under way", (long long)ur, (long long)downr,
		    dead, msdts);
	else if (dead[0])
		snprintf(primary, sizeof(primary), "%lld region(s) under-replicated: their peers on "
		    "store(s) %s are pending (the store is not Down yet). PD re-replicates only once a "
		    "store is Down for max-store-down-time (%s); until then the regions run on the "
		    "surviving majority. No automatic action: if the store will not return, an operator "
		    "can remove_store (re-replicate now) or set_max_store_down_time", (long long)ur,
		    dead, msdts);
	else
		snprintf(primary, sizeof(primary), "%lld region(s) have pending peers while every "
		    "store is up: peers catching up after a restart or a new replica (raft log or "
		    "snapshot). No automatic action: catch-up finishes by itself", (long long)ur);
	d = op_diag_new(primary, 0.75, "warning");
	op_diag_add_timeline(d, "region_under_replicated opened");
	op_diag_add_component(d, "raft-replication");
	op_diag_add_reading(d, "under_replicated_regions", (double)ur, "regions");
	op_diag_add_reading(d, "max_store_down_time", (double)msdt / 1000, "s");
	tikv_diag_stores(d, obs);
	op_diag_add_risk(d, "while a region runs on 2 of 3 replicas, one more store loss makes it "
	    "unavailable");
	return d;
}

static json_object *
tikv_diag_pd(json_object *ticket, json_object *obs)
{
	json_object *pd = obs ? op_json_obj(obs, "pd") : op_json_obj(ticket, "evidence"), *d;
	char primary[700];

	snprintf(primary, sizeof(primary), "PD unreachable at %s: %s. " TIKV_NO_ACTION_PD,
	    op_json_str(pd, "url", "?"), op_json_str(pd, "error", "no answer"));
	d = op_diag_new(primary, 0.9, "critical");
	op_diag_add_timeline(d, "pd_unreachable opened");
	op_diag_add_component(d, "pd");
	op_diag_add_evidence(d, "GET /stores and /regions: %s", op_json_str(pd, "error", "?"));
	tikv_diag_stores(d, obs);
	op_diag_add_alternative(d, "PD is slow (overloaded, long GC)", "a timeout",
	    "an answer of garbage or a refused connection", "possible when the error is a timeout");
	op_diag_add_risk(d, TIKV_NO_ACTION_PD);
	return d;
}

static json_object *
tikv_diag_prom(json_object *ticket, const char *invariant, const char *entity)
{
	char primary[400];
	json_object *d;

	snprintf(primary, sizeof(primary), "%s on store %s: %s. No automatic action: capacity and "
	    "load are an operator's call", invariant, entity,
	    op_json_str(ticket, "message", "reported by Prometheus"));
	d = op_diag_new(primary, 0.6, "warning");
	op_diag_add_timeline(d, "%s opened for store %s", invariant, entity);
	op_diag_add_component(d, "tikv-store");
	op_diag_add_risk(d, "no automatic action for this invariant");
	return d;
}

json_object *
tikv_diagnose(struct op_subject *s, json_object *ticket, json_object *obs)
{
	struct tikv_priv *p = s->priv;
	const char *inv = op_json_str(ticket, "invariant", "");
	const char *entity = op_json_str(ticket, "entity", "");

	if (obs != NULL && !tikv_obs_pd_ok(obs) && strcmp(inv, TIKV_INV_PD) != 0) {
		/* never plan on data PD did not give */
		json_object *d = op_diag_new("PD is unreachable: the cluster's state cannot be read, "
		    "so no action can be planned safely; escalated", 0.6, "critical");
		op_diag_add_timeline(d, "%s opened for %s", inv, entity);
		op_diag_add_evidence(d, "PD: %s", op_json_str(op_json_obj(obs, "pd"), "error", "?"));
		op_diag_add_risk(d, TIKV_NO_ACTION_PD);
		return d;
	}
	if (strcmp(inv, TIKV_INV_STORE_DOWN) == 0)
		return tikv_diag_store_down(p, ticket, obs, entity);
	if (strcmp(inv, TIKV_INV_IMBALANCE) == 0)
		return tikv_diag_imbalance(p, ticket, obs);
	if (strcmp(inv, TIKV_INV_LEADERLESS) == 0)
		return tikv_diag_leaderless(ticket, obs);
	if (strcmp(inv, TIKV_INV_UNDER_REPL) == 0)
		return tikv_diag_under_repl(ticket, obs);
	if (strcmp(inv, TIKV_INV_PD) == 0)
		return tikv_diag_pd(ticket, obs);
	if (strcmp(inv, TIKV_INV_DISK) == 0 || strcmp(inv, TIKV_INV_LATENCY) == 0)
		return tikv_diag_prom(ticket, inv, entity);
	char primary[256];
	snprintf(primary, sizeof(primary), "no playbook entry for invariant \"%s\"", inv);
	json_object *d = op_diag_new(primary, 0.1, "warning");
	op_diag_add_risk(d, "no automatic action");
	return d;
}
