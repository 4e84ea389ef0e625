/*
 * COPY and MOVE, and their UID forms (imap_int.h; RFC 3501 6.4.7, RFC 6851, RFC 4315).
 *
 * One MESSAGE_COPY record (store/mail.h, with move for MOVE) per command, so a copy is all or
 * nothing: the mail model refuses the whole record when the quota would be passed, and a
 * command naming more than MAIL_MAX_UIDS messages is refused rather than split. The answer
 * comes once the record is durable: OK [COPYUID uidvalidity source-uids new-uids], the new
 * UIDs being consecutive in the order of the source UIDs. MOVE says COPYUID in an untagged
 * OK, then its expunges (through imap__sync, which owns their format), then the tagged OK.
 *
 * When some sources were expunged between the session's read and the record (the result
 * counts fewer than were sent), COPYUID still lists the ones copied (RFC 4315): those still in
 * the source folder afterwards were copied, and of the gone ones, the copied are the last to
 * have gone. Every expunge in a folder takes the next MODSEQ, so the tombstones
 * (mail_folder_changes) of the ones gone before the copy are below those of the ones gone
 * after it or moved by it.
 *
 * MOVE's expunge of its sources is unconditional by design: the client named the messages
 * to move, not "those with \Deleted", so nothing another session does to their flags meanwhile
 * changes what it asked for (EXPUNGE instead checks \Deleted when it applies,
 * imap_store_cmd.c).
 *
 * Copies are new messages in the destination, above its first unclaimed UID, so they are
 * \Recent for whichever session claims them next (imap_mailbox.c).
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

/* One COPY or MOVE whose record is in flight. Owned by itself: freed when it reports. */
struct copy_job {
    struct imap_session *s;
    bool move, by_uid;
    uint32_t *uids; /* the source UIDs sent, ascending, owned */
    size_t n;
    uint64_t src_modseq; /* the source's HIGHESTMODSEQ read before the record was sent */
};

static void
copy_job_free(struct copy_job **job)
{
    if (!*job)
        return;
    free((*job)->uids);
    free(*job);
    *job = NULL;
}

static const char *
command_name(const struct copy_job *job)
{
    return job->move ? (job->by_uid ? "UID MOVE" : "MOVE") : (job->by_uid ? "UID COPY" : "COPY");
}

static void
reply_refused(struct imap_session *s, int status)
{
    if (status == TDM_ENOTFOUND)
        imap__reply(s, s->tag, "NO", "TRYCREATE", "No such mailbox: create it first");
    else if (status == TDM_EQUOTA)
        imap__reply(s, s->tag, "NO", "OVERQUOTA", "The copies would pass your quota");
    else if (status == TDM_ELIMIT)
        imap__reply(s, s->tag, "NO", "LIMIT", "The destination mailbox has no UIDs left");
    else
        imap__reply(s, s->tag, "NO", "UNAVAILABLE", "Cannot copy now: try again later");
}

/* A sent source UID that is gone, and the MODSEQ of its tombstone (0: gone before the
 * session read the source). */
struct gone {
    uint32_t uid;
    uint64_t modseq;
};

struct tombstone_walk {
    struct gone *gone; /* ascending by UID */
    size_t n;
};

static int
gone_find(const void *key, const void *elem)
{
    uint32_t uid = *(const uint32_t *)key, other = ((const struct gone *)elem)->uid;
    return uid < other ? -1 : uid > other;
}

static int
collect_tombstone(void *ctx, const struct mail_change *ch)
{
    struct tombstone_walk *w = ctx;
    struct gone *g =
        ch->expunged ? bsearch(&ch->uid, w->gone, w->n, sizeof(*w->gone), gone_find) : NULL;
    if (g)
        g->modseq = ch->modseq;
    return 0;
}

static int
gone_latest_first(const void *a, const void *b)
{
    uint64_t x = ((const struct gone *)a)->modseq, y = ((const struct gone *)b)->modseq;
    return x > y ? -1 : x < y;
}

