/*
 * The kill -9 test's load: commits mail transactions from several threads until killed.
 *
 *   crash_driver create <dir>                 create the database and exit
 *   crash_driver run <dir> <side file> <run id> [threads]
 *
 * Small generations and checkpoints (64 KiB) make rolls and checkpoints frequent, so kills land
 * in them. Each thread first reads its mailbox from the database (the side file may not know
 * whether its last op of the previous run took effect; crash_check settled that), then loops:
 * append (sizes up to twice a generation), flag change, expunge, folder rename. See
 * kill_common.h for the side file. One run in three appends mostly 6-30 KiB bodies, so the
 * threads' batches are more than a quarter of a generation and generations are begun larger
 * (store_gen.c): kills land in rolls to and from them.
 */
#include "kill_common.h"

#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSGS 4096

struct thread_ctx {
    struct store *store;
    int side_fd;
    unsigned idx;
    uint64_t run_id;
    uint64_t rng;
    char mailbox[32];
    char folder[64];
    bool have_mailbox;
    uint32_t uids[MAX_MSGS];
    size_t n_uids;
    pthread_t th;
};

static void side_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
side_line(int fd, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n) {
        fprintf(stderr, "crash_driver: cannot write the side file\n");
        _exit(3);
    }
}

static int
folder_cb(void *ctx, const struct mail_folder_info *info)
{
    struct thread_ctx *t = ctx;
    if (info->name_len == 5 && memcmp(info->name, "INBOX", 5) == 0)
        return 0;
    if (info->name_len < sizeof(t->folder)) {
        memcpy(t->folder, info->name, info->name_len);
        t->folder[info->name_len] = '\0';
    }
    return 0;
}

static int
message_cb(void *ctx, const struct mail_message_info *info)
{
    struct thread_ctx *t = ctx;
    if (t->n_uids < MAX_MSGS)
        t->uids[t->n_uids++] = info->uid;
    return 0;
}

/* What this thread's mailbox holds now. */
static void
load_state(struct thread_ctx *t)
{
    MDB_txn *txn;
    if (store_read_begin(t->store, &txn) != 0)
        _exit(4);
    const struct mail_dbis *dbis = store_mail_dbis(t->store);
    struct mail_mailbox_info mi;
    t->have_mailbox = mail_mailbox_get(dbis, txn, t->mailbox, &mi) == 0;
    t->folder[0] = '\0';
    t->n_uids = 0;
    if (t->have_mailbox)
        mail_folder_list(dbis, txn, t->mailbox, folder_cb, t);
    if (t->folder[0])
        mail_message_list(dbis, txn, t->mailbox, t->folder, message_cb, t);
    mdb_txn_abort(txn);
}

static void
commit(struct thread_ctx *t, const struct mail_op *op, uint64_t seq, struct mail_result *res)
{
    const char *err = NULL;
    int ret = store_commit_op(t->store, op, NULL, res, &err);
    if (ret != 0) {
        fprintf(stderr, "crash_driver: commit failed: %s\n", err ? err : tdm_strerror(ret));
        _exit(5);
    }
    side_line(t->side_fd, "K %u %" PRIu64 " %d %u\n", t->idx, seq, res->status,
              op->type == TDM_REC_MESSAGE_APPEND ? res->first_uid : 0);
}

