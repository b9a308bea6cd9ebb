/*
 * urllist.c - parsing comma-separated URL lists. See urllist.h.
 */
#include "urllist.h"

#include <stdbool.h>
#include <string.h>

#include "errbuf.h"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_plain(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~' || s[i] == ',')
            return false;
    }
    return true;
}

static int parse_one(const char *p, size_t len, char *out, char *errbuf,
                     size_t errcap)
{
    while (len > 0 && is_blank(*p)) {
        p++;
        len--;
    }
    while (len > 0 && is_blank(p[len - 1]))
        len--;
    bool http = len > 7 && strncmp(p, "http://", 7) == 0;
    bool https = len > 8 && strncmp(p, "https://", 8) == 0;
    if (!(http || https) || len >= URLLIST_URL_MAX || !is_plain(p, len) ||
        p[len - 1] == '/')
        return errbuf_fail(errbuf, errcap,
                           "'%.*s' is not an http:// or https:// URL of at "
                           "most %d characters without a trailing '/'",
                           (int)len, p, URLLIST_URL_MAX - 1);
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}

int urllist_parse(const char *spec, urllist *out, char *errbuf, size_t errcap)
{
    memset(out, 0, sizeof(*out));
    if (!spec || !spec[0])
        return errbuf_fail(errbuf, errcap, "no URL given");
    const char *p = spec;
    for (;;) {
        if (out->n == URLLIST_MAX)
            return errbuf_fail(errbuf, errcap, "more than %d URLs",
                               URLLIST_MAX);
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (parse_one(p, len, out->url[out->n], errbuf, errcap))
            return -1;
        out->n++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}
