#ifndef TANDEM_RCPT_RCPT_LOOKUP_H
#define TANDEM_RCPT_RCPT_LOOKUP_H

/*
 * Who a mail recipient is, for the workers that take mail (LMTP on the mailbox role, SMTP on
 * the transport role): dir_recipient_lookup() on the local directory database when the server
 * has the directory role, otherwise the directory servers through the cached client
 * (dirclient/dir_client.h). The local answer is an LMDB read and comes at once; a remote one
 * comes later, through the callback.
 *
 * Without the directory role, a client that cannot be set up (no key file, a CA OpenSSL
 * refuses) does not stop the worker: every lookup then fails with -ENOTCONN and
 * rcpt_lookup_problem() says why, so mail waits in the sending MTA's queue (451) until an
 * operator fixes it.
 *
 * One libevent loop, one thread. Ownership: the lookup borrows cfg for its whole life.
 */

#include "dirclient/dir_client.h"
#include "directory/directory.h"
#include "lib/config.h"

struct event_base;
struct rcpt_lookup;

/* Returns 0 with an owned *rl_r, or -ENOMEM. */
int rcpt_lookup_new(struct event_base *base, const struct tdm_config *cfg,
                    struct rcpt_lookup **rl_r);

/* Fails every remote lookup in flight (their callbacks run with TDM_ECLOSED), frees, NULLs. */
void rcpt_lookup_free(struct rcpt_lookup **rl);

/*
 * The answer to a remote lookup: status 0 with *r (borrowed for the call), or a negative code
 * (-EHOSTUNREACH, -EPERM, TDM_ECLOSED...); from_cache as dir_client_rcpt_cb says.
 */
typedef dir_client_rcpt_cb rcpt_lookup_cb;

#define RCPT_LOOKUP_PENDING 1

/*
 * Looks local@domain up. Returns 0 with *now_r (answered at once), RCPT_LOOKUP_PENDING (cb will
 * be called once, never from inside this call), or a negative code and no callback: -EAGAIN
 * (the local directory is not ready yet), -ENOTCONN (no directory client, see
 * rcpt_lookup_problem()), -ENOMEM, or a storage error.
 */
int rcpt_lookup_find(struct rcpt_lookup *rl, const char *local, const char *domain,
                     struct dir_recipient *now_r, rcpt_lookup_cb *cb, void *ctx);

/* Why lookups fail with -ENOTCONN, as text for a reply; NULL when they do not. */
const char *rcpt_lookup_problem(const struct rcpt_lookup *rl);

#endif
