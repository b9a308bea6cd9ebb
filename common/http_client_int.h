/*
 * http_client_int.h - what http_client.c shares with http_async.c, so a
 * call run asynchronously is built, signed, mapped and timed exactly as a
 * blocking one. Not for services.
 */
#ifndef MSG_HTTP_CLIENT_INT_H
#define MSG_HTTP_CLIENT_INT_H

#include <curl/curl.h>
#include <stdbool.h>

#include "http_client.h"

/* An easy handle with the options every hop keeps (no signals,
 * TCP_NODELAY, keep-alive, connect timeout, HTTP/1.1, the path as given);
 * its write callback appends to the hc_body set as CURLOPT_WRITEDATA.
 * NULL on failure. */
CURL *hc_handle_new(void);

/* The header list of one call of p: "Expect:", the content type when
 * there is a body, the caller's lines and, when p signs, X-Internal-Auth.
 * NULL when out of memory or signing failed. */
struct curl_slist *hc_call_headers(const hc_pool *p, const char *method,
                                   const char *url, const hc_headers *headers,
                                   const char *body, size_t len);

/* Sets URL, method, body, headers, timeout and the body buffer of one
 * call of p on h. False when an option was refused. */
bool hc_call_setup(const hc_pool *p, CURL *h, const char *method,
                   const char *url, struct curl_slist *list, const char *body,
                   size_t len, hc_body *reply);

/* Clears what hc_call_setup pointed into the call's memory. */
void hc_call_reset(CURL *h);

/* The outcome of a finished transfer: on HC_OK, out holds the status and
 * the body (taken from reply); else reply is freed. */
hc_err hc_call_result(CURL *h, CURLcode rc, hc_body *reply, hc_response *out);

/* Reports a call's latency as the dependency its URL names (if any). */
void hc_call_observe(const hc_pool *p, const char *url,
                     const struct timespec *start);

#endif
