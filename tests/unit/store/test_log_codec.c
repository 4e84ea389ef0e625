/*
 * Tests of the sans-IO log codec (src/store/log_codec.c) against the layout in
 * include/tandem/log_format.h: round trips, byte offsets, every single-bit flip, every split
 * point, zero fill and the limits. Decoders must never accept a damaged or partial input.
 */
#include "store/log_codec.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- helpers ---- */

static void
fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* A version 2 header: every field of the generation's identity is in it. */
static struct log_header
sample_header(void)
{
    struct log_header h;
    memset(&h, 0, sizeof(h));
    h.version = 2;
    for (unsigned i = 0; i < TDM_LOG_GUID_LEN; i++)
        h.guid[i] = (uint8_t)(0xa0 + i);
    h.generation = 0x0102030405060708ull;
    h.created_us = 1764081306123456ull;
    h.epoch = 7;
    h.first_lsn = 4242;
    h.prev_checksum = 0xdeadbeefu;
    h.file_size = TDM_LOG_DEFAULT_GENERATION_SIZE;
    return h;
}

static void
assert_header_equal(const struct log_header *a, const struct log_header *b)
{
    assert_int_equal(a->version, b->version);
    assert_memory_equal(a->guid, b->guid, TDM_LOG_GUID_LEN);
    assert_true(a->generation == b->generation);
    assert_true(a->created_us == b->created_us);
    assert_true(a->epoch == b->epoch);
    assert_true(a->first_lsn == b->first_lsn);
    assert_int_equal(a->prev_checksum, b->prev_checksum);
    assert_int_equal(a->file_size, b->file_size);
}

/* Rewrites the header CRC after a test changed a field on purpose. */
static void
header_reseal(uint8_t *buf)
{
    le_put32(buf + 72, crc32c(0, buf, 72));
}

/* A frame with a pseudo-random payload; the caller frees it. */
static uint8_t *
make_frame(uint64_t lsn, uint64_t epoch, uint16_t type, uint32_t len, uint32_t seed,
           size_t *frame_len_r)
{
    uint8_t *payload = malloc(len > 0 ? len : 1);
    assert_non_null(payload);
    fill_pattern(payload, len, seed);
    size_t n = log_frame_size(len);
    uint8_t *out = malloc(n);
    assert_non_null(out);
    log_record_encode(lsn, epoch, type, payload, len, out);
    free(payload);
    *frame_len_r = n;
    return out;
}

/* Rewrites a frame's CRC after a test changed its header on purpose. */
static void
frame_reseal(uint8_t *frame)
{
    uint32_t plen = le_get32(frame + 20);
    le_put32(frame + TDM_LOG_FRAME_HEADER + plen,
             crc32c(0, frame, TDM_LOG_FRAME_HEADER + (size_t)plen));
}

static int
decode(const uint8_t *buf, size_t len, struct log_record *rec, size_t *flen, const char **err)
{
    *err = NULL;
    *flen = 0;
    memset(rec, 0, sizeof(*rec));
    int r = log_record_decode(buf, len, rec, flen, err);
    if (r == TDM_ECORRUPT || r == TDM_ENEEDMORE)
        assert_non_null(*err);
    return r;
}

/* ---- header ---- */

static void
test_header_round_trip(void **state)
{
    (void)state;
    struct log_header cases[4];
    cases[0] = sample_header();
    cases[1] = sample_header();
    cases[1].generation = 1;
    cases[1].first_lsn = 1;
    cases[1].prev_checksum = 0;
    cases[1].created_us = 0;
    cases[1].epoch = 0;
    cases[1].file_size = TDM_LOG_HEADER_SIZE + TDM_LOG_END_FRAME; /* smallest allowed */
    cases[2] = sample_header();
    memset(cases[2].guid, 0xff, TDM_LOG_GUID_LEN);
    cases[2].generation = UINT64_MAX;
    cases[2].created_us = UINT64_MAX;
    cases[2].epoch = UINT64_MAX;
    cases[2].first_lsn = UINT64_MAX;
    cases[2].prev_checksum = UINT32_MAX;
    cases[2].file_size = TDM_LOG_MAX_GENERATION_SIZE; /* largest allowed */
    cases[3] = sample_header();
    cases[3].version = 1; /* read as it is */

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint8_t buf[TDM_LOG_HEADER_SIZE];
        memset(buf, 0, sizeof(buf));
        log_header_encode(&cases[c], buf);

        struct log_header got;
        const char *err = NULL;
        /* Both the used bytes alone and the whole header block decode. */
        assert_int_equal(log_header_decode(buf, TDM_LOG_HEADER_USED, &got, &err), 0);
        assert_header_equal(&cases[c], &got);
        assert_int_equal(log_header_decode(buf, sizeof(buf), &got, &err), 0);
        assert_header_equal(&cases[c], &got);

        uint8_t again[TDM_LOG_HEADER_USED];
        log_header_encode(&got, again);
        assert_memory_equal(buf, again, TDM_LOG_HEADER_USED);
        assert_false(log_header_is_blank(buf, sizeof(buf)));
    }
}

