/* check_rl_subject: the rate-limiter subject on synthetic observations.
 * No rlnode and no Redis: check(), diagnose(), precheck() and the action
 * catalogue are pure functions of their JSON input. The only I/O is an
 * observe() against closed local ports, which must fail fast and cleanly. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "subjects/subject.h"

#define CFG_OK \
	"[subject.ratelimiter]\n" \
	"redis = 127.0.0.1:1\n" \
	"nodes = http://127.0.0.1:1, http://127.0.0.1:2/\n" \
	"timeout = 300ms\n"

static struct op_config *cfg;
static struct op_subjects subs;
static struct op_subject *S;
static struct op_readings rd;

static void
setup(void)
{
	char err[256];

	cfg = op_config_parse(CFG_OK, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_msg(op_subjects_create(&subs, cfg, err, sizeof(err)) == 0, "%s", err);
	S = op_subjects_find(&subs, "ratelimiter");
	ck_assert_ptr_nonnull(S);
	memset(&rd, 0, sizeof(rd));
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
obs_new(int redis_ok)
{
	json_object *o = json_object_new_object(), *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(redis_ok));
	json_object_object_add(r, "error", redis_ok ? NULL : json_object_new_string("Connection refused"));
	op_json_set_int(r, "latency_ms", 1);
	json_object_object_add(o, "redis", r);
	op_json_set_int(o, "at_ms", 1000000);
	json_object_object_add(o, "nodes", json_object_new_array());
	json_object_object_add(o, "keys", json_object_new_array());
	return o;
}

static json_object *
obs_node(json_object *o, const char *id, const char *url, int reachable, double p99,
    int64_t checks)
{
	json_object *n = json_object_new_object();

	op_json_set_str(n, "id", id);
	op_json_set_str(n, "url", url);
	json_object_object_add(n, "reachable", json_object_new_boolean(reachable));
	if (reachable) {
		op_json_set_str(n, "status", "ok");
		op_json_set_str(n, "redis", "up");
		json_object_object_add(n, "check_p99_ms", json_object_new_double(p99));
		op_json_set_int(n, "checks_recent", checks);
		op_json_set_int(n, "uptime_ms", 600000);
	} else {
		op_json_set_str(n, "error", "Couldn't connect to server");
	}
	json_object_object_add(n, "counters_ok", json_object_new_boolean(reachable));
	json_object_array_add(op_json_arr(o, "nodes"), n);
	return n;
}

static json_object *
obs_key(json_object *o, const char *key, int64_t limit, int64_t redis_count, int complete)
{
	json_object *k = json_object_new_object();

	op_json_set_str(k, "key", key);
	op_json_set_int(k, "limit", limit);
	op_json_set_int(k, "window_ms", 10000);
	op_json_set_int(k, "redis_count", redis_count);
	op_json_set_int(k, "node_allowed_sum", 0);
	op_json_set_int(k, "allowed_recent_sum", 0);
	json_object_object_add(k, "complete", json_object_new_boolean(complete));
	json_object_object_add(k, "covers_window", json_object_new_boolean(1));
	json_object_object_add(k, "reset_consistent", json_object_new_boolean(1));
	json_object_object_add(k, "per_node", json_object_new_object());
	json_object_array_add(op_json_arr(o, "keys"), k);
	return k;
}

static void
key_node(json_object *k, const char *id, int64_t allowed, int64_t recent, int64_t cached)
{
	json_object *pn = json_object_new_object();

	op_json_set_int(pn, "allowed", allowed);
	op_json_set_int(pn, "allowed_recent", recent);
	op_json_set_int(pn, "blocked_recent", 0);
	op_json_set_int(pn, "cached_limit", cached);
	json_object_object_add(op_json_obj(k, "per_node"), id, pn);
	op_json_set_int(k, "node_allowed_sum", op_json_int(k, "node_allowed_sum", 0) + allowed);
	op_json_set_int(k, "allowed_recent_sum", op_json_int(k, "allowed_recent_sum", 0) + recent);
	op_json_set_int(k, "drift", op_json_int(k, "redis_count", 0) -
	    op_json_int(k, "node_allowed_sum", 0));
}

static const struct op_reading *
run_check(json_object *o, const char *inv, const char *entity)
{
	op_readings_clear(&rd);
	S->ops->check(S, o, &rd);
	const struct op_reading *r = op_readings_find(&rd, inv, entity);
	ck_assert_msg(r != NULL, "no %s reading for %s", inv, entity);
	return r;
}

/* ---- configuration ---- */

