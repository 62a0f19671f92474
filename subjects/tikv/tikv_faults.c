/* tikv_faults: real TiKV faults for chaos, on pdsim only.
 *
 * node_kill SIGKILLs a store process; its undo asks pdsim to start it again
 * (POST /pdsim/stores/{id}/restart). store_stall SIGSTOPs a store (a hung
 * node: its TCP port still accepts, nothing answers, heartbeats stop); its
 * undo is SIGCONT. Both need pdsim's own API (GET /pdsim/stores gives the
 * store pids), so against a real PD they refuse: operatord does not own real
 * TiKV processes and will not guess at them. */
#include "subjects/tikv/tikv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/http.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"

#define TIKV_KILL_TTL_MS 60000      /* node_kill: the store restarts after this */
#define TIKV_STALL_TTL_MS 30000     /* store_stall: SIGCONT after this */
#define TIKV_RESTART_WAIT_MS 10000  /* undo waits this long for the store to run again */
#define TIKV_FAULT_POLL_MS 100

const struct op_fault_def tikv_faults[TIKV_NFAULTS] = {
	{"node_kill", "SIGKILL a TiKV store process (pdsim only); the TTL restarts it through "
	    "pdsim", TIKV_KILL_TTL_MS, "store=ID (default: the store with the most leaders)",
	    TIKV_INV_STORE_DOWN,
	    /* raft re-elects the dead store's leaders unevenly; on return it holds none */
	    TIKV_INV_IMBALANCE "," TIKV_INV_LEADERLESS "," TIKV_INV_UNDER_REPL,
	    "rebalance_leaders,transfer_leader"},
	{"store_stall", "SIGSTOP a TiKV store process (pdsim only): it hangs with its ports open "
	    "and stops heartbeating; the TTL sends SIGCONT", TIKV_STALL_TTL_MS,
	    "store=ID (default: the store with the most leaders)", TIKV_INV_STORE_DOWN,
	    TIKV_INV_IMBALANCE "," TIKV_INV_LEADERLESS "," TIKV_INV_UNDER_REPL,
	    "rebalance_leaders,transfer_leader"},
};

/* GET /pdsim/stores: NULL with a clear refusal when PD is not pdsim. */
static json_object *
tikv_f_pdsim_stores(const struct tikv_priv *p, char *err, size_t errlen)
{
	struct op_http_req r;
	char url[TIKV_URL_MAX], perr[128];
	json_object *o = NULL;

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "%s/pdsim/stores", p->pd_url);
	r.url = url;
	r.timeout_ms = TIKV_ACTION_TIMEOUT_MS;
	r.connect_timeout_ms = TIKV_ACTION_TIMEOUT_MS;
	if (op_http_do(&r) == 0 && r.status == 200)
		o = op_json_parse(r.resp, r.resp_len, perr, sizeof(perr));
	if (op_json_arr(o, "stores") == NULL) {
		snprintf(err, errlen, "PD at %s is not pdsim (GET /pdsim/stores: %s): TiKV faults run "
		    "only against pdsim; operatord will not kill processes of a real cluster",
		    p->pd_url, r.err[0] ? r.err : r.status != 200 ? "not HTTP 200" : "no store list");
		json_object_put(o);
		o = NULL;
	}
	op_http_req_reset(&r);
	return o;
}

/* The store named by store=ID, or the running one with the most leaders. */
static json_object *
tikv_f_victim(json_object *list, json_object *params, char *err, size_t errlen)
{
	json_object *a = op_json_arr(list, "stores"), *best = NULL;
	const char *want = op_json_str(params, "store", NULL);
	uint64_t id = 0;

	if (want != NULL && op_parse_u64(want, &id) != 0) {
		snprintf(err, errlen, "store=%s: expected a store id", want);
		return NULL;
	}
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		if (want != NULL) {
			if (op_json_u64(st, "id", 0) == id)
				best = st;
			continue;
		}
		if (op_json_int(st, "pid", 0) > 0 && (best == NULL ||
		    op_json_int(st, "leader_count", 0) > op_json_int(best, "leader_count", 0)))
			best = st;
	}
	if (best == NULL) {
		if (want)
			snprintf(err, errlen, "pdsim has no store %s", want);
		else
			snprintf(err, errlen, "pdsim has no running store");
		return NULL;
	}
	if (op_json_int(best, "pid", 0) <= 1) {
		snprintf(err, errlen, "store %" PRIu64 " is not running", op_json_u64(best, "id", 0));
		return NULL;
	}
	return best;
}

/* Only ever signal what really is a pdsim store process. */
static int
tikv_f_is_store(pid_t pid, uint64_t id)
{
	char path[64], buf[512], want[32];
	ssize_t n;
	int fd, seen_mode = 0, seen_id = 0;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	snprintf(want, sizeof(want), "%" PRIu64, id);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
		if (strcmp(buf + i, "--store-mode") == 0)
			seen_mode = 1;
		if (strcmp(buf + i, "--store-id") == 0 && i + (ssize_t)strlen(buf + i) + 1 < n &&
		    strcmp(buf + i + strlen(buf + i) + 1, want) == 0)
			seen_id = 1;
	}
	return seen_mode && seen_id;
}

