#ifndef TANDEM_SMTP_DUMPSTER_RESUBMIT_H
#define TANDEM_SMTP_DUMPSTER_RESUBMIT_H

/*
 * Resubmission from the transport dumpster (docs/smtp.md, "Transport dumpster"): every entry
 * kept for a database since a time is relayed again over LMTP, one after the other, to where
 * the directory now routes its first recipient, with the same delivery ids, so the mailbox
 * server delivers what a lossy failover lost and drops (250, "duplicate dropped") what it
 * still holds. The admin API (POST /v1/dumpster/resubmit) runs it; the cluster agent may run
 * it itself after a lossy failover.
 *
 * One libevent loop, one thread. Ownership: the run borrows cfg until its callback.
 */

#include "lib/config.h"

#include <stdint.h>

struct event_base;
struct dumpster_resubmit;

struct dumpster_resubmit_counts {
    uint64_t messages;    /* entries read */
    uint64_t resubmitted; /* recipients the mailbox server answered 2xx (delivered or dropped) */
    uint64_t deferred;    /* not taken for now: answered 4xx, unreachable, no directory answer
                           * (asking again later may take them) */
    uint64_t refused;     /* never going to be taken: answered 5xx, no route, a damaged entry */
};

/* status 0, or a negative code when the dumpster could not be listed (counts then zero). */
typedef void dumpster_resubmit_cb(void *ctx, int status, const struct dumpster_resubmit_counts *c);

/*
 * Starts resubmitting database's entries delivered at or after since (INT64_MIN: all). Returns
 * 0 (cb runs once, never from inside this call; the run then frees itself) or a negative code
 * and no callback (TDM_EINVAL for a database name no dumpster can hold, -ENOMEM).
 */
int dumpster_resubmit_start(struct event_base *base, const struct tdm_config *cfg,
                            const char *database, int64_t since, dumpster_resubmit_cb *cb,
                            void *ctx);

#endif
