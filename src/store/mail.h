#ifndef TANDEM_STORE_MAIL_H
#define TANDEM_STORE_MAIL_H

/*
 * The mail model: mailboxes -> folders -> messages, with single-instance bodies.
 *
 * Every mutation is one log record (enum tdm_record_type in tandem/log_format.h) whose payload
 * mail_op_encode() builds and mail_op_decode() parses. mail_apply() applies one decoded record
 * inside the store's LMDB write transaction; it is deterministic — the same records applied in
 * the same order give byte-identical databases on every copy — so it never reads the clock,
 * random numbers or anything outside the payload and the database.
 *
 * Reads (mail_*_get/list, mail_body_get) run in any LMDB transaction, usually a read-only one
 * opened by a protocol worker; borrowed pointers they return live until that transaction ends.
 */

#include "tandem/log_format.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAIL_NAME_MAX 255u    /* bytes in a mailbox name, and in a folder's full path */
#define MAIL_HIER_SEP '/'     /* folder hierarchy separator */
#define MAIL_MAX_TARGETS 64u  /* (mailbox, folder) targets of one append (LMTP recipients) */
#define MAIL_MAX_KEYWORDS 64u /* keywords on one message */
#define MAIL_KEYWORD_MAX 64u  /* bytes in one keyword */
#define MAIL_MAX_UIDS 100000u /* UIDs in one flags/expunge/copy record */
#define MAIL_GUID_LEN 16u
#define MAIL_HASH_LEN 32u /* SHA-256 of the body */

/* System flags (IMAP). \Recent is a session property, not stored. */
enum mail_flag {
    MAIL_FLAG_SEEN = 1u << 0,
    MAIL_FLAG_ANSWERED = 1u << 1,
    MAIL_FLAG_FLAGGED = 1u << 2,
    MAIL_FLAG_DELETED = 1u << 3,
    MAIL_FLAG_DRAFT = 1u << 4,
    MAIL_FLAG_ALL = (1u << 5) - 1,
};

/* RFC 6154 special-use attributes of a folder. */
enum mail_special_use {
    MAIL_USE_ALL = 1u << 0,
    MAIL_USE_ARCHIVE = 1u << 1,
    MAIL_USE_DRAFTS = 1u << 2,
    MAIL_USE_FLAGGED = 1u << 3,
    MAIL_USE_JUNK = 1u << 4,
    MAIL_USE_SENT = 1u << 5,
    MAIL_USE_TRASH = 1u << 6,
};

enum mail_flag_mode {
    MAIL_FLAGS_REPLACE = 0,
    MAIL_FLAGS_ADD = 1,
    MAIL_FLAGS_REMOVE = 2,
};

#define MAIL_DELIVERY_ID_LEN 16u
/* A delivery id is kept in the database's index this long after its record's internal date,
 * then pruned (docs/smtp.md, "Transport dumpster": longer than the dumpster keeps messages,
 * so a resubmitted copy of any kept message still finds its id). */
#define MAIL_DELIVERY_ID_KEEP_SECONDS (7 * 24 * 3600)
/* Ids pruned by one append at most: a bounded cost per record that still outruns insertion. */
#define MAIL_DELIVERY_PRUNE_MAX 128u
/* The pruning horizon follows the newest delivery date less the keep time, but one record
 * moves it at most this far, and by at most 1/MAIL_DELIVERY_HORIZON_CATCH_UP more than the
 * newest date rose, to close a gap left by an earlier clamp: a clock stepped forward (by any
 * amount) shortens how long an id is remembered to no less than (7 d - 6 h) / 1.1, about
 * 6 d 3 h of real time, still longer than the dumpster keeps messages (docs/smtp.md,
 * "Transport dumpster"; docs/decisions.md). */
#define MAIL_DELIVERY_HORIZON_STEP_MAX (6 * 3600)
#define MAIL_DELIVERY_HORIZON_CATCH_UP 10

struct mail_target {
    const char *mailbox;
    const char *folder;
};

