/* operatord: the supervisor. Parses the configuration, owns the ledger and
 * the sockets, spawns the workers and runs the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/http.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/util.h"
#include "protocol/ctl.h"
#include "subjects/subject.h"
#include "supervisor/alerts.h"
#include "supervisor/ha.h"
#include "supervisor/metrics.h"
#include "supervisor/od.h"
#include "workers/worker.h"

#define OD_DEFAULT_CONFIG "/etc/operatord/operatord.conf"
#define OD_DEFAULT_RUNTIME OP_CTL_DEFAULT_RUNTIME_DIR
#define OD_DEFAULT_STATE "/var/lib/operatord"


static void
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: operatord [--config FILE] [--check-config] [--verbose]\n"
	    "       operatord --help | --version\n"
	    "  --config FILE    configuration (default " OD_DEFAULT_CONFIG ")\n"
	    "  --check-config   validate the configuration and exit 0, or print what is wrong and exit 1\n"
	    "  --verbose        debug logging\n"
	    "  --help           this text\n"
	    "  --version        print the version and exit\n"
	    "See operatord(8).\n");
	exit(code);
}

/* Validates everything a worker will read too, so --check-config and start-up
 * fail early with the same message rather than a worker crash-looping. */
static int
od_load_settings(struct op_config *cfg, char *err, size_t errlen)
{
	const char *v;

	for (size_t i = 0; i < op_config_section_count(cfg); i++) {
		const char *sec = op_config_section_name(cfg, i);
		if (strcmp(sec, "operatord") && strcmp(sec, "chaos") && strcmp(sec, "diagnoser") && strcmp(sec, "safety") && strcmp(sec, "alerts") &&
		    strcmp(sec, "ha") &&
		    strncmp(sec, "subject.", 8)) {
			snprintf(err, errlen, "unknown section [%s]", sec);
			return -1;
		}
	}
	v = op_config_get(cfg, "operatord", "runtime_dir");
	op_strlcpy(od->runtime_dir, v ? v : OD_DEFAULT_RUNTIME, sizeof(od->runtime_dir));
	v = op_config_get(cfg, "operatord", "state_dir");
	op_strlcpy(od->state_dir, v ? v : OD_DEFAULT_STATE, sizeof(od->state_dir));
	if (od->runtime_dir[0] != '/' || od->state_dir[0] != '/') {
		snprintf(err, errlen, "[operatord] runtime_dir and state_dir must be absolute paths");
		return -1;
	}
	if (strlen(od->runtime_dir) > 80) {
		snprintf(err, errlen, "[operatord] runtime_dir is too long for a unix socket path");
		return -1;
	}
	v = op_config_get(cfg, "operatord", "mode");
	v = v ? v : "observe";
	if (strcmp(v, "observe") && strcmp(v, "approve") && strcmp(v, "execute")) {
		snprintf(err, errlen, "[operatord] mode: \"%s\" is not observe, approve or execute", v);
		return -1;
	}
	op_strlcpy(od->mode, v, sizeof(od->mode));
	if (op_config_duration(cfg, "operatord", "verify_delay", OD_VERIFY_DELAY_MS,
		&od->verify_delay_ms, err, errlen) != 0 ||
	    op_config_duration(cfg, "operatord", "verify_settle", OD_VERIFY_SETTLE_MS,
		&od->verify_settle_ms, err, errlen) != 0 ||
	    op_config_duration(cfg, "operatord", "verify_timeout", OD_VERIFY_TIMEOUT_MS,
		&od->verify_timeout_ms, err, errlen) != 0 ||
	    op_config_duration(cfg, "operatord", "diagnose_deadline", OD_DIAGNOSE_DEADLINE_MS,
		&od->diagnose_deadline_ms, err, errlen) != 0 ||
	    op_config_duration(cfg, "operatord", "act_deadline", OD_ACT_DEADLINE_MS,
		&od->act_deadline_ms, err, errlen) != 0)
		return -1;
	if (od->diagnose_deadline_ms <= 0 || od->act_deadline_ms <= 0) {
		snprintf(err, errlen, "[operatord] diagnose_deadline and act_deadline must be positive");
		return -1;
	}
	v = op_config_get(cfg, "operatord", "metrics_listen");
	if (v != NULL && *v != '\0') {
		char host[256];
		int port;
		if (op_split_hostport(v, host, sizeof(host), &port) != 0) {
			snprintf(err, errlen, "[operatord] metrics_listen: \"%s\" is not HOST:PORT", v);
			return -1;
		}
	}
	if (od->verify_timeout_ms <= od->verify_delay_ms + od->verify_settle_ms) {
		snprintf(err, errlen, "[operatord] verify_timeout must exceed verify_delay + verify_settle");
		return -1;
	}
	od->ctl_gid = (gid_t)-1;
	v = op_config_get(cfg, "operatord", "control_group");
	if (v != NULL) {
		struct group *g = getgrnam(v);
		if (g == NULL) {
			snprintf(err, errlen, "[operatord] control_group: no group \"%s\"", v);
			return -1;
		}
		od->ctl_gid = g->gr_gid;
	}
	if (op_config_bool(cfg, "chaos", "enabled", 0, &od->chaos_enabled, err, errlen) != 0)
		return -1;
	if (policy_load(cfg, &od->safety, err, errlen) != 0)
		return -1;
	if (alerts_check_config(cfg, err, errlen) != 0)
		return -1;
	if (ha_configure(cfg, err, errlen) != 0) /* [ha] */
		return -1;
	/* Subjects and workers validate their own sections. */
	struct op_subjects subjects;
	if (op_subjects_create(&subjects, cfg, err, errlen) != 0)
		return -1;
	if (subjects.n == 0) {
		op_subjects_destroy(&subjects);
		snprintf(err, errlen, "no [subject.NAME] section: nothing to watch");
		return -1;
	}
	int bad = chaos_check_config(cfg, &subjects, err, errlen);
	op_subjects_destroy(&subjects);
	if (bad || worker_check_config(cfg, err, errlen) != 0)
		return -1;
	return 0;
}

