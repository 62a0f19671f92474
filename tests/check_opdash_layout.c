/* Unit tests of opdash without a terminal: the model built from canned
 * events (recorded from real runs), the layout rendered into a grid and
 * read back panel by panel, and the chapter file parser. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/opdash.h"
#include "common/jsonutil.h"
#include "protocol/ctl.h"

#define T0 1795898521600LL        /* the canned fault's start, ms */

/* The counter drift loop on key "drift", as the daemon recorded it. */
static const char *const drift_events[] = {
	"{\"seq\":7,\"ts\":\"2026-11-28T20:42:01.600Z\",\"type\":\"fault_injected\",\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"data\":{\"event\":\"injected\",\"fault\":\"counter_drift\",\"subject\":\"ratelimiter\","
	"\"target\":\"drift\",\"started_at\":1795898521600,\"ttl_ms\":30000,\"fault_id\":1}}",
	"{\"seq\":8,\"ts\":\"2026-11-28T20:42:04.753Z\",\"type\":\"violation\",\"subject\":\"ratelimiter\",\"entity\":\"drift\","
	"\"invariant\":\"counter_drift\",\"data\":{\"message\":\"key drift: Redis counts 499, nodes allowed 330\"}}",
	"{\"seq\":9,\"ts\":\"2026-11-28T20:42:04.754Z\",\"type\":\"ticket_opened\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"severity\":\"warning\",\"message\":\"key drift: "
	"Redis counts 499, nodes allowed 330 (drift 169 > 3)\"}}",
	"{\"seq\":12,\"ts\":\"2026-11-28T20:42:04.778Z\",\"type\":\"diagnosis\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"backend\":\"rules\",\"agreed\":1,"
	"\"primary_diagnosis\":\"counter drift on key drift: Redis counts 499 requests but the nodes allowed 330\","
	"\"confidence\":0.85}}",
	"{\"seq\":13,\"ts\":\"2026-11-28T20:42:04.778Z\",\"type\":\"action_proposed\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"action\":\"reset_counter\",\"params\":{\"key\":"
	"\"drift\"},\"action_id\":1}}",
	"{\"seq\":14,\"ts\":\"2026-11-28T20:42:04.779Z\",\"type\":\"action_dispatched\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"action_id\":1,\"action\":\"reset_counter\","
	"\"params\":{\"key\":\"drift\"},\"attempt\":1,\"level\":\"execute\"}}",
	"{\"seq\":18,\"ts\":\"2026-11-28T20:42:04.805Z\",\"type\":\"action_executed\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"action_id\":1,\"action\":\"reset_counter\","
	"\"params\":{\"key\":\"drift\"},\"duration_ms\":15,\"result\":{\"node\":\"demo-n1\",\"url\":"
	"\"http://127.0.0.1:22011/api/counters/drift/reset\",\"method\":\"POST\",\"http_status\":200}}}",
	"{\"seq\":34,\"ts\":\"2026-11-28T20:42:12.852Z\",\"type\":\"verification\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"action\":\"reset_counter\",\"result\":\"success\","
	"\"figures\":{\"state\":\"healthy\",\"message\":\"key drift: Redis counts 211, nodes allowed 211 (drift 0 <= 3)\","
	"\"checks\":7,\"healthy_checks\":6,\"waited_ms\":8036,\"verify_delay_ms\":5000,\"settle_ms\":3000}}}",
	"{\"seq\":35,\"ts\":\"2026-11-28T20:42:12.853Z\",\"type\":\"ticket_resolved\",\"ticket\":1,\"subject\":\"ratelimiter\","
	"\"entity\":\"drift\",\"invariant\":\"counter_drift\",\"data\":{\"action_id\":1,\"duration_ms\":8100}}",
};

