/*
 * lg_engine.c - epoll load engine. See lg_engine.h.
 *
 * Connection life: CONNECTING (non-blocking connect, waiting for
 * EPOLLOUT) -> IDLE -> BUSY (request written, possibly in parts; response
 * read until lg_http_parse says it is whole) -> IDLE. A failed or closed
 * connection counts an error if a request was on it and is reopened.
 */
#include "lg_engine.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* First capacity of a response buffer, and its cap: larger answers are
 * counted as errors (pages of 20 messages are far below it). */
#define READ_BUF_INITIAL 16384
#define READ_BUF_MAX (4 << 20)
/* Longest epoll wait, ms: bounds how late the time limit is noticed. */
#define POLL_MAX_MS 50

enum { CONNECTING, IDLE, BUSY, CLOSED };

typedef struct conn {
    int fd;
    int state;
    char wbuf[LG_REQUEST_MAX];
    size_t wlen, woff;
    char *rbuf;
    size_t rlen, rcap;
    lg_resp resp;
    uint64_t index;    /* request number on this connection */
    uint64_t start_ns; /* when it started (or was scheduled to) */
} conn;

typedef struct worker {
    lg_run *run;
    int id;
    int nconns;
    conn *conns;
    int epfd;
    uint64_t rng;
    uint64_t deadline_ns;
    double interval_ns; /* this thread's share of the rate; 0: none */
    uint64_t next_due_ns;
    lg_hist hist;
    uint64_t status[LG_STATUS_MAX + 1];
    pthread_t thread;
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static int open_conn(worker *w, conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct sockaddr_in *a = &w->run->work->url.addr;
    if (connect(c->fd, (const struct sockaddr *)a, sizeof *a) != 0 &&
        errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = CONNECTING;
    c->rlen = 0;
    return 0;
}

static void close_conn(worker *w, conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CLOSED;
}

/* A connection broke: the request on it (if any) is an error. */
static void fail_conn(worker *w, conn *c)
{
    if (c->state == BUSY)
        count(&w->run->errors);
    close_conn(w, c);
}

static int write_some(worker *w, conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            fail_conn(w, c);
            return -1;
        }
        c->woff += (size_t)n;
    }
    return 0;
}

/* May this thread start a request now? Takes a number from the shared
 * counter when it may. */
static bool take_ticket(worker *w, uint64_t now, uint64_t *index,
                        uint64_t *start)
{
    if (now >= w->deadline_ns)
        return false;
    if (w->interval_ns > 0 && now < w->next_due_ns)
        return false;
    uint64_t i = __atomic_fetch_add(&w->run->issued, 1, __ATOMIC_RELAXED);
    if (w->run->count && i >= w->run->count)
        return false;
    *index = i;
    *start = now;
    if (w->interval_ns > 0) {
        *start = w->next_due_ns;
        w->next_due_ns += (uint64_t)w->interval_ns;
    }
    return true;
}

static void start_request(worker *w, conn *c, uint64_t now)
{
    uint64_t index, start;
    if (!take_ticket(w, now, &index, &start))
        return;
    int len = lg_work_request(w->run->work, index, &w->rng, c->wbuf);
    if (len < 0) {
        count(&w->run->errors);
        return;
    }
    c->wlen = (size_t)len;
    c->woff = 0;
    c->rlen = 0;
    memset(&c->resp, 0, sizeof c->resp);
    c->index = index;
    c->start_ns = start;
    c->state = BUSY;
    write_some(w, c);
}

static void finish_response(worker *w, conn *c)
{
    lg_run *r = w->run;
    uint64_t us = (now_ns() - c->start_ns) / 1000;
    lg_hist_record(&w->hist, us);
    int status = c->resp.status;
    w->status[status >= 0 && status < LG_STATUS_MAX ? status : LG_STATUS_MAX]++;
    if (status < 200 || status > 299)
        count(&r->non_2xx);
    if (r->keep_bodies) {
        size_t len;
        char *body = lg_http_body(c->rbuf, &c->resp, &len);
        lg_work_answer(r->work, c->index, status, body, len);
        free(body);
    }
    count(&r->done);
    /* Keep whatever followed (nothing, without pipelining). */
    size_t rest = c->rlen - c->resp.total_len;
    memmove(c->rbuf, c->rbuf + c->resp.total_len, rest);
    c->rlen = rest;
    c->state = IDLE;
    if (c->resp.is_close)
        close_conn(w, c);
}

static int grow(conn *c)
{
    if (c->rcap >= READ_BUF_MAX)
        return -1;
    size_t cap = c->rcap ? c->rcap * 2 : READ_BUF_INITIAL;
    char *b = realloc(c->rbuf, cap + 1);
    if (!b)
        return -1;
    c->rbuf = b;
    c->rcap = cap;
    return 0;
}

static void read_some(worker *w, conn *c)
{
    for (;;) {
        if (c->rlen == c->rcap && grow(c) != 0) {
            fail_conn(w, c);
            return;
        }
        ssize_t n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            fail_conn(w, c);
            return;
        }
        c->rlen += (size_t)n;
        if (c->state != BUSY)
            continue; /* unsolicited bytes: dropped with the buffer */
        int rc = lg_http_parse(c->rbuf, c->rlen, &c->resp);
        if (rc < 0) {
            fail_conn(w, c);
            return;
        }
        if (rc == 1) {
            finish_response(w, c);
            if (c->state == CLOSED)
                return;
        }
    }
}

