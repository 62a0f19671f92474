/* pd_parse: pure decoding of PD v1 answers (no I/O), tested on the fixtures.
 * See pdclient.h and shared/reference/pd-api.md. Endpoints and requests live
 * in pdclient.c. */
#include "subjects/tikv/pdclient.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/jsonutil.h"
#include "common/util.h"

#define PD_ERR_SNIPPET 200     /* bytes of a garbage body quoted in a message */

/* ---------------------------------------------------------------- errors */

/* Copies s into dst, replacing control and non-ASCII bytes so that garbage
 * from the wire can never corrupt a log line; trailing whitespace is cut. */
static void
clean_copy(char *dst, size_t size, const char *s, size_t len)
{
	size_t j = 0;

	for (size_t i = 0; i < len && j + 1 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : (c == '\n' || c == '\t' ? ' ' : '?');
	}
	while (j > 0 && dst[j - 1] == ' ')
		j--;
	dst[j] = '\0';
}

void
pd_err_set(struct pd_err *e, int status, const char *kind, const char *fmt, ...)
{
	va_list ap;
	char tmp[PD_ERR_MSG_LEN];

	if (e == NULL)
		return;
	memset(e, 0, sizeof(*e));
	e->http_status = status;
	op_strlcpy(e->kind, kind, sizeof(e->kind));
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	clean_copy(e->message, sizeof(e->message), tmp, strlen(tmp));
}

void
pd_err_clear(struct pd_err *e)
{
	if (e != NULL)
		memset(e, 0, sizeof(*e));
}

/* Extracts "PD:core:ErrStoreNotFound" from "[PD:core:ErrStoreNotFound]store 7 ...". */
static void
extract_rfc_code(const char *msg, char *code, size_t size)
{
	const char *end;

	code[0] = '\0';
	if (msg[0] != '[' || (end = strchr(msg, ']')) == NULL || end - msg - 1 <= 0)
		return;
	size_t n = (size_t)(end - msg - 1);
	if (n >= size)
		n = size - 1;
	memcpy(code, msg + 1, n);
	code[n] = '\0';
}

static int
looks_not_found(long status, const char *code, const char *msg)
{
	return status == 404 || strstr(code, "NotFound") != NULL ||
	    strstr(msg, "not found") != NULL;
}

/* Whether the n bytes at s (not NUL-terminated) are all JSON whitespace. */
static int
blank_n(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strchr(" \r\n\t", s[i]) == NULL || s[i] == '\0')
			return 0;
	return 1;
}

void
pd_parse_error(const char *what, long status, const char *buf, size_t len, struct pd_err *err)
{
	char detail[PD_ERR_MSG_LEN] = "";
	char code[PD_SHORT_LEN] = "";
	char jerr[128] = "";
	json_object *o = NULL;

	if (err == NULL)
		return;
	if (buf == NULL)
		len = 0;
	/* Plain-text bodies (forms d and e) are not JSON; try JSON only when it
	 * could be one, so that "404 page not found" is not a "parse" error. */
	if (len > 0)
		o = op_json_parse(buf, len, jerr, sizeof(jerr));
	if (len == 0) {
		snprintf(detail, sizeof(detail), "empty body");
	} else if (o == NULL && len >= 4 && memcmp(buf, "null", 4) == 0 &&
	    blank_n(buf + 4, len - 4)) {
		/* evict-leader scheduler delete answers null with the status. */
		snprintf(detail, sizeof(detail), "null body");
	} else if (o == NULL) {
		/* Form d/e: text/plain "404 page not found\n" or "[PD:...]...\n". */
		clean_copy(detail, sizeof(detail), buf, len > PD_ERR_SNIPPET ? PD_ERR_SNIPPET : len);
		extract_rfc_code(detail, code, sizeof(code));
	} else if (json_object_is_type(o, json_type_string)) {
		/* Forms a and b: a JSON string, with or without "[PD:...]". */
		const char *s = json_object_get_string(o);
		clean_copy(detail, sizeof(detail), s, strlen(s));
		extract_rfc_code(detail, code, sizeof(code));
	} else if (json_object_is_type(o, json_type_object)) {
		/* Form c: errcode {"code":"input","msg":"...","data":{...}}. */
		const char *c = op_json_str(o, "code", NULL);
		const char *m = op_json_str(o, "msg", NULL);
		if (m == NULL)
			m = op_json_str(o, "message", NULL);
		if (m == NULL)
			m = op_json_str(o, "error", NULL);
		if (c != NULL)
			op_strlcpy(code, c, sizeof(code));
		if (m != NULL && c != NULL)
			snprintf(detail, sizeof(detail), "%s: %s", c, m);
		else if (m != NULL)
			snprintf(detail, sizeof(detail), "%s", m);
		else {
			const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
			snprintf(detail, sizeof(detail), "%.*s", PD_ERR_SNIPPET, t);
		}
	} else {
		const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		snprintf(detail, sizeof(detail), "%.*s", PD_ERR_SNIPPET, t);
	}
	json_object_put(o);
	pd_err_set(err, (int)status, PD_ERR_HTTP, "%s: HTTP %ld: %s", what, status, detail);
	op_strlcpy(err->code, code, sizeof(err->code));
	err->not_found = looks_not_found(status, code, detail);
}

/* ---------------------------------------------------------------- scalars */

int
pd_parse_bytesize(const char *s, uint64_t *bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	char *end;
	double v, mul = 1;

	if (s == NULL)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || v < 0)
		return -1;
	while (*end == ' ') /* very old PD wrote "937 GiB" */
		end++;
	size_t i;
	for (i = 0; i < OP_ARRAY_LEN(units); i++) {
		if (strcmp(end, units[i]) == 0)
			break;
		mul *= 1024;
	}
	if (i == OP_ARRAY_LEN(units)) {
		/* Accept decimal-looking "KB"/"k" forms as base-1024 too (go-units
		 * RAMInBytes does so); anything else is malformed. */
		static const char *const alt[] = {"", "KB", "MB", "GB", "TB", "PB", "EB"};
		mul = 1;
		for (i = 0; i < OP_ARRAY_LEN(alt); i++) {
			if (strcasecmp(end, alt[i]) == 0)
				break;
			mul *= 1024;
		}
		if (i == OP_ARRAY_LEN(alt))
			return -1;
	}
	v *= mul;
	if (v >= 18446744073709551615.0)
		return -1;
	*bytes = (uint64_t)(v + 0.5);
	return 0;
}

