/*
 * Coordination codec tests (src/proto/coord/coord_wire.c, docs/formats/coord.md).
 *
 * A table of sample messages with edge values drives round trips, every prefix (needs more,
 * never an error), every bit flip, and a stream of every sample back to back. A hand-built
 * frame pins the layout; each rule between fields is refused by the encoder and the decoder.
 *
 * `unit_proto_coord_wire --write-corpus DIR` writes the fuzz seed corpus instead.
 */
#include "proto/coord/coord_wire.h"

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

#define MAX_SAMPLES 32

static struct coord_msg samples[MAX_SAMPLES];
static const char *sample_names[MAX_SAMPLES];
static size_t n_samples;

static char name255[COORD_WIRE_NAME_MAX + 1];
static char secret1024[COORD_WIRE_SECRET_MAX + 1];
static char text1024[COORD_WIRE_TEXT_MAX + 1];
static uint8_t value_max[COORD_WIRE_VALUE_MAX];

static struct coord_msg *
add(const char *name, uint16_t type, uint32_t id)
{
    assert_true(n_samples < MAX_SAMPLES);
    struct coord_msg *m = &samples[n_samples];
    sample_names[n_samples++] = name;
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->request_id = id;
    return m;
}

static void
init_samples(void)
{
    if (n_samples > 0)
        return;
    memset(name255, 'n', COORD_WIRE_NAME_MAX);
    memset(secret1024, 's', COORD_WIRE_SECRET_MAX);
    memset(text1024, 't', COORD_WIRE_TEXT_MAX);
    for (size_t i = 0; i < sizeof(value_max); i++)
        value_max[i] = (uint8_t)(i * 13);

    struct coord_msg *m = add("hello", COORD_HELLO, 1);
    m->version_min = m->version_max = 1;
    m->member = coord_str_c("mb1");
    m->secret = coord_str_c("k3y");
    m->cluster = coord_str_c("ccr1");
    m = add("hello_max", COORD_HELLO, UINT32_MAX);
    m->version_min = 1;
    m->version_max = UINT16_MAX;
    m->member = coord_str_c(name255);
    m->secret = coord_str_c(secret1024);
    m->cluster = coord_str_c(name255);
    m = add("hello_no_cluster", COORD_HELLO, 2);
    m->version_min = m->version_max = 1;
    m->member = coord_str_c("mb2");
    m->secret = coord_str_c("x");
    m = add("hello_reply_ok", COORD_HELLO_REPLY, 1);
    m->version = 1;
    m->witness = coord_str_c("wit1");
    m->boot_id = UINT64_MAX;
    m = add("hello_reply_auth", COORD_HELLO_REPLY, 7);
    m->code = COORD_CODE_AUTH;
    m->text = coord_str_c(text1024);
    m = add("acquire", COORD_ACQUIRE, 3);
    m->key = coord_str_c("cms/mail1");
    m->holder = coord_str_c("mb1");
    m->ttl_ms = 4000;
    m->min_epoch = 0;
    m = add("acquire_max", COORD_ACQUIRE, 4);
    m->key = coord_str_c(name255);
    m->holder = coord_str_c(name255);
    m->ttl_ms = COORD_WIRE_TTL_MAX;
    m->min_epoch = UINT64_MAX;
    m = add("granted", COORD_GRANTED, 3);
    m->key = coord_str_c("cms/mail1");
    m->epoch = 1;
    m->ttl_ms = 1;
    m = add("denied", COORD_DENIED, 5);
    m->key = coord_str_c("cms/mail1");
    m->holder = coord_str_c("mb2");
    m->epoch = 9;
    m->remaining_ms = 0;
    m = add("release", COORD_RELEASE, 6);
    m->key = coord_str_c("cms/mail1");
    m->holder = coord_str_c("mb1");
    m->epoch = 2;
    m = add("released", COORD_RELEASED, 6);
    m->key = coord_str_c("cms/mail1");
    m = add("transfer", COORD_TRANSFER, 8);
    m->key = coord_str_c("cms/mail1");
    m->holder = coord_str_c("mb1");
    m->epoch = 2;
    m->to = coord_str_c("mb2");
    m = add("get", COORD_GET, 9);
    m->key = coord_str_c("cluster/last-failover");
    m = add("value_empty", COORD_VALUE, 9);
    m->key = coord_str_c("x");
    m = add("value_full", COORD_VALUE, 10);
    m->key = coord_str_c("cms/mail1");
    m->holder = coord_str_c("mb1");
    m->epoch = 3;
    m->remaining_ms = COORD_WIRE_TTL_MAX;
    m->value_version = 5;
    m->value = (struct coord_str){(const char *)value_max, COORD_WIRE_VALUE_MAX};
    m = add("cas", COORD_CAS, 11);
    m->key = coord_str_c("cluster/last-failover");
    m->value_version = 0;
    m->value = (struct coord_str){"\0ab", 3};
    m = add("conflict", COORD_CONFLICT, 11);
    m->key = coord_str_c("k");
    m->value_version = 1;
    m->value = coord_str_c("v");
    m = add("watch", COORD_WATCH, 12);
    m->key = coord_str_c("cms/mail1");
    m = add("notify", COORD_NOTIFY, 0);
    m->key = coord_str_c("cms/mail1");
    m->holder = coord_str_c("mb2");
    m->epoch = 4;
    m->remaining_ms = 3999;
    m = add("ping", COORD_PING, 13);
    m->nonce = 42;
    m = add("pong", COORD_PONG, 13);
    m->nonce = 42;
    m = add("error", COORD_ERROR, 14);
    m->code = COORD_CODE_HOLDER;
    m->text = coord_str_c("holder is not the member of this session");
    m = add("error_unsolicited", COORD_ERROR, 0);
    m->code = COORD_CODE_PROTOCOL;
    m->text = coord_str_c(text1024);
}

