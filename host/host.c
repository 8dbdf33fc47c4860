/* The session: URI resolution, connect/select, one lock per exchange,
 * reconnect after a broken link, status word -> ea_err. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/util.h"
#include "edgeauth/emu.h"
#include "host/host_int.h"

#define DEFAULT_TIMEOUT_MS 10000

__attribute__((format(printf, 2, 3))) static void set_error(ea_host *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->last_error, sizeof h->last_error, fmt, ap);
    va_end(ap);
}

ea_err ea_host_default_uri(char *out, size_t cap)
{
    const char *e = getenv("EDGEAUTH_SE"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    int n;
    if (e && *e)
        n = snprintf(out, cap, "%s", e);
    else if (xdg && *xdg)
        n = snprintf(out, cap, "emu:%s/edgeauth/se", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "emu:%s/.local/share/edgeauth/se", home);
    else
        return EA_ERR_NOT_FOUND;
    return n > 0 && (size_t)n < cap ? EA_OK : EA_ERR_BUF_TOO_SMALL;
}

/* The embedded default: a per-user chip, made on first use. */
static ea_err ensure_default_chip(const char *uri, char *err, size_t errlen)
{
    char marker[1200];
    const char *dir = uri + 4;
    snprintf(marker, sizeof marker, "%s/objects", dir);
    struct stat st;
    if (stat(marker, &st) == 0)
        return EA_OK;
    if (ea_mkdir_p(dir, 0700) != EA_OK) {
        snprintf(err, errlen, "cannot create %.200s: %s", dir, strerror(errno));
        return EA_ERR_IO;
    }
    ea_emu_init_opts o = { 0 };
    ea_err rc = ea_emu_init(dir, &o, err, errlen);
    return rc == EA_ERR_EXISTS ? EA_OK : rc;
}

static const uint8_t select_apdu[] = { 0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x54,
                                       0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00 };

/* One exchange on the link, nothing else. */
static ea_err link_xfer(ea_host *h, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl)
{
    char err[256] = "";
    ea_err rc = h->tr->ops->xfer(h->tr, c, cl, r, rl, h->timeout_ms, err, sizeof err);
    if (rc != EA_OK) {
        /* The link is in an unknown state: drop it, reconnect next time. */
        h->tr->ops->close(h->tr);
        h->connected = false;
        h->last_sw = 0;
        set_error(h, "%s (will reconnect on the next call)", err[0] ? err : ea_err_str(rc));
        return rc;
    }
    return EA_OK;
}

/* Drop the connection and its secure session; the next call reconnects. */
static void link_drop(ea_host *h)
{
    if (h->connected)
        h->tr->ops->close(h->tr);
    h->connected = false;
    h->scp_active = false;
    ea_scp03_wipe(&h->scp);
}

/* Wrap, exchange, unwrap. Only a response whose R-MAC verified (or a bare
 * error status word, which GP leaves unauthenticated) comes back. */
static ea_err scp_xfer(ea_host *h, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl)
{
    uint8_t w[EA_HOST_APDU_MAX + 2 * EA_SCP03_BLOCK], wr[EA_HOST_APDU_MAX];
    size_t wl = sizeof w, wrl = sizeof wr;
    ea_err rc = ea_scp03_wrap_command(&h->scp, c, cl, w, &wl);
    if (rc != EA_OK) {
        set_error(h, "cannot wrap the command for SCP03: %s", ea_err_str(rc));
        return rc == EA_ERR_BUF_TOO_SMALL ? EA_ERR_ARG : rc;
    }
    rc = link_xfer(h, w, wl, wr, &wrl);
    ea_cleanse(w, wl);
    if (rc != EA_OK) {
        link_drop(h);
        return rc;
    }
    rc = ea_scp03_unwrap_response(&h->scp, wr, wrl, r, rl);
    ea_cleanse(wr, wrl);
    if (rc != EA_OK) {
        link_drop(h);
        set_error(h, "%s: the answer failed its SCP03 check (R-MAC, counter or padding); "
                     "secure channel closed, will reconnect on the next call", h->uri);
        return EA_ERR_AUTH;
    }
    uint16_t sw = (uint16_t)(r[*rl - 2] << 8 | r[*rl - 1]);
    if (sw == EA_SW_SECURITY_STATUS) {
        /* The card ends its session on 6982: start over next time. */
        link_drop(h);
    }
    return EA_OK;
}

