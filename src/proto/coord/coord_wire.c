/*
 * Coordination protocol codec (docs/formats/coord.md).
 *
 * Frame, one per message, back to back on the TLS stream; integers little-endian:
 *    0   4  total length L, this field through the CRC: 20 <= L <= 8192
 *    4   2  protocol version (1)
 *    6   2  message type (enum coord_type)
 *    8   4  request id: != 0 on requests and echoed by their answer; 0 on NOTIFY; ERROR
 *           echoes the refused request's id, or 0
 *   12   4  flags: 0
 *   16   n  payload, n = L - 20: tagged fields (lib/wire_field.h), fixed order, none optional
 * 16+n   4  CRC32C of bytes [0, 16+n)
 *
 * Payloads (STR: no NUL; limits in coord_wire.h):
 *   HELLO        version_min U16 >= 1; version_max U16 >= version_min; member STR 1..255;
 *                secret STR 1..1024; cluster STR 0..255
 *   HELLO_REPLY  version U16; code U16 (0 exactly when version != 0); text STR 0..1024 (empty
 *                exactly when code is 0); witness STR 0..255 (not empty exactly when code is
 *                0); boot_id U64
 *   ACQUIRE      key STR 1..255; holder STR 1..255; ttl_ms U32 1..600000; min_epoch U64
 *   GRANTED      key; epoch U64 >= 1; ttl_ms U32 1..600000
 *   DENIED       key; holder STR 1..255; epoch U64 >= 1; remaining_ms U32 <= 600000
 *   RELEASE      key; holder STR 1..255; epoch U64 >= 1
 *   RELEASED     key
 *   TRANSFER     key; holder STR 1..255; epoch U64 >= 1; to STR 1..255, not holder
 *   GET, WATCH   key
 *   VALUE, CONFLICT, NOTIFY
 *                key; holder STR 0..255; epoch U64; remaining_ms U32 <= 600000, 0 when
 *                holder is empty; value_version U64; value BYTES 0..4096, empty when
 *                value_version is 0
 *   CAS          key; value_version U64 (expected); value BYTES 0..4096
 *   PING, PONG   nonce U64
 *   ERROR        code U16, known and not 0; text STR 1..1024
 *
 * Every layout is a list of fields from one table (struct field), so encode, decode and the
 * length rules are one loop each; check_type() holds the rules between fields.
 */
#include "proto/coord/coord_wire.h"

#include "lib/err.h"
#include "lib/wire_field.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

static_assert(COORD_WIRE_HEADER_SIZE == WIRE_FRAME_HEADER &&
                  COORD_WIRE_TRAILER_SIZE == WIRE_FRAME_TRAILER,
              "the envelope is lib/wire_field.h's");
static_assert(COORD_WIRE_FRAME_OVERHEAD == 20, "error string says 20");

static int
fail(const char **error_r, int code, const char *error)
{
    if (error_r)
        *error_r = error;
    return code;
}

enum fid {
    F_VMIN,
    F_VMAX,
    F_VERSION,
    F_CODE,
    F_MEMBER,
    F_SECRET,
    F_CLUSTER,
    F_WITNESS,
    F_BOOT,
    F_TEXT,
    F_KEY,
    F_HOLDER,
    F_TO,
    F_TTL,
    F_REMAINING,
    F_MIN_EPOCH,
    F_EPOCH,
    F_VVERSION,
    F_VALUE,
    F_NONCE,
    F_COUNT
};

struct field {
    uint8_t tag;
    size_t off;   /* in struct coord_msg */
    uint32_t max; /* STR/BYTES: longest */
    const struct wire_field *names;
};

#define FLD(id, t, member, mx, name)                                                               \
    [id] = {t, offsetof(struct coord_msg, member), mx, WIRE_FIELD(name)}

