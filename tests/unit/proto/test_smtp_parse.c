/*
 * The pieces under the SMTP/LMTP session (src/proto/smtp/): envelope paths, command lines,
 * the reply writer, the DATA decoder and the Received: builder, each table-driven. The DATA
 * decoder is also fed split at every offset and byte by byte, and must give the same message
 * and stop at the same byte each way.
 */
#include "proto/smtp/smtp_addr.h"
#include "proto/smtp/smtp_cmd.h"
#include "proto/smtp/smtp_data.h"
#include "proto/smtp/smtp_received.h"
#include "proto/smtp/smtp_reply.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- paths ---------------------------------------------------------------------------------- */

#define ANY (SMTP_PATH_NULL_OK | SMTP_PATH_POSTMASTER_OK)

struct path_case {
    const char *in;
    unsigned flags;
    int rc;
    const char *local;  /* rc == 0 */
    const char *domain; /* rc == 0 */
    size_t used;        /* rc == 0; 0 means strlen(in) */
    bool null, postmaster, utf8;
};

static const struct path_case paths[] = {
    {"<a@b.example>", 0, 0, "a", "b.example", 0, false, false, false},
    {"<>", SMTP_PATH_NULL_OK, 0, "", "", 0, true, false, false},
    {"<Postmaster>", SMTP_PATH_POSTMASTER_OK, 0, "Postmaster", "", 0, false, true, false},
    {"<postmaster@x.example>", ANY, 0, "postmaster", "x.example", 0, false, false, false},
    {"<\"a b\"@x>", 0, 0, "a b", "x", 0, false, false, false},
    {"<\"a\\\\b\\\"c\"@x>", 0, 0, "a\\b\"c", "x", 0, false, false, false},
    {"<\"\"@x>", 0, 0, "", "x", 0, false, false, false},
    {"<@r1.example,@r2.example:u@x>", 0, 0, "u", "x", 0, false, false, false},
    {"<@r1.example:u@x>", 0, 0, "u", "x", 0, false, false, false},
    {"<u@[192.0.2.1]>", 0, 0, "u", "[192.0.2.1]", 0, false, false, false},
    {"<u@[IPv6:2001:db8::1]>", 0, 0, "u", "[IPv6:2001:db8::1]", 0, false, false, false},
    {"<u@[x-tag:abc]>", 0, 0, "u", "[x-tag:abc]", 0, false, false, false},
    {"<first.last+tag@sub-domain.example>", 0, 0, "first.last+tag", "sub-domain.example", 0, false,
     false, false},
    {"<!#$%&'*+-/=?^_`{|}~@x>", 0, 0, "!#$%&'*+-/=?^_`{|}~", "x", 0, false, false, false},
    {"<\xc3\xa9@\xc3\xa9.example>", 0, 0, "\xc3\xa9", "\xc3\xa9.example", 0, false, false, true},
    {"<\"\xf0\x9f\x93\xa7\"@x>", 0, 0, "\xf0\x9f\x93\xa7", "x", 0, false, false, true},
    {"<a@b> SIZE=1", 0, 0, "a", "b", 5, false, false, false},
    {"<1@2>", 0, 0, "1", "2", 0, false, false, false},
    {"a@b", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@b", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<>", SMTP_PATH_POSTMASTER_OK, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<postmaster>", SMTP_PATH_NULL_OK, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\"postmaster\">", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<@x:a@b", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<@x,a@b>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<@:a@b>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a..b@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<.a@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a.@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a b@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@-x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@x->", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@x..y>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@x.>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@x y>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@x_y>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[1.2.3]>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[1.2.3.256]>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[01.2.3.4]>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[IPv6:zz]>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[]>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[1.2.3.4>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<a@[tag:a[b]>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\"a@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\"a\x01\"@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\"a\\\x01\"@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\xff@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\xc3@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
    {"<\xed\xa0\x80@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},     /* surrogate */
    {"<\xe0\x80\xaf@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},     /* overlong */
    {"<\xf4\x90\x80\x80@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false}, /* >10FFFF */
    {"<\xc0\xaf@x>", ANY, TDM_EINVAL, NULL, NULL, 0, false, false, false},
};

static void
test_paths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const struct path_case *c = &paths[i];
        struct smtp_path p;
        size_t used = 12345;
        const char *why = NULL;
        int rc = smtp_path_parse(c->in, strlen(c->in), c->flags, &p, &used, &why);
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d (%s)", c->in, rc, c->rc, why ? why : "");
        if (rc != 0) {
            assert_non_null(why);
            continue;
        }
        assert_string_equal(p.local, c->local);
        assert_string_equal(p.domain, c->domain);
        assert_int_equal(used, c->used ? c->used : strlen(c->in));
        assert_int_equal(p.null, c->null);
        assert_int_equal(p.postmaster, c->postmaster);
        assert_int_equal(p.utf8, c->utf8);
    }
}

/* The bounds: 255 bytes of local part and of domain are taken, 256 are not. */
static void
test_path_limits(void **state)
{
    (void)state;
    char in[700];
    for (size_t local = 254; local <= 256; local++) {
        for (size_t domain = 254; domain <= 256; domain++) {
            size_t n = 0;
            in[n++] = '<';
            memset(in + n, 'l', local);
            n += local;
            in[n++] = '@';
            memset(in + n, 'd', domain);
            n += domain;
            in[n++] = '>';
            struct smtp_path p;
            size_t used;
            const char *why;
            int rc = smtp_path_parse(in, n, 0, &p, &used, &why);
            if (local > SMTP_LOCAL_MAX || domain > SMTP_DOMAIN_MAX) {
                assert_int_equal(rc, TDM_ELIMIT);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(strlen(p.local), local);
                assert_int_equal(strlen(p.domain), domain);
            }
        }
    }
    /* A quoted local part counts decoded bytes: 255 quoted pairs fit. */
    size_t n = 0;
    in[n++] = '<';
    in[n++] = '"';
    for (int i = 0; i < 255; i++) {
        in[n++] = '\\';
        in[n++] = 'q';
    }
    memcpy(in + n, "\"@x>", 4);
    n += 4;
    struct smtp_path p;
    size_t used;
    const char *why;
    assert_int_equal(smtp_path_parse(in, n, 0, &p, &used, &why), 0);
    assert_int_equal(strlen(p.local), 255);
}

/* ---- command lines -------------------------------------------------------------------------- */

struct cmd_case {
    const char *line;
    bool utf8_offered, rcpt_utf8;
    int code; /* 0: parses */
    const char *enh;
    enum smtp_verb verb;
    const char *arg;  /* HELO family */
    const char *addr; /* MAIL/RCPT: local@domain, "<>" */
    int64_t size;     /* -1: none */
    enum smtp_body body;
    bool smtputf8;
};

static const struct cmd_case cmds[] = {
    {"EHLO client.example", 0, 0, 0, NULL, SMTP_VERB_EHLO, "client.example", NULL, -1, 0, 0},
    {"ehlo   a b", 0, 0, 0, NULL, SMTP_VERB_EHLO, "a", NULL, -1, 0, 0},
    {"HELO [192.0.2.1]", 0, 0, 0, NULL, SMTP_VERB_HELO, "[192.0.2.1]", NULL, -1, 0, 0},
    {"LHLO c", 0, 0, 0, NULL, SMTP_VERB_LHLO, "c", NULL, -1, 0, 0},
    {"EHLO", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"EHLO ", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"HELO a\x01", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"HELO \xc3\xa9", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME", 0, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "a@b", 123,
     SMTP_BODY_8BITMIME, 0},
    {"MAIL FROM: <a@b>", 0, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "a@b", -1, 0, 0},
    {"mail from:<a@b>  size=1   body=7bit  ", 0, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "a@b", 1,
     SMTP_BODY_7BIT, 0},
    {"MAIL FROM:<> RET=FULL ENVID=abc+2Bdef", 0, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "<>", -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE=18446744073709551615", 0, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "a@b",
     -1 /* checked below */, 0, 0},
    {"MAIL FROM:<a@b> SIZE=18446744073709551616", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE=123456789012345678901", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE=", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE=-1", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SIZE=1 SIZE=2", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> BODY=BINARYMIME", 0, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> BODY", 0, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> RET=ALL", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> ENVID", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> FOO=bar", 0, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> NOTIFY=NEVER", 0, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> =x", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> -A=1", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> A=b=c", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SMTPUTF8", 0, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SMTPUTF8=yes", 1, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> SMTPUTF8", 1, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "a@b", -1, 0, 1},
    {"MAIL FROM:<\xc3\xa9@b>", 1, 0, 553, "5.6.7", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<\xc3\xa9@b> SMTPUTF8", 1, 0, 0, NULL, SMTP_VERB_MAIL, NULL, "\xc3\xa9@b", -1, 0,
     1},
    {"MAIL FROM:<a@b>junk", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:a@b", 0, 0, 501, "5.1.7", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<postmaster>", 0, 0, 501, "5.1.7", 0, NULL, NULL, -1, 0, 0},
    {"MAIL TO:<a@b>", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b", 0, 0, 0, NULL, SMTP_VERB_RCPT, NULL,
     "a@b", -1, 0, 0},
    {"RCPT TO:<\xc3\xa9@b>", 1, 0, 553, "5.6.7", 0, NULL, NULL, -1, 0, 0},
    {"RCPT TO:<\xc3\xa9@b>", 1, 1, 0, NULL, SMTP_VERB_RCPT, NULL, "\xc3\xa9@b", -1, 0, 0},
    {"RCPT TO:<>", 0, 0, 501, "5.1.3", 0, NULL, NULL, -1, 0, 0},
    {"RCPT TO:<a@b> SIZE=1", 0, 0, 555, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"RCPT TO:<a@b> ORCPT=x", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    /* XDELIVERYID: 32 hex digits, not all zero, once (its value is checked below) */
    {"RCPT TO:<a@b> XDELIVERYID=00112233445566778899aAbBcCdDeEfF", 0, 0, 0, NULL, SMTP_VERB_RCPT,
     NULL, "a@b", -1, 0, 0},
    {"RCPT TO:<a@b> XDELIVERYID=0011223344556677889900112233445", 0, 0, 501, "5.5.4", 0, NULL,
     NULL, -1, 0, 0},
    {"RCPT TO:<a@b> XDELIVERYID=001122334455667788990011223344556", 0, 0, 501, "5.5.4", 0, NULL,
     NULL, -1, 0, 0},
    {"RCPT TO:<a@b> XDELIVERYID=00000000000000000000000000000000", 0, 0, 501, "5.5.4", 0, NULL,
     NULL, -1, 0, 0},
    {"RCPT TO:<a@b> XDELIVERYID=0011223344556677889900112233445g", 0, 0, 501, "5.5.4", 0, NULL,
     NULL, -1, 0, 0},
    {"RCPT TO:<a@b> XDELIVERYID", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"RCPT TO:<a@b> XDELIVERYID=00112233445566778899aabbccddeeff "
     "XDELIVERYID=00112233445566778899aabbccddeeff",
     0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"MAIL FROM:<a@b> XDELIVERYID=00112233445566778899aabbccddeeff", 0, 0, 555, "5.5.4", 0, NULL,
     NULL, -1, 0, 0},
    {"RCPT FROM:<a@b>", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"DATA", 0, 0, 0, NULL, SMTP_VERB_DATA, NULL, NULL, -1, 0, 0},
    {"DATA x", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"rset", 0, 0, 0, NULL, SMTP_VERB_RSET, NULL, NULL, -1, 0, 0},
    {"QUIT ", 0, 0, 0, NULL, SMTP_VERB_QUIT, NULL, NULL, -1, 0, 0},
    {"NOOP a b", 0, 0, 0, NULL, SMTP_VERB_NOOP, NULL, NULL, -1, 0, 0},
    {"HELP", 0, 0, 0, NULL, SMTP_VERB_HELP, NULL, NULL, -1, 0, 0},
    {"VRFY bob", 0, 0, 0, NULL, SMTP_VERB_VRFY, NULL, NULL, -1, 0, 0},
    {"VRFY", 0, 0, 501, "5.5.4", 0, NULL, NULL, -1, 0, 0},
    {"EXPN list", 0, 0, 0, NULL, SMTP_VERB_EXPN, NULL, NULL, -1, 0, 0},
    {"StartTLS", 0, 0, 0, NULL, SMTP_VERB_STARTTLS, NULL, NULL, -1, 0, 0},
    {"", 0, 0, 500, "5.5.1", 0, NULL, NULL, -1, 0, 0},
    {"X", 0, 0, 500, "5.5.1", 0, NULL, NULL, -1, 0, 0},
    {"MAILFROM:<a@b>", 0, 0, 500, "5.5.1", 0, NULL, NULL, -1, 0, 0},
    {"BDAT 10 LAST", 0, 0, 500, "5.5.1", 0, NULL, NULL, -1, 0, 0},
    {" NOOP", 0, 0, 500, "5.5.1", 0, NULL, NULL, -1, 0, 0},
};

static void
test_commands(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        const struct cmd_case *c = &cmds[i];
        struct smtp_cmd cmd;
        struct smtp_cmd_error err = {0};
        int rc =
            smtp_cmd_parse(c->line, strlen(c->line), c->utf8_offered, c->rcpt_utf8, &cmd, &err);
        if (c->code) {
            if (rc != TDM_EINVAL || err.code != c->code || strcmp(err.enh, c->enh) != 0)
                fail_msg("\"%s\": rc %d code %d %s, want %d %s", c->line, rc, err.code,
                         err.enh ? err.enh : "-", c->code, c->enh);
            assert_non_null(err.text);
            continue;
        }
        if (rc != 0)
            fail_msg("\"%s\": refused %d %s %s", c->line, err.code, err.enh, err.text);
        assert_int_equal(cmd.verb, c->verb);
        if (c->arg) {
            assert_int_equal(cmd.arg_len, strlen(c->arg));
            assert_memory_equal(cmd.arg, c->arg, cmd.arg_len);
        }
        if (c->addr) {
            char addr[600];
            if (cmd.path.null)
                snprintf(addr, sizeof(addr), "<>");
            else
                snprintf(addr, sizeof(addr), "%s@%s", cmd.path.local, cmd.path.domain);
            assert_string_equal(addr, c->addr);
        }
        if (c->size >= 0) {
            assert_true(cmd.has_size);
            assert_int_equal(cmd.size, (uint64_t)c->size);
        }
        assert_int_equal(cmd.body, c->body);
        assert_int_equal(cmd.smtputf8, c->smtputf8);
        assert_string_equal(smtp_verb_name(cmd.verb), smtp_verb_name(c->verb));
    }
    /* The largest SIZE a 64-bit count holds, and bytes past a NUL are still read. */
    struct smtp_cmd cmd;
    struct smtp_cmd_error err;
    const char *max = "MAIL FROM:<a@b> SIZE=18446744073709551615";
    assert_int_equal(smtp_cmd_parse(max, strlen(max), false, false, &cmd, &err), 0);
    assert_int_equal(cmd.size, UINT64_MAX);
    /* XDELIVERYID's value, in either case. */
    const char *idl = "RCPT TO:<a@b> XDELIVERYID=00112233445566778899aAbBcCdDeEfF";
    static const uint8_t id[SMTP_DELIVERY_ID_LEN] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                                                     0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
                                                     0xcc, 0xdd, 0xee, 0xff};
    assert_int_equal(smtp_cmd_parse(idl, strlen(idl), false, false, &cmd, &err), 0);
    assert_true(cmd.has_delivery_id);
    assert_memory_equal(cmd.delivery_id, id, SMTP_DELIVERY_ID_LEN);
    const char *noid = "RCPT TO:<a@b>";
    assert_int_equal(smtp_cmd_parse(noid, strlen(noid), false, false, &cmd, &err), 0);
    assert_false(cmd.has_delivery_id);
    const char nul[] = "NOOP x\0y";
    assert_int_equal(smtp_cmd_parse(nul, sizeof(nul) - 1, false, false, &cmd, &err), 0);
    const char nul_verb[] = "NOOP\0";
    assert_int_equal(smtp_cmd_parse(nul_verb, sizeof(nul_verb) - 1, false, false, &cmd, &err),
                     TDM_EINVAL);
    const char nul_in_param[] = "MAIL FROM:<a@b> SIZE=1\0";
    assert_int_equal(
        smtp_cmd_parse(nul_in_param, sizeof(nul_in_param) - 1, false, false, &cmd, &err),
        TDM_EINVAL);
    assert_string_equal(smtp_verb_name(SMTP_VERB_UNKNOWN), "?");
    assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
}

/* ---- replies -------------------------------------------------------------------------------- */

struct reply_case {
    int code;
    const char *enh;
    const char *text;
    const char *want; /* NULL: TDM_EINVAL */
};

static const struct reply_case replies[] = {
    {250, "2.0.0", "Ok", "250 2.0.0 Ok\r\n"},
    {250, NULL, "mx\nPIPELINING\nSIZE 10", "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n"},
    {550, "5.1.1", "x\ny", "550-5.1.1 x\r\n550 5.1.1 y\r\n"},
    {250, "2.0.0", "", "250 2.0.0\r\n"},
    {220, NULL, "", "220\r\n"},
    {250, NULL, "a\n", "250-a\r\n250\r\n"},
    {452, "4.2.2", "a\n\nb", "452-4.2.2 a\r\n452-4.2.2\r\n452 4.2.2 b\r\n"},
    {421, "4.7.0", "bye", "421 4.7.0 bye\r\n"},
    {554, "5.999.999", "t", "554 5.999.999 t\r\n"},
    {250, "2.0.10", "t", "250 2.0.10 t\r\n"},
    {354, NULL, "go", "354 go\r\n"},
    {199, NULL, "x", NULL},
    {600, NULL, "x", NULL},
    {354, "3.0.0", "x", NULL},
    {250, "5.0.0", "x", NULL},
    {250, "2.0", "x", NULL},
    {250, "2.0.0.0", "x", NULL},
    {250, "2.00.0", "x", NULL},
    {250, "2.1000.0", "x", NULL},
    {250, "2..0", "x", NULL},
    {250, "", "x", NULL},
    {250, "2.0.0 ", "x", NULL},
    {250, NULL, "a\rb", NULL},
    {250, NULL, "a\tb", NULL},
    {250, NULL, "\x7f", NULL},
    {250, NULL, "\xc3\xa9", NULL},
};

static void
test_replies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        const struct reply_case *c = &replies[i];
        struct smtp_buf b = {0};
        assert_int_equal(smtp_buf_puts(&b, "keep"), 0);
        int rc = smtp_reply_write(&b, c->code, c->enh, c->text);
        if (!c->want) {
            if (rc != TDM_EINVAL)
                fail_msg("%d %s \"%s\": accepted", c->code, c->enh ? c->enh : "-", c->text);
            assert_int_equal(b.len, 4); /* nothing appended */
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(b.len, 4 + strlen(c->want));
            assert_memory_equal(b.data + 4, c->want, strlen(c->want));
        }
        smtp_buf_free(&b);
        assert_null(b.data);
    }
    assert_true(smtp_enh_valid(421, "4.7.0"));
    assert_false(smtp_enh_valid(421, NULL));
    assert_false(smtp_enh_valid(150, "1.0.0"));
}

static void
test_buf(void **state)
{
    (void)state;
    struct smtp_buf b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(smtp_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10000);
    smtp_buf_consume(&b, 9995);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "56789", 5);
    smtp_buf_consume(&b, 99);
    assert_int_equal(b.len, 0);
    assert_int_equal(smtp_buf_append(&b, NULL, 0), 0);
    smtp_buf_free(&b);
    smtp_buf_free(&b);
}

