/* bench_pd_decode: the streaming /regions decoder (pd_regscan) on a body of
 * 100k and 1M regions shaped like PD's (and pdsim's), from memory, side by
 * side with the cheapest possible pass over the same bytes (counting quote
 * characters): the decoder's own cost, apart from any transfer. The decode
 * runs while the body streams in, so it costs nothing end to end as long as
 * it is faster than the transfer. At 100k it also times the json-c tree
 * decode it replaced. Prints "BENCH|" rows.
 *
 *   build/bench/bench_pd_decode [regions...]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "subjects/tikv/pdclient.h"

#define BD_CHUNK 16384      /* bytes per feed, as libcurl hands them over */
#define BD_RUNS 3           /* median of */
#define BD_TREE_MAX 100000  /* the json-c tree decode is timed up to this size */

struct bd_buf {
	char *p;
	size_t len, cap;
};

static void
bd_add(struct bd_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		if ((b->p = realloc(b->p, b->cap)) == NULL) {
			fprintf(stderr, "bench_pd_decode: out of memory\n");
			exit(1);
		}
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* One region as pdsim writes it: three voters, a leader, keys, stats. */
static void
bd_region(struct bd_buf *b, uint64_t i)
{
	char r[1024];
	uint64_t id = 2 + i * 4, s1 = 1 + i % 3, s2 = 1 + (i + 1) % 3, s3 = 1 + (i + 2) % 3;
	int n = snprintf(r, sizeof(r),
	    "%s{\"id\":%" PRIu64 ",\"start_key\":\"74%016" PRIX64 "\",\"end_key\":\"74%016" PRIX64
	    "\",\"epoch\":{\"conf_ver\":3,\"version\":%" PRIu64 "},\"peers\":["
	    "{\"role_name\":\"Voter\",\"id\":%" PRIu64 ",\"store_id\":%" PRIu64 "},"
	    "{\"role_name\":\"Voter\",\"id\":%" PRIu64 ",\"store_id\":%" PRIu64 "},"
	    "{\"role_name\":\"Voter\",\"id\":%" PRIu64 ",\"store_id\":%" PRIu64 "}],"
	    "\"leader\":{\"role_name\":\"Voter\",\"id\":%" PRIu64 ",\"store_id\":%" PRIu64 "},"
	    "\"cpu_usage\":0,\"written_bytes\":0,\"read_bytes\":0,\"written_keys\":0,"
	    "\"read_keys\":0,\"approximate_size\":1,\"approximate_keys\":1000}",
	    i ? "," : "", id, i, i + 1, i + 1, id + 1, s1, id + 2, s2, id + 3, s3, id + 1, s1);
	bd_add(b, r, (size_t)n);
}

static size_t bd_seen;

static void
bd_count(const struct pd_region_brief *r, void *arg)
{
	(void)r;
	(void)arg;
	bd_seen++;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int64_t
bd_us(void)
{
	return op_mono_ms() * 1000; /* ms resolution is enough for 40+ MB */
}

int
main(int argc, char **argv)
{
	int sizes[8] = {100000, 1000000}, n = 2;

	if (argc > 1) {
		n = 0;
		for (int i = 1; i < argc && n < 8; i++)
			sizes[n++] = atoi(argv[i]);
	}
	for (int s = 0; s < n; s++) {
		struct bd_buf b = {0};
		char head[64];
		int hn = snprintf(head, sizeof(head), "{\"count\":%d,\"regions\":[", sizes[s]);
		bd_add(&b, head, (size_t)hn);
		for (int i = 0; i < sizes[s]; i++)
			bd_region(&b, (uint64_t)i);
		bd_add(&b, "]}", 2);
		int64_t t_dec[BD_RUNS], t_ref[BD_RUNS], t_tree = -1;
		volatile size_t quotes = 0;
		for (int r = 0; r < BD_RUNS; r++) {
			int64_t t0 = bd_us();
			size_t q = 0;
			for (size_t i = 0; i < b.len; i++)
				q += b.p[i] == '"';
			quotes = q;
			t_ref[r] = bd_us() - t0;
			struct pd_regscan sc;
			struct pd_err pe;
			bd_seen = 0;
			t0 = bd_us();
			pd_regscan_init(&sc, bd_count, NULL);
			for (size_t o = 0; o < b.len; o += BD_CHUNK)
				if (pd_regscan_feed(&sc, b.p + o, b.len - o < BD_CHUNK ? b.len - o : BD_CHUNK,
				    &pe) != 0)
					break;
			if (pd_regscan_finish(&sc, &pe) != 0 || bd_seen != (size_t)sizes[s]) {
				fprintf(stderr, "bench_pd_decode: decode failed: %s\n", pe.message);
				return 1;
			}
			t_dec[r] = bd_us() - t0;
		}
		if (sizes[s] <= BD_TREE_MAX) {
			struct pd_regions rs;
			struct pd_err pe;
			int64_t t0 = bd_us();
			if (pd_parse_regions(b.p, b.len, &rs, &pe) == 0) {
				t_tree = bd_us() - t0;
				pd_regions_free(&rs);
			}
		}
		qsort(t_dec, BD_RUNS, sizeof(t_dec[0]), cmp_i64);
		qsort(t_ref, BD_RUNS, sizeof(t_ref[0]), cmp_i64);
		double dec = (double)t_dec[BD_RUNS / 2] / 1000, ref = (double)t_ref[BD_RUNS / 2] / 1000;
		if (ref < 1)
			ref = 1;
		printf("BENCH|decode /regions of %d regions (%.0f MB) from memory|%.0f ms (%.0f MB/s)|"
		    "one vectorized pass over the bytes|%.0f ms|%.2f|decode < transfer time\n",
		    sizes[s], (double)b.len / 1e6, dec, (double)b.len / 1e3 / (dec > 0 ? dec : 1), ref,
		    dec / ref);
		if (t_tree >= 0)
			printf("BENCH|json-c tree decode it replaced, %d regions|%.0f ms|the streaming "
			    "decode|%.0f ms|%.1f|(was the cost)\n", sizes[s], (double)t_tree / 1000, dec,
			    (double)t_tree / 1000 / (dec > 0 ? dec : 1));
		fprintf(stderr, "%d regions: %zu bytes, %zu quotes\n", sizes[s], b.len, (size_t)quotes);
		fflush(stdout);
		free(b.p);
	}
	return 0;
}
