#ifndef TANDEM_PROTO_MIME_MIME_DECODE_H
#define TANDEM_PROTO_MIME_MIME_DECODE_H

/*
 * Streaming Content-Transfer-Encoding decoders (RFC 2045 6.7 quoted-printable, 6.8 base64),
 * for BINARY[] (RFC 3516) and for search. The caller feeds input in pieces of any size and
 * gets output that does not depend on where the pieces were cut; the decoder holds at most a
 * few bytes of state and a bounded run of white space, never the input.
 *
 * Malformed input never stops decoding; it is counted (mime_decoder_clean() is false) and
 * handled as most decoders do:
 *   base64: bytes outside the alphabet are skipped (RFC 2045 says to ignore them; CR, LF, SP
 *     and TAB are not counted as errors), input after the '=' padding is ignored, and a last
 *     group of a single character (6 bits, not a byte) is dropped.
 *   quoted-printable: "=" not followed by two hex digits or a line break is kept literally
 *     ("=4" stays "=4"), lower-case hex is accepted silently (RFC 2045 suggests it), white
 *     space at the end of a line is dropped (it is transport padding) as is white space
 *     between "=" and the line break of a soft break, and line breaks (CRLF or LF) are kept
 *     as they are. A run of white space longer than MIME_QP_WS_MAX is not held back: its
 *     start is written even if the line later ends (no encoder writes such runs).
 * 7bit, 8bit and binary are copied.
 */

#include "proto/mime/mime_message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIME_QP_WS_MAX 64

/* Output room feed() may need for len bytes of input, and finish() at most. */
#define MIME_DECODE_BOUND(len) ((len) + MIME_QP_WS_MAX + 4)
#define MIME_DECODE_FINISH_MAX (MIME_QP_WS_MAX + 4)

struct mime_decoder {
    enum mime_encoding enc;
    unsigned state;
    uint32_t acc; /* base64: bits so far; qp: the first hex digit */
    unsigned n;   /* base64: sextets in acc */
    uint8_t ws[MIME_QP_WS_MAX];
    size_t ws_len;
    uint64_t errors;
};

/* enc must not be MIME_ENC_UNKNOWN (the caller answers UNKNOWN-CTE instead). */
void mime_decoder_init(struct mime_decoder *d, enum mime_encoding enc);

/* Decodes in[0..len) into out (room for MIME_DECODE_BOUND(len) bytes); returns bytes written. */
size_t mime_decoder_feed(struct mime_decoder *d, const uint8_t *in, size_t len, uint8_t *out);

/* The end of the input: writes what is held back (room MIME_DECODE_FINISH_MAX); returns bytes
 * written. */
size_t mime_decoder_finish(struct mime_decoder *d, uint8_t *out);

/* False when malformed input was seen. */
bool mime_decoder_clean(const struct mime_decoder *d);

#endif
