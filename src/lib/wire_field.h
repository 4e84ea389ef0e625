#ifndef TANDEM_LIB_WIRE_FIELD_H
#define TANDEM_LIB_WIRE_FIELD_H

/*
 * The frame envelope and tagged-field primitives shared by the framed protocols: IPC
 * (src/lib/ipc.c, docs/formats/ipc.md), replication (src/proto/repl/repl_wire.c), the
 * coordination store (src/proto/coord/coord_wire.c) and heartbeats
 * (src/proto/cluster/cluster_wire.c): little-endian integers, the frame's envelope, a
 * payload reader that checks each field's tag and that nothing runs past the payload, and a
 * writer that with a NULL buffer only counts, so one description of a layout gives both its
 * size and its bytes.
 *
 * Header-only (static inline): the codecs call these once per field on every message, and
 * the compiler should see through them as it did when each codec had its own copy.
 *
 * Every failure names its field with a static string: WIRE_FIELD("TYPE.field") builds the
 * set of messages for one field at compile time.
 */

#include "lib/crc32c.h"
#include "lib/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Field type tags; the values are part of both wire formats. */
enum wire_tag {
    WIRE_F_U16 = 1,
    WIRE_F_U32 = 2,
    WIRE_F_U64 = 3,
    WIRE_F_I32 = 4,
    WIRE_F_STR = 5,
    WIRE_F_BYTES = 6,
    WIRE_F_LIST = 7,
};

static inline void
wire_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void
wire_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void
wire_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t
wire_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t
wire_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t
wire_get64(const uint8_t *p)
{
    return (uint64_t)wire_get32(p) | ((uint64_t)wire_get32(p + 4) << 32);
}

/*
 * The frame envelope the protocols share: a 16-byte header (length of the whole frame,
 * version, type, request id, flags 0) before the payload, and after it the CRC32C of every
 * byte before the CRC.
 */
#define WIRE_FRAME_HEADER 16u
#define WIRE_FRAME_TRAILER 4u
#define WIRE_FRAME_OVERHEAD (WIRE_FRAME_HEADER + WIRE_FRAME_TRAILER)

/* A frame whose envelope wire_frame_open checked. What its version, type and request id may
 * be is the protocol's to judge. */
struct wire_frame {
    uint32_t length; /* of the whole frame */
    uint16_t version;
    uint16_t type;
    uint32_t request_id;
    const uint8_t *payload; /* borrowed from the buffer */
    uint32_t payload_len;
};

/*
 * The length field of the frame at the start of buf (len bytes). Returns 0 with *length_r;
 * TDM_ENEEDMORE before 4 bytes are there; TDM_ECORRUPT for a length below the envelope or
 * above max_frame (over_max: the static message naming that limit), so a wild length is
 * refused before anything waits for it.
 */
static inline int
wire_frame_length(const uint8_t *buf, size_t len, uint32_t max_frame, const char *over_max,
                  uint32_t *length_r, const char **error_r)
{
    const char *error;
    int rc = TDM_ECORRUPT;
    uint32_t flen = len < 4 ? 0 : wire_get32(buf);
    if (len < 4) {
        error = "frame cut short: no length field yet";
        rc = TDM_ENEEDMORE;
    } else if (flen < WIRE_FRAME_OVERHEAD) {
        error = "frame length below the 20-byte minimum";
    } else if (flen > max_frame) {
        error = over_max;
    } else {
        *length_r = flen;
        return 0;
    }
    if (error_r)
        *error_r = error;
    return rc;
}

/*
 * The envelope of the frame at the start of buf (more may follow): its length as
 * wire_frame_length checks it, the whole frame there (else TDM_ENEEDMORE), its CRC and zero
 * flags (else TDM_ECORRUPT). Returns 0 with *frame_r.
 */
