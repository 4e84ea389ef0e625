#ifndef TANDEM_COORD_COORD_CLIENT_H
#define TANDEM_COORD_COORD_CLIENT_H

/*
 * The nodes' client of the coordination store on a witness (docs/cluster.md, "Leases and
 * epochs"; the protocol is docs/formats/coord.md). Asynchronous, on the caller's libevent loop:
 * no call blocks, every answer comes through a callback on that loop.
 *
 * One client is one session with one witness: coord_client_connect() tries the endpoints in
 * the given order (TLS over TCP, then HELLO with this server's name and key) until one accepts;
 * on_up says which. When the session ends — EOF, error, timeout, a malformed frame, or every
 * endpoint failed — on_lost is called once, after every request still waiting has completed
 * with status TDM_ECLOSED. The client does not reconnect by itself: the caller decides when to
 * call coord_client_connect() again. A request is never replayed on a new session. The caller
 * must treat on_lost as the loss of the witness's vote at once (docs/cluster.md): the witness
 * frees this member's leases at once when it sees the session end with EOF (a FIN), and
 * otherwise (a reset included) lets them run out their time to live.
 *
 * The holder of every lease request is this client's member name (the witness refuses any
 * other holder than the one its HELLO authenticated).
 *
 * Callbacks may call any function here, including coord_client_free() (then the client is
 * gone when the callback returns: nothing else of it is called). Loop thread only.
 */

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct coord_client;

/* One endpoint of the witness's [listen coord]: "127.0.3.20" or "::1", and a port. */
struct coord_client_endpoint {
    const char *host; /* numeric address; borrowed for coord_client_new() */
    uint16_t port;
};

#define COORD_CLIENT_MAX_ENDPOINTS 8u

/* Outcome of a lease request. */
enum coord_lease_status {
    COORD_LEASE_GRANTED = 0, /* ACQUIRE, TRANSFER: the lease is (still) ours / handed over */
    COORD_LEASE_DENIED = 1,  /* held by another: holder, epoch, remaining_ms say by whom */
    COORD_LEASE_RELEASED = 2 /* RELEASE done (also when it was no longer ours) */
};

struct coord_lease_reply {
    int status;            /* 0, or TDM_ECLOSED (session ended), TDM_EINVAL (the witness refused
                            * the request: error says why), -errno */
    int lease;             /* enum coord_lease_status when status == 0 */
    uint64_t epoch;        /* GRANTED: the lease's epoch; DENIED: the holder's */
    uint32_t ttl_ms;       /* GRANTED: time to live granted. The witness counts it from the
                            * request's arrival; the holder must count from its own send of the
                            * request, which is earlier (docs/cluster.md "Timing") */
    const char *holder;    /* DENIED: who holds it; else NULL. Borrowed for the callback */
    uint32_t remaining_ms; /* DENIED: how long the holder's lease still runs */
    const char *error;     /* status != 0: a reason (borrowed for the callback), may be NULL */
};
typedef void coord_lease_cb(void *ctx, const struct coord_lease_reply *reply);

/* A key's state: its lease (when it has one) and its value (when one was set). */
struct coord_value_reply {
    int status;            /* 0, TDM_ECONFLICT (CAS: version is the current one), TDM_ECLOSED,
                            * TDM_EINVAL, -errno */
    const char *error;     /* status != 0 and not ECONFLICT: reason or NULL */
    const char *holder;    /* lease holder, NULL when free/expired */
    uint64_t epoch;        /* the lease's epoch (also of a free lease: the last one) */
    uint32_t remaining_ms; /* of the holder's lease */
    uint64_t version;      /* the value's version: 0 = never set; each CAS adds 1 */
    const uint8_t *value;  /* borrowed for the callback; NULL when version == 0 */
    uint32_t value_len;    /* <= COORD_VALUE_MAX */
};
typedef void coord_value_cb(void *ctx, const struct coord_value_reply *reply);

