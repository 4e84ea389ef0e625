/*
 * One IMAP connection (imap_int.h): bytes from lib/conn go to the sans-IO parser; each command
 * it returns is answered by the state's handler. A command that must wait (a login being
 * checked, a commit) sets s->waiting: the connection reads nothing more until it is answered,
 * and then the pump resumes with whatever the client pipelined meanwhile.
 *
 * What is served, and how, is in docs/imap.md: here the session's own commands (CAPABILITY,
 * NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE PLAIN and LOGIN with SASL-IR), the other
 * families in their files (imap_int.h). A command no file serves is answered NO [CANNOT],
 * saying so.
 *
 * Plaintext passwords are accepted over TLS, and over plain connections from loopback only
 * (where nothing else can listen); elsewhere LOGIN is refused with PRIVACYREQUIRED and the
 * capability list says LOGINDISABLED.
 *
 * Lifetime: a session whose client leaves while a step is in flight lingers, without its
 * conn, until the step reports (s->waiting), like LMTP's connections.
 */
#include "imap/imap_int.h"

#include "lib/conn.h"
#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/mail_defaults.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <event2/buffer.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMAP_IDLE_TIMEOUT_MS (30u * 60u * 1000u) /* RFC 9051: at least 30 minutes */
#define IMAP_OUT_KEEP 4096u /* bytes of output buffer a session keeps between answers */

static void pump(struct imap_session *s, struct evbuffer *in);

/* ---- Output ---- */

enum imap_write_mode
imap__mode(const struct imap_session *s)
{
    /* Both make every string on the wire UTF-8, mailbox names included (RFC 9051 5.1,
     * RFC 6855 3). */
    return s->enabled & (IMAP_ENABLED_REV2 | IMAP_ENABLED_UTF8) ? IMAP_WRITE_UTF8
                                                                : IMAP_WRITE_REV1;
}

void
imap__flush(struct imap_session *s)
{
    if (imap_buf_error(&s->out) < 0) {
        log_error("imap: out of memory writing a response");
        imap_buf_clear(&s->out);
        if (s->conn)
            conn_close_after_flush(s->conn);
        return;
    }
    if (s->out.len && s->conn)
        conn_write(s->conn, s->out.data, s->out.len);
    /* A big answer (a FETCH of a large message) leaves a big buffer behind; a session that
     * then idles for hours should not keep it. */
    if (s->out.cap > IMAP_OUT_KEEP)
        imap_buf_free(&s->out);
    else
        imap_buf_clear(&s->out);
}

void
imap__reply(struct imap_session *s, const char *tag, const char *status, const char *code,
            const char *text)
{
    imap_write_status_response(&s->out, tag, status, code, text);
}

void
imap__not_served(struct imap_session *s, const struct imap_command *cmd)
{
    char text[128];
    snprintf(text, sizeof(text), "%s is not served yet", imap_cmd_name(cmd->cmd));
    imap__reply(s, cmd->tag, "NO", "CANNOT", text);
}

static bool
plaintext_ok(const struct imap_session *s)
{
    if (!s->conn || conn_is_tls(s->conn))
        return true;
    const char *a = conn_peer_address(s->conn);
    return strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0;
}

/* What every state offers; each extension is listed here when it is served in full.
 * IMAP4rev2 (RFC 9051) is served beside IMAP4rev1, for clients that ENABLE it (imap_enable.c;
 * docs/imap.md has its checklist). LITERAL+ is a superset of the LITERAL- that IMAP4rev2
 * includes, so LITERAL- is not also named (docs/decisions.md). */
