/* opdash_layout: one frame of the dashboard rendered into a character grid.
 * No terminal here: opdash copies the grid to ncurses, --snapshot prints it,
 * and the layout test reads it.
 *
 *   status line: daemon, subject, mode, kill switch, workers, tickets, budgets
 *   +-Chapter---------------------------------------------------------+
 *   +-Cluster------------+-Detections---------------------------------+
 *   +-Workload-----------+-Agent--------------------------------------+
 *   message line: prompts, errors, key hints
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/opdash.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define LAY_LEFT_PCT 38          /* share of the width for Cluster and Workload */
#define LAY_LEFT_MIN 38          /* columns */
#define LAY_LEFT_MAX 60
#define LAY_CLUSTER_PCT 55       /* share of the left column for Cluster */
#define LAY_CHAPTER_PCT 25       /* share of the height for Chapter, across the top */
#define LAY_CHAPTER_MIN 8        /* rows, borders included */
#define LAY_CHAPTER_MAX 14
#define LAY_DETECT_PCT 35        /* share of the right column for Detections */
#define LAY_DETECT_MIN 7
#define LAY_STEP_LINES 2         /* wrapped lines per part of one agent step */
#define LAY_STEP_LABEL 17        /* columns of "+12.3s label     " before a step's text */
#define LAY_DETAIL_MIN 4         /* rows a ticket needs left to be shown in detail */

/* A rectangle being filled line by line. */
struct pane {
	struct lay_grid *g;
	int x, y, w, h;          /* inner area */
	int row;
};

int
lay_grid_init(struct lay_grid *g, int w, int h)
{
	g->w = w;
	g->h = h;
	g->c = calloc((size_t)w * (size_t)h, sizeof(*g->c));
	return g->c == NULL ? -1 : 0;
}

void
lay_grid_free(struct lay_grid *g)
{
	free(g->c);
	g->c = NULL;
}

static void
put_ch(struct lay_grid *g, int x, int y, char ch, int color, int attr)
{
	if (x < 0 || y < 0 || x >= g->w || y >= g->h)
		return;
	struct lay_cell *c = &g->c[y * g->w + x];
	c->ch = ch;
	c->color = (uint8_t)color;
	c->attr = (uint8_t)attr;
}

/* Writes at most maxw bytes of s; returns the columns used. Control
 * characters become blanks: text from the daemon never moves the cursor. */
static int
put_str(struct lay_grid *g, int x, int y, int maxw, const char *s, int color, int attr)
{
	int n = 0;

	for (; s && *s && n < maxw; s++, n++) {
		unsigned char ch = (unsigned char)*s;
		put_ch(g, x + n, y, (ch < 0x20 || ch >= 0x7f) ? ' ' : (char)ch, color, attr);
	}
	return n;
}

static void
put_fill(struct lay_grid *g, int x, int y, int w, char ch, int color, int attr)
{
	for (int i = 0; i < w; i++)
		put_ch(g, x + i, y, ch, color, attr);
}

static void
draw_box(struct lay_grid *g, int x, int y, int w, int h, const char *title, int color)
{
	for (int i = 1; i < w - 1; i++) {
		put_ch(g, x + i, y, '-', color, LAY_LINE);
		put_ch(g, x + i, y + h - 1, '-', color, LAY_LINE);
	}
	for (int j = 1; j < h - 1; j++) {
		put_ch(g, x, y + j, '|', color, LAY_LINE);
		put_ch(g, x + w - 1, y + j, '|', color, LAY_LINE);
	}
	put_ch(g, x, y, '+', color, LAY_LINE);
	put_ch(g, x + w - 1, y, '+', color, LAY_LINE);
	put_ch(g, x, y + h - 1, '+', color, LAY_LINE);
	put_ch(g, x + w - 1, y + h - 1, '+', color, LAY_LINE);
	put_ch(g, x + 1, y, ' ', color, 0);
	int n = put_str(g, x + 2, y, w - 4, title, color, LAY_BOLD);
	put_ch(g, x + 2 + n, y, ' ', color, 0);
}

static struct pane
pane_open(struct lay_grid *g, int x, int y, int w, int h, const char *title, int color)
{
	struct pane p = {g, x + 2, y + 1, w - 4, h - 2, 0};

	draw_box(g, x, y, w, h, title, color);
	return p;
}

