/*
 * tdm_ipc_client: a stand-in worker for the integration tests of the core socket. It speaks
 * IPC through lib/core_link.h as a real worker would, and reads databases with
 * store/store_reader.h. Not installed; not an operator tool.
 *
 *   tdm_ipc_client commit SOCKET DATABASE MAILBOX COUNT [--window W] [--seconds S]
 *       Creates MAILBOX (EEXIST is fine), then appends messages 1..COUNT to its INBOX, each
 *       with GUID = its index, at most W (default 4) in flight. Each index is sent at most
 *       once: one lost with the connection (TDM_ECLOSED) may or may not be committed, and
 *       sending it again could commit it twice. Prints per reply
 *         "ack I LSN UID" (COMMIT_REPLY status 0), "refused I STATUS", "lost I",
 *       and at the end "done acked N lost M". Stops after COUNT or S seconds (default 60).
 *   tdm_ipc_client status SOCKET
 *       Prints "counter NAME VALUE" per STATUS_REPLY counter and
 *       "db NAME KIND STATE APPLIED_LSN COMMITS" per DB_STATUS_REPLY entry.
 *   tdm_ipc_client errors SOCKET DATABASE
 *       Commits what the core must refuse and prints "STATUS_NAME status" for each:
 *       unknown_database, bad_payload, unknown_type.
 *   tdm_ipc_client watch SOCKET DATABASE MAILBOX COUNT
 *       Subscribes to MAILBOX's folders, appends COUNT messages, then sets \Seen on UID 1, and
 *       prints "changed FOLDER EXISTS UIDNEXT HIGHESTMODSEQ" for each CHANGED until the one
 *       that follows the flag change.
 *   tdm_ipc_client fanout SOCKET DATABASE MAILBOX N
 *       Creates MAILBOX and folders f1..fN (N <= 9), subscribes, appends one message to INBOX
 *       and every fI at once, and prints "changed FOLDER EXISTS" until each folder was told.
 *   tdm_ipc_client quota SOCKET DATABASE MAILBOX BYTES MESSAGES
 *       Sets MAILBOX's quota (MAILBOX_SET_QUOTA; 0 = unlimited), as an operator tool would.
 *   tdm_ipc_client folder-delete SOCKET DATABASE MAILBOX FOLDER
 *       Deletes FOLDER (FOLDER_DELETE), whose children the store keeps: a hierarchy level
 *       that exists nowhere, which IMAP's DELETE never leaves (it refuses HASCHILDREN).
 *   tdm_ipc_client subs SOCKET DATABASE N [COMMITS [CORE_PID]]
 *       Creates mailboxes m0, m1, m2, m<N-1> and other (N >= 4), subscribes to the INBOX of
 *       m0..m<N-1> and to every folder of m0, unsubscribes m2, then appends one message each
 *       to the INBOX of m0, m1, other, m2, m<N-1> and m1 again, each after the last was
 *       answered, and prints "changed MAILBOX FOLDER EXISTS" per CHANGED until m1's second.
 *       With COMMITS, then appends that many to other's INBOX (which nobody watches: the
 *       common case of a delivery), 32 in flight, and prints
 *       "commits K seconds S" (bench/core_subs); with CORE_PID also "core_cpu_us LOOP ALL":
 *       CPU time the core's loop thread, and all its threads, spent meanwhile.
 *   tdm_ipc_client list DBDIR MAILBOX
 *       Prints "msg I" for each message in MAILBOX's INBOX (I from its GUID), by store_reader.
 * Exit 0, or 1 with a message on stderr.
 */
#include "lib/core_link.h"

#include "lib/err.h"
#include "lib/event.h"
#include "store/mail.h"
#include "store/store_reader.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct event_base *base;
static struct core_link *clink;
static struct event *tick;

static struct {
    const char *database, *mailbox;
    unsigned count, window, next, inflight, acked, lost;
    bool mailbox_done, mailbox_inflight;
    time_t deadline;
} cm;

static int
fail(const char *what, int ret)
{
    fprintf(stderr, "tdm_ipc_client: %s: %s\n", what, tdm_strerror(ret));
    return 1;
}

