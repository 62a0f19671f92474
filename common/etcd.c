#include "common/etcd.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ahttp.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define ETCD_SEGMENT_MAX 63 /* bytes of a name, cluster or subject inside a key */

static const char *const etcd_errkind_names[] = {
#define X(id, name) name,
	ETCD_ERRKINDS(X)
#undef X
};

const char *
etcd_errkind_name(enum etcd_errkind k)
{
	return (unsigned)k < ETCD_NERRKINDS ? etcd_errkind_names[k] : "?";
}

const char *
etcd_call_path(enum etcd_call c)
{
	switch (c) {
	case ETCD_GRANT: return ETCD_PATH_GRANT;
	case ETCD_KEEPALIVE: return ETCD_PATH_KEEPALIVE;
	case ETCD_REVOKE: return ETCD_PATH_REVOKE;
	case ETCD_RANGE: return ETCD_PATH_RANGE;
	case ETCD_PUT: return ETCD_PATH_PUT;
	case ETCD_DELETE: return ETCD_PATH_DELETE;
	case ETCD_TXN: return ETCD_PATH_TXN;
	}
	return "/";
}

void
etcd_resp_free(struct etcd_resp *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nkvs; i++) {
		free(r->kvs[i].key);
		free(r->kvs[i].value);
	}
	free(r->kvs);
	memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
