#ifndef TANDEM_SMTP_DUMPSTER_WRITER_H
#define TANDEM_SMTP_DUMPSTER_WRITER_H

/*
 * The transport dumpster's writes and retention off the SMTP worker's loop (CONVENTIONS.md:
 * blocking work goes to a worker thread that reports back through the loop). Each message's
 * entries (one per mailbox database, dumpster.h) are encoded on the loop into a batch, then
 * written, synced and renamed by one helper thread (lib/offload.h), in submission order; the
 * batch's callback runs on the loop once every entry is durable or has failed (each failure
 * said with event 5101). The SMTP server answers its client only from that callback, so a
 * message acknowledged with 250 is in the dumpster (docs/smtp.md, "Transport dumpster").
 * Retention (dumpster_prune) may ride a batch: it runs after the batch's writes, before its
 * callback, as it ran before the reply when the loop wrote.
 *
 * One loop, one owning thread: every function here is called on the loop.
 */

#include "smtp/dumpster.h"

#include <stdint.h>

struct event_base;
struct dumpster_batch;
struct dumpster_writer;

/* Adds e for database to *b (created on the first call; free with dumpster_batch_free unless
 * handed to dumpster_writer_put). e is encoded now: nothing of it is borrowed afterwards.
 * Returns 0, TDM_EINVAL (a field out of range, a database no dumpster can hold) or -ENOMEM. */
int dumpster_batch_add(struct dumpster_batch **b, const char *database,
                       const struct dumpster_entry *e);
void dumpster_batch_free(struct dumpster_batch **b);

/* Starts the helper thread. datadir is borrowed for the writer's life; max_queued as
 * offload_new's (a batch per message in flight: the SMTP server passes its connection limit).
 * Returns 0 with an owned *w_r, -EIO (libsodium cannot start), or offload_new's error. */
int dumpster_writer_new(struct event_base *base, const char *datadir, unsigned max_queued,
                        struct dumpster_writer **w_r);

/* Runs on the loop once every entry of a batch is written or has failed (said with 5101):
 * status 0 when every entry is kept, else the first entry's error. */
typedef void dumpster_written_cb(void *ctx, int status);

/* A retention pass: dumpster_prune's arguments. */
struct dumpster_retention {
    int64_t now;
    uint64_t max_age_s, max_size;
};

/*
 * Writes *b (NULL: no entries) off the loop, then runs the retention pass prune (NULL: none;
 * copied; its failure is logged), and takes *b (NULL after the call, whatever the result).
 * Returns 0: cb(ctx) runs exactly once, never from inside this call. Or TDM_ELIMIT / -ENOMEM:
 * nothing was written and cb never runs.
 */
int dumpster_writer_put(struct dumpster_writer *w, struct dumpster_batch **b,
                        const struct dumpster_retention *prune, dumpster_written_cb *cb, void *ctx);

/* Writes what the thread had not yet (on the calling thread: a batch was taken from a mailbox
 * server that holds the message, so it is kept even at shutdown) and runs every pending
 * callback, then frees. NULL is fine; *w is set to NULL. */
void dumpster_writer_free(struct dumpster_writer **w);

#endif
