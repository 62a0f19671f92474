/* ha_elect: the per-subject leader election as a pure state machine.
 *
 * The machine never reads a clock and never does I/O: the driver (ha.c, or a
 * test) passes the time in and etcd's answers back, and pops what to send
 * and which role changes happened. That keeps every timing rule (renew at
 * TTL/3, step down at 2/3 of the TTL, poll, retry) testable with a fake
 * clock. */
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "supervisor/ha.h"

static const char *const lease_names[] = {
#define X(id, name) name,
	HA_LEASE_STATES(X)
#undef X
};
static const char *const role_names[] = {
#define X(id, name) name,
	HA_ROLES(X)
#undef X
};
static const char *const out_names[] = {
#define X(id, name) name,
	HA_OUTS(X)
#undef X
};

const char *
ha_lease_state_name(enum ha_lease_state s)
{
	return (unsigned)s < HA_NLEASE_STATES ? lease_names[s] : "?";
}

const char *
ha_role_name(enum ha_role r)
{
	return (unsigned)r < HA_NROLES ? role_names[r] : "?";
}

const char *
ha_out_name(enum ha_out_kind k)
{
	return (unsigned)k < HA_NOUTS ? out_names[k] : "?";
}

void
ha_elect_init(struct ha_elect *e, const char *name, int64_t ttl_ms)
{
	memset(e, 0, sizeof(*e));
	op_strlcpy(e->name, name, sizeof(e->name));
	e->ttl_ms = ttl_ms > 0 ? ttl_ms : HA_LEASE_TTL_MS;
	e->lease = HA_LEASE_NONE;
}

int
ha_elect_add(struct ha_elect *e, const char *cluster, const char *subject)
{
	if (e->ns == HA_MAX_SUBJECTS || ha_elect_find(e, subject) >= 0)
		return -1;
	struct ha_subject *s = &e->s[e->ns];
	memset(s, 0, sizeof(*s));
	if (etcd_leader_key(cluster, subject, s->key, sizeof(s->key)) < 0)
		return -1;
	op_strlcpy(s->name, subject, sizeof(s->name));
	s->role = HA_STANDBY;
	return (int)e->ns++;
}

int
ha_elect_find(const struct ha_elect *e, const char *subject)
{
	for (size_t i = 0; i < e->ns; i++)
		if (strcmp(e->s[i].name, subject) == 0)
			return (int)i;
	return -1;
}

int64_t
ha_elect_keepalive_ms(const struct ha_elect *e)
{
	return e->ttl_ms / HA_KEEPALIVE_DIV;
}

int64_t
ha_elect_deadline_ms(const struct ha_elect *e)
{
	return e->ttl_ms * HA_DEADLINE_NUM / HA_DEADLINE_DEN;
}

int64_t
ha_elect_poll_ms(const struct ha_elect *e)
{
	int64_t p = e->ttl_ms / HA_POLL_DIV;
	return p < HA_POLL_MS ? p : HA_POLL_MS;
}

static struct ha_out *
push(struct ha_elect *e, enum ha_out_kind k, size_t subject)
{
	/* HA_OUT_MAX covers the worst step (every subject at once, twice);
	 * the driver drains after every call, so this cannot fill up. */
	if (e->nout == HA_OUT_MAX)
		return NULL;
	struct ha_out *o = &e->out[e->nout++];
	memset(o, 0, sizeof(*o));
	o->kind = k;
	o->subject = subject;
	return o;
}

int
ha_elect_pop(struct ha_elect *e, struct ha_out *o)
{
	if (e->nout == 0)
		return 0;
	*o = e->out[0];
	memmove(&e->out[0], &e->out[1], (e->nout - 1) * sizeof(e->out[0]));
	e->nout--;
	return 1;
}

static void
lose(struct ha_elect *e, size_t i, const char *reason)
{
	struct ha_subject *s = &e->s[i];
	struct ha_out *o;

	if (s->role != HA_LEADER)
		return;
	if ((o = push(e, HA_EV_LOST, i)) != NULL) {
		o->term = s->term;
		op_strlcpy(o->reason, reason, sizeof(o->reason));
	}
	s->role = HA_STANDBY;
}

static void
elect(struct ha_elect *e, size_t i, int64_t term)
{
	struct ha_subject *s = &e->s[i];
	struct ha_out *o;

	if (s->role == HA_LEADER && s->term == term)
		return;
	if (s->role == HA_LEADER)
		lose(e, i, "the leader key was re-created under a new term");
	s->role = HA_LEADER;
	s->term = term;
	op_strlcpy(s->leader, e->name, sizeof(s->leader));
	if ((o = push(e, HA_EV_ELECTED, i)) != NULL)
		o->term = term;
}

