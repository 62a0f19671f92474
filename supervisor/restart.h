/* restart: the one-for-one restart policy of DESIGN §2 as a pure function of
 * a worker's history and the clock, so it is tested against a fake clock. */
#ifndef OD_RESTART_H
#define OD_RESTART_H

#include <stdint.h>

#define OD_RESTART_MIN_MS 1000      /* first delay after a quick death */
#define OD_RESTART_MAX_MS 30000     /* the doubling stops here */
#define OD_RESTART_READY_FAST_MS 1000 /* ready this long: restart at once */
#define OD_RESTART_RESET_MS 10000   /* ready this long: forget the backoff */
#define OD_INTENSITY 5              /* restarts of one worker allowed ... */
#define OD_PERIOD_MS 30000          /* ... within this window */
#define OD_START_BURST 5            /* deaths before ready in a row, whatever their spacing */

struct od_restart {
	int64_t backoff_ms;                 /* last delay used, 0 when fresh */
	int64_t recent[OD_INTENSITY + 1];   /* times of recent restarts (ring) */
	int nrecent;
	int total;                          /* restarts since the daemon started */
	int failed_starts;                  /* consecutive deaths before ready */
};

struct od_restart_decision {
	int give_up;      /* too many restarts: shut down in order and exit 1 */
	int64_t delay_ms; /* wait this long before the next spawn */
};

/* The worker died at now_ms; ready_ms is how long it had been ready
 * (0 if it never became ready). counts=0 for workers outside the intensity
 * limit (chaos). */
struct od_restart_decision od_restart_on_exit(struct od_restart *r, int64_t now_ms,
    int64_t ready_ms, int counts);

#endif
