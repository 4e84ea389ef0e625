#ifndef TANDEM_STORE_STORE_READER_H
#define TANDEM_STORE_STORE_READER_H

/*
 * Reading a database that another process (tandemd's core) has mounted: protocol and admin
 * workers read mail and directory objects straight from LMDB, read-only and zero-copy, while
 * every write goes to the core (DESIGN.md "Processes").
 *
 * The reader opens <dir>/store/ with MDB_RDONLY (LMDB's lock file coordinates readers with the
 * core's writer; it must be writable by this process, which it is for tandemd's own user) and
 * runs the handler's open() in a read-only transaction, so the handler's read functions
 * (dir_object_get()...) work with store_reader_handler_state(). It never touches the log, the
 * store lock or the metadata's clean flag, and it needs no mount: a database that is not
 * mounted reads as of its last applied transaction.
 *
 * A read transaction sees one consistent snapshot and holds back LMDB's page reuse while it is
 * open: keep it short (one request), never across a wait for the network.
 *
 * Hazard: in the same process as the store that writes the database (tests only), close the
 * reader after the store: LMDB's lock file uses POSIX record locks, which closing any
 * descriptor of that file drops for the whole process.
 */

#include "store/mail.h"
#include "store/store.h"

#include <lmdb.h>

struct store_reader;

/*
 * Opens dir's LMDB read-only. handler: the record handler the database's kind needs (NULL for
 * mail), borrowed until store_reader_free(). Returns 0 with an owned *reader_r, or
 * TDM_EFOREIGN (not a tandem database), TDM_EINVAL (handler does not fit the kind: the store
 * checks only that "mail" has none and every other kind has one, since mapping kinds to
 * handlers is the caller's), -errno, with *error_r (static or thread-local).
 */
int store_reader_open(const char *dir, const struct store_record_handler *handler,
                      struct store_reader **reader_r, const char **error_r);
void store_reader_free(struct store_reader **reader);

/* A read-only transaction on the current snapshot; end it with mdb_txn_abort(). Returns 0 or
 * a negative code (-ENOMEM, -EIO, TDM_ELIMIT when too many readers). */
int store_reader_begin(struct store_reader *reader, MDB_txn **txn_r);

/* The mail sub-databases (for mail_read.c's functions) and the handler's state. Ask after
 * store_reader_begin(): a reader opened before the handler's tables existed (a database
 * created but not yet mounted) gets a new state once they do; an older one stays valid, and
 * reads as empty, until store_reader_free(). */
const struct mail_dbis *store_reader_mail_dbis(const struct store_reader *reader);
void *store_reader_handler_state(const struct store_reader *reader);

/* The applied LSN in txn's snapshot (0 for an empty database). */
int store_reader_applied_lsn(struct store_reader *reader, MDB_txn *txn, uint64_t *lsn_r);

#endif
