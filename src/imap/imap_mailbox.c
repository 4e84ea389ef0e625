/*
 * Mailbox commands (imap_int.h): STATUS, SELECT and EXAMINE, and the mailbox names all
 * mailbox commands share. Folder names are the store's (UTF-8, '/' as the hierarchy
 * separator, INBOX spelt so); on the wire they are modified UTF-7 until the client enables
 * IMAP4rev2 or UTF8=ACCEPT, UTF-8 after (imap__mode).
 *
 * \Recent (RFC 3501 2.3.2): SELECT claims the folder's unclaimed UIDs with a FOLDER_RECENT
 * record (mail.h), so exactly one session sees each message as recent; EXAMINE claims
 * nothing and counts the unclaimed ones. IMAP4rev2 has no \Recent (RFC 9051 appendix E): a
 * session that enabled it claims nothing, so rev1 sessions keep theirs.
 *
 * CONDSTORE and QRESYNC (RFC 7162): every folder has MODSEQs, so HIGHESTMODSEQ is always
 * told and NOMODSEQ never. SELECT (QRESYNC (...)) is answered from the folder's MODSEQ index
 * (mail_folder_changes), whose tombstones last as long as the folder: what was expunged since
 * the client's MODSEQ is known exactly, so the optional sequence match data, a hint for
 * servers that forget expunges, is accepted and not needed.
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

int
imap__wire_to_utf8(const struct imap_session *s, const char *wire, struct imap_buf *out)
{
    size_t len = strlen(wire);
    if (imap__mode(s) == IMAP_WRITE_REV1)
        return imap_mutf7_decode(wire, len, out);
    /* Already UTF-8: the encoder is the strict validator (no overlongs, surrogates, NUL). */
    struct imap_buf check = IMAP_BUF_INIT;
    int ret = imap_mutf7_encode(wire, len, &check);
    imap_buf_free(&check);
    if (ret == 0)
        imap_buf_append(out, wire, len);
    return ret < 0 ? ret : imap_buf_error(out);
}

bool
imap__store_name(struct imap_session *s, const char *tag, const char *wire,
                 char out[MAIL_NAME_MAX + 1])
{
    struct imap_buf utf8 = IMAP_BUF_INIT;
    bool ok = imap__wire_to_utf8(s, wire, &utf8) == 0 && utf8.data && utf8.len <= MAIL_NAME_MAX;
    if (ok) {
        snprintf(out, MAIL_NAME_MAX + 1, "%s", utf8.data);
        /* INBOX is case-insensitive (RFC 3501 5.1), also as a parent, and the store spells
         * it one way only. */
        if (strncasecmp(out, "INBOX", 5) == 0 && (out[5] == '\0' || out[5] == MAIL_HIER_SEP))
            memcpy(out, "INBOX", 5);
    } else {
        imap__reply(s, tag, "NO", "CANNOT", "Invalid mailbox name");
    }
    imap_buf_free(&utf8);
    return ok;
}

bool
imap__begin_read(struct imap_session *s, const char *tag, const struct mail_dbis **dbis_r,
                 MDB_txn **txn_r)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    if (!r || store_reader_begin(r, txn_r) < 0) {
        imap__reply(s, tag, "NO", "UNAVAILABLE",
                    "Your mailbox is not available on this server now");
        return false;
    }
    *dbis_r = store_reader_mail_dbis(r);
    return true;
}

/* ---- STATUS ---- */

struct count_walk {
    uint32_t unseen, recent_from, recent, deleted;
    uint64_t size, deleted_size;
};

static int
count_message(void *ctx, const struct mail_message_info *m)
{
    struct count_walk *c = ctx;
    if (!(m->flags & MAIL_FLAG_SEEN))
        c->unseen++;
    if (m->flags & MAIL_FLAG_DELETED) {
        c->deleted++;
        c->deleted_size += m->size;
    }
    if (m->uid >= c->recent_from)
        c->recent++;
    c->size += m->size;
    return 0;
}

/* The items that need every message read rather than the folder record alone. */
#define STATUS_COUNTED                                                                             \
    (IMAP_STATUS_RECENT | IMAP_STATUS_UNSEEN | IMAP_STATUS_DELETED | IMAP_STATUS_SIZE |            \
     IMAP_STATUS_DELETED_STORAGE)

