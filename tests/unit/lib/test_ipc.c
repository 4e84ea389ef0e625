/*
 * IPC codec tests (src/lib/ipc.c, layout in include/tandem/ipc.h).
 *
 * A table of sample messages with edge values drives most tests: round trip, every
 * truncation, every bit flip, every split of a stream. Hand-built frames (raw_* below, written
 * from the layout in ipc.h, not with the encoder) pin the byte layout and check each decoder
 * error string.
 *
 * `unit_lib_ipc --write-corpus DIR` writes the fuzz seed corpus (fuzz/corpus/ipc/) from the
 * same samples instead of running the tests.
 */
#include "lib/ipc.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- Sample messages ---- */

#define MAX_SAMPLES 64

static struct ipc_msg samples[MAX_SAMPLES];
static const char *sample_names[MAX_SAMPLES];
static size_t n_samples;

static char name255[TDM_IPC_NAME_MAX + 1];
static char utf8_255[TDM_IPC_NAME_MAX + 1];
static char reason1024[TDM_IPC_REASON_MAX + 1];
static uint8_t payload_all_bytes[1024];
static char counter_names[TDM_IPC_MAX_COUNTERS][TDM_IPC_COUNTER_NAME_MAX + 1];

static struct ipc_msg *
add_sample(const char *name, uint16_t type, uint32_t request_id)
{
    assert_true(n_samples < MAX_SAMPLES);
    struct ipc_msg *m = &samples[n_samples];
    sample_names[n_samples++] = name;
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->request_id = request_id;
    return m;
}

static void
init_samples(void)
{
    if (n_samples > 0)
        return;
    memset(name255, 'n', TDM_IPC_NAME_MAX);
    /* 85 copies of a 3-byte UTF-8 character: multi-byte names are just bytes to the codec. */
    for (size_t i = 0; i + 3 <= TDM_IPC_NAME_MAX; i += 3)
        memcpy(utf8_255 + i, "\xe2\x82\xac", 3);
    memset(reason1024, 'r', TDM_IPC_REASON_MAX);
    for (size_t i = 0; i < sizeof(payload_all_bytes); i++)
        payload_all_bytes[i] = (uint8_t)i;
    for (unsigned i = 0; i < TDM_IPC_MAX_COUNTERS; i++) {
        /* Unique (the digits), lengths 4..123 and one of the maximum, starting with a letter
         * or _. */
        size_t len = i == TDM_IPC_MAX_COUNTERS - 1 ? TDM_IPC_COUNTER_NAME_MAX : 4 + i % 120;
        char *name = counter_names[i];
        name[0] = i % 2 ? '_' : (char)('A' + i % 26);
        snprintf(name + 1, 4, "%03u", i % 1000);
        memset(name + 4, 'z', len - 4);
        name[len] = 0;
    }

    struct ipc_msg *m;
    m = add_sample("hello_min", TDM_IPC_HELLO, 1);
    m->u.hello = (struct ipc_hello){TDM_IPC_WORKER_IMAP, 1, 1, 1};
    m = add_sample("hello_max", TDM_IPC_HELLO, UINT32_MAX);
    m->u.hello = (struct ipc_hello){TDM_IPC_WORKER_ADMIN, UINT32_MAX, 1, UINT16_MAX};

    m = add_sample("hello_reply_accept", TDM_IPC_HELLO_REPLY, 7);
    m->u.hello_reply = (struct ipc_hello_reply){1, {NULL, 0}};
    m = add_sample("hello_reply_refuse", TDM_IPC_HELLO_REPLY, 7);
    m->u.hello_reply = (struct ipc_hello_reply){0, {reason1024, TDM_IPC_REASON_MAX}};

    m = add_sample("commit_empty", TDM_IPC_COMMIT, 2);
    m->u.commit = (struct ipc_commit){ipc_str_c("d"), TDM_REC_NOOP, NULL, 0};
    m = add_sample("commit_bytes", TDM_IPC_COMMIT, 0x01020304);
    m->u.commit = (struct ipc_commit){
        {name255, TDM_IPC_NAME_MAX}, UINT16_MAX, payload_all_bytes, sizeof(payload_all_bytes)};

    m = add_sample("commit_reply_none", TDM_IPC_COMMIT_REPLY, 2);
    m->u.commit_reply.lsn = UINT64_MAX;
    m->u.commit_reply.modseq = 1;
    m = add_sample("commit_reply_64", TDM_IPC_COMMIT_REPLY, 0x01020304);
    struct ipc_commit_reply *cr = &m->u.commit_reply;
    *cr = (struct ipc_commit_reply){INT32_MIN, 42, UINT32_MAX, 1, 64, UINT64_MAX, 64, {{0}}};
    for (uint32_t i = 0; i < TDM_IPC_MAX_TARGETS; i++)
        cr->targets[i] =
            (struct ipc_commit_target){i % 3 ? 0 : TDM_EQUOTA - (int32_t)i, i + 1, UINT32_MAX - i};
    cr->targets[63].status = INT32_MIN;

    m = add_sample("subscribe_all_folders", TDM_IPC_SUBSCRIBE, 0);
    m->u.subscribe = (struct ipc_subscribe){ipc_str_c("db1"), ipc_str_c("alice"), {NULL, 0}};
    m = add_sample("unsubscribe_long", TDM_IPC_UNSUBSCRIBE, 0);
    m->u.subscribe = (struct ipc_subscribe){
        {name255, TDM_IPC_NAME_MAX}, {utf8_255, TDM_IPC_NAME_MAX}, {utf8_255, TDM_IPC_NAME_MAX}};

    m = add_sample("changed_zero", TDM_IPC_CHANGED, 0);
    m->u.changed = (struct ipc_changed){ipc_str_c("d"), ipc_str_c("m"), ipc_str_c("f"), 0, 0, 0, 0};
    m = add_sample("changed_max", TDM_IPC_CHANGED, 0);
    m->u.changed = (struct ipc_changed){ipc_str_c("db1"), ipc_str_c("bob"), ipc_str_c("INBOX/Work"),
                                        UINT32_MAX,       UINT32_MAX,       UINT32_MAX,
                                        UINT64_MAX};

    m = add_sample("folder_created", TDM_IPC_FOLDER_CHANGED, 0);
    m->u.folder_changed = (struct ipc_folder_changed){
        ipc_str_c("d"), ipc_str_c("m"), ipc_str_c("f"), TDM_IPC_FOLDER_CREATED, {NULL, 0}, 1};
    m = add_sample("folder_deleted", TDM_IPC_FOLDER_CHANGED, 0);
    m->u.folder_changed =
        (struct ipc_folder_changed){ipc_str_c("db1"),       ipc_str_c("bob"), ipc_str_c("Work"),
                                    TDM_IPC_FOLDER_DELETED, {NULL, 0},        0};
    m = add_sample("folder_renamed_long", TDM_IPC_FOLDER_CHANGED, 0);
    m->u.folder_changed = (struct ipc_folder_changed){
        {name255, TDM_IPC_NAME_MAX}, {utf8_255, TDM_IPC_NAME_MAX}, {utf8_255, TDM_IPC_NAME_MAX},
        TDM_IPC_FOLDER_RENAMED,      {utf8_255, TDM_IPC_NAME_MAX}, UINT32_MAX};

    m = add_sample("db_dismounted_none", TDM_IPC_DB_DISMOUNTED, 0);
    m = add_sample("db_dismounted_max", TDM_IPC_DB_DISMOUNTED, 0);
    m->u.db_dismounted.n_databases = TDM_IPC_MAX_DATABASES;
    for (uint32_t i = 0; i < TDM_IPC_MAX_DATABASES; i++) /* "a", "aa"...: ascending by length */
        m->u.db_dismounted.databases[i] = (struct ipc_str){name255, 1 + i};
    m->u.db_dismounted.databases[TDM_IPC_MAX_DATABASES - 1] =
        (struct ipc_str){name255, TDM_IPC_NAME_MAX};

    m = add_sample("shutdown_short", TDM_IPC_SHUTDOWN, 0);
    m->u.shutdown = (struct ipc_shutdown){ipc_str_c("x"), 0};
    m = add_sample("shutdown_long", TDM_IPC_SHUTDOWN, 0);
    m->u.shutdown = (struct ipc_shutdown){{reason1024, TDM_IPC_REASON_MAX}, UINT32_MAX};

    m = add_sample("reload_zero", TDM_IPC_RELOAD, 0);
    m = add_sample("reload_max", TDM_IPC_RELOAD, 0);
    m->u.reload.generation = UINT64_MAX;

    m = add_sample("status_request", TDM_IPC_STATUS_REQUEST, 9);

    m = add_sample("status_reply_empty", TDM_IPC_STATUS_REPLY, 9);
    m = add_sample("status_reply_some", TDM_IPC_STATUS_REPLY, 10);
    m->u.status_reply.n_counters = 3;
    m->u.status_reply.counters[0] = (struct ipc_counter){ipc_str_c("commits_total"), 12345};
    m->u.status_reply.counters[1] = (struct ipc_counter){ipc_str_c("_"), 0};
    m->u.status_reply.counters[2] = (struct ipc_counter){ipc_str_c("imap_sessions2"), UINT64_MAX};
    m = add_sample("status_reply_full", TDM_IPC_STATUS_REPLY, 11);
    m->u.status_reply.n_counters = TDM_IPC_MAX_COUNTERS;
    for (uint32_t i = 0; i < TDM_IPC_MAX_COUNTERS; i++)
        m->u.status_reply.counters[i] =
            (struct ipc_counter){ipc_str_c(counter_names[i]), (uint64_t)i << 40 | i};

    m = add_sample("db_status_request", TDM_IPC_DB_STATUS_REQUEST, 12);
    m = add_sample("db_status_reply_empty", TDM_IPC_DB_STATUS_REPLY, 12);
    m = add_sample("db_status_reply_some", TDM_IPC_DB_STATUS_REPLY, 13);
    struct ipc_db_status_reply *ds = &m->u.db_status_reply;
    ds->n_databases = 3;
    /* A prefix sorts first; a failed mount has no kind and zero figures. */
    ds->databases[0] = (struct ipc_db_status){ipc_str_c("db"), ipc_str_c("mail"),
                                              TDM_IPC_DB_MOUNTED, 9, 9, 8, 4, 3, 1, 9, 2, 1};
    ds->databases[1] = (struct ipc_db_status){.name = ipc_str_c("db1"), .state = TDM_IPC_DB_FAILED};
    ds->databases[2] = (struct ipc_db_status){ipc_str_c("directory"), ipc_str_c("directory"),
                                              TDM_IPC_DB_DISK_RESERVE, UINT64_MAX, UINT64_MAX,
                                              UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
                                              UINT64_MAX, UINT64_MAX, 2};
    m = add_sample("db_status_reply_full", TDM_IPC_DB_STATUS_REPLY, 14);
    ds = &m->u.db_status_reply;
    ds->n_databases = TDM_IPC_MAX_DATABASES;
    for (uint32_t i = 0; i < TDM_IPC_MAX_DATABASES; i++) {
        /* counter_names start with distinct "X%03u": ascending by their digits once the
         * first letter is fixed, so use the digits alone. */
        ds->databases[i] = (struct ipc_db_status){
            {counter_names[i] + 1, 3}, {name255, TDM_IPC_KIND_MAX}, TDM_IPC_DB_MOUNTED, i, i, i, i, i,
            i, i, i, (uint16_t)(i % 3)};
    }

    m = add_sample("copy_status_request", TDM_IPC_COPY_STATUS_REQUEST, 15);
    m = add_sample("copy_status_reply_empty", TDM_IPC_COPY_STATUS_REPLY, 15);
    m = add_sample("copy_status_reply_some", TDM_IPC_COPY_STATUS_REPLY, 16);
    struct ipc_copy_status_reply *cs = &m->u.copy_status_reply;
    cs->n_copies = 2;
    cs->total = 2;
    cs->copies[0] = (struct ipc_copy_status){
        .name = ipc_str_c("db"), .state = TDM_IPC_COPY_HEALTHY, .role = 1, .mode = 2,
        .compression = 1, .wire_bytes = 10, .wire_log_bytes = 11,
        .message = ipc_str_c("block mode"), .network = ipc_str_c("replication"),
        .endpoint = ipc_str_c("[2001:db8::1]:7433"), .inspection_failures = 2,
        .source_generation = 7, .source_durable_end = 4096, .source_lsn = 99,
        .source_time_us = UINT64_MAX, .copied_generation = 7, .copied_offset = 4096,
        .copied_lsn = 99, .inspected_generation = 6, .replayed_generation = 6,
        .replayed_lsn = 98, .last_copied_us = 1, .last_inspected_us = 2, .last_replayed_us = 3,
        .copy_queue_generations = 4, .copy_queue_bytes = 5, .replay_queue_generations = 6,
        .replay_queue_records = 7, .bytes_received = 8, .bytes_per_second = 9};
    /* A copy whose agent never started: Failed, nothing but its reason. */
    cs->copies[1] = (struct ipc_copy_status){.name = ipc_str_c("db1"),
                                             .state = TDM_IPC_COPY_FAILED,
                                             .role = 2,
                                             .message = {reason1024, TDM_IPC_REASON_MAX}};
    m = add_sample("copy_status_reply_full", TDM_IPC_COPY_STATUS_REPLY, 17);
    cs = &m->u.copy_status_reply;
    cs->n_copies = TDM_IPC_MAX_COPIES;
    cs->total = 1000; /* more than one reply lists */
    for (uint32_t i = 0; i < TDM_IPC_MAX_COPIES; i++)
        cs->copies[i] = (struct ipc_copy_status){.name = {counter_names[i] + 1, 3},
                                                 .state = TDM_IPC_COPY_SEEDING,
                                                 .role = 1,
                                                 .network = {name255, TDM_IPC_NETWORK_MAX},
                                                 .endpoint = {name255, TDM_IPC_NETWORK_MAX},
                                                 .bytes_per_second = i};
    m = add_sample("copy_control_suspend", TDM_IPC_COPY_CONTROL, 18);
    m->u.copy_control = (struct ipc_copy_control){ipc_str_c("db"), TDM_IPC_COPY_SUSPEND,
                                                  {reason1024, TDM_IPC_REASON_MAX}};
    m = add_sample("copy_control_resume", TDM_IPC_COPY_CONTROL, 19);
    m->u.copy_control = (struct ipc_copy_control){{utf8_255, 255}, TDM_IPC_COPY_RESUME, {0}};
    m = add_sample("copy_control_activate", TDM_IPC_COPY_CONTROL, 20);
    m->u.copy_control = (struct ipc_copy_control){ipc_str_c("db"), TDM_IPC_COPY_ACTIVATE, {0}};
    m = add_sample("copy_control_activate_force", TDM_IPC_COPY_CONTROL, 21);
    m->u.copy_control =
        (struct ipc_copy_control){ipc_str_c("db"), TDM_IPC_COPY_ACTIVATE_FORCE, {0}};
    m = add_sample("copy_control_remove", TDM_IPC_COPY_CONTROL, 22);
    m->u.copy_control = (struct ipc_copy_control){ipc_str_c("db"), TDM_IPC_COPY_REMOVE, {0}};
    m = add_sample("db_dismount", TDM_IPC_COPY_CONTROL, 23);
    m->u.copy_control = (struct ipc_copy_control){ipc_str_c("db"), TDM_IPC_DB_DISMOUNT, {0}};
    m = add_sample("db_mount", TDM_IPC_COPY_CONTROL, 24);
    m->u.copy_control = (struct ipc_copy_control){{utf8_255, 255}, TDM_IPC_DB_MOUNT, {0}};
    m = add_sample("copy_control_reply", TDM_IPC_COPY_CONTROL_REPLY, 19);
    m->u.copy_control_reply.status = -2;

    m = add_sample("cms_control_up", TDM_IPC_CMS_CONTROL, 0);
    m->u.cms = (struct ipc_cms){ipc_str_c("mail1"), 0, TDM_IPC_CMS_UP};
    m = add_sample("cms_control_down", TDM_IPC_CMS_CONTROL, 0);
    m->u.cms = (struct ipc_cms){{name255, TDM_IPC_NAME_MAX}, 0, TDM_IPC_CMS_DOWN};
    m = add_sample("cms_state_binding", TDM_IPC_CMS_STATE, 0);
    m->u.cms = (struct ipc_cms){ipc_str_c("mail1"), 0, TDM_IPC_CMS_BINDING};
    m = add_sample("cms_listen_up", TDM_IPC_CMS_LISTEN, 0);
    m->u.cms = (struct ipc_cms){ipc_str_c("mail1"), TDM_IPC_PROTO_MAX - 1, TDM_IPC_CMS_UP};
    m = add_sample("cms_listen_down", TDM_IPC_CMS_LISTEN, 0);
    m->u.cms = (struct ipc_cms){ipc_str_c("mail1"), 0, TDM_IPC_CMS_DOWN};
    m = add_sample("cms_status_request", TDM_IPC_CMS_STATUS_REQUEST, 23);
    m = add_sample("cms_status_reply_none", TDM_IPC_CMS_STATUS_REPLY, 24);
    m = add_sample("cms_status_reply_max", TDM_IPC_CMS_STATUS_REPLY, 25);
    m->u.cms_status_reply.n_cms = TDM_IPC_MAX_CMS;
    for (uint32_t i = 0; i < TDM_IPC_MAX_CMS; i++)
        m->u.cms_status_reply.cms[i] =
            (struct ipc_cms_status){{name255, 1 + i}, (uint16_t)(i % 3)};
    m = add_sample("cluster_status_request", TDM_IPC_CLUSTER_STATUS_REQUEST, 26);
    m = add_sample("cluster_status_reply_empty", TDM_IPC_CLUSTER_STATUS_REPLY, 27);
    m->u.cluster_status_reply.json = ipc_str_c("{}");
    m = add_sample("cluster_status_reply", TDM_IPC_CLUSTER_STATUS_REPLY, 28);
    m->u.cluster_status_reply.json = ipc_str_c(
        "{\"server\":\"a\",\"role\":\"node\",\"cluster\":\"ccr1\",\"votes\":3,"
        "\"votes_seen\":2,\"quorum\":2,\"members\":[{\"name\":\"b\",\"state\":\"down\"}]}");
    m = add_sample("cms_move", TDM_IPC_CMS_MOVE, 29);
    m->u.cms_move = (struct ipc_cms_move){ipc_str_c("mail1"), ipc_str_c("b"),
                                          ipc_str_c("patching a")};
    m = add_sample("cms_move_reply_ok", TDM_IPC_CMS_MOVE_REPLY, 30);
    m = add_sample("cms_move_reply_refused", TDM_IPC_CMS_MOVE_REPLY, 31);
    m->u.cms_move_reply.status = TDM_ECONFLICT;
    m->u.cms_move_reply.error = ipc_str_c("a move of mail1 to b is already running");
}

