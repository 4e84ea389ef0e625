/*
 * Tokenizer for the configuration dialect; the syntax is in config_parse.h and docs/config.md.
 *
 * The input is copied once and every entry points into the copy: section types, names and keys
 * are cut out by writing NULs after them, and quoted values are unescaped in place (an escape
 * only ever shrinks the text), so a whole file costs one copy plus the entry array.
 */
#include "lib/config_parse.h"

#include "lib/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest piece of offending text quoted back in a message; the line itself may be 4 KiB. */
#define QUOTE_MAX 64

struct parser {
    const char *filename;
    struct config_parsed *out;
    size_t cap;
    const char *section, *name; /* current section, "" at the top */
    unsigned line;
    char **error_r;
};

__attribute__((format(printf, 3, 0))) static int
verror(char **error_r, int ret, const char *fmt, va_list ap)
{
    if (vasprintf(error_r, fmt, ap) < 0) {
        *error_r = NULL;
        return -ENOMEM;
    }
    return ret;
}

/* Sets *error_r to "<file>:<line>: <message>" and returns ret. */
__attribute__((format(printf, 3, 4))) static int
perr(struct parser *p, int ret, const char *fmt, ...)
{
    char *msg;
    va_list ap;
    va_start(ap, fmt);
    int r = verror(&msg, ret, fmt, ap);
    va_end(ap);
    if (r == -ENOMEM) {
        *p->error_r = NULL;
        return r;
    }
    if (asprintf(p->error_r, "%s:%u: %s", p->filename, p->line, msg) < 0) {
        *p->error_r = NULL;
        ret = -ENOMEM;
    }
    free(msg);
    return ret;
}

static bool
is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static char *
skip_ws(char *s)
{
    while (is_ws(*s))
        s++;
    return s;
}

