/* subject: the vtable every watched system implements, and the registry that
 * creates the configured ones. Linked into the observer, diagnoser, executor,
 * verifier and chaos workers; never into the supervisor's hot path. */
#ifndef OP_SUBJECT_H
#define OP_SUBJECT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

#define OP_ENTITY_MAX 128
#define OP_NAME_MAX 64

/* What one invariant says about one entity in one observation. BAND means
 * "cannot tell or between the fire and clear thresholds": the observer keeps
 * whatever state it had, so missing data never clears (or opens) a ticket. */
enum op_rd_state { OP_RD_HEALTHY, OP_RD_BAND, OP_RD_VIOLATED };

struct op_reading {
	const char *invariant;          /* static string: an op_invariant_def name */
	char entity[OP_ENTITY_MAX];
	enum op_rd_state state;
	double value;                   /* the measured figure */
	double threshold;               /* the figure it is compared with */
	char message[256];
	json_object *evidence;          /* owned; the figures that decided it */
};

struct op_readings {
	struct op_reading *v;
	size_t n, cap;
};

struct op_invariant_def {
	const char *name;
	const char *severity;  /* "critical" | "warning" */
	int64_t hold_for_ms;   /* violated this long before a ticket opens */
	int64_t clear_for_ms;  /* healthy this long before it counts as healed */
	const char *description;
};

enum op_param_type { OP_PARAM_STRING, OP_PARAM_INT, OP_PARAM_U64 };

struct op_param_def {
	const char *name;
	enum op_param_type type;
	int64_t min, max;      /* integers: bounds; strings: length bounds */
	int required;
	const char *description;
};

/* Which nodes an action touches, for the blast radius. */
enum op_touch {
	OP_TOUCH_NONE,    /* shared data (a key's counter or limit): no node */
	OP_TOUCH_PARAM,   /* the node its first entity parameter names */
	OP_TOUCH_PLANNED, /* picked when it runs; its result lists "touched" */
};

struct op_subject;

struct op_action_def {
	const char *name;
	const char *risk;      /* "low" | "medium" | "high" */
	const struct op_param_def *params;
	size_t nparams;
	const char *description;
	const char *expected_outcome;
	/* A plan must fit the ticket (op_plan_fits): the invariants this action
	 * may remedy (NULL-terminated; NULL: operators only), and the parameters
	 * naming what it acts on, each of which must be the ticket's entity or
	 * named in the ticket's evidence (NULL-terminated; NULL: cluster-wide). */
	const char *const *remedies;
	const char *const *entity_params;
	enum op_touch touches;
	/* Undo: what it restores, for humans (NULL: nothing to undo), and the
	 * subject's revert, given the "undo" object execute() put in its result.
	 * irreversible: nothing can bring back what it changed. */
	const char *undo;
	int (*revert)(struct op_subject *s, json_object *undo, json_object **result, char *err,
	    size_t errlen);
	int irreversible;
	/* Optional: OP_FIT_APPROVAL with why when a parameter is within bounds but
	 * past what may run without a human (set_max_store_down_time below PD's
	 * 30 min default); OP_FIT_OK otherwise. */
	int (*bounds)(json_object *params, char *why, size_t len);
};

struct op_fault_def {
	const char *name;
	const char *description;
	int64_t default_ttl_ms;
	const char *params;    /* human summary, e.g. "key=NAME pause=DURATION" */
	/* For scoring (chaos reports these with every injection): the invariants
	 * the fault is expected to break on its target, the ones it may also
	 * break as a side effect (any entity), and the actions that remedy it.
	 * Comma-separated names; "" when none. */
	const char *expected;
	const char *collateral;
	const char *remedies;
};

struct op_subject_ops {
	const char *name;
	const char *description; /* what the system is, for prompts and docs */
	const struct op_invariant_def *invariants;
	size_t ninvariants;
	const struct op_action_def *actions;
	size_t nactions;
	const struct op_fault_def *faults;
	size_t nfaults;

