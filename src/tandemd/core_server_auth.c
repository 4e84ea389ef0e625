/*
 * Whether another server may use a server-to-server service of this core: a copy pulling a
 * database's log ([listen replication], core_repl_source.c) or a node of a cluster using the
 * witness's coordination store ([listen coord], core_coord.c). Both authenticate the same way:
 * server name and server key, checked against this server's own directory database, or,
 * without the directory role, by the directory (POST /v1/auth/verify through dir_client); the
 * server must be a member of `servers`. The services share one offload thread for the argon2id
 * checks and one directory client, started by the first service and stopped by the last.
 *
 * A key the directory confirmed is remembered (as a hash) for [directory] cache_ttl, and used
 * only while no directory server answers: a cluster must keep its heartbeats and copies
 * connected through a directory outage (in a small site the directory may run on the witness,
 * and losing only the witness must move nothing: docs/cluster.md). Whenever the directory
 * answers, it decides, so a changed key or a server taken out of `servers` is refused at its
 * next connection as before.
 */
#include "tandemd/core_ipc_int.h"

#include "dirclient/dir_client.h"
#include "directory/directory.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "store/store.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned users;                 /* services started */
static struct offload *verify_offload; /* argon2id checks of servers' keys, off the loop */
/* Without a directory of its own, the server asks the directory (dir_client.h). */
static struct dir_client *verify_client;

/* Keys the directory confirmed: server name and a hash of the key, when. */
#define VERIFIED_MAX 64
struct verified {
    char server[DIR_NAME_MAX + 1]; /* "" = free */
    unsigned char key_hash[crypto_generichash_BYTES];
    uint64_t at_ms;
};
static struct verified verified[VERIFIED_MAX];
static uint64_t verified_ttl_ms; /* [directory] cache_ttl */

static struct verified *
verified_find(const char *server)
{
    for (size_t i = 0; i < VERIFIED_MAX; i++)
        if (strcmp(verified[i].server, server) == 0)
            return &verified[i];
    return NULL;
}

/* Remembers that the directory confirmed server's key: its slot, a free one, or the oldest. */
static void
verified_put(const char *server, const unsigned char *key_hash)
{
    struct verified *v = verified_find(server);
    if (!v)
        v = verified_find(""); /* a free slot */
    if (!v) {
        v = &verified[0];
        for (size_t i = 1; i < VERIFIED_MAX; i++)
            if (verified[i].at_ms < v->at_ms)
                v = &verified[i];
    }
    snprintf(v->server, sizeof(v->server), "%s", server);
    memcpy(v->key_hash, key_hash, sizeof(v->key_hash));
    v->at_ms = tdm_clock_ms();
}

struct remote_verify {
    tandemd_verify_done_cb *done;
    void *done_ctx;
    char server[DIR_NAME_MAX + 1];
    unsigned char key_hash[crypto_generichash_BYTES];
};

static void
remote_verify_cb(void *ctx, int status, bool from_cache)
{
    (void)from_cache;
    struct remote_verify *rv = ctx;
    struct verified *v = verified_find(rv->server);
    if (status == 0) {
        verified_put(rv->server, rv->key_hash);
    } else if (status == -EACCES && v) {
        v->server[0] = '\0'; /* the directory said no: forget the old yes */
    } else if (status == -EHOSTUNREACH && v &&
               sodium_memcmp(v->key_hash, rv->key_hash, sizeof(v->key_hash)) == 0 &&
               tdm_clock_ms() - v->at_ms < verified_ttl_ms) {
        log_info("no directory server answers: server %s accepted with the key the directory "
                 "confirmed %llu s ago ([directory] cache_ttl)",
                 rv->server, (unsigned long long)((tdm_clock_ms() - v->at_ms) / 1000));
        status = 0;
    }
    const char *why = status == 0         ? NULL
                      : status == -EACCES ? "wrong server key, or not a member of servers "
                                            "(the directory said so)"
                      : status == -EHOSTUNREACH
                          ? "no directory server answered, to check the key with"
                          : "the directory could not check the key";
    rv->done(rv->done_ctx, status, why);
    free(rv);
}

