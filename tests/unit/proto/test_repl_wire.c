/*
 * Replication codec tests (src/proto/repl/repl_wire.c, docs/formats/replication.md) and the
 * LOG_DATA zstd helper (repl_zstd.c).
 *
 * A table of sample messages with edge values drives round trips, every prefix (needs more,
 * never an error), every bit flip, and a stream split at every offset. Hand-built frames (the
 * raw_* helpers write bytes from the layout in the doc, not with the encoder) pin the layout
 * and check each named decoder error.
 *
 * `unit_proto_repl_wire --write-corpus DIR` writes the fuzz seed corpus instead.
 */
#include "proto/repl/repl_wire.h"
#include "proto/repl/repl_zstd.h"

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

/* ---- Samples ---- */

#define MAX_SAMPLES 24

static struct repl_msg samples[MAX_SAMPLES];
static const char *sample_names[MAX_SAMPLES];
static size_t n_samples;

static char name255[REPL_WIRE_NAME_MAX + 1];
static char key1024[REPL_WIRE_KEY_MAX + 1];
static char text1024[REPL_WIRE_TEXT_MAX + 1];
static uint8_t chunk_max[REPL_WIRE_CHUNK_MAX];
static uint8_t small_bytes[300];

static struct repl_msg *
add_sample(const char *name, uint16_t type, uint32_t request_id)
{
    assert_true(n_samples < MAX_SAMPLES);
    struct repl_msg *m = &samples[n_samples];
    sample_names[n_samples++] = name;
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->request_id = request_id;
    return m;
}

static void
init_samples(void)
{
    if (n_samples > 0)
        return;
    memset(name255, 'n', REPL_WIRE_NAME_MAX);
    memset(key1024, 'k', REPL_WIRE_KEY_MAX);
    memset(text1024, 't', REPL_WIRE_TEXT_MAX);
    for (size_t i = 0; i < sizeof(chunk_max); i++)
        chunk_max[i] = (uint8_t)(i * 7 + (i >> 9));
    for (size_t i = 0; i < sizeof(small_bytes); i++)
        small_bytes[i] = (uint8_t)i;

    struct repl_msg *m = add_sample("hello_fresh", REPL_HELLO, 1);
    m->u.hello = (struct repl_hello){
        .version_min = 1,
        .version_max = 1,
        .server = repl_str_c("mb2"),
        .key = repl_str_c("s3cret"),
        .database = repl_str_c("db1"),
        .role = REPL_ROLE_PASSIVE,
        .start_generation = 1,
    };
    m = add_sample("hello_max", REPL_HELLO, UINT32_MAX);
    m->u.hello = (struct repl_hello){
        .version_min = 1,
        .version_max = UINT16_MAX,
        .server = {name255, REPL_WIRE_NAME_MAX},
        .key = {key1024, REPL_WIRE_KEY_MAX},
        .database = {name255, REPL_WIRE_NAME_MAX},
        .role = REPL_ROLE_STANDBY,
        .start_generation = UINT64_MAX,
        .start_offset = 1024u * 1024u * 1024u,
        .last_lsn = UINT64_MAX,
        .epoch = UINT64_MAX,
        .compression = REPL_COMPRESSION_ZSTD,
    };
    memset(m->u.hello.guid, 0xff, REPL_WIRE_GUID_LEN);

    m = add_sample("hello_reply_ok", REPL_HELLO_REPLY, 7);
    m->u.hello_reply = (struct repl_hello_reply){
        .version = 1,
        .code = REPL_CODE_OK,
        .epoch = 3,
        .mode = REPL_MODE_BLOCK,
        .lowest_generation = 2,
        .current_generation = 9,
        .durable_end = 8192,
    };
    memset(m->u.hello_reply.guid, 0xa5, REPL_WIRE_GUID_LEN);
    m = add_sample("hello_reply_refused", REPL_HELLO_REPLY, 7);
    m->u.hello_reply = (struct repl_hello_reply){
        .code = REPL_CODE_POSITION_GONE,
        .reason = {text1024, REPL_WIRE_TEXT_MAX},
        .lowest_generation = UINT64_MAX,
    };
    m = add_sample("hello_reply_sync", REPL_HELLO_REPLY, 1);
    m->u.hello_reply = (struct repl_hello_reply){.version = 1, .mode = REPL_MODE_SYNC};

    m = add_sample("log_data_raw", REPL_LOG_DATA, 0);
    m->u.log_data = (struct repl_log_data){
        .generation = 1,
        .offset = 0,
        .file_size = 4140,
        .raw_length = sizeof(small_bytes),
        .data = small_bytes,
        .data_len = sizeof(small_bytes),
    };
    m = add_sample("log_data_max", REPL_LOG_DATA, 0);
    m->u.log_data = (struct repl_log_data){
        .generation = UINT64_MAX,
        .offset = 1024u * 1024u * 1024u - REPL_WIRE_CHUNK_MAX,
        .file_size = 1024u * 1024u * 1024u,
        .raw_length = REPL_WIRE_CHUNK_MAX,
        .partial = 1,
        .data = chunk_max,
        .data_len = REPL_WIRE_CHUNK_MAX,
    };
    m = add_sample("log_data_zstd_closes", REPL_LOG_DATA, 0);
    m->u.log_data = (struct repl_log_data){
        .generation = 5,
        .offset = 4096,
        .file_size = 1024u * 1024u,
        .compression = REPL_COMPRESSION_ZSTD,
        .raw_length = 301,
        .closes = 1,
        .data = small_bytes,
        .data_len = 300,
    };

    m = add_sample("position", REPL_POSITION, 0);
    m->u.position = (struct repl_position){2, 8192, 7, 1};
    m = add_sample("position_max", REPL_POSITION, 0);
    m->u.position = (struct repl_position){UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};

    m = add_sample("ack_zero", REPL_ACK, 0);
    m = add_sample("ack", REPL_ACK, 0);
    m->u.ack = (struct repl_ack){3, 4148, 10, 2, 9, 3};

    m = add_sample("error", REPL_ERROR, 0);
    m->u.error = (struct repl_error){REPL_CODE_TIMEOUT, repl_str_c("nothing heard for 30 s")};
    m = add_sample("error_max", REPL_ERROR, 0);
    m->u.error = (struct repl_error){REPL_CODE_LIMIT, {text1024, REPL_WIRE_TEXT_MAX}};

    m = add_sample("seed_request", REPL_SEED_REQUEST, 2);
    m->u.seed_request = (struct repl_seed_request){
        1, 1, repl_str_c("mb2"), repl_str_c("s3cret"), repl_str_c("db1"), REPL_ROLE_PASSIVE};
    m = add_sample("seed_request_max", REPL_SEED_REQUEST, UINT32_MAX);
    m->u.seed_request = (struct repl_seed_request){1,
                                                   UINT16_MAX,
                                                   {name255, REPL_WIRE_NAME_MAX},
                                                   {key1024, REPL_WIRE_KEY_MAX},
                                                   {name255, REPL_WIRE_NAME_MAX},
                                                   REPL_ROLE_STANDBY};
    m = add_sample("seed_data_raw", REPL_SEED_DATA, 0);
    m->u.seed_data = (struct repl_seed_data){
        .offset = 0,
        .total_size = sizeof(small_bytes),
        .raw_length = sizeof(small_bytes),
        .data = small_bytes,
        .data_len = sizeof(small_bytes),
    };
    m = add_sample("seed_data_max", REPL_SEED_DATA, 0);
    m->u.seed_data = (struct repl_seed_data){
        .offset = REPL_WIRE_SEED_MAX - REPL_WIRE_CHUNK_MAX,
        .total_size = REPL_WIRE_SEED_MAX,
        .raw_length = REPL_WIRE_CHUNK_MAX,
        .data = chunk_max,
        .data_len = REPL_WIRE_CHUNK_MAX,
    };
    m = add_sample("seed_data_zstd", REPL_SEED_DATA, 0);
    m->u.seed_data = (struct repl_seed_data){
        .offset = 4096,
        .total_size = 1u << 20,
        .compression = REPL_COMPRESSION_ZSTD,
        .raw_length = 301,
        .data = small_bytes,
        .data_len = 300,
    };
    m = add_sample("seed_end", REPL_SEED_END, 0);
    m->u.seed_end =
        (struct repl_seed_end){.total_size = 65536, .applied_lsn = 42, .first_generation = 3};
    memset(m->u.seed_end.sha256, 0x5a, REPL_WIRE_SHA256_LEN);
    memset(m->u.seed_end.guid, 0xa5, REPL_WIRE_GUID_LEN);
}

