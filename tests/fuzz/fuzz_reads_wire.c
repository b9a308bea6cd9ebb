/*
 * fuzz_reads_wire.c - libFuzzer target for reads_wire.c, the reader of
 * a batch of list reads' answer (the gateway reads what a cache node
 * wrote). The input is read as such an answer: every body the reader
 * gives must lie inside the input, its status in 100..599, and after a
 * -1 the reader must keep saying -1. Then the answers read are written
 * again and must read back the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reads_wire.h"

#define MAX_ANSWERS 64

typedef struct got {
    int status;
    const char *body;
    size_t len;
} got;

/* Writes answers[0..n) and checks they read back the same. */
static void check_rewrite(const got *answers, int n)
{
    jt_buf b;
    jt_init(&b);
    rw_begin(&b);
    for (int i = 0; i < n; i++)
        rw_answer(&b, answers[i].status, answers[i].body, answers[i].len);
    rw_end(&b);
    size_t len;
    char *text = jt_finish(&b, &len);
    if (text == NULL)
        abort();
    rw_reader r;
    if (rw_open(&r, text, len) != 0)
        abort();
    for (int i = 0; i < n; i++) {
        got g;
        if (rw_next(&r, &g.status, &g.body, &g.len) != 1 ||
            g.status != answers[i].status || g.len != answers[i].len ||
            memcmp(g.body, answers[i].body, g.len) != 0)
            abort();
    }
    got g;
    if (rw_next(&r, &g.status, &g.body, &g.len) != 0)
        abort();
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so a read past the input is caught. */
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    rw_reader r;
    got answers[MAX_ANSWERS];
    int n = 0, last = 1;
    if (rw_open(&r, text, size) == 0) {
        while (n < MAX_ANSWERS) {
            got *g = &answers[n];
            last = rw_next(&r, &g->status, &g->body, &g->len);
            if (last != 1)
                break;
            if (g->status < 100 || g->status > 599 || g->body < text ||
                g->body + g->len > text + size)
                abort();
            n++;
        }
        if (last == -1) {
            got g;
            if (rw_next(&r, &g.status, &g.body, &g.len) != -1)
                abort();
        }
        check_rewrite(answers, n);
    }
    free(text);
    return 0;
}