static inline int
wire_frame_open(const uint8_t *buf, size_t len, uint32_t max_frame, const char *over_max,
                struct wire_frame *frame_r, const char **error_r)
{
    uint32_t flen;
    int rc = wire_frame_length(buf, len, max_frame, over_max, &flen, error_r);
    if (rc != 0)
        return rc;
    const char *error = NULL;
    if (len < flen) {
        if (error_r)
            *error_r = "frame cut short";
        return TDM_ENEEDMORE;
    }
    if (crc32c(0, buf, flen - WIRE_FRAME_TRAILER) != wire_get32(buf + flen - WIRE_FRAME_TRAILER))
        error = "frame checksum mismatch";
    else if (wire_get32(buf + 12) != 0)
        error = "frame flags not zero";
    if (error) {
        if (error_r)
            *error_r = error;
        return TDM_ECORRUPT;
    }
    *frame_r = (struct wire_frame){
        .length = flen,
        .version = wire_get16(buf + 4),
        .type = wire_get16(buf + 6),
        .request_id = wire_get32(buf + 8),
        .payload = buf + WIRE_FRAME_HEADER,
        .payload_len = flen - WIRE_FRAME_OVERHEAD,
    };
    return 0;
}

static inline void
wire_frame_put_header(uint8_t *out, uint32_t frame_len, uint16_t version, uint16_t type,
                      uint32_t request_id)
{
    wire_put32(out, frame_len);
    wire_put16(out + 4, version);
    wire_put16(out + 6, type);
    wire_put32(out + 8, request_id);
    wire_put32(out + 12, 0);
}

/* Writes the CRC after the first body_end bytes of the frame (header and payload). */
static inline void
wire_frame_seal(uint8_t *out, size_t body_end)
{
    wire_put32(out + body_end, crc32c(0, out, body_end));
}

/* The static error strings of one payload field. */
struct wire_field {
    const char *missing;
    const char *tag;
    const char *cut;
    const char *many;
    const char *empty;
    const char *too_long;
    const char *nul;
    const char *null_ptr;
};

/* name must be a string literal: the strings are built by concatenation at compile time. The
 * compound literal dies with the enclosing block, but the strings it points to are static. */
#define WIRE_FIELD(name)                                                                           \
    (&(const struct wire_field){                                                                   \
        .missing = name ": missing (the payload ends before it)",                                  \
        .tag = name ": wrong field type tag",                                                      \
        .cut = name ": runs past the end of the payload",                                          \
        .many = name ": more elements than allowed",                                               \
        .empty = name ": empty",                                                                   \
        .too_long = name ": longer than allowed",                                                  \
        .nul = name ": contains a NUL byte",                                                       \
        .null_ptr = name ": NULL pointer with a non-zero length",                                  \
    })

/* ---- Payload reader ---- */

struct wire_rd {
    const uint8_t *p;
    size_t left;
    const char *error; /* set when a read fails */
};

/* Consumes the tag byte after checking that it matches and that fixed bytes follow. */
static inline bool
wire_rd_tag(struct wire_rd *r, const struct wire_field *f, uint8_t tag, size_t fixed)
{
    if (r->left == 0) {
        r->error = f->missing;
        return false;
    }
    if (r->p[0] != tag) {
        r->error = f->tag;
        return false;
    }
    if (r->left - 1 < fixed) {
        r->error = f->cut;
        return false;
    }
    r->p++;
    r->left--;
    return true;
}

static inline bool
wire_rd_u16(struct wire_rd *r, const struct wire_field *f, uint16_t *v)
{
    if (!wire_rd_tag(r, f, WIRE_F_U16, 2))
        return false;
    *v = wire_get16(r->p);
    r->p += 2;
    r->left -= 2;
    return true;
}

static inline bool
wire_rd_u32(struct wire_rd *r, const struct wire_field *f, uint32_t *v)
{
    if (!wire_rd_tag(r, f, WIRE_F_U32, 4))
        return false;
    *v = wire_get32(r->p);
    r->p += 4;
    r->left -= 4;
    return true;
}

static inline bool
wire_rd_i32(struct wire_rd *r, const struct wire_field *f, int32_t *v)
{
    if (!wire_rd_tag(r, f, WIRE_F_I32, 4))
        return false;
    /* Two's complement on the wire; converted without relying on implementation-defined
     * unsigned-to-signed conversion. */
    uint32_t u = wire_get32(r->p);
    *v = u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
    r->p += 4;
    r->left -= 4;
    return true;
}

