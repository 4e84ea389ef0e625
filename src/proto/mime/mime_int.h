#ifndef TANDEM_PROTO_MIME_MIME_INT_H
#define TANDEM_PROTO_MIME_MIME_INT_H

/* What only the files of src/proto/mime/ share. */

#include "proto/mime/mime_buf.h"
#include "proto/mime/mime_message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A bump allocator: everything a parsed message holds is freed at once with the message. */
struct mime_arena_chunk;
struct mime_arena {
    struct mime_arena_chunk *chunks;
    uint8_t *cur;
    size_t left;
};

/* Zeroed memory, or NULL on allocation failure. */
void *mime__alloc(struct mime_arena *a, size_t size);
/* A NUL-terminated copy of p[0..len) in *out (out->s NULL on failure): returns 0 or -ENOMEM. */
int mime__strdup(struct mime_arena *a, const void *p, size_t len, struct mime_str *out);
void mime__arena_free(struct mime_arena *a);

/* ASCII helpers (locale-independent on purpose: header syntax is ASCII). */
static inline uint8_t
mime__lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}
static inline uint8_t
mime__upper(uint8_t c)
{
    return (c >= 'a' && c <= 'z') ? (uint8_t)(c - 32) : c;
}
static inline bool
mime__is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}
bool mime__ieq(const void *a, size_t alen, const char *b);
int mime__hexval(uint8_t c);

/*
 * A lexer over an unfolded structured header value (RFC 5322 3.2 / RFC 2045 5.1), tolerant:
 * an unterminated comment or quoted string ends at the end of the value.
 */
struct mime_lex {
    const uint8_t *p;
    const uint8_t *end;
};

/* Skips white space, CR, LF and comments. When comment is not NULL, the text of the last
 * comment skipped replaces its content. */
void mime__lex_cfws(struct mime_lex *lx, struct mime_buf *comment);

enum mime_word { MIME_WORD_NONE = 0, MIME_WORD_ATOM, MIME_WORD_QUOTED };

/*
 * Reads one atom (a run of bytes that are not white space, controls or in specials; 8-bit
 * bytes count as atom text) or quoted string (unescaped) and appends it to out. Skips no
 * CFWS. Returns which it read, MIME_WORD_NONE when neither starts here.
 */
enum mime_word mime__lex_word(struct mime_lex *lx, const char *specials, struct mime_buf *out);

/* RFC 2045 tspecials, and RFC 5322 specials without '.', which obs-phrase (4.1) allows in
 * display names ("John Q. Public") and dot-atoms hold anyway. */
#define MIME_TSPECIALS "()<>@,;:\\\"/[]?="
#define MIME_PHRASE_SPECIALS "()<>[]:;@\\,\""

/* Content-Type / Content-Disposition / Content-Language parsing (mime_params.c). */
int mime__parse_content_type(struct mime_arena *a, const uint8_t *v, size_t len,
                             struct mime_str *type, struct mime_str *subtype,
                             struct mime_param **params);
int mime__parse_disposition(struct mime_arena *a, const uint8_t *v, size_t len,
                            struct mime_str *disp, struct mime_param **params);
int mime__parse_languages(struct mime_arena *a, const uint8_t *v, size_t len,
                          struct mime_str **langs, unsigned *n);

/* Lines of a span as IMAP counts them: line breaks, plus one for a last line without one. */
size_t mime__count_lines(const uint8_t *data, struct mime_span s);

#endif
