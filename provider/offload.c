#define _GNU_SOURCE /* memmem */
/* The TLS offload mode (issue 8, app note AN12400 §3.1-3.4): the `offload`
 * parameter, the transient SE objects it uses, the table of secrets that
 * stay in the SE while libssl holds only a reference to them, the TLS-GROUP
 * capability, and the APDU log that shows which step the SE did.
 *
 * Everything here is off unless `offload` names it: then the provider
 * offers no keyexch, no KDF and no TLS group, exactly as before. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "provider/prov.h"

/* ---- the parameter ------------------------------------------------------------ */

static const struct {
    const char *word;
    unsigned bit;
} offload_words[] = {
    { "random", EA_PROV_OFFLOAD_RANDOM },
    { "ecdhe", EA_PROV_OFFLOAD_ECDHE },
    { "prf", EA_PROV_OFFLOAD_PRF },
};

int ea_prov_offload_parse(const char *s, unsigned *out)
{
    char buf[128], *save = NULL;
    unsigned bits = 0;

    *out = 0;
    if (!s || !*s || !strcmp(s, "none"))
        return 1;
    if (strlen(s) >= sizeof buf)
        return 0;
    strcpy(buf, s);
    for (char *w = strtok_r(buf, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
        size_t i;
        if (!strcmp(w, "all")) {
            bits |= EA_PROV_OFFLOAD_RANDOM | EA_PROV_OFFLOAD_ECDHE | EA_PROV_OFFLOAD_PRF;
            continue;
        }
        for (i = 0; i < sizeof offload_words / sizeof offload_words[0]; i++)
            if (!strcmp(w, offload_words[i].word))
                break;
        if (i == sizeof offload_words / sizeof offload_words[0])
            return 0;
        bits |= offload_words[i].bit;
    }
    *out = bits;
    return 1;
}

/* ---- transient objects -------------------------------------------------------------- */

/* Transient objects are visible to their own session only, and the provider
 * has one session per SE per process, so a counter is enough; the range
 * stays clear of the applet's 7FFF0000..7FFFFFFF and of the ids the
 * project's tools use (F0000100.., 7B0001xx). */
#define TRANSIENT_BASE 0x7EA00000u
#define TRANSIENT_SPAN 0x00010000u

uint32_t ea_prov_transient_id(ea_prov *p)
{
    uint32_t n;
    pthread_mutex_lock(&p->lock);
    n = p->next_transient++ % TRANSIENT_SPAN;
    pthread_mutex_unlock(&p->lock);
    return TRANSIENT_BASE + n;
}

ea_err ea_prov_hmac_object(ea_prov *p, ea_host *h, uint32_t id, const uint8_t *key, size_t len)
{
    static const uint8_t zeros[64];
    /* Usable by the TLS PRF and HKDF, writable as an ECDH/HKDF target,
     * deletable; never readable: the secret only leaves as derived output. */
    ea_policy pol = ea_policy_everyone(EA_POL_ALLOW_TLS_KDF | EA_POL_ALLOW_HKDF | EA_POL_ALLOW_WRITE |
                                       EA_POL_ALLOW_DELETE);
    ea_err rc;
    if (!key && len > sizeof zeros)
        return EA_ERR_ARG;
    rc = ea_host_write_symm_new(h, id, EA_P1_HMAC, key ? key : zeros, len, &pol, true);
    if (rc != EA_OK)
        ea_prov_raise(p, rc, "cannot create a transient HMAC object 0x%08X in the SE: %s", id,
                      ea_host_last_error(h));
    return rc;
}

void ea_prov_drop_object(ea_host *h, uint32_t id)
{
    if (h && id)
        (void)ea_host_delete(h, id);
}

/* ---- secrets held in the SE ------------------------------------------------------------- */

/* A reference: 8 bytes of magic, the slot and its generation; the rest of
 * the secret's length is zero. A real 32- or 48-byte secret starts with
 * this magic with probability 2^-64. */
static const uint8_t ref_magic[8] = { 0x00, 'E', 'A', 'S', 'E', 'R', 'E', 'F' };
#define REF_MIN 16u

static void drop_entry(ea_prov *p, const ea_prov_secret *s)
{
    ea_host *h = ea_prov_host(p, s->uri);
    if (!h)
        return; /* the session is gone, and its transient objects with it */
    ea_prov_drop_object(h, s->ikm_id);
    ea_prov_drop_object(h, s->salt_id);
    ea_prov_host_done(p, h);
}

int ea_prov_secret_put(ea_prov *p, const ea_prov_secret *s, uint8_t *out, size_t len)
{
    ea_prov_secret evicted = { 0 };
    size_t slot = 0;

    if (len < REF_MIN)
        return 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < EA_PROV_SECRETS; i++) {
        if (p->secrets[i].gen == 0) {
            slot = i;
            break;
        }
        if (p->secrets[i].gen < p->secrets[slot].gen)
            slot = i;
    }
    if (p->secrets[slot].gen != 0)
        evicted = p->secrets[slot];
    p->secrets[slot] = *s;
    p->secrets[slot].gen = ++p->secret_gen;
    p->secrets[slot].len = len;
    memset(out, 0, len);
    memcpy(out, ref_magic, sizeof ref_magic);
    out[8] = (uint8_t)slot;
    out[12] = (uint8_t)(p->secrets[slot].gen >> 24);
    out[13] = (uint8_t)(p->secrets[slot].gen >> 16);
    out[14] = (uint8_t)(p->secrets[slot].gen >> 8);
    out[15] = (uint8_t)p->secrets[slot].gen;
    pthread_mutex_unlock(&p->lock);
    /* The oldest secret's objects go: by now its handshake has moved on (a
     * premaster is used once, a TLS 1.3 PRK for a few expansions). */
    if (evicted.gen)
        drop_entry(p, &evicted);
    return 1;
}

