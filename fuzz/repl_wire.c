/*
 * Fuzzes the replication codec (src/proto/repl/repl_wire.c, docs/formats/replication.md) the
 * way a connection uses it:
 *  1. Decode frames back to back from the input, as a receiver buffering the stream would
 *     (repl_frame_length, then repl_msg_decode once that many bytes are there). Every message
 *     accepted must pass repl_msg_check and re-encode to exactly its bytes.
 *  2. The same with the first frame's CRC repaired, so mutated payloads reach the field
 *     decoders without the fuzzer having to solve a CRC.
 *  3. Every accepted zstd LOG_DATA and SEED_DATA is decompressed into a buffer of exactly
 *     raw_length bytes (heap, so ASan sees a byte past it): it must succeed or fail with
 *     TDM_ECORRUPT, never write past the buffer.
 * The seed corpus is written by `unit_proto_repl_wire --write-corpus fuzz/corpus/repl_wire`.
 */
#include "proto/repl/repl_wire.h"
#include "proto/repl/repl_zstd.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_zstd(const uint8_t *data, uint32_t data_len, uint32_t raw_length)
{
    static struct repl_zstd *z;
    if (z == NULL && repl_zstd_new(REPL_ZSTD_LEVEL_DEFAULT, &z) != 0)
        abort();
    uint8_t *dst = malloc(raw_length);
    if (dst == NULL)
        abort();
    const char *error = NULL;
    int rc = repl_zstd_decompress(z, data, data_len, dst, raw_length, &error);
    if (rc != 0 && (rc != TDM_ECORRUPT || error == NULL))
        abort();
    free(dst);
}

static void
check_message(const uint8_t *bytes, size_t flen, const struct repl_msg *msg)
{
    const char *error = NULL;
    if (repl_msg_check(msg, &error) != 0)
        abort();
    size_t size = 0;
    if (repl_msg_size(msg, &size, &error) != 0 || size != flen)
        abort();
    uint8_t *again = malloc(size);
    if (again == NULL)
        abort();
    size_t len = 0;
    if (repl_msg_encode(msg, again, size, &len, &error) != 0 || len != size)
        abort();
    if (memcmp(again, bytes, size) != 0)
        abort();
    free(again);
    if (msg->type == REPL_LOG_DATA && msg->u.log_data.compression == REPL_COMPRESSION_ZSTD)
        check_zstd(msg->u.log_data.data, msg->u.log_data.data_len, msg->u.log_data.raw_length);
    if (msg->type == REPL_SEED_DATA && msg->u.seed_data.compression == REPL_COMPRESSION_ZSTD)
        check_zstd(msg->u.seed_data.data, msg->u.seed_data.data_len, msg->u.seed_data.raw_length);
}

static void
decode_all(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        size_t need = 0;
        const char *error = NULL;
        int rc = repl_frame_length(data + off, size - off, &need, &error);
        if (rc != 0) {
            if ((rc != TDM_ENEEDMORE && rc != TDM_ECORRUPT) || error == NULL)
                abort();
            return;
        }
        if (need < REPL_WIRE_FRAME_OVERHEAD || need > REPL_WIRE_MAX_FRAME)
            abort();
        struct repl_msg msg;
        size_t flen = 0;
        rc = repl_msg_decode(data + off, size - off, &msg, &flen, &error);
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
    if (repl_frame_length(data, size, &need, NULL) == 0 && need <= size) {
        uint8_t *copy = malloc(need);
        if (copy == NULL)
            abort();
        memcpy(copy, data, need);
        uint32_t crc = crc32c(0, copy, need - REPL_WIRE_TRAILER_SIZE);
        for (int k = 0; k < 4; k++)
            copy[need - 4 + k] = (uint8_t)(crc >> (8 * k));
        decode_all(copy, need);
        free(copy);
    }
    return 0;
}
