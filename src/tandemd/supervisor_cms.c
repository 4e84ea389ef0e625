/*
 * The CMS addresses, supervisor side (docs/cluster.md, "CMS address"). The core decides which
 * CMS is up here (CMS_CONTROL); this file binds, for every client protocol's [listen] and for
 * [listen replication], the same port on the CMS's address, and once every one is bound hands
 * the sockets to the children through the supervisor's hooks (the workers of each protocol,
 * the core for replication). Down closes them here and tells the children to close theirs,
 * which ends the connections accepted on them.
 *
 * A bind refused with EADDRINUSE means another process (on loopback, the old active node on
 * the same machine) still holds the address and port: it is retried every 100 ms until it
 * succeeds or the CMS goes down again. That refusal is the last line of the guard against two
 * actives, so nothing here ever sets SO_REUSEPORT, which would let both bind. Any other error
 * (the address is not on this host yet, a port below 1024 without the capability) is retried
 * every second, with its own event.
 *
 * Every protocol or none: the sockets are bound one by one but listen only once all are, so
 * while one is refused the others refuse connections instead of queueing them unserved.
 *
 * Sockets are close-on-exec: a child gets one only through its descriptor channel.
 *
 * A CMS with an interface ([cms] interface = ...): its address is added to that interface
 * before the first bind (a failure there is retried every second, event 5044), announced by
 * gratuitous ARP once every port is bound (then twice more a second apart, for a frame lost
 * or a neighbour whose entry was too fresh to be overridden), and deleted right after the
 * sockets are closed, in the same step as the core's DOWN, so it leaves with the fence
 * (supervisor_cms_iface.h). One left by a crashed run is deleted at start.
 */
#include "tandemd/tandemd.h"

#include "lib/clock.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "tandemd/supervisor_cms_iface.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CMS_RETRY_IN_USE_MS 100u
#define CMS_RETRY_OTHER_MS 1000u
#define CMS_ANNOUNCE_COUNT 3u
#define CMS_ANNOUNCE_INTERVAL_MS 1000u

/* One CMS asked up: created by the core's UP, freed by its DOWN. */
struct sup_cms_entry {
    struct sup_cms *sc;
    char name[TDM_CONFIG_NAME_MAX + 1];
    struct tdm_config_addr address;  /* as configured when it was asked up */
    int fds[TDM_PROTO_COUNT];        /* -1: not bound (yet), or a protocol without [listen] */
    uint32_t ports[TDM_PROTO_COUNT]; /* 0: the protocol is not served on the CMS address */
    bool handed;                     /* every socket bound and given to the children */
    int last_errno;                  /* of the last failed bind or listen, and its */
    int last_proto;                  /* protocol: one event per cause */
    struct event *retry;
    uint64_t since_ms; /* asked up, tdm_clock_ms() */
    struct tdm_config_cms conf; /* as configured when asked up: its interface, if any */
    bool on_iface;              /* the address was added to conf.interface by us */
    struct event *announce;     /* the announcements after the first */
    unsigned announce_left;
    struct sup_cms_entry *next;
};

struct sup_cms {
    struct event_base *base;
    const struct tdm_config *cfg; /* the supervisor's, updated in place at reload */
    struct sup_cms_hooks hooks;
    struct sup_cms_entry *entries;
};

bool
tandemd__cms_proto(enum tdm_proto proto)
{
    switch (proto) {
    case TDM_PROTO_IMAP:
    case TDM_PROTO_IMAPS:
    case TDM_PROTO_LMTP:
    case TDM_PROTO_SMTP:
    case TDM_PROTO_SUBMISSION:
    case TDM_PROTO_HTTP:
    case TDM_PROTO_HTTPS:
    case TDM_PROTO_REPLICATION:
        return true;
    default:
        return false;
    }
}

static void
entry_close_fds(struct sup_cms_entry *e)
{
    for (int p = 0; p < TDM_PROTO_COUNT; p++) {
        if (e->fds[p] >= 0)
            close(e->fds[p]);
        e->fds[p] = -1;
    }
}