int
pd_parse_go_duration_ns(const char *s, int64_t *ns)
{
	/* Longer unit names first so "ms" is not read as "m". */
	static const struct {
		const char *name;
		double ns;
	} units[] = {{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
	    {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
	double total = 0;
	int neg = 0;

	if (s == NULL || *s == '\0')
		return -1;
	if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	if (strcmp(s, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (*s == '\0')
		return -1;
	while (*s != '\0') {
		char *end;
		if (!isdigit((unsigned char)*s) && *s != '.')
			return -1;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || errno != 0)
			return -1;
		s = end;
		size_t i;
		for (i = 0; i < OP_ARRAY_LEN(units); i++) {
			size_t n = strlen(units[i].name);
			if (strncmp(s, units[i].name, n) == 0 &&
			    !(units[i].name[0] == 'm' && n == 1 && s[1] == 's')) {
				total += v * units[i].ns;
				s += n;
				break;
			}
		}
		if (i == OP_ARRAY_LEN(units))
			return -1; /* Go requires a unit after every number */
	}
	if (total > 9.2e18)
		return -1;
	*ns = (int64_t)(total + 0.5) * (neg ? -1 : 1);
	return 0;
}

/* ----------------------------------------------------- strict JSON access */

/* Parses the body; a body that is not JSON, or not of the wanted type, is a
 * parse error. want == json_type_null accepts anything. */
static json_object *
parse_body_n(const char *what, const char *buf, size_t len, json_type want, struct pd_err *err,
    int *is_null)
{
	char jerr[128] = "";
	json_object *o;

	pd_err_clear(err);
	o = op_json_parse(buf, len, jerr, sizeof(jerr));
	if (o == NULL) {
		char snip[64];
		clean_copy(snip, sizeof(snip), buf ? buf : "", buf ? (len > 40 ? 40 : len) : 0);
		/* op_json_parse never returns NULL for a valid literal other than
		 * "null", which it also returns as NULL; tell the two apart. */
		if (buf != NULL && len >= 4 && memcmp(buf, "null", 4) == 0 &&
		    blank_n(buf + 4, len - 4)) {
			if (want == json_type_null) {
				*is_null = 1;
				return NULL;
			}
			pd_err_set(err, 200, PD_ERR_PARSE, "%s: expected %s, got null", what,
			    json_type_to_name(want));
			return NULL;
		}
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: %s (body starts \"%s\")", what, jerr, snip);
		return NULL;
	}
	if (want != json_type_null && !json_object_is_type(o, want)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: expected a JSON %s, got %s", what,
		    json_type_to_name(want), json_type_to_name(json_object_get_type(o)));
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *
parse_body(const char *what, const char *buf, size_t len, json_type want, struct pd_err *err)
{
	int is_null = 0;

	return parse_body_n(what, buf, len, want, err, &is_null);
}

/* Field access with type checks: a missing optional field keeps the default,
 * a present field of the wrong type is a parse error (PD never sends one, so
 * it means we are not talking to PD, or the body was mangled). */
struct jctx {
	const char *what;   /* "stores[2].store" */
	struct pd_err *err;
	int failed;
};

static json_object *
jget(struct jctx *c, json_object *o, const char *key, json_type want, int required)
{
	json_object *v;

	if (c->failed)
		return NULL;
	if (o == NULL || !json_object_object_get_ex(o, key, &v) || v == NULL) {
		if (required) {
			pd_err_set(c->err, 200, PD_ERR_PARSE, "%s: missing field \"%s\"", c->what, key);
			c->failed = 1;
		}
		return NULL;
	}
	json_type t = json_object_get_type(v);
	int ok = t == want || (want == json_type_double && t == json_type_int);
	if (!ok) {
		pd_err_set(c->err, 200, PD_ERR_PARSE, "%s: field \"%s\" should be %s, got %s",
		    c->what, key, json_type_to_name(want), json_type_to_name(t));
		c->failed = 1;
		return NULL;
	}
	return v;
}

/* uint64 from json-c's integer, which keeps values above INT64_MAX exactly.
 * json-c saturates overflowing tokens at UINT64_MAX, so that value is taken as
 * out of range: PD never sends it. */
static uint64_t
jget_u64(struct jctx *c, json_object *o, const char *key, int required, uint64_t def)
{
	json_object *v = jget(c, o, key, json_type_int, required);

	if (v == NULL)
		return def;
	if (json_object_get_int64(v) < 0 || json_object_get_uint64(v) == UINT64_MAX) {
		pd_err_set(c->err, 200, PD_ERR_PARSE, "%s: field \"%s\" out of uint64 range",
		    c->what, key);
		c->failed = 1;
		return def;
	}
	return json_object_get_uint64(v);
}

static int64_t
jget_i64(struct jctx *c, json_object *o, const char *key, int required, int64_t def)
{
	json_object *v = jget(c, o, key, json_type_int, required);

	return v ? json_object_get_int64(v) : def;
}

static double
jget_dbl(struct jctx *c, json_object *o, const char *key, double def)
{
	json_object *v = jget(c, o, key, json_type_double, 0);

	return v ? json_object_get_double(v) : def;
}

static int
jget_bool(struct jctx *c, json_object *o, const char *key, int def)
{
	json_object *v = jget(c, o, key, json_type_boolean, 0);

	return v ? json_object_get_boolean(v) : def;
}

static void
jget_str(struct jctx *c, json_object *o, const char *key, int required, char *dst,
    size_t size, const char *def)
{
	json_object *v = jget(c, o, key, json_type_string, required);

	op_strlcpy(dst, v ? json_object_get_string(v) : def, size);
}

static char *
jget_strdup(struct jctx *c, json_object *o, const char *key)
{
	json_object *v = jget(c, o, key, json_type_string, 0);

	return strdup(v ? json_object_get_string(v) : "");
}

static void
jget_bytesize(struct jctx *c, json_object *o, const char *key, uint64_t *out)
{
	json_object *v = jget(c, o, key, json_type_string, 0);

	if (v == NULL)
		return;
	if (pd_parse_bytesize(json_object_get_string(v), out) != 0) {
		pd_err_set(c->err, 200, PD_ERR_PARSE, "%s: field \"%s\": bad byte size \"%.40s\"",
		    c->what, key, json_object_get_string(v));
		c->failed = 1;
	}
}

static size_t
jget_strarr(struct jctx *c, json_object *o, const char *key, char dst[][PD_URL_LEN],
    size_t max)
{
	json_object *a = jget(c, o, key, json_type_array, 0);
	size_t n = 0;

	if (a == NULL)
		return 0;
	for (size_t i = 0; i < json_object_array_length(a) && n < max; i++) {
		json_object *e = json_object_array_get_idx(a, i);
		if (json_object_is_type(e, json_type_string))
			op_strlcpy(dst[n++], json_object_get_string(e), PD_URL_LEN);
	}
	return n;
}

/* ------------------------------------------------- the generic list decoder */

/* Decodes one element into elem (zeroed). Returns 0, 1 to skip the element
 * (it is not counted), or -1 with *err set. */
typedef int (*pd_elem_fn)(json_object *o, const char *what, void *elem, struct pd_err *err);

/* Every JSON list PD answers goes through here: arr's elements decoded by fn
 * into a calloc'd array of elem_size bytes (*v, *count). When the answer
 * carries a "count" field (count >= 0), it must match the list. On failure
 * *v holds the *count elements decoded so far, for the caller's free. */
static int
pd_list_decode(json_object *arr, const char *name, int64_t count, size_t elem_size,
    pd_elem_fn fn, void **v, size_t *n_out, struct pd_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	char what[64];

	*v = NULL;
	*n_out = 0;
	if (count >= 0 && (size_t)count != n) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: count %" PRId64 " but %zu listed", name,
		    count, n);
		return -1;
	}
	if (n == 0)
		return 0;
	if ((*v = calloc(n, elem_size)) == NULL) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: out of memory", name);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "%s[%zu]", name, i);
		int rc = fn(json_object_array_get_idx(arr, i), what,
		    (char *)*v + *n_out * elem_size, err);
		if (rc < 0)
			return -1;
		if (rc == 0)
			(*n_out)++;
		else
			memset((char *)*v + *n_out * elem_size, 0, elem_size);
	}
	return 0;
}

/* ---------------------------------------------------------------- stores */

static const char *
store_state_name(int state)
{
	switch (state) {
	case PD_STORE_UP: return "Up";
	case PD_STORE_OFFLINE: return "Offline";
	case PD_STORE_TOMBSTONE: return "Tombstone";
	default: return "Unknown";
	}
}

static int
store_from_json(json_object *info, const char *what, struct pd_store *s, struct pd_err *err)
{
	struct jctx c = {.what = what, .err = err};
	char sub[96];

	memset(s, 0, sizeof(*s));
	if (!json_object_is_type(info, json_type_object)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: expected an object", what);
		return -1;
	}
	json_object *meta = jget(&c, info, "store", json_type_object, 1);
	json_object *st = jget(&c, info, "status", json_type_object, 0);
	if (c.failed)
		return -1;
	snprintf(sub, sizeof(sub), "%s.store", what);
	c.what = sub;
	s->id = jget_u64(&c, meta, "id", 1, 0);
	jget_str(&c, meta, "address", 0, s->address, sizeof(s->address), "");
	jget_str(&c, meta, "status_address", 0, s->status_address, sizeof(s->status_address), "");
	jget_str(&c, meta, "version", 0, s->version, sizeof(s->version), "");
	/* omitempty drops state 0 (Up) and node_state 0 (Preparing). */
	s->state = (int)jget_i64(&c, meta, "state", 0, PD_STORE_UP);
	s->node_state = (int)jget_i64(&c, meta, "node_state", 0, 0);
	jget_str(&c, meta, "state_name", 0, s->state_name, sizeof(s->state_name),
	    store_state_name(s->state));
	s->physically_destroyed = jget_bool(&c, meta, "physically_destroyed", 0);
	s->start_timestamp = jget_i64(&c, meta, "start_timestamp", 0, 0);
	s->last_heartbeat = jget_i64(&c, meta, "last_heartbeat", 0, 0);
	json_object *labels = jget(&c, meta, "labels", json_type_array, 0);
	for (size_t i = 0; labels && i < json_object_array_length(labels) &&
	     s->n_labels < PD_MAX_LABELS; i++) {
		json_object *l = json_object_array_get_idx(labels, i);
		struct pd_label *pl = &s->labels[s->n_labels++];
		jget_str(&c, l, "key", 0, pl->key, sizeof(pl->key), "");
		jget_str(&c, l, "value", 0, pl->value, sizeof(pl->value), "");
	}
	if (st != NULL && !c.failed) {
		snprintf(sub, sizeof(sub), "%s.status", what);
		jget_bytesize(&c, st, "capacity", &s->capacity);
		jget_bytesize(&c, st, "available", &s->available);
		jget_bytesize(&c, st, "used_size", &s->used_size);
		s->leader_count = jget_i64(&c, st, "leader_count", 0, 0);
		s->region_count = jget_i64(&c, st, "region_count", 0, 0);
		s->pending_peer_count = jget_i64(&c, st, "pending_peer_count", 0, 0);
		s->learner_count = jget_i64(&c, st, "learner_count", 0, 0);
		s->leader_size = jget_i64(&c, st, "leader_size", 0, 0);
		s->region_size = jget_i64(&c, st, "region_size", 0, 0);
		s->leader_weight = jget_dbl(&c, st, "leader_weight", 1);
		s->region_weight = jget_dbl(&c, st, "region_weight", 1);
		json_object *up = jget(&c, st, "uptime", json_type_string, 0);
		int64_t ns;
		if (up != NULL) {
			if (pd_parse_go_duration_ns(json_object_get_string(up), &ns) != 0) {
				pd_err_set(err, 200, PD_ERR_PARSE, "%s: bad uptime \"%.40s\"", sub,
				    json_object_get_string(up));
				return -1;
			}
			s->uptime_ms = ns / 1000000;
		}
	}
	return c.failed ? -1 : 0;
}

int
pd_parse_store(const char *buf, size_t len, struct pd_store *out, struct pd_err *err)
{
	json_object *o = parse_body("store", buf, len, json_type_object, err);
	int rc;

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	rc = store_from_json(o, "store", out, err);
	json_object_put(o);
	if (rc == 0)
		pd_err_clear(err);
	return rc;
}

static int
store_elem(json_object *o, const char *what, void *elem, struct pd_err *err)
{
	return store_from_json(o, what, elem, err);
}

/* A body of the form {"count": N, "NAME": [...]} (stores, regions): the
 * list decoded by fn, its count checked. On failure *v holds what was
 * decoded so far, for the caller's free. */
static int
pd_parse_counted(const char *name, const char *buf, size_t len, size_t elem_size,
    pd_elem_fn fn, void **v, size_t *n, struct pd_err *err)
{
	json_object *o = parse_body(name, buf, len, json_type_object, err);
	struct jctx c = {.what = name, .err = err};

	*v = NULL;
	*n = 0;
	if (o == NULL)
		return -1;
	int64_t count = jget_i64(&c, o, "count", 0, -1);
	json_object *arr = jget(&c, o, name, json_type_array, 0);
	if (!c.failed && pd_list_decode(arr, name, count, elem_size, fn, v, n, err) != 0)
		c.failed = 1;
	json_object_put(o);
	if (c.failed)
		return -1;
	pd_err_clear(err);
	return 0;
}

int
pd_parse_stores(const char *buf, size_t len, struct pd_stores *out, struct pd_err *err)
{
	void *v = NULL;
	int rc = pd_parse_counted("stores", buf, len, sizeof(*out->v), store_elem, &v,
	    &out->count, err);

	out->v = v;
	if (rc != 0)
		pd_stores_free(out);
	return rc;
}

void
pd_store_free(struct pd_store *s)
{
	(void)s;
}

void
pd_stores_free(struct pd_stores *s)
{
	free(s->v);
	s->v = NULL;
	s->count = 0;
}

const struct pd_store *
pd_stores_find(const struct pd_stores *s, uint64_t id)
{
	for (size_t i = 0; i < s->count; i++)
		if (s->v[i].id == id)
			return &s->v[i];
	return NULL;
}

/* --------------------------------------------------------------- regions */

static const char *
peer_role_name(int64_t role)
{
	switch (role) {
	case 0: return "Voter";
	case 1: return "Learner";
	case 2: return "IncomingVoter";
	case 3: return "DemotingVoter";
	default: return "Unknown";
	}
}

static void
peer_from_json(struct jctx *c, json_object *p, struct pd_peer *out)
{
	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(p, json_type_object)) {
		pd_err_set(c->err, 200, PD_ERR_PARSE, "%s: peer is not an object", c->what);
		c->failed = 1;
		return;
	}
	out->id = jget_u64(c, p, "id", 0, 0);
	out->store_id = jget_u64(c, p, "store_id", 0, 0);
	/* role_name (v7.3+) wins; older PD has only the int role, omitted for
	 * Voter, and pre-v5 only is_learner. */
	int64_t role = jget_i64(c, p, "role", 0, 0);
	if (role == 0 && jget_bool(c, p, "is_learner", 0))
		role = 1;
	jget_str(c, p, "role_name", 0, out->role, sizeof(out->role), peer_role_name(role));
	if (out->role[0] == '\0')
		op_strlcpy(out->role, peer_role_name(role), sizeof(out->role));
}

static struct pd_peer *
peers_from_json(struct jctx *c, json_object *arr, size_t *n)
{
	struct pd_peer *v = NULL;

	*n = 0;
	if (arr == NULL || json_object_array_length(arr) == 0)
		return NULL;
	v = calloc(json_object_array_length(arr), sizeof(*v));
	if (v == NULL) {
		pd_err_set(c->err, 200, PD_ERR_PARSE, "%s: out of memory", c->what);
		c->failed = 1;
		return NULL;
	}
	for (size_t i = 0; i < json_object_array_length(arr) && !c->failed; i++)
		peer_from_json(c, json_object_array_get_idx(arr, i), &v[(*n)++]);
	return v;
}

static int
region_from_json(json_object *o, const char *what, struct pd_region *r, struct pd_err *err)
{
	struct jctx c = {.what = what, .err = err};

	memset(r, 0, sizeof(*r));
	if (!json_object_is_type(o, json_type_object)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: expected an object, got %s", what,
		    json_type_to_name(json_object_get_type(o)));
		return -1;
	}
	r->id = jget_u64(&c, o, "id", 1, 0);
	r->start_key = jget_strdup(&c, o, "start_key");
	r->end_key = jget_strdup(&c, o, "end_key");
	json_object *ep = jget(&c, o, "epoch", json_type_object, 0);
	r->conf_ver = jget_u64(&c, ep, "conf_ver", 0, 0);
	r->version = jget_u64(&c, ep, "version", 0, 0);
	r->peers = peers_from_json(&c, jget(&c, o, "peers", json_type_array, 0), &r->n_peers);
	json_object *ld = jget(&c, o, "leader", json_type_object, 0);
	if (ld != NULL && !c.failed) {
		peer_from_json(&c, ld, &r->leader);
		/* PD writes {"role_name":""} when there is no leader. */
		r->has_leader = r->leader.store_id != 0;
	}
	r->pending_peers = peers_from_json(&c, jget(&c, o, "pending_peers", json_type_array, 0),
	    &r->n_pending);
	json_object *dp = jget(&c, o, "down_peers", json_type_array, 0);
	if (dp != NULL && json_object_array_length(dp) > 0 && !c.failed) {
		size_t n = json_object_array_length(dp);
		r->down_peers = calloc(n, sizeof(*r->down_peers));
		for (size_t i = 0; r->down_peers && i < n && !c.failed; i++) {
			json_object *d = json_object_array_get_idx(dp, i);
			json_object *p = jget(&c, d, "peer", json_type_object, 1);
			if (p != NULL)
				peer_from_json(&c, p, &r->down_peers[i].peer);
			r->down_peers[i].down_seconds = jget_u64(&c, d, "down_seconds", 0, 0);
			r->n_down++;
		}
	}
	r->approximate_size = jget_i64(&c, o, "approximate_size", 0, 0);
	r->approximate_keys = jget_i64(&c, o, "approximate_keys", 0, 0);
	if (c.failed || r->start_key == NULL || r->end_key == NULL) {
		if (!c.failed)
			pd_err_set(err, 200, PD_ERR_PARSE, "%s: out of memory", what);
		pd_region_free(r);
		return -1;
	}
	return 0;
}

