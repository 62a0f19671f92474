/* policy: the limits an action must fit in before it runs (DESIGN §7).
 * Token buckets per (subject, action) and per subject, a daily cap on
 * destructive (risk high) actions, a blast-radius cap on the share of a
 * subject's nodes touched, and the per-action level (shadow, approve,
 * execute) with its promotion ladder. Bucket state and levels live in the
 * ledger: a restart never refills a spent budget or forgets a demotion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/od.h"

#define POLICY_MILLI 1000 /* tokens are stored in thousandths */

static const char *const policy_keys[] = {"approval_ttl", "approval_expiry", "approval_risk",
	"retry_attempts", "retry_min", "retry_max", "budget_action", "budget_subject",
	"destructive_per_day", "blast_radius", "blast_max_nodes", "blast_window", "flap_window",
	"flap_max", "promote_after"};

int
policy_level_valid(const char *level)
{
	return level && (!strcmp(level, "shadow") || !strcmp(level, "approve") ||
	    !strcmp(level, "execute"));
}

static int
policy_risk_rank(const char *risk)
{
	if (risk == NULL)
		return 0;
	if (!strcmp(risk, "low"))
		return 1;
	if (!strcmp(risk, "medium"))
		return 2;
	if (!strcmp(risk, "high"))
		return 3;
	return 0;
}

int
policy_risk_needs_approval(const char *risk)
{
	int need = policy_risk_rank(od->safety.approval_risk);

	return need > 0 && policy_risk_rank(risk) >= need;
}

/* "N/DURATION" (N tokens refilled over DURATION), "N" (per hour) or "off". */
static int
policy_bucket(const struct op_config *cfg, const char *key, struct od_bucket_cfg *b,
    char *err, size_t errlen)
{
	const char *v = op_config_get(cfg, "safety", key);
	char num[32];
	const char *slash;

	if (v == NULL)
		return 0;
	if (!strcmp(v, "off") || !strcmp(v, "0")) {
		b->capacity = 0;
		return 0;
	}
	slash = strchr(v, '/');
	snprintf(num, sizeof(num), "%.*s", slash ? (int)(slash - v) : (int)strlen(v), v);
	b->period_ms = 3600 * 1000;
	if (op_parse_int(num, 1, 1000000, &b->capacity) != 0 ||
	    (slash && (op_parse_duration(slash + 1, &b->period_ms) != 0 || b->period_ms <= 0))) {
		snprintf(err, errlen, "[safety] %s: \"%s\" is not N/DURATION (e.g. 3/1h) or off", key,
		    v);
		return -1;
	}
	return 0;
}

struct policy_scan {
	struct od_safety *s;
	char *err;
	size_t errlen;
	int bad;
};

static void
policy_scan_key(const char *key, const char *value, void *arg)
{
	struct policy_scan *ps = arg;

	if (ps->bad)
		return;
	if (!strncmp(key, "level.", 6)) {
		if (key[6] == '\0' || !policy_level_valid(value)) {
			snprintf(ps->err, ps->errlen, "[safety] %s: \"%s\" is not shadow, approve or"
			    " execute", key, value);
			ps->bad = 1;
			return;
		}
		json_object_object_add(ps->s->levels, key + 6, json_object_new_string(value));
		return;
	}
	for (size_t i = 0; i < OP_ARRAY_LEN(policy_keys); i++)
		if (!strcmp(key, policy_keys[i]))
			return;
	snprintf(ps->err, ps->errlen, "[safety] unknown key \"%s\"", key);
	ps->bad = 1;
}

