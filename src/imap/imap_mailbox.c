/*
 * Mailbox commands (imap_int.h): LIST and LSUB over the user's folders, STATUS, SELECT and
 * EXAMINE. Folder names are the store's (UTF-8, '/' as the hierarchy separator, INBOX spelt
 * so); on the wire they are modified UTF-7 for IMAP4rev1 clients (imap_write_mailbox).
 *
 * \Recent (RFC 3501 2.3.2): SELECT claims the folder's unclaimed UIDs with a FOLDER_RECENT
 * record (mail.h), so exactly one session sees each message as recent; EXAMINE claims
 * nothing and counts the unclaimed ones.
 */
#include "imap/imap_int.h"

#include "lib/conn.h"
#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "proto/imap/imap_mutf7.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Names ---- */

/* The store's name for a mailbox name as the client wrote it: modified UTF-7 decoded, and
 * any spelling of INBOX as "INBOX". Returns false (after answering) for a bad name. */
static bool
store_name(struct imap_session *s, const char *tag, const char *wire, char out[MAIL_NAME_MAX + 1])
{
    if (strcasecmp(wire, "INBOX") == 0) {
        snprintf(out, MAIL_NAME_MAX + 1, "INBOX");
        return true;
    }
    struct imap_buf utf8 = IMAP_BUF_INIT;
    bool ok = imap_mutf7_decode(wire, strlen(wire), &utf8) == 0 && utf8.data &&
              utf8.len <= MAIL_NAME_MAX;
    if (ok)
        snprintf(out, MAIL_NAME_MAX + 1, "%s", utf8.data);
    else
        imap__reply(s, tag, "NO", "CANNOT", "Invalid mailbox name");
    imap_buf_free(&utf8);
    return ok;
}

/* A read transaction on the user's mailbox database; false after answering when it is not
 * here. */
static bool
begin(struct imap_session *s, const char *tag, struct store_reader **r_r, MDB_txn **txn_r)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    if (!r || store_reader_begin(r, txn_r) < 0) {
        imap__reply(s, tag, "NO", "UNAVAILABLE", "Your mailbox is not available on this server now");
        return false;
    }
    *r_r = r;
    return true;
}

/* ---- LIST / LSUB ---- */

/* RFC 3501 6.3.8: '*' matches anything, '%' anything but the hierarchy separator. */
static bool
match(const char *pat, const char *name)
{
    for (;; pat++, name++) {
        if (*pat == '*' || *pat == '%') {
            for (const char *n = name;; n++) {
                if (match(pat + 1, n))
                    return true;
                if (!*n || (*pat == '%' && *n == MAIL_HIER_SEP))
                    return false;
            }
        }
        if (!*pat)
            return !*name;
        if (*pat != *name)
            return false;
    }
}

struct list_walk {
    struct imap_session *s;
    bool lsub;
    const char *pattern; /* UTF-8, reference prepended */
    struct mail_folder_info *folders;
    size_t n, cap;
    char **names;
};

static int
collect_folder(void *ctx, const struct mail_folder_info *f)
{
    struct list_walk *w = ctx;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        void *a = realloc(w->folders, cap * sizeof(*w->folders));
        void *b = a ? realloc(w->names, cap * sizeof(*w->names)) : NULL;
        if (a)
            w->folders = a;
        if (!a || !b)
            return -ENOMEM;
        w->names = b;
        w->cap = cap;
    }
    w->folders[w->n] = *f;
    w->names[w->n] = strndup(f->name, f->name_len); /* the name dies with the transaction */
    if (!w->names[w->n])
        return -ENOMEM;
    w->n++;
    return 0;
}

static bool
has_children(const struct list_walk *w, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < w->n; i++)
        if (strncmp(w->names[i], name, len) == 0 && w->names[i][len] == MAIL_HIER_SEP)
            return true;
    return false;
}