int
pd_parse_region(const char *buf, size_t len, struct pd_region *out, struct pd_err *err)
{
	json_object *o;
	int rc;

	int is_null = 0;

	memset(out, 0, sizeof(*out));
	o = parse_body_n("region", buf, len, json_type_null, err, &is_null);
	if (o == NULL) {
		if (!is_null)
			return -1;
		/* A bare "null" is how PD ≤ v7.5 says "no such region". */
		pd_err_set(err, 200, PD_ERR_HTTP, "region: not found (PD answered null)");
		if (err != NULL)
			err->not_found = 1;
		return -1;
	}
	rc = region_from_json(o, "region", out, err);
	json_object_put(o);
	if (rc == 0)
		pd_err_clear(err);
	return rc;
}

static int
region_elem(json_object *o, const char *what, void *elem, struct pd_err *err)
{
	return region_from_json(o, what, elem, err);
}

int
pd_parse_regions(const char *buf, size_t len, struct pd_regions *out, struct pd_err *err)
{
	void *v = NULL;
	int rc = pd_parse_counted("regions", buf, len, sizeof(*out->v), region_elem, &v,
	    &out->count, err);

	out->v = v;
	if (rc != 0)
		pd_regions_free(out);
	return rc;
}

void
pd_region_free(struct pd_region *r)
{
	free(r->start_key);
	free(r->end_key);
	free(r->peers);
	free(r->down_peers);
	free(r->pending_peers);
	memset(r, 0, sizeof(*r));
}

