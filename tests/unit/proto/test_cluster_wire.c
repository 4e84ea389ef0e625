/*
 * The heartbeat codec (src/proto/cluster/cluster_wire.c, docs/formats/cluster.md): every
 * message type round-trips byte for byte; every prefix of a frame needs more; a flipped bit is
 * refused (CRC) or, with the CRC repaired, refused or re-encoded exactly; the rules of each
 * field are refused by name on both sides; the layout matches the documented example.
 * `unit_proto_cluster_wire --write-corpus DIR` writes the fuzz seed corpus instead.
 */
#include "proto/cluster/cluster_wire.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define N_SAMPLES 7
static struct cluster_msg samples[N_SAMPLES];
static const char *const sample_names[N_SAMPLES] = {
    "hello",           "hello_reply_ok", "hello_reply_refused", "heartbeat_empty", "heartbeat_full",
    "heartbeat_reply", "error"};

static void
fill_summary(struct cluster_summary *s, uint32_t n_cms, uint32_t n_dbs)
{
    s->n_cms = n_cms;
    for (uint32_t i = 0; i < n_cms; i++) {
        snprintf(s->cms[i].name, sizeof(s->cms[i].name), "mail%u", i + 1);
        s->cms[i].role = (uint16_t)(i % 4);
        s->cms[i].epoch = 7 + i;
        if (s->cms[i].role == CLUSTER_CMS_MOVING) /* the longest name, as for the dbs */
            memset(s->cms[i].moving_to, 'n', CLUSTER_WIRE_NAME_MAX);
    }
    s->n_dbs = n_dbs;
    for (uint32_t i = 0; i < n_dbs; i++) {
        struct cluster_db_state *d = &s->dbs[i];
        /* The longest name a label allows, so the full sample is the largest frame. */
        memset(d->name, 'd', CLUSTER_WIRE_NAME_MAX);
        snprintf(d->name + CLUSTER_WIRE_NAME_MAX - 3, 4, "%03u", i % 1000u);
        d->generation = 1000 + i;
        d->offset = 4096 * i;
        d->lsn = UINT64_MAX - i;
        d->epoch = 3;
        d->copy_state = (uint16_t)(i % 9);
    }
}

static void
init_samples(void)
{
    memset(samples, 0, sizeof(samples));
    struct cluster_msg *m = &samples[0];
    m->type = CLUSTER_HELLO;
    m->request_id = 1;
    m->u.hello = (struct cluster_hello){.version_min = CLUSTER_WIRE_VERSION,
                                        .version_max = CLUSTER_WIRE_VERSION,
                                        .heartbeat_interval_ms = 1000,
                                        .heartbeat_misses = 5,
                                        .lease_ttl_ms = 4000};
    strcpy(m->u.hello.member, "mb1");
    strcpy(m->u.hello.cluster, "ccr1");
    strcpy(m->u.hello.key, "k3y-of-mb1");

    m = &samples[1];
    m->type = CLUSTER_HELLO_REPLY;
    m->request_id = 1;
    m->u.hello_reply.version = CLUSTER_WIRE_VERSION;
    strcpy(m->u.hello_reply.member, "mb2");

    m = &samples[2];
    m->type = CLUSTER_HELLO_REPLY;
    m->request_id = 9;
    m->u.hello_reply.code = CLUSTER_CODE_CLUSTER;
    strcpy(m->u.hello_reply.member, "mb2");
    strcpy(m->u.hello_reply.reason, "mb9 is not a member of cluster ccr1 here");

    m = &samples[3];
    m->type = CLUSTER_HEARTBEAT;
    m->u.heartbeat.seq = 1;
    m->u.heartbeat.sent_ms = 123456;

    m = &samples[4];
    m->type = CLUSTER_HEARTBEAT;
    m->u.heartbeat.seq = UINT64_MAX;
    m->u.heartbeat.sent_ms = UINT64_MAX;
    fill_summary(&m->u.heartbeat.summary, CLUSTER_WIRE_MAX_CMS, CLUSTER_WIRE_MAX_DBS);

    m = &samples[5];
    m->type = CLUSTER_HEARTBEAT_REPLY;
    m->u.heartbeat_reply.seq = 42;
    m->u.heartbeat_reply.sent_ms = 99;
    fill_summary(&m->u.heartbeat_reply.summary, 2, 3);

    m = &samples[6];
    m->type = CLUSTER_ERROR;
    m->u.error.code = CLUSTER_CODE_PROTOCOL;
    strcpy(m->u.error.text, "frame checksum mismatch");
}

