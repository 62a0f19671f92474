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

static void
log_vwrite(enum log_level lvl, const char *func, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	n = snprintf(line, sizeof(line), "%s[%d]: %s: %s: ", log_proc,
	    (int)getpid(), log_lvl_names[lvl], func);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	/* One write(2) per line so lines from several processes never interleave. */
	size_t len = strnlen(line, sizeof(line) - 2);
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
