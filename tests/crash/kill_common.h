#ifndef TANDEM_TESTS_CRASH_KILL_COMMON_H
#define TANDEM_TESTS_CRASH_KILL_COMMON_H

/*
 * Shared by crash_driver.c and crash_check.c (the kill -9 test).
 *
 * Each driver thread t owns mailbox "m<t>" and works in one folder of it at a time, serially
 * (one commit in flight per thread), so every expectation is per thread and unambiguous. The
 * side file holds one line per event, appended with one write(2) each (atomic between threads;
 * a kill -9 keeps what was written, no fsync needed):
 *
 *   B <t> <seq> MCREATE <mailbox>                  written before the commit is submitted
 *   B <t> <seq> FCREATE <mailbox> <folder>
 *   B <t> <seq> APPEND <mailbox> <folder> <guid hex> <size> <flags>
 *   B <t> <seq> FLAGS <mailbox> <folder> <uid> <flags>   (replace)
 *   B <t> <seq> EXPUNGE <mailbox> <folder> <uid>
 *   B <t> <seq> RENAME <mailbox> <folder> <new folder>
 *   K <t> <seq> <status> <uid>                     acknowledged (uid: what an append got)
 *   N <t> <seq>                                    crash_check: the op never took effect
 *
 * A B line without K is the op in flight at the kill: crash_check decides from the database
 * whether it took effect, and writes the K or N line that settles it for later checks.
 */

#include "store/mail.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KILL_MAX_THREADS 8

/* splitmix64 */
static inline uint64_t
kill_rnd(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A message body is a function of its GUID and size, so the checker can rebuild it. */
static inline void
kill_body_fill(uint8_t *body, size_t len, const uint8_t guid[MAIL_GUID_LEN])
{
    uint64_t st;
    memcpy(&st, guid, sizeof(st));
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = kill_rnd(&st);
        memcpy(body + i, &v, len - i < 8 ? len - i : 8);
    }
}

#endif