static const char *const served_capabilities[] = {
    "IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "UNSELECT", "IDLE",
    /* imap_search_cmd.c */
    "ESEARCH", "SEARCHRES",
    /* imap_append.c, imap_folder_cmd.c */
    "MULTIAPPEND", "NAMESPACE", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
    "SPECIAL-USE", "CREATE-SPECIAL-USE",
    /* imap_enable.c, imap_mailbox.c, imap_list.c */
    "ENABLE", "LIST-EXTENDED", "LIST-STATUS", "CHILDREN", "STATUS=SIZE",
    /* those, imap_fetch_cmd.c, imap_store_cmd.c, imap_search_cmd.c, imap_updates.c */
    "CONDSTORE", "QRESYNC",
    /* imap_mailbox.c, imap_list.c (names), imap_search_cmd.c, the parser's APPEND UTF8 */
    "UTF8=ACCEPT",
    /* imap_fetch_cmd.c (BINARY[], BINARY.SIZE) with imap_append.c's literal8 */
    "BINARY",
    /* imap_store_cmd.c, imap_copy_cmd.c (UIDPLUS with imap_append.c's APPENDUID) */
    "UIDPLUS", "MOVE",
    /* imap_referral.c */
    "LOGIN-REFERRALS",
};

static void
capabilities(struct imap_session *s, struct imap_buf *b)
{
    for (size_t i = 0; i < sizeof(served_capabilities) / sizeof(served_capabilities[0]); i++)
        imap_buf_printf(b, "%s%s", i ? " " : "", served_capabilities[i]);
    imap_buf_printf(b, " APPENDLIMIT=%u", IMAP_APPEND_LIMIT); /* RFC 7889, the parser's limit */
    if (s->state == IMAP_STATE_NOT_AUTH) {
        if (!conn_is_tls(s->conn))
            imap_buf_puts(b, " STARTTLS");
        imap_buf_puts(b, plaintext_ok(s) ? " AUTH=PLAIN AUTH=LOGIN" : " LOGINDISABLED");
    }
}

static void
reply_with_caps(struct imap_session *s, const char *tag, const char *text)
{
    struct imap_buf code = IMAP_BUF_INIT;
    imap_buf_puts(&code, "CAPABILITY ");
    capabilities(s, &code);
    imap__reply(s, tag, "OK", code.data, text);
    imap_buf_free(&code);
}

/* ---- Selected state ---- */

void
imap__unselect(struct imap_session *s)
{
    imap__unwatch(s);
    imap_view_free(&s->view);
    imap__forget_saved(s);
    s->folder[0] = '\0';
    s->recent_lo = s->recent_hi = 0;
    if (s->state == IMAP_STATE_SELECTED)
        s->state = IMAP_STATE_AUTH;
}

/* ---- Login ---- */

static void provision_done(void *ctx, int status, const struct ipc_msg *reply);

static void
login_answer(struct imap_session *s, int status)
{
    if (status == 0) {
        s->state = IMAP_STATE_AUTH;
        imap__login_succeeded(s);
        reply_with_caps(s, s->tag, "Logged in");
        log_info("imap: %s: %s logged in", conn_peer(s->conn), s->user);
        return;
    }
    if (status == -EACCES)
        imap__login_failed(s, s->user); /* answered later */
    s->user[0] = s->database[0] = '\0';
    if (status == -EACCES)
        return;
    if (status == -EHOSTUNREACH)
        imap__reply(s, s->tag, "NO", "UNAVAILABLE",
                    "The directory cannot be reached just now: try again later");
    else if (status == -ENOENT)
        imap__reply(s, s->tag, "NO", "UNAVAILABLE",
                    "Your mailbox is not available on this server now: try again later");
    else
        imap__reply(s, s->tag, "NO", "UNAVAILABLE", "Temporary failure: try again later");
}

/* A mailbox that does not exist yet is made at the first login (mail_defaults.h); the login
 * is answered when the core has applied it all. */
static int
provision(struct imap_session *s)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    if (!r)
        return -ENOENT;
    MDB_txn *txn;
    int ret = store_reader_begin(r, &txn);
    if (ret < 0)
        return ret;
    struct mail_mailbox_info info;
    ret = mail_mailbox_get(store_reader_mail_dbis(r), txn, s->user, &info);
    mdb_txn_abort(txn);
    if (ret != TDM_ENOTFOUND)
        return ret; /* 0: there already */
    struct mail_op ops[MAIL_DEFAULT_OPS];
    mail_default_ops(s->user, (uint32_t)time(NULL), ops);
    for (size_t i = 0; i < MAIL_DEFAULT_OPS; i++) {
        uint8_t *payload;
        size_t len;
        const char *why = NULL;
        if ((ret = mail_op_encode(&ops[i], &payload, &len, &why)) < 0)
            return ret;
        ret = core_link_commit(s->srv->core, s->database, ops[i].type, payload, len,
                               provision_done, s);
        free(payload);
        if (ret < 0)
            return ret; /* those sent report anyway, each taking its waiting count */
        s->waiting++;
    }
    return 1;
}

