/*
 * Payload layouts of the directory's log records (enum tdm_record_type 64..95). These bytes
 * are written to the log, shipped to every copy and replayed after a crash, so they are an
 * on-disk and on-wire format: any change needs a new DIR__CODEC_VERSION.
 * docs/formats/directory.md says the same for operators.
 *
 * All integers are little-endian and unaligned. Every payload starts with one byte, the
 * format version (1). The building blocks are:
 *
 *   str    u16 length n (bytes, without the NUL), n bytes, one 0x00 byte. The n bytes hold no
 *          NUL, so the decoder hands out pointers into the payload as C strings.
 *   name   a str of 1..DIR_NAME_MAX bytes without control characters (bytes < 0x20, 0x7f).
 *   kind   u8, enum dir_kind (1..10).
 *   pri    kind (USER 8, SERVER 3 or GROUP 9), name.
 *
 * After the version byte, per record type:
 *
 *   DIR_BOOTSTRAP       nothing
 *   DIR_PUT             kind, name, u64 expected version, str attrs: the canonical JSON text
 *                       of the attributes (compact, keys sorted, as dir_attrs_check() writes
 *                       it; at most DIR_ATTRS_MAX bytes), valid for the kind's schema
 *   DIR_DELETE          kind, name, u64 expected version
 *   DIR_ACL_SET         kind, name, u64 expected version, u16 count (0..DIR_MAX_ACL), per
 *                       entry: pri, u8 right
 *                       (1 read, 2 write, 3 full-control); entries strictly ascending by
 *                       (principal kind, principal name bytes)
 *   DIR_PASSWORD_SET    kind (USER or SERVER: a server's key is its password), name, str
 *                       hash: "$argon2id$..." as crypto_pwhash_str() writes it,
 *                       1..DIR_PASSWORD_HASH_MAX-1 printable ASCII bytes
 *   DIR_GROUP_MEMBERS   name (group), u64 expected version, u32 count (0..DIR_MAX_MEMBERS),
 *                       per member: pri (USER
 *                       or SERVER), strictly ascending like ACL entries
 *
 * The payload must end exactly after the last field. The layout is canonical (no padding, no
 * optional fields, sorted sets, canonical JSON), so decoding and re-encoding gives back the
 * same bytes; fuzz/directory_record.c checks that.
 */
#include "directory/dir_int.h"

#include "lib/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool
dir_is_dir_record(uint16_t type)
{
    return type >= TDM_REC_DIR_BOOTSTRAP && type <= TDM_REC_DIR_GROUP_MEMBERS;
}

/* ---- Building blocks ---- */

static bool
rd_need(struct dir__rd *r, size_t n, const char *what)
{
    if (r->bad)
        return false;
    if (r->len - r->off < n) {
        r->bad = what;
        return false;
    }
    return true;
}

uint8_t
dir__rd_u8(struct dir__rd *r, const char *what)
{
    if (!rd_need(r, 1, what))
        return 0;
    return r->p[r->off++];
}

uint16_t
dir__rd_u16(struct dir__rd *r, const char *what)
{
    if (!rd_need(r, 2, what))
        return 0;
    uint16_t v = (uint16_t)(r->p[r->off] | r->p[r->off + 1] << 8);
    r->off += 2;
    return v;
}

static uint32_t
rd_u32(struct dir__rd *r, const char *what)
{
    if (!rd_need(r, 4, what))
        return 0;
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | r->p[r->off + (size_t)i];
    r->off += 4;
    return v;
}

uint64_t
dir__rd_u64(struct dir__rd *r, const char *what)
{
    if (!rd_need(r, 8, what))
        return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | r->p[r->off + (size_t)i];
    r->off += 8;
    return v;
}

const char *
dir__rd_str(struct dir__rd *r, size_t max, const char *what)
{
    size_t n = dir__rd_u16(r, what);
    if (!rd_need(r, n + 1, what))
        return NULL;
    const char *s = (const char *)r->p + r->off;
    if (n > max || s[n] != '\0' || memchr(s, '\0', n) != NULL) {
        r->bad = what;
        return NULL;
    }
    r->off += n + 1;
    return s;
}

static void
wr_reserve(struct dir__wr *w, size_t n)
{
    if (w->nomem || w->cap - w->len >= n)
        return;
    size_t cap = w->cap ? w->cap : 64;
    while (cap - w->len < n)
        cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) {
        w->nomem = true;
        return;
    }
    w->buf = b;
    w->cap = cap;
}

