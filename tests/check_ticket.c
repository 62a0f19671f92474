/* The ticket and action state machines (supervisor/ticket_state.c) against
 * DESIGN §4 written out as matrices, every (from, to) pair; and the two gates
 * (supervisor/ticket.c) on a real SQLite ledger: an illegal move writes
 * nothing and is counted. No process is started. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "supervisor/ha.h"
#include "supervisor/od.h"
#include "supervisor/ticket.h"

/* Rows are "from", columns "to", both in enum order:
 * open diagnosing diagnosed awaiting_approval acting retry_wait verifying
 * escalated resolved cleared rejected. */
static const char *const tk_expect[TK_NSTATUS] = {
	/*            o dg dd aw ac rw vf es rs cl rj */
	[TK_OPEN] =              ".1.....111.",
	[TK_DIAGNOSING] =        "..1....111.",
	[TK_DIAGNOSED] =         ".1.11..111.",
	[TK_AWAITING_APPROVAL] = "..1.1..1111",
	[TK_ACTING] =            "..1..11111.",
	[TK_RETRY_WAIT] =        "..1.1..111.",
	[TK_VERIFYING] =         "..1....11..",
	[TK_ESCALATED] =         "..1.....11.",
	[TK_RESOLVED] =          "1..........",
	[TK_CLEARED] =           "...........",
	[TK_REJECTED] =          "...........",
};

/* proposed scheduled awaiting_approval pending retry_wait dispatched unknown
 * executed failed skipped cancelled rejected expired shadowed undone */
static const char *const act_expect[ACT_NSTATUS] = {
	/*                         pr sc aw pe rw di un ex fa sk ca rj xp sh ud */
	[ACT_PROPOSED] =          ".111.....11..1.",
	[ACT_SCHEDULED] =         "1.........1..1.",
	[ACT_AWAITING_APPROVAL] = "1..1.....1111..",
	[ACT_PENDING] =           "1....1...11....",
	[ACT_RETRY_WAIT] =        "1..1.....11....",
	[ACT_DISPATCHED] =        "1...1.11111....",
	[ACT_UNKNOWN] =           ".......111.....",
	[ACT_EXECUTED] =          "..............1",
	[ACT_FAILED] =            "...............",
	[ACT_SKIPPED] =           "...............",
	[ACT_CANCELLED] =         "...............",
	[ACT_REJECTED] =          "...............",
	[ACT_EXPIRED] =           "...............",
	[ACT_SHADOWED] =          "...............",
	[ACT_UNDONE] =            "...............",
};

START_TEST(test_ticket_every_pair)
{
	int legal = 0;

	for (int f = 0; f < TK_NSTATUS; f++) {
		ck_assert_int_eq(strlen(tk_expect[f]), TK_NSTATUS);
		for (int t = 0; t < TK_NSTATUS; t++) {
			int want = tk_expect[f][t] == '1';
			ck_assert_msg(tk_transition_legal(f, t) == want, "%s -> %s: table says %d, DESIGN %d",
			    tk_status_name(f), tk_status_name(t), !want, want);
			legal += want;
		}
	}
	ck_assert_int_gt(legal, 30);
	/* Out of range never passes. */
	ck_assert(!tk_transition_legal(TK_NONE, TK_OPEN));
	ck_assert(!tk_transition_legal(TK_OPEN, TK_NSTATUS));
}
END_TEST

START_TEST(test_action_every_pair)
{
	for (int f = 0; f < ACT_NSTATUS; f++) {
		ck_assert_int_eq(strlen(act_expect[f]), ACT_NSTATUS);
		for (int t = 0; t < ACT_NSTATUS; t++) {
			int want = act_expect[f][t] == '1';
			ck_assert_msg(act_transition_legal(f, t) == want, "%s -> %s: table says %d, DESIGN %d",
			    act_status_name(f), act_status_name(t), !want, want);
		}
	}
	ck_assert(!act_transition_legal(ACT_NONE, ACT_PROPOSED));
}
END_TEST

START_TEST(test_names_round_trip)
{
	for (int s = 0; s < TK_NSTATUS; s++)
		ck_assert_int_eq(tk_status_from(tk_status_name(s)), s);
	for (int s = 0; s < ACT_NSTATUS; s++)
		ck_assert_int_eq(act_status_from(act_status_name(s)), s);
	ck_assert_int_eq(tk_status_from("fixed"), TK_NONE);
	ck_assert_int_eq(tk_status_from(NULL), TK_NONE);
	ck_assert_int_eq(act_status_from("done"), ACT_NONE);
	ck_assert(tk_status_closed(TK_RESOLVED) && tk_status_closed(TK_CLEARED) &&
	    tk_status_closed(TK_REJECTED));
	ck_assert(!tk_status_closed(TK_ESCALATED) && !tk_status_closed(TK_OPEN));
	/* The SQL list of waiting statuses matches the table. */
	for (int s = 0; s < ACT_NSTATUS; s++) {
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "'%s'", act_status_name(s));
		ck_assert_msg((strstr(ACT_WAITING_SQL, quoted) != NULL) ==
		    (act_status_kind(s) == ACT_K_WAITING), "%s", quoted);
	}
}
END_TEST

