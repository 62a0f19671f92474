#include "subjects/subject.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"

static const struct op_subject_ops *const subject_kinds[] = {
	&rl_subject_ops,
#ifdef OP_HAVE_TIKV
	&tikv_subject_ops,
#endif
};

struct op_reading *
op_readings_add(struct op_readings *r, const char *invariant, const char *entity,
    enum op_rd_state state, double value, double threshold, json_object *evidence,
    const char *fmt, ...)
{
	va_list ap;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct op_reading *nv = realloc(r->v, cap * sizeof(*nv));
		if (nv == NULL) {
			json_object_put(evidence);
			return NULL;
		}
		r->v = nv;
		r->cap = cap;
	}
	struct op_reading *x = &r->v[r->n++];
	memset(x, 0, sizeof(*x));
	x->invariant = invariant;
	op_strlcpy(x->entity, entity, sizeof(x->entity));
	x->state = state;
	x->value = value;
	x->threshold = threshold;
	x->evidence = evidence ? evidence : json_object_new_object();
	va_start(ap, fmt);
	vsnprintf(x->message, sizeof(x->message), fmt, ap);
	va_end(ap);
	return x;
}

const struct op_reading *
op_readings_find(const struct op_readings *r, const char *invariant, const char *entity)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].invariant, invariant) == 0 && strcmp(r->v[i].entity, entity) == 0)
			return &r->v[i];
	return NULL;
}

void
op_readings_clear(struct op_readings *r)
{
	for (size_t i = 0; i < r->n; i++)
		json_object_put(r->v[i].evidence);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

const struct op_invariant_def *
op_subject_invariant(const struct op_subject *s, const char *name)
{
	for (size_t i = 0; i < s->ops->ninvariants; i++)
		if (strcmp(s->ops->invariants[i].name, name) == 0)
			return &s->ops->invariants[i];
	return NULL;
}

const struct op_action_def *
op_subject_action(const struct op_subject *s, const char *name)
{
	for (size_t i = 0; i < s->ops->nactions; i++)
		if (strcmp(s->ops->actions[i].name, name) == 0)
			return &s->ops->actions[i];
	return NULL;
}

const struct op_fault_def *
op_subject_fault(const struct op_subject *s, const char *name)
{
	for (size_t i = 0; i < s->ops->nfaults; i++)
		if (strcmp(s->ops->faults[i].name, name) == 0)
			return &s->ops->faults[i];
	return NULL;
}

static int
param_validate(const struct op_param_def *p, json_object *params, char *err, size_t errlen)
{
	json_object *v;

	if (!json_object_object_get_ex(params, p->name, &v) || v == NULL) {
		if (p->required) {
			snprintf(err, errlen, "missing parameter \"%s\"", p->name);
			return -1;
		}
		return 0;
	}
	if (p->type == OP_PARAM_STRING) {
		if (json_object_is_type(v, json_type_int)) {
			/* "node" may come back as 3 from a model: the string form is unambiguous. */
			char buf[32];
			snprintf(buf, sizeof(buf), "%lld", (long long)json_object_get_int64(v));
			json_object_object_add(params, p->name, json_object_new_string(buf));
			json_object_object_get_ex(params, p->name, &v);
		}
		if (!json_object_is_type(v, json_type_string)) {
			snprintf(err, errlen, "parameter \"%s\" must be a string", p->name);
			return -1;
		}
		int64_t len = json_object_get_string_len(v);
		if (len < p->min || len > p->max) {
			snprintf(err, errlen, "parameter \"%s\" length %lld outside %lld..%lld",
			    p->name, (long long)len, (long long)p->min, (long long)p->max);
			return -1;
		}
		return 0;
	}
	/* integers */
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		if (p->type == OP_PARAM_U64) {
			uint64_t u;
			if (op_parse_u64(s, &u) != 0) {
				snprintf(err, errlen, "parameter \"%s\": \"%s\" is not an unsigned integer",
				    p->name, s);
				return -1;
			}
			json_object_object_add(params, p->name, json_object_new_uint64(u));
		} else {
			int64_t i;
			if (op_parse_int(s, INT64_MIN, INT64_MAX, &i) != 0) {
				snprintf(err, errlen, "parameter \"%s\": \"%s\" is not an integer",
				    p->name, s);
				return -1;
			}
			json_object_object_add(params, p->name, json_object_new_int64(i));
		}
		json_object_object_get_ex(params, p->name, &v);
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (d != (double)(int64_t)d) {
			snprintf(err, errlen, "parameter \"%s\" must be a whole number", p->name);
			return -1;
		}
		json_object_object_add(params, p->name, json_object_new_int64((int64_t)d));
		json_object_object_get_ex(params, p->name, &v);
	}
	if (!json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "parameter \"%s\" must be an integer", p->name);
		return -1;
	}
	if (p->type == OP_PARAM_U64) {
		/* json-c reports negatives through get_int64 */
		if (json_object_get_int64(v) < 0) {
			snprintf(err, errlen, "parameter \"%s\" must not be negative", p->name);
			return -1;
		}
		return 0;
	}
	int64_t i = json_object_get_int64(v);
	if (i < p->min || i > p->max) {
		snprintf(err, errlen, "parameter \"%s\" = %lld outside %lld..%lld", p->name,
		    (long long)i, (long long)p->min, (long long)p->max);
		return -1;
	}
	return 0;
}

