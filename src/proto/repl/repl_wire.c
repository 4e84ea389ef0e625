/*
 * Replication protocol codec (docs/formats/replication.md).
 *
 * Frame, one per message, back to back on the TLS stream; integers little-endian:
 *    0   4  total length L, this field through the CRC: 20 <= L <= REPL_WIRE_MAX_FRAME
 *    4   2  protocol version (1; HELLO and HELLO_REPLY always 1)
 *    6   2  message type (enum repl_type)
 *    8   4  request id: != 0 on HELLO, echoed by HELLO_REPLY; 0 on everything else
 *   12   4  flags: 0
 *   16   n  payload, n = L - 20: tagged fields (lib/wire_field.h), fixed order, none optional
 * 16+n   4  CRC32C of bytes [0, 16+n)
 *
 * Payloads (field: tag, rule):
 *   HELLO        version_min U16 >= 1; version_max U16 >= version_min; server STR 1..255;
 *                key STR 1..1024; database STR 1..255; guid BYTES 16; role U16 1|2;
 *                start_generation U64 >= 1; start_offset U64 <= 1 GiB; last_lsn U64; epoch U64;
 *                compression U16 0|1 (what the copy asks LOG_DATA to be sent with).
 *                An all-zero guid requires generation 1, offset 0, lsn 0, epoch 0.
 *   HELLO_REPLY  version U16; code U16 (0 exactly when version != 0); reason STR <= 1024
 *                (empty exactly when code is 0); guid BYTES 16; epoch U64; mode U16 (1..3 when
 *                accepted, 0 refused); lowest_generation, current_generation, durable_end U64
 *   LOG_DATA     generation U64 >= 1; offset U64; file_size U64 4140..1 GiB; compression U16
 *                0|1; raw_length U32 1..1 MiB, offset + raw_length <= file_size; closes U16 0|1;
 *                partial U16 0|1, not both; data BYTES: raw_length bytes raw, or 1..raw_length-1
 *                bytes of zstd
 *   POSITION     generation U64 >= 1; durable_end, durable_lsn, time_us U64
 *   ACK          durable_generation, durable_offset, durable_lsn, inspected_generation,
 *                replayed_lsn, replayed_generation U64
 *   ERROR        code U16, known and not 0; text STR 1..1024
 *   SEED_REQUEST version_min U16 >= 1; version_max U16 >= version_min; server STR 1..255;
 *                key STR 1..1024; database STR 1..255; role U16 1|2
 *   SEED_DATA    offset U64; total_size U64 1..2^48; compression U16 0|1; raw_length U32
 *                1..1 MiB, offset + raw_length <= total_size; data BYTES as LOG_DATA's
 *   SEED_END     total_size U64 1..2^48; sha256 BYTES 32; guid BYTES 16 not all zero;
 *                applied_lsn U64; first_generation U64 >= 1
 *
 * Shape (as src/lib/ipc.c): each type has an encode, a decode and a check function in
 * msg_types[]; check holds every semantic rule and runs before encoding and after decoding,
 * so what one end sends the other accepts, and what is accepted re-encodes to the same bytes.
 */
#include "proto/repl/repl_wire.h"

#include "lib/err.h"
#include "lib/wire_field.h"
#include "tandem/log_format.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static_assert(REPL_WIRE_HEADER_SIZE == WIRE_FRAME_HEADER &&
                  REPL_WIRE_TRAILER_SIZE == WIRE_FRAME_TRAILER,
              "the envelope is lib/wire_field.h's");
static_assert(REPL_WIRE_FRAME_OVERHEAD == REPL_WIRE_HEADER_SIZE + REPL_WIRE_TRAILER_SIZE,
              "frame overhead");
static_assert(REPL_WIRE_FRAME_OVERHEAD == 20, "error string says 20");
static_assert(REPL_WIRE_HELLO_VERSION == 1, "error string says 1");

/* The smallest generation file any log version allows: header plus an END frame. */
#define MIN_FILE_SIZE ((uint64_t)TDM_LOG_HEADER_SIZE + TDM_LOG_END_FRAME)

#define FIELD WIRE_FIELD

static int
fail(const char **error_r, int code, const char *error)
{
    if (error_r)
        *error_r = error;
    return code;
}

static bool
rd_str(struct wire_rd *r, const struct wire_field *f, struct repl_str *s)
{
    const uint8_t *p;
    if (!wire_rd_span(r, f, WIRE_F_STR, &p, &s->len))
        return false;
    s->ptr = (const char *)p;
    return true;
}

