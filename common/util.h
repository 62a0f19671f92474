/* util: clocks, durations, time formatting, small string helpers. */
#ifndef OP_UTIL_H
#define OP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define OP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define OP_TS_LEN 64 /* "2026-11-24T01:02:03.456Z" and NUL, with room for any year */

int64_t op_mono_ms(void);  /* CLOCK_MONOTONIC, for timing */
int64_t op_wall_ms(void);  /* CLOCK_REALTIME (UTC), for records */
/* Formats UTC milliseconds as RFC 3339 with millisecond precision. */
void op_rfc3339(int64_t wall_ms, char out[OP_TS_LEN]);
/* Parses "250ms", "5s", "2m", "1h", "1m30s" or a bare number of seconds.
 * Returns 0 and sets *ms, or -1 on malformed or negative input. */
int op_parse_duration(const char *s, int64_t *ms);
/* Parses a whole decimal integer within [min, max]; -1 on anything else. */
int op_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
int op_parse_u64(const char *s, uint64_t *out);
/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t op_strlcpy(char *dst, const char *src, size_t size);
/* Splits "host:port"; returns -1 when the port is missing or invalid. */
int op_split_hostport(const char *s, char *host, size_t hostlen, int *port);
/* Sleeps without being a busy loop; only for tools and tests. */
void op_sleep_ms(int64_t ms);
/* Writes the whole buffer (restarting on EINTR); -1 on error. */
int op_write_all(int fd, const void *buf, size_t len);

#endif
