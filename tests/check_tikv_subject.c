/* check_tikv_subject: the TiKV subject on synthetic observations. No pdsim:
 * check(), diagnose(), outcome(), the store-level preconditions and the
 * action catalogue are pure functions of their JSON input. The only I/O is
 * against a closed local port (faults must refuse a PD that is not pdsim). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "subjects/subject.h"
#include "subjects/tikv/pdclient.h"

#define CFG_OK \
	"[subject.tikv]\n" \
	"pd = http://127.0.0.1:1/\n" \
	"timeout = 300ms\n"
#define CFG_PROM CFG_OK "prometheus = http://127.0.0.1:1\n"

static struct op_config *cfg;
static struct op_subjects subs;
static struct op_subject *S;
static struct op_readings rd;

static void
setup_with(const char *text)
{
	char err[256];

	cfg = op_config_parse(text, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_msg(op_subjects_create(&subs, cfg, err, sizeof(err)) == 0, "%s", err);
	S = op_subjects_find(&subs, "tikv");
	ck_assert_ptr_nonnull(S);
	memset(&rd, 0, sizeof(rd));
}

static void
setup(void)
{
	setup_with(CFG_OK);
}

static void
teardown(void)
{
	op_readings_clear(&rd);
	op_subjects_destroy(&subs);
	op_config_free(cfg);
}

/* ---- synthetic observation builders ---- */

static json_object *
obs_new(int pd_ok)
{
	json_object *o = json_object_new_object(), *pd = json_object_new_object();
	json_object *r = json_object_new_object();

	op_json_set_str(pd, "url", "http://127.0.0.1:1");
	json_object_object_add(pd, "ok", json_object_new_boolean(pd_ok));
	if (!pd_ok)
		op_json_set_str(pd, "error", "GET /pd/api/v1/stores: Couldn't connect to server");
	op_json_set_int(pd, "latency_ms", 3);
	op_json_set_int(pd, "max_store_down_time_ms", 1800000);
	json_object_object_add(o, "pd", pd);
	json_object_object_add(o, "complete", json_object_new_boolean(pd_ok));
	json_object_object_add(o, "stores", json_object_new_array());
	op_json_set_int(r, "count", 300);
	op_json_set_int(r, "max_peers", 3);
	json_object_object_add(r, "samples", json_object_new_object());
	json_object_object_add(o, "regions", r);
	return o;
}

static void
obs_regions(json_object *o, int64_t leaderless, int64_t on_dead, int64_t under,
    int64_t pending_live)
{
	json_object *r = op_json_obj(o, "regions");

	op_json_set_int(r, "leaderless", leaderless);
	op_json_set_int(r, "leader_on_dead_store", on_dead);
	op_json_set_int(r, "under_replicated", under);
	op_json_set_int(r, "pending_regions", under);
	op_json_set_int(r, "down_regions", 0);
	op_json_set_int(r, "pending_peers_on_live_stores", pending_live);
}

static json_object *
obs_store(json_object *o, uint64_t id, const char *state, int probe_ok, int evicted,
    int64_t leaders)
{
	json_object *s = json_object_new_object();
	char addr[64];
	int live = strcmp(state, "Up") == 0 && probe_ok;

	json_object_object_add(s, "id", json_object_new_uint64(id));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", (int)(20160 + 2 * id));
	op_json_set_str(s, "address", addr);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", (int)(20161 + 2 * id));
	op_json_set_str(s, "status_address", addr);
	op_json_set_str(s, "state_name", state);
	json_object_object_add(s, "probed", json_object_new_boolean(1));
	json_object_object_add(s, "probe_ok", json_object_new_boolean(probe_ok));
	if (!probe_ok)
		op_json_set_str(s, "probe_error", "Couldn't connect to server");
	json_object_object_add(s, "live", json_object_new_boolean(live));
	json_object_object_add(s, "evicted", json_object_new_boolean(evicted));
	json_object_object_add(s, "serving", json_object_new_boolean(live && !evicted));
	op_json_set_int(s, "leaders", leaders);
	op_json_set_int(s, "regions", 300);
	op_json_set_int(s, "heartbeat_age_ms", live ? 100 : 5000);
	json_object_array_add(op_json_arr(o, "stores"), s);
	return s;
}

