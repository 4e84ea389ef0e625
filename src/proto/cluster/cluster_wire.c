/*
 * Heartbeat protocol codec (docs/formats/cluster.md). Byte layout of each payload, in field
 * order (tags and primitives from lib/wire_field.h):
 *
 *   HELLO            u16 version_min, u16 version_max, str member, str cluster, str key,
 *                    u64 heartbeat_interval_ms, u16 heartbeat_misses, u64 lease_ttl_ms
 *   HELLO_REPLY      u16 version, u16 code, str member, str reason
 *   HEARTBEAT        u64 seq, u64 sent_ms, summary
 *   HEARTBEAT_REPLY  u64 seq, u64 sent_ms, summary
 *   ERROR            u16 code, str text
 *   summary          list n_cms { str name, u16 role, u64 epoch, str moving_to },
 *                    list n_dbs { str name, u64 generation, u64 offset, u64 lsn, u64 epoch,
 *                                 u16 copy_state }
 *
 * Every frame carries version 2 (CLUSTER_WIRE_VERSION). Decoding checks the same rules encoding
 * does, so a decoded message re-encodes to the same bytes.
 */
#include "proto/cluster/cluster_wire.h"

#include "lib/err.h"
#include "lib/wire_field.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

static_assert(CLUSTER_WIRE_HEADER_SIZE == WIRE_FRAME_HEADER &&
                  CLUSTER_WIRE_TRAILER_SIZE == WIRE_FRAME_TRAILER,
              "the envelope is lib/wire_field.h's");

#define OVERHEAD (CLUSTER_WIRE_HEADER_SIZE + CLUSTER_WIRE_TRAILER_SIZE)
/* Highest copy_state: the 8 copy states are 1..8, 0 is the active (docs/formats/cluster.md). */
#define COPY_STATE_MAX 8u

static int
fail(const char **error_r, int code, const char *error)
{
    *error_r = error;
    return code;
}

/* A STR field into a NUL-terminated buffer of max + 1 bytes, with its rules checked here: the
 * fixed buffer is what bounds it. */
