/*
 * Payload layouts of the mail model's log records (enum tdm_record_type 16..51). These bytes
 * are written to the log, shipped to every copy and replayed after a crash, so they are an
 * on-disk and on-wire format: any change needs a new MAIL__CODEC_VERSION. docs/formats/log.md
 * says the same for operators.
 *
 * All integers are little-endian and unaligned. Every payload starts with one byte, the
 * format version (1). The building blocks are:
 *
 *   str    u16 length n (bytes, without the NUL), n bytes, one 0x00 byte.
 *          The trailing NUL lets the decoder hand out pointers into the payload as C strings
 *          without copying; the decoder checks that it is there and that the n bytes hold no
 *          NUL. Mailbox and folder names are 1..MAIL_NAME_MAX bytes without control
 *          characters; folder names have no empty hierarchy level ("/a", "a/", "a//b") and a
 *          first level spelled any case of "inbox" must be exactly "INBOX". Keywords are
 *          1..MAIL_KEYWORD_MAX IMAP atom characters (no "\", so no system flag).
 *   bool   u8, 0 or 1.
 *   uids   u32 count (1..MAIL_MAX_UIDS), then count u32 UIDs, each >= 1, strictly ascending.
 *   kws    u8 count (0..MAIL_MAX_KEYWORDS), then count strs.
 *
 * After the version byte, per record type:
 *
 *   MAILBOX_CREATE     str mailbox, u64 quota_bytes, u64 quota_messages, u32 uidvalidity (>= 1)
 *   MAILBOX_DELETE     str mailbox
 *   MAILBOX_SET_QUOTA  str mailbox, u64 quota_bytes, u64 quota_messages
 *   FOLDER_CREATE      str mailbox, str folder, u32 special_use (enum mail_special_use bits)
 *   FOLDER_RENAME      str mailbox, str folder, str new_folder
 *   FOLDER_DELETE      str mailbox, str folder
 *   FOLDER_SUBSCRIBE   str mailbox, str folder, bool subscribed
 *   FOLDER_RECENT      str mailbox, str folder, u32 uid_limit (>= 1)
 *   MESSAGE_APPEND     u16 target count (1..MAIL_MAX_TARGETS), per target: str mailbox,
 *                      str folder; then 16-byte GUID, i64 internal date (two's complement),
 *                      u32 flags (enum mail_flag bits), kws, u32 body length n, n body bytes;
 *                      then, only when some target has a delivery id, target count times 16
 *                      bytes: each target's delivery id, all zero for a target without one
 *                      (a block of only zeros is refused: one encoding). Added within version
 *                      1: every record written before reads the same, and a decoder that
 *                      predates it refuses such a record (trailing bytes) instead of
 *                      delivering it twice.
 *   MESSAGE_FLAGS      str mailbox, str folder, u8 mode, u32 flags, kws, uids. mode is enum
 *                      mail_flag_mode, plus MAIL__FLAGS_CONDITIONAL (0x80) when the record has
 *                      an unchanged_since: then u64 unchanged_since (>= 1) follows the flags.
 *                      Added within version 1: every record written before reads the same, and
 *                      a decoder that predates it refuses a conditional one instead of
 *                      misreading it.
 *   MESSAGE_EXPUNGE    str mailbox, str folder, uids, where the count's top bit
 *                      (MAIL__EXPUNGE_DELETED_ONLY, 0x80000000) says deleted_only: expunge
 *                      only the named messages that still have \Deleted. Added within
 *                      version 1 like MESSAGE_FLAGS's 0x80: no count reaches that bit, so
 *                      every record written before reads the same and an older decoder
 *                      refuses such a record (count above MAIL_MAX_UIDS).
 *   MESSAGE_COPY       str mailbox, str folder (source), str new_folder (destination),
 *                      bool move, uids
 *
 * The payload must end exactly after the last field. The layout is canonical (no padding, no
 * optional fields but APPEND's delivery ids, booleans only 0/1), so decoding and re-encoding gives
 * back the same bytes; fuzz/mail_record.c checks that.
 */
