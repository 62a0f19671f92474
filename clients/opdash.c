/* opdash: the live terminal dashboard of a running operatord.
 *
 *   opdash [--runtime-dir DIR] [--chapters FILE] [--subject NAME] [--snapshot [--size WxH]]
 *
 * It reads only what opsend and optail read: requests on ctl.sock (status,
 * observe, events, and the operator's approve / kill-switch / chapter
 * commands, which the daemon checks exactly as it checks opsend's) and the
 * live stream on events.sock. One poll loop waits on the keyboard and both
 * sockets with a timeout of OPDASH_FRAME_MS: it redraws when something
 * arrived and on that timer, and never spins. When the daemon goes away the
 * frame says so and the loop reconnects every OPDASH_RECONNECT_MS; events
 * missed meanwhile are replayed from the ledger by seq.
 *
 * Exit codes: 0 ok, 1 failed (a bad chapter file), 2 usage, 3 daemon not
 * running (--snapshot only). */
#include <curses.h>
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "clients/client.h"
#include "clients/opdash.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include "protocol/frame.h"

#define OPDASH_FRAME_MS 250          /* redraw at least this often: ages, the wait */
#define OPDASH_STATUS_MS 1000        /* status refresh */
#define OPDASH_OBSERVE_MS 1000       /* observe refresh (one in flight at a time) */
#define OPDASH_RECONNECT_MS 1000     /* retry while the daemon is away */
#define OPDASH_REQ_TIMEOUT_MS 30000  /* a request unanswered this long is given up */
#define OPDASH_BACKLOG 2000          /* events replayed on first connect */
#define OPDASH_EVENTS_PAGE 1000      /* events per replay request */
#define OPDASH_MAX_PENDING 32        /* requests in flight */
#define OPDASH_MAX_QUEUED 4096       /* live events held while a replay runs */
#define OPDASH_MAX_SCENE 4096        /* events kept for the waits of a scene's chapters */
#define OPDASH_MESSAGE_MS 6000       /* how long a message stays on the bottom line */
#define OPDASH_SNAPSHOT_W 120        /* --snapshot size when stdout is not a terminal */
#define OPDASH_SNAPSHOT_H 40

/* A chapter's life: entered, running its commands and its wait, then done
 * (or failed, or timed out: either way the presenter may go on). */
#define CH_STATES(X)                                                           \
	X(CH_IDLE, "idle")                                                     \
	X(CH_RUNNING, "running")                                               \
	X(CH_DONE, "done")                                                     \
	X(CH_FAILED, "failed")                                                 \
	X(CH_TIMED_OUT, "timed out")

enum ch_state {
#define CH_ENUM(e, name) e,
	CH_STATES(CH_ENUM)
#undef CH_ENUM
};

static const char *const ch_state_names[] = {
#define CH_NAME(e, name) name,
	CH_STATES(CH_NAME)
#undef CH_NAME
};

enum req_kind { REQ_STATUS, REQ_OBSERVE, REQ_EVENTS, REQ_DO, REQ_APPROVE, REQ_KILL };

struct pending {
	uint64_t id;
	enum req_kind kind;
	int64_t sent_ms;
	int chap;                 /* REQ_DO: the chapter that sent it */
	char what[160];           /* for messages */
};

enum prompt { PROMPT_NONE, PROMPT_KILL, PROMPT_APPROVE };

struct dash {
	const char *rtdir;
	int ctl, ev;
	struct conn_reader rctl, rev;
	struct dm_state dm;
	struct chap_book book;
	int have_book;
	/* chapters */
	int cur, started;
	enum ch_state cst;
	int64_t cst_ms;           /* mono ms the chapter was entered */
	int64_t enter_seq;        /* the scene began after this event */
	int64_t match_seq;        /* the event that ended the last wait: the next looks after it */
	json_object *scene;       /* events since the last chapter that ran commands */
	int do_left, wait_done;
	char target[64];          /* the target the last do: reported ($target in a wait) */
	char chap_note[200];
	/* requests */
	struct pending pend[OPDASH_MAX_PENDING];
	int npend;
	uint64_t next_id;
	int64_t next_status, next_observe, next_connect;
	int need_initial;         /* the first status after a connect starts the replay */
	int replaying;
	json_object *queued;      /* live events that arrived during a replay */
	/* subject */
	const char *subject_flag;
	int subj_idx;
	/* keys */
	int64_t selected;
	enum prompt prompt;
	int64_t prompt_action;
	char message[256];
	int64_t message_until;
	int dirty;
};

static volatile sig_atomic_t opdash_stop;
static const char *const opdash_subjects[] = {"ratelimiter", "tikv"};