static bool
rd_str(struct wire_rd *r, const struct wire_field *f, char *out, uint32_t min, uint32_t max)
{
    const uint8_t *p;
    uint32_t len;
    if (!wire_rd_span(r, f, WIRE_F_STR, &p, &len))
        return false;
    const char *e = wire_check_str((const char *)p, len, f, min, max);
    if (e) {
        r->error = e;
        return false;
    }
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

static void
wr_str(struct wire_wr *w, const char *s)
{
    wire_wr_span(w, WIRE_F_STR, s, (uint32_t)strlen(s));
}

/* s must be NUL-terminated within max + 1 bytes and hold min.. bytes. */
static const char *
check_str(const char *s, size_t size, const struct wire_field *f, uint32_t min)
{
    size_t len = strnlen(s, size);
    if (len == size)
        return f->too_long;
    return len < min ? f->empty : NULL;
}

/* ---- summary ---- */

static void
summary_encode(struct wire_wr *w, const struct cluster_summary *s)
{
    wire_wr_list(w, s->n_cms);
    for (uint32_t i = 0; i < s->n_cms; i++) {
        wr_str(w, s->cms[i].name);
        wire_wr_u16(w, s->cms[i].role);
        wire_wr_u64(w, s->cms[i].epoch);
        wr_str(w, s->cms[i].moving_to);
    }
    wire_wr_list(w, s->n_dbs);
    for (uint32_t i = 0; i < s->n_dbs; i++) {
        const struct cluster_db_state *d = &s->dbs[i];
        wr_str(w, d->name);
        wire_wr_u64(w, d->generation);
        wire_wr_u64(w, d->offset);
        wire_wr_u64(w, d->lsn);
        wire_wr_u64(w, d->epoch);
        wire_wr_u16(w, d->copy_state);
    }
}

static bool
summary_decode(struct wire_rd *r, struct cluster_summary *s)
{
    if (!wire_rd_list(r, WIRE_FIELD("summary.cms"), CLUSTER_WIRE_MAX_CMS, &s->n_cms))
        return false;
    for (uint32_t i = 0; i < s->n_cms; i++) {
        struct cluster_cms_state *c = &s->cms[i];
        if (!rd_str(r, WIRE_FIELD("summary.cms.name"), c->name, 1, CLUSTER_WIRE_NAME_MAX) ||
            !wire_rd_u16(r, WIRE_FIELD("summary.cms.role"), &c->role) ||
            !wire_rd_u64(r, WIRE_FIELD("summary.cms.epoch"), &c->epoch) ||
            !rd_str(r, WIRE_FIELD("summary.cms.moving_to"), c->moving_to, 0,
                    CLUSTER_WIRE_NAME_MAX))
            return false;
    }
    if (!wire_rd_list(r, WIRE_FIELD("summary.dbs"), CLUSTER_WIRE_MAX_DBS, &s->n_dbs))
        return false;
    for (uint32_t i = 0; i < s->n_dbs; i++) {
        struct cluster_db_state *d = &s->dbs[i];
        if (!rd_str(r, WIRE_FIELD("summary.dbs.name"), d->name, 1, CLUSTER_WIRE_NAME_MAX) ||
            !wire_rd_u64(r, WIRE_FIELD("summary.dbs.generation"), &d->generation) ||
            !wire_rd_u64(r, WIRE_FIELD("summary.dbs.offset"), &d->offset) ||
            !wire_rd_u64(r, WIRE_FIELD("summary.dbs.lsn"), &d->lsn) ||
            !wire_rd_u64(r, WIRE_FIELD("summary.dbs.epoch"), &d->epoch) ||
            !wire_rd_u16(r, WIRE_FIELD("summary.dbs.copy_state"), &d->copy_state))
            return false;
    }
    return true;
}

static const char *
summary_check(const struct cluster_summary *s)
{
    if (s->n_cms > CLUSTER_WIRE_MAX_CMS)
        return "summary.cms: more than CLUSTER_WIRE_MAX_CMS";
    if (s->n_dbs > CLUSTER_WIRE_MAX_DBS)
        return "summary.dbs: more than CLUSTER_WIRE_MAX_DBS";
    for (uint32_t i = 0; i < s->n_cms; i++) {
        const char *e =
            check_str(s->cms[i].name, sizeof(s->cms[i].name), WIRE_FIELD("summary.cms.name"), 1);
        if (e)
            return e;
        if (s->cms[i].role > CLUSTER_CMS_MOVING)
            return "summary.cms.role: unknown role";
        e = check_str(s->cms[i].moving_to, sizeof(s->cms[i].moving_to),
                      WIRE_FIELD("summary.cms.moving_to"), 0);
        if (e)
            return e;
        if ((s->cms[i].role == CLUSTER_CMS_MOVING) != (s->cms[i].moving_to[0] != '\0'))
            return "summary.cms.moving_to: must be non-empty exactly when role is moving";
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(s->cms[j].name, s->cms[i].name) == 0)
                return "summary.cms.name: listed twice";
    }
    for (uint32_t i = 0; i < s->n_dbs; i++) {
        const struct cluster_db_state *d = &s->dbs[i];
        const char *e = check_str(d->name, sizeof(d->name), WIRE_FIELD("summary.dbs.name"), 1);
        if (e)
            return e;
        if (d->copy_state > COPY_STATE_MAX)
            return "summary.dbs.copy_state: unknown state";
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(s->dbs[j].name, d->name) == 0)
                return "summary.dbs.name: listed twice";
    }
    return NULL;
}

/* ---- messages ---- */

static void
encode_payload(struct wire_wr *w, const struct cluster_msg *m)
{
    switch (m->type) {
    case CLUSTER_HELLO:
        wire_wr_u16(w, m->u.hello.version_min);
        wire_wr_u16(w, m->u.hello.version_max);
        wr_str(w, m->u.hello.member);
        wr_str(w, m->u.hello.cluster);
        wr_str(w, m->u.hello.key);
        wire_wr_u64(w, m->u.hello.heartbeat_interval_ms);
        wire_wr_u16(w, m->u.hello.heartbeat_misses);
        wire_wr_u64(w, m->u.hello.lease_ttl_ms);
        break;
    case CLUSTER_HELLO_REPLY:
        wire_wr_u16(w, m->u.hello_reply.version);
        wire_wr_u16(w, m->u.hello_reply.code);
        wr_str(w, m->u.hello_reply.member);
        wr_str(w, m->u.hello_reply.reason);
        break;
    case CLUSTER_HEARTBEAT:
    case CLUSTER_HEARTBEAT_REPLY:
        /* The two share their layout (and struct prefix): a reply echoes seq and sent_ms. */
        wire_wr_u64(w, m->u.heartbeat.seq);
        wire_wr_u64(w, m->u.heartbeat.sent_ms);
        summary_encode(w, &m->u.heartbeat.summary);
        break;
    case CLUSTER_ERROR:
        wire_wr_u16(w, m->u.error.code);
        wr_str(w, m->u.error.text);
        break;
    }
}

static_assert(offsetof(struct cluster_heartbeat, seq) ==
                      offsetof(struct cluster_heartbeat_reply, seq) &&
                  offsetof(struct cluster_heartbeat, sent_ms) ==
                      offsetof(struct cluster_heartbeat_reply, sent_ms) &&
                  offsetof(struct cluster_heartbeat, summary) ==
                      offsetof(struct cluster_heartbeat_reply, summary),
              "HEARTBEAT and HEARTBEAT_REPLY share one layout");

