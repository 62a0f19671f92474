/* diagnoser: turns a ticket and a fresh observation into a diagnosis through
 * a backend. The rules backend (the subject's offline playbook) is the
 * default and the fallback of every other backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "workers/worker.h"

static json_object *
diag_rules(struct op_subject *sj, json_object *ticket, json_object *obs)
{
	json_object *d = sj->ops->diagnose(sj, ticket, obs);

	if (d == NULL) {
		d = op_diag_new("no playbook entry for this invariant", 0.1, "warning");
		op_diag_add_risk(d, "unknown failure mode: a human should look");
	}
	return d;
}

static void
diag_on_msg(struct worker *w, struct op_msg *m)
{
	json_object *ticket, *obs = NULL, *diag, *b;
	struct op_subject *sj;
	char err[512] = "";
	int64_t t0 = op_mono_ms();

	if (m->type != OP_MSG_DIAGNOSE)
		return;
	ticket = op_json_obj(m->body, "ticket");
	sj = op_subjects_find(&w->subjects, op_json_str(ticket, "subject", ""));
	b = json_object_new_object();
	json_object_object_add(b, "ticket_id", json_object_new_int64(op_json_int(m->body, "ticket_id", 0)));
	if (sj == NULL) {
		diag = op_diag_new("the ticket's subject is not configured", 0.0, "warning");
	} else {
		/* Diagnose on what the system looks like now, not only on the evidence
		 * that opened the ticket; a failed observation is evidence too. */
		if (sj->ops->observe(sj, &obs, err, sizeof(err)) != 0) {
			log_warn("fresh observation of %s failed: %s", sj->name, err);
			obs = NULL;
		}
		diag = diag_rules(sj, ticket, obs);
		if (obs == NULL && err[0] != '\0')
			op_diag_add_evidence(diag, "fresh observation failed: %s", err);
	}
	json_object_object_add(b, "diagnosis", diag);
	json_object_object_add(b, "backend", json_object_new_string("rules"));
	json_object_object_add(b, "agreed", json_object_new_int(1));
	json_object_object_add(b, "duration_ms", json_object_new_int64(op_mono_ms() - t0));
	worker_send(w, OP_MSG_DIAGNOSIS, m->id, b);
	json_object_put(obs);
}

static int
diag_init(struct worker *w, char *err, size_t errlen)
{
	(void)w;
	(void)err;
	(void)errlen;
	return 0;
}

const struct worker_role diagnoser_role = {
	.name = "diagnoser", .init = diag_init, .on_msg = diag_on_msg,
};
