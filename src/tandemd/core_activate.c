/*
 * Activation of a copy held here (tandemctl copy activate [--force], docs/replication.md
 * "Activation"): the copy becomes this server's active, mounted by the core and served to
 * clients and to other copies.
 *
 * Refused while the copy's agent is in touch with an active source (Healthy, Resynchronizing
 * or Seeding: two actives of one database must never write), with or without --force. Without
 * --force it also needs proof that nothing is lost: the active's server answers but no longer
 * serves the database (ServiceDown) and the copy holds everything the active last reported
 * durable. With --force it mounts what is here and reports what the active's last report had
 * beyond it.
 *
 * Steps, in an order a crash at any point survives: stop the agent (which closes the copy
 * cleanly); open the copy and replay everything durable, ignoring a standby's lag and
 * hold-back; close it; open it as a store with min_epoch = its epoch + 1, so it begins a new
 * generation in a new epoch and never writes in the old one; only then remove copy.conf (and
 * sync the directory). A crash before the removal leaves a copy, activated again by the same
 * command; after it, an active.
 *
 * Runs on the core's loop and blocks it for the replay (a standby's held-back generations):
 * activation is a rare operator action and nothing else may write the database meanwhile.
 */
#include "tandemd/tandemd.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/ipc.h"
#include "lib/event.h"
#include "lib/log.h"
#include "repl/repl_copy.h"
#include "store/store.h"
#include "store/store_copy.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Replays everything durable of the copy in dir; *epoch_r = the epoch of its log. */
static int
replay_all(const char *dir, const struct store_options *opt, uint64_t *epoch_r, const char **why_r)
{
    struct store_copy *copy = NULL;
    int ret = store_copy_open(dir, opt, &copy, why_r);
    if (ret < 0)
        return ret;
    ret = store_copy_replay(copy, NULL, NULL);
    if (ret < 0)
        *why_r = tdm_strerror(ret);
    struct store_copy_status st;
    store_copy_get_status(copy, &st);
    *epoch_r = st.epoch;
    int cret = store_copy_close(&copy);
    if (ret == 0 && cret < 0) {
        ret = cret;
        *why_r = tdm_strerror(cret);
    }
    return ret;
}

/* Removes copy.conf and makes the removal durable. */
static int
remove_marker(const char *dir, const char **why_r)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, STORE_COPY_MARKER);
    if (unlink(path) < 0 && errno != ENOENT) {
        *why_r = "cannot remove copy.conf";
        return -errno;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int err = -errno;
        if (fd >= 0)
            close(fd);
        *why_r = "cannot sync the database directory after removing copy.conf";
        return err;
    }
    close(fd);
    return 0;
}

static bool
in_touch_with_active(enum repl_copy_state s)
{
    return s == REPL_COPY_HEALTHY || s == REPL_COPY_RESYNCHRONIZING || s == REPL_COPY_SEEDING;
}

/* The steps of an activation once it is decided (see above); how: for the event. */
static int
promote(const char *db, const char *name, size_t len, const char *kind, const char *dir,
        uint64_t min_epoch, const char *how, uint64_t lost_gens, uint64_t lost_bytes,
        uint64_t lost_records)
{
    tandemd__core_copy_stop_agent(name, len);
    struct store_options opt = *tandemd__core_repl_store_options();
    const char *why = NULL;
    int ret = dir_db_kind_handler(kind, &opt.handler) < 0 ? TDM_EINVAL : 0;
    if (ret < 0)
        why = "its kind is not one this tandemd knows";
    uint64_t epoch = 0;
    if (ret == 0)
        ret = replay_all(dir, &opt, &epoch, &why);
    struct store *store = NULL;
    if (ret == 0) {
        opt.min_epoch = epoch + 1 > min_epoch ? epoch + 1 : min_epoch;
        ret = store_open(dir, &opt, &store, &why);
    }
    if (ret == 0)
        ret = remove_marker(dir, &why);
    if (ret < 0) {
        if (store)
            store_close(&store);
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_FAILED, db,
                   "activation of %s failed: %s (%s); it stays a copy, its agent stopped", db,
                   why ? why : "?", tdm_strerror(ret));
        return ret;
    }
    struct store_status ss;
    store_get_status(store, &ss);
    char kind_copy[STORE_KIND_MAX + 1];
    snprintf(kind_copy, sizeof(kind_copy), "%s", kind);
    /* The copy's entry (and the strings borrowed from it) goes now. */
    tandemd__core_copy_forget(name, len);
    tandemd__core_db_add(db, kind_copy, store);
    /* As a mount: a database this core kept dismounted before it became a copy (a CMS's
     * at a node's start) is still known to the source, answering not-active; an add
     * alone failed (already exists) and left the new active refusing every copy. */
    tandemd__core_repl_source_mount(db, store);
    event_emit(TDM_EV_REPL_COPY_ACTIVATED, db,
               "%s activated%s and mounted in epoch %" PRIu64 "; lost against the source's last "
               "report: %" PRIu64 " generations, %" PRIu64 " bytes, %" PRIu64 " records",
               db, how, ss.epoch, lost_gens, lost_bytes, lost_records);
    log_info("database %s activated (epoch %" PRIu64 ")", db, ss.epoch);
    return 0;
}

