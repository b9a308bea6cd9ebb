/*
 * curl_loop.h - a libcurl multi handle run on its socket interface over
 * an epoll set of its own.
 *
 * curl_multi_perform visits every transfer of the handle on each call,
 * and curl_multi_poll polls every transfer's socket on each wait, so the
 * cost of one event grows with the transfers in flight: a gateway
 * relaying thousands of long polls, or dozens of slow calls, pays it on
 * every answer. Here libcurl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when its next timeout is due
 * (CURLMOPT_TIMERFUNCTION), and a wait runs only the transfers whose
 * socket became ready or whose timer is due.
 *
 * One thread runs a loop: cl_loop_run_due and cl_loop_wait are for that
 * thread only; cl_loop_wake is for any thread.
 */
#ifndef MSG_CURL_LOOP_H
#define MSG_CURL_LOOP_H

#include <curl/curl.h>

typedef struct cl_loop cl_loop;

/* Takes over multi's socket and timer callbacks. multi is borrowed: call
 * curl_multi_cleanup before cl_loop_free, since cleaning up still tells
 * the loop which sockets to forget. NULL on failure. */
cl_loop *cl_loop_new(CURLM *multi);
void cl_loop_free(cl_loop *l);

/* Runs the transfers whose timer is due; a transfer just added with
 * curl_multi_add_handle is due at once. */
void cl_loop_run_due(cl_loop *l);

/* Waits up to timeout_ms (never past libcurl's next timeout) for a
 * transfer's socket, for fd to be readable (-1: none; the caller looks at
 * it after the wait) or for cl_loop_wake, then runs the transfers that
 * became ready or due. Finished transfers are left for
 * curl_multi_info_read. */
void cl_loop_wait(cl_loop *l, int fd, int timeout_ms);

/* Ends the current or the next wait; thread safe. */
void cl_loop_wake(cl_loop *l);

#endif