#include "store/log_codec.h"
#include "store/mail_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool
mail_is_mail_record(uint16_t type)
{
    switch (type) {
    case TDM_REC_MAILBOX_CREATE:
    case TDM_REC_MAILBOX_DELETE:
    case TDM_REC_MAILBOX_SET_QUOTA:
    case TDM_REC_FOLDER_CREATE:
    case TDM_REC_FOLDER_RENAME:
    case TDM_REC_FOLDER_DELETE:
    case TDM_REC_FOLDER_SUBSCRIBE:
    case TDM_REC_FOLDER_RECENT:
    case TDM_REC_MESSAGE_APPEND:
    case TDM_REC_MESSAGE_FLAGS:
    case TDM_REC_MESSAGE_EXPUNGE:
    case TDM_REC_MESSAGE_COPY:
        return true;
    default:
        return false;
    }
}

bool
mail__is_inbox(const char *name, size_t len)
{
    return len == MAIL__INBOX_LEN && memcmp(name, MAIL__INBOX, MAIL__INBOX_LEN) == 0;
}

/* ---- Validation, shared by encoder, decoder and apply ---- */

/* Static messages per field, so *error_r names the field without formatting. */
struct name_errors {
    const char *missing;
    const char *empty;
    const char *too_long;
    const char *bad_byte;
    const char *bad_level;
    const char *bad_inbox;
};

static const struct name_errors mailbox_errors = {
    "mailbox: missing",
    "mailbox: empty name",
    "mailbox: name longer than MAIL_NAME_MAX",
    "mailbox: control character in name",
    NULL,
    NULL,
};
static const struct name_errors folder_errors = {
    "folder: missing",
    "folder: empty name",
    "folder: name longer than MAIL_NAME_MAX",
    "folder: control character in name",
    "folder: empty hierarchy level",
    "folder: INBOX must be spelled in upper case",
};
static const struct name_errors new_folder_errors = {
    "new_folder: missing",
    "new_folder: empty name",
    "new_folder: name longer than MAIL_NAME_MAX",
    "new_folder: control character in name",
    "new_folder: empty hierarchy level",
    "new_folder: INBOX must be spelled in upper case",
};

static int
check_name(const char *name, bool is_folder, const struct name_errors *errs, const char **error_r)
{
    if (name == NULL) {
        *error_r = errs->missing;
        return TDM_EINVAL;
    }
    /* strnlen bounds the scan: an unterminated or huge string must not be walked to its end. */
    size_t len = strnlen(name, MAIL_NAME_MAX + 1);
    if (len == 0) {
        *error_r = errs->empty;
        return TDM_EINVAL;
    }
    if (len > MAIL_NAME_MAX) {
        *error_r = errs->too_long;
        return TDM_ELIMIT;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) {
            *error_r = errs->bad_byte;
            return TDM_EINVAL;
        }
    }
    if (!is_folder)
        return 0;
    if (name[0] == MAIL_HIER_SEP || name[len - 1] == MAIL_HIER_SEP ||
        memmem(name, len, "//", 2) != NULL) {
        *error_r = errs->bad_level;
        return TDM_EINVAL;
    }
    /* IMAP treats INBOX case-insensitively; storing one spelling keeps "inbox" from becoming a
     * second folder beside INBOX. */
    const char *sep = memchr(name, MAIL_HIER_SEP, len);
    size_t first = sep != NULL ? (size_t)(sep - name) : len;
    if (first == MAIL__INBOX_LEN && strncasecmp(name, MAIL__INBOX, MAIL__INBOX_LEN) == 0 &&
        memcmp(name, MAIL__INBOX, MAIL__INBOX_LEN) != 0) {
        *error_r = errs->bad_inbox;
        return TDM_EINVAL;
    }
    return 0;
}

