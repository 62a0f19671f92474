#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char log_proc[48] = "operatord";
static int log_verbose;

static const char *const log_lvl_names[] = {"debug", "info", "warn", "error"};

void
log_init(const char *procname, int verbose)
{
	log_setproc(procname);
	log_verbose = verbose;
	if (getenv("OPERATORD_DEBUG") != NULL)
		log_verbose = 1;
}

void
log_setproc(const char *procname)
{
	snprintf(log_proc, sizeof(log_proc), "%s", procname);
}

/* Copies src into dst (size dstlen, NUL-terminated) with every control
 * character, DEL and UTF-8-encoded C1 control written as \n, \r, \t or
 * \xNN: text from outside (a frame type, a peer's error, a key) can then
 * never start a line of its own or move the cursor of whoever reads it. */
size_t
log_escape(char *dst, size_t dstlen, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dstlen == 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
		char esc[5];
		size_t n = 0;
		if (*p == '\n' || *p == '\r' || *p == '\t') {
			esc[n++] = '\\';
			esc[n++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
		} else if (*p < 0x20 || *p == 0x7f) {
			esc[n++] = '\\';
			esc[n++] = 'x';
			esc[n++] = hex[*p >> 4];
			esc[n++] = hex[*p & 0xf];
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			/* A C1 control in UTF-8 (U+0080..U+009F: CSI is U+009B). */
			esc[n++] = '\\';
			esc[n++] = 'x';
			esc[n++] = hex[p[1] >> 4];
			esc[n++] = hex[p[1] & 0xf];
			p++;
		} else {
			esc[n++] = (char)*p;
		}
		if (o + n >= dstlen)
			break; /* never cut an escape in half */
		memcpy(dst + o, esc, n);
		o += n;
	}
	dst[o] = '\0';
	return o;
}

static void
log_vwrite(enum log_level lvl, const char *func, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX];
	int n;

	n = snprintf(line, sizeof(line), "%s[%d]: %s: %s: ", log_proc,
	    (int)getpid(), log_lvl_names[lvl], func);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	/* The whole message is escaped: its arguments may carry outside input,
	 * and no format string of ours has a control character to keep. */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t len = (size_t)n + log_escape(line + n, sizeof(line) - 1 - (size_t)n, msg);
	/* One write(2) per line so lines from several processes never interleave. */
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void
log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
{
	va_list ap;

	if (lvl == LOG_LVL_DEBUG && !log_verbose)
		return;
	va_start(ap, fmt);
	log_vwrite(lvl, func, fmt, ap);
	va_end(ap);
}

void
fatal_msg(const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERR, func, fmt, ap);
	va_end(ap);
	exit(1);
}
