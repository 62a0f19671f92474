/* ahttp: asynchronous HTTP client on a libevent base, driven by curl's multi
 * socket interface, so a single-threaded event loop (the supervisor) can talk
 * HTTP without ever blocking on a slow or dead peer.
 *
 * One struct ahttp per event_base. Every request completes exactly once with
 * its done callback, unless it is cancelled (ahttp_cancel) or the client is
 * freed (ahttp_free) first, in which case no callback runs. The request
 * handle is freed right after its callback returns. */
#ifndef OP_AHTTP_H
#define OP_AHTTP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct ahttp;
struct ahttp_req;

#define AHTTP_MAX_BODY (64u << 20)        /* bytes; a larger answer is a transport error */
#define AHTTP_CONNECT_TIMEOUT_MS 5000     /* connect phase, capped by the request's timeout */
#define AHTTP_DEFAULT_TIMEOUT_MS 10000    /* used when a request passes timeout_ms <= 0 */

/* status: the HTTP status, 0 on transport error. body: the answer,
 * NUL-terminated (never NULL; "" when empty or on error). err: NULL when an
 * HTTP answer arrived (any status), else why the transfer failed. */
typedef void (*ahttp_done_fn)(struct ahttp_req *r, long status, const char *body, size_t len,
    const char *err, void *arg);

/* ahttp.c */
struct ahttp *ahttp_new(struct event_base *base, char *err, size_t errlen);
/* Cancels every request without calling back. Safe from inside a done callback. */
void ahttp_free(struct ahttp *h);
/* Starts a request and returns at once. method: "GET", "POST", "PUT", "DELETE",
 * ...; body may be NULL; content_type NULL means application/json when there is
 * a body. Returns NULL (err says why) on a bad URL or out of memory; the done
 * callback is then never called. */
struct ahttp_req *ahttp_request(struct ahttp *h, const char *method, const char *url,
    const char *body, size_t bodylen, const char *content_type, int64_t timeout_ms,
    ahttp_done_fn done, void *arg, char *err, size_t errlen);
/* Stops a request in flight; its callback is not called. Calling it on the
 * request whose callback is running is a no-op. */
void ahttp_cancel(struct ahttp_req *r);
/* Number of requests in flight (for metrics and tests). */
size_t ahttp_pending(const struct ahttp *h);

#endif