/* ---- the gates on a real ledger ---- */

static struct od test_od;
static int events_seen;

/* ticket.c reports transitions as events through the outbox; here they are counted. */
int64_t
outbox_event(const char *type, int64_t ticket, const char *subject, const char *entity,
    const char *invariant, json_object *data)
{
	(void)type;
	(void)ticket;
	(void)subject;
	(void)entity;
	(void)invariant;
	json_object_put(data);
	return ++events_seen;
}

/* [ha] hooks in ticket.c (supervisor/ha.c): without [ha] they do nothing. */
void
ha_ticket_changed(int64_t ticket_id)
{
	(void)ticket_id;
}

void
ha_annotate(json_object *data, const char *subject)
{
	(void)data;
	(void)subject;
}

static char dbpath[64];

static void
ledger_setup(void)
{
	char err[256];
	int fd;

	snprintf(dbpath, sizeof(dbpath), "/tmp/check_ticket_XXXXXX");
	fd = mkstemp(dbpath);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(dbpath);
	od = &test_od;
	ck_assert_msg(ledger_open(&od->ledger, dbpath, err, sizeof(err)) == 0, "%s", err);
}

static void
ledger_teardown(void)
{
	char p[80];

	ledger_close(od->ledger);
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
}

static const char *
db_status(int64_t id)
{
	static char buf[32];
	json_object *row = ledger_row(od->ledger, "SELECT status FROM tickets WHERE id=?1", "i", id);

	snprintf(buf, sizeof(buf), "%s", op_json_str(row, "status", "?"));
	json_object_put(row);
	return buf;
}

START_TEST(test_ticket_gate)
{
	struct ticket t;
	uint64_t refused = ticket_refused_transitions();

	int64_t id = ticket_insert("rl/node_down/n1", "rl", "node_down", "n1", "critical", "down",
	    NULL);
	ck_assert_int_gt(id, 0);
	ck_assert_int_eq(ticket_load(&t, id), 0);
	ck_assert_int_eq(t.status, TK_OPEN);
	ck_assert_str_eq(t.entity, "n1");
	/* Illegal: nothing is written, the refusal is counted. */
	ck_assert_int_eq(ticket_set_status(&t, TK_VERIFYING, NULL), -1);
	ck_assert_int_eq(t.status, TK_OPEN);
	ck_assert_str_eq(db_status(id), "open");
	ck_assert_uint_eq(ticket_refused_transitions(), refused + 1);
	/* The lifecycle of DESIGN §4, each move written. */
	static const enum tk_status path[] = {TK_DIAGNOSING, TK_DIAGNOSED, TK_AWAITING_APPROVAL,
		TK_ACTING, TK_VERIFYING, TK_RESOLVED};
	for (size_t i = 0; i < sizeof(path) / sizeof(path[0]); i++) {
		ck_assert_int_eq(ticket_set_status(&t, path[i], NULL), 0);
		ck_assert_str_eq(db_status(id), tk_status_name(path[i]));
	}
	ck_assert(ticket_closed(&t));
	ticket_free(&t);
	ck_assert_int_eq(ticket_load(&t, id), 0);
	ck_assert_int_gt(op_json_int(t.row, "closed_at", 0), 0);
	/* Nothing live under this fingerprint now; a reopen starts a new episode. */
	struct ticket live;
	ck_assert_int_eq(ticket_load_live(&live, "rl/node_down/n1"), -1);
	ticket_add_attempt(&t);
	ck_assert_int_eq(ticket_load_recent_resolved(&live, "rl/node_down/n1", 0), 0);
	ticket_free(&live);
	ck_assert_int_eq(ticket_reopen(&t, 1, "down again", NULL), 0);
	ticket_free(&t);
	ck_assert_int_eq(ticket_load(&t, id), 0);
	ck_assert_int_eq(t.status, TK_OPEN);
	ck_assert_int_eq(op_json_int(t.row, "attempts", -1), 0);
	ck_assert_int_eq(op_json_int(t.row, "flaps", 0), 1);
	ck_assert(op_json_obj(t.row, "closed_at") == NULL);
	/* A rejected ticket never comes back. */
	ck_assert_int_eq(ticket_set_status(&t, TK_DIAGNOSING, NULL), 0);
	ck_assert_int_eq(ticket_set_status(&t, TK_DIAGNOSED, NULL), 0);
	ck_assert_int_eq(ticket_set_status(&t, TK_AWAITING_APPROVAL, NULL), 0);
	ck_assert_int_eq(ticket_set_status(&t, TK_REJECTED, "no"), 0);
	ck_assert_int_eq(ticket_set_status(&t, TK_OPEN, NULL), -1);
	ck_assert_str_eq(db_status(id), "rejected");
	ticket_free(&t);
}
END_TEST

