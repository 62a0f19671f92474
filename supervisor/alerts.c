/* alerts: humans are paged through the Alertmanager they already run.
 *
 * The ledger is the source of truth: every AL_POLL_MS the escalated tickets
 * and the actions awaiting approval are read and compared with the alerts we
 * hold. A new one is posted at once; all are re-posted every resend_interval
 * with endsAt a few intervals ahead (if operatord dies, Alertmanager lets
 * them expire on their own); one that ended is posted with endsAt = the time
 * it ended until every Alertmanager has taken it. Reading state on a timer
 * (rather than hooking every transition) also covers restarts: an escalation
 * recorded before a crash pages again after it.
 *
 * Posting uses ahttp, so a slow or dead Alertmanager never blocks the
 * supervisor; a failed POST is retried with exponential backoff, one POST in
 * flight per Alertmanager, and counted in /metrics. */
#include "supervisor/alerts.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ahttp.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/od.h"

#define AL_URL_MAX 512
#define AL_API_PATH "/api/v2/alerts"
#define AL_RESEND_MIN_MS 1000   /* resend_interval floor: Alertmanager is not a queue */
#define AL_TIMEOUT_MIN_MS 100   /* timeout floor */

enum al_kind { AL_ESCALATION, AL_APPROVAL, AL_NKINDS };

static const char *const al_kind_names[AL_NKINDS] = {
	[AL_ESCALATION] = "OperatordEscalation",
	[AL_APPROVAL] = "OperatordApprovalNeeded",
};

struct al_alert {
	enum al_kind kind;
	int64_t id;             /* ticket id or action id */
	json_object *labels, *annotations;
	int64_t starts_wall;
	int64_t ended_wall;     /* 0 while firing */
	uint64_t ended_gen;     /* al.gen when it ended */
	unsigned pending_end;   /* bit per target that has not taken the end yet */
	int seen;               /* found in this poll */
	struct al_alert *next;
};

struct al_target {
	char url[AL_URL_MAX];   /* .../api/v2/alerts */
	struct ahttp_req *req;  /* the one POST in flight */
	uint64_t sent_gen;      /* al.gen when the POST in flight was built */
	int64_t next_try_mono;  /* no POST before this (backoff) */
	int64_t backoff_ms;
	int64_t last_ok_mono;
	int dirty;              /* the set changed since the last POST */
	int up;                 /* the last POST succeeded */
	uint64_t ok, failed;
};

static struct {
	struct ahttp *http;
	struct event *timer;
	struct al_target t[AL_MAX_URLS];
	int nt;
	int64_t resend_ms, timeout_ms;
	struct al_alert *alerts;
	uint64_t gen;
} al;

/* ---- configuration ---- */

struct al_conf {
	char urls[AL_MAX_URLS][AL_URL_MAX];
	int n;
	int64_t resend_ms, timeout_ms;
};

struct al_keycheck {
	char *err;
	size_t errlen;
	int bad;
};

static void
al_check_key(const char *key, const char *value, void *arg)
{
	struct al_keycheck *k = arg;
	if (k->bad || !strcmp(key, "alertmanager") || !strcmp(key, "resend_interval") ||
	    !strcmp(key, "timeout"))
		return;
	snprintf(k->err, k->errlen, "[alerts] %s: unknown key (alertmanager, resend_interval, timeout)",
	    key);
	k->bad = 1;
}