etcd_b64_encode(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t olen = 4 * ((len + 2) / 3);
	char *out = malloc(olen + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = len - i;
		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		*o++ = b64_alphabet[(v >> 18) & 63];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
		*o++ = left > 2 ? b64_alphabet[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int
b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
etcd_b64_decode(const char *s, char **out, size_t *outlen)
{
	size_t len = strlen(s);

	*out = NULL;
	*outlen = 0;
	if (len % 4 != 0)
		return -1;
	char *buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int j = 0; j < 4; j++) {
			if (s[i + j] == '=') {
				/* padding only in the last quantum, only at its end */
				if (i + 4 != len || j < 2) {
					free(buf);
					return -1;
				}
				pad++;
				v[j] = 0;
				continue;
			}
			if (pad > 0 || (v[j] = b64_value((unsigned char)s[i + j])) < 0) {
				free(buf);
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		    (uint32_t)v[3];
		buf[o++] = (char)(w >> 16);
		if (pad < 2)
			buf[o++] = (char)(w >> 8 & 0xff);
		if (pad < 1)
			buf[o++] = (char)(w & 0xff);
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
}

/* -------------------------------------------------------------- builders */

static void
set_i64(json_object *o, const char *k, int64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%" PRId64, v);
	json_object_object_add(o, k, json_object_new_string(b));
}

static int
set_b64(json_object *o, const char *k, const void *data, size_t len)
{
	char *e = etcd_b64_encode(data, len);

	if (e == NULL)
		return -1;
	json_object_object_add(o, k, json_object_new_string(e));
	free(e);
	return 0;
}

static int
key_ok(const char *key, char *err, size_t errlen)
{
	if (key == NULL || key[0] == '\0') {
		snprintf(err, errlen, "empty key");
		return -1;
	}
	if (strlen(key) > ETCD_KEY_MAX) {
		snprintf(err, errlen, "key longer than %d bytes", ETCD_KEY_MAX);
		return -1;
	}
	return 0;
}

/* Sets key and, for a prefix, range_end: the key with its last byte
 * incremented (dropping trailing 0xff bytes, as etcd's clientv3 does). */
static int
set_key_range(json_object *o, const char *key, int prefix, char *err, size_t errlen)
{
	if (key_ok(key, err, errlen) < 0)
		return -1;
	size_t n = strlen(key);
	set_b64(o, "key", key, n);
	if (!prefix)
		return 0;
	char end[ETCD_KEY_MAX + 1];
	memcpy(end, key, n);
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n == 0) {
		/* every key from here on: range_end "\0" */
		set_b64(o, "range_end", "\0", 1);
		return 0;
	}
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	set_b64(o, "range_end", end, n);
	return 0;
}

static char *
finish(json_object *o)
{
	char *s = op_json_dup_string(o);

	json_object_put(o);
	return s;
}

char *
etcd_build_grant(int64_t ttl_s, char *err, size_t errlen)
{
	if (ttl_s <= 0) {
		snprintf(err, errlen, "lease TTL must be positive");
		return NULL;
	}
	json_object *o = json_object_new_object();
	set_i64(o, "TTL", ttl_s);
	return finish(o);
}

static char *
build_lease_id(int64_t id, char *err, size_t errlen)
{
	if (id == 0) {
		snprintf(err, errlen, "no lease id");
		return NULL;
	}
	json_object *o = json_object_new_object();
	set_i64(o, "ID", id);
	return finish(o);
}

char *
etcd_build_keepalive(int64_t lease_id, char *err, size_t errlen)
{
	return build_lease_id(lease_id, err, errlen);
}

char *
etcd_build_revoke(int64_t lease_id, char *err, size_t errlen)
{
	return build_lease_id(lease_id, err, errlen);
}

char *
etcd_build_range(const char *key, int prefix, char *err, size_t errlen)
{
	json_object *o = json_object_new_object();

	if (set_key_range(o, key, prefix, err, errlen) < 0) {
		json_object_put(o);
		return NULL;
	}
	return finish(o);
}

static int
fill_put(json_object *o, const char *key, const char *value, size_t value_len, int64_t lease,
    char *err, size_t errlen)
{
	if (key_ok(key, err, errlen) < 0)
		return -1;
	if (value == NULL)
		value = "";
	if (value_len == 0)
		value_len = strlen(value);
	if (value_len > ETCD_VALUE_MAX) {
		snprintf(err, errlen, "value longer than %u bytes", ETCD_VALUE_MAX);
		return -1;
	}
	set_b64(o, "key", key, strlen(key));
	set_b64(o, "value", value, value_len);
	if (lease != 0)
		set_i64(o, "lease", lease);
	return 0;
}

char *
etcd_build_put(const char *key, const char *value, size_t value_len, int64_t lease,
    char *err, size_t errlen)
{
	json_object *o = json_object_new_object();

	if (fill_put(o, key, value, value_len, lease, err, errlen) < 0) {
		json_object_put(o);
		return NULL;
	}
	return finish(o);
}

char *
etcd_build_delete(const char *key, int prefix, char *err, size_t errlen)
{
	return etcd_build_range(key, prefix, err, errlen);
}

static const char *const target_names[] = { "VERSION", "CREATE", "MOD", "VALUE", "LEASE" };
static const char *const result_names[] = { "EQUAL", "GREATER", "LESS", "NOT_EQUAL" };

static json_object *
build_cmp(const struct etcd_cmp *c, char *err, size_t errlen)
{
	if ((unsigned)c->target >= OP_ARRAY_LEN(target_names) ||
	    (unsigned)c->result >= OP_ARRAY_LEN(result_names)) {
		snprintf(err, errlen, "bad compare");
		return NULL;
	}
	if (key_ok(c->key, err, errlen) < 0)
		return NULL;
	json_object *o = json_object_new_object();
	set_b64(o, "key", c->key, strlen(c->key));
	json_object_object_add(o, "result", json_object_new_string(result_names[c->result]));
	json_object_object_add(o, "target", json_object_new_string(target_names[c->target]));
	switch (c->target) {
	case ETCD_T_VERSION: set_i64(o, "version", c->num); break;
	case ETCD_T_CREATE: set_i64(o, "create_revision", c->num); break;
	case ETCD_T_MOD: set_i64(o, "mod_revision", c->num); break;
	case ETCD_T_LEASE: set_i64(o, "lease", c->num); break;
	case ETCD_T_VALUE: {
		const char *v = c->value ? c->value : "";
		set_b64(o, "value", v, c->value_len ? c->value_len : strlen(v));
		break;
	}
	}
	return o;
}

static json_object *
build_op(const struct etcd_op *op, char *err, size_t errlen)
{
	json_object *inner = json_object_new_object(), *o;
	int rc;
	const char *name;

	switch (op->kind) {
	case ETCD_OP_RANGE:
		rc = set_key_range(inner, op->key, op->prefix, err, errlen);
		name = "request_range";
		break;
	case ETCD_OP_PUT:
		rc = fill_put(inner, op->key, op->value, op->value_len, op->lease, err, errlen);
		name = "request_put";
		break;
	case ETCD_OP_DELETE:
		rc = set_key_range(inner, op->key, op->prefix, err, errlen);
		name = "request_delete_range";
		break;
	default:
		snprintf(err, errlen, "bad txn operation");
		rc = -1;
		name = "";
	}
	if (rc < 0) {
		json_object_put(inner);
		return NULL;
	}
	o = json_object_new_object();
	json_object_object_add(o, name, inner);
	return o;
}

static int
add_ops(json_object *txn, const char *name, const struct etcd_op *ops, size_t n, char *err,
    size_t errlen)
{
	if (n == 0)
		return 0;
	json_object *arr = json_object_new_array();
	json_object_object_add(txn, name, arr);
	for (size_t i = 0; i < n; i++) {
		json_object *o = build_op(&ops[i], err, errlen);
		if (o == NULL)
			return -1;
		json_object_array_add(arr, o);
	}
	return 0;
}

char *
etcd_build_txn(const struct etcd_cmp *cmp, size_t ncmp, const struct etcd_op *success,
    size_t nsuccess, const struct etcd_op *failure, size_t nfailure, char *err, size_t errlen)
{
	json_object *txn = json_object_new_object();

	if (ncmp > 0) {
		json_object *arr = json_object_new_array();
		json_object_object_add(txn, "compare", arr);
		for (size_t i = 0; i < ncmp; i++) {
			json_object *c = build_cmp(&cmp[i], err, errlen);
			if (c == NULL) {
				json_object_put(txn);
				return NULL;
			}
			json_object_array_add(arr, c);
		}
	}
	if (add_ops(txn, "success", success, nsuccess, err, errlen) < 0 ||
	    add_ops(txn, "failure", failure, nfailure, err, errlen) < 0) {
		json_object_put(txn);
		return NULL;
	}
	return finish(txn);
}

char *
etcd_build_campaign(const char *key, const char *value, int64_t lease, char *err,
    size_t errlen)
{
	if (lease == 0) {
		snprintf(err, errlen, "a campaign needs a lease");
		return NULL;
	}
	struct etcd_cmp c = { .key = key, .target = ETCD_T_CREATE, .result = ETCD_R_EQUAL,
		.num = 0 };
	struct etcd_op put = { .kind = ETCD_OP_PUT, .key = key, .value = value, .lease = lease };
	struct etcd_op get = { .kind = ETCD_OP_RANGE, .key = key };
	return etcd_build_txn(&c, 1, &put, 1, &get, 1, err, errlen);
}

char *
etcd_build_fence(const char *key, int64_t term, char *err, size_t errlen)
{
	if (term <= 0) {
		snprintf(err, errlen, "no term to fence on");
		return NULL;
	}
	struct etcd_cmp c = { .key = key, .target = ETCD_T_CREATE, .result = ETCD_R_EQUAL,
		.num = term };
	struct etcd_op get = { .kind = ETCD_OP_RANGE, .key = key };
	return etcd_build_txn(&c, 1, NULL, 0, &get, 1, err, errlen);
}

/* ---------------------------------------------------------------- parser */

static int
fail(struct etcd_resp *r, enum etcd_errkind k, const char *fmt, const char *detail)
{
	r->kind = k;
	snprintf(r->error, sizeof(r->error), fmt, detail ? detail : "");
	return -1;
}

/* An int64 field: a decimal string (proto3 JSON) or a plain number; absent
 * is 0. Returns -1 for any other type or a malformed string. */
static int
get_i64(json_object *o, const char *k, int64_t *out)
{
	json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(o, k, &v) || v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -1;
	const char *s = json_object_get_string(v);
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno != 0)
		return -1;
	*out = (int64_t)x;
	return 0;
}

static int
get_b64(json_object *o, const char *k, char **out, size_t *len, size_t max)
{
	json_object *v;

	*out = NULL;
	*len = 0;
	if (!json_object_object_get_ex(o, k, &v) || v == NULL) {
		*out = strdup("");
		return *out ? 0 : -1;
	}
	if (!json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) > 4 * (max / 3 + 1))
		return -1;
	return etcd_b64_decode(json_object_get_string(v), out, len);
}

static int
parse_kvs(json_object *o, struct etcd_resp *r)
{
	json_object *arr, *cnt;
	int64_t count = 0;

	if (get_i64(o, "count", &count) < 0)
		return fail(r, ETCD_E_PARSE, "bad count", NULL);
	if (json_object_object_get_ex(o, "count", &cnt))
		r->count += count;
	if (!json_object_object_get_ex(o, "kvs", &arr) || arr == NULL)
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return fail(r, ETCD_E_PARSE, "kvs is not an array", NULL);
	size_t n = json_object_array_length(arr);
	if (r->nkvs + n > ETCD_MAX_KVS)
		return fail(r, ETCD_E_PARSE, "more kvs than we accept", NULL);
	if (n == 0)
		return 0;
	struct etcd_kv *kvs = realloc(r->kvs, (r->nkvs + n) * sizeof(*kvs));
	if (kvs == NULL)
		return fail(r, ETCD_E_PARSE, "out of memory", NULL);
	r->kvs = kvs;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		struct etcd_kv *kv = &r->kvs[r->nkvs];
		size_t klen;
		memset(kv, 0, sizeof(*kv));
		if (e == NULL || !json_object_is_type(e, json_type_object))
			return fail(r, ETCD_E_PARSE, "a kv is not an object", NULL);
		/* counted before any field can fail, so etcd_resp_free frees it */
		r->nkvs++;
		if (get_b64(e, "key", &kv->key, &klen, ETCD_KEY_MAX) < 0 || klen > ETCD_KEY_MAX ||
		    strlen(kv->key) != klen)
			return fail(r, ETCD_E_PARSE, "bad key in kvs", NULL);
		if (get_b64(e, "value", &kv->value, &kv->value_len, ETCD_VALUE_MAX) < 0 ||
		    kv->value_len > ETCD_VALUE_MAX)
			return fail(r, ETCD_E_PARSE, "bad value in kvs", NULL);
		if (get_i64(e, "create_revision", &kv->create_rev) < 0 ||
		    get_i64(e, "mod_revision", &kv->mod_rev) < 0 ||
		    get_i64(e, "version", &kv->version) < 0 || get_i64(e, "lease", &kv->lease) < 0)
			return fail(r, ETCD_E_PARSE, "bad number in kvs", NULL);
	}
	return 0;
}