static uint8_t buf[CLUSTER_WIRE_MAX_FRAME];
static struct cluster_msg decoded;

static size_t
encode_ok(const struct cluster_msg *m)
{
    size_t len = 0;
    const char *error = NULL;
    int rc = cluster_msg_encode(m, buf, sizeof(buf), &len, &error);
    if (rc != 0)
        fail_msg("encode: %s", error);
    return len;
}

static void
test_round_trip(void **state)
{
    (void)state;
    init_samples();
    static uint8_t again[CLUSTER_WIRE_MAX_FRAME];
    for (size_t i = 0; i < N_SAMPLES; i++) {
        size_t len = encode_ok(&samples[i]);
        size_t flen = 0;
        const char *error = NULL;
        assert_int_equal(cluster_msg_decode(buf, len, &decoded, &flen, &error), 0);
        assert_int_equal(flen, len);
        /* The decoded copy equals the sample field by field (zero padding included). */
        assert_memory_equal(&decoded, &samples[i], sizeof(decoded));
        size_t len2 = 0;
        assert_int_equal(cluster_msg_encode(&decoded, again, sizeof(again), &len2, &error), 0);
        assert_int_equal(len2, len);
        assert_memory_equal(again, buf, len);
    }
}

/* docs/formats/cluster.md's example: a HEARTBEAT with seq 1, sent_ms 1000 and an empty
 * summary, byte for byte. */
static void
test_doc_example(void **state)
{
    (void)state;
    struct cluster_msg m = {.type = CLUSTER_HEARTBEAT};
    m.u.heartbeat.seq = 1;
    m.u.heartbeat.sent_ms = 1000;
    size_t len = encode_ok(&m);
    static const uint8_t head[] = {
        0x30, 0x00, 0x00, 0x00, 0x02, 0x00, 0x10, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,                         /* header */
        0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,       /* seq */
        0x03, 0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,       /* sent_ms */
        0x07, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, /* two empty lists */
    };
    assert_int_equal(len, sizeof(head) + 4);
    assert_memory_equal(buf, head, sizeof(head));
    uint32_t crc = crc32c(0, head, sizeof(head));
    assert_int_equal(
        buf[len - 4] | buf[len - 3] << 8 | buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24, crc);
}

static void
test_prefixes_need_more(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < N_SAMPLES; i++) {
        size_t len = encode_ok(&samples[i]);
        for (size_t k = 0; k < len; k++) {
            const char *error = NULL;
            assert_int_equal(cluster_msg_decode(buf, k, &decoded, NULL, &error), TDM_ENEEDMORE);
        }
    }
}

static void
repair_crc(uint8_t *b, size_t len)
{
    uint32_t crc = crc32c(0, b, len - 4);
    for (int k = 0; k < 4; k++)
        b[len - 4 + k] = (uint8_t)(crc >> (8 * k));
}

/* A flipped bit fails the CRC; with the CRC repaired the frame is refused, or it decodes to a
 * message that re-encodes to exactly the flipped bytes (never anything in between). */
static void
test_bit_flips(void **state)
{
    (void)state;
    init_samples();
    static uint8_t again[CLUSTER_WIRE_MAX_FRAME];
    for (size_t i = 0; i < N_SAMPLES; i++) {
        if (i == 4)
            continue; /* the full summary: 80k flips, nothing the others do not cover */
        size_t len = encode_ok(&samples[i]);
        for (size_t bit = 0; bit < (len - 4) * 8; bit++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            const char *error = NULL;
            int rc = cluster_msg_decode(buf, len, &decoded, NULL, &error);
            assert_true(rc == TDM_ECORRUPT || rc == TDM_ENEEDMORE);
            repair_crc(buf, len);
            size_t flen = 0;
            rc = cluster_msg_decode(buf, len, &decoded, &flen, &error);
            if (rc == 0) {
                size_t len2 = 0;
                assert_int_equal(cluster_msg_encode(&decoded, again, sizeof(again), &len2, &error),
                                 0);
                assert_int_equal(len2, flen);
                assert_memory_equal(again, buf, flen);
            } else {
                assert_true(rc == TDM_ECORRUPT || rc == TDM_ENEEDMORE);
                assert_non_null(error);
            }
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            repair_crc(buf, len);
        }
    }
}

