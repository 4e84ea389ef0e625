#ifndef TANDEM_LIB_CLOCK_H
#define TANDEM_LIB_CLOCK_H

/*
 * The one clock for deadlines that must count real elapsed time: CLOCK_BOOTTIME in
 * milliseconds. Unlike CLOCK_MONOTONIC it keeps running while the host is suspended, so a
 * node resumed after a suspend sees that its witness's confirmation is old, instead of
 * believing it still fresh (docs/cluster.md "Timing"). Every cluster deadline (heartbeats,
 * lease renewals, the fence, the witness's lease expiry) is on this clock, and so is anything
 * that ages a cached answer.
 *
 * Not for pthread_cond_timedwait (condition variables take only REALTIME or MONOTONIC) nor for
 * libevent timers, which run on the loop's monotonic clock: a timer may fire late after a
 * suspend, so a deadline is checked again against this clock where it is acted on.
 */

#include <stdint.h>

/* Milliseconds since an arbitrary start (the boot), never going back. Thread-safe. */
uint64_t tdm_clock_ms(void);

#endif