static bool
is_ident_start(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool
is_ident(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '_';
}

static bool
is_name(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int
add_entry(struct parser *p, const char *key, const char *value)
{
    struct config_parsed *out = p->out;
    if (out->count == CONFIG_MAX_ENTRIES)
        return perr(p, TDM_ELIMIT, "more than %u section headers and keys in one file",
                    CONFIG_MAX_ENTRIES);
    if (out->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        struct config_entry *e = realloc(out->entries, cap * sizeof(*e));
        if (!e)
            return perr(p, -ENOMEM, "out of memory");
        out->entries = e;
        p->cap = cap;
    }
    out->entries[out->count++] = (struct config_entry){
        .section = p->section, .name = p->name, .key = key, .value = value, .line = p->line};
    return 0;
}

/* s points just past '['. */
static int
parse_header(struct parser *p, char *s)
{
    char *type = skip_ws(s);
    char *t = type;
    while (is_ident(*t))
        t++;
    if (t == type || !is_ident_start(*type))
        return perr(p, TDM_EINVAL,
                    "section header: expected a section type (lower-case letters, digits, '_') "
                    "after '['");
    char *type_end = t;
    char *name = skip_ws(t);
    char *n = name;
    if (name != t) {
        while (is_name(*n))
            n++;
    }
    char *name_end = n;
    char *close = skip_ws(n);
    if (*close != ']') {
        if (*close == '\0' || *close == '#')
            return perr(p, TDM_EINVAL, "section header [%.*s: missing ']'", QUOTE_MAX, type);
        return perr(p, TDM_EINVAL,
                    "section header [%.*s: unexpected '%c' (a header is [type] or [type name]; "
                    "names are letters, digits, '.', '_', '-')",
                    (int)(type_end - type), type, *close);
    }
    char *rest = skip_ws(close + 1);
    if (*rest != '\0' && *rest != '#')
        return perr(p, TDM_EINVAL, "section header [%.*s]: unexpected text after ']'",
                    (int)(close - type), type);
    *type_end = '\0';
    *name_end = '\0';
    p->section = type;
    p->name = name_end == name ? "" : name;
    return add_entry(p, NULL, NULL);
}

/* Unescapes a quoted value in place; s points just past the opening quote. */
static int
parse_quoted(struct parser *p, const char *key, char *s, char **value_r)
{
    char *in = s, *out = s;
    for (;;) {
        char c = *in++;
        if (c == '\0')
            return perr(p, TDM_EINVAL, "key \"%s\": unterminated quoted value (missing '\"')", key);
        if (c == '"')
            break;
        if (c == '\\') {
            c = *in++;
            if (c != '"' && c != '\\')
                return perr(p, TDM_EINVAL,
                            "key \"%s\": unknown escape in quoted value (only \\\" and \\\\)", key);
        }
        *out++ = c;
    }
    char *rest = skip_ws(in);
    if (*rest != '\0' && *rest != '#')
        return perr(p, TDM_EINVAL, "key \"%s\": unexpected text after the closing quote", key);
    *out = '\0';
    *value_r = s;
    return 0;
}

static int
parse_key(struct parser *p, char *s)
{
    char *key = s;
    char *k = key;
    while (*k != '\0' && !is_ws(*k) && *k != '=' && *k != '#')
        k++;
    size_t klen = (size_t)(k - key);
    for (size_t i = 0; i <= klen; i++) {
        if (i == klen ? klen == 0 : !is_ident(key[i]) || !is_ident_start(key[0]))
            return perr(p, TDM_EINVAL,
                        "expected \"key = value\" or \"[section]\", found \"%.*s\" (keys are "
                        "lower-case letters, digits and '_')",
                        (int)(klen < QUOTE_MAX ? klen : QUOTE_MAX), key);
    }
    char *eq = skip_ws(k);
    if (*eq != '=')
        return perr(p, TDM_EINVAL, "key \"%.*s\": expected '=' after the key", (int)klen, key);
    *k = '\0';
    char *v = skip_ws(eq + 1);
    char *value = NULL;
    if (*v == '"') {
        int ret = parse_quoted(p, key, v + 1, &value);
        if (ret < 0)
            return ret;
    } else {
        char *end = v;
        while (*end != '\0' && *end != '#') {
            if (*end == '"')
                return perr(p, TDM_EINVAL,
                            "key \"%s\": '\"' inside an unquoted value; quote the whole value",
                            key);
            end++;
        }
        while (end > v && is_ws(end[-1]))
            end--;
        *end = '\0';
        value = v;
    }
    return add_entry(p, key, value);
}

static int
parse_line(struct parser *p, char *s)
{
    s = skip_ws(s);
    if (*s == '\0' || *s == '#')
        return 0;
    if (*s == '[')
        return parse_header(p, s + 1);
    return parse_key(p, s);
}

int
config_parse(const char *buf, size_t len, const char *filename, struct config_parsed **parsed_r,
             char **error_r)
{
    struct config_parsed *out = calloc(1, sizeof(*out));
    struct parser p = {
        .filename = filename, .out = out, .section = "", .name = "", .error_r = error_r};
    int ret = 0;

    *parsed_r = NULL;
    *error_r = NULL;
    if (!out)
        return perr(&p, -ENOMEM, "out of memory");
    if (len > CONFIG_MAX_FILE_SIZE) {
        if (asprintf(error_r, "%s: file is %zu bytes, larger than the limit of %u", filename, len,
                     CONFIG_MAX_FILE_SIZE) < 0)
            *error_r = NULL;
        ret = TDM_ELIMIT;
        goto fail;
    }
    out->text = malloc(len + 1);
    if (!out->text) {
        ret = perr(&p, -ENOMEM, "out of memory");
        goto fail;
    }
    if (len > 0)
        memcpy(out->text, buf, len);
    out->text[len] = '\0';

    size_t pos = 0;
    p.line = 1;
    if (len >= 3 && memcmp(out->text, "\xef\xbb\xbf", 3) == 0) {
        ret = perr(&p, TDM_EINVAL,
                   "the file starts with a UTF-8 byte-order mark; save it "
                   "without one");
        goto fail;
    }
    while (pos < len) {
        char *nl = memchr(out->text + pos, '\n', len - pos);
        size_t line_end = nl ? (size_t)(nl - out->text) : len;
        size_t end = line_end;
        if (end > pos && out->text[end - 1] == '\r')
            end--;
        if (end - pos > CONFIG_MAX_LINE) {
            ret = perr(&p, TDM_ELIMIT, "line is %zu bytes, longer than the limit of %u", end - pos,
                       CONFIG_MAX_LINE);
            goto fail;
        }
        /* Control bytes (NUL, a lone CR, escape sequences) are never meant: say so rather
         * than let them reach a path or a name. */
        for (size_t i = pos; i < end; i++) {
            unsigned char c = (unsigned char)out->text[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                ret =
                    perr(&p, TDM_EINVAL, "control character 0x%02x at column %zu", c, i - pos + 1);
                goto fail;
            }
        }
        out->text[end] = '\0';
        ret = parse_line(&p, out->text + pos);
        if (ret < 0)
            goto fail;
        pos = line_end + 1;
        p.line++;
    }
    *parsed_r = out;
    return 0;

fail:
    config_parsed_free(&out);
    return ret;
}

void
config_parsed_free(struct config_parsed **parsed)
{
    if (!*parsed)
        return;
    free((*parsed)->entries);
    free((*parsed)->text);
    free(*parsed);
    *parsed = NULL;
}

/* ---- value syntax ------------------------------------------------------------------------ */

#define KIB 1024ull
#define SEC 1000ull

const struct config_units config_size_units = {
    "size",
    "bytes, or with K, M or G: 64K, 1M",
    {{"G", KIB *KIB *KIB}, {"M", KIB *KIB}, {"K", KIB}, {"", 1}, {NULL, 0}}};
const struct config_units config_duration_units = {
    "duration",
    "with a unit: 500ms, 30s, 10m, 2h, 7d",
    {{"d", 86400 * SEC}, {"h", 3600 * SEC}, {"m", 60 * SEC}, {"s", SEC}, {"ms", 1}, {NULL, 0}}};
const struct config_units config_number_units = {"number", "decimal digits", {{"", 1}, {NULL, 0}}};

__attribute__((format(printf, 2, 3))) static int
why(char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, CONFIG_REASON_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

/* Leading decimal digits of v into *n; *end_r after them. -1 when none, -2 on overflow. */
static int
digits(const char *v, uint64_t *n, const char **end_r)
{
    uint64_t x = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > UINT64_MAX / 10 || (x == UINT64_MAX / 10 && d > UINT64_MAX % 10))
            return -2;
        x = x * 10 + d;
    }
    *end_r = p;
    *n = x;
    return p == v ? -1 : 0;
}

void
config_value_format(char *buf, size_t size, uint64_t n, const struct config_units *units)
{
    unsigned i = 0;
    if (n == 0) { /* "0" for a size, "0s" rather than "0ms" for a duration */
        while (units->unit[i + 1].suffix)
            i++;
        if (units->unit[i].suffix[0] && i > 0)
            i--;
    }
    while (n % units->unit[i].factor != 0) /* ends at the last unit: its factor is 1 */
        i++;
    snprintf(buf, size, "%llu%s", (unsigned long long)(n / units->unit[i].factor),
             units->unit[i].suffix);
}

int
config_value_number(const char *v, const struct config_units *units, uint64_t min, uint64_t max,
                    uint64_t align, uint64_t *out, char *reason)
{
    uint64_t n;
    const char *end;
    int ret = digits(v, &n, &end);
    if (ret == -2)
        return why(reason, "%s %.64s is out of range", units->what, v);
    unsigned i = 0;
    while (ret == 0 && units->unit[i].suffix && strcmp(units->unit[i].suffix, end) != 0)
        i++;
    if (ret == 0 && !units->unit[i].suffix && *end == '\0')
        return why(reason, "%s %.64s needs a unit (%s)", units->what, v, units->hint);
    if (ret < 0 || !units->unit[i].suffix)
        return why(reason, "\"%.64s\" is not a %s (%s)", v, units->what, units->hint);
    uint64_t factor = units->unit[i].factor;
    if (n > UINT64_MAX / factor)
        return why(reason, "%s %.64s is out of range", units->what, v);
    n *= factor;
    if (n < min || n > max || (align && n % align != 0)) {
        char lo[32], hi[32];
        config_value_format(lo, sizeof(lo), min, units);
        config_value_format(hi, sizeof(hi), max, units);
        if (align)
            return why(reason, "%s %.64s must be a multiple of %llu between %s and %s", units->what,
                       v, (unsigned long long)align, lo, hi);
        return why(reason, "%s %.64s is out of range %s..%s", units->what, v, lo, hi);
    }
    *out = n;
    return 0;
}

int
config_value_name(const char *v, size_t max, char *out, char *reason)
{
    size_t len = strlen(v);
    if (len == 0 || len > max || v[0] == '-' || v[len - 1] == '-' ||
        strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != len)
        return why(reason,
                   "\"%.64s\" is not a name: 1 to %zu lower-case letters, digits and '-', not "
                   "starting or ending with '-'",
                   v, max);
    memcpy(out, v, len + 1);
    return 0;
}

int
config_value_user(const char *v, size_t max, char *out, char *reason)
{
    size_t len = strlen(v);
    if (len == 0 || len > max || !((v[0] >= 'a' && v[0] <= 'z') || v[0] == '_') ||
        strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") != len)
        return why(reason, "\"%.64s\" is not a user name (lower-case, at most %zu characters)", v,
                   max);
    memcpy(out, v, len + 1);
    return 0;
}

int
config_value_enum(const char *v, const char *const *names, int *out, char *reason)
{
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], v) == 0) {
            *out = i;
            return 0;
        }
    }
    char known[CONFIG_REASON_MAX / 2] = "";
    for (int i = 0; names[i]; i++)
        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
                 names[i]);
    return why(reason, "\"%.64s\" is not one of: %s", v, known);
}