/*
 * One mutation. Which fields matter depends on type; the rest are ignored by the encoder.
 * Strings are NUL-terminated UTF-8; pointers are borrowed for the duration of the call.
 *
 *   MAILBOX_CREATE     mailbox, quota_bytes, quota_messages (0 = unlimited), uidvalidity
 *                      (first UIDVALIDITY handed to its folders; the caller picks it, usually
 *                      the current Unix time, so apply stays deterministic). Creates INBOX.
 *   MAILBOX_DELETE     mailbox (and all its folders and messages)
 *   MAILBOX_SET_QUOTA  mailbox, quota_bytes, quota_messages
 *   FOLDER_CREATE      mailbox, folder, special_use. Creates missing parents too.
 *   FOLDER_RENAME      mailbox, folder, new_folder. Children move along. Renaming INBOX moves
 *                      its messages to the new folder and leaves INBOX empty (RFC 3501 6.3.5).
 *   FOLDER_DELETE      mailbox, folder (not INBOX; its messages go; children stay)
 *   FOLDER_SUBSCRIBE   mailbox, folder, subscribed
 *   FOLDER_RECENT      mailbox, folder, uid_limit: claims \Recent (RFC 3501 2.3.2) for the UIDs
 *                      from the folder's first unclaimed UID up to uid_limit (capped at
 *                      UIDNEXT), so exactly one session sees each message as recent; the
 *                      result's first_uid is where the claim started and count how many UIDs
 *                      it covers (0: another session was first)
 *   MESSAGE_APPEND     targets[n_targets], guid, internal_date, flags, keywords, body,
 *                      delivery_ids (NULL, or n_targets entries, each NULL or
 *                      MAIL_DELIVERY_ID_LEN bytes not all zero naming that target's delivery:
 *                      the transport's id of one recipient of one message). A
 *                      target with a delivery id already in the database's delivery index
 *                      is dropped (target_status TDM_EDUPLICATE, target_uid the UID the first
 *                      delivery got); one delivered records its id with its mailbox, folder,
 *                      UID and the internal date, and ids delivered before the index's
 *                      horizon are pruned (at most MAIL_DELIVERY_PRUNE_MAX per record). The
 *                      horizon trails the newest internal date by MAIL_DELIVERY_ID_KEEP_SECONDS
 *                      but moves at most MAIL_DELIVERY_HORIZON_STEP_MAX per record, so one
 *                      date from a clock stepped forward cannot forget recent ids; it is
 *                      computed from record contents only, so the index stays the same on
 *                      every copy that applies the same records
 *   MESSAGE_FLAGS      mailbox, folder, uids, flag_mode, flags, keywords, unchanged_since:
 *                      0, or a compare-and-set (IMAP's UNCHANGEDSINCE, RFC 7162): when any
 *                      named message still there has a MODSEQ above it, the whole record is
 *                      refused with TDM_ECONFLICT and nothing changes
 *   MESSAGE_EXPUNGE    mailbox, folder, uids, deleted_only: when set, a named message is
 *                      expunged only if it still has \Deleted when the record applies, so a
 *                      \Deleted that another session took back after the expunger read the
 *                      folder keeps the message (IMAP EXPUNGE, UID EXPUNGE, CLOSE). The
 *                      messages expunged are told by the result: count of them, each with a
 *                      tombstone (mail_folder_changes) at one of the MODSEQs from
 *                      modseq - count + 1 to modseq, in UID order
 *   MESSAGE_COPY       mailbox, folder (source), uids, new_folder (destination), move
 *
 * uids must be strictly ascending; UIDs that no longer exist are skipped (result->count says
 * how many were acted on). Names are stored as given, except that INBOX is only ever spelled
 * "INBOX" (other spellings are refused by the encoder).
 */
struct mail_op {
    uint16_t type;
    const char *mailbox;
    const char *folder;
    const char *new_folder;
    uint64_t quota_bytes;
    uint64_t quota_messages;
    uint32_t uidvalidity;
    uint32_t special_use;
    bool subscribed;
    bool move;
    const struct mail_target *targets;
    size_t n_targets;
    const uint8_t *const *delivery_ids; /* MESSAGE_APPEND: NULL or one per target */
    uint8_t guid[MAIL_GUID_LEN];
    int64_t internal_date; /* seconds since the Unix epoch */
    uint32_t flags;
    enum mail_flag_mode flag_mode;
    const char *const *keywords;
    size_t n_keywords;
    const void *body;
    size_t body_len;
    const uint32_t *uids;
    size_t n_uids;
    uint32_t uid_limit;       /* FOLDER_RECENT */
    uint64_t unchanged_since; /* MESSAGE_FLAGS: 0, or the MODSEQ no message may be above */
    bool deleted_only;        /* MESSAGE_EXPUNGE: only those that still have \Deleted */
};