/* Hands every socket of e to the children serving its protocol. */
static void
entry_hand(struct sup_cms_entry *e, int only_proto)
{
    struct sup_cms *sc = e->sc;
    for (int p = 0; p < TDM_PROTO_COUNT; p++)
        if (e->fds[p] >= 0 && (only_proto < 0 || only_proto == p))
            sc->hooks.listen(sc->hooks.ctx, e->name, (enum tdm_proto)p, e->fds[p]);
}

static void
entry_arm_retry(struct sup_cms_entry *e, uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(e->retry, &tv);
}

/* "imap:143, lmtp:24": e's protocols, or only those bound so far. */
static void
entry_protos(const struct sup_cms_entry *e, bool bound_only, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int p = 0; p < TDM_PROTO_COUNT; p++)
        if (e->ports[p] && (!bound_only || e->fds[p] >= 0))
            snprintf(buf + strlen(buf), size - strlen(buf), "%s%s:%u", buf[0] ? ", " : "",
                     tdm_config_proto_name((enum tdm_proto)p), (unsigned)e->ports[p]);
}

/* Protocol p of e could not be bound or could not listen (err, an errno): says so once per
 * cause, naming what is held meanwhile, and tries again later. */
static void
entry_failed(struct sup_cms_entry *e, int p, int err)
{
    struct sup_cms *sc = e->sc;
    if (err != e->last_errno || p != e->last_proto) {
        e->last_errno = err;
        e->last_proto = p;
        char bound[256];
        entry_protos(e, true, bound, sizeof(bound));
        if (err == EADDRINUSE)
            event_emit(TDM_EV_CMS_BIND_RETRYING, e->name,
                       "CMS %s: %s port %u for %s is in use (another node may still hold the "
                       "address); no protocol is served on it until every one is bound "
                       "(bound: %s); retrying every %u ms",
                       e->name, e->address.text, (unsigned)e->ports[p],
                       tdm_config_proto_name((enum tdm_proto)p), bound[0] ? bound : "none",
                       CMS_RETRY_IN_USE_MS);
        else
            event_emit(TDM_EV_CMS_BIND_FAILED, e->name,
                       "CMS %s: cannot listen on %s port %u for %s: %s; no protocol is served "
                       "on it until every one is bound (bound: %s); retrying every %u ms",
                       e->name, e->address.text, (unsigned)e->ports[p],
                       tdm_config_proto_name((enum tdm_proto)p), strerror(err),
                       bound[0] ? bound : "none", CMS_RETRY_OTHER_MS);
        sc->hooks.state(sc->hooks.ctx, e->name, TDM_IPC_CMS_BINDING);
    }
    entry_arm_retry(e, err == EADDRINUSE ? CMS_RETRY_IN_USE_MS : CMS_RETRY_OTHER_MS);
}

/* The address of e could not be added to its interface (err, a -errno): said once per cause,
 * tried again in a second. */
static void
entry_iface_failed(struct sup_cms_entry *e, int err)
{
    struct sup_cms *sc = e->sc;
    if (-err != e->last_errno || e->last_proto != -1) {
        e->last_errno = -err;
        e->last_proto = -1;
        event_emit(TDM_EV_CMS_INTERFACE_FAILED, e->name,
                   "CMS %s: cannot add %s/%u to interface %s: %s; no protocol is served on it "
                   "until it is there; retrying every %u ms",
                   e->name, e->address.text,
                   e->conf.prefix_len ? e->conf.prefix_len : 32u, e->conf.interface,
                   strerror(-err), CMS_RETRY_OTHER_MS);
        sc->hooks.state(sc->hooks.ctx, e->name, TDM_IPC_CMS_BINDING);
    }
    entry_arm_retry(e, CMS_RETRY_OTHER_MS);
}

static void
entry_announce(struct sup_cms_entry *e)
{
    int r = sup_cms_iface_announce(&e->conf);
    if (r < 0)
        event_emit(TDM_EV_CMS_ANNOUNCE_FAILED, e->name,
                   "CMS %s: cannot announce %s on interface %s (gratuitous ARP): %s; "
                   "neighbours reach it once their cache entry for it expires",
                   e->name, e->address.text, e->conf.interface, strerror(-r));
    if (e->announce_left > 0) {
        e->announce_left--;
        struct timeval tv = {.tv_sec = CMS_ANNOUNCE_INTERVAL_MS / 1000,
                             .tv_usec = (CMS_ANNOUNCE_INTERVAL_MS % 1000) * 1000};
        evtimer_add(e->announce, &tv);
    }
}

