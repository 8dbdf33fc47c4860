/* The OEM CA: hierarchy creation (root P-384 -> intermediate P-256 ->
 * devices), device and server issuance under a fixed profile, the index of
 * issued certificates, revocation and CRLs.
 *
 * Issuance is in-process and copies nothing from a CSR but its public key
 * and CN: the profile's extensions are built once when the CA is opened
 * and added to every certificate, so the cost per certificate is the CSR
 * check, one ECDSA signature and the bookkeeping (docs/PKI.md). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/store.h>
#include <openssl/x509v3.h>

#include "common/tlv.h"
#include "common/util.h"
#include "edgeauth/host.h"
#include "edgeauth/provider.h"
#include "pki/pki_int.h"

#define DEFAULT_PATTERN "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#define NO_EXPIRY "99991231235959Z"
#define CFG_MAX 16384u
#define INDEX_MAX (512u * 1024u * 1024u)
#define COMPACT_AFTER 4096u   /* journal records before the snapshot is rewritten */
#define LOCK_WAIT_MS 10000
#define SE_KEY_POLICY "sign,verify,read,attest"

/* ---- small helpers ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The first OpenSSL error's reason, for messages ("" when none). */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "";
}

/* Text from outside (a CN) for a message: printable ASCII only. */
static void safe_text(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in && *in && i + 1 < cap; in++)
        out[i++] = (*in >= 0x20 && *in < 0x7F) ? *in : '?';
    out[i] = '\0';
}

static int path_of(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void tm_to_gentime(time_t t, char out[16])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 16, "%Y%m%d%H%M%SZ", &tm) != 15)
        memcpy(out, NO_EXPIRY, 16);
}

static bool gentime_to_tm(const char *s, time_t *t)
{
    struct tm tm = { 0 };
    if (strlen(s) != 15 || s[14] != 'Z')
        return false;
    for (int i = 0; i < 14; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    if (sscanf(s, "%4d%2d%2d%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec) != 6)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *t = timegm(&tm);
    return true;
}

static time_t asn1_to_time(const ASN1_TIME *a)
{
    struct tm tm;
    if (!a || !ASN1_TIME_to_tm(a, &tm))
        return 0;
    return timegm(&tm);
}

/* Serials as upper-case hex without leading zeros: one spelling per number,
 * so the index, the CLI and the CRL agree. */
static bool serial_hex(const ASN1_INTEGER *ai, char out[PKI_SERIAL_HEX])
{
    static const char dig[] = "0123456789ABCDEF";
    const unsigned char *p = ASN1_STRING_get0_data(ai);
    int n = ASN1_STRING_length(ai), i = 0;
    size_t o = 0;

    if (ASN1_STRING_type(ai) != V_ASN1_INTEGER || n <= 0 || n > 20)
        return false;
    while (i < n - 1 && p[i] == 0)
        i++;
    for (; i < n; i++) {
        if (o == 0 && p[i] < 16) {
            out[o++] = dig[p[i]];
            continue;
        }
        out[o++] = dig[p[i] >> 4];
        out[o++] = dig[p[i] & 15];
    }
    out[o] = '\0';
    return true;
}

/* "0x00ab12" -> "AB12"; false when not hex. */
static bool serial_normalize(const char *in, char out[PKI_SERIAL_HEX])
{
    size_t o = 0;
    if (!strncmp(in, "0x", 2) || !strncmp(in, "0X", 2))
        in += 2;
    while (*in == '0' && in[1])
        in++;
    if (!*in)
        return false;
    for (; *in; in++) {
        if (*in == ':')
            continue;
        if (!isxdigit((unsigned char)*in) || o + 1 >= PKI_SERIAL_HEX)
            return false;
        out[o++] = (char)toupper((unsigned char)*in);
    }
    out[o] = '\0';
    return o > 0;
}

/* A device id the CA will certify whatever the pattern says: 1-64
 * printable ASCII characters, none of which has a meaning elsewhere in the
 * system (MQTT topic separators and wildcards, JSON, whitespace). */
static const char *id_bad_char(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > PKI_ID_MAX)
        return "length";
    for (const char *p = id; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7F)
            return "a control, space or non-ASCII character";
        if (strchr("+#/\"\\", *p))
            return "one of + # / \" \\";
    }
    return NULL;
}

bool pki_key_is_ec(const EVP_PKEY *k, int want_bits)
{
    char group[64];
    size_t glen = 0;
    if (!k || !EVP_PKEY_is_a(k, "EC"))
        return false;
    if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen))
        return false;
    bool p256 = !strcmp(group, "prime256v1") || !strcmp(group, "P-256") || !strcmp(group, "secp256r1");
    bool p384 = !strcmp(group, "secp384r1") || !strcmp(group, "P-384");
    if (want_bits == 256)
        return p256;
    if (want_bits == 384)
        return p384;
    return p256 || p384;
}

/* "EC P-384", "RSA", ... for refusals. */
static void key_words(const EVP_PKEY *k, char *out, size_t cap)
{
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_is_a(k, "EC")) {
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen))
            snprintf(out, cap, "EC %s", !strcmp(group, "secp384r1") ? "P-384 (secp384r1)" : group);
        else
            snprintf(out, cap, "EC with explicit parameters");
    } else {
        const char *n = EVP_PKEY_get0_type_name(k);
        snprintf(out, cap, "%s", n ? n : "of an unknown type");
    }
}

/* ---- ca.json: one flat object of strings and integers --------------------------- */

typedef struct cfg_kv {
    char key[32];
    char val[PKI_URI_MAX];
} cfg_kv;

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* A JSON string at p (after the quote is checked); *end after the closing quote. */
static bool json_string(const char *p, char *out, size_t cap, const char **end)
{
    size_t o = 0;
    if (*p++ != '"')
        return false;
    while (*p && *p != '"') {
        unsigned c = (unsigned char)*p++;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            switch (*p++) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                unsigned v = 0;
                for (int i = 0; i < 4; i++, p++) {
                    if (!isxdigit((unsigned char)*p))
                        return false;
                    v = v * 16 + (unsigned)(isdigit((unsigned char)*p) ? *p - '0' : (tolower(*p) - 'a' + 10));
                }
                if (v == 0 || v >= 0x80)
                    return false; /* our files only escape control characters */
                c = v;
                break;
            }
            default: return false;
            }
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = (char)c;
    }
    if (*p != '"')
        return false;
    out[o] = '\0';
    *end = p + 1;
    return true;
}

static ea_err cfg_parse(const char *text, cfg_kv *kv, size_t max, size_t *n)
{
    const char *p = skip_ws(text);
    *n = 0;
    if (*p++ != '{')
        return EA_ERR_MALFORMED;
    p = skip_ws(p);
    if (*p == '}')
        return EA_OK;
    for (;;) {
        if (*n >= max)
            return EA_ERR_FULL;
        cfg_kv *e = &kv[(*n)++];
        if (!json_string(p, e->key, sizeof e->key, &p))
            return EA_ERR_MALFORMED;
        p = skip_ws(p);
        if (*p++ != ':')
            return EA_ERR_MALFORMED;
        p = skip_ws(p);
        if (*p == '"') {
            if (!json_string(p, e->val, sizeof e->val, &p))
                return EA_ERR_MALFORMED;
        } else {
            size_t o = 0;
            while (isdigit((unsigned char)*p) && o + 1 < sizeof e->val)
                e->val[o++] = *p++;
            if (o == 0)
                return EA_ERR_MALFORMED;
            e->val[o] = '\0';
        }
        p = skip_ws(p);
        if (*p == '}')
            return *skip_ws(p + 1) ? EA_ERR_MALFORMED : EA_OK;
        if (*p++ != ',')
            return EA_ERR_MALFORMED;
        p = skip_ws(p);
    }
}

static const char *cfg_get(const cfg_kv *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(kv[i].key, key))
            return kv[i].val;
    return NULL;
}

static bool cfg_uint(const cfg_kv *kv, size_t n, const char *key, unsigned *out)
{
    const char *v = cfg_get(kv, n, key);
    char *end;
    unsigned long x;
    if (!v)
        return false;
    errno = 0;
    x = strtoul(v, &end, 10);
    if (errno || *end || x > 1000000)
        return false;
    *out = (unsigned)x;
    return true;
}

/* ---- the hash tables of the index ------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static bool table_grow(pki_table *t, const pki_entry *ent, bool by_name);

/* Find the slot of key (serial or name); *found tells whether it is live. */
static size_t table_find(const pki_table *t, const pki_entry *ent, bool by_name, const char *key, bool *found)
{
    size_t mask = t->cap - 1, i = (size_t)fnv1a(key) & mask, tomb = SIZE_MAX;
    for (;;) {
        uint32_t s = t->slot[i];
        if (s == 0) {
            *found = false;
            return tomb != SIZE_MAX ? tomb : i;
        }
        if (s == 1) {
            if (tomb == SIZE_MAX)
                tomb = i;
        } else {
            const pki_entry *e = &ent[s - 2];
            if (!strcmp(by_name ? e->name : e->serial, key)) {
                *found = true;
                return i;
            }
        }
        i = (i + 1) & mask;
    }
}

static bool table_put(pki_table *t, const pki_entry *ent, bool by_name, uint32_t idx)
{
    bool found;
    if ((t->used + 1) * 4 >= t->cap * 3 && !table_grow(t, ent, by_name))
        return false;
    const pki_entry *e = &ent[idx];
    size_t i = table_find(t, ent, by_name, by_name ? e->name : e->serial, &found);
    if (!found && t->slot[i] == 0)
        t->used++;
    t->slot[i] = idx + 2;
    return true;
}

static void table_del(pki_table *t, const pki_entry *ent, bool by_name, const char *key)
{
    bool found;
    size_t i = table_find(t, ent, by_name, key, &found);
    if (found)
        t->slot[i] = 1;
}

static long table_get(const pki_table *t, const pki_entry *ent, bool by_name, const char *key)
{
    bool found;
    if (!t->cap)
        return -1;
    size_t i = table_find(t, ent, by_name, key, &found);
    return found ? (long)t->slot[i] - 2 : -1;
}

static bool table_grow(pki_table *t, const pki_entry *ent, bool by_name)
{
    pki_table nt = { 0 };
    nt.cap = t->cap ? t->cap * 2 : 1024;
    if (!(nt.slot = calloc(nt.cap, sizeof *nt.slot)))
        return false;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot[i] < 2)
            continue;
        bool found;
        const pki_entry *e = &ent[t->slot[i] - 2];
        size_t j = table_find(&nt, ent, by_name, by_name ? e->name : e->serial, &found);
        nt.slot[j] = t->slot[i];
        nt.used++;
    }
    free(t->slot);
    *t = nt;
    return true;
}

/* ---- the index: snapshot (issued/index.txt) + journal (issued/index.journal) -----
 *
 * The snapshot is only ever replaced whole (temp file, fsync, rename). Between
 * two snapshots, every change is one appended journal line, fsynced before
 * the operation returns (or at the end of a batch). Replaying a journal line
 * that the snapshot already holds changes nothing, so a crash between the
 * rename and the truncation of the journal is harmless; a line torn by a
 * crash has no newline and is dropped (its operation never returned). */

static ea_err entry_add(ea_ca *ca, const pki_entry *e)
{
    if (table_get(&ca->by_serial, ca->ent, false, e->serial) >= 0)
        return EA_ERR_EXISTS;
    if (ca->n_ent == ca->cap_ent) {
        size_t nc = ca->cap_ent ? ca->cap_ent * 2 : 256;
        pki_entry *ne = realloc(ca->ent, nc * sizeof *ne);
        if (!ne)
            return EA_ERR_NO_MEMORY;
        ca->ent = ne;
        ca->cap_ent = nc;
    }
    uint32_t idx = (uint32_t)ca->n_ent;
    ca->ent[ca->n_ent++] = *e;
    if (!table_put(&ca->by_serial, ca->ent, false, idx))
        return EA_ERR_NO_MEMORY;
    if (e->kind == PKI_KIND_DEVICE && !e->revoked && !table_put(&ca->by_device, ca->ent, true, idx))
        return EA_ERR_NO_MEMORY;
    if (e->kind == PKI_KIND_INTERMEDIATE && e->revoked)
        ca->inter_revoked = true;
    return EA_OK;
}

static void entry_mark_revoked(ea_ca *ca, pki_entry *e, time_t when)
{
    if (e->revoked)
        return;
    e->revoked = true;
    e->revoked_at = when;
    if (e->kind == PKI_KIND_DEVICE) {
        long cur = table_get(&ca->by_device, ca->ent, true, e->name);
        if (cur >= 0 && &ca->ent[cur] == e)
            table_del(&ca->by_device, ca->ent, true, e->name);
    }
    if (e->kind == PKI_KIND_INTERMEDIATE)
        ca->inter_revoked = true;
}

