/*
 * Whether another server may use a server-to-server service of this core: a copy pulling a
 * database's log ([listen replication], core_repl_source.c), a node heartbeating this one
 * ([listen cluster], core_cluster_hb.c) or using the witness's coordination store ([listen
 * coord], core_coord.c). All authenticate the same way: server name and server key, checked
 * against this server's own directory database, or, without the directory role, by the
 * directory (POST /v1/auth/verify through dir_client); the server must be a member of
 * `servers`. The services share one offload thread for the argon2id checks and the file
 * writes, and one directory client, started by the first service and stopped by the last.
 *
 * During a directory outage (docs/cluster.md "Server keys during a directory outage"): a key
 * the directory confirmed is remembered (dirclient/dir_confirm.h: a hash, when) in memory and
 * in <datadir>/server-key-confirmations, so a restart keeps it, and used only while no
 * directory server answers: for votes (heartbeats, coordination) within [directory]
 * cache_ttl, for replication (whole mail) within the shorter REPL_BOUND_MAX_MS. Whenever the
 * directory answers, it decides.
 *
 * Live sessions: the key of every admitted server is kept while it has a heartbeat session, a
 * copy or a coordination session here, and checked again every RECHECK_MS and at once when
 * the directory answers after an outage. A key the directory now refuses (-EACCES) ends that
 * server's sessions (event 3050). A check that finds no directory ends nothing: an outage
 * alone never cuts a session. The re-checks also keep the confirmations fresh, so their age
 * measures the outage, not the time since a session began.
 */
#include "tandemd/core_ipc_int.h"

#include "cluster/cluster_hb.h"
#include "dirclient/dir_client.h"
#include "dirclient/dir_confirm.h"
#include "directory/directory.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A cached confirmation admits a copy (which then reads whole mail) for at most this long
 * after the directory last confirmed the key, however long cache_ttl is (docs/decisions.md). */
#define REPL_BOUND_MAX_MS (5u * 60u * 1000u)
/* Live sessions' keys are checked again this often (or at half the votes' bound if shorter). */
#define RECHECK_MS (60u * 1000u)
#define CONFIRM_FILE "server-key-confirmations"

static unsigned users;                 /* services started */
static struct offload *verify_offload; /* argon2id checks, file writes: off the loop */
/* Without a directory of its own, the server asks the directory (dir_client.h). */
static struct dir_client *verify_client;

enum purpose { FOR_VOTES, FOR_REPLICATION };

/* ---- confirmations, kept in memory and in the datadir ---- */

static struct dir_confirm confirmed;
static uint64_t votes_bound_ms, repl_bound_ms;
static char *confirm_path; /* NULL: not kept on disk (the directory role) */
static bool confirm_dirty, confirm_writing;
static bool dir_unreachable; /* the last remote check found no directory server */
static struct event *recheck_ev;

static struct dir_confirm_now
now_clocks(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (struct dir_confirm_now){
        .boot_ms = tdm_clock_ms(),
        .wall_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u,
    };
}

struct save_job {
    char *path;
    char *text;
    int ret;
    const char *step;
};

static void confirm_save(void);

static void
save_work(void *arg)
{
    struct save_job *j = arg;
    j->ret = dir_confirm_save(j->path, j->text, &j->step);
}

static void
save_done(void *arg, bool ran)
{
    struct save_job *j = arg;
    if (ran && j->ret < 0)
        log_error("the server keys the directory confirmed cannot be kept in %s (%s: %s): a "
                  "restart during a directory outage would not know them",
                  j->path, j->step, tdm_strerror(j->ret));
    free(j->path);
    free(j->text);
    free(j);
    confirm_writing = false;
    /* Not while stopping: the offload thread is going (a queued write is not made). */
    if (ran && confirm_dirty && users > 0)
        confirm_save();
}

