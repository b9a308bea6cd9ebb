/*
 * static.h - the web client (web/index.html, app.js, app.css), embedded
 * into the gateway binary at build time and served at /, /app.js and
 * /app.css, and the development-only token endpoint the page may use.
 *
 * Embedding (the assembler's .incbin) keeps the gateway one file that
 * needs no path to find its page, in a container as on a laptop; the
 * Makefile rebuilds static.o when a file of web/ changes.
 */
#ifndef GATEWAY_STATIC_H
#define GATEWAY_STATIC_H

#include <stdbool.h>

#include "http_server.h"

/* Dev tokens live this long (seconds). */
#define DEV_TOKEN_TTL_S 3600

/* Handlers (req->ctx is the gateway). */
void static_page(hs_request *req, hs_reply *rep);
void static_script(hs_request *req, hs_reply *rep);
void static_style(hs_request *req, hs_reply *rep);
/* GET /v1/dev/token: 200 {"enabled":true} when dev tokens are on, else
 * 404 like any unknown route. */
void dev_token_probe(hs_request *req, hs_reply *rep);
/* POST /v1/dev/token {"user_id":N}: 200 {"token","user_id","expires_at"}
 * when dev tokens are on (MESSENGER_DEV_MODE=1 and GATEWAY_DEV_TOKENS=1),
 * else 404. */
void dev_token_mint(hs_request *req, hs_reply *rep);

#endif