static int
cfg_err(const char *text, char *err, size_t errlen)
{
	struct op_config *c = op_config_parse(text, err, errlen);
	struct op_subjects all;
	int rc;

	ck_assert_ptr_nonnull(c);
	rc = op_subjects_create(&all, c, err, errlen);
	if (rc == 0)
		op_subjects_destroy(&all);
	op_config_free(c);
	return rc;
}

/* A key the caller needs a reading for (a ticket's) that no node lists:
 * idle and healthy in a complete observation, undetermined when a list was
 * cut or a node did not answer; and no reading at all unless asked for, so
 * absence never stands for "healed" (ticket-core hole 2). */
START_TEST(test_focus_unlisted_key)
{
	json_object *o = obs_new(1);
	const struct op_reading *r;

	obs_node(o, "n1", "http://127.0.0.1:1", 1, 1, 10);
	obs_node(o, "n2", "http://127.0.0.1:2", 1, 1, 10);
	json_object_object_add(o, "complete", json_object_new_boolean(1));
	op_readings_clear(&rd);
	S->ops->check(S, o, &rd);
	ck_assert_ptr_null(op_readings_find(&rd, "counter_drift", "k-idle"));
	op_obs_focus(o, "k-idle");
	r = run_check(o, "counter_drift", "k-idle");
	ck_assert_int_eq(r->state, OP_RD_HEALTHY);
	ck_assert_ptr_nonnull(r->evidence);
	r = run_check(o, "over_limit", "k-idle");
	ck_assert_int_eq(r->state, OP_RD_HEALTHY);
	/* A node's list was cut: the key may be one it left out. */
	json_object_object_add(o, "complete", json_object_new_boolean(0));
	r = run_check(o, "counter_drift", "k-idle");
	ck_assert_int_eq(r->state, OP_RD_BAND);
	r = run_check(o, "over_limit", "k-idle");
	ck_assert_int_eq(r->state, OP_RD_BAND);
	/* A node id in focus is a node, not a key. */
	op_obs_focus(o, "n1");
	op_readings_clear(&rd);
	S->ops->check(S, o, &rd);
	ck_assert_ptr_null(op_readings_find(&rd, "counter_drift", "n1"));
	json_object_put(o);
}
END_TEST

START_TEST(test_config_errors)
{
	char err[256];

	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nnodes = http://a:1\n", err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "[subject.ratelimiter] redis"));
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r:6379\n", err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "[subject.ratelimiter] nodes"));
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r:6379\nnodes = ftp://x\n", err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "nodes"));
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r:6379\nnodes = http://a, http://a/\n",
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "twice"));
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r:6379\nnodes = http://a\n"
	    "drift_tolerance = -1\n", err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "drift_tolerance"));
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r\nnodes = http://a\n", err,
	    sizeof(err)), -1);
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r:1\nnodes = http://a\n"
	    "timeout = soon\n", err, sizeof(err)), -1);
	ck_assert_int_eq(cfg_err("[subject.ratelimiter]\nredis = r:1\nnodes = ,http://a,\n"
	    "latency_p99_ms = 50\nmin_checks = 5\n", err, sizeof(err)), 0);
}
END_TEST

/* ---- check ---- */

START_TEST(test_node_down)
{
	json_object *o = obs_new(1);

	obs_node(o, "n1", "http://127.0.0.1:1", 1, 2, 100);
	obs_node(o, "http://127.0.0.1:2", "http://127.0.0.1:2", 0, 0, 0);
	ck_assert_int_eq(run_check(o, "node_down", "n1")->state, OP_RD_HEALTHY);
	/* a node first seen up under its id heals a ticket opened under its URL */
	ck_assert_int_eq(run_check(o, "node_down", "http://127.0.0.1:1")->state, OP_RD_HEALTHY);
	const struct op_reading *r = run_check(o, "node_down", "http://127.0.0.1:2");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_ptr_nonnull(strstr(r->message, "does not answer"));
	/* an unreachable node has no latency figures: keep state */
	ck_assert_int_eq(run_check(o, "high_latency", "http://127.0.0.1:2")->state, OP_RD_BAND);
	json_object_put(o);
}
END_TEST

