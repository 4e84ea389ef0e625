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
 * Copies are new messages in the destination, above its first unclaimed UID, so they are
 * \Recent for whichever session claims them next (imap_mailbox.c).
 */
#include "imap/imap_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* One COPY or MOVE whose record is in flight. Owned by itself: freed when it reports. */
struct copy_job {
    struct imap_session *s;
    bool move, by_uid;
    uint32_t *uids; /* the source UIDs sent, ascending, owned */
    size_t n;
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

/*
 * "COPYUID uidvalidity source-uids new-uids" into code, or nothing when the copies cannot be
 * matched to their sources: when fewer were copied than sent, some were expunged meanwhile
 * and the reply does not say which (RFC 4315 lets a server leave COPYUID out).
 */
static void
copyuid(const struct copy_job *job, const struct ipc_commit_reply *cr, struct imap_buf *code)
{
    if (cr->count == 0 || cr->count != job->n)
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

/* Whether the destination exists, answered NO [TRYCREATE] (or why it cannot be read) if not. */
static bool
destination_exists(struct imap_session *s, const char *tag, const char *folder)
{
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn))
        return false;
    struct mail_folder_info f;
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
    if (!destination_exists(s, tag, dest)) {
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
    *job = (struct copy_job){.s = s, .move = move, .by_uid = cmd->uid, .uids = uids, .n = n};
    if (n == 0) { /* nothing to copy (RFC 4315: no COPYUID then) */
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
        struct ipc_commit_reply none = {0};
        copy_answer(job, &none);
        copy_job_free(&job);
        return;
    }
    copy_start(s, tag, job, dest);
}
