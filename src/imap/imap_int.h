#ifndef TANDEM_IMAP_IMAP_INT_H
#define TANDEM_IMAP_IMAP_INT_H

/* What the IMAP server's files share. Nothing outside src/imap includes this. */

#include "imap/imap_server.h"
#include "imap/imap_view.h"
#include "directory/directory.h"
#include "proto/imap/imap_command.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"
#include "store/mail.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

struct conn;
struct core_link;
struct dir_client;
struct offload;
struct store_reader;
struct store_readers;

struct imap_server {
    struct event_base *base;
    const struct tdm_config *cfg;
    struct conn_listener *listener;
    SSL_CTX *tls;                   /* STARTTLS and imaps */
    bool implicit_tls;
    struct core_link *core;
    struct offload *offload;        /* argon2id for local logins */
    struct store_reader *directory; /* with the directory role: read locally */
    struct dir_client *remote;      /* without it: the directory servers */
    struct auth_delay *login_delays; /* failed logins by address and user (imap_login_delay.c) */
    char *remote_problem;
    struct store_readers *dbs; /* mail databases, opened on first use */
    struct imap_watches *watches; /* selected folders -> sessions (imap_watch.c) */
    struct imap_login_cache *logins; /* logins that succeeded lately (imap_login_cache.c) */
    struct imap_search *searches;    /* SEARCHes running in slices (imap_search_cmd.c) */
    struct imap_session *sessions;   /* every session until freed (imap_dismount.c ends some) */
};

/* What the next raw line (imap_parser_expect_line) answers. */
enum imap_line_for {
    IMAP_LINE_NONE = 0,
    IMAP_LINE_AUTHENTICATE, /* the PLAIN response after "+ " */
    IMAP_LINE_LOGIN_USER,   /* SASL LOGIN: the user name after "+ VXNlcm5hbWU6" */
    IMAP_LINE_LOGIN_PASS,   /* SASL LOGIN: the password after "+ UGFzc3dvcmQ6" */
    IMAP_LINE_IDLE,         /* "DONE" */
};

/* Extensions the client ENABLEd (RFC 5161), a bit mask. CONDSTORE is also turned on by the
 * other "CONDSTORE enabling commands" (RFC 7162 3.1: SELECT (CONDSTORE), STATUS
 * (HIGHESTMODSEQ), FETCH MODSEQ / CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE): from
 * then on every untagged FETCH carries MODSEQ. With QRESYNC, expunges are announced as
 * VANISHED (imap__sync). */
enum imap_enabled {
    IMAP_ENABLED_CONDSTORE = 1u << 0,
    IMAP_ENABLED_QRESYNC = 1u << 1,
    IMAP_ENABLED_REV2 = 1u << 2,
    IMAP_ENABLED_UTF8 = 1u << 3,
};

struct imap_append;
struct imap_fetch_job;

enum imap_state {
    IMAP_STATE_NOT_AUTH,
    IMAP_STATE_AUTH,
    IMAP_STATE_SELECTED,
    IMAP_STATE_LOGOUT,
};

struct imap_session {
    struct imap_server *srv;
    struct conn *conn; /* NULL once the client is gone */
    struct imap_parser *parser;
    enum imap_state state;
    struct imap_buf out;
    unsigned waiting; /* asynchronous steps in flight (login, commits): the pump stops */
    unsigned busy;    /* inside a callback that may run the pump (which may close) */
    char tag[129];    /* the command being answered asynchronously */
    enum imap_line_for line_for;
    unsigned login_failures;   /* on this connection */
    struct event *login_delay; /* holds a failed login's answer (imap_login_delay.c), owned */
    unsigned enabled; /* enum imap_enabled */
    /* SASL LOGIN between its two steps: the user name, "" for one that cannot be a user
     * (the login then fails as a wrong password does, after the password step). */
    char sasl_user[DIR_NAME_MAX + 1];
    /* After login. */
    char user[DIR_NAME_MAX + 1];
    char database[DIR_NAME_MAX + 1];
    /* After SELECT / EXAMINE. */
    struct imap_view *view;
    char folder[MAIL_NAME_MAX + 1];
    bool read_only;
    uint32_t recent_lo, recent_hi; /* UIDs in [lo, hi) are \Recent in this session */
    /* SELECT (QRESYNC (...)) waiting for its answer (imap_mailbox.c), owned. */
    struct imap_resync *resync;
    /* SEARCH ... RETURN (SAVE) (RFC 5182): "$", ascending UIDs, owned. */
    uint32_t *saved_uids;
    size_t n_saved;
    /* An APPEND whose message bytes are arriving (imap_append.c), owned. */
    struct imap_append *append;
    bool idling; /* inside IDLE (imap_idle.c) */
    struct event *keepalive; /* while idling: "* OK Still here" (imap_keepalive.c), owned */
    /* A FETCH answering in batches as the output drains (imap_fetch_cmd.c), owned. */
    struct imap_fetch_job *fetch;
    struct imap_watcher *watcher; /* while selected: hears of changes (imap_watch.c), owned */
    struct imap_session *prev_session, *next_session; /* srv->sessions */
};

