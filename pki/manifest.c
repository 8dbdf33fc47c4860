/* Signed manifests (JWS, flattened JSON serialization, ES256) and the
 * onboarding of pre-provisioned chips; plus the small JSON reader/writer and
 * the encodings they need (pki/manifest.h).
 *
 * The verifier is strict on purpose: it is what stands between a file that
 * arrived by e-mail and the cloud's list of trusted devices. Every member
 * is checked for presence and type, the protected header may hold nothing
 * but the three members we sign, duplicate JSON keys are refused (two
 * parsers would otherwise disagree on which one counts), and base64url must
 * be canonical. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"
#include "edgeauth/host.h"
#include "edgeauth/manifest.h"
#include "edgeauth/pki.h"
#include "pki/manifest.h"

#define MANIFEST_MAX (256u * 1024u * 1024u) /* bytes of a manifest file we read */
#define CERT_MAX 0x7FFFu                     /* largest certificate an SE object holds */
#define ID_HEX_MAX 64u                       /* hex digits of a unique id */

/* ==== JSON writer =============================================================== */

void pj_sb_put(pj_sb *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n + 1 > b->cap - b->len || !b->p) {
        size_t need = b->len + n + 1, cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void pj_sb_puts(pj_sb *b, const char *s)
{
    pj_sb_put(b, s, strlen(s));
}

void pj_sb_printf(pj_sb *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        pj_sb_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    pj_sb_put(b, big, (size_t)n);
    free(big);
}

void pj_sb_str(pj_sb *b, const char *s)
{
    pj_sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': pj_sb_put(b, "\\\"", 2); break;
        case '\\': pj_sb_put(b, "\\\\", 2); break;
        case '\n': pj_sb_put(b, "\\n", 2); break;
        case '\r': pj_sb_put(b, "\\r", 2); break;
        case '\t': pj_sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20)
                pj_sb_printf(b, "\\u%04x", *p);
            else
                pj_sb_put(b, (const char *)p, 1);
        }
    }
    pj_sb_put(b, "\"", 1);
}

void pj_sb_free(pj_sb *b)
{
    if (!b)
        return;
    free(b->p);
    *b = (pj_sb){ 0 };
}

/* ==== JSON reader ================================================================ */

typedef struct pj_in {
    const char *start, *p, *end;
    unsigned depth;
    char *err;
    size_t errlen;
} pj_in;

static bool jfail(pj_in *in, const char *what)
{
    if (in->err && in->errlen && !in->err[0])
        ea_seterr(in->err, in->errlen, "JSON: %s at byte %zu", what, (size_t)(in->p - in->start));
    return false;
}

static void jws(pj_in *in)
{
    while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
        in->p++;
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

static bool jhex4(pj_in *in, unsigned *v)
{
    *v = 0;
    if (in->end - in->p < 4)
        return jfail(in, "short \\u escape");
    for (int i = 0; i < 4; i++) {
        int h = hexval(in->p[i]);
        if (h < 0)
            return jfail(in, "bad \\u escape");
        *v = *v << 4 | (unsigned)h;
    }
    in->p += 4;
    return true;
}

static void put_utf8(pj_sb *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    pj_sb_put(b, u, n);
}

/* in->p is just past the opening quote. */
static bool jstring(pj_in *in, char **out, size_t *out_len)
{
    pj_sb b = { 0 };
    pj_sb_put(&b, "", 0);
    while (in->p < in->end && *in->p != '"') {
        unsigned char c = (unsigned char)*in->p;
        if (c < 0x20) {
            pj_sb_free(&b);
            return jfail(in, "control character in a string");
        }
        if (c != '\\') {
            /* copy a run of plain bytes at once */
            const char *s = in->p;
            while (in->p < in->end && *in->p != '"' && *in->p != '\\' && (unsigned char)*in->p >= 0x20)
                in->p++;
            pj_sb_put(&b, s, (size_t)(in->p - s));
            continue;
        }
        if (++in->p >= in->end)
            break;
        char e = *in->p++;
        unsigned cp, lo;
        switch (e) {
        case '"': pj_sb_put(&b, "\"", 1); break;
        case '\\': pj_sb_put(&b, "\\", 1); break;
        case '/': pj_sb_put(&b, "/", 1); break;
        case 'b': pj_sb_put(&b, "\b", 1); break;
        case 'f': pj_sb_put(&b, "\f", 1); break;
        case 'n': pj_sb_put(&b, "\n", 1); break;
        case 'r': pj_sb_put(&b, "\r", 1); break;
        case 't': pj_sb_put(&b, "\t", 1); break;
        case 'u':
            if (!jhex4(in, &cp)) {
                pj_sb_free(&b);
                return false;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (in->end - in->p < 2 || in->p[0] != '\\' || in->p[1] != 'u') {
                    pj_sb_free(&b);
                    return jfail(in, "lone surrogate");
                }
                in->p += 2;
                if (!jhex4(in, &lo)) {
                    pj_sb_free(&b);
                    return false;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    pj_sb_free(&b);
                    return jfail(in, "lone surrogate");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                pj_sb_free(&b);
                return jfail(in, "lone surrogate");
            } else if (cp == 0) {
                /* C strings end at NUL: a name with one inside would be
                 * compared as something shorter than it is. */
                pj_sb_free(&b);
                return jfail(in, "\\u0000 in a string");
            }
            put_utf8(&b, cp);
            break;
        default:
            pj_sb_free(&b);
            return jfail(in, "bad escape");
        }
    }
    if (in->p >= in->end) {
        pj_sb_free(&b);
        return jfail(in, "unterminated string");
    }
    in->p++; /* closing quote */
    if (b.oom) {
        pj_sb_free(&b);
        return jfail(in, "out of memory");
    }
    *out = b.p;
    *out_len = b.len;
    return true;
}

static bool jnumber(pj_in *in, double *v)
{
    const char *s = in->p;
    char buf[64];

    if (in->p < in->end && *in->p == '-')
        in->p++;
    if (in->p >= in->end || !isdigit((unsigned char)*in->p))
        return jfail(in, "bad number");
    if (*in->p == '0')
        in->p++;
    else
        while (in->p < in->end && isdigit((unsigned char)*in->p))
            in->p++;
    if (in->p < in->end && *in->p == '.') {
        in->p++;
        if (in->p >= in->end || !isdigit((unsigned char)*in->p))
            return jfail(in, "bad number");
        while (in->p < in->end && isdigit((unsigned char)*in->p))
            in->p++;
    }
    if (in->p < in->end && (*in->p == 'e' || *in->p == 'E')) {
        in->p++;
        if (in->p < in->end && (*in->p == '+' || *in->p == '-'))
            in->p++;
        if (in->p >= in->end || !isdigit((unsigned char)*in->p))
            return jfail(in, "bad number");
        while (in->p < in->end && isdigit((unsigned char)*in->p))
            in->p++;
    }
    if ((size_t)(in->p - s) >= sizeof buf)
        return jfail(in, "number too long");
    memcpy(buf, s, (size_t)(in->p - s));
    buf[in->p - s] = '\0';
    *v = strtod(buf, NULL);
    return true;
}

static bool jvalue(pj_in *in, pj *out);

static bool jgrow(pj *v, size_t *cap, bool with_keys)
{
    if (v->n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 4;
    pj *nk = realloc(v->kid, nc * sizeof *nk);
    if (!nk)
        return false;
    v->kid = nk;
    if (with_keys) {
        char **nkey = realloc(v->key, nc * sizeof *nkey);
        if (!nkey)
            return false;
        v->key = nkey;
    }
    *cap = nc;
    return true;
}

static bool jarray(pj_in *in, pj *out)
{
    size_t cap = 0;
    out->t = PJ_ARR;
    jws(in);
    if (in->p < in->end && *in->p == ']') {
        in->p++;
        return true;
    }
    for (;;) {
        if (!jgrow(out, &cap, false))
            return jfail(in, "out of memory");
        out->kid[out->n] = (pj){ 0 };
        out->n++; /* counted first, so that pj_free releases a child that failed halfway */
        if (!jvalue(in, &out->kid[out->n - 1]))
            return false;
        jws(in);
        if (in->p < in->end && *in->p == ',') {
            in->p++;
            continue;
        }
        if (in->p < in->end && *in->p == ']') {
            in->p++;
            return true;
        }
        return jfail(in, "expected , or ]");
    }
}

static bool jobject(pj_in *in, pj *out)
{
    size_t cap = 0;
    out->t = PJ_OBJ;
    jws(in);
    if (in->p < in->end && *in->p == '}') {
        in->p++;
        return true;
    }
    for (;;) {
        char *k = NULL;
        size_t kl;
        jws(in);
        if (in->p >= in->end || *in->p != '"')
            return jfail(in, "expected a member name");
        in->p++;
        if (!jstring(in, &k, &kl))
            return false;
        for (size_t i = 0; i < out->n; i++) {
            if (!strcmp(out->key[i], k)) {
                free(k);
                return jfail(in, "duplicate member name");
            }
        }
        if (!jgrow(out, &cap, true)) {
            free(k);
            return jfail(in, "out of memory");
        }
        out->key[out->n] = k;
        out->kid[out->n] = (pj){ 0 };
        out->n++; /* counted now so that pj_free releases the key on failure */
        jws(in);
        if (in->p >= in->end || *in->p != ':')
            return jfail(in, "expected :");
        in->p++;
        if (!jvalue(in, &out->kid[out->n - 1]))
            return false;
        jws(in);
        if (in->p < in->end && *in->p == ',') {
            in->p++;
            continue;
        }
        if (in->p < in->end && *in->p == '}') {
            in->p++;
            return true;
        }
        return jfail(in, "expected , or }");
    }
}

static bool jlit(pj_in *in, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(in->end - in->p) < n || memcmp(in->p, lit, n) != 0)
        return jfail(in, "unexpected character");
    in->p += n;
    return true;
}

static bool jvalue(pj_in *in, pj *out)
{
    bool ok;
    jws(in);
    if (in->p >= in->end)
        return jfail(in, "unexpected end");
    switch (*in->p) {
    case '{':
    case '[':
        if (++in->depth > PJ_MAX_DEPTH)
            return jfail(in, "nested too deep");
        ok = *in->p++ == '{' ? jobject(in, out) : jarray(in, out);
        in->depth--;
        return ok;
    case '"':
        in->p++;
        out->t = PJ_STR;
        return jstring(in, &out->s, &out->slen);
    case 't':
        out->t = PJ_BOOL;
        out->b = true;
        return jlit(in, "true");
    case 'f':
        out->t = PJ_BOOL;
        return jlit(in, "false");
    case 'n':
        out->t = PJ_NULL;
        return jlit(in, "null");
    default:
        out->t = PJ_NUM;
        return jnumber(in, &out->num);
    }
}

static void pj_clear(pj *v)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->t == PJ_OBJ)
            free(v->key[i]);
        pj_clear(&v->kid[i]);
    }
    free(v->kid);
    free(v->key);
    free(v->s);
}

