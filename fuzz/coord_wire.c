/*
 * Fuzzes the coordination codec (src/proto/coord/coord_wire.c, docs/formats/coord.md) the way
 * the witness and the client use it:
 *  1. Decode frames back to back from the input (coord_frame_length, then coord_msg_decode
 *     once that many bytes are there). Every message accepted must pass coord_msg_check and
 *     re-encode to exactly its bytes.
 *  2. The same with the first frame's CRC repaired, so mutated payloads reach the field
 *     decoders without the fuzzer having to solve a CRC.
 * The seed corpus is written by `unit_proto_coord_wire --write-corpus fuzz/corpus/coord_wire`.
 */
#include "proto/coord/coord_wire.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_message(const uint8_t *bytes, size_t flen, const struct coord_msg *msg)
{
    const char *error = NULL;
    if (coord_msg_check(msg, &error) != 0)
        abort();
    size_t size = 0;
    if (coord_msg_size(msg, &size, &error) != 0 || size != flen)
        abort();
    uint8_t *again = malloc(size);
    if (again == NULL)
        abort();
    size_t len = 0;
    if (coord_msg_encode(msg, again, size, &len, &error) != 0 || len != size)
        abort();
    if (memcmp(again, bytes, size) != 0)
        abort();
    free(again);
}

static void
decode_all(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        size_t need = 0;
        const char *error = NULL;
        int rc = coord_frame_length(data + off, size - off, &need, &error);
        if (rc != 0) {
            if ((rc != TDM_ENEEDMORE && rc != TDM_ECORRUPT) || error == NULL)
                abort();
            return;
        }
        if (need < COORD_WIRE_FRAME_OVERHEAD || need > COORD_WIRE_MAX_FRAME)
            abort();
        struct coord_msg msg;
        size_t flen = 0;
        rc = coord_msg_decode(data + off, size - off, &msg, &flen, &error);
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
    if (coord_frame_length(data, size, &need, NULL) == 0 && need <= size) {
        uint8_t *copy = malloc(need);
        if (copy == NULL)
            abort();
        memcpy(copy, data, need);
        uint32_t crc = crc32c(0, copy, need - COORD_WIRE_TRAILER_SIZE);
        for (int k = 0; k < 4; k++)
            copy[need - 4 + k] = (uint8_t)(crc >> (8 * k));
        decode_all(copy, need);
        free(copy);
    }
    return 0;
}
