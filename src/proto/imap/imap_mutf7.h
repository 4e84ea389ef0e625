#ifndef TANDEM_PROTO_IMAP_IMAP_MUTF7_H
#define TANDEM_PROTO_IMAP_IMAP_MUTF7_H

/*
 * Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of mailbox names for clients that have
 * not enabled IMAP4rev2 or UTF8=ACCEPT. The store holds names as UTF-8; names go out through
 * imap_mutf7_encode() and come in through imap_mutf7_decode().
 *
 * Both directions are strict, so every name has exactly one encoding and encode(decode(x)) is
 * x for every x decode accepts: the decoder refuses a base64 run that encodes printable ASCII
 * or nothing, non-zero or too many leftover bits, unpaired surrogates, a run not closed by
 * "-", two runs back to back (one run would do), and bytes outside printable ASCII; the
 * encoder refuses input that is not UTF-8 (overlong forms, surrogates, > U+10FFFF). Both
 * refuse U+0000, which no mailbox name may hold.
 */

#include <stddef.h>

struct imap_buf;

/* Appends the encoding of utf8[0..len) to out. Returns 0, TDM_EINVAL (not valid UTF-8 or
 * holds U+0000; nothing appended), or -ENOMEM. */
int imap_mutf7_encode(const char *utf8, size_t len, struct imap_buf *out);

/* Appends the UTF-8 decoding of s[0..len) to out. Returns 0, TDM_EINVAL (not canonical
 * modified UTF-7; nothing appended), or -ENOMEM. */
int imap_mutf7_decode(const char *s, size_t len, struct imap_buf *out);

#endif
