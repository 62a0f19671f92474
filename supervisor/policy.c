/* policy: the [safety] section (DESIGN §7) with its safe defaults, the risk
 * tiers, and the per-action level (shadow, approve, execute) with its
 * promotion ladder and the operator's pin. Levels live in the ledger: a
 * restart never forgets a demotion. The limits themselves (budgets, the
 * destructive cap, the blast radius) are in limits.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "supervisor/od.h"


/* Safe defaults: what README and etc/operatord.conf show. Each key takes
 * "off" to lift its limit explicitly; leaving a key out never does. */
#define POLICY_DEF_ACTION_CAP 5            /* budget_action: tokens ... */
#define POLICY_DEF_ACTION_PERIOD_MS 3600000 /* ... refilled over 1 h */
#define POLICY_DEF_SUBJECT_CAP 20          /* budget_subject: tokens ... */
#define POLICY_DEF_SUBJECT_PERIOD_MS 3600000 /* ... refilled over 1 h */
#define POLICY_DEF_DESTRUCTIVE 10          /* destructive_per_day: risk-high actions per UTC day */
#define POLICY_DEF_BLAST_SHARE 0.34        /* blast_radius: share of a subject's nodes ... */
#define POLICY_DEF_PROMOTE_AFTER 5         /* promote_after: verified successes at approve */

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
		return 0; /* keeps the safe default the caller set */
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

