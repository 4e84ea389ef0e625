#ifndef TANDEM_PROTO_IMAP_IMAP_PARSER_H
#define TANDEM_PROTO_IMAP_IMAP_PARSER_H

/*
 * The IMAP command parser, sans-IO: the connection feeds it the bytes it read, split anywhere,
 * and gets back one item at a time: a complete command (imap_command.h), a request to send a
 * continuation ("+") for a synchronizing literal, bytes of an APPEND message, or a refusal with
 * the exact response line to send. It never touches a socket and never blocks.
 *
 * What it accepts: every command of IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051), and the
 * syntax of IDLE, UIDPLUS (UID EXPUNGE), MOVE, LITERAL+ / LITERAL- (RFC 7888), NAMESPACE, ID,
 * ENABLE, UNSELECT, LIST-EXTENDED (RFC 5258 selection and return options), LIST-STATUS,
 * SPECIAL-USE (CREATE ... (USE (...))), CONDSTORE / QRESYNC (RFC 7162: CHANGEDSINCE, VANISHED,
 * UNCHANGEDSINCE, SEARCH MODSEQ, SELECT (CONDSTORE) and (QRESYNC (...))), ESEARCH (RETURN (MIN
 * MAX ALL COUNT SAVE)), SEARCHRES ("$"), SASL-IR, APPENDLIMIT (STATUS item), QUOTA (RFC 9208),
 * STARTTLS, BINARY (FETCH BINARY[...], BINARY.SIZE, APPEND with literal8 "~{n}"),
 * MULTIAPPEND and UTF8=ACCEPT's APPEND data "UTF8 (~{n})" (RFC 6855). Whether a command is
 * allowed in the session's state is the session's business; the parser only knows the
 * grammar. Lenient in two places real clients need: a line may end in LF alone, and atoms and
 * quoted strings may hold 8-bit bytes (UTF-8 mailbox names and search strings from clients
 * that never heard of literals). Empty lines are ignored. An unknown
 * option of LIST, SELECT or a FETCH/STORE modifier is refused: the server advertises exactly
 * what it parses.
 *
 * Literals. A literal that is not an APPEND message is copied into the command (at most
 * max_literal bytes). An APPEND message is never held: its bytes are handed out as
 * IMAP_ITEM_LITERAL_DATA items pointing into the caller's input, before the command that carries
 * it completes, so a 50 MB APPEND costs the caller's storage once and the parser nothing; if the
 * command is refused after that (a later message of a MULTIAPPEND is bad), the ERROR tells the
 * caller to discard what it received. When a message literal is announced the parser has
 * already checked everything before it (mailbox, flags, date-time) and its size, so a refusal
 * comes before the client sends the bytes; the same holds for the text before any command's
 * first literal (an unknown command, a literal where none may be).
 *
 * For a synchronizing literal {n} the parser returns IMAP_ITEM_CONTINUE; the caller sends
 * out->response ("+ ...") and feeds on, or refuses the command itself (an APPEND to a mailbox
 * that does not exist, over quota) by sending its own tagged NO instead of "+" and calling
 * imap_parser_cancel_literal(). A literal the parser refuses is answered instead of "+":
 * "tag NO [TOOBIG] ..." for an APPEND message over max_message (RFC 7889), "tag BAD [TOOBIG]
 * ..." for any other; a non-synchronizing literal it refuses ({n+}, or under LITERAL- one over
 * 4096 bytes) is answered "tag BAD [TOOBIG] ..." and its bytes are read and discarded, because
 * the client sends them anyway (RFC 7888 section 4).
 *
 * Errors and resynchronisation. A command that does not parse is answered with an
 * IMAP_ITEM_ERROR whose response is the whole line to send, "tag BAD <reason>" (or "* BAD" when
 * no tag could be read: tags over 128 bytes are not echoed), as soon as the parser knows, and
 * the parser goes on at the next command: the rest of the line is skipped, and so is any
 * non-synchronizing literal it announces and the line after it. A refused command's
 * synchronizing literal is never sent by the client (it got no "+"), so the next line is a new
 * command. A line too long to hold is skipped looking only at its last bytes: a "{n+}" there is
 * taken as a literal even if it sat inside a quoted string the parser never saw. One case
 * cannot be resynchronised: a refused non-synchronizing literal larger than both max_message
 * and max_literal (skipping it would mean reading on without bound); the parser answers
 * "* BYE ..." with out->fatal set, and the caller must close the connection after sending it.
 * Every later feed returns TDM_EINVAL.
 *
 * Limits (struct imap_parser_limits, chosen by the caller): line length outside literals,
 * literal size, bytes held for one command, APPEND message size, list elements per command,
 * nesting depth of parentheses / NOT / OR, ranges per sequence set. Exceeding one is a tagged
 * BAD (for a message: NO [TOOBIG]); the command is skipped as above.
 *
 * Ownership: the parser owns its buffers; a returned command is owned by the caller
 * (imap_command_free). out->response, out->tag, out->mailbox and LINE data are borrowed and
 * valid until the next call of imap_parser_feed() or imap_parser_free(); LITERAL_DATA points
 * into the input of the call that returned it. Allocation failure returns -ENOMEM, and so does
 * every later feed: part of a command may have been consumed, so the connection must be closed.
 */