static void
wr_str(struct wire_wr *w, const struct repl_str *s)
{
    wire_wr_span(w, WIRE_F_STR, s->ptr, s->len);
}

static int
check_str(const struct repl_str *s, const struct wire_field *f, uint32_t min, uint32_t max,
          const char **error_r)
{
    const char *error = wire_check_str(s->ptr, s->len, f, min, max);
    return error ? fail(error_r, TDM_EINVAL, error) : 0;
}

/* A 16-byte GUID travels as BYTES of exactly that length. */
static bool
rd_guid(struct wire_rd *r, const struct wire_field *f, const char *wrong_len, uint8_t *guid)
{
    const uint8_t *p;
    uint32_t n;
    if (!wire_rd_span(r, f, WIRE_F_BYTES, &p, &n))
        return false;
    if (n != REPL_WIRE_GUID_LEN) {
        r->error = wrong_len;
        return false;
    }
    memcpy(guid, p, REPL_WIRE_GUID_LEN);
    return true;
}

static bool
guid_is_zero(const uint8_t *guid)
{
    for (unsigned i = 0; i < REPL_WIRE_GUID_LEN; i++)
        if (guid[i] != 0)
            return false;
    return true;
}

/* ---- HELLO ---- */

static void
hello_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_hello *h = &m->u.hello;
    wire_wr_u16(w, h->version_min);
    wire_wr_u16(w, h->version_max);
    wr_str(w, &h->server);
    wr_str(w, &h->key);
    wr_str(w, &h->database);
    wire_wr_span(w, WIRE_F_BYTES, h->guid, REPL_WIRE_GUID_LEN);
    wire_wr_u16(w, h->role);
    wire_wr_u64(w, h->start_generation);
    wire_wr_u64(w, h->start_offset);
    wire_wr_u64(w, h->last_lsn);
    wire_wr_u64(w, h->epoch);
    wire_wr_u16(w, h->compression);
}

static bool
hello_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_hello *h = &m->u.hello;
    return wire_rd_u16(r, FIELD("HELLO.version_min"), &h->version_min) &&
           wire_rd_u16(r, FIELD("HELLO.version_max"), &h->version_max) &&
           rd_str(r, FIELD("HELLO.server"), &h->server) && rd_str(r, FIELD("HELLO.key"), &h->key) &&
           rd_str(r, FIELD("HELLO.database"), &h->database) &&
           rd_guid(r, FIELD("HELLO.guid"), "HELLO.guid: not 16 bytes", h->guid) &&
           wire_rd_u16(r, FIELD("HELLO.role"), &h->role) &&
           wire_rd_u64(r, FIELD("HELLO.start_generation"), &h->start_generation) &&
           wire_rd_u64(r, FIELD("HELLO.start_offset"), &h->start_offset) &&
           wire_rd_u64(r, FIELD("HELLO.last_lsn"), &h->last_lsn) &&
           wire_rd_u64(r, FIELD("HELLO.epoch"), &h->epoch) &&
           wire_rd_u16(r, FIELD("HELLO.compression"), &h->compression);
}

static int
hello_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_hello *h = &m->u.hello;
    if (h->version_min == 0)
        return fail(error_r, TDM_EINVAL, "HELLO.version_min: zero");
    if (h->version_max < h->version_min)
        return fail(error_r, TDM_EINVAL, "HELLO.version_max: below version_min");
    int rc = check_str(&h->server, FIELD("HELLO.server"), 1, REPL_WIRE_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&h->key, FIELD("HELLO.key"), 1, REPL_WIRE_KEY_MAX, error_r);
    if (rc == 0)
        rc = check_str(&h->database, FIELD("HELLO.database"), 1, REPL_WIRE_NAME_MAX, error_r);
    if (rc != 0)
        return rc;
    if (repl_role_name(h->role) == NULL)
        return fail(error_r, TDM_EINVAL, "HELLO.role: unknown role");
    if (h->compression > REPL_COMPRESSION_ZSTD)
        return fail(error_r, TDM_EINVAL, "HELLO.compression: not 0 or 1");
    if (h->start_generation == 0)
        return fail(error_r, TDM_EINVAL, "HELLO.start_generation: zero");
    if (h->start_offset > TDM_LOG_MAX_GENERATION_SIZE)
        return fail(error_r, TDM_EINVAL, "HELLO.start_offset: past the largest generation");
    if (guid_is_zero(h->guid) &&
        (h->start_generation != 1 || h->start_offset != 0 || h->last_lsn != 0 || h->epoch != 0))
        return fail(error_r, TDM_EINVAL, "HELLO.guid: all zero with a position");
    return 0;
}

