/*
 * tandem-sample: fills an existing database with a realistic, reproducible sample mailbox
 * through the store API, so that demos, `tandemctl db inspect` and manual testing have
 * something that looks like real mail to look at.
 *
 * Everything is derived from --seed through one PRNG that is consumed in a fixed order, and
 * every date comes from a fixed base instead of the clock, so the same arguments give the same
 * records (and therefore the same `db verify` digest) on every run and every machine.
 */
#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define EXIT_USAGE 2

/* 2024-01-01T00:00:00Z: the mailbox's history starts here whatever the date of the run. */
#define SAMPLE_EPOCH 1704067200
#define MAX_USERS 1000
#define MAX_MESSAGES 100000
/* Appends in flight at once: enough to fill group commit batches, small enough that the
 * bodies waiting in the queue stay a few MiB. */
#define MAX_IN_FLIGHT 32

static const char *const first_names[] = {
    "alice", "bob",   "carol",  "dave",   "erin",  "frank",  "grace",  "heidi", "ivan",
    "judy",  "ken",   "laura",  "mike",   "nina",  "oscar",  "peggy",  "quinn", "rupert",
    "sybil", "trent", "ursula", "victor", "wendy", "xavier", "yvonne", "zoe",
};
#define N_FIRST_NAMES (sizeof(first_names) / sizeof(first_names[0]))

static const char *const outside_senders[] = {
    "\"Example Bank\" <statements@bank.example.com>", "\"Conference Team\" <cfp@conf.example.org>",
    "\"Build Bot\" <ci@build.example.net>",           "\"Newsletter\" <news@lists.example.org>",
    "\"Travel Desk\" <bookings@travel.example.com>",
};

static const char *const subjects[] = {
    "Quarterly planning notes",      "Re: lunch on Thursday?",
    "Draft agenda for the offsite",  "Invoice 2024-%04u",
    "Your build #%u passed",         "Re: Re: log replay numbers",
    "Photos from the weekend",       "Minutes: storage sync %u",
    "Fwd: conference schedule",      "Question about the failover test",
    "Reminder: expense reports due", "Welcome to the team!",
};
#define N_SUBJECTS (sizeof(subjects) / sizeof(subjects[0]))