static bool kind_ok(char k)
{
    return k == PKI_KIND_DEVICE || k == PKI_KIND_SERVER || k == PKI_KIND_MANIFEST || k == PKI_KIND_INTERMEDIATE;
}

/* Split the first n space-separated fields off line; *rest is what follows
 * (NULL when fewer fields). The last field of our records (a name) is the rest. */
static bool split(char *line, char **f, int n, char **rest)
{
    char *p = line;
    for (int i = 0; i < n; i++) {
        char *sp = strchr(p, ' ');
        if (!sp || sp == p)
            return false;
        *sp = '\0';
        f[i] = p;
        p = sp + 1;
    }
    *rest = p;
    return true;
}

/* "OFFSET:LENGTH" of a certificate in issued/certs.der. */
static bool parse_loc(const char *s, pki_entry *e)
{
    char *end;
    errno = 0;
    unsigned long long off = strtoull(s, &end, 10);
    if (errno || end == s || *end != ':')
        return false;
    const char *l = end + 1;
    unsigned long len = strtoul(l, &end, 10);
    if (errno || end == l || *end || len == 0 || len > 65536)
        return false;
    e->off = off;
    e->len = (uint32_t)len;
    return true;
}

/* Snapshot line: "V|R KIND SERIAL NOT_AFTER REVOKED_AT|- OFFSET:LENGTH NAME". */
static ea_err parse_snapshot_line(ea_ca *ca, char *line)
{
    char *f[7];
    pki_entry e = { 0 };
    if (!split(line, f, 6, &f[6]) || !*f[6])
        return EA_ERR_MALFORMED;
    if (strlen(f[0]) != 1 || (f[0][0] != 'V' && f[0][0] != 'R') || strlen(f[1]) != 1 || !kind_ok(f[1][0]) ||
        !serial_normalize(f[2], e.serial) || !gentime_to_tm(f[3], &e.not_after) || !parse_loc(f[5], &e) ||
        strlen(f[6]) > PKI_ID_MAX)
        return EA_ERR_MALFORMED;
    e.kind = f[1][0];
    e.revoked = f[0][0] == 'R';
    if (e.revoked && !gentime_to_tm(f[4], &e.revoked_at))
        return EA_ERR_MALFORMED;
    snprintf(e.name, sizeof e.name, "%s", f[6]);
    return entry_add(ca, &e);
}

/* Journal lines: "+ KIND SERIAL NOT_AFTER OFFSET:LENGTH NAME" and "- SERIAL REVOKED_AT". */
static ea_err parse_journal_line(ea_ca *ca, char *line)
{
    char *f[4], *rest;
    if (line[0] == '+' && line[1] == ' ') {
        pki_entry e = { 0 };
        if (!split(line + 2, f, 4, &rest) || !*rest || strlen(f[0]) != 1 || !kind_ok(f[0][0]) ||
            !serial_normalize(f[1], e.serial) || !gentime_to_tm(f[2], &e.not_after) || !parse_loc(f[3], &e) ||
            strlen(rest) > PKI_ID_MAX)
            return EA_ERR_MALFORMED;
        e.kind = f[0][0];
        snprintf(e.name, sizeof e.name, "%s", rest);
        ea_err rc = entry_add(ca, &e);
        return rc == EA_ERR_EXISTS ? EA_OK : rc; /* already in the snapshot */
    }
    if (line[0] == '-' && line[1] == ' ') {
        char serial[PKI_SERIAL_HEX];
        time_t when;
        if (!split(line + 2, f, 1, &rest) || strchr(rest, ' ') || !serial_normalize(f[0], serial) ||
            !gentime_to_tm(rest, &when))
            return EA_ERR_MALFORMED;
        long i = table_get(&ca->by_serial, ca->ent, false, serial);
        if (i < 0)
            return EA_ERR_MALFORMED;
        entry_mark_revoked(ca, &ca->ent[i], when);
        return EA_OK;
    }
    return EA_ERR_MALFORMED;
}

/* Feed each complete line of buf to fn; *complete = bytes up to the last newline. */
static ea_err for_lines(ea_ca *ca, char *buf, size_t len, ea_err (*fn)(ea_ca *, char *), const char *what,
                        size_t *complete, size_t *records, char *err, size_t errlen)
{
    size_t start = 0, lineno = 0;
    *records = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        buf[i] = '\0';
        lineno++;
        char *line = buf + start;
        start = i + 1;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        ea_err rc = fn(ca, line);
        if (rc != EA_OK) {
            errf(err, errlen, "%s line %zu: %s", what, lineno,
                 rc == EA_ERR_NO_MEMORY ? "out of memory" : "not an index record");
            return rc == EA_ERR_NO_MEMORY ? rc : EA_ERR_CORRUPT;
        }
        (*records)++;
    }
    *complete = start;
    return EA_OK;
}

static ea_err index_load(ea_ca *ca, char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0, complete, records;
    ea_err rc;

    struct stat st;
    if (!path_of(path, sizeof path, ca->dir, "issued/certs.der"))
        return EA_ERR_ARG;
    ca->certs_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (ca->certs_fd < 0 || fstat(ca->certs_fd, &st) != 0) {
        errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return EA_ERR_IO;
    }
    ca->certs_size = (uint64_t)st.st_size;
    if (!path_of(path, sizeof path, ca->dir, "issued/index.txt"))
        return EA_ERR_ARG;
    rc = ea_file_read(path, INDEX_MAX, &buf, &len);
    if (rc == EA_OK) {
        rc = for_lines(ca, (char *)buf, len, parse_snapshot_line, "issued/index.txt", &complete, &records, err,
                       errlen);
        if (rc == EA_OK && complete != len) {
            errf(err, errlen, "issued/index.txt: last line incomplete");
            rc = EA_ERR_CORRUPT;
        }
        free(buf);
        buf = NULL;
    } else if (rc == EA_ERR_NOT_FOUND) {
        rc = EA_OK;
    } else {
        errf(err, errlen, "cannot read %s", path);
    }
    if (rc != EA_OK)
        return rc;

    if (!path_of(path, sizeof path, ca->dir, "issued/index.journal"))
        return EA_ERR_ARG;
    ca->journal_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (ca->journal_fd < 0) {
        errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return EA_ERR_IO;
    }
    rc = ea_file_read(path, INDEX_MAX, &buf, &len);
    if (rc != EA_OK) {
        errf(err, errlen, "cannot read %s", path);
        return rc;
    }
    rc = for_lines(ca, (char *)buf, len, parse_journal_line, "issued/index.journal", &complete, &records, err,
                   errlen);
    free(buf);
    if (rc != EA_OK)
        return rc;
    ca->journal_records = records;
    for (size_t i = 0; i < ca->n_ent; i++)
        if (ca->ent[i].off + ca->ent[i].len > ca->certs_size) {
            errf(err, errlen, "issued/certs.der is shorter than the index says (serial %s)", ca->ent[i].serial);
            return EA_ERR_CORRUPT;
        }
    if (complete != len) {
        /* A torn last record: its operation never returned. We hold the lock. */
        if (ftruncate(ca->journal_fd, (off_t)complete) != 0 || fsync(ca->journal_fd) != 0) {
            errf(err, errlen, "cannot repair %s: %s", path, strerror(errno));
            return EA_ERR_IO;
        }
    }
    return EA_OK;
}

static bool buf_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 65536;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return false;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

/* Rewrite the snapshot from memory, then empty the journal. */
static ea_err index_compact(ea_ca *ca)
{
    char path[PATH_MAX], line[256];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    ea_err rc = EA_ERR_NO_MEMORY;
    static const char head[] = "# edgeauth CA index v1: status kind serial not_after revoked_at offset:length name\n"
                               "# status V valid, R revoked; kind D device, S server, M manifest, "
                               "I intermediate (in the root's CRL)\n";

    if (!buf_append(&buf, &len, &cap, head, sizeof head - 1))
        goto out;
    for (size_t i = 0; i < ca->n_ent; i++) {
        const pki_entry *e = &ca->ent[i];
        char na[16], ra[16] = "-";
        tm_to_gentime(e->not_after, na);
        if (e->revoked)
            tm_to_gentime(e->revoked_at, ra);
        int n = snprintf(line, sizeof line, "%c %c %s %s %s %llu:%u %s\n", e->revoked ? 'R' : 'V', e->kind,
                         e->serial, na, ra, (unsigned long long)e->off, (unsigned)e->len, e->name);
        if (n <= 0 || (size_t)n >= sizeof line || !buf_append(&buf, &len, &cap, line, (size_t)n))
            goto out;
    }
    if (!path_of(path, sizeof path, ca->dir, "issued/index.txt")) {
        rc = EA_ERR_ARG;
        goto out;
    }
    if ((rc = ea_file_write_atomic(path, buf, len, 0644)) != EA_OK)
        goto out;
    rc = EA_ERR_IO;
    if (ftruncate(ca->journal_fd, 0) != 0 || fsync(ca->journal_fd) != 0)
        goto out;
    ca->journal_records = 0;
    ca->dirty_journal = false;
    rc = EA_OK;
out:
    free(buf);
    return rc;
}

static ea_err write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return EA_ERR_IO;
        }
        p += w;
        len -= (size_t)w;
    }
    return EA_OK;
}

static ea_err journal_append(ea_ca *ca, const char *line)
{
    ea_err rc = write_all(ca->journal_fd, line, strlen(line));
    if (rc != EA_OK)
        return rc;
    ca->journal_records++;
    if (ca->batch) {
        ca->dirty_journal = true;
        return EA_OK;
    }
    return fsync(ca->journal_fd) == 0 ? EA_OK : EA_ERR_IO;
}

static ea_err record_issued(ea_ca *ca, const pki_entry *e)
{
    char line[256], na[16];
    ea_err rc;
    tm_to_gentime(e->not_after, na);
    snprintf(line, sizeof line, "+ %c %s %s %llu:%u %s\n", e->kind, e->serial, na, (unsigned long long)e->off,
             (unsigned)e->len, e->name);
    if ((rc = entry_add(ca, e)) != EA_OK)
        return rc;
    return journal_append(ca, line);
}

static ea_err record_revoked(ea_ca *ca, pki_entry *e, time_t when)
{
    char line[128], ra[16];
    tm_to_gentime(when, ra);
    snprintf(line, sizeof line, "- %s %s\n", e->serial, ra);
    entry_mark_revoked(ca, e, when);
    return journal_append(ca, line);
}

/* issued/certs.der: every certificate the CA signs, DER, one after the
 * other, append-only; the index records where each one is. One file
 * rather than one per serial: a million inodes in one directory is slow
 * to create (ext4 spends more on that than on the signature) and to list. */
static ea_err store_cert(ea_ca *ca, pki_entry *e, const unsigned char *der, size_t len)
{
    ea_err rc = write_all(ca->certs_fd, der, len);
    if (rc != EA_OK) {
        /* Whatever part was written is never referenced; later appends go after it. */
        struct stat st;
        if (fstat(ca->certs_fd, &st) == 0)
            ca->certs_size = (uint64_t)st.st_size;
        return rc;
    }
    e->off = ca->certs_size;
    e->len = (uint32_t)len;
    ca->certs_size += len;
    if (ca->batch) {
        ca->dirty_issued = true;
        return EA_OK;
    }
    return fsync(ca->certs_fd) == 0 ? EA_OK : EA_ERR_IO;
}

static X509 *load_issued(ea_ca *ca, const pki_entry *e)
{
    unsigned char *buf;
    const unsigned char *p;
    X509 *x = NULL;
    if (e->len == 0 || e->off + e->len > ca->certs_size || !(buf = malloc(e->len)))
        return NULL;
    if (pread(ca->certs_fd, buf, e->len, (off_t)e->off) == (ssize_t)e->len) {
        p = buf;
        x = d2i_X509(NULL, &p, (long)e->len);
        if (x && p != buf + e->len) {
            X509_free(x);
            x = NULL;
        }
    }
    free(buf);
    return x;
}

static X509 *load_cert_file(const char *path)
{
    X509 *x = NULL;
    BIO *b = BIO_new_file(path, "rb");
    if (!b)
        return NULL;
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!x) {
        (void)BIO_reset(b);
        x = d2i_X509_bio(b, NULL);
    }
    BIO_free(b);
    return x;
}

/* ---- keys ------------------------------------------------------------------------ */

static EVP_PKEY *gen_ec_file_key(const char *group)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
}

/* PEM (PKCS#8, unencrypted) in a 0600 file, written atomically. */
static ea_err save_key(const char *path, EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_secmem());
    BUF_MEM *bm = NULL;
    ea_err rc = EA_ERR_CRYPTO;
    if (!b)
        return EA_ERR_NO_MEMORY;
    if (PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1 && BIO_get_mem_ptr(b, &bm) == 1)
        rc = ea_file_write_atomic(path, bm->data, bm->length, 0600);
    BIO_free(b); /* a secmem BIO clears its buffer when freed */
    return rc;
}

