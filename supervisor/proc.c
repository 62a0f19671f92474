/* proc: spawning, readiness, reaping and restarting the worker processes. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/bus.h"
#include "supervisor/od.h"

static const char *const proc_names[OD_NWORKERS] = {
	"observer", "diagnoser", "executor", "verifier", "chaos",
};

/* Stop order: chaos first (it undoes its faults), then against the pipeline. */
static const enum od_role proc_stop_order[OD_NWORKERS] = {
	OD_CHAOS, OD_VERIFIER, OD_EXECUTOR, OD_DIAGNOSER, OD_OBSERVER,
};

static void proc_on_frame(evutil_socket_t fd, short ev, void *arg);
static void proc_on_lifeline(evutil_socket_t fd, short ev, void *arg);
static void proc_on_timer(evutil_socket_t fd, short ev, void *arg);
static void proc_backlog_clear(struct od_worker *w);

static int
proc_open_channel(struct od_worker *w)
{
	int rv = bus_open(&w->sock, w->url, 1);

	if (rv != 0) {
		log_err("%s: %s", w->url, nng_strerror(rv));
		return -1;
	}
	nng_socket_set_int(w->sock, NNG_OPT_SENDBUF, OD_WORKER_SENDBUF);
	/* Frames queue while a burst commits, so the next drain takes them all
	 * in one transaction (unbuffered, each would wait for its own). */
	nng_socket_set_int(w->sock, NNG_OPT_RECVBUF, OD_WORKER_RECVBUF);
	int fd = bus_recv_fd(w->sock);
	if (fd < 0) {
		log_err("%s: no receive fd", w->url);
		return -1;
	}
	w->recv_ev = event_new(od->base, fd, EV_READ | EV_PERSIST, proc_on_frame, w);
	event_add(w->recv_ev, NULL);
	return 0;
}

/* nng 1.5.2 can wedge an IPC listener when a peer disconnects during the
 * SP handshake (nng issue #1518): a worker that never got through is given
 * a fresh listener before it is started again. */
static void
proc_reopen_channel(struct od_worker *w)
{
	char path[PATH_MAX];

	log_warn("%s never became ready; re-creating its channel", w->name);
	proc_backlog_clear(w);
	if (w->send_ev != NULL) {
		event_free(w->send_ev);
		w->send_ev = NULL;
	}
	event_free(w->recv_ev);
	w->recv_ev = NULL;
	nng_close(w->sock);
	snprintf(path, sizeof(path), "%s", w->url + strlen("ipc://"));
	unlink(path);
	if (proc_open_channel(w) != 0)
		od_begin_shutdown(1);
}

void
proc_init_workers(void)
{
	for (int i = 0; i < OD_NWORKERS; i++) {
		struct od_worker *w = &od->w[i];
		memset(w, 0, sizeof(*w));
		w->role = (enum od_role)i;
		w->name = proc_names[i];
		w->counts = i != OD_CHAOS;
		w->lifeline = -1;
		snprintf(w->url, sizeof(w->url), "ipc://%.200s/w-%s.ipc", od->runtime_dir, w->name);
		if (proc_open_channel(w) != 0)
			fatal("cannot open the %s channel", w->name);
		w->timer = evtimer_new(od->base, proc_on_timer, w);
	}
}

struct od_worker *
proc_by_name(const char *name)
{
	for (int i = 0; i < OD_NWORKERS; i++)
		if (strcmp(od->w[i].name, name) == 0)
			return &od->w[i];
	return NULL;
}

static void
proc_arm(struct od_worker *w, int64_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_del(w->timer);
	evtimer_add(w->timer, &tv);
}

static char proc_self_exe[PATH_MAX]; /* this binary, for the workers' exec */
static int proc_self_exe_done;

