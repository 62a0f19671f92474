/* worker: the runtime every worker process shares (channel to the supervisor,
 * lifeline fd 3, libevent loop, settings) and each role's entry points. */
#ifndef OP_WORKER_H
#define OP_WORKER_H

#include <event2/event.h>
#include <nng/nng.h>

#include "common/config.h"
#include "protocol/msg.h"
#include "subjects/subject.h"

#define WK_LIFELINE_FD 3
#define WK_POLL_MS 1000          /* default observer poll interval */
#define WK_VERIFY_TICK_MS 500    /* verifier re-check period */

struct worker;
struct worker_deferred {
	struct op_msg m;
	struct worker_deferred *next;
};

struct worker_role {
	const char *name;
	int (*init)(struct worker *w, char *err, size_t errlen);
	void (*on_msg)(struct worker *w, struct op_msg *m);
	void (*on_term)(struct worker *w); /* NULL: just stop */
	void (*fini)(struct worker *w);
};

struct worker {
	const struct worker_role *role;
	struct op_config *cfg;
	struct op_subjects subjects;
	struct event_base *base;
	nng_socket sock;
	struct event *recv_ev, *lifeline_ev, *sig_ev[2];
	char mode[16];
	int kill_switch;
	int chaos_enabled;
	int stopping;
	/* >0 while a side effect is being prepared: a drain then applies only
	 * settings (a kill switch must win) and defers everything else, so no
	 * second action can run inside the first one's safety checks. */
	int gate;
	struct worker_deferred *deferred, **deferred_tail;
	void *priv;
};

int worker_main(const char *role, const char *config, const char *runtime_dir, int verbose);
int worker_check_config(const struct op_config *cfg, char *err, size_t errlen);
int chaos_check_config(const struct op_config *cfg, struct op_subjects *subjects, char *err,
    size_t errlen);
/* Sends a frame to the supervisor (takes ownership of body). */
int worker_send(struct worker *w, enum op_msg_type type, uint64_t id, json_object *body);
/* Handles frames already waiting (settings, kill switch) without blocking:
 * called right before a side effect so a kill switch takes effect at once. */
void worker_drain(struct worker *w);
void worker_stop(struct worker *w);

extern const struct worker_role observer_role, diagnoser_role, executor_role,
    verifier_role, chaos_role;
extern const struct worker_role hub_bench_role; /* bench/bench_hub only */

#endif
