/*
 * Flags on the wire (imap_int.h): the store keeps system flags as bits and keywords as
 * strings (store/mail.h); IMAP writes both in one flag list, with \Recent, a session property,
 * added by the session that holds it.
 */
#include "imap/imap_int.h"

#include "lib/err.h"

#include <string.h>
#include <strings.h>

static const struct {
    uint32_t bit;
    const char *name;
} system_flags[] = {{MAIL_FLAG_ANSWERED, "\\Answered"}, {MAIL_FLAG_FLAGGED, "\\Flagged"},
                    {MAIL_FLAG_DELETED, "\\Deleted"},   {MAIL_FLAG_SEEN, "\\Seen"},
                    {MAIL_FLAG_DRAFT, "\\Draft"}};
#define N_SYSTEM (sizeof(system_flags) / sizeof(system_flags[0]))

bool
imap__is_recent(const struct imap_session *s, uint32_t uid)
{
    return uid >= s->recent_lo && uid < s->recent_hi;
}

void
imap__write_flags(struct imap_buf *b, const struct mail_message_info *m, bool recent)
{
    const char *all[N_SYSTEM + 1 + MAIL_MAX_KEYWORDS];
    size_t n = 0;
    for (size_t i = 0; i < N_SYSTEM; i++)
        if (m->flags & system_flags[i].bit)
            all[n++] = system_flags[i].name;
    if (recent)
        all[n++] = "\\Recent";
    for (size_t i = 0; i < m->n_keywords; i++)
        all[n++] = m->keywords[i];
    imap_buf_puts(b, "FLAGS ");
    imap_write_flag_list(b, all, n);
}

int
imap__parse_flags(const char *const *names, size_t n, uint32_t *flags_r, const char **keywords,
                  size_t *n_keywords_r, const char **why_r)
{
    uint32_t flags = 0;
    size_t nk = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = names[i];
        if (f[0] == '\\') {
            size_t j = 0;
            while (j < N_SYSTEM && strcasecmp(f, system_flags[j].name) != 0)
                j++;
            if (j < N_SYSTEM) {
                flags |= system_flags[j].bit;
                continue;
            }
            if (strcasecmp(f, "\\Recent") == 0)
                continue; /* RFC 3501 2.3.2: the server sets it; a client cannot */
            *why_r = "Unknown system flag";
            return TDM_EINVAL;
        }
        if (strlen(f) > MAIL_KEYWORD_MAX) {
            *why_r = "Keyword too long";
            return TDM_ELIMIT;
        }
        /* Keywords compare case-insensitively (RFC 9051 2.3.2): keep the first spelling. */
        size_t k = 0;
        while (k < nk && strcasecmp(keywords[k], f) != 0)
            k++;
        if (k < nk)
            continue;
        if (nk == MAIL_MAX_KEYWORDS) {
            *why_r = "Too many keywords";
            return TDM_ELIMIT;
        }
        keywords[nk++] = f;
    }
    *flags_r = flags;
    *n_keywords_r = nk;
    return 0;
}