static int
uid_ascending(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Keeps in job->uids only the count sources that were copied (header comment). Returns true
 * when that is certain, false (job->uids unspecified) when it cannot be told: the source went
 * or could not be read, or the tombstones do not single out the copied ones.
 */
static bool
find_copied(struct copy_job *job, uint32_t count)
{
    struct imap_session *s = job->s;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0)
        return false;
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    struct tombstone_walk w = {.gone = malloc(job->n * sizeof(*w.gone))};
    size_t kept = 0;
    int ret = w.gone ? 0 : -ENOMEM;
    for (size_t i = 0; i < job->n && ret == 0; i++) {
        struct mail_message_info m;
        ret = mail_message_get(dbis, txn, s->user, s->folder, job->uids[i], &m);
        if (ret == 0) {
            job->uids[kept++] = job->uids[i];
        } else if (ret == TDM_ENOTFOUND) {
            w.gone[w.n++] = (struct gone){job->uids[i], 0};
            ret = 0;
        }
    }
    if (ret == 0)
        ret = mail_folder_changes(dbis, txn, s->user, s->folder, job->src_modseq, collect_tombstone,
                                  &w);
    mdb_txn_abort(txn);
    bool ok = ret == 0 && kept <= count;
    if (ok) {
        size_t more = count - kept;
        qsort(w.gone, w.n, sizeof(*w.gone), gone_latest_first);
        /* The copied are the more latest; the one after them must have gone strictly
         * earlier, and they all after the session's read. */
        ok = more <= w.n;
        if (ok && more > 0)
            ok = w.gone[more - 1].modseq > 0 &&
                 (more == w.n || w.gone[more].modseq < w.gone[more - 1].modseq);
        for (size_t i = 0; ok && i < more; i++)
            job->uids[kept++] = w.gone[i].uid;
        qsort(job->uids, kept, sizeof(*job->uids), uid_ascending);
        job->n = kept;
    }
    free(w.gone);
    return ok;
}

/*
 * "COPYUID uidvalidity source-uids new-uids" into code, or nothing when nothing was copied or
 * the copies cannot be matched to their sources (RFC 4315 lets a server leave COPYUID out).
 */
static void
copyuid(struct copy_job *job, const struct ipc_commit_reply *cr, struct imap_buf *code)
{
    if (cr->count == 0 || cr->count > job->n)
        return;
    if (cr->count < job->n && !find_copied(job, cr->count))
        return;
    imap_buf_printf(code, "COPYUID %u ", cr->uidvalidity);
    imap_write_uid_set(code, job->uids, job->n);
    uint32_t last = cr->first_uid + cr->count - 1;
    if (cr->count == 1)
        imap_buf_printf(code, " %u", cr->first_uid);
    else
        imap_buf_printf(code, " %u:%u", cr->first_uid, last);
}

static void
copy_answer(struct copy_job *job, const struct ipc_commit_reply *cr)
{
    struct imap_session *s = job->s;
    struct imap_buf code = IMAP_BUF_INIT;
    copyuid(job, cr, &code);
    char text[64];
    snprintf(text, sizeof(text), "%s completed", command_name(job));
    if (job->move) {
        /* RFC 6851 4.3: the COPYUID comes before the expunges. */
        if (code.len)
            imap__reply(s, NULL, "OK", code.data, "Moved");
        imap__sync(s, true);
        imap__reply_expunged(s, text);
    } else {
        /* A copy into the selected folder shows as new messages. The command is done with
         * its sequence numbers, so expunges may be told too (only FETCH, STORE and SEARCH
         * may not, RFC 3501 7.4.1). */
        imap__sync(s, true);
        imap__reply(s, s->tag, "OK", code.len ? code.data : NULL, text);
    }
    imap_buf_free(&code);
}