int
imap__status_values(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn,
                    const char *folder, unsigned items, struct imap_status_values *v)
{
    struct mail_folder_info f;
    int ret = mail_folder_get(dbis, txn, s->user, folder, &f);
    if (ret != 0)
        return ret;
    struct count_walk c = {.recent_from = f.first_recent_uid};
    if ((items & STATUS_COUNTED) &&
        (ret = mail_message_list(dbis, txn, s->user, folder, count_message, &c)) != 0)
        return ret;
    if (items & IMAP_STATUS_HIGHESTMODSEQ)
        s->enabled |= IMAP_ENABLED_CONDSTORE; /* a CONDSTORE enabling command (RFC 7162 3.1) */
    *v = (struct imap_status_values){
        .items = items,
        .messages = f.messages,
        .recent = c.recent,
        .uidnext = f.uidnext,
        .uidvalidity = f.uidvalidity,
        .unseen = c.unseen,
        .deleted = c.deleted,
        .size = c.size,
        .highestmodseq = f.highestmodseq,
        /* What one APPEND may carry: the capability's APPENDLIMIT (imap_append.c). */
        .appendlimit = IMAP_APPEND_LIMIT,
        /* RFC 9208 7: in the STORAGE resource's unit, 1024 octets; a part counts whole, so
         * a folder with anything deleted never says 0. */
        .deleted_storage = (c.deleted_size + 1023) / 1024,
    };
    return 0;
}

bool
imap__status_items_ok(struct imap_session *s, const char *tag, unsigned items)
{
    /* RFC 9051 appendix E: RECENT is gone from IMAP4rev2's status-att; a rev2 session has no
     * \Recent messages of its own to count either. */
    if ((items & IMAP_STATUS_RECENT) && (s->enabled & IMAP_ENABLED_REV2)) {
        imap__reply(s, tag, "BAD", NULL, "STATUS RECENT is not part of IMAP4rev2");
        return false;
    }
    return true;
}

void
imap__cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    char folder[MAIL_NAME_MAX + 1];
    if (!imap__status_items_ok(s, tag, cmd->u.status.items) ||
        !imap__store_name(s, tag, cmd->u.status.mailbox, folder))
        return;
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn))
        return;
    struct imap_status_values v;
    int ret = imap__status_values(s, dbis, txn, folder, cmd->u.status.items, &v);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND) {
        imap__reply(s, tag, "NO", "NONEXISTENT", "No such mailbox");
        return;
    }
    if (ret < 0) {
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
        return;
    }
    imap_write_status(&s->out, folder, &v, imap__mode(s));
    imap__reply(s, tag, "OK", NULL, "STATUS completed");
}

/* ---- SELECT / EXAMINE ---- */

/* What a SELECT (QRESYNC (...)) client already knows, kept until the answer goes out (the
 * \Recent claim may come first). One allocation: the known UIDs' ranges follow. */
struct imap_resync {
    uint64_t modseq;
    struct imap_seqset known; /* n == 0: every UID */
    struct imap_seq_range ranges[];
};

static struct imap_resync *
resync_new(const struct imap_command *cmd)
{
    const struct imap_seqset *known = &cmd->u.select.known_uids;
    struct imap_resync *r = malloc(sizeof(*r) + known->n * sizeof(r->ranges[0]));
    if (!r)
        log_fatal("out of memory");
    r->modseq = cmd->u.select.modseq;
    r->known = (struct imap_seqset){.n = known->n, .r = r->ranges};
    if (known->n)
        memcpy(r->ranges, known->r, known->n * sizeof(r->ranges[0]));
    return r;
}

/* What changed since the client's MODSEQ, up to the view's (later changes are the next
 * sync's), limited to the UIDs the client named. */
struct resync_walk {
    const struct imap_session *s;
    const struct imap_resync *resync;
    uint64_t up_to;
    uint32_t star; /* "*" in the known UIDs: the largest UID in use */
    uint32_t *vanished;
    size_t n_vanished, cap_vanished;
    uint32_t *changed; /* UIDs the view holds */
    size_t n_changed, cap_changed;
};

static void
push_uid(uint32_t **a, size_t *n, size_t *cap, uint32_t uid)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *a = realloc(*a, *cap * sizeof(**a));
        if (!*a)
            log_fatal("out of memory");
    }
    (*a)[(*n)++] = uid;
}

static int
resync_change(void *ctx, const struct mail_change *ch)
{
    struct resync_walk *w = ctx;
    if (ch->modseq > w->up_to)
        return 1; /* MODSEQ order: the rest are later still */
    if (w->resync->known.n && !imap__set_contains(&w->resync->known, ch->uid, w->star))
        return 0;
    if (ch->expunged)
        push_uid(&w->vanished, &w->n_vanished, &w->cap_vanished, ch->uid);
    else if (imap_view_msn(w->s->view, ch->uid))
        push_uid(&w->changed, &w->n_changed, &w->cap_changed, ch->uid);
    return 0;
}

