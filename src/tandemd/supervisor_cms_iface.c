/*
 * A CMS address on a network interface, supervisor side (supervisor_cms_iface.h).
 */
#include "tandemd/supervisor_cms_iface.h"

#include "lib/arp_announce.h"
#include "lib/event.h"
#include "lib/rtnl_addr.h"

#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>

/* c's address as rtnetlink takes it. A prefix length not given is a host address (/32): the
 * node reaches the segment through its own address there, so the CMS address needs no route
 * of its own. */
static int
to_rtnl(const struct tdm_config_cms *c, struct rtnl_addr *a)
{
    memset(a, 0, sizeof(*a));
    unsigned idx = if_nametoindex(c->interface);
    if (idx == 0)
        return -ENODEV;
    a->ifindex = (int)idx;
    a->family = c->address.family;
    memcpy(a->bytes, c->address.bytes, sizeof(a->bytes));
    a->prefix_len = c->prefix_len ? c->prefix_len : (c->address.family == AF_INET ? 32 : 128);
    return 0;
}

int
sup_cms_iface_add(const struct tdm_config_cms *c)
{
    struct rtnl_addr a;
    int r = to_rtnl(c, &a);
    if (r < 0)
        return r;
    r = rtnl_addr_change(true, &a);
    /* There already: put there by an operator, or by us before a failed bind; either way it
     * is what is wanted, and it is deleted when the CMS goes down. */
    return r == -EEXIST ? 0 : r;
}

int
sup_cms_iface_del(const struct tdm_config_cms *c)
{
    struct rtnl_addr a;
    int r = to_rtnl(c, &a);
    if (r < 0)
        return r;
    return rtnl_addr_change(false, &a);
}

int
sup_cms_iface_announce(const struct tdm_config_cms *c)
{
    if (c->address.family != AF_INET)
        return -EAFNOSUPPORT; /* config.c refuses it; IPv6 would need a neighbour advert */
    return arp_announce(c->interface, c->address.bytes);
}

void
sup_cms_iface_remove_stale(const struct tdm_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        const struct tdm_config_cms *c = &cfg->cms[i];
        if (!c->interface[0])
            continue;
        int r = sup_cms_iface_del(c);
        if (r == 0)
            event_emit(TDM_EV_CMS_STALE_ADDRESS_REMOVED, c->name,
                       "CMS %s: address %s was on interface %s at start (left by an earlier "
                       "run of this server); removed: it comes back only once this node is "
                       "active again",
                       c->name, c->address.text, c->interface);
        else if (r != -EADDRNOTAVAIL && r != -ENODEV) /* no interface, nothing left on it:
                                                       * bringing the CMS up will say so */
            event_emit(TDM_EV_CMS_INTERFACE_FAILED, c->name,
                       "CMS %s: cannot check interface %s at start for address %s left by an "
                       "earlier run: %s",
                       c->name, c->interface, c->address.text, strerror(-r));
    }
}