/* {"error": "...", "code": N} (unary) or {"error": {"grpc_code": N,
 * "message": "..."}} (a streaming call's error). */
static int
parse_error(json_object *root, struct etcd_resp *r)
{
	json_object *e;
	int64_t code = 0;

	if (!json_object_object_get_ex(root, "error", &e) || e == NULL)
		return 0;
	if (json_object_is_type(e, json_type_object)) {
		get_i64(e, "grpc_code", &code);
		r->code = (int)code;
		return fail(r, ETCD_E_SERVER, "%s", op_json_str(e, "message", "error"));
	}
	get_i64(root, "code", &code);
	r->code = (int)code;
	return fail(r, ETCD_E_SERVER, "%s",
	    json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "error");
}

int
etcd_parse(enum etcd_call call, long http_status, const char *body, size_t len,
    const char *terr, struct etcd_resp *r)
{
	char perr[128];
	int rc = 0;

	memset(r, 0, sizeof(*r));
	r->http_status = http_status;
	if (http_status == 0)
		return fail(r, ETCD_E_TRANSPORT, "%s", terr && terr[0] ? terr : "no answer");
	if (body == NULL || len == 0) {
		if (http_status / 100 != 2) {
			snprintf(perr, sizeof(perr), "HTTP %ld", http_status);
			return fail(r, ETCD_E_SERVER, "%s", perr);
		}
		return fail(r, ETCD_E_PARSE, "empty answer", NULL);
	}
	json_object *root = op_json_parse(body, len, perr, sizeof(perr));
	if (root == NULL) {
		if (http_status / 100 != 2) {
			snprintf(perr, sizeof(perr), "HTTP %ld", http_status);
			return fail(r, ETCD_E_SERVER, "%s", perr);
		}
		return fail(r, ETCD_E_PARSE, "%s", perr);
	}
	if (!json_object_is_type(root, json_type_object)) {
		rc = fail(r, ETCD_E_PARSE, "answer is not an object", NULL);
		goto out;
	}
	if (parse_error(root, r) < 0) {
		rc = -1;
		goto out;
	}
	if (http_status / 100 != 2) {
		snprintf(perr, sizeof(perr), "HTTP %ld", http_status);
		rc = fail(r, ETCD_E_SERVER, "%s", perr);
		goto out;
	}
	json_object *res = root, *hdr;
	/* a streaming call (keepalive) wraps each message in {"result": ...} */
	if (call == ETCD_KEEPALIVE) {
		res = op_json_obj(root, "result");
		if (res == NULL) {
			rc = fail(r, ETCD_E_PARSE, "keepalive answer without result", NULL);
			goto out;
		}
	}
	hdr = op_json_obj(res, "header");
	if (hdr != NULL && get_i64(hdr, "revision", &r->revision) < 0) {
		rc = fail(r, ETCD_E_PARSE, "bad header revision", NULL);
		goto out;
	}
	switch (call) {
	case ETCD_GRANT:
	case ETCD_KEEPALIVE:
		if (get_i64(res, "ID", &r->lease_id) < 0 || get_i64(res, "TTL", &r->ttl) < 0) {
			rc = fail(r, ETCD_E_PARSE, "bad lease ID or TTL", NULL);
			break;
		}
		if (call == ETCD_GRANT && (r->lease_id == 0 || r->ttl <= 0))
			rc = fail(r, ETCD_E_PARSE, "grant without lease ID or TTL", NULL);
		break;
	case ETCD_REVOKE:
	case ETCD_PUT:
		break;
	case ETCD_DELETE:
		if (get_i64(res, "deleted", &r->deleted) < 0)
			rc = fail(r, ETCD_E_PARSE, "bad deleted count", NULL);
		break;
	case ETCD_RANGE:
		rc = parse_kvs(res, r);
		break;
	case ETCD_TXN: {
		json_object *s, *arr;
		if (json_object_object_get_ex(res, "succeeded", &s) && s != NULL) {
			if (!json_object_is_type(s, json_type_boolean)) {
				rc = fail(r, ETCD_E_PARSE, "succeeded is not a boolean", NULL);
				break;
			}
			r->succeeded = json_object_get_boolean(s);
		}
		arr = op_json_arr(res, "responses");
		for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
			json_object *one = json_object_array_get_idx(arr, i);
			json_object *rr = one ? op_json_obj(one, "response_range") : NULL;
			if (rr != NULL && (rc = parse_kvs(rr, r)) < 0)
				break;
		}
		break;
	}
	}
