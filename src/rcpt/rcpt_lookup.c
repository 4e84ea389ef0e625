/*
 * Recipient lookups (rcpt_lookup.h): the local directory database read through a
 * store_reader, or the directory servers through the cached client.
 */
#include "rcpt/rcpt_lookup.h"

#include "dirclient/dir_client.h"
#include "directory/dir_local.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rcpt_lookup {
    const struct tdm_config *cfg;
    struct store_reader *directory; /* directory role: opened at the first lookup */
    struct dir_client *remote;      /* otherwise: asks a directory server */
    char *problem;                  /* why there is no remote client */
};

/* Without the directory role, recipients are asked of the directory servers. */
static void
remote_setup(struct rcpt_lookup *rl, struct event_base *base)
{
    char *why = NULL;
    if (dir_client_from_config(base, rl->cfg, &rl->remote, &why) < 0) {
        rl->remote = NULL;
        log_error("no directory lookups for mail recipients: %s", why ? why : "out of memory");
        if (asprintf(&rl->problem, "Cannot reach the directory: %s", why ? why : "out of memory") <
            0)
            log_fatal("out of memory");
    }
    free(why);
}

int
rcpt_lookup_new(struct event_base *base, const struct tdm_config *cfg, struct rcpt_lookup **rl_r)
{
    struct rcpt_lookup *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return -ENOMEM;
    rl->cfg = cfg;
    if (!(cfg->roles & TDM_ROLE_DIRECTORY))
        remote_setup(rl, base);
    *rl_r = rl;
    return 0;
}

void
rcpt_lookup_free(struct rcpt_lookup **rl_p)
{
    struct rcpt_lookup *rl = *rl_p;
    if (!rl)
        return;
    dir_client_free(&rl->remote); /* fails lookups in flight */
    store_reader_free(&rl->directory);
    free(rl->problem);
    free(rl);
    *rl_p = NULL;
}

const char *
rcpt_lookup_problem(const struct rcpt_lookup *rl)
{
    return rl->problem;
}

static int
directory_reader(struct rcpt_lookup *rl, struct store_reader **reader_r)
{
    const char *why;
    int ret = dir_local_reader(rl->cfg->datadir, &rl->directory, &why);
    if (ret < 0) {
        if (ret != -EAGAIN)
            log_error("cannot read the directory of %s: %s", rl->cfg->datadir,
                      why ? why : tdm_strerror(ret));
        return ret;
    }
    *reader_r = rl->directory;
    return 0;
}

static int
lookup_local(struct rcpt_lookup *rl, const char *local, const char *domain, struct dir_recipient *r)
{
    struct store_reader *dir;
    int ret = directory_reader(rl, &dir);
    if (ret < 0)
        return ret;
    MDB_txn *txn;
    if ((ret = store_reader_begin(dir, &txn)) < 0)
        return ret;
    ret = dir_recipient_lookup(store_reader_handler_state(dir), txn, local, domain, r);
    mdb_txn_abort(txn);
    return ret;
}

int
rcpt_lookup_find(struct rcpt_lookup *rl, const char *local, const char *domain,
                 struct dir_recipient *now_r, rcpt_lookup_cb *cb, void *ctx)
{
    if (rl->cfg->roles & TDM_ROLE_DIRECTORY)
        return lookup_local(rl, local, domain, now_r);
    if (!rl->remote)
        return -ENOTCONN;
    int ret = dir_client_recipient(rl->remote, local, domain, cb, ctx);
    return ret < 0 ? ret : RCPT_LOOKUP_PENDING;
}