static void
wr_le(struct dir__wr *w, uint64_t v, size_t n)
{
    wr_reserve(w, n);
    if (w->nomem)
        return;
    for (size_t i = 0; i < n; i++)
        w->buf[w->len++] = (uint8_t)(v >> (8 * i));
}

void
dir__wr_u8(struct dir__wr *w, uint8_t v)
{
    wr_le(w, v, 1);
}

void
dir__wr_u16(struct dir__wr *w, uint16_t v)
{
    wr_le(w, v, 2);
}

void
dir__wr_u64(struct dir__wr *w, uint64_t v)
{
    wr_le(w, v, 8);
}

/* Callers have checked that s fits in a u16 length. */
void
dir__wr_str(struct dir__wr *w, const char *s)
{
    size_t n = strlen(s);
    dir__wr_u16(w, (uint16_t)n);
    wr_reserve(w, n + 1);
    if (w->nomem)
        return;
    memcpy(w->buf + w->len, s, n + 1);
    w->len += n + 1;
}

/* ---- Shared checks ---- */

int
dir__check_name(const char *name, const char *what, const char **error_r)
{
    size_t n = name ? strlen(name) : 0;
    bool ok = n >= 1 && n <= DIR_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)name[i] >= 0x20 && name[i] != 0x7f;
    if (!ok) {
        *error_r = what;
        return TDM_EINVAL;
    }
    return 0;
}

bool
dir__principal_kind_ok(enum dir_kind kind)
{
    return kind == DIR_KIND_USER || kind == DIR_KIND_SERVER || kind == DIR_KIND_GROUP;
}

int
dir__principal_cmp(const void *a, const void *b)
{
    const struct dir_principal *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return strcmp(x->name, y->name);
}

int
dir__acl_cmp(const void *a, const void *b)
{
    const struct dir_acl_entry *x = a, *y = b;
    return dir__principal_cmp(&x->who, &y->who);
}

