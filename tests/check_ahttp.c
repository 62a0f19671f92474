/* ahttp against a local libevent HTTP server in the same event loop: answers,
 * statuses, bodies, timeouts, refused connections, garbage, cancellation,
 * many requests at once and freeing from inside a callback. The server and
 * the client share one thread, so every case also proves the client never
 * blocks the loop: a blocking client would starve the server and time out. */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ahttp.h"

#define T_BOUND_S 20        /* no case may take longer: the loop is broken by then */

struct result {
	int calls;
	long status;
	char body[512];
	size_t len;
	char err[512];
	int has_err;
};

struct srv {
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *garbage;
	int port, garbage_port;
	struct evhttp_request *held[64];
	int nheld;
	int hits;
};

static struct srv S;
static struct ahttp *H;
static int waiting;          /* callbacks still expected before the loop stops */

static void
srv_handler(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *out = evbuffer_new();

	S.hits++;
	if (strcmp(uri, "/ok") == 0) {
		evbuffer_add_printf(out, "hello");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/echo") == 0) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req),
		    "Content-Type");
		const char *m = evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST"
			: evhttp_request_get_command(req) == EVHTTP_REQ_PUT ? "PUT"
			: evhttp_request_get_command(req) == EVHTTP_REQ_DELETE ? "DELETE" : "GET";
		evbuffer_add_printf(out, "%s %s ", m, ct ? ct : "-");
		evbuffer_add_buffer(out, in);
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/slow") == 0) {
		if (S.nheld < 64)
			S.held[S.nheld++] = req; /* never answered */
	} else {
		evbuffer_add_printf(out, "no such thing");
		evhttp_send_reply(req, 404, "Not Found", out);
	}
	evbuffer_free(out);
}

/* Answers anything with bytes that are not HTTP, then closes. */
static void
garbage_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen,
    void *arg)
{
	static const char junk[] = "\x01\x02 this is not http at all\r\n\r\n\xff\xfe";
	ssize_t n = write(fd, junk, sizeof(junk) - 1);
	(void)n;
	close(fd);
}

static int
bound_port(evutil_socket_t fd)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	return ntohs(sin.sin_port);
}

static void
setup(void)
{
	char err[256];
	memset(&S, 0, sizeof(S));
	S.base = event_base_new();
	ck_assert_ptr_nonnull(S.base);
	S.http = evhttp_new(S.base);
	evhttp_set_allowed_methods(S.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE);
	evhttp_set_gencb(S.http, srv_handler, NULL);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(S.http, "127.0.0.1", 0);
	ck_assert_ptr_nonnull(bs);
	S.port = bound_port(evhttp_bound_socket_get_fd(bs));

	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	S.garbage = evconnlistener_new_bind(S.base, garbage_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16, (struct sockaddr *)&sin, sizeof(sin));
	ck_assert_ptr_nonnull(S.garbage);
	S.garbage_port = bound_port(evconnlistener_get_fd(S.garbage));

	H = ahttp_new(S.base, err, sizeof(err));
	ck_assert_msg(H != NULL, "ahttp_new: %s", err);
}

static void
teardown(void)
{
	ahttp_free(H);
	H = NULL;
	evconnlistener_free(S.garbage);
	evhttp_free(S.http); /* also drops the held requests */
	event_base_free(S.base);
}

static void
bound_cb(evutil_socket_t fd, short what, void *arg)
{
	ck_abort_msg("event loop bound of %d s reached with %d callbacks missing", T_BOUND_S,
	    waiting);
}

/* Runs the loop until `waiting` callbacks have arrived. */
static void
run_until_done(void)
{
	struct timeval tv = {T_BOUND_S, 0};
	struct event *bound = evtimer_new(S.base, bound_cb, NULL);
	evtimer_add(bound, &tv);
	while (waiting > 0)
		event_base_loop(S.base, EVLOOP_ONCE);
	event_free(bound);
}

static void
record_cb(struct ahttp_req *r, long status, const char *body, size_t len, const char *err,
    void *arg)
{
	struct result *res = arg;
	res->calls++;
	res->status = status;
	ck_assert_ptr_nonnull(body);
	ck_assert_uint_eq(strlen(body), len);
	snprintf(res->body, sizeof(res->body), "%s", body);
	res->len = len;
	res->has_err = err != NULL;
	snprintf(res->err, sizeof(res->err), "%s", err ? err : "");
	waiting--;
}

static char *
url(int port, const char *path)
{
	static char buf[8][128];
	static int i;
	char *u = buf[i++ % 8];
	snprintf(u, 128, "http://127.0.0.1:%d%s", port, path);
	return u;
}