/* Read through our own buffer, wiped afterwards (a stdio BIO would leave
 * the PEM in libc's buffers). */
static EVP_PKEY *load_key_file(const char *path, OSSL_LIB_CTX *libctx)
{
    EVP_PKEY *k = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ea_file_read(path, 64 * 1024, &buf, &len) != EA_OK)
        return NULL;
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    if (b)
        k = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
    BIO_free(b);
    ea_cleanse(buf, len);
    free(buf);
    return k;
}

static ea_err save_pem_cert(const char *path, X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm = NULL;
    ea_err rc = EA_ERR_CRYPTO;
    if (!b)
        return EA_ERR_NO_MEMORY;
    if (PEM_write_bio_X509(b, x) == 1 && BIO_get_mem_ptr(b, &bm) == 1)
        rc = ea_file_write_atomic(path, bm->data, bm->length, 0644);
    BIO_free(b);
    return rc;
}

/* Our own library context for an SE-held key: default first, then edgeauth
 * (provider.h), no global property query. */
static ea_err se_libctx(ea_ca *ca, char *err, size_t errlen)
{
    if (ca->libctx)
        return EA_OK;
    if (!(ca->libctx = OSSL_LIB_CTX_new()) || !(ca->prov_default = OSSL_PROVIDER_load(ca->libctx, "default"))) {
        errf(err, errlen, "cannot create an OpenSSL library context");
        return EA_ERR_CRYPTO;
    }
    if (ea_provider_load(ca->libctx, &ca->prov_ea) != EA_OK) {
        errf(err, errlen, "cannot load the edgeauth provider");
        return EA_ERR_CRYPTO;
    }
    return EA_OK;
}

/* "se05x:0xID[?se=URI]" -> id text and SE URI (made absolute for emu:/unix:
 * so the CA directory keeps working from another working directory). */
static ea_err parse_se_uri(const char *uri, char *id, size_t idcap, char *se, size_t secap, char *err,
                           size_t errlen)
{
    const char *q, *p;
    char raw[PKI_URI_MAX];
    if (strncmp(uri, "se05x:", 6) != 0) {
        errf(err, errlen, "--ca-key: expected se05x:0xID[?se=URI], got a different scheme");
        return EA_ERR_ARG;
    }
    p = uri + 6;
    q = strchr(p, '?');
    size_t idlen = q ? (size_t)(q - p) : strlen(p);
    if (idlen < 3 || idlen >= idcap || strncmp(p, "0x", 2) != 0) {
        errf(err, errlen, "--ca-key: expected an object id such as se05x:0x7D000001");
        return EA_ERR_ARG;
    }
    memcpy(id, p, idlen);
    id[idlen] = '\0';
    for (size_t i = 2; i < idlen; i++)
        if (!isxdigit((unsigned char)id[i])) {
            errf(err, errlen, "--ca-key: object id '%s' is not hex", id);
            return EA_ERR_ARG;
        }
    if (q) {
        if (strncmp(q, "?se=", 4) != 0 || !q[4]) {
            errf(err, errlen, "--ca-key: the only query is ?se=URI");
            return EA_ERR_ARG;
        }
        snprintf(raw, sizeof raw, "%s", q + 4);
    } else if (ea_host_default_uri(raw, sizeof raw) != EA_OK) {
        errf(err, errlen, "--ca-key: no SE: add ?se=URI or set EDGEAUTH_SE");
        return EA_ERR_ARG;
    }
    const char *scheme = !strncmp(raw, "emu:", 4) ? "emu:" : !strncmp(raw, "unix:", 5) ? "unix:" : NULL;
    if (scheme && raw[strlen(scheme)] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return EA_ERR_IO;
        if (snprintf(se, secap, "%s%s/%s", scheme, cwd, raw + strlen(scheme)) >= (int)secap)
            return EA_ERR_ARG;
    } else if (snprintf(se, secap, "%s", raw) >= (int)secap) {
        return EA_ERR_ARG;
    }
    return EA_OK;
}

/* Generate the intermediate's key inside the SE through our provider. */
static ea_err se_generate(ea_ca *ca, const char *id, const char *se, EVP_PKEY **out, char *err, size_t errlen)
{
    ea_host *h = NULL;
    bool exists = false;
    char herr[256] = "";
    ea_err rc;
    EVP_PKEY_CTX *kc = NULL;
    uint32_t oid = (uint32_t)strtoul(id, NULL, 16);

    if ((rc = ea_host_open(se, NULL, &h, herr, sizeof herr)) != EA_OK) {
        errf(err, errlen, "cannot open the SE for the CA key: %s", herr);
        return rc;
    }
    rc = ea_host_exists(h, oid, &exists);
    ea_host_close(h);
    if (rc != EA_OK) {
        errf(err, errlen, "SE %s: cannot check object %s", se, id);
        return rc;
    }
    if (exists) {
        errf(err, errlen, "SE object %s already exists; a CA key must be new (pick another id)", id);
        return EA_ERR_EXISTS;
    }
    if ((rc = se_libctx(ca, err, errlen)) != EA_OK)
        return rc;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0),
        OSSL_PARAM_construct_utf8_string("se05x-id", (char *)id, 0),
        OSSL_PARAM_construct_utf8_string("se05x-uri", (char *)se, 0),
        OSSL_PARAM_construct_utf8_string("se05x-policy", (char *)SE_KEY_POLICY, 0),
        OSSL_PARAM_construct_end(),
    };
    rc = EA_ERR_CRYPTO;
    if ((kc = EVP_PKEY_CTX_new_from_name(ca->libctx, "EC", "?provider=edgeauth")) &&
        EVP_PKEY_keygen_init(kc) == 1 && EVP_PKEY_CTX_set_params(kc, params) == 1 && EVP_PKEY_generate(kc, out) == 1)
        rc = EA_OK;
    else
        errf(err, errlen, "cannot generate the CA key in the SE (%s): %s", se, ossl_reason());
    EVP_PKEY_CTX_free(kc);
    return rc;
}

static ea_err se_load(ea_ca *ca, const char *uri, EVP_PKEY **out, char *err, size_t errlen)
{
    OSSL_STORE_CTX *sc;
    ea_err rc = se_libctx(ca, err, errlen);
    if (rc != EA_OK)
        return rc;
    if (!(sc = OSSL_STORE_open_ex(uri, ca->libctx, "?provider=edgeauth", NULL, NULL, NULL, NULL, NULL))) {
        errf(err, errlen, "cannot open the CA key %s: %s", uri, ossl_reason());
        return EA_ERR_NOT_FOUND;
    }
    OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
    while (!*out && !OSSL_STORE_eof(sc)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(sc);
        if (!info)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            *out = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(sc);
    if (!*out) {
        errf(err, errlen, "the SE holds no key at %s", uri);
        return EA_ERR_NOT_FOUND;
    }
    return EA_OK;
}

/* ---- certificate construction ------------------------------------------------------- */

static bool add_ext(X509 *x, int nid, int crit, void *value)
{
    return X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_REPLACE) == 1;
}

static X509_EXTENSION *make_ext(int nid, int crit, void *value)
{
    return X509V3_EXT_i2d(nid, crit, value);
}

static bool add_bc(X509 *x, bool ca, int pathlen)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    bool ok = false;
    if (!bc)
        return false;
    bc->ca = ca ? 0xFF : 0;
    if (pathlen >= 0 && (!(bc->pathlen = ASN1_INTEGER_new()) || !ASN1_INTEGER_set(bc->pathlen, pathlen)))
        goto out;
    ok = add_ext(x, NID_basic_constraints, 1, bc);
out:
    BASIC_CONSTRAINTS_free(bc);
    return ok;
}

enum { KUB_DIGITAL_SIGNATURE = 0, KUB_KEY_CERT_SIGN = 5, KUB_CRL_SIGN = 6 };

static ASN1_BIT_STRING *ku_make(const int *bits, size_t n)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    for (size_t i = 0; ku && i < n; i++)
        if (!ASN1_BIT_STRING_set_bit(ku, bits[i], 1)) {
            ASN1_BIT_STRING_free(ku);
            return NULL;
        }
    return ku;
}

static bool add_ku(X509 *x, const int *bits, size_t n)
{
    ASN1_BIT_STRING *ku = ku_make(bits, n);
    bool ok = ku && add_ext(x, NID_key_usage, 1, ku);
    ASN1_BIT_STRING_free(ku);
    return ok;
}

static EXTENDED_KEY_USAGE *eku_make(int nid)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    if (eku && !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(nid))) {
        sk_ASN1_OBJECT_free(eku);
        return NULL;
    }
    return eku;
}

static bool add_eku(X509 *x, int nid)
{
    EXTENDED_KEY_USAGE *eku = eku_make(nid);
    bool ok = eku && add_ext(x, NID_ext_key_usage, 0, eku);
    sk_ASN1_OBJECT_free(eku); /* the objects are static (OBJ_nid2obj) */
    return ok;
}

/* RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING. */
static bool key_id(X509 *x, const EVP_MD *sha1, unsigned char *out, unsigned *out_len)
{
    const ASN1_BIT_STRING *pk = X509_get0_pubkey_bitstr(x);
    return pk && EVP_Digest(pk->data, (size_t)pk->length, out, out_len, sha1, NULL) == 1;
}

static bool add_ski(X509 *x, const EVP_MD *sha1)
{
    unsigned char id[EVP_MAX_MD_SIZE];
    unsigned idlen = 0;
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    bool ok = os && key_id(x, sha1, id, &idlen) && ASN1_OCTET_STRING_set(os, id, (int)idlen) &&
              add_ext(x, NID_subject_key_identifier, 0, os);
    ASN1_OCTET_STRING_free(os);
    return ok;
}

static AUTHORITY_KEYID *aki_make(const unsigned char *id, size_t len)
{
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    if (!aki || !(aki->keyid = ASN1_OCTET_STRING_new()) || !ASN1_OCTET_STRING_set(aki->keyid, id, (int)len)) {
        AUTHORITY_KEYID_free(aki);
        return NULL;
    }
    return aki;
}

static bool add_aki(X509 *x, X509 *issuer)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
    AUTHORITY_KEYID *aki = ski ? aki_make(ski->data, (size_t)ski->length) : NULL;
    bool ok = aki && add_ext(x, NID_authority_key_identifier, 0, aki);
    AUTHORITY_KEYID_free(aki);
    return ok;
}

static X509_NAME *make_name(const char *org, const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    if (!n || !X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8, (const unsigned char *)org, -1,
                                          -1, 0) ||
        (cn && !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))) {
        X509_NAME_free(n);
        return NULL;
    }
    return n;
}

/* A fresh serial: 16 random bytes, top bit clear (positive), bit 6 set
 * (fixed length: 126 random bits), not used before in this CA. */
static bool new_serial(ea_ca *ca, unsigned char sb[PKI_SERIAL_LEN], char hex[PKI_SERIAL_HEX])
{
    for (int tries = 0; tries < 8; tries++) {
        static const char dig[] = "0123456789ABCDEF";
        if (RAND_bytes(sb, PKI_SERIAL_LEN) != 1)
            return false;
        sb[0] = (unsigned char)((sb[0] & 0x7F) | 0x40);
        for (size_t i = 0; i < PKI_SERIAL_LEN; i++) {
            hex[2 * i] = dig[sb[i] >> 4];
            hex[2 * i + 1] = dig[sb[i] & 15];
        }
        hex[2 * PKI_SERIAL_LEN] = '\0';
        if (!ca || table_get(&ca->by_serial, ca->ent, false, hex) < 0)
            return true;
    }
    return false;
}

static bool set_serial(X509 *x, const unsigned char sb[PKI_SERIAL_LEN])
{
    return ASN1_STRING_set(X509_get_serialNumber(x), sb, PKI_SERIAL_LEN) == 1;
}

/* notBefore now; notAfter now + days, or 99991231235959Z for days 0. */
static bool set_validity(X509 *x, time_t now, unsigned days, bool no_expiry_if_zero)
{
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &now))
        return false;
    if (days == 0 && no_expiry_if_zero)
        return ASN1_TIME_set_string_X509(X509_getm_notAfter(x), NO_EXPIRY) == 1;
    return X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now) != NULL;
}

/* Sign with a key that may live in another library context (the SE's). */
static bool sign_cert(X509 *x, EVP_PKEY *key, OSSL_LIB_CTX *libctx, const char *md)
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestSignInit_ex(mc, NULL, md, libctx, NULL, key, NULL) == 1 && X509_sign_ctx(x, mc) > 0;
    EVP_MD_CTX_free(mc);
    return ok;
}

static const char *md_for(const EVP_PKEY *k)
{
    return pki_key_is_ec(k, 384) ? "SHA384" : "SHA256";
}