static int
pane_full(const struct pane *p)
{
	return p->row >= p->h;
}

static void
pane_printf(struct pane *p, int color, int attr, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (pane_full(p))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put_str(p->g, p->x, p->y + p->row, p->w, buf, color, attr);
	p->row++;
}

/* Word-wraps text into the pane from column indent, at most maxlines
 * lines (0: as many as fit); "..." marks what was cut. '\n' breaks a line. */
static void
pane_wrap(struct pane *p, int indent, const char *text, int color, int attr, int maxlines)
{
	int w = p->w - indent, lines = 0;
	const char *s = text;

	if (w < 8)
		return;
	while (*s && !pane_full(p) && (maxlines == 0 || lines < maxlines)) {
		if (*s == '\n') {
			s++;
			if (*s == '\n') {       /* a paragraph: one blank line */
				s++;
				p->row++;
			}
			continue;
		}
		size_t len = strcspn(s, "\n");
		size_t take = len;
		if ((int)len > w) {
			take = (size_t)w;
			while (take > 0 && s[take] != ' ')
				take--;
			if (take == 0)
				take = (size_t)w;
		}
		int last = maxlines > 0 && lines == maxlines - 1;
		int cut = (int)take < (int)len || (s[len] == '\n' && s[len + 1] != '\0');
		if ((last || p->row == p->h - 1) && cut && (int)take > w - 3) {
			take = (size_t)(w - 3);
		}
		put_str(p->g, p->x + indent, p->y + p->row, (int)take, s, color, attr);
		if ((last || p->row == p->h - 1) && cut)
			put_str(p->g, p->x + indent + (int)take, p->y + p->row, 3, "...", color, attr);
		p->row++;
		lines++;
		s += take;
		while (*s == ' ')
			s++;
	}
}

static void
fmt_age(char *buf, size_t len, int64_t ms)
{
	int64_t s = ms / 1000;

	if (s < 0)
		s = 0;
	if (s < 100)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 6000)
		snprintf(buf, len, "%lldm", (long long)(s / 60));
	else
		snprintf(buf, len, "%lldh", (long long)(s / 3600));
}

static int
status_color(const char *st)
{
	if (strcmp(st, "resolved") == 0)
		return LAY_GREEN;
	if (strcmp(st, "escalated") == 0 || strcmp(st, "rejected") == 0)
		return LAY_RED;
	if (strcmp(st, "cleared") == 0)
		return LAY_DIM;
	return LAY_YELLOW;
}

static int
open_ticket_on(const struct dm_state *d, const char *entity)
{
	for (int i = 0; i < d->nt; i++)
		if (!dm_ticket_closed(&d->t[i]) && strcmp(d->t[i].entity, entity) == 0)
			return 1;
	return 0;
}

/* ---- status line ---- */