static bool
decode_payload(struct wire_rd *r, struct cluster_msg *m)
{
    switch (m->type) {
    case CLUSTER_HELLO: {
        struct cluster_hello *h = &m->u.hello;
        return wire_rd_u16(r, WIRE_FIELD("HELLO.version_min"), &h->version_min) &&
               wire_rd_u16(r, WIRE_FIELD("HELLO.version_max"), &h->version_max) &&
               rd_str(r, WIRE_FIELD("HELLO.member"), h->member, 1, CLUSTER_WIRE_NAME_MAX) &&
               rd_str(r, WIRE_FIELD("HELLO.cluster"), h->cluster, 1, CLUSTER_WIRE_NAME_MAX) &&
               rd_str(r, WIRE_FIELD("HELLO.key"), h->key, 1, CLUSTER_WIRE_KEY_MAX) &&
               wire_rd_u64(r, WIRE_FIELD("HELLO.heartbeat_interval_ms"),
                           &h->heartbeat_interval_ms) &&
               wire_rd_u16(r, WIRE_FIELD("HELLO.heartbeat_misses"), &h->heartbeat_misses) &&
               wire_rd_u64(r, WIRE_FIELD("HELLO.lease_ttl_ms"), &h->lease_ttl_ms);
    }
    case CLUSTER_HELLO_REPLY: {
        struct cluster_hello_reply *h = &m->u.hello_reply;
        return wire_rd_u16(r, WIRE_FIELD("HELLO_REPLY.version"), &h->version) &&
               wire_rd_u16(r, WIRE_FIELD("HELLO_REPLY.code"), &h->code) &&
               rd_str(r, WIRE_FIELD("HELLO_REPLY.member"), h->member, 1, CLUSTER_WIRE_NAME_MAX) &&
               rd_str(r, WIRE_FIELD("HELLO_REPLY.reason"), h->reason, 0, CLUSTER_WIRE_TEXT_MAX);
    }
    case CLUSTER_HEARTBEAT:
    case CLUSTER_HEARTBEAT_REPLY: {
        struct cluster_heartbeat *h = &m->u.heartbeat;
        return wire_rd_u64(r, WIRE_FIELD("HEARTBEAT.seq"), &h->seq) &&
               wire_rd_u64(r, WIRE_FIELD("HEARTBEAT.sent_ms"), &h->sent_ms) &&
               summary_decode(r, &h->summary);
    }
    case CLUSTER_ERROR:
        return wire_rd_u16(r, WIRE_FIELD("ERROR.code"), &m->u.error.code) &&
               rd_str(r, WIRE_FIELD("ERROR.text"), m->u.error.text, 1, CLUSTER_WIRE_TEXT_MAX);
    }
    r->error = "unknown message type";
    return false;
}

int
cluster_msg_check(const struct cluster_msg *m, const char **error_r)
{
    const char *e = NULL;
    bool first = m->type == CLUSTER_HELLO || m->type == CLUSTER_HELLO_REPLY;
    if (first ? m->request_id == 0 : m->request_id != 0)
        return fail(error_r, TDM_EINVAL,
                    first ? "request id: zero on HELLO or HELLO_REPLY"
                          : "request id: not zero outside HELLO and HELLO_REPLY");
    switch (m->type) {
    case CLUSTER_HELLO: {
        const struct cluster_hello *h = &m->u.hello;
        if (h->version_min < 1 || h->version_max < h->version_min)
            e = "HELLO.version_min: not 1 <= version_min <= version_max";
        else if (!(e = check_str(h->member, sizeof(h->member), WIRE_FIELD("HELLO.member"), 1)) &&
                 !(e = check_str(h->cluster, sizeof(h->cluster), WIRE_FIELD("HELLO.cluster"), 1)) &&
                 !(e = check_str(h->key, sizeof(h->key), WIRE_FIELD("HELLO.key"), 1))) {
            if (h->heartbeat_interval_ms == 0)
                e = "HELLO.heartbeat_interval_ms: zero";
            else if (h->heartbeat_misses == 0)
                e = "HELLO.heartbeat_misses: zero";
            else if (h->lease_ttl_ms == 0)
                e = "HELLO.lease_ttl_ms: zero";
        }
        break;
    }
    case CLUSTER_HELLO_REPLY: {
        const struct cluster_hello_reply *h = &m->u.hello_reply;
        bool ok = h->code == CLUSTER_CODE_OK;
        if (!cluster_code_name(h->code))
            e = "HELLO_REPLY.code: unknown code";
        else if (ok != (h->version != 0))
            e = "HELLO_REPLY.version: must be non-zero exactly when code is ok";
        else if (!(e = check_str(h->member, sizeof(h->member), WIRE_FIELD("HELLO_REPLY.member"),
                                 1)) &&
                 !(e = check_str(h->reason, sizeof(h->reason), WIRE_FIELD("HELLO_REPLY.reason"),
                                 0)) &&
                 ok != (h->reason[0] == '\0'))
            e = "HELLO_REPLY.reason: must be empty exactly when code is ok";
        break;
    }
    case CLUSTER_HEARTBEAT:
    case CLUSTER_HEARTBEAT_REPLY:
        if (m->u.heartbeat.seq == 0)
            e = "HEARTBEAT.seq: zero";
        else
            e = summary_check(&m->u.heartbeat.summary);
        break;
    case CLUSTER_ERROR:
        if (m->u.error.code == CLUSTER_CODE_OK || !cluster_code_name(m->u.error.code))
            e = "ERROR.code: ok or unknown";
        else
            e = check_str(m->u.error.text, sizeof(m->u.error.text), WIRE_FIELD("ERROR.text"), 1);
        break;
    default:
        e = "unknown message type";
    }
    return e ? fail(error_r, TDM_EINVAL, e) : 0;
}

