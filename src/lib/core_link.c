/*
 * A worker's link to the core (contract in core_link.h; the core's side is
 * src/tandemd/core_ipc.c).
 *
 * States: DOWN (waiting for the back-off timer), HELLO (connected or connecting, HELLO sent,
 * no reply yet), READY. Requests are accepted only in READY. Every request in flight is a
 * struct link_req on a list, matched by request id; a drop moves the list aside and fails
 * each entry with TDM_ECLOSED, so every callback runs exactly once.
 *
 * Re-entrancy hazard: a callback may make new requests or free the link. Code that calls out
 * holds link->busy; core_link_free() during that only marks the link dead (after failing what
 * is in flight), and whoever holds busy frees it on the way out.
 */
#include "lib/core_link.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LINK_BACKOFF_MIN_MS 50u
#define LINK_BACKOFF_MAX_MS 2000u
/* Requests in flight; the core pauses reading past its own bound (256 commits), so more
 * than this only queues bytes in this process. */
#define LINK_MAX_INFLIGHT 4096u

enum link_state {
    LINK_DOWN,
    LINK_HELLO,
    LINK_READY,
};

struct link_req {
    struct link_req *next;
    uint32_t id;
    uint16_t reply_type;
    core_link_reply_cb *cb;
    void *ctx;
};

#define SUB_NONE SIZE_MAX

/* A subscription, kept to be sent again after a reconnect. The subscriptions are an array
 * (for that resend) chained into a hash table by index: an IMAP worker holds one per folder
 * its sessions selected, 10,000 and more, and a linear search made each SELECT of a new
 * folder cost a scan of them all. */
struct link_sub {
    char *database, *mailbox, *folder; /* one allocation, from database */
    uint32_t hash;
    size_t next; /* the next index on its hash chain, or SUB_NONE */
};

struct core_link {
    struct event_base *base;
    struct sockaddr_un addr;
    uint16_t kind;
    enum link_state state;
    struct bufferevent *bev; /* NULL when DOWN */
    struct ipc_reader *reader;
    struct event *timer; /* reconnect back-off */
    uint32_t backoff_ms;
    uint32_t next_id;
    struct link_req *reqs; /* in flight, newest first */
    size_t n_reqs;
    struct link_sub *subs;
    size_t n_subs, cap_subs;
    size_t *buckets; /* chain heads: indexes into subs, or SUB_NONE */
    size_t n_buckets;
    core_link_changed_cb *changed_cb;
    void *changed_ctx;
    core_link_changed_cb *folder_cb;
    void *folder_ctx;
    core_link_changed_cb *dismounted_cb;
    void *dismounted_ctx;
    core_link_ready_cb *ready_cb;
    void *ready_ctx;
    unsigned busy;
    bool dead; /* freed by the caller while busy */
};

static void link_connect(struct core_link *link);

static void
link_destroy(struct core_link *link)
{
    for (size_t i = 0; i < link->n_subs; i++)
        free(link->subs[i].database);
    free(link->subs);
    free(link->buckets);
    if (link->timer)
        event_free(link->timer);
    free(link);
}

/* Fails every request in flight with TDM_ECLOSED. The list is detached first: callbacks may
 * add requests (refused: not READY) or free the link. */
static void
fail_all(struct core_link *link)
{
    struct link_req *list = link->reqs;
    link->reqs = NULL;
    link->n_reqs = 0;
    link->busy++;
    while (list) {
        struct link_req *r = list;
        list = r->next;
        r->cb(r->ctx, TDM_ECLOSED, NULL);
        free(r);
    }
    link->busy--;
}

/* Drops the connection and schedules a reconnect (unless the link is dead). */
static void
link_drop(struct core_link *link)
{
    if (link->bev)
        bufferevent_free(link->bev);
    link->bev = NULL;
    ipc_reader_free(&link->reader);
    link->state = LINK_DOWN;
    if (!link->dead) {
        struct timeval tv = {link->backoff_ms / 1000, (link->backoff_ms % 1000) * 1000};
        evtimer_add(link->timer, &tv);
        link->backoff_ms *= 2;
        if (link->backoff_ms > LINK_BACKOFF_MAX_MS)
            link->backoff_ms = LINK_BACKOFF_MAX_MS;
    }
    fail_all(link);
}

