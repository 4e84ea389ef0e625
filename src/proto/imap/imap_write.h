#ifndef TANDEM_PROTO_IMAP_IMAP_WRITE_H
#define TANDEM_PROTO_IMAP_IMAP_WRITE_H

/*
 * The IMAP response writer, sans-IO: functions that append correctly encoded pieces of server
 * responses to a growable buffer the caller owns and sends. Each function picks the encoding
 * the grammar requires for the value: an astring is an atom when it can be, else a quoted
 * string, else a literal; a mailbox name is modified UTF-7 for IMAP4rev1 clients and UTF-8 for
 * clients that enabled IMAP4rev2 or UTF8=ACCEPT (enum imap_write_mode).
 *
 * Errors are sticky: the first allocation failure sets b->error to -ENOMEM and every later
 * append does nothing, so a caller writes a whole response and checks once
 * (imap_buf_error()). Strings are given as (pointer, length) where they may come from the
 * store, or as C strings where they are the server's own.
 */

#include "proto/imap/imap_command.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_buf {
    char *data; /* owned; data[len] is always NUL when data is not NULL */
    size_t len, cap;
    int error; /* 0 or -ENOMEM, sticky */
};

/* How strings may be sent: rev1 clients get 7-bit text (8-bit goes in a literal, mailbox
 * names in modified UTF-7); UTF-8 clients (IMAP4rev2, UTF8=ACCEPT) get UTF-8 quoted strings. */
enum imap_write_mode {
    IMAP_WRITE_REV1 = 0,
    IMAP_WRITE_UTF8 = 1,
};

#define IMAP_BUF_INIT                                                                              \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* Frees the buffer's memory and empties it. */
void imap_buf_free(struct imap_buf *b);
/* Empties it but keeps the memory (and clears a sticky error). */
void imap_buf_clear(struct imap_buf *b);
int imap_buf_error(const struct imap_buf *b);

void imap_buf_append(struct imap_buf *b, const void *data, size_t len);
void imap_buf_puts(struct imap_buf *b, const char *s);
void imap_buf_printf(struct imap_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A literal: "{n}" CRLF and the bytes (RFC 9051 literal; the client never waits for "+"). */
void imap_write_literal(struct imap_buf *b, const char *s, size_t len);
/* A literal8: "~{n}" CRLF and the bytes (RFC 3516), for FETCH BINARY content that holds NUL. */
void imap_write_literal8(struct imap_buf *b, const char *s, size_t len);
/* A string: quoted when it can be (no CR, LF or NUL; 8-bit only in UTF-8 mode; short enough),
 * else a literal. */
void imap_write_string(struct imap_buf *b, const char *s, size_t len, enum imap_write_mode mode);
/* An astring: an atom when every byte is ASTRING-CHAR and it is not "NIL" (which a reader
 * could take for the nil), else as imap_write_string. */
void imap_write_astring(struct imap_buf *b, const char *s, size_t len, enum imap_write_mode mode);
/* An nstring: NIL for s == NULL, else a string. */
void imap_write_nstring(struct imap_buf *b, const char *s, size_t len, enum imap_write_mode mode);
/* A mailbox name held as UTF-8: modified UTF-7 in REV1 mode, then an astring. A name that is
 * not valid UTF-8 is written as it is (the store should never hold one). */
void imap_write_mailbox(struct imap_buf *b, const char *utf8, size_t len,
                        enum imap_write_mode mode);
/* "(" flag *(SP flag) ")"; flags are written as they are (they are atoms by construction). */
void imap_write_flag_list(struct imap_buf *b, const char *const *flags, size_t n);
/* A sequence set for uids[0..n) (ascending order compresses best: runs become "a:b"; any order
 * is still correct). Writes nothing for n == 0: callers decide what an empty set means. */
void imap_write_uid_set(struct imap_buf *b, const uint32_t *uids, size_t n);
/* A parsed sequence set as the client could have written it ("$", "*", "lo:hi"). */
void imap_write_seqset(struct imap_buf *b, const struct imap_seqset *set);

/* "* ESEARCH (TAG "tag") [UID] [MIN n] [MAX n] [COUNT n] [ALL set] [MODSEQ m]" CRLF (RFC 4731):
 * the items asked for in returns; MIN, MAX and ALL are left out when nothing matched (n == 0),
 * COUNT never is. ids must be ascending. tag may be NULL (an unsolicited ESEARCH has none).
 * modseq: the MODSEQ item (RFC 4731 3.2, a search with the MODSEQ key), 0 for none (RFC 7162
 * mod-sequences start at 1). */
void imap_write_esearch(struct imap_buf *b, const char *tag, bool uid, unsigned returns,
                        const uint32_t *ids, size_t n, uint64_t modseq);

/* "* VANISHED [(EARLIER)] set" CRLF (RFC 7162 QRESYNC) for uids[0..n) (ascending compresses);
 * nothing for n == 0, which has no valid form. */
void imap_write_vanished(struct imap_buf *b, bool earlier, const uint32_t *uids, size_t n);

/* "* LIST (attrs) "delim" mailbox" CRLF (or LSUB when lsub); delim 0 means NIL. child_info:
 * add the RFC 5258 extended item ("CHILDINFO" ("SUBSCRIBED")); old_name: "OLDNAME" (RFC 9051)
 * or NULL. */
void imap_write_list(struct imap_buf *b, bool lsub, const char *const *attrs, size_t n_attrs,
                     char delim, const char *utf8_name, bool child_info, const char *old_name,
                     enum imap_write_mode mode);

/* STATUS values, present per bit of items (enum imap_status_item). */
struct imap_status_values {
    unsigned items;
    uint32_t messages, recent, uidnext, uidvalidity, unseen, deleted;
    uint64_t size, highestmodseq, appendlimit, deleted_storage;
};
/* "* STATUS mailbox (ITEM n ...)" CRLF, items in the order of enum imap_status_item. */
void imap_write_status(struct imap_buf *b, const char *utf8_name,
                       const struct imap_status_values *v, enum imap_write_mode mode);

/* "tag OK|NO|BAD [code] text" CRLF; tag NULL means "*"; code may be NULL. */
void imap_write_status_response(struct imap_buf *b, const char *tag, const char *status,
                                const char *code, const char *text);

/* A date-time in quotes ("dd-Mon-yyyy hh:mm:ss +zzzz"), for INTERNALDATE; nothing written and
 * b->error set to -EINVAL when t cannot be written (year outside 0..9999). */
void imap_write_date_time(struct imap_buf *b, int64_t t, int zone_minutes);

#endif