void pj_free(pj *v)
{
    if (!v)
        return;
    pj_clear(v);
    free(v);
}

pj *pj_parse(const char *text, size_t len, char *err, size_t errlen)
{
    pj_in in = { text, text, text + len, 0, err, errlen };
    pj *v = calloc(1, sizeof *v);

    if (err && errlen)
        err[0] = '\0';
    if (!v) {
        ea_seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (!jvalue(&in, v)) {
        pj_free(v);
        return NULL;
    }
    jws(&in);
    if (in.p != in.end) {
        jfail(&in, "trailing data");
        pj_free(v);
        return NULL;
    }
    return v;
}

const pj *pj_get(const pj *obj, const char *key)
{
    if (!obj || obj->t != PJ_OBJ)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->key[i], key))
            return &obj->kid[i];
    return NULL;
}

const char *pj_str(const pj *obj, const char *key)
{
    const pj *v = pj_get(obj, key);
    return v && v->t == PJ_STR ? v->s : NULL;
}

bool pj_only_keys(const pj *obj, const char *const *allowed, const char **extra)
{
    for (size_t i = 0; obj && obj->t == PJ_OBJ && i < obj->n; i++) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known = known || !strcmp(*a, obj->key[i]);
        if (!known) {
            if (extra)
                *extra = obj->key[i];
            return false;
        }
    }
    return true;
}

/* ==== encodings ====================================================================== */

static const char b64url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void pm_b64url_enc(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alpha[v >> 18];
        out[o++] = b64url_alpha[v >> 12 & 63];
        out[o++] = b64url_alpha[v >> 6 & 63];
        out[o++] = b64url_alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alpha[v >> 18];
        out[o++] = b64url_alpha[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alpha[v >> 18];
        out[o++] = b64url_alpha[v >> 12 & 63];
        out[o++] = b64url_alpha[v >> 6 & 63];
    }
    out[o] = '\0';
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

ea_err pm_b64url_dec(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0), o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (n % 4 == 1)
        return EA_ERR_MALFORMED;
    if (need > *out_len) {
        *out_len = need;
        return EA_ERR_BUF_TOO_SMALL;
    }
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(in[i]);
        if (v < 0)
            return EA_ERR_MALFORMED;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical: unused low bits set */
        return EA_ERR_MALFORMED;
    *out_len = o;
    return EA_OK;
}

char *pm_b64_enc(const uint8_t *in, size_t n)
{
    char *out;
    if (n > INT_MAX / 2 || !(out = malloc(4 * ((n + 2) / 3) + 1)))
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return out;
}

ea_err pm_b64_dec(const char *in, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(in), pad = 0;
    uint8_t *buf;
    int r;

    if (n == 0 || n % 4 != 0 || n > INT_MAX)
        return EA_ERR_MALFORMED;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        bool pad_ok = c == '=' && i >= n - 2 && (i == n - 1 || in[n - 1] == '=');
        if (!(isalnum((unsigned char)c) || c == '+' || c == '/' || pad_ok))
            return EA_ERR_MALFORMED;
        pad += c == '=';
    }
    if (!(buf = malloc(n / 4 * 3 + 1)))
        return EA_ERR_NO_MEMORY;
    r = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)n);
    if (r < 0 || (size_t)r < pad) {
        free(buf);
        return EA_ERR_MALFORMED;
    }
    *out = buf;
    *out_len = (size_t)r - pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    return EA_OK;
}

void pm_rfc3339(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

bool pm_serial_hex(const X509 *x, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    bool ok = h && strlen(h) < cap;
    if (ok)
        snprintf(out, cap, "%s", h);
    OPENSSL_free(h);
    BN_free(bn);
    return ok;
}

bool pm_fingerprint(const X509 *x, char out[65])
{
    uint8_t md[32];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32)
        return false;
    ea_hex_encode(md, 32, out);
    return true;
}

void pm_name_entry(const X509_NAME *nm, int nid, char *out, size_t cap)
{
    int i = nm ? X509_NAME_get_index_by_NID(nm, nid, -1) : -1;
    const ASN1_STRING *s = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)) : NULL;
    out[0] = '\0';
    if (s && (size_t)ASN1_STRING_length(s) < cap &&
        !memchr(ASN1_STRING_get0_data(s), 0, (size_t)ASN1_STRING_length(s))) {
        memcpy(out, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        out[ASN1_STRING_length(s)] = '\0';
    }
}

/* The DER SubjectPublicKeyInfo of a P-256 key is this prefix and the point. */
static const uint8_t p256_spki_prefix[26] = { 0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                              0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                              0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00 };