static uint8_t *
encode(const struct repl_msg *m, size_t *len_r)
{
    uint8_t *out = NULL;
    const char *error = NULL;
    int rc = repl_msg_encode_alloc(m, &out, len_r, &error);
    if (rc != 0)
        fail_msg("encode: %s", error);
    return out;
}

/* ---- Raw frames, from the layout in the doc ---- */

struct raw {
    uint8_t b[4096];
    size_t n;
};

static void
raw_bytes(struct raw *r, const void *p, size_t n)
{
    assert_true(r->n + n <= sizeof(r->b));
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void
raw_le(struct raw *r, uint64_t v, unsigned size)
{
    for (unsigned i = 0; i < size; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        raw_bytes(r, &c, 1);
    }
}

static void
raw_u16(struct raw *r, uint16_t v)
{
    raw_le(r, 1, 1);
    raw_le(r, v, 2);
}

static void
raw_u32(struct raw *r, uint32_t v)
{
    raw_le(r, 2, 1);
    raw_le(r, v, 4);
}

static void
raw_u64(struct raw *r, uint64_t v)
{
    raw_le(r, 3, 1);
    raw_le(r, v, 8);
}

static void
raw_span(struct raw *r, uint8_t tag, const void *p, uint32_t n)
{
    raw_le(r, tag, 1);
    raw_le(r, n, 4);
    raw_bytes(r, p, n);
}

static void
raw_str(struct raw *r, const char *s)
{
    raw_span(r, 5, s, (uint32_t)strlen(s));
}

/* Wraps payload p in a frame with a correct length and CRC. */
static struct raw
raw_frame(uint16_t version, uint16_t type, uint32_t id, uint32_t flags, const struct raw *p)
{
    struct raw f = {.n = 0};
    raw_le(&f, p->n + 20, 4);
    raw_le(&f, version, 2);
    raw_le(&f, type, 2);
    raw_le(&f, id, 4);
    raw_le(&f, flags, 4);
    raw_bytes(&f, p->b, p->n);
    raw_le(&f, crc32c(0, f.b, f.n), 4);
    return f;
}

/* HELLO payload with each field overridable. */
struct hello_raw {
    uint16_t vmin, vmax;
    const char *server, *key, *database;
    uint32_t guid_len;
    uint8_t guid_byte;
    uint16_t role;
    uint64_t gen, off, lsn, epoch;
    uint16_t compression;
};

static struct raw
raw_hello(struct hello_raw h)
{
    struct raw p = {.n = 0};
    uint8_t guid[32];
    memset(guid, h.guid_byte, sizeof(guid));
    raw_u16(&p, h.vmin);
    raw_u16(&p, h.vmax);
    raw_str(&p, h.server);
    raw_str(&p, h.key);
    raw_str(&p, h.database);
    raw_span(&p, 6, guid, h.guid_len);
    raw_u16(&p, h.role);
    raw_u64(&p, h.gen);
    raw_u64(&p, h.off);
    raw_u64(&p, h.lsn);
    raw_u64(&p, h.epoch);
    raw_u16(&p, h.compression);
    return p;
}

static const struct hello_raw good_hello = {
    1, 1, "mb2", "key", "db1", 16, 1, REPL_ROLE_PASSIVE, 3, 4148, 9, 2, REPL_COMPRESSION_NONE,
};

struct log_raw {
    uint64_t gen, off, size;
    uint16_t compression;
    uint32_t raw_length;
    uint16_t closes, partial;
    uint32_t data_len;
};

static struct raw
raw_log_data(struct log_raw d)
{
    static uint8_t data[2048];
    struct raw p = {.n = 0};
    raw_u64(&p, d.gen);
    raw_u64(&p, d.off);
    raw_u64(&p, d.size);
    raw_u16(&p, d.compression);
    raw_u32(&p, d.raw_length);
    raw_u16(&p, d.closes);
    raw_u16(&p, d.partial);
    raw_span(&p, 6, data, d.data_len);
    return p;
}

static const struct log_raw good_log = {2, 4096, 1u << 20, 0, 100, 0, 0, 100};

static void
expect_error(const struct raw *f, const char *want)
{
    struct repl_msg m;
    const char *error = NULL;
    int rc = repl_msg_decode(f->b, f->n, &m, NULL, &error);
    if (rc != TDM_ECORRUPT || error == NULL || strcmp(error, want) != 0)
        fail_msg("want \"%s\", got rc %d \"%s\"", want, rc, error ? error : "(null)");
}

static void
expect_ok(const struct raw *f, struct repl_msg *m)
{
    const char *error = NULL;
    size_t flen = 0;
    int rc = repl_msg_decode(f->b, f->n, m, &flen, &error);
    if (rc != 0)
        fail_msg("decode: %s", error);
    assert_int_equal(flen, f->n);
}

/* ---- Tests ---- */

static void
test_round_trip(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        size_t size = 0;
        assert_int_equal(repl_msg_size(&samples[i], &size, NULL), 0);
        assert_int_equal(size, len);
        struct repl_msg m;
        const char *error = NULL;
        size_t flen = 0;
        if (repl_msg_decode(buf, len, &m, &flen, &error) != 0)
            fail_msg("%s: %s", sample_names[i], error);
        assert_int_equal(flen, len);
        assert_int_equal(m.type, samples[i].type);
        assert_int_equal(m.request_id, samples[i].request_id);
        size_t len2;
        uint8_t *again = encode(&m, &len2);
        assert_int_equal(len2, len);
        assert_memory_equal(again, buf, len);
        free(again);
        free(buf);
    }
}

