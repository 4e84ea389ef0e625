/*
 * FETCH and UID FETCH (imap_int.h), every data item of RFC 3501/9051, BINARY (RFC 3516) and
 * CONDSTORE/QRESYNC's MODSEQ, CHANGEDSINCE and VANISHED (RFC 7162). The items themselves are
 * written by imap_fetch_items.c; this file runs the command:
 *
 *   1. the plan (imap_fetch.h) and the messages the set names (imap__resolve_set), filtered by
 *      CHANGEDSINCE; VANISHED (EARLIER) from the folder's expunge tombstones;
 *   2. a body item without PEEK on a read-write selection sets \Seen: one MESSAGE_FLAGS record
 *      (MAIL_FLAGS_ADD) for the messages that lack it, and nothing is written until the core
 *      says it is durable. If it fails, the command answers NO and sends no body: a client
 *      that got the bytes would believe the message read while the flag never stuck
 *      (docs/decisions.md);
 *   3. the responses, in batches: one LMDB read transaction per batch, a batch ends when the
 *      connection's output is full, and the next starts when it drains (conn_ops.on_drained),
 *      so FETCH 1:* BODY[] of a large folder holds about one message and the connection's
 *      output limit in memory, and no read transaction stays open while a client is slow.
 *      A message expunged between batches is skipped.
 *
 * While a FETCH is asynchronous (waiting for the commit or for the output to drain) it holds
 * one s->waiting count, so the pump reads no further command; its state is s->fetch.
 */
#include "imap/imap_fetch.h"

#include "lib/conn.h"
#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages written under one read transaction at most, so even a client that reads as fast
 * as we write does not keep one open for the whole folder. */
#define FETCH_BATCH_MESSAGES 256u
/* The session's buffer is handed to the connection once it holds this much. */
#define FETCH_FLUSH_BYTES (64u * 1024u)

struct fetch_msg {
    uint32_t msn, uid;
    bool flags_changed; /* this command set \Seen on it */
};

/* The MODSEQs one \Seen record took: (modseq - count, modseq]. */
struct seen_range {
    uint64_t modseq;
    uint32_t count;
};

struct imap_fetch_job {
    struct imap_fetch_plan plan;
    struct fetch_msg *msgs; /* owned, ascending */
    size_t n, next;
    bool by_uid;
    bool async;                /* holds one s->waiting count */
    bool running;              /* inside run(): the connection closing must not free the job */
    unsigned commits;          /* MESSAGE_FLAGS records in flight */
    int commit_status;         /* the first failure among them */
    struct seen_range *ranges; /* what each applied record changed, owned */
    size_t n_ranges;
    bool expunge_issued; /* messages of the set were expunged by another session */
};

static void
job_free(struct imap_fetch_job **job)
{
    if (!*job)
        return;
    imap__fetch_plan_clear(&(*job)->plan);
    free((*job)->msgs);
    free((*job)->ranges);
    free(*job);
    *job = NULL;
}

/* Ends the FETCH: the tagged answer (unless the client is gone), the job freed, the pump
 * resumed when it was held. */
static void
finish(struct imap_session *s, const char *status, const char *code, const char *text)
{
    struct imap_fetch_job *job = s->fetch;
    bool by_uid = job->by_uid, async = job->async;
    s->fetch = NULL;
    job_free(&job);
    if (s->conn)
        imap__reply(s, s->tag, status, code,
                    text     ? text
                    : by_uid ? "UID FETCH completed"
                             : "FETCH completed");
    if (async) {
        s->waiting--;
        imap__resume(s);
    }
}

static const char *
read_failure_code(int ret)
{
    return ret == -ENOMEM ? "SERVERBUG" : "UNAVAILABLE";
}

/* ---- Batches ---- */

/*
 * Writes responses from job->next under one read transaction, until the batch is full or the
 * connection's output is. Returns 0, or a negative code after which the command fails
 * (TDM_EINVAL: an encoding BINARY cannot undo).
 */
static int
batch(struct imap_session *s, struct imap_fetch_job *job)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    int ret = r ? store_reader_begin(r, &txn) : -EIO;
    if (ret < 0)
        return ret;
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    for (unsigned count = 0; job->next < job->n && count < FETCH_BATCH_MESSAGES; count++) {
        const struct fetch_msg *fm = &job->msgs[job->next];
        struct mail_message_info m;
        ret = mail_message_get(dbis, txn, s->user, s->folder, fm->uid, &m);
        if (ret == 0)
            ret = imap__fetch_write(s, &job->plan, dbis, txn, fm->msn, &m, fm->flags_changed);
        if (ret == TDM_ENOTFOUND) {
            ret = 0; /* expunged meanwhile: nothing left to show */
            job->expunge_issued = true;
        }
        if (ret < 0)
            break;
        job->next++;
        if (s->out.len >= FETCH_FLUSH_BYTES)
            imap__flush(s);
        if (!s->conn || conn_output_full(s->conn))
            break;
    }
    mdb_txn_abort(txn);
    imap__flush(s);
    return ret;
}