static int
uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* RFC 7162 3.2.5.1: "* VANISHED (EARLIER)" for what went, then FETCH (UID FLAGS MODSEQ) for
 * what changed, after the usual SELECT responses. */
static int
resync_answer(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn)
{
    struct resync_walk w = {.s = s,
                            .resync = s->resync,
                            .up_to = imap_view_highestmodseq(s->view),
                            .star = imap_view_uidnext(s->view) - 1};
    int ret =
        mail_folder_changes(dbis, txn, s->user, s->folder, s->resync->modseq, resync_change, &w);
    if (ret >= 0) {
        ret = 0;
        if (w.n_vanished > 1) /* MODSEQ order; ascending compresses */
            qsort(w.vanished, w.n_vanished, sizeof(*w.vanished), uid_cmp);
        imap_write_vanished(&s->out, true, w.vanished, w.n_vanished);
        for (size_t i = 0; i < w.n_changed && ret == 0; i++) {
            struct mail_message_info m;
            ret = mail_message_get(dbis, txn, s->user, s->folder, w.changed[i], &m);
            if (ret == 0)
                imap__write_flag_update(s, imap_view_msn(s->view, m.uid), &m);
            else if (ret == TDM_ENOTFOUND)
                ret = 0; /* expunged since the view's snapshot: the next sync says so */
        }
    }
    free(w.vanished);
    free(w.changed);
    return ret;
}

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

/* Stops (1) at the first folder below prefix (prefix + MAIL_HIER_SEP + more). */
struct child_walk {
    const char *prefix;
    size_t len;
};

static int
find_child(void *ctx, const struct mail_folder_info *f)
{
    const struct child_walk *w = ctx;
    return f->name_len > w->len + 1 && memcmp(f->name, w->prefix, w->len) == 0 &&
           f->name[w->len] == MAIL_HIER_SEP;
}

/* RFC 9051 6.3.2: an IMAP4rev2 SELECT answers "* LIST" with the mailbox's name as the server
 * spells it (INBOX for "inbox") and accurate attributes: its special use, and \HasChildren or
 * \HasNoChildren as LIST gives them (imap_list.c), so a client need not LIST to know. A child
 * below a hierarchy gap counts too, as in LIST. One walk over the user's folders: small beside
 * SELECT's walk over the messages. */
static int
select_list(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn)
{
    struct mail_folder_info f;
    int ret = mail_folder_get(dbis, txn, s->user, s->folder, &f);
    if (ret < 0)
        return ret;
    struct child_walk w = {s->folder, strlen(s->folder)};
    int children = mail_folder_list(dbis, txn, s->user, find_child, &w);
    if (children < 0)
        return children;
    const char *attrs[8];
    size_t n = 0;
    attrs[n++] = children ? "\\HasChildren" : "\\HasNoChildren";
    n += imap__special_use_attrs(f.special_use, attrs + n);
    imap_write_list(&s->out, false, attrs, n, MAIL_HIER_SEP, s->folder, false, NULL, imap__mode(s));
    return 0;
}

/* The untagged responses of SELECT / EXAMINE, in RFC 9051 6.3.2's order. */
static int
select_untagged(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn)
{
    struct select_walk w = {.view = s->view, .recent_lo = s->recent_lo, .recent_hi = s->recent_hi};
    int ret = mail_message_list(dbis, txn, s->user, s->folder, select_message, &w);
    if (ret < 0)
        return ret;
    bool rev2 = s->enabled & IMAP_ENABLED_REV2;
    static const char flags[] = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
    imap_buf_printf(&s->out, "* FLAGS (%s)\r\n", flags);
    imap_buf_printf(&s->out, "* %u EXISTS\r\n", imap_view_count(s->view));
    /* RFC 9051 appendix E: RECENT and the UNSEEN code are gone from IMAP4rev2. */
    if (!rev2)
        imap_buf_printf(&s->out, "* %u RECENT\r\n", w.recent);
    if (!rev2 && w.first_unseen)
        imap_buf_printf(&s->out, "* OK [UNSEEN %u] First unseen\r\n", w.first_unseen);
    imap_buf_printf(&s->out, "* OK [PERMANENTFLAGS (%s%s)] Flags\r\n", s->read_only ? "" : flags,
                    s->read_only ? "" : " \\*");
    imap_buf_printf(&s->out, "* OK [UIDVALIDITY %u] UIDs valid\r\n",
                    imap_view_uidvalidity(s->view));
    imap_buf_printf(&s->out, "* OK [UIDNEXT %u] Predicted next UID\r\n",
                    imap_view_uidnext(s->view));
    imap_buf_printf(&s->out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                    (unsigned long long)imap_view_highestmodseq(s->view));
    if (rev2 && (ret = select_list(s, dbis, txn)) < 0)
        return ret;
    return s->resync ? resync_answer(s, dbis, txn) : 0;
}

