/*
 * reads_wire.c - the answer of a batch of list reads. See reads_wire.h.
 */
#include "reads_wire.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define RW_OPEN "{\"answers\":["
#define RW_CLOSE "]}"
#define RW_STATUS "{\"status\":"
#define RW_LENGTH ",\"length\":"
#define RW_BODY ",\"body\":"
#define RW_NULL "null"

void rw_begin(jt_buf *b)
{
    jt_cstr(b, RW_OPEN);
}

void rw_answer(jt_buf *b, int status, const char *body, size_t len)
{
    if (b->len > 0 && b->data[b->len - 1] != '[')
        jt_raw(b, ",", 1);
    jt_cstr(b, RW_STATUS);
    jt_int(b, status);
    jt_cstr(b, RW_LENGTH);
    jt_int(b, (long long)len);
    jt_cstr(b, RW_BODY);
    if (len > 0)
        jt_raw(b, body, len);
    else
        jt_cstr(b, RW_NULL);
    jt_raw(b, "}", 1);
}

void rw_end(jt_buf *b)
{
    jt_cstr(b, RW_CLOSE);
}

/* Consumes the literal s at r->p; false when it is not there. */
static bool take(rw_reader *r, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, s, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* Consumes plain decimal digits (1 to 12 of them) into *v. */
static bool take_number(rw_reader *r, int64_t *v)
{
    int digits = 0;
    *v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9' && digits < 12) {
        *v = *v * 10 + (*r->p - '0');
        r->p++;
        digits++;
    }
    return digits > 0 && (r->p == r->end || *r->p < '0' || *r->p > '9');
}

int rw_open(rw_reader *r, const char *text, size_t len)
{
    r->p = NULL;
    r->count = 0;
    if (text == NULL)
        return -1;
    r->p = text;
    r->end = text + len;
    if (take(r, RW_OPEN))
        return 0;
    r->p = NULL;
    return -1;
}

int rw_next(rw_reader *r, int *status, const char **body, size_t *len)
{
    if (r->p == NULL)
        return -1;
    if (take(r, RW_CLOSE))
        return r->p == r->end ? 0 : (r->p = NULL, -1);
    int64_t s, n;
    if ((r->count > 0 && !take(r, ",")) || !take(r, RW_STATUS) ||
        !take_number(r, &s) || s < 100 || s > 599 || !take(r, RW_LENGTH) ||
        !take_number(r, &n) || !take(r, RW_BODY) ||
        (n == 0 && !take(r, RW_NULL)) || n > r->end - r->p) {
        r->p = NULL;
        return -1;
    }
    *body = r->p;
    *len = (size_t)n;
    r->p += n;
    if (!take(r, "}")) {
        r->p = NULL;
        return -1;
    }
    *status = (int)s;
    r->count++;
    return 1;
}