static uint8_t *
encode_sample(size_t i, size_t *len_r)
{
    uint8_t *buf = NULL;
    const char *error = NULL;
    int rc = ipc_msg_encode_alloc(&samples[i], &buf, len_r, &error);
    if (rc != 0)
        fail_msg("%s: encode failed: %s", sample_names[i], error);
    return buf;
}

static bool
str_equal(const struct ipc_str *a, const struct ipc_str *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

/* Field-by-field, strings by content. */
static bool
msg_equal(const struct ipc_msg *a, const struct ipc_msg *b)
{
    if (a->type != b->type || a->request_id != b->request_id)
        return false;
    switch (a->type) {
    case TDM_IPC_HELLO:
        return memcmp(&a->u.hello, &b->u.hello, sizeof(a->u.hello)) == 0;
    case TDM_IPC_HELLO_REPLY:
        return a->u.hello_reply.version == b->u.hello_reply.version &&
               str_equal(&a->u.hello_reply.reason, &b->u.hello_reply.reason);
    case TDM_IPC_COMMIT: {
        const struct ipc_commit *x = &a->u.commit, *y = &b->u.commit;
        return str_equal(&x->database, &y->database) && x->record_type == y->record_type &&
               x->payload_len == y->payload_len &&
               (x->payload_len == 0 || memcmp(x->payload, y->payload, x->payload_len) == 0);
    }
    case TDM_IPC_COMMIT_REPLY: {
        const struct ipc_commit_reply *x = &a->u.commit_reply, *y = &b->u.commit_reply;
        if (x->status != y->status || x->lsn != y->lsn || x->uidvalidity != y->uidvalidity ||
            x->first_uid != y->first_uid || x->count != y->count || x->modseq != y->modseq ||
            x->n_targets != y->n_targets)
            return false;
        for (uint32_t i = 0; i < x->n_targets; i++)
            if (x->targets[i].status != y->targets[i].status ||
                x->targets[i].uid != y->targets[i].uid ||
                x->targets[i].uidvalidity != y->targets[i].uidvalidity)
                return false;
        return true;
    }
    case TDM_IPC_SUBSCRIBE:
    case TDM_IPC_UNSUBSCRIBE:
        return str_equal(&a->u.subscribe.database, &b->u.subscribe.database) &&
               str_equal(&a->u.subscribe.mailbox, &b->u.subscribe.mailbox) &&
               str_equal(&a->u.subscribe.folder, &b->u.subscribe.folder);
    case TDM_IPC_CHANGED: {
        const struct ipc_changed *x = &a->u.changed, *y = &b->u.changed;
        return str_equal(&x->database, &y->database) && str_equal(&x->mailbox, &y->mailbox) &&
               str_equal(&x->folder, &y->folder) && x->uidvalidity == y->uidvalidity &&
               x->uidnext == y->uidnext && x->exists == y->exists &&
               x->highestmodseq == y->highestmodseq;
    }
    case TDM_IPC_FOLDER_CHANGED: {
        const struct ipc_folder_changed *x = &a->u.folder_changed, *y = &b->u.folder_changed;
        return str_equal(&x->database, &y->database) && str_equal(&x->mailbox, &y->mailbox) &&
               str_equal(&x->folder, &y->folder) && x->change == y->change &&
               str_equal(&x->new_folder, &y->new_folder) && x->uidvalidity == y->uidvalidity;
    }
    case TDM_IPC_DB_DISMOUNTED: {
        const struct ipc_db_dismounted *x = &a->u.db_dismounted, *y = &b->u.db_dismounted;
        if (x->n_databases != y->n_databases)
            return false;
        for (uint32_t i = 0; i < x->n_databases; i++)
            if (!str_equal(&x->databases[i], &y->databases[i]))
                return false;
        return true;
    }
    case TDM_IPC_SHUTDOWN:
        return str_equal(&a->u.shutdown.reason, &b->u.shutdown.reason) &&
               a->u.shutdown.deadline_ms == b->u.shutdown.deadline_ms;
    case TDM_IPC_RELOAD:
        return a->u.reload.generation == b->u.reload.generation;
    case TDM_IPC_STATUS_REQUEST:
    case TDM_IPC_DB_STATUS_REQUEST:
    case TDM_IPC_COPY_STATUS_REQUEST:
        return true;
    case TDM_IPC_COPY_STATUS_REPLY: {
        const struct ipc_copy_status_reply *x = &a->u.copy_status_reply,
                                           *y = &b->u.copy_status_reply;
        if (x->n_copies != y->n_copies || x->total != y->total)
            return false;
        for (uint32_t i = 0; i < x->n_copies; i++) {
            const struct ipc_copy_status *p = &x->copies[i], *q = &y->copies[i];
            if (!str_equal(&p->name, &q->name) || !str_equal(&p->message, &q->message) ||
                !str_equal(&p->network, &q->network) || !str_equal(&p->endpoint, &q->endpoint) ||
                p->state != q->state || p->role != q->role || p->mode != q->mode ||
                p->compression != q->compression ||
                p->inspection_failures != q->inspection_failures)
                return false;
            /* The figures are the tail of the struct, after the last pointer. */
            size_t off = offsetof(struct ipc_copy_status, source_generation);
            if (memcmp((const char *)p + off, (const char *)q + off,
                       TDM_IPC_COPY_N_FIGURES * sizeof(uint64_t)) != 0)
                return false;
        }
        return true;
    }
    case TDM_IPC_COPY_CONTROL:
        return str_equal(&a->u.copy_control.database, &b->u.copy_control.database) &&
               a->u.copy_control.action == b->u.copy_control.action &&
               str_equal(&a->u.copy_control.comment, &b->u.copy_control.comment);
    case TDM_IPC_COPY_CONTROL_REPLY:
        return a->u.copy_control_reply.status == b->u.copy_control_reply.status;
    case TDM_IPC_CMS_CONTROL:
    case TDM_IPC_CMS_STATE:
    case TDM_IPC_CMS_LISTEN:
        return str_equal(&a->u.cms.cms, &b->u.cms.cms) && a->u.cms.proto == b->u.cms.proto &&
               a->u.cms.state == b->u.cms.state;
    case TDM_IPC_CMS_STATUS_REQUEST:
        return true;
    case TDM_IPC_CMS_STATUS_REPLY: {
        const struct ipc_cms_status_reply *x = &a->u.cms_status_reply,
                                          *y = &b->u.cms_status_reply;
        if (x->n_cms != y->n_cms)
            return false;
        for (uint32_t i = 0; i < x->n_cms; i++)
            if (!str_equal(&x->cms[i].name, &y->cms[i].name) ||
                x->cms[i].state != y->cms[i].state)
                return false;
        return true;
    }
    case TDM_IPC_CLUSTER_STATUS_REQUEST:
        return true;
    case TDM_IPC_CLUSTER_STATUS_REPLY:
        return str_equal(&a->u.cluster_status_reply.json, &b->u.cluster_status_reply.json);
    case TDM_IPC_CMS_MOVE:
        return str_equal(&a->u.cms_move.cms, &b->u.cms_move.cms) &&
               str_equal(&a->u.cms_move.to, &b->u.cms_move.to) &&
               str_equal(&a->u.cms_move.comment, &b->u.cms_move.comment);
    case TDM_IPC_CMS_MOVE_REPLY:
        return a->u.cms_move_reply.status == b->u.cms_move_reply.status &&
               str_equal(&a->u.cms_move_reply.error, &b->u.cms_move_reply.error);
    case TDM_IPC_DB_STATUS_REPLY: {
        const struct ipc_db_status_reply *x = &a->u.db_status_reply, *y = &b->u.db_status_reply;
        if (x->n_databases != y->n_databases)
            return false;
        for (uint32_t i = 0; i < x->n_databases; i++) {
            const struct ipc_db_status *p = &x->databases[i], *q = &y->databases[i];
            if (!str_equal(&p->name, &q->name) || !str_equal(&p->kind, &q->kind) ||
                p->state != q->state || p->last_lsn != q->last_lsn ||
                p->durable_lsn != q->durable_lsn || p->applied_lsn != q->applied_lsn ||
                p->checkpoint_lsn != q->checkpoint_lsn ||
                p->current_generation != q->current_generation ||
                p->lowest_generation != q->lowest_generation || p->commits != q->commits ||
                p->syncs != q->syncs)
                return false;
        }
        return true;
    }
    case TDM_IPC_STATUS_REPLY: {
        const struct ipc_status_reply *x = &a->u.status_reply, *y = &b->u.status_reply;
        if (x->n_counters != y->n_counters)
            return false;
        for (uint32_t i = 0; i < x->n_counters; i++)
            if (!str_equal(&x->counters[i].name, &y->counters[i].name) ||
                x->counters[i].value != y->counters[i].value)
                return false;
        return true;
    }
    default:
        return false;
    }
}

/* Decodes buf and checks that it re-encodes to exactly buf. Returns the decode status. */
static int
decode_strict(const uint8_t *buf, size_t len, struct ipc_msg *msg, const char **error_r)
{
    size_t flen = 0;
    *error_r = NULL;
    int rc = ipc_msg_decode(buf, len, msg, &flen, error_r);
    if (rc != 0) {
        assert_non_null(*error_r);
        return rc;
    }
    assert_int_equal(flen, len);
    uint8_t *again = NULL;
    size_t again_len = 0;
    const char *error = NULL;
    assert_int_equal(ipc_msg_encode_alloc(msg, &again, &again_len, &error), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, buf, len);
    free(again);
    return 0;
}

static bool
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- Hand-built frames ---- */

struct raw {
    uint8_t b[8192];
    size_t n;
};

static void
raw_bytes(struct raw *r, const void *p, size_t n)
{
    assert_true(r->n + n <= sizeof(r->b));
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void
raw_le(struct raw *r, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) {
        uint8_t byte = (uint8_t)(v >> (8 * i));
        raw_bytes(r, &byte, 1);
    }
}

static void
raw_tagged(struct raw *r, uint8_t tag, uint64_t v, int width)
{
    raw_le(r, tag, 1);
    raw_le(r, v, width);
}

static void
raw_str(struct raw *r, uint8_t tag, const char *s)
{
    raw_le(r, tag, 1);
    raw_le(r, strlen(s), 4);
    raw_bytes(r, s, strlen(s));
}

/* Wraps payload into a frame with the given header fields and a correct CRC. */
static size_t
raw_frame(uint16_t version, uint16_t type, uint32_t id, uint32_t flags, const struct raw *payload,
          uint8_t *out)
{
    struct raw f = {.n = 0};
    raw_le(&f, TDM_IPC_FRAME_OVERHEAD + payload->n, 4);
    raw_le(&f, version, 2);
    raw_le(&f, type, 2);
    raw_le(&f, id, 4);
    raw_le(&f, flags, 4);
    raw_bytes(&f, payload->b, payload->n);
    raw_le(&f, crc32c_sw(0, f.b, f.n), 4);
    memcpy(out, f.b, f.n);
    return f.n;
}

/* Rewrites the length field and CRC after a change to the frame's bytes. */
static void
refresh_frame(uint8_t *buf, size_t len)
{
    for (int i = 0; i < 4; i++)
        buf[i] = (uint8_t)(len >> (8 * i));
    uint32_t crc = crc32c(0, buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + i] = (uint8_t)(crc >> (8 * i));
}

/* ---- Tests ---- */

static void
test_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0, size = 0;
        const char *error = NULL;
        uint8_t *buf = encode_sample(i, &len);
        assert_int_equal(ipc_msg_size(&samples[i], &size, &error), 0);
        assert_int_equal(size, len);

        struct ipc_msg out;
        if (decode_strict(buf, len, &out, &error) != 0)
            fail_msg("%s: %s", sample_names[i], error);
        if (!msg_equal(&samples[i], &out))
            fail_msg("%s: decoded message differs", sample_names[i]);

        /* Strings and bytes borrow from the frame: no copies. */
        if (out.type == TDM_IPC_COMMIT && out.u.commit.payload_len > 0) {
            assert_true(out.u.commit.payload > buf);
            assert_true(out.u.commit.payload + out.u.commit.payload_len <= buf + len);
        }

        /* Into a caller's buffer: exact fit works, one byte less does not. */
        uint8_t *exact = malloc(len);
        assert_non_null(exact);
        size_t exact_len = 0;
        assert_int_equal(ipc_msg_encode(&samples[i], exact, len, &exact_len, &error), 0);
        assert_memory_equal(exact, buf, len);
        assert_int_equal(ipc_msg_encode(&samples[i], exact, len - 1, &exact_len, &error), -ENOBUFS);
        free(exact);
        free(buf);
    }
}

