/* check_pdsim: pdsim as a real process (with real store processes), driven
 * through pdclient: reads, PD's renderers, PD's error bodies, operators,
 * evict-leader, a SIGKILLed store walking Up → Disconnected → Down with its
 * leaders re-elected, a restart, and a 100-store / 100k-region start.
 * No timed assertions: every wait polls a condition with a generous bound.
 * Env: PDSIM_BIN (path to pdsim). */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/http.h"
#include "common/util.h"
#include "subjects/tikv/pdclient.h"

#define POLL_MS 50               /* between condition checks */
#define START_WAIT_MS 30000      /* pdsim up and every store heartbeating */
#define STATE_WAIT_MS 20000      /* a state change that pdsim makes in ~1-3 s */

/* Bounded wait on a condition; fails with the message when it never holds. */
#define WAIT_UNTIL(cond, limit_ms, ...)                                          \
	do {                                                                     \
		int64_t wait_deadline_ = op_mono_ms() + (limit_ms);              \
		while (!(cond)) {                                                \
			ck_assert_msg(op_mono_ms() < wait_deadline_, __VA_ARGS__); \
			op_sleep_ms(POLL_MS);                                    \
		}                                                                \
	} while (0)

struct sim {
	pid_t pid;
	int port;
	int n_stores;
	char dir[64];
	char url[64];
	struct pd_client c;
};

static struct sim g_api, g_fail, g_scale;

/* ----------------------------------------------------------------- raw HTTP */

struct raw {
	long status;
	char ctype[128];
	char *body;
	size_t len;
};