/* ---- HELLO_REPLY ---- */

static void
hello_reply_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_hello_reply *h = &m->u.hello_reply;
    wire_wr_u16(w, h->version);
    wire_wr_u16(w, h->code);
    wr_str(w, &h->reason);
    wire_wr_span(w, WIRE_F_BYTES, h->guid, REPL_WIRE_GUID_LEN);
    wire_wr_u64(w, h->epoch);
    wire_wr_u16(w, h->mode);
    wire_wr_u64(w, h->lowest_generation);
    wire_wr_u64(w, h->current_generation);
    wire_wr_u64(w, h->durable_end);
}

static bool
hello_reply_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_hello_reply *h = &m->u.hello_reply;
    return wire_rd_u16(r, FIELD("HELLO_REPLY.version"), &h->version) &&
           wire_rd_u16(r, FIELD("HELLO_REPLY.code"), &h->code) &&
           rd_str(r, FIELD("HELLO_REPLY.reason"), &h->reason) &&
           rd_guid(r, FIELD("HELLO_REPLY.guid"), "HELLO_REPLY.guid: not 16 bytes", h->guid) &&
           wire_rd_u64(r, FIELD("HELLO_REPLY.epoch"), &h->epoch) &&
           wire_rd_u16(r, FIELD("HELLO_REPLY.mode"), &h->mode) &&
           wire_rd_u64(r, FIELD("HELLO_REPLY.lowest_generation"), &h->lowest_generation) &&
           wire_rd_u64(r, FIELD("HELLO_REPLY.current_generation"), &h->current_generation) &&
           wire_rd_u64(r, FIELD("HELLO_REPLY.durable_end"), &h->durable_end);
}

static int
hello_reply_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_hello_reply *h = &m->u.hello_reply;
    if (repl_code_name(h->code) == NULL)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.code: unknown code");
    if ((h->version == 0) != (h->code != REPL_CODE_OK))
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.code: ok exactly when version is not 0");
    int rc = check_str(&h->reason, FIELD("HELLO_REPLY.reason"), 0, REPL_WIRE_TEXT_MAX, error_r);
    if (rc != 0)
        return rc;
    if (h->code != REPL_CODE_OK && h->reason.len == 0)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.reason: empty on a refusal");
    if (h->code == REPL_CODE_OK && h->reason.len != 0)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.reason: not empty on an acceptance");
    if (h->code == REPL_CODE_OK && repl_mode_name(h->mode) == NULL)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.mode: unknown mode");
    if (h->code != REPL_CODE_OK && h->mode != 0)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.mode: not 0 on a refusal");
    return 0;
}

/* ---- Chunks: LOG_DATA and SEED_DATA carry bytes raw or as one zstd frame ---- */

struct chunk_errors {
    const char *null_data, *not_raw_length, *empty, *not_smaller, *unknown;
};

static const struct chunk_errors log_data_chunk = {
    "LOG_DATA.data: NULL pointer with a non-zero length",
    "LOG_DATA.data: not raw_length bytes",
    "LOG_DATA.data: empty",
    "LOG_DATA.data: compressed to no fewer bytes than raw_length",
    "LOG_DATA.compression: unknown compression",
};
static const struct chunk_errors seed_data_chunk = {
    "SEED_DATA.data: NULL pointer with a non-zero length",
    "SEED_DATA.data: not raw_length bytes",
    "SEED_DATA.data: empty",
    "SEED_DATA.data: compressed to no fewer bytes than raw_length",
    "SEED_DATA.compression: unknown compression",
};

static int
check_chunk(const struct chunk_errors *e, uint16_t compression, uint32_t raw_length,
            const uint8_t *data, uint32_t data_len, const char **error_r)
{
    if (data_len > 0 && data == NULL)
        return fail(error_r, TDM_EINVAL, e->null_data);
    switch (compression) {
    case REPL_COMPRESSION_NONE:
        if (data_len != raw_length)
            return fail(error_r, TDM_EINVAL, e->not_raw_length);
        return 0;
    case REPL_COMPRESSION_ZSTD:
        if (data_len == 0)
            return fail(error_r, TDM_EINVAL, e->empty);
        if (data_len >= raw_length)
            return fail(error_r, TDM_EINVAL, e->not_smaller);
        return 0;
    default:
        return fail(error_r, TDM_EINVAL, e->unknown);
    }
}

