/*
 * One message relayed over LMTP (smtp_int.h): a libevent bufferevent to the mailbox server
 * driving the sans-IO client transaction (proto/smtp/smtp_client.h), and the outcome turned
 * into the one SMTP reply the message gets.
 *
 * The message goes out a chunk at a time as the socket takes it (the write callback fires
 * below RELAY_LOW_WATER), so a relay never holds a second copy of it.
 */
#include "smtp/smtp_int.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/log.h"
#include "proto/smtp/smtp_client.h"
#include "proto/smtp/smtp_reply.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RELAY_LOW_WATER (64u * 1024u)
#define RELAY_HIGH_WATER (256u * 1024u)
/* Connecting and sending are quick on a local network; the replies after the data wait for
 * the mailbox server's group commit, or up to 5 s for its core to come back (src/lmtp/). */
#define RELAY_WRITE_TIMEOUT_S 30
#define RELAY_READ_TIMEOUT_S 60
#define RELAY_WHERE_MAX (DIR_NAME_MAX + DIR_ROUTE_ADDRESS_MAX + 16)

struct smtp_relay {
    struct bufferevent *bev;
    struct smtp_client *client;
    struct smtp_path sender;
    struct smtp_path *rcpts; /* owned copies */
    size_t n_rcpts;
    uint8_t (*ids)[16];          /* owned copy of the request's delivery ids, or NULL */
    int *codes;                  /* n_rcpts, filled when done */
    char where[RELAY_WHERE_MAX]; /* "cms1 (192.0.2.7:24)", for replies and logs */
    smtp_relay_done_cb *done;
    void *ctx;
};

static void
relay_free(struct smtp_relay *r)
{
    if (r->bev)
        bufferevent_free(r->bev); /* closes the socket; unsent bytes go with it */
    smtp_client_free(&r->client);
    free(r->rcpts);
    free(r->ids);
    free(r->codes);
    free(r);
}

void
smtp__relay_abandon(struct smtp_relay **relay)
{
    if (*relay)
        relay_free(*relay);
    *relay = NULL;
}

/* Ends the relay with v, which done may keep only for the call. */
static void
finish(struct smtp_relay *r, const struct smtp_verdict *v)
{
    log_info("smtp: relayed to %s for %zu recipient(s): %d %s", r->where, r->n_rcpts, v->code,
             v->text);
    smtp_relay_done_cb *done = r->done;
    void *ctx = r->ctx;
    /* v->enh may point into the client's replies, which go with the relay. */
    char enh[sizeof(((struct smtp_client_reply *)0)->enh)] = "";
    if (v->enh)
        snprintf(enh, sizeof(enh), "%s", v->enh);
    struct smtp_verdict kept = {v->code, v->enh ? enh : NULL, v->text};
    /* Each recipient's code, kept before the client goes with the relay. */
    int *codes = r->codes;
    r->codes = NULL;
    bool done_tx = r->client && smtp_client_state(r->client) == SMTP_CLIENT_DONE;
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const struct smtp_client_reply *rep = done_tx ? smtp_client_rcpt_reply(r->client, i) : NULL;
        codes[i] = rep ? rep->code : 0;
    }
    relay_free(r);
    done(ctx, &kept, codes);
    free(codes);
}

/* Finishes with code and enh and the formatted text. */
__attribute__((format(printf, 4, 5))) static void
finish_with(struct smtp_relay *r, int code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    struct smtp_verdict v = {code, enh, text};
    finish(r, &v);
}

/* A reply of the mailbox server passed on: its code and, when it fits the code, its enhanced
 * code, after what the text says. */
static void
finish_passed_on(struct smtp_relay *r, const char *what, const struct smtp_client_reply *rep)
{
    const char *enh = smtp_enh_valid(rep->code, rep->enh) ? rep->enh : NULL;
    if (!enh)
        enh = rep->code < 500 ? "4.0.0" : "5.0.0";
    finish_with(r, rep->code, enh, "%s %s: %d %s", what, r->where, rep->code, rep->text);
}

/* Every reply is in: one SMTP reply for the message. */
static void
conclude(struct smtp_relay *r)
{
    const struct smtp_client_reply *stop = smtp_client_stop(r->client);
    if (stop->code != 0) {
        finish_passed_on(r, "The mailbox server refused the message at", stop);
        return;
    }
    size_t delivered = 0, deferred = 0;
    const struct smtp_client_reply *refusal = NULL, *deferral = NULL;
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const struct smtp_client_reply *rep = smtp_client_rcpt_reply(r->client, i);
        if (rep->code / 100 == 2) {
            delivered++;
        } else if (rep->code / 100 == 5) {
            refusal = refusal ? refusal : rep;
        } else {
            deferred++; /* a 4xx, or no reply: the transaction stopped before the data */
            if (rep->code != 0 && !deferral)
                deferral = rep;
        }
    }
    if (delivered == r->n_rcpts) {
        finish_with(r, 250, "2.0.0", "Delivered to %s", r->where);
    } else if (delivered > 0) {
        /* One reply per message: the sender must try again for those not delivered, and the
         * others get the message twice (the transport dumpster's duplicate check is later
         * work, docs/decisions.md "SMTP relay"). Losing mail is worse than a duplicate. */
        finish_with(r, 451, "4.3.0",
                    "Delivered to %zu of %zu recipients at %s; try again later for the rest",
                    delivered, r->n_rcpts, r->where);
    } else if (deferral) {
        finish_passed_on(r, "The mailbox server deferred the message at", deferral);
    } else if (deferred > 0 || !refusal) {
        finish_with(r, 451, "4.3.0", "The mailbox server %s deferred the message; try again later",
                    r->where);
    } else {
        finish_passed_on(r, "The mailbox server refused the message at", refusal);
    }
}

