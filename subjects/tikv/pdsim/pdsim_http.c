/* pdsim_http: PD's v1 HTTP API over libevent evhttp, with PD's two renderers
 * (indented JSON + "\n" as application/json, compact region bodies as
 * application/octet-stream), its omitempty rules and its error bodies, plus
 * the simulator's own endpoints under /pdsim/. */
#include "subjects/tikv/pdsim/pdsim.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"

#define CT_JSON "application/json; charset=UTF-8"
#define CT_OCTET "application/octet-stream"
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"
#define API "/pd/api/v1/"
#define MAX_SEGS 8
#define MAX_BODY (1 << 20)    /* bytes; PD requests are tiny */
#define SIM_VERSION "8.5.0"   /* the PD/TiKV version pdsim imitates */

struct sim_server {
	struct sim_cluster *c;
	struct evhttp *http;
	int port;
	char bind[64];
	sim_store_action_fn fn;
	void *fn_arg;
};

struct rq {
	struct evhttp_request *req;
	struct sim_server *srv;
	struct sim_cluster *c;
	int method;               /* EVHTTP_REQ_* */
	const char *query;        /* raw, may be NULL */
	char *segs[MAX_SEGS];     /* path segments after the prefix */
	int nsegs;
	char *body;               /* NUL-terminated copy */
	size_t body_len;
	int64_t now;
};

/* --------------------------------------------------------------- replies */

static const char *
reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

