/* ha_node: the election machine (ha_elect.c) driven on a libevent loop.
 *
 * Every etcd request is asynchronous (etcd_async_call over ahttp), so the
 * supervisor's loop never waits on etcd, however slow or dead it is. The
 * machine gets the clock at each answer and at its own next due time. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/ahttp.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/ha.h"

#define HA_REVOKE_EXIT_TIMEOUT_MS 500 /* the last revoke at exit may block this long */
#define HA_LOG_REPEAT_MS 10000        /* the same etcd failure is logged at most this often */

struct ha_call;

struct ha_node {
	struct event_base *base;
	struct ahttp *http;
	struct etcd_client client;
	struct ha_config cfg;
	struct ha_elect e;
	struct event *timer;
	ha_event_fn fn;
	void *arg;
	int paused;
	int draining;
	char last_logged[160];        /* the last failure logged, and when */
	int64_t last_logged_mono;
	struct ha_call *calls;        /* in flight */
	size_t ncalls;
};

struct ha_call {
	struct ha_node *n;
	enum ha_out_kind kind;
	size_t subject;
	int64_t lease;
	int64_t sent;
	struct etcd_areq *q;
	struct ha_call *prev, *next;
};

static void node_drain(struct ha_node *n);

static void
call_unlink(struct ha_node *n, struct ha_call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		n->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	n->ncalls--;
}

static void
node_arm(struct ha_node *n)
{
	if (n->paused || n->timer == NULL)
		return;
	int64_t now = op_mono_ms();
	int64_t due = ha_elect_next_due(&n->e, now);
	int64_t ms = due > now ? due - now : 0;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(n->timer, &tv);
}

static void
call_done(int rc, struct etcd_resp *r, void *arg)
{
	struct ha_call *c = arg;
	struct ha_node *n = c->n;
	int64_t now = op_mono_ms();
	const char *why = rc < 0 ? r->error : NULL;

	call_unlink(n, c);
	if (rc < 0 && c->kind != HA_DO_REVOKE &&
	    (strcmp(r->error, n->last_logged) || now - n->last_logged_mono >= HA_LOG_REPEAT_MS)) {
		/* an outage fails every request twice a second: say it, not spam it */
		log_warn("etcd %s: %s", ha_out_name(c->kind), r->error);
		op_strlcpy(n->last_logged, r->error, sizeof(n->last_logged));
		n->last_logged_mono = now;
	}
	switch (c->kind) {
	case HA_DO_GRANT:
		ha_elect_on_grant(&n->e, now, c->sent, rc, r->lease_id, r->ttl, why);
		break;
	case HA_DO_KEEPALIVE:
		ha_elect_on_keepalive(&n->e, now, c->sent, rc, c->lease, r->ttl, why);
		break;
	case HA_DO_CAMPAIGN: {
		const struct etcd_kv *h = r->nkvs > 0 ? &r->kvs[0] : NULL;
		ha_elect_on_campaign(&n->e, c->subject, now, c->lease, rc, r->succeeded,
		    r->revision, h ? h->value : "", h ? h->create_rev : 0, h ? h->lease : 0, why);
		break;
	}
	case HA_DO_REVOKE:
		if (rc < 0 && r->code != ETCD_GRPC_NOT_FOUND)
			log_debug("revoke of lease %lld: %s", (long long)c->lease, r->error);
		break;
	default:
		break;
	}
	free(c);
	node_drain(n);
	node_arm(n);
}

static void
node_send(struct ha_node *n, const struct ha_out *o)
{
	char err[160];
	char *body = NULL;
	enum etcd_call call;

	switch (o->kind) {
	case HA_DO_GRANT:
		body = etcd_build_grant(o->ttl_s, err, sizeof(err));
		call = ETCD_GRANT;
		break;
	case HA_DO_KEEPALIVE:
		body = etcd_build_keepalive(o->lease, err, sizeof(err));
		call = ETCD_KEEPALIVE;
		break;
	case HA_DO_REVOKE:
		body = etcd_build_revoke(o->lease, err, sizeof(err));
		call = ETCD_REVOKE;
		break;
	case HA_DO_CAMPAIGN:
		if (ha_config_may_lead(&n->cfg, n->e.s[o->subject].name)) {
			body = etcd_build_campaign(n->e.s[o->subject].key, n->e.name, o->lease, err,
			    sizeof(err));
		} else {
			/* [ha] subjects: follow only. No key has create_revision -1, so
			 * the compare fails and the answer says who leads. */
			struct etcd_cmp never = { .key = n->e.s[o->subject].key,
				.target = ETCD_T_CREATE, .result = ETCD_R_EQUAL, .num = -1 };
			struct etcd_op get = { .kind = ETCD_OP_RANGE, .key = n->e.s[o->subject].key };
			body = etcd_build_txn(&never, 1, NULL, 0, &get, 1, err, sizeof(err));
		}
		call = ETCD_TXN;
		break;
	default:
		return;
	}
	struct ha_call *c = calloc(1, sizeof(*c));
	if (body == NULL || c == NULL) {
		free(c);
		free(body);
		log_err("etcd %s: %s", ha_out_name(o->kind), body ? "out of memory" : err);
		return;
	}
	c->n = n;
	c->kind = o->kind;
	c->subject = o->subject;
	c->lease = o->lease;
	c->sent = op_mono_ms();
	c->q = etcd_async_call(n->http, &n->client, call, body, call_done, c, err, sizeof(err));
	free(body);
	if (c->q == NULL) {
		/* Nothing left: answer the machine now as a failed request so it
		 * retries on its own schedule rather than wait forever. */
		struct etcd_resp r;
		etcd_parse(call, 0, NULL, 0, err, &r);
		n->ncalls++;
		c->next = n->calls;
		if (n->calls)
			n->calls->prev = c;
		n->calls = c;
		call_done(-1, &r, c);
		etcd_resp_free(&r);
		return;
	}
	c->next = n->calls;
	if (n->calls)
		n->calls->prev = c;
	n->calls = c;
	n->ncalls++;
}