/* Version 3: the header names the database only; the identity is in BEGIN. */
static void
test_header_v3(void **state)
{
    (void)state;
    struct log_header h = sample_header();
    h.version = TDM_LOG_VERSION;
    uint8_t buf[TDM_LOG_HEADER_USED + 8];
    memset(buf, 0xcc, sizeof(buf));
    log_header_encode(&h, buf);

    assert_memory_equal(buf, "TDMLOG01", 8);
    assert_int_equal(le_get32(buf + 8), 3);
    assert_int_equal(le_get32(buf + 12), TDM_LOG_HEADER_SIZE);
    assert_memory_equal(buf + 16, h.guid, 16);
    for (size_t i = 32; i < 72; i++) /* the identity fields of version 2 are not written */
        assert_int_equal(buf[i], 0);
    assert_int_equal(le_get32(buf + 72), crc32c(0, buf, 72));
    for (size_t i = TDM_LOG_HEADER_USED; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xcc);

    struct log_header got, want = {.version = 3};
    memcpy(want.guid, h.guid, sizeof(want.guid));
    const char *err = NULL;
    assert_int_equal(log_header_decode(buf, TDM_LOG_HEADER_USED, &got, &err), 0);
    assert_header_equal(&want, &got);

    /* Reserved bytes set, even sealed by a good CRC: refused, one byte at a time. */
    for (size_t i = 32; i < 72; i++) {
        uint8_t bad[TDM_LOG_HEADER_USED];
        memcpy(bad, buf, sizeof(bad));
        bad[i] = 1;
        header_reseal(bad);
        err = NULL;
        assert_int_equal(log_header_decode(bad, sizeof(bad), &got, &err), TDM_ECORRUPT);
        assert_non_null(err);
    }
}

/* The encoder writes exactly the layout documented in log_format.h (version 2). */
static void
test_header_layout(void **state)
{
    (void)state;
    struct log_header h = sample_header();
    uint8_t buf[TDM_LOG_HEADER_USED + 8];
    memset(buf, 0xcc, sizeof(buf));
    log_header_encode(&h, buf);

    assert_memory_equal(buf, "TDMLOG01", 8);
    assert_int_equal(le_get32(buf + 8), 2);
    assert_int_equal(le_get32(buf + 12), TDM_LOG_HEADER_SIZE);
    assert_memory_equal(buf + 16, h.guid, 16);
    assert_true(le_get64(buf + 32) == h.generation);
    assert_int_equal(buf[32], 0x08); /* little-endian */
    assert_int_equal(buf[39], 0x01);
    assert_true(le_get64(buf + 40) == h.created_us);
    assert_true(le_get64(buf + 48) == h.epoch);
    assert_true(le_get64(buf + 56) == h.first_lsn);
    assert_int_equal(le_get32(buf + 64), h.prev_checksum);
    assert_int_equal(le_get32(buf + 68), h.file_size);
    assert_int_equal(le_get32(buf + 72), crc32c(0, buf, 72));
    /* Nothing is written past the used bytes. */
    for (size_t i = TDM_LOG_HEADER_USED; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xcc);
}

static void
test_header_every_bit_flip(void **state)
{
    (void)state;
    struct log_header h = sample_header();
    uint8_t good[TDM_LOG_HEADER_USED];
    log_header_encode(&h, good);

    for (size_t bit = 0; bit < TDM_LOG_HEADER_USED * 8; bit++) {
        uint8_t buf[TDM_LOG_HEADER_USED];
        memcpy(buf, good, sizeof(buf));
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct log_header got;
        const char *err = NULL;
        int r = log_header_decode(buf, sizeof(buf), &got, &err);
        if (r != TDM_ECORRUPT)
            fail_msg("flip of bit %zu (byte %zu) gave %d, not TDM_ECORRUPT", bit, bit / 8, r);
        assert_non_null(err);
    }
}

static void
test_header_short(void **state)
{
    (void)state;
    struct log_header h = sample_header();
    uint8_t buf[TDM_LOG_HEADER_USED];
    log_header_encode(&h, buf);
    for (size_t len = 0; len < TDM_LOG_HEADER_USED; len++) {
        /* An exact-size copy lets ASan catch a read past len. */
        uint8_t *p = malloc(len > 0 ? len : 1);
        assert_non_null(p);
        memcpy(p, buf, len);
        struct log_header got;
        const char *err = NULL;
        assert_int_equal(log_header_decode(p, len, &got, &err), TDM_ENEEDMORE);
        assert_non_null(err);
        free(p);
    }
}

