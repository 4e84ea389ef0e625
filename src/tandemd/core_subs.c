/*
 * The workers' subscriptions (docs/formats/ipc.md, SUBSCRIBE), indexed by folder
 * (core_ipc_int.h). A commit looks up the folders it touched and reaches their subscribers
 * without looking at anyone else's: with 10,000 folders watched per worker, a scan of every
 * subscription per commit would cost more than the commit's own bookkeeping.
 *
 * Layout: one hash table of keys (database, mailbox, folder), folder "" standing for every
 * folder of the mailbox; each key holds the list of its subscriptions, one per connection;
 * each subscription is also on its connection's list, so a closing connection drops its own
 * in the time it takes to walk them.
 *
 * Sending: a send may drop a slow connection, and a dropped connection drops its
 * subscriptions, from the very list being walked. So the subscribers are gathered first
 * (each connection once, even when it holds both the folder and its mailbox's ""), held with
 * busy, and only then sent to.
 */
#include "tandemd/core_ipc_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <stdlib.h>
#include <string.h>

#define SUBS_MIN_BUCKETS 256u

struct sub_key {
    struct sub_key *next; /* hash chain */
    uint32_t hash;
    struct core_sub *subs;             /* one per subscribed connection */
    char *database, *mailbox, *folder; /* one allocation, from database */
};

struct core_sub {
    struct sub_key *key;
    struct core_conn *conn;
    struct core_sub *key_prev, *key_next;   /* the key's subscriptions */
    struct core_sub *conn_prev, *conn_next; /* the connection's subscriptions */
};

static struct sub_key **buckets;
static size_t n_buckets, n_keys;
static uint64_t gather_stamp; /* marks connections already gathered by one lookup */
static struct core_conn **gathered;
static size_t cap_gathered;

/* ---- Keys ---- */

static uint32_t
key_hash(const char *database, size_t ld, const char *mailbox, size_t lm, const char *folder,
         size_t lf)
{
    uint32_t h = 2166136261u; /* FNV-1a; a separator step keeps ("ab","c") apart from ("a","bc") */
    const char *parts[] = {database, mailbox, folder};
    const size_t lens[] = {ld, lm, lf};
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < lens[i]; j++)
            h = (h ^ (unsigned char)parts[i][j]) * 16777619u;
        h *= 16777619u;
    }
    return h;
}

static bool
str_is(const char *s, const char *p, size_t len)
{
    return strncmp(s, p, len) == 0 && s[len] == '\0';
}

static struct sub_key **
key_slot(uint32_t hash, const struct ipc_str *d, const struct ipc_str *m, const struct ipc_str *f)
{
    if (!buckets)
        return NULL;
    struct sub_key **pp = &buckets[hash % n_buckets];
    while (*pp && ((*pp)->hash != hash || !str_is((*pp)->database, d->ptr, d->len) ||
                   !str_is((*pp)->mailbox, m->ptr, m->len) ||
                   !str_is((*pp)->folder, f->len ? f->ptr : "", f->len)))
        pp = &(*pp)->next;
    return pp;
}

static struct sub_key *
key_find(const struct ipc_str *d, const struct ipc_str *m, const struct ipc_str *f)
{
    struct sub_key **slot =
        key_slot(key_hash(d->ptr, d->len, m->ptr, m->len, f->ptr, f->len), d, m, f);
    return slot ? *slot : NULL;
}

static void
grow(void)
{
    if (buckets && n_keys < n_buckets)
        return;
    size_t n = buckets ? n_buckets * 2 : SUBS_MIN_BUCKETS;
    struct sub_key **b = calloc(n, sizeof(*b));
    if (!b)
        log_fatal("out of memory");
    for (size_t i = 0; buckets && i < n_buckets; i++)
        while (buckets[i]) {
            struct sub_key *k = buckets[i];
            buckets[i] = k->next;
            k->next = b[k->hash % n];
            b[k->hash % n] = k;
        }
    free(buckets);
    buckets = b;
    n_buckets = n;
}

/* ---- Interface ---- */