void
pd_regions_free(struct pd_regions *r)
{
	for (size_t i = 0; i < r->count; i++)
		pd_region_free(&r->v[i]);
	free(r->v);
	r->v = NULL;
	r->count = 0;
}

/* ------------------------------------------------ health, members, cluster */

static int
health_elem(json_object *h, const char *what, void *elem, struct pd_err *err)
{
	struct jctx c = {.what = what, .err = err};
	struct pd_health *d = elem;

	if (!json_object_is_type(h, json_type_object)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: expected an object", what);
		return -1;
	}
	jget_str(&c, h, "name", 0, d->name, sizeof(d->name), "");
	d->member_id = jget_u64(&c, h, "member_id", 1, 0);
	d->n_client_urls = jget_strarr(&c, h, "client_urls", d->client_urls, PD_MAX_URLS);
	d->health = jget_bool(&c, h, "health", 0);
	return c.failed ? -1 : 0;
}

int
pd_parse_health(const char *buf, size_t len, struct pd_health_list *out, struct pd_err *err)
{
	json_object *o = parse_body("health", buf, len, json_type_array, err);
	void *v = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	rc = pd_list_decode(o, "health", -1, sizeof(*out->v), health_elem, &v, &out->count, err);
	out->v = v;
	json_object_put(o);
	if (rc != 0) {
		pd_health_free(out);
		return -1;
	}
	pd_err_clear(err);
	return 0;
}

