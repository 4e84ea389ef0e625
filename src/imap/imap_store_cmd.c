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
    uint32_t *uids; /* ascending, owned */
    size_t n;
    size_t n_records, n_answered;
    int status;               /* the first failure, 0 when every record applied */
    struct job_range *ranges; /* one per record that applied, owned */
    size_t n_ranges;
};

static void
job_free(struct job **job)
{
    if (!*job)
        return;
    free((*job)->uids);
    free((*job)->ranges);
    free(*job);
    *job = NULL;
}

static bool
condstore(const struct imap_session *s)
{
    return s->enabled & IMAP_ENABLED_CONDSTORE;
}

/* A read transaction on the session's database; false after answering when it is not here. */
static bool
begin_read(struct imap_session *s, const char *tag, struct store_reader **r_r, MDB_txn **txn_r)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    if (!r || store_reader_begin(r, txn_r) < 0) {
        imap__reply(s, tag, "NO", "UNAVAILABLE", "Your mailbox is not available on this server now");
        return false;
    }
    *r_r = r;
    return true;
}

/* The tagged NO for a change that did not (or not entirely) happen. */
static void
reply_failed(struct imap_session *s, int status)
{
    if (status == TDM_ENOTFOUND)
        imap__reply(s, s->tag, "NO", "NONEXISTENT", "The mailbox is gone");
    else if (status == TDM_ELIMIT)
        imap__reply(s, s->tag, "NO", "LIMIT", "A message would have too many keywords");
    else
        imap__reply(s, s->tag, "NO", "UNAVAILABLE", "Cannot save the change now: try again later");
}

/* ---- Records in flight ---- */

static void job_answer(struct job *job);

static void
record_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct job *job = ctx;
    const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
    int st = cr ? cr->status : status;
    if (st < 0) {
        if (job->status == 0)
            job->status = st;
    } else {
        job->ranges[job->n_ranges++] = (struct job_range){cr->modseq, cr->count};
    }
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

/*
 * Commits op for job's UIDs, in records of at most MAIL_MAX_UIDS. Returns 0 when at least one
 * record was sent (the last to report answers the command; a failure to send the rest is kept
 * in job->status), else a negative code and nothing will report.
 */
static int
job_send(struct job *job, struct mail_op *op)
{
    size_t max_records = (job->n + MAIL_MAX_UIDS - 1) / MAIL_MAX_UIDS;
    job->ranges = calloc(max_records, sizeof(*job->ranges));
    if (!job->ranges)
        return -ENOMEM;
    for (size_t off = 0; off < job->n; off += MAIL_MAX_UIDS) {
        op->uids = job->uids + off;
        op->n_uids = job->n - off < MAIL_MAX_UIDS ? job->n - off : MAIL_MAX_UIDS;
        uint8_t *payload;
        size_t len;
        const char *why = NULL;
        int ret = mail_op_encode(op, &payload, &len, &why);
        if (ret == 0) {
            ret = core_link_commit(job->s->srv->core, job->s->database, op->type, payload, len,
                                   record_done, job);
            free(payload);
        }
        if (ret < 0) {
            log_error("imap: %s: cannot commit a change: %s", job->s->user, tdm_strerror(ret));
            if (job->n_records == 0)
                return ret;
            job->status = -EAGAIN; /* the core is away or busy: not the model's refusal */
            break;
        }
        job->n_records++;
    }
    return 0;
}

/* Sends job's records and makes the session wait for them; on failure answers at once. Takes
 * job. */
static void
job_start(struct imap_session *s, const char *tag, struct job *job, struct mail_op *op)
{
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    int ret = job_send(job, op);
    if (ret < 0) {
        reply_failed(s, -EAGAIN);
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
    }
    return job;
}

/* ---- STORE ---- */

/* Whether modseq was given by one of job's own records. */
static bool
own_modseq(const struct job *job, uint64_t modseq)
{
    for (size_t i = 0; i < job->n_ranges; i++)
        if (modseq <= job->ranges[i].modseq && modseq > job->ranges[i].modseq - job->ranges[i].count)
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
 * "* n FETCH (FLAGS (...) [UID u] [MODSEQ (m)])" for each message of the command still there,
 * with its flags after the change. Under .SILENT only CONDSTORE's MODSEQ of the messages this
 * command changed is sent (RFC 7162 3.1.3).
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
            mail_message_get(dbis, txn, s->user, s->folder, job->uids[i], &m) != 0)
            continue; /* expunged meanwhile */
        if (job->silent && !own_modseq(job, m.modseq))
            continue;
        imap_buf_printf(&s->out, "* %u FETCH (", msn);
        const char *sep = "";
        if (!job->silent) {
            imap__write_flags(&s->out, &m, imap__is_recent(s, m.uid));
            sep = " ";
        }
        if (job->by_uid) {
            imap_buf_printf(&s->out, "%sUID %u", sep, m.uid);
            sep = " ";
        }
        if (condstore(s))
            imap_buf_printf(&s->out, "%sMODSEQ (%llu)", sep, (unsigned long long)m.modseq);
        imap_buf_puts(&s->out, ")\r\n");
    }
    mdb_txn_abort(txn);
}