/* A CA certificate: root (issuer NULL: self-signed) or intermediate. */
static X509 *make_ca_cert(const ea_ca_init_opts *o, const char *cn, EVP_PKEY *pub, X509 *issuer,
                          EVP_PKEY *issuer_key, unsigned days, int pathlen, bool name_constraints, const EVP_MD *sha1)
{
    static const int ku[] = { KUB_KEY_CERT_SIGN, KUB_CRL_SIGN };
    unsigned char sb[PKI_SERIAL_LEN];
    char hex[PKI_SERIAL_HEX];
    X509 *x = X509_new();
    X509_NAME *subj = make_name(o->org, cn);
    NAME_CONSTRAINTS *nc = NULL;
    bool ok = false;

    if (!x || !subj || !X509_set_version(x, X509_VERSION_3) || !new_serial(NULL, sb, hex) || !set_serial(x, sb) ||
        !X509_set_subject_name(x, subj) || !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj) ||
        !set_validity(x, time(NULL), days, false) || !X509_set_pubkey(x, pub) || !add_bc(x, true, pathlen) ||
        !add_ku(x, ku, 2) || !add_ski(x, sha1) || (issuer && !add_aki(x, issuer)))
        goto out;
    if (issuer && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(issuer)) > 0 &&
        !X509_set1_notAfter(x, X509_get0_notAfter(issuer)))
        goto out;
    if (name_constraints) {
        /* permitted dirName O=<org>: a stolen line CA can mint nothing
         * outside the OEM's namespace (spec §4.3). */
        GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
        X509_NAME *base = make_name(o->org, NULL);
        if (!(nc = NAME_CONSTRAINTS_new()) || !st || !base || (!st->base && !(st->base = GENERAL_NAME_new())) ||
            !(nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null())) {
            GENERAL_SUBTREE_free(st);
            X509_NAME_free(base);
            goto out;
        }
        GENERAL_NAME_set0_value(st->base, GEN_DIRNAME, base);
        if (!sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, st)) {
            GENERAL_SUBTREE_free(st);
            goto out;
        }
        if (!add_ext(x, NID_name_constraints, 1, nc))
            goto out;
    }
    ok = sign_cert(x, issuer_key, NULL, md_for(issuer_key));
out:
    NAME_CONSTRAINTS_free(nc);
    X509_NAME_free(subj);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* An end-entity certificate of the intermediate (server, manifest). */
static X509 *make_ee_cert(ea_ca *ca, const char *cn, EVP_PKEY *pub, int eku_nid, GENERAL_NAMES *san, unsigned days,
                          unsigned char sb[PKI_SERIAL_LEN], char hex[PKI_SERIAL_HEX], const EVP_MD *sha1)
{
    static const int ku[] = { KUB_DIGITAL_SIGNATURE };
    X509 *x = X509_new();
    X509_NAME *subj = make_name(ca->org, cn);
    bool ok = x && subj && X509_set_version(x, X509_VERSION_3) && new_serial(ca, sb, hex) && set_serial(x, sb) &&
              X509_set_subject_name(x, subj) && X509_set_issuer_name(x, ca->issuer) &&
              set_validity(x, time(NULL), days, false) && X509_set_pubkey(x, pub) && add_bc(x, false, -1) &&
              add_ku(x, ku, 1) && add_eku(x, eku_nid) && add_ski(x, sha1) && add_aki(x, ca->inter) &&
              (!san || add_ext(x, NID_subject_alt_name, 0, san));
    if (ok && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca->inter)) > 0)
        ok = X509_set1_notAfter(x, X509_get0_notAfter(ca->inter)) == 1;
    if (ok)
        ok = sign_cert(x, ca->inter_key, ca->libctx, "SHA256");
    X509_NAME_free(subj);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* ---- configuration file ----------------------------------------------------------- */

static bool json_field_str(char *buf, size_t cap, const char *key, const char *val, bool last)
{
    if (!pki_json_str(buf, cap, key, val))
        return false;
    size_t n = strlen(buf);
    if (n + 3 >= cap)
        return false;
    memcpy(buf + n, last ? "\n" : ",\n", last ? 2 : 3);
    return true;
}

static bool json_field_num(char *buf, size_t cap, const char *key, unsigned v, bool last)
{
    if (!pki_json_num(buf, cap, key, v))
        return false;
    size_t n = strlen(buf);
    if (n + 3 >= cap)
        return false;
    memcpy(buf + n, last ? "\n" : ",\n", last ? 2 : 3);
    return true;
}

static ea_err write_config(const char *dir, const ea_ca *ca, unsigned root_days, unsigned inter_days)
{
    char buf[CFG_MAX] = "{\n", path[PATH_MAX], now[32];
    pki_rfc3339(time(NULL), now);
    if (!json_field_num(buf, sizeof buf, "version", 1, false) ||
        !json_field_str(buf, sizeof buf, "org", ca->org, false) ||
        !json_field_str(buf, sizeof buf, "created", now, false) ||
        !json_field_num(buf, sizeof buf, "root_days", root_days, false) ||
        !json_field_num(buf, sizeof buf, "intermediate_days", inter_days, false) ||
        !json_field_num(buf, sizeof buf, "device_days", ca->device_days, false) ||
        !json_field_num(buf, sizeof buf, "server_days", ca->server_days, false) ||
        !json_field_num(buf, sizeof buf, "crl_days", ca->crl_days, false) ||
        !json_field_num(buf, sizeof buf, "root_crl_days", ca->root_crl_days, false) ||
        !json_field_str(buf, sizeof buf, "device_id_pattern", ca->pattern, false) ||
        !json_field_str(buf, sizeof buf, "root_key", "root.key", false) ||
        !json_field_str(buf, sizeof buf, "intermediate_key", ca->key_uri[0] ? ca->key_uri : "intermediate.key",
                        true))
        return EA_ERR_FULL;
    size_t n = strlen(buf);
    if (n + 2 >= sizeof buf)
        return EA_ERR_FULL;
    memcpy(buf + n, "}\n", 3);
    if (!path_of(path, sizeof path, dir, "ca.json"))
        return EA_ERR_ARG;
    return ea_file_write_atomic(path, buf, strlen(buf), 0644);
}

static ea_err read_config(ea_ca *ca, char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len, n;
    cfg_kv *kv = calloc(32, sizeof *kv);
    ea_err rc;
    const char *v;

    if (!kv)
        return EA_ERR_NO_MEMORY;
    if (!path_of(path, sizeof path, ca->dir, "ca.json")) {
        rc = EA_ERR_ARG;
        goto out;
    }
    if ((rc = ea_file_read(path, CFG_MAX, &buf, &len)) != EA_OK) {
        errf(err, errlen, rc == EA_ERR_NOT_FOUND ? "%s: not a CA directory (no ca.json)" : "cannot read %s",
             rc == EA_ERR_NOT_FOUND ? ca->dir : path);
        goto out;
    }
    char *text = realloc(buf, len + 1);
    if (!text) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    buf = (uint8_t *)text;
    text[len] = '\0';
    if ((rc = cfg_parse(text, kv, 32, &n)) != EA_OK) {
        errf(err, errlen, "%s: not a valid configuration", path);
        rc = EA_ERR_CORRUPT;
        goto out;
    }
    rc = EA_ERR_CORRUPT;
    if (!(v = cfg_get(kv, n, "org")) || !*v || strlen(v) > PKI_ORG_MAX) {
        errf(err, errlen, "%s: no org", path);
        goto out;
    }
    snprintf(ca->org, sizeof ca->org, "%s", v);
    if (!(v = cfg_get(kv, n, "device_id_pattern")) || strlen(v) >= sizeof ca->pattern) {
        errf(err, errlen, "%s: no device_id_pattern", path);
        goto out;
    }
    snprintf(ca->pattern, sizeof ca->pattern, "%s", v);
    if (!cfg_uint(kv, n, "device_days", &ca->device_days) || !cfg_uint(kv, n, "server_days", &ca->server_days) ||
        !cfg_uint(kv, n, "crl_days", &ca->crl_days) || !cfg_uint(kv, n, "root_crl_days", &ca->root_crl_days)) {
        errf(err, errlen, "%s: missing or bad validity settings", path);
        goto out;
    }
    v = cfg_get(kv, n, "intermediate_key");
    if (!v || (strcmp(v, "intermediate.key") && strncmp(v, "se05x:", 6))) {
        errf(err, errlen, "%s: intermediate_key must be intermediate.key or an se05x: URI", path);
        goto out;
    }
    snprintf(ca->key_uri, sizeof ca->key_uri, "%s", strncmp(v, "se05x:", 6) ? "" : v);
    rc = EA_OK;
out:
    free(buf);
    free(kv);
    return rc;
}

/* ---- open / close ------------------------------------------------------------------- */

static ea_err lock_dir(const char *dir, int *fd_out, char *err, size_t errlen)
{
    const char *env = getenv("EDGEAUTH_CA_LOCK_WAIT_MS");
    int wait_ms = LOCK_WAIT_MS;
    if (env && *env)
        wait_ms = atoi(env);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        return errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
    }
    /* Several stations may share a CA: wait a little for the other one. */
    for (int waited = 0;; waited += 10) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK || waited >= wait_ms) {
            errf(err, errlen, "%s is in use by another process (locked)", dir);
            close(fd);
            return EA_ERR_LOCKED;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    *fd_out = fd;
    return EA_OK;
}

static ea_err compile_pattern(ea_ca *ca, char *err, size_t errlen)
{
    if (ca->re_ok) {
        regfree(&ca->re);
        ca->re_ok = false;
    }
    int r = regcomp(&ca->re, ca->pattern, REG_EXTENDED | REG_NOSUB);
    if (r != 0) {
        char msg[128];
        regerror(r, &ca->re, msg, sizeof msg);
        errf(err, errlen, "device id pattern: %s", msg);
        return EA_ERR_ARG;
    }
    ca->re_ok = true;
    return EA_OK;
}

/* Everything issuance needs, computed once per open. */
static ea_err prepare_profile(ea_ca *ca, char *err, size_t errlen)
{
    static const int ku[] = { KUB_DIGITAL_SIGNATURE };
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca->inter);
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *kus = ku_make(ku, 1);
    EXTENDED_KEY_USAGE *eku = eku_make(NID_client_auth);
    AUTHORITY_KEYID *aki = ski ? aki_make(ski->data, (size_t)ski->length) : NULL;
    ea_err rc = EA_ERR_CRYPTO;

    if (!ski) {
        errf(err, errlen, "intermediate.pem has no subjectKeyIdentifier");
        goto out;
    }
    if (!bc || !kus || !eku || !aki || !(ca->md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL)) ||
        !(ca->md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) || !(ca->md_sha384 = EVP_MD_fetch(NULL, "SHA384", NULL)))
        goto out;
    bc->ca = 0;
    if (!(ca->ext_bc = make_ext(NID_basic_constraints, 1, bc)) || !(ca->ext_ku = make_ext(NID_key_usage, 1, kus)) ||
        !(ca->ext_eku = make_ext(NID_ext_key_usage, 0, eku)) ||
        !(ca->ext_aki = make_ext(NID_authority_key_identifier, 0, aki)))
        goto out;
    if (!(ca->sign_tmpl = EVP_MD_CTX_new()) ||
        EVP_DigestSignInit_ex(ca->sign_tmpl, NULL, "SHA256", ca->libctx, NULL, ca->inter_key, NULL) != 1) {
        errf(err, errlen, "the intermediate key cannot sign: %s", ossl_reason());
        goto out;
    }
    rc = EA_OK;
out:
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(kus);
    sk_ASN1_OBJECT_free(eku);
    AUTHORITY_KEYID_free(aki);
    if (rc != EA_OK && err && !*err)
        errf(err, errlen, "cannot prepare the device profile: %s", ossl_reason());
    return rc;
}

/* Load configuration, certificates, key, index and audit log; the lock is held. */
static ea_err ca_load(ea_ca *ca, char *err, size_t errlen)
{
    char path[PATH_MAX];
    ea_err rc;

    if ((rc = read_config(ca, err, errlen)) != EA_OK || (rc = compile_pattern(ca, err, errlen)) != EA_OK)
        return rc;
    rc = EA_ERR_CORRUPT;
    if (!path_of(path, sizeof path, ca->dir, "root.pem") || !(ca->root = load_cert_file(path))) {
        errf(err, errlen, "cannot read %s/root.pem", ca->dir);
        return rc;
    }
    if (!path_of(path, sizeof path, ca->dir, "intermediate.pem") || !(ca->inter = load_cert_file(path))) {
        errf(err, errlen, "cannot read %s/intermediate.pem", ca->dir);
        return rc;
    }
    ca->issuer = X509_get_subject_name(ca->inter);
    if (ca->key_uri[0]) {
        if ((rc = se_load(ca, ca->key_uri, &ca->inter_key, err, errlen)) != EA_OK)
            return rc;
    } else if (!path_of(path, sizeof path, ca->dir, "intermediate.key") ||
               !(ca->inter_key = load_key_file(path, NULL))) {
        errf(err, errlen, "cannot read %s/intermediate.key", ca->dir);
        return EA_ERR_CORRUPT;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(ca->inter), ca->inter_key) != 1) {
        errf(err, errlen, "the intermediate key does not match intermediate.pem");
        return EA_ERR_CORRUPT;
    }
    if ((rc = prepare_profile(ca, err, errlen)) != EA_OK || (rc = index_load(ca, err, errlen)) != EA_OK)
        return rc;
    if (ca->journal_records >= COMPACT_AFTER && (rc = index_compact(ca)) != EA_OK) {
        errf(err, errlen, "cannot rewrite the index");
        return rc;
    }
    return pki_audit_open(ca, err, errlen);
}

