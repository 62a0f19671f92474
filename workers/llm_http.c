/* llm_http: POSTs that never block the diagnoser. A curl multi handle is
 * driven from the worker's libevent base: curl tells us which sockets to
 * watch (socket callback) and when to wake it (timer callback); libevent tells
 * curl when a socket is ready (curl_multi_socket_action). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "common/log.h"
#include "common/util.h"
#include "workers/llm.h"

struct llm_http_req {
	struct llm_http *h;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	char *resp;
	size_t len, cap;
	int64_t retry_after_ms;
	char request_id[128];
	char errbuf[CURL_ERROR_SIZE];
	llm_http_cb cb;
	void *arg;
	struct llm_http_req *next, *prev;
};

struct llm_http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct llm_http_req *reqs;
	size_t n;
};

/* Per-socket state curl hands back to us through curl_multi_assign. */
struct llm_sock {
	struct llm_http *h;
	curl_socket_t fd;
	struct event *ev;
};

static void llm_http_check(struct llm_http *h);

static void
llm_http_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct llm_http *h = arg;
	int running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	llm_http_check(h);
}

static void
llm_http_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct llm_http *h = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	llm_http_check(h);
}

static int
llm_http_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
	struct llm_http *h = userp;
	struct llm_sock *s = sockp;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			event_free(s->ev);
			free(s);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return -1;
		s->h = h;
		s->fd = fd;
		curl_multi_assign(h->multi, fd, s);
	} else {
		event_free(s->ev);
	}
	s->ev = event_new(h->base, fd, kind, llm_http_on_event, h);
	event_add(s->ev, NULL);
	return 0;
}

static int
llm_http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct llm_http *h = userp;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(h->timer);
	} else {
		/* 0 means "call socket_action now": from the loop, never re-entrantly. */
		struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
		evtimer_add(h->timer, &tv);
	}
	return 0;
}

static size_t
llm_http_write(char *data, size_t size, size_t n, void *arg)
{
	struct llm_http_req *r = arg;
	size_t len = size * n;

	if (r->len + len > LLM_RESP_MAX)
		return 0; /* curl fails the transfer: an answer this big is an error */
	if (r->len + len + 1 > r->cap) {
		size_t cap = (r->len + len + 1) * 2;
		char *nb = realloc(r->resp, cap);
		if (nb == NULL)
			return 0;
		r->resp = nb;
		r->cap = cap;
	}
	memcpy(r->resp + r->len, data, len);
	r->len += len;
	r->resp[r->len] = '\0';
	return len;
}

/* retry-after is seconds (what the APIs send) or an HTTP date (allowed by RFC 9110). */
static int64_t
llm_parse_retry_after(const char *v)
{
	int64_t s;
	char buf[64];

	op_strlcpy(buf, v, sizeof(buf));
	for (char *e = buf + strlen(buf); e > buf && isspace((unsigned char)e[-1]); )
		*--e = '\0';
	if (op_parse_int(buf, 0, 86400, &s) == 0)
		return s * 1000;
	double d = strtod(buf, NULL);
	if (d > 0 && d < 86400)
		return (int64_t)(d * 1000);
	time_t t = curl_getdate(buf, NULL);
	if (t > 0) {
		int64_t ms = (int64_t)t * 1000 - op_wall_ms();
		return ms > 0 ? ms : 0;
	}
	return -1;
}

static size_t
llm_http_header(char *data, size_t size, size_t n, void *arg)
{
	struct llm_http_req *r = arg;
	size_t len = size * n;
	char line[256];

	if (len >= sizeof(line))
		return len;
	memcpy(line, data, len);
	line[len] = '\0';
	char *colon = strchr(line, ':');
	if (colon == NULL)
		return len;
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	v[strcspn(v, "\r\n")] = '\0';
	if (strcasecmp(line, "retry-after") == 0)
		r->retry_after_ms = llm_parse_retry_after(v);
	else if (strcasecmp(line, "request-id") == 0 || strcasecmp(line, "x-request-id") == 0)
		op_strlcpy(r->request_id, v, sizeof(r->request_id));
	return len;
}

static void
llm_http_req_free(struct llm_http_req *r)
{
	struct llm_http *h = r->h;

	if (r->prev)
		r->prev->next = r->next;
	else
		h->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	h->n--;
	curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	/* The key travels in a header: wipe it before the memory goes back. */
	for (struct curl_slist *l = r->hdrs; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(r->hdrs);
	free(r->body);
	free(r->resp);
	free(r);
}

static void
llm_http_check(struct llm_http *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct llm_http_req *r = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r == NULL)
			continue;
		struct llm_http_result res;
		long status = 0;
		memset(&res, 0, sizeof(res));
		if (msg->data.result == CURLE_OK)
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		res.status = status;
		res.body = r->resp ? r->resp : "";
		res.len = r->len;
		res.retry_after_ms = r->retry_after_ms;
		res.request_id = r->request_id;
		res.timed_out = msg->data.result == CURLE_OPERATION_TIMEDOUT;
		if (msg->data.result != CURLE_OK)
			res.err = r->errbuf[0] ? r->errbuf : curl_easy_strerror(msg->data.result);
		else
			res.err = "";
		/* Detach before the callback: it may start the next request. */
		llm_http_cb cb = r->cb;
		void *arg = r->arg;
		cb(arg, &res);
		llm_http_req_free(r);
	}
}

struct llm_http *
llm_http_new(struct event_base *base)
{
	struct llm_http *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->base = base;
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, llm_http_on_timer, h);
	if (h->multi == NULL || h->timer == NULL) {
		llm_http_free(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, llm_http_sock_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, llm_http_timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void
llm_http_free(struct llm_http *h)
{
	if (h == NULL)
		return;
	while (h->reqs != NULL)
		llm_http_req_free(h->reqs);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	if (h->timer)
		event_free(h->timer);
	free(h);
}

struct llm_http_req *
llm_http_post(struct llm_http *h, const char *url, const char *const *headers, const char *body,
    int64_t timeout_ms, int64_t connect_timeout_ms, llm_http_cb cb, void *arg)
{
	struct llm_http_req *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->h = h;
	r->cb = cb;
	r->arg = arg;
	r->retry_after_ms = -1;
	r->easy = curl_easy_init();
	r->body = strdup(body);
	if (r->easy == NULL || r->body == NULL)
		goto fail;
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *nl = curl_slist_append(r->hdrs, headers[i]);
		if (nl == NULL)
			goto fail;
		r->hdrs = nl;
	}
	/* curl adds "Expect: 100-continue" to large POSTs; APIs answer without it. */
	struct curl_slist *nl = curl_slist_append(r->hdrs, "Expect:");
	if (nl == NULL)
		goto fail;
	r->hdrs = nl;
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, llm_http_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, llm_http_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* The key travels in a header: never follow a redirect somewhere else. */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "operatord-diagnoser");
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
		goto fail;
	r->next = h->reqs;
	if (h->reqs)
		h->reqs->prev = r;
	h->reqs = r;
	h->n++;
	return r;
fail:
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->body);
	free(r);
	return NULL;
}

void
llm_http_cancel(struct llm_http_req *r)
{
	if (r != NULL)
		llm_http_req_free(r);
}

size_t
llm_http_inflight(const struct llm_http *h)
{
	return h->n;
}
