#ifndef TANDEM_IMAP_IMAP_SEARCH_EVAL_H
#define TANDEM_IMAP_IMAP_SEARCH_EVAL_H

/*
 * The SEARCH evaluator: whether one message matches a parsed search program (struct
 * imap_search_key, proto/imap/imap_command.h). It knows nothing of sessions or sockets, so it
 * is tested on its own (tests/unit/imap/test_imap_search.c); imap_search_cmd.c runs it over
 * the selected folder.
 *
 * A program is prepared once per command: the strings it looks for are case-folded then, and
 * the keys of every AND and OR are put cheapest first (flags, dates, sizes and sets before
 * header fields, header fields before bodies), so a message is only read as far as a key
 * still needs it. Each message is then evaluated with what the store says about it (struct
 * mail_message_info); its bytes are asked for (the load callback) only when a key needs
 * them, and parsed only as far as the keys need: the header alone for HEADER, FROM, TO, CC,
 * BCC, SUBJECT and SENT*, the whole MIME structure for BODY and TEXT.
 *
 * What the keys mean here (RFC 3501 and RFC 9051 6.4.4 leave these to the server;
 * docs/imap.md says the same for clients):
 *   - BEFORE, ON, SINCE compare the day of the internal date in UTC, the zone FETCH
 *     INTERNALDATE shows it in (the store keeps the instant, not the zone it came with).
 *   - SENTBEFORE, SENTON, SENTSINCE compare the Date header's day as written, in the sender's
 *     zone (RFC 3501: "disregarding time and timezone"); a message without a usable Date
 *     header uses its internal date instead.
 *   - FROM, TO, CC, BCC, SUBJECT are HEADER with that field name: the value is looked for in
 *     the field's decoded value (RFC 2047 encoded words undone); "" matches every message that
 *     has the field.
 *   - Strings match as substrings of the UTF-8 text with Unicode simple case folding
 *     (mime_search.h says which scripts fold and that there is no normalisation).
 *   - BODY looks in the text of the body's text parts (transfer encodings and charsets undone,
 *     HTML reduced to text); TEXT in that and in the decoded header fields.
 *   - MODSEQ matches messages whose MODSEQ is at least the number; the entry name and type are
 *     ignored, since the store keeps one MODSEQ per message (RFC 7162 3.1.5 allows that).
 *   - A sequence set names messages by MSN ("*" is EXISTS), a UID set by UID ("*" is the
 *     highest UID in the folder), and "$" the UIDs a SEARCH saved (RFC 5182), in either key.
 *     Range checks (an MSN beyond EXISTS) are the caller's, before evaluating.
 */

#include "proto/imap/imap_command.h"
#include "proto/mime/mime_buf.h"
#include "store/mail.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_search_prog;
struct mime_message;

/*
 * Prepares key (usually a command's u.search.key), copying what the program needs of it, so
 * the command may be freed while the program runs on. Returns 0 with an owned *prog_r, or
 * -ENOMEM.
 */
int imap_search_prog_new(const struct imap_search_key *key, struct imap_search_prog **prog_r);
void imap_search_prog_free(struct imap_search_prog **prog);

/* Whether the program has a MODSEQ key (the answer then says the highest MODSEQ found, and
 * the session becomes CONDSTORE-aware, RFC 7162 3.1). */
bool imap_search_prog_has_modseq(const struct imap_search_prog *prog);

/* What "*" and "$" stand for where the program runs; borrowed for each evaluation. */
struct imap_search_env {
    uint32_t max_msn;      /* EXISTS */
    uint32_t max_uid;      /* UID of the last message, 0 when the folder is empty */
    const uint32_t *saved; /* "$": ascending UIDs */
    size_t n_saved;
};

/* Gives the message's bytes (RFC 822 as stored), which must stay valid until the message is
 * cleared. Returns 0 or a negative code, which the evaluation returns. */
typedef int imap_search_load_fn(void *ctx, const uint8_t **data_r, size_t *len_r);

/*
 * One message being evaluated. Fill it with imap_search_msg_init(); what the evaluation parses
 * and decodes is kept in it, so several keys on the same message read it once;
 * imap_search_msg_clear() frees that. The fields after the first block are private.
 */
struct imap_search_msg {
    uint32_t msn;
    const struct mail_message_info *info; /* borrowed */
    bool recent;
    imap_search_load_fn *load;
    void *load_ctx;

    const uint8_t *data; /* once loaded */
    size_t len;
    bool loaded;
    struct mime_message *header;  /* the header alone, parsed */
    struct mime_message *message; /* the whole message, parsed */
    struct mime_buf header_text;  /* every field decoded and folded, for TEXT */
    bool have_header_text;
    struct mime_buf body_text; /* the body's text decoded and folded, for BODY and TEXT */
    bool have_body_text;
    int sent_day; /* SENT*: yyyymmdd, 0 until known */
};

void imap_search_msg_init(struct imap_search_msg *m, uint32_t msn,
                          const struct mail_message_info *info, bool recent,
                          imap_search_load_fn *load, void *load_ctx);
void imap_search_msg_clear(struct imap_search_msg *m);

/* 1 when the message matches, 0 when not, or a negative code (-ENOMEM, or load's). */
int imap_search_match(const struct imap_search_prog *prog, const struct imap_search_env *env,
                      struct imap_search_msg *m);

#endif
