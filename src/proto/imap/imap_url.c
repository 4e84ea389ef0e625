/* IMAP server URLs for login referrals (imap_url.h). */
#include "proto/imap/imap_url.h"

#include <string.h>

/* RFC 5092 achar = uchar / "&" / "=" / "~"; uchar = unreserved / pct-encoded / sub-delims-sh. */
static bool
achar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("-._~!$'()*+,&=", c) != NULL;
}

void
imap_write_server_url(struct imap_buf *b, const char *user, const char *host, uint16_t port)
{
    static const char hex[] = "0123456789ABCDEF";
    imap_buf_puts(b, "imap://");
    for (const unsigned char *p = (const unsigned char *)user; *p; p++) {
        if (achar(*p)) {
            imap_buf_append(b, p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 0xf]};
            imap_buf_append(b, esc, sizeof(esc));
        }
    }
    bool v6 = strchr(host, ':') != NULL;
    imap_buf_printf(b, ";AUTH=*@%s%s%s:%u/", v6 ? "[" : "", host, v6 ? "]" : "", port);
}