static void
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: opdash [--runtime-dir DIR] [--chapters FILE] [--subject NAME]\n"
	    "              [--snapshot [--size WxH]]\n"
	    "       opdash --help | --version\n"
	    "The live dashboard of a running operatord: Cluster, Chapter, Detections,\n"
	    "Agent and Workload panels and a status line.\n"
	    "  --runtime-dir DIR  the daemon's runtime directory (default $OPERATORD_RUNTIME_DIR\n"
	    "                     or " CLIENT_DEFAULT_RUNTIME ")\n"
	    "  --chapters FILE    a demo's chapters (see scripts/demo/*.chapters)\n"
	    "  --subject NAME     the subject to observe (default: the chapters' subject:, else\n"
	    "                     the first configured of ratelimiter, tikv)\n"
	    "  --snapshot         print one frame as plain text and exit (3: daemon not running)\n"
	    "  --size WxH         the snapshot's size (default the terminal's, else %dx%d)\n"
	    "Keys: SPACE/ENTER/-> next chapter, up/down select a ticket, a approve its\n"
	    "waiting action, k toggle the kill switch (asks first), q quit.\n",
	    OPDASH_SNAPSHOT_W, OPDASH_SNAPSHOT_H);
	exit(code);
}

static void
on_signal(int sig)
{
	(void)sig;
	opdash_stop = 1;
}

static void
say(struct dash *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->message, sizeof(d->message), fmt, ap);
	va_end(ap);
	d->message_until = op_mono_ms() + OPDASH_MESSAGE_MS;
	d->dirty = 1;
}

static const char *
subject_now(const struct dash *d)
{
	if (d->subject_flag)
		return d->subject_flag;
	if (d->have_book && d->book.subject[0])
		return d->book.subject;
	return opdash_subjects[d->subj_idx % (int)OP_ARRAY_LEN(opdash_subjects)];
}

/* ---- requests ---- */

static int
pending_of(const struct dash *d, enum req_kind k)
{
	for (int i = 0; i < d->npend; i++)
		if (d->pend[i].kind == k)
			return 1;
	return 0;
}

static void disconnect(struct dash *d, const char *why);

/* Sends a request and remembers what it was for; args is consumed. */
static struct pending *
request(struct dash *d, enum req_kind k, const char *cmd, json_object *args)
{
	char err[256];

	if (d->ctl < 0 || d->npend == OPDASH_MAX_PENDING) {
		json_object_put(args);
		return NULL;
	}
	struct pending *p = &d->pend[d->npend];
	memset(p, 0, sizeof(*p));
	p->id = ++d->next_id;
	p->kind = k;
	p->sent_ms = op_mono_ms();
	if (conn_send(d->ctl, p->id, cmd, args, err, sizeof(err)) != 0) {
		disconnect(d, err);
		return NULL;
	}
	d->npend++;
	return p;
}

static json_object *
args1(const char *a, const char *b)
{
	json_object *x = json_object_new_array();

	if (a)
		json_object_array_add(x, json_object_new_string(a));
	if (b)
		json_object_array_add(x, json_object_new_string(b));
	return x;
}

static void
request_events(struct dash *d, int64_t since)
{
	char s[32], n[16];

	snprintf(s, sizeof(s), "%lld", (long long)since);
	snprintf(n, sizeof(n), "%d", OPDASH_EVENTS_PAGE);
	if (request(d, REQ_EVENTS, "events", args1(s, n)) != NULL)
		d->replaying = 1;
}

/* ---- chapters ---- */

static void
chap_finish(struct dash *d, enum ch_state st, const char *note)
{
	d->cst = st;
	op_strlcpy(d->chap_note, note ? note : "", sizeof(d->chap_note));
	d->dirty = 1;
}

static void chap_enter(struct dash *d, int i);

/* Done when every command answered and the wait (if any) is over. */
static void
chap_check(struct dash *d)
{
	if (d->cst != CH_RUNNING || d->do_left > 0)
		return;
	if (d->book.c[d->cur].has_wait && !d->wait_done)
		return;
	chap_finish(d, CH_DONE, NULL);
	if (d->book.c[d->cur].auto_advance && d->cur + 1 < d->book.n)
		chap_enter(d, d->cur + 1);
}

