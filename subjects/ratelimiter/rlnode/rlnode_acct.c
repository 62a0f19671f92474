/* rlnode_acct: this node's own log of what it allowed and blocked per key.
 * Timestamps are Redis time (from the script's reply), so the log can be
 * compared entry for entry with the Redis window. */
#include "rlnode.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define RLN_ACCT_INIT_CAP 16

void *
rln_acct_new(void)
{
	return calloc(1, sizeof(struct rln_acct));
}

void
rln_acct_free(void *p)
{
	struct rln_acct *a = p;

	if (a == NULL)
		return;
	free(a->allowed);
	free(a->blocked);
	free(a);
}

static void *
rln_grow(void *p, size_t *cap, size_t need, size_t elsz)
{
	size_t nc;
	void *q;

	if (need <= *cap)
		return p;
	nc = *cap ? *cap * 2 : RLN_ACCT_INIT_CAP;
	while (nc < need)
		nc *= 2;
	q = realloc(p, nc * elsz);
	if (q == NULL)
		fatal("out of memory");
	*cap = nc;
	return q;
}

void
rln_acct_allow(struct rln_acct *a, int64_t ts_ms, int64_t cost)
{
	size_t i;

	a->allowed = rln_grow(a->allowed, &a->capa, a->na + 1, sizeof(*a->allowed));
	/* Replies arrive nearly in order; insertion from the back is O(1) then. */
	i = a->na;
	while (i > 0 && a->allowed[i - 1].ts_ms > ts_ms)
		i--;
	memmove(&a->allowed[i + 1], &a->allowed[i], (a->na - i) * sizeof(*a->allowed));
	a->allowed[i].ts_ms = ts_ms;
	a->allowed[i].cost = cost;
	a->na++;
}

void
rln_acct_block(struct rln_acct *a, int64_t ts_ms)
{
	size_t i;

	a->blocked = rln_grow(a->blocked, &a->capb, a->nbl + 1, sizeof(*a->blocked));
	i = a->nbl;
	while (i > 0 && a->blocked[i - 1] > ts_ms)
		i--;
	memmove(&a->blocked[i + 1], &a->blocked[i], (a->nbl - i) * sizeof(*a->blocked));
	a->blocked[i] = ts_ms;
	a->nbl++;
}

static void
rln_acct_drop_allowed(struct rln_acct *a, int64_t upto)
{
	size_t k = 0;

	while (k < a->na && a->allowed[k].ts_ms <= upto)
		k++;
	if (k > 0) {
		memmove(a->allowed, &a->allowed[k], (a->na - k) * sizeof(*a->allowed));
		a->na -= k;
	}
}

void
rln_acct_reset(struct rln_acct *a, int64_t reset_at_ms)
{
	if (reset_at_ms <= a->reset_at_ms)
		return;
	a->reset_at_ms = reset_at_ms;
	rln_acct_drop_allowed(a, reset_at_ms);
}

void
rln_acct_prune(struct rln_acct *a, int64_t now_ms, int64_t window_ms)
{
	size_t k = 0;

	rln_acct_drop_allowed(a, now_ms - window_ms - RLN_LOCAL_SLACK_MS);
	while (k < a->nbl && a->blocked[k] <= now_ms - RLN_RECENT_MS - RLN_LOCAL_SLACK_MS)
		k++;
	if (k > 0) {
		memmove(a->blocked, &a->blocked[k], (a->nbl - k) * sizeof(*a->blocked));
		a->nbl -= k;
	}
}

int64_t
rln_acct_sum(const struct rln_acct *a, int64_t lo, int64_t hi)
{
	int64_t sum = 0;
	size_t i;

	for (i = 0; i < a->na; i++)
		if (a->allowed[i].ts_ms > lo && a->allowed[i].ts_ms <= hi)
			sum += a->allowed[i].cost;
	return sum;
}

int64_t
rln_acct_blocked_in(const struct rln_acct *a, int64_t lo, int64_t hi)
{
	int64_t c = 0;
	size_t i;

	for (i = 0; i < a->nbl; i++)
		if (a->blocked[i] > lo && a->blocked[i] <= hi)
			c++;
	return c;
}