int
op_action_validate(const struct op_action_def *a, json_object *params, char *err,
    size_t errlen)
{
	if (params == NULL || !json_object_is_type(params, json_type_object)) {
		snprintf(err, errlen, "parameters of %s must be an object", a->name);
		return -1;
	}
	json_object_object_foreach(params, k, v)
	{
		(void)v;
		int known = 0;
		for (size_t i = 0; i < a->nparams; i++)
			if (strcmp(a->params[i].name, k) == 0)
				known = 1;
		if (!known) {
			snprintf(err, errlen, "%s takes no parameter \"%s\"", a->name, k);
			return -1;
		}
	}
	for (size_t i = 0; i < a->nparams; i++)
		if (param_validate(&a->params[i], params, err, errlen) != 0)
			return -1;
	return 0;
}

static const char *const param_type_names[] = {"string", "integer", "uint64"};

static json_object *
cat_strlist(const char *const *v)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; v && v[i]; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

json_object *
op_subject_catalogue(const struct op_subject *s)
{
	json_object *cat = json_object_new_object();
	json_object *acts = json_object_new_array();
	json_object *invs = json_object_new_array();

	for (size_t i = 0; i < s->ops->nactions; i++) {
		const struct op_action_def *a = &s->ops->actions[i];
		json_object *ja = json_object_new_object();
		json_object *jp = json_object_new_array();
		json_object_object_add(ja, "name", json_object_new_string(a->name));
		json_object_object_add(ja, "risk", json_object_new_string(a->risk));
		json_object_object_add(ja, "description", json_object_new_string(a->description));
		json_object_object_add(ja, "expected_outcome",
		    json_object_new_string(a->expected_outcome));
		for (size_t j = 0; j < a->nparams; j++) {
			const struct op_param_def *p = &a->params[j];
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(p->name));
			json_object_object_add(o, "type", json_object_new_string(param_type_names[p->type]));
			json_object_object_add(o, "required", json_object_new_boolean(p->required));
			if (p->type == OP_PARAM_STRING) {
				json_object_object_add(o, "min_length", json_object_new_int64(p->min));
				json_object_object_add(o, "max_length", json_object_new_int64(p->max));
			} else if (p->type == OP_PARAM_INT) {
				json_object_object_add(o, "minimum", json_object_new_int64(p->min));
				json_object_object_add(o, "maximum", json_object_new_int64(p->max));
			}
			json_object_object_add(o, "description", json_object_new_string(p->description));
			json_object_array_add(jp, o);
		}
		json_object_object_add(ja, "parameters", jp);
		/* what a plan with this action must fit (op_plan_fits) */
		json_object_object_add(ja, "remedies", cat_strlist(a->remedies));
		json_object_object_add(ja, "acts_on", cat_strlist(a->entity_params));
		json_object_object_add(ja, "reversible", json_object_new_boolean(a->revert != NULL));
		if (a->undo)
			json_object_object_add(ja, "undo", json_object_new_string(a->undo));
		json_object_object_add(ja, "irreversible", json_object_new_boolean(a->irreversible));
		json_object_array_add(acts, ja);
	}
	for (size_t i = 0; i < s->ops->ninvariants; i++) {
		const struct op_invariant_def *d = &s->ops->invariants[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(d->name));
		json_object_object_add(o, "severity", json_object_new_string(d->severity));
		json_object_object_add(o, "description", json_object_new_string(d->description));
		json_object_array_add(invs, o);
	}
	json_object_object_add(cat, "actions", acts);
	json_object_object_add(cat, "invariants", invs);
	return cat;
}

