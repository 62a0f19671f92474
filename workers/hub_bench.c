/* hub_bench: a synthetic observer for bench/bench_hub, never used otherwise.
 * It takes the observer's place only when operatord's environment has
 * OPERATORD_HUB_BENCH (see worker_main), observes nothing, and answers
 * "observe bench:pass:N" with N observed frames (through the supervisor's
 * transaction, writing nothing) and "observe bench:commit:N" with N violation
 * frames of one live ticket (each a ledger transaction that writes), each
 * followed by the observe reply: the supervisor handles one channel's frames
 * in order, so the reply reaching the client means all N were handled. */
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "workers/worker.h"

#define HB_MAX 1000000   /* frames one request may ask for */

static int
hb_init(struct worker *w, char *err, size_t errlen)
{
	(void)w;
	(void)err;
	(void)errlen;
	return 0;
}

static void
hb_on_msg(struct worker *w, struct op_msg *m)
{
	const char *subj;
	long n = 0;
	int commit = 0;

	if (m->type != OP_MSG_OBSERVE_REQ)
		return; /* settings, watch: nothing to do */
	subj = op_json_str(m->body, "subject", "");
	if (strncmp(subj, "bench:pass:", 11) == 0)
		n = strtol(subj + 11, NULL, 10);
	else if (strncmp(subj, "bench:commit:", 13) == 0) {
		n = strtol(subj + 13, NULL, 10);
		commit = 1;
	}
	if (n < 0 || n > HB_MAX)
		n = 0;
	for (long i = 0; i < n; i++) {
		json_object *b = json_object_new_object();
		op_json_set_str(b, "subject", "tikv");
		if (commit) {
			op_json_set_str(b, "invariant", "pd_unreachable");
			op_json_set_str(b, "entity", "pd");
			op_json_set_str(b, "severity", "critical");
			op_json_set_str(b, "message", "hub benchmark");
			json_object_object_add(b, "evidence", json_object_new_object());
			worker_send(w, OP_MSG_VIOLATION, 0, b);
		} else {
			json_object_object_add(b, "ok", json_object_new_boolean(1));
			op_json_set_int(b, "nodes", 3);
			worker_send(w, OP_MSG_OBSERVED, 0, b);
		}
	}
	json_object *rep = json_object_new_object();
	op_json_set_str(rep, "subject", subj);
	json_object_object_add(rep, "ok", json_object_new_boolean(1));
	json_object_object_add(rep, "observation", json_object_new_object());
	worker_send(w, OP_MSG_OBSERVE_REP, m->id, rep);
}

const struct worker_role hub_bench_role = {"observer", hb_init, hb_on_msg, NULL, NULL};
