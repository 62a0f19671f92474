/* outbox: frames and events produced while handling one input are held
 * until the ledger transaction that records them commits, so nothing is
 * dispatched that a crash could forget.
 *
 * Group commit: a burst of worker frames (one drain of a worker's socket)
 * is one transaction with a savepoint per frame, so a burst costs one disk
 * sync, not one per frame. A frame whose statements fail is rolled back to
 * its savepoint with its own frames and events; the others stand. Nothing
 * of the burst goes out before its COMMIT. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/bus.h"
#include "supervisor/od.h"

static int outbox_in_txn;               /* an input is open */
static uint64_t outbox_errors_at_begin; /* ledger_errors() when the input began */
static int outbox_batching;             /* inside outbox_batch_begin/_end */
static int outbox_batch_open;           /* the burst's BEGIN ran (or was refused) */
static size_t outbox_input_mark;        /* od->nout when the batched input began */

uint64_t
od_new_id(void)
{
	return ++od->next_id;
}

static void
outbox_push(int target, struct op_msg *m)
{
	if (od->nout == od->capout) {
		size_t cap = od->capout ? od->capout * 2 : 16;
		struct od_outbox_item *n = realloc(od->outbox, cap * sizeof(*n));
		if (n == NULL) {
			log_err("out of memory; dropping %s frame", op_msg_type_name(m->type));
			op_msg_clear(m);
			return;
		}
		od->outbox = n;
		od->capout = cap;
	}
	od->outbox[od->nout].target = target;
	od->outbox[od->nout].msg = *m;
	od->nout++;
}

static void
outbox_txn(void)
{
	if (outbox_in_txn)
		return;
	outbox_in_txn = 1;
	if (outbox_batching && !outbox_batch_open) {
		outbox_batch_open = 1;
		if (ledger_begin(od->ledger) != 0)
			ledger_refuse(od->ledger, 1); /* the whole burst: see below */
	}
	outbox_errors_at_begin = ledger_errors(od->ledger);
	if (outbox_batching) {
		outbox_input_mark = od->nout;
		ledger_savepoint(od->ledger); /* a failure counts: the input rolls back */
		return;
	}
	if (ledger_begin(od->ledger) != 0) {
		/* Nothing of this input may be written or sent: every statement
		 * fails until the commit, which then sends nothing. */
		ledger_refuse(od->ledger, 1);
	}
}

/* Drops the items from index from on: their input did not happen. */
static void
outbox_drop(size_t from)
{
	for (size_t i = from; i < od->nout; i++)
		op_msg_clear(&od->outbox[i].msg);
	od->nout = from;
}

/* Opens the transaction that the next outbox_commit ends. Every handler
 * starts with it, so its first ledger write is already inside: a caller
 * must never BEGIN on its own (the outbox would not know, and nothing it
 * wrote would be committed). */
void
outbox_begin(void)
{
	outbox_txn();
}

void
outbox_send(int target, enum op_msg_type type, uint64_t id, json_object *body)
{
	struct op_msg m;

	outbox_txn();
	op_msg_init(&m, type, id, body);
	outbox_push(target, &m);
}

int64_t
outbox_event(const char *type, int64_t ticket, const char *subject, const char *entity,
    const char *invariant, json_object *data)
{
	int64_t ts = op_wall_ms();
	int64_t seq;
	struct op_msg m;
	char tsbuf[OP_TS_LEN];

	outbox_txn();
	seq = ledger_event(od->ledger, ts, type, ticket, subject, entity, invariant, data);
	if (seq < 0) {
		json_object_put(data);
		return -1;
	}
	json_object *ev = json_object_new_object();
	op_rfc3339(ts, tsbuf);
	json_object_object_add(ev, "seq", json_object_new_int64(seq));
	json_object_object_add(ev, "ts", json_object_new_string(tsbuf));
	json_object_object_add(ev, "type", json_object_new_string(type));
	if (ticket > 0)
		json_object_object_add(ev, "ticket", json_object_new_int64(ticket));
	if (subject)
		json_object_object_add(ev, "subject", json_object_new_string(subject));
	if (entity)
		json_object_object_add(ev, "entity", json_object_new_string(entity));
	if (invariant)
		json_object_object_add(ev, "invariant", json_object_new_string(invariant));
	json_object_object_add(ev, "data", data ? data : json_object_new_object());
	op_msg_init(&m, OP_MSG_EVENT, (uint64_t)seq, ev);
	outbox_push(-1, &m);
	log_debug("event %lld %s", (long long)seq, type);
	return seq;
}