static void
provision_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct imap_session *s = ctx;
    int st = status < 0 ? status : reply->u.commit_reply.status;
    if (st < 0 && st != TDM_EEXIST)
        log_error("imap: creating the mailbox of %s failed: %s", s->user, tdm_strerror(st));
    if (--s->waiting == 0 && s->conn) {
        s->busy++;
        login_answer(s, st < 0 && st != TDM_EEXIST ? -EAGAIN : 0);
        imap__resume(s);
        s->busy--;
    }
    imap__release(s);
}

static void
login_cb(struct imap_session *s, int status, const char *database, const struct dir_route *route)
{
    s->waiting--;
    if (!s->conn) {
        imap__release(s);
        return;
    }
    s->busy++;
    if (status == 0 && !imap__served_here(s, database)) {
        imap__refer(s, database, route); /* the right password, the mailbox elsewhere */
    } else {
        if (status == 0) {
            snprintf(s->database, sizeof(s->database), "%s", database);
            int ret = provision(s);
            if (ret == 1) { /* the last commit's reply answers the login */
                s->busy--;
                return;
            }
            status = ret;
        }
        login_answer(s, status);
    }
    imap__resume(s);
    s->busy--;
    imap__release(s);
}

static void
start_login(struct imap_session *s, const char *tag, const char *user, const char *password)
{
    if (!plaintext_ok(s)) {
        imap__reply(s, tag, "NO", "PRIVACYREQUIRED", "Use STARTTLS first");
        return;
    }
    if (tag != s->tag) /* AUTHENTICATE's response line comes with the tag already saved */
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
    if (!user[0] || strlen(user) > DIR_NAME_MAX) {
        imap__login_failed(s, user);
        return;
    }
    snprintf(s->user, sizeof(s->user), "%s", user);
    s->waiting++;
    imap__login(s, user, password, login_cb);
}

/* Decodes an AUTHENTICATE response of len bytes (RFC 9051 6.2.2) into raw (cap bytes, NUL
 * appended). False when it was answered: "*" cancels (BAD, as RFC 9051 requires), bad base64
 * is BAD naming the mechanism. Hazard: raw holds a password; after true the caller wipes it. */
