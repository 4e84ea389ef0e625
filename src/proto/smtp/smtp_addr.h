#ifndef TANDEM_PROTO_SMTP_SMTP_ADDR_H
#define TANDEM_PROTO_SMTP_SMTP_ADDR_H

/*
 * Envelope paths of MAIL FROM and RCPT TO (RFC 5321 §4.1.2, RFC 6531 for UTF-8):
 *
 *   Path = "<" [ A-d-l ":" ] Mailbox ">"      the source route A-d-l is parsed and ignored
 *   Mailbox = Local-part "@" ( Domain / address-literal )
 *   Local-part = Dot-string / Quoted-string
 *
 * plus "<>" (the null reverse-path) and "<postmaster>" without a domain (RFC 5321 §4.5.1),
 * each allowed only where the caller says. Well-formed UTF-8 is accepted in atoms, quoted
 * strings and sub-domains and reported in smtp_path.utf8, so the command layer can refuse it
 * when the transaction did not ask for SMTPUTF8.
 *
 * Limits: RFC 5321 §4.5.3.1 sets 64 octets for a local part and 256 for a path, and asks
 * servers to accept more where they can; we accept local parts up to SMTP_LOCAL_MAX and
 * domains up to SMTP_DOMAIN_MAX (the DNS limit), and refuse beyond.
 */

#include "proto/smtp/smtp_reply.h"

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX 255
#define SMTP_DOMAIN_MAX 255

/* A parsed path; plain data, no pointers, so it can be copied and kept. */
struct smtp_path {
    bool null;       /* "<>" */
    bool postmaster; /* "<postmaster>" (any case) with no domain; local is "postmaster" */
    bool utf8;       /* a byte above 0x7f appears in local or domain */
    char local[SMTP_LOCAL_MAX + 1];   /* quotes and quoted-pair backslashes removed */
    char domain[SMTP_DOMAIN_MAX + 1]; /* as written; an address literal keeps its brackets */
};

enum smtp_path_flag {
    SMTP_PATH_NULL_OK = 1,       /* "<>" is allowed (MAIL FROM) */
    SMTP_PATH_POSTMASTER_OK = 2, /* "<postmaster>" is allowed (RCPT TO) */
};

/*
 * Parses the path at in[0..len), which must start with '<'. On success returns 0, fills *path
 * and sets *used_r to the bytes taken (through '>'). Returns TDM_EINVAL or TDM_ELIMIT with a
 * static *error_r naming what is wrong.
 */
int smtp_path_parse(const char *in, size_t len, unsigned flags, struct smtp_path *path,
                    size_t *used_r, const char **error_r);

/*
 * Appends path as an RFC 5321 Mailbox, without the angle brackets: the local part as a
 * dot-string when the parser reads it as one, else as a quoted string (RFC 5321 §4.1.2), so
 * smtp_path_parse() reads it back to the same path; "postmaster" alone for <postmaster>.
 * Returns 0, -ENOMEM, or TDM_EINVAL for the null path or a character no path may carry (part
 * of the mailbox may then have been appended).
 */
int smtp_mailbox_write(struct smtp_buf *out, const struct smtp_path *path);

/*
 * Length of the well-formed UTF-8 sequence (2 to 4 bytes, no overlongs, no surrogates) that
 * starts at in[0..len), or 0 when there is none.
 */
size_t smtp_utf8_seq(const unsigned char *in, size_t len);

#endif