/* ---- the DATA decoder ----------------------------------------------------------------------- */

struct data_case {
    const char *in;
    const char *message; /* what comes out */
    bool ended;          /* the final "." CR LF was seen */
    size_t used;         /* bytes taken when ended (the rest is the next command) */
};

static const struct data_case datas[] = {
    {".\r\n", "", true, 3},
    {"\r\n.\r\n", "\r\n", true, 5},
    {"a\r\n.\r\nQUIT\r\n", "a\r\n", true, 6},
    {"..\r\n.\r\n", ".\r\n", true, 7},
    {"...\r\n.\r\n", "..\r\n", true, 8},
    {".a\r\n.b\r\n.\r\n", "a\r\nb\r\n", true, 11},
    {".\rX\r\n.\r\n", "\rX\r\n", true, 8},
    {".\r\r\n.\r\n", "\r\r\n", true, 7},
    {".\r.\r\n.\r\n", "\r.\r\n", true, 8},
    {"a\n.\nb\n.\r\n.\r\n", "a\n.\nb\n.\r\n", true, 12},
    {"a\r.\r\n.\r\n", "a\r.\r\n", true, 8},
    {"\n.\r\n.\r\n", "\n.\r\n", true, 7},
    {"a\r\n.", "a\r\n", false, 0},
    {"a\r\n.\r", "a\r\n", false, 0},
    {"a\r\n.\n", "a\r\n\n", false, 0},
    {"a\r\n", "a\r\n", false, 0},
    {"", "", false, 0},
};