static void
free_cb(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

/* Sends b (ownership moves to libevent, so 100k-region bodies are not copied). */
static void
reply_sbuf(struct evhttp_request *req, int code, const char *ctype, struct sbuf *b)
{
	struct evbuffer *out = evbuffer_new();

	if (b->oom) {
		sb_free(b);
		evhttp_send_error(req, 500, "out of memory");
		evbuffer_free(out);
		return;
	}
	if (ctype != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	if (b->len > 0) {
		evbuffer_add_reference(out, b->p, b->len, free_cb, NULL);
		b->p = NULL;
	}
	sb_free(b);
	evhttp_send_reply(req, code, reason(code), out);
	evbuffer_free(out);
}

static void
reply_raw(struct evhttp_request *req, int code, const char *ctype, const char *s)
{
	struct sbuf b = {0};

	sb_puts(&b, s);
	reply_sbuf(req, code, ctype, &b);
}

/* rd.JSON(w, code, "message"): a JSON string and "\n". */
static void
reply_jstr(struct evhttp_request *req, int code, const char *msg)
{
	struct sbuf b = {0};

	if (msg == NULL)
		sb_puts(&b, "null");
	else
		sb_json_str(&b, msg);
	sb_putc(&b, '\n');
	reply_sbuf(req, code, CT_JSON, &b);
}

/* apiutil.ErrorResp for bad input: errcode JSON, indented, with TiDB-Error-Code. */
static void
reply_errcode(struct evhttp_request *req, const char *msg, long offset)
{
	struct sbuf b = {0};
	struct jw w;

	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "code");
	jw_str(&w, "input");
	jw_key(&w, "msg");
	jw_str(&w, msg);
	jw_key(&w, "data");
	jw_obj(&w);
	if (offset >= 0) {
		jw_key(&w, "Offset");
		jw_i64(&w, offset);
	}
	jw_obj_end(&w);
	jw_obj_end(&w);
	sb_putc(&b, '\n');
	evhttp_add_header(evhttp_request_get_output_headers(req), "TiDB-Error-Code", "input");
	reply_sbuf(req, 400, CT_JSON, &b);
}

static void
reply_jw(struct evhttp_request *req, int code, struct sbuf *b)
{
	sb_putc(b, '\n');
	reply_sbuf(req, code, CT_JSON, b);
}

static void
reply_404_page(struct evhttp_request *req)
{
	reply_raw(req, 404, CT_TEXT, "404 page not found\n");
}

/* ---------------------------------------------------------- small parsing */

/* Finds the value of key in a raw query string; "" for a bare "key". */
static int
query_get(const char *q, const char *key, int nth, char *out, size_t len)
{
	size_t kl = strlen(key);
	int seen = 0;

	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		if (n >= kl && strncmp(q, key, kl) == 0 && (n == kl || q[kl] == '=')) {
			if (seen++ == nth) {
				char tmp[256];
				size_t vl = n == kl ? 0 : n - kl - 1;
				if (vl >= sizeof(tmp))
					vl = sizeof(tmp) - 1;
				memcpy(tmp, q + kl + (n == kl ? 0 : 1), vl);
				tmp[vl] = '\0';
				char *dec = evhttp_uridecode(tmp, 1, NULL);
				op_strlcpy(out, dec ? dec : tmp, len);
				free(dec);
				return 1;
			}
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* strconv.ParseUint semantics, for messages that quote Go's error. */
static int
parse_id(const char *s, uint64_t *id)
{
	return op_parse_u64(s, id) == 0 ? 0 : -1;
}

static void
go_parse_err(char *out, size_t len, const char *fn, const char *s)
{
	snprintf(out, len, "strconv.%s: parsing \"%s\": invalid syntax", fn, s);
}

/* Decodes a JSON request body into an object the way apiutil.ReadJSON does;
 * on failure replies (errcode object, or a plain JSON string where PD uses
 * json.Unmarshal directly) and returns NULL. */
static json_object *
body_object(struct rq *x, int errcode)
{
	char msg[256];
	long offset;
	json_object *o = go_json_parse(x->body, x->body_len, msg, sizeof(msg), &offset);

	if (o == NULL) {
		if (errcode)
			reply_errcode(x->req, msg, offset);
		else
			reply_jstr(x->req, 400, msg);
		return NULL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(msg, sizeof(msg), "json: cannot unmarshal %s into Go value of type "
		    "map[string]interface {}", go_json_type(o));
		json_object_put(o);
		if (errcode)
			reply_errcode(x->req, msg, 1);
		else
			reply_jstr(x->req, 400, msg);
		return NULL;
	}
	return o;
}

/* ---------------------------------------------------------------- stores */

static void
write_store(struct jw *w, struct sim_cluster *c, const struct sim_store *s, int64_t now)
{
	char tmp[64];
	int64_t used = s->region_size << 20;

	jw_obj(w);
	jw_key(w, "store");
	jw_obj(w);
	jw_key(w, "id");
	jw_u64(w, s->id);
	if (s->address[0]) {
		jw_key(w, "address");
		jw_str(w, s->address);
	}
	if (s->state != 0) { /* omitempty: Up (0) is left out */
		jw_key(w, "state");
		jw_i64(w, s->state);
	}
	jw_key(w, "version");
	jw_str(w, SIM_VERSION);
	if (s->address[0]) {
		jw_key(w, "peer_address");
		jw_str(w, s->address);
	}
	if (s->status_address[0]) {
		jw_key(w, "status_address");
		jw_str(w, s->status_address);
	}
	jw_key(w, "git_hash");
	jw_str(w, "pdsim");
	jw_key(w, "start_timestamp");
	jw_i64(w, s->start_ts);
	jw_key(w, "deploy_path");
	jw_str(w, "/");
	jw_key(w, "last_heartbeat");
	jw_i64(w, s->last_hb_wall_ns);
	if (s->destroyed) {
		jw_key(w, "physically_destroyed");
		jw_bool(w, 1);
	}
	if (s->node_state != 0) {
		jw_key(w, "node_state");
		jw_i64(w, s->node_state);
	}
	jw_key(w, "state_name");
	jw_str(w, sim_store_state_name(c, s, now));
	jw_obj_end(w);

	jw_key(w, "status");
	jw_obj(w);
	jw_key(w, "capacity");
	go_bytesize(s->capacity, tmp, sizeof(tmp));
	jw_str(w, tmp);
	jw_key(w, "available");
	go_bytesize(s->available > (uint64_t)used ? s->available - (uint64_t)used : 0, tmp,
	    sizeof(tmp));
	jw_str(w, tmp);
	jw_key(w, "used_size");
	go_bytesize((uint64_t)used, tmp, sizeof(tmp));
	jw_str(w, tmp);
	jw_key(w, "leader_count");
	jw_i64(w, s->leader_count);
	jw_key(w, "leader_weight");
	jw_double(w, 1);
	jw_key(w, "leader_score");
	jw_double(w, (double)s->leader_count);
	jw_key(w, "leader_size");
	jw_i64(w, s->leader_size);
	jw_key(w, "region_count");
	jw_i64(w, s->region_count);
	jw_key(w, "region_weight");
	jw_double(w, 1);
	jw_key(w, "region_score");
	jw_double(w, (double)s->region_size);
	jw_key(w, "region_size");
	jw_i64(w, s->region_size);
	if (s->learner_count) {
		jw_key(w, "learner_count");
		jw_i64(w, s->learner_count);
	}
	if (s->pending_count) {
		jw_key(w, "pending_peer_count");
		jw_i64(w, s->pending_count);
	}
	jw_key(w, "slow_score");
	jw_u64(w, 1);
	jw_key(w, "start_ts");
	go_rfc3339nano(s->start_ts * 1000000000, tmp, sizeof(tmp));
	jw_str(w, tmp);
	jw_key(w, "last_heartbeat_ts");
	go_rfc3339nano(s->last_hb_wall_ns, tmp, sizeof(tmp));
	jw_str(w, tmp);
	int64_t up = s->last_hb_wall_ns - s->start_ts * 1000000000;
	if (up > 0) { /* omitted when not positive */
		jw_key(w, "uptime");
		go_duration(up, tmp, sizeof(tmp));
		jw_str(w, tmp);
	}
	jw_obj_end(w);
	jw_obj_end(w);
}

static const char *const state_names[] = {"up", "offline", "tombstone", "down", "disconnected"};

static void
h_stores(struct rq *x, int check)
{
	struct sim_cluster *c = x->c;
	int want_state[3] = {1, 1, 0}; /* default: Up and Offline, no Tombstone */
	int want_name[5] = {0};
	char v[64];
	struct sbuf b = {0};
	struct jw w;

	if (check) {
		int any = 0;
		for (int i = 0; query_get(x->query, "state", i, v, sizeof(v)); i++) {
			size_t k;
			for (k = 0; k < OP_ARRAY_LEN(state_names); k++)
				if (strcasecmp(v, state_names[k]) == 0)
					break;
			if (k == OP_ARRAY_LEN(state_names)) {
				char msg[128];
				snprintf(msg, sizeof(msg), "unknown StoreState: %s", v);
				reply_jstr(x->req, 400, msg);
				return;
			}
			want_name[k] = any = 1;
		}
		if (!any)
			for (size_t k = 0; k < 5; k++)
				want_name[k] = 1;
	} else if (query_get(x->query, "state", 0, v, sizeof(v))) {
		want_state[0] = want_state[1] = 0;
		for (int i = 0; query_get(x->query, "state", i, v, sizeof(v)); i++) {
			int64_t st;
			if (op_parse_int(v, INT32_MIN, INT32_MAX, &st) != 0) {
				char msg[128];
				go_parse_err(msg, sizeof(msg), "Atoi", v);
				reply_jstr(x->req, 500, msg);
				return;
			}
			if (st < 0 || st > 2) {
				char msg[64];
				snprintf(msg, sizeof(msg), "unknown StoreState: %" PRId64, st);
				reply_jstr(x->req, 500, msg);
				return;
			}
			want_state[st] = 1;
		}
	}
	size_t n = 0;
	for (size_t i = 0; i < c->n_stores; i++) {
		const struct sim_store *s = &c->stores[i];
		int keep;
		if (check) {
			const char *nm = sim_store_state_name(c, s, x->now);
			keep = 0;
			for (size_t k = 0; k < 5; k++)
				keep |= want_name[k] && strcasecmp(nm, state_names[k]) == 0;
		} else {
			keep = want_state[s->state];
		}
		n += keep;
	}
	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "count");
	jw_u64(&w, n);
	jw_key(&w, "stores");
	jw_arr(&w);
	for (size_t i = 0; i < c->n_stores; i++) {
		const struct sim_store *s = &c->stores[i];
		int keep;
		if (check) {
			const char *nm = sim_store_state_name(c, s, x->now);
			keep = 0;
			for (size_t k = 0; k < 5; k++)
				keep |= want_name[k] && strcasecmp(nm, state_names[k]) == 0;
		} else {
			keep = want_state[s->state];
		}
		if (keep)
			write_store(&w, c, s, x->now);
	}
	jw_arr_end(&w);
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

static struct sim_store *
store_arg(struct rq *x, const char *s)
{
	uint64_t id;
	char msg[160];
	struct sim_store *st;

	if (parse_id(s, &id) != 0) {
		go_parse_err(msg, sizeof(msg), "ParseUint", s);
		reply_errcode(x->req, msg, -1);
		return NULL;
	}
	if ((st = sim_store_find(x->c, id)) == NULL) {
		snprintf(msg, sizeof(msg), "[PD:core:ErrStoreNotFound]store %" PRIu64 " not found", id);
		reply_jstr(x->req, 404, msg);
	}
	return st;
}

static void
h_store(struct rq *x)
{
	char msg[256], v[64];
	uint64_t id;

	if (x->method == EVHTTP_REQ_GET) {
		struct sim_store *s = store_arg(x, x->segs[1]);
		if (s == NULL)
			return;
		struct sbuf b = {0};
		struct jw w;
		jw_init(&w, &b, 1);
		write_store(&w, x->c, s, x->now);
		reply_jw(x->req, 200, &b);
		return;
	}
	if (parse_id(x->segs[1], &id) != 0) {
		go_parse_err(msg, sizeof(msg), "ParseUint", x->segs[1]);
		reply_errcode(x->req, msg, -1);
		return;
	}
	if (x->nsegs == 3) { /* POST /store/{id}/state?state=Up|Offline */
		int have = query_get(x->query, "state", 0, v, sizeof(v));
		int code = sim_store_set_state(x->c, id, have ? v : "", x->now, msg, sizeof(msg));
		reply_jstr(x->req, code, msg);
		return;
	}
	int force = query_get(x->query, "force", 0, v, sizeof(v));
	int code = sim_store_remove(x->c, id, force, x->now, msg, sizeof(msg));
	reply_jstr(x->req, code, msg);
}

/* --------------------------------------------------------------- regions */

static void
key_hex(struct sbuf *b, size_t i)
{
	/* Raw key "t" + 8-byte big-endian index, as uppercase hex. */
	static const char hex[] = "0123456789ABCDEF";
	char tmp[18] = {'7', '4'};

	for (int k = 0; k < 16; k++)
		tmp[2 + k] = hex[(i >> (60 - 4 * k)) & 15];
	sb_add(b, tmp, sizeof(tmp));
}

static void
write_peer(struct sbuf *b, const struct sim_cluster *c, const struct sim_peer *p)
{
	/* easyjson MetaPeer: role_name, is_learner (if), id, store_id, role (if). */
	if (p->role == SIM_LEARNER)
		sb_puts(b, "{\"role_name\":\"Learner\",\"is_learner\":true,\"id\":");
	else
		sb_puts(b, "{\"role_name\":\"Voter\",\"id\":");
	sb_u64(b, p->id);
	sb_puts(b, ",\"store_id\":");
	sb_u64(b, c->stores[p->store].id);
	if (p->role == SIM_LEARNER)
		sb_puts(b, ",\"role\":1");
	sb_putc(b, '}');
}

static void
write_region(struct sbuf *b, const struct sim_cluster *c, const struct sim_region *r,
    int64_t now)
{
	size_t i = (size_t)(r - c->regions);
	int first;

	sb_puts(b, "{\"id\":");
	sb_u64(b, r->id);
	sb_puts(b, ",\"start_key\":\"");
	if (i > 0)
		key_hex(b, i);
	sb_puts(b, "\",\"end_key\":\"");
	if (i + 1 < c->n_regions)
		key_hex(b, i + 1);
	sb_puts(b, "\",\"epoch\":{");
	first = 1;
	if (r->conf_ver) {
		sb_puts(b, "\"conf_ver\":");
		sb_u64(b, r->conf_ver);
		first = 0;
	}
	if (r->version) {
		sb_puts(b, first ? "\"version\":" : ",\"version\":");
		sb_u64(b, r->version);
	}
	sb_putc(b, '}');
	if (r->n_peers > 0) {
		sb_puts(b, ",\"peers\":[");
		for (int k = 0; k < r->n_peers; k++) {
			if (k)
				sb_putc(b, ',');
			write_peer(b, c, &r->peers[k]);
		}
		sb_putc(b, ']');
	}
	sb_puts(b, ",\"leader\":");
	if (r->leader >= 0)
		write_peer(b, c, &r->peers[r->leader]);
	else
		sb_puts(b, "{\"role_name\":\"\"}");
	first = 1;
	for (int k = 0; k < r->n_peers; k++) {
		const struct sim_peer *p = &r->peers[k];
		if (k == r->leader || !sim_peer_down(c, p, now))
			continue;
		sb_puts(b, first ? ",\"down_peers\":[{\"peer\":" : ",{\"peer\":");
		write_peer(b, c, p);
		uint64_t secs = (uint64_t)(now - c->stores[p->store].last_hb_ms) / 1000;
		if (secs) {
			sb_puts(b, ",\"down_seconds\":");
			sb_u64(b, secs);
		}
		sb_putc(b, '}');
		first = 0;
	}
	if (!first)
		sb_putc(b, ']');
	first = 1;
	for (int k = 0; k < r->n_peers; k++) {
		const struct sim_peer *p = &r->peers[k];
		if (k == r->leader || !sim_peer_pending(c, p, now))
			continue;
		sb_puts(b, first ? ",\"pending_peers\":[" : ",");
		write_peer(b, c, p);
		first = 0;
	}
	if (!first)
		sb_putc(b, ']');
	sb_puts(b, ",\"cpu_usage\":0,\"written_bytes\":0,\"read_bytes\":0,\"written_keys\":0,"
		   "\"read_keys\":0,\"approximate_size\":");
	sb_i64(b, r->size);
	sb_puts(b, ",\"approximate_keys\":");
	sb_i64(b, r->keys);
	sb_putc(b, '}');
}

typedef int (*region_filter)(const struct sim_cluster *c, const struct sim_region *r,
    int64_t now, uint32_t arg);

static void
reply_regions(struct rq *x, region_filter f, uint32_t arg)
{
	struct sim_cluster *c = x->c;
	struct sbuf b = {0};
	size_t n = 0;

	/* RegionsInfo is written by hand in PD: count first, [] when empty. */
	for (size_t i = 0; i < c->n_regions; i++)
		n += f == NULL || f(c, &c->regions[i], x->now, arg);
	sb_puts(&b, "{\"count\":");
	sb_u64(&b, n);
	sb_puts(&b, ",\"regions\":[");
	int first = 1;
	for (size_t i = 0; i < c->n_regions; i++) {
		if (f != NULL && !f(c, &c->regions[i], x->now, arg))
			continue;
		if (!first)
			sb_putc(&b, ',');
		write_region(&b, c, &c->regions[i], x->now);
		first = 0;
	}
	sb_puts(&b, "]}");
	reply_sbuf(x->req, 200, CT_OCTET, &b);
}

static int
f_down(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)a;
	for (int k = 0; k < r->n_peers; k++)
		if (k != r->leader && sim_peer_down(c, &r->peers[k], now))
			return 1;
	return 0;
}

static int
f_pending(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)a;
	for (int k = 0; k < r->n_peers; k++)
		if (k != r->leader && sim_peer_pending(c, &r->peers[k], now))
			return 1;
	return 0;
}

static int
n_voters(const struct sim_region *r)
{
	int n = 0;

	for (int k = 0; k < r->n_peers; k++)
		n += r->peers[k].role == SIM_VOTER;
	return n;
}

static int
f_miss(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)now;
	(void)a;
	return n_voters(r) < c->o->replicas;
}

