/* Integration: the control socket under bad input and abuse. A real
 * operatord (its subjects point at closed ports, which is fine: it reports
 * them and opens tickets) gets garbage, truncated, oversized and lying frames
 * on ctl.sock, each answered with an error naming the problem; floods of
 * requests, connections holding half a frame, forged log lines and events
 * too big for one page, each through the real sockets and opsend/optail. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include "protocol/frame.h"

#define CTL_WAIT_MS 30000 /* generous: CI machines are shared */
#define CTL_FLOOD 2000    /* mode requests in the flood, as fast as the socket takes them */
#define CTL_FLOOD_BATCH 50 /* written before their replies are read */
#define CTL_OBSERVE_FLOOD 1500 /* observe requests to a busy observer: more than its channel holds */
#define CTL_HOLDERS 70    /* connections holding a partial frame (more than the old cap of 64) */
#define CTL_IDLERS 150    /* connections that say nothing (more than the daemon's hard cap) */
#define CTL_BIG_REASON (2300u << 10) /* two such events exceed one 4 MiB frame */

static char tmpdir[] = "/tmp/check_ctl_XXXXXX";
static char run[256], sock[300], logpath[300];
static pid_t daemon_pid;
/* The daemon's mode at start, and the PD URL of a TiKV subject to watch
 * too (NULL: none): a closed port opens a second ticket (pd_unreachable); a
 * port that accepts and never answers keeps the observer busy for a whole
 * PD timeout each poll, a worker slow for a legitimate reason. */
static const char *setup_mode = "execute";
static char setup_pd[64];
static int blackhole = -1;
#define CTL_SLOW_PD_TIMEOUT "5s"