static int
al_parse(const struct op_config *cfg, struct al_conf *c, char *err, size_t errlen)
{
	struct al_keycheck kc = {err, errlen, 0};
	const char *v;

	memset(c, 0, sizeof(*c));
	op_config_foreach(cfg, "alerts", al_check_key, &kc);
	if (kc.bad)
		return -1;
	if (op_config_duration(cfg, "alerts", "resend_interval", AL_RESEND_MS, &c->resend_ms, err,
		errlen) != 0 ||
	    op_config_duration(cfg, "alerts", "timeout", AL_TIMEOUT_MS, &c->timeout_ms, err,
		errlen) != 0)
		return -1;
	if (c->resend_ms < AL_RESEND_MIN_MS) {
		snprintf(err, errlen, "[alerts] resend_interval: must be at least %d ms",
		    AL_RESEND_MIN_MS);
		return -1;
	}
	if (c->timeout_ms < AL_TIMEOUT_MIN_MS) {
		snprintf(err, errlen, "[alerts] timeout: must be at least %d ms", AL_TIMEOUT_MIN_MS);
		return -1;
	}
	v = op_config_get(cfg, "alerts", "alertmanager");
	if (v == NULL) {
		if (op_config_has_section(cfg, "alerts")) {
			snprintf(err, errlen, "[alerts] alertmanager: missing (URL[,URL...])");
			return -1;
		}
		return 0;
	}
	const char *p = v;
	for (;;) {
		size_t n = strcspn(p, ",");
		const char *s = p, *e = p + n;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '/'))
			e--;
		size_t len = (size_t)(e - s);
		if (len == 0) {
			snprintf(err, errlen, "[alerts] alertmanager: empty URL in \"%s\"", v);
			return -1;
		}
		if ((len < 8 || strncmp(s, "http://", 7) != 0) &&
		    (len < 9 || strncmp(s, "https://", 8) != 0)) {
			snprintf(err, errlen, "[alerts] alertmanager: \"%.*s\" is not an http(s) URL",
			    (int)(len > 200 ? 200 : len), s);
			return -1;
		}
		if (strchr(s, ' ') != NULL && strchr(s, ' ') < e) {
			snprintf(err, errlen, "[alerts] alertmanager: \"%.*s\" contains a space",
			    (int)(len > 200 ? 200 : len), s);
			return -1;
		}
		if (c->n == AL_MAX_URLS) {
			snprintf(err, errlen, "[alerts] alertmanager: at most %d URLs", AL_MAX_URLS);
			return -1;
		}
		if (len + strlen(AL_API_PATH) >= AL_URL_MAX) {
			snprintf(err, errlen, "[alerts] alertmanager: URL too long");
			return -1;
		}
		snprintf(c->urls[c->n++], AL_URL_MAX, "%.*s%s", (int)len, s, AL_API_PATH);
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	return 0;
}

int
alerts_check_config(const struct op_config *cfg, char *err, size_t errlen)
{
	struct al_conf c;
	return al_parse(cfg, &c, err, errlen);
}

/* ---- the alert set ---- */

static void
al_alert_free(struct al_alert *a)
{
	json_object_put(a->labels);
	json_object_put(a->annotations);
	free(a);
}

static struct al_alert *
al_find(enum al_kind kind, int64_t id)
{
	for (struct al_alert *a = al.alerts; a; a = a->next)
		if (a->kind == kind && a->id == id)
			return a;
	return NULL;
}

static void
al_add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static json_object *
al_common_labels(enum al_kind kind, json_object *row, int64_t ticket)
{
	json_object *l = json_object_new_object();
	char id[32];

	snprintf(id, sizeof(id), "%lld", (long long)ticket);
	al_add_str(l, "alertname", al_kind_names[kind]);
	al_add_str(l, "subject", op_json_str(row, "subject", ""));
	al_add_str(l, "invariant", op_json_str(row, "invariant", ""));
	al_add_str(l, "entity", op_json_str(row, "entity", ""));
	al_add_str(l, "severity", op_json_str(row, "severity", "warning"));
	al_add_str(l, "ticket", id);
	return l;
}

/* Returns 1 when the set changed (a new alert, or one that fires again). */
static int
al_upsert(enum al_kind kind, int64_t id, int64_t starts, json_object *labels,
    json_object *annotations)
{
	struct al_alert *a = al_find(kind, id);

	if (a != NULL && a->ended_wall == 0) {
		a->seen = 1;
		/* Keep the text current (a diagnosis may arrive late); not a change
		 * worth an immediate POST, the next resend carries it. */
		json_object_put(a->annotations);
		a->annotations = annotations;
		json_object_put(labels);
		return 0;
	}
	if (a == NULL) {
		a = calloc(1, sizeof(*a));
		if (a == NULL) {
			json_object_put(labels);
			json_object_put(annotations);
			return 0;
		}
		a->kind = kind;
		a->id = id;
		a->next = al.alerts;
		al.alerts = a;
	} else {
		json_object_put(a->labels);
		json_object_put(a->annotations);
	}
	a->labels = labels;
	a->annotations = annotations;
	a->starts_wall = starts > 0 ? starts : op_wall_ms();
	a->ended_wall = 0;
	a->pending_end = 0;
	a->seen = 1;
	log_info("alert %s for ticket %s fires", al_kind_names[kind],
	    op_json_str(labels, "ticket", "?"));
	return 1;
}