static const char *status_json =
	"{\"mode\":\"execute\",\"kill_switch\":false,\"version\":\"0.1.0\",\"workers\":[{\"name\":\"observer\","
	"\"state\":\"ready\"},{\"name\":\"diagnoser\",\"state\":\"ready\"},{\"name\":\"executor\",\"state\":\"ready\"},"
	"{\"name\":\"verifier\",\"state\":\"ready\"},{\"name\":\"chaos\",\"state\":\"ready\"}],\"tickets\":[{\"status\":"
	"\"resolved\",\"count\":1}],\"last_seq\":35,\"safety\":{\"budgets\":[{\"scope\":\"ratelimiter/reset_counter\","
	"\"left\":4,\"capacity\":5}],\"limits\":{\"per_action\":5}}}";

static const char *rl_obs_json =
	"{\"redis\":{\"ok\":true,\"latency_ms\":1},\"at_ms\":1795898532853,\"nodes\":[{\"id\":\"demo-n1\","
	"\"reachable\":true,\"status\":\"ok\",\"redis\":\"up\",\"check_p99_ms\":8.7},{\"id\":\"demo-n2\","
	"\"reachable\":false,\"status\":null,\"redis\":null,\"check_p99_ms\":0},{\"id\":\"demo-n3\",\"reachable\":true,"
	"\"status\":\"ok\",\"redis\":\"up\",\"check_p99_ms\":3.9}],\"keys\":[{\"key\":\"drift\",\"limit\":100000,"
	"\"redis_count\":211},{\"key\":\"ghost\",\"limit\":0,\"redis_count\":58,\"allowed_recent_sum\":12}]}";

/* A store kill and the rebalance, trimmed. */
static const char *const tikv_events[] = {
	"{\"seq\":7,\"ts\":\"2026-11-28T20:42:59.104Z\",\"type\":\"fault_injected\",\"subject\":\"tikv\",\"entity\":\"1\","
	"\"data\":{\"fault\":\"node_kill\",\"subject\":\"tikv\",\"target\":\"1\",\"started_at\":1795898579102,\"fault_id\":1}}",
	"{\"seq\":9,\"ts\":\"2026-11-28T20:42:59.615Z\",\"type\":\"ticket_opened\",\"ticket\":1,\"subject\":\"tikv\","
	"\"entity\":\"1\",\"invariant\":\"store_down\",\"data\":{\"severity\":\"critical\",\"message\":\"store 1 down\"}}",
	"{\"seq\":10,\"ts\":\"2026-11-28T20:42:59.638Z\",\"type\":\"diagnosis\",\"ticket\":1,\"subject\":\"tikv\","
	"\"entity\":\"1\",\"invariant\":\"store_down\",\"data\":{\"backend\":\"rules\",\"confidence\":0.9,"
	"\"primary_diagnosis\":\"store 1 is down: raft re-elects its leaders unevenly\"}}",
	"{\"seq\":12,\"ts\":\"2026-11-28T20:42:59.639Z\",\"type\":\"action_dispatched\",\"ticket\":1,\"subject\":\"tikv\","
	"\"entity\":\"1\",\"invariant\":\"store_down\",\"data\":{\"action_id\":1,\"action\":\"rebalance_leaders\","
	"\"params\":{},\"attempt\":1,\"level\":\"execute\"}}",
	"{\"seq\":13,\"ts\":\"2026-11-28T20:43:00.226Z\",\"type\":\"action_executed\",\"ticket\":1,\"subject\":\"tikv\","
	"\"entity\":\"1\",\"invariant\":\"store_down\",\"data\":{\"action_id\":1,\"action\":\"rebalance_leaders\","
	"\"params\":{},\"duration_ms\":583,\"result\":{\"planned\":50,\"accepted\":50,\"rejected\":0,\"moves\":["
	"{\"region_id\":2,\"from_store_id\":3,\"to_store_id\":2},{\"region_id\":10,\"from_store_id\":3,"
	"\"to_store_id\":4}]}}}",
};

static const char *tikv_obs_json =
	"{\"at_ms\":1795898582000,\"pd\":{\"ok\":true,\"latency_ms\":3},\"regions\":{\"count\":300,\"leaderless\":0},"
	"\"stores\":[{\"id\":1,\"state_name\":\"Disconnected\",\"probe_ok\":false,\"live\":false,\"leaders\":0,"
	"\"regions\":225},{\"id\":2,\"state_name\":\"Up\",\"probe_ok\":true,\"live\":true,\"leaders\":100,"
	"\"regions\":225},{\"id\":3,\"state_name\":\"Up\",\"probe_ok\":true,\"live\":true,\"leaders\":150,"
	"\"regions\":225}]}";