/* Fields the CRC covers but that must still be checked: a correctly sealed but invalid header. */
static void
test_header_field_checks(void **state)
{
    (void)state;
    struct {
        size_t off;
        int width;
        uint64_t value;
        int expect;
    } cases[] = {
        {8, 4, TDM_LOG_VERSION + 1, TDM_ECORRUPT},
        {8, 4, 0, TDM_ECORRUPT},
        {12, 4, TDM_LOG_HEADER_SIZE * 2, TDM_ECORRUPT},
        {12, 4, TDM_LOG_HEADER_USED, TDM_ECORRUPT},
        {32, 8, 0, TDM_ECORRUPT}, /* generation 0 */
        {32, 8, 1, 0},
        {56, 8, 0, TDM_ECORRUPT}, /* first LSN 0 */
        {56, 8, 1, 0},
        {68, 4, 0, TDM_ECORRUPT},
        {68, 4, TDM_LOG_HEADER_SIZE, TDM_ECORRUPT},
        {68, 4, TDM_LOG_HEADER_SIZE + TDM_LOG_END_FRAME - 1, TDM_ECORRUPT},
        {68, 4, TDM_LOG_HEADER_SIZE + TDM_LOG_END_FRAME, 0},
        {68, 4, TDM_LOG_MAX_GENERATION_SIZE, 0},
        {68, 4, TDM_LOG_MAX_GENERATION_SIZE + 1ull, TDM_ECORRUPT},
        {64, 4, 0, 0}, /* prev checksum 0: generation 1 or unclosed predecessor */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct log_header h = sample_header();
        uint8_t buf[TDM_LOG_HEADER_USED];
        log_header_encode(&h, buf);
        if (cases[c].width == 4)
            le_put32(buf + cases[c].off, (uint32_t)cases[c].value);
        else
            le_put64(buf + cases[c].off, cases[c].value);
        header_reseal(buf);
        struct log_header got;
        const char *err = NULL;
        int r = log_header_decode(buf, sizeof(buf), &got, &err);
        if (r != cases[c].expect)
            fail_msg("case %zu (offset %zu): got %d, want %d", c, cases[c].off, r, cases[c].expect);
        if (r != 0)
            assert_non_null(err);
    }

    /* Wrong magic with a valid CRC is still not a tandem log. */
    struct log_header h = sample_header();
    uint8_t buf[TDM_LOG_HEADER_USED];
    log_header_encode(&h, buf);
    memcpy(buf, "TDMLOG02", 8);
    header_reseal(buf);
    struct log_header got;
    const char *err = NULL;
    assert_int_equal(log_header_decode(buf, sizeof(buf), &got, &err), TDM_ECORRUPT);
    assert_non_null(err);
}

static void
test_header_blank(void **state)
{
    (void)state;
    uint8_t buf[TDM_LOG_HEADER_SIZE];
    memset(buf, 0, sizeof(buf));
    assert_true(log_header_is_blank(buf, sizeof(buf)));
    assert_true(log_header_is_blank(buf, TDM_LOG_HEADER_USED));

    /* Any non-zero used byte makes it not blank. */
    for (size_t i = 0; i < TDM_LOG_HEADER_USED; i++) {
        buf[i] = 0x10;
        assert_false(log_header_is_blank(buf, sizeof(buf)));
        buf[i] = 0;
    }
    /* Only the used bytes count. */
    buf[TDM_LOG_HEADER_USED] = 1;
    buf[TDM_LOG_HEADER_SIZE - 1] = 1;
    assert_true(log_header_is_blank(buf, sizeof(buf)));

    /* A blank header is not a valid one. */
    memset(buf, 0, sizeof(buf));
    struct log_header got;
    const char *err = NULL;
    assert_int_equal(log_header_decode(buf, sizeof(buf), &got, &err), TDM_ECORRUPT);

    struct log_header h = sample_header();
    log_header_encode(&h, buf);
    assert_false(log_header_is_blank(buf, sizeof(buf)));
}

/* ---- record frames ---- */

static void
check_round_trip(uint64_t lsn, uint64_t epoch, uint16_t type, uint32_t len)
{
    size_t flen;
    uint8_t *f = make_frame(lsn, epoch, type, len, len * 31u + 7u, &flen);
    assert_int_equal(flen, (size_t)TDM_LOG_FRAME_OVERHEAD + len);

    /* Layout. */
    assert_true(le_get64(f) == lsn);
    assert_true(le_get64(f + 8) == epoch);
    assert_int_equal(le_get16(f + 16), type);
    assert_int_equal(le_get16(f + 18), 0);
    assert_int_equal(le_get32(f + 20), len);
    assert_int_equal(le_get32(f + TDM_LOG_FRAME_HEADER + len),
                     crc32c(0, f, TDM_LOG_FRAME_HEADER + (size_t)len));

    struct log_record rec;
    size_t got_len;
    const char *err;
    assert_int_equal(decode(f, flen, &rec, &got_len, &err), 0);
    assert_int_equal(got_len, flen);
    assert_true(rec.lsn == lsn);
    assert_true(rec.epoch == epoch);
    assert_int_equal(rec.type, type);
    assert_int_equal(rec.flags, 0);
    assert_int_equal(rec.length, len);
    assert_ptr_equal(rec.payload, f + TDM_LOG_FRAME_HEADER);

    /* Re-encoding what was decoded gives the same bytes. */
    uint8_t *again = malloc(flen);
    assert_non_null(again);
    log_record_encode(rec.lsn, rec.epoch, rec.type, rec.payload, rec.length, again);
    assert_memory_equal(f, again, flen);
    free(again);
    free(f);
}

