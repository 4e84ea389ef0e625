/*
 * Applying mail records to LMDB (layout: top of mail_read.c).
 *
 * Determinism: apply reads only the op and the database, and assigns every number (mailbox
 * id, folder id, UIDVALIDITY, UID, MODSEQ) from counters stored in the database, so replaying
 * the same records in the same order gives byte-identical databases on every copy.
 *
 * All-or-nothing: each record runs in a nested transaction, aborted when the record is
 * refused, so a refusal never leaves half a change behind. An append with several targets
 * gets one nested transaction per target instead: an LMTP delivery to one recipient over
 * quota must not stop the others.
 *
 * IMAP numbering: a folder's UIDVALIDITY comes from its mailbox's counter, seeded by
 * MAILBOX_CREATE and only ever incremented, so a re-created folder name gets a new, larger
 * value and no two folders of a mailbox ever share one (which is why a rename may keep it).
 * UIDNEXT only grows. Every change to a message (append, flags, copy or move into a folder)
 * gives it MODSEQ = ++HIGHESTMODSEQ of its folder; each expunge also bumps HIGHESTMODSEQ.
 */
#include "store/log_codec.h"
#include "store/mail_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A record refused for a reason the result reports, as opposed to a storage failure. */
static bool
is_refusal(int rc)
{
    return rc == TDM_ENOTFOUND || rc == TDM_EEXIST || rc == TDM_EQUOTA || rc == TDM_ELIMIT ||
           rc == TDM_EINVAL || rc == TDM_ECONFLICT;
}

/* A lookup that must succeed because the database says so: its absence is corruption. */
static int
must_exist(int rc, const char *what)
{
    if (rc == TDM_ENOTFOUND) {
        log_error("mail: %s missing: database is inconsistent", what);
        return TDM_ECORRUPT;
    }
    return rc;
}

/* ---- Small record helpers ---- */

static int
put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const void *v, size_t vlen,
    unsigned flags, const char *what)
{
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    int rc = mdb_put(txn, dbi, &key, &val, flags);
    if (rc == MDB_KEYEXIST)
        return TDM_EEXIST;
    return rc != 0 ? mail__lmdb_error(rc, what) : 0;
}

static int
del(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const char *what)
{
    MDB_val key = {klen, (void *)k};
    int rc = mdb_del(txn, dbi, &key, NULL);
    return rc != 0 ? must_exist(mail__lmdb_error(rc, what), what) : 0;
}

static int
mailbox_store(const struct mail_dbis *d, MDB_txn *txn, const char *name,
              const struct mail__mailbox_rec *mb)
{
    uint8_t k[MAIL__MAILBOX_KEY_MAX], v[MAIL__MAILBOX_REC_LEN];
    size_t klen = mail__mailbox_key(name, strlen(name), k);
    mail__mailbox_rec_encode(mb, v);
    return put(txn, d->mailboxes, k, klen, v, sizeof v, 0, "write mailbox");
}

static int
folder_store(const struct mail_dbis *d, MDB_txn *txn, uint64_t mbid, const char *name, size_t len,
             const struct mail__folder_rec *f, unsigned flags)
{
    uint8_t k[MAIL__FOLDER_KEY_MAX], v[MAIL__FOLDER_REC_LEN];
    size_t klen = mail__folder_key(mbid, name, len, k);
    mail__folder_rec_encode(f, v);
    return put(txn, d->folders, k, klen, v, sizeof v, flags, "write folder");
}

static int
message_store(const struct mail_dbis *d, MDB_txn *txn, uint64_t mbid, uint32_t fid,
              const struct mail_message_info *m)
{
    uint8_t k[MAIL__MESSAGE_KEY_LEN], v[MAIL__MESSAGE_REC_MAX];
    mail__message_key(mbid, fid, m->uid, k);
    size_t vlen = mail__message_rec_encode(m, v);
    return put(txn, d->messages, k, sizeof k, v, vlen, 0, "write message");
}

/* ---- The MODSEQ index (mail.modseq, see mail_read.c) ---- */

static int
modseq_put(const struct mail_dbis *d, MDB_txn *txn, uint64_t mbid, uint32_t fid, uint64_t modseq,
           uint32_t uid, bool expunged)
{
    uint8_t k[MAIL__MODSEQ_KEY_LEN];
    uint8_t v[MAIL__MODSEQ_VAL_LEN] = {MAIL__DB_VERSION, (uint8_t)uid, (uint8_t)(uid >> 8),
                                        (uint8_t)(uid >> 16), (uint8_t)(uid >> 24), expunged};
    mail__modseq_key(mbid, fid, modseq, k);
    return put(txn, d->modseq, k, sizeof k, v, sizeof v, 0, "write modseq entry");
}

/* Drops the entry of a message that moves to a new MODSEQ or goes. */
static int
modseq_drop(const struct mail_dbis *d, MDB_txn *txn, uint64_t mbid, uint32_t fid, uint64_t modseq)
{
    uint8_t k[MAIL__MODSEQ_KEY_LEN];
    mail__modseq_key(mbid, fid, modseq, k);
    return del(txn, d->modseq, k, sizeof k, "modseq entry");
}

