/*
 * STORE, EXPUNGE, UID EXPUNGE and the expunge of CLOSE (imap_int.h).
 *
 * Each command becomes MESSAGE_FLAGS or MESSAGE_EXPUNGE records (store/mail.h) committed
 * through the core, and is answered once they are durable: STORE with FETCH (FLAGS ...) read
 * back from the store after the change, EXPUNGE through imap__sync, which owns the format of
 * expunge announcements (EXPUNGE, or VANISHED under QRESYNC). One record per command, unless
 * it names more than MAIL_MAX_UIDS messages: then it is split into records of that many,
 * each applied on its own (docs/imap.md). Messages expunged by someone else meanwhile are
 * skipped by the mail model, and so are left out of the answer.
 *
 * The expunges are deleted_only records: the session reads which messages have \Deleted,
 * but the mail model decides again when the record applies, so a message whose \Deleted
 * another session took back in between stays, and the answer (the sync's tombstones) names
 * only what went.
 *
 * UNCHANGEDSINCE (RFC 7162 3.1.3): the messages whose MODSEQ is already above it go to
 * [MODIFIED ...] and the others are sent as one conditional record, which the mail model
 * refuses whole (TDM_ECONFLICT) if one of them changed in the meantime. Then the session reads
 * again, moves what changed to MODIFIED and sends the rest: each round the set shrinks, and
 * what is stored passed the test at the moment it was applied.
 *
 * While a command's records are in flight the session waits (s->waiting): nothing else is read
 * from the client, so the view and the tag stay as the command left them.
 */
#include "imap/imap_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum job_kind {
    JOB_STORE,
    JOB_EXPUNGE, /* EXPUNGE and UID EXPUNGE */
    JOB_CLOSE,
};

/* What one record changed: the folder's HIGHESTMODSEQ after it and how many messages. */
struct job_range {
    uint64_t modseq;
    uint32_t count;
};

/* One command whose records are in flight. Owned by itself: freed when the last reports. */
struct job {
    struct imap_session *s;
    enum job_kind kind;
    bool by_uid;
    bool silent; /* STORE .SILENT */
    /* The record to send, but for its UIDs. Strings borrow from the session (user, folder,
     * which stay while it waits) and from keyword_text. */
    struct mail_op op;
    const char *keywords[MAIL_MAX_KEYWORDS];
    char keyword_text[MAIL_MAX_KEYWORDS][MAIL_KEYWORD_MAX + 1];
    uint32_t *uids; /* to change, ascending, owned */
    size_t n;
    size_t n_records, n_answered;
    int status;               /* the first failure, 0 when every record applied */
    struct job_range *ranges; /* one per record that applied, owned */
    size_t n_ranges;
    /* STORE (UNCHANGEDSINCE ...) */
    bool conditional;
    uint32_t *modified; /* UIDs that failed the test, owned, in no order */
    size_t n_modified;
    /* STORE: messages of the set that another session expunged were left out, or went before
     * the record applied (EXPUNGEISSUED, store_answer). */
    bool expunge_issued;
};

static void
job_free(struct job **job)
{
    if (!*job)
        return;
    free((*job)->uids);
    free((*job)->ranges);
    free((*job)->modified);
    free(*job);
    *job = NULL;
}

static bool
condstore(const struct imap_session *s)
{
    return s->enabled & IMAP_ENABLED_CONDSTORE;
}

/* The tagged NO for a change that did not (or not entirely) happen. */
static void
reply_failed(struct imap_session *s, const char *tag, int status)
{
    if (status == TDM_ENOTFOUND)
        imap__reply(s, tag, "NO", "NONEXISTENT", "The mailbox is gone");
    else if (status == TDM_ELIMIT)
        imap__reply(s, tag, "NO", "LIMIT", "A message would have too many keywords");
    else
        imap__reply(s, tag, "NO", "UNAVAILABLE", "Cannot save the change now: try again later");
}

/* ---- Records in flight ---- */

static void job_answer(struct job *job);
static int job_retry(struct job *job);

static void
record_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct job *job = ctx;
    const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
    int st = cr ? cr->status : status;
    if (st == TDM_ECONFLICT && job->conditional) {
        st = job_retry(job);
        if (st == 1)
            return; /* the record sent again reports instead */
    } else if (st == 0) {
        job->ranges[job->n_ranges++] = (struct job_range){cr->modseq, cr->count};
    }
    if (st < 0 && job->status == 0)
        job->status = st;
    if (++job->n_answered < job->n_records)
        return;

    struct imap_session *s = job->s;
    s->waiting--;
    if (s->conn) {
        s->busy++;
        job_answer(job);
        imap__resume(s);
        s->busy--;
    }
    job_free(&job);
    imap__release(s);
}