struct data_result {
    char msg[256];
    size_t msg_len;
    bool ended;
    size_t used;
};

static void
data_run(const char *text, size_t len, const size_t *cuts, size_t n_cuts, struct data_result *r)
{
    memset(r, 0, sizeof(*r));
    struct smtp_data d;
    smtp_data_init(&d);
    size_t start = 0, total = 0;
    for (size_t c = 0; c <= n_cuts && !r->ended; c++) {
        size_t end = c < n_cuts ? cuts[c] : len;
        size_t n = end - start;
        uint8_t *piece = malloc(n + 1);
        assert_non_null(piece);
        memcpy(piece, text + start, n);
        size_t off = 0;
        for (;;) {
            size_t used;
            const uint8_t *chunk = NULL;
            size_t clen = 0;
            int item = smtp_data_feed(&d, piece + off, n - off, &used, &chunk, &clen);
            assert_true(used <= n - off);
            off += used;
            if (item == SMTP_DATA_NEED_MORE) {
                assert_int_equal(off, n);
                break;
            }
            if (item == SMTP_DATA_END) {
                r->ended = true;
                r->used = total + off;
                break;
            }
            assert_int_equal(item, SMTP_DATA_CHUNK);
            assert_true(clen > 0);
            /* Zero-copy: inside this piece, or the one held CR. */
            if (!(clen == 1 && *chunk == '\r'))
                assert_true(chunk >= piece && chunk + clen <= piece + off);
            assert_true(r->msg_len + clen <= sizeof(r->msg));
            memcpy(r->msg + r->msg_len, chunk, clen);
            r->msg_len += clen;
        }
        free(piece);
        total += n;
        start = end;
    }
}