/* ---- LOG_DATA ---- */

static void
log_data_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_log_data *d = &m->u.log_data;
    wire_wr_u64(w, d->generation);
    wire_wr_u64(w, d->offset);
    wire_wr_u64(w, d->file_size);
    wire_wr_u16(w, d->compression);
    wire_wr_u32(w, d->raw_length);
    wire_wr_u16(w, d->closes);
    wire_wr_u16(w, d->partial);
    wire_wr_span(w, WIRE_F_BYTES, d->data, d->data_len);
}

static bool
log_data_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_log_data *d = &m->u.log_data;
    return wire_rd_u64(r, FIELD("LOG_DATA.generation"), &d->generation) &&
           wire_rd_u64(r, FIELD("LOG_DATA.offset"), &d->offset) &&
           wire_rd_u64(r, FIELD("LOG_DATA.file_size"), &d->file_size) &&
           wire_rd_u16(r, FIELD("LOG_DATA.compression"), &d->compression) &&
           wire_rd_u32(r, FIELD("LOG_DATA.raw_length"), &d->raw_length) &&
           wire_rd_u16(r, FIELD("LOG_DATA.closes"), &d->closes) &&
           wire_rd_u16(r, FIELD("LOG_DATA.partial"), &d->partial) &&
           wire_rd_span(r, FIELD("LOG_DATA.data"), WIRE_F_BYTES, &d->data, &d->data_len);
}

static int
log_data_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_log_data *d = &m->u.log_data;
    if (d->generation == 0)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.generation: zero");
    if (d->file_size < MIN_FILE_SIZE)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.file_size: below the smallest generation");
    if (d->file_size > TDM_LOG_MAX_GENERATION_SIZE)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.file_size: above the largest generation");
    if (d->raw_length == 0)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.raw_length: zero");
    if (d->raw_length > REPL_WIRE_CHUNK_MAX)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.raw_length: over REPL_WIRE_CHUNK_MAX");
    /* file_size <= 1 GiB, so a sum that passes cannot have wrapped. */
    if (d->offset > d->file_size || d->raw_length > d->file_size - d->offset)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.offset: the bytes run past file_size");
    if (d->closes > 1)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.closes: not 0 or 1");
    if (d->partial > 1)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.partial: not 0 or 1");
    if (d->closes && d->partial)
        return fail(error_r, TDM_EINVAL, "LOG_DATA.closes: on a partial chunk");
    return check_chunk(&log_data_chunk, d->compression, d->raw_length, d->data, d->data_len,
                       error_r);
}

/* ---- POSITION ---- */

static void
position_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_position *p = &m->u.position;
    wire_wr_u64(w, p->generation);
    wire_wr_u64(w, p->durable_end);
    wire_wr_u64(w, p->durable_lsn);
    wire_wr_u64(w, p->time_us);
}

static bool
position_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_position *p = &m->u.position;
    return wire_rd_u64(r, FIELD("POSITION.generation"), &p->generation) &&
           wire_rd_u64(r, FIELD("POSITION.durable_end"), &p->durable_end) &&
           wire_rd_u64(r, FIELD("POSITION.durable_lsn"), &p->durable_lsn) &&
           wire_rd_u64(r, FIELD("POSITION.time_us"), &p->time_us);
}

static int
position_check(const struct repl_msg *m, const char **error_r)
{
    if (m->u.position.generation == 0)
        return fail(error_r, TDM_EINVAL, "POSITION.generation: zero");
    return 0;
}

/* ---- ACK ---- */

static void
ack_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_ack *a = &m->u.ack;
    wire_wr_u64(w, a->durable_generation);
    wire_wr_u64(w, a->durable_offset);
    wire_wr_u64(w, a->durable_lsn);
    wire_wr_u64(w, a->inspected_generation);
    wire_wr_u64(w, a->replayed_lsn);
    wire_wr_u64(w, a->replayed_generation);
}