/* Deletes every key of dbi that starts with prefix. */
static int
delete_prefix(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t prefix_len)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return mail__lmdb_error(rc, "open cursor");
    for (;;) {
        /* Seek afresh after each deletion rather than trust the cursor's position past it. */
        MDB_val key = {prefix_len, (void *)prefix}, val;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (rc != 0 || key.mv_size < prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : mail__lmdb_error(rc, "delete range");
}

/*
 * Loads a message into *m with its keywords copied to kw_buf: LMDB values may move once the
 * transaction writes, so nothing may keep pointing into one across a put.
 */
struct kw_buf {
    char kw[MAIL_MAX_KEYWORDS][MAIL_KEYWORD_MAX + 1];
};

static int
message_load(const struct mail_dbis *d, MDB_txn *txn, uint64_t mbid, uint32_t fid, uint32_t uid,
             struct mail_message_info *m, struct kw_buf *kb)
{
    uint8_t k[MAIL__MESSAGE_KEY_LEN];
    mail__message_key(mbid, fid, uid, k);
    MDB_val key = {sizeof k, k}, val;
    int rc = mdb_get(txn, d->messages, &key, &val);
    if (rc != 0)
        return mail__lmdb_error(rc, "read message");
    if ((rc = mail__message_rec_decode(&val, uid, m)) != 0)
        return rc;
    for (size_t i = 0; i < m->n_keywords; i++) {
        size_t len = strlen(m->keywords[i]);
        if (len > MAIL_KEYWORD_MAX)
            return TDM_ECORRUPT;
        memcpy(kb->kw[i], m->keywords[i], len + 1);
        m->keywords[i] = kb->kw[i];
    }
    return 0;
}

/* ---- Bodies: stored once, counted per message ---- */

static int
body_ref(const struct mail_dbis *d, MDB_txn *txn, const uint8_t hash[MAIL_HASH_LEN],
         const void *body, size_t body_len, bool have_body)
{
    MDB_val key = {MAIL_HASH_LEN, (void *)hash}, val;
    uint64_t refs = 0;
    int rc = mdb_get(txn, d->body_refs, &key, &val);
    if (rc == 0) {
        if (val.mv_size != 8)
            return TDM_ECORRUPT;
        refs = le_get64(val.mv_data);
    } else if (rc != MDB_NOTFOUND) {
        return mail__lmdb_error(rc, "read body refcount");
    } else if (!have_body) {
        return must_exist(TDM_ENOTFOUND, "body refcount");
    } else {
        /* First message with this body: store it. */
        rc = put(txn, d->bodies, hash, MAIL_HASH_LEN, body, body_len, 0, "write body");
        if (rc != 0)
            return rc;
    }
    uint8_t v[8];
    le_put64(v, refs + 1);
    return put(txn, d->body_refs, hash, MAIL_HASH_LEN, v, sizeof v, 0, "write body refcount");
}

static int
body_unref(const struct mail_dbis *d, MDB_txn *txn, const uint8_t hash[MAIL_HASH_LEN])
{
    MDB_val key = {MAIL_HASH_LEN, (void *)hash}, val;
    int rc = mdb_get(txn, d->body_refs, &key, &val);
    if (rc != 0)
        return must_exist(mail__lmdb_error(rc, "read body refcount"), "body refcount");
    if (val.mv_size != 8)
        return TDM_ECORRUPT;
    uint64_t refs = le_get64(val.mv_data);
    if (refs <= 1) {
        /* Last message using it: the body goes with its count. */
        if ((rc = del(txn, d->body_refs, hash, MAIL_HASH_LEN, "body refcount")) != 0)
            return rc;
        return del(txn, d->bodies, hash, MAIL_HASH_LEN, "body");
    }
    uint8_t v[8];
    le_put64(v, refs - 1);
    return put(txn, d->body_refs, hash, MAIL_HASH_LEN, v, sizeof v, 0, "write body refcount");
}

/* ---- Per-record state ---- */

struct apply {
    const struct mail_dbis *d;
    MDB_txn *txn; /* the nested transaction this record runs in */
    const struct mail_op *op;
    struct mail_result *res;
    struct mail__mailbox_rec mb; /* the record's mailbox, written back by the op */
};

/* Hands out a folder id and a UIDVALIDITY from the mailbox's counters (stored with mb). */
static int
take_folder_numbers(struct mail__mailbox_rec *mb, uint32_t *fid_r, uint32_t *uidvalidity_r)
{
    if (mb->next_folder_id == 0 || mb->next_uidvalidity == 0)
        return TDM_ELIMIT;
    *fid_r = mb->next_folder_id;
    *uidvalidity_r = mb->next_uidvalidity;
    mb->next_folder_id = *fid_r == UINT32_MAX ? 0 : *fid_r + 1;
    mb->next_uidvalidity = *uidvalidity_r == UINT32_MAX ? 0 : *uidvalidity_r + 1;
    return 0;
}

static int
folder_new(struct apply *a, const char *name, size_t len, uint32_t special_use, bool subscribed,
           struct mail__folder_rec *f_r)
{
    struct mail__folder_rec f = {
        .uidnext = 1, .special_use = special_use, .subscribed = subscribed, .first_recent_uid = 1};
    /* HIGHESTMODSEQ starts at 1: RFC 7162 reserves 0 for "no mod-sequence". */
    f.highestmodseq = 1;
    int rc = take_folder_numbers(&a->mb, &f.folder_id, &f.uidvalidity);
    if (rc != 0)
        return rc;
    rc = folder_store(a->d, a->txn, a->mb.id, name, len, &f, MDB_NOOVERWRITE);
    if (rc == 0 && f_r != NULL)
        *f_r = f;
    return rc;
}

/* Creates every missing superior of name ("a" and "a/b" for "a/b/c"), top down. */
static int
make_parents(struct apply *a, const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (name[i] != MAIL_HIER_SEP)
            continue;
        struct mail__folder_rec f;
        int rc = mail__folder_load(a->d, a->txn, a->mb.id, name, i, &f);
        if (rc == TDM_ENOTFOUND)
            rc = folder_new(a, name, i, 0, false, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
load_folder(struct apply *a, const char *name, struct mail__folder_rec *f_r)
{
    return mail__folder_load(a->d, a->txn, a->mb.id, name, strlen(name), f_r);
}

static int
store_folder(struct apply *a, const char *name, const struct mail__folder_rec *f)
{
    return folder_store(a->d, a->txn, a->mb.id, name, strlen(name), f, 0);
}

static bool
quota_allows(const struct mail__mailbox_rec *mb, uint64_t size)
{
    /* Written so that no sum can wrap: used may already exceed a lowered quota. */
    if (mb->quota_bytes != 0 && (size > mb->quota_bytes || mb->used_bytes > mb->quota_bytes - size))
        return false;
    return mb->quota_messages == 0 || mb->used_messages < mb->quota_messages;
}

static int
usage_sub(struct mail__mailbox_rec *mb, uint64_t bytes, uint64_t messages)
{
    if (mb->used_bytes < bytes || mb->used_messages < messages) {
        log_error("mail: mailbox %llu usage below its messages: database is inconsistent",
                  (unsigned long long)mb->id);
        return TDM_ECORRUPT;
    }
    mb->used_bytes -= bytes;
    mb->used_messages -= messages;
    return 0;
}

/*
 * Deletes every message whose key starts with prefix (a mailbox, or a mailbox and folder),
 * dropping its body reference, and adds up what went.
 */
static int
delete_messages(struct apply *a, const uint8_t *prefix, size_t prefix_len, uint64_t *bytes_r,
                uint64_t *count_r)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(a->txn, a->d->messages, &cur);
    if (rc != 0)
        return mail__lmdb_error(rc, "open message cursor");
    *bytes_r = 0;
    *count_r = 0;
    for (;;) {
        /* Seek afresh each time: body_unref writes between deletions. */
        MDB_val key = {prefix_len, (void *)prefix}, val;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND ||
            (rc == 0 && (key.mv_size < prefix_len || memcmp(key.mv_data, prefix, prefix_len)))) {
            rc = 0;
            break;
        }
        if (rc != 0) {
            rc = mail__lmdb_error(rc, "walk messages");
            break;
        }
        if (key.mv_size != MAIL__MESSAGE_KEY_LEN) {
            log_error("mail: malformed message key: database is inconsistent");
            rc = TDM_ECORRUPT;
            break;
        }
        struct mail_message_info m;
        if ((rc = mail__message_rec_decode(&val, 0, &m)) != 0)
            break;
        uint8_t hash[MAIL_HASH_LEN];
        memcpy(hash, m.body_hash, sizeof hash);
        *bytes_r += m.size;
        (*count_r)++;
        if ((rc = mdb_cursor_del(cur, 0)) != 0) {
            rc = mail__lmdb_error(rc, "delete message");
            break;
        }
        if ((rc = body_unref(a->d, a->txn, hash)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    /* The MODSEQ index shares the (mailbox[, folder]) key prefix: its entries and tombstones
     * go with the folder. */
    return rc != 0 ? rc : delete_prefix(a->txn, a->d->modseq, prefix, prefix_len);
}

/* ---- Mailboxes ---- */

static int
mailbox_create(struct apply *a)
{
    const struct mail_op *op = a->op;
    int rc = mail__mailbox_load(a->d, a->txn, op->mailbox, &a->mb);
    if (rc == 0)
        return TDM_EEXIST;
    if (rc != TDM_ENOTFOUND)
        return rc;

    MDB_val key = {MAIL__NEXT_ID_KEY_LEN, (void *)MAIL__NEXT_ID_KEY}, val;
    uint64_t id = 1;
    rc = mdb_get(a->txn, a->d->mailboxes, &key, &val);
    if (rc == 0) {
        if (val.mv_size != 8)
            return TDM_ECORRUPT;
        id = le_get64(val.mv_data);
    } else if (rc != MDB_NOTFOUND) {
        return mail__lmdb_error(rc, "read next mailbox id");
    }
    uint8_t next[8];
    le_put64(next, id + 1);
    rc = put(a->txn, a->d->mailboxes, MAIL__NEXT_ID_KEY, MAIL__NEXT_ID_KEY_LEN, next, sizeof next,
             0, "write next mailbox id");
    if (rc != 0)
        return rc;

    a->mb = (struct mail__mailbox_rec){
        .id = id,
        .quota_bytes = op->quota_bytes,
        .quota_messages = op->quota_messages,
        .next_folder_id = 1,
        .next_uidvalidity = op->uidvalidity,
    };
    struct mail__folder_rec inbox;
    if ((rc = folder_new(a, MAIL__INBOX, MAIL__INBOX_LEN, 0, false, &inbox)) != 0)
        return rc;
    a->res->uidvalidity = inbox.uidvalidity;
    a->res->modseq = inbox.highestmodseq;
    return mailbox_store(a->d, a->txn, op->mailbox, &a->mb);
}

static int
mailbox_delete(struct apply *a)
{
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0)
        return rc;
    uint8_t prefix[8];
    mail__be_put64(prefix, a->mb.id);
    uint64_t bytes, count;
    if ((rc = delete_messages(a, prefix, sizeof prefix, &bytes, &count)) != 0)
        return rc;

    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(a->txn, a->d->folders, &cur)) != 0)
        return mail__lmdb_error(rc, "open folder cursor");
    for (;;) {
        MDB_val key = {sizeof prefix, prefix}, val;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND ||
            (rc == 0 && (key.mv_size < sizeof prefix || memcmp(key.mv_data, prefix, 8) != 0))) {
            rc = 0;
            break;
        }
        if (rc == 0)
            rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            rc = mail__lmdb_error(rc, "delete folders");
            break;
        }
    }
    mdb_cursor_close(cur);
    if (rc != 0)
        return rc;

    uint8_t k[MAIL__MAILBOX_KEY_MAX];
    size_t klen = mail__mailbox_key(a->op->mailbox, strlen(a->op->mailbox), k);
    return del(a->txn, a->d->mailboxes, k, klen, "mailbox");
}