/* Three healthy stores, 100 leaders each, every region led. */
static json_object *
obs_healthy(void)
{
	json_object *o = obs_new(1);

	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 100);
	obs_store(o, 2, "Up", 1, 0, 100);
	obs_store(o, 3, "Up", 1, 0, 100);
	return o;
}

static const struct op_reading *
reading(json_object *obs, const char *inv, const char *entity)
{
	op_readings_clear(&rd);
	S->ops->check(S, obs, &rd);
	return op_readings_find(&rd, inv, entity);
}

static enum op_rd_state
state_of(json_object *obs, const char *inv, const char *entity)
{
	const struct op_reading *r = reading(obs, inv, entity);

	ck_assert_msg(r != NULL, "no reading %s/%s", inv, entity);
	return r->state;
}

/* ---- configuration ---- */

static int
cfg_fails(const char *text, const char *want)
{
	char err[256] = "";
	struct op_config *c = op_config_parse(text, err, sizeof(err));
	struct op_subjects all;
	int rc;

	ck_assert_msg(c != NULL, "%s", err);
	rc = op_subjects_create(&all, c, err, sizeof(err));
	if (rc == 0)
		op_subjects_destroy(&all);
	op_config_free(c);
	ck_assert_msg(rc != 0, "config accepted: %s", text);
	ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
	return 1;
}

START_TEST(test_config)
{
	ck_assert_ptr_nonnull(op_subject_kind("tikv"));
	cfg_fails("[subject.tikv]\ntimeout = 1s\n", "[subject.tikv] pd: required");
	cfg_fails("[subject.tikv]\npd = 127.0.0.1:2379\n", "[subject.tikv] pd:");
	cfg_fails("[subject.tikv]\npd = http://\n", "pd:");
	cfg_fails("[subject.tikv]\npd = http://a:1\nprometheus = ftp://x\n",
	    "[subject.tikv] prometheus:");
	cfg_fails("[subject.tikv]\npd = http://a:1\ntimeout = forever\n", "[subject.tikv] timeout");
	cfg_fails("[subject.tikv]\npd = http://a:1\ntimeout = 5ms\n", "[subject.tikv] timeout");
	cfg_fails("[subject.tikv]\npd = http://a:1\nleader_tolerance = x\n",
	    "[subject.tikv] leader_tolerance:");
	cfg_fails("[subject.tikv]\npd = http://a:1\nleader_tolerance = -0.1\n",
	    "[subject.tikv] leader_tolerance:");
	cfg_fails("[subject.tikv]\npd = http://a:1\nleader_tolerance_min = -1\n",
	    "[subject.tikv] leader_tolerance_min");
	cfg_fails("[subject.tikv]\npd = http://a:1\nmax_operators = 0\n",
	    "[subject.tikv] max_operators");
	cfg_fails("[subject.tikv]\npd = http://a:1\nprobe_timeout = 2h\n",
	    "[subject.tikv] probe_timeout");
}
END_TEST

