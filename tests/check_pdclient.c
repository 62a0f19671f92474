/* check_pdclient: pdclient's parsers on every real PD fixture, its error
 * mapping for every PD error body form, garbage and truncated bodies, the
 * exact request bytes it sends, and transport failures.
 * Env: PD_FIXTURES_DIR (tests/fixtures/pd). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/http.h"
#include "subjects/tikv/pdclient.h"

#define GIB 1073741824.0
#define MIB 1048576.0

static char *
read_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("PD_FIXTURES_DIR");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	ck_assert_msg(dir != NULL, "PD_FIXTURES_DIR is not set");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open fixture %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert(buf != NULL);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static uint64_t
bytes_of(double v, double unit)
{
	return (uint64_t)(v * unit + 0.5);
}

/* ------------------------------------------------------------- fixtures */

static void
check_stores_fixture(const char *buf, size_t len)
{
	struct pd_stores s;
	struct pd_err e;

	ck_assert_msg(pd_parse_stores(buf, len, &s, &e) == 0, "stores: %s", e.message);
	ck_assert_uint_eq(s.count, 4);
	/* Listed in PD's map order 4, 20, 1, 5. */
	ck_assert_uint_eq(s.v[0].id, 4);
	ck_assert_uint_eq(s.v[1].id, 20);
	ck_assert_uint_eq(s.v[2].id, 1);
	ck_assert_uint_eq(s.v[3].id, 5);
	const struct pd_store *st = pd_stores_find(&s, 4);
	ck_assert_ptr_nonnull(st);
	/* "state" is absent (omitempty for Up = 0). */
	ck_assert_int_eq(st->state, PD_STORE_UP);
	ck_assert_str_eq(st->state_name, "Up");
	ck_assert_int_eq(st->node_state, 1);
	ck_assert_str_eq(st->address, "basic-tikv-5gzwgj.basic-tikv-peer.default:20160");
	ck_assert_str_eq(st->status_address, "basic-tikv-5gzwgj.basic-tikv-peer.default:20180");
	ck_assert_str_eq(st->version, "8.1.0");
	ck_assert_int_eq(st->start_timestamp, 1735095903);
	ck_assert_int_eq(st->last_heartbeat, 1735098083480549971LL);
	ck_assert_uint_eq(st->capacity, bytes_of(311.7, GIB));
	ck_assert_uint_eq(st->available, bytes_of(222.1, GIB));
	ck_assert_uint_eq(st->used_size, bytes_of(290.7, MIB));
	ck_assert_int_eq(st->leader_count, 17);
	ck_assert_int_eq(st->region_count, 60);
	ck_assert_int_eq(st->pending_peer_count, 0); /* absent: omitempty */
	ck_assert_int_eq(st->leader_size, 17);
	ck_assert(st->leader_weight == 1.0);
	/* "36m20.480549971s" */
	ck_assert_int_eq(st->uptime_ms, 36 * 60000 + 20480);
	ck_assert_uint_eq(st->n_labels, 0);
	st = pd_stores_find(&s, 20);
	ck_assert_uint_eq(st->n_labels, 1);
	ck_assert_str_eq(st->labels[0].key, "engine");
	ck_assert_str_eq(st->labels[0].value, "tiflash");
	ck_assert_uint_eq(st->used_size, 1);
	ck_assert_int_eq(pd_stores_find(&s, 1)->leader_count, 25);
	ck_assert_ptr_null(pd_stores_find(&s, 2));
	pd_stores_free(&s);
}

static void
check_store4_fixture(const char *buf, size_t len)
{
	struct pd_store st;
	struct pd_err e;

	ck_assert_msg(pd_parse_store(buf, len, &st, &e) == 0, "store: %s", e.message);
	ck_assert_uint_eq(st.id, 4);
	ck_assert_str_eq(st.state_name, "Up");
	ck_assert_int_eq(st.state, PD_STORE_UP);
	ck_assert_int_eq(st.last_heartbeat, 1735114832382630989LL);
	ck_assert_uint_eq(st.capacity, bytes_of(309.4, GIB));
	ck_assert_uint_eq(st.available, bytes_of(218.8, GIB));
	ck_assert_uint_eq(st.used_size, bytes_of(296.7, MIB));
	ck_assert_int_eq(st.region_count, 5);
	ck_assert_int_eq(st.leader_count, 0);
	/* "5h15m29.382630989s" */
	ck_assert_int_eq(st.uptime_ms, (5 * 3600 + 15 * 60 + 29) * 1000LL + 382);
}

static void
check_health_fixture(const char *buf, size_t len)
{
	struct pd_health_list h;
	struct pd_err e;

	ck_assert_msg(pd_parse_health(buf, len, &h, &e) == 0, "health: %s", e.message);
	ck_assert_uint_eq(h.count, 3);
	ck_assert_str_eq(h.v[0].name, "basic-7axwci");
	ck_assert_uint_eq(h.v[0].member_id, 1428427862495950874ULL);
	ck_assert_uint_eq(h.v[1].member_id, 2548954049902922308ULL);
	/* Above 2^63: must survive exactly (no double, no int64). */
	ck_assert_uint_eq(h.v[2].member_id, 12818309996638325969ULL);
	ck_assert_uint_eq(h.v[2].n_client_urls, 1);
	ck_assert_str_eq(h.v[2].client_urls[0], "http://basic-pd-0qt9e9.basic-pd-peer.default:2379");
	ck_assert_int_eq(h.v[2].health, 1);
	pd_health_free(&h);
}

