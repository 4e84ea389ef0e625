/*
 * Gratuitous ARP (lib/arp_announce.h). The frame layout is RFC 826's for IPv4 over Ethernet.
 */
#include "lib/arp_announce.h"

#include <errno.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void
put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

void
arp_announce_frame(unsigned char out[ARP_ANNOUNCE_FRAME_LEN], const unsigned char mac[6],
                   const unsigned char ipv4[4], bool reply)
{
    unsigned char *p = out;
    memset(p, 0xff, 6); /* to everyone on the segment */
    memcpy(p + 6, mac, 6);
    put16(p + 12, ETHERTYPE_ARP);
    p += 14;
    put16(p, ARPHRD_ETHER);
    put16(p + 2, ETHERTYPE_IP);
    p[4] = 6; /* hardware address length */
    p[5] = 4; /* protocol address length */
    put16(p + 6, reply ? ARPOP_REPLY : ARPOP_REQUEST);
    memcpy(p + 8, mac, 6);    /* sender: this interface */
    memcpy(p + 14, ipv4, 4);  /* at the announced address */
    /* Target: the same address. A request asks for nobody's MAC (zeros, RFC 5227's
     * announcement); a reply repeats the sender's, as Linux's arping -A does. */
    if (reply)
        memcpy(p + 18, mac, 6);
    else
        memset(p + 18, 0, 6);
    memcpy(p + 24, ipv4, 4);
}

int
arp_announce(const char *ifname, const unsigned char ipv4[4])
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (strlen(ifname) >= sizeof(ifr.ifr_name))
        return -ENODEV;
    memcpy(ifr.ifr_name, ifname, strlen(ifname));
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int ret = 0;
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
        ret = -errno;
        goto out;
    }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
        ret = -errno;
        goto out;
    }
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        ret = -EAFNOSUPPORT;
        goto out;
    }
    unsigned char mac[6];
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    struct sockaddr_ll to = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(ETHERTYPE_ARP),
        .sll_ifindex = ifindex,
        .sll_halen = 6,
    };
    memset(to.sll_addr, 0xff, 6);
    for (int reply = 0; reply <= 1; reply++) {
        unsigned char frame[ARP_ANNOUNCE_FRAME_LEN];
        arp_announce_frame(frame, mac, ipv4, reply);
        if (sendto(fd, frame, sizeof(frame), 0, (struct sockaddr *)&to, sizeof(to)) !=
            (ssize_t)sizeof(frame)) {
            ret = -errno;
            break;
        }
    }
out:
    close(fd);
    return ret;
}