static char *slurp(const char *path);

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
	char conf[300];
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(run, sizeof(run), "%s/run", tmpdir);
	snprintf(sock, sizeof(sock), "%s/" OP_CTL_SOCK, run);
	snprintf(conf, sizeof(conf), "%s/op.conf", tmpdir);
	snprintf(logpath, sizeof(logpath), "%s/operatord.log", tmpdir);
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[operatord]\nruntime_dir = %s\nstate_dir = %s/state\nmode = %s\n"
	    "[subject.ratelimiter]\nredis = 127.0.0.1:1\nnodes = http://127.0.0.1:1\n",
	    run, tmpdir, setup_mode);
	if (setup_pd[0] != '\0')
		fprintf(f, "[subject.tikv]\npd = %s\ntimeout = " CTL_SLOW_PD_TIMEOUT "\n", setup_pd);
	fclose(f);
	daemon_pid = fork();
	if (daemon_pid == 0) {
		/* A failed assertion ends the test process without its teardown:
		 * the daemon goes with it, never left running. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		freopen(logpath, "w", stderr);
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
	char *log = NULL;

	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
		log = slurp(logpath);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	/* In the ASan+UBSan build, what the daemon did under abuse is checked too. */
	int bad = log != NULL && (strstr(log, "AddressSanitizer") != NULL ||
	    strstr(log, "LeakSanitizer") != NULL || strstr(log, "runtime error:") != NULL);
	if (bad)
		fprintf(stderr, "operatord log:\n%s\n", log);
	free(log);
	ck_assert_msg(!bad, "the daemon's log has a sanitizer report");
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


/* ---- helpers for the abuse tests ---- */

/* Runs a client binary (from env) to completion; stdout and stderr go to
 * files under tmpdir and are returned (malloc'd). Returns its exit code, or
 * -1 when it had to be killed after CTL_WAIT_MS. */
static int
run_client(const char *envname, const char *const *args, char **out, char **errout)
{
	char opath[320], epath[320];
	const char *bin = getenv(envname);
	const char *argv[32];
	size_t n = 0;
	int status;

	ck_assert_msg(bin != NULL, "%s is not set", envname);
	argv[n++] = bin;
	for (; *args && n < OP_ARRAY_LEN(argv) - 1; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	/* In tmpdir once a fixture made it; else beside it, named by our pid. */
	if (strstr(tmpdir, "XXXXXX") == NULL) {
		snprintf(opath, sizeof(opath), "%s/client.out", tmpdir);
		snprintf(epath, sizeof(epath), "%s/client.err", tmpdir);
	} else {
		snprintf(opath, sizeof(opath), "/tmp/check_ctl_client.%d.out", (int)getpid());
		snprintf(epath, sizeof(epath), "/tmp/check_ctl_client.%d.err", (int)getpid());
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int o = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(o, 1);
		dup2(e, 2);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	int rc = -1;
	for (int64_t end = op_mono_ms() + CTL_WAIT_MS;; op_sleep_ms(20)) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
			break;
		}
		if (op_mono_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			break;
		}
	}
	for (int i = 0; i < 2; i++) {
		char **dst = i ? errout : out;
		if (dst == NULL)
			continue;
		FILE *f = fopen(i ? epath : opath, "r");
		ck_assert_ptr_nonnull(f);
		fseek(f, 0, SEEK_END);
		long len = ftell(f);
		rewind(f);
		*dst = calloc(1, (size_t)len + 1);
		ck_assert_int_eq(fread(*dst, 1, (size_t)len, f), (size_t)len);
		fclose(f);
	}
	if (strstr(tmpdir, "XXXXXX") != NULL) {
		unlink(opath);
		unlink(epath);
	}
	return rc;
}

static int
opsend(const char *const *args, char **out, char **errout)
{
	const char *full[32] = {"--runtime-dir", run};
	size_t n = 2;

	for (; *args && n < OP_ARRAY_LEN(full) - 1; args++)
		full[n++] = *args;
	full[n] = NULL;
	return run_client("OPSEND_BIN", full, out, errout);
}

/* Sends one request (cmd and string args) on fd. */
static int
send_request(int fd, uint64_t id, const char *cmd, const char *a0, const char *a1)
{
	struct op_msg m;
	char err[256];
	json_object *b = json_object_new_object(), *args = json_object_new_array();

	json_object_object_add(b, "cmd", json_object_new_string(cmd));
	if (a0)
		json_object_array_add(args, json_object_new_string(a0));
	if (a1)
		json_object_array_add(args, json_object_new_string(a1));
	json_object_object_add(b, "args", args);
	op_msg_init(&m, OP_MSG_REQUEST, id, b);
	int rc = op_frame_write(fd, &m, err, sizeof(err));
	op_msg_clear(&m);
	return rc;
}

/* One request on a fresh connection; returns the reply body or NULL. */
static json_object *
request(const char *cmd, const char *a0, const char *a1)
{
	int fd = ctl_connect();

	if (fd < 0)
		return NULL;
	json_object *r = send_request(fd, 11, cmd, a0, a1) == 0 ? ctl_reply(fd) : NULL;
	close(fd);
	return r;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	if (f == NULL)
		return strdup("");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	if (fread(buf, 1, (size_t)len, f) != (size_t)len)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

/* ---- opsend and optail: --help, --version, bad options (no daemon needed) ---- */

START_TEST(test_client_usage)
{
	static const char *const help[] = {"--help", NULL}, *const ver[] = {"--version", NULL};
	static const char *const bad[] = {"--no-such-option", NULL};
	static const char *const envs[] = {"OPSEND_BIN", "OPTAIL_BIN"};
	static const char *const names[] = {"opsend", "optail"};

	for (int i = 0; i < 2; i++) {
		char *out, *err;
		ck_assert_int_eq(run_client(envs[i], help, &out, &err), 0);
		ck_assert_msg(strstr(out, "usage:") != NULL && strstr(out, names[i]) != NULL,
		    "%s --help printed no usage on stdout: %s", names[i], out);
		ck_assert_str_eq(err, "");
		if (i == 0) /* opsend's usage is the command table */
			for (size_t c = 0; c < OP_CTL_NCMDS; c++) {
				char line[64];
				snprintf(line, sizeof(line), "\n  %s", op_ctl_cmds[c].name);
				ck_assert_msg(strstr(out, line) != NULL, "usage lacks %s", op_ctl_cmds[c].name);
			}
		free(out);
		free(err);
		ck_assert_int_eq(run_client(envs[i], ver, &out, &err), 0);
		ck_assert_msg(strncmp(out, names[i], strlen(names[i])) == 0, "%s", out);
		free(out);
		free(err);
		ck_assert_int_eq(run_client(envs[i], bad, &out, &err), 2);
		ck_assert_str_eq(out, "");
		ck_assert_msg(strstr(err, "usage:") != NULL, "no usage on stderr: %s", err);
		free(out);
		free(err);
	}
}
END_TEST

/* ---- hole 8: events too big for one page are paged, never skipped ---- */

START_TEST(test_optail_big_events)
{
	int64_t ids[2];
	int nids = 0;
	char *reason = malloc(CTL_BIG_REASON + 1);

	/* Two open tickets (ratelimiter and tikv cannot be observed). */
	for (int64_t end = op_mono_ms() + CTL_WAIT_MS; nids < 2 && op_mono_ms() < end;
	    op_sleep_ms(100)) {
		json_object *r = request("tickets", "open", NULL);
		json_object *rows = op_json_arr(r, "result");
		nids = 0;
		for (size_t i = 0; rows && i < json_object_array_length(rows) && nids < 2; i++)
			ids[nids++] = op_json_int(json_object_array_get_idx(rows, i), "id", 0);
		json_object_put(r);
	}
	ck_assert_int_eq(nids, 2);
	/* Resolve both with a reason of 2.3 MiB: each event fits a frame, the
	 * two together do not. */
	memset(reason, 'r', CTL_BIG_REASON);
	reason[CTL_BIG_REASON] = '\0';
	for (int i = 0; i < 2; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%lld", (long long)ids[i]);
		json_object *r = request("resolve", id, reason);
		ck_assert_ptr_nonnull(r);
		/* The reply (the ticket with its events) may itself be too big to
		 * send; the resolution is committed either way. */
		ck_assert_msg(op_json_bool(r, "ok", 0) ||
		    strstr(op_json_str(r, "error", ""), "exceeds") != NULL, "%s",
		    op_json_str(r, "error", ""));
		json_object_put(r);
	}
	free(reason);
	json_object *st = request("status", NULL, NULL);
	int64_t last = op_json_int(op_json_obj(st, "result"), "last_seq", 0);
	json_object_put(st);
	ck_assert_int_gt(last, 0);

	/* optail replays every event, in order, without a gap. */
	static const char *const args[] = {"--runtime-dir", NULL, "--json", NULL};
	const char *a[4];
	memcpy(a, args, sizeof(a));
	a[1] = run;
	char *out, *err;
	int rc = run_client("OPTAIL_BIN", a, &out, &err);
	ck_assert_msg(rc == 0, "optail exited %d: %s", rc, err);
	int64_t want = 1;
	int resolved = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		json_object *ev = json_tokener_parse(line);
		ck_assert_msg(ev != NULL, "optail printed a line that is not JSON");
		int64_t seq = op_json_int(ev, "seq", 0);
		if (seq <= last) {
			ck_assert_msg(seq == want, "optail skipped from #%lld to #%lld", (long long)want,
			    (long long)seq);
			want++;
		}
		if (!strcmp(op_json_str(ev, "type", ""), "ticket_resolved") &&
		    strlen(op_json_str(op_json_obj(ev, "data"), "reason", "")) == CTL_BIG_REASON)
			resolved++;
		json_object_put(ev);
	}
	ck_assert_msg(want == last + 1, "optail stopped at #%lld of %lld", (long long)want - 1,
	    (long long)last);
	ck_assert_int_eq(resolved, 2);
	free(out);
	free(err);
}
END_TEST

/* ---- hole 14: a flood of mode changes kills no worker ---- */

START_TEST(test_flood_kills_no_worker)
{
	int fds[4];
	int ok = 0, busy = 0;
	int64_t t0 = op_mono_ms();

	for (int i = 0; i < 4; i++) {
		fds[i] = ctl_connect();
		ck_assert_int_ge(fds[i], 0);
	}
	for (int sent = 0; sent < CTL_FLOOD;) {
		for (int i = 0; i < 4 && sent < CTL_FLOOD; i++) {
			int n = 0;
			for (; n < CTL_FLOOD_BATCH && sent < CTL_FLOOD; n++, sent++)
				ck_assert_int_eq(send_request(fds[i], (uint64_t)sent + 1, "mode",
				    sent % 2 ? "observe" : "approve", NULL), 0);
			for (int k = 0; k < n; k++) {
				json_object *r = ctl_reply(fds[i]);
				ck_assert_msg(r != NULL, "no reply in the flood");
				if (op_json_bool(r, "ok", 0))
					ok++;
				else if (strstr(op_json_str(r, "error", ""), "busy") != NULL)
					busy++;
				else
					ck_abort_msg("flood reply: %s", op_json_str(r, "error", ""));
				json_object_put(r);
			}
		}
	}
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	ck_assert_int_eq(ok + busy, CTL_FLOOD);
	/* Requests the busy observer must answer itself cannot be coalesced:
	 * beyond a high-water mark they are refused at once, "busy". */
	int fd = ctl_connect();
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < CTL_OBSERVE_FLOOD; i++)
		ck_assert_int_eq(send_request(fd, 100000 + (uint64_t)i, "observe", "tikv", NULL), 0);
	int refused = 0;
	while (refused == 0) {
		json_object *r = ctl_reply(fd);
		ck_assert_msg(r != NULL, "%d observe requests to a busy observer: none refused",
		    CTL_OBSERVE_FLOOD);
		refused = strstr(op_json_str(r, "error", ""), "busy") != NULL;
		json_object_put(r);
	}
	close(fd);
	fprintf(stderr, "flood: %d requests answered ok, %d busy, in %lld ms\n", ok, busy,
	    (long long)(op_mono_ms() - t0));
	/* Every worker is still the one it was: none was killed for being behind. */
	json_object *s = ctl_status();
	ck_assert_msg(s && op_json_bool(s, "ok", 0), "daemon stopped answering after the flood");
	json_object *ws = op_json_arr(op_json_obj(s, "result"), "workers");
	ck_assert_int_eq(json_object_array_length(ws), 5);
	for (size_t i = 0; i < json_object_array_length(ws); i++) {
		json_object *w = json_object_array_get_idx(ws, i);
		ck_assert_msg(op_json_int(w, "restarts", 0) == 0 && !strcmp(op_json_str(w, "state", ""),
		    "ready"), "%s was restarted (%s, %lld restarts, last exit %s) by a flood of %d "
		    "requests (%d ok, %d busy)", op_json_str(w, "name", ""), op_json_str(w, "state", ""),
		    (long long)op_json_int(w, "restarts", 0), op_json_str(w, "last_exit", ""), CTL_FLOOD,
		    ok, busy);
	}
	json_object_put(s);
	ck_assert_int_eq(kill(daemon_pid, 0), 0);
}
END_TEST

