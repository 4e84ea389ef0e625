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
    char *remote_problem;
    struct store_readers *dbs; /* mail databases, opened on first use */
};

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
    /* After login. */
    char user[DIR_NAME_MAX + 1];
    char database[DIR_NAME_MAX + 1];
    /* After SELECT / EXAMINE. */
    struct imap_view *view;
    char folder[MAIL_NAME_MAX + 1];
    bool read_only;
    uint32_t recent_lo, recent_hi; /* UIDs in [lo, hi) are \Recent in this session */
};

/* ---- imap_server.c: shared resources ---- */


/*
 * Checks user's password and finds the user's mailbox database. cb runs once, usually later
 * from the loop, but inside the call when the check cannot even start: with 0 and the
 * database, -EACCES (wrong user or password, disabled, no mailbox), -EHOSTUNREACH (directory
 * unreachable and the login not cached), -EBUSY (too many checks queued), TDM_ECLOSED
 * (shutting down), or another negative code.
 */
typedef void imap_login_cb(struct imap_session *s, int status, const char *database);
void imap__login(struct imap_session *s, const char *user, const char *password,
                 imap_login_cb *cb);

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
enum imap_write_mode imap__mode(const struct imap_session *s);

/* ---- imap_mailbox.c ---- */

void imap__cmd_list(struct imap_session *s, const struct imap_command *cmd);
void imap__cmd_select(struct imap_session *s, const struct imap_command *cmd);
void imap__cmd_status(struct imap_session *s, const struct imap_command *cmd);

/* ---- imap_fetch_cmd.c ---- */

void imap__cmd_fetch(struct imap_session *s, const struct imap_command *cmd);
/* Announces what changed in the selected folder (EXPUNGE, EXISTS, FETCH FLAGS). */
void imap__sync(struct imap_session *s, bool allow_expunge);

#endif
