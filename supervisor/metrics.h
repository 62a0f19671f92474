/* metrics: the daemon's own Prometheus /metrics endpoint. */
#ifndef OD_METRICS_H
#define OD_METRICS_H

#include <stddef.h>

/* listen is "HOST:PORT"; NULL or empty leaves the endpoint off. */
int metrics_open(const char *listen, char *err, size_t errlen);
void metrics_close(void);

#endif
