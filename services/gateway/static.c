/*
 * static.c - the embedded web client and the dev token endpoint. See
 * static.h.
 */
#include "static.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "constants.h"
#include "gateway.h"
#include "ids.h"
#include "jwt.h"

/* The files of web/, each between a start and an end label. The paths
 * are relative to the repository root, where make runs the compiler. */
__asm__(".section .rodata\n"
        ".balign 16\n"
        "web_index_start:\n"
        ".incbin \"web/index.html\"\n"
        "web_index_end:\n"
        ".balign 16\n"
        "web_script_start:\n"
        ".incbin \"web/app.js\"\n"
        "web_script_end:\n"
        ".balign 16\n"
        "web_style_start:\n"
        ".incbin \"web/app.css\"\n"
        "web_style_end:\n"
        ".previous\n");
extern const char web_index_start[], web_index_end[];
extern const char web_script_start[], web_script_end[];
extern const char web_style_start[], web_style_end[];

/* Scripts and styles only from this origin, no inline code, no frames:
 * even if message text reached the DOM as HTML, it could not run. */
#define PAGE_CSP                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; "                \
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "              \
    "form-action 'none'; frame-ancestors 'none'"

static void serve_file(hs_reply *rep, const char *type, const char *start,
                       const char *end)
{
    hs_reply_raw(rep, 200, type, start, (size_t)(end - start));
    hs_reply_header(rep, "Content-Security-Policy", PAGE_CSP);
    hs_reply_header(rep, "X-Content-Type-Options", "nosniff");
    hs_reply_header(rep, "Cache-Control", "no-cache");
    hs_reply_header(rep, "Referrer-Policy", "no-referrer");
}

void static_page(hs_request *req, hs_reply *rep)
{
    serve_file(rep, "text/html; charset=utf-8", web_index_start, web_index_end);
}

void static_script(hs_request *req, hs_reply *rep)
{
    serve_file(rep, "text/javascript; charset=utf-8", web_script_start,
               web_script_end);
}

void static_style(hs_request *req, hs_reply *rep)
{
    serve_file(rep, "text/css; charset=utf-8", web_style_start, web_style_end);
}

/* Off: the endpoint does not exist. */
static bool refuse_unless_enabled(const gateway *g, hs_reply *rep)
{
    if (g->dev_tokens)
        return false;
    hs_reply_problem(rep, 404, "Not Found", "no such route");
    return true;
}

void dev_token_probe(hs_request *req, hs_reply *rep)
{
    gateway *g = req->ctx;
    if (refuse_unless_enabled(g, rep))
        return;
    hs_reply_json(rep, 200, json_pack("{s:b}", "enabled", 1));
}

void dev_token_mint(hs_request *req, hs_reply *rep)
{
    gateway *g = req->ctx;
    if (refuse_unless_enabled(g, rep))
        return;
    json_t *body =
        req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    json_t *uid = json_object_get(body, "user_id");
    int64_t user = json_is_integer(uid) ? (int64_t)json_integer_value(uid) : 0;
    json_decref(body);
    if (user < 1 || user > MSG_USER_ID_MAX) {
        hs_reply_problem(rep, 400, "Invalid request",
                         "body must be {\"user_id\": N}, N from 1 to 2^53-1");
        return;
    }
    int64_t exp = (int64_t)time(NULL) + DEV_TOKEN_TTL_S;
    char token[JWT_TOKEN_MAX];
    if (jwt_sign(g->jwt_secret, user, exp, token, sizeof(token)) < 0) {
        hs_reply_problem(rep, 500, "Internal error", "cannot sign a token");
        return;
    }
    hs_reply_json(rep, 200,
                  json_pack("{s:s,s:I,s:I}", "token", token, "user_id",
                            (json_int_t)user, "expires_at", (json_int_t)exp));
}
