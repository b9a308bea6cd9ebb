/*
 * errbuf.c - writing a failure's reason into the caller's buffer. See
 * errbuf.h.
 */
#include "errbuf.h"

#include <stdio.h>

void errbuf_vformat(char *errbuf, size_t errcap, const char *fmt, va_list ap)
{
    if (errbuf != NULL && errcap > 0)
        vsnprintf(errbuf, errcap, fmt, ap);
}

int errbuf_fail(char *errbuf, size_t errcap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    errbuf_vformat(errbuf, errcap, fmt, ap);
    va_end(ap);
    return -1;
}