START_TEST(test_action_gate)
{
	struct action a;
	uint64_t refused = ticket_refused_transitions();
	int64_t tid = ticket_insert("rl/counter_drift/k", "rl", "counter_drift", "k", "warning", "",
	    NULL);
	int64_t aid = ledger_insert(od->ledger, "INSERT INTO actions(ticket_id,step,subject,name,"
	    "params,status,created_at) VALUES(?1,1,'rl','reset_counter','{}','proposed',1)", "i", tid);

	ck_assert_int_gt(aid, 0);
	ck_assert_int_eq(action_load(&a, aid), 0);
	ck_assert_int_eq(a.status, ACT_PROPOSED);
	/* Straight to the executor without a go-ahead: refused. */
	ck_assert_int_eq(action_set_status(&a, ACT_DISPATCHED, NULL), -1);
	ck_assert_uint_eq(ticket_refused_transitions(), refused + 1);
	ck_assert_int_eq(action_set_status(&a, ACT_PENDING, NULL), 0);
	ck_assert_int_eq(action_set_status(&a, ACT_DISPATCHED, NULL), 0);
	ck_assert_int_eq(action_set_status(&a, ACT_UNKNOWN, "executor died"), 0);
	/* An unknown action is never dispatched again, only judged. */
	ck_assert_int_eq(action_set_status(&a, ACT_PENDING, NULL), -1);
	ck_assert_int_eq(action_set_status(&a, ACT_EXECUTED, NULL), 0);
	action_free(&a);
	ck_assert_int_eq(action_load(&a, aid), 0);
	ck_assert_int_eq(a.status, ACT_EXECUTED);
	ck_assert_int_gt(op_json_int(a.row, "finished_at", 0), 0);
	ck_assert_str_eq(op_json_str(a.row, "error", ""), "executor died");
	action_free(&a);
}
END_TEST

/* Group commit (outbox.c): a burst of inputs is one transaction with a
 * savepoint per input; an input that fails goes back alone. */
static int64_t
tickets_with(const char *fp)
{
	return ledger_scalar(od->ledger, -1, "SELECT count(*) FROM tickets WHERE fingerprint=?1",
	    "s", fp);
}

START_TEST(test_burst_savepoints)
{
	/* Outside a transaction a savepoint would autocommit on release: refused. */
	uint64_t e0 = ledger_errors(od->ledger);
	ck_assert_int_eq(ledger_savepoint(od->ledger), -1);
	ck_assert_uint_eq(ledger_errors(od->ledger), e0 + 1);

	ck_assert_int_eq(ledger_begin(od->ledger), 0);
	/* input 1 stands */
	ck_assert_int_eq(ledger_savepoint(od->ledger), 0);
	ck_assert_int_gt(ticket_insert("b/1", "rl", "node_down", "n1", "critical", "", NULL), 0);
	ck_assert_int_eq(ledger_release(od->ledger), 0);
	/* input 2 writes, then a statement fails: it goes back alone */
	ck_assert_int_eq(ledger_savepoint(od->ledger), 0);
	ck_assert_int_gt(ticket_insert("b/2", "rl", "node_down", "n2", "critical", "", NULL), 0);
	uint64_t e1 = ledger_errors(od->ledger);
	ck_assert_int_eq(ledger_exec(od->ledger, "INSERT INTO no_such_table VALUES(1)", ""), -1);
	ck_assert_uint_gt(ledger_errors(od->ledger), e1);
	ledger_rollback_to(od->ledger);
	/* input 3 after it stands */
	ck_assert_int_eq(ledger_savepoint(od->ledger), 0);
	ck_assert_int_gt(ticket_insert("b/3", "rl", "node_down", "n3", "critical", "", NULL), 0);
	ck_assert_int_eq(ledger_release(od->ledger), 0);
	ck_assert_int_eq(ledger_commit(od->ledger), 0);
	ck_assert_int_eq(tickets_with("b/1"), 1);
	ck_assert_int_eq(tickets_with("b/2"), 0);
	ck_assert_int_eq(tickets_with("b/3"), 1);

	/* A burst whose BEGIN failed refuses every savepoint and statement. */
	ledger_refuse(od->ledger, 1);
	ck_assert_int_eq(ledger_savepoint(od->ledger), -1);
	ck_assert_int_lt(ticket_insert("b/4", "rl", "node_down", "n4", "critical", "", NULL), 1);
	ledger_refuse(od->ledger, 0);
	ck_assert_int_eq(tickets_with("b/4"), 0);
}
END_TEST

static Suite *
ticket_suite(void)
{
	Suite *s = suite_create("ticket");
	TCase *tc = tcase_create("states");
	tcase_add_test(tc, test_ticket_every_pair);
	tcase_add_test(tc, test_action_every_pair);
	tcase_add_test(tc, test_names_round_trip);
	suite_add_tcase(s, tc);
	tc = tcase_create("gates");
	tcase_add_checked_fixture(tc, ledger_setup, ledger_teardown);
	tcase_add_test(tc, test_ticket_gate);
	tcase_add_test(tc, test_action_gate);
	tcase_add_test(tc, test_burst_savepoints);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ticket_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