static void
entry_announce_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    entry_announce(arg);
}

/* Deletes e's address from its interface if we added it. */
static void
entry_iface_remove(struct sup_cms_entry *e)
{
    if (!e->on_iface)
        return;
    e->on_iface = false;
    int r = sup_cms_iface_del(&e->conf);
    if (r < 0 && r != -EADDRNOTAVAIL)
        event_emit(TDM_EV_CMS_INTERFACE_FAILED, e->name,
                   "CMS %s: cannot delete %s from interface %s: %s; it stays there until this "
                   "server starts again (remove it by hand: ip addr del %s/%u dev %s)",
                   e->name, e->address.text, e->conf.interface, strerror(-r), e->address.text,
                   e->conf.prefix_len ? e->conf.prefix_len : 32u, e->conf.interface);
}

/* Binds what is not bound yet; when all are, makes them listen, hands them over and says so.
 * Every protocol or none: a port bound while another is refused does not listen yet, so a
 * client connecting to it is refused at once (and tries again, or another address) instead
 * of waiting in a backlog nobody accepts from, and the address is never half served. */
static void
entry_try(struct sup_cms_entry *e)
{
    struct sup_cms *sc = e->sc;
    if (e->conf.interface[0] && !e->on_iface) {
        int r = sup_cms_iface_add(&e->conf);
        if (r < 0) {
            entry_iface_failed(e, r);
            return;
        }
        e->on_iface = true;
    }
    for (int p = 0; p < TDM_PROTO_COUNT; p++) {
        if (!e->ports[p] || e->fds[p] >= 0)
            continue;
        int fd = tandemd__bound_socket(&e->address, e->ports[p]);
        if (fd < 0) {
            entry_failed(e, p, -fd);
            return;
        }
        e->fds[p] = fd;
    }
    for (int p = 0; p < TDM_PROTO_COUNT; p++) {
        if (e->fds[p] >= 0 && listen(e->fds[p], TANDEMD_LISTEN_BACKLOG) < 0) {
            /* Someone listens on that port since our bind (both with SO_REUSEADDR, which
             * Linux checks again at listen): the guard against two actives, as at bind.
             * Close them all, since those already listening would queue connections. */
            int err = errno;
            entry_close_fds(e);
            entry_failed(e, p, err);
            return;
        }
    }
    e->handed = true;
    entry_hand(e, -1);
    sc->hooks.state(sc->hooks.ctx, e->name, TDM_IPC_CMS_UP);
    char protos[256];
    entry_protos(e, false, protos, sizeof(protos));
    char where[64] = "";
    if (e->conf.interface[0])
        snprintf(where, sizeof(where), " on interface %s", e->conf.interface);
    event_emit(TDM_EV_CMS_ADDRESS_UP, e->name, "CMS %s: address %s up%s (%s) after %llu ms",
               e->name, e->address.text, where, protos[0] ? protos : "no protocols",
               (unsigned long long)(tdm_clock_ms() - e->since_ms));
    if (e->conf.interface[0]) {
        e->announce_left = CMS_ANNOUNCE_COUNT - 1;
        entry_announce(e);
    }
}

static void
entry_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    entry_try(arg);
}

struct sup_cms *
tandemd__sup_cms_new(struct event_base *base, const struct tdm_config *cfg,
                     const struct sup_cms_hooks *hooks)
{
    struct sup_cms *sc = calloc(1, sizeof(*sc));
    if (!sc)
        log_fatal("out of memory");
    sc->base = base;
    sc->cfg = cfg;
    sc->hooks = *hooks;
    /* Before the core runs, so before any lease is won. */
    sup_cms_iface_remove_stale(cfg);
    return sc;
}