static int
al_read_escalations(void)
{
	int changed = 0;
	json_object *rows = ledger_rows(od->ledger,
	    "SELECT t.id, t.subject, t.invariant, t.entity, t.severity, t.message, t.reason,"
	    " (SELECT MAX(e.ts) FROM events e WHERE e.ticket=t.id"
	    "   AND e.type='ticket_escalated') AS since,"
	    " (SELECT d.diagnosis FROM diagnoses d WHERE d.ticket_id=t.id"
	    "   ORDER BY d.id DESC LIMIT 1) AS diagnosis"
	    " FROM tickets t WHERE t.status='escalated' ORDER BY t.id", "");

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		int64_t id = op_json_int(r, "id", 0);
		json_object *an = json_object_new_object();
		char buf[1024];

		snprintf(buf, sizeof(buf), "%s/%s on %s escalated: operatord has no safe fix that held",
		    op_json_str(r, "subject", ""), op_json_str(r, "invariant", ""),
		    op_json_str(r, "entity", ""));
		al_add_str(an, "summary", buf);
		json_object *d = op_json_obj(r, "diagnosis");
		snprintf(buf, sizeof(buf), "%s%s%s", op_json_str(d, "primary_diagnosis",
		    op_json_str(r, "message", "")), op_json_str(r, "reason", "")[0] ? " — " : "",
		    op_json_str(r, "reason", ""));
		al_add_str(an, "description", buf);
		snprintf(buf, sizeof(buf), "opsend ticket show %lld --postmortem", (long long)id);
		al_add_str(an, "postmortem", buf);
		changed |= al_upsert(AL_ESCALATION, id, op_json_int(r, "since", 0),
		    al_common_labels(AL_ESCALATION, r, id), an);
	}
	json_object_put(rows);
	return changed;
}

static int
al_read_approvals(void)
{
	int changed = 0;
	json_object *rows = ledger_rows(od->ledger,
	    "SELECT a.id, a.ticket_id, a.name, a.params, a.risk, a.approval_reason,"
	    " a.approval_deadline, a.created_at, t.subject, t.invariant, t.entity, t.severity"
	    " FROM actions a JOIN tickets t ON t.id=a.ticket_id"
	    " WHERE a.status='awaiting_approval' ORDER BY a.id", "");

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		int64_t id = op_json_int(r, "id", 0), ticket = op_json_int(r, "ticket_id", 0);
		json_object *l = al_common_labels(AL_APPROVAL, r, ticket);
		json_object *an = json_object_new_object();
		char buf[1024], idbuf[32];

		snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
		al_add_str(l, "action", op_json_str(r, "name", ""));
		al_add_str(l, "action_id", idbuf);
		json_object *params = op_json_obj(r, "params");
		snprintf(buf, sizeof(buf), "%s %s (risk %s) for %s/%s on %s waits for approval",
		    op_json_str(r, "name", ""),
		    params ? json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN) : "{}",
		    op_json_str(r, "risk", "unknown"), op_json_str(r, "subject", ""),
		    op_json_str(r, "invariant", ""), op_json_str(r, "entity", ""));
		al_add_str(an, "summary", buf);
		al_add_str(an, "description", op_json_str(r, "approval_reason", ""));
		snprintf(buf, sizeof(buf), "opsend approve %lld", (long long)id);
		al_add_str(an, "approve", buf);
		snprintf(buf, sizeof(buf), "opsend reject %lld --reason TEXT", (long long)id);
		al_add_str(an, "reject", buf);
		snprintf(buf, sizeof(buf), "opsend ticket show %lld --postmortem", (long long)ticket);
		al_add_str(an, "postmortem", buf);
		changed |= al_upsert(AL_APPROVAL, id, op_json_int(r, "created_at", 0), l, an);
	}
	json_object_put(rows);
	return changed;
}