static ea_ca *ca_new(const char *dir)
{
    ea_ca *ca = calloc(1, sizeof *ca);
    if (!ca)
        return NULL;
    ca->lock_fd = ca->journal_fd = ca->audit_fd = ca->certs_fd = -1;
    if (!(ca->dir = strdup(dir))) {
        free(ca);
        return NULL;
    }
    return ca;
}

ea_err ea_ca_open(const char *dir, ea_ca **out, char *err, size_t errlen)
{
    ea_ca *ca;
    ea_err rc;

    if (err && errlen)
        err[0] = '\0';
    if (!dir || !out)
        return EA_ERR_ARG;
    *out = NULL;
    if (!(ca = ca_new(dir)))
        return EA_ERR_NO_MEMORY;
    if ((rc = lock_dir(dir, &ca->lock_fd, err, errlen)) != EA_OK || (rc = ca_load(ca, err, errlen)) != EA_OK) {
        ea_ca_close(ca);
        return rc;
    }
    *out = ca;
    return EA_OK;
}

void ea_ca_close(ea_ca *ca)
{
    if (!ca)
        return;
    if (ca->batch)
        (void)ea_ca_batch_end(ca);
    pki_audit_close(ca);
    if (ca->journal_fd >= 0)
        close(ca->journal_fd);
    if (ca->certs_fd >= 0)
        close(ca->certs_fd);
    X509_EXTENSION_free(ca->ext_bc);
    X509_EXTENSION_free(ca->ext_ku);
    X509_EXTENSION_free(ca->ext_eku);
    X509_EXTENSION_free(ca->ext_aki);
    EVP_MD_CTX_free(ca->sign_tmpl);
    EVP_MD_free(ca->md_sha1);
    EVP_MD_free(ca->md_sha256);
    EVP_MD_free(ca->md_sha384);
    EC_GROUP_free(ca->p256);
    EVP_PKEY_free(ca->inter_key); /* a file key's scalar is cleared by OpenSSL on free */
    X509_free(ca->root);
    X509_free(ca->inter);
    OSSL_PROVIDER_unload(ca->prov_ea);
    OSSL_PROVIDER_unload(ca->prov_default);
    OSSL_LIB_CTX_free(ca->libctx);
    if (ca->re_ok)
        regfree(&ca->re);
    free(ca->ent);
    free(ca->by_serial.slot);
    free(ca->by_device.slot);
    if (ca->lock_fd >= 0)
        close(ca->lock_fd); /* releases the flock */
    free(ca->dir);
    free(ca);
}

X509 *ea_ca_root(const ea_ca *ca)
{
    return ca ? ca->root : NULL;
}

X509 *ea_ca_intermediate(const ea_ca *ca)
{
    return ca ? ca->inter : NULL;
}

const char *ea_ca_org(const ea_ca *ca)
{
    return ca ? ca->org : NULL;
}

/* ---- batch mode ------------------------------------------------------------------------ */

ea_err ea_ca_batch_begin(ea_ca *ca)
{
    if (!ca)
        return EA_ERR_ARG;
    ca->batch = true;
    return EA_OK;
}

ea_err ea_ca_batch_end(ea_ca *ca)
{
    ea_err rc = EA_OK;
    if (!ca)
        return EA_ERR_ARG;
    ca->batch = false;
    /* Order: certificates, then the index that names them, then the log
     * that records them: what is synced never points at what is not. */
    if (ca->dirty_issued && fsync(ca->certs_fd) != 0)
        rc = EA_ERR_IO;
    ca->dirty_issued = false;
    if (ca->dirty_journal && fsync(ca->journal_fd) != 0)
        rc = EA_ERR_IO;
    ca->dirty_journal = false;
    if (ca->dirty_audit && pki_audit_sync(ca) != EA_OK)
        rc = EA_ERR_IO;
    if (rc == EA_OK && ca->journal_records >= COMPACT_AFTER)
        rc = index_compact(ca);
    return rc;
}

/* ---- CRLs ------------------------------------------------------------------------------- */

static X509_CRL *make_crl(ea_ca *ca, X509 *issuer, EVP_PKEY *key, OSSL_LIB_CTX *libctx, bool root, unsigned days,
                          uint64_t number)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
    AUTHORITY_KEYID *aki = ski ? aki_make(ski->data, (size_t)ski->length) : NULL;
    time_t now = time(NULL);
    EVP_MD_CTX *mc = NULL;
    bool ok = false;

    if (!crl || !t || !num || !aki || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) || !X509_time_adj_ex(t, 0, 0, &now) ||
        !X509_CRL_set1_lastUpdate(crl, t) || !X509_time_adj_ex(t, (int)days, 0, &now) ||
        !X509_CRL_set1_nextUpdate(crl, t) || !ASN1_INTEGER_set_uint64(num, number) ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, aki, 0, 0) != 1)
        goto out;
    for (size_t i = 0; i < ca->n_ent; i++) {
        const pki_entry *e = &ca->ent[i];
        if (!e->revoked || (e->kind == PKI_KIND_INTERMEDIATE) != root)
            continue;
        X509_REVOKED *r = X509_REVOKED_new();
        BIGNUM *bn = NULL;
        ASN1_INTEGER *sn = NULL;
        ASN1_TIME *rt = NULL;
        time_t when = e->revoked_at;
        bool rok = r && BN_hex2bn(&bn, e->serial) && (sn = BN_to_ASN1_INTEGER(bn, NULL)) &&
                   X509_REVOKED_set_serialNumber(r, sn) && (rt = ASN1_TIME_new()) &&
                   X509_time_adj_ex(rt, 0, 0, &when) && X509_REVOKED_set_revocationDate(r, rt) &&
                   X509_CRL_add0_revoked(crl, r);
        BN_free(bn);
        ASN1_INTEGER_free(sn);
        ASN1_TIME_free(rt);
        if (!rok) {
            X509_REVOKED_free(r);
            goto out;
        }
    }
    if (!X509_CRL_sort(crl) || !(mc = EVP_MD_CTX_new()) ||
        EVP_DigestSignInit_ex(mc, NULL, md_for(key), libctx, NULL, key, NULL) != 1 || X509_CRL_sign_ctx(crl, mc) <= 0)
        goto out;
    ok = true;
out:
    EVP_MD_CTX_free(mc);
    AUTHORITY_KEYID_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    if (!ok) {
        X509_CRL_free(crl);
        crl = NULL;
    }
    return crl;
}

static bool crl_pem(BIO *b, X509_CRL *c)
{
    return PEM_write_bio_X509_CRL(b, c) == 1;
}

/* Write crl.pem (the intermediate's CRL, then the root's) and root-crl.pem.
 * root_key NULL: the root's CRL is re-signed from root.key if that file is
 * here, else the existing root-crl.pem is kept as it is. */
static ea_err write_crls(ea_ca *ca, EVP_PKEY *root_key, X509_CRL **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    EVP_PKEY *rk = root_key;
    X509_CRL *ic = NULL, *rc_crl = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm;
    ea_err rc = EA_ERR_CRYPTO;
    uint64_t number = ca->audit_seq + 1; /* the seq of the "crl" line: increases with every CRL */

    if (!b)
        return EA_ERR_NO_MEMORY;
    if (!rk && path_of(path, sizeof path, ca->dir, "root.key") && file_exists(path) &&
        !(rk = load_key_file(path, NULL))) {
        errf(err, errlen, "cannot read %s", path);
        goto out;
    }
    if (!(ic = make_crl(ca, ca->inter, ca->inter_key, ca->libctx, false,
                        ca->crl_days_override ? ca->crl_days_override : ca->crl_days, number))) {
        errf(err, errlen, "cannot sign the CRL: %s", ossl_reason());
        goto out;
    }
    if (rk) {
        if (!(rc_crl = make_crl(ca, ca->root, rk, NULL, true, ca->root_crl_days, number))) {
            errf(err, errlen, "cannot sign the root's CRL: %s", ossl_reason());
            goto out;
        }
        if (!crl_pem(b, rc_crl) || BIO_get_mem_ptr(b, &bm) != 1 ||
            !path_of(path, sizeof path, ca->dir, "root-crl.pem") ||
            ea_file_write_atomic(path, bm->data, bm->length, 0644) != EA_OK) {
            errf(err, errlen, "cannot write %s/root-crl.pem", ca->dir);
            rc = EA_ERR_IO;
            goto out;
        }
        (void)BIO_reset(b);
    } else if (path_of(path, sizeof path, ca->dir, "root-crl.pem")) {
        BIO *rb = BIO_new_file(path, "rb");
        rc_crl = rb ? PEM_read_bio_X509_CRL(rb, NULL, NULL, NULL) : NULL;
        BIO_free(rb);
    }
    if (!crl_pem(b, ic) || (rc_crl && !crl_pem(b, rc_crl)) || BIO_get_mem_ptr(b, &bm) != 1 ||
        !path_of(path, sizeof path, ca->dir, "crl.pem") ||
        ea_file_write_atomic(path, bm->data, bm->length, 0644) != EA_OK) {
        errf(err, errlen, "cannot write %s/crl.pem", ca->dir);
        rc = EA_ERR_IO;
        goto out;
    }
    {
        char fields[512] = "", nu[32];
        pki_json_num(fields, sizeof fields, "crl_number", (unsigned long long)number);
        int nrev = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(ic));
        pki_json_num(fields, sizeof fields, "revoked", nrev > 0 ? (unsigned long long)nrev : 0);
        pki_rfc3339(asn1_to_time(X509_CRL_get0_nextUpdate(ic)), nu);
        pki_json_str(fields, sizeof fields, "next_update", nu);
        pki_json_str(fields, sizeof fields, "root_crl", rk ? "re-signed" : rc_crl ? "kept" : "none");
        if ((rc = ea_ca_audit(ca, "crl", fields)) != EA_OK) {
            errf(err, errlen, "cannot append to the audit log");
            goto out;
        }
    }
    rc = EA_OK;
    if (out) {
        *out = ic;
        ic = NULL;
    }
out:
    if (rk != root_key)
        EVP_PKEY_free(rk);
    X509_CRL_free(ic);
    X509_CRL_free(rc_crl);
    BIO_free(b);
    return rc;
}

ea_err ea_ca_set_crl_days(ea_ca *ca, unsigned days)
{
    if (!ca || days > 3650)
        return EA_ERR_ARG;
    ca->crl_days_override = days;
    return EA_OK;
}

ea_err ea_ca_crl(ea_ca *ca, X509_CRL **crl, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!ca)
        return EA_ERR_ARG;
    return write_crls(ca, NULL, crl, err, errlen);
}

/* ---- init ---------------------------------------------------------------------------------- */

static ea_err check_init_opts(const ea_ca_init_opts *o, char *err, size_t errlen)
{
    if (!o || !o->org || !*o->org) {
        errf(err, errlen, "an organisation (O=) is required");
        return EA_ERR_ARG;
    }
    if (strlen(o->org) > PKI_ORG_MAX) {
        errf(err, errlen, "the organisation name is longer than %u bytes", PKI_ORG_MAX);
        return EA_ERR_ARG;
    }
    for (const unsigned char *p = (const unsigned char *)o->org; *p; p++)
        if (*p < 0x20 || *p == 0x7F) {
            errf(err, errlen, "the organisation name contains a control character");
            return EA_ERR_ARG;
        }
    if (o->device_id_pattern && (strlen(o->device_id_pattern) == 0 ||
                                 strlen(o->device_id_pattern) >= PKI_PATTERN_MAX)) {
        errf(err, errlen, "the device id pattern must be 1-%u bytes", PKI_PATTERN_MAX - 1);
        return EA_ERR_ARG;
    }
    if (o->root_days > 36500 || o->intermediate_days > 36500 || o->device_days > 36500 || o->crl_days > 3650 ||
        o->server_days > 36500) {
        errf(err, errlen, "a validity is more than 100 years");
        return EA_ERR_ARG;
    }
    return EA_OK;
}

/* Undo a failed init: the directory was absent or empty before, so
 * everything in it (and issued/ below it) is ours. */