bool pm_p256_point(const EVP_PKEY *k, uint8_t out[65])
{
    char group[32];
    size_t n = 0;
    unsigned char *der = NULL;
    int dl;
    bool ok;

    if (!k || !EVP_PKEY_is_a(k, "EC"))
        return false;
    /* A provider key (ours, the default provider's) answers parameters. */
    if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) == 1 &&
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, out, 65, &n) == 1)
        return (!strcmp(group, "prime256v1") || !strcmp(group, "P-256")) && n == 65 && out[0] == 4;
    ERR_clear_error();
    /* A legacy key (an EC_KEY inside) may not: its DER SPKI tells. */
    dl = i2d_PUBKEY((EVP_PKEY *)k, &der);
    ok = dl == (int)sizeof p256_spki_prefix + 65 && !memcmp(der, p256_spki_prefix, sizeof p256_spki_prefix) &&
         der[sizeof p256_spki_prefix] == 4;
    if (ok)
        memcpy(out, der + sizeof p256_spki_prefix, 65);
    OPENSSL_free(der);
    return ok;
}

bool pm_cert_p256_point(const X509 *x, uint8_t out[65])
{
    const ASN1_OBJECT *alg = NULL, *aobj = NULL;
    const unsigned char *pk = NULL;
    const void *pval = NULL;
    X509_ALGOR *pa = NULL;
    int pklen = 0, ptype = 0;

    /* From the certificate's own fields: no key object is needed (one the
     * issuer built may be legacy or absent). */
    if (!x || X509_PUBKEY_get0_param((ASN1_OBJECT **)&alg, &pk, &pklen, &pa, X509_get_X509_PUBKEY(x)) != 1 ||
        OBJ_obj2nid(alg) != NID_X9_62_id_ecPublicKey || !pa)
        return false;
    X509_ALGOR_get0(&aobj, &ptype, &pval, pa); /* the curve is the parameter */
    if (ptype != V_ASN1_OBJECT || OBJ_obj2nid(pval) != NID_X9_62_prime256v1 || pklen != 65 || pk[0] != 4)
        return false;
    memcpy(out, pk, 65);
    return true;
}

/* ==== ES256 =========================================================================== */

ea_err pm_es256_sign(EVP_PKEY *key, OSSL_LIB_CTX *libctx, const void *msg, size_t n, uint8_t sig[64])
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t dl = sizeof der;
    const unsigned char *p = der;
    ECDSA_SIG *es = NULL;
    ea_err rc = EA_ERR_CRYPTO;

    if (!mc || EVP_DigestSignInit_ex(mc, NULL, "SHA256", libctx, NULL, key, NULL) != 1 ||
        EVP_DigestSign(mc, der, &dl, msg, n) != 1 || !(es = d2i_ECDSA_SIG(NULL, &p, (long)dl)) ||
        p != der + dl)
        goto out;
    /* JWS wants the two integers side by side, each 32 bytes (RFC 7518 §3.4). */
    if (BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 || BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32)
        goto out;
    rc = EA_OK;
out:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(mc);
    return rc;
}

bool pm_es256_verify(EVP_PKEY *key, const void *msg, size_t n, const uint8_t sig[64])
{
    uint8_t pt[65];
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int dl = -1;
    bool ok = false;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();

    /* ES256 means P-256: a key on another curve is refused, not tried. */
    if (!pm_p256_point(key, pt) || !es || !r || !s || !mc)
        goto out;
    if (ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL;
    if ((dl = i2d_ECDSA_SIG(es, &der)) <= 0)
        goto out;
    ok = EVP_DigestVerifyInit_ex(mc, NULL, "SHA256", NULL, NULL, key, NULL) == 1 &&
         EVP_DigestVerify(mc, der, (size_t)dl, msg, n) == 1;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    EVP_MD_CTX_free(mc);
    return ok;
}

/* ==== manifest: common ================================================================= */

/* kid and x5t#S256 of a signer certificate. */
static bool signer_ids(X509 *cert, char kid[128], char x5t[64])
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);
    uint8_t md[32];
    unsigned int n = 0;

    if (!ski || ASN1_STRING_length(ski) <= 0 || ASN1_STRING_length(ski) > 64)
        return false;
    pm_b64url_enc(ASN1_STRING_get0_data(ski), (size_t)ASN1_STRING_length(ski), kid);
    if (X509_digest(cert, EVP_sha256(), md, &n) != 1 || n != 32)
        return false;
    pm_b64url_enc(md, 32, x5t);
    return true;
}