static const struct field fields[F_COUNT] = {
    FLD(F_VMIN, WIRE_F_U16, version_min, 0, "version_min"),
    FLD(F_VMAX, WIRE_F_U16, version_max, 0, "version_max"),
    FLD(F_VERSION, WIRE_F_U16, version, 0, "version"),
    FLD(F_CODE, WIRE_F_U16, code, 0, "code"),
    FLD(F_MEMBER, WIRE_F_STR, member, COORD_WIRE_NAME_MAX, "member"),
    FLD(F_SECRET, WIRE_F_STR, secret, COORD_WIRE_SECRET_MAX, "secret"),
    FLD(F_CLUSTER, WIRE_F_STR, cluster, COORD_WIRE_NAME_MAX, "cluster"),
    FLD(F_WITNESS, WIRE_F_STR, witness, COORD_WIRE_NAME_MAX, "witness"),
    FLD(F_BOOT, WIRE_F_U64, boot_id, 0, "boot_id"),
    FLD(F_TEXT, WIRE_F_STR, text, COORD_WIRE_TEXT_MAX, "text"),
    FLD(F_KEY, WIRE_F_STR, key, COORD_WIRE_KEY_MAX, "key"),
    FLD(F_HOLDER, WIRE_F_STR, holder, COORD_WIRE_NAME_MAX, "holder"),
    FLD(F_TO, WIRE_F_STR, to, COORD_WIRE_NAME_MAX, "to"),
    FLD(F_TTL, WIRE_F_U32, ttl_ms, 0, "ttl_ms"),
    FLD(F_REMAINING, WIRE_F_U32, remaining_ms, 0, "remaining_ms"),
    FLD(F_MIN_EPOCH, WIRE_F_U64, min_epoch, 0, "min_epoch"),
    FLD(F_EPOCH, WIRE_F_U64, epoch, 0, "epoch"),
    FLD(F_VVERSION, WIRE_F_U64, value_version, 0, "value_version"),
    FLD(F_VALUE, WIRE_F_BYTES, value, COORD_WIRE_VALUE_MAX, "value"),
    FLD(F_NONCE, WIRE_F_U64, nonce, 0, "nonce"),
};

/* A field of a layout and, for STR, its shortest length in that message. */
struct slot {
    uint8_t id;
    uint8_t min;
};

enum id_rule { ID_NONZERO, ID_ZERO, ID_ANY };

struct msg_type {
    uint16_t type;
    const char *name;
    uint8_t id_rule;
    uint8_t n;
    struct slot slots[6];
};

#define VALUE_LAYOUT                                                                               \
    6,                                                                                             \
    {                                                                                              \
        {F_KEY, 1}, {F_HOLDER, 0}, {F_EPOCH, 0}, {F_REMAINING, 0}, {F_VVERSION, 0},                \
        {                                                                                          \
            F_VALUE, 0                                                                             \
        }                                                                                          \
    }

static const struct msg_type types[] = {
    {COORD_HELLO,
     "HELLO",
     ID_NONZERO,
     5,
     {{F_VMIN, 0}, {F_VMAX, 0}, {F_MEMBER, 1}, {F_SECRET, 1}, {F_CLUSTER, 0}}},
    {COORD_HELLO_REPLY,
     "HELLO_REPLY",
     ID_NONZERO,
     5,
     {{F_VERSION, 0}, {F_CODE, 0}, {F_TEXT, 0}, {F_WITNESS, 0}, {F_BOOT, 0}}},
    {COORD_ACQUIRE,
     "ACQUIRE",
     ID_NONZERO,
     4,
     {{F_KEY, 1}, {F_HOLDER, 1}, {F_TTL, 0}, {F_MIN_EPOCH, 0}}},
    {COORD_GRANTED, "GRANTED", ID_NONZERO, 3, {{F_KEY, 1}, {F_EPOCH, 0}, {F_TTL, 0}}},
    {COORD_DENIED,
     "DENIED",
     ID_NONZERO,
     4,
     {{F_KEY, 1}, {F_HOLDER, 1}, {F_EPOCH, 0}, {F_REMAINING, 0}}},
    {COORD_RELEASE, "RELEASE", ID_NONZERO, 3, {{F_KEY, 1}, {F_HOLDER, 1}, {F_EPOCH, 0}}},
    {COORD_RELEASED, "RELEASED", ID_NONZERO, 1, {{F_KEY, 1}}},
    {COORD_TRANSFER,
     "TRANSFER",
     ID_NONZERO,
     4,
     {{F_KEY, 1}, {F_HOLDER, 1}, {F_EPOCH, 0}, {F_TO, 1}}},
    {COORD_GET, "GET", ID_NONZERO, 1, {{F_KEY, 1}}},
    {COORD_VALUE, "VALUE", ID_NONZERO, VALUE_LAYOUT},
    {COORD_CAS, "CAS", ID_NONZERO, 3, {{F_KEY, 1}, {F_VVERSION, 0}, {F_VALUE, 0}}},
    {COORD_CONFLICT, "CONFLICT", ID_NONZERO, VALUE_LAYOUT},
    {COORD_WATCH, "WATCH", ID_NONZERO, 1, {{F_KEY, 1}}},
    {COORD_NOTIFY, "NOTIFY", ID_ZERO, VALUE_LAYOUT},
    {COORD_PING, "PING", ID_NONZERO, 1, {{F_NONCE, 0}}},
    {COORD_PONG, "PONG", ID_NONZERO, 1, {{F_NONCE, 0}}},
    {COORD_ERROR, "ERROR", ID_ANY, 2, {{F_CODE, 0}, {F_TEXT, 1}}},
};