static void
chap_enter(struct dash *d, int i)
{
	const struct chap *c = &d->book.c[i];

	d->cur = i;
	d->cst = CH_RUNNING;
	d->cst_ms = op_mono_ms();
	d->do_left = 0;
	d->wait_done = 0;
	/* A chapter that injects starts a scene. A later chapter without commands
	 * waits on what happened in it after the event that ended the previous
	 * wait, even before it was entered: the presenter may still be talking
	 * while the loop goes on, and the story keeps its order. */
	if (c->ndo > 0 || i == 0) {
		d->enter_seq = d->match_seq = d->dm.last_seq;
		json_object_put(d->scene);
		d->scene = json_object_new_array();
	} else if (c->has_wait) {
		for (size_t k = 0; k < json_object_array_length(d->scene) && !d->wait_done; k++) {
			json_object *ev = json_object_array_get_idx(d->scene, k);
			if (op_json_int(ev, "seq", 0) > d->match_seq &&
			    chap_event_matches(&c->wait, ev, d->target)) {
				d->wait_done = 1;
				d->match_seq = op_json_int(ev, "seq", 0);
			}
		}
	}
	/* the target stays: a later chapter waits on what an earlier one injected */
	d->chap_note[0] = '\0';
	d->dirty = 1;
	for (int k = 0; k < c->ndo; k++) {
		char cmd[64], err[256];
		json_object *args;
		if (chap_split_cmd(c->do_cmd[k], cmd, sizeof(cmd), &args, err, sizeof(err)) != 0) {
			chap_finish(d, CH_FAILED, err);
			return;
		}
		struct pending *p = request(d, REQ_DO, cmd, args);
		if (p == NULL) {
			chap_finish(d, CH_FAILED, "operatord is not running: cannot send the chapter's commands");
			return;
		}
		p->chap = i;
		op_strlcpy(p->what, c->do_cmd[k], sizeof(p->what));
		d->do_left++;
	}
	chap_check(d);
}

static void
chap_advance(struct dash *d)
{
	if (!d->have_book) {
		say(d, "no chapters: start opdash with --chapters FILE");
		return;
	}
	if (!d->started) {
		say(d, "waiting for operatord before the first chapter");
		return;
	}
	if (d->cst == CH_RUNNING) {
		char w[200] = "its commands";
		if (d->do_left == 0 && d->book.c[d->cur].has_wait)
			chap_match_describe(&d->book.c[d->cur].wait, w, sizeof(w));
		say(d, "chapter %d is still running: it waits for %s", d->cur + 1, w);
		return;
	}
	if (d->cur + 1 >= d->book.n) {
		say(d, "that was the last chapter: q quits");
		return;
	}
	d->message[0] = '\0';
	chap_enter(d, d->cur + 1);
}

static void
chap_tick(struct dash *d)
{
	if (!d->have_book || d->cst != CH_RUNNING)
		return;
	if (op_mono_ms() - d->cst_ms > d->book.c[d->cur].timeout_ms) {
		char w[200], note[240];
		chap_match_describe(&d->book.c[d->cur].wait, w, sizeof(w));
		snprintf(note, sizeof(note), "no %s within %lld s: SPACE goes on", w,
		    (long long)(d->book.c[d->cur].timeout_ms / 1000));
		chap_finish(d, CH_TIMED_OUT, note);
	}
}

static void
chap_state_text(const struct dash *d, char *buf, size_t len)
{
	const struct chap *c;

	buf[0] = '\0';
	if (!d->have_book)
		return;
	if (!d->started) {
		snprintf(buf, len, "waiting for operatord");
		return;
	}
	c = &d->book.c[d->cur];
	switch (d->cst) {
	case CH_RUNNING: {
		char w[200] = "";
		int64_t s = (op_mono_ms() - d->cst_ms) / 1000;
		if (d->do_left > 0)
			snprintf(buf, len, "running %lld s: sending %s", (long long)s, c->do_cmd[0]);
		else {
			chap_match_describe(&c->wait, w, sizeof(w));
			snprintf(buf, len, "running %lld s: waits for %s", (long long)s, w);
		}
		break;
	}
	case CH_DONE:
		snprintf(buf, len, "%s", d->cur + 1 < d->book.n ? "done: SPACE for the next chapter" :
		    "done: that was the last chapter (q quits)");
		break;
	default:
		snprintf(buf, len, "%s: %s", ch_state_names[d->cst], d->chap_note);
		break;
	}
}

/* ---- events ---- */

static void
apply_event(struct dash *d, json_object *ev)
{
	int64_t seq = op_json_int(ev, "seq", 0);

	if (seq <= d->dm.last_seq)
		return;
	if (d->scene != NULL && seq > d->enter_seq &&
	    json_object_array_length(d->scene) < OPDASH_MAX_SCENE)
		json_object_array_add(d->scene, json_object_get(ev));
	if (d->have_book && d->started && d->cst == CH_RUNNING && !d->wait_done &&
	    d->book.c[d->cur].has_wait && seq > d->match_seq &&
	    chap_event_matches(&d->book.c[d->cur].wait, ev, d->target)) {
		d->wait_done = 1;
		d->match_seq = seq;
	}
	dm_apply_event(&d->dm, ev);
	d->dirty = 1;
	chap_check(d);
}

