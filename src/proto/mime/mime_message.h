#ifndef TANDEM_PROTO_MIME_MIME_MESSAGE_H
#define TANDEM_PROTO_MIME_MIME_MESSAGE_H

/*
 * The MIME module (src/proto/mime/, library tdm_proto_mime): parses a complete message held in
 * memory (RFC 5322, RFC 2045-2049, RFC 2231) into a tree of parts and builds what an IMAP
 * server needs from it. Sans-IO, and zero-copy for bodies: a part is a pair of offsets into
 * the caller's bytes, which are typically an LMDB value read in place.
 *
 *   mime_message.h   this file: the part tree, header field lookup, limits
 *   mime_imap.h      ENVELOPE, BODY, BODYSTRUCTURE text and IMAP string quoting
 *   mime_section.h   BODY[section], BINARY[section], BINARY.SIZE, <partial> ranges
 *   mime_decode.h    streaming base64 and quoted-printable decoders
 *   mime_charset.h   charset conversion to UTF-8 (iconv) and RFC 2047 encoded words
 *   mime_search.h    text of a message for SEARCH BODY/TEXT, UTF-8 case-insensitive match
 *   mime_date.h      the Date header (RFC 5322 with obsolete forms) for SENTBEFORE & co.
 *   mime_buf.h       the growable output buffer every writer appends to
 * (Address lists are parsed inside mime_envelope.c: ENVELOPE is their only user.)
 *
 * What an IMAP worker calls, after mime_message_parse() of the stored body:
 *   ENVELOPE                          mime_imap_envelope(msg, mime_message_root(msg), out)
 *   BODY, BODYSTRUCTURE               mime_imap_bodystructure(msg, root, extended, flags, out)
 *   BODY[sec]<p.n>, RFC822.HEADER,    mime_section_parse() (the IMAP parser supplies the
 *     RFC822.TEXT, BODY.PEEK          HEADER.FIELDS list), mime_section_fetch(), mime_partial()
 *   BINARY[p], BINARY.SIZE[p]         mime_binary_fetch() or mime_binary_source() + decoder to
 *                                     stream; mime_binary_size()
 *   SEARCH HEADER/FROM/TO/SUBJECT...  mime_search_header_text() + mime_utf8_icontains()
 *   SEARCH BODY, TEXT                 mime_search_body_text() (TEXT: header text as well)
 *   SEARCH SENTBEFORE/SENTON/SINCE    mime_date_parse() of the unfolded Date field
 * RFC822.SIZE is the stored size; nothing here is needed for it.
 *
 * Ownership: mime_message_parse() returns an owned struct mime_message; every part, string and
 * parameter it holds lives in the message's arena and dies with mime_message_free(). Offsets
 * refer to the bytes given to mime_message_parse(), which the caller keeps alive (and
 * unchanged) for as long as it uses the message or anything built from it.
 *
 * Tolerance: every byte string is a message. The parser never fails on content, only on
 * allocation (-ENOMEM). What it does with breakage:
 *   - LF-only line endings are accepted anywhere CRLF is; offsets and sizes are of the bytes
 *     as stored (messages delivered by LMTP are stored with CRLF).
 *   - A header ends at the first empty line, or at the first line that is neither a field
 *     ("name:", obsolete white space before the colon allowed) nor a continuation; such a line
 *     starts the body. 8-bit bytes in values are kept as they are.
 *   - Bytes before the first boundary (the preamble) and after the close delimiter (the
 *     epilogue) belong to no part. A missing close delimiter ends the last part at the end of
 *     its multipart (MIME_MSG_BROKEN).
 *   - A multipart with no boundary parameter, or in which no delimiter line is found, keeps
 *     its type and gets one empty text/plain part at the end of its body, so that every
 *     multipart has a part, as IMAP's grammar requires (MIME_MSG_BROKEN; Dovecot shows such
 *     a message the same way).
 *   - A part of type text without a charset parameter gets charset=us-ascii appended (RFC 2046
 *     4.1.2's default), as BODYSTRUCTURE shows it.
 *   - A message/rfc822 or message/global part is parsed as an embedded message unless its
 *     Content-Transfer-Encoding is base64 or quoted-printable (the bytes are then not a
 *     message); it is then a leaf.
 *   - An unparseable Content-Type gives text/plain; charset=us-ascii (the RFC 2045 default);
 *     in a multipart/digest the default is message/rfc822.
 *
 * Limits, and the defined result when one is hit (the parse still succeeds; the message's
 * flags say which limit was hit):
 *   - max_depth (default 100): an entity at that depth is not expanded: a multipart or message
 *     there becomes a leaf of type application/octet-stream with its bytes unchanged
 *     (MIME_MSG_LIMIT_DEPTH).
 *   - max_parts (default 10000, counting the root and every embedded message): once reached,
 *     the rest of the multipart being split is not turned into parts (it is like epilogue) and
 *     no further entity is expanded (MIME_MSG_LIMIT_PARTS).
 *   - max_header (default 256 KiB): a longer header still ends where it ends, so sections stay
 *     exact, but lookups, the Content-* parsing and HEADER.FIELDS see only its first
 *     max_header bytes: later fields are not seen, and a field running past the limit is cut
 *     there (MIME_MSG_LIMIT_HEADER).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_message;

/* A range of the message: data[off .. off + len). */
struct mime_span {
    size_t off;
    size_t len;
};

/* A string the parser built, NUL-terminated (s[len] == 0) but possibly holding NULs; s is NULL
 * when the field or parameter is absent. Lives in the message's arena. */
struct mime_str {
    const char *s;
    size_t len;
};

