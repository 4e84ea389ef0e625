#ifndef TANDEM_STORE_LOG_CODEC_H
#define TANDEM_STORE_LOG_CODEC_H

/*
 * Sans-IO encoder and decoder for generation headers and record frames
 * (layout: include/tandem/log_format.h). Never touches a file; fuzzed in fuzz/log_header.c
 * and fuzz/log_record.c.
 */

#include "tandem/log_format.h"

#include <stddef.h>
#include <stdint.h>

/*
 * A generation's identity. Up to version 2 all of it is in the header; from version 3 the
 * header holds only the version and the GUID, and the rest comes from the BEGIN record
 * (log_begin_decode()), so that readers see one struct whatever the version.
 */
struct log_header {
    uint32_t version;
    uint8_t guid[TDM_LOG_GUID_LEN];
    uint64_t generation;
    uint64_t created_us;
    uint64_t epoch;
    uint64_t first_lsn;
    uint32_t prev_checksum;
    uint32_t file_size;
};

/*
 * Writes TDM_LOG_HEADER_USED bytes into out, in the layout of hdr->version: version 3 writes
 * the GUID only, versions 1 and 2 every field (the store writes only TDM_LOG_VERSION; the
 * older layouts are there for tests and tools that make logs of older databases).
 */
void log_header_encode(const struct log_header *hdr, uint8_t out[TDM_LOG_HEADER_USED]);

/*
 * Decodes a header from len bytes. Returns 0, TDM_ENEEDMORE when len < TDM_LOG_HEADER_USED,
 * or TDM_ECORRUPT with *error_r naming the failed check (static string). For version 3 only
 * version and guid are set (the rest zero): the BEGIN record has the generation's identity.
 */
int log_header_decode(const uint8_t *buf, size_t len, struct log_header *hdr_r,
                      const char **error_r);

/* True when the header area is all zero: a preallocated file whose header was never written. */
int log_header_is_blank(const uint8_t *buf, size_t len);

struct log_record {
    uint64_t lsn;
    uint64_t epoch;
    uint16_t type;
    uint16_t flags;
    uint32_t length;
    const uint8_t *payload; /* borrowed: points into the decoded buffer */
};

static inline size_t
log_frame_size(uint32_t payload_len)
{
    return (size_t)TDM_LOG_FRAME_OVERHEAD + payload_len;
}

/* Encodes a frame into out, which holds log_frame_size(len) bytes. */
void log_record_encode(uint64_t lsn, uint64_t epoch, uint16_t type, const void *payload,
                       uint32_t len, uint8_t *out);

/*
 * Encoding a frame in two steps, so that the costly part (copying and checksumming the payload)
 * can run before the LSN and epoch are known, and the part that needs them is a few dozen
 * instructions whatever the payload's size: the store assigns LSNs under its lock, in queue
 * order (store_commit_async()). log_record_prepare() encodes the frame with LSN and epoch 0;
 * log_record_seal() writes them and fixes the checksum. The frame is then byte for byte what
 * log_record_encode() makes. This works because a CRC is linear: changing bytes at the start of
 * a message changes its CRC by the CRC of the change followed by as many zeros as the message
 * has after it, and appending zeros is a multiplication by a power of x modulo the polynomial.
 */
struct log_frame_pre {
    uint32_t crc0;  /* CRC32C of the frame with LSN and epoch 0 */
    uint32_t shift; /* x^(8k) modulo the polynomial, k = bytes after the LSN and epoch */
};
void log_record_prepare(uint16_t type, const void *payload, uint32_t len, uint8_t *out,
                        struct log_frame_pre *pre_r);
void log_record_seal(uint8_t *out, uint32_t len, const struct log_frame_pre *pre, uint64_t lsn,
                     uint64_t epoch);

/*
 * Decodes the frame at the start of buf.
 * Returns 0 with *rec_r filled and *frame_len_r set;
 *   1 when the frame's LSN field is zero and its header is all zero (end of records: zero fill);
 *   TDM_ENEEDMORE when buf ends inside the frame (a torn tail if it is the end of the file);
 *   TDM_ECORRUPT with *error_r set for a bad length, type or checksum.
 * rec_r->payload borrows from buf.
 */
int log_record_decode(const uint8_t *buf, size_t len, struct log_record *rec_r, size_t *frame_len_r,
                      const char **error_r);

struct log_end {
    uint64_t record_count;
    uint32_t gen_checksum;
};

void log_end_encode(const struct log_end *end, uint8_t out[TDM_LOG_END_PAYLOAD]);
/* Returns 0 or TDM_ECORRUPT. */
int log_end_decode(const uint8_t *payload, uint32_t len, struct log_end *end_r);

/* Encodes the BEGIN frame of a version 3 generation (TDM_LOG_BEGIN_FRAME bytes) from hdr's
 * generation, created_us, epoch, first_lsn, prev_checksum and file_size. */
void log_begin_encode(const struct log_header *hdr, uint8_t out[TDM_LOG_BEGIN_FRAME]);
/*
 * Fills hdr's generation fields from rec, a decoded BEGIN frame (version and guid are left
 * alone). Returns 0, or TDM_ECORRUPT with *error_r naming the failed check.
 */
int log_begin_decode(const struct log_record *rec, struct log_header *hdr, const char **error_r);

/* Little-endian helpers shared by the store's codecs. */
static inline void
le_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void
le_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void
le_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t
le_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t
le_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t
le_get64(const uint8_t *p)
{
    return (uint64_t)le_get32(p) | ((uint64_t)le_get32(p + 4) << 32);
}

#endif
