/* The T=1 over I2C transports: t1-tcp://HOST:PORT (I2C transactions over a
 * socket, wire format in common/t1.h) and i2c:/dev/i2c-N[@0xADDR] (Linux
 * i2c-dev). Both put the same engine (host/t1.c) on a different link. */
#include <errno.h>
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/t1.h"
#include "common/util.h"
#include "host/t1.h"
#include "host/transport.h"

#if defined(__GNUC__) || defined(__clang__)
#define EA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EA_PRINTF(a, b)
#endif

#define OPEN_TIMEOUT_MS 10000 /* connect + RESYNC + GET ATR (open() has no timeout argument) */
#define CLOSE_TIMEOUT_MS 500  /* End of APDU session on close: polite, best effort */
#define WAKE_UP_DELAY_MS 5    /* before the first frame after opening the bus (nano) */
#define I2C_DEFAULT_ADDR 0x48u
#define ADDR_MAX 160u

typedef struct t1_tr {
    ea_transport base;
    ea_t1_eng eng;
    int fd;
    bool i2c;
    unsigned addr;        /* i2c: 7-bit address */
    char where[ADDR_MAX]; /* "HOST:PORT" or the device path */
    char uri[ADDR_MAX + 16];
    uint8_t io[EA_T1_TCP_HDR + EA_T1_TCP_XFER_MAX];
} t1_tr;

static EA_PRINTF(3, 4) void set_err(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* ---- t1-tcp link: one message per I2C transaction ------------------------------ */

static ea_err tcp_answer(t1_tr *t, bool *nack, long long deadline)
{
    uint8_t a;
    ea_err rc = ea_sock_read_exact(t->fd, &a, 1, deadline);

    if (rc != EA_OK)
        return rc;
    if (a != EA_T1_TCP_ACK && a != EA_T1_TCP_NACK)
        return EA_ERR_IO; /* not a t1-tcp peer: the stream cannot be trusted */
    *nack = a == EA_T1_TCP_NACK;
    return EA_OK;
}

static ea_err tcp_write(void *ctx, const uint8_t *p, size_t n, bool *nack, long long deadline)
{
    t1_tr *t = ctx;
    ea_err rc;

    if (n > EA_T1_TCP_XFER_MAX)
        return EA_ERR_ARG;
    t->io[0] = EA_T1_TCP_WRITE;
    t->io[1] = (uint8_t)(n >> 8);
    t->io[2] = (uint8_t)n;
    memcpy(t->io + EA_T1_TCP_HDR, p, n);
    /* One send per transaction: with TCP_NODELAY a split header would cost
     * a round trip on some stacks. */
    rc = ea_sock_write_all(t->fd, t->io, EA_T1_TCP_HDR + n, deadline);
    ea_cleanse(t->io, EA_T1_TCP_HDR + n);
    return rc != EA_OK ? rc : tcp_answer(t, nack, deadline);
}

static ea_err tcp_read(void *ctx, uint8_t *p, size_t n, bool *nack, long long deadline)
{
    t1_tr *t = ctx;
    uint8_t h[EA_T1_TCP_HDR] = { EA_T1_TCP_READ, (uint8_t)(n >> 8), (uint8_t)n };
    ea_err rc;

    if (n == 0 || n > EA_T1_TCP_XFER_MAX)
        return EA_ERR_ARG;
    if ((rc = ea_sock_write_all(t->fd, h, sizeof h, deadline)) != EA_OK ||
        (rc = tcp_answer(t, nack, deadline)) != EA_OK || *nack)
        return rc;
    return ea_sock_read_exact(t->fd, p, n, deadline);
}

/* ---- i2c-dev link ------------------------------------------------------------------ */

/* How i2c-dev reports that the target did not acknowledge its address:
 * ENXIO (most adapters), EREMOTEIO (i.MX, Raspberry Pi), EIO (some SMBus
 * controllers). On the SE05x that means "busy / nothing to send". */
static bool i2c_is_nack(int e)
{
    return e == ENXIO || e == EREMOTEIO || e == EIO || e == EAGAIN;
}

static ea_err i2c_write(void *ctx, const uint8_t *p, size_t n, bool *nack, long long deadline)
{
    t1_tr *t = ctx;
    ssize_t w;

    if (ea_t1_now_ms() >= deadline)
        return EA_ERR_TIMEOUT;
    do
        w = write(t->fd, p, n);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n) {
        *nack = false;
        return EA_OK;
    }
    if (w < 0 && i2c_is_nack(errno)) {
        *nack = true;
        return EA_OK;
    }
    return EA_ERR_IO; /* short write or a bus error: the adapter is gone */
}

