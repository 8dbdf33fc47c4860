/* The factory station: a device key born in the SE and proven so by the
 * chip's attestation, a CSR signed by that key through our provider, the
 * certificate from the OEM CA, certificate and chain written back into the
 * SE, and one line in the registry the cloud imports.
 *
 * IMPLEMENTATION NOTES
 *
 * Every run starts from what is already there, so a crash at any point is
 * repaired by running again (docs/PROVISIONING.md walks through each crash
 * point):
 *   - the key is generated only when 0xF0000100 is absent; an existing key
 *     is reused only if its attestation passes (origin internal, P-256,
 *     policy that cannot replace or export it);
 *   - a certificate is issued only when the CA has no active one for the
 *     device id; an active one for the same key is taken back from the CA
 *     (cert issued, crash before it reached the SE), one for another key is
 *     refused;
 *   - the certificate objects are created whole, in one WriteBinary APDU,
 *     with a read-only policy: there is never a half-written object to fix,
 *     and nobody can overwrite the trust anchor 0x7B000102 afterwards. An
 *     object with other content is deleted and recreated when its policy
 *     allows it (--allow-delete at the first run), refused otherwise -
 *     before anything is issued;
 *   - the registry line is the last step, written once under a lock, and a
 *     rerun that finds it reports already_done.
 * The registry line and the audit record are the only things a crash could
 * separate from the rest, and both are checked on every run. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "common/tlv.h"
#include "common/util.h"
#include "edgeauth/emu.h"
#include "edgeauth/host.h"
#include "edgeauth/manifest.h"
#include "edgeauth/pki.h"
#include "edgeauth/provider.h"
#include "pki/manifest.h"

#define CERT_MAX 0x7FFFu      /* largest binary object */
#define ONESHOT_MAX 850u      /* certificate bytes written in one APDU (SE05x buffer: 892) */
#define PROV_SESSIONS 4u      /* SEs our provider keeps open at once (provider/prov.h) */
#define REG_LINE_MAX 4096u    /* one registry line */
#define ENV_CRASH "EDGEAUTH_PROVISION_CRASH_AT"

/* ==== attestation ======================================================================== */

#define ATTR_HEAD 14u /* id 4, type 1, auth 1, attempts 2, owner 4, max attempts 2 */
#define ATTR_TAIL 5u  /* origin 1, version 4 (applet 7.2) */

bool pm_attrs_policy(const uint8_t *attrs, size_t n, uint32_t *ar, uint8_t *origin, uint32_t *id, uint8_t *type)
{
    ea_cur c;
    bool found = false;

    if (!attrs || n < ATTR_HEAD + ATTR_TAIL)
        return false;
    *id = ea_get_be32(attrs);
    *type = attrs[4];
    *origin = attrs[n - ATTR_TAIL];
    *ar = EA_POL_FORBID_ALL; /* a policy without a rule for everyone allows nothing */
    c = ea_cur_make(attrs + ATTR_HEAD, n - ATTR_HEAD - ATTR_TAIL);
    while (c.n > 0) {
        uint8_t len;
        ea_cur rec;
        if (!ea_cur_u8(&c, &len) || len < 8 || !ea_cur_take(&c, len, &rec))
            return false;
        if (!found && ea_get_be32(rec.p) == 0) {
            *ar = ea_get_be32(rec.p + 4);
            found = true;
        }
    }
    return true;
}

X509_STORE *pm_anchor_store(const char *pem_path, char *err, size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    BIO *b = BIO_new_file(pem_path, "r");
    X509 *x;
    int n = 0;

    if (!st || !b) {
        ea_seterr(err, errlen, "cannot read the vendor CA %s%s%s", pem_path, errno ? ": " : "",
               errno ? strerror(errno) : "");
        goto fail;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        n += X509_STORE_add_cert(st, x) == 1;
        X509_free(x);
    }
    if (n == 0) {
        ea_seterr(err, errlen, "no PEM certificate in the vendor CA file %s", pem_path);
        goto fail;
    }
    /* The vendor CA given may be an intermediate of the vendor's hierarchy. */
    X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
    BIO_free(b);
    return st;
fail:
    BIO_free(b);
    X509_STORE_free(st);
    return NULL;
}

static X509 *read_se_cert(ea_host *h, uint32_t id, ea_err *rc_out)
{
    uint8_t *der = malloc(CERT_MAX);
    size_t n = CERT_MAX;
    const unsigned char *p = der;
    X509 *x = NULL;
    ea_err rc = der ? ea_host_read_object(h, id, der, &n) : EA_ERR_NO_MEMORY;

    if (rc == EA_OK) {
        x = d2i_X509(NULL, &p, (long)n);
        if (!x || p != der + n) {
            X509_free(x);
            x = NULL;
            rc = EA_ERR_MALFORMED;
        }
    }
    free(der);
    if (rc_out)
        *rc_out = rc;
    return x;
}

static const char *origin_words(uint8_t o)
{
    switch (o) {
    case EA_ORIGIN_EXTERNAL: return "external (imported from outside the chip)";
    case EA_ORIGIN_INTERNAL: return "internal (generated inside the chip)";
    case EA_ORIGIN_PROVISIONED: return "provisioned (by the SE vendor)";
    default: return "unknown";
    }
}

#define AFAIL(code, ...)                                                                                               \
    do {                                                                                                               \
        ea_seterr(why, whylen, __VA_ARGS__);                                                                              \
        rc = (code);                                                                                                   \
        goto out;                                                                                                      \
    } while (0)