static inline bool
wire_rd_u64(struct wire_rd *r, const struct wire_field *f, uint64_t *v)
{
    if (!wire_rd_tag(r, f, WIRE_F_U64, 8))
        return false;
    *v = wire_get64(r->p);
    r->p += 8;
    r->left -= 8;
    return true;
}

/* A STR or BYTES field: a u32 length that must not run past the payload. */
static inline bool
wire_rd_span(struct wire_rd *r, const struct wire_field *f, uint8_t tag, const uint8_t **ptr,
             uint32_t *len)
{
    if (!wire_rd_tag(r, f, tag, 4))
        return false;
    uint32_t n = wire_get32(r->p);
    r->p += 4;
    r->left -= 4;
    if (n > r->left) {
        r->error = f->cut;
        return false;
    }
    *ptr = r->p;
    *len = n;
    r->p += n;
    r->left -= n;
    return true;
}

/* A LIST header; the count is checked against max before any element is read, so it can
 * index fixed arrays. */
static inline bool
wire_rd_list(struct wire_rd *r, const struct wire_field *f, uint32_t max, uint32_t *count)
{
    if (!wire_rd_tag(r, f, WIRE_F_LIST, 4))
        return false;
    uint32_t n = wire_get32(r->p);
    r->p += 4;
    r->left -= 4;
    if (n > max) {
        r->error = f->many;
        return false;
    }
    *count = n;
    return true;
}

/* ---- Payload writer ---- */

/* With p == NULL the writer only counts. */
struct wire_wr {
    uint8_t *p;
    size_t n;
};

static inline void
wire_wr_raw(struct wire_wr *w, const void *src, size_t len)
{
    if (w->p && len > 0)
        memcpy(w->p + w->n, src, len);
    w->n += len;
}

static inline void
wire_wr_u16(struct wire_wr *w, uint16_t v)
{
    uint8_t b[3] = {WIRE_F_U16};
    wire_put16(b + 1, v);
    wire_wr_raw(w, b, sizeof(b));
}

static inline void
wire_wr_u32(struct wire_wr *w, uint32_t v)
{
    uint8_t b[5] = {WIRE_F_U32};
    wire_put32(b + 1, v);
    wire_wr_raw(w, b, sizeof(b));
}

static inline void
wire_wr_i32(struct wire_wr *w, int32_t v)
{
    uint8_t b[5] = {WIRE_F_I32};
    wire_put32(b + 1, (uint32_t)v);
    wire_wr_raw(w, b, sizeof(b));
}

static inline void
wire_wr_u64(struct wire_wr *w, uint64_t v)
{
    uint8_t b[9] = {WIRE_F_U64};
    wire_put64(b + 1, v);
    wire_wr_raw(w, b, sizeof(b));
}

static inline void
wire_wr_span(struct wire_wr *w, uint8_t tag, const void *ptr, uint32_t len)
{
    uint8_t b[5] = {tag};
    wire_put32(b + 1, len);
    wire_wr_raw(w, b, sizeof(b));
    wire_wr_raw(w, ptr, len);
}

static inline void
wire_wr_list(struct wire_wr *w, uint32_t count)
{
    uint8_t b[5] = {WIRE_F_LIST};
    wire_put32(b + 1, count);
    wire_wr_raw(w, b, sizeof(b));
}

/* ---- Rule checks ---- */

/* A STR field's rules: min..max bytes, no NUL. Returns NULL or the field's static error. */
static inline const char *
wire_check_str(const char *ptr, uint32_t len, const struct wire_field *f, uint32_t min,
               uint32_t max)
{
    if (len > 0 && ptr == NULL)
        return f->null_ptr;
    if (len < min)
        return f->empty;
    if (len > max)
        return f->too_long;
    if (len > 0 && memchr(ptr, 0, len) != NULL)
        return f->nul;
    return NULL;
}

#endif