static int
f_extra(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)now;
	(void)a;
	return r->n_peers > c->o->replicas;
}

static int
f_offline(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)now;
	(void)a;
	for (int k = 0; k < r->n_peers; k++)
		if (c->stores[r->peers[k].store].state == 1)
			return 1;
	return 0;
}

static int
f_learner(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)c;
	(void)now;
	(void)a;
	return n_voters(r) != r->n_peers;
}

static int
f_none(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	(void)c;
	(void)r;
	(void)now;
	(void)a;
	return 0;
}

/* For /regions/store/{id}: arg = store index | kind << 24. */
enum { RS_LEADER = 1, RS_FOLLOWER = 2, RS_LEARNER = 4, RS_PENDING = 8 };

static int
f_store(const struct sim_cluster *c, const struct sim_region *r, int64_t now, uint32_t a)
{
	uint32_t store = a & 0xffffff, kind = a >> 24;

	for (int k = 0; k < r->n_peers; k++) {
		const struct sim_peer *p = &r->peers[k];
		if (p->store != store)
			continue;
		if ((kind & RS_LEADER) && k == r->leader)
			return 1;
		if ((kind & RS_FOLLOWER) && k != r->leader && p->role == SIM_VOTER)
			return 1;
		if ((kind & RS_LEARNER) && p->role == SIM_LEARNER)
			return 1;
		if ((kind & RS_PENDING) && k != r->leader && sim_peer_pending(c, p, now))
			return 1;
	}
	return 0;
}

