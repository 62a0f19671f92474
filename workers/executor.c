/* executor: the last safety gate. Right before acting it re-reads the kill
 * switch and mode, re-observes, re-checks the invariant (never act on a
 * healed problem) and the action's preconditions, then runs the action. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/ha.h"
#include "workers/worker.h"

/* Transport errors that prove the request never reached the system (the
 * connection was refused, the name did not resolve, the node was already
 * known unreachable), as libcurl and the subjects word them. */
static const char *const exec_not_sent[] = {
	"Couldn't connect", "Could not connect", "Connection refused", "Couldn't resolve",
	"Could not resolve", "is unreachable", "no rate-limiter node is reachable",
	"unknown node", "URL using bad/illegal format",
};

/* Whether a failed action took effect: "no" (never reached the system, may
 * be retried), "rejected" (the system answered and refused: nothing changed,
 * but trying again will not help), "unknown" (it may have run: a timeout
 * after sending, a reset mid-answer, a server error: verify, never re-run
 * blindly). A subject may say so itself with result.applied. */
static const char *
exec_classify(const char *err, json_object *result)
{
	const char *own = op_json_str(result, "applied", NULL);
	json_object *st;

	if (own && (!strcmp(own, "no") || !strcmp(own, "rejected") || !strcmp(own, "unknown")))
		return own;
	if (result && json_object_object_get_ex(result, "http_status", &st)) {
		int64_t code = json_object_get_int64(st);
		if (code >= 400 && code < 500 && code != 408)
			return code == 429 ? "no" : "rejected";
		return "unknown";
	}
	for (size_t i = 0; err && i < OP_ARRAY_LEN(exec_not_sent); i++)
		if (strstr(err, exec_not_sent[i]) != NULL)
			return "no";
	return "unknown";
}

static void
exec_reply(struct worker *w, struct op_msg *m, const char *status, const char *kind,
    const char *reason, json_object *result, int64_t t0)
{
	json_object *b = json_object_new_object();

	if (!strcmp(status, "failed"))
		json_object_object_add(b, "applied", json_object_new_string(exec_classify(reason, result)));

	json_object_object_add(b, "ticket_id", json_object_new_int64(op_json_int(m->body, "ticket_id", 0)));
	json_object_object_add(b, "action_id", json_object_new_int64(op_json_int(m->body, "action_id", 0)));
	json_object_object_add(b, "status", json_object_new_string(status));
	if (kind)
		json_object_object_add(b, "kind", json_object_new_string(kind));
	json_object_object_add(b, "reason", json_object_new_string(reason ? reason : ""));
	json_object_object_add(b, "result", result);
	json_object_object_add(b, "duration_ms", json_object_new_int64(op_mono_ms() - t0));
	if (op_json_obj(m->body, "undo") != NULL) /* issue 9: the result of an undo */
		json_object_object_add(b, "undo", json_object_new_boolean(1));
	worker_send(w, OP_MSG_ACTION_RESULT, m->id, b);
}

static const char *
exec_gate(struct worker *w)
{
	worker_drain(w);
	if (w->stopping)
		return "stopping";
	if (w->kill_switch)
		return "kill switch";
	if (strcmp(w->mode, "observe") == 0)
		return "mode";
	return NULL;
}

/* issue 9: a long action's cancellation points ask this. Settings frames
 * are applied as they arrive (worker_drain defers every other frame while
 * the action runs), so the kill switch reaches a running action at once. */
#define EXEC_FENCE_RECHECK_MS 1000 /* [ha] a long action re-confirms its term at most this often */

/* [ha] the job running now, for the fence at its cancellation points. */
static struct {
	json_object *job;
	int64_t fenced_mono;
	char kind[16], why[400]; /* set when leadership was lost mid-action */
} exec_run;