ea_err pm_attest_key(ea_host *h, uint32_t obj_id, X509_STORE *anchors, unsigned origins, pm_attested *out,
                     char *why, size_t whylen)
{
    ea_attestation *a = malloc(sizeof *a);
    uint8_t fresh[EA_FRESHNESS_LEN], uid[EA_UNIQUE_ID_LEN], type = 0;
    uint32_t id = 0;
    X509 *cert = NULL;
    X509_STORE_CTX *vc = NULL;
    EVP_PKEY_CTX *pc = NULL;
    ea_err rc = EA_ERR_INTERNAL;

    memset(out, 0, sizeof *out);
    if (!a)
        AFAIL(EA_ERR_NO_MEMORY, "out of memory");
    /* A fresh random inside the signed command: an old answer replayed
     * from another chip or another day does not verify. */
    if (RAND_bytes(fresh, sizeof fresh) != 1)
        AFAIL(EA_ERR_CRYPTO, "no randomness for the freshness");
    if ((rc = ea_host_read_attested(h, obj_id, EA_OBJ_ATTEST_KEY, EA_SIG_ECDSA_SHA256, fresh, a)) != EA_OK) {
        bool exists = true;
        if (ea_host_exists(h, obj_id, &exists) == EA_OK && !exists)
            AFAIL(EA_ERR_NOT_FOUND, "object 0x%08X does not exist", obj_id);
        AFAIL(rc, "the attested read of 0x%08X by 0x%08X failed: %s", obj_id, EA_OBJ_ATTEST_KEY,
              *ea_host_last_error(h) ? ea_host_last_error(h) : ea_err_str(rc));
    }
    if (!(cert = read_se_cert(h, EA_OBJ_ATTEST_CERT, &rc)))
        AFAIL(rc == EA_OK ? EA_ERR_MALFORMED : rc, "no attestation certificate in 0x%08X (%s)", EA_OBJ_ATTEST_CERT,
              ea_err_str(rc));
    X509_NAME_oneline(X509_get_subject_name(cert), out->attest_subject, sizeof out->attest_subject);
    if (!(vc = X509_STORE_CTX_new()) || X509_STORE_CTX_init(vc, anchors, cert, NULL) != 1)
        AFAIL(EA_ERR_CRYPTO, "cannot set up the chain check");
    if (X509_verify_cert(vc) != 1)
        AFAIL(EA_ERR_AUTH, "the attestation certificate (%s) does not chain to the SE vendor CA: %s",
              out->attest_subject, X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
    if (!(pc = EVP_PKEY_CTX_new(X509_get0_pubkey(cert), NULL)) || EVP_PKEY_verify_init(pc) != 1 ||
        EVP_PKEY_verify(pc, a->sig, a->sig_len, a->signed_hash, a->signed_hash_len) != 1)
        AFAIL(EA_ERR_AUTH, "the attestation signature does not verify with the certified attestation key");
    if ((rc = ea_host_unique_id(h, uid)) != EA_OK)
        AFAIL(rc, "cannot read the chip's unique id: %s", ea_host_last_error(h));
    if (a->uid_len != EA_UNIQUE_ID_LEN || memcmp(a->uid, uid, sizeof uid) != 0)
        AFAIL(EA_ERR_AUTH, "the attested chip id differs from this chip's unique id");
    if (!pm_attrs_policy(a->attrs, a->attrs_len, &out->policy, &out->origin, &id, &type))
        AFAIL(EA_ERR_MALFORMED, "the attested object attributes do not parse");
    if (id != obj_id)
        AFAIL(EA_ERR_AUTH, "the attestation names object 0x%08X, not 0x%08X", id, obj_id);
    if (!a->data || a->data_len != 65 || a->data[0] != 4)
        AFAIL(EA_ERR_AUTH, "the attestation does not carry the public key of 0x%08X (not readable?)", obj_id);
    if (!(origins & 1u << out->origin))
        AFAIL(EA_ERR_AUTH, "0x%08X has origin %s%s", obj_id, origin_words(out->origin),
              out->origin == EA_ORIGIN_EXTERNAL ? ": its private key has existed outside the SE" : "");
    if (type != EA_TYPE_EC_P256_PAIR)
        AFAIL(EA_ERR_AUTH, "0x%08X is not a P-256 key pair (type 0x%02X)", obj_id, type);
    memcpy(out->uid, uid, sizeof uid);
    memcpy(out->pub, a->data, 65);
    rc = EA_OK;
out:
    EVP_PKEY_CTX_free(pc);
    X509_STORE_CTX_free(vc);
    X509_free(cert);
    free(a);
    return rc;
}

/* ==== the registry ========================================================================= */

typedef struct reg_rec {
    char *device_id, *unique_id, *fingerprint;
} reg_rec;

typedef struct reg_tab {
    size_t *slot; /* 0 = empty, else record index + 1 */
    size_t cap;   /* power of two */
} reg_tab;

struct pm_registry {
    char *path;
    int fd;
    off_t parsed;   /* bytes of complete lines read so far */
    reg_rec *v;
    size_t n, cap;
    reg_tab by_dev, by_uid;
    size_t torn;    /* lines that did not parse (a torn write) */
    bool defer, dirty;
};

static size_t fnv(const char *s, bool fold)
{
    size_t h = 1469598103934665603ull & SIZE_MAX;
    for (; *s; s++) {
        h ^= (unsigned char)(fold ? tolower((unsigned char)*s) : *s);
        h *= 1099511628211ull & SIZE_MAX;
    }
    return h;
}

static const char *rec_key(const reg_rec *r, bool uid)
{
    return uid ? r->unique_id : r->device_id;
}

static size_t tab_find(const pm_registry *r, const reg_tab *t, const char *key, bool uid)
{
    if (!t->cap)
        return 0;
    for (size_t i = fnv(key, uid) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        size_t s = t->slot[i];
        if (!s)
            return 0;
        const char *k = rec_key(&r->v[s - 1], uid);
        if (uid ? !strcasecmp(k, key) : !strcmp(k, key))
            return s;
    }
}

static bool tab_insert(pm_registry *r, reg_tab *t, size_t idx, bool uid)
{
    if (2 * (r->n + 1) > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        size_t *ns = calloc(nc, sizeof *ns);
        if (!ns)
            return false;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slot[i])
                continue;
            size_t j = fnv(rec_key(&r->v[t->slot[i] - 1], uid), uid) & (nc - 1);
            while (ns[j])
                j = (j + 1) & (nc - 1);
            ns[j] = t->slot[i];
        }
        free(t->slot);
        t->slot = ns;
        t->cap = nc;
    }
    size_t j = fnv(rec_key(&r->v[idx], uid), uid) & (t->cap - 1);
    while (t->slot[j])
        j = (j + 1) & (t->cap - 1);
    t->slot[j] = idx + 1;
    return true;
}

/* One complete line. The first line for a device id counts; a later one
 * for the same id (only a hand edit could make one) is ignored here and
 * reported by pm_registry_add as a conflict if it ever matters. */
static void reg_line(pm_registry *r, const char *line, size_t n)
{
    char perr[8];
    pj *v = pj_parse(line, n, perr, sizeof perr);
    const char *dev = pj_str(v, "device_id"), *uid = pj_str(v, "unique_id"), *fpr = pj_str(v, "fingerprint");

    if (!v || !dev || !uid || !fpr) {
        r->torn += n > 0;
        pj_free(v);
        return;
    }
    if (tab_find(r, &r->by_dev, dev, false) || tab_find(r, &r->by_uid, uid, true)) {
        pj_free(v);
        return;
    }
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        reg_rec *nv = realloc(r->v, nc * sizeof *nv);
        if (!nv) {
            pj_free(v);
            return;
        }
        r->v = nv;
        r->cap = nc;
    }
    reg_rec *rec = &r->v[r->n];
    rec->device_id = strdup(dev);
    rec->unique_id = strdup(uid);
    rec->fingerprint = strdup(fpr);
    if (rec->device_id && rec->unique_id && rec->fingerprint && tab_insert(r, &r->by_dev, r->n, false) &&
        tab_insert(r, &r->by_uid, r->n, true)) {
        r->n++;
    } else {
        free(rec->device_id);
        free(rec->unique_id);
        free(rec->fingerprint);
    }
    pj_free(v);
}

ea_err pm_registry_refresh(pm_registry *r)
{
    struct stat sb;
    char *buf;
    size_t len, start = 0;

    if (fstat(r->fd, &sb) != 0)
        return EA_ERR_IO;
    if (sb.st_size <= r->parsed)
        return EA_OK;
    len = (size_t)(sb.st_size - r->parsed);
    if (!(buf = malloc(len)))
        return EA_ERR_NO_MEMORY;
    for (size_t got = 0; got < len;) {
        ssize_t k = pread(r->fd, buf + got, len - got, r->parsed + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            free(buf);
            return EA_ERR_IO;
        }
        got += (size_t)k;
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        reg_line(r, buf + start, i - start);
        start = i + 1;
    }
    /* A tail without its newline is a write cut short: left for the next
     * writer, which starts its own line after it. */
    r->parsed += (off_t)start;
    free(buf);
    return EA_OK;
}

ea_err pm_registry_open(const char *path, pm_registry **out, char *err, size_t errlen)
{
    pm_registry *r = calloc(1, sizeof *r);
    ea_err rc;

    *out = NULL;
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return EA_ERR_NO_MEMORY;
    }
    r->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (r->fd < 0) {
        ea_seterr(err, errlen, "cannot open the registry %s: %s", path, strerror(errno));
        free(r->path);
        free(r);
        return EA_ERR_IO;
    }
    flock(r->fd, LOCK_SH);
    rc = pm_registry_refresh(r);
    flock(r->fd, LOCK_UN);
    if (rc != EA_OK) {
        ea_seterr(err, errlen, "cannot read the registry %s", path);
        pm_registry_close(r);
        return rc;
    }
    *out = r;
    return EA_OK;
}

