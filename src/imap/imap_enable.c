/*
 * ENABLE (RFC 5161; imap_int.h): the client turns on extensions that change how the server
 * talks to it, for the rest of the connection.
 *
 * The extensions below are honoured whenever asked for; a client asks only for what the
 * capability list advertises, and each is advertised once every command it touches is served
 * (imap_session.c). An unknown name is ignored (RFC 5161 3.1). "* ENABLED" names what this
 * command newly enabled; ENABLE QRESYNC turns CONDSTORE on too (RFC 7162 3.2.3: "ENABLE
 * QRESYNC" and "ENABLE QRESYNC CONDSTORE" have the same effect) without naming it.
 */
#include "imap/imap_int.h"

#include <strings.h>

static const struct enableable {
    const char *name; /* as the capability list spells it */
    unsigned bit;     /* enum imap_enabled */
    unsigned implies; /* turned on with it, not named in ENABLED */
} enableable[] = {
    {"CONDSTORE", IMAP_ENABLED_CONDSTORE, 0},
    {"QRESYNC", IMAP_ENABLED_QRESYNC, IMAP_ENABLED_CONDSTORE},
    {"IMAP4rev2", IMAP_ENABLED_REV2, 0},
    {"UTF8=ACCEPT", IMAP_ENABLED_UTF8, 0},
};

/* The extension name asks for, NULL when it is not one of these. */
static const struct enableable *
find(const char *name)
{
    for (size_t i = 0; i < sizeof(enableable) / sizeof(enableable[0]); i++)
        if (strcasecmp(enableable[i].name, name) == 0)
            return &enableable[i];
    return NULL;
}

void
imap__cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
    /* RFC 5161 3.1 and RFC 9051 6.3.1: only before a mailbox is selected, since what is
     * enabled changes how the selected mailbox is reported. */
    if (s->state != IMAP_STATE_AUTH) {
        imap__reply(s, cmd->tag, "BAD", NULL, "ENABLE is only allowed before SELECT");
        return;
    }
    imap_buf_puts(&s->out, "* ENABLED");
    for (size_t i = 0; i < cmd->u.enable.n; i++) {
        const struct enableable *e = find(cmd->u.enable.caps[i]);
        if (!e || (s->enabled & e->bit))
            continue;
        s->enabled |= e->bit | e->implies;
        imap_buf_printf(&s->out, " %s", e->name);
    }
    imap_buf_puts(&s->out, "\r\n");
    imap__reply(s, cmd->tag, "OK", NULL, "ENABLE completed");
}
