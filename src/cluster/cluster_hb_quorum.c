/*
 * The pure part of the heartbeats (cluster_hb.h): votes, quorum and the newest confirmation,
 * from times passed in. No clock, no I/O: unit-tested in tests/unit/cluster/test_cluster_hb.c.
 */
#include "cluster/cluster_hb.h"

#include <stdlib.h>

static int
newest_first(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * The local vote confirms every s (it is the sender). With the others' answered send times
 * sorted newest first, the k-th of them (k = quorum - 1) is the largest s that k others have
 * each answered a message sent at or after: the newest s a majority confirms.
 */
bool
cluster_hb_confirmation(unsigned votes, const uint64_t *answered, unsigned n, uint64_t *s_r)
{
    unsigned need = cluster_hb_quorum(votes) - 1; /* besides the local vote */
    if (need == 0) {
        /* A lone vote confirms itself at any time; no caller has one (a cluster has at least
         * two nodes and a witness), so say "never" rather than invent a time. */
        return false;
    }
    if (n < need || n > CLUSTER_HB_MAX_MEMBERS)
        return false;
    uint64_t sorted[CLUSTER_HB_MAX_MEMBERS];
    for (unsigned i = 0; i < n; i++)
        sorted[i] = answered[i];
    qsort(sorted, n, sizeof(sorted[0]), newest_first);
    if (sorted[need - 1] == 0)
        return false; /* fewer than need have ever answered */
    *s_r = sorted[need - 1];
    return true;
}

bool
cluster_hb_is_seen(uint64_t last_heard_ms, uint64_t now_ms, uint64_t interval_ms, uint32_t misses)
{
    if (last_heard_ms == 0 || last_heard_ms > now_ms)
        return last_heard_ms != 0; /* a time from the future: heard, just now */
    return now_ms - last_heard_ms <= interval_ms * misses;
}
