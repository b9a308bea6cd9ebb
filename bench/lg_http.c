/*
 * lg_http.c - target URLs and the response parser. See lg_http.h.
 */
#include "lg_http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest chunk-size line we accept, bytes. */
#define CHUNK_LINE_MAX 64

static int fail(char *errbuf, size_t errcap, const char *why)
{
    snprintf(errbuf, errcap, "%s", why);
    return -1;
}

int lg_url_parse(const char *text, lg_url *out, char *errbuf, size_t errcap)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "http://", 7) != 0)
        return fail(errbuf, errcap, "only http:// URLs are supported");
    const char *host = text + 7;
    const char *path = strchr(host, '/');
    size_t hostport_len = path ? (size_t)(path - host) : strlen(host);
    const char *colon = memchr(host, ':', hostport_len);
    size_t host_len = colon ? (size_t)(colon - host) : hostport_len;
    if (host_len == 0 || host_len >= sizeof out->host)
        return fail(errbuf, errcap, "bad host");
    memcpy(out->host, host, host_len);
    out->port = 80;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != host + hostport_len || port < 1 || port > 65535)
            return fail(errbuf, errcap, "bad port");
        out->port = (int)port;
    }
    if (snprintf(out->path, sizeof out->path, "%s", path ? path : "/") >=
        (int)sizeof out->path)
        return fail(errbuf, errcap, "path too long");
    const char *ip =
        strcmp(out->host, "localhost") == 0 ? "127.0.0.1" : out->host;
    out->addr.sin_family = AF_INET;
    out->addr.sin_port = htons((uint16_t)out->port);
    if (inet_pton(AF_INET, ip, &out->addr.sin_addr) != 1)
        return fail(errbuf, errcap, "host must be an IPv4 literal");
    if ((ntohl(out->addr.sin_addr.s_addr) >> 24) != 127)
        return fail(errbuf, errcap, "only loopback targets are allowed");
    return 0;
}

/* Case-insensitive "name:" at the start of line, value after spaces. */
static const char *header_value(const char *line, const char *end,
                                const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(end - line) <= n || strncasecmp(line, name, n) != 0 ||
        line[n] != ':')
        return NULL;
    const char *v = line + n + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    return v;
}

static int parse_head(const char *buf, size_t len, lg_resp *r)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len > 65536 ? -1 : 0;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
        !isdigit((unsigned char)buf[9]))
        return -1;
    r->status = atoi(buf + 9);
    r->head_len = (size_t)(end - buf) + 4;
    r->content_length = -1;
    const char *line = memchr(buf, '\n', r->head_len) + 1;
    while (line < end) {
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        if (!eol)
            break;
        const char *v;
        if ((v = header_value(line, eol, "Content-Length")))
            r->content_length = atoll(v);
        else if ((v = header_value(line, eol, "Transfer-Encoding")))
            r->is_chunked = strncasecmp(v, "chunked", 7) == 0;
        else if ((v = header_value(line, eol, "Connection")))
            r->is_close = strncasecmp(v, "close", 5) == 0;
        line = eol + 2;
    }
    r->has_head = true;
    return 1;
}

/* Walks the chunks from off; the offset after the final CRLF, 0 when
 * incomplete, -1 when malformed. body_len gets the data length. */
static long long walk_chunks(const char *buf, size_t len, size_t off,
                             size_t *body_len)
{
    *body_len = 0;
    for (;;) {
        const char *eol = memmem(buf + off, len - off, "\r\n", 2);
        if (!eol)
            return len - off > CHUNK_LINE_MAX ? -1 : 0;
        char *end;
        unsigned long long size = strtoull(buf + off, &end, 16);
        if (end == buf + off)
            return -1;
        off = (size_t)(eol - buf) + 2;
        if (size == 0) { /* trailers, then a blank line */
            const char *fin =
                memmem(buf + off - 2, len - off + 2, "\r\n\r\n", 4);
            return fin ? (long long)(fin - buf) + 4 : 0;
        }
        if (len - off < size + 2)
            return 0;
        *body_len += size;
        off += size + 2;
    }
}

int lg_http_parse(const char *buf, size_t len, lg_resp *r)
{
    if (!r->has_head) {
        int rc = parse_head(buf, len, r);
        if (rc <= 0)
            return rc;
    }
    if (r->is_chunked) {
        size_t body_len;
        long long end = walk_chunks(buf, len, r->head_len, &body_len);
        if (end <= 0)
            return (int)end;
        r->total_len = (size_t)end;
        return 1;
    }
    /* No length and no chunks: 1xx/204/304 carry no body; anything else
     * would need read-until-close, which our peers never use. */
    long long cl = r->content_length < 0 ? 0 : r->content_length;
    if (len - r->head_len < (size_t)cl)
        return 0;
    r->total_len = r->head_len + (size_t)cl;
    return 1;
}

char *lg_http_body(const char *buf, const lg_resp *r, size_t *len)
{
    size_t cap = r->total_len - r->head_len;
    char *out = malloc(cap + 1);
    if (!out)
        return NULL;
    *len = 0;
    if (!r->is_chunked) {
        memcpy(out, buf + r->head_len, cap);
        *len = cap;
        out[cap] = '\0';
        return out;
    }
    size_t off = r->head_len;
    for (;;) {
        unsigned long long size = strtoull(buf + off, NULL, 16);
        off = (size_t)((const char *)memmem(buf + off, r->total_len - off,
                                            "\r\n", 2) -
                       buf) +
              2;
        if (size == 0)
            break;
        memcpy(out + *len, buf + off, size);
        *len += size;
        off += size + 2;
    }
    out[*len] = '\0';
    return out;
}
