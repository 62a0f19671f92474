/* control.h: between the control socket (control.c) and the commands it
 * runs (control_cmd.c); the rest of the supervisor sees od.h only. */
#ifndef OD_CONTROL_H
#define OD_CONTROL_H

#include <json-c/json.h>
#include <stdint.h>

#include "protocol/ctl.h"
#include "protocol/msg.h"
#include "supervisor/od.h"

/* One request being handled: what a handler reads and fills. */
struct ctl_req {
	struct ctl_client *c;
	int uid;              /* the caller, from SO_PEERCRED */
	uint64_t id;
	json_object *args;
	char who[64];         /* "uid:N", recorded by operator verbs */
	char err[512];
	json_object *res;
};

/* control.c */
/* Sends a reply frame (c may be NULL: the client left); takes result. */
void control_send(struct ctl_client *c, uint64_t id, int ok, const char *error,
    json_object *result);
/* Forwards body to a worker; the worker's answer (or a timeout) replies to
 * r's client later. 0, or -1 with r->err set. Takes body. */
int control_forward(struct ctl_req *r, enum od_role role, enum op_msg_type type,
    json_object *body);

/* control_cmd.c */
/* Runs a command: 0 = answer now with r->res or r->err, 1 = answered
 * already or later (forwarded to a worker). */
int control_cmd_run(struct ctl_req *r, enum op_ctl_cmd cmd);

#endif
