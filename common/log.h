/* log: leveled logging to stderr (journald picks it up), one line per call. */
#ifndef OP_LOG_H
#define OP_LOG_H

#include <stdarg.h>
#include <stddef.h>

#define LOG_LINE_MAX 2048 /* bytes of one log line, escapes included */

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

void log_init(const char *procname, int verbose);
void log_setproc(const char *procname);
/* Escapes control characters (as \n, \xNN) so src fits on one line; returns
 * the length written to dst (always NUL-terminated, escapes never cut). */
size_t log_escape(char *dst, size_t dstlen, const char *src);
void log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fatal_msg(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __func__, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __func__, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __func__, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LVL_ERR, __func__, __VA_ARGS__)
#define fatal(...) fatal_msg(__func__, __VA_ARGS__)

#endif
