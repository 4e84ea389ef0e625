/*
 * Fuzzes the decoder of the server key confirmations a server keeps in its datadir
 * (src/dirclient/dir_confirm.c), read at every start. Anything accepted must encode back to
 * exactly its bytes (one spelling per table); anything refused leaves the table empty.
 */
#include "dirclient/dir_confirm.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dir_confirm c;
    const char *why = NULL;
    if (dir_confirm_decode(&c, (const char *)data, size, &why) != 0) {
        static const struct dir_confirm empty;
        if (!why || memcmp(&c, &empty, sizeof(c)) != 0)
            abort();
        return 0;
    }
    char *again = dir_confirm_encode(&c);
    if (!again || strlen(again) != size || memcmp(again, data, size) != 0)
        abort();
    free(again);
    return 0;
}
