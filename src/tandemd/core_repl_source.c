/*
 * The replication source in the core (core_repl.c starts and stops it): serves the log of
 * every database mounted here to other servers' copies on [listen replication]
 * (src/repl/repl_source.h), checking each copy's server key against this server's own
 * directory database.
 */
#include "tandemd/tandemd.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/tls.h"
#include "repl/repl_source.h"
#include "store/store.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct repl_source *source;
static SSL_CTX *source_tls;
static struct offload *verify_offload; /* argon2id checks of copies' keys, off the loop */

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
    if (!dir) {
        /* A mailbox server without the directory role would ask the directory over the admin
         * API, whose /v1/auth/verify checks users only so far (docs/replication.md). */
        done(done_ctx, -EOPNOTSUPP,
             "this server has no directory database of its own to check server keys against");
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
    struct repl_source_options so = {
        .fd = listen_fd,
        .tls = source_tls,
        .verify = verify,
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
        /* Block mode for every database until the directory's database.replication reaches
         * the core (docs/decisions.md); a database that did not mount answers not-active. */
        ret = repl_source_add_database(source, name, store, REPL_MODE_BLOCK);
        if (ret < 0)
            log_error("database %s not served to copies: %s", name, tdm_strerror(ret));
    }
}

void
tandemd__core_repl_source_stop(void)
{
    /* Pending key checks answer first, while the source that waits for them still exists. */
    offload_free(&verify_offload);
    repl_source_free(&source);
    if (source_tls) {
        SSL_CTX_free(source_tls);
        source_tls = NULL;
    }
}