int
op_subjects_create(struct op_subjects *all, const struct op_config *cfg, char *err, size_t errlen)
{
	memset(all, 0, sizeof(*all));
	for (size_t i = 0; i < op_config_section_count(cfg); i++) {
		const char *sec = op_config_section_name(cfg, i);
		if (strncmp(sec, "subject.", 8) != 0)
			continue;
		const struct op_subject_ops *ops = op_subject_kind(sec + 8);
		if (ops == NULL) {
			snprintf(err, errlen, "[%s]: unknown subject kind \"%s\"", sec, sec + 8);
			op_subjects_destroy(all);
			return -1;
		}
		struct op_subject *nv = realloc(all->v, (all->n + 1) * sizeof(*nv));
		if (nv == NULL) {
			snprintf(err, errlen, "out of memory");
			op_subjects_destroy(all);
			return -1;
		}
		all->v = nv;
		struct op_subject *s = &all->v[all->n];
		memset(s, 0, sizeof(*s));
		s->ops = ops;
		op_strlcpy(s->name, ops->name, sizeof(s->name));
		if (ops->create(s, cfg, err, errlen) != 0) {
			op_subjects_destroy(all);
			return -1;
		}
		all->n++;
	}
	return 0;
}

void
op_subjects_destroy(struct op_subjects *all)
{
	for (size_t i = 0; i < all->n; i++)
		all->v[i].ops->destroy(&all->v[i]);
	free(all->v);
	memset(all, 0, sizeof(*all));
}

struct op_subject *
op_subjects_find(struct op_subjects *all, const char *name)
{
	for (size_t i = 0; i < all->n; i++)
		if (strcmp(all->v[i].name, name) == 0)
			return &all->v[i];
	return NULL;
}

const struct op_subject_ops *
op_subject_kind(const char *name)
{
	for (size_t i = 0; i < OP_ARRAY_LEN(subject_kinds); i++)
		if (strcmp(subject_kinds[i]->name, name) == 0)
			return subject_kinds[i];
	return NULL;
}

int
op_obs_complete(json_object *obs)
{
	json_object *v;

	return obs != NULL && json_object_object_get_ex(obs, "complete", &v) &&
	    json_object_get_boolean(v);
}

#define OP_OBS_FOCUS "focus"

void
op_obs_focus(json_object *obs, const char *entity)
{
	json_object *arr;

	if (obs == NULL || entity == NULL || op_obs_in_focus(obs, entity))
		return;
	if (!json_object_object_get_ex(obs, OP_OBS_FOCUS, &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		arr = json_object_new_array();
		json_object_object_add(obs, OP_OBS_FOCUS, arr);
	}
	json_object_array_add(arr, json_object_new_string(entity));
}

json_object *
op_obs_focus_list(json_object *obs)
{
	return op_json_arr(obs, OP_OBS_FOCUS);
}

int
op_obs_in_focus(json_object *obs, const char *entity)
{
	json_object *arr = op_obs_focus_list(obs);

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), entity))
			return 1;
	return 0;
}

void
op_fingerprint(char *out, size_t outlen, const char *subject, const char *invariant,
    const char *entity)
{
	snprintf(out, outlen, "%s/%s/%s", subject, invariant, entity);
}

json_object *
op_diag_new(const char *primary, double confidence, const char *severity)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "timeline", json_object_new_array());
	json_object_object_add(d, "affected_components", json_object_new_array());
	json_object_object_add(d, "metric_readings", json_object_new_array());
	json_object_object_add(d, "primary_diagnosis", json_object_new_string(primary));
	json_object_object_add(d, "confidence", json_object_new_double(confidence));
	json_object_object_add(d, "supporting_evidence", json_object_new_array());
	json_object_object_add(d, "alternatives_considered", json_object_new_array());
	json_object_object_add(d, "severity", json_object_new_string(severity));
	json_object_object_add(d, "risks", json_object_new_array());
	json_object_object_add(d, "recommended_actions", json_object_new_array());
	return d;
}

static void
diag_append_fmt(json_object *d, const char *key, const char *fmt, va_list ap)
{
	char buf[512];
	json_object *a;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (json_object_object_get_ex(d, key, &a))
		json_object_array_add(a, json_object_new_string(buf));
}