static int
exec_cancelled(void *arg)
{
	struct worker *w = arg;

	worker_drain(w);
	if (w->kill_switch || w->stopping)
		return 1;
	/* [ha] between steps, still the leader under the job's term: a leader
	 * that lost its lease mid-action stops before its next side effect. */
	if (exec_run.job != NULL && op_mono_ms() - exec_run.fenced_mono >= EXEC_FENCE_RECHECK_MS) {
		exec_run.fenced_mono = op_mono_ms();
		if (ha_fence_exec(w->cfg, exec_run.job, exec_run.kind, sizeof(exec_run.kind),
		    exec_run.why, sizeof(exec_run.why)) != 0)
			return 1;
	}
	return 0;
}

/* issue 9: the undo of an action that made things worse ({"undo": {...}} in
 * the job): the subject's revert, with what execute() recorded. Never under
 * the kill switch or in observe mode. */
static void
exec_undo(struct worker *w, struct op_msg *m, struct op_subject *sj,
    const struct op_action_def *def, int64_t t0)
{
	json_object *result = NULL;
	const char *why;
	char err[512] = "";

	if ((why = exec_gate(w)) != NULL) {
		if (!w->stopping)
			exec_reply(w, m, "skipped", why, why, NULL, t0);
		return;
	}
	if (def->revert == NULL) {
		exec_reply(w, m, "skipped", "invalid", "the action has no undo", NULL, t0);
		return;
	}
	/* [ha] the same fence as any side effect: still the leader, switch off. */
	char fkind[16], fwhy[400];
	if (ha_fence_exec(w->cfg, m->body, fkind, sizeof(fkind), fwhy, sizeof(fwhy)) != 0) {
		exec_reply(w, m, "skipped", fkind, fwhy, NULL, t0);
		return;
	}
	log_info("undoing %s for ticket %lld", def->name,
	    (long long)op_json_int(m->body, "ticket_id", 0));
	if (def->revert(sj, op_json_obj(m->body, "undo"), &result, err, sizeof(err)) != 0)
		exec_reply(w, m, "failed", NULL, err, result, t0);
	else
		exec_reply(w, m, "executed", NULL, NULL, result, t0);
}

