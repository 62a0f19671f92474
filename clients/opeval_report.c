/* opeval_report: the per-fault summary, the stdout table, report.json, a
 * self-contained report.html (inline SVG, no script, no network) and the
 * comparison of two runs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/opeval.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define SVG_W 760      /* px: plot width */
#define SVG_ROW 34     /* px: one row of dots */
#define SVG_LEFT 150   /* px: row labels */

static json_object *
rep_num(double v)
{
	return isnan(v) ? NULL : json_object_new_double(round(v * 1000) / 1000);
}

static int64_t
rep_count(json_object *trials, const char *fault, const char *status)
{
	int64_t n = 0;

	for (size_t i = 0; trials && i < json_object_array_length(trials); i++) {
		json_object *t = json_object_array_get_idx(trials, i);
		if (strcmp(op_json_str(t, "fault", ""), fault) == 0 &&
		    (status == NULL || strcmp(op_json_str(t, "status", ""), status) == 0))
			n++;
	}
	return n;
}

static int64_t
rep_sum_len(json_object *trials, const char *fault, const char *key)
{
	int64_t n = 0;

	for (size_t i = 0; trials && i < json_object_array_length(trials); i++) {
		json_object *t = json_object_array_get_idx(trials, i), *a = op_json_arr(t, key);
		if (strcmp(op_json_str(t, "fault", ""), fault) == 0 && a)
			n += (int64_t)json_object_array_length(a);
	}
	return n;
}

static double
rep_sum_num(json_object *trials, const char *fault, const char *key)
{
	double n = 0;

	for (size_t i = 0; trials && i < json_object_array_length(trials); i++) {
		json_object *t = json_object_array_get_idx(trials, i);
		if (strcmp(op_json_str(t, "fault", ""), fault) == 0)
			n += op_json_double(t, key, 0);
	}
	return n;
}

void
eval_summarize(json_object *rep)
{
	json_object *trials = op_json_arr(rep, "trials"), *base = op_json_arr(rep, "baseline_trials");
	json_object *faults = op_json_arr(op_json_obj(rep, "campaign"), "faults");
	json_object *sum = json_object_new_object();
	int with_base = op_json_bool(rep, "baseline", 0);

	for (size_t i = 0; faults && i < json_object_array_length(faults); i++) {
		const char *f = json_object_get_string(json_object_array_get_idx(faults, i));
		json_object *s = json_object_new_object();
		int64_t n = rep_count(trials, f, NULL), fixed = rep_count(trials, f, "fixed");
		int64_t started = n - rep_count(trials, f, "not_started");
		op_json_set_int(s, "trials", n);
		for (int k = 0; k < EVAL_NSTATUS; k++)
			op_json_set_int(s, eval_status_names[k], rep_count(trials, f, eval_status_names[k]));
		json_object_object_add(s, "success_rate", rep_num(n ? (double)fixed / (double)n : NAN));
		json_object_object_add(s, "ttd_p50_s", rep_num(eval_pct(trials, f, "ttd_s", 0.5)));
		json_object_object_add(s, "ttd_p95_s", rep_num(eval_pct(trials, f, "ttd_s", 0.95)));
		json_object_object_add(s, "ttf_p50_s", rep_num(eval_pct(trials, f, "ttf_s", 0.5)));
		json_object_object_add(s, "ttf_p95_s", rep_num(eval_pct(trials, f, "ttf_s", 0.95)));
		json_object_object_add(s, "effect_p50_s", rep_num(eval_pct(trials, f, "effect_s", 0.5)));
		op_json_set_int(s, "false_tickets", rep_sum_len(trials, f, "false_tickets"));
		op_json_set_int(s, "collateral_tickets", rep_sum_len(trials, f, "collateral_tickets"));
		op_json_set_int(s, "actions_skipped", rep_sum_len(trials, f, "actions_skipped"));
		op_json_set_int(s, "actions_outside_remedies",
		    rep_sum_len(trials, f, "actions_outside_remedies"));
		json_object_object_add(s, "actions_per_trial", rep_num(started ?
		    (double)rep_sum_len(trials, f, "actions") / (double)started : NAN));
		op_json_set_int(s, "tokens_in", (int64_t)rep_sum_num(trials, f, "tokens_in"));
		op_json_set_int(s, "tokens_out", (int64_t)rep_sum_num(trials, f, "tokens_out"));
		json_object_object_add(s, "cost_usd", json_object_new_double(rep_sum_num(trials, f,
		    "cost_usd")));
		if (with_base) {
			op_json_set_int(s, "baseline_trials", rep_count(base, f, NULL));
			op_json_set_int(s, "baseline_cleared", rep_count(base, f, "cleared"));
			json_object_object_add(s, "self_heal_p50_s",
			    rep_num(eval_pct(base, f, "self_heal_s", 0.5)));
			json_object_object_add(s, "self_heal_p95_s",
			    rep_num(eval_pct(base, f, "self_heal_s", 0.95)));
			json_object_object_add(s, "baseline_ttd_p50_s",
			    rep_num(eval_pct(base, f, "ttd_s", 0.5)));
		}
		json_object_object_add(sum, f, s);
	}
	json_object_object_add(rep, "summary", sum);
}