int
proc_spawn(struct od_worker *w)
{
	int sp[2];
	pid_t pid;
	char title[64];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		log_err("%s: socketpair: %s; retrying", w->name, strerror(errno));
		w->state = OD_W_BACKOFF;
		proc_arm(w, OD_RESTART_MIN_MS);
		return -1;
	}
	/* Resolved once, before the first fork (readlink is not for the child). */
	if (!proc_self_exe_done) {
		ssize_t n = readlink("/proc/self/exe", proc_self_exe, sizeof(proc_self_exe) - 1);
		proc_self_exe[n > 0 ? n : 0] = '\0';
		proc_self_exe_done = 1;
	}
	snprintf(title, sizeof(title), "operatord: %s", w->name);
	char *const argv[] = {title, "--worker", (char *)w->name, "--config", od->active_config,
		"--runtime-dir", od->runtime_dir, NULL};
	pid = fork();
	if (pid < 0) {
		log_err("%s: fork: %s; retrying", w->name, strerror(errno));
		close(sp[0]);
		close(sp[1]);
		w->state = OD_W_BACKOFF;
		proc_arm(w, OD_RESTART_MIN_MS);
		return -1;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls until exec: nng is not fork-safe. */
		/* dup2(3, 3) would keep CLOEXEC: clear it instead when the pair landed on 3. */
		if (sp[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sp[1], 3) < 0)
			_exit(127);
		close_range(4, ~0U, 0);
		setsid();
		/* The real path, so comm is "operatord" (not "exe") and valgrind
		 * --trace-children follows; /proc/self/exe if it is gone. */
		if (proc_self_exe[0])
			execv(proc_self_exe, argv);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(sp[1]);
	w->pid = pid;
	w->lifeline = sp[0];
	w->state = OD_W_STARTING;
	w->started_mono = op_mono_ms();
	w->ready_mono = 0;
	w->lifeline_ev = event_new(od->base, w->lifeline, EV_READ | EV_PERSIST,
	    proc_on_lifeline, w);
	event_add(w->lifeline_ev, NULL);
	proc_arm(w, OD_READY_TIMEOUT_MS);
	log_info("%s started, pid %d", w->name, (int)pid);
	return 0;
}

static void
proc_on_lifeline(evutil_socket_t fd, short ev, void *arg)
{
	struct od_worker *w = arg;
	char buf[64];
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)ev;
	if (n > 0)
		return; /* readiness newline; the hello frame is what we act on */
	/* EOF: the child is gone or closed fd 3; SIGCHLD/waitpid decides what it means. */
	event_free(w->lifeline_ev);
	w->lifeline_ev = NULL;
	close(w->lifeline);
	w->lifeline = -1;
}

static void
proc_mark_ready(struct od_worker *w)
{
	if (w->state != OD_W_STARTING)
		return;
	w->state = OD_W_READY;
	w->ready_mono = op_mono_ms();
	w->last_frame_mono = w->ready_mono;
	evtimer_del(w->timer);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "worker", json_object_new_string(w->name));
	json_object_object_add(d, "pid", json_object_new_int(w->pid));
	json_object_object_add(d, "restarts", json_object_new_int(w->restarts));
	outbox_event("worker_started", 0, NULL, w->name, NULL, d);
	outbox_send(w->role, OP_MSG_SETTINGS, od_new_id(), acting_settings_body());
	dispatch_worker_ready(w);
	outbox_commit();
	if (!od->notified_ready && proc_all_ready()) {
		od->notified_ready = 1;
		notify_systemd("READY=1\nSTATUS=all workers ready");
		log_info("all workers ready");
	}
}