/* ---- posting ---- */

static json_object *
al_alert_json(const struct al_alert *a, int64_t ends_wall)
{
	json_object *o = json_object_new_object();
	char ts[OP_TS_LEN];

	json_object_object_add(o, "labels", json_object_get(a->labels));
	json_object_object_add(o, "annotations", json_object_get(a->annotations));
	op_rfc3339(a->starts_wall, ts);
	al_add_str(o, "startsAt", ts);
	op_rfc3339(ends_wall, ts);
	al_add_str(o, "endsAt", ts);
	return o;
}

static void
al_post_done(struct ahttp_req *r, long status, const char *body, size_t len, const char *err,
    void *arg)
{
	struct al_target *t = arg;
	int ti = (int)(t - al.t);

	t->req = NULL;
	if (err == NULL && status >= 200 && status < 300) {
		if (!t->up)
			log_info("alertmanager %s: alerts delivered", t->url);
		t->ok++;
		t->up = 1;
		t->backoff_ms = 0;
		t->next_try_mono = 0;
		t->last_ok_mono = op_mono_ms();
		for (struct al_alert *a = al.alerts; a; a = a->next)
			if (a->ended_wall != 0 && a->ended_gen <= t->sent_gen)
				a->pending_end &= ~(1u << ti);
		return;
	}
	t->failed++;
	t->dirty = 1;
	t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : AL_BACKOFF_MIN_MS;
	if (t->backoff_ms > AL_BACKOFF_MAX_MS)
		t->backoff_ms = AL_BACKOFF_MAX_MS;
	t->next_try_mono = op_mono_ms() + t->backoff_ms;
	/* Say it once per outage, not once per retry. */
	if (t->up || t->failed == 1)
		log_warn("alertmanager %s: %s%.*s; retrying with backoff", t->url,
		    err ? err : "HTTP error ", err ? 0 : (int)(len > 200 ? 200 : len), err ? "" : body);
	t->up = 0;
}

static void
al_post(struct al_target *t)
{
	int ti = (int)(t - al.t);
	int64_t now = op_wall_ms();
	json_object *arr = json_object_new_array();
	char err[256];

	for (struct al_alert *a = al.alerts; a; a = a->next) {
		if (a->ended_wall == 0)
			json_object_array_add(arr, al_alert_json(a,
			    now + AL_FIRING_TTL_FACTOR * al.resend_ms));
		else if (a->pending_end & (1u << ti))
			json_object_array_add(arr, al_alert_json(a, a->ended_wall));
	}
	if (json_object_array_length(arr) == 0) {
		t->dirty = 0;
		json_object_put(arr);
		return;
	}
	const char *body = json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN);
	t->sent_gen = al.gen;
	t->dirty = 0;
	t->req = ahttp_request(al.http, "POST", t->url, body, strlen(body), "application/json",
	    al.timeout_ms, al_post_done, t, err, sizeof(err));
	if (t->req == NULL)
		al_post_done(NULL, 0, "", 0, err, t);
	json_object_put(arr);
}

static void
al_poll(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = op_wall_ms(), mono = op_mono_ms();
	int changed = 0;
	unsigned all = (1u << al.nt) - 1;

	for (struct al_alert *a = al.alerts; a; a = a->next)
		a->seen = 0;
	changed |= al_read_escalations();
	changed |= al_read_approvals();
	for (struct al_alert **pp = &al.alerts; *pp;) {
		struct al_alert *a = *pp;
		if (a->ended_wall == 0 && !a->seen) {
			a->ended_wall = now;
			a->ended_gen = ++al.gen;
			a->pending_end = all;
			changed = 1;
			log_info("alert %s for ticket %s ends", al_kind_names[a->kind],
			    op_json_str(a->labels, "ticket", "?"));
		}
		if (a->ended_wall != 0 &&
		    (a->pending_end == 0 || now - a->ended_wall > AL_END_KEEP_MS)) {
			*pp = a->next;
			al_alert_free(a);
			continue;
		}
		pp = &a->next;
	}
	if (changed)
		al.gen++;
	for (int i = 0; i < al.nt; i++) {
		struct al_target *t = &al.t[i];
		if (changed)
			t->dirty = 1;
		if (t->req != NULL || mono < t->next_try_mono)
			continue;
		if (t->dirty || t->last_ok_mono == 0 || mono - t->last_ok_mono >= al.resend_ms)
			al_post(t);
	}
}

