/* RFC 5322 date-time with the obsolete forms; what is accepted is in mime_date.h. */
#include "proto/mime/mime_date.h"

#include "proto/mime/mime_int.h"

#include "lib/err.h"

#include <string.h>

static void
skip(struct mime_lex *lx)
{
    mime__lex_cfws(lx, NULL);
}

static bool
is_alpha(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Reads up to max digits; returns the count read (0: none). */
static int
digits(struct mime_lex *lx, int max, int *v)
{
    int n = 0;
    *v = 0;
    while (lx->p < lx->end && n < max && *lx->p >= '0' && *lx->p <= '9') {
        *v = *v * 10 + (*lx->p - '0');
        lx->p++;
        n++;
    }
    /* More digits than allowed: not this field. */
    if (lx->p < lx->end && *lx->p >= '0' && *lx->p <= '9')
        return 0;
    return n;
}

static size_t
alpha(struct mime_lex *lx, const uint8_t **s)
{
    *s = lx->p;
    while (lx->p < lx->end && is_alpha(*lx->p))
        lx->p++;
    return (size_t)(lx->p - *s);
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

static void
skip_sep(struct mime_lex *lx)
{
    skip(lx);
    if (lx->p < lx->end && (*lx->p == '-' || *lx->p == '.')) {
        lx->p++;
        skip(lx);
    }
}

int
mime_date_parse(const uint8_t *v, size_t len, struct mime_date *out)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    if (!v)
        v = (const uint8_t *)"";
    struct mime_lex lx = {v, v + len};
    const uint8_t *w;
    size_t wl;
    memset(out, 0, sizeof(*out));
    skip(&lx);
    /* Optional day name. */
    if (lx.p < lx.end && is_alpha(*lx.p)) {
        alpha(&lx, &w);
        skip(&lx);
        if (lx.p < lx.end && *lx.p == ',')
            lx.p++;
        skip(&lx);
    }
    if (!digits(&lx, 2, &out->day))
        return TDM_EINVAL;
    skip_sep(&lx);
    wl = alpha(&lx, &w);
    if (wl < 3)
        return TDM_EINVAL;
    for (int m = 0; m < 12 && !out->month; m++)
        if (mime__lower(w[0]) == months[m * 3] && mime__lower(w[1]) == months[m * 3 + 1] &&
            mime__lower(w[2]) == months[m * 3 + 2])
            out->month = m + 1;
    if (!out->month)
        return TDM_EINVAL;
    skip_sep(&lx);
    int yl = digits(&lx, 4, &out->year);
    if (yl < 2)
        return TDM_EINVAL;
    if (yl == 2)
        out->year += out->year < 50 ? 2000 : 1900;
    else if (yl == 3)
        out->year += 1900;
    skip(&lx);
    if (!digits(&lx, 2, &out->hour))
        return TDM_EINVAL;
    skip(&lx);
    if (lx.p >= lx.end || *lx.p != ':')
        return TDM_EINVAL;
    lx.p++;
    skip(&lx);
    if (!digits(&lx, 2, &out->min))
        return TDM_EINVAL;
    skip(&lx);
    if (lx.p < lx.end && *lx.p == ':') {
        lx.p++;
        skip(&lx);
        if (!digits(&lx, 2, &out->sec))
            return TDM_EINVAL;
        skip(&lx);
    }
    if (lx.p < lx.end && (*lx.p == '+' || *lx.p == '-')) {
        int sign = *lx.p == '-' ? -1 : 1;
        lx.p++;
        int z;
        if (digits(&lx, 4, &z) != 4 || z % 100 > 59)
            return TDM_EINVAL;
        out->zone_minutes = sign * (z / 100 * 60 + z % 100);
        /* "-0000" says the zone is unknown (RFC 5322 3.3). */
        out->zone_known = !(sign < 0 && z == 0);
    } else if (lx.p < lx.end && is_alpha(*lx.p)) {
        wl = alpha(&lx, &w);
        static const struct {
            const char *name;
            int hours;
        } zones[] = {{"ut", 0},   {"gmt", 0},  {"z", 0},    {"est", -5}, {"edt", -4}, {"cst", -6},
                     {"cdt", -5}, {"mst", -7}, {"mdt", -6}, {"pst", -8}, {"pdt", -7}};
        for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
            if (mime__ieq(w, wl, zones[i].name)) {
                out->zone_minutes = zones[i].hours * 60;
                out->zone_known = true;
            }
    }
    if (out->month < 1 || out->day < 1 || out->day > days_in_month(out->year, out->month) ||
        out->hour > 23 || out->min > 59 || out->sec > 60)
        return TDM_EINVAL;
    int64_t days = days_from_civil(out->year, out->month, out->day);
    out->utc = days * 86400 + out->hour * 3600 + out->min * 60 + out->sec -
               (int64_t)out->zone_minutes * 60;
    return 0;
}
