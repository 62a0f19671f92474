/* alerts: escalated tickets and actions waiting for approval, pushed to
 * Alertmanager's v2 API ([alerts] alertmanager = URL[,URL...]). */
#ifndef OD_ALERTS_H
#define OD_ALERTS_H

#include <stddef.h>

struct op_config;
struct evbuffer;

#define AL_MAX_URLS 8                 /* Alertmanagers one daemon posts to */
#define AL_POLL_MS 1000               /* how often the ledger is read for changes */
#define AL_RESEND_MS 60000            /* default resend_interval: Alertmanager forgets unrefreshed alerts */
#define AL_TIMEOUT_MS 5000            /* default timeout of one POST */
#define AL_BACKOFF_MIN_MS 1000        /* first retry after a failed POST ... */
#define AL_BACKOFF_MAX_MS 60000       /* ... doubling up to this */
#define AL_FIRING_TTL_FACTOR 4        /* a firing alert's endsAt: now + this x resend_interval */
#define AL_END_KEEP_MS (60 * 60 * 1000) /* an end not delivered by then is dropped (the TTL ends it) */

/* alerts.c */
/* Validates [alerts] for --check-config and start-up. */
int alerts_check_config(const struct op_config *cfg, char *err, size_t errlen);
/* Starts the poll timer on od->base when [alerts] alertmanager is set. */
int alerts_open(const struct op_config *cfg, char *err, size_t errlen);
void alerts_close(void);
/* Appends the operatord_alert* series to a /metrics answer. */
void alerts_metrics(struct evbuffer *b);

#endif