static uint8_t *
encode(const struct coord_msg *m, size_t *len_r)
{
    size_t size;
    const char *error = NULL;
    int rc = coord_msg_size(m, &size, &error);
    if (rc != 0)
        fail_msg("%s: %s", coord_type_name(m->type), error);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(coord_msg_encode(m, buf, size, len_r, &error), 0);
    assert_int_equal(*len_r, size);
    return buf;
}

static void
assert_str_eq(struct coord_str a, struct coord_str b)
{
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.ptr, b.ptr, a.len);
}

static void
test_round_trip(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < n_samples; i++) {
        const struct coord_msg *s = &samples[i];
        size_t len, flen;
        uint8_t *buf = encode(s, &len);
        struct coord_msg m;
        const char *error = NULL;
        if (coord_msg_decode(buf, len, &m, &flen, &error) != 0)
            fail_msg("%s: %s", sample_names[i], error);
        assert_int_equal(flen, len);
        assert_int_equal(m.type, s->type);
        assert_int_equal(m.request_id, s->request_id);
        assert_int_equal(m.version_min, s->version_min);
        assert_int_equal(m.version_max, s->version_max);
        assert_int_equal(m.version, s->version);
        assert_int_equal(m.code, s->code);
        assert_true(m.boot_id == s->boot_id && m.min_epoch == s->min_epoch && m.epoch == s->epoch &&
                    m.value_version == s->value_version && m.nonce == s->nonce);
        assert_int_equal(m.ttl_ms, s->ttl_ms);
        assert_int_equal(m.remaining_ms, s->remaining_ms);
        assert_str_eq(m.member, s->member);
        assert_str_eq(m.secret, s->secret);
        assert_str_eq(m.cluster, s->cluster);
        assert_str_eq(m.witness, s->witness);
        assert_str_eq(m.text, s->text);
        assert_str_eq(m.key, s->key);
        assert_str_eq(m.holder, s->holder);
        assert_str_eq(m.to, s->to);
        assert_str_eq(m.value, s->value);
        free(buf);
    }
}

/* Every prefix of every frame needs more bytes; none is an error. */
static void
test_truncations(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *part = malloc(cut ? cut : 1);
            memcpy(part, buf, cut);
            struct coord_msg m;
            const char *error = NULL;
            assert_int_equal(coord_msg_decode(part, cut, &m, NULL, &error), TDM_ENEEDMORE);
            free(part);
        }
        free(buf);
    }
}

/* Every sample back to back, decoded as a receiver would. */
static void
test_stream(void **state)
{
    (void)state;
    init_samples();
    uint8_t *stream = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        stream = realloc(stream, total + len);
        memcpy(stream + total, buf, len);
        total += len;
        free(buf);
    }
    size_t off = 0, n = 0;
    while (off < total) {
        struct coord_msg m;
        size_t flen;
        const char *error;
        assert_int_equal(coord_msg_decode(stream + off, total - off, &m, &flen, &error), 0);
        assert_int_equal(m.type, samples[n].type);
        off += flen;
        n++;
    }
    assert_int_equal(n, n_samples);
    free(stream);
}