static void
h_regions_store(struct rq *x)
{
	char msg[160], type[32] = "all";
	int64_t id;
	uint32_t kind;

	if (op_parse_int(x->segs[2], INT32_MIN, INT64_MAX, &id) != 0) {
		go_parse_err(msg, sizeof(msg), "Atoi", x->segs[2]);
		reply_jstr(x->req, 400, msg);
		return;
	}
	query_get(x->query, "type", 0, type, sizeof(type));
	if (strcmp(type, "all") == 0)
		kind = RS_LEADER | RS_FOLLOWER | RS_LEARNER;
	else if (strcmp(type, "leader") == 0)
		kind = RS_LEADER;
	else if (strcmp(type, "follower") == 0)
		kind = RS_FOLLOWER;
	else if (strcmp(type, "learner") == 0)
		kind = RS_LEARNER;
	else if (strcmp(type, "pending") == 0)
		kind = RS_PENDING;
	else if (strcmp(type, "witness") == 0)
		kind = 0;
	else {
		snprintf(msg, sizeof(msg), "unknown sub tree region type %s", type);
		reply_jstr(x->req, 400, msg);
		return;
	}
	/* No existence check in PD: an unknown store has no regions. */
	if (id <= 0 || (uint64_t)id > x->c->n_stores) {
		reply_raw(x->req, 200, CT_OCTET, "{\"count\":0,\"regions\":[]}");
		return;
	}
	uint32_t store = (uint32_t)(id - 1);
	if (kind != (RS_LEADER | RS_FOLLOWER | RS_LEARNER)) {
		reply_regions(x, kind ? f_store : f_none, store | kind << 24);
		return;
	}
	/* type=all lists leaders, then followers, then learners. */
	struct sim_cluster *c = x->c;
	struct sbuf b = {0};
	size_t n = 0;
	for (size_t i = 0; i < c->n_regions; i++)
		n += f_store(c, &c->regions[i], x->now, store | kind << 24);
	sb_puts(&b, "{\"count\":");
	sb_u64(&b, n);
	sb_puts(&b, ",\"regions\":[");
	int first = 1;
	static const uint32_t order[] = {RS_LEADER, RS_FOLLOWER, RS_LEARNER};
	for (size_t o = 0; o < OP_ARRAY_LEN(order); o++) {
		for (size_t i = 0; i < c->n_regions; i++) {
			const struct sim_region *r = &c->regions[i];
			int li = -1;
			for (int k = 0; k < r->n_peers; k++)
				if (r->peers[k].store == store)
					li = k;
			if (li < 0)
				continue;
			uint32_t k = li == r->leader ? RS_LEADER
			    : r->peers[li].role == SIM_LEARNER ? RS_LEARNER : RS_FOLLOWER;
			if (k != order[o])
				continue;
			if (!first)
				sb_putc(&b, ',');
			write_region(&b, c, r, x->now);
			first = 0;
		}
	}
	sb_puts(&b, "]}");
	reply_sbuf(x->req, 200, CT_OCTET, &b);
}

static void
h_region_id(struct rq *x)
{
	uint64_t id;
	char msg[160];

	if (parse_id(x->segs[2], &id) != 0) {
		go_parse_err(msg, sizeof(msg), "ParseUint", x->segs[2]);
		reply_jstr(x->req, 400, msg);
		return;
	}
	const struct sim_region *r = sim_region_find(x->c, id);
	if (r == NULL) {
		if (x->c->o->master_mode) {
			snprintf(msg, sizeof(msg), "[PD:region:ErrRegionNotFound]region %" PRIu64
			    " not found", id);
			reply_jstr(x->req, 404, msg);
			return;
		}
		/* v7.6-v8.5: 200 with a zero-valued region. */
		reply_raw(x->req, 200, CT_OCTET, "{\"id\":0,\"start_key\":\"\",\"end_key\":\"\","
		    "\"leader\":{\"role_name\":\"\"},\"cpu_usage\":0,\"written_bytes\":0,"
		    "\"read_bytes\":0,\"written_keys\":0,\"read_keys\":0,\"approximate_size\":0,"
		    "\"approximate_keys\":0}");
		return;
	}
	struct sbuf b = {0};
	write_region(&b, x->c, r, x->now);
	reply_sbuf(x->req, 200, CT_OCTET, &b);
}

