/*
 * The dumpster's writes and retention on a helper thread (dumpster_writer.h), over
 * lib/offload.h as the copy agent's syncer and the replication source do. A job owns copies
 * of everything it touches (encoded entries, the datadir's path is the writer's and outlives
 * every job); results go back in the job and are acted on (events, logs) on the loop.
 */
#include "smtp/dumpster_writer.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct batch_entry {
    char database[256];
    int64_t time;
    uint8_t *buf; /* dumpster_entry_encode's */
    size_t len;
    int result; /* of dumpster_put_encoded, set on the thread */
};

struct dumpster_batch {
    struct batch_entry *entries;
    size_t n;
};

struct dumpster_writer {
    struct offload *off;
    const char *datadir;
};

struct job {
    struct dumpster_writer *w;
    struct dumpster_batch *batch;
    bool prune;
    struct dumpster_retention retention;
    unsigned removed;
    int prune_result;
    dumpster_written_cb *cb;
    void *ctx;
};

int
dumpster_batch_add(struct dumpster_batch **bp, const char *database, const struct dumpster_entry *e)
{
    if (!dumpster_database_ok(database))
        return TDM_EINVAL;
    struct dumpster_batch *b = *bp;
    if (!b && !(b = calloc(1, sizeof(*b))))
        return -ENOMEM;
    *bp = b;
    struct batch_entry *grown = realloc(b->entries, (b->n + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    b->entries = grown;
    struct batch_entry *be = &b->entries[b->n];
    memset(be, 0, sizeof(*be));
    snprintf(be->database, sizeof(be->database), "%s", database); /* ok() bounds it to 255 */
    be->time = e->time;
    int rc = dumpster_entry_encode(e, &be->buf, &be->len);
    if (rc < 0)
        return rc;
    b->n++;
    return 0;
}

void
dumpster_batch_free(struct dumpster_batch **bp)
{
    struct dumpster_batch *b = *bp;
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->entries[i].buf);
    free(b->entries);
    free(b);
    *bp = NULL;
}

/* On the helper thread, or on the loop for a job the thread never ran (at free). */
static void
job_work(void *arg)
{
    struct job *j = arg;
    for (size_t i = 0; i < j->batch->n; i++) {
        struct batch_entry *be = &j->batch->entries[i];
        be->result = dumpster_put_encoded(j->w->datadir, be->database, be->time, be->buf, be->len);
    }
    if (j->prune)
        j->prune_result = dumpster_prune(j->w->datadir, j->retention.now, j->retention.max_age_s,
                                         j->retention.max_size, &j->removed);
}

static void
job_done(void *arg, bool ran)
{
    struct job *j = arg;
    if (!ran) {
        /* At free: the messages are on the mailbox server, keep them here too; the next
         * start prunes. */
        j->prune = false;
        job_work(j);
    }
    if (j->prune && j->prune_result < 0)
        log_error("smtp: cannot prune the dumpster: %s", tdm_strerror(j->prune_result));
    else if (j->prune && j->removed)
        log_info("smtp: dumpster retention removed %u entr%s", j->removed,
                 j->removed == 1 ? "y" : "ies");
    int status = 0;
    for (size_t i = 0; i < j->batch->n; i++) {
        const struct batch_entry *be = &j->batch->entries[i];
        if (be->result < 0) {
            event_emit(TDM_EV_DUMPSTER_WRITE_FAILED, be->database,
                       "cannot keep a delivered message in the dumpster of %s: %s", be->database,
                       tdm_strerror(be->result));
            if (status == 0)
                status = be->result;
        }
    }
    dumpster_batch_free(&j->batch);
    dumpster_written_cb *cb = j->cb;
    void *ctx = j->ctx;
    free(j);
    cb(ctx, status);
}

int
dumpster_writer_new(struct event_base *base, const char *datadir, unsigned max_queued,
                    struct dumpster_writer **w_r)
{
    /* dumpster_put_encoded names entries with randombytes_buf on the helper thread while the
     * loop draws delivery ids: libsodium is thread-safe only once initialised. */
    if (sodium_init() < 0)
        return -EIO;
    struct dumpster_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->datadir = datadir;
    int rc = offload_new(base, max_queued, &w->off);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *w_r = w;
    return 0;
}

int
dumpster_writer_put(struct dumpster_writer *w, struct dumpster_batch **b,
                    const struct dumpster_retention *prune, dumpster_written_cb *cb, void *ctx)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        dumpster_batch_free(b);
        return -ENOMEM;
    }
    j->w = w;
    j->batch = *b;
    *b = NULL;
    if (!j->batch && !(j->batch = calloc(1, sizeof(*j->batch)))) {
        free(j);
        return -ENOMEM;
    }
    if (prune) {
        j->prune = true;
        j->retention = *prune;
    }
    j->cb = cb;
    j->ctx = ctx;
    int rc = offload_submit(w->off, job_work, job_done, j);
    if (rc < 0) {
        dumpster_batch_free(&j->batch);
        free(j);
    }
    return rc;
}

void
dumpster_writer_free(struct dumpster_writer **wp)
{
    struct dumpster_writer *w = *wp;
    if (!w)
        return;
    offload_free(&w->off); /* every job's done runs in here, writing what was not yet */
    free(w);
    *wp = NULL;
}
