/* smtp_delivery_id (src/smtp/delivery_id.h): the same message gets the same ids, and any
 * difference in sender, recipient or bytes gives another. */
#include "smtp/delivery_id.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void
id_of(const char *sender, const char *rcpt, const char *data, uint8_t id[SMTP_DELIVERY_ID_LEN])
{
    smtp_delivery_id(sender, strlen(sender), rcpt, strlen(rcpt), (const uint8_t *)data,
                     strlen(data), id);
}

static void
test_same_message_same_id(void **state)
{
    (void)state;
    uint8_t a[SMTP_DELIVERY_ID_LEN], b[SMTP_DELIVERY_ID_LEN];
    id_of("bob@example.test", "alice@example.test", "Subject: hi\r\n\r\nbody\r\n", a);
    id_of("bob@example.test", "alice@example.test", "Subject: hi\r\n\r\nbody\r\n", b);
    assert_memory_equal(a, b, sizeof(a));
}

static void
test_any_difference_another_id(void **state)
{
    (void)state;
    uint8_t base[SMTP_DELIVERY_ID_LEN], other[SMTP_DELIVERY_ID_LEN];
    id_of("bob@example.test", "alice@example.test", "Subject: hi\r\n\r\nbody\r\n", base);
    id_of("bob@example.tesu", "alice@example.test", "Subject: hi\r\n\r\nbody\r\n", other);
    assert_memory_not_equal(base, other, sizeof(base));
    id_of("bob@example.test", "alicf@example.test", "Subject: hi\r\n\r\nbody\r\n", other);
    assert_memory_not_equal(base, other, sizeof(base));
    id_of("bob@example.test", "alice@example.test", "Subject: hi\r\n\r\nbodz\r\n", other);
    assert_memory_not_equal(base, other, sizeof(base));
    /* The null reverse path is a sender of its own. */
    id_of("", "alice@example.test", "Subject: hi\r\n\r\nbody\r\n", other);
    assert_memory_not_equal(base, other, sizeof(base));
}

/* Lengths go in with the parts: moving a boundary between sender and recipient is another
 * input, though the bytes run together the same. */
static void
test_parts_do_not_run_together(void **state)
{
    (void)state;
    uint8_t a[SMTP_DELIVERY_ID_LEN], b[SMTP_DELIVERY_ID_LEN];
    id_of("ab", "c", "x", a);
    id_of("a", "bc", "x", b);
    assert_memory_not_equal(a, b, sizeof(a));
    id_of("a", "b", "cx", b);
    id_of("a", "bc", "x", a);
    assert_memory_not_equal(a, b, sizeof(a));
}

static void
test_never_zero_and_empty_message(void **state)
{
    (void)state;
    uint8_t id[SMTP_DELIVERY_ID_LEN], zero[SMTP_DELIVERY_ID_LEN] = {0};
    smtp_delivery_id("", 0, "a@b", 3, NULL, 0, id);
    assert_memory_not_equal(id, zero, sizeof(id));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_message_same_id),
        cmocka_unit_test(test_any_difference_another_id),
        cmocka_unit_test(test_parts_do_not_run_together),
        cmocka_unit_test(test_never_zero_and_empty_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
