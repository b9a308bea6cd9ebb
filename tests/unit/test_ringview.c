/*
 * test_ringview.c - Check suite for common/ringview.c: a changed callback
 * can wait for the calls still holding an older ring.
 *
 * A cache node's clean-up after a ring change scans Redis for users it
 * lost; a call that passed its epoch check under the older ring may still
 * write such a user's keys, so the clean-up first waits until no older
 * ring is referenced (ringview_wait_retired), for a bounded time. A fake
 * router on loopback serves the ring of the epoch the test sets.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clockms.h"
#include "http_server.h"
#include "log.h"
#include "ringview.h"

static atomic_int router_epoch = 1;

static void h_ring(hs_request *req, hs_reply *rep)
{
    (void)req;
    ring_node node;
    memset(&node, 0, sizeof node);
    snprintf(node.name, sizeof node.name, "cache-1");
    snprintf(node.url, sizeof node.url, "http://127.0.0.1:1");
    ring_t *r = ring_new(atomic_load(&router_epoch), 8, &node, 1);
    char *json = r ? ring_to_json(r) : NULL;
    if (json)
        hs_reply_raw(rep, 200, "application/json", json, strlen(json));
    else
        hs_reply_problem(rep, 500, NULL, "no ring");
    free(json);
    ring_free(r);
}

static const hs_route routes[] = {{"GET", "/internal/ring", h_ring, "ring"}};

/* What the changed callback saw: the wait's outcome and when it ended. */
typedef struct seen {
    ringview *v;
    int timeout_ms;
    int calls;
    int waited_rc;
    int64_t waited_until_ms;
} seen;

static void on_changed(void *arg, const ring_t *old, const ring_t *now)
{
    (void)now;
    seen *s = arg;
    s->calls++;
    if (!old)
        return;
    s->waited_rc = ringview_wait_retired(s->v, old, s->timeout_ms);
    s->waited_until_ms = clockms_monotonic();
}

static void *refresh_main(void *arg)
{
    ringview_refresh(arg);
    return NULL;
}

typedef struct fixture {
    hs_server *srv;
    hc_pool *pool;
    ringview *v;
    seen s;
} fixture;

static void fixture_start(fixture *f, int timeout_ms)
{
    log_init("test");
    atomic_store(&router_epoch, 1);
    hs_config cfg = {.service = "test",
                     .bind = "127.0.0.1",
                     .port = 0,
                     .routes = routes,
                     .nroutes = 1};
    f->srv = hs_start(&cfg);
    ck_assert_ptr_nonnull(f->srv);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", hs_port(f->srv));
    f->pool = hc_pool_new(2, 2000);
    ck_assert_ptr_nonnull(f->pool);
    f->s = (seen){.timeout_ms = timeout_ms, .waited_rc = 99};
    f->v = ringview_new(url, f->pool, NULL, on_changed, &f->s);
    ck_assert_ptr_nonnull(f->v);
    f->s.v = f->v;
    ck_assert_int_eq(ringview_refresh(f->v), 0);
    ck_assert_int_eq(f->s.calls, 1);
}

static void fixture_stop(fixture *f)
{
    ringview_free(f->v);
    hc_pool_free(f->pool);
    hs_stop(f->srv, 2000);
}

START_TEST(test_the_clean_up_waits_for_calls_under_the_older_ring)
{
    fixture f;
    fixture_start(&f, 5000);
    const ring_t *held = ringview_acquire(f.v); /* a call under epoch 1 */
    ck_assert_ptr_nonnull(held);
    atomic_store(&router_epoch, 2);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, refresh_main, f.v), 0);
    usleep(300 * 1000);
    /* The new ring is in force meanwhile; the callback still waits. */
    const ring_t *cur = ringview_acquire(f.v);
    ck_assert_int_eq(cur->epoch, 2);
    ringview_release(f.v, cur);
    ck_assert_int_eq(f.s.waited_rc, 99);
    int64_t released_ms = clockms_monotonic();
    ringview_release(f.v, held);
    pthread_join(t, NULL);
    ck_assert_int_eq(f.s.calls, 2);
    ck_assert_int_eq(f.s.waited_rc, 0);
    ck_assert_int_ge(f.s.waited_until_ms, released_ms);
    fixture_stop(&f);
}
END_TEST

START_TEST(test_the_wait_ends_at_its_bound)
{
    fixture f;
    fixture_start(&f, 200);
    const ring_t *held = ringview_acquire(f.v);
    ck_assert(ringview_is_current(f.v, held));
    atomic_store(&router_epoch, 2);
    int64_t t0 = clockms_monotonic();
    ck_assert_int_eq(ringview_refresh(f.v), 0);
    int64_t took = clockms_monotonic() - t0;
    ck_assert_int_eq(f.s.waited_rc, -1);
    ck_assert_int_ge(took, 200);
    /* What a call that outlasted the wait checks when it ends. */
    ck_assert(!ringview_is_current(f.v, held));
    const ring_t *cur = ringview_acquire(f.v);
    ck_assert(ringview_is_current(f.v, cur));
    ringview_release(f.v, cur);
    ringview_release(f.v, held);
    fixture_stop(&f);
}
END_TEST

START_TEST(test_nothing_held_means_no_wait)
{
    fixture f;
    fixture_start(&f, 5000);
    atomic_store(&router_epoch, 2);
    int64_t t0 = clockms_monotonic();
    ck_assert_int_eq(ringview_refresh(f.v), 0);
    ck_assert_int_eq(f.s.waited_rc, 0);
    ck_assert_int_lt(clockms_monotonic() - t0, 2000);
    fixture_stop(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ringview");
    TCase *tc = tcase_create("retired rings");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_the_clean_up_waits_for_calls_under_the_older_ring);
    tcase_add_test(tc, test_the_wait_ends_at_its_bound);
    tcase_add_test(tc, test_nothing_held_means_no_wait);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