void
pd_health_free(struct pd_health_list *h)
{
	free(h->v);
	h->v = NULL;
	h->count = 0;
}

static void
member_from_json(struct jctx *c, json_object *m, struct pd_member *d)
{
	jget_str(c, m, "name", 0, d->name, sizeof(d->name), "");
	d->member_id = jget_u64(c, m, "member_id", 0, 0);
	d->n_client_urls = jget_strarr(c, m, "client_urls", d->client_urls, PD_MAX_URLS);
	d->n_peer_urls = jget_strarr(c, m, "peer_urls", d->peer_urls, PD_MAX_URLS);
	jget_str(c, m, "binary_version", 0, d->binary_version, sizeof(d->binary_version), "");
}

/* A member that is not an object is skipped, as before. */
static int
member_elem(json_object *m, const char *what, void *elem, struct pd_err *err)
{
	struct jctx c = {.what = what, .err = err};

	if (!json_object_is_type(m, json_type_object))
		return 1;
	member_from_json(&c, m, elem);
	return c.failed ? -1 : 0;
}

int
pd_parse_members(const char *buf, size_t len, struct pd_members *out, struct pd_err *err)
{
	json_object *o = parse_body("members", buf, len, json_type_object, err);
	struct jctx c = {.what = "members", .err = err};

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	json_object *hdr = jget(&c, o, "header", json_type_object, 0);
	out->cluster_id = jget_u64(&c, hdr, "cluster_id", 0, 0);
	json_object *arr = jget(&c, o, "members", json_type_array, 0);
	void *v = NULL;
	if (!c.failed && pd_list_decode(arr, "members", -1, sizeof(*out->v), member_elem, &v,
	    &out->count, err) != 0)
		c.failed = 1;
	out->v = v;
	json_object *ld = jget(&c, o, "leader", json_type_object, 0);
	if (ld != NULL) {
		member_from_json(&c, ld, &out->leader);
		out->has_leader = 1;
	}
	json_object *el = jget(&c, o, "etcd_leader", json_type_object, 0);
	out->etcd_leader_id = jget_u64(&c, el, "member_id", 0, 0);
	json_object_put(o);
	if (c.failed) {
		pd_members_free(out);
		return -1;
	}
	pd_err_clear(err);
	return 0;
}

void
pd_members_free(struct pd_members *m)
{
	free(m->v);
	m->v = NULL;
	m->count = 0;
}

int
pd_parse_cluster(const char *buf, size_t len, struct pd_cluster *out, struct pd_err *err)
{
	json_object *o = parse_body("cluster", buf, len, json_type_object, err);
	struct jctx c = {.what = "cluster", .err = err};

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	out->id = jget_u64(&c, o, "id", 1, 0);
	out->max_peer_count = (uint32_t)jget_u64(&c, o, "max_peer_count", 0, 0);
	json_object_put(o);
	if (c.failed)
		return -1;
	pd_err_clear(err);
	return 0;
}

int
pd_parse_cluster_status(const char *buf, size_t len, struct pd_cluster_status *out,
    struct pd_err *err)
{
	json_object *o = parse_body("cluster/status", buf, len, json_type_object, err);
	struct jctx c = {.what = "cluster/status", .err = err};

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	jget_str(&c, o, "raft_bootstrap_time", 0, out->raft_bootstrap_time,
	    sizeof(out->raft_bootstrap_time), "");
	out->is_initialized = jget_bool(&c, o, "is_initialized", 0);
	jget_str(&c, o, "replication_status", 0, out->replication_status,
	    sizeof(out->replication_status), "");
	json_object_put(o);
	if (c.failed)
		return -1;
	pd_err_clear(err);
	return 0;
}

int
pd_parse_schedule_config(const char *buf, size_t len, struct pd_schedule_config *out,
    struct pd_err *err)
{
	json_object *o = parse_body("config/schedule", buf, len, json_type_object, err);
	struct jctx c = {.what = "config/schedule", .err = err};
	int64_t ns = 0;

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	json_object *d = jget(&c, o, "max-store-down-time", json_type_string, 0);
	if (d != NULL && pd_parse_go_duration_ns(json_object_get_string(d), &ns) != 0) {
		pd_err_set(err, 200, PD_ERR_PARSE, "config/schedule: bad max-store-down-time \"%.40s\"",
		    json_object_get_string(d));
		c.failed = 1;
	}
	out->max_store_down_time_ms = ns / 1000000;
	out->leader_schedule_limit = jget_u64(&c, o, "leader-schedule-limit", 0, 0);
	out->region_schedule_limit = jget_u64(&c, o, "region-schedule-limit", 0, 0);
	out->replica_schedule_limit = jget_u64(&c, o, "replica-schedule-limit", 0, 0);
	out->max_snapshot_count = jget_u64(&c, o, "max-snapshot-count", 0, 0);
	out->max_pending_peer_count = jget_u64(&c, o, "max-pending-peer-count", 0, 0);
	out->merge_schedule_limit = jget_u64(&c, o, "merge-schedule-limit", 0, 0);
	out->hot_region_schedule_limit = jget_u64(&c, o, "hot-region-schedule-limit", 0, 0);
	jget_str(&c, o, "leader-schedule-policy", 0, out->leader_schedule_policy,
	    sizeof(out->leader_schedule_policy), "");
	if (!c.failed && (out->raw = op_json_dup_string(o)) == NULL) {
		pd_err_set(err, 200, PD_ERR_PARSE, "config/schedule: out of memory");
		c.failed = 1;
	}
	json_object_put(o);
	if (c.failed) {
		pd_schedule_config_free(out);
		return -1;
	}
	pd_err_clear(err);
	return 0;
}

