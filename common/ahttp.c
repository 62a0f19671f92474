#include "common/ahttp.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct ahttp_req {
	struct ahttp *h;
	CURL *easy;
	struct curl_slist *hdrs;
	char *reqbody;          /* our copy: curl does not copy POSTFIELDS */
	char *buf;              /* answer, NUL-terminated */
	size_t len, cap;
	int overflow;           /* answer exceeded AHTTP_MAX_BODY */
	int in_done;            /* its callback is running: cancel is a no-op */
	ahttp_done_fn done;
	void *arg;
	struct ahttp_req *prev, *next;
	char curlerr[CURL_ERROR_SIZE];
};

/* One per socket curl asks us to watch; assigned to the socket in curl. */
struct ahttp_sock {
	struct ahttp *h;
	curl_socket_t fd;
	struct event *ev;
};

struct ahttp {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct ahttp_req *reqs; /* in flight */
	size_t nreqs;
	int depth;              /* > 0 while inside curl or a callback */
	int dying;              /* ahttp_free was called at depth > 0 */
};

static void ahttp_drive(struct ahttp *h, curl_socket_t fd, int action);

static void
ahttp_seterr(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		op_strlcpy(err, msg, errlen);
}

static size_t
ahttp_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct ahttp_req *r = arg;
	size_t n = size * nmemb;

	if (r->len + n > AHTTP_MAX_BODY) {
		r->overflow = 1;
		return 0; /* aborts the transfer */
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + n + 1)
			cap *= 2;
		char *nb = realloc(r->buf, cap);
		if (nb == NULL)
			return 0;
		r->buf = nb;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, ptr, n);
	r->len += n;
	r->buf[r->len] = '\0';
	return n;
}

static void
ahttp_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct ahttp_sock *s = arg;
	int action = 0;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	/* s may be freed inside: curl can drop the socket while we drive it. */
	ahttp_drive(s->h, (curl_socket_t)fd, action);
}

/* CURLMOPT_SOCKETFUNCTION: curl says which events it wants on a socket. */
static int
ahttp_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct ahttp *h = userp;
	struct ahttp_sock *s = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			event_free(s->ev);
			free(s);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		s->h = h;
		s->fd = fd;
		curl_multi_assign(h->multi, fd, s);
	} else {
		event_free(s->ev);
	}
	short ev = EV_PERSIST;
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	s->ev = event_new(h->base, fd, ev, ahttp_sock_event, s);
	if (s->ev == NULL || event_add(s->ev, NULL) != 0)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: never drive curl from here (it is re-entrant);
 * arm a libevent timer instead, 0 ms meaning "as soon as the loop runs". */
static int
ahttp_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct ahttp *h = userp;

	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

static void
ahttp_timer_event(evutil_socket_t fd, short what, void *arg)
{
	ahttp_drive(arg, CURL_SOCKET_TIMEOUT, 0);
}

static void
ahttp_unlink(struct ahttp_req *r)
{
	struct ahttp *h = r->h;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		h->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	h->nreqs--;
}

static void
ahttp_req_free(struct ahttp_req *r)
{
	if (r->easy != NULL) {
		curl_multi_remove_handle(r->h->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->hdrs);
	free(r->reqbody);
	free(r->buf);
	free(r);
}

static void
ahttp_complete(struct ahttp_req *r, CURLcode rc)
{
	long status = 0;
	const char *err = NULL;
	char why[CURL_ERROR_SIZE + 64];

	curl_multi_remove_handle(r->h->multi, r->easy);
	ahttp_unlink(r);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	} else {
		if (r->overflow)
			snprintf(why, sizeof(why), "answer larger than %u bytes", AHTTP_MAX_BODY);
		else
			snprintf(why, sizeof(why), "%s", r->curlerr[0] ? r->curlerr
								 : curl_easy_strerror(rc));
		err = why;
	}
	r->in_done = 1;
	r->done(r, err ? 0 : status, r->buf ? r->buf : "", err ? 0 : r->len, err, r->arg);
	ahttp_req_free(r);
}

static void
ahttp_destroy(struct ahttp *h)
{
	while (h->reqs != NULL) {
		struct ahttp_req *r = h->reqs;
		ahttp_unlink(r);
		ahttp_req_free(r);
	}
	/* Cleanup releases the sockets through CURL_POLL_REMOVE callbacks. */
	curl_multi_cleanup(h->multi);
	event_free(h->timer);
	free(h);
}

