#ifndef TANDEM_PROTO_IMAP_IMAP_DATE_H
#define TANDEM_PROTO_IMAP_IMAP_DATE_H

/*
 * IMAP dates (RFC 3501 / RFC 9051 section 9): date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (APPEND,
 * INTERNALDATE) and date "d-Mon-yyyy" (SEARCH). Pure functions on the text without its quotes;
 * no locale, no time zone database, no libc time functions (so results never depend on TZ).
 *
 * Parsing accepts what the grammar allows and, leniently, a day of one digit without the
 * leading space in a date-time (clients get this wrong). Month names are case-insensitive.
 * Day-of-month is checked against the month and leap years. A leap second (ss = 60) is taken
 * as 59, because an instant in seconds since the epoch cannot hold it. The zone is limited to
 * +-99:59 as the grammar's four digits give.
 */

#include "proto/imap/imap_command.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_DATE_TIME_LEN 26 /* "25-Nov-2026 17:20:00 +0000" */
#define IMAP_DATE_MAX_LEN 11  /* "25-Nov-2026" */

/* Parses s[0..len) as a date-time; false when it is not one. */
bool imap_date_time_parse(const char *s, size_t len, struct imap_date_time *dt_r);

/* Writes t (seconds since the epoch) in the zone given (minutes east of UTC, |zone| <= 5999)
 * as date-time with a space-padded day ("date-day-fixed"), NUL-terminated, into
 * out[IMAP_DATE_TIME_LEN + 1]. Returns false (and writes nothing) when the year falls outside
 * 0..9999 or the zone is out of range. */
bool imap_date_time_format(int64_t t, int zone_minutes, char *out);

/* Parses s[0..len) as a date ("1-Feb-1994", "01-Feb-1994"). */
bool imap_date_parse(const char *s, size_t len, struct imap_date *d_r);

/* Writes d as "d-Mon-yyyy" (no padding) with a NUL into out[IMAP_DATE_MAX_LEN + 1];
 * returns the length. d must be valid (as imap_date_parse gives). */
size_t imap_date_format(const struct imap_date *d, char *out);

/* Seconds since the epoch of 00:00:00 UTC on d. */
int64_t imap_date_to_time(const struct imap_date *d);

#endif
