/* Unit tests: the frame codec (round trip, bounded decoding, every rejection
 * path) and the small common helpers. No nng here: check forks each test. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "common/log.h"
#include "protocol/ctl.h"
#include "protocol/msg.h"

static int
roundtrip(struct op_msg *in, struct op_msg *out, char *err, size_t errlen)
{
	msgpack_sbuffer sb;
	int rc;

	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(op_msg_encode(in, &sb), 0);
	rc = op_msg_decode(sb.data, sb.size, out, err, errlen);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

START_TEST(test_roundtrip_every_type)
{
	for (int t = 1; t < OP_MSG_COUNT; t++) {
		struct op_msg in, out;
		char err[256];
		json_object *b = json_object_new_object();
		/* Fill the required keys so the shape check passes. */
		const char *names[] = {"role", "pid", "mode", "kill_switch", "fingerprints", "subject",
			"invariant", "entity", "ok", "ticket", "ticket_id", "diagnosis", "action_id",
			"action", "params", "status", "result", "fault", "event", "cmd", "seq", "type"};
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			json_object_object_add(b, names[i], json_object_new_string("x"));
		json_object_object_add(b, "big", json_object_new_uint64(18446744073709551615ULL));
		json_object_object_add(b, "neg", json_object_new_int64(-42));
		json_object_object_add(b, "dbl", json_object_new_double(2.5));
		json_object *arr = json_object_new_array();
		json_object_array_add(arr, json_object_new_boolean(1));
		json_object_array_add(arr, NULL);
		json_object_object_add(b, "arr", arr);
		op_msg_init(&in, (enum op_msg_type)t, 0xfffffffffffffff0ULL, b);
		ck_assert_msg(roundtrip(&in, &out, err, sizeof(err)) == 0, "%s: %s",
		    op_msg_type_name((enum op_msg_type)t), err);
		ck_assert_int_eq(out.type, t);
		ck_assert(out.id == 0xfffffffffffffff0ULL);
		ck_assert_int_eq(out.ts, in.ts);
		ck_assert_msg(json_object_equal(in.body, out.body), "body differs for %s",
		    op_msg_type_name((enum op_msg_type)t));
		ck_assert(op_json_u64(out.body, "big", 0) == 18446744073709551615ULL);
		op_msg_clear(&in);
		op_msg_clear(&out);
	}
}
END_TEST

