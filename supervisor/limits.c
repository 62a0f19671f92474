/* limits: the limits an action must fit in before it runs (DESIGN §7):
 * token buckets per (subject, action) and per subject, the daily cap on
 * destructive (risk high) actions and the blast radius, what they charge,
 * and what is left of each. Their state lives in the ledger, so a restart
 * never refills a spent budget. The [safety] section and the levels are in
 * policy.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/od.h"

#define POLICY_MILLI 1000 /* tokens are stored in thousandths */
#define POLICY_BLAST_LIST_MAX 64 /* nodes listed per subject in a blast check */


/* Tokens left in thousandths, refilled up to now (not written back). */
static int64_t
policy_bucket_left(const char *scope, const struct od_bucket_cfg *b, int64_t now)
{
	json_object *row = ledger_row(od->ledger, "SELECT milli,updated_at FROM budgets WHERE"
	    " scope=?1", "s", scope);
	int64_t cap = b->capacity * POLICY_MILLI, milli = cap;

	if (row != NULL) {
		int64_t dt = now - op_json_int(row, "updated_at", now);
		milli = op_json_int(row, "milli", cap);
		if (dt > 0)
			milli += (int64_t)((double)dt * (double)cap / (double)b->period_ms);
		if (milli > cap)
			milli = cap;
		json_object_put(row);
	}
	return milli;
}

static void
policy_scope(char *out, size_t len, const char *kind, json_object *t, json_object *a)
{
	if (!strcmp(kind, "action"))
		snprintf(out, len, "action:%s/%s", op_json_str(t, "subject", ""),
		    op_json_str(a, "name", ""));
	else
		snprintf(out, len, "subject:%s", op_json_str(t, "subject", ""));
}

static int64_t
policy_day_start(int64_t now)
{
	return now - now % OD_DAY_MS;
}

int64_t
policy_destructive_today(int64_t now)
{
	return ledger_scalar(od->ledger, 0, "SELECT COUNT(*) FROM actions WHERE risk='high' AND"
	    " charged_at>=?1", "i", policy_day_start(now));
}

const char *
policy_target(json_object *params)
{
	static const char *const keys[] = {"node", "store_id", "to_store_id", "store"};
	json_object *v;

	for (size_t i = 0; i < OP_ARRAY_LEN(keys); i++)
		if (params && json_object_object_get_ex(params, keys[i], &v) && v != NULL)
			return json_object_get_string(v);
	return NULL;
}

/* Node counts the observer reported (policy_note_nodes): TiKV's store count
 * comes from PD, not from the configuration. */
#define POLICY_NODES_SUBJECTS 16
static struct {
	char subject[64];
	int64_t n;
} policy_nodes_seen[POLICY_NODES_SUBJECTS];

void
policy_note_nodes(const char *subject, int64_t n)
{
	size_t free_slot = POLICY_NODES_SUBJECTS;

	if (subject == NULL || n <= 0)
		return;
	for (size_t i = 0; i < POLICY_NODES_SUBJECTS; i++) {
		if (!strcmp(policy_nodes_seen[i].subject, subject)) {
			policy_nodes_seen[i].n = n;
			return;
		}
		if (policy_nodes_seen[i].subject[0] == '\0' && free_slot == POLICY_NODES_SUBJECTS)
			free_slot = i;
	}
	if (free_slot < POLICY_NODES_SUBJECTS) {
		op_strlcpy(policy_nodes_seen[free_slot].subject, subject,
		    sizeof(policy_nodes_seen[free_slot].subject));
		policy_nodes_seen[free_slot].n = n;
	}
}

/* Nodes of a subject: "nodes = a,b,c" in its section, else what the observer
 * last reported, else what the last action that counted them said; 0 when
 * unknown. */
static int64_t
policy_subject_nodes(const char *subject)
{
	char sec[128];
	const char *v;
	int64_t n = 0;

	snprintf(sec, sizeof(sec), "subject.%s", subject);
	v = op_config_get(od->cfg, sec, "nodes");
	if (v != NULL && *v != '\0') {
		n = 1;
		for (const char *p = v; *p; p++)
			n += *p == ',';
		return n;
	}
	for (size_t i = 0; i < POLICY_NODES_SUBJECTS; i++)
		if (!strcmp(policy_nodes_seen[i].subject, subject))
			return policy_nodes_seen[i].n;
	return ledger_scalar(od->ledger, 0, "SELECT json_extract(result,'$.nodes_total') FROM"
	    " actions WHERE subject=?1 AND json_extract(result,'$.nodes_total') > 0 ORDER BY id"
	    " DESC LIMIT 1", "s", subject);
}