static const struct msg_type *
type_of(uint16_t type)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (types[i].type == type)
            return &types[i];
    return NULL;
}

const char *
coord_type_name(uint16_t type)
{
    const struct msg_type *t = type_of(type);
    return t ? t->name : NULL;
}

const char *
coord_code_name(uint16_t code)
{
    static const char *const names[] = {
        [COORD_CODE_OK] = "ok",
        [COORD_CODE_VERSION] = "version",
        [COORD_CODE_AUTH] = "auth",
        [COORD_CODE_PROTOCOL] = "protocol",
        [COORD_CODE_INTERNAL] = "internal",
        [COORD_CODE_HOLDER] = "holder",
        [COORD_CODE_EPOCH] = "epoch",
        [COORD_CODE_LIMIT] = "limit",
    };
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : NULL;
}

struct coord_str
coord_str_c(const char *s)
{
    size_t n = strlen(s);
    return (struct coord_str){s, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n};
}

int
coord_version_negotiate(uint16_t peer_min, uint16_t peer_max, uint16_t *version_r,
                        const char **error_r)
{
    if (peer_min == 0 || peer_max < peer_min)
        return fail(error_r, TDM_EINVAL, "the node's version range is empty or starts at 0");
    if (peer_max < COORD_WIRE_VERSION_MIN || peer_min > COORD_WIRE_VERSION)
        return fail(error_r, TDM_EINVAL, "no protocol version in common with the witness");
    *version_r = peer_max < COORD_WIRE_VERSION ? peer_max : (uint16_t)COORD_WIRE_VERSION;
    return 0;
}

/* ---- fields ---- */

static void *
at(struct coord_msg *m, const struct field *f)
{
    return (char *)m + f->off;
}

static const void *
cat(const struct coord_msg *m, const struct field *f)
{
    return (const char *)m + f->off;
}

static void
encode_fields(struct wire_wr *w, const struct msg_type *t, const struct coord_msg *m)
{
    for (unsigned i = 0; i < t->n; i++) {
        const struct field *f = &fields[t->slots[i].id];
        const void *p = cat(m, f);
        switch (f->tag) {
        case WIRE_F_U16:
            wire_wr_u16(w, *(const uint16_t *)p);
            break;
        case WIRE_F_U32:
            wire_wr_u32(w, *(const uint32_t *)p);
            break;
        case WIRE_F_U64:
            wire_wr_u64(w, *(const uint64_t *)p);
            break;
        default: {
            const struct coord_str *s = p;
            wire_wr_span(w, f->tag, s->ptr, s->len);
        }
        }
    }
}