static void
h_regions_check(struct rq *x)
{
	static const struct {
		const char *name;
		region_filter f;
	} t[] = {{"miss-peer", f_miss}, {"extra-peer", f_extra}, {"down-peer", f_down},
	    {"pending-peer", f_pending}, {"offline-peer", f_offline}, {"learner-peer", f_learner},
	    {"empty-region", f_none}, {"oversized-region", f_none}, {"undersized-region", f_none}};

	for (size_t i = 0; i < OP_ARRAY_LEN(t); i++) {
		if (strcmp(x->segs[2], t[i].name) == 0) {
			reply_regions(x, t[i].f, 0);
			return;
		}
	}
	reply_404_page(x->req);
}

static void
h_regions_count(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;

	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "count");
	jw_u64(&w, x->c->n_regions);
	jw_key(&w, "regions");
	jw_null(&w);
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

/* ------------------------------------------------ health, members, cluster */

static void
write_member(struct jw *w, struct sim_server *srv)
{
	char url[128];

	snprintf(url, sizeof(url), "http://%s:%d", srv->bind, srv->port);
	jw_obj(w);
	jw_key(w, "name");
	jw_str(w, "pdsim-0");
	jw_key(w, "member_id");
	jw_u64(w, srv->c->o->member_id);
	jw_key(w, "peer_urls");
	jw_arr(w);
	jw_str(w, url);
	jw_arr_end(w);
	jw_key(w, "client_urls");
	jw_arr(w);
	jw_str(w, url);
	jw_arr_end(w);
	jw_key(w, "deploy_path");
	jw_str(w, "/");
	jw_key(w, "binary_version");
	jw_str(w, "v" SIM_VERSION);
	jw_key(w, "git_hash");
	jw_str(w, "pdsim");
	jw_obj_end(w);
}

static void
h_health(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;
	char url[128];

	snprintf(url, sizeof(url), "http://%s:%d", x->srv->bind, x->srv->port);
	jw_init(&w, &b, 1);
	jw_arr(&w);
	jw_obj(&w);
	jw_key(&w, "name");
	jw_str(&w, "pdsim-0");
	jw_key(&w, "member_id");
	jw_u64(&w, x->c->o->member_id);
	jw_key(&w, "client_urls");
	jw_arr(&w);
	jw_str(&w, url);
	jw_arr_end(&w);
	jw_key(&w, "health");
	jw_bool(&w, 1);
	jw_obj_end(&w);
	jw_arr_end(&w);
	reply_jw(x->req, 200, &b);
}

static void
h_members(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;

	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "header");
	jw_obj(&w);
	jw_key(&w, "cluster_id");
	jw_u64(&w, x->c->o->cluster_id);
	jw_obj_end(&w);
	jw_key(&w, "members");
	jw_arr(&w);
	write_member(&w, x->srv);
	jw_arr_end(&w);
	jw_key(&w, "leader");
	write_member(&w, x->srv);
	jw_key(&w, "etcd_leader");
	write_member(&w, x->srv);
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

static void
h_leader(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;

	jw_init(&w, &b, 1);
	write_member(&w, x->srv);
	reply_jw(x->req, 200, &b);
}

static void
h_cluster(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;

	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "id");
	jw_u64(&w, x->c->o->cluster_id);
	jw_key(&w, "max_peer_count");
	jw_i64(&w, x->c->o->replicas);
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

static void
h_cluster_status(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;
	char t[64];

	go_rfc3339nano(x->c->start_wall_ms * 1000000, t, sizeof(t));
	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "raft_bootstrap_time");
	jw_str(&w, t);
	jw_key(&w, "is_initialized");
	jw_bool(&w, x->c->n_regions > 1 || x->c->n_stores >= (size_t)x->c->o->replicas);
	jw_key(&w, "replication_status");
	jw_str(&w, "");
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

static void
h_config_schedule(struct rq *x)
{
	if (x->method == EVHTTP_REQ_GET) {
		struct sbuf b = {0};
		struct jw w;
		jw_init(&w, &b, 1);
		jw_jsonc(&w, x->c->schedule_cfg);
		reply_jw(x->req, 200, &b);
		return;
	}
	/* POST: PD reports decode errors as a JSON string (json.Unmarshal text). */
	json_object *in = body_object(x, 0);
	char msg[256];
	if (in == NULL)
		return;
	int code = sim_config_update(x->c, in, msg, sizeof(msg));
	json_object_put(in);
	reply_jstr(x->req, code, msg);
}

static void
h_config_replicate(struct rq *x)
{
	struct sbuf b = {0};
	struct jw w;

	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "max-replicas");
	jw_i64(&w, x->c->o->replicas);
	jw_key(&w, "location-labels");
	jw_str(&w, "");
	jw_key(&w, "strictly-match-label");
	jw_str(&w, "false");
	jw_key(&w, "enable-placement-rules");
	jw_str(&w, "true");
	jw_key(&w, "enable-placement-rules-cache");
	jw_str(&w, "false");
	jw_key(&w, "isolation-level");
	jw_str(&w, "");
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

/* ------------------------------------------------------------- operators */

#define OP_NOT_FOUND "[PD:operator:ErrOperatorNotFound]operator not found"