/* The connection ended or broke before every reply was in. */
static void
connection_lost(struct smtp_relay *r, const char *why)
{
    if (smtp_client_data_sent(r->client))
        finish_with(r, 451, "4.4.2",
                    "Lost the connection to the mailbox server %s after the message (%s): it may "
                    "have been delivered; try again later",
                    r->where, why);
    else
        finish_with(r, 451, "4.4.1",
                    "The mailbox server %s cannot be reached (%s); try again later", r->where, why);
}

/* Sends what the client has, up to the high-water mark. Returns false when the relay ended. */
static bool
pump_output(struct smtp_relay *r)
{
    struct evbuffer *out = bufferevent_get_output(r->bev);
    while (evbuffer_get_length(out) < RELAY_HIGH_WATER) {
        const uint8_t *data;
        size_t len;
        if (smtp_client_output(r->client, &data, &len) < 0) {
            finish_with(r, 451, "4.3.0", "Out of memory relaying the message; try again later");
            return false;
        }
        if (len == 0)
            break;
        if (bufferevent_write(r->bev, data, len) < 0) {
            connection_lost(r, "out of memory");
            return false;
        }
        smtp_client_output_done(r->client, len);
    }
    return true;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_relay *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    int st = smtp_client_feed(r->client, evbuffer_pullup(in, -1), len);
    evbuffer_drain(in, len);
    if (st == SMTP_CLIENT_BROKEN || st < 0) {
        connection_lost(r, st < 0 ? "out of memory" : "the server broke the protocol");
        return;
    }
    if (!pump_output(r))
        return;
    if (st == SMTP_CLIENT_DONE)
        conclude(r); /* its QUIT may be lost with the connection: nothing depends on it */
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    pump_output(arg);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_relay *r = arg;
    if (what & BEV_EVENT_CONNECTED) {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    char why[160];
    if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof(why), "no answer in time");
    else if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "it closed the connection");
    else
        snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    connection_lost(r, why);
}

/* The route's socket address. */
static int
route_sockaddr(const char *address, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, address, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, address, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
        return 0;
    }
    return TDM_EINVAL;
}

static int
relay_connect(struct event_base *base, struct smtp_relay *r, const struct smtp_relay_request *req)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (route_sockaddr(req->address, req->port, &ss, &sl) < 0)
        return TDM_EINVAL;
    r->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!r->bev)
        return -ENOMEM;
    bufferevent_setcb(r->bev, read_cb, write_cb, event_cb, r);
    bufferevent_setwatermark(r->bev, EV_WRITE, RELAY_LOW_WATER, 0);
    struct timeval rt = {RELAY_READ_TIMEOUT_S, 0}, wt = {RELAY_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(r->bev, &rt, &wt); /* the write timeout bounds the connect */
    if (bufferevent_socket_connect(r->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
        int err = EVUTIL_SOCKET_ERROR();
        return err ? -err : -ECONNREFUSED;
    }
    return 0;
}

int
smtp__relay_start(struct event_base *base, const struct smtp_relay_request *req,
                  smtp_relay_done_cb *done, void *ctx, struct smtp_relay **relay_r)
{
    struct smtp_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->done = done;
    r->ctx = ctx;
    r->sender = *req->sender;
    r->n_rcpts = req->n_rcpts;
    bool v6 = strchr(req->address, ':') != NULL;
    snprintf(r->where, sizeof(r->where), "%s (%s%s%s:%u)", req->cms, v6 ? "[" : "", req->address,
             v6 ? "]" : "", req->port);
    r->rcpts = calloc(req->n_rcpts, sizeof(*r->rcpts));
    r->codes = calloc(req->n_rcpts, sizeof(*r->codes));
    if (!r->rcpts || !r->codes) {
        relay_free(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < req->n_rcpts; i++)
        r->rcpts[i] = *req->rcpts[i];
    if (req->delivery_ids) {
        r->ids = calloc(req->n_rcpts, sizeof(*r->ids));
        if (!r->ids) {
            relay_free(r);
            return -ENOMEM;
        }
        memcpy(r->ids, req->delivery_ids, req->n_rcpts * sizeof(*r->ids));
    }
    struct smtp_client_tx tx = {
        .helo = req->helo,
        .sender = &r->sender,
        .rcpts = r->rcpts,
        .n_rcpts = r->n_rcpts,
        .body_8bit = req->body_8bit,
        .body = req->body,
        .body_len = req->body_len,
        .delivery_ids = r->ids,
    };
    int ret = smtp_client_new(&tx, &r->client);
    if (ret == 0)
        ret = relay_connect(base, r, req);
    if (ret < 0) {
        relay_free(r);
        return ret;
    }
    *relay_r = r;
    return 0;
}