/* Writes batches until the job is done (and answers it) or the output is full (and waits for
 * imap__fetch_drained). */
static void
run(struct imap_session *s)
{
    struct imap_fetch_job *job = s->fetch;
    job->running = true;
    int ret = 0;
    while (s->conn && job->next < job->n && !conn_output_full(s->conn) &&
           (ret = batch(s, job)) == 0)
        ;
    job->running = false;
    if (ret == TDM_EINVAL) {
        finish(s, "NO", "UNKNOWN-CTE",
               "A part has a Content-Transfer-Encoding this server cannot decode");
    } else if (ret < 0) {
        log_error("imap: %s: FETCH: %s", s->user, tdm_strerror(ret));
        finish(s, "NO", read_failure_code(ret), "Cannot read the mailbox now");
    } else if (!s->conn || job->next == job->n) {
        /* RFC 9051 7.1 (RFC 5530): what was left out was expunged; a NOOP will say so. */
        finish(s, "OK", job->expunge_issued ? "EXPUNGEISSUED" : NULL, NULL);
    } else if (!job->async) {
        job->async = true; /* the output is full: go on when it drains */
        s->waiting++;
    }
}

void
imap__fetch_drained(struct imap_session *s)
{
    struct imap_fetch_job *job = s->fetch;
    if (!job || job->running || job->commits)
        return;
    s->busy++;
    run(s);
    s->busy--;
    imap__release(s);
}

void
imap__fetch_abandon(struct imap_session *s)
{
    struct imap_fetch_job *job = s->fetch;
    if (!job || job->running || job->commits)
        return; /* run() or the commit's reply ends it */
    finish(s, "NO", NULL, "Connection gone");
}

/* ---- \Seen ---- */

static int
range_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct seen_range *)a)->modseq, y = ((const struct seen_range *)b)->modseq;
    return x < y ? -1 : x > y;
}

/* The responses will carry FLAGS for every message whose \Seen this command set: the view
 * moves past those changes, so the next sync does not announce them a second time. */
static void
skip_own_changes(struct imap_session *s, struct imap_fetch_job *job)
{
    qsort(job->ranges, job->n_ranges, sizeof(*job->ranges), range_cmp);
    for (size_t i = 0; i < job->n_ranges; i++)
        imap_view_own_changes(s->view, job->ranges[i].modseq - job->ranges[i].count,
                              job->ranges[i].modseq);
}

static void
seen_committed(void *ctx, int status, const struct ipc_msg *reply)
{
    struct imap_session *s = ctx;
    struct imap_fetch_job *job = s->fetch;
    const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
    int st = cr ? cr->status : status;
    if (st < 0 && job->commit_status == 0)
        job->commit_status = st;
    if (cr && st == 0 && cr->count)
        job->ranges[job->n_ranges++] = (struct seen_range){cr->modseq, cr->count};
    if (--job->commits)
        return;
    s->busy++;
    if (!s->conn) {
        finish(s, "NO", NULL, "Connection gone");
    } else if (job->commit_status < 0) {
        log_error("imap: %s: setting \\Seen for FETCH failed: %s", s->user,
                  tdm_strerror(job->commit_status));
        finish(s, "NO", "UNAVAILABLE",
               "Cannot mark the messages \\Seen now, so nothing was fetched: try again, or use "
               "BODY.PEEK");
    } else {
        skip_own_changes(s, job);
        run(s);
    }
    s->busy--;
    imap__release(s);
}

/* Sends MESSAGE_FLAGS +\Seen for uids[0..n) (ascending), in records of at most MAIL_MAX_UIDS.
 * Returns 0 (job->commits replies will come) or a negative code when none was sent. */