static int
mailbox_set_quota(struct apply *a)
{
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0)
        return rc;
    /* Lowering a quota below the usage is allowed: it only refuses new mail. */
    a->mb.quota_bytes = a->op->quota_bytes;
    a->mb.quota_messages = a->op->quota_messages;
    return mailbox_store(a->d, a->txn, a->op->mailbox, &a->mb);
}

/* ---- Folders ---- */

static int
folder_create(struct apply *a)
{
    const char *name = a->op->folder;
    size_t len = strlen(name);
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0)
        return rc;
    rc = load_folder(a, name, &f);
    if (rc == 0)
        return TDM_EEXIST;
    if (rc != TDM_ENOTFOUND)
        return rc;
    if ((rc = make_parents(a, name, len)) != 0 ||
        (rc = folder_new(a, name, len, a->op->special_use, false, &f)) != 0)
        return rc;
    a->res->uidvalidity = f.uidvalidity;
    a->res->modseq = f.highestmodseq;
    return mailbox_store(a->d, a->txn, a->op->mailbox, &a->mb);
}

struct moved_folder {
    char name[MAIL_NAME_MAX + 1];
    size_t len;
    struct mail__folder_rec rec;
};

/* Collects folder old_name and its inferiors ("old/..."), copied out of the map. */
static int
collect_subtree(struct apply *a, const char *old_name, size_t olen, struct moved_folder **list_r,
                size_t *n_r)
{
    uint8_t prefix[MAIL__FOLDER_KEY_MAX];
    size_t plen = mail__folder_key(a->mb.id, old_name, olen, prefix) - 1; /* without the NUL */
    struct moved_folder *list = NULL;
    size_t n = 0, cap = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(a->txn, a->d->folders, &cur);
    if (rc != 0)
        return mail__lmdb_error(rc, "open folder cursor");
    MDB_val key = {plen, prefix}, val;
    for (MDB_cursor_op how = MDB_SET_RANGE;; how = MDB_NEXT) {
        rc = mdb_cursor_get(cur, &key, &val, how);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0) {
            rc = mail__lmdb_error(rc, "walk folders");
            break;
        }
        const uint8_t *k = key.mv_data;
        if (key.mv_size <= plen || memcmp(k, prefix, plen) != 0)
            break;
        /* Keys sharing the bytes but not the level ("ab" beside "a") are siblings. */
        if (k[plen] != 0 && k[plen] != MAIL_HIER_SEP)
            continue;
        if (n == cap) {
            size_t ncap = cap == 0 ? 8 : cap * 2;
            struct moved_folder *nl = realloc(list, ncap * sizeof *nl);
            if (nl == NULL) {
                rc = -ENOMEM;
                break;
            }
            list = nl;
            cap = ncap;
        }
        struct moved_folder *m = &list[n];
        m->len = key.mv_size - 9;
        if (m->len > MAIL_NAME_MAX) {
            rc = TDM_ECORRUPT;
            break;
        }
        memcpy(m->name, k + 8, m->len + 1);
        if ((rc = mail__folder_rec_decode(&val, &m->rec)) != 0)
            break;
        n++;
    }
    mdb_cursor_close(cur);
    if (rc != 0) {
        free(list);
        return rc;
    }
    *list_r = list;
    *n_r = n;
    return 0;
}