static void
test_data(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(datas) / sizeof(datas[0]); i++) {
        const struct data_case *c = &datas[i];
        size_t len = strlen(c->in);
        size_t cuts[64];
        assert_true(len < 64);
        struct data_result r;
        for (size_t cut = 0; cut <= len + 1; cut++) {
            size_t n_cuts;
            if (cut <= len) {
                cuts[0] = cut;
                n_cuts = 1;
            } else {
                for (size_t k = 0; k < len; k++)
                    cuts[k] = k;
                n_cuts = len;
            }
            data_run(c->in, len, cuts, n_cuts, &r);
            if (r.msg_len != strlen(c->message) || memcmp(r.msg, c->message, r.msg_len) != 0 ||
                r.ended != c->ended || (c->ended && r.used != c->used))
                fail_msg("case %zu cut %zu: %zu bytes, ended %d used %zu", i, cut, r.msg_len,
                         r.ended, r.used);
        }
    }
}

/* ---- Received: ----------------------------------------------------------------------------- */

struct received_case {
    struct smtp_received r;
    const char *want; /* NULL: TDM_EINVAL */
};

#define T 1700000000 /* Tue, 14 Nov 2023 22:13:20 UTC */

static const struct smtp_path bob = {.local = "bob", .domain = "b.example"};
static const struct smtp_path quoted = {.local = "a b\"c\\", .domain = "x"};
static const struct smtp_path dots = {.local = "a..b", .domain = "[192.0.2.1]"};
static const struct smtp_path empty = {.local = "", .domain = "x"};
static const struct smtp_path pm = {.postmaster = true, .local = "Postmaster"};
static const struct smtp_path utf8 = {.utf8 = true, .local = "j\xc3\xb6rg", .domain = "x"};
static const struct smtp_path null = {.null = true};
static const struct smtp_path bad_domain = {.local = "a", .domain = "x>y"};

