/* rlnode_suspect: drift suspects. A key drifts (Redis's window count differs
 * from what the nodes allowed) only through an attempt this node abandoned
 * (a timeout or a lost connection: the script may run anyway, late) or a
 * fail-open allow (counted here, not in Redis). Every other /check ran the
 * script exactly once and was counted once on each side. So each node marks
 * those keys, and shares them in the RLN_SUSPECT_KEY zset so that every node
 * lists the same keys in GET /api/counters?scope=suspects: an observation
 * then reads a handful of keys at any scale and can vouch for all the rest. */
#include "rlnode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static void *
rln_suspect_new(void)
{
	return calloc(1, sizeof(struct rln_suspect));
}

static void
rln_suspect_pushed(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	char *key = arg;
	struct rln_suspect *s = rln_map_get(&n->suspects, key);

	/* a failure leaves pushed at 0: the next sweep tries again */
	if (s != NULL && r != NULL && r->type == REDIS_REPLY_INTEGER)
		s->pushed = 1;
	free(key);
}

static void
rln_suspect_push(struct rlnode *n, const char *key, struct rln_suspect *s)
{
	char at[24], *k = strdup(key);
	/* GT: a late mark never moves another node's later one back */
	const char *argv[5] = {"ZADD", RLN_SUSPECT_KEY, "GT", at, key};

	if (k == NULL)
		return;
	snprintf(at, sizeof(at), "%lld", (long long)s->at_ms);
	if (rln_call_mgmt(n, RLN_MGMT_TIMEOUT_MS, rln_suspect_pushed, k, 5, argv) != 0)
		free(k);
}

void
rln_suspect_mark(struct rlnode *n, const char *key, int64_t at_ms)
{
	struct rln_suspect *s = rln_map_get_or_add(&n->suspects, key, rln_suspect_new);

	if (s == NULL)
		return;
	if (at_ms > s->at_ms) {
		s->at_ms = at_ms;
		s->pushed = 0;
	}
	if (!s->pushed)
		rln_suspect_push(n, key, s);
}

struct rln_suspect_walk {
	struct rlnode *n;
	int64_t now;
};

static int
rln_suspect_one(const char *key, void *val, void *arg)
{
	struct rln_suspect_walk *w = arg;
	struct rln_suspect *s = val;
	struct rln_limit tmp;
	int64_t keep = rln_limit_for(w->n, key, &tmp)->window_ms + RLN_SUSPECT_GRACE_MS;

	if (s->at_ms < w->now - keep)
		return 1; /* forgotten: its window has long passed */
	if (!s->pushed)
		rln_suspect_push(w->n, key, s);
	return 0;
}

static void
rln_suspect_trimmed(struct rlnode *n, redisReply *r, const char *err, void *arg)
{
	/* best effort: the next sweep trims again */
}

void
rln_suspect_sweep(struct rlnode *n, int64_t now_ms)
{
	struct rln_suspect_walk w = {n, now_ms};
	char lo[24];
	const char *argv[4] = {"ZREMRANGEBYSCORE", RLN_SUSPECT_KEY, "-inf", lo};

	rln_map_each(&n->suspects, rln_suspect_one, &w, free);
	/* the shared set: nothing older than the longest window anyone may use */
	snprintf(lo, sizeof(lo), "(%lld",
	    (long long)(now_ms - RLN_WINDOW_MAX_MS - RLN_SUSPECT_GRACE_MS));
	if (n->have_off)
		rln_call_mgmt(n, RLN_MGMT_TIMEOUT_MS, rln_suspect_trimmed, NULL, 4, argv);
}

int
rln_suspect_recent(struct rlnode *n, const char *key, int64_t at_ms, int64_t window_ms)
{
	const struct rln_suspect *s = rln_map_get(&n->suspects, key);

	return s != NULL && s->at_ms > at_ms - window_ms - RLN_SUSPECT_GRACE_MS;
}
