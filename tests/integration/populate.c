/*
 * tdm_populate: writes mail into a database through the real store, for the integration
 * tests of the offline tools. Not installed; not an operator tool.
 *
 *   tdm_populate <dir> [--create] [--generation-size BYTES] [--ops N]
 *                [--snapshot-dir DIR --snapshot-after K] [--hold SECONDS] [--crash]
 *                [--variant V]
 *
 * --create             store_create() first
 * --ops N              commit N mail operations (default 40): mailboxes, folders, appends
 *                      with bodies (some shared), flags, copies, expunges, in a fixed order
 * --snapshot-after K   after K operations, copy the LMDB environment (mdb_env_copy2) into
 *   --snapshot-dir DIR   DIR: putting it back in place of store/data.mdb later simulates a
 *                      machine crash in which LMDB lost everything applied after op K
 * --hold S             after the operations, print "ready" and keep the database mounted
 *                      for S seconds (tests of "in use")
 * --crash              end with _exit() instead of store_close(): a dirty database
 * --variant V          other message bodies and dates (same operations): two copies of one
 *                      database populated with different variants hold different mail
 *
 * Prints "ops <n> last_lsn <lsn>" and, with --hold, "ready" on stdout. Exit 0, or 1 with a
 * message on stderr.
 */
#include "store/store.h"

#include "lib/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct opts {
    const char *dir;
    bool create, crash;
    uint32_t gen_size;
    unsigned ops;
    const char *snap_dir;
    unsigned snap_after;
    unsigned hold;
    unsigned variant;
};

static int
usage(void)
{
    fprintf(stderr, "usage: tdm_populate <dir> [--create] [--generation-size BYTES] [--ops N] "
                    "[--snapshot-dir DIR --snapshot-after K] [--hold SECONDS] [--crash] "
                    "[--variant V]\n");
    return 1;
}

static int
parse(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->ops = 40;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--create") == 0)
            o->create = true;
        else if (strcmp(a, "--crash") == 0)
            o->crash = true;
        else if (strcmp(a, "--generation-size") == 0 && val)
            o->gen_size = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--ops") == 0 && val)
            o->ops = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--snapshot-dir") == 0 && val)
            o->snap_dir = argv[++i];
        else if (strcmp(a, "--snapshot-after") == 0 && val)
            o->snap_after = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--variant") == 0 && val)
            o->variant = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--hold") == 0 && val)
            o->hold = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (a[0] != '-' && !o->dir)
            o->dir = a;
        else
            return usage();
    }
    if (!o->dir || (o->snap_dir && !o->snap_after))
        return usage();
    return 0;
}

/* UIDs appended to alice's INBOX and not yet expunged, oldest first. */
struct uids {
    uint32_t v[4096];
    size_t n;
};

/* Op number i of the fixed sequence; body_buf is scratch space for a body. */
static void
make_op(unsigned i, unsigned variant, struct uids *live, char *body_buf, size_t body_cap,
        struct mail_op *op, struct mail_target targets[2], uint32_t uid_buf[1])
{
    static const char *const kw[] = {"$Important", "project-x"};
    memset(op, 0, sizeof(*op));
    switch (i) {
    case 0:
    case 1:
        op->type = TDM_REC_MAILBOX_CREATE;
        op->mailbox = i == 0 ? "alice" : "bob";
        op->uidvalidity = 1000 + i;
        return;
    case 2:
    case 3:
        op->type = TDM_REC_FOLDER_CREATE;
        op->mailbox = "alice";
        op->folder = i == 2 ? "Archive" : "Work/Projects";
        return;
    default:
        break;
    }
    unsigned k = (i - 4) % 6;
    if (k <= 2 || live->n == 0) {
        /* Every fourth body repeats an earlier one: single-instance storage gets exercised. */
        unsigned seed = (i % 4 == 0) ? 4 : i;
        int n = snprintf(body_buf, body_cap,
                         "From: sender%u@example.org\r\nTo: alice@example.org\r\n"
                         "Subject: message %u (variant %u)\r\n\r\n",
                         seed, seed, variant);
        while ((size_t)n + 64 < body_cap && n < 1500)
            n += snprintf(body_buf + n, body_cap - (size_t)n, "line %u of the body of %u\r\n",
                          (unsigned)n, seed);
        op->type = TDM_REC_MESSAGE_APPEND;
        targets[0] = (struct mail_target){"alice", "INBOX"};
        targets[1] = (struct mail_target){"bob", "INBOX"};
        op->targets = targets;
        op->n_targets = k == 1 ? 2 : 1;
        for (size_t b = 0; b < MAIL_GUID_LEN; b++)
            op->guid[b] = (uint8_t)(i * 31 + b);
        op->internal_date = 1700000000 + (int64_t)i * 60 + variant;
        op->flags = k == 2 ? MAIL_FLAG_SEEN : 0;
        op->body = body_buf;
        op->body_len = (size_t)n;
        return;
    }
    op->mailbox = "alice";
    op->folder = "INBOX";
    op->uids = uid_buf;
    op->n_uids = 1;
    if (k == 3) {
        op->type = TDM_REC_MESSAGE_FLAGS;
        uid_buf[0] = live->v[live->n - 1];
        op->flag_mode = MAIL_FLAGS_ADD;
        op->flags = MAIL_FLAG_FLAGGED | MAIL_FLAG_ANSWERED;
        op->keywords = kw;
        op->n_keywords = 2;
    } else if (k == 4) {
        op->type = TDM_REC_MESSAGE_COPY;
        uid_buf[0] = live->v[0];
        op->new_folder = "Archive";
    } else {
        op->type = TDM_REC_MESSAGE_EXPUNGE;
        uid_buf[0] = live->v[0];
    }
}

