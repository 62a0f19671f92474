/* etcd: an etcd v3 client over its JSON gateway (POST /v3/...).
 *
 * There is no well-kept C client for etcd v3's gRPC API; its grpc-gateway
 * serves every unary call as JSON at /v3/<service>/<method> (etcd >= 3.4).
 * Keys and values travel base64-encoded and every int64 as a decimal string.
 * Proto3 JSON omits default values, so a missing field means 0/false/empty
 * (a txn whose compare failed has no "succeeded"; a keepalive on an expired
 * lease has no "TTL").
 *
 * Three layers:
 *   - builders (etcd_build_*) and one parser (etcd_parse): pure functions,
 *     unit-tested without a server;
 *   - a synchronous transport over libcurl (etcd_call), for workers, which
 *     may block;
 *   - the endpoint list and its rotation (struct etcd_client), shared by the
 *     synchronous transport and by asynchronous callers that run the request
 *     themselves (the supervisor, on its event loop). */
#ifndef OP_ETCD_H
#define OP_ETCD_H

#include <stddef.h>
#include <stdint.h>

#define ETCD_MAX_ENDPOINTS 8          /* URLs in one [ha] etcd list */
#define ETCD_URL_MAX 256              /* bytes of one endpoint URL */
#define ETCD_KEY_MAX 1024             /* bytes of a key we build or accept */
#define ETCD_VALUE_MAX (64u << 10)    /* bytes of a value we accept (our records are small) */
#define ETCD_MAX_KVS 4096             /* kvs parsed from one answer; more is an error */
#define ETCD_TIMEOUT_MS 1500          /* default per-request total timeout */
#define ETCD_CONNECT_TIMEOUT_MS 500   /* default per-request connect timeout */

/* Gateway paths (etcd 3.4 serves both /v3/ and /v3beta/; 3.5 only /v3/). */
#define ETCD_PATH_GRANT "/v3/lease/grant"
#define ETCD_PATH_KEEPALIVE "/v3/lease/keepalive"
#define ETCD_PATH_REVOKE "/v3/lease/revoke"
#define ETCD_PATH_RANGE "/v3/kv/range"
#define ETCD_PATH_PUT "/v3/kv/put"
#define ETCD_PATH_DELETE "/v3/kv/deleterange"
#define ETCD_PATH_TXN "/v3/kv/txn"

/* What went wrong with one call, when something did. */
#define ETCD_ERRKINDS(X) \
	X(ETCD_OK, "ok")                 \
	X(ETCD_E_TRANSPORT, "transport") /* no HTTP answer: refused, timed out */ \
	X(ETCD_E_SERVER, "server")       /* etcd answered {"error":...} or a non-2xx status */ \
	X(ETCD_E_PARSE, "parse")         /* an answer we cannot read */ \
	X(ETCD_E_ARG, "argument")        /* a request we refused to build */

enum etcd_errkind {
#define X(id, name) id,
	ETCD_ERRKINDS(X)
#undef X
	ETCD_NERRKINDS
};
const char *etcd_errkind_name(enum etcd_errkind k);

/* gRPC status codes etcd returns in "code" that callers act on. */
#define ETCD_GRPC_NOT_FOUND 5       /* e.g. "requested lease not found" */
#define ETCD_GRPC_UNAVAILABLE 14    /* no leader, server stopping */

/* One key-value as etcd returns it (key and value decoded). */
struct etcd_kv {
	char *key;            /* NUL-terminated */
	char *value;          /* NUL-terminated; value_len excludes the NUL */
	size_t value_len;
	int64_t create_rev, mod_rev, version, lease;
};

/* The parsed answer of any call; fields a call does not return stay 0. */
struct etcd_resp {
	enum etcd_errkind kind;
	long http_status;
	int code;             /* gRPC code of an error answer */
	char error[256];      /* etcd's error message, or ours */
	int64_t revision;     /* header.revision: the store's revision */
	int64_t lease_id, ttl; /* grant, keepalive (ttl 0: the lease is gone) */
	int succeeded;        /* txn: every compare held */
	int64_t deleted;      /* deleterange */
	struct etcd_kv *kvs;  /* range, and every range inside a txn, in order */
	size_t nkvs;
	int64_t count;        /* range: keys matching, which may exceed nkvs */
};
void etcd_resp_free(struct etcd_resp *r);

/* The calls, so etcd_parse knows what to expect. */
enum etcd_call { ETCD_GRANT, ETCD_KEEPALIVE, ETCD_REVOKE, ETCD_RANGE, ETCD_PUT, ETCD_DELETE,
	ETCD_TXN };
const char *etcd_call_path(enum etcd_call c);

/* ---- base64 (standard alphabet, padded), as the gateway wants ---- */
/* Returns a malloc'd NUL-terminated encoding. */
char *etcd_b64_encode(const void *data, size_t len);
/* Decodes into a malloc'd NUL-terminated buffer; -1 on bad input. */
int etcd_b64_decode(const char *s, char **out, size_t *outlen);

/* ---- request builders: each returns a malloc'd JSON body, or NULL with
 * err set for an argument we refuse (empty or oversized key) ---- */