/* Commits job->op for uids[0..n); record_done reports. Returns 0 or the link's refusal. */
static int
send_record(struct job *job, const uint32_t *uids, size_t n)
{
    job->op.uids = uids;
    job->op.n_uids = n;
    uint8_t *payload;
    size_t len;
    const char *why = NULL;
    int ret = mail_op_encode(&job->op, &payload, &len, &why);
    if (ret == 0) {
        ret = core_link_commit(job->s->srv->core, job->s->database, job->op.type, payload, len,
                               record_done, job);
        free(payload);
    }
    if (ret < 0)
        log_error("imap: %s: cannot commit a change: %s", job->s->user, tdm_strerror(ret));
    return ret;
}

/*
 * Commits job->op for job's UIDs, in records of at most MAIL_MAX_UIDS. Returns 0 when at
 * least one record was sent (the last to report answers the command; a failure to send the
 * rest is kept in job->status), else a negative code and nothing will report.
 */
static int
job_send(struct job *job)
{
    size_t max_records = (job->n + MAIL_MAX_UIDS - 1) / MAIL_MAX_UIDS;
    job->ranges = calloc(max_records, sizeof(*job->ranges));
    if (!job->ranges)
        return -ENOMEM;
    for (size_t off = 0; off < job->n; off += MAIL_MAX_UIDS) {
        size_t n = job->n - off < MAIL_MAX_UIDS ? job->n - off : MAIL_MAX_UIDS;
        if (send_record(job, job->uids + off, n) < 0) {
            if (job->n_records == 0)
                return -EAGAIN;
            job->status = -EAGAIN; /* the core is away or busy: not the model's refusal */
            break;
        }
        job->n_records++;
    }
    return 0;
}

/* Sends job's records and makes the session wait for them; answers at once when nothing is
 * to be sent or sending fails. Takes job. */
static void
job_start(struct imap_session *s, const char *tag, struct job *job)
{
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    if (job->n == 0) { /* answered as if the records had applied */
        job_answer(job);
        job_free(&job);
        return;
    }
    if (job_send(job) < 0) {
        reply_failed(s, s->tag, -EAGAIN);
        job_free(&job);
        return;
    }
    s->waiting++;
}

static struct job *
job_new(struct imap_session *s, enum job_kind kind, bool by_uid)
{
    struct job *job = calloc(1, sizeof(*job));
    if (job) {
        job->s = s;
        job->kind = kind;
        job->by_uid = by_uid;
        job->op.type = kind == JOB_STORE ? TDM_REC_MESSAGE_FLAGS : TDM_REC_MESSAGE_EXPUNGE;
        job->op.deleted_only = kind != JOB_STORE;
        job->op.mailbox = s->user;
        job->op.folder = s->folder;
    }
    return job;
}

/* ---- UNCHANGEDSINCE ---- */

/*
 * Reads the MODSEQ of job's UIDs now: those above the test join job->modified, those gone are
 * dropped, the rest stay in job->uids. Returns 0 or a negative code.
 */
static int
partition(struct job *job)
{
    struct imap_session *s = job->s;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0)
        return -EAGAIN;
    if (!job->modified && !(job->modified = malloc((job->n ? job->n : 1) * sizeof(uint32_t)))) {
        mdb_txn_abort(txn);
        return -ENOMEM;
    }
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    size_t kept = 0;
    int ret = 0;
    for (size_t i = 0; i < job->n && ret == 0; i++) {
        struct mail_message_info m;
        ret = mail_message_get(dbis, txn, s->user, s->folder, job->uids[i], &m);
        if (ret == TDM_ENOTFOUND) {
            ret = 0; /* expunged: left out, and said so (store_answer) */
            job->expunge_issued = true;
        } else if (ret == 0 && m.modseq > job->op.unchanged_since) {
            job->modified[job->n_modified++] = m.uid;
        } else if (ret == 0) {
            job->uids[kept++] = m.uid;
        }
    }
    mdb_txn_abort(txn);
    if (ret == 0)
        job->n = kept;
    return ret;
}

/* After TDM_ECONFLICT: returns 1 when the rest was sent again (the new record reports), 0
 * when nothing is left to send, or a negative code. */