static json_object *
parse(const char *s)
{
	char err[256];
	json_object *o = op_json_parse(s, strlen(s), err, sizeof(err));

	ck_assert_msg(o != NULL, "canned JSON: %s", err);
	return o;
}

static void
feed(struct dm_state *d, const char *const *evs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_object *e = parse(evs[i]);
		dm_apply_event(d, e);
		json_object_put(e);
	}
}

static void
load_rl(struct dm_state *d)
{
	dm_init(d);
	d->connected = 1;
	json_object *st = parse(status_json), *obs = parse(rl_obs_json);
	dm_apply_status(d, st);
	dm_apply_observe(d, "ratelimiter", obs, NULL);
	json_object_put(st);
	json_object_put(obs);
	feed(d, drift_events, sizeof(drift_events) / sizeof(drift_events[0]));
}

/* The frame as lines of text. */
struct frame {
	int w, h;
	char **row;
};

static struct frame
render(const struct lay_view *v, int w, int h)
{
	struct lay_grid g;
	struct frame f = {w, h, calloc((size_t)h, sizeof(char *))};

	ck_assert_int_eq(lay_grid_init(&g, w, h), 0);
	lay_render(&g, v);
	for (int y = 0; y < h; y++) {
		f.row[y] = malloc((size_t)w + 1);
		lay_grid_row(&g, y, f.row[y], (size_t)w + 1);
	}
	lay_grid_free(&g);
	return f;
}

static void
frame_free(struct frame *f)
{
	for (int y = 0; y < f->h; y++)
		free(f->row[y]);
	free(f->row);
}

/* The inside of the panel titled `title`, one string per row, '\n' between. */
static char *
panel(const struct frame *f, const char *title)
{
	char key[64];
	size_t cap = (size_t)(f->w + 1) * (size_t)f->h + 1, n = 0;
	char *out = calloc(cap, 1);

	snprintf(key, sizeof(key), "+ %s", title);
	for (int y = 0; y < f->h; y++) {
		char *at = strstr(f->row[y], key);
		if (at == NULL)
			continue;
		int x0 = (int)(at - f->row[y]);
		const char *right = strchr(at + 1, '+');
		int x1 = right ? (int)(right - f->row[y]) : (int)strlen(f->row[y]);
		for (int yy = y + 1; yy < f->h; yy++) {
			const char *r = f->row[yy];
			if ((int)strlen(r) <= x0 || r[x0] == '+')
				break;
			for (int x = x0 + 1; x < x1 && x < (int)strlen(r); x++)
				out[n++] = r[x];
			out[n++] = '\n';
		}
		return out;
	}
	free(out);
	return NULL;
}

static const char *
after(const char *hay, const char *needle)
{
	const char *p = hay ? strstr(hay, needle) : NULL;

	return p ? p + strlen(needle) : NULL;
}

