/*
 * The pure halves of a CMS address on an interface: the rtnetlink request that adds or deletes
 * it and the parser of the kernel's answer (lib/rtnl_addr.h), and the gratuitous ARP frame
 * that announces it (lib/arp_announce.h). Byte for byte against the kernel's and RFC 826's
 * layouts, written out here by hand rather than through the same macros.
 */
#include "lib/arp_announce.h"
#include "lib/rtnl_addr.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

static uint32_t
u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* netlink is host order */
    return v;
}

static uint16_t
u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static void
test_add_ipv4(void **state)
{
    (void)state;
    struct rtnl_addr a = {.family = AF_INET, .bytes = {198, 18, 1, 10}, .prefix_len = 24,
                          .ifindex = 7};
    unsigned char buf[RTNL_ADDR_REQUEST_MAX];
    int n = rtnl_addr_build(buf, sizeof(buf), true, 42, &a);
    /* 16 header + 8 ifaddrmsg + 2 x (4 rtattr + 4 address) */
    assert_int_equal(n, 40);
    assert_int_equal(u32(buf), 40);
    assert_int_equal(u16(buf + 4), RTM_NEWADDR);
    assert_int_equal(u16(buf + 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    assert_int_equal(u32(buf + 8), 42);
    assert_int_equal(u32(buf + 12), 0);
    /* ifaddrmsg: family, prefix, flags, scope, index */
    assert_int_equal(buf[16], AF_INET);
    assert_int_equal(buf[17], 24);
    assert_int_equal(buf[18], 0);
    assert_int_equal(buf[19], RT_SCOPE_UNIVERSE);
    assert_int_equal(u32(buf + 20), 7);
    /* IFA_LOCAL then IFA_ADDRESS, each the address */
    assert_int_equal(u16(buf + 24), 8);
    assert_int_equal(u16(buf + 26), IFA_LOCAL);
    assert_memory_equal(buf + 28, a.bytes, 4);
    assert_int_equal(u16(buf + 32), 8);
    assert_int_equal(u16(buf + 34), IFA_ADDRESS);
    assert_memory_equal(buf + 36, a.bytes, 4);
}

static void
test_delete_ipv6(void **state)
{
    (void)state;
    struct rtnl_addr a = {.family = AF_INET6, .prefix_len = 64, .ifindex = 3};
    a.bytes[0] = 0x20;
    a.bytes[1] = 0x01;
    a.bytes[15] = 9;
    unsigned char buf[RTNL_ADDR_REQUEST_MAX];
    int n = rtnl_addr_build(buf, sizeof(buf), false, 1, &a);
    assert_int_equal(n, 16 + 8 + 20); /* IFA_LOCAL alone: any prefix length matches */
    assert_int_equal(u32(buf), 16 + 8 + 20);
    assert_int_equal(u16(buf + 4), RTM_DELADDR);
    assert_int_equal(u16(buf + 6), NLM_F_REQUEST | NLM_F_ACK); /* no create on a delete */
    assert_int_equal(buf[16], AF_INET6);
    assert_int_equal(buf[17], 64);
    assert_int_equal(buf[18], IFA_F_NODAD);
    assert_int_equal(u16(buf + 24), 20);
    assert_int_equal(u16(buf + 26), IFA_LOCAL);
    assert_memory_equal(buf + 28, a.bytes, 16);
}

static void
test_build_refuses(void **state)
{
    (void)state;
    unsigned char buf[RTNL_ADDR_REQUEST_MAX];
    struct rtnl_addr a = {.family = AF_INET, .prefix_len = 33, .ifindex = 1};
    assert_int_equal(rtnl_addr_build(buf, sizeof(buf), true, 1, &a), -EINVAL);
    a.prefix_len = 32;
    a.ifindex = 0;
    assert_int_equal(rtnl_addr_build(buf, sizeof(buf), true, 1, &a), -EINVAL);
    a.ifindex = 1;
    a.family = AF_UNIX;
    assert_int_equal(rtnl_addr_build(buf, sizeof(buf), true, 1, &a), -EINVAL);
    a.family = AF_INET;
    assert_int_equal(rtnl_addr_build(buf, 39, true, 1, &a), -ENOSPC);
    assert_int_equal(rtnl_addr_build(buf, 40, true, 1, &a), 40);
    a.family = AF_INET6;
    a.prefix_len = 129;
    assert_int_equal(rtnl_addr_build(buf, sizeof(buf), true, 1, &a), -EINVAL);
}

/* An error message as the kernel writes it: header, code, the request's header. */
static size_t
put_error(unsigned char *p, uint32_t seq, int code)
{
    struct nlmsghdr h = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct nlmsgerr)),
                         .nlmsg_type = NLMSG_ERROR, .nlmsg_seq = seq};
    struct nlmsgerr e = {.error = code, .msg = {.nlmsg_len = 40, .nlmsg_seq = seq}};
    memcpy(p, &h, sizeof(h));
    memcpy(p + NLMSG_HDRLEN, &e, sizeof(e));
    return NLMSG_SPACE(sizeof(e));
}

