#include "common/http.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct http_xfer {
	struct op_http_req *req;
	CURL *easy;
	struct curl_slist *hdrs;
	char *buf;
	size_t len, cap;
	int overflow;
	int sink_failed;
};

void
op_http_global_init(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
}

static size_t
http_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;

	if (x->req->sink != NULL) {
		long status = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status <= 299) {
			if (x->req->sink(ptr, n, x->req->sink_arg) != 0) {
				x->sink_failed = 1;
				return 0; /* aborts the transfer */
			}
			return n;
		}
	}
	if (x->len + n > OP_HTTP_MAX_BODY) {
		x->overflow = 1;
		return 0; /* aborts the transfer */
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + n + 1)
			cap *= 2;
		char *nb = realloc(x->buf, cap);
		if (nb == NULL)
			return 0;
		x->buf = nb;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, ptr, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

static int
http_setup(struct http_xfer *x, struct op_http_req *r)
{
	memset(x, 0, sizeof(*x));
	x->req = r;
	r->status = 0;
	r->err[0] = '\0';
	r->resp = NULL;
	r->resp_len = 0;
	x->easy = curl_easy_init();
	if (x->easy == NULL) {
		op_strlcpy(r->err, "curl_easy_init failed", sizeof(r->err));
		return -1;
	}
	CURL *e = x->easy;
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
	    (long)(r->timeout_ms > 0 ? r->timeout_ms : OP_HTTP_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(r->connect_timeout_ms > 0 ? r->connect_timeout_ms
					     : OP_HTTP_CONNECT_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (r->method != NULL)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	if (r->body != NULL) {
		size_t bl = r->body_len ? r->body_len : strlen(r->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bl);
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s",
		    r->content_type ? r->content_type : "application/json");
		x->hdrs = curl_slist_append(x->hdrs, ct);
	}
	/* No "Expect: 100-continue" round trip on POST bodies. */
	x->hdrs = curl_slist_append(x->hdrs, "Expect:");
	for (const char *const *h = r->headers; h != NULL && *h != NULL; h++)
		x->hdrs = curl_slist_append(x->hdrs, *h);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	return 0;
}

static int
http_finish(struct http_xfer *x, CURLcode rc, int64_t elapsed_ms)
{
	struct op_http_req *r = x->req;
	int failed = 0;

	r->elapsed_ms = elapsed_ms;
	if (rc == CURLE_OK) {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
		r->resp = x->buf;
		r->resp_len = x->len;
		x->buf = NULL;
	} else {
		if (x->sink_failed)
			snprintf(r->err, sizeof(r->err), "response body rejected by its decoder");
		else if (x->overflow)
			snprintf(r->err, sizeof(r->err),
			    "response body larger than %u bytes", OP_HTTP_MAX_BODY);
		else
			snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(rc));
		r->status = 0;
		failed = 1;
	}
	free(x->buf);
	curl_slist_free_all(x->hdrs);
	curl_easy_cleanup(x->easy);
	return failed ? -1 : 0;
}

int
op_http_do(struct op_http_req *r)
{
	struct http_xfer x;
	int64_t t0 = op_mono_ms();

	if (http_setup(&x, r) != 0)
		return -1;
	CURLcode rc = curl_easy_perform(x.easy);
	return http_finish(&x, rc, op_mono_ms() - t0);
}

int
op_http_multi(struct op_http_req *reqs, size_t n)
{
	struct http_xfer *xs;
	CURLM *m;
	int failed = 0, running = 0;
	int64_t t0 = op_mono_ms();

	if (n == 0)
		return 0;
	if (n == 1)
		return op_http_do(&reqs[0]) == 0 ? 0 : 1;
	xs = calloc(n, sizeof(*xs));
	m = curl_multi_init();
	if (xs == NULL || m == NULL) {
		free(xs);
		if (m)
			curl_multi_cleanup(m);
		for (size_t i = 0; i < n; i++)
			op_strlcpy(reqs[i].err, "out of memory", sizeof(reqs[i].err));
		return (int)n;
	}
	for (size_t i = 0; i < n; i++) {
		if (http_setup(&xs[i], &reqs[i]) != 0) {
			failed++;
			continue;
		}
		curl_easy_setopt(xs[i].easy, CURLOPT_PRIVATE, &xs[i]);
		curl_multi_add_handle(m, xs[i].easy);
	}
	do {
		curl_multi_perform(m, &running);
		if (running)
			curl_multi_poll(m, NULL, 0, 1000, NULL);
	} while (running);
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(m, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct http_xfer *x;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(m, msg->easy_handle);
		if (http_finish(x, msg->data.result, op_mono_ms() - t0) != 0)
			failed++;
	}
	curl_multi_cleanup(m);
	free(xs);
	return failed;
}

void
op_http_req_reset(struct op_http_req *r)
{
	free(r->resp);
	r->resp = NULL;
	r->resp_len = 0;
	r->status = 0;
	r->err[0] = '\0';
}