static int
encode_append(unsigned i, uint8_t **payload_r, size_t *len_r)
{
    struct mail_target t = {cm.mailbox, "INBOX"};
    char body[128];
    int n = snprintf(body, sizeof(body), "Subject: message %u\r\n\r\nbody of %u\r\n", i, i);
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &t,
                         .n_targets = 1,
                         .internal_date = 1700000000 + (int64_t)i,
                         .body = body,
                         .body_len = (size_t)n};
    memcpy(op.guid, &i, sizeof(i));
    const char *why;
    return mail_op_encode(&op, payload_r, len_r, &why);
}

static void pump(void);

static void
append_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    unsigned i = (unsigned)(uintptr_t)ctx;
    cm.inflight--;
    if (status < 0) {
        printf("lost %u\n", i);
        cm.lost++;
    } else if (reply->u.commit_reply.status == 0) {
        printf("ack %u %" PRIu64 " %u\n", i, reply->u.commit_reply.lsn,
               reply->u.commit_reply.first_uid);
        cm.acked++;
    } else {
        printf("refused %u %d\n", i, (int)reply->u.commit_reply.status);
    }
    fflush(stdout);
    /* Refill the window at once rather than at the next tick, so the tick's period does not
     * show in the commit rate. */
    if (status == 0)
        pump();
}

static void
mailbox_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    (void)ctx;
    cm.mailbox_inflight = false;
    if (status == 0 &&
        (reply->u.commit_reply.status == 0 || reply->u.commit_reply.status == TDM_EEXIST))
        cm.mailbox_done = true;
    else if (status == 0)
        fprintf(stderr, "tdm_ipc_client: mailbox create: %s\n",
                tdm_strerror(reply->u.commit_reply.status));
}

static void
pump(void)
{
    if (!core_link_ready(clink))
        return;
    if (!cm.mailbox_done) {
        if (cm.mailbox_inflight)
            return;
        struct mail_op op = {
            .type = TDM_REC_MAILBOX_CREATE, .mailbox = cm.mailbox, .uidvalidity = 1};
        uint8_t *p;
        size_t len;
        const char *why;
        if (mail_op_encode(&op, &p, &len, &why) < 0) {
            fprintf(stderr, "tdm_ipc_client: %s\n", why);
            exit(1);
        }
        if (core_link_commit(clink, cm.database, TDM_REC_MAILBOX_CREATE, p, len, mailbox_cb,
                             NULL) == 0)
            cm.mailbox_inflight = true;
        free(p);
        return;
    }
    while (cm.next <= cm.count && cm.inflight < cm.window) {
        uint8_t *p;
        size_t len;
        if (encode_append(cm.next, &p, &len) < 0)
            exit(fail("encode", -ENOMEM));
        int ret = core_link_commit(clink, cm.database, TDM_REC_MESSAGE_APPEND, p, len, append_cb,
                                   (void *)(uintptr_t)cm.next);
        free(p);
        if (ret == TDM_ECLOSED)
            return; /* the clink is down: this index was not sent; try it when back */
        if (ret < 0)
            exit(fail("commit", ret));
        cm.next++;
        cm.inflight++;
    }
}

static bool pumping; /* commit and watch append; status and errors do not */

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!pumping)
        return;
    pump();
    bool finished = cm.next > cm.count && cm.inflight == 0;
    if (finished || time(NULL) > cm.deadline)
        event_base_loopbreak(base);
}

static void
start_loop(const char *socket_path)
{
    event_set_sink(NULL);
    base = event_base_new();
    if (!base)
        exit(fail("event_base_new", -ENOMEM));
    int ret = core_link_new(base, socket_path, TDM_IPC_WORKER_ADMIN, &clink);
    if (ret < 0)
        exit(fail(socket_path, ret));
    tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 2000};
    event_add(tick, &tv);
}

static void
stop_loop(void)
{
    core_link_free(&clink);
    event_free(tick);
    event_base_free(base);
}

