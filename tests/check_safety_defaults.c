/* check_safety_defaults: the catalogue's safety declarations as pure
 * functions. A plan must fit its ticket (op_plan_fits): the action remedies
 * the ticket's invariant and acts only on the ticket's entity or one its
 * evidence names; risky parameters need a human; every reversible action
 * declares its undo and every irreversible one says so; the offline rules'
 * own plans fit; and the execution context's cancellation flag. No process,
 * no network (the subjects are created against closed local ports). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/jsonutil.h"
#include "subjects/subject.h"

#define CFG \
	"[subject.ratelimiter]\n" \
	"redis = 127.0.0.1:1\n" \
	"nodes = http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3\n" \
	"[subject.tikv]\n" \
	"pd = http://127.0.0.1:1/\n" \
	"timeout = 300ms\n"

static struct op_config *cfg;
static struct op_subjects subs;
static struct op_subject *RL, *TK;

static void
setup(void)
{
	char err[256];

	cfg = op_config_parse(CFG, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_msg(op_subjects_create(&subs, cfg, err, sizeof(err)) == 0, "%s", err);
	RL = op_subjects_find(&subs, "ratelimiter");
	TK = op_subjects_find(&subs, "tikv");
	ck_assert_ptr_nonnull(RL);
	ck_assert_ptr_nonnull(TK);
}

static void
teardown(void)
{
	op_subjects_destroy(&subs);
	op_config_free(cfg);
}

static json_object *
J(const char *text)
{
	char err[128];
	json_object *o = op_json_parse(text, strlen(text), err, sizeof(err));

	ck_assert_msg(o != NULL, "bad JSON in test: %s: %s", text, err);
	return o;
}

/* op_plan_fits on JSON text; why gets the reason. */
static int
fits(struct op_subject *s, const char *inv, const char *ent, const char *ev, const char *action,
    const char *params, char *why, size_t len)
{
	json_object *e = ev ? J(ev) : NULL, *p = params ? J(params) : NULL;
	int rc = op_plan_fits(s, inv, ent, e, action, p, why, len);

	json_object_put(e);
	json_object_put(p);
	return rc;
}

/* ---- the rate limiter ---- */

START_TEST(t_fit_rl)
{
	char why[512];
	const char *ghost_ev = "{\"key\":\"k1\",\"limit\":0,\"per_node\":{\"n1\":{\"cached_limit\":0},"
	    "\"n2\":{\"cached_limit\":100}},\"ghost_nodes\":[{\"node\":\"n2\"}]}";

	/* the rules' plan for drift: the ticket's own key */
	ck_assert_int_eq(fits(RL, "counter_drift", "k1", "{\"key\":\"k1\"}", "reset_counter",
	    "{\"key\":\"k1\"}", why, sizeof(why)), OP_FIT_OK);
	/* another key: the unrelated reset seen with a real model */
	ck_assert_int_eq(fits(RL, "counter_drift", "k1", "{\"key\":\"k1\"}", "reset_counter",
	    "{\"key\":\"other\"}", why, sizeof(why)), OP_FIT_NO);
	ck_assert_ptr_nonnull(strstr(why, "key=other"));
	ck_assert_ptr_nonnull(strstr(why, "neither the ticket's entity"));
	/* high_latency has no automatic remedy: a reset of any key does not fit */
	ck_assert_int_eq(fits(RL, "high_latency", "n1", "{\"p99_ms\":900}", "reset_counter",
	    "{\"key\":\"n1\"}", why, sizeof(why)), OP_FIT_NO);
	ck_assert_ptr_nonnull(strstr(why, "does not remedy high_latency"));
	/* moving the goalpost is not a remedy for drift */
	ck_assert_int_eq(fits(RL, "counter_drift", "k1", NULL, "update_limit",
	    "{\"key\":\"k1\",\"limit\":5}", why, sizeof(why)), OP_FIT_NO);
	ck_assert_ptr_nonnull(strstr(why, "does not remedy counter_drift"));
	/* ghost allowing: a node the evidence names, not any node */
	ck_assert_int_eq(fits(RL, "ghost_allowing", "k1", ghost_ev, "resync_node",
	    "{\"node\":\"n2\"}", why, sizeof(why)), OP_FIT_OK);
	ck_assert_int_eq(fits(RL, "ghost_allowing", "k1", ghost_ev, "resync_node",
	    "{\"node\":\"n9\"}", why, sizeof(why)), OP_FIT_NO);
	ck_assert_int_eq(fits(RL, "ghost_allowing", "k1", ghost_ev, "update_limit",
	    "{\"key\":\"k1\",\"limit\":0}", why, sizeof(why)), OP_FIT_OK);
	/* bounds and the catalogue still apply */
	ck_assert_int_eq(fits(RL, "ghost_allowing", "k1", ghost_ev, "update_limit",
	    "{\"key\":\"k1\",\"limit\":-1}", why, sizeof(why)), OP_FIT_NO);
	ck_assert_int_eq(fits(RL, "counter_drift", "k1", NULL, "restart_redis", "{}", why,
	    sizeof(why)), OP_FIT_NO);
	ck_assert_ptr_nonnull(strstr(why, "not in the action catalogue"));
	ck_assert_int_eq(fits(RL, "counter_drift", "k1", NULL, "reset_counter", NULL, why,
	    sizeof(why)), OP_FIT_NO); /* key is required */
}
END_TEST