static void
on_live_event(struct dash *d, json_object *ev)
{
	int64_t seq = op_json_int(ev, "seq", 0);

	if (d->replaying || seq > d->dm.last_seq + 1) {
		/* hold it until the ledger has filled what came before */
		if (!d->replaying)
			request_events(d, d->dm.last_seq);
		if (json_object_array_length(d->queued) < OPDASH_MAX_QUEUED)
			json_object_array_add(d->queued, json_object_get(ev));
		return;
	}
	apply_event(d, ev);
}

static void
replay_done(struct dash *d)
{
	d->replaying = 0;
	for (size_t i = 0; i < json_object_array_length(d->queued); i++)
		apply_event(d, json_object_array_get_idx(d->queued, i));
	json_object_put(d->queued);
	d->queued = json_object_new_array();
	if (d->have_book && !d->started) {
		d->started = 1;
		chap_enter(d, 0);
	}
}

/* ---- replies ---- */

static void
on_reply(struct dash *d, struct pending *p, json_object *body)
{
	int ok = op_json_bool(body, "ok", 0);
	const char *err = op_json_str(body, "error", "failed");
	json_object *res = NULL;

	json_object_object_get_ex(body, "result", &res);
	switch (p->kind) {
	case REQ_STATUS:
		if (!ok)
			break;
		dm_apply_status(&d->dm, res);
		if (d->need_initial) {
			int64_t last = op_json_int(res, "last_seq", 0);
			d->need_initial = 0;
			if (last < d->dm.last_seq)  /* another ledger: start over */
				dm_reset_events(&d->dm);
			int64_t since = d->dm.last_seq;
			if (since == 0 && last > OPDASH_BACKLOG)
				since = last - OPDASH_BACKLOG;
			request_events(d, since);
		}
		break;
	case REQ_OBSERVE:
		if (ok) {
			dm_apply_observe(&d->dm, subject_now(d), res, NULL);
		} else if (strstr(err, "no subject") != NULL && d->subject_flag == NULL &&
		    !(d->have_book && d->book.subject[0]) &&
		    d->subj_idx + 1 < (int)OP_ARRAY_LEN(opdash_subjects)) {
			d->subj_idx++;      /* try the next known subject at once */
			d->next_observe = 0;
		} else {
			dm_apply_observe(&d->dm, subject_now(d), NULL, err);
		}
		break;
	case REQ_EVENTS: {
		json_object *rows = ok && json_object_is_type(res, json_type_array) ? res : NULL;
		size_t n = rows ? json_object_array_length(rows) : 0;
		int64_t before = d->dm.last_seq;
		for (size_t i = 0; i < n; i++)
			apply_event(d, json_object_array_get_idx(rows, i));
		/* pages are bounded in rows and bytes: the end is an empty page */
		if (n > 0 && d->dm.last_seq > before)
			request_events(d, d->dm.last_seq);
		else
			replay_done(d);
		if (!ok)
			say(d, "events: %s", err);
		break;
	}
	case REQ_DO:
		if (p->chap != d->cur || d->cst != CH_RUNNING)
			break;
		if (!ok) {
			char note[240];
			snprintf(note, sizeof(note), "%s: %s", p->what, err);
			chap_finish(d, CH_FAILED, note);
			break;
		}
		if (op_json_str(res, "target", NULL))
			op_strlcpy(d->target, op_json_str(res, "target", ""), sizeof(d->target));
		d->do_left--;
		chap_check(d);
		break;
	case REQ_APPROVE:
	case REQ_KILL:
		if (ok)
			say(d, "%s: done", p->what);
		else
			say(d, "%s refused: %s", p->what, err);
		d->next_status = 0;
		break;
	}
	d->dirty = 1;
}

static void
on_ctl_frame(struct dash *d, struct op_msg *m)
{
	for (int i = 0; i < d->npend; i++) {
		if (d->pend[i].id != m->id)
			continue;
		struct pending p = d->pend[i];
		d->pend[i] = d->pend[--d->npend];
		on_reply(d, &p, m->body);
		return;
	}
	/* id 0: the daemon could not read a request; say so */
	if (m->id == 0 && !op_json_bool(m->body, "ok", 1))
		say(d, "operatord: %s", op_json_str(m->body, "error", "error"));
}

/* ---- connection ---- */

