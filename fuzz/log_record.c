/*
 * Fuzzes log_record_decode (src/store/log_codec.c) the way a generation reader uses it: decode
 * the frame at the current offset, advance by its length, stop at the zero fill, a frame cut
 * short, or a corrupt one. Every accepted frame must lie inside the buffer and re-encode to
 * exactly its bytes; an END frame's payload must round-trip through the END codec too.
 */
#include "store/log_codec.h"

#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_frame(const uint8_t *frame, size_t avail, const struct log_record *rec, size_t flen)
{
    if (flen != log_frame_size(rec->length) || flen > avail)
        abort();
    if (rec->payload != frame + TDM_LOG_FRAME_HEADER)
        abort();
    if (rec->type == 0 || rec->flags != 0 || rec->length > TDM_LOG_MAX_PAYLOAD)
        abort();
    if (rec->lsn == 0 && rec->type != TDM_REC_END)
        abort();

    uint8_t *again = malloc(flen);
    if (!again)
        abort();
    log_record_encode(rec->lsn, rec->epoch, rec->type, rec->payload, rec->length, again);
    if (memcmp(again, frame, flen) != 0)
        abort();
    free(again);

    if (rec->type == TDM_REC_BEGIN) {
        struct log_header hdr = {.version = TDM_LOG_VERSION};
        const char *why = NULL;
        if (log_begin_decode(rec, &hdr, &why) == 0) {
            uint8_t f[TDM_LOG_BEGIN_FRAME];
            log_begin_encode(&hdr, f);
            if (flen != TDM_LOG_BEGIN_FRAME || memcmp(f, frame, sizeof(f)) != 0)
                abort();
            if (hdr.generation == 0 || hdr.first_lsn == 0)
                abort();
        } else if (why == NULL) {
            abort();
        }
    }
    if (rec->type == TDM_REC_END) {
        struct log_end end;
        if (log_end_decode(rec->payload, rec->length, &end) == 0) {
            uint8_t p[TDM_LOG_END_PAYLOAD];
            log_end_encode(&end, p);
            if (rec->length != TDM_LOG_END_PAYLOAD || memcmp(p, rec->payload, sizeof(p)) != 0)
                abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct log_record rec;
        size_t flen = 0;
        const char *error = NULL;
        int r = log_record_decode(data + off, size - off, &rec, &flen, &error);
        if (r == 1)
            break; /* zero fill */
        if (r == TDM_ENEEDMORE || r == TDM_ECORRUPT) {
            if (error == NULL)
                abort();
            break;
        }
        if (r != 0)
            abort();
        check_frame(data + off, size - off, &rec, flen);
        off += flen;
    }
    return 0;
}
