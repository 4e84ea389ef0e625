#include "store/log_codec.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <pthread.h>
#include <string.h>

void
log_header_encode(const struct log_header *hdr, uint8_t out[TDM_LOG_HEADER_USED])
{
    memset(out, 0, TDM_LOG_HEADER_USED);
    memcpy(out, TDM_LOG_MAGIC, TDM_LOG_MAGIC_LEN);
    le_put32(out + 8, hdr->version);
    le_put32(out + 12, TDM_LOG_HEADER_SIZE);
    memcpy(out + 16, hdr->guid, TDM_LOG_GUID_LEN);
    if (hdr->version >= TDM_LOG_VERSION_BEGIN) {
        le_put32(out + 72, crc32c(0, out, 72));
        return;
    }
    le_put64(out + 32, hdr->generation);
    le_put64(out + 40, hdr->created_us);
    le_put64(out + 48, hdr->epoch);
    le_put64(out + 56, hdr->first_lsn);
    le_put32(out + 64, hdr->prev_checksum);
    le_put32(out + 68, hdr->file_size);
    le_put32(out + 72, crc32c(0, out, 72));
}

int
log_header_is_blank(const uint8_t *buf, size_t len)
{
    size_t n = len < TDM_LOG_HEADER_USED ? len : TDM_LOG_HEADER_USED;
    for (size_t i = 0; i < n; i++)
        if (buf[i] != 0)
            return 0;
    return 1;
}

/* The checks a generation's identity passes, from a header or a BEGIN record. */
static int
identity_check(const struct log_header *hdr, uint32_t min_size, const char **error_r)
{
    if (hdr->generation == 0 || hdr->first_lsn == 0) {
        *error_r = "generation and first LSN must be at least 1";
        return TDM_ECORRUPT;
    }
    if (hdr->file_size < min_size) {
        *error_r = "file size of the generation is too small";
        return TDM_ECORRUPT;
    }
    if (hdr->file_size > TDM_LOG_MAX_GENERATION_SIZE) {
        *error_r = "file size of the generation exceeds the largest generation";
        return TDM_ECORRUPT;
    }
    return 0;
}

int
log_header_decode(const uint8_t *buf, size_t len, struct log_header *hdr_r, const char **error_r)
{
    if (len < TDM_LOG_HEADER_USED) {
        *error_r = "header is shorter than its fixed size";
        return TDM_ENEEDMORE;
    }
    if (memcmp(buf, TDM_LOG_MAGIC, TDM_LOG_MAGIC_LEN) != 0) {
        *error_r = "bad magic (not a tandem log generation)";
        return TDM_ECORRUPT;
    }
    if (le_get32(buf + 72) != crc32c(0, buf, 72)) {
        *error_r = "header checksum mismatch";
        return TDM_ECORRUPT;
    }
    uint32_t version = le_get32(buf + 8);
    /* Version 1 logs differ from version 2 only in promising zero fill after the records (no
     * recycled files), so they are read as they are. */
    if (version < TDM_LOG_VERSION_MIN || version > TDM_LOG_VERSION) {
        *error_r = "unsupported log format version";
        return TDM_ECORRUPT;
    }
    if (le_get32(buf + 12) != TDM_LOG_HEADER_SIZE) {
        *error_r = "unsupported header size";
        return TDM_ECORRUPT;
    }
    memset(hdr_r, 0, sizeof(*hdr_r));
    hdr_r->version = version;
    memcpy(hdr_r->guid, buf + 16, TDM_LOG_GUID_LEN);
    if (version >= TDM_LOG_VERSION_BEGIN) {
        for (size_t i = 32; i < 72; i++)
            if (buf[i] != 0) {
                *error_r = "reserved header bytes are set";
                return TDM_ECORRUPT;
            }
        return 0;
    }
    hdr_r->generation = le_get64(buf + 32);
    hdr_r->created_us = le_get64(buf + 40);
    hdr_r->epoch = le_get64(buf + 48);
    hdr_r->first_lsn = le_get64(buf + 56);
    hdr_r->prev_checksum = le_get32(buf + 64);
    hdr_r->file_size = le_get32(buf + 68);
    return identity_check(hdr_r, TDM_LOG_HEADER_SIZE + TDM_LOG_END_FRAME, error_r);
}

