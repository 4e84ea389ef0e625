/*
 * The mail model's LMDB layout, and everything that reads it.
 *
 * This is an on-disk format: the same records applied in the same order must give
 * byte-identical databases on every copy (mail_digest() compares them), so every value is
 * encoded field by field, without padding, and never holds a time or random number that apply
 * did not get from the record. Keys are big-endian so LMDB's byte order is numeric order;
 * values are little-endian and start with a format version byte (1). Names in keys carry their
 * NUL, so readers get C strings pointing straight into the map.
 *
 *   mail.mailboxes   key: mailbox name, NUL
 *                    value (49 bytes): u8 version, u64 id, u64 quota_bytes, u64 quota_messages,
 *                    u64 used_bytes, u64 used_messages, u32 next_folder_id,
 *                    u32 next_uidvalidity (0 in either: exhausted)
 *                    key: a single 0x00 byte (no name is empty, so no mailbox maps there)
 *                    value: u64 next mailbox id. Ids are never reused, so a re-created mailbox
 *                    is a new one to anybody holding the old id.
 *   mail.folders     key: u64 mailbox id (BE), folder name, NUL
 *                    value (34 bytes): u8 version, u32 folder_id, u32 uidvalidity, u32 uidnext,
 *                    u64 highestmodseq, u32 messages, u32 special_use, u8 subscribed,
 *                    u32 first_recent_uid
 *   mail.messages    key: u64 mailbox id (BE), u32 folder id (BE), u32 uid (BE)
 *                    value: u8 version, 16 GUID, i64 internal_date, u64 size, u32 flags,
 *                    u64 modseq, 32 body SHA-256, u8 keyword count, then per keyword (sorted
 *                    by bytes, unique): u8 length, bytes, NUL
 *   mail.bodies      key: body SHA-256; value: the body bytes (stored once per database)
 *   mail.body_refs   key: body SHA-256; value: u64 number of messages using the body. Kept
 *                    apart from the bodies so counting a copy does not rewrite a large value.
 *   mail.modseq      key: u64 mailbox id, u32 folder id, u64 modseq (BE)
 *                    value (6 bytes): u8 version, u32 uid (LE), u8 1 = expunged / 0 = present.
 *                    One entry per message at its current MODSEQ, and one tombstone per
 *                    message expunged (or moved away) at the MODSEQ of the expunge; MODSEQs
 *                    are unique within a folder (every change takes the next one), so the key
 *                    is too. Gone with its folder. Answers "what changed since" in one range
 *                    read (mail_folder_changes()).
 *
 * Messages are keyed by folder id, not name, so renaming a folder rewrites only folder keys.
 */
#include "store/log_codec.h"
#include "store/mail_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

int
mail__lmdb_error(int rc, const char *what)
{
    switch (rc) {
    case MDB_NOTFOUND:
        return TDM_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        log_error("mail: %s: %s", what, mdb_strerror(rc));
        return -ENOSPC;
    case ENOMEM:
        log_error("mail: %s: %s", what, mdb_strerror(rc));
        return -ENOMEM;
    default:
        log_error("mail: %s: %s", what, mdb_strerror(rc));
        return -EIO;
    }
}

/* ---- Keys ---- */

size_t
mail__mailbox_key(const char *name, size_t len, uint8_t out[MAIL__MAILBOX_KEY_MAX])
{
    memcpy(out, name, len);
    out[len] = 0;
    return len + 1;
}

size_t
mail__folder_key(uint64_t mailbox_id, const char *name, size_t len,
                 uint8_t out[MAIL__FOLDER_KEY_MAX])
{
    mail__be_put64(out, mailbox_id);
    memcpy(out + 8, name, len);
    out[8 + len] = 0;
    return 8 + len + 1;
}

void
mail__modseq_key(uint64_t mailbox_id, uint32_t folder_id, uint64_t modseq,
                 uint8_t out[MAIL__MODSEQ_KEY_LEN])
{
    mail__be_put64(out, mailbox_id);
    mail__be_put32(out + 8, folder_id);
    mail__be_put64(out + 12, modseq);
}

void
mail__message_key(uint64_t mailbox_id, uint32_t folder_id, uint32_t uid,
                  uint8_t out[MAIL__MESSAGE_KEY_LEN])
{
    mail__be_put64(out, mailbox_id);
    mail__be_put32(out + 8, folder_id);
    mail__be_put32(out + 12, uid);
}