void
op_diag_add_evidence(json_object *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_append_fmt(d, "supporting_evidence", fmt, ap);
	va_end(ap);
}

void
op_diag_add_timeline(json_object *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_append_fmt(d, "timeline", fmt, ap);
	va_end(ap);
}

void
op_diag_add_component(json_object *d, const char *component)
{
	json_object *a;

	if (json_object_object_get_ex(d, "affected_components", &a))
		json_object_array_add(a, json_object_new_string(component));
}

void
op_diag_add_reading(json_object *d, const char *name, double value, const char *unit)
{
	json_object *a, *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "value", json_object_new_double(value));
	json_object_object_add(o, "unit", json_object_new_string(unit));
	if (json_object_object_get_ex(d, "metric_readings", &a))
		json_object_array_add(a, o);
	else
		json_object_put(o);
}

void
op_diag_add_alternative(json_object *d, const char *hypothesis, const char *supporting,
    const char *contradicting, const char *conclusion)
{
	json_object *a, *o = json_object_new_object();

	json_object_object_add(o, "hypothesis", json_object_new_string(hypothesis));
	json_object_object_add(o, "supporting", json_object_new_string(supporting));
	json_object_object_add(o, "contradicting", json_object_new_string(contradicting));
	json_object_object_add(o, "conclusion", json_object_new_string(conclusion));
	if (json_object_object_get_ex(d, "alternatives_considered", &a))
		json_object_array_add(a, o);
	else
		json_object_put(o);
}

void
op_diag_add_risk(json_object *d, const char *risk)
{
	json_object *a;

	if (json_object_object_get_ex(d, "risks", &a))
		json_object_array_add(a, json_object_new_string(risk));
}

void
op_diag_add_action(json_object *d, const char *action, json_object *params, const char *reason,
    const char *urgency, const char *expected_outcome)
{
	json_object *a, *o = json_object_new_object();

	json_object_object_add(o, "action", json_object_new_string(action));
	json_object_object_add(o, "parameters", params ? params : json_object_new_object());
	json_object_object_add(o, "reason", json_object_new_string(reason));
	json_object_object_add(o, "urgency", json_object_new_string(urgency));
	json_object_object_add(o, "expected_outcome", json_object_new_string(expected_outcome));
	if (json_object_object_get_ex(d, "recommended_actions", &a))
		json_object_array_add(a, o);
	else
		json_object_put(o);
}

/* ---- plans must fit the ticket ---- */

#define OP_FIT_DEPTH_MAX 8 /* evidence nesting searched for a named entity */

/* Whether `name` appears in the evidence as an object key or a scalar value. */
static int
fit_named(json_object *ev, const char *name, int depth)
{
	char buf[32];

	if (ev == NULL || depth > OP_FIT_DEPTH_MAX)
		return 0;
	switch (json_object_get_type(ev)) {
	case json_type_object: {
		json_object_object_foreach(ev, k, v)
		{
			if (strcmp(k, name) == 0 || fit_named(v, name, depth + 1))
				return 1;
		}
		return 0;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(ev); i++)
			if (fit_named(json_object_array_get_idx(ev, i), name, depth + 1))
				return 1;
		return 0;
	case json_type_string:
		return strcmp(json_object_get_string(ev), name) == 0;
	case json_type_int:
		/* json-c keeps u64 ids above INT64_MAX as uint64 */
		if (json_object_get_int64(ev) == INT64_MAX)
			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)json_object_get_uint64(ev));
		else
			snprintf(buf, sizeof(buf), "%lld", (long long)json_object_get_int64(ev));
		return strcmp(buf, name) == 0;
	default:
		return 0;
	}
}

/* A parameter's value as text ("5", "key-a"); "" when absent or null. */
static void
fit_param_text(json_object *params, const char *name, char *out, size_t len)
{
	json_object *v;

	out[0] = '\0';
	if (params == NULL || !json_object_object_get_ex(params, name, &v) || v == NULL)
		return;
	if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) == INT64_MAX)
		snprintf(out, len, "%llu", (unsigned long long)json_object_get_uint64(v));
	else
		snprintf(out, len, "%s", json_object_get_string(v));
}

