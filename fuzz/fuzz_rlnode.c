/* libFuzzer target for rlnode's HTTP API bodies (subjects/ratelimiter/rlnode):
 * the real rlnode runs in a thread of this process (its main renamed), with
 * its Redis on a closed port, and each input is sent to it over loopback as
 * the body of one request; the first byte picks which (POST /check,
 * PUT /api/limits/KEY, the reset and resync posts), or, for a few values,
 * the whole input is the raw request, headers included. Every request must
 * be answered. Run it with
 *   scripts/fuzz.sh rlnode 60          (port: $RLNODE_FUZZ_PORT, default 21555) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "subjects/ratelimiter/rl_wire.h"

#define FUZZ_RLNODE_PORT 21555     /* default, in the fuzzer's own port range */
#define FUZZ_RLNODE_START_MS 10000 /* rlnode must listen by then */
#define FUZZ_RLNODE_REPLY_MS 10000 /* an unanswered request past this is a hang */

int rlnode_main(int argc, char **argv);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_port = FUZZ_RLNODE_PORT;

static void *
rlnode_thread(void *arg)
{
	char port[16];
	char *argv[] = {"rlnode", "--port", port, "--bind", "127.0.0.1", "--redis", "127.0.0.1:1",
		"--node-id", "fuzz", NULL};

	(void)arg;
	snprintf(port, sizeof(port), "%d", fuzz_port);
	rlnode_main(9, argv);
	return NULL;
}

static int
fuzz_connect(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fuzz_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pthread_t t;
	const char *p = getenv("RLNODE_FUZZ_PORT");

	(void)argc;
	(void)argv;
	if (p != NULL)
		fuzz_port = atoi(p);
	if (pthread_create(&t, NULL, rlnode_thread, NULL) != 0)
		abort();
	for (int waited = 0;; waited += 50) {
		int fd = fuzz_connect();
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waited > FUZZ_RLNODE_START_MS) {
			fprintf(stderr, "fuzz_rlnode: rlnode does not listen on port %d\n", fuzz_port);
			abort();
		}
		usleep(50 * 1000);
	}
}

static int
send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const reqs[] = {
		"POST " RLW_PATH_CHECK, "PUT " RLW_PATH_LIMIT_PFX "fuzzkey",
		"POST " RLW_PATH_COUNTER_PFX "fuzzkey" RLW_PATH_RESET_SFX, "POST " RLW_PATH_RESYNC,
	};
	char head[256], buf[4096];
	int fd;

	if (size < 1)
		return 0;
	if ((fd = fuzz_connect()) < 0)
		abort(); /* rlnode died */
	size_t pick = data[0] % (sizeof(reqs) / sizeof(reqs[0]) + 1);
	if (pick < sizeof(reqs) / sizeof(reqs[0])) {
		int n = snprintf(head, sizeof(head), "%s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: "
		    "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		    reqs[pick], size - 1);
		if (send_all(fd, head, (size_t)n) != 0 || send_all(fd, data + 1, size - 1) != 0) {
			close(fd);
			return 0; /* refused early (413): that is an answer too */
		}
	} else if (send_all(fd, data + 1, size - 1) != 0) {
		close(fd);
		return 0;
	}
	shutdown(fd, SHUT_WR); /* nothing more is coming: never wait for a body */
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int rc = poll(&pfd, 1, FUZZ_RLNODE_REPLY_MS);
		if (rc == 0) {
			fprintf(stderr, "fuzz_rlnode: no answer in %d ms\n", FUZZ_RLNODE_REPLY_MS);
			abort();
		}
		if (rc < 0 || recv(fd, buf, sizeof(buf), 0) <= 0)
			break;
	}
	close(fd);
	return 0;
}
