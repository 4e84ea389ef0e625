#ifndef TANDEM_DIRECTORY_DIR_LOCAL_H
#define TANDEM_DIRECTORY_DIR_LOCAL_H

/*
 * The server's own directory database, <datadir>/db/directory, read in place by the workers of
 * a server with the directory role (the admin API, IMAP logins, recipient lookups), through a
 * read-only store_reader (store/store_reader.h).
 *
 * A worker opens it on first use, not at start: the core creates the database at the first
 * start of a directory server, possibly after the worker is up. And a reader is kept only once
 * the database holds its bootstrap (LSN above 0): the record handler looks for its tables when
 * the reader opens, so a reader opened on a database created but not yet bootstrapped would
 * read as empty for its whole life, refusing every login and recipient for good.
 */

struct store_reader;

/* The directory database's name under <datadir>/db/. */
#define DIR_LOCAL_DB "directory"

/*
 * *reader when it is already open; otherwise opens <datadir>/db/directory into *reader.
 * Returns 0; -EAGAIN when the database is still being created (nothing is kept: call again
 * later); or store_reader_open()'s error with *why_r (static text, may be NULL) and nothing
 * kept.
 */
int dir_local_reader(const char *datadir, struct store_reader **reader, const char **why_r);

#endif