static bool is_hex_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ID_HEX_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool cert_b64(pj_sb *b, X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    char *s = n > 0 ? pm_b64_enc(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    if (!s)
        return false;
    pj_sb_str(b, s);
    free(s);
    return true;
}

/* ==== manifest: writer ================================================================== */

struct ea_manifest {
    EVP_PKEY *key;
    X509 *cert;
    char protected_b64[512];
    char provisioner[128];
    pj_sb body; /* "[\n" entry ",\n" entry ... */
    pj_sb full; /* body + "\n]\n" */
    size_t n;
};

ea_err ea_manifest_new(EVP_PKEY *key, X509 *cert, ea_manifest **out)
{
    char kid[128], x5t[64];
    pj_sb h = { 0 };
    ea_manifest *m;
    uint8_t pt[65];

    if (!key || !cert || !out)
        return EA_ERR_ARG;
    *out = NULL;
    if (!pm_p256_point(key, pt))
        return EA_ERR_ARG; /* ES256 is P-256 only */
    if (!signer_ids(cert, kid, x5t))
        return EA_ERR_ARG; /* no SKI: nothing to put in kid */
    if (!(m = calloc(1, sizeof *m)))
        return EA_ERR_NO_MEMORY;
    m->key = key;
    m->cert = cert;
    pm_name_entry(X509_get_subject_name(cert), NID_organizationName, m->provisioner, sizeof m->provisioner);
    pj_sb_puts(&h, "{\"alg\":\"ES256\",\"kid\":");
    pj_sb_str(&h, kid);
    pj_sb_puts(&h, ",\"x5t#S256\":");
    pj_sb_str(&h, x5t);
    pj_sb_puts(&h, "}");
    if (h.oom || 4 * (h.len / 3 + 1) >= sizeof m->protected_b64) {
        pj_sb_free(&h);
        free(m);
        return EA_ERR_NO_MEMORY;
    }
    pm_b64url_enc((const uint8_t *)h.p, h.len, m->protected_b64);
    pj_sb_free(&h);
    pj_sb_puts(&m->body, "[");
    *out = m;
    return EA_OK;
}

/* The payload of one entry, compact JSON in a fixed member order. */
static bool entry_payload(const ea_manifest *m, const ea_manifest_item *it, const char *device_id, pj_sb *p)
{
    uint8_t pt[65];
    char uid[ID_HEX_MAX + 1], x[64], y[64], ts[32];
    size_t n = strlen(it->unique_id);

    if (!pm_cert_p256_point(it->cert, pt))
        return false;
    for (size_t i = 0; i <= n; i++) /* Microchip writes unique ids in lower case */
        uid[i] = (char)tolower((unsigned char)it->unique_id[i]);
    pm_b64url_enc(pt + 1, 32, x);
    pm_b64url_enc(pt + 33, 32, y);
    pm_rfc3339(it->provisioned_at ? it->provisioned_at : time(NULL), ts);
    pj_sb_puts(p, "{\"version\":1,\"uniqueId\":");
    pj_sb_str(p, uid);
    pj_sb_puts(p, ",\"deviceId\":");
    pj_sb_str(p, device_id);
    pj_sb_puts(p, ",\"provisioningTimestamp\":");
    pj_sb_str(p, ts);
    pj_sb_puts(p, ",\"provisioner\":{\"organizationName\":");
    pj_sb_str(p, m->provisioner);
    pj_sb_puts(p, "},\"publicKeySet\":{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":");
    pj_sb_str(p, x);
    pj_sb_puts(p, ",\"y\":");
    pj_sb_str(p, y);
    pj_sb_printf(p, ",\"kid\":\"0x%08X\",\"x5c\":[", it->key_id);
    if (!cert_b64(p, it->cert))
        return false;
    for (int i = 0; it->chain && i < sk_X509_num(it->chain); i++) {
        pj_sb_puts(p, ",");
        if (!cert_b64(p, sk_X509_value(it->chain, i)))
            return false;
    }
    pj_sb_puts(p, "]}]}}");
    return !p->oom;
}

ea_err ea_manifest_add(ea_manifest *m, const ea_manifest_item *it, char *err, size_t errlen)
{
    char device_id[128], uid[ID_HEX_MAX + 1], *pb64 = NULL, *sb64 = NULL;
    uint8_t sig[64];
    pj_sb pay = { 0 }, in = { 0 };
    ea_err rc = EA_ERR_INTERNAL;

    if (!m || !it || !it->cert || !is_hex_id(it->unique_id)) {
        ea_seterr(err, errlen, "manifest entry: a certificate and a hex unique id are required");
        return EA_ERR_ARG;
    }
    if (it->device_id)
        snprintf(device_id, sizeof device_id, "%s", it->device_id);
    else
        pm_name_entry(X509_get_subject_name(it->cert), NID_commonName, device_id, sizeof device_id);
    if (!device_id[0]) {
        ea_seterr(err, errlen, "manifest entry %s: no device id and no CN in the certificate", it->unique_id);
        return EA_ERR_ARG;
    }
    if (!entry_payload(m, it, device_id, &pay)) {
        ea_seterr(err, errlen, "manifest entry %s: the certificate's key is not P-256", it->unique_id);
        rc = EA_ERR_ARG;
        goto out;
    }
    rc = EA_ERR_NO_MEMORY;
    if (!(pb64 = malloc(4 * (pay.len / 3 + 1) + 1)))
        goto out;
    pm_b64url_enc((const uint8_t *)pay.p, pay.len, pb64);
    /* JWS signing input: ASCII(protected "." payload), both base64url. */
    pj_sb_puts(&in, m->protected_b64);
    pj_sb_puts(&in, ".");
    pj_sb_puts(&in, pb64);
    if (in.oom)
        goto out;
    if ((rc = pm_es256_sign(m->key, NULL, in.p, in.len, sig)) != EA_OK) {
        ea_seterr(err, errlen, "manifest entry %s: signing failed", it->unique_id);
        goto out;
    }
    if (!(sb64 = malloc(90))) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    pm_b64url_enc(sig, sizeof sig, sb64);
    pj_sb_puts(&m->body, m->n ? ",\n  {\"payload\":" : "\n  {\"payload\":");
    pj_sb_str(&m->body, pb64);
    pj_sb_puts(&m->body, ",\"protected\":");
    pj_sb_str(&m->body, m->protected_b64);
    pj_sb_puts(&m->body, ",\"header\":{\"uniqueId\":");
    for (size_t i = 0; i <= strlen(it->unique_id); i++)
        uid[i] = (char)tolower((unsigned char)it->unique_id[i]);
    pj_sb_str(&m->body, uid);
    pj_sb_puts(&m->body, "},\"signature\":");
    pj_sb_str(&m->body, sb64);
    pj_sb_puts(&m->body, "}");
    rc = m->body.oom ? EA_ERR_NO_MEMORY : EA_OK;
    if (rc == EA_OK)
        m->n++;
out:
    free(pb64);
    free(sb64);
    pj_sb_free(&pay);
    pj_sb_free(&in);
    return rc;
}

size_t ea_manifest_count(const ea_manifest *m)
{
    return m ? m->n : 0;
}

const char *ea_manifest_json(ea_manifest *m, size_t *len)
{
    if (!m)
        return NULL;
    pj_sb_free(&m->full);
    pj_sb_put(&m->full, m->body.p, m->body.len);
    pj_sb_puts(&m->full, m->n ? "\n]\n" : "]\n");
    if (m->full.oom)
        return NULL;
    if (len)
        *len = m->full.len;
    return m->full.p;
}

ea_err ea_manifest_write(ea_manifest *m, const char *path, char *err, size_t errlen)
{
    size_t n = 0;
    const char *j = ea_manifest_json(m, &n);
    ea_err rc;
    if (!j || !path)
        return EA_ERR_ARG;
    if ((rc = ea_file_write_atomic(path, j, n, 0644)) != EA_OK)
        ea_seterr(err, errlen, "cannot write the manifest %s: %s", path, strerror(errno));
    return rc;
}

void ea_manifest_free(ea_manifest *m)
{
    if (!m)
        return;
    pj_sb_free(&m->body);
    pj_sb_free(&m->full);
    free(m);
}

/* ==== manifest: verifier ================================================================ */

typedef struct vent {
    pj *payload;
    const char *unique_id, *device_id, *timestamp, *key_id, *provisioner;
    X509 *cert;
    STACK_OF(X509) *chain;
    uint8_t pub[65];
} vent;

static void vent_clear(vent *e)
{
    pj_free(e->payload);
    X509_free(e->cert);
    sk_X509_pop_free(e->chain, X509_free);
    *e = (vent){ 0 };
}

/* A base64url member of an object, decoded into a malloc'd buffer. */
static ea_err b64url_member(const char *s, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(s), cap = n / 4 * 3 + 3;
    uint8_t *b = malloc(cap + 1);
    ea_err rc;
    if (!b)
        return EA_ERR_NO_MEMORY;
    if ((rc = pm_b64url_dec(s, n, b, &cap)) != EA_OK) {
        free(b);
        return rc;
    }
    b[cap] = '\0';
    *out = b;
    *out_len = cap;
    return EA_OK;
}

typedef struct vctx {
    const ea_manifest_verify_opts *o;
    EVP_PKEY *signer_key;
    char kid[128], x5t[64];
} vctx;

#define VFAIL(code, ...)                                                                                               \
    do {                                                                                                               \
        ea_seterr(why, whylen, __VA_ARGS__);                                                                              \
        rc = (code);                                                                                                   \
        goto out;                                                                                                      \
    } while (0)

static ea_err check_protected(const vctx *v, const char *b64, char *why, size_t whylen)
{
    static const char *const allowed[] = { "alg", "kid", "x5t#S256", NULL };
    uint8_t *raw = NULL;
    size_t n;
    pj *h = NULL;
    const char *alg, *kid, *x5t, *extra = NULL;
    char perr[128];
    ea_err rc = EA_ERR_MALFORMED;

    if (b64url_member(b64, &raw, &n) != EA_OK)
        VFAIL(EA_ERR_MALFORMED, "the protected header is not base64url");
    if (!(h = pj_parse((const char *)raw, n, perr, sizeof perr)) || h->t != PJ_OBJ)
        VFAIL(EA_ERR_MALFORMED, "the protected header is not a JSON object");
    if (!pj_only_keys(h, allowed, &extra))
        VFAIL(EA_ERR_MALFORMED, "the protected header has an unexpected member \"%.40s\"", extra);
    alg = pj_str(h, "alg");
    kid = pj_str(h, "kid");
    x5t = pj_str(h, "x5t#S256");
    if (!alg || strcmp(alg, "ES256") != 0)
        VFAIL(EA_ERR_AUTH, "alg is %.20s%s%s, not ES256", alg ? "\"" : "", alg ? alg : "missing", alg ? "\"" : "");
    if (!kid || strcmp(kid, v->kid) != 0)
        VFAIL(EA_ERR_AUTH, "kid does not name the manifest signer's certificate (its subjectKeyIdentifier)");
    if (!x5t || strcmp(x5t, v->x5t) != 0)
        VFAIL(EA_ERR_AUTH, "x5t#S256 is not the SHA-256 of the manifest signer's certificate");
    rc = EA_OK;
out:
    pj_free(h);
    free(raw);
    return rc;
}

static ea_err parse_x5c(const pj *x5c, vent *e, char *why, size_t whylen)
{
    ea_err rc = EA_ERR_MALFORMED;
    if (!x5c || x5c->t != PJ_ARR || x5c->n == 0 || x5c->n > 8)
        VFAIL(EA_ERR_MALFORMED, "x5c is not an array of 1 to 8 certificates");
    if (!(e->chain = sk_X509_new_null()))
        VFAIL(EA_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < x5c->n; i++) {
        uint8_t *der = NULL;
        size_t dl = 0;
        const unsigned char *p;
        X509 *x;
        if (x5c->kid[i].t != PJ_STR || pm_b64_dec(x5c->kid[i].s, &der, &dl) != EA_OK)
            VFAIL(EA_ERR_MALFORMED, "x5c[%zu] is not base64", i);
        p = der;
        x = d2i_X509(NULL, &p, (long)dl);
        if (!x || p != der + dl) {
            X509_free(x);
            free(der);
            VFAIL(EA_ERR_MALFORMED, "x5c[%zu] is not a DER certificate", i);
        }
        free(der);
        if (i == 0)
            e->cert = x;
        else if (!sk_X509_push(e->chain, x)) {
            X509_free(x);
            VFAIL(EA_ERR_NO_MEMORY, "out of memory");
        }
    }
    rc = EA_OK;
out:
    return rc;
}

static ea_err check_jwk(const pj *keys, vent *e, char *why, size_t whylen)
{
    static const char *const allowed[] = { "kty", "crv", "x", "y", "kid", "x5c", NULL };
    const pj *k;
    const char *kty, *crv, *x, *y, *extra = NULL;
    uint8_t xy[64], cpt[65];
    size_t xl = 32, yl = 32;
    ea_err rc = EA_ERR_MALFORMED;

    if (!keys || keys->t != PJ_ARR || keys->n != 1)
        VFAIL(EA_ERR_MALFORMED, "publicKeySet.keys is not an array of one key");
    k = &keys->kid[0];
    if (k->t != PJ_OBJ || !pj_only_keys(k, allowed, &extra))
        VFAIL(EA_ERR_MALFORMED, "the key has an unexpected member \"%.40s\"", extra ? extra : "");
    kty = pj_str(k, "kty");
    crv = pj_str(k, "crv");
    x = pj_str(k, "x");
    y = pj_str(k, "y");
    e->key_id = pj_str(k, "kid");
    if (!kty || strcmp(kty, "EC") || !crv || strcmp(crv, "P-256"))
        VFAIL(EA_ERR_MALFORMED, "the key is not an EC P-256 JWK");
    if (!e->key_id)
        VFAIL(EA_ERR_MALFORMED, "the key has no kid");
    if (!x || !y || strlen(x) != 43 || strlen(y) != 43 || pm_b64url_dec(x, 43, xy, &xl) != EA_OK ||
        pm_b64url_dec(y, 43, xy + 32, &yl) != EA_OK || xl != 32 || yl != 32)
        VFAIL(EA_ERR_MALFORMED, "the key's x / y are not 32-byte base64url values");
    e->pub[0] = 4;
    memcpy(e->pub + 1, xy, 64);
    if ((rc = parse_x5c(pj_get(k, "x5c"), e, why, whylen)) != EA_OK)
        goto out;
    if (!pm_cert_p256_point(e->cert, cpt) || memcmp(cpt, e->pub, 65) != 0)
        VFAIL(EA_ERR_AUTH, "the key's x / y are not the public key of its certificate x5c[0]");
    rc = EA_OK;
out:
    return rc;
}

static ea_err check_payload(const char *b64, vent *e, char *why, size_t whylen)
{
    static const char *const allowed[] = { "version", "uniqueId", "deviceId", "provisioningTimestamp",
                                           "provisioner", "publicKeySet", NULL };
    uint8_t *raw = NULL;
    size_t n;
    const pj *ver, *pks, *prov;
    const char *extra = NULL;
    char perr[160];
    ea_err rc = EA_ERR_MALFORMED;

    if (b64url_member(b64, &raw, &n) != EA_OK)
        VFAIL(EA_ERR_MALFORMED, "the payload is not base64url");
    if (!(e->payload = pj_parse((const char *)raw, n, perr, sizeof perr)) || e->payload->t != PJ_OBJ)
        VFAIL(EA_ERR_MALFORMED, "the payload is not a JSON object%s%s", e->payload ? "" : ": ",
              e->payload ? "" : perr);
    if (!pj_only_keys(e->payload, allowed, &extra))
        VFAIL(EA_ERR_MALFORMED, "the payload has an unexpected member \"%.40s\"", extra);
    ver = pj_get(e->payload, "version");
    if (!ver || ver->t != PJ_NUM || ver->num != 1)
        VFAIL(EA_ERR_MALFORMED, "payload version is not 1");
    e->unique_id = pj_str(e->payload, "uniqueId");
    e->device_id = pj_str(e->payload, "deviceId");
    e->timestamp = pj_str(e->payload, "provisioningTimestamp");
    if (!is_hex_id(e->unique_id))
        VFAIL(EA_ERR_MALFORMED, "payload uniqueId is not a hex id");
    if (!e->device_id || !e->device_id[0] || strlen(e->device_id) > 79)
        VFAIL(EA_ERR_MALFORMED, "payload deviceId is missing");
    if (!e->timestamp)
        VFAIL(EA_ERR_MALFORMED, "payload provisioningTimestamp is missing");
    prov = pj_get(e->payload, "provisioner");
    e->provisioner = pj_str(prov, "organizationName");
    if (!e->provisioner)
        e->provisioner = "";
    pks = pj_get(e->payload, "publicKeySet");
    if (!pks || pks->t != PJ_OBJ)
        VFAIL(EA_ERR_MALFORMED, "payload publicKeySet is missing");
    rc = check_jwk(pj_get(pks, "keys"), e, why, whylen);
out:
    free(raw);
    return rc;
}

static ea_err check_chain(const vctx *v, vent *e, char *why, size_t whylen)
{
    char cn[128], detail[256] = "";
    ea_verify_reason reason = EA_VERIFY_OTHER;
    ea_verify_opts vo = { .trusted = v->o->trusted, .untrusted = e->chain, .role = EA_VERIFY_CLIENT, .at = v->o->at };
    ea_err rc = EA_ERR_AUTH;

    if (ea_pki_verify_chain(e->cert, &vo, &reason, detail, sizeof detail) != EA_OK)
        VFAIL(EA_ERR_AUTH, "the certificate chain x5c does not verify: %s%s%s", ea_verify_reason_str(reason),
              detail[0] ? ": " : "", detail);
    pm_name_entry(X509_get_subject_name(e->cert), NID_commonName, cn, sizeof cn);
    if (strcmp(cn, e->device_id) != 0)
        VFAIL(EA_ERR_AUTH, "deviceId \"%.80s\" is not the CN of its certificate", e->device_id);
    rc = EA_OK;
out:
    return rc;
}

static ea_err verify_entry(const vctx *v, const pj *ent, vent *e, char *why, size_t whylen)
{
    static const char *const allowed[] = { "payload", "protected", "header", "signature", NULL };
    const char *pl, *pr, *sg, *hid, *extra = NULL;
    uint8_t sig[64];
    size_t sl = sizeof sig;
    pj_sb in = { 0 };
    ea_err rc = EA_ERR_MALFORMED;

    if (!ent || ent->t != PJ_OBJ)
        VFAIL(EA_ERR_MALFORMED, "not a JSON object");
    if (!pj_only_keys(ent, allowed, &extra))
        VFAIL(EA_ERR_MALFORMED, "unexpected member \"%.40s\" (a flattened JWS has payload, protected, "
                                "header, signature)", extra);
    pl = pj_str(ent, "payload");
    pr = pj_str(ent, "protected");
    sg = pj_str(ent, "signature");
    if (!pl || !pr || !sg)
        VFAIL(EA_ERR_MALFORMED, "payload, protected and signature must be strings");
    if ((rc = check_protected(v, pr, why, whylen)) != EA_OK)
        goto out;
    if (strlen(sg) != 86 || pm_b64url_dec(sg, 86, sig, &sl) != EA_OK || sl != 64)
        VFAIL(EA_ERR_AUTH, "the signature is not 64 bytes of base64url (ES256 is r || s)");
    pj_sb_puts(&in, pr);
    pj_sb_puts(&in, ".");
    pj_sb_puts(&in, pl);
    if (in.oom)
        VFAIL(EA_ERR_NO_MEMORY, "out of memory");
    if (!pm_es256_verify(v->signer_key, in.p, in.len, sig))
        VFAIL(EA_ERR_AUTH, "the ES256 signature does not verify with the manifest signer's key");
    /* Only now is the payload worth reading. */
    if ((rc = check_payload(pl, e, why, whylen)) != EA_OK)
        goto out;
    const pj *hdr = pj_get(ent, "header");
    if (hdr) {
        static const char *const hallowed[] = { "uniqueId", NULL };
        if (hdr->t != PJ_OBJ || !pj_only_keys(hdr, hallowed, &extra))
            VFAIL(EA_ERR_MALFORMED, "the unprotected header may only hold uniqueId");
        hid = pj_str(hdr, "uniqueId");
        if (!hid || strcasecmp(hid, e->unique_id) != 0)
            VFAIL(EA_ERR_AUTH, "the unprotected uniqueId differs from the signed one");
    }
    rc = check_chain(v, e, why, whylen);
out:
    pj_sb_free(&in);
    return rc;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* No unique id and no device id twice in one manifest. */
static bool find_repeat(vent *ents, size_t n, bool uid, const char **dup)
{
    const char **v = malloc((n ? n : 1) * sizeof *v);
    bool rep = false;
    if (!v) {
        *dup = "(out of memory)";
        return true;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = uid ? ents[i].unique_id : ents[i].device_id;
    qsort(v, n, sizeof *v, cmp_str_ptr);
    for (size_t i = 1; i < n && !rep; i++)
        if (!strcasecmp(v[i - 1], v[i])) {
            rep = true;
            *dup = v[i]; /* points into ents: still valid for the caller's message */
        }
    free(v);
    return rep;
}

ea_err ea_manifest_verify(const char *json, size_t len, const ea_manifest_verify_opts *o,
                          ea_manifest_entry_fn *cb, void *ctx, size_t *count, char *err, size_t errlen)
{
    vctx v = { .o = o };
    pj *root = NULL;
    vent *ents = NULL;
    size_t n = 0;
    char why[400], perr[160];
    const char *dup = NULL;
    ea_err rc = EA_ERR_INTERNAL;

    if (err && errlen)
        err[0] = '\0';
    if (count)
        *count = 0;
    if (!json || !o || !o->signer || !o->trusted) {
        ea_seterr(err, errlen, "manifest: the signer certificate and the trust anchors are required");
        return EA_ERR_ARG;
    }
    if (!signer_ids(o->signer, v.kid, v.x5t) || !(v.signer_key = X509_get0_pubkey(o->signer))) {
        ea_seterr(err, errlen, "manifest: the signer certificate has no subjectKeyIdentifier or no key");
        return EA_ERR_ARG;
    }
    if (!(root = pj_parse(json, len, perr, sizeof perr))) {
        ea_seterr(err, errlen, "manifest: %s", perr);
        return EA_ERR_MALFORMED;
    }
    if (root->t != PJ_ARR) {
        ea_seterr(err, errlen, "manifest: not a JSON array of signed entries");
        rc = EA_ERR_MALFORMED;
        goto out;
    }
    n = root->n;
    if (!(ents = calloc(n ? n : 1, sizeof *ents))) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        why[0] = '\0';
        if ((rc = verify_entry(&v, &root->kid[i], &ents[i], why, sizeof why)) != EA_OK) {
            const char *uid = ents[i].unique_id;
            if (!uid) {
                const pj *h = pj_get(&root->kid[i], "header");
                uid = pj_str(h, "uniqueId");
            }
            ea_seterr(err, errlen, "manifest entry %zu%s%.64s%s: %s", i, uid ? " (uniqueId " : "", uid ? uid : "",
                   uid ? ")" : "", why);
            goto out;
        }
    }
    if (find_repeat(ents, n, true, &dup) || find_repeat(ents, n, false, &dup)) {
        ea_seterr(err, errlen, "manifest: \"%.80s\" appears in more than one entry", dup);
        rc = EA_ERR_AUTH;
        goto out;
    }
    if (count)
        *count = n;
    rc = EA_OK;
    for (size_t i = 0; cb && i < n && rc == EA_OK; i++) {
        ea_manifest_entry e = {
            .index = i,
            .unique_id = ents[i].unique_id,
            .device_id = ents[i].device_id,
            .timestamp = ents[i].timestamp,
            .key_id = ents[i].key_id,
            .provisioner = ents[i].provisioner,
            .cert = ents[i].cert,
            .chain = ents[i].chain,
            .pub = ents[i].pub,
        };
        rc = cb(ctx, &e);
    }
out:
    for (size_t i = 0; ents && i < n; i++)
        vent_clear(&ents[i]);
    free(ents);
    pj_free(root);
    return rc;
}

/* ==== signer ============================================================================= */

X509 *pm_read_cert(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static EVP_PKEY *read_key(const char *path, OSSL_LIB_CTX *libctx)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL) : NULL;
    BIO_free(b);
    return k;
}

/* ==== chips in a directory =============================================================== */

static bool is_chip_dir(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/objects/index", dir);
    return access(p, F_OK) == 0;
}

/* The chips of DIR: DIR itself, or its subdirectories holding one, sorted.
 * Returns a malloc'd array of malloc'd paths. */
static char **chip_dirs(const char *dir, size_t *n)
{
    struct dirent **names = NULL;
    char **out = NULL;
    int k;

    *n = 0;
    if (is_chip_dir(dir)) {
        if ((out = calloc(1, sizeof *out)) && (out[0] = strdup(dir)))
            *n = 1;
        return out;
    }
    if ((k = scandir(dir, &names, NULL, alphasort)) < 0)
        return NULL;
    out = calloc((size_t)k + 1, sizeof *out);
    for (int i = 0; i < k; i++) {
        char p[4096];
        if (out && names[i]->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
            if (is_chip_dir(p) && (out[*n] = strdup(p)))
                (*n)++;
        }
        free(names[i]);
    }
    free(names);
    return out;
}

static void free_dirs(char **d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        free(d[i]);
    free(d);
}

/* An object of the chip as a DER certificate. */
static X509 *se_cert(ea_host *h, uint32_t id)
{
    uint8_t *der = malloc(CERT_MAX);
    size_t n = CERT_MAX;
    const unsigned char *p = der;
    X509 *x = NULL;
    if (der && ea_host_read_object(h, id, der, &n) == EA_OK) {
        x = d2i_X509(NULL, &p, (long)n);
        if (x && p != der + n) {
            X509_free(x);
            x = NULL;
        }
    }
    free(der);
    return x;
}

/* ==== the vendor's manifest ================================================================ */

ea_err ea_vendor_manifest_make(const char *se_dir, const char *vendor_ca_dir, const char *out_path, size_t *count,
                               char *err, size_t errlen)
{
    char kp[4096], cp[4096], why[400] = "", skipped[600] = "";
    size_t n = 0;
    char **dirs = NULL;
    EVP_PKEY *vkey = NULL;
    X509 *vcert = NULL;
    X509_STORE *anchors = NULL;
    ea_manifest *m = NULL;
    STACK_OF(X509) *chain = NULL;
    ea_err rc = EA_ERR_INTERNAL;

    if (count)
        *count = 0;
    if (!se_dir || !vendor_ca_dir || !out_path)
        return EA_ERR_ARG;
    snprintf(kp, sizeof kp, "%s/vendor-ca.key.pem", vendor_ca_dir);
    snprintf(cp, sizeof cp, "%s/vendor-ca.pem", vendor_ca_dir);
    if (!(vcert = pm_read_cert(cp)) || !(vkey = read_key(kp, NULL))) {
        ea_seterr(err, errlen, "no vendor CA in %s (vendor-ca.pem, vendor-ca.key.pem)", vendor_ca_dir);
        rc = EA_ERR_NOT_FOUND;
        goto out;
    }
    if (!(anchors = pm_anchor_store(cp, why, sizeof why)) || !(chain = sk_X509_new_null()) ||
        !sk_X509_push(chain, vcert)) {
        ea_seterr(err, errlen, "vendor CA %s: %s", cp, why[0] ? why : "out of memory");
        rc = EA_ERR_CRYPTO;
        goto out;
    }
    X509_up_ref(vcert); /* one reference for the stack */
    if ((rc = ea_manifest_new(vkey, vcert, &m)) != EA_OK) {
        ea_seterr(err, errlen, "the vendor CA certificate cannot sign a manifest (P-256 key and SKI needed)");
        goto out;
    }
    dirs = chip_dirs(se_dir, &n);
    for (size_t i = 0; i < n; i++) {
        char uri[4200], herr[300] = "", uid_hex[2 * EA_UNIQUE_ID_LEN + 1];
        uint8_t uid[EA_UNIQUE_ID_LEN], pub[65], cpt[65];
        size_t pl = sizeof pub;
        ea_host *h = NULL;
        X509 *dc = NULL;
        X509_STORE_CTX *vc = NULL;
        const char *skip = NULL;

        snprintf(uri, sizeof uri, "emu:%s", dirs[i]);
        if (ea_host_open(uri, NULL, &h, herr, sizeof herr) != EA_OK)
            skip = "cannot open";
        else if (ea_host_unique_id(h, uid) != EA_OK)
            skip = "no unique id";
        else if (!(dc = se_cert(h, EA_OBJ_DEVICE_CERT)))
            skip = "no device certificate 0xF0000101";
        else if (ea_host_read_pubkey(h, EA_OBJ_DEVICE_KEY, pub, &pl) != EA_OK || pl != 65)
            skip = "no P-256 device key 0xF0000100";
        else if (!pm_cert_p256_point(dc, cpt) || memcmp(cpt, pub, 65) != 0)
            skip = "the certificate does not certify the key";
        else if (!(vc = X509_STORE_CTX_new()) || X509_STORE_CTX_init(vc, anchors, dc, NULL) != 1 ||
                 X509_verify_cert(vc) != 1)
            skip = "the certificate is not from this vendor CA";
        if (!skip) {
            ea_hex_encode(uid, sizeof uid, uid_hex);
            ea_manifest_item it = { .unique_id = uid_hex, .key_id = EA_OBJ_DEVICE_KEY, .cert = dc, .chain = chain };
            if ((rc = ea_manifest_add(m, &it, err, errlen)) != EA_OK)
                skip = "signing failed";
        }
        if (skip) {
            size_t l = strlen(skipped);
            if (l < sizeof skipped - 1)
                snprintf(skipped + l, sizeof skipped - l, "%s%s: %s", l ? "; " : "", dirs[i], skip);
        }
        X509_STORE_CTX_free(vc);
        X509_free(dc);
        ea_host_close(h);
    }
    if (ea_manifest_count(m) == 0) {
        ea_seterr(err, errlen, "no pre-provisioned chip of this vendor in %s%s%s", se_dir, skipped[0] ? ": " : "",
               skipped);
        rc = EA_ERR_NOT_FOUND;
        goto out;
    }
    if ((rc = ea_manifest_write(m, out_path, err, errlen)) != EA_OK)
        goto out;
    if (count)
        *count = ea_manifest_count(m);
    if (err && errlen)
        snprintf(err, errlen, "%s", skipped); /* what was left out, for the caller to show */
out:
    free_dirs(dirs, n);
    ea_manifest_free(m);
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_free(anchors);
    X509_free(vcert);
    EVP_PKEY_free(vkey);
    return rc;
}

/* ==== onboarding ================================================================================ */

typedef struct ob_ent {
    char unique_id[ID_HEX_MAX + 1];
    char device_id[80];
    uint8_t pub[65];
    X509 *cert;
    bool seen;
} ob_ent;

typedef struct ob_list {
    ob_ent *e;
    size_t n, cap;
} ob_list;

static ea_err ob_collect(void *ctx, const ea_manifest_entry *me)
{
    ob_list *l = ctx;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        ob_ent *ne = realloc(l->e, nc * sizeof *ne);
        if (!ne)
            return EA_ERR_NO_MEMORY;
        l->e = ne;
        l->cap = nc;
    }
    ob_ent *e = &l->e[l->n];
    *e = (ob_ent){ 0 };
    for (size_t i = 0; i <= strlen(me->unique_id); i++)
        e->unique_id[i] = (char)tolower((unsigned char)me->unique_id[i]);
    snprintf(e->device_id, sizeof e->device_id, "%s", me->device_id);
    memcpy(e->pub, me->pub, 65);
    X509_up_ref(me->cert);
    e->cert = me->cert;
    l->n++;
    return EA_OK;
}

static ob_ent *ob_find(ob_list *l, const char *uid)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcasecmp(l->e[i].unique_id, uid))
            return &l->e[i];
    return NULL;
}