static struct ahttp_req *
start(const char *method, const char *u, const char *body, int64_t tmo, struct result *res)
{
	char err[256];
	struct ahttp_req *r = ahttp_request(H, method, u, body, body ? strlen(body) : 0, NULL,
	    tmo, record_cb, res, err, sizeof(err));
	ck_assert_msg(r != NULL, "ahttp_request: %s", err);
	waiting++;
	return r;
}

START_TEST(test_get_ok)
{
	struct result res = {0};
	start("GET", url(S.port, "/ok"), NULL, 2000, &res);
	run_until_done();
	ck_assert_int_eq(res.calls, 1);
	ck_assert_int_eq(res.status, 200);
	ck_assert_str_eq(res.body, "hello");
	ck_assert_int_eq(res.has_err, 0);
	ck_assert_uint_eq(ahttp_pending(H), 0);
}
END_TEST

START_TEST(test_post_body_and_type)
{
	struct result a = {0}, b = {0};
	char err[256];
	/* A body over 1 KiB: no Expect: 100-continue round trip may stall it. */
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	start("POST", url(S.port, "/echo"), "{\"a\":1}", 2000, &a);
	ck_assert_ptr_nonnull(ahttp_request(H, "PUT", url(S.port, "/echo"), big, strlen(big),
	    "text/plain", 2000, record_cb, &b, err, sizeof(err)));
	waiting++;
	run_until_done();
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.body, "POST application/json {\"a\":1}");
	ck_assert_int_eq(b.status, 200);
	ck_assert_uint_eq(b.len, strlen("PUT text/plain ") + strlen(big));
	ck_assert(strncmp(b.body, "PUT text/plain xxx", 18) == 0);
}
END_TEST

START_TEST(test_http_error_status_is_not_transport_error)
{
	struct result res = {0};
	start("GET", url(S.port, "/missing"), NULL, 2000, &res);
	run_until_done();
	ck_assert_int_eq(res.status, 404);
	ck_assert_int_eq(res.has_err, 0);
	ck_assert_str_eq(res.body, "no such thing");
}
END_TEST

START_TEST(test_timeout_does_not_block_others)
{
	struct result slow = {0}, fast = {0};
	start("GET", url(S.port, "/slow"), NULL, 800, &slow);
	start("GET", url(S.port, "/ok"), NULL, 5000, &fast);
	run_until_done();
	ck_assert_int_eq(slow.calls, 1);
	ck_assert_int_eq(slow.status, 0);
	ck_assert_int_eq(slow.has_err, 1);
	ck_assert_msg(strstr(slow.err, "imed out") != NULL, "err: %s", slow.err);
	ck_assert_int_eq(fast.status, 200);
	ck_assert_int_eq(S.nheld, 1); /* the slow request did reach the server */
}
END_TEST

START_TEST(test_connection_refused)
{
	struct result res = {0};
	/* A port that was just bound and closed: nothing listens there. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	int port = bound_port(fd);
	close(fd);
	start("GET", url(port, "/ok"), NULL, 2000, &res);
	run_until_done();
	ck_assert_int_eq(res.calls, 1);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(res.has_err, 1);
	ck_assert_msg(res.err[0] != '\0', "empty error");
}
END_TEST

START_TEST(test_garbage_answer)
{
	struct result res = {0};
	start("GET", url(S.garbage_port, "/ok"), NULL, 2000, &res);
	run_until_done();
	ck_assert_int_eq(res.calls, 1);
	ck_assert_int_eq(res.status, 0);
	ck_assert_int_eq(res.has_err, 1);
}
END_TEST

START_TEST(test_bad_url_refused_at_once)
{
	struct result res = {0};
	char err[256] = "";
	ck_assert_ptr_null(ahttp_request(H, "GET", "ftp://127.0.0.1/x", NULL, 0, NULL, 1000,
	    record_cb, &res, err, sizeof(err)));
	ck_assert_msg(strstr(err, "not an http") != NULL, "err: %s", err);
	ck_assert_ptr_null(ahttp_request(H, "GET", NULL, NULL, 0, NULL, 1000, record_cb, &res,
	    err, sizeof(err)));
	ck_assert_uint_eq(ahttp_pending(H), 0);
	ck_assert_int_eq(res.calls, 0);
}
END_TEST

struct cancel_ctx {
	struct ahttp_req *victim;
	struct result *after;
};

static void
cancel_then_request(evutil_socket_t fd, short what, void *arg)
{
	struct cancel_ctx *c = arg;
	ahttp_cancel(c->victim);
	waiting--; /* the victim's callback will never come */
	start("GET", url(S.port, "/ok"), NULL, 2000, c->after);
}

