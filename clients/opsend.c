/* opsend: sends one command to a running operatord and prints the answer.
 * Exit codes: 0 ok, 1 failed, 2 usage, 3 daemon not running. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include <unistd.h>

static void
usage(void)
{
	fprintf(stderr,
	    "usage: opsend [--json] [--runtime-dir DIR] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  status | workers | tickets [open] | ticket [show] ID | actions | faults\n"
	    "  events [SINCE [LIMIT]] | observe SUBJECT\n"
	    "  mode [observe|approve|execute] | kill-switch [on|off]\n"
	    "  approve ACTION_ID | reject ACTION_ID [--reason TEXT]\n"
	    "  chaos inject FAULT [key=value ...] | chaos list\n"
	    "  restart WORKER | reload | shutdown\n"
	    "The runtime directory defaults to $OPERATORD_RUNTIME_DIR or " CLIENT_DEFAULT_RUNTIME ".\n");
	exit(CLIENT_EXIT_USAGE);
}

static void
print_status(json_object *s)
{
	json_object *ws = op_json_arr(s, "workers");

	printf("operatord %s, pid %lld, mode %s, kill switch %s, up %llds\n",
	    op_json_str(s, "version", "?"), (long long)op_json_int(s, "pid", 0),
	    op_json_str(s, "mode", "?"), op_json_bool(s, "kill_switch", 0) ? "ON" : "off",
	    (long long)(op_json_int(s, "uptime_ms", 0) / 1000));
	printf("%-10s %-8s %-9s %-8s %s\n", "WORKER", "PID", "STATE", "RESTARTS", "LAST EXIT");
	for (size_t i = 0; ws && i < json_object_array_length(ws); i++) {
		json_object *w = json_object_array_get_idx(ws, i);
		printf("%-10s %-8lld %-9s %-8lld %s\n", op_json_str(w, "name", ""),
		    (long long)op_json_int(w, "pid", 0), op_json_str(w, "state", ""),
		    (long long)op_json_int(w, "restarts", 0), op_json_str(w, "last_exit", ""));
	}
	json_object *ts = op_json_arr(s, "tickets");
	for (size_t i = 0; ts && i < json_object_array_length(ts); i++) {
		json_object *t = json_object_array_get_idx(ts, i);
		printf("%s%s=%lld", i ? ", " : "tickets: ", op_json_str(t, "status", ""),
		    (long long)op_json_int(t, "count", 0));
	}
	printf("\n");
}

static void
print_tickets(json_object *arr)
{
	char ts[OP_TS_LEN];

	printf("%-5s %-18s %-24s %-14s %s\n", "ID", "STATUS", "OPENED", "INVARIANT", "ENTITY");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *t = json_object_array_get_idx(arr, i);
		op_rfc3339(op_json_int(t, "opened_at", 0), ts);
		printf("%-5lld %-18s %-24s %-14s %s/%s\n", (long long)op_json_int(t, "id", 0),
		    op_json_str(t, "status", ""), ts, op_json_str(t, "invariant", ""),
		    op_json_str(t, "subject", ""), op_json_str(t, "entity", ""));
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"runtime-dir", required_argument, NULL, 'r'},
		{"reason", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *rtdir = NULL, *reason = NULL;
	int as_json = 0, ch, rc, fd;
	json_object *reply = NULL;

	/* "+" stops at the command so chaos parameters are not taken for options. */
	while ((ch = getopt_long(argc, argv, "+jr:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': as_json = 1; break;
		case 'r': rtdir = optarg; break;
		case 'R': reason = optarg; break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	const char *cmd = argv[optind++];
	json_object *args = json_object_new_array();
	if (!strcmp(cmd, "ticket") && optind < argc && !strcmp(argv[optind], "show"))
		optind++;
	for (int i = optind; i < argc; i++) {
		if (!strcmp(argv[i], "--reason") && i + 1 < argc) {
			reason = argv[++i];
			continue;
		}
		if (!strcmp(argv[i], "--json")) {
			as_json = 1;
			continue;
		}
		json_object_array_add(args, json_object_new_string(argv[i]));
	}
	if (reason != NULL)
		json_object_array_add(args, json_object_new_string(reason));
	if ((fd = client_connect(client_runtime_dir(rtdir), "ctl.sock")) < 0) {
		json_object_put(args);
		return CLIENT_EXIT_NOT_RUNNING;
	}
	rc = client_request(fd, cmd, args, &reply);
	close(fd);
	if (rc != 0)
		return rc;
	if (!op_json_bool(reply, "ok", 0)) {
		fprintf(stderr, "opsend: %s\n", op_json_str(reply, "error", "failed"));
		if (as_json)
			printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
		json_object_put(reply);
		return CLIENT_EXIT_FAILED;
	}
	json_object *res = NULL;
	json_object_object_get_ex(reply, "result", &res);
	if (as_json)
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	else if (!strcmp(cmd, "status") && res)
		print_status(res);
	else if (!strcmp(cmd, "tickets") && json_object_is_type(res, json_type_array))
		print_tickets(res);
	else if (json_object_is_type(res, json_type_string))
		printf("%s\n", json_object_get_string(res));
	else
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(reply);
	return CLIENT_EXIT_OK;
}
