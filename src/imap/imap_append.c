/*
 * APPEND (imap_int.h): RFC 3501 / RFC 9051 APPEND, MULTIAPPEND (RFC 3502), literal8 messages
 * (RFC 3516 BINARY), LITERAL+ (RFC 7888), APPENDLIMIT (RFC 7889) and UIDPLUS's APPENDUID
 * (RFC 4315).
 *
 * A message's bytes are not in the command: the parser hands them out as they arrive
 * (IMAP_ITEM_LITERAL_DATA), and they are gathered here in a buffer of exactly the announced
 * size (struct imap_append, owned by the session in s->append). Only when the command
 * completes are its flags and dates known, so every message of a MULTIAPPEND is held until
 * then; IMAP_APPEND_LIMIT bounds what one command may hold in all.
 *
 * Refusing early. A synchronizing literal is announced before its bytes are sent: the
 * mailbox, the quota and the size are checked then, and a refusal (NO [TRYCREATE],
 * NO [OVERQUOTA], NO [LIMIT]) goes instead of "+", so a client never uploads megabytes for
 * nothing. A non-synchronizing literal (LITERAL+) comes unannounced: its bytes are taken (up
 * to the limit) and everything is checked when the command completes, which is also the only
 * time a refusal may be sent.
 *
 * Committing. Each message is one MESSAGE_APPEND record; a command's records are sent a window
 * at a time (the core applies one connection's records in order, so UIDs ascend) and the
 * command is answered when the last one is durable: OK [APPENDUID uidvalidity uid-set].
 * MULTIAPPEND is all or nothing (RFC 3502): the quota is checked for all the messages before
 * any record is sent, and if a record is refused anyway (the folder deleted meanwhile, the
 * quota lowered), the messages already appended are expunged again before the NO. A worker
 * that dies between the two leaves them in; docs/decisions.md says why that is accepted.
 */
#include "imap/imap_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One message record: the body plus its names, keywords and fixed fields, which take far
 * less than the room left under the log's record limit. */
_Static_assert(IMAP_APPEND_LIMIT + 64u * 1024u <= TDM_LOG_MAX_PAYLOAD,
               "an APPEND message must fit in one log record");

/* ---- Receiving ---- */

struct append_msg {
    uint8_t *data; /* owned, size bytes */
    uint64_t size, got;
};

struct imap_append {
    struct append_msg *msgs; /* in the command's order */
    size_t n, cap;
    uint64_t held; /* sum of the sizes */
    /* A refusal decided while unannounced bytes arrived: sent when the command completes. */
    const char *refuse_code, *refuse_text;
};

static void
append_free(struct imap_append **pa)
{
    struct imap_append *a = *pa;
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->msgs[i].data);
    free(a->msgs);
    free(a);
    *pa = NULL;
}

void
imap__append_discard(struct imap_session *s)
{
    append_free(&s->append);
}

static void
refuse_later(struct imap_append *a, const char *code, const char *text)
{
    if (!a->refuse_code) {
        a->refuse_code = code;
        a->refuse_text = text;
    }
}

/* Makes room for one more message of size bytes. Returns false with the refusal in *code_r
 * and *text_r. */
static bool
add_message(struct imap_append *a, uint64_t size, const char **code_r, const char **text_r)
{
    if (size == 0) {
        *code_r = "CANNOT";
        *text_r = "An empty message is not stored";
        return false;
    }
    if (size > IMAP_APPEND_LIMIT - a->held) {
        *code_r = "LIMIT";
        *text_r = "The messages of one APPEND may not exceed APPENDLIMIT in all";
        return false;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        struct append_msg *m = realloc(a->msgs, cap * sizeof(*m));
        if (!m)
            goto nomem;
        a->msgs = m;
        a->cap = cap;
    }
    uint8_t *data = malloc((size_t)size);
    if (!data)
        goto nomem;
    a->msgs[a->n++] = (struct append_msg){.data = data, .size = size};
    a->held += size;
    return true;
nomem:
    *code_r = "UNAVAILABLE";
    *text_r = "Not enough memory for the message now: try again later";
    return false;
}