void
pd_schedule_config_free(struct pd_schedule_config *c)
{
	free(c->raw);
	c->raw = NULL;
}

static int
strlist_elem(json_object *e, const char *what, void *elem, struct pd_err *err)
{
	if (!json_object_is_type(e, json_type_string)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: expected a string, got %s", what,
		    json_type_to_name(json_object_get_type(e)));
		return -1;
	}
	if ((*(char **)elem = strdup(json_object_get_string(e))) == NULL) {
		pd_err_set(err, 200, PD_ERR_PARSE, "%s: out of memory", what);
		return -1;
	}
	return 0;
}

int
pd_parse_strlist(const char *buf, size_t len, struct pd_strlist *out, struct pd_err *err)
{
	int is_null = 0;
	json_object *o = parse_body_n("list", buf, len, json_type_null, err, &is_null);

	memset(out, 0, sizeof(*out));
	if (o == NULL) {
		if (!is_null)
			return -1;
		pd_err_clear(err); /* null: PD's nil slice, an empty list */
		return 0;
	}
	if (!json_object_is_type(o, json_type_array)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "list: expected a JSON array, got %s",
		    json_type_to_name(json_object_get_type(o)));
		json_object_put(o);
		return -1;
	}
	void *v = NULL;
	int rc = pd_list_decode(o, "list", -1, sizeof(char *), strlist_elem, &v, &out->count, err);
	out->v = v;
	json_object_put(o);
	if (rc != 0) {
		pd_strlist_free(out);
		return -1;
	}
	pd_err_clear(err);
	return 0;
}

void
pd_strlist_free(struct pd_strlist *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->count = 0;
}

int
pd_strlist_contains(const struct pd_strlist *l, const char *s)
{
	for (size_t i = 0; i < l->count; i++)
		if (l->v[i] != NULL && strcmp(l->v[i], s) == 0)
			return 1;
	return 0;
}

int
pd_parse_op_status(const char *buf, size_t len, struct pd_op_status *out, struct pd_err *err)
{
	json_object *o = parse_body("operator", buf, len, json_type_string, err);
	const char *s;

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return -1;
	s = json_object_get_string(o);
	op_strlcpy(out->text, s, sizeof(out->text));
	/* Only the "status: X" prefix is stable (PD's own tests match on it). */
	if (strncmp(s, "status: ", 8) != 0) {
		pd_err_set(err, 200, PD_ERR_PARSE, "operator: no \"status: \" prefix in \"%.60s\"", s);
		json_object_put(o);
		return -1;
	}
	s += 8;
	size_t n = strcspn(s, ", ");
	if (n == 0 || n >= sizeof(out->status)) {
		pd_err_set(err, 200, PD_ERR_PARSE, "operator: bad status in \"%.60s\"", out->text);
		json_object_put(o);
		return -1;
	}
	memcpy(out->status, s, n);
	out->status[n] = '\0';
	json_object_put(o);
	pd_err_clear(err);
	return 0;
}


/* ------------------------------------------- streaming region list decoder */

/* GET /regions at 100k regions is ~45 MB of JSON, and building a json-c tree
 * of it cost ten times its transfer. This decoder is fed the body as it
 * arrives, keeps no tree and no body, and hands each region's few fields the
 * observation needs (id, peer/pending/down store ids, leader store) to a
 * callback. It checks the JSON grammar as strictly as json-c does for these
 * bodies, so garbage is still a parse error. */

enum { RS_K_OTHER, RS_K_ELEM, RS_K_COUNT, RS_K_REGIONS, RS_K_ID, RS_K_PEERS, RS_K_LEADER,
	RS_K_PENDING, RS_K_DOWN, RS_K_PEER, RS_K_STORE_ID };
/* What the grammar allows next. */
enum { RS_E_VALUE, RS_E_VALUE_OR_CLOSE, RS_E_KEY_OR_CLOSE, RS_E_KEY, RS_E_COLON,
	RS_E_COMMA_OR_CLOSE, RS_E_END };
/* Inside which token the lexer is. */
enum { RS_L_NONE, RS_L_STR, RS_L_NUM, RS_L_LIT };

static const struct {
	const char *name;
	unsigned char id;
} rs_keys[] = {{"count", RS_K_COUNT}, {"regions", RS_K_REGIONS}, {"id", RS_K_ID},
	{"peers", RS_K_PEERS}, {"leader", RS_K_LEADER}, {"pending_peers", RS_K_PENDING},
	{"down_peers", RS_K_DOWN}, {"peer", RS_K_PEER}, {"store_id", RS_K_STORE_ID}};

void
pd_regscan_init(struct pd_regscan *s, pd_region_brief_fn *fn, void *arg)
{
	memset(s, 0, sizeof(*s));
	s->fn = fn;
	s->arg = arg;
	s->count = -1;
}

static int
rs_fail(struct pd_regscan *s, struct pd_err *err, const char *why)
{
	if (!s->failed)
		pd_err_set(err, 200, PD_ERR_PARSE, "regions: byte %llu: %s",
		    (unsigned long long)s->off, why);
	s->failed = 1;
	return -1;
}