START_TEST(test_catalogue)
{
	const char *acts[] = {"transfer_leader", "transfer_peer", "add_peer", "remove_peer",
	    "evict_leader", "remove_evict_leader", "remove_store", "set_max_store_down_time",
	    "rebalance_leaders"};
	const char *invs[] = {"store_down", "leader_imbalance", "region_leaderless",
	    "region_under_replicated", "pd_unreachable"};
	char err[256];

	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		ck_assert_msg(op_subject_action(S, acts[i]) != NULL, "missing %s", acts[i]);
	for (size_t i = 0; i < sizeof(invs) / sizeof(invs[0]); i++)
		ck_assert_msg(op_subject_invariant(S, invs[i]) != NULL, "missing %s", invs[i]);
	ck_assert_int_eq(op_subject_invariant(S, "store_down")->hold_for_ms, 0);
	ck_assert_int_eq(op_subject_invariant(S, "store_down")->clear_for_ms, 2000);
	ck_assert_str_eq(op_subject_invariant(S, "store_down")->severity, "critical");
	ck_assert_int_eq(op_subject_invariant(S, "leader_imbalance")->hold_for_ms, 2000);
	ck_assert_int_eq(op_subject_invariant(S, "region_leaderless")->hold_for_ms, 3000);
	ck_assert_int_eq(op_subject_invariant(S, "region_under_replicated")->hold_for_ms, 5000);
	ck_assert_ptr_nonnull(op_subject_fault(S, "node_kill"));
	ck_assert_ptr_nonnull(op_subject_fault(S, "store_stall"));

	/* typed parameters: ids are uint64 and may arrive as strings */
	const struct op_action_def *tl = op_subject_action(S, "transfer_leader");
	json_object *p = json_tokener_parse("{\"region_id\":\"18446744073709551615\",\"to_store_id\":4}");
	ck_assert_int_eq(op_action_validate(tl, p, err, sizeof(err)), 0);
	ck_assert(op_json_u64(p, "region_id", 0) == UINT64_MAX);
	json_object_put(p);
	p = json_tokener_parse("{\"region_id\":-1,\"to_store_id\":4}");
	ck_assert_int_ne(op_action_validate(tl, p, err, sizeof(err)), 0);
	json_object_put(p);
	p = json_tokener_parse("{\"region_id\":5}");
	ck_assert_int_ne(op_action_validate(tl, p, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "to_store_id"));
	json_object_put(p);
	p = json_tokener_parse("{\"region_id\":5,\"to_store_id\":4,\"store_id\":4}");
	ck_assert_int_ne(op_action_validate(tl, p, err, sizeof(err)), 0);
	json_object_put(p);
	p = json_tokener_parse("{}");
	ck_assert_int_eq(op_action_validate(op_subject_action(S, "rebalance_leaders"), p, err,
	    sizeof(err)), 0);
	json_object_put(p);

	/* the PD body the action sends: PD reads to_store_id, never store_id */
	char body[128];
	ck_assert_int_gt(pd_build_transfer_leader_body(body, sizeof(body), 7, 4), 0);
	ck_assert_str_eq(body, "{\"name\":\"transfer-leader\",\"region_id\":7,\"to_store_id\":4}");
}
END_TEST

/* ---- invariants ---- */

START_TEST(test_store_down)
{
	json_object *o = obs_healthy();
	const struct op_reading *r;

	ck_assert_int_eq(state_of(o, "store_down", "1"), OP_RD_HEALTHY);
	json_object_put(o);

	/* killed: the probe fails while PD still says Up (PD needs 20 s) */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 0, 0, 100);
	obs_store(o, 2, "Up", 1, 0, 100);
	r = reading(o, "store_down", "1");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_ptr_nonnull(strstr(r->message, "status probe"));
	ck_assert_str_eq(op_json_str(r->evidence, "probe_error", ""), "Couldn't connect to server");
	ck_assert_int_eq(state_of(o, "store_down", "2"), OP_RD_HEALTHY);
	json_object_put(o);

	/* PD's word alone also counts */
	const char *bad[] = {"Disconnected", "Down", "Offline"};
	for (size_t i = 0; i < 3; i++) {
		o = obs_new(1);
		obs_store(o, 4, bad[i], 1, 0, 0);
		r = reading(o, "store_down", "4");
		ck_assert_int_eq(r->state, OP_RD_VIOLATED);
		ck_assert_ptr_nonnull(strstr(r->message, bad[i]));
		json_object_put(o);
	}

	/* PD down: nothing is judged */
	o = obs_new(0);
	obs_store(o, 1, "Up", 0, 0, 100);
	ck_assert_int_eq(state_of(o, "store_down", "1"), OP_RD_BAND);
	json_object_put(o);
}
END_TEST