void pm_registry_close(pm_registry *r)
{
    if (!r)
        return;
    if (r->dirty)
        (void)fsync(r->fd);
    close(r->fd);
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].device_id);
        free(r->v[i].unique_id);
        free(r->v[i].fingerprint);
    }
    free(r->v);
    free(r->by_dev.slot);
    free(r->by_uid.slot);
    free(r->path);
    free(r);
}

bool pm_registry_find_device(pm_registry *r, const char *device_id, const char **uid, const char **fpr)
{
    size_t s = tab_find(r, &r->by_dev, device_id, false);
    if (!s)
        return false;
    if (uid)
        *uid = r->v[s - 1].unique_id;
    if (fpr)
        *fpr = r->v[s - 1].fingerprint;
    return true;
}

bool pm_registry_find_uid(pm_registry *r, const char *uid, const char **device_id)
{
    size_t s = tab_find(r, &r->by_uid, uid, true);
    if (!s)
        return false;
    if (device_id)
        *device_id = r->v[s - 1].device_id;
    return true;
}

/* Conflict with what is registered? 1 = same device already there, 0 =
 * free, -1 = conflict (reason in why). */
static int reg_conflict(pm_registry *r, const pm_reg_rec *rec, char *why, size_t whylen)
{
    const char *uid = NULL, *fpr = NULL, *dev = NULL;

    if (pm_registry_find_device(r, rec->device_id, &uid, &fpr)) {
        if (strcasecmp(uid, rec->unique_id) != 0) {
            ea_seterr(why, whylen, "device id %s is already registered for another chip (%s)", rec->device_id, uid);
            return -1;
        }
        if (strcasecmp(fpr, rec->fingerprint) != 0) {
            ea_seterr(why, whylen, "device id %s is already registered with another certificate (SHA-256 %.16s...)",
                   rec->device_id, fpr);
            return -1;
        }
        return 1;
    }
    if (pm_registry_find_uid(r, rec->unique_id, &dev)) {
        ea_seterr(why, whylen, "chip %s is already registered as device %s", rec->unique_id, dev);
        return -1;
    }
    return 0;
}

static bool reg_tail_open(pm_registry *r)
{
    struct stat sb;
    return fstat(r->fd, &sb) == 0 && sb.st_size > r->parsed;
}

ea_err pm_registry_add(pm_registry *r, const pm_reg_rec *rec, bool *added, char *err, size_t errlen)
{
    char ts[32];
    pj_sb l = { 0 };
    ea_err rc = EA_ERR_INTERNAL;
    int c;

    *added = false;
    if (flock(r->fd, LOCK_EX) != 0) {
        ea_seterr(err, errlen, "cannot lock the registry %s: %s", r->path, strerror(errno));
        return EA_ERR_IO;
    }
    /* Re-read under the lock: another station may have appended since. */
    if ((rc = pm_registry_refresh(r)) != EA_OK) {
        ea_seterr(err, errlen, "cannot read the registry %s", r->path);
        goto out;
    }
    if ((c = reg_conflict(r, rec, err, errlen)) != 0) {
        rc = c > 0 ? EA_OK : EA_ERR_EXISTS;
        goto out;
    }
    pm_rfc3339(time(NULL), ts);
    if (reg_tail_open(r))
        pj_sb_puts(&l, "\n"); /* after a torn line: start a line of our own */
    pj_sb_puts(&l, "{\"device_id\":");
    pj_sb_str(&l, rec->device_id);
    pj_sb_puts(&l, ",\"unique_id\":");
    pj_sb_str(&l, rec->unique_id);
    pj_sb_puts(&l, ",\"serial\":");
    pj_sb_str(&l, rec->serial);
    pj_sb_puts(&l, ",\"fingerprint\":");
    pj_sb_str(&l, rec->fingerprint);
    pj_sb_puts(&l, ",\"source\":");
    pj_sb_str(&l, rec->source);
    pj_sb_puts(&l, rec->attested ? ",\"attested\":true" : ",\"attested\":false");
    pj_sb_puts(&l, ",\"time\":");
    pj_sb_str(&l, ts);
    pj_sb_puts(&l, "}\n");
    if (l.oom || l.len > REG_LINE_MAX) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    /* One write(2) of the whole line, O_APPEND: a reader sees the line
     * complete or (after a crash inside the kernel) a torn tail it skips. */
    ssize_t w = write(r->fd, l.p, l.len);
    if (w != (ssize_t)l.len) {
        ea_seterr(err, errlen, "cannot append to the registry %s: %s", r->path, w < 0 ? strerror(errno) : "short write");
        rc = EA_ERR_IO;
        goto out;
    }
    if (r->defer) {
        r->dirty = true;
    } else if (fsync(r->fd) != 0) {
        ea_seterr(err, errlen, "cannot sync the registry %s: %s", r->path, strerror(errno));
        rc = EA_ERR_IO;
        goto out;
    }
    *added = true;
    rc = pm_registry_refresh(r);
out:
    flock(r->fd, LOCK_UN);
    pj_sb_free(&l);
    return rc;
}

void pm_registry_defer_sync(pm_registry *r, bool defer)
{
    r->defer = defer;
}

ea_err pm_registry_sync(pm_registry *r)
{
    if (!r || !r->dirty)
        return EA_OK;
    r->dirty = false;
    return fsync(r->fd) == 0 ? EA_OK : EA_ERR_IO;
}

/* ==== the station ============================================================================ */

struct ea_station {
    char ca_dir[PATH_MAX];
    bool no_attestation, allow_delete;
    ea_ca *ca;
    char org[128];
    X509_STORE *anchors;        /* SE vendor CA (NULL with --no-attestation and no vendor CA) */
    char vendor_ca[PATH_MAX];
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *pdef, *pea;
    char prov_uri[PROV_SESSIONS][1024]; /* SEs the provider has sessions on since its load */
    size_t prov_n;
    pm_registry *reg;
    uint8_t *inter_der, *root_der;
    size_t inter_len, root_len;
    STACK_OF(X509) *trusted, *untrusted;
    EVP_PKEY *signer_key;
    X509 *signer_cert;
    char crash_step[32];        /* the test-only crash hook */
    unsigned long crash_nth, crash_seen;
};

/* The test-only crash hook: EDGEAUTH_PROVISION_CRASH_AT=step[@n] ends the
 * process (_exit(99), nothing flushed, as a power cut or a kill -9 would)
 * right after the n-th time (default the 1st) the flow passes step. */
static void crash_point(ea_station *st, const char *step)
{
    if (st->crash_step[0] && !strcmp(st->crash_step, step) && ++st->crash_seen == st->crash_nth)
        _exit(99);
}

static void crash_setup(ea_station *st)
{
    const char *v = getenv(ENV_CRASH);
    const char *at;
    if (!v || !*v)
        return;
    at = strchr(v, '@');
    snprintf(st->crash_step, sizeof st->crash_step, "%.*s", at ? (int)(at - v) : (int)strlen(v), v);
    st->crash_nth = at ? strtoul(at + 1, NULL, 10) : 1;
    if (st->crash_nth == 0)
        st->crash_nth = 1;
}

static ea_err der_of(X509 *x, uint8_t **der, size_t *len)
{
    unsigned char *p = NULL;
    int n = i2d_X509(x, &p);
    if (n <= 0)
        return EA_ERR_CRYPTO;
    *der = p;
    *len = (size_t)n;
    return EA_OK;
}

static void prov_unload(ea_station *st)
{
    if (st->pea)
        OSSL_PROVIDER_unload(st->pea);
    if (st->pdef)
        OSSL_PROVIDER_unload(st->pdef);
    OSSL_LIB_CTX_free(st->libctx);
    st->pea = st->pdef = NULL;
    st->libctx = NULL;
}

