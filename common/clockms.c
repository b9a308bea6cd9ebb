/*
 * clockms.c - millisecond clocks. See clockms.h.
 */
#include "clockms.h"

int64_t clockms_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double clockms_seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) +
           (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* A deadline ms from now; one in the past is now. (A negative ms would
 * otherwise leave tv_nsec negative, which pthread_cond_timedwait refuses
 * with EINVAL instead of timing out.) */
static struct timespec deadline_on(clockid_t clock, int64_t ms)
{
    struct timespec t;
    clock_gettime(clock, &t);
    if (ms < 0)
        ms = 0;
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

struct timespec clockms_deadline_in(int64_t ms)
{
    return deadline_on(CLOCK_REALTIME, ms);
}

struct timespec clockms_monotonic_deadline_in(int64_t ms)
{
    return deadline_on(CLOCK_MONOTONIC, ms);
}
