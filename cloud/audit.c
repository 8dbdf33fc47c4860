/* JSON-line audit events (see audit.h). */
#include "cloud/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Room kept at the end of every line for ,"truncated":true}\n */
#define TAIL_RESERVE 24u

struct ea_audit {
    int fd;
    char *path;
};

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid.
 * Overlong forms, surrogates and code points above U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

bool ea_audit_json_string(char *out, size_t cap, size_t *len, const char *s, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strnlen(s, max), w = *len, i = 0;

#define PUT(ch)                \
    do {                       \
        if (w >= cap)          \
            return false;      \
        out[w++] = (char)(ch); \
    } while (0)

    PUT('"');
    while (i < n) {
        unsigned c = p[i];
        size_t u = utf8_len(p + i, n - i);

        if (u == 0) {
            /* Not UTF-8 (or cut by max): U+FFFD, one byte at a time. */
            const char *rep = "\\ufffd";
            for (const char *q = rep; *q; q++)
                PUT(*q);
            i++;
        } else if (u > 1) {
            for (size_t k = 0; k < u; k++)
                PUT(p[i + k]);
            i += u;
        } else if (c == '"' || c == '\\') {
            PUT('\\');
            PUT(c);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            PUT('\\');
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[c >> 4]);
            PUT(hex[c & 15]);
            i++;
        } else {
            PUT(c);
            i++;
        }
    }
    PUT('"');
#undef PUT
    *len = w;
    return true;
}

/* Append raw text, all or nothing, keeping TAIL_RESERVE free. */
static bool put_raw(ea_audit_line *l, const char *s)
{
    size_t n = strlen(s);
    if (n > sizeof l->buf - TAIL_RESERVE - l->len)
        return false;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static void put_key(ea_audit_line *l, const char *key, size_t *mark)
{
    *mark = l->len;
    if (!put_raw(l, ",") || !ea_audit_json_string(l->buf, sizeof l->buf - TAIL_RESERVE, &l->len, key, 64) ||
        !put_raw(l, ":")) {
        l->len = *mark;
        l->truncated = true;
        *mark = SIZE_MAX;
    }
}

void ea_audit_begin(ea_audit_line *l, const char *event)
{
    struct timespec ts;
    struct tm tm;
    char t[96];

    l->len = 0;
    l->truncated = false;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(t, sizeof t, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
    (void)put_raw(l, t);
    ea_audit_str(l, "event", event);
}

void ea_audit_str(ea_audit_line *l, const char *key, const char *value)
{
    size_t mark;

    put_key(l, key, &mark);
    if (mark == SIZE_MAX)
        return;
    if (value ? !ea_audit_json_string(l->buf, sizeof l->buf - TAIL_RESERVE, &l->len, value, EA_AUDIT_VALUE_MAX)
              : !put_raw(l, "null")) {
        l->len = mark;
        l->truncated = true;
    }
}

void ea_audit_int(ea_audit_line *l, const char *key, long long value)
{
    char num[24];
    size_t mark;

    put_key(l, key, &mark);
    if (mark == SIZE_MAX)
        return;
    snprintf(num, sizeof num, "%lld", value);
    if (!put_raw(l, num)) {
        l->len = mark;
        l->truncated = true;
    }
}

void ea_audit_bool(ea_audit_line *l, const char *key, bool value)
{
    size_t mark;

    put_key(l, key, &mark);
    if (mark != SIZE_MAX && !put_raw(l, value ? "true" : "false")) {
        l->len = mark;
        l->truncated = true;
    }
}

const char *ea_audit_end(ea_audit_line *l, size_t *len)
{
    /* Idempotent: an ended line ends in a newline. */
    if (l->len == 0 || l->buf[l->len - 1] != '\n') {
        const char *tail = l->truncated ? ",\"truncated\":true}\n" : "}\n";
        size_t n = strlen(tail);
        memcpy(l->buf + l->len, tail, n); /* TAIL_RESERVE guarantees the room, NUL included */
        l->len += n;
        l->buf[l->len] = '\0';
    }
    if (len)
        *len = l->len;
    return l->buf;
}

static int open_append(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
}

ea_err ea_audit_open(const char *path, ea_audit **out, char *err, size_t errlen)
{
    ea_audit *a;

    if (!path || !*path || !out)
        return EA_ERR_ARG;
    *out = NULL;
    if (!(a = calloc(1, sizeof *a)) || !(a->path = strdup(path))) {
        free(a);
        return EA_ERR_NO_MEMORY;
    }
    if ((a->fd = open_append(path)) < 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot open the audit file %s: %s", path, strerror(errno));
        free(a->path);
        free(a);
        return EA_ERR_IO;
    }
    *out = a;
    return EA_OK;
}

ea_err ea_audit_reopen(ea_audit *a)
{
    int fd;

    if (!a)
        return EA_ERR_ARG;
    if ((fd = open_append(a->path)) < 0)
        return EA_ERR_IO;
    close(a->fd);
    a->fd = fd;
    return EA_OK;
}

void ea_audit_close(ea_audit *a)
{
    if (!a)
        return;
    close(a->fd);
    free(a->path);
    free(a);
}

ea_err ea_audit_write(ea_audit *a, ea_audit_line *l)
{
    size_t n;
    const char *p = ea_audit_end(l, &n);
    ssize_t w;

    if (!a)
        return EA_OK;
    /* One write: O_APPEND makes it land whole at the end of the file even
     * with another process appending. A short write (disk full) is not
     * retried, because the rest would no longer be atomic. */
    do {
        w = write(a->fd, p, n);
    } while (w < 0 && errno == EINTR);
    return w == (ssize_t)n ? EA_OK : EA_ERR_IO;
}