/* One write at a time, of the latest table: a change during a write is written after it. */
static void
confirm_save(void)
{
    if (!confirm_path || !verify_offload)
        return;
    confirm_dirty = true;
    if (confirm_writing)
        return;
    struct save_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->path = strdup(confirm_path)) || !(j->text = dir_confirm_encode(&confirmed)))
        log_fatal("out of memory");
    confirm_dirty = false;
    confirm_writing = true;
    if (offload_submit(verify_offload, save_work, save_done, j) < 0) {
        confirm_writing = false;
        confirm_dirty = true; /* the next change tries again */
        free(j->path);
        free(j->text);
        free(j);
    }
}

/* ---- live sessions ---- */

#define LIVE_MAX 64
struct live {
    char server[DIR_NAME_MAX + 1]; /* "" = free */
    char *key;                     /* the key its sessions were admitted with */
    size_t key_len;
    enum purpose purpose;
    bool checking;
};
static struct live live[LIVE_MAX];

static void
live_clear(struct live *l)
{
    if (l->key) {
        sodium_memzero(l->key, l->key_len);
        free(l->key);
    }
    memset(l, 0, sizeof(*l));
}

static struct live *
live_find(const char *server)
{
    for (size_t i = 0; i < LIVE_MAX; i++)
        if (strcmp(live[i].server, server) == 0)
            return &live[i];
    return NULL;
}

/* How many sessions server has here now; with why, they are ended. */
static size_t
sessions_of(const char *server, const char *why)
{
    return cluster_hb_listen_sessions(tandemd__core_cluster_hb(), server, why) +
           tandemd__core_repl_source_sessions(server, why) +
           tandemd__core_coord_sessions(server, why);
}

/* Admitted: remember the key for the re-checks (the newest key of a name replaces older). */
static void
live_put(const char *server, const char *key, size_t key_len, enum purpose purpose)
{
    struct live *l = live_find(server);
    if (!l)
        l = live_find("");
    if (!l) {
        /* All taken: a server without sessions gives up its place; else none is kept. */
        for (size_t i = 0; i < LIVE_MAX && !l; i++)
            if (!live[i].checking && sessions_of(live[i].server, NULL) == 0)
                l = &live[i];
        if (!l) {
            log_error("server %s admitted, but more than %d servers have sessions here: its "
                      "key will not be checked again while its sessions last",
                      server, LIVE_MAX);
            return;
        }
    }
    if (l->checking) {
        /* A re-check of the older key is under way; its answer still concerns this name. */
        if (l->key_len == key_len && sodium_memcmp(l->key, key, key_len) == 0)
            l->purpose = purpose < l->purpose ? l->purpose : purpose;
        return;
    }
    bool same = l->server[0] && l->key_len == key_len && sodium_memcmp(l->key, key, key_len) == 0;
    if (!same) {
        live_clear(l);
        snprintf(l->server, sizeof(l->server), "%s", server);
        if (!(l->key = malloc(key_len + 1)))
            log_fatal("out of memory");
        memcpy(l->key, key, key_len);
        l->key[key_len] = '\0';
        l->key_len = key_len;
    }
    if (!same || purpose > l->purpose)
        l->purpose = purpose;
}

/* ---- the check ---- */

typedef void check_done_cb(int status, const char *error, void *arg);

static void check(enum purpose purpose, bool recheck, const char *server, const char *key,
                  size_t key_len, check_done_cb *done, void *arg);

/* An admission: the service's callback, with the key kept until the answer. */
struct admit {
    tandemd_verify_done_cb *done;
    void *done_ctx;
    enum purpose purpose;
    char server[DIR_NAME_MAX + 1];
    char *key;
    size_t key_len;
};

static void
admit_done(int status, const char *error, void *arg)
{
    struct admit *a = arg;
    if (status == 0 && users > 0)
        live_put(a->server, a->key, a->key_len, a->purpose);
    a->done(a->done_ctx, status, error);
    sodium_memzero(a->key, a->key_len);
    free(a->key);
    free(a);
}