START_TEST(test_cancel_no_callback)
{
	struct result victim = {0}, after = {0};
	struct cancel_ctx c = {NULL, &after};
	c.victim = start("GET", url(S.port, "/slow"), NULL, 10000, &victim);
	struct event *ev = evtimer_new(S.base, cancel_then_request, &c);
	struct timeval tv = {0, 100 * 1000};
	evtimer_add(ev, &tv);
	run_until_done();
	event_free(ev);
	ck_assert_int_eq(victim.calls, 0);
	ck_assert_int_eq(after.status, 200);
	ck_assert_uint_eq(ahttp_pending(H), 0);
	/* Loop a little longer than the victim's first connect: still no call. */
	event_base_loop(S.base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(victim.calls, 0);
}
END_TEST

START_TEST(test_many_at_once)
{
	enum { N = 60 };
	static struct result res[N];
	memset(res, 0, sizeof(res));
	for (int i = 0; i < N; i++)
		start(i % 2 ? "GET" : "POST", url(S.port, i % 2 ? "/ok" : "/echo"),
		    i % 2 ? NULL : "b", 5000, &res[i]);
	ck_assert_uint_eq(ahttp_pending(H), N);
	run_until_done();
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(res[i].calls, 1);
		ck_assert_int_eq(res[i].status, 200);
		ck_assert_str_eq(res[i].body, i % 2 ? "hello" : "POST application/json b");
	}
	ck_assert_int_eq(S.hits, N);
}
END_TEST

/* A callback that starts the next request of a chain (etcd's read-then-write). */
static int chain_left;
static long chain_status[4];

static void
chain_cb(struct ahttp_req *r, long status, const char *body, size_t len, const char *err,
    void *arg)
{
	char e[256];
	chain_status[3 - chain_left] = status;
	if (--chain_left > 0)
		ck_assert_ptr_nonnull(ahttp_request(H, "POST", url(S.port, "/echo"), "next", 4, NULL,
		    2000, chain_cb, NULL, e, sizeof(e)));
	else
		waiting = 0;
}

START_TEST(test_request_from_callback)
{
	char e[256];
	chain_left = 3;
	ck_assert_ptr_nonnull(ahttp_request(H, "GET", url(S.port, "/ok"), NULL, 0, NULL, 2000,
	    chain_cb, NULL, e, sizeof(e)));
	waiting = 1;
	run_until_done();
	ck_assert_int_eq(chain_left, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(chain_status[i], 200);
	ck_assert_uint_eq(ahttp_pending(H), 0);
	ck_assert_int_eq(S.hits, 3);
}
END_TEST

static int free_cb_calls;

static void
free_in_cb(struct ahttp_req *r, long status, const char *body, size_t len, const char *err,
    void *arg)
{
	free_cb_calls++;
	ahttp_cancel(r); /* no-op on itself */
	ahttp_free(H);   /* drops the other, slow, request: no callback for it */
	H = NULL;
	waiting = 0;
}

START_TEST(test_free_inside_callback)
{
	char err[256];
	free_cb_calls = 0;
	ck_assert_ptr_nonnull(ahttp_request(H, "GET", url(S.port, "/slow"), NULL, 0, NULL, 10000,
	    free_in_cb, NULL, err, sizeof(err)));
	ck_assert_ptr_nonnull(ahttp_request(H, "GET", url(S.port, "/ok"), NULL, 0, NULL, 2000,
	    free_in_cb, NULL, err, sizeof(err)));
	waiting = 1;
	run_until_done();
	ck_assert_int_eq(free_cb_calls, 1);
	/* Loop on: nothing left may fire (it would touch freed memory or count). */
	event_base_loop(S.base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(free_cb_calls, 1);
}
END_TEST

START_TEST(test_free_with_requests_in_flight)
{
	struct result a = {0}, b = {0};
	start("GET", url(S.port, "/slow"), NULL, 10000, &a);
	start("POST", url(S.port, "/echo"), "x", 10000, &b);
	ahttp_free(H);
	H = NULL;
	waiting = 0;
	event_base_loop(S.base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_int_eq(b.calls, 0);
}
END_TEST

static Suite *
ahttp_suite(void)
{
	Suite *s = suite_create("ahttp");
	TCase *tc = tcase_create("ahttp");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, T_BOUND_S + 10);
	tcase_add_test(tc, test_get_ok);
	tcase_add_test(tc, test_post_body_and_type);
	tcase_add_test(tc, test_http_error_status_is_not_transport_error);
	tcase_add_test(tc, test_timeout_does_not_block_others);
	tcase_add_test(tc, test_connection_refused);
	tcase_add_test(tc, test_garbage_answer);
	tcase_add_test(tc, test_bad_url_refused_at_once);
	tcase_add_test(tc, test_cancel_no_callback);
	tcase_add_test(tc, test_many_at_once);
	tcase_add_test(tc, test_request_from_callback);
	tcase_add_test(tc, test_free_inside_callback);
	tcase_add_test(tc, test_free_with_requests_in_flight);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ahttp_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