/* What the user's mailbox can still take, as the store's quota check will judge it. */
static bool
quota_allows(const struct mail_mailbox_info *mb, uint64_t bytes, uint64_t messages)
{
    if (mb->quota_bytes && (bytes > mb->quota_bytes || mb->used_bytes > mb->quota_bytes - bytes))
        return false;
    return !mb->quota_messages ||
           (messages <= mb->quota_messages && mb->used_messages <= mb->quota_messages - messages);
}

/* Whether folder exists and the mailbox has room for bytes more in messages more. Returns 0,
 * or a negative code after answering tag (TRYCREATE, OVERQUOTA, UNAVAILABLE, SERVERBUG). */
static int
check_target(struct imap_session *s, const char *tag, const char *folder, uint64_t bytes,
             uint64_t messages)
{
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn))
        return -EAGAIN;
    struct mail_folder_info f;
    struct mail_mailbox_info mb;
    int ret = mail_folder_get(dbis, txn, s->user, folder, &f);
    if (ret == 0)
        ret = mail_mailbox_get(dbis, txn, s->user, &mb);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND) {
        /* RFC 3501 6.3.11: the client may CREATE it and try again. */
        imap__reply(s, tag, "NO", "TRYCREATE", "No such mailbox");
        return ret;
    }
    if (ret < 0) {
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
        return ret;
    }
    if (!quota_allows(&mb, bytes, messages)) {
        imap__reply(s, tag, "NO", "OVERQUOTA", "The mailbox has no room for that");
        return TDM_EQUOTA;
    }
    return 0;
}

/* A synchronizing message literal: checked in full before the client sends it. Returns false
 * after answering tag. */
static bool
admit(struct imap_session *s, const char *tag, const struct imap_parser_out *out)
{
    TDM_ASSERT(out->mailbox); /* the parser names it with every message it announces */
    char folder[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, tag, out->mailbox, folder))
        return false;
    struct imap_append *a = s->append;
    if (check_target(s, tag, folder, a->held + out->msg_size, a->n + 1) < 0)
        return false;
    const char *code, *text;
    if (!add_message(a, out->msg_size, &code, &text)) {
        imap__reply(s, tag, "NO", code, text);
        return false;
    }
    return true;
}

/* Whether the session may append: before login, bytes are neither held nor checked (the
 * command is refused BAD when it completes), so a stranger cannot make the server hold
 * megabytes. */
static bool
logged_in(const struct imap_session *s)
{
    return s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED;
}

void
imap__append_announced(struct imap_session *s, const struct imap_parser_out *out)
{
    if (out->msg_index == 0)
        imap__append_discard(s); /* a new APPEND */
    if (!logged_in(s)) {
        if (out->tag) {
            imap__reply(s, out->tag, "BAD", NULL, "Log in first");
            imap_parser_cancel_literal(s->parser);
        } else {
            imap_buf_puts(&s->out, out->response); /* the command's BAD will say it */
        }
        return;
    }
    if (!s->append && !(s->append = calloc(1, sizeof(*s->append)))) {
        if (out->tag) {
            imap__reply(s, out->tag, "NO", "UNAVAILABLE", "Not enough memory now");
            imap_parser_cancel_literal(s->parser);
            return;
        }
        imap_buf_puts(&s->out, out->response); /* cannot be refused without a tag */
        return;
    }
    struct imap_append *a = s->append;
    if (!out->tag) {
        /* The parser could not echo the tag (too long): take the bytes and let the completed
         * command carry the answer. */
        imap_buf_puts(&s->out, out->response);
        return;
    }
    bool ok;
    if (a->refuse_code) { /* decided on unannounced bytes before this literal */
        imap__reply(s, out->tag, "NO", a->refuse_code, a->refuse_text);
        ok = false;
    } else if (out->msg_index > a->n) { /* an empty {0+} message came before */
        imap__reply(s, out->tag, "NO", "CANNOT", "An empty message is not stored");
        ok = false;
    } else {
        ok = admit(s, out->tag, out);
    }
    if (!ok) {
        imap_parser_cancel_literal(s->parser); /* the client will not send the bytes */
        imap__append_discard(s);
        return;
    }
    imap_buf_puts(&s->out, out->response);
}

