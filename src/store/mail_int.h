#ifndef TANDEM_STORE_MAIL_INT_H
#define TANDEM_STORE_MAIL_INT_H

/*
 * Shared only by the mail model's own files (mail_codec.c, mail_apply.c, mail_read.c).
 * The LMDB record layouts these helpers read and write are described at the top of
 * mail_read.c; the log payload layouts at the top of mail_codec.c.
 */

#include "store/mail.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* First byte of every mail record payload; bump it when a payload layout changes. */
#define MAIL__CODEC_VERSION 1u
/* MESSAGE_FLAGS: a bit of the mode byte saying an unchanged_since follows the flags. */
#define MAIL__FLAGS_CONDITIONAL 0x80u
/* MESSAGE_EXPUNGE: the top bit of the UID count says deleted_only. No count reaches it
 * (MAIL_MAX_UIDS), so a decoder that predates it refuses the record instead of misreading it. */
#define MAIL__EXPUNGE_DELETED_ONLY 0x80000000u
/* First byte of every value in the mail sub-databases; bump it when a value layout changes. */
#define MAIL__DB_VERSION 1u

#define MAIL__SPECIAL_USE_ALL ((1u << 7) - 1)
#define MAIL__INBOX "INBOX"
#define MAIL__INBOX_LEN 5u

/* Sub-database names. The "mail." prefix keeps them clear of the store core's "meta". */
#define MAIL__DBI_MAILBOXES "mail.mailboxes"
#define MAIL__DBI_FOLDERS "mail.folders"
#define MAIL__DBI_MESSAGES "mail.messages"
#define MAIL__DBI_BODIES "mail.bodies"
#define MAIL__DBI_BODY_REFS "mail.body_refs"
#define MAIL__DBI_MODSEQ "mail.modseq"
#define MAIL__DBI_DELIVERIES "mail.deliveries"
#define MAIL__DBI_DELIVERY_TIMES "mail.delivery_times"

/* mail_delivery.c: records a delivered id in the index (an id recorded again moves to its
 * new delivery, and its old time key goes); 0 or a negative storage error. */
int mail__delivery_record(const struct mail_dbis *dbis, MDB_txn *txn,
                          const uint8_t id[MAIL_DELIVERY_ID_LEN], int64_t time,
                          uint32_t uidvalidity, uint32_t uid, const char *mailbox,
                          const char *folder);
/* For a record with ids dated `date`: moves the index's horizon (mail.h,
 * MAIL_DELIVERY_HORIZON_STEP_MAX) and prunes at most max ids delivered before it, oldest
 * first. Depends on date and the index only. 0 or a negative storage error. */
int mail__delivery_age(const struct mail_dbis *dbis, MDB_txn *txn, int64_t date, unsigned max);

/*
 * Checks every field op's type uses (names, limits, flags, UID order). Shared by the encoder
 * and the decoder so that whatever decodes also re-encodes, and by mail_apply() for ops that
 * never went through the codec. Returns 0, TDM_EINVAL or TDM_ELIMIT with *error_r static.
 */
int mail__op_validate(const struct mail_op *op, const char **error_r);

/* True when name (NUL-terminated, validated) is exactly the INBOX. */
bool mail__is_inbox(const char *name, size_t len);

/*
 * Maps an LMDB return code: MDB_NOTFOUND -> TDM_ENOTFOUND, MDB_MAP_FULL / MDB_TXN_FULL ->
 * -ENOSPC, ENOMEM -> -ENOMEM, anything else -> -EIO. Logs everything but MDB_NOTFOUND,
 * naming what failed.
 */
int mail__lmdb_error(int rc, const char *what);

/* Big-endian helpers for keys, so that LMDB's byte order is numeric order. */
static inline void
mail__be_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void
mail__be_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint32_t
mail__be_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t
mail__be_get64(const uint8_t *p)
{
    return ((uint64_t)mail__be_get32(p) << 32) | mail__be_get32(p + 4);
}

/* ---- Keys ---- */

