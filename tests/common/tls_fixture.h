#ifndef TANDEM_TESTS_TLS_FIXTURE_H
#define TANDEM_TESTS_TLS_FIXTURE_H

/*
 * A local CA and a server certificate for 127.0.0.1, made by the real code (lib/tls.h) in a
 * scratch datadir, for tests that need TLS between two ends in one process.
 */

#include "lib/tls.h"

#include <stddef.h>

/* Makes dir (a scratch directory named after tag, see scratch.h) and the local set in it;
 * *files_r gets their paths (tls_files_clear() them). Returns 0, or -1 after printing why. */
int tls_fixture_make(char *dir, size_t dir_size, const char *tag, struct tls_files *files_r);

#endif