/* ---- imap_server.c: shared resources ---- */


/*
 * Checks user's password and finds the user's mailbox database. cb runs once, usually later
 * from the loop, but inside the call when the check cannot even start: with 0, the database
 * and where that database is served (its route; may be NULL or not OK when the directory
 * gives none), -EACCES (wrong user or password, disabled, no mailbox), -EHOSTUNREACH
 * (directory unreachable and the login not cached), -EBUSY (too many checks queued),
 * TDM_ECLOSED (shutting down), or another negative code. database and route are borrowed for
 * the call.
 */
typedef void imap_login_cb(struct imap_session *s, int status, const char *database,
                           const struct dir_route *route);
void imap__login(struct imap_session *s, const char *user, const char *password,
                 imap_login_cb *cb);

/* ---- imap_login_cache.c: logins that succeeded lately, so reconnecting skips argon2id ---- */

/* Returns 0 with an owned *cache_r, or -ENOMEM. */
int imap__login_cache_new(struct imap_login_cache **cache_r);
void imap__login_cache_free(struct imap_login_cache **cache);
/* Whether user logged in with password against stored_hash (its argon2id string) lately. */
bool imap__login_cache_check(struct imap_login_cache *cache, const char *user,
                             const char *stored_hash, const char *password);
/* After argon2id said yes. */
void imap__login_cache_remember(struct imap_login_cache *cache, const char *user,
                                const char *stored_hash, const char *password);

/* ---- imap_referral.c: logins whose mailbox is elsewhere (RFC 2221) ---- */

/* Whether this server serves database now. */
bool imap__served_here(struct imap_session *s, const char *database);
/* Answers the login being checked (s->tag, s->user; the password was right) when database is
 * not served here: NO [REFERRAL url] to the CMS on route, or NO [UNAVAILABLE] when there is no
 * route or it leads back here. Forgets the failure counts and s->user. */
void imap__refer(struct imap_session *s, const char *database, const struct dir_route *route);

/* ---- imap_login_delay.c: failed logins answered late ---- */

/* Answers the login being checked (s->tag) NO [AUTHENTICATIONFAILED] after the delay user's
 * and the client's failures have earned, the session waiting meanwhile; closes the
 * connection after [imap] max_login_failures. */
void imap__login_failed(struct imap_session *s, const char *user);
/* s->user logged in: the failures of the user and of the client's address are forgotten. */
void imap__login_succeeded(struct imap_session *s);
/* The client left during the delay: nothing will be answered. */
void imap__login_delay_cancel(struct imap_session *s);

/* ---- imap_session.c ---- */

/* Serves sessions on listen_fd (taken). Returns 0 or -ENOMEM. */
int imap__listen(struct imap_server *srv, int listen_fd);

/* Sends what is queued in s->out. */
void imap__flush(struct imap_session *s);
/* "tag status [code] text" for the command being answered. */
void imap__reply(struct imap_session *s, const char *tag, const char *status, const char *code,
                 const char *text);
/* Frees s when nothing holds it any more (its client gone, no step in flight). */
void imap__release(struct imap_session *s);
/* An asynchronous step finished: runs the pump again for what was pipelined meanwhile. */
void imap__resume(struct imap_session *s);
/* Leaves the selected state (CLOSE, UNSELECT, a new SELECT, logout). */
void imap__unselect(struct imap_session *s);
/* How strings go on the wire: UTF-8 once the client enabled IMAP4rev2 or UTF8=ACCEPT. */
enum imap_write_mode imap__mode(const struct imap_session *s);
/* NO [CANNOT] "<command> is not served yet": for what this server does not do (yet). */
void imap__not_served(struct imap_session *s, const struct imap_command *cmd);

/* ---- imap_msgset.c ---- */

/* One message a command names: its MSN in the session's view and its UID. */
struct imap_msg_ref {
    uint32_t msn, uid;
};

/* Whether n (an MSN or a UID) is in set, where "*" stands for star. */
bool imap__set_contains(const struct imap_seqset *set, uint32_t n, uint32_t star);

/*
 * The messages of the selected view that set names (by UID when by_uid, else by MSN; "$" is
 * the saved search result), ascending, messages pending an expunge announcement left out.
 * Returns 0 with an owned array (free(); NULL when empty), 1 likewise when the set named
 * messages pending an expunge announcement (RFC 9051 EXPUNGEISSUED), or after answering the
 * command (tag) a negative code: -ERANGE (an MSN beyond EXISTS: BAD, RFC 3501 6.4.8),
 * -ENOMEM.
 */
