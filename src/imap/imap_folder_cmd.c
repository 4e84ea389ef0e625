/*
 * Folder commands (imap_int.h): CREATE (with RFC 6154 USE), DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, NAMESPACE, and the QUOTA commands of RFC 9208.
 *
 * Each change is one mail-model record (FOLDER_CREATE, FOLDER_DELETE, FOLDER_RENAME,
 * FOLDER_SUBSCRIBE), and the command is answered when the core says it is durable; what the
 * store refuses (the folder exists, is gone, the new name is too long) comes back in the
 * commit's status and is answered with the matching response code.
 *
 * Choices where the RFCs leave room (docs/imap.md, docs/decisions.md):
 *  - DELETE of a folder with children is refused NO [HASCHILDREN] (RFC 9051 6.3.4): the store
 *    would delete the folder and keep the children, leaving a hierarchy level that exists
 *    nowhere, which LIST with "%" could not show.
 *  - A subscription is an attribute of the folder, so SUBSCRIBE of a name that does not exist
 *    is refused NO [NONEXISTENT] (RFC 3501 6.3.6 allows it), UNSUBSCRIBE of one is OK (RFC 9051
 *    6.3.8: the name is not subscribed), and a deleted folder's subscription goes with it.
 *  - The session's own selected folder follows its RENAME; deleting it, or renaming INBOX
 *    while INBOX is selected (its messages move away), ends the selection with OK [CLOSED].
 *    Other sessions that have the folder selected follow a rename and end with BYE at a
 *    delete (imap__sync), IDLE sessions at once (FOLDER_CHANGED), others at their next
 *    command.
 *  - Quotas: one root, "", per user, with the limits and usage of the user's mailbox
 *    (mail_mailbox_get). Only limited resources are listed. SETQUOTA is refused NO [NOPERM]:
 *    limits are the operator's.
 */
#include "imap/imap_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool
is_inbox(const char *folder)
{
    return strcmp(folder, "INBOX") == 0;
}

/* ---- Commits ---- */

void
imap__reply_commit_failure(struct imap_session *s, const char *tag, int status)
{
    switch (status) {
    case TDM_ENOTFOUND:
        imap__reply(s, tag, "NO", "NONEXISTENT", "No such mailbox");
        return;
    case TDM_EEXIST:
        imap__reply(s, tag, "NO", "ALREADYEXISTS", "Mailbox already exists");
        return;
    case TDM_EQUOTA:
        imap__reply(s, tag, "NO", "OVERQUOTA", "Over quota");
        return;
    case TDM_ELIMIT:
        imap__reply(s, tag, "NO", "LIMIT", "Beyond the server's limits (name length, keywords)");
        return;
    case TDM_ENOSPACE:
        imap__reply(s, tag, "NO", "UNAVAILABLE", "The server is short of disk space");
        return;
    default:
        imap__reply(s, tag, "NO", "UNAVAILABLE", "Cannot save the change now: try again later");
    }
}

/* A folder command waiting for its record to be durable. */
struct folder_commit {
    struct imap_session *s;
    enum imap_cmd cmd;
    char folder[MAIL_NAME_MAX + 1];
    char new_folder[MAIL_NAME_MAX + 1]; /* RENAME */
};

static void folder_answer(struct imap_session *s, const struct folder_commit *fc, int status);

static void
folder_committed(void *ctx, int status, const struct ipc_msg *reply)
{
    struct folder_commit *fc = ctx;
    struct imap_session *s = fc->s;
    /* The link's own failure (the core went away) is not the store's refusal. */
    int st = status < 0 ? -EAGAIN : reply->u.commit_reply.status;
    s->waiting--;
    if (s->conn) {
        s->busy++;
        folder_answer(s, fc, st);
        imap__resume(s);
        s->busy--;
    }
    free(fc);
    imap__release(s);
}

/* Sends op; folder_committed answers the command. Takes fc (freed here on failure, after
 * answering). */
static void
folder_commit(struct imap_session *s, const char *tag, const struct mail_op *op,
              struct folder_commit *fc)
{
    uint8_t *payload;
    size_t len;
    const char *why = "Invalid mailbox name";
    int ret = mail_op_encode(op, &payload, &len, &why);
    if (ret == TDM_EINVAL || ret == TDM_ELIMIT) {
        /* The store's rules on names (empty levels, control characters, length). */
        char text[160];
        snprintf(text, sizeof(text), "Invalid mailbox name (%s)", why);
        imap__reply(s, tag, "NO", "CANNOT", text);
        free(fc);
        return;
    }
    if (ret == 0) {
        ret = core_link_commit(s->srv->core, s->database, op->type, payload, len, folder_committed,
                               fc);
        free(payload);
    }
    if (ret < 0) {
        /* The link refused (the core away, too many in flight): its codes overlap the
         * store's refusals, so it is answered as the passing trouble it is. */
        log_error("imap: %s: cannot commit %s: %s", s->user, imap_cmd_name(fc->cmd),
                  tdm_strerror(ret));
        imap__reply_commit_failure(s, tag, -EAGAIN);
        free(fc);
        return;
    }
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    s->waiting++;
}

