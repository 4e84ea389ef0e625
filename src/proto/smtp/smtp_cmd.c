/* Command line parser (smtp_cmd.h). */
#include "proto/smtp/smtp_cmd.h"

#include "lib/err.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_VERB_HELO},         {"EHLO", SMTP_VERB_EHLO}, {"LHLO", SMTP_VERB_LHLO},
    {"MAIL", SMTP_VERB_MAIL},         {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA},
    {"RSET", SMTP_VERB_RSET},         {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT},
    {"VRFY", SMTP_VERB_VRFY},         {"EXPN", SMTP_VERB_EXPN}, {"HELP", SMTP_VERB_HELP},
    {"STARTTLS", SMTP_VERB_STARTTLS},
};

const char *
smtp_verb_name(enum smtp_verb verb)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (verbs[i].verb == verb)
            return verbs[i].name;
    return "?";
}

static int
refuse(struct smtp_cmd_error *err, int code, const char *enh, const char *text)
{
    err->code = code;
    err->enh = enh;
    err->text = text;
    return TDM_EINVAL;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The keyword of an esmtp-param: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). */
static bool
keyword_ok(const char *p, size_t n)
{
    if (n == 0 || p[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under SMTPUTF8 (RFC 6531 §3.3). */
static bool
value_ok(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 33 && c <= 126 && c != '=') {
            i++;
            continue;
        }
        size_t k = c >= 0x80 ? smtp_utf8_seq((const unsigned char *)p + i, n - i) : 0;
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

static bool
word_is(const char *p, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(p, word, n) == 0;
}

/* SIZE's value: 1*20DIGIT (RFC 1870), which must fit 64 bits. */
static bool
parse_size(const char *p, size_t n, uint64_t *size_r)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *size_r = v;
    return true;
}

/* XDELIVERYID's value: exactly 32 hex digits (either case), not all zero. */
static bool
parse_delivery_id(const char *p, size_t n, uint8_t id_r[SMTP_DELIVERY_ID_LEN])
{
    if (n != 2 * SMTP_DELIVERY_ID_LEN)
        return false;
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        unsigned v;
        if (ch >= '0' && ch <= '9')
            v = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v = (unsigned)(ch - 'A' + 10);
        else
            return false;
        if (i % 2 == 0)
            id_r[i / 2] = (uint8_t)(v << 4);
        else
            id_r[i / 2] |= (uint8_t)v;
        any |= (uint8_t)v;
    }
    return any != 0;
}

enum param_seen {
    SEEN_SIZE = 1,
    SEEN_BODY = 2,
    SEEN_UTF8 = 4,
    SEEN_RET = 8,
    SEEN_ENVID = 16,
    SEEN_NOTIFY = 32,
    SEEN_ORCPT = 64,
    SEEN_DELIVERY_ID = 128,
};

/* One parameter of MAIL (is_mail) or RCPT. */
static int
parse_param(const char *p, size_t n, bool is_mail, bool utf8_offered, unsigned *seen,
            struct smtp_cmd *cmd, struct smtp_cmd_error *err)
{
    const char *eq = memchr(p, '=', n);
    size_t kn = eq ? (size_t)(eq - p) : n;
    const char *v = eq ? eq + 1 : NULL;
    size_t vn = eq ? n - kn - 1 : 0;
    if (!keyword_ok(p, kn) || (eq && !value_ok(v, vn)))
        return refuse(err, 501, "5.5.4", "Bad parameter syntax");
    unsigned bit = 0;
    if (is_mail && word_is(p, kn, "SIZE")) {
        bit = SEEN_SIZE;
        if (!v || !parse_size(v, vn, &cmd->size))
            return refuse(err, 501, "5.5.4", "Bad SIZE value");
        cmd->has_size = true;
    } else if (is_mail && word_is(p, kn, "BODY")) {
        bit = SEEN_BODY;
        if (v && word_is(v, vn, "7BIT"))
            cmd->body = SMTP_BODY_7BIT;
        else if (v && word_is(v, vn, "8BITMIME"))
            cmd->body = SMTP_BODY_8BITMIME;
        else
            return refuse(err, 555, "5.5.4", "Unsupported BODY type");
    } else if (is_mail && word_is(p, kn, "SMTPUTF8")) {
        bit = SEEN_UTF8;
        if (v || !utf8_offered)
            return refuse(err, 555, "5.5.4", "SMTPUTF8 not supported");
        cmd->smtputf8 = true;
    } else if (is_mail && word_is(p, kn, "RET")) {
        bit = SEEN_RET;
        if (!v || !(word_is(v, vn, "FULL") || word_is(v, vn, "HDRS")))
            return refuse(err, 501, "5.5.4", "Bad RET value");
    } else if (is_mail && word_is(p, kn, "ENVID")) {
        bit = SEEN_ENVID;
        if (!v)
            return refuse(err, 501, "5.5.4", "Bad ENVID value");
    } else if (!is_mail && word_is(p, kn, "NOTIFY")) {
        bit = SEEN_NOTIFY;
        if (!v)
            return refuse(err, 501, "5.5.4", "Bad NOTIFY value");
    } else if (!is_mail && word_is(p, kn, "ORCPT")) {
        bit = SEEN_ORCPT;
        if (!v || !memchr(v, ';', vn))
            return refuse(err, 501, "5.5.4", "Bad ORCPT value");
    } else if (!is_mail && word_is(p, kn, "XDELIVERYID")) {
        bit = SEEN_DELIVERY_ID;
        if (!v || !parse_delivery_id(v, vn, cmd->delivery_id))
            return refuse(err, 501, "5.5.4", "Bad XDELIVERYID value");
        cmd->has_delivery_id = true;
    } else {
        return refuse(err, 555, "5.5.4", "Unsupported parameter");
    }
    if (*seen & bit)
        return refuse(err, 501, "5.5.4", "Parameter given twice");
    *seen |= bit;
    return 0;
}

/* "MAIL FROM:<path> params" or "RCPT TO:<path> params", from after the verb's space. */
static int
parse_path_cmd(const char *p, size_t n, bool is_mail, bool utf8_offered, bool rcpt_utf8,
               struct smtp_cmd *cmd, struct smtp_cmd_error *err)
{
    const char *kw = is_mail ? "FROM:" : "TO:";
    size_t kwn = strlen(kw);
    if (n < kwn || strncasecmp(p, kw, kwn) != 0)
        return refuse(err, 501, "5.5.4",
                      is_mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>");
    size_t at = kwn;
    while (at < n && is_space(p[at]))
        at++;
    size_t used;
    const char *why;
    unsigned flags = is_mail ? SMTP_PATH_NULL_OK : SMTP_PATH_POSTMASTER_OK;
    int r = smtp_path_parse(p + at, n - at, flags, &cmd->path, &used, &why);
    if (r != 0)
        return refuse(err, 501, is_mail ? "5.1.7" : "5.1.3",
                      is_mail ? "Bad sender address syntax" : "Bad recipient address syntax");
    at += used;
    unsigned seen = 0;
    while (at < n) {
        if (!is_space(p[at]))
            return refuse(err, 501, "5.5.4", "Junk after the address");
        while (at < n && is_space(p[at]))
            at++;
        size_t start = at;
        while (at < n && !is_space(p[at]))
            at++;
        if (at > start) {
            r = parse_param(p + start, at - start, is_mail, utf8_offered, &seen, cmd, err);
            if (r != 0)
                return r;
        }
    }
    bool utf8_ok = is_mail ? cmd->smtputf8 : rcpt_utf8;
    if (cmd->path.utf8 && !utf8_ok)
        return refuse(err, 553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
    return 0;
}

int
smtp_cmd_parse(const char *line, size_t len, bool utf8_offered, bool rcpt_utf8,
               struct smtp_cmd *cmd, struct smtp_cmd_error *err)
{
    memset(cmd, 0, sizeof(*cmd));
    while (len > 0 && is_space(line[len - 1]))
        len--;
    size_t vn = 0;
    while (vn < len && line[vn] != ' ')
        vn++;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (word_is(line, vn, verbs[i].name))
            cmd->verb = verbs[i].verb;
    if (cmd->verb == SMTP_VERB_UNKNOWN)
        return refuse(err, 500, "5.5.1", "Command unrecognized");
    const char *arg = vn < len ? line + vn + 1 : line + len;
    size_t an = vn < len ? len - vn - 1 : 0;

    switch (cmd->verb) {
    case SMTP_VERB_HELO:
    case SMTP_VERB_EHLO:
    case SMTP_VERB_LHLO: {
        while (an > 0 && is_space(*arg))
            arg++, an--;
        /* The first word is the client's name; anything after it is ignored, as some clients
         * append comments. The name goes into Received: headers, so only printable ASCII. */
        size_t w = 0;
        while (w < an && !is_space(arg[w]))
            w++;
        if (w == 0 || w > SMTP_DOMAIN_MAX)
            return refuse(err, 501, "5.5.4", "Syntax: EHLO hostname");
        for (size_t i = 0; i < w; i++)
            if ((unsigned char)arg[i] < 33 || (unsigned char)arg[i] > 126)
                return refuse(err, 501, "5.5.4", "Bad character in host name");
        cmd->arg = arg;
        cmd->arg_len = w;
        return 0;
    }
    case SMTP_VERB_MAIL:
    case SMTP_VERB_RCPT:
        return parse_path_cmd(arg, an, cmd->verb == SMTP_VERB_MAIL, utf8_offered, rcpt_utf8, cmd,
                              err);
    case SMTP_VERB_DATA:
    case SMTP_VERB_RSET:
    case SMTP_VERB_QUIT:
    case SMTP_VERB_STARTTLS:
        if (vn < len)
            return refuse(err, 501, "5.5.4", "Syntax error: no arguments allowed");
        return 0;
    case SMTP_VERB_VRFY:
    case SMTP_VERB_EXPN:
        if (an == 0)
            return refuse(err, 501, "5.5.4", "Syntax: VRFY address");
        return 0;
    case SMTP_VERB_NOOP:
    case SMTP_VERB_HELP:
    case SMTP_VERB_UNKNOWN:
        return 0;
    }
    return 0;
}