static void
see(struct ha_elect *e, size_t i, const char *leader, int64_t term)
{
	struct ha_subject *s = &e->s[i];
	struct ha_out *o;

	if (s->term == term && strcmp(s->leader, leader) == 0)
		return;
	s->term = term;
	op_strlcpy(s->leader, leader, sizeof(s->leader));
	if ((o = push(e, HA_EV_LEADER_SEEN, i)) != NULL) {
		o->term = term;
		op_strlcpy(o->leader, leader, sizeof(o->leader));
	}
}

/* Gives up the lease: every led subject is lost. revoke: the lease may still
 * live at etcd, so ask to revoke it and free our keys at once rather than
 * let the standbys wait out the TTL. */
static void
drop_lease(struct ha_elect *e, int64_t now, const char *reason, int revoke)
{
	for (size_t i = 0; i < e->ns; i++) {
		lose(e, i, reason);
		e->s[i].inflight = 0;
	}
	if (revoke && e->lease_id != 0) {
		struct ha_out *o = push(e, HA_DO_REVOKE, 0);
		if (o != NULL)
			o->lease = e->lease_id;
	}
	e->lease = HA_LEASE_NONE;
	e->lease_id = 0;
	e->keepalive_inflight = 0;
	e->next_lease_mono = now;
}

static int
lease_valid(const struct ha_elect *e, int64_t now)
{
	return e->lease == HA_LEASE_HELD && now - e->renewed_mono <= ha_elect_deadline_ms(e);
}

void
ha_elect_step(struct ha_elect *e, int64_t now)
{
	struct ha_out *o;

	if (e->lease == HA_LEASE_STOPPED)
		return;
	if (e->lease == HA_LEASE_HELD && !lease_valid(e, now)) {
		char reason[sizeof(o->reason)];
		snprintf(reason, sizeof(reason), "lease not renewed for %lld ms%s%s",
		    (long long)(now - e->renewed_mono), e->last_error[0] ? ": " : "",
		    e->last_error);
		drop_lease(e, now, reason, 1);
	}
	if (e->lease == HA_LEASE_NONE && now >= e->next_lease_mono) {
		if ((o = push(e, HA_DO_GRANT, 0)) != NULL) {
			o->ttl_s = (e->ttl_ms + 999) / 1000;
			e->lease = HA_LEASE_GRANTING;
		}
	}
	if (e->lease != HA_LEASE_HELD)
		return;
	if (!e->keepalive_inflight && now >= e->next_lease_mono) {
		if ((o = push(e, HA_DO_KEEPALIVE, 0)) != NULL) {
			o->lease = e->lease_id;
			e->keepalive_inflight = 1;
		}
	}
	for (size_t i = 0; i < e->ns; i++) {
		struct ha_subject *s = &e->s[i];
		if (s->inflight || now < s->next_mono)
			continue;
		if ((o = push(e, HA_DO_CAMPAIGN, i)) != NULL) {
			o->lease = e->lease_id;
			s->inflight = 1;
		}
	}
}

void
ha_elect_on_grant(struct ha_elect *e, int64_t now, int64_t sent, int ok, int64_t lease_id,
    int64_t ttl_s, const char *why)
{
	struct ha_out *o;

	if (e->lease != HA_LEASE_GRANTING) {
		/* resigned meanwhile: the lease is nobody's, free it */
		if (ok == 0 && lease_id != 0 && (o = push(e, HA_DO_REVOKE, 0)) != NULL)
			o->lease = lease_id;
		return;
	}
	if (ok != 0 || lease_id == 0 || ttl_s <= 0) {
		op_strlcpy(e->last_error, why && why[0] ? why : "lease grant failed",
		    sizeof(e->last_error));
		e->lease = HA_LEASE_NONE;
		e->next_lease_mono = now + HA_RETRY_MS;
		return;
	}
	e->lease = HA_LEASE_HELD;
	e->lease_id = lease_id;
	e->ttl_ms = ttl_s * 1000;
	e->renewed_mono = sent;
	e->next_lease_mono = sent + ha_elect_keepalive_ms(e);
	e->etcd_ok_mono = now;
	e->last_error[0] = '\0';
	for (size_t i = 0; i < e->ns; i++)
		e->s[i].next_mono = now;
}