static int
link_send(struct core_link *link, const struct ipc_msg *msg)
{
    uint8_t *buf;
    size_t len;
    const char *why;
    int ret = ipc_msg_encode_alloc(msg, &buf, &len, &why);
    if (ret < 0) {
        if (ret == TDM_EINVAL)
            log_error("IPC: cannot send %s to the core: %s", ipc_type_name(msg->type), why);
        return ret;
    }
    ret = bufferevent_write(link->bev, buf, len) < 0 ? -ENOMEM : 0;
    free(buf);
    return ret;
}

static void
send_subscriptions(struct core_link *link)
{
    for (size_t i = 0; i < link->n_subs && link->state == LINK_READY; i++) {
        struct ipc_msg msg = {.type = TDM_IPC_SUBSCRIBE};
        msg.u.subscribe = (struct ipc_subscribe){ipc_str_c(link->subs[i].database),
                                                 ipc_str_c(link->subs[i].mailbox),
                                                 ipc_str_c(link->subs[i].folder)};
        if (link_send(link, &msg) < 0)
            log_error("IPC: cannot resend a subscription to the core");
    }
}

static struct link_req *
take_req(struct core_link *link, uint32_t id)
{
    for (struct link_req **p = &link->reqs; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            struct link_req *r = *p;
            *p = r->next;
            link->n_reqs--;
            return r;
        }
    return NULL;
}

/* Returns false when the connection was dropped. */
static bool
handle(struct core_link *link, const struct ipc_msg *msg)
{
    if (link->state == LINK_HELLO) {
        if (msg->type != TDM_IPC_HELLO_REPLY || msg->request_id != 1) {
            log_error("IPC: the core sent %s before answering HELLO; reconnecting",
                      ipc_type_name(msg->type));
            link_drop(link);
            return false;
        }
        if (msg->u.hello_reply.version == 0) {
            log_error("IPC: the core refused HELLO: %.*s", (int)msg->u.hello_reply.reason.len,
                      msg->u.hello_reply.reason.ptr);
            link->backoff_ms = LINK_BACKOFF_MAX_MS; /* it will not change its mind soon */
            link_drop(link);
            return false;
        }
        uint16_t v = msg->u.hello_reply.version;
        if (v < TDM_IPC_VERSION_MIN || v > TDM_IPC_VERSION) {
            /* It chose a version we never offered: a core bug, not an upgrade. */
            log_error("IPC: the core answered HELLO with version %u, outside %u..%u", (unsigned)v,
                      TDM_IPC_VERSION_MIN, TDM_IPC_VERSION);
            link_drop(link);
            return false;
        }
        link->state = LINK_READY;
        link->backoff_ms = LINK_BACKOFF_MIN_MS;
        send_subscriptions(link);
        if (link->dismounted_cb) {
            /* Forget what was down before: the core's list follows when it is not empty. */
            struct ipc_msg none = {.type = TDM_IPC_DB_DISMOUNTED};
            link->dismounted_cb(link->dismounted_ctx, &none);
        }
        if (link->ready_cb)
            link->ready_cb(link->ready_ctx); /* may free the link: read_cb checks dead */
        return link->state == LINK_READY && !link->dead;
    }
    if (msg->type == TDM_IPC_CHANGED) {
        if (link->changed_cb)
            link->changed_cb(link->changed_ctx, msg);
        return true;
    }
    if (msg->type == TDM_IPC_FOLDER_CHANGED) {
        if (link->folder_cb)
            link->folder_cb(link->folder_ctx, msg);
        return true;
    }
    if (msg->type == TDM_IPC_DB_DISMOUNTED) {
        if (link->dismounted_cb)
            link->dismounted_cb(link->dismounted_ctx, msg);
        return true;
    }
    struct link_req *r =
        ipc_type_has_request_id(msg->type) ? take_req(link, msg->request_id) : NULL;
    if (!r || r->reply_type != msg->type) {
        /* A reply to nothing we asked, or of the wrong type: the core has a bug, and this
         * connection's replies can no longer be matched to requests. */
        log_error("IPC: unexpected %s (request id %u) from the core; reconnecting",
                  ipc_type_name(msg->type), (unsigned)msg->request_id);
        if (r) {
            r->next = link->reqs;
            link->reqs = r;
            link->n_reqs++;
        }
        link_drop(link);
        return false;
    }
    r->cb(r->ctx, 0, msg);
    free(r);
    return true;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct core_link *link = arg;
    link->busy++;
    while (!link->dead && link->bev) {
        struct evbuffer *in = bufferevent_get_input(link->bev);
        size_t avail = evbuffer_get_contiguous_space(in);
        if (avail == 0)
            break;
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)avail);
        size_t len = avail;
        struct ipc_frame frame;
        struct ipc_msg msg;
        const char *why = "";
        int ret = ipc_reader_next(link->reader, &data, &len, &frame, &why);
        if (ret == 1 && ipc_msg_decode_frame(&frame, &msg, &why) < 0)
            ret = TDM_ECORRUPT;
        if (ret < 0) {
            log_error("IPC: %s from the core: %s; reconnecting",
                      ret == -ENOMEM ? "out of memory reading" : "malformed message",
                      ret == -ENOMEM ? "" : why);
            link_drop(link);
            break;
        }
        /* Handle before draining: msg borrows from the chunk. A callback may drop or free
         * the link, and with it the input buffer. */
        if (ret == 1 && !handle(link, &msg))
            break;
        if (link->dead || !link->bev)
            break;
        evbuffer_drain(in, avail - len);
    }
    link->busy--;
    if (link->dead && link->busy == 0)
        link_destroy(link);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct core_link *link = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (link->state == LINK_READY)
            log_warn("IPC: the core closed the connection; reconnecting");
        link->busy++;
        link_drop(link);
        link->busy--;
        if (link->dead && link->busy == 0)
            link_destroy(link);
    }
}

