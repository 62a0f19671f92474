#include "protocol/msg.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"

static const char *const msg_names[] = {
	"invalid",
#define OP_MSG_NAME(e, name, keys) name,
	OP_MSG_TYPES(OP_MSG_NAME)
#undef OP_MSG_NAME
};

static const char *const msg_required[] = {
	"",
#define OP_MSG_KEYS(e, name, keys) keys,
	OP_MSG_TYPES(OP_MSG_KEYS)
#undef OP_MSG_KEYS
};

const char *
op_msg_type_name(enum op_msg_type t)
{
	if ((int)t <= 0 || t >= OP_MSG_COUNT)
		return "invalid";
	return msg_names[t];
}

enum op_msg_type
op_msg_type_from_name(const char *name, size_t len)
{
	for (int i = 1; i < OP_MSG_COUNT; i++)
		if (strlen(msg_names[i]) == len && memcmp(msg_names[i], name, len) == 0)
			return (enum op_msg_type)i;
	return OP_MSG_INVALID;
}

void
op_msg_init(struct op_msg *m, enum op_msg_type type, uint64_t id, json_object *body)
{
	m->v = OP_PROTO_VERSION;
	m->type = type;
	m->id = id;
	m->ts = op_wall_ms();
	m->body = body ? body : json_object_new_object();
}

void
op_msg_clear(struct op_msg *m)
{
	json_object_put(m->body);
	memset(m, 0, sizeof(*m));
}

static void
mp_pack_cstr(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void
op_mp_pack_json(msgpack_packer *pk, json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		msgpack_pack_nil(pk);
		break;
	case json_type_boolean:
		if (json_object_get_boolean(o))
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		break;
	case json_type_double:
		msgpack_pack_double(pk, json_object_get_double(o));
		break;
	case json_type_int:
		/* json-c keeps large unsigned values exactly; keep them unsigned on the wire. */
		if (json_object_get_int64(o) == INT64_MAX &&
		    json_object_get_uint64(o) > (uint64_t)INT64_MAX)
			msgpack_pack_uint64(pk, json_object_get_uint64(o));
		else
			msgpack_pack_int64(pk, json_object_get_int64(o));
		break;
	case json_type_string:
		mp_pack_cstr(pk, json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(o);
		msgpack_pack_array(pk, n);
		for (size_t i = 0; i < n; i++)
			op_mp_pack_json(pk, json_object_array_get_idx(o, i));
		break;
	}
	case json_type_object:
		msgpack_pack_map(pk, (size_t)json_object_object_length(o));
		json_object_object_foreach(o, k, v)
		{
			mp_pack_cstr(pk, k, strlen(k));
			op_mp_pack_json(pk, v);
		}
		break;
	}
}

int
op_msg_encode(const struct op_msg *m, msgpack_sbuffer *sbuf)
{
	msgpack_packer pk;
	size_t start = sbuf->size;
	const char *tn = op_msg_type_name(m->type);

	msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 5);
	mp_pack_cstr(&pk, "v", 1);
	msgpack_pack_uint32(&pk, m->v);
	mp_pack_cstr(&pk, "type", 4);
	mp_pack_cstr(&pk, tn, strlen(tn));
	mp_pack_cstr(&pk, "id", 2);
	msgpack_pack_uint64(&pk, m->id);
	mp_pack_cstr(&pk, "ts", 2);
	msgpack_pack_int64(&pk, m->ts);
	mp_pack_cstr(&pk, "body", 4);
	if (m->body != NULL)
		op_mp_pack_json(&pk, m->body);
	else
		msgpack_pack_map(&pk, 0);
	if (sbuf->size - start > OP_MSG_MAX) {
		sbuf->size = start;
		return -1;
	}
	return 0;
}

/* Walks the msgpack bytes without allocating and checks that every declared
 * container count and string length fits in what remains. msgpack-c would
 * otherwise allocate count * sizeof(msgpack_object) up front (5 hostile bytes
 * can ask it for ~96 GB). */
struct mp_scan {
	const uint8_t *p, *end;
	size_t items;
	char *err;
	size_t errlen;
};

static int
mp_need(struct mp_scan *s, size_t n)
{
	if ((size_t)(s->end - s->p) < n) {
		snprintf(s->err, s->errlen, "truncated frame");
		return -1;
	}
	return 0;
}

static uint64_t
mp_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static int mp_scan_value(struct mp_scan *s, int depth);

