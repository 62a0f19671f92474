/* Integration: the control socket under bad input. A real operatord (its
 * subject points at closed ports, which is fine: it reports them) gets
 * garbage, truncated, oversized and lying frames on ctl.sock; each gets an
 * error reply naming the problem and the daemon keeps answering. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/frame.h"

#define CTL_WAIT_MS 30000 /* generous: CI machines are shared */

static char tmpdir[] = "/tmp/check_ctl_XXXXXX";
static char run[256], sock[300];
static pid_t daemon_pid;

static int
ctl_connect(void)
{
	char err[256];

	return op_frame_connect(sock, err, sizeof(err));
}

/* Reads one framed reply; returns its body or NULL. */
static json_object *
ctl_reply(int fd)
{
	struct op_msg m;
	char err[256];

	if (op_frame_read(fd, &m, CTL_WAIT_MS, err, sizeof(err)) != 0)
		return NULL;
	json_object *b = json_object_get(m.body);
	op_msg_clear(&m);
	return b;
}

static json_object *
ctl_status(void)
{
	int fd = ctl_connect();
	struct op_msg m;
	char err[256];

	if (fd < 0)
		return NULL;
	json_object *b = json_object_new_object();
	json_object_object_add(b, "cmd", json_object_new_string("status"));
	op_msg_init(&m, OP_MSG_REQUEST, 7, b);
	op_frame_write(fd, &m, err, sizeof(err));
	op_msg_clear(&m);
	json_object *r = ctl_reply(fd);
	close(fd);
	return r;
}

static void
setup(void)
{
	char conf[300], log[300];
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(run, sizeof(run), "%s/run", tmpdir);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", run);
	snprintf(conf, sizeof(conf), "%s/op.conf", tmpdir);
	snprintf(log, sizeof(log), "%s/operatord.log", tmpdir);
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[operatord]\nruntime_dir = %s\nstate_dir = %s/state\nmode = execute\n"
	    "[subject.ratelimiter]\nredis = 127.0.0.1:1\nnodes = http://127.0.0.1:1\n",
	    run, tmpdir);
	fclose(f);
	daemon_pid = fork();
	if (daemon_pid == 0) {
		freopen(log, "w", stderr);
		execl(getenv("OPERATORD_BIN"), "operatord", "--config", conf, (char *)NULL);
		_exit(127);
	}
	for (int64_t end = op_mono_ms() + CTL_WAIT_MS; op_mono_ms() < end; op_sleep_ms(100)) {
		json_object *s = ctl_status();
		int ok = s && op_json_bool(s, "ok", 0);
		json_object_put(s);
		if (ok)
			return;
	}
	ck_abort_msg("operatord did not answer on %s", sock);
}

static void
teardown(void)
{
	char cmd[400];

	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* Sends raw bytes, expects one error reply whose message contains needle. */
static void
expect_error(const void *bytes, size_t len, const char *needle)
{
	int fd = ctl_connect();

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(op_write_all(fd, bytes, len), 0);
	json_object *r = ctl_reply(fd);
	ck_assert_msg(r != NULL, "no reply to bad input (expected \"%s\")", needle);
	ck_assert_msg(!op_json_bool(r, "ok", 1), "bad input accepted");
	ck_assert_msg(strstr(op_json_str(r, "error", ""), needle) != NULL,
	    "error \"%s\" lacks \"%s\"", op_json_str(r, "error", ""), needle);
	json_object_put(r);
	close(fd);
	/* The daemon runs on and still answers a good request. */
	json_object *s = ctl_status();
	ck_assert_msg(s && op_json_bool(s, "ok", 0), "daemon stopped answering after bad input");
	ck_assert_int_eq(json_object_array_length(op_json_arr(op_json_obj(s, "result"), "workers")), 5);
	json_object_put(s);
}

static size_t
frame(uint8_t *out, const void *payload, uint32_t len)
{
	uint32_t be = htonl(len);

	memcpy(out, &be, 4);
	memcpy(out + 4, payload, len);
	return len + 4;
}

START_TEST(test_garbage_frames)
{
	uint8_t buf[256];
	static const uint8_t lying_array[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
	static const uint8_t not_a_map[] = {0x93, 0x01, 0x02, 0x03};
	static const uint8_t bad_byte[] = {0xc1};

	expect_error(buf, frame(buf, "garbage!", 8), "bad request frame");
	expect_error(buf, frame(buf, lying_array, sizeof(lying_array)), "exceeds frame size");
	expect_error(buf, frame(buf, not_a_map, sizeof(not_a_map)), "not a map");
	expect_error(buf, frame(buf, bad_byte, sizeof(bad_byte)), "invalid msgpack byte");
	/* A length beyond the limit cannot be skipped: error, then hang-up. */
	uint32_t huge = htonl(0x7fffffff);
	expect_error(&huge, 4, "frame length");
	uint32_t zero = 0;
	expect_error(&zero, 4, "frame length");
}
END_TEST

START_TEST(test_truncated_and_wrong_shapes)
{
	struct op_msg m;
	msgpack_sbuffer sb;
	char err[256];

	/* A valid request cut short inside the frame: declared length says more. */
	json_object *b = json_object_new_object();
	json_object_object_add(b, "cmd", json_object_new_string("status"));
	op_msg_init(&m, OP_MSG_REQUEST, 9, b);
	msgpack_sbuffer_init(&sb);
	op_msg_encode(&m, &sb);
	uint8_t buf[512];
	memcpy(buf + 4, sb.data, sb.size - 3);
	uint32_t be = htonl((uint32_t)sb.size - 3);
	memcpy(buf, &be, 4);
	expect_error(buf, sb.size + 1, "truncated");
	msgpack_sbuffer_destroy(&sb);
	op_msg_clear(&m);

	/* Right envelope, wrong type. */
	b = json_object_new_object();
	json_object_object_add(b, "role", json_object_new_string("x"));
	json_object_object_add(b, "pid", json_object_new_int(1));
	op_msg_init(&m, OP_MSG_HELLO, 3, b);
	int fd = ctl_connect();
	ck_assert_int_eq(op_frame_write(fd, &m, err, sizeof(err)), 0);
	json_object *r = ctl_reply(fd);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(strstr(op_json_str(r, "error", ""), "expected a request") != NULL, "%s",
	    op_json_str(r, "error", ""));
	json_object_put(r);
	op_msg_clear(&m);

	/* Unknown command on the same connection: it stays usable. */
	b = json_object_new_object();
	json_object_object_add(b, "cmd", json_object_new_string("launch-missiles"));
	op_msg_init(&m, OP_MSG_REQUEST, 4, b);
	ck_assert_int_eq(op_frame_write(fd, &m, err, sizeof(err)), 0);
	r = ctl_reply(fd);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(strstr(op_json_str(r, "error", ""), "unknown command") != NULL, "%s",
	    op_json_str(r, "error", ""));
	json_object_put(r);
	op_msg_clear(&m);
	close(fd);

	/* A client that connects and hangs up at once (what wedges nng 1.5.2). */
	for (int i = 0; i < 20; i++) {
		fd = ctl_connect();
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	json_object *s = ctl_status();
	ck_assert_msg(s && op_json_bool(s, "ok", 0), "daemon stopped answering after hang-ups");
	json_object_put(s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("bad_input");

	signal(SIGPIPE, SIG_IGN);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_garbage_frames);
	tcase_add_test(tc, test_truncated_and_wrong_shapes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
