#ifndef TANDEM_PROTO_IMAP_IMAP_INT_H
#define TANDEM_PROTO_IMAP_IMAP_INT_H

/*
 * What the files of src/proto/imap share and nobody else may use: the grammar reader that
 * imap_grammar.c, imap_search.c and imap_fetch.c parse a complete command with, and the entry
 * points imap_parser.c calls.
 *
 * The reader walks the command exactly as the client sent it: lines and, after each "{n}"
 * CRLF, the literal's n bytes, except for APPEND messages, whose bytes were handed out and are
 * absent (streamed[] says where each one would begin). Every function returns false on the
 * first error, with r->err set to the BAD reason (static text) or r->enomem set; nothing is
 * freed on error because everything lives in the command's arena.
 */

#include "proto/imap/imap_command.h"
#include "proto/imap/imap_parser.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_arena;

enum imap__stop {
    IMAP__STOP_NONE = 0,
    IMAP__STOP_MESSAGE, /* the literal at r->stop is an APPEND message */
    IMAP__STOP_OTHER,   /* it is a string argument (mailbox, ...) */
};

struct imap__reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    const size_t *streamed; /* offsets where a streamed message's bytes would begin */
    size_t n_streamed;
    size_t next_streamed;
    size_t stop; /* prefix check: offset of the announced literal's '{' or '~' */
    enum imap__stop stopped;
    struct imap_command *cmd; /* the command being parsed (in a): after a prefix check, what
                               * was parsed before the stop */
    const struct imap_parser_limits *lim;
    struct imap_arena *a;
    unsigned items;
    unsigned depth;
    const char *err; /* the reason for BAD, response code included ("[LIMIT] ...") */
    bool enomem;
};

/* Primitives (imap_grammar.c). */
bool imap__fail(struct imap__reader *r, const char *why);
bool imap__nomem(struct imap__reader *r);
int imap__peek(const struct imap__reader *r);
bool imap__sp(struct imap__reader *r);
bool imap__at_sp(const struct imap__reader *r);
bool imap__char(struct imap__reader *r, char c, const char *why);
bool imap__count_item(struct imap__reader *r);
bool imap__enter(struct imap__reader *r);
void imap__leave(struct imap__reader *r);
/* A bare atom; *s_r points into the buffer (not NUL-terminated). */
bool imap__atom(struct imap__reader *r, const uint8_t **s_r, size_t *len_r, const char *why);
/* Whether the next bytes are the keyword kw (case-insensitive) followed by a non-atom char. */
bool imap__keyword(struct imap__reader *r, const char *kw);
bool imap__astring(struct imap__reader *r, const char **s_r, const char *why);
bool imap__string(struct imap__reader *r, const char **s_r, const char *why);
bool imap__nstring(struct imap__reader *r, const char **s_r, const char *why);
bool imap__number(struct imap__reader *r, uint64_t max, uint64_t *n_r, const char *why);
bool imap__nz_number(struct imap__reader *r, uint32_t *n_r, const char *why);
bool imap__seqset(struct imap__reader *r, bool allow_saved, struct imap_seqset *s_r);
bool imap__date(struct imap__reader *r, struct imap_date *d_r);
bool imap__flag(struct imap__reader *r, const char **f_r);
bool imap__flag_list(struct imap__reader *r, const char ***flags_r, size_t *n_r);
bool imap__end(struct imap__reader *r);
char *imap__upper(struct imap__reader *r, const uint8_t *s, size_t len);

/* One APPEND message after its SP (imap_grammar.c); the framer resumes its prefix check here
 * after the last message instead of parsing the whole command again. */
bool imap__append_message(struct imap__reader *r, struct imap_append_msg *m);

/* SEARCH (imap_search.c): "SEARCH" has been read; parses the rest of the arguments. */
bool imap__parse_search(struct imap__reader *r, struct imap_command *c);
/* FETCH (imap_fetch.c): "FETCH" has been read. */
bool imap__parse_fetch(struct imap__reader *r, struct imap_command *c);

/*
 * Parses the complete command in r (imap_grammar.c). On success *cmd_r is an owned command
 * (its arena is r->a, which it now owns). On failure returns false with r->err or r->enomem,
 * and *tag_r the tag if one was read (pointing into r->buf, *tag_len_r bytes) or NULL.
 * In a prefix check (r->stop set) it returns false with r->stopped set when it reached the
 * literal at r->stop.
 */
bool imap__parse_command(struct imap__reader *r, struct imap_command **cmd_r, const uint8_t **tag_r,
                         size_t *tag_len_r);

/* Character classes (RFC 9051 section 9), shared with the writer. */
bool imap__is_atom_char(uint8_t c);
bool imap__is_astring_char(uint8_t c);

#endif
