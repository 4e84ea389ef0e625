#ifndef TANDEM_LIB_ARP_ANNOUNCE_H
#define TANDEM_LIB_ARP_ANNOUNCE_H

/*
 * Gratuitous ARP: telling an Ethernet segment that an IPv4 address is now at this interface's
 * MAC address, so the neighbours' caches (clients, routers) move to it at once instead of
 * sending to the old holder until their entry goes stale (docs/cluster.md, "CMS address").
 *
 * Each announcement is two broadcast frames, an ARP request and an ARP reply, both with the
 * address as sender and target: some hosts update their cache only on one kind (RFC 5227
 * section 3 describes the request form; many routers take the reply form). A host updates an
 * entry it has for the address; Linux by default does not create one from it (arp_accept).
 *
 * The frame is built by a pure function (unit-tested); arp_announce() sends it on an AF_PACKET
 * socket, which needs CAP_NET_RAW.
 */

#include <stdbool.h>
#include <stddef.h>

#define ARP_ANNOUNCE_FRAME_LEN 42 /* Ethernet header 14 + ARP for IPv4 over Ethernet 28 */

/* Writes the broadcast frame announcing ipv4 (network order) at mac: an ARP request, or a
 * reply (reply). Always ARP_ANNOUNCE_FRAME_LEN bytes. */
void arp_announce_frame(unsigned char out[ARP_ANNOUNCE_FRAME_LEN], const unsigned char mac[6],
                        const unsigned char ipv4[4], bool reply);

/* Sends one announcement of ipv4 on interface ifname, from its own MAC address. 0, or -errno:
 * -ENODEV (no such interface), -EAFNOSUPPORT (not an Ethernet interface: loopback has no
 * neighbours to tell), -EPERM without CAP_NET_RAW, or a send error such as -ENETDOWN. */
int arp_announce(const char *ifname, const unsigned char ipv4[4]);

#endif
