/*
 * The IMAP response writer (see imap_write.h). Encoding choices follow RFC 9051 section 4.3:
 * a quoted string may not hold CR, LF or NUL, and in IMAP4rev1 only 7-bit text; anything else
 * goes in a literal. Quoted strings longer than QUOTED_MAX also go in a literal, because some
 * clients have fixed line buffers and a literal is cheaper for them to read.
 */
#include "proto/imap/imap_write.h"

#include "proto/imap/imap_date.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_mutf7.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUOTED_MAX 1024

void
imap_buf_free(struct imap_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->error = 0;
}

void
imap_buf_clear(struct imap_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
    b->error = 0;
}

int
imap_buf_error(const struct imap_buf *b)
{
    return b->error;
}

static bool
reserve(struct imap_buf *b, size_t more)
{
    if (b->error)
        return false;
    if (b->cap - b->len > more)
        return true;
    if (more > SIZE_MAX / 4 - b->len) {
        b->error = -ENOMEM;
        return false;
    }
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap - b->len <= more)
        ncap *= 2;
    char *nd = realloc(b->data, ncap);
    if (!nd) {
        b->error = -ENOMEM;
        return false;
    }
    b->data = nd;
    b->cap = ncap;
    return true;
}

void
imap_buf_append(struct imap_buf *b, const void *data, size_t len)
{
    if (!reserve(b, len))
        return;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void
imap_buf_puts(struct imap_buf *b, const char *s)
{
    imap_buf_append(b, s, strlen(s));
}

void
imap_buf_printf(struct imap_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void
imap_write_literal(struct imap_buf *b, const char *s, size_t len)
{
    imap_buf_printf(b, "{%zu}\r\n", len);
    imap_buf_append(b, s, len);
}

void
imap_write_literal8(struct imap_buf *b, const char *s, size_t len)
{
    imap_buf_printf(b, "~{%zu}\r\n", len);
    imap_buf_append(b, s, len);
}

static bool
quotable(const char *s, size_t len, enum imap_write_mode mode)
{
    if (len > QUOTED_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0 || c == '\r' || c == '\n' || (c >= 0x80 && mode != IMAP_WRITE_UTF8))
            return false;
    }
    return true;
}

void
imap_write_string(struct imap_buf *b, const char *s, size_t len, enum imap_write_mode mode)
{
    if (!quotable(s, len, mode)) {
        imap_write_literal(b, s, len);
        return;
    }
    imap_buf_append(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '"' || s[i] == '\\') {
            imap_buf_append(b, s + start, i - start);
            imap_buf_append(b, "\\", 1);
            start = i;
        }
    imap_buf_append(b, s + start, len - start);
    imap_buf_append(b, "\"", 1);
}

void
imap_write_astring(struct imap_buf *b, const char *s, size_t len, enum imap_write_mode mode)
{
    bool atom = len > 0 && !(len == 3 && strncasecmp(s, "NIL", 3) == 0);
    for (size_t i = 0; i < len && atom; i++)
        atom = imap__is_astring_char((uint8_t)s[i]) && (unsigned char)s[i] < 0x80;
    if (atom)
        imap_buf_append(b, s, len);
    else
        imap_write_string(b, s, len, mode);
}

void
imap_write_nstring(struct imap_buf *b, const char *s, size_t len, enum imap_write_mode mode)
{
    if (!s)
        imap_buf_puts(b, "NIL");
    else
        imap_write_string(b, s, len, mode);
}

void
imap_write_mailbox(struct imap_buf *b, const char *utf8, size_t len, enum imap_write_mode mode)
{
    if (mode == IMAP_WRITE_UTF8) {
        imap_write_astring(b, utf8, len, mode);
        return;
    }
    struct imap_buf enc = IMAP_BUF_INIT;
    int r = imap_mutf7_encode(utf8, len, &enc);
    if (r == 0)
        imap_write_astring(b, enc.data ? enc.data : "", enc.len, mode);
    else if (r == -ENOMEM)
        b->error = -ENOMEM;
    else
        imap_write_astring(b, utf8, len, mode);
    imap_buf_free(&enc);
}

void
imap_write_flag_list(struct imap_buf *b, const char *const *flags, size_t n)
{
    imap_buf_append(b, "(", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            imap_buf_append(b, " ", 1);
        imap_buf_puts(b, flags[i]);
    }
    imap_buf_append(b, ")", 1);
}

void
imap_write_uid_set(struct imap_buf *b, const uint32_t *uids, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && uids[j] != UINT32_MAX && uids[j + 1] == uids[j] + 1)
            j++;
        if (i)
            imap_buf_append(b, ",", 1);
        if (j == i)
            imap_buf_printf(b, "%" PRIu32, uids[i]);
        else
            imap_buf_printf(b, "%" PRIu32 ":%" PRIu32, uids[i], uids[j]);
        i = j + 1;
    }
}

static void
seq_number(struct imap_buf *b, uint32_t n)
{
    if (n == IMAP_SEQ_STAR)
        imap_buf_append(b, "*", 1);
    else
        imap_buf_printf(b, "%" PRIu32, n);
}