/* The cap on distinct nodes touched per window; 0 = none. */
static int64_t
policy_blast_cap(int64_t total)
{
	int64_t cap = 0;

	if (total > 0 && od->safety.blast_share < 1.0) {
		cap = (int64_t)(od->safety.blast_share * (double)total + 1e-9); /* floor */
		if (cap < 1)
			cap = 1;
	}
	if (od->safety.blast_max_nodes > 0 && (cap == 0 || od->safety.blast_max_nodes < cap))
		cap = od->safety.blast_max_nodes;
	return cap;
}

static void
policy_touched_add(json_object *set, const char *node)
{
	if (node == NULL || node[0] == '\0')
		return;
	for (size_t i = 0; i < json_object_array_length(set); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(set, i)), node))
			return;
	if (json_object_array_length(set) < POLICY_BLAST_LIST_MAX)
		json_object_array_add(set, json_object_new_string(node));
}

/* Distinct nodes the subject's actions touched within the window, and any
 * this ticket touched: the declared target of each action, plus what an
 * action that plans at run time (rebalance_leaders) reported touching. */
static json_object *
policy_touched(const char *subject, int64_t ticket, int64_t now)
{
	json_object *set = json_object_new_array();
	json_object *rows = ledger_rows(od->ledger, "SELECT target, result FROM actions WHERE"
	    " subject=?1 AND charged_at IS NOT NULL AND (charged_at>=?2 OR ticket_id=?3)", "sii",
	    subject, now - od->safety.blast_window_ms, ticket);

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		json_object *tt = op_json_arr(op_json_obj(r, "result"), "touched");
		policy_touched_add(set, op_json_str(r, "target", NULL));
		for (size_t k = 0; tt && k < json_object_array_length(tt); k++)
			policy_touched_add(set, json_object_get_string(json_object_array_get_idx(tt, k)));
	}
	json_object_put(rows);
	return set;
}

static void
policy_list(json_object *set, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(set); i++) {
		size_t l = strlen(out);
		snprintf(out + l, len - l, "%s%s", l ? ", " : "",
		    json_object_get_string(json_object_array_get_idx(set, i)));
	}
}

json_object *
policy_blast_allowance(json_object *t, json_object *a)
{
	const char *subject = op_json_str(t, "subject", "");
	int64_t now = op_wall_ms(), total = policy_subject_nodes(subject);
	int64_t cap = policy_blast_cap(total);
	json_object *o = json_object_new_object(), *set = policy_touched(subject,
	    op_json_int(t, "id", 0), now);
	int64_t n = (int64_t)json_object_array_length(set);

	(void)a;
	op_json_set_int(o, "nodes_total", total);
	op_json_set_int(o, "cap", cap);
	op_json_set_int(o, "new_max", cap == 0 ? -1 : (cap > n ? cap - n : 0));
	json_object_object_add(o, "touched", set);
	return o;
}

static int
policy_blast(json_object *t, json_object *a, char *detail, size_t len)
{
	const char *target = policy_target(op_json_obj(a, "params"));
	const char *subject = op_json_str(t, "subject", "");
	int64_t total = policy_subject_nodes(subject), now = op_wall_ms();
	int64_t cap = policy_blast_cap(total);
	char list[512];

	struct op_subject fake = {0};
	const struct op_action_def *def;

	fake.ops = op_subject_kind(subject);
	def = fake.ops ? op_subject_action(&fake, op_json_str(a, "name", "")) : NULL;
	if (cap == 0 || (def != NULL && def->touches == OP_TOUCH_NONE))
		return 0; /* shared data (a key), not a node */
	json_object *set = policy_touched(subject, op_json_int(t, "id", 0), now);
	int64_t n = (int64_t)json_object_array_length(set);
	int seen = 0;
	for (int64_t i = 0; target && i < n; i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(set, (size_t)i)), target))
			seen = 1;
	policy_list(set, list, sizeof(list));
	json_object_put(set);
	if (target != NULL) {
		if (seen || n + 1 <= cap)
			return 0;
		snprintf(detail, len, "%s would be node %lld of %lld touched on %s within %llds (%s);"
		    " the blast radius allows %lld", target, (long long)n + 1, (long long)total,
		    subject, (long long)(od->safety.blast_window_ms / 1000), list, (long long)cap);
		return -1;
	}
	/* An action that picks its nodes when it runs (rebalance_leaders) needs
	 * room for at least one more; the executor holds it to the exact count. */
	if (n < cap)
		return 0;
	snprintf(detail, len, "%s picks its nodes when it runs, but %lld of %lld nodes of %s were"
	    " already touched within %llds (%s); the blast radius allows %lld",
	    op_json_str(a, "name", ""), (long long)n, (long long)total, subject,
	    (long long)(od->safety.blast_window_ms / 1000), list, (long long)cap);
	return -1;
}

