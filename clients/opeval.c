/* opeval: scored chaos campaigns, a soak, and the comparison of two runs.
 * A client of a running operatord (control socket), like opsend and optail;
 * it starts no process itself (scripts/eval.sh sets up the subject). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client.h"
#include "clients/opeval.h"
#include "common/jsonutil.h"
#include "common/util.h"

static void
usage_to(FILE *f, int code)
{
	fprintf(f,
	    "usage: opeval run CAMPAIGN [--trials N] [--baseline | --baseline-only] [--backend NAME]\n"
	    "                  [--note TEXT] [--json FILE] [--html FILE] [--runtime-dir DIR]\n"
	    "       opeval soak --subject NAME --duration D [--json FILE] [--runtime-dir DIR]\n"
	    "       opeval report REPORT.json [--html FILE]\n"
	    "       opeval compare A.json B.json\n"
	    "       opeval --help | --version\n"
	    "Exit: 0 done, 1 failed, 2 usage, 3 operatord not running.\n");
	exit(code);
}

static void
usage(void)
{
	usage_to(stderr, CLIENT_EXIT_USAGE);
}

static json_object *
load_report(const char *path)
{
	json_object *o = json_object_from_file(path);

	if (o == NULL || op_json_obj(o, "summary") == NULL) {
		fprintf(stderr, "opeval: %s: not an opeval report (%s)\n", path,
		    o ? "no summary" : json_util_get_last_err());
		json_object_put(o);
		return NULL;
	}
	return o;
}

static int
write_outputs(json_object *rep, const char *json, const char *html)
{
	char err[512];

	if (json && eval_write_json(json, rep, err, sizeof(err)) != 0) {
		fprintf(stderr, "opeval: %s\n", err);
		return CLIENT_EXIT_FAILED;
	}
	if (html && eval_write_html(html, rep, err, sizeof(err)) != 0) {
		fprintf(stderr, "opeval: %s\n", err);
		return CLIENT_EXIT_FAILED;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"trials", required_argument, NULL, 'n'},
		{"baseline", no_argument, NULL, 'b'},
		{"baseline-only", no_argument, NULL, 'B'},
		{"backend", required_argument, NULL, 'k'},
		{"note", required_argument, NULL, 'N'},
		{"json", required_argument, NULL, 'j'},
		{"html", required_argument, NULL, 'H'},
		{"subject", required_argument, NULL, 's'},
		{"duration", required_argument, NULL, 'd'},
		{"runtime-dir", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct eval_opts o = {0};
	const char *json = NULL, *html = NULL, *subject = NULL, *note = NULL;
	int64_t trials = 0, duration = 0;
	int ch;
	char err[1024];

	while ((ch = getopt_long(argc, argv, "n:bBk:N:j:H:s:d:r:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			if (op_parse_int(optarg, 1, 10000, &trials) != 0)
				usage();
			break;
		case 'b': o.baseline = 1; break;
		case 'B': o.baseline = o.only_baseline = 1; break;
		case 'k': o.backend = optarg; break;
		case 'N': note = optarg; break;
		case 'j': json = optarg; break;
		case 'H': html = optarg; break;
		case 's': subject = optarg; break;
		case 'd':
			if (op_parse_duration(optarg, &duration) != 0 || duration <= 0)
				usage();
			break;
		case 'r': o.runtime_dir = optarg; break;
		case 'h': usage_to(stdout, CLIENT_EXIT_OK); break;
		case 'V': printf("opeval %s\n", OP_VERSION); return CLIENT_EXIT_OK;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	const char *cmd = argv[optind++];
	o.runtime_dir = client_runtime_dir(o.runtime_dir);
	if (!strcmp(cmd, "run") && optind + 1 == argc) {
		struct eval_campaign c;
		json_object *rep;
		if (eval_campaign_load(argv[optind], &c, err, sizeof(err)) != 0) {
			fprintf(stderr, "opeval: %s\n", err);
			return CLIENT_EXIT_USAGE;
		}
		if (trials > 0)
			c.trials = (int)trials;
		if (eval_run(&c, &o, &rep, err, sizeof(err)) != 0) {
			fprintf(stderr, "opeval: %s\n", err);
			return CLIENT_EXIT_NOT_RUNNING;
		}
		if (note)
			op_json_set_str(rep, "note", note);
		eval_print_table(stdout, rep);
		int rc = write_outputs(rep, json, html);
		json_object_put(rep);
		return rc;
	}
	if (!strcmp(cmd, "soak") && optind == argc && duration > 0) {
		json_object *rep;
		if (eval_soak(o.runtime_dir, subject, duration, &rep, err, sizeof(err)) != 0) {
			fprintf(stderr, "opeval: %s\n", err);
			return CLIENT_EXIT_NOT_RUNNING;
		}
		if (note)
			op_json_set_str(rep, "note", note);
		eval_print_soak(stdout, rep);
		int rc = write_outputs(rep, json, NULL);
		json_object_put(rep);
		return rc;
	}
	if (!strcmp(cmd, "report") && optind + 1 == argc) {
		json_object *rep = load_report(argv[optind]);
		if (rep == NULL)
			return CLIENT_EXIT_FAILED;
		eval_print_table(stdout, rep);
		int rc = write_outputs(rep, NULL, html);
		json_object_put(rep);
		return rc;
	}
	if (!strcmp(cmd, "compare") && optind + 2 == argc) {
		json_object *a = load_report(argv[optind]), *b = a ? load_report(argv[optind + 1]) : NULL;
		int rc = a && b ? eval_compare(stdout, a, b) : -1;
		json_object_put(a);
		json_object_put(b);
		return rc == 0 ? CLIENT_EXIT_OK : CLIENT_EXIT_FAILED;
	}
	usage();
	return CLIENT_EXIT_USAGE;
}