/* op_plan_fits never rewrites the caller's parameters. */
START_TEST(t_fit_pure)
{
	char why[256];
	json_object *p = J("{\"key\":\"k1\",\"limit\":\"7\"}");

	ck_assert_int_eq(op_plan_fits(RL, "ghost_allowing", "k1", NULL, "update_limit", p, why,
	    sizeof(why)), OP_FIT_OK);
	ck_assert(json_object_is_type(json_object_object_get(p, "limit"), json_type_string));
	json_object_put(p);
	p = J("{\"key\":\"k\"}");
	ck_assert_int_eq(op_plan_fits_kind("ratelimiter", "counter_drift", "k", NULL,
	    "reset_counter", p, why, sizeof(why)), OP_FIT_OK);
	json_object_put(p);
	ck_assert_int_eq(op_plan_fits_kind("nosuch", "x", "y", NULL, "z", NULL, why, sizeof(why)),
	    OP_FIT_NO);
}
END_TEST

/* ---- TiKV ---- */

START_TEST(t_fit_tikv)
{
	char why[512];
	const char *imb = "{\"leaders_per_store\":{\"1\":40,\"2\":35,\"3\":0},"
	    "\"serving_stores\":[1,2,3],\"min_store\":3,\"max_store\":1}";
	const char *down = "{\"store_id\":4,\"state_name\":\"Up\",\"probe_ok\":false}";

	ck_assert_int_eq(fits(TK, "store_down", "4", down, "rebalance_leaders", "{}", why,
	    sizeof(why)), OP_FIT_OK);
	ck_assert_int_eq(fits(TK, "leader_imbalance", "cluster", imb, "rebalance_leaders",
	    "{\"to_store_id\":3}", why, sizeof(why)), OP_FIT_OK);
	ck_assert_int_eq(fits(TK, "leader_imbalance", "cluster", imb, "rebalance_leaders",
	    "{\"to_store_id\":99}", why, sizeof(why)), OP_FIT_NO);
	ck_assert_ptr_nonnull(strstr(why, "to_store_id=99"));
	ck_assert_int_eq(fits(TK, "leader_imbalance", "cluster", imb, "transfer_leader",
	    "{\"region_id\":12,\"to_store_id\":3}", why, sizeof(why)), OP_FIT_OK);
	/* a transfer does not bring a dead store back */
	ck_assert_int_eq(fits(TK, "store_down", "4", down, "transfer_leader",
	    "{\"region_id\":12,\"to_store_id\":4}", why, sizeof(why)), OP_FIT_NO);
	/* removing a store other than the dead one */
	ck_assert_int_eq(fits(TK, "store_down", "4", down, "remove_store", "{\"store_id\":2}",
	    why, sizeof(why)), OP_FIT_NO);
	ck_assert_int_eq(fits(TK, "store_down", "4", down, "remove_store", "{\"store_id\":4}",
	    why, sizeof(why)), OP_FIT_OK);
	/* u64 ids: numbers in the evidence match their text */
	ck_assert_int_eq(fits(TK, "store_high_latency", "18446744073709551615",
	    "{\"stores\":[18446744073709551615]}", "evict_leader",
	    "{\"store_id\":18446744073709551615}", why, sizeof(why)), OP_FIT_OK);
	/* max-store-down-time: 1 s fits the ticket but needs a human; 1 h does not */
	ck_assert_int_eq(fits(TK, "store_down", "4", down, "set_max_store_down_time",
	    "{\"duration\":\"1s\"}", why, sizeof(why)), OP_FIT_APPROVAL);
	ck_assert_ptr_nonnull(strstr(why, "below PD's 30m default"));
	ck_assert_int_eq(fits(TK, "store_down", "4", down, "set_max_store_down_time",
	    "{\"duration\":\"29m59s\"}", why, sizeof(why)), OP_FIT_APPROVAL);
	ck_assert_int_eq(fits(TK, "store_down", "4", down, "set_max_store_down_time",
	    "{\"duration\":\"1h\"}", why, sizeof(why)), OP_FIT_OK);
	/* nothing automatic for PD itself */
	ck_assert_int_eq(fits(TK, "pd_unreachable", "pd", NULL, "rebalance_leaders", "{}", why,
	    sizeof(why)), OP_FIT_NO);
}
END_TEST