static void
exec_handle(struct worker *w, struct op_msg *m)
{
	const char *subject, *action, *invariant, *entity, *why;
	json_object *params, *obs = NULL, *result = NULL;
	struct op_subject *sj;
	const struct op_action_def *def;
	char err[512] = "";
	int64_t t0 = op_mono_ms();

	if (m->type != OP_MSG_EXECUTE)
		return;
	subject = op_json_str(m->body, "subject", "");
	action = op_json_str(m->body, "action", "");
	invariant = op_json_str(m->body, "invariant", "");
	entity = op_json_str(m->body, "entity", "");
	params = op_json_obj(m->body, "params");
	sj = op_subjects_find(&w->subjects, subject);
	def = sj ? op_subject_action(sj, action) : NULL;
	if (def == NULL) {
		snprintf(err, sizeof(err), "no action \"%s\" for subject \"%s\"", action, subject);
		exec_reply(w, m, "skipped", "invalid", err, NULL, t0);
		return;
	}
	if (params == NULL || op_action_validate(def, params, err, sizeof(err)) != 0) {
		exec_reply(w, m, "skipped", "invalid", err[0] ? err : "no parameters", NULL, t0);
		return;
	}
	if (op_json_obj(m->body, "undo") != NULL) {
		exec_undo(w, m, sj, def, t0);
		return;
	}
	if ((why = exec_gate(w)) != NULL) {
		/* Stopping: no answer; the supervisor marks the action unknown and verifies. */
		if (!w->stopping)
			exec_reply(w, m, "skipped", why, why, NULL, t0);
		return;
	}
	if (sj->ops->observe(sj, &obs, err, sizeof(err)) != 0) {
		char why2[600];
		snprintf(why2, sizeof(why2), "cannot observe %s right before acting: %s", subject, err);
		exec_reply(w, m, "skipped", "precondition", why2, NULL, t0);
		json_object_put(obs);
		return;
	}
	struct op_readings rd = {0};
	op_obs_focus(obs, entity); /* the ticket's entity needs an explicit reading */
	sj->ops->check(sj, obs, &rd);
	const struct op_reading *r = op_readings_find(&rd, invariant, entity);
	if (r != NULL && r->state == OP_RD_HEALTHY) {
		json_object *fig = json_object_new_object();
		json_object_object_add(fig, "value", json_object_new_double(r->value));
		json_object_object_add(fig, "threshold", json_object_new_double(r->threshold));
		json_object_object_add(fig, "evidence", json_object_get(r->evidence));
		snprintf(err, sizeof(err), "%s holds again on a fresh observation: %s", invariant,
		    r->message);
		exec_reply(w, m, "skipped", "healed", err, fig, t0);
		goto out;
	}
	if (r == NULL) {
		/* The observation cannot account for the entity: acting would be a
		 * guess. A precondition refusal never took effect, so it is retried. */
		snprintf(err, sizeof(err), "a fresh observation does not account for %s of %s: cannot"
		    " tell whether it still needs %s", invariant, entity, action);
		exec_reply(w, m, "skipped", "precondition", err, NULL, t0);
		goto out;
	}
	if (sj->ops->precheck(sj, action, params, obs, err, sizeof(err)) != 0) {
		exec_reply(w, m, "skipped", "precondition", err, NULL, t0);
		goto out;
	}
	/* The last word before the side effect: a kill switch set a moment ago wins. */
	if ((why = exec_gate(w)) != NULL) {
		if (!w->stopping)
			exec_reply(w, m, "skipped", why, why, NULL, t0);
		goto out;
	}
	/* [ha] the fence: still the leader under this job's term, kill switch off
	 * cluster-wide (one etcd transaction, supervisor/ha_fence.c). */
	char fkind[16], fwhy[400];
	if (ha_fence_exec(w->cfg, m->body, fkind, sizeof(fkind), fwhy, sizeof(fwhy)) != 0) {
		exec_reply(w, m, "skipped", fkind, fwhy, NULL, t0);
		goto out;
	}
	log_info("executing %s %s for ticket %lld", action,
	    json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
	    (long long)op_json_int(m->body, "ticket_id", 0));
	err[0] = '\0';
	/* issue 9: cancellation points and the blast radius left for an action
	 * that picks its nodes; the subject's state before, to tell later
	 * whether the action made it worse */
	json_object *blast = op_json_obj(m->body, "blast");
	struct op_exec_ctx ctx = {exec_cancelled, w, blast ? op_json_int(blast, "new_max", -1) : -1,
		op_json_arr(blast, "touched")};
	struct op_health before;
	op_health_of(sj, obs, invariant, entity, &before);
	op_exec_ctx_set(&ctx);
	exec_run.job = m->body;
	exec_run.fenced_mono = op_mono_ms();
	exec_run.why[0] = '\0';
	int rc = sj->ops->execute(sj, action, params, &result, err, sizeof(err));
	int cancelled = rc != 0 && op_action_cancelled();
	exec_run.job = NULL;
	op_exec_ctx_set(NULL);
	if (result == NULL)
		result = json_object_new_object();
	json_object_object_add(result, "health_before", op_health_json(&before));
	if (!json_object_object_get_ex(result, "nodes_total", NULL) && op_obs_nodes(obs) > 0)
		json_object_object_add(result, "nodes_total", json_object_new_int64(op_obs_nodes(obs)));
	if (cancelled && exec_run.why[0] != '\0')
		exec_reply(w, m, "cancelled", exec_run.kind, exec_run.why, result, t0);
	else if (cancelled)
		exec_reply(w, m, "cancelled", "kill switch", err, result, t0);
	else if (rc != 0)
		exec_reply(w, m, "failed", NULL, err, result, t0);
	else
		exec_reply(w, m, "executed", NULL, NULL, result, t0);
out:
	op_readings_clear(&rd);
	json_object_put(obs);
}

static int
exec_init(struct worker *w, char *err, size_t errlen)
{
	(void)w;
	(void)err;
	(void)errlen;
	return 0;
}

static void
exec_on_msg(struct worker *w, struct op_msg *m)
{
	w->gate++;
	exec_handle(w, m);
	w->gate--;
}

const struct worker_role executor_role = {
	.name = "executor", .init = exec_init, .on_msg = exec_on_msg,
};