static int
snapshot(struct store *s, const char *dir)
{
    MDB_txn *txn;
    int ret = store_read_begin(s, &txn);
    if (ret < 0)
        return ret;
    mkdir(dir, 0750);
    int rc = mdb_env_copy2(mdb_txn_env(txn), dir, 0);
    mdb_txn_abort(txn);
    if (rc != 0) {
        fprintf(stderr, "tdm_populate: copying LMDB to %s: %s\n", dir, mdb_strerror(rc));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o) != 0)
        return 1;
    event_set_sink(NULL); /* the tests read our stdout; events are the tools' business */
    struct store_options so;
    store_options_init(&so);
    if (o.gen_size)
        so.generation_size = o.gen_size;
    const char *why = NULL;
    if (o.create && store_create(o.dir, &so, &why) < 0) {
        fprintf(stderr, "tdm_populate: create %s: %s\n", o.dir, why);
        return 1;
    }
    struct store *s = NULL;
    if (store_open(o.dir, &so, &s, &why) < 0) {
        fprintf(stderr, "tdm_populate: open %s: %s\n", o.dir, why);
        return 1;
    }
    static char body[4096];
    struct uids live = {.n = 0};
    uint64_t lsn = 0;
    for (unsigned i = 0; i < o.ops; i++) {
        struct mail_op op;
        struct mail_target targets[2];
        uint32_t uid[1];
        struct mail_result res;
        make_op(i, o.variant, &live, body, sizeof(body), &op, targets, uid);
        int ret = store_commit_op(s, &op, &lsn, &res, &why);
        if (ret < 0 || res.status != 0) {
            fprintf(stderr, "tdm_populate: op %u (type %u): %s\n", i, op.type,
                    ret < 0 ? (why ? why : "commit failed") : "refused by the mail model");
            store_close(&s);
            return 1;
        }
        if (op.type == TDM_REC_MESSAGE_APPEND && live.n < sizeof(live.v) / sizeof(live.v[0]))
            live.v[live.n++] = res.target_uid[0];
        if (op.type == TDM_REC_MESSAGE_EXPUNGE)
            memmove(live.v, live.v + 1, --live.n * sizeof(live.v[0]));
        if (o.snap_dir && i + 1 == o.snap_after && snapshot(s, o.snap_dir) < 0) {
            store_close(&s);
            return 1;
        }
    }
    printf("ops %u last_lsn %" PRIu64 "\n", o.ops, lsn);
    fflush(stdout);
    if (o.hold) {
        printf("ready\n");
        fflush(stdout);
        sleep(o.hold);
    }
    if (o.crash)
        _exit(0); /* no checkpoint, no END record, clean flag stays 0: a crashed server */
    int ret = store_close(&s);
    if (ret < 0) {
        fprintf(stderr, "tdm_populate: close: %d\n", ret);
        return 1;
    }
    return 0;
}