/* A store id a plan names must be a store the observation shows. */
START_TEST(t_ids_seen)
{
	char why[256];
	json_object *obs = J("{\"stores\":[{\"id\":1},{\"id\":2},{\"id\":3}]}");
	json_object *ok = J("{\"region_id\":99999,\"to_store_id\":2}");
	json_object *bad = J("{\"region_id\":7,\"to_store_id\":18446744073709551615}");

	ck_assert_int_eq(op_plan_ids_seen(TK, "transfer_leader", ok, obs, why, sizeof(why)), 0);
	ck_assert_int_eq(op_plan_ids_seen(TK, "transfer_leader", bad, obs, why, sizeof(why)), -1);
	ck_assert_ptr_nonnull(strstr(why, "to_store_id=18446744073709551615"));
	ck_assert_int_eq(op_plan_ids_seen(TK, "transfer_leader", bad, NULL, why, sizeof(why)), 0);
	json_object_put(obs);
	json_object_put(ok);
	json_object_put(bad);
}
END_TEST

/* ---- declarations ---- */

static void
check_decls(const struct op_subject *s)
{
	for (size_t i = 0; i < s->ops->nactions; i++) {
		const struct op_action_def *a = &s->ops->actions[i];
		ck_assert_msg((a->undo != NULL) == (a->revert != NULL),
		    "%s/%s: an undo text needs a revert and the other way round", s->name, a->name);
		ck_assert_msg(!(a->irreversible && a->revert), "%s/%s: irreversible with a revert",
		    s->name, a->name);
		ck_assert_msg(a->remedies != NULL && a->remedies[0] != NULL,
		    "%s/%s remedies nothing", s->name, a->name);
		for (size_t k = 0; a->remedies[k]; k++)
			ck_assert_msg(op_subject_invariant(s, a->remedies[k]) != NULL,
			    "%s/%s remedies unknown invariant %s", s->name, a->name, a->remedies[k]);
		for (size_t k = 0; a->entity_params && a->entity_params[k]; k++) {
			int known = 0;
			for (size_t p = 0; p < a->nparams; p++)
				known |= !strcmp(a->params[p].name, a->entity_params[k]);
			ck_assert_msg(known, "%s/%s acts on unknown parameter %s", s->name, a->name,
			    a->entity_params[k]);
		}
	}
}