START_TEST(test_redis_unreachable)
{
	json_object *o = obs_new(0);

	ck_assert_int_eq(run_check(o, "redis_unreachable", "redis")->state, OP_RD_VIOLATED);
	ck_assert_ptr_nonnull(strstr(run_check(o, "redis_unreachable", "redis")->message, "refused"));
	json_object_put(o);
	o = obs_new(1);
	ck_assert_int_eq(run_check(o, "redis_unreachable", "redis")->state, OP_RD_HEALTHY);
	json_object_put(o);
}
END_TEST

START_TEST(test_counter_drift)
{
	json_object *o = obs_new(1), *k;

	obs_node(o, "n1", "http://a", 1, 1, 100);
	obs_node(o, "n2", "http://b", 1, 1, 100);
	k = obs_key(o, "k", 1000, 120, 1);
	key_node(k, "n1", 50, 0, 1000);
	key_node(k, "n2", 30, 0, 1000);
	const struct op_reading *r = run_check(o, "counter_drift", "k");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_double_eq(r->value, 40);
	ck_assert_double_eq(r->threshold, 3);
	ck_assert_msg(strstr(r->message, "Redis counts 120, nodes allowed 80 (drift 40 > 3)"), "%s",
	    r->message);
	ck_assert_int_eq(op_json_int(r->evidence, "redis_count", 0), 120);
	ck_assert_ptr_nonnull(op_json_obj(op_json_obj(r->evidence, "per_node"), "n2"));

	/* within tolerance, in both directions */
	op_json_set_int(k, "redis_count", 83);
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_HEALTHY);
	op_json_set_int(k, "redis_count", 77);
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_HEALTHY);
	op_json_set_int(k, "redis_count", 70);
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_VIOLATED);

	/* incomplete data, a young node, or no Redis: cannot tell */
	json_object_object_add(k, "complete", json_object_new_boolean(0));
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_BAND);
	json_object_object_add(k, "complete", json_object_new_boolean(1));
	json_object_object_add(k, "covers_window", json_object_new_boolean(0));
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_BAND);
	json_object_object_add(k, "covers_window", json_object_new_boolean(1));
	json_object_object_add(k, "redis_count", NULL);
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_BAND);
	op_json_set_int(k, "redis_count", 120);
	json_object_object_add(op_json_obj(o, "redis"), "ok", json_object_new_boolean(0));
	ck_assert_int_eq(run_check(o, "counter_drift", "k")->state, OP_RD_BAND);
	json_object_put(o);
}
END_TEST

START_TEST(test_over_limit)
{
	json_object *o = obs_new(1), *k;

	k = obs_key(o, "k", 10, 25, 1);
	key_node(k, "n1", 5, 0, 10);
	key_node(k, "n2", 20, 0, 50);
	const struct op_reading *r = run_check(o, "over_limit", "k");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_msg(strstr(r->message, "allowed 25") && strstr(r->message, "limit 10"), "%s",
	    r->message);

	k = obs_key(o, "ok", 100, 30, 1);
	key_node(k, "n1", 30, 0, 100);
	ck_assert_int_eq(run_check(o, "over_limit", "ok")->state, OP_RD_HEALTHY);

	/* limit 0 is ghost_allowing's business */
	k = obs_key(o, "zero", 0, 5, 1);
	key_node(k, "n1", 5, 5, 10);
	ck_assert_int_eq(run_check(o, "over_limit", "zero")->state, OP_RD_HEALTHY);

	/* partial data below the limit proves nothing; above it proves it */
	k = obs_key(o, "part", 100, 30, 0);
	key_node(k, "n1", 30, 0, 100);
	ck_assert_int_eq(run_check(o, "over_limit", "part")->state, OP_RD_BAND);
	k = obs_key(o, "part2", 10, 30, 0);
	key_node(k, "n1", 30, 0, 100);
	ck_assert_int_eq(run_check(o, "over_limit", "part2")->state, OP_RD_VIOLATED);
	json_object_put(o);
}
END_TEST