static bool
sasl_decode(struct imap_session *s, const char *tag, const char *mech, const uint8_t *b64,
            size_t len, uint8_t *raw, size_t cap, size_t *n_r)
{
    if (len == 1 && b64[0] == '*') {
        imap__reply(s, tag, "BAD", NULL, "Authentication cancelled");
        return false;
    }
    *n_r = 0;
    if (len > 4 * (cap - 1) / 3 ||
        sodium_base642bin(raw, cap - 1, (const char *)b64, len, NULL, n_r, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        sodium_memzero(raw, cap); /* what was decoded before the bad byte */
        char text[64];
        snprintf(text, sizeof(text), "Invalid base64 in the %s response", mech);
        imap__reply(s, tag, "BAD", NULL, text);
        return false;
    }
    raw[*n_r] = '\0';
    return true;
}

/* AUTHENTICATE PLAIN's response: base64 of authzid NUL authcid NUL password (RFC 4616). */
static void
plain_response(struct imap_session *s, const char *tag, const uint8_t *b64, size_t len)
{
    uint8_t raw[2048];
    size_t n;
    if (!sasl_decode(s, tag, "PLAIN", b64, len, raw, sizeof(raw), &n))
        return;
    const uint8_t *nul1 = memchr(raw, 0, n);
    const uint8_t *nul2 = nul1 ? memchr(nul1 + 1, 0, n - (size_t)(nul1 + 1 - raw)) : NULL;
    if (!nul2) {
        sodium_memzero(raw, sizeof(raw));
        imap__reply(s, tag, "BAD", NULL, "The PLAIN response needs authzid, user and password");
        return;
    }
    const char *authzid = (const char *)raw, *user = (const char *)nul1 + 1;
    if (authzid[0] && strcmp(authzid, user) != 0)
        imap__reply(s, tag, "NO", "AUTHORIZATIONFAILED", "Acting as another user is not allowed");
    else
        start_login(s, tag, user, (const char *)nul2 + 1);
    sodium_memzero(raw, sizeof(raw));
}

/*
 * SASL LOGIN (draft-murchison-sasl-login, what Outlook and some phones use): the server asks
 * "Username:" then "Password:" (base64 in the continuations), the client answers each with
 * base64; with SASL-IR the initial response is the user name. The password step is the same
 * LOGIN as the others (start_login: delays, referrals). A user name that cannot be one (too
 * long, a NUL in it) is not refused before the password step, so the answer says no more
 * than a wrong password would.
 */
static void
ask_line(struct imap_session *s, enum imap_line_for what, const char *continuation)
{
    imap_buf_puts(&s->out, continuation);
    s->line_for = what;
    imap_parser_expect_line(s->parser);
}

static void
login_user_response(struct imap_session *s, const uint8_t *b64, size_t len)
{
    uint8_t raw[DIR_NAME_MAX + 2]; /* one more than a name can be: longer ones are refused */
    size_t n;
    if (!sasl_decode(s, s->tag, "LOGIN", b64, len, raw, sizeof(raw), &n))
        return;
    bool usable = n <= DIR_NAME_MAX && !memchr(raw, 0, n);
    size_t keep = usable ? n : 0;
    memcpy(s->sasl_user, raw, keep);
    s->sasl_user[keep] = '\0';
    ask_line(s, IMAP_LINE_LOGIN_PASS, "+ UGFzc3dvcmQ6\r\n"); /* "Password:" */
}

static void
login_password_response(struct imap_session *s, const uint8_t *b64, size_t len)
{
    uint8_t raw[1024];
    size_t n;
    if (sasl_decode(s, s->tag, "LOGIN", b64, len, raw, sizeof(raw), &n)) {
        if (memchr(raw, 0, n)) /* a NUL would cut the password short: never the right one */
            imap__login_failed(s, s->sasl_user);
        else
            start_login(s, s->tag, s->sasl_user, (const char *)raw);
    }
    sodium_memzero(raw, sizeof(raw));
    s->sasl_user[0] = '\0';
}

static void
cmd_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag, *mech = cmd->u.authenticate.mechanism;
    bool login = strcmp(mech, "LOGIN") == 0;
    if (!login && strcmp(mech, "PLAIN") != 0) {
        imap__reply(s, tag, "NO", "CANNOT", "Only AUTHENTICATE PLAIN and LOGIN are offered");
        return;
    }
    if (!plaintext_ok(s)) {
        imap__reply(s, tag, "NO", "PRIVACYREQUIRED", "Use STARTTLS first");
        return;
    }
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    const char *ir = cmd->u.authenticate.initial;
    if (login && ir)
        login_user_response(s, (const uint8_t *)ir, strlen(ir));
    else if (login)
        ask_line(s, IMAP_LINE_LOGIN_USER, "+ VXNlcm5hbWU6\r\n"); /* "Username:" */
    else if (ir)
        plain_response(s, s->tag, (const uint8_t *)ir, strlen(ir));
    else
        ask_line(s, IMAP_LINE_AUTHENTICATE, "+ \r\n");
}

/* ---- Dispatch ---- */

