/* Received: header builder (smtp_received.h). */
#include "proto/smtp/smtp_received.h"

#include "lib/err.h"
#include "proto/smtp/smtp_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A token we write verbatim: printable ASCII, no space, no comment or angle syntax. */
static bool
token_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || strchr("()<>;\\\"", *s))
            return false;
    return true;
}

/* Is helo a domain or an address literal, checked with the envelope parser's grammar? */
static bool
helo_is_domain(const char *helo)
{
    char path[SMTP_DOMAIN_MAX + 8];
    if (snprintf(path, sizeof(path), "<x@%s>", helo) >= (int)sizeof(path))
        return false;
    struct smtp_path p;
    size_t used;
    const char *why;
    return smtp_path_parse(path, strlen(path), 0, &p, &used, &why) == 0 && !p.utf8 &&
           used == strlen(path);
}

int
smtp_received_build(const struct smtp_received *r, struct smtp_buf *out)
{
    unsigned char bin[sizeof(struct in6_addr)];
    bool v6 = r->client_addr && strchr(r->client_addr, ':');
    if (!r->client_addr || inet_pton(v6 ? AF_INET6 : AF_INET, r->client_addr, bin) != 1 ||
        !token_ok(r->by) || !token_ok(r->with) || (r->id && !token_ok(r->id)) ||
        (r->client_name && !token_ok(r->client_name)) || r->tz_minutes < -1439 ||
        r->tz_minutes > 1439)
        return TDM_EINVAL;

    char helo[SMTP_DOMAIN_MAX + 1] = "";
    bool helo_domain = false;
    if (r->helo && *r->helo) {
        snprintf(helo, sizeof(helo), "%s", r->helo);
        helo_domain = helo_is_domain(helo);
        /* Not trusted as a domain: it goes into a comment, where these would end it early. */
        for (char *p = helo; *p; p++)
            if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || strchr("()\\", *p))
                *p = '?';
    }

    char from[SMTP_DOMAIN_MAX * 2 + 100];
    const char *name = r->client_name ? r->client_name : "";
    const char *sep = r->client_name ? " " : "";
    const char *lit = v6 ? "IPv6:" : "";
    if (helo_domain)
        snprintf(from, sizeof(from), "%s (%s%s[%s%s])", helo, name, sep, lit, r->client_addr);
    else if (helo[0])
        snprintf(from, sizeof(from), "%s (helo=%s%s%s [%s%s])",
                 r->client_name ? r->client_name : "unknown", helo, sep, name, lit, r->client_addr);
    else
        snprintf(from, sizeof(from), "%s ([%s%s])", r->client_name ? r->client_name : "unknown",
                 lit, r->client_addr);

    /* RFC 5322 §3.3 date-time, in English whatever the locale. */
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(r->time + (int64_t)r->tz_minutes * 60);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1900)
        return TDM_EINVAL;
    int off = r->tz_minutes < 0 ? -r->tz_minutes : r->tz_minutes;
    char date[64];
    snprintf(date, sizeof(date), "%s, %d %s %d %02d:%02d:%02d %c%02d%02d", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
             r->tz_minutes < 0 ? '-' : '+', off / 60, off % 60);

    size_t start = out->len;
    int e = smtp_buf_puts(out, "Received: from ");
    if (!e)
        e = smtp_buf_puts(out, from);
    if (!e)
        e = smtp_buf_puts(out, "\r\n\tby ");
    if (!e)
        e = smtp_buf_puts(out, r->by);
    if (!e)
        e = smtp_buf_puts(out, " (tandem) with ");
    if (!e)
        e = smtp_buf_puts(out, r->with);
    if (!e && r->id) {
        e = smtp_buf_puts(out, " id ");
        if (!e)
            e = smtp_buf_puts(out, r->id);
    }
    if (!e && r->for_rcpt) {
        e = smtp_buf_puts(out, "\r\n\tfor <");
        if (!e)
            e = smtp_mailbox_write(out, r->for_rcpt);
        if (!e)
            e = smtp_buf_puts(out, ">");
    }
    if (!e)
        e = smtp_buf_puts(out, ";\r\n\t");
    if (!e)
        e = smtp_buf_puts(out, date);
    if (!e)
        e = smtp_buf_puts(out, "\r\n");
    if (e)
        out->len = start;
    return e;
}