START_TEST(test_leader_imbalance)
{
	json_object *o = obs_healthy();
	const struct op_reading *r;

	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_HEALTHY);
	json_object_put(o);

	/* a store rejoined with no leaders */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 150);
	obs_store(o, 2, "Up", 1, 0, 150);
	obs_store(o, 3, "Up", 1, 0, 0);
	r = reading(o, "leader_imbalance", "cluster");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert(r->value == 150);
	ck_assert(r->threshold == 20); /* 0.2 x mean 100 */
	ck_assert(op_json_u64(r->evidence, "min_store", 0) == 3);
	ck_assert_int_eq(op_json_int(op_json_obj(r->evidence, "leaders_per_store"), "3", -1), 0);
	json_object_put(o);

	/* within tolerance */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 110);
	obs_store(o, 2, "Up", 1, 0, 90);
	obs_store(o, 3, "Up", 1, 0, 100);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_HEALTHY);
	json_object_put(o);

	/* the floor: tiny clusters are not imbalanced by one or two leaders */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 3);
	obs_store(o, 2, "Up", 1, 0, 1);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_HEALTHY);
	json_object_put(o);
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 4);
	obs_store(o, 2, "Up", 1, 0, 1);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_VIOLATED);
	json_object_put(o);

	/* dead and evicted stores do not count */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 150);
	obs_store(o, 2, "Up", 1, 0, 150);
	obs_store(o, 3, "Disconnected", 0, 0, 0);
	obs_store(o, 4, "Up", 1, 1, 0);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_HEALTHY);
	json_object_put(o);

	/* elections in flight: cannot judge */
	o = obs_new(1);
	obs_regions(o, 0, 40, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 150);
	obs_store(o, 2, "Up", 1, 0, 0);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_BAND);
	json_object_put(o);

	/* one serving store: nothing to balance */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 300);
	obs_store(o, 2, "Up", 0, 0, 0);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_HEALTHY);
	json_object_put(o);

	o = obs_new(0);
	obs_store(o, 1, "Up", 1, 0, 300);
	ck_assert_int_eq(state_of(o, "leader_imbalance", "cluster"), OP_RD_BAND);
	json_object_put(o);
}
END_TEST

START_TEST(test_regions)
{
	json_object *o = obs_healthy();

	ck_assert_int_eq(state_of(o, "region_leaderless", "cluster"), OP_RD_HEALTHY);
	ck_assert_int_eq(state_of(o, "region_under_replicated", "cluster"), OP_RD_HEALTHY);
	json_object_put(o);

	o = obs_healthy();
	obs_regions(o, 2, 0, 0, 0);
	ck_assert_int_eq(state_of(o, "region_leaderless", "cluster"), OP_RD_VIOLATED);
	ck_assert(reading(o, "region_leaderless", "cluster")->value == 2);
	json_object_put(o);

	/* a leader still on a dead store is no leader */
	o = obs_healthy();
	obs_regions(o, 0, 100, 0, 0);
	ck_assert_int_eq(state_of(o, "region_leaderless", "cluster"), OP_RD_VIOLATED);
	json_object_put(o);

	o = obs_healthy();
	obs_regions(o, 0, 0, 200, 0);
	ck_assert_int_eq(state_of(o, "region_under_replicated", "cluster"), OP_RD_VIOLATED);
	ck_assert(reading(o, "region_under_replicated", "cluster")->value == 200);
	json_object_put(o);

	o = obs_new(0);
	obs_regions(o, 5, 5, 5, 5);
	ck_assert_int_eq(state_of(o, "region_leaderless", "cluster"), OP_RD_BAND);
	ck_assert_int_eq(state_of(o, "region_under_replicated", "cluster"), OP_RD_BAND);
	json_object_put(o);
}
END_TEST

START_TEST(test_pd_unreachable)
{
	json_object *o = obs_healthy();
	const struct op_reading *r;

	ck_assert_int_eq(state_of(o, "pd_unreachable", "pd"), OP_RD_HEALTHY);
	json_object_put(o);
	o = obs_new(0);
	r = reading(o, "pd_unreachable", "pd");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_ptr_nonnull(strstr(r->message, "Couldn't connect"));
	/* every other reading cannot tell */
	for (size_t i = 0; i < rd.n; i++)
		if (strcmp(rd.v[i].invariant, "pd_unreachable") != 0)
			ck_assert_msg(rd.v[i].state == OP_RD_BAND, "%s/%s not BAND", rd.v[i].invariant,
			    rd.v[i].entity);
	json_object_put(o);
}
END_TEST