/* Sends what the committed transaction recorded, in the order it was made. */
static int
outbox_deliver(void)
{
	int rc = 0;

	/* The items are taken out first: failing a step opens a transaction of
	 * its own, whose commit reuses the outbox. */
	size_t n = od->nout;
	struct od_outbox_item *items = od->outbox;
	od->outbox = NULL;
	od->nout = od->capout = 0;
	for (size_t i = 0; i < n; i++) {
		struct od_outbox_item *it = &items[i];
		if (it->target < 0) {
			events_publish(&it->msg);
		} else if (proc_send(&od->w[it->target], &it->msg) == -2) {
			dispatch_undeliverable((enum od_role)it->target, &it->msg);
			rc = -1;
		}
		op_msg_clear(&it->msg);
	}
	free(items);
	return rc;
}

/* In a burst, ends one input: released into the burst's transaction, or
 * rolled back alone. Its items wait for outbox_batch_end. */
static int
outbox_input_end(void)
{
	if (!outbox_in_txn)
		return 0;
	outbox_in_txn = 0;
	if (ledger_errors(od->ledger) == outbox_errors_at_begin &&
	    ledger_release(od->ledger) == 0)
		return 0;
	if (!ledger_refused(od->ledger)) {
		log_err("a ledger statement failed: input rolled back, nothing of it sent");
		ledger_rollback_to(od->ledger);
	}
	outbox_drop(outbox_input_mark);
	return -1;
}

int
outbox_commit(void)
{
	if (outbox_batching)
		return outbox_input_end();
	if (outbox_in_txn) {
		if (ledger_errors(od->ledger) != outbox_errors_at_begin) {
			/* One input, one transaction: a failed statement (or BEGIN)
			 * takes the whole input back, and nothing of it goes out. */
			log_err("a ledger statement failed: input rolled back, nothing sent");
			outbox_abort();
			return -1;
		}
		outbox_in_txn = 0;
		if (ledger_commit(od->ledger) != 0) {
			/* Nothing was recorded, so nothing may go out. */
			ledger_rollback(od->ledger);
			outbox_abort();
			return -1;
		}
	}
	return outbox_deliver();
}

void
outbox_batch_begin(void)
{
	outbox_batching = 1;
}

void
outbox_batch_end(void)
{
	outbox_input_end(); /* an input left open is committed with the rest */
	outbox_batching = 0;
	if (!outbox_batch_open) {
		outbox_deliver(); /* nothing was recorded, but a frame may be waiting */
		return;
	}
	outbox_batch_open = 0;
	int refused = ledger_refused(od->ledger);
	ledger_refuse(od->ledger, 0);
	if (refused || ledger_commit(od->ledger) != 0) {
		/* Nothing of the burst was recorded, so nothing of it may go out. */
		log_err("the ledger could not commit a burst of worker frames: nothing of it sent");
		ledger_rollback(od->ledger);
		outbox_drop(0);
		return;
	}
	outbox_deliver();
}

void
outbox_abort(void)
{
	if (outbox_batching) {
		/* One input of a burst: the others stand. */
		if (outbox_in_txn) {
			outbox_in_txn = 0;
			if (!ledger_refused(od->ledger))
				ledger_rollback_to(od->ledger);
			outbox_drop(outbox_input_mark);
		}
		return;
	}
	ledger_refuse(od->ledger, 0);
	if (outbox_in_txn) {
		outbox_in_txn = 0;
		ledger_rollback(od->ledger);
	}
	outbox_drop(0);
}
