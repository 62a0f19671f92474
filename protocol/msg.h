/* msg: the one envelope every frame uses, {v, type, id, ts, body}, and its codec.
 *
 * Bodies are json-c trees: the same value goes over the wire (msgpack), into
 * the ledger and the event stream (JSON) without a second set of structs.
 * Bump OP_PROTO_VERSION whenever this list or any body's required keys change. */
#ifndef OP_MSG_H
#define OP_MSG_H

#include <json-c/json.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define OP_PROTO_VERSION 1
#define OP_MSG_MAX (4u << 20)   /* bytes; larger frames are rejected unread */
#define OP_MSG_MAX_DEPTH 32     /* nesting levels a body may have */
#define OP_MSG_MAX_ITEMS 200000 /* values in one frame, all levels together */

/* X(enum, wire name, required body keys as "k1,k2" or "") */
#define OP_MSG_TYPES(X)                                                            \
	X(OP_MSG_HELLO, "hello", "role,pid")                                           \
	X(OP_MSG_SETTINGS, "settings", "mode,kill_switch")                             \
	X(OP_MSG_WATCH, "watch", "fingerprints")                                        \
	X(OP_MSG_CLOSED, "closed", "subject,invariant,entity")                          \
	X(OP_MSG_VIOLATION, "violation", "subject,invariant,entity")                  \
	X(OP_MSG_CLEARED, "cleared", "subject,invariant,entity")                      \
	X(OP_MSG_OBSERVED, "observed", "subject,ok")                                  \
	X(OP_MSG_DIAGNOSE, "diagnose", "ticket")                                       \
	X(OP_MSG_DIAGNOSIS, "diagnosis", "ticket_id,diagnosis")                       \
	X(OP_MSG_EXECUTE, "execute", "ticket_id,action_id,subject,action,params")     \
	X(OP_MSG_ACTION_RESULT, "action_result", "ticket_id,action_id,status")        \
	X(OP_MSG_VERIFY, "verify", "ticket_id,action_id,subject,invariant,entity")    \
	X(OP_MSG_VERIFICATION, "verification", "ticket_id,action_id,result")          \
	X(OP_MSG_INJECT, "inject", "fault,params")                                     \
	X(OP_MSG_FAULT, "fault", "event,fault")                                        \
	X(OP_MSG_UNDO_ALL, "undo_all", "")                                             \
	X(OP_MSG_OBSERVE_REQ, "observe_req", "subject")                               \
	X(OP_MSG_OBSERVE_REP, "observe_rep", "subject,ok")                            \
	X(OP_MSG_REQUEST, "request", "cmd")                                            \
	X(OP_MSG_REPLY, "reply", "ok")                                                 \
	X(OP_MSG_EVENT, "event", "seq,type")

enum op_msg_type {
	OP_MSG_INVALID = 0,
#define OP_MSG_ENUM(e, name, keys) e,
	OP_MSG_TYPES(OP_MSG_ENUM)
#undef OP_MSG_ENUM
	OP_MSG_COUNT
};

struct op_msg {
	uint32_t v;
	enum op_msg_type type;
	uint64_t id;        /* correlation id; replies echo the request's */
	int64_t ts;         /* sender's wall clock, UTC ms */
	json_object *body;  /* owned; always a JSON object after a successful decode */
};

const char *op_msg_type_name(enum op_msg_type t);
enum op_msg_type op_msg_type_from_name(const char *name, size_t len);

/* Takes ownership of body (NULL means an empty object). */
void op_msg_init(struct op_msg *m, enum op_msg_type type, uint64_t id, json_object *body);
void op_msg_clear(struct op_msg *m);

/* Appends the frame to sbuf. Returns 0, or -1 if the frame would exceed OP_MSG_MAX. */
int op_msg_encode(const struct op_msg *m, msgpack_sbuffer *sbuf);
/* Decodes exactly one frame. Never trusts declared lengths. On error returns
 * -1, leaves *m empty and writes the reason into err. */
int op_msg_decode(const void *buf, size_t len, struct op_msg *m, char *err, size_t errlen);

/* Lower level, exposed for tests and the fuzz target. */
int op_mp_prescan(const uint8_t *buf, size_t len, size_t *consumed, char *err, size_t errlen);
void op_mp_pack_json(msgpack_packer *pk, json_object *o);
json_object *op_mp_to_json(const msgpack_object *o, char *err, size_t errlen);

#endif