static void
copy_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct copy_job *job = ctx;
    struct imap_session *s = job->s;
    s->waiting--;
    if (s->conn) {
        s->busy++;
        const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
        int st = cr ? cr->status : status;
        if (st < 0)
            reply_refused(s, st);
        else
            copy_answer(job, cr);
        imap__resume(s);
        s->busy--;
    }
    copy_job_free(&job);
    imap__release(s);
}

/* Whether the destination exists, answered NO [TRYCREATE] (or why it cannot be read) if not.
 * *src_modseq_r: the source's HIGHESTMODSEQ now, before the record is sent (0 if gone). */
static bool
destination_exists(struct imap_session *s, const char *tag, const char *folder,
                   uint64_t *src_modseq_r)
{
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn))
        return false;
    struct mail_folder_info f;
    *src_modseq_r = mail_folder_get(dbis, txn, s->user, s->folder, &f) == 0 ? f.highestmodseq : 0;
    int ret = mail_folder_get(dbis, txn, s->user, folder, &f);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND)
        imap__reply(s, tag, "NO", "TRYCREATE", "No such mailbox: create it first");
    else if (ret < 0)
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox list");
    return ret == 0;
}

/* Sends job's record; the session waits for it. On failure answers at once. Takes job. */
static void
copy_start(struct imap_session *s, const char *tag, struct copy_job *job, const char *dest)
{
    struct mail_op op = {
        .type = TDM_REC_MESSAGE_COPY,
        .mailbox = s->user,
        .folder = s->folder,
        .new_folder = dest,
        .move = job->move,
        .uids = job->uids,
        .n_uids = job->n,
    };
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    uint8_t *payload;
    size_t len;
    const char *why = NULL;
    int ret = mail_op_encode(&op, &payload, &len, &why);
    if (ret == 0) {
        ret = core_link_commit(s->srv->core, s->database, op.type, payload, len, copy_done, job);
        free(payload);
    }
    if (ret < 0) {
        log_error("imap: %s: cannot commit a copy: %s", s->user, tdm_strerror(ret));
        reply_refused(s, -EAGAIN); /* the link's own refusals: the core is away or busy */
        copy_job_free(&job);
        return;
    }
    s->waiting++;
}

void
imap__cmd_copy(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    bool move = cmd->cmd == IMAP_CMD_MOVE;
    if (move && s->read_only) {
        imap__reply(s, tag, "NO", "READ-ONLY", "The mailbox is selected read-only");
        return;
    }
    char dest[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, tag, cmd->u.copy.mailbox, dest))
        return;
    /* Expunges are told before only for the UID forms, whose numbers they cannot shift. */
    imap__sync(s, cmd->uid);
    if (s->state != IMAP_STATE_SELECTED)
        return;
    struct imap_msg_ref *refs;
    size_t n;
    if (imap__resolve_set(s, tag, &cmd->u.copy.set, cmd->uid, &refs, &n) < 0)
        return;
    uint64_t src_modseq;
    if (!destination_exists(s, tag, dest, &src_modseq)) {
        free(refs);
        return;
    }
    if (n > MAIL_MAX_UIDS) {
        free(refs);
        imap__reply(s, tag, "NO", "LIMIT", "Too many messages in one command");
        return;
    }
    struct copy_job *job = calloc(1, sizeof(*job));
    uint32_t *uids = malloc((n ? n : 1) * sizeof(*uids));
    if (!job || !uids) {
        free(job);
        free(uids);
        free(refs);
        imap__reply(s, tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        uids[i] = refs[i].uid;
    free(refs);
    *job = (struct copy_job){
        .s = s, .move = move, .by_uid = cmd->uid, .uids = uids, .n = n, .src_modseq = src_modseq};
    if (n == 0) { /* nothing to copy (RFC 4315: no COPYUID then) */
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
        struct ipc_commit_reply none = {0};
        copy_answer(job, &none);
        copy_job_free(&job);
        return;
    }
    copy_start(s, tag, job, dest);
}