static bool
keyword_byte_ok(unsigned char c)
{
    /* IMAP atom characters (RFC 3501 ATOM-CHAR minus "]" which resp-specials excludes too). */
    return c > 0x20 && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

static int
check_keywords(const char *const *kws, size_t n, const char **error_r)
{
    if (n > MAIL_MAX_KEYWORDS) {
        *error_r = "keywords: more than MAIL_MAX_KEYWORDS";
        return TDM_ELIMIT;
    }
    if (n > 0 && kws == NULL) {
        *error_r = "keywords: missing";
        return TDM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (kws[i] == NULL) {
            *error_r = "keywords: missing";
            return TDM_EINVAL;
        }
        size_t len = strnlen(kws[i], MAIL_KEYWORD_MAX + 1);
        if (len == 0) {
            *error_r = "keywords: empty keyword";
            return TDM_EINVAL;
        }
        if (len > MAIL_KEYWORD_MAX) {
            *error_r = "keywords: keyword longer than MAIL_KEYWORD_MAX";
            return TDM_ELIMIT;
        }
        for (size_t j = 0; j < len; j++) {
            if (!keyword_byte_ok((unsigned char)kws[i][j])) {
                *error_r = "keywords: character not allowed in an IMAP atom";
                return TDM_EINVAL;
            }
        }
    }
    return 0;
}

static int
check_uids(const uint32_t *uids, size_t n, const char **error_r)
{
    if (n == 0 || uids == NULL) {
        *error_r = "uids: none given";
        return TDM_EINVAL;
    }
    if (n > MAIL_MAX_UIDS) {
        *error_r = "uids: more than MAIL_MAX_UIDS";
        return TDM_ELIMIT;
    }
    /* Ascending order makes copy's new UIDs follow the source order and rules out repeats. */
    for (size_t i = 0; i < n; i++) {
        if (uids[i] == 0 || (i > 0 && uids[i] <= uids[i - 1])) {
            *error_r = "uids: not strictly ascending non-zero UIDs";
            return TDM_EINVAL;
        }
    }
    return 0;
}

static bool
id_is_zero(const uint8_t *id)
{
    static const uint8_t zero[MAIL_DELIVERY_ID_LEN];
    return memcmp(id, zero, MAIL_DELIVERY_ID_LEN) == 0;
}

static bool
has_delivery_ids(const struct mail_op *op)
{
    if (op->delivery_ids == NULL)
        return false;
    for (size_t i = 0; i < op->n_targets; i++)
        if (op->delivery_ids[i] != NULL)
            return true;
    return false;
}

int
mail__op_validate(const struct mail_op *op, const char **error_r)
{
    int rc;

    if (!mail_is_mail_record(op->type)) {
        *error_r = "type: not a mail record type";
        return TDM_EINVAL;
    }
    if (op->type == TDM_REC_MESSAGE_APPEND) {
        if (op->n_targets == 0 || op->targets == NULL) {
            *error_r = "targets: none given";
            return TDM_EINVAL;
        }
        if (op->n_targets > MAIL_MAX_TARGETS) {
            *error_r = "targets: more than MAIL_MAX_TARGETS";
            return TDM_ELIMIT;
        }
        for (size_t i = 0; i < op->n_targets; i++) {
            if ((rc = check_name(op->targets[i].mailbox, false, &mailbox_errors, error_r)) != 0 ||
                (rc = check_name(op->targets[i].folder, true, &folder_errors, error_r)) != 0)
                return rc;
            if (op->delivery_ids != NULL && op->delivery_ids[i] != NULL &&
                id_is_zero(op->delivery_ids[i])) {
                *error_r = "delivery_id: all zero";
                return TDM_EINVAL;
            }
        }
        if ((op->flags & ~(uint32_t)MAIL_FLAG_ALL) != 0) {
            *error_r = "flags: unknown flag bits";
            return TDM_EINVAL;
        }
        if ((rc = check_keywords(op->keywords, op->n_keywords, error_r)) != 0)
            return rc;
        if (op->body_len > TDM_LOG_MAX_PAYLOAD) {
            *error_r = "body: larger than the largest log payload";
            return TDM_ELIMIT;
        }
        if (op->body_len > 0 && op->body == NULL) {
            *error_r = "body: missing";
            return TDM_EINVAL;
        }
        return 0;
    }

    if ((rc = check_name(op->mailbox, false, &mailbox_errors, error_r)) != 0)
        return rc;
    switch (op->type) {
    case TDM_REC_MAILBOX_CREATE:
        if (op->uidvalidity == 0) {
            *error_r = "uidvalidity: must be at least 1";
            return TDM_EINVAL;
        }
        return 0;
    case TDM_REC_MAILBOX_DELETE:
    case TDM_REC_MAILBOX_SET_QUOTA:
        return 0;
    default:
        break;
    }

    if ((rc = check_name(op->folder, true, &folder_errors, error_r)) != 0)
        return rc;
    switch (op->type) {
    case TDM_REC_FOLDER_CREATE:
        if ((op->special_use & ~MAIL__SPECIAL_USE_ALL) != 0) {
            *error_r = "special_use: unknown attribute bits";
            return TDM_EINVAL;
        }
        return 0;
    case TDM_REC_FOLDER_RENAME:
        return check_name(op->new_folder, true, &new_folder_errors, error_r);
    case TDM_REC_FOLDER_DELETE:
    case TDM_REC_FOLDER_SUBSCRIBE:
        return 0;
    case TDM_REC_FOLDER_RECENT:
        if (op->uid_limit == 0) {
            *error_r = "uid_limit: must be at least 1";
            return TDM_EINVAL;
        }
        return 0;
    case TDM_REC_MESSAGE_FLAGS:
        if (op->flag_mode != MAIL_FLAGS_REPLACE && op->flag_mode != MAIL_FLAGS_ADD &&
            op->flag_mode != MAIL_FLAGS_REMOVE) {
            *error_r = "flag_mode: unknown mode";
            return TDM_EINVAL;
        }
        if ((op->flags & ~(uint32_t)MAIL_FLAG_ALL) != 0) {
            *error_r = "flags: unknown flag bits";
            return TDM_EINVAL;
        }
        if ((rc = check_keywords(op->keywords, op->n_keywords, error_r)) != 0)
            return rc;
        return check_uids(op->uids, op->n_uids, error_r);
    case TDM_REC_MESSAGE_EXPUNGE:
        return check_uids(op->uids, op->n_uids, error_r);
    case TDM_REC_MESSAGE_COPY:
        if ((rc = check_name(op->new_folder, true, &new_folder_errors, error_r)) != 0)
            return rc;
        return check_uids(op->uids, op->n_uids, error_r);
    default:
        *error_r = "type: not a mail record type";
        return TDM_EINVAL;
    }
}

/* ---- Encoder ---- */

/* Encoded size of a validated string: length prefix, bytes, NUL. */
static size_t
str_size(const char *s)
{
    return 2 + strlen(s) + 1;
}

static size_t
kws_size(const struct mail_op *op)
{
    size_t n = 1;
    for (size_t i = 0; i < op->n_keywords; i++)
        n += str_size(op->keywords[i]);
    return n;
}

/* Only called after mail__op_validate(), so every length fits its prefix. */
static uint8_t *
put_str(uint8_t *p, const char *s)
{
    size_t len = strlen(s);
    le_put16(p, (uint16_t)len);
    memcpy(p + 2, s, len + 1);
    return p + 2 + len + 1;
}

static uint8_t *
put_kws(uint8_t *p, const struct mail_op *op)
{
    *p++ = (uint8_t)op->n_keywords;
    for (size_t i = 0; i < op->n_keywords; i++)
        p = put_str(p, op->keywords[i]);
    return p;
}

/* mode: bits ORed into the count (MAIL__EXPUNGE_DELETED_ONLY), 0 for every other record. */
static uint8_t *
put_uids(uint8_t *p, const struct mail_op *op, uint32_t mode)
{
    le_put32(p, (uint32_t)op->n_uids | mode);
    p += 4;
    for (size_t i = 0; i < op->n_uids; i++, p += 4)
        le_put32(p, op->uids[i]);
    return p;
}

static size_t
encoded_size(const struct mail_op *op)
{
    size_t n = 1;
    if (op->type == TDM_REC_MESSAGE_APPEND) {
        n += 2;
        for (size_t i = 0; i < op->n_targets; i++)
            n += str_size(op->targets[i].mailbox) + str_size(op->targets[i].folder);
        n += MAIL_GUID_LEN + 8 + 4 + kws_size(op) + 4 + op->body_len;
        return n + (has_delivery_ids(op) ? op->n_targets * MAIL_DELIVERY_ID_LEN : 0);
    }
    n += str_size(op->mailbox);
    switch (op->type) {
    case TDM_REC_MAILBOX_CREATE:
        return n + 8 + 8 + 4;
    case TDM_REC_MAILBOX_DELETE:
        return n;
    case TDM_REC_MAILBOX_SET_QUOTA:
        return n + 8 + 8;
    default:
        break;
    }
    n += str_size(op->folder);
    switch (op->type) {
    case TDM_REC_FOLDER_CREATE:
        return n + 4;
    case TDM_REC_FOLDER_RENAME:
        return n + str_size(op->new_folder);
    case TDM_REC_FOLDER_SUBSCRIBE:
        return n + 1;
    case TDM_REC_FOLDER_RECENT:
        return n + 4;
    case TDM_REC_MESSAGE_FLAGS:
        return n + 1 + 4 + (op->unchanged_since ? 8 : 0) + kws_size(op) + 4 + 4 * op->n_uids;
    case TDM_REC_MESSAGE_EXPUNGE:
        return n + 4 + 4 * op->n_uids;
    case TDM_REC_MESSAGE_COPY:
        return n + str_size(op->new_folder) + 1 + 4 + 4 * op->n_uids;
    default: /* FOLDER_DELETE */
        return n;
    }
}

int
mail_op_encode(const struct mail_op *op, uint8_t **payload_r, size_t *len_r, const char **error_r)
{
    int rc = mail__op_validate(op, error_r);
    if (rc != 0)
        return rc;

    size_t len = encoded_size(op);
    if (len > TDM_LOG_MAX_PAYLOAD) {
        *error_r = "body: record larger than the largest log payload";
        return TDM_ELIMIT;
    }
    uint8_t *buf = malloc(len);
    if (buf == NULL) {
        *error_r = "out of memory";
        return -ENOMEM;
    }

    uint8_t *p = buf;
    *p++ = MAIL__CODEC_VERSION;
    if (op->type == TDM_REC_MESSAGE_APPEND) {
        le_put16(p, (uint16_t)op->n_targets);
        p += 2;
        for (size_t i = 0; i < op->n_targets; i++) {
            p = put_str(p, op->targets[i].mailbox);
            p = put_str(p, op->targets[i].folder);
        }
        memcpy(p, op->guid, MAIL_GUID_LEN);
        p += MAIL_GUID_LEN;
        /* Conversion to unsigned is defined as modulo 2^64: two's complement on the wire. */
        le_put64(p, (uint64_t)op->internal_date);
        p += 8;
        le_put32(p, op->flags);
        p += 4;
        p = put_kws(p, op);
        le_put32(p, (uint32_t)op->body_len);
        p += 4;
        if (op->body_len > 0)
            memcpy(p, op->body, op->body_len);
        p += op->body_len;
        if (has_delivery_ids(op)) {
            for (size_t i = 0; i < op->n_targets; i++) {
                if (op->delivery_ids[i] != NULL)
                    memcpy(p, op->delivery_ids[i], MAIL_DELIVERY_ID_LEN);
                else
                    memset(p, 0, MAIL_DELIVERY_ID_LEN);
                p += MAIL_DELIVERY_ID_LEN;
            }
        }
        goto done;
    }

    p = put_str(p, op->mailbox);
    switch (op->type) {
    case TDM_REC_MAILBOX_CREATE:
        le_put64(p, op->quota_bytes);
        le_put64(p + 8, op->quota_messages);
        le_put32(p + 16, op->uidvalidity);
        p += 20;
        goto done;
    case TDM_REC_MAILBOX_DELETE:
        goto done;
    case TDM_REC_MAILBOX_SET_QUOTA:
        le_put64(p, op->quota_bytes);
        le_put64(p + 8, op->quota_messages);
        p += 16;
        goto done;
    default:
        break;
    }

    p = put_str(p, op->folder);
    switch (op->type) {
    case TDM_REC_FOLDER_CREATE:
        le_put32(p, op->special_use);
        p += 4;
        break;
    case TDM_REC_FOLDER_RENAME:
        p = put_str(p, op->new_folder);
        break;
    case TDM_REC_FOLDER_SUBSCRIBE:
        *p++ = op->subscribed ? 1 : 0;
        break;
    case TDM_REC_FOLDER_RECENT:
        le_put32(p, op->uid_limit);
        p += 4;
        break;
    case TDM_REC_MESSAGE_FLAGS:
        *p++ = (uint8_t)(op->flag_mode | (op->unchanged_since ? MAIL__FLAGS_CONDITIONAL : 0));
        le_put32(p, op->flags);
        p += 4;
        if (op->unchanged_since) {
            le_put64(p, op->unchanged_since);
            p += 8;
        }
        p = put_kws(p, op);
        p = put_uids(p, op, 0);
        break;
    case TDM_REC_MESSAGE_EXPUNGE:
        p = put_uids(p, op, op->deleted_only ? MAIL__EXPUNGE_DELETED_ONLY : 0);
        break;
    case TDM_REC_MESSAGE_COPY:
        p = put_str(p, op->new_folder);
        *p++ = op->move ? 1 : 0;
        p = put_uids(p, op, 0);
        break;
    default: /* FOLDER_DELETE */
        break;
    }

done:
    TDM_ASSERT((size_t)(p - buf) == len);
    *payload_r = buf;
    *len_r = len;
    return 0;
}

/* ---- Decoder ---- */

/* Compared by address: the one decoder failure that is not malformed input. */
static const char oom_error[] = "out of memory";

/* A cursor over the payload: every read checks the remaining length first. */
struct reader {
    const uint8_t *p;
    size_t left;
};

static const uint8_t *
take(struct reader *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static bool
get_u8(struct reader *r, uint8_t *v_r)
{
    const uint8_t *p = take(r, 1);
    if (p == NULL)
        return false;
    *v_r = *p;
    return true;
}

static bool
get_u16(struct reader *r, uint16_t *v_r)
{
    const uint8_t *p = take(r, 2);
    if (p == NULL)
        return false;
    *v_r = le_get16(p);
    return true;
}

static bool
get_u32(struct reader *r, uint32_t *v_r)
{
    const uint8_t *p = take(r, 4);
    if (p == NULL)
        return false;
    *v_r = le_get32(p);
    return true;
}

static bool
get_u64(struct reader *r, uint64_t *v_r)
{
    const uint8_t *p = take(r, 8);
    if (p == NULL)
        return false;
    *v_r = le_get64(p);
    return true;
}

static bool
get_bool(struct reader *r, bool *v_r, const char **error_r)
{
    uint8_t v;
    if (!get_u8(r, &v))
        return false;
    if (v > 1) {
        *error_r = "boolean field is neither 0 nor 1";
        return false;
    }
    *v_r = v == 1;
    return true;
}

/* Reads a str, borrowing it from the payload. max bounds the length before any byte is read. */
static bool
get_str(struct reader *r, size_t max, const char **s_r, const char **error_r)
{
    uint16_t len;
    if (!get_u16(r, &len))
        return false;
    if (len > max) {
        *error_r = "string longer than its limit";
        return false;
    }
    const uint8_t *p = take(r, (size_t)len + 1);
    if (p == NULL)
        return false;
    if (p[len] != 0 || memchr(p, 0, len) != NULL) {
        *error_r = "string not NUL-terminated or with an embedded NUL";
        return false;
    }
    *s_r = (const char *)p;
    return true;
}

static bool
get_kws(struct reader *r, struct mail_decoded *dec, const char **error_r)
{
    uint8_t n;
    if (!get_u8(r, &n))
        return false;
    if (n > MAIL_MAX_KEYWORDS) {
        *error_r = "keywords: more than MAIL_MAX_KEYWORDS";
        return false;
    }
    if (n == 0)
        return true;
    /* Each keyword takes at least 3 bytes: refuse before allocating for what cannot be there. */
    if ((size_t)n * 3 > r->left)
        return false;
    dec->keywords_storage = calloc(n, sizeof *dec->keywords_storage);
    if (dec->keywords_storage == NULL) {
        *error_r = oom_error;
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!get_str(r, MAIL_KEYWORD_MAX, &dec->keywords_storage[i], error_r))
            return false;
    dec->op.keywords = dec->keywords_storage;
    dec->op.n_keywords = n;
    return true;
}

/* modes: the bits the record type allows in the count (MAIL__EXPUNGE_DELETED_ONLY), which
 * *mode_r receives (mode_r may be NULL when modes is 0). */
static bool
get_uids(struct reader *r, struct mail_decoded *dec, uint32_t modes, uint32_t *mode_r,
         const char **error_r)
{
    uint32_t n;
    if (!get_u32(r, &n))
        return false;
    if (modes) {
        *mode_r = n & modes;
        n &= ~modes;
    }
    if (n > MAIL_MAX_UIDS) {
        *error_r = "uids: more than MAIL_MAX_UIDS";
        return false;
    }
    /* n <= MAIL_MAX_UIDS, so 4 * n cannot overflow; check it against what is left before
     * allocating so a forged count cannot make us allocate. */
    if ((size_t)n * 4 > r->left)
        return false;
    if (n == 0) {
        *error_r = "uids: none given";
        return false;
    }
    dec->uids_storage = malloc((size_t)n * sizeof *dec->uids_storage);
    if (dec->uids_storage == NULL) {
        *error_r = oom_error;
        return false;
    }
    for (size_t i = 0; i < n; i++)
        (void)get_u32(r, &dec->uids_storage[i]);
    dec->op.uids = dec->uids_storage;
    dec->op.n_uids = n;
    return true;
}

static int64_t
i64_from_u64(uint64_t v)
{
    /* Avoids the implementation-defined unsigned-to-signed conversion for values >= 2^63. */
    if (v <= (uint64_t)INT64_MAX)
        return (int64_t)v;
    return -(int64_t)(~v) - 1;
}

static bool
decode_append(struct reader *r, struct mail_decoded *dec, const char **error_r)
{
    struct mail_op *op = &dec->op;
    uint16_t n;
    if (!get_u16(r, &n))
        return false;
    if (n == 0 || n > MAIL_MAX_TARGETS) {
        *error_r = "targets: count out of range";
        return false;
    }
    dec->targets_storage = calloc(n, sizeof *dec->targets_storage);
    if (dec->targets_storage == NULL) {
        *error_r = oom_error;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!get_str(r, MAIL_NAME_MAX, &dec->targets_storage[i].mailbox, error_r) ||
            !get_str(r, MAIL_NAME_MAX, &dec->targets_storage[i].folder, error_r))
            return false;
    }
    op->targets = dec->targets_storage;
    op->n_targets = n;

    const uint8_t *guid = take(r, MAIL_GUID_LEN);
    uint64_t date;
    uint32_t body_len;
    if (guid == NULL || !get_u64(r, &date) || !get_u32(r, &op->flags) || !get_kws(r, dec, error_r))
        return false;
    memcpy(op->guid, guid, MAIL_GUID_LEN);
    op->internal_date = i64_from_u64(date);
    if (!get_u32(r, &body_len))
        return false;
    const uint8_t *body = take(r, body_len);
    if (body == NULL)
        return false;
    op->body = body_len > 0 ? body : NULL;
    op->body_len = body_len;
    if (r->left == 0)
        return true; /* no delivery ids */
    if (r->left < (size_t)n * MAIL_DELIVERY_ID_LEN)
        return false;
    dec->delivery_ids_storage = calloc(n, sizeof *dec->delivery_ids_storage);
    if (dec->delivery_ids_storage == NULL) {
        *error_r = oom_error;
        return false;
    }
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *id = take(r, MAIL_DELIVERY_ID_LEN);
        if (!id_is_zero(id)) {
            dec->delivery_ids_storage[i] = id;
            any = true;
        }
    }
    if (!any) {
        *error_r = "delivery ids: a block without any id";
        return false;
    }
    op->delivery_ids = dec->delivery_ids_storage;
    return true;
}