struct verify_job {
    char hash[DIR_PASSWORD_HASH_MAX];
    char *key;
    size_t key_len;
    int result;
    tandemd_verify_done_cb *done;
    void *done_ctx;
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
    j->done(j->done_ctx, ran ? j->result : TDM_ECLOSED,
            !ran            ? "the server is stopping"
            : j->result < 0 ? "wrong server key (its [directory] key_file does not match the "
                              "directory)"
                            : NULL);
    sodium_memzero(j->key, j->key_len);
    free(j->key);
    sodium_memzero(j->hash, sizeof(j->hash));
    free(j);
}

/*
 * A server authenticates as server/<name> with its key: checked against this server's own
 * directory database (the directory role), where the server must exist, have that key and be a
 * member of `servers`. The argon2id check runs on the offload thread.
 */
void
tandemd__server_verify(void *ctx, const char *server, const char *key, size_t key_len,
       tandemd_verify_done_cb *done, void *done_ctx)
{
    (void)ctx;
    struct store *dir = tandemd__core_db_find(DIR_DB_KIND, strlen(DIR_DB_KIND));
    if (!dir && verify_client) {
        /* No directory here: the directory checks the key and the membership. */
        char *k = strndup(key, key_len);
        struct remote_verify *rv = malloc(sizeof(*rv));
        if (!k || !rv)
            log_fatal("out of memory");
        *rv = (struct remote_verify){.done = done, .done_ctx = done_ctx};
        snprintf(rv->server, sizeof(rv->server), "%s", server);
        crypto_generichash(rv->key_hash, sizeof(rv->key_hash), (const unsigned char *)key,
                           key_len, NULL, 0);
        int ret = strlen(k) != key_len
                      ? -EACCES
                      : dir_client_verify_server(verify_client, server, k, remote_verify_cb, rv);
        sodium_memzero(k, key_len);
        free(k);
        if (ret < 0) {
            free(rv);
            done(done_ctx, ret,
                 ret == -EACCES ? "a server key holds no NUL byte" : "out of memory");
        }
        return;
    }
    if (!dir) {
        done(done_ctx, -EOPNOTSUPP,
             "this server has no directory to check server keys against ([directory] is not "
             "usable: see the log)");
        return;
    }
    MDB_txn *txn;
    int ret = store_read_begin(dir, &txn);
    if (ret < 0) {
        done(done_ctx, ret, "cannot read the directory");
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
        done(done_ctx, why ? -EACCES : ret, why ? why : "cannot read the directory");
        return;
    }
    j->key = malloc(key_len + 1);
    if (!j->key)
        log_fatal("out of memory");
    memcpy(j->key, key, key_len);
    j->key[key_len] = '\0';
    j->key_len = key_len;
    j->done = done;
    j->done_ctx = done_ctx;
    ret = offload_submit(verify_offload, verify_work, verify_done, j);
    if (ret < 0) {
        sodium_memzero(j->key, key_len);
        free(j->key);
        free(j);
        done(done_ctx, ret, "too many key checks in progress");
    }
}

void
tandemd__server_auth_start(struct event_base *base, const struct tdm_config *cfg)
{
    if (users++ > 0)
        return;
    verified_ttl_ms = cfg->directory.cache_ttl_ms;
    if (offload_new(base, 0, &verify_offload) < 0)
        log_fatal("cannot start the thread that checks servers' keys");
    if (!(cfg->roles & TDM_ROLE_DIRECTORY)) {
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
    /* Pending key checks answer now (as "stopping"), while the services that wait for them
     * still exist: a service stops after this. */
    offload_free(&verify_offload);
    dir_client_free(&verify_client);
}