/* Lets curl act on a socket event or a timeout, then hands finished
 * transfers to their callbacks. Callbacks may start, cancel or free. */
static void
ahttp_drive(struct ahttp *h, curl_socket_t fd, int action)
{
	int running = 0;
	CURLMsg *m;
	int left;

	h->depth++;
	curl_multi_socket_action(h->multi, fd, action, &running);
	while (!h->dying && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct ahttp_req *r = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		ahttp_complete(r, m->data.result);
	}
	h->depth--;
	if (h->depth == 0 && h->dying)
		ahttp_destroy(h);
}

struct ahttp *
ahttp_new(struct event_base *base, char *err, size_t errlen)
{
	static int curl_ready;
	struct ahttp *h;

	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
			ahttp_seterr(err, errlen, "curl_global_init failed");
			return NULL;
		}
		curl_ready = 1;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		ahttp_seterr(err, errlen, "out of memory");
		return NULL;
	}
	h->base = base;
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, ahttp_timer_event, h);
	if (h->multi == NULL || h->timer == NULL) {
		ahttp_seterr(err, errlen, "cannot create curl multi handle or timer");
		if (h->multi != NULL)
			curl_multi_cleanup(h->multi);
		if (h->timer != NULL)
			event_free(h->timer);
		free(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, ahttp_socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, ahttp_timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void
ahttp_free(struct ahttp *h)
{
	if (h == NULL)
		return;
	if (h->depth > 0) {
		/* Inside a callback: curl is on the stack. Drop every request
		 * now (no more callbacks) and free when the stack unwinds. */
		while (h->reqs != NULL) {
			struct ahttp_req *r = h->reqs;
			ahttp_unlink(r);
			ahttp_req_free(r);
		}
		h->dying = 1;
		return;
	}
	ahttp_destroy(h);
}

size_t
ahttp_pending(const struct ahttp *h)
{
	return h ? h->nreqs : 0;
}

struct ahttp_req *
ahttp_request(struct ahttp *h, const char *method, const char *url, const char *body,
    size_t bodylen, const char *content_type, int64_t timeout_ms, ahttp_done_fn done, void *arg,
    char *err, size_t errlen)
{
	struct ahttp_req *r;
	char line[256];

	if (h == NULL || h->dying || url == NULL || done == NULL) {
		ahttp_seterr(err, errlen, "ahttp_request: missing client, URL or callback");
		return NULL;
	}
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		snprintf(line, sizeof(line), "not an http(s) URL: %.200s", url);
		ahttp_seterr(err, errlen, line);
		return NULL;
	}
	if (timeout_ms <= 0)
		timeout_ms = AHTTP_DEFAULT_TIMEOUT_MS;
	r = calloc(1, sizeof(*r));
	if (r == NULL || (r->easy = curl_easy_init()) == NULL) {
		free(r);
		ahttp_seterr(err, errlen, "out of memory");
		return NULL;
	}
	r->h = h;
	r->done = done;
	r->arg = arg;
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curlerr);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(timeout_ms < AHTTP_CONNECT_TIMEOUT_MS ? timeout_ms : AHTTP_CONNECT_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ahttp_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	if (method != NULL && strcmp(method, "GET") != 0) {
		if (strcmp(method, "HEAD") == 0)
			curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		else
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	if (body != NULL) {
		r->reqbody = malloc(bodylen + 1);
		if (r->reqbody == NULL) {
			ahttp_req_free(r);
			ahttp_seterr(err, errlen, "out of memory");
			return NULL;
		}
		memcpy(r->reqbody, body, bodylen);
		r->reqbody[bodylen] = '\0';
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bodylen);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->reqbody);
		snprintf(line, sizeof(line), "Content-Type: %s",
		    content_type ? content_type : "application/json");
		r->hdrs = curl_slist_append(r->hdrs, line);
		/* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
		r->hdrs = curl_slist_append(r->hdrs, "Expect:");
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	}
	/* Linked before adding: curl may call the timer callback at once. */
	r->next = h->reqs;
	if (h->reqs != NULL)
		h->reqs->prev = r;
	h->reqs = r;
	h->nreqs++;
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
		ahttp_unlink(r);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
		ahttp_req_free(r);
		ahttp_seterr(err, errlen, "curl_multi_add_handle failed");
		return NULL;
	}
	return r;
}

void
ahttp_cancel(struct ahttp_req *r)
{
	if (r == NULL || r->in_done)
		return;
	ahttp_unlink(r);
	ahttp_req_free(r);
}