int
tandemd__subs_add(struct core_conn *c, const struct ipc_subscribe *s)
{
    uint32_t hash = key_hash(s->database.ptr, s->database.len, s->mailbox.ptr, s->mailbox.len,
                             s->folder.ptr, s->folder.len);
    grow();
    struct sub_key **slot = key_slot(hash, &s->database, &s->mailbox, &s->folder);
    struct sub_key *k = *slot;
    if (k)
        for (struct core_sub *x = k->subs; x; x = x->key_next)
            if (x->conn == c)
                return 1;
    if (c->n_subs >= TDM_IPC_MAX_SUBSCRIPTIONS)
        return TDM_ELIMIT;
    if (!k) {
        size_t ld = s->database.len, lm = s->mailbox.len, lf = s->folder.len;
        k = calloc(1, sizeof(*k));
        char *names = malloc(ld + lm + lf + 3);
        if (!k || !names)
            log_fatal("out of memory");
        k->hash = hash;
        k->database = names;
        k->mailbox = names + ld + 1;
        k->folder = names + ld + lm + 2;
        memcpy(k->database, s->database.ptr, ld);
        k->database[ld] = '\0';
        memcpy(k->mailbox, s->mailbox.ptr, lm);
        k->mailbox[lm] = '\0';
        if (lf)
            memcpy(k->folder, s->folder.ptr, lf);
        k->folder[lf] = '\0';
        *slot = k;
        n_keys++;
    }
    struct core_sub *x = calloc(1, sizeof(*x));
    if (!x)
        log_fatal("out of memory");
    x->key = k;
    x->conn = c;
    x->key_next = k->subs;
    if (k->subs)
        k->subs->key_prev = x;
    k->subs = x;
    x->conn_next = c->subs;
    if (c->subs)
        c->subs->conn_prev = x;
    c->subs = x;
    c->n_subs++;
    return 0;
}

static void
sub_remove(struct core_sub *x)
{
    struct sub_key *k = x->key;
    struct core_conn *c = x->conn;
    if (x->key_prev)
        x->key_prev->key_next = x->key_next;
    else
        k->subs = x->key_next;
    if (x->key_next)
        x->key_next->key_prev = x->key_prev;
    if (x->conn_prev)
        x->conn_prev->conn_next = x->conn_next;
    else
        c->subs = x->conn_next;
    if (x->conn_next)
        x->conn_next->conn_prev = x->conn_prev;
    c->n_subs--;
    free(x);
    if (k->subs)
        return;
    struct sub_key **pp = &buckets[k->hash % n_buckets];
    while (*pp != k)
        pp = &(*pp)->next;
    *pp = k->next;
    n_keys--;
    free(k->database);
    free(k);
    if (n_keys == 0) { /* nothing watched: give the table back */
        free(buckets);
        buckets = NULL;
        n_buckets = 0;
    }
}

void
tandemd__subs_remove(struct core_conn *c, const struct ipc_subscribe *s)
{
    struct sub_key *k = key_find(&s->database, &s->mailbox, &s->folder);
    for (struct core_sub *x = k ? k->subs : NULL; x; x = x->key_next)
        if (x->conn == c) {
            sub_remove(x);
            return;
        }
}

void
tandemd__subs_drop(struct core_conn *c)
{
    while (c->subs)
        sub_remove(c->subs);
}

static void
gather_key(const struct sub_key *k, size_t *n)
{
    for (const struct core_sub *x = k ? k->subs : NULL; x; x = x->key_next) {
        struct core_conn *c = x->conn;
        if (c->gather_stamp == gather_stamp)
            continue;
        c->gather_stamp = gather_stamp;
        if (*n == cap_gathered) {
            cap_gathered = cap_gathered ? cap_gathered * 2 : 16;
            gathered = realloc(gathered, cap_gathered * sizeof(*gathered));
            if (!gathered)
                log_fatal("out of memory");
        }
        gathered[(*n)++] = c;
    }
}

size_t
tandemd__subs_send(const char *database, const char *mailbox, const char *folder,
                   const struct ipc_msg *msg)
{
    struct ipc_str d = ipc_str_c(database), m = ipc_str_c(mailbox), f = ipc_str_c(folder),
                   all = {"", 0};
    gather_stamp++;
    size_t n = 0;
    gather_key(key_find(&d, &m, &f), &n);
    gather_key(key_find(&d, &m, &all), &n);
    if (!msg || n == 0)
        return n;
    for (size_t i = 0; i < n; i++)
        gathered[i]->busy++;
    /* gathered is reused by the next lookup, and no send looks up: safe to walk. */
    for (size_t i = 0; i < n; i++) {
        tandemd__conn_send(gathered[i], msg);
        tandemd__core_stats.changed_sent_total++;
    }
    for (size_t i = 0; i < n; i++) {
        struct core_conn *c = gathered[i];
        c->busy--;
        tandemd__conn_free_if_done(c);
    }
    return n;
}

void
tandemd__subs_free(void)
{
    /* Every connection dropped its own on close. */
    TDM_ASSERT(n_keys == 0);
    free(buckets);
    buckets = NULL;
    n_buckets = 0;
    free(gathered);
    gathered = NULL;
    cap_gathered = 0;
}