void
imap__append_data(struct imap_session *s, const struct imap_parser_out *out)
{
    if (!logged_in(s))
        return;
    /* s->append is NULL here at the start of a new APPEND: the last one was taken when it
     * completed (a logged-in session's APPEND always reaches imap__cmd_append), or discarded
     * when it was refused. */
    if (!s->append && !(s->append = calloc(1, sizeof(*s->append))))
        return; /* the command will find no bytes and say so */
    struct imap_append *a = s->append;
    if (a->refuse_code)
        return; /* the rest of the command is void */
    if (out->msg_offset == 0 && out->msg_index == a->n) {
        /* A LITERAL+ message: nothing was announced. */
        const char *code, *text;
        if (!add_message(a, out->msg_size, &code, &text)) {
            refuse_later(a, code, text);
            return;
        }
    }
    if (out->msg_index >= a->n) { /* an empty {0+} message came before */
        refuse_later(a, "CANNOT", "An empty message is not stored");
        return;
    }
    struct append_msg *m = &a->msgs[out->msg_index];
    TDM_ASSERT(out->msg_offset == m->got && out->len <= m->size - m->got);
    memcpy(m->data + m->got, out->data, out->len);
    m->got += out->len;
}

/* ---- Committing ---- */

/* Records of one APPEND in flight at once: enough to keep group commit busy, few enough that a
 * MULTIAPPEND of thousands of messages leaves the worker's link (shared by every session) room
 * for the others, and stops soon after a refusal. */
#define APPEND_WINDOW 32u

struct append_job;

/* The context of one message's record: which message it is, of which job. */
struct append_record {
    struct append_job *job;
    size_t index;
};

/* One command's records, encoded, sent APPEND_WINDOW at a time. */
struct append_job {
    struct imap_session *s;
    char folder[MAIL_NAME_MAX + 1];
    size_t n, n_sent, n_answered;
    int status;                    /* the first failure, 0 while all went well */
    uint32_t uidvalidity;          /* of the first message */
    uint8_t **payloads;            /* [n]: owned until sent */
    size_t *lens;                  /* [n] */
    uint32_t *uids;                /* [n]: 0 for a message not appended */
    struct append_record *records; /* [n] */
};

static struct append_job *
job_new(struct imap_session *s, const char *folder, size_t n)
{
    struct append_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    job->s = s;
    job->n = n;
    snprintf(job->folder, sizeof(job->folder), "%s", folder);
    job->payloads = calloc(n, sizeof(*job->payloads));
    job->lens = calloc(n, sizeof(*job->lens));
    job->uids = calloc(n, sizeof(*job->uids));
    job->records = calloc(n, sizeof(*job->records));
    if (!job->payloads || !job->lens || !job->uids || !job->records) {
        free(job->payloads);
        free(job->lens);
        free(job->uids);
        free(job->records);
        free(job);
        return NULL;
    }
    return job;
}

static void
job_free(struct append_job **pj)
{
    struct append_job *job = *pj;
    if (!job)
        return;
    for (size_t i = 0; i < job->n; i++)
        free(job->payloads[i]);
    free(job->payloads);
    free(job->lens);
    free(job->uids);
    free(job->records);
    free(job);
    *pj = NULL;
}

static void
job_fail(struct append_job *job, int status)
{
    if (job->status == 0)
        job->status = status;
}

static void
job_answer(struct append_job *job)
{
    struct imap_session *s = job->s;
    if (job->status < 0) {
        if (job->status == TDM_ENOTFOUND)
            imap__reply(s, s->tag, "NO", "TRYCREATE", "No such mailbox");
        else
            imap__reply_commit_failure(s, s->tag, job->status);
        return;
    }
    /* The session sees its new messages now when they went to its selected folder. */
    if (s->state == IMAP_STATE_SELECTED)
        imap__sync(s, true);
    struct imap_buf code = IMAP_BUF_INIT;
    imap_buf_printf(&code, "APPENDUID %u ", job->uidvalidity);
    imap_write_uid_set(&code, job->uids, job->n);
    imap__reply(s, s->tag, "OK", code.data, "APPEND completed");
    imap_buf_free(&code);
}