static void
test_record_round_trip_lengths(void **state)
{
    (void)state;
    for (uint32_t len = 0; len <= 600; len++)
        check_round_trip(len + 1, 3, TDM_REC_NOOP, len);
    static const uint32_t big[] = {4095,
                                   4096,
                                   4097,
                                   65535,
                                   65536,
                                   1024u * 1024,
                                   16777215,
                                   TDM_LOG_MAX_PAYLOAD - 1,
                                   TDM_LOG_MAX_PAYLOAD};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        check_round_trip(1000 + i, 9, TDM_REC_MESSAGE_APPEND, big[i]);
}

/* Encoded in two steps (the store's way: the payload before the LSN is known), a frame is byte
 * for byte log_record_encode()'s, for every length up to 600, lengths around every power of
 * two up to the largest payload, and LSNs and epochs with their high bits set. */
static void
check_prepare_seal(uint64_t lsn, uint64_t epoch, uint16_t type, uint32_t len)
{
    size_t fl = log_frame_size(len);
    uint8_t *payload = malloc(len ? len : 1), *a = malloc(fl), *b = malloc(fl);
    assert_non_null(payload);
    assert_non_null(a);
    assert_non_null(b);
    fill_pattern(payload, len, (uint32_t)(lsn ^ len));
    log_record_encode(lsn, epoch, type, payload, len, a);
    struct log_frame_pre pre;
    memset(b, 0xA5, fl); /* whatever was there before must not show through */
    log_record_prepare(type, payload, len, b, &pre);
    log_record_seal(b, len, &pre, lsn, epoch);
    assert_memory_equal(a, b, fl);
    struct log_record rec;
    size_t used = 0;
    const char *why = NULL;
    assert_int_equal(log_record_decode(b, fl, &rec, &used, &why), 0);
    assert_int_equal(used, fl);
    free(payload);
    free(a);
    free(b);
}

static void
test_record_prepare_seal(void **state)
{
    (void)state;
    for (uint32_t len = 0; len <= 600; len++)
        check_prepare_seal(len + 1, len * 7, TDM_REC_NOOP, len);
    for (uint32_t bit = 10; bit <= 25; bit++)
        for (int d = -1; d <= 1; d++)
            check_prepare_seal(0x8000000000000000ull | bit, ~(uint64_t)0 - bit,
                               TDM_REC_MESSAGE_APPEND, (1u << bit) + (uint32_t)d);
    check_prepare_seal(~(uint64_t)0, 1, TDM_REC_NOOP, TDM_LOG_MAX_PAYLOAD - 1);
    check_prepare_seal(~(uint64_t)0 - 1, 1, TDM_REC_NOOP, TDM_LOG_MAX_PAYLOAD);
    /* The same prepared frame sealed twice with different LSNs (a frame is sealed once in the
     * store; this checks that seal depends on nothing left from before). */
    uint8_t payload[100], a[sizeof(payload) + TDM_LOG_FRAME_OVERHEAD],
        b[sizeof(payload) + TDM_LOG_FRAME_OVERHEAD];
    fill_pattern(payload, sizeof(payload), 5);
    struct log_frame_pre pre;
    log_record_prepare(TDM_REC_NOOP, payload, sizeof(payload), b, &pre);
    log_record_seal(b, sizeof(payload), &pre, 41, 2);
    log_record_seal(b, sizeof(payload), &pre, 42, 3);
    log_record_encode(42, 3, TDM_REC_NOOP, payload, sizeof(payload), a);
    assert_memory_equal(a, b, sizeof(a));
}

static void
test_record_round_trip_fields(void **state)
{
    (void)state;
    static const uint16_t types[] = {
        TDM_REC_END,
        TDM_REC_NOOP,
        TDM_REC_MAILBOX_CREATE,
        TDM_REC_MAILBOX_DELETE,
        TDM_REC_MAILBOX_SET_QUOTA,
        TDM_REC_FOLDER_CREATE,
        TDM_REC_FOLDER_RENAME,
        TDM_REC_FOLDER_DELETE,
        TDM_REC_FOLDER_SUBSCRIBE,
        TDM_REC_MESSAGE_APPEND,
        TDM_REC_MESSAGE_FLAGS,
        TDM_REC_MESSAGE_EXPUNGE,
        TDM_REC_MESSAGE_COPY,
        UINT16_MAX,
    };
    static const uint64_t values[] = {1, 255, 256, 65536, 0x0102030405060708ull, UINT64_MAX};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++)
            check_round_trip(values[v], values[(v + t) % 6], types[t], (uint32_t)(t * 5));
    /* END may carry LSN 0 (a generation without data records) and epoch 0. */
    check_round_trip(0, 0, TDM_REC_END, TDM_LOG_END_PAYLOAD);
}

/* Frames whose leading bytes are zero are the hard case for telling a prefix from zero fill. */
static const struct {
    uint64_t lsn;
    uint64_t epoch;
    uint16_t type;
    uint32_t len;
} split_cases[] = {
    {1, 1, TDM_REC_NOOP, 0},
    {2, 1, TDM_REC_NOOP, 1},
    {256, 1, TDM_REC_NOOP, 5},                /* first byte zero */
    {1ull << 56, 0, TDM_REC_NOOP, 3},         /* first seven bytes zero */
    {0, 0, TDM_REC_END, TDM_LOG_END_PAYLOAD}, /* first twenty bytes zero but for type */
    {0, 5, TDM_REC_END, TDM_LOG_END_PAYLOAD},
    {77, 2, TDM_REC_MESSAGE_APPEND, 300},
};