static struct folder_commit *
folder_commit_new(struct imap_session *s, enum imap_cmd cmd, const char *folder,
                  const char *new_folder)
{
    struct folder_commit *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return NULL;
    fc->s = s;
    fc->cmd = cmd;
    snprintf(fc->folder, sizeof(fc->folder), "%s", folder);
    if (new_folder)
        snprintf(fc->new_folder, sizeof(fc->new_folder), "%s", new_folder);
    return fc;
}

/* Commits op for command cmd of tag, answering at once when memory is short. */
static void
commit_op(struct imap_session *s, const struct imap_command *cmd, const struct mail_op *op)
{
    struct folder_commit *fc = folder_commit_new(s, cmd->cmd, op->folder, op->new_folder);
    if (!fc) {
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    folder_commit(s, cmd->tag, op, fc);
}

/* ---- The selected folder after DELETE and RENAME ---- */

/* Whether name is folder or one of its inferiors; *rest_r is what follows folder. */
static bool
in_subtree(const char *name, const char *folder, const char **rest_r)
{
    size_t len = strlen(folder);
    if (strncmp(name, folder, len) != 0 || (name[len] && name[len] != MAIL_HIER_SEP))
        return false;
    *rest_r = name + len;
    return true;
}

static void
selection_gone(struct imap_session *s, const char *why)
{
    imap__unselect(s);
    char text[96];
    snprintf(text, sizeof(text), "No mailbox is selected now: %s", why);
    imap__reply(s, NULL, "OK", "CLOSED", text);
}

/* The session's selected folder after its own DELETE or RENAME succeeded. */
static void
follow_own_change(struct imap_session *s, const struct folder_commit *fc)
{
    const char *rest;
    if (!s->view || !in_subtree(s->folder, fc->folder, &rest))
        return;
    if (fc->cmd == IMAP_CMD_DELETE) {
        if (!*rest)
            selection_gone(s, "the mailbox was deleted");
    } else if (is_inbox(fc->folder)) {
        /* RENAME INBOX moves INBOX's messages out and leaves its inferiors alone. */
        if (!*rest)
            selection_gone(s, "INBOX's messages moved to the new name");
    } else {
        /* Same folder, same UIDVALIDITY, new name: the view goes on. */
        size_t nlen = strlen(fc->new_folder), rlen = strlen(rest);
        if (nlen + rlen > MAIL_NAME_MAX) { /* the store refuses such a rename */
            selection_gone(s, "the mailbox was renamed");
            return;
        }
        char moved[MAIL_NAME_MAX + 1];
        memcpy(moved, fc->new_folder, nlen);
        memcpy(moved + nlen, rest, rlen + 1); /* rest points into s->folder */
        if (imap_view_rename(s->view, moved) < 0) {
            selection_gone(s, "out of memory following the rename");
            return;
        }
        memcpy(s->folder, moved, nlen + rlen + 1);
        imap__watch(s); /* the folder's changes come under its new name */
    }
}

static void
folder_answer(struct imap_session *s, const struct folder_commit *fc, int status)
{
    const char *name = imap_cmd_name(fc->cmd);
    if (status == TDM_ENOTFOUND && fc->cmd == IMAP_CMD_UNSUBSCRIBE)
        status = 0; /* RFC 9051 6.3.8: a name that is not there is not subscribed */
    if (status == TDM_EINVAL && fc->cmd == IMAP_CMD_RENAME) {
        imap__reply(s, s->tag, "NO", "CANNOT", "A mailbox cannot move into its own inferior");
        return;
    }
    if (status < 0) {
        imap__reply_commit_failure(s, s->tag, status);
        return;
    }
    follow_own_change(s, fc);
    char text[64];
    snprintf(text, sizeof(text), "%s completed", name);
    imap__reply(s, s->tag, "OK", NULL, text);
}

/* ---- CREATE ---- */

static const struct {
    const char *attr;
    uint32_t bit;
} special_uses[] = {
    {"\\All", MAIL_USE_ALL},         {"\\Archive", MAIL_USE_ARCHIVE}, {"\\Drafts", MAIL_USE_DRAFTS},
    {"\\Flagged", MAIL_USE_FLAGGED}, {"\\Junk", MAIL_USE_JUNK},       {"\\Sent", MAIL_USE_SENT},
    {"\\Trash", MAIL_USE_TRASH},
};

/* USE (...) into enum mail_special_use bits; false for an attribute this server does not know. */
static bool
special_use_bits(const char *const *attrs, size_t n, uint32_t *bits_r)
{
    uint32_t bits = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < sizeof(special_uses) / sizeof(special_uses[0]) &&
               strcasecmp(attrs[i], special_uses[k].attr) != 0)
            k++;
        if (k == sizeof(special_uses) / sizeof(special_uses[0]))
            return false;
        bits |= special_uses[k].bit;
    }
    *bits_r = bits;
    return true;
}