/* The answer of SELECT / EXAMINE, untagged responses and tagged OK; the session's resync
 * data is used up either way. */
static void
select_answer(struct imap_session *s)
{
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, s->tag, &dbis, &txn)) {
        imap__unselect(s);
    } else {
        int ret = select_untagged(s, dbis, txn);
        mdb_txn_abort(txn);
        if (ret < 0) {
            imap__unselect(s);
            imap__reply(s, s->tag, "NO", "SERVERBUG", "Cannot read the mailbox");
        } else {
            s->state = IMAP_STATE_SELECTED;
            imap__watch(s); /* IDLE pushes its changes */
            imap__reply(s, s->tag, "OK", s->read_only ? "READ-ONLY" : "READ-WRITE",
                        s->read_only ? "EXAMINE completed" : "SELECT completed");
        }
    }
    free(s->resync);
    s->resync = NULL;
}

static void
recent_claimed(void *ctx, int status, const struct ipc_msg *reply)
{
    struct imap_session *s = ctx;
    s->waiting--;
    if (!s->conn) { /* the client left meanwhile */
        free(s->resync);
        s->resync = NULL;
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

/* Claims this session's \Recent messages; returns false when the core cannot be asked (the
 * selection then goes on with none). */
static bool
claim_recent(struct imap_session *s)
{
    struct mail_op op = {.type = TDM_REC_FOLDER_RECENT,
                         .mailbox = s->user,
                         .folder = s->folder,
                         .uid_limit = imap_view_uidnext(s->view)};
    uint8_t *payload;
    size_t len;
    const char *why = NULL;
    int ret = mail_op_encode(&op, &payload, &len, &why);
    if (ret == 0) {
        ret = core_link_commit(s->srv->core, s->database, op.type, payload, len, recent_claimed, s);
        free(payload);
    }
    if (ret < 0)
        return false;
    s->waiting++;
    return true;
}

/* Opens the view of s->folder; false after answering. *f_r: the folder as the view saw it. */
static bool
open_view(struct imap_session *s, const char *tag, struct mail_folder_info *f_r)
{
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn))
        return false;
    int ret = imap_view_open(dbis, txn, s->user, s->folder, &s->view);
    if (ret == 0)
        ret = mail_folder_get(dbis, txn, s->user, s->folder, f_r);
    mdb_txn_abort(txn);
    if (ret == 0)
        return true;
    if (ret == TDM_ENOTFOUND)
        imap__reply(s, tag, "NO", "NONEXISTENT", "No such mailbox");
    else
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox");
    return false;
}

void
imap__cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    if (cmd->u.select.qresync && !(s->enabled & IMAP_ENABLED_QRESYNC)) {
        imap__reply(s, tag, "BAD", NULL, "QRESYNC needs ENABLE QRESYNC first");
        return;
    }
    /* A SELECT of anything leaves the current selection first, even when it fails (RFC 3501
     * 6.3.1); clients that resynchronise are told where one mailbox's responses end (RFC
     * 7162 3.2.11, RFC 9051 7.1). */
    bool was_selected = s->state == IMAP_STATE_SELECTED;
    imap__unselect(s);
    if (was_selected && (s->enabled & (IMAP_ENABLED_QRESYNC | IMAP_ENABLED_REV2)))
        imap_buf_puts(&s->out, "* OK [CLOSED] Previous mailbox closed\r\n");
    if (cmd->u.select.condstore)
        s->enabled |= IMAP_ENABLED_CONDSTORE;
    struct mail_folder_info f;
    if (!imap__store_name(s, tag, cmd->u.select.mailbox, s->folder) || !open_view(s, tag, &f)) {
        imap__unselect(s);
        return;
    }
    s->read_only = cmd->cmd == IMAP_CMD_EXAMINE;
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    /* A client whose UIDVALIDITY is out of date gets the plain answer: it must start over. */
    if (cmd->u.select.qresync && cmd->u.select.uidvalidity == imap_view_uidvalidity(s->view))
        s->resync = resync_new(cmd);
    if (s->enabled & IMAP_ENABLED_REV2) {
        select_answer(s);
        return;
    }
    if (s->read_only) {
        /* EXAMINE claims nothing: the unclaimed UIDs show as recent. */
        s->recent_lo = f.first_recent_uid;
        s->recent_hi = imap_view_uidnext(s->view);
        select_answer(s);
        s->recent_lo = s->recent_hi = 0;
        return;
    }
    if (!claim_recent(s))
        select_answer(s); /* the core is away: no message is recent to this session */
}
