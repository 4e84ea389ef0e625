#ifndef TANDEM_PROTO_MIME_MIME_SEARCH_H
#define TANDEM_PROTO_MIME_MIME_SEARCH_H

/*
 * What SEARCH matches against (RFC 3501 6.4.4, RFC 9051 6.4.4): the text of a message in
 * UTF-8, and a case-insensitive substring match.
 *
 * Body text: every leaf of type text (attachments too: a text file is text), with its
 * Content-Transfer-Encoding undone and its charset converted (mime_charset.h); text/html with
 * tags, comments, <script> and <style> content removed and entities decoded (numeric ones,
 * the markup ones, and the accented letters and punctuation mail editors write as named
 * entities; an unknown name stays as written); a '<' not followed by a letter, '/' or '!' is
 * text; a tag is dropped without trace when it
 * is an inline one (a, b, i, u, em, strong, span, font, small, big, sub, sup, code, tt),
 * otherwise it becomes a space so that words on two sides of a <br> or </td> do not join.
 * An embedded message contributes its decoded header fields and its body text. Parts are
 * separated by a line break. Non-text leaves contribute nothing.
 *
 * Case folding is Unicode simple case folding (CaseFolding.txt status C and S, one code point
 * to one) for: ASCII; Latin-1 Supplement; Latin Extended-A; Latin Extended Additional
 * (U+1E00-U+1EFF, Vietnamese), with U+1E9E capital sharp s to U+00DF; Greek and Coptic
 * (final sigma to sigma, the symbol variants of beta, theta, phi, pi, kappa, rho, epsilon to
 * their letters); Cyrillic and Cyrillic Supplement; Armenian; full-width ASCII letters.
 * Not folded: ß to "ss" and other one-to-many (full) foldings, Turkic dotted/dotless i
 * (U+0130 stays as it is), anything outside those blocks. No normalisation: "é" precomposed
 * and "e" + U+0301 do not match. Invalid UTF-8 bytes fold to U+FFFD.
 */

#include "proto/mime/mime_buf.h"
#include "proto/mime/mime_message.h"

#include <stddef.h>
#include <stdint.h>

/* Appends the body text of part (normally the root; for the root, its body, not its header).
 * Returns 0 or -ENOMEM. */
int mime_search_body_text(const struct mime_message *msg, const struct mime_part *part,
                          struct mime_buf *out);

/*
 * Appends the header of part (a message root) decoded: for name NULL every field as
 * "Name: value\n", otherwise the value of every field called name, one per line. Values are
 * unfolded and RFC 2047-decoded. Returns 0 or -ENOMEM.
 */
int mime_search_header_text(const struct mime_message *msg, const struct mime_part *part,
                            const char *name, struct mime_buf *out);

/* Appends in[0..len) case-folded. Returns 0 or -ENOMEM. */
int mime_utf8_fold(const uint8_t *in, size_t len, struct mime_buf *out);

/* The simple case folding of one code point (see above). */
uint32_t mime_unicode_fold(uint32_t cp);

/* 1 when needle occurs in haystack ignoring case (both UTF-8), 0 when not, -ENOMEM. An empty
 * needle is found everywhere. */
int mime_utf8_icontains(const uint8_t *hay, size_t hay_len, const uint8_t *needle,
                        size_t needle_len);

#endif