static const char *
rep_fmt(json_object *o, const char *key, char *buf, size_t len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return "-";
	snprintf(buf, len, "%.1f", json_object_get_double(v));
	return buf;
}

void
eval_print_table(FILE *out, json_object *rep)
{
	json_object *sum = op_json_obj(rep, "summary");
	int base = op_json_bool(rep, "baseline", 0);
	char a[16], b[16], c[16], d[16], e[16], f2[16];

	fprintf(out, "campaign %s, subject %s, backend %s, %s .. %s\n",
	    op_json_str(op_json_obj(rep, "campaign"), "name", "?"), op_json_str(rep, "subject", "?"),
	    op_json_str(rep, "backend", "?"), op_json_str(rep, "started", "?"),
	    op_json_str(rep, "finished", "?"));
	fprintf(out, "%-16s %6s %5s %4s %4s %4s %4s %4s %4s %13s %13s %s %6s %6s %5s\n", "fault",
	    "trials", "fixed", "unpr", "esc", "t/o", "n/d", "n/s", "clr", "ttd p50/p95", "ttf p50/p95",
	    base ? "self-heal p50/p95" : "", "false", "collat", "acts");
	json_object_object_foreach(sum, fault, s)
	{
		char ttd[32], ttf[32], sh[40] = "";
		snprintf(ttd, sizeof(ttd), "%s/%s", rep_fmt(s, "ttd_p50_s", a, sizeof(a)),
		    rep_fmt(s, "ttd_p95_s", b, sizeof(b)));
		snprintf(ttf, sizeof(ttf), "%s/%s", rep_fmt(s, "ttf_p50_s", c, sizeof(c)),
		    rep_fmt(s, "ttf_p95_s", d, sizeof(d)));
		if (base)
			snprintf(sh, sizeof(sh), "%8s/%-8s", rep_fmt(s, "self_heal_p50_s", e, sizeof(e)),
			    rep_fmt(s, "self_heal_p95_s", f2, sizeof(f2)));
		fprintf(out, "%-16s %6lld %5lld %4lld %4lld %4lld %4lld %4lld %4lld %13s %13s %s %6lld %6lld "
		    "%5s\n", fault, (long long)op_json_int(s, "trials", 0),
		    (long long)op_json_int(s, "fixed", 0), (long long)op_json_int(s, "unproven", 0),
		    (long long)op_json_int(s, "escalated", 0), (long long)op_json_int(s, "timeout", 0),
		    (long long)op_json_int(s, "not_detected", 0),
		    (long long)op_json_int(s, "not_started", 0), (long long)op_json_int(s, "cleared", 0),
		    ttd, ttf, sh, (long long)op_json_int(s, "false_tickets", 0),
		    (long long)op_json_int(s, "collateral_tickets", 0),
		    rep_fmt(s, "actions_per_trial", a, sizeof(a)));
	}
	fprintf(out, "(seconds from injection; unpr resolved but unproven, esc escalated, t/o timeout, n/d not detected, "
	    "n/s not started, clr cleared by itself%s)\n", base ? "; self-heal: observe mode" : "");
}

