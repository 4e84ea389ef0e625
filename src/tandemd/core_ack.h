#ifndef TANDEM_TANDEMD_CORE_ACK_H
#define TANDEM_TANDEMD_CORE_ACK_H

/*
 * Which commits the core may acknowledge (core_commit.c; loop thread only). A database's
 * commits are acknowledged only while it is not fenced (tandemd__core_db_set) and, when it
 * has an acknowledgement deadline, while tdm_clock_ms() is before it. The cluster agent sets
 * the deadline of an active CMS's databases to the end of its newest confirmation (s + F,
 * docs/cluster.md "Timing") each time the FSM allows writes. The deadline is checked where a
 * commit is submitted and again where it is answered, on the clock, so a timer that fires late
 * (the loop blocked by a replay or a store_close, or a host suspend) can never stretch it.
 * A commit refused or answered after the deadline gets TDM_ENOTFOUND, as a database not here.
 */

#include <stdbool.h>
#include <stdint.h>

/* Sets database name's deadline (tdm_clock_ms() milliseconds): until_ms 0 acknowledges
 * nothing, UINT64_MAX removes the deadline (the default: a database outside a cluster). */
void tandemd__core_db_set_ack_deadline(const char *name, uint64_t until_ms);

/* Whether a commit to database name (NUL-terminated) may be acknowledged now. */
bool tandemd__core_db_may_ack(const char *name);

#endif
