/*
 * Fuzzes the heartbeat codec (src/proto/cluster/cluster_wire.c, docs/formats/cluster.md) the
 * way a connection uses it:
 *  1. Decode frames back to back from the input, as a receiver buffering the stream would
 *     (cluster_frame_length, then cluster_msg_decode once that many bytes are there). Every
 *     message accepted must pass cluster_msg_check and re-encode to exactly its bytes.
 *  2. The same with the first frame's CRC repaired, so mutated payloads reach the field
 *     decoders without the fuzzer having to solve a CRC.
 * The seed corpus is written by `unit_proto_cluster_wire --write-corpus fuzz/corpus/cluster_wire`.
 */
#include "proto/cluster/cluster_wire.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_message(const uint8_t *bytes, size_t flen, const struct cluster_msg *msg)
{
    const char *error = NULL;
    if (cluster_msg_check(msg, &error) != 0)
        abort();
    static uint8_t again[CLUSTER_WIRE_MAX_FRAME];
    size_t len = 0;
    if (cluster_msg_encode(msg, again, sizeof(again), &len, &error) != 0 || len != flen)
        abort();
    if (memcmp(again, bytes, flen) != 0)
        abort();
}

static void
decode_all(const uint8_t *data, size_t size)
{
    static struct cluster_msg msg; /* ~10 KiB: off the stack */
    size_t off = 0;
    while (off < size) {
        size_t need = 0;
        const char *error = NULL;
        int rc = cluster_frame_length(data + off, size - off, &need, &error);
        if (rc != 0) {
            if ((rc != TDM_ENEEDMORE && rc != TDM_ECORRUPT) || error == NULL)
                abort();
            return;
        }
        if (need < CLUSTER_WIRE_HEADER_SIZE + CLUSTER_WIRE_TRAILER_SIZE ||
            need > CLUSTER_WIRE_MAX_FRAME)
            abort();
        size_t flen = 0;
        rc = cluster_msg_decode(data + off, size - off, &msg, &flen, &error);
        if (size - off < need) {
            if (rc != TDM_ENEEDMORE)
                abort();
            return;
        }
        if (rc != 0) {
            if (rc != TDM_ECORRUPT || error == NULL)
                abort();
            return;
        }
        if (flen != need)
            abort();
        check_message(data + off, flen, &msg);
        off += flen;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_all(data, size);

    size_t need = 0;
    const char *error = NULL;
    if (cluster_frame_length(data, size, &need, &error) == 0 && need <= size) {
        uint8_t *copy = malloc(need);
        if (copy == NULL)
            abort();
        memcpy(copy, data, need);
        uint32_t crc = crc32c(0, copy, need - CLUSTER_WIRE_TRAILER_SIZE);
        for (int k = 0; k < 4; k++)
            copy[need - 4 + k] = (uint8_t)(crc >> (8 * k));
        decode_all(copy, need);
        free(copy);
    }
    return 0;
}