static int
job_retry(struct job *job)
{
    int ret = partition(job);
    if (ret < 0 || job->n == 0)
        return ret;
    return send_record(job, job->uids, job->n) < 0 ? -EAGAIN : 1;
}

/* ---- STORE ---- */

/* Whether modseq was given by one of job's own records. */
static bool
own_modseq(const struct job *job, uint64_t modseq)
{
    for (size_t i = 0; i < job->n_ranges; i++)
        if (modseq <= job->ranges[i].modseq &&
            modseq > job->ranges[i].modseq - job->ranges[i].count)
            return true;
    return false;
}

static int
range_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct job_range *)a)->modseq, y = ((const struct job_range *)b)->modseq;
    return x < y ? -1 : x > y;
}

/*
 * The flags of each message of the command still there, after the change, in the format of
 * every flag update (imap__write_flag_update: UID, and MODSEQ under CONDSTORE, always, which
 * QRESYNC requires and plain STORE allows). Under .SILENT only CONDSTORE's
 * "* n FETCH (UID u MODSEQ (m))" of the messages this command changed (RFC 7162 3.1.3).
 */
static void
store_fetches(struct job *job)
{
    struct imap_session *s = job->s;
    if (job->silent && !condstore(s))
        return;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0)
        return; /* the flags are durable; the next sync tells them */
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    for (size_t i = 0; i < job->n; i++) {
        uint32_t msn = imap_view_msn(s->view, job->uids[i]);
        struct mail_message_info m;
        if (!msn || imap_view_pending(s->view, msn) ||
            mail_message_get(dbis, txn, s->user, s->folder, job->uids[i], &m) != 0) {
            job->expunge_issued = true; /* expunged meanwhile */
            continue;
        }
        if (!job->silent)
            imap__write_flag_update(s, msn, &m);
        else if (own_modseq(job, m.modseq))
            imap_buf_printf(&s->out, "* %u FETCH (UID %u MODSEQ (%llu))\r\n", msn, m.uid,
                            (unsigned long long)m.modseq);
    }
    mdb_txn_abort(txn);
}

static int
uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* "MODIFIED set": the UIDs that failed UNCHANGEDSINCE, as UIDs for UID STORE, else as the
 * client's sequence numbers (no expunge was told during STORE, so they still hold). */
static void
modified_code(struct job *job, struct imap_buf *code)
{
    struct imap_session *s = job->s;
    if (job->n_modified > 1)
        qsort(job->modified, job->n_modified, sizeof(*job->modified), uid_cmp);
    if (!job->by_uid)
        for (size_t i = 0; i < job->n_modified; i++)
            job->modified[i] = imap_view_msn(s->view, job->modified[i]);
    imap_buf_puts(code, "MODIFIED ");
    imap_write_uid_set(code, job->modified, job->n_modified);
}

static void
store_answer(struct job *job)
{
    struct imap_session *s = job->s;
    store_fetches(job);
    /* Our own changes were just told: the view moves past them, so that only what others did
     * meanwhile comes out of the sync. */
    if (job->n_ranges > 1)
        qsort(job->ranges, job->n_ranges, sizeof(*job->ranges), range_cmp);
    for (size_t i = 0; i < job->n_ranges; i++)
        imap_view_own_changes(s->view, job->ranges[i].modseq - job->ranges[i].count,
                              job->ranges[i].modseq);
    imap__sync(s, job->by_uid);
    /* As for FETCH (RFC 9051 7.1): a STORE that left out messages another session expunged,
     * of which no EXPUNGE may be told during STORE, says so; UID STORE told them in the sync
     * just above. The tagged code goes to MODIFIED when there is one. */
    const char *issued = job->expunge_issued && !job->by_uid ? "EXPUNGEISSUED" : NULL;
    if (job->status < 0) {
        reply_failed(s, s->tag, job->status);
    } else if (job->n_modified) {
        if (issued)
            imap__reply(s, NULL, "OK", issued, "Messages were expunged by another session");
        struct imap_buf code = IMAP_BUF_INIT;
        modified_code(job, &code);
        imap__reply(s, s->tag, "OK", code.data, "Conditional STORE failed");
        imap_buf_free(&code);
    } else {
        imap__reply(s, s->tag, "OK", issued,
                    job->by_uid ? "UID STORE completed" : "STORE completed");
    }
}

static enum mail_flag_mode
flag_mode(enum imap_store_op op)
{
    return op == IMAP_STORE_ADD      ? MAIL_FLAGS_ADD
           : op == IMAP_STORE_REMOVE ? MAIL_FLAGS_REMOVE
                                     : MAIL_FLAGS_REPLACE;
}

