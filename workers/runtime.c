/* runtime: what every worker process does the same way. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "protocol/bus.h"
#include "workers/llm.h"
#include "workers/worker.h"

static const struct worker_role *const worker_roles[] = {
	&observer_role, &diagnoser_role, &executor_role, &verifier_role, &chaos_role,
};

int
worker_send(struct worker *w, enum op_msg_type type, uint64_t id, json_object *body)
{
	struct op_msg m;
	int rv;

	op_msg_init(&m, type, id, body);
	rv = bus_send(w->sock, &m, 0);
	if (rv != 0 && rv != NNG_EMSGSIZE) {
		/* What we could not say is lost with our memory of it: restart, and
		 * the supervisor re-sends our work from the ledger. */
		log_err("cannot send %s frame: %s; restarting", op_msg_type_name(type),
		    nng_strerror(rv));
		worker_stop(w);
	} else if (rv != 0) {
		log_err("%s frame too large to send; dropped", op_msg_type_name(type));
	}
	op_msg_clear(&m);
	return rv == 0 ? 0 : -1;
}

static void
worker_apply_settings(struct worker *w, struct op_msg *m)
{
	op_strlcpy(w->mode, op_json_str(m->body, "mode", w->mode), sizeof(w->mode));
	w->kill_switch = op_json_bool(m->body, "kill_switch", w->kill_switch);
	w->chaos_enabled = op_json_bool(m->body, "chaos_enabled", w->chaos_enabled);
}

static void
worker_handle(struct worker *w, struct op_msg *m)
{
	if (m->type == OP_MSG_SETTINGS)
		worker_apply_settings(w, m);
	/* Every role sees settings too (chaos pauses on the kill switch). */
	w->role->on_msg(w, m);
}

static void
worker_defer(struct worker *w, struct op_msg *m)
{
	struct worker_deferred *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		log_err("out of memory deferring a %s frame; restarting", op_msg_type_name(m->type));
		op_msg_clear(m);
		worker_stop(w);
		return;
	}
	d->m = *m;
	if (w->deferred_tail == NULL)
		w->deferred_tail = &w->deferred;
	*w->deferred_tail = d;
	w->deferred_tail = &d->next;
}

/* Runs what was deferred during a gate, in arrival order. */
static void
worker_run_deferred(struct worker *w)
{
	while (w->gate == 0 && w->deferred != NULL && !w->stopping) {
		struct worker_deferred *d = w->deferred;
		w->deferred = d->next;
		if (w->deferred == NULL)
			w->deferred_tail = &w->deferred;
		worker_handle(w, &d->m);
		op_msg_clear(&d->m);
		free(d);
	}
}

void
worker_drain(struct worker *w)
{
	struct op_msg m;
	char err[256];
	int rc;

	while (!w->stopping && (rc = bus_recv(w->sock, &m, 1, err, sizeof(err))) != 0) {
		if (rc == -2)
			return;
		if (rc < 0) {
			/* The supervisor never sends garbage; if it did, stop and be restarted. */
			log_err("bad frame from the supervisor: %s", err);
			worker_stop(w);
			return;
		}
		if (w->gate > 0 && m.type != OP_MSG_SETTINGS) {
			worker_defer(w, &m);
			continue;
		}
		worker_handle(w, &m);
		op_msg_clear(&m);
	}
}

static int
fcntl_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void
worker_on_frame(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	worker_drain(arg);
	worker_run_deferred(arg);
}

static void
worker_on_lifeline(evutil_socket_t fd, short ev, void *arg)
{
	struct worker *w = arg;
	char buf[16];

	(void)ev;
	if (read(fd, buf, sizeof(buf)) <= 0) {
		/* The supervisor died (even by SIGKILL): leave nothing behind, as on
		 * SIGTERM; chaos undoes its faults here. */
		log_info("supervisor gone; exiting");
		if (w->role->on_term && !w->stopping)
			w->role->on_term(w);
		worker_stop(w);
	}
}

static void
worker_on_signal(evutil_socket_t sig, short ev, void *arg)
{
	struct worker *w = arg;

	(void)ev;
	log_info("signal %d: stopping", (int)sig);
	if (w->role->on_term)
		w->role->on_term(w);
	worker_stop(w);
}

void
worker_stop(struct worker *w)
{
	w->stopping = 1;
	event_base_loopbreak(w->base);
}

