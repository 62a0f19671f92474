#include "protocol/bus.h"

#include <nng/protocol/pair1/pair.h>
#include <nng/transport/ipc/ipc.h>
#include <stdio.h>
#include <string.h>

#define BUS_RECONN_MIN_MS 50   /* first redial after the supervisor went away */
#define BUS_RECONN_MAX_MS 1000 /* and the longest wait between redials */

int
bus_open(nng_socket *s, const char *url, int listen)
{
	int rv;

	if ((rv = nng_pair1_open(s)) != 0)
		return rv;
	nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, OP_MSG_MAX + 1024);
	if (listen) {
		nng_listener l;
		if ((rv = nng_listener_create(&l, *s, url)) != 0)
			goto fail;
		nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, OP_MSG_MAX + 1024);
		if (strncmp(url, "ipc://", 6) == 0)
			nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
		if ((rv = nng_listener_start(l, 0)) != 0)
			goto fail;
	} else {
		nng_dialer d;
		if ((rv = nng_dialer_create(&d, *s, url)) != 0)
			goto fail;
		nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, OP_MSG_MAX + 1024);
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, BUS_RECONN_MIN_MS);
		nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, BUS_RECONN_MAX_MS);
		if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
			goto fail;
	}
	return 0;
fail:
	nng_close(*s);
	return rv;
}

void
bus_close(nng_socket s)
{
	nng_close(s);
}

int
bus_send(nng_socket s, const struct op_msg *m, int nonblock)
{
	msgpack_sbuffer sb;
	int rv;

	msgpack_sbuffer_init(&sb);
	if (op_msg_encode(m, &sb) != 0) {
		msgpack_sbuffer_destroy(&sb);
		return NNG_EMSGSIZE;
	}
	rv = nng_send(s, sb.data, sb.size, nonblock ? NNG_FLAG_NONBLOCK : 0);
	msgpack_sbuffer_destroy(&sb);
	return rv;
}

int
bus_recv(nng_socket s, struct op_msg *m, int nonblock, char *err, size_t errlen)
{
	nng_msg *nm;
	int rv, rc;

	rv = nng_recvmsg(s, &nm, nonblock ? NNG_FLAG_NONBLOCK : 0);
	if (rv == NNG_EAGAIN || rv == NNG_ETIMEDOUT)
		return 0;
	if (rv == NNG_ECLOSED)
		return -2;
	if (rv != 0) {
		snprintf(err, errlen, "receive: %s", nng_strerror(rv));
		return -1;
	}
	rc = op_msg_decode(nng_msg_body(nm), nng_msg_len(nm), m, err, errlen) == 0 ? 1 : -1;
	nng_msg_free(nm);
	return rc;
}

int
bus_recv_fd(nng_socket s)
{
	int fd;

	if (nng_socket_get_int(s, NNG_OPT_RECVFD, &fd) != 0)
		return -1;
	return fd;
}

int
bus_send_fd(nng_socket s)
{
	int fd;

	if (nng_socket_get_int(s, NNG_OPT_SENDFD, &fd) != 0)
		return -1;
	return fd;
}

int
bus_set_send_timeout(nng_socket s, int ms)
{
	return nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, ms);
}
