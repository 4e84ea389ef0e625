/*
 * What other servers ask a directory server (docs/formats/admin-api.md): POST /v1/auth/verify
 * checks a login a mailbox or access server received, and GET /v1/changes is the change
 * journal those servers follow to invalidate their directory caches (src/dirclient/), and
 * GET /v1/recipients/<address> says whose mailbox a mail address reaches and where its mail
 * goes (LMTP on a mailbox server, SMTP on a transport server). All are for members of
 * `servers` (and `local`) only.
 *
 * A /v1/changes with wait and nothing new is held and the journal polled: commits are applied
 * by the core, another process, so there is nothing in this one to wake us; an LMDB read of
 * the last seq every POLL_MS is cheap, and a cache a fraction of a second late is fine.
 */
#include "admin/admin_int.h"

#include "lib/err.h"
#include "lib/log.h"
#include "proto/json/admin_request.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANGES_MAX 1000u    /* entries in one answer */
#define CHANGES_WAIT_MAX 60u /* seconds */
#define CHANGES_POLL_MS 200

struct admin_poll {
    struct admin_server *srv;
    struct admin_call *call;
    struct admin_poll *next, *prev;
    struct event *timer;
    uint64_t since;
    struct timespec deadline;
};

/* Local, or a member of `servers`. Returns 1, or 0 after answering. */
static int
authorize_servers(struct admin_call *call, void *state, MDB_txn *txn)
{
    struct dir_principal who;
    if (!admin_who_principal(call, &who))
        return 1; /* local */
    bool member = false;
    int ret = dir_is_member(state, txn, DIR_GROUP_SERVERS, &who, &member);
    if (ret < 0) {
        admin_reply_storage_error(call, ret, "group/servers");
        return 0;
    }
    if (member)
        return 1;
    char p[DIR_NAME_MAX + 16];
    admin_who_text(call, p, sizeof(p));
    admin_reply_error(
        call, 403,
        json_pack("{s:s,s:s,s:s}", "object", "group/servers", "principal", p, "right", "member"),
        "%s is not a member of group servers: only servers may ask this", p);
    return 0;
}

static void
verify_done_cb(struct admin_call *call, int result, const char *hash)
{
    (void)hash;
    if (call->gone) {
        admin_call_free(call);
        return;
    }
    if (result == 0 && !call->auth_dummy) {
        char p[DIR_NAME_MAX + 16];
        snprintf(p, sizeof(p), "%s:%s", call->verify_server ? "server" : "user", call->name);
        admin_reply_json(call, 200,
                         json_pack("{s:b,s:s,s:I}", "ok", 1, "principal", p, "version",
                                   (json_int_t)call->version));
    } else if (result == 0 || result == -EACCES) {
        admin_reply_json(call, 200, json_pack("{s:b}", "ok", 0));
    } else {
        admin_reply_error(call, 500, NULL, "cannot check the password: %s", tdm_strerror(result));
    }
}

