/*
 * IMAP date and date-time parsing and formatting (see imap_date.h). Civil-date arithmetic is
 * done here (days from 1970-01-01 by the proleptic Gregorian calendar) rather than with
 * timegm()/gmtime_r(), so the result can never depend on the process's time zone settings and
 * the range checks are our own.
 */
#include "proto/imap/imap_date.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static bool
is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Days from 1970-01-01 to y-m-d (Howard Hinnant's days_from_civil, re-derived: shift the year
 * to start in March so the leap day is last, then count 400-year eras). */
static int64_t
days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int *y_r, int *m_r, int *d_r)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y_r = (int)(y + (m <= 2));
    *m_r = m;
    *d_r = d;
}

static bool
digits(const char *s, size_t n, int *v_r)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *v_r = v;
    return true;
}

static int
month_of(const char *s)
{
    for (int i = 0; i < 12; i++)
        if (strncasecmp(s, months[i], 3) == 0)
            return i + 1;
    return 0;
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy" at s; *used_r gets its length. */
static bool
parse_day_month_year(const char *s, size_t len, struct imap_date *d_r, size_t *used_r)
{
    size_t dl = len >= 2 && s[1] != '-' ? 2 : 1;
    if (len < dl + 9 || s[dl] != '-' || s[dl + 4] != '-')
        return false;
    int day, year;
    if (!digits(s, dl, &day) || !digits(s + dl + 5, 4, &year))
        return false;
    int month = month_of(s + dl + 1);
    if (!month || day < 1 || day > days_in_month(year, month))
        return false;
    d_r->year = year;
    d_r->month = month;
    d_r->day = day;
    *used_r = dl + 9;
    return true;
}

bool
imap_date_parse(const char *s, size_t len, struct imap_date *d_r)
{
    size_t used;
    return parse_day_month_year(s, len, d_r, &used) && used == len;
}

bool
imap_date_time_parse(const char *s, size_t len, struct imap_date_time *dt_r)
{
    /* date-day-fixed is " d" or "dd"; "d" alone is taken too. */
    if (len > 0 && s[0] == ' ') {
        s++;
        len--;
        if (len == 0 || s[0] < '0' || s[0] > '9' || (len > 1 && s[1] != '-'))
            return false;
    }
    struct imap_date d;
    size_t used;
    if (!parse_day_month_year(s, len, &d, &used))
        return false;
    s += used;
    len -= used;
    /* " hh:mm:ss +zzzz" */
    if (len != 15 || s[0] != ' ' || s[3] != ':' || s[6] != ':' || s[9] != ' ' ||
        (s[10] != '+' && s[10] != '-'))
        return false;
    int hh, mm, ss, zh, zm;
    if (!digits(s + 1, 2, &hh) || !digits(s + 4, 2, &mm) || !digits(s + 7, 2, &ss) ||
        !digits(s + 11, 2, &zh) || !digits(s + 13, 2, &zm))
        return false;
    if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
        return false;
    if (ss == 60)
        ss = 59;
    int zone = (zh * 60 + zm) * (s[10] == '-' ? -1 : 1);
    int64_t t = days_from_civil(d.year, d.month, d.day) * 86400 + hh * 3600 + mm * 60 + ss;
    dt_r->time = t - (int64_t)zone * 60;
    dt_r->zone_minutes = zone;
    return true;
}

bool
imap_date_time_format(int64_t t, int zone_minutes, char *out)
{
    if (zone_minutes < -5999 || zone_minutes > 5999)
        return false;
    /* Years 0..9999 bound t well inside int64_t, so the shift cannot overflow. */
    const int64_t lo = days_from_civil(0, 1, 1) * 86400, hi = days_from_civil(10000, 1, 1) * 86400;
    int64_t local = t + (int64_t)zone_minutes * 60;
    if (t < lo - 6000 * 60 || t > hi + 6000 * 60 || local < lo || local >= hi)
        return false;
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t secs = local - days * 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    int z = zone_minutes < 0 ? -zone_minutes : zone_minutes;
    /* Every field is in range by now; the wide buffer only keeps the compiler's format
     * checker from having to prove it. */
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%2d-%s-%04d %02d:%02d:%02d %c%02d%02d", d, months[m - 1], y,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
             zone_minutes < 0 ? '-' : '+', z / 60, z % 60);
    memcpy(out, tmp, IMAP_DATE_TIME_LEN + 1);
    return true;
}

size_t
imap_date_format(const struct imap_date *d, char *out)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%d-%s-%04d", d->day, months[d->month - 1], d->year);
    if (n < 0 || n > IMAP_DATE_MAX_LEN)
        n = 0;
    memcpy(out, tmp, (size_t)n);
    out[n] = '\0';
    return (size_t)n;
}

int64_t
imap_date_to_time(const struct imap_date *d)
{
    return days_from_civil(d->year, d->month, d->day) * 86400;
}