static void
draw_status(struct lay_grid *g, const struct lay_view *v)
{
	const struct dm_state *d = v->dm;
	char buf[512];
	int x = 0;

	put_fill(g, 0, 0, g->w, ' ', LAY_DEFAULT, LAY_REVERSE);
	if (!d->connected) {
		snprintf(buf, sizeof(buf), " operatord is not running (%s)", d->conn_error);
		put_str(g, 0, 0, g->w, buf, LAY_RED, LAY_REVERSE | LAY_BOLD);
		return;
	}
	snprintf(buf, sizeof(buf), " operatord | %s | mode ", d->subject[0] ? d->subject : "?");
	x += put_str(g, x, 0, g->w - x, buf, LAY_DEFAULT, LAY_REVERSE);
	char mode[16];
	snprintf(mode, sizeof(mode), "%s", d->mode);
	for (char *p = mode; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	x += put_str(g, x, 0, g->w - x, mode, strcmp(d->mode, "execute") == 0 ? LAY_GREEN :
	    LAY_YELLOW, LAY_REVERSE | LAY_BOLD);
	x += put_str(g, x, 0, g->w - x, " | kill switch ", LAY_DEFAULT, LAY_REVERSE);
	x += put_str(g, x, 0, g->w - x, d->kill_switch ? "ON" : "off",
	    d->kill_switch ? LAY_RED : LAY_DEFAULT, LAY_REVERSE | (d->kill_switch ? LAY_BOLD : 0));
	snprintf(buf, sizeof(buf), " | workers %d/%d | open %d | %s", d->workers_ready,
	    d->workers_total, d->tickets_open, d->budgets);
	put_str(g, x, 0, g->w - x, buf, d->workers_ready < d->workers_total ? LAY_YELLOW : LAY_DEFAULT,
	    LAY_REVERSE);
}

/* ---- Cluster ---- */

static void
cluster_ratelimiter(struct pane *p, const struct dm_state *d, json_object *obs)
{
	json_object *r = op_json_obj(obs, "redis"), *nodes = op_json_arr(obs, "nodes");
	int rok = op_json_bool(r, "ok", 0);

	pane_printf(p, rok ? LAY_GREEN : LAY_RED, LAY_BOLD, "Redis %s (%lld ms)%s%s",
	    rok ? "up" : "DOWN", (long long)op_json_int(r, "latency_ms", 0), rok ? "" : ": ",
	    rok ? "" : op_json_str(r, "error", "unreachable"));
	pane_printf(p, LAY_DIM, 0, "%-10s %-7s %-5s %7s", "NODE", "STATE", "REDIS", "P99 ms");
	for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);
		const char *id = op_json_str(n, "id", "?");
		const char *state = "up";
		if (!op_json_bool(n, "reachable", 0))
			state = "down";
		else if (strcmp(op_json_str(n, "status", "ok"), "ok") != 0 ||
		    strcmp(op_json_str(n, "redis", "up"), "up") != 0 || open_ticket_on(d, id))
			state = "suspect";
		int color = strcmp(state, "up") == 0 ? LAY_GREEN : strcmp(state, "down") == 0 ? LAY_RED
		    : LAY_YELLOW;
		pane_printf(p, color, 0, "%-10.10s %-7s %-5.5s %7.1f", id, state,
		    op_json_str(n, "redis", "?"), op_json_double(n, "check_p99_ms", 0));
	}
}

static void
cluster_tikv(struct pane *p, json_object *obs)
{
	json_object *pd = op_json_obj(obs, "pd"), *stores = op_json_arr(obs, "stores");
	json_object *rg = op_json_obj(obs, "regions");
	int pok = op_json_bool(pd, "ok", 0);

	pane_printf(p, pok ? LAY_GREEN : LAY_RED, LAY_BOLD, "PD %s (%lld ms), %lld regions",
	    pok ? "up" : "UNREACHABLE", (long long)op_json_int(pd, "latency_ms", 0),
	    (long long)op_json_int(rg, "count", 0));
	int64_t bad = op_json_int(rg, "leaderless", 0) + op_json_int(rg, "leader_on_dead_store", 0);
	pane_printf(p, bad || op_json_int(rg, "under_replicated", 0) ? LAY_YELLOW : LAY_DEFAULT, 0,
	    "leaderless %lld, under-replicated %lld", (long long)bad,
	    (long long)op_json_int(rg, "under_replicated", 0));
	pane_printf(p, LAY_DIM, 0, "%-3s %-7s %-6s %4s %5s %s", "ID", "STATE", "PD", "LEAD", "REGNS",
	    "PROBE");
	for (size_t i = 0; stores && i < json_object_array_length(stores); i++) {
		json_object *s = json_object_array_get_idx(stores, i);
		const char *pd_state = op_json_str(s, "state_name", "?");
		const char *state = "up";
		int color = LAY_GREEN;
		if (!op_json_bool(s, "live", 0)) {
			state = "down";
			color = LAY_RED;
		} else if (strcmp(pd_state, "Up") != 0 || op_json_bool(s, "evicted", 0)) {
			state = "suspect";
			color = LAY_YELLOW;
		}
		pane_printf(p, color, 0, "%-3lld %-7s %-6.6s %4lld %5lld %s",
		    (long long)op_json_int(s, "id", 0), state, pd_state, (long long)op_json_int(s, "leaders", 0),
		    (long long)op_json_int(s, "regions", 0), op_json_bool(s, "probe_ok", 0) ? "ok" : "fail");
	}
}