START_TEST(test_every_panel_and_the_agent_sequence)
{
	static const int sizes[][2] = {{100, 30}, {120, 40}, {200, 60}};
	struct dm_state d;

	load_rl(&d);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct lay_view v = {.dm = &d, .now_ms = T0 + 20000, .chap_state = ""};
		struct frame f = render(&v, sizes[i][0], sizes[i][1]);
		const char *titles[] = {"Cluster", "Chapter", "Detections", "Agent", "Workload"};
		for (size_t k = 0; k < 5; k++) {
			char *p = panel(&f, titles[k]);
			ck_assert_msg(p != NULL, "%dx%d: no panel titled %s", f.w, f.h, titles[k]);
			free(p);
		}
		ck_assert_msg(strstr(f.row[0], "mode EXECUTE") && strstr(f.row[0], "kill switch off") &&
		    strstr(f.row[0], "workers 5/5"), "status line: %s", f.row[0]);
		ck_assert_msg(f.w < 140 || strstr(f.row[0], "budgets reset_counter 4/5"),
		    "status line without the budget left: %s", f.row[0]);

		/* Agent: diagnosis, then the action by name, then success, then resolved */
		char *agent = panel(&f, "Agent");
		const char *p = after(agent, "#1 counter_drift drift [resolved]");
		ck_assert_msg(p != NULL, "%dx%d agent panel has no ticket header:\n%s", f.w, f.h, agent);
		p = after(p, "diagnosis");
		ck_assert_msg(p && strstr(p, "rules, confidence 85%"), "no diagnosis line:\n%s", agent);
		p = after(p, "reset_counter key=drift executed");
		ck_assert_msg(p != NULL, "no reset_counter after the diagnosis:\n%s", agent);
		p = after(p, "success");
		ck_assert_msg(p != NULL, "no verification success after the action:\n%s", agent);
		ck_assert_msg(strstr(p, "drift 0 <= 3") != NULL, "no verification figures:\n%s", agent);
		ck_assert_msg(after(p, "resolved") != NULL, "no resolved after the verification:\n%s", agent);
		/* times since the fault: detected 3.2 s after it, verified 11.3 s after it */
		ck_assert_msg(strstr(agent, "+3.2s") && strstr(agent, "+11.3s"), "step times:\n%s", agent);
		free(agent);

		char *det = panel(&f, "Detections");
		ck_assert_msg(det && strstr(det, "FAULT") && strstr(det, "#1") &&
		    strstr(det, "counter_drift") && strstr(det, "resolved"), "detections:\n%s", det);
		ck_assert_msg(strstr(det, "FAULT") > strstr(det, "#1"), "newest first:\n%s", det);
		free(det);

		char *cl = panel(&f, "Cluster");
		ck_assert_msg(cl && strstr(cl, "Redis up") && strstr(cl, "demo-n1    up") &&
		    strstr(cl, "demo-n2    down"), "cluster:\n%s", cl);
		free(cl);
		char *wl = panel(&f, "Workload");
		ck_assert_msg(wl && strstr(wl, "drift") && strstr(wl, "211/100000") &&
		    strstr(wl, "58/0  OVER LIMIT"), "workload:\n%s", wl);
		free(wl);
		frame_free(&f);
	}
	dm_free(&d);
}
END_TEST

START_TEST(test_the_wait_and_approval)
{
	struct dm_state d;

	dm_init(&d);
	d.connected = 1;
	feed(&d, drift_events, 7);    /* up to action_executed */
	struct lay_view v = {.dm = &d, .now_ms = T0 + 6000};
	struct frame f = render(&v, 100, 30);
	char *agent = panel(&f, "Agent");
	ck_assert_msg(agent && strstr(agent, "wait") && strstr(agent, "since the action"),
	    "no live wait line:\n%s", agent);
	ck_assert_msg(strstr(agent, "[verifying]") != NULL, "status:\n%s", agent);
	free(agent);
	frame_free(&f);

	/* an action waiting for approval is shown with the key to press */
	json_object *e = parse("{\"seq\":40,\"ts\":\"2026-11-28T20:43:00.000Z\",\"type\":"
	    "\"action_awaiting_approval\",\"ticket\":1,\"data\":{\"action_id\":9,\"action\":\"reset_counter\","
	    "\"params\":{\"key\":\"drift\"},\"reason\":\"approve mode\"}}");
	dm_apply_event(&d, e);
	json_object_put(e);
	ck_assert_int_eq(dm_ticket(&d, 1)->awaiting_action, 9);
	v.selected = 1;
	f = render(&v, 100, 30);
	agent = panel(&f, "Agent");
	ck_assert_msg(agent && strstr(agent, "approval  reset_counter key=drift waits") &&
	    strstr(agent, "press a to approve"), "approval:\n%s", agent);
	free(agent);
	frame_free(&f);
	e = parse("{\"seq\":41,\"ts\":\"2026-11-28T20:43:01.000Z\",\"type\":\"action_approved\",\"ticket\":1,"
	    "\"data\":{\"action_id\":9,\"action\":\"reset_counter\",\"by\":\"uid:0\"}}");
	dm_apply_event(&d, e);
	json_object_put(e);
	ck_assert_int_eq(dm_ticket(&d, 1)->awaiting_action, 0);
	/* a replayed (older) event changes nothing */
	e = parse(drift_events[8]);
	dm_apply_event(&d, e);
	json_object_put(e);
	ck_assert_str_ne(dm_ticket(&d, 1)->status, "resolved");
	dm_free(&d);
}
END_TEST