	/* Reads [subject.NAME]; fills err ("[subject.x] key: why") on bad config. */
	int (*create)(struct op_subject *s, const struct op_config *cfg, char *err, size_t errlen);
	void (*destroy)(struct op_subject *s);
	/* A fresh observation. -1 (err says why) when the subject cannot be observed
	 * at all; partial failures (one node down) are part of a successful one. */
	int (*observe)(struct op_subject *s, json_object **obs, char *err, size_t errlen);
	/* Evaluates every invariant on an observation. */
	void (*check)(struct op_subject *s, json_object *obs, struct op_readings *out);
	/* Offline playbook: a diagnosis (DESIGN §6 schema) for a ticket
	 * {invariant, entity, evidence, ...} given a fresh observation (may be NULL). */
	json_object *(*diagnose)(struct op_subject *s, json_object *ticket, json_object *obs);
	/* Preconditions on a fresh observation; -1 with why when the action must not run. */
	int (*precheck)(struct op_subject *s, const char *action, json_object *params,
	    json_object *obs, char *why, size_t whylen);
	/* Runs the action; -1 with err when it failed. *result gets the figures. */
	int (*execute)(struct op_subject *s, const char *action, json_object *params,
	    json_object **result, char *err, size_t errlen);
	/* Optional: the action's expected outcome on a fresh observation, written
	 * into *out (HEALTHY = it holds; value/threshold/evidence = the figures).
	 * Returns 1 when it judged, 0 to fall back to the ticket's invariant.
	 * A store_down ticket, say, is fixed when leaders are balanced across the
	 * stores still up, not when the dead store comes back. */
	int (*outcome)(struct op_subject *s, const char *invariant, const char *entity,
	    const char *action, json_object *params, json_object *obs, struct op_reading *out);
	/* Chaos: inject a fault; *undo receives what undo needs (and "target"). */
	int (*inject)(struct op_subject *s, const char *fault, json_object *params,
	    json_object **undo, char *err, size_t errlen);
	int (*undo)(struct op_subject *s, const char *fault, json_object *undo, char *err,
	    size_t errlen);
};

struct op_subject {
	const struct op_subject_ops *ops;
	char name[OP_NAME_MAX];
	void *priv;
};