static int parse_ref(const uint8_t *buf, size_t len, size_t *slot, uint32_t *gen)
{
    if (!buf || len < REF_MIN || memcmp(buf, ref_magic, sizeof ref_magic) != 0)
        return 0;
    for (size_t i = REF_MIN; i < len; i++)
        if (buf[i])
            return 0;
    *slot = buf[8];
    *gen = (uint32_t)buf[12] << 24 | (uint32_t)buf[13] << 16 | (uint32_t)buf[14] << 8 | buf[15];
    return *slot < EA_PROV_SECRETS && buf[9] == 0 && buf[10] == 0 && buf[11] == 0;
}

int ea_prov_secret_is_ref(const uint8_t *buf, size_t len)
{
    /* Anywhere, not only as the whole secret: libssl embeds the ECDH
     * output in a larger premaster for ECDHE-PSK, and a reference there
     * must be refused, never used as key material. */
    return buf && len >= sizeof ref_magic && memmem(buf, len, ref_magic, sizeof ref_magic) != NULL;
}

/* Copy a live entry out; with take, the entry also leaves the table. */
static int secret_lookup(ea_prov *p, const uint8_t *buf, size_t len, ea_prov_secret *s, bool take)
{
    size_t slot;
    uint32_t gen;
    int ok = 0;
    if (!parse_ref(buf, len, &slot, &gen))
        return 0;
    pthread_mutex_lock(&p->lock);
    if (p->secrets[slot].gen == gen && p->secrets[slot].len == len) {
        *s = p->secrets[slot];
        if (take)
            memset(&p->secrets[slot], 0, sizeof p->secrets[slot]);
        ok = 1;
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

unsigned ea_prov_secret_mark(ea_prov *p, const uint8_t *buf, size_t len, unsigned bit)
{
    size_t slot;
    uint32_t gen;
    unsigned used = 0;
    if (!parse_ref(buf, len, &slot, &gen))
        return 0;
    pthread_mutex_lock(&p->lock);
    if (p->secrets[slot].gen == gen && p->secrets[slot].len == len)
        used = p->secrets[slot].used |= bit;
    pthread_mutex_unlock(&p->lock);
    return used;
}

int ea_prov_secret_get(ea_prov *p, const uint8_t *buf, size_t len, ea_prov_secret *s)
{
    return secret_lookup(p, buf, len, s, false);
}

int ea_prov_secret_take(ea_prov *p, const uint8_t *buf, size_t len, ea_prov_secret *s)
{
    return secret_lookup(p, buf, len, s, true);
}

void ea_prov_secret_drop(ea_prov *p, const uint8_t *buf, size_t len)
{
    ea_prov_secret s = { 0 };
    if (ea_prov_secret_take(p, buf, len, &s))
        drop_entry(p, &s);
}
/* ---- TLS-GROUP ------------------------------------------------------------------------ */

/* The groups the SE does ECDH on. Declared only in ECDHE offload mode: libssl
 * uses a group only when the EC keymgmt it fetches comes from the provider
 * that declared it (ssl/t1_lib.c add_provider_groups), so with the query
 * "?edgeauth.offload=yes" our declaration replaces the default provider's
 * for these two, and x25519 & co stay with the default provider. */
#define TLS1_VERSION_ 0x0301  /* libssl's TLS1_VERSION; the provider links libcrypto only */
#define DTLS1_VERSION_ 0xFEFF

static const struct tls_group {
    const char *name, *internal;
    unsigned int id, secbits;
} tls_groups[] = {
    { "secp256r1", "prime256v1", 23, 128 },
    { "P-256", "prime256v1", 23, 128 }, /* aliases, as the default provider declares them */
    { "secp384r1", "secp384r1", 24, 192 },
    { "P-384", "secp384r1", 24, 192 },
};

int ea_prov_tls_groups(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg)
{
    ea_prov *p = provctx;
    if (strcmp(capability, "TLS-GROUP") != 0 || !(p->offload & EA_PROV_OFFLOAD_ECDHE))
        return 1; /* nothing to declare is not an error */
    for (size_t i = 0; i < sizeof tls_groups / sizeof tls_groups[0]; i++) {
        const struct tls_group *g = &tls_groups[i];
        unsigned int id = g->id, secbits = g->secbits, kem = 0;
        int mintls = TLS1_VERSION_, maxtls = 0, mindtls = DTLS1_VERSION_, maxdtls = 0;
        OSSL_PARAM params[] = {
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, (char *)g->name, strlen(g->name)),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL, (char *)g->internal,
                                   strlen(g->internal)),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, (char *)"EC", 2),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &secbits),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &mintls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &maxtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &mindtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &maxdtls),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_IS_KEM, &kem),
            OSSL_PARAM_END,
        };
        if (!cb(params, arg))
            return 0;
    }
    return 1;
}