void
imap_write_seqset(struct imap_buf *b, const struct imap_seqset *set)
{
    if (set->saved) {
        imap_buf_append(b, "$", 1);
        return;
    }
    for (size_t i = 0; i < set->n; i++) {
        if (i)
            imap_buf_append(b, ",", 1);
        seq_number(b, set->r[i].lo);
        if (set->r[i].hi != set->r[i].lo) {
            imap_buf_append(b, ":", 1);
            seq_number(b, set->r[i].hi);
        }
    }
}

void
imap_write_esearch(struct imap_buf *b, const char *tag, bool uid, unsigned returns,
                   const uint32_t *ids, size_t n, uint64_t modseq)
{
    imap_buf_puts(b, "* ESEARCH");
    if (tag) {
        imap_buf_puts(b, " (TAG ");
        imap_write_string(b, tag, strlen(tag), IMAP_WRITE_REV1);
        imap_buf_puts(b, ")");
    }
    if (uid)
        imap_buf_puts(b, " UID");
    if ((returns & IMAP_SEARCH_RETURN_MIN) && n)
        imap_buf_printf(b, " MIN %" PRIu32, ids[0]);
    if ((returns & IMAP_SEARCH_RETURN_MAX) && n)
        imap_buf_printf(b, " MAX %" PRIu32, ids[n - 1]);
    if (returns & IMAP_SEARCH_RETURN_COUNT)
        imap_buf_printf(b, " COUNT %zu", n);
    if ((returns & IMAP_SEARCH_RETURN_ALL) && n) {
        imap_buf_puts(b, " ALL ");
        imap_write_uid_set(b, ids, n);
    }
    if (modseq)
        imap_buf_printf(b, " MODSEQ %" PRIu64, modseq);
    imap_buf_puts(b, "\r\n");
}

void
imap_write_vanished(struct imap_buf *b, bool earlier, const uint32_t *uids, size_t n)
{
    if (n == 0)
        return;
    imap_buf_puts(b, earlier ? "* VANISHED (EARLIER) " : "* VANISHED ");
    imap_write_uid_set(b, uids, n);
    imap_buf_puts(b, "\r\n");
}

void
imap_write_list(struct imap_buf *b, bool lsub, const char *const *attrs, size_t n_attrs, char delim,
                const char *utf8_name, bool child_info, const char *old_name,
                enum imap_write_mode mode)
{
    imap_buf_puts(b, lsub ? "* LSUB " : "* LIST ");
    imap_write_flag_list(b, attrs, n_attrs);
    if (!delim)
        imap_buf_puts(b, " NIL ");
    else if (delim == '"' || delim == '\\')
        imap_buf_printf(b, " \"\\%c\" ", delim);
    else
        imap_buf_printf(b, " \"%c\" ", delim);
    imap_write_mailbox(b, utf8_name, strlen(utf8_name), mode);
    if (child_info || old_name) {
        imap_buf_puts(b, " (");
        if (child_info)
            imap_buf_puts(b, "\"CHILDINFO\" (\"SUBSCRIBED\")");
        if (old_name) {
            imap_buf_puts(b, child_info ? " \"OLDNAME\" (" : "\"OLDNAME\" (");
            imap_write_mailbox(b, old_name, strlen(old_name), mode);
            imap_buf_puts(b, ")");
        }
        imap_buf_puts(b, ")");
    }
    imap_buf_puts(b, "\r\n");
}

void
imap_write_status(struct imap_buf *b, const char *utf8_name, const struct imap_status_values *v,
                  enum imap_write_mode mode)
{
    static const char *const names[IMAP_STATUS_ITEM_COUNT] = {
        "MESSAGES", "RECENT", "UIDNEXT",       "UIDVALIDITY", "UNSEEN",
        "DELETED",  "SIZE",   "HIGHESTMODSEQ", "APPENDLIMIT", "DELETED-STORAGE"};
    const uint64_t values[IMAP_STATUS_ITEM_COUNT] = {
        v->messages, v->recent, v->uidnext,       v->uidvalidity, v->unseen,
        v->deleted,  v->size,   v->highestmodseq, v->appendlimit, v->deleted_storage};
    imap_buf_puts(b, "* STATUS ");
    imap_write_mailbox(b, utf8_name, strlen(utf8_name), mode);
    imap_buf_puts(b, " (");
    bool first = true;
    for (int i = 0; i < IMAP_STATUS_ITEM_COUNT; i++)
        if (v->items & (1u << i)) {
            imap_buf_printf(b, "%s%s %" PRIu64, first ? "" : " ", names[i], values[i]);
            first = false;
        }
    imap_buf_puts(b, ")\r\n");
}

void
imap_write_status_response(struct imap_buf *b, const char *tag, const char *status,
                           const char *code, const char *text)
{
    imap_buf_printf(b, "%s %s ", tag ? tag : "*", status);
    if (code)
        imap_buf_printf(b, "[%s] ", code);
    imap_buf_printf(b, "%s\r\n", text);
}

void
imap_write_date_time(struct imap_buf *b, int64_t t, int zone_minutes)
{
    char s[IMAP_DATE_TIME_LEN + 1];
    if (!imap_date_time_format(t, zone_minutes, s)) {
        if (!b->error)
            b->error = -EINVAL;
        return;
    }
    imap_buf_printf(b, "\"%s\"", s);
}