/* ---- Values ---- */

static int
corrupt(const char *what)
{
    log_error("mail: corrupt %s record in LMDB", what);
    return TDM_ECORRUPT;
}

void
mail__mailbox_rec_encode(const struct mail__mailbox_rec *rec, uint8_t out[MAIL__MAILBOX_REC_LEN])
{
    out[0] = MAIL__DB_VERSION;
    le_put64(out + 1, rec->id);
    le_put64(out + 9, rec->quota_bytes);
    le_put64(out + 17, rec->quota_messages);
    le_put64(out + 25, rec->used_bytes);
    le_put64(out + 33, rec->used_messages);
    le_put32(out + 41, rec->next_folder_id);
    le_put32(out + 45, rec->next_uidvalidity);
}

int
mail__mailbox_rec_decode(const MDB_val *val, struct mail__mailbox_rec *rec_r)
{
    const uint8_t *p = val->mv_data;
    if (val->mv_size != MAIL__MAILBOX_REC_LEN || p[0] != MAIL__DB_VERSION)
        return corrupt("mailbox");
    rec_r->id = le_get64(p + 1);
    rec_r->quota_bytes = le_get64(p + 9);
    rec_r->quota_messages = le_get64(p + 17);
    rec_r->used_bytes = le_get64(p + 25);
    rec_r->used_messages = le_get64(p + 33);
    rec_r->next_folder_id = le_get32(p + 41);
    rec_r->next_uidvalidity = le_get32(p + 45);
    return 0;
}

void
mail__folder_rec_encode(const struct mail__folder_rec *rec, uint8_t out[MAIL__FOLDER_REC_LEN])
{
    out[0] = MAIL__DB_VERSION;
    le_put32(out + 1, rec->folder_id);
    le_put32(out + 5, rec->uidvalidity);
    le_put32(out + 9, rec->uidnext);
    le_put64(out + 13, rec->highestmodseq);
    le_put32(out + 21, rec->messages);
    le_put32(out + 25, rec->special_use);
    out[29] = rec->subscribed ? 1 : 0;
    le_put32(out + 30, rec->first_recent_uid);
}

int
mail__folder_rec_decode(const MDB_val *val, struct mail__folder_rec *rec_r)
{
    const uint8_t *p = val->mv_data;
    if (val->mv_size != MAIL__FOLDER_REC_LEN || p[0] != MAIL__DB_VERSION || p[29] > 1)
        return corrupt("folder");
    rec_r->folder_id = le_get32(p + 1);
    rec_r->uidvalidity = le_get32(p + 5);
    rec_r->uidnext = le_get32(p + 9);
    rec_r->highestmodseq = le_get64(p + 13);
    rec_r->messages = le_get32(p + 21);
    rec_r->special_use = le_get32(p + 25);
    rec_r->subscribed = p[29] == 1;
    rec_r->first_recent_uid = le_get32(p + 30);
    return 0;
}

size_t
mail__message_rec_encode(const struct mail_message_info *msg, uint8_t out[MAIL__MESSAGE_REC_MAX])
{
    out[0] = MAIL__DB_VERSION;
    memcpy(out + 1, msg->guid, MAIL_GUID_LEN);
    le_put64(out + 17, (uint64_t)msg->internal_date);
    le_put64(out + 25, msg->size);
    le_put32(out + 33, msg->flags);
    le_put64(out + 37, msg->modseq);
    memcpy(out + 45, msg->body_hash, MAIL_HASH_LEN);
    TDM_ASSERT(msg->n_keywords <= MAIL_MAX_KEYWORDS);
    out[77] = (uint8_t)msg->n_keywords;
    size_t off = MAIL__MESSAGE_REC_FIXED;
    for (size_t i = 0; i < msg->n_keywords; i++) {
        size_t len = strlen(msg->keywords[i]);
        TDM_ASSERT(len <= MAIL_KEYWORD_MAX);
        out[off] = (uint8_t)len;
        memcpy(out + off + 1, msg->keywords[i], len + 1);
        off += len + 2;
    }
    return off;
}