void
admin_auth_verify_serve(struct admin_call *call)
{
    if (call->method != EVHTTP_REQ_POST) {
        admin_reply_error(call, 405, NULL, "use POST");
        return;
    }
    struct admin_req req;
    if (admin_read_body(call, ADMIN_REQ_AUTH_VERIFY, &req) < 0)
        return;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0) {
        admin_req_clear(&req);
        return;
    }
    if (authorize_servers(call, state, txn) != 1) {
        mdb_txn_abort(txn);
        admin_req_clear(&req);
        return;
    }
    char hash[DIR_PASSWORD_HASH_MAX];
    struct dir_object o;
    enum dir_kind kind = req.verify_server ? DIR_KIND_SERVER : DIR_KIND_USER;
    int ret = dir_secret_hash(state, txn, kind, req.user, hash);
    if (ret == 0 && (ret = dir_object_get(state, txn, kind, req.user, &o)) == 0) {
        call->version = o.version;
        dir_object_clear(&o);
    }
    /* A server's key counts only while the server is one of `servers` (replication peers
     * must be): outside the group it is answered like a wrong key. */
    if (ret == 0 && req.verify_server) {
        struct dir_principal who = {.kind = DIR_KIND_SERVER, .name = req.user};
        bool member = false;
        ret = dir_is_member(state, txn, DIR_GROUP_SERVERS, &who, &member);
        if (ret == 0 && !member)
            ret = -EACCES;
    }
    mdb_txn_abort(txn);
    if (ret < 0 && ret != -EACCES && ret != TDM_ENOTFOUND) {
        admin_req_clear(&req);
        admin_reply_storage_error(call, ret, "the user's password");
        return;
    }
    snprintf(call->name, sizeof(call->name), "%s", req.user);
    call->verify_server = req.verify_server;
    call->auth_dummy = ret < 0;
    /* As for our own logins (admin_auth.c): a user without a password costs a hash, so the
     * time taken does not say whether the user exists. */
    ret = call->auth_dummy
              ? admin_crypto_hash(call->srv->crypto, call, req.password, verify_done_cb)
              : admin_crypto_verify(call->srv->crypto, call, hash, req.password, verify_done_cb);
    sodium_memzero(hash, sizeof(hash));
    admin_req_clear(&req);
    if (ret < 0)
        admin_reply_error(call, 503, NULL,
                          "too many password checks in progress: try again in a moment");
}

/* ---- /v1/changes ---- */

static int
change_cb(void *ctx, const struct dir_change *c)
{
    json_array_append_new(ctx, json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)c->seq, "kind",
                                         dir_kind_name(c->kind), "name", c->name));
    return 0;
}

/* Reads the journal after since. Returns 1 after answering, 0 when there is nothing yet (and
 * nothing was answered), -1 after answering an error. */
static int
changes_answer(struct admin_call *call, uint64_t since, bool answer_empty)
{
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return -1;
    json_t *changes = json_array();
    uint64_t last = since;
    bool reset = false;
    int ret = dir_changes_since(state, txn, since, CHANGES_MAX, change_cb, changes, &last, &reset);
    mdb_txn_abort(txn);
    if (ret < 0) {
        json_decref(changes);
        admin_reply_storage_error(call, ret, "the change journal");
        return -1;
    }
    if (!reset && json_array_size(changes) == 0 && !answer_empty) {
        json_decref(changes);
        return 0;
    }
    admin_reply_json(
        call, 200,
        json_pack("{s:I,s:b,s:o}", "last", (json_int_t)last, "reset", reset, "changes", changes));
    return 1;
}

static void
poll_free(struct admin_poll *p)
{
    struct admin_server *srv = p->srv;
    if (p->prev)
        p->prev->next = p->next;
    else
        srv->polls = p->next;
    if (p->next)
        p->next->prev = p->prev;
    event_free(p->timer);
    free(p);
}

