#include "protocol/frame.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

int
op_frame_encode(const struct op_msg *m, msgpack_sbuffer *sbuf)
{
	size_t start = sbuf->size;
	uint8_t hdr[OP_FRAME_HDR] = {0};

	msgpack_sbuffer_write(sbuf, (const char *)hdr, sizeof(hdr));
	if (op_msg_encode(m, sbuf) != 0) {
		sbuf->size = start;
		return -1;
	}
	uint32_t n = (uint32_t)(sbuf->size - start - OP_FRAME_HDR);
	uint8_t *p = (uint8_t *)sbuf->data + start;
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	return 0;
}

int64_t
op_frame_len(const uint8_t hdr[OP_FRAME_HDR], char *err, size_t errlen)
{
	uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];

	if (n == 0 || n > OP_MSG_MAX) {
		snprintf(err, errlen, "frame length %u outside 1..%u", n, OP_MSG_MAX);
		return -1;
	}
	return n;
}

int
op_frame_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	op_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int
op_frame_write(int fd, const struct op_msg *m, char *err, size_t errlen)
{
	msgpack_sbuffer sb;
	int rc = 0;

	msgpack_sbuffer_init(&sb);
	if (op_frame_encode(m, &sb) != 0) {
		snprintf(err, errlen, "frame too large");
		rc = -1;
	} else if (op_write_all(fd, sb.data, sb.size) != 0) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		rc = -1;
	}
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int
frame_read_full(int fd, void *buf, size_t len, int64_t deadline, char *err, size_t errlen)
{
	uint8_t *p = buf;

	while (len > 0) {
		int wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - op_mono_ms();
			if (left <= 0) {
				snprintf(err, errlen, "timed out");
				return -1;
			}
			wait = (int)left;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int rc = poll(&pfd, 1, wait);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (rc == 0)
			continue;
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s", n == 0 ? "connection closed" : strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
op_frame_read(int fd, struct op_msg *m, int timeout_ms, char *err, size_t errlen)
{
	uint8_t hdr[OP_FRAME_HDR];
	int64_t deadline = timeout_ms < 0 ? -1 : op_mono_ms() + timeout_ms;
	int64_t n;
	uint8_t *buf;
	int rc;

	if (frame_read_full(fd, hdr, sizeof(hdr), deadline, err, errlen) != 0)
		return -1;
	if ((n = op_frame_len(hdr, err, errlen)) < 0)
		return -1;
	buf = malloc((size_t)n);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = frame_read_full(fd, buf, (size_t)n, deadline, err, errlen);
	if (rc == 0)
		rc = op_msg_decode(buf, (size_t)n, m, err, errlen);
	free(buf);
	return rc;
}