void
imap__cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
    bool lsub = cmd->cmd == IMAP_CMD_LSUB;
    const char *tag = cmd->tag;
    if (cmd->u.list.extended) {
        imap__reply(s, tag, "NO", "CANNOT", "LIST-EXTENDED is not served yet");
        return;
    }
    const char *ref = cmd->u.list.reference, *pat = cmd->u.list.patterns[0];
    if (!lsub && pat[0] == '\0') {
        /* The hierarchy delimiter and root (RFC 3501 6.3.8). */
        imap_buf_puts(&s->out, "* LIST (\\Noselect) \"/\" \"\"\r\n");
        imap__reply(s, tag, "OK", NULL, "LIST completed");
        return;
    }
    char full[2 * MAIL_NAME_MAX + 2];
    snprintf(full, sizeof(full), "%s%s", ref, pat);
    struct imap_buf decoded = IMAP_BUF_INIT;
    if (imap_mutf7_decode(full, strlen(full), &decoded) < 0 || !decoded.data) {
        imap_buf_free(&decoded);
        imap__reply(s, tag, "OK", NULL, "Nothing matches");
        return;
    }
    const char *utf8 = decoded.data;
    struct store_reader *r;
    MDB_txn *txn;
    if (!begin(s, tag, &r, &txn)) {
        imap_buf_free(&decoded);
        return;
    }
    struct list_walk w = {.s = s, .lsub = lsub, .pattern = utf8};
    int ret = mail_folder_list(store_reader_mail_dbis(r), txn, s->user, collect_folder, &w);
    mdb_txn_abort(txn);
    if (ret < 0 && ret != TDM_ENOTFOUND) {
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox list");
    } else {
        for (size_t i = 0; i < w.n; i++) {
            const char *name = w.names[i];
            /* INBOX matches case-insensitively (RFC 3501 5.1). */
            bool hit = match(utf8, name) || (strcmp(name, "INBOX") == 0 &&
                                             strcasecmp(utf8, "INBOX") == 0);
            if (!hit || (lsub && !w.folders[i].subscribed))
                continue;
            const char *attrs[4];
            size_t n = 0;
            attrs[n++] = has_children(&w, name) ? "\\HasChildren" : "\\HasNoChildren";
            uint32_t use = w.folders[i].special_use;
            attrs[n] = use & MAIL_USE_SENT      ? "\\Sent"
                       : use & MAIL_USE_DRAFTS  ? "\\Drafts"
                       : use & MAIL_USE_TRASH   ? "\\Trash"
                       : use & MAIL_USE_JUNK    ? "\\Junk"
                       : use & MAIL_USE_ARCHIVE ? "\\Archive"
                       : use & MAIL_USE_ALL     ? "\\All"
                       : use & MAIL_USE_FLAGGED ? "\\Flagged"
                                                : NULL;
            if (attrs[n])
                n++;
            imap_write_list(&s->out, lsub, attrs, n, MAIL_HIER_SEP, name, false, NULL,
                            imap__mode(s));
        }
        imap__reply(s, tag, "OK", NULL, lsub ? "LSUB completed" : "LIST completed");
    }
    for (size_t i = 0; i < w.n; i++)
        free(w.names[i]);
    free(w.names);
    free(w.folders);
    imap_buf_free(&decoded);
}

/* ---- STATUS ---- */

struct count_walk {
    uint32_t unseen, recent_from, recent, deleted;
    uint64_t size;
};

static int
count_message(void *ctx, const struct mail_message_info *m)
{
    struct count_walk *c = ctx;
    if (!(m->flags & MAIL_FLAG_SEEN))
        c->unseen++;
    if (m->flags & MAIL_FLAG_DELETED)
        c->deleted++;
    if (m->uid >= c->recent_from)
        c->recent++;
    c->size += m->size;
    return 0;
}

void
imap__cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    char folder[MAIL_NAME_MAX + 1];
    if (!store_name(s, tag, cmd->u.status.mailbox, folder))
        return;
    struct store_reader *r;
    MDB_txn *txn;
    if (!begin(s, tag, &r, &txn))
        return;
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    struct mail_folder_info f;
    int ret = mail_folder_get(dbis, txn, s->user, folder, &f);
    struct count_walk c = {.recent_from = ret == 0 ? f.first_recent_uid : 0};
    if (ret == 0)
        ret = mail_message_list(dbis, txn, s->user, folder, count_message, &c);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND) {
        imap__reply(s, tag, "NO", "NONEXISTENT", "No such mailbox");
        return;
    }
    if (ret < 0) {
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
        return;
    }
    struct imap_status_values v = {
        .items = cmd->u.status.items & (IMAP_STATUS_MESSAGES | IMAP_STATUS_RECENT |
                                        IMAP_STATUS_UIDNEXT | IMAP_STATUS_UIDVALIDITY |
                                        IMAP_STATUS_UNSEEN | IMAP_STATUS_DELETED |
                                        IMAP_STATUS_SIZE | IMAP_STATUS_HIGHESTMODSEQ),
        .messages = f.messages,
        .recent = c.recent,
        .uidnext = f.uidnext,
        .uidvalidity = f.uidvalidity,
        .unseen = c.unseen,
        .deleted = c.deleted,
        .size = c.size,
        .highestmodseq = f.highestmodseq,
    };
    if (v.items != cmd->u.status.items) {
        imap__reply(s, tag, "NO", "CANNOT", "Some of those STATUS items are not served yet");
        return;
    }
    imap_write_status(&s->out, folder, &v, imap__mode(s));
    imap__reply(s, tag, "OK", NULL, "STATUS completed");
}

/* ---- SELECT / EXAMINE ---- */

struct select_walk {
    const struct imap_view *view;
    uint32_t first_unseen; /* MSN */
    uint32_t recent_lo, recent_hi;
    uint32_t recent;
};

static int
select_message(void *ctx, const struct mail_message_info *m)
{
    struct select_walk *w = ctx;
    if (!w->first_unseen && !(m->flags & MAIL_FLAG_SEEN))
        w->first_unseen = imap_view_msn(w->view, m->uid);
    if (m->uid >= w->recent_lo && m->uid < w->recent_hi)
        w->recent++;
    return 0;
}