int
mail__message_rec_decode(const MDB_val *val, uint32_t uid, struct mail_message_info *msg_r)
{
    const uint8_t *p = val->mv_data;
    size_t len = val->mv_size;
    if (len < MAIL__MESSAGE_REC_FIXED || p[0] != MAIL__DB_VERSION || p[77] > MAIL_MAX_KEYWORDS)
        return corrupt("message");
    msg_r->uid = uid;
    memcpy(msg_r->guid, p + 1, MAIL_GUID_LEN);
    uint64_t date = le_get64(p + 17);
    msg_r->internal_date = date <= (uint64_t)INT64_MAX ? (int64_t)date : -(int64_t)(~date) - 1;
    msg_r->size = le_get64(p + 25);
    msg_r->flags = le_get32(p + 33);
    msg_r->modseq = le_get64(p + 37);
    memcpy(msg_r->body_hash, p + 45, MAIL_HASH_LEN);
    msg_r->n_keywords = p[77];
    size_t off = MAIL__MESSAGE_REC_FIXED;
    for (size_t i = 0; i < msg_r->n_keywords; i++) {
        if (off >= len || p[off] > MAIL_KEYWORD_MAX || len - off - 1 < (size_t)p[off] + 1u ||
            p[off + 1 + p[off]] != 0)
            return corrupt("message");
        msg_r->keywords[i] = (const char *)p + off + 1;
        off += (size_t)p[off] + 2;
    }
    if (off != len)
        return corrupt("message");
    return 0;
}

/* ---- Lookups ---- */

int
mail__mailbox_load(const struct mail_dbis *dbis, MDB_txn *txn, const char *name,
                   struct mail__mailbox_rec *rec_r)
{
    uint8_t kbuf[MAIL__MAILBOX_KEY_MAX];
    size_t len = strnlen(name, MAIL_NAME_MAX + 1);
    if (len == 0 || len > MAIL_NAME_MAX)
        return TDM_ENOTFOUND; /* no such name can have been stored */
    MDB_val key = {mail__mailbox_key(name, len, kbuf), kbuf}, val;
    int rc = mdb_get(txn, dbis->mailboxes, &key, &val);
    if (rc != 0)
        return mail__lmdb_error(rc, "read mailbox");
    return mail__mailbox_rec_decode(&val, rec_r);
}

int
mail__folder_load(const struct mail_dbis *dbis, MDB_txn *txn, uint64_t mailbox_id, const char *name,
                  size_t len, struct mail__folder_rec *rec_r)
{
    uint8_t kbuf[MAIL__FOLDER_KEY_MAX];
    if (len == 0 || len > MAIL_NAME_MAX)
        return TDM_ENOTFOUND;
    MDB_val key = {mail__folder_key(mailbox_id, name, len, kbuf), kbuf}, val;
    int rc = mdb_get(txn, dbis->folders, &key, &val);
    if (rc != 0)
        return mail__lmdb_error(rc, "read folder");
    return mail__folder_rec_decode(&val, rec_r);
}

/* ---- Opening ---- */

static int
open_one(MDB_txn *txn, const char *name, MDB_dbi *dbi_r)
{
    int rc = mdb_dbi_open(txn, name, 0, dbi_r);
    if (rc == MDB_NOTFOUND) {
        /* LMDB 0.9 cannot tell us whether txn may write; trying is the only portable test. */
        rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi_r);
        if (rc == EACCES)
            return TDM_ENOTFOUND; /* read-only and never created */
    }
    if (rc != 0)
        return mail__lmdb_error(rc, name);
    return 0;
}

int
mail_dbis_open(MDB_txn *txn, struct mail_dbis *dbis_r)
{
    int rc;
    if ((rc = open_one(txn, MAIL__DBI_MAILBOXES, &dbis_r->mailboxes)) != 0 ||
        (rc = open_one(txn, MAIL__DBI_FOLDERS, &dbis_r->folders)) != 0 ||
        (rc = open_one(txn, MAIL__DBI_MESSAGES, &dbis_r->messages)) != 0 ||
        (rc = open_one(txn, MAIL__DBI_BODIES, &dbis_r->bodies)) != 0 ||
        (rc = open_one(txn, MAIL__DBI_BODY_REFS, &dbis_r->body_refs)) != 0 ||
        (rc = open_one(txn, MAIL__DBI_MODSEQ, &dbis_r->modseq)) != 0)
        return rc;
    /* Added later than the others: a reader of a database no writer has opened since finds
     * it missing, and reads it as empty. */
    dbis_r->have_deliveries = false;
    rc = open_one(txn, MAIL__DBI_DELIVERIES, &dbis_r->deliveries);
    if (rc == TDM_ENOTFOUND)
        return 0;
    if (rc != 0 || (rc = open_one(txn, MAIL__DBI_DELIVERY_TIMES, &dbis_r->delivery_times)) != 0)
        return rc == TDM_ENOTFOUND ? 0 : rc;
    dbis_r->have_deliveries = true;
    return 0;
}

