/*
 * argon2id off the loop thread. Checking or hashing a password costs tens to hundreds of
 * milliseconds of CPU by design (libsodium's INTERACTIVE limits, 64 MiB); on the loop it would
 * stall every other client of the worker for that long per new credential. The jobs run on an
 * offload thread (lib/offload.h), which reports each result back through the loop.
 *
 * The thread touches no LMDB transaction and no libevent object: the loop reads the stored
 * hash first (dir_secret_hash) and the job carries copies of everything it needs.
 */
#include "admin/admin_int.h"

#include "lib/err.h"
#include "lib/log.h"
#include "lib/offload.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_CRYPTO_QUEUE_MAX 64u /* jobs waiting: beyond, callers answer 503 */

struct crypto_job {
    struct admin_crypto *crypto;
    struct admin_call *call;
    admin_crypto_cb *cb;
    bool hash_only; /* hash password (result: hash) rather than verify it against hash */
    int result;     /* 0, -EACCES (no match), -ENOMEM */
    char hash[DIR_PASSWORD_HASH_MAX];
    char *password; /* owned copy, wiped before free */
};

struct admin_crypto {
    struct offload *off;
    bool closing; /* results arriving now have nobody to answer: the server frees the calls */
};

static void
job_free(struct crypto_job *j)
{
    if (j->password) {
        sodium_memzero(j->password, strlen(j->password));
        free(j->password);
    }
    sodium_memzero(j->hash, sizeof(j->hash));
    free(j);
}

/* On the offload thread. */
static void
job_work(void *arg)
{
    struct crypto_job *j = arg;
    if (j->hash_only)
        j->result = dir_password_hash(j->password, 0, 0, j->hash);
    else
        j->result =
            crypto_pwhash_str_verify(j->hash, j->password, strlen(j->password)) == 0 ? 0 : -EACCES;
}

/* On the loop thread. */
static void
job_done(void *arg, bool ran)
{
    struct crypto_job *j = arg;
    /* The callback answers (or, the client gone, frees) the call; at shutdown the server
     * frees the calls still held, unanswered. */
    if (ran && !j->crypto->closing)
        j->cb(j->call, j->result, j->hash);
    job_free(j);
}

int
admin_crypto_new(struct event_base *base, struct admin_crypto **crypto_r)
{
    if (sodium_init() < 0)
        return -EIO;
    struct admin_crypto *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int ret = offload_new(base, ADMIN_CRYPTO_QUEUE_MAX, &c->off);
    if (ret < 0) {
        free(c);
        return ret;
    }
    *crypto_r = c;
    return 0;
}

void
admin_crypto_free(struct admin_crypto **crypto)
{
    struct admin_crypto *c = *crypto;
    if (!c)
        return;
    c->closing = true;
    offload_free(&c->off);
    free(c);
    *crypto = NULL;
}

static int
submit(struct admin_crypto *c, struct admin_call *call, bool hash_only, const char *hash,
       const char *password, admin_crypto_cb *cb)
{
    struct crypto_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->password = strdup(password)))
        log_fatal("out of memory");
    j->crypto = c;
    j->call = call;
    j->cb = cb;
    j->hash_only = hash_only;
    if (hash)
        snprintf(j->hash, sizeof(j->hash), "%s", hash);
    int ret = offload_submit(c->off, job_work, job_done, j);
    if (ret < 0) {
        job_free(j);
        return ret == -ENOMEM ? ret : TDM_ELIMIT;
    }
    admin_call_watch_close(call);
    return 0;
}

int
admin_crypto_verify(struct admin_crypto *c, struct admin_call *call, const char *hash,
                    const char *password, admin_crypto_cb *cb)
{
    return submit(c, call, false, hash, password, cb);
}

int
admin_crypto_hash(struct admin_crypto *c, struct admin_call *call, const char *password,
                  admin_crypto_cb *cb)
{
    return submit(c, call, true, NULL, password, cb);
}