static void
cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
    char folder[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, cmd->tag, cmd->u.create.mailbox, folder))
        return;
    /* A trailing separator declares that names will be created under this one (RFC 3501
     * 6.3.3); the folder itself is what is made. */
    size_t len = strlen(folder);
    if (len > 1 && folder[len - 1] == MAIL_HIER_SEP)
        folder[len - 1] = '\0';
    if (is_inbox(folder)) {
        imap__reply(s, cmd->tag, "NO", "ALREADYEXISTS", "INBOX always exists");
        return;
    }
    uint32_t use = 0;
    if (!special_use_bits(cmd->u.create.use, cmd->u.create.n_use, &use)) {
        imap__reply(s, cmd->tag, "NO", "USEATTR", "Unknown special-use attribute");
        return;
    }
    struct mail_op op = {
        .type = TDM_REC_FOLDER_CREATE, .mailbox = s->user, .folder = folder, .special_use = use};
    commit_op(s, cmd, &op);
}

/* ---- DELETE ---- */

struct children_walk {
    const char *folder;
    bool exists, has_children;
};

static int
look_at_folder(void *ctx, const struct mail_folder_info *f)
{
    struct children_walk *w = ctx;
    size_t len = strlen(w->folder);
    if (f->name_len == len && memcmp(f->name, w->folder, len) == 0)
        w->exists = true;
    else if (f->name_len > len && memcmp(f->name, w->folder, len) == 0 &&
             f->name[len] == MAIL_HIER_SEP)
        w->has_children = true;
    return 0;
}

static void
cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
    char folder[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, cmd->tag, cmd->u.select.mailbox, folder))
        return;
    if (is_inbox(folder)) {
        imap__reply(s, cmd->tag, "NO", "CANNOT", "INBOX cannot be deleted");
        return;
    }
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, cmd->tag, &dbis, &txn))
        return;
    struct children_walk w = {.folder = folder};
    int ret = mail_folder_list(dbis, txn, s->user, look_at_folder, &w);
    mdb_txn_abort(txn);
    if (ret < 0 && ret != TDM_ENOTFOUND) {
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Cannot read the mailbox list");
        return;
    }
    if (!w.exists) {
        imap__reply(s, cmd->tag, "NO", "NONEXISTENT", "No such mailbox");
        return;
    }
    if (w.has_children) {
        imap__reply(s, cmd->tag, "NO", "HASCHILDREN",
                    "The mailbox has inferior mailboxes: delete them first");
        return;
    }
    struct mail_op op = {.type = TDM_REC_FOLDER_DELETE, .mailbox = s->user, .folder = folder};
    commit_op(s, cmd, &op);
}

/* ---- RENAME ---- */

static void
cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
    char from[MAIL_NAME_MAX + 1], to[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, cmd->tag, cmd->u.rename.from, from) ||
        !imap__store_name(s, cmd->tag, cmd->u.rename.to, to))
        return;
    size_t len = strlen(to);
    if (len > 1 && to[len - 1] == MAIL_HIER_SEP)
        to[len - 1] = '\0';
    struct mail_op op = {
        .type = TDM_REC_FOLDER_RENAME, .mailbox = s->user, .folder = from, .new_folder = to};
    commit_op(s, cmd, &op);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ---- */

static void
cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
    char folder[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, cmd->tag, cmd->u.select.mailbox, folder))
        return;
    struct mail_op op = {.type = TDM_REC_FOLDER_SUBSCRIBE,
                         .mailbox = s->user,
                         .folder = folder,
                         .subscribed = cmd->cmd == IMAP_CMD_SUBSCRIBE};
    commit_op(s, cmd, &op);
}

/* ---- NAMESPACE (RFC 2342) ---- */

