/*
 * The apply thread: applies each durable batch to LMDB in one write transaction that also
 * stores the applied LSN, then calls every committer back. store__apply_record() is shared
 * with recovery's replay, so a record means the same thing live and replayed.
 */
#include "store/store_int.h"

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Applying records to LMDB (shared by the apply thread and recovery)  */

int
store__apply_record(struct store *s, MDB_txn *txn, uint16_t type, const uint8_t *payload,
                    uint32_t len, struct mail_result *result_r, const char **error_r)
{
    memset(result_r, 0, sizeof(*result_r));
    if (type == TDM_REC_NOOP)
        return 0;
    const struct store_record_handler *h = s->opt.handler;
    if (!mail_is_mail_record(type)) {
        if (!h || !h->handles(type)) {
            *error_r = "unknown record type";
            return TDM_ECORRUPT;
        }
        int ret = h->apply(s->handler_state, txn, type, payload, len, result_r);
        if (ret < 0)
            *error_r = tdm_strerror(ret);
        return ret;
    }
    struct mail_decoded dec;
    const char *why = NULL;
    int ret = mail_op_decode(type, payload, len, &dec, &why);
    if (ret < 0) {
        *error_r = why ? why : tdm_strerror(ret);
        return ret == -ENOMEM ? ret : TDM_ECORRUPT;
    }
    ret = mail_apply(&s->mail, txn, &dec.op, result_r);
    mail_decoded_clear(&dec);
    if (ret < 0)
        *error_r = tdm_strerror(ret);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Replaying records from the log (recovery, and a copy's replay)      */

int
store__replay_commit(struct store_replay *r)
{
    if (!r->txn)
        return 0;
    int ret = store__meta_put_u64(r->txn, r->s->meta, STORE_META_APPLIED, r->applied);
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_commit(r->txn));
    else
        mdb_txn_abort(r->txn);
    r->txn = NULL;
    r->in_txn = 0;
    if (ret < 0)
        r->why = tdm_strerror(ret);
    return ret;
}

int
store__replay_record(void *ctx, const struct log_record *rec)
{
    struct store_replay *r = ctx;
    if (rec->lsn <= r->applied)
        return 0; /* already in LMDB: apply is idempotent by LSN */
    if (r->stop_after && rec->lsn > r->stop_after)
        return STORE_REPLAY_STOP;
    if (!r->txn) {
        int rc = mdb_txn_begin(r->s->env, NULL, 0, &r->txn);
        if (rc != 0) {
            r->why = mdb_strerror(rc);
            return store__lmdb_err(rc);
        }
    }
    struct mail_result res;
    int ret =
        store__apply_record(r->s, r->txn, rec->type, rec->payload, rec->length, &res, &r->why);
    if (ret < 0) {
        mdb_txn_abort(r->txn);
        r->txn = NULL;
        return ret;
    }
    r->applied = rec->lsn;
    r->replayed++;
    r->bytes += log_frame_size(rec->length);
    /* Bounded transactions keep LMDB's dirty page list small during long replays. */
    if (++r->in_txn >= 512)
        return store__replay_commit(r);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The apply thread                                                   */

/* Applies the entries with status 0 in one LMDB transaction. */
static int
apply_batch_txn(struct store *s, struct pending *batch, uint64_t *applied_r, const char **error_r)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        *error_r = mdb_strerror(rc);
        return store__lmdb_err(rc);
    }
    uint64_t applied = *applied_r;
    int ret = 0;
    for (struct pending *p = batch; p && ret == 0; p = p->next) {
        if (p->status != 0 || p->lsn <= applied)
            continue;
        ret = store__apply_record(s, txn, p->type, p->frame + TDM_LOG_FRAME_HEADER,
                                  (uint32_t)(p->frame_len - TDM_LOG_FRAME_OVERHEAD), &p->result,
                                  error_r);
        applied = p->lsn;
    }
    if (ret == 0 && applied != *applied_r)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_APPLIED, applied);
    /* The checkpoint LSN changes every few MiB of log; rewriting it in every batch would
     * dirty a meta page per transaction for nothing. */
    pthread_mutex_lock(&s->lock);
    uint64_t ckpt = s->checkpoint_lsn;
    pthread_mutex_unlock(&s->lock);
    if (ret == 0 && ckpt != s->checkpoint_recorded)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_CHECKPOINT, ckpt);
    if (ret < 0) {
        mdb_txn_abort(txn);
        if (!*error_r)
            *error_r = tdm_strerror(ret);
        return ret;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        *error_r = mdb_strerror(rc);
        return store__lmdb_err(rc);
    }
    *applied_r = applied;
    s->checkpoint_recorded = ckpt;
    return 0;
}

