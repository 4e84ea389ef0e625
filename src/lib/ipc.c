/*
 * IPC frame and message codec. The wire layout is described once, in include/tandem/ipc.h;
 * this file follows it field by field.
 *
 * Shape: every message type has an encode, a decode and a check function, listed in
 * msg_types[]. The check function holds every semantic rule (lengths, ranges, charsets) and
 * runs both before encoding and after decoding, so whatever one process can send the other
 * accepts, and whatever is accepted re-encodes to the same bytes (the fuzz target relies on
 * that). The decode functions only parse structure: tags, lengths, counts.
 */
#include "lib/ipc.h"

#include "lib/err.h"
#include "lib/wire_field.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Error strings below spell these values out. */
static_assert(TDM_IPC_HEADER_SIZE == WIRE_FRAME_HEADER &&
                  TDM_IPC_TRAILER_SIZE == WIRE_FRAME_TRAILER,
              "the envelope is lib/wire_field.h's");
static_assert(TDM_IPC_HELLO_VERSION == 1, "HELLO version error string says 1");
static_assert(TDM_IPC_FRAME_OVERHEAD == 20, "frame length error string says 20");
static_assert(TDM_IPC_MAX_FRAME < UINT32_MAX, "the length field must hold any frame");
/* ipc.h documents the tags; lib/wire_field.h implements them. */
static_assert((int)TDM_IPC_F_U16 == WIRE_F_U16 && (int)TDM_IPC_F_U32 == WIRE_F_U32 &&
                  (int)TDM_IPC_F_U64 == WIRE_F_U64 && (int)TDM_IPC_F_I32 == WIRE_F_I32 &&
                  (int)TDM_IPC_F_STR == WIRE_F_STR && (int)TDM_IPC_F_BYTES == WIRE_F_BYTES &&
                  (int)TDM_IPC_F_LIST == WIRE_F_LIST,
              "field tags");

static int
fail(const char **error_r, int code, const char *error)
{
    if (error_r)
        *error_r = error;
    return code;
}

/* The field primitives are shared with the replication codec (lib/wire_field.h); what is
 * left here is what depends on struct ipc_str. */
#define FIELD WIRE_FIELD

static bool
rd_str(struct wire_rd *r, const struct wire_field *f, struct ipc_str *s)
{
    const uint8_t *p;
    if (!wire_rd_span(r, f, WIRE_F_STR, &p, &s->len))
        return false;
    s->ptr = (const char *)p;
    return true;
}

static void
wr_str(struct wire_wr *w, const struct ipc_str *s)
{
    wire_wr_span(w, WIRE_F_STR, s->ptr, s->len);
}

static int
check_str(const struct ipc_str *s, const struct wire_field *f, uint32_t min, uint32_t max,
          const char **error_r)
{
    const char *error = wire_check_str(s->ptr, s->len, f, min, max);
    return error ? fail(error_r, TDM_EINVAL, error) : 0;
}

/* ---- HELLO ---- */

static void
hello_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_hello *h = &m->u.hello;
    wire_wr_u16(w, h->kind);
    wire_wr_u32(w, h->pid);
    wire_wr_u16(w, h->version_min);
    wire_wr_u16(w, h->version_max);
}

static bool
hello_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_hello *h = &m->u.hello;
    return wire_rd_u16(r, FIELD("HELLO.kind"), &h->kind) &&
           wire_rd_u32(r, FIELD("HELLO.pid"), &h->pid) &&
           wire_rd_u16(r, FIELD("HELLO.version_min"), &h->version_min) &&
           wire_rd_u16(r, FIELD("HELLO.version_max"), &h->version_max);
}

static int
hello_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_hello *h = &m->u.hello;
    if (ipc_worker_kind_name(h->kind) == NULL)
        return fail(error_r, TDM_EINVAL, "HELLO.kind: unknown worker kind");
    if (h->pid == 0)
        return fail(error_r, TDM_EINVAL, "HELLO.pid: zero");
    if (h->version_min == 0)
        return fail(error_r, TDM_EINVAL, "HELLO.version_min: zero");
    if (h->version_max < h->version_min)
        return fail(error_r, TDM_EINVAL, "HELLO.version_max: below version_min");
    return 0;
}

/* ---- HELLO_REPLY ---- */

static void
hello_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wire_wr_u16(w, m->u.hello_reply.version);
    wr_str(w, &m->u.hello_reply.reason);
}

static bool
hello_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_hello_reply *h = &m->u.hello_reply;
    return wire_rd_u16(r, FIELD("HELLO_REPLY.version"), &h->version) &&
           rd_str(r, FIELD("HELLO_REPLY.reason"), &h->reason);
}

static int
hello_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_hello_reply *h = &m->u.hello_reply;
    int rc = check_str(&h->reason, FIELD("HELLO_REPLY.reason"), 0, TDM_IPC_REASON_MAX, error_r);
    if (rc != 0)
        return rc;
    if (h->version == 0 && h->reason.len == 0)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.reason: empty on a refusal (version 0)");
    if (h->version != 0 && h->reason.len != 0)
        return fail(error_r, TDM_EINVAL, "HELLO_REPLY.reason: not empty on an acceptance");
    return 0;
}

/* ---- COMMIT ---- */

static void
commit_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_commit *c = &m->u.commit;
    wr_str(w, &c->database);
    wire_wr_u16(w, c->record_type);
    wire_wr_span(w, WIRE_F_BYTES, c->payload, c->payload_len);
}

static bool
commit_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_commit *c = &m->u.commit;
    return rd_str(r, FIELD("COMMIT.database"), &c->database) &&
           wire_rd_u16(r, FIELD("COMMIT.record_type"), &c->record_type) &&
           wire_rd_span(r, FIELD("COMMIT.payload"), WIRE_F_BYTES, &c->payload, &c->payload_len);
}

static int
commit_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_commit *c = &m->u.commit;
    int rc = check_str(&c->database, FIELD("COMMIT.database"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc != 0)
        return rc;
    if (c->record_type == 0)
        return fail(error_r, TDM_EINVAL, "COMMIT.record_type: zero");
    /* END is written by the log itself; a worker asking for one has lost its mind. */
    if (c->record_type == TDM_REC_END)
        return fail(error_r, TDM_EINVAL, "COMMIT.record_type: END is the log's own record");
    if (c->payload_len > 0 && c->payload == NULL)
        return fail(error_r, TDM_EINVAL, "COMMIT.payload: NULL pointer with a non-zero length");
    if (c->payload_len > TDM_LOG_MAX_PAYLOAD)
        return fail(error_r, TDM_EINVAL, "COMMIT.payload: longer than TDM_LOG_MAX_PAYLOAD");
    return 0;
}

/* ---- COMMIT_REPLY ---- */

static void
commit_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_commit_reply *c = &m->u.commit_reply;
    wire_wr_i32(w, c->status);
    wire_wr_u64(w, c->lsn);
    wire_wr_u32(w, c->uidvalidity);
    wire_wr_u32(w, c->first_uid);
    wire_wr_u32(w, c->count);
    wire_wr_u64(w, c->modseq);
    wire_wr_list(w, c->n_targets);
    for (uint32_t i = 0; i < c->n_targets; i++) {
        wire_wr_i32(w, c->targets[i].status);
        wire_wr_u32(w, c->targets[i].uid);
        wire_wr_u32(w, c->targets[i].uidvalidity);
    }
}