static int
tikv_f_signal(const struct tikv_priv *p, json_object *params, int sig, const char *fault,
    json_object **undo, char *err, size_t errlen)
{
	json_object *list = tikv_f_pdsim_stores(p, err, errlen), *v;

	if (list == NULL)
		return -1;
	if ((v = tikv_f_victim(list, params, err, errlen)) == NULL) {
		json_object_put(list);
		return -1;
	}
	uint64_t id = op_json_u64(v, "id", 0);
	pid_t pid = (pid_t)op_json_int(v, "pid", 0);
	int64_t leaders = op_json_int(v, "leader_count", 0);
	json_object_put(list);
	if (pid <= 1 || pid == getpid() || !tikv_f_is_store(pid, id)) {
		snprintf(err, errlen, "pid %d of store %" PRIu64 " is not a pdsim store process",
		    (int)pid, id);
		return -1;
	}
	if (kill(pid, sig) != 0) {
		snprintf(err, errlen, "kill(%d, %s): %s", (int)pid, sig == SIGKILL ? "SIGKILL" :
		    "SIGSTOP", strerror(errno));
		return -1;
	}
	char target[32];
	snprintf(target, sizeof(target), "%" PRIu64, id);
	json_object *st = json_object_new_object();
	op_json_set_str(st, "target", target);
	json_object_object_add(st, "store_id", json_object_new_uint64(id));
	op_json_set_int(st, "pid", pid);
	op_json_set_int(st, "leaders_at_injection", leaders);
	*undo = st;
	log_info("%s: %s store %" PRIu64 " pid %d (%lld leaders)", fault,
	    sig == SIGKILL ? "SIGKILL" : "SIGSTOP", id, (int)pid, (long long)leaders);
	return 0;
}

static int
tikv_u_kill(const struct tikv_priv *p, json_object *st, char *err, size_t errlen)
{
	uint64_t id = op_json_u64(st, "store_id", 0);
	struct op_http_req r;
	char url[TIKV_URL_MAX];
	int64_t deadline = op_mono_ms() + TIKV_RESTART_WAIT_MS;

	if (id == 0) {
		snprintf(err, errlen, "undo state has no store_id");
		return -1;
	}
	snprintf(url, sizeof(url), "%s/pdsim/stores/%" PRIu64 "/restart", p->pd_url, id);
	for (;;) {
		memset(&r, 0, sizeof(r));
		r.method = "POST";
		r.url = url;
		r.body = "";
		r.timeout_ms = TIKV_ACTION_TIMEOUT_MS;
		r.connect_timeout_ms = TIKV_ACTION_TIMEOUT_MS;
		int sent = op_http_do(&r) == 0;
		long status = r.status;
		/* 409 "is running": pdsim reaps the killed pid asynchronously, or
		 * someone restarted it already; either way wait for it to run */
		if (sent && status == 200) {
			op_http_req_reset(&r);
			log_info("node_kill undo: store %" PRIu64 " restarted", id);
			return 0;
		}
		if (sent && status == 409 && strstr(r.resp ? r.resp : "", "is running") != NULL) {
			json_object *list = tikv_f_pdsim_stores(p, err, errlen);
			json_object *a = op_json_arr(list, "stores");
			int64_t pid = -1;
			for (size_t i = 0; a && i < json_object_array_length(a); i++)
				if (op_json_u64(json_object_array_get_idx(a, i), "id", 0) == id)
					pid = op_json_int(json_object_array_get_idx(a, i), "pid", 0);
			json_object_put(list);
			if (pid > 0 && pid != op_json_int(st, "pid", 0)) {
				op_http_req_reset(&r);
				return 0; /* a new process already runs it */
			}
		}
		if (op_mono_ms() >= deadline) {
			snprintf(err, errlen, "POST %s: %s", url, r.err[0] ? r.err :
			    r.resp ? r.resp : "no answer");
			op_http_req_reset(&r);
			return -1;
		}
		op_http_req_reset(&r);
		op_sleep_ms(TIKV_FAULT_POLL_MS);
	}
}

static int
tikv_u_stall(json_object *st, char *err, size_t errlen)
{
	pid_t pid = (pid_t)op_json_int(st, "pid", 0);
	uint64_t id = op_json_u64(st, "store_id", 0);

	/* the pid may be gone (pdsim restarted, or was stopped): nothing to resume then */
	if (pid <= 1 || !tikv_f_is_store(pid, id))
		return 0;
	if (kill(pid, SIGCONT) != 0 && errno != ESRCH) {
		snprintf(err, errlen, "SIGCONT %d: %s", (int)pid, strerror(errno));
		return -1;
	}
	log_info("store_stall undo: store %" PRIu64 " pid %d resumed", id, (int)pid);
	return 0;
}

int
tikv_inject(struct op_subject *s, const char *fault, json_object *params, json_object **undo,
    char *err, size_t errlen)
{
	const struct tikv_priv *p = s->priv;

	*undo = NULL;
	err[0] = '\0';
	if (strcmp(fault, "node_kill") == 0)
		return tikv_f_signal(p, params, SIGKILL, fault, undo, err, errlen);
	if (strcmp(fault, "store_stall") == 0)
		return tikv_f_signal(p, params, SIGSTOP, fault, undo, err, errlen);
	snprintf(err, errlen, "unknown fault \"%s\"", fault);
	return -1;
}

int
tikv_undo(struct op_subject *s, const char *fault, json_object *undo, char *err, size_t errlen)
{
	const struct tikv_priv *p = s->priv;

	err[0] = '\0';
	if (strcmp(fault, "node_kill") == 0)
		return tikv_u_kill(p, undo, err, errlen);
	if (strcmp(fault, "store_stall") == 0)
		return tikv_u_stall(undo, err, errlen);
	snprintf(err, errlen, "unknown fault \"%s\"", fault);
	return -1;
}