int
policy_load(const struct op_config *cfg, struct od_safety *s, char *err, size_t errlen)
{
	const char *v;
	struct policy_scan ps = {s, err, errlen, 0};

	policy_free(s);
	memset(s, 0, sizeof(*s));
	s->levels = json_object_new_object();
	op_config_foreach(cfg, "safety", policy_scan_key, &ps);
	if (ps.bad)
		return -1;
	if (op_config_duration(cfg, "safety", "approval_ttl", OD_APPROVAL_TTL_MS,
		&s->approval_ttl_ms, err, errlen) != 0 ||
	    op_config_int(cfg, "safety", "retry_attempts", OD_RETRY_ATTEMPTS, 1, 100,
		&s->retry_attempts, err, errlen) != 0 ||
	    op_config_duration(cfg, "safety", "retry_min", OD_RETRY_MIN_MS, &s->retry_min_ms, err,
		errlen) != 0 ||
	    op_config_duration(cfg, "safety", "retry_max", OD_RETRY_MAX_MS, &s->retry_max_ms, err,
		errlen) != 0 ||
	    op_config_int(cfg, "safety", "destructive_per_day", 0, 0, 1000000,
		&s->destructive_per_day, err, errlen) != 0 ||
	    op_config_int(cfg, "safety", "blast_max_nodes", 0, 0, 1000000, &s->blast_max_nodes,
		err, errlen) != 0 ||
	    op_config_duration(cfg, "safety", "blast_window", OD_BLAST_WINDOW_MS,
		&s->blast_window_ms, err, errlen) != 0 ||
	    op_config_duration(cfg, "safety", "flap_window", OD_FLAP_WINDOW_MS, &s->flap_window_ms,
		err, errlen) != 0 ||
	    op_config_int(cfg, "safety", "flap_max", OD_FLAP_MAX, 1, 1000, &s->flap_max, err,
		errlen) != 0 ||
	    op_config_int(cfg, "safety", "promote_after", 0, 0, 1000000, &s->promote_after, err,
		errlen) != 0 ||
	    policy_bucket(cfg, "budget_action", &s->b_action, err, errlen) != 0 ||
	    policy_bucket(cfg, "budget_subject", &s->b_subject, err, errlen) != 0)
		return -1;
	if (s->approval_ttl_ms <= 0) {
		snprintf(err, errlen, "[safety] approval_ttl must be positive");
		return -1;
	}
	if (s->retry_min_ms < 1 || s->retry_max_ms < s->retry_min_ms) {
		snprintf(err, errlen, "[safety] retry_min must be positive and at most retry_max");
		return -1;
	}
	v = op_config_get(cfg, "safety", "approval_expiry");
	v = v ? v : "escalate";
	if (strcmp(v, "escalate") && strcmp(v, "reject") && strcmp(v, "execute")) {
		snprintf(err, errlen, "[safety] approval_expiry: \"%s\" is not escalate, reject or"
		    " execute", v);
		return -1;
	}
	op_strlcpy(s->approval_expiry, v, sizeof(s->approval_expiry));
	v = op_config_get(cfg, "safety", "approval_risk");
	v = v ? v : "high";
	if (strcmp(v, "none") && policy_risk_rank(v) == 0) {
		snprintf(err, errlen, "[safety] approval_risk: \"%s\" is not low, medium, high or"
		    " none", v);
		return -1;
	}
	op_strlcpy(s->approval_risk, v, sizeof(s->approval_risk));
	s->blast_share = 1.0;
	v = op_config_get(cfg, "safety", "blast_radius");
	if (v != NULL) {
		char *end;
		double d = strtod(v, &end);
		if (end == v || (*end != '\0' && strcmp(end, "%") != 0) || d <= 0) {
			snprintf(err, errlen, "[safety] blast_radius: \"%s\" is not a share (0.5 or 50%%)",
			    v);
			return -1;
		}
		if (*end == '%')
			d /= 100.0;
		if (d > 1.0) {
			snprintf(err, errlen, "[safety] blast_radius: %s is more than all nodes", v);
			return -1;
		}
		s->blast_share = d;
	}
	return 0;
}

void
policy_free(struct od_safety *s)
{
	json_object_put(s->levels);
	s->levels = NULL;
}

/* ---- levels ---- */

const char *
policy_level(const char *subject, const char *action)
{
	static char buf[16];
	json_object *row = ledger_row(od->ledger, "SELECT level FROM action_levels WHERE"
	    " (subject=?1 OR subject='*') AND action=?2 ORDER BY subject='*' LIMIT 1", "ss",
	    subject, action);

	if (row != NULL) {
		op_strlcpy(buf, op_json_str(row, "level", "execute"), sizeof(buf));
		json_object_put(row);
		return buf;
	}
	return op_json_str(od->safety.levels, action, "execute");
}

static void
policy_set_level_row(const char *subject, const char *action, const char *level,
    const char *who)
{
	ledger_exec(od->ledger, "INSERT INTO action_levels(subject,action,level,changed_at,"
	    "changed_by) VALUES(?1,?2,?3,?4,?5) ON CONFLICT(subject,action) DO UPDATE SET"
	    " level=excluded.level, successes=0, failures=0, changed_at=excluded.changed_at,"
	    " changed_by=excluded.changed_by", "sssis", subject, action, level, op_wall_ms(), who);
}

int
dispatch_set_level(const char *subject, const char *action, const char *level, const char *who,
    char *err, size_t errlen)
{
	if (!policy_level_valid(level)) {
		snprintf(err, errlen, "level must be shadow, approve or execute, not \"%s\"",
		    level ? level : "");
		return -1;
	}
	const char *from = policy_level(subject, action);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "action", json_object_new_string(action));
	json_object_object_add(d, "from", json_object_new_string(from));
	json_object_object_add(d, "to", json_object_new_string(level));
	json_object_object_add(d, "by", json_object_new_string(who));
	json_object_object_add(d, "reason", json_object_new_string("set by an operator"));
	policy_set_level_row(subject, action, level, who);
	outbox_event("level_changed", 0, strcmp(subject, "*") ? subject : NULL, NULL, NULL, d);
	return 0;
}