START_TEST(test_prometheus)
{
	json_object *o = obs_healthy();
	json_object *s1 = json_object_array_get_idx(op_json_arr(o, "stores"), 0);

	/* not configured: no such readings at all */
	ck_assert_ptr_null(reading(o, "store_disk_low", "1"));
	teardown();
	setup_with(CFG_PROM);
	json_object_object_add(s1, "disk_available_ratio", json_object_new_double(0.05));
	json_object_object_add(s1, "grpc_p99_ms", json_object_new_double(900));
	ck_assert_int_eq(state_of(o, "store_disk_low", "1"), OP_RD_VIOLATED);
	ck_assert_int_eq(state_of(o, "store_high_latency", "1"), OP_RD_VIOLATED);
	ck_assert_int_eq(state_of(o, "store_disk_low", "2"), OP_RD_BAND); /* no figures */
	json_object_object_add(s1, "disk_available_ratio", json_object_new_double(0.6));
	json_object_object_add(s1, "grpc_p99_ms", json_object_new_double(20));
	ck_assert_int_eq(state_of(o, "store_disk_low", "1"), OP_RD_HEALTHY);
	ck_assert_int_eq(state_of(o, "store_high_latency", "1"), OP_RD_HEALTHY);
	json_object_put(o);
}
END_TEST

/* ---- diagnosis ---- */

static json_object *
ticket(const char *inv, const char *entity)
{
	json_object *t = json_object_new_object();

	op_json_set_str(t, "subject", "tikv");
	op_json_set_str(t, "invariant", inv);
	op_json_set_str(t, "entity", entity);
	json_object_object_add(t, "evidence", json_object_new_object());
	return t;
}

static json_object *
first_action(json_object *d)
{
	json_object *a = op_json_arr(d, "recommended_actions");

	return a && json_object_array_length(a) > 0 ? json_object_array_get_idx(a, 0) : NULL;
}

static size_t
n_actions(json_object *d)
{
	json_object *a = op_json_arr(d, "recommended_actions");

	return a ? json_object_array_length(a) : 0;
}

START_TEST(test_diag_store_down)
{
	json_object *o = obs_new(1), *t = ticket("store_down", "1"), *d, *a;

	obs_regions(o, 0, 0, 200, 0);
	obs_store(o, 1, "Up", 0, 0, 0);
	obs_store(o, 2, "Up", 1, 0, 200);
	obs_store(o, 3, "Up", 1, 0, 100);
	d = S->ops->diagnose(S, t, o);
	const char *pr = op_json_str(d, "primary_diagnosis", "");
	ck_assert_ptr_nonnull(strstr(pr, "store 1"));
	ck_assert_ptr_nonnull(strstr(pr, "down"));
	ck_assert_str_eq(op_json_str(d, "severity", ""), "critical");
	a = first_action(d);
	ck_assert_ptr_nonnull(a);
	ck_assert_str_eq(op_json_str(a, "action", ""), "rebalance_leaders");
	/* evidence: the probe error and the per-store counts */
	const char *ev = json_object_to_json_string(op_json_arr(d, "supporting_evidence"));
	ck_assert_ptr_nonnull(strstr(ev, "Couldn't connect"));
	ck_assert_ptr_nonnull(strstr(ev, "200 leaders"));
	json_object_put(d);
	json_object_put(o);
	/* Still down, but the survivors already serve evenly (a ticket reopened
	 * after its rebalance was verified): nothing automatic is left. */
	o = obs_new(1);
	obs_regions(o, 0, 0, 200, 0);
	obs_store(o, 1, "Up", 0, 0, 0);
	obs_store(o, 2, "Up", 1, 0, 160);
	obs_store(o, 3, "Up", 1, 0, 140);
	d = S->ops->diagnose(S, t, o);
	ck_assert_uint_eq(n_actions(d), 0);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(op_json_arr(d, "supporting_evidence")),
	    "nothing automatic is left"));
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

