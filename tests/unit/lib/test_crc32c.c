#include "lib/crc32c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Known answers from RFC 3720 B.4 and the common "123456789" check value. */
static void
test_known_vectors(void **state)
{
    (void)state;
    uint8_t zeros[32] = {0};
    uint8_t ones[32];
    uint8_t inc[32];
    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;

    assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_sw(0, zeros, 32), 0x8A9136AAu);
    assert_int_equal(crc32c_sw(0, ones, 32), 0x62A8AB43u);
    assert_int_equal(crc32c_sw(0, inc, 32), 0x46DD794Eu);
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_sw(0, "", 0), 0);
}

/* The SSE4.2 path must agree with the table path for every length and alignment. */
static void
test_hw_matches_sw(void **state)
{
    (void)state;
    if (!crc32c_hw_available())
        skip();
    uint8_t buf[4096 + 16];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
    for (size_t align = 0; align < 8; align++)
        for (size_t len = 0; len < 300; len++)
            assert_int_equal(crc32c_hw(0, buf + align, len), crc32c_sw(0, buf + align, len));
    assert_int_equal(crc32c_hw(0xdeadbeef, buf, 4096), crc32c_sw(0xdeadbeef, buf, 4096));
}

static void
test_chaining(void **state)
{
    (void)state;
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++) {
        assert_int_equal(crc32c(crc32c(0, s, cut), s + cut, n - cut), whole);
        assert_int_equal(crc32c_sw(crc32c_sw(0, s, cut), s + cut, n - cut), whole);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_hw_matches_sw),
        cmocka_unit_test(test_chaining),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