/* The layout of ipc.h, byte for byte, for one message of each field kind. */
static void
test_golden_bytes(void **state)
{
    (void)state;
    struct ipc_msg m = {.type = TDM_IPC_COMMIT, .request_id = 0x0a0b0c0d};
    const uint8_t rec[3] = {0xaa, 0x00, 0xbb};
    m.u.commit = (struct ipc_commit){ipc_str_c("db"), 0x0130, rec, sizeof(rec)};
    const uint8_t want_body[] = {
        38,
        0,
        0,
        0, /* length: 16 + 18 + 4 */
        1,
        0, /* version */
        16,
        0, /* COMMIT */
        0x0d,
        0x0c,
        0x0b,
        0x0a, /* request id */
        0,
        0,
        0,
        0, /* flags */
        TDM_IPC_F_STR,
        2,
        0,
        0,
        0,
        'd',
        'b', /* database */
        TDM_IPC_F_U16,
        0x30,
        0x01, /* record type */
        TDM_IPC_F_BYTES,
        3,
        0,
        0,
        0,
        0xaa,
        0x00,
        0xbb, /* payload */
    };
    uint8_t out[64];
    size_t len = 0;
    const char *error = NULL;
    assert_int_equal(ipc_msg_encode(&m, out, sizeof(out), &len, &error), 0);
    assert_int_equal(len, sizeof(want_body) + 4);
    assert_memory_equal(out, want_body, sizeof(want_body));
    uint32_t crc = crc32c_sw(0, want_body, sizeof(want_body));
    const uint8_t want_crc[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                                 (uint8_t)(crc >> 24)};
    assert_memory_equal(out + sizeof(want_body), want_crc, 4);

    /* The same frame built by hand decodes to the same message. */
    struct raw p = {.n = 0};
    raw_str(&p, TDM_IPC_F_STR, "db");
    raw_tagged(&p, TDM_IPC_F_U16, 0x0130, 2);
    raw_str(&p, TDM_IPC_F_BYTES, "\xaa");
    uint8_t hand[64];
    size_t hand_len = raw_frame(1, TDM_IPC_COMMIT, 0x0a0b0c0d, 0, &p, hand);
    struct ipc_msg back;
    assert_int_equal(decode_strict(hand, hand_len, &back, &error), 0);
    assert_int_equal(back.u.commit.payload_len, 1);

    /* A negative I32 is two's complement. */
    struct ipc_msg r = {.type = TDM_IPC_COMMIT_REPLY, .request_id = 1};
    r.u.commit_reply.status = -2;
    assert_int_equal(ipc_msg_encode(&r, out, sizeof(out), &len, &error), 0);
    const uint8_t want_status[] = {TDM_IPC_F_I32, 0xfe, 0xff, 0xff, 0xff};
    assert_memory_equal(out + 16, want_status, sizeof(want_status));
}

/* Every prefix of every frame: the decoder needs more and says so. */
static void
test_truncation(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = encode_sample(i, &len);
        for (size_t cut = 0; cut < len; cut++) {
            /* An exact-size copy, so ASan catches any read past the cut. */
            uint8_t *part = malloc(cut > 0 ? cut : 1);
            assert_non_null(part);
            memcpy(part, buf, cut);
            struct ipc_msg out;
            const char *error = NULL;
            int rc = ipc_msg_decode(part, cut, &out, NULL, &error);
            if (rc != TDM_ENEEDMORE)
                fail_msg("%s cut at %zu: rc %d", sample_names[i], cut, rc);
            assert_true(starts_with(error, "frame cut short"));
            free(part);
        }
        free(buf);
    }
}