/* ---- hole 15: connections that hold half a frame, or nothing, lock no one out ---- */

START_TEST(test_no_lockout)
{
	static const char *const status[] = {"status", NULL};
	int holders[CTL_HOLDERS], idlers[CTL_IDLERS];
	/* A header announcing 100 bytes, then one byte of them: 5 bytes. */
	static const uint8_t partial[] = {0, 0, 0, 100, 0x85};

	for (int i = 0; i < CTL_HOLDERS; i++) {
		holders[i] = ctl_connect();
		ck_assert_int_ge(holders[i], 0);
		ck_assert_int_eq(op_write_all(holders[i], partial, sizeof(partial)), 0);
	}
	/* While they hold: an operator still gets in. */
	char *out, *err;
	int rc = opsend(status, &out, &err);
	ck_assert_msg(rc == 0, "opsend status failed (%d) while %d connections held a partial "
	    "frame: %s", rc, CTL_HOLDERS, err);
	ck_assert_msg(strstr(out, "observer") != NULL, "%s", out);
	free(out);
	free(err);
	/* And each holder is told its frame took too long, then hung up on. */
	for (int i = 0; i < CTL_HOLDERS; i++) {
		json_object *r = ctl_reply(holders[i]);
		ck_assert_msg(r != NULL, "holder %d: no error after its partial frame", i);
		ck_assert_msg(strstr(op_json_str(r, "error", ""), "not completed") != NULL, "%s",
		    op_json_str(r, "error", ""));
		json_object_put(r);
		char c;
		ck_assert_int_eq(read(holders[i], &c, 1), 0);
		close(holders[i]);
	}
	/* More silent connections than the daemon has slots: root still gets in
	 * (the idlest connection makes room). */
	for (int i = 0; i < CTL_IDLERS; i++) {
		idlers[i] = ctl_connect();
		ck_assert_int_ge(idlers[i], 0);
	}
	rc = opsend(status, &out, &err);
	ck_assert_msg(rc == 0, "opsend status failed (%d) with %d idle connections open: %s", rc,
	    CTL_IDLERS, err);
	free(out);
	free(err);
	for (int i = 0; i < CTL_IDLERS; i++)
		close(idlers[i]);
}
END_TEST