static int
cmd_commit(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    cm.database = argv[3];
    cm.mailbox = argv[4];
    cm.count = (unsigned)strtoul(argv[5], NULL, 10);
    cm.window = 4;
    unsigned seconds = 60;
    for (int i = 6; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--window"))
            cm.window = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else
            return 2;
    }
    cm.next = 1;
    cm.deadline = time(NULL) + seconds;
    pumping = true;
    start_loop(argv[2]);
    event_base_dispatch(base);
    stop_loop(); /* fails what is still in flight: printed as lost */
    printf("done acked %u lost %u\n", cm.acked, cm.lost);
    return 0;
}

/* ---- status, errors: one request after another ---- */

static unsigned answers;

static void
status_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    (void)ctx;
    answers++;
    if (status < 0) {
        printf("error %s\n", tdm_strerror(status));
        return;
    }
    if (reply->type == TDM_IPC_STATUS_REPLY) {
        for (uint32_t i = 0; i < reply->u.status_reply.n_counters; i++) {
            const struct ipc_counter *c = &reply->u.status_reply.counters[i];
            printf("counter %.*s %" PRIu64 "\n", (int)c->name.len, c->name.ptr, c->value);
        }
    } else {
        for (uint32_t i = 0; i < reply->u.db_status_reply.n_databases; i++) {
            const struct ipc_db_status *d = &reply->u.db_status_reply.databases[i];
            printf("db %.*s %.*s %s %" PRIu64 " %" PRIu64 "\n", (int)d->name.len, d->name.ptr,
                   (int)d->kind.len, d->kind.ptr, ipc_db_state_name(d->state), d->applied_lsn,
                   d->commits);
        }
    }
}

static void
wait_ready_or_exit(void)
{
    time_t deadline = time(NULL) + 30;
    while (!core_link_ready(clink)) {
        if (time(NULL) > deadline)
            exit(fail("connecting to the core", TDM_ECLOSED));
        event_base_loop(base, EVLOOP_ONCE);
    }
}

static void
wait_answers(unsigned n)
{
    while (answers < n)
        event_base_loop(base, EVLOOP_ONCE);
}

static int
cmd_status(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    start_loop(argv[2]);
    wait_ready_or_exit();
    int ret = core_link_status(clink, status_cb, NULL);
    if (ret == 0)
        ret = core_link_db_status(clink, status_cb, NULL);
    if (ret < 0)
        return fail("status", ret);
    wait_answers(2);
    stop_loop();
    return 0;
}

static void
error_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    answers++;
    printf("%s %d\n", (const char *)ctx, status < 0 ? status : reply->u.commit_reply.status);
}

static int
cmd_errors(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    start_loop(argv[2]);
    wait_ready_or_exit();
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    int ret = core_link_commit(clink, "no-such-database", TDM_REC_MAILBOX_CREATE, junk,
                               sizeof(junk), error_cb, "unknown_database");
    if (ret == 0)
        ret = core_link_commit(clink, argv[3], TDM_REC_MAILBOX_CREATE, junk, sizeof(junk), error_cb,
                               "bad_payload");
    if (ret == 0)
        ret = core_link_commit(clink, argv[3], TDM_REC_TEST_FIRST + 9, junk, sizeof(junk), error_cb,
                               "unknown_type");
    if (ret < 0)
        return fail("commit", ret);
    wait_answers(3);
    stop_loop();
    return 0;
}

/* ---- watch ---- */

static unsigned watch_target;
static bool watch_done;
static bool watch_flagged;    /* the flag change is sent */
static uint64_t watch_modseq; /* HIGHESTMODSEQ when it was sent */

static void
flags_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    (void)ctx;
    if (status < 0 || reply->u.commit_reply.status != 0)
        exit(fail("flags", status < 0 ? status : reply->u.commit_reply.status));
}

