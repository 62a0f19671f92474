/* events: the event stream. Subscribers on events.sock get every event as it
 * is committed (never blocking the loop: a slow reader misses frames, sees
 * the gap in seq and backfills); the "events" control command pages the
 * ledger for that backfill, each page bounded in rows and in bytes so that it
 * always fits one reply frame. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include "protocol/frame.h"
#include "supervisor/od.h"

#define EV_MAX_SUBSCRIBERS 64    /* events.sock connections at once */
#define EV_UID_SHARE 16          /* of which one non-root uid may hold */
#define EV_HARD_MAX 128          /* root's and the daemon's user's included (fds are finite) */
/* Room left in a reply frame for its envelope and the ok/result keys. */
#define EV_REPLY_OVERHEAD (64u << 10)

struct ev_sub {
	struct bufferevent *bev;
	int uid;
	int privileged;       /* root or the daemon's own user */
	struct ev_sub *next;
};

static struct ev_sub *subs;
static int nsubs;

static void
sub_free(struct ev_sub *s)
{
	for (struct ev_sub **pp = &subs; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	bufferevent_free(s->bev);
	free(s);
	nsubs--;
}

void
events_publish(const struct op_msg *ev)
{
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	if (op_frame_encode(ev, &sb) == 0) {
		for (struct ev_sub *s = subs; s; s = s->next) {
			/* Never block on a slow reader: it sees the gap in seq and backfills. */
			if (evbuffer_get_length(bufferevent_get_output(s->bev)) < OD_SUB_MAX_BUF)
				bufferevent_write(s->bev, sb.data, sb.size);
		}
	}
	msgpack_sbuffer_destroy(&sb);
}

static void
sub_on_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	/* Subscribers only listen; whatever they send is dropped unread. */
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void
sub_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		sub_free(arg);
}

static void
events_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
    void *arg)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	int uid, mine = 0, others = 0;

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? (int)cred.uid : -1;
	for (struct ev_sub *s = subs; s; s = s->next) {
		mine += s->uid == uid;
		others += !s->privileged;
	}
	/* Root and the daemon's user are never turned away by others' load. */
	int privileged = uid == 0 || (uid >= 0 && (uid_t)uid == geteuid());
	if (od->shutting_down || uid < 0 || nsubs >= EV_HARD_MAX ||
	    (!privileged && (others >= EV_MAX_SUBSCRIBERS || mine >= EV_UID_SHARE))) {
		close(fd);
		return;
	}
	struct ev_sub *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		close(fd);
		return;
	}
	s->uid = uid;
	s->privileged = privileged;
	s->bev = bufferevent_socket_new(od->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, sub_on_read, NULL, sub_on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	s->next = subs;
	subs = s;
	nsubs++;
}

int
events_open(char *err, size_t errlen)
{
	od->ev_listener = control_listen_unix(OP_EVENTS_SOCK, events_accept, err, errlen);
	return od->ev_listener ? 0 : -1;
}

void
events_stop_accepting(void)
{
	if (od->ev_listener)
		evconnlistener_disable(od->ev_listener);
}

void
events_close(void)
{
	while (subs)
		sub_free(subs);
	if (od->ev_listener)
		evconnlistener_free(od->ev_listener);
	od->ev_listener = NULL;
}

json_object *
events_page(int64_t since, int64_t limit, int64_t max_bytes, char *err, size_t errlen)
{
	json_object *rows, *page;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int64_t used = 0;
	int64_t cap = (int64_t)(OP_MSG_MAX - EV_REPLY_OVERHEAD);

	if (max_bytes <= 0 || max_bytes > cap)
		max_bytes = cap;
	rows = ledger_rows(od->ledger, "SELECT seq,ts,type,ticket,subject,entity,invariant,data"
	    " FROM events WHERE seq>?1 ORDER BY seq LIMIT ?2", "ii", since, limit);
	if (rows == NULL) {
		snprintf(err, errlen, "the ledger could not be read");
		return NULL;
	}
	/* Rows are kept while their encoded size fits: the first always (an
	 * event was a frame once, so it fits one), the rest up to max_bytes.
	 * The client asks again from the last seq it got until a page is empty. */
	page = json_object_new_array();
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		sb.size = 0;
		op_mp_pack_json(&pk, r);
		if (i > 0 && used + (int64_t)sb.size > max_bytes)
			break;
		used += (int64_t)sb.size;
		json_object_array_add(page, json_object_get(r));
	}
	msgpack_sbuffer_destroy(&sb);
	json_object_put(rows);
	return page;
}
