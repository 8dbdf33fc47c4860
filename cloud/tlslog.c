/* TLS refusals, read back from the broker's own log.
 *
 * A handshake that Mosquitto's TLS layer refuses (certificate from an
 * unknown CA, expired, not yet valid, outside the name constraints, wrong
 * EKU, no certificate at all) never reaches a plugin callback with a
 * certificate: Mosquitto 2.0.11 offers no TLS hook, and its verify callback
 * only returns OpenSSL's verdict. What it does do, in this order and inside
 * one event-loop step, is log "OpenSSL Error[0]: ..." and then disconnect
 * the context, which fires MOSQ_EVT_DISCONNECT for a client that has no id
 * and no certificate. So acl.c's disconnect handler asks us, right then,
 * whether the log just gained OpenSSL errors, and turns them into the
 * connection's audit event with the peer address the broker still knows.
 *
 * The reason is coarse ("tls_verify_failed"): OpenSSL records which check
 * failed in the SSL object, but Mosquitto logs only the error queue, which
 * says "certificate verify failed" for all of them. docs/CLOUD.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/cloud_int.h"

#define READ_CHUNK 16384
#define READ_MAX_PER_POLL (4 * 1024 * 1024) /* do not stall the broker on a huge backlog */

static void open_log(cloud_tlslog *l, bool at_end);

void cloud_tlslog_init(cloud_tlslog *l, const char *path)
{
    memset(l, 0, sizeof *l);
    l->fd = -1;
    if (path && (l->path = strdup(path)))
        open_log(l, true); /* what is in the log already is not ours */
}

void cloud_tlslog_free(cloud_tlslog *l)
{
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    memset(l, 0, sizeof *l);
    l->fd = -1;
}

/* Open the log, reading from its end or (a log created later) its start. */
static void open_log(cloud_tlslog *l, bool at_end)
{
    struct stat st;
    int fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return;
    }
    l->fd = fd;
    l->ino = st.st_ino;
    l->off = at_end ? st.st_size : 0;
    l->part_len = 0;
    l->part_skip = false;
}

static void add_error(cloud_tlslog *l, const char *text)
{
    size_t n = strlen(l->errors);
    if (n && n + 2 < sizeof l->errors) {
        memcpy(l->errors + n, "; ", 2);
        n += 2;
    }
    snprintf(l->errors + n, sizeof l->errors - n, "%s", text);
    l->pending = true;
}

static void on_line(cloud_tlslog *l, char *line)
{
    char *p;

    if ((p = strstr(line, "OpenSSL Error["))) {
        /* "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed" */
        char *msg = strstr(p, "]: ");
        add_error(l, msg ? msg + 3 : p);
    } else if ((p = strstr(line, "Client connection from ")) && strstr(p, " failed: ")) {
        /* Only when SSL_accept fails at once: "Client connection from A failed: ERR." */
        char *addr = p + strlen("Client connection from ");
        char *end = strstr(addr, " failed: ");
        size_t n = (size_t)(end - addr);
        if (n < sizeof l->from) {
            memcpy(l->from, addr, n);
            l->from[n] = '\0';
        }
        add_error(l, end + strlen(" failed: "));
    }
}

void cloud_tlslog_poll(cloud_tlslog *l)
{
    char buf[READ_CHUNK];
    struct stat st;
    size_t total = 0;

    if (!l->path)
        return;
    if (l->fd < 0) {
        open_log(l, false);
        if (l->fd < 0)
            return;
    }
    /* Rotated (new inode) or truncated: start over on the file now at the path. */
    if (stat(l->path, &st) == 0 && (st.st_ino != l->ino || st.st_size < l->off)) {
        close(l->fd);
        l->fd = -1;
        open_log(l, false);
        if (l->fd < 0)
            return;
    }
    while (total < READ_MAX_PER_POLL) {
        ssize_t n = pread(l->fd, buf, sizeof buf, l->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        l->off += n;
        total += (size_t)n;
        for (ssize_t i = 0; i < n; i++) {
            char c = buf[i];
            if (c == '\n') {
                if (!l->part_skip) {
                    l->part[l->part_len] = '\0';
                    on_line(l, l->part);
                }
                l->part_len = 0;
                l->part_skip = false;
            } else if (l->part_len + 1 < sizeof l->part) {
                l->part[l->part_len++] = c;
            } else {
                l->part_skip = true; /* far longer than anything we look for */
            }
        }
    }
}

bool cloud_tlslog_take(cloud_tlslog *l, const char **reason, char *detail, size_t detail_len, char *from,
                       size_t from_len)
{
    if (!l->pending)
        return false;
    if (strstr(l->errors, "certificate verify failed"))
        *reason = "tls_verify_failed";
    else if (strstr(l->errors, "did not return a certificate"))
        *reason = "no_certificate";
    else if (strstr(l->errors, "unexpected eof"))
        *reason = "tls_aborted"; /* the client hung up during the handshake */
    else
        *reason = "tls_error";
    snprintf(detail, detail_len, "%s", l->errors);
    snprintf(from, from_len, "%s", l->from);
    l->errors[0] = '\0';
    l->from[0] = '\0';
    l->pending = false;
    return true;
}