/* Sends what the machine asks for and reports what happened. Re-entrant
 * calls (an event callback that resigns) just queue more for this loop. */
static void
node_drain(struct ha_node *n)
{
	struct ha_out o;

	if (n->draining)
		return;
	n->draining = 1;
	while (ha_elect_pop(&n->e, &o)) {
		if (o.kind == HA_EV_ELECTED || o.kind == HA_EV_LOST || o.kind == HA_EV_LEADER_SEEN) {
			if (n->fn)
				n->fn(&o, &n->e.s[o.subject], n->arg);
		} else {
			node_send(n, &o);
		}
	}
	n->draining = 0;
}

static void
node_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ha_node *n = arg;

	(void)fd;
	(void)what;
	ha_elect_step(&n->e, op_mono_ms());
	node_drain(n);
	node_arm(n);
}

struct ha_node *
ha_node_new(struct event_base *base, const struct ha_config *cfg, const char *const *subjects,
    size_t nsubjects, ha_event_fn fn, void *arg, char *err, size_t errlen)
{
	struct ha_node *n = calloc(1, sizeof(*n));

	if (n == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	n->base = base;
	n->cfg = *cfg;
	n->fn = fn;
	n->arg = arg;
	if (etcd_client_init(&n->client, cfg->etcd, err, errlen) < 0)
		goto fail;
	ha_elect_init(&n->e, cfg->name, cfg->lease_ttl_ms);
	for (size_t i = 0; i < nsubjects; i++) {
		if (ha_elect_add(&n->e, cfg->cluster, subjects[i]) < 0) {
			snprintf(err, errlen, "subject \"%s\": cannot campaign for it (name unfit "
			    "for an etcd key, duplicate, or more than %d subjects)", subjects[i],
			    HA_MAX_SUBJECTS);
			goto fail;
		}
	}
	if ((n->http = ahttp_new(base, err, errlen)) == NULL)
		goto fail;
	if ((n->timer = evtimer_new(base, node_tick, n)) == NULL) {
		snprintf(err, errlen, "evtimer_new failed");
		goto fail;
	}
	struct timeval now = { 0, 0 };
	evtimer_add(n->timer, &now);
	return n;
fail:
	if (n->http)
		ahttp_free(n->http);
	free(n);
	return NULL;
}

void
ha_node_resign(struct ha_node *n, const char *reason)
{
	if (n == NULL)
		return;
	ha_elect_resign(&n->e, reason);
	node_drain(n);
}

void
ha_node_free(struct ha_node *n)
{
	int64_t revoke[8];
	size_t nrevoke = 0;

	if (n == NULL)
		return;
	/* Revokes still in flight, and a lease still held, are finished
	 * synchronously: the standbys then take over at once instead of after
	 * the TTL. */
	while (n->calls != NULL) {
		struct ha_call *c = n->calls;
		if (c->kind == HA_DO_REVOKE && nrevoke < OP_ARRAY_LEN(revoke))
			revoke[nrevoke++] = c->lease;
		etcd_async_cancel(c->q);
		call_unlink(n, c);
		free(c);
	}
	if (n->e.lease_id != 0 && n->e.lease == HA_LEASE_HELD && nrevoke < OP_ARRAY_LEN(revoke))
		revoke[nrevoke++] = n->e.lease_id;
	n->client.timeout_ms = HA_REVOKE_EXIT_TIMEOUT_MS;
	for (size_t i = 0; i < nrevoke; i++) {
		char err[64];
		char *body = etcd_build_revoke(revoke[i], err, sizeof(err));
		struct etcd_resp r;
		memset(&r, 0, sizeof(r));
		if (body != NULL && etcd_call(&n->client, ETCD_REVOKE, body, &r) < 0 &&
		    r.code != ETCD_GRPC_NOT_FOUND)
			log_warn("revoke of lease %lld at exit: %s", (long long)revoke[i], r.error);
		etcd_resp_free(&r);
		free(body);
	}
	if (n->timer)
		event_free(n->timer);
	ahttp_free(n->http);
	free(n);
}

int
ha_node_is_leader(struct ha_node *n, const char *subject, int64_t *term)
{
	int i = n ? ha_elect_find(&n->e, subject) : -1;

	return i >= 0 && ha_elect_is_leader(&n->e, (size_t)i, op_mono_ms(), term);
}

const struct ha_elect *
ha_node_elect(const struct ha_node *n)
{
	return &n->e;
}

struct etcd_client *
ha_node_client(struct ha_node *n)
{
	return &n->client;
}

struct ahttp *
ha_node_http(struct ha_node *n)
{
	return n->http;
}

size_t
ha_node_pending(const struct ha_node *n)
{
	return n->ncalls;
}

void
ha_node_pause(struct ha_node *n, int paused)
{
	n->paused = paused;
	if (paused) {
		evtimer_del(n->timer);
	} else {
		ha_elect_step(&n->e, op_mono_ms());
		node_drain(n);
		node_arm(n);
	}
}