/* The job is over: answer (when the client is still there) and let go of the session. */
static void
job_done(struct append_job *job)
{
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

static void
undo_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct append_job *job = ctx;
    int st = status < 0 ? status : reply->u.commit_reply.status;
    if (st < 0)
        log_error("imap: %s: a failed MULTIAPPEND left messages in %s: %s", job->s->user,
                  job->folder, tdm_strerror(st));
    job_done(job);
}

/*
 * Some records failed after others were appended: expunges those (RFC 3502: all or none).
 * Returns true when the expunge was sent (undo_done finishes the job).
 */
static bool
undo(struct append_job *job)
{
    uint32_t *uids = malloc(job->n * sizeof(*uids));
    size_t n = 0;
    for (size_t i = 0; uids && i < job->n; i++)
        if (job->uids[i])
            uids[n++] = job->uids[i]; /* ascending: one connection's records apply in order */
    struct mail_op op = {.type = TDM_REC_MESSAGE_EXPUNGE,
                         .mailbox = job->s->user,
                         .folder = job->folder,
                         .uids = uids,
                         .n_uids = n};
    uint8_t *payload = NULL;
    size_t len;
    const char *why;
    int ret = uids ? mail_op_encode(&op, &payload, &len, &why) : -ENOMEM;
    if (ret == 0)
        ret = core_link_commit(job->s->srv->core, job->s->database, op.type, payload, len,
                               undo_done, job);
    free(payload);
    free(uids);
    if (ret < 0)
        log_error("imap: %s: a failed MULTIAPPEND left %zu messages in %s: %s", job->s->user, n,
                  job->folder, tdm_strerror(ret));
    return ret == 0;
}

static void message_committed(void *ctx, int status, const struct ipc_msg *reply);

/* Sends records until APPEND_WINDOW are in flight, all are sent, or one fails. */
static void
job_send_more(struct append_job *job)
{
    struct imap_session *s = job->s;
    while (job->status == 0 && job->n_sent < job->n &&
           job->n_sent - job->n_answered < APPEND_WINDOW) {
        size_t i = job->n_sent;
        job->records[i] = (struct append_record){job, i};
        int ret =
            core_link_commit(s->srv->core, s->database, TDM_REC_MESSAGE_APPEND, job->payloads[i],
                             job->lens[i], message_committed, &job->records[i]);
        if (ret < 0) {
            log_error("imap: %s: cannot commit an APPEND: %s", s->user, tdm_strerror(ret));
            job_fail(job, -EAGAIN); /* the link's refusal, not the store's */
            return;
        }
        free(job->payloads[i]); /* the link copied it */
        job->payloads[i] = NULL;
        job->n_sent++;
    }
}

static void
message_committed(void *ctx, int status, const struct ipc_msg *reply)
{
    const struct append_record *rec = ctx;
    struct append_job *job = rec->job;
    const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
    job->n_answered++;
    if (!cr || cr->status < 0) {
        job_fail(job, cr ? cr->status : -EAGAIN); /* the link dropped: not the store's verdict */
    } else {
        job->uids[rec->index] = cr->first_uid;
        if (rec->index == 0 || !job->uidvalidity)
            job->uidvalidity = cr->uidvalidity;
    }
    job_send_more(job);
    if (job->n_answered < job->n_sent)
        return; /* more to hear */
    bool appended_some = false;
    for (size_t k = 0; k < job->n; k++)
        appended_some |= job->uids[k] != 0;
    if (job->status < 0 && appended_some && undo(job))
        return;
    job_done(job);
}

/*
 * The record of one message: body, flags and keywords, internal date (the command's or now).
 * Returns 0 with an owned payload, or a negative code after answering tag.
 */