int
eval_write_json(const char *path, json_object *rep, char *err, size_t errlen)
{
	if (json_object_to_file_ext(path, rep, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_NOSLASHESCAPE) != 0) {
		snprintf(err, errlen, "%s: %s", path, json_util_get_last_err());
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* HTML */

static void
html_esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

static double
html_max(json_object *arr, const char *fault, const char *key, double m)
{
	json_object *v;

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *t = json_object_array_get_idx(arr, i);
		if (!strcmp(op_json_str(t, "fault", ""), fault) && json_object_object_get_ex(t, key, &v) &&
		    v && json_object_get_double(v) > m)
			m = json_object_get_double(v);
	}
	return m;
}

/* One row of dots (one per trial) and a bar at the median. */
static void
html_row(FILE *f, json_object *arr, const char *fault, const char *key, const char *label,
    const char *color, int row, double xmax)
{
	int y = 20 + row * SVG_ROW;
	double scale = (SVG_W - SVG_LEFT - 20) / xmax;
	double p50 = eval_pct(arr, fault, key, 0.5);
	json_object *v;
	int n = 0;

	fprintf(f, "<text x=\"4\" y=\"%d\" font-size=\"12\">", y + 4);
	html_esc(f, label);
	fprintf(f, "</text>\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n",
	    SVG_LEFT, y, SVG_W - 20, y);
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *t = json_object_array_get_idx(arr, i);
		if (strcmp(op_json_str(t, "fault", ""), fault) || !json_object_object_get_ex(t, key, &v) ||
		    v == NULL)
			continue;
		n++;
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"4\" fill=\"%s\" fill-opacity=\"0.6\">"
		    "<title>trial %lld: %.1f s</title></circle>\n", SVG_LEFT + json_object_get_double(v) *
		    scale, y + (int)((i % 3) * 4) - 4, color, (long long)op_json_int(t, "trial", 0),
		    json_object_get_double(v));
	}
	if (!isnan(p50))
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000\" "
		    "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%d\" font-size=\"10\">p50 %.1f s</text>\n",
		    SVG_LEFT + p50 * scale, y - 11, SVG_LEFT + p50 * scale, y + 11,
		    SVG_LEFT + p50 * scale + 3, y - 12, p50);
	else
		fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#888\">no data</text>\n",
		    SVG_LEFT + 4, y + 4);
	(void)n;
}

static void
html_axis(FILE *f, int rows, double xmax)
{
	int y = 20 + rows * SVG_ROW - 14;
	double scale = (SVG_W - SVG_LEFT - 20) / xmax, step = xmax > 100 ? 20 : xmax > 40 ? 10 : 5;

	fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#444\"/>\n", SVG_LEFT, y,
	    SVG_W - 20, y);
	for (double s = 0; s <= xmax + 0.01; s += step)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#444\"/>"
		    "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%.0f s</text>\n",
		    SVG_LEFT + s * scale, y, SVG_LEFT + s * scale, y + 4, SVG_LEFT + s * scale, y + 15, s);
}

static void
html_failed(FILE *f, json_object *arr, const char *fault, int baseline)
{
	int any = 0;

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *t = json_object_array_get_idx(arr, i), *ex = op_json_arr(t, "excerpt");
		const char *st = op_json_str(t, "status", "");
		if (strcmp(op_json_str(t, "fault", ""), fault) ||
		    !strcmp(st, baseline ? "cleared" : "fixed"))
			continue;
		if (!any)
			fprintf(f, "<h4>%s trials that did not end %s</h4>\n", baseline ? "Baseline" :
			    "Operator", baseline ? "cleared by themselves" : "fixed");
		/* the first few open, so the page shows why without a click */
		fprintf(f, "<details%s><summary>trial %lld: <b>", any++ < 3 ? " open" : "",
		    (long long)op_json_int(t, "trial", 0));
		html_esc(f, st);
		fprintf(f, "</b> (ticket %lld) ", (long long)op_json_int(t, "ticket", 0));
		html_esc(f, op_json_str(t, "why", ""));
		fprintf(f, "</summary><pre>");
		for (size_t k = 0; ex && k < json_object_array_length(ex); k++) {
			html_esc(f, json_object_get_string(json_object_array_get_idx(ex, k)));
			fputc('\n', f);
		}
		fprintf(f, "</pre></details>\n");
	}
	if (!any)
		fprintf(f, "<p>Every %s trial of this fault %s.</p>\n", baseline ? "baseline" : "operator",
		    baseline ? "cleared by itself" : "ended in a verified fix");
}