START_TEST(test_diag_imbalance)
{
	json_object *o = obs_new(1), *t = ticket("leader_imbalance", "cluster"), *d, *a;

	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 150);
	obs_store(o, 2, "Up", 1, 0, 150);
	obs_store(o, 3, "Up", 1, 0, 0);
	d = S->ops->diagnose(S, t, o);
	ck_assert_ptr_nonnull(strstr(op_json_str(d, "primary_diagnosis", ""), "rejoined"));
	a = first_action(d);
	ck_assert_ptr_nonnull(a);
	ck_assert_str_eq(op_json_str(a, "action", ""), "rebalance_leaders");
	ck_assert(op_json_u64(op_json_obj(a, "parameters"), "to_store_id", 0) == 3 ||
	    op_json_u64(op_json_obj(a, "params"), "to_store_id", 0) == 3);
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

START_TEST(test_diag_no_action)
{
	const char *invs[] = {"region_leaderless", "region_under_replicated", "pd_unreachable"};

	for (size_t i = 0; i < 3; i++) {
		json_object *o = i == 2 ? obs_new(0) : obs_healthy(), *t = ticket(invs[i],
		    i == 2 ? "pd" : "cluster"), *d;
		if (i < 2)
			obs_regions(o, 3, 0, 30, 0);
		d = S->ops->diagnose(S, t, o);
		ck_assert_msg(n_actions(d) == 0, "%s recommends an action", invs[i]);
		ck_assert_ptr_nonnull(strcasestr(op_json_str(d, "primary_diagnosis", ""),
		    "no automatic action"));
		json_object_put(d);
		json_object_put(t);
		json_object_put(o);
	}
	/* under-replicated because a store is Down: max-store-down-time is explained */
	json_object *o = obs_new(1), *t = ticket("region_under_replicated", "cluster"), *d;
	obs_regions(o, 0, 0, 100, 0);
	obs_store(o, 1, "Down", 0, 0, 0);
	obs_store(o, 2, "Up", 1, 0, 150);
	obs_store(o, 3, "Up", 1, 0, 150);
	d = S->ops->diagnose(S, t, o);
	ck_assert_ptr_nonnull(strstr(op_json_str(d, "primary_diagnosis", ""), "max-store-down-time (30m)"));
	ck_assert_int_eq(n_actions(d), 0);
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
	/* PD down: no plan for a store ticket either */
	o = obs_new(0);
	obs_store(o, 1, "Up", 0, 0, 0);
	t = ticket("store_down", "1");
	d = S->ops->diagnose(S, t, o);
	ck_assert_int_eq(n_actions(d), 0);
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

/* ---- preconditions ---- */

static int
pre(json_object *obs, const char *action, const char *params, char *why, size_t len)
{
	json_object *p = json_tokener_parse(params);
	int rc = S->ops->precheck(S, action, p, obs, why, len);

	json_object_put(p);
	return rc;
}

START_TEST(test_precheck)
{
	json_object *o = obs_new(1);
	char why[512];

	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 0, 0, 0);          /* probe fails */
	obs_store(o, 2, "Up", 1, 0, 150);
	obs_store(o, 3, "Up", 1, 1, 0);          /* evicted */
	obs_store(o, 4, "Disconnected", 1, 0, 0);
	obs_store(o, 5, "Up", 1, 0, 150);

	ck_assert_int_eq(pre(o, "rebalance_leaders", "{}", why, sizeof(why)), 0);
	ck_assert_int_eq(pre(o, "rebalance_leaders", "{\"to_store_id\":5}", why, sizeof(why)), 0);
	ck_assert_int_ne(pre(o, "rebalance_leaders", "{\"to_store_id\":1}", why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "status probe"));
	ck_assert_int_ne(pre(o, "rebalance_leaders", "{\"to_store_id\":3}", why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "evict"));
	ck_assert_int_ne(pre(o, "rebalance_leaders", "{\"to_store_id\":4}", why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "Disconnected"));
	ck_assert_int_ne(pre(o, "rebalance_leaders", "{\"to_store_id\":9}", why, sizeof(why)), 0);
	/* store-level refusals come before any PD call */
	ck_assert_int_ne(pre(o, "transfer_leader", "{\"region_id\":7,\"to_store_id\":3}", why,
	    sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "evict"));
	ck_assert_int_ne(pre(o, "transfer_leader", "{\"region_id\":7,\"to_store_id\":1}", why,
	    sizeof(why)), 0);
	ck_assert_int_ne(pre(o, "add_peer", "{\"region_id\":7,\"store_id\":4}", why, sizeof(why)), 0);
	ck_assert_int_ne(pre(o, "transfer_peer",
	    "{\"region_id\":7,\"from_store_id\":2,\"to_store_id\":2}", why, sizeof(why)), 0);
	ck_assert_int_ne(pre(o, "set_max_store_down_time", "{\"duration\":\"soon\"}", why,
	    sizeof(why)), 0);
	ck_assert_int_ne(pre(o, "set_max_store_down_time", "{\"duration\":\"500ms\"}", why,
	    sizeof(why)), 0);
	ck_assert_int_eq(pre(o, "set_max_store_down_time", "{\"duration\":\"1h30m\"}", why,
	    sizeof(why)), 0);
	/* 2 live stores besides 2: not enough for 3 replicas; 3 besides 1 are */
	ck_assert_int_ne(pre(o, "remove_store", "{\"store_id\":2}", why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "replicas"));
	ck_assert_int_eq(pre(o, "remove_store", "{\"store_id\":1}", why, sizeof(why)), 0);
	ck_assert_int_eq(pre(o, "evict_leader", "{\"store_id\":2}", why, sizeof(why)), 0);
	ck_assert_int_eq(pre(o, "remove_evict_leader", "{\"store_id\":3}", why, sizeof(why)), 0);
	json_object_put(o);

	/* a single serving store: nothing to balance, nowhere to evict to */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 300);
	obs_store(o, 2, "Down", 0, 0, 0);
	ck_assert_int_ne(pre(o, "rebalance_leaders", "{}", why, sizeof(why)), 0);
	ck_assert_int_ne(pre(o, "evict_leader", "{\"store_id\":1}", why, sizeof(why)), 0);
	json_object_put(o);

	/* PD down: every action refuses */
	o = obs_new(0);
	obs_store(o, 1, "Up", 1, 0, 300);
	obs_store(o, 2, "Up", 1, 0, 0);
	ck_assert_int_ne(pre(o, "rebalance_leaders", "{}", why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "PD is unreachable"));
	ck_assert_int_ne(pre(o, "remove_evict_leader", "{\"store_id\":1}", why, sizeof(why)), 0);
	json_object_put(o);
}
END_TEST

