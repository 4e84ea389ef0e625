#ifndef TANDEM_PROTO_MIME_MIME_CHARSET_H
#define TANDEM_PROTO_MIME_MIME_CHARSET_H

/*
 * Text to UTF-8, for SEARCH: charset conversion through glibc's iconv, and RFC 2047
 * encoded-word decoding of header values (with RFC 2231's language suffix "=?utf-8*en?...").
 *
 * Nothing here fails on content. The fallbacks, chosen so that a search still finds the ASCII
 * text of a message whatever its labels say:
 *   - an unknown or unusable charset name: the bytes are kept when they are valid UTF-8,
 *     otherwise converted as windows-1252;
 *   - us-ascii, utf-8 and unlabelled 8-bit header text: kept when valid UTF-8, otherwise
 *     converted as windows-1252 (raw 8-bit headers are UTF-8 or a Latin charset in practice);
 *   - iso-8859-1 is converted as windows-1252, its superset that mailers mislabel as it (as
 *     the WHATWG encoding standard does), gb2312 as GB18030 and ks_c_5601-1987 as CP949;
 *   - a byte sequence the charset does not define becomes U+FFFD.
 * Charset names longer than 64 bytes or holding anything but letters, digits and "-_.:+()"
 * are unknown (so a name can never carry iconv options such as "//TRANSLIT").
 */

#include "proto/mime/mime_buf.h"
#include "proto/mime/mime_message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when in[0..len) is valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
bool mime_utf8_valid(const uint8_t *in, size_t len);

/*
 * Appends in[0..len), in the named charset, as UTF-8. Returns 0 when every byte converted,
 * 1 when a fallback or U+FFFD was needed, -ENOMEM.
 */
int mime_charset_to_utf8(const char *charset, size_t charset_len, const uint8_t *in, size_t len,
                         struct mime_buf *out);

/*
 * Appends a header value (already unfolded) with its encoded words decoded to UTF-8: white
 * space between two encoded words is dropped (RFC 2047 6.2), adjacent words in the same
 * charset are converted together (so a character split across words survives), an encoded
 * word that does not parse is kept as text. Returns 0 or -ENOMEM.
 */
int mime_header_decode_utf8(const uint8_t *in, size_t len, struct mime_buf *out);

/*
 * Appends a Content-Type or Content-Disposition parameter's value as UTF-8: an RFC 2231 value
 * converted from its charset; a plain value with RFC 2047 encoded words decoded (RFC 2047
 * forbids them there, but mailers put filenames that way and every reader accepts it).
 * Returns 0 or -ENOMEM.
 */
int mime_param_utf8(const struct mime_param *p, struct mime_buf *out);

#endif
