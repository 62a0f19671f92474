/* client: what opsend and optail share: finding the daemon and asking it. */
#ifndef OP_CLIENT_H
#define OP_CLIENT_H

#include <json-c/json.h>
#include <stdio.h>

#include "protocol/ctl.h"

#define CLIENT_EXIT_OK 0
#define CLIENT_EXIT_FAILED 1
#define CLIENT_EXIT_USAGE 2
#define CLIENT_EXIT_NOT_RUNNING 3
#define CLIENT_DEFAULT_RUNTIME OP_CTL_DEFAULT_RUNTIME_DIR
#define CLIENT_REPLY_TIMEOUT_MS 30000 /* chaos and observe wait on a worker */

/* --runtime-dir, else $OPERATORD_RUNTIME_DIR, else the default. */
const char *client_runtime_dir(const char *flag);
/* Connects to RUNTIME/NAME (OP_CTL_SOCK or OP_EVENTS_SOCK); returns the fd, or -1
 * with a message printed (the daemon is not running). */
int client_connect(const char *runtime_dir, const char *name);
/* Sends {cmd, args} and waits for the reply body. Returns 0 with *reply set,
 * or an exit code with a message printed. */
int client_request(int fd, const char *cmd, json_object *args, json_object **reply);
/* fprintf(f, fmt, s) with s's control characters escaped (\n, \xNN): text
 * from the daemon is never sent raw to a terminal. fmt has one %s. */
void client_put(FILE *f, const char *fmt, const char *s);
/* Prints an event row as one JSON line or one human line. */
void client_print_event(json_object *ev, int as_json);

#endif
