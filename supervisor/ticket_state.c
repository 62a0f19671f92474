/* ticket_state: the names and the transition tables of the ticket and
 * action state machines (DESIGN §4). Pure: no ledger, no process, so a unit
 * test walks every pair. */
#include <string.h>

#include "common/util.h"
#include "supervisor/ticket.h"

static const struct {
	const char *name;
	int closed;
} tk_names[TK_NSTATUS] = {
#define TK_NAME(e, name, closed) [e] = {name, closed},
	TK_STATUSES(TK_NAME)
#undef TK_NAME
};

static const struct {
	const char *name;
	enum act_kind kind;
} act_names[ACT_NSTATUS] = {
#define ACT_NAME(e, name, kind) [e] = {name, kind},
	ACT_STATUSES(ACT_NAME)
#undef ACT_NAME
};

/* Every legal move of a ticket, with what causes it. Anything else is a bug
 * in the caller: the gate refuses it. */
static const struct {
	enum tk_status from, to;
} tk_moves[] = {
	{TK_OPEN, TK_DIAGNOSING},               /* the diagnoser is asked */
	{TK_OPEN, TK_ESCALATED},                /* reopened once too often: flapping */
	{TK_DIAGNOSING, TK_DIAGNOSED},          /* a diagnosis arrived */
	{TK_DIAGNOSING, TK_ESCALATED},          /* no diagnosis before its deadline */
	{TK_DIAGNOSED, TK_DIAGNOSING},          /* a new attempt, from a fresh look */
	{TK_DIAGNOSED, TK_AWAITING_APPROVAL},   /* the next step needs a human */
	{TK_DIAGNOSED, TK_ACTING},              /* the next step is cleared to run */
	{TK_DIAGNOSED, TK_ESCALATED},           /* no safe action, refused, or exhausted */
	{TK_AWAITING_APPROVAL, TK_ACTING},      /* approved */
	{TK_AWAITING_APPROVAL, TK_DIAGNOSED},   /* the kill switch voided the go-ahead */
	{TK_AWAITING_APPROVAL, TK_REJECTED},    /* rejected, or expired with expiry=reject */
	{TK_AWAITING_APPROVAL, TK_ESCALATED},   /* expired, or refused by a budget */
	{TK_ACTING, TK_VERIFYING},              /* executed, or unknown: verify */
	{TK_ACTING, TK_RETRY_WAIT},             /* failed without effect, will retry */
	{TK_ACTING, TK_DIAGNOSED},              /* refused (kill switch, mode) or failed */
	{TK_ACTING, TK_ESCALATED},              /* no result before the deadline */
	{TK_RETRY_WAIT, TK_ACTING},             /* the retry is due */
	{TK_RETRY_WAIT, TK_DIAGNOSED},          /* the kill switch, or the step gave up */
	{TK_RETRY_WAIT, TK_ESCALATED},          /* refused by a budget at the retry */
	{TK_VERIFYING, TK_RESOLVED},            /* the fix held */
	{TK_VERIFYING, TK_DIAGNOSED},           /* failed, next step, or held */
	{TK_VERIFYING, TK_ESCALATED},           /* no verdict before the deadline */
	{TK_ESCALATED, TK_DIAGNOSED},           /* an operator's workflow */
	{TK_RESOLVED, TK_OPEN},                 /* recurrence within the flap window */
};

/* Open tickets that may close from (almost) any state: */
static int
tk_close_legal(enum tk_status from, enum tk_status to)
{
	if (from < 0 || from >= TK_NSTATUS || tk_names[from].closed)
		return 0;
	switch (to) {
	case TK_RESOLVED:
		/* An operator may resolve any open ticket; an action in flight
		 * meets a closed ticket and stops there. */
		return 1;
	case TK_CLEARED:
		/* Healed by itself; while an action runs or is verified the
		 * verifier decides instead (acting clears only when the executor
		 * found it healed before acting). */
		return from != TK_VERIFYING;
	default:
		return 0;
	}
}

const char *
tk_status_name(enum tk_status s)
{
	return s >= 0 && s < TK_NSTATUS ? tk_names[s].name : "none";
}

enum tk_status
tk_status_from(const char *name)
{
	for (int i = 0; name != NULL && i < TK_NSTATUS; i++)
		if (!strcmp(tk_names[i].name, name))
			return (enum tk_status)i;
	return TK_NONE;
}