/* A fresh library context with the default provider first, then ours, and
 * no global property query (provider.h): nothing else in the process is
 * affected. Our provider keeps a session to every SE it has touched, up to
 * PROV_SESSIONS, and never lets one go before it is unloaded; an unload does
 * not tear it down while libcrypto's method caches still hold it, so a
 * batch moves on to the next chips with a new context. */
static ea_err prov_load(ea_station *st)
{
    OSSL_PROVIDER *pea = NULL, *pdef = NULL;
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();

    if (!lc || !(pdef = OSSL_PROVIDER_load(lc, "default")) || ea_provider_load(lc, &pea) != EA_OK) {
        if (pdef)
            OSSL_PROVIDER_unload(pdef);
        OSSL_LIB_CTX_free(lc);
        return EA_ERR_CRYPTO;
    }
    prov_unload(st);
    st->libctx = lc;
    st->pdef = pdef;
    st->pea = pea;
    st->prov_n = 0;
    return EA_OK;
}

ea_err ea_station_open(const ea_provision_opts *o, ea_station **out, char *err, size_t errlen)
{
    ea_station *st;
    ea_err rc = EA_ERR_INTERNAL;
    char reg[PATH_MAX];
    X509 *root, *inter;

    if (err && errlen)
        err[0] = '\0';
    if (!o || !o->ca_dir || !out) {
        ea_seterr(err, errlen, "the CA directory is required");
        return EA_ERR_ARG;
    }
    *out = NULL;
    if (!o->vendor_ca_pem && !o->no_attestation) {
        ea_seterr(err, errlen, "the SE vendor CA is required to check the key's attestation (or --no-attestation)");
        return EA_ERR_ARG;
    }
    if (!(st = calloc(1, sizeof *st)))
        return EA_ERR_NO_MEMORY;
    snprintf(st->ca_dir, sizeof st->ca_dir, "%s", o->ca_dir);
    st->no_attestation = o->no_attestation;
    st->allow_delete = o->allow_delete;
    crash_setup(st);
    if (o->vendor_ca_pem) {
        snprintf(st->vendor_ca, sizeof st->vendor_ca, "%s", o->vendor_ca_pem);
        if (!(st->anchors = pm_anchor_store(o->vendor_ca_pem, err, errlen))) {
            rc = EA_ERR_IO;
            goto fail;
        }
    }
    if ((rc = ea_ca_open(o->ca_dir, &st->ca, err, errlen)) != EA_OK)
        goto fail;
    root = ea_ca_root(st->ca);
    inter = ea_ca_intermediate(st->ca);
    snprintf(st->org, sizeof st->org, "%s", ea_ca_org(st->ca) ? ea_ca_org(st->ca) : "");
    rc = EA_ERR_CRYPTO;
    if (!st->org[0]) {
        ea_seterr(err, errlen, "the intermediate CA of %s names no organisation (O=)", o->ca_dir);
        goto fail;
    }
    if (der_of(inter, &st->inter_der, &st->inter_len) != EA_OK || der_of(root, &st->root_der, &st->root_len) != EA_OK ||
        !(st->trusted = sk_X509_new_null()) || !(st->untrusted = sk_X509_new_null()) ||
        !sk_X509_push(st->trusted, root) || !sk_X509_push(st->untrusted, inter)) {
        ea_seterr(err, errlen, "cannot encode the CA certificates");
        goto fail;
    }
    X509_up_ref(root);
    X509_up_ref(inter);
    if (prov_load(st) != EA_OK) {
        ea_seterr(err, errlen, "cannot load the OpenSSL providers (default, edgeauth)");
        goto fail;
    }
    if (o->registry_path)
        snprintf(reg, sizeof reg, "%s", o->registry_path);
    else
        snprintf(reg, sizeof reg, "%s/registry.jsonl", o->ca_dir);
    if ((rc = pm_registry_open(reg, &st->reg, err, errlen)) != EA_OK)
        goto fail;
    *out = st;
    return EA_OK;
fail:
    (void)ea_station_close(st);
    return rc;
}

void ea_station_set_batch(ea_station *st, bool batch)
{
    pm_registry_defer_sync(st->reg, batch);
}

X509 *ea_station_intermediate(ea_station *st)
{
    return st ? sk_X509_value(st->untrusted, 0) : NULL;
}

X509 *ea_station_root(ea_station *st)
{
    return st ? sk_X509_value(st->trusted, 0) : NULL;
}

ea_err ea_station_signer(ea_station *st, EVP_PKEY **key, X509 **cert, char *err, size_t errlen)
{
    ea_err rc;
    if (!st->signer_key &&
        (rc = ea_ca_manifest_signer(st->ca, &st->signer_key, &st->signer_cert, err, errlen)) != EA_OK)
        return rc;
    *key = st->signer_key;
    *cert = st->signer_cert;
    return EA_OK;
}

ea_err ea_station_close(ea_station *st)
{
    ea_err rc = EA_OK;
    if (!st)
        return EA_OK;
    if (st->reg && pm_registry_sync(st->reg) != EA_OK)
        rc = EA_ERR_IO;
    pm_registry_close(st->reg);
    EVP_PKEY_free(st->signer_key);
    X509_free(st->signer_cert);
    prov_unload(st);
    sk_X509_pop_free(st->trusted, X509_free);
    sk_X509_pop_free(st->untrusted, X509_free);
    OPENSSL_free(st->inter_der);
    OPENSSL_free(st->root_der);
    X509_STORE_free(st->anchors);
    ea_ca_close(st->ca);
    free(st);
    return rc;
}

/* ==== one device ================================================================================ */

typedef struct dev {
    ea_station *st;
    ea_host *h;
    const char *uri;            /* the SE, as the host library names it */
    const char *id;
    char uid_hex[2 * EA_UNIQUE_ID_LEN + 1];
    uint8_t pub[65];
    bool attested;
    bool registered;            /* the registry has this device already */
    bool changed;               /* this run changed something */
    bool issued;                /* the CA issued the certificate in this run */
    X509 *cert;
    uint8_t *cert_der;
    size_t cert_len;
    char *err;
    size_t errlen;
} dev;

#define DFAIL(code, ...)                                                                                               \
    do {                                                                                                               \
        ea_seterr(d->err, d->errlen, __VA_ARGS__);                                                                        \
        return (code);                                                                                                 \
    } while (0)

static ea_policy key_policy(const ea_station *st)
{
    /* Sign, and read (for a key pair only the public half is ever readable). */
    return ea_policy_everyone(EA_POL_ALLOW_SIGN | EA_POL_ALLOW_READ | (st->allow_delete ? EA_POL_ALLOW_DELETE : 0));
}

static ea_policy cert_policy(const ea_station *st, size_t len)
{
    /* Read-only: created whole in one APDU, so no write is ever needed again.
     * A certificate too big for one APDU is written in chunks, and the
     * chunks after the first need ALLOW_WRITE. */
    return ea_policy_everyone(EA_POL_ALLOW_READ | (len > ONESHOT_MAX ? EA_POL_ALLOW_WRITE : 0) |
                              (st->allow_delete ? EA_POL_ALLOW_DELETE : 0));
}

static ea_err dev_registry_check(dev *d)
{
    const char *uid = NULL, *other = NULL;
    if (pm_registry_refresh(d->st->reg) != EA_OK)
        DFAIL(EA_ERR_IO, "cannot read the registry");
    if (pm_registry_find_device(d->st->reg, d->id, &uid, NULL)) {
        if (strcasecmp(uid, d->uid_hex) != 0)
            DFAIL(EA_ERR_EXISTS, "device id %s is already registered for another chip (%s)", d->id, uid);
        d->registered = true;
    } else if (pm_registry_find_uid(d->st->reg, d->uid_hex, &other)) {
        DFAIL(EA_ERR_EXISTS, "this chip (%s) is already registered as device %s", d->uid_hex, other);
    }
    return EA_OK;
}