static void
disconnect(struct dash *d, const char *why)
{
	if (d->ctl >= 0)
		close(d->ctl);
	if (d->ev >= 0)
		close(d->ev);
	d->ctl = d->ev = -1;
	d->rctl.len = d->rev.len = 0;
	d->dm.connected = 0;
	snprintf(d->dm.conn_error, sizeof(d->dm.conn_error), "%s", why);
	for (int i = 0; i < d->npend; i++)
		if (d->pend[i].kind == REQ_DO && d->pend[i].chap == d->cur && d->cst == CH_RUNNING)
			chap_finish(d, CH_FAILED, "operatord went away before it answered");
	d->npend = 0;
	d->replaying = 0;
	json_object_put(d->queued);
	d->queued = json_object_new_array();
	d->next_connect = op_mono_ms() + OPDASH_RECONNECT_MS;
	d->dirty = 1;
}

static int
try_connect(struct dash *d)
{
	char path[4200], err[4300];

	snprintf(path, sizeof(path), "%s/%s", d->rtdir, OP_CTL_SOCK);
	if ((d->ctl = op_frame_connect(path, err, sizeof(err))) < 0) {
		snprintf(d->dm.conn_error, sizeof(d->dm.conn_error), "%s", err);
		return -1;
	}
	/* subscribe before replaying so nothing falls between the two */
	snprintf(path, sizeof(path), "%s/%s", d->rtdir, OP_EVENTS_SOCK);
	if ((d->ev = op_frame_connect(path, err, sizeof(err))) < 0) {
		close(d->ctl);
		d->ctl = -1;
		snprintf(d->dm.conn_error, sizeof(d->dm.conn_error), "%s", err);
		return -1;
	}
	d->dm.connected = 1;
	d->dm.conn_error[0] = '\0';
	d->need_initial = 1;
	d->next_status = d->next_observe = 0;
	d->dirty = 1;
	return 0;
}

/* Reads what a readable socket holds and handles each whole frame. */
static void
drain(struct dash *d, int is_ctl)
{
	struct conn_reader *r = is_ctl ? &d->rctl : &d->rev;
	char err[256];
	struct op_msg m;
	int rc;

	if (conn_reader_fill(r, is_ctl ? d->ctl : d->ev, err, sizeof(err)) != 0) {
		disconnect(d, err);
		return;
	}
	while ((rc = conn_reader_next(r, &m, err, sizeof(err))) == 1) {
		if (is_ctl && m.type == OP_MSG_REPLY)
			on_ctl_frame(d, &m);
		else if (!is_ctl && m.type == OP_MSG_EVENT)
			on_live_event(d, m.body);
		op_msg_clear(&m);
		if (d->ctl < 0)
			return;
	}
	if (rc < 0)
		disconnect(d, err);
}

/* Timers: reconnect, status, observe, request timeouts, chapter timeout. */
static void
tick(struct dash *d)
{
	int64_t now = op_mono_ms();

	if (d->ctl < 0) {
		if (now >= d->next_connect && try_connect(d) != 0)
			d->next_connect = now + OPDASH_RECONNECT_MS;
	}
	if (d->ctl >= 0 && now >= d->next_status && !pending_of(d, REQ_STATUS)) {
		request(d, REQ_STATUS, "status", NULL);
		d->next_status = now + OPDASH_STATUS_MS;
	}
	if (d->ctl >= 0 && now >= d->next_observe && !pending_of(d, REQ_OBSERVE)) {
		request(d, REQ_OBSERVE, "observe", args1(subject_now(d), NULL));
		d->next_observe = now + OPDASH_OBSERVE_MS;
	}
	for (int i = 0; i < d->npend; i++) {
		if (now - d->pend[i].sent_ms <= OPDASH_REQ_TIMEOUT_MS)
			continue;
		if (d->pend[i].kind == REQ_EVENTS)
			d->replaying = 0;
		say(d, "operatord did not answer a request within %d s", OPDASH_REQ_TIMEOUT_MS / 1000);
		d->pend[i] = d->pend[--d->npend];
		i--;
	}
	chap_tick(d);
	if (d->message[0] && now > d->message_until && d->prompt == PROMPT_NONE)
		d->message[0] = '\0';
}

/* ---- keys ---- */

static const struct dm_ticket *
approvable(struct dash *d)
{
	struct dm_ticket *t = d->selected ? dm_ticket(&d->dm, d->selected) : NULL;
	int64_t ids[DM_MAX_TICKETS];
	int n;

	if (t != NULL && t->awaiting_action)
		return t;
	n = lay_agent_order(&d->dm, ids, DM_MAX_TICKETS);
	for (int i = 0; i < n; i++) {
		t = dm_ticket(&d->dm, ids[i]);
		if (t->awaiting_action)
			return t;
	}
	return NULL;
}