typedef struct ob_ctx {
    const ea_onboard_opts *o;
    ea_ca *ca;
    pm_registry *reg;
    X509_STORE *anchors;
    ob_list list;
    size_t accepted, refused;
} ob_ctx;

/* Registry line and audit line for an accepted chip (or manifest entry). */
static void ob_record(ob_ctx *c, ob_ent *e, bool checked, ea_onboard_result *r)
{
    char serial[48] = "", fpr[72] = "", why[300] = "";
    bool added = false;
    pj_sb a = { 0 };

    snprintf(r->device_id, sizeof r->device_id, "%s", e->device_id);
    snprintf(r->unique_id, sizeof r->unique_id, "%s", e->unique_id);
    if (!pm_serial_hex(e->cert, serial, sizeof serial) || !pm_fingerprint(e->cert, fpr)) {
        snprintf(r->reason, sizeof r->reason, "cannot read the certificate's serial");
        return;
    }
    snprintf(r->serial, sizeof r->serial, "%s", serial);
    snprintf(r->fingerprint, sizeof r->fingerprint, "%s", fpr);
    pm_reg_rec rec = { e->device_id, e->unique_id, serial, fpr, "manifest", checked };
    if (pm_registry_add(c->reg, &rec, &added, why, sizeof why) != EA_OK) {
        snprintf(r->reason, sizeof r->reason, "%s", why);
        return;
    }
    r->accepted = true;
    r->already_done = !added;
    r->chip_checked = checked;
    if (!added)
        return;
    pj_sb_puts(&a, "\"device\":");
    pj_sb_str(&a, e->device_id);
    pj_sb_puts(&a, ",\"unique_id\":");
    pj_sb_str(&a, e->unique_id);
    pj_sb_puts(&a, ",\"serial\":");
    pj_sb_str(&a, serial);
    pj_sb_puts(&a, ",\"fingerprint\":");
    pj_sb_str(&a, fpr);
    pj_sb_puts(&a, checked ? ",\"chip_checked\":true" : ",\"chip_checked\":false");
    if (!a.oom)
        (void)ea_ca_audit(c->ca, "onboard", a.p);
    pj_sb_free(&a);
}