static int
rename_subtree(struct apply *a, const char *old_name, size_t olen, const char *new_name,
               size_t nlen)
{
    struct moved_folder *list = NULL;
    size_t n = 0;
    int rc = collect_subtree(a, old_name, olen, &list, &n);
    if (rc != 0)
        return rc;
    /* Delete everything first, then insert: a new name may equal an old one being moved
     * ("a/b" -> "a" turns "a/b/b" into "a/b"), and any other clash is a refusal. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t k[MAIL__FOLDER_KEY_MAX];
        size_t klen = mail__folder_key(a->mb.id, list[i].name, list[i].len, k);
        rc = del(a->txn, a->d->folders, k, klen, "folder");
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        char nn[MAIL_NAME_MAX + 1];
        size_t rest = list[i].len - olen;
        if (nlen + rest > MAIL_NAME_MAX) {
            rc = TDM_ELIMIT;
            break;
        }
        memcpy(nn, new_name, nlen);
        memcpy(nn + nlen, list[i].name + olen, rest + 1);
        rc = folder_store(a->d, a->txn, a->mb.id, nn, nlen + rest, &list[i].rec, MDB_NOOVERWRITE);
        if (i == 0)
            a->res->uidvalidity = list[i].rec.uidvalidity; /* list[0] is the folder itself */
    }
    free(list);
    return rc;
}

