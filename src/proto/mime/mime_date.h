#ifndef TANDEM_PROTO_MIME_MIME_DATE_H
#define TANDEM_PROTO_MIME_MIME_DATE_H

/*
 * The Date header (RFC 5322 3.3 with the obsolete forms of 4.3), for SENTBEFORE, SENTON and
 * SENTSINCE, which compare the date as written, in the sender's own time zone (RFC 3501
 * 6.4.4: "disregarding time and timezone"), and for sorting by sent time (utc).
 *
 * Accepted: an optional day name (with or without the comma, any case, checked only as
 * letters), day, month name (the first three letters, any case), year of 4 digits, or 2 (00-49
 * are 2000-2049, 50-99 are 1950-1999) or 3 (plus 1900) as in RFC 5322 4.3, hh:mm[:ss], and
 * a zone: +hhmm/-hhmm, UT, GMT, Z, the US zones (EST EDT CST CDT MST MDT PST PDT), military
 * letters (taken as +0000 with zone_known false, as RFC 5322 4.3 says they are unreliable),
 * or none (also +0000, zone_known false). Comments and white space may appear anywhere, and
 * a "." or "-" between day, month and year is tolerated. Anything after the zone is ignored.
 * Out-of-range fields (month 13, 31 February, hour 24, minute 60, zone beyond +-99:59) are
 * TDM_EINVAL. A message without a usable Date is the caller's to place; IMAP servers
 * commonly use the internal date then (Dovecot does).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_date {
    int year, month, day; /* the date as written: month 1-12 */
    int hour, min, sec;   /* sec may be 60 (a leap second) */
    int zone_minutes;     /* east of UTC */
    bool zone_known;
    int64_t utc; /* seconds since 1970-01-01T00:00:00Z */
};

/* Parses an unfolded Date value. Returns 0 or TDM_EINVAL. */
int mime_date_parse(const uint8_t *v, size_t len, struct mime_date *out);

#endif