static void
check_cluster_fixture(const char *buf, size_t len)
{
	struct pd_cluster c;
	struct pd_err e;

	ck_assert_msg(pd_parse_cluster(buf, len, &c, &e) == 0, "cluster: %s", e.message);
	ck_assert_uint_eq(c.id, 7452180154224557728ULL); /* above 2^53 */
	ck_assert_uint_eq(c.max_peer_count, 3);
}

static void
check_region2_fixture(const char *buf, size_t len)
{
	struct pd_region r;
	struct pd_err e;

	ck_assert_msg(pd_parse_region(buf, len, &r, &e) == 0, "region: %s", e.message);
	ck_assert_uint_eq(r.id, 2);
	ck_assert_str_eq(r.start_key, "7480000000000000FF1D00000000000000F8");
	ck_assert_str_eq(r.end_key, "7480000000000000FF1F00000000000000F8");
	ck_assert_uint_eq(r.conf_ver, 1);
	ck_assert_uint_eq(r.version, 15);
	ck_assert_uint_eq(r.n_peers, 1);
	ck_assert_uint_eq(r.peers[0].id, 40);
	ck_assert_uint_eq(r.peers[0].store_id, 3);
	ck_assert_str_eq(r.peers[0].role, "Voter"); /* no role, no role_name: Voter */
	ck_assert_int_eq(r.has_leader, 1);
	ck_assert_uint_eq(r.leader.store_id, 3);
	ck_assert_uint_eq(r.n_down, 0);
	ck_assert_uint_eq(r.n_pending, 0);
	ck_assert_int_eq(r.approximate_size, 1);
	pd_region_free(&r);
}

static void
check_schedulers_fixture(const char *buf, size_t len)
{
	struct pd_strlist l;
	struct pd_err e;

	ck_assert_msg(pd_parse_strlist(buf, len, &l, &e) == 0, "schedulers: %s", e.message);
	ck_assert_uint_eq(l.count, 5);
	ck_assert_str_eq(l.v[0], "balance-leader-scheduler");
	ck_assert(pd_strlist_contains(&l, "evict-leader-scheduler"));
	ck_assert(!pd_strlist_contains(&l, "grant-leader-scheduler"));
	pd_strlist_free(&l);
}

static void
check_errbody_fixture(const char *buf, size_t len)
{
	struct pd_err e;

	pd_parse_error("POST /pd/api/v1/operators", 400, buf, len, &e);
	ck_assert_str_eq(e.kind, PD_ERR_HTTP);
	ck_assert_int_eq(e.http_status, 400);
	ck_assert_str_eq(e.code, "input");
	ck_assert_int_eq(e.not_found, 0);
	ck_assert_msg(strstr(e.message, "invalid character 'o' in literal false") != NULL,
	    "message: %s", e.message);
	ck_assert_msg(strstr(e.message, "HTTP 400") != NULL, "message: %s", e.message);
}

static void
check_transfer_region_request(const char *buf, size_t len)
{
	/* Our builder must produce a body equal (as JSON) to PD's own test input. */
	static const uint64_t ids[] = {2, 3};
	static const char *const roles[] = {"follower", "leader"};
	char body[256];
	json_object *want, *got;

	(void)len;
	ck_assert_int_gt(pd_build_transfer_region_body(body, sizeof(body), 1, ids, roles, 2), 0);
	want = json_tokener_parse(buf);
	got = json_tokener_parse(body);
	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(got);
	ck_assert_msg(json_object_equal(want, got), "built %s", body);
	json_object_put(want);
	json_object_put(got);
}

static const struct {
	const char *file;
	void (*check)(const char *buf, size_t len);
} fixtures[] = {
	{"pd-api-v1-stores.json", check_stores_fixture},
	{"pd-api-v1-store-4.json", check_store4_fixture},
	{"pd-api-v1-health.json", check_health_fixture},
	{"pd-api-v1-cluster.json", check_cluster_fixture},
	{"pd-api-v1-region-id-2.json", check_region2_fixture},
	{"pd-api-v1-schedulers.json", check_schedulers_fixture},
	{"pd-api-v1-error-invalid-json-body.json", check_errbody_fixture},
	{"pd-api-v1-operators-POST-transfer-region.request.json", check_transfer_region_request},
};

START_TEST(test_every_fixture)
{
	/* Walks the directory, so a new fixture without a check fails here. */
	const char *dir = getenv("PD_FIXTURES_DIR");
	DIR *d;
	struct dirent *de;
	int seen = 0;

	ck_assert_msg(dir != NULL, "PD_FIXTURES_DIR is not set");
	d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 5, ".json") != 0)
			continue;
		size_t i;
		for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
			if (strcmp(fixtures[i].file, de->d_name) == 0)
				break;
		ck_assert_msg(i < sizeof(fixtures) / sizeof(fixtures[0]),
		    "fixture %s has no check in check_pdclient.c", de->d_name);
		size_t len;
		char *buf = read_fixture(de->d_name, &len);
		fixtures[i].check(buf, len);
		free(buf);
		seen++;
	}
	closedir(d);
	ck_assert_int_eq(seen, (int)(sizeof(fixtures) / sizeof(fixtures[0])));
}
END_TEST