const char *
policy_check(json_object *t, json_object *a, char *detail, size_t len)
{
	struct od_safety *s = &od->safety;
	int64_t now = op_wall_ms();
	char scope[256];

	if (op_json_int(a, "charged_at", 0) > 0)
		return NULL; /* a retry of an action already paid for */
	if (s->b_action.capacity > 0) {
		policy_scope(scope, sizeof(scope), "action", t, a);
		if (policy_bucket_left(scope, &s->b_action, now) < POLICY_MILLI) {
			snprintf(detail, len, "%s: budget of %lld per %llds spent", scope,
			    (long long)s->b_action.capacity, (long long)(s->b_action.period_ms / 1000));
			return "budget";
		}
	}
	if (s->b_subject.capacity > 0) {
		policy_scope(scope, sizeof(scope), "subject", t, a);
		if (policy_bucket_left(scope, &s->b_subject, now) < POLICY_MILLI) {
			snprintf(detail, len, "%s: budget of %lld per %llds spent", scope,
			    (long long)s->b_subject.capacity, (long long)(s->b_subject.period_ms / 1000));
			return "budget";
		}
	}
	if (s->destructive_per_day > 0 && !strcmp(op_json_str(a, "risk", ""), "high") &&
	    policy_destructive_today(now) >= s->destructive_per_day) {
		snprintf(detail, len, "daily cap of %lld destructive (risk high) actions reached",
		    (long long)s->destructive_per_day);
		return "budget";
	}
	if (policy_blast(t, a, detail, len) != 0)
		return "blast radius";
	return NULL;
}

static void
policy_take(const char *scope, const struct od_bucket_cfg *b, int64_t now, json_object *snap)
{
	int64_t left = policy_bucket_left(scope, b, now) - POLICY_MILLI;

	if (left < 0)
		left = 0;
	ledger_exec(od->ledger, "INSERT INTO budgets(scope,milli,updated_at) VALUES(?1,?2,?3)"
	    " ON CONFLICT(scope) DO UPDATE SET milli=excluded.milli, updated_at=excluded.updated_at",
	    "sii", scope, left, now);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "left", json_object_new_double((double)left / POLICY_MILLI));
	json_object_object_add(o, "capacity", json_object_new_int64(b->capacity));
	json_object_object_add(o, "period_s", json_object_new_int64(b->period_ms / 1000));
	json_object_object_add(snap, scope, o);
}

json_object *
policy_charge(json_object *t, json_object *a)
{
	struct od_safety *s = &od->safety;
	int64_t now = op_wall_ms();
	json_object *snap = json_object_new_object();
	char scope[256];

	if (s->b_action.capacity > 0) {
		policy_scope(scope, sizeof(scope), "action", t, a);
		policy_take(scope, &s->b_action, now, snap);
	}
	if (s->b_subject.capacity > 0) {
		policy_scope(scope, sizeof(scope), "subject", t, a);
		policy_take(scope, &s->b_subject, now, snap);
	}
	if (!strcmp(op_json_str(a, "risk", ""), "high")) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "used", json_object_new_int64(policy_destructive_today(now) + 1));
		json_object_object_add(o, "cap", json_object_new_int64(s->destructive_per_day));
		json_object_object_add(snap, "destructive_today", o);
	}
	ledger_exec(od->ledger, "UPDATE actions SET charged_at=?1, budget=?2, target=?3 WHERE id=?4",
	    "ijsi", now, snap, policy_target(op_json_obj(a, "params")), op_json_int(a, "id", 0));
	json_object_object_add(a, "charged_at", json_object_new_int64(now));
	return snap;
}

