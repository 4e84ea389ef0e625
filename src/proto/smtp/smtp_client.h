#ifndef TANDEM_PROTO_SMTP_SMTP_CLIENT_H
#define TANDEM_PROTO_SMTP_SMTP_CLIENT_H

/*
 * The client side of one LMTP (RFC 2033) transaction, sans-IO: how the transport role hands
 * one message to the mailbox server that holds its recipients' database. The caller feeds the
 * server's bytes and sends whatever the client has queued; the client never touches a socket.
 *
 *   220 greeting -> LHLO -> MAIL FROM -> RCPT TO (each) -> DATA -> message -> QUIT
 *
 * Each command waits for the previous reply: a transaction is a handful of round trips on a
 * local network, and waiting lets the client stop before the data when any recipient is
 * refused, so a message is either offered to all of them or to none. After the data LMTP
 * answers once per recipient; the client collects the replies and says QUIT. Whatever the
 * server says while the message is still going out is held and read after its end, so the
 * outcome never depends on how the replies were cut into reads.
 *
 * The message is sent from the caller's buffer with dot-stuffing (a '.' that starts a line,
 * after CR LF or at the very start, is doubled, as our server's decoder expects, smtp_data.h)
 * and the final "." line, in pieces of at most SMTP_CLIENT_CHUNK bytes, produced as the caller
 * takes the output, so the message is never held twice.
 *
 * Ownership: the client borrows everything in struct smtp_client_tx for its whole life.
 */

#include "proto/smtp/smtp_addr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_CLIENT_CHUNK (64u * 1024u)
#define SMTP_CLIENT_MAX_REPLY_LINE 2048u /* a longer reply line is a broken server */

struct smtp_client;

struct smtp_client_tx {
    const char *helo;               /* our name, for LHLO */
    const struct smtp_path *sender; /* MAIL FROM; null path allowed */
    const struct smtp_path *rcpts;  /* RCPT TO, in order */
    size_t n_rcpts;                 /* >= 1 */
    bool body_8bit;                 /* MAIL FROM ... BODY=8BITMIME */
    bool smtputf8;                  /* MAIL FROM ... SMTPUTF8 */
    const uint8_t *body;            /* the message, as received (not dot-stuffed) */
    size_t body_len;
    /* NULL, or one SMTP_DELIVERY_ID_LEN-byte id per recipient (not all zero), sent as RCPT's
     * XDELIVERYID (smtp_cmd.h): the mailbox server drops a delivery it already holds */
    const uint8_t (*delivery_ids)[16];
};

enum smtp_client_state {
    SMTP_CLIENT_BUSY = 0,   /* the transaction goes on: send the output, feed the replies */
    SMTP_CLIENT_DONE = 1,   /* every reply is in (QUIT may still be queued: send it) */
    SMTP_CLIENT_BROKEN = 2, /* the server broke the protocol: close; nothing is known */
};

/* One reply: the code of its last line, the enhanced code and text of its first. */
struct smtp_client_reply {
    int code; /* 0: no reply (the transaction stopped before this point) */
    char enh[16];
    char text[200];
};

/* Returns 0 with an owned *c_r, TDM_EINVAL (no recipient, a path that cannot be written) or
 * -ENOMEM. Nothing is queued until the greeting arrives. */
int smtp_client_new(const struct smtp_client_tx *tx, struct smtp_client **c_r);

/* Frees *c and sets it to NULL; NULL is fine. */
void smtp_client_free(struct smtp_client **c);

/*
 * Feeds in[0..len) from the server; takes all of it (a partial line is kept). Returns the
 * state, or -ENOMEM (the client is then BROKEN).
 */
int smtp_client_feed(struct smtp_client *c, const uint8_t *in, size_t len);

/* The state now. */
enum smtp_client_state smtp_client_state(const struct smtp_client *c);

/*
 * What to send now (borrowed until the next call on c), at most SMTP_CLIENT_CHUNK bytes of
 * message at a time (twice that on the wire at worst, with the stuffed dots): send it, call
 * smtp_client_output_done(), and ask again while len > 0.
 * Returns 0 or -ENOMEM (BROKEN).
 */
int smtp_client_output(struct smtp_client *c, const uint8_t **out_r, size_t *len_r);
void smtp_client_output_done(struct smtp_client *c, size_t n);

/* Whether the end of the message has been queued: from then on, a lost connection leaves the
 * delivery unknown (the server may have made it durable). */
bool smtp_client_data_sent(const struct smtp_client *c);

/*
 * Once DONE: recipient idx's outcome, its RCPT refusal or its reply after the data; code 0
 * when the transaction stopped before it (see smtp_client_stop()).
 */
const struct smtp_client_reply *smtp_client_rcpt_reply(const struct smtp_client *c, size_t idx);

/* Once DONE: the refusal that stopped the transaction before the data (greeting, LHLO, MAIL,
 * DATA), or a reply with code 0 when nothing did. */
const struct smtp_client_reply *smtp_client_stop(const struct smtp_client *c);

#endif
