/*
 * Fuzzes the transport dumpster's entry decoder (src/smtp/dumpster.c): whatever decodes must
 * re-encode to the very same bytes (the layout is canonical), and decode again to equal fields.
 */
#include "smtp/dumpster.h"

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
    struct dumpster_decoded d, again;
    const char *error = NULL;
    if (dumpster_entry_decode(data, size, &d, &error) != 0) {
        check(error != NULL);
        return 0;
    }
    uint8_t *enc;
    size_t len;
    check(dumpster_entry_encode(&d.e, &enc, &len) == 0);
    check(len == size && memcmp(enc, data, size) == 0);
    check(dumpster_entry_decode(enc, len, &again, &error) == 0);
    check(again.e.time == d.e.time && again.e.body_8bit == d.e.body_8bit);
    check(strcmp(again.e.sender, d.e.sender) == 0 && again.e.n_rcpts == d.e.n_rcpts);
    for (size_t i = 0; i < d.e.n_rcpts; i++) {
        check(memcmp(again.e.rcpts[i].id, d.e.rcpts[i].id, DUMPSTER_ID_LEN) == 0);
        check(strcmp(again.e.rcpts[i].address, d.e.rcpts[i].address) == 0);
    }
    check(again.e.body_len == d.e.body_len);
    dumpster_decoded_clear(&again);
    dumpster_decoded_clear(&d);
    free(enc);
    return 0;
}