/* Every shorter payload, with length and CRC made consistent: the payload decoder must notice
 * that a field is missing or runs past the end, and name it. */
static void
test_payload_truncation(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = encode_sample(i, &len);
        const char *type_name = ipc_type_name(samples[i].type);
        size_t payload_len = len - TDM_IPC_FRAME_OVERHEAD;
        for (size_t keep = 0; keep < payload_len; keep++) {
            size_t flen = TDM_IPC_FRAME_OVERHEAD + keep;
            uint8_t *f = malloc(flen);
            assert_non_null(f);
            memcpy(f, buf, TDM_IPC_HEADER_SIZE + keep);
            refresh_frame(f, flen);
            struct ipc_msg out;
            const char *error = NULL;
            int rc = ipc_msg_decode(f, flen, &out, NULL, &error);
            if (rc != TDM_ECORRUPT)
                fail_msg("%s payload cut to %zu: rc %d", sample_names[i], keep, rc);
            if (!starts_with(error, type_name) ||
                !(strstr(error, ": missing") || strstr(error, ": runs past the end")))
                fail_msg("%s payload cut to %zu: error '%s'", sample_names[i], keep, error);
            free(f);
        }
        free(buf);
    }
}

/* One extra byte, or one extra whole field, after the last field. */
static void
test_trailing_bytes(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = encode_sample(i, &len);
        const uint8_t extra[5] = {TDM_IPC_F_U32, 1, 2, 3, 4};
        for (size_t add = 1; add <= sizeof(extra); add += sizeof(extra) - 1) {
            size_t flen = len + add;
            uint8_t *f = malloc(flen);
            assert_non_null(f);
            memcpy(f, buf, len - 4);
            memcpy(f + len - 4, extra, add);
            refresh_frame(f, flen);
            struct ipc_msg out;
            const char *error = NULL;
            assert_int_equal(ipc_msg_decode(f, flen, &out, NULL, &error), TDM_ECORRUPT);
            char want[64];
            snprintf(want, sizeof(want), "%s: trailing bytes after the last field",
                     ipc_type_name(samples[i].type));
            assert_string_equal(error, want);
            free(f);
        }
        free(buf);
    }
}

/*
 * Every single-bit flip is caught by the CRC (or, in the length field, seen as a cut or bad
 * frame). With the CRC recomputed the decoder must still be strict: either it refuses the
 * frame or the message it accepts re-encodes to exactly the flipped bytes.
 */
static void
test_bit_flips(void **state)
{
    (void)state;
    size_t accepted = 0, refused = 0;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = encode_sample(i, &len);
        /* Large frames: every header and trailer bit, and a stride through the payload. */
        size_t stride = len > 2048 ? 13 : 1;
        for (size_t bit = 0; bit < len * 8; bit++) {
            size_t byte = bit / 8;
            if (stride > 1 && byte >= TDM_IPC_HEADER_SIZE && byte < len - 4 && bit % stride)
                continue;
            buf[byte] ^= (uint8_t)(1u << (bit % 8));
            struct ipc_msg out;
            const char *error = NULL;
            int rc = ipc_msg_decode(buf, len, &out, NULL, &error);
            if (rc != TDM_ECORRUPT && rc != TDM_ENEEDMORE)
                fail_msg("%s: flip of bit %zu accepted (rc %d)", sample_names[i], bit, rc);
            assert_non_null(error);

            if (byte >= 4 && byte < len - 4) {
                uint8_t *copy = malloc(len);
                assert_non_null(copy);
                memcpy(copy, buf, len);
                refresh_frame(copy, len);
                rc = decode_strict(copy, len, &out, &error);
                if (rc == 0)
                    accepted++;
                else if (rc == TDM_ECORRUPT)
                    refused++;
                else
                    fail_msg("%s: flip of bit %zu: rc %d", sample_names[i], bit, rc);
                free(copy);
            }
            buf[byte] ^= (uint8_t)(1u << (bit % 8));
        }
        free(buf);
    }
    /* Both outcomes must occur, or the test is not exercising what it claims. */
    assert_true(accepted > 0);
    assert_true(refused > 0);
}

/* Frame-level checks, each with its own message. */
static void
test_frame_errors(void **state)
{
    (void)state;
    struct raw hello = {.n = 0};
    raw_tagged(&hello, TDM_IPC_F_U16, TDM_IPC_WORKER_LMTP, 2);
    raw_tagged(&hello, TDM_IPC_F_U32, 1234, 4);
    raw_tagged(&hello, TDM_IPC_F_U16, 1, 2);
    raw_tagged(&hello, TDM_IPC_F_U16, 1, 2);
    struct raw reload = {.n = 0};
    raw_tagged(&reload, TDM_IPC_F_U64, 5, 8);
    struct raw empty = {.n = 0};

    static const struct {
        uint16_t version, type;
        uint32_t id, flags;
        int payload; /* 0 hello, 1 reload, 2 empty */
        const char *error;
    } cases[] = {
        {1, TDM_IPC_HELLO, 1, 0, 0, NULL},
        {2, TDM_IPC_HELLO, 1, 0, 0, "HELLO and HELLO_REPLY frames must carry protocol version 1"},
        {0, TDM_IPC_HELLO_REPLY, 1, 0, 2,
         "HELLO and HELLO_REPLY frames must carry protocol version 1"},
        {1, 3, 1, 0, 0, "unknown message type"},
        {1, 0, 0, 0, 2, "unknown message type"},
        {1, UINT16_MAX, 0, 0, 2, "unknown message type"},
        {1, TDM_IPC_RELOAD, 0, 0, 1, NULL},
        {0, TDM_IPC_RELOAD, 0, 0, 1, "unsupported protocol version"},
        {2, TDM_IPC_RELOAD, 0, 0, 1, "unsupported protocol version"},
        {1, TDM_IPC_RELOAD, 0, 1, 1, "frame flags not zero"},
        {1, TDM_IPC_RELOAD, 0, 0x80000000u, 1, "frame flags not zero"},
        {1, TDM_IPC_RELOAD, 3, 0, 1, "request id not zero on a one-way message"},
        {1, TDM_IPC_HELLO, 0, 0, 0, "request id zero on a request or reply"},
        {1, TDM_IPC_STATUS_REQUEST, 0, 0, 2, "request id zero on a request or reply"},
        {1, TDM_IPC_STATUS_REQUEST, 1, 0, 2, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct raw *p = cases[i].payload == 0   ? &hello
                              : cases[i].payload == 1 ? &reload
                                                      : &empty;
        uint8_t f[256];
        size_t n = raw_frame(cases[i].version, cases[i].type, cases[i].id, cases[i].flags, p, f);
        struct ipc_msg out;
        const char *error = NULL;
        int rc = ipc_msg_decode(f, n, &out, NULL, &error);
        if (cases[i].error == NULL) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, error);
        } else {
            assert_int_equal(rc, TDM_ECORRUPT);
            assert_string_equal(error, cases[i].error);
        }
    }

    /* Length bounds are judged from the length field alone, before the frame is there. */
    static const struct {
        uint32_t length;
        const char *error;
    } lengths[] = {
        {0, "frame length below the 20-byte minimum"},
        {19, "frame length below the 20-byte minimum"},
        {TDM_IPC_MAX_FRAME + 1, "frame length over TDM_IPC_MAX_FRAME"},
        {UINT32_MAX, "frame length over TDM_IPC_MAX_FRAME"},
    };
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        uint8_t f[4];
        for (int b = 0; b < 4; b++)
            f[b] = (uint8_t)(lengths[i].length >> (8 * b));
        struct ipc_frame frame;
        const char *error = NULL;
        assert_int_equal(ipc_frame_decode(f, 4, &frame, &error), TDM_ECORRUPT);
        assert_string_equal(error, lengths[i].error);
    }
    /* The largest allowed length is just incomplete. */
    uint8_t max[4];
    for (int b = 0; b < 4; b++)
        max[b] = (uint8_t)((uint32_t)TDM_IPC_MAX_FRAME >> (8 * b));
    struct ipc_frame frame;
    const char *error = NULL;
    assert_int_equal(ipc_frame_decode(max, 4, &frame, &error), TDM_ENEEDMORE);

    /* A bad CRC. */
    uint8_t f[256];
    size_t n = raw_frame(1, TDM_IPC_RELOAD, 0, 0, &reload, f);
    f[n - 1] ^= 0x80;
    assert_int_equal(ipc_frame_decode(f, n, &frame, &error), TDM_ECORRUPT);
    assert_string_equal(error, "frame checksum mismatch");
}

