#ifndef TANDEM_STORE_STORE_RO_H
#define TANDEM_STORE_STORE_RO_H

/* Opening a database read-only, shared by inspect (store_inspect.c) and verify
 * (store_verify.c). See store_ro.c for the lock-file hazard. */

#include "store/store_int.h"

#include <stdbool.h>
#include <stdint.h>

struct store__ro_db {
    char log_dir[4096], lmdb_dir[4096], lock_path[4096];
    bool mounted, nolock;
    MDB_env *env;
    MDB_txn *txn; /* read snapshot, held for the whole inspection */
    MDB_dbi meta;
    uint8_t guid[TDM_LOG_GUID_LEN];
    uint64_t applied, checkpoint, clean, epoch;
    char kind[STORE_KIND_MAX + 1]; /* "mail" when the metadata has none */
};

/* Opens dir's LMDB read-only with a read snapshot held until store__ro_close(). */
int store__ro_open(const char *dir, struct store__ro_db *db, const char **error_r);
void store__ro_close(struct store__ro_db *db);
/* why from store__gen_scan() starts with the path; a problem already carries the file. */
const char *store__strip_path(const char *why, const char *path);

#endif
