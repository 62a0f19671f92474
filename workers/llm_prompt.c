/* llm_prompt: what a model is told and the schema it must answer in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"
#include "workers/llm.h"

#define LLM_EVIDENCE_MAX 1500  /* bytes of ticket evidence in a prompt */
#define LLM_FIGURES_MAX 300    /* bytes of a past verification's figures */
#define LLM_HISTORY_MAX 3

static const char *const llm_diag_keys[] = {
	"timeline", "affected_components", "metric_readings", "primary_diagnosis", "confidence",
	"supporting_evidence", "alternatives_considered", "severity", "risks",
	"recommended_actions",
};

static json_object *
js_str(const char *s)
{
	return json_object_new_string(s);
}

static json_object *
js_type(const char *type, const char *desc)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "type", js_str(type));
	if (desc != NULL)
		json_object_object_add(o, "description", js_str(desc));
	return o;
}

static json_object *
js_array_of(json_object *items, const char *desc)
{
	json_object *o = js_type("array", desc);

	json_object_object_add(o, "items", items);
	return o;
}

/* A strict-mode object: every property required, nothing else allowed. */
static json_object *
js_object(json_object *props, const char *desc)
{
	json_object *o = js_type("object", desc), *req = json_object_new_array();

	json_object_object_foreach(props, k, v)
	{
		(void)v;
		json_object_array_add(req, js_str(k));
	}
	json_object_object_add(o, "properties", props);
	json_object_object_add(o, "required", req);
	json_object_object_add(o, "additionalProperties", json_object_new_boolean(0));
	return o;
}

static json_object *
js_enum(const char *const *v, size_t n, const char *desc)
{
	json_object *o = js_type("string", desc), *e = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(e, js_str(v[i]));
	json_object_object_add(o, "enum", e);
	return o;
}

/* Parameters of every action, by name; a name used by several actions gets
 * the union of their types. Each is nullable: null means "not given", so the
 * schema stays valid in strict mode while per-action checks run afterwards. */
static json_object *
llm_param_props(const struct op_subject *sj)
{
	json_object *props = json_object_new_object();

	for (size_t i = 0; i < sj->ops->nactions; i++) {
		const struct op_action_def *a = &sj->ops->actions[i];
		for (size_t j = 0; j < a->nparams; j++) {
			const struct op_param_def *p = &a->params[j];
			const char *t = p->type == OP_PARAM_STRING ? "string" : "integer";
			json_object *prop, *types, *d;
			char desc[512];
			if (!json_object_object_get_ex(props, p->name, &prop)) {
				prop = json_object_new_object();
				types = json_object_new_array();
				json_object_array_add(types, js_str(t));
				json_object_array_add(types, js_str("null"));
				json_object_object_add(prop, "type", types);
				snprintf(desc, sizeof(desc), "%s: %s", a->name, p->description);
				json_object_object_add(prop, "description", js_str(desc));
				json_object_object_add(props, p->name, prop);
				continue;
			}
			json_object_object_get_ex(prop, "type", &types);
			int have = 0;
			for (size_t k = 0; k < json_object_array_length(types); k++)
				have |= !strcmp(json_object_get_string(json_object_array_get_idx(types, k)), t);
			if (!have)
				json_object_array_put_idx(types, json_object_array_length(types), js_str(t));
			json_object_object_get_ex(prop, "description", &d);
			snprintf(desc, sizeof(desc), "%s; %s: %s", json_object_get_string(d), a->name,
			    p->description);
			json_object_object_add(prop, "description", js_str(desc));
		}
	}
	return props;
}

