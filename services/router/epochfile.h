/*
 * epochfile.h - the ring epoch kept across router restarts.
 *
 * Every ring a router ever published must have a larger epoch than the
 * rings before it: gateways and cache nodes ignore a ring whose epoch is
 * not newer than theirs, and a reused epoch with another membership would
 * let two nodes believe they own one user. So a restart with the same
 * membership keeps the stored epoch, any other membership takes the
 * stored epoch + 1, and the decision is on disk before the ring is
 * served.
 */
#ifndef ROUTER_EPOCHFILE_H
#define ROUTER_EPOCHFILE_H

#include <stddef.h>
#include <stdint.h>

/* Decides the epoch for membership and persists it in path, a file
 * holding "<epoch> <membership>\n" written atomically (temporary file,
 * fsync, rename, fsync of the directory). No file: epoch 1. path NULL:
 * no persistence, epoch 1. Returns 0 and sets *epoch, or -1 with the
 * reason in errbuf when the file cannot be read, does not parse, or the
 * new one cannot be written: the router must then refuse to start rather
 * than risk publishing an old epoch again. */
int epochfile_resolve(const char *path, const char *membership, int64_t *epoch,
                      char *errbuf, size_t errcap);

#endif