static int
folder_rename(struct apply *a)
{
    const char *old_name = a->op->folder, *new_name = a->op->new_folder;
    size_t olen = strlen(old_name), nlen = strlen(new_name);
    struct mail__folder_rec f, exists;
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0)
        return rc;
    if ((rc = load_folder(a, old_name, &f)) != 0)
        return rc;
    rc = load_folder(a, new_name, &exists);
    if (rc == 0)
        return TDM_EEXIST;
    if (rc != TDM_ENOTFOUND)
        return rc;

    if (mail__is_inbox(old_name, olen)) {
        /* RFC 3501 6.3.5: INBOX's messages move to the new folder, INBOX stays, empty, and its
         * inferiors stay where they are. The new folder takes over INBOX's numbering (its
         * messages keep their UIDs); INBOX starts afresh with a new UIDVALIDITY. */
        struct mail__folder_rec moved = f;
        moved.special_use = 0;
        moved.subscribed = false;
        if ((rc = folder_store(a->d, a->txn, a->mb.id, new_name, nlen, &moved, MDB_NOOVERWRITE)))
            return rc;
        struct mail__folder_rec inbox = {.uidnext = 1,
                                         .highestmodseq = 1,
                                         .special_use = f.special_use,
                                         .subscribed = f.subscribed};
        if ((rc = take_folder_numbers(&a->mb, &inbox.folder_id, &inbox.uidvalidity)) != 0 ||
            (rc = store_folder(a, MAIL__INBOX, &inbox)) != 0)
            return rc;
        a->res->uidvalidity = moved.uidvalidity;
    } else {
        if (nlen > olen && memcmp(new_name, old_name, olen) == 0 && new_name[olen] == MAIL_HIER_SEP)
            return TDM_EINVAL; /* into its own inferior */
        if ((rc = rename_subtree(a, old_name, olen, new_name, nlen)) != 0)
            return rc;
    }
    if ((rc = make_parents(a, new_name, nlen)) != 0)
        return rc;
    return mailbox_store(a->d, a->txn, a->op->mailbox, &a->mb);
}

static int
folder_delete(struct apply *a)
{
    const char *name = a->op->folder;
    if (mail__is_inbox(name, strlen(name)))
        return TDM_EINVAL;
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, name, &f)) != 0)
        return rc;
    uint8_t prefix[12];
    mail__be_put64(prefix, a->mb.id);
    mail__be_put32(prefix + 8, f.folder_id);
    uint64_t bytes, count;
    if ((rc = delete_messages(a, prefix, sizeof prefix, &bytes, &count)) != 0 ||
        (rc = usage_sub(&a->mb, bytes, count)) != 0)
        return rc;
    uint8_t k[MAIL__FOLDER_KEY_MAX];
    size_t klen = mail__folder_key(a->mb.id, name, strlen(name), k);
    if ((rc = del(a->txn, a->d->folders, k, klen, "folder")) != 0)
        return rc;
    return mailbox_store(a->d, a->txn, a->op->mailbox, &a->mb);
}

/* \Recent is a claim on a range of UIDs: the first session to claim a UID has it. */
static int
folder_recent(struct apply *a)
{
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, a->op->folder, &f)) != 0)
        return rc;
    uint32_t limit = a->op->uid_limit < f.uidnext ? a->op->uid_limit : f.uidnext;
    a->res->uidvalidity = f.uidvalidity;
    a->res->first_uid = f.first_recent_uid;
    a->res->count = limit > f.first_recent_uid ? limit - f.first_recent_uid : 0;
    a->res->modseq = f.highestmodseq;
    if (a->res->count == 0)
        return 0; /* nothing new to claim: no write */
    f.first_recent_uid = limit;
    return store_folder(a, a->op->folder, &f);
}

static int
folder_subscribe(struct apply *a)
{
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, a->op->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, a->op->folder, &f)) != 0)
        return rc;
    f.subscribed = a->op->subscribed;
    return store_folder(a, a->op->folder, &f);
}

/* ---- Keywords: kept sorted and unique, so equal sets encode alike ----
 *
 * Keywords are IMAP atoms, which compare without regard to ASCII case (RFC 9051 section 9,
 * note 2; docs/decisions.md): "work" and "Work" are one keyword, kept as first spelled. Records
 * written before this rule may hold both spellings or a byte order; kw_normalize() makes any
 * set fit it before it is merged. */

static int
kw_strcmp(const char *x, const char *y)
{
    return strcasecmp(x, y);
}