/* A violation back under the same fault continues the story; a new fault
 * starts a new one. */
START_TEST(test_reopen)
{
	struct dm_state d;

	dm_init(&d);
	feed(&d, drift_events, sizeof(drift_events) / sizeof(drift_events[0]));
	struct dm_ticket *t = dm_ticket(&d, 1);
	int before = t->nsteps;
	int64_t t0 = t->t0_ms;
	json_object *e = parse("{\"seq\":50,\"ts\":\"2026-11-28T20:42:20.000Z\",\"type\":\"ticket_reopened\","
	    "\"ticket\":1,\"subject\":\"ratelimiter\",\"invariant\":\"counter_drift\",\"entity\":\"drift\","
	    "\"data\":{\"flaps\":1,\"flap_max\":3,\"message\":\"again\"}}");
	dm_apply_event(&d, e);
	json_object_put(e);
	ck_assert_int_eq(t->nsteps, before + 1);
	ck_assert_int_eq(t->t0_ms, t0);
	ck_assert_str_eq(t->steps[t->nsteps - 1].word, "reopened");
	ck_assert_str_eq(t->status, "open");
	e = parse("{\"seq\":60,\"ts\":\"2026-11-28T20:50:00.000Z\",\"type\":\"fault_injected\","
	    "\"data\":{\"fault\":\"counter_drift\",\"subject\":\"ratelimiter\",\"target\":\"drift\","
	    "\"started_at\":1795899000000,\"fault_id\":2}}");
	dm_apply_event(&d, e);
	json_object_put(e);
	e = parse("{\"seq\":61,\"ts\":\"2026-11-28T20:50:03.000Z\",\"type\":\"ticket_reopened\","
	    "\"ticket\":1,\"subject\":\"ratelimiter\",\"invariant\":\"counter_drift\",\"entity\":\"drift\","
	    "\"data\":{\"flaps\":2,\"flap_max\":3,\"message\":\"new fault\"}}");
	dm_apply_event(&d, e);
	json_object_put(e);
	ck_assert_int_eq(t->nsteps, 1);
	ck_assert_int_eq(t->t0_ms, 1795899000000LL);
	dm_free(&d);
}
END_TEST

START_TEST(test_tikv_frame)
{
	struct dm_state d;

	dm_init(&d);
	d.connected = 1;
	json_object *obs = parse(tikv_obs_json);
	dm_apply_observe(&d, "tikv", obs, NULL);
	json_object_put(obs);
	feed(&d, tikv_events, sizeof(tikv_events) / sizeof(tikv_events[0]));
	struct lay_view v = {.dm = &d, .now_ms = 1795898583000LL};
	struct frame f = render(&v, 120, 40);
	char *cl = panel(&f, "Cluster: CRITICAL");
	ck_assert_msg(cl != NULL, "a critical open ticket does not mark the Cluster panel");
	ck_assert_msg(strstr(cl, "1   down    Discon") != NULL, "store 1 not down:\n%s", cl);
	free(cl);
	char *wl = panel(&f, "Workload");
	ck_assert_msg(wl && strstr(wl, "s3    150 [####") && strstr(wl, "s1      0 [...."),
	    "leader bars:\n%s", wl);
	free(wl);
	char *agent = panel(&f, "Agent");
	ck_assert_msg(agent && strstr(agent, "rebalance_leaders") &&
	    strstr(agent, "50 transfer-leader moves") && strstr(agent, "region 2: 3->2"),
	    "agent:\n%s", agent);
	free(agent);
	frame_free(&f);
	dm_free(&d);
}
END_TEST