out:
	json_object_put(root);
	if (rc < 0 && r->kind == ETCD_OK)
		r->kind = ETCD_E_PARSE;
	return rc;
}

/* ------------------------------------------------------------- endpoints */

static int
endpoint_ok(const char *u, char *err, size_t errlen)
{
	const char *p;

	if (strncmp(u, "http://", 7) == 0)
		p = u + 7;
	else if (strncmp(u, "https://", 8) == 0)
		p = u + 8;
	else {
		snprintf(err, errlen, "'%s' is not an http(s) URL", u);
		return -1;
	}
	const char *colon = strrchr(p, ':');
	if (colon == NULL || colon == p) {
		snprintf(err, errlen, "'%s' needs host:port", u);
		return -1;
	}
	int64_t port;
	if (op_parse_int(colon + 1, 1, 65535, &port) < 0) {
		snprintf(err, errlen, "'%s' has no valid port", u);
		return -1;
	}
	for (const char *q = p; q < colon; q++) {
		if (*q == '/' || *q == '?' || *q == '#' || *q == '@' || isspace((unsigned char)*q)) {
			snprintf(err, errlen, "'%s' must be scheme://host:port only", u);
			return -1;
		}
	}
	return 0;
}

int
etcd_client_init(struct etcd_client *c, const char *urls, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->timeout_ms = ETCD_TIMEOUT_MS;
	c->connect_timeout_ms = ETCD_CONNECT_TIMEOUT_MS;
	if (urls == NULL || urls[0] == '\0') {
		snprintf(err, errlen, "no etcd endpoint");
		return -1;
	}
	const char *p = urls;
	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char one[ETCD_URL_MAX];
		while (n > 0 && isspace((unsigned char)*p)) {
			p++;
			n--;
		}
		while (n > 0 && isspace((unsigned char)p[n - 1]))
			n--;
		if (n == 0) {
			snprintf(err, errlen, "empty entry in the endpoint list");
			return -1;
		}
		if (n >= sizeof(one)) {
			snprintf(err, errlen, "endpoint longer than %d bytes", ETCD_URL_MAX - 1);
			return -1;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (n > 0 && one[n - 1] == '/')
			one[--n] = '\0';
		if (endpoint_ok(one, err, errlen) < 0)
			return -1;
		if (c->n == ETCD_MAX_ENDPOINTS) {
			snprintf(err, errlen, "more than %d endpoints", ETCD_MAX_ENDPOINTS);
			return -1;
		}
		op_strlcpy(c->urls[c->n++], one, ETCD_URL_MAX);
		if (comma == NULL)
			break;
		p = comma + 1;
		if (*p == '\0') {
			snprintf(err, errlen, "empty entry in the endpoint list");
			return -1;
		}
	}
	return 0;
}