/* Payload builders for test_payload_errors. */
static void
p_hello_kind_tag(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
p_hello_kind_6(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 6, 2);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
}
static void
p_hello_pid_0(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U32, 0, 4);
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
}
static void
p_hello_range(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U32, 9, 4);
    raw_tagged(p, TDM_IPC_F_U16, 3, 2);
    raw_tagged(p, TDM_IPC_F_U16, 2, 2);
}
static void
p_hello_min_0(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U32, 9, 4);
    raw_tagged(p, TDM_IPC_F_U16, 0, 2);
    raw_tagged(p, TDM_IPC_F_U16, 2, 2);
}
static void
p_hello_no_max(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U32, 9, 4);
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
}
static void
p_hello_reply_refused_silently(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 0, 2);
    raw_str(p, TDM_IPC_F_STR, "");
}
static void
p_hello_reply_accepted_with_reason(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_str(p, TDM_IPC_F_STR, "why");
}
static void
p_hello_reply_reason_bytes(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_U16, 0, 2);
    raw_str(p, TDM_IPC_F_BYTES, "why");
}
static void
p_commit_db_runs_past(struct raw *p)
{
    raw_le(p, TDM_IPC_F_STR, 1);
    raw_le(p, 100, 4);
    raw_bytes(p, "db", 2);
}
static void
p_commit_db_empty(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "");
    raw_tagged(p, TDM_IPC_F_U16, 2, 2);
    raw_str(p, TDM_IPC_F_BYTES, "");
}
static void
p_commit_db_256(struct raw *p)
{
    char name[257];
    memset(name, 'd', 256);
    name[256] = 0;
    raw_str(p, TDM_IPC_F_STR, name);
    raw_tagged(p, TDM_IPC_F_U16, 2, 2);
    raw_str(p, TDM_IPC_F_BYTES, "");
}
static void
p_commit_db_nul(struct raw *p)
{
    raw_le(p, TDM_IPC_F_STR, 1);
    raw_le(p, 3, 4);
    raw_bytes(p, "d\0b", 3);
    raw_tagged(p, TDM_IPC_F_U16, 2, 2);
    raw_str(p, TDM_IPC_F_BYTES, "");
}
static void
p_commit_type_end(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "db");
    raw_tagged(p, TDM_IPC_F_U16, TDM_REC_END, 2);
    raw_str(p, TDM_IPC_F_BYTES, "");
}
static void
p_commit_type_0(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "db");
    raw_tagged(p, TDM_IPC_F_U16, 0, 2);
    raw_str(p, TDM_IPC_F_BYTES, "");
}
static void
p_commit_payload_cut(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "db");
    raw_tagged(p, TDM_IPC_F_U16, 2, 2);
    raw_le(p, TDM_IPC_F_BYTES, 1);
    raw_le(p, 2, 3); /* three of the four length bytes */
}
static void
commit_reply_head(struct raw *p, int32_t status)
{
    raw_tagged(p, TDM_IPC_F_I32, (uint32_t)status, 4);
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
p_commit_reply_65(struct raw *p)
{
    commit_reply_head(p, 0);
    raw_tagged(p, TDM_IPC_F_LIST, 65, 4);
}
static void
p_commit_reply_huge_count(struct raw *p)
{
    commit_reply_head(p, 0);
    raw_tagged(p, TDM_IPC_F_LIST, UINT32_MAX, 4);
}
static void
p_commit_reply_positive(struct raw *p)
{
    commit_reply_head(p, 1);
    raw_tagged(p, TDM_IPC_F_LIST, 0, 4);
}
static void
p_commit_reply_target_missing(struct raw *p)
{
    commit_reply_head(p, 0);
    raw_tagged(p, TDM_IPC_F_LIST, 2, 4);
    raw_tagged(p, TDM_IPC_F_I32, 0, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_I32, 0, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
p_commit_reply_target_positive(struct raw *p)
{
    commit_reply_head(p, 0);
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    raw_tagged(p, TDM_IPC_F_I32, 5, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
p_subscribe_db_empty(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "");
    raw_str(p, TDM_IPC_F_STR, "m");
    raw_str(p, TDM_IPC_F_STR, "");
}
static void
p_unsubscribe_mailbox_nul(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "d");
    raw_le(p, TDM_IPC_F_STR, 1);
    raw_le(p, 1, 4);
    raw_le(p, 0, 1);
    raw_str(p, TDM_IPC_F_STR, "");
}
static void
p_changed_folder_empty(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "d");
    raw_str(p, TDM_IPC_F_STR, "m");
    raw_str(p, TDM_IPC_F_STR, "");
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
p_changed_modseq_u32(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "d");
    raw_str(p, TDM_IPC_F_STR, "m");
    raw_str(p, TDM_IPC_F_STR, "f");
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
folder_changed_raw(struct raw *p, uint16_t change, const char *new_folder, uint32_t uidvalidity)
{
    raw_str(p, TDM_IPC_F_STR, "d");
    raw_str(p, TDM_IPC_F_STR, "m");
    raw_str(p, TDM_IPC_F_STR, "f");
    raw_tagged(p, TDM_IPC_F_U16, change, 2);
    raw_str(p, TDM_IPC_F_STR, new_folder);
    raw_tagged(p, TDM_IPC_F_U32, uidvalidity, 4);
}
static void
p_folder_change_0(struct raw *p)
{
    folder_changed_raw(p, 0, "", 1);
}
static void
p_folder_change_4(struct raw *p)
{
    folder_changed_raw(p, 4, "", 1);
}
static void
p_folder_renamed_no_name(struct raw *p)
{
    folder_changed_raw(p, TDM_IPC_FOLDER_RENAMED, "", 1);
}
static void
p_folder_created_new_name(struct raw *p)
{
    folder_changed_raw(p, TDM_IPC_FOLDER_CREATED, "g", 1);
}
static void
p_folder_deleted_uidvalidity(struct raw *p)
{
    folder_changed_raw(p, TDM_IPC_FOLDER_DELETED, "", 7);
}
static void
p_folder_renamed_uidvalidity_0(struct raw *p)
{
    folder_changed_raw(p, TDM_IPC_FOLDER_RENAMED, "g", 0);
}
static void
p_shutdown_reason_empty(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "");
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
p_shutdown_reason_1025(struct raw *p)
{
    char reason[1026];
    memset(reason, 'r', 1025);
    reason[1025] = 0;
    raw_str(p, TDM_IPC_F_STR, reason);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
p_reload_short_value(struct raw *p)
{
    raw_le(p, TDM_IPC_F_U64, 1);
    raw_le(p, 0, 7);
}
static void
p_status_bad_name(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    raw_str(p, TDM_IPC_F_STR, "imap-sessions");
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
p_status_digit_first(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    raw_str(p, TDM_IPC_F_STR, "1x");
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
p_status_duplicate(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 3, 4);
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
    raw_str(p, TDM_IPC_F_STR, "b");
    raw_tagged(p, TDM_IPC_F_U64, 1, 8);
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U64, 2, 8);
}
static void
p_status_257(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 257, 4);
}
static void
db_entry_sync(struct raw *p, const char *name, const char *kind, uint16_t state, uint16_t sync)
{
    raw_str(p, TDM_IPC_F_STR, name);
    raw_str(p, TDM_IPC_F_STR, kind);
    raw_tagged(p, TDM_IPC_F_U16, state, 2);
    for (int i = 0; i < 8; i++)
        raw_tagged(p, TDM_IPC_F_U64, 1, 8);
    raw_tagged(p, TDM_IPC_F_U16, sync, 2);
}
static void
db_entry(struct raw *p, const char *name, const char *kind, uint16_t state)
{
    db_entry_sync(p, name, kind, state, 0);
}
static void
p_db_status_sync_3(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    db_entry_sync(p, "a", "mail", TDM_IPC_DB_MOUNTED, 3);
}
static void
p_db_status_unsorted(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 2, 4);
    db_entry(p, "b", "mail", TDM_IPC_DB_MOUNTED);
    db_entry(p, "a", "mail", TDM_IPC_DB_MOUNTED);
}
static void
p_db_status_duplicate(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 2, 4);
    db_entry(p, "a", "mail", TDM_IPC_DB_MOUNTED);
    db_entry(p, "a", "mail", TDM_IPC_DB_FAILED);
}
static void
p_db_status_state_0(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    db_entry(p, "a", "mail", 0);
}
static void
p_db_status_kind_33(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    db_entry(p, "a", "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", TDM_IPC_DB_MOUNTED);
}
static void
p_db_status_name_empty(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    db_entry(p, "", "mail", TDM_IPC_DB_MOUNTED);
}
static void
p_db_status_101(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, TDM_IPC_MAX_DATABASES + 1, 4);
}
static void
p_db_status_no_syncs(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_str(p, TDM_IPC_F_STR, "mail");
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    for (int i = 0; i < 7; i++)
        raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
copy_entry(struct raw *p, const char *name, uint16_t state, uint16_t role)
{
    raw_str(p, TDM_IPC_F_STR, name);
    raw_tagged(p, TDM_IPC_F_U16, state, 2);
    raw_tagged(p, TDM_IPC_F_U16, role, 2);
    raw_tagged(p, TDM_IPC_F_U16, 0, 2);
    raw_tagged(p, TDM_IPC_F_U16, 0, 2); /* compression */
    raw_str(p, TDM_IPC_F_STR, "");
    raw_str(p, TDM_IPC_F_STR, "");
    raw_str(p, TDM_IPC_F_STR, "");
    raw_tagged(p, TDM_IPC_F_U32, 0, 4);
    for (int i = 0; i < (int)TDM_IPC_COPY_N_FIGURES; i++)
        raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
p_copy_status_unsorted(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 2, 4);
    copy_entry(p, "b", TDM_IPC_COPY_HEALTHY, 1);
    copy_entry(p, "a", TDM_IPC_COPY_HEALTHY, 1);
    raw_tagged(p, TDM_IPC_F_U32, 2, 4); /* total */
}
static void
p_copy_status_state_9(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    copy_entry(p, "a", 9, 1);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4); /* total */
}
static void
p_copy_status_role_3(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    copy_entry(p, "a", TDM_IPC_COPY_HEALTHY, 3);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4); /* total */
}
static void
p_copy_status_total_1(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 2, 4);
    copy_entry(p, "a", TDM_IPC_COPY_HEALTHY, 1);
    copy_entry(p, "b", TDM_IPC_COPY_HEALTHY, 1);
    raw_tagged(p, TDM_IPC_F_U32, 1, 4);
}
static void
p_copy_status_total_not_full(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    copy_entry(p, "a", TDM_IPC_COPY_HEALTHY, 1);
    raw_tagged(p, TDM_IPC_F_U32, 2, 4);
}
static void
p_copy_status_no_total(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    copy_entry(p, "a", TDM_IPC_COPY_HEALTHY, 1);
}
static void
p_copy_status_65(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, TDM_IPC_MAX_COPIES + 1, 4);
}
static void
p_copy_status_short(struct raw *p)
{
    raw_tagged(p, TDM_IPC_F_LIST, 1, 4);
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U16, 1, 2);
    raw_tagged(p, TDM_IPC_F_U16, 0, 2);
    raw_tagged(p, TDM_IPC_F_U16, 0, 2); /* compression */
    raw_str(p, TDM_IPC_F_STR, "");
    raw_str(p, TDM_IPC_F_STR, "");
    raw_str(p, TDM_IPC_F_STR, "");
    raw_tagged(p, TDM_IPC_F_U32, 0, 4);
    for (int i = 0; i < (int)TDM_IPC_COPY_N_FIGURES - 1; i++)
        raw_tagged(p, TDM_IPC_F_U64, 1, 8);
}
static void
p_copy_control_action_3(struct raw *p)
{
    /* 3: reseed, which takes no comment */
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, 3, 2);
    raw_str(p, TDM_IPC_F_STR, "why");
}
static void
p_copy_control_resume_comment(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, TDM_IPC_COPY_RESUME, 2);
    raw_str(p, TDM_IPC_F_STR, "why");
}
static void
p_db_dismount_comment(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, TDM_IPC_DB_DISMOUNT, 2);
    raw_str(p, TDM_IPC_F_STR, "why");
}
static void
p_copy_control_action_10(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, 10, 2);
    raw_str(p, TDM_IPC_F_STR, "");
}
static void
p_copy_control_activate_comment(struct raw *p)
{
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, TDM_IPC_COPY_ACTIVATE_FORCE, 2);
    raw_str(p, TDM_IPC_F_STR, "why");
}
static void
p_copy_control_action_7(struct raw *p)
{
    /* 7: reseed deleting the files, which takes no comment */
    raw_str(p, TDM_IPC_F_STR, "a");
    raw_tagged(p, TDM_IPC_F_U16, 7, 2);
    raw_str(p, TDM_IPC_F_STR, "why");
}
static void
p_status_request_extra(struct raw *p)
{
    raw_le(p, 0, 1);
}