static bool
decode_body(struct reader *r, struct mail_decoded *dec, const char **error_r)
{
    struct mail_op *op = &dec->op;
    uint8_t mode;

    if (op->type == TDM_REC_MESSAGE_APPEND)
        return decode_append(r, dec, error_r);
    if (!get_str(r, MAIL_NAME_MAX, &op->mailbox, error_r))
        return false;
    switch (op->type) {
    case TDM_REC_MAILBOX_CREATE:
        return get_u64(r, &op->quota_bytes) && get_u64(r, &op->quota_messages) &&
               get_u32(r, &op->uidvalidity);
    case TDM_REC_MAILBOX_DELETE:
        return true;
    case TDM_REC_MAILBOX_SET_QUOTA:
        return get_u64(r, &op->quota_bytes) && get_u64(r, &op->quota_messages);
    default:
        break;
    }
    if (!get_str(r, MAIL_NAME_MAX, &op->folder, error_r))
        return false;
    switch (op->type) {
    case TDM_REC_FOLDER_CREATE:
        return get_u32(r, &op->special_use);
    case TDM_REC_FOLDER_RENAME:
        return get_str(r, MAIL_NAME_MAX, &op->new_folder, error_r);
    case TDM_REC_FOLDER_DELETE:
        return true;
    case TDM_REC_FOLDER_SUBSCRIBE:
        return get_bool(r, &op->subscribed, error_r);
    case TDM_REC_FOLDER_RECENT:
        return get_u32(r, &op->uid_limit);
    case TDM_REC_MESSAGE_FLAGS:
        if (!get_u8(r, &mode))
            return false;
        if ((mode & ~MAIL__FLAGS_CONDITIONAL) > MAIL_FLAGS_REMOVE) {
            *error_r = "flag_mode: unknown mode";
            return false;
        }
        op->flag_mode = (enum mail_flag_mode)(mode & ~MAIL__FLAGS_CONDITIONAL);
        if (!get_u32(r, &op->flags))
            return false;
        if (mode & MAIL__FLAGS_CONDITIONAL) {
            if (!get_u64(r, &op->unchanged_since))
                return false;
            if (op->unchanged_since == 0) { /* 0 is written as no condition: one encoding */
                *error_r = "unchanged_since: 0 in a conditional record";
                return false;
            }
        }
        return get_kws(r, dec, error_r) && get_uids(r, dec, 0, NULL, error_r);
    case TDM_REC_MESSAGE_EXPUNGE: {
        uint32_t umode = 0;
        if (!get_uids(r, dec, MAIL__EXPUNGE_DELETED_ONLY, &umode, error_r))
            return false;
        op->deleted_only = umode != 0;
        return true;
    }
    case TDM_REC_MESSAGE_COPY:
        return get_str(r, MAIL_NAME_MAX, &op->new_folder, error_r) &&
               get_bool(r, &op->move, error_r) && get_uids(r, dec, 0, NULL, error_r);
    default:
        *error_r = "type: not a mail record type";
        return false;
    }
}