static void
draw_cluster(struct lay_grid *g, const struct lay_view *v, int x, int y, int w, int h)
{
	const struct dm_state *d = v->dm;
	int color = dm_critical_open(d) ? LAY_RED : LAY_CYAN;
	struct pane p = pane_open(g, x, y, w, h, dm_critical_open(d) ? "Cluster: CRITICAL" : "Cluster",
	    color);

	if (d->obs == NULL) {
		pane_wrap(&p, 0, d->obs_error[0] ? d->obs_error : "waiting for the first observation",
		    d->obs_error[0] ? LAY_RED : LAY_DIM, 0, 0);
		return;
	}
	if (op_json_arr(d->obs, "stores") != NULL)
		cluster_tikv(&p, d->obs);
	else if (op_json_arr(d->obs, "nodes") != NULL)
		cluster_ratelimiter(&p, d, d->obs);
	else
		pane_printf(&p, LAY_DEFAULT, 0, "subject %s observed", d->subject);
	char age[16];
	fmt_age(age, sizeof(age), v->now_ms - d->obs_ms);
	if (d->obs_error[0])
		pane_wrap(&p, 0, d->obs_error, LAY_RED, 0, 2);
	else if (!pane_full(&p)) {
		p.row = p.h - 1 > p.row ? p.h - 1 : p.row;
		pane_printf(&p, LAY_DIM, 0, "observed %s ago", age);
	}
}

/* ---- Workload ---- */

static void
bar(struct pane *p, int indent, double frac, int color)
{
	int w = p->w - indent - 2;
	if (pane_full(p) || w < 4)
		return;
	if (frac < 0)
		frac = 0;
	int fill = frac >= 1 ? w : (int)(frac * w + 0.5);
	if (frac > 0 && fill == 0)
		fill = 1;
	int y = p->y + p->row;
	put_ch(p->g, p->x + indent, y, '[', LAY_DIM, 0);
	put_fill(p->g, p->x + indent + 1, y, fill, '#', color, LAY_BOLD);
	put_fill(p->g, p->x + indent + 1 + fill, y, w - fill, '.', LAY_DIM, 0);
	put_ch(p->g, p->x + indent + 1 + w, y, ']', LAY_DIM, 0);
	p->row++;
}

static int
key_cmp(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
	int64_t cx = op_json_int(x, "redis_count", 0), cy = op_json_int(y, "redis_count", 0);

	return cx < cy ? 1 : cx > cy ? -1 : 0;
}