static void
cmd_namespace(struct imap_session *s, const struct imap_command *cmd)
{
    /* One personal namespace, no prefix; no other users' or shared folders. */
    imap_buf_printf(&s->out, "* NAMESPACE ((\"\" \"%c\")) NIL NIL\r\n", MAIL_HIER_SEP);
    imap__reply(s, cmd->tag, "OK", NULL, "NAMESPACE completed");
}

/* ---- QUOTA (RFC 9208) ---- */

#define QUOTA_ROOT "" /* the one root: the user's whole mailbox */

/* "* QUOTA "" (STORAGE used limit MESSAGE used limit)", the limited resources only. STORAGE
 * counts KiB, usage rounded up so a mailbox at its limit never shows below it. */
static void
write_quota(struct imap_buf *b, const struct mail_mailbox_info *mb)
{
    imap_buf_puts(b, "* QUOTA \"" QUOTA_ROOT "\" (");
    const char *sep = "";
    if (mb->quota_bytes) {
        imap_buf_printf(b, "STORAGE %llu %llu",
                        (unsigned long long)((mb->used_bytes + 1023) / 1024),
                        (unsigned long long)(mb->quota_bytes / 1024));
        sep = " ";
    }
    if (mb->quota_messages)
        imap_buf_printf(b, "%sMESSAGE %llu %llu", sep, (unsigned long long)mb->used_messages,
                        (unsigned long long)mb->quota_messages);
    imap_buf_puts(b, ")\r\n");
}

/* The user's mailbox record and, when folder is not NULL, whether that folder exists
 * (TDM_ENOTFOUND). Returns 0 or answers tag and returns a negative code. */
static int
read_quota(struct imap_session *s, const char *tag, const char *folder,
           struct mail_mailbox_info *mb_r)
{
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn))
        return -EAGAIN;
    int ret = mail_mailbox_get(dbis, txn, s->user, mb_r);
    struct mail_folder_info f;
    if (ret == 0 && folder)
        ret = mail_folder_get(dbis, txn, s->user, folder, &f);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND)
        imap__reply(s, tag, "NO", "NONEXISTENT", "No such mailbox");
    else if (ret < 0)
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
    return ret;
}

static void
cmd_getquotaroot(struct imap_session *s, const struct imap_command *cmd)
{
    char folder[MAIL_NAME_MAX + 1];
    if (!imap__store_name(s, cmd->tag, cmd->u.select.mailbox, folder))
        return;
    struct mail_mailbox_info mb;
    if (read_quota(s, cmd->tag, folder, &mb) < 0)
        return;
    imap_buf_puts(&s->out, "* QUOTAROOT ");
    imap_write_mailbox(&s->out, folder, strlen(folder), imap__mode(s));
    imap_buf_puts(&s->out, " \"" QUOTA_ROOT "\"\r\n");
    write_quota(&s->out, &mb);
    imap__reply(s, cmd->tag, "OK", NULL, "GETQUOTAROOT completed");
}

static void
cmd_getquota(struct imap_session *s, const struct imap_command *cmd)
{
    if (strcmp(cmd->u.quota.root, QUOTA_ROOT) != 0) {
        imap__reply(s, cmd->tag, "NO", "NONEXISTENT", "No such quota root (the one root is \"\")");
        return;
    }
    struct mail_mailbox_info mb;
    if (read_quota(s, cmd->tag, NULL, &mb) < 0)
        return;
    write_quota(&s->out, &mb);
    imap__reply(s, cmd->tag, "OK", NULL, "GETQUOTA completed");
}

/* ---- Dispatch ---- */

void
imap__cmd_folder(struct imap_session *s, const struct imap_command *cmd)
{
    switch (cmd->cmd) {
    case IMAP_CMD_CREATE:
        cmd_create(s, cmd);
        return;
    case IMAP_CMD_DELETE:
        cmd_delete(s, cmd);
        return;
    case IMAP_CMD_RENAME:
        cmd_rename(s, cmd);
        return;
    case IMAP_CMD_SUBSCRIBE:
    case IMAP_CMD_UNSUBSCRIBE:
        cmd_subscribe(s, cmd);
        return;
    case IMAP_CMD_NAMESPACE:
        cmd_namespace(s, cmd);
        return;
    case IMAP_CMD_GETQUOTA:
        cmd_getquota(s, cmd);
        return;
    case IMAP_CMD_GETQUOTAROOT:
        cmd_getquotaroot(s, cmd);
        return;
    case IMAP_CMD_SETQUOTA:
        imap__reply(s, cmd->tag, "NO", "NOPERM", "Quotas are set by the server's operator");
        return;
    default:
        imap__not_served(s, cmd);
    }
}
