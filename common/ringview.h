/*
 * ringview.h - a service's cached copy of the ring published by the
 * router.
 *
 * Gateways and cache nodes both hold one. The current ring is swapped
 * atomically under a mutex when a newer epoch arrives; readers acquire a
 * reference and release it when their request is done, so a ring is freed
 * only when it is neither current nor in use. A background thread
 * refreshes every interval; ringview_refresh fetches now (callers use it
 * when a peer reports a newer epoch). Thread safe.
 */
#ifndef MSG_RINGVIEW_H
#define MSG_RINGVIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "http_client.h"
#include "metrics.h"
#include "ring.h"

typedef struct ringview ringview;

/* Called (from the refreshing thread) after the current ring changed to a
 * newer epoch; old may be NULL on the first fetch. Both rings stay valid
 * for the duration of the call. */
typedef void (*ringview_changed_fn)(void *arg, const ring_t *old,
                                    const ring_t *now);

/* Called (from the refreshing thread) with a newer ring right before it
 * becomes current, while no other install can run: whatever must be
 * true before any caller sees that ring is done here. */
typedef void (*ringview_coming_fn)(void *arg, const ring_t *next);

/* router_url is one base URL or a comma-separated list of them (every
 * router instance; urllist.h), copied; each refresh asks all of them and
 * keeps the newest epoch. NULL if the list does not parse (logged) or on
 * allocation failure. pool and metrics are borrowed and must outlive
 * the view. NULL on allocation failure. */
ringview *ringview_new(const char *router_url, hc_pool *pool,
                       metrics_t *metrics, ringview_changed_fn changed,
                       void *arg);
/* Sets the hook run before each install (the changed callback's arg
 * is passed). Call before the first refresh. */
void ringview_on_coming(ringview *v, ringview_coming_fn coming);

/* Stops the refresh thread and frees every ring. No reference may be
 * held any more. NULL is a no-op. */
void ringview_free(ringview *v);

/* Starts the background refresh every interval_ms. Returns 0 or -1. */
int ringview_start(ringview *v, int interval_ms);

/* Fetches the ring from the router now; concurrent callers share one
 * fetch. Returns 0 if a ring is held afterwards (new or not), -1 if none
 * is. */
int ringview_refresh(ringview *v);
/* Asks the background thread (ringview_start) to fetch now, without
 * waiting for it: for callers that must not block. */
void ringview_poke(ringview *v);

/* The current ring with a reference held, or NULL when none was ever
 * fetched. Every non-NULL result must be given to ringview_release. */
const ring_t *ringview_acquire(ringview *v);
void ringview_release(ringview *v, const ring_t *r);
/* Whether r, which the caller holds, is still the current ring. */
bool ringview_is_current(ringview *v, const ring_t *r);

/* Waits until no ring older than the current one is referenced any
 * more, but held, which the caller holds once (the changed callback's
 * old ring; NULL: none): every call that acquired an older ring released
 * it. At most timeout_ms: a call holding an older ring may itself wait
 * for the refreshing thread. Returns 0 when drained, -1 at the timeout. */
int ringview_wait_retired(ringview *v, const ring_t *held, int timeout_ms);

/* True when a ring is held and the router answered within max_age_ms. */
bool ringview_is_fresh(ringview *v, int64_t max_age_ms);

#endif