/* Largest value a key holds (cluster records such as "last failover"). */
#define COORD_VALUE_MAX 4096u
/* Keys: 1..255 bytes, no NUL ("cms/mail1"). */
#define COORD_KEY_MAX 255u

struct coord_client_options {
    struct coord_client_endpoint endpoints[COORD_CLIENT_MAX_ENDPOINTS];
    unsigned n_endpoints; /* 1.. */
    SSL_CTX *tls;         /* client context ([tls]: certificate, key, CA); borrowed, outlives the
                           * client. NULL: plain TCP, for tests only */
    const char *member;   /* this server's name, 1..255 bytes; copied */
    const char *key;      /* its server key; copied, wiped on free */
    const char *cluster;  /* the cluster's name (for the witness's status and log); copied */
    uint32_t timeout_ms;  /* connect, handshake and per-request answer; 0 = 2000. The session
                           * sends PING every third of it (requests outstanding or not), so
                           * silence = lost */
    /* Session up: the witness accepted HELLO on endpoints[index]. */
    void (*on_up)(void *ctx, unsigned index);
    /* Session lost (or never came up): why, for the log and status. Required. */
    void (*on_lost)(void *ctx, const char *why);
    /* A watched key changed (NOTIFY): reply->status is 0. Optional. */
    void (*on_notify)(void *ctx, const char *key, const struct coord_value_reply *reply);
    void *ctx;
};

/* 0 with *client_r; TDM_EINVAL (bad options), -ENOMEM. Nothing happens until connect. */
int coord_client_new(struct event_base *base, const struct coord_client_options *opt,
                     struct coord_client **client_r);
/* Ends the session without calling anything (pending callbacks are dropped). NULL allowed. */
void coord_client_free(struct coord_client **client);

/* Starts a session (no-op while one is up or being set up). 0, or -errno/-ENOMEM: then
 * on_lost is not called. */
int coord_client_connect(struct coord_client *c);
/* Ends the session at once (the witness frees our leases); calls on_lost("closed"). */
void coord_client_disconnect(struct coord_client *c);
/* True between on_up and on_lost. */
bool coord_client_is_up(const struct coord_client *c);

/*
 * Requests. Each returns 0 and later calls cb exactly once (cb may be NULL for fire and
 * forget), or fails at once with TDM_ECLOSED (no session), TDM_EINVAL (key/value breaks a
 * limit) or -ENOMEM, and then never calls cb. key is copied.
 */
/* Acquire or renew key for ttl_ms (1..600000); min_epoch: the highest epoch this node knows. */
int coord_client_acquire(struct coord_client *c, const char *key, uint32_t ttl_ms,
                         uint64_t min_epoch, coord_lease_cb *cb, void *ctx);
/* Release key held with epoch. */
int coord_client_release(struct coord_client *c, const char *key, uint64_t epoch,
                         coord_lease_cb *cb, void *ctx);
/* Hand key (held with epoch) to member to with epoch + 1; GRANTED carries the new epoch. The
 * new holder's lease runs for the ttl of the last grant, from the transfer. */
int coord_client_transfer(struct coord_client *c, const char *key, uint64_t epoch, const char *to,
                          coord_lease_cb *cb, void *ctx);
/* The key's lease and value. */
int coord_client_get(struct coord_client *c, const char *key, coord_value_cb *cb, void *ctx);
/* Sets key's value to value (0..COORD_VALUE_MAX bytes) if its version is expected_version;
 * reply: the new version, or TDM_ECONFLICT with the current state. */
int coord_client_cas(struct coord_client *c, const char *key, uint64_t expected_version,
                     const void *value, uint32_t value_len, coord_value_cb *cb, void *ctx);
/* Watches key for this session: cb answers with the current state, then on_notify on every
 * change of its lease or value. */
int coord_client_watch(struct coord_client *c, const char *key, coord_value_cb *cb, void *ctx);

#endif