void
log_record_encode(uint64_t lsn, uint64_t epoch, uint16_t type, const void *payload, uint32_t len,
                  uint8_t *out)
{
    le_put64(out, lsn);
    le_put64(out + 8, epoch);
    le_put16(out + 16, type);
    le_put16(out + 18, 0);
    le_put32(out + 20, len);
    if (len > 0)
        memcpy(out + TDM_LOG_FRAME_HEADER, payload, len);
    uint32_t crc = crc32c(0, out, TDM_LOG_FRAME_HEADER + (size_t)len);
    le_put32(out + TDM_LOG_FRAME_HEADER + len, crc);
}

/*
 * Arithmetic on polynomials over GF(2) modulo CRC32C's polynomial, in the bit-reflected form
 * the CRC register uses: bit 31 is the coefficient of x^0, bit 0 that of x^31.
 */
#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t
gf_mul(uint32_t a, uint32_t b)
{
    uint32_t p = 0;
    while (a) { /* a's terms from x^0 up: bit 31 first */
        if (a & 0x80000000u)
            p ^= b;
        a <<= 1;
        b = (b & 1u) ? (b >> 1) ^ CRC32C_POLY_REFLECTED : b >> 1; /* b *= x */
    }
    return p;
}

/* x^(8 * 2^i) for i in [0, 32), filled once. */
static uint32_t xpow8_table[32];
static pthread_once_t xpow8_once = PTHREAD_ONCE_INIT;

static void
xpow8_init(void)
{
    uint32_t p = 0x80000000u >> 8; /* x^8 */
    for (unsigned i = 0; i < 32; i++) {
        xpow8_table[i] = p;
        p = gf_mul(p, p);
    }
}

/* x^(8n): what appending n zero bytes multiplies a CRC register by. */
static uint32_t
xpow8(uint32_t n)
{
    pthread_once(&xpow8_once, xpow8_init);
    uint32_t p = 0x80000000u; /* 1 */
    for (unsigned i = 0; n; i++, n >>= 1)
        if (n & 1u)
            p = gf_mul(p, xpow8_table[i]);
    return p;
}

void
log_record_prepare(uint16_t type, const void *payload, uint32_t len, uint8_t *out,
                   struct log_frame_pre *pre_r)
{
    memset(out, 0, 16); /* LSN and epoch: log_record_seal() */
    le_put16(out + 16, type);
    le_put16(out + 18, 0);
    le_put32(out + 20, len);
    if (len > 0)
        memcpy(out + TDM_LOG_FRAME_HEADER, payload, len);
    pre_r->crc0 = crc32c(0, out, TDM_LOG_FRAME_HEADER + (size_t)len);
    pre_r->shift = xpow8(TDM_LOG_FRAME_HEADER - 16 + len);
}

void
log_record_seal(uint8_t *out, uint32_t len, const struct log_frame_pre *pre, uint64_t lsn,
                uint64_t epoch)
{
    le_put64(out, lsn);
    le_put64(out + 8, epoch);
    /* crc32c(c, d) is ~R(~c, d) for the bare register update R, which is linear: so the
     * checksum moves by R(0, lsn || epoch || zeros) = R(0, lsn || epoch) * x^(8 * zeros). */
    uint32_t r = ~crc32c(0xFFFFFFFFu, out, 16);
    le_put32(out + TDM_LOG_FRAME_HEADER + len, pre->crc0 ^ gf_mul(r, pre->shift));
}

