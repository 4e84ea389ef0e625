/*
 * Fuzzes the recorded log end's decoder (src/cluster/cluster_end.c): the value of a CMS's
 * lease key at the witness, which any member may have written. Anything accepted must encode
 * back to exactly its bytes (the format has one spelling for each record).
 */
#include "cluster/cluster_end.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cluster_end_record r;
    const char *why = NULL;
    if (cluster_end_decode(data, size, &r, &why) != 0) {
        if (!why)
            abort();
        return 0;
    }
    static char again[CLUSTER_END_MAX];
    int n = cluster_end_encode(&r, again, sizeof(again));
    if (n < 0 || (size_t)n != size || memcmp(again, data, size) != 0)
        abort();
    return 0;
}
