/*
 * The kill -9 test's checker: crash_check <dir> <side file>
 *
 * Opens the database (running recovery) and checks:
 *   - every acknowledged op in the side file took effect: per thread, the mailbox, its one
 *     working folder and every message (UID, GUID, size, flags) are exactly what the settled
 *     ops give, or what they give plus the one op that was in flight at the kill;
 *   - nothing is half-visible: every message's body exists, has the message's size, hashes to
 *     its stored hash and is the body the driver built from its GUID; every folder's message
 *     count and every mailbox's quota usage (bytes and messages) equal what its messages add
 *     up to;
 *   - the database closes cleanly.
 * Then it settles each in-flight op in the side file (K or N line, see kill_common.h).
 * Exit status 0 when all holds, 1 otherwise (with the reasons on stdout).
 */
#include "kill_common.h"

#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS 200000
#define MAX_MSGS 8192

enum op_kind { OP_MCREATE, OP_FCREATE, OP_APPEND, OP_FLAGS, OP_EXPUNGE, OP_RENAME };
enum op_fate { FATE_OPEN, FATE_ACKED, FATE_NOT };

struct op {
    unsigned t;
    uint64_t seq;
    enum op_kind kind;
    enum op_fate fate;
    int status;
    uint32_t uid; /* APPEND: the UID it got; FLAGS/EXPUNGE: the target */
    uint32_t flags;
    uint8_t guid[MAIL_GUID_LEN];
    uint64_t size;
    char folder[64], new_folder[64];
};

struct msg {
    uint32_t uid;
    uint8_t guid[MAIL_GUID_LEN];
    uint64_t size;
    uint32_t flags;
};

struct tstate {
    bool mailbox;
    char folder[64];
    struct msg msgs[MAX_MSGS];
    size_t n;
};

static struct op *ops;
static size_t n_ops;
static int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

static struct op *
op_find(unsigned t, uint64_t seq)
{
    for (size_t i = n_ops; i-- > 0;)
        if (ops[i].t == t && ops[i].seq == seq)
            return &ops[i];
    return NULL;
}