static bool
ack_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_ack *a = &m->u.ack;
    return wire_rd_u64(r, FIELD("ACK.durable_generation"), &a->durable_generation) &&
           wire_rd_u64(r, FIELD("ACK.durable_offset"), &a->durable_offset) &&
           wire_rd_u64(r, FIELD("ACK.durable_lsn"), &a->durable_lsn) &&
           wire_rd_u64(r, FIELD("ACK.inspected_generation"), &a->inspected_generation) &&
           wire_rd_u64(r, FIELD("ACK.replayed_lsn"), &a->replayed_lsn) &&
           wire_rd_u64(r, FIELD("ACK.replayed_generation"), &a->replayed_generation);
}

static int
ack_check(const struct repl_msg *m, const char **error_r)
{
    /* Every value is the copy's own report; the source judges them against its log. */
    (void)m;
    (void)error_r;
    return 0;
}

/* ---- ERROR ---- */

static void
error_encode(struct wire_wr *w, const struct repl_msg *m)
{
    wire_wr_u16(w, m->u.error.code);
    wr_str(w, &m->u.error.text);
}

static bool
error_decode(struct wire_rd *r, struct repl_msg *m)
{
    return wire_rd_u16(r, FIELD("ERROR.code"), &m->u.error.code) &&
           rd_str(r, FIELD("ERROR.text"), &m->u.error.text);
}

static int
error_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_error *e = &m->u.error;
    if (e->code == REPL_CODE_OK)
        return fail(error_r, TDM_EINVAL, "ERROR.code: ok is not an error");
    if (repl_code_name(e->code) == NULL)
        return fail(error_r, TDM_EINVAL, "ERROR.code: unknown code");
    return check_str(&e->text, FIELD("ERROR.text"), 1, REPL_WIRE_TEXT_MAX, error_r);
}

/* ---- SEED_REQUEST ---- */

static void
seed_request_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_seed_request *q = &m->u.seed_request;
    wire_wr_u16(w, q->version_min);
    wire_wr_u16(w, q->version_max);
    wr_str(w, &q->server);
    wr_str(w, &q->key);
    wr_str(w, &q->database);
    wire_wr_u16(w, q->role);
}

static bool
seed_request_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_seed_request *q = &m->u.seed_request;
    return wire_rd_u16(r, FIELD("SEED_REQUEST.version_min"), &q->version_min) &&
           wire_rd_u16(r, FIELD("SEED_REQUEST.version_max"), &q->version_max) &&
           rd_str(r, FIELD("SEED_REQUEST.server"), &q->server) &&
           rd_str(r, FIELD("SEED_REQUEST.key"), &q->key) &&
           rd_str(r, FIELD("SEED_REQUEST.database"), &q->database) &&
           wire_rd_u16(r, FIELD("SEED_REQUEST.role"), &q->role);
}

static int
seed_request_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_seed_request *q = &m->u.seed_request;
    if (q->version_min == 0)
        return fail(error_r, TDM_EINVAL, "SEED_REQUEST.version_min: zero");
    if (q->version_max < q->version_min)
        return fail(error_r, TDM_EINVAL, "SEED_REQUEST.version_max: below version_min");
    int rc = check_str(&q->server, FIELD("SEED_REQUEST.server"), 1, REPL_WIRE_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&q->key, FIELD("SEED_REQUEST.key"), 1, REPL_WIRE_KEY_MAX, error_r);
    if (rc == 0)
        rc =
            check_str(&q->database, FIELD("SEED_REQUEST.database"), 1, REPL_WIRE_NAME_MAX, error_r);
    if (rc != 0)
        return rc;
    if (repl_role_name(q->role) == NULL)
        return fail(error_r, TDM_EINVAL, "SEED_REQUEST.role: unknown role");
    return 0;
}

/* ---- SEED_DATA ---- */

static void
seed_data_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_seed_data *d = &m->u.seed_data;
    wire_wr_u64(w, d->offset);
    wire_wr_u64(w, d->total_size);
    wire_wr_u16(w, d->compression);
    wire_wr_u32(w, d->raw_length);
    wire_wr_span(w, WIRE_F_BYTES, d->data, d->data_len);
}

static bool
seed_data_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_seed_data *d = &m->u.seed_data;
    return wire_rd_u64(r, FIELD("SEED_DATA.offset"), &d->offset) &&
           wire_rd_u64(r, FIELD("SEED_DATA.total_size"), &d->total_size) &&
           wire_rd_u16(r, FIELD("SEED_DATA.compression"), &d->compression) &&
           wire_rd_u32(r, FIELD("SEED_DATA.raw_length"), &d->raw_length) &&
           wire_rd_span(r, FIELD("SEED_DATA.data"), WIRE_F_BYTES, &d->data, &d->data_len);
}

