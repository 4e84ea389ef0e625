#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *log_role = "tandem";
static enum log_level log_min_level = LOG_LEVEL_INFO;

void
log_set_role(const char *role)
{
    log_role = role;
}

void
log_set_min_level(enum log_level level)
{
    log_min_level = level;
}

static void log_vwrite(const char *severity, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_vwrite(const char *severity, const char *fmt, va_list ap)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s[%d]: %s: ", log_role, (int)getpid(), severity);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    /* One fputs per line so lines from several threads do not interleave. */
    fprintf(stderr, "%s\n", line);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    va_list ap;

    if (level < log_min_level)
        return;
    va_start(ap, fmt);
    log_vwrite(names[level], fmt, ap);
    va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite("fatal", fmt, ap);
    va_end(ap);
    exit(75); /* EX_TEMPFAIL: the supervisor restarts us */
}

void
log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite("panic", fmt, ap);
    va_end(ap);
    abort();
}