static ea_err i2c_read(void *ctx, uint8_t *p, size_t n, bool *nack, long long deadline)
{
    t1_tr *t = ctx;
    ssize_t r;

    if (ea_t1_now_ms() >= deadline)
        return EA_ERR_TIMEOUT;
    do
        r = read(t->fd, p, n);
    while (r < 0 && errno == EINTR);
    if (r == (ssize_t)n) {
        *nack = false;
        return EA_OK;
    }
    if (r < 0 && i2c_is_nack(errno)) {
        *nack = true;
        return EA_OK;
    }
    return EA_ERR_IO;
}

/* ---- transport ops ------------------------------------------------------------------ */

static void t1_close(ea_transport *base)
{
    t1_tr *t = (t1_tr *)base;
    char ignore[128];

    if (t->fd < 0)
        return;
    if (t->eng.open) /* let the SE reset its protocol context and power-save */
        ea_t1_end_session(&t->eng, ea_t1_now_ms() + CLOSE_TIMEOUT_MS, ignore, sizeof ignore);
    t->eng.open = false;
    ea_t1_wipe(&t->eng);
    close(t->fd);
    t->fd = -1;
}

static void t1_free(ea_transport *base)
{
    t1_close(base);
    ea_cleanse(base, sizeof(t1_tr));
    free(base);
}

static ea_err open_i2c(t1_tr *t, char *err, size_t errlen)
{
    t->fd = open(t->where, O_RDWR | O_CLOEXEC);
    if (t->fd < 0) {
        int e = errno;
        set_err(err, errlen, "%s: cannot open %s: %s%s", t->uri, t->where, strerror(e),
                e == ENOENT ? " (no such I2C bus; is the i2c-dev module loaded?)"
                : e == EACCES ? " (no permission; add the user to the i2c group)"
                              : "");
        return EA_ERR_IO;
    }
    /* I2C_SLAVE (not _FORCE): if a kernel driver has claimed the address we
     * must not talk over it. */
    if (ioctl(t->fd, I2C_SLAVE, (unsigned long)t->addr) < 0) {
        int e = errno;
        set_err(err, errlen, "%s: cannot address 0x%02X on %s: %s%s", t->uri, t->addr, t->where,
                strerror(e), e == EBUSY ? " (a kernel driver owns this address)" : "");
        close(t->fd);
        t->fd = -1;
        return EA_ERR_IO;
    }
    struct timespec ts = { 0, WAKE_UP_DELAY_MS * 1000000L };
    nanosleep(&ts, NULL);
    return EA_OK;
}

static ea_err t1_open(ea_transport *base, char *err, size_t errlen)
{
    t1_tr *t = (t1_tr *)base;
    long long deadline = ea_t1_now_ms() + OPEN_TIMEOUT_MS;
    char why[200] = "";
    ea_err rc;

    t1_close(base);
    if (t->i2c) {
        if ((rc = open_i2c(t, err, errlen)) != EA_OK)
            return rc;
    } else {
        char cerr[200] = "";
        t->fd = ea_sock_connect_tcp(t->where, OPEN_TIMEOUT_MS, cerr, sizeof cerr);
        if (t->fd < 0) {
            set_err(err, errlen, "t1-tcp://%s", cerr);
            return EA_ERR_IO;
        }
    }
    rc = ea_t1_open(&t->eng, deadline, why, sizeof why);
    if (rc != EA_OK) {
        set_err(err, errlen, "%s: no T=1 answer from the SE: %s", t->uri, why);
        t->eng.open = false; /* nothing to end */
        close(t->fd);
        t->fd = -1;
        return rc == EA_ERR_TIMEOUT ? rc : EA_ERR_IO;
    }
    return EA_OK;
}

static ea_err t1_xfer(ea_transport *base, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                      size_t *rlen, int timeout_ms, char *err, size_t errlen)
{
    t1_tr *t = (t1_tr *)base;
    char why[200] = "";
    ea_err rc;

    if (t->fd < 0 || !t->eng.open) {
        set_err(err, errlen, "%s: not connected", t->uri);
        return EA_ERR_IO;
    }
    rc = ea_t1_transceive(&t->eng, capdu, clen, rapdu, rlen, ea_t1_now_ms() + timeout_ms, why,
                          sizeof why);
    if (rc == EA_OK && *rlen < 2) {
        set_err(err, errlen, "%s: R-APDU of %zu bytes has no status word", t->uri, *rlen);
        return EA_ERR_MALFORMED;
    }
    if (rc != EA_OK)
        set_err(err, errlen, "%s: %s", t->uri, why);
    return rc;
}