/* Decoded fields equal what was encoded (a round trip alone would not catch two fields read
 * into each other's places symmetrically). */
static void
test_fields_decoded(void **state)
{
    (void)state;
    init_samples();
    size_t len;
    uint8_t *buf = encode(&samples[1], &len); /* hello_max */
    struct repl_msg m;
    assert_int_equal(repl_msg_decode(buf, len, &m, NULL, NULL), 0);
    assert_int_equal(m.u.hello.version_max, UINT16_MAX);
    assert_int_equal(m.u.hello.server.len, REPL_WIRE_NAME_MAX);
    assert_int_equal(m.u.hello.key.len, REPL_WIRE_KEY_MAX);
    assert_int_equal(m.u.hello.role, REPL_ROLE_STANDBY);
    assert_true(m.u.hello.start_offset == 1024u * 1024u * 1024u);
    assert_true(m.u.hello.last_lsn == UINT64_MAX);
    free(buf);

    struct repl_msg a = {.type = REPL_ACK};
    a.u.ack = (struct repl_ack){1, 2, 3, 4, 5, 6};
    buf = encode(&a, &len);
    assert_int_equal(repl_msg_decode(buf, len, &m, NULL, NULL), 0);
    assert_int_equal(m.u.ack.durable_generation, 1);
    assert_int_equal(m.u.ack.durable_offset, 2);
    assert_int_equal(m.u.ack.durable_lsn, 3);
    assert_int_equal(m.u.ack.inspected_generation, 4);
    assert_int_equal(m.u.ack.replayed_lsn, 5);
    assert_int_equal(m.u.ack.replayed_generation, 6);
    free(buf);
}

/* The example in docs/formats/replication.md, byte for byte. */
static void
test_doc_example(void **state)
{
    (void)state;
    struct repl_msg m = {.type = REPL_POSITION};
    m.u.position = (struct repl_position){2, 8192, 7, 1};
    size_t len;
    uint8_t *buf = encode(&m, &len);
    static const uint8_t want[52] = {
        0x38, 0,    0, 0, 1, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0, 0, 3,
        0,    0x20, 0, 0, 0, 0, 0,    0, 3, 7, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0,
    };
    assert_int_equal(len, 56);
    assert_memory_equal(buf, want, 52);
    assert_int_equal(crc32c(0, buf, 52), (uint32_t)buf[52] | (uint32_t)buf[53] << 8 |
                                             (uint32_t)buf[54] << 16 | (uint32_t)buf[55] << 24);
    free(buf);
}

/* Every proper prefix needs more bytes; none is an error. */
static void
test_prefixes_need_more(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        /* The 1 MiB sample: every prefix would cost minutes under ASan; its head and tail
         * are where the checks differ. */
        for (size_t cut = 0; cut < len; cut++) {
            if (len > 65536 && cut > 4096 && cut < len - 4096)
                continue;
            struct repl_msg m;
            const char *error = NULL;
            int rc = repl_msg_decode(buf, cut, &m, NULL, &error);
            if (rc != TDM_ENEEDMORE)
                fail_msg("%s cut at %zu: rc %d %s", sample_names[i], cut, rc, error);
        }
        free(buf);
    }
}

/* A stream of every sample back to back, fed in two pieces split at every offset, decodes
 * to the same messages as a receiver that buffers would get them. */
