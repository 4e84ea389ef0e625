#ifndef TANDEM_PROTO_SMTP_SMTP_SESSION_H
#define TANDEM_PROTO_SMTP_SMTP_SESSION_H

/*
 * The server side of one SMTP (RFC 5321) or LMTP (RFC 2033) connection, sans-IO: the caller
 * feeds the bytes it read and gets back events, one per call, and sends whatever the session
 * has queued in its output. The session never touches a socket, a clock or the directory.
 *
 * Extensions: PIPELINING (RFC 2920), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463; every 2xx/4xx/5xx
 * reply carries one except the greeting and the answer to HELO/EHLO/LHLO, as RFC 2034 says),
 * SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) when configured, STARTTLS (RFC
 * 3207, SMTP only) when configured. VRFY is answered 252, EXPN 502; DSN parameters are
 * tolerated and ignored (smtp_cmd.h).
 *
 * Order and pipelining. Commands are handled strictly one after another and every reply is
 * queued in command order, so a pipelined batch is answered in order however it was cut into
 * reads. Whenever the caller must decide something (MAIL, RCPT, the delivery results after
 * DATA), feed() returns that event and takes no further byte until the caller gives its
 * verdict; until then it returns SMTP_EV_WAIT with nothing taken. The decision may thus come
 * later, from another event (an asynchronous directory lookup, a store commit), and bytes the
 * client pipelined behind the command simply stay in the caller's buffer. feed() reports in
 * out->used exactly the bytes it took, so the switch into the DATA phase after 354 never
 * loses or reorders a byte: message data that came in the same read as DATA is decoded at
 * once (smtp_data.h) and handed over zero-copy.
 *
 * Replies after DATA. SMTP answers once for the transaction (the caller's smtp_session_
 * delivered(s, 0, ...)). LMTP answers once per accepted recipient, in RCPT order; the caller
 * reports each recipient when its delivery is durable, in any order, and each reply goes out
 * as soon as every earlier one has. A message over max_message is read to its end but not
 * handed over further; the phase ends with SMTP_EV_DATA_ABORTED instead of SMTP_EV_DATA_END
 * and the session itself answers 552 5.3.4 (once per accepted recipient for LMTP).
 *
 * Limits: a command line may be up to max_line bytes with its line ending (RFC 5321 sets 512,
 * raised to 1000 in practice, §4.5.3.1.4; we tolerate up to the configured bound) and beyond it
 * is read to its end, dropped and answered 500 5.5.2; max_rcpts accepted recipients per
 * transaction (452 4.5.3 after); max_message bytes of message (declared SIZE is refused at
 * MAIL with 552 5.3.4, the real size is counted while receiving); max_errors refused commands,
 * after which the session answers 421 4.7.0 and asks to close. A command line ends at LF; a CR
 * before it is dropped, so clients that end commands with a bare LF still work (message data
 * is stricter, see smtp_data.h). Message lines are not held to RFC 5321's 1000 octets and an
 * 8-bit byte under BODY=7BIT is not refused: the session never holds a line, so long ones cost
 * nothing, and refusing mislabelled mail that every other server takes would only lose it.
 *
 * STARTTLS: after SMTP_EV_STARTTLS the caller sends the queued 220, throws away every byte it
 * holds past out->used (a client that pipelines plaintext behind STARTTLS is attacking the
 * session, RFC 3207 §5, CVE-2011-0411), runs the handshake and calls smtp_session_tls_started();
 * the session then forgets the client's name and waits for a new EHLO.
 *
 * Ownership: the session owns its output buffer and everything it keeps; pointers handed out in
 * struct smtp_session_out are borrowed and live as the comment on each says.
 */

#include "proto/smtp/smtp_addr.h"
#include "proto/smtp/smtp_cmd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct smtp_session;

enum smtp_proto {
    SMTP_PROTO_SMTP = 1,
    SMTP_PROTO_LMTP = 2,
};

struct smtp_session_config {
    enum smtp_proto proto;
    const char *hostname; /* ours, in the greeting and EHLO answer; copied */
    size_t max_line;      /* command line bound in bytes incl. CRLF; >= 512 */
    uint64_t max_message; /* message size bound (SIZE); > 0 */
    size_t max_rcpts;     /* accepted recipients per transaction; > 0 */
    unsigned max_errors;  /* refused commands before 421; > 0 */
    bool offer_starttls;  /* SMTP only: advertise and accept STARTTLS */
    bool offer_smtputf8;  /* advertise and accept SMTPUTF8 */
};

enum smtp_event {
    SMTP_EV_NEED_MORE = 0,  /* every byte given was taken; send the output, read more */
    SMTP_EV_MAIL = 1,       /* a MAIL to decide: out->path, out->mail; then smtp_session_verdict */
    SMTP_EV_RCPT = 2,       /* a RCPT to decide: out->path; then smtp_session_verdict */
    SMTP_EV_DATA_START = 3, /* 354 is queued; message chunks follow */
    SMTP_EV_DATA = 4,       /* message bytes out->data[0..data_len), dot-unstuffed */
    SMTP_EV_DATA_END = 5,   /* the message is complete: report smtp_session_delivered() */
    SMTP_EV_DATA_ABORTED = 6, /* the message was too large: drop what you got; 552 is queued */
    SMTP_EV_RESET = 7,        /* a transaction with an accepted MAIL was abandoned (RSET, EHLO) */
    SMTP_EV_STARTTLS = 8,     /* 220 is queued: send it, start TLS, smtp_session_tls_started() */
    SMTP_EV_CLOSE = 9,        /* QUIT or 421 is queued: send it and close the connection */
    SMTP_EV_WAIT = 10,        /* a decision is outstanding: nothing was taken */
};

