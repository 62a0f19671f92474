/* frame: op_msg envelopes on a byte stream (the control and event sockets):
 * a 4-byte big-endian length, then the msgpack frame. nng 1.5.2 is not used
 * there: a client that disconnects during the SP handshake can wedge an IPC
 * listener for good (nng issue #1518, fixed only in 1.6), and any root
 * process probing ctl.ipc could then lock every operator out. */
#ifndef OP_FRAME_H
#define OP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/msg.h"

#define OP_FRAME_HDR 4

/* Appends header and frame to sbuf; -1 if the frame exceeds OP_MSG_MAX. */
int op_frame_encode(const struct op_msg *m, msgpack_sbuffer *sbuf);
/* Reads a header: the frame length, or -1 (err set) when it is over OP_MSG_MAX or zero. */
int64_t op_frame_len(const uint8_t hdr[OP_FRAME_HDR], char *err, size_t errlen);

/* Blocking helpers for the clients. Return 0, or -1 with err set; a timeout
 * (timeout_ms, -1 for none) says "timed out". */
int op_frame_connect(const char *path, char *err, size_t errlen);
int op_frame_write(int fd, const struct op_msg *m, char *err, size_t errlen);
int op_frame_read(int fd, struct op_msg *m, int timeout_ms, char *err, size_t errlen);

#endif
