/*
 * clockms.h - the two clocks the services read, in milliseconds.
 *
 * Durations, leases and timeouts use the monotonic clock (immune to wall
 * clock steps). pthread_cond_timedwait wants an absolute CLOCK_REALTIME
 * time: clockms_deadline_in makes one.
 */
#ifndef MSG_CLOCKMS_H
#define MSG_CLOCKMS_H

#include <stdint.h>
#include <time.h>

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t clockms_monotonic(void);

/* Seconds of CLOCK_MONOTONIC since start (taken with clock_gettime on
 * that clock), for latency histograms. */
double clockms_seconds_since(const struct timespec *start);

/* The CLOCK_REALTIME instant ms milliseconds from now, for
 * pthread_cond_timedwait. */
struct timespec clockms_deadline_in(int64_t ms);

/* The same on CLOCK_MONOTONIC, for a condition variable set to that
 * clock (pthread_condattr_setclock) or a wait that a wall clock step
 * must not stretch. */
struct timespec clockms_monotonic_deadline_in(int64_t ms);

#endif
