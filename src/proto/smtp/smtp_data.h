#ifndef TANDEM_PROTO_SMTP_SMTP_DATA_H
#define TANDEM_PROTO_SMTP_SMTP_DATA_H

/*
 * The DATA phase decoder (RFC 5321 §4.5.2, §4.1.1.4): removes dot-stuffing and finds the end
 * of the message, zero-copy. Fed the bytes after DATA's 354 in pieces of any size, it returns
 * the message as chunks that point into the caller's input, so the message is never held
 * twice. The only bytes it holds itself are the state of a line that starts with '.': the
 * dot, and a CR after it, until the next byte says whether the line ends the message.
 *
 * Only CR LF "." CR LF ends the message, and a dot is removed only at the start of a line,
 * which starts after CR LF. A bare LF (or bare CR) is message data and never a line end here.
 * This is stricter than some servers on purpose: reading "\n.\n" or "\n.\r\n" as an end lets a
 * client hide a second message behind it for the next server that reads it differently (SMTP
 * smuggling, CVE-2023-51764); taking only the RFC's sequence leaves nothing to disagree on. The
 * CR LF before the final dot belongs to the message, as RFC 5321 says.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Plain state, no allocation; zero it (or call smtp_data_init) before each message. */
struct smtp_data {
    int state;
};

enum smtp_data_item {
    SMTP_DATA_NEED_MORE = 0, /* every byte given was taken; feed more */
    SMTP_DATA_CHUNK = 1,     /* *chunk_r[0..*chunk_len_r) is message data */
    SMTP_DATA_END = 2,       /* the final "." CR LF was taken; the message is complete */
};

void smtp_data_init(struct smtp_data *d);

/*
 * Decodes from in[0..len). Sets *used_r to the bytes taken and returns an item; call again
 * with in + *used_r. A chunk points into in, except a single held CR that turned out to be
 * data (".\rX" at a line start), which points to static storage. Chunks are never empty.
 */
int smtp_data_feed(struct smtp_data *d, const uint8_t *in, size_t len, size_t *used_r,
                   const uint8_t **chunk_r, size_t *chunk_len_r);

#endif