int
op_plan_fits(const struct op_subject *s, const char *invariant, const char *entity,
    json_object *evidence, const char *action, json_object *params, char *why, size_t len)
{
	const struct op_action_def *a = s ? op_subject_action(s, action ? action : "") : NULL;
	char val[OP_ENTITY_MAX];
	int rem = 0;

	why[0] = '\0';
	if (a == NULL) {
		snprintf(why, len, "\"%s\" is not in the action catalogue", action ? action : "");
		return OP_FIT_NO;
	}
	/* bounds on a copy: callers keep their own coercions */
	json_object *copy = NULL;
	if (params == NULL)
		copy = json_object_new_object();
	else if (json_object_deep_copy(params, &copy, NULL) != 0)
		copy = NULL;
	if (op_action_validate(a, copy, why, len) != 0) {
		json_object_put(copy);
		return OP_FIT_NO;
	}
	for (size_t i = 0; a->remedies && a->remedies[i]; i++)
		rem |= invariant && strcmp(a->remedies[i], invariant) == 0;
	if (!rem) {
		char list[256] = "";
		for (size_t i = 0; a->remedies && a->remedies[i]; i++) {
			size_t l = strlen(list);
			snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", a->remedies[i]);
		}
		snprintf(why, len, "%s does not remedy %s (it remedies: %s)", a->name,
		    invariant ? invariant : "?", list[0] ? list : "nothing automatically");
		json_object_put(copy);
		return OP_FIT_NO;
	}
	for (size_t i = 0; a->entity_params && a->entity_params[i]; i++) {
		fit_param_text(copy, a->entity_params[i], val, sizeof(val));
		if (val[0] == '\0')
			continue; /* optional and absent: acts cluster-wide */
		if ((entity && strcmp(val, entity) == 0) || fit_named(evidence, val, 0))
			continue;
		snprintf(why, len, "%s %s=%s is neither the ticket's entity (%s) nor named in its "
		    "evidence", a->name, a->entity_params[i], val, entity ? entity : "?");
		json_object_put(copy);
		return OP_FIT_NO;
	}
	int rc = OP_FIT_OK;
	if (a->bounds != NULL)
		rc = a->bounds(copy, why, len) == OP_FIT_APPROVAL ? OP_FIT_APPROVAL : OP_FIT_OK;
	json_object_put(copy);
	return rc;
}

int
op_plan_fits_kind(const char *subject, const char *invariant, const char *entity,
    json_object *evidence, const char *action, json_object *params, char *why, size_t len)
{
	struct op_subject fake = {0};

	fake.ops = subject ? op_subject_kind(subject) : NULL;
	if (fake.ops == NULL) {
		snprintf(why, len, "unknown subject \"%s\"", subject ? subject : "");
		return OP_FIT_NO;
	}
	return op_plan_fits(&fake, invariant, entity, evidence, action, params, why, len);
}

int
op_plan_ids_seen(const struct op_subject *s, const char *action, json_object *params,
    json_object *obs, char *why, size_t len)
{
	const struct op_action_def *a = s ? op_subject_action(s, action ? action : "") : NULL;
	json_object *stores = op_json_arr(obs, "stores"), *v;

	why[0] = '\0';
	if (a == NULL || stores == NULL || params == NULL)
		return 0; /* nothing to compare with: the precheck reads PD itself */
	for (size_t i = 0; i < a->nparams; i++) {
		const struct op_param_def *p = &a->params[i];
		if (p->type != OP_PARAM_U64 || strstr(p->name, "store") == NULL ||
		    !json_object_object_get_ex(params, p->name, &v) || v == NULL)
			continue;
		char want[32];
		fit_param_text(params, p->name, want, sizeof(want));
		int seen = 0;
		for (size_t k = 0; k < json_object_array_length(stores) && !seen; k++) {
			char have[32];
			fit_param_text(json_object_array_get_idx(stores, k), "id", have, sizeof(have));
			seen = strcmp(have, want) == 0;
		}
		if (!seen) {
			snprintf(why, len, "%s %s=%s: no such store in the observation", a->name, p->name,
			    want);
			return -1;
		}
	}
	return 0;
}

int
op_action_can_heal(const char *subject, const char *invariant, const char *entity,
    json_object *evidence, const char *action, json_object *params)
{
	char why[256];

	/* within its remedies and on the ticket's entity: a risky parameter that
	 * needed approval still counts */
	return op_plan_fits_kind(subject, invariant, entity, evidence, action, params, why,
	    sizeof(why)) != OP_FIT_NO;
}

/* ---- execution context ---- */