#define MAIL__MAILBOX_KEY_MAX (MAIL_NAME_MAX + 1u)
#define MAIL__FOLDER_KEY_MAX (8u + MAIL_NAME_MAX + 1u)
#define MAIL__MESSAGE_KEY_LEN 16u
#define MAIL__MODSEQ_KEY_LEN 20u
#define MAIL__MODSEQ_VAL_LEN 6u
/* The mailboxes key holding the next mailbox id: no mailbox name is empty, so none maps here. */
#define MAIL__NEXT_ID_KEY ""
#define MAIL__NEXT_ID_KEY_LEN 1u

/* Fills out with name and its NUL; returns the key length. len <= MAIL_NAME_MAX. */
size_t mail__mailbox_key(const char *name, size_t len, uint8_t out[MAIL__MAILBOX_KEY_MAX]);
/* Fills out with the mailbox id (BE), name and its NUL; returns the key length. */
size_t mail__folder_key(uint64_t mailbox_id, const char *name, size_t len,
                        uint8_t out[MAIL__FOLDER_KEY_MAX]);
void mail__message_key(uint64_t mailbox_id, uint32_t folder_id, uint32_t uid,
                       uint8_t out[MAIL__MESSAGE_KEY_LEN]);
/* mail.modseq key: u64 mailbox id, u32 folder id, u64 modseq (all BE). */
void mail__modseq_key(uint64_t mailbox_id, uint32_t folder_id, uint64_t modseq,
                      uint8_t out[MAIL__MODSEQ_KEY_LEN]);

/* ---- Values ---- */

struct mail__mailbox_rec {
    uint64_t id;
    uint64_t quota_bytes;
    uint64_t quota_messages;
    uint64_t used_bytes;
    uint64_t used_messages;
    uint32_t next_folder_id;   /* 0: exhausted */
    uint32_t next_uidvalidity; /* 0: exhausted */
};
#define MAIL__MAILBOX_REC_LEN 49u

struct mail__folder_rec {
    uint32_t folder_id;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    uint32_t messages;
    uint32_t special_use;
    bool subscribed;
    uint32_t first_recent_uid;
};
#define MAIL__FOLDER_REC_LEN 34u

/* Fixed part of a message value, then per keyword: u8 length, bytes, NUL. */
#define MAIL__MESSAGE_REC_FIXED 78u
#define MAIL__MESSAGE_REC_MAX                                                                      \
    (MAIL__MESSAGE_REC_FIXED + MAIL_MAX_KEYWORDS * (MAIL_KEYWORD_MAX + 2u))

void mail__mailbox_rec_encode(const struct mail__mailbox_rec *rec,
                              uint8_t out[MAIL__MAILBOX_REC_LEN]);
/* Returns 0 or TDM_ECORRUPT (logged). */
int mail__mailbox_rec_decode(const MDB_val *val, struct mail__mailbox_rec *rec_r);
void mail__folder_rec_encode(const struct mail__folder_rec *rec, uint8_t out[MAIL__FOLDER_REC_LEN]);
int mail__folder_rec_decode(const MDB_val *val, struct mail__folder_rec *rec_r);
/* Keywords must be sorted and unique (apply keeps them so); returns the value length. */
size_t mail__message_rec_encode(const struct mail_message_info *msg,
                                uint8_t out[MAIL__MESSAGE_REC_MAX]);
/* msg_r->keywords borrow from val. Returns 0 or TDM_ECORRUPT (logged). */
int mail__message_rec_decode(const MDB_val *val, uint32_t uid, struct mail_message_info *msg_r);

/* ---- Lookups shared by reads and apply ---- */

/* Each returns 0, TDM_ENOTFOUND, TDM_ECORRUPT or a mapped LMDB error. */
int mail__mailbox_load(const struct mail_dbis *dbis, MDB_txn *txn, const char *name,
                       struct mail__mailbox_rec *rec_r);
int mail__folder_load(const struct mail_dbis *dbis, MDB_txn *txn, uint64_t mailbox_id,
                      const char *name, size_t len, struct mail__folder_rec *rec_r);

#endif