void
etcd_client_url(const struct etcd_client *c, size_t i, const char *path, char *out,
    size_t outlen)
{
	snprintf(out, outlen, "%s%s", c->n ? c->urls[i % c->n] : "", path);
}

void
etcd_client_failed(struct etcd_client *c, size_t i)
{
	if (c->n > 0 && c->cur == i % c->n)
		c->cur = (i + 1) % c->n;
}

void
etcd_client_answered(struct etcd_client *c, size_t i)
{
	if (c->n > 0)
		c->cur = i % c->n;
}

/* ------------------------------------------------------ sync transport */

int
etcd_call(struct etcd_client *c, enum etcd_call call, const char *body, struct etcd_resp *r)
{
	char url[ETCD_URL_MAX + 64], terr[512] = "";
	size_t start = c->cur;

	if (c->n == 0 || body == NULL) {
		memset(r, 0, sizeof(*r));
		return fail(r, ETCD_E_ARG, "%s", c->n == 0 ? "no endpoint" : "no request body");
	}
	for (size_t k = 0; k < c->n; k++) {
		size_t i = (start + k) % c->n;
		struct op_http_req q = { .method = "POST", .body = body,
			.timeout_ms = c->timeout_ms, .connect_timeout_ms = c->connect_timeout_ms };
		etcd_client_url(c, i, etcd_call_path(call), url, sizeof(url));
		q.url = url;
		if (op_http_do(&q) < 0 || q.status == 0) {
			size_t used = strlen(terr);
			snprintf(terr + used, sizeof(terr) - used, "%s%s: %s", used ? "; " : "",
			    c->urls[i], q.err);
			op_http_req_reset(&q);
			etcd_client_failed(c, i);
			continue;
		}
		etcd_client_answered(c, i);
		int rc = etcd_parse(call, q.status, q.resp, q.resp_len, NULL, r);
		op_http_req_reset(&q);
		return rc;
	}
	return etcd_parse(call, 0, NULL, 0, terr, r);
}

