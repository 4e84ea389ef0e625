/* The server's own directory database, read in place by workers (dir_local.h). */
#include "directory/dir_local.h"

#include "directory/directory.h"
#include "store/store_reader.h"

#include <errno.h>
#include <stdio.h>

int
dir_local_reader(const char *datadir, struct store_reader **reader, const char **why_r)
{
    *why_r = NULL;
    if (*reader)
        return 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/db/%s", datadir, DIR_LOCAL_DB);
    int ret = store_reader_open(path, &dir_record_handler, reader, why_r);
    if (ret < 0)
        return ret;
    MDB_txn *txn;
    uint64_t lsn = 0;
    if ((ret = store_reader_begin(*reader, &txn)) == 0) {
        ret = store_reader_applied_lsn(*reader, txn, &lsn);
        mdb_txn_abort(txn);
    }
    if (ret < 0 || lsn == 0) {
        store_reader_free(reader);
        return ret < 0 ? ret : -EAGAIN;
    }
    return 0;
}