/* ---- outcome ---- */

static int
outcome(json_object *obs, const char *inv, const char *action, struct op_reading *r)
{
	json_object *p = json_object_new_object();
	int rc = S->ops->outcome(S, inv, inv[0] == 's' ? "1" : "cluster", action, p, obs, r);

	json_object_put(p);
	return rc;
}

START_TEST(test_outcome)
{
	struct op_reading r;
	json_object *o = obs_new(1);

	/* store 1 is still dead; the survivors serve every region, balanced */
	obs_regions(o, 0, 0, 300, 0);
	obs_store(o, 1, "Disconnected", 0, 0, 0);
	obs_store(o, 2, "Up", 1, 0, 151);
	obs_store(o, 3, "Up", 1, 0, 149);
	ck_assert_int_eq(outcome(o, "store_down", "rebalance_leaders", &r), 1);
	ck_assert_int_eq(r.state, OP_RD_HEALTHY);
	ck_assert_int_eq(op_json_int(op_json_obj(r.evidence, "leaders_per_store"), "2", -1), 151);
	ck_assert_int_eq(op_json_int(r.evidence, "leaderless", -1), 0);
	ck_assert_int_eq(op_json_int(r.evidence, "pending", -1), 0);
	json_object_put(r.evidence);
	ck_assert_int_eq(outcome(o, "leader_imbalance", "transfer_leader", &r), 1);
	ck_assert_int_eq(r.state, OP_RD_HEALTHY);
	json_object_put(r.evidence);

	/* pending peers on a live store: not served yet */
	obs_regions(o, 0, 0, 300, 4);
	ck_assert_int_eq(outcome(o, "store_down", "rebalance_leaders", &r), 1);
	ck_assert_int_eq(r.state, OP_RD_VIOLATED);
	json_object_put(r.evidence);
	/* regions awaiting election */
	obs_regions(o, 0, 12, 300, 0);
	ck_assert_int_eq(outcome(o, "region_leaderless", "rebalance_leaders", &r), 1);
	ck_assert_int_eq(r.state, OP_RD_VIOLATED);
	json_object_put(r.evidence);
	json_object_put(o);

	/* imbalanced survivors */
	o = obs_new(1);
	obs_regions(o, 0, 0, 0, 0);
	obs_store(o, 1, "Up", 1, 0, 200);
	obs_store(o, 2, "Up", 1, 0, 100);
	ck_assert_int_eq(outcome(o, "store_down", "rebalance_leaders", &r), 1);
	ck_assert_int_eq(r.state, OP_RD_VIOLATED);
	ck_assert(r.value == 100);
	json_object_put(r.evidence);
	/* other pairs fall back to the invariant */
	ck_assert_int_eq(outcome(o, "region_under_replicated", "rebalance_leaders", &r), 0);
	ck_assert_int_eq(outcome(o, "store_down", "evict_leader", &r), 0);
	json_object_put(o);

	/* PD down: never a fix, whatever the ticket */
	o = obs_new(0);
	ck_assert_int_eq(outcome(o, "region_under_replicated", "remove_store", &r), 1);
	ck_assert_int_eq(r.state, OP_RD_BAND);
	json_object_put(r.evidence);
	json_object_put(o);
}
END_TEST