/* A Content-Type or Content-Disposition parameter. RFC 2231 continuations (name*0, name*1*…)
 * are joined into one parameter; when any section was extended (name*=charset'lang'…),
 * extended is true, value holds the percent-decoded bytes, and charset/language what the
 * first section named (empty when it named none). */
struct mime_param {
    struct mime_param *next;
    struct mime_str name; /* as written, without the RFC 2231 '*' and section number */
    struct mime_str value;
    bool extended;
    struct mime_str charset;
    struct mime_str language;
};

enum mime_encoding {
    MIME_ENC_7BIT = 0, /* also when the header is absent */
    MIME_ENC_8BIT,
    MIME_ENC_BINARY,
    MIME_ENC_BASE64,
    MIME_ENC_QP,
    MIME_ENC_UNKNOWN, /* encoding_name holds the token */
};

struct mime_part {
    struct mime_part *parent;   /* NULL for the root; for an embedded root, the message part */
    struct mime_part *next;     /* next sibling in a multipart */
    struct mime_part *children; /* multipart: first child */
    unsigned n_children;
    /* message/rfc822 and message/global: the embedded message's root, whose header is the
     * embedded header and whose body is the embedded body; NULL when not parsed as one. */
    struct mime_part *message;
    bool is_message; /* the root of the message or of an embedded message */
    unsigned depth;  /* 0 for the root */

    struct mime_span header; /* the header fields and the empty line that ends them, if any */
    struct mime_span body;   /* for a part of a multipart, without the line break before the
                                next delimiter (RFC 2046: that break belongs to the delimiter) */
    size_t header_seen;      /* bytes of the header that lookups see (max_header) */

    struct mime_str type;    /* lower case: "text", "multipart"… (defaults filled in) */
    struct mime_str subtype; /* lower case */
    struct mime_param *params;
    enum mime_encoding encoding;
    struct mime_str encoding_name; /* lower case token; NULL when the header is absent */
    struct mime_str id;            /* Content-ID, unfolded, trimmed */
    struct mime_str description;   /* Content-Description, unfolded, trimmed, not decoded */
    struct mime_str md5;           /* Content-MD5 */
    struct mime_str location;      /* Content-Location, unfolded, trimmed */
    struct mime_str disposition;   /* lower case token; NULL when absent */
    struct mime_param *disposition_params;
    struct mime_str *languages; /* Content-Language tags */
    unsigned n_languages;
};

struct mime_limits {
    unsigned max_depth;
    unsigned max_parts;
    size_t max_header;
};

#define MIME_DEFAULT_MAX_DEPTH 100
#define MIME_DEFAULT_MAX_PARTS 10000
#define MIME_DEFAULT_MAX_HEADER (256 * 1024)

/* What mime_message_flags() reports. */
#define MIME_MSG_BROKEN 0x1u      /* missing close delimiter, unusable multipart */
#define MIME_MSG_LIMIT_DEPTH 0x2u /* see the limits above */
#define MIME_MSG_LIMIT_PARTS 0x4u
#define MIME_MSG_LIMIT_HEADER 0x8u

/*
 * Parses data[0..len) (borrowed: it must outlive the message). limits may be NULL for the
 * defaults; a zero member also means its default. Returns 0 and an owned message in *msg_r,
 * or -ENOMEM.
 */
int mime_message_parse(const uint8_t *data, size_t len, const struct mime_limits *limits,
                       struct mime_message **msg_r);

/* Frees *msg and everything in its arena; sets *msg to NULL. NULL is fine. */
void mime_message_free(struct mime_message **msg);

/* The root part (never NULL), the bytes and length given to mime_message_parse(), the
 * MIME_MSG_* flags, and the number of parts (the root and embedded roots included). */
const struct mime_part *mime_message_root(const struct mime_message *msg);
const uint8_t *mime_message_data(const struct mime_message *msg);
size_t mime_message_size(const struct mime_message *msg);
unsigned mime_message_flags(const struct mime_message *msg);
unsigned mime_message_part_count(const struct mime_message *msg);

/* True when the part's type and subtype are these (ASCII case-insensitive; subtype NULL
 * matches any). */
bool mime_part_is(const struct mime_part *part, const char *type, const char *subtype);

/* The first parameter called name (ASCII case-insensitive) in a list, or NULL. */
const struct mime_param *mime_param_find(const struct mime_param *list, const char *name);

/*
 * One header field, as found in a header: name is the field name (without obsolete white
 * space before the colon), value the raw value after the colon up to but not including the
 * line break that ends the field (folds included), field the whole field including that line
 * break.
 */
struct mime_field {
    struct mime_span name;
    struct mime_span value;
    struct mime_span field;
};

/*
 * Iterates over the fields of a header span: start with *pos = 0; returns true and fills
 * *field_r while there is another field. Only the part's first header_seen bytes are looked
 * at (pass the part's header and header_seen); a field running past them is cut there.
 * data is the message.
 */
bool mime_header_next(const uint8_t *data, struct mime_span header, size_t seen, size_t *pos,
                      struct mime_field *field_r);

/* The first field called name (ASCII case-insensitive) in the part's header, or false. */
bool mime_header_find(const uint8_t *data, const struct mime_part *part, const char *name,
                      struct mime_field *field_r);

/*
 * Appends the value of a field unfolded (every line break that is followed by white space is
 * removed, RFC 5322 2.2.3) with leading and trailing white space trimmed. Returns the number
 * of bytes appended. out is a struct mime_buf (mime_buf.h).
 */
struct mime_buf;
size_t mime_header_unfold(const uint8_t *data, struct mime_span value, struct mime_buf *out);

#endif