static void
store_answer(struct job *job)
{
    struct imap_session *s = job->s;
    store_fetches(job);
    /* Our own changes were just told: the view moves past them, so that only what others did
     * meanwhile comes out of the sync. */
    qsort(job->ranges, job->n_ranges, sizeof(*job->ranges), range_cmp);
    for (size_t i = 0; i < job->n_ranges; i++)
        imap_view_own_changes(s->view, job->ranges[i].modseq - job->ranges[i].count,
                              job->ranges[i].modseq);
    imap__sync(s, job->by_uid);
    if (job->status < 0)
        reply_failed(s, job->status);
    else
        imap__reply(s, s->tag, "OK", NULL, job->by_uid ? "UID STORE completed" : "STORE completed");
}

static enum mail_flag_mode
flag_mode(enum imap_store_op op)
{
    return op == IMAP_STORE_ADD      ? MAIL_FLAGS_ADD
           : op == IMAP_STORE_REMOVE ? MAIL_FLAGS_REMOVE
                                     : MAIL_FLAGS_REPLACE;
}

/* The UIDs of refs, ascending like refs. NULL only when out of memory (n > 0). */
static uint32_t *
uids_of(const struct imap_msg_ref *refs, size_t n)
{
    uint32_t *uids = malloc((n ? n : 1) * sizeof(*uids));
    if (uids)
        for (size_t i = 0; i < n; i++)
            uids[i] = refs[i].uid;
    return uids;
}

void
imap__cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    if (s->read_only) {
        imap__reply(s, tag, "NO", "READ-ONLY", "The mailbox is selected read-only");
        return;
    }
    if (cmd->u.store.has_unchangedsince) {
        imap__reply(s, tag, "NO", "CANNOT", "UNCHANGEDSINCE is not served yet");
        return;
    }
    struct mail_op op = {
        .type = TDM_REC_MESSAGE_FLAGS,
        .mailbox = s->user,
        .folder = s->folder,
        .flag_mode = flag_mode(cmd->u.store.op),
    };
    const char *keywords[MAIL_MAX_KEYWORDS];
    const char *why = NULL;
    int ret = imap__parse_flags(cmd->u.store.flags, cmd->u.store.n_flags, &op.flags, keywords,
                                &op.n_keywords, &why);
    if (ret == TDM_EINVAL) {
        imap__reply(s, tag, "BAD", NULL, why);
        return;
    }
    if (ret < 0) {
        imap__reply(s, tag, "NO", "LIMIT", why);
        return;
    }
    op.keywords = keywords;

    /* Like FETCH: changes others made are told first, expunges only for UID STORE. */
    imap__sync(s, cmd->uid);
    if (s->state != IMAP_STATE_SELECTED)
        return;
    struct imap_msg_ref *refs;
    size_t n;
    if (imap__resolve_set(s, tag, &cmd->u.store.set, cmd->uid, &refs, &n) < 0)
        return;
    if (n == 0) {
        imap__reply(s, tag, "OK", NULL, "No messages to change");
        return;
    }
    struct job *job = job_new(s, JOB_STORE, cmd->uid);
    if (!job || !(job->uids = uids_of(refs, n))) {
        free(refs);
        job_free(&job);
        imap__reply(s, tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    free(refs);
    job->n = n;
    job->silent = cmd->u.store.silent;
    job_start(s, tag, job, &op);
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
    struct store_reader *r;
    MDB_txn *txn;
    if (!begin_read(s, tag, &r, &txn)) {
        free(refs);
        return -EIO;
    }
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
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

static void
expunge_answer(struct job *job)
{
    struct imap_session *s = job->s;
    if (job->kind == JOB_CLOSE) {
        /* CLOSE tells no expunges (RFC 3501 6.4.2); when they failed the selection stays, so
         * the client can try again or UNSELECT. */
        if (job->status < 0) {
            reply_failed(s, job->status);
            return;
        }
        imap__unselect(s);
        imap__reply(s, s->tag, "OK", NULL, "CLOSE completed");
        return;
    }
    /* Even after a failure, what did apply is told. */
    imap__sync(s, true);
    if (job->status < 0)
        reply_failed(s, job->status);
    else
        imap__reply(s, s->tag, "OK", NULL,
                    job->by_uid ? "UID EXPUNGE completed" : "EXPUNGE completed");
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
    if (job->n == 0) { /* nothing to expunge: answered as if the records had applied */
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
        expunge_answer(job);
        job_free(&job);
        return;
    }
    struct mail_op op = {.type = TDM_REC_MESSAGE_EXPUNGE, .mailbox = s->user, .folder = s->folder};
    job_start(s, tag, job, &op);
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