static int
kw_cmp(const void *x, const void *y)
{
    return kw_strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Sorts and de-duplicates n keywords into out (capacity n); returns the count. */
static size_t
kw_normalize(const char *const *kws, size_t n, const char **out)
{
    if (n == 0)
        return 0;
    memcpy(out, kws, n * sizeof *out);
    qsort(out, n, sizeof *out, kw_cmp);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (kw_strcmp(out[i], out[m - 1]) != 0)
            out[m++] = out[i];
    return m;
}

/* Merges sorted sets have and change per mode into out (capacity nh + nc). */
static size_t
kw_combine(const char *const *have, size_t nh, const char *const *change, size_t nc,
           enum mail_flag_mode mode, const char **out)
{
    if (mode == MAIL_FLAGS_REPLACE) {
        memcpy(out, change, nc * sizeof *out);
        return nc;
    }
    size_t i = 0, j = 0, n = 0;
    while (i < nh || j < nc) {
        int c = i == nh ? 1 : j == nc ? -1 : kw_strcmp(have[i], change[j]);
        if (c < 0) {
            out[n++] = have[i++];
        } else if (c > 0) {
            if (mode == MAIL_FLAGS_ADD)
                out[n++] = change[j];
            j++;
        } else {
            if (mode == MAIL_FLAGS_ADD)
                out[n++] = have[i];
            i++;
            j++;
        }
    }
    return n;
}

static bool
kw_equal(const char *const *x, size_t nx, const char *const *y, size_t ny)
{
    if (nx != ny)
        return false;
    for (size_t i = 0; i < nx; i++)
        if (kw_strcmp(x[i], y[i]) != 0)
            return false;
    return true;
}

/* ---- Messages ---- */

/* What every target of one append shares, computed once. */
struct append_msg {
    uint8_t hash[MAIL_HASH_LEN];
    const char *kws[MAIL_MAX_KEYWORDS];
    size_t n_kws;
};

static int
append_one(struct apply *a, const struct mail_target *t, const struct append_msg *am,
           struct mail__folder_rec *f_r, uint32_t *uid_r)
{
    const struct mail_op *op = a->op;
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, t->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, t->folder, &f)) != 0)
        return rc;
    if (!quota_allows(&a->mb, op->body_len))
        return TDM_EQUOTA;
    if (f.uidnext == UINT32_MAX)
        return TDM_ELIMIT; /* UIDs are exhausted: the folder must be re-created */

    struct mail_message_info m = {
        .uid = f.uidnext++,
        .internal_date = op->internal_date,
        .size = op->body_len,
        .flags = op->flags,
        .modseq = ++f.highestmodseq,
        .n_keywords = am->n_kws,
    };
    memcpy(m.guid, op->guid, MAIL_GUID_LEN);
    memcpy(m.body_hash, am->hash, MAIL_HASH_LEN);
    memcpy(m.keywords, am->kws, am->n_kws * sizeof *am->kws);
    f.messages++;
    a->mb.used_bytes += op->body_len;
    a->mb.used_messages++;
    /* An empty body still needs a valid pointer for LMDB. */
    const void *body = op->body_len > 0 ? op->body : "";
    if ((rc = message_store(a->d, a->txn, a->mb.id, f.folder_id, &m)) != 0 ||
        (rc = modseq_put(a->d, a->txn, a->mb.id, f.folder_id, m.modseq, m.uid, false)) != 0 ||
        (rc = body_ref(a->d, a->txn, m.body_hash, body, op->body_len, true)) != 0 ||
        (rc = store_folder(a, t->folder, &f)) != 0 ||
        (rc = mailbox_store(a->d, a->txn, t->mailbox, &a->mb)) != 0)
        return rc;
    *f_r = f;
    *uid_r = m.uid;
    return 0;
}

static int
message_append(const struct mail_dbis *d, MDB_txn *txn, const struct mail_op *op,
               struct mail_result *res)
{
    struct append_msg am;
    /* OpenSSL rather than libsodium: it uses the CPU's SHA instructions, ~5x faster here, and
     * hashing every body is the largest CPU cost of delivery and replay. */
    SHA256(op->body_len > 0 ? op->body : (const void *)"", op->body_len, am.hash);
    am.n_kws = kw_normalize(op->keywords, op->n_keywords, am.kws);
    res->n_targets = (uint32_t)op->n_targets;

    bool any_id = false;
    for (size_t i = 0; i < op->n_targets; i++) {
        const struct mail_target *t = &op->targets[i];
        const uint8_t *id = op->delivery_ids != NULL ? op->delivery_ids[i] : NULL;
        struct apply a = {.d = d, .op = op, .res = res};
        struct mail__folder_rec f;
        uint32_t uid = 0;
        int rc;
        if (id != NULL) {
            /* Delivered before (a resubmission from the transport's dumpster, or the same id
             * twice in one record): dropped, and answered with where it went. */
            struct mail_delivery_info prev;
            any_id = true;
            rc = mail_delivery_get(d, txn, id, &prev);
            if (rc == 0) {
                res->target_status[i] = TDM_EDUPLICATE;
                res->target_uid[i] = prev.uid;
                res->target_uidvalidity[i] = prev.uidvalidity;
                continue;
            }
            if (rc != TDM_ENOTFOUND)
                return rc;
        }
        rc = mdb_txn_begin(mdb_txn_env(txn), txn, 0, &a.txn);
        if (rc != 0)
            return mail__lmdb_error(rc, "begin nested transaction");
        rc = append_one(&a, t, &am, &f, &uid);
        if (rc == 0 && id != NULL)
            rc = mail__delivery_record(d, a.txn, id, op->internal_date,
                                       f.uidvalidity, uid, t->mailbox, t->folder);
        if (rc == 0) {
            if ((rc = mdb_txn_commit(a.txn)) != 0)
                return mail__lmdb_error(rc, "commit nested transaction");
        } else {
            mdb_txn_abort(a.txn);
            if (!is_refusal(rc))
                return rc;
            res->target_status[i] = rc;
            if (res->status == 0)
                res->status = rc;
            continue;
        }
        res->target_uid[i] = uid;
        res->target_uidvalidity[i] = f.uidvalidity;
        if (i == 0) {
            res->uidvalidity = f.uidvalidity;
            res->first_uid = uid;
            res->modseq = f.highestmodseq;
        }
    }
    /* Pruned by the records' own dates and the index, never the applier's clock: every copy
     * prunes the same ids. The horizon's clamp keeps one forward-stepped date from forgetting
     * ids the dumpster may still resubmit. */
    if (any_id)
        return mail__delivery_age(d, txn, op->internal_date, MAIL_DELIVERY_PRUNE_MAX);
    return 0;
}