/* Each malformed payload and the exact error it must produce. */
static void
test_payload_errors(void **state)
{
    (void)state;
    static const struct {
        uint16_t type;
        void (*build)(struct raw *p);
        const char *error;
    } cases[] = {
        {TDM_IPC_HELLO, p_hello_kind_tag, "HELLO.kind: wrong field type tag"},
        {TDM_IPC_HELLO, p_hello_kind_6, "HELLO.kind: unknown worker kind"},
        {TDM_IPC_HELLO, p_hello_pid_0, "HELLO.pid: zero"},
        {TDM_IPC_HELLO, p_hello_range, "HELLO.version_max: below version_min"},
        {TDM_IPC_HELLO, p_hello_min_0, "HELLO.version_min: zero"},
        {TDM_IPC_HELLO, p_hello_no_max, "HELLO.version_max: missing (the payload ends before it)"},
        {TDM_IPC_HELLO_REPLY, p_hello_reply_refused_silently,
         "HELLO_REPLY.reason: empty on a refusal (version 0)"},
        {TDM_IPC_HELLO_REPLY, p_hello_reply_accepted_with_reason,
         "HELLO_REPLY.reason: not empty on an acceptance"},
        {TDM_IPC_HELLO_REPLY, p_hello_reply_reason_bytes,
         "HELLO_REPLY.reason: wrong field type tag"},
        {TDM_IPC_COMMIT, p_commit_db_runs_past,
         "COMMIT.database: runs past the end of the payload"},
        {TDM_IPC_COMMIT, p_commit_db_empty, "COMMIT.database: empty"},
        {TDM_IPC_COMMIT, p_commit_db_256, "COMMIT.database: longer than allowed"},
        {TDM_IPC_COMMIT, p_commit_db_nul, "COMMIT.database: contains a NUL byte"},
        {TDM_IPC_COMMIT, p_commit_type_end, "COMMIT.record_type: END is the log's own record"},
        {TDM_IPC_COMMIT, p_commit_type_0, "COMMIT.record_type: zero"},
        {TDM_IPC_COMMIT, p_commit_payload_cut, "COMMIT.payload: runs past the end of the payload"},
        {TDM_IPC_COMMIT_REPLY, p_commit_reply_65,
         "COMMIT_REPLY.targets: more elements than allowed"},
        {TDM_IPC_COMMIT_REPLY, p_commit_reply_huge_count,
         "COMMIT_REPLY.targets: more elements than allowed"},
        {TDM_IPC_COMMIT_REPLY, p_commit_reply_positive,
         "COMMIT_REPLY.status: positive (0 or an error code)"},
        {TDM_IPC_COMMIT_REPLY, p_commit_reply_target_missing,
         "COMMIT_REPLY.targets.uidvalidity: missing (the payload ends before it)"},
        {TDM_IPC_COMMIT_REPLY, p_commit_reply_target_positive,
         "COMMIT_REPLY.targets.status: positive (0 or an error code)"},
        {TDM_IPC_SUBSCRIBE, p_subscribe_db_empty, "SUBSCRIBE.database: empty"},
        {TDM_IPC_UNSUBSCRIBE, p_unsubscribe_mailbox_nul,
         "UNSUBSCRIBE.mailbox: contains a NUL byte"},
        {TDM_IPC_CHANGED, p_changed_folder_empty, "CHANGED.folder: empty"},
        {TDM_IPC_CHANGED, p_changed_modseq_u32, "CHANGED.highestmodseq: wrong field type tag"},
        {TDM_IPC_FOLDER_CHANGED, p_folder_change_0, "FOLDER_CHANGED.change: unknown change"},
        {TDM_IPC_FOLDER_CHANGED, p_folder_change_4, "FOLDER_CHANGED.change: unknown change"},
        {TDM_IPC_FOLDER_CHANGED, p_folder_renamed_no_name,
         "FOLDER_CHANGED.new_folder: set if and only if renamed"},
        {TDM_IPC_FOLDER_CHANGED, p_folder_created_new_name,
         "FOLDER_CHANGED.new_folder: set if and only if renamed"},
        {TDM_IPC_FOLDER_CHANGED, p_folder_deleted_uidvalidity,
         "FOLDER_CHANGED.uidvalidity: zero if and only if deleted"},
        {TDM_IPC_FOLDER_CHANGED, p_folder_renamed_uidvalidity_0,
         "FOLDER_CHANGED.uidvalidity: zero if and only if deleted"},
        {TDM_IPC_SHUTDOWN, p_shutdown_reason_empty, "SHUTDOWN.reason: empty"},
        {TDM_IPC_SHUTDOWN, p_shutdown_reason_1025, "SHUTDOWN.reason: longer than allowed"},
        {TDM_IPC_RELOAD, p_reload_short_value,
         "RELOAD.generation: runs past the end of the payload"},
        {TDM_IPC_STATUS_REPLY, p_status_bad_name,
         "STATUS_REPLY.counters.name: not [A-Za-z_][A-Za-z0-9_]*"},
        {TDM_IPC_STATUS_REPLY, p_status_digit_first,
         "STATUS_REPLY.counters.name: not [A-Za-z_][A-Za-z0-9_]*"},
        {TDM_IPC_STATUS_REPLY, p_status_duplicate, "STATUS_REPLY.counters.name: duplicate"},
        {TDM_IPC_STATUS_REPLY, p_status_257, "STATUS_REPLY.counters: more elements than allowed"},
        {TDM_IPC_STATUS_REQUEST, p_status_request_extra,
         "STATUS_REQUEST: trailing bytes after the last field"},
        {TDM_IPC_DB_STATUS_REQUEST, p_status_request_extra,
         "DB_STATUS_REQUEST: trailing bytes after the last field"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_unsorted,
         "DB_STATUS_REPLY.databases.name: not in ascending order, or a duplicate"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_duplicate,
         "DB_STATUS_REPLY.databases.name: not in ascending order, or a duplicate"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_state_0,
         "DB_STATUS_REPLY.databases.state: unknown state"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_sync_3,
         "DB_STATUS_REPLY.databases.sync: not 0, 1 or 2"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_kind_33,
         "DB_STATUS_REPLY.databases.kind: longer than allowed"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_name_empty,
         "DB_STATUS_REPLY.databases.name: empty"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_101,
         "DB_STATUS_REPLY.databases: more elements than allowed"},
        {TDM_IPC_DB_STATUS_REPLY, p_db_status_no_syncs,
         "DB_STATUS_REPLY.databases.syncs: missing (the payload ends before it)"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_unsorted,
         "COPY_STATUS_REPLY.copies.name: not in ascending order, or a duplicate"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_state_9,
         "COPY_STATUS_REPLY.copies.state: unknown state"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_role_3,
         "COPY_STATUS_REPLY.copies.role: not 1 or 2"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_total_1,
         "COPY_STATUS_REPLY.total: fewer than the copies listed"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_total_not_full,
         "COPY_STATUS_REPLY.total: more than listed, but the list is not full"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_no_total,
         "COPY_STATUS_REPLY.total: missing (the payload ends before it)"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_65,
         "COPY_STATUS_REPLY.copies: more elements than allowed"},
        {TDM_IPC_COPY_STATUS_REPLY, p_copy_status_short,
         "COPY_STATUS_REPLY.copies.wire_log_bytes: missing (the payload ends before it)"},
        {TDM_IPC_COPY_CONTROL, p_copy_control_action_3,
         "COPY_CONTROL.comment: only a suspend has a comment"},
        {TDM_IPC_COPY_CONTROL, p_copy_control_resume_comment,
         "COPY_CONTROL.comment: only a suspend has a comment"},
        {TDM_IPC_COPY_CONTROL, p_copy_control_activate_comment,
         "COPY_CONTROL.comment: only a suspend has a comment"},
        {TDM_IPC_COPY_CONTROL, p_copy_control_action_7,
         "COPY_CONTROL.comment: only a suspend has a comment"},
        {TDM_IPC_COPY_CONTROL, p_db_dismount_comment,
         "COPY_CONTROL.comment: only a suspend has a comment"},
        {TDM_IPC_COPY_CONTROL, p_copy_control_action_10, "COPY_CONTROL.action: unknown action"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct raw p = {.n = 0};
        cases[i].build(&p);
        uint8_t f[sizeof(p.b) + 32];
        uint32_t id = ipc_type_has_request_id(cases[i].type) ? 77 : 0;
        size_t n = raw_frame(1, cases[i].type, id, 0, &p, f);
        struct ipc_msg out;
        const char *error = NULL;
        int rc = ipc_msg_decode(f, n, &out, NULL, &error);
        if (rc != TDM_ECORRUPT || strcmp(error, cases[i].error) != 0)
            fail_msg("case %zu: rc %d error '%s', want '%s'", i, rc, error ? error : "(none)",
                     cases[i].error);
    }
}

/* The encoder refuses what the decoder would refuse, with the same words. */
static void
test_encode_rejects(void **state)
{
    (void)state;
    char long_name[TDM_IPC_NAME_MAX + 2];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    struct {
        struct ipc_msg m;
        const char *error;
    } cases[10];
    memset(cases, 0, sizeof(cases));
    size_t n = 0;

    cases[n].m = (struct ipc_msg){.type = 99, .request_id = 1};
    cases[n++].error = "unknown message type";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_CHANGED, .request_id = 1};
    cases[n++].error = "request id not zero on a one-way message";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_COMMIT, .request_id = 1};
    cases[n].m.u.commit = (struct ipc_commit){ipc_str_c(long_name), 2, NULL, 0};
    cases[n++].error = "COMMIT.database: longer than allowed";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_COMMIT, .request_id = 1};
    cases[n].m.u.commit = (struct ipc_commit){ipc_str_c("db"), 2, NULL, 5};
    cases[n++].error = "COMMIT.payload: NULL pointer with a non-zero length";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_COMMIT, .request_id = 1};
    cases[n].m.u.commit =
        (struct ipc_commit){ipc_str_c("db"), 2, (const uint8_t *)"", TDM_LOG_MAX_PAYLOAD + 1};
    cases[n++].error = "COMMIT.payload: longer than TDM_LOG_MAX_PAYLOAD";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_SUBSCRIBE};
    cases[n].m.u.subscribe = (struct ipc_subscribe){ipc_str_c("d"), {NULL, 3}, {NULL, 0}};
    cases[n++].error = "SUBSCRIBE.mailbox: NULL pointer with a non-zero length";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_COMMIT_REPLY, .request_id = 1};
    cases[n].m.u.commit_reply.n_targets = TDM_IPC_MAX_TARGETS + 1;
    cases[n++].error = "COMMIT_REPLY.targets: more elements than allowed";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_STATUS_REPLY, .request_id = 1};
    cases[n].m.u.status_reply.n_counters = TDM_IPC_MAX_COUNTERS + 1;
    cases[n++].error = "STATUS_REPLY.counters: more elements than allowed";
    cases[n].m = (struct ipc_msg){.type = TDM_IPC_HELLO, .request_id = 1};
    cases[n].m.u.hello = (struct ipc_hello){0, 1, 1, 1};
    cases[n++].error = "HELLO.kind: unknown worker kind";

    for (size_t i = 0; i < n; i++) {
        uint8_t out[64];
        size_t len = 0, size = 0;
        uint8_t *alloc = NULL;
        const char *error = NULL;
        assert_int_equal(ipc_msg_check(&cases[i].m, &error), TDM_EINVAL);
        assert_string_equal(error, cases[i].error);
        error = NULL;
        assert_int_equal(ipc_msg_size(&cases[i].m, &size, &error), TDM_EINVAL);
        assert_string_equal(error, cases[i].error);
        error = NULL;
        assert_int_equal(ipc_msg_encode(&cases[i].m, out, sizeof(out), &len, &error), TDM_EINVAL);
        assert_string_equal(error, cases[i].error);
        assert_int_equal(ipc_msg_encode_alloc(&cases[i].m, &alloc, &len, &error), TDM_EINVAL);
        assert_null(alloc);
    }
}

static void
test_names_and_versions(void **state)
{
    (void)state;
    assert_string_equal(ipc_type_name(TDM_IPC_COMMIT_REPLY), "COMMIT_REPLY");
    assert_null(ipc_type_name(0));
    assert_null(ipc_type_name(18));
    assert_string_equal(ipc_worker_kind_name(TDM_IPC_WORKER_SMTP), "smtp");
    assert_null(ipc_worker_kind_name(0));
    assert_null(ipc_worker_kind_name(6));
    assert_string_equal(ipc_db_state_name(TDM_IPC_DB_DISK_RESERVE), "disk-reserve");
    assert_null(ipc_db_state_name(0));
    assert_null(ipc_db_state_name(4));
    assert_string_equal(ipc_type_name(TDM_IPC_DB_STATUS_REPLY), "DB_STATUS_REPLY");
    assert_true(ipc_type_has_request_id(TDM_IPC_DB_STATUS_REQUEST));
    assert_true(ipc_type_has_request_id(TDM_IPC_HELLO));
    assert_false(ipc_type_has_request_id(TDM_IPC_CHANGED));
    assert_false(ipc_type_has_request_id(1000));

    static const struct {
        uint16_t min, max;
        int rc;
        uint16_t version;
    } cases[] = {
        {1, 1, 0, 1},
        {1, 9, 0, TDM_IPC_VERSION},
        {TDM_IPC_VERSION, UINT16_MAX, 0, TDM_IPC_VERSION},
        {0, 1, TDM_EINVAL, 0},
        {3, 2, TDM_EINVAL, 0},
        {TDM_IPC_VERSION + 1, TDM_IPC_VERSION + 5, TDM_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t v = 0;
        const char *error = NULL;
        assert_int_equal(ipc_version_negotiate(cases[i].min, cases[i].max, &v, &error),
                         cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(v, cases[i].version);
        else
            assert_non_null(error);
    }
}

/* ---- Streaming reader ---- */

struct stream {
    uint8_t *bytes;
    size_t len;
    size_t n_frames;
    size_t frame_off[MAX_SAMPLES];
    size_t frame_len[MAX_SAMPLES];
};

/* All samples with frames of at most max_frame bytes, back to back. */
static void
stream_build(struct stream *s, size_t max_frame)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = encode_sample(i, &len);
        if (len <= max_frame) {
            s->bytes = realloc(s->bytes, s->len + len);
            assert_non_null(s->bytes);
            memcpy(s->bytes + s->len, buf, len);
            s->frame_off[s->n_frames] = s->len;
            s->frame_len[s->n_frames++] = len;
            s->len += len;
        }
        free(buf);
    }
}