static void
proc_on_frame(evutil_socket_t fd, short ev, void *arg)
{
	struct od_worker *w = arg;
	struct op_msg m;
	char err[256];
	int rc;

	(void)fd;
	(void)ev;
	/* What is queued now is one burst: one commit (and disk sync) for all
	 * of it, each frame its own savepoint. */
	outbox_batch_begin();
	for (size_t n = 1; (rc = bus_recv(w->sock, &m, 1, err, sizeof(err))) != 0; n++) {
		if (rc == -2)
			break;
		w->last_frame_mono = op_mono_ms();
		if (rc < 0) {
			/* A worker that speaks garbage is broken: restart it. */
			log_warn("%s sent a bad frame (%s); restarting it", w->name, err);
			if (w->pid > 0)
				kill(w->pid, SIGKILL);
			break;
		}
		if (m.type == OP_MSG_REPLY || m.type == OP_MSG_OBSERVE_REP) {
			/* An answer speaks of what came before it: commit that first. */
			outbox_batch_end();
			outbox_batch_begin();
		}
		if (m.type == OP_MSG_HELLO) {
			proc_mark_ready(w);
		} else {
			/* Frames from an incarnation that has since died are still facts. */
			dispatch_worker_msg(w, &m);
		}
		op_msg_clear(&m);
		if (n % OD_BURST_MAX == 0) {
			outbox_batch_end();
			outbox_batch_begin();
		}
	}
	outbox_batch_end();
}

static void
proc_backlog_clear(struct od_worker *w)
{
	while (w->backlog != NULL) {
		struct od_backlog *b = w->backlog;
		w->backlog = b->next;
		op_msg_clear(&b->msg);
		free(b);
	}
	w->backlog_tail = &w->backlog;
	w->nbacklog = 0;
	if (w->send_ev != NULL)
		event_del(w->send_ev);
}

static void
proc_on_writable(evutil_socket_t fd, short ev, void *arg)
{
	struct od_worker *w = arg;

	(void)fd;
	(void)ev;
	while (w->backlog != NULL) {
		int rv = bus_send(w->sock, &w->backlog->msg, 1);
		if (rv == NNG_EAGAIN)
			return; /* still full: the next wakeup continues */
		if (rv != 0)
			log_err("%s: %s frame not sent: %s", w->name,
			    op_msg_type_name(w->backlog->msg.type), nng_strerror(rv));
		struct od_backlog *b = w->backlog;
		w->backlog = b->next;
		op_msg_clear(&b->msg);
		free(b);
		w->nbacklog--;
	}
	w->backlog_tail = &w->backlog;
	event_del(w->send_ev);
}

/* Holds a frame the channel cannot take yet. A busy worker (the executor in
 * a 25 s election wait) is not killed for being busy: its frames wait here,
 * settings coalesce to the newest, and only a backlog that keeps growing
 * past OD_WORKER_BACKLOG_MAX counts as a hung worker. Takes m's body. */
static int
proc_backlog_add(struct od_worker *w, struct op_msg *m)
{
	if (m->type == OP_MSG_SETTINGS) {
		/* Settings are a whole state, not a change: only the newest matters. */
		for (struct od_backlog **pp = &w->backlog; *pp != NULL;) {
			struct od_backlog *b = *pp;
			if (b->msg.type != OP_MSG_SETTINGS) {
				pp = &b->next;
				continue;
			}
			*pp = b->next;
			if (w->backlog_tail == &b->next)
				w->backlog_tail = pp;
			op_msg_clear(&b->msg);
			free(b);
			w->nbacklog--;
		}
	}
	if (w->nbacklog >= OD_WORKER_BACKLOG_MAX) {
		log_warn("%s has not taken a frame while %zu waited; restarting it (its work is"
		    " resent from the ledger)", w->name, w->nbacklog);
		proc_backlog_clear(w);
		proc_restart_worker(w);
		return -1;
	}
	struct od_backlog *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		log_err("%s: out of memory; restarting it", w->name);
		proc_restart_worker(w);
		return -1;
	}
	b->msg = *m;
	m->body = NULL;
	if (w->backlog_tail == NULL)
		w->backlog_tail = &w->backlog;
	*w->backlog_tail = b;
	w->backlog_tail = &b->next;
	w->nbacklog++;
	if (w->send_ev == NULL) {
		int fd = bus_send_fd(w->sock);
		if (fd >= 0)
			w->send_ev = event_new(od->base, fd, EV_READ | EV_PERSIST, proc_on_writable, w);
	}
	if (w->send_ev != NULL)
		event_add(w->send_ev, NULL);
	return 0;
}

