#ifndef TANDEM_LIB_RTNL_ADDR_H
#define TANDEM_LIB_RTNL_ADDR_H

/*
 * Adding and deleting an IP address on a network interface through rtnetlink (RTM_NEWADDR,
 * RTM_DELADDR): what `ip addr add|del ADDR/LEN dev IF` does, for a CMS address that lives on
 * an interface (docs/cluster.md, "CMS address"). No library: the request is a few fixed
 * structures.
 *
 * Building the request and reading the kernel's answer are pure functions, so they are
 * unit-tested and the answer's parser is fuzzed (fuzz/rtnl_ack.c); rtnl_addr_change() is the
 * only part that touches a socket. It needs CAP_NET_ADMIN.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the largest request: header, ifaddrmsg, IFA_LOCAL and IFA_ADDRESS of 16 bytes. */
#define RTNL_ADDR_REQUEST_MAX 64

struct rtnl_addr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char bytes[16]; /* network order; the first 4 for AF_INET */
    unsigned prefix_len;     /* 0..32 or 0..128 */
    int ifindex;             /* > 0 */
};

/* Writes the request that adds (add) or deletes a to buf: its length, or -EINVAL for a bad
 * family, prefix length or index, -ENOSPC when size is too small. An add fails with EEXIST
 * when the address is already on the interface (NLM_F_EXCL); an IPv6 address is added without
 * duplicate address detection (IFA_F_NODAD), so it is usable at once, as an IPv4 one is. A
 * delete matches the address whatever its prefix length (a->prefix_len is still checked). */
int rtnl_addr_build(void *buf, size_t size, bool add, uint32_t seq, const struct rtnl_addr *a);

/* Looks in one datagram from the kernel (len bytes) for the answer to request seq.
 * Returns 1 when found, with *error_r = 0 (done) or the kernel's -errno; 0 when the datagram
 * holds only other messages; -EBADMSG when it is malformed (a message runs past the end, an
 * error message too short for its header, an error code that is not 0 or a -errno). */
int rtnl_ack_parse(const void *buf, size_t len, uint32_t seq, int *error_r);

/* Adds or deletes a, waiting at most a second for the kernel's answer. 0, or a -errno: the
 * kernel's (-EEXIST: added already; -EADDRNOTAVAIL: deleting one that is not there; -ENODEV;
 * -EPERM without CAP_NET_ADMIN) or the socket's. */
int rtnl_addr_change(bool add, const struct rtnl_addr *a);

#endif