int
cluster_frame_length(const uint8_t *buf, size_t len, size_t *frame_len_r, const char **error_r)
{
    uint32_t flen;
    int rc = wire_frame_length(buf, len, CLUSTER_WIRE_MAX_FRAME,
                               "frame length over CLUSTER_WIRE_MAX_FRAME", &flen, error_r);
    if (rc == 0)
        *frame_len_r = flen;
    return rc;
}

int
cluster_msg_decode(const uint8_t *buf, size_t len, struct cluster_msg *msg_r, size_t *frame_len_r,
                   const char **error_r)
{
    struct wire_frame f;
    int rc = wire_frame_open(buf, len, CLUSTER_WIRE_MAX_FRAME,
                             "frame length over CLUSTER_WIRE_MAX_FRAME", &f, error_r);
    if (rc != 0)
        return rc;
    if (f.version != CLUSTER_WIRE_VERSION)
        return fail(error_r, TDM_ECORRUPT, "unsupported protocol version");
    memset(msg_r, 0, sizeof(*msg_r));
    msg_r->type = f.type;
    msg_r->request_id = f.request_id;
    if (!cluster_type_name(msg_r->type))
        return fail(error_r, TDM_ECORRUPT, "unknown message type");
    struct wire_rd r = {f.payload, f.payload_len, NULL};
    if (!decode_payload(&r, msg_r))
        return fail(error_r, TDM_ECORRUPT, r.error);
    if (r.left != 0)
        return fail(error_r, TDM_ECORRUPT, "bytes after the last field of the payload");
    if (cluster_msg_check(msg_r, error_r) != 0)
        return TDM_ECORRUPT;
    if (frame_len_r)
        *frame_len_r = f.length;
    return 0;
}

int
cluster_msg_encode(const struct cluster_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                   const char **error_r)
{
    int rc = cluster_msg_check(msg, error_r);
    if (rc != 0)
        return rc;
    struct wire_wr count = {NULL, 0};
    encode_payload(&count, msg);
    size_t size = OVERHEAD + count.n;
    if (size > CLUSTER_WIRE_MAX_FRAME)
        return fail(error_r, TDM_EINVAL, "frame longer than CLUSTER_WIRE_MAX_FRAME");
    if (cap < size)
        return fail(error_r, -ENOBUFS, "output buffer smaller than the frame");
    wire_frame_put_header(out, (uint32_t)size, CLUSTER_WIRE_VERSION, msg->type, msg->request_id);
    struct wire_wr w = {out + CLUSTER_WIRE_HEADER_SIZE, 0};
    encode_payload(&w, msg);
    wire_frame_seal(out, CLUSTER_WIRE_HEADER_SIZE + w.n);
    *len_r = size;
    return 0;
}

const char *
cluster_type_name(uint16_t type)
{
    switch (type) {
    case CLUSTER_HELLO:
        return "HELLO";
    case CLUSTER_HELLO_REPLY:
        return "HELLO_REPLY";
    case CLUSTER_HEARTBEAT:
        return "HEARTBEAT";
    case CLUSTER_HEARTBEAT_REPLY:
        return "HEARTBEAT_REPLY";
    case CLUSTER_ERROR:
        return "ERROR";
    }
    return NULL;
}

const char *
cluster_code_name(uint16_t code)
{
    static const char *const names[] = {"ok",       "version",  "auth",     "cluster",
                                        "protocol", "internal", "shutdown", "timers"};
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : NULL;
}

const char *
cluster_cms_role_name(uint16_t role)
{
    static const char *const names[] = {"none", "active", "passive", "moving"};
    return role < sizeof(names) / sizeof(names[0]) ? names[role] : NULL;
}