static bool
commit_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_commit_reply *c = &m->u.commit_reply;
    if (!wire_rd_i32(r, FIELD("COMMIT_REPLY.status"), &c->status) ||
        !wire_rd_u64(r, FIELD("COMMIT_REPLY.lsn"), &c->lsn) ||
        !wire_rd_u32(r, FIELD("COMMIT_REPLY.uidvalidity"), &c->uidvalidity) ||
        !wire_rd_u32(r, FIELD("COMMIT_REPLY.first_uid"), &c->first_uid) ||
        !wire_rd_u32(r, FIELD("COMMIT_REPLY.count"), &c->count) ||
        !wire_rd_u64(r, FIELD("COMMIT_REPLY.modseq"), &c->modseq) ||
        !wire_rd_list(r, FIELD("COMMIT_REPLY.targets"), TDM_IPC_MAX_TARGETS, &c->n_targets))
        return false;
    for (uint32_t i = 0; i < c->n_targets; i++) {
        struct ipc_commit_target *t = &c->targets[i];
        if (!wire_rd_i32(r, FIELD("COMMIT_REPLY.targets.status"), &t->status) ||
            !wire_rd_u32(r, FIELD("COMMIT_REPLY.targets.uid"), &t->uid) ||
            !wire_rd_u32(r, FIELD("COMMIT_REPLY.targets.uidvalidity"), &t->uidvalidity))
            return false;
    }
    return true;
}

static int
commit_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_commit_reply *c = &m->u.commit_reply;
    if (c->status > 0)
        return fail(error_r, TDM_EINVAL, "COMMIT_REPLY.status: positive (0 or an error code)");
    if (c->n_targets > TDM_IPC_MAX_TARGETS)
        return fail(error_r, TDM_EINVAL, FIELD("COMMIT_REPLY.targets")->many);
    for (uint32_t i = 0; i < c->n_targets; i++)
        if (c->targets[i].status > 0)
            return fail(error_r, TDM_EINVAL,
                        "COMMIT_REPLY.targets.status: positive (0 or an error code)");
    return 0;
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ---- */

static void
subscribe_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_subscribe *s = &m->u.subscribe;
    wr_str(w, &s->database);
    wr_str(w, &s->mailbox);
    wr_str(w, &s->folder);
}

/* The two types share a layout but not error strings, which must name the type. */
struct subscribe_fields {
    const struct wire_field *database, *mailbox, *folder;
};

static bool
subscribe_decode_with(struct wire_rd *r, struct ipc_msg *m, const struct subscribe_fields *f)
{
    struct ipc_subscribe *s = &m->u.subscribe;
    return rd_str(r, f->database, &s->database) && rd_str(r, f->mailbox, &s->mailbox) &&
           rd_str(r, f->folder, &s->folder);
}

static int
subscribe_check_with(const struct ipc_msg *m, const struct subscribe_fields *f,
                     const char **error_r)
{
    const struct ipc_subscribe *s = &m->u.subscribe;
    int rc = check_str(&s->database, f->database, 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&s->mailbox, f->mailbox, 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&s->folder, f->folder, 0, TDM_IPC_NAME_MAX, error_r);
    return rc;
}

#define SUBSCRIBE_FIELDS(t)                                                                        \
    (&(const struct subscribe_fields){FIELD(t ".database"), FIELD(t ".mailbox"),                   \
                                      FIELD(t ".folder")})

static bool
subscribe_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return subscribe_decode_with(r, m, SUBSCRIBE_FIELDS("SUBSCRIBE"));
}

static int
subscribe_check(const struct ipc_msg *m, const char **error_r)
{
    return subscribe_check_with(m, SUBSCRIBE_FIELDS("SUBSCRIBE"), error_r);
}

static bool
unsubscribe_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return subscribe_decode_with(r, m, SUBSCRIBE_FIELDS("UNSUBSCRIBE"));
}

static int
unsubscribe_check(const struct ipc_msg *m, const char **error_r)
{
    return subscribe_check_with(m, SUBSCRIBE_FIELDS("UNSUBSCRIBE"), error_r);
}

/* ---- CHANGED ---- */

static void
changed_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_changed *c = &m->u.changed;
    wr_str(w, &c->database);
    wr_str(w, &c->mailbox);
    wr_str(w, &c->folder);
    wire_wr_u32(w, c->uidvalidity);
    wire_wr_u32(w, c->uidnext);
    wire_wr_u32(w, c->exists);
    wire_wr_u64(w, c->highestmodseq);
}

static bool
changed_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_changed *c = &m->u.changed;
    return rd_str(r, FIELD("CHANGED.database"), &c->database) &&
           rd_str(r, FIELD("CHANGED.mailbox"), &c->mailbox) &&
           rd_str(r, FIELD("CHANGED.folder"), &c->folder) &&
           wire_rd_u32(r, FIELD("CHANGED.uidvalidity"), &c->uidvalidity) &&
           wire_rd_u32(r, FIELD("CHANGED.uidnext"), &c->uidnext) &&
           wire_rd_u32(r, FIELD("CHANGED.exists"), &c->exists) &&
           wire_rd_u64(r, FIELD("CHANGED.highestmodseq"), &c->highestmodseq);
}

static int
changed_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_changed *c = &m->u.changed;
    int rc = check_str(&c->database, FIELD("CHANGED.database"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->mailbox, FIELD("CHANGED.mailbox"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->folder, FIELD("CHANGED.folder"), 1, TDM_IPC_NAME_MAX, error_r);
    return rc;
}

/* ---- FOLDER_CHANGED ---- */

static void
folder_changed_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_folder_changed *c = &m->u.folder_changed;
    wr_str(w, &c->database);
    wr_str(w, &c->mailbox);
    wr_str(w, &c->folder);
    wire_wr_u16(w, c->change);
    wr_str(w, &c->new_folder);
    wire_wr_u32(w, c->uidvalidity);
}

static bool
folder_changed_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_folder_changed *c = &m->u.folder_changed;
    return rd_str(r, FIELD("FOLDER_CHANGED.database"), &c->database) &&
           rd_str(r, FIELD("FOLDER_CHANGED.mailbox"), &c->mailbox) &&
           rd_str(r, FIELD("FOLDER_CHANGED.folder"), &c->folder) &&
           wire_rd_u16(r, FIELD("FOLDER_CHANGED.change"), &c->change) &&
           rd_str(r, FIELD("FOLDER_CHANGED.new_folder"), &c->new_folder) &&
           wire_rd_u32(r, FIELD("FOLDER_CHANGED.uidvalidity"), &c->uidvalidity);
}

static int
folder_changed_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_folder_changed *c = &m->u.folder_changed;
    int rc =
        check_str(&c->database, FIELD("FOLDER_CHANGED.database"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->mailbox, FIELD("FOLDER_CHANGED.mailbox"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->folder, FIELD("FOLDER_CHANGED.folder"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->new_folder, FIELD("FOLDER_CHANGED.new_folder"), 0, TDM_IPC_NAME_MAX,
                       error_r);
    if (rc != 0)
        return rc;
    if (c->change < TDM_IPC_FOLDER_CREATED || c->change > TDM_IPC_FOLDER_RENAMED)
        return fail(error_r, TDM_EINVAL, "FOLDER_CHANGED.change: unknown change");
    if ((c->change == TDM_IPC_FOLDER_RENAMED) != (c->new_folder.len != 0))
        return fail(error_r, TDM_EINVAL, "FOLDER_CHANGED.new_folder: set if and only if renamed");
    if ((c->change == TDM_IPC_FOLDER_DELETED) != (c->uidvalidity == 0))
        return fail(error_r, TDM_EINVAL, "FOLDER_CHANGED.uidvalidity: zero if and only if deleted");
    return 0;
}

/* ---- SHUTDOWN ---- */

static void
shutdown_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wr_str(w, &m->u.shutdown.reason);
    wire_wr_u32(w, m->u.shutdown.deadline_ms);
}

static bool
shutdown_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return rd_str(r, FIELD("SHUTDOWN.reason"), &m->u.shutdown.reason) &&
           wire_rd_u32(r, FIELD("SHUTDOWN.deadline_ms"), &m->u.shutdown.deadline_ms);
}

