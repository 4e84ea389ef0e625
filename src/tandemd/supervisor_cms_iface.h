#ifndef TANDEM_TANDEMD_SUPERVISOR_CMS_IFACE_H
#define TANDEM_TANDEMD_SUPERVISOR_CMS_IFACE_H

/*
 * A CMS address that lives on a network interface ([cms] interface = ..., docs/cluster.md
 * "CMS address"), supervisor side: added to the interface before the ports are bound on it,
 * announced once they are, deleted once they are closed. supervisor_cms.c decides when; this
 * file does each step (lib/rtnl_addr.h, lib/arp_announce.h) and says what failed.
 *
 * Needs CAP_NET_ADMIN (add, delete) and CAP_NET_RAW (announce), which the supervisor keeps
 * across its drop to `user` only when some [cms] has an interface (sockets.c).
 */

#include "lib/config.h"

/* Adds c's address to its interface. 0 (also when it is there already), or -errno: -ENODEV
 * for no such interface, -EPERM without the capability, or the kernel's. */
int sup_cms_iface_add(const struct tdm_config_cms *c);

/* Deletes c's address from its interface, whatever prefix length it was added with. 0, or
 * -EADDRNOTAVAIL when it is not there, -ENODEV, -EPERM, or the kernel's. */
int sup_cms_iface_del(const struct tdm_config_cms *c);

/* One gratuitous ARP announcement of c's address from its interface. 0 or -errno. */
int sup_cms_iface_announce(const struct tdm_config_cms *c);

/* At the supervisor's start, before any core runs: every [cms] address with an interface that
 * is on that interface already (left by this node's earlier run, which crashed while active)
 * is deleted, with event 5045, since a node never serves on its memory of being active
 * (docs/cluster.md, "Start"). A failure is event 5044; the start goes on. */
void sup_cms_iface_remove_stale(const struct tdm_config *cfg);

#endif