static size_t
raw_write(char *p, size_t sz, size_t n, void *arg)
{
	struct raw *r = arg;
	char *nb = realloc(r->body, r->len + sz * n + 1);

	if (nb == NULL)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

/* One request with libcurl directly, to see the Content-Type PD's renderer set. */
static void
raw_req(const struct sim *s, const char *method, const char *path, const char *body,
    struct raw *r)
{
	char url[256];
	char *ct = NULL;
	CURL *e = curl_easy_init();

	memset(r, 0, sizeof(*r));
	r->body = calloc(1, 1);
	snprintf(url, sizeof(url), "%s%s", s->url, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, raw_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	if (body != NULL)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	CURLcode rc = curl_easy_perform(e);
	ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
	curl_easy_cleanup(e);
}

static void
raw_free(struct raw *r)
{
	free(r->body);
	r->body = NULL;
}

/* ------------------------------------------------------------ pdsim process */

static int
all_stores_up(struct sim *s)
{
	struct pd_stores st;
	struct pd_err e;
	int ok;

	if (pd_get_stores(&s->c, &st, &e) != 0)
		return 0;
	ok = st.count == (size_t)s->n_stores;
	for (size_t i = 0; ok && i < st.count; i++)
		ok = strcmp(st.v[i].state_name, "Up") == 0 && st.v[i].status_address[0] != '\0';
	pd_stores_free(&st);
	return ok;
}

static void
sim_start(struct sim *s, int n_stores, const char *const *args)
{
	const char *bin = getenv("PDSIM_BIN");
	char port_file[128], log_file[128], nstores[16];
	char *argv[64];
	int n = 0;

	ck_assert_msg(bin != NULL, "PDSIM_BIN is not set");
	memset(s, 0, sizeof(*s));
	s->n_stores = n_stores;
	snprintf(s->dir, sizeof(s->dir), "/tmp/check_pdsim.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(s->dir));
	snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
	snprintf(log_file, sizeof(log_file), "%s/pdsim.log", s->dir);
	snprintf(nstores, sizeof(nstores), "%d", n_stores);
	argv[n++] = (char *)bin;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	argv[n++] = "--stores";
	argv[n++] = nstores;
	for (; *args != NULL && n < 62; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	pid_t parent = getpid();
	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		/* pdsim (and through it its stores) must not outlive the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		FILE *f = freopen(log_file, "w", stderr);
		(void)f;
		execv(bin, argv);
		_exit(127);
	}
	/* Port file appears once pdsim listens. */
	FILE *pf = NULL;
	WAIT_UNTIL((pf = fopen(port_file, "r")) != NULL, START_WAIT_MS,
	    "pdsim did not write %s (log: %s)", port_file, log_file);
	ck_assert_int_eq(fscanf(pf, "%d", &s->port), 1);
	fclose(pf);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
	struct pd_err e;
	ck_assert_int_eq(pd_client_init(&s->c, s->url, 30000, 1000, &e), 0);
	WAIT_UNTIL(all_stores_up(s), START_WAIT_MS,
	    "not all %d stores came Up with a status address (log: %s)", n_stores, log_file);
}

static void
sim_stop(struct sim *s)
{
	char path[160];

	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	/* pdsim kills and reaps its stores on SIGTERM; insist if it hangs. */
	for (int i = 0; i < 100 && waitpid(s->pid, NULL, WNOHANG) == 0; i++)
		op_sleep_ms(50);
	if (kill(s->pid, 0) == 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
	snprintf(path, sizeof(path), "%s/port", s->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/pdsim.log", s->dir);
	unlink(path);
	rmdir(s->dir);
}

/* pid and status address of a store process, from GET /pdsim/stores. */
static pid_t
store_pid(struct sim *s, uint64_t id)
{
	struct raw r;
	pid_t pid = 0;

	raw_req(s, "GET", "/pdsim/stores", NULL, &r);
	json_object *o = json_tokener_parse(r.body), *arr, *v;
	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_object_get_ex(o, "stores", &arr));
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *st = json_object_array_get_idx(arr, i);
		if (json_object_object_get_ex(st, "id", &v) && (uint64_t)json_object_get_int64(v) == id &&
		    json_object_object_get_ex(st, "pid", &v))
			pid = (pid_t)json_object_get_int(v);
	}
	json_object_put(o);
	raw_free(&r);
	return pid;
}

static int
store_state_is(struct sim *s, uint64_t id, const char *state)
{
	struct pd_store st;
	struct pd_err e;

	if (pd_get_store(&s->c, id, &st, &e) != 0)
		return 0;
	return strcmp(st.state_name, state) == 0;
}

static int64_t
store_leaders(struct sim *s, uint64_t id)
{
	struct pd_store st;
	struct pd_err e;

	if (pd_get_store(&s->c, id, &st, &e) != 0)
		return -1;
	return st.leader_count;
}

static void api_setup(void)
{
	static const char *const args[] = {"--regions", "100", "--op-ms", "3000",
	    "--balance-interval-ms", "600000", "--down-ms", "3000", NULL};
	sim_start(&g_api, 3, args);
}
static void api_teardown(void) { sim_stop(&g_api); }

/* ------------------------------------------------------------------ reads */

START_TEST(test_reads)
{
	struct sim *s = &g_api;
	struct pd_stores st;
	struct pd_regions rs;
	struct pd_err e;
	int64_t leaders = 0;

	ck_assert_msg(pd_get_stores(&s->c, &st, &e) == 0, "%s", e.message);
	ck_assert_uint_eq(st.count, 3);
	for (size_t i = 0; i < st.count; i++) {
		ck_assert_int_eq(st.v[i].state, PD_STORE_UP);
		ck_assert_str_eq(st.v[i].state_name, "Up");
		ck_assert_int_eq(st.v[i].region_count, 100);
		ck_assert(st.v[i].capacity > 0);
		ck_assert(st.v[i].last_heartbeat > 1000000000000000000LL); /* unix ns */
		leaders += st.v[i].leader_count;
	}
	ck_assert_int_eq(leaders, 100);
	pd_stores_free(&st);

	ck_assert_msg(pd_get_regions(&s->c, &rs, &e) == 0, "%s", e.message);
	ck_assert_uint_eq(rs.count, 100);
	for (size_t i = 0; i < rs.count; i++) {
		const struct pd_region *r = &rs.v[i];
		ck_assert_uint_eq(r->n_peers, 3);
		ck_assert(r->peers[0].store_id != r->peers[1].store_id);
		ck_assert(r->peers[1].store_id != r->peers[2].store_id);
		ck_assert(r->peers[0].store_id != r->peers[2].store_id);
		ck_assert_int_eq(r->has_leader, 1);
		ck_assert_str_eq(r->peers[0].role, "Voter");
	}
	ck_assert_str_eq(rs.v[0].start_key, "");
	ck_assert_str_eq(rs.v[99].end_key, "");
	ck_assert_str_eq(rs.v[0].end_key, rs.v[1].start_key);
	uint64_t rid = rs.v[0].id;
	pd_regions_free(&rs);

	struct pd_region r;
	ck_assert_msg(pd_get_region(&s->c, rid, &r, &e) == 0, "%s", e.message);
	ck_assert_uint_eq(r.id, rid);
	pd_region_free(&r);
	ck_assert_int_eq(pd_get_regions_by_store(&s->c, 2, &rs, &e), 0);
	ck_assert_uint_eq(rs.count, 100);
	pd_regions_free(&rs);
	ck_assert_int_eq(pd_get_regions_by_store(&s->c, 77, &rs, &e), 0); /* no check in PD */
	ck_assert_uint_eq(rs.count, 0);
	pd_regions_free(&rs);

	struct pd_health_list h;
	ck_assert_int_eq(pd_get_health(&s->c, &h, &e), 0);
	ck_assert_uint_eq(h.count, 1);
	ck_assert(h.v[0].member_id > 9223372036854775808ULL); /* exercised above 2^63 */
	ck_assert_int_eq(h.v[0].health, 1);
	pd_health_free(&h);
	struct pd_members m;
	ck_assert_int_eq(pd_get_members(&s->c, &m, &e), 0);
	ck_assert_int_eq(m.has_leader, 1);
	ck_assert(m.cluster_id > (1ULL << 53));
	pd_members_free(&m);
	struct pd_cluster cl;
	ck_assert_int_eq(pd_get_cluster(&s->c, &cl, &e), 0);
	ck_assert_uint_eq(cl.max_peer_count, 3);
	struct pd_cluster_status cs;
	ck_assert_int_eq(pd_get_cluster_status(&s->c, &cs, &e), 0);
	ck_assert_int_eq(cs.is_initialized, 1);
	struct pd_schedule_config sc;
	ck_assert_int_eq(pd_get_schedule_config(&s->c, &sc, &e), 0);
	ck_assert_int_eq(sc.max_store_down_time_ms, 3000);
	ck_assert_uint_eq(sc.leader_schedule_limit, 4);
	pd_schedule_config_free(&sc);
	struct pd_strlist l;
	ck_assert_int_eq(pd_get_schedulers(&s->c, &l, &e), 0);
	ck_assert(pd_strlist_contains(&l, "balance-leader-scheduler"));
	ck_assert(!pd_strlist_contains(&l, "evict-leader-scheduler"));
	pd_strlist_free(&l);
	ck_assert_int_eq(pd_get_operators(&s->c, &l, &e), 0);
	pd_strlist_free(&l);
}
END_TEST

START_TEST(test_renderers)
{
	struct sim *s = &g_api;
	struct raw r;

	/* rd.JSON: indented, trailing newline, application/json; Up has no "state". */
	raw_req(s, "GET", "/pd/api/v1/stores", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.ctype, "application/json; charset=UTF-8");
	ck_assert_msg(strncmp(r.body, "{\n  \"count\": 3,\n  \"stores\": [\n    {\n", 35) == 0, "%s",
	    r.body);
	ck_assert_str_eq(r.body + r.len - 2, "}\n");
	ck_assert_ptr_null(strstr(r.body, "\"state\":"));
	ck_assert_ptr_nonnull(strstr(r.body, "\"state_name\": \"Up\""));
	raw_free(&r);
	/* Region endpoints: compact easyjson, octet-stream, no newline. */
	raw_req(s, "GET", "/pd/api/v1/regions", NULL, &r);
	ck_assert_str_eq(r.ctype, "application/octet-stream");
	ck_assert_msg(strncmp(r.body, "{\"count\":100,\"regions\":[{\"id\":", 30) == 0, "%.80s",
	    r.body);
	ck_assert_ptr_null(strchr(r.body, '\n'));
	ck_assert_ptr_nonnull(strstr(r.body, "\"peers\":[{\"role_name\":\"Voter\",\"id\":"));
	ck_assert_str_eq(r.body + r.len - 2, "]}");
	raw_free(&r);
	raw_req(s, "GET", "/pd/api/v1/region/id/2", NULL, &r);
	ck_assert_str_eq(r.ctype, "application/octet-stream");
	ck_assert(r.body[r.len - 1] == '}');
	raw_free(&r);
	/* /regions/count is the exception: rd.JSON. */
	raw_req(s, "GET", "/pd/api/v1/regions/count", NULL, &r);
	ck_assert_str_eq(r.body, "{\n  \"count\": 100,\n  \"regions\": null\n}\n");
	raw_free(&r);
	/* Success message is a JSON string plus newline. */
	raw_req(s, "POST", "/pd/api/v1/config/schedule", "{\"leader-schedule-limit\":4}", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "\"The config is updated.\"\n");
	raw_free(&r);
	/* Router misses. */
	raw_req(s, "GET", "/pd/api/v1/nope", NULL, &r);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(r.body, "404 page not found\n");
	raw_free(&r);
	raw_req(s, "PUT", "/pd/api/v1/stores", NULL, &r);
	ck_assert_int_eq(r.status, 405);
	ck_assert_uint_eq(r.len, 0);
	raw_free(&r);
	/* Invalid JSON: errcode body with the TiDB-Error-Code header's code. */
	raw_req(s, "POST", "/pd/api/v1/operators", "{bad", &r);
	ck_assert_int_eq(r.status, 400);
	ck_assert_msg(strncmp(r.body, "{\n  \"code\": \"input\",\n  \"msg\": ", 30) == 0, "%s", r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "\"msg\": \"invalid character 'b'"));
	ck_assert_ptr_nonnull(strstr(r.body, "\"Offset\": 2"));
	raw_free(&r);
	raw_req(s, "POST", "/pd/api/v1/operators", "", &r);
	ck_assert_ptr_nonnull(strstr(r.body, "\"msg\": \"unexpected end of JSON input\""));
	ck_assert_ptr_nonnull(strstr(r.body, "\"Offset\": 0"));
	raw_free(&r);
}
END_TEST

/* The client turns each of PD's refusals into a clear error. */
START_TEST(test_errors)
{
	struct sim *s = &g_api;
	struct pd_err e;
	struct pd_store st;
	struct pd_region r;

	ck_assert_int_eq(pd_get_store(&s->c, 99, &st, &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_HTTP);
	ck_assert_int_eq(e.http_status, 404);
	ck_assert_int_eq(e.not_found, 1);
	ck_assert_str_eq(e.code, "PD:core:ErrStoreNotFound");
	ck_assert_msg(strstr(e.message, "store 99 not found") != NULL, "%s", e.message);

	/* v8.5: 200 with a zero region; the client reports not found. */
	ck_assert_int_eq(pd_get_region(&s->c, 1, &r, &e), -1);
	ck_assert_int_eq(e.not_found, 1);

	ck_assert_int_eq(pd_create_operator(&s->c, "{bad", &e), -1);
	ck_assert_int_eq(e.http_status, 400);
	ck_assert_str_eq(e.code, "input");
	ck_assert_msg(strstr(e.message, "invalid character") != NULL, "%s", e.message);

	/* The prior operator's bug: "store_id" instead of "to_store_id". */
	ck_assert_int_eq(pd_create_operator(&s->c,
	    "{\"name\":\"transfer-leader\",\"region_id\":2,\"store_id\":2}", &e), -1);
	ck_assert_int_eq(e.http_status, 400);
	ck_assert_msg(strstr(e.message, ": missing store id to transfer leader to") != NULL, "%s",
	    e.message);

	ck_assert_int_eq(pd_create_operator(&s->c, "{\"name\":\"frobnicate\",\"region_id\":2}", &e),
	    -1);
	ck_assert_int_eq(e.http_status, 400);
	ck_assert_ptr_nonnull(strstr(e.message, "unknown operator"));
	ck_assert_int_eq(pd_create_operator(&s->c, "{\"region_id\":2}", &e), -1);
	ck_assert_ptr_nonnull(strstr(e.message, "missing operator name"));

	ck_assert_int_eq(pd_transfer_leader(&s->c, 2, 99, &e), -1);
	ck_assert_int_eq(e.http_status, 500);
	ck_assert_ptr_nonnull(strstr(e.message, "region has no voter in store 99"));

	ck_assert_int_eq(pd_transfer_leader(&s->c, 1, 2, &e), -1);
	ck_assert_int_eq(e.http_status, 500);
	ck_assert_str_eq(e.code, "PD:region:ErrRegionNotFound");
	ck_assert_int_eq(e.not_found, 1);

	struct pd_op_status op;
	ck_assert_int_eq(pd_get_operator(&s->c, 10, &op, &e), -1);
	ck_assert_str_eq(e.code, "PD:operator:ErrOperatorNotFound");
	ck_assert_int_eq(pd_delete_operator(&s->c, 10, &e), -1);
	ck_assert_int_eq(e.http_status, 500);

	ck_assert_int_eq(pd_remove_scheduler(&s->c, "foo-scheduler", &e), -1);
	ck_assert_int_eq(e.http_status, 404);
	ck_assert_str_eq(e.code, "PD:scheduler:ErrSchedulerNotFound");
	ck_assert_int_eq(pd_add_scheduler(&s->c, "evict-leader-scheduler", 0, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.message, "missing store id"));
	/* Not evicted: PD answers 404 null, which the client counts as done. */
	ck_assert_msg(pd_evict_leader_remove(&s->c, 2, &e) == 0, "%s", e.message);
	ck_assert_int_eq(pd_set_schedule_config(&s->c, "{\"no-such-item\":1}", &e), -1);
	ck_assert_int_eq(e.http_status, 400);
	ck_assert_int_eq(pd_delete_store(&s->c, 1, 0, &e), -1); /* would leave 2 < 3 up */
	ck_assert_str_eq(e.code, "PD:core:ErrStoresNotEnough");
}
END_TEST

static int
op_status_is(struct sim *s, uint64_t region, const char *want)
{
	struct pd_op_status op;
	struct pd_err e;

	return pd_get_operator(&s->c, region, &op, &e) == 0 && strcmp(op.status, want) == 0;
}

static uint64_t
leader_store(struct sim *s, uint64_t region)
{
	struct pd_region r;
	struct pd_err e;
	uint64_t id = 0;

	if (pd_get_region(&s->c, region, &r, &e) != 0)
		return 0;
	if (r.has_leader)
		id = r.leader.store_id;
	pd_region_free(&r);
	return id;
}

START_TEST(test_transfer_leader)
{
	struct sim *s = &g_api;
	struct pd_region r;
	struct pd_err e;
	uint64_t rid = 10, to = 0, other = 0;

	ck_assert_int_eq(pd_get_region(&s->c, rid, &r, &e), 0);
	for (size_t i = 0; i < r.n_peers; i++) {
		if (r.peers[i].store_id == r.leader.store_id)
			continue;
		if (to == 0)
			to = r.peers[i].store_id;
		else
			other = r.peers[i].store_id;
	}
	pd_region_free(&r);
	ck_assert(to != 0 && other != 0);

	ck_assert_msg(pd_transfer_leader(&s->c, rid, to, &e) == 0, "%s", e.message);
	/* One operator per region: PD refuses a second one while it runs. */
	ck_assert_int_eq(pd_transfer_leader(&s->c, rid, other, &e), -1);
	ck_assert_int_eq(e.http_status, 500);
	ck_assert_str_eq(e.code, "PD:operator:ErrAddOperator");
	ck_assert_ptr_nonnull(strstr(e.message, "maybe already have one"));
	ck_assert(op_status_is(s, rid, "RUNNING"));
	struct pd_strlist l;
	ck_assert_int_eq(pd_get_operators(&s->c, &l, &e), 0);
	ck_assert_uint_ge(l.count, 1);
	ck_assert_ptr_nonnull(strstr(l.v[0], "admin-transfer-leader"));
	pd_strlist_free(&l);
	WAIT_UNTIL(op_status_is(s, rid, "SUCCESS"), STATE_WAIT_MS,
	    "transfer-leader on region %" PRIu64 " never reached SUCCESS", rid);
	ck_assert_uint_eq(leader_store(s, rid), to);

	/* Transfer to the current leader builds no step. */
	ck_assert_int_eq(pd_transfer_leader(&s->c, rid, to, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.message, "no operator step is built"));

	/* A running operator can be cancelled. */
	ck_assert_int_eq(pd_transfer_leader(&s->c, rid, other, &e), 0);
	ck_assert_msg(pd_delete_operator(&s->c, rid, &e) == 0, "%s", e.message);
	ck_assert(op_status_is(s, rid, "CANCEL"));
	ck_assert_uint_eq(leader_store(s, rid), to);
}
END_TEST

START_TEST(test_evict_leader)
{
	struct sim *s = &g_api;
	struct pd_err e;
	struct pd_strlist l;

	ck_assert_msg(pd_evict_leader_add(&s->c, 3, &e) == 0, "%s", e.message);
	ck_assert_int_eq(pd_get_schedulers(&s->c, &l, &e), 0);
	ck_assert(pd_strlist_contains(&l, "evict-leader-scheduler"));
	pd_strlist_free(&l);
	WAIT_UNTIL(store_leaders(s, 3) == 0, STATE_WAIT_MS,
	    "evict-leader never drained store 3 (%" PRId64 " leaders)", store_leaders(s, 3));
	/* Leaders may not move onto an evicted store. */
	ck_assert_int_eq(pd_transfer_leader(&s->c, 2, 3, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.message, "target leader is not allowed"));
	ck_assert_msg(pd_evict_leader_remove(&s->c, 3, &e) == 0, "%s", e.message);
	ck_assert_int_eq(pd_get_schedulers(&s->c, &l, &e), 0);
	ck_assert(!pd_strlist_contains(&l, "evict-leader-scheduler"));
	pd_strlist_free(&l);
}
END_TEST

START_TEST(test_config)
{
	struct sim *s = &g_api;
	struct pd_err e;
	struct pd_schedule_config sc;

	ck_assert_msg(pd_set_max_store_down_time(&s->c, "1m", &e) == 0, "%s", e.message);
	ck_assert_int_eq(pd_get_schedule_config(&s->c, &sc, &e), 0);
	ck_assert_int_eq(sc.max_store_down_time_ms, 60000);
	ck_assert_ptr_nonnull(strstr(sc.raw, "\"1m0s\""));
	pd_schedule_config_free(&sc);
	ck_assert_int_eq(pd_set_schedule_config(&s->c, "{\"max-store-down-time\":\"soon\"}", &e), -1);
	ck_assert_int_eq(e.http_status, 400);
	ck_assert_int_eq(pd_set_max_store_down_time(&s->c, "3s", &e), 0);
}
END_TEST

/* ------------------------------------------------------------ store failure */

static void fail_setup(void)
{
	static const char *const args[] = {"--regions", "100", "--heartbeat-ms", "100",
	    "--disconnect-ms", "800", "--down-ms", "2500", "--peer-down-ms", "1500",
	    "--election-ms", "500", "--catchup-ms", "300", "--balance-interval-ms", "600000", NULL};
	sim_start(&g_fail, 3, args);
}
static void fail_teardown(void) { sim_stop(&g_fail); }

static int
no_leader_on(struct sim *s, uint64_t store)
{
	struct pd_regions rs;
	struct pd_err e;
	int ok;

	if (pd_get_regions(&s->c, &rs, &e) != 0)
		return 0;
	ok = rs.count == 100;
	for (size_t i = 0; ok && i < rs.count; i++)
		ok = rs.v[i].has_leader && rs.v[i].leader.store_id != store;
	pd_regions_free(&rs);
	return ok;
}

static int
probe_status(const char *status_address, char **body)
{
	struct op_http_req r = {0};
	char url[160];

	snprintf(url, sizeof(url), "http://%s/metrics", status_address);
	r.url = url;
	r.timeout_ms = 1000;
	if (op_http_do(&r) != 0 || r.status != 200) {
		op_http_req_reset(&r);
		return -1;
	}
	*body = r.resp;
	return 0;
}

START_TEST(test_kill_store)
{
	struct sim *s = &g_fail;
	struct pd_store st;
	struct pd_err e;
	char *metrics = NULL;

	ck_assert_int_eq(pd_get_store(&s->c, 1, &st, &e), 0);
	ck_assert_int_gt(st.leader_count, 0);
	/* The store process serves its own status address with TiKV metrics. */
	WAIT_UNTIL(probe_status(st.status_address, &metrics) == 0 &&
	    strstr(metrics, "tikv_raftstore_region_count{type=\"region\"} 100\n") != NULL,
	    STATE_WAIT_MS, "store 1 status address %s never reported 100 regions",
	    st.status_address);
	ck_assert_ptr_nonnull(strstr(metrics, "tikv_raftstore_region_count{type=\"leader\"} "));
	free(metrics);

	pid_t pid = store_pid(s, 1);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);

	/* A dead process is seen at once on its status address ... */
	ck_assert_int_eq(probe_status(st.status_address, &metrics), -1);
	/* ... while PD needs its thresholds: Disconnected, then Down. */
	WAIT_UNTIL(store_state_is(s, 1, "Disconnected"), STATE_WAIT_MS,
	    "store 1 never became Disconnected");
	WAIT_UNTIL(no_leader_on(s, 1), STATE_WAIT_MS,
	    "regions led by store 1 were not re-elected elsewhere");
	WAIT_UNTIL(store_leaders(s, 1) == 0, STATE_WAIT_MS, "store 1 still counts leaders");
	WAIT_UNTIL(store_state_is(s, 1, "Down"), STATE_WAIT_MS, "store 1 never became Down");

	/* The dead peer is pending and down in its regions. */
	struct pd_regions rs;
	ck_assert_int_eq(pd_get_regions_by_store(&s->c, 1, &rs, &e), 0);
	ck_assert_uint_eq(rs.count, 100); /* 3 stores: nowhere to re-replicate */
	ck_assert_uint_ge(rs.v[0].n_pending, 1);
	ck_assert_uint_ge(rs.v[0].n_down, 1);
	ck_assert_uint_eq(rs.v[0].down_peers[0].peer.store_id, 1);
	uint64_t rid = rs.v[0].id;
	pd_regions_free(&rs);

	/* Transfer-leader to the down store is refused as PD does. */
	ck_assert_int_eq(pd_transfer_leader(&s->c, rid, 1, &e), -1);
	ck_assert_int_eq(e.http_status, 500);
	ck_assert_msg(strstr(e.message, "target leader is not allowed") != NULL, "%s", e.message);

	/* Restart: the store rejoins Up, with no leaders. */
	struct raw r;
	raw_req(s, "POST", "/pdsim/stores/1/restart", NULL, &r);
	ck_assert_msg(r.status == 200, "restart: %ld %s", r.status, r.body);
	raw_free(&r);
	raw_req(s, "POST", "/pdsim/stores/1/restart", NULL, &r);
	ck_assert_int_eq(r.status, 409); /* already running */
	raw_free(&r);
	WAIT_UNTIL(store_state_is(s, 1, "Up"), STATE_WAIT_MS, "restarted store 1 never came Up");
	ck_assert_int_eq(pd_get_store(&s->c, 1, &st, &e), 0);
	ck_assert_int_eq(st.leader_count, 0);
	ck_assert_int_eq(st.region_count, 100);
	ck_assert_int_gt(store_pid(s, 1), 0);
	ck_assert_int_ne(store_pid(s, 1), pid);
	/* And the operator can now move a leader back. */
	WAIT_UNTIL(pd_transfer_leader(&s->c, rid, 1, &e) == 0, STATE_WAIT_MS,
	    "transfer-leader to the returned store refused: %s", e.message);
	WAIT_UNTIL(leader_store(s, rid) == 1, STATE_WAIT_MS, "leader never moved to store 1");
}
END_TEST

/* -------------------------------------------------------------------- scale */

static void scale_setup(void)
{
	static const char *const args[] = {"--regions", "100000", "--heartbeat-ms", "500",
	    "--disconnect-ms", "20000", "--election-ms", "20000", NULL};
	sim_start(&g_scale, 100, args);
}
static void scale_teardown(void) { sim_stop(&g_scale); }

START_TEST(test_scale)
{
	struct sim *s = &g_scale;
	struct pd_regions rs;
	struct pd_stores st;
	struct pd_err e;
	int64_t t0 = op_mono_ms();

	ck_assert_msg(pd_get_regions(&s->c, &rs, &e) == 0, "%s", e.message);
	fprintf(stderr, "check_pdsim: GET /regions with 100000 regions: %" PRId64 " ms\n",
	    op_mono_ms() - t0);
	ck_assert_uint_eq(rs.count, 100000);
	for (size_t i = 0; i < rs.count; i++)
		ck_assert(rs.v[i].n_peers == 3 && rs.v[i].has_leader);
	uint64_t last = rs.v[rs.count - 1].id;
	pd_regions_free(&rs);
	ck_assert_int_eq(pd_get_stores(&s->c, &st, &e), 0);
	ck_assert_uint_eq(st.count, 100);
	int64_t regions = 0;
	for (size_t i = 0; i < st.count; i++)
		regions += st.v[i].region_count;
	ck_assert_int_eq(regions, 300000);
	pd_stores_free(&st);
	struct pd_region r;
	ck_assert_int_eq(pd_get_region(&s->c, last, &r, &e), 0);
	ck_assert_uint_eq(r.id, last);
	pd_region_free(&r);
}
END_TEST

static Suite *
pdsim_suite(void)
{
	Suite *s = suite_create("pdsim");
	TCase *tc = tcase_create("api");

	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, api_setup, api_teardown);
	tcase_add_test(tc, test_reads);
	tcase_add_test(tc, test_renderers);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_transfer_leader);
	tcase_add_test(tc, test_evict_leader);
	tcase_add_test(tc, test_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("failure");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, fail_setup, fail_teardown);
	tcase_add_test(tc, test_kill_store);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, scale_setup, scale_teardown);
	tcase_add_test(tc, test_scale);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pdsim_suite());
	int failed;

	op_http_global_init();
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
