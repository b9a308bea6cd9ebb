/*
 * ticker.h - a background thread that calls a function at a fixed
 * interval until stopped: ring refreshes, heartbeats, the router's
 * coordinator. Stopping wakes the thread at once instead of waiting out
 * the interval, so shutdown is quick.
 */
#ifndef MSG_TICKER_H
#define MSG_TICKER_H

typedef struct ticker ticker;

typedef void (*ticker_fn)(void *arg);

/* Starts a thread that calls fn(arg) at once, then every interval_ms
 * (measured from the end of one call to the start of the next). NULL if
 * the thread cannot start. */
ticker *ticker_start(int interval_ms, ticker_fn fn, void *arg);

/* Makes the thread call fn(arg) now instead of at the end of the
 * interval; during a call, once more right after it. Never blocks on the
 * call. Thread safe; NULL is a no-op. */
void ticker_poke(ticker *t);
/* Wakes the thread, waits for a call in progress to return, joins and
 * frees. NULL is a no-op. */
void ticker_stop(ticker *t);

#endif
