/* rl_wire: what both sides of the rate limiter's HTTP wire agree on.
 * rlnode (the service, subjects/ratelimiter/rlnode/) serves these paths and
 * enforces these limits; the operator-side adapter (rl_*.c) calls the paths
 * and sizes its buffers by the same limits. Nothing else belongs here: each
 * side keeps its own internals. */
#ifndef RL_WIRE_H
#define RL_WIRE_H

#define RLW_KEY_MAX 200          /* bytes in a rate-limit key */
#define RLW_NODE_ID_MAX 64       /* bytes in a node id */
#define RLW_COST_MAX 1000        /* largest cost of one POST /check */
#define RLW_LIMIT_MAX 1000000000LL /* largest limit PUT /api/limits/{key} accepts */

/* Paths. The {key} ones are a prefix, the percent-encoded key, then a suffix. */
#define RLW_PATH_CHECK "/check"
#define RLW_PATH_HEALTH "/health"
#define RLW_PATH_METRICS "/metrics"
#define RLW_PATH_NODES "/api/nodes"
#define RLW_PATH_COUNTERS "/api/counters"          /* GET ?at=MS */
#define RLW_PATH_LIMITS "/api/limits"              /* GET: every limit */
#define RLW_PATH_LIMIT_PFX "/api/limits/"          /* PUT|DELETE /api/limits/{key} */
#define RLW_PATH_COUNTER_PFX "/api/counters/"      /* POST /api/counters/{key}/reset */
#define RLW_PATH_RESET_SFX "/reset"
#define RLW_PATH_RESYNC "/api/resync"

#endif
