/* Socket helpers for the socket transports: bounded connect, read, write. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "host/transport.h"

long long ea_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int wait_fd(int fd, short ev, long long deadline)
{
    for (;;) {
        long long left = deadline - ea_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = ev };
        int r = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Non-blocking connect with a deadline, then back to blocking I/O (all
 * later reads and writes go through poll with their own deadlines). */
static int connect_deadline(int fd, const struct sockaddr *a, socklen_t al, int timeout_ms, char *err,
                            size_t errlen, const char *what)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int r = connect(fd, a, al);
    if (r != 0 && errno == EINPROGRESS) {
        int w = wait_fd(fd, POLLOUT, ea_now_ms() + timeout_ms);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (w <= 0) {
            snprintf(err, errlen, "%s: connection timed out", what);
            return -1;
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) {
            snprintf(err, errlen, "%s: %s", what, strerror(soerr));
            return -1;
        }
    } else if (r != 0) {
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
        return -1;
    }
    fcntl(fd, F_SETFL, fl);
    return 0;
}

int ea_sock_connect_tcp(const char *hostport, int timeout_ms, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL, *p;
    int fd = -1;

    if (hostport[0] == '[') { /* [v6]:port */
        const char *end = strchr(hostport, ']');
        if (!end || end[1] != ':' || (size_t)(end - hostport - 1) >= sizeof host) {
            snprintf(err, errlen, "%s: expected [ADDRESS]:PORT", hostport);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(end - hostport - 1), hostport + 1);
        port = end + 2;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (!colon || (size_t)(colon - hostport) >= sizeof host || !colon[1]) {
            snprintf(err, errlen, "%s: expected HOST:PORT", hostport);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
        port = colon + 1;
    }
    int gr = getaddrinfo(host, port, &hints, &ai);
    if (gr != 0) {
        snprintf(err, errlen, "%s: %s", hostport, gai_strerror(gr));
        return -1;
    }
    for (p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
        if (fd < 0)
            continue;
        char what[300];
        snprintf(what, sizeof what, "tcp://%.280s", hostport);
        if (connect_deadline(fd, p->ai_addr, p->ai_addrlen, timeout_ms, err, errlen, what) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        /* One APDU per segment: Nagle would add 40 ms to every exchange. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int ea_sock_connect_unix(const char *path, int timeout_ms, char *err, size_t errlen)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path) {
        snprintf(err, errlen, "unix:%s: path too long", path);
        return -1;
    }
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "unix:%s: %s", path, strerror(errno));
        return -1;
    }
    char what[128];
    snprintf(what, sizeof what, "unix:%.100s", path);
    if (connect_deadline(fd, (struct sockaddr *)&a, sizeof a, timeout_ms, err, errlen, what) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

ea_err ea_sock_write_all(int fd, const void *buf, size_t n, long long deadline)
{
    const uint8_t *p = buf;
    while (n > 0) {
        /* Try first, wait only when the socket is full: a poll() before
         * every call would double the system calls of each exchange. */
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return EA_ERR_IO;
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w == 0)
                return EA_ERR_TIMEOUT;
            if (w < 0)
                return EA_ERR_IO;
            continue;
        }
        p += k;
        n -= (size_t)k;
    }
    return EA_OK;
}

/* An SE answers a local socket within tens of microseconds; sleeping in
 * poll() and being woken costs about as much again. */
#define SPIN_NS 40000L

static ea_err read_exact(int fd, void *buf, size_t n, long long deadline, bool spin)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
        if (k == 0)
            return EA_ERR_IO; /* peer closed */
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return EA_ERR_IO;
            struct pollfd pf = { .fd = fd, .events = POLLIN };
            if (spin && ea_spin_poll(&pf, 1, SPIN_NS) > 0)
                continue;
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 0)
                return EA_ERR_TIMEOUT;
            if (w < 0)
                return EA_ERR_IO;
            continue;
        }
        p += k;
        n -= (size_t)k;
    }
    return EA_OK;
}

ea_err ea_sock_read_exact(int fd, void *buf, size_t n, long long deadline)
{
    return read_exact(fd, buf, n, deadline, false);
}

ea_err ea_sock_read_exact_spin(int fd, void *buf, size_t n, long long deadline)
{
    return read_exact(fd, buf, n, deadline, true);
}