static void remove_created(const char *dir)
{
    char path[PATH_MAX];
    for (int pass = 0; pass < 2; pass++) {
        char sub[PATH_MAX];
        if (!path_of(sub, sizeof sub, dir, pass == 0 ? "issued" : "."))
            return;
        DIR *d = opendir(sub);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || (pass == 1 && !strcmp(e->d_name, "issued")))
                continue;
            if (path_of(path, sizeof path, sub, e->d_name))
                unlink(path);
        }
        if (d)
            closedir(d);
        if (pass == 0)
            rmdir(sub);
    }
    rmdir(dir);
}

/* A directory we may create a CA in: absent, or empty. */
static ea_err prepare_dir(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;
    if (path_of(path, sizeof path, dir, "ca.json") && file_exists(path)) {
        errf(err, errlen, "%s already holds a CA (ca.json); refusing to overwrite it", dir);
        return EA_ERR_EXISTS;
    }
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            errf(err, errlen, "%s exists and is not a directory", dir);
            return EA_ERR_EXISTS;
        }
        if (rmdir(dir) != 0) { /* only an empty directory goes */
            errf(err, errlen, "%s exists and is not empty; refusing to create a CA in it", dir);
            return EA_ERR_EXISTS;
        }
    }
    if (ea_mkdir_p(dir, 0700) != EA_OK || !path_of(path, sizeof path, dir, "issued") || mkdir(path, 0755) != 0) {
        errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return EA_ERR_IO;
    }
    return EA_OK;
}

static void fingerprint(X509 *x, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (X509_digest(x, EVP_sha256(), md, &len) == 1 && len == 32)
        ea_hex_encode(md, 32, hex);
    else
        hex[0] = '\0';
}

static ea_err init_record(ea_ca *ca, X509 *x, char kind, const char *name)
{
    pki_entry e = { 0 };
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    ea_err rc = EA_ERR_INTERNAL;
    e.kind = kind;
    if (len > 0 && serial_hex(X509_get0_serialNumber(x), e.serial)) {
        e.not_after = asn1_to_time(X509_get0_notAfter(x));
        snprintf(e.name, sizeof e.name, "%s", name);
        if ((rc = store_cert(ca, &e, der, (size_t)len)) == EA_OK)
            rc = record_issued(ca, &e);
    }
    OPENSSL_free(der);
    return rc;
}

ea_err ea_ca_init(const char *dir, const ea_ca_init_opts *o, char *err, size_t errlen)
{
    char path[PATH_MAX], se_id[32] = "", se[PKI_URI_MAX] = "", cn[PKI_ORG_MAX + 32];
    ea_ca *ca = NULL;
    EVP_PKEY *root_key = NULL, *inter_key = NULL, *man_key = NULL;
    X509 *root = NULL, *inter = NULL, *man = NULL;
    EVP_MD *sha1 = NULL;
    ea_err rc;
    unsigned root_days, inter_days;
    bool created = false;

    if (err && errlen)
        err[0] = '\0';
    if (!dir || !*dir)
        return EA_ERR_ARG;
    if ((rc = check_init_opts(o, err, errlen)) != EA_OK)
        return rc;
    if (!(ca = ca_new(dir)))
        return EA_ERR_NO_MEMORY;
    snprintf(ca->org, sizeof ca->org, "%s", o->org);
    snprintf(ca->pattern, sizeof ca->pattern, "%s", o->device_id_pattern ? o->device_id_pattern : DEFAULT_PATTERN);
    if ((rc = compile_pattern(ca, err, errlen)) != EA_OK)
        goto out;
    root_days = o->root_days ? o->root_days : 7300;
    inter_days = o->intermediate_days ? o->intermediate_days : 3650;
    ca->device_days = o->device_days;
    ca->server_days = o->server_days ? o->server_days : 825;
    ca->crl_days = o->crl_days ? o->crl_days : 30;
    ca->root_crl_days = 365;
    if (o->ca_key_uri) {
        if ((rc = parse_se_uri(o->ca_key_uri, se_id, sizeof se_id, se, sizeof se, err, errlen)) != EA_OK)
            goto out;
        int n = snprintf(ca->key_uri, sizeof ca->key_uri, "se05x:%s?se=%s", se_id, se);
        if (n < 0 || (size_t)n >= sizeof ca->key_uri) {
            errf(err, errlen, "--ca-key: the URI is too long");
            rc = EA_ERR_ARG;
            goto out;
        }
    }
    if ((rc = prepare_dir(dir, err, errlen)) != EA_OK)
        goto out;
    created = true;
    if ((rc = lock_dir(dir, &ca->lock_fd, err, errlen)) != EA_OK)
        goto out;

    rc = EA_ERR_CRYPTO;
    if (!(sha1 = EVP_MD_fetch(NULL, "SHA1", NULL)) || !(root_key = gen_ec_file_key("P-384")) ||
        !(man_key = gen_ec_file_key("P-256"))) {
        errf(err, errlen, "key generation failed: %s", ossl_reason());
        goto out;
    }
    if (se_id[0]) {
        if ((rc = se_generate(ca, se_id, se, &inter_key, err, errlen)) != EA_OK)
            goto out;
        rc = EA_ERR_CRYPTO;
    } else if (!(inter_key = gen_ec_file_key("P-256"))) {
        errf(err, errlen, "key generation failed: %s", ossl_reason());
        goto out;
    }
    snprintf(cn, sizeof cn, "%s Root CA", o->org);
    if (!(root = make_ca_cert(o, cn, root_key, NULL, root_key, root_days, -1, false, sha1))) {
        errf(err, errlen, "cannot make the root certificate: %s", ossl_reason());
        goto out;
    }
    snprintf(cn, sizeof cn, "%s Device CA", o->org);
    if (!(inter = make_ca_cert(o, cn, inter_key, root, root_key, inter_days, 0, true, sha1))) {
        errf(err, errlen, "cannot make the intermediate certificate: %s", ossl_reason());
        goto out;
    }
    rc = EA_ERR_IO;
    if (!path_of(path, sizeof path, dir, "root.key") || save_key(path, root_key) != EA_OK ||
        !path_of(path, sizeof path, dir, "root.pem") || save_pem_cert(path, root) != EA_OK ||
        (!se_id[0] && (!path_of(path, sizeof path, dir, "intermediate.key") || save_key(path, inter_key) != EA_OK)) ||
        !path_of(path, sizeof path, dir, "intermediate.pem") || save_pem_cert(path, inter) != EA_OK ||
        write_config(dir, ca, root_days, inter_days) != EA_OK) {
        errf(err, errlen, "cannot write the CA files in %s: %s", dir, strerror(errno));
        goto out;
    }
    /* From here on the CA is usable: load it as ea_ca_open would. */
    EVP_PKEY_free(inter_key);
    inter_key = NULL;
    if ((rc = ca_load(ca, err, errlen)) != EA_OK)
        goto out;

    /* The manifest signer: an end entity of the intermediate. */
    {
        unsigned char sb[PKI_SERIAL_LEN];
        char hex[PKI_SERIAL_HEX];
        snprintf(cn, sizeof cn, "%s Manifest Signing", o->org);
        rc = EA_ERR_CRYPTO;
        if (!(man = make_ee_cert(ca, cn, man_key, NID_code_sign, NULL, inter_days, sb, hex, sha1))) {
            errf(err, errlen, "cannot make the manifest-signing certificate: %s", ossl_reason());
            goto out;
        }
        rc = EA_ERR_IO;
        if (!path_of(path, sizeof path, dir, "manifest.key") || save_key(path, man_key) != EA_OK ||
            !path_of(path, sizeof path, dir, "manifest.pem") || save_pem_cert(path, man) != EA_OK) {
            errf(err, errlen, "cannot write the manifest signer in %s", dir);
            goto out;
        }
    }
    if ((rc = init_record(ca, ca->inter, PKI_KIND_INTERMEDIATE, "intermediate")) != EA_OK ||
        (rc = init_record(ca, man, PKI_KIND_MANIFEST, "manifest")) != EA_OK) {
        errf(err, errlen, "cannot write the index");
        goto out;
    }
    {
        char fields[2048] = "", fr[65], fi[65], fm[65], sr[PKI_SERIAL_HEX], si[PKI_SERIAL_HEX];
        fingerprint(ca->root, fr);
        fingerprint(ca->inter, fi);
        fingerprint(man, fm);
        serial_hex(X509_get0_serialNumber(ca->root), sr);
        serial_hex(X509_get0_serialNumber(ca->inter), si);
        pki_json_str(fields, sizeof fields, "org", ca->org);
        pki_json_str(fields, sizeof fields, "root_serial", sr);
        pki_json_str(fields, sizeof fields, "root_sha256", fr);
        pki_json_str(fields, sizeof fields, "intermediate_serial", si);
        pki_json_str(fields, sizeof fields, "intermediate_sha256", fi);
        pki_json_str(fields, sizeof fields, "intermediate_key", ca->key_uri[0] ? ca->key_uri : "file");
        pki_json_str(fields, sizeof fields, "manifest_sha256", fm);
        pki_json_str(fields, sizeof fields, "device_id_pattern", ca->pattern);
        pki_json_num(fields, sizeof fields, "device_days", ca->device_days);
        if ((rc = ea_ca_audit(ca, "init", fields)) != EA_OK) {
            errf(err, errlen, "cannot write the audit log");
            goto out;
        }
    }
    rc = write_crls(ca, root_key, NULL, err, errlen);
out:
    EVP_MD_free(sha1);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    EVP_PKEY_free(man_key);
    X509_free(root);
    X509_free(inter);
    X509_free(man);
    ea_ca_close(ca);
    if (rc != EA_OK && created)
        remove_created(dir);
    return rc;
}

/* ---- device issuance ------------------------------------------------------------------------- */

/* PEM to DER (labels CERTIFICATE REQUEST and NEW CERTIFICATE REQUEST), or
 * the input itself. *owned is what to OPENSSL_free. */
static bool csr_der(const uint8_t *csr, size_t len, const uint8_t **der, size_t *der_len, unsigned char **owned)
{
    *owned = NULL;
    if (len > 64 * 1024)
        return false;
    if (len >= 11 && !memcmp(csr, "-----BEGIN ", 11)) {
        BIO *b = BIO_new_mem_buf(csr, (int)len);
        long dl = 0;
        bool ok = b && PEM_bytes_read_bio(owned, &dl, NULL, PEM_STRING_X509_REQ, b, NULL, NULL) == 1 && dl > 0;
        BIO_free(b);
        if (!ok) {
            OPENSSL_free(*owned);
            *owned = NULL;
            return false;
        }
        *der = *owned;
        *der_len = (size_t)dl;
        return true;
    }
    *der = csr;
    *der_len = len;
    return true;
}

/* The CN of a subject, as UTF-8 (exactly one, no NUL inside). */
static bool name_cn(X509_NAME *n, char *out, size_t cap, char *err, size_t errlen)
{
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int len;
    if (i < 0) {
        errf(err, errlen, "CSR refused: the subject has no CN (the device id)");
        return false;
    }
    if (X509_NAME_get_index_by_NID(n, NID_commonName, i) >= 0) {
        errf(err, errlen, "CSR refused: the subject has more than one CN");
        return false;
    }
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
    if (len <= 0 || (size_t)len >= cap || memchr(utf8, 0, (size_t)len)) {
        errf(err, errlen, "CSR refused: the CN is empty, too long or not text");
        OPENSSL_free(utf8);
        return false;
    }
    memcpy(out, utf8, (size_t)len);
    out[len] = '\0';
    OPENSSL_free(utf8);
    return true;
}

/* The general path: OpenSSL parses the request. Key type, curve, version
 * and signature are checked here; *pub is the request's key (a new
 * reference), *subject its name. */
static ea_err csr_slow(const uint8_t *der, size_t len, EVP_PKEY **pub, X509_NAME **subject, char *err,
                       size_t errlen)
{
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    char words[64];
    ea_err rc = EA_ERR_MALFORMED;
    EVP_PKEY *pk;

    if (!req || p != der + len) { /* trailing bytes: not one DER request */
        errf(err, errlen, "malformed CSR: not a PKCS#10 request (DER or PEM)");
        goto out;
    }
    if (!(pk = X509_REQ_get0_pubkey(req))) {
        errf(err, errlen, "malformed CSR: the public key does not parse");
        goto out;
    }
    if (!pki_key_is_ec(pk, 256)) {
        key_words(pk, words, sizeof words);
        errf(err, errlen, "CSR refused: the key is %s; the device profile requires EC P-256", words);
        rc = EA_ERR_DENIED;
        goto out;
    }
    if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
        errf(err, errlen, "malformed CSR: version is not 1 (v1 = 0)");
        goto out;
    }
    if (X509_REQ_verify(req, pk) != 1) {
        errf(err, errlen, "bad CSR signature: the request is not signed by the key it carries");
        rc = EA_ERR_AUTH;
        goto out;
    }
    if (!(*subject = X509_NAME_dup(X509_REQ_get_subject_name(req))) || !EVP_PKEY_up_ref(pk)) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    *pub = pk;
    rc = EA_OK;