static int
shutdown_check(const struct ipc_msg *m, const char **error_r)
{
    return check_str(&m->u.shutdown.reason, FIELD("SHUTDOWN.reason"), 1, TDM_IPC_REASON_MAX,
                     error_r);
}

/* ---- RELOAD ---- */

static void
reload_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wire_wr_u64(w, m->u.reload.generation);
}

static bool
reload_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return wire_rd_u64(r, FIELD("RELOAD.generation"), &m->u.reload.generation);
}

static int
reload_check(const struct ipc_msg *m, const char **error_r)
{
    (void)m;
    (void)error_r;
    return 0;
}

/* ---- STATUS_REQUEST ---- */

static void
status_request_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    (void)w;
    (void)m;
}

static bool
status_request_decode(struct wire_rd *r, struct ipc_msg *m)
{
    (void)r;
    (void)m;
    return true;
}

static int
status_request_check(const struct ipc_msg *m, const char **error_r)
{
    (void)m;
    (void)error_r;
    return 0;
}

/* ---- STATUS_REPLY ---- */

static void
status_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_status_reply *s = &m->u.status_reply;
    wire_wr_list(w, s->n_counters);
    for (uint32_t i = 0; i < s->n_counters; i++) {
        wr_str(w, &s->counters[i].name);
        wire_wr_u64(w, s->counters[i].value);
    }
}

static bool
status_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_status_reply *s = &m->u.status_reply;
    if (!wire_rd_list(r, FIELD("STATUS_REPLY.counters"), TDM_IPC_MAX_COUNTERS, &s->n_counters))
        return false;
    for (uint32_t i = 0; i < s->n_counters; i++)
        if (!rd_str(r, FIELD("STATUS_REPLY.counters.name"), &s->counters[i].name) ||
            !wire_rd_u64(r, FIELD("STATUS_REPLY.counters.value"), &s->counters[i].value))
            return false;
    return true;
}

/* Prometheus metric name characters, so /metrics can print names without escaping. */
static bool
counter_name_ok(const struct ipc_str *s)
{
    for (uint32_t i = 0; i < s->len; i++) {
        char c = s->ptr[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static int
status_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_status_reply *s = &m->u.status_reply;
    if (s->n_counters > TDM_IPC_MAX_COUNTERS)
        return fail(error_r, TDM_EINVAL, FIELD("STATUS_REPLY.counters")->many);
    for (uint32_t i = 0; i < s->n_counters; i++) {
        const struct ipc_str *name = &s->counters[i].name;
        int rc = check_str(name, FIELD("STATUS_REPLY.counters.name"), 1, TDM_IPC_COUNTER_NAME_MAX,
                           error_r);
        if (rc != 0)
            return rc;
        if (!counter_name_ok(name))
            return fail(error_r, TDM_EINVAL,
                        "STATUS_REPLY.counters.name: not [A-Za-z_][A-Za-z0-9_]*");
        /* Quadratic, but n <= 256 and names are short; a hash set would cost more code. */
        for (uint32_t j = 0; j < i; j++) {
            const struct ipc_str *other = &s->counters[j].name;
            if (other->len == name->len && memcmp(other->ptr, name->ptr, name->len) == 0)
                return fail(error_r, TDM_EINVAL, "STATUS_REPLY.counters.name: duplicate");
        }
    }
    return 0;
}

/* ---- DB_STATUS_REQUEST ---- */

#define db_status_request_encode status_request_encode
#define db_status_request_decode status_request_decode
#define db_status_request_check status_request_check

/* ---- DB_STATUS_REPLY ---- */

static void
db_status_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_db_status_reply *s = &m->u.db_status_reply;
    wire_wr_list(w, s->n_databases);
    for (uint32_t i = 0; i < s->n_databases; i++) {
        const struct ipc_db_status *d = &s->databases[i];
        wr_str(w, &d->name);
        wr_str(w, &d->kind);
        wire_wr_u16(w, d->state);
        wire_wr_u64(w, d->last_lsn);
        wire_wr_u64(w, d->durable_lsn);
        wire_wr_u64(w, d->applied_lsn);
        wire_wr_u64(w, d->checkpoint_lsn);
        wire_wr_u64(w, d->current_generation);
        wire_wr_u64(w, d->lowest_generation);
        wire_wr_u64(w, d->commits);
        wire_wr_u64(w, d->syncs);
        wire_wr_u16(w, d->sync);
    }
}

static bool
db_status_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_db_status_reply *s = &m->u.db_status_reply;
    if (!wire_rd_list(r, FIELD("DB_STATUS_REPLY.databases"), TDM_IPC_MAX_DATABASES,
                      &s->n_databases))
        return false;
    for (uint32_t i = 0; i < s->n_databases; i++) {
        struct ipc_db_status *d = &s->databases[i];
        if (!rd_str(r, FIELD("DB_STATUS_REPLY.databases.name"), &d->name) ||
            !rd_str(r, FIELD("DB_STATUS_REPLY.databases.kind"), &d->kind) ||
            !wire_rd_u16(r, FIELD("DB_STATUS_REPLY.databases.state"), &d->state) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.last_lsn"), &d->last_lsn) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.durable_lsn"), &d->durable_lsn) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.applied_lsn"), &d->applied_lsn) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.checkpoint_lsn"),
                         &d->checkpoint_lsn) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.current_generation"),
                         &d->current_generation) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.lowest_generation"),
                         &d->lowest_generation) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.commits"), &d->commits) ||
            !wire_rd_u64(r, FIELD("DB_STATUS_REPLY.databases.syncs"), &d->syncs) ||
            !wire_rd_u16(r, FIELD("DB_STATUS_REPLY.databases.sync"), &d->sync))
            return false;
    }
    return true;
}

/* Byte order, shorter first on a common prefix (memcmp order of NUL-free strings). */
static int
str_cmp(const struct ipc_str *a, const struct ipc_str *b)
{
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = n > 0 ? memcmp(a->ptr, b->ptr, n) : 0;
    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int
db_status_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_db_status_reply *s = &m->u.db_status_reply;
    if (s->n_databases > TDM_IPC_MAX_DATABASES)
        return fail(error_r, TDM_EINVAL, FIELD("DB_STATUS_REPLY.databases")->many);
    for (uint32_t i = 0; i < s->n_databases; i++) {
        const struct ipc_db_status *d = &s->databases[i];
        int rc = check_str(&d->name, FIELD("DB_STATUS_REPLY.databases.name"), 1, TDM_IPC_NAME_MAX,
                           error_r);
        if (rc == 0)
            rc = check_str(&d->kind, FIELD("DB_STATUS_REPLY.databases.kind"), 0, TDM_IPC_KIND_MAX,
                           error_r);
        if (rc != 0)
            return rc;
        if (ipc_db_state_name(d->state) == NULL)
            return fail(error_r, TDM_EINVAL, "DB_STATUS_REPLY.databases.state: unknown state");
        if (d->sync > 2)
            return fail(error_r, TDM_EINVAL, "DB_STATUS_REPLY.databases.sync: not 0, 1 or 2");
        /* Strictly ascending: one order (one encoding) and no duplicates, checked in O(n). */
        if (i > 0 && str_cmp(&s->databases[i - 1].name, &d->name) >= 0)
            return fail(error_r, TDM_EINVAL,
                        "DB_STATUS_REPLY.databases.name: not in ascending order, or a duplicate");
    }
    return 0;
}

