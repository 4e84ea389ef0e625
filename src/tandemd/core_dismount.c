/*
 * Dismount and mount of an active database (tandemctl db dismount / mount, Exchange's
 * Dismount-Database and Mount-Database; docs/replication.md "Dismount and mount"). The
 * cluster agent dismounts the same way when it fences (docs/cluster.md).
 *
 * Dismount, in this order: fence (every commit answered from now on, even one already durable,
 * is TDM_ENOTFOUND — as for a database not here: LMTP 451, IMAP NO), tell the workers
 * (DB_DISMOUNTED: they end its IMAP sessions, close its LMDB and refuse its logins and
 * recipients), stop serving it to copies (they are answered not-active: ServiceDown), close the
 * store cleanly (store.dismounted). Mount tells the workers again. The
 * database stays listed as dismounted. Nothing of this is written down: a restart mounts it
 * again, like any database without copy.conf.
 */
#include "tandemd/tandemd.h"
#include "tandemd/core_ipc_int.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/store.h"

#include <stdio.h>
#include <string.h>

int
tandemd__core_db_dismount(const char *name, size_t len)
{
    struct store *store;
    const char *kind;
    bool dismounted;
    char db[256];
    if (len >= sizeof(db) || !tandemd__core_db_lookup(name, len, &store, &kind, &dismounted))
        return TDM_ENOTFOUND;
    if (dismounted)
        return 0;
    if (!store)
        return TDM_ENOTFOUND; /* refused at mount: nothing to dismount */
    memcpy(db, name, len);
    db[len] = '\0';
    tandemd__core_db_set(name, len, store, false, true);
    /* Workers end its sessions and close its LMDB now, not after the store closed. */
    tandemd__core_ipc_dismounted_push();
    tandemd__core_repl_source_dismount(db);
    /* Closing runs the callbacks of commits still queued; finish() answers them fenced. */
    int ret = store_close(&store);
    tandemd__core_db_set(name, len, NULL, true, true);
    if (ret < 0)
        log_error("database %s dismounted; its close failed: %s", db, tdm_strerror(ret));
    else
        log_info("database %s dismounted", db);
    return ret;
}

int
tandemd__core_db_mount(const char *name, size_t len)
{
    char db[256];
    if (len >= sizeof(db))
        return TDM_ENOTFOUND;
    memcpy(db, name, len);
    db[len] = '\0';
    /* Only the cluster agent mounts a CMS's database on a cluster node, in its lease's epoch
     * (docs/cluster.md): an operator's mount would go around the lease. */
    if (tandemd__core_cluster_owns(db)) {
        log_error("mount of %s refused: it belongs to a CMS of this cluster, which the cluster "
                  "agent mounts when it wins the lease",
                  db);
        return TDM_ECONFLICT;
    }
    return tandemd__core_db_mount_epoch(name, len, 0);
}

int
tandemd__core_db_mount_epoch(const char *name, size_t len, uint64_t min_epoch)
{
    struct store *store;
    const char *kind;
    bool dismounted;
    char db[256];
    if (len >= sizeof(db) || !tandemd__core_db_lookup(name, len, &store, &kind, &dismounted))
        return TDM_ENOTFOUND;
    if (!dismounted)
        return store ? 0 : TDM_ENOTFOUND;
    memcpy(db, name, len);
    db[len] = '\0';
    struct store_options opt = *tandemd__core_repl_store_options();
    opt.min_epoch = min_epoch;
    if (dir_db_kind_handler(kind, &opt.handler) < 0)
        return TDM_EINVAL;
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof(dir), "%s/db/%s", tandemd__core_datadir(), db) >= sizeof(dir))
        return TDM_ELIMIT;
    const char *why = NULL;
    int ret = store_open(dir, &opt, &store, &why);
    if (ret < 0) {
        log_error("database %s: mount failed: %s (%s); it stays dismounted", db, why ? why : "?",
                  tdm_strerror(ret));
        return ret;
    }
    tandemd__core_db_set(name, len, store, false, false);
    tandemd__core_ipc_dismounted_push(); /* its logins are served again */
    tandemd__core_repl_source_mount(db, store);
    log_info("database %s mounted", db);
    return 0;
}