/*
 * The flags of cmd into job->op, keywords copied into the job (the command dies before the
 * records are sent again). Returns false after answering a bad flag list.
 */
static bool
store_flags(struct imap_session *s, const struct imap_command *cmd, struct job *job)
{
    const char *keywords[MAIL_MAX_KEYWORDS];
    const char *why = NULL;
    int ret = imap__parse_flags(cmd->u.store.flags, cmd->u.store.n_flags, &job->op.flags, keywords,
                                &job->op.n_keywords, &why);
    if (ret == TDM_EINVAL) {
        imap__reply(s, cmd->tag, "BAD", NULL, why);
        return false;
    }
    if (ret < 0) {
        imap__reply(s, cmd->tag, "NO", "LIMIT", why);
        return false;
    }
    for (size_t i = 0; i < job->op.n_keywords; i++) {
        /* imap__parse_flags checked the length. */
        snprintf(job->keyword_text[i], sizeof(job->keyword_text[i]), "%s", keywords[i]);
        job->keywords[i] = job->keyword_text[i];
    }
    job->op.keywords = job->keywords;
    job->op.flag_mode = flag_mode(cmd->u.store.op);
    return true;
}

/* job->uids = the UIDs of the messages cmd names. Returns false after answering. */
static bool
store_targets(struct imap_session *s, const struct imap_command *cmd, struct job *job)
{
    struct imap_msg_ref *refs;
    size_t n;
    int resolved = imap__resolve_set(s, cmd->tag, &cmd->u.store.set, cmd->uid, &refs, &n);
    if (resolved < 0)
        return false;
    job->expunge_issued = resolved == 1;
    job->uids = malloc((n ? n : 1) * sizeof(*job->uids));
    if (!job->uids) {
        free(refs);
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++)
        job->uids[i] = refs[i].uid;
    job->n = n;
    free(refs);
    return true;
}

void
imap__cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    if (s->read_only) {
        imap__reply(s, tag, "NO", "READ-ONLY", "The mailbox is selected read-only");
        return;
    }
    struct job *job = job_new(s, JOB_STORE, cmd->uid);
    if (!job) {
        imap__reply(s, tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    job->silent = cmd->u.store.silent;
    if (!store_flags(s, cmd, job)) {
        job_free(&job);
        return;
    }
    if (cmd->u.store.has_unchangedsince) {
        /* A CONDSTORE enabling command (RFC 7162 3.1): MODSEQ in every FETCH from now on. */
        s->enabled |= IMAP_ENABLED_CONDSTORE;
        job->conditional = true;
        job->op.unchanged_since = cmd->u.store.unchangedsince;
    }
    /* Like FETCH: changes others made are told first, expunges only for UID STORE. */
    imap__sync(s, cmd->uid);
    if (s->state != IMAP_STATE_SELECTED || !store_targets(s, cmd, job)) {
        job_free(&job);
        return;
    }
    if (job->conditional) {
        if (job->n > MAIL_MAX_UIDS) {
            imap__reply(s, tag, "NO", "LIMIT", "UNCHANGEDSINCE names too many messages");
            job_free(&job);
            return;
        }
        /* UNCHANGEDSINCE 0 sends nothing: every message has a MODSEQ of at least 1, and the
         * mail model reads 0 as no condition. */
        int ret = partition(job);
        if (ret < 0) {
            reply_failed(s, tag, ret);
            job_free(&job);
            return;
        }
    }
    job_start(s, tag, job);
}

/* ---- EXPUNGE, UID EXPUNGE, CLOSE ---- */

struct deleted_walk {
    const struct imap_session *s;
    uint32_t *uids;
    size_t n, cap;
};

static int
deleted_add(struct deleted_walk *w, uint32_t uid)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        uint32_t *grown = realloc(w->uids, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        w->uids = grown;
        w->cap = cap;
    }
    w->uids[w->n++] = uid;
    return 0;
}

/* Messages the client knows of (in the view, not pending an announcement) marked \Deleted:
 * someone else's \Deleted on a message the client has not heard of is not its to expunge. */
static int
collect_deleted(void *ctx, const struct mail_message_info *m)
{
    struct deleted_walk *w = ctx;
    uint32_t msn = imap_view_msn(w->s->view, m->uid);
    if (!(m->flags & MAIL_FLAG_DELETED) || !msn || imap_view_pending(w->s->view, msn))
        return 0;
    return deleted_add(w, m->uid);
}

