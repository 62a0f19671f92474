#include "protocol/bus.h"

#include <nng/protocol/pair1/pair.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/transport/ipc/ipc.h>
#include <stdio.h>
#include <string.h>

int
bus_open(nng_socket *s, enum bus_kind kind, const char *url, int listen)
{
	int rv;

	switch (kind) {
	case BUS_PAIR: rv = nng_pair1_open(s); break;
	case BUS_REP: rv = nng_rep0_open(s); break;
	case BUS_REQ: rv = nng_req0_open(s); break;
	case BUS_PUB: rv = nng_pub0_open(s); break;
	case BUS_SUB: rv = nng_sub0_open(s); break;
	default: return NNG_EINVAL;
	}
	if (rv != 0)
		return rv;
	if (kind == BUS_SUB) {
		/* The empty topic; a string setter would include the NUL byte. */
		rv = nng_socket_set(*s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
		if (rv != 0)
			goto fail;
	}
	if (kind == BUS_REQ) {
		/* REQ resends after this; the daemon dedups by request id. */
		nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME, OP_BUS_CTL_TIMEOUT_MS);
	}
	nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, OP_MSG_MAX + 1024);
	if (url == NULL)
		return 0;
	if (listen > 0) {
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
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 50);
		nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 1000);
		/* listen < 0: a client that must know now whether the server is there. */
		if ((rv = nng_dialer_start(d, listen < 0 ? 0 : NNG_FLAG_NONBLOCK)) != 0)
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
	return bus_recv_peer(s, m, nonblock, NULL, err, errlen);
}

int
bus_send_raw(nng_socket s, const void *buf, size_t len, int nonblock)
{
	return nng_send(s, (void *)buf, len, nonblock ? NNG_FLAG_NONBLOCK : 0);
}

int
bus_recv_peer(nng_socket s, struct op_msg *m, int nonblock, int *uid, char *err,
    size_t errlen)
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
	if (uid != NULL) {
		uint64_t v;
		nng_pipe p = nng_msg_get_pipe(nm);
		*uid = nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &v) == 0 ? (int)v : -1;
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
bus_set_recv_timeout(nng_socket s, int ms)
{
	return nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, ms);
}

int
bus_set_send_timeout(nng_socket s, int ms)
{
	return nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, ms);
}
