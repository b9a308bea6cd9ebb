/*
 * curl_loop.c - a libcurl multi handle on its socket interface. See
 * curl_loop.h.
 *
 * The epoll set holds the transfers' sockets (added, changed and removed
 * as on_socket is told), an eventfd for cl_loop_wake and, while a wait
 * asks for it, the caller's fd. Each entry carries its fd, so an event
 * names what is ready.
 */
#include "curl_loop.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clockms.h"

/* Readiness events taken per wait; more wait for the next one. */
#define CL_EVENTS_MAX 64

struct cl_loop {
    CURLM *multi;
    int ep;
    int wake_fd;
    int watched_fd;      /* the caller's fd in ep; -1: none */
    int64_t timer_at_ms; /* libcurl's next timeout (monotonic); -1: none */
};

/* CURLMOPT_SOCKETFUNCTION. socketp marks a socket already in the set. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
    (void)easy;
    cl_loop *l = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(l->multi, s, NULL);
        return 0;
    }
    struct epoll_event ev = {
        .events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                  ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
        .data.fd = s,
    };
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->ep, op, s, &ev) != 0) {
        /* A socket number reused after a close, or one whose removal
         * never reached us: the other operation fits. */
        op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(l->ep, op, s, &ev) != 0)
            return -1;
    }
    if (socketp == NULL)
        curl_multi_assign(l->multi, s, l);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer. libcurl forbids running
 * transfers from here; cl_loop_run_due does. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    cl_loop *l = userp;
    l->timer_at_ms =
        timeout_ms < 0 ? -1 : clockms_monotonic() + (int64_t)timeout_ms;
    return 0;
}

cl_loop *cl_loop_new(CURLM *multi)
{
    if (multi == NULL)
        return NULL;
    cl_loop *l = malloc(sizeof(*l));
    if (l == NULL)
        return NULL;
    *l = (cl_loop){.multi = multi,
                   .ep = epoll_create1(EPOLL_CLOEXEC),
                   .wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                   .watched_fd = -1,
                   .timer_at_ms = -1};
    struct epoll_event wake = {.events = EPOLLIN, .data.fd = l->wake_fd};
    if (l->ep < 0 || l->wake_fd < 0 ||
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake_fd, &wake) != 0 ||
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket) !=
            CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer) !=
            CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, l) != CURLM_OK) {
        cl_loop_free(l);
        return NULL;
    }
    return l;
}

void cl_loop_free(cl_loop *l)
{
    if (l == NULL)
        return;
    if (l->ep >= 0)
        close(l->ep);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    free(l);
}

void cl_loop_run_due(cl_loop *l)
{
    if (l->timer_at_ms < 0 || l->timer_at_ms > clockms_monotonic())
        return;
    /* Cleared first: running may set the next timeout. */
    l->timer_at_ms = -1;
    int running = 0;
    curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* Puts the caller's fd in the set, in place of the one before. */
static void watch(cl_loop *l, int fd)
{
    if (fd == l->watched_fd)
        return;
    if (l->watched_fd >= 0)
        epoll_ctl(l->ep, EPOLL_CTL_DEL, l->watched_fd, NULL);
    l->watched_fd = -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd >= 0 && epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) == 0)
        l->watched_fd = fd;
}

static int wait_ms(const cl_loop *l, int timeout_ms)
{
    if (l->timer_at_ms < 0)
        return timeout_ms;
    int64_t left = l->timer_at_ms - clockms_monotonic();
    if (left < 0)
        left = 0;
    return left < timeout_ms ? (int)left : timeout_ms;
}

static int csel_mask(uint32_t events)
{
    int mask = 0;
    if (events & (EPOLLIN | EPOLLHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    return mask;
}

void cl_loop_wait(cl_loop *l, int fd, int timeout_ms)
{
    watch(l, fd);
    struct epoll_event ev[CL_EVENTS_MAX];
    int n = epoll_wait(l->ep, ev, CL_EVENTS_MAX, wait_ms(l, timeout_ms));
    for (int i = 0; i < n; i++) {
        int s = ev[i].data.fd;
        if (s == l->wake_fd) {
            uint64_t count;
            if (read(l->wake_fd, &count, sizeof(count)) < 0) {
                /* EAGAIN: nothing left to drain. */
            }
        } else if (s != l->watched_fd) {
            int running = 0;
            curl_multi_socket_action(l->multi, s, csel_mask(ev[i].events),
                                     &running);
        }
    }
    cl_loop_run_due(l);
}

void cl_loop_wake(cl_loop *l)
{
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is full, so a wake-up is pending anyway. */
    }
}