static void
h_operators(struct rq *x)
{
	struct sim_cluster *c = x->c;
	char text[1024], kind[32];

	if (x->method == EVHTTP_REQ_POST) {
		json_object *in = body_object(x, 1);
		char msg[256];
		if (in == NULL)
			return;
		int code = sim_op_create(c, in, x->now, msg, sizeof(msg));
		json_object_put(in);
		reply_jstr(x->req, code, msg);
		return;
	}
	if (x->method == EVHTTP_REQ_DELETE) {
		sim_op_cancel_all(c, x->now);
		reply_jstr(x->req, 200, "All pending operators are canceled.");
		return;
	}
	/* ?kind=admin|leader|region|waiting filters; no match gives null. */
	int want_admin = 0, want_leader = 0, want_region = 0, filtered = 0;
	for (int i = 0; query_get(x->query, "kind", i, kind, sizeof(kind)); i++) {
		filtered = 1;
		want_admin |= strcmp(kind, "admin") == 0;
		want_leader |= strcmp(kind, "leader") == 0;
		want_region |= strcmp(kind, "region") == 0;
	}
	struct sbuf b = {0};
	struct jw w;
	size_t n = 0;
	jw_init(&w, &b, 1);
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			if (filtered && n == 0) {
				jw_null(&w);
				break;
			}
			jw_arr(&w);
		}
		for (size_t i = 0; i < c->n_ops; i++) {
			const struct sim_op *op = &c->ops[i];
			int is_leader = op->kind == OPK_TRANSFER_LEADER;
			if (filtered && !want_admin && !(want_leader && is_leader) &&
			    !(want_region && !is_leader))
				continue;
			if (pass == 0) {
				n++;
				continue;
			}
			sim_op_string(c, op, 0, text, sizeof(text));
			jw_str(&w, text);
		}
		if (pass == 1)
			jw_arr_end(&w);
	}
	reply_jw(x->req, 200, &b);
}

static void
h_operator_records(struct rq *x)
{
	struct sim_cluster *c = x->c;
	char from_s[32], text[1024];
	int64_t from = 0;

	if (query_get(x->query, "from", 0, from_s, sizeof(from_s)))
		op_parse_int(from_s, 0, INT64_MAX, &from);
	struct sbuf b = {0};
	struct jw w;
	size_t n = 0;
	jw_init(&w, &b, 1);
	jw_arr(&w);
	for (size_t k = 0; k < c->n_records; k++) {
		const struct sim_op *op = &c->records[k];
		if (x->now - op->end_ms > c->o->record_ms || op->create_wall_ms / 1000 < from)
			continue;
		sim_op_string(c, op, 1, text, sizeof(text));
		jw_str(&w, text);
		n++;
	}
	jw_arr_end(&w);
	if (n == 0) {
		sb_free(&b);
		reply_jstr(x->req, 500, OP_NOT_FOUND);
		return;
	}
	reply_jw(x->req, 200, &b);
}

static void
h_operator_region(struct rq *x)
{
	uint64_t id;
	char msg[1100];

	if (parse_id(x->segs[1], &id) != 0) {
		go_parse_err(msg, sizeof(msg), "ParseUint", x->segs[1]);
		reply_jstr(x->req, 400, msg);
		return;
	}
	if (x->method == EVHTTP_REQ_DELETE) {
		if (sim_op_cancel(x->c, id, x->now) != 0)
			reply_jstr(x->req, 500, OP_NOT_FOUND);
		else
			reply_jstr(x->req, 200, "The pending operator is canceled.");
		return;
	}
	const struct sim_op *op = sim_op_lookup(x->c, id, x->now);
	if (op == NULL) {
		reply_jstr(x->req, 500, OP_NOT_FOUND);
		return;
	}
	sim_op_string(x->c, op, 1, msg, sizeof(msg));
	reply_jstr(x->req, 200, msg);
}

/* ------------------------------------------------------------ schedulers */

static void
h_schedulers(struct rq *x)
{
	struct sim_cluster *c = x->c;

	if (x->method == EVHTTP_REQ_POST) {
		json_object *in = body_object(x, 1);
		char buf[256];
		const char *msg;
		if (in == NULL)
			return;
		int code = sim_scheduler_add(c, in, &msg, buf, sizeof(buf));
		json_object_put(in);
		reply_jstr(x->req, code, msg);
		return;
	}
	char st[32];
	struct sbuf b = {0};
	struct jw w;
	jw_init(&w, &b, 1);
	jw_arr(&w);
	if (!query_get(x->query, "status", 0, st, sizeof(st))) {
		/* The order PD's map iteration happened to give in the fixture. */
		static const int order[] = {0, 1, -1, 3, 2, 4};
		for (size_t i = 0; i < OP_ARRAY_LEN(order); i++) {
			if (order[i] < 0) {
				if (sim_evicting(c))
					jw_str(&w, "evict-leader-scheduler");
			} else if (c->sched_enabled[order[i]]) {
				jw_str(&w, sim_default_schedulers[order[i]]);
			}
		}
	}
	jw_arr_end(&w);
	reply_jw(x->req, 200, &b);
}

static void
h_scheduler_name(struct rq *x)
{
	char buf[256];
	const char *msg;

	if (x->method == EVHTTP_REQ_DELETE) {
		int code = sim_scheduler_remove(x->c, x->segs[1], &msg, buf, sizeof(buf));
		reply_jstr(x->req, code, msg);
		return;
	}
	/* POST {"delay":N}: pause/resume, accepted but not modelled. */
	json_object *in = body_object(x, 1);
	json_object *d;
	if (in == NULL)
		return;
	int ok = json_object_object_get_ex(in, "delay", &d);
	json_object_put(in);
	reply_jstr(x->req, ok ? 200 : 400, ok ? "Pause or resume the scheduler successfully."
					      : "missing pause time");
}

static void
h_evict_list(struct rq *x)
{
	struct sim_cluster *c = x->c;

	if (!sim_evicting(c)) {
		reply_404_page(x->req);
		return;
	}
	struct sbuf b = {0};
	struct jw w;
	char id[24];
	jw_init(&w, &b, 1);
	jw_obj(&w);
	jw_key(&w, "store-id-ranges");
	jw_obj(&w);
	for (size_t i = 0; i < c->n_stores; i++) {
		if (!c->stores[i].evicted)
			continue;
		snprintf(id, sizeof(id), "%" PRIu64, c->stores[i].id);
		jw_key(&w, id);
		jw_arr(&w);
		jw_obj(&w);
		jw_key(&w, "start-key");
		jw_str(&w, "");
		jw_key(&w, "end-key");
		jw_str(&w, "");
		jw_obj_end(&w);
		jw_arr_end(&w);
	}
	jw_obj_end(&w);
	jw_key(&w, "batch");
	jw_i64(&w, SIM_EVICT_BATCH);
	jw_obj_end(&w);
	reply_jw(x->req, 200, &b);
}

static void
h_ping(struct rq *x)
{
	reply_raw(x->req, 200, NULL, "");
}

/* ----------------------------------------------------------- /pdsim/ API */

