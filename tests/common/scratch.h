#ifndef TANDEM_TESTS_COMMON_SCRATCH_H
#define TANDEM_TESTS_COMMON_SCRATCH_H

/*
 * Scratch directories for tests: one per test, made fresh in setup and removed with
 * everything in it in teardown, so no test sees another's files.
 */

#include <stddef.h>

/* Makes /tmp/tdm-test-<what>-XXXXXX into buf. Returns 0 or -errno. */
int scratch_make(char *buf, size_t size, const char *what);

/* Removes dir and everything below it (no shell). Returns 0 or -errno. */
int scratch_remove(const char *dir);

/* Copies the file from to the file to (created or replaced). Returns 0 or -errno. */
int scratch_copy(const char *from, const char *to);

/*
 * LMDB loss, as a power cut would cause it: scratch_lmdb_save() keeps a copy of the database
 * directory's data.mdb in the scratch directory, scratch_lmdb_restore() puts it back, losing
 * everything LMDB applied since. Both return 0 or -errno.
 */
int scratch_lmdb_save(const char *scratch, const char *db_dir);
int scratch_lmdb_restore(const char *scratch, const char *db_dir);

#endif