static void
link_connect(struct core_link *link)
{
    link->bev = bufferevent_socket_new(link->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!link->bev || ipc_reader_new(0, &link->reader) < 0) {
        log_error("IPC: out of memory connecting to the core");
        link_drop(link);
        return;
    }
    bufferevent_setcb(link->bev, read_cb, NULL, event_cb, link);
    link->state = LINK_HELLO;
    if (bufferevent_socket_connect(link->bev, (struct sockaddr *)&link->addr, sizeof(link->addr)) <
        0) {
        /* The core is not listening (yet): expected while it starts or restarts. */
        link_drop(link);
        return;
    }
    bufferevent_enable(link->bev, EV_READ);
    /* Queued until the connection completes. Request id 1: nothing else is in flight yet. */
    struct ipc_msg hello = {.type = TDM_IPC_HELLO, .request_id = 1};
    hello.u.hello =
        (struct ipc_hello){link->kind, (uint32_t)getpid(), TDM_IPC_VERSION_MIN, TDM_IPC_VERSION};
    if (link_send(link, &hello) < 0)
        link_drop(link);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core_link *link = arg;
    link->busy++;
    link_connect(link);
    link->busy--;
    if (link->dead && link->busy == 0)
        link_destroy(link);
}

int
core_link_new(struct event_base *base, const char *socket_path, uint16_t kind,
              struct core_link **link_r)
{
    struct core_link *link = calloc(1, sizeof(*link));
    if (!link)
        return -ENOMEM;
    link->addr.sun_family = AF_UNIX;
    size_t n = strlen(socket_path);
    if (n == 0 || n >= sizeof(link->addr.sun_path) || ipc_worker_kind_name(kind) == NULL) {
        free(link);
        return TDM_EINVAL;
    }
    memcpy(link->addr.sun_path, socket_path, n + 1);
    link->base = base;
    link->kind = kind;
    link->backoff_ms = LINK_BACKOFF_MIN_MS;
    link->next_id = 2; /* 1 is HELLO's */
    link->timer = evtimer_new(base, timer_cb, link);
    if (!link->timer) {
        free(link);
        return -ENOMEM;
    }
    /* Asynchronous: a refused connect only schedules the next try. */
    link_connect(link);
    *link_r = link;
    return 0;
}

void
core_link_free(struct core_link **linkp)
{
    struct core_link *link = *linkp;
    if (!link)
        return;
    *linkp = NULL;
    link->dead = true;
    evtimer_del(link->timer);
    link->busy++;
    link_drop(link);
    link->busy--;
    if (link->busy == 0)
        link_destroy(link);
}

bool
core_link_ready(const struct core_link *link)
{
    return link->state == LINK_READY && !link->dead;
}

static uint32_t
next_request_id(struct core_link *link)
{
    /* Skips 0 (not a request id) and ids still in flight after a wrap. */
    for (;;) {
        uint32_t id = link->next_id++;
        if (id == 0)
            continue;
        bool used = false;
        for (struct link_req *r = link->reqs; r && !used; r = r->next)
            used = r->id == id;
        if (!used)
            return id;
    }
}

