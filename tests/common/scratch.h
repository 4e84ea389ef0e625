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

#endif