int
config_value_list(const char *v, char *buf, size_t size, const char **items, unsigned max,
                  unsigned *n_r, char *reason)
{
    snprintf(buf, size, "%s", v);
    unsigned n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        p = skip_ws(p);
        char *e = p + strlen(p);
        while (e > p && is_ws(e[-1]))
            *--e = '\0';
        if (*p == '\0')
            return why(reason, "empty item in the list \"%.64s\"", v);
        if (n == max)
            return why(reason, "more than %u items in the list", max);
        items[n++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    *n_r = n;
    return 0;
}

int
config_value_address(const char *v, int *family_r, unsigned char bytes_r[16], char *reason)
{
    unsigned char b[16] = {0};
    int family = AF_INET;
    if (inet_pton(AF_INET, v, b) != 1 && inet_pton(family = AF_INET6, v, b) != 1)
        return why(reason, "\"%.64s\" is not an IPv4 or IPv6 address literal", v);
    *family_r = family;
    memcpy(bytes_r, b, sizeof(b));
    return 0;
}

int
config_value_endpoint(const char *v, int *family_r, unsigned char bytes_r[16], uint32_t *port_r,
                      char *reason)
{
    char host[64];
    const char *colon = strrchr(v, ':'), *h = v, *end;
    size_t hlen = colon ? (size_t)(colon - v) : 0;
    if (v[0] == '[' && hlen >= 2 && v[hlen - 1] == ']')
        h++, hlen -= 2;
    uint64_t port;
    if (!colon || hlen == 0 || hlen >= sizeof(host) || digits(colon + 1, &port, &end) < 0 ||
        *end != '\0' || port < 1 || port > 65535)
        return why(reason, "\"%.64s\" is not address:port (IPv6 as [address]:port, port 1..65535)",
                   v);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    int family = 0;
    unsigned char b[16] = {0};
    if (config_value_address(host, &family, b, reason) < 0 || (family == AF_INET6) != (h != v))
        return why(reason, "\"%.64s\": \"%s\" is not an address literal (IPv6 goes in [])", v,
                   host);
    *family_r = family;
    memcpy(bytes_r, b, sizeof(b));
    *port_r = (uint32_t)port;
    return 0;
}

void
config_value_write(FILE *out, const char *s)
{
    size_t len = strlen(s);
    if (len > 0 && strcspn(s, "#\"") == len && !is_ws(s[0]) && !is_ws(s[len - 1])) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}