int imap__resolve_set(struct imap_session *s, const char *tag, const struct imap_seqset *set,
                      bool by_uid, struct imap_msg_ref **refs_r, size_t *n_r);
/* Drops the saved search result (a new SELECT, RFC 5182 2.1). */
void imap__forget_saved(struct imap_session *s);

/* ---- imap_flags.c ---- */

bool imap__is_recent(const struct imap_session *s, uint32_t uid);
/* "FLAGS (...)" of m, with \Recent when recent. */
void imap__write_flags(struct imap_buf *b, const struct mail_message_info *m, bool recent);
/*
 * IMAP flag names (STORE, APPEND) into system flag bits and keywords (pointers into names,
 * duplicates dropped, at most MAIL_MAX_KEYWORDS). \Recent is ignored. Returns 0, or TDM_EINVAL
 * (an unknown system flag) / TDM_ELIMIT (a keyword too long, too many) with *why_r saying which.
 */
int imap__parse_flags(const char *const *names, size_t n, uint32_t *flags_r,
                      const char **keywords, size_t *n_keywords_r, const char **why_r);

/* ---- imap_updates.c ---- */

/* Announces what changed in the selected folder (EXPUNGE or VANISHED, EXISTS, FETCH FLAGS);
 * follows it when renamed; queues BYE and the LOGOUT state when it was deleted. */
void imap__sync(struct imap_session *s, bool allow_expunge);
/* Between these, imap__sync reads one snapshot per database, opened by the first sync that
 * needs it: for sessions told of one change together (imap_watch.c), never across a turn of
 * the loop. Not nested. */
void imap__burst_begin(struct imap_server *srv);
void imap__burst_end(struct imap_server *srv);
/* "* msn FETCH (FLAGS (...) UID n [MODSEQ (m)])": a message's flags as they now are, MODSEQ
 * once CONDSTORE is on. */
void imap__write_flag_update(struct imap_session *s, uint32_t msn,
                             const struct mail_message_info *m);

/* ---- imap_mailbox.c: mailbox names, STATUS, SELECT, EXAMINE ---- */

/* A mailbox name or pattern as the client sent it, as UTF-8 appended to out: modified UTF-7
 * decoded, or checked to be UTF-8 once the client enabled it. Returns 0, TDM_EINVAL, -ENOMEM. */
int imap__wire_to_utf8(const struct imap_session *s, const char *wire, struct imap_buf *out);
/* The store's name for a mailbox name as the client sent it (any case of INBOX is "INBOX",
 * also as the first level of a longer name). Returns false after answering tag NO [CANNOT]
 * for a name that is not valid. */
bool imap__store_name(struct imap_session *s, const char *tag, const char *wire,
                      char out[MAIL_NAME_MAX + 1]);
/* A read transaction on the user's mailbox database; false after answering tag
 * NO [UNAVAILABLE] when it is not here. The caller aborts *txn_r. */
bool imap__begin_read(struct imap_session *s, const char *tag, const struct mail_dbis **dbis_r,
                      MDB_txn **txn_r);
/* STATUS items (enum imap_status_item) of the user's folder. Returns 0, TDM_ENOTFOUND, or a
 * storage error. HIGHESTMODSEQ turns CONDSTORE on. */
int imap__status_values(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn,
                        const char *folder, unsigned items, struct imap_status_values *v);
/* Whether STATUS items (of STATUS or LIST RETURN (STATUS ...)) are valid in the session's
 * mode; false after answering tag BAD (RECENT under IMAP4rev2). */
bool imap__status_items_ok(struct imap_session *s, const char *tag, unsigned items);
void imap__cmd_select(struct imap_session *s, const struct imap_command *cmd);
void imap__cmd_status(struct imap_session *s, const struct imap_command *cmd);

/* ---- imap_list.c: LIST (RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS), LSUB ---- */

void imap__cmd_list(struct imap_session *s, const struct imap_command *cmd);
/* The RFC 6154 attributes of special_use (enum mail_special_use bits) into attrs (room for
 * 7, static strings); returns how many. */
size_t imap__special_use_attrs(uint32_t use, const char **attrs);

/* ---- imap_fetch_cmd.c ---- */

void imap__cmd_fetch(struct imap_session *s, const struct imap_command *cmd);
/* The connection's output drained (conn_ops.on_drained): a FETCH waiting for it goes on. */
void imap__fetch_drained(struct imap_session *s);
/* The client is gone: a FETCH waiting for the output to drain ends here (one waiting for its
 * \Seen commit ends when the commit reports). */