int64_t
policy_backoff_ms(int64_t attempt)
{
	struct od_safety *s = &od->safety;
	double d = (double)s->retry_min_ms;

	for (int64_t i = 1; i < attempt && d < (double)s->retry_max_ms; i++)
		d *= 2.0;
	if (d > (double)s->retry_max_ms)
		d = (double)s->retry_max_ms;
	/* Jitter spreads retries of many tickets; the ceiling still holds. */
	d += d * OD_RETRY_JITTER * ((double)random() / (double)RAND_MAX);
	if (d > (double)s->retry_max_ms)
		d = (double)s->retry_max_ms;
	if (d < (double)s->retry_min_ms)
		d = (double)s->retry_min_ms;
	return (int64_t)d;
}

/* ---- honest credit ---- */

static void
policy_bucket_status(json_object *arr, const char *scope, const struct od_bucket_cfg *b,
    int64_t now)
{
	json_object *o = json_object_new_object();
	int64_t milli = policy_bucket_left(scope, b, now), cap = b->capacity * POLICY_MILLI;
	/* time to the next whole token and to a full bucket, at capacity per period */
	double per_milli = cap > 0 ? (double)b->period_ms / (double)cap : 0;
	int64_t next = milli >= cap ? 0 : (int64_t)((double)(POLICY_MILLI - milli % POLICY_MILLI) *
	    per_milli);
	int64_t full = milli >= cap ? 0 : (int64_t)((double)(cap - milli) * per_milli);

	json_object_object_add(o, "scope", json_object_new_string(scope));
	json_object_object_add(o, "capacity", json_object_new_int64(b->capacity));
	json_object_object_add(o, "remaining", json_object_new_int64(milli / POLICY_MILLI));
	json_object_object_add(o, "left", json_object_new_double((double)milli / POLICY_MILLI));
	json_object_object_add(o, "period_s", json_object_new_int64(b->period_ms / 1000));
	json_object_object_add(o, "refill_in_ms", json_object_new_int64(next));
	json_object_object_add(o, "full_in_ms", json_object_new_int64(full));
	json_object_array_add(arr, o);
}

json_object *
policy_budgets(void)
{
	struct od_safety *s = &od->safety;
	int64_t now = op_wall_ms();
	json_object *arr = json_object_new_array();
	char scope[256];

	/* Every bucket of every configured subject and catalogue action, used or not:
	 * an unused one is full. */
	for (size_t i = 0; i < op_config_section_count(od->cfg); i++) {
		const char *sec = op_config_section_name(od->cfg, i);
		const struct op_subject_ops *ops;
		if (strncmp(sec, "subject.", 8) != 0 || (ops = op_subject_kind(sec + 8)) == NULL)
			continue;
		if (s->b_subject.capacity > 0) {
			snprintf(scope, sizeof(scope), "subject:%s", sec + 8);
			policy_bucket_status(arr, scope, &s->b_subject, now);
		}
		for (size_t k = 0; s->b_action.capacity > 0 && k < ops->nactions; k++) {
			snprintf(scope, sizeof(scope), "action:%s/%s", sec + 8, ops->actions[k].name);
			policy_bucket_status(arr, scope, &s->b_action, now);
		}
	}
	return arr;
}

/* The blast radius per configured subject: nodes, cap, what was touched. */
json_object *
policy_blast_status(void)
{
	struct od_safety *s = &od->safety;
	json_object *br = json_object_new_object(), *subs = json_object_new_array();
	int64_t now = op_wall_ms();

	json_object_object_add(br, "share", json_object_new_double(s->blast_share));
	json_object_object_add(br, "max_nodes", json_object_new_int64(s->blast_max_nodes));
	json_object_object_add(br, "window_s", json_object_new_int64(s->blast_window_ms / 1000));
	for (size_t i = 0; i < op_config_section_count(od->cfg); i++) {
		const char *sec = op_config_section_name(od->cfg, i);
		if (strncmp(sec, "subject.", 8) != 0)
			continue;
		json_object *o = json_object_new_object();
		int64_t total = policy_subject_nodes(sec + 8);
		op_json_set_str(o, "subject", sec + 8);
		op_json_set_int(o, "nodes", total);
		op_json_set_int(o, "cap", policy_blast_cap(total));
		json_object_object_add(o, "touched", policy_touched(sec + 8, -1, now));
		json_object_array_add(subs, o);
	}
	json_object_object_add(br, "subjects", subs);
	return br;
}