int
mail_op_decode(uint16_t type, const uint8_t *payload, size_t len, struct mail_decoded *dec_r,
               const char **error_r)
{
    memset(dec_r, 0, sizeof *dec_r);
    if (!mail_is_mail_record(type)) {
        *error_r = "type: not a mail record type";
        return TDM_EINVAL;
    }
    if (len > TDM_LOG_MAX_PAYLOAD) {
        *error_r = "payload larger than the largest log payload";
        return TDM_EINVAL;
    }
    struct reader r = {payload, len};
    uint8_t version;
    if (!get_u8(&r, &version)) {
        *error_r = "payload is empty";
        return TDM_EINVAL;
    }
    if (version != MAIL__CODEC_VERSION) {
        *error_r = "unsupported mail record format version";
        return TDM_EINVAL;
    }
    dec_r->op.type = type;

    int rc = TDM_EINVAL;
    const char *why = NULL;
    if (!decode_body(&r, dec_r, &why)) {
        *error_r = why != NULL ? why : "payload is truncated";
        if (why == oom_error)
            rc = -ENOMEM;
        goto fail;
    }
    if (r.left != 0) {
        *error_r = "trailing bytes after the last field";
        goto fail;
    }
    /* Limits found here are malformed input, not a caller's oversized request: TDM_EINVAL. */
    if (mail__op_validate(&dec_r->op, error_r) != 0)
        goto fail;
    return 0;

fail:
    mail_decoded_clear(dec_r);
    return rc;
}

void
mail_decoded_clear(struct mail_decoded *dec)
{
    free(dec->targets_storage);
    free(dec->delivery_ids_storage);
    free(dec->keywords_storage);
    free(dec->uids_storage);
    memset(dec, 0, sizeof *dec);
}
