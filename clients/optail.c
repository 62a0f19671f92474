/* optail: the event stream. Replays from the ledger, then follows
 * events.sock; a gap in seq (a slow reader misses frames) is backfilled from
 * the ledger, so nothing is lost and nothing printed twice. A page the daemon
 * cannot give is an error (exit 1), never taken for the end of the events. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/frame.h"
#include <unistd.h>

#define OPTAIL_PAGE 1000          /* events asked for per replay request (the daemon
                                     also bounds a page by bytes: it may give fewer) */

struct optail {
	int as_json;
	int64_t last;        /* highest seq printed */
	const char *type, *subject;
	int64_t ticket;
	const char *rtdir;   /* each backfill asks on a connection of its own */
};

static void usage(FILE *f, int code) __attribute__((noreturn));

static void
usage(FILE *f, int code)
{
	fprintf(f, "usage: optail [--json] [--since SEQ] [--follow] [--type TYPE] "
	    "[--ticket ID] [--subject NAME] [--runtime-dir DIR]\n"
	    "       optail --help | --version\n"
	    "Prints the daemon's events after SEQ (default: all), then with --follow the live\n"
	    "stream. Exit codes: 0 ok, 1 failed, 2 usage, 3 daemon not running.\n");
	exit(code);
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

/* Asks for one page after t->last and prints it: -1 when there may be more,
 * 0 when the page was empty (nothing more), else an exit code. */
static int
backfill_page(struct optail *t, int fd)
{
	json_object *args = json_object_new_array(), *reply = NULL, *rows;
	char since[32], lim[16];
	int rc;

	snprintf(since, sizeof(since), "%lld", (long long)t->last);
	snprintf(lim, sizeof(lim), "%d", OPTAIL_PAGE);
	json_object_array_add(args, json_object_new_string(since));
	json_object_array_add(args, json_object_new_string(lim));
	if ((rc = client_request(fd, "events", args, &reply)) != 0)
		return rc;
	if (!op_json_bool(reply, "ok", 0) || (rows = op_json_arr(reply, "result")) == NULL) {
		fprintf(stderr, "optail: cannot read the events after #%lld: %s\n",
		    (long long)t->last, op_json_str(reply, "error", "malformed reply"));
		json_object_put(reply);
		return CLIENT_EXIT_FAILED;
	}
	size_t n = json_object_array_length(rows);
	int64_t before = t->last;
	for (size_t i = 0; i < n; i++)
		emit(t, json_object_array_get_idx(rows, i));
	json_object_put(reply);
	if (n == 0)
		return 0;
	if (t->last == before) {
		fprintf(stderr, "optail: the daemon keeps returning events before #%lld\n",
		    (long long)before);
		return CLIENT_EXIT_FAILED;
	}
	return -1;
}

/* Fetches and prints everything after t->last, page by page, until a page
 * comes back empty. Returns 0 or an exit code. A connection per backfill:
 * the daemon closes idle ones, and a follower may go long between gaps. */
static int
backfill(struct optail *t)
{
	int fd = client_connect(t->rtdir, OP_CTL_SOCK), rc;

	if (fd < 0)
		return CLIENT_EXIT_NOT_RUNNING;
	while ((rc = backfill_page(t, fd)) < 0)
		;
	close(fd);
	return rc;
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
		{"version", no_argument, NULL, 'V'},
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
				usage(stderr, CLIENT_EXIT_USAGE);
			break;
		case 'f': follow = 1; break;
		case 't': t.type = optarg; break;
		case 'T':
			if (op_parse_int(optarg, 1, INT64_MAX, &t.ticket) != 0)
				usage(stderr, CLIENT_EXIT_USAGE);
			break;
		case 'S': t.subject = optarg; break;
		case 'r': rtdir = optarg; break;
		case 'h': usage(stdout, CLIENT_EXIT_OK);
		case 'V': printf("optail %s\n", OP_VERSION); return CLIENT_EXIT_OK;
		default: usage(stderr, CLIENT_EXIT_USAGE);
		}
	}
	if (optind != argc)
		usage(stderr, CLIENT_EXIT_USAGE);
	t.rtdir = client_runtime_dir(rtdir);
	/* Subscribe before replaying so nothing falls between the two. */
	if (follow && (sub = client_connect(t.rtdir, OP_EVENTS_SOCK)) < 0)
		return CLIENT_EXIT_NOT_RUNNING;
	if ((rc = backfill(&t)) != 0 || !follow) {
		if (sub >= 0)
			close(sub);
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
				/* The daemon dropped frames for us: take them from the ledger, in order. */
				if ((rc = backfill(&t)) != 0) {
					op_msg_clear(&m);
					break;
				}
			}
			emit(&t, m.body);
		}
		op_msg_clear(&m);
	}
	close(sub);
	return rc;
}