static void ob_chip(ob_ctx *c, const char *uri, ea_onboard_result *r)
{
    char herr[300] = "", why[400] = "", uid_hex[2 * EA_UNIQUE_ID_LEN + 1];
    ea_host *h = NULL;
    pm_attested at;
    ob_ent *e;
    X509 *dc = NULL;
    ea_err rc;

    if ((rc = ea_host_open(uri, NULL, &h, herr, sizeof herr)) != EA_OK) {
        snprintf(r->reason, sizeof r->reason, "cannot open the chip: %s", herr[0] ? herr : ea_err_str(rc));
        goto out;
    }
    /* The attestation comes first: it is the chip itself, under the vendor
     * CA, that says which uid and which key it holds. */
    if (pm_attest_key(h, EA_OBJ_DEVICE_KEY, c->anchors, 1u << EA_ORIGIN_PROVISIONED | 1u << EA_ORIGIN_INTERNAL, &at,
                      why, sizeof why) != EA_OK) {
        snprintf(r->reason, sizeof r->reason, "attestation refused: %s", why);
        goto out;
    }
    ea_hex_encode(at.uid, sizeof at.uid, uid_hex);
    snprintf(r->unique_id, sizeof r->unique_id, "%s", uid_hex);
    if (!(e = ob_find(&c->list, uid_hex))) {
        snprintf(r->reason, sizeof r->reason, "chip %s is not in the vendor manifest", uid_hex);
        goto out;
    }
    e->seen = true;
    if (memcmp(e->pub, at.pub, 65) != 0) {
        snprintf(r->reason, sizeof r->reason, "the attested key 0x%08X differs from the manifest's key for %s",
                 EA_OBJ_DEVICE_KEY, uid_hex);
        goto out;
    }
    if (!(dc = se_cert(h, EA_OBJ_DEVICE_CERT))) {
        snprintf(r->reason, sizeof r->reason, "no DER certificate in 0x%08X", EA_OBJ_DEVICE_CERT);
        goto out;
    }
    /* Same bytes as the manifest's x5c[0], which verified against the vendor
     * CA; and that certificate's key is the attested one (checked above via
     * the manifest's JWK, which the verifier tied to x5c[0]). */
    if (X509_cmp(dc, e->cert) != 0) {
        snprintf(r->reason, sizeof r->reason, "the certificate in 0x%08X differs from the manifest's for %s",
                 EA_OBJ_DEVICE_CERT, uid_hex);
        goto out;
    }
    ob_record(c, e, true, r);
out:
    X509_free(dc);
    ea_host_close(h);
}

