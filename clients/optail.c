/* optail: the event stream. Replays from the ledger, then follows the PUB
 * socket; a gap in seq (PUB drops under load) is backfilled from the ledger,
 * so nothing is lost and nothing printed twice. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/frame.h"
#include <unistd.h>

#define OPTAIL_PAGE 1000          /* events fetched per replay request */

struct optail {
	int as_json;
	int64_t last;        /* highest seq printed */
	const char *type, *subject;
	int64_t ticket;
	int ctl;
};

static void
usage(void)
{
	fprintf(stderr, "usage: optail [--json] [--since SEQ] [--follow] [--type TYPE] "
	    "[--ticket ID] [--subject NAME] [--runtime-dir DIR]\n");
	exit(CLIENT_EXIT_USAGE);
}

static void
emit(struct optail *t, json_object *ev)
{
	int64_t seq = op_json_int(ev, "seq", 0);

	if (seq <= t->last)
		return;
	t->last = seq;
	if (t->type && strcmp(op_json_str(ev, "type", ""), t->type) != 0)
		return;
	if (t->subject && strcmp(op_json_str(ev, "subject", ""), t->subject) != 0)
		return;
	if (t->ticket && op_json_int(ev, "ticket", 0) != t->ticket)
		return;
	client_print_event(ev, t->as_json);
}

/* Fetches and prints everything after t->last. Returns 0 or an exit code. */
static int
backfill(struct optail *t)
{
	for (;;) {
		json_object *args = json_object_new_array(), *reply = NULL, *rows;
		char since[32], lim[16];
		snprintf(since, sizeof(since), "%lld", (long long)t->last);
		snprintf(lim, sizeof(lim), "%d", OPTAIL_PAGE);
		json_object_array_add(args, json_object_new_string(since));
		json_object_array_add(args, json_object_new_string(lim));
		int rc = client_request(t->ctl, "events", args, &reply);
		if (rc != 0)
			return rc;
		rows = op_json_arr(reply, "result");
		size_t n = rows ? json_object_array_length(rows) : 0;
		int64_t before = t->last;
		for (size_t i = 0; i < n; i++)
			emit(t, json_object_array_get_idx(rows, i));
		json_object_put(reply);
		if (n < OPTAIL_PAGE)
			return 0;
		if (t->last == before) {
			fprintf(stderr, "optail: the daemon keeps returning events before #%lld\n",
			    (long long)before);
			return CLIENT_EXIT_FAILED;
		}
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"since", required_argument, NULL, 's'},
		{"follow", no_argument, NULL, 'f'},
		{"type", required_argument, NULL, 't'},
		{"ticket", required_argument, NULL, 'T'},
		{"subject", required_argument, NULL, 'S'},
		{"runtime-dir", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct optail t = {0};
	const char *rtdir = NULL;
	int follow = 0, ch, rc, sub = -1;
	char err[256];

	while ((ch = getopt_long(argc, argv, "js:ft:T:S:r:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': t.as_json = 1; break;
		case 's':
			if (op_parse_int(optarg, 0, INT64_MAX, &t.last) != 0)
				usage();
			break;
		case 'f': follow = 1; break;
		case 't': t.type = optarg; break;
		case 'T':
			if (op_parse_int(optarg, 1, INT64_MAX, &t.ticket) != 0)
				usage();
			break;
		case 'S': t.subject = optarg; break;
		case 'r': rtdir = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	rtdir = client_runtime_dir(rtdir);
	if ((t.ctl = client_connect(rtdir, "ctl.sock")) < 0)
		return CLIENT_EXIT_NOT_RUNNING;
	/* Subscribe before replaying so nothing falls between the two. */
	if (follow && (sub = client_connect(rtdir, "events.sock")) < 0) {
		close(t.ctl);
		return CLIENT_EXIT_NOT_RUNNING;
	}
	if ((rc = backfill(&t)) != 0 || !follow) {
		close(t.ctl);
		return rc;
	}
	for (;;) {
		struct op_msg m;
		/* No timeout: a partial frame must never be abandoned mid-stream. */
		if (op_frame_read(sub, &m, -1, err, sizeof(err)) != 0) {
			fprintf(stderr, "optail: event stream: %s\n", err);
			rc = CLIENT_EXIT_FAILED;
			break;
		}
		if (m.type == OP_MSG_EVENT) {
			int64_t seq = op_json_int(m.body, "seq", 0);
			if (seq > t.last + 1) {
				/* PUB dropped something: take it from the ledger, in order. */
				if (backfill(&t) != 0) {
					op_msg_clear(&m);
					break;
				}
			}
			emit(&t, m.body);
		}
		op_msg_clear(&m);
	}
	close(sub);
	close(t.ctl);
	return rc;
}