/* ---- Point reads ---- */

static void
mailbox_info(const struct mail__mailbox_rec *rec, struct mail_mailbox_info *info_r)
{
    info_r->id = rec->id;
    info_r->quota_bytes = rec->quota_bytes;
    info_r->quota_messages = rec->quota_messages;
    info_r->used_bytes = rec->used_bytes;
    info_r->used_messages = rec->used_messages;
}

int
mail_mailbox_get(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                 struct mail_mailbox_info *info_r)
{
    struct mail__mailbox_rec rec;
    int rc = mail__mailbox_load(dbis, txn, mailbox, &rec);
    if (rc != 0)
        return rc;
    mailbox_info(&rec, info_r);
    return 0;
}

/* Fills info from a folder key and value that both point into the map. */
static int
folder_info(const MDB_val *key, const MDB_val *val, struct mail_folder_info *info_r)
{
    struct mail__folder_rec rec;
    const char *k = key->mv_data;
    if (key->mv_size < 8 + 2 || k[key->mv_size - 1] != 0)
        return corrupt("folder key");
    int rc = mail__folder_rec_decode(val, &rec);
    if (rc != 0)
        return rc;
    info_r->name = k + 8;
    info_r->name_len = key->mv_size - 9;
    info_r->folder_id = rec.folder_id;
    info_r->uidvalidity = rec.uidvalidity;
    info_r->uidnext = rec.uidnext;
    info_r->highestmodseq = rec.highestmodseq;
    info_r->messages = rec.messages;
    info_r->special_use = rec.special_use;
    info_r->subscribed = rec.subscribed;
    info_r->first_recent_uid = rec.first_recent_uid;
    return 0;
}

int
mail_folder_get(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox, const char *folder,
                struct mail_folder_info *info_r)
{
    struct mail__mailbox_rec mb;
    int rc = mail__mailbox_load(dbis, txn, mailbox, &mb);
    if (rc != 0)
        return rc;
    size_t len = strnlen(folder, MAIL_NAME_MAX + 1);
    if (len == 0 || len > MAIL_NAME_MAX)
        return TDM_ENOTFOUND;

    uint8_t kbuf[MAIL__FOLDER_KEY_MAX];
    MDB_val key = {mail__folder_key(mb.id, folder, len, kbuf), kbuf}, val;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, dbis->folders, &cur)) != 0)
        return mail__lmdb_error(rc, "open folder cursor");
    /* MDB_SET_KEY (unlike mdb_get) returns the stored key, so info->name can point into the map
     * and outlive the caller's string. */
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_KEY);
    if (rc == 0)
        rc = folder_info(&key, &val, info_r);
    else
        rc = mail__lmdb_error(rc, "read folder");
    mdb_cursor_close(cur);
    return rc;
}

/* Loads the mailbox and folder a message read names, giving the folder's id. */
static int
locate_folder(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox, const char *folder,
              uint64_t *mailbox_id_r, uint32_t *folder_id_r)
{
    struct mail__mailbox_rec mb;
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(dbis, txn, mailbox, &mb);
    if (rc != 0)
        return rc;
    rc = mail__folder_load(dbis, txn, mb.id, folder, strnlen(folder, MAIL_NAME_MAX + 1), &f);
    if (rc != 0)
        return rc;
    *mailbox_id_r = mb.id;
    *folder_id_r = f.folder_id;
    return 0;
}

int
mail_message_get(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                 const char *folder, uint32_t uid, struct mail_message_info *info_r)
{
    uint64_t mbid;
    uint32_t fid;
    int rc = locate_folder(dbis, txn, mailbox, folder, &mbid, &fid);
    if (rc != 0)
        return rc;
    uint8_t kbuf[MAIL__MESSAGE_KEY_LEN];
    mail__message_key(mbid, fid, uid, kbuf);
    MDB_val key = {sizeof kbuf, kbuf}, val;
    if ((rc = mdb_get(txn, dbis->messages, &key, &val)) != 0)
        return mail__lmdb_error(rc, "read message");
    return mail__message_rec_decode(&val, uid, info_r);
}

