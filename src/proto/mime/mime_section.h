#ifndef TANDEM_PROTO_MIME_MIME_SECTION_H
#define TANDEM_PROTO_MIME_MIME_SECTION_H

/*
 * Section addressing for FETCH BODY[<section>]<partial>, BINARY[<part>] and BINARY.SIZE
 * (RFC 3501 6.4.5, RFC 9051 6.4.5, RFC 3516).
 *
 * Part numbers follow RFC 3501: the parts of a multipart are numbered from 1; a message that
 * is not multipart has only part 1, which is its body (and BODY[1.MIME] its header); the
 * part numbers after a message/rfc822 part address the embedded message's parts in the same
 * way (for a non-multipart embedded message, n.1 is its body). HEADER, TEXT and HEADER.FIELDS
 * apply to the whole message (no part number) or to a message/rfc822 part; MIME to any part.
 *
 * Results are spans of the message (zero-copy) except HEADER.FIELDS and HEADER.FIELDS.NOT,
 * built into the caller's buffer: the matching fields exactly as written (folds and line
 * breaks kept) followed by an empty line "\r\n", as RFC 3501 requires. A section that does
 * not exist, or a suffix a part cannot take, is TDM_ENOTFOUND; what the IMAP server answers
 * then (an empty string, or NO) is its choice.
 */

#include "proto/mime/mime_buf.h"
#include "proto/mime/mime_message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deep enough for every part max_depth allows (each level adds at most one number). */
#define MIME_SECTION_PARTS_MAX 256

enum mime_section_text {
    MIME_SECTION_ALL = 0, /* no suffix: the whole message, or the part's body */
    MIME_SECTION_HEADER,
    MIME_SECTION_HEADER_FIELDS,
    MIME_SECTION_HEADER_FIELDS_NOT,
    MIME_SECTION_TEXT,
    MIME_SECTION_MIME,
};

struct mime_section {
    uint32_t part[MIME_SECTION_PARTS_MAX]; /* each >= 1 */
    unsigned n_parts;
    enum mime_section_text text;
    const struct mime_str *fields; /* HEADER.FIELDS[.NOT]: borrowed field names */
    size_t n_fields;
};

/*
 * Parses the section text between the brackets up to, not including, a HEADER.FIELDS list:
 * "", "1.2", "1.2.MIME", "HEADER", "2.HEADER.FIELDS.NOT" (ASCII case-insensitive). The
 * fields are the IMAP parser's to read; it sets out->fields itself. Returns 0 or TDM_EINVAL
 * (part number 0, a number over 2^32-1, too many numbers, an unknown word, MIME without a
 * part number).
 */
int mime_section_parse(const char *s, size_t len, struct mime_section *out);

/*
 * Resolves sec in msg. Returns 0 with *span_r a span of the message, 1 with the content
 * appended to built (HEADER.FIELDS[.NOT]), TDM_ENOTFOUND, or -ENOMEM.
 */
int mime_section_fetch(const struct mime_message *msg, const struct mime_section *sec,
                       struct mime_span *span_r, struct mime_buf *built);

/*
 * The part a list of part numbers names (n == 0: the root, as a message). *as_message_r is
 * true for the root or an embedded message's root reached through a message/rfc822 part's
 * number list, i.e. when HEADER/TEXT apply. Returns 0 or TDM_ENOTFOUND.
 */
int mime_section_part(const struct mime_message *msg, const uint32_t *part, unsigned n,
                      const struct mime_part **part_r, bool *as_message_r);

/*
 * BINARY[part] (RFC 3516): the part's content with its Content-Transfer-Encoding undone.
 * Returns 0 with *span_r (7bit, 8bit, binary, multipart and message parts, and the whole
 * message for n == 0: nothing to decode), 1 with the decoded bytes appended to decoded,
 * TDM_ENOTFOUND, TDM_EINVAL for an unknown encoding (IMAP answers [UNKNOWN-CTE]), or -ENOMEM.
 * *clean_r (may be NULL) is false when the encoded input was malformed (mime_decode.h says
 * how it was decoded anyway).
 */
int mime_binary_fetch(const struct mime_message *msg, const uint32_t *part, unsigned n,
                      struct mime_span *span_r, struct mime_buf *decoded, bool *clean_r);

/*
 * What BINARY[part] decodes, for a caller that streams it (mime_decode.h) rather than holding
 * the decoded copy: the encoded span and the encoding to undo (MIME_ENC_BINARY when there is
 * none). Returns 0, TDM_ENOTFOUND or TDM_EINVAL (unknown encoding).
 */
int mime_binary_source(const struct mime_message *msg, const uint32_t *part, unsigned n,
                       struct mime_span *span_r, enum mime_encoding *enc_r);

/* BINARY.SIZE[part]: the size of what mime_binary_fetch() would return, computed without
 * holding the decoded content. Returns 0, TDM_ENOTFOUND or TDM_EINVAL as above. */
int mime_binary_size(const struct mime_message *msg, const uint32_t *part, unsigned n,
                     uint64_t *size_r);

/*
 * The <origin.count> partial of a result of total bytes: *off_r and *len_r within it. An
 * origin at or past the end gives length 0 (RFC 3501: an empty string).
 */
void mime_partial(uint64_t total, uint64_t origin, uint64_t count, uint64_t *off_r,
                  uint64_t *len_r);

#endif
