/*
 * Seeding a copy from a snapshot of the active's database (docs/replication.md, "Reseed"; the
 * protocol: docs/formats/replication.md, "Seeding"). A seed runs on a connection of its own:
 * SEED_REQUEST, then HELLO_REPLY, SEED_DATA chunks and SEED_END from the active. The chunks go
 * into a hidden sibling file of the copy's directory (.<name>.seed.mdb); at SEED_END its size
 * and SHA-256 are checked, the copy is built from it in a hidden sibling directory
 * (.<name>.seed, store_copy_create_from_snapshot) with copy.conf written into it, and the two
 * directories are swapped with one renameat2(RENAME_EXCHANGE). A crash at any point leaves
 * either the directory as it was or the whole new copy: never a half seed under the
 * database's name. Then the agent connects with HELLO from the snapshot's position and the
 * log ships as for any copy; the copy is Seeding until it first catches up.
 *
 * When: `tandemctl copy reseed` (repl_copy_reseed(); the copy's files are deleted first, by
 * the same exchange, so after a crash the directory is a new copy), and a new copy whose
 * active no longer has generation 1 (HELLO_REPLY position-gone with nothing here).
 */
#include "repl/repl_copy_int.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The seed connection waits for the snapshot to be taken before the first byte comes: the
 * protocol's silence limit (30 s), not the session's. */
#define SEED_TIMEOUT_MS 30000u

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int
repl_copy__rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) < 0 ? -errno : 0;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 ? -errno : 0;
}

char *
repl_copy__sibling(const struct repl_copy *c, const char *suffix)
{
    const char *slash = strrchr(c->dir, '/');
    char *out;
    int n = slash ? asprintf(&out, "%.*s/.%s%s", (int)(slash - c->dir), c->dir, slash + 1, suffix)
                  : asprintf(&out, "./.%s%s", c->dir, suffix);
    if (n < 0)
        log_fatal("out of memory");
    return out;
}

int
repl_copy__swap_in(struct repl_copy *c, const char *tmp, const char **why_r)
{
    char *conf_err = NULL;
    /* The marker goes with the copy, written crash-safely there (file and directory synced):
     * after the exchange a crash must never find the copy's files without it, which would
     * mount as an empty active. */
    int ret = repl_copy_conf_write(tmp, &c->conf, &conf_err);
    if (ret < 0) {
        log_error("copy %s: %s", c->database, conf_err ? conf_err : "cannot write copy.conf");
        free(conf_err);
        *why_r = "cannot write copy.conf into the new copy";
        return ret;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, c->dir, RENAME_EXCHANGE) < 0) {
        *why_r = "cannot move the new copy into place (renameat2 RENAME_EXCHANGE)";
        return -errno;
    }
    char *parent = strdup(c->dir);
    if (!parent)
        log_fatal("out of memory");
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    int pfd = open(slash ? parent : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0 || fsync(pfd) < 0) {
        ret = -errno;
        *why_r = "cannot sync the database directory";
    }
    if (pfd >= 0)
        close(pfd);
    free(parent);
    /* tmp now holds the old directory: whatever it had goes. */
    int rm = repl_copy__rm_tree(tmp);
    if (rm < 0)
        log_warn("copy %s: cannot remove the old files in %s: %s", c->database, tmp,
                 tdm_strerror(rm));
    return ret;
}

void
repl_copy__seed_clean_leftovers(struct repl_copy *c)
{
    /* At start no seed of this copy runs, so both siblings are garbage whatever moment a
     * crash hit: .seed.mdb a snapshot cut short or not yet built, .seed a copy not yet swapped
     * in or the old files not yet removed after the exchange. Nothing else removes the
     * snapshot when the copy then ships from generation 1 instead of seeding again. */
    static const char *const suffixes[] = {".seed.mdb", ".seed"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char *path = repl_copy__sibling(c, suffixes[i]);
        int ret = repl_copy__rm_tree(path);
        if (ret < 0)
            log_warn("copy %s: cannot remove the leftover %s: %s", c->database, path,
                     tdm_strerror(ret));
        free(path);
    }
}

