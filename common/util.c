#define _POSIX_C_SOURCE 200809L
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

void ea_cleanse(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ea_err ea_hex_decode(const char *hex, uint8_t *out, size_t *out_len)
{
    size_t n = 0;
    int hi = -1;

    if (!hex || !out_len)
        return EA_ERR_ARG;
    for (const char *p = hex; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':')
            continue;
        int v = hexval(*p);
        if (v < 0)
            return EA_ERR_MALFORMED;
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (n >= *out_len)
            return EA_ERR_BUF_TOO_SMALL;
        out[n++] = (uint8_t)((hi << 4) | v);
        hi = -1;
    }
    if (hi >= 0)
        return EA_ERR_MALFORMED;
    *out_len = n;
    return EA_OK;
}

void ea_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

ea_err ea_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
    ea_err rc = EA_ERR_IO;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            if (ncap > max + 1)
                ncap = max + 1;
            if (ncap <= len) {
                rc = EA_ERR_FULL; /* larger than max */
                goto out;
            }
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = EA_ERR_NO_MEMORY;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            rc = EA_ERR_FULL;
            goto out;
        }
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = EA_OK;
out:
    if (buf) {
        ea_cleanse(buf, cap);
        free(buf);
    }
    close(fd);
    return rc;
}

ea_err ea_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return EA_ERR_IO;
    int r = fsync(fd);
    close(fd);
    return r == 0 ? EA_OK : EA_ERR_IO;
}

static void dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
    } else if (slash == path) {
        snprintf(dir, cap, "/");
    } else {
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    }
}

ea_err ea_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    const uint8_t *p = data;
    int fd;

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return EA_ERR_ARG;
    dir_of(path, dir, sizeof dir);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return EA_ERR_IO;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    return ea_fsync_dir(dir);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return EA_ERR_IO;
}

ea_err ea_mkdir_p(const char *path, unsigned mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof buf)
        return EA_ERR_ARG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
                return EA_ERR_IO;
            buf[i] = c;
        }
    }
    return EA_OK;
}

void ea_seterr(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    if (!err || !n)
        return;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

int ea_spin_poll(struct pollfd *fds, unsigned long n, long ns)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int r = poll(fds, (nfds_t)n, 0);
        if (r != 0)
            return r;
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > ns)
            return 0;
    }
}