/* ---- hole 16: a message type with a newline cannot forge a log line ---- */

START_TEST(test_log_forging)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	/* (the decoder quotes the first 40 bytes of a type it does not know) */
	static const char forged[] = "req\x1b[2J\noperatord[1]: error: FORGED LINE";
	int fd = ctl_connect();

	ck_assert_int_ge(fd, 0);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 5);
	msgpack_pack_str_with_body(&pk, "v", 1);
	msgpack_pack_uint32(&pk, OP_PROTO_VERSION);
	msgpack_pack_str_with_body(&pk, "type", 4);
	msgpack_pack_str_with_body(&pk, forged, sizeof(forged) - 1);
	msgpack_pack_str_with_body(&pk, "id", 2);
	msgpack_pack_uint64(&pk, 5);
	msgpack_pack_str_with_body(&pk, "ts", 2);
	msgpack_pack_int64(&pk, 0);
	msgpack_pack_str_with_body(&pk, "body", 4);
	msgpack_pack_map(&pk, 0);
	uint32_t be = htonl((uint32_t)sb.size);
	ck_assert_int_eq(op_write_all(fd, &be, 4), 0);
	ck_assert_int_eq(op_write_all(fd, sb.data, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
	json_object *r = ctl_reply(fd);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(strstr(op_json_str(r, "error", ""), "unknown message type") != NULL, "%s",
	    op_json_str(r, "error", ""));
	json_object_put(r);
	close(fd);
	/* The daemon logged the refusal: on one line, the newline escaped. */
	char *log = NULL;
	for (int64_t end = op_mono_ms() + CTL_WAIT_MS; op_mono_ms() < end; op_sleep_ms(100)) {
		free(log);
		log = slurp(logpath);
		if (strstr(log, "unknown message type") != NULL)
			break;
	}
	ck_assert_msg(strstr(log, "unknown message type") != NULL, "the refusal was not logged");
	ck_assert_msg(strstr(log, "\nFORGED") == NULL && strstr(log, "\noperatord[1]") == NULL,
	    "a forged line reached the log:\n%s", log);
	ck_assert_msg(strstr(log, "\x1b") == NULL, "an escape sequence reached the log");
	ck_assert_msg(strstr(log, "req\\x1b[2J\\noperatord[1]: error: FORGED") != NULL,
	    "the type was not logged escaped:\n%s", log);
	free(log);
}
END_TEST

static void
setup_observe_two(void)
{
	setup_mode = "observe";
	snprintf(setup_pd, sizeof(setup_pd), "http://127.0.0.1:1");
	setup();
}

/* A TCP listener that never accepts: connections complete in the kernel's
 * backlog, requests are never answered. */
static void
setup_slow_pd(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	blackhole = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(blackhole, 0);
	ck_assert_int_eq(bind(blackhole, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(blackhole, 128), 0);
	ck_assert_int_eq(getsockname(blackhole, (struct sockaddr *)&sa, &sl), 0);
	snprintf(setup_pd, sizeof(setup_pd), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	setup();
}

static void
teardown_pd(void)
{
	teardown();
	setup_mode = "execute";
	setup_pd[0] = '\0';
	if (blackhole >= 0)
		close(blackhole);
	blackhole = -1;
}

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

	TCase *tu = tcase_create("client_usage");
	tcase_add_test(tu, test_client_usage);
	suite_add_tcase(s, tu);

	TCase *ta = tcase_create("abuse");
	tcase_add_checked_fixture(ta, setup, teardown);
	tcase_set_timeout(ta, 120);
	tcase_add_test(ta, test_no_lockout);
	tcase_add_test(ta, test_log_forging);
	suite_add_tcase(s, ta);

	TCase *tf = tcase_create("flood");
	tcase_add_checked_fixture(tf, setup_slow_pd, teardown_pd);
	tcase_set_timeout(tf, 120);
	tcase_add_test(tf, test_flood_kills_no_worker);
	suite_add_tcase(s, tf);

	TCase *tp = tcase_create("paging");
	tcase_add_checked_fixture(tp, setup_observe_two, teardown_pd);
	tcase_set_timeout(tp, 120);
	tcase_add_test(tp, test_optail_big_events);
	suite_add_tcase(s, tp);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