static int
seed_data_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_seed_data *d = &m->u.seed_data;
    if (d->total_size == 0)
        return fail(error_r, TDM_EINVAL, "SEED_DATA.total_size: zero");
    if (d->total_size > REPL_WIRE_SEED_MAX)
        return fail(error_r, TDM_EINVAL, "SEED_DATA.total_size: over REPL_WIRE_SEED_MAX");
    if (d->raw_length == 0)
        return fail(error_r, TDM_EINVAL, "SEED_DATA.raw_length: zero");
    if (d->raw_length > REPL_WIRE_CHUNK_MAX)
        return fail(error_r, TDM_EINVAL, "SEED_DATA.raw_length: over REPL_WIRE_CHUNK_MAX");
    /* total_size <= 2^48, so a sum that passes cannot have wrapped. */
    if (d->offset > d->total_size || d->raw_length > d->total_size - d->offset)
        return fail(error_r, TDM_EINVAL, "SEED_DATA.offset: the bytes run past total_size");
    return check_chunk(&seed_data_chunk, d->compression, d->raw_length, d->data, d->data_len,
                       error_r);
}

/* ---- SEED_END ---- */

static void
seed_end_encode(struct wire_wr *w, const struct repl_msg *m)
{
    const struct repl_seed_end *e = &m->u.seed_end;
    wire_wr_u64(w, e->total_size);
    wire_wr_span(w, WIRE_F_BYTES, e->sha256, REPL_WIRE_SHA256_LEN);
    wire_wr_span(w, WIRE_F_BYTES, e->guid, REPL_WIRE_GUID_LEN);
    wire_wr_u64(w, e->applied_lsn);
    wire_wr_u64(w, e->first_generation);
}

static bool
seed_end_decode(struct wire_rd *r, struct repl_msg *m)
{
    struct repl_seed_end *e = &m->u.seed_end;
    const uint8_t *p;
    uint32_t n;
    if (!wire_rd_u64(r, FIELD("SEED_END.total_size"), &e->total_size) ||
        !wire_rd_span(r, FIELD("SEED_END.sha256"), WIRE_F_BYTES, &p, &n))
        return false;
    if (n != REPL_WIRE_SHA256_LEN) {
        r->error = "SEED_END.sha256: not 32 bytes";
        return false;
    }
    memcpy(e->sha256, p, REPL_WIRE_SHA256_LEN);
    return rd_guid(r, FIELD("SEED_END.guid"), "SEED_END.guid: not 16 bytes", e->guid) &&
           wire_rd_u64(r, FIELD("SEED_END.applied_lsn"), &e->applied_lsn) &&
           wire_rd_u64(r, FIELD("SEED_END.first_generation"), &e->first_generation);
}

static int
seed_end_check(const struct repl_msg *m, const char **error_r)
{
    const struct repl_seed_end *e = &m->u.seed_end;
    if (e->total_size == 0)
        return fail(error_r, TDM_EINVAL, "SEED_END.total_size: zero");
    if (e->total_size > REPL_WIRE_SEED_MAX)
        return fail(error_r, TDM_EINVAL, "SEED_END.total_size: over REPL_WIRE_SEED_MAX");
    if (guid_is_zero(e->guid))
        return fail(error_r, TDM_EINVAL, "SEED_END.guid: all zero");
    if (e->first_generation == 0)
        return fail(error_r, TDM_EINVAL, "SEED_END.first_generation: zero");
    return 0;
}

/* ---- Type table ---- */

struct msg_type {
    uint16_t type;
    const char *name;
    const char *trailing;
    bool has_request_id;
    void (*encode)(struct wire_wr *w, const struct repl_msg *m);
    bool (*decode)(struct wire_rd *r, struct repl_msg *m);
    int (*check)(const struct repl_msg *m, const char **error_r);
};

#define TYPE(t, n, id, fn)                                                                         \
    {                                                                                              \
        t, n, n ": trailing bytes after the last field", id, fn##_encode, fn##_decode, fn##_check  \
    }