static struct sup_cms_entry **
entry_slot(struct sup_cms *sc, const char *name, size_t len)
{
    struct sup_cms_entry **pp = &sc->entries;
    while (*pp && !(strlen((*pp)->name) == len && memcmp((*pp)->name, name, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void
entry_down(struct sup_cms_entry **pp)
{
    struct sup_cms_entry *e = *pp;
    struct sup_cms *sc = e->sc;
    *pp = e->next;
    evtimer_del(e->retry);
    event_free(e->retry);
    event_free(e->announce);
    entry_close_fds(e);
    /* Every child that may hold one of its sockets closes it, and ends what it accepted. */
    sc->hooks.close(sc->hooks.ctx, e->name);
    /* Off the interface now, not once the children have said goodbye: this runs on the way to
     * the fence deadline, and another node may take the address right after it. The goodbyes
     * of connections on it may then not reach their clients, which reconnect anyway. */
    bool was_on_iface = e->on_iface;
    entry_iface_remove(e);
    sc->hooks.state(sc->hooks.ctx, e->name, TDM_IPC_CMS_DOWN);
    char where[64] = "";
    if (was_on_iface)
        snprintf(where, sizeof(where), ", removed from interface %s", e->conf.interface);
    event_emit(TDM_EV_CMS_ADDRESS_DOWN, e->name,
               "CMS %s: address %s down%s%s; the connections accepted on it are ended", e->name,
               e->address.text, e->handed ? "" : " (it was never bound)", where);
    free(e);
}

int
tandemd__sup_cms_control(struct sup_cms *sc, const char *name, size_t len, bool up)
{
    struct sup_cms_entry **pp = entry_slot(sc, name, len);
    if (!up) {
        if (*pp) {
            entry_down(pp);
        } else if (len <= TDM_CONFIG_NAME_MAX) {
            /* Down already: the core still hears so, to settle what it shows. */
            char copy[TDM_CONFIG_NAME_MAX + 1];
            memcpy(copy, name, len);
            copy[len] = '\0';
            sc->hooks.state(sc->hooks.ctx, copy, TDM_IPC_CMS_DOWN);
        }
        return 0;
    }
    if (*pp) {
        /* Already asked: the core says it again after a restart of ours or its; tell it
         * where things stand. */
        sc->hooks.state(sc->hooks.ctx, (*pp)->name,
                        (*pp)->handed ? TDM_IPC_CMS_UP : TDM_IPC_CMS_BINDING);
        return 0;
    }
    const struct tdm_config_cms *cms = NULL;
    for (unsigned i = 0; i < sc->cfg->n_cms; i++)
        if (strlen(sc->cfg->cms[i].name) == len && memcmp(sc->cfg->cms[i].name, name, len) == 0)
            cms = &sc->cfg->cms[i];
    if (!cms)
        return TDM_ENOTFOUND;
    struct sup_cms_entry *e = calloc(1, sizeof(*e));
    if (!e)
        log_fatal("out of memory");
    e->sc = sc;
    snprintf(e->name, sizeof(e->name), "%s", cms->name);
    e->address = cms->address;
    e->conf = *cms;
    for (int p = 0; p < TDM_PROTO_COUNT; p++)
        e->fds[p] = -1;
    for (unsigned i = 0; i < sc->cfg->n_listeners; i++)
        if (tandemd__cms_proto(sc->cfg->listeners[i].proto))
            e->ports[sc->cfg->listeners[i].proto] = sc->cfg->listeners[i].port;
    e->retry = evtimer_new(sc->base, entry_retry_cb, e);
    e->announce = evtimer_new(sc->base, entry_announce_cb, e);
    if (!e->retry || !e->announce)
        log_fatal("out of memory");
    e->since_ms = tdm_clock_ms();
    e->next = *pp;
    *pp = e;
    entry_try(e);
    return 0;
}

void
tandemd__sup_cms_all_down(struct sup_cms *sc)
{
    while (sc->entries)
        entry_down(&sc->entries);
}

void
tandemd__sup_cms_resend(struct sup_cms *sc, enum tdm_proto proto)
{
    for (struct sup_cms_entry *e = sc->entries; e; e = e->next)
        if (e->handed)
            entry_hand(e, (int)proto);
}

void
tandemd__sup_cms_free(struct sup_cms **scp)
{
    struct sup_cms *sc = *scp;
    if (!sc)
        return;
    /* At exit: the children are gone, so only our own sockets and timers are left. */
    while (sc->entries) {
        struct sup_cms_entry *e = sc->entries;
        sc->entries = e->next;
        event_free(e->retry);
        event_free(e->announce);
        entry_close_fds(e);
        entry_iface_remove(e); /* a clean stop leaves nothing on the interface */
        free(e);
    }
    free(sc);
    *scp = NULL;
}