int
log_record_decode(const uint8_t *buf, size_t len, struct log_record *rec_r, size_t *frame_len_r,
                  const char **error_r)
{
    if (len < TDM_LOG_FRAME_HEADER) {
        /*
         * Zero fill is only recognised from a whole header. Fewer bytes, even all zero, may be
         * the start of a real frame: LSN 256 begins with a zero byte, and an END frame with
         * LSN 0 with eight or more. A writer always leaves room for END after the last
         * record, so a generation reader reaches a full zero header before the file ends.
         */
        *error_r = "frame header is cut short";
        return TDM_ENEEDMORE;
    }
    uint64_t lsn = le_get64(buf);
    if (lsn == 0) {
        int blank = 1;
        for (size_t i = 0; i < TDM_LOG_FRAME_HEADER && blank; i++)
            blank = buf[i] == 0;
        if (blank)
            return 1;
    }
    uint32_t plen = le_get32(buf + 20);
    if (plen > TDM_LOG_MAX_PAYLOAD) {
        *error_r = "payload length exceeds the format's limit";
        return TDM_ECORRUPT;
    }
    size_t frame = log_frame_size(plen);
    if (len < frame) {
        *error_r = "frame is cut short";
        return TDM_ENEEDMORE;
    }
    uint32_t stored = le_get32(buf + TDM_LOG_FRAME_HEADER + plen);
    if (stored != crc32c(0, buf, TDM_LOG_FRAME_HEADER + (size_t)plen)) {
        *error_r = "record checksum mismatch";
        return TDM_ECORRUPT;
    }
    uint16_t type = le_get16(buf + 16);
    if (type == 0) {
        *error_r = "record type 0 is invalid";
        return TDM_ECORRUPT;
    }
    if (le_get16(buf + 18) != 0) {
        *error_r = "reserved record flags are set";
        return TDM_ECORRUPT;
    }
    if (lsn == 0 && type != TDM_REC_END) {
        *error_r = "data record with LSN 0";
        return TDM_ECORRUPT;
    }
    rec_r->lsn = lsn;
    rec_r->epoch = le_get64(buf + 8);
    rec_r->type = type;
    rec_r->flags = 0;
    rec_r->length = plen;
    rec_r->payload = buf + TDM_LOG_FRAME_HEADER;
    *frame_len_r = frame;
    return 0;
}

void
log_end_encode(const struct log_end *end, uint8_t out[TDM_LOG_END_PAYLOAD])
{
    le_put64(out, end->record_count);
    le_put32(out + 8, end->gen_checksum);
    le_put32(out + 12, 0);
}

int
log_end_decode(const uint8_t *payload, uint32_t len, struct log_end *end_r)
{
    if (len != TDM_LOG_END_PAYLOAD || le_get32(payload + 12) != 0)
        return TDM_ECORRUPT;
    end_r->record_count = le_get64(payload);
    end_r->gen_checksum = le_get32(payload + 8);
    return 0;
}

void
log_begin_encode(const struct log_header *hdr, uint8_t out[TDM_LOG_BEGIN_FRAME])
{
    uint8_t payload[TDM_LOG_BEGIN_PAYLOAD];
    le_put64(payload, hdr->generation);
    le_put64(payload + 8, hdr->created_us);
    le_put32(payload + 16, hdr->prev_checksum);
    le_put32(payload + 20, hdr->file_size);
    log_record_encode(hdr->first_lsn, hdr->epoch, TDM_REC_BEGIN, payload, sizeof(payload), out);
}

int
log_begin_decode(const struct log_record *rec, struct log_header *hdr, const char **error_r)
{
    if (rec->type != TDM_REC_BEGIN || rec->length != TDM_LOG_BEGIN_PAYLOAD) {
        *error_r = "the generation does not start with a BEGIN record";
        return TDM_ECORRUPT;
    }
    hdr->generation = le_get64(rec->payload);
    hdr->created_us = le_get64(rec->payload + 8);
    hdr->prev_checksum = le_get32(rec->payload + 16);
    hdr->file_size = le_get32(rec->payload + 20);
    hdr->epoch = rec->epoch;
    hdr->first_lsn = rec->lsn;
    return identity_check(hdr, TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + TDM_LOG_END_FRAME,
                          error_r);
}