static void
fix_crc(uint8_t *buf, size_t len)
{
    uint32_t crc = crc32c(0, buf, len - 4);
    for (int k = 0; k < 4; k++)
        buf[len - 4 + k] = (uint8_t)(crc >> (8 * k));
}

/* Every single-bit flip is caught (the CRC); with the CRC recomputed a flip either fails with
 * a named error or yields a message that re-encodes to exactly the flipped bytes. */
static void
test_bit_flips(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        for (size_t bit = 0; bit < len * 8; bit++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct coord_msg m;
            const char *error = NULL;
            int rc = coord_msg_decode(buf, len, &m, NULL, &error);
            assert_int_not_equal(rc, 0);
            assert_non_null(error);
            if (bit / 8 >= 4 && bit / 8 < len - 4) {
                uint8_t saved[4];
                memcpy(saved, buf + len - 4, 4);
                fix_crc(buf, len);
                error = NULL;
                rc = coord_msg_decode(buf, len, &m, NULL, &error);
                if (rc == 0) {
                    size_t len2;
                    uint8_t *again = encode(&m, &len2);
                    assert_int_equal(len2, len);
                    assert_memory_equal(again, buf, len);
                    free(again);
                } else {
                    assert_int_equal(rc, TDM_ECORRUPT);
                    assert_non_null(error);
                }
                memcpy(buf + len - 4, saved, 4);
            }
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        free(buf);
    }
}

/* The layout of coord.md, written by hand: PING with nonce 0x0102030405060708, id 5. */
static void
test_doc_layout(void **state)
{
    (void)state;
    uint8_t f[38] = {38, 0, 0, 0, 1, 0, 28, 0, 5, 0, 0, 0, 0, 0, 0, 0, 3, 8, 7, 6, 5, 4, 3, 2, 1};
    /* 16 header + 9 field = 25; the rest is padding we cut: L = 29 */
    f[0] = 29;
    fix_crc(f, 29);
    struct coord_msg m;
    const char *error = NULL;
    assert_int_equal(coord_msg_decode(f, 29, &m, NULL, &error), 0);
    assert_int_equal(m.type, COORD_PING);
    assert_int_equal(m.request_id, 5);
    assert_true(m.nonce == UINT64_C(0x0102030405060708));
    /* Trailing bytes inside the frame are refused by name. */
    f[0] = 30;
    f[25] = 0;
    fix_crc(f, 30);
    assert_int_equal(coord_msg_decode(f, 30, &m, NULL, &error), TDM_ECORRUPT);
    assert_string_equal(error, "bytes after the last field of the payload");
    /* Flags, version, type, length bounds. */
    f[0] = 29;
    f[12] = 1;
    fix_crc(f, 29);
    assert_int_equal(coord_msg_decode(f, 29, &m, NULL, &error), TDM_ECORRUPT);
    assert_string_equal(error, "frame flags not zero");
    f[12] = 0;
    f[4] = 2;
    fix_crc(f, 29);
    assert_int_equal(coord_msg_decode(f, 29, &m, NULL, &error), TDM_ECORRUPT);
    assert_string_equal(error, "unsupported protocol version");
    f[4] = 1;
    f[6] = 99;
    fix_crc(f, 29);
    assert_int_equal(coord_msg_decode(f, 29, &m, NULL, &error), TDM_ECORRUPT);
    assert_string_equal(error, "unknown message type");
    uint8_t big[4] = {0x01, 0x20, 0, 0}; /* 8193 */
    size_t fl;
    assert_int_equal(coord_frame_length(big, 4, &fl, &error), TDM_ECORRUPT);
    uint8_t small[4] = {19, 0, 0, 0};
    assert_int_equal(coord_frame_length(small, 4, &fl, &error), TDM_ECORRUPT);
}

static struct coord_msg *
sample(const char *name)
{
    for (size_t i = 0; i < n_samples; i++)
        if (strcmp(sample_names[i], name) == 0)
            return &samples[i];
    fail_msg("no sample %s", name);
    return NULL;
}

/* Each rule between fields: the encoder refuses it, and a frame carrying it does not decode. */
static void
expect_refused(struct coord_msg m, const char *why)
{
    size_t size;
    const char *error = NULL;
    assert_int_equal(coord_msg_size(&m, &size, &error), TDM_EINVAL);
    assert_non_null(error);
    if (why)
        assert_string_equal(error, why);
}

