/* postmortem: drafted from the ledger alone (DESIGN §4 events are the
 * record): the fault behind a ticket when chaos injected one, detection,
 * diagnosis, each action and each verification with times and durations,
 * the evidence, and the budgets the remedies used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "supervisor/od.h"

/* Events that tell the story; the rest (violation repeats) is noise here. */
static const char *const pm_types[] = {"ticket_opened", "ticket_reopened", "diagnosis",
	"action_proposed", "action_awaiting_approval", "action_approved", "action_rejected",
	"action_approval_expired", "action_scheduled", "action_dispatched", "action_executed",
	"action_failed", "action_unknown", "action_skipped", "action_retry", "action_retrying",
	"verification", "workflow_submitted", "workflow_step_verified", "workflow_stopped",
	"ticket_held", "ticket_unheld", "ticket_acked", "ticket_healed", "ticket_escalated",
	"ticket_resolved", "ticket_cleared", "ticket_rejected", "level_changed"};

static int
pm_wanted(const char *type)
{
	for (size_t i = 0; i < OP_ARRAY_LEN(pm_types); i++)
		if (!strcmp(type, pm_types[i]))
			return 1;
	return 0;
}

static void
pm_entry(json_object *tl, int64_t ts, int64_t t0, const char *phase, const char *type,
    const char *what, int64_t duration_ms, json_object *data)
{
	json_object *e = json_object_new_object();
	char buf[OP_TS_LEN];

	op_rfc3339(ts, buf);
	json_object_object_add(e, "ts", json_object_new_string(buf));
	json_object_object_add(e, "at_ms", json_object_new_int64(ts));
	json_object_object_add(e, "t_plus_ms", json_object_new_int64(ts - t0));
	json_object_object_add(e, "phase", json_object_new_string(phase));
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "what", json_object_new_string(what));
	if (duration_ms >= 0)
		json_object_object_add(e, "duration_ms", json_object_new_int64(duration_ms));
	if (data)
		json_object_object_add(e, "data", data);
	json_object_array_add(tl, e);
}

static const char *
pm_phase(const char *type)
{
	if (!strncmp(type, "ticket_opened", 13) || !strcmp(type, "ticket_reopened"))
		return "detection";
	if (!strcmp(type, "diagnosis"))
		return "diagnosis";
	if (!strcmp(type, "verification") || !strcmp(type, "workflow_step_verified"))
		return "verification";
	if (!strncmp(type, "action_", 7) || !strncmp(type, "workflow_", 9) ||
	    !strcmp(type, "level_changed"))
		return "action";
	return "ticket";
}

static void
pm_what(char *out, size_t len, const char *type, json_object *d, int64_t *dur)
{
	const char *act = op_json_str(d, "action", "");
	const char *params = op_json_obj(d, "params") ? json_object_to_json_string_ext(
	    op_json_obj(d, "params"), JSON_C_TO_STRING_PLAIN) : "";

	*dur = -1;
	if (!strcmp(type, "diagnosis")) {
		snprintf(out, len, "%s (%s, confidence %.2f)", op_json_str(d, "primary_diagnosis", ""),
		    op_json_str(d, "backend", "rules"), op_json_double(d, "confidence", 0));
	} else if (!strcmp(type, "verification")) {
		json_object *f = op_json_obj(d, "figures");
		snprintf(out, len, "%s: %s (%s=%g, threshold %g)", op_json_str(d, "result", ""),
		    op_json_str(d, "reason", ""), op_json_str(f, "invariant", "?"),
		    op_json_double(f, "value", 0), op_json_double(f, "threshold", 0));
		if (op_json_int(f, "waited_ms", -1) >= 0)
			*dur = op_json_int(f, "waited_ms", -1);
	} else if (!strncmp(type, "action_", 7) || !strncmp(type, "workflow_", 9)) {
		snprintf(out, len, "%s %s%s%s%s%s", act, params,
		    op_json_str(d, "reason", NULL) ? " — " : "", op_json_str(d, "reason", ""),
		    op_json_str(d, "error", NULL) ? ": " : "", op_json_str(d, "error", ""));
		if (!strcmp(type, "action_executed") || !strcmp(type, "action_failed"))
			*dur = op_json_int(d, "duration_ms", -1);
	} else if (!strcmp(type, "ticket_opened") || !strcmp(type, "ticket_reopened")) {
		snprintf(out, len, "%s", op_json_str(d, "message", ""));
	} else {
		snprintf(out, len, "%s%s%s", op_json_str(d, "reason", ""),
		    op_json_str(d, "by", NULL) ? " by " : "", op_json_str(d, "by", ""));
		if (op_json_int(d, "duration_ms", -1) >= 0)
			*dur = op_json_int(d, "duration_ms", -1);
	}
}

static void
pm_figure(json_object *f, const char *name, int64_t from, int64_t to)
{
	if (from > 0 && to >= from)
		json_object_object_add(f, name, json_object_new_int64(to - from));
}