static void
test_stream_split(void **state)
{
    (void)state;
    init_samples();
    uint8_t *stream = NULL;
    size_t total = 0;
    size_t n_small = 0;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        if (len > 8192) {
            free(buf);
            continue;
        }
        stream = realloc(stream, total + len);
        memcpy(stream + total, buf, len);
        total += len;
        n_small++;
        free(buf);
    }
    uint8_t *acc = malloc(total);
    for (size_t split = 0; split <= total; split++) {
        size_t have = 0, done = 0, got = 0;
        const size_t pieces[2][2] = {{0, split}, {split, total}};
        for (int p = 0; p < 2; p++) {
            memcpy(acc + have, stream + pieces[p][0], pieces[p][1] - pieces[p][0]);
            have += pieces[p][1] - pieces[p][0];
            for (;;) {
                struct repl_msg m;
                size_t flen = 0;
                const char *error = NULL;
                size_t need;
                int rc = repl_frame_length(acc + done, have - done, &need, &error);
                if (rc == TDM_ENEEDMORE)
                    break;
                assert_int_equal(rc, 0);
                if (have - done < need)
                    break;
                rc = repl_msg_decode(acc + done, have - done, &m, &flen, &error);
                if (rc != 0)
                    fail_msg("split %zu: %s", split, error);
                assert_int_equal(flen, need);
                done += flen;
                got++;
            }
        }
        assert_int_equal(got, n_small);
        assert_int_equal(done, total);
    }
    free(acc);
    free(stream);
}

/* Every single-bit flip is caught (the CRC), and with the CRC recomputed a flip either fails
 * with a named error or yields a message that re-encodes to exactly the flipped bytes. */
