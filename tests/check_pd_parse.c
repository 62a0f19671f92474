/* check_pd_parse: the streaming /regions decoder (pd_regscan) against the
 * tree decoder (pd_parse_regions) on a real PD region body, fed whole and
 * one byte at a time, and its refusal of garbage. No network.
 * Env: PD_FIXTURES_DIR (the PD fixtures). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subjects/tikv/pdclient.h"

#define MAX_SEEN 64

struct seen {
	size_t n;
	struct pd_region_brief v[MAX_SEEN];
};

static void
collect(const struct pd_region_brief *r, void *arg)
{
	struct seen *s = arg;

	if (s->n < MAX_SEEN)
		s->v[s->n++] = *r;
}

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
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert(buf != NULL);
	ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A /regions body: the real region, a leaderless one with pending and down
 * peers (PD's {"role_name":""} leader), and the real one again. */
static char *
regions_body(size_t *len)
{
	size_t flen;
	char *fix = read_fixture("pd-api-v1-region-id-2.json", &flen);
	static const char synth[] =
	    "{\"id\": 9300000000000000001, \"start_key\": \"7A\\u0041\", \"end_key\": \"\","
	    " \"epoch\": {\"conf_ver\": 5, \"version\": 1},"
	    " \"peers\": [{\"id\": 7, \"store_id\": 1}, {\"id\": 8, \"store_id\": 2, \"role_name\": "
	    "\"Learner\"}, {\"id\": 9, \"store_id\": 4}],"
	    " \"leader\": {\"role_name\": \"\"},"
	    " \"down_peers\": [{\"peer\": {\"id\": 9, \"store_id\": 4}, \"down_seconds\": 30}],"
	    " \"pending_peers\": [{\"id\": 8, \"store_id\": 2}], \"approximate_size\": 1, \"x\": -1.5e2}";
	char *b = malloc(2 * flen + sizeof(synth) + 64);

	ck_assert(b != NULL);
	*len = (size_t)sprintf(b, "{\"count\": 3, \"regions\": [%s, %s, %s]}\n", fix, synth, fix);
	free(fix);
	return b;
}

static void
assert_matches_tree(const char *body, size_t len, const struct seen *s)
{
	struct pd_regions rs;
	struct pd_err pe;

	ck_assert_msg(pd_parse_regions(body, len, &rs, &pe) == 0, "%s", pe.message);
	ck_assert_uint_eq(rs.count, s->n);
	for (size_t i = 0; i < rs.count; i++) {
		const struct pd_region *r = &rs.v[i];
		const struct pd_region_brief *b = &s->v[i];
		ck_assert_uint_eq(b->id, r->id);
		ck_assert_int_eq(b->has_leader, r->has_leader);
		if (r->has_leader)
			ck_assert_uint_eq(b->leader_store, r->leader.store_id);
		ck_assert_uint_eq(b->n_peers, r->n_peers);
		for (size_t k = 0; k < r->n_peers; k++)
			ck_assert_uint_eq(b->peers[k], r->peers[k].store_id);
		ck_assert_uint_eq(b->n_pending, r->n_pending);
		for (size_t k = 0; k < r->n_pending; k++)
			ck_assert_uint_eq(b->pending[k], r->pending_peers[k].store_id);
		ck_assert_uint_eq(b->n_down, r->n_down);
		for (size_t k = 0; k < r->n_down; k++)
			ck_assert_uint_eq(b->down[k], r->down_peers[k].peer.store_id);
	}
	pd_regions_free(&rs);
}

START_TEST(scan_whole_matches_tree)
{
	size_t len;
	char *body = regions_body(&len);
	struct seen s = {0};
	struct pd_regscan sc;
	struct pd_err pe;

	pd_regscan_init(&sc, collect, &s);
	ck_assert_msg(pd_regscan_feed(&sc, body, len, &pe) == 0, "%s", pe.message);
	ck_assert_msg(pd_regscan_finish(&sc, &pe) == 0, "%s", pe.message);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_uint_eq(s.v[0].id, 2);
	ck_assert_uint_eq(s.v[0].leader_store, 3);
	ck_assert_int_eq(s.v[1].has_leader, 0);
	ck_assert_uint_eq(s.v[1].id, 9300000000000000001ULL);
	ck_assert_uint_eq(s.v[1].down[0], 4);
	assert_matches_tree(body, len, &s);
	free(body);
}
END_TEST

START_TEST(scan_bytewise_matches_tree)
{
	size_t len;
	char *body = regions_body(&len);
	struct seen s = {0};
	struct pd_regscan sc;
	struct pd_err pe;

	pd_regscan_init(&sc, collect, &s);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(pd_regscan_feed(&sc, body + i, 1, &pe) == 0, "byte %zu: %s", i,
		    pe.message);
	ck_assert_msg(pd_regscan_finish(&sc, &pe) == 0, "%s", pe.message);
	assert_matches_tree(body, len, &s);
	free(body);
}
END_TEST

static const char *const garbage[] = {
	"",
	"{",
	"[]",
	"null",
	"{\"count\": 1, \"regions\": []}",          /* count does not match */
	"{\"regions\": {}}",                        /* not an array */
	"{\"regions\": [1]}",                       /* a region that is not an object */
	"{\"regions\": [{\"peers\": []}]}",         /* no id */
	"{\"regions\": [{\"id\": \"2\"}]}",         /* id of the wrong type */
	"{\"regions\": [{\"id\": 2,}]}",            /* trailing comma */
	"{\"regions\": [{\"id\": 02}]}",            /* leading zero */
	"{\"regions\": [{\"id\": -2}]}",            /* negative id */
	"{\"regions\": [{\"id\": 2}]} x",           /* trailing garbage */
	"{\"regions\": [{\"id\": 2, \"peers\": [{\"store_id\": 1.5}]}]}",
	"{\"regions\": [{\"id\": 2, \"start_key\": \"a\nb\"}]}",
	"{\"regions\": [{\"id\": tru}]}",
	"{\"count\": 1 \"regions\": []}",
	"<html>502 Bad Gateway</html>",
};

START_TEST(scan_refuses_garbage)
{
	const char *g = garbage[_i];
	struct pd_regscan sc;
	struct pd_err pe;

	pd_regscan_init(&sc, NULL, NULL);
	int rc = pd_regscan_feed(&sc, g, strlen(g), &pe);
	if (rc == 0)
		rc = pd_regscan_finish(&sc, &pe);
	ck_assert_msg(rc == -1, "accepted: %s", g);
	ck_assert_str_eq(pe.kind, PD_ERR_PARSE);
	ck_assert_msg(strstr(pe.message, "regions") != NULL, "message: %s", pe.message);
}
END_TEST

START_TEST(scan_empty_lists)
{
	static const char *const ok[] = {"{\"count\": 0, \"regions\": null}", "{\"count\":0}",
	    "{\"regions\":[]}"};
	struct pd_regscan sc;
	struct pd_err pe;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		pd_regscan_init(&sc, NULL, NULL);
		ck_assert_msg(pd_regscan_feed(&sc, ok[i], strlen(ok[i]), &pe) == 0 &&
		    pd_regscan_finish(&sc, &pe) == 0, "%s: %s", ok[i], pe.message);
		ck_assert_uint_eq(sc.nregions, 0);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pd_parse");
	TCase *tc = tcase_create("regscan");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, scan_whole_matches_tree);
	tcase_add_test(tc, scan_bytewise_matches_tree);
	tcase_add_loop_test(tc, scan_refuses_garbage, 0, (int)(sizeof(garbage) / sizeof(garbage[0])));
	tcase_add_test(tc, scan_empty_lists);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