/* After the appends, \Seen on UID 1: a change that adds no message and must still be told. */
static void
send_flags(void)
{
    uint32_t uid = 1;
    struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                         .mailbox = cm.mailbox,
                         .folder = "INBOX",
                         .uids = &uid,
                         .n_uids = 1,
                         .flag_mode = MAIL_FLAGS_ADD,
                         .flags = MAIL_FLAG_SEEN};
    uint8_t *p;
    size_t len;
    const char *why;
    if (mail_op_encode(&op, &p, &len, &why) < 0)
        exit(fail("encode flags", TDM_EINVAL));
    int ret = core_link_commit(clink, cm.database, TDM_REC_MESSAGE_FLAGS, p, len, flags_cb, NULL);
    free(p);
    if (ret < 0)
        exit(fail("flags", ret));
}

static void
changed_cb(void *ctx, const struct ipc_msg *msg)
{
    (void)ctx;
    const struct ipc_changed *c = &msg->u.changed;
    printf("changed %.*s %u %u %" PRIu64 "\n", (int)c->folder.len, c->folder.ptr, c->exists,
           c->uidnext, c->highestmodseq);
    fflush(stdout);
    if (!watch_flagged && c->exists >= watch_target) {
        watch_flagged = true;
        watch_modseq = c->highestmodseq;
        send_flags();
    } else if (watch_flagged && c->highestmodseq > watch_modseq) {
        watch_done = true;
    }
}

static int
cmd_watch(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    cm.database = argv[3];
    cm.mailbox = argv[4];
    cm.count = watch_target = (unsigned)strtoul(argv[5], NULL, 10);
    cm.window = 1;
    cm.next = 1;
    cm.deadline = time(NULL) + 60;
    pumping = true;
    start_loop(argv[2]);
    core_link_set_changed_cb(clink, changed_cb, NULL);
    int ret = core_link_subscribe(clink, cm.database, cm.mailbox, NULL);
    if (ret < 0)
        return fail("subscribe", ret);
    while (!watch_done && time(NULL) <= cm.deadline)
        event_base_loop(base, EVLOOP_ONCE);
    stop_loop();
    return watch_done ? 0 : fail("waiting for CHANGED", TDM_ECLOSED);
}

/* ---- fanout ---- */

static bool op_done;
static int op_status;

static void
op_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    (void)ctx;
    op_done = true;
    op_status = status < 0 ? status : reply->u.commit_reply.status;
}

/* Commits op and waits for its reply; returns the store's status. */
static int
commit_op_wait(const struct mail_op *op)
{
    uint8_t *p;
    size_t len;
    const char *why;
    if (mail_op_encode(op, &p, &len, &why) < 0)
        exit(fail(why, TDM_EINVAL));
    op_done = false;
    int ret = core_link_commit(clink, cm.database, op->type, p, len, op_cb, NULL);
    free(p);
    if (ret < 0)
        return ret;
    while (!op_done)
        event_base_loop(base, EVLOOP_ONCE);
    return op_status;
}

static char fanout_seen[16];
static unsigned fanout_n;

static void
fanout_changed_cb(void *ctx, const struct ipc_msg *msg)
{
    (void)ctx;
    const struct ipc_changed *c = &msg->u.changed;
    printf("changed %.*s %u\n", (int)c->folder.len, c->folder.ptr, c->exists);
    fflush(stdout);
    unsigned i = 0;
    if (c->folder.len == 2 && c->folder.ptr[0] == 'f')
        i = (unsigned)(c->folder.ptr[1] - '0');
    if (i < sizeof(fanout_seen) && !fanout_seen[i]) {
        fanout_seen[i] = 1;
        fanout_n++;
    }
}