static void
select_move(struct dash *d, int delta)
{
	int64_t ids[DM_MAX_TICKETS];
	int n = lay_agent_order(&d->dm, ids, DM_MAX_TICKETS), at = -1;

	for (int i = 0; i < n; i++)
		if (ids[i] == d->selected)
			at = i;
	at += delta;
	if (n == 0 || at < 0 || at >= n)
		d->selected = 0;    /* past either end: back to "show the newest in detail" */
	else
		d->selected = ids[at];
	d->dirty = 1;
}

static void
on_key(struct dash *d, int ch)
{
	char what[160];

	if (d->prompt != PROMPT_NONE) {
		enum prompt p = d->prompt;
		d->prompt = PROMPT_NONE;
		d->message[0] = '\0';
		d->dirty = 1;
		if (ch != 'y' && ch != 'Y') {
			say(d, "cancelled");
			return;
		}
		if (p == PROMPT_KILL) {
			const char *to = d->dm.kill_switch ? "off" : "on";
			snprintf(what, sizeof(what), "kill-switch %s", to);
			struct pending *q = request(d, REQ_KILL, "kill-switch", args1(to, NULL));
			if (q)
				op_strlcpy(q->what, what, sizeof(q->what));
			else
				say(d, "operatord is not running");
		} else {
			char id[32];
			snprintf(id, sizeof(id), "%lld", (long long)d->prompt_action);
			snprintf(what, sizeof(what), "approve %s", id);
			struct pending *q = request(d, REQ_APPROVE, "approve", args1(id, NULL));
			if (q)
				op_strlcpy(q->what, what, sizeof(q->what));
			else
				say(d, "operatord is not running");
		}
		return;
	}
	switch (ch) {
	case ' ': case '\n': case '\r': case KEY_ENTER: case KEY_RIGHT:
		chap_advance(d);
		break;
	case KEY_UP:
		select_move(d, -1);
		break;
	case KEY_DOWN: case '\t':
		select_move(d, 1);
		break;
	case 'a': case 'A': {
		const struct dm_ticket *t = approvable(d);
		if (t == NULL) {
			say(d, "no action is waiting for approval");
			break;
		}
		d->prompt = PROMPT_APPROVE;
		d->prompt_action = t->awaiting_action;
		d->selected = t->id;
		say(d, "approve action %lld (%s) for ticket #%lld %s %s? y/n",
		    (long long)t->awaiting_action, t->awaiting_desc, (long long)t->id, t->invariant,
		    t->entity);
		break;
	}
	case 'k': case 'K':
		if (!d->dm.connected) {
			say(d, "operatord is not running");
			break;
		}
		d->prompt = PROMPT_KILL;
		say(d, d->dm.kill_switch ? "turn the kill switch OFF (automatic actions may run again)? y/n"
		    : "turn the kill switch ON (no action runs, pending ones are cancelled)? y/n");
		break;
	case 'q': case 'Q':
		opdash_stop = 1;
		break;
	case KEY_RESIZE:
		clear();
		d->dirty = 1;
		break;
	default:
		break;
	}
}

/* ---- drawing ---- */

static short
curses_color(int c)
{
	static const short map[LAY_NCOLORS] = {-1, COLOR_RED, COLOR_GREEN, COLOR_YELLOW, COLOR_BLUE,
		COLOR_MAGENTA, COLOR_CYAN, -1};
	return c >= 0 && c < LAY_NCOLORS ? map[c] : -1;
}

static void
draw(struct dash *d, struct lay_grid *g)
{
	char state[256];
	struct lay_view v = {0};
	int h, w;

	getmaxyx(stdscr, h, w);
	if (g->w != w || g->h != h) {
		lay_grid_free(g);
		if (lay_grid_init(g, w, h) != 0)
			return;
	}
	chap_state_text(d, state, sizeof(state));
	v.dm = &d->dm;
	v.book = d->have_book ? &d->book : NULL;
	v.chap_cur = d->cur;
	v.chap_state = state;
	v.now_ms = op_wall_ms();
	v.selected = d->selected;
	v.message = d->message;
	lay_render(g, &v);
	for (int y = 0; y < g->h; y++) {
		move(y, 0);
		for (int x = 0; x < g->w; x++) {
			const struct lay_cell *c = &g->c[y * g->w + x];
			chtype a = COLOR_PAIR(c->color);
			if (c->attr & LAY_BOLD)
				a |= A_BOLD;
			if (c->attr & LAY_REVERSE)
				a |= A_REVERSE;
			if (c->color == LAY_DIM)
				a |= A_DIM;
			/* borders stay ASCII: what a capture or a paste shows is what is drawn */
			chtype glyph = (chtype)(unsigned char)(c->ch ? c->ch : ' ');
			/* the bottom-right cell: writing it would scroll some terminals */
			if (y == g->h - 1 && x == g->w - 1)
				break;
			addch(glyph | a);
		}
	}
	refresh();
	d->dirty = 0;
}