static bool
allowed(const struct imap_session *s, enum imap_cmd cmd)
{
    switch (cmd) {
    case IMAP_CMD_CAPABILITY:
    case IMAP_CMD_NOOP:
    case IMAP_CMD_LOGOUT:
    case IMAP_CMD_ID:
        return true;
    case IMAP_CMD_STARTTLS:
    case IMAP_CMD_AUTHENTICATE:
    case IMAP_CMD_LOGIN:
        return s->state == IMAP_STATE_NOT_AUTH;
    case IMAP_CMD_CHECK:
    case IMAP_CMD_CLOSE:
    case IMAP_CMD_UNSELECT:
    case IMAP_CMD_EXPUNGE:
    case IMAP_CMD_SEARCH:
    case IMAP_CMD_FETCH:
    case IMAP_CMD_STORE:
    case IMAP_CMD_COPY:
    case IMAP_CMD_MOVE:
        return s->state == IMAP_STATE_SELECTED;
    default:
        return s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED;
    }
}

static void
dispatch(struct imap_session *s, struct imap_command *cmd, struct evbuffer *in)
{
    const char *tag = cmd->tag;
    if (!allowed(s, cmd->cmd)) {
        imap__reply(s, tag, "BAD", NULL,
                    s->state == IMAP_STATE_NOT_AUTH ? "Log in first"
                    : s->state == IMAP_STATE_AUTH   ? "Select a mailbox first"
                                                    : "Not in this state");
        return;
    }
    switch (cmd->cmd) {
    case IMAP_CMD_CAPABILITY:
        imap_buf_puts(&s->out, "* CAPABILITY ");
        capabilities(s, &s->out);
        imap_buf_puts(&s->out, "\r\n");
        imap__reply(s, tag, "OK", NULL, "Capability completed");
        return;
    case IMAP_CMD_CHECK:
    case IMAP_CMD_NOOP:
        if (cmd->cmd == IMAP_CMD_CHECK && (s->enabled & IMAP_ENABLED_REV2)) {
            /* RFC 9051 appendix E: CHECK is gone from IMAP4rev2, NOOP does its work. */
            imap__reply(s, tag, "BAD", NULL, "CHECK is not part of IMAP4rev2: use NOOP");
            return;
        }
        /* CHECK's checkpoint is what every commit already is. */
        if (s->state == IMAP_STATE_SELECTED)
            imap__sync(s, true);
        imap__reply(s, tag, "OK", NULL, cmd->cmd == IMAP_CMD_NOOP ? "NOOP completed"
                                                                   : "CHECK completed");
        return;
    case IMAP_CMD_LOGOUT:
        imap_buf_puts(&s->out, "* BYE Logging out\r\n");
        imap__reply(s, tag, "OK", NULL, "Logout completed");
        s->state = IMAP_STATE_LOGOUT;
        return;
    case IMAP_CMD_ID:
        imap_buf_puts(&s->out, "* ID (\"name\" \"tandem\")\r\n");
        imap__reply(s, tag, "OK", NULL, "ID completed");
        return;
    case IMAP_CMD_STARTTLS:
        if (conn_is_tls(s->conn)) {
            imap__reply(s, tag, "BAD", NULL, "TLS is already on");
            return;
        }
        imap__reply(s, tag, "OK", NULL, "Begin TLS negotiation now");
        imap__flush(s);
        /* Bytes the client pipelined behind STARTTLS are discarded (conn.h): drop them
         * here too, so the parser starts clean after the handshake. */
        evbuffer_drain(in, evbuffer_get_length(in));
        conn_starttls(s->conn, s->srv->tls);
        return;
    case IMAP_CMD_LOGIN:
        start_login(s, tag, cmd->u.login.user, cmd->u.login.password);
        return;
    case IMAP_CMD_AUTHENTICATE:
        cmd_authenticate(s, cmd);
        return;
    case IMAP_CMD_LIST:
    case IMAP_CMD_LSUB:
        imap__cmd_list(s, cmd);
        return;
    case IMAP_CMD_STATUS:
        imap__cmd_status(s, cmd);
        return;
    case IMAP_CMD_SELECT:
    case IMAP_CMD_EXAMINE:
        imap__cmd_select(s, cmd);
        return;
    case IMAP_CMD_CLOSE:
        imap__cmd_close(s, cmd);
        return;
    case IMAP_CMD_UNSELECT:
        imap__unselect(s);
        imap__reply(s, tag, "OK", NULL, "UNSELECT completed");
        return;
    case IMAP_CMD_FETCH:
        imap__cmd_fetch(s, cmd);
        return;
    case IMAP_CMD_STORE:
        imap__cmd_store(s, cmd);
        return;
    case IMAP_CMD_EXPUNGE:
        imap__cmd_expunge(s, cmd);
        return;
    case IMAP_CMD_COPY:
    case IMAP_CMD_MOVE:
        imap__cmd_copy(s, cmd);
        return;
    case IMAP_CMD_SEARCH:
        imap__cmd_search(s, cmd);
        return;
    case IMAP_CMD_APPEND:
        imap__cmd_append(s, cmd);
        return;
    case IMAP_CMD_IDLE:
        imap__cmd_idle(s, cmd);
        return;
    case IMAP_CMD_ENABLE:
        imap__cmd_enable(s, cmd);
        return;
    case IMAP_CMD_CREATE:
    case IMAP_CMD_DELETE:
    case IMAP_CMD_RENAME:
    case IMAP_CMD_SUBSCRIBE:
    case IMAP_CMD_UNSUBSCRIBE:
    case IMAP_CMD_NAMESPACE:
    case IMAP_CMD_GETQUOTA:
    case IMAP_CMD_GETQUOTAROOT:
    case IMAP_CMD_SETQUOTA:
        imap__cmd_folder(s, cmd);
        return;
    }
    imap__not_served(s, cmd);
}