static const struct received_case receiveds[] = {
    {{"client.example", "192.0.2.1", "client.example", "mx.example", "ESMTPS", "abc123", &bob, T,
      0},
     "Received: from client.example (client.example [192.0.2.1])\r\n"
     "\tby mx.example (tandem) with ESMTPS id abc123\r\n"
     "\tfor <bob@b.example>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "2001:db8::1", NULL, "mx", "LMTP", NULL, NULL, T, -330},
     "Received: from c ([IPv6:2001:db8::1])\r\n\tby mx (tandem) with LMTP;\r\n"
     "\tTue, 14 Nov 2023 16:43:20 -0530\r\n"},
    {{"[192.0.2.1]", "192.0.2.1", NULL, "mx", "SMTP", NULL, NULL, 0, 60},
     "Received: from [192.0.2.1] ([192.0.2.1])\r\n\tby mx (tandem) with SMTP;\r\n"
     "\tThu, 1 Jan 1970 01:00:00 +0100\r\n"},
    {{"bad(helo)\\", "192.0.2.1", NULL, "mx", "ESMTP", NULL, NULL, T, 0},
     "Received: from unknown (helo=bad?helo?? [192.0.2.1])\r\n\tby mx (tandem) with ESMTP;\r\n"
     "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"under_score", "192.0.2.1", "ptr.example", "mx", "ESMTP", NULL, NULL, T, 0},
     "Received: from ptr.example (helo=under_score ptr.example [192.0.2.1])\r\n"
     "\tby mx (tandem) with ESMTP;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{NULL, "192.0.2.1", NULL, "mx", "ESMTP", NULL, NULL, T, 0},
     "Received: from unknown ([192.0.2.1])\r\n\tby mx (tandem) with ESMTP;\r\n"
     "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "300.1.1.1", NULL, "mx", "ESMTP", NULL, NULL, T, 0}, NULL},
    {{"c", NULL, NULL, "mx", "ESMTP", NULL, NULL, T, 0}, NULL},
    {{"c", "192.0.2.1", NULL, "m x", "ESMTP", NULL, NULL, T, 0}, NULL},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", "a;b", NULL, T, 0}, NULL},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, &quoted, T, 0},
     "Received: from c ([192.0.2.1])\r\n\tby mx (tandem) with ESMTP\r\n"
     "\tfor <\"a b\\\"c\\\\\"@x>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, &dots, T, 0},
     "Received: from c ([192.0.2.1])\r\n\tby mx (tandem) with ESMTP\r\n"
     "\tfor <\"a..b\"@[192.0.2.1]>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, &empty, T, 0},
     "Received: from c ([192.0.2.1])\r\n\tby mx (tandem) with ESMTP\r\n"
     "\tfor <\"\"@x>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "192.0.2.1", NULL, "mx", "LMTP", NULL, &pm, T, 0},
     "Received: from c ([192.0.2.1])\r\n\tby mx (tandem) with LMTP\r\n"
     "\tfor <Postmaster>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "192.0.2.1", NULL, "mx", "UTF8SMTP", NULL, &utf8, T, 0},
     "Received: from c ([192.0.2.1])\r\n\tby mx (tandem) with UTF8SMTP\r\n"
     "\tfor <j\xc3\xb6rg@x>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, &null, T, 0}, NULL},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, &bad_domain, T, 0}, NULL},
    {{"c", "192.0.2.1", "a(b", "mx", "ESMTP", NULL, NULL, T, 0}, NULL},
    {{"c", "192.0.2.1", NULL, "mx", "", NULL, NULL, T, 0}, NULL},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, NULL, T, 1440}, NULL},
    {{"c", "192.0.2.1", NULL, "mx", "ESMTP", NULL, NULL, T, -1440}, NULL},
};

static void
test_received(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(receiveds) / sizeof(receiveds[0]); i++) {
        const struct received_case *c = &receiveds[i];
        struct smtp_buf b = {0};
        assert_int_equal(smtp_buf_puts(&b, "x"), 0);
        int rc = smtp_received_build(&c->r, &b);
        if (!c->want) {
            if (rc != TDM_EINVAL)
                fail_msg("case %zu accepted", i);
            assert_int_equal(b.len, 1);
        } else {
            if (rc != 0 || b.len != 1 + strlen(c->want) ||
                memcmp(b.data + 1, c->want, b.len - 1) != 0)
                fail_msg("case %zu: rc %d\n%.*s", i, rc, (int)b.len - 1, b.data + 1);
        }
        smtp_buf_free(&b);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),    cmocka_unit_test(test_path_limits),
        cmocka_unit_test(test_commands), cmocka_unit_test(test_replies),
        cmocka_unit_test(test_buf),      cmocka_unit_test(test_data),
        cmocka_unit_test(test_received),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