static struct op_exec_ctx exec_ctx;
static int exec_have_ctx;
/* set from a signal handler (the executor's SIGUSR1 on the kill switch) */
static volatile sig_atomic_t exec_cancel_flag;

void
op_exec_ctx_set(const struct op_exec_ctx *ctx)
{
	exec_cancel_flag = 0;
	exec_have_ctx = ctx != NULL;
	if (ctx != NULL)
		exec_ctx = *ctx;
	else
		memset(&exec_ctx, 0, sizeof(exec_ctx));
}

const struct op_exec_ctx *
op_exec_ctx_get(void)
{
	return exec_have_ctx ? &exec_ctx : NULL;
}

void
op_action_cancel(void)
{
	exec_cancel_flag = 1;
}

int
op_action_cancelled(void)
{
	if (exec_cancel_flag)
		return 1;
	if (exec_have_ctx && exec_ctx.cancelled != NULL && exec_ctx.cancelled(exec_ctx.arg)) {
		exec_cancel_flag = 1;
		return 1;
	}
	return 0;
}

int64_t
op_obs_nodes(json_object *obs)
{
	json_object *a;

	if (obs == NULL)
		return 0;
	if ((a = op_json_arr(obs, "nodes")) != NULL || (a = op_json_arr(obs, "stores")) != NULL)
		return (int64_t)json_object_array_length(a);
	return 0;
}

/* ---- worse than before? ---- */

void
op_health_of(struct op_subject *s, json_object *obs, const char *invariant, const char *entity,
    struct op_health *out)
{
	struct op_readings rd = {0};

	memset(out, 0, sizeof(*out));
	if (s == NULL || obs == NULL)
		return;
	s->ops->check(s, obs, &rd);
	out->known = 1;
	for (size_t i = 0; i < rd.n; i++) {
		const struct op_reading *r = &rd.v[i];
		out->violated += r->state == OP_RD_VIOLATED;
		if (invariant && entity && !strcmp(r->invariant, invariant) &&
		    !strcmp(r->entity, entity)) {
			out->have_figure = 1;
			out->state = r->state;
			out->value = r->value;
			out->threshold = r->threshold;
		}
	}
	op_readings_clear(&rd);
}

json_object *
op_health_json(const struct op_health *h)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "violated", json_object_new_int64(h->violated));
	if (h->have_figure) {
		json_object_object_add(o, "state", json_object_new_string(
		    h->state == OP_RD_VIOLATED ? "violated" : h->state == OP_RD_HEALTHY ? "healthy"
		    : "band"));
		json_object_object_add(o, "value", json_object_new_double(h->value));
		json_object_object_add(o, "threshold", json_object_new_double(h->threshold));
	}
	return o;
}

int
op_health_from_json(json_object *j, struct op_health *h)
{
	json_object *v;

	memset(h, 0, sizeof(*h));
	if (j == NULL || !json_object_object_get_ex(j, "violated", &v))
		return -1;
	h->known = 1;
	h->violated = json_object_get_int64(v);
	if (json_object_object_get_ex(j, "value", &v) && v != NULL) {
		const char *st = op_json_str(j, "state", "band");
		h->have_figure = 1;
		h->state = !strcmp(st, "violated") ? OP_RD_VIOLATED : !strcmp(st, "healthy")
		    ? OP_RD_HEALTHY : OP_RD_BAND;
		h->value = json_object_get_double(v);
		h->threshold = op_json_double(j, "threshold", 0);
	}
	return 0;
}

int
op_health_worse(const struct op_health *before, const struct op_health *after, char *why,
    size_t len)
{
	why[0] = '\0';
	if (!before->known || !after->known)
		return 0; /* cannot tell: never undo on a guess */
	if (after->violated > before->violated) {
		snprintf(why, len, "%lld invariant reading(s) violated after the action, %lld before",
		    (long long)after->violated, (long long)before->violated);
		return 1;
	}
	if (before->have_figure && after->have_figure && after->state == OP_RD_VIOLATED) {
		double db = fabs(before->value - before->threshold);
		double da = fabs(after->value - after->threshold);
		if (da > db * (1.0 + OP_WORSE_MARGIN) && da - db > 0) {
			snprintf(why, len, "the ticket's figure moved away from its threshold: %g vs %g "
			    "before, %g vs %g after", before->value, before->threshold, after->value,
			    after->threshold);
			return 1;
		}
	}
	return 0;
}