static int
message_flags(struct apply *a)
{
    const struct mail_op *op = a->op;
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, op->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, op->folder, &f)) != 0)
        return rc;
    const char *change[MAIL_MAX_KEYWORDS];
    size_t n_change = kw_normalize(op->keywords, op->n_keywords, change);

    for (size_t i = 0; i < op->n_uids; i++) {
        struct mail_message_info m;
        struct kw_buf kb;
        rc = message_load(a->d, a->txn, a->mb.id, f.folder_id, op->uids[i], &m, &kb);
        if (rc == TDM_ENOTFOUND)
            continue; /* expunged meanwhile: IMAP STORE ignores it */
        if (rc != 0)
            return rc;
        /* A compare-and-set: the nested transaction takes back what came before. */
        if (op->unchanged_since && m.modseq > op->unchanged_since)
            return TDM_ECONFLICT;
        uint32_t flags = op->flag_mode == MAIL_FLAGS_REPLACE ? op->flags
                         : op->flag_mode == MAIL_FLAGS_ADD   ? m.flags | op->flags
                                                             : m.flags & ~op->flags;
        const char *have[MAIL_MAX_KEYWORDS], *kws[2 * MAIL_MAX_KEYWORDS];
        size_t n_have = kw_normalize(m.keywords, m.n_keywords, have);
        size_t n_kws = kw_combine(have, n_have, change, n_change, op->flag_mode, kws);
        if (n_kws > MAIL_MAX_KEYWORDS)
            return TDM_ELIMIT;
        /* Only a real change gets a new MODSEQ, so CONDSTORE clients are not sent no-ops. */
        if (flags == m.flags && kw_equal(kws, n_kws, have, n_have))
            continue;
        m.flags = flags;
        m.n_keywords = n_kws;
        memcpy(m.keywords, kws, n_kws * sizeof *kws);
        uint64_t old_modseq = m.modseq;
        m.modseq = ++f.highestmodseq;
        if ((rc = message_store(a->d, a->txn, a->mb.id, f.folder_id, &m)) != 0 ||
            (rc = modseq_drop(a->d, a->txn, a->mb.id, f.folder_id, old_modseq)) != 0 ||
            (rc = modseq_put(a->d, a->txn, a->mb.id, f.folder_id, m.modseq, m.uid, false)) != 0)
            return rc;
        a->res->count++;
    }
    a->res->uidvalidity = f.uidvalidity;
    a->res->modseq = f.highestmodseq;
    return store_folder(a, op->folder, &f);
}

static int
message_expunge(struct apply *a)
{
    const struct mail_op *op = a->op;
    struct mail__folder_rec f;
    int rc = mail__mailbox_load(a->d, a->txn, op->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, op->folder, &f)) != 0)
        return rc;
    for (size_t i = 0; i < op->n_uids; i++) {
        struct mail_message_info m;
        struct kw_buf kb;
        rc = message_load(a->d, a->txn, a->mb.id, f.folder_id, op->uids[i], &m, &kb);
        if (rc == TDM_ENOTFOUND)
            continue; /* already gone: expunge is idempotent per UID */
        if (rc != 0)
            return rc;
        /* IMAP's expunge of \Deleted: decided here, when the record applies, not when the
         * client's session read the folder, so a \Deleted taken back in between wins. */
        if (op->deleted_only && !(m.flags & MAIL_FLAG_DELETED))
            continue;
        uint8_t k[MAIL__MESSAGE_KEY_LEN];
        mail__message_key(a->mb.id, f.folder_id, m.uid, k);
        if ((rc = del(a->txn, a->d->messages, k, sizeof k, "message")) != 0 ||
            (rc = body_unref(a->d, a->txn, m.body_hash)) != 0 ||
            (rc = usage_sub(&a->mb, m.size, 1)) != 0)
            return rc;
        if (f.messages == 0)
            return must_exist(TDM_ENOTFOUND, "folder message count");
        f.messages--;
        f.highestmodseq++;
        if ((rc = modseq_drop(a->d, a->txn, a->mb.id, f.folder_id, m.modseq)) != 0 ||
            (rc = modseq_put(a->d, a->txn, a->mb.id, f.folder_id, f.highestmodseq, m.uid, true)) !=
                0)
            return rc;
        a->res->count++;
    }
    a->res->uidvalidity = f.uidvalidity;
    a->res->modseq = f.highestmodseq;
    if ((rc = store_folder(a, op->folder, &f)) != 0)
        return rc;
    return mailbox_store(a->d, a->txn, op->mailbox, &a->mb);
}