START_TEST(t_declarations)
{
	static const char *const reversible[] = {"update_limit", "transfer_leader",
	    "rebalance_leaders", "evict_leader", "remove_evict_leader", "set_max_store_down_time"};
	static const char *const irreversible[] = {"reset_counter", "remove_store"};

	check_decls(RL);
	check_decls(TK);
	for (size_t i = 0; i < sizeof(reversible) / sizeof(*reversible); i++) {
		const struct op_action_def *a = op_subject_action(RL, reversible[i]);
		a = a ? a : op_subject_action(TK, reversible[i]);
		ck_assert_ptr_nonnull(a);
		ck_assert_msg(a->revert != NULL && a->undo != NULL, "%s has no undo", reversible[i]);
	}
	for (size_t i = 0; i < sizeof(irreversible) / sizeof(*irreversible); i++) {
		const struct op_action_def *a = op_subject_action(RL, irreversible[i]);
		a = a ? a : op_subject_action(TK, irreversible[i]);
		ck_assert_ptr_nonnull(a);
		ck_assert_msg(a->irreversible, "%s does not say it is irreversible", irreversible[i]);
	}
	/* the blast radius knows how each touches nodes */
	ck_assert_int_eq(op_subject_action(TK, "rebalance_leaders")->touches, OP_TOUCH_PLANNED);
	ck_assert_int_eq(op_subject_action(RL, "resync_node")->touches, OP_TOUCH_PARAM);
	ck_assert_int_eq(op_subject_action(RL, "reset_counter")->touches, OP_TOUCH_NONE);
	/* the prompt's catalogue carries what a plan must fit */
	json_object *cat = op_subject_catalogue(TK), *acts = op_json_arr(cat, "actions");
	int seen = 0;
	for (size_t i = 0; i < json_object_array_length(acts); i++) {
		json_object *a = json_object_array_get_idx(acts, i);
		if (strcmp(op_json_str(a, "name", ""), "remove_store") == 0) {
			seen = 1;
			ck_assert(op_json_bool(a, "irreversible", 0));
			ck_assert_int_eq(json_object_array_length(op_json_arr(a, "remedies")), 1);
		}
	}
	ck_assert(seen);
	json_object_put(cat);
}
END_TEST

/* The offline rules' own plans fit their tickets. */
START_TEST(t_rules_fit)
{
	char why[512];
	json_object *t = J("{\"id\":1,\"subject\":\"ratelimiter\",\"invariant\":\"counter_drift\","
	    "\"entity\":\"kd\",\"evidence\":{\"key\":\"kd\",\"redis_count\":30,"
	    "\"node_allowed_sum\":20,\"drift\":10}}");
	json_object *d = RL->ops->diagnose(RL, t, NULL);
	json_object *acts = op_json_arr(d, "recommended_actions");

	ck_assert_int_ge(json_object_array_length(acts), 1);
	for (size_t i = 0; i < json_object_array_length(acts); i++) {
		json_object *a = json_object_array_get_idx(acts, i);
		ck_assert_msg(op_plan_fits(RL, "counter_drift", "kd", op_json_obj(t, "evidence"),
		    op_json_str(a, "action", ""), op_json_obj(a, "parameters"), why, sizeof(why)) ==
		    OP_FIT_OK, "rules' plan does not fit: %s", why);
	}
	json_object_put(d);
	json_object_put(t);
	t = J("{\"id\":2,\"subject\":\"tikv\",\"invariant\":\"store_down\",\"entity\":\"2\","
	    "\"evidence\":{\"store_id\":2}}");
	d = TK->ops->diagnose(TK, t, NULL);
	acts = op_json_arr(d, "recommended_actions");
	for (size_t i = 0; acts && i < json_object_array_length(acts); i++) {
		json_object *a = json_object_array_get_idx(acts, i);
		ck_assert_msg(op_plan_fits(TK, "store_down", "2", op_json_obj(t, "evidence"),
		    op_json_str(a, "action", ""), op_json_obj(a, "parameters"), why, sizeof(why)) ==
		    OP_FIT_OK, "rules' plan does not fit: %s", why);
	}
	json_object_put(d);
	json_object_put(t);
}
END_TEST

/* ---- execution context ---- */

static int calls;

static int
cancel_on_third(void *arg)
{
	(void)arg;
	return ++calls >= 3;
}