static int
run_tui(struct dash *d)
{
	struct lay_grid g = {0};
	int64_t last_draw = 0;

	setlocale(LC_ALL, "");
	if (initscr() == NULL) {
		fprintf(stderr, "opdash: cannot start the terminal (TERM=%s)\n",
		    getenv("TERM") ? getenv("TERM") : "");
		return CLIENT_EXIT_FAILED;
	}
	cbreak();
	noecho();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	curs_set(0);
	if (has_colors()) {
		start_color();
		use_default_colors();
		for (int c = 1; c < LAY_NCOLORS; c++)
			init_pair((short)c, curses_color(c), -1);
	}
	while (!opdash_stop) {
		struct pollfd pf[3] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = d->ctl,
			.events = POLLIN}, {.fd = d->ev, .events = POLLIN}};
		tick(d);
		pf[1].fd = d->ctl;
		pf[2].fd = d->ev;
		int64_t now = op_mono_ms();
		if (d->dirty || now - last_draw >= OPDASH_FRAME_MS) {
			draw(d, &g);
			last_draw = now;
		}
		int wait = OPDASH_FRAME_MS - (int)(op_mono_ms() - last_draw);
		if (poll(pf, 3, wait < 0 ? 0 : wait) < 0 && errno != EINTR)
			break;
		/* getch never blocks here (nodelay); a resize (SIGWINCH interrupts
		 * poll) only reaches the program as KEY_RESIZE through it */
		int ch;
		while ((ch = getch()) != ERR)
			on_key(d, ch);
		if (d->ctl >= 0 && pf[1].fd >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
			drain(d, 1);
		if (d->ev >= 0 && pf[2].fd >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR)))
			drain(d, 0);
	}
	endwin();
	lay_grid_free(&g);
	return CLIENT_EXIT_OK;
}

/* ---- --snapshot ---- */

/* A blocking request for the snapshot; NULL when it failed. */
static json_object *
snap_request(int fd, const char *cmd, json_object *args, char *err, size_t errlen)
{
	struct op_msg r;
	uint64_t id = 1;

	if (conn_send(fd, id, cmd, args, err, errlen) != 0)
		return NULL;
	for (;;) {
		if (op_frame_read(fd, &r, CLIENT_REPLY_TIMEOUT_MS, err, errlen) != 0)
			return NULL;
		if (r.id == id || r.id == 0)
			break;
		op_msg_clear(&r);
	}
	json_object *body = json_object_get(r.body);
	op_msg_clear(&r);
	if (!op_json_bool(body, "ok", 0)) {
		snprintf(err, errlen, "%s", op_json_str(body, "error", "failed"));
		json_object_put(body);
		return NULL;
	}
	json_object *res = NULL;
	json_object_object_get_ex(body, "result", &res);
	res = json_object_get(res);
	json_object_put(body);
	return res;
}

