/* opdash_conn: frames on the control and event sockets without blocking the
 * dashboard. The poll loop says when a socket is readable; one read takes
 * what is there and whole frames are cut from the buffer, so a slow reply
 * (an observe that waits on a worker) never freezes keys or redraws. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients/opdash.h"
#include "protocol/frame.h"

void
conn_reader_free(struct conn_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

int
conn_reader_fill(struct conn_reader *r, int fd, char *err, size_t errlen)
{
	if (r->cap - r->len < CONN_READ_CHUNK) {
		size_t cap = r->len + CONN_READ_CHUNK * 2;
		uint8_t *nb = realloc(r->buf, cap);
		if (nb == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		r->buf = nb;
		r->cap = cap;
	}
	ssize_t n;
	do
		n = read(fd, r->buf + r->len, r->cap - r->len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0) {
		snprintf(err, errlen, "%s", n == 0 ? "operatord closed the connection" : strerror(errno));
		return -1;
	}
	r->len += (size_t)n;
	return 0;
}

int
conn_reader_next(struct conn_reader *r, struct op_msg *m, char *err, size_t errlen)
{
	if (r->len < OP_FRAME_HDR)
		return 0;
	int64_t n = op_frame_len(r->buf, err, errlen);
	if (n < 0)
		return -1;
	if (r->len < (size_t)n + OP_FRAME_HDR)
		return 0;
	int rc = op_msg_decode(r->buf + OP_FRAME_HDR, (size_t)n, m, err, errlen);
	size_t used = (size_t)n + OP_FRAME_HDR;
	memmove(r->buf, r->buf + used, r->len - used);
	r->len -= used;
	return rc == 0 ? 1 : -1;
}

int
conn_send(int fd, uint64_t id, const char *cmd, json_object *args, char *err, size_t errlen)
{
	struct op_msg m;
	json_object *b = json_object_new_object();

	json_object_object_add(b, "cmd", json_object_new_string(cmd));
	json_object_object_add(b, "args", args ? args : json_object_new_array());
	op_msg_init(&m, OP_MSG_REQUEST, id, b);
	int rc = op_frame_write(fd, &m, err, errlen);
	op_msg_clear(&m);
	return rc;
}
