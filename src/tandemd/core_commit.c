/*
 * Commits from workers (docs/tandemd.md, "Core socket"): COMMIT -> store_commit_async() ->
 * COMMIT_REPLY, and the CHANGED that follow a commit into a subscribed folder. The
 * connections themselves are core_ipc.c's.
 *
 * Threads: the store's callback runs on the database's apply thread. It only fills a struct
 * core_pending and appends it to a mutex-protected list, waking the loop through an eventfd;
 * the loop thread sends the reply. Nothing here touches a bufferevent, a connection or LMDB
 * from the apply thread.
 *
 * Lifetimes: a pending commit points at its connection, which core_ipc.c keeps (as a zombie
 * if it closed) until conn->inflight is back to 0.
 */
#include "tandemd/core_ipc_int.h"
#include "tandemd/core_ack.h"

#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/mail.h"
#include "store/store.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* (mailbox, folder) pairs one commit can change: an append's targets at most (a copy or move
 * has two). */
#define CORE_IPC_MAX_CHANGED MAIL_MAX_TARGETS

/* A folder a commit may have changed, for CHANGED. */
struct core_touched {
    char *mailbox, *folder;
};

/* One COMMIT handed to a store. Filled on the apply thread, consumed on the loop thread. */
struct core_pending {
    struct core_pending *next;
    struct core_conn *conn;
    struct store *store;
    char *database;
    uint32_t request_id;
    bool store_error; /* the store failed the commit (not a refusal of the mail model) */
    struct ipc_commit_reply reply;
    struct core_touched touched[CORE_IPC_MAX_CHANGED];
    size_t n_touched;
    /* A folder operation, for FOLDER_CHANGED: its record type (0: none) and names, owned. */
    uint16_t folder_op;
    char *folder_mailbox, *folder_old, *folder_new;
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct core_pending *done_head, *done_tail;
static int done_fd = -1;
static struct event *done_ev;

/* ---- Replies from the apply threads ---- */

/* Apply thread. Copies what the loop needs; never touches the connection. */
static void
commit_done_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *res)
{
    struct core_pending *p = ctx;
    struct ipc_commit_reply *r = &p->reply;
    r->lsn = lsn;
    if (status < 0 || !res) {
        r->status = status < 0 ? status : TDM_EFAILED;
        p->store_error = true;
    } else {
        r->status = res->status;
        r->uidvalidity = res->uidvalidity;
        r->first_uid = res->first_uid;
        r->count = res->count;
        r->modseq = res->modseq;
        r->n_targets = res->n_targets <= TDM_IPC_MAX_TARGETS ? res->n_targets : 0;
        for (uint32_t i = 0; i < r->n_targets; i++) {
            r->targets[i].status = res->target_status[i];
            r->targets[i].uid = res->target_uid[i];
            r->targets[i].uidvalidity = res->target_uidvalidity[i];
        }
    }
    pthread_mutex_lock(&done_lock);
    /* Only the first entry of a list wakes the loop: it takes the whole list under this lock,
     * so an entry added to a non-empty list is taken with it. One wake-up per batch, not one
     * write(2) per commit. */
    bool wake = done_head == NULL;
    p->next = NULL;
    if (done_tail)
        done_tail->next = p;
    else
        done_head = p;
    done_tail = p;
    pthread_mutex_unlock(&done_lock);
    uint64_t one = 1;
    /* EAGAIN would need 2^64-1 unread wake-ups; any other failure is logged, and the list
     * waits for the next wake-up. */
    if (wake && write(done_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error("cannot wake the core's loop: %s", strerror(errno));
}

static void
pending_free(struct core_pending *p)
{
    for (size_t i = 0; i < p->n_touched; i++) {
        free(p->touched[i].mailbox);
        free(p->touched[i].folder);
    }
    free(p->folder_mailbox);
    free(p->folder_old);
    free(p->folder_new);
    free(p->database);
    free(p);
}

/* Reads mailbox/folder of database from LMDB into a CHANGED. Read rather than taken from a
 * commit's result, which knows UIDs but not the folder's message count; a later commit may
 * already show, which is what CHANGED means: look again. Returns false when the folder is
 * not there (a refused target, deleted since) or the read fails: nothing to show. The
 * strings of *msg borrow from the arguments. */
static bool
changed_read(struct store *store, const char *database, const char *mailbox, const char *folder,
             struct ipc_msg *msg)
{
    MDB_txn *txn;
    if (store_read_begin(store, &txn) < 0)
        return false;
    struct mail_folder_info fi;
    int ret = mail_folder_get(store_mail_dbis(store), txn, mailbox, folder, &fi);
    mdb_txn_abort(txn);
    if (ret < 0)
        return false;
    *msg = (struct ipc_msg){.type = TDM_IPC_CHANGED};
    msg->u.changed = (struct ipc_changed){
        ipc_str_c(database), ipc_str_c(mailbox), ipc_str_c(folder), fi.uidvalidity,
        fi.uidnext,          fi.messages,        fi.highestmodseq};
    return true;
}

/* Loop thread, after the commit applied: tells every subscriber of a touched folder what it
 * holds now. */
static void
notify_changed(const struct core_pending *p)
{
    if (p->reply.status != 0 && p->reply.n_targets == 0)
        return;
    for (size_t t = 0; t < p->n_touched; t++) {
        const struct core_touched *tf = &p->touched[t];
        if (tandemd__subs_send(p->database, tf->mailbox, tf->folder, NULL) == 0)
            continue; /* nobody watches it: no read */
        struct ipc_msg msg;
        if (changed_read(p->store, p->database, tf->mailbox, tf->folder, &msg))
            tandemd__subs_send(p->database, tf->mailbox, tf->folder, &msg);
    }
}

/* A worker reads a folder and subscribes to it; the core takes the subscription a little
 * later. A commit applied in between would be announced to nobody, and the worker's read
 * came too early to see it (an IDLE session would wait for the next delivery). So once the
 * subscription is in place the core says what the folder holds: the worker looks again. A
 * commit still in flight now is announced when it applies, since every commit's folders are
 * noted at submission (find_touched) whoever subscribes then. */
void
tandemd__commit_announce(struct core_conn *c, const struct ipc_subscribe *s)
{
    if (s->folder.len == 0)
        return; /* every folder of a mailbox: FOLDER_CHANGED and CHANGED say what changes */
    struct store *store = tandemd__core_db_find(s->database.ptr, s->database.len);
    if (!store)
        return; /* a copy, dismounted, or not here: nothing is committed here to miss */
    char database[TDM_IPC_NAME_MAX + 1], mailbox[TDM_IPC_NAME_MAX + 1],
        folder[TDM_IPC_NAME_MAX + 1];
    /* ipc.h bounds every name by TDM_IPC_NAME_MAX; the strings are not NUL-terminated. */
    snprintf(database, sizeof(database), "%.*s", (int)s->database.len, s->database.ptr);
    snprintf(mailbox, sizeof(mailbox), "%.*s", (int)s->mailbox.len, s->mailbox.ptr);
    snprintf(folder, sizeof(folder), "%.*s", (int)s->folder.len, s->folder.ptr);
    struct ipc_msg msg;
    if (!changed_read(store, database, mailbox, folder, &msg))
        return; /* not there (yet): its creation is announced by FOLDER_CHANGED */
    tandemd__conn_send(c, &msg);
    tandemd__core_stats.changed_sent_total++;
}

/* ---- FOLDER_CHANGED ---- */

static void
send_folder_changed(const struct core_pending *p, const char *folder, uint16_t change,
                    const char *new_folder, uint32_t uidvalidity)
{
    struct ipc_msg msg = {.type = TDM_IPC_FOLDER_CHANGED};
    msg.u.folder_changed = (struct ipc_folder_changed){ipc_str_c(p->database),
                                                       ipc_str_c(p->folder_mailbox),
                                                       ipc_str_c(folder),
                                                       change,
                                                       ipc_str_c(new_folder ? new_folder : ""),
                                                       uidvalidity};
    tandemd__subs_send(p->database, p->folder_mailbox, folder, &msg);
}

struct renamed_ctx {
    const struct core_pending *p;
    size_t new_len;
};

/* Each folder now in the renamed subtree: its subscribers knew it by its old name. */
static int
renamed_cb(void *ctx, const struct mail_folder_info *fi)
{
    struct renamed_ctx *rc = ctx;
    const struct core_pending *p = rc->p;
    if (strncmp(fi->name, p->folder_new, rc->new_len) != 0 ||
        (fi->name[rc->new_len] != '\0' && fi->name[rc->new_len] != MAIL_HIER_SEP))
        return 0;
    char old[MAIL_NAME_MAX + 1];
    int n = snprintf(old, sizeof(old), "%s%s", p->folder_old, fi->name + rc->new_len);
    if (n < 0 || (size_t)n >= sizeof(old))
        return 0; /* no such name could have been subscribed */
    if (tandemd__subs_send(p->database, p->folder_mailbox, old, NULL) > 0)
        send_folder_changed(p, old, TDM_IPC_FOLDER_RENAMED, fi->name, fi->uidvalidity);
    return 0;
}

/* Loop thread, after a folder operation applied: tells the subscribers of the folder (and of
 * its mailbox's every folder) that it was created, deleted or renamed. A rename moves the
 * folder's inferiors along, each announced under its old name; renaming INBOX moves only its
 * messages (a CHANGED for INBOX says so, find_touched) into a folder that is new. */
static void
notify_folder(const struct core_pending *p)
{
    if (!p->folder_op || p->reply.status != 0)
        return;
    if (p->folder_op == TDM_REC_FOLDER_DELETE) {
        send_folder_changed(p, p->folder_old, TDM_IPC_FOLDER_DELETED, NULL, 0);
        return;
    }
    bool inbox = p->folder_op == TDM_REC_FOLDER_RENAME && !strcasecmp(p->folder_old, "INBOX");
    const char *created = p->folder_op == TDM_REC_FOLDER_CREATE ? p->folder_old
                          : inbox                               ? p->folder_new
                                                                : NULL;
    if (created && tandemd__subs_send(p->database, p->folder_mailbox, created, NULL) == 0)
        return;
    MDB_txn *txn;
    if (store_read_begin(p->store, &txn) < 0)
        return;
    const struct mail_dbis *dbis = store_mail_dbis(p->store);
    if (created) {
        struct mail_folder_info fi;
        if (mail_folder_get(dbis, txn, p->folder_mailbox, created, &fi) == 0)
            send_folder_changed(p, created, TDM_IPC_FOLDER_CREATED, NULL, fi.uidvalidity);
    } else {
        /* Renames are rare and a mailbox's folders few: listing them beats indexing
         * subscriptions by name prefix. */
        struct renamed_ctx rc = {p, strlen(p->folder_new)};
        (void)mail_folder_list(dbis, txn, p->folder_mailbox, renamed_cb, &rc);
    }
    mdb_txn_abort(txn);
}

/* ---- Acknowledgement deadlines (core_ack.h) ---- */

struct ack_deadline {
    struct ack_deadline *next;
    uint64_t until_ms;
    char name[];
};

static struct ack_deadline *ack_deadlines;

void
tandemd__core_db_set_ack_deadline(const char *name, uint64_t until_ms)
{
    struct ack_deadline **pp = &ack_deadlines;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    if (until_ms == UINT64_MAX) {
        struct ack_deadline *d = *pp;
        if (d) {
            *pp = d->next;
            free(d);
        }
        return;
    }
    if (!*pp) {
        size_t len = strlen(name);
        struct ack_deadline *d = calloc(1, sizeof(*d) + len + 1);
        if (!d)
            log_fatal("out of memory");
        memcpy(d->name, name, len + 1);
        *pp = d;
    }
    (*pp)->until_ms = until_ms;
}

bool
tandemd__core_db_may_ack(const char *name)
{
    if (tandemd__core_db_fenced(name))
        return false;
    for (const struct ack_deadline *d = ack_deadlines; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return tdm_clock_ms() < d->until_ms;
    return true;
}

/* Loop thread: answers one commit (unless send is false or its worker left), tells the
 * subscribers, frees it, and lets a paused connection read again. */
static void
finish(struct core_pending *p, bool send)
{
    struct core_conn *c = p->conn;
    c->inflight--;
    c->busy++; /* sending may close it; it must outlive this call */
    /* A fenced database, or one past its deadline, acknowledges nothing, not even what is
     * durable: the client retries, and a duplicate is dropped by its delivery id
     * (docs/replication.md, "Dismount"; docs/cluster.md). */
    if (send && p->reply.status == 0 && !tandemd__core_db_may_ack(p->database))
        p->reply = (struct ipc_commit_reply){.status = TDM_ENOTFOUND};
    if (send && !c->closed) {
        struct ipc_msg msg = {.type = TDM_IPC_COMMIT_REPLY, .request_id = p->request_id};
        msg.u.commit_reply = p->reply;
        tandemd__conn_send(c, &msg);
    }
    if (send) {
        notify_changed(p);
        notify_folder(p);
    }
    pending_free(p);
    if (!c->closed && c->paused && c->inflight < CORE_IPC_MAX_INFLIGHT) {
        c->paused = false;
        bufferevent_enable(c->bev, EV_READ);
        /* Frames already buffered raise no new read event. */
        tandemd__conn_process(c);
    }
    c->busy--;
    tandemd__conn_free_if_done(c);
}

void
tandemd__commit_release(void *item, bool send)
{
    finish(item, send);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_error("core wake-up: %s", strerror(errno));
    pthread_mutex_lock(&done_lock);
    struct core_pending *list = done_head;
    done_head = done_tail = NULL;
    pthread_mutex_unlock(&done_lock);
    while (list) {
        struct core_pending *p = list;
        list = p->next;
        if (p->store_error)
            tandemd__core_stats.commit_errors_total++;
        /* In sync mode a logged commit waits for a passive copy's ACK (core_sync.c); a store
         * error has nothing a copy could hold. CHANGED waits with it: readers see LMDB
         * anyway, but the committing client hears first. */
        if (!p->store_error && p->reply.lsn != 0 &&
            tandemd__sync_hold(p->database, p->reply.lsn, p))
            continue;
        finish(p, true);
    }
}

static void
reply_commit_status(struct core_conn *c, uint32_t request_id, int status)
{
    struct ipc_msg msg = {.type = TDM_IPC_COMMIT_REPLY, .request_id = request_id};
    msg.u.commit_reply.status = status;
    tandemd__core_stats.commit_errors_total++;
    tandemd__conn_send(c, &msg);
}

static void
touch(struct core_pending *p, const char *mailbox, const char *folder)
{
    if (!mailbox || !folder || p->n_touched >= CORE_IPC_MAX_CHANGED)
        return;
    /* An LMTP delivery may name one folder twice (two aliases of one user): one CHANGED. */
    for (size_t i = 0; i < p->n_touched; i++)
        if (!strcmp(p->touched[i].mailbox, mailbox) && !strcmp(p->touched[i].folder, folder))
            return;
    p->touched[p->n_touched].mailbox = tandemd__xstrndup(mailbox, strlen(mailbox));
    p->touched[p->n_touched].folder = tandemd__xstrndup(folder, strlen(folder));
    p->n_touched++;
}

/* Which folders the record changes: decoded here (the store validates the same payload
 * again; decoding is cheap next to an fsync). Always, not only when someone subscribes to the
 * database now: a subscription that arrives before this commit applies must hear of it
 * (tandemd__commit_announce). */
static void
find_touched(struct core_pending *p, const struct ipc_commit *cm)
{
    if (!mail_is_mail_record(cm->record_type))
        return;
    struct mail_decoded dec;
    const char *why;
    if (mail_op_decode(cm->record_type, cm->payload, cm->payload_len, &dec, &why) < 0)
        return; /* the store refuses it too */
    const struct mail_op *op = &dec.op;
    switch (op->type) {
    case TDM_REC_MESSAGE_APPEND:
        for (size_t i = 0; i < op->n_targets; i++)
            touch(p, op->targets[i].mailbox, op->targets[i].folder);
        break;
    case TDM_REC_MESSAGE_FLAGS:
    case TDM_REC_MESSAGE_EXPUNGE:
        touch(p, op->mailbox, op->folder);
        break;
    case TDM_REC_MESSAGE_COPY:
        touch(p, op->mailbox, op->new_folder);
        if (op->move)
            touch(p, op->mailbox, op->folder);
        break;
    case TDM_REC_FOLDER_RENAME:
        /* INBOX's messages move out: INBOX itself changes (a new UIDVALIDITY). */
        if (!strcasecmp(op->folder, "INBOX"))
            touch(p, op->mailbox, op->folder);
        /* fall through */
    case TDM_REC_FOLDER_CREATE:
    case TDM_REC_FOLDER_DELETE:
        p->folder_op = op->type;
        p->folder_mailbox = tandemd__xstrndup(op->mailbox, strlen(op->mailbox));
        p->folder_old = tandemd__xstrndup(op->folder, strlen(op->folder));
        if (op->type == TDM_REC_FOLDER_RENAME)
            p->folder_new = tandemd__xstrndup(op->new_folder, strlen(op->new_folder));
        break;
    default:
        break; /* mailbox operations, subscriptions, \Recent claims: no folder's contents */
    }
    mail_decoded_clear(&dec);
}

void
tandemd__commit_handle(struct core_conn *c, const struct ipc_msg *msg)
{
    const struct ipc_commit *cm = &msg->u.commit;
    tandemd__core_stats.commits_total++;
    struct store *store = tandemd__core_db_find(cm->database.ptr, cm->database.len);
    if (!store) {
        /* Only replay writes a copy. Workers do not commit to one (store_readers_is_copy), so
         * this is a worker racing a copy made meanwhile, or a bug: worth a line. The answer
         * is the one for a database not here at all. */
        if (tandemd__core_repl_holds_copy(cm->database.ptr, cm->database.len))
            log_warn("commit to database %.*s refused: this server holds only a copy of it",
                     (int)cm->database.len, cm->database.ptr);
        reply_commit_status(c, msg->request_id, TDM_ENOTFOUND);
        return;
    }
    /* Fenced or past its acknowledgement deadline (the cluster agent lost its confirmation, or
     * a dismount is under way): refused before the log, answered as a database not here. Only
     * commits already in flight when the fence came are ambiguous: durable, maybe shipped, but
     * never acknowledged (finish()); the client retries and the delivery id drops a duplicate
     * (docs/cluster.md "Timing"). */
    char name[256];
    if (cm->database.len < sizeof(name)) {
        memcpy(name, cm->database.ptr, cm->database.len);
        name[cm->database.len] = '\0';
        if (!tandemd__core_db_may_ack(name)) {
            reply_commit_status(c, msg->request_id, TDM_ENOTFOUND);
            return;
        }
    }
    struct core_pending *p = calloc(1, sizeof(*p));
    if (!p)
        log_fatal("out of memory");
    p->conn = c;
    p->store = store;
    p->request_id = msg->request_id;
    p->database = tandemd__xstrndup(cm->database.ptr, cm->database.len);
    find_touched(p, cm);
    int ret =
        store_commit_async(store, cm->record_type, cm->payload, cm->payload_len, commit_done_cb, p);
    if (ret < 0) {
        /* Refused before the log (disk reserve, failed, closing, a payload that does not
         * validate): the callback never runs, so answer now. */
        pending_free(p);
        reply_commit_status(c, msg->request_id, ret);
        return;
    }
    c->inflight++;
}

/* ---- Start and stop ---- */

void
tandemd__commit_start(struct event_base *base)
{
    done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (done_fd < 0)
        log_fatal("eventfd: %s", strerror(errno));
    done_ev = event_new(base, done_fd, EV_READ | EV_PERSIST, done_cb, NULL);
    if (!done_ev || event_add(done_ev, NULL) < 0)
        log_fatal("cannot watch the core's wake-up descriptor");
}

void
tandemd__commit_free(void)
{
    tandemd__sync_free();
    while (ack_deadlines) {
        struct ack_deadline *d = ack_deadlines;
        ack_deadlines = d->next;
        free(d);
    }
    /* Every store has closed: each commit's callback has run and its pending is queued. */
    struct core_pending *list = done_head;
    done_head = done_tail = NULL;
    while (list) {
        struct core_pending *p = list;
        list = p->next;
        struct core_conn *c = p->conn;
        c->inflight--;
        pending_free(p);
        tandemd__conn_free_if_done(c);
    }
    if (done_ev)
        event_free(done_ev);
    done_ev = NULL;
    if (done_fd >= 0)
        close(done_fd);
    done_fd = -1;
}