START_TEST(test_ghost_allowing)
{
	json_object *o = obs_new(1), *k;

	k = obs_key(o, "g", 0, 7, 1);
	key_node(k, "n1", 0, 0, 0);
	key_node(k, "n2", 7, 7, 10);
	const struct op_reading *r = run_check(o, "ghost_allowing", "g");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_msg(strstr(r->message, "n2 (cached limit 10)"), "%s", r->message);
	json_object *gn = op_json_arr(r->evidence, "ghost_nodes");
	ck_assert_int_eq(json_object_array_length(gn), 1);
	ck_assert_str_eq(op_json_str(json_object_array_get_idx(gn, 0), "node", ""), "n2");

	k = obs_key(o, "quiet", 0, 0, 1);
	key_node(k, "n1", 0, 0, 0);
	ck_assert_int_eq(run_check(o, "ghost_allowing", "quiet")->state, OP_RD_HEALTHY);
	k = obs_key(o, "quiet2", 0, 0, 0);
	ck_assert_int_eq(run_check(o, "ghost_allowing", "quiet2")->state, OP_RD_BAND);
	k = obs_key(o, "normal", 10, 5, 1);
	key_node(k, "n1", 5, 5, 10);
	ck_assert_int_eq(run_check(o, "ghost_allowing", "normal")->state, OP_RD_HEALTHY);
	/* allowed with partial data is already proof */
	k = obs_key(o, "partial", 0, 0, 0);
	key_node(k, "n2", 3, 3, 10);
	ck_assert_int_eq(run_check(o, "ghost_allowing", "partial")->state, OP_RD_VIOLATED);
	json_object_put(o);
}
END_TEST

START_TEST(test_high_latency)
{
	json_object *o = obs_new(1);

	obs_node(o, "hot", "http://a", 1, 250, 100);
	obs_node(o, "cool", "http://b", 1, 20, 100);
	obs_node(o, "warm", "http://c", 1, 90, 100);
	obs_node(o, "idle", "http://d", 1, 900, 3);
	const struct op_reading *r = run_check(o, "high_latency", "hot");
	ck_assert_int_eq(r->state, OP_RD_VIOLATED);
	ck_assert_ptr_nonnull(strstr(r->message, "250.0 ms"));
	ck_assert_int_eq(run_check(o, "high_latency", "cool")->state, OP_RD_HEALTHY);
	ck_assert_int_eq(run_check(o, "high_latency", "warm")->state, OP_RD_BAND);
	ck_assert_int_eq(run_check(o, "high_latency", "idle")->state, OP_RD_HEALTHY);
	json_object_put(o);
}
END_TEST

/* ---- diagnose ---- */

static json_object *
ticket(const char *inv, const char *entity, json_object *evidence)
{
	json_object *t = json_object_new_object();

	op_json_set_str(t, "invariant", inv);
	op_json_set_str(t, "entity", entity);
	op_json_set_str(t, "subject", "ratelimiter");
	json_object_object_add(t, "evidence", evidence ? evidence : json_object_new_object());
	return t;
}

static json_object *
action_at(json_object *d, size_t i)
{
	json_object *a = op_json_arr(d, "recommended_actions");

	ck_assert_ptr_nonnull(a);
	ck_assert_uint_gt(json_object_array_length(a), i);
	return json_object_array_get_idx(a, i);
}

static size_t
nactions(json_object *d)
{
	return json_object_array_length(op_json_arr(d, "recommended_actions"));
}

