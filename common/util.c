#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t
op_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
op_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
op_rfc3339(int64_t wall_ms, char out[OP_TS_LEN])
{
	time_t secs;
	struct tm tm;

	if (wall_ms < 0)
		wall_ms = 0;
	secs = (time_t)(wall_ms / 1000);
	if (gmtime_r(&secs, &tm) == NULL) {
		snprintf(out, OP_TS_LEN, "invalid-time");
		return;
	}
	snprintf(out, OP_TS_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(wall_ms % 1000));
}

int
op_parse_duration(const char *s, int64_t *ms)
{
	int64_t total = 0;
	int any = 0;

	if (s == NULL)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	while (*s != '\0' && !isspace((unsigned char)*s)) {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || errno != 0 || !isfinite(v) || v < 0)
			return -1;
		s = end;
		int64_t unit;
		if (strncmp(s, "ms", 2) == 0) {
			unit = 1;
			s += 2;
		} else if (*s == 's') {
			unit = 1000;
			s++;
		} else if (*s == 'm') {
			unit = 60 * 1000;
			s++;
		} else if (*s == 'h') {
			unit = 3600 * 1000;
			s++;
		} else if (*s == '\0' || isspace((unsigned char)*s)) {
			if (any)
				return -1; /* "1m30" is ambiguous */
			unit = 1000;
		} else {
			return -1;
		}
		if (v * (double)unit > (double)INT64_MAX / 4)
			return -1;
		int64_t part = (int64_t)(v * (double)unit + 0.5);
		if (total > INT64_MAX / 2 - part)
			return -1;
		total += part;
		any = 1;
	}
	while (isspace((unsigned char)*s))
		s++;
	if (!any || *s != '\0')
		return -1;
	*ms = total;
	return 0;
}

int
op_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
op_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

size_t
op_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int
op_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(s, ':');
	int64_t p;

	if (colon == NULL || colon == s || (size_t)(colon - s) >= hostlen)
		return -1;
	if (op_parse_int(colon + 1, 1, 65535, &p) != 0)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	*port = (int)p;
	return 0;
}

void
op_sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int
op_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