int
mail_body_get(const struct mail_dbis *dbis, MDB_txn *txn, const uint8_t hash[MAIL_HASH_LEN],
              const void **data_r, size_t *len_r)
{
    MDB_val key = {MAIL_HASH_LEN, (void *)hash}, val;
    int rc = mdb_get(txn, dbis->bodies, &key, &val);
    if (rc != 0)
        return mail__lmdb_error(rc, "read body");
    *data_r = val.mv_data;
    *len_r = val.mv_size;
    return 0;
}

/* ---- Iteration ---- */

/*
 * Calls item_cb for every key starting with prefix, in order. Stops at the first non-zero
 * return, which is returned.
 */
typedef int range_item_cb(void *ctx, const MDB_val *key, const MDB_val *val);

static int
walk_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t prefix_len, range_item_cb *cb,
            void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return mail__lmdb_error(rc, "open cursor");
    MDB_val key = {prefix_len, (void *)prefix}, val;
    MDB_cursor_op op = prefix_len > 0 ? MDB_SET_RANGE : MDB_FIRST;
    for (;;) {
        rc = mdb_cursor_get(cur, &key, &val, op);
        op = MDB_NEXT;
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0) {
            rc = mail__lmdb_error(rc, "walk");
            break;
        }
        if (prefix_len > 0 &&
            (key.mv_size < prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0))
            break;
        if ((rc = cb(ctx, &key, &val)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc;
}

struct mailbox_walk {
    mail_mailbox_cb *cb;
    void *ctx;
};

static int
mailbox_item(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct mailbox_walk *w = ctx;
    const char *k = key->mv_data;
    if (key->mv_size == MAIL__NEXT_ID_KEY_LEN)
        return 0; /* the id counter, not a mailbox */
    if (k[key->mv_size - 1] != 0)
        return corrupt("mailbox key");
    struct mail__mailbox_rec rec;
    struct mail_mailbox_info info;
    int rc = mail__mailbox_rec_decode(val, &rec);
    if (rc != 0)
        return rc;
    mailbox_info(&rec, &info);
    return w->cb(w->ctx, k, &info);
}

int
mail_mailbox_list(const struct mail_dbis *dbis, MDB_txn *txn, mail_mailbox_cb *cb, void *ctx)
{
    struct mailbox_walk w = {cb, ctx};
    return walk_prefix(txn, dbis->mailboxes, NULL, 0, mailbox_item, &w);
}

struct folder_walk {
    mail_folder_cb *cb;
    void *ctx;
};

static int
folder_item(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct folder_walk *w = ctx;
    struct mail_folder_info info;
    int rc = folder_info(key, val, &info);
    if (rc != 0)
        return rc;
    return w->cb(w->ctx, &info);
}

int
mail_folder_list(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                 mail_folder_cb *cb, void *ctx)
{
    struct mail__mailbox_rec mb;
    int rc = mail__mailbox_load(dbis, txn, mailbox, &mb);
    if (rc != 0)
        return rc;
    uint8_t prefix[8];
    mail__be_put64(prefix, mb.id);
    struct folder_walk w = {cb, ctx};
    return walk_prefix(txn, dbis->folders, prefix, sizeof prefix, folder_item, &w);
}

struct message_walk {
    mail_message_cb *cb;
    void *ctx;
};

static int
message_item(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct message_walk *w = ctx;
    struct mail_message_info info;
    if (key->mv_size != MAIL__MESSAGE_KEY_LEN)
        return corrupt("message key");
    int rc =
        mail__message_rec_decode(val, mail__be_get32((const uint8_t *)key->mv_data + 12), &info);
    if (rc != 0)
        return rc;
    return w->cb(w->ctx, &info);
}

int
mail_message_list(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                  const char *folder, mail_message_cb *cb, void *ctx)
{
    uint64_t mbid;
    uint32_t fid;
    int rc = locate_folder(dbis, txn, mailbox, folder, &mbid, &fid);
    if (rc != 0)
        return rc;
    uint8_t prefix[12];
    mail__be_put64(prefix, mbid);
    mail__be_put32(prefix + 8, fid);
    struct message_walk w = {cb, ctx};
    return walk_prefix(txn, dbis->messages, prefix, sizeof prefix, message_item, &w);
}

struct change_walk {
    mail_change_cb *cb;
    void *ctx;
};

static int
change_item(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct change_walk *w = ctx;
    const uint8_t *v = val->mv_data;
    if (key->mv_size != MAIL__MODSEQ_KEY_LEN || val->mv_size != MAIL__MODSEQ_VAL_LEN ||
        v[0] != MAIL__DB_VERSION || v[5] > 1)
        return corrupt("modseq");
    struct mail_change ch = {
        .uid = (uint32_t)v[1] | (uint32_t)v[2] << 8 | (uint32_t)v[3] << 16 | (uint32_t)v[4] << 24,
        .modseq = mail__be_get64((const uint8_t *)key->mv_data + 12),
        .expunged = v[5] == 1,
    };
    return w->cb(w->ctx, &ch);
}

int
mail_folder_changes(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                    const char *folder, uint64_t since, mail_change_cb *cb, void *ctx)
{
    uint64_t mbid;
    uint32_t fid;
    int rc = locate_folder(dbis, txn, mailbox, folder, &mbid, &fid);
    if (rc != 0 || since == UINT64_MAX)
        return rc;
    /* Seek to (folder, since + 1), then walk while the folder prefix matches. */
    uint8_t start[MAIL__MODSEQ_KEY_LEN];
    mail__modseq_key(mbid, fid, since + 1, start);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, dbis->modseq, &cur)) != 0)
        return mail__lmdb_error(rc, "open cursor");
    struct change_walk w = {cb, ctx};
    MDB_val key = {sizeof start, start}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < 12 || memcmp(key.mv_data, start, 12) != 0)
            break;
        int ret = change_item(&w, &key, &val);
        if (ret != 0) {
            mdb_cursor_close(cur);
            return ret;
        }
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : mail__lmdb_error(rc, "walk modseq");
}