START_TEST(test_small_terminal_and_daemon_gone)
{
	struct dm_state d;

	load_rl(&d);
	struct lay_view v = {.dm = &d, .now_ms = T0};
	struct frame f = render(&v, 99, 30);
	int said = 0;
	for (int y = 0; y < f.h; y++)
		said |= strstr(f.row[y], "at least 100x30") != NULL;
	ck_assert_msg(said, "99x30 does not say the minimum size");
	frame_free(&f);
	f = render(&v, 100, 29);
	said = 0;
	for (int y = 0; y < f.h; y++)
		said |= strstr(f.row[y], "at least 100x30") != NULL;
	ck_assert_msg(said, "100x29 does not say the minimum size");
	frame_free(&f);

	d.connected = 0;
	snprintf(d.conn_error, sizeof(d.conn_error), "connection refused");
	f = render(&v, 100, 30);
	ck_assert_msg(strstr(f.row[0], "operatord is not running"), "status: %s", f.row[0]);
	frame_free(&f);
	dm_free(&d);
}
END_TEST

START_TEST(test_text_from_the_daemon_cannot_move_the_cursor)
{
	struct dm_state d;

	dm_init(&d);
	d.connected = 1;
	json_object *e = parse("{\"seq\":1,\"ts\":1795898521600,\"type\":\"ticket_opened\",\"ticket\":3,"
	    "\"subject\":\"x\",\"invariant\":\"inv\",\"entity\":\"e\\u001b[2J\",\"data\":{\"message\":"
	    "\"evil\\u001b]0;title\\u0007 text\"}}");
	dm_apply_event(&d, e);
	json_object_put(e);
	struct lay_grid g;
	struct lay_view v = {.dm = &d, .now_ms = 1795898521600LL};
	ck_assert_int_eq(lay_grid_init(&g, 120, 40), 0);
	lay_render(&g, &v);
	for (int i = 0; i < g.w * g.h; i++)
		ck_assert_msg((unsigned char)g.c[i].ch >= 0x20 && (unsigned char)g.c[i].ch < 0x7f,
		    "cell %d holds byte 0x%02x", i, (unsigned char)g.c[i].ch);
	lay_grid_free(&g);
	dm_free(&d);
}
END_TEST