static void
apply_batch(struct store *s, struct pending *batch)
{
    pthread_mutex_lock(&s->lock);
    uint64_t applied = s->applied_lsn;
    pthread_mutex_unlock(&s->lock);

    bool any = false;
    for (struct pending *p = batch; p; p = p->next)
        any |= p->status == 0;
    if (!any)
        return;

    const char *why = NULL;
    int ret = apply_batch_txn(s, batch, &applied, &why);
    if (ret == -ENOSPC && s->reserve_path) {
        /* LMDB needs room to grow: give it the reserve, then refuse new work. */
        if (unlink(s->reserve_path) == 0) {
            pthread_mutex_lock(&s->lock);
            if (!s->reserve_mode)
                event_emit(TDM_EV_STORE_DISK_RESERVE, s->name,
                           "disk full while updating %s: reserve released, new commits are "
                           "refused; the database can still be shut down cleanly",
                           s->lmdb_dir);
            s->reserve_mode = true;
            pthread_mutex_unlock(&s->lock);
            why = NULL;
            ret = apply_batch_txn(s, batch, &applied, &why);
        }
    }
    pthread_mutex_lock(&s->lock);
    if (ret < 0) {
        if (!s->failed) {
            event_emit(TDM_EV_STORE_WRITE_FAILED, s->name,
                       "applying records to %s failed: %s; the database is Failed (the records "
                       "are durable in the log and are replayed at the next mount)",
                       s->lmdb_dir, why ? why : tdm_strerror(ret));
            s->failed = ret;
        }
        store__fail_list(batch, ret);
    } else {
        s->applied_lsn = applied;
    }
    pthread_mutex_unlock(&s->lock);
}

void *
store__apply_thread_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->apply_head && !s->log_done)
            pthread_cond_wait(&s->apply_wake, &s->lock);
        if (!s->apply_head)
            break;
        struct pending *batch = s->apply_head;
        s->apply_head = NULL;
        s->apply_tailp = &s->apply_head;
        pthread_mutex_unlock(&s->lock);

        apply_batch(s, batch);

        pthread_mutex_lock(&s->lock);
        uint64_t n = 0;
        for (struct pending *p = batch; p; p = p->next) {
            n++;
            if (p->status == 0)
                s->bytes_since_ckpt += p->frame_len;
        }
        if (s->bytes_since_ckpt >= s->opt.checkpoint_bytes)
            pthread_cond_signal(&s->hk_wake);
        /* The whole batch leaves "in flight" before its callbacks run: a callback may submit
         * at once (an event loop does), and counting it both as leaving and as arriving made
         * the log thread wait for one commit too many, to its time limit, every batch. The
         * log thread expects the called-back committers to return by the size of its last
         * batch (group_commit_wait() in store_log.c). One lock for the batch, not one per
         * callback, also keeps the apply thread off the committers' lock. */
        s->inflight -= n;
        pthread_cond_broadcast(&s->progress);
        pthread_mutex_unlock(&s->lock);

        while (batch) {
            struct pending *p = batch;
            batch = p->next;
            p->cb(p->ctx, p->status, p->status == 0 ? p->lsn : 0, &p->result);
            free(p); /* the frame is in the same allocation (store_commit_async()) */
        }
        pthread_mutex_lock(&s->lock);
    }
    s->apply_done = true;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}