/* ---- The pump ---- */

/* The line a command asked for (imap_parser_expect_line) answers that command; data NULL: the
 * line was too long and is void (the parser said so), which ends an AUTHENTICATE. */
static void
raw_line(struct imap_session *s, const uint8_t *data, size_t len)
{
    enum imap_line_for what = s->line_for;
    s->line_for = IMAP_LINE_NONE;
    if (what == IMAP_LINE_IDLE) {
        imap__idle_line(s, data ? data : (const uint8_t *)"", len);
    } else if (!data) {
        s->sasl_user[0] = '\0';
        imap__reply(s, s->tag, "BAD", NULL, "Authentication cancelled: the line was too long");
    } else if (what == IMAP_LINE_LOGIN_USER) {
        login_user_response(s, data, len);
    } else if (what == IMAP_LINE_LOGIN_PASS) {
        login_password_response(s, data, len);
    } else {
        plain_response(s, s->tag, data, len);
    }
}

void
imap__resume(struct imap_session *s)
{
    imap__flush(s);
    if (s->conn)
        conn_resume(s->conn);
}

static void
pump(struct imap_session *s, struct evbuffer *in)
{
    while (s->conn && !s->waiting && s->state != IMAP_STATE_LOGOUT &&
           !conn_output_full(s->conn)) {
        size_t len = evbuffer_get_length(in);
        const uint8_t *data = len ? evbuffer_pullup(in, -1) : (const uint8_t *)"";
        struct imap_parser_out out;
        int item = imap_parser_feed(s->parser, data, len, &out);
        if (item < 0) {
            log_error("imap: %s: the parser gave up: %s", conn_peer(s->conn), tdm_strerror(item));
            imap_buf_puts(&s->out, "* BYE Internal error\r\n");
            imap__flush(s);
            conn_close_after_flush(s->conn);
            return;
        }
        switch (item) {
        case IMAP_ITEM_COMMAND: {
            evbuffer_drain(in, out.used);
            struct imap_command *cmd = out.cmd;
            dispatch(s, cmd, in);
            imap_command_free(&cmd);
            break;
        }
        case IMAP_ITEM_CONTINUE:
            evbuffer_drain(in, out.used);
            if (out.message)
                imap__append_announced(s, &out);
            else
                imap_buf_puts(&s->out, out.response);
            break;
        case IMAP_ITEM_LITERAL_DATA:
            imap__append_data(s, &out);
            evbuffer_drain(in, out.used);
            break;
        case IMAP_ITEM_LINE:
            raw_line(s, out.data, out.len);
            evbuffer_drain(in, out.used);
            break;
        case IMAP_ITEM_ERROR:
            imap__append_discard(s); /* an APPEND refused midway: its bytes are void */
            imap_buf_puts(&s->out, out.response);
            evbuffer_drain(in, out.used);
            if (s->line_for != IMAP_LINE_NONE) /* the raw line was too long: it still ends */
                raw_line(s, NULL, 0); /* the command that asked for it */
            if (out.fatal) {
                imap__flush(s);
                conn_close_after_flush(s->conn);
                return;
            }
            break;
        default: /* NEED_MORE */
            evbuffer_drain(in, out.used);
            imap__flush(s);
            return;
        }
        imap__flush(s);
        if (s->state == IMAP_STATE_LOGOUT && s->conn) {
            conn_close_after_flush(s->conn);
            return;
        }
        if (s->waiting && s->conn)
            conn_pause(s->conn);
    }
}