static bool
hash_ok(const char *h)
{
    size_t n = h ? strlen(h) : 0;
    if (n < 10 || n >= DIR_PASSWORD_HASH_MAX || strncmp(h, "$argon2id$", 10) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (h[i] <= 0x20 || h[i] >= 0x7f)
            return false;
    return true;
}

/* ---- Encoding ---- */

static int
encode_body(const struct dir_op *op, struct dir__wr *w, const char **error_r)
{
    int ret = 0;
    dir__wr_u8(w, DIR__CODEC_VERSION);
    switch (op->type) {
    case TDM_REC_DIR_BOOTSTRAP:
        return 0;
    case TDM_REC_DIR_PUT:
    case TDM_REC_DIR_DELETE:
    case TDM_REC_DIR_ACL_SET:
        if (op->kind < 1 || op->kind > DIR_KIND_MAX) {
            *error_r = "kind: unknown";
            return TDM_EINVAL;
        }
        if ((ret = dir__check_name(op->name, "name: 1..255 bytes, no control characters",
                                   error_r)) < 0)
            return ret;
        dir__wr_u8(w, (uint8_t)op->kind);
        dir__wr_str(w, op->name);
        break;
    case TDM_REC_DIR_PASSWORD_SET: {
        enum dir_kind kind = op->kind ? op->kind : DIR_KIND_USER;
        if (kind != DIR_KIND_USER && kind != DIR_KIND_SERVER) {
            *error_r = "kind: only users and servers have passwords";
            return TDM_EINVAL;
        }
        if ((ret = dir__check_name(op->name, "name: 1..255 bytes, no control characters",
                                   error_r)) < 0)
            return ret;
        dir__wr_u8(w, (uint8_t)kind);
        dir__wr_str(w, op->name);
        break;
    }
    case TDM_REC_DIR_GROUP_MEMBERS:
        if ((ret = dir__check_name(op->name, "name: 1..255 bytes, no control characters",
                                   error_r)) < 0)
            return ret;
        dir__wr_str(w, op->name);
        break;
    default:
        *error_r = "type: not a directory record";
        return TDM_EINVAL;
    }
    if (op->type == TDM_REC_DIR_PUT) {
        char *canon = NULL;
        if ((ret = dir_attrs_check(op->kind, op->attrs ? op->attrs : "{}", &canon, error_r)) < 0)
            return ret;
        dir__wr_u64(w, op->expected_version);
        dir__wr_str(w, canon);
        free(canon);
    } else if (op->type == TDM_REC_DIR_DELETE) {
        dir__wr_u64(w, op->expected_version);
    } else if (op->type == TDM_REC_DIR_ACL_SET) {
        /* 0 would read as "must not exist", which an ACL change can never mean: a caller that
         * left it unset must say what it wants. */
        if (op->expected_version == 0) {
            *error_r = "expected_version: the version read, or DIR_VERSION_ANY";
            return TDM_EINVAL;
        }
        dir__wr_u64(w, op->expected_version);
        if (op->n_acl > DIR_MAX_ACL) {
            *error_r = "acl: more than DIR_MAX_ACL entries";
            return TDM_ELIMIT;
        }
        struct dir_acl_entry *sorted = calloc(op->n_acl ? op->n_acl : 1, sizeof(*sorted));
        if (!sorted)
            return -ENOMEM;
        if (op->n_acl)
            memcpy(sorted, op->acl, op->n_acl * sizeof(*sorted));
        qsort(sorted, op->n_acl, sizeof(*sorted), dir__acl_cmp);
        dir__wr_u16(w, (uint16_t)op->n_acl);
        for (size_t i = 0; i < op->n_acl && ret == 0; i++) {
            const struct dir_acl_entry *e = &sorted[i];
            if (!dir__principal_kind_ok(e->who.kind) || e->right < DIR_RIGHT_READ ||
                e->right > DIR_RIGHT_FULL) {
                *error_r = "acl: principal must be a user, server or group; right read, write "
                           "or full-control";
                ret = TDM_EINVAL;
            } else if ((ret = dir__check_name(e->who.name, "acl: bad principal name", error_r)) ==
                           0 &&
                       i > 0 && dir__acl_cmp(&sorted[i - 1], e) == 0) {
                *error_r = "acl: a principal appears twice";
                ret = TDM_EINVAL;
            }
            dir__wr_u8(w, (uint8_t)e->who.kind);
            if (ret == 0)
                dir__wr_str(w, e->who.name);
            dir__wr_u8(w, (uint8_t)e->right);
        }
        free(sorted);
        return ret;
    } else if (op->type == TDM_REC_DIR_PASSWORD_SET) {
        if (!hash_ok(op->password_hash)) {
            *error_r = "password_hash: not an argon2id hash string (use dir_password_hash)";
            return TDM_EINVAL;
        }
        dir__wr_str(w, op->password_hash);
    } else if (op->type == TDM_REC_DIR_GROUP_MEMBERS) {
        if (op->expected_version == 0) {
            *error_r = "expected_version: the version read, or DIR_VERSION_ANY";
            return TDM_EINVAL;
        }
        dir__wr_u64(w, op->expected_version);
        if (op->n_members > DIR_MAX_MEMBERS) {
            *error_r = "members: more than DIR_MAX_MEMBERS";
            return TDM_ELIMIT;
        }
        struct dir_principal *sorted = calloc(op->n_members ? op->n_members : 1, sizeof(*sorted));
        if (!sorted)
            return -ENOMEM;
        if (op->n_members)
            memcpy(sorted, op->members, op->n_members * sizeof(*sorted));
        qsort(sorted, op->n_members, sizeof(*sorted), dir__principal_cmp);
        wr_le(w, op->n_members, 4);
        for (size_t i = 0; i < op->n_members && ret == 0; i++) {
            if (sorted[i].kind != DIR_KIND_USER && sorted[i].kind != DIR_KIND_SERVER) {
                *error_r = "members: only users and servers can be members";
                ret = TDM_EINVAL;
            } else if ((ret = dir__check_name(sorted[i].name, "members: bad name", error_r)) == 0 &&
                       i > 0 && dir__principal_cmp(&sorted[i - 1], &sorted[i]) == 0) {
                *error_r = "members: a member appears twice";
                ret = TDM_EINVAL;
            }
            dir__wr_u8(w, (uint8_t)sorted[i].kind);
            if (ret == 0)
                dir__wr_str(w, sorted[i].name);
        }
        free(sorted);
        return ret;
    }
    return 0;
}

int
dir_op_encode(const struct dir_op *op, uint8_t **payload_r, size_t *len_r, const char **error_r)
{
    struct dir__wr w = {0};
    *error_r = NULL;
    int ret = encode_body(op, &w, error_r);
    if (ret == 0 && w.nomem)
        ret = -ENOMEM;
    if (ret < 0) {
        free(w.buf);
        return ret;
    }
    *payload_r = w.buf;
    *len_r = w.len;
    return 0;
}

/* ---- Decoding ---- */

static int
decode_body(uint16_t type, struct dir__rd *r, struct dir_decoded *d, const char **error_r)
{
    struct dir_op *op = &d->op;
    op->type = type;
    if (dir__rd_u8(r, "version: missing") != DIR__CODEC_VERSION && !r->bad)
        r->bad = "version: unknown payload format version";
    if (type == TDM_REC_DIR_PUT || type == TDM_REC_DIR_DELETE || type == TDM_REC_DIR_ACL_SET) {
        op->kind = dir__rd_u8(r, "kind: missing");
        if (!r->bad && (op->kind < 1 || op->kind > DIR_KIND_MAX))
            r->bad = "kind: unknown";
    } else if (type == TDM_REC_DIR_PASSWORD_SET) {
        op->kind = dir__rd_u8(r, "kind: missing");
        if (!r->bad && op->kind != DIR_KIND_USER && op->kind != DIR_KIND_SERVER)
            r->bad = "kind: only users and servers have passwords";
    }
    if (type != TDM_REC_DIR_BOOTSTRAP)
        op->name = dir__rd_str(r, DIR_NAME_MAX, "name: malformed");
    if (r->bad)
        return TDM_EINVAL;
    if (type != TDM_REC_DIR_BOOTSTRAP &&
        dir__check_name(op->name, "name: 1..255 bytes, no control characters", error_r) < 0)
        return TDM_EINVAL;
    switch (type) {
    case TDM_REC_DIR_BOOTSTRAP:
        break;
    case TDM_REC_DIR_PUT: {
        op->expected_version = dir__rd_u64(r, "expected_version: missing");
        op->attrs = dir__rd_str(r, DIR_ATTRS_MAX, "attrs: malformed");
        if (r->bad)
            return TDM_EINVAL;
        char *canon = NULL;
        int ret = dir_attrs_check(op->kind, op->attrs, &canon, error_r);
        if (ret == 0 && strcmp(canon, op->attrs) != 0) {
            *error_r = "attrs: not in canonical form";
            ret = TDM_EINVAL;
        }
        free(canon);
        if (ret < 0)
            return ret == -ENOMEM ? ret : TDM_EINVAL;
        break;
    }
    case TDM_REC_DIR_DELETE:
        op->expected_version = dir__rd_u64(r, "expected_version: missing");
        break;
    case TDM_REC_DIR_ACL_SET: {
        op->expected_version = dir__rd_u64(r, "expected_version: missing");
        if (!r->bad && op->expected_version == 0)
            r->bad = "expected_version: 0";
        op->n_acl = dir__rd_u16(r, "acl: count missing");
        if (op->n_acl > DIR_MAX_ACL && !r->bad)
            r->bad = "acl: more than DIR_MAX_ACL entries";
        /* Each entry takes at least 5 bytes: no allocation beyond what the payload backs. */
        if (!r->bad && op->n_acl > (r->len - r->off) / 5)
            r->bad = "acl: truncated";
        if (r->bad)
            return TDM_EINVAL;
        d->acl_storage = calloc(op->n_acl ? op->n_acl : 1, sizeof(*d->acl_storage));
        if (!d->acl_storage)
            return -ENOMEM;
        for (size_t i = 0; i < op->n_acl && !r->bad; i++) {
            struct dir_acl_entry *e = &d->acl_storage[i];
            e->who.kind = dir__rd_u8(r, "acl: truncated");
            e->who.name = dir__rd_str(r, DIR_NAME_MAX, "acl: bad principal name");
            e->right = dir__rd_u8(r, "acl: truncated");
            if (r->bad)
                break;
            if (!dir__principal_kind_ok(e->who.kind) || e->right < DIR_RIGHT_READ ||
                e->right > DIR_RIGHT_FULL)
                r->bad = "acl: bad principal kind or right";
            else if (dir__check_name(e->who.name, "acl: bad principal name", error_r) < 0)
                r->bad = "acl: bad principal name";
            else if (i > 0 && dir__acl_cmp(&d->acl_storage[i - 1], e) >= 0)
                r->bad = "acl: entries not strictly ascending";
        }
        op->acl = d->acl_storage;
        break;
    }
    case TDM_REC_DIR_PASSWORD_SET:
        op->password_hash = dir__rd_str(r, DIR_PASSWORD_HASH_MAX - 1, "password_hash: malformed");
        if (!r->bad && !hash_ok(op->password_hash))
            r->bad = "password_hash: not an argon2id hash string";
        break;
    case TDM_REC_DIR_GROUP_MEMBERS: {
        op->expected_version = dir__rd_u64(r, "expected_version: missing");
        if (!r->bad && op->expected_version == 0)
            r->bad = "expected_version: 0";
        op->n_members = rd_u32(r, "members: count missing");
        if (op->n_members > DIR_MAX_MEMBERS && !r->bad)
            r->bad = "members: more than DIR_MAX_MEMBERS";
        if (!r->bad && op->n_members > (r->len - r->off) / 4)
            r->bad = "members: truncated";
        if (r->bad)
            return TDM_EINVAL;
        d->members_storage = calloc(op->n_members ? op->n_members : 1, sizeof(*d->members_storage));
        if (!d->members_storage)
            return -ENOMEM;
        for (size_t i = 0; i < op->n_members && !r->bad; i++) {
            struct dir_principal *m = &d->members_storage[i];
            m->kind = dir__rd_u8(r, "members: truncated");
            m->name = dir__rd_str(r, DIR_NAME_MAX, "members: bad name");
            if (r->bad)
                break;
            if (m->kind != DIR_KIND_USER && m->kind != DIR_KIND_SERVER)
                r->bad = "members: only users and servers can be members";
            else if (dir__check_name(m->name, "members: bad name", error_r) < 0)
                r->bad = "members: bad name";
            else if (i > 0 && dir__principal_cmp(&d->members_storage[i - 1], m) >= 0)
                r->bad = "members: not strictly ascending";
        }
        op->members = d->members_storage;
        break;
    }
    default:
        r->bad = "type: not a directory record";
    }
    if (!r->bad && r->off != r->len)
        r->bad = "payload: bytes after the last field";
    return r->bad ? TDM_EINVAL : 0;
}

int
dir_op_decode(uint16_t type, const uint8_t *payload, size_t len, struct dir_decoded *dec_r,
              const char **error_r)
{
    memset(dec_r, 0, sizeof(*dec_r));
    *error_r = NULL;
    struct dir__rd r = {payload, len, 0, NULL};
    int ret = dir_is_dir_record(type) ? decode_body(type, &r, dec_r, error_r) : TDM_EINVAL;
    if (ret < 0) {
        if (!*error_r)
            *error_r = r.bad ? r.bad : (ret == -ENOMEM ? "out of memory" : "type: unknown");
        dir_decoded_clear(dec_r);
    }
    return ret;
}

void
dir_decoded_clear(struct dir_decoded *dec)
{
    free(dec->acl_storage);
    free(dec->members_storage);
    memset(dec, 0, sizeof(*dec));
}

/* ---- Object values (LMDB, not the log; see dir_int.h) ---- */

int
dir__obj_encode(const struct dir__obj *obj, struct dir__wr *w)
{
    dir__wr_u8(w, DIR__CODEC_VERSION);
    dir__wr_u64(w, obj->version);
    dir__wr_str(w, obj->attrs);
    dir__wr_str(w, obj->password_hash ? obj->password_hash : "");
    dir__wr_u16(w, (uint16_t)obj->n_acl);
    for (size_t i = 0; i < obj->n_acl; i++) {
        dir__wr_u8(w, (uint8_t)obj->acl[i].who.kind);
        dir__wr_str(w, obj->acl[i].who.name);
        dir__wr_u8(w, (uint8_t)obj->acl[i].right);
    }
    return w->nomem ? -ENOMEM : 0;
}

int
dir__obj_decode(const void *data, size_t len, struct dir__obj *obj_r)
{
    memset(obj_r, 0, sizeof(*obj_r));
    struct dir__rd r = {data, len, 0, NULL};
    if (dir__rd_u8(&r, "version") != DIR__CODEC_VERSION)
        return TDM_ECORRUPT;
    obj_r->version = dir__rd_u64(&r, "version");
    obj_r->attrs = dir__rd_str(&r, DIR_ATTRS_MAX, "attrs");
    obj_r->password_hash = dir__rd_str(&r, DIR_PASSWORD_HASH_MAX, "hash");
    obj_r->n_acl = dir__rd_u16(&r, "acl");
    if (r.bad || obj_r->n_acl > DIR_MAX_ACL)
        return TDM_ECORRUPT;
    obj_r->acl = calloc(obj_r->n_acl ? obj_r->n_acl : 1, sizeof(*obj_r->acl));
    if (!obj_r->acl)
        return -ENOMEM;
    for (size_t i = 0; i < obj_r->n_acl; i++) {
        obj_r->acl[i].who.kind = dir__rd_u8(&r, "acl");
        obj_r->acl[i].who.name = dir__rd_str(&r, DIR_NAME_MAX, "acl");
        obj_r->acl[i].right = dir__rd_u8(&r, "acl");
    }
    if (r.bad || r.off != len) {
        free(obj_r->acl);
        obj_r->acl = NULL;
        return TDM_ECORRUPT;
    }
    return 0;
}

size_t
dir__obj_key(uint8_t *buf, enum dir_kind kind, const char *name)
{
    size_t n = strlen(name);
    buf[0] = (uint8_t)kind;
    memcpy(buf + 1, name, n);
    return n + 1;
}