json_object *
postmortem_build(int64_t id)
{
	json_object *t = ticket_row_json(id);

	if (t == NULL)
		return NULL;
	int64_t opened = op_json_int(t, "opened_at", 0);
	json_object *pm = json_object_new_object(), *tl = json_object_new_array();
	const char *subject = op_json_str(t, "subject", ""), *entity = op_json_str(t, "entity", "");

	/* The fault, when chaos injected one: the latest on this subject that
	 * started before detection, preferring one aimed at this entity. */
	json_object *fault = ledger_row(od->ledger, "SELECT * FROM faults WHERE subject=?1 AND"
	    " started_at<=?2 AND started_at>=?3 ORDER BY (target=?4) DESC, started_at DESC LIMIT 1",
	    "siis", subject, opened, opened - OD_FAULT_LOOKBACK_MS, entity);
	int64_t t0 = fault ? op_json_int(fault, "started_at", opened) : opened;
	if (fault != NULL) {
		char what[256];
		snprintf(what, sizeof(what), "fault %s injected on %s", op_json_str(fault, "fault", ""),
		    op_json_str(fault, "target", "?"));
		int64_t end = op_json_int(fault, "ended_at", 0);
		pm_entry(tl, t0, t0, "fault", "fault_injected", what, end > 0 ? end - t0 : -1,
		    json_object_get(fault));
	}
	json_object *evs = ticket_events_json(id);
	int64_t first_diag = 0, first_exec = 0, closed_ev = 0, last_disp = 0;
	for (size_t i = 0; i < json_object_array_length(evs); i++) {
		json_object *e = json_object_array_get_idx(evs, i);
		const char *type = op_json_str(e, "type", "");
		json_object *d = op_json_obj(e, "data");
		int64_t ts = op_json_int(e, "ts", 0), dur;
		char what[768];
		if (!pm_wanted(type))
			continue;
		pm_what(what, sizeof(what), type, d, &dur);
		if (!strcmp(type, "diagnosis") && first_diag == 0)
			first_diag = ts;
		if (!strcmp(type, "action_dispatched"))
			last_disp = ts;
		if (!strcmp(type, "action_executed") && first_exec == 0)
			first_exec = ts;
		if (!strcmp(type, "action_executed") && dur < 0 && last_disp > 0)
			dur = ts - last_disp;
		if (!strcmp(type, "ticket_resolved") || !strcmp(type, "ticket_cleared") ||
		    !strcmp(type, "ticket_rejected") || !strcmp(type, "ticket_escalated"))
			closed_ev = ts;
		/* the diagnosis body is in "evidence" below; keep the line short */
		json_object *keep = json_object_get(d);
		if (!strcmp(type, "diagnosis")) {
			json_object_put(keep);
			keep = NULL;
		}
		pm_entry(tl, ts, t0, pm_phase(type), type, what, dur, keep);
	}
	json_object_put(evs);
	json_object_object_add(pm, "ticket", t);
	json_object_object_add(pm, "fault", fault);
	json_object_object_add(pm, "timeline", tl);
	json_object *fig = json_object_new_object();
	if (fault)
		pm_figure(fig, "time_to_detect_ms", t0, opened);
	pm_figure(fig, "time_to_diagnose_ms", opened, first_diag);
	pm_figure(fig, "time_to_act_ms", opened, first_exec);
	pm_figure(fig, "time_to_outcome_ms", opened, closed_ev);
	if (!strcmp(op_json_str(t, "status", ""), "resolved"))
		pm_figure(fig, "time_to_verified_fix_ms", fault ? t0 : opened,
		    op_json_int(t, "closed_at", 0));
	json_object_object_add(pm, "figures", fig);
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "detection", json_object_get(op_json_obj(t, "evidence")));
	json_object *dg = ticket_last_diagnosis_json(id);
	if (dg != NULL) {
		json_object *diag = op_json_obj(dg, "diagnosis");
		json_object_object_add(ev, "diagnosis", json_object_get(diag));
		json_object_object_add(ev, "backend", json_object_new_string(op_json_str(dg, "backend", "")));
		json_object_put(dg);
	}
	json_object_object_add(ev, "verifications", ticket_verifications_json(id));
	json_object_object_add(pm, "evidence", ev);
	json_object *acts = action_rows_of_ticket(id, 0);
	json_object *used = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(acts); i++) {
		json_object *a = json_object_array_get_idx(acts, i);
		if (op_json_int(a, "charged_at", 0) <= 0)
			continue;
		json_object *u = json_object_new_object();
		json_object_object_add(u, "action_id", json_object_new_int64(op_json_int(a, "id", 0)));
		json_object_object_add(u, "action", json_object_new_string(op_json_str(a, "name", "")));
		json_object_object_add(u, "risk", json_object_new_string(op_json_str(a, "risk", "")));
		json_object_object_add(u, "attempts", json_object_new_int64(op_json_int(a, "attempt", 0)));
		json_object_object_add(u, "charged_at", json_object_new_int64(op_json_int(a, "charged_at", 0)));
		json_object_object_add(u, "left_after", json_object_get(op_json_obj(a, "budget")));
		json_object_array_add(used, u);
	}
	json_object *bud = json_object_new_object();
	json_object_object_add(bud, "used", used);
	json_object_object_add(bud, "now", policy_status());
	json_object_object_add(pm, "budgets", bud);
	json_object_object_add(pm, "actions", acts);
	return pm;
}