static int
message_copy(struct apply *a)
{
    const struct mail_op *op = a->op;
    struct mail__folder_rec src, dst_own;
    int rc = mail__mailbox_load(a->d, a->txn, op->mailbox, &a->mb);
    if (rc != 0 || (rc = load_folder(a, op->folder, &src)) != 0)
        return rc;
    /* Copying into the same folder must update one record, not two stale copies of it. */
    bool same = strcmp(op->folder, op->new_folder) == 0;
    struct mail__folder_rec *dst = same ? &src : &dst_own;
    if (!same && (rc = load_folder(a, op->new_folder, dst)) != 0)
        return rc;

    for (size_t i = 0; i < op->n_uids; i++) {
        struct mail_message_info m;
        struct kw_buf kb;
        rc = message_load(a->d, a->txn, a->mb.id, src.folder_id, op->uids[i], &m, &kb);
        if (rc == TDM_ENOTFOUND)
            continue; /* expunged meanwhile */
        if (rc != 0)
            return rc;
        /* A move changes no usage, so only a copy answers to the quota. */
        if (!op->move && !quota_allows(&a->mb, m.size))
            return TDM_EQUOTA;
        if (dst->uidnext == UINT32_MAX)
            return TDM_ELIMIT;
        uint32_t old_uid = m.uid;
        uint64_t old_modseq = m.modseq;
        m.uid = dst->uidnext++;
        m.modseq = ++dst->highestmodseq;
        dst->messages++;
        if ((rc = message_store(a->d, a->txn, a->mb.id, dst->folder_id, &m)) != 0 ||
            (rc = modseq_put(a->d, a->txn, a->mb.id, dst->folder_id, m.modseq, m.uid, false)) !=
                0)
            return rc;
        if (op->move) {
            uint8_t k[MAIL__MESSAGE_KEY_LEN];
            mail__message_key(a->mb.id, src.folder_id, old_uid, k);
            if ((rc = del(a->txn, a->d->messages, k, sizeof k, "message")) != 0)
                return rc;
            src.messages--;
            src.highestmodseq++; /* the source saw an expunge */
            /* The tombstone takes the expunge's MODSEQ (dst is &src when same). */
            if ((rc = modseq_drop(a->d, a->txn, a->mb.id, src.folder_id, old_modseq)) != 0 ||
                (rc = modseq_put(a->d, a->txn, a->mb.id, src.folder_id, src.highestmodseq,
                                 old_uid, true)) != 0)
                return rc;
        } else {
            if ((rc = body_ref(a->d, a->txn, m.body_hash, NULL, 0, false)) != 0)
                return rc;
            a->mb.used_bytes += m.size;
            a->mb.used_messages++;
        }
        if (a->res->count == 0)
            a->res->first_uid = m.uid;
        a->res->count++;
    }
    a->res->uidvalidity = dst->uidvalidity;
    a->res->modseq = dst->highestmodseq;
    if ((!same && (rc = store_folder(a, op->folder, &src)) != 0) ||
        (rc = store_folder(a, op->new_folder, dst)) != 0)
        return rc;
    return mailbox_store(a->d, a->txn, op->mailbox, &a->mb);
}

/* ---- Entry point ---- */

static int
dispatch(struct apply *a)
{
    switch (a->op->type) {
    case TDM_REC_MAILBOX_CREATE:
        return mailbox_create(a);
    case TDM_REC_MAILBOX_DELETE:
        return mailbox_delete(a);
    case TDM_REC_MAILBOX_SET_QUOTA:
        return mailbox_set_quota(a);
    case TDM_REC_FOLDER_CREATE:
        return folder_create(a);
    case TDM_REC_FOLDER_RENAME:
        return folder_rename(a);
    case TDM_REC_FOLDER_DELETE:
        return folder_delete(a);
    case TDM_REC_FOLDER_SUBSCRIBE:
        return folder_subscribe(a);
    case TDM_REC_FOLDER_RECENT:
        return folder_recent(a);
    case TDM_REC_MESSAGE_FLAGS:
        return message_flags(a);
    case TDM_REC_MESSAGE_EXPUNGE:
        return message_expunge(a);
    case TDM_REC_MESSAGE_COPY:
        return message_copy(a);
    default:
        return TDM_EINVAL;
    }
}

int
mail_apply(const struct mail_dbis *dbis, MDB_txn *txn, const struct mail_op *op,
           struct mail_result *result_r)
{
    const char *why;
    memset(result_r, 0, sizeof *result_r);
    /* Ops normally come from the decoder, which validated them; tests and tools may not. */
    int rc = mail__op_validate(op, &why);
    if (rc != 0) {
        result_r->status = rc;
        return 0;
    }
    if (op->type == TDM_REC_MESSAGE_APPEND)
        return message_append(dbis, txn, op, result_r);

    struct apply a = {.d = dbis, .op = op, .res = result_r};
    if ((rc = mdb_txn_begin(mdb_txn_env(txn), txn, 0, &a.txn)) != 0)
        return mail__lmdb_error(rc, "begin nested transaction");
    rc = dispatch(&a);
    if (rc == 0) {
        if ((rc = mdb_txn_commit(a.txn)) != 0)
            return mail__lmdb_error(rc, "commit nested transaction");
        return 0;
    }
    mdb_txn_abort(a.txn);
    if (!is_refusal(rc))
        return rc;
    /* Refused: the nested transaction took every change back; report only why. */
    memset(result_r, 0, sizeof *result_r);
    result_r->status = rc;
    return 0;
}