static void
expect_refused(const struct cluster_msg *m, const char *want)
{
    size_t len = 0;
    const char *error = NULL;
    assert_int_equal(cluster_msg_encode(m, buf, sizeof(buf), &len, &error), TDM_EINVAL);
    assert_string_equal(error, want);
}

static void
test_rules(void **state)
{
    (void)state;
    init_samples();
    struct cluster_msg m = samples[0];
    m.u.hello.member[0] = '\0';
    expect_refused(&m, "HELLO.member: empty");
    m = samples[0];
    m.request_id = 0;
    expect_refused(&m, "request id: zero on HELLO or HELLO_REPLY");
    m = samples[0];
    m.u.hello.version_max = 0;
    expect_refused(&m, "HELLO.version_min: not 1 <= version_min <= version_max");
    /* Every timer of a HELLO is set: a node always has them. */
    m = samples[0];
    m.u.hello.heartbeat_interval_ms = 0;
    expect_refused(&m, "HELLO.heartbeat_interval_ms: zero");
    m = samples[0];
    m.u.hello.heartbeat_misses = 0;
    expect_refused(&m, "HELLO.heartbeat_misses: zero");
    m = samples[0];
    m.u.hello.lease_ttl_ms = 0;
    expect_refused(&m, "HELLO.lease_ttl_ms: zero");
    m = samples[1];
    m.u.hello_reply.version = 0;
    expect_refused(&m, "HELLO_REPLY.version: must be non-zero exactly when code is ok");
    m = samples[2];
    m.u.hello_reply.reason[0] = '\0';
    expect_refused(&m, "HELLO_REPLY.reason: must be empty exactly when code is ok");
    m = samples[3];
    m.u.heartbeat.seq = 0;
    expect_refused(&m, "HEARTBEAT.seq: zero");
    m = samples[3];
    m.request_id = 5;
    expect_refused(&m, "request id: not zero outside HELLO and HELLO_REPLY");
    m = samples[5];
    m.u.heartbeat.summary.n_dbs = CLUSTER_WIRE_MAX_DBS + 1;
    expect_refused(&m, "summary.dbs: more than CLUSTER_WIRE_MAX_DBS");
    m = samples[5];
    m.u.heartbeat.summary.cms[1].role = 4;
    expect_refused(&m, "summary.cms.role: unknown role");
    /* A switchover's target goes with the role moving, and only with it. */
    m = samples[5];
    m.u.heartbeat.summary.cms[1].role = CLUSTER_CMS_MOVING;
    expect_refused(&m, "summary.cms.moving_to: must be non-empty exactly when role is moving");
    m = samples[5];
    strcpy(m.u.heartbeat.summary.cms[1].moving_to, "mb-b");
    expect_refused(&m, "summary.cms.moving_to: must be non-empty exactly when role is moving");
    m = samples[5];
    memset(m.u.heartbeat.summary.cms[0].moving_to, 'n',
           sizeof(m.u.heartbeat.summary.cms[0].moving_to));
    m.u.heartbeat.summary.cms[0].role = CLUSTER_CMS_MOVING;
    expect_refused(&m, "summary.cms.moving_to: longer than allowed");
    m = samples[5];
    strcpy(m.u.heartbeat.summary.dbs[2].name, m.u.heartbeat.summary.dbs[0].name);
    expect_refused(&m, "summary.dbs.name: listed twice");
    m = samples[5];
    m.u.heartbeat.summary.dbs[1].copy_state = 9;
    expect_refused(&m, "summary.dbs.copy_state: unknown state");
    m = samples[5];
    memset(m.u.heartbeat.summary.cms[0].name, 'x', sizeof(m.u.heartbeat.summary.cms[0].name));
    expect_refused(&m, "summary.cms.name: longer than allowed");
    m = samples[6];
    m.u.error.code = CLUSTER_CODE_OK;
    expect_refused(&m, "ERROR.code: ok or unknown");
    m = samples[6];
    m.type = 99;
    expect_refused(&m, "unknown message type");
}

