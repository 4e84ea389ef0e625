#ifndef TANDEM_PROTO_MIME_MIME_IMAP_H
#define TANDEM_PROTO_MIME_MIME_IMAP_H

/*
 * IMAP text of a parsed message (RFC 3501 7.4.2, RFC 9051 7.5.2): ENVELOPE, BODY and
 * BODYSTRUCTURE, and the quoting of IMAP strings they use. Independent of the IMAP command
 * parser (src/proto/imap/): a writer only needs the string rules.
 *
 * Strings: a value of printable 7-bit bytes is written as a quoted string with '"' and '\'
 * escaped; one holding CR, LF or 8-bit bytes as a literal ("{n}\r\n" and the bytes), which
 * every IMAP4rev1 client reads. NUL cannot appear in either, so a NUL byte is written as '?'
 * (headers never legitimately hold one).
 *
 * ENVELOPE follows RFC 3501's rules: date, subject, in-reply-to and message-id are the field
 * values unfolded and trimmed (not decoded: clients decode RFC 2047 themselves), NIL when the
 * field is absent; sender and reply-to are the from list when absent or empty. Addresses are
 * (name adl mailbox host) with quoting removed from names and local parts and the last
 * comment used as name when there is no display name; a group is (NIL NIL "name" NIL) ...
 * (NIL NIL NIL NIL). An address with no domain gets host "MISSING_DOMAIN" and one with no
 * local part mailbox "MISSING_MAILBOX", because a NIL host would read as a group marker (the
 * same placeholders Dovecot uses, so clients see what they already know).
 *
 * BODYSTRUCTURE follows RFC 3501 body syntax. Type, subtype, encoding, disposition and
 * parameter names are upper case (RFC 3501's own examples and Cyrus do the same), values as
 * written. Without Content-Type a part is ("TEXT" "PLAIN" ("CHARSET" "us-ascii") ...).
 * An RFC 2231 parameter is written re-joined as NAME* "charset'lang'%XX..." so that no
 * information is lost; mime_param_utf8() (mime_charset.h) gives its decoded value. Content-Language is always
 * a parenthesised list. Sizes are octets of the body as stored; lines count line breaks plus a
 * last unterminated line. message/global is written like message/rfc822 only with
 * MIME_IMAP_REV2 (RFC 9051 added it to media-message); otherwise it is a basic body.
 */

#include "proto/mime/mime_buf.h"
#include "proto/mime/mime_message.h"

#include <stddef.h>

#define MIME_IMAP_REV2 0x1u /* IMAP4rev2 was enabled */

/* Appends s[0..len) as an IMAP string (quoted or literal, see above). */
void mime_imap_string(struct mime_buf *out, const void *s, size_t len);
/* Appends s as a string, or NIL when s->s is NULL. */
void mime_imap_nstring(struct mime_buf *out, const struct mime_str *s);

/*
 * Appends the ENVELOPE of a message: msg_root is the root (mime_message_root()) or an embedded
 * message's root (part->message). Returns 0 or -ENOMEM (out is then in its sticky error).
 */
int mime_imap_envelope(const struct mime_message *msg, const struct mime_part *msg_root,
                       struct mime_buf *out);

/*
 * Appends BODYSTRUCTURE (extended true) or BODY (false) of part, normally the root. flags:
 * MIME_IMAP_*. Returns 0 or -ENOMEM.
 */
int mime_imap_bodystructure(const struct mime_message *msg, const struct mime_part *part,
                            bool extended, unsigned flags, struct mime_buf *out);

#endif