void
ha_elect_on_keepalive(struct ha_elect *e, int64_t now, int64_t sent, int ok, int64_t lease,
    int64_t ttl_s, const char *why)
{
	if (e->lease != HA_LEASE_HELD || lease != e->lease_id)
		return; /* an answer about a lease we already gave up */
	e->keepalive_inflight = 0;
	if (ok != 0) {
		op_strlcpy(e->last_error, why && why[0] ? why : "keepalive failed",
		    sizeof(e->last_error));
		e->next_lease_mono = now + HA_RETRY_MS;
		return;
	}
	e->etcd_ok_mono = now;
	e->last_error[0] = '\0';
	if (ttl_s <= 0) {
		/* etcd says the lease is gone: it expired (we were stalled) or
		 * someone revoked it; our keys went with it */
		drop_lease(e, now, "lease expired at etcd", 0);
		return;
	}
	if (sent > e->renewed_mono)
		e->renewed_mono = sent;
	e->next_lease_mono = sent + ha_elect_keepalive_ms(e);
}

void
ha_elect_on_campaign(struct ha_elect *e, size_t i, int64_t now, int64_t lease, int ok,
    int succeeded, int64_t revision, const char *holder_name, int64_t holder_term,
    int64_t holder_lease, const char *why)
{
	struct ha_subject *s;
	struct ha_out *o;
	char reason[sizeof(o->reason)];

	if (i >= e->ns || e->lease == HA_LEASE_STOPPED)
		return;
	s = &e->s[i];
	s->inflight = 0;
	if (ok != 0) {
		op_strlcpy(e->last_error, why && why[0] ? why : "campaign failed",
		    sizeof(e->last_error));
		s->next_mono = now + HA_RETRY_MS;
		return;
	}
	e->etcd_ok_mono = now;
	e->last_error[0] = '\0';
	s->seen_mono = now;
	s->next_mono = now + ha_elect_poll_ms(e);
	/* Only an answer about the lease we hold now, still within its
	 * deadline, can make us leader. */
	int ours = lease_valid(e, now) && lease == e->lease_id;
	if (succeeded) {
		if (ours) {
			elect(e, i, revision);
			return;
		}
		/* The key went in under a lease we gave up: free it. */
		lose(e, i, "the campaign answered after the lease was given up");
		see(e, i, e->name, revision);
		if (lease != 0 && lease != e->lease_id && (o = push(e, HA_DO_REVOKE, i)) != NULL)
			o->lease = lease;
		return;
	}
	if (holder_term <= 0) {
		/* nobody holds it: only a follow-only subject ([ha] subjects) sees
		 * this (a campaign would have taken the key); ask again soon */
		lose(e, i, "the leader key vanished");
		see(e, i, "", 0);
		s->next_mono = now + HA_RETRY_MS;
		return;
	}
	if (ours && holder_lease == e->lease_id) {
		/* ours already: an earlier campaign's answer was lost */
		elect(e, i, holder_term);
		return;
	}
	snprintf(reason, sizeof(reason), "the leader key is held by %s (term %lld)",
	    holder_name && holder_name[0] ? holder_name : "?", (long long)holder_term);
	lose(e, i, reason);
	see(e, i, holder_name ? holder_name : "", holder_term);
}

void
ha_elect_resign(struct ha_elect *e, const char *reason)
{
	struct ha_out *o;

	for (size_t i = 0; i < e->ns; i++) {
		lose(e, i, reason);
		e->s[i].inflight = 0;
	}
	if (e->lease_id != 0 && (o = push(e, HA_DO_REVOKE, 0)) != NULL)
		o->lease = e->lease_id;
	e->lease_id = 0;
	e->lease = HA_LEASE_STOPPED;
}

int
ha_elect_is_leader(const struct ha_elect *e, size_t i, int64_t now, int64_t *term)
{
	if (i >= e->ns || e->s[i].role != HA_LEADER || !lease_valid(e, now))
		return 0;
	if (term != NULL)
		*term = e->s[i].term;
	return 1;
}

int64_t
ha_elect_next_due(const struct ha_elect *e, int64_t now)
{
	int64_t due = now + HA_POLL_MS;

	switch (e->lease) {
	case HA_LEASE_STOPPED:
	case HA_LEASE_GRANTING:
		return due;
	case HA_LEASE_NONE:
		return e->next_lease_mono < due ? e->next_lease_mono : due;
	case HA_LEASE_HELD:
		break;
	default:
		return due;
	}
	int64_t deadline = e->renewed_mono + ha_elect_deadline_ms(e) + 1;
	if (deadline < due)
		due = deadline;
	if (!e->keepalive_inflight && e->next_lease_mono < due)
		due = e->next_lease_mono;
	for (size_t i = 0; i < e->ns; i++)
		if (!e->s[i].inflight && e->s[i].next_mono < due)
			due = e->s[i].next_mono;
	return due < now ? now : due;
}