static int
rs_u64(const char *t, size_t n, uint64_t *v)
{
	uint64_t x = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return -1;
		uint64_t d = (uint64_t)(t[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

/* The key of the member being read at frame d, or RS_K_ELEM in an array. */
#define RS_K(s, d) ((s)->frame[d].kind == '[' ? RS_K_ELEM : (s)->frame[d].key)

static int
rs_store_slot(struct pd_regscan *s, struct pd_err *err, size_t *n, uint64_t *arr)
{
	if (*n >= PD_BRIEF_PEERS_MAX)
		return rs_fail(s, err, "a region lists more peers than " PD_STR(PD_BRIEF_PEERS_MAX));
	arr[(*n)++] = 0;
	return 0;
}

/* A container opens at the current depth (before the push). */
static int
rs_open(struct pd_regscan *s, char kind, struct pd_err *err)
{
	int d = s->depth;

	if (d == 0 && kind != '{')
		return rs_fail(s, err, "expected a JSON object");
	if (d == 1 && s->frame[0].key == RS_K_REGIONS && kind != '[')
		return rs_fail(s, err, "field \"regions\" should be an array");
	if (d == 2 && s->frame[0].key == RS_K_REGIONS) {
		if (kind != '{')
			return rs_fail(s, err, "a region is not an object");
		memset(&s->cur, 0, sizeof(s->cur));
		s->have_id = 0;
	}
	if (d == 4 && s->frame[0].key == RS_K_REGIONS && kind == '{') {
		int k = s->frame[2].key;
		if (k == RS_K_PEERS && rs_store_slot(s, err, &s->cur.n_peers, s->cur.peers) != 0)
			return -1;
		if (k == RS_K_PENDING &&
		    rs_store_slot(s, err, &s->cur.n_pending, s->cur.pending) != 0)
			return -1;
		if (k == RS_K_DOWN && rs_store_slot(s, err, &s->cur.n_down, s->cur.down) != 0)
			return -1;
	}
	if (d >= PD_SCAN_DEPTH)
		return rs_fail(s, err, "nested too deeply");
	s->frame[d].kind = (unsigned char)kind;
	s->frame[d].key = RS_K_OTHER;
	s->depth++;
	return 0;
}

static int
rs_close(struct pd_regscan *s, struct pd_err *err)
{
	if (s->depth == 3 && s->frame[0].key == RS_K_REGIONS) {
		if (!s->have_id)
			return rs_fail(s, err, "a region has no \"id\"");
		s->cur.has_leader = s->cur.leader_store != 0;
		s->nregions++;
		if (s->fn)
			s->fn(&s->cur, s->arg);
	}
	s->depth--;
	return 0;
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
rs_num_ok(const char *t, size_t n)
{
	size_t i = 0, d;

	if (i < n && t[i] == '-')
		i++;
	if (i >= n)
		return 0;
	if (t[i] == '0')
		i++;
	else {
		for (d = i; i < n && t[i] >= '0' && t[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && t[i] == '.') {
		for (d = ++i; i < n && t[i] >= '0' && t[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && (t[i] == 'e' || t[i] == 'E')) {
		i++;
		if (i < n && (t[i] == '+' || t[i] == '-'))
			i++;
		for (d = i; i < n && t[i] >= '0' && t[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	return i == n;
}

/* A number at the current position. */
static int
rs_number(struct pd_regscan *s, struct pd_err *err)
{
	const char *t = s->tok;
	size_t n = s->ntok;
	int d = s->depth;
	uint64_t v;

	if (s->tok_long || !rs_num_ok(t, n))
		return rs_fail(s, err, s->tok_long ? "number too long" : "malformed number");
	if (d == 1 && s->frame[0].key == RS_K_COUNT) {
		int64_t c;
		if (rs_u64(t, n, &v) != 0 || v > INT64_MAX)
			return rs_fail(s, err, "field \"count\" is not a count");
		c = (int64_t)v;
		s->count = c;
		return 0;
	}
	if (d < 3 || s->frame[0].key != RS_K_REGIONS)
		return 0;
	int k2 = s->frame[2].key;
	uint64_t *slot = NULL;
	if (d == 3 && k2 == RS_K_ID) {
		if (rs_u64(t, n, &s->cur.id) != 0)
			return rs_fail(s, err, "a region id is not a uint64");
		s->have_id = 1;
		return 0;
	}
	if (d == 4 && k2 == RS_K_LEADER && s->frame[3].key == RS_K_STORE_ID)
		slot = &s->cur.leader_store;
	else if (d == 5 && RS_K(s, 4) == RS_K_STORE_ID && k2 == RS_K_PEERS && s->cur.n_peers)
		slot = &s->cur.peers[s->cur.n_peers - 1];
	else if (d == 5 && RS_K(s, 4) == RS_K_STORE_ID && k2 == RS_K_PENDING && s->cur.n_pending)
		slot = &s->cur.pending[s->cur.n_pending - 1];
	else if (d == 6 && k2 == RS_K_DOWN && RS_K(s, 4) == RS_K_PEER &&
	    RS_K(s, 5) == RS_K_STORE_ID && s->cur.n_down)
		slot = &s->cur.down[s->cur.n_down - 1];
	if (slot != NULL && rs_u64(t, n, slot) != 0)
		return rs_fail(s, err, "a store_id is not a uint64");
	return 0;
}

static int
rs_key(struct pd_regscan *s)
{
	struct pd_scan_frame *f = &s->frame[s->depth - 1];

	f->key = RS_K_OTHER;
	if (s->tok_long || s->ntok < 2 || s->ntok > 13)
		return 0;
	for (size_t i = 0; i < sizeof(rs_keys) / sizeof(rs_keys[0]); i++)
		if (rs_keys[i].name[0] == s->tok[0] && strlen(rs_keys[i].name) == s->ntok &&
		    memcmp(rs_keys[i].name, s->tok, s->ntok) == 0) {
			f->key = rs_keys[i].id;
			break;
		}
	return 0;
}

static void
rs_tok_add(struct pd_regscan *s, char c)
{
	if (s->ntok < sizeof(s->tok))
		s->tok[s->ntok++] = c;
	else
		s->tok_long = 1;
}

/* A value ended: what may follow. */
static void
rs_after_value(struct pd_regscan *s)
{
	s->expect = s->depth == 0 ? RS_E_END : RS_E_COMMA_OR_CLOSE;
}

static int
rs_scalar_check(struct pd_regscan *s, struct pd_err *err, const char *what)
{
	if (s->depth == 0)
		return rs_fail(s, err, "expected a JSON object");
	if (s->depth == 1 && s->frame[0].key == RS_K_REGIONS && strcmp(what, "null") != 0)
		return rs_fail(s, err, "field \"regions\" should be an array");
	if (s->depth == 1 && s->frame[0].key == RS_K_COUNT && strcmp(what, "number") != 0)
		return rs_fail(s, err, "field \"count\" should be a number");
	if (s->depth == 2 && s->frame[0].key == RS_K_REGIONS)
		return rs_fail(s, err, "a region is not an object");
	if (s->depth == 3 && s->frame[0].key == RS_K_REGIONS && s->frame[2].key == RS_K_ID &&
	    strcmp(what, "number") != 0)
		return rs_fail(s, err, "a region id should be a number");
	return 0;
}

static int
rs_literal_end(struct pd_regscan *s, struct pd_err *err)
{
	static const char *const lits[] = {"true", "false", "null"};

	for (size_t i = 0; i < 3; i++)
		if (!s->tok_long && strlen(lits[i]) == s->ntok && memcmp(lits[i], s->tok, s->ntok) == 0) {
			if (rs_scalar_check(s, err, lits[i]) != 0)
				return -1;
			rs_after_value(s);
			return 0;
		}
	return rs_fail(s, err, "invalid literal");
}

/* The first byte at or after p that ends a plain run inside a string: the
 * closing quote, a backslash or a control byte (or e). memchr and a simple
 * reduction vectorize; a byte-at-a-time loop over 40 MB of keys does not. */
static const char *
rs_skip_plain(const char *p, const char *e)
{
	const char *q = memchr(p, '"', (size_t)(e - p));
	size_t span = q ? (size_t)(q - p) : (size_t)(e - p);
	unsigned bad = 0;

	for (size_t i = 0; i < span; i++)
		bad |= (unsigned char)p[i] < 0x20 || p[i] == '\\';
	if (!bad)
		return p + span;
	while (p < e && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
		p++;
	return p;
}

int
pd_regscan_feed(struct pd_regscan *s, const char *buf, size_t len, struct pd_err *err)
{
	const char *p = buf, *e = buf + len;
	unsigned long long base = s->off;

/* helpers report errors at s->off: keep it current before calling one */
#define RS_AT() (s->off = base + (unsigned long long)(p - buf))
	if (s->failed)
		return -1;
	while (p < e) {
		char c = *p;
		switch (s->lex) {
		case RS_L_STR: {
			/* the long hex keys are most of the body: skip plain bytes fast */
			int keep = s->expect == RS_E_COLON;
			if (s->esc == 0 && s->uni == 0) {
				if (keep) {
					while (p < e && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
						rs_tok_add(s, *p++);
				} else {
					p = rs_skip_plain(p, e);
				}
				if (p == e)
					continue;
			}
			c = *p;
			RS_AT();
			if ((unsigned char)c < 0x20)
				return rs_fail(s, err, "control byte in a string");
			if (s->uni > 0) {
				if (!isxdigit((unsigned char)c))
					return rs_fail(s, err, "bad \\u escape");
				s->uni--;
			} else if (s->esc) {
				s->esc = 0;
				if (c == 'u')
					s->uni = 4;
				else if (strchr("\"\\/bfnrt", c) == NULL)
					return rs_fail(s, err, "bad escape in a string");
				if (keep)
					s->tok_long = 1; /* an escaped key is none of ours */
			} else if (c == '\\') {
				s->esc = 1;
			} else { /* closing quote */
				s->lex = RS_L_NONE;
				if (s->expect == RS_E_COLON) {
					rs_key(s);
				} else {
					if (rs_scalar_check(s, err, "string") != 0)
						return -1;
					rs_after_value(s);
				}
			}
			p++;
			continue;
		}
		case RS_L_NUM:
			if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' ||
			    c == 'E') {
				rs_tok_add(s, c);
				p++;
				continue;
			}
			s->lex = RS_L_NONE;
			RS_AT();
			if (rs_scalar_check(s, err, "number") != 0 || rs_number(s, err) != 0)
				return -1;
			rs_after_value(s);
			continue; /* c is looked at again */
		case RS_L_LIT:
			if (c >= 'a' && c <= 'z') {
				rs_tok_add(s, c);
				p++;
				continue;
			}
			s->lex = RS_L_NONE;
			RS_AT();
			if (rs_literal_end(s, err) != 0)
				return -1;
			continue;
		default:
			break;
		}
		/* between tokens */
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			p++;
			continue;
		}
		RS_AT();
		int want_value = s->expect == RS_E_VALUE || s->expect == RS_E_VALUE_OR_CLOSE;
		if (c == '"' && (want_value || s->expect == RS_E_KEY ||
		    s->expect == RS_E_KEY_OR_CLOSE)) {
			if (s->expect == RS_E_KEY || s->expect == RS_E_KEY_OR_CLOSE)
				s->expect = RS_E_COLON; /* the string is a key */
			s->lex = RS_L_STR;
			s->ntok = 0;
			s->tok_long = 0;
		} else if ((c == '{' || c == '[') && want_value) {
			if (rs_open(s, c, err) != 0)
				return -1;
			s->expect = c == '{' ? RS_E_KEY_OR_CLOSE : RS_E_VALUE_OR_CLOSE;
		} else if ((c == '}' && s->depth > 0 && s->frame[s->depth - 1].kind == '{' &&
		    (s->expect == RS_E_KEY_OR_CLOSE || s->expect == RS_E_COMMA_OR_CLOSE)) ||
		    (c == ']' && s->depth > 0 && s->frame[s->depth - 1].kind == '[' &&
		    (s->expect == RS_E_VALUE_OR_CLOSE || s->expect == RS_E_COMMA_OR_CLOSE))) {
			if (rs_close(s, err) != 0)
				return -1;
			rs_after_value(s);
		} else if (c == ',' && s->expect == RS_E_COMMA_OR_CLOSE) {
			s->expect = s->frame[s->depth - 1].kind == '{' ? RS_E_KEY : RS_E_VALUE;
		} else if (c == ':' && s->expect == RS_E_COLON && s->lex == RS_L_NONE) {
			s->expect = RS_E_VALUE;
		} else if (want_value && (c == '-' || (c >= '0' && c <= '9'))) {
			s->lex = RS_L_NUM;
			s->ntok = 0;
			s->tok_long = 0;
			continue; /* the digit is taken by RS_L_NUM */
		} else if (want_value && (c == 't' || c == 'f' || c == 'n')) {
			s->lex = RS_L_LIT;
			s->ntok = 0;
			s->tok_long = 0;
			continue;
		} else {
			char why[48];
			snprintf(why, sizeof(why), (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f
			    ? "unexpected '%c'" : "unexpected byte 0x%02x", (unsigned char)c);
			return rs_fail(s, err, why);
		}
		p++;
	}
	s->off = base + len;
#undef RS_AT
	return 0;
}

int
pd_regscan_finish(struct pd_regscan *s, struct pd_err *err)
{
	if (s->failed)
		return -1;
	if (s->off == 0)
		return rs_fail(s, err, "empty body");
	if (s->lex == RS_L_LIT && rs_literal_end(s, err) != 0)
		return -1;
	if (s->lex == RS_L_NUM)
		return rs_fail(s, err, "expected a JSON object");
	if (s->lex == RS_L_STR || s->expect != RS_E_END)
		return rs_fail(s, err, "truncated body");
	if (s->count >= 0 && (size_t)s->count != s->nregions) {
		pd_err_set(err, 200, PD_ERR_PARSE, "regions: count %" PRId64 " but %zu listed",
		    s->count, s->nregions);
		s->failed = 1;
		return -1;
	}
	pd_err_clear(err);
	return 0;
}

/* GET /scheduler-config/evict-leader-scheduler/list:
 * {"store-id-ranges":{"4":[...]},"batch":3}: the keys are the evicted stores. */
int
pd_parse_evicted(const char *buf, size_t len, uint64_t *ids, size_t max, size_t *n,
    struct pd_err *err)
{
	json_object *o = parse_body("evict-leader list", buf, len, json_type_object, err);
	struct jctx c = {.what = "evict-leader list", .err = err};

	*n = 0;
	if (o == NULL)
		return -1;
	json_object *r = jget(&c, o, "store-id-ranges", json_type_object, 1);
	if (r == NULL) {
		json_object_put(o);
		return -1;
	}
	json_object_object_foreach(r, k, v)
	{
		uint64_t id;
		(void)v;
		if (*n < max && op_parse_u64(k, &id) == 0)
			ids[(*n)++] = id;
	}
	json_object_put(o);
	pd_err_clear(err);
	return 0;
}