static void
test_ack_parse(void **state)
{
    (void)state;
    unsigned char buf[256];
    int err = 99;
    size_t n = put_error(buf, 5, 0);
    assert_int_equal(rtnl_ack_parse(buf, n, 5, &err), 1);
    assert_int_equal(err, 0);
    n = put_error(buf, 5, -EEXIST);
    assert_int_equal(rtnl_ack_parse(buf, n, 5, &err), 1);
    assert_int_equal(err, -EEXIST);
    /* Another request's answer only: not ours. */
    assert_int_equal(rtnl_ack_parse(buf, n, 6, &err), 0);
    /* Ours after another message in the same datagram. */
    size_t m = put_error(buf + n, 6, -EADDRNOTAVAIL);
    assert_int_equal(rtnl_ack_parse(buf, n + m, 6, &err), 1);
    assert_int_equal(err, -EADDRNOTAVAIL);
    /* An empty datagram holds nothing. */
    assert_int_equal(rtnl_ack_parse(buf, 0, 6, &err), 0);
}

static void
test_ack_parse_malformed(void **state)
{
    (void)state;
    unsigned char buf[256];
    int err = 0;
    size_t n = put_error(buf, 5, 0);
    /* Cut anywhere inside the message: it says it is longer than what arrived. */
    for (size_t cut = 1; cut < n; cut++)
        assert_int_equal(rtnl_ack_parse(buf, cut, 5, &err), -EBADMSG);
    /* An error message too short to hold its code and the request's header. */
    struct nlmsghdr h = {.nlmsg_len = NLMSG_HDRLEN + 4, .nlmsg_type = NLMSG_ERROR,
                         .nlmsg_seq = 5};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(rtnl_ack_parse(buf, NLMSG_HDRLEN + 4, 5, &err), -EBADMSG);
    /* A length below the header's own. */
    h.nlmsg_len = 8;
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(rtnl_ack_parse(buf, 64, 5, &err), -EBADMSG);
    /* A positive code, or one beyond any errno. */
    n = put_error(buf, 5, 1);
    assert_int_equal(rtnl_ack_parse(buf, n, 5, &err), -EBADMSG);
    n = put_error(buf, 5, -5000);
    assert_int_equal(rtnl_ack_parse(buf, n, 5, &err), -EBADMSG);
    /* Bytes after another request's answer that are no message. */
    n = put_error(buf, 6, 0);
    memset(buf + n, 0, 4);
    assert_int_equal(rtnl_ack_parse(buf, n + 4, 5, &err), -EBADMSG);
}

static void
test_arp_frames(void **state)
{
    (void)state;
    const unsigned char mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
    const unsigned char ip[4] = {198, 18, 1, 100};
    unsigned char f[ARP_ANNOUNCE_FRAME_LEN];
    const unsigned char request[ARP_ANNOUNCE_FRAME_LEN] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,       /* Ethernet destination: broadcast */
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55,       /* source: the interface */
        0x08, 0x06,                               /* ARP */
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, /* Ethernet, IPv4, 6, 4, request */
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55,       /* sender MAC */
        198, 18, 1, 100,                          /* sender IP */
        0, 0, 0, 0, 0, 0,                         /* target MAC: unknown */
        198, 18, 1, 100,                          /* target IP: the same */
    };
    arp_announce_frame(f, mac, ip, false);
    assert_memory_equal(f, request, sizeof(f));
    unsigned char reply[ARP_ANNOUNCE_FRAME_LEN];
    memcpy(reply, request, sizeof(reply));
    reply[21] = 0x02; /* reply */
    memcpy(reply + 32, mac, 6);
    arp_announce_frame(f, mac, ip, true);
    assert_memory_equal(f, reply, sizeof(f));
}

/* Without an Ethernet interface of that name there is nothing to announce on: said, not
 * crashed (the unit test runs without privileges, so EPERM is an acceptable answer too). */
static void
test_arp_announce_no_interface(void **state)
{
    (void)state;
    const unsigned char ip[4] = {198, 18, 1, 100};
    int r = arp_announce("tdm-no-such0", ip);
    assert_true(r == -ENODEV || r == -EPERM || r == -EACCES);
    r = arp_announce("an-interface-name-too-long", ip);
    assert_true(r == -ENODEV);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_ipv4),
        cmocka_unit_test(test_delete_ipv6),
        cmocka_unit_test(test_build_refuses),
        cmocka_unit_test(test_ack_parse),
        cmocka_unit_test(test_ack_parse_malformed),
        cmocka_unit_test(test_arp_frames),
        cmocka_unit_test(test_arp_announce_no_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
