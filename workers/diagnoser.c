/* diagnoser: turns a ticket and a fresh observation into a diagnosis through
 * a backend. The rules backend (the subject's offline playbook) is the
 * default and the fallback of every other backend; it runs on every ticket so
 * a model's plan is always compared with it (DESIGN §6). A model call never
 * blocks the worker: it runs on the event loop while other frames are served. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "workers/llm.h"
#include "workers/worker.h"

struct diag_state {
	struct llm_conf conf;
	struct llm_engine *engine; /* NULL with backend = rules */
};

/* What the supervisor needs to answer one DIAGNOSE frame. */
struct diag_pending {
	struct worker *w;
	uint64_t msg_id;
	int64_t ticket_id;
	int64_t t0;
};

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

static json_object *
diag_body(int64_t ticket_id, json_object *diag, const char *backend, int agreed, int64_t t0)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "ticket_id", json_object_new_int64(ticket_id));
	json_object_object_add(b, "diagnosis", diag);
	json_object_object_add(b, "backend", json_object_new_string(backend));
	json_object_object_add(b, "agreed", json_object_new_int(agreed));
	json_object_object_add(b, "duration_ms", json_object_new_int64(op_mono_ms() - t0));
	return b;
}

static void
diag_llm_done(void *arg, const struct llm_outcome *o)
{
	struct diag_pending *p = arg;
	json_object *b = diag_body(p->ticket_id, json_object_get(o->diagnosis), o->backend,
	    o->agreed, p->t0);

	/* No key in here: model name, counts and a scrubbed reason only. */
	json_object_object_add(b, "model", json_object_new_string(o->model));
	json_object_object_add(b, "tokens_in", json_object_new_int64(o->tokens_in));
	json_object_object_add(b, "tokens_out", json_object_new_int64(o->tokens_out));
	json_object_object_add(b, "cost_usd", json_object_new_double(o->cost_usd));
	json_object_object_add(b, "calls", json_object_new_int(o->calls));
	json_object_object_add(b, "cached", json_object_new_boolean(o->cached));
	json_object_object_add(b, "require_approval", json_object_new_boolean(o->require_approval));
	if (o->approval_reason != NULL)
		json_object_object_add(b, "approval_reason", json_object_new_string(o->approval_reason));
	if (o->fallback_reason != NULL)
		json_object_object_add(b, "fallback_reason", json_object_new_string(o->fallback_reason));
	worker_send(p->w, OP_MSG_DIAGNOSIS, p->msg_id, b);
	free(p);
}

static void
diag_on_msg(struct worker *w, struct op_msg *m)
{
	struct diag_state *st = w->priv;
	json_object *ticket, *obs = NULL, *diag;
	struct op_subject *sj;
	char err[512] = "";
	int64_t t0 = op_mono_ms();
	int64_t tid = op_json_int(m->body, "ticket_id", 0);

	if (m->type != OP_MSG_DIAGNOSE)
		return;
	ticket = op_json_obj(m->body, "ticket");
	sj = op_subjects_find(&w->subjects, op_json_str(ticket, "subject", ""));
	if (sj == NULL) {
		diag = op_diag_new("the ticket's subject is not configured", 0.0, "warning");
		worker_send(w, OP_MSG_DIAGNOSIS, m->id, diag_body(tid, diag, "rules", 1, t0));
		return;
	}
	/* Diagnose on what the system looks like now, not only on the evidence
	 * that opened the ticket; a failed observation is evidence too. */
	if (sj->ops->observe(sj, &obs, err, sizeof(err)) != 0) {
		log_warn("fresh observation of %s failed: %s", sj->name, err);
		obs = NULL;
	}
	diag = diag_rules(sj, ticket, obs);
	if (obs == NULL && err[0] != '\0')
		op_diag_add_evidence(diag, "fresh observation failed: %s", err);
	if (st->engine == NULL) {
		worker_send(w, OP_MSG_DIAGNOSIS, m->id, diag_body(tid, diag, "rules", 1, t0));
		json_object_put(obs);
		return;
	}
	struct diag_pending *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		worker_send(w, OP_MSG_DIAGNOSIS, m->id, diag_body(tid, diag, "rules", 1, t0));
		json_object_put(obs);
		return;
	}
	p->w = w;
	p->msg_id = m->id;
	p->ticket_id = tid;
	p->t0 = t0;
	/* The answer comes back through diag_llm_done, now or from the loop. */
	llm_diagnose(st->engine, sj, ticket, op_json_arr(m->body, "history"), obs,
	    obs == NULL ? err : NULL, diag, diag_llm_done, p);
	json_object_put(obs);
}

static int
diag_init(struct worker *w, char *err, size_t errlen)
{
	struct diag_state *st = calloc(1, sizeof(*st));
	char *key = NULL;

	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	w->priv = st;
	if (llm_conf_load(w->cfg, &st->conf, err, errlen) != 0)
		return -1;
	if (st->conf.backend == LLM_RULES)
		return 0;
	if (llm_key_load(&st->conf, &key, err, errlen) != 0)
		return -1;
	st->engine = llm_engine_new(w->base, &st->conf, key);
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	if (st->engine == NULL) {
		snprintf(err, errlen, "cannot start the %s backend", llm_backend_name(st->conf.backend));
		return -1;
	}
	log_info("diagnosis backend %s, model %s at %s (timeout %lld ms, at most %lld calls an "
	    "hour)", llm_backend_name(st->conf.backend), st->conf.model, st->conf.base_url,
	    (long long)st->conf.timeout_ms, (long long)st->conf.max_calls_per_hour);
	return 0;
}

static void
diag_fini(struct worker *w)
{
	struct diag_state *st = w->priv;

	if (st == NULL)
		return;
	/* Tickets still waiting on a model stay 'diagnosing' in the ledger; the
	 * supervisor sends them again when a diagnoser is ready. */
	llm_engine_free(st->engine);
	free(st);
	w->priv = NULL;
}

const struct worker_role diagnoser_role = {
	.name = "diagnoser", .init = diag_init, .on_msg = diag_on_msg, .fini = diag_fini,
};
