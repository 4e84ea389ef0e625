/*
 * zstd for LOG_DATA chunks. The decompressor's one promise is that a peer's numbers cannot
 * make it write past the buffer the caller sized from raw_length: the frame must declare
 * exactly raw_length as its content size, must be the only frame in src, and must produce
 * exactly that many bytes into a dst of that capacity (zstd itself never writes past the
 * capacity it is given).
 */
#include "proto/repl/repl_zstd.h"

#include "lib/err.h"
#include "proto/repl/repl_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

struct repl_zstd {
    ZSTD_CCtx *cctx; /* made on first compress: a receiver never needs one */
    ZSTD_DCtx *dctx; /* made on first decompress */
    int level;
};

int
repl_zstd_new(int level, struct repl_zstd **z_r)
{
    struct repl_zstd *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return -ENOMEM;
    if (level < REPL_ZSTD_LEVEL_MIN)
        level = REPL_ZSTD_LEVEL_MIN;
    if (level > REPL_ZSTD_LEVEL_MAX)
        level = REPL_ZSTD_LEVEL_MAX;
    z->level = level;
    *z_r = z;
    return 0;
}

void
repl_zstd_free(struct repl_zstd **z)
{
    if (*z == NULL)
        return;
    ZSTD_freeCCtx((*z)->cctx);
    ZSTD_freeDCtx((*z)->dctx);
    free(*z);
    *z = NULL;
}

int
repl_zstd_compress(struct repl_zstd *z, const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                   size_t *out_len_r)
{
    if (len == 0 || len > REPL_WIRE_CHUNK_MAX)
        return TDM_EINVAL;
    if (z->cctx == NULL) {
        z->cctx = ZSTD_createCCtx();
        if (z->cctx == NULL)
            return -ENOMEM;
        if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, z->level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0))) {
            ZSTD_freeCCtx(z->cctx);
            z->cctx = NULL;
            return -ENOMEM;
        }
    }
    /* Capped below len: output that would not be smaller is useless, and zstd stops with
     * dstSize_tooSmall instead of finishing it. */
    size_t limit = cap < len - 1 ? cap : len - 1;
    size_t n = ZSTD_compress2(z->cctx, dst, limit, src, len);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return TDM_ELIMIT;
        if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
            return -ENOMEM;
        return TDM_EINVAL;
    }
    if (n == 0 || n >= len)
        return TDM_ELIMIT;
    *out_len_r = n;
    return 0;
}

int
repl_zstd_decompress(struct repl_zstd *z, const uint8_t *src, size_t len, uint8_t *dst,
                     size_t raw_len, const char **error_r)
{
    if (len == 0) {
        *error_r = "zstd: empty input";
        return TDM_ECORRUPT;
    }
    unsigned long long declared = ZSTD_getFrameContentSize(src, len);
    if (declared == ZSTD_CONTENTSIZE_ERROR) {
        *error_r = "zstd: not a zstd frame";
        return TDM_ECORRUPT;
    }
    if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
        *error_r = "zstd: the frame does not declare its size";
        return TDM_ECORRUPT;
    }
    if (declared != raw_len) {
        *error_r = "zstd: the frame declares a size other than raw_length";
        return TDM_ECORRUPT;
    }
    size_t frame = ZSTD_findFrameCompressedSize(src, len);
    if (ZSTD_isError(frame)) {
        *error_r = "zstd: the frame is cut short or malformed";
        return TDM_ECORRUPT;
    }
    if (frame != len) {
        *error_r = "zstd: bytes after the frame";
        return TDM_ECORRUPT;
    }
    if (z->dctx == NULL) {
        z->dctx = ZSTD_createDCtx();
        if (z->dctx == NULL)
            return -ENOMEM;
        /* A 1 MiB chunk never needs a window above 1 MiB; a frame that asks for more is
         * refused instead of making us allocate for it. */
        if (ZSTD_isError(ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax, 20))) {
            ZSTD_freeDCtx(z->dctx);
            z->dctx = NULL;
            return -ENOMEM;
        }
    }
    size_t n = ZSTD_decompressDCtx(z->dctx, dst, raw_len, src, len);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
            return -ENOMEM;
        *error_r = "zstd: the frame does not decompress";
        return TDM_ECORRUPT;
    }
    if (n != raw_len) {
        *error_r = "zstd: the frame decompressed to a size other than raw_length";
        return TDM_ECORRUPT;
    }
    return 0;
}
