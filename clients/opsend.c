/* opsend: sends one command to a running operatord and prints the answer.
 * Exit codes: 0 ok, 1 failed, 2 usage, 3 daemon not running. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include <unistd.h>

static void usage(FILE *f, int code) __attribute__((noreturn));

static void
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: opsend [--json] [--runtime-dir DIR] COMMAND [ARGS]\n"
	    "       opsend --help | --version\n"
	    "Sends one command to a running operatord and prints the answer.\n"
	    "commands:\n");
	op_ctl_usage(f);
	fprintf(f,
	    "The runtime directory defaults to $OPERATORD_RUNTIME_DIR or " CLIENT_DEFAULT_RUNTIME ".\n"
	    "Exit codes: 0 ok, 1 failed (\"busy\" means retry), 2 usage, 3 daemon not running.\n");
	exit(code);
}

static void
print_safety(json_object *sf)
{
	json_object *b = op_json_arr(sf, "budgets"), *lim = op_json_obj(sf, "limits");
	json_object *dz = op_json_obj(sf, "destructive_today"), *lv = op_json_arr(sf, "levels");

	if (sf == NULL)
		return;
	printf("budgets: per action %lld/%llds, per subject %lld/%llds (0 = unlimited)\n",
	    (long long)op_json_int(lim, "per_action", 0),
	    (long long)op_json_int(lim, "per_action_period_s", 0),
	    (long long)op_json_int(lim, "per_subject", 0),
	    (long long)op_json_int(lim, "per_subject_period_s", 0));
	for (size_t i = 0; b && i < json_object_array_length(b); i++) {
		json_object *x = json_object_array_get_idx(b, i);
		printf("  %-40s %.2f of %lld left\n", op_json_str(x, "scope", ""),
		    op_json_double(x, "left", 0), (long long)op_json_int(x, "capacity", 0));
	}
	if (op_json_int(dz, "cap", 0) > 0)
		printf("destructive actions today: %lld of %lld (%lld left)\n",
		    (long long)op_json_int(dz, "used", 0), (long long)op_json_int(dz, "cap", 0),
		    (long long)op_json_int(dz, "left", 0));
	else
		printf("destructive actions today: %lld (no cap)\n", (long long)op_json_int(dz, "used", 0));
	for (size_t i = 0; lv && i < json_object_array_length(lv); i++) {
		json_object *x = json_object_array_get_idx(lv, i);
		printf("level %s/%s: %s (%lld verified, %lld failed)\n", op_json_str(x, "subject", "*"),
		    op_json_str(x, "action", ""), op_json_str(x, "level", ""),
		    (long long)op_json_int(x, "successes", 0), (long long)op_json_int(x, "failures", 0));
	}
	json_object *p = op_json_arr(sf, "pending");
	for (size_t i = 0; p && i < json_object_array_length(p); i++) {
		json_object *x = json_object_array_get_idx(p, i);
		printf("%s%s=%lld", i ? ", " : "actions: ", op_json_str(x, "status", ""),
		    (long long)op_json_int(x, "count", 0));
	}
	if (p && json_object_array_length(p) > 0)
		printf("\n");
}

static void
print_postmortem(json_object *pm)
{
	json_object *t = op_json_obj(pm, "ticket"), *tl = op_json_arr(pm, "timeline");
	json_object *fig = op_json_obj(pm, "figures"), *bud = op_json_obj(pm, "budgets");

	printf("POSTMORTEM ticket %lld: %s %s/%s (%s)\n", (long long)op_json_int(t, "id", 0),
	    op_json_str(t, "invariant", ""), op_json_str(t, "subject", ""),
	    op_json_str(t, "entity", ""), op_json_str(t, "status", ""));
	if (op_json_str(t, "reason", NULL))
		printf("outcome: %s\n", op_json_str(t, "reason", ""));
	printf("\nTIMELINE\n");
	for (size_t i = 0; tl && i < json_object_array_length(tl); i++) {
		json_object *e = json_object_array_get_idx(tl, i);
		char dur[32] = "";
		if (op_json_int(e, "duration_ms", -1) >= 0)
			snprintf(dur, sizeof(dur), " (%lld ms)", (long long)op_json_int(e, "duration_ms", 0));
		printf("  +%8.1fs %s %-12s %-24s %s%s\n", (double)op_json_int(e, "t_plus_ms", 0) / 1000.0,
		    op_json_str(e, "ts", ""), op_json_str(e, "phase", ""), op_json_str(e, "type", ""),
		    op_json_str(e, "what", ""), dur);
	}
	printf("\nFIGURES\n");
	if (fig) {
		json_object_object_foreach(fig, k, v)
			printf("  %-26s %lld ms\n", k, (long long)json_object_get_int64(v));
	}
	printf("\nEVIDENCE\n%s\n", json_object_to_json_string_ext(op_json_obj(pm, "evidence"),
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	printf("\nBUDGETS USED\n");
	json_object *u = op_json_arr(bud, "used");
	for (size_t i = 0; u && i < json_object_array_length(u); i++) {
		json_object *x = json_object_array_get_idx(u, i);
		printf("  action %lld %s (risk %s, %lld attempt(s)) left after: %s\n",
		    (long long)op_json_int(x, "action_id", 0), op_json_str(x, "action", ""),
		    op_json_str(x, "risk", ""), (long long)op_json_int(x, "attempts", 0),
		    json_object_to_json_string_ext(op_json_obj(x, "left_after"), JSON_C_TO_STRING_PLAIN));
	}
	if (u == NULL || json_object_array_length(u) == 0)
		printf("  none: no action ran\n");
	print_safety(op_json_obj(bud, "now"));
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
	print_safety(op_json_obj(s, "safety"));
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
		{"version", no_argument, NULL, 'V'},
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
		case 'h': usage(stdout, CLIENT_EXIT_OK);
		case 'V': printf("opsend %s\n", OP_VERSION); return CLIENT_EXIT_OK;
		default: usage(stderr, CLIENT_EXIT_USAGE);
		}
	}
	if (optind >= argc)
		usage(stderr, CLIENT_EXIT_USAGE);
	const char *cmd = argv[optind++];
	if (op_ctl_lookup(cmd) == NULL) {
		fprintf(stderr, "opsend: unknown command \"%s\"\n", cmd);
		usage(stderr, CLIENT_EXIT_USAGE);
	}
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
	if ((fd = client_connect(client_runtime_dir(rtdir), OP_CTL_SOCK)) < 0) {
		json_object_put(args);
		return CLIENT_EXIT_NOT_RUNNING;
	}
	rc = client_request(fd, cmd, args, &reply);
	close(fd);
	if (rc != 0)
		return rc;
	if (!op_json_bool(reply, "ok", 0)) {
		client_put(stderr, "opsend: %s\n", op_json_str(reply, "error", "failed"));
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
	else if ((!strcmp(cmd, "postmortem") || !strcmp(cmd, "ticket")) && op_json_arr(res, "timeline"))
		print_postmortem(res);
	else if (json_object_is_type(res, json_type_string))
		printf("%s\n", json_object_get_string(res));
	else
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(reply);
	return CLIENT_EXIT_OK;
}
