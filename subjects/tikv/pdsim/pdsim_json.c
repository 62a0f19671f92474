/* pdsim_json: JSON bytes as Go's encoding/json writes them (MarshalIndent
 * with two spaces for PD's rd.JSON, compact for easyjson region output), and
 * Go's text forms of sizes, durations, times and floats. */
#include "subjects/tikv/pdsim/pdsim.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ----------------------------------------------------------------- sbuf */

static int
sb_grow(struct sbuf *b, size_t need)
{
	if (b->oom)
		return -1;
	if (b->len + need + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + need + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (sb_grow(b, n) != 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
sb_puts(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

void
sb_putc(struct sbuf *b, char ch)
{
	if (sb_grow(b, 1) != 0)
		return;
	b->p[b->len++] = ch;
	b->p[b->len] = '\0';
}

void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char tmp[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		sb_add(b, tmp, (size_t)n);
		return;
	}
	if (sb_grow(b, (size_t)n) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Hand-rolled because snprintf dominates rendering 100k regions. */
void
sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	sb_add(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void
sb_i64(struct sbuf *b, int64_t v)
{
	if (v < 0) {
		sb_putc(b, '-');
		sb_u64(b, (uint64_t)0 - (uint64_t)v);
	} else {
		sb_u64(b, (uint64_t)v);
	}
}

void
sb_free(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void
sb_json_str(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	sb_putc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char ch = *p;
		switch (ch) {
		case '"': sb_add(b, "\\\"", 2); break;
		case '\\': sb_add(b, "\\\\", 2); break;
		case '\n': sb_add(b, "\\n", 2); break;
		case '\r': sb_add(b, "\\r", 2); break;
		case '\t': sb_add(b, "\\t", 2); break;
		default:
			/* Go escapes control bytes and, with HTML escaping on, < > &. */
			if (ch < 0x20 || ch == '<' || ch == '>' || ch == '&') {
				char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
				sb_add(b, e, 6);
			} else {
				sb_putc(b, (char)ch);
			}
		}
	}
	sb_putc(b, '"');
}

/* ------------------------------------------------------------------ jw */

void
jw_init(struct jw *w, struct sbuf *b, int pretty)
{
	memset(w, 0, sizeof(*w));
	w->b = b;
	w->pretty = pretty;
}

static void
jw_indent(struct jw *w, int depth)
{
	static const char sp[] = "                                ";

	sb_putc(w->b, '\n');
	for (int i = 0; i < depth; i++)
		sb_add(w->b, sp, 2);
}

/* Separator and indentation before a value or a key. */
static void
jw_pre(struct jw *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	if (w->depth > 0) {
		if (w->count[w->depth]++ > 0)
			sb_putc(w->b, ',');
		if (w->pretty)
			jw_indent(w, w->depth);
	}
}

static void
jw_open(struct jw *w, char ch)
{
	jw_pre(w);
	sb_putc(w->b, ch);
	if (w->depth + 1 < JW_MAX_DEPTH)
		w->depth++;
	w->count[w->depth] = 0;
}

static void
jw_close(struct jw *w, char ch)
{
	/* Go writes an empty container as {} or [] on one line. */
	if (w->pretty && w->count[w->depth] > 0)
		jw_indent(w, w->depth - 1);
	sb_putc(w->b, ch);
	if (w->depth > 0)
		w->depth--;
}

void jw_obj(struct jw *w) { jw_open(w, '{'); }
void jw_obj_end(struct jw *w) { jw_close(w, '}'); }
void jw_arr(struct jw *w) { jw_open(w, '['); }
void jw_arr_end(struct jw *w) { jw_close(w, ']'); }

void
jw_key(struct jw *w, const char *k)
{
	jw_pre(w);
	sb_json_str(w->b, k);
	sb_add(w->b, w->pretty ? ": " : ":", w->pretty ? 2 : 1);
	w->after_key = 1;
}

void
jw_str(struct jw *w, const char *s)
{
	jw_pre(w);
	sb_json_str(w->b, s);
}

void
jw_u64(struct jw *w, uint64_t v)
{
	jw_pre(w);
	sb_u64(w->b, v);
}

void
jw_i64(struct jw *w, int64_t v)
{
	jw_pre(w);
	sb_i64(w->b, v);
}

void
jw_bool(struct jw *w, int v)
{
	jw_pre(w);
	sb_puts(w->b, v ? "true" : "false");
}

void
jw_null(struct jw *w)
{
	jw_pre(w);
	sb_puts(w->b, "null");
}

void
jw_double(struct jw *w, double v)
{
	char tmp[64];

	go_float(v, tmp, sizeof(tmp));
	jw_pre(w);
	sb_puts(w->b, tmp);
}

void
jw_jsonc(struct jw *w, json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null: jw_null(w); break;
	case json_type_boolean: jw_bool(w, json_object_get_boolean(o)); break;
	case json_type_double: jw_double(w, json_object_get_double(o)); break;
	case json_type_int:
		if (json_object_get_int64(o) < 0)
			jw_i64(w, json_object_get_int64(o));
		else
			jw_u64(w, json_object_get_uint64(o));
		break;
	case json_type_string: jw_str(w, json_object_get_string(o)); break;
	case json_type_array:
		jw_arr(w);
		for (size_t i = 0; i < json_object_array_length(o); i++)
			jw_jsonc(w, json_object_array_get_idx(o, i));
		jw_arr_end(w);
		break;
	case json_type_object: {
		jw_obj(w);
		json_object_object_foreach(o, k, v) {
			jw_key(w, k);
			jw_jsonc(w, v);
		}
		jw_obj_end(w);
		break;
	}
	}
}

/* ---------------------------------------------------------- Go formats */

void
go_bytesize(uint64_t bytes, char *out, size_t len)
{
	/* docker/go-units BytesSize: "%.4g%s", base 1024. */
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	size_t i = 0;

	while (v >= 1024 && i + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		i++;
	}
	snprintf(out, len, "%.4g%s", v, units[i]);
}

/* Writes frac (< 10^digits) as ".ddd" with trailing zeros removed. */
static void
frac_digits(char *out, size_t len, uint64_t frac, int digits)
{
	char tmp[24];
	int n;

	out[0] = '\0';
	if (frac == 0)
		return;
	snprintf(tmp, sizeof(tmp), "%0*" PRIu64, digits, frac);
	n = (int)strlen(tmp);
	while (n > 0 && tmp[n - 1] == '0')
		n--;
	tmp[n] = '\0';
	snprintf(out, len, ".%s", tmp);
}

void
go_duration(int64_t ns, char *out, size_t len)
{
	/* time.Duration.String(). */
	uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
	const char *sign = ns < 0 ? "-" : "";
	char frac[24];

	if (u == 0) {
		snprintf(out, len, "0s");
	} else if (u < 1000) {
		snprintf(out, len, "%s%" PRIu64 "ns", sign, u);
	} else if (u < 1000000) {
		frac_digits(frac, sizeof(frac), u % 1000, 3);
		snprintf(out, len, "%s%" PRIu64 "%s\xc2\xb5s", sign, u / 1000, frac);
	} else if (u < 1000000000) {
		frac_digits(frac, sizeof(frac), u % 1000000, 6);
		snprintf(out, len, "%s%" PRIu64 "%sms", sign, u / 1000000, frac);
	} else {
		uint64_t s = u / 1000000000, h = s / 3600, m = (s / 60) % 60;
		char hm[48] = "";
		frac_digits(frac, sizeof(frac), u % 1000000000, 9);
		if (h > 0)
			snprintf(hm, sizeof(hm), "%" PRIu64 "h%" PRIu64 "m", h, m);
		else if (m > 0)
			snprintf(hm, sizeof(hm), "%" PRIu64 "m", m);
		snprintf(out, len, "%s%s%" PRIu64 "%ss", sign, hm, s % 60, frac);
	}
}

void
go_rfc3339nano(int64_t wall_ns, char *out, size_t len)
{
	time_t secs = (time_t)(wall_ns / 1000000000);
	struct tm tm;
	char frac[24];

	gmtime_r(&secs, &tm);
	frac_digits(frac, sizeof(frac), (uint64_t)(wall_ns % 1000000000), 9);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void
go_time_string(int64_t wall_ns, char *out, size_t len)
{
	time_t secs = (time_t)(wall_ns / 1000000000);
	struct tm tm;
	char frac[24];

	gmtime_r(&secs, &tm);
	frac_digits(frac, sizeof(frac), (uint64_t)(wall_ns % 1000000000), 9);
	snprintf(out, len, "%04d-%02d-%02d %02d:%02d:%02d%s +0000 UTC", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void
go_float(double v, char *out, size_t len)
{
	/* Go: shortest text that round-trips; exponent only below 1e-6 or from
	 * 1e21 on, and then as "1e+21"/"1e-07". */
	double a = fabs(v);

	if (!isfinite(v)) {
		snprintf(out, len, "0"); /* Go refuses; PD never sends these */
		return;
	}
	if (v == floor(v) && a < 1e21) {
		snprintf(out, len, "%.0f", v);
		return;
	}
	char tmp[64];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	if (strchr(tmp, 'e') != NULL && a >= 1e-6 && a < 1e21) {
		/* %g chose an exponent where Go does not: write it out in full. */
		for (int prec = 1; prec <= 40; prec++) {
			snprintf(tmp, sizeof(tmp), "%.*f", prec, v);
			if (strtod(tmp, NULL) == v)
				break;
		}
	}
	snprintf(out, len, "%s", tmp);
}

json_object *
go_json_parse(const char *buf, size_t len, char *msg, size_t msglen, long *offset)
{
	json_tokener *tok;
	json_object *o;
	enum json_tokener_error jerr;
	size_t end;

	*offset = 0;
	msg[0] = '\0';
	if (len == 0 || len > (size_t)INT32_MAX || (tok = json_tokener_new()) == NULL) {
		snprintf(msg, msglen, "unexpected end of JSON input");
		return NULL;
	}
	o = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue) {
		json_object_put(o);
		snprintf(msg, msglen, "unexpected end of JSON input");
		*offset = (long)len;
		return NULL;
	}
	if (jerr == json_tokener_success) {
		while (end < len && isspace((unsigned char)buf[end]))
			end++;
		if (end >= len)
			return o != NULL ? o : json_object_new_object(); /* null decodes to nil map */
		json_object_put(o);
		snprintf(msg, msglen, "invalid character '%c' after top-level value",
		    isprint((unsigned char)buf[end]) ? buf[end] : '?');
		*offset = (long)end + 1;
		return NULL;
	}
	json_object_put(o);
	if (end >= len)
		end = len - 1;
	/* Go's SyntaxError.Offset counts the bad byte as read. */
	unsigned char ch = (unsigned char)buf[end];
	if (isprint(ch))
		snprintf(msg, msglen, "invalid character '%c' looking for beginning of value", ch);
	else
		snprintf(msg, msglen, "invalid character '\\x%02x' looking for beginning of value",
		    ch);
	*offset = (long)end + 1;
	return NULL;
}

const char *
go_json_type(json_object *o)
{
	/* encoding/json's names in UnmarshalTypeError messages. */
	switch (json_object_get_type(o)) {
	case json_type_int:
	case json_type_double: return "number";
	case json_type_boolean: return "bool";
	case json_type_string: return "string";
	case json_type_array: return "array";
	case json_type_object: return "object";
	default: return "null";
	}
}