struct smtp_session_out {
    size_t used; /* bytes of the input taken by this call */
    /* SMTP_EV_MAIL, SMTP_EV_RCPT: the path, valid until the verdict is given */
    const struct smtp_path *path;
    /* SMTP_EV_MAIL: the parameters, valid until the verdict (path is in .path) */
    const struct smtp_cmd *mail;
    /* SMTP_EV_RCPT: the parameters (LMTP: XDELIVERYID), valid until the verdict */
    const struct smtp_cmd *rcpt;
    /* SMTP_EV_DATA: points into the input of this call (or to static storage, see smtp_data.h) */
    const uint8_t *data;
    size_t data_len;
    /* SMTP_EV_DATA_END, SMTP_EV_DATA_ABORTED: message bytes handed over (before abort) */
    uint64_t message_size;
};

/* A decision. code 2xx accepts, 4xx/5xx refuses; enh matches (smtp_reply.h); text is one or
 * more printable lines, or NULL for the session's default text. */
struct smtp_verdict {
    int code;
    const char *enh;
    const char *text;
};

/*
 * Returns 0 and an owned session in *s_r with the greeting already queued, TDM_EINVAL when the
 * config breaks a rule above (STARTTLS with LMTP included), or -ENOMEM.
 */
int smtp_session_new(const struct smtp_session_config *cfg, struct smtp_session **s_r);

/* Frees *s and sets it to NULL; NULL is fine. */
void smtp_session_free(struct smtp_session **s);

/*
 * Feeds in[0..len). Returns an enum smtp_event with *out filled in; the caller acts on it and
 * calls again with in + out->used. Errors: TDM_EINVAL when called while the caller owes
 * smtp_session_tls_started() or after SMTP_EV_CLOSE; -ENOMEM, after which every call returns
 * -ENOMEM and the caller closes the connection (answering 421 itself if it can).
 */
int smtp_session_feed(struct smtp_session *s, const uint8_t *in, size_t len,
                      struct smtp_session_out *out);

/*
 * The verdict on the pending SMTP_EV_MAIL or SMTP_EV_RCPT. A 2xx on RCPT adds the recipient
 * (smtp_session_rcpt()). Returns 0, TDM_EINVAL (nothing pending, or a bad verdict; nothing
 * changed) or -ENOMEM (nothing changed either, so the call may be repeated).
 */
int smtp_session_verdict(struct smtp_session *s, const struct smtp_verdict *v);

/*
 * smtp_session_verdict() for a server, which must answer every command: when v cannot be
 * recorded for want of memory, the command is answered "451 4.3.0 Out of memory, try again
 * later" instead (a recipient is then not added) and *deferred_r is set. Returns 0, TDM_EINVAL
 * as smtp_session_verdict(), or -ENOMEM when not even that answer could be queued: the session
 * has then failed (every later call returns -ENOMEM) and the caller closes the connection.
 */
int smtp_session_answer(struct smtp_session *s, const struct smtp_verdict *v, bool *deferred_r);

/*
 * After SMTP_EV_DATA_END: the outcome for accepted recipient idx (LMTP, 0 <= idx <
 * smtp_session_rcpt_count()) or for the whole message (SMTP, idx 0), given once each, when the
 * delivery is durable. Returns 0, TDM_EINVAL (no message waiting, idx out of range or already
 * given, bad verdict) or -ENOMEM: either nothing changed and the call may be repeated, or the
 * reply could not be queued and the session failed for good (every call returns -ENOMEM, as
 * after feed()); a repeated call tells which.
 */
int smtp_session_delivered(struct smtp_session *s, size_t idx, const struct smtp_verdict *v);

/* After SMTP_EV_STARTTLS, once the handshake succeeded. Returns 0 or TDM_EINVAL. */
int smtp_session_tls_started(struct smtp_session *s);

/* The queued output (borrowed until the next call on s) and its length. */
const uint8_t *smtp_session_output(const struct smtp_session *s, size_t *len_r);

/* The caller sent n bytes of the output. */
void smtp_session_output_done(struct smtp_session *s, size_t n);

/* The current transaction's accepted recipients and sender, borrowed until it ends. */
size_t smtp_session_rcpt_count(const struct smtp_session *s);
const struct smtp_path *smtp_session_rcpt(const struct smtp_session *s, size_t idx);
const struct smtp_path *smtp_session_sender(const struct smtp_session *s);

/* The client's HELO/EHLO/LHLO name, "" before one (borrowed while s lives). */
const char *smtp_session_helo(const struct smtp_session *s);

/*
 * The protocol name for a Received: header's "with" (RFC 3848, RFC 6531): SMTP, ESMTP, ESMTPS,
 * LMTP, LMTPS, UTF8SMTP, UTF8SMTPS, UTF8LMTP, UTF8LMTPS, for the current transaction.
 */
const char *smtp_session_with(const struct smtp_session *s);

#endif