/* One append to INBOX and folders f1..fN of MAILBOX (N <= 9): a CHANGED for each. */
static int
cmd_fanout(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    cm.database = argv[3];
    cm.mailbox = argv[4];
    unsigned n = (unsigned)strtoul(argv[5], NULL, 10);
    if (n < 1 || n > 9)
        return 2;
    start_loop(argv[2]);
    wait_ready_or_exit();
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE, .mailbox = cm.mailbox, .uidvalidity = 1};
    int ret = commit_op_wait(&op);
    if (ret < 0)
        return fail("mailbox", ret);
    char names[10][3];
    struct mail_target targets[10] = {{cm.mailbox, "INBOX"}};
    for (unsigned i = 1; i <= n; i++) {
        snprintf(names[i], sizeof(names[i]), "f%u", i);
        op = (struct mail_op){
            .type = TDM_REC_FOLDER_CREATE, .mailbox = cm.mailbox, .folder = names[i]};
        if ((ret = commit_op_wait(&op)) < 0)
            return fail("folder", ret);
        targets[i] = (struct mail_target){cm.mailbox, names[i]};
    }
    core_link_set_changed_cb(clink, fanout_changed_cb, NULL);
    if ((ret = core_link_subscribe(clink, cm.database, cm.mailbox, NULL)) < 0)
        return fail("subscribe", ret);
    static const char body[] = "Subject: to many folders\r\n\r\nbody\r\n";
    op = (struct mail_op){.type = TDM_REC_MESSAGE_APPEND,
                          .targets = targets,
                          .n_targets = n + 1,
                          .internal_date = 1700000000,
                          .body = body,
                          .body_len = sizeof(body) - 1};
    if ((ret = commit_op_wait(&op)) < 0)
        return fail("append", ret);
    time_t deadline = time(NULL) + 30;
    while (fanout_n < n + 1 && time(NULL) <= deadline)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    stop_loop();
    return fanout_n == n + 1 ? 0 : fail("waiting for CHANGED", TDM_ECLOSED);
}

/* ---- quota ---- */

static int
cmd_quota(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    cm.database = argv[3];
    start_loop(argv[2]);
    wait_ready_or_exit();
    struct mail_op op = {.type = TDM_REC_MAILBOX_SET_QUOTA,
                         .mailbox = argv[4],
                         .quota_bytes = strtoull(argv[5], NULL, 10),
                         .quota_messages = strtoull(argv[6], NULL, 10)};
    int ret = commit_op_wait(&op);
    stop_loop();
    return ret < 0 ? fail("quota", ret) : 0;
}

/* ---- folder-delete ---- */

static int
cmd_folder_delete(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    cm.database = argv[3];
    start_loop(argv[2]);
    wait_ready_or_exit();
    struct mail_op op = {.type = TDM_REC_FOLDER_DELETE, .mailbox = argv[4], .folder = argv[5]};
    int ret = commit_op_wait(&op);
    stop_loop();
    return ret < 0 ? fail("folder-delete", ret) : 0;
}

/* ---- subs ---- */

static unsigned subs_m1_told; /* CHANGED of m1/INBOX so far */

static void
subs_changed_cb(void *ctx, const struct ipc_msg *msg)
{
    (void)ctx;
    const struct ipc_changed *c = &msg->u.changed;
    printf("changed %.*s %.*s %u\n", (int)c->mailbox.len, c->mailbox.ptr, (int)c->folder.len,
           c->folder.ptr, c->exists);
    fflush(stdout);
    if (c->mailbox.len == 2 && !memcmp(c->mailbox.ptr, "m1", 2))
        subs_m1_told++;
}

static int
subs_append(const char *mailbox)
{
    static const char body[] = "Subject: subscribed or not\r\n\r\nbody\r\n";
    struct mail_target target = {mailbox, "INBOX"};
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &target,
                         .n_targets = 1,
                         .internal_date = 1700000000,
                         .body = body,
                         .body_len = sizeof(body) - 1};
    return commit_op_wait(&op);
}