/* The access rules an existing key may have to be certified: it signs,
 * and nobody can replace or export it later. */
static bool key_policy_ok(uint32_t ar, char *why, size_t whylen)
{
    if (ar & EA_POL_FORBID_ALL || !(ar & EA_POL_ALLOW_SIGN)) {
        ea_seterr(why, whylen, "its policy does not allow signing");
        return false;
    }
    if (ar & (EA_POL_ALLOW_WRITE | EA_POL_ALLOW_GEN | EA_POL_ALLOW_IMPORT_EXPORT)) {
        ea_seterr(why, whylen, "its policy allows %s, so it could be replaced or exported after certification",
               ar & EA_POL_ALLOW_IMPORT_EXPORT ? "export" : ar & EA_POL_ALLOW_GEN ? "regeneration" : "overwriting");
        return false;
    }
    return true;
}

static ea_err dev_key(dev *d)
{
    ea_station *st = d->st;
    bool exists = false;
    ea_policy pol = key_policy(st);
    ea_err rc;

    if ((rc = ea_host_exists(d->h, EA_OBJ_DEVICE_KEY, &exists)) != EA_OK)
        DFAIL(rc, "cannot reach the SE: %s", ea_host_last_error(d->h));
    if (!exists) {
        if (d->registered)
            DFAIL(EA_ERR_CORRUPT, "device %s is registered but its key 0x%08X is gone from the chip", d->id,
                  EA_OBJ_DEVICE_KEY);
        if ((rc = ea_host_ec_generate(d->h, EA_OBJ_DEVICE_KEY, EA_CURVE_NIST_P256, &pol, false)) != EA_OK)
            DFAIL(rc, "cannot generate the device key 0x%08X in the SE: %s", EA_OBJ_DEVICE_KEY,
                  ea_host_last_error(d->h));
        d->changed = true;
        crash_point(st, "key");
    }
    return EA_OK;
}

static ea_err dev_attest(dev *d)
{
    ea_station *st = d->st;
    pm_attested at;
    char why[400];
    ea_err rc;

    if (st->no_attestation) {
        uint8_t type = 0;
        bool transient = false;
        size_t n = sizeof d->pub;
        if ((rc = ea_host_read_type(d->h, EA_OBJ_DEVICE_KEY, &type, &transient)) != EA_OK ||
            (rc = ea_host_read_pubkey(d->h, EA_OBJ_DEVICE_KEY, d->pub, &n)) != EA_OK)
            DFAIL(rc, "cannot read the public key of 0x%08X: %s", EA_OBJ_DEVICE_KEY, ea_host_last_error(d->h));
        if (type != EA_TYPE_EC_P256_PAIR || n != 65)
            DFAIL(EA_ERR_CONDITIONS, "0x%08X is not a P-256 key pair", EA_OBJ_DEVICE_KEY);
        /* Recorded: the CA certifies a key nobody proved to be in a genuine SE. */
        pj_sb a = { 0 };
        pj_sb_puts(&a, "\"device\":");
        pj_sb_str(&a, d->id);
        pj_sb_puts(&a, ",\"unique_id\":");
        pj_sb_str(&a, d->uid_hex);
        pj_sb_puts(&a, ",\"reason\":\"--no-attestation\"");
        rc = a.oom ? EA_ERR_NO_MEMORY : ea_ca_audit(st->ca, "provision_no_attestation", a.p);
        pj_sb_free(&a);
        if (rc != EA_OK)
            DFAIL(rc, "cannot record --no-attestation in the audit log of %s", st->ca_dir);
        crash_point(st, "attest");
        return EA_OK;
    }
    rc = pm_attest_key(d->h, EA_OBJ_DEVICE_KEY, st->anchors, 1u << EA_ORIGIN_INTERNAL, &at, why, sizeof why);
    if (rc != EA_OK)
        DFAIL(rc == EA_ERR_NOT_FOUND || rc == EA_ERR_IO ? rc : EA_ERR_AUTH,
              "attestation of the device key refused: %s", why);
    if (!key_policy_ok(at.policy, why, sizeof why))
        DFAIL(EA_ERR_POLICY, "the device key 0x%08X cannot be certified: %s", EA_OBJ_DEVICE_KEY, why);
    memcpy(d->pub, at.pub, sizeof d->pub);
    d->attested = true;
    crash_point(st, "attest");
    return EA_OK;
}

