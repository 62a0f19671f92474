/* http: blocking libcurl requests with hard timeouts, singly or in parallel. */
#ifndef OP_HTTP_H
#define OP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define OP_HTTP_MAX_BODY (256u << 20)   /* bytes; a larger answer is an error */
#define OP_HTTP_CONNECT_TIMEOUT_MS 1000 /* default connect timeout */
#define OP_HTTP_TIMEOUT_MS 2000         /* default total timeout */

struct op_http_req {
	/* in */
	const char *method;        /* NULL means GET */
	const char *url;
	const char *body;          /* NULL for none */
	size_t body_len;           /* 0 means strlen(body) */
	const char *content_type;  /* default application/json when body set */
	const char *const *headers; /* NULL-terminated extra "Name: value" */
	int64_t timeout_ms;        /* 0 means OP_HTTP_TIMEOUT_MS */
	int64_t connect_timeout_ms;
	/* Optional: a 2xx body goes to sink chunk by chunk as it arrives instead
	 * of into resp (other answers are still kept in resp). sink returns 0
	 * to go on, -1 to abort the transfer (err then says so). */
	int (*sink)(const char *p, size_t n, void *arg);
	void *sink_arg;
	/* out */
	long status;               /* 0 when no HTTP answer arrived */
	char *resp;                /* NUL-terminated, malloc'd, may be NULL */
	size_t resp_len;
	int64_t elapsed_ms;
	char err[256];             /* transport error, empty on success */
};

/* Call once per process before any thread (nng) starts. */
void op_http_global_init(void);
/* Performs one request. Returns 0 when an HTTP answer arrived (any status),
 * -1 on transport failure (err says why). */
int op_http_do(struct op_http_req *r);
/* Performs n requests in parallel and waits for all; per-request results as
 * op_http_do. Returns the number that failed at transport level. */
int op_http_multi(struct op_http_req *reqs, size_t n);
void op_http_req_reset(struct op_http_req *r); /* frees resp, clears outputs */

#endif