out:
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

#ifndef OPENSSL_NO_DEPRECATED_3_0
/* The fast path, for the request every device sends: DER, an EC P-256 key,
 * ecdsa-with-SHA256 or -SHA384. OpenSSL 3.0 decodes and re-encodes a public
 * key through its provider decoders and encoders, about 0.2 ms each way:
 * more than everything else an issuance does together. Here the key is
 * taken as the point it is, checked on the curve, and the signature is
 * checked over the exact signed bytes. Anything of another shape returns
 * EA_ERR_UNSUPPORTED and takes the general path, which then decides. */
#include <openssl/ecdsa.h>

static const uint8_t spki_p256_alg[] = { 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01,
                                         0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07 };
static const uint8_t oid_ecdsa_sha256[] = { 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02 };
static const uint8_t oid_ecdsa_sha384[] = { 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03 };

static bool tlv(ea_cur *c, uint8_t want, ea_cur *val, ea_cur *whole)
{
    const uint8_t *start = c->p;
    uint8_t tag;
    if (ea_tlv_next(c, &tag, val) != EA_OK || tag != want)
        return false;
    if (whole)
        *whole = ea_cur_make(start, (size_t)(c->p - start));
    return true;
}

static bool same(const ea_cur *v, const uint8_t *b, size_t n)
{
    return v->n == n && !memcmp(v->p, b, n);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static ea_err csr_fast(ea_ca *ca, const uint8_t *der, size_t len, EVP_PKEY **pub, X509_NAME **subject, char *err,
                       size_t errlen)
{
    ea_cur all = ea_cur_make(der, len), req, info, info_tlv, v, subj_tlv, spki, alg, bits, sigalg, sig, attrs;
    const EVP_MD *md;
    uint8_t dgst[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    EC_KEY *ec = NULL;
    EVP_PKEY *pk = NULL;

    /* CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature } */
    if (!tlv(&all, 0x30, &req, NULL) || all.n != 0 || !tlv(&req, 0x30, &info, &info_tlv) ||
        !tlv(&req, 0x30, &sigalg, NULL) || !tlv(&req, 0x03, &sig, NULL) || req.n != 0)
        return EA_ERR_UNSUPPORTED;
    /* info ::= SEQUENCE { version 0, subject, SubjectPublicKeyInfo, [0] attributes } */
    if (!tlv(&info, 0x02, &v, NULL) || v.n != 1 || v.p[0] != 0 || !tlv(&info, 0x30, &v, &subj_tlv) ||
        !tlv(&info, 0x30, &spki, NULL) || !tlv(&info, 0xA0, &attrs, NULL) || info.n != 0)
        return EA_ERR_UNSUPPORTED;
    if (!tlv(&spki, 0x30, &alg, NULL) || !same(&alg, spki_p256_alg, sizeof spki_p256_alg) ||
        !tlv(&spki, 0x03, &bits, NULL) || spki.n != 0 || bits.n != 66 || bits.p[0] != 0 || bits.p[1] != 0x04)
        return EA_ERR_UNSUPPORTED;
    if (same(&sigalg, oid_ecdsa_sha256, sizeof oid_ecdsa_sha256))
        md = ca->md_sha256;
    else if (same(&sigalg, oid_ecdsa_sha384, sizeof oid_ecdsa_sha384))
        md = ca->md_sha384;
    else
        return EA_ERR_UNSUPPORTED;
    if (sig.n < 2 || sig.p[0] != 0)
        return EA_ERR_UNSUPPORTED;

    /* The point must be on the curve (o2i checks); then the signature. */
    const unsigned char *pp = bits.p + 1;
    /* EC_KEY_set_group copies a group made once: building P-256 from its
     * parameters each time costs ~15 us. */
    if (!ca->p256 && !(ca->p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)))
        return EA_ERR_CRYPTO;
    if (!(ec = EC_KEY_new()) || !EC_KEY_set_group(ec, ca->p256) || !o2i_ECPublicKey(&ec, &pp, 65)) {
        EC_KEY_free(ec);
        ERR_clear_error();
        errf(err, errlen, "malformed CSR: the public key is not a point of P-256");
        return EA_ERR_MALFORMED;
    }
    if (EVP_Digest(info_tlv.p, info_tlv.n, dgst, &dlen, md, NULL) != 1) {
        EC_KEY_free(ec);
        return EA_ERR_CRYPTO;
    }
    if (ECDSA_verify(0, dgst, (int)dlen, sig.p + 1, (int)sig.n - 1, ec) != 1) {
        EC_KEY_free(ec);
        ERR_clear_error();
        errf(err, errlen, "bad CSR signature: the request is not signed by the key it carries");
        return EA_ERR_AUTH;
    }
    /* A key with the legacy method: X509_set_pubkey encodes it directly. */
    if (!(pk = EVP_PKEY_new()) || !EVP_PKEY_assign_EC_KEY(pk, ec)) {
        EVP_PKEY_free(pk);
        EC_KEY_free(ec);
        return EA_ERR_NO_MEMORY;
    }
    const unsigned char *sp = subj_tlv.p;
    if (!(*subject = d2i_X509_NAME(NULL, &sp, (long)subj_tlv.n)) || sp != subj_tlv.p + subj_tlv.n) {
        X509_NAME_free(*subject);
        *subject = NULL;
        EVP_PKEY_free(pk);
        ERR_clear_error();
        errf(err, errlen, "malformed CSR: the subject does not parse");
        return EA_ERR_MALFORMED;
    }
    *pub = pk;
    return EA_OK;
}
#pragma GCC diagnostic pop
#else
static ea_err csr_fast(ea_ca *ca, const uint8_t *der, size_t len, EVP_PKEY **pub, X509_NAME **subject, char *err,
                       size_t errlen)
{
    (void)ca, (void)der, (void)len, (void)pub, (void)subject, (void)err, (void)errlen;
    return EA_ERR_UNSUPPORTED;
}
#endif

/* The device-id policy, once the CN is known. */
static ea_err check_id(ea_ca *ca, const char *id, const char *want_id, char *err, size_t errlen)
{
    char shown[PKI_ID_MAX * 2 + 1];
    const char *bad;

    safe_text(id, shown, sizeof shown);
    if ((bad = id_bad_char(id))) {
        errf(err, errlen, "CSR refused: device id '%s' has %s", shown, bad);
        return EA_ERR_DENIED;
    }
    if (regexec(&ca->re, id, 0, NULL, 0) != 0) {
        errf(err, errlen, "CSR refused: device id '%s' does not match the pattern %s", shown, ca->pattern);
        return EA_ERR_DENIED;
    }
    if (want_id && strcmp(want_id, id) != 0) {
        char w[PKI_ID_MAX * 2 + 1];
        safe_text(want_id, w, sizeof w);
        errf(err, errlen, "CSR refused: its CN '%s' is not the device id '%s'", shown, w);
        return EA_ERR_DENIED;
    }
    long cur = table_get(&ca->by_device, ca->ent, true, id);
    if (cur >= 0) {
        errf(err, errlen, "CSR refused: device id '%s' already has an active certificate (serial %s); revoke it first",
             shown, ca->ent[cur].serial);
        return EA_ERR_DENIED;
    }
    return EA_OK;
}

/* The whole CSR policy: on EA_OK *pub is the key to certify and id the CN. */
static ea_err check_csr(ea_ca *ca, const uint8_t *csr, size_t len, const char *want_id, EVP_PKEY **pub, char *id,
                        size_t idcap, char *err, size_t errlen)
{
    const uint8_t *der;
    size_t der_len;
    unsigned char *owned = NULL;
    X509_NAME *subject = NULL;
    ea_err rc;

    *pub = NULL;
    if (!csr_der(csr, len, &der, &der_len, &owned)) {
        ERR_clear_error();
        errf(err, errlen, "malformed CSR: not a PKCS#10 request (DER or PEM)");
        return EA_ERR_MALFORMED;
    }
    rc = csr_fast(ca, der, der_len, pub, &subject, err, errlen);
    if (rc == EA_ERR_UNSUPPORTED)
        rc = csr_slow(der, der_len, pub, &subject, err, errlen);
    OPENSSL_free(owned);
    if (rc == EA_OK && !name_cn(subject, id, idcap, err, errlen))
        rc = EA_ERR_DENIED;
    if (rc == EA_OK)
        rc = check_id(ca, id, want_id, err, errlen);
    X509_NAME_free(subject);
    if (rc != EA_OK) {
        EVP_PKEY_free(*pub);
        *pub = NULL;
    }
    return rc;
}

static void note_fields(char *fields, size_t cap, const char *note)
{
    if (note && *note)
        pki_json_str(fields, cap, "note", note);
}

ea_err ea_ca_issue_device(ea_ca *ca, const uint8_t *csr, size_t csr_len, const char *device_id, const char *note,
                          X509 **cert, char *err, size_t errlen)
{
    char id[PKI_ID_MAX + 1], fp[65];
    unsigned char sb[PKI_SERIAL_LEN], ski[EVP_MAX_MD_SIZE], md[32], *der = NULL;
    unsigned skilen = 0, mdlen = 0;
    pki_entry e = { 0 };
    EVP_PKEY *pub = NULL;
    X509 *x = NULL;
    X509_NAME *subj = NULL;
    ASN1_OCTET_STRING *os = NULL;
    EVP_MD_CTX *mc = NULL;
    ea_err rc = EA_ERR_INTERNAL;
    int derlen;
    time_t now = time(NULL);

    if (err && errlen)
        err[0] = '\0';
    if (!ca || !csr || !cert)
        return EA_ERR_ARG;
    *cert = NULL;
    if (ca->inter_revoked) {
        errf(err, errlen, "refused: the intermediate CA is revoked");
        return EA_ERR_DENIED;
    }
    if ((rc = check_csr(ca, csr, csr_len, device_id, &pub, id, sizeof id, err, errlen)) != EA_OK)
        goto out;

    rc = EA_ERR_CRYPTO;
    /* Only the key and the CN cross over from the CSR; the extensions are ours. */
    if (!(x = X509_new()) || !(subj = make_name(ca->org, id)) || !X509_set_version(x, X509_VERSION_3) ||
        !new_serial(ca, sb, e.serial) || !set_serial(x, sb) || !X509_set_issuer_name(x, ca->issuer) ||
        !X509_set_subject_name(x, subj) || !set_validity(x, now, ca->device_days, true) ||
        !X509_set_pubkey(x, pub) || !X509_add_ext(x, ca->ext_bc, -1) ||
        !X509_add_ext(x, ca->ext_ku, -1) || !X509_add_ext(x, ca->ext_eku, -1) ||
        !key_id(x, ca->md_sha1, ski, &skilen) || !(os = ASN1_OCTET_STRING_new()) ||
        !ASN1_OCTET_STRING_set(os, ski, (int)skilen) || !add_ext(x, NID_subject_key_identifier, 0, os) ||
        !X509_add_ext(x, ca->ext_aki, -1))
        goto out;
    /* A device certificate may outlive the intermediate on purpose: the
     * intermediate can be renewed with the same name and key, and the
     * certificates already in the field keep chaining (docs/PKI.md). */
    if (!(mc = EVP_MD_CTX_new()) || EVP_MD_CTX_copy_ex(mc, ca->sign_tmpl) != 1) {
        EVP_MD_CTX_free(mc);
        if (!(mc = EVP_MD_CTX_new()) ||
            EVP_DigestSignInit_ex(mc, NULL, "SHA256", ca->libctx, NULL, ca->inter_key, NULL) != 1)
            goto out;
    }
    if (X509_sign_ctx(x, mc) <= 0) {
        errf(err, errlen, "the CA could not sign: %s", ossl_reason());
        goto out;
    }
    if ((derlen = i2d_X509(x, &der)) <= 0 || EVP_Digest(der, (size_t)derlen, md, &mdlen, ca->md_sha256, NULL) != 1)
        goto out;
    ea_hex_encode(md, 32, fp);

    e.kind = PKI_KIND_DEVICE;
    e.not_after = asn1_to_time(X509_get0_notAfter(x));
    snprintf(e.name, sizeof e.name, "%s", id);
    /* Certificate file, then index, then audit: each record only names
     * what is already on disk. */
    if ((rc = store_cert(ca, &e, der, (size_t)derlen)) != EA_OK || (rc = record_issued(ca, &e)) != EA_OK) {
        errf(err, errlen, "cannot record the certificate in %s/issued", ca->dir);
        goto out;
    }
    {
        char fields[PKI_AUDIT_LINE_MAX / 2] = "", na[32];
        pki_rfc3339(e.not_after, na);
        pki_json_str(fields, sizeof fields, "device", id);
        pki_json_str(fields, sizeof fields, "serial", e.serial);
        pki_json_str(fields, sizeof fields, "not_after", na);
        pki_json_str(fields, sizeof fields, "sha256", fp);
        note_fields(fields, sizeof fields, note);
        if ((rc = ea_ca_audit(ca, "issue", fields)) != EA_OK) {
            errf(err, errlen, "cannot append to the audit log");
            goto out;
        }
    }
    *cert = x;
    x = NULL;
    rc = EA_OK;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(mc);
    ASN1_OCTET_STRING_free(os);
    X509_NAME_free(subj);
    X509_free(x);
    EVP_PKEY_free(pub);
    if (rc != EA_OK && err && !*err)
        errf(err, errlen, "issuance failed: %s", ea_err_str(rc));
    return rc;
}

bool ea_ca_device_active(ea_ca *ca, const char *device_id)
{
    return ca && device_id && table_get(&ca->by_device, ca->ent, true, device_id) >= 0;
}

ea_err ea_ca_device_cert(ea_ca *ca, const char *device_id, X509 **cert)
{
    long i;
    if (!ca || !device_id || !cert)
        return EA_ERR_ARG;
    *cert = NULL;
    if ((i = table_get(&ca->by_device, ca->ent, true, device_id)) < 0)
        return EA_ERR_NOT_FOUND;
    return (*cert = load_issued(ca, &ca->ent[i])) ? EA_OK : EA_ERR_CORRUPT;
}

ea_err ea_ca_find_cert(ea_ca *ca, const char *what, X509 **cert)
{
    char serial[PKI_SERIAL_HEX];
    long i = -1;
    if (!ca || !what || !cert)
        return EA_ERR_ARG;
    *cert = NULL;
    if (serial_normalize(what, serial))
        i = table_get(&ca->by_serial, ca->ent, false, serial);
    if (i < 0)
        i = table_get(&ca->by_device, ca->ent, true, what);
    if (i < 0)
        return EA_ERR_NOT_FOUND;
    return (*cert = load_issued(ca, &ca->ent[i])) ? EA_OK : EA_ERR_CORRUPT;
}

ea_err ea_ca_manifest_signer(ea_ca *ca, EVP_PKEY **key, X509 **cert, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (err && errlen)
        err[0] = '\0';
    if (!ca || !key || !cert)
        return EA_ERR_ARG;
    *key = NULL;
    *cert = NULL;
    if (!path_of(path, sizeof path, ca->dir, "manifest.pem") || !(*cert = load_cert_file(path)) ||
        !path_of(path, sizeof path, ca->dir, "manifest.key") || !(*key = load_key_file(path, NULL))) {
        errf(err, errlen, "cannot read the manifest signer (%s/manifest.key, manifest.pem)", ca->dir);
        X509_free(*cert);
        *cert = NULL;
        return EA_ERR_NOT_FOUND;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(*cert), *key) != 1) {
        errf(err, errlen, "manifest.key does not match manifest.pem");
        EVP_PKEY_free(*key);
        X509_free(*cert);
        *key = NULL;
        *cert = NULL;
        return EA_ERR_CORRUPT;
    }
    return EA_OK;
}

