/*
 * IMAP server URLs for login referrals (src/proto/imap/imap_url.c): reference outputs byte for
 * byte, and every byte a user name may hold comes back from the URL's enc-user unchanged.
 */
#include "proto/imap/imap_url.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct url_case {
    const char *user, *host;
    uint16_t port;
    const char *url;
};

static const struct url_case urls[] = {
    {"alice", "192.0.2.7", 143, "imap://alice;AUTH=*@192.0.2.7:143/"},
    {"alice", "2001:db8::7", 1143, "imap://alice;AUTH=*@[2001:db8::7]:1143/"},
    {"::1", "::1", 65535, "imap://%3A%3A1;AUTH=*@[::1]:65535/"},
    /* What would end the userinfo or the URL, or start an escape, is escaped. */
    {"a@b.test", "192.0.2.7", 143, "imap://a%40b.test;AUTH=*@192.0.2.7:143/"},
    {"x;AUTH=y", "192.0.2.7", 143, "imap://x%3BAUTH=y;AUTH=*@192.0.2.7:143/"},
    {"a/b c%d:e", "192.0.2.7", 143, "imap://a%2Fb%20c%25d%3Ae;AUTH=*@192.0.2.7:143/"},
    {"[x]\"?#", "192.0.2.7", 143, "imap://%5Bx%5D%22%3F%23;AUTH=*@192.0.2.7:143/"},
    /* achar's punctuation stays as it is. */
    {"A-z_0.9~!$'()*+,&=", "192.0.2.7", 1, "imap://A-z_0.9~!$'()*+,&=;AUTH=*@192.0.2.7:1/"},
    /* A UTF-8 name, byte by byte. */
    {"j\xc3\xb6rg", "192.0.2.7", 143, "imap://j%C3%B6rg;AUTH=*@192.0.2.7:143/"},
};

static void
test_reference_urls(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct imap_buf b = IMAP_BUF_INIT;
        imap_write_server_url(&b, urls[i].user, urls[i].host, urls[i].port);
        assert_int_equal(imap_buf_error(&b), 0);
        assert_string_equal(b.data, urls[i].url);
        imap_buf_free(&b);
    }
}

static int
hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Every byte 1..255 in a name: the enc-user holds only achar and %XX (upper-case), and
 * decoding it gives the name back. */
static void
test_every_byte_round_trips(void **state)
{
    (void)state;
    char name[256];
    for (int i = 0; i < 255; i++)
        name[i] = (char)(255 - i);
    name[255] = '\0';
    struct imap_buf b = IMAP_BUF_INIT;
    imap_write_server_url(&b, name, "192.0.2.7", 143);
    assert_int_equal(imap_buf_error(&b), 0);
    assert_memory_equal(b.data, "imap://", 7);
    const char *end = strstr(b.data, ";AUTH=*@192.0.2.7:143/");
    assert_non_null(end);
    assert_string_equal(end, ";AUTH=*@192.0.2.7:143/");
    char back[256];
    size_t n = 0;
    for (const char *p = b.data + 7; p < end; p++) {
        assert_true(n < sizeof(back) - 1);
        if (*p == '%') {
            int hi = hexval(p[1]), lo = hexval(p[2]);
            assert_true(hi >= 0 && lo >= 0);
            back[n++] = (char)(hi << 4 | lo);
            p += 2;
        } else {
            assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._~!$'()*+,&=",
                                   *p));
            back[n++] = *p;
        }
    }
    back[n] = '\0';
    assert_string_equal(back, name);
    imap_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_urls),
        cmocka_unit_test(test_every_byte_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