int
etcd_fence_check(struct etcd_client *c, const char *key, int64_t term, struct etcd_resp *r)
{
	char err[128];
	char *body = etcd_build_fence(key, term, err, sizeof(err));

	if (body == NULL) {
		memset(r, 0, sizeof(*r));
		return fail(r, ETCD_E_ARG, "%s", err);
	}
	int rc = etcd_call(c, ETCD_TXN, body, r);
	free(body);
	return rc;
}

/* ----------------------------------------------------- async transport */

struct etcd_areq {
	struct ahttp *h;
	struct etcd_client *c;
	enum etcd_call call;
	char *body;
	size_t start, tried;
	struct ahttp_req *req;
	etcd_done_fn done;
	void *arg;
	char terr[512];
};

static int areq_start(struct etcd_areq *q, char *err, size_t errlen);

static void
areq_finish(struct etcd_areq *q, long status, const char *body, size_t len)
{
	struct etcd_resp r;
	int rc = etcd_parse(q->call, status, body, len, q->terr, &r);

	q->done(rc, &r, q->arg);
	etcd_resp_free(&r);
	free(q->body);
	free(q);
}

static void
areq_done(struct ahttp_req *req, long status, const char *body, size_t len, const char *err,
    void *arg)
{
	struct etcd_areq *q = arg;
	size_t i = (q->start + q->tried - 1) % q->c->n;

	q->req = NULL;
	if (status != 0) {
		etcd_client_answered(q->c, i);
		areq_finish(q, status, body, len);
		return;
	}
	size_t used = strlen(q->terr);
	snprintf(q->terr + used, sizeof(q->terr) - used, "%s%s: %s", used ? "; " : "",
	    q->c->urls[i], err ? err : "no answer");
	etcd_client_failed(q->c, i);
	char serr[128];
	if (q->tried < q->c->n && areq_start(q, serr, sizeof(serr)) == 0)
		return;
	areq_finish(q, 0, NULL, 0);
}