/* An integer key that also takes "off" (0: no limit); absent keeps def. */
static int
policy_int_off(const struct op_config *cfg, const char *key, int64_t def, int64_t *out,
    char *err, size_t errlen)
{
	const char *v = op_config_get(cfg, "safety", key);

	if (v != NULL && !strcmp(v, "off")) {
		*out = 0;
		return 0;
	}
	return op_config_int(cfg, "safety", key, def, 0, 1000000, out, err, errlen);
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
	s->b_action.capacity = POLICY_DEF_ACTION_CAP;
	s->b_action.period_ms = POLICY_DEF_ACTION_PERIOD_MS;
	s->b_subject.capacity = POLICY_DEF_SUBJECT_CAP;
	s->b_subject.period_ms = POLICY_DEF_SUBJECT_PERIOD_MS;
	if (op_config_duration(cfg, "safety", "approval_ttl", OD_APPROVAL_TTL_MS,
		&s->approval_ttl_ms, err, errlen) != 0 ||
	    op_config_int(cfg, "safety", "retry_attempts", OD_RETRY_ATTEMPTS, 1, 100,
		&s->retry_attempts, err, errlen) != 0 ||
	    op_config_duration(cfg, "safety", "retry_min", OD_RETRY_MIN_MS, &s->retry_min_ms, err,
		errlen) != 0 ||
	    op_config_duration(cfg, "safety", "retry_max", OD_RETRY_MAX_MS, &s->retry_max_ms, err,
		errlen) != 0 ||
	    policy_int_off(cfg, "destructive_per_day", POLICY_DEF_DESTRUCTIVE,
		&s->destructive_per_day, err, errlen) != 0 ||
	    op_config_int(cfg, "safety", "blast_max_nodes", 0, 0, 1000000, &s->blast_max_nodes,
		err, errlen) != 0 ||
	    op_config_duration(cfg, "safety", "blast_window", OD_BLAST_WINDOW_MS,
		&s->blast_window_ms, err, errlen) != 0 ||
	    op_config_duration(cfg, "safety", "flap_window", OD_FLAP_WINDOW_MS, &s->flap_window_ms,
		err, errlen) != 0 ||
	    op_config_int(cfg, "safety", "flap_max", OD_FLAP_MAX, 1, 1000, &s->flap_max, err,
		errlen) != 0 ||
	    policy_int_off(cfg, "promote_after", POLICY_DEF_PROMOTE_AFTER, &s->promote_after, err,
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
	s->blast_share = POLICY_DEF_BLAST_SHARE;
	v = op_config_get(cfg, "safety", "blast_radius");
	if (v != NULL && !strcmp(v, "off")) {
		s->blast_share = 1.0; /* every node: no share cap */
	} else if (v != NULL) {
		char *end;
		double d = strtod(v, &end);
		if (end == v || (*end != '\0' && strcmp(end, "%") != 0) || d <= 0) {
			snprintf(err, errlen, "[safety] blast_radius: \"%s\" is not a share (0.5 or 50%%)"
			    " or off",
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

/* Rows of action_levels written by promotion or demotion are learned; any
 * other changed_by is an operator (uid:N) or the configuration. */
static int
policy_row_learned(json_object *row)
{
	const char *by = op_json_str(row, "changed_by", "");

	return !strcmp(by, "promotion") || !strcmp(by, "demotion") || by[0] == '\0';
}

/* The level in force for (subject, action) and where it came from. An
 * operator's explicit setting always wins over what promotion or demotion
 * learned: the subject's own operator row, then the operator's row for all
 * subjects, then the learned row, then level.ACTION, then execute. */
const char *
policy_level_source(const char *subject, const char *action, const char **source)
{
	static char buf[16];
	const char *src = "default";
	json_object *rows = ledger_rows(od->ledger, "SELECT subject,level,changed_by FROM"
	    " action_levels WHERE (subject=?1 OR subject='*') AND action=?2", "ss", subject, action);
	json_object *own_op = NULL, *all_op = NULL, *learned = NULL, *pick = NULL;

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		int all = !strcmp(op_json_str(r, "subject", ""), "*");
		if (!policy_row_learned(r)) {
			if (all)
				all_op = r;
			else
				own_op = r;
		} else if (!all && op_json_str(r, "changed_by", "")[0] != '\0') {
			/* a row without changed_by only keeps counts: it sets no level */
			learned = r;
		}
	}
	if ((pick = own_op) != NULL)
		src = "operator";
	else if ((pick = all_op) != NULL)
		src = "operator (all subjects)";
	else if ((pick = learned) != NULL)
		src = op_json_str(learned, "changed_by", "");
	if (pick != NULL && policy_level_valid(op_json_str(pick, "level", NULL))) {
		op_strlcpy(buf, op_json_str(pick, "level", "execute"), sizeof(buf));
	} else {
		int conf = json_object_object_get_ex(od->safety.levels, action, NULL);
		op_strlcpy(buf, op_json_str(od->safety.levels, action, "execute"), sizeof(buf));
		src = conf ? "config" : "default";
	}
	/* src may point into rows: copy it out before they go */
	static char srcbuf[32];
	op_strlcpy(srcbuf, src, sizeof(srcbuf));
	json_object_put(rows);
	if (source != NULL)
		*source = srcbuf;
	return buf;
}

const char *
policy_level(const char *subject, const char *action)
{
	return policy_level_source(subject, action, NULL);
}

/* What `opsend level ACTION [SUBJECT]` shows: the level in force and its
 * source, per configured subject when no subject (or "*") is named. */
json_object *
policy_level_query(const char *subject, const char *action)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < op_config_section_count(od->cfg); i++) {
		const char *sec = op_config_section_name(od->cfg, i);
		if (strncmp(sec, "subject.", 8) != 0)
			continue;
		if (subject != NULL && strcmp(subject, "*") && strcmp(subject, sec + 8))
			continue;
		const char *src, *lv = policy_level_source(sec + 8, action, &src);
		json_object *o = json_object_new_object();
		op_json_set_str(o, "subject", sec + 8);
		op_json_set_str(o, "action", action);
		op_json_set_str(o, "level", lv);
		op_json_set_str(o, "source", src);
		json_object_array_add(arr, o);
	}
	if (json_object_array_length(arr) == 0 && subject != NULL) {
		const char *src, *lv = policy_level_source(subject, action, &src);
		json_object *o = json_object_new_object();
		op_json_set_str(o, "subject", subject);
		op_json_set_str(o, "action", action);
		op_json_set_str(o, "level", lv);
		op_json_set_str(o, "source", src);
		json_object_array_add(arr, o);
	}
	return arr;
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
operator_set_level(const char *subject, const char *action, const char *level, const char *who,
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
	const char *src, *now_level = policy_level_source(subject, action, &src);
	char from[16];
	int pinned;

	/* success < 0: "unproven" (healed, but not provably by this action):
	 * neither a promotion's success nor a demotion's failure */
	if (od->safety.promote_after <= 0 || success < 0)
		return;
	op_strlcpy(from, now_level, sizeof(from));
	/* an operator's explicit level is never overridden by what was learned */
	pinned = !strncmp(src, "operator", 8);
	ledger_exec(od->ledger, "INSERT INTO action_levels(subject,action,level) VALUES(?1,?2,?3)"
	    " ON CONFLICT(subject,action) DO NOTHING", "sss", subject, action, from);
	/* "unproven" fixes are never counted: only verified success or failure */
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
	if (pinned) {
		log_info("%s/%s stays %s: set by an operator (%s would have moved it to %s)", subject,
		    action, from, success ? "promotion" : "demotion", to);
		return;
	}
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

/* Whether the value names the entity: the string itself, or any string in
 * an object of parameters (key=K, store=S). */
static int
policy_names(json_object *v, const char *entity)
{
	if (v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, k, x)
		{
			(void)k;
			if (policy_names(x, entity))
				return 1;
		}
		return 0;
	}
	if (json_object_is_type(v, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (policy_names(json_object_array_get_idx(v, i), entity))
				return 1;
		return 0;
	}
	return !strcmp(json_object_get_string(v), entity);
}

int
policy_fault_undone_in(const char *subject, const char *entity, int64_t from_ms, int64_t to_ms,
    char *why, size_t len)
{
	json_object *rows = ledger_rows(od->ledger, "SELECT id, fault, target, params, ended_at"
	    " FROM faults WHERE subject=?1 AND ended_at IS NOT NULL AND ended_at>=?2 AND"
	    " ended_at<=?3 ORDER BY id", "sii", subject, from_ms, to_ms);
	int hit = 0;

	why[0] = '\0';
	for (size_t i = 0; rows && i < json_object_array_length(rows) && !hit; i++) {
		json_object *f = json_object_array_get_idx(rows, i);
		const char *target = op_json_str(f, "target", "");
		if (!strcmp(target, entity) || policy_names(op_json_obj(f, "params"), entity) ||
		    policy_names(op_json_obj(f, "undo"), entity)) {
			snprintf(why, len, "fault %lld (%s on %s) was undone within the verification"
			    " window", (long long)op_json_int(f, "id", 0), op_json_str(f, "fault", "?"),
			    target[0] ? target : entity);
			hit = 1;
		}
	}
	json_object_put(rows);
	return hit;
}

/* `opsend actions` rows: what would be undone. "undo" is {what, data} for a
 * reversible action that recorded its undo, "irreversible" for one that
 * says so, absent otherwise. */
void
policy_annotate_undo(json_object *rows)
{
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		struct op_subject fake = {0};
		const struct op_action_def *def;
		json_object *data = op_json_obj(op_json_obj(r, "result"), "undo");

		fake.ops = op_subject_kind(op_json_str(r, "subject", ""));
		def = fake.ops ? op_subject_action(&fake, op_json_str(r, "name", "")) : NULL;
		if (def == NULL)
			continue;
		if (def->irreversible) {
			json_object_object_add(r, "undo", json_object_new_string("irreversible"));
		} else if (def->revert != NULL && data != NULL) {
			json_object *u = json_object_new_object();
			op_json_set_str(u, "what", def->undo);
			json_object_object_add(u, "data", json_object_get(data));
			json_object_object_add(r, "undo", u);
		}
	}
}

/* ---- status ---- */

json_object *
policy_status(void)
{
	struct od_safety *s = &od->safety;
	int64_t now = op_wall_ms();
	json_object *r = json_object_new_object();

	json_object_object_add(r, "budgets", policy_budgets());
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
	json_object_object_add(r, "blast_radius", policy_blast_status());
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
