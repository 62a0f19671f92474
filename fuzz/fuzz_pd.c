/* libFuzzer target for PD's JSON (subjects/tikv/pd_parse.c): every decoder
 * of a PD answer, and the streaming /regions scanner fed in two pieces, on
 * the same bytes. Seeds: tests/fixtures/pd. Run it with
 *   scripts/fuzz.sh pd 60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "subjects/tikv/pdclient.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
count_region(const struct pd_region_brief *r, void *arg)
{
	size_t *n = arg;

	if (r->n_peers > PD_BRIEF_PEERS_MAX || r->n_pending > PD_BRIEF_PEERS_MAX ||
	    r->n_down > PD_BRIEF_PEERS_MAX)
		__builtin_trap();
	(*n)++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct pd_err err;
	char *s;

	memset(&err, 0, sizeof(err));
	{
		struct pd_stores v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_stores(buf, size, &v, &err) == 0)
			pd_stores_free(&v);
	}
	{
		struct pd_store v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_store(buf, size, &v, &err) == 0)
			pd_store_free(&v);
	}
	{
		struct pd_regions v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_regions(buf, size, &v, &err) == 0)
			pd_regions_free(&v);
	}
	{
		struct pd_region v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_region(buf, size, &v, &err) == 0)
			pd_region_free(&v);
	}
	{
		struct pd_health_list v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_health(buf, size, &v, &err) == 0)
			pd_health_free(&v);
	}
	{
		struct pd_members v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_members(buf, size, &v, &err) == 0)
			pd_members_free(&v);
	}
	{
		struct pd_cluster v;
		memset(&v, 0, sizeof(v));
		pd_parse_cluster(buf, size, &v, &err);
	}
	{
		struct pd_cluster_status v;
		memset(&v, 0, sizeof(v));
		pd_parse_cluster_status(buf, size, &v, &err);
	}
	{
		struct pd_schedule_config v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_schedule_config(buf, size, &v, &err) == 0)
			pd_schedule_config_free(&v);
	}
	{
		struct pd_strlist v;
		memset(&v, 0, sizeof(v));
		if (pd_parse_strlist(buf, size, &v, &err) == 0)
			pd_strlist_free(&v);
	}
	{
		struct pd_op_status v;
		memset(&v, 0, sizeof(v));
		pd_parse_op_status(buf, size, &v, &err);
	}
	{
		uint64_t ids[8];
		size_t n = 0;
		if (pd_parse_evicted(buf, size, ids, 8, &n, &err) == 0 && n > 8)
			__builtin_trap();
	}
	pd_parse_error("GET /fuzz", 500, buf, size, &err);
	{
		struct pd_regscan sc;
		size_t nreg = 0, half = size / 2;
		pd_regscan_init(&sc, count_region, &nreg);
		if (pd_regscan_feed(&sc, buf, half, &err) == 0 &&
		    pd_regscan_feed(&sc, buf + half, size - half, &err) == 0)
			pd_regscan_finish(&sc, &err);
	}
	/* The text scalars PD writes: sizes ("311.7GiB") and Go durations. */
	if ((s = malloc(size + 1)) != NULL) {
		uint64_t bytes;
		int64_t ns;
		memcpy(s, data, size);
		s[size] = '\0';
		pd_parse_bytesize(s, &bytes);
		pd_parse_go_duration_ns(s, &ns);
		free(s);
	}
	return 0;
}
