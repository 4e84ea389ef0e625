/* Envelope path parser (smtp_addr.h). */
#include "proto/smtp/smtp_addr.h"

#include "lib/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t
smtp_utf8_seq(const unsigned char *in, size_t len)
{
    if (len == 0)
        return 0;
    unsigned char c = in[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the range allowed for the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else
        return 0;
    if (len < n || in[1] < lo || in[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (in[i] < 0x80 || in[i] > 0xbf)
            return 0;
    return n;
}

static bool
is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 5322 atext. */
static bool
is_atext(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

struct cursor {
    const unsigned char *p;
    size_t len;
    size_t at;
    bool utf8;
};

static int
peek(const struct cursor *c)
{
    return c->at < c->len ? c->p[c->at] : -1;
}

/* Takes one UTF-8 sequence at the cursor, if there is one. */
static bool
take_utf8(struct cursor *c)
{
    size_t n = smtp_utf8_seq(c->p + c->at, c->len - c->at);
    if (n == 0)
        return false;
    c->at += n;
    c->utf8 = true;
    return true;
}

/* sub-domain = Let-dig [Ldh-str] *("." ...), with U-labels (non-ASCII) allowed. */
static bool
parse_domain(struct cursor *c)
{
    for (;;) {
        size_t start = c->at;
        bool last_hyphen = false;
        for (;;) {
            int ch = peek(c);
            if (ch >= 0 && (is_alpha((unsigned char)ch) || is_digit((unsigned char)ch))) {
                c->at++;
                last_hyphen = false;
            } else if (ch == '-' && c->at > start) {
                c->at++;
                last_hyphen = true;
            } else if (ch >= 0x80 && take_utf8(c)) {
                last_hyphen = false;
            } else
                break;
        }
        if (c->at == start || last_hyphen)
            return false;
        if (peek(c) != '.')
            return true;
        c->at++;
    }
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent ) "]" */
static bool
parse_literal(struct cursor *c)
{
    c->at++; /* '[' */
    size_t start = c->at;
    while (c->at < c->len && c->p[c->at] != ']')
        c->at++;
    if (c->at == c->len)
        return false;
    size_t n = c->at - start;
    c->at++; /* ']' */
    char text[SMTP_DOMAIN_MAX + 1];
    if (n == 0 || n >= sizeof(text))
        return false;
    memcpy(text, c->p + start, n);
    text[n] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    if (strncasecmp(text, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, text + 5, addr) == 1;
    const char *colon = strchr(text, ':');
    if (!colon) {
        /* inet_pton takes exactly dotted-quad decimal, no leading zeros: the RFC's form. */
        return inet_pton(AF_INET, text, addr) == 1;
    }
    /* General-address-literal: Standardized-tag (Ldh-str) ":" 1*dcontent. */
    if (colon == text || !colon[1])
        return false;
    for (const char *p = text; p < colon; p++)
        if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p) && *p != '-')
            return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < 33 || *p > 126 || *p == '[' || *p == '\\' || *p == ']')
            return false;
    return true;
}

/* Copies in[from..to) to dst (size cap), or fails when it does not fit. */
static bool
copy_out(char *dst, size_t cap, const unsigned char *from, size_t n)
{
    if (n >= cap)
        return false;
    memcpy(dst, from, n);
    dst[n] = '\0';
    return true;
}

static int
fail(const char *why, const char **error_r, int err)
{
    *error_r = why;
    return err;
}

int
smtp_path_parse(const char *in, size_t len, unsigned flags, struct smtp_path *path, size_t *used_r,
                const char **error_r)
{
    struct cursor c = {.p = (const unsigned char *)in, .len = len};
    memset(path, 0, sizeof(*path));
    if (peek(&c) != '<')
        return fail("the address must be in angle brackets", error_r, TDM_EINVAL);
    c.at++;
    if (peek(&c) == '>') {
        if (!(flags & SMTP_PATH_NULL_OK))
            return fail("the null address <> is not allowed here", error_r, TDM_EINVAL);
        path->null = true;
        *used_r = c.at + 1;
        return 0;
    }
    /* A-d-l: "@dom,@dom:" — obsolete source routes, which RFC 5321 §3.3 says to ignore. */
    if (peek(&c) == '@') {
        for (;;) {
            c.at++; /* '@' */
            if (!parse_domain(&c))
                return fail("bad domain in source route", error_r, TDM_EINVAL);
            if (peek(&c) == ':') {
                c.at++;
                break;
            }
            if (peek(&c) != ',' || (c.at++, peek(&c) != '@'))
                return fail("bad source route", error_r, TDM_EINVAL);
        }
    }

    /* Local part, decoded into path->local as it is read. */
    size_t n = 0;
    if (peek(&c) == '"') {
        c.at++;
        for (;;) {
            int ch = peek(&c);
            if (ch < 0)
                return fail("unterminated quoted string", error_r, TDM_EINVAL);
            if (ch == '"') {
                c.at++;
                break;
            }
            size_t from = c.at;
            if (ch == '\\') {
                c.at++;
                ch = peek(&c);
                if (ch < 32 || ch > 126)
                    return fail("bad quoted pair", error_r, TDM_EINVAL);
                from = c.at;
                c.at++;
            } else if (ch >= 32 && ch <= 126) {
                c.at++;
            } else if (!(ch >= 0x80 && take_utf8(&c))) {
                return fail("bad character in quoted string", error_r, TDM_EINVAL);
            }
            size_t k = c.at - from;
            if (n + k > SMTP_LOCAL_MAX)
                return fail("local part too long", error_r, TDM_ELIMIT);
            memcpy(path->local + n, c.p + from, k);
            n += k;
        }
    } else {
        size_t start = c.at;
        for (;;) {
            size_t atom = c.at;
            for (;;) {
                int ch = peek(&c);
                if (ch >= 0 && ch < 0x80 && is_atext((unsigned char)ch))
                    c.at++;
                else if (!(ch >= 0x80 && take_utf8(&c)))
                    break;
            }
            if (c.at == atom)
                return fail("bad local part", error_r, TDM_EINVAL);
            if (peek(&c) != '.')
                break;
            c.at++;
        }
        n = c.at - start;
        if (n > SMTP_LOCAL_MAX)
            return fail("local part too long", error_r, TDM_ELIMIT);
        memcpy(path->local, c.p + start, n);
    }
    path->local[n] = '\0';

    if (peek(&c) == '>' && (flags & SMTP_PATH_POSTMASTER_OK) && c.p[1] != '"' &&
        strcasecmp(path->local, "postmaster") == 0) {
        path->postmaster = true;
        *used_r = c.at + 1;
        return 0;
    }
    if (peek(&c) != '@')
        return fail("the address has no domain", error_r, TDM_EINVAL);
    c.at++;
    size_t dstart = c.at;
    bool ok = peek(&c) == '[' ? parse_literal(&c) : parse_domain(&c);
    if (!ok)
        return fail("bad domain", error_r, TDM_EINVAL);
    if (!copy_out(path->domain, sizeof(path->domain), c.p + dstart, c.at - dstart))
        return fail("domain too long", error_r, TDM_ELIMIT);
    if (peek(&c) != '>')
        return fail("junk after the address", error_r, TDM_EINVAL);
    path->utf8 = c.utf8;
    *used_r = c.at + 1;
    return 0;
}

int
smtp_mailbox_write(struct smtp_buf *out, const struct smtp_path *path)
{
    if (path->postmaster)
        return smtp_buf_puts(out, path->local);
    if (path->null || !path->domain[0])
        return TDM_EINVAL;
    /* The parser decides whether the local part is a dot-string, so both agree. */
    char probe[SMTP_LOCAL_MAX + 8];
    snprintf(probe, sizeof(probe), "<%s@x>", path->local);
    struct smtp_path p;
    size_t used;
    const char *why;
    bool dot_string = probe[1] != '"' &&
                      smtp_path_parse(probe, strlen(probe), 0, &p, &used, &why) == 0 &&
                      used == strlen(probe) && strcmp(p.local, path->local) == 0;
    int e = 0;
    if (dot_string) {
        e = smtp_buf_puts(out, path->local);
    } else {
        e = smtp_buf_puts(out, "\"");
        for (const char *c = path->local; !e && *c; c++) {
            if ((unsigned char)*c < 32 || *c == 127)
                return TDM_EINVAL;
            if (*c == '"' || *c == '\\')
                e = smtp_buf_puts(out, "\\");
            if (!e)
                e = smtp_buf_append(out, c, 1);
        }
        if (!e)
            e = smtp_buf_puts(out, "\"");
    }
    if (!e)
        e = smtp_buf_puts(out, "@");
    for (const char *c = path->domain; !e && *c; c++)
        if ((unsigned char)*c < 33 || *c == 127 || strchr("<>;()\\\"", *c))
            return TDM_EINVAL;
    if (!e)
        e = smtp_buf_puts(out, path->domain);
    return e;
}