/* ---- server certificates ----------------------------------------------------------------------- */

/* "DNS:a.example,IP:127.0.0.1" -> GENERAL_NAMES. */
static GENERAL_NAMES *parse_san(const char *san, char *err, size_t errlen)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    char *copy = strdup(san), *save = NULL;
    bool ok = gens && copy;

    for (char *t = ok ? strtok_r(copy, ",", &save) : NULL; ok && t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        GENERAL_NAME *g = NULL;
        if (!strncmp(t, "DNS:", 4) && t[4]) {
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            for (const char *c = t + 4; *c; c++)
                if (!isalnum((unsigned char)*c) && !strchr(".-*_", *c)) {
                    errf(err, errlen, "--san: '%s' is not a DNS name", t + 4);
                    ok = false;
                }
            if (ok && s && ASN1_STRING_set(s, t + 4, -1) && (g = GENERAL_NAME_new()))
                GENERAL_NAME_set0_value(g, GEN_DNS, s);
            else
                ASN1_IA5STRING_free(s);
        } else if (!strncmp(t, "IP:", 3)) {
            ASN1_OCTET_STRING *ip = a2i_IPADDRESS(t + 3);
            if (!ip) {
                errf(err, errlen, "--san: '%s' is not an IP address", t + 3);
                ok = false;
            } else if ((g = GENERAL_NAME_new())) {
                GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
            } else {
                ASN1_OCTET_STRING_free(ip);
            }
        } else {
            errf(err, errlen, "--san: expected DNS:name or IP:address, got '%.64s'", t);
            ok = false;
        }
        if (ok && (!g || !sk_GENERAL_NAME_push(gens, g))) {
            GENERAL_NAME_free(g);
            ok = false;
        }
    }
    free(copy);
    if (!ok || sk_GENERAL_NAME_num(gens) == 0) {
        if (ok)
            errf(err, errlen, "--san: no name given");
        GENERAL_NAMES_free(gens);
        return NULL;
    }
    return gens;
}

/* Drop later duplicates of an earlier name (the CN given in --san too). */
static void dedup_names(GENERAL_NAMES *gens)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++)
        for (int j = sk_GENERAL_NAME_num(gens) - 1; j > i; j--)
            if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(gens, i), sk_GENERAL_NAME_value(gens, j)) == 0)
                GENERAL_NAME_free(sk_GENERAL_NAME_delete(gens, j));
}

ea_err ea_ca_issue_server(ea_ca *ca, const char *cn, const char *san, const char *key_path, const char *cert_path,
                          char *err, size_t errlen)
{
    unsigned char sb[PKI_SERIAL_LEN], *der = NULL;
    char hex[PKI_SERIAL_HEX], fp[65];
    GENERAL_NAMES *gens = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    ea_err rc = EA_ERR_ARG;
    int derlen;

    if (err && errlen)
        err[0] = '\0';
    if (!ca || !cn || !*cn || !key_path || !cert_path)
        return EA_ERR_ARG;
    if (strlen(cn) > PKI_ID_MAX || id_bad_char(cn)) {
        errf(err, errlen, "--cn: 1-%u printable characters without spaces", PKI_ID_MAX);
        return EA_ERR_ARG;
    }
    if (ca->inter_revoked) {
        errf(err, errlen, "refused: the intermediate CA is revoked");
        return EA_ERR_DENIED;
    }
    /* Clients match SAN entries only, so the CN is one of them too
     * (CABF 7.1.4.3): first, unless the list already has it. */
    {
        char *all = NULL;
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(cn);
        size_t n = strlen(cn) + (san ? strlen(san) : 0) + 8;
        if (!(all = malloc(n))) {
            ASN1_OCTET_STRING_free(ip);
            rc = EA_ERR_NO_MEMORY;
            goto out;
        }
        snprintf(all, n, "%s:%s%s%s", ip ? "IP" : "DNS", cn, san && *san ? "," : "", san && *san ? san : "");
        ASN1_OCTET_STRING_free(ip);
        gens = parse_san(all, err, errlen);
        free(all);
        if (!gens)
            goto out;
        dedup_names(gens);
    }
    rc = EA_ERR_CRYPTO;
    if (!(key = gen_ec_file_key("P-256")) ||
        !(x = make_ee_cert(ca, cn, key, NID_server_auth, gens, ca->server_days, sb, hex, ca->md_sha1))) {
        errf(err, errlen, "cannot make the server certificate: %s", ossl_reason());
        goto out;
    }
    if ((derlen = i2d_X509(x, &der)) <= 0)
        goto out;
    fingerprint(x, fp);
    rc = EA_ERR_IO;
    if (save_key(key_path, key) != EA_OK || save_pem_cert(cert_path, x) != EA_OK) {
        errf(err, errlen, "cannot write %s / %s: %s", key_path, cert_path, strerror(errno));
        goto out;
    }
    {
        pki_entry e = { .kind = PKI_KIND_SERVER };
        snprintf(e.serial, sizeof e.serial, "%s", hex);
        snprintf(e.name, sizeof e.name, "%s", cn);
        e.not_after = asn1_to_time(X509_get0_notAfter(x));
        if ((rc = store_cert(ca, &e, der, (size_t)derlen)) != EA_OK || (rc = record_issued(ca, &e)) != EA_OK) {
            errf(err, errlen, "cannot record the certificate in %s/issued", ca->dir);
            goto out;
        }
    }
    {
        char fields[2048] = "";
        pki_json_str(fields, sizeof fields, "cn", cn);
        pki_json_str(fields, sizeof fields, "san", san && *san ? san : "");
        pki_json_str(fields, sizeof fields, "serial", hex);
        pki_json_str(fields, sizeof fields, "sha256", fp);
        if ((rc = ea_ca_audit(ca, "server-cert", fields)) != EA_OK) {
            errf(err, errlen, "cannot append to the audit log");
            goto out;
        }
    }
    rc = EA_OK;
out:
    OPENSSL_free(der);
    GENERAL_NAMES_free(gens);
    EVP_PKEY_free(key);
    X509_free(x);
    return rc;
}

/* ---- revocation ------------------------------------------------------------------------------------ */

ea_err ea_ca_revoke(ea_ca *ca, const char *what, char *err, size_t errlen)
{
    char serial[PKI_SERIAL_HEX], shown[PKI_ID_MAX * 2 + 1];
    long by_serial = -1, by_dev;
    pki_entry *e;
    ea_err rc;
    time_t now = time(NULL);

    if (err && errlen)
        err[0] = '\0';
    if (!ca || !what || !*what)
        return EA_ERR_ARG;
    safe_text(what, shown, sizeof shown);
    if (serial_normalize(what, serial))
        by_serial = table_get(&ca->by_serial, ca->ent, false, serial);
    by_dev = table_get(&ca->by_device, ca->ent, true, what);
    if (by_serial >= 0 && by_dev >= 0 && by_serial != by_dev) {
        errf(err, errlen, "'%s' is both a serial and a device id; give the serial with 0x", shown);
        return EA_ERR_ARG;
    }
    if (by_serial < 0 && by_dev < 0) {
        errf(err, errlen, "no certificate with serial or active device id '%s'", shown);
        return EA_ERR_NOT_FOUND;
    }
    e = &ca->ent[by_serial >= 0 ? by_serial : by_dev];
    if (e->revoked) {
        errf(err, errlen, "serial %s is already revoked", e->serial);
        return EA_ERR_EXISTS;
    }
    /* Revoking the intermediate needs the root's key for the root's CRL. */
    EVP_PKEY *root_key = NULL;
    if (e->kind == PKI_KIND_INTERMEDIATE) {
        char path[PATH_MAX];
        if (!path_of(path, sizeof path, ca->dir, "root.key") || !(root_key = load_key_file(path, NULL))) {
            errf(err, errlen, "revoking the intermediate needs the root key (%s/root.key)", ca->dir);
            return EA_ERR_NOT_FOUND;
        }
    }
    if ((rc = record_revoked(ca, e, now)) != EA_OK) {
        errf(err, errlen, "cannot write the index");
        goto out;
    }
    {
        char fields[1024] = "";
        const char *kind = e->kind == PKI_KIND_DEVICE ? "device" : e->kind == PKI_KIND_SERVER ? "server"
                           : e->kind == PKI_KIND_MANIFEST ? "manifest" : "intermediate";
        pki_json_str(fields, sizeof fields, "serial", e->serial);
        pki_json_str(fields, sizeof fields, "kind", kind);
        pki_json_str(fields, sizeof fields, e->kind == PKI_KIND_DEVICE ? "device" : "name", e->name);
        if ((rc = ea_ca_audit(ca, "revoke", fields)) != EA_OK) {
            errf(err, errlen, "cannot append to the audit log");
            goto out;
        }
    }
    rc = write_crls(ca, root_key, NULL, err, errlen);
out:
    EVP_PKEY_free(root_key);
    return rc;
}

/* ---- summary ----------------------------------------------------------------------------------- */

void ea_ca_get_info(const ea_ca *ca, ea_ca_info *out)
{
    memset(out, 0, sizeof *out);
    if (!ca)
        return;
    for (size_t i = 0; i < ca->n_ent; i++) {
        const pki_entry *e = &ca->ent[i];
        if (e->kind == PKI_KIND_DEVICE) {
            if (e->revoked)
                out->devices_revoked++;
            else
                out->devices_active++;
        } else if (e->kind == PKI_KIND_SERVER) {
            out->server_certs++;
        }
    }
    out->audit_lines = ca->audit_seq;
    out->device_days = ca->device_days;
    out->server_days = ca->server_days;
    out->crl_days = ca->crl_days;
    out->device_id_pattern = ca->pattern;
    out->intermediate_key = ca->key_uri[0] ? ca->key_uri : "file";
    out->intermediate_revoked = ca->inter_revoked;
}