static const char *const words[] = {
    "the",     "log",      "replay",  "mailbox",  "server",   "copy",    "we",    "should",
    "meeting", "tomorrow", "please",  "review",   "attached", "numbers", "and",   "agreed",
    "about",   "quorum",   "witness", "failover", "schedule", "budget",  "for",   "next",
    "quarter", "thanks",   "let",     "me",       "know",     "if",      "this",  "works",
    "draft",   "version",  "team",    "update",   "storage",  "latency", "group", "commit",
    "is",      "a",        "to",      "of",       "in",       "on",      "with",  "before",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static const char *const all_keywords[] = {"$Label1", "$Label2", "work", "personal", "todo"};

struct special_folder {
    const char *name;
    uint32_t use;
};

static const struct special_folder special_folders[] = {
    {"Sent", MAIL_USE_SENT}, {"Drafts", MAIL_USE_DRAFTS},   {"Trash", MAIL_USE_TRASH},
    {"Junk", MAIL_USE_JUNK}, {"Archive", MAIL_USE_ARCHIVE},
};

/* Nested folders: parents are created by the store (and subscribed here explicitly). */
static const char *const plain_folders[] = {
    "Archive/2023", "Projects", "Projects/tandem", "Projects/tandem/design", "Family",
};

/* ---- Deterministic randomness ---- */

/* splitmix64: tiny, well mixed, and identical on every platform, unlike rand(). */
static uint64_t rng_state;

static uint64_t
rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. The modulo bias is irrelevant for sample data. */
static uint64_t
rng_range(uint64_t lo, uint64_t hi)
{
    return lo + rng_next() % (hi - lo + 1);
}

static bool
rng_percent(unsigned p)
{
    return rng_next() % 100 < p;
}

/* ---- A growable text buffer ---- */

struct text {
    char *data;
    size_t len;
    size_t cap;
};

static void
text_reserve(struct text *t, size_t more)
{
    if (t->len + more + 1 <= t->cap)
        return;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *n = realloc(t->data, cap);
    if (!n) {
        fprintf(stderr, "tandem-sample: out of memory\n");
        exit(1);
    }
    t->data = n;
    t->cap = cap;
}

static void
text_add(struct text *t, const char *s, size_t n)
{
    text_reserve(t, n);
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    text_reserve(t, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* ---- Message bodies ---- */

/* Plain prose in CRLF lines under 78 characters (RFC 5322 2.1.1), about n bytes of it. */
static void
add_prose(struct text *t, size_t n)
{
    size_t start = t->len, line = 0;
    while (t->len - start < n) {
        const char *w = words[rng_next() % N_WORDS];
        size_t wl = strlen(w);
        if (line + wl + 1 > 72) {
            /* Now and then a paragraph ends. */
            if (rng_percent(15))
                text_add(t, ".\r\n\r\n", 5);
            else
                text_add(t, "\r\n", 2);
            line = 0;
        } else if (line > 0) {
            text_add(t, " ", 1);
            line++;
        }
        text_add(t, w, wl);
        line += wl;
    }
    text_add(t, "\r\n", 2);
}

/* Base64 of n pseudo-random bytes in 76-character lines (RFC 2045 6.8): random data does not
 * compress, like the photos and PDFs people actually attach. */
static void
add_base64(struct text *t, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint64_t r = rng_next();
        char q[4] = {b64[r & 63], b64[(r >> 6) & 63], b64[(r >> 12) & 63], b64[(r >> 18) & 63]};
        text_add(t, q, 4);
        col += 4;
        if (col == 76) {
            text_add(t, "\r\n", 2);
            col = 0;
        }
    }
    if (col)
        text_add(t, "\r\n", 2);
}

/*
 * A size drawn from the mix seen in real mailboxes: most messages are a few KiB of text, a
 * fifth carry a modest attachment, and a few are large (photos, documents).
 */
static size_t
pick_size(void)
{
    unsigned r = (unsigned)(rng_next() % 100);
    if (r < 5)
        return (size_t)rng_range(800, 2048);
    if (r < 75)
        return (size_t)rng_range(2048, 20 * 1024);
    if (r < 93)
        return (size_t)rng_range(20 * 1024, 100 * 1024);
    return (size_t)rng_range(100 * 1024, 600 * 1024);
}

struct message_spec {
    const char *from;
    const char *to;
    const char *cc; /* NULL for none */
    time_t date;
    size_t size;
    unsigned serial; /* makes Message-IDs unique within the run */
};

static void
format_date(char *out, size_t n, time_t when)
{
    struct tm tm;
    gmtime_r(&when, &tm);
    /* RFC 5322 date-time; the C locale names are the ones the RFC wants. */
    strftime(out, n, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static void
build_message(struct text *t, const struct message_spec *m)
{
    char date[64];
    format_date(date, sizeof(date), m->date);
    char subject[128];
    /* The templates take at most one %u; the format is chosen from a fixed table. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(subject, sizeof(subject), subjects[rng_next() % N_SUBJECTS],
             (unsigned)rng_range(1, 9999));
#pragma GCC diagnostic pop

    t->len = 0;
    /* The envelope sender is the bare address inside the From display form. */
    const char *lt = strchr(m->from, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt)
        text_printf(t, "Return-Path: %.*s\r\n", (int)(gt - lt + 1), lt);
    text_printf(t, "Date: %s\r\nFrom: %s\r\nTo: %s\r\n", date, m->from, m->to);
    if (m->cc)
        text_printf(t, "Cc: %s\r\n", m->cc);
    text_printf(t, "Subject: %s\r\n", subject);
    text_printf(t, "Message-ID: <%08" PRIx64 ".%u@example.test>\r\nMIME-Version: 1.0\r\n",
                rng_next() & 0xffffffffu, m->serial);

    /* Larger messages are large because of an attachment; a share of small ones have one too. */
    bool multipart = m->size > 24 * 1024 || rng_percent(20);
    if (!multipart) {
        text_printf(t, "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n\r\n");
        add_prose(t, m->size > t->len ? m->size - t->len : 200);
        return;
    }
    char boundary[40];
    snprintf(boundary, sizeof(boundary), "=_tandem_%016" PRIx64, rng_next());
    text_printf(t, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
    text_printf(t, "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n", boundary);
    text_printf(t, "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n\r\n");
    size_t prose = (size_t)rng_range(300, 3000);
    add_prose(t, prose);
    static const char *const attachments[][2] = {
        {"application/pdf", "report.pdf"},
        {"image/jpeg", "photo.jpg"},
        {"text/calendar", "invite.ics"},
        {"application/zip", "logs.zip"},
    };
    size_t a = (size_t)(rng_next() % 4);
    text_printf(t,
                "\r\n--%s\r\nContent-Type: %s; name=\"%s\"\r\n"
                "Content-Disposition: attachment; filename=\"%s\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n",
                boundary, attachments[a][0], attachments[a][1], attachments[a][1]);
    /* Base64 grows data by 4/3 plus line ends; aim the raw size so the total lands near size. */
    size_t want = m->size > t->len + 200 ? m->size - t->len - 200 : 1024;
    add_base64(t, want * 3 / 4 * 76 / 78);
    text_printf(t, "--%s--\r\n", boundary);
}

/* ---- Talking to the store ---- */

struct sample {
    struct store *store;
    const char *dbdir;
    /* Appends in flight: the callback runs on the store's apply thread. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned in_flight;
    int first_error;
    const char *first_error_what;
    /* Totals for the summary line. */
    unsigned long long ops, messages, body_bytes;
};

struct append_slot {
    struct sample *s;
    uint32_t *uid_r; /* where the UID of targets[0] goes, or NULL */
    const char *what;
};

static void
append_done_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    struct append_slot *slot = ctx;
    struct sample *s = slot->s;
    (void)lsn;
    pthread_mutex_lock(&s->lock);
    int err = status != 0 ? status : result->status;
    if (err != 0 && s->first_error == 0) {
        s->first_error = err;
        s->first_error_what = slot->what;
    } else if (err == 0 && slot->uid_r) {
        *slot->uid_r = result->first_uid;
    }
    s->in_flight--;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    free(slot);
}

static void
drain(struct sample *s, unsigned max_in_flight)
{
    pthread_mutex_lock(&s->lock);
    while (s->in_flight > max_in_flight)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static _Noreturn void
die_store(struct sample *s, const char *what, int err, const char *why)
{
    fprintf(stderr, "tandem-sample: %s in %s failed: %s\n", what, s->dbdir,
            why ? why : tdm_strerror(err));
    if (err == TDM_EEXIST)
        fprintf(stderr, "tandem-sample: the sample mailboxes exist already; tandem-sample fills "
                        "a fresh database (`tandemctl db create <dir>`)\n");
    if (s->store) {
        drain(s, 0);
        store_close(&s->store);
    }
    exit(1);
}

/* Commits op blocking and insists that it applied: every step of the sample builds on the last. */
static void
commit(struct sample *s, const struct mail_op *op, const char *what, struct mail_result *res_r)
{
    struct mail_result res;
    const char *why = NULL;
    int ret = store_commit_op(s->store, op, NULL, &res, &why);
    if (ret != 0)
        die_store(s, what, ret, why);
    if (res.status != 0)
        die_store(s, what, res.status, NULL);
    s->ops++;
    if (res_r)
        *res_r = res;
}

/* Queues an append; uid_r (if not NULL) receives the UID once it is applied. */
static void
append_async(struct sample *s, const struct mail_op *op, uint32_t *uid_r, const char *what)
{
    uint8_t *payload = NULL;
    size_t len = 0;
    const char *why = NULL;
    int ret = mail_op_encode(op, &payload, &len, &why);
    if (ret != 0)
        die_store(s, what, ret, why);
    struct append_slot *slot = malloc(sizeof(*slot));
    if (!slot)
        die_store(s, what, -ENOMEM, NULL);
    *slot = (struct append_slot){.s = s, .uid_r = uid_r, .what = what};

    drain(s, MAX_IN_FLIGHT - 1);
    pthread_mutex_lock(&s->lock);
    s->in_flight++;
    pthread_mutex_unlock(&s->lock);
    ret = store_commit_async(s->store, op->type, payload, len, append_done_cb, slot);
    free(payload); /* the store copied it */
    if (ret != 0) {
        pthread_mutex_lock(&s->lock);
        s->in_flight--;
        pthread_mutex_unlock(&s->lock);
        free(slot);
        die_store(s, what, ret, NULL);
    }
    s->ops++;
    s->messages += op->n_targets;
    s->body_bytes += op->body_len;
}

static void
wait_appends(struct sample *s)
{
    drain(s, 0);
    if (s->first_error)
        die_store(s, s->first_error_what, s->first_error, NULL);
}

/* ---- The sample ---- */

struct user {
    char address[64];
    char display[160]; /* "Alice Example" <alice@example.test> */
    uint32_t *inbox_uids;
    size_t n_inbox;
};

static void
user_names(struct user *u, unsigned i)
{
    char first[32];
    if (i < N_FIRST_NAMES)
        snprintf(first, sizeof(first), "%s", first_names[i]);
    else
        snprintf(first, sizeof(first), "user%u", i + 1);
    snprintf(u->address, sizeof(u->address), "%s@example.test", first);
    char cap[32];
    snprintf(cap, sizeof(cap), "%s", first);
    cap[0] = (char)(cap[0] - ('a' <= cap[0] && cap[0] <= 'z' ? 'a' - 'A' : 0));
    snprintf(u->display, sizeof(u->display), "\"%s Example\" <%s>", cap, u->address);
}

static void
create_mailbox(struct sample *s, const struct user *u)
{
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE,
                         .mailbox = u->address,
                         .quota_bytes = 10ull * 1024 * 1024 * 1024,
                         .uidvalidity = SAMPLE_EPOCH};
    commit(s, &op, "creating a mailbox", NULL);
    for (size_t i = 0; i < sizeof(special_folders) / sizeof(special_folders[0]); i++) {
        op = (struct mail_op){.type = TDM_REC_FOLDER_CREATE,
                              .mailbox = u->address,
                              .folder = special_folders[i].name,
                              .special_use = special_folders[i].use};
        commit(s, &op, "creating a special-use folder", NULL);
    }
    for (size_t i = 0; i < sizeof(plain_folders) / sizeof(plain_folders[0]); i++) {
        op = (struct mail_op){
            .type = TDM_REC_FOLDER_CREATE, .mailbox = u->address, .folder = plain_folders[i]};
        commit(s, &op, "creating a folder", NULL);
    }
    /* Clients subscribe to what they show; INBOX and the special folders always. */
    static const char *const subscribed[] = {"INBOX", "Sent",    "Drafts",          "Trash",
                                             "Junk",  "Archive", "Projects/tandem", "Family"};
    for (size_t i = 0; i < sizeof(subscribed) / sizeof(subscribed[0]); i++) {
        op = (struct mail_op){.type = TDM_REC_FOLDER_SUBSCRIBE,
                              .mailbox = u->address,
                              .folder = subscribed[i],
                              .subscribed = true};
        commit(s, &op, "subscribing a folder", NULL);
    }
}

static void
random_guid(uint8_t guid[MAIL_GUID_LEN])
{
    uint64_t a = rng_next(), b = rng_next();
    memcpy(guid, &a, 8);
    memcpy(guid + 8, &b, 8);
}

/* Delivers user ui's messages: mostly INBOX, some sent, drafts, junk and project mail. */
static void
deliver_messages(struct sample *s, struct user *users, unsigned n_users, unsigned ui,
                 unsigned per_user, struct text *t, unsigned *serial)
{
    struct user *u = &users[ui];
    /* A year of mail, oldest first, so UIDs ascend with dates as on a real server. */
    time_t when = SAMPLE_EPOCH + (time_t)rng_range(0, 86400);
    for (unsigned k = 0; k < per_user; k++) {
        when += (time_t)rng_range(600, 2 * 86400);
        unsigned r = (unsigned)(rng_next() % 100);
        const char *folder = r < 70   ? "INBOX"
                             : r < 84 ? "Sent"
                             : r < 87 ? "Drafts"
                             : r < 91 ? "Junk"
                             : r < 96 ? "Projects/tandem"
                                      : "Family";
        const struct user *peer =
            &users[(ui + 1 + rng_next() % (n_users > 1 ? n_users - 1 : 1)) % n_users];
        struct message_spec m = {.date = when, .size = pick_size(), .serial = ++*serial};
        bool outgoing = strcmp(folder, "Sent") == 0 || strcmp(folder, "Drafts") == 0;
        if (outgoing) {
            m.from = u->display;
            m.to = peer->display;
        } else {
            m.from = rng_percent(60) || n_users == 1
                         ? outside_senders[rng_next() %
                                           (sizeof(outside_senders) / sizeof(outside_senders[0]))]
                         : peer->display;
            m.to = u->display;
            if (rng_percent(20) && n_users > 2)
                m.cc = users[(ui + 2) % n_users].display;
        }
        build_message(t, &m);

        uint32_t flags = 0;
        const char *kws[2];
        size_t n_kws = 0;
        if (outgoing)
            flags = MAIL_FLAG_SEEN | (folder[0] == 'D' ? MAIL_FLAG_DRAFT : 0);
        else if (k < per_user * 8 / 10 && rng_percent(85))
            flags = MAIL_FLAG_SEEN; /* older mail has mostly been read */
        if ((flags & MAIL_FLAG_SEEN) && !outgoing && rng_percent(15))
            flags |= MAIL_FLAG_ANSWERED;
        if (strcmp(folder, "Junk") == 0)
            kws[n_kws++] = "$Junk";
        else if (rng_percent(20))
            kws[n_kws++] =
                all_keywords[rng_next() % (sizeof(all_keywords) / sizeof(all_keywords[0]))];

        struct mail_target target = {.mailbox = u->address, .folder = folder};
        struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                             .targets = &target,
                             .n_targets = 1,
                             .internal_date = when,
                             .flags = flags,
                             .keywords = kws,
                             .n_keywords = n_kws,
                             .body = t->data,
                             .body_len = t->len};
        random_guid(op.guid);
        uint32_t *uid_r = NULL;
        if (strcmp(folder, "INBOX") == 0)
            uid_r = &u->inbox_uids[u->n_inbox++];
        append_async(s, &op, uid_r, "delivering a message");
    }
}

/* One message to everybody, as LMTP delivers to several local recipients: one record, one
 * body stored once (single instance), one UID per recipient. */
static void
deliver_announcement(struct sample *s, struct user *users, unsigned n_users, struct text *t,
                     unsigned *serial)
{
    size_t n = n_users < MAIL_MAX_TARGETS ? n_users : MAIL_MAX_TARGETS;
    struct message_spec m = {.from = "\"IT Operations\" <it@example.test>",
                             .to = "\"All staff\" <all@example.test>",
                             .date = SAMPLE_EPOCH + 200 * 86400,
                             .size = 48 * 1024,
                             .serial = ++*serial};
    build_message(t, &m);
    struct mail_target targets[MAIL_MAX_TARGETS];
    for (size_t i = 0; i < n; i++)
        targets[i] = (struct mail_target){.mailbox = users[i].address, .folder = "INBOX"};
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = targets,
                         .n_targets = n,
                         .internal_date = m.date,
                         .body = t->data,
                         .body_len = t->len};
    random_guid(op.guid);
    struct mail_result res;
    commit(s, &op, "delivering the announcement to every user", &res);
    s->messages += n;
    s->body_bytes += t->len;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

struct tidy_counts {
    unsigned flagged, moved, expunged;
};

/* What a user does after reading: flag a few, tag them, archive old mail, delete some. */
static void
tidy_inbox(struct sample *s, struct user *u, struct tidy_counts *c)
{
    size_t n = u->n_inbox;
    if (n < 3) /* too few to archive one and delete two */
        return;
    qsort(u->inbox_uids, n, sizeof(uint32_t), cmp_u32);

    uint32_t pick[8];
    size_t n_pick = 0;
    for (size_t i = 0; i < n && n_pick < 3; i += 1 + (size_t)(rng_next() % 4))
        pick[n_pick++] = u->inbox_uids[i];
    const char *kws[] = {"todo", "$Important"};
    struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                         .mailbox = u->address,
                         .folder = "INBOX",
                         .uids = pick,
                         .n_uids = n_pick,
                         .flag_mode = MAIL_FLAGS_ADD,
                         .flags = MAIL_FLAG_FLAGGED | MAIL_FLAG_SEEN,
                         .keywords = kws,
                         .n_keywords = 2};
    struct mail_result res;
    commit(s, &op, "flagging messages", &res);
    c->flagged += res.count;

    /* The oldest tenth goes to Archive (a move: same body, new UID there, expunged here). */
    size_t n_move = n / 10 ? n / 10 : 1;
    op = (struct mail_op){.type = TDM_REC_MESSAGE_COPY,
                          .mailbox = u->address,
                          .folder = "INBOX",
                          .new_folder = "Archive",
                          .uids = u->inbox_uids,
                          .n_uids = n_move,
                          .move = true};
    commit(s, &op, "archiving messages", &res);
    c->moved += res.count;

    /* Two of the rest are deleted the way clients do it: moved to Trash; then Trash is
     * emptied of one of them the IMAP way, \Deleted and EXPUNGE. */
    uint32_t del[2] = {u->inbox_uids[n_move], u->inbox_uids[n_move + 1]};
    op = (struct mail_op){.type = TDM_REC_MESSAGE_COPY,
                          .mailbox = u->address,
                          .folder = "INBOX",
                          .new_folder = "Trash",
                          .uids = del,
                          .n_uids = 2,
                          .move = true};
    commit(s, &op, "moving messages to Trash", &res);
    c->moved += res.count;
    uint32_t gone = res.first_uid; /* moved UIDs are consecutive from first_uid */
    op = (struct mail_op){.type = TDM_REC_MESSAGE_FLAGS,
                          .mailbox = u->address,
                          .folder = "Trash",
                          .uids = &gone,
                          .n_uids = 1,
                          .flag_mode = MAIL_FLAGS_ADD,
                          .flags = MAIL_FLAG_DELETED};
    commit(s, &op, "marking a message deleted", NULL);
    op = (struct mail_op){.type = TDM_REC_MESSAGE_EXPUNGE,
                          .mailbox = u->address,
                          .folder = "Trash",
                          .uids = &gone,
                          .n_uids = 1};
    commit(s, &op, "expunging a message", &res);
    c->expunged += res.count;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: tandem-sample <dbdir> [--users N] [--messages-per-user M] [--seed S]\n"
            "                     [--truncate-log] [--verbose]\n"
            "\n"
            "Fills an existing, empty tandem database (made by `tandemctl db create <dbdir>`)\n"
            "with a reproducible sample: N mailboxes (alice@example.test, bob@example.test, ...)\n"
            "with INBOX, Sent, Drafts, Trash, Junk and Archive (special-use) and nested folders,\n"
            "M RFC 5322 messages each (mostly 2-20 KiB, some multipart with attachments, a few\n"
            "over 100 KiB), one announcement delivered to every user in one record (its body is\n"
            "stored once), flags and keywords, a few messages moved to Archive and a few\n"
            "expunged. The same options always give the same database content.\n"
            "\n"
            "  --users N              mailboxes to create (1..%d, default 5)\n"
            "  --messages-per-user M  messages delivered to each (0..%d, default 40)\n"
            "  --seed S               seed for every random choice (default 1)\n"
            "  --truncate-log         let the store delete log generations below checkpoints,\n"
            "                         as a server does (by default the whole log is kept, so\n"
            "                         `tandemctl db verify` can replay it from LSN 1)\n"
            "  --verbose              print the store's operator events (JSON lines) to stderr\n"
            "  --help                 this text\n"
            "\n"
            "Exit status: 0 done, 1 the database could not be opened or a commit failed,\n"
            "2 bad usage.\n",
            MAX_USERS, MAX_MESSAGES);
}

static bool
parse_uint(const char *arg, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (arg[0] < '0' || arg[0] > '9')
        return false;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"users", required_argument, NULL, 'u'},
        {"messages-per-user", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"truncate-log", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long long n_users = 5, per_user = 40, seed = 1;
    bool verbose = false, truncate_log = false;
    int c;
    while ((c = getopt_long(argc, argv, "u:m:s:vth", long_opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            if (!parse_uint(optarg, MAX_USERS, &n_users) || n_users == 0) {
                fprintf(stderr, "tandem-sample: --users wants a number from 1 to %d, not '%s'\n",
                        MAX_USERS, optarg);
                return EXIT_USAGE;
            }
            break;
        case 'm':
            if (!parse_uint(optarg, MAX_MESSAGES, &per_user)) {
                fprintf(stderr,
                        "tandem-sample: --messages-per-user wants a number from 0 to %d, not "
                        "'%s'\n",
                        MAX_MESSAGES, optarg);
                return EXIT_USAGE;
            }
            break;
        case 's':
            if (!parse_uint(optarg, UINT64_MAX, &seed)) {
                fprintf(stderr, "tandem-sample: --seed wants a non-negative number, not '%s'\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'v':
            verbose = true;
            break;
        case 't':
            truncate_log = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "tandem-sample: try --help\n");
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind == argc ? "tandem-sample: which database? give its directory\n"
                                       : "tandem-sample: one database directory, please\n");
        fprintf(stderr, "tandem-sample: try --help\n");
        return EXIT_USAGE;
    }

    struct sample s = {.dbdir = argv[optind]};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    /* The store reports generation rolls and mounts as operator events; for a one-shot
     * generator they are noise unless asked for. */
    if (!verbose)
        event_set_sink(NULL);
    rng_state = seed;

    struct stat st;
    if (stat(s.dbdir, &st) != 0) {
        fprintf(stderr,
                "tandem-sample: %s: %s; create the database first: tandemctl db create %s\n",
                s.dbdir, strerror(errno), s.dbdir);
        return 1;
    }
    const char *why = NULL;
    int ret = store_open(s.dbdir, NULL, &s.store, &why);
    if (ret != 0) {
        fprintf(stderr, "tandem-sample: cannot open %s: %s\n", s.dbdir,
                why ? why : tdm_strerror(ret));
        return 1;
    }
    /* Keep every generation (the store would truncate below each checkpoint): a sample is a
     * few MiB of log, and with all of it `tandemctl db verify` can replay from LSN 1 and
     * compare the result with the database. */
    if (!truncate_log)
        store_set_truncation_floor(s.store, 1);
    double t0 = now_seconds();
    struct store_status st0;
    store_get_status(s.store, &st0);

    struct user *users = calloc(n_users, sizeof(*users));
    if (!users) {
        fprintf(stderr, "tandem-sample: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < n_users; i++) {
        user_names(&users[i], i);
        users[i].inbox_uids = calloc(per_user ? per_user : 1, sizeof(uint32_t));
        if (!users[i].inbox_uids) {
            fprintf(stderr, "tandem-sample: out of memory\n");
            return 1;
        }
        create_mailbox(&s, &users[i]);
    }

    struct text t = {0};
    unsigned serial = 0;
    for (unsigned i = 0; i < n_users; i++)
        deliver_messages(&s, users, (unsigned)n_users, i, (unsigned)per_user, &t, &serial);
    wait_appends(&s); /* tidying needs the UIDs */
    deliver_announcement(&s, users, (unsigned)n_users, &t, &serial);

    struct tidy_counts tc = {0};
    for (unsigned i = 0; i < n_users; i++)
        tidy_inbox(&s, &users[i], &tc);

    struct store_status st1;
    store_get_status(s.store, &st1);
    ret = store_close(&s.store);
    if (ret != 0) {
        fprintf(stderr, "tandem-sample: closing %s failed: %s\n", s.dbdir, tdm_strerror(ret));
        return 1;
    }
    double secs = now_seconds() - t0;
    size_t n_folders = 1 + sizeof(special_folders) / sizeof(special_folders[0]) +
                       sizeof(plain_folders) / sizeof(plain_folders[0]);
    printf(
        "tandem-sample: %s: %llu mailboxes, %zu folders each, %llu messages delivered "
        "(%.1f MiB of bodies; 1 to %zu recipients in one record), %u flagged, %u moved (to Archive "
        "and Trash), %u expunged; %llu records (LSN %" PRIu64 "..%" PRIu64 ") in %.2f s, seed "
        "%llu\n",
        s.dbdir, n_users, n_folders, s.messages, (double)s.body_bytes / (1024.0 * 1024.0),
        n_users < MAIL_MAX_TARGETS ? (size_t)n_users : (size_t)MAIL_MAX_TARGETS, tc.flagged,
        tc.moved, tc.expunged, s.ops, st0.last_lsn + 1, st1.last_lsn, secs, seed);

    for (unsigned i = 0; i < n_users; i++)
        free(users[i].inbox_uids);
    free(users);
    free(t.data);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    return 0;
}