/* The untagged responses and the tagged OK of SELECT / EXAMINE. */
static void
select_answer(struct imap_session *s)
{
    struct store_reader *r;
    MDB_txn *txn;
    if (!begin(s, s->tag, &r, &txn)) {
        imap__unselect(s);
        return;
    }
    struct select_walk w = {.view = s->view, .recent_lo = s->recent_lo, .recent_hi = s->recent_hi};
    int ret = mail_message_list(store_reader_mail_dbis(r), txn, s->user, s->folder, select_message,
                                &w);
    mdb_txn_abort(txn);
    if (ret < 0) {
        imap__unselect(s);
        imap__reply(s, s->tag, "NO", "SERVERBUG", "Cannot read the mailbox");
        return;
    }
    static const char flags[] = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
    imap_buf_printf(&s->out, "* FLAGS (%s)\r\n", flags);
    imap_buf_printf(&s->out, "* %u EXISTS\r\n", imap_view_count(s->view));
    imap_buf_printf(&s->out, "* %u RECENT\r\n", w.recent);
    if (w.first_unseen)
        imap_buf_printf(&s->out, "* OK [UNSEEN %u] First unseen\r\n", w.first_unseen);
    imap_buf_printf(&s->out, "* OK [PERMANENTFLAGS (%s%s)] Flags\r\n", s->read_only ? "" : flags,
                    s->read_only ? "" : " \\*");
    imap_buf_printf(&s->out, "* OK [UIDVALIDITY %u] UIDs valid\r\n", imap_view_uidvalidity(s->view));
    imap_buf_printf(&s->out, "* OK [UIDNEXT %u] Predicted next UID\r\n", imap_view_uidnext(s->view));
    imap_buf_printf(&s->out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                    (unsigned long long)imap_view_highestmodseq(s->view));
    s->state = IMAP_STATE_SELECTED;
    imap__watch(s); /* IDLE pushes its changes */
    imap__reply(s, s->tag, "OK", s->read_only ? "READ-ONLY" : "READ-WRITE",
                s->read_only ? "EXAMINE completed" : "SELECT completed");
}

static void
recent_claimed(void *ctx, int status, const struct ipc_msg *reply)
{
    struct imap_session *s = ctx;
    s->waiting--;
    if (!s->conn) { /* the client left meanwhile */
        imap__release(s);
        return;
    }
    s->busy++;
    const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
    if (cr && cr->status == 0) {
        /* Our share: UIDs [first_uid, first_uid + count). */
        s->recent_lo = cr->first_uid;
        s->recent_hi = cr->first_uid + cr->count;
    }
    /* A failed claim only costs \Recent: the selection itself stands. */
    select_answer(s);
    imap__resume(s);
    s->busy--;
}

void
imap__cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    /* A SELECT of anything leaves the current selection first (RFC 3501 6.3.1). */
    imap__unselect(s);
    if (cmd->u.select.condstore || cmd->u.select.qresync) {
        imap__reply(s, tag, "NO", "CANNOT", "CONDSTORE and QRESYNC are not served yet");
        return;
    }
    if (!store_name(s, tag, cmd->u.select.mailbox, s->folder))
        return;
    struct store_reader *r;
    MDB_txn *txn;
    if (!begin(s, tag, &r, &txn))
        return;
    int ret = imap_view_open(store_reader_mail_dbis(r), txn, s->user, s->folder, &s->view);
    struct mail_folder_info f;
    if (ret == 0)
        ret = mail_folder_get(store_reader_mail_dbis(r), txn, s->user, s->folder, &f);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND) {
        imap__unselect(s);
        imap__reply(s, tag, "NO", "NONEXISTENT", "No such mailbox");
        return;
    }
    if (ret < 0) {
        imap__unselect(s);
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
        return;
    }
    s->read_only = cmd->cmd == IMAP_CMD_EXAMINE;
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    if (s->read_only) {
        /* EXAMINE claims nothing: the unclaimed UIDs show as recent. */
        s->recent_lo = f.first_recent_uid;
        s->recent_hi = imap_view_uidnext(s->view);
        select_answer(s);
        s->recent_lo = s->recent_hi = 0;
        return;
    }
    struct mail_op op = {.type = TDM_REC_FOLDER_RECENT,
                         .mailbox = s->user,
                         .folder = s->folder,
                         .uid_limit = imap_view_uidnext(s->view)};
    uint8_t *payload;
    size_t len;
    const char *why = NULL;
    ret = mail_op_encode(&op, &payload, &len, &why);
    if (ret == 0) {
        ret = core_link_commit(s->srv->core, s->database, op.type, payload, len, recent_claimed,
                               s);
        free(payload);
    }
    if (ret < 0) {
        /* The core is away: the selection works, with no message recent to this session. */
        select_answer(s);
        return;
    }
    s->waiting++;
}