int
tandemd__core_copy_activate(const char *name, size_t len, bool force)
{
    struct repl_copy_status st;
    const char *dir, *kind, *error;
    char db[TDM_IPC_NAME_MAX + 1];
    if (len >= sizeof(db))
        return TDM_ENOTFOUND;
    memcpy(db, name, len);
    db[len] = '\0';
    bool running;
    if (!tandemd__core_copy_find(name, len, &st, &dir, &kind, &error, &running))
        return TDM_ENOTFOUND;
    /* A CMS's database on a cluster node is mounted only by the cluster agent, in the epoch of
     * the lease it holds: an operator's activation here would go around the lease, and the
     * node holding it could be writing at the same time (docs/cluster.md). */
    if (tandemd__core_cluster_owns(db)) {
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                   "activation of %s refused: it belongs to a CMS of this cluster, which the "
                   "cluster agent activates when it wins the lease (tandemctl cms move to move it)",
                   db);
        return TDM_ECONFLICT;
    }
    if (running && in_touch_with_active(st.state)) {
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                   "activation of %s refused: the source at %s (network %s) still serves it as "
                   "active",
                   db, st.endpoint[0] ? st.endpoint : "?", st.network[0] ? st.network : "?");
        return TDM_ECONFLICT;
    }
    /* What the active had durable beyond this copy at its last report. */
    uint64_t lost_gens = st.copy_queue_generations, lost_bytes = st.copy_queue_bytes;
    uint64_t lost_records = st.source_lsn > st.copied_lsn ? st.source_lsn - st.copied_lsn : 0;
    if (!force) {
        const char *why = NULL;
        if (!running)
            why = "its agent is not running";
        else if (st.state != REPL_COPY_SERVICE_DOWN)
            why = "the source cannot be reached, so its last logs cannot be copied";
        else if (st.source_time_us == 0)
            why = "the source never reported its position to this copy";
        else if (lost_gens || lost_bytes || lost_records)
            /* Records too: in file mode the copy queue leaves out the active's open
             * generation, which holds records all the same. */
            why = "the copy lacks log the source had durable";
        if (why) {
            event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                       "activation of %s refused: %s (state %s; %" PRIu64 " generations, %" PRIu64
                       " bytes, %" PRIu64 " records behind the source's last report); "
                       "--force mounts what is here",
                       db, why, repl_copy_state_name(st.state), lost_gens, lost_bytes,
                       lost_records);
            return TDM_EGAP;
        }
    }
    return promote(db, name, len, kind, dir, 0, force ? " with --force" : "", lost_gens,
                   lost_bytes, lost_records);
}

int
tandemd__core_copy_activate_epoch(const char *name, size_t len, uint64_t min_epoch,
                                  uint64_t *lost_records_r)
{
    struct repl_copy_status st;
    const char *dir, *kind, *error;
    char db[TDM_IPC_NAME_MAX + 1];
    bool running;
    *lost_records_r = 0;
    if (len >= sizeof(db) || !tandemd__core_copy_find(name, len, &st, &dir, &kind, &error, &running))
        return TDM_ENOTFOUND;
    memcpy(db, name, len);
    db[len] = '\0';
    uint64_t lost_records = st.source_lsn > st.copied_lsn ? st.source_lsn - st.copied_lsn : 0;
    *lost_records_r = lost_records;
    return promote(db, name, len, kind, dir, min_epoch, " by the cluster agent",
                   st.copy_queue_generations, st.copy_queue_bytes, lost_records);
}