static void
verify_as(enum purpose purpose, const char *server, const char *key, size_t key_len,
          tandemd_verify_done_cb *done, void *done_ctx)
{
    struct admit *a = calloc(1, sizeof(*a));
    if (!a || !(a->key = malloc(key_len + 1)))
        log_fatal("out of memory");
    a->done = done;
    a->done_ctx = done_ctx;
    a->purpose = purpose;
    snprintf(a->server, sizeof(a->server), "%s", server);
    memcpy(a->key, key, key_len);
    a->key[key_len] = '\0';
    a->key_len = key_len;
    check(purpose, false, server, key, key_len, admit_done, a);
}

void
tandemd__server_verify(void *ctx, const char *server, const char *key, size_t key_len,
                       tandemd_verify_done_cb *done, void *done_ctx)
{
    (void)ctx;
    verify_as(FOR_VOTES, server, key, key_len, done, done_ctx);
}

void
tandemd__server_verify_replication(void *ctx, const char *server, const char *key, size_t key_len,
                                   tandemd_verify_done_cb *done, void *done_ctx)
{
    (void)ctx;
    verify_as(FOR_REPLICATION, server, key, key_len, done, done_ctx);
}

/* ---- re-checking live sessions ---- */

static void
recheck_done(int status, const char *error, void *arg)
{
    struct live *l = arg;
    l->checking = false;
    if (users == 0 || !l->server[0])
        return;
    if (status != -EACCES)
        return; /* confirmed, or no answer: an outage alone ends nothing */
    char why[DIR_NAME_MAX + 512];
    snprintf(why, sizeof(why), "server %s: its key was checked again and refused: %s", l->server,
             error ? error : "refused by the directory");
    size_t n = sessions_of(l->server, why);
    event_emit(TDM_EV_SERVER_SESSIONS_DROPPED, l->server,
               "%zu session(s) of server %s ended: the directory now refuses the key they were "
               "admitted with (%s)",
               n, l->server, error ? error : "refused");
    live_clear(l);
}

static void
recheck_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (size_t i = 0; i < LIVE_MAX; i++) {
        struct live *l = &live[i];
        if (!l->server[0] || l->checking)
            continue;
        if (sessions_of(l->server, NULL) == 0) {
            live_clear(l); /* gone: its next session is checked at its HELLO */
            continue;
        }
        l->checking = true;
        check(l->purpose, true, l->server, l->key, l->key_len, recheck_done, l);
    }
}

/* The directory answered after an outage: check every live session now, not at the next tick. */
static void
directory_answered(void)
{
    if (!dir_unreachable)
        return;
    dir_unreachable = false;
    log_info("the directory answers again: the keys of the servers with sessions here are "
             "checked again now");
    if (recheck_ev)
        event_active(recheck_ev, EV_TIMEOUT, 0);
}

/* ---- the remote check (no directory role) ---- */

struct remote_verify {
    check_done_cb *done;
    void *arg;
    enum purpose purpose;
    bool recheck;
    char server[DIR_NAME_MAX + 1];
    unsigned char key_hash[DIR_CONFIRM_HASH_BYTES];
};

static void
remote_verify_cb(void *ctx, int status, bool from_cache)
{
    (void)from_cache;
    struct remote_verify *rv = ctx;
    struct dir_confirm_now now = now_clocks();
    const char *why = NULL;
    if (users == 0) {
        /* Stopping: the services are going; nothing is remembered. */
    } else if (status == 0) {
        dir_confirm_put(&confirmed, rv->server, rv->key_hash, &now);
        confirm_save();
        directory_answered();
    } else if (status == -EACCES) {
        if (dir_confirm_forget(&confirmed, rv->server)) /* the directory said no */
            confirm_save();
        directory_answered();
    } else if (status == -EHOSTUNREACH) {
        dir_unreachable = true;
        uint64_t bound = rv->purpose == FOR_REPLICATION ? repl_bound_ms : votes_bound_ms;
        uint64_t age = 0;
        const char *refused = NULL;
        if (dir_confirm_check(&confirmed, rv->server, rv->key_hash, &now, bound, &age, &refused) ==
            0) {
            if (!rv->recheck)
                event_emit(TDM_EV_SERVER_KEY_FROM_CONFIRMATION, rv->server,
                           "no directory server answers: server %s admitted for %s with the "
                           "key the directory confirmed %llu s ago (bound %llu s)",
                           rv->server,
                           rv->purpose == FOR_REPLICATION ? "replication" : "heartbeats",
                           (unsigned long long)(age / 1000), (unsigned long long)(bound / 1000));
            status = 0;
        } else {
            why = refused;
        }
    }
    char text[240];
    if (status != 0 && !why)
        why = status == -EACCES ? "wrong server key, or not a member of servers (the directory "
                                  "said so)"
                                : "the directory could not check the key";
    if (status == -EHOSTUNREACH) {
        snprintf(text, sizeof(text),
                 "no directory server answered, to check the key with, "
                 "and %s",
                 why);
        why = text;
    }
    rv->done(status, why, rv->arg);
    free(rv);
}