static int
link_request(struct core_link *link, struct ipc_msg *msg, uint16_t reply_type,
             core_link_reply_cb *cb, void *ctx)
{
    if (!core_link_ready(link))
        return TDM_ECLOSED;
    if (link->n_reqs >= LINK_MAX_INFLIGHT)
        return TDM_ELIMIT;
    msg->request_id = next_request_id(link);
    const char *why;
    if (ipc_msg_check(msg, &why) < 0) {
        log_error("IPC: refusing to send %s: %s", ipc_type_name(msg->type), why);
        return TDM_EINVAL;
    }
    struct link_req *r = malloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    int ret = link_send(link, msg);
    if (ret < 0) {
        free(r);
        return ret;
    }
    *r = (struct link_req){link->reqs, msg->request_id, reply_type, cb, ctx};
    link->reqs = r;
    link->n_reqs++;
    return 0;
}

int
core_link_commit(struct core_link *link, const char *database, uint16_t record_type,
                 const void *payload, size_t len, core_link_reply_cb *cb, void *ctx)
{
    if (len > TDM_LOG_MAX_PAYLOAD)
        return TDM_EINVAL;
    struct ipc_msg msg = {.type = TDM_IPC_COMMIT};
    msg.u.commit = (struct ipc_commit){ipc_str_c(database), record_type, payload, (uint32_t)len};
    return link_request(link, &msg, TDM_IPC_COMMIT_REPLY, cb, ctx);
}

int
core_link_status(struct core_link *link, core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_STATUS_REQUEST};
    return link_request(link, &msg, TDM_IPC_STATUS_REPLY, cb, ctx);
}

int
core_link_db_status(struct core_link *link, core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_DB_STATUS_REQUEST};
    return link_request(link, &msg, TDM_IPC_DB_STATUS_REPLY, cb, ctx);
}

int
core_link_copy_status(struct core_link *link, core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_COPY_STATUS_REQUEST};
    return link_request(link, &msg, TDM_IPC_COPY_STATUS_REPLY, cb, ctx);
}

int
core_link_cms_status(struct core_link *link, core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_CMS_STATUS_REQUEST};
    return link_request(link, &msg, TDM_IPC_CMS_STATUS_REPLY, cb, ctx);
}

int
core_link_cluster_status(struct core_link *link, core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_CLUSTER_STATUS_REQUEST};
    return link_request(link, &msg, TDM_IPC_CLUSTER_STATUS_REPLY, cb, ctx);
}

int
core_link_cms_move(struct core_link *link, const char *cms, const char *to, const char *comment,
                   core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_CMS_MOVE};
    msg.u.cms_move.cms = ipc_str_c(cms);
    msg.u.cms_move.to = ipc_str_c(to);
    msg.u.cms_move.comment = ipc_str_c(comment);
    return link_request(link, &msg, TDM_IPC_CMS_MOVE_REPLY, cb, ctx);
}

int
core_link_copy_control(struct core_link *link, const char *database, uint16_t action,
                       const char *comment, core_link_reply_cb *cb, void *ctx)
{
    struct ipc_msg msg = {.type = TDM_IPC_COPY_CONTROL};
    msg.u.copy_control = (struct ipc_copy_control){ipc_str_c(database), action,
                                                   ipc_str_c(comment ? comment : "")};
    return link_request(link, &msg, TDM_IPC_COPY_CONTROL_REPLY, cb, ctx);
}

void
core_link_set_changed_cb(struct core_link *link, core_link_changed_cb *cb, void *ctx)
{
    link->changed_cb = cb;
    link->changed_ctx = ctx;
}

void
core_link_set_folder_cb(struct core_link *link, core_link_changed_cb *cb, void *ctx)
{
    link->folder_cb = cb;
    link->folder_ctx = ctx;
}

void
core_link_set_dismounted_cb(struct core_link *link, core_link_changed_cb *cb, void *ctx)
{
    link->dismounted_cb = cb;
    link->dismounted_ctx = ctx;
}

void
core_link_set_ready_cb(struct core_link *link, core_link_ready_cb *cb, void *ctx)
{
    link->ready_cb = cb;
    link->ready_ctx = ctx;
}

static uint32_t
sub_hash(const char *database, const char *mailbox, const char *folder)
{
    uint32_t h = 2166136261u; /* FNV-1a; the NULs keep ("ab","c") apart from ("a","bc") */
    const char *parts[] = {database, mailbox, folder};
    for (size_t i = 0; i < 3; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
            h = (h ^ *p) * 16777619u;
        h *= 16777619u;
    }
    return h;
}