/* ---- observe and faults against a PD that is not there ---- */

START_TEST(test_observe_no_pd)
{
	json_object *obs = NULL, *undo = NULL, *p;
	char err[512];

	ck_assert_int_eq(S->ops->observe(S, &obs, err, sizeof(err)), 0);
	ck_assert(!op_json_bool(op_json_obj(obs, "pd"), "ok", 1));
	ck_assert(!op_json_bool(obs, "complete", 1));
	ck_assert_int_eq(state_of(obs, "pd_unreachable", "pd"), OP_RD_VIOLATED);
	json_object_put(obs);

	p = json_object_new_object();
	ck_assert_int_ne(S->ops->inject(S, "node_kill", p, &undo, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "not pdsim"));
	ck_assert_ptr_null(undo);
	ck_assert_int_ne(S->ops->inject(S, "store_stall", p, &undo, err, sizeof(err)), 0);
	ck_assert_int_ne(S->ops->inject(S, "disk_fill", p, &undo, err, sizeof(err)), 0);
	json_object_put(p);
}
END_TEST

static Suite *
tikv_subject_suite(void)
{
	Suite *s = suite_create("tikv_subject");
	TCase *tc = tcase_create("synthetic");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_config);
	tcase_add_test(tc, test_catalogue);
	tcase_add_test(tc, test_store_down);
	tcase_add_test(tc, test_leader_imbalance);
	tcase_add_test(tc, test_regions);
	tcase_add_test(tc, test_pd_unreachable);
	tcase_add_test(tc, test_prometheus);
	tcase_add_test(tc, test_diag_store_down);
	tcase_add_test(tc, test_diag_imbalance);
	tcase_add_test(tc, test_diag_no_action);
	tcase_add_test(tc, test_precheck);
	tcase_add_test(tc, test_outcome);
	tcase_add_test(tc, test_observe_no_pd);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	op_http_global_init();
	SRunner *sr = srunner_create(tikv_subject_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