int
tk_status_closed(enum tk_status s)
{
	return s >= 0 && s < TK_NSTATUS && tk_names[s].closed;
}

int
tk_transition_legal(enum tk_status from, enum tk_status to)
{
	if (from < 0 || from >= TK_NSTATUS || to < 0 || to >= TK_NSTATUS)
		return 0;
	if (tk_close_legal(from, to))
		return 1;
	for (size_t i = 0; i < OP_ARRAY_LEN(tk_moves); i++)
		if (tk_moves[i].from == from && tk_moves[i].to == to)
			return 1;
	return 0;
}

/* Every legal move of an action. */
static const struct {
	enum act_status from, to;
} act_moves[] = {
	{ACT_PROPOSED, ACT_SCHEDULED},          /* not before a time */
	{ACT_PROPOSED, ACT_AWAITING_APPROVAL},
	{ACT_PROPOSED, ACT_PENDING},            /* cleared to run */
	{ACT_PROPOSED, ACT_SHADOWED},
	{ACT_PROPOSED, ACT_SKIPPED},            /* refused by a budget or the blast radius */
	{ACT_SCHEDULED, ACT_PROPOSED},          /* its time came */
	{ACT_SCHEDULED, ACT_SHADOWED},
	{ACT_AWAITING_APPROVAL, ACT_PENDING},   /* approved */
	{ACT_AWAITING_APPROVAL, ACT_PROPOSED},  /* the kill switch voided the wait */
	{ACT_AWAITING_APPROVAL, ACT_REJECTED},
	{ACT_AWAITING_APPROVAL, ACT_EXPIRED},
	{ACT_AWAITING_APPROVAL, ACT_SKIPPED},
	{ACT_PENDING, ACT_DISPATCHED},          /* handed to the executor */
	{ACT_PENDING, ACT_PROPOSED},            /* the kill switch voided the go-ahead */
	{ACT_PENDING, ACT_SKIPPED},
	{ACT_RETRY_WAIT, ACT_PENDING},          /* the retry is due */
	{ACT_RETRY_WAIT, ACT_PROPOSED},
	{ACT_RETRY_WAIT, ACT_SKIPPED},
	{ACT_DISPATCHED, ACT_EXECUTED},
	{ACT_DISPATCHED, ACT_FAILED},
	{ACT_DISPATCHED, ACT_UNKNOWN},          /* the executor died, or no result in time */
	{ACT_DISPATCHED, ACT_SKIPPED},          /* refused before any side effect */
	{ACT_DISPATCHED, ACT_PROPOSED},         /* refused by the kill switch or the mode */
	{ACT_DISPATCHED, ACT_RETRY_WAIT},       /* failed without effect */
	{ACT_DISPATCHED, ACT_CANCELLED},        /* stopped at a cancellation point */
	{ACT_UNKNOWN, ACT_EXECUTED},            /* a late result after all */
	{ACT_UNKNOWN, ACT_FAILED},
	{ACT_UNKNOWN, ACT_SKIPPED},
	{ACT_EXECUTED, ACT_UNDONE},             /* it made things worse: undone */
};

const char *
act_status_name(enum act_status s)
{
	return s >= 0 && s < ACT_NSTATUS ? act_names[s].name : "none";
}

enum act_status
act_status_from(const char *name)
{
	for (int i = 0; name != NULL && i < ACT_NSTATUS; i++)
		if (!strcmp(act_names[i].name, name))
			return (enum act_status)i;
	return ACT_NONE;
}

enum act_kind
act_status_kind(enum act_status s)
{
	return s >= 0 && s < ACT_NSTATUS ? act_names[s].kind : ACT_K_FINAL;
}

int
act_transition_legal(enum act_status from, enum act_status to)
{
	if (from < 0 || from >= ACT_NSTATUS || to < 0 || to >= ACT_NSTATUS)
		return 0;
	/* A closing ticket cancels whatever still waits. */
	if (to == ACT_CANCELLED && act_names[from].kind == ACT_K_WAITING)
		return 1;
	for (size_t i = 0; i < OP_ARRAY_LEN(act_moves); i++)
		if (act_moves[i].from == from && act_moves[i].to == to)
			return 1;
	return 0;
}
