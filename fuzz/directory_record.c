/*
 * Fuzzes the directory record decoder (src/directory/dir_codec.c). The first input byte picks
 * the record type (64 + byte % 6), the rest is the payload. Whatever decodes must re-encode to
 * the very same bytes (the format is canonical: sorted sets, canonical JSON) and be accepted by
 * the store-side validate(); any difference is a codec bug and aborts.
 */
#include "directory/directory.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint16_t type = (uint16_t)(TDM_REC_DIR_BOOTSTRAP +
                               data[0] % (TDM_REC_DIR_GROUP_MEMBERS - TDM_REC_DIR_BOOTSTRAP + 1));
    const uint8_t *payload = data + 1;
    size_t len = size - 1;

    struct dir_decoded dec;
    const char *error = NULL;
    int ret = dir_op_decode(type, payload, len, &dec, &error);
    check(ret == 0 || error != NULL);
    check(dir_record_handler.validate(type, payload, len, &error) == ret);
    if (ret != 0)
        return 0;
    uint8_t *enc;
    size_t enc_len;
    check(dir_op_encode(&dec.op, &enc, &enc_len, &error) == 0);
    check(enc_len == len && memcmp(enc, payload, len) == 0);
    dir_decoded_clear(&dec);
    free(enc);
    return 0;
}