static void
test_record_every_prefix(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(split_cases) / sizeof(split_cases[0]); c++) {
        size_t flen;
        uint8_t *f = make_frame(split_cases[c].lsn, split_cases[c].epoch, split_cases[c].type,
                                split_cases[c].len, (uint32_t)c, &flen);
        for (size_t k = 0; k <= flen; k++) {
            uint8_t *p = malloc(k > 0 ? k : 1); /* exact size: ASan sees overreads */
            assert_non_null(p);
            memcpy(p, f, k);
            struct log_record rec;
            size_t got;
            const char *err;
            int r = decode(p, k, &rec, &got, &err);
            int want = k < flen ? TDM_ENEEDMORE : 0;
            if (r != want)
                fail_msg("case %zu: prefix %zu of %zu gave %d, want %d", c, k, flen, r, want);
            if (r == 0)
                assert_int_equal(got, flen);
            free(p);
        }
        free(f);
    }
}

/*
 * A stream of frames split into two pieces at every offset, fed to a reader that decodes what
 * it can, keeps the rest and appends the next piece: it must see exactly the frames written.
 */
static void
test_stream_split_every_offset(void **state)
{
    (void)state;
    uint8_t stream[2048];
    size_t total = 0;
    size_t n = sizeof(split_cases) / sizeof(split_cases[0]);
    for (size_t c = 0; c < n; c++) {
        size_t flen;
        uint8_t *f = make_frame(split_cases[c].lsn, split_cases[c].epoch, split_cases[c].type,
                                split_cases[c].len, (uint32_t)c, &flen);
        assert_true(total + flen <= sizeof(stream));
        memcpy(stream + total, f, flen);
        total += flen;
        free(f);
    }

    for (size_t cut = 0; cut <= total; cut++) {
        uint8_t pending[2048];
        size_t have = 0, fed = 0, seen = 0;
        size_t pieces[2] = {cut, total - cut};
        for (int piece = 0; piece < 2; piece++) {
            memcpy(pending + have, stream + fed, pieces[piece]);
            have += pieces[piece];
            fed += pieces[piece];
            for (;;) {
                struct log_record rec;
                size_t flen;
                const char *err;
                int r = decode(pending, have, &rec, &flen, &err);
                if (r == TDM_ENEEDMORE)
                    break;
                if (r != 0)
                    fail_msg("cut %zu: frame %zu gave %d (%s)", cut, seen, r, err);
                assert_true(seen < n);
                assert_true(rec.lsn == split_cases[seen].lsn);
                assert_true(rec.epoch == split_cases[seen].epoch);
                assert_int_equal(rec.type, split_cases[seen].type);
                assert_int_equal(rec.length, split_cases[seen].len);
                seen++;
                memmove(pending, pending + flen, have - flen);
                have -= flen;
            }
        }
        assert_int_equal(seen, n);
        assert_int_equal(have, 0);
    }
}

/*
 * Every single-bit flip anywhere in a frame is rejected. The only answer besides TDM_ECORRUPT
 * is TDM_ENEEDMORE, and only when the flip is in the length field and made the frame longer
 * than the buffer. tail is the number of zero bytes after the frame (zero fill).
 */
static void
check_bit_flips(uint64_t lsn, uint64_t epoch, uint16_t type, uint32_t len, size_t tail)
{
    size_t flen;
    uint8_t *f = make_frame(lsn, epoch, type, len, len ^ 0x5a5au, &flen);
    size_t blen = flen + tail;
    uint8_t *buf = calloc(1, blen);
    assert_non_null(buf);

    for (size_t bit = 0; bit < flen * 8; bit++) {
        memset(buf + flen, 0, tail);
        memcpy(buf, f, flen);
        size_t byte = bit / 8;
        buf[byte] ^= (uint8_t)(1u << (bit % 8));
        struct log_record rec;
        size_t got;
        const char *err;
        int r = decode(buf, blen, &rec, &got, &err);
        if (r == TDM_ECORRUPT)
            continue;
        if (r == TDM_ENEEDMORE && byte >= 20 && byte < 24 &&
            log_frame_size(le_get32(buf + 20)) > blen)
            continue;
        fail_msg("lsn %llu len %u tail %zu: flip of bit %zu (byte %zu) gave %d",
                 (unsigned long long)lsn, len, tail, bit, byte, r);
    }
    free(buf);
    free(f);
}

static void
test_record_every_bit_flip(void **state)
{
    (void)state;
    static const size_t tails[] = {0, 1, 64, 4096};
    for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
        check_bit_flips(1, 1, TDM_REC_NOOP, 0, tails[t]);
        check_bit_flips(2, 1, TDM_REC_NOOP, 1, tails[t]);
        check_bit_flips(256, 3, TDM_REC_FOLDER_CREATE, 37, tails[t]);
        check_bit_flips(0, 0, TDM_REC_END, TDM_LOG_END_PAYLOAD, tails[t]);
        check_bit_flips(UINT64_MAX, UINT64_MAX, TDM_REC_MESSAGE_APPEND, 513, tails[t]);
    }
}

