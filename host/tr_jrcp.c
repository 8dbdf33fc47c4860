/* JRCP_v1 client (spec §6.4): MTY NAD LNH LNL payload, both directions.
 * tcp://HOST:PORT and unix:PATH. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "host/transport.h"

#define MTY_WAIT_FOR_CARD 0x00u
#define MTY_APDU 0x01u
#define MTY_CLOSE 0x03u

typedef struct jrcp {
    ea_transport base;
    int fd;
    bool is_unix;
    char addr[256];
} jrcp;

static ea_err msg(jrcp *j, uint8_t type, const uint8_t *p, size_t n, uint8_t *out, size_t *out_n,
                  long long deadline)
{
    uint8_t m[4 + EA_HOST_APDU_MAX], h[4];
    ea_err rc;
    if (n > EA_HOST_APDU_MAX)
        return EA_ERR_ARG;
    /* Header and payload in one send: one segment, one wake-up of the peer. */
    m[0] = type, m[1] = 0, m[2] = (uint8_t)(n >> 8), m[3] = (uint8_t)n;
    if (n)
        memcpy(m + 4, p, n);
    rc = ea_sock_write_all(j->fd, m, 4 + n, deadline);
    ea_cleanse(m, 4 + n);
    if (rc != EA_OK || (rc = ea_sock_read_exact_spin(j->fd, h, 4, deadline)) != EA_OK)
        return rc;
    size_t len = ((size_t)h[2] << 8) | h[3];
    if (h[0] != type || h[1] != 0 || len > *out_n) {
        /* Drain what we can so the error is clean, then give up the link. */
        return EA_ERR_MALFORMED;
    }
    if ((rc = ea_sock_read_exact_spin(j->fd, out, len, deadline)) != EA_OK)
        return rc;
    *out_n = len;
    return EA_OK;
}

static ea_err j_open(ea_transport *t, char *err, size_t errlen)
{
    jrcp *j = (jrcp *)t;
    const int timeout = 5000;
    j->fd = j->is_unix ? ea_sock_connect_unix(j->addr, timeout, err, errlen)
                       : ea_sock_connect_tcp(j->addr, timeout, err, errlen);
    if (j->fd < 0)
        return EA_ERR_IO; /* err already names the address */
    /* WAIT_FOR_CARD with a 256 ms timeout, as Plug&Trust sends it: the
     * answer is the ATR, empty when there is no card. */
    static const uint8_t wait_card[4] = { 0x00, 0x00, 0x01, 0x00 };
    uint8_t atr[64];
    size_t n = sizeof atr;
    ea_err rc = msg(j, MTY_WAIT_FOR_CARD, wait_card, 4, atr, &n, ea_now_ms() + timeout);
    if (rc == EA_OK && n == 0)
        rc = EA_ERR_NOT_FOUND;
    if (rc != EA_OK) {
        snprintf(err, errlen, "%s%s: %s", j->is_unix ? "unix:" : "tcp://", j->addr,
                 rc == EA_ERR_NOT_FOUND ? "no card behind this JRCP_v1 server" : "no JRCP_v1 answer");
        close(j->fd);
        j->fd = -1;
    }
    return rc;
}

static ea_err j_xfer(ea_transport *t, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl, int timeout_ms,
                     char *err, size_t errlen)
{
    jrcp *j = (jrcp *)t;
    ea_err rc = msg(j, MTY_APDU, c, cl, r, rl, ea_now_ms() + timeout_ms);
    if (rc == EA_OK && *rl < 2)
        rc = EA_ERR_MALFORMED;
    if (rc != EA_OK)
        snprintf(err, errlen, "%s%s: %s", j->is_unix ? "unix:" : "tcp://", j->addr,
                 rc == EA_ERR_TIMEOUT ? "no answer in time" : rc == EA_ERR_MALFORMED ? "bad JRCP_v1 answer"
                                                                                       : "connection lost");
    return rc;
}

static void j_close(ea_transport *t)
{
    jrcp *j = (jrcp *)t;
    if (j->fd >= 0) {
        uint8_t buf[64];
        size_t n = sizeof buf;
        msg(j, MTY_CLOSE, NULL, 0, buf, &n, ea_now_ms() + 200); /* polite, best effort */
        close(j->fd);
    }
    j->fd = -1;
}

static void j_free(ea_transport *t)
{
    j_close(t);
    free(t);
}

static const ea_transport_ops tcp_ops = { "jrcp-tcp", j_open, j_xfer, j_close, j_free };
static const ea_transport_ops unix_ops = { "jrcp-unix", j_open, j_xfer, j_close, j_free };

ea_err ea_tr_jrcp_new(const char *uri, ea_transport **out, char *err, size_t errlen)
{
    jrcp *j = calloc(1, sizeof *j);
    if (!j)
        return EA_ERR_NO_MEMORY;
    j->fd = -1;
    if (!strncmp(uri, "unix:", 5)) {
        j->is_unix = true;
        j->base.ops = &unix_ops;
        uri += 5;
    } else if (!strncmp(uri, "tcp://", 6)) {
        j->base.ops = &tcp_ops;
        uri += 6;
    } else {
        free(j);
        snprintf(err, errlen, "%s: not a JRCP_v1 URI", uri);
        return EA_ERR_ARG;
    }
    if (!*uri || strlen(uri) >= sizeof j->addr) {
        free(j);
        snprintf(err, errlen, "bad address in SE URI");
        return EA_ERR_ARG;
    }
    snprintf(j->addr, sizeof j->addr, "%s", uri);
    *out = &j->base;
    return EA_OK;
}