/* Every proper prefix of a fixture is a truncated body: always a parse error. */
START_TEST(test_truncated_fixtures)
{
	static const char *const files[] = {"pd-api-v1-stores.json", "pd-api-v1-store-4.json",
	    "pd-api-v1-health.json", "pd-api-v1-cluster.json", "pd-api-v1-region-id-2.json",
	    "pd-api-v1-schedulers.json"};

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		size_t len;
		char *full = read_fixture(files[f], &len);
		while (len > 0 && (full[len - 1] == '\n' || full[len - 1] == ' '))
			len--;
		for (size_t n = 0; n < len; n++) {
			char *buf = malloc(n + 1); /* exact size so ASan sees overreads */
			memcpy(buf, full, n);
			buf[n] = '\0';
			struct pd_err e;
			struct pd_stores ss;
			struct pd_store st;
			struct pd_health_list h;
			struct pd_cluster c;
			struct pd_region r;
			struct pd_strlist l;
			int rc;
			switch (f) {
			case 0: rc = pd_parse_stores(buf, n, &ss, &e); break;
			case 1: rc = pd_parse_store(buf, n, &st, &e); break;
			case 2: rc = pd_parse_health(buf, n, &h, &e); break;
			case 3: rc = pd_parse_cluster(buf, n, &c, &e); break;
			case 4: rc = pd_parse_region(buf, n, &r, &e); break;
			default: rc = pd_parse_strlist(buf, n, &l, &e); break;
			}
			ck_assert_msg(rc == -1, "%s truncated at %zu parsed", files[f], n);
			ck_assert_msg(strcmp(e.kind, PD_ERR_PARSE) == 0, "%s at %zu: kind %s (%s)",
			    files[f], n, e.kind, e.message);
			ck_assert(e.message[0] != '\0');
			free(buf);
		}
		free(full);
	}
}
END_TEST

/* --------------------------------------------------------------- scalars */

