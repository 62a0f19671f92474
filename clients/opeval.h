/* opeval: scored chaos campaigns against a running operatord.
 *
 * opeval_camp.c  campaign files
 * opeval_run.c   the trial loop: wait healthy, inject through chaos, follow the ledger
 * opeval_score.c one trial's score from the ledger's events and chaos's ground truth
 * opeval_report.c stdout table, JSON, HTML, compare
 * opeval.c       command line */
#ifndef OP_OPEVAL_H
#define OP_OPEVAL_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_MAX_FAULTS 16          /* fault lines in one campaign */
#define EVAL_MAX_PARAMS 8           /* key=value pairs on one fault line */
#define EVAL_DEF_TRIALS 20
#define EVAL_DEF_SETTLE_MS 5000     /* no violation for this long before a trial */
#define EVAL_DEF_COOLDOWN_MS 15000  /* after a trial's tickets closed */
#define EVAL_DEF_READY_MS 180000    /* give up on a healthy subject: not_started */
#define EVAL_DEF_TIMEOUT_MS 120000  /* injection -> verdict */
#define EVAL_DETECT_GRACE_MS 15000  /* after the fault is undone, a late ticket still counts */
#define EVAL_POLL_MS 250            /* ledger polling step */
#define EVAL_EXCERPT_MAX 40         /* event lines kept for a failed trial */

/* Trial outcomes: the first five are the interface contract. */
enum eval_status {
	EVAL_FIXED,
	EVAL_ESCALATED,
	EVAL_TIMEOUT,
	EVAL_NOT_DETECTED,
	EVAL_NOT_STARTED,
	EVAL_CLEARED,   /* healed before a verified fix (baseline: the expected end) */
	EVAL_UNPROVEN,  /* resolved, but verification could not credit the action
	                 * (the fault's own undo fell in its window) */
	EVAL_NSTATUS
};
extern const char *const eval_status_names[EVAL_NSTATUS];

struct eval_fault {
	char name[64];
	char params[EVAL_MAX_PARAMS][128]; /* "key=value", passed to chaos as given */
	size_t nparams;
};

struct eval_campaign {
	char name[128];
	char subject[64];
	int trials;
	int64_t settle_ms, cooldown_ms, ready_ms, timeout_ms;
	struct eval_fault faults[EVAL_MAX_FAULTS];
	size_t nfaults;
};

/* opeval_camp.c: "-" is not allowed; -1 with err "FILE:LINE: why". */
int eval_campaign_load(const char *path, struct eval_campaign *c, char *err, size_t errlen);

/* The ledger's events, fetched in order through the control socket. */
struct eval_events {
	int ctl;
	int64_t last;        /* highest seq held */
	json_object *all;    /* array of event rows (ts in ms, data an object) */
	const char *runtime_dir;
};
int eval_events_open(struct eval_events *e, const char *runtime_dir, char *err, size_t errlen);
void eval_events_close(struct eval_events *e);
/* Appends everything after e->last; -1 with err when the daemon is gone. */
int eval_events_poll(struct eval_events *e, char *err, size_t errlen);
/* A control request; 0 with *result (owned) or -1 with err (the daemon's). */
int eval_ctl(struct eval_events *e, const char *cmd, json_object *args, json_object **result,
    char *err, size_t errlen);

/* opeval_score.c. What chaos reported about one injection. */
struct eval_truth {
	const char *fault, *subject, *target;
	char expected[256], collateral[256], remedies[256]; /* comma lists */
	int64_t started_at, ended_at; /* ms; ended_at 0 while active */
	int64_t from_seq;             /* the trial's events are after this seq */
};
/* Scores one trial from the events with seq in (from_seq, to_seq]; adds the
 * trial object's score fields to *trial (from_seq is in t). baseline: the end that counts is the
 * ticket clearing by itself. */
void eval_score(json_object *events, const struct eval_truth *t, int64_t to_seq, int baseline,
    json_object *trial);
int eval_list_has(const char *list, const char *name);
/* Percentile (nearest rank) of the non-null numbers under key in trials of one
 * fault; NAN when there are none. */
double eval_pct(json_object *trials, const char *fault, const char *key, double p);

/* opeval_run.c */
struct eval_opts {
	const char *runtime_dir;
	int baseline;         /* run every fault again in observe mode */
	int only_baseline;
	const char *backend;  /* reported only */
	int verbose;
};
/* Runs the campaign; *report gets {campaign, trials, baseline_trials, ...}. */
int eval_run(const struct eval_campaign *c, const struct eval_opts *o, json_object **report,
    char *err, size_t errlen);
/* Load with no faults for duration_ms; every ticket is a false positive. */
int eval_soak(const char *runtime_dir, const char *subject, int64_t duration_ms,
    json_object **report, char *err, size_t errlen);

/* opeval_report.c */
void eval_summarize(json_object *report);
void eval_print_table(FILE *out, json_object *report);
int eval_write_json(const char *path, json_object *report, char *err, size_t errlen);
int eval_write_html(const char *path, json_object *report, char *err, size_t errlen);
int eval_compare(FILE *out, json_object *a, json_object *b);
void eval_print_soak(FILE *out, json_object *report);

#endif
