#include "check_ha_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/http.h"
#include "common/util.h"

#define HA_T_POLL_MS 100

int
ha_t_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int
etcd_serving(const struct ha_t_etcd *e)
{
	char url[128];
	struct op_http_req q = { .method = "POST", .body = "{\"key\":\"AA==\"}",
		.timeout_ms = 1000, .connect_timeout_ms = 300 };
	int ok;

	snprintf(url, sizeof(url), "%s/v3/kv/range", e->url);
	q.url = url;
	ok = op_http_do(&q) == 0 && q.status == 200;
	op_http_req_reset(&q);
	return ok;
}

int
ha_t_etcd_start(struct ha_t_etcd *e, int keep_dir)
{
	if (!keep_dir) {
		memset(e, 0, sizeof(*e));
		snprintf(e->dir, sizeof(e->dir), "/tmp/check_ha_etcd.XXXXXX");
		if (mkdtemp(e->dir) == NULL) {
			perror("mkdtemp");
			return -1;
		}
		e->client_port = ha_t_free_port();
		e->peer_port = ha_t_free_port();
		snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", e->client_port);
	}
	const char *bin = getenv("ETCD_BIN") ? getenv("ETCD_BIN") : "etcd";
	char data[192], listen_c[64], listen_p[64], cluster[96], log[192];
	snprintf(data, sizeof(data), "%s/data", e->dir);
	snprintf(listen_c, sizeof(listen_c), "http://127.0.0.1:%d", e->client_port);
	snprintf(listen_p, sizeof(listen_p), "http://127.0.0.1:%d", e->peer_port);
	snprintf(cluster, sizeof(cluster), "t=%s", listen_p);
	snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		setpgid(0, 0);
		execlp(bin, bin, "--name", "t", "--data-dir", data, "--listen-client-urls", listen_c,
		    "--advertise-client-urls", listen_c, "--listen-peer-urls", listen_p,
		    "--initial-advertise-peer-urls", listen_p, "--initial-cluster", cluster,
		    "--log-level", "warn", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		perror("fork");
		return -1;
	}
	e->pid = pid;
	int64_t end = op_mono_ms() + HA_T_ETCD_WAIT_MS;
	while (op_mono_ms() < end) {
		if (etcd_serving(e))
			return 0;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "etcd exited at start; see %s\n", log);
			e->pid = 0;
			return -1;
		}
		op_sleep_ms(HA_T_POLL_MS);
	}
	fprintf(stderr, "etcd did not serve within %d ms; see %s\n", HA_T_ETCD_WAIT_MS, log);
	return -1;
}

void
ha_t_etcd_signal(struct ha_t_etcd *e, int sig)
{
	if (e->pid <= 0)
		return;
	kill(e->pid, sig);
	if (sig == SIGKILL || sig == SIGTERM) {
		waitpid(e->pid, NULL, 0);
		e->pid = 0;
	}
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void
ha_t_etcd_stop(struct ha_t_etcd *e)
{
	if (e->pid > 0) {
		kill(e->pid, SIGCONT);
		ha_t_etcd_signal(e, SIGKILL);
	}
	if (e->dir[0] != '\0' && getenv("HA_T_KEEP") == NULL)
		nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	e->dir[0] = '\0';
}