size_t
proc_backlog(const struct od_worker *w)
{
	return w->nbacklog;
}

/* Returns 0 when sent or held, -1 when the worker is not there (its work is
 * resumed from the ledger when it is ready), -2 when the frame can never be
 * sent (too large). */
int
proc_send(struct od_worker *w, struct op_msg *m)
{
	int rv;

	if (w->state != OD_W_READY)
		return -1; /* resumed from the ledger when it is ready again */
	if (w->backlog != NULL)
		return proc_backlog_add(w, m); /* keep the order */
	rv = bus_send(w->sock, m, 1);
	if (rv == NNG_EMSGSIZE) {
		/* Not the worker's fault: killing it would resend the same frame forever. */
		log_err("%s: %s frame exceeds %u bytes; not sent", w->name,
		    op_msg_type_name(m->type), OP_MSG_MAX);
		return -2;
	}
	if (rv == NNG_EAGAIN)
		return proc_backlog_add(w, m);
	if (rv != 0) {
		log_warn("%s: cannot send %s frame (%s); restarting it", w->name,
		    op_msg_type_name(m->type), nng_strerror(rv));
		proc_restart_worker(w);
		return -1;
	}
	return 0;
}

int
proc_all_ready(void)
{
	for (int i = 0; i < OD_NWORKERS; i++)
		if (od->w[i].state != OD_W_READY)
			return 0;
	return 1;
}

static void
proc_describe_exit(struct od_worker *w, int status)
{
	if (WIFEXITED(status))
		snprintf(w->last_exit, sizeof(w->last_exit), "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(w->last_exit, sizeof(w->last_exit), "signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else
		snprintf(w->last_exit, sizeof(w->last_exit), "status %d", status);
}

static void
proc_exited(struct od_worker *w, int status)
{
	int64_t now = op_mono_ms();
	int64_t ready_for = w->ready_mono ? now - w->ready_mono : 0;
	enum od_wstate was = w->state;

	proc_describe_exit(w, status);
	log_info("%s (pid %d) exited: %s", w->name, (int)w->pid, w->last_exit);
	if (w->ready_mono == 0 && !od->shutting_down)
		proc_reopen_channel(w);
	if (w->lifeline_ev) {
		event_free(w->lifeline_ev);
		w->lifeline_ev = NULL;
	}
	if (w->lifeline >= 0) {
		close(w->lifeline);
		w->lifeline = -1;
	}
	evtimer_del(w->timer);
	proc_backlog_clear(w); /* what it never took is resent from the ledger when it is back */
	json_object *d = json_object_new_object();
	json_object_object_add(d, "worker", json_object_new_string(w->name));
	json_object_object_add(d, "pid", json_object_new_int(w->pid));
	json_object_object_add(d, "cause", json_object_new_string(w->last_exit));
	json_object_object_add(d, "uptime_ms", json_object_new_int64(now - w->started_mono));
	w->pid = 0;
	w->state = OD_W_STOPPED;
	w->ready_mono = 0;
	outbox_event("worker_exited", 0, NULL, w->name, NULL, d);
	dispatch_worker_died(w);
	outbox_commit();
	control_worker_reply(w, NULL);
	if (od->shutting_down) {
		if (was == OD_W_STOPPING)
			proc_stop_next();
		return;
	}
	/* A restart we asked for (reload, opsend restart) is no crash. */
	struct od_restart_decision dec = od_restart_on_exit(&w->rs, now, ready_for,
	    w->counts && !w->reloading);
	if (w->reloading) {
		w->reloading = 0;
		dec.delay_ms = 0;
	}
	if (dec.give_up) {
		log_err("%s restarted more than %d times in %d s; shutting down", w->name,
		    OD_INTENSITY, OD_PERIOD_MS / 1000);
		json_object *g = json_object_new_object();
		json_object_object_add(g, "worker", json_object_new_string(w->name));
		json_object_object_add(g, "reason", json_object_new_string("restart intensity exceeded"));
		outbox_event("daemon_giving_up", 0, NULL, w->name, NULL, g);
		outbox_commit();
		od_begin_shutdown(1);
		return;
	}
	w->restarts++;
	if (dec.delay_ms == 0) {
		proc_spawn(w);
	} else {
		w->state = OD_W_BACKOFF;
		log_info("%s restarts in %lld ms", w->name, (long long)dec.delay_ms);
		proc_arm(w, dec.delay_ms);
	}
}

void
proc_reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < OD_NWORKERS; i++)
			if (od->w[i].pid == pid) {
				proc_exited(&od->w[i], status);
				break;
			}
	}
}