static int
commit_seen(struct imap_session *s, struct imap_fetch_job *job, const uint32_t *uids, size_t n)
{
    job->ranges = calloc((n + MAIL_MAX_UIDS - 1) / MAIL_MAX_UIDS, sizeof(*job->ranges));
    if (!job->ranges)
        return -ENOMEM;
    for (size_t at = 0; at < n; at += MAIL_MAX_UIDS) {
        struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                             .mailbox = s->user,
                             .folder = s->folder,
                             .uids = uids + at,
                             .n_uids = n - at < MAIL_MAX_UIDS ? n - at : MAIL_MAX_UIDS,
                             .flag_mode = MAIL_FLAGS_ADD,
                             .flags = MAIL_FLAG_SEEN};
        uint8_t *payload;
        size_t len;
        const char *why = NULL;
        int ret = mail_op_encode(&op, &payload, &len, &why);
        if (ret == 0) {
            ret = core_link_commit(s->srv->core, s->database, op.type, payload, len, seen_committed,
                                   s);
            free(payload);
        }
        if (ret < 0) {
            if (!job->commits)
                return ret;
            job->commit_status = ret; /* those sent answer the command when they report */
            return 0;
        }
        job->commits++;
    }
    return 0;
}

/* ---- The messages ---- */

struct select_ctx {
    struct imap_fetch_job *job;
    const struct imap_msg_ref *refs;
    size_t n_refs;
    bool changedsince;
    uint64_t since;
    bool set_seen;
    uint32_t *seen_uids; /* owned by the caller, room for n_refs */
    size_t n_seen;
};

/* Keeps the messages with a MODSEQ above CHANGEDSINCE and marks those whose \Seen this
 * command sets, reading each message's flags under one transaction. */
static int
select_messages(struct imap_session *s, struct select_ctx *c)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    int ret = r ? store_reader_begin(r, &txn) : -EIO;
    if (ret < 0)
        return ret;
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    struct imap_fetch_job *job = c->job;
    for (size_t i = 0; i < c->n_refs; i++) {
        struct mail_message_info m;
        ret = mail_message_get(dbis, txn, s->user, s->folder, c->refs[i].uid, &m);
        if (ret == TDM_ENOTFOUND) {
            job->expunge_issued = true;
            continue;
        }
        if (ret < 0)
            break;
        ret = 0;
        if (c->changedsince && m.modseq <= c->since)
            continue;
        struct fetch_msg *fm = &job->msgs[job->n++];
        fm->msn = c->refs[i].msn;
        fm->uid = c->refs[i].uid;
        fm->flags_changed = c->set_seen && !(m.flags & MAIL_FLAG_SEEN);
        if (fm->flags_changed)
            c->seen_uids[c->n_seen++] = fm->uid;
    }
    mdb_txn_abort(txn);
    return ret;
}

/* ---- VANISHED (EARLIER) ---- */

struct vanished_ctx {
    const struct imap_session *s;
    const struct imap_seqset *set;
    uint32_t star;
    uint32_t *uids; /* owned */
    size_t n, cap;
};

static bool
saved_has(const struct imap_session *s, uint32_t uid)
{
    for (size_t i = 0; i < s->n_saved; i++)
        if (s->saved_uids[i] == uid)
            return true;
    return false;
}

static int
on_change(void *ctx, const struct mail_change *ch)
{
    struct vanished_ctx *v = ctx;
    if (!ch->expunged)
        return 0;
    bool named =
        v->set->saved ? saved_has(v->s, ch->uid) : imap__set_contains(v->set, ch->uid, v->star);
    if (!named)
        return 0;
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 64;
        uint32_t *p = realloc(v->uids, ncap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        v->uids = p;
        v->cap = ncap;
    }
    v->uids[v->n++] = ch->uid;
    return 0;
}

static int
cmp_uid(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* RFC 7162 3.2.6: the UIDs of the set expunged since the client's MODSEQ, before the FETCH
 * responses. "*" stands for the last UID ever given, so that messages expunged from the end
 * of the folder are told too. */
static int
write_vanished(struct imap_session *s, const struct imap_seqset *set, uint64_t since)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    int ret = r ? store_reader_begin(r, &txn) : -EIO;
    if (ret < 0)
        return ret;
    uint32_t uidnext = imap_view_uidnext(s->view);
    struct vanished_ctx v = {.s = s, .set = set, .star = uidnext ? uidnext - 1 : 0};
    ret = mail_folder_changes(store_reader_mail_dbis(r), txn, s->user, s->folder, since, on_change,
                              &v);
    mdb_txn_abort(txn);
    if (ret == 0 && v.n) {
        qsort(v.uids, v.n, sizeof(*v.uids), cmp_uid);
        imap_write_vanished(&s->out, true, v.uids, v.n);
    }
    free(v.uids);
    return ret;
}

/* ---- The command ---- */

/* Checks what the command asks for before anything is written; answers and returns false
 * when it cannot be served. */
