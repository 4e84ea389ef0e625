/*
 * Allocation failure in the MIME module (CONVENTIONS: proto returns -ENOMEM, never crashes or
 * leaks). malloc, calloc and realloc are wrapped (-Wl,--wrap); each run fails the n-th
 * allocation for n = 1, 2, ... until a run needs fewer. Every entry point must then answer
 * -ENOMEM (or succeed, when the failed allocation was not on its path) with the same output
 * as an unfailed run when it succeeds; LeakSanitizer checks that nothing leaks on the way.
 */
#include "proto/mime/mime_charset.h"
#include "proto/mime/mime_imap.h"
#include "proto/mime/mime_message.h"
#include "proto/mime/mime_search.h"
#include "proto/mime/mime_section.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static long countdown = -1; /* allocations left before one fails; -1: never */
static bool failed;

static bool
fail_now(void)
{
    if (countdown < 0)
        return false;
    if (countdown-- == 0) {
        failed = true;
        return true;
    }
    return false;
}

void *
__wrap_malloc(size_t size)
{
    return fail_now() ? NULL : __real_malloc(size);
}

void *
__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t size)
{
    return fail_now() ? NULL : __real_realloc(p, size);
}

static char *
load(const char *name, size_t *len_r)
{
    char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof(path), "%.*s/mime/%s", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len_r = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* Everything the module builds from one message, concatenated; returns 0 or -ENOMEM. */
static int
run_all(const uint8_t *data, size_t len, struct mime_buf *all)
{
    struct mime_message *m;
    int ret = mime_message_parse(data, len, NULL, &m);
    if (ret)
        return ret;
    const struct mime_part *root = mime_message_root(m);
    struct mime_buf b = MIME_BUF_INIT;
    if (!ret)
        ret = mime_imap_envelope(m, root, &b);
    if (!ret)
        ret = mime_imap_bodystructure(m, root, true, 0, &b);
    if (!ret)
        ret = mime_search_body_text(m, root, &b);
    if (!ret)
        ret = mime_search_header_text(m, root, NULL, &b);
    if (!ret) {
        struct mime_section sec;
        struct mime_str f = {"subject", 7};
        struct mime_span span;
        mime_section_parse("HEADER.FIELDS", 13, &sec);
        sec.fields = &f;
        sec.n_fields = 1;
        ret = mime_section_fetch(m, &sec, &span, &b);
        ret = ret == 1 ? 0 : ret;
    }
    if (!ret) {
        uint32_t one = 1;
        struct mime_span span;
        ret = mime_binary_fetch(m, &one, 1, &span, &b, NULL);
        ret = ret == 1 ? 0 : ret;
    }
    if (!ret)
        ret = mime_utf8_icontains(b.data, b.len, (const uint8_t *)"ZZZ", 3) < 0 ? -ENOMEM : 0;
    if (!ret) {
        mime_buf_append(all, b.data, b.len);
        ret = mime_buf_error(all);
    }
    mime_buf_clear(&b);
    mime_message_free(&m);
    return ret;
}

static void
test_every_allocation(void **state)
{
    (void)state;
    static const char *files[] = {"mixed.eml", "nested.eml", "alternative.eml", "broken.eml",
                                  "related.eml"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        size_t len;
        char *data = load(files[i], &len);
        struct mime_buf want = MIME_BUF_INIT;
        assert_int_equal(run_all((const uint8_t *)data, len, &want), 0);
        long n;
        for (n = 0;; n++) {
            struct mime_buf got = MIME_BUF_INIT;
            /* The result buffer is given room first so that only the module's own
             * allocations are failed. */
            assert_non_null(mime_buf_reserve(&got, want.len + 1));
            failed = false;
            countdown = n;
            int ret = run_all((const uint8_t *)data, len, &got);
            countdown = -1;
            if (ret != 0 && ret != -ENOMEM)
                fail_msg("%s, allocation %ld failed: %d", files[i], n, ret);
            if (ret == 0 && (got.len != want.len || memcmp(got.data, want.data, want.len) != 0))
                fail_msg("%s, allocation %ld failed: output differs", files[i], n);
            mime_buf_clear(&got);
            if (!failed)
                break;
        }
        assert_true(n > 10); /* the loop did fail allocations on the way */
        mime_buf_clear(&want);
        free(data);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