/*
 * The \Deleted messages to expunge: every one the client knows of, or (set != NULL, UID
 * EXPUNGE) those of set. Returns 0 with an owned array in *w (ascending), or a negative code
 * after answering.
 */
static int
find_deleted(struct imap_session *s, const char *tag, const struct imap_seqset *set,
             struct deleted_walk *w)
{
    struct imap_msg_ref *refs = NULL;
    size_t n = 0;
    if (set && imap__resolve_set(s, tag, set, true, &refs, &n) < 0)
        return -ERANGE;
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn)) {
        free(refs);
        return -EIO;
    }
    int ret = 0;
    if (!set) {
        ret = mail_message_list(dbis, txn, s->user, s->folder, collect_deleted, w);
    } else {
        for (size_t i = 0; i < n && ret == 0; i++) {
            struct mail_message_info m;
            int got = mail_message_get(dbis, txn, s->user, s->folder, refs[i].uid, &m);
            if (got == 0 && (m.flags & MAIL_FLAG_DELETED))
                ret = deleted_add(w, m.uid);
            else if (got != TDM_ENOTFOUND && got != 0)
                ret = got;
        }
    }
    mdb_txn_abort(txn);
    free(refs);
    if (ret == TDM_ENOTFOUND) {
        ret = 0; /* the folder went: the sync below says so */
    } else if (ret < 0) {
        free(w->uids);
        w->uids = NULL;
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
    }
    return ret;
}

void
imap__reply_expunged(struct imap_session *s, const char *text)
{
    if (!condstore(s) || !s->view) {
        imap__reply(s, s->tag, "OK", NULL, text);
        return;
    }
    /* The view's: what the session has just been told, never more, so a client that keeps it
     * misses nothing it was not told (RFC 5162 erratum 1810). */
    char code[48];
    snprintf(code, sizeof(code), "HIGHESTMODSEQ %llu",
             (unsigned long long)imap_view_highestmodseq(s->view));
    imap__reply(s, s->tag, "OK", code, text);
}

static void
expunge_answer(struct job *job)
{
    struct imap_session *s = job->s;
    if (job->kind == JOB_CLOSE) {
        /* CLOSE tells no expunges (RFC 3501 6.4.2); when they failed the selection stays, so
         * the client can try again or UNSELECT. */
        if (job->status < 0) {
            reply_failed(s, s->tag, job->status);
            return;
        }
        imap__unselect(s);
        imap__reply(s, s->tag, "OK", NULL, "CLOSE completed");
        return;
    }
    /* Even after a failure, what did apply is told. */
    imap__sync(s, true);
    if (job->status < 0)
        reply_failed(s, s->tag, job->status);
    else
        imap__reply_expunged(s, job->by_uid ? "UID EXPUNGE completed" : "EXPUNGE completed");
}

static void
job_answer(struct job *job)
{
    if (job->kind == JOB_STORE)
        store_answer(job);
    else
        expunge_answer(job);
}

/* Expunges the \Deleted messages (of set, when not NULL) for EXPUNGE, UID EXPUNGE or CLOSE. */
static void
expunge(struct imap_session *s, const char *tag, enum job_kind kind, const struct imap_seqset *set)
{
    if (kind != JOB_CLOSE) {
        imap__sync(s, true);
        if (s->state != IMAP_STATE_SELECTED)
            return;
    }
    struct deleted_walk w = {.s = s};
    if (find_deleted(s, tag, set, &w) < 0)
        return;
    struct job *job = job_new(s, kind, set != NULL);
    if (!job) {
        free(w.uids);
        imap__reply(s, tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    job->uids = w.uids;
    job->n = w.n;
    job_start(s, tag, job);
}

void
imap__cmd_expunge(struct imap_session *s, const struct imap_command *cmd)
{
    if (s->read_only) {
        imap__reply(s, cmd->tag, "NO", "READ-ONLY", "The mailbox is selected read-only");
        return;
    }
    expunge(s, cmd->tag, JOB_EXPUNGE, cmd->uid ? &cmd->u.copy.set : NULL);
}

/* CLOSE expunges silently, then leaves the selection; a read-only selection only leaves. */
void
imap__cmd_close(struct imap_session *s, const struct imap_command *cmd)
{
    if (s->read_only) {
        imap__unselect(s);
        imap__reply(s, cmd->tag, "OK", NULL, "CLOSE completed");
        return;
    }
    expunge(s, cmd->tag, JOB_CLOSE, NULL);
}