json_object *
llm_schema(const struct op_subject *sj)
{
	static const char *const sev[] = {"critical", "warning", "info"};
	static const char *const urg[] = {"immediate", "soon", "when_convenient"};
	json_object *p = json_object_new_object(), *rd, *alt, *act;
	const char *names[64];
	size_t n = 0;

	json_object_object_add(p, "timeline", js_array_of(js_type("string", NULL),
	    "what happened, in order, with times when known"));
	json_object_object_add(p, "affected_components", js_array_of(js_type("string", NULL),
	    "components involved (nodes, keys, stores, services)"));
	rd = json_object_new_object();
	json_object_object_add(rd, "name", js_type("string", NULL));
	json_object_object_add(rd, "value", js_type("number", NULL));
	json_object_object_add(rd, "unit", js_type("string", NULL));
	json_object_object_add(p, "metric_readings", js_array_of(js_object(rd, NULL),
	    "the figures the diagnosis rests on, copied from the evidence or observation"));
	json_object_object_add(p, "primary_diagnosis", js_type("string",
	    "the most likely cause, one or two sentences"));
	json_object_object_add(p, "confidence", js_type("number", "0.0 (a guess) to 1.0 (certain)"));
	json_object_object_add(p, "supporting_evidence", js_array_of(js_type("string", NULL),
	    "facts from the ticket, observation or history that support the diagnosis"));
	alt = json_object_new_object();
	json_object_object_add(alt, "hypothesis", js_type("string", NULL));
	json_object_object_add(alt, "supporting", js_type("string", NULL));
	json_object_object_add(alt, "contradicting", js_type("string", NULL));
	json_object_object_add(alt, "conclusion", js_type("string",
	    "ruled out, possible, or insufficient data"));
	json_object_object_add(p, "alternatives_considered", js_array_of(js_object(alt, NULL),
	    "other explanations and why they are less likely"));
	json_object_object_add(p, "severity", js_enum(sev, 3, NULL));
	json_object_object_add(p, "risks", js_array_of(js_type("string", NULL),
	    "what could go wrong with the recommended actions, or with doing nothing"));
	for (size_t i = 0; i < sj->ops->nactions && n < OP_ARRAY_LEN(names); i++)
		names[n++] = sj->ops->actions[i].name;
	act = json_object_new_object();
	json_object_object_add(act, "action", n > 0 ? js_enum(names, n,
	    "an action from the catalogue, by name") : js_type("string", NULL));
	json_object_object_add(act, "parameters", js_object(llm_param_props(sj),
	    "the action's parameters; null for every parameter the action does not take"));
	json_object_object_add(act, "reason", js_type("string", NULL));
	json_object_object_add(act, "urgency", js_enum(urg, 3, NULL));
	json_object_object_add(act, "expected_outcome", js_type("string",
	    "what an observation will show once the action worked"));
	json_object_object_add(p, "recommended_actions", js_array_of(js_object(act, NULL),
	    "in the order to run them; empty when no catalogue action is safe"));
	return js_object(p, "a differential diagnosis of one ticket");
}

static const char llm_system[] =
    "You are the diagnosis stage of operatord, a supervisor that keeps a production system "
    "within its invariants. A ticket has been opened because an invariant was violated. "
    "Work like a careful site reliability engineer: read the ticket's evidence, the fresh "
    "observation and the outcomes of similar past tickets, then give a differential "
    "diagnosis.\n"
    "Rules:\n"
    "1. Base every statement on the figures you were given; quote them in metric_readings "
    "and supporting_evidence. Say \"insufficient data\" rather than guess.\n"
    "2. Consider at least one alternative explanation and say what supports and "
    "contradicts it.\n"
    "3. Recommend only actions from the action catalogue, by their exact names, with every "
    "required parameter filled from the ticket or the observation and within the stated "
    "type and bounds. Set the parameters an action does not take to null. Never invent an "
    "action, a node or a key.\n"
    "3a. A plan must fit the ticket: recommend an action only if its \"remedies\" list "
    "names the ticket's invariant, and only on the ticket's entity or one named in the "
    "ticket's evidence (its \"acts on\" parameters). Any other plan is invalid.\n"
    "4. You only plan. operatord validates your plan against the catalogue, compares it "
    "with its own rules, may ask a human to approve it, runs it and verifies the outcome. "
    "A plan that fails validation is discarded.\n"
    "5. If no catalogue action is safe or useful, return an empty recommended_actions list "
    "and explain why in risks; a human will be asked.\n"
    "6. Past tickets show what was done and whether verification held: prefer what was "
    "verified to work, and do not repeat what failed without a reason.\n"
    "7. confidence is a number from 0 to 1. severity is critical, warning or info.\n"
    "Answer only through the " LLM_TOOL_NAME " schema.";

const char *
llm_system_prompt(void)
{
	return llm_system;
}

/* ---- observation summary ---- */

static int
llm_mentions(json_object *v, const char *entity)
{
	if (entity == NULL || *entity == '\0')
		return 0;
	if (json_object_is_type(v, json_type_string))
		return strcmp(json_object_get_string(v), entity) == 0;
	if (!json_object_is_type(v, json_type_object))
		return 0;
	json_object_object_foreach(v, k, m)
	{
		(void)k;
		if (json_object_is_type(m, json_type_string) &&
		    strcmp(json_object_get_string(m), entity) == 0)
			return 1;
	}
	return 0;
}