/* Is x a certificate of ours for this device and key? */
static bool cert_is_ours(dev *d, X509 *x)
{
    char cn[128];
    uint8_t pt[65];
    X509 *inter = ea_station_intermediate(d->st);

    pm_name_entry(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    return strcmp(cn, d->id) == 0 && pm_cert_p256_point(x, pt) && memcmp(pt, d->pub, 65) == 0 &&
           X509_check_issued(inter, x) == X509_V_OK && X509_verify(x, X509_get0_pubkey(inter)) == 1;
}

/* An object that must hold want (or be absent): delete it if it holds
 * something else, refuse if its policy forbids that. *present says whether
 * it already holds want. */
static ea_err clear_if_other(dev *d, uint32_t id, const uint8_t *want, size_t want_len, bool *present)
{
    bool exists = false;
    uint8_t *cur = NULL;
    size_t n = CERT_MAX;
    ea_err rc;

    *present = false;
    if ((rc = ea_host_exists(d->h, id, &exists)) != EA_OK)
        DFAIL(rc, "cannot reach the SE: %s", ea_host_last_error(d->h));
    if (!exists)
        return EA_OK;
    if (!(cur = malloc(CERT_MAX)))
        return EA_ERR_NO_MEMORY;
    rc = ea_host_read_object(d->h, id, cur, &n);
    *present = rc == EA_OK && want && n == want_len && memcmp(cur, want, n) == 0;
    free(cur);
    if (*present)
        return EA_OK;
    if ((rc = ea_host_delete(d->h, id)) != EA_OK) {
        if (rc == EA_ERR_DENIED)
            DFAIL(EA_ERR_DENIED,
                  "object 0x%08X already holds other content and its policy forbids deleting it (this chip was "
                  "provisioned before, without --allow-delete); use another chip",
                  id);
        DFAIL(rc, "cannot delete object 0x%08X: %s", id, ea_host_last_error(d->h));
    }
    d->changed = true;
    return EA_OK;
}

/* The CSR's SubjectPublicKeyInfo straight from the attested point.
 * X509_REQ_set_pubkey() would run the key through an OpenSSL 3 encoder and
 * back through a decoder, a lookup among every provider's encoders that
 * costs more than the rest of the CSR (bench/provision.c); the SPKI of a
 * P-256 key is two OIDs and the point. */
static bool set_p256_spki(X509_REQ *req, const uint8_t pub[65])
{
    X509_PUBKEY *pk = X509_REQ_get_X509_PUBKEY(req);
    unsigned char *enc = OPENSSL_memdup(pub, 65);

    if (!pk || !enc ||
        !X509_PUBKEY_set0_param(pk, OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                                OBJ_nid2obj(NID_X9_62_prime256v1), enc, 65)) {
        OPENSSL_free(enc);
        return false;
    }
    return true;
}

/* The CSR, signed by the SE key through our provider in the station's
 * library context: the same path a program using the key would take. */
static ea_err dev_csr(dev *d, uint8_t **der, size_t *len)
{
    ea_station *st = d->st;
    char uri[1200];
    OSSL_STORE_CTX *sc = NULL;
    OSSL_STORE_INFO *info = NULL;
    EVP_PKEY *pk = NULL;
    X509_REQ *req = NULL;
    X509_NAME *nm = NULL;
    EVP_MD_CTX *mc = NULL;
    unsigned char *out = NULL;
    uint8_t pt[65];
    int n;
    ea_err rc = EA_ERR_CRYPTO;

    /* Our provider keeps up to PROV_SESSIONS SEs open (see prov_load). */
    bool known = false;
    for (size_t i = 0; i < st->prov_n; i++)
        known = known || !strcmp(st->prov_uri[i], d->uri);
    if (!known) {
        if (st->prov_n == PROV_SESSIONS && prov_load(st) != EA_OK)
            DFAIL(EA_ERR_CRYPTO, "cannot load the OpenSSL providers again");
        snprintf(st->prov_uri[st->prov_n++], sizeof st->prov_uri[0], "%s", d->uri);
    }
    snprintf(uri, sizeof uri, "se05x:0x%08X?se=%s", EA_OBJ_DEVICE_KEY, d->uri);
    if (!(sc = OSSL_STORE_open_ex(uri, st->libctx, NULL, NULL, NULL, NULL, NULL, NULL))) {
        ea_seterr(d->err, d->errlen, "the provider cannot open %s", uri);
        goto out;
    }
    while (!pk && !OSSL_STORE_eof(sc) && (info = OSSL_STORE_load(sc)) != NULL) {
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    if (!pk) {
        ea_seterr(d->err, d->errlen, "the provider found no key at %s", uri);
        goto out;
    }
    if (!pm_p256_point(pk, pt) || memcmp(pt, d->pub, 65) != 0) {
        ea_seterr(d->err, d->errlen, "the key the provider loaded is not the attested key");
        rc = EA_ERR_AUTH;
        goto out;
    }
    if (!(req = X509_REQ_new_ex(st->libctx, NULL)) || !(nm = X509_NAME_new()) ||
        !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_NAME_add_entry_by_NID(nm, NID_organizationName, MBSTRING_UTF8, (const unsigned char *)st->org, -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_UTF8, (const unsigned char *)d->id, -1, -1, 0) ||
        !X509_REQ_set_subject_name(req, nm) || !set_p256_spki(req, d->pub) || !(mc = EVP_MD_CTX_new()) ||
        EVP_DigestSignInit_ex(mc, NULL, "SHA256", st->libctx, NULL, pk, NULL) != 1 || X509_REQ_sign_ctx(req, mc) <= 0 ||
        (n = i2d_X509_REQ(req, &out)) <= 0) {
        ea_seterr(d->err, d->errlen, "cannot build or sign the CSR with the SE key");
        goto out;
    }
    *der = out;
    *len = (size_t)n;
    out = NULL;
    rc = EA_OK;
out:
    OPENSSL_free(out);
    EVP_MD_CTX_free(mc);
    X509_NAME_free(nm);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    OSSL_STORE_close(sc);
    return rc;
}

static ea_err dev_issue(dev *d)
{
    ea_station *st = d->st;
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    char note[600];
    ea_err rc;

    if ((rc = dev_csr(d, &csr, &csr_len)) != EA_OK)
        return rc;
    crash_point(st, "csr");
    if (d->attested)
        snprintf(note, sizeof note, "provisioned: key generated in SE %s, attested under %s", d->uid_hex,
                 st->vendor_ca);
    else
        snprintf(note, sizeof note, "provisioned: SE %s, --no-attestation", d->uid_hex);
    rc = ea_ca_issue_device(st->ca, csr, csr_len, d->id, note, &d->cert, d->err, d->errlen);
    OPENSSL_free(csr);
    if (rc != EA_OK)
        return rc;
    d->changed = d->issued = true;
    crash_point(st, "issue");
    return EA_OK;
}

/* Find or make the certificate: the CA's active one for this device and
 * key (issued by an earlier run), or a new one. Before a new one is issued
 * the objects that must change are cleared, so a refusal there (an object
 * we may not delete) costs no certificate. */
static ea_err dev_cert(dev *d)
{
    ea_station *st = d->st;
    char serial[64] = "";
    bool present;
    ea_err rc;

    if (ea_ca_device_active(st->ca, d->id)) {
        /* Issued before, by this station or another: reuse it if it is for
         * this key (a crash between issuance and the write into the SE). */
        X509 *x = NULL;
        if ((rc = ea_ca_device_cert(st->ca, d->id, &x)) != EA_OK)
            DFAIL(rc, "the CA says %s is active but cannot produce its certificate (%s)", d->id, ea_err_str(rc));
        if (!cert_is_ours(d, x)) {
            pm_serial_hex(x, serial, sizeof serial);
            X509_free(x);
            DFAIL(EA_ERR_EXISTS,
                  "device id %s already has an active certificate (serial %s) for another key; revoke it first "
                  "(edgeauth ca revoke %s) or use another device id",
                  d->id, serial, d->id);
        }
        d->cert = x;
        return EA_OK;
    }
    if (d->registered)
        DFAIL(EA_ERR_DENIED, "device %s is registered but the CA has no active certificate for it (revoked?)",
              d->id);
    /* A new certificate: the device object can hold nothing we keep. */
    if ((rc = clear_if_other(d, EA_OBJ_DEVICE_CERT, NULL, 0, &present)) != EA_OK ||
        (rc = clear_if_other(d, EA_OBJ_OEM_INTERMEDIATE, st->inter_der, st->inter_len, &present)) != EA_OK ||
        (rc = clear_if_other(d, EA_OBJ_OEM_ROOT, st->root_der, st->root_len, &present)) != EA_OK)
        return rc;
    return dev_issue(d);
}

/* The certificate is for this key and device (and, unless the CA issued
 * it in this run, chains to our root: a certificate taken back from the SE
 * or the CA's files is checked like one from outside). */
static ea_err dev_check_cert(dev *d, bool fresh)
{
    ea_station *st = d->st;
    ea_verify_reason reason = EA_VERIFY_OTHER;
    char detail[256] = "", cn[128];
    uint8_t pt[65];
    ea_verify_opts vo = { .trusted = st->trusted, .untrusted = st->untrusted, .role = EA_VERIFY_CLIENT };

    pm_name_entry(X509_get_subject_name(d->cert), NID_commonName, cn, sizeof cn);
    if (strcmp(cn, d->id) != 0 || !pm_cert_p256_point(d->cert, pt) || memcmp(pt, d->pub, 65) != 0)
        DFAIL(EA_ERR_AUTH, "the certificate for %s does not certify the SE key", d->id);
    if (!fresh && ea_pki_verify_chain(d->cert, &vo, &reason, detail, sizeof detail) != EA_OK)
        DFAIL(EA_ERR_AUTH, "the certificate for %s does not verify: %s %s", d->id, ea_verify_reason_str(reason),
              detail);
    if (der_of(d->cert, &d->cert_der, &d->cert_len) != EA_OK)
        DFAIL(EA_ERR_CRYPTO, "cannot encode the certificate");
    return EA_OK;
}

static ea_err sw_err(uint16_t sw)
{
    switch (sw) {
    case EA_SW_OK: return EA_OK;
    case EA_SW_CONDITIONS_NOT_SATISFIED: return EA_ERR_CONDITIONS;
    case EA_SW_COMMAND_NOT_ALLOWED: return EA_ERR_DENIED;
    case EA_SW_WRONG_DATA: return EA_ERR_WRONG_DATA;
    case EA_SW_FILE_FULL: return EA_ERR_FULL;
    default: return EA_ERR_CARD;
    }
}

/* Create a binary object with all of its content in one WriteBinary APDU,
 * so that it exists whole or not at all (ea_host_write_binary sends 500-byte
 * chunks, and a crash between two leaves a half-written object). */
static ea_err write_whole(ea_host *h, uint32_t id, const uint8_t *data, size_t len, const ea_policy *pol)
{
    uint8_t body[ONESHOT_MAX + 64], apdu[ONESHOT_MAX + 80], pb[EA_POLICY_MAX_RULES * 9], r[64];
    ea_wbuf w = ea_wbuf_make(body, sizeof body);
    size_t rl = sizeof r, pn = 0, an = 0;
    ea_err rc;

    for (size_t i = 0; i < pol->n && i < EA_POLICY_MAX_RULES; i++) {
        pb[pn] = 8;
        ea_put_be32(pb + pn + 1, pol->rule[i].auth_id);
        ea_put_be32(pb + pn + 5, pol->rule[i].ar);
        pn += 9;
    }
    ea_tlv_put(&w, EA_TAG_POLICY, pb, pn);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u16(&w, EA_TAG_3, (uint16_t)len);
    ea_tlv_put(&w, EA_TAG_4, data, len);
    if (w.overflow || len > ONESHOT_MAX)
        return EA_ERR_ARG;
    apdu[an++] = EA_CLA_APPLET;
    apdu[an++] = EA_INS_WRITE;
    apdu[an++] = EA_P1_BINARY;
    apdu[an++] = EA_P2_DEFAULT;
    if (w.len < 256) {
        apdu[an++] = (uint8_t)w.len;
    } else {
        apdu[an++] = 0;
        apdu[an++] = (uint8_t)(w.len >> 8);
        apdu[an++] = (uint8_t)w.len;
    }
    memcpy(apdu + an, w.p, w.len);
    an += w.len;
    if ((rc = ea_host_transceive(h, apdu, an, r, &rl)) != EA_OK)
        return rc;
    if (rl < 2)
        return EA_ERR_MALFORMED;
    return sw_err((uint16_t)(r[rl - 2] << 8 | r[rl - 1]));
}

/* Put one certificate object in place and read it back. */
static ea_err put_object(dev *d, uint32_t id, const uint8_t *der, size_t len, const char *what)
{
    ea_policy pol = cert_policy(d->st, len);
    uint8_t *back = NULL;
    size_t n = CERT_MAX;
    bool present;
    ea_err rc;

    if ((rc = clear_if_other(d, id, der, len, &present)) != EA_OK)
        return rc;
    if (present)
        return EA_OK;
    rc = len <= ONESHOT_MAX ? write_whole(d->h, id, der, len, &pol) : ea_host_write_binary(d->h, id, der, len, &pol);
    if (rc != EA_OK)
        DFAIL(rc, "cannot write the %s into 0x%08X: %s", what, id,
              *ea_host_last_error(d->h) ? ea_host_last_error(d->h) : ea_err_str(rc));
    d->changed = true;
    if (!(back = malloc(CERT_MAX)))
        return EA_ERR_NO_MEMORY;
    rc = ea_host_read_object(d->h, id, back, &n);
    if (rc == EA_OK && (n != len || memcmp(back, der, len) != 0))
        rc = EA_ERR_CORRUPT;
    free(back);
    if (rc != EA_OK)
        DFAIL(rc, "the %s read back from 0x%08X differs from what was written (%s)", what, id, ea_err_str(rc));
    return EA_OK;
}

static ea_err dev_write(dev *d)
{
    ea_station *st = d->st;
    ea_err rc;
    if ((rc = put_object(d, EA_OBJ_DEVICE_CERT, d->cert_der, d->cert_len, "device certificate")) != EA_OK)
        return rc;
    crash_point(st, "cert");
    if ((rc = put_object(d, EA_OBJ_OEM_INTERMEDIATE, st->inter_der, st->inter_len, "intermediate CA")) != EA_OK)
        return rc;
    crash_point(st, "intermediate");
    if ((rc = put_object(d, EA_OBJ_OEM_ROOT, st->root_der, st->root_len, "root CA")) != EA_OK)
        return rc;
    crash_point(st, "root");
    return EA_OK;
}

static ea_err dev_register(dev *d, ea_provision_result *res)
{
    ea_station *st = d->st;
    bool added = false;
    ea_err rc;
    pm_reg_rec rec = { d->id, d->uid_hex, res->serial, res->fingerprint, "provisioned", d->attested };

    if ((rc = pm_registry_add(st->reg, &rec, &added, d->err, d->errlen)) != EA_OK)
        return rc;
    if (added) {
        pj_sb a = { 0 };
        pj_sb_puts(&a, "\"device\":");
        pj_sb_str(&a, d->id);
        pj_sb_puts(&a, ",\"unique_id\":");
        pj_sb_str(&a, d->uid_hex);
        pj_sb_puts(&a, ",\"serial\":");
        pj_sb_str(&a, res->serial);
        pj_sb_puts(&a, ",\"fingerprint\":");
        pj_sb_str(&a, res->fingerprint);
        pj_sb_puts(&a, d->attested ? ",\"attested\":true" : ",\"attested\":false");
        /* The registry line is the commit; the audit record follows it (a
         * crash between the two leaves the certificate's own issue record). */
        rc = a.oom ? EA_ERR_NO_MEMORY : ea_ca_audit(st->ca, "provision", a.p);
        pj_sb_free(&a);
        if (rc != EA_OK)
            DFAIL(rc, "cannot append to the audit log of %s", st->ca_dir);
        d->changed = true;
        crash_point(st, "registry");
    }
    return EA_OK;
}

/* The flow for one chip; *cert (may be NULL) receives the certificate. */
static ea_err provision_one(ea_station *st, const char *se_uri, const char *device_id, ea_provision_result *res,
                            X509 **cert_out, char *err, size_t errlen)
{
    dev dv = { .st = st, .id = device_id, .err = err, .errlen = errlen };
    dev *d = &dv;
    uint8_t uid[EA_UNIQUE_ID_LEN];
    char herr[400] = "";
    ea_err rc;

    if (err && errlen)
        err[0] = '\0';
    memset(res, 0, sizeof *res);
    if (!device_id || !*device_id || strlen(device_id) >= sizeof res->device_id) {
        ea_seterr(err, errlen, "a device id (1 to %zu characters) is required", sizeof res->device_id - 1);
        return EA_ERR_ARG;
    }
    snprintf(res->device_id, sizeof res->device_id, "%s", device_id);
    if ((rc = ea_host_open(se_uri, NULL, &d->h, herr, sizeof herr)) != EA_OK) {
        ea_seterr(err, errlen, "cannot open the SE %s: %s", se_uri ? se_uri : "(default)",
               herr[0] ? herr : ea_err_str(rc));
        return rc;
    }
    d->uri = ea_host_uri(d->h);
    if ((rc = ea_host_unique_id(d->h, uid)) != EA_OK) {
        ea_seterr(err, errlen, "cannot read the SE's unique id: %s", ea_host_last_error(d->h));
        goto out;
    }
    ea_hex_encode(uid, sizeof uid, d->uid_hex);
    snprintf(res->unique_id, sizeof res->unique_id, "%s", d->uid_hex);
    if ((rc = dev_registry_check(d)) != EA_OK || (rc = dev_key(d)) != EA_OK || (rc = dev_attest(d)) != EA_OK ||
        (rc = dev_cert(d)) != EA_OK || (rc = dev_check_cert(d, d->issued)) != EA_OK)
        goto out;
    if (!pm_serial_hex(d->cert, res->serial, sizeof res->serial) || !pm_fingerprint(d->cert, res->fingerprint)) {
        rc = EA_ERR_CRYPTO;
        ea_seterr(err, errlen, "cannot read the certificate's serial");
        goto out;
    }
    if ((rc = dev_write(d)) != EA_OK || (rc = dev_register(d, res)) != EA_OK)
        goto out;
    res->already_done = !d->changed;
    if (cert_out) {
        *cert_out = d->cert;
        d->cert = NULL;
    }
out:
    X509_free(d->cert);
    OPENSSL_free(d->cert_der);
    ea_host_close(d->h);
    return rc;
}

ea_err ea_station_provision(ea_station *st, const char *se_uri, const char *device_id, ea_provision_result *res,
                            char *err, size_t errlen)
{
    if (!st || !res)
        return EA_ERR_ARG;
    return provision_one(st, se_uri, device_id, res, NULL, err, errlen);
}

ea_err ea_provision_device(const ea_provision_opts *o, ea_provision_result *res, char *err, size_t errlen)
{
    ea_station *st = NULL;
    ea_err rc, rc2;

    if (!o || !res)
        return EA_ERR_ARG;
    if ((rc = ea_station_open(o, &st, err, errlen)) != EA_OK)
        return rc;
    rc = provision_one(st, o->se_uri, o->device_id, res, NULL, err, errlen);
    rc2 = ea_station_close(st);
    if (rc == EA_OK && rc2 != EA_OK) {
        ea_seterr(err, errlen, "cannot sync the registry");
        rc = rc2;
    }
    return rc;
}

/* ==== a batch of emulated chips ====================================================================== */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A chip dir from an earlier run is reused if its factory objects are all
 * there; one whose creation was cut short is made again. */
static ea_err batch_chip(const char *path, const char *vdir, bool *created, char *err, size_t errlen)
{
    char idx[PATH_MAX + 32], uri[PATH_MAX + 8];
    ea_emu_init_opts io = { .vendor_ca_dir = vdir };
    ea_host *h = NULL;
    bool a = false, c = false, u = false;

    *created = false;
    snprintf(idx, sizeof idx, "%s/objects/index", path);
    if (access(idx, F_OK) == 0) {
        snprintf(uri, sizeof uri, "emu:%s", path);
        if (ea_host_open(uri, NULL, &h, NULL, 0) == EA_OK && ea_host_exists(h, EA_OBJ_UNIQUE_ID, &u) == EA_OK &&
            ea_host_exists(h, EA_OBJ_ATTEST_KEY, &a) == EA_OK && ea_host_exists(h, EA_OBJ_ATTEST_CERT, &c) == EA_OK &&
            u && a && c) {
            ea_host_close(h);
            return EA_OK;
        }
        ea_host_close(h);
        io.force = 1;
    }
    *created = true;
    return ea_emu_init(path, &io, err, errlen);
}

static time_t cert_time(X509 *x)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) != 1)
        return 0;
    return timegm(&tm);
}