void
policy_record_outcome(json_object *t, json_object *a, int success)
{
	const char *subject = op_json_str(t, "subject", ""), *action = op_json_str(a, "name", "");
	const char *ran_at = op_json_str(a, "level", "execute");
	const char *now_level = policy_level(subject, action);
	char from[16];

	if (od->safety.promote_after <= 0)
		return;
	op_strlcpy(from, now_level, sizeof(from));
	ledger_exec(od->ledger, "INSERT INTO action_levels(subject,action,level) VALUES(?1,?2,?3)"
	    " ON CONFLICT(subject,action) DO NOTHING", "sss", subject, action, from);
	ledger_exec(od->ledger, success
	    ? "UPDATE action_levels SET successes=successes+1 WHERE subject=?1 AND action=?2"
	    : "UPDATE action_levels SET failures=failures+1 WHERE subject=?1 AND action=?2",
	    "ss", subject, action);
	const char *to = NULL, *why = NULL;
	char reason[128];
	int64_t wins = ledger_scalar(od->ledger, 0, "SELECT successes FROM action_levels WHERE"
	    " subject=?1 AND action=?2", "ss", subject, action);
	if (success && !strcmp(from, "approve") && !strcmp(ran_at, "approve") &&
	    wins >= od->safety.promote_after) {
		to = "execute";
		snprintf(reason, sizeof(reason), "%lld verified successes at level approve",
		    (long long)wins);
		why = reason;
	} else if (!success && !strcmp(from, "execute")) {
		to = "approve";
		why = "a verification failed: a human approves the next ones";
	}
	if (to == NULL)
		return;
	json_object *d = json_object_new_object();
	json_object_object_add(d, "action", json_object_new_string(action));
	json_object_object_add(d, "from", json_object_new_string(from));
	json_object_object_add(d, "to", json_object_new_string(to));
	json_object_object_add(d, "reason", json_object_new_string(why));
	json_object_object_add(d, "ticket", json_object_new_int64(op_json_int(t, "id", 0)));
	policy_set_level_row(subject, action, to, success ? "promotion" : "demotion");
	outbox_event("level_changed", op_json_int(t, "id", 0), subject, NULL, NULL, d);
	log_info("%s/%s %s from %s to %s: %s", subject, action, success ? "promoted" : "demoted",
	    from, to, why);
}

/* ---- budgets ---- */

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

static int64_t
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

/* Nodes of a subject as configured ("nodes = a,b,c"); 0 when unknown. */
static int64_t
policy_subject_nodes(const char *subject)
{
	char sec[128];
	const char *v;
	int64_t n = 0;

	snprintf(sec, sizeof(sec), "subject.%s", subject);
	v = op_config_get(od->cfg, sec, "nodes");
	if (v == NULL || *v == '\0')
		return 0;
	n = 1;
	for (const char *p = v; *p; p++)
		n += *p == ',';
	return n;
}

static int
policy_blast(json_object *t, json_object *a, char *detail, size_t len)
{
	const char *target = policy_target(op_json_obj(a, "params"));
	const char *subject = op_json_str(t, "subject", "");
	int64_t total = policy_subject_nodes(subject), cap = 0, now = op_wall_ms();

	if (target == NULL)
		return 0; /* not a node-targeting action */
	if (total > 0 && od->safety.blast_share < 1.0) {
		cap = (int64_t)(od->safety.blast_share * (double)total + 1e-9); /* floor */
		if (cap < 1)
			cap = 1;
	}
	if (od->safety.blast_max_nodes > 0 && (cap == 0 || od->safety.blast_max_nodes < cap))
		cap = od->safety.blast_max_nodes;
	if (cap == 0)
		return 0;
	/* Nodes this subject's actions touched within the window, and this ticket's. */
	json_object *rows = ledger_rows(od->ledger, "SELECT DISTINCT target FROM actions WHERE"
	    " subject=?1 AND target IS NOT NULL AND charged_at IS NOT NULL AND (charged_at>=?2 OR"
	    " ticket_id=?3)", "sii", subject, now - od->safety.blast_window_ms,
	    op_json_int(t, "id", 0));
	size_t n = json_object_array_length(rows);
	int seen = 0;
	char list[256] = "";
	for (size_t i = 0; i < n; i++) {
		const char *x = op_json_str(json_object_array_get_idx(rows, i), "target", "");
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", x);
		if (!strcmp(x, target))
			seen = 1;
	}
	json_object_put(rows);
	if (seen || (int64_t)n + 1 <= cap)
		return 0;
	snprintf(detail, len, "%s would be node %lld of %lld touched on %s within %llds (%s); the"
	    " blast radius allows %lld", target, (long long)n + 1, (long long)total, subject,
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

/* ---- status ---- */

static void
policy_bucket_status(json_object *arr, const char *scope, const struct od_bucket_cfg *b,
    int64_t now)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "scope", json_object_new_string(scope));
	json_object_object_add(o, "left",
	    json_object_new_double((double)policy_bucket_left(scope, b, now) / POLICY_MILLI));
	json_object_object_add(o, "capacity", json_object_new_int64(b->capacity));
	json_object_object_add(o, "period_s", json_object_new_int64(b->period_ms / 1000));
	json_object_array_add(arr, o);
}