/* ---- the APDU log ----------------------------------------------------------------------- */

/* One line per exchange: "CLA INS P1 P2 SW name" with the process id. The
 * data of either APDU is never written: it may be a key or a secret. */
static void apdu_trace(void *ctx, int dir, const uint8_t *apdu, size_t len)
{
    uint8_t *hdr = ctx; /* the session's log_hdr */
    const char *path = getenv("EDGEAUTH_APDU_LOG");
    char line[128];
    if (dir == 0) {
        memset(hdr, 0, 4);
        memcpy(hdr, apdu, len < 4 ? len : 4);
        return;
    }
    if (!path || !*path)
        return;
    unsigned sw = len >= 2 ? (unsigned)apdu[len - 2] << 8 | apdu[len - 1] : 0;
    int n = snprintf(line, sizeof line, "%ld %02X %02X %02X %02X %04X %s\n", (long)getpid(), hdr[0], hdr[1], hdr[2],
                     hdr[3], sw, ea_se05x_cmd_name(hdr[0], hdr[1], hdr[2], hdr[3]));
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (n > 0 && write(fd, line, (size_t)n) < 0)
        errno = 0; /* a log that cannot be written is not an SE failure */
    close(fd);
}

void ea_prov_apdu_log_attach(ea_prov *p, ea_host *h)
{
    if (!p->apdu_log || !h)
        return;
    for (size_t i = 0; i < EA_PROV_SESSIONS; i++)
        if (p->sessions[i].h == h) {
            ea_host_set_trace(h, apdu_trace, p->sessions[i].log_hdr);
            return;
        }
}