/* ---- COPY_STATUS_REQUEST ---- */

#define copy_status_request_encode status_request_encode
#define copy_status_request_decode status_request_decode
#define copy_status_request_check status_request_check

/* ---- COPY_STATUS_REPLY ---- */

/* The figures, in wire order, with their names for decode errors. */
#define COPY_FIGURE(f)                                                                             \
    {                                                                                              \
        offsetof(struct ipc_copy_status, f), FIELD("COPY_STATUS_REPLY.copies." #f)                 \
    }

struct copy_figure {
    size_t off;
    const struct wire_field *field; /* a file-scope compound literal: static storage */
};

static const struct copy_figure copy_figures[] = {
    COPY_FIGURE(source_generation),
    COPY_FIGURE(source_durable_end),
    COPY_FIGURE(source_lsn),
    COPY_FIGURE(source_time_us),
    COPY_FIGURE(copied_generation),
    COPY_FIGURE(copied_offset),
    COPY_FIGURE(copied_lsn),
    COPY_FIGURE(inspected_generation),
    COPY_FIGURE(replayed_generation),
    COPY_FIGURE(replayed_lsn),
    COPY_FIGURE(last_copied_us),
    COPY_FIGURE(last_inspected_us),
    COPY_FIGURE(last_replayed_us),
    COPY_FIGURE(copy_queue_generations),
    COPY_FIGURE(copy_queue_bytes),
    COPY_FIGURE(replay_queue_generations),
    COPY_FIGURE(replay_queue_records),
    COPY_FIGURE(bytes_received),
    COPY_FIGURE(bytes_per_second),
    COPY_FIGURE(wire_bytes),
    COPY_FIGURE(wire_log_bytes),
};
_Static_assert(sizeof(copy_figures) / sizeof(copy_figures[0]) == TDM_IPC_COPY_N_FIGURES,
               "every figure is in the table");

static uint64_t *
copy_figure_at(struct ipc_copy_status *c, const struct copy_figure *f)
{
    return (uint64_t *)(void *)((char *)c + f->off);
}

static void
copy_status_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_copy_status_reply *s = &m->u.copy_status_reply;
    const struct copy_figure *figures = copy_figures;
    wire_wr_list(w, s->n_copies);
    for (uint32_t i = 0; i < s->n_copies; i++) {
        struct ipc_copy_status c = s->copies[i];
        wr_str(w, &c.name);
        wire_wr_u16(w, c.state);
        wire_wr_u16(w, c.role);
        wire_wr_u16(w, c.mode);
        wire_wr_u16(w, c.compression);
        wr_str(w, &c.message);
        wr_str(w, &c.network);
        wr_str(w, &c.endpoint);
        wire_wr_u32(w, c.inspection_failures);
        for (size_t k = 0; k < TDM_IPC_COPY_N_FIGURES; k++)
            wire_wr_u64(w, *copy_figure_at(&c, &figures[k]));
    }
    wire_wr_u32(w, s->total);
}

static bool
copy_status_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_copy_status_reply *s = &m->u.copy_status_reply;
    const struct copy_figure *figures = copy_figures;
    if (!wire_rd_list(r, FIELD("COPY_STATUS_REPLY.copies"), TDM_IPC_MAX_COPIES, &s->n_copies))
        return false;
    for (uint32_t i = 0; i < s->n_copies; i++) {
        struct ipc_copy_status *c = &s->copies[i];
        if (!rd_str(r, FIELD("COPY_STATUS_REPLY.copies.name"), &c->name) ||
            !wire_rd_u16(r, FIELD("COPY_STATUS_REPLY.copies.state"), &c->state) ||
            !wire_rd_u16(r, FIELD("COPY_STATUS_REPLY.copies.role"), &c->role) ||
            !wire_rd_u16(r, FIELD("COPY_STATUS_REPLY.copies.mode"), &c->mode) ||
            !wire_rd_u16(r, FIELD("COPY_STATUS_REPLY.copies.compression"), &c->compression) ||
            !rd_str(r, FIELD("COPY_STATUS_REPLY.copies.message"), &c->message) ||
            !rd_str(r, FIELD("COPY_STATUS_REPLY.copies.network"), &c->network) ||
            !rd_str(r, FIELD("COPY_STATUS_REPLY.copies.endpoint"), &c->endpoint) ||
            !wire_rd_u32(r, FIELD("COPY_STATUS_REPLY.copies.inspection_failures"),
                         &c->inspection_failures))
            return false;
        for (size_t k = 0; k < TDM_IPC_COPY_N_FIGURES; k++)
            if (!wire_rd_u64(r, figures[k].field, copy_figure_at(c, &figures[k])))
                return false;
    }
    return wire_rd_u32(r, FIELD("COPY_STATUS_REPLY.total"), &s->total);
}

static int
copy_status_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_copy_status_reply *s = &m->u.copy_status_reply;
    if (s->n_copies > TDM_IPC_MAX_COPIES)
        return fail(error_r, TDM_EINVAL, FIELD("COPY_STATUS_REPLY.copies")->many);
    for (uint32_t i = 0; i < s->n_copies; i++) {
        const struct ipc_copy_status *c = &s->copies[i];
        int rc = check_str(&c->name, FIELD("COPY_STATUS_REPLY.copies.name"), 1, TDM_IPC_NAME_MAX,
                           error_r);
        if (rc == 0)
            rc = check_str(&c->message, FIELD("COPY_STATUS_REPLY.copies.message"), 0,
                           TDM_IPC_REASON_MAX, error_r);
        if (rc == 0)
            rc = check_str(&c->network, FIELD("COPY_STATUS_REPLY.copies.network"), 0,
                           TDM_IPC_NETWORK_MAX, error_r);
        if (rc == 0)
            rc = check_str(&c->endpoint, FIELD("COPY_STATUS_REPLY.copies.endpoint"), 0,
                           TDM_IPC_NETWORK_MAX, error_r);
        if (rc != 0)
            return rc;
        if (ipc_copy_state_name(c->state) == NULL)
            return fail(error_r, TDM_EINVAL, "COPY_STATUS_REPLY.copies.state: unknown state");
        if (c->role != 1 && c->role != 2)
            return fail(error_r, TDM_EINVAL, "COPY_STATUS_REPLY.copies.role: not 1 or 2");
        if (c->mode > 3)
            return fail(error_r, TDM_EINVAL, "COPY_STATUS_REPLY.copies.mode: above 3");
        if (c->compression > 1)
            return fail(error_r, TDM_EINVAL, "COPY_STATUS_REPLY.copies.compression: not 0 or 1");
        if (i > 0 && str_cmp(&s->copies[i - 1].name, &c->name) >= 0)
            return fail(error_r, TDM_EINVAL,
                        "COPY_STATUS_REPLY.copies.name: not in ascending order, or a duplicate");
    }
    if (s->total < s->n_copies)
        return fail(error_r, TDM_EINVAL, "COPY_STATUS_REPLY.total: fewer than the copies listed");
    if (s->total > s->n_copies && s->n_copies < TDM_IPC_MAX_COPIES)
        return fail(error_r, TDM_EINVAL,
                    "COPY_STATUS_REPLY.total: more than listed, but the list is not full");
    return 0;
}

/* ---- COPY_CONTROL ---- */

