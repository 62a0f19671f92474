#include "clients/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "protocol/frame.h"

const char *
client_runtime_dir(const char *flag)
{
	const char *env = getenv("OPERATORD_RUNTIME_DIR");

	if (flag != NULL)
		return flag;
	if (env != NULL && *env != '\0')
		return env;
	return CLIENT_DEFAULT_RUNTIME;
}

int
client_connect(const char *runtime_dir, const char *name)
{
	char path[4200], err[4300];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", runtime_dir, name);
	fd = op_frame_connect(path, err, sizeof(err));
	if (fd < 0)
		fprintf(stderr, "operatord is not running (%s)\n", err);
	return fd;
}

int
client_request(int fd, const char *cmd, json_object *args, json_object **reply)
{
	struct op_msg m, r;
	uint64_t id;
	char err[256];

	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint64_t)op_wall_ms();
	id |= 1;
	json_object *b = json_object_new_object();
	json_object_object_add(b, "cmd", json_object_new_string(cmd));
	json_object_object_add(b, "args", args ? args : json_object_new_array());
	op_msg_init(&m, OP_MSG_REQUEST, id, b);
	int rc = op_frame_write(fd, &m, err, sizeof(err));
	op_msg_clear(&m);
	if (rc != 0) {
		fprintf(stderr, "cannot send to operatord: %s\n", err);
		return CLIENT_EXIT_NOT_RUNNING;
	}
	for (;;) {
		if (op_frame_read(fd, &r, CLIENT_REPLY_TIMEOUT_MS, err, sizeof(err)) != 0) {
			fprintf(stderr, "no answer from operatord: %s\n", err);
			return CLIENT_EXIT_FAILED;
		}
		if (r.id == id || r.id == 0)
			break;
		op_msg_clear(&r);
	}
	*reply = json_object_get(r.body);
	op_msg_clear(&r);
	return 0;
}

void
client_put(FILE *f, const char *fmt, const char *s)
{
	size_t cap = strlen(s) * 4 + 1; /* every byte may become \xNN */
	char *e = malloc(cap);

	if (e == NULL)
		return;
	log_escape(e, cap, s);
	fprintf(f, fmt, e);
	free(e);
}

void
client_print_event(json_object *ev, int as_json)
{
	json_object *ts;
	char tsbuf[OP_TS_LEN];

	/* Rows replayed from the ledger carry ms; live ones RFC 3339. */
	if (json_object_object_get_ex(ev, "ts", &ts) && json_object_is_type(ts, json_type_int)) {
		op_rfc3339(json_object_get_int64(ts), tsbuf);
		json_object_object_add(ev, "ts", json_object_new_string(tsbuf));
	}
	json_object_object_foreach(ev, k, v)
	{
		if (v == NULL)
			json_object_object_del(ev, k);
	}
	if (as_json) {
		printf("%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		json_object *data = op_json_obj(ev, "data");
		/* Text in events comes from subjects, models and operators: its
		 * control characters are shown escaped, never sent to the terminal. */
		client_put(stdout, "%s", op_json_str(ev, "ts", ""));
		printf(" #%lld ", (long long)op_json_int(ev, "seq", 0));
		client_put(stdout, "%-24s", op_json_str(ev, "type", ""));
		if (op_json_int(ev, "ticket", 0))
			printf(" ticket=%lld", (long long)op_json_int(ev, "ticket", 0));
		if (op_json_str(ev, "subject", NULL))
			client_put(stdout, " %s", op_json_str(ev, "subject", ""));
		if (op_json_str(ev, "invariant", NULL))
			client_put(stdout, " %s", op_json_str(ev, "invariant", ""));
		if (op_json_str(ev, "entity", NULL))
			client_put(stdout, " [%s]", op_json_str(ev, "entity", ""));
		const char *hint = op_json_str(data, "message", NULL);
		if (hint == NULL)
			hint = op_json_str(data, "primary_diagnosis", NULL);
		if (hint == NULL)
			hint = op_json_str(data, "reason", NULL);
		if (hint == NULL)
			hint = op_json_str(data, "action", NULL);
		if (hint != NULL)
			client_put(stdout, " — %s", hint);
		if (op_json_str(data, "result", NULL))
			client_put(stdout, " (%s)", op_json_str(data, "result", ""));
		printf("\n");
	}
	fflush(stdout);
}