/* ---- Digest ---- */

struct digest_walk {
    EVP_MD_CTX *st;
    uint64_t items;
};

static void
digest_u64(EVP_MD_CTX *st, uint64_t v)
{
    uint8_t b[8];
    le_put64(b, v);
    EVP_DigestUpdate(st, b, sizeof b);
}

static int
digest_item(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct digest_walk *w = ctx;
    /* Length framing: without it, ("ab", "c") and ("a", "bc") would hash alike. */
    digest_u64(w->st, key->mv_size);
    EVP_DigestUpdate(w->st, key->mv_data, key->mv_size);
    digest_u64(w->st, val->mv_size);
    EVP_DigestUpdate(w->st, val->mv_data, val->mv_size);
    w->items++;
    return 0;
}

int
mail_digest(const struct mail_dbis *dbis, MDB_txn *txn, uint8_t digest_r[32])
{
    const struct {
        const char *name;
        MDB_dbi dbi;
    } dbs[MAIL_DBI_COUNT] = {
        {MAIL__DBI_MAILBOXES, dbis->mailboxes},   {MAIL__DBI_FOLDERS, dbis->folders},
        {MAIL__DBI_MESSAGES, dbis->messages},     {MAIL__DBI_BODIES, dbis->bodies},
        {MAIL__DBI_BODY_REFS, dbis->body_refs},   {MAIL__DBI_MODSEQ, dbis->modseq},
        {MAIL__DBI_DELIVERIES, dbis->deliveries}, {MAIL__DBI_DELIVERY_TIMES, dbis->delivery_times},
    };
    EVP_MD_CTX *st = EVP_MD_CTX_new();
    if (!st)
        return -ENOMEM;
    if (EVP_DigestInit_ex(st, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(st);
        return -ENOMEM;
    }
    for (size_t i = 0; i < MAIL_DBI_COUNT; i++) {
        /* Each database is framed by its name and item count, so an item cannot pass for one
         * of the next database. */
        size_t nlen = strlen(dbs[i].name);
        digest_u64(st, nlen);
        EVP_DigestUpdate(st, dbs[i].name, nlen);
        struct digest_walk w = {st, 0};
        /* A delivery index never opened reads as empty. */
        bool absent = i >= 6 && !dbis->have_deliveries;
        int rc = absent ? 0 : walk_prefix(txn, dbs[i].dbi, NULL, 0, digest_item, &w);
        if (rc != 0) {
            EVP_MD_CTX_free(st);
            return rc;
        }
        digest_u64(st, w.items);
    }
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(st, digest_r, &len);
    EVP_MD_CTX_free(st);
    return ok == 1 && len == 32 ? 0 : -EIO;
}