static void
workload_ratelimiter(struct pane *p, json_object *obs)
{
	json_object *keys = op_json_arr(obs, "keys");
	size_t n = keys ? json_object_array_length(keys) : 0;
	json_object **sorted = n ? calloc(n, sizeof(*sorted)) : NULL;

	if (n == 0 || sorted == NULL) {
		pane_printf(p, LAY_DIM, 0, "no keys with traffic");
		free(sorted);
		return;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = json_object_array_get_idx(keys, i);
	qsort(sorted, n, sizeof(*sorted), key_cmp);
	pane_printf(p, LAY_DIM, 0, "busiest keys, count/limit");
	for (size_t i = 0; i < n && p->row + 2 <= p->h; i++) {
		json_object *k = sorted[i];
		int64_t count = op_json_int(k, "redis_count", 0), limit = op_json_int(k, "limit", 0);
		int64_t drift = op_json_int(k, "drift", 0);
		/* over the limit and still allowed: the nodes are not enforcing it */
		int over = count > limit && op_json_int(k, "allowed_recent_sum", 0) > 0;
		char extra[48] = "";
		if (over)
			snprintf(extra, sizeof(extra), "  OVER LIMIT");
		else if (count >= limit)
			snprintf(extra, sizeof(extra), "  at limit: blocking");
		else if (drift != 0)
			snprintf(extra, sizeof(extra), "  drift %+lld", (long long)drift);
		pane_printf(p, over ? LAY_RED : drift ? LAY_YELLOW : LAY_DEFAULT, over ? LAY_BOLD : 0,
		    "%-12.12s %lld/%lld%s", op_json_str(k, "key", "?"), (long long)count,
		    (long long)limit, extra);
		bar(p, 0, limit > 0 ? (double)count / (double)limit : count > 0 ? 1.0 : 0.0,
		    over ? LAY_RED : (double)count > 0.8 * (double)limit ? LAY_YELLOW : LAY_GREEN);
	}
	free(sorted);
}

static void
workload_tikv(struct pane *p, json_object *obs)
{
	json_object *stores = op_json_arr(obs, "stores");
	int64_t max = 1, sum = 0, live = 0, lo = -1, hi = 0;

	for (size_t i = 0; stores && i < json_object_array_length(stores); i++) {
		json_object *s = json_object_array_get_idx(stores, i);
		int64_t l = op_json_int(s, "leaders", 0);
		if (l > max)
			max = l;
		if (op_json_bool(s, "live", 0)) {
			sum += l;
			live++;
			lo = lo < 0 || l < lo ? l : lo;
			hi = l > hi ? l : hi;
		}
	}
	pane_printf(p, LAY_DIM, 0, "leaders per store: spread %lld over %lld live",
	    (long long)(lo < 0 ? 0 : hi - lo), (long long)live);
	for (size_t i = 0; stores && i < json_object_array_length(stores); i++) {
		json_object *s = json_object_array_get_idx(stores, i);
		int64_t l = op_json_int(s, "leaders", 0);
		int dead = !op_json_bool(s, "live", 0);
		if (pane_full(p))
			break;
		char lab[32];
		snprintf(lab, sizeof(lab), "s%-3lld%5lld ", (long long)op_json_int(s, "id", 0), (long long)l);
		put_str(p->g, p->x, p->y + p->row, p->w, lab, dead ? LAY_RED : LAY_DEFAULT, 0);
		bar(p, (int)strlen(lab), (double)l / (double)max, dead ? LAY_RED : LAY_BLUE);
	}
	(void)sum;
}

static void
draw_workload(struct lay_grid *g, const struct lay_view *v, int x, int y, int w, int h)
{
	struct pane p = pane_open(g, x, y, w, h, "Workload", LAY_YELLOW);
	const struct dm_state *d = v->dm;

	if (d->obs == NULL)
		pane_printf(&p, LAY_DIM, 0, "no observation yet");
	else if (op_json_arr(d->obs, "stores") != NULL)
		workload_tikv(&p, d->obs);
	else if (op_json_arr(d->obs, "keys") != NULL)
		workload_ratelimiter(&p, d->obs);
	else
		pane_printf(&p, LAY_DIM, 0, "no workload figures for %s", d->subject);
}

/* ---- Chapter ---- */

static void
draw_chapter(struct lay_grid *g, const struct lay_view *v, int x, int y, int w, int h)
{
	struct pane p = pane_open(g, x, y, w, h, "Chapter", LAY_MAGENTA);
	const struct chap_book *b = v->book;

	if (b == NULL || b->n == 0) {
		pane_printf(&p, LAY_DIM, 0, "no chapters: opdash --chapters FILE tells a story here");
		return;
	}
	const struct chap *c = &b->c[v->chap_cur];
	pane_printf(&p, LAY_MAGENTA, LAY_BOLD, "[%d/%d] %s", v->chap_cur + 1, b->n, c->title);
	int keep = v->chap_state && v->chap_state[0] ? 1 : 0;
	int save_h = p.h;
	p.h -= keep;
	pane_wrap(&p, 0, c->narration, LAY_DEFAULT, 0, 0);
	p.h = save_h;
	if (keep) {
		int color = strncmp(v->chap_state, "running", 7) == 0 ? LAY_YELLOW :
		    strncmp(v->chap_state, "failed", 6) == 0 || strncmp(v->chap_state, "timed out", 9) == 0
		    ? LAY_RED : LAY_GREEN;
		p.row = p.h - 1;
		pane_printf(&p, color, LAY_BOLD, "> %s", v->chap_state);
	}
}

/* ---- Detections ---- */

struct det_row {
	int64_t ts;
	const struct dm_ticket *t;
	const struct dm_fault *f;
};

static int
det_cmp(const void *a, const void *b)
{
	const struct det_row *x = a, *y = b;

	return x->ts < y->ts ? 1 : x->ts > y->ts ? -1 : 0;
}

static void
draw_detections(struct lay_grid *g, const struct lay_view *v, int x, int y, int w, int h)
{
	const struct dm_state *d = v->dm;
	struct pane p = pane_open(g, x, y, w, h, "Detections", LAY_BLUE);
	struct det_row rows[DM_MAX_TICKETS + DM_MAX_FAULTS];
	int n = 0;
	char age[16];

	for (int i = 0; i < d->nt; i++)
		rows[n++] = (struct det_row){d->t[i].opened_ms, &d->t[i], NULL};
	for (int i = 0; i < d->nf; i++)
		rows[n++] = (struct det_row){d->f[i].started_ms, NULL, &d->f[i]};
	if (n == 0) {
		pane_printf(&p, LAY_DIM, 0, "no faults, no tickets: every invariant holds");
		return;
	}
	qsort(rows, (size_t)n, sizeof(rows[0]), det_cmp);
	pane_printf(&p, LAY_DIM, 0, "%-4s %-5s %-17s %-9s %-10s %s", "AGE", "", "WHAT", "ON", "STATE",
	    "WHY");
	for (int i = 0; i < n && !pane_full(&p); i++) {
		fmt_age(age, sizeof(age), v->now_ms - rows[i].ts);
		if (rows[i].f != NULL) {
			const struct dm_fault *f = rows[i].f;
			pane_printf(&p, LAY_MAGENTA, 0, "%-4s %-5s %-17.17s %-9.9s %-10s %s", age, "FAULT",
			    f->fault, f->target, f->ended_ms ? "undone" : "injected",
			    "chaos (ground truth)");
			continue;
		}
		const struct dm_ticket *t = rows[i].t;
		char id[16];
		snprintf(id, sizeof(id), "#%lld", (long long)t->id);
		int color = strcmp(t->severity, "critical") == 0 && !dm_ticket_closed(t) ? LAY_RED :
		    status_color(t->status);
		pane_printf(&p, color, strcmp(t->severity, "critical") == 0 ? LAY_BOLD : 0,
		    "%-4s %-5s %-17.17s %-9.9s %-10.10s %s", age, id, t->invariant, t->entity,
		    strcmp(t->status, "awaiting_approval") == 0 ? "approval?" : t->status, t->message);
	}
}

/* ---- Agent ---- */

static int64_t
agent_rank(const struct dm_ticket *t)
{
	int64_t last = t->nsteps ? t->steps[t->nsteps - 1].ts_ms : t->opened_ms;

	/* tickets the agent acted on (or waits to) come first, newest first */
	return (t->actions > 0 || t->awaiting_action ? (int64_t)1 << 50 : 0) + last;
}

int
lay_agent_order(const struct dm_state *d, int64_t *ids, int max)
{
	int n = 0;
	int64_t rank[DM_MAX_TICKETS];

	for (int i = 0; i < d->nt && n < max; i++) {
		if (d->t[i].nsteps == 0)
			continue;
		int64_t r = agent_rank(&d->t[i]);
		int j = n++;
		while (j > 0 && rank[j - 1] < r) {
			rank[j] = rank[j - 1];
			ids[j] = ids[j - 1];
			j--;
		}
		rank[j] = r;
		ids[j] = d->t[i].id;
	}
	return n;
}

static int
step_color(const struct dm_step *s)
{
	switch (s->kind) {
	case DM_STEP_DIAGNOSIS: return LAY_CYAN;
	case DM_STEP_AWAITING: return LAY_YELLOW;
	case DM_STEP_APPROVED: return LAY_GREEN;
	case DM_STEP_REJECTED: case DM_STEP_SKIPPED: case DM_STEP_FAILED: return LAY_RED;
	case DM_STEP_ACTION: return LAY_GREEN;
	case DM_STEP_VERIFY: return strcmp(s->word, "success") == 0 ? LAY_GREEN : LAY_RED;
	case DM_STEP_END: return status_color(s->word);
	default: return LAY_DEFAULT;
	}
}

static void
agent_step(struct pane *p, const struct dm_ticket *t, const struct dm_step *s)
{
	char since[16], label[LAY_STEP_LABEL + 8];
	/* short labels: the text column starts early enough to say something */
	static const char *const short_name[DM_STEP_COUNT] = {
		[DM_STEP_DIAGNOSIS] = "diagnosis", [DM_STEP_PROPOSED] = "proposed",
		[DM_STEP_AWAITING] = "approval", [DM_STEP_APPROVED] = "approved",
		[DM_STEP_REJECTED] = "refused", [DM_STEP_SKIPPED] = "skipped",
		[DM_STEP_ACTION] = "action", [DM_STEP_FAILED] = "failed", [DM_STEP_VERIFY] = "verify",
	};
	const char *name = s->kind == DM_STEP_END || short_name[s->kind] == NULL ? s->word :
	    short_name[s->kind];

	dm_fmt_since(since, sizeof(since), t->t0_ms, s->ts_ms);
	snprintf(label, sizeof(label), "%6s %-9.9s", since, name);
	if (pane_full(p))
		return;
	put_str(p->g, p->x, p->y + p->row, LAY_STEP_LABEL, label, step_color(s), LAY_BOLD);
	/* each '\n' part of the text gets its own wrapped lines */
	const char *part = s->text;
	while (*part && !pane_full(p)) {
		char buf[DM_TEXT];
		size_t n = strcspn(part, "\n");
		snprintf(buf, sizeof(buf), "%.*s", (int)n, part);
		pane_wrap(p, LAY_STEP_LABEL, buf, part == s->text ? step_color(s) : LAY_DEFAULT, 0,
		    LAY_STEP_LINES);
		part += n;
		if (*part == '\n')
			part++;
	}
}

static void
draw_agent(struct lay_grid *g, const struct lay_view *v, int x, int y, int w, int h)
{
	const struct dm_state *d = v->dm;
	struct pane p = pane_open(g, x, y, w, h, "Agent", LAY_GREEN);
	int64_t ids[DM_MAX_TICKETS];
	int n = lay_agent_order(d, ids, DM_MAX_TICKETS);

	if (n == 0) {
		pane_printf(&p, LAY_DIM, 0, "nothing to do: no ticket diagnosed yet");
		return;
	}
	int64_t sel = 0;     /* a selection that is no longer shown selects nothing */
	for (int i = 0; i < n; i++)
		if (ids[i] == v->selected)
			sel = v->selected;
	for (int i = 0; i < n && !pane_full(&p); i++) {
		const struct dm_ticket *t = dm_ticket((struct dm_state *)d, ids[i]);
		int selected = sel == t->id;
		int detail = (sel == 0 || selected) && p.h - p.row >= LAY_DETAIL_MIN;
		char head[256], opened[16];
		dm_fmt_since(opened, sizeof(opened), t->t0_ms, t->opened_ms);
		snprintf(head, sizeof(head), "#%lld %s %s [%s] opened %s after %s", (long long)t->id,
		    t->invariant, t->entity, t->status, opened,
		    t->fault[0] ? t->fault : "it was seen");
		if (!detail) {
			/* one line: the last step */
			const struct dm_step *s = &t->steps[t->nsteps - 1];
			char line[512];
			snprintf(line, sizeof(line), "%s: %s", head, s->text);
			for (char *c = line; *c; c++)
				if (*c == '\n')
					*c = ' ';
			pane_wrap(&p, 0, line, status_color(t->status), selected ? LAY_REVERSE : 0, 1);
			continue;
		}
		pane_printf(&p, status_color(t->status), LAY_BOLD | (selected ? LAY_REVERSE : 0), "%s",
		    head);
		for (int k = 0; k < t->nsteps && !pane_full(&p); k++)
			agent_step(&p, t, &t->steps[k]);
		if (t->executed_ms > 0 && !dm_ticket_closed(t) && !pane_full(&p)) {
			char since[16], line[160];
			dm_fmt_since(since, sizeof(since), t->t0_ms, v->now_ms);
			snprintf(line, sizeof(line), "%6s %-9s", since, "wait");
			put_str(g, p.x, p.y + p.row, LAY_STEP_LABEL, line, LAY_YELLOW, LAY_BOLD);
			snprintf(line, sizeof(line), "%.1f s since the action: the verifier waits "
			    "verify_delay, then the fix must hold for the settle window",
			    (double)(v->now_ms - t->executed_ms) / 1000.0);
			pane_wrap(&p, LAY_STEP_LABEL, line, LAY_YELLOW, 0, LAY_STEP_LINES);
		}
		if (t->awaiting_action && !pane_full(&p))
			pane_printf(&p, LAY_YELLOW, LAY_BOLD, "%*s%s", LAY_STEP_LABEL, "",
			    selected ? "press a to approve this action" :
			    "select this ticket (up/down) and press a to approve");
	}
}

/* ---- frame ---- */

void
lay_render(struct lay_grid *g, const struct lay_view *v)
{
	char buf[256];

	for (int i = 0; i < g->w * g->h; i++)
		g->c[i] = (struct lay_cell){' ', LAY_DEFAULT, 0};
	if (g->w < LAY_MIN_W || g->h < LAY_MIN_H) {
		snprintf(buf, sizeof(buf), "opdash needs a terminal of at least %dx%d; this one is %dx%d.",
		    LAY_MIN_W, LAY_MIN_H, g->w, g->h);
		put_str(g, 0, g->h / 2 - 1, g->w, buf, LAY_YELLOW, LAY_BOLD);
		put_str(g, 0, g->h / 2, g->w, "Make the window larger (q quits).", LAY_DEFAULT, 0);
		if (!v->dm->connected)
			put_str(g, 0, g->h / 2 + 1, g->w, "operatord is not running", LAY_RED, LAY_BOLD);
		return;
	}
	draw_status(g, v);
	int top = 1, body = g->h - 2;
	int chap_h = body * LAY_CHAPTER_PCT / 100;
	chap_h = chap_h < LAY_CHAPTER_MIN ? LAY_CHAPTER_MIN : chap_h > LAY_CHAPTER_MAX ?
	    LAY_CHAPTER_MAX : chap_h;
	draw_chapter(g, v, 0, top, g->w, chap_h);
	int below = body - chap_h, y = top + chap_h;
	int lw = g->w * LAY_LEFT_PCT / 100;
	lw = lw < LAY_LEFT_MIN ? LAY_LEFT_MIN : lw > LAY_LEFT_MAX ? LAY_LEFT_MAX : lw;
	int rw = g->w - lw;
	int cl_h = below * LAY_CLUSTER_PCT / 100;
	draw_cluster(g, v, 0, y, lw, cl_h);
	draw_workload(g, v, 0, y + cl_h, lw, below - cl_h);
	int det_h = below * LAY_DETECT_PCT / 100;
	det_h = det_h < LAY_DETECT_MIN ? LAY_DETECT_MIN : det_h;
	draw_detections(g, v, lw, y, rw, det_h);
	draw_agent(g, v, lw, y + det_h, rw, below - det_h);
	if (!v->dm->connected) {
		/* over the middle of the frame: what was shown is stale */
		const char *m = " operatord is not running: waiting for it to come back ";
		int mx = (g->w - (int)strlen(m)) / 2;
		put_str(g, mx, g->h / 2, g->w - mx, m, LAY_RED, LAY_REVERSE | LAY_BOLD);
	}
	put_str(g, 0, g->h - 1, g->w, v->message && v->message[0] ? v->message :
	    "SPACE/ENTER/-> next chapter | up/down select ticket | a approve | k kill switch | q quit",
	    v->message && v->message[0] ? LAY_YELLOW : LAY_DIM, v->message && v->message[0] ? LAY_BOLD : 0);
}

void
lay_grid_row(const struct lay_grid *g, int y, char *buf, size_t len)
{
	size_t n = 0;

	if (len == 0)
		return;
	for (int x = 0; x < g->w && n + 1 < len; x++)
		buf[n++] = g->c[y * g->w + x].ch ? g->c[y * g->w + x].ch : ' ';
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
}

void
lay_grid_print(const struct lay_grid *g, FILE *out)
{
	char *buf = malloc((size_t)g->w + 1);

	if (buf == NULL)
		return;
	for (int y = 0; y < g->h; y++) {
		lay_grid_row(g, y, buf, (size_t)g->w + 1);
		fprintf(out, "%s\n", buf);
	}
	free(buf);
}
