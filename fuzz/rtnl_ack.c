/*
 * Fuzzes the parser of the kernel's answers to an rtnetlink address request
 * (src/lib/rtnl_addr.c, rtnl_ack_parse): whatever the datagram, it finds the answer, says
 * there is none, or says malformed, and never reads past the end. The first 4 bytes are the
 * sequence number asked about.
 */
#include "lib/rtnl_addr.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t seq;
    memcpy(&seq, data, 4);
    /* A copy of exactly the datagram's size, so ASan sees any read past it. */
    size_t len = size - 4;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf)
        abort();
    memcpy(buf, data + 4, len);
    int err = 1;
    int r = rtnl_ack_parse(buf, len, seq, &err);
    if (r == 1 && (err > 0 || err < -4095))
        abort();
    if (r != 1 && r != 0 && r != -EBADMSG)
        abort();
    free(buf);
    return 0;
}