ea_err ea_provision_batch(const ea_batch_opts *o, ea_batch_result *res, char *err, size_t errlen)
{
    char vdir[PATH_MAX], vpem[PATH_MAX + 32], path[PATH_MAX + 32], uri[PATH_MAX + 40], id[128];
    const char *prefix;
    ea_station *st = NULL;
    ea_manifest *m = NULL;
    EVP_PKEY *skey;
    X509 *scert;
    STACK_OF(X509) *chain = NULL;
    double t0;
    ea_err rc = EA_ERR_INTERNAL;

    if (err && errlen)
        err[0] = '\0';
    if (!o || !res || !o->se_dir || !o->ca_dir || o->count == 0 || o->count > 999999) {
        ea_seterr(err, errlen, "batch: a chip count (1..999999), a chip directory and a CA directory are required");
        return EA_ERR_ARG;
    }
    memset(res, 0, sizeof *res);
    prefix = o->id_prefix ? o->id_prefix : "dev-";
    if (strlen(prefix) > 60) {
        ea_seterr(err, errlen, "batch: the device id prefix is too long");
        return EA_ERR_ARG;
    }
    if (ea_mkdir_p(o->se_dir, 0700) != EA_OK) {
        ea_seterr(err, errlen, "cannot create %s: %s", o->se_dir, strerror(errno));
        return EA_ERR_IO;
    }
    snprintf(vdir, sizeof vdir, "%s", o->vendor_ca_dir ? o->vendor_ca_dir : "");
    if (!o->vendor_ca_dir)
        snprintf(vdir, sizeof vdir, "%.4000s/vendor", o->se_dir);
    snprintf(vpem, sizeof vpem, "%s/vendor-ca.pem", vdir);

    /* 1. the chips (timed apart: on a line they arrive made). */
    t0 = now_s();
    for (size_t i = 1; i <= o->count; i++) {
        bool made = false;
        snprintf(path, sizeof path, "%.4000s/chip-%04zu", o->se_dir, i);
        if ((rc = batch_chip(path, vdir, &made, err, errlen)) != EA_OK) {
            char inner[300];
            snprintf(inner, sizeof inner, "%s", err ? err : "");
            ea_seterr(err, errlen, "cannot create the chip %s: %s", path, inner[0] ? inner : ea_err_str(rc));
            return rc;
        }
        res->created += made;
    }
    res->create_seconds = now_s() - t0;

    /* 2. provision them, one station for all. */
    t0 = now_s();
    ea_provision_opts po = { .ca_dir = o->ca_dir, .vendor_ca_pem = vpem, .registry_path = o->registry_path,
                             .allow_delete = o->allow_delete };
    if ((rc = ea_station_open(&po, &st, err, errlen)) != EA_OK)
        return rc;
    ea_station_set_batch(st, true);
    if (o->manifest_path) {
        if ((rc = ea_station_signer(st, &skey, &scert, err, errlen)) != EA_OK ||
            (rc = ea_manifest_new(skey, scert, &m)) != EA_OK) {
            if (rc == EA_ERR_ARG)
                ea_seterr(err, errlen, "the manifest signer of %s cannot sign (P-256 key and SKI needed)", o->ca_dir);
            goto out;
        }
        rc = EA_ERR_NO_MEMORY;
        if (!(chain = sk_X509_new_null()) || !sk_X509_push(chain, ea_station_intermediate(st)) ||
            !sk_X509_push(chain, ea_station_root(st)))
            goto out;
    }
    for (size_t i = 1; i <= o->count; i++) {
        ea_provision_result r;
        X509 *cert = NULL;
        char inner[512];
        snprintf(path, sizeof path, "%.4000s/chip-%04zu", o->se_dir, i);
        snprintf(uri, sizeof uri, "emu:%s", path);
        snprintf(id, sizeof id, "%s%04zu", prefix, i);
        if ((rc = provision_one(st, uri, id, &r, &cert, inner, sizeof inner)) != EA_OK) {
            ea_seterr(err, errlen, "%s (%s): %s", path, id, inner);
            goto out;
        }
        if (r.already_done)
            res->already_done++;
        else
            res->provisioned++;
        if (m) {
            ea_manifest_item it = { .unique_id = r.unique_id, .device_id = id, .provisioned_at = cert_time(cert),
                                    .key_id = EA_OBJ_DEVICE_KEY, .cert = cert, .chain = chain };
            rc = ea_manifest_add(m, &it, err, errlen);
        }
        X509_free(cert);
        if (rc != EA_OK)
            goto out;
        if (o->progress) {
            ea_batch_progress p = { i, o->count, path, &r };
            o->progress(o->progress_ctx, &p);
        }
    }
    if (m && (rc = ea_manifest_write(m, o->manifest_path, err, errlen)) != EA_OK)
        goto out;
    rc = EA_OK;
out:
    sk_X509_free(chain); /* the certificates are the station's */
    ea_manifest_free(m);
    if (ea_station_close(st) != EA_OK && rc == EA_OK) {
        ea_seterr(err, errlen, "cannot sync the registry");
        rc = EA_ERR_IO;
    }
    res->provision_seconds = now_s() - t0;
    return rc;
}
