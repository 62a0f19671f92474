/* ctl: the control protocol's one command table, shared by the daemon
 * (supervisor/control.c dispatches on it and checks its flags) and by opsend
 * (which prints its usage from it), so the two cannot drift apart. Also the
 * names of the runtime directory's sockets, defined once. */
#ifndef OP_CTL_H
#define OP_CTL_H

#include <stddef.h>
#include <stdio.h>

#define OP_CTL_DEFAULT_RUNTIME_DIR "/run/operatord"
#define OP_CTL_SOCK "ctl.sock"       /* requests and replies */
#define OP_EVENTS_SOCK "events.sock" /* the live event stream */

/* Flags of a command. */
#define OP_CTL_MUTATES 0x1     /* root, the daemon's user or control_group only */
#define OP_CTL_READ_BARE 0x2   /* ... except when given no argument (a query) */
/* Queues frames a worker must handle one by one: refused "busy" while a
 * worker is behind. Not mode and kill-switch: they send settings, which the
 * supervisor coalesces to the newest, and the kill switch is never refused. */
#define OP_CTL_TO_WORKERS 0x4

/* X(enum, name, flags, arguments, what it does) */
#define OP_CTL_COMMANDS(X)                                                                    \
	X(OP_CTL_STATUS, "status", 0, "", "the daemon, its workers, tickets and safety state")    \
	X(OP_CTL_WORKERS, "workers", 0, "", "each worker's state, pid and restarts")               \
	X(OP_CTL_TICKETS, "tickets", 0, "[open]", "the latest tickets, or the open ones")         \
	X(OP_CTL_TICKET, "ticket", 0, "[show] ID [--postmortem]", "one ticket with its record")   \
	X(OP_CTL_POSTMORTEM, "postmortem", 0, "ID", "a ticket's timeline, figures and budgets")   \
	X(OP_CTL_ACTIONS, "actions", 0, "", "the latest actions")                                 \
	X(OP_CTL_FAULTS, "faults", 0, "", "the latest injected faults")                           \
	X(OP_CTL_EVENTS, "events", 0, "[SINCE [LIMIT [MAX_BYTES]]]",                              \
	    "events after seq SINCE, at most LIMIT rows and MAX_BYTES")                            \
	X(OP_CTL_OBSERVE, "observe", OP_CTL_TO_WORKERS, "SUBJECT", "a fresh observation")       \
	X(OP_CTL_MODE, "mode", OP_CTL_MUTATES | OP_CTL_READ_BARE,                                 \
	    "[observe|approve|execute]", "show or set the mode")                                   \
	X(OP_CTL_KILL_SWITCH, "kill-switch", OP_CTL_MUTATES | OP_CTL_READ_BARE,                   \
	    "[on|off]", "show or set the kill switch (persisted)")                                 \
	X(OP_CTL_APPROVE, "approve", OP_CTL_MUTATES | OP_CTL_TO_WORKERS, "ACTION_ID",            \
	    "let an action that awaits approval run")                                              \
	X(OP_CTL_REJECT, "reject", OP_CTL_MUTATES | OP_CTL_TO_WORKERS, "ACTION_ID [--reason TEXT]", \
	    "refuse an action that awaits approval")                                               \
	X(OP_CTL_HOLD, "hold", OP_CTL_MUTATES | OP_CTL_TO_WORKERS, "ID", "stop automatic action on a ticket") \
	X(OP_CTL_UNHOLD, "unhold", OP_CTL_MUTATES | OP_CTL_TO_WORKERS, "ID", "lift a hold")        \
	X(OP_CTL_ACK, "ack", OP_CTL_MUTATES | OP_CTL_TO_WORKERS, "ID", "acknowledge a ticket")     \
	X(OP_CTL_RESOLVE, "resolve", OP_CTL_MUTATES | OP_CTL_TO_WORKERS, "ID [--reason TEXT]",    \
	    "close a ticket by hand")                                                              \
	X(OP_CTL_ACT, "act", OP_CTL_MUTATES | OP_CTL_TO_WORKERS,                                  \
	    "TICKET ACTION [key=value ...] [then ACTION ...] [--in DURATION]",                     \
	    "run a workflow, each step verified before the next")                                  \
	X(OP_CTL_LEVEL, "level", OP_CTL_MUTATES | OP_CTL_READ_BARE | OP_CTL_TO_WORKERS,           \
	    "[ACTION [shadow|approve|execute [SUBJECT]]]", "show or set an action's level")        \
	X(OP_CTL_CHAOS, "chaos", OP_CTL_MUTATES | OP_CTL_TO_WORKERS,                              \
	    "inject FAULT [key=value ...] | list", "inject a fault, or list the active ones")      \
	X(OP_CTL_RESTART, "restart", OP_CTL_MUTATES, "WORKER", "restart one worker")              \
	X(OP_CTL_RELOAD, "reload", OP_CTL_MUTATES, "", "re-read the configuration")               \
	X(OP_CTL_SHUTDOWN, "shutdown", OP_CTL_MUTATES, "", "ordered shutdown of the daemon")

enum op_ctl_cmd {
#define OP_CTL_ENUM(e, name, flags, args, help) e,
	OP_CTL_COMMANDS(OP_CTL_ENUM)
#undef OP_CTL_ENUM
	OP_CTL_NCMDS
};

struct op_ctl_cmd_info {
	enum op_ctl_cmd cmd;
	const char *name;
	unsigned flags;
	const char *args;
	const char *help;
};

extern const struct op_ctl_cmd_info op_ctl_cmds[OP_CTL_NCMDS];

/* The command called name, or NULL. */
const struct op_ctl_cmd_info *op_ctl_lookup(const char *name);
/* Whether this call (with nargs arguments) changes anything. */
int op_ctl_mutates(const struct op_ctl_cmd_info *c, size_t nargs);
/* One line per command: "  NAME ARGS" padded, then what it does. */
void op_ctl_usage(FILE *f);
/* "status workers tickets ..." into buf, for an "unknown command" error. */
void op_ctl_names(char *buf, size_t len);

#endif