int
alerts_open(const struct op_config *cfg, char *err, size_t errlen)
{
	struct al_conf c;
	struct timeval tv = {AL_POLL_MS / 1000, (AL_POLL_MS % 1000) * 1000};

	if (al_parse(cfg, &c, err, errlen) != 0)
		return -1;
	if (c.n == 0)
		return 0;
	memset(&al, 0, sizeof(al));
	al.http = ahttp_new(od->base, err, errlen);
	if (al.http == NULL)
		return -1;
	al.timer = event_new(od->base, -1, EV_PERSIST, al_poll, NULL);
	if (al.timer == NULL || event_add(al.timer, &tv) != 0) {
		snprintf(err, errlen, "[alerts]: cannot start the poll timer");
		return -1;
	}
	al.nt = c.n;
	al.resend_ms = c.resend_ms;
	al.timeout_ms = c.timeout_ms;
	for (int i = 0; i < c.n; i++) {
		op_strlcpy(al.t[i].url, c.urls[i], sizeof(al.t[i].url));
		al.t[i].up = 1; /* until a POST fails: the first failure is logged */
		log_info("alerts go to %s", al.t[i].url);
	}
	return 0;
}

void
alerts_close(void)
{
	if (al.timer != NULL)
		event_free(al.timer);
	ahttp_free(al.http); /* cancels POSTs in flight */
	while (al.alerts != NULL) {
		struct al_alert *a = al.alerts;
		al.alerts = a->next;
		al_alert_free(a);
	}
	memset(&al, 0, sizeof(al));
}

/* Label values: backslash, double quote and newline escaped (text format). */
static void
al_label_value(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(b, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, s, 1);
	}
}

void
alerts_metrics(struct evbuffer *b)
{
	size_t firing[AL_NKINDS] = {0};

	for (struct al_alert *a = al.alerts; a; a = a->next)
		if (a->ended_wall == 0)
			firing[a->kind]++;
	evbuffer_add_printf(b, "# HELP operatord_alerts_firing Alerts operatord holds as firing.\n"
	    "# TYPE operatord_alerts_firing gauge\n");
	for (int k = 0; k < AL_NKINDS; k++)
		evbuffer_add_printf(b, "operatord_alerts_firing{alertname=\"%s\"} %zu\n",
		    al_kind_names[k], firing[k]);
	if (al.nt == 0)
		return;
	evbuffer_add_printf(b, "# HELP operatord_alertmanager_up 1 when the last POST to the "
	    "Alertmanager succeeded.\n# TYPE operatord_alertmanager_up gauge\n");
	for (int i = 0; i < al.nt; i++) {
		evbuffer_add_printf(b, "operatord_alertmanager_up{url=\"");
		al_label_value(b, al.t[i].url);
		evbuffer_add_printf(b, "\"} %d\n", al.t[i].up && al.t[i].ok > 0);
	}
	evbuffer_add_printf(b, "# HELP operatord_alertmanager_posts_total POSTs of alerts to "
	    "Alertmanager by result.\n# TYPE operatord_alertmanager_posts_total counter\n");
	for (int i = 0; i < al.nt; i++) {
		static const char *const res[2] = {"ok", "error"};
		for (int j = 0; j < 2; j++) {
			evbuffer_add_printf(b, "operatord_alertmanager_posts_total{url=\"");
			al_label_value(b, al.t[i].url);
			evbuffer_add_printf(b, "\",result=\"%s\"} %llu\n", res[j],
			    (unsigned long long)(j ? al.t[i].failed : al.t[i].ok));
		}
	}
}