static int
encode_message(struct imap_session *s, const char *tag, const char *folder,
               const struct imap_append_msg *am, const struct append_msg *m, uint8_t **payload_r,
               size_t *len_r)
{
    const char *keywords[MAIL_MAX_KEYWORDS];
    size_t n_keywords = 0;
    uint32_t flags = 0;
    const char *why = NULL;
    int ret = imap__parse_flags(am->flags, am->n_flags, &flags, keywords, &n_keywords, &why);
    if (ret == TDM_ELIMIT) {
        imap__reply(s, tag, "NO", "LIMIT", why);
        return ret;
    }
    if (ret < 0) { /* an unknown system flag: as STORE answers it */
        imap__reply(s, tag, "BAD", NULL, why);
        return ret;
    }
    struct mail_target target = {s->user, folder};
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &target,
                         .n_targets = 1,
                         .internal_date = am->has_date ? am->date.time : (int64_t)time(NULL),
                         .flags = flags,
                         .keywords = keywords,
                         .n_keywords = n_keywords,
                         .body = m->data,
                         .body_len = (size_t)m->size};
    randombytes_buf(op.guid, sizeof(op.guid));
    ret = mail_op_encode(&op, payload_r, len_r, &why);
    if (ret < 0)
        imap__reply(s, tag, "NO", ret == -ENOMEM ? "UNAVAILABLE" : "CANNOT",
                    ret == -ENOMEM ? "Not enough memory now: try again later" : why);
    return ret;
}

/* Encodes every message of a and starts sending; the job answers when the last record is
 * durable. Takes a. */
static void
send_messages(struct imap_session *s, const struct imap_command *cmd, const char *folder,
              struct imap_append *a)
{
    struct append_job *job = job_new(s, folder, a->n);
    if (!job) {
        imap__reply(s, cmd->tag, "NO", "UNAVAILABLE", "Not enough memory now: try again later");
        append_free(&a);
        return;
    }
    /* Encode all first: a message the store would refuse (a bad flag) fails the command
     * before anything is appended. Each body is let go once its record holds it. */
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < a->n; i++) {
        ret = encode_message(s, cmd->tag, folder, &cmd->u.append.msgs[i], &a->msgs[i],
                             &job->payloads[i], &job->lens[i]);
        free(a->msgs[i].data);
        a->msgs[i].data = NULL;
    }
    append_free(&a);
    if (ret < 0) { /* answered */
        job_free(&job);
        return;
    }
    job_send_more(job);
    if (job->n_sent == 0) { /* the core is away: nothing will report */
        imap__reply_commit_failure(s, cmd->tag, job->status);
        job_free(&job);
        return;
    }
    snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
    s->waiting++;
}

/* Whether every message of the command arrived whole. */
static bool
all_received(const struct imap_append *a, const struct imap_command *cmd)
{
    if (!a || a->n != cmd->u.append.n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->msgs[i].got != a->msgs[i].size || a->msgs[i].size != cmd->u.append.msgs[i].size)
            return false;
    return true;
}

void
imap__cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
    struct imap_append *a = s->append; /* taken: the next APPEND starts afresh */
    s->append = NULL;
    if (a && a->refuse_code) {
        imap__reply(s, cmd->tag, "NO", a->refuse_code, a->refuse_text);
        append_free(&a);
        return;
    }
    if (!all_received(a, cmd)) {
        bool empty = false;
        for (size_t i = 0; i < cmd->u.append.n; i++)
            empty |= cmd->u.append.msgs[i].size == 0;
        if (empty)
            imap__reply(s, cmd->tag, "NO", "CANNOT", "An empty message is not stored");
        else
            imap__reply(s, cmd->tag, "NO", "UNAVAILABLE", "Not enough memory now: try again later");
        append_free(&a);
        return;
    }
    char folder[MAIL_NAME_MAX + 1];
    /* Checked again: unannounced messages were not checked at all, and the folder or the
     * quota may have changed while the bytes came. */
    if (!imap__store_name(s, cmd->tag, cmd->u.append.mailbox, folder) ||
        check_target(s, cmd->tag, folder, a->held, a->n) < 0) {
        append_free(&a);
        return;
    }
    send_messages(s, cmd, folder, a);
}