static const struct msg_type msg_types[] = {
    TYPE(REPL_HELLO, "HELLO", true, hello),
    TYPE(REPL_HELLO_REPLY, "HELLO_REPLY", true, hello_reply),
    TYPE(REPL_LOG_DATA, "LOG_DATA", false, log_data),
    TYPE(REPL_POSITION, "POSITION", false, position),
    TYPE(REPL_ACK, "ACK", false, ack),
    TYPE(REPL_ERROR, "ERROR", false, error),
    TYPE(REPL_SEED_REQUEST, "SEED_REQUEST", true, seed_request),
    TYPE(REPL_SEED_DATA, "SEED_DATA", false, seed_data),
    TYPE(REPL_SEED_END, "SEED_END", false, seed_end),
};

static const struct msg_type *
msg_type_of(uint16_t type)
{
    for (size_t i = 0; i < sizeof(msg_types) / sizeof(msg_types[0]); i++)
        if (msg_types[i].type == type)
            return &msg_types[i];
    return NULL;
}

const char *
repl_type_name(uint16_t type)
{
    const struct msg_type *t = msg_type_of(type);
    return t ? t->name : NULL;
}

const char *
repl_code_name(uint16_t code)
{
    static const char *const names[] = {
        [REPL_CODE_OK] = "ok",
        [REPL_CODE_VERSION] = "version",
        [REPL_CODE_AUTH] = "auth",
        [REPL_CODE_UNKNOWN_DATABASE] = "unknown-database",
        [REPL_CODE_NOT_ACTIVE] = "not-active",
        [REPL_CODE_GUID_MISMATCH] = "guid-mismatch",
        [REPL_CODE_POSITION_GONE] = "position-gone",
        [REPL_CODE_DIVERGED] = "diverged",
        [REPL_CODE_PROTOCOL] = "protocol",
        [REPL_CODE_INTERNAL] = "internal",
        [REPL_CODE_SHUTDOWN] = "shutdown",
        [REPL_CODE_LIMIT] = "limit",
        [REPL_CODE_TIMEOUT] = "timeout",
        [REPL_CODE_RELEASED] = "released",
    };
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : NULL;
}

const char *
repl_mode_name(uint16_t mode)
{
    switch (mode) {
    case REPL_MODE_FILE:
        return "file";
    case REPL_MODE_BLOCK:
        return "block";
    case REPL_MODE_SYNC:
        return "sync";
    default:
        return NULL;
    }
}

const char *
repl_role_name(uint16_t role)
{
    switch (role) {
    case REPL_ROLE_PASSIVE:
        return "passive";
    case REPL_ROLE_STANDBY:
        return "standby";
    default:
        return NULL;
    }
}

struct repl_str
repl_str_c(const char *s)
{
    size_t n = strlen(s);
    /* A string this long breaks every limit; saturating makes the check say so. */
    return (struct repl_str){s, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n};
}

int
repl_version_negotiate(uint16_t peer_min, uint16_t peer_max, uint16_t *version_r,
                       const char **error_r)
{
    if (peer_min == 0 || peer_max < peer_min)
        return fail(error_r, TDM_EINVAL, "the copy's version range is empty or starts at 0");
    if (peer_max < REPL_WIRE_VERSION_MIN)
        return fail(error_r, TDM_EINVAL,
                    "the copy speaks only versions older than this source's oldest");
    if (peer_min > REPL_WIRE_VERSION)
        return fail(error_r, TDM_EINVAL,
                    "the copy speaks only versions newer than this source's newest");
    *version_r = peer_max < REPL_WIRE_VERSION ? peer_max : (uint16_t)REPL_WIRE_VERSION;
    return 0;
}

/* ---- Frames ---- */

/* The messages that open a connection and answer its opening: they carry version 1 whatever
 * is agreed, since they are what agrees it. */
static bool
first_message(uint16_t type)
{
    return type == REPL_HELLO || type == REPL_HELLO_REPLY || type == REPL_SEED_REQUEST;
}

static const char *
request_id_error(const struct msg_type *t, uint32_t id)
{
    if (t->has_request_id && id == 0)
        return "request id zero on HELLO, HELLO_REPLY or SEED_REQUEST";
    if (!t->has_request_id && id != 0)
        return "request id not zero on a one-way message";
    return NULL;
}

int
repl_frame_length(const uint8_t *buf, size_t len, size_t *frame_len_r, const char **error_r)
{
    uint32_t flen;
    int rc = wire_frame_length(buf, len, REPL_WIRE_MAX_FRAME,
                               "frame length over REPL_WIRE_MAX_FRAME", &flen, error_r);
    if (rc == 0)
        *frame_len_r = flen;
    return rc;
}

