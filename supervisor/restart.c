#include "supervisor/restart.h"

struct od_restart_decision
od_restart_on_exit(struct od_restart *r, int64_t now_ms, int64_t ready_ms, int counts)
{
	struct od_restart_decision d = {0, 0};

	if (ready_ms >= OD_RESTART_RESET_MS)
		r->backoff_ms = 0;
	r->total++;
	/* A worker that dies before it is ready backs off doubling, so it would
	 * never reach the intensity limit and would loop for ever while the
	 * daemon looks alive: like systemd's StartLimitBurst, a run of failed
	 * starts gives up whatever their spacing. */
	r->failed_starts = ready_ms > 0 ? 0 : r->failed_starts + 1;
	if (counts && r->failed_starts > OD_START_BURST) {
		d.give_up = 1;
		return d;
	}
	if (counts) {
		/* Keep only the restarts inside the period, then add this one. */
		int k = 0;
		for (int i = 0; i < r->nrecent; i++)
			if (now_ms - r->recent[i] < OD_PERIOD_MS)
				r->recent[k++] = r->recent[i];
		r->nrecent = k;
		if (r->nrecent < OD_INTENSITY + 1)
			r->recent[r->nrecent++] = now_ms;
		if (r->nrecent > OD_INTENSITY) {
			d.give_up = 1;
			return d;
		}
	}
	if (ready_ms > OD_RESTART_READY_FAST_MS) {
		/* It had been up and serving: a one-off crash, come back at once. */
		d.delay_ms = 0;
		return d;
	}
	r->backoff_ms = r->backoff_ms == 0 ? OD_RESTART_MIN_MS : r->backoff_ms * 2;
	if (r->backoff_ms > OD_RESTART_MAX_MS)
		r->backoff_ms = OD_RESTART_MAX_MS;
	d.delay_ms = r->backoff_ms;
	return d;
}