START_TEST(t_exec_ctx)
{
	struct op_exec_ctx c = {cancel_on_third, NULL, -1, NULL};

	op_exec_ctx_set(NULL);
	ck_assert_int_eq(op_action_cancelled(), 0);
	ck_assert_ptr_null(op_exec_ctx_get());
	op_action_cancel();
	ck_assert_int_eq(op_action_cancelled(), 1);
	op_exec_ctx_set(&c); /* a new action starts uncancelled */
	ck_assert_int_eq(op_action_cancelled(), 0);
	ck_assert_int_eq(op_action_cancelled(), 0);
	ck_assert_int_eq(op_action_cancelled(), 1);
	ck_assert_int_eq(op_action_cancelled(), 1); /* stays cancelled */
	ck_assert_int_eq(op_exec_ctx_get()->blast_new_max, -1);
	op_exec_ctx_set(NULL);
	ck_assert_int_eq(op_action_cancelled(), 0);
}
END_TEST

START_TEST(t_obs_nodes)
{
	json_object *a = J("{\"nodes\":[{},{},{}]}"), *b = J("{\"stores\":[{},{}]}");
	json_object *c = J("{\"complete\":true}");

	ck_assert_int_eq(op_obs_nodes(a), 3);
	ck_assert_int_eq(op_obs_nodes(b), 2);
	ck_assert_int_eq(op_obs_nodes(c), 0);
	ck_assert_int_eq(op_obs_nodes(NULL), 0);
	json_object_put(a);
	json_object_put(b);
	json_object_put(c);
}
END_TEST

/* ---- worse than before ---- */

START_TEST(t_worse)
{
	struct op_health b = {1, 1, 1, OP_RD_VIOLATED, 10, 3}, a = b, u = {0};
	char why[256];

	ck_assert_int_eq(op_health_worse(&b, &a, why, sizeof(why)), 0); /* unchanged */
	a.violated = 2;                                                 /* over_limit opened */
	ck_assert_int_eq(op_health_worse(&b, &a, why, sizeof(why)), 1);
	ck_assert_ptr_nonnull(strstr(why, "2 invariant"));
	a.violated = 1;
	a.value = 40;                                                   /* drift grew */
	ck_assert_int_eq(op_health_worse(&b, &a, why, sizeof(why)), 1);
	a.value = 10.5;                                                 /* noise */
	ck_assert_int_eq(op_health_worse(&b, &a, why, sizeof(why)), 0);
	a.value = 40;
	a.state = OP_RD_HEALTHY;                                        /* healed */
	ck_assert_int_eq(op_health_worse(&b, &a, why, sizeof(why)), 0);
	/* store_down: value 0 below threshold 1; further means further below */
	struct op_health sb = {1, 1, 1, OP_RD_VIOLATED, 0, 1}, sa = sb;
	ck_assert_int_eq(op_health_worse(&sb, &sa, why, sizeof(why)), 0);
	ck_assert_int_eq(op_health_worse(&u, &a, why, sizeof(why)), 0); /* unknown: no undo */
	/* round trip through the action's result */
	json_object *j = op_health_json(&b);
	struct op_health r;
	ck_assert_int_eq(op_health_from_json(j, &r), 0);
	ck_assert(r.known && r.violated == 1 && r.have_figure && r.state == OP_RD_VIOLATED &&
	    r.value == 10 && r.threshold == 3);
	json_object_put(j);
	ck_assert_int_eq(op_health_from_json(NULL, &r), -1);
}
END_TEST

/* op_health_of counts the violated readings of a real check(). */
START_TEST(t_health_of)
{
	json_object *obs = J("{\"complete\":true,\"redis\":{\"ok\":true},\"nodes\":["
	    "{\"id\":\"n1\",\"url\":\"http://127.0.0.1:1\",\"reachable\":false,"
	    "\"error\":\"refused\"}],\"keys\":[]}");
	struct op_health h;

	op_health_of(RL, obs, "node_down", "n1", &h);
	ck_assert_int_eq(h.known, 1);
	ck_assert_int_ge(h.violated, 1);
	json_object_put(obs);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("safety_defaults");
	TCase *tc = tcase_create("catalogue");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, t_fit_rl);
	tcase_add_test(tc, t_fit_pure);
	tcase_add_test(tc, t_fit_tikv);
	tcase_add_test(tc, t_ids_seen);
	tcase_add_test(tc, t_declarations);
	tcase_add_test(tc, t_rules_fit);
	tcase_add_test(tc, t_exec_ctx);
	tcase_add_test(tc, t_obs_nodes);
	tcase_add_test(tc, t_worse);
	tcase_add_test(tc, t_health_of);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