int
repl_msg_decode(const uint8_t *buf, size_t len, struct repl_msg *msg_r, size_t *frame_len_r,
                const char **error_r)
{
    struct wire_frame f;
    int rc = wire_frame_open(buf, len, REPL_WIRE_MAX_FRAME,
                             "frame length over REPL_WIRE_MAX_FRAME", &f, error_r);
    if (rc != 0)
        return rc;
    const struct msg_type *t = msg_type_of(f.type);
    if (t == NULL)
        return fail(error_r, TDM_ECORRUPT, "unknown message type");
    if (first_message(f.type)) {
        if (f.version != REPL_WIRE_HELLO_VERSION)
            return fail(error_r, TDM_ECORRUPT,
                        "HELLO, HELLO_REPLY and SEED_REQUEST frames must carry protocol version 1");
    } else if (f.version < REPL_WIRE_VERSION_MIN || f.version > REPL_WIRE_VERSION) {
        return fail(error_r, TDM_ECORRUPT, "unsupported protocol version");
    }
    const char *id_error = request_id_error(t, f.request_id);
    if (id_error)
        return fail(error_r, TDM_ECORRUPT, id_error);

    memset(msg_r, 0, sizeof(*msg_r));
    msg_r->type = f.type;
    msg_r->request_id = f.request_id;
    struct wire_rd r = {f.payload, f.payload_len, NULL};
    if (!t->decode(&r, msg_r))
        return fail(error_r, TDM_ECORRUPT, r.error);
    if (r.left != 0)
        return fail(error_r, TDM_ECORRUPT, t->trailing);
    const char *error = NULL;
    if (t->check(msg_r, &error) != 0)
        return fail(error_r, TDM_ECORRUPT, error);
    if (frame_len_r)
        *frame_len_r = f.length;
    return 0;
}

int
repl_msg_check(const struct repl_msg *msg, const char **error_r)
{
    const struct msg_type *t = msg_type_of(msg->type);
    if (t == NULL)
        return fail(error_r, TDM_EINVAL, "unknown message type");
    const char *id_error = request_id_error(t, msg->request_id);
    if (id_error)
        return fail(error_r, TDM_EINVAL, id_error);
    return t->check(msg, error_r);
}

int
repl_msg_size(const struct repl_msg *msg, size_t *size_r, const char **error_r)
{
    int rc = repl_msg_check(msg, error_r);
    if (rc != 0)
        return rc;
    struct wire_wr w = {NULL, 0};
    msg_type_of(msg->type)->encode(&w, msg);
    /* The field limits keep every message within the frame limit; checked so a field that
     * forgets its limit fails here rather than at the peer. */
    if (w.n > REPL_WIRE_MAX_FRAME - REPL_WIRE_FRAME_OVERHEAD)
        return fail(error_r, TDM_EINVAL, "message over REPL_WIRE_MAX_FRAME");
    *size_r = w.n + REPL_WIRE_FRAME_OVERHEAD;
    return 0;
}

int
repl_msg_encode(const struct repl_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                const char **error_r)
{
    size_t size;
    int rc = repl_msg_size(msg, &size, error_r);
    if (rc != 0)
        return rc;
    if (cap < size)
        return fail(error_r, -ENOBUFS, "output buffer smaller than the frame");
    /* Until a second version exists every frame carries the one this build speaks; HELLO's
     * frames stay at 1 whatever is agreed later. */
    uint16_t version =
        first_message(msg->type) ? (uint16_t)REPL_WIRE_HELLO_VERSION : (uint16_t)REPL_WIRE_VERSION;
    wire_frame_put_header(out, (uint32_t)size, version, msg->type, msg->request_id);
    struct wire_wr w = {out + REPL_WIRE_HEADER_SIZE, 0};
    msg_type_of(msg->type)->encode(&w, msg);
    wire_frame_seal(out, REPL_WIRE_HEADER_SIZE + w.n);
    *len_r = size;
    return 0;
}

int
repl_msg_encode_alloc(const struct repl_msg *msg, uint8_t **out_r, size_t *len_r,
                      const char **error_r)
{
    size_t size;
    int rc = repl_msg_size(msg, &size, error_r);
    if (rc != 0)
        return rc;
    uint8_t *out = malloc(size);
    if (out == NULL)
        return fail(error_r, -ENOMEM, "out of memory for a replication frame");
    rc = repl_msg_encode(msg, out, size, len_r, error_r);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *out_r = out;
    return 0;
}
