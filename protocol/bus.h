/* bus: the nng PAIR1 channel between the supervisor and one worker, carrying
 * op_msg frames; the only file that knows nng's API, so a move to nng 2.0
 * stays local. (opsend and optail use protocol/frame.h instead.) */
#ifndef OP_BUS_H
#define OP_BUS_H

#include <nng/nng.h>

#include "protocol/msg.h"

#define OP_BUS_SEND_TIMEOUT_MS 2000 /* a peer that does not drain in this long is stuck */

/* Opens a PAIR1 socket and listens (listen=1) or dials without waiting
 * (listen=0: the peer may come up later). RECVMAXSZ is OP_MSG_MAX and IPC
 * sockets are created 0600. Returns 0 or an nng error code. */
int bus_open(nng_socket *s, const char *url, int listen);
void bus_close(nng_socket s);
/* Encodes and sends; nonblock=1 fails with NNG_EAGAIN instead of waiting. */
int bus_send(nng_socket s, const struct op_msg *m, int nonblock);
/* Receives one frame. Returns 1 with *m filled, 0 when nothing is waiting
 * (nonblock) or the receive timed out, -1 for a frame that failed to decode
 * (err says why; the frame is consumed), -2 when the socket is closed. */
int bus_recv(nng_socket s, struct op_msg *m, int nonblock, char *err, size_t errlen);
/* The fd that polls readable when a frame can be received. */
int bus_recv_fd(nng_socket s);
/* The fd that polls readable when a frame can be sent without blocking. */
int bus_send_fd(nng_socket s);
int bus_set_send_timeout(nng_socket s, int ms);

#endif