/*
 * Encodes op into a newly allocated payload (*payload_r, free() it). Returns 0, -ENOMEM, or
 * TDM_EINVAL / TDM_ELIMIT with *error_r naming the field.
 */
int mail_op_encode(const struct mail_op *op, uint8_t **payload_r, size_t *len_r,
                   const char **error_r);

/*
 * A decoded record: op's pointers borrow from the payload and from storage owned by the
 * decoded struct. Release with mail_decoded_clear().
 */
struct mail_decoded {
    struct mail_op op;
    struct mail_target *targets_storage;
    const uint8_t **delivery_ids_storage;
    const char **keywords_storage;
    uint32_t *uids_storage;
};

/*
 * Decodes payload of record type; checks every length and limit. Returns 0, -ENOMEM, or
 * TDM_EINVAL with *error_r naming what is wrong. On failure nothing needs clearing.
 */
int mail_op_decode(uint16_t type, const uint8_t *payload, size_t len, struct mail_decoded *dec_r,
                   const char **error_r);
void mail_decoded_clear(struct mail_decoded *dec);

/* True for the record types this module encodes, decodes and applies. */
bool mail_is_mail_record(uint16_t type);

/* The mail model's LMDB sub-databases. */
struct mail_dbis {
    MDB_dbi mailboxes;
    MDB_dbi folders;
    MDB_dbi messages;
    MDB_dbi bodies;
    MDB_dbi body_refs;
    MDB_dbi modseq;
    MDB_dbi deliveries;     /* delivery id -> (internal date, UIDVALIDITY, UID, mailbox, folder) */
    MDB_dbi delivery_times; /* (internal date, delivery id) -> nothing: the pruning order */
    /* False only in a read-only transaction on a database no writer has opened since the
     * delivery index was added: it reads as empty. */
    bool have_deliveries;
};
#define MAIL_DBI_COUNT 8

/* Opens (creating when txn is a write transaction) the sub-databases. Returns 0 or -errno-ish
 * (LMDB error codes are mapped: MDB_NOTFOUND -> TDM_ENOTFOUND, others -> -EIO with a log line). */
int mail_dbis_open(MDB_txn *txn, struct mail_dbis *dbis_r);

/* Result of applying one record. */
struct mail_result {
    /* 0, or TDM_ENOTFOUND / TDM_EEXIST / TDM_EQUOTA / TDM_ECONFLICT ... For every type but a
     * multi-target append, non-zero means nothing changed; for an append it is the first
     * failed target's status and the other targets may have been delivered (see
     * target_status[]). A target dropped as a duplicate (TDM_EDUPLICATE in target_status[])
     * is not a failure and does not set status. */
    int status;
    uint32_t uidvalidity; /* of the folder written (append: of targets[0]; copy: destination) */
    uint32_t first_uid;   /* append: UID in targets[0]; copy: first new UID (consecutive) */
    uint32_t count;       /* copy: messages copied; flags/expunge: messages changed */
    uint64_t modseq;      /* the folder's HIGHESTMODSEQ after the change */
    uint32_t n_targets;   /* append: */
    int target_status[MAIL_MAX_TARGETS];
    uint32_t target_uid[MAIL_MAX_TARGETS];
    uint32_t target_uidvalidity[MAIL_MAX_TARGETS];
};

/*
 * Applies a decoded record in write transaction txn. Deterministic. Returns 0 when the record
 * applied or was refused as a whole for a reason the result says (result->status != 0: the
 * transaction is then unchanged). Returns a negative code only for a storage failure (LMDB
 * error, -ENOMEM), after which the caller must abort txn. An append with several targets
 * applies per target: each target's status is in target_status[], and result->status is the
 * first non-zero one.
 */
int mail_apply(const struct mail_dbis *dbis, MDB_txn *txn, const struct mail_op *op,
               struct mail_result *result_r);

/* ---- Reading ---- */

