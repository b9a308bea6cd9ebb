/*
 * lg_http.h - the HTTP/1.1 side of the load generator: target URLs and
 * a response parser.
 *
 * Only loopback targets are accepted (127.0.0.0/8 or "localhost"): the
 * load generator must never send traffic anywhere else. The parser works
 * on the bytes received so far and says whether a whole response is in;
 * it understands Content-Length, chunked bodies and Connection: close,
 * which is all the project's services and nginx send. Pure functions, no
 * I/O except the address lookup of lg_url_parse.
 */
#ifndef LG_HTTP_H
#define LG_HTTP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct lg_url {
    char host[64]; /* as written, for the Host header */
    int port;
    char path[512]; /* path and query, "/" when empty */
    struct sockaddr_in addr;
} lg_url;

/* Parses "http://HOST[:PORT][/PATH]". Returns 0, or -1 with a reason in
 * errbuf (not http, not loopback, too long). */
int lg_url_parse(const char *text, lg_url *out, char *errbuf, size_t errcap);

/* What is known of a response being received. Zero it per response. */
typedef struct lg_resp {
    bool has_head; /* the status line and headers are in */
    int status;
    size_t head_len;          /* bytes up to and including the blank line */
    long long content_length; /* -1 when absent */
    bool is_chunked;
    bool is_close;    /* the server closes after this response */
    size_t total_len; /* whole response, once complete */
} lg_resp;

/* Looks at buf[0..len), the bytes received for one response. Returns 1
 * when the whole response is in (r->total_len says how long it is), 0
 * when more is needed, -1 when it is not a response we understand. */
int lg_http_parse(const char *buf, size_t len, lg_resp *r);

/* The body of a complete response (dechunked when chunked) copied into a
 * new NUL-terminated buffer the caller frees; *len its length. NULL on
 * allocation failure. */
char *lg_http_body(const char *buf, const lg_resp *r, size_t *len);

#endif