void
admin_polls_close_all(struct admin_server *srv)
{
    while (srv->polls) {
        struct admin_call *call = srv->polls->call;
        poll_free(srv->polls);
        admin_call_free(call);
    }
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admin_poll *p = arg;
    struct admin_call *call = p->call;
    if (call->gone) { /* the asking server went away */
        poll_free(p);
        admin_call_free(call);
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    bool last_try = now.tv_sec > p->deadline.tv_sec ||
                    (now.tv_sec == p->deadline.tv_sec && now.tv_nsec >= p->deadline.tv_nsec);
    uint64_t since = p->since;
    int ret = changes_answer(call, since, last_try);
    if (ret != 0) { /* answered: the call is gone */
        poll_free(p);
        return;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = CHANGES_POLL_MS * 1000};
    evtimer_add(p->timer, &tv);
}

void
admin_changes_serve(struct admin_call *call)
{
    uint64_t since = 0, wait = 0;
    if (call->query) {
        struct evkeyvalq q;
        if (evhttp_parse_query_str(call->query, &q) < 0) {
            admin_reply_error(call, 400, NULL, "the query string is malformed");
            return;
        }
        const char *names[] = {"since", "wait"};
        uint64_t *vals[] = {&since, &wait};
        const char *bad = NULL;
        for (size_t i = 0; i < 2 && !bad; i++) {
            const char *v = evhttp_find_header(&q, names[i]);
            if (!v)
                continue;
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno || !*v || *end || v[0] == '-')
                bad = names[i];
            *vals[i] = n;
        }
        evhttp_clear_headers(&q);
        if (bad || wait > CHANGES_WAIT_MAX) {
            admin_reply_error(call, 400, NULL,
                              bad && !strcmp(bad, "since") ? "since: must be an integer >= 0"
                                                           : "wait: must be 0 to 60 (seconds)");
            return;
        }
    }
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return;
    int ok = authorize_servers(call, state, txn);
    mdb_txn_abort(txn);
    if (ok != 1)
        return;
    if (changes_answer(call, since, wait == 0) != 0)
        return;
    struct admin_poll *p = calloc(1, sizeof(*p));
    if (!p)
        log_fatal("out of memory");
    p->srv = call->srv;
    p->call = call;
    p->since = since;
    clock_gettime(CLOCK_MONOTONIC, &p->deadline);
    p->deadline.tv_sec += (time_t)wait;
    p->timer = evtimer_new(call->srv->base, poll_cb, p);
    if (!p->timer)
        log_fatal("out of memory");
    p->next = call->srv->polls;
    if (p->next)
        p->next->prev = p;
    call->srv->polls = p;
    admin_call_watch_close(call);
    struct timeval tv = {.tv_sec = 0, .tv_usec = CHANGES_POLL_MS * 1000};
    evtimer_add(p->timer, &tv);
}

/* {"status", "cms", "address", "port", "imap_port"}: where the transport role relays a
 * recipient's mail (LMTP on port), and where IMAP refers its user (imap_port). */
static json_t *
route_json(const struct dir_route *route)
{
    json_t *doc = json_pack("{s:s}", "status", dir_route_status_name(route->status));
    if (route->cms[0])
        json_object_set_new(doc, "cms", json_string(route->cms));
    if (route->status == DIR_ROUTE_OK) {
        json_object_set_new(doc, "address", json_string(route->address));
        json_object_set_new(doc, "port", json_integer(route->port));
        json_object_set_new(doc, "imap_port", json_integer(route->imap_port));
    }
    return doc;
}

/* GET /v1/recipients/<address>: {"status", "user", "database", "route"}
 * (dir_recipient_lookup()). */
void
admin_recipients_serve(struct admin_call *call)
{
    if (call->method != EVHTTP_REQ_GET) {
        admin_reply_error(call, 405, NULL, "use GET");
        return;
    }
    const char *address = call->segs[2];
    size_t len = strlen(address);
    if (len == 0 || len > 2 * DIR_NAME_MAX + 1) {
        admin_reply_error(call, 400, NULL, "the address must be 1..%u bytes", 2 * DIR_NAME_MAX + 1);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)address; *p; p++)
        if (*p < 0x21 || *p == 0x7f) {
            admin_reply_error(call, 400, NULL, "the address holds a space or control character");
            return;
        }
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return;
    if (!authorize_servers(call, state, txn)) {
        mdb_txn_abort(txn);
        return;
    }
    /* local@domain, split at the last '@' (a quoted local part may hold one). */
    char local[2 * DIR_NAME_MAX + 2];
    snprintf(local, sizeof(local), "%s", address);
    char *at = strrchr(local, '@');
    const char *domain = "";
    if (at) {
        *at = '\0';
        domain = at + 1;
    }
    struct dir_recipient r;
    int ret = dir_recipient_lookup(state, txn, local, domain, &r);
    mdb_txn_abort(txn);
    if (ret < 0) {
        admin_reply_storage_error(call, ret, "the recipient lookup");
        return;
    }
    json_t *doc = json_pack("{s:s}", "status", dir_rcpt_status_name(r.status));
    if (r.user[0])
        json_object_set_new(doc, "user", json_string(r.user));
    if (r.status == DIR_RCPT_OK) {
        json_object_set_new(doc, "database", json_string(r.database));
        json_object_set_new(doc, "route", route_json(&r.route));
    }
    admin_reply_json(call, 200, doc);
}