static int
run_snapshot(struct dash *d, int w, int h)
{
	char path[4200], err[4300];
	struct lay_grid g;
	int rc = CLIENT_EXIT_OK;
	json_object *res;

	snprintf(path, sizeof(path), "%s/%s", d->rtdir, OP_CTL_SOCK);
	int fd = op_frame_connect(path, err, sizeof(err));
	if (fd < 0) {
		snprintf(d->dm.conn_error, sizeof(d->dm.conn_error), "%s", err);
		rc = CLIENT_EXIT_NOT_RUNNING;
	} else {
		d->dm.connected = 1;
		if ((res = snap_request(fd, "status", NULL, err, sizeof(err))) != NULL) {
			dm_apply_status(&d->dm, res);
			int64_t last = op_json_int(res, "last_seq", 0);
			json_object_put(res);
			int64_t since = last > OPDASH_BACKLOG ? last - OPDASH_BACKLOG : 0;
			for (;;) {
				char s[32], n[16];
				snprintf(s, sizeof(s), "%lld", (long long)since);
				snprintf(n, sizeof(n), "%d", OPDASH_EVENTS_PAGE);
				json_object *rows = snap_request(fd, "events", args1(s, n), err, sizeof(err));
				size_t k = json_object_is_type(rows, json_type_array) ?
				    json_object_array_length(rows) : 0;
				for (size_t i = 0; i < k; i++)
					dm_apply_event(&d->dm, json_object_array_get_idx(rows, i));
				json_object_put(rows);
				if (k == 0 || d->dm.last_seq <= since)
					break;
				since = d->dm.last_seq;
			}
		}
		for (;;) {
			res = snap_request(fd, "observe", args1(subject_now(d), NULL), err, sizeof(err));
			if (res != NULL || strstr(err, "no subject") == NULL || d->subject_flag ||
			    (d->have_book && d->book.subject[0]) ||
			    d->subj_idx + 1 >= (int)OP_ARRAY_LEN(opdash_subjects))
				break;
			d->subj_idx++;
		}
		dm_apply_observe(&d->dm, subject_now(d), res, err);
		json_object_put(res);
		close(fd);
	}
	if (lay_grid_init(&g, w, h) != 0)
		return CLIENT_EXIT_FAILED;
	char state[256] = "";
	struct lay_view v = {.dm = &d->dm, .book = d->have_book ? &d->book : NULL, .chap_cur = 0,
		.chap_state = state, .now_ms = op_wall_ms(), .selected = 0, .message = NULL};
	lay_render(&g, &v);
	lay_grid_print(&g, stdout);
	lay_grid_free(&g);
	if (rc == CLIENT_EXIT_NOT_RUNNING)
		fprintf(stderr, "operatord is not running (%s)\n", d->dm.conn_error);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"runtime-dir", required_argument, NULL, 'r'},
		{"chapters", required_argument, NULL, 'c'},
		{"subject", required_argument, NULL, 's'},
		{"snapshot", no_argument, NULL, 'S'},
		{"size", required_argument, NULL, 'z'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	static struct dash d;
	const char *chapters = NULL, *rtdir = NULL;
	int snapshot = 0, ch, w = 0, h = 0;

	while ((ch = getopt_long(argc, argv, "r:c:s:Sz:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': rtdir = optarg; break;
		case 'c': chapters = optarg; break;
		case 's': d.subject_flag = optarg; break;
		case 'S': snapshot = 1; break;
		case 'z':
			if (sscanf(optarg, "%dx%d", &w, &h) != 2 || w < 20 || h < 5 || w > 1000 || h > 500) {
				fprintf(stderr, "opdash: --size takes WxH, e.g. 120x40, not \"%s\"\n", optarg);
				return CLIENT_EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout, CLIENT_EXIT_OK); break;
		case 'V': printf("opdash %s\n", OP_VERSION); return CLIENT_EXIT_OK;
		default: usage(stderr, CLIENT_EXIT_USAGE);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "opdash: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr, CLIENT_EXIT_USAGE);
	}
	dm_init(&d.dm);
	d.rtdir = client_runtime_dir(rtdir);
	d.ctl = d.ev = -1;
	d.queued = json_object_new_array();
	if (chapters != NULL) {
		char err[512];
		if (chap_load(chapters, &d.book, err, sizeof(err)) != 0) {
			fprintf(stderr, "opdash: %s\n", err);
			return CLIENT_EXIT_FAILED;
		}
		d.have_book = 1;
		/* a chapter's commands must be control commands: say so now, not on stage */
		for (int i = 0; i < d.book.n; i++)
			for (int k = 0; k < d.book.c[i].ndo; k++) {
				char cmd[64];
				json_object *args;
				if (chap_split_cmd(d.book.c[i].do_cmd[k], cmd, sizeof(cmd), &args, err,
				    sizeof(err)) != 0 || op_ctl_lookup(cmd) == NULL) {
					if (args != NULL)
						snprintf(err, sizeof(err), "\"%s\" is not a control command "
						    "(see opsend --help)", cmd);
					fprintf(stderr, "opdash: %s: chapter \"%s\": do: %s\n", chapters,
					    d.book.c[i].title, err);
					json_object_put(args);
					return CLIENT_EXIT_FAILED;
				}
				json_object_put(args);
			}
	}
	signal(SIGPIPE, SIG_IGN);
	if (snapshot) {
		if (w == 0) {
			struct winsize ws;
			w = OPDASH_SNAPSHOT_W;
			h = OPDASH_SNAPSHOT_H;
			if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
			    ws.ws_col > 0 && ws.ws_row > 0) {
				w = ws.ws_col;
				h = ws.ws_row;
			}
		}
		int rc = run_snapshot(&d, w, h);
		dm_free(&d.dm);
		json_object_put(d.queued);
		return rc;
	}
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "opdash: needs a terminal (use --snapshot for one frame as text)\n");
		return CLIENT_EXIT_USAGE;
	}
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	int rc = run_tui(&d);
	if (d.ctl >= 0)
		close(d.ctl);
	if (d.ev >= 0)
		close(d.ev);
	conn_reader_free(&d.rctl);
	conn_reader_free(&d.rev);
	json_object_put(d.scene);
	dm_free(&d.dm);
	json_object_put(d.queued);
	return rc;
}