static void *
thread_main(void *arg)
{
    struct thread_ctx *t = arg;
    struct mail_result res;
    load_state(t);
    for (uint64_t i = 0;; i++) {
        uint64_t seq = t->run_id * 1000000u + i;
        struct mail_op op = {.mailbox = t->mailbox, .folder = t->folder};
        unsigned r = (unsigned)(kill_rnd(&t->rng) % 100);
        if (!t->have_mailbox) {
            op.type = TDM_REC_MAILBOX_CREATE;
            op.uidvalidity = 100 + t->idx;
            side_line(t->side_fd, "B %u %" PRIu64 " MCREATE %s\n", t->idx, seq, t->mailbox);
            commit(t, &op, seq, &res);
            t->have_mailbox = true;
        } else if (!t->folder[0]) {
            snprintf(t->folder, sizeof(t->folder), "f%u-%" PRIu64, t->idx, seq);
            op.type = TDM_REC_FOLDER_CREATE;
            side_line(t->side_fd, "B %u %" PRIu64 " FCREATE %s %s\n", t->idx, seq, t->mailbox,
                      t->folder);
            commit(t, &op, seq, &res);
        } else if (r < 50 || t->n_uids == 0) {
            size_t size = 50 + kill_rnd(&t->rng) % (kill_rnd(&t->rng) % 8 == 0 ? 130000 : 8000);
            if (t->run_id % 3 == 0 && kill_rnd(&t->rng) % 4 != 0)
                size = 6000 + kill_rnd(&t->rng) % 24000;
            uint8_t *body = malloc(size);
            if (!body)
                _exit(6);
            for (size_t k = 0; k < MAIL_GUID_LEN; k += 8) {
                uint64_t v = kill_rnd(&t->rng);
                memcpy(op.guid + k, &v, 8);
            }
            kill_body_fill(body, size, op.guid);
            char hex[2 * MAIL_GUID_LEN + 1];
            for (size_t k = 0; k < MAIL_GUID_LEN; k++)
                snprintf(hex + 2 * k, 3, "%02x", op.guid[k]);
            struct mail_target target = {t->mailbox, t->folder};
            op.type = TDM_REC_MESSAGE_APPEND;
            op.targets = &target;
            op.n_targets = 1;
            op.internal_date = 1700000000 + (int64_t)i;
            op.flags = (uint32_t)(kill_rnd(&t->rng) % (MAIL_FLAG_ALL + 1));
            op.body = body;
            op.body_len = size;
            side_line(t->side_fd, "B %u %" PRIu64 " APPEND %s %s %s %zu %u\n", t->idx, seq,
                      t->mailbox, t->folder, hex, size, op.flags);
            commit(t, &op, seq, &res);
            free(body);
            if (res.status == 0 && t->n_uids < MAX_MSGS)
                t->uids[t->n_uids++] = res.first_uid;
        } else if (r < 75) {
            uint32_t uid = t->uids[kill_rnd(&t->rng) % t->n_uids];
            op.type = TDM_REC_MESSAGE_FLAGS;
            op.flag_mode = MAIL_FLAGS_REPLACE;
            op.flags = (uint32_t)(kill_rnd(&t->rng) % (MAIL_FLAG_ALL + 1));
            op.uids = &uid;
            op.n_uids = 1;
            side_line(t->side_fd, "B %u %" PRIu64 " FLAGS %s %s %u %u\n", t->idx, seq, t->mailbox,
                      t->folder, uid, op.flags);
            commit(t, &op, seq, &res);
        } else if (r < 95) {
            size_t k = kill_rnd(&t->rng) % t->n_uids;
            uint32_t uid = t->uids[k];
            op.type = TDM_REC_MESSAGE_EXPUNGE;
            op.uids = &uid;
            op.n_uids = 1;
            side_line(t->side_fd, "B %u %" PRIu64 " EXPUNGE %s %s %u\n", t->idx, seq, t->mailbox,
                      t->folder, uid);
            commit(t, &op, seq, &res);
            if (res.status == 0)
                t->uids[k] = t->uids[--t->n_uids];
        } else {
            char new_folder[64];
            snprintf(new_folder, sizeof(new_folder), "f%u-%" PRIu64, t->idx, seq);
            op.type = TDM_REC_FOLDER_RENAME;
            op.new_folder = new_folder;
            side_line(t->side_fd, "B %u %" PRIu64 " RENAME %s %s %s\n", t->idx, seq, t->mailbox,
                      t->folder, new_folder);
            commit(t, &op, seq, &res);
            if (res.status == 0)
                memcpy(t->folder, new_folder, sizeof(new_folder));
        }
    }
    return NULL;
}

static void
options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = 64 * 1024;
    o->checkpoint_bytes = 64 * 1024;
    o->checkpoint_ms = 200;
    o->idle_close_ms = 50;
    o->reserve_bytes = 64 * 1024;
    o->map_size = 1ull << 30;
}

int
main(int argc, char **argv)
{
    struct store_options o;
    options(&o);
    event_set_sink(NULL);
    const char *err = NULL;
    if (argc == 3 && strcmp(argv[1], "create") == 0) {
        int ret = store_create(argv[2], &o, &err);
        if (ret != 0)
            fprintf(stderr, "crash_driver: create %s: %s\n", argv[2], err);
        return ret == 0 ? 0 : 1;
    }
    if (argc < 5 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: crash_driver create <dir> | run <dir> <side file> <run id> "
                        "[threads]\n");
        return 2;
    }
    uint64_t run_id = strtoull(argv[4], NULL, 10);
    unsigned nthreads = argc > 5 ? (unsigned)atoi(argv[5]) : 4;
    if (nthreads < 1 || nthreads > KILL_MAX_THREADS)
        nthreads = 4;
    int side_fd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (side_fd < 0) {
        perror(argv[3]);
        return 1;
    }
    struct store *s = NULL;
    int ret = store_open(argv[2], &o, &s, &err);
    if (ret != 0) {
        fprintf(stderr, "crash_driver: open %s: %s\n", argv[2], err);
        return 1;
    }
    static struct thread_ctx t[KILL_MAX_THREADS];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (unsigned i = 0; i < nthreads; i++) {
        t[i] = (struct thread_ctx){.store = s, .side_fd = side_fd, .idx = i, .run_id = run_id};
        t[i].rng = run_id * 7919u + i * 104729u + (uint64_t)ts.tv_nsec;
        snprintf(t[i].mailbox, sizeof(t[i].mailbox), "m%u", i);
        if (pthread_create(&t[i].th, NULL, thread_main, &t[i]) != 0)
            return 1;
    }
    /* Until killed. The threads never return. */
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(t[i].th, NULL);
    return 0;
}