/* The chain link that holds the matching subscription's index, or the SUB_NONE ending its
 * chain; NULL before the first subscription. */
static size_t *
sub_slot(struct core_link *link, uint32_t hash, const char *database, const char *mailbox,
         const char *folder)
{
    if (link->n_buckets == 0)
        return NULL;
    size_t *p = &link->buckets[hash % link->n_buckets];
    while (*p != SUB_NONE) {
        const struct link_sub *x = &link->subs[*p];
        if (x->hash == hash && !strcmp(x->database, database) && !strcmp(x->mailbox, mailbox) &&
            !strcmp(x->folder, folder))
            break;
        p = &link->subs[*p].next;
    }
    return p;
}

/* Room for one more subscription in the array and the table. Returns 0 or -ENOMEM, with
 * nothing changed. */
static int
sub_reserve(struct core_link *link)
{
    if (link->n_subs == link->cap_subs) {
        size_t cap = link->cap_subs ? link->cap_subs * 2 : 16;
        struct link_sub *grown = realloc(link->subs, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        link->subs = grown;
        link->cap_subs = cap;
    }
    if (link->n_subs < link->n_buckets)
        return 0;
    size_t n = link->n_buckets ? link->n_buckets * 2 : 64;
    size_t *b = malloc(n * sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        b[i] = SUB_NONE;
    for (size_t i = 0; i < link->n_subs; i++) {
        link->subs[i].next = b[link->subs[i].hash % n];
        b[link->subs[i].hash % n] = i;
    }
    free(link->buckets);
    link->buckets = b;
    link->n_buckets = n;
    return 0;
}

/* Checks and, when connected, sends (UN)SUBSCRIBE. */
static int
send_sub(struct core_link *link, uint16_t type, const char *database, const char *mailbox,
         const char *folder)
{
    struct ipc_msg msg = {.type = type};
    msg.u.subscribe =
        (struct ipc_subscribe){ipc_str_c(database), ipc_str_c(mailbox), ipc_str_c(folder)};
    const char *why;
    if (ipc_msg_check(&msg, &why) < 0)
        return TDM_EINVAL;
    if (!core_link_ready(link))
        return 0; /* sent with the others once HELLO is answered */
    return link_send(link, &msg);
}

int
core_link_subscribe(struct core_link *link, const char *database, const char *mailbox,
                    const char *folder)
{
    if (!folder)
        folder = "";
    uint32_t hash = sub_hash(database, mailbox, folder);
    size_t *slot = sub_slot(link, hash, database, mailbox, folder);
    if (slot && *slot != SUB_NONE)
        return 0;
    /* Remembered before it is sent, so an allocation failure never leaves the core with a
     * subscription the link would not renew after a reconnect. */
    size_t ld = strlen(database) + 1, lm = strlen(mailbox) + 1, lf = strlen(folder) + 1;
    char *names = malloc(ld + lm + lf);
    int ret = names ? sub_reserve(link) : -ENOMEM;
    if (ret == 0)
        ret = send_sub(link, TDM_IPC_SUBSCRIBE, database, mailbox, folder);
    if (ret < 0) {
        free(names);
        return ret;
    }
    size_t i = link->n_subs++, b = hash % link->n_buckets;
    link->subs[i] = (struct link_sub){memcpy(names, database, ld), memcpy(names + ld, mailbox, lm),
                                      memcpy(names + ld + lm, folder, lf), hash, link->buckets[b]};
    link->buckets[b] = i;
    return 0;
}

int
core_link_unsubscribe(struct core_link *link, const char *database, const char *mailbox,
                      const char *folder)
{
    if (!folder)
        folder = "";
    int ret = send_sub(link, TDM_IPC_UNSUBSCRIBE, database, mailbox, folder);
    size_t *slot = sub_slot(link, sub_hash(database, mailbox, folder), database, mailbox, folder);
    if (ret < 0 || !slot || *slot == SUB_NONE)
        return ret;
    size_t at = *slot, last = --link->n_subs;
    *slot = link->subs[at].next; /* off its chain */
    free(link->subs[at].database);
    if (at != last) { /* the last fills the hole: its chain now says at */
        size_t *p = &link->buckets[link->subs[last].hash % link->n_buckets];
        while (*p != last)
            p = &link->subs[*p].next;
        *p = at;
        link->subs[at] = link->subs[last];
    }
    return 0;
}