/* ---- the seed connection ---- */

void
repl_copy__seed_abort(struct repl_copy *c)
{
    if (c->seed_fd >= 0) {
        close(c->seed_fd);
        c->seed_fd = -1;
        char *snap = repl_copy__sibling(c, ".seed.mdb");
        unlink(snap);
        free(snap);
    }
    c->seed_received = 0;
    c->seed_total = 0;
}

void
repl_copy__seed_request(struct repl_copy *c, struct repl_copy_link *l, struct repl_msg *msg,
                        uint32_t request_id)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = REPL_SEED_REQUEST;
    msg->request_id = request_id;
    struct repl_seed_request *q = &msg->u.seed_request;
    q->version_min = REPL_WIRE_VERSION_MIN;
    q->version_max = REPL_WIRE_VERSION;
    q->server = repl_str_c(c->server_name);
    q->key = repl_str_c(c->key);
    q->database = repl_str_c(c->database);
    q->role = c->conf.role;
    l->seed = true;
    repl_copy__seed_abort(c); /* a seed cut short starts again from offset 0 */
    struct timeval tv = {SEED_TIMEOUT_MS / 1000, (SEED_TIMEOUT_MS % 1000) * 1000};
    bufferevent_set_timeouts(l->bev, &tv, &tv);
}

static void
seeding_message(struct repl_copy *c)
{
    repl_copy__set_state(c, REPL_COPY_SEEDING,
                         "receiving a snapshot of the active's database: %llu of %llu bytes, over "
                         "network %s",
                         (unsigned long long)c->seed_received, (unsigned long long)c->seed_total,
                         c->st.network);
}