static void
test_zero_fill(void **state)
{
    (void)state;
    uint8_t zeros[4096];
    memset(zeros, 0, sizeof(zeros));
    struct log_record rec;
    size_t flen;
    const char *err;

    assert_int_equal(decode(zeros, sizeof(zeros), &rec, &flen, &err), 1);
    assert_int_equal(decode(zeros, TDM_LOG_FRAME_HEADER, &rec, &flen, &err), 1);
    /* Fewer zero bytes than a frame header could still be the start of a frame (LSN 256, or
     * an END frame with LSN 0), so they are not yet the end. */
    for (size_t k = 0; k < TDM_LOG_FRAME_HEADER; k++)
        assert_int_equal(decode(zeros, k, &rec, &flen, &err), TDM_ENEEDMORE);

    /* Frames, then zero fill: a reader sees the frames and then the end. */
    uint8_t gen[4096];
    memset(gen, 0, sizeof(gen));
    size_t off = 0;
    for (uint64_t lsn = 1; lsn <= 5; lsn++) {
        size_t n;
        uint8_t *f = make_frame(lsn, 1, TDM_REC_NOOP, (uint32_t)(lsn * 10), (uint32_t)lsn, &n);
        memcpy(gen + off, f, n);
        off += n;
        free(f);
    }
    size_t pos = 0;
    uint64_t want = 1;
    for (;;) {
        int r = decode(gen + pos, sizeof(gen) - pos, &rec, &flen, &err);
        if (r == 1)
            break;
        assert_int_equal(r, 0);
        assert_true(rec.lsn == want);
        want++;
        pos += flen;
    }
    assert_int_equal(pos, off);
    assert_true(want == 6);
}

static void
test_zero_lsn(void **state)
{
    (void)state;
    struct log_record rec;
    size_t flen, n;
    const char *err;

    /* A data record may not have LSN 0, even with a correct checksum. */
    static const uint16_t data_types[] = {TDM_REC_NOOP, TDM_REC_MESSAGE_APPEND, UINT16_MAX};
    for (size_t i = 0; i < sizeof(data_types) / sizeof(data_types[0]); i++) {
        uint8_t *f = make_frame(0, 1, data_types[i], 8, 1, &n);
        assert_int_equal(decode(f, n, &rec, &flen, &err), TDM_ECORRUPT);
        free(f);
    }
    /* END may: it repeats the last data LSN, 0 when the generation has none. */
    uint8_t *f = make_frame(0, 1, TDM_REC_END, TDM_LOG_END_PAYLOAD, 1, &n);
    assert_int_equal(decode(f, n, &rec, &flen, &err), 0);
    assert_int_equal(rec.type, TDM_REC_END);
    free(f);

    /* A zero LSN with anything else in the header is not zero fill: it is checked, and here
     * rejected (type 0, sealed checksum). */
    uint8_t buf[TDM_LOG_FRAME_OVERHEAD + 64];
    memset(buf, 0, sizeof(buf));
    le_put64(buf + 8, 9); /* epoch only */
    frame_reseal(buf);
    assert_int_equal(decode(buf, sizeof(buf), &rec, &flen, &err), TDM_ECORRUPT);
    memset(buf, 0, sizeof(buf));
    le_put32(buf + 20, 4); /* length only, no checksum */
    assert_int_equal(decode(buf, sizeof(buf), &rec, &flen, &err), TDM_ECORRUPT);
}

static void
test_type_and_flags(void **state)
{
    (void)state;
    struct log_record rec;
    size_t flen, n;
    const char *err;

    uint8_t *f = make_frame(5, 1, TDM_REC_NOOP, 10, 3, &n);
    le_put16(f + 16, 0);
    frame_reseal(f);
    assert_int_equal(decode(f, n, &rec, &flen, &err), TDM_ECORRUPT);
    free(f);

    for (unsigned bit = 0; bit < 16; bit++) {
        f = make_frame(5, 1, TDM_REC_NOOP, 10, 3, &n);
        le_put16(f + 18, (uint16_t)(1u << bit));
        frame_reseal(f);
        assert_int_equal(decode(f, n, &rec, &flen, &err), TDM_ECORRUPT);
        free(f);
    }
}

static void
test_payload_length_limit(void **state)
{
    (void)state;
    struct log_record rec;
    size_t flen;
    const char *err;
    static const uint32_t too_long[] = {TDM_LOG_MAX_PAYLOAD + 1, TDM_LOG_MAX_PAYLOAD * 2u,
                                        UINT32_MAX};
    for (size_t i = 0; i < sizeof(too_long) / sizeof(too_long[0]); i++) {
        /* Only a header: the length alone must be refused, before asking for more bytes. */
        uint8_t hdr[TDM_LOG_FRAME_HEADER];
        size_t n;
        uint8_t *f = make_frame(1, 1, TDM_REC_NOOP, 0, 0, &n);
        memcpy(hdr, f, sizeof(hdr));
        free(f);
        le_put32(hdr + 20, too_long[i]);
        assert_int_equal(decode(hdr, sizeof(hdr), &rec, &flen, &err), TDM_ECORRUPT);
    }
    /* At the limit, a header alone is a frame still arriving. */
    uint8_t hdr[TDM_LOG_FRAME_HEADER] = {1};
    le_put16(hdr + 16, TDM_REC_NOOP);
    le_put32(hdr + 20, TDM_LOG_MAX_PAYLOAD);
    assert_int_equal(decode(hdr, sizeof(hdr), &rec, &flen, &err), TDM_ENEEDMORE);
}