static void
copy_control_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_copy_control *c = &m->u.copy_control;
    wr_str(w, &c->database);
    wire_wr_u16(w, c->action);
    wr_str(w, &c->comment);
}

static bool
copy_control_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_copy_control *c = &m->u.copy_control;
    return rd_str(r, FIELD("COPY_CONTROL.database"), &c->database) &&
           wire_rd_u16(r, FIELD("COPY_CONTROL.action"), &c->action) &&
           rd_str(r, FIELD("COPY_CONTROL.comment"), &c->comment);
}

static int
copy_control_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_copy_control *c = &m->u.copy_control;
    int rc = check_str(&c->database, FIELD("COPY_CONTROL.database"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->comment, FIELD("COPY_CONTROL.comment"), 0, TDM_IPC_REASON_MAX,
                       error_r);
    if (rc != 0)
        return rc;
    if (c->action == TDM_IPC_DB_DISMOUNT || c->action == TDM_IPC_DB_MOUNT)
        return c->comment.len == 0 ? 0
                                   : fail(error_r, TDM_EINVAL,
                                          "COPY_CONTROL.comment: only a suspend has a comment");
    if (c->action != TDM_IPC_COPY_SUSPEND && c->action != TDM_IPC_COPY_RESUME &&
        c->action != TDM_IPC_COPY_ACTIVATE && c->action != TDM_IPC_COPY_ACTIVATE_FORCE &&
        c->action != TDM_IPC_COPY_REMOVE && c->action != TDM_IPC_COPY_RESEED &&
        c->action != TDM_IPC_COPY_RESEED_DELETE_EXISTING)
        return fail(error_r, TDM_EINVAL, "COPY_CONTROL.action: unknown action");
    if (c->action != TDM_IPC_COPY_SUSPEND && c->comment.len != 0)
        return fail(error_r, TDM_EINVAL, "COPY_CONTROL.comment: only a suspend has a comment");
    return 0;
}

/* ---- COPY_CONTROL_REPLY ---- */

static void
copy_control_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wire_wr_i32(w, m->u.copy_control_reply.status);
}

static bool
copy_control_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return wire_rd_i32(r, FIELD("COPY_CONTROL_REPLY.status"), &m->u.copy_control_reply.status);
}

static int
copy_control_reply_check(const struct ipc_msg *m, const char **error_r)
{
    if (m->u.copy_control_reply.status > 0)
        return fail(error_r, TDM_EINVAL, "COPY_CONTROL_REPLY.status: positive");
    return 0;
}

/* ---- CMS_MOVE, CMS_MOVE_REPLY ---- */

static void
cms_move_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_cms_move *c = &m->u.cms_move;
    wr_str(w, &c->cms);
    wr_str(w, &c->to);
    wr_str(w, &c->comment);
}

static bool
cms_move_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_cms_move *c = &m->u.cms_move;
    return rd_str(r, FIELD("CMS_MOVE.cms"), &c->cms) && rd_str(r, FIELD("CMS_MOVE.to"), &c->to) &&
           rd_str(r, FIELD("CMS_MOVE.comment"), &c->comment);
}

static int
cms_move_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_cms_move *c = &m->u.cms_move;
    int rc = check_str(&c->cms, FIELD("CMS_MOVE.cms"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->to, FIELD("CMS_MOVE.to"), 1, TDM_IPC_NAME_MAX, error_r);
    if (rc == 0)
        rc = check_str(&c->comment, FIELD("CMS_MOVE.comment"), 0, TDM_IPC_REASON_MAX, error_r);
    return rc;
}

static void
cms_move_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wire_wr_i32(w, m->u.cms_move_reply.status);
    wr_str(w, &m->u.cms_move_reply.error);
}

static bool
cms_move_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return wire_rd_i32(r, FIELD("CMS_MOVE_REPLY.status"), &m->u.cms_move_reply.status) &&
           rd_str(r, FIELD("CMS_MOVE_REPLY.error"), &m->u.cms_move_reply.error);
}

static int
cms_move_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_cms_move_reply *c = &m->u.cms_move_reply;
    if (c->status > 0)
        return fail(error_r, TDM_EINVAL, "CMS_MOVE_REPLY.status: positive");
    int rc = check_str(&c->error, FIELD("CMS_MOVE_REPLY.error"), 0, TDM_IPC_REASON_MAX, error_r);
    if (rc != 0)
        return rc;
    if ((c->status == 0) != (c->error.len == 0))
        return fail(error_r, TDM_EINVAL,
                    "CMS_MOVE_REPLY.error: must be empty exactly when status is 0");
    return 0;
}

/* ---- CMS_CONTROL, CMS_STATE, CMS_LISTEN ---- */

const char *
ipc_cms_state_name(uint16_t state)
{
    switch (state) {
    case TDM_IPC_CMS_DOWN:
        return "down";
    case TDM_IPC_CMS_UP:
        return "up";
    case TDM_IPC_CMS_BINDING:
        return "binding";
    }
    return NULL;
}

static void
cms_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wr_str(w, &m->u.cms.cms);
    wire_wr_u16(w, m->u.cms.proto);
    wire_wr_u16(w, m->u.cms.state);
}

/* The three share a layout; their field and error names say which one it was. */
#define CMS_CODEC(lower, NAME)                                                                     \
    static bool lower##_decode(struct wire_rd *r, struct ipc_msg *m)                               \
    {                                                                                              \
        return rd_str(r, FIELD(NAME ".cms"), &m->u.cms.cms) &&                                     \
               wire_rd_u16(r, FIELD(NAME ".proto"), &m->u.cms.proto) &&                            \
               wire_rd_u16(r, FIELD(NAME ".state"), &m->u.cms.state);                              \
    }                                                                                              \
    static int lower##_check(const struct ipc_msg *m, const char **error_r)                        \
    {                                                                                              \
        static const char *const errors[] = {NAME ".state: unknown state",                         \
                                             NAME ".state: binding is only a CMS_STATE",           \
                                             NAME ".proto: not 0", NAME ".proto: out of range"};   \
        int rc = check_str(&m->u.cms.cms, FIELD(NAME ".cms"), 1, TDM_IPC_NAME_MAX, error_r);       \
        if (rc != 0)                                                                               \
            return rc;                                                                             \
        int e = cms_rule(m);                                                                       \
        return e < 0 ? 0 : fail(error_r, TDM_EINVAL, errors[e]);                                  \
    }

/* Which rule of ipc.h m breaks: an index into CMS_CODEC's errors, or -1. */
static int
cms_rule(const struct ipc_msg *m)
{
    const struct ipc_cms *c = &m->u.cms;
    if (ipc_cms_state_name(c->state) == NULL)
        return 0;
    if (m->type == TDM_IPC_CMS_STATE)
        return c->proto == 0 ? -1 : 2;
    if (c->state == TDM_IPC_CMS_BINDING)
        return 1;
    /* Only CMS_LISTEN UP names a protocol: the socket that follows serves it. */
    if (m->type == TDM_IPC_CMS_LISTEN && c->state == TDM_IPC_CMS_UP)
        return c->proto < TDM_IPC_PROTO_MAX ? -1 : 3;
    return c->proto == 0 ? -1 : 2;
}

CMS_CODEC(cms_control, "CMS_CONTROL")
CMS_CODEC(cms_state, "CMS_STATE")
CMS_CODEC(cms_listen, "CMS_LISTEN")
#define cms_control_encode cms_encode
#define cms_state_encode cms_encode
#define cms_listen_encode cms_encode

#define cms_status_request_encode status_request_encode
#define cms_status_request_decode status_request_decode
#define cms_status_request_check status_request_check