static void
proc_on_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct od_worker *w = arg;

	(void)fd;
	(void)ev;
	switch (w->state) {
	case OD_W_BACKOFF:
		if (!od->shutting_down)
			proc_spawn(w);
		break;
	case OD_W_STARTING:
		log_warn("%s not ready after %d ms; killing it", w->name, OD_READY_TIMEOUT_MS);
		if (w->pid > 0)
			kill(-w->pid, SIGKILL);
		break;
	case OD_W_STOPPING:
		log_warn("%s still running %d ms after SIGTERM; SIGKILL", w->name, OD_SHUTDOWN_MS);
		if (w->pid > 0) {
			kill(-w->pid, SIGKILL); /* its whole process group */
			kill(w->pid, SIGKILL);
		}
		break;
	default:
		break;
	}
}

void
proc_stop_next(void)
{
	while (od->stop_index < OD_NWORKERS) {
		struct od_worker *w = &od->w[proc_stop_order[od->stop_index]];
		if (w->state == OD_W_STOPPING && w->pid > 0)
			return; /* still waiting for this one */
		if (w->pid > 0) {
			w->state = OD_W_STOPPING;
			kill(w->pid, SIGTERM);
			proc_arm(w, OD_SHUTDOWN_MS);
			return;
		}
		evtimer_del(w->timer);
		w->state = OD_W_STOPPED;
		od->stop_index++;
	}
	event_base_loopexit(od->base, NULL);
}

/* A worker that broke the protocol is a bug in us: killed, and the restart
 * counts toward the intensity limit like any crash. */
void
proc_fail_worker(struct od_worker *w)
{
	if (w->pid > 0)
		kill(w->pid, SIGKILL);
}

/* A restart we ask for (reload, opsend restart): SIGTERM, and SIGKILL after
 * OD_SHUTDOWN_MS if it does not go, so a worker stuck on its way out cannot
 * keep its role empty. Its frames wait in the ledger until it is back. */
void
proc_restart_worker(struct od_worker *w)
{
	if (w->pid > 0 && w->state != OD_W_STOPPING) {
		w->reloading = 1;
		w->state = OD_W_STOPPING;
		kill(w->pid, SIGTERM);
		proc_arm(w, OD_SHUTDOWN_MS);
	}
}

const char *
od_worker_state_name(enum od_wstate s)
{
	static const char *const names[] = {"stopped", "starting", "ready", "backoff",
		"stopping"};
	return names[s];
}

json_object *
proc_workers_json(void)
{
	json_object *arr = json_object_new_array();
	int64_t now = op_mono_ms();

	for (int i = 0; i < OD_NWORKERS; i++) {
		struct od_worker *w = &od->w[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(w->name));
		json_object_object_add(o, "pid", json_object_new_int(w->pid));
		json_object_object_add(o, "state", json_object_new_string(od_worker_state_name(w->state)));
		json_object_object_add(o, "restarts", json_object_new_int(w->restarts));
		json_object_object_add(o, "uptime_ms", json_object_new_int64(
		    w->pid > 0 ? now - w->started_mono : 0));
		json_object_object_add(o, "last_exit", json_object_new_string(w->last_exit));
		json_object_array_add(arr, o);
	}
	return arr;
}