static void
test_end_payload(void **state)
{
    (void)state;
    static const struct log_end cases[] = {
        {0, 0},
        {1, 0x12345678u},
        {UINT64_MAX, UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t p[TDM_LOG_END_PAYLOAD];
        memset(p, 0xcc, sizeof(p));
        log_end_encode(&cases[i], p);
        assert_true(le_get64(p) == cases[i].record_count);
        assert_int_equal(le_get32(p + 8), cases[i].gen_checksum);
        assert_int_equal(le_get32(p + 12), 0);
        struct log_end got;
        assert_int_equal(log_end_decode(p, sizeof(p), &got), 0);
        assert_true(got.record_count == cases[i].record_count);
        assert_int_equal(got.gen_checksum, cases[i].gen_checksum);

        for (uint32_t len = 0; len < 40; len++) {
            if (len == TDM_LOG_END_PAYLOAD)
                continue;
            uint8_t wide[40] = {0};
            memcpy(wide, p, sizeof(p));
            assert_int_equal(log_end_decode(wide, len, &got), TDM_ECORRUPT);
        }
        for (size_t b = 12; b < 16; b++) {
            uint8_t q[TDM_LOG_END_PAYLOAD];
            memcpy(q, p, sizeof(q));
            q[b] = 1;
            assert_int_equal(log_end_decode(q, sizeof(q), &got), TDM_ECORRUPT);
        }
    }
}

/* ---- BEGIN (version 3) ---- */

static void
test_begin_round_trip(void **state)
{
    (void)state;
    struct log_header h = sample_header();
    h.version = 3;
    uint8_t frame[TDM_LOG_BEGIN_FRAME];
    log_begin_encode(&h, frame);

    /* The frame is an ordinary frame: type BEGIN, the first LSN and the epoch in its fields. */
    struct log_record rec;
    size_t flen = 0;
    const char *err = NULL;
    assert_int_equal(decode(frame, sizeof(frame), &rec, &flen, &err), 0);
    assert_int_equal(flen, TDM_LOG_BEGIN_FRAME);
    assert_int_equal(rec.type, TDM_REC_BEGIN);
    assert_true(rec.lsn == h.first_lsn);
    assert_true(rec.epoch == h.epoch);
    assert_int_equal(rec.length, TDM_LOG_BEGIN_PAYLOAD);
    assert_true(le_get64(rec.payload) == h.generation);
    assert_true(le_get64(rec.payload + 8) == h.created_us);
    assert_int_equal(le_get32(rec.payload + 16), h.prev_checksum);
    assert_int_equal(le_get32(rec.payload + 20), h.file_size);

    struct log_header got = {.version = 3};
    memcpy(got.guid, h.guid, sizeof(got.guid));
    assert_int_equal(log_begin_decode(&rec, &got, &err), 0);
    assert_header_equal(&h, &got);
}

/* A correctly sealed BEGIN that still does not describe a generation. */
static void
test_begin_field_checks(void **state)
{
    (void)state;
    struct {
        size_t off; /* in the payload */
        int width;
        uint64_t value;
        int expect;
    } cases[] = {
        {0, 8, 0, TDM_ECORRUPT}, /* generation 0 */
        {0, 8, 1, 0},
        {16, 4, 0, 0}, /* prev checksum 0: generation 1 or unclosed predecessor */
        {20, 4, 0, TDM_ECORRUPT},
        {20, 4, TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + TDM_LOG_END_FRAME - 1, TDM_ECORRUPT},
        {20, 4, TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + TDM_LOG_END_FRAME, 0},
        {20, 4, TDM_LOG_MAX_GENERATION_SIZE, 0},
        {20, 4, TDM_LOG_MAX_GENERATION_SIZE + 1ull, TDM_ECORRUPT},
    };
    struct log_header h = sample_header();
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint8_t payload[TDM_LOG_BEGIN_PAYLOAD];
        le_put64(payload, h.generation);
        le_put64(payload + 8, h.created_us);
        le_put32(payload + 16, h.prev_checksum);
        le_put32(payload + 20, h.file_size);
        if (cases[c].width == 4)
            le_put32(payload + cases[c].off, (uint32_t)cases[c].value);
        else
            le_put64(payload + cases[c].off, cases[c].value);
        struct log_record rec = {.lsn = h.first_lsn,
                                 .epoch = h.epoch,
                                 .type = TDM_REC_BEGIN,
                                 .length = sizeof(payload),
                                 .payload = payload};
        struct log_header got = {.version = 3};
        const char *err = NULL;
        int r = log_begin_decode(&rec, &got, &err);
        if (r != cases[c].expect)
            fail_msg("case %zu (offset %zu): got %d, want %d", c, cases[c].off, r, cases[c].expect);
        if (r != 0)
            assert_non_null(err);
    }

    /* Another type, or another payload length, is not a BEGIN. */
    uint8_t payload[TDM_LOG_BEGIN_PAYLOAD + 1] = {0};
    le_put64(payload, 1);
    le_put32(payload + 20, TDM_LOG_DEFAULT_GENERATION_SIZE);
    struct log_record rec = {.lsn = 1,
                             .epoch = 1,
                             .type = TDM_REC_NOOP,
                             .length = TDM_LOG_BEGIN_PAYLOAD,
                             .payload = payload};
    struct log_header got = {.version = 3};
    const char *err = NULL;
    assert_int_equal(log_begin_decode(&rec, &got, &err), TDM_ECORRUPT);
    rec.type = TDM_REC_BEGIN;
    assert_int_equal(log_begin_decode(&rec, &got, &err), 0);
    rec.length = TDM_LOG_BEGIN_PAYLOAD + 1;
    assert_int_equal(log_begin_decode(&rec, &got, &err), TDM_ECORRUPT);
    rec.length = TDM_LOG_BEGIN_PAYLOAD - 1;
    assert_int_equal(log_begin_decode(&rec, &got, &err), TDM_ECORRUPT);
}