void
sim_render_pdsim_stores(struct sim_cluster *c, int64_t now, struct sbuf *b)
{
	struct jw w;

	jw_init(&w, b, 1);
	jw_obj(&w);
	jw_key(&w, "count");
	jw_u64(&w, c->n_stores);
	jw_key(&w, "stores");
	jw_arr(&w);
	for (size_t i = 0; i < c->n_stores; i++) {
		const struct sim_store *s = &c->stores[i];
		jw_obj(&w);
		jw_key(&w, "id");
		jw_u64(&w, s->id);
		jw_key(&w, "pid");
		jw_i64(&w, s->pid);
		jw_key(&w, "last_pid");
		jw_i64(&w, s->last_pid);
		jw_key(&w, "running");
		jw_bool(&w, s->pid > 0);
		jw_key(&w, "restarts");
		jw_i64(&w, s->restarts);
		jw_key(&w, "address");
		jw_str(&w, s->address);
		jw_key(&w, "status_address");
		jw_str(&w, s->status_address);
		jw_key(&w, "state_name");
		jw_str(&w, sim_store_state_name(c, s, now));
		jw_key(&w, "evicted");
		jw_bool(&w, s->evicted);
		jw_key(&w, "leader_count");
		jw_i64(&w, s->leader_count);
		jw_key(&w, "region_count");
		jw_i64(&w, s->region_count);
		jw_key(&w, "ms_since_heartbeat");
		jw_i64(&w, now - s->last_hb_ms);
		jw_obj_end(&w);
	}
	jw_arr_end(&w);
	jw_key(&w, "elections");
	jw_u64(&w, c->elections);
	jw_key(&w, "balance_moves");
	jw_u64(&w, c->balance_moves);
	jw_key(&w, "evict_moves");
	jw_u64(&w, c->evict_moves);
	jw_key(&w, "replacements");
	jw_u64(&w, c->replacements);
	jw_obj_end(&w);
	sb_putc(b, '\n');
}

static void
h_pdsim_stores(struct rq *x)
{
	struct sbuf b = {0};

	sim_render_pdsim_stores(x->c, x->now, &b);
	reply_sbuf(x->req, 200, CT_JSON, &b);
}

static void
h_pdsim_store_action(struct rq *x)
{
	uint64_t id;
	struct sim_store *s;
	char msg[256];

	if (parse_id(x->segs[2], &id) != 0 || (s = sim_store_find(x->c, id)) == NULL) {
		reply_jstr(x->req, 404, "pdsim: no such store");
		return;
	}
	if (x->srv->fn == NULL) {
		reply_jstr(x->req, 409, "pdsim: store processes are disabled (--no-spawn)");
		return;
	}
	int code = x->srv->fn(x->srv->fn_arg, s, x->segs[3], msg, sizeof(msg));
	reply_jstr(x->req, code, msg);
}

/* Store process heartbeat: {"store_id","pid","address","status_address",
 * "start_timestamp","capacity","available"}. */
