/*
 * Fuzzes the IPC codec (src/lib/ipc.c, layout in include/tandem/ipc.h) the way a connection
 * uses it:
 *  1. Decode frames back to back from the input, as a receiver would. Every message accepted
 *     must pass ipc_msg_check and re-encode to exactly its bytes (a decoder that accepts two
 *     spellings of one message, or reads a field wrongly, fails here).
 *  2. The same with the first frame's CRC repaired, so mutated payloads reach the field
 *     decoder without the fuzzer having to solve a CRC.
 *  3. Feed the same bytes to an ipc_reader in chunks of pseudo-random sizes (seeded from the
 *     input) and once whole: it must yield exactly the frames of step 1, then end the way
 *     step 1 ended (the same error, or holding exactly the incomplete tail).
 * The seed corpus is written by `unit_lib_ipc --write-corpus fuzz/corpus/ipc`.
 */
#include "lib/ipc.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* STATUS_REPLY makes struct ipc_msg ~6 KiB: keep it off libFuzzer's stack. */
static struct ipc_msg msg;

static void
check_message(const uint8_t *frame_bytes, const struct ipc_frame *frame)
{
    const char *error = NULL;
    int rc = ipc_msg_decode_frame(frame, &msg, &error);
    if (rc != 0) {
        if (rc != TDM_ECORRUPT || error == NULL)
            abort();
        return;
    }
    if (ipc_msg_check(&msg, &error) != 0)
        abort();
    size_t size = 0;
    if (ipc_msg_size(&msg, &size, &error) != 0 || size != frame->length)
        abort();
    uint8_t *again = malloc(size);
    if (again == NULL)
        abort();
    size_t len = 0;
    if (ipc_msg_encode(&msg, again, size, &len, &error) != 0 || len != size)
        abort();
    if (memcmp(again, frame_bytes, size) != 0)
        abort();
    free(again);
}

/* Step 1. Returns the offset where decoding stopped; *end_rc and *end_error say why. */
static size_t
decode_all(const uint8_t *data, size_t size, int *end_rc, const char **end_error)
{
    size_t off = 0;
    *end_rc = 0;
    *end_error = NULL;
    while (off < size) {
        struct ipc_frame frame;
        const char *error = NULL;
        int rc = ipc_frame_decode(data + off, size - off, &frame, &error);
        if (rc != 0) {
            if ((rc != TDM_ENEEDMORE && rc != TDM_ECORRUPT) || error == NULL)
                abort();
            *end_rc = rc;
            *end_error = error;
            return off;
        }
        if (frame.length < TDM_IPC_FRAME_OVERHEAD || frame.length > size - off ||
            frame.payload != data + off + TDM_IPC_HEADER_SIZE ||
            frame.payload_len != frame.length - TDM_IPC_FRAME_OVERHEAD)
            abort();
        check_message(data + off, &frame);
        off += frame.length;
    }
    return off;
}

/* Step 3. chunk_seed 0 means one chunk. */
static void
read_all(const uint8_t *data, size_t size, uint32_t chunk_seed, size_t end_off, int end_rc,
         const char *end_error)
{
    struct ipc_reader *r = NULL;
    if (ipc_reader_new(0, &r) != 0)
        abort();
    size_t pos = 0, expect = 0;
    int rc = 0;
    const char *error = NULL;
    uint32_t seed = chunk_seed;
    while (pos < size) {
        size_t chunk = size - pos;
        if (chunk_seed != 0) {
            seed = seed * 1103515245u + 12345u;
            size_t pick = 1 + (seed >> 16) % 64;
            if (pick < chunk)
                chunk = pick;
        }
        const uint8_t *p = data + pos;
        size_t left = chunk;
        struct ipc_frame frame;
        while ((rc = ipc_reader_next(r, &p, &left, &frame, &error)) == 1) {
            /* The frame step 1 found at this point, byte for byte. */
            if (expect >= end_off && !(expect == end_off && end_rc == 0))
                abort();
            const uint8_t *start = frame.payload - TDM_IPC_HEADER_SIZE;
            if (expect + frame.length > end_off || memcmp(start, data + expect, frame.length) != 0)
                abort();
            expect += frame.length;
        }
        pos += chunk - left;
        if (rc != 0)
            break;
        if (left != 0)
            abort();
    }
    if (rc == TDM_ECORRUPT) {
        if (end_rc != TDM_ECORRUPT || expect != end_off || strcmp(error, end_error) != 0)
            abort();
    } else if (rc == 0) {
        if (expect != end_off || end_rc == TDM_ECORRUPT)
            abort();
        if (ipc_reader_buffered(r) != size - end_off)
            abort();
    } else {
        abort(); /* -ENOMEM: not expected at these sizes */
    }
    ipc_reader_free(&r);
}

/* Step 2. */
static void
decode_crc_repaired(const uint8_t *data, size_t size)
{
    if (size < TDM_IPC_FRAME_OVERHEAD)
        return;
    size_t flen =
        (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (flen < TDM_IPC_FRAME_OVERHEAD || flen > size)
        return;
    uint8_t *copy = malloc(flen);
    if (copy == NULL)
        abort();
    memcpy(copy, data, flen);
    uint32_t crc = crc32c(0, copy, flen - TDM_IPC_TRAILER_SIZE);
    for (int i = 0; i < 4; i++)
        copy[flen - TDM_IPC_TRAILER_SIZE + i] = (uint8_t)(crc >> (8 * i));
    int end_rc;
    const char *end_error;
    decode_all(copy, flen, &end_rc, &end_error);
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int end_rc;
    const char *end_error;
    size_t end_off = decode_all(data, size, &end_rc, &end_error);
    decode_crc_repaired(data, size);
    read_all(data, size, 0, end_off, end_rc, end_error);
    read_all(data, size, crc32c(0, data, size) | 1u, end_off, end_rc, end_error);
    return 0;
}