/* Feeds s in chunks whose sizes come from next_chunk and checks that exactly s's frames come
 * out, byte for byte, and that the reader never holds more than the frame being assembled. */
static void
stream_check(const struct stream *s, size_t (*next_chunk)(size_t pos, void *ctx), void *ctx)
{
    struct ipc_reader *r = NULL;
    assert_int_equal(ipc_reader_new(0, &r), 0);
    size_t pos = 0, got = 0;
    while (pos < s->len) {
        size_t chunk = next_chunk(pos, ctx);
        if (chunk > s->len - pos)
            chunk = s->len - pos;
        /* An exact-size copy per chunk, so reading past it is an ASan error. */
        uint8_t *copy = malloc(chunk);
        assert_non_null(copy);
        memcpy(copy, s->bytes + pos, chunk);
        const uint8_t *data = copy;
        size_t left = chunk;
        for (;;) {
            struct ipc_frame f;
            const char *error = NULL;
            int rc = ipc_reader_next(r, &data, &left, &f, &error);
            if (rc == 0) {
                assert_int_equal(left, 0);
                break;
            }
            if (rc != 1)
                fail_msg("reader: rc %d %s", rc, error);
            assert_true(got < s->n_frames);
            assert_int_equal(f.length, s->frame_len[got]);
            assert_memory_equal(f.payload - TDM_IPC_HEADER_SIZE, s->bytes + s->frame_off[got],
                                f.length);
            struct ipc_msg m;
            assert_int_equal(ipc_msg_decode_frame(&f, &m, &error), 0);
            got++;
            assert_true(ipc_reader_buffered(r) == 0);
        }
        /* Never more than the incomplete part of the current frame. */
        if (got < s->n_frames)
            assert_true(ipc_reader_buffered(r) < s->frame_len[got]);
        assert_true(ipc_reader_capacity(r) <= 4096 ||
                    (got < s->n_frames && ipc_reader_capacity(r) <= s->frame_len[got]));
        free(copy);
        pos += chunk;
    }
    assert_int_equal(got, s->n_frames);
    assert_int_equal(ipc_reader_buffered(r), 0);
    ipc_reader_free(&r);
    assert_null(r);
}

struct split {
    size_t at;
};

static size_t
chunk_split(size_t pos, void *ctx)
{
    const struct split *sp = ctx;
    return pos < sp->at ? sp->at - pos : SIZE_MAX;
}

static size_t
chunk_fixed(size_t pos, void *ctx)
{
    (void)pos;
    return *(const size_t *)ctx;
}

static size_t
chunk_random(size_t pos, void *ctx)
{
    (void)pos;
    uint32_t *seed = ctx;
    *seed = *seed * 1103515245u + 12345u;
    return 1 + (*seed >> 16) % 700;
}

/* The stream split into two at every byte offset gives exactly the same frames. */
static void
test_reader_every_split(void **state)
{
    (void)state;
    struct stream s;
    stream_build(&s, 2048);
    assert_true(s.n_frames >= 15);
    for (size_t at = 0; at <= s.len; at++) {
        struct split sp = {at};
        stream_check(&s, chunk_split, &sp);
    }
    free(s.bytes);
}

static void
test_reader_chunk_sizes(void **state)
{
    (void)state;
    struct stream s;
    stream_build(&s, SIZE_MAX);
    assert_int_equal(s.n_frames, n_samples);
    static const size_t sizes[] = {1, 2, 3, 4, 5, 7, 16, 20, 21, 64, 1000, 4096, 65536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t size = sizes[i];
        stream_check(&s, chunk_fixed, &size);
    }
    for (uint32_t seed = 1; seed < 50; seed++) {
        uint32_t st = seed;
        stream_check(&s, chunk_random, &st);
    }
    free(s.bytes);
}

/* Frames wholly inside the caller's chunk are returned in place. */
static void
test_reader_zero_copy(void **state)
{
    (void)state;
    struct stream s;
    stream_build(&s, SIZE_MAX);
    struct ipc_reader *r = NULL;
    assert_int_equal(ipc_reader_new(0, &r), 0);
    const uint8_t *data = s.bytes;
    size_t left = s.len;
    for (size_t i = 0; i < s.n_frames; i++) {
        struct ipc_frame f;
        const char *error = NULL;
        assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), 1);
        assert_ptr_equal(f.payload, s.bytes + s.frame_off[i] + TDM_IPC_HEADER_SIZE);
    }
    assert_int_equal(left, 0);
    struct ipc_frame f;
    const char *error = NULL;
    assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), 0);
    ipc_reader_free(&r);
    free(s.bytes);
}

/* A prefix of any frame leaves the reader wanting more, holding exactly that prefix. */
static void
test_reader_truncation(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = encode_sample(i, &len);
        size_t step = len > 2048 ? 97 : 1;
        for (size_t cut = 0; cut < len; cut += step) {
            struct ipc_reader *r = NULL;
            assert_int_equal(ipc_reader_new(0, &r), 0);
            const uint8_t *data = buf;
            size_t left = cut;
            struct ipc_frame f;
            const char *error = NULL;
            assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), 0);
            assert_int_equal(left, 0);
            assert_int_equal(ipc_reader_buffered(r), cut);
            /* And the rest completes it. */
            left = len - cut;
            assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), 1);
            assert_int_equal(f.length, len);
            assert_int_equal(left, 0);
            ipc_reader_free(&r);
        }
        free(buf);
    }
}

/* Memory follows the bytes received, not the length a header claims, and shrinks back. */
static void
test_reader_bounded(void **state)
{
    (void)state;
    struct ipc_reader *r = NULL;
    assert_int_equal(ipc_reader_new(0, &r), 0);
    size_t base = ipc_reader_capacity(r);
    assert_true(base <= 4096);

    /* A 1 MiB COMMIT fed 10 KiB at a time: capacity at most double what has arrived. */
    size_t big_len = 1024 * 1024;
    uint8_t *big_payload = calloc(1, big_len);
    assert_non_null(big_payload);
    struct ipc_msg m = {.type = TDM_IPC_COMMIT, .request_id = 1};
    m.u.commit = (struct ipc_commit){ipc_str_c("db"), TDM_REC_NOOP, big_payload, (uint32_t)big_len};
    uint8_t *frame = NULL;
    size_t frame_len = 0;
    const char *error = NULL;
    assert_int_equal(ipc_msg_encode_alloc(&m, &frame, &frame_len, &error), 0);
    const uint8_t *data = frame;
    size_t fed = 0;
    struct ipc_frame f;
    int rc = 0;
    while (fed < frame_len) {
        size_t left = frame_len - fed < 10240 ? frame_len - fed : 10240;
        fed += left;
        rc = ipc_reader_next(r, &data, &left, &f, &error);
        assert_int_equal(left, 0);
        if (rc == 1)
            break;
        assert_int_equal(rc, 0);
        assert_int_equal(ipc_reader_buffered(r), fed);
        assert_true(ipc_reader_capacity(r) <= (fed * 2 > base ? fed * 2 : base));
    }
    assert_int_equal(rc, 1);
    assert_int_equal(fed, frame_len);
    assert_true(ipc_reader_capacity(r) <= frame_len);
    assert_int_equal(f.payload_len, frame_len - TDM_IPC_FRAME_OVERHEAD);

    /* The next call drops the big buffer. */
    size_t none = 0;
    assert_int_equal(ipc_reader_next(r, &data, &none, &f, &error), 0);
    assert_int_equal(ipc_reader_capacity(r), base);

    /* A header claiming the maximum length allocates nothing up front. */
    uint8_t head[TDM_IPC_HEADER_SIZE] = {0};
    uint32_t claim = TDM_IPC_MAX_FRAME;
    for (int b = 0; b < 4; b++)
        head[b] = (uint8_t)(claim >> (8 * b));
    data = head;
    size_t left = sizeof(head);
    assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), 0);
    assert_int_equal(ipc_reader_capacity(r), base);
    assert_int_equal(ipc_reader_buffered(r), sizeof(head));
    ipc_reader_free(&r);

    /* A reader with a small limit refuses a larger frame from its length field alone. */
    assert_int_equal(ipc_reader_new(4096, &r), 0);
    data = frame;
    left = 4;
    assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), TDM_ECORRUPT);
    assert_string_equal(error, "frame length over the reader's limit");
    ipc_reader_free(&r);

    assert_int_equal(ipc_reader_new(TDM_IPC_FRAME_OVERHEAD - 1, &r), TDM_EINVAL);
    assert_int_equal(ipc_reader_new(TDM_IPC_MAX_FRAME + 1, &r), TDM_EINVAL);
    ipc_reader_free(&r); /* NULL: a no-op */

    free(frame);
    free(big_payload);
}

/* After a malformed frame the reader refuses everything, consuming nothing. */
static void
test_reader_poison(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *good = encode_sample(0, &len);
    for (int where = 0; where < 3; where++) {
        /* Stream: good frame, bad frame (CRC, or a length below the minimum, or over the
         * maximum), good frame. */
        uint8_t *s = malloc(3 * len);
        assert_non_null(s);
        memcpy(s, good, len);
        memcpy(s + len, good, len);
        memcpy(s + 2 * len, good, len);
        const char *want;
        if (where == 0) {
            s[2 * len - 1] ^= 1;
            want = "frame checksum mismatch";
        } else if (where == 1) {
            s[len] = 3;
            want = "frame length below the 20-byte minimum";
        } else {
            memset(s + len, 0xff, 4);
            want = "frame length over TDM_IPC_MAX_FRAME";
        }
        for (size_t chunk = 1; chunk <= 3 * len; chunk *= 2) {
            struct ipc_reader *r = NULL;
            assert_int_equal(ipc_reader_new(0, &r), 0);
            size_t pos = 0, frames = 0;
            const char *error = NULL;
            int rc = 0;
            while (pos < 3 * len && rc >= 0) {
                const uint8_t *data = s + pos;
                size_t left = chunk < 3 * len - pos ? chunk : 3 * len - pos;
                size_t given = left;
                struct ipc_frame f;
                while ((rc = ipc_reader_next(r, &data, &left, &f, &error)) == 1)
                    frames++;
                pos += given - left;
                if (rc < 0)
                    break;
            }
            assert_int_equal(rc, TDM_ECORRUPT);
            assert_string_equal(error, want);
            assert_int_equal(frames, 1);
            /* Sticky, and consumes nothing. */
            const uint8_t *data = good;
            size_t left = len;
            struct ipc_frame f;
            error = NULL;
            assert_int_equal(ipc_reader_next(r, &data, &left, &f, &error), TDM_ECORRUPT);
            assert_string_equal(error, want);
            assert_int_equal(left, len);
            assert_ptr_equal(data, good);
            ipc_reader_free(&r);
        }
        free(s);
    }
    free(good);
}