/* ---- the local check (the directory role) ---- */

struct verify_job {
    char hash[DIR_PASSWORD_HASH_MAX];
    char *key;
    size_t key_len;
    int result;
    check_done_cb *done;
    void *arg;
};

static void
verify_work(void *arg)
{
    struct verify_job *j = arg;
    j->result = crypto_pwhash_str_verify(j->hash, j->key, j->key_len) == 0 ? 0 : -EACCES;
}

static void
verify_done(void *arg, bool ran)
{
    struct verify_job *j = arg;
    j->done(ran ? j->result : TDM_ECLOSED,
            !ran            ? "the server is stopping"
            : j->result < 0 ? "wrong server key (its [directory] key_file does not match the "
                              "directory)"
                            : NULL,
            j->arg);
    sodium_memzero(j->key, j->key_len);
    free(j->key);
    sodium_memzero(j->hash, sizeof(j->hash));
    free(j);
}

/*
 * A server authenticates as server/<name> with its key: checked against this server's own
 * directory database (the directory role), where the server must exist, have that key and be a
 * member of `servers` (the argon2id check runs on the offload thread); or, without it, by the
 * directory. done(status, error, arg) once, from inside or later on the loop.
 */
static void
check(enum purpose purpose, bool recheck, const char *server, const char *key, size_t key_len,
      check_done_cb *done, void *arg)
{
    struct store *dir = tandemd__core_db_find(DIR_DB_KIND, strlen(DIR_DB_KIND));
    if (!dir && verify_client) {
        /* No directory here: the directory checks the key and the membership. */
        char *k = strndup(key, key_len);
        struct remote_verify *rv = malloc(sizeof(*rv));
        if (!k || !rv)
            log_fatal("out of memory");
        *rv = (struct remote_verify){
            .done = done, .arg = arg, .purpose = purpose, .recheck = recheck};
        snprintf(rv->server, sizeof(rv->server), "%s", server);
        dir_confirm_hash(key, key_len, rv->key_hash);
        int ret = strlen(k) != key_len
                      ? -EACCES
                      : dir_client_verify_server(verify_client, server, k, remote_verify_cb, rv);
        sodium_memzero(k, key_len);
        free(k);
        if (ret < 0) {
            free(rv);
            done(ret, ret == -EACCES ? "a server key holds no NUL byte" : "out of memory", arg);
        }
        return;
    }
    if (!dir) {
        done(-EOPNOTSUPP,
             "this server has no directory to check server keys against ([directory] is not "
             "usable: see the log)",
             arg);
        return;
    }
    MDB_txn *txn;
    int ret = store_read_begin(dir, &txn);
    if (ret < 0) {
        done(ret, "cannot read the directory", arg);
        return;
    }
    void *state = store_handler_state(dir);
    struct verify_job *j = calloc(1, sizeof(*j));
    if (!j)
        log_fatal("out of memory");
    struct dir_principal who = {.kind = DIR_KIND_SERVER, .name = server};
    bool member = false;
    ret = dir_secret_hash(state, txn, DIR_KIND_SERVER, server, j->hash);
    if (ret == 0)
        ret = dir_is_member(state, txn, DIR_GROUP_SERVERS, &who, &member);
    mdb_txn_abort(txn);
    const char *why = NULL;
    if (ret == TDM_ENOTFOUND || ret == -EACCES)
        why = ret == TDM_ENOTFOUND ? "no such server in the directory"
                                   : "the server has no key in the directory";
    else if (ret == 0 && !member)
        why = "the server is not a member of group servers";
    if (why || ret < 0) {
        free(j);
        done(why ? -EACCES : ret, why ? why : "cannot read the directory", arg);
        return;
    }
    j->key = malloc(key_len + 1);
    if (!j->key)
        log_fatal("out of memory");
    memcpy(j->key, key, key_len);
    j->key[key_len] = '\0';
    j->key_len = key_len;
    j->done = done;
    j->arg = arg;
    ret = offload_submit(verify_offload, verify_work, verify_done, j);
    if (ret < 0) {
        sodium_memzero(j->key, key_len);
        free(j->key);
        free(j);
        done(ret, "too many key checks in progress", arg);
    }
}

