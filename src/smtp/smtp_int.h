#ifndef TANDEM_SMTP_SMTP_INT_H
#define TANDEM_SMTP_SMTP_INT_H

/* Internals of the transport role's SMTP server shared by its files. */

#include "proto/smtp/smtp_addr.h"
#include "proto/smtp/smtp_session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* ---- smtp_relay.c: one message handed over LMTP to one mailbox server ---- */

struct smtp_relay;

struct smtp_relay_request {
    const char *cms;     /* the route: the clustered mailbox server, for messages and logs */
    const char *address; /* its IP address */
    uint16_t port;       /* its LMTP port */
    const char *helo;    /* our name */
    const struct smtp_path *sender;
    const struct smtp_path *const *rcpts; /* copied */
    size_t n_rcpts;
    bool body_8bit;
    const uint8_t *body; /* borrowed until the callback or smtp__relay_abandon() */
    size_t body_len;
    /* NULL, or one delivery id per recipient (RCPT's XDELIVERYID, docs/smtp.md "Transport
     * dumpster"), copied */
    const uint8_t (*delivery_ids)[16];
};

/*
 * The SMTP reply the message gets: 250 when the mailbox server answered 250 for every
 * recipient (the message is durable there), a 4xx when anything was not delivered for a
 * reason that may pass, the server's own 5xx when every recipient was refused for good.
 * v->text is borrowed for the call. rcpt_codes: each recipient's reply code (2xx: the mailbox
 * server has it; 0: no reply), n_rcpts of them, borrowed for the call.
 */
typedef void smtp_relay_done_cb(void *ctx, const struct smtp_verdict *v, const int *rcpt_codes);

/*
 * Connects and starts the LMTP transaction. Returns 0 with *relay_r (owned by the relay
 * itself until done runs, once and never from inside this call; then it is freed), or a
 * negative code and no callback: TDM_EINVAL (the address is not an IP literal), -ENOMEM,
 * -errno from the socket.
 */
int smtp__relay_start(struct event_base *base, const struct smtp_relay_request *req,
                      smtp_relay_done_cb *done, void *ctx, struct smtp_relay **relay_r);

/* Drops a relay before it is done: its connection closes, its callback never runs. Closing
 * before the end of the data makes the mailbox server discard the message. */
void smtp__relay_abandon(struct smtp_relay **relay);

#endif
