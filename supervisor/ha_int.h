/* ha_int: what the [ha] files of the supervisor share (ha.c, ha_share.c):
 * the one state, and the etcd call they all go through. Not for other modules. */
#ifndef OD_HA_INT_H
#define OD_HA_INT_H

#include <event2/event.h>
#include <json-c/json.h>

#include "common/etcd.h"
#include "supervisor/ha.h"

#define HA_FLUSH_DELAY_MS 0          /* records go out right after the input's commit */

/* One ticket's record being written: at most one write per ticket in
 * flight, the latest state wins (written again when it changed meanwhile). */
struct ha_rec {
	char subject[HA_NAME_MAX];
	char fp[512];
	char *val;                    /* the record; NULL: delete it and its marker */
	int inflight, dirty;
	struct ha_rec *next;
};

struct ha_state {
	struct ha_config cfg;
	struct ha_node *node;
	struct event *poll_timer, *flush_ev;
	int poll_inflight;
	int polled;                   /* at least one poll answered */
	/* settings as etcd has them */
	int ks_etcd;
	char mode_etcd[16];
	int64_t settings_rev;         /* revision of our last settings write */
	int settings_writing;
	int settings_dirty;           /* a local change etcd has not taken yet: ours wins */
	int applying;                 /* applying etcd's settings: do not write back */
	int mode_creating;
	json_object *work;            /* {key: record} of every subject, from the last poll */
	json_object *exec;            /* {key: marker} */
	json_object *suppressed;      /* [{subject, invariant, entity}] seen as standby */
	json_object *dirty;           /* {ticket id: true} to record */
	struct ha_rec *recs;
	int stopping;
	/* per subject (the election's index): the term whose work has been
	 * resumed. A new leader acts only once it has read what its
	 * predecessor left, so it can never run an action a second time. */
	int64_t resumed_term[HA_MAX_SUBJECTS];
	int resume_inflight[HA_MAX_SUBJECTS];
};

extern struct ha_state ha;

typedef void (*ha_cb)(int rc, struct etcd_resp *r, void *arg);

/* ha.c */
int ha_send(enum etcd_call call, char *body, ha_cb cb, void *arg);
json_object *ha_fp_obj(const char *subject, const char *invariant, const char *entity);

/* ha_share.c: shared settings, forwarded decisions, work records */
void ha_apply_settings(int ks, const char *mode);
void ha_write_settings(void);
void ha_apply_decision(const char *key, const char *val);
void ha_flush(evutil_socket_t fd, short what, void *arg);
void ha_mode_created(int rc, struct etcd_resp *r, void *arg);

#endif