static ea_err raw_xfer(ea_host *h, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl)
{
    if (h->trace)
        h->trace(h->trace_ctx, 0, c, cl);
    ea_err rc = h->scp_active ? scp_xfer(h, c, cl, r, rl) : link_xfer(h, c, cl, r, rl);
    if (rc != EA_OK)
        return rc;
    if (h->trace)
        h->trace(h->trace_ctx, 1, r, *rl);
    return EA_OK;
}

/* Platform SCP03 handshake (spec §7.3): INITIALIZE UPDATE, check the card's
 * cryptogram, EXTERNAL AUTHENTICATE. */
static ea_err scp_handshake(ea_host *h)
{
    uint8_t hc[EA_SCP03_CHALLENGE_LEN], c[EA_SCP03_EXT_AUTH_LEN], r[64];
    size_t cl = sizeof c, rl = sizeof r;
    ea_scp03_iu_rsp iu;
    ea_err rc;

    if (RAND_bytes(hc, sizeof hc) != 1) {
        set_error(h, "cannot draw the SCP03 host challenge");
        return EA_ERR_CRYPTO;
    }
    if ((rc = ea_scp03_init_update_cmd(EA_SCP03_KEY_VERSION, hc, c, &cl)) != EA_OK ||
        (rc = raw_xfer(h, c, cl, r, &rl)) != EA_OK)
        return rc;
    uint16_t sw = (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
    if (sw != EA_SW_OK) {
        h->last_sw = sw;
        set_error(h, "%s: INITIALIZE UPDATE answered %04X%s", h->uri, sw,
                  sw == 0x6A88 ? " (the SE has no Platform SCP03 key set 0B)" : "");
        return EA_ERR_AUTH;
    }
    if ((rc = ea_scp03_parse_init_update_rsp(r, rl, &iu)) != EA_OK) {
        set_error(h, "%s: malformed INITIALIZE UPDATE answer", h->uri);
        return rc;
    }
    uint32_t ver = (uint32_t)h->version.major << 24 | (uint32_t)h->version.minor << 16 |
                   (uint32_t)h->version.patch << 8;
    if ((rc = ea_scp03_derive(NULL, h->scp_keys.enc, h->scp_keys.mac, hc, iu.card_challenge, ver,
                              &h->scp)) != EA_OK) {
        set_error(h, "SCP03 key derivation failed");
        return rc;
    }
    if (ea_scp03_check_card_cryptogram(&h->scp, iu.card_cryptogram) != EA_OK) {
        ea_scp03_wipe(&h->scp);
        set_error(h, "%s: the card cryptogram does not match: the SCP03 keys from %s are not "
                     "this secure element's (or the link is tampered with)", h->uri, h->scp_source);
        return EA_ERR_AUTH;
    }
    (void)ea_scp03_accelerate(&h->scp); /* optional: slower without */
    cl = sizeof c;
    rl = sizeof r;
    if ((rc = ea_scp03_ext_auth_cmd(&h->scp, c, &cl)) != EA_OK ||
        (rc = raw_xfer(h, c, cl, r, &rl)) != EA_OK) {
        ea_scp03_wipe(&h->scp);
        return rc;
    }
    sw = (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
    if (sw != EA_SW_OK || rl != 2) {
        ea_scp03_wipe(&h->scp);
        h->last_sw = sw;
        set_error(h, "%s: EXTERNAL AUTHENTICATE answered %04X (the SE refused our SCP03 keys)",
                  h->uri, sw);
        return EA_ERR_AUTH;
    }
    h->scp_active = true;
    return EA_OK;
}

/* Connect, reset the link, select the applet, and open the secure channel
 * when the session has SCP03 keys. */
static ea_err connect_select(ea_host *h)
{
    char err[256] = "";
    h->scp_active = false;
    ea_scp03_wipe(&h->scp);
    ea_err rc = h->tr->ops->open(h->tr, err, sizeof err);
    if (rc != EA_OK) {
        set_error(h, "%s", err[0] ? err : ea_err_str(rc));
        return rc;
    }
    h->connected = true;
    uint8_t r[64];
    size_t rl = sizeof r;
    if ((rc = raw_xfer(h, select_apdu, sizeof select_apdu, r, &rl)) != EA_OK)
        return rc;
    uint16_t sw = (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
    if (sw != EA_SW_OK || rl != 9) {
        h->last_sw = sw;
        set_error(h, "%s: no SE05x IoT applet (SELECT answered %04X)", h->uri, sw);
        h->tr->ops->close(h->tr);
        h->connected = false;
        return EA_ERR_NOT_FOUND;
    }
    h->version.major = r[0];
    h->version.minor = r[1];
    h->version.patch = r[2];
    h->version.features = (uint16_t)(r[3] << 8 | r[4]);
    h->version.securebox = (uint16_t)(r[5] << 8 | r[6]);
    if (h->has_scp03 && (rc = scp_handshake(h)) != EA_OK) {
        link_drop(h);
        return rc;
    }
    return EA_OK;
}

/* Split "URI?scp03=KEYS" (the query is ours, never the transport's). */
static ea_err split_scp03(const char *uri, char *base, size_t cap, const char **keys)
{
    const char *q = strstr(uri, "?scp03=");
    size_t n = q ? (size_t)(q - uri) : strlen(uri);
    if (n >= cap)
        return EA_ERR_BUF_TOO_SMALL;
    memcpy(base, uri, n);
    base[n] = '\0';
    *keys = q ? q + 7 : NULL;
    return EA_OK;
}

ea_err ea_host_open(const char *uri, const ea_host_opts *opts, ea_host **out, char *errbuf, size_t errlen)
{
    char def[1100], err[320] = "";
    ea_err rc;
    ea_host *h;

    if (!out)
        return EA_ERR_ARG;
    *out = NULL;
    if (!uri || !*uri) {
        if ((rc = ea_host_default_uri(def, sizeof def)) != EA_OK) {
            snprintf(err, sizeof err, "no SE given: set EDGEAUTH_SE or HOME");
            goto fail_msg;
        }
        uri = def;
        if (!strncmp(uri, "emu:", 4) && !getenv("EDGEAUTH_SE") &&
            (rc = ensure_default_chip(uri, err, sizeof err)) != EA_OK)
            goto fail_msg;
    }
    if (!(h = calloc(1, sizeof *h)))
        return EA_ERR_NO_MEMORY;
    pthread_mutex_init(&h->lock, NULL);
    h->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    const char *keys = NULL, *env = getenv("EDGEAUTH_SE_SCP03");
    if (split_scp03(uri, h->uri, sizeof h->uri, &keys) != EA_OK) {
        snprintf(err, sizeof err, "SE URI too long");
        rc = EA_ERR_ARG;
        ea_host_close(h);
        goto fail_msg;
    }
    if (opts && opts->scp03_keys)
        keys = opts->scp03_keys;
    else if (!keys && env && *env)
        keys = env;
    if (keys) {
        if ((rc = ea_scp03_keys_load(keys, &h->scp_keys, err, sizeof err)) != EA_OK) {
            ea_host_close(h);
            goto fail_msg;
        }
        h->has_scp03 = true;
        snprintf(h->scp_source, sizeof h->scp_source, "%s", keys);
    }
    if ((rc = ea_transport_new(h->uri, &h->tr, err, sizeof err)) != EA_OK) {
        ea_host_close(h);
        goto fail_msg;
    }
    if ((rc = connect_select(h)) != EA_OK) {
        snprintf(err, sizeof err, "%s", h->last_error);
        ea_host_close(h);
        goto fail_msg;
    }
    *out = h;
    return EA_OK;
fail_msg:
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", err[0] ? err : ea_err_str(rc));
    return rc;
}

void ea_host_close(ea_host *h)
{
    if (!h)
        return;
    if (h->tr)
        h->tr->ops->free(h->tr);
    ea_scp03_wipe(&h->scp);
    ea_scp03_keys_wipe(&h->scp_keys);
    pthread_mutex_destroy(&h->lock);
    ea_cleanse(h, sizeof *h);
    free(h);
}

const char *ea_host_uri(const ea_host *h)
{
    return h->uri;
}

const char *ea_host_transport(const ea_host *h)
{
    return h->tr->ops->name;
}

uint16_t ea_host_last_sw(const ea_host *h)
{
    return h->last_sw;
}

bool ea_host_secure(const ea_host *h)
{
    return h->has_scp03;
}

const char *ea_host_last_error(const ea_host *h)
{
    return h->last_error;
}

void ea_host_set_trace(ea_host *h, ea_host_trace_fn *fn, void *ctx)
{
    pthread_mutex_lock(&h->lock);
    h->trace = fn;
    h->trace_ctx = ctx;
    pthread_mutex_unlock(&h->lock);
}

/* Exchange under the lock, reconnecting first when the link broke. */
static ea_err locked_xfer(ea_host *h, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl)
{
    ea_err rc = EA_OK;
    pthread_mutex_lock(&h->lock);
    h->last_sw = 0;
    h->last_error[0] = '\0';
    if (!h->connected)
        rc = connect_select(h);
    if (rc == EA_OK)
        rc = raw_xfer(h, c, cl, r, rl);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

ea_err ea_host_transceive(ea_host *h, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl)
{
    if (!h || !c || !r || !rl || *rl < 2)
        return EA_ERR_ARG;
    return locked_xfer(h, c, cl, r, rl);
}

static ea_err err_of_sw(uint16_t sw, const char **why)
{
    switch (sw) {
    case EA_SW_CONDITIONS_NOT_SATISFIED:
        *why = "conditions not satisfied (no such object, wrong type, or wrong length)";
        return EA_ERR_CONDITIONS;
    case EA_SW_COMMAND_NOT_ALLOWED:
        *why = "denied by the object's policy";
        return EA_ERR_DENIED;
    case EA_SW_WRONG_DATA:
        *why = "wrong data";
        return EA_ERR_WRONG_DATA;
    case EA_SW_FILE_FULL:
        *why = "not enough memory in the secure element";
        return EA_ERR_FULL;
    case EA_SW_WRONG_LENGTH:
        *why = "wrong length";
        return EA_ERR_MALFORMED;
    case EA_SW_SECURITY_STATUS:
        *why = "security status not satisfied";
        return EA_ERR_AUTH;
    case EA_SW_INS_NOT_SUPPORTED:
    case EA_SW_INCORRECT_P1P2:
    case EA_SW_CLA_NOT_SUPPORTED:
        *why = "command not supported by this secure element";
        return EA_ERR_UNSUPPORTED;
    default:
        *why = "unexpected status word";
        return EA_ERR_CARD;
    }
}

ea_err host_cmd(ea_host *h, const char *what, uint32_t id, uint8_t ins, uint8_t p1, uint8_t p2,
                const uint8_t *body, size_t blen, int frame, uint8_t *rsp, size_t *rsp_len)
{
    uint8_t c[EA_HOST_APDU_MAX], r[EA_HOST_APDU_MAX];
    size_t cl = 0, rl = sizeof r;
    ea_err rc;

    if (blen > EA_HOST_APDU_MAX - 9)
        return EA_ERR_ARG;
    c[cl++] = EA_CLA_APPLET;
    c[cl++] = ins;
    c[cl++] = p1;
    c[cl++] = p2;
    if (frame == FRAME_EXT || blen > 255) {
        c[cl++] = 0;
        c[cl++] = (uint8_t)(blen >> 8);
        c[cl++] = (uint8_t)blen;
        memcpy(c + cl, body, blen);
        cl += blen;
        c[cl++] = 0;
        c[cl++] = 0;
    } else if (blen > 0) {
        c[cl++] = (uint8_t)blen;
        memcpy(c + cl, body, blen);
        cl += blen;
    }
    rc = locked_xfer(h, c, cl, r, &rl);
    ea_cleanse(c, cl); /* imports carry key material */
    if (rc != EA_OK)
        goto out;
    uint16_t sw = (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
    if (sw != EA_SW_OK) {
        const char *why;
        rc = err_of_sw(sw, &why);
        if (sw == EA_SW_SECURITY_STATUS && !h->has_scp03)
            why = "security status not satisfied (the chip may require Platform SCP03: give its "
                  "keys with ?scp03=FILE on the SE URI or EDGEAUTH_SE_SCP03)";
        h->last_sw = sw;
        if (id)
            set_error(h, "%s 0x%08X: %s (SW %04X)", what, id, why, sw);
        else
            set_error(h, "%s: %s (SW %04X)", what, why, sw);
        goto out;
    }
    h->last_sw = sw;
    if (rsp) {
        if (rl - 2 > *rsp_len) {
            set_error(h, "%s: answer longer than expected", what);
            rc = EA_ERR_MALFORMED;
            goto out;
        }
        memcpy(rsp, r, rl - 2);
        *rsp_len = rl - 2;
    } else if (rl != 2) {
        set_error(h, "%s: unexpected data in the answer", what);
        rc = EA_ERR_MALFORMED;
    }
out:
    ea_cleanse(r, sizeof r);
    return rc;
}

ea_err ea_host_set_platform_scp(ea_host *h, bool required)
{
    uint8_t body[] = { EA_TAG_1, 0x01, required ? EA_SCP_REQUIRED : EA_SCP_NOT_REQUIRED };
    if (!h)
        return EA_ERR_ARG;
    return host_cmd(h, "SetPlatformSCPRequest", 0, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_SCP, body,
                    sizeof body, FRAME_SHORT, NULL, NULL);
}