char *etcd_build_grant(int64_t ttl_s, char *err, size_t errlen);
char *etcd_build_keepalive(int64_t lease_id, char *err, size_t errlen);
char *etcd_build_revoke(int64_t lease_id, char *err, size_t errlen);
/* prefix: every key that starts with key (range_end = key with its last byte + 1). */
char *etcd_build_range(const char *key, int prefix, char *err, size_t errlen);
char *etcd_build_put(const char *key, const char *value, size_t value_len, int64_t lease,
    char *err, size_t errlen);
char *etcd_build_delete(const char *key, int prefix, char *err, size_t errlen);

enum etcd_target { ETCD_T_VERSION, ETCD_T_CREATE, ETCD_T_MOD, ETCD_T_VALUE, ETCD_T_LEASE };
enum etcd_result { ETCD_R_EQUAL, ETCD_R_GREATER, ETCD_R_LESS, ETCD_R_NOT_EQUAL };
struct etcd_cmp {
	const char *key;
	enum etcd_target target;
	enum etcd_result result;
	int64_t num;          /* version, create/mod revision or lease */
	const char *value;    /* ETCD_T_VALUE */
	size_t value_len;     /* 0 means strlen(value) */
};
enum etcd_opkind { ETCD_OP_RANGE, ETCD_OP_PUT, ETCD_OP_DELETE };
struct etcd_op {
	enum etcd_opkind kind;
	const char *key;
	int prefix;           /* range/delete: the whole prefix */
	const char *value;    /* put */
	size_t value_len;     /* 0 means strlen(value) */
	int64_t lease;        /* put: 0 for none */
};
char *etcd_build_txn(const struct etcd_cmp *cmp, size_t ncmp, const struct etcd_op *success,
    size_t nsuccess, const struct etcd_op *failure, size_t nfailure, char *err, size_t errlen);

/* The election's transaction: if key does not exist, put value under lease;
 * else read it. Succeeded: our term is resp.revision. Failed: resp.kvs[0]
 * is the holder (its create_rev is the holder's term). */
char *etcd_build_campaign(const char *key, const char *value, int64_t lease, char *err,
    size_t errlen);
/* The fencing check: succeeds only if key exists with create_revision ==
 * term (a deleted and re-created key has a new create_revision). Reads the
 * key on failure so the caller can say who holds it now. */
char *etcd_build_fence(const char *key, int64_t term, char *err, size_t errlen);

/* ---- the parser ----
 * Fills r from one answer (status 0 means no HTTP answer arrived; terr is
 * then the transport error). Returns 0 for a good answer, -1 with r->kind
 * and r->error set otherwise. Never crashes on hostile bytes. */
int etcd_parse(enum etcd_call call, long http_status, const char *body, size_t len,
    const char *terr, struct etcd_resp *r);

/* ---- endpoints ---- */
struct etcd_client {
	char urls[ETCD_MAX_ENDPOINTS][ETCD_URL_MAX]; /* without a trailing '/' */
	size_t n;
	size_t cur;           /* the endpoint to try first: the last that answered */
	int64_t timeout_ms, connect_timeout_ms;
};
/* Parses "http://h:p[,http://h2:p2...]" (http or https, host and port
 * required, no path). -1 with err saying which entry and why. */
int etcd_client_init(struct etcd_client *c, const char *urls, char *err, size_t errlen);
/* Full URL of path on endpoint i. */
void etcd_client_url(const struct etcd_client *c, size_t i, const char *path, char *out,
    size_t outlen);
/* After a transport failure on endpoint i: the next call starts at the next one. */
void etcd_client_failed(struct etcd_client *c, size_t i);
void etcd_client_answered(struct etcd_client *c, size_t i);

/* ---- synchronous transport (blocks; workers and tests only) ----
 * Sends body to path, trying each endpoint from c->cur once until one
 * answers over HTTP. Returns as etcd_parse. */
int etcd_call(struct etcd_client *c, enum etcd_call call, const char *body,
    struct etcd_resp *r);
/* Convenience wrappers over etcd_call (sync). */
int etcd_fence_check(struct etcd_client *c, const char *key, int64_t term,
    struct etcd_resp *r);

/* ---- asynchronous transport over ahttp (the supervisor's event loop) ----
 * Starts the call and returns at once; done runs exactly once with the
 * parsed answer (rc as etcd_parse; r is freed after done returns), unless
 * the request is cancelled first. A transport failure moves on to the next
 * endpoint within the same call, each endpoint tried once. Returns NULL
 * (err set) when nothing could be started; done is then never called. */
struct ahttp;
struct etcd_areq;
typedef void (*etcd_done_fn)(int rc, struct etcd_resp *r, void *arg);
struct etcd_areq *etcd_async_call(struct ahttp *h, struct etcd_client *c, enum etcd_call call,
    const char *body, etcd_done_fn done, void *arg, char *err, size_t errlen);
void etcd_async_cancel(struct etcd_areq *q);

/* The leader key of a subject: /operatord/CLUSTER/leader/SUBJECT. */
int etcd_leader_key(const char *cluster, const char *subject, char *out, size_t outlen);
/* Whether s is safe as one path segment of our keys: [A-Za-z0-9._-]{1,63}. */
int etcd_segment_ok(const char *s);

#endif