static int
seed_reply(struct repl_copy *c, struct repl_copy_link *l, const struct repl_hello_reply *r)
{
    char reason[REPL_WIRE_TEXT_MAX + 1];
    snprintf(reason, sizeof(reason), "%.*s", (int)r->reason.len, r->reason.ptr);
    const char *code = repl_code_name(r->code);
    if (r->code != REPL_CODE_OK) {
        bool fatal = r->code == REPL_CODE_VERSION || r->code == REPL_CODE_PROTOCOL;
        repl_copy__retry_later(c, !fatal);
        repl_copy__set_state(c, fatal ? REPL_COPY_FAILED : REPL_COPY_SERVICE_DOWN,
                             "the active refused a seed (%s): %s", code ? code : "?", reason);
        return -1;
    }
    if (r->guid[0] == 0 && !memcmp(r->guid, r->guid + 1, REPL_WIRE_GUID_LEN - 1)) {
        repl_copy__retry_later(c, false);
        repl_copy__set_state(c, REPL_COPY_FAILED, "the active named no database GUID to seed from");
        return -1;
    }
    memcpy(c->seed_guid, r->guid, REPL_WIRE_GUID_LEN);
    char *snap = repl_copy__sibling(c, ".seed.mdb");
    c->seed_fd = open(snap, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = errno;
    free(snap);
    if (c->seed_fd < 0) {
        repl_copy__retry_later(c, false);
        repl_copy__set_state(c, REPL_COPY_FAILED, "cannot write the snapshot beside %s: %s", c->dir,
                             strerror(err));
        return -1;
    }
    crypto_hash_sha256_init(&c->seed_sha);
    l->hello_done = true;
    c->st.mode = r->mode;
    c->st.source_generation = r->current_generation;
    c->st.source_durable_end = r->durable_end;
    c->retry_ms = c->retry_min_ms;
    seeding_message(c);
    return 0;
}

static int
seed_data(struct repl_copy *c, const struct repl_seed_data *d)
{
    if (c->seed_fd < 0 || d->offset != c->seed_received ||
        (c->seed_total && d->total_size != c->seed_total)) {
        log_error("copy %s: a snapshot chunk at %llu does not follow the %llu bytes received",
                  c->database, (unsigned long long)d->offset, (unsigned long long)c->seed_received);
        repl_copy__reconnect(c);
        return -1;
    }
    const uint8_t *bytes = d->data;
    if (d->compression == REPL_COMPRESSION_ZSTD) {
        const char *why;
        int ret = repl_zstd_decompress(c->zstd, d->data, d->data_len, c->raw, d->raw_length, &why);
        if (ret == -ENOMEM)
            log_fatal("out of memory");
        if (ret < 0) {
            log_error("copy %s: a snapshot chunk does not decompress: %s", c->database, why);
            repl_copy__reconnect(c);
            return -1;
        }
        bytes = c->raw;
    }
    for (uint32_t done = 0; done < d->raw_length;) {
        ssize_t n =
            pwrite(c->seed_fd, bytes + done, d->raw_length - done, (off_t)(d->offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            char msg[300];
            snprintf(msg, sizeof(msg), "cannot write the snapshot beside %s: %s", c->dir,
                     strerror(errno));
            repl_copy__retry_later(c, false);
            repl_copy__set_state(c, REPL_COPY_FAILED, "%s", msg);
            return -1;
        }
        done += (uint32_t)n;
    }
    crypto_hash_sha256_update(&c->seed_sha, bytes, d->raw_length);
    c->seed_total = d->total_size;
    c->seed_received += d->raw_length;
    c->st.bytes_received += d->raw_length;
    seeding_message(c);
    return 0;
}

/* The snapshot is whole: build the copy from it and swap it in. */
static int
seed_end(struct repl_copy *c, const struct repl_seed_end *e)
{
    uint8_t sha[REPL_WIRE_SHA256_LEN];
    crypto_hash_sha256_final(&c->seed_sha, sha);
    if (c->seed_fd < 0 || e->total_size != c->seed_received ||
        memcmp(sha, e->sha256, sizeof(sha)) != 0 ||
        memcmp(e->guid, c->seed_guid, REPL_WIRE_GUID_LEN) != 0) {
        event_emit(TDM_EV_REPL_COPY_INSPECTION_FAILED, c->database,
                   "copy of %s: the snapshot received (%llu bytes) does not match its SEED_END "
                   "(%llu bytes, SHA-256, GUID): seeding again",
                   c->database, (unsigned long long)c->seed_received,
                   (unsigned long long)e->total_size);
        repl_copy__reconnect(c);
        return -1;
    }
    const char *why = NULL;
    int ret = fdatasync(c->seed_fd) < 0 ? -errno : 0;
    close(c->seed_fd);
    c->seed_fd = -1;
    char *snap = repl_copy__sibling(c, ".seed.mdb");
    char *tmp = repl_copy__sibling(c, ".seed");
    if (ret < 0)
        why = "cannot make the snapshot durable";
    if (ret == 0 && (ret = repl_copy__rm_tree(tmp)) < 0)
        why = "cannot remove what an earlier seed left";
    if (ret == 0) {
        const char *err = NULL;
        ret = store_copy_create_from_snapshot(tmp, snap, e->guid, e->first_generation, &err);
        if (ret < 0)
            why = err ? err : "cannot create the copy from the snapshot";
    }
    if (ret == 0 && c->store) {
        int cret = store_copy_close(&c->store);
        if (cret < 0)
            log_warn("copy %s: the old copy closed with an error: %s", c->database,
                     tdm_strerror(cret));
    }
    if (ret == 0)
        ret = repl_copy__swap_in(c, tmp, &why);
    unlink(snap); /* gone already unless something failed */
    free(snap);
    free(tmp);
    c->seed_received = c->seed_total = 0;
    if (ret < 0) {
        repl_copy__retry_later(c, false);
        repl_copy__set_state(c, REPL_COPY_FAILED,
                             "cannot build the copy from the snapshot: %s (%s)",
                             why ? why : "error", tdm_strerror(ret));
        return -1;
    }
    log_info("copy %s: seeded from a snapshot up to LSN %llu; the log goes on from generation "
             "%llu",
             c->database, (unsigned long long)e->applied_lsn,
             (unsigned long long)e->first_generation);
    c->seed_wanted = false;
    repl_copy__disconnect(c);
    if (repl_copy__open_store(c) < 0)
        return -1; /* Failed, with the reason */
    c->seeding = true;
    repl_copy__set_state(c, REPL_COPY_SEEDING,
                         "seeded from a snapshot up to LSN %llu; copying the log from "
                         "generation %llu",
                         (unsigned long long)e->applied_lsn,
                         (unsigned long long)e->first_generation);
    c->next_net = 0;
    repl_copy__connect(c);
    return -1; /* the seed link is gone */
}

int
repl_copy__seed_on_message(struct repl_copy *c, struct repl_copy_link *l,
                           const struct repl_msg *msg)
{
    if (!l->hello_done) {
        if (msg->type == REPL_HELLO_REPLY && msg->request_id == l->hello_id)
            return seed_reply(c, l, &msg->u.hello_reply);
    } else if (msg->type == REPL_SEED_DATA) {
        return seed_data(c, &msg->u.seed_data);
    } else if (msg->type == REPL_SEED_END) {
        return seed_end(c, &msg->u.seed_end);
    }
    if (msg->type == REPL_ERROR) {
        char text[REPL_WIRE_TEXT_MAX + 1];
        snprintf(text, sizeof(text), "%.*s", (int)msg->u.error.text.len, msg->u.error.text.ptr);
        const char *code = repl_code_name(msg->u.error.code);
        repl_copy__retry_later(c, true);
        repl_copy__set_state(c, REPL_COPY_DISCONNECTED,
                             "the active ended the seed (%s): %s; seeding again", code ? code : "?",
                             text);
        return -1;
    }
    log_error("copy %s: unexpected %s on a seed connection", c->database,
              repl_type_name(msg->type) ? repl_type_name(msg->type) : "message");
    repl_copy__reconnect(c);
    return -1;
}

void
repl_copy__seed_tick(struct repl_copy *c)
{
    /* A sign of life: the source closes a seed connection silent for its limit. */
    if (!c->session || !c->session->seed || !c->session->hello_done ||
        repl_copy__now_us() - c->last_ack_us < REPL_COPY_ACK_IDLE_MS * 1000u)
        return;
    struct repl_msg ack = {.type = REPL_ACK};
    if (repl_copy__send(c->session, &ack) < 0) {
        repl_copy__reconnect(c);
        return;
    }
    c->last_ack_us = repl_copy__now_us();
}

void
repl_copy__reseed_start(struct repl_copy *c)
{
    repl_copy__disconnect(c);
    evtimer_del(c->retry_ev);
    evtimer_del(c->replay_ev);
    if (c->store) {
        int ret = store_copy_close(&c->store);
        if (ret < 0)
            log_warn("copy %s: closed with an error before its reseed: %s", c->database,
                     tdm_strerror(ret));
    }
    /* The old files go first, by the same exchange a seed uses: a directory holding only
     * copy.conf is a new copy, which a restart seeds again by itself. */
    c->conf.suspended = false;
    c->conf.suspend_comment[0] = '\0';
    char *tmp = repl_copy__sibling(c, ".seed");
    const char *why = NULL;
    int ret = repl_copy__rm_tree(tmp);
    if (ret == 0 && mkdir(tmp, 0750) < 0)
        ret = -errno;
    if (ret == 0)
        ret = repl_copy__swap_in(c, tmp, &why);
    free(tmp);
    if (ret < 0) {
        repl_copy__set_state(c, REPL_COPY_FAILED,
                             "cannot delete the copy's files to reseed: %s (%s)",
                             why ? why : "cannot make the empty copy", tdm_strerror(ret));
        return;
    }
    c->st.inspection_failures = 0;
    c->seed_wanted = true;
    c->retry_ms = c->retry_min_ms;
    c->next_net = 0;
    repl_copy__set_state(c, REPL_COPY_SEEDING, "reseed requested: the copy's files are deleted");
    repl_copy__connect(c);
}