static void
test_bit_flips(void **state)
{
    (void)state;
    init_samples();
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        if (len > 8192) {
            free(buf);
            continue;
        }
        for (size_t bit = 0; bit < len * 8; bit++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct repl_msg m;
            const char *error = NULL;
            int rc = repl_msg_decode(buf, len, &m, NULL, &error);
            assert_int_not_equal(rc, 0);
            assert_non_null(error);
            if (bit / 8 >= 4 && bit / 8 < len - 4) {
                uint32_t crc = crc32c(0, buf, len - 4);
                uint8_t saved[4];
                memcpy(saved, buf + len - 4, 4);
                for (int k = 0; k < 4; k++)
                    buf[len - 4 + k] = (uint8_t)(crc >> (8 * k));
                rc = repl_msg_decode(buf, len, &m, NULL, &error);
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

static void
test_frame_errors(void **state)
{
    (void)state;
    struct raw p = raw_hello(good_hello);
    struct raw f = raw_frame(1, REPL_HELLO, 1, 0, &p);
    struct repl_msg m;
    expect_ok(&f, &m);
    assert_int_equal(m.u.hello.start_offset, 4148);

    struct raw bad = f;
    bad.b[0] = 19, bad.b[1] = bad.b[2] = bad.b[3] = 0;
    expect_error(&bad, "frame length below the 20-byte minimum");
    /* A wild length is refused from its first 4 bytes, without waiting for the rest. */
    uint32_t over = REPL_WIRE_MAX_FRAME + 1;
    for (int k = 0; k < 4; k++)
        bad.b[k] = (uint8_t)(over >> (8 * k));
    struct raw four = bad;
    four.n = 4;
    expect_error(&four, "frame length over REPL_WIRE_MAX_FRAME");
    size_t need;
    const char *error = NULL;
    assert_int_equal(repl_frame_length(bad.b, 3, &need, &error), TDM_ENEEDMORE);

    bad = f;
    bad.b[bad.n - 1] ^= 1;
    expect_error(&bad, "frame checksum mismatch");

    struct raw empty = {.n = 0};
    bad = raw_frame(1, 99, 0, 0, &empty);
    expect_error(&bad, "unknown message type");
    bad = raw_frame(2, REPL_HELLO, 1, 0, &p);
    expect_error(&bad, "HELLO, HELLO_REPLY and SEED_REQUEST frames must carry protocol version 1");
    struct raw ack = {.n = 0};
    for (int k = 0; k < 6; k++)
        raw_u64(&ack, 0);
    bad = raw_frame(2, REPL_ACK, 0, 0, &ack);
    expect_error(&bad, "unsupported protocol version");
    bad = raw_frame(0, REPL_ACK, 0, 0, &ack);
    expect_error(&bad, "unsupported protocol version");
    bad = raw_frame(1, REPL_ACK, 0, 1, &ack);
    expect_error(&bad, "frame flags not zero");
    bad = raw_frame(1, REPL_HELLO, 0, 0, &p);
    expect_error(&bad, "request id zero on HELLO, HELLO_REPLY or SEED_REQUEST");
    bad = raw_frame(1, REPL_ACK, 5, 0, &ack);
    expect_error(&bad, "request id not zero on a one-way message");
    struct raw ack_more = ack;
    raw_u16(&ack_more, 0);
    bad = raw_frame(1, REPL_ACK, 0, 0, &ack_more);
    expect_error(&bad, "ACK: trailing bytes after the last field");
    struct raw ack_less = ack;
    ack_less.n -= 9;
    bad = raw_frame(1, REPL_ACK, 0, 0, &ack_less);
    expect_error(&bad, "ACK.replayed_generation: missing (the payload ends before it)");
    ack_less.n += 5;
    bad = raw_frame(1, REPL_ACK, 0, 0, &ack_less);
    expect_error(&bad, "ACK.replayed_generation: runs past the end of the payload");
    struct raw ack_tag = ack;
    ack_tag.b[0] = 2;
    bad = raw_frame(1, REPL_ACK, 0, 0, &ack_tag);
    expect_error(&bad, "ACK.durable_generation: wrong field type tag");
}

static void
test_hello_errors(void **state)
{
    (void)state;
    struct hello_raw h;
    struct raw p, f;
#define HELLO_CASE(stmt, want)                                                                     \
    do {                                                                                           \
        h = good_hello;                                                                            \
        stmt;                                                                                      \
        p = raw_hello(h);                                                                          \
        f = raw_frame(1, REPL_HELLO, 1, 0, &p);                                                    \
        expect_error(&f, want);                                                                    \
    } while (0)
    HELLO_CASE(h.vmin = 0, "HELLO.version_min: zero");
    HELLO_CASE((h.vmin = 3, h.vmax = 2), "HELLO.version_max: below version_min");
    HELLO_CASE(h.server = "", "HELLO.server: empty");
    HELLO_CASE(h.key = "", "HELLO.key: empty");
    HELLO_CASE(h.database = "", "HELLO.database: empty");
    HELLO_CASE(h.guid_len = 15, "HELLO.guid: not 16 bytes");
    HELLO_CASE(h.guid_len = 17, "HELLO.guid: not 16 bytes");
    HELLO_CASE(h.role = 0, "HELLO.role: unknown role");
    HELLO_CASE(h.role = 3, "HELLO.role: unknown role");
    HELLO_CASE(h.compression = 2, "HELLO.compression: not 0 or 1");
    HELLO_CASE(h.gen = 0, "HELLO.start_generation: zero");
    HELLO_CASE(h.off = (1u << 30) + 1, "HELLO.start_offset: past the largest generation");
    HELLO_CASE(h.guid_byte = 0, "HELLO.guid: all zero with a position");
    HELLO_CASE((h.guid_byte = 0, h.gen = 1, h.off = 0, h.lsn = 0, h.epoch = 1),
               "HELLO.guid: all zero with a position");
#undef HELLO_CASE
    /* Too long and NUL, which need longer strings than the table above. */
    char long_name[REPL_WIRE_NAME_MAX + 2];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    h = good_hello;
    h.database = long_name;
    p = raw_hello(h);
    f = raw_frame(1, REPL_HELLO, 1, 0, &p);
    expect_error(&f, "HELLO.database: longer than allowed");
    /* A NUL inside the key: written by hand. */
    h = good_hello;
    p = raw_hello(h);
    size_t key_at = 3 + 3 + 5 + 3 + 1 + 4; /* vmin, vmax, server tag+len+3, key tag+len */
    assert_memory_equal(p.b + key_at, "key", 3);
    p.b[key_at + 1] = 0;
    f = raw_frame(1, REPL_HELLO, 1, 0, &p);
    expect_error(&f, "HELLO.key: contains a NUL byte");
    /* The all-zero guid with a zero position is a fresh copy, and valid. */
    h = good_hello;
    h.guid_byte = 0, h.gen = 1, h.off = 0, h.lsn = 0, h.epoch = 0;
    p = raw_hello(h);
    f = raw_frame(1, REPL_HELLO, 1, 0, &p);
    struct repl_msg m;
    expect_ok(&f, &m);
}

static struct raw
raw_hello_reply(uint16_t version, uint16_t code, const char *reason, uint16_t mode)
{
    struct raw p = {.n = 0};
    uint8_t guid[16] = {0};
    raw_u16(&p, version);
    raw_u16(&p, code);
    raw_str(&p, reason);
    raw_span(&p, 6, guid, 16);
    raw_u64(&p, 1);
    raw_u16(&p, mode);
    raw_u64(&p, 1);
    raw_u64(&p, 1);
    raw_u64(&p, 4148);
    return raw_frame(1, REPL_HELLO_REPLY, 9, 0, &p);
}

static void
test_hello_reply_errors(void **state)
{
    (void)state;
    struct repl_msg m;
    struct raw f = raw_hello_reply(1, 0, "", 2);
    expect_ok(&f, &m);
    f = raw_hello_reply(0, 6, "truncated", 0);
    expect_ok(&f, &m);
    f = raw_hello_reply(1, 14, "", 2);
    expect_error(&f, "HELLO_REPLY.code: unknown code");
    f = raw_hello_reply(1, 2, "x", 0);
    expect_error(&f, "HELLO_REPLY.code: ok exactly when version is not 0");
    f = raw_hello_reply(0, 0, "", 0);
    expect_error(&f, "HELLO_REPLY.code: ok exactly when version is not 0");
    f = raw_hello_reply(0, 2, "", 0);
    expect_error(&f, "HELLO_REPLY.reason: empty on a refusal");
    f = raw_hello_reply(1, 0, "why", 2);
    expect_error(&f, "HELLO_REPLY.reason: not empty on an acceptance");
    f = raw_hello_reply(1, 0, "", 0);
    expect_error(&f, "HELLO_REPLY.mode: unknown mode");
    f = raw_hello_reply(1, 0, "", 4);
    expect_error(&f, "HELLO_REPLY.mode: unknown mode");
    f = raw_hello_reply(0, 3, "no such database", 1);
    expect_error(&f, "HELLO_REPLY.mode: not 0 on a refusal");
}

static void
test_log_data_errors(void **state)
{
    (void)state;
    struct log_raw d;
    struct raw p, f;
    struct repl_msg m;
    p = raw_log_data(good_log);
    f = raw_frame(1, REPL_LOG_DATA, 0, 0, &p);
    expect_ok(&f, &m);
    assert_int_equal(m.u.log_data.raw_length, 100);
#define LOG_CASE(stmt, want)                                                                       \
    do {                                                                                           \
        d = good_log;                                                                              \
        stmt;                                                                                      \
        p = raw_log_data(d);                                                                       \
        f = raw_frame(1, REPL_LOG_DATA, 0, 0, &p);                                                 \
        expect_error(&f, want);                                                                    \
    } while (0)
    LOG_CASE(d.gen = 0, "LOG_DATA.generation: zero");
    LOG_CASE(d.size = 4139, "LOG_DATA.file_size: below the smallest generation");
    LOG_CASE(d.size = (1u << 30) + 1, "LOG_DATA.file_size: above the largest generation");
    LOG_CASE((d.raw_length = 0, d.data_len = 0), "LOG_DATA.raw_length: zero");
    LOG_CASE(d.raw_length = REPL_WIRE_CHUNK_MAX + 1,
             "LOG_DATA.raw_length: over REPL_WIRE_CHUNK_MAX");
    LOG_CASE(d.off = d.size - 99, "LOG_DATA.offset: the bytes run past file_size");
    LOG_CASE(d.off = UINT64_MAX, "LOG_DATA.offset: the bytes run past file_size");
    LOG_CASE(d.closes = 2, "LOG_DATA.closes: not 0 or 1");
    LOG_CASE(d.partial = 2, "LOG_DATA.partial: not 0 or 1");
    LOG_CASE((d.closes = 1, d.partial = 1), "LOG_DATA.closes: on a partial chunk");
    LOG_CASE(d.data_len = 99, "LOG_DATA.data: not raw_length bytes");
    LOG_CASE(d.data_len = 101, "LOG_DATA.data: not raw_length bytes");
    LOG_CASE((d.compression = 1, d.data_len = 0), "LOG_DATA.data: empty");
    LOG_CASE((d.compression = 1, d.data_len = 100),
             "LOG_DATA.data: compressed to no fewer bytes than raw_length");
    LOG_CASE(d.compression = 2, "LOG_DATA.compression: unknown compression");
#undef LOG_CASE
    /* The last byte of a file, and a chunk ending exactly at file_size, are fine. */
    d = good_log;
    d.off = d.size - 100;
    d.closes = 1;
    p = raw_log_data(d);
    f = raw_frame(1, REPL_LOG_DATA, 0, 0, &p);
    expect_ok(&f, &m);
}

static void
test_small_message_errors(void **state)
{
    (void)state;
    struct raw p = {.n = 0}, f;
    for (int k = 0; k < 4; k++)
        raw_u64(&p, 0);
    f = raw_frame(1, REPL_POSITION, 0, 0, &p);
    expect_error(&f, "POSITION.generation: zero");

    p.n = 0;
    raw_u16(&p, 0);
    raw_str(&p, "x");
    f = raw_frame(1, REPL_ERROR, 0, 0, &p);
    expect_error(&f, "ERROR.code: ok is not an error");
    p.n = 0;
    raw_u16(&p, 14);
    raw_str(&p, "x");
    f = raw_frame(1, REPL_ERROR, 0, 0, &p);
    expect_error(&f, "ERROR.code: unknown code");
    p.n = 0;
    raw_u16(&p, REPL_CODE_PROTOCOL);
    raw_str(&p, "");
    f = raw_frame(1, REPL_ERROR, 0, 0, &p);
    expect_error(&f, "ERROR.text: empty");
    p.n = 0;
    raw_u16(&p, REPL_CODE_PROTOCOL);
    raw_span(&p, 6, "x", 1);
    f = raw_frame(1, REPL_ERROR, 0, 0, &p);
    expect_error(&f, "ERROR.text: wrong field type tag");
}

/* The encoder refuses what the decoder would, naming the rule, and a short buffer. */
static void
test_encode_refusals(void **state)
{
    (void)state;
    const char *error = NULL;
    struct repl_msg m = {.type = REPL_HELLO, .request_id = 0};
    m.u.hello = (struct repl_hello){
        .version_min = 1,
        .version_max = 1,
        .server = repl_str_c("a"),
        .key = repl_str_c("k"),
        .database = repl_str_c("d"),
        .role = REPL_ROLE_PASSIVE,
        .start_generation = 1,
    };
    uint8_t out[512];
    size_t len;
    assert_int_equal(repl_msg_encode(&m, out, sizeof(out), &len, &error), TDM_EINVAL);
    assert_string_equal(error, "request id zero on HELLO, HELLO_REPLY or SEED_REQUEST");
    m.request_id = 1;
    assert_int_equal(repl_msg_encode(&m, out, sizeof(out), &len, &error), 0);
    assert_int_equal(repl_msg_encode(&m, out, len - 1, &len, &error), -ENOBUFS);
    m.u.hello.key = (struct repl_str){NULL, 3};
    assert_int_equal(repl_msg_encode(&m, out, sizeof(out), &len, &error), TDM_EINVAL);
    assert_string_equal(error, "HELLO.key: NULL pointer with a non-zero length");
    struct repl_msg bad = {.type = 4};
    assert_int_equal(repl_msg_check(&bad, &error), TDM_EINVAL);
    assert_string_equal(error, "unknown message type");
}

/* SEED_*: each rule by its error, the decoded fields, and the first-message rules. */
static void
expect_rule(const struct repl_msg *m, const char *want)
{
    const char *error = NULL;
    if (repl_msg_check(m, &error) != TDM_EINVAL || error == NULL || strcmp(error, want) != 0)
        fail_msg("want \"%s\", got \"%s\"", want, error ? error : "(null)");
}

static void
test_seed_messages(void **state)
{
    (void)state;
    init_samples();
    /* Decoded fields land where they were put. */
    const struct repl_msg *end = NULL;
    for (size_t i = 0; i < n_samples; i++)
        if (strcmp(sample_names[i], "seed_end") == 0)
            end = &samples[i];
    assert_non_null(end);
    size_t len;
    uint8_t *buf = encode(end, &len);
    struct repl_msg m;
    const char *error = NULL;
    assert_int_equal(repl_msg_decode(buf, len, &m, NULL, &error), 0);
    assert_int_equal(m.u.seed_end.total_size, 65536);
    assert_int_equal(m.u.seed_end.applied_lsn, 42);
    assert_int_equal(m.u.seed_end.first_generation, 3);
    assert_int_equal(m.u.seed_end.sha256[31], 0x5a);
    assert_int_equal(m.u.seed_end.guid[0], 0xa5);
    free(buf);

    struct repl_msg q = {.type = REPL_SEED_REQUEST, .request_id = 1};
    q.u.seed_request = (struct repl_seed_request){
        1, 1, repl_str_c("mb2"), repl_str_c("k"), repl_str_c("db"), REPL_ROLE_PASSIVE};
    assert_int_equal(repl_msg_check(&q, NULL), 0);
    q.request_id = 0;
    expect_rule(&q, "request id zero on HELLO, HELLO_REPLY or SEED_REQUEST");
    q.request_id = 1;
    q.u.seed_request.role = 3;
    expect_rule(&q, "SEED_REQUEST.role: unknown role");
    q.u.seed_request.role = REPL_ROLE_STANDBY;
    q.u.seed_request.version_min = 0;
    expect_rule(&q, "SEED_REQUEST.version_min: zero");
    q.u.seed_request.version_min = 2;
    expect_rule(&q, "SEED_REQUEST.version_max: below version_min");
    q.u.seed_request.version_min = 1;
    q.u.seed_request.database = repl_str_c("");
    expect_rule(&q, "SEED_REQUEST.database: empty");

    static uint8_t bytes[16];
    struct repl_msg d = {.type = REPL_SEED_DATA};
    d.u.seed_data = (struct repl_seed_data){0, 16, 0, 16, bytes, 16};
    assert_int_equal(repl_msg_check(&d, NULL), 0);
    d.u.seed_data.offset = 1;
    expect_rule(&d, "SEED_DATA.offset: the bytes run past total_size");
    d.u.seed_data.offset = 0;
    d.u.seed_data.total_size = 0;
    expect_rule(&d, "SEED_DATA.total_size: zero");
    d.u.seed_data.total_size = REPL_WIRE_SEED_MAX + 1;
    expect_rule(&d, "SEED_DATA.total_size: over REPL_WIRE_SEED_MAX");
    d.u.seed_data.total_size = 16;
    d.u.seed_data.data_len = 15;
    expect_rule(&d, "SEED_DATA.data: not raw_length bytes");
    d.u.seed_data.compression = REPL_COMPRESSION_ZSTD;
    d.u.seed_data.data_len = 16;
    expect_rule(&d, "SEED_DATA.data: compressed to no fewer bytes than raw_length");
    d.u.seed_data.compression = 2;
    expect_rule(&d, "SEED_DATA.compression: unknown compression");
    d.u.seed_data.compression = 0;
    d.u.seed_data.raw_length = 0;
    d.u.seed_data.data_len = 0;
    expect_rule(&d, "SEED_DATA.raw_length: zero");

    struct repl_msg e = *end;
    e.u.seed_end.first_generation = 0;
    expect_rule(&e, "SEED_END.first_generation: zero");
    e = *end;
    memset(e.u.seed_end.guid, 0, REPL_WIRE_GUID_LEN);
    expect_rule(&e, "SEED_END.guid: all zero");
    e = *end;
    e.u.seed_end.total_size = 0;
    expect_rule(&e, "SEED_END.total_size: zero");

    /* By hand: a sha256 of the wrong length, and SEED_REQUEST at another frame version. */
    struct raw p = {.n = 0};
    raw_u64(&p, 10);
    raw_span(&p, 6, bytes, 16);
    struct raw f = raw_frame(1, REPL_SEED_END, 0, 0, &p);
    expect_error(&f, "SEED_END.sha256: not 32 bytes");
    p.n = 0;
    raw_u16(&p, 1);
    raw_u16(&p, 1);
    raw_str(&p, "mb2");
    raw_str(&p, "k");
    raw_str(&p, "db");
    raw_u16(&p, REPL_ROLE_PASSIVE);
    f = raw_frame(1, REPL_SEED_REQUEST, 9, 0, &p);
    assert_int_equal(repl_msg_decode(f.b, f.n, &m, NULL, &error), 0);
    assert_int_equal(m.u.seed_request.database.len, 2);
    f = raw_frame(2, REPL_SEED_REQUEST, 9, 0, &p);
    expect_error(&f, "HELLO, HELLO_REPLY and SEED_REQUEST frames must carry protocol version 1");
    assert_string_equal(repl_type_name(REPL_SEED_END), "SEED_END");
}

static void
test_names_and_negotiation(void **state)
{
    (void)state;
    assert_string_equal(repl_type_name(REPL_LOG_DATA), "LOG_DATA");
    assert_null(repl_type_name(0));
    assert_string_equal(repl_code_name(REPL_CODE_POSITION_GONE), "position-gone");
    assert_string_equal(repl_code_name(REPL_CODE_UNKNOWN_DATABASE), "unknown-database");
    assert_string_equal(repl_code_name(REPL_CODE_RELEASED), "released");
    assert_null(repl_code_name(14));
    assert_string_equal(repl_mode_name(REPL_MODE_FILE), "file");
    assert_null(repl_mode_name(0));
    assert_string_equal(repl_role_name(REPL_ROLE_STANDBY), "standby");
    uint16_t v = 0;
    const char *error = NULL;
    assert_int_equal(repl_version_negotiate(1, 9, &v, &error), 0);
    assert_int_equal(v, REPL_WIRE_VERSION);
    assert_int_equal(repl_version_negotiate(2, 9, &v, &error), TDM_EINVAL);
    assert_string_equal(error, "the copy speaks only versions newer than this source's newest");
    assert_int_equal(repl_version_negotiate(0, 1, &v, &error), TDM_EINVAL);
}

/* ---- zstd ---- */

static void
test_zstd_round_trip(void **state)
{
    (void)state;
    struct repl_zstd *z = NULL;
    assert_int_equal(repl_zstd_new(99, &z), 0); /* clamped, not refused */
    static uint8_t src[REPL_WIRE_CHUNK_MAX], comp[REPL_WIRE_CHUNK_MAX], back[REPL_WIRE_CHUNK_MAX];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)("log record "[i % 11]);
    size_t n = 0;
    assert_int_equal(repl_zstd_compress(z, src, sizeof(src), comp, sizeof(comp), &n), 0);
    assert_true(n > 0 && n < sizeof(src) / 10);
    const char *error = NULL;
    assert_int_equal(repl_zstd_decompress(z, comp, n, back, sizeof(src), &error), 0);
    assert_memory_equal(back, src, sizeof(src));
    /* The context is reused: a second chunk works the same. */
    assert_int_equal(repl_zstd_compress(z, src, 5000, comp, sizeof(comp), &n), 0);
    assert_int_equal(repl_zstd_decompress(z, comp, n, back, 5000, &error), 0);
    assert_memory_equal(back, src, 5000);
    repl_zstd_free(&z);
    assert_null(z);
}

static void
test_zstd_incompressible(void **state)
{
    (void)state;
    struct repl_zstd *z = NULL;
    assert_int_equal(repl_zstd_new(3, &z), 0);
    uint8_t src[4096], comp[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(src); i++) {
        x = x * 1103515245u + 12345u;
        src[i] = (uint8_t)(x >> 16);
    }
    size_t n = 0;
    assert_int_equal(repl_zstd_compress(z, src, sizeof(src), comp, sizeof(comp), &n), TDM_ELIMIT);
    assert_int_equal(repl_zstd_compress(z, src, 1, comp, sizeof(comp), &n), TDM_ELIMIT);
    assert_int_equal(repl_zstd_compress(z, src, 0, comp, sizeof(comp), &n), TDM_EINVAL);
    repl_zstd_free(&z);
}

/* A lying raw_length is an error, never an overflow: the destination is exactly raw_length
 * (heap-allocated so ASan sees one byte past it). */
static void
test_zstd_lying_length(void **state)
{
    (void)state;
    struct repl_zstd *z = NULL;
    assert_int_equal(repl_zstd_new(1, &z), 0);
    uint8_t src[10000], comp[10000];
    memset(src, 'a', sizeof(src));
    size_t n = 0;
    assert_int_equal(repl_zstd_compress(z, src, sizeof(src), comp, sizeof(comp), &n), 0);
    const char *error = NULL;
    uint8_t *dst = malloc(9999);
    assert_int_equal(repl_zstd_decompress(z, comp, n, dst, 9999, &error), TDM_ECORRUPT);
    assert_string_equal(error, "zstd: the frame declares a size other than raw_length");
    free(dst);
    dst = malloc(10001);
    assert_int_equal(repl_zstd_decompress(z, comp, n, dst, 10001, &error), TDM_ECORRUPT);
    assert_string_equal(error, "zstd: the frame declares a size other than raw_length");
    free(dst);
    dst = malloc(10000);
    assert_int_equal(repl_zstd_decompress(z, comp, n - 1, dst, 10000, &error), TDM_ECORRUPT);
    assert_string_equal(error, "zstd: the frame is cut short or malformed");
    uint8_t *two = malloc(n + 1);
    memcpy(two, comp, n);
    two[n] = 0;
    assert_int_equal(repl_zstd_decompress(z, two, n + 1, dst, 10000, &error), TDM_ECORRUPT);
    assert_string_equal(error, "zstd: bytes after the frame");
    free(two);
    assert_int_equal(repl_zstd_decompress(z, (const uint8_t *)"nonsense", 8, dst, 10000, &error),
                     TDM_ECORRUPT);
    assert_string_equal(error, "zstd: not a zstd frame");
    assert_int_equal(repl_zstd_decompress(z, comp, 0, dst, 10000, &error), TDM_ECORRUPT);
    /* Damage inside the compressed block: refused, never more than raw_length written. */
    comp[n / 2] ^= 0x55;
    int rc = repl_zstd_decompress(z, comp, n, dst, 10000, &error);
    assert_true(rc == 0 || rc == TDM_ECORRUPT);
    free(dst);
    repl_zstd_free(&z);
}

/* ---- Corpus ---- */

static int
write_file(const char *dir, const char *name, const uint8_t *b, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static int
write_corpus(const char *dir)
{
    init_samples();
    int bad = 0;
    for (size_t i = 0; i < n_samples; i++) {
        size_t len;
        uint8_t *buf = encode(&samples[i], &len);
        if (len <= 65536)
            bad |= write_file(dir, sample_names[i], buf, len);
        free(buf);
    }
    struct raw p = raw_hello(good_hello);
    struct raw f = raw_frame(1, REPL_HELLO, 1, 0, &p);
    bad |= write_file(dir, "raw_hello", f.b, f.n);
    p = raw_log_data(good_log);
    f = raw_frame(1, REPL_LOG_DATA, 0, 0, &p);
    bad |= write_file(dir, "raw_log_data", f.b, f.n);
    f.b[f.n - 1] ^= 1;
    bad |= write_file(dir, "invalid_crc", f.b, f.n);
    /* A real zstd chunk, so the fuzzer starts inside the decompressor. */
    struct repl_zstd *z = NULL;
    uint8_t raw[3000], comp[3000];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)("frame "[i % 6]);
    if (repl_zstd_new(3, &z) != 0 ||
        repl_zstd_compress(z, raw, sizeof(raw), comp, sizeof(comp), &n) != 0)
        return 1;
    repl_zstd_free(&z);
    struct repl_msg m = {.type = REPL_LOG_DATA};
    m.u.log_data = (struct repl_log_data){
        .generation = 4,
        .offset = 4148,
        .file_size = 65536,
        .compression = REPL_COMPRESSION_ZSTD,
        .raw_length = sizeof(raw),
        .data = comp,
        .data_len = (uint32_t)n,
    };
    size_t len;
    uint8_t *buf = encode(&m, &len);
    bad |= write_file(dir, "log_data_zstd_real", buf, len);
    free(buf);
    bad |= write_file(dir, "invalid_cut", f.b, 30);
    return bad;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_fields_decoded),
        cmocka_unit_test(test_doc_example),
        cmocka_unit_test(test_prefixes_need_more),
        cmocka_unit_test(test_stream_split),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_hello_errors),
        cmocka_unit_test(test_hello_reply_errors),
        cmocka_unit_test(test_log_data_errors),
        cmocka_unit_test(test_small_message_errors),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_names_and_negotiation),
        cmocka_unit_test(test_zstd_round_trip),
        cmocka_unit_test(test_zstd_incompressible),
        cmocka_unit_test(test_zstd_lying_length),
        cmocka_unit_test(test_seed_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