json_object *
policy_status(void)
{
	struct od_safety *s = &od->safety;
	int64_t now = op_wall_ms();
	json_object *r = json_object_new_object(), *budgets = json_object_new_array();
	json_object *seen = ledger_rows(od->ledger, "SELECT scope FROM budgets ORDER BY scope", "");

	/* Every bucket that has been used; an unused one is full. */
	for (size_t i = 0; i < json_object_array_length(seen); i++) {
		const char *scope = op_json_str(json_object_array_get_idx(seen, i), "scope", "");
		const struct od_bucket_cfg *b = !strncmp(scope, "action:", 7) ? &s->b_action
		    : &s->b_subject;
		if (b->capacity > 0)
			policy_bucket_status(budgets, scope, b, now);
	}
	json_object_put(seen);
	json_object_object_add(r, "budgets", budgets);
	json_object *lim = json_object_new_object();
	json_object_object_add(lim, "per_action", json_object_new_int64(s->b_action.capacity));
	json_object_object_add(lim, "per_action_period_s", json_object_new_int64(s->b_action.period_ms / 1000));
	json_object_object_add(lim, "per_subject", json_object_new_int64(s->b_subject.capacity));
	json_object_object_add(lim, "per_subject_period_s", json_object_new_int64(s->b_subject.period_ms / 1000));
	json_object_object_add(r, "limits", lim);
	json_object *dz = json_object_new_object();
	int64_t used = policy_destructive_today(now);
	json_object_object_add(dz, "used", json_object_new_int64(used));
	json_object_object_add(dz, "cap", json_object_new_int64(s->destructive_per_day));
	json_object_object_add(dz, "left", s->destructive_per_day > 0
	    ? json_object_new_int64(used >= s->destructive_per_day ? 0 : s->destructive_per_day - used)
	    : NULL);
	json_object_object_add(r, "destructive_today", dz);
	json_object *br = json_object_new_object();
	json_object_object_add(br, "share", json_object_new_double(s->blast_share));
	json_object_object_add(br, "max_nodes", json_object_new_int64(s->blast_max_nodes));
	json_object_object_add(br, "window_s", json_object_new_int64(s->blast_window_ms / 1000));
	json_object_object_add(r, "blast_radius", br);
	json_object *levels = ledger_rows(od->ledger, "SELECT subject,action,level,successes,"
	    "failures,changed_at,changed_by FROM action_levels ORDER BY subject,action", "");
	json_object_object_foreach(s->levels, act, lv)
	{
		int have = 0;
		for (size_t i = 0; i < json_object_array_length(levels); i++)
			if (!strcmp(op_json_str(json_object_array_get_idx(levels, i), "action", ""), act))
				have = 1;
		if (have)
			continue;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "subject", json_object_new_string("*"));
		json_object_object_add(o, "action", json_object_new_string(act));
		json_object_object_add(o, "level", json_object_get(lv));
		json_object_object_add(o, "successes", json_object_new_int64(0));
		json_object_object_add(o, "failures", json_object_new_int64(0));
		json_object_object_add(o, "changed_by", json_object_new_string("config"));
		json_object_array_add(levels, o);
	}
	json_object_object_add(r, "levels", levels);
	json_object_object_add(r, "promote_after", json_object_new_int64(s->promote_after));
	json_object_object_add(r, "approval_ttl_s", json_object_new_int64(s->approval_ttl_ms / 1000));
	json_object_object_add(r, "approval_expiry", json_object_new_string(s->approval_expiry));
	json_object_object_add(r, "pending", ledger_rows(od->ledger, "SELECT status, COUNT(*) AS"
	    " count FROM actions WHERE status IN ('awaiting_approval','retry_wait','scheduled',"
	    "'pending','dispatched') GROUP BY status", ""));
	return r;
}