void imap__fetch_abandon(struct imap_session *s);

/* ---- imap_store_cmd.c: STORE, EXPUNGE, UID EXPUNGE, and CLOSE's expunge ---- */

void imap__cmd_store(struct imap_session *s, const struct imap_command *cmd);
void imap__cmd_expunge(struct imap_session *s, const struct imap_command *cmd);
void imap__cmd_close(struct imap_session *s, const struct imap_command *cmd);
/* The tagged OK of a command that announced expunges through imap__sync (EXPUNGE, UID
 * EXPUNGE, MOVE): with [HIGHESTMODSEQ n] under CONDSTORE (RFC 7162). */
void imap__reply_expunged(struct imap_session *s, const char *text);

/* ---- imap_copy_cmd.c: COPY, MOVE and their UID forms ---- */

void imap__cmd_copy(struct imap_session *s, const struct imap_command *cmd);

/* ---- imap_search_cmd.c: SEARCH, ESEARCH, SEARCHRES ---- */

void imap__cmd_search(struct imap_session *s, const struct imap_command *cmd);
/* Ends the searches still running (the server is stopping): their sessions are let go. */
void imap__searches_end(struct imap_server *srv);

/* ---- imap_folder_cmd.c: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE, quota ---- */

void imap__cmd_folder(struct imap_session *s, const struct imap_command *cmd);
/* The tagged NO for a record the core did not commit: status is the commit's (the store's
 * refusal: NONEXISTENT, ALREADYEXISTS, OVERQUOTA, LIMIT) or the link's (UNAVAILABLE). */
void imap__reply_commit_failure(struct imap_session *s, const char *tag, int status);

/* ---- imap_append.c: APPEND, its message bytes streamed as they arrive ---- */

/* APPENDLIMIT (RFC 7889): the largest message APPEND takes, and what one APPEND may hold in
 * all its messages. One message is one log record, which must stay under TDM_LOG_MAX_PAYLOAD
 * with its other fields: the same bound as LMTP's. */
#define IMAP_APPEND_LIMIT (48u << 20)

/* The parser announced message out->msg_index of an APPEND (IMAP_ITEM_CONTINUE with message
 * set): sends "+" or refuses the command (tagged NO, imap_parser_cancel_literal). */
void imap__append_announced(struct imap_session *s, const struct imap_parser_out *out);
/* IMAP_ITEM_LITERAL_DATA: bytes of the message being appended. */
void imap__append_data(struct imap_session *s, const struct imap_parser_out *out);
/* The APPEND command completed (all its messages received). */
void imap__cmd_append(struct imap_session *s, const struct imap_command *cmd);
/* Frees an APPEND in progress (the connection ended, or the parser refused the command). */
void imap__append_discard(struct imap_session *s);

/* ---- imap_idle.c: IDLE and the core's change notifications ---- */

void imap__cmd_idle(struct imap_session *s, const struct imap_command *cmd);
/* The line after IDLE: "DONE" ends it. */
void imap__idle_line(struct imap_session *s, const uint8_t *data, size_t len);
/* The selected folder changed (imap_watch.c): an IDLE session announces it now. */
void imap__idle_changed(struct imap_session *s);

/* ---- imap_keepalive.c: "* OK Still here" while in IDLE ---- */

/* From now on, every [imap] idle_keepalive while s->idling (nothing when it is 0). */
void imap__keepalive_start(struct imap_session *s);
/* Stops that (IDLE ended, the session's end). Does nothing when not started. */
void imap__keepalive_stop(struct imap_session *s);

/* ---- imap_watch.c: which sessions watch which folder; the core's CHANGED routed to them ---- */

/* Takes srv->core's CHANGED and ready callbacks. Returns 0 or -ENOMEM. */
int imap__watches_new(struct imap_server *srv);
/* After the core link and every session are gone. NULL srv->watches allowed. */
void imap__watches_free(struct imap_server *srv);
/* From now on the selected folder's changes reach the session (imap__idle_changed), at most
 * once per turn of the loop however many arrive together. */
void imap__watch(struct imap_session *s);
/* Stops that (unselect, the session's end). Does nothing when not watching. */
void imap__unwatch(struct imap_session *s);

/* ---- imap_dismount.c: sessions of databases the core dismounted ---- */

/* Takes srv->core's DB_DISMOUNTED callback: listed databases' readers close, their sessions end
 * with BYE [UNAVAILABLE], their logins are answered as for a database not here. */
void imap__dismount_start(struct imap_server *srv);

/* ---- imap_enable.c: ENABLE (CONDSTORE, QRESYNC, IMAP4rev2, UTF8=ACCEPT) ---- */

void imap__cmd_enable(struct imap_session *s, const struct imap_command *cmd);

#endif
