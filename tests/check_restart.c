/* Unit tests: the restart policy against a fake clock, and the ledger's
 * schema and helpers on a temporary database. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "supervisor/ledger.h"
#include "supervisor/restart.h"

START_TEST(test_backoff_doubles_to_cap)
{
	struct od_restart r = {0};
	int64_t now = 1000000, expect = OD_RESTART_MIN_MS;

	/* Never-ready crashes, spaced beyond the intensity period: they back off
	 * doubling, and a run of OD_START_BURST + 1 gives up (systemd's
	 * StartLimitBurst), or a crash loop would never trip the limit. */
	for (int i = 0; i < OD_START_BURST; i++) {
		now += OD_PERIOD_MS + 1;
		struct od_restart_decision d = od_restart_on_exit(&r, now, 0, 1);
		ck_assert(!d.give_up);
		ck_assert_int_eq(d.delay_ms, expect);
		expect = expect * 2 > OD_RESTART_MAX_MS ? OD_RESTART_MAX_MS : expect * 2;
	}
	ck_assert(od_restart_on_exit(&r, now += OD_PERIOD_MS + 1, 0, 1).give_up);
	/* One start that got through ends the run. */
	struct od_restart r2 = {0};
	for (int i = 0; i < 3 * OD_START_BURST; i++)
		ck_assert(!od_restart_on_exit(&r2, now += OD_PERIOD_MS + 1, i % 2 ? 500 : 0, 1).give_up);
	/* Chaos never gives up. */
	struct od_restart r3 = {0};
	for (int i = 0; i < 3 * OD_START_BURST; i++)
		ck_assert(!od_restart_on_exit(&r3, now += OD_PERIOD_MS + 1, 0, 0).give_up);
}
END_TEST

START_TEST(test_ready_worker_restarts_at_once)
{
	struct od_restart r = {0};

	struct od_restart_decision d = od_restart_on_exit(&r, 50000, 5000, 1);
	ck_assert(!d.give_up);
	ck_assert_int_eq(d.delay_ms, 0);
	/* Ready for only half a second: treated as a quick death. */
	d = od_restart_on_exit(&r, 90000, 500, 1);
	ck_assert_int_eq(d.delay_ms, OD_RESTART_MIN_MS);
}
END_TEST

START_TEST(test_reset_after_healthy_uptime)
{
	struct od_restart r = {0};
	int64_t now = 0;

	for (int i = 0; i < 3; i++)
		od_restart_on_exit(&r, now += OD_PERIOD_MS + 1, 0, 1);
	ck_assert_int_eq(r.backoff_ms, 4 * OD_RESTART_MIN_MS);
	od_restart_on_exit(&r, now += OD_PERIOD_MS + 1, OD_RESTART_RESET_MS, 1);
	ck_assert_int_eq(r.backoff_ms, 0);
	struct od_restart_decision d = od_restart_on_exit(&r, now += OD_PERIOD_MS + 1, 0, 1);
	ck_assert_int_eq(d.delay_ms, OD_RESTART_MIN_MS);
}
END_TEST

START_TEST(test_intensity_gives_up)
{
	struct od_restart r = {0};
	int64_t now = 100000;

	for (int i = 0; i < OD_INTENSITY; i++) {
		struct od_restart_decision d = od_restart_on_exit(&r, now += 1000, 5000, 1);
		ck_assert_msg(!d.give_up, "gave up after %d restarts", i + 1);
	}
	struct od_restart_decision d = od_restart_on_exit(&r, now += 1000, 5000, 1);
	ck_assert(d.give_up);
	/* Outside the window the count starts again. */
	struct od_restart r2 = {0};
	now = 0;
	for (int i = 0; i < 3 * OD_INTENSITY; i++) {
		d = od_restart_on_exit(&r2, now += OD_PERIOD_MS / OD_INTENSITY + 100, 5000, 1);
		ck_assert(!d.give_up);
	}
	/* Chaos does not count toward the limit. */
	struct od_restart r3 = {0};
	for (int i = 0; i < 50; i++)
		ck_assert(!od_restart_on_exit(&r3, 1000 + i, 0, 0).give_up);
}
END_TEST

START_TEST(test_ledger_schema_and_rows)
{
	char path[] = "/tmp/check_ledger_XXXXXX", db[64], err[256];
	struct ledger *l;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	snprintf(db, sizeof(db), "%s.db", path);
	ck_assert_msg(ledger_open(&l, db, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_ge(ledger_schema_version(l), 1);
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "x", json_object_new_int(7));
	ck_assert_int_eq(ledger_begin(l), 0);
	int64_t s1 = ledger_event(l, 1000, "violation", 0, "rl", "k", "counter_drift", ev);
	int64_t s2 = ledger_event(l, 1001, "ticket_opened", 3, "rl", "k", NULL, NULL);
	ck_assert_int_eq(ledger_commit(l), 0);
	json_object_put(ev);
	ck_assert_int_eq(s2, s1 + 1);
	json_object *row = ledger_event_json(l, s1);
	ck_assert_ptr_nonnull(row);
	ck_assert_str_eq(op_json_str(row, "type", ""), "violation");
	ck_assert_int_eq(op_json_int(op_json_obj(row, "data"), "x", 0), 7);
	json_object_put(row);
	/* One live ticket per fingerprint. */
	ck_assert_int_ge(ledger_insert(l, "INSERT INTO tickets(fingerprint,subject,invariant,entity,"
	    "status,opened_at,updated_at) VALUES('f','s','i','e','open',1,1)", ""), 1);
	ck_assert_int_eq(ledger_insert(l, "INSERT INTO tickets(fingerprint,subject,invariant,entity,"
	    "status,opened_at,updated_at) VALUES('f','s','i','e','open',1,1)", ""), -1);
	ck_assert_int_eq(ledger_set_setting(l, "mode", "execute"), 0);
	char *m = ledger_setting(l, "mode", "observe");
	ck_assert_str_eq(m, "execute");
	free(m);
	ledger_close(l);
	/* Reopening runs no migration twice. */
	ck_assert_msg(ledger_open(&l, db, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ledger_scalar(l, -1, "SELECT COUNT(*) FROM events", ""), 2);
	ledger_close(l);
	unlink(db);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("restart");
	TCase *tc = tcase_create("policy");

	tcase_add_test(tc, test_backoff_doubles_to_cap);
	tcase_add_test(tc, test_ready_worker_restarts_at_once);
	tcase_add_test(tc, test_reset_after_healthy_uptime);
	tcase_add_test(tc, test_intensity_gives_up);
	tcase_add_test(tc, test_ledger_schema_and_rows);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