int
worker_check_config(const struct op_config *cfg, char *err, size_t errlen)
{
	int64_t ms;

	if (op_config_duration(cfg, "operatord", "poll_interval", WK_POLL_MS, &ms, err, errlen) != 0)
		return -1;
	if (ms < 100) {
		snprintf(err, errlen, "[operatord] poll_interval must be at least 100ms");
		return -1;
	}
	/* [diagnoser]: backend, model, base_url, key (env var or 0600 file), limits. */
	struct llm_conf lc;
	if (llm_conf_load(cfg, &lc, err, errlen) != 0)
		return -1;
	return 0;
}

int
worker_main(const char *role, const char *config, const char *runtime_dir, int verbose)
{
	static struct worker wk;
	struct worker *w = &wk;
	char err[512], url[PATH_MAX + 32], title[64];
	int rv, code = 0;

	for (size_t i = 0; i < OP_ARRAY_LEN(worker_roles); i++)
		if (strcmp(worker_roles[i]->name, role) == 0)
			w->role = worker_roles[i];
	/* bench/bench_hub only: a synthetic observer (workers/hub_bench.c) */
	if (strcmp(role, "observer") == 0 && getenv("OPERATORD_HUB_BENCH") != NULL)
		w->role = &hub_bench_role;
	snprintf(title, sizeof(title), "operatord: %s", role);
	log_init(title, verbose);
	if (w->role == NULL || runtime_dir == NULL) {
		log_err("unknown worker role \"%s\" or no runtime dir", role);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	op_strlcpy(w->mode, "observe", sizeof(w->mode));
	w->cfg = op_config_load(config, err, sizeof(err));
	if (w->cfg == NULL)
		fatal("%s", err);
	/* Only the diagnoser needs the model's key: no other worker (nor anything
	 * a subject spawns) inherits it. */
	const char *keyenv = op_config_get(w->cfg, "diagnoser", "api_key_env");
	if (keyenv != NULL && strcmp(role, "diagnoser") != 0)
		unsetenv(keyenv);
	if (op_subjects_create(&w->subjects, w->cfg, err, sizeof(err)) != 0)
		fatal("%s", err);
	w->base = event_base_new();
	snprintf(url, sizeof(url), "ipc://%s/w-%s.ipc", runtime_dir, role);
	if ((rv = bus_open(&w->sock, url, 0)) != 0)
		fatal("%s: %s", url, nng_strerror(rv));
	bus_set_send_timeout(w->sock, OP_BUS_SEND_TIMEOUT_MS);
	w->recv_ev = event_new(w->base, bus_recv_fd(w->sock), EV_READ | EV_PERSIST, worker_on_frame, w);
	event_add(w->recv_ev, NULL);
	if (fcntl_is_open(WK_LIFELINE_FD)) {
		w->lifeline_ev = event_new(w->base, WK_LIFELINE_FD, EV_READ | EV_PERSIST,
		    worker_on_lifeline, w);
		event_add(w->lifeline_ev, NULL);
	}
	w->sig_ev[0] = evsignal_new(w->base, SIGTERM, worker_on_signal, w);
	w->sig_ev[1] = evsignal_new(w->base, SIGINT, worker_on_signal, w);
	event_add(w->sig_ev[0], NULL);
	event_add(w->sig_ev[1], NULL);
	if (w->role->init(w, err, sizeof(err)) != 0)
		fatal("%s", err);
	json_object *hello = json_object_new_object();
	json_object_object_add(hello, "role", json_object_new_string(role));
	json_object_object_add(hello, "pid", json_object_new_int(getpid()));
	/* The hello frame waits until the dial completes: it proves the channel works. */
	if (worker_send(w, OP_MSG_HELLO, 0, hello) != 0)
		fatal("cannot reach the supervisor at %s", url);
	if (op_write_all(WK_LIFELINE_FD, "\n", 1) != 0)
		log_debug("no lifeline fd");
	event_base_dispatch(w->base);
	if (w->role->fini)
		w->role->fini(w);
	while (w->deferred) {
		struct worker_deferred *d = w->deferred;
		w->deferred = d->next;
		op_msg_clear(&d->m);
		free(d);
	}
	event_free(w->recv_ev);
	if (w->lifeline_ev)
		event_free(w->lifeline_ev);
	event_free(w->sig_ev[0]);
	event_free(w->sig_ev[1]);
	bus_close(w->sock);
	event_base_free(w->base);
	op_subjects_destroy(&w->subjects);
	op_config_free(w->cfg);
	nng_fini();
	return code;
}
