#ifndef TANDEM_LIB_TLS_INT_H
#define TANDEM_LIB_TLS_INT_H

/* What tls.c and tls_local.c share. */

/* An allocated message; allocation failure is fatal (CONVENTIONS: xmalloc outside store). */
char *tls__fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * An allocated message "<what>: <reasons>", the reasons taken (and removed) from OpenSSL's
 * error queue of this thread, or "<what>" alone when the queue is empty. The queue is always
 * left empty, so a later failure never reports an older reason.
 */
char *tls__ssl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
