/* bus: nng sockets carrying op_msg frames; the only file that knows nng's API,
 * so a move to nng 2.0 stays local. */
#ifndef OP_BUS_H
#define OP_BUS_H

#include <nng/nng.h>

#include "protocol/msg.h"

#define OP_BUS_SEND_TIMEOUT_MS 2000 /* a peer that does not drain in this long is stuck */
#define OP_BUS_CTL_TIMEOUT_MS 5000  /* opsend's wait for a reply */

enum bus_kind { BUS_PAIR, BUS_REP, BUS_REQ, BUS_PUB, BUS_SUB };

/* Opens a socket of the kind and listens (listen=1) or dials (listen=0,
 * non-blocking: the peer may come up later; listen=-1: dial now or fail). RECVMAXSZ is OP_MSG_MAX and IPC
 * sockets are created 0600. Returns 0 or an nng error code. */
int bus_open(nng_socket *s, enum bus_kind kind, const char *url, int listen);
void bus_close(nng_socket s);
/* Encodes and sends; nonblock=1 fails with NNG_EAGAIN instead of waiting. */
int bus_send(nng_socket s, const struct op_msg *m, int nonblock);
/* Receives one frame. Returns 1 with *m filled, 0 when nothing is waiting
 * (nonblock) or the receive timed out, -1 for a frame that failed to decode
 * (err says why; the frame is consumed), -2 when the socket is closed. */
int bus_recv(nng_socket s, struct op_msg *m, int nonblock, char *err, size_t errlen);
/* As bus_recv, and reports the peer's uid (IPC transport) or -1. */
int bus_recv_peer(nng_socket s, struct op_msg *m, int nonblock, int *uid, char *err,
    size_t errlen);
/* Sends raw, already encoded bytes (a cached reply). */
int bus_send_raw(nng_socket s, const void *buf, size_t len, int nonblock);
/* The fd that polls readable when a frame can be received. */
int bus_recv_fd(nng_socket s);
int bus_set_recv_timeout(nng_socket s, int ms);
int bus_set_send_timeout(nng_socket s, int ms);

#endif