static int
od_mkdir(const char *path, mode_t mode, char *err, size_t errlen)
{
	char tmp[PATH_MAX];

	op_strlcpy(tmp, path, sizeof(tmp));
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", tmp, strerror(errno));
			return -1;
		}
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", tmp, strerror(errno));
		return -1;
	}
	return 0;
}

/* One daemon per runtime directory: a second one would steal the sockets. */
static int
od_lock(char *err, size_t errlen)
{
	char path[PATH_MAX + 8], pid[32];

	snprintf(path, sizeof(path), "%s/lock", od->runtime_dir);
	od->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (od->lock_fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(od->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		char other[32] = "";
		ssize_t n = pread(od->lock_fd, other, sizeof(other) - 1, 0);
		if (n > 0)
			other[strcspn(other, "\n")] = '\0';
		snprintf(err, errlen, "another operatord%s%s runs with runtime_dir %s",
		    other[0] ? " (pid " : "", other[0] ? other : "", od->runtime_dir);
		if (other[0])
			strncat(err, ")", errlen - strlen(err) - 1);
		return -1;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(od->lock_fd, 0) != 0 || pwrite(od->lock_fd, pid, strlen(pid), 0) < 0)
		log_warn("cannot write pid to %s", path);
	return 0;
}

/* Copies src to dst through a temporary file and a rename, so a reader never
 * sees half a file. */
static int
od_copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
	char tmp[PATH_MAX + 32], buf[8192];
	int in = open(src, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	if (in < 0) {
		snprintf(err, errlen, "%s: %s", src, strerror(errno));
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(in);
	if (close(out) != 0 || n < 0 || rename(tmp, dst) != 0) {
		snprintf(err, errlen, "%s: %s", dst, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The configuration a worker reads is the copy the supervisor validated: a
 * file edited on disk (and not yet reloaded) never reaches a restarted
 * worker. The copy is validated itself, so what was checked is what runs. */
static struct op_config *
od_snapshot_config(char *err, size_t errlen)
{
	char pending[PATH_MAX + 32];
	struct op_config *cfg;

	snprintf(pending, sizeof(pending), "%s/config.pending", od->runtime_dir);
	if (od_copy_file(od->config_path, pending, err, errlen) != 0)
		return NULL;
	cfg = op_config_load(pending, err, errlen);
	if (cfg == NULL)
		unlink(pending);
	return cfg;
}

static int
od_activate_config(char *err, size_t errlen)
{
	char pending[PATH_MAX + 32];

	snprintf(pending, sizeof(pending), "%s/config.pending", od->runtime_dir);
	snprintf(od->active_config, sizeof(od->active_config), "%s/config", od->runtime_dir);
	if (rename(pending, od->active_config) != 0) {
		snprintf(err, errlen, "%s: %s", od->active_config, strerror(errno));
		return -1;
	}
	return 0;
}

/* What od_load_settings sets: kept aside during a reload and put back
 * whole when the new file is refused. */
struct od_loaded {
	char runtime_dir[PATH_MAX], state_dir[PATH_MAX], mode[16];
	int64_t verify_delay_ms, verify_settle_ms, verify_timeout_ms;
	int64_t diagnose_deadline_ms, act_deadline_ms;
	gid_t ctl_gid;
	int chaos_enabled;
	struct od_safety safety;
};

static void
od_loaded_swap(struct od_loaded *l)
{
	struct od_loaded cur;

	memcpy(cur.runtime_dir, od->runtime_dir, sizeof(cur.runtime_dir));
	memcpy(cur.state_dir, od->state_dir, sizeof(cur.state_dir));
	memcpy(cur.mode, od->mode, sizeof(cur.mode));
	cur.verify_delay_ms = od->verify_delay_ms;
	cur.verify_settle_ms = od->verify_settle_ms;
	cur.verify_timeout_ms = od->verify_timeout_ms;
	cur.diagnose_deadline_ms = od->diagnose_deadline_ms;
	cur.act_deadline_ms = od->act_deadline_ms;
	cur.ctl_gid = od->ctl_gid;
	cur.chaos_enabled = od->chaos_enabled;
	cur.safety = od->safety;
	memcpy(od->runtime_dir, l->runtime_dir, sizeof(l->runtime_dir));
	memcpy(od->state_dir, l->state_dir, sizeof(l->state_dir));
	memcpy(od->mode, l->mode, sizeof(l->mode));
	od->verify_delay_ms = l->verify_delay_ms;
	od->verify_settle_ms = l->verify_settle_ms;
	od->verify_timeout_ms = l->verify_timeout_ms;
	od->diagnose_deadline_ms = l->diagnose_deadline_ms;
	od->act_deadline_ms = l->act_deadline_ms;
	od->ctl_gid = l->ctl_gid;
	od->chaos_enabled = l->chaos_enabled;
	od->safety = l->safety;
	*l = cur;
}

int
od_reload(const char *who, char *err, size_t errlen)
{
	struct op_config *cfg = od_snapshot_config(err, errlen);
	struct od_loaded old = {0};

	if (cfg == NULL)
		return -1;
	od_loaded_swap(&old); /* old = the running settings; od's are blank */
	int bad = od_load_settings(cfg, err, errlen) != 0;
	if (!bad && (strcmp(old.runtime_dir, od->runtime_dir) ||
	    strcmp(old.state_dir, od->state_dir))) {
		snprintf(err, errlen, "runtime_dir and state_dir change only with a restart");
		bad = 1;
	}
	if (bad || od_activate_config(err, errlen) != 0) {
		od_loaded_swap(&old); /* the running settings back; old = the refused */
		policy_free(&old.safety);
		op_config_free(cfg);
		log_err("reload refused, the running configuration stays: %s", err);
		return -1;
	}
	policy_free(&old.safety);
	op_config_free(od->cfg);
	od->cfg = cfg;
	control_load_acl(); /* control_group may have changed */
	outbox_begin();
	json_object *d = json_object_new_object();
	json_object_object_add(d, "by", json_object_new_string(who));
	json_object_object_add(d, "mode", json_object_new_string(od->mode));
	outbox_event("config_reloaded", 0, NULL, NULL, NULL, d);
	if (strcmp(old.mode, od->mode) != 0) {
		/* The file's mode applies at a reload as at a start. */
		json_object *m = json_object_new_object();
		json_object_object_add(m, "from", json_object_new_string(old.mode));
		json_object_object_add(m, "to", json_object_new_string(od->mode));
		json_object_object_add(m, "by", json_object_new_string(who));
		ledger_set_setting(od->ledger, "mode", od->mode);
		outbox_event("mode_changed", 0, NULL, NULL, NULL, m);
		acting_settings_changed();
	}
	outbox_commit();
	log_info("configuration reloaded (mode %s); restarting the workers", od->mode);
	for (int i = 0; i < OD_NWORKERS; i++)
		proc_restart_worker(&od->w[i]);
	return 0;
}

static void
od_on_signal(evutil_socket_t sig, short ev, void *arg)
{
	(void)ev;
	(void)arg;
	if (sig == SIGCHLD) {
		proc_reap();
		return;
	}
	if (sig == SIGHUP) {
		char err[512] = "";
		log_info("SIGHUP: reloading %s", od->config_path);
		od_reload("SIGHUP", err, sizeof(err));
		return;
	}
	if (od->shutting_down) {
		log_warn("second signal: exiting at once");
		for (int i = 0; i < OD_NWORKERS; i++)
			if (od->w[i].pid > 0)
				kill(-od->w[i].pid, SIGKILL), kill(od->w[i].pid, SIGKILL);
		_exit(1);
	}
	log_info("signal %d: shutting down", (int)sig);
	od_begin_shutdown(0);
}

void
od_begin_shutdown(int exit_code)
{
	if (od->shutting_down)
		return;
	od->shutting_down = 1;
	od->exit_code = exit_code;
	ha_shutdown(); /* [ha] step down first: nothing starts here, a standby takes over */
	notify_systemd("STOPPING=1\nSTATUS=stopping workers");
	control_stop_accepting();
	for (int i = 0; i < OD_NWORKERS; i++)
		if (od->w[i].state == OD_W_BACKOFF) {
			evtimer_del(od->w[i].timer);
			od->w[i].state = OD_W_STOPPED;
		}
	outbox_event("daemon_stopping", 0, NULL, NULL, NULL, NULL);
	outbox_commit();
	proc_stop_next();
}

static void
od_restore_settings(void)
{
	char *ks = ledger_setting(od->ledger, "kill_switch", "off");
	char *last = ledger_setting(od->ledger, "mode", od->mode);

	od->kill_switch = !strcmp(ks, "on");
	if (strcmp(last, od->mode) != 0)
		log_info("mode %s from the configuration (it was %s before the restart)", od->mode, last);
	ledger_set_setting(od->ledger, "mode", od->mode);
	if (od->kill_switch)
		log_warn("the kill switch is ON (from the ledger): no action will run");
	free(ks);
	free(last);
}

static void
od_cleanup(void)
{
	char path[PATH_MAX + 32];

	ha_free(); /* [ha] a lease still held is revoked */
	control_close();
	metrics_close();
	alerts_close();
	for (int i = 0; i < OD_NWORKERS; i++) {
		struct od_worker *w = &od->w[i];
		if (w->recv_ev)
			event_free(w->recv_ev);
		control_worker_reply(w, NULL);
		if (w->timer)
			event_free(w->timer);
		if (w->lifeline_ev)
			event_free(w->lifeline_ev);
		if (w->lifeline >= 0)
			close(w->lifeline);
		nng_close(w->sock);
		snprintf(path, sizeof(path), "%s/w-%s.ipc", od->runtime_dir, w->name);
		unlink(path);
	}
	for (size_t i = 0; i < OP_ARRAY_LEN(od->sig_ev); i++)
		if (od->sig_ev[i])
			event_free(od->sig_ev[i]);
	snprintf(path, sizeof(path), "%s/" OP_CTL_SOCK, od->runtime_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/" OP_EVENTS_SOCK, od->runtime_dir);
	unlink(path);
	outbox_abort();
	free(od->outbox);
	ledger_close(od->ledger);
	event_base_free(od->base);
	op_config_free(od->cfg);
	if (od->lock_fd >= 0)
		close(od->lock_fd);
	nng_fini();
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"verbose", no_argument, NULL, 'v'},
		{"worker", required_argument, NULL, 'W'},
		{"runtime-dir", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *config = OD_DEFAULT_CONFIG, *worker = NULL, *rtdir = NULL;
	int check = 0, verbose = 0, ch;
	char err[512], path[PATH_MAX + 16];
	static struct od od_storage;

	/* argv's memory may later hold a worker's title: move the strings first. */
	op_proctitle_init(argc, argv);
	/* curl's global init must run before nng starts any thread. */
	op_http_global_init();
	while ((ch = getopt_long(argc, argv, "c:Cvh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'C': check = 1; break;
		case 'v': verbose = 1; break;
		case 'W': worker = optarg; break;
		case 'R': rtdir = optarg; break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("operatord %s\n", OP_VERSION); return 0;
		default: usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);
	if (worker != NULL) {
		/* "operatord: ROLE" alone in ps; "od: ROLE" in top (15-byte comm). */
		char comm[16];
		snprintf(comm, sizeof(comm), "od: %s", worker);
		op_proctitle_set(argv[0], comm);
		return worker_main(worker, config, rtdir, verbose);
	}

	log_init("operatord", verbose);
	od = &od_storage;
	od->lock_fd = -1;
	if (realpath(config, od->config_path) == NULL) {
		fprintf(stderr, "operatord: %s: %s\n", config, strerror(errno));
		return 1;
	}
	od->cfg = op_config_load(od->config_path, err, sizeof(err));
	if (od->cfg == NULL || od_load_settings(od->cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "operatord: %s: %s\n", od->config_path, err);
		policy_free(&od->safety);
		op_config_free(od->cfg);
		return 1;
	}
	if (check) {
		printf("%s: configuration OK\n", od->config_path);
		policy_free(&od->safety);
		op_config_free(od->cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (od_mkdir(od->runtime_dir, 0700, err, sizeof(err)) != 0 ||
	    od_mkdir(od->state_dir, 0700, err, sizeof(err)) != 0 || od_lock(err, sizeof(err)) != 0)
		fatal("%s", err);
	snprintf(path, sizeof(path), "%s/ledger.db", od->state_dir);
	if (ledger_open(&od->ledger, path, err, sizeof(err)) != 0)
		fatal("ledger: %s", err);
	/* What was validated above is what the workers will read. */
	op_config_free(od->cfg);
	if ((od->cfg = od_snapshot_config(err, sizeof(err))) == NULL ||
	    od_activate_config(err, sizeof(err)) != 0)
		fatal("%s", err);
	od_restore_settings();
	od->base = event_base_new();
	od->started_mono = op_mono_ms();
	od->next_id = (uint64_t)op_wall_ms() << 16; /* ids stay unique across restarts */
	if (control_open(err, sizeof(err)) != 0)
		fatal("control: %s", err);
	if (metrics_open(op_config_get(od->cfg, "operatord", "metrics_listen"), err, sizeof(err)) != 0)
		fatal("%s", err);
	if (alerts_open(od->cfg, err, sizeof(err)) != 0)
		fatal("%s", err);
	if (ha_start(err, sizeof(err)) != 0) /* [ha] campaign for each subject */
		fatal("[ha] %s", err);
	static const int sigs[] = {SIGTERM, SIGINT, SIGCHLD, SIGHUP};
	for (size_t i = 0; i < OP_ARRAY_LEN(sigs); i++) {
		od->sig_ev[i] = evsignal_new(od->base, sigs[i], od_on_signal, NULL);
		event_add(od->sig_ev[i], NULL);
	}
	proc_init_workers();
	json_object *d = json_object_new_object();
	json_object_object_add(d, "pid", json_object_new_int(getpid()));
	json_object_object_add(d, "mode", json_object_new_string(od->mode));
	json_object_object_add(d, "kill_switch", json_object_new_boolean(od->kill_switch));
	json_object_object_add(d, "version", json_object_new_string(OP_VERSION));
	outbox_event("daemon_started", 0, NULL, NULL, NULL, d);
	dispatch_recover();
	for (int i = 0; i < OD_NWORKERS; i++)
		proc_spawn(&od->w[i]);
	log_info("operatord %s started (mode %s, runtime %s)", OP_VERSION, od->mode, od->runtime_dir);
	event_base_dispatch(od->base);
	int code = od->exit_code;
	json_object *s = json_object_new_object();
	json_object_object_add(s, "exit_code", json_object_new_int(code));
	outbox_event("daemon_stopped", 0, NULL, NULL, NULL, s);
	outbox_commit();
	od_cleanup();
	log_info("stopped");
	return code;
}