START_TEST(test_bytesize)
{
	static const struct {
		const char *in;
		double v, unit;
	} ok[] = {
		{"311.7GiB", 311.7, GIB}, {"937 GiB", 937, GIB}, {"1.2TiB", 1.2, GIB * 1024},
		{"0B", 0, 1}, {"1B", 1, 1}, {"290.7MiB", 290.7, MIB}, {"1023KiB", 1023, 1024},
		{"1.5PiB", 1.5, GIB * 1024 * 1024}, {"1.5 TB", 1.5, GIB * 1024}, {"12345", 12345, 1},
	};
	static const char *const bad[] = {"", "GiB", "abc", "12XB", "-1B", "1.2.3GiB", "1GiBx",
	    "1 G i B", "nanB", "1e400B"};
	uint64_t b;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_msg(pd_parse_bytesize(ok[i].in, &b) == 0, "%s rejected", ok[i].in);
		ck_assert_msg(b == bytes_of(ok[i].v, ok[i].unit), "%s -> %" PRIu64, ok[i].in, b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(pd_parse_bytesize(bad[i], &b) == -1, "\"%s\" accepted", bad[i]);
	ck_assert_int_eq(pd_parse_bytesize(NULL, &b), -1);
}
END_TEST

START_TEST(test_go_duration)
{
	static const struct {
		const char *in;
		int64_t ns;
	} ok[] = {
		{"30m0s", 1800000000000LL}, {"1h0m0s", 3600000000000LL},
		{"1h2m3.5s", 3723500000000LL}, {"2.5ms", 2500000LL}, {"10ms", 10000000LL},
		{"10us", 10000LL}, {"10\xc2\xb5s", 10000LL}, {"7ns", 7}, {"0s", 0}, {"0", 0},
		{"36m20.480549971s", 2180480549971LL}, {"5h15m29.382630989s", 18929382630989LL},
		{"-1.5s", -1500000000LL}, {"30m", 1800000000000LL}, {"48h0m0s", 172800000000000LL},
	};
	static const char *const bad[] = {"", "5", "1x", "m", "1h2", "s", "--1s", "1.2.3s", "1 s"};
	int64_t ns;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_msg(pd_parse_go_duration_ns(ok[i].in, &ns) == 0, "%s rejected", ok[i].in);
		ck_assert_msg(ns == ok[i].ns, "%s -> %" PRId64, ok[i].in, ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(pd_parse_go_duration_ns(bad[i], &ns) == -1, "\"%s\" accepted", bad[i]);
}
END_TEST

/* ----------------------------------------------------------- body bytes */

START_TEST(test_transfer_leader_body)
{
	char buf[256];
	int n = pd_build_transfer_leader_body(buf, sizeof(buf), 5, 2);

	ck_assert_str_eq(buf, "{\"name\":\"transfer-leader\",\"region_id\":5,\"to_store_id\":2}");
	ck_assert_int_eq(n, (int)strlen(buf));
	/* Ids above 2^63 go out exactly. */
	pd_build_transfer_leader_body(buf, sizeof(buf), 18446744073709551614ULL,
	    9223372036854775809ULL);
	ck_assert_str_eq(buf, "{\"name\":\"transfer-leader\",\"region_id\":18446744073709551614,"
			      "\"to_store_id\":9223372036854775809}");
	ck_assert_ptr_null(strstr(buf, "\"store_id\"")); /* the prior operator's bug */
	ck_assert_int_eq(pd_build_transfer_leader_body(buf, 10, 5, 2), -1);

	pd_build_scheduler_body(buf, sizeof(buf), "evict-leader-scheduler", 4);
	ck_assert_str_eq(buf, "{\"name\":\"evict-leader-scheduler\",\"store_id\":4}");
	pd_build_peer_body(buf, sizeof(buf), "add-peer", 1, 3);
	ck_assert_str_eq(buf, "{\"name\":\"add-peer\",\"region_id\":1,\"store_id\":3}");
	pd_build_peer_body(buf, sizeof(buf), "remove-peer", 1, 2);
	ck_assert_str_eq(buf, "{\"name\":\"remove-peer\",\"region_id\":1,\"store_id\":2}");
	pd_build_transfer_peer_body(buf, sizeof(buf), 1, 1, 3);
	ck_assert_str_eq(buf,
	    "{\"name\":\"transfer-peer\",\"region_id\":1,\"from_store_id\":1,\"to_store_id\":3}");
	/* Names are never spliced into JSON unescaped. */
	ck_assert_int_eq(pd_build_peer_body(buf, sizeof(buf), "x\",\"y", 1, 2), -1);
	ck_assert_int_eq(pd_build_scheduler_body(buf, sizeof(buf), "", 2), -1);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_error_forms)
{
	static const struct {
		long status;
		const char *body;
		const char *code;
		int not_found;
		const char *substr;
	} t[] = {
		/* (a) JSON string with a normalized PD error */
		{404, "\"[PD:core:ErrStoreNotFound]store 7 not found\"\n", "PD:core:ErrStoreNotFound",
		    1, "store 7 not found"},
		{500, "\"[PD:operator:ErrAddOperator]failed to add operator, maybe already have one\"\n",
		    "PD:operator:ErrAddOperator", 0, "maybe already have one"},
		{500, "\"[PD:region:ErrRegionNotFound]region 9 not found\"\n",
		    "PD:region:ErrRegionNotFound", 1, "region 9 not found"},
		{500, "\"[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start "
		      "TiKV first\"\n", "PD:cluster:ErrNotBootstrapped", 0, "not bootstrapped"},
		/* (b) JSON string without a code */
		{400, "\"missing store id to transfer leader to\"\n", "", 0,
		    "missing store id to transfer leader to"},
		{400, "\"unknown operator\"\n", "", 0, "unknown operator"},
		/* (c) errcode object */
		{400, "{\n  \"code\": \"input\",\n  \"msg\": \"unexpected end of JSON input\",\n"
		      "  \"data\": {\n    \"Offset\": 0\n  }\n}\n", "input", 0,
		    "input: unexpected end of JSON input"},
		/* (d) plain text from http.Error */
		{503, "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader\n",
		    "PD:apiutil:ErrRedirectNoLeader", 0, "redirect finds no leader"},
		/* (e) router misses */
		{404, "404 page not found\n", "", 1, "404 page not found"},
		{405, "", "", 0, "empty body"},
		/* evict-leader removal answers null */
		{404, "null\n", "", 1, "null body"},
		/* other JSON shapes and garbage */
		{500, "[1,2]", "", 0, "[1,2]"},
		{502, "<html><body>Bad Gateway</body></html>", "", 0, "Bad Gateway"},
		{500, "{\"error\":\"boom\"}", "", 0, "boom"},
	};
	struct pd_err e;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		pd_parse_error("GET /x", t[i].status, t[i].body, strlen(t[i].body), &e);
		ck_assert_str_eq(e.kind, PD_ERR_HTTP);
		ck_assert_int_eq(e.http_status, (int)t[i].status);
		ck_assert_msg(strcmp(e.code, t[i].code) == 0, "case %zu: code \"%s\"", i, e.code);
		ck_assert_msg(e.not_found == t[i].not_found, "case %zu: not_found %d", i,
		    e.not_found);
		ck_assert_msg(strstr(e.message, t[i].substr) != NULL, "case %zu: message \"%s\"", i,
		    e.message);
		ck_assert_msg(strncmp(e.message, "GET /x: HTTP ", 13) == 0, "case %zu: %s", i,
		    e.message);
	}
	/* Binary garbage: a clean, printable message. */
	static const char junk[] = "\x01\x02\xff\xfe\n\x1b[31mred";
	pd_parse_error("GET /x", 500, junk, sizeof(junk) - 1, &e);
	for (const char *p = e.message; *p; p++)
		ck_assert_msg(*p >= 0x20 && *p < 0x7f, "unprintable byte in \"%s\"", e.message);
	pd_parse_error("GET /x", 500, NULL, 0, &e);
	ck_assert_ptr_nonnull(strstr(e.message, "empty body"));
}
END_TEST

START_TEST(test_garbage_bodies)
{
	static const char *const bodies[] = {
		"", " ", "garbage", "{", "[", "\"str\"", "42", "true", "{\"count\":",
		"\x00\x01\x02", "{\"count\":1,\"stores\":[{\"store\":{\"id\":\"4\"}}]}",
		"{\"count\":1,\"stores\":[{\"store\":{\"id\":-4}}]}",
		"{\"count\":1,\"stores\":[{\"store\":{\"id\":18446744073709551616}}]}",
		"{\"count\":1,\"stores\":[{\"store\":{\"id\":1.5}}]}",
		"{\"count\":2,\"stores\":[{\"store\":{\"id\":1}}]}",
		"{\"count\":1,\"stores\":[7]}",
		"{\"count\":1,\"stores\":[{\"status\":{}}]}",
		"{\"count\":1,\"stores\":[{\"store\":{\"id\":1},\"status\":{\"capacity\":\"lots\"}}]}",
		"{\"count\":1,\"stores\":[{\"store\":{\"id\":1},\"status\":{\"uptime\":\"forever\"}}]}",
		"{\"count\":1,\"stores\":[{\"store\":{\"id\":1,\"address\":5}}]}",
		"{\"count\":1,\"stores\":{}}",
		"{\"a\":1}{\"b\":2}",
	};
	struct pd_stores s;
	struct pd_err e;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		size_t len = i == 9 ? 3 : strlen(bodies[i]);
		int rc = pd_parse_stores(bodies[i], len, &s, &e);
		ck_assert_msg(rc == -1, "body %zu accepted", i);
		ck_assert_msg(strcmp(e.kind, PD_ERR_PARSE) == 0, "body %zu: kind %s", i, e.kind);
		ck_assert(e.message[0] != '\0');
		ck_assert_ptr_null(s.v);
	}
	/* The other parsers on the wrong shapes. */
	struct pd_region r;
	struct pd_regions rs;
	struct pd_health_list h;
	struct pd_members m;
	struct pd_cluster c;
	struct pd_cluster_status cs;
	struct pd_schedule_config sc;
	struct pd_strlist l;
	struct pd_op_status op;
	ck_assert_int_eq(pd_parse_region("[]", 2, &r, &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_PARSE);
	ck_assert_int_eq(pd_parse_region("{\"id\":\"2\"}", 10, &r, &e), -1);
	ck_assert_int_eq(pd_parse_region("{\"id\":2,\"peers\":[1]}", 20, &r, &e), -1);
	ck_assert_int_eq(pd_parse_regions("{\"count\":1,\"regions\":[{}]}", 26, &rs, &e), -1);
	ck_assert_int_eq(pd_parse_regions("{\"count\":1,\"regions\":[]}", 24, &rs, &e), -1);
	ck_assert_int_eq(pd_parse_health("{}", 2, &h, &e), -1);
	ck_assert_int_eq(pd_parse_health("[{\"name\":\"x\"}]", 14, &h, &e), -1);
	ck_assert_int_eq(pd_parse_members("[]", 2, &m, &e), -1);
	ck_assert_int_eq(pd_parse_cluster("{\"max_peer_count\":3}", 20, &c, &e), -1);
	ck_assert_int_eq(pd_parse_cluster_status("\"x\"", 3, &cs, &e), -1);
	ck_assert_int_eq(pd_parse_schedule_config("{\"max-store-down-time\":\"soon\"}", 31, &sc, &e),
	    -1);
	ck_assert_int_eq(pd_parse_schedule_config("{\"leader-schedule-limit\":\"4\"}", 29, &sc, &e),
	    -1);
	ck_assert_int_eq(pd_parse_strlist("[\"a\",1]", 7, &l, &e), -1);
	ck_assert_int_eq(pd_parse_strlist("{}", 2, &l, &e), -1);
	ck_assert_int_eq(pd_parse_op_status("\"hello\"", 7, &op, &e), -1);
	ck_assert_int_eq(pd_parse_op_status("[]", 2, &op, &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_PARSE);
}
END_TEST

START_TEST(test_region_shapes)
{
	/* PD v8.5 compact easyjson region with a learner, a pending and a down peer. */
	static const char v85[] =
	    "{\"id\":18446744073709551610,\"start_key\":\"7480\",\"end_key\":\"\","
	    "\"epoch\":{\"conf_ver\":5,\"version\":1},\"peers\":[{\"role_name\":\"Voter\",\"id\":3,"
	    "\"store_id\":1},{\"role_name\":\"Voter\",\"id\":4,\"store_id\":2},{\"role_name\":"
	    "\"Learner\",\"is_learner\":true,\"id\":5,\"store_id\":3,\"role\":1}],\"leader\":"
	    "{\"role_name\":\"Voter\",\"id\":3,\"store_id\":1},\"down_peers\":[{\"peer\":"
	    "{\"role_name\":\"Voter\",\"id\":4,\"store_id\":2},\"down_seconds\":601}],"
	    "\"pending_peers\":[{\"role_name\":\"Voter\",\"id\":4,\"store_id\":2}],\"cpu_usage\":0,"
	    "\"written_bytes\":0,\"read_bytes\":0,\"written_keys\":0,\"read_keys\":0,"
	    "\"approximate_size\":96,\"approximate_keys\":960000}";
	struct pd_region r;
	struct pd_err e;

	ck_assert_msg(pd_parse_region(v85, strlen(v85), &r, &e) == 0, "%s", e.message);
	ck_assert_uint_eq(r.id, 18446744073709551610ULL);
	ck_assert_uint_eq(r.n_peers, 3);
	ck_assert_str_eq(r.peers[2].role, "Learner");
	ck_assert_str_eq(r.peers[0].role, "Voter");
	ck_assert_uint_eq(r.n_down, 1);
	ck_assert_uint_eq(r.down_peers[0].peer.store_id, 2);
	ck_assert_uint_eq(r.down_peers[0].down_seconds, 601);
	ck_assert_uint_eq(r.n_pending, 1);
	ck_assert_uint_eq(r.pending_peers[0].id, 4);
	ck_assert_int_eq(r.approximate_keys, 960000);
	pd_region_free(&r);

	/* Pre-v7.3 shape: role int only; 1 is a learner. */
	static const char old[] = "{\"id\":7,\"peers\":[{\"id\":8,\"store_id\":1,\"role\":1,"
				  "\"is_learner\":true}],\"leader\":{\"role_name\":\"\"}}";
	ck_assert_int_eq(pd_parse_region(old, strlen(old), &r, &e), 0);
	ck_assert_str_eq(r.peers[0].role, "Learner");
	ck_assert_int_eq(r.has_leader, 0); /* {"role_name":""}: no leader */
	ck_assert_str_eq(r.start_key, "");
	pd_region_free(&r);

	/* v7.6-v8.5 "not found": a zero region; ≤v7.5: null. */
	static const char zero[] = "{\"id\":0,\"start_key\":\"\",\"end_key\":\"\",\"leader\":"
				   "{\"role_name\":\"\"},\"cpu_usage\":0,\"approximate_size\":0}";
	ck_assert_int_eq(pd_parse_region(zero, strlen(zero), &r, &e), 0);
	ck_assert_uint_eq(r.id, 0);
	pd_region_free(&r);
	ck_assert_int_eq(pd_parse_region("null\n", 5, &r, &e), -1);
	ck_assert_int_eq(e.not_found, 1);

	/* Regions list, and an empty one. */
	static const char list[] = "{\"count\":0,\"regions\":[]}";
	struct pd_regions rs;
	ck_assert_int_eq(pd_parse_regions(list, strlen(list), &rs, &e), 0);
	ck_assert_uint_eq(rs.count, 0);
	pd_regions_free(&rs);
}
END_TEST

START_TEST(test_store_states)
{
	static const char body[] =
	    "{\"count\":2,\"stores\":[{\"store\":{\"id\":9223372036854775809,\"state\":1,"
	    "\"node_state\":2},\"status\":{\"capacity\":\"0B\",\"available\":\"0B\","
	    "\"pending_peer_count\":3}},{\"store\":{\"id\":2,\"state\":2,\"state_name\":"
	    "\"Tombstone\",\"physically_destroyed\":true}}]}";
	struct pd_stores s;
	struct pd_err e;

	ck_assert_msg(pd_parse_stores(body, strlen(body), &s, &e) == 0, "%s", e.message);
	ck_assert_uint_eq(s.v[0].id, 9223372036854775809ULL);
	ck_assert_str_eq(s.v[0].state_name, "Offline"); /* derived from state */
	ck_assert_int_eq(s.v[0].pending_peer_count, 3);
	ck_assert_str_eq(s.v[1].state_name, "Tombstone");
	ck_assert_int_eq(s.v[1].physically_destroyed, 1);
	pd_stores_free(&s);

	struct pd_op_status op;
	static const char ops[] = "\"status: RUNNING, operator: admin-transfer-leader {transfer "
				  "leader: store 1 to 2} (kind:admin,leader, region:2(1, 5))\"\n";
	ck_assert_int_eq(pd_parse_op_status(ops, strlen(ops), &op, &e), 0);
	ck_assert_str_eq(op.status, "RUNNING");
	ck_assert_int_eq(pd_parse_op_status("\"status: SUCCESS, operator: x\"", 30, &op, &e), 0);
	ck_assert_str_eq(op.status, "SUCCESS");

	struct pd_strlist l;
	ck_assert_int_eq(pd_parse_strlist("null\n", 5, &l, &e), 0); /* nil slice */
	ck_assert_uint_eq(l.count, 0);

	struct pd_schedule_config sc;
	static const char cfg[] = "{\n  \"max-store-down-time\": \"30m0s\",\n"
				  "  \"leader-schedule-limit\": 4,\n  \"replica-schedule-limit\": 64\n}\n";
	ck_assert_int_eq(pd_parse_schedule_config(cfg, strlen(cfg), &sc, &e), 0);
	ck_assert_int_eq(sc.max_store_down_time_ms, 1800000);
	ck_assert_uint_eq(sc.leader_schedule_limit, 4);
	ck_assert_uint_eq(sc.replica_schedule_limit, 64);
	ck_assert_ptr_nonnull(strstr(sc.raw, "30m0s"));
	pd_schedule_config_free(&sc);

	struct pd_members m;
	static const char mem[] = "{\"header\":{\"cluster_id\":7452180154224557728},\"members\":"
				  "[{\"name\":\"pd-0\",\"member_id\":12818309996638325969,\"client_urls\":"
				  "[\"http://pd-0:2379\"]}],\"leader\":{\"name\":\"pd-0\",\"member_id\":"
				  "12818309996638325969}}";
	ck_assert_int_eq(pd_parse_members(mem, strlen(mem), &m, &e), 0);
	ck_assert_uint_eq(m.cluster_id, 7452180154224557728ULL);
	ck_assert_uint_eq(m.count, 1);
	ck_assert_uint_eq(m.v[0].member_id, 12818309996638325969ULL);
	ck_assert_int_eq(m.has_leader, 1);
	ck_assert_uint_eq(m.leader.member_id, 12818309996638325969ULL);
	pd_members_free(&m);
}
END_TEST

/* -------------------------------------------------- client over the wire */

/* A one-shot HTTP server in a child process: accepts one connection, sends
 * the request bytes it got to a pipe, answers with `response` (or nothing,
 * when response is NULL, to provoke a timeout). */
struct canned {
	pid_t pid;
	int port;
	int pipe_rd;
};

static void client_for(struct pd_client *c, int port, int64_t timeout_ms);

/* Also points client c at the new server. */
static void
canned_start(struct canned *cs, const char *response, struct pd_client *client, int64_t timeout_ms)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, p[2];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	cs->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pipe(p), 0);
	cs->pid = fork();
	ck_assert_int_ge(cs->pid, 0);
	if (cs->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		int c = accept(fd, NULL, NULL);
		char req[8192];
		size_t got = 0;
		/* Read headers, then Content-Length bytes of body. */
		for (;;) {
			ssize_t n = read(c, req + got, sizeof(req) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			req[got] = '\0';
			char *end = strstr(req, "\r\n\r\n");
			if (end == NULL)
				continue;
			char *cl = strcasestr(req, "Content-Length:");
			size_t want = cl ? (size_t)atol(cl + 15) : 0;
			if (got >= (size_t)(end + 4 - req) + want)
				break;
		}
		if (write(p[1], req, got) < 0)
			_exit(1);
		close(p[1]);
		if (response == NULL) {
			sleep(30); /* never answer */
			_exit(0);
		}
		if (write(c, response, strlen(response)) < 0)
			_exit(1);
		shutdown(c, SHUT_WR);
		char drain[256];
		while (read(c, drain, sizeof(drain)) > 0)
			;
		_exit(0);
	}
	close(fd);
	close(p[1]);
	cs->pipe_rd = p[0];
	client_for(client, cs->port, timeout_ms);
}

/* Returns the request the server saw (malloc'd) and reaps the child. */
static char *
canned_finish(struct canned *cs)
{
	char *buf = calloc(1, 8192);
	size_t got = 0;
	ssize_t n;

	while ((n = read(cs->pipe_rd, buf + got, 8191 - got)) > 0)
		got += (size_t)n;
	close(cs->pipe_rd);
	kill(cs->pid, SIGKILL);
	waitpid(cs->pid, NULL, 0);
	return buf;
}

static void
client_for(struct pd_client *c, int port, int64_t timeout_ms)
{
	char url[64];
	struct pd_err e;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	ck_assert_int_eq(pd_client_init(c, url, timeout_ms, 500, &e), 0);
	ck_assert(c->base_url[strlen(c->base_url) - 1] != '/');
}

/* An HTTP/1.1 answer with a correct Content-Length. */
static const char *
resp(const char *status, const char *ctype, const char *body)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\nContent-Type: %s\r\nConnection: close\r\n"
	    "Content-Length: %zu\r\n\r\n%s", status, ctype, strlen(body), body);
	return buf;
}