#include "proto/imap/imap_command.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_parser;

struct imap_parser_limits {
    size_t max_line;      /* bytes of one line outside literals, CRLF included (e.g. 64 KiB) */
    size_t max_literal;   /* bytes of a literal that is not an APPEND message (e.g. 64 KiB) */
    size_t max_command;   /* bytes held for one command: lines and small literals (e.g. 1 MiB) */
    uint64_t max_message; /* bytes of one APPEND message: APPENDLIMIT (e.g. 64 MiB) */
    unsigned max_items;   /* elements in one command: keys, items, flags, patterns, ranges */
    unsigned max_depth;   /* nesting of parentheses, NOT and OR */
    unsigned max_ranges;  /* ranges in one sequence set */
    bool literal_minus;   /* LITERAL- advertised (not LITERAL+): {n+} over 4096 is refused */
};

/* The limits above with the example values; a good default for a worker. */
extern const struct imap_parser_limits imap_parser_default_limits;

/* The largest non-synchronizing literal LITERAL- allows (RFC 7888). */
#define IMAP_LITERAL_MINUS_MAX 4096u

enum imap_item {
    IMAP_ITEM_NEED_MORE = 0, /* every byte given was taken; feed more */
    IMAP_ITEM_COMMAND,       /* out->cmd: a complete command, now owned by the caller */
    IMAP_ITEM_CONTINUE,      /* send out->response ("+ ..."): a synchronizing literal follows */
    IMAP_ITEM_LITERAL_DATA,  /* out->data[0..len): bytes of APPEND message out->msg_index */
    IMAP_ITEM_ERROR,         /* send out->response; if out->fatal, then close the connection */
    IMAP_ITEM_LINE,          /* after imap_parser_expect_line(): out->data[0..len), no CRLF */
};

struct imap_parser_out {
    size_t used;              /* bytes of the input consumed by this call */
    struct imap_command *cmd; /* COMMAND */
    const char *response;     /* CONTINUE, ERROR: the full line to send, CRLF included */
    const char *tag;          /* ERROR, CONTINUE: the command's tag, NULL when none was readable */
    bool fatal;               /* ERROR: "* BYE": close after sending */
    const uint8_t *data;      /* LITERAL_DATA, LINE */
    size_t len;
    bool message;        /* CONTINUE: the literal is an APPEND message (msg_index, msg_size) */
    const char *mailbox; /* CONTINUE of a message, LITERAL_DATA: the APPEND's mailbox, as in
                          * struct imap_command (not decoded), so the caller can refuse an
                          * APPEND to a mailbox that does not exist before "+" */
    size_t msg_index;    /* LITERAL_DATA, CONTINUE: which message of the APPEND, from 0 */
    uint64_t msg_offset; /* LITERAL_DATA: where data lies in that message */
    uint64_t msg_size;   /* LITERAL_DATA, CONTINUE: the message's size */
};

/* Returns 0 and an owned parser in *p_r, or -ENOMEM. limits is copied. */
int imap_parser_new(const struct imap_parser_limits *limits, struct imap_parser **p_r);

/* Frees *p (and any command it was building) and sets it to NULL; NULL is fine. */
void imap_parser_free(struct imap_parser **p);

/*
 * Feeds in[0..len) (len may be 0). Returns an enum imap_item with out filled in; the caller
 * calls again with in + out->used until it gets IMAP_ITEM_NEED_MORE. Several commands may be
 * in one input (pipelining); each comes out in turn. Returns TDM_EINVAL after a
 * fatal error, or -ENOMEM (sticky, see above).
 */
int imap_parser_feed(struct imap_parser *p, const uint8_t *in, size_t len,
                     struct imap_parser_out *out);

/*
 * Instead of sending "+" after IMAP_ITEM_CONTINUE, the caller answered the command itself
 * (tagged NO or BAD): the client will not send the literal, so the parser drops the command
 * and reads the next line as a new one. Returns 0, or TDM_EINVAL when the last item returned
 * was not CONTINUE (nothing is changed then). APPEND bytes already handed out for earlier
 * messages of the same command are void.
 */
int imap_parser_cancel_literal(struct imap_parser *p);

/*
 * The next line is not a command but a raw line: the client's answer in an AUTHENTICATE
 * exchange, or "DONE" after IDLE (imap_line_is_done()). It comes out as IMAP_ITEM_LINE
 * (or, over max_line, as an IMAP_ITEM_ERROR "* BAD Line too long" after the line was
 * skipped). Call it after the command that needs it was returned and before feeding on.
 */
void imap_parser_expect_line(struct imap_parser *p);

/* Whether a LINE item is the "DONE" that ends IDLE (RFC 2177; any case). */
bool imap_line_is_done(const uint8_t *data, size_t len);

#endif