/* ---- start and stop ---- */

static void
confirm_load(const struct tdm_config *cfg)
{
    if (asprintf(&confirm_path, "%s/%s", cfg->datadir, CONFIRM_FILE) < 0)
        log_fatal("out of memory");
    const char *why = NULL;
    int ret = dir_confirm_load(confirm_path, &confirmed, &why);
    if (ret < 0) {
        /* Start with none: during an outage peers are refused, as without the file. */
        log_error("the server keys the directory confirmed before are not used: %s: %s (%s)",
                  confirm_path, why ? why : "?", tdm_strerror(ret));
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < DIR_CONFIRM_MAX; i++)
        n += confirmed.e[i].server[0] != '\0';
    if (n)
        log_info("%zu server key(s) the directory confirmed before, read from %s (for a "
                 "directory outage only)",
                 n, confirm_path);
}

void
tandemd__server_auth_start(struct event_base *base, const struct tdm_config *cfg)
{
    if (users++ > 0)
        return;
    votes_bound_ms = cfg->directory.cache_ttl_ms;
    repl_bound_ms = votes_bound_ms < REPL_BOUND_MAX_MS ? votes_bound_ms : REPL_BOUND_MAX_MS;
    dir_unreachable = false;
    if (offload_new(base, 0, &verify_offload) < 0)
        log_fatal("cannot start the thread that checks servers' keys");
    uint64_t every = votes_bound_ms / 2 < RECHECK_MS ? votes_bound_ms / 2 : RECHECK_MS;
    if (every < 1000)
        every = 1000;
    struct timeval tv = {.tv_sec = (time_t)(every / 1000), .tv_usec = (every % 1000) * 1000};
    if (!(recheck_ev = event_new(base, -1, EV_PERSIST, recheck_cb, NULL)) ||
        event_add(recheck_ev, &tv) < 0)
        log_fatal("cannot start the timer that checks live sessions' server keys");
    if (!(cfg->roles & TDM_ROLE_DIRECTORY)) {
        confirm_load(cfg);
        char *cwhy = NULL;
        if (dir_client_from_config(base, cfg, &verify_client, &cwhy) < 0) {
            log_error("other servers' keys cannot be checked, so none will be served: %s",
                      cwhy ? cwhy : "out of memory");
            verify_client = NULL;
        }
        free(cwhy);
    }
}

void
tandemd__server_auth_stop(void)
{
    if (users == 0 || --users > 0)
        return;
    if (recheck_ev)
        event_free(recheck_ev);
    recheck_ev = NULL;
    /* Pending key checks answer now (as "stopping"), while the services that wait for them
     * still exist: a service stops after this. A write of the confirmations under way ends
     * first; one only queued is not made (the file keeps the one before). */
    offload_free(&verify_offload);
    dir_client_free(&verify_client);
    for (size_t i = 0; i < LIVE_MAX; i++)
        live_clear(&live[i]);
    free(confirm_path);
    confirm_path = NULL;
    confirm_dirty = confirm_writing = false;
    memset(&confirmed, 0, sizeof(confirmed));
}