static int
areq_start(struct etcd_areq *q, char *err, size_t errlen)
{
	char url[ETCD_URL_MAX + 64];
	size_t i = (q->start + q->tried) % q->c->n;

	q->tried++;
	etcd_client_url(q->c, i, etcd_call_path(q->call), url, sizeof(url));
	q->req = ahttp_request(q->h, "POST", url, q->body, strlen(q->body), NULL, q->c->timeout_ms,
	    areq_done, q, err, errlen);
	return q->req ? 0 : -1;
}

struct etcd_areq *
etcd_async_call(struct ahttp *h, struct etcd_client *c, enum etcd_call call, const char *body,
    etcd_done_fn done, void *arg, char *err, size_t errlen)
{
	if (c->n == 0 || body == NULL) {
		snprintf(err, errlen, "%s", c->n == 0 ? "no endpoint" : "no request body");
		return NULL;
	}
	struct etcd_areq *q = calloc(1, sizeof(*q));
	if (q == NULL || (q->body = strdup(body)) == NULL) {
		free(q);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	q->h = h;
	q->c = c;
	q->call = call;
	q->start = c->cur;
	q->done = done;
	q->arg = arg;
	if (areq_start(q, err, errlen) < 0) {
		free(q->body);
		free(q);
		return NULL;
	}
	return q;
}

void
etcd_async_cancel(struct etcd_areq *q)
{
	if (q == NULL)
		return;
	if (q->req != NULL)
		ahttp_cancel(q->req);
	free(q->body);
	free(q);
}

int
etcd_segment_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > ETCD_SEGMENT_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
			return 0;
	}
	return 1;
}

int
etcd_leader_key(const char *cluster, const char *subject, char *out, size_t outlen)
{
	if (!etcd_segment_ok(cluster) || !etcd_segment_ok(subject))
		return -1;
	int n = snprintf(out, outlen, "/operatord/%s/leader/%s", cluster, subject);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
