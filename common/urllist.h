/*
 * urllist.h - a comma-separated list of base URLs, such as ROUTER_URL
 * naming every router instance ("http://a:8200,http://b:8200").
 */
#ifndef MSG_URLLIST_H
#define MSG_URLLIST_H

#include <stddef.h>

/* Most URLs in one list: router instances are a handful. */
#define URLLIST_MAX 8
/* Longest URL kept, terminator included. */
#define URLLIST_URL_MAX 128

typedef struct urllist {
    int n;
    char url[URLLIST_MAX][URLLIST_URL_MAX];
} urllist;

/* Parses spec into *out: 1..URLLIST_MAX entries, blanks around entries
 * ignored, each an http:// or https:// URL without blanks or trailing
 * '/' shorter than URLLIST_URL_MAX. Returns 0, or -1 with the reason in
 * errbuf. */
int urllist_parse(const char *spec, urllist *out, char *errbuf, size_t errcap);

#endif