static bool
acceptable(struct imap_session *s, const struct imap_command *cmd)
{
    if (cmd->u.fetch.vanished && !(s->enabled & IMAP_ENABLED_QRESYNC)) {
        /* RFC 7162 3.2.6: VANISHED is only valid once QRESYNC is enabled. */
        imap__reply(s, cmd->tag, "BAD", NULL, "VANISHED needs ENABLE QRESYNC first");
        return false;
    }
    return true;
}

/* Fills job->msgs from the set: every message it names, or with CHANGEDSINCE or \Seen to set,
 * those that qualify, read once. Returns 0, or after answering the command a negative code. */
static int
collect(struct imap_session *s, const struct imap_command *cmd, struct imap_fetch_job *job,
        uint32_t **seen_uids_r, size_t *n_seen_r)
{
    struct imap_msg_ref *refs;
    size_t n_refs;
    int ret = imap__resolve_set(s, cmd->tag, &cmd->u.fetch.set, cmd->uid, &refs, &n_refs);
    if (ret < 0)
        return ret;
    job->expunge_issued = ret == 1;
    *seen_uids_r = NULL;
    *n_seen_r = 0;
    job->msgs = n_refs ? calloc(n_refs, sizeof(*job->msgs)) : NULL;
    bool set_seen = job->plan.sets_seen && !s->read_only;
    uint32_t *seen = set_seen && n_refs ? calloc(n_refs, sizeof(*seen)) : NULL;
    if ((n_refs && !job->msgs) || (set_seen && n_refs && !seen)) {
        free(refs);
        free(seen);
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        return -ENOMEM;
    }
    if (!set_seen && !cmd->u.fetch.has_changedsince) {
        for (size_t i = 0; i < n_refs; i++)
            job->msgs[i] = (struct fetch_msg){refs[i].msn, refs[i].uid, false};
        job->n = n_refs;
        free(refs);
        return 0;
    }
    struct select_ctx c = {.job = job,
                           .refs = refs,
                           .n_refs = n_refs,
                           .changedsince = cmd->u.fetch.has_changedsince,
                           .since = cmd->u.fetch.changedsince,
                           .set_seen = set_seen,
                           .seen_uids = seen};
    ret = select_messages(s, &c);
    free(refs);
    if (ret < 0) {
        free(seen);
        imap__reply(s, cmd->tag, "NO", read_failure_code(ret), "Cannot read the mailbox now");
        return ret;
    }
    *seen_uids_r = seen;
    *n_seen_r = c.n_seen;
    return 0;
}

void
imap__cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
    if (!acceptable(s, cmd))
        return;
    struct imap_fetch_job *job = calloc(1, sizeof(*job));
    const char *why = "Out of memory";
    int ret = job ? imap__fetch_plan_build(cmd, s->enabled & IMAP_ENABLED_REV2, &job->plan, &why)
                  : -ENOMEM;
    if (ret < 0) {
        free(job);
        imap__reply(s, cmd->tag, ret == -ENOMEM ? "NO" : "BAD", ret == -ENOMEM ? "SERVERBUG" : NULL,
                    why);
        return;
    }
    job->by_uid = cmd->uid;
    /* RFC 7162 3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE for the rest of the session. */
    if (job->plan.has_modseq)
        s->enabled |= IMAP_ENABLED_CONDSTORE;
    /* New mail and flag changes first (no EXPUNGE during a FETCH, except UID FETCH). */
    imap__sync(s, cmd->uid);
    uint32_t *seen_uids = NULL;
    size_t n_seen = 0;
    if (s->state == IMAP_STATE_LOGOUT || collect(s, cmd, job, &seen_uids, &n_seen) < 0) {
        job_free(&job);
        return;
    }
    if (cmd->u.fetch.vanished &&
        (ret = write_vanished(s, &cmd->u.fetch.set, cmd->u.fetch.changedsince)) < 0) {
        free(seen_uids);
        job_free(&job);
        imap__reply(s, cmd->tag, "NO", read_failure_code(ret), "Cannot read the mailbox now");
        return;
    }
    snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
    s->fetch = job;
    if (n_seen) {
        ret = commit_seen(s, job, seen_uids, n_seen);
        free(seen_uids);
        if (ret < 0) {
            log_error("imap: %s: setting \\Seen for FETCH: %s", s->user, tdm_strerror(ret));
            finish(s, "NO", "UNAVAILABLE",
                   "Cannot mark the messages \\Seen now, so nothing was fetched: try again, or "
                   "use BODY.PEEK");
            return;
        }
        job->async = true; /* the reply runs the batches */
        s->waiting++;
        return;
    }
    free(seen_uids);
    run(s);
}