static void
cms_status_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_cms_status_reply *s = &m->u.cms_status_reply;
    wire_wr_list(w, s->n_cms);
    for (uint32_t i = 0; i < s->n_cms; i++) {
        wr_str(w, &s->cms[i].name);
        wire_wr_u16(w, s->cms[i].state);
    }
}

static bool
cms_status_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_cms_status_reply *s = &m->u.cms_status_reply;
    if (!wire_rd_list(r, FIELD("CMS_STATUS_REPLY.cms"), TDM_IPC_MAX_CMS, &s->n_cms))
        return false;
    for (uint32_t i = 0; i < s->n_cms; i++)
        if (!rd_str(r, FIELD("CMS_STATUS_REPLY.cms.name"), &s->cms[i].name) ||
            !wire_rd_u16(r, FIELD("CMS_STATUS_REPLY.cms.state"), &s->cms[i].state))
            return false;
    return true;
}

static int
cms_status_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_cms_status_reply *s = &m->u.cms_status_reply;
    if (s->n_cms > TDM_IPC_MAX_CMS)
        return fail(error_r, TDM_EINVAL, FIELD("CMS_STATUS_REPLY.cms")->many);
    for (uint32_t i = 0; i < s->n_cms; i++) {
        int rc = check_str(&s->cms[i].name, FIELD("CMS_STATUS_REPLY.cms.name"), 1,
                           TDM_IPC_NAME_MAX, error_r);
        if (rc != 0)
            return rc;
        if (ipc_cms_state_name(s->cms[i].state) == NULL)
            return fail(error_r, TDM_EINVAL, "CMS_STATUS_REPLY.cms.state: unknown state");
        if (i > 0 && str_cmp(&s->cms[i - 1].name, &s->cms[i].name) >= 0)
            return fail(error_r, TDM_EINVAL,
                        "CMS_STATUS_REPLY.cms.name: not in ascending order, or a duplicate");
    }
    return 0;
}

/* ---- DB_DISMOUNTED ---- */

static void
db_dismounted_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    const struct ipc_db_dismounted *d = &m->u.db_dismounted;
    wire_wr_list(w, d->n_databases);
    for (uint32_t i = 0; i < d->n_databases; i++)
        wr_str(w, &d->databases[i]);
}

static bool
db_dismounted_decode(struct wire_rd *r, struct ipc_msg *m)
{
    struct ipc_db_dismounted *d = &m->u.db_dismounted;
    if (!wire_rd_list(r, FIELD("DB_DISMOUNTED.databases"), TDM_IPC_MAX_DATABASES,
                      &d->n_databases))
        return false;
    for (uint32_t i = 0; i < d->n_databases; i++)
        if (!rd_str(r, FIELD("DB_DISMOUNTED.databases.name"), &d->databases[i]))
            return false;
    return true;
}

static int
db_dismounted_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_db_dismounted *d = &m->u.db_dismounted;
    if (d->n_databases > TDM_IPC_MAX_DATABASES)
        return fail(error_r, TDM_EINVAL, FIELD("DB_DISMOUNTED.databases")->many);
    for (uint32_t i = 0; i < d->n_databases; i++) {
        int rc = check_str(&d->databases[i], FIELD("DB_DISMOUNTED.databases.name"), 1,
                           TDM_IPC_NAME_MAX, error_r);
        if (rc != 0)
            return rc;
        /* Strictly ascending: one encoding, and no name twice. */
        if (i > 0 && str_cmp(&d->databases[i - 1], &d->databases[i]) >= 0)
            return fail(error_r, TDM_EINVAL,
                        "DB_DISMOUNTED.databases.name: not in ascending order, or a duplicate");
    }
    return 0;
}

/* ---- The type table ---- */

struct msg_type {
    uint16_t type;
    const char *name;
    bool has_request_id;
    const char *trailing; /* error for bytes after the last field */
    void (*encode)(struct wire_wr *w, const struct ipc_msg *m);
    bool (*decode)(struct wire_rd *r, struct ipc_msg *m);
    int (*check)(const struct ipc_msg *m, const char **error_r);
};

#define MSG_TYPE(t, n, id, lower)                                                                  \
    {                                                                                              \
        t, n, id, n ": trailing bytes after the last field", lower##_encode, lower##_decode,       \
            lower##_check                                                                          \
    }

#define cluster_status_request_encode status_request_encode
#define cluster_status_request_decode status_request_decode
#define cluster_status_request_check status_request_check

static void
cluster_status_reply_encode(struct wire_wr *w, const struct ipc_msg *m)
{
    wr_str(w, &m->u.cluster_status_reply.json);
}

static bool
cluster_status_reply_decode(struct wire_rd *r, struct ipc_msg *m)
{
    return rd_str(r, FIELD("CLUSTER_STATUS_REPLY.json"), &m->u.cluster_status_reply.json);
}

/* The JSON itself is the core's and the admin worker's business: here only its bounds, and
 * that it is an object's text at a glance (the reader parses it). */
static int
cluster_status_reply_check(const struct ipc_msg *m, const char **error_r)
{
    const struct ipc_str *j = &m->u.cluster_status_reply.json;
    int rc = check_str(j, FIELD("CLUSTER_STATUS_REPLY.json"), 2, TDM_IPC_CLUSTER_JSON_MAX,
                       error_r);
    if (rc != 0)
        return rc;
    if (j->ptr[0] != '{' || j->ptr[j->len - 1] != '}')
        return fail(error_r, TDM_EINVAL, "CLUSTER_STATUS_REPLY.json: not a JSON object");
    return 0;
}