/* ---- Corpus writer ---- */

static int
write_file(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* Valid frames of every sample, and a few invalid ones, for fuzz/corpus/ipc/. */
static int
write_corpus(const char *dir)
{
    init_samples();
    int failed = 0;
    uint8_t *all = NULL;
    size_t all_len = 0;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len = 0;
        uint8_t *buf = NULL;
        const char *error = NULL;
        if (ipc_msg_encode_alloc(&samples[i], &buf, &len, &error) != 0) {
            fprintf(stderr, "%s: %s\n", sample_names[i], error);
            return 1;
        }
        char name[128];
        snprintf(name, sizeof(name), "valid_%s", sample_names[i]);
        failed |= write_file(dir, name, buf, len);
        if (len <= 2048) {
            all = realloc(all, all_len + len);
            if (!all)
                return 1;
            memcpy(all + all_len, buf, len);
            all_len += len;
        }
        if (i == 0) {
            buf[len - 1] ^= 1;
            failed |= write_file(dir, "invalid_crc", buf, len);
            failed |= write_file(dir, "invalid_cut", buf, len / 2);
        }
        free(buf);
    }
    failed |= write_file(dir, "valid_stream", all, all_len);
    free(all);
    const uint8_t oversize[] = {0xff, 0xff, 0xff, 0xff, 1, 0, 1, 0};
    failed |= write_file(dir, "invalid_oversize", oversize, sizeof(oversize));
    struct raw p = {.n = 0};
    p_commit_db_runs_past(&p);
    uint8_t f[256];
    size_t n = raw_frame(1, TDM_IPC_COMMIT, 1, 0, &p, f);
    failed |= write_file(dir, "invalid_field_length", f, n);
    struct raw q = {.n = 0};
    p_status_duplicate(&q);
    n = raw_frame(1, TDM_IPC_STATUS_REPLY, 1, 0, &q, f);
    failed |= write_file(dir, "invalid_duplicate_counter", f, n);
    struct raw e = {.n = 0};
    n = raw_frame(1, 5, 1, 0, &e, f);
    failed |= write_file(dir, "invalid_unknown_type", f, n);
    return failed ? 1 : 0;
}

static int
setup(void **state)
{
    (void)state;
    init_samples();
    return 0;
}

/* DB_DISMOUNTED: names ascending and unique, not empty, at most TDM_IPC_MAX_DATABASES. */
static void
test_db_dismounted_rules(void **state)
{
    (void)state;
    struct ipc_msg m = {.type = TDM_IPC_DB_DISMOUNTED};
    m.u.db_dismounted.n_databases = 2;
    m.u.db_dismounted.databases[0] = ipc_str_c("db2");
    m.u.db_dismounted.databases[1] = ipc_str_c("db1");
    const char *error = NULL;
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error,
                        "DB_DISMOUNTED.databases.name: not in ascending order, or a duplicate");
    m.u.db_dismounted.databases[1] = ipc_str_c("db2");
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error,
                        "DB_DISMOUNTED.databases.name: not in ascending order, or a duplicate");
    m.u.db_dismounted.databases[1] = ipc_str_c("");
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    m.u.db_dismounted.databases[1] = ipc_str_c("db3");
    assert_int_equal(ipc_msg_check(&m, &error), 0);
    m.u.db_dismounted.n_databases = TDM_IPC_MAX_DATABASES + 1;
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error, "DB_DISMOUNTED.databases: more elements than allowed");
    /* A push: no request id. */
    assert_false(ipc_type_has_request_id(TDM_IPC_DB_DISMOUNTED));
    assert_string_equal(ipc_type_name(TDM_IPC_DB_DISMOUNTED), "DB_DISMOUNTED");
}

/* CMS_MOVE: a CMS and a target, a comment at most a reason long; its reply's error goes with a
 * failure, and only with one. */
static void
test_cms_move_rules(void **state)
{
    (void)state;
    char long_comment[TDM_IPC_REASON_MAX + 2];
    memset(long_comment, 'c', sizeof(long_comment) - 1);
    long_comment[sizeof(long_comment) - 1] = '\0';
    static const struct {
        const char *cms, *to, *error;
    } cases[] = {
        {"mail1", "b", NULL},
        {"", "b", "CMS_MOVE.cms: empty"},
        {"mail1", "", "CMS_MOVE.to: empty"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ipc_msg m = {.type = TDM_IPC_CMS_MOVE, .request_id = 1};
        m.u.cms_move = (struct ipc_cms_move){ipc_str_c(cases[i].cms), ipc_str_c(cases[i].to),
                                             ipc_str_c("")};
        const char *error = NULL;
        int rc = ipc_msg_check(&m, &error);
        if (!cases[i].error) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, TDM_EINVAL);
            assert_string_equal(error, cases[i].error);
        }
    }
    struct ipc_msg m = {.type = TDM_IPC_CMS_MOVE, .request_id = 1};
    m.u.cms_move = (struct ipc_cms_move){ipc_str_c("mail1"), ipc_str_c("b"),
                                         ipc_str_c(long_comment)};
    const char *error = NULL;
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error, "CMS_MOVE.comment: longer than allowed");

    struct ipc_msg r = {.type = TDM_IPC_CMS_MOVE_REPLY, .request_id = 1};
    r.u.cms_move_reply.status = TDM_EINVAL;
    assert_int_equal(ipc_msg_check(&r, &error), TDM_EINVAL);
    assert_string_equal(error, "CMS_MOVE_REPLY.error: must be empty exactly when status is 0");
    r.u.cms_move_reply.status = 0;
    r.u.cms_move_reply.error = ipc_str_c("why");
    assert_int_equal(ipc_msg_check(&r, &error), TDM_EINVAL);
    r.u.cms_move_reply.status = 1;
    r.u.cms_move_reply.error = ipc_str_c("");
    assert_int_equal(ipc_msg_check(&r, &error), TDM_EINVAL);
    assert_string_equal(error, "CMS_MOVE_REPLY.status: positive");
}

/* CLUSTER_STATUS_REPLY's json: bounded, and an object's text (the reader parses the rest). */
static void
test_cluster_status_rules(void **state)
{
    (void)state;
    static const struct {
        const char *json, *error; /* NULL: valid */
    } cases[] = {
        {"{}", NULL},
        {"{\"a\":1}", NULL},
        {"", "CLUSTER_STATUS_REPLY.json: empty"},
        {"{", "CLUSTER_STATUS_REPLY.json: empty"},
        {"[]", "CLUSTER_STATUS_REPLY.json: not a JSON object"},
        {"{\"a\":1", "CLUSTER_STATUS_REPLY.json: not a JSON object"},
        {"x}", "CLUSTER_STATUS_REPLY.json: not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ipc_msg m = {.type = TDM_IPC_CLUSTER_STATUS_REPLY, .request_id = 1};
        m.u.cluster_status_reply.json = ipc_str_c(cases[i].json);
        const char *error = NULL;
        int rc = ipc_msg_check(&m, &error);
        if (!cases[i].error)
            assert_int_equal(rc, 0);
        else {
            assert_int_equal(rc, TDM_EINVAL);
            assert_string_equal(error, cases[i].error);
        }
    }
    /* Over the bound: refused, not truncated. */
    size_t big = TDM_IPC_CLUSTER_JSON_MAX + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    struct ipc_msg m = {.type = TDM_IPC_CLUSTER_STATUS_REPLY, .request_id = 1};
    m.u.cluster_status_reply.json = (struct ipc_str){text, (uint32_t)big};
    const char *error = NULL;
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error, "CLUSTER_STATUS_REPLY.json: longer than allowed");
    free(text);
}

/* The CMS messages' rules, as the encoder checks them (the decoder runs the same check). */
static void
test_cms_rules(void **state)
{
    (void)state;
    static const struct {
        uint16_t type, proto, state;
        const char *cms, *error; /* NULL: valid */
    } cases[] = {
        {TDM_IPC_CMS_CONTROL, 0, TDM_IPC_CMS_UP, "m", NULL},
        {TDM_IPC_CMS_CONTROL, 0, TDM_IPC_CMS_UP, "", "CMS_CONTROL.cms: empty"},
        {TDM_IPC_CMS_CONTROL, 0, TDM_IPC_CMS_BINDING, "m", "CMS_CONTROL.state: binding is only a CMS_STATE"},
        {TDM_IPC_CMS_CONTROL, 0, 3, "m", "CMS_CONTROL.state: unknown state"},
        {TDM_IPC_CMS_CONTROL, 1, TDM_IPC_CMS_UP, "m", "CMS_CONTROL.proto: not 0"},
        {TDM_IPC_CMS_STATE, 0, TDM_IPC_CMS_BINDING, "m", NULL},
        {TDM_IPC_CMS_STATE, 2, TDM_IPC_CMS_UP, "m", "CMS_STATE.proto: not 0"},
        {TDM_IPC_CMS_LISTEN, 2, TDM_IPC_CMS_UP, "m", NULL},
        {TDM_IPC_CMS_LISTEN, TDM_IPC_PROTO_MAX, TDM_IPC_CMS_UP, "m", "CMS_LISTEN.proto: out of range"},
        {TDM_IPC_CMS_LISTEN, 2, TDM_IPC_CMS_DOWN, "m", "CMS_LISTEN.proto: not 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ipc_msg m = {.type = cases[i].type};
        m.u.cms = (struct ipc_cms){ipc_str_c(cases[i].cms), cases[i].proto, cases[i].state};
        const char *error = NULL;
        int rc = ipc_msg_check(&m, &error);
        if (!cases[i].error) {
            assert_int_equal(rc, 0);
            continue;
        }
        assert_int_equal(rc, TDM_EINVAL);
        assert_string_equal(error, cases[i].error);
    }
    /* The status list: ascending, unique names, known states. */
    struct ipc_msg m = {.type = TDM_IPC_CMS_STATUS_REPLY, .request_id = 1};
    m.u.cms_status_reply.n_cms = 2;
    m.u.cms_status_reply.cms[0] = (struct ipc_cms_status){ipc_str_c("b"), TDM_IPC_CMS_UP};
    m.u.cms_status_reply.cms[1] = (struct ipc_cms_status){ipc_str_c("a"), TDM_IPC_CMS_UP};
    const char *error = NULL;
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error, "CMS_STATUS_REPLY.cms.name: not in ascending order, or a duplicate");
    m.u.cms_status_reply.cms[1] = (struct ipc_cms_status){ipc_str_c("c"), 7};
    assert_int_equal(ipc_msg_check(&m, &error), TDM_EINVAL);
    assert_string_equal(error, "CMS_STATUS_REPLY.cms.state: unknown state");
    assert_string_equal(ipc_cms_state_name(TDM_IPC_CMS_BINDING), "binding");
    assert_null(ipc_cms_state_name(3));
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),         cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_truncation),         cmocka_unit_test(test_payload_truncation),
        cmocka_unit_test(test_trailing_bytes),     cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_frame_errors),       cmocka_unit_test(test_payload_errors),
        cmocka_unit_test(test_encode_rejects),     cmocka_unit_test(test_names_and_versions),
        cmocka_unit_test(test_reader_every_split), cmocka_unit_test(test_reader_chunk_sizes),
        cmocka_unit_test(test_reader_zero_copy),   cmocka_unit_test(test_reader_truncation),
        cmocka_unit_test(test_reader_bounded),     cmocka_unit_test(test_reader_poison), cmocka_unit_test(test_cms_rules),
        cmocka_unit_test(test_cluster_status_rules),
        cmocka_unit_test(test_cms_move_rules),
        cmocka_unit_test(test_db_dismounted_rules),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
