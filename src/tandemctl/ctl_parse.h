#ifndef TANDEM_TANDEMCTL_CTL_PARSE_H
#define TANDEM_TANDEMCTL_CTL_PARSE_H

/*
 * The small parsers of tandemctl's command line and request paths, kept apart from the verbs
 * so they can be unit-tested (tests/unit/tandemctl/test_ctl_parse.c). None allocates.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* "<bytes>[K|M|G|T]" (binary multiples, either case). False for anything else or overflow. */
bool ctl_parse_size(const char *s, uint64_t *v_r);

/*
 * events --since: a duration back from now ("90s", "10m", "2h", "7d"), unix seconds, or a UTC
 * time "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[Z]" (a space may stand for the T). Returns false for
 * anything else, including a duration reaching before 1970.
 */
bool ctl_parse_since(const char *s, time_t now, long long *since_r);

/* A TCP port: decimal digits only, 1..65535. */
bool ctl_parse_port(const char *s, unsigned *port_r);

/*
 * "host:port" or "[v6 literal]:port" (port 1..65535) into host (without brackets, NUL-
 * terminated) and port. False when it is not that shape or host does not fit.
 */
bool ctl_parse_host_port(const char *s, char *host, size_t host_size, unsigned *port_r);

/*
 * Appends s to the path in buf (size bytes, NUL-terminated), percent-encoding everything but
 * unreserved characters (RFC 3986: letters, digits, - . _ ~), so a name can never add a path
 * segment, a query or a fragment. Returns false, with buf unchanged, when it does not fit.
 */
bool ctl_path_append(char *buf, size_t size, const char *s);

/*
 * prefix, then name encoded as by ctl_path_append, then suffix (not encoded: the caller's
 * own "/action" or "&query=..."), into buf. False when the whole does not fit.
 */
bool ctl_path_make(char *buf, size_t size, const char *prefix, const char *name,
                   const char *suffix);

#endif