static bool
decode_fields(struct wire_rd *r, const struct msg_type *t, struct coord_msg *m)
{
    for (unsigned i = 0; i < t->n; i++) {
        const struct field *f = &fields[t->slots[i].id];
        void *p = at(m, f);
        bool ok;
        switch (f->tag) {
        case WIRE_F_U16:
            ok = wire_rd_u16(r, f->names, p);
            break;
        case WIRE_F_U32:
            ok = wire_rd_u32(r, f->names, p);
            break;
        case WIRE_F_U64:
            ok = wire_rd_u64(r, f->names, p);
            break;
        default: {
            struct coord_str *s = p;
            const uint8_t *ptr = NULL;
            ok = wire_rd_span(r, f->names, f->tag, &ptr, &s->len);
            s->ptr = (const char *)ptr;
        }
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Length rules of every STR/BYTES slot (BYTES may hold NUL). */
static int
check_spans(const struct msg_type *t, const struct coord_msg *m, const char **error_r)
{
    for (unsigned i = 0; i < t->n; i++) {
        const struct field *f = &fields[t->slots[i].id];
        if (f->tag != WIRE_F_STR && f->tag != WIRE_F_BYTES)
            continue;
        const struct coord_str *s = cat(m, f);
        const char *error;
        if (f->tag == WIRE_F_STR) {
            error = wire_check_str(s->ptr, s->len, f->names, t->slots[i].min, f->max);
        } else {
            error = s->len > 0 && s->ptr == NULL ? f->names->null_ptr
                    : s->len > f->max            ? f->names->too_long
                                                 : NULL;
        }
        if (error)
            return fail(error_r, TDM_EINVAL, error);
    }
    return 0;
}

static bool
same(const struct coord_str *a, const struct coord_str *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

/* The rules between fields of one message. */
static const char *
check_type(const struct coord_msg *m)
{
    switch (m->type) {
    case COORD_HELLO:
        if (m->version_min == 0)
            return "HELLO.version_min: zero";
        if (m->version_max < m->version_min)
            return "HELLO.version_max: below version_min";
        return NULL;
    case COORD_HELLO_REPLY:
        if (coord_code_name(m->code) == NULL)
            return "HELLO_REPLY.code: unknown";
        if ((m->code == COORD_CODE_OK) != (m->version != 0))
            return "HELLO_REPLY: version must be set exactly when code is ok";
        if ((m->code == COORD_CODE_OK) != (m->text.len == 0))
            return "HELLO_REPLY.text: must be empty exactly when code is ok";
        if ((m->code == COORD_CODE_OK) != (m->witness.len != 0))
            return "HELLO_REPLY.witness: must be set exactly when code is ok";
        return NULL;
    case COORD_ACQUIRE:
        return m->ttl_ms == 0 || m->ttl_ms > COORD_WIRE_TTL_MAX ? "ACQUIRE.ttl_ms: out of range"
                                                                : NULL;
    case COORD_GRANTED:
        if (m->epoch == 0)
            return "GRANTED.epoch: zero";
        return m->ttl_ms == 0 || m->ttl_ms > COORD_WIRE_TTL_MAX ? "GRANTED.ttl_ms: out of range"
                                                                : NULL;
    case COORD_DENIED:
        if (m->epoch == 0)
            return "DENIED.epoch: zero";
        return m->remaining_ms > COORD_WIRE_TTL_MAX ? "DENIED.remaining_ms: out of range" : NULL;
    case COORD_RELEASE:
        return m->epoch == 0 ? "RELEASE.epoch: zero" : NULL;
    case COORD_TRANSFER:
        if (m->epoch == 0)
            return "TRANSFER.epoch: zero";
        return same(&m->holder, &m->to) ? "TRANSFER.to: the holder itself" : NULL;
    case COORD_VALUE:
    case COORD_CONFLICT:
    case COORD_NOTIFY:
        if (m->remaining_ms > COORD_WIRE_TTL_MAX)
            return "VALUE.remaining_ms: out of range";
        if (m->holder.len == 0 && m->remaining_ms != 0)
            return "VALUE.remaining_ms: not zero without a holder";
        if (m->value_version == 0 && m->value.len != 0)
            return "VALUE.value: not empty at version 0";
        return NULL;
    case COORD_ERROR:
        return m->code == COORD_CODE_OK || coord_code_name(m->code) == NULL
                   ? "ERROR.code: ok or unknown"
                   : NULL;
    default:
        return NULL;
    }
}

static const char *
request_id_error(const struct msg_type *t, uint32_t id)
{
    if (t->id_rule == ID_NONZERO && id == 0)
        return "request id zero on a request or an answer";
    if (t->id_rule == ID_ZERO && id != 0)
        return "request id not zero on NOTIFY";
    return NULL;
}

int
coord_msg_check(const struct coord_msg *msg, const char **error_r)
{
    const struct msg_type *t = type_of(msg->type);
    if (t == NULL)
        return fail(error_r, TDM_EINVAL, "unknown message type");
    const char *error = request_id_error(t, msg->request_id);
    if (error == NULL) {
        int rc = check_spans(t, msg, error_r);
        if (rc != 0)
            return rc;
        error = check_type(msg);
    }
    return error ? fail(error_r, TDM_EINVAL, error) : 0;
}

/* ---- frames ---- */

int
coord_frame_length(const uint8_t *buf, size_t len, size_t *frame_len_r, const char **error_r)
{
    uint32_t flen;
    int rc = wire_frame_length(buf, len, COORD_WIRE_MAX_FRAME,
                               "frame length over COORD_WIRE_MAX_FRAME", &flen, error_r);
    if (rc == 0)
        *frame_len_r = flen;
    return rc;
}

int
coord_msg_decode(const uint8_t *buf, size_t len, struct coord_msg *msg_r, size_t *frame_len_r,
                 const char **error_r)
{
    struct wire_frame f;
    int rc = wire_frame_open(buf, len, COORD_WIRE_MAX_FRAME,
                             "frame length over COORD_WIRE_MAX_FRAME", &f, error_r);
    if (rc != 0)
        return rc;
    const struct msg_type *t = type_of(f.type);
    if (t == NULL)
        return fail(error_r, TDM_ECORRUPT, "unknown message type");
    if (f.version < COORD_WIRE_VERSION_MIN || f.version > COORD_WIRE_VERSION)
        return fail(error_r, TDM_ECORRUPT, "unsupported protocol version");
    memset(msg_r, 0, sizeof(*msg_r));
    msg_r->type = f.type;
    msg_r->request_id = f.request_id;
    struct wire_rd r = {f.payload, f.payload_len, NULL};
    if (!decode_fields(&r, t, msg_r))
        return fail(error_r, TDM_ECORRUPT, r.error);
    if (r.left != 0)
        return fail(error_r, TDM_ECORRUPT, "bytes after the last field of the payload");
    const char *error = NULL;
    if (coord_msg_check(msg_r, &error) != 0)
        return fail(error_r, TDM_ECORRUPT, error);
    if (frame_len_r)
        *frame_len_r = f.length;
    return 0;
}

int
coord_msg_size(const struct coord_msg *msg, size_t *size_r, const char **error_r)
{
    int rc = coord_msg_check(msg, error_r);
    if (rc != 0)
        return rc;
    struct wire_wr w = {NULL, 0};
    encode_fields(&w, type_of(msg->type), msg);
    if (w.n > COORD_WIRE_MAX_FRAME - COORD_WIRE_FRAME_OVERHEAD)
        return fail(error_r, TDM_EINVAL, "message over COORD_WIRE_MAX_FRAME");
    *size_r = w.n + COORD_WIRE_FRAME_OVERHEAD;
    return 0;
}

int
coord_msg_encode(const struct coord_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                 const char **error_r)
{
    size_t size;
    int rc = coord_msg_size(msg, &size, error_r);
    if (rc != 0)
        return rc;
    if (cap < size)
        return fail(error_r, -ENOBUFS, "output buffer smaller than the frame");
    wire_frame_put_header(out, (uint32_t)size, COORD_WIRE_VERSION, msg->type, msg->request_id);
    struct wire_wr w = {out + COORD_WIRE_HEADER_SIZE, 0};
    encode_fields(&w, type_of(msg->type), msg);
    wire_frame_seal(out, COORD_WIRE_HEADER_SIZE + w.n);
    *len_r = size;
    return 0;
}