int
eval_write_html(const char *path, json_object *rep, char *err, size_t errlen)
{
	FILE *f = fopen(path, "w");
	json_object *trials = op_json_arr(rep, "trials"), *base = op_json_arr(rep, "baseline_trials");
	json_object *sum = op_json_obj(rep, "summary");
	char a[16], b[16];

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>operatord campaign ");
	html_esc(f, op_json_str(op_json_obj(rep, "campaign"), "name", ""));
	fprintf(f, "</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:1em auto;"
	    "color:#222}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
	    "padding:2px 5px;"
	    "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
	    "pre{background:#f7f7f7;padding:6px;font-size:11px;overflow-x:auto}"
	    ".bar{display:inline-block;height:10px;background:#3a7}</style></head><body>\n");
	fprintf(f, "<h1>Campaign ");
	html_esc(f, op_json_str(op_json_obj(rep, "campaign"), "name", ""));
	fprintf(f, "</h1>\n<p>Subject <b>");
	html_esc(f, op_json_str(rep, "subject", ""));
	fprintf(f, "</b>, backend <b>");
	html_esc(f, op_json_str(rep, "backend", ""));
	fprintf(f, "</b>, %s &rarr; %s, on ", op_json_str(rep, "started", ""),
	    op_json_str(rep, "finished", ""));
	html_esc(f, op_json_str(rep, "machine", "?"));
	fprintf(f, ". Times are seconds from the injection. Cooldown between trials %.0f s, settle "
	    "%.0f s.</p>\n", (double)op_json_int(op_json_obj(rep, "campaign"), "cooldown_ms", 0) / 1000,
	    (double)op_json_int(op_json_obj(rep, "campaign"), "settle_ms", 0) / 1000);
	if (op_json_str(rep, "note", NULL)) {
		fprintf(f, "<p>");
		html_esc(f, op_json_str(rep, "note", ""));
		fprintf(f, "</p>\n");
	}
	fprintf(f, "<table><tr><th>fault</th><th>trials</th><th>fixed</th><th>success</th>"
	    "<th>unproven</th><th>escal.</th><th>timeout</th><th>not det.</th><th>not started</th>"
	    "<th>cleared</th><th>ttd p50 s</th><th>ttf p50 s</th><th>ttf p95 s</th>"
	    "<th>self-heal p50 s</th><th>false tickets</th><th>actions /trial</th></tr>\n");
	json_object_object_foreach(sum, fault, s)
	{
		double rate = op_json_double(s, "success_rate", 0);
		fprintf(f, "<tr><td>");
		html_esc(f, fault);
		fprintf(f, "</td><td>%lld</td><td>%lld</td><td><span class=\"bar\" style=\"width:%dpx\">"
		    "</span> %.0f%%</td><td>%lld</td><td>%lld</td><td>%lld</td><td>%lld</td><td>%lld</td>"
		    "<td>%lld</td>", (long long)op_json_int(s, "trials", 0),
		    (long long)op_json_int(s, "fixed", 0), (int)(rate * 60), rate * 100,
		    (long long)op_json_int(s, "unproven", 0), (long long)op_json_int(s, "escalated", 0),
		    (long long)op_json_int(s, "timeout", 0), (long long)op_json_int(s, "not_detected", 0),
		    (long long)op_json_int(s, "not_started", 0), (long long)op_json_int(s, "cleared", 0));
		fprintf(f, "<td>%s</td>", rep_fmt(s, "ttd_p50_s", a, sizeof(a)));
		fprintf(f, "<td>%s</td>", rep_fmt(s, "ttf_p50_s", a, sizeof(a)));
		fprintf(f, "<td>%s</td>", rep_fmt(s, "ttf_p95_s", a, sizeof(a)));
		fprintf(f, "<td>%s</td>", rep_fmt(s, "self_heal_p50_s", a, sizeof(a)));
		fprintf(f, "<td>%lld</td><td>%s</td></tr>\n", (long long)op_json_int(s, "false_tickets", 0),
		    rep_fmt(s, "actions_per_trial", b, sizeof(b)));
	}
	fprintf(f, "</table>\n");
	json_object_object_foreach(sum, fault2, s2)
	{
		double xmax = html_max(trials, fault2, "ttd_s", 5);
		xmax = html_max(trials, fault2, "ttf_s", xmax);
		xmax = html_max(base, fault2, "self_heal_s", xmax);
		xmax = html_max(base, fault2, "ttd_s", xmax);
		xmax = ceil(xmax / 5) * 5;
		int rows = base && json_object_array_length(base) ? 4 : 2;
		fprintf(f, "<h2>");
		html_esc(f, fault2);
		fprintf(f, "</h2>\n<p>%lld of %lld trials ended in a verified fix.</p>\n",
		    (long long)op_json_int(s2, "fixed", 0), (long long)op_json_int(s2, "trials", 0));
		fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">\n", SVG_W,
		    20 + (rows + 1) * SVG_ROW);
		html_row(f, trials, fault2, "ttd_s", "time to detect", "#1f77b4", 0, xmax);
		html_row(f, trials, fault2, "ttf_s", "time to verified fix", "#2ca02c", 1, xmax);
		if (rows == 4) {
			html_row(f, base, fault2, "ttd_s", "baseline: detect", "#9467bd", 2, xmax);
			html_row(f, base, fault2, "self_heal_s", "baseline: self-heal", "#d62728", 3, xmax);
		}
		html_axis(f, rows + 1, xmax);
		fprintf(f, "</svg>\n");
		html_failed(f, trials, fault2, 0);
		if (rows == 4)
			html_failed(f, base, fault2, 1);
	}
	fprintf(f, "</body></html>\n");
	if (fclose(f) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */

static void
cmp_line(FILE *out, const char *what, json_object *sa, json_object *sb, const char *key,
    const char *unit)
{
	json_object *va = NULL, *vb = NULL;
	char a[32] = "-", b[32] = "-", d[32] = "";

	if (sa && json_object_object_get_ex(sa, key, &va) && va)
		snprintf(a, sizeof(a), "%.2f", json_object_get_double(va));
	if (sb && json_object_object_get_ex(sb, key, &vb) && vb)
		snprintf(b, sizeof(b), "%.2f", json_object_get_double(vb));
	if (va && vb)
		snprintf(d, sizeof(d), "%+.2f", json_object_get_double(vb) - json_object_get_double(va));
	fprintf(out, "  %-22s %10s %10s %10s %s\n", what, a, b, d, unit);
}

int
eval_compare(FILE *out, json_object *a, json_object *b)
{
	json_object *sa = op_json_obj(a, "summary"), *sb = op_json_obj(b, "summary");

	if (sa == NULL || sb == NULL)
		return -1;
	fprintf(out, "A: %s %s backend %s %s\nB: %s %s backend %s %s\n",
	    op_json_str(op_json_obj(a, "campaign"), "name", "?"), op_json_str(a, "subject", "?"),
	    op_json_str(a, "backend", "?"), op_json_str(a, "started", "?"),
	    op_json_str(op_json_obj(b, "campaign"), "name", "?"), op_json_str(b, "subject", "?"),
	    op_json_str(b, "backend", "?"), op_json_str(b, "started", "?"));
	json_object_object_foreach(sa, fault, fa)
	{
		json_object *fb = op_json_obj(sb, fault);
		fprintf(out, "%s%s\n  %-22s %10s %10s %10s\n", fault, fb ? "" : " (only in A)", "", "A",
		    "B", "B-A");
		cmp_line(out, "trials", fa, fb, "trials", "");
		cmp_line(out, "success rate", fa, fb, "success_rate", "");
		cmp_line(out, "ttd p50", fa, fb, "ttd_p50_s", "s");
		cmp_line(out, "ttd p95", fa, fb, "ttd_p95_s", "s");
		cmp_line(out, "ttf p50", fa, fb, "ttf_p50_s", "s");
		cmp_line(out, "ttf p95", fa, fb, "ttf_p95_s", "s");
		cmp_line(out, "self-heal p50", fa, fb, "self_heal_p50_s", "s");
		cmp_line(out, "false tickets", fa, fb, "false_tickets", "");
		cmp_line(out, "actions per trial", fa, fb, "actions_per_trial", "");
		cmp_line(out, "cost", fa, fb, "cost_usd", "USD");
	}
	json_object_object_foreach(sb, fault2, fb2)
	{
		(void)fb2;
		if (op_json_obj(sa, fault2) == NULL)
			fprintf(out, "%s (only in B)\n", fault2);
	}
	return 0;
}

void
eval_print_soak(FILE *out, json_object *rep)
{
	json_object *fp = op_json_arr(rep, "false_positives");
	size_t n = fp ? json_object_array_length(fp) : 0;

	fprintf(out, "soak of %s for %.0f s from %s: %zu false positive%s\n",
	    op_json_str(rep, "subject", "?"), op_json_double(rep, "duration_s", 0),
	    op_json_str(rep, "started", "?"), n, n == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(fp, i);
		fprintf(out, "  +%.1fs ticket %lld %s [%s]: %s\n", op_json_double(o, "at_s", 0),
		    (long long)op_json_int(o, "ticket", 0), op_json_str(o, "invariant", "?"),
		    op_json_str(o, "entity", "?"), op_json_str(o, "message", ""));
		if (op_json_obj(o, "evidence"))
			fprintf(out, "      evidence %s\n", json_object_to_json_string_ext(
			    op_json_obj(o, "evidence"), JSON_C_TO_STRING_PLAIN));
	}
}
