/*
 * Command-line and path parsers of tandemctl (ctl_parse.h).
 */
#include "tandemctl/ctl_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
ctl_parse_size(const char *s, uint64_t *v_r)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'K':
    case 'k':
        mul = 1ull << 10;
        break;
    case 'M':
    case 'm':
        mul = 1ull << 20;
        break;
    case 'G':
    case 'g':
        mul = 1ull << 30;
        break;
    case 'T':
    case 't':
        mul = 1ull << 40;
        break;
    default:
        break;
    }
    if (mul != 1)
        end++;
    if (*end != '\0' || v > UINT64_MAX / mul)
        return false;
    *v_r = v * mul;
    return true;
}

bool
ctl_parse_since(const char *s, time_t now, long long *since_r)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0)
        return false;
    if (*end == '\0') {
        *since_r = v;
        return true;
    }
    long long unit = 0;
    if (strcmp(end, "s") == 0)
        unit = 1;
    else if (strcmp(end, "m") == 0)
        unit = 60;
    else if (strcmp(end, "h") == 0)
        unit = 3600;
    else if (strcmp(end, "d") == 0)
        unit = 86400;
    if (unit) {
        if (v > (long long)now / unit)
            return false;
        *since_r = (long long)now - v * unit;
        return true;
    }
    /* strptime accepts one-digit fields and leading spaces; a date must be written whole. */
    if (strlen(s) < 10 || s[4] != '-' || s[7] != '-')
        return false;
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest)
        return false;
    if (*rest == 'T' || *rest == ' ') {
        rest = strptime(rest + 1, "%H:%M:%S", &tm);
        if (!rest)
            return false;
        if (*rest == 'Z')
            rest++;
    }
    if (*rest != '\0')
        return false;
    *since_r = (long long)timegm(&tm);
    return true;
}

bool
ctl_parse_port(const char *s, unsigned *port_r)
{
    char *end;
    if (*s < '0' || *s > '9') /* strtoul would take a sign or spaces */
        return false;
    errno = 0;
    unsigned long port = strtoul(s, &end, 10);
    if (errno || *end || port < 1 || port > 65535)
        return false;
    *port_r = (unsigned)port;
    return true;
}

bool
ctl_parse_host_port(const char *s, char *host, size_t host_size, unsigned *port_r)
{
    const char *colon, *start = s;
    size_t len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return false;
        start = s + 1;
        len = (size_t)(close - start);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return false;
        len = (size_t)(colon - s);
        /* An IPv6 literal must be in brackets: "::1:8443" cannot be split unambiguously. */
        if (memchr(s, ':', len))
            return false;
    }
    if (len == 0 || len >= host_size)
        return false;
    unsigned port;
    if (!ctl_parse_port(colon + 1, &port))
        return false;
    memcpy(host, start, len);
    host[len] = '\0';
    *port_r = port;
    return true;
}

bool
ctl_path_append(char *buf, size_t size, const char *s)
{
    size_t start = strlen(buf), len = start;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~';
        size_t need = plain ? 1 : 3;
        if (len + need >= size) {
            buf[start] = '\0';
            return false;
        }
        if (plain)
            buf[len++] = (char)*c;
        else
            len += (size_t)snprintf(buf + len, size - len, "%%%02X", *c);
    }
    buf[len] = '\0';
    return true;
}

bool
ctl_path_make(char *buf, size_t size, const char *prefix, const char *name, const char *suffix)
{
    if ((size_t)snprintf(buf, size, "%s", prefix) >= size || !ctl_path_append(buf, size, name))
        return false;
    size_t n = strlen(buf);
    return (size_t)snprintf(buf + n, size - n, "%s", suffix) < size - n;
}