/* A delivery id's entry in the index. mailbox and folder are borrowed until txn ends. */
struct mail_delivery_info {
    int64_t time; /* the internal date of the append that delivered it */
    uint32_t uidvalidity;
    uint32_t uid;
    const char *mailbox;
    const char *folder;
};
/* Returns 0, TDM_ENOTFOUND, or a negative storage error. */
int mail_delivery_get(const struct mail_dbis *dbis, MDB_txn *txn,
                      const uint8_t id[MAIL_DELIVERY_ID_LEN], struct mail_delivery_info *info_r);
/* How many delivery ids the index holds, in *count_r. */
int mail_delivery_count(const struct mail_dbis *dbis, MDB_txn *txn, uint64_t *count_r);
/* The index's pruning state: the newest delivery date a record with ids carried, and the
 * horizon (ids delivered before it are forgotten, at most MAIL_DELIVERY_PRUNE_MAX per record).
 * Returns 0, TDM_ENOTFOUND before the first record with ids, or a negative storage error. */
int mail_delivery_horizon(const struct mail_dbis *dbis, MDB_txn *txn, int64_t *newest_r,
                          int64_t *horizon_r);

struct mail_mailbox_info {
    uint64_t id;
    uint64_t quota_bytes;    /* 0 = unlimited */
    uint64_t quota_messages; /* 0 = unlimited */
    uint64_t used_bytes;
    uint64_t used_messages;
};

struct mail_folder_info {
    const char *name; /* borrowed, NUL-terminated: valid until the transaction ends */
    size_t name_len;
    uint32_t folder_id;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    uint32_t messages;
    uint32_t special_use;
    bool subscribed;
    uint32_t first_recent_uid; /* UIDs from here up are \Recent for whoever claims them */
};

struct mail_message_info {
    uint32_t uid;
    uint8_t guid[MAIL_GUID_LEN];
    int64_t internal_date;
    uint64_t size;
    uint32_t flags;
    uint64_t modseq;
    uint8_t body_hash[MAIL_HASH_LEN];
    size_t n_keywords;
    const char *keywords[MAIL_MAX_KEYWORDS]; /* borrowed, NUL-terminated */
};

/* Each returns 0, TDM_ENOTFOUND, or a negative storage error. */
int mail_mailbox_get(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                     struct mail_mailbox_info *info_r);
int mail_folder_get(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                    const char *folder, struct mail_folder_info *info_r);
int mail_message_get(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                     const char *folder, uint32_t uid, struct mail_message_info *info_r);
/* Zero-copy: *data_r points into LMDB's map and lives until txn ends. */
int mail_body_get(const struct mail_dbis *dbis, MDB_txn *txn, const uint8_t hash[MAIL_HASH_LEN],
                  const void **data_r, size_t *len_r);

/* Iterators call cb for each item in key order; a non-zero return from cb stops and is returned. */
typedef int mail_mailbox_cb(void *ctx, const char *mailbox, const struct mail_mailbox_info *info);
typedef int mail_folder_cb(void *ctx, const struct mail_folder_info *info);
typedef int mail_message_cb(void *ctx, const struct mail_message_info *info);
int mail_mailbox_list(const struct mail_dbis *dbis, MDB_txn *txn, mail_mailbox_cb *cb, void *ctx);
int mail_folder_list(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                     mail_folder_cb *cb, void *ctx);
int mail_message_list(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                      const char *folder, mail_message_cb *cb, void *ctx);

/*
 * What changed in a folder after a MODSEQ, for IMAP sessions (new messages, flag changes,
 * expunges without rescanning the folder) and CONDSTORE/QRESYNC: cb gets each message whose
 * current MODSEQ is above since (appended or changed; at its latest MODSEQ only), and each
 * message expunged at a MODSEQ above since (expunged = true; its UID is gone), in MODSEQ
 * order. Returns 0, TDM_ENOTFOUND (no such mailbox or folder), a storage error, or cb's
 * non-zero return.
 */
struct mail_change {
    uint32_t uid;
    uint64_t modseq;
    bool expunged;
};
typedef int mail_change_cb(void *ctx, const struct mail_change *change);
int mail_folder_changes(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                        const char *folder, uint64_t since, mail_change_cb *cb, void *ctx);

/*
 * SHA-256 over every key and value of every mail sub-database, in order: two copies with equal
 * digests hold identical mail. Used by `tandemctl db verify` and replication checks.
 */
int mail_digest(const struct mail_dbis *dbis, MDB_txn *txn, uint8_t digest_r[32]);

#endif