START_TEST(test_diag_drift)
{
	json_object *o = obs_new(1), *k = obs_key(o, "demo", 100, 60, 1);

	key_node(k, "n1", 20, 0, 100);
	key_node(k, "n2", 20, 0, 100);
	/* the ticket's evidence alone (no observation) must be enough */
	json_object *t = ticket("counter_drift", "demo", json_object_get(k));
	json_object *d = S->ops->diagnose(S, t, NULL);
	const char *p = op_json_str(d, "primary_diagnosis", "");
	ck_assert_msg(strstr(p, "counter drift") && strstr(p, "double-counted"), "%s", p);
	ck_assert_str_eq(op_json_str(action_at(d, 0), "action", ""), "reset_counter");
	ck_assert_str_eq(op_json_str(op_json_obj(action_at(d, 0), "parameters"), "key", ""), "demo");
	ck_assert_ptr_nonnull(strstr(op_json_str(action_at(d, 0), "expected_outcome", ""), "aligned"));
	ck_assert_uint_ge(json_object_array_length(op_json_arr(d, "alternatives_considered")), 2);
	/* the recommendation passes the catalogue */
	char err[256];
	ck_assert_int_eq(op_action_validate(op_subject_action(S, "reset_counter"),
	    op_json_obj(action_at(d, 0), "parameters"), err, sizeof(err)), 0);
	json_object_put(d);

	/* fewer in Redis: lost writes */
	op_json_set_int(k, "redis_count", 10);
	d = S->ops->diagnose(S, t, o);
	ck_assert_ptr_nonnull(strstr(op_json_str(d, "primary_diagnosis", ""), "lost"));
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

START_TEST(test_diag_ghost)
{
	json_object *o = obs_new(1), *k = obs_key(o, "demo", 0, 9, 1);

	key_node(k, "n1", 0, 0, 0);
	key_node(k, "n2", 9, 9, 10);
	json_object *t = ticket("ghost_allowing", "demo", NULL);
	json_object *d = S->ops->diagnose(S, t, o);
	const char *p = op_json_str(d, "primary_diagnosis", "");
	ck_assert_msg(strstr(p, "ghost allowing") && strstr(p, "n2"), "%s", p);
	ck_assert_uint_eq(nactions(d), 1);
	ck_assert_str_eq(op_json_str(action_at(d, 0), "action", ""), "resync_node");
	ck_assert_str_eq(op_json_str(op_json_obj(action_at(d, 0), "parameters"), "node", ""), "n2");
	json_object_put(d);

	/* no stale node to blame: re-publish the limit */
	json_object *pn = op_json_obj(op_json_obj(k, "per_node"), "n2");
	op_json_set_int(pn, "cached_limit", 0);
	d = S->ops->diagnose(S, t, o);
	ck_assert_str_eq(op_json_str(action_at(d, 0), "action", ""), "update_limit");
	json_object *params = op_json_obj(action_at(d, 0), "parameters");
	ck_assert_str_eq(op_json_str(params, "key", ""), "demo");
	ck_assert_int_eq(op_json_int(params, "limit", -1), 0);
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

START_TEST(test_diag_over)
{
	json_object *o = obs_new(1), *k = obs_key(o, "k", 10, 25, 1);

	key_node(k, "n1", 5, 0, 10);
	key_node(k, "n2", 20, 0, 50);
	json_object *t = ticket("over_limit", "k", NULL);
	json_object *d = S->ops->diagnose(S, t, o);
	ck_assert_ptr_nonnull(strstr(op_json_str(d, "primary_diagnosis", ""), "stale"));
	ck_assert_uint_eq(nactions(d), 1);
	ck_assert_str_eq(op_json_str(op_json_obj(action_at(d, 0), "parameters"), "node", ""), "n2");
	json_object_put(d);

	json_object_object_add(op_json_obj(o, "redis"), "ok", json_object_new_boolean(0));
	d = S->ops->diagnose(S, t, o);
	ck_assert_ptr_nonnull(strstr(op_json_str(d, "primary_diagnosis", ""), "Redis is unreachable"));
	ck_assert_uint_eq(nactions(d), 0);
	json_object_put(d);

	json_object_object_add(op_json_obj(o, "redis"), "ok", json_object_new_boolean(1));
	op_json_set_int(op_json_obj(op_json_obj(k, "per_node"), "n2"), "cached_limit", 10);
	d = S->ops->diagnose(S, t, o);
	ck_assert_uint_eq(nactions(d), 0);
	ck_assert_uint_ge(json_object_array_length(op_json_arr(d, "risks")), 1);
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

START_TEST(test_diag_no_action)
{
	static const char *const inv[][2] = {{"node_down", "n2"}, {"redis_unreachable", "redis"},
	    {"high_latency", "n1"}, {"made_up", "x"}};
	json_object *o = obs_new(0);

	obs_node(o, "n1", "http://a", 1, 300, 100);
	obs_node(o, "n2", "http://b", 0, 0, 0);
	for (size_t i = 0; i < sizeof(inv) / sizeof(inv[0]); i++) {
		json_object *t = ticket(inv[i][0], inv[i][1], NULL);
		json_object *d = S->ops->diagnose(S, t, i % 2 ? NULL : o);
		ck_assert_ptr_nonnull(d);
		ck_assert_uint_eq(nactions(d), 0);
		ck_assert_uint_ge(json_object_array_length(op_json_arr(d, "risks")), 1);
		ck_assert(strlen(op_json_str(d, "primary_diagnosis", "")) > 10);
		json_object_put(d);
		json_object_put(t);
	}
	json_object *t = ticket("node_down", "n2", NULL);
	json_object *d = S->ops->diagnose(S, t, o);
	ck_assert_ptr_nonnull(strstr(op_json_str(d, "primary_diagnosis", ""), "node down"));
	ck_assert_str_eq(op_json_str(d, "severity", ""), "critical");
	json_object_put(d);
	json_object_put(t);
	json_object_put(o);
}
END_TEST

/* ---- actions ---- */

START_TEST(test_action_validate)
{
	char err[256];
	const struct op_action_def *reset = op_subject_action(S, "reset_counter");
	const struct op_action_def *upd = op_subject_action(S, "update_limit");
	const struct op_action_def *rs = op_subject_action(S, "resync_node");
	json_object *p;

	ck_assert_ptr_nonnull(reset);
	ck_assert_ptr_nonnull(upd);
	ck_assert_ptr_nonnull(rs);
	ck_assert_ptr_null(op_subject_action(S, "restart_node"));
	ck_assert_str_eq(reset->risk, "medium");
	ck_assert_str_eq(upd->risk, "high");
	ck_assert_str_eq(rs->risk, "low");

	p = json_tokener_parse("{}");
	ck_assert_int_eq(op_action_validate(reset, p, err, sizeof(err)), -1);
	json_object_put(p);
	p = json_tokener_parse("{\"key\":\"\"}");
	ck_assert_int_eq(op_action_validate(reset, p, err, sizeof(err)), -1);
	json_object_put(p);
	p = json_tokener_parse("{\"key\":\"demo\",\"force\":true}");
	ck_assert_int_eq(op_action_validate(reset, p, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "force"));
	json_object_put(p);
	char big[260];
	memset(big, 'x', 201);
	big[201] = '\0';
	p = json_object_new_object();
	op_json_set_str(p, "key", big);
	ck_assert_int_eq(op_action_validate(reset, p, err, sizeof(err)), -1);
	json_object_put(p);

	p = json_tokener_parse("{\"key\":\"demo\",\"limit\":\"3\"}");
	ck_assert_int_eq(op_action_validate(upd, p, err, sizeof(err)), 0);
	json_object *v;
	ck_assert(json_object_object_get_ex(p, "limit", &v));
	ck_assert(json_object_is_type(v, json_type_int));
	ck_assert_int_eq(json_object_get_int64(v), 3);
	json_object_put(p);
	p = json_tokener_parse("{\"key\":\"demo\",\"limit\":-1}");
	ck_assert_int_eq(op_action_validate(upd, p, err, sizeof(err)), -1);
	json_object_put(p);
	p = json_tokener_parse("{\"key\":\"demo\",\"limit\":1000000001}");
	ck_assert_int_eq(op_action_validate(upd, p, err, sizeof(err)), -1);
	json_object_put(p);
	p = json_tokener_parse("{\"key\":\"demo\",\"limit\":\"ten\"}");
	ck_assert_int_eq(op_action_validate(upd, p, err, sizeof(err)), -1);
	json_object_put(p);

	p = json_tokener_parse("{\"node\":3}");
	ck_assert_int_eq(op_action_validate(rs, p, err, sizeof(err)), 0);
	ck_assert_str_eq(op_json_str(p, "node", ""), "3");
	json_object_put(p);
}
END_TEST

START_TEST(test_precheck)
{
	char why[256];
	json_object *o = obs_new(1);
	json_object *p = json_tokener_parse("{\"node\":\"n2\"}");
	json_object *k = json_tokener_parse("{\"key\":\"demo\"}");

	obs_node(o, "n1", "http://127.0.0.1:1", 1, 1, 100);
	obs_node(o, "n2", "http://127.0.0.1:2", 0, 0, 0);
	ck_assert_int_eq(S->ops->precheck(S, "reset_counter", k, o, why, sizeof(why)), 0);
	ck_assert_int_eq(S->ops->precheck(S, "resync_node", p, o, why, sizeof(why)), -1);
	ck_assert_ptr_nonnull(strstr(why, "unreachable"));
	op_json_set_str(p, "node", "n9");
	ck_assert_int_eq(S->ops->precheck(S, "resync_node", p, o, why, sizeof(why)), -1);
	ck_assert_ptr_nonnull(strstr(why, "unknown node"));
	op_json_set_str(p, "node", "http://127.0.0.1:1");
	ck_assert_int_eq(S->ops->precheck(S, "resync_node", p, o, why, sizeof(why)), 0);
	op_json_set_str(p, "node", "n1");
	ck_assert_int_eq(S->ops->precheck(S, "resync_node", p, o, why, sizeof(why)), 0);
	ck_assert_int_eq(S->ops->precheck(S, "reset_counter", k, NULL, why, sizeof(why)), -1);
	json_object_object_add(op_json_obj(o, "redis"), "ok", json_object_new_boolean(0));
	ck_assert_int_eq(S->ops->precheck(S, "reset_counter", k, o, why, sizeof(why)), -1);
	ck_assert_ptr_nonnull(strstr(why, "Redis"));
	ck_assert_int_eq(S->ops->precheck(S, "resync_node", p, o, why, sizeof(why)), -1);
	json_object_put(p);
	json_object_put(k);
	json_object_put(o);
}
END_TEST

START_TEST(test_catalogue)
{
	static const char *const faults[] = {"counter_drift", "ghost_allowing", "node_kill",
	    "redis_outage"};

	for (size_t i = 0; i < 4; i++)
		ck_assert_ptr_nonnull(op_subject_fault(S, faults[i]));
	ck_assert_ptr_nonnull(op_subject_invariant(S, "counter_drift"));
	ck_assert_int_eq(op_subject_invariant(S, "node_down")->hold_for_ms, 2000);
	ck_assert_int_eq(op_subject_invariant(S, "high_latency")->clear_for_ms, 5000);
	json_object *c = op_subject_catalogue(S);
	ck_assert_uint_eq(json_object_array_length(op_json_arr(c, "actions")), 3);
	ck_assert_uint_eq(json_object_array_length(op_json_arr(c, "invariants")), 6);
	json_object_put(c);
}
END_TEST

/* Nothing listens on port 1: observe fails fast with a reason, and a fault
 * against an unreachable system fails without a half-made undo. */
START_TEST(test_observe_nothing)
{
	char err[256] = "";
	json_object *obs = NULL, *undo = NULL;

	ck_assert_int_eq(S->ops->observe(S, &obs, err, sizeof(err)), -1);
	ck_assert_ptr_null(obs);
	ck_assert_ptr_nonnull(strstr(err, "redis"));
	ck_assert_int_eq(S->ops->inject(S, "ghost_allowing", NULL, &undo, err, sizeof(err)), -1);
	ck_assert_ptr_null(undo);
	ck_assert_int_eq(S->ops->inject(S, "no_such_fault", NULL, &undo, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "unknown fault"));
}
END_TEST

static Suite *
rl_suite(void)
{
	Suite *s = suite_create("rl_subject");
	TCase *tc = tcase_create("unit");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_config_errors);
	tcase_add_test(tc, test_node_down);
	tcase_add_test(tc, test_redis_unreachable);
	tcase_add_test(tc, test_counter_drift);
	tcase_add_test(tc, test_over_limit);
	tcase_add_test(tc, test_ghost_allowing);
	tcase_add_test(tc, test_high_latency);
	tcase_add_test(tc, test_diag_drift);
	tcase_add_test(tc, test_diag_ghost);
	tcase_add_test(tc, test_diag_over);
	tcase_add_test(tc, test_diag_no_action);
	tcase_add_test(tc, test_action_validate);
	tcase_add_test(tc, test_precheck);
	tcase_add_test(tc, test_catalogue);
	tcase_add_test(tc, test_observe_nothing);
	tcase_add_test(tc, test_focus_unlisted_key);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	op_http_global_init();
	SRunner *sr = srunner_create(rl_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