static void
test_rules(void **state)
{
    (void)state;
    init_samples();
    struct coord_msg m = *sample("hello");
    m.version_min = 0;
    expect_refused(m, "HELLO.version_min: zero");
    m = *sample("hello");
    m.member = coord_str_c("");
    expect_refused(m, "member: empty");
    m = *sample("hello");
    m.request_id = 0;
    expect_refused(m, "request id zero on a request or an answer");
    m = *sample("hello_reply_ok");
    m.witness = coord_str_c("");
    expect_refused(m, "HELLO_REPLY.witness: must be set exactly when code is ok");
    m = *sample("hello_reply_auth");
    m.version = 1;
    expect_refused(m, "HELLO_REPLY: version must be set exactly when code is ok");
    m = *sample("acquire");
    m.ttl_ms = 0;
    expect_refused(m, "ACQUIRE.ttl_ms: out of range");
    m.ttl_ms = COORD_WIRE_TTL_MAX + 1;
    expect_refused(m, "ACQUIRE.ttl_ms: out of range");
    m = *sample("acquire");
    char longkey[COORD_WIRE_KEY_MAX + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    m.key = coord_str_c(longkey);
    expect_refused(m, "key: longer than allowed");
    m = *sample("acquire");
    m.key = (struct coord_str){"a\0b", 3};
    expect_refused(m, "key: contains a NUL byte");
    m = *sample("granted");
    m.epoch = 0;
    expect_refused(m, "GRANTED.epoch: zero");
    m = *sample("transfer");
    m.to = coord_str_c("mb1");
    expect_refused(m, "TRANSFER.to: the holder itself");
    m = *sample("value_empty");
    m.remaining_ms = 5;
    expect_refused(m, "VALUE.remaining_ms: not zero without a holder");
    m = *sample("value_empty");
    m.value = coord_str_c("x");
    expect_refused(m, "VALUE.value: not empty at version 0");
    m = *sample("cas");
    uint8_t big[COORD_WIRE_VALUE_MAX + 1] = {0};
    m.value = (struct coord_str){(const char *)big, sizeof(big)};
    expect_refused(m, "value: longer than allowed");
    m = *sample("notify");
    m.request_id = 1;
    expect_refused(m, "request id not zero on NOTIFY");
    m = *sample("error");
    m.code = COORD_CODE_OK;
    expect_refused(m, "ERROR.code: ok or unknown");
    m.code = 200;
    expect_refused(m, "ERROR.code: ok or unknown");
    m = *sample("error");
    m.type = 77;
    expect_refused(m, "unknown message type");

    /* A rule broken on the wire: GRANTED with epoch 0 hand-patched and re-sealed. */
    size_t len;
    uint8_t *buf = encode(sample("granted"), &len);
    /* key STR (1+4+9) after the header, then the epoch's tag at 16+14 and its bytes. */
    assert_int_equal(buf[30], 3);
    buf[31] = 0;
    fix_crc(buf, len);
    struct coord_msg d;
    const char *error;
    assert_int_equal(coord_msg_decode(buf, len, &d, NULL, &error), TDM_ECORRUPT);
    assert_string_equal(error, "GRANTED.epoch: zero");
    free(buf);

    /* A short output buffer. */
    buf = encode(sample("hello"), &len);
    uint8_t small[8];
    size_t l2;
    assert_int_equal(coord_msg_encode(sample("hello"), small, sizeof(small), &l2, &error),
                     -ENOBUFS);
    free(buf);
}

static void
test_names_and_negotiation(void **state)
{
    (void)state;
    assert_string_equal(coord_type_name(COORD_ACQUIRE), "ACQUIRE");
    assert_null(coord_type_name(3));
    assert_string_equal(coord_code_name(COORD_CODE_EPOCH), "epoch");
    assert_null(coord_code_name(99));
    uint16_t v;
    const char *error;
    assert_int_equal(coord_version_negotiate(1, 5, &v, &error), 0);
    assert_int_equal(v, 1);
    assert_int_equal(coord_version_negotiate(2, 5, &v, &error), TDM_EINVAL);
    assert_int_equal(coord_version_negotiate(0, 1, &v, &error), TDM_EINVAL);
}

static int
write_corpus(const char *dir)
{
    init_samples();
    int bad = 0;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, sample_names[i]);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
            bad = 1;
        free(buf);
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
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_doc_layout),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_names_and_negotiation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
