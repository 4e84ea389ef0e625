/*
 * Replication, the active side: what of the log is durable and final, and read access to its
 * generation files, so that the source can ship byte ranges that a copy writes at the same
 * offsets (store_copy.h). The durable position is kept by store__gen_durable() on the log
 * thread after every fdatasync; closed generations keep the offset past their END in the
 * generation table.
 */
#include "store/store_int.h"

#include "lib/err.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int
store_log_extent(struct store *s, uint64_t generation, struct store_log_extent *ext_r)
{
    memset(ext_r, 0, sizeof(*ext_r));
    pthread_mutex_lock(&s->lock);
    /* cur_gen is the highest generation durably begun: a spare the log thread has made
     * current but not begun yet is not part of the log anyone may read. */
    if (s->cur_gen == 0 || generation < s->lowest_gen || generation > s->cur_gen) {
        pthread_mutex_unlock(&s->lock);
        return TDM_ENOTFOUND;
    }
    const struct gen_entry *e = &s->gens[generation - s->lowest_gen];
    ext_r->generation = generation;
    ext_r->file_size = e->file_size;
    ext_r->epoch = e->epoch;
    ext_r->first_lsn = e->first_lsn;
    if (generation == s->cur_gen) {
        ext_r->durable_end = s->dur_end;
        ext_r->last_lsn = s->dur_last_lsn;
        ext_r->closed = s->dur_closed;
    } else {
        ext_r->durable_end = e->end;
        ext_r->last_lsn = e[1].first_lsn - 1;
        ext_r->closed = true;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int
store_log_open_generation(struct store *s, uint64_t generation, int *fd_r)
{
    struct store_log_extent ext;
    int ret = store_log_extent(s, generation, &ext);
    if (ret < 0)
        return ret;
    char path[4096];
    store__gen_path(path, sizeof(path), s->log_dir, generation);
    /* Not through io_ops: the caller reads the fd itself (pread, sendfile). Truncation may
     * remove the file between the check above and here: then it is gone, as the check says. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TDM_ENOTFOUND : -errno;
    *fd_r = fd;
    return 0;
}

int
store_snapshot(struct store *s, int fd, uint64_t *applied_lsn_r, const char **error_r)
{
    /* Read before the copy's own read transaction: the snapshot holds at least this much,
     * and replay on the copy skips what it already has. */
    MDB_txn *txn;
    int ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    uint64_t applied = 0;
    if (ret == 0) {
        ret = store__meta_get_u64(txn, s->meta, STORE_META_APPLIED, &applied);
        mdb_txn_abort(txn);
    }
    if (ret < 0) {
        *error_r =
            store__errorf("cannot read the applied LSN of %s: %s", s->dir, tdm_strerror(ret));
        return ret;
    }
    int rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
    if (rc != 0) {
        *error_r = store__errorf("cannot snapshot %s: %s", s->lmdb_dir, mdb_strerror(rc));
        return store__lmdb_err(rc);
    }
    *applied_lsn_r = applied;
    return 0;
}

void
store_set_durable_hook(struct store *s, store_durable_cb *cb, void *ctx)
{
    pthread_mutex_lock(&s->hook_lock);
    s->durable_cb = cb;
    s->durable_ctx = cb ? ctx : NULL;
    pthread_mutex_unlock(&s->hook_lock);
}