/*
 * A whole version 3 generation as the format describes it: header, BEGIN, data frames, END
 * carrying the count and the CRC32C over every frame before it (BEGIN included), zero fill.
 * Decoding it back checks the chain.
 */
static void
test_generation_checksum_chain(void **state)
{
    (void)state;
    size_t size = TDM_LOG_MIN_GENERATION_SIZE;
    uint8_t *gen = calloc(1, size);
    assert_non_null(gen);
    struct log_header h = sample_header();
    h.version = 3;
    h.first_lsn = 10;
    h.file_size = (uint32_t)size;
    log_header_encode(&h, gen);
    log_begin_encode(&h, gen + TDM_LOG_HEADER_SIZE);

    size_t off = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME;
    uint32_t chain = crc32c(0, gen + TDM_LOG_HEADER_SIZE, TDM_LOG_BEGIN_FRAME);
    uint64_t lsn = h.first_lsn;
    for (int i = 0; i < 20; i++, lsn++) {
        size_t n;
        uint8_t *f = make_frame(lsn, h.epoch, TDM_REC_NOOP, (uint32_t)(i * 13), (uint32_t)i, &n);
        memcpy(gen + off, f, n);
        chain = crc32c(chain, f, n);
        off += n;
        free(f);
    }
    struct log_end end = {20, chain};
    uint8_t ep[TDM_LOG_END_PAYLOAD];
    log_end_encode(&end, ep);
    log_record_encode(lsn - 1, h.epoch, TDM_REC_END, ep, sizeof(ep), gen + off);

    struct log_header got_h;
    const char *err;
    assert_int_equal(log_header_decode(gen, size, &got_h, &err), 0);
    struct log_record rec;
    size_t flen;
    size_t pos = TDM_LOG_HEADER_SIZE;
    assert_int_equal(decode(gen + pos, size - pos, &rec, &flen, &err), 0);
    assert_int_equal(log_begin_decode(&rec, &got_h, &err), 0);
    assert_header_equal(&h, &got_h);
    uint32_t seen_chain = crc32c(0, gen + pos, flen);
    pos += flen;
    uint64_t count = 0;
    for (;;) {
        assert_int_equal(decode(gen + pos, size - pos, &rec, &flen, &err), 0);
        assert_true(rec.epoch == got_h.epoch);
        if (rec.type == TDM_REC_END) {
            struct log_end e;
            assert_int_equal(log_end_decode(rec.payload, rec.length, &e), 0);
            assert_true(e.record_count == count);
            assert_int_equal(e.gen_checksum, seen_chain);
            assert_true(rec.lsn == got_h.first_lsn + count - 1);
            pos += flen;
            break;
        }
        assert_true(rec.lsn == got_h.first_lsn + count);
        seen_chain = crc32c(seen_chain, gen + pos, flen);
        count++;
        pos += flen;
    }
    assert_int_equal(pos, off + TDM_LOG_END_FRAME);
    for (size_t i = pos; i < size; i++)
        assert_int_equal(gen[i], 0);
    free(gen);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_header_v3),
        cmocka_unit_test(test_header_every_bit_flip),
        cmocka_unit_test(test_header_short),
        cmocka_unit_test(test_header_field_checks),
        cmocka_unit_test(test_header_blank),
        cmocka_unit_test(test_record_round_trip_lengths),
        cmocka_unit_test(test_record_prepare_seal),
        cmocka_unit_test(test_record_round_trip_fields),
        cmocka_unit_test(test_record_every_prefix),
        cmocka_unit_test(test_stream_split_every_offset),
        cmocka_unit_test(test_record_every_bit_flip),
        cmocka_unit_test(test_zero_fill),
        cmocka_unit_test(test_zero_lsn),
        cmocka_unit_test(test_type_and_flags),
        cmocka_unit_test(test_payload_length_limit),
        cmocka_unit_test(test_end_payload),
        cmocka_unit_test(test_begin_round_trip),
        cmocka_unit_test(test_begin_field_checks),
        cmocka_unit_test(test_generation_checksum_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
