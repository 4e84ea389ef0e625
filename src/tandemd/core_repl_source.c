/*
 * The replication source in the core (core_repl.c starts and stops it): serves the log of
 * every database mounted here to other servers' copies on [listen replication]
 * (src/repl/repl_source.h), checking each copy's server key against this server's own
 * directory database, or, without the directory role, asking the directory
 * (POST /v1/auth/verify through dir_client).
 */
#include "tandemd/core_ipc_int.h"

#include "dirclient/dir_client.h"
#include "directory/directory.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/tls.h"
#include "repl/repl_source.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct repl_source *source;
static SSL_CTX *source_tls;
static struct offload *verify_offload; /* argon2id checks of copies' keys, off the loop */
/* Without a directory of its own, the server asks the directory (dir_client.h). */
static struct dir_client *verify_client;

struct remote_verify {
    repl_source_verify_done_cb *done;
    void *done_ctx;
};

static void
remote_verify_cb(void *ctx, int status, bool from_cache)
{
    (void)from_cache;
    struct remote_verify *rv = ctx;
    const char *why = status == 0         ? NULL
                      : status == -EACCES ? "wrong server key, or not a member of servers "
                                            "(the directory said so)"
                      : status == -EHOSTUNREACH
                          ? "no directory server answered, to check the key with"
                          : "the directory could not check the key";
    rv->done(rv->done_ctx, status, why);
    free(rv);
}

/* ---- the source: who may replicate ---- */

struct verify_job {
    char hash[DIR_PASSWORD_HASH_MAX];
    char *key;
    size_t key_len;
    int result;
    repl_source_verify_done_cb *done;
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
 * A copy authenticates as server/<name> with its key: checked against this server's own
 * directory database (the directory role), where the server must exist, have that key and be a
 * member of `servers`. The argon2id check runs on the offload thread.
 */
static void
verify(void *ctx, const char *server, const char *key, size_t key_len,
       repl_source_verify_done_cb *done, void *done_ctx)
{
    (void)ctx;
    struct store *dir = tandemd__core_db_find(DIR_DB_KIND, strlen(DIR_DB_KIND));
    if (!dir && verify_client) {
        /* No directory here: the directory checks the key and the membership. */
        char *k = strndup(key, key_len);
        struct remote_verify *rv = malloc(sizeof(*rv));
        if (!k || !rv)
            log_fatal("out of memory");
        *rv = (struct remote_verify){done, done_ctx};
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

/* Every copy's ACK: the sync gate releases the replies a passive's durable LSN covers. */
static void
on_ack(void *ctx, const char *database, const char *server, uint16_t role,
       const struct repl_ack *ack)
{
    (void)ctx;
    tandemd__sync_ack(database, server, role, ack->durable_lsn);
}

/* sync_timeout_ms when the database object has none. */
#define SYNC_TIMEOUT_DEFAULT_MS 2000u
static struct event_base *sync_base; /* the loop the sync gate's timers run on */

/*
 * The mode database name is served in: its `database` object's `replication` in this server's
 * own directory, read at start (a change takes effect at the next). Block when there is no
 * local directory or no such object or attribute. In sync mode the database's sync gate is
 * set up from `sync_timeout_ms` and `sync_strict` (core_sync.c).
 */
static uint16_t
db_mode(const char *name)
{
    struct store *dir = tandemd__core_db_find(DIR_DB_KIND, strlen(DIR_DB_KIND));
    MDB_txn *txn;
    if (!dir || store_read_begin(dir, &txn) < 0)
        return REPL_MODE_BLOCK;
    uint16_t mode = REPL_MODE_BLOCK;
    struct dir_object o;
    if (dir_object_get(store_handler_state(dir), txn, DIR_KIND_DATABASE, name, &o) == 0) {
        json_t *attrs = json_loads(o.attrs, 0, NULL);
        const char *m = json_string_value(json_object_get(attrs, "replication"));
        if (m && !strcmp(m, "file"))
            mode = REPL_MODE_FILE;
        else if (m && !strcmp(m, "sync")) {
            mode = REPL_MODE_SYNC;
            /* The schema bounds both (dir_schema.c). */
            json_t *t = json_object_get(attrs, "sync_timeout_ms");
            uint32_t timeout =
                json_is_integer(t) ? (uint32_t)json_integer_value(t) : SYNC_TIMEOUT_DEFAULT_MS;
            tandemd__sync_configure(sync_base, name, timeout,
                                    json_is_true(json_object_get(attrs, "sync_strict")));
        }
        json_decref(attrs);
        dir_object_clear(&o);
    }
    mdb_txn_abort(txn);
    return mode;
}

void
tandemd__core_repl_source_start(struct event_base *base, const struct tdm_config *cfg,
                                int listen_fd)
{
    if (listen_fd < 0)
        return;
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    char *why = NULL;
    int ret = tls_server_ctx_new(files.certificate, files.key, files.ca, TLS_CLIENT_AUTH_REQUIRE,
                                 &source_tls, &why);
    tls_files_clear(&files);
    if (ret < 0) {
        log_error("replication not served: %s", why ? why : "out of memory");
        free(why);
        close(listen_fd);
        return;
    }
    if (offload_new(base, 0, &verify_offload) < 0)
        log_fatal("cannot start the thread that checks copies' keys");
    if (!(cfg->roles & TDM_ROLE_DIRECTORY)) {
        char *cwhy = NULL;
        if (dir_client_from_config(base, cfg, &verify_client, &cwhy) < 0) {
            log_error("copies' keys cannot be checked, so none will be served: %s",
                      cwhy ? cwhy : "out of memory");
            verify_client = NULL;
        }
        free(cwhy);
    }
    sync_base = base;
    struct repl_source_options so = {
        .fd = listen_fd,
        .tls = source_tls,
        .verify = verify,
        .ack = on_ack,
        /* [replication] silence_timeout: at most an hour, so it fits. */
        .idle_timeout_ms = (uint32_t)cfg->replication.silence_timeout_ms,
    };
    ret = repl_source_new(base, &so, &source);
    if (ret < 0) {
        log_error("replication not served: %s", tdm_strerror(ret));
        close(listen_fd);
        return;
    }
    for (size_t i = 0; i < tandemd__core_db_count(); i++) {
        const char *name, *kind;
        struct store *store;
        tandemd__core_db_get(i, &name, &kind, &store);
        /* A database that did not mount answers not-active. */
        ret = repl_source_add_database(source, name, store, db_mode(name));
        if (ret < 0)
            log_error("database %s not served to copies: %s", name, tdm_strerror(ret));
    }
}

void
tandemd__core_repl_source_stop(void)
{
    /* Pending key checks answer first, while the source that waits for them still exists. */
    offload_free(&verify_offload);
    dir_client_free(&verify_client);
    repl_source_free(&source);
    if (source_tls) {
        SSL_CTX_free(source_tls);
        source_tls = NULL;
    }
}
void
tandemd__core_repl_source_add(const char *name, struct store *store)
{
    if (!source)
        return;
    int ret = repl_source_add_database(source, name, store, db_mode(name));
    if (ret < 0)
        log_error("database %s not served to copies: %s", name, tdm_strerror(ret));
}

