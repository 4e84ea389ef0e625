/* Dot-unstuffing and end-of-data detection (smtp_data.h). */
#include "proto/smtp/smtp_data.h"

#include <stdbool.h>
#include <string.h>

enum {
    ST_BOL = 0, /* at the start of a line (after CR LF, or at the start of the message) */
    ST_MID,     /* inside a line, the last byte was not CR */
    ST_CR,      /* inside a line, the last byte was CR */
    ST_DOT,     /* a line started with '.', which is held */
    ST_DOTCR,   /* a line started with "." CR, both held */
};

static const uint8_t held_cr = '\r';

void
smtp_data_init(struct smtp_data *d)
{
    d->state = ST_BOL;
}

int
smtp_data_feed(struct smtp_data *d, const uint8_t *in, size_t len, size_t *used_r,
               const uint8_t **chunk_r, size_t *chunk_len_r)
{
    size_t i = 0;
    /* First settle a held dot line, which decides where the next chunk starts. */
    while (i < len && (d->state == ST_DOT || d->state == ST_DOTCR || d->state == ST_BOL)) {
        uint8_t c = in[i];
        if (d->state == ST_BOL) {
            if (c != '.')
                break;
            d->state = ST_DOT; /* hold the dot: it is stuffing or the end */
            i++;
        } else if (d->state == ST_DOT) {
            if (c == '\r') {
                d->state = ST_DOTCR;
                i++;
            } else {
                d->state = ST_MID; /* the dot was stuffing; c starts the data */
                break;
            }
        } else if (c == '\n') {
            d->state = ST_BOL;
            *used_r = i + 1;
            return SMTP_DATA_END;
        } else {
            /* ".\rX": the dot was stuffing, the held CR is data. */
            d->state = ST_CR;
            *used_r = i;
            *chunk_r = &held_cr;
            *chunk_len_r = 1;
            return SMTP_DATA_CHUNK;
        }
    }
    size_t start = i;
    int st = d->state;
    /* Line by line with memchr, since only a line start can hold anything but data; a
     * message is mostly long runs between LFs. */
    while (i < len) {
        if (st == ST_BOL && in[i] == '.')
            break; /* end the chunk before a dot at a line start */
        const uint8_t *lf = memchr(in + i, '\n', len - i);
        if (!lf) {
            st = in[len - 1] == '\r' ? ST_CR : ST_MID;
            i = len;
            break;
        }
        size_t j = (size_t)(lf - in);
        /* The LF ends a line only after a CR, which may have come in an earlier piece. */
        bool cr = j > i ? in[j - 1] == '\r' : st == ST_CR;
        st = cr ? ST_BOL : ST_MID;
        i = j + 1;
    }
    d->state = st;
    *used_r = i;
    if (i == start)
        return SMTP_DATA_NEED_MORE;
    *chunk_r = in + start;
    *chunk_len_r = i - start;
    return SMTP_DATA_CHUNK;
}