/* readings */
struct op_reading *op_readings_add(struct op_readings *r, const char *invariant,
    const char *entity, enum op_rd_state state, double value, double threshold,
    json_object *evidence, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
const struct op_reading *op_readings_find(const struct op_readings *r, const char *invariant,
    const char *entity);
void op_readings_clear(struct op_readings *r);

/* catalogue */
const struct op_invariant_def *op_subject_invariant(const struct op_subject *s, const char *name);
const struct op_action_def *op_subject_action(const struct op_subject *s, const char *name);
const struct op_fault_def *op_subject_fault(const struct op_subject *s, const char *name);
/* Checks params against the action's typed bounds. Coerces only the
 * unambiguous ("3" -> 3 for an integer); rewrites *params in place. */
int op_action_validate(const struct op_action_def *a, json_object *params, char *err,
    size_t errlen);
/* The catalogue as JSON (actions with typed params and bounds, invariants). */
json_object *op_subject_catalogue(const struct op_subject *s);

/* Whether a plan step fits its ticket: the action is in the catalogue, its
 * parameters are within bounds, it remedies the ticket's invariant, and each
 * entity it acts on is the ticket's entity or named in its evidence (a key or
 * a scalar anywhere in it). Pure: no I/O, no observation. Returns
 * OP_FIT_OK, OP_FIT_APPROVAL (fits, but a parameter is past what may run
 * without a human: why says which) or OP_FIT_NO (why says why). */
enum op_fit { OP_FIT_OK = 0, OP_FIT_APPROVAL = 1, OP_FIT_NO = -1 };
int op_plan_fits(const struct op_subject *subject, const char *invariant, const char *entity,
    json_object *evidence, const char *action, json_object *params, char *why, size_t len);
/* Subject kind by name, for callers without a live subject (the supervisor). */
int op_plan_fits_kind(const char *subject, const char *invariant, const char *entity,
    json_object *evidence, const char *action, json_object *params, char *why, size_t len);

/* Ids a plan names must exist: every store id parameter is a store of the
 * observation (when it lists "stores"). 0, or -1 with why. */
int op_plan_ids_seen(const struct op_subject *s, const char *action, json_object *params,
    json_object *obs, char *why, size_t len);

/* Whether the action could have healed the ticket (verification credit): it
 * remedies the invariant and acts on the ticket's entity or one its evidence
 * names. A verification whose action could not have caused the heal is
 * "unproven", never "success". */
int op_action_can_heal(const char *subject, const char *invariant, const char *entity,
    json_object *evidence, const char *action, json_object *params);

/* Execution context of the action running in this process (the executor
 * runs one at a time). Long actions call op_action_cancelled() at their
 * cancellation points (before each side effect, after each wait) and stop,
 * recording in their result what they already did. blast_new_max: nodes an
 * OP_TOUCH_PLANNED action may touch beyond blast_touched (-1: no limit). */
struct op_exec_ctx {
	int (*cancelled)(void *arg);
	void *arg;
	int64_t blast_new_max;
	json_object *blast_touched; /* array of node names, borrowed; may be NULL */
};
void op_exec_ctx_set(const struct op_exec_ctx *ctx); /* NULL: none */
const struct op_exec_ctx *op_exec_ctx_get(void);
int op_action_cancelled(void);
/* Marks the running action cancelled (e.g. from a signal handler or the
 * executor's frame callback); cleared by op_exec_ctx_set. */
void op_action_cancel(void);
/* "Is the subject worse than before the action?" (undo a fix that made
 * things worse). A summary of one observation: the readings violated, and
 * the ticket's own figure. The executor records it right before acting, the
 * verifier on its last look; op_health_worse says whether the second is
 * worse: more invariants violated, or the ticket's figure further from its
 * threshold (by more than OP_WORSE_MARGIN of the distance before). */
#define OP_WORSE_MARGIN 0.1
struct op_health {
	int known;
	int64_t violated;
	int have_figure;
	enum op_rd_state state;
	double value, threshold;
};
void op_health_of(struct op_subject *s, json_object *obs, const char *invariant,
    const char *entity, struct op_health *out);
json_object *op_health_json(const struct op_health *h);
int op_health_from_json(json_object *j, struct op_health *h); /* -1 when j has none */
/* 1 with why when after is worse than before; 0 when not or cannot tell. */
int op_health_worse(const struct op_health *before, const struct op_health *after, char *why,
    size_t len);

/* Nodes in an observation: the length of its "nodes" or "stores" list; 0 when
 * it has neither (the blast radius's denominator). */
int64_t op_obs_nodes(json_object *obs);

/* registry: one subject per [subject.NAME] section. */
struct op_subjects {
	struct op_subject *v;
	size_t n;
};
int op_subjects_create(struct op_subjects *all, const struct op_config *cfg, char *err,
    size_t errlen);
void op_subjects_destroy(struct op_subjects *all);
struct op_subject *op_subjects_find(struct op_subjects *all, const char *name);
/* Known subject kinds, for --check-config. */
const struct op_subject_ops *op_subject_kind(const char *name);

/* Whether an observation saw everything (top-level "complete": true). An
 * entity with no reading counts as healthy only in a complete observation:
 * a key missing because Redis is down has not healed. */
int op_obs_complete(json_object *obs);

/* Focus: the entities a caller needs an explicit reading for (a ticket's
 * entity, the observer's firing fingerprints). A subject whose lists leave
 * out what is idle (a key with no traffic in its window) reads each focus
 * entity it can account for explicitly, so that absence never has to stand
 * for "healed". op_obs_focus adds one to an observation before check(). */
void op_obs_focus(json_object *obs, const char *entity);
int op_obs_in_focus(json_object *obs, const char *entity);
json_object *op_obs_focus_list(json_object *obs); /* array or NULL */

/* Fingerprint = subject/invariant/entity: identity never comes from LLM text. */
void op_fingerprint(char *out, size_t outlen, const char *subject, const char *invariant,
    const char *entity);

/* Diagnosis helpers shared by the playbooks: builds the DESIGN §6 schema. */
json_object *op_diag_new(const char *primary, double confidence, const char *severity);
void op_diag_add_evidence(json_object *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void op_diag_add_timeline(json_object *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void op_diag_add_component(json_object *d, const char *component);
void op_diag_add_reading(json_object *d, const char *name, double value, const char *unit);
void op_diag_add_alternative(json_object *d, const char *hypothesis, const char *supporting,
    const char *contradicting, const char *conclusion);
void op_diag_add_risk(json_object *d, const char *risk);
/* Takes ownership of params. */
void op_diag_add_action(json_object *d, const char *action, json_object *params,
    const char *reason, const char *urgency, const char *expected_outcome);

extern const struct op_subject_ops rl_subject_ops;
#ifdef OP_HAVE_TIKV
extern const struct op_subject_ops tikv_subject_ops;
#endif

#endif
