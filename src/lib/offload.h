#ifndef TANDEM_LIB_OFFLOAD_H
#define TANDEM_LIB_OFFLOAD_H

/*
 * Blocking work off a libevent loop (CONVENTIONS.md: "blocking work goes to a worker thread
 * that reports back through the loop"): argon2id password checks, later compression and
 * offline address book generation. One helper thread runs jobs in submission order; each
 * job's done callback then runs on the loop thread, woken through an eventfd.
 *
 * The work function runs on the helper thread and must touch nothing the loop owns (no
 * libevent object, no LMDB transaction of the loop's): a job carries copies of what it needs
 * in its own argument. The done callback owns the argument again and frees it.
 *
 * Not thread-safe beyond that: offload_submit() and offload_free() are called on the loop.
 */

#include <stdbool.h>

struct event_base;
struct offload;

/* Runs on the helper thread. */
typedef void offload_work_fn(void *arg);
/* Runs on the loop thread, once per submitted job: ran is false when the job was dropped
 * unrun by offload_free(). */
typedef void offload_done_fn(void *arg, bool ran);

/*
 * Starts the helper thread. max_queued: jobs waiting to run beyond which offload_submit()
 * refuses (0 = 64). Returns 0 with an owned *off_r, -ENOMEM, or -errno (eventfd, thread).
 */
int offload_new(struct event_base *base, unsigned max_queued, struct offload **off_r);

/*
 * Stops the thread after the job it is running (if any), then calls done(arg, false) for
 * every job that never ran and done(arg, true) for every finished one not yet reported, on
 * the calling thread, before returning. NULL allowed; *off is set to NULL.
 */
void offload_free(struct offload **off);

/* Queues a job. Returns 0 (done will be called exactly once, never from inside this call),
 * TDM_ELIMIT (max_queued jobs already wait), or -ENOMEM. */
int offload_submit(struct offload *off, offload_work_fn *work, offload_done_fn *done, void *arg);

#endif