static const struct msg_type msg_types[] = {
    MSG_TYPE(TDM_IPC_HELLO, "HELLO", true, hello),
    MSG_TYPE(TDM_IPC_HELLO_REPLY, "HELLO_REPLY", true, hello_reply),
    MSG_TYPE(TDM_IPC_COMMIT, "COMMIT", true, commit),
    MSG_TYPE(TDM_IPC_COMMIT_REPLY, "COMMIT_REPLY", true, commit_reply),
    MSG_TYPE(TDM_IPC_SUBSCRIBE, "SUBSCRIBE", false, subscribe),
    {TDM_IPC_UNSUBSCRIBE, "UNSUBSCRIBE", false, "UNSUBSCRIBE: trailing bytes after the last field",
     subscribe_encode, unsubscribe_decode, unsubscribe_check},
    MSG_TYPE(TDM_IPC_CHANGED, "CHANGED", false, changed),
    MSG_TYPE(TDM_IPC_FOLDER_CHANGED, "FOLDER_CHANGED", false, folder_changed),
    MSG_TYPE(TDM_IPC_DB_DISMOUNTED, "DB_DISMOUNTED", false, db_dismounted),
    MSG_TYPE(TDM_IPC_SHUTDOWN, "SHUTDOWN", false, shutdown),
    MSG_TYPE(TDM_IPC_RELOAD, "RELOAD", false, reload),
    MSG_TYPE(TDM_IPC_STATUS_REQUEST, "STATUS_REQUEST", true, status_request),
    MSG_TYPE(TDM_IPC_STATUS_REPLY, "STATUS_REPLY", true, status_reply),
    MSG_TYPE(TDM_IPC_DB_STATUS_REQUEST, "DB_STATUS_REQUEST", true, db_status_request),
    MSG_TYPE(TDM_IPC_DB_STATUS_REPLY, "DB_STATUS_REPLY", true, db_status_reply),
    MSG_TYPE(TDM_IPC_COPY_STATUS_REQUEST, "COPY_STATUS_REQUEST", true, copy_status_request),
    MSG_TYPE(TDM_IPC_COPY_STATUS_REPLY, "COPY_STATUS_REPLY", true, copy_status_reply),
    MSG_TYPE(TDM_IPC_COPY_CONTROL, "COPY_CONTROL", true, copy_control),
    MSG_TYPE(TDM_IPC_COPY_CONTROL_REPLY, "COPY_CONTROL_REPLY", true, copy_control_reply),
    MSG_TYPE(TDM_IPC_CMS_CONTROL, "CMS_CONTROL", false, cms_control),
    MSG_TYPE(TDM_IPC_CMS_STATE, "CMS_STATE", false, cms_state),
    MSG_TYPE(TDM_IPC_CMS_LISTEN, "CMS_LISTEN", false, cms_listen),
    MSG_TYPE(TDM_IPC_CMS_STATUS_REQUEST, "CMS_STATUS_REQUEST", true, cms_status_request),
    MSG_TYPE(TDM_IPC_CMS_STATUS_REPLY, "CMS_STATUS_REPLY", true, cms_status_reply),
    MSG_TYPE(TDM_IPC_CLUSTER_STATUS_REQUEST, "CLUSTER_STATUS_REQUEST", true,
             cluster_status_request),
    MSG_TYPE(TDM_IPC_CLUSTER_STATUS_REPLY, "CLUSTER_STATUS_REPLY", true, cluster_status_reply),
    MSG_TYPE(TDM_IPC_CMS_MOVE, "CMS_MOVE", true, cms_move),
    MSG_TYPE(TDM_IPC_CMS_MOVE_REPLY, "CMS_MOVE_REPLY", true, cms_move_reply),
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
ipc_type_name(uint16_t type)
{
    const struct msg_type *t = msg_type_of(type);
    return t ? t->name : NULL;
}

bool
ipc_type_has_request_id(uint16_t type)
{
    const struct msg_type *t = msg_type_of(type);
    return t && t->has_request_id;
}

const char *
ipc_copy_state_name(uint16_t state)
{
    static const char *const names[] = {
        [TDM_IPC_COPY_INITIALIZING] = "Initializing",
        [TDM_IPC_COPY_HEALTHY] = "Healthy",
        [TDM_IPC_COPY_DISCONNECTED] = "Disconnected",
        [TDM_IPC_COPY_SERVICE_DOWN] = "ServiceDown",
        [TDM_IPC_COPY_RESYNCHRONIZING] = "Resynchronizing",
        [TDM_IPC_COPY_FAILED] = "Failed",
        [TDM_IPC_COPY_SUSPENDED] = "Suspended",
        [TDM_IPC_COPY_SEEDING] = "Seeding",
    };
    return state < sizeof(names) / sizeof(names[0]) ? names[state] : NULL;
}

const char *
ipc_db_state_name(uint16_t state)
{
    switch (state) {
    case TDM_IPC_DB_MOUNTED:
        return "mounted";
    case TDM_IPC_DB_FAILED:
        return "failed";
    case TDM_IPC_DB_DISK_RESERVE:
        return "disk-reserve";
    default:
        return NULL;
    }
}

const char *
ipc_worker_kind_name(uint16_t kind)
{
    switch (kind) {
    case TDM_IPC_WORKER_IMAP:
        return "imap";
    case TDM_IPC_WORKER_LMTP:
        return "lmtp";
    case TDM_IPC_WORKER_SMTP:
        return "smtp";
    case TDM_IPC_WORKER_HTTP:
        return "http";
    case TDM_IPC_WORKER_ADMIN:
        return "admin";
    default:
        return NULL;
    }
}

struct ipc_str
ipc_str_c(const char *s)
{
    size_t n = strlen(s);
    /* A string this long breaks every limit; saturating makes the check say so. */
    return (struct ipc_str){s, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n};
}

int
ipc_version_negotiate(uint16_t peer_min, uint16_t peer_max, uint16_t *version_r,
                      const char **error_r)
{
    if (peer_min == 0 || peer_max < peer_min)
        return fail(error_r, TDM_EINVAL, "the peer's version range is empty or starts at 0");
    if (peer_max < TDM_IPC_VERSION_MIN)
        return fail(error_r, TDM_EINVAL,
                    "the peer speaks only versions older than this build's oldest");
    if (peer_min > TDM_IPC_VERSION)
        return fail(error_r, TDM_EINVAL,
                    "the peer speaks only versions newer than this build's newest");
    *version_r = peer_max < TDM_IPC_VERSION ? peer_max : (uint16_t)TDM_IPC_VERSION;
    return 0;
}

/* ---- Frames ---- */

/* The request id rule of ipc.h; NULL when id is fine for t. */
static const char *
request_id_error(const struct msg_type *t, uint32_t id)
{
    if (t->has_request_id && id == 0)
        return "request id zero on a request or reply";
    if (!t->has_request_id && id != 0)
        return "request id not zero on a one-way message";
    return NULL;
}

/* ipc_frame_decode with a lower length limit, for readers that accept less. */
static int
frame_decode(const uint8_t *buf, size_t len, size_t max_frame, struct ipc_frame *frame_r,
             const char **error_r)
{
    const char *over_max = max_frame == TDM_IPC_MAX_FRAME ? "frame length over TDM_IPC_MAX_FRAME"
                                                          : "frame length over the reader's limit";
    struct wire_frame f;
    int rc = wire_frame_open(buf, len, (uint32_t)max_frame, over_max, &f, error_r);
    if (rc != 0)
        return rc;
    const struct msg_type *t = msg_type_of(f.type);
    if (t == NULL)
        return fail(error_r, TDM_ECORRUPT, "unknown message type");
    if (f.type == TDM_IPC_HELLO || f.type == TDM_IPC_HELLO_REPLY) {
        if (f.version != TDM_IPC_HELLO_VERSION)
            return fail(error_r, TDM_ECORRUPT,
                        "HELLO and HELLO_REPLY frames must carry protocol version 1");
    } else if (f.version < TDM_IPC_VERSION_MIN || f.version > TDM_IPC_VERSION) {
        return fail(error_r, TDM_ECORRUPT, "unsupported protocol version");
    }
    const char *id_error = request_id_error(t, f.request_id);
    if (id_error)
        return fail(error_r, TDM_ECORRUPT, id_error);

    *frame_r = (struct ipc_frame){
        .length = f.length,
        .version = f.version,
        .type = f.type,
        .request_id = f.request_id,
        .flags = 0,
        .payload = f.payload,
        .payload_len = f.payload_len,
    };
    return 0;
}

int
ipc_frame_decode(const uint8_t *buf, size_t len, struct ipc_frame *frame_r, const char **error_r)
{
    return frame_decode(buf, len, TDM_IPC_MAX_FRAME, frame_r, error_r);
}

int
ipc_msg_decode_frame(const struct ipc_frame *frame, struct ipc_msg *msg_r, const char **error_r)
{
    const struct msg_type *t = msg_type_of(frame->type);
    if (t == NULL)
        return fail(error_r, TDM_ECORRUPT, "unknown message type");
    memset(msg_r, 0, sizeof(*msg_r));
    msg_r->type = frame->type;
    msg_r->request_id = frame->request_id;
    struct wire_rd r = {frame->payload, frame->payload_len, NULL};
    if (!t->decode(&r, msg_r))
        return fail(error_r, TDM_ECORRUPT, r.error);
    if (r.left != 0)
        return fail(error_r, TDM_ECORRUPT, t->trailing);
    const char *error = NULL;
    if (t->check(msg_r, &error) != 0)
        return fail(error_r, TDM_ECORRUPT, error);
    return 0;
}

int
ipc_msg_decode(const uint8_t *buf, size_t len, struct ipc_msg *msg_r, size_t *frame_len_r,
               const char **error_r)
{
    struct ipc_frame frame;
    int rc = ipc_frame_decode(buf, len, &frame, error_r);
    if (rc == 0)
        rc = ipc_msg_decode_frame(&frame, msg_r, error_r);
    if (rc == 0 && frame_len_r)
        *frame_len_r = frame.length;
    return rc;
}

int
ipc_msg_check(const struct ipc_msg *msg, const char **error_r)
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
ipc_msg_size(const struct ipc_msg *msg, size_t *size_r, const char **error_r)
{
    int rc = ipc_msg_check(msg, error_r);
    if (rc != 0)
        return rc;
    struct wire_wr w = {NULL, 0};
    msg_type_of(msg->type)->encode(&w, msg);
    /* The limits above keep every message far below this; checked so a future field that
     * forgets its limit fails here rather than on the wire. */
    if (w.n > TDM_IPC_MAX_PAYLOAD)
        return fail(error_r, TDM_EINVAL, "message payload over TDM_IPC_MAX_PAYLOAD");
    *size_r = w.n + TDM_IPC_FRAME_OVERHEAD;
    return 0;
}

int
ipc_msg_encode(const struct ipc_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
               const char **error_r)
{
    size_t size;
    int rc = ipc_msg_size(msg, &size, error_r);
    if (rc != 0)
        return rc;
    if (cap < size)
        return fail(error_r, -ENOBUFS, "output buffer smaller than the frame");

    /* Until a second version exists every frame carries the one this build speaks; after
     * that, the negotiated version becomes a parameter. */
    uint16_t version = msg->type == TDM_IPC_HELLO || msg->type == TDM_IPC_HELLO_REPLY
                           ? (uint16_t)TDM_IPC_HELLO_VERSION
                           : (uint16_t)TDM_IPC_VERSION;
    wire_frame_put_header(out, (uint32_t)size, version, msg->type, msg->request_id);
    struct wire_wr w = {out + TDM_IPC_HEADER_SIZE, 0};
    msg_type_of(msg->type)->encode(&w, msg);
    wire_frame_seal(out, TDM_IPC_HEADER_SIZE + w.n);
    *len_r = size;
    return 0;
}

int
ipc_msg_encode_alloc(const struct ipc_msg *msg, uint8_t **out_r, size_t *len_r,
                     const char **error_r)
{
    size_t size;
    int rc = ipc_msg_size(msg, &size, error_r);
    if (rc != 0)
        return rc;
    uint8_t *out = malloc(size);
    if (out == NULL)
        return fail(error_r, -ENOMEM, "out of memory for an IPC frame");
    rc = ipc_msg_encode(msg, out, size, len_r, error_r);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *out_r = out;
    return 0;
}

/* ---- Streaming reader ---- */

/* Kept between frames; a buffer grown past this for one large frame is shrunk back after it,
 * so an idle connection holds little. */
#define READER_KEEP_CAP 4096u

struct ipc_reader {
    size_t max_frame;
    uint8_t *buf;
    size_t cap;
    size_t have;       /* bytes of the current frame in buf */
    bool handed_out;   /* buf holds the frame the previous call returned: drop it first */
    const char *error; /* set once poisoned */
};

int
ipc_reader_new(size_t max_frame, struct ipc_reader **reader_r)
{
    if (max_frame == 0)
        max_frame = TDM_IPC_MAX_FRAME;
    if (max_frame < TDM_IPC_FRAME_OVERHEAD || max_frame > TDM_IPC_MAX_FRAME)
        return TDM_EINVAL;
    struct ipc_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->cap = max_frame < READER_KEEP_CAP ? max_frame : READER_KEEP_CAP;
    r->buf = malloc(r->cap);
    if (r->buf == NULL) {
        free(r);
        return -ENOMEM;
    }
    r->max_frame = max_frame;
    *reader_r = r;
    return 0;
}

void
ipc_reader_free(struct ipc_reader **reader)
{
    if (*reader == NULL)
        return;
    free((*reader)->buf);
    free(*reader);
    *reader = NULL;
}

static int
reader_poison(struct ipc_reader *r, const char *error, const char **error_r)
{
    r->error = error;
    r->have = 0;
    return fail(error_r, TDM_ECORRUPT, error);
}

/* Makes room for want bytes (<= the frame's length), doubling so a frame arriving in small
 * chunks costs few reallocs, but never past the frame's length. */
static int
reader_reserve(struct ipc_reader *r, size_t want, size_t frame_len)
{
    if (want <= r->cap)
        return 0;
    size_t cap = r->cap * 2 > want ? r->cap * 2 : want;
    if (cap > frame_len)
        cap = frame_len;
    uint8_t *buf = realloc(r->buf, cap);
    if (buf == NULL)
        return -ENOMEM;
    r->buf = buf;
    r->cap = cap;
    return 0;
}

int
ipc_reader_next(struct ipc_reader *r, const uint8_t **data, size_t *len, struct ipc_frame *frame_r,
                const char **error_r)
{
    if (r->error)
        return fail(error_r, TDM_ECORRUPT, r->error);
    if (r->handed_out) {
        r->handed_out = false;
        r->have = 0;
        if (r->cap > READER_KEEP_CAP) {
            /* Shrinking cannot lose data (nothing is held); if realloc refuses, keep the big
             * buffer rather than fail. */
            uint8_t *buf = realloc(r->buf, READER_KEEP_CAP);
            if (buf) {
                r->buf = buf;
                r->cap = READER_KEEP_CAP;
            }
        }
    }

    if (*len == 0)
        return 0;

    const char *error = NULL;
    if (r->have == 0) {
        /* Zero copy: a frame lying whole in the caller's chunk is returned in place. */
        int rc = frame_decode(*data, *len, r->max_frame, frame_r, &error);
        if (rc == 0) {
            *data += frame_r->length;
            *len -= frame_r->length;
            return 1;
        }
        if (rc != TDM_ENEEDMORE)
            return reader_poison(r, error, error_r);
    }

    /* Assemble the frame in buf: first its length field, then exactly the rest of it, so the
     * reader never takes bytes of the next frame. */
    if (r->have < 4) {
        size_t n = 4 - r->have < *len ? 4 - r->have : *len;
        memcpy(r->buf + r->have, *data, n);
        r->have += n;
        *data += n;
        *len -= n;
        if (r->have < 4)
            return 0;
    }
    uint32_t flen = wire_get32(r->buf);
    int rc = frame_decode(r->buf, r->have, r->max_frame, frame_r, &error);
    if (rc == TDM_ECORRUPT)
        return reader_poison(r, error, error_r);
    if (rc == TDM_ENEEDMORE) {
        size_t n = flen - r->have < *len ? flen - r->have : *len;
        rc = reader_reserve(r, r->have + n, flen);
        if (rc != 0)
            return fail(error_r, rc, "out of memory for an IPC frame");
        memcpy(r->buf + r->have, *data, n);
        r->have += n;
        *data += n;
        *len -= n;
        if (r->have < flen)
            return 0;
        rc = frame_decode(r->buf, r->have, r->max_frame, frame_r, &error);
        if (rc != 0)
            return reader_poison(r, error, error_r);
    }
    r->handed_out = true;
    return 1;
}

size_t
ipc_reader_buffered(const struct ipc_reader *reader)
{
    return reader->handed_out ? 0 : reader->have;
}

size_t
ipc_reader_capacity(const struct ipc_reader *reader)
{
    return reader->cap;
}
