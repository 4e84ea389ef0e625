#ifndef TANDEM_PROTO_SMTP_SMTP_RECEIVED_H
#define TANDEM_PROTO_SMTP_SMTP_RECEIVED_H

/*
 * The Received: trace header the transport role prepends to each message it accepts (RFC
 * 5321 §4.4, RFC 5322 §3.6.7), folded at clause boundaries:
 *
 *   Received: from <helo> (<client name> [<client address>])
 *           by <our name> (tandem) with <protocol> id <id>
 *           for <recipient>; <date-time>
 *
 * Everything the client chose (its HELO name) is checked here, because a header built from
 * client input is an injection point: a HELO that is not a domain or an address literal is not
 * trusted as one and appears only as a comment, with the characters that would end the comment
 * replaced. The time is given, not read, so the builder stays sans-IO and testable. A UTF-8
 * recipient is written as UTF-8, which only an SMTPUTF8 message may carry (RFC 6532).
 */

#include "proto/smtp/smtp_addr.h"
#include "proto/smtp/smtp_reply.h"

#include <stdint.h>

struct smtp_received {
    const char *helo;        /* smtp_session_helo(); NULL or "" when there was none */
    const char *client_addr; /* the client's IP address as text: "192.0.2.1", "2001:db8::1" */
    const char *client_name; /* its verified reverse DNS name, or NULL */
    const char *by;          /* our host name */
    const char *with;        /* smtp_session_with() */
    const char *id;          /* our identifier for the message, or NULL */
    const struct smtp_path *for_rcpt; /* the recipient when there is exactly one, or NULL;
                                       * a local part that is no dot-string is re-quoted */
    int64_t time;                     /* seconds since the epoch */
    int tz_minutes; /* the local offset from UTC written in the date, -1439..1439 */
};

/*
 * Appends the header, ending in CRLF, to out. Returns 0, TDM_EINVAL (an argument the caller
 * controls is malformed: address, names with spaces or control characters, an offset out of
 * range; nothing is appended) or -ENOMEM.
 */
int smtp_received_build(const struct smtp_received *r, struct smtp_buf *out);

#endif