static json_object *
llm_compact(json_object *v, const char *entity, int depth, size_t arr_max, size_t str_max)
{
	if (v == NULL)
		return NULL;
	switch (json_object_get_type(v)) {
	case json_type_string: {
		size_t len = (size_t)json_object_get_string_len(v);
		if (len <= str_max)
			return json_object_get(v);
		char *buf = malloc(str_max + 8);
		if (buf == NULL)
			return NULL;
		memcpy(buf, json_object_get_string(v), str_max);
		strcpy(buf + str_max, "...");
		json_object *s = js_str(buf);
		free(buf);
		return s;
	}
	case json_type_array: {
		size_t n = json_object_array_length(v), kept = 0;
		json_object *a = json_object_new_array();
		if (depth >= 6)
			return js_str("[...]");
		/* Entries about the ticket's entity first: they matter most. */
		for (int pass = 0; pass < 2; pass++)
			for (size_t i = 0; i < n && kept < arr_max; i++) {
				json_object *e = json_object_array_get_idx(v, i);
				if (llm_mentions(e, entity) != (pass == 0))
					continue;
				json_object_array_add(a, llm_compact(e, entity, depth + 1, arr_max, str_max));
				kept++;
			}
		if (kept < n) {
			char note[64];
			snprintf(note, sizeof(note), "(%zu more omitted)", n - kept);
			json_object_array_add(a, js_str(note));
		}
		return a;
	}
	case json_type_object: {
		if (depth >= 6)
			return js_str("{...}");
		json_object *o = json_object_new_object();
		json_object_object_foreach(v, k, m)
			json_object_object_add(o, k, llm_compact(m, entity, depth + 1, arr_max, str_max));
		return o;
	}
	default:
		return json_object_get(v);
	}
}

json_object *
llm_compact_obs(json_object *obs, const char *entity, size_t max_bytes)
{
	size_t arr = 16, str = 300;

	if (obs == NULL)
		return NULL;
	for (;;) {
		json_object *c = llm_compact(obs, entity, 0, arr, str);
		const char *s = json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN);
		if (strlen(s) <= max_bytes)
			return c;
		if (arr <= 1 && str <= 40) {
			/* Still too big: a cut text is better than nothing. */
			char *cut = strndup(s, max_bytes > 20 ? max_bytes - 20 : max_bytes);
			json_object *t = json_object_new_object();
			json_object_object_add(t, "truncated_observation", js_str(cut ? cut : ""));
			free(cut);
			json_object_put(c);
			return t;
		}
		json_object_put(c);
		arr = arr > 1 ? arr / 2 : 1;
		str = str > 40 ? str / 2 : 40;
	}
}

/* ---- the user message ---- */

