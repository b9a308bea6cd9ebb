/*
 * epochfile.c - reading and atomically replacing the router's epoch
 * file. See epochfile.h for why the epoch must never go back.
 */
#include "epochfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errbuf.h"
#include "membership.h"

/* The file holds the epoch (at most 19 digits), a space, the membership
 * and a newline. */
#define EPOCHFILE_MAX (MEMBERSHIP_STRING_MAX + 32)

/* Reads the whole file into buf (NUL terminated). Returns its length,
 * 0 with *absent set when there is no file, or -1. */
static ssize_t read_all(const char *path, char *buf, size_t cap, int *absent)
{
    *absent = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *absent = errno == ENOENT;
        return *absent ? 0 : -1;
    }
    size_t len = 0;
    /* Each pass reads at least one byte or ends: bounded by cap. */
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            buf[len] = '\0';
            return n < 0 ? -1 : (ssize_t)len;
        }
        len += (size_t)n;
    }
    close(fd);
    errno = EFBIG; /* larger than any file we write */
    return -1;
}

/* Parses "<epoch> <membership>\n". Returns 0 or -1. */
static int parse_stored(char *text, int64_t *epoch, const char **membership)
{
    char *end = NULL;
    if (text[0] < '1' || text[0] > '9')
        return -1;
    errno = 0;
    long long e = strtoll(text, &end, 10);
    if (errno != 0 || *end != ' ' || e < 1 || e == INT64_MAX)
        return -1;
    char *m = end + 1;
    char *nl = strchr(m, '\n');
    if (nl == NULL || nl[1] != '\0' || nl == m)
        return -1;
    *nl = '\0';
    *epoch = e;
    *membership = m;
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    size_t done = 0;
    /* Each pass writes at least one byte or fails: bounded by len. */
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* fsync of the directory holding path, so the rename survives a crash. */
static int sync_parent(const char *path)
{
    char copy[4096];
    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int store(const char *path, int64_t epoch, const char *membership,
                 char *errbuf, size_t errcap)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return errbuf_fail(errbuf, errcap, "%s: path too long", path);
    char line[EPOCHFILE_MAX];
    int len =
        snprintf(line, sizeof(line), "%lld %s\n", (long long)epoch, membership);
    if (len < 0 || len >= (int)sizeof(line))
        return errbuf_fail(errbuf, errcap, "membership too long to store");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return errbuf_fail(errbuf, errcap, "%s: %s", tmp, strerror(errno));
    int rc = write_all(fd, line, (size_t)len);
    rc = rc ? rc : fsync(fd);
    rc = close(fd) ? -1 : rc;
    if (rc || rename(tmp, path) || sync_parent(path)) {
        int saved = errno;
        unlink(tmp);
        return errbuf_fail(errbuf, errcap, "%s: %s", path, strerror(saved));
    }
    return 0;
}

int epochfile_resolve(const char *path, const char *membership, int64_t *epoch,
                      char *errbuf, size_t errcap)
{
    if (path == NULL || path[0] == '\0') {
        *epoch = 1;
        return 0;
    }
    char *text = malloc(EPOCHFILE_MAX);
    if (text == NULL)
        return errbuf_fail(errbuf, errcap, "out of memory");
    int absent;
    ssize_t len = read_all(path, text, EPOCHFILE_MAX, &absent);
    int64_t stored = 0;
    const char *stored_membership = NULL;
    int rc = 0;
    if (len < 0)
        rc = errbuf_fail(errbuf, errcap, "%s: cannot read (%s)", path,
                         strerror(errno));
    else if (!absent && parse_stored(text, &stored, &stored_membership))
        rc = errbuf_fail(errbuf, errcap,
                         "%s: not \"<epoch> <membership>\"; fix or remove it",
                         path);
    else if (!absent && strcmp(stored_membership, membership) == 0)
        *epoch = stored;
    else {
        *epoch = stored + 1; /* 1 when there was no file */
        rc = store(path, *epoch, membership, errbuf, errcap);
    }
    free(text);
    return rc;
}
