#ifndef TANDEM_LIB_LOG_H
#define TANDEM_LIB_LOG_H

/*
 * Debug/diagnostic log lines for developers and operators reading journald (stderr).
 * Operator-facing events with stable ids are separate: see lib/event.h.
 * Severity follows Postfix: panic = our bug (abort with a core), fatal = cannot go on (exit,
 * let the supervisor restart), then error, warn, info, debug.
 */
enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

/* role is borrowed and must outlive the process (a string literal). */
void log_set_role(const char *role);
void log_set_min_level(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

/* Always on: guards data invariants. A failed one is our bug. */
#define TDM_ASSERT(expr)                                                                           \
    do {                                                                                           \
        if (!(expr))                                                                               \
            log_panic("assertion failed: %s (%s:%d)", #expr, __FILE__, __LINE__);                  \
    } while (0)

#endif