static const char *
llm_js(json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* A ledger JSON column may come back as an object or as its text. */
static const char *
llm_js_field(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return "{}";
	if (json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return llm_js(v);
}

static void
llm_catalogue_text(FILE *f, const struct op_subject *sj)
{
	static const char *const tn[] = {"string", "integer", "unsigned 64-bit integer"};
	for (size_t i = 0; i < sj->ops->nactions; i++) {
		const struct op_action_def *a = &sj->ops->actions[i];
		fprintf(f, "- %s [risk %s%s]: %s\n  expected outcome: %s\n", a->name, a->risk,
		    a->irreversible ? ", irreversible" : a->revert ? ", reversible" : "",
		    a->description, a->expected_outcome);
		fprintf(f, "  remedies:");
		for (size_t k = 0; a->remedies && a->remedies[k]; k++)
			fprintf(f, "%s %s", k ? "," : "", a->remedies[k]);
		fprintf(f, "%s\n", a->remedies && a->remedies[0] ? "" : " nothing automatically");
		if (a->entity_params && a->entity_params[0]) {
			fprintf(f, "  acts on (the ticket's entity or one in its evidence):");
			for (size_t k = 0; a->entity_params[k]; k++)
				fprintf(f, "%s %s", k ? "," : "", a->entity_params[k]);
			fprintf(f, "\n");
		}
		if (a->nparams == 0)
			fprintf(f, "  parameters: none\n");
		for (size_t j = 0; j < a->nparams; j++) {
			const struct op_param_def *p = &a->params[j];
			fprintf(f, "  - %s: %s, %s", p->name, tn[p->type],
			    p->required ? "required" : "optional");
			if (p->type == OP_PARAM_STRING)
				fprintf(f, ", length %lld..%lld", (long long)p->min, (long long)p->max);
			else if (p->type == OP_PARAM_INT)
				fprintf(f, ", %lld..%lld", (long long)p->min, (long long)p->max);
			fprintf(f, ": %s\n", p->description);
		}
	}
	if (sj->ops->nactions == 0)
		fprintf(f, "(none: recommend no action)\n");
}

static void
llm_history_text(FILE *f, json_object *history)
{
	size_t n = history ? json_object_array_length(history) : 0;

	if (n == 0) {
		fprintf(f, "(none)\n");
		return;
	}
	for (size_t i = 0; i < n && i < LLM_HISTORY_MAX; i++) {
		json_object *h = json_object_array_get_idx(history, i);
		json_object *acts = op_json_arr(h, "actions"), *vers = op_json_arr(h, "verifications");
		fprintf(f, "- ticket %lld, entity \"%s\": %s", (long long)op_json_int(h, "id", 0),
		    op_json_str(h, "entity", ""), op_json_str(h, "status", "?"));
		if (*op_json_str(h, "reason", ""))
			fprintf(f, " (%s)", op_json_str(h, "reason", ""));
		fprintf(f, "\n");
		if (acts == NULL || json_object_array_length(acts) == 0)
			fprintf(f, "  actions: none ran\n");
		for (size_t j = 0; acts && j < json_object_array_length(acts); j++) {
			json_object *a = json_object_array_get_idx(acts, j);
			fprintf(f, "  action: %s %s -> %s", op_json_str(a, "name", "?"),
			    llm_js_field(a, "params"), op_json_str(a, "status", "?"));
			if (*op_json_str(a, "error", ""))
				fprintf(f, " (%s)", op_json_str(a, "error", ""));
			fprintf(f, "\n");
		}
		if (vers == NULL || json_object_array_length(vers) == 0)
			fprintf(f, "  verification: none\n");
		for (size_t j = 0; vers && j < json_object_array_length(vers); j++) {
			json_object *v = json_object_array_get_idx(vers, j);
			char fig[LLM_FIGURES_MAX + 8];
			op_strlcpy(fig, llm_js_field(v, "figures"), sizeof(fig));
			if (strlen(fig) >= LLM_FIGURES_MAX)
				strcpy(fig + LLM_FIGURES_MAX - 3, "...");
			fprintf(f, "  verification: %s %s\n", op_json_str(v, "result", "?"), fig);
		}
	}
}

char *
llm_user_prompt(const struct op_subject *sj, json_object *ticket, json_object *history,
    json_object *obs, const char *obs_err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	const char *entity = op_json_str(ticket, "entity", "");
	const char *inv = op_json_str(ticket, "invariant", "");
	const struct op_invariant_def *idef = op_subject_invariant(sj, inv);

	if (f == NULL)
		return NULL;
	fprintf(f, "## Ticket\n- id: %lld\n- subject: %s\n- invariant: %s\n- entity: %s\n"
	    "- severity: %s\n- message: %s\n- occurrences: %lld, attempts so far: %lld\n",
	    (long long)op_json_int(ticket, "id", 0), op_json_str(ticket, "subject", ""), inv,
	    entity, op_json_str(ticket, "severity", ""), op_json_str(ticket, "message", ""),
	    (long long)op_json_int(ticket, "occurrences", 1),
	    (long long)op_json_int(ticket, "attempts", 0));
	json_object *ev = llm_compact_obs(op_json_obj(ticket, "evidence"), entity, LLM_EVIDENCE_MAX);
	fprintf(f, "- evidence: %s\n\n", ev ? llm_js(ev) : "none");
	json_object_put(ev);

	fprintf(f, "## The system (subject \"%s\")\n%s\n\n", sj->name,
	    sj->ops->description ? sj->ops->description : "");
	fprintf(f, "## Invariant %s\n%s\n\n", inv, idef ? idef->description : "(not in the catalogue)");

	fprintf(f, "## Fresh observation (taken now; long lists cut, entries about \"%s\" first)\n",
	    entity);
	if (obs != NULL) {
		json_object *c = llm_compact_obs(obs, entity, LLM_OBS_MAX);
		fprintf(f, "%s\n\n", llm_js(c));
		json_object_put(c);
	} else {
		fprintf(f, "The fresh observation failed: %s\n\n", obs_err && *obs_err ? obs_err
		    : "unknown error");
	}

	fprintf(f, "## Action catalogue (the only actions you may recommend)\n");
	llm_catalogue_text(f, sj);
	fprintf(f, "\n## Similar past tickets (most recent first) and their verified outcomes\n");
	llm_history_text(f, history);
	fprintf(f, "\n## Task\nDiagnose this ticket and plan the remedy with catalogue actions "
	    "only. Fill every field of the " LLM_TOOL_NAME " schema.\n");
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- conversation and request bodies ---- */

void
llm_msgs_first(enum llm_backend b, json_object *messages, const char *user)
{
	json_object *m = json_object_new_object();

	(void)b;
	json_object_object_add(m, "role", js_str("user"));
	json_object_object_add(m, "content", js_str(user));
	json_object_array_add(messages, m);
}

void
llm_msgs_correct(enum llm_backend b, json_object *messages, json_object *assistant,
    const char *tool_use_id, const char *problems)
{
	json_object *a = json_object_new_object(), *u = json_object_new_object();
	char text[4096];

	snprintf(text, sizeof(text), "operatord rejected this answer: %s. Answer again with the "
	    "whole diagnosis, recommending only catalogue actions with valid parameters "
	    "(or none).", problems);
	json_object_object_add(a, "role", js_str("assistant"));
	json_object_object_add(u, "role", js_str("user"));
	if (b == LLM_ANTHROPIC) {
		/* The assistant turn goes back as it came; a tool_use block must be
		 * answered by a tool_result with its id in the next user turn. */
		json_object_object_add(a, "content", assistant ? json_object_get(assistant)
		    : js_str("(no answer)"));
		if (tool_use_id != NULL && *tool_use_id) {
			json_object *blocks = json_object_new_array(), *tr = json_object_new_object();
			json_object_object_add(tr, "type", js_str("tool_result"));
			json_object_object_add(tr, "tool_use_id", js_str(tool_use_id));
			json_object_object_add(tr, "is_error", json_object_new_boolean(1));
			json_object_object_add(tr, "content", js_str(text));
			json_object_array_add(blocks, tr);
			json_object_object_add(u, "content", blocks);
		} else {
			char more[4200];
			snprintf(more, sizeof(more), "You must answer by calling the %s tool. %s",
			    LLM_TOOL_NAME, text);
			json_object_object_add(u, "content", js_str(more));
		}
	} else {
		const char *s = assistant && json_object_is_type(assistant, json_type_string)
		    ? json_object_get_string(assistant) : "(no answer)";
		json_object_object_add(a, "content", js_str(*s ? s : "(empty answer)"));
		json_object_object_add(u, "content", js_str(text));
	}
	json_object_array_add(messages, a);
	json_object_array_add(messages, u);
}

char *
llm_request_body(const struct llm_conf *c, const struct op_subject *sj, json_object *messages)
{
	json_object *b = json_object_new_object();
	json_object *schema = llm_schema(sj);
	char *out;

	json_object_object_add(b, "model", js_str(c->model));
	json_object_object_add(b, "max_tokens", json_object_new_int64(c->max_tokens));
	json_object_object_add(b, "temperature", json_object_new_double(0.0));
	if (c->backend == LLM_ANTHROPIC) {
		json_object *tools = json_object_new_array(), *tool = json_object_new_object();
		json_object *choice = json_object_new_object();
		json_object_object_add(b, "system", js_str(llm_system));
		json_object_object_add(b, "messages", json_object_get(messages));
		json_object_object_add(tool, "name", js_str(LLM_TOOL_NAME));
		json_object_object_add(tool, "description", js_str("Record the diagnosis of the "
		    "ticket and the planned catalogue actions. operatord validates and runs them."));
		json_object_object_add(tool, "input_schema", schema);
		json_object_array_add(tools, tool);
		json_object_object_add(b, "tools", tools);
		json_object_object_add(choice, "type", js_str("tool"));
		json_object_object_add(choice, "name", js_str(LLM_TOOL_NAME));
		json_object_object_add(b, "tool_choice", choice);
	} else {
		json_object *msgs = json_object_new_array(), *sys = json_object_new_object();
		json_object *rf = json_object_new_object(), *js = json_object_new_object();
		json_object_object_add(sys, "role", js_str("system"));
		json_object_object_add(sys, "content", js_str(llm_system));
		json_object_array_add(msgs, sys);
		for (size_t i = 0; i < json_object_array_length(messages); i++)
			json_object_array_add(msgs, json_object_get(json_object_array_get_idx(messages, i)));
		json_object_object_add(b, "messages", msgs);
		json_object_object_add(js, "name", js_str(LLM_TOOL_NAME));
		json_object_object_add(js, "schema", schema);
		json_object_object_add(js, "strict", json_object_new_boolean(1));
		json_object_object_add(rf, "type", js_str("json_schema"));
		json_object_object_add(rf, "json_schema", js);
		json_object_object_add(b, "response_format", rf);
	}
	out = strdup(llm_js(b));
	json_object_put(b);
	return out;
}

size_t
llm_diag_nkeys(void)
{
	return OP_ARRAY_LEN(llm_diag_keys);
}

const char *
llm_diag_key(size_t i)
{
	return llm_diag_keys[i];
}