static int
parse_hex(const char *hex, uint8_t out[MAIL_GUID_LEN])
{
    if (strlen(hex) != 2 * MAIL_GUID_LEN)
        return -1;
    for (size_t i = 0; i < MAIL_GUID_LEN; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static int
parse_side(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    ops = calloc(MAX_OPS, sizeof(*ops));
    if (!ops) {
        fclose(f);
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (!strchr(line, '\n'))
            break; /* a line cut by the kill: its op was never submitted */
        unsigned t;
        uint64_t seq;
        char kind[16], mb[64], hex[64];
        int status;
        unsigned uid;
        if (line[0] == 'K' &&
            sscanf(line, "K %u %" SCNu64 " %d %u", &t, &seq, &status, &uid) == 4) {
            struct op *op = op_find(t, seq);
            if (!op) {
                fail("side file: K line for unknown op %u/%" PRIu64, t, seq);
                continue;
            }
            op->fate = FATE_ACKED;
            op->status = status;
            if (op->kind == OP_APPEND)
                op->uid = uid;
            continue;
        }
        if (line[0] == 'N' && sscanf(line, "N %u %" SCNu64, &t, &seq) == 2) {
            struct op *op = op_find(t, seq);
            if (op)
                op->fate = FATE_NOT;
            continue;
        }
        if (line[0] != 'B' || n_ops == MAX_OPS ||
            sscanf(line, "B %u %" SCNu64 " %15s %63s", &t, &seq, kind, mb) != 4 ||
            t >= KILL_MAX_THREADS) {
            fail("side file: bad line: %s", line);
            continue;
        }
        struct op *op = &ops[n_ops];
        memset(op, 0, sizeof(*op));
        op->t = t;
        op->seq = seq;
        int n = 0;
        if (strcmp(kind, "MCREATE") == 0) {
            op->kind = OP_MCREATE;
            n = 1;
        } else if (strcmp(kind, "FCREATE") == 0) {
            op->kind = OP_FCREATE;
            n = sscanf(line, "B %*u %*u %*s %*s %63s", op->folder);
        } else if (strcmp(kind, "APPEND") == 0) {
            op->kind = OP_APPEND;
            n = sscanf(line, "B %*u %*u %*s %*s %63s %63s %" SCNu64 " %u", op->folder, hex,
                       &op->size, &op->flags) == 4 &&
                parse_hex(hex, op->guid) == 0;
        } else if (strcmp(kind, "FLAGS") == 0) {
            op->kind = OP_FLAGS;
            n = sscanf(line, "B %*u %*u %*s %*s %63s %u %u", op->folder, &op->uid, &op->flags) == 3;
        } else if (strcmp(kind, "EXPUNGE") == 0) {
            op->kind = OP_EXPUNGE;
            n = sscanf(line, "B %*u %*u %*s %*s %63s %u", op->folder, &op->uid) == 2;
        } else if (strcmp(kind, "RENAME") == 0) {
            op->kind = OP_RENAME;
            n = sscanf(line, "B %*u %*u %*s %*s %63s %63s", op->folder, op->new_folder) == 2;
        }
        if (n != 1) {
            fail("side file: bad line: %s", line);
            continue;
        }
        n_ops++;
    }
    fclose(f);
    return 0;
}

/* Applies an op that took effect (status 0) to a thread's expected state. */
static void
state_apply(struct tstate *s, const struct op *op, uint32_t uid)
{
    switch (op->kind) {
    case OP_MCREATE:
        s->mailbox = true;
        break;
    case OP_FCREATE:
        snprintf(s->folder, sizeof(s->folder), "%s", op->folder);
        break;
    case OP_APPEND:
        if (s->n < MAX_MSGS) {
            struct msg *m = &s->msgs[s->n++];
            m->uid = uid;
            memcpy(m->guid, op->guid, MAIL_GUID_LEN);
            m->size = op->size;
            m->flags = op->flags;
        }
        break;
    case OP_FLAGS:
        for (size_t i = 0; i < s->n; i++)
            if (s->msgs[i].uid == op->uid)
                s->msgs[i].flags = op->flags;
        break;
    case OP_EXPUNGE:
        for (size_t i = 0; i < s->n; i++)
            if (s->msgs[i].uid == op->uid)
                s->msgs[i--] = s->msgs[--s->n];
        break;
    case OP_RENAME:
        snprintf(s->folder, sizeof(s->folder), "%s", op->new_folder);
        break;
    }
}

/* What the database holds for one thread's mailbox. */
struct view {
    bool mailbox;
    char folders[8][256];
    size_t n_folders;
    size_t inbox_msgs;
    struct msg msgs[MAX_MSGS];
    size_t n;
};

static int
view_folder_cb(void *ctx, const struct mail_folder_info *info)
{
    struct view *v = ctx;
    if (info->name_len == 5 && memcmp(info->name, "INBOX", 5) == 0) {
        v->inbox_msgs = info->messages;
        return 0;
    }
    if (v->n_folders < 8 && info->name_len < 256) {
        memcpy(v->folders[v->n_folders], info->name, info->name_len);
        v->folders[v->n_folders][info->name_len] = '\0';
    }
    v->n_folders++;
    return 0;
}

static int
view_msg_cb(void *ctx, const struct mail_message_info *info)
{
    struct view *v = ctx;
    if (v->n < MAX_MSGS) {
        struct msg *m = &v->msgs[v->n++];
        m->uid = info->uid;
        memcpy(m->guid, info->guid, MAIL_GUID_LEN);
        m->size = info->size;
        m->flags = info->flags;
    }
    return 0;
}

/* Does the view hold exactly state s? A message with uid 0 (an append in flight) matches the
 * view's message with its GUID; its UID is returned in *uid_r. */
static bool
state_matches(const struct tstate *s, const struct view *v, uint32_t *uid_r, char *why,
              size_t why_len)
{
    if (s->mailbox != v->mailbox) {
        snprintf(why, why_len, "mailbox %s", v->mailbox ? "exists" : "is missing");
        return false;
    }
    if (!s->mailbox)
        return true;
    if (v->inbox_msgs != 0) {
        snprintf(why, why_len, "INBOX holds %zu messages", v->inbox_msgs);
        return false;
    }
    size_t want_folders = s->folder[0] ? 1 : 0;
    if (v->n_folders != want_folders || (want_folders && strcmp(v->folders[0], s->folder) != 0)) {
        snprintf(why, why_len, "folders: want \"%s\", have %zu (first \"%s\")", s->folder,
                 v->n_folders, v->n_folders ? v->folders[0] : "");
        return false;
    }
    if (s->n != v->n) {
        snprintf(why, why_len, "folder %s: want %zu messages, have %zu", s->folder, s->n, v->n);
        return false;
    }
    for (size_t i = 0; i < s->n; i++) {
        const struct msg *m = &s->msgs[i];
        bool found = false;
        for (size_t j = 0; j < v->n && !found; j++) {
            const struct msg *w = &v->msgs[j];
            if (memcmp(w->guid, m->guid, MAIL_GUID_LEN) != 0)
                continue;
            found = (m->uid == 0 || m->uid == w->uid) && w->size == m->size && w->flags == m->flags;
            if (found && m->uid == 0)
                *uid_r = w->uid;
        }
        if (!found) {
            snprintf(why, why_len,
                     "folder %s: message UID %u (size %" PRIu64 " flags %u) "
                     "missing or different",
                     s->folder, m->uid, m->size, m->flags);
            return false;
        }
    }
    return true;
}

/* Per-mailbox consistency: counts, quota usage, bodies. */
struct mb_check {
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    const char *mailbox;
    uint64_t bytes, msgs, folder_msgs;
    const char *folder;
    uint8_t *scratch;
};

static int
check_msg_cb(void *ctx, const struct mail_message_info *info)
{
    struct mb_check *c = ctx;
    c->bytes += info->size;
    c->msgs++;
    c->folder_msgs++;
    const void *data;
    size_t len;
    int ret = mail_body_get(c->dbis, c->txn, info->body_hash, &data, &len);
    if (ret != 0) {
        fail("%s/%s UID %u: body missing (%s)", c->mailbox, c->folder, info->uid,
             tdm_strerror(ret));
        return 0;
    }
    uint8_t h[MAIL_HASH_LEN];
    crypto_hash_sha256(h, data, len);
    if (len != info->size || memcmp(h, info->body_hash, MAIL_HASH_LEN) != 0) {
        fail("%s/%s UID %u: body of %zu bytes does not match size %" PRIu64 " / hash", c->mailbox,
             c->folder, info->uid, len, info->size);
        return 0;
    }
    uint8_t *want = malloc(len ? len : 1);
    if (!want)
        return -ENOMEM;
    kill_body_fill(want, len, info->guid);
    if (memcmp(want, data, len) != 0)
        fail("%s/%s UID %u: body is not the one appended", c->mailbox, c->folder, info->uid);
    free(want);
    return 0;
}

static int
check_folder_cb(void *ctx, const struct mail_folder_info *info)
{
    struct mb_check *c = ctx;
    char name[256];
    memcpy(name, info->name, info->name_len);
    name[info->name_len] = '\0';
    c->folder = name;
    c->folder_msgs = 0;
    int ret = mail_message_list(c->dbis, c->txn, c->mailbox, name, check_msg_cb, c);
    if (ret == 0 && c->folder_msgs != info->messages)
        fail("%s/%s: folder says %u messages, lists %" PRIu64, c->mailbox, name, info->messages,
             c->folder_msgs);
    return ret;
}

static int
check_mailbox_cb(void *ctx, const char *mailbox, const struct mail_mailbox_info *info)
{
    struct mb_check c = *(struct mb_check *)ctx;
    c.mailbox = mailbox;
    int ret = mail_folder_list(c.dbis, c.txn, mailbox, check_folder_cb, &c);
    if (ret == 0 && (c.bytes != info->used_bytes || c.msgs != info->used_messages))
        fail("mailbox %s: quota usage %" PRIu64 " bytes / %" PRIu64 " messages, messages add up "
             "to %" PRIu64 " / %" PRIu64,
             mailbox, info->used_bytes, info->used_messages, c.bytes, c.msgs);
    return ret;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: crash_check <dir> <side file>\n");
        return 2;
    }
    event_set_sink(NULL);
    if (sodium_init() < 0 || parse_side(argv[2]) < 0) {
        fprintf(stderr, "crash_check: cannot read %s\n", argv[2]);
        return 2;
    }
    struct store_options o;
    store_options_init(&o);
    o.generation_size = 64 * 1024;
    o.map_size = 1ull << 30;
    o.reserve_bytes = 64 * 1024;
    struct store *s = NULL;
    const char *err = NULL;
    int ret = store_open(argv[1], &o, &s, &err);
    if (ret != 0) {
        printf("FAIL: the database does not open after the kill: %s (%s)\n", tdm_strerror(ret),
               err ? err : "-");
        free(ops);
        return 1;
    }
    MDB_txn *txn = NULL;
    if (store_read_begin(s, &txn) != 0) {
        printf("FAIL: no read transaction\n");
        store_close(&s);
        free(ops);
        return 1;
    }
    const struct mail_dbis *dbis = store_mail_dbis(s);

    static struct tstate st, st2;
    static struct view v;
    struct op *settle[KILL_MAX_THREADS] = {0};
    uint32_t settle_uid[KILL_MAX_THREADS] = {0};
    bool settle_applied[KILL_MAX_THREADS] = {0};
    size_t acked = 0, threads = 0;
    for (unsigned t = 0; t < KILL_MAX_THREADS; t++) {
        memset(&st, 0, sizeof(st));
        struct op *open_op = NULL;
        bool any = false;
        for (size_t i = 0; i < n_ops; i++) {
            struct op *op = &ops[i];
            if (op->t != t)
                continue;
            any = true;
            if (open_op) {
                fail("thread %u: op %" PRIu64 " was never settled but more followed it", t,
                     open_op->seq);
                open_op = NULL;
            }
            if (op->fate == FATE_ACKED) {
                acked++;
                if (op->status == 0)
                    state_apply(&st, op, op->uid);
            } else if (op->fate == FATE_OPEN) {
                open_op = op;
            }
        }
        if (!any)
            continue;
        threads++;
        memset(&v, 0, sizeof(v));
        char mailbox[16];
        snprintf(mailbox, sizeof(mailbox), "m%u", t);
        struct mail_mailbox_info mi;
        v.mailbox = mail_mailbox_get(dbis, txn, mailbox, &mi) == 0;
        if (v.mailbox)
            mail_folder_list(dbis, txn, mailbox, view_folder_cb, &v);
        /* The one working folder, whatever its name: state_matches() checks the name. */
        if (v.mailbox && v.n_folders == 1)
            mail_message_list(dbis, txn, mailbox, v.folders[0], view_msg_cb, &v);

        char why[512], why2[512] = "";
        uint32_t uid = 0;
        if (state_matches(&st, &v, &uid, why, sizeof(why))) {
            if (open_op)
                settle[t] = open_op;
            continue;
        }
        if (open_op) {
            st2 = st;
            state_apply(&st2, open_op, 0);
            if (state_matches(&st2, &v, &uid, why2, sizeof(why2))) {
                settle[t] = open_op;
                settle_applied[t] = true;
                settle_uid[t] = uid;
                continue;
            }
        }
        fail("thread %u (mailbox %s): %s%s%s", t, mailbox, why,
             why2[0] ? "; with the op in "
                       "flight: "
                     : "",
             why2);
    }

    /* Nothing half-visible anywhere. */
    struct mb_check c = {.dbis = dbis, .txn = txn};
    ret = mail_mailbox_list(dbis, txn, check_mailbox_cb, &c);
    if (ret != 0)
        fail("listing mailboxes: %s", tdm_strerror(ret));
    mdb_txn_abort(txn);

    struct store_status status;
    store_get_status(s, &status);
    ret = store_close(&s);
    if (ret != 0)
        fail("the database does not close cleanly: %s", tdm_strerror(ret));

    if (failures == 0) {
        FILE *f = fopen(argv[2], "a");
        for (unsigned t = 0; t < KILL_MAX_THREADS && f; t++) {
            if (!settle[t])
                continue;
            if (settle_applied[t])
                fprintf(f, "K %u %" PRIu64 " 0 %u\n", t, settle[t]->seq, settle_uid[t]);
            else
                fprintf(f, "N %u %" PRIu64 "\n", t, settle[t]->seq);
        }
        if (!f || fclose(f) != 0)
            fail("cannot settle ops in %s", argv[2]);
    }
    printf("crash_check: LSN %" PRIu64 ", %zu threads, %zu ops (%zu acknowledged): %s\n",
           status.applied_lsn, threads, n_ops, acked, failures ? "FAILED" : "ok");
    free(ops);
    return failures ? 1 : 0;
}
