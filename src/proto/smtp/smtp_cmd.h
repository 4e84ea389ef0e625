#ifndef TANDEM_PROTO_SMTP_SMTP_CMD_H
#define TANDEM_PROTO_SMTP_SMTP_CMD_H

/*
 * One SMTP/LMTP command line (RFC 5321 §4.1.1, RFC 2033 §4.1) to a struct smtp_cmd. The line
 * is given whole, without its line ending; framing lines and deciding whether a command is
 * allowed now is the session's job (smtp_session.h), so this file knows only syntax.
 *
 * Tolerated on purpose, because real clients send them: any case in verbs and keywords,
 * white space after "FROM:" / "TO:", several spaces between parameters, trailing white space;
 * MAIL's RET= and ENVID= and RCPT's NOTIFY= and ORCPT= (DSN, RFC 3461) are checked for shape
 * and ignored, since we do not offer DSN but some clients send them anyway.
 *
 * RCPT's XDELIVERYID=<32 hex digits> is ours: the transport names each (message, recipient)
 * delivery so the mailbox server drops a resubmitted one it already holds (docs/smtp.md,
 * "Transport dumpster"). Parsed here for its syntax; only an LMTP session accepts it.
 */

#include "proto/smtp/smtp_addr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_LHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
};

enum smtp_body {
    SMTP_BODY_UNSPEC = 0,
    SMTP_BODY_7BIT,
    SMTP_BODY_8BITMIME,
};

#define SMTP_DELIVERY_ID_LEN 16u /* bytes; 32 hex digits on the wire */

/* Why a line was refused: the reply the session should send. Static strings. */
struct smtp_cmd_error {
    int code;
    const char *enh;
    const char *text;
};

/* A parsed command; plain data except arg, which points into the parsed line. */
struct smtp_cmd {
    enum smtp_verb verb;
    const char *arg; /* HELO/EHLO/LHLO: the client's name (not NUL-terminated) */
    size_t arg_len;
    struct smtp_path path; /* MAIL, RCPT */
    /* MAIL parameters */
    bool has_size;
    uint64_t size; /* SIZE= (RFC 1870) */
    enum smtp_body body;
    bool smtputf8;
    /* RCPT parameter XDELIVERYID (not all zero) */
    bool has_delivery_id;
    uint8_t delivery_id[SMTP_DELIVERY_ID_LEN];
};

/*
 * Parses line[0..len) (may hold any byte). Returns 0 with *cmd filled, or TDM_EINVAL with *err
 * set to the reply (unknown verb, bad syntax, bad address, unknown parameter). A path with
 * UTF-8 in it is refused unless MAIL has SMTPUTF8 or, for RCPT, rcpt_utf8 is true (the
 * transaction's MAIL had it). SMTPUTF8 itself is refused unless utf8_offered.
 */
int smtp_cmd_parse(const char *line, size_t len, bool utf8_offered, bool rcpt_utf8,
                   struct smtp_cmd *cmd, struct smtp_cmd_error *err);

/* The verb's name in upper case ("MAIL"), "?" for SMTP_VERB_UNKNOWN. */
const char *smtp_verb_name(enum smtp_verb verb);

#endif