/* Frames a sender could not have encoded: each is refused on decode, naming the check. */
static void
expect_corrupt(size_t len, const char *want)
{
    repair_crc(buf, len);
    const char *error = NULL;
    assert_int_equal(cluster_msg_decode(buf, len, &decoded, NULL, &error), TDM_ECORRUPT);
    assert_string_equal(error, want);
}

static void
test_decode_refusals(void **state)
{
    (void)state;
    init_samples();
    size_t len = encode_ok(&samples[3]);
    buf[4] = 1; /* version 1: its HELLO had no timers */
    expect_corrupt(len, "unsupported protocol version");
    len = encode_ok(&samples[0]);
    buf[4] = 1;
    expect_corrupt(len, "unsupported protocol version");
    len = encode_ok(&samples[3]);
    buf[4] = 3;
    expect_corrupt(len, "unsupported protocol version");
    /* A version-1 HELLO's layout (no timers) in a version-2 frame: its fields run out. */
    len = encode_ok(&samples[0]);
    size_t v1_len = len - (9 + 3 + 9);
    memmove(buf + v1_len - 4, buf + len - 4, 4);
    buf[0] = (uint8_t)v1_len;
    expect_corrupt(v1_len, "HELLO.heartbeat_interval_ms: missing (the payload ends before it)");
    len = encode_ok(&samples[3]);
    buf[12] = 1; /* flags */
    expect_corrupt(len, "frame flags not zero");
    len = encode_ok(&samples[3]);
    buf[6] = 3; /* type */
    expect_corrupt(len, "unknown message type");
    /* One byte more in the payload, length adjusted: trailing bytes. */
    len = encode_ok(&samples[3]);
    memmove(buf + len - 3, buf + len - 4, 4);
    buf[len - 4] = 0;
    buf[0] = (uint8_t)(len + 1);
    expect_corrupt(len + 1, "bytes after the last field of the payload");
    /* A list count over the maximum is refused before any element is read. */
    len = encode_ok(&samples[3]);
    buf[16 + 9 + 9 + 1] = CLUSTER_WIRE_MAX_CMS + 1;
    expect_corrupt(len, "summary.cms: more elements than allowed");
    /* A string with a NUL. */
    len = encode_ok(&samples[6]);
    buf[len - 5] = 0;
    expect_corrupt(len, "ERROR.text: contains a NUL byte");
    /* A wild length is refused as soon as 4 bytes are there. */
    const char *error = NULL;
    size_t flen = 0;
    const uint8_t big[4] = {0xff, 0xff, 0, 0};
    assert_int_equal(cluster_frame_length(big, 4, &flen, &error), TDM_ECORRUPT);
    const uint8_t small[4] = {19, 0, 0, 0};
    assert_int_equal(cluster_frame_length(small, 4, &flen, &error), TDM_ECORRUPT);
    /* A short output buffer. */
    size_t l = 0;
    assert_int_equal(cluster_msg_encode(&samples[0], buf, 20, &l, &error), -ENOBUFS);
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(cluster_type_name(CLUSTER_HEARTBEAT_REPLY), "HEARTBEAT_REPLY");
    assert_null(cluster_type_name(3));
    assert_string_equal(cluster_code_name(CLUSTER_CODE_SHUTDOWN), "shutdown");
    assert_string_equal(cluster_code_name(CLUSTER_CODE_TIMERS), "timers");
    assert_null(cluster_code_name(8));
    assert_string_equal(cluster_cms_role_name(CLUSTER_CMS_PASSIVE), "passive");
    assert_string_equal(cluster_cms_role_name(CLUSTER_CMS_MOVING), "moving");
    assert_null(cluster_cms_role_name(4));
}

static int
write_corpus(const char *dir)
{
    init_samples();
    int bad = 0;
    for (size_t i = 0; i <= N_SAMPLES; i++) {
        size_t len = encode_ok(&samples[i < N_SAMPLES ? i : 3]);
        if (i == N_SAMPLES)
            buf[len - 1] ^= 1;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, i < N_SAMPLES ? sample_names[i] : "invalid_crc");
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            bad = 1;
        }
    }
    return bad;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_doc_example),
        cmocka_unit_test(test_prefixes_need_more),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