START_TEST(test_chapter_parser)
{
	struct chap_book b;
	char err[256];
	const char *good =
	    "# comment\nsubject: tikv\n\nchapter: One\nHello\nworld.\n\n- a bullet\n"
	    "chapter: Two\ndo: chaos inject node_kill \"ttl=25 s\"\nwait: ticket_resolved|ticket_escalated "
	    "invariant=store_down entity=$target\nauto: yes\ntimeout: 90s\nNote: not a directive.\n";

	ck_assert_msg(chap_parse(good, &b, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(b.subject, "tikv");
	ck_assert_int_eq(b.n, 2);
	ck_assert_str_eq(b.c[0].narration, "Hello world.\n\n- a bullet");
	ck_assert_int_eq(b.c[1].ndo, 1);
	ck_assert(b.c[1].has_wait && b.c[1].auto_advance);
	ck_assert_int_eq(b.c[1].timeout_ms, 90000);
	ck_assert_str_eq(b.c[1].narration, "Note: not a directive.");
	ck_assert_int_eq(b.c[0].timeout_ms, CHAP_DEFAULT_TIMEOUT_MS);

	char cmd[64];
	json_object *args;
	ck_assert(chap_split_cmd(b.c[1].do_cmd[0], cmd, sizeof(cmd), &args, err, sizeof(err)) == 0);
	ck_assert_str_eq(cmd, "chaos");
	ck_assert_str_eq(json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN),
	    "[\"inject\",\"node_kill\",\"ttl=25 s\"]");
	json_object_put(args);
	ck_assert(chap_split_cmd("chaos \"unclosed", cmd, sizeof(cmd), &args, err, sizeof(err)) != 0);
	ck_assert(strstr(err, "unclosed") != NULL);

	json_object *ev = parse("{\"seq\":5,\"type\":\"ticket_resolved\",\"invariant\":\"store_down\","
	    "\"entity\":\"3\",\"data\":{\"result\":\"success\"}}");
	ck_assert(chap_event_matches(&b.c[1].wait, ev, "3"));
	ck_assert(!chap_event_matches(&b.c[1].wait, ev, "1"));
	struct chap_match m;
	memset(&m, 0, sizeof(m));
	snprintf(m.types, sizeof(m.types), "ticket_resolved");
	m.nfilters = 1;
	snprintf(m.key[0], sizeof(m.key[0]), "result");
	snprintf(m.val[0], sizeof(m.val[0]), "success");
	ck_assert_msg(chap_event_matches(&m, ev, ""), "data.* fields are not matched");
	snprintf(m.types, sizeof(m.types), "ticket_resolve");
	ck_assert_msg(!chap_event_matches(&m, ev, ""), "a type prefix matched");
	json_object_put(ev);

	static const struct {
		const char *text, *want;
	} bad[] = {
		{"hello\nchapter: x\n", "line 1"},
		{"chapter: x\nwait:\n", "line 2: wait: needs"},
		{"chapter: x\nwait: a b\n", "not key=value"},
		{"chapter: x\nauto: maybe\n", "line 2: auto: takes yes or no"},
		{"chapter: x\ntimeout: soon\n", "line 2: timeout"},
		{"chapter: x\nsubject: y\n", "before the first chapter"},
		{"# nothing\n", "no \"chapter:\""},
		{"chapter:\n", "needs a title"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(chap_parse(bad[i].text, &b, err, sizeof(err)) != 0, "accepted: %s",
		    bad[i].text);
		ck_assert_msg(strstr(err, bad[i].want) != NULL, "\"%s\": error \"%s\" lacks \"%s\"",
		    bad[i].text, err, bad[i].want);
	}
}
END_TEST

/* The chapter files the demos ship parse, and tell the whole loop. */
START_TEST(test_shipped_chapters)
{
	const char *dir = getenv("OPDASH_CHAPTERS_DIR");
	static const char *const files[] = {"ratelimiter.chapters", "tikv.chapters"};
	char path[1024], err[512];
	struct chap_book b;

	ck_assert_msg(dir != NULL, "set OPDASH_CHAPTERS_DIR");
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		ck_assert_msg(chap_load(path, &b, err, sizeof(err)) == 0, "%s", err);
		ck_assert_msg(b.n >= 4, "%s: %d chapters", path, b.n);
		int inject = 0, waits = 0;
		for (int k = 0; k < b.n; k++) {
			for (int j = 0; j < b.c[k].ndo; j++) {
				char cmd[64];
				json_object *args;
				inject |= strstr(b.c[k].do_cmd[j], "chaos inject") != NULL;
				ck_assert_msg(chap_split_cmd(b.c[k].do_cmd[j], cmd, sizeof(cmd), &args, err,
				    sizeof(err)) == 0 && op_ctl_lookup(cmd) != NULL,
				    "%s: \"%s\" is not a control command", path, b.c[k].do_cmd[j]);
				json_object_put(args);
			}
			waits += b.c[k].has_wait;
		}
		ck_assert_msg(inject && waits >= 2, "%s: no fault injected or no waits", path);
	}
}
END_TEST

static Suite *
opdash_suite(void)
{
	Suite *s = suite_create("opdash_layout");
	TCase *tc = tcase_create("layout");

	tcase_add_test(tc, test_every_panel_and_the_agent_sequence);
	tcase_add_test(tc, test_the_wait_and_approval);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_tikv_frame);
	tcase_add_test(tc, test_small_terminal_and_daemon_gone);
	tcase_add_test(tc, test_text_from_the_daemon_cannot_move_the_cursor);
	tcase_add_test(tc, test_chapter_parser);
	tcase_add_test(tc, test_shipped_chapters);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(opdash_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