static void
expect_reject(const void *buf, size_t len, const char *needle)
{
	struct op_msg m;
	char err[256];

	ck_assert_int_eq(op_msg_decode(buf, len, &m, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
	ck_assert_ptr_null(m.body);
}

START_TEST(test_hostile_lengths)
{
	/* array32 claiming 0xff000000 elements: msgpack-c would try ~96 GB. */
	static const uint8_t a32[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
	static const uint8_t m32[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'v'};
	static const uint8_t s32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
	static const uint8_t bad[] = {0xc1};

	expect_reject(a32, sizeof(a32), "exceeds frame size");
	expect_reject(m32, sizeof(m32), "exceeds frame size");
	expect_reject(s32, sizeof(s32), "truncated");
	expect_reject(bad, sizeof(bad), "invalid msgpack byte");
	expect_reject("", 0, "empty frame");
}
END_TEST

START_TEST(test_depth_and_shape)
{
	uint8_t deep[200];
	msgpack_sbuffer sb;
	msgpack_packer pk;

	memset(deep, 0x91, sizeof(deep)); /* nested fixarrays of one element */
	deep[sizeof(deep) - 1] = 0x01;
	expect_reject(deep, sizeof(deep), "nesting deeper");

	/* Not a map. */
	static const uint8_t arr[] = {0x90};
	expect_reject(arr, sizeof(arr), "not a map");

	/* Wrong version, unknown type, missing body key, trailing bytes. */
	struct op_msg m;
	op_msg_init(&m, OP_MSG_HELLO, 1, json_object_new_object());
	msgpack_sbuffer_init(&sb);
	op_msg_encode(&m, &sb);
	expect_reject(sb.data, sb.size, "lacks body key \"role\"");
	msgpack_sbuffer_destroy(&sb);
	op_msg_clear(&m);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "v", 1);
	msgpack_pack_uint32(&pk, 99);
	msgpack_pack_str(&pk, 4);
	msgpack_pack_str_body(&pk, "type", 4);
	msgpack_pack_str(&pk, 5);
	msgpack_pack_str_body(&pk, "hello", 5);
	expect_reject(sb.data, sb.size, "unsupported protocol version 99");
	msgpack_sbuffer_destroy(&sb);

	json_object *b = json_object_new_object();
	json_object_object_add(b, "role", json_object_new_string("x"));
	json_object_object_add(b, "pid", json_object_new_int(1));
	op_msg_init(&m, OP_MSG_HELLO, 1, b);
	msgpack_sbuffer_init(&sb);
	op_msg_encode(&m, &sb);
	msgpack_sbuffer_write(&sb, "\x00", 1);
	expect_reject(sb.data, sb.size, "trailing bytes");
	/* Every truncation of a valid frame is rejected cleanly. */
	for (size_t n = 1; n < sb.size - 1; n++)
		expect_reject(sb.data, n, "");
	msgpack_sbuffer_destroy(&sb);
	op_msg_clear(&m);
}
END_TEST

START_TEST(test_random_garbage)
{
	uint8_t buf[512];
	struct op_msg m;
	char err[256];

	srandom(12345);
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(random() % sizeof(buf)) + 1;
		for (size_t j = 0; j < n; j++)
			buf[j] = (uint8_t)random();
		if (op_msg_decode(buf, n, &m, err, sizeof(err)) == 0)
			op_msg_clear(&m);
		else
			ck_assert(err[0] != '\0');
	}
}
END_TEST

START_TEST(test_durations)
{
	int64_t ms;

	ck_assert_int_eq(op_parse_duration("5s", &ms), 0);
	ck_assert_int_eq(ms, 5000);
	ck_assert_int_eq(op_parse_duration("250ms", &ms), 0);
	ck_assert_int_eq(ms, 250);
	ck_assert_int_eq(op_parse_duration("1m30s", &ms), 0);
	ck_assert_int_eq(ms, 90000);
	ck_assert_int_eq(op_parse_duration("2", &ms), 0);
	ck_assert_int_eq(ms, 2000);
	ck_assert_int_eq(op_parse_duration("1.5h", &ms), 0);
	ck_assert_int_eq(ms, 5400000);
	ck_assert_int_eq(op_parse_duration("", &ms), -1);
	ck_assert_int_eq(op_parse_duration("-1s", &ms), -1);
	ck_assert_int_eq(op_parse_duration("5 parsecs", &ms), -1);
	ck_assert_int_eq(op_parse_duration("5x", &ms), -1);
}
END_TEST

START_TEST(test_rfc3339_and_config)
{
	char ts[OP_TS_LEN], err[256];
	int64_t v;

	op_rfc3339(0, ts);
	ck_assert_str_eq(ts, "1970-01-01T00:00:00.000Z");
	op_rfc3339(1795486232873, ts);
	ck_assert_str_eq(ts, "2026-11-24T02:10:32.873Z");
	struct op_config *c = op_config_parse(
	    "[operatord]\nmode = execute ; inline comment\nverify_delay = 5s\n"
	    "[subject.ratelimiter]\nredis = 127.0.0.1:6379\n", err, sizeof(err));
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(op_config_get(c, "operatord", "mode"), "execute");
	ck_assert_int_eq(op_config_duration(c, "operatord", "verify_delay", 1, &v, err, sizeof(err)), 0);
	ck_assert_int_eq(v, 5000);
	ck_assert_int_eq(op_config_int(c, "operatord", "mode", 0, 0, 9, &v, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "[operatord] mode") != NULL, "%s", err);
	ck_assert(op_config_has_section(c, "subject.ratelimiter"));
	op_config_free(c);
	ck_assert_ptr_null(op_config_parse("[broken\nx=1\n", err, sizeof(err)));
	ck_assert_ptr_null(op_config_load("/nonexistent/op.conf", err, sizeof(err)));
	ck_assert_msg(strstr(err, "cannot open") != NULL, "%s", err);
}
END_TEST

START_TEST(test_json_parse_errors)
{
	char err[256];
	json_object *o;

	ck_assert_ptr_null(op_json_parse("{\"a\":", 5, err, sizeof(err)));
	ck_assert_msg(strstr(err, "truncated") != NULL, "%s", err);
	ck_assert_ptr_null(op_json_parse("{\"a\" 1}", 7, err, sizeof(err)));
	ck_assert_msg(strstr(err, "invalid JSON at offset") != NULL, "%s", err);
	ck_assert_ptr_null(op_json_parse("{} x", 4, err, sizeof(err)));
	ck_assert_msg(strstr(err, "trailing") != NULL, "%s", err);
	o = op_json_parse("{\"id\":18446744073709551615}", 27, err, sizeof(err));
	ck_assert_ptr_nonnull(o);
	ck_assert(op_json_u64(o, "id", 0) == 18446744073709551615ULL);
	json_object_put(o);
}
END_TEST

/* The control command table: one row per command, looked up by name, and
 * the mutation rule opsend's usage and the daemon's permission check share. */
START_TEST(test_ctl_table)
{
	char names[512];

	op_ctl_names(names, sizeof(names));
	for (size_t i = 0; i < OP_CTL_NCMDS; i++) {
		const struct op_ctl_cmd_info *c = &op_ctl_cmds[i];
		ck_assert_int_eq(c->cmd, (int)i);
		ck_assert_ptr_eq(op_ctl_lookup(c->name), c);
		ck_assert_msg(c->help[0] != '\0', "%s has no help", c->name);
		ck_assert_msg(strstr(names, c->name) != NULL, "%s missing from the names", c->name);
	}
	ck_assert_ptr_null(op_ctl_lookup("launch-missiles"));
	ck_assert_ptr_null(op_ctl_lookup(NULL));
	ck_assert_int_eq(op_ctl_mutates(op_ctl_lookup("status"), 0), 0);
	ck_assert_int_eq(op_ctl_mutates(op_ctl_lookup("mode"), 0), 0);     /* a query */
	ck_assert_int_eq(op_ctl_mutates(op_ctl_lookup("mode"), 1), 1);
	ck_assert_int_eq(op_ctl_mutates(op_ctl_lookup("kill-switch"), 1), 1);
	ck_assert_int_eq(op_ctl_mutates(op_ctl_lookup("shutdown"), 0), 1);
	ck_assert_int_eq(op_ctl_mutates(op_ctl_lookup("chaos"), 1), 1);
	/* The kill switch is never refused as busy. */
	ck_assert_int_eq(op_ctl_lookup("kill-switch")->flags & OP_CTL_TO_WORKERS, 0);
}
END_TEST

/* Log lines: control characters from outside are escaped, never cut in half. */
START_TEST(test_log_escape)
{
	char b[64];

	log_escape(b, sizeof(b), "a\nb\r\t\x1b[2J\xc2\x9b" "c\xc3\xa9\x7f");
	ck_assert_str_eq(b, "a\\nb\\r\\t\\x1b[2J\\x9bc\xc3\xa9\\x7f");
	ck_assert_uint_eq(log_escape(b, 6, "\n\n\n"), 4);
	ck_assert_str_eq(b, "\\n\\n");
	ck_assert_uint_eq(log_escape(b, 1, "x"), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("codec");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_roundtrip_every_type);
	tcase_add_test(tc, test_hostile_lengths);
	tcase_add_test(tc, test_depth_and_shape);
	tcase_add_test(tc, test_random_garbage);
	tcase_add_test(tc, test_durations);
	tcase_add_test(tc, test_rfc3339_and_config);
	tcase_add_test(tc, test_json_parse_errors);
	tcase_add_test(tc, test_ctl_table);
	tcase_add_test(tc, test_log_escape);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
