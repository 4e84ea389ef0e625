/*
 * Fuzzes log_header_decode (src/store/log_codec.c). Whatever it accepts must re-encode to the
 * very bytes it was decoded from, in the layout of its version (every version from
 * TDM_LOG_VERSION_MIN on is read, and the encoder writes the layout hdr.version names). The
 * header has no slack a decoder may ignore, so a mismatch means the decoder accepted something
 * the encoder cannot produce.
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
    uint32_t version = (uint32_t)data[8] | (uint32_t)data[9] << 8 | (uint32_t)data[10] << 16 |
                       (uint32_t)data[11] << 24;
    if (version < TDM_LOG_VERSION_MIN || version > TDM_LOG_VERSION || hdr.version != version)
        abort();
    /* Up to version 2 the header is the generation's identity; from version 3 only the
     * database's, and the rest comes from BEGIN. */
    if (version < TDM_LOG_VERSION_BEGIN ? hdr.generation == 0 || hdr.first_lsn == 0
                                        : hdr.generation != 0 || hdr.first_lsn != 0)
        abort();

    /* Every version re-encodes to the same bytes. */
    uint8_t again[TDM_LOG_HEADER_USED];
    log_header_encode(&hdr, again);
    if (memcmp(again, data, TDM_LOG_HEADER_USED) != 0)
        abort();
    return 0;
}