static int
mp_scan_skip(struct mp_scan *s, size_t n)
{
	if (mp_need(s, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int
mp_scan_container(struct mp_scan *s, uint64_t count, int per, int depth)
{
	/* Each element takes at least one byte, so a count beyond the bytes left is a lie. */
	if (count > (uint64_t)(s->end - s->p) / (uint64_t)per) {
		snprintf(s->err, s->errlen, "declared %s of %llu elements exceeds frame size",
		    per == 2 ? "map" : "array", (unsigned long long)count);
		return -1;
	}
	if (depth >= OP_MSG_MAX_DEPTH) {
		snprintf(s->err, s->errlen, "nesting deeper than %d", OP_MSG_MAX_DEPTH);
		return -1;
	}
	for (uint64_t i = 0; i < count * (uint64_t)per; i++)
		if (mp_scan_value(s, depth + 1) != 0)
			return -1;
	return 0;
}

static int
mp_scan_len(struct mp_scan *s, int lenbytes, uint64_t *len)
{
	if (mp_need(s, (size_t)lenbytes) != 0)
		return -1;
	*len = mp_be(s->p, lenbytes);
	s->p += lenbytes;
	return 0;
}

static int
mp_scan_value(struct mp_scan *s, int depth)
{
	uint64_t len;
	uint8_t b;

	if (mp_need(s, 1) != 0)
		return -1;
	if (++s->items > OP_MSG_MAX_ITEMS) {
		snprintf(s->err, s->errlen, "more than %d values in one frame", OP_MSG_MAX_ITEMS);
		return -1;
	}
	b = *s->p++;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return 0; /* fixint, nil, bool */
	if ((b & 0xe0) == 0xa0)
		return mp_scan_skip(s, b & 0x1f);
	if ((b & 0xf0) == 0x90)
		return mp_scan_container(s, b & 0x0f, 1, depth);
	if ((b & 0xf0) == 0x80)
		return mp_scan_container(s, b & 0x0f, 2, depth);
	switch (b) {
	case 0xcc: case 0xd0: return mp_scan_skip(s, 1);
	case 0xcd: case 0xd1: return mp_scan_skip(s, 2);
	case 0xca: case 0xce: case 0xd2: return mp_scan_skip(s, 4);
	case 0xcb: case 0xcf: case 0xd3: return mp_scan_skip(s, 8);
	case 0xd9: case 0xc4: /* str8, bin8 */
		return mp_scan_len(s, 1, &len) ? -1 : mp_scan_skip(s, len);
	case 0xda: case 0xc5:
		return mp_scan_len(s, 2, &len) ? -1 : mp_scan_skip(s, len);
	case 0xdb: case 0xc6:
		return mp_scan_len(s, 4, &len) ? -1 : mp_scan_skip(s, len);
	case 0xdc:
		return mp_scan_len(s, 2, &len) ? -1 : mp_scan_container(s, len, 1, depth);
	case 0xdd:
		return mp_scan_len(s, 4, &len) ? -1 : mp_scan_container(s, len, 1, depth);
	case 0xde:
		return mp_scan_len(s, 2, &len) ? -1 : mp_scan_container(s, len, 2, depth);
	case 0xdf:
		return mp_scan_len(s, 4, &len) ? -1 : mp_scan_container(s, len, 2, depth);
	case 0xd4: return mp_scan_skip(s, 2);  /* fixext 1 */
	case 0xd5: return mp_scan_skip(s, 3);
	case 0xd6: return mp_scan_skip(s, 5);
	case 0xd7: return mp_scan_skip(s, 9);
	case 0xd8: return mp_scan_skip(s, 17);
	case 0xc7: return mp_scan_len(s, 1, &len) ? -1 : mp_scan_skip(s, len + 1);
	case 0xc8: return mp_scan_len(s, 2, &len) ? -1 : mp_scan_skip(s, len + 1);
	case 0xc9: return mp_scan_len(s, 4, &len) ? -1 : mp_scan_skip(s, len + 1);
	default:
		snprintf(s->err, s->errlen, "invalid msgpack byte 0x%02x", b);
		return -1;
	}
}

int
op_mp_prescan(const uint8_t *buf, size_t len, size_t *consumed, char *err, size_t errlen)
{
	struct mp_scan s = {.p = buf, .end = buf + len, .err = err, .errlen = errlen};

	if (mp_scan_value(&s, 0) != 0)
		return -1;
	*consumed = (size_t)(s.p - buf);
	return 0;
}

json_object *
op_mp_to_json(const msgpack_object *o, char *err, size_t errlen)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return NULL;
	case MSGPACK_OBJECT_BOOLEAN:
		return json_object_new_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return json_object_new_uint64(o->via.u64);
		return json_object_new_int64((int64_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_object_new_int64(o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_object_new_double(o->via.f64);
	case MSGPACK_OBJECT_STR:
		return json_object_new_string_len(o->via.str.ptr, (int)o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return json_object_new_string_len(o->via.bin.ptr, (int)o->via.bin.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_object *a = json_object_new_array_ext((int)o->via.array.size);
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_object_array_add(a, op_mp_to_json(&o->via.array.ptr[i], err, errlen));
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_object *m = json_object_new_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0 ||
			    k->via.str.size > 256 || memchr(k->via.str.ptr, '\0', k->via.str.size)) {
				snprintf(err, errlen, "map key is not a short string");
				json_object_put(m);
				return NULL; /* err is set: the caller drops the whole frame */
			}
			char key[257];
			memcpy(key, k->via.str.ptr, k->via.str.size);
			key[k->via.str.size] = '\0';
			json_object *v = op_mp_to_json(&o->via.map.ptr[i].val, err, errlen);
			json_object_object_add(m, key, v);
		}
		return m;
	}
	case MSGPACK_OBJECT_EXT:
	default:
		snprintf(err, errlen, "unsupported msgpack type %d", (int)o->type);
		return NULL;
	}
}

static const msgpack_object *
mp_map_get(const msgpack_object *map, const char *key)
{
	size_t kl = strlen(key);

	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
		    memcmp(k->via.str.ptr, key, kl) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

static int
msg_check_required(const struct op_msg *m, char *err, size_t errlen)
{
	const char *p = msg_required[m->type];

	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char key[64];
		snprintf(key, sizeof(key), "%.*s", (int)n, p);
		if (!json_object_object_get_ex(m->body, key, NULL)) {
			snprintf(err, errlen, "%s frame lacks body key \"%s\"",
			    op_msg_type_name(m->type), key);
			return -1;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

int
op_msg_decode(const void *buf, size_t len, struct op_msg *m, char *err, size_t errlen)
{
	msgpack_unpacked u;
	size_t used = 0, off = 0;
	const msgpack_object *f;
	int rc = -1;

	memset(m, 0, sizeof(*m));
	err[0] = '\0';
	if (len == 0) {
		snprintf(err, errlen, "empty frame");
		return -1;
	}
	if (len > OP_MSG_MAX) {
		snprintf(err, errlen, "frame of %zu bytes exceeds the %u byte limit", len, OP_MSG_MAX);
		return -1;
	}
	if (op_mp_prescan(buf, len, &used, err, errlen) != 0)
		return -1;
	if (used != len) {
		snprintf(err, errlen, "%zu trailing bytes after the frame", len - used);
		return -1;
	}
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS) {
		snprintf(err, errlen, "malformed msgpack");
		goto out;
	}
	if (u.data.type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "frame is not a map");
		goto out;
	}
	f = mp_map_get(&u.data, "v");
	if (f == NULL || f->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		snprintf(err, errlen, "frame lacks protocol version \"v\"");
		goto out;
	}
	if (f->via.u64 != OP_PROTO_VERSION) {
		snprintf(err, errlen, "unsupported protocol version %llu (speak %d)",
		    (unsigned long long)f->via.u64, OP_PROTO_VERSION);
		goto out;
	}
	m->v = OP_PROTO_VERSION;
	f = mp_map_get(&u.data, "type");
	if (f == NULL || f->type != MSGPACK_OBJECT_STR) {
		snprintf(err, errlen, "frame lacks a string \"type\"");
		goto out;
	}
	m->type = op_msg_type_from_name(f->via.str.ptr, f->via.str.size);
	if (m->type == OP_MSG_INVALID) {
		snprintf(err, errlen, "unknown message type \"%.*s\"",
		    (int)(f->via.str.size > 40 ? 40 : f->via.str.size), f->via.str.ptr);
		goto out;
	}
	f = mp_map_get(&u.data, "id");
	if (f == NULL || f->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		snprintf(err, errlen, "frame lacks an unsigned \"id\"");
		goto out;
	}
	m->id = f->via.u64;
	f = mp_map_get(&u.data, "ts");
	if (f != NULL && f->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		m->ts = (int64_t)f->via.u64;
	else if (f != NULL && f->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		m->ts = f->via.i64;
	f = mp_map_get(&u.data, "body");
	if (f == NULL || f->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "frame lacks a map \"body\"");
		goto out;
	}
	m->body = op_mp_to_json(f, err, errlen);
	if (err[0] != '\0')
		goto out;
	if (msg_check_required(m, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	msgpack_unpacked_destroy(&u);
	if (rc != 0) {
		json_object_put(m->body);
		memset(m, 0, sizeof(*m));
		if (err[0] == '\0')
			snprintf(err, errlen, "malformed frame");
	}
	return rc;
}
