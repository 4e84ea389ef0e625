/*
 * rtnetlink address requests (lib/rtnl_addr.h). The layout is the kernel's uapi: an nlmsghdr,
 * an ifaddrmsg, then attributes (struct rtattr, each padded to 4 bytes).
 */
#include "lib/rtnl_addr.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The kernel never answers with an errno beyond this (include/linux/err.h, MAX_ERRNO). */
#define RTNL_MAX_ERRNO 4095

static size_t
put_attr(unsigned char *p, unsigned short type, const void *data, size_t len)
{
    struct rtattr rta = {.rta_len = (unsigned short)RTA_LENGTH(len), .rta_type = type};
    memcpy(p, &rta, sizeof(rta));
    memcpy(p + RTA_LENGTH(0), data, len);
    memset(p + RTA_LENGTH(len), 0, RTA_SPACE(len) - RTA_LENGTH(len));
    return RTA_SPACE(len);
}

int
rtnl_addr_build(void *buf, size_t size, bool add, uint32_t seq, const struct rtnl_addr *a)
{
    size_t alen;
    if (a->family == AF_INET)
        alen = 4;
    else if (a->family == AF_INET6)
        alen = 16;
    else
        return -EINVAL;
    if (a->prefix_len > alen * 8 || a->ifindex <= 0)
        return -EINVAL;
    size_t total = NLMSG_SPACE(sizeof(struct ifaddrmsg)) + (add ? 2 : 1) * RTA_SPACE(alen);
    if (size < total)
        return -ENOSPC;
    unsigned char *p = buf;
    memset(p, 0, total);
    struct nlmsghdr h = {
        .nlmsg_len = (uint32_t)total,
        .nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR,
        .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0),
        .nlmsg_seq = seq,
        .nlmsg_pid = 0,
    };
    memcpy(p, &h, sizeof(h));
    struct ifaddrmsg ifa = {
        .ifa_family = (unsigned char)a->family,
        .ifa_prefixlen = (unsigned char)a->prefix_len,
        /* IPv6 would otherwise hold the address tentative for a second or more of DAD, and
         * a bind to it would fail meanwhile; the lease, not DAD, guards against two holders. */
        .ifa_flags = a->family == AF_INET6 ? IFA_F_NODAD : 0,
        .ifa_scope = RT_SCOPE_UNIVERSE,
        .ifa_index = (unsigned)a->ifindex,
    };
    memcpy(p + NLMSG_HDRLEN, &ifa, sizeof(ifa));
    size_t off = NLMSG_SPACE(sizeof(ifa));
    /* IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on point-to-point links and
     * the same elsewhere, as `ip addr add` sends it. A delete carries IFA_LOCAL alone: with
     * IFA_ADDRESS the kernel also matches the prefix length, and an address left by a crashed
     * run may have been added with another one. */
    off += put_attr(p + off, IFA_LOCAL, a->bytes, alen);
    if (add)
        off += put_attr(p + off, IFA_ADDRESS, a->bytes, alen);
    return (int)off;
}

int
rtnl_ack_parse(const void *buf, size_t len, uint32_t seq, int *error_r)
{
    const unsigned char *p = buf;
    size_t off = 0;
    while (len - off >= sizeof(struct nlmsghdr)) {
        struct nlmsghdr h;
        memcpy(&h, p + off, sizeof(h));
        if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > len - off)
            return -EBADMSG;
        if (h.nlmsg_seq == seq && h.nlmsg_type == NLMSG_ERROR) {
            /* An ACK is an error message with code 0. Its payload is the code and the header
             * of the request (more with extended ACKs, which are not asked for). */
            struct nlmsgerr e;
            if (h.nlmsg_len < NLMSG_HDRLEN + sizeof(e))
                return -EBADMSG;
            memcpy(&e, p + off + NLMSG_HDRLEN, sizeof(e));
            if (e.error > 0 || e.error < -RTNL_MAX_ERRNO)
                return -EBADMSG;
            *error_r = e.error;
            return 1;
        }
        size_t step = NLMSG_ALIGN(h.nlmsg_len);
        if (step >= len - off)
            return 0; /* the last message (its padding may be left out) */
        off += step;
    }
    if (off < len)
        return -EBADMSG; /* bytes left over that are no message */
    return 0;
}

int
rtnl_addr_change(bool add, const struct rtnl_addr *a)
{
    unsigned char req[RTNL_ADDR_REQUEST_MAX];
    /* The sequence number only tells our answer from anything else on the socket, which is
     * our own and used once. */
    uint32_t seq = (uint32_t)time(NULL);
    int n = rtnl_addr_build(req, sizeof(req), add, seq, a);
    if (n < 0)
        return n;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    /* The kernel answers an address change at once; a second bounds a stuck one so the
     * supervisor's loop never waits longer. */
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    int ret;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        sendto(fd, req, (size_t)n, 0, (struct sockaddr *)&kernel, sizeof(kernel)) != n) {
        ret = -errno;
        close(fd);
        return ret;
    }
    for (;;) {
        /* Aligned for the headers read out of it with memcpy anyway; big enough for an
         * error message that echoes the whole request. */
        unsigned char answer[1024];
        ssize_t got = recv(fd, answer, sizeof(answer), 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
            break;
        }
        int err = 0;
        int r = rtnl_ack_parse(answer, (size_t)got, seq, &err);
        if (r < 0) {
            ret = r;
            break;
        }
        if (r == 1) {
            ret = err;
            break;
        }
    }
    close(fd);
    return ret;
}