static const ea_transport_ops t1_tcp_ops = { "t1-tcp", t1_open, t1_xfer, t1_close, t1_free };
static const ea_transport_ops t1_i2c_ops = { "t1-i2c", t1_open, t1_xfer, t1_close, t1_free };

static t1_tr *t1_alloc(const ea_transport_ops *ops, bool i2c)
{
    t1_tr *t = calloc(1, sizeof *t);
    ea_t1_link link;

    if (t == NULL)
        return NULL;
    t->base.ops = ops;
    t->fd = -1;
    t->i2c = i2c;
    link.ctx = t;
    link.write = i2c ? i2c_write : tcp_write;
    link.read = i2c ? i2c_read : tcp_read;
    ea_t1_init(&t->eng, &link, NULL);
    return t;
}

/* see transport.h */
ea_err ea_tr_t1_tcp_new(const char *hostport, ea_transport **out, char *err, size_t errlen)
{
    t1_tr *t;

    if (out != NULL)
        *out = NULL;
    if (hostport == NULL || out == NULL)
        return EA_ERR_ARG;
    if (*hostport == '\0' || strchr(hostport, ':') == NULL || strlen(hostport) >= ADDR_MAX) {
        set_err(err, errlen, "t1-tcp://%.*s: expected t1-tcp://HOST:PORT", (int)ADDR_MAX,
                hostport);
        return EA_ERR_ARG;
    }
    if ((t = t1_alloc(&t1_tcp_ops, false)) == NULL)
        return EA_ERR_NO_MEMORY;
    memcpy(t->where, hostport, strlen(hostport) + 1);
    snprintf(t->uri, sizeof t->uri, "t1-tcp://%s", t->where);
    *out = &t->base;
    return EA_OK;
}

/* "/dev/i2c-N[@ADDR]": ADDR in C notation (0x48, 72), 7-bit, 0x08..0x77. */
static ea_err parse_i2c_spec(const char *spec, char *dev, size_t devcap, unsigned *addr,
                             char *err, size_t errlen)
{
    const char *at = strrchr(spec, '@');
    size_t dl = at != NULL ? (size_t)(at - spec) : strlen(spec);

    *addr = I2C_DEFAULT_ADDR;
    if (dl == 0 || dl >= devcap) {
        set_err(err, errlen, "i2c:%.*s: expected i2c:/dev/i2c-N[@0xADDR]", (int)ADDR_MAX, spec);
        return EA_ERR_ARG;
    }
    memcpy(dev, spec, dl);
    dev[dl] = '\0';
    if (at != NULL) {
        char *end = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(at + 1, &end, 0);
        if (at[1] == '\0' || at[1] == '-' || errno != 0 || *end != '\0' || v < 0x08 || v > 0x77) {
            set_err(err, errlen,
                    "i2c:%.*s: bad address '%.*s' (a 7-bit address 0x08..0x77, e.g. @0x48)",
                    (int)ADDR_MAX, spec, 16, at + 1);
            return EA_ERR_ARG;
        }
        *addr = (unsigned)v;
    }
    return EA_OK;
}

/* see transport.h */
ea_err ea_tr_t1_i2c_new(const char *spec, ea_transport **out, char *err, size_t errlen)
{
    char dev[ADDR_MAX];
    unsigned addr = I2C_DEFAULT_ADDR;
    t1_tr *t;
    ea_err rc;

    if (out != NULL)
        *out = NULL;
    if (spec == NULL || out == NULL)
        return EA_ERR_ARG;
    if ((rc = parse_i2c_spec(spec, dev, sizeof dev, &addr, err, errlen)) != EA_OK)
        return rc;
    if ((t = t1_alloc(&t1_i2c_ops, true)) == NULL)
        return EA_ERR_NO_MEMORY;
    memcpy(t->where, dev, strlen(dev) + 1);
    t->addr = addr;
    snprintf(t->uri, sizeof t->uri, "i2c:%s@0x%02X", t->where, t->addr);
    *out = &t->base;
    return EA_OK;
}