/* utime + stime of /proc/<pid>/task/<tid>/stat (tid 0: the whole process), in microseconds. */
static double
cpu_us(unsigned long pid, unsigned long tid)
{
    char path[64], buf[1024];
    if (tid)
        snprintf(path, sizeof(path), "/proc/%lu/task/%lu/stat", pid, tid);
    else
        snprintf(path, sizeof(path), "/proc/%lu/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static int
cmd_subs(int argc, char **argv)
{
    if (argc < 5 || argc > 7)
        return 2;
    cm.database = argv[3];
    unsigned n = (unsigned)strtoul(argv[4], NULL, 10);
    if (n < 4)
        return 2;
    char last[16];
    snprintf(last, sizeof(last), "m%u", n - 1);
    start_loop(argv[2]);
    wait_ready_or_exit();
    const char *mailboxes[] = {"m0", "m1", "m2", last, "other"};
    for (size_t i = 0; i < 5; i++) {
        struct mail_op op = {
            .type = TDM_REC_MAILBOX_CREATE, .mailbox = mailboxes[i], .uidvalidity = 1};
        int ret = commit_op_wait(&op);
        if (ret < 0 && ret != TDM_EEXIST)
            return fail("mailbox", ret);
    }
    core_link_set_changed_cb(clink, subs_changed_cb, NULL);
    for (unsigned i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%u", i);
        int ret = core_link_subscribe(clink, cm.database, name, "INBOX");
        if (ret < 0)
            return fail("subscribe", ret);
    }
    int ret = core_link_subscribe(clink, cm.database, "m0", NULL);
    if (ret == 0)
        ret = core_link_unsubscribe(clink, cm.database, "m2", "INBOX");
    if (ret < 0)
        return fail("subscribe", ret);
    /* The core reads one connection's frames in order: these come after every SUBSCRIBE. */
    const char *order[] = {"m0", "m1", "other", "m2", last, "m1"};
    for (size_t i = 0; i < 6; i++)
        if ((ret = subs_append(order[i])) < 0)
            return fail("append", ret);
    time_t deadline = time(NULL) + 30;
    while (subs_m1_told < 2 && time(NULL) <= deadline)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (subs_m1_told < 2)
        return fail("waiting for CHANGED", TDM_ECLOSED);
    if (argc >= 6) {
        unsigned long core = argc == 7 ? strtoul(argv[6], NULL, 10) : 0;
        double loop0 = core ? cpu_us(core, core) : 0, all0 = core ? cpu_us(core, 0) : 0;
        cm.mailbox = "other";
        cm.count = (unsigned)strtoul(argv[5], NULL, 10);
        cm.window = 32;
        cm.next = 1;
        cm.deadline = time(NULL) + 600;
        cm.mailbox_done = true;
        core_link_set_changed_cb(clink, NULL, NULL);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pumping = true;
        event_base_dispatch(base);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("commits %u seconds %.6f\n", cm.acked,
               (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        if (core)
            printf("core_cpu_us %.0f %.0f\n", cpu_us(core, core) - loop0, cpu_us(core, 0) - all0);
    }
    stop_loop();
    return 0;
}

/* ---- list ---- */

static int
list_cb(void *ctx, const struct mail_message_info *info)
{
    (void)ctx;
    unsigned i;
    memcpy(&i, info->guid, sizeof(i));
    printf("msg %u\n", i);
    return 0;
}

static int
cmd_list(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    event_set_sink(NULL);
    struct store_reader *r;
    const char *why;
    int ret = store_reader_open(argv[2], NULL, &r, &why);
    if (ret < 0) {
        fprintf(stderr, "tdm_ipc_client: %s\n", why);
        return 1;
    }
    MDB_txn *txn;
    ret = store_reader_begin(r, &txn);
    if (ret == 0) {
        ret = mail_message_list(store_reader_mail_dbis(r), txn, argv[3], "INBOX", list_cb, NULL);
        mdb_txn_abort(txn);
    }
    store_reader_free(&r);
    return ret < 0 ? fail("list", ret) : 0;
}

int
main(int argc, char **argv)
{
    int ret = 2;
    if (argc >= 2 && !strcmp(argv[1], "commit"))
        ret = cmd_commit(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "status"))
        ret = cmd_status(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "errors"))
        ret = cmd_errors(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "watch"))
        ret = cmd_watch(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "fanout"))
        ret = cmd_fanout(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "quota"))
        ret = cmd_quota(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "folder-delete"))
        ret = cmd_folder_delete(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "subs"))
        ret = cmd_subs(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "list"))
        ret = cmd_list(argc, argv);
    if (ret == 2)
        fprintf(stderr, "usage: see the comment at the top of tests/integration/ipc_client.c\n");
    return ret;
}