static void ob_report(ob_ctx *c, ea_onboard_result *r)
{
    if (r->accepted)
        c->accepted++;
    else
        c->refused++;
    if (c->o->cb)
        c->o->cb(c->o->cb_ctx, r);
}

ea_err ea_onboard(const ea_onboard_opts *o, size_t *accepted, size_t *refused, char *err, size_t errlen)
{
    ob_ctx c = { .o = o };
    STACK_OF(X509) *trusted = NULL;
    X509 *signer = NULL;
    BIO *b = NULL;
    uint8_t *json = NULL;
    size_t jl = 0, nd = 0;
    char **dirs = NULL, reg_path[4096], why[400] = "";
    ea_err rc = EA_ERR_INTERNAL;

    if (accepted)
        *accepted = 0;
    if (refused)
        *refused = 0;
    if (!o || !o->manifest_path || !o->vendor_ca_pem || !o->ca_dir) {
        ea_seterr(err, errlen, "onboard: the vendor manifest, the vendor CA and the CA directory are required");
        return EA_ERR_ARG;
    }
    /* The vendor CA file: its first certificate signs the manifest; all of
     * them anchor the chips' chains. */
    if (!(b = BIO_new_file(o->vendor_ca_pem, "r")) || !(trusted = sk_X509_new_null())) {
        ea_seterr(err, errlen, "cannot read the vendor CA %s", o->vendor_ca_pem);
        rc = EA_ERR_IO;
        goto out;
    }
    for (X509 *x; (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL;)
        if (!sk_X509_push(trusted, x))
            X509_free(x);
    if (sk_X509_num(trusted) == 0) {
        ea_seterr(err, errlen, "no PEM certificate in the vendor CA file %s", o->vendor_ca_pem);
        rc = EA_ERR_MALFORMED;
        goto out;
    }
    signer = sk_X509_value(trusted, 0);
    if (!(c.anchors = pm_anchor_store(o->vendor_ca_pem, why, sizeof why))) {
        ea_seterr(err, errlen, "%s", why);
        rc = EA_ERR_MALFORMED;
        goto out;
    }
    if ((rc = ea_file_read(o->manifest_path, MANIFEST_MAX, &json, &jl)) != EA_OK) {
        ea_seterr(err, errlen, "cannot read the vendor manifest %s: %s", o->manifest_path, ea_err_str(rc));
        goto out;
    }
    ea_manifest_verify_opts vo = { .signer = signer, .trusted = trusted };
    if ((rc = ea_manifest_verify((const char *)json, jl, &vo, ob_collect, &c.list, NULL, err, errlen)) != EA_OK)
        goto out;
    if ((rc = ea_ca_open(o->ca_dir, &c.ca, err, errlen)) != EA_OK)
        goto out;
    if (o->registry_path)
        snprintf(reg_path, sizeof reg_path, "%s", o->registry_path);
    else
        snprintf(reg_path, sizeof reg_path, "%s/registry.jsonl", o->ca_dir);
    if ((rc = pm_registry_open(reg_path, &c.reg, err, errlen)) != EA_OK)
        goto out;

    if (o->se_uri || o->se_dir) {
        if (o->se_dir && !(dirs = chip_dirs(o->se_dir, &nd))) {
            ea_seterr(err, errlen, "cannot list the chips in %s: %s", o->se_dir, strerror(errno));
            rc = EA_ERR_IO;
            goto out;
        }
        for (size_t i = 0; i < (o->se_dir ? nd : 1); i++) {
            ea_onboard_result r = { 0 };
            if (o->se_dir)
                snprintf(r.chip, sizeof r.chip, "emu:%s", dirs[i]);
            else
                snprintf(r.chip, sizeof r.chip, "%s", o->se_uri);
            ob_chip(&c, r.chip, &r);
            ob_report(&c, &r);
        }
    } else {
        /* No chip to look at: the manifest's word (signature and chains) is all
         * there is, and the registry says so ("attested": false). */
        for (size_t i = 0; i < c.list.n; i++) {
            ea_onboard_result r = { 0 };
            ob_record(&c, &c.list.e[i], false, &r);
            ob_report(&c, &r);
        }
    }
    rc = pm_registry_sync(c.reg);
    if (rc != EA_OK)
        ea_seterr(err, errlen, "cannot sync the registry %s", reg_path);
out:
    if (accepted)
        *accepted = c.accepted;
    if (refused)
        *refused = c.refused;
    for (size_t i = 0; i < c.list.n; i++)
        X509_free(c.list.e[i].cert);
    free(c.list.e);
    free_dirs(dirs, nd);
    pm_registry_close(c.reg);
    ea_ca_close(c.ca);
    X509_STORE_free(c.anchors);
    sk_X509_pop_free(trusted, X509_free);
    BIO_free(b);
    free(json);
    return rc;
}