static void
h_pdsim_heartbeat(struct rq *x)
{
	json_object *in = x->body_len ? json_tokener_parse(x->body) : NULL;
	json_object *v;
	struct sim_store *s = NULL;
	uint64_t id = 0;

	if (in != NULL && json_object_object_get_ex(in, "store_id", &v) &&
	    json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
		id = json_object_get_uint64(v);
	if (in == NULL || (s = sim_store_find(x->c, id)) == NULL) {
		json_object_put(in);
		reply_jstr(x->req, in == NULL ? 400 : 404, "pdsim: bad heartbeat");
		return;
	}
	const char *a = json_object_object_get_ex(in, "address", &v) ? json_object_get_string(v) : NULL;
	if (a != NULL && *a)
		op_strlcpy(s->address, a, sizeof(s->address));
	a = json_object_object_get_ex(in, "status_address", &v) ? json_object_get_string(v) : NULL;
	if (a != NULL && *a)
		op_strlcpy(s->status_address, a, sizeof(s->status_address));
	if (json_object_object_get_ex(in, "start_timestamp", &v))
		s->start_ts = json_object_get_int64(v);
	if (json_object_object_get_ex(in, "capacity", &v) && json_object_get_int64(v) > 0)
		s->capacity = json_object_get_uint64(v);
	if (json_object_object_get_ex(in, "available", &v) && json_object_get_int64(v) > 0)
		s->available = json_object_get_uint64(v);
	json_object_put(in);
	int code = sim_store_heartbeat(x->c, s, x->now);
	struct sbuf b = {0};
	struct jw w;
	jw_init(&w, &b, 0);
	jw_obj(&w);
	jw_key(&w, "leader_count");
	jw_i64(&w, s->leader_count);
	jw_key(&w, "region_count");
	jw_i64(&w, s->region_count);
	jw_key(&w, "state_name");
	jw_str(&w, sim_store_state_name(x->c, s, x->now));
	jw_obj_end(&w);
	reply_jw(x->req, code, &b);
}

/* PD's /metrics subset that alerting uses. */
static void
h_metrics(struct rq *x)
{
	struct sim_cluster *c = x->c;
	static const char *const names[] = {"Up", "Disconnected", "Down", "Offline", "Tombstone"};
	static const char *const types[] = {"store_up_count", "store_disconnected_count",
	    "store_down_count", "store_offline_count", "store_tombstone_count"};
	int64_t counts[5] = {0};
	struct sbuf b = {0};

	for (size_t i = 0; i < c->n_stores; i++) {
		const char *nm = sim_store_state_name(c, &c->stores[i], x->now);
		for (size_t k = 0; k < 5; k++)
			counts[k] += strcmp(nm, names[k]) == 0;
	}
	sb_puts(&b, "# HELP pd_cluster_status Status of the cluster.\n"
		    "# TYPE pd_cluster_status gauge\n");
	for (size_t k = 0; k < 5; k++)
		sb_printf(&b, "pd_cluster_status{type=\"%s\"} %" PRId64 "\n", types[k], counts[k]);
	size_t down = 0, pending = 0, miss = 0;
	for (size_t i = 0; i < c->n_regions; i++) {
		down += (size_t)f_down(c, &c->regions[i], x->now, 0);
		pending += (size_t)f_pending(c, &c->regions[i], x->now, 0);
		miss += (size_t)f_miss(c, &c->regions[i], x->now, 0);
	}
	sb_puts(&b, "# HELP pd_regions_status Status of the regions.\n"
		    "# TYPE pd_regions_status gauge\n");
	sb_printf(&b, "pd_regions_status{type=\"down-peer-region-count\"} %zu\n", down);
	sb_printf(&b, "pd_regions_status{type=\"pending-peer-region-count\"} %zu\n", pending);
	sb_printf(&b, "pd_regions_status{type=\"miss-peer-region-count\"} %zu\n", miss);
	reply_sbuf(x->req, 200, CT_PROM, &b);
}

/* ---------------------------------------------------------------- routing */

#define M_GET EVHTTP_REQ_GET
#define M_POST EVHTTP_REQ_POST
#define M_DEL EVHTTP_REQ_DELETE

struct route {
	const char *pattern;      /* segments; "*" matches one */
	int methods;
	void (*fn)(struct rq *x);
};

static void h_stores_all(struct rq *x) { h_stores(x, 0); }
static void h_stores_check(struct rq *x) { h_stores(x, 1); }
static void h_regions(struct rq *x) { reply_regions(x, NULL, 0); }

static const struct route api_routes[] = {
	{"stores", M_GET, h_stores_all},
	{"stores/check", M_GET, h_stores_check},
	{"store/*", M_GET | M_DEL, h_store},
	{"store/*/state", M_POST, h_store},
	{"regions", M_GET, h_regions},
	{"regions/count", M_GET, h_regions_count},
	{"regions/store/*", M_GET, h_regions_store},
	{"regions/check/*", M_GET, h_regions_check},
	{"region/id/*", M_GET, h_region_id},
	{"health", M_GET, h_health},
	{"ping", M_GET, h_ping},
	{"members", M_GET, h_members},
	{"leader", M_GET, h_leader},
	{"cluster", M_GET, h_cluster},
	{"cluster/status", M_GET, h_cluster_status},
	{"config/schedule", M_GET | M_POST, h_config_schedule},
	{"config/replicate", M_GET, h_config_replicate},
	{"operators", M_GET | M_POST | M_DEL, h_operators},
	{"operators/records", M_GET, h_operator_records},
	{"operators/*", M_GET | M_DEL, h_operator_region},
	{"schedulers", M_GET | M_POST, h_schedulers},
	{"schedulers/*", M_POST | M_DEL, h_scheduler_name},
	{"scheduler-config/evict-leader-scheduler/list", M_GET, h_evict_list},
};

static const struct route sim_routes[] = {
	{"pdsim/heartbeat", M_POST, h_pdsim_heartbeat},
	{"pdsim/stores", M_GET, h_pdsim_stores},
	{"pdsim/stores/*/restart", M_POST, h_pdsim_store_action},
	{"pdsim/stores/*/kill", M_POST, h_pdsim_store_action},
	{"metrics", M_GET, h_metrics},
};

static int
route_match(const char *pattern, struct rq *x)
{
	char pat[128];
	char *save = NULL, *tok;
	int i = 0;

	op_strlcpy(pat, pattern, sizeof(pat));
	for (tok = strtok_r(pat, "/", &save); tok; tok = strtok_r(NULL, "/", &save), i++) {
		if (i >= x->nsegs)
			return 0;
		if (strcmp(tok, "*") != 0 && strcmp(tok, x->segs[i]) != 0)
			return 0;
	}
	return i == x->nsegs;
}

/* Splits path into x->segs in place (buf is modified). */
static void
split_path(char *path, struct rq *x)
{
	char *save = NULL;

	x->nsegs = 0;
	for (char *t = strtok_r(path, "/", &save); t && x->nsegs < MAX_SEGS;
	     t = strtok_r(NULL, "/", &save))
		x->segs[x->nsegs++] = t;
}

static int
dispatch(struct rq *x, const struct route *routes, size_t n)
{
	int path_found = 0;

	for (size_t i = 0; i < n; i++) {
		if (!route_match(routes[i].pattern, x))
			continue;
		path_found = 1;
		if (routes[i].methods & x->method) {
			routes[i].fn(x);
			return 1;
		}
	}
	if (path_found) { /* gorilla/mux: known path, wrong method: 405, empty */
		reply_raw(x->req, 405, NULL, "");
		return 1;
	}
	return 0;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct sim_server *srv = arg;
	struct rq x = {.req = req, .srv = srv, .c = srv->c, .now = op_mono_ms()};
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *p = uri ? evhttp_uri_get_path(uri) : NULL;
	char path[512];

	x.method = (int)evhttp_request_get_command(req);
	x.query = uri ? evhttp_uri_get_query(uri) : NULL;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t blen = evbuffer_get_length(in);
	if (blen > MAX_BODY) {
		reply_jstr(req, 400, "request body too large");
		return;
	}
	x.body = malloc(blen + 1);
	if (x.body == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_copyout(in, x.body, blen);
	x.body[blen] = '\0';
	x.body_len = blen;
	if (p == NULL || strlen(p) >= sizeof(path)) {
		reply_404_page(req);
		free(x.body);
		return;
	}
	op_strlcpy(path, p, sizeof(path));
	int handled = 0;
	if (strncmp(path, API, sizeof(API) - 1) == 0) {
		split_path(path + sizeof(API) - 1, &x);
		handled = dispatch(&x, api_routes, OP_ARRAY_LEN(api_routes));
	} else {
		split_path(path, &x);
		handled = dispatch(&x, sim_routes, OP_ARRAY_LEN(sim_routes));
	}
	if (!handled)
		reply_404_page(req);
	free(x.body);
}

struct sim_server *
sim_http_start(struct event_base *base, struct sim_cluster *c, const char *bind, int port,
    int *bound_port, sim_store_action_fn fn, void *fn_arg)
{
	struct sim_server *srv = calloc(1, sizeof(*srv));
	struct evhttp *http = evhttp_new(base);
	struct evhttp_bound_socket *h;

	if (srv == NULL || http == NULL) {
		free(srv);
		if (http)
			evhttp_free(http);
		return NULL;
	}
	srv->c = c;
	srv->http = http;
	srv->fn = fn;
	srv->fn_arg = fn_arg;
	op_strlcpy(srv->bind, bind, sizeof(srv->bind));
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, on_request, srv);
	h = evhttp_bind_socket_with_handle(http, bind, (ev_uint16_t)port);
	if (h == NULL) {
		log_err("cannot listen on %s:%d", bind, port);
		evhttp_free(http);
		free(srv);
		return NULL;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	*bound_port = srv->port;
	return srv;
}

void
sim_http_stop(struct sim_server *srv)
{
	if (srv == NULL)
		return;
	evhttp_free(srv->http);
	free(srv);
}