#define CT_JSON "application/json; charset=UTF-8"

START_TEST(test_wire_transfer_leader)
{
	struct canned cs;
	struct pd_client c;
	struct pd_err e;
	char ok[512];

	snprintf(ok, sizeof(ok), "%s", resp("200 OK", CT_JSON, "\"The operator is created.\"\n"));

	canned_start(&cs, ok, &c, 2000);
	ck_assert_msg(pd_transfer_leader(&c, 5, 2, &e) == 0, "%s", e.message);
	char *req = canned_finish(&cs);
	ck_assert_msg(strncmp(req, "POST /pd/api/v1/operators HTTP/1.1\r\n", 36) == 0, "%s", req);
	ck_assert_ptr_nonnull(strcasestr(req, "Content-Type: application/json\r\n"));
	char *body = strstr(req, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	ck_assert_str_eq(body + 4, "{\"name\":\"transfer-leader\",\"region_id\":5,\"to_store_id\":2}");
	free(req);

	canned_start(&cs, ok, &c, 2000);
	ck_assert_int_eq(pd_evict_leader_add(&c, 4, &e), 0);
	req = canned_finish(&cs);
	ck_assert_ptr_nonnull(strstr(req, "POST /pd/api/v1/schedulers "));
	ck_assert_str_eq(strstr(req, "\r\n\r\n") + 4,
	    "{\"name\":\"evict-leader-scheduler\",\"store_id\":4}");
	free(req);

	/* Removal: DELETE .../evict-leader-scheduler-4; PD's 404 null counts as done. */
	canned_start(&cs, resp("404 Not Found", CT_JSON, "null\n"), &c, 2000);
	ck_assert_msg(pd_evict_leader_remove(&c, 4, &e) == 0, "%s", e.message);
	req = canned_finish(&cs);
	ck_assert_msg(strncmp(req, "DELETE /pd/api/v1/schedulers/evict-leader-scheduler-4 HTTP/1.1",
	    61) == 0, "%s", req);
	free(req);

	/* max-store-down-time goes through POST /config/schedule. */
	canned_start(&cs, ok, &c, 2000);
	ck_assert_int_eq(pd_set_max_store_down_time(&c, "1m", &e), 0);
	req = canned_finish(&cs);
	ck_assert_ptr_nonnull(strstr(req, "POST /pd/api/v1/config/schedule "));
	ck_assert_str_eq(strstr(req, "\r\n\r\n") + 4, "{\"max-store-down-time\":\"1m\"}");
	free(req);
	ck_assert_int_eq(pd_set_max_store_down_time(&c, "soon", &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_INVALID);

	/* DELETE /store/{id}?force */
	canned_start(&cs, ok, &c, 2000);
	ck_assert_int_eq(pd_delete_store(&c, 7, 1, &e), 0);
	req = canned_finish(&cs);
	ck_assert_ptr_nonnull(strstr(req, "DELETE /pd/api/v1/store/7?force HTTP/1.1"));
	free(req);
}
END_TEST

START_TEST(test_wire_errors)
{
	struct canned cs;
	struct pd_client c;
	struct pd_err e;
	struct pd_stores s;
	struct pd_region r;

	/* 404 JSON-string error */
	canned_start(&cs, resp("404 Not Found", CT_JSON,
	    "\"[PD:core:ErrStoreNotFound]store 7 not found\"\n"), &c, 2000);
	struct pd_store st;
	ck_assert_int_eq(pd_get_store(&c, 7, &st, &e), -1);
	free(canned_finish(&cs));
	ck_assert_str_eq(e.kind, PD_ERR_HTTP);
	ck_assert_int_eq(e.http_status, 404);
	ck_assert_int_eq(e.not_found, 1);
	ck_assert_str_eq(e.code, "PD:core:ErrStoreNotFound");
	ck_assert_msg(strstr(e.message, "GET /pd/api/v1/store/7: HTTP 404: "
	    "[PD:core:ErrStoreNotFound]store 7 not found") != NULL, "%s", e.message);

	/* 200 with a truncated body */
	canned_start(&cs, resp("200 OK", CT_JSON, "{\"count\":4,\""), &c, 2000);
	ck_assert_int_eq(pd_get_stores(&c, &s, &e), -1);
	free(canned_finish(&cs));
	ck_assert_str_eq(e.kind, PD_ERR_PARSE);
	ck_assert_msg(strstr(e.message, "GET /pd/api/v1/stores") != NULL, "%s", e.message);

	/* 200 octet-stream zero region (PD v8.5 "not found") */
	canned_start(&cs, resp("200 OK", "application/octet-stream",
	    "{\"id\":0,\"start_key\":\"\",\"end_key\":\"\",\"leader\":{\"role_name\":\"\"}}"), &c, 2000);
	ck_assert_int_eq(pd_get_region(&c, 999, &r, &e), -1);
	free(canned_finish(&cs));
	ck_assert_int_eq(e.not_found, 1);
	ck_assert_msg(strstr(e.message, "region 999 not found") != NULL, "%s", e.message);

	/* 503 plain text */
	canned_start(&cs, resp("503 Service Unavailable", "text/plain; charset=utf-8",
	    "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader\n"), &c, 2000);
	ck_assert_int_eq(pd_get_stores(&c, &s, &e), -1);
	free(canned_finish(&cs));
	ck_assert_int_eq(e.http_status, 503);
	ck_assert_str_eq(e.code, "PD:apiutil:ErrRedirectNoLeader");

	/* Not HTTP at all */
	canned_start(&cs, "SSH-2.0-OpenSSH_9.2\r\n", &c, 2000);
	ck_assert_int_eq(pd_get_stores(&c, &s, &e), -1);
	free(canned_finish(&cs));
	ck_assert_msg(strcmp(e.kind, PD_ERR_TRANSPORT) == 0 || strcmp(e.kind, PD_ERR_PARSE) == 0 ||
	    strcmp(e.kind, PD_ERR_HTTP) == 0, "kind %s", e.kind);
	ck_assert(e.message[0] != '\0');

	/* No answer: timeout */
	canned_start(&cs, NULL, &c, 300);
	ck_assert_int_eq(pd_get_stores(&c, &s, &e), -1);
	free(canned_finish(&cs));
	ck_assert_msg(strcmp(e.kind, PD_ERR_TIMEOUT) == 0, "kind %s: %s", e.kind, e.message);
	ck_assert_int_eq(e.http_status, 0);
}
END_TEST

START_TEST(test_transport_errors)
{
	struct pd_client c;
	struct pd_err e;
	struct pd_stores s;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	/* A port that was just free: connection refused. */
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	client_for(&c, ntohs(sa.sin_port), 1000);
	ck_assert_int_eq(pd_get_stores(&c, &s, &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_TRANSPORT);
	ck_assert_int_eq(e.http_status, 0);
	ck_assert_msg(strstr(e.message, "GET /pd/api/v1/stores") != NULL, "%s", e.message);

	ck_assert_int_eq(pd_client_init(&c, "ftp://x", 0, 0, &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_INVALID);
	ck_assert_int_eq(pd_client_init(&c, NULL, 0, 0, &e), -1);
	ck_assert_int_eq(pd_client_init(&c, "http://pd:2379///", 0, 0, &e), 0);
	ck_assert_str_eq(c.base_url, "http://pd:2379");
	ck_assert_int_eq(c.timeout_ms, PD_DEFAULT_TIMEOUT_MS);
	ck_assert_int_eq(pd_remove_scheduler(&c, "../../x", &e), -1);
	ck_assert_str_eq(e.kind, PD_ERR_INVALID);
}
END_TEST

static Suite *
pdclient_suite(void)
{
	Suite *s = suite_create("pdclient");
	TCase *tc = tcase_create("parse");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_every_fixture);
	tcase_add_test(tc, test_truncated_fixtures);
	tcase_add_test(tc, test_bytesize);
	tcase_add_test(tc, test_go_duration);
	tcase_add_test(tc, test_transfer_leader_body);
	tcase_add_test(tc, test_error_forms);
	tcase_add_test(tc, test_garbage_bodies);
	tcase_add_test(tc, test_region_shapes);
	tcase_add_test(tc, test_store_states);
	suite_add_tcase(s, tc);
	tc = tcase_create("wire");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_wire_transfer_leader);
	tcase_add_test(tc, test_wire_errors);
	tcase_add_test(tc, test_transport_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pdclient_suite());
	int failed;

	op_http_global_init();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
