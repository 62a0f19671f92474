/* check_ha_util: a real etcd for the HA tests (temp data dir, free ports). */
#ifndef CHECK_HA_UTIL_H
#define CHECK_HA_UTIL_H

#include <sys/types.h>

#define HA_T_ETCD_WAIT_MS 30000 /* bound for etcd to answer after start */

struct ha_t_etcd {
	char dir[128];
	int client_port, peer_port;
	char url[64];
	pid_t pid;
};

/* Starts etcd ($ETCD_BIN, else etcd on PATH) and waits until it serves the
 * gateway. keep_dir: reuse e->dir and its ports (a restart with its data).
 * Returns -1 (and says why on stderr) when it cannot. */
int ha_t_etcd_start(struct ha_t_etcd *e, int keep_dir);
/* Sends sig (SIGKILL, SIGSTOP...) and, for a terminating signal, reaps it. */
void ha_t_etcd_signal(struct ha_t_etcd *e, int sig);
/* Kills etcd and removes its directory. */
void ha_t_etcd_stop(struct ha_t_etcd *e);
int ha_t_free_port(void);

#endif