static void on_event(worker *w, conn *c, uint32_t events)
{
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if ((events & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
            count(&w->run->errors);
            close_conn(w, c);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = IDLE;
    }
    if ((events & EPOLLOUT) && c->state == BUSY && write_some(w, c) != 0)
        return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        read_some(w, c);
}

/* Ms to wait in epoll: until the next scheduled start, bounded. */
static int wait_ms(const worker *w, uint64_t now, bool has_idle)
{
    if (now >= w->deadline_ns)
        return 0;
    uint64_t until = w->deadline_ns;
    if (has_idle && w->interval_ns > 0 && w->next_due_ns < until)
        until = w->next_due_ns;
    uint64_t ms = (until - now) / 1000000 + 1;
    return ms > POLL_MAX_MS ? POLL_MAX_MS : (int)ms;
}

static bool is_finished(worker *w, uint64_t now)
{
    if (now >= w->deadline_ns)
        return true;
    lg_run *r = w->run;
    if (!r->count || __atomic_load_n(&r->issued, __ATOMIC_RELAXED) < r->count)
        return false;
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].state == BUSY)
            return false;
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct epoll_event events[256];
    uint64_t now = now_ns();
    while (!is_finished(w, now)) {
        bool has_idle = false;
        for (int i = 0; i < w->nconns; i++) {
            conn *c = &w->conns[i];
            if (c->state == CLOSED && open_conn(w, c) != 0) {
                count(&w->run->errors);
                continue;
            }
            if (c->state == IDLE)
                start_request(w, c, now);
            has_idle |= c->state == IDLE;
        }
        int n = epoll_wait(w->epfd, events, 256, wait_ms(w, now, has_idle));
        for (int i = 0; i < n; i++)
            on_event(w, events[i].data.ptr, events[i].events);
        now = now_ns();
        /* Answers just in: start the next requests without a new wait. */
    }
    for (int i = 0; i < w->nconns; i++)
        close_conn(w, &w->conns[i]);
    __atomic_fetch_sub(&w->run->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int worker_init(worker *w, lg_run *r, int id, uint64_t start)
{
    memset(w, 0, sizeof *w);
    w->run = r;
    w->id = id;
    w->nconns = r->connections / r->threads +
                (id < r->connections % r->threads ? 1 : 0);
    w->conns = calloc((size_t)w->nconns, sizeof *w->conns);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!w->conns || w->epfd < 0)
        return -1;
    for (int i = 0; i < w->nconns; i++) {
        w->conns[i].fd = -1;
        w->conns[i].state = CLOSED;
    }
    w->rng = (start ^ ((uint64_t)id + 1) * 0x9E3779B97F4A7C15ULL) | 1;
    w->deadline_ns = start + (uint64_t)(r->seconds * 1e9);
    if (r->rate > 0) {
        w->interval_ns = 1e9 * r->threads / r->rate;
        w->next_due_ns = start + (uint64_t)(w->interval_ns * id / r->threads);
    }
    return 0;
}

static void worker_destroy(worker *w)
{
    for (int i = 0; w->conns && i < w->nconns; i++)
        free(w->conns[i].rbuf);
    free(w->conns);
    if (w->epfd >= 0)
        close(w->epfd);
}

int lg_run_go(lg_run *r, void (*progress)(const lg_run *, double, void *),
              void *arg)
{
    worker *ws = calloc((size_t)r->threads, sizeof *ws);
    if (!ws)
        return -1;
    uint64_t start = now_ns();
    int started = 0, rc = 0;
    for (; started < r->threads; started++) {
        __atomic_fetch_add(&r->running, 1, __ATOMIC_RELAXED);
        if (worker_init(&ws[started], r, started, start) != 0 ||
            pthread_create(&ws[started].thread, NULL, worker_main,
                           &ws[started]) != 0) {
            __atomic_fetch_sub(&r->running, 1, __ATOMIC_RELAXED);
            worker_destroy(&ws[started]);
            rc = -1;
            break;
        }
    }
    /* Progress until every worker passed its bounds. */
    for (;;) {
        struct timespec tick = {0, 100000000};
        nanosleep(&tick, NULL);
        double elapsed = (double)(now_ns() - start) / 1e9;
        bool is_over = __atomic_load_n(&r->running, __ATOMIC_ACQUIRE) == 0;
        if (progress)
            progress(r, elapsed, arg);
        if (is_over || rc)
            break;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(ws[i].thread, NULL);
        lg_hist_merge(&r->hist, &ws[i].hist);
        for (int s = 0; s <= LG_STATUS_MAX; s++)
            r->status[s] += ws[i].status[s];
        worker_destroy(&ws[i]);
    }
    r->elapsed_s = (double)(now_ns() - start) / 1e9;
    if (r->count == 0 && r->elapsed_s > r->seconds)
        r->elapsed_s = r->seconds;
    free(ws);
    return rc;
}
