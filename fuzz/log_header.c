/*
 * Fuzzes log_header_decode (src/store/log_codec.c). Whatever it accepts must re-encode to the
 * very bytes it was decoded from, except the format version: the decoder reads every version
 * from TDM_LOG_VERSION_MIN on, and the encoder writes the current one. Otherwise the header has
 * no slack a decoder may ignore, so a mismatch means the decoder accepted something the encoder
 * cannot produce.
 */
#include "store/log_codec.h"

#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct log_header hdr;
    const char *error = NULL;
    int r = log_header_decode(data, size, &hdr, &error);

    (void)log_header_is_blank(data, size);
    if (r == TDM_ENEEDMORE) {
        if (size >= TDM_LOG_HEADER_USED || error == NULL)
            abort();
        return 0;
    }
    if (r == TDM_ECORRUPT) {
        if (error == NULL)
            abort();
        return 0;
    }
    if (r != 0 || size < TDM_LOG_HEADER_USED)
        abort();
    if (hdr.generation == 0 || hdr.first_lsn == 0)
        abort();

    uint8_t again[TDM_LOG_HEADER_USED];
    log_header_encode(&hdr, again);
    /* Bytes 8..12 are the version; a v1 header re-encodes as the current version. The header
     * checksum covers them, so compare around both. */
    uint32_t version = (uint32_t)data[8] | (uint32_t)data[9] << 8 | (uint32_t)data[10] << 16 |
                       (uint32_t)data[11] << 24;
    if (version < TDM_LOG_VERSION_MIN || version > TDM_LOG_VERSION)
        abort();
    if (version == TDM_LOG_VERSION) {
        if (memcmp(again, data, TDM_LOG_HEADER_USED) != 0)
            abort();
    } else if (memcmp(again, data, 8) != 0 ||
               memcmp(again + 12, data + 12, TDM_LOG_HEADER_USED - 12 - 4) != 0) {
        abort();
    }
    return 0;
}