/* ---- Connections ---- */

void
imap__release(struct imap_session *s)
{
    if (s->conn || s->waiting || s->busy)
        return;
    if (s->prev_session)
        s->prev_session->next_session = s->next_session;
    else
        s->srv->sessions = s->next_session;
    if (s->next_session)
        s->next_session->prev_session = s->prev_session;
    imap__append_discard(s);
    imap__keepalive_stop(s);
    imap__unwatch(s);
    imap_view_free(&s->view);
    imap__forget_saved(s);
    imap_parser_free(&s->parser);
    imap_buf_free(&s->out);
    free(s);
}

static void
on_open(struct conn *conn, void *ctx)
{
    struct imap_server *srv = ctx;
    struct imap_session *s = calloc(1, sizeof(*s));
    struct imap_parser_limits limits = imap_parser_default_limits;
    limits.max_message = IMAP_APPEND_LIMIT; /* what one record can hold, not the parser's guess */
    if (!s || imap_parser_new(&limits, &s->parser) < 0) {
        free(s);
        conn_printf(conn, "* BYE Out of memory\r\n");
        conn_close_after_flush(conn);
        return;
    }
    s->srv = srv;
    s->conn = conn;
    s->state = IMAP_STATE_NOT_AUTH;
    s->next_session = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev_session = s;
    srv->sessions = s;
    conn_set_ctx(conn, s);
    struct imap_buf code = IMAP_BUF_INIT;
    imap_buf_puts(&code, "CAPABILITY ");
    capabilities(s, &code);
    imap__reply(s, NULL, "OK", code.data, "tandem ready");
    imap_buf_free(&code);
    imap__flush(s);
}

static void
on_data(struct conn *conn, struct evbuffer *in)
{
    struct imap_session *s = conn_ctx(conn);
    if (s)
        pump(s, in);
}

static void
on_close(struct conn *conn, enum conn_close_reason reason)
{
    struct imap_session *s = conn_ctx(conn);
    if (!s)
        return;
    if (reason == CONN_CLOSE_IDLE)
        conn_printf(conn, "* BYE Idle for too long\r\n");
    else if (reason == CONN_CLOSE_SHUTDOWN)
        conn_printf(conn, "* BYE Server shutting down\r\n");
    s->conn = NULL;
    imap__login_delay_cancel(s);
    imap__fetch_abandon(s);
    imap__release(s);
}

/* The output a FETCH filled has drained: it writes its next batch. */
static void
on_drained(struct conn *conn)
{
    struct imap_session *s = conn_ctx(conn);
    if (s)
        imap__fetch_drained(s);
}

static const struct conn_ops imap_conn_ops = {on_open, on_data, on_drained, on_close};

int
imap__listen(struct imap_server *srv, int listen_fd)
{
    struct conn_listener_options lo = {
        .fd = listen_fd,
        .implicit_tls = srv->implicit_tls ? srv->tls : NULL,
        .idle_timeout_ms = IMAP_IDLE_TIMEOUT_MS,
        .max_connections = srv->cfg->imap.max_connections,
        .max_per_address = srv->cfg->imap.max_per_address,
        .refusal_line = "* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
    };
    return conn_listener_new(srv->base, &lo, &imap_conn_ops, srv, &srv->listener);
}
