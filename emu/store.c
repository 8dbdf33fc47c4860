/* The sealed, crash-safe object store of one emulated chip (contract in
 * store.h).
 *
 * On-disk format, version 1. Integers are big-endian.
 *
 *   objects/<id:8 hex>.<gen:16 hex>     one blob per live object, never rewritten
 *     "EAOB" ver=1 id:4 gen:8 meta_len:2 value_len:4 nonce:12 meta ct tag:16
 *     AES-256-GCM under the blob key; AAD = everything before ct, so the id,
 *     the generation and the metadata are authenticated with the value.
 *
 *   objects/index                       the commit point
 *     "EAIX" ver=1 kcv:8 nonce:12 epoch:8 count:4 {id:4 gen:8}*count tag:16
 *     AES-256-GCM with an empty plaintext (a GMAC: nothing in it is secret,
 *     the file names show the same ids) under the index key; AAD = all but
 *     the tag. Entries are sorted by id, no duplicates, 1 <= gen <= epoch.
 *
 *   objects/chip.id                     16 random bytes made at create
 *
 * Keys: HKDF-SHA256(IKM = sealing secret, salt = "edgeauth-se store v1" ||
 * chip id, info = "blob key" | "index key" | "key check"). The chip id makes
 * the keys of two chips that share one sealing secret differ, so a blob (or
 * an index) copied from one chip into another never authenticates. The 8-byte key check value
 * (kcv) only lets an open tell "wrong sealing secret" from "damaged index";
 * the tag is what decides.
 *
 * Generations: every commit (put, del) takes the next value of the store-wide
 * epoch, and a blob's generation is the epoch of the commit that wrote it.
 * So no (id, generation) pair is ever sealed twice with different contents,
 * even across a delete and a re-create, and the index pins the one blob that
 * is current: an older blob of the same id renamed into place fails.
 *
 * Put: write the new blob (fsync, fsync dir), write index.tmp (fsync), rename
 * it over index (the commit), fsync dir, unlink the old blob. A crash before
 * the rename leaves the old index and a stray new blob; after it, the new
 * index and a stray old blob. Open deletes strays. Rolling the whole
 * directory back to an older copy is not detectable without a monotonic
 * counter outside it, which a plain directory does not have.
 *
 * Every crypto call goes through a private OSSL_LIB_CTX holding only the
 * default provider, so the store never re-enters a provider the application
 * loaded (our own provider may be the one calling us). */
#include "emu/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "common/tlv.h"
#include "common/util.h"

#define KEY_LEN 32u
#define KCV_LEN 8u
#define NONCE_LEN 12u
#define TAG_LEN 16u

/* Far more than an SE05x holds (a few hundred objects); it only bounds what
 * an index read from disk may claim. */
#define MAX_OBJECTS 65536u

#define BLOB_MAGIC "EAOB"
#define INDEX_MAGIC "EAIX"
#define FORMAT_VERSION 1u

#define BLOB_HDR_LEN (4u + 1u + 4u + 8u + 2u + 4u + NONCE_LEN)
#define BLOB_MAX (BLOB_HDR_LEN + EA_STORE_META_MAX + EA_STORE_VALUE_MAX + TAG_LEN)
#define INDEX_HDR_LEN (4u + 1u + KCV_LEN + NONCE_LEN + 8u + 4u)
#define INDEX_ENTRY_LEN (4u + 8u)
#define INDEX_LEN(n) (INDEX_HDR_LEN + (size_t)(n)*INDEX_ENTRY_LEN + TAG_LEN)

#define INDEX_NAME "index"
#define CHIP_ID_NAME "chip.id"
#define CHIP_ID_LEN 16u
#define INDEX_TMP "index.tmp"
#define OBJECTS_DIR "objects"
#define OBJECTS_NEW "objects.new"
#define ENV_SEAL_KEY "EDGEAUTH_SE_SEAL_KEY"
#define BLOB_NAME_LEN 25u /* 8 hex '.' 16 hex */

typedef struct entry {
    uint32_t id;
    uint64_t gen;
} entry;

struct ea_store {
    char *dir;
    int dirfd, objfd, lockfd;
    OSSL_LIB_CTX *lib;
    OSSL_PROVIDER *prov;
    EVP_CIPHER *gcm;
    uint8_t kblob[KEY_LEN], kindex[KEY_LEN], kcv[KCV_LEN];
    uint8_t chip_id[CHIP_ID_LEN]; /* random per chip, salts the keys */
    char secret_src[512]; /* where the secret came from, for messages only */
    uint64_t epoch;        /* highest generation issued or seen on disk */
    entry *ents;           /* live objects, ascending id */
    size_t n;
};

/* A blob read back and opened. meta points into file; value is plaintext. */
typedef struct blob {
    uint8_t *file;
    uint8_t *value;
    const uint8_t *meta;
    size_t meta_len, value_len;
} blob;

__attribute__((format(printf, 3, 4))) static void say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!buf || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void blob_name(char out[BLOB_NAME_LEN + 1], uint32_t id, uint64_t gen)
{
    snprintf(out, BLOB_NAME_LEN + 1, "%08" PRIx32 ".%016" PRIx64, id, gen);
}

/* Our own names only: lower-case hex, exact length. Anything else in
 * objects/ is left alone. */
static bool parse_blob_name(const char *s, uint32_t *id, uint64_t *gen)
{
    uint64_t v[2] = { 0, 0 };
    size_t k = 0;

    if (strlen(s) != BLOB_NAME_LEN || s[8] != '.')
        return false;
    for (size_t i = 0; i < BLOB_NAME_LEN; i++) {
        char c = s[i];
        if (i == 8) {
            k = 1;
            continue;
        }
        if (c >= '0' && c <= '9')
            v[k] = (v[k] << 4) | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v[k] = (v[k] << 4) | (uint64_t)(c - 'a' + 10);
        else
            return false;
    }
    *id = (uint32_t)v[0];
    *gen = v[1];
    return true;
}

/* ---- files ------------------------------------------------------------- */

static int fsync_retry(int fd)
{
    int r;
    do
        r = fsync(fd);
    while (r != 0 && errno == EINTR);
    return r;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Read a whole file below dfd. A file larger than max is EA_ERR_FULL and is
 * not read at all, so a hostile length cannot make us allocate. */
static ea_err read_at(int dfd, const char *name, size_t max, uint8_t **out, size_t *out_len)
{
    ea_err rc = EA_ERR_IO;
    struct stat sb;
    uint8_t *buf = NULL;
    size_t len = 0, size;
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
    if (fstat(fd, &sb) != 0)
        goto out;
    if (!S_ISREG(sb.st_mode) || sb.st_size < 0) {
        rc = EA_ERR_MALFORMED;
        goto out;
    }
    if ((uint64_t)sb.st_size > max) {
        rc = EA_ERR_FULL;
        goto out;
    }
    size = (size_t)sb.st_size;
    buf = malloc(size ? size : 1);
    if (!buf) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    while (len < size) {
        ssize_t r = read(fd, buf + len, size - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (r == 0)
            break; /* shrank under us: the parser sees a short file */
        len += (size_t)r;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = EA_OK;
out:
    free(buf);
    close(fd);
    return rc;
}

/* Create or truncate dfd/name, write, fsync. The caller makes the name
 * durable (fsync of the directory) when it matters. */
static ea_err write_at(int dfd, const char *name, const uint8_t *p, size_t n)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok;

    if (fd < 0)
        return EA_ERR_IO;
    ok = write_all(fd, p, n) && fsync_retry(fd) == 0;
    if (close(fd) != 0)
        ok = false;
    return ok ? EA_OK : EA_ERR_IO;
}

/* ---- crypto (private library context) ---------------------------------- */

static ea_err crypto_init(ea_store *st)
{
    st->lib = OSSL_LIB_CTX_new();
    if (!st->lib)
        return EA_ERR_CRYPTO;
    /* Loaded explicitly: a fresh context reads no config file, so this is
     * the only provider it will ever have. */
    st->prov = OSSL_PROVIDER_load(st->lib, "default");
    if (!st->prov)
        return EA_ERR_CRYPTO;
    st->gcm = EVP_CIPHER_fetch(st->lib, "AES-256-GCM", NULL);
    return st->gcm ? EA_OK : EA_ERR_CRYPTO;
}

static void crypto_free(ea_store *st)
{
    EVP_CIPHER_free(st->gcm);
    if (st->prov)
        OSSL_PROVIDER_unload(st->prov);
    OSSL_LIB_CTX_free(st->lib);
    st->gcm = NULL;
    st->prov = NULL;
    st->lib = NULL;
}

static ea_err hkdf(ea_store *st, uint8_t secret[EA_STORE_SECRET_LEN], const char *info_str,
                   uint8_t *out, size_t out_len)
{
    ea_err rc = EA_ERR_CRYPTO;
    char digest[] = "SHA256";
    uint8_t salt[20 + CHIP_ID_LEN];
    memcpy(salt, "edgeauth-se store v1", 20);
    memcpy(salt + 20, st->chip_id, CHIP_ID_LEN);
    char info[32];
    EVP_KDF *kdf = EVP_KDF_fetch(st->lib, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5];
    size_t info_len = strlen(info_str);

    if (!kctx || info_len >= sizeof info)
        goto out;
    memcpy(info, info_str, info_len);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, secret, EA_STORE_SECRET_LEN);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof salt);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, info_len);
    params[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, out_len, params) == 1)
        rc = EA_OK;
out:
    EVP_KDF_CTX_free(kctx); /* the KDF context wipes its copy of the key */
    EVP_KDF_free(kdf);
    return rc;
}

static ea_err derive_keys(ea_store *st, uint8_t secret[EA_STORE_SECRET_LEN])
{
    ea_err rc = hkdf(st, secret, "blob key", st->kblob, KEY_LEN);
    if (rc == EA_OK)
        rc = hkdf(st, secret, "index key", st->kindex, KEY_LEN);
    if (rc == EA_OK)
        rc = hkdf(st, secret, "key check", st->kcv, KCV_LEN);
    return rc;
}

/* Seal pt (n bytes, may be 0) into ct and tag. Lengths are bounded by the
 * callers (BLOB_MAX, INDEX_LEN(MAX_OBJECTS)), far below INT_MAX. */
static ea_err gcm_seal(ea_store *st, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad,
                       size_t aad_len, const uint8_t *pt, size_t n, uint8_t *ct, uint8_t *tag)
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t scratch[16];
    int l;

    if (!c || EVP_EncryptInit_ex2(c, st->gcm, key, nonce, NULL) != 1)
        goto out;
    if (EVP_EncryptUpdate(c, NULL, &l, aad, (int)aad_len) != 1)
        goto out;
    if (n > 0 && EVP_EncryptUpdate(c, ct, &l, pt, (int)n) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(c, scratch, &l) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, (int)TAG_LEN, tag) != 1)
        goto out;
    rc = EA_OK;
out:
    EVP_CIPHER_CTX_free(c); /* clears the key schedule */
    return rc;
}

/* EA_ERR_AUTH when the tag does not verify; pt is wiped then, so a caller
 * can never use unauthenticated plaintext by mistake. */
static ea_err gcm_open(ea_store *st, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad,
                       size_t aad_len, const uint8_t *ct, size_t n, const uint8_t *tag,
                       uint8_t *pt)
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t t[TAG_LEN], scratch[16];
    int l;

    memcpy(t, tag, TAG_LEN); /* the ctrl wants a mutable buffer */
    if (!c || EVP_DecryptInit_ex2(c, st->gcm, key, nonce, NULL) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, (int)TAG_LEN, t) != 1)
        goto out;
    if (EVP_DecryptUpdate(c, NULL, &l, aad, (int)aad_len) != 1)
        goto out;
    if (n > 0 && EVP_DecryptUpdate(c, pt, &l, ct, (int)n) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(c, scratch, &l) != 1) {
        ea_cleanse(pt, n);
        rc = EA_ERR_AUTH;
        goto out;
    }
    rc = EA_OK;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

/* ---- sealing secret ---------------------------------------------------- */

/* 32 raw bytes (what create writes) or 64 hex digits (what a person would
 * paste, same form as the environment variable). */
static ea_err parse_secret_file(const uint8_t *buf, size_t len, uint8_t secret[EA_STORE_SECRET_LEN])
{
    char text[160];
    size_t n = EA_STORE_SECRET_LEN;
    ea_err rc;

    if (len == EA_STORE_SECRET_LEN) {
        memcpy(secret, buf, EA_STORE_SECRET_LEN);
        return EA_OK;
    }
    if (len >= sizeof text)
        return EA_ERR_MALFORMED;
    memcpy(text, buf, len);
    text[len] = '\0';
    rc = ea_hex_decode(text, secret, &n);
    ea_cleanse(text, sizeof text);
    if (rc != EA_OK || n != EA_STORE_SECRET_LEN) {
        ea_cleanse(secret, EA_STORE_SECRET_LEN);
        return EA_ERR_MALFORMED;
    }
    return EA_OK;
}

/* The environment wins, then opts->key_path, then DIR/seal.key. src names
 * the source for messages (never the secret). */
static ea_err load_secret(const char *dir, const ea_store_opts *opts,
                          uint8_t secret[EA_STORE_SECRET_LEN], char *src, size_t srclen,
                          char *errbuf, size_t errlen)
{
    const char *env = getenv(ENV_SEAL_KEY);
    char path[4096];
    uint8_t *buf = NULL;
    size_t len = 0, n = EA_STORE_SECRET_LEN;
    ea_err rc;

    if (env && *env) {
        say(src, srclen, "%s", ENV_SEAL_KEY);
        rc = ea_hex_decode(env, secret, &n);
        if (rc != EA_OK || n != EA_STORE_SECRET_LEN) {
            ea_cleanse(secret, EA_STORE_SECRET_LEN);
            say(errbuf, errlen, "%s must be 64 hex digits (a 32-byte sealing secret)",
                ENV_SEAL_KEY);
            return EA_ERR_MALFORMED;
        }
        return EA_OK;
    }
    if (opts && opts->key_path)
        n = (size_t)snprintf(path, sizeof path, "%s", opts->key_path);
    else
        n = (size_t)snprintf(path, sizeof path, "%s/seal.key", dir);
    if (n >= sizeof path)
        return EA_ERR_ARG;
    say(src, srclen, "%s", path);
    rc = ea_file_read(path, 256, &buf, &len);
    if (rc == EA_ERR_NOT_FOUND) {
        say(errbuf, errlen, "sealing secret %s not found (set %s or give the key path)", path,
            ENV_SEAL_KEY);
        return rc;
    }
    if (rc == EA_ERR_FULL) {
        say(errbuf, errlen, "sealing secret %s is not 32 bytes or 64 hex digits", path);
        return EA_ERR_MALFORMED;
    }
    if (rc != EA_OK) {
        say(errbuf, errlen, "cannot read sealing secret %s: %s", path, strerror(errno));
        return rc;
    }
    rc = parse_secret_file(buf, len, secret);
    ea_cleanse(buf, len);
    free(buf);
    if (rc != EA_OK)
        say(errbuf, errlen, "sealing secret %s is not 32 bytes or 64 hex digits", path);
    return rc;
}

/* Atomic and exclusive: the secret appears whole or not at all, and an
 * existing file is never replaced (it may protect another chip). */
static ea_err write_secret_file(const char *path, const uint8_t secret[EA_STORE_SECRET_LEN])
{
    char tmp[4200], dir[4096];
    const char *slash = strrchr(path, '/');
    ea_err rc = EA_ERR_IO;
    int fd;
    bool ok;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return EA_ERR_ARG;
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return EA_ERR_IO;
    ok = write_all(fd, secret, EA_STORE_SECRET_LEN) && fsync_retry(fd) == 0;
    if (close(fd) != 0)
        ok = false;
    if (ok) {
        /* link() fails with EEXIST where rename() would silently replace. */
        if (link(tmp, path) == 0)
            rc = ea_fsync_dir(dir);
        else
            rc = errno == EEXIST ? EA_ERR_EXISTS : EA_ERR_IO;
    }
    unlink(tmp);
    return rc;
}

/* ---- lock -------------------------------------------------------------- */

/* Lock files are written by other processes: keep what we echo printable
 * and short. */
static void sanitize(char *s, size_t max)
{
    size_t i;
    for (i = 0; s[i] && i < max; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            s[i] = '?';
    s[i] = '\0';
}

static void describe_holder(int fd, const char *dir, char *errbuf, size_t errlen)
{
    char buf[256], *end, *nl;
    ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
    long pid;

    if (r < 0)
        r = 0;
    buf[r] = '\0';
    if (strncmp(buf, "pid ", 4) != 0)
        goto unknown;
    errno = 0;
    pid = strtol(buf + 4, &end, 10);
    if (errno != 0 || end == buf + 4 || pid <= 0)
        goto unknown;
    while (*end == ' ')
        end++;
    nl = strchr(end, '\n');
    if (nl)
        *nl = '\0';
    sanitize(end, 120);
    if (*end)
        say(errbuf, errlen, "chip %s is in use by pid %ld (%s)", dir, pid, end);
    else
        say(errbuf, errlen, "chip %s is in use by pid %ld", dir, pid);
    return;
unknown:
    /* The holder may have the lock but not have written its name yet. */
    say(errbuf, errlen, "chip %s is in use by another process", dir);
}

static ea_err take_lock(int dirfd, const char *dir, const char *holder, int *out,
                        char *errbuf, size_t errlen)
{
    char line[160], name[128];
    int fd = openat(dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int len;

    if (fd < 0) {
        say(errbuf, errlen, "cannot open %s/lock: %s", dir, strerror(errno));
        return EA_ERR_IO;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            describe_holder(fd, dir, errbuf, errlen);
            close(fd);
            return EA_ERR_LOCKED;
        }
        say(errbuf, errlen, "cannot lock %s/lock: %s", dir, strerror(errno));
        close(fd);
        return EA_ERR_IO;
    }
    snprintf(name, sizeof name, "%s", holder && *holder ? holder : "unknown program");
    sanitize(name, sizeof name - 1);
    len = snprintf(line, sizeof line, "pid %ld %s\n", (long)getpid(), name);
    /* Only informational: a failure here must not stop the chip. */
    if (ftruncate(fd, 0) == 0 && len > 0)
        (void)!pwrite(fd, line, (size_t)len, 0);
    *out = fd;
    return EA_OK;
}

static void release_lock(int fd)
{
    if (fd < 0)
        return;
    /* So that nobody reads our pid after we are gone. */
    (void)!ftruncate(fd, 0);
    close(fd); /* drops the flock */
}

/* ---- index ------------------------------------------------------------- */

static ea_err index_encode(ea_store *st, const entry *ents, size_t n, uint64_t epoch,
                           uint8_t **out, size_t *out_len)
{
    size_t len = INDEX_LEN(n);
    uint8_t *buf, *nonce, *tag;
    ea_wbuf w;
    uint8_t b8[8];
    ea_err rc;

    if (n > MAX_OBJECTS)
        return EA_ERR_FULL;
    buf = malloc(len);
    if (!buf)
        return EA_ERR_NO_MEMORY;
    w = ea_wbuf_make(buf, len);
    ea_wbuf_put(&w, INDEX_MAGIC, 4);
    ea_wbuf_u8(&w, FORMAT_VERSION);
    ea_wbuf_put(&w, st->kcv, KCV_LEN);
    nonce = ea_wbuf_reserve(&w, NONCE_LEN);
    ea_put_be64(b8, epoch);
    ea_wbuf_put(&w, b8, 8);
    ea_wbuf_u32(&w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        ea_wbuf_u32(&w, ents[i].id);
        ea_put_be64(b8, ents[i].gen);
        ea_wbuf_put(&w, b8, 8);
    }
    tag = ea_wbuf_reserve(&w, TAG_LEN);
    if (w.overflow || w.len != len) {
        free(buf);
        return EA_ERR_INTERNAL;
    }
    if (RAND_bytes_ex(st->lib, nonce, NONCE_LEN, 0) != 1)
        rc = EA_ERR_CRYPTO;
    else
        rc = gcm_seal(st, st->kindex, nonce, buf, len - TAG_LEN, NULL, 0, NULL, tag);
    if (rc != EA_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return EA_OK;
}

/* Authenticate and decode an index. On failure why says what is wrong. */
static ea_err index_decode(ea_store *st, const uint8_t *buf, size_t len, entry **out_ents,
                           size_t *out_n, uint64_t *out_epoch, char *why, size_t whylen)
{
    ea_cur c = ea_cur_make(buf, len), magic, kcv, nonce, e8, body, tag;
    uint8_t ver;
    uint32_t count;
    uint64_t epoch;
    entry *ents;
    ea_err rc;

    if (!ea_cur_take(&c, 4, &magic) || !ea_cur_u8(&c, &ver) || !ea_cur_take(&c, KCV_LEN, &kcv) ||
        !ea_cur_take(&c, NONCE_LEN, &nonce) || !ea_cur_take(&c, 8, &e8) ||
        !ea_cur_u32(&c, &count)) {
        say(why, whylen, "is truncated");
        return EA_ERR_CORRUPT;
    }
    if (memcmp(magic.p, INDEX_MAGIC, 4) != 0) {
        say(why, whylen, "is not a store index (bad magic)");
        return EA_ERR_CORRUPT;
    }
    if (ver != FORMAT_VERSION) {
        say(why, whylen, "has unsupported format version %u", ver);
        return EA_ERR_CORRUPT;
    }
    /* count is not authenticated yet: bound it before it sizes anything. */
    if (count > MAX_OBJECTS || len != INDEX_LEN(count) ||
        !ea_cur_take(&c, (size_t)count * INDEX_ENTRY_LEN, &body) ||
        !ea_cur_take(&c, TAG_LEN, &tag) || c.n != 0) {
        say(why, whylen, "is truncated or malformed");
        return EA_ERR_CORRUPT;
    }
    rc = gcm_open(st, st->kindex, nonce.p, buf, len - TAG_LEN, NULL, 0, tag.p, NULL);
    if (rc == EA_ERR_AUTH) {
        if (CRYPTO_memcmp(kcv.p, st->kcv, KCV_LEN) != 0)
            say(why, whylen,
                "fails authentication: it was sealed with a different sealing secret than the "
                "one from %s (or is damaged)",
                st->secret_src);
        else
            say(why, whylen, "fails authentication (damaged or tampered with)");
        return EA_ERR_CORRUPT;
    }
    if (rc != EA_OK)
        return rc;

    /* Authentic from here on; still check it makes sense, since a bug in an
     * older writer must not turn into an over-read or a duplicate id. */
    epoch = ea_get_be64(e8.p);
    ents = malloc(count ? (size_t)count * sizeof *ents : 1);
    if (!ents)
        return EA_ERR_NO_MEMORY;
    for (uint32_t i = 0; i < count; i++) {
        ea_cur e;
        ea_cur_take(&body, INDEX_ENTRY_LEN, &e); /* sized exactly above */
        ents[i].id = ea_get_be32(e.p);
        ents[i].gen = ea_get_be64(e.p + 4);
        if (ents[i].gen == 0 || ents[i].gen > epoch || (i > 0 && ents[i].id <= ents[i - 1].id)) {
            free(ents);
            say(why, whylen, "is inconsistent (entry %" PRIu32 ")", i);
            return EA_ERR_CORRUPT;
        }
    }
    *out_ents = ents;
    *out_n = count;
    *out_epoch = epoch;
    return EA_OK;
}

/* Write and commit a new index. *renamed tells the caller whether the new
 * index is now the visible one: after the rename, even if the directory
 * fsync then fails, the state the next reader sees is the new one. */
static ea_err index_commit(ea_store *st, const entry *ents, size_t n, uint64_t epoch,
                           bool *renamed)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ea_err rc;

    *renamed = false;
    rc = index_encode(st, ents, n, epoch, &buf, &len);
    if (rc != EA_OK)
        return rc;
    rc = write_at(st->objfd, INDEX_TMP, buf, len);
    free(buf);
    if (rc != EA_OK) {
        unlinkat(st->objfd, INDEX_TMP, 0);
        return rc;
    }
    if (renameat(st->objfd, INDEX_TMP, st->objfd, INDEX_NAME) != 0) {
        unlinkat(st->objfd, INDEX_TMP, 0);
        return EA_ERR_IO;
    }
    *renamed = true;
    return fsync_retry(st->objfd) == 0 ? EA_OK : EA_ERR_IO;
}

/* ---- blobs ------------------------------------------------------------- */

static ea_err blob_seal(ea_store *st, const ea_store_rec *rec, uint64_t gen, uint8_t **out,
                        size_t *out_len)
{
    size_t len = BLOB_HDR_LEN + rec->meta_len + rec->value_len + TAG_LEN;
    uint8_t *buf = malloc(len), *nonce, *ct, *tag;
    uint8_t b8[8];
    ea_wbuf w;
    ea_err rc;

    if (!buf)
        return EA_ERR_NO_MEMORY;
    w = ea_wbuf_make(buf, len);
    ea_wbuf_put(&w, BLOB_MAGIC, 4);
    ea_wbuf_u8(&w, FORMAT_VERSION);
    ea_wbuf_u32(&w, rec->id);
    ea_put_be64(b8, gen);
    ea_wbuf_put(&w, b8, 8);
    ea_wbuf_u16(&w, (uint16_t)rec->meta_len); /* <= EA_STORE_META_MAX, checked by the caller */
    ea_wbuf_u32(&w, (uint32_t)rec->value_len);
    nonce = ea_wbuf_reserve(&w, NONCE_LEN);
    ea_wbuf_put(&w, rec->meta, rec->meta_len);
    ct = ea_wbuf_reserve(&w, rec->value_len);
    tag = ea_wbuf_reserve(&w, TAG_LEN);
    if (w.overflow || w.len != len) {
        free(buf);
        return EA_ERR_INTERNAL;
    }
    if (RAND_bytes_ex(st->lib, nonce, NONCE_LEN, 0) != 1)
        rc = EA_ERR_CRYPTO;
    else
        rc = gcm_seal(st, st->kblob, nonce, buf, BLOB_HDR_LEN + rec->meta_len, rec->value,
                      rec->value_len, ct, tag);
    if (rc != EA_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return EA_OK;
}

static void blob_free(blob *b)
{
    if (b->value) {
        ea_cleanse(b->value, b->value_len);
        free(b->value);
    }
    free(b->file);
    memset(b, 0, sizeof *b);
}

/* Read, check and open the blob the index names for e. EA_ERR_CORRUPT (why
 * set) for anything missing, malformed or unauthentic; nothing in *b is
 * usable then. */
static ea_err blob_load(ea_store *st, const entry *e, blob *b, char *why, size_t whylen)
{
    char name[BLOB_NAME_LEN + 1];
    ea_cur c, magic, e8, nonce, meta, ct, tag;
    uint8_t ver;
    uint16_t meta_len;
    uint32_t id, value_len;
    uint64_t gen;
    size_t len = 0;
    ea_err rc;

    memset(b, 0, sizeof *b);
    blob_name(name, e->id, e->gen);
    rc = read_at(st->objfd, name, BLOB_MAX, &b->file, &len);
    if (rc == EA_ERR_NOT_FOUND) {
        say(why, whylen, "blob is missing");
        return EA_ERR_CORRUPT;
    }
    if (rc == EA_ERR_FULL || rc == EA_ERR_MALFORMED) {
        say(why, whylen, "blob is too large or not a regular file");
        return EA_ERR_CORRUPT;
    }
    if (rc != EA_OK) {
        say(why, whylen, "cannot read blob: %s", ea_err_str(rc));
        return rc;
    }
    c = ea_cur_make(b->file, len);
    /* Every length below comes from the file: bound it by the contract's
     * maxima and by the bytes actually left before trusting it. */
    if (!ea_cur_take(&c, 4, &magic) || !ea_cur_u8(&c, &ver) || !ea_cur_u32(&c, &id) ||
        !ea_cur_take(&c, 8, &e8) || !ea_cur_u16(&c, &meta_len) || !ea_cur_u32(&c, &value_len) ||
        !ea_cur_take(&c, NONCE_LEN, &nonce) || memcmp(magic.p, BLOB_MAGIC, 4) != 0 ||
        ver != FORMAT_VERSION || meta_len > EA_STORE_META_MAX || value_len > EA_STORE_VALUE_MAX ||
        !ea_cur_take(&c, meta_len, &meta) || !ea_cur_take(&c, value_len, &ct) ||
        !ea_cur_take(&c, TAG_LEN, &tag) || c.n != 0) {
        say(why, whylen, "blob is truncated or malformed");
        goto corrupt;
    }
    gen = ea_get_be64(e8.p);
    if (id != e->id || gen != e->gen) {
        say(why, whylen,
            "blob header names object 0x%08" PRIX32 " generation %" PRIu64
            ", index expects generation %" PRIu64 " (swapped or rolled back)",
            id, gen, e->gen);
        goto corrupt;
    }
    b->value = malloc(value_len ? value_len : 1);
    if (!b->value) {
        blob_free(b);
        return EA_ERR_NO_MEMORY;
    }
    b->value_len = value_len;
    rc = gcm_open(st, st->kblob, nonce.p, b->file, BLOB_HDR_LEN + meta_len, ct.p, value_len,
                  tag.p, b->value);
    if (rc == EA_ERR_AUTH) {
        say(why, whylen, "blob fails authentication");
        goto corrupt;
    }
    if (rc != EA_OK) {
        blob_free(b);
        return rc;
    }
    b->meta = meta.p;
    b->meta_len = meta_len;
    return EA_OK;
corrupt:
    blob_free(b);
    return EA_ERR_CORRUPT;
}

/* ---- entries ----------------------------------------------------------- */

/* First index whose id is >= id. */
static size_t lower_bound(const ea_store *st, uint32_t id)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->ents[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void unlink_blob(ea_store *st, uint32_t id, uint64_t gen)
{
    char name[BLOB_NAME_LEN + 1];
    blob_name(name, id, gen);
    unlinkat(st->objfd, name, 0); /* a leftover is only a stray: open removes it */
}

/* Make ents/n the committed state. The caller's array is taken over. */
static ea_err commit_entries(ea_store *st, entry *ents, size_t n, uint64_t epoch, bool *renamed)
{
    ea_err rc = index_commit(st, ents, n, epoch, renamed);
    if (*renamed) {
        free(st->ents);
        st->ents = ents;
        st->n = n;
    } else {
        free(ents);
    }
    return rc;
}

/* ---- open / close ------------------------------------------------------ */

typedef void report_fn(void *ctx, const char *line);

/* Look at objects/: note the highest generation on disk, and either remove
 * what the index does not reference (open) or report it (check). */
static void scan_objects(ea_store *st, bool tidy, report_fn *report, void *ctx)
{
    int fd = openat(st->objfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    char line[256];

    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        uint32_t id;
        uint64_t gen;
        bool stray;

        if (strcmp(de->d_name, INDEX_TMP) == 0) {
            stray = true;
        } else if (parse_blob_name(de->d_name, &id, &gen)) {
            size_t i = lower_bound(st, id);
            stray = !(i < st->n && st->ents[i].id == id && st->ents[i].gen == gen);
            /* A crash between writing a blob and committing it leaves a
             * generation the index never recorded; do not issue it again
             * (the next commit records a higher epoch), so a copy of that
             * uncommitted blob cannot pass for a newer one. */
            if (gen > st->epoch)
                st->epoch = gen;
        } else {
            continue;
        }
        if (!stray)
            continue;
        if (tidy) {
            unlinkat(st->objfd, de->d_name, 0);
        } else if (report) {
            snprintf(line, sizeof line,
                     "note: objects/%s is not referenced by the index (left by an interrupted "
                     "update; removed on next open)",
                     de->d_name);
            report(ctx, line);
        }
    }
    closedir(d);
}

static ea_err load_index(ea_store *st, char *errbuf, size_t errlen)
{
    char why[200] = "";
    uint8_t *buf = NULL;
    size_t len = 0;
    ea_err rc = read_at(st->objfd, INDEX_NAME, INDEX_LEN(MAX_OBJECTS), &buf, &len);

    if (rc == EA_ERR_NOT_FOUND) {
        say(errbuf, errlen, "%s/%s/%s is missing", st->dir, OBJECTS_DIR, INDEX_NAME);
        return EA_ERR_CORRUPT;
    }
    if (rc == EA_ERR_FULL || rc == EA_ERR_MALFORMED) {
        say(errbuf, errlen, "%s/%s/%s is too large or not a regular file", st->dir, OBJECTS_DIR,
            INDEX_NAME);
        return EA_ERR_CORRUPT;
    }
    if (rc != EA_OK) {
        say(errbuf, errlen, "cannot read %s/%s/%s: %s", st->dir, OBJECTS_DIR, INDEX_NAME,
            ea_err_str(rc));
        return rc;
    }
    rc = index_decode(st, buf, len, &st->ents, &st->n, &st->epoch, why, sizeof why);
    free(buf);
    if (rc != EA_OK)
        say(errbuf, errlen, "%s/%s/%s %s", st->dir, OBJECTS_DIR, INDEX_NAME,
            why[0] ? why : ea_err_str(rc));
    return rc;
}

static ea_err store_open(const char *dir, const ea_store_opts *opts, bool tidy, report_fn *report,
                         void *ctx, ea_store **out, char *errbuf, size_t errlen)
{
    uint8_t secret[EA_STORE_SECRET_LEN];
    ea_store *st;
    ea_err rc = EA_ERR_INTERNAL;

    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!dir || !out)
        return EA_ERR_ARG;
    *out = NULL;
    st = calloc(1, sizeof *st);
    if (!st)
        return EA_ERR_NO_MEMORY;
    st->dirfd = st->objfd = st->lockfd = -1;
    st->dir = strdup(dir);
    if (!st->dir) {
        rc = EA_ERR_NO_MEMORY;
        goto fail;
    }
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
        say(errbuf, errlen, "cannot open chip %s: %s", dir, strerror(errno));
        goto fail;
    }
    st->objfd = openat(st->dirfd, OBJECTS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->objfd < 0) {
        rc = errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
        say(errbuf, errlen, "%s is not a chip (no %s/ directory)", dir, OBJECTS_DIR);
        goto fail;
    }
    rc = take_lock(st->dirfd, dir, opts ? opts->holder : NULL, &st->lockfd, errbuf, errlen);
    if (rc != EA_OK)
        goto fail;
    rc = crypto_init(st);
    if (rc != EA_OK) {
        say(errbuf, errlen, "cannot set up AES-256-GCM / HKDF in a private OpenSSL context");
        goto fail;
    }
    {
        uint8_t *idbuf = NULL;
        size_t idlen = 0;
        rc = read_at(st->objfd, CHIP_ID_NAME, CHIP_ID_LEN + 1, &idbuf, &idlen);
        if (rc != EA_OK || idlen != CHIP_ID_LEN) {
            say(errbuf, errlen, "%s/%s/%s is missing or damaged", dir, OBJECTS_DIR, CHIP_ID_NAME);
            free(idbuf);
            rc = EA_ERR_CORRUPT;
            goto fail;
        }
        memcpy(st->chip_id, idbuf, CHIP_ID_LEN);
        free(idbuf);
    }
    rc = load_secret(dir, opts, secret, st->secret_src, sizeof st->secret_src, errbuf, errlen);
    if (rc == EA_OK) {
        rc = derive_keys(st, secret);
        if (rc != EA_OK)
            say(errbuf, errlen, "cannot derive the store keys (HKDF-SHA256)");
    }
    ea_cleanse(secret, sizeof secret);
    if (rc != EA_OK)
        goto fail;
    /* Nothing on disk is touched before the index authenticates: with a
     * wrong secret every blob would look like a stray. */
    rc = load_index(st, errbuf, errlen);
    if (rc != EA_OK)
        goto fail;
    scan_objects(st, tidy, report, ctx);
    *out = st;
    return EA_OK;
fail:
    ea_store_close(st);
    return rc;
}

ea_err ea_store_open(const char *dir, const ea_store_opts *opts, ea_store **out, char *errbuf,
                     size_t errlen)
{
    return store_open(dir, opts, true, NULL, NULL, out, errbuf, errlen);
}

void ea_store_close(ea_store *st)
{
    if (!st)
        return;
    ea_cleanse(st->kblob, sizeof st->kblob);
    ea_cleanse(st->kindex, sizeof st->kindex);
    ea_cleanse(st->kcv, sizeof st->kcv);
    crypto_free(st);
    release_lock(st->lockfd);
    if (st->objfd >= 0)
        close(st->objfd);
    if (st->dirfd >= 0)
        close(st->dirfd);
    free(st->ents);
    free(st->dir);
    free(st);
}

/* ---- create ------------------------------------------------------------ */

/* Empty a directory we own (a half-built objects.new from a crashed create). */
static void empty_dir(int dfd)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            unlinkat(dfd, de->d_name, 0);
    closedir(d);
}

/* The store comes into existence with one rename of objects.new to objects,
 * so a crash mid-create never leaves something that looks like a chip. */
static ea_err create_objects(ea_store *st)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ea_err rc;
    int fd;

    if (mkdirat(st->dirfd, OBJECTS_NEW, 0700) != 0 && errno != EEXIST)
        return EA_ERR_IO;
    fd = openat(st->dirfd, OBJECTS_NEW, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return EA_ERR_IO;
    empty_dir(fd);
    rc = write_at(fd, CHIP_ID_NAME, st->chip_id, CHIP_ID_LEN);
    if (rc == EA_OK)
        rc = index_encode(st, NULL, 0, 0, &buf, &len);
    if (rc == EA_OK)
        rc = write_at(fd, INDEX_NAME, buf, len);
    free(buf);
    if (rc == EA_OK && fsync_retry(fd) != 0)
        rc = EA_ERR_IO;
    close(fd);
    if (rc == EA_OK && renameat(st->dirfd, OBJECTS_NEW, st->dirfd, OBJECTS_DIR) != 0)
        rc = errno == EEXIST || errno == ENOTEMPTY ? EA_ERR_EXISTS : EA_ERR_IO;
    if (rc == EA_OK && fsync_retry(st->dirfd) != 0)
        rc = EA_ERR_IO;
    return rc;
}

static bool exists_at(int dfd, const char *name)
{
    struct stat sb;
    return fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

ea_err ea_store_create(const char *dir, const ea_store_opts *opts)
{
    uint8_t secret[EA_STORE_SECRET_LEN];
    char keypath[4096];
    const char *env = getenv(ENV_SEAL_KEY);
    bool wrote_key = false;
    ea_store *st;
    ea_err rc = EA_ERR_INTERNAL;

    if (!dir || !*dir)
        return EA_ERR_ARG;
    st = calloc(1, sizeof *st);
    if (!st)
        return EA_ERR_NO_MEMORY;
    st->dirfd = st->objfd = st->lockfd = -1;
    rc = ea_mkdir_p(dir, 0700);
    if (rc != EA_OK)
        goto out;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = EA_ERR_IO;
        goto out;
    }
    if (exists_at(st->dirfd, OBJECTS_DIR)) {
        rc = EA_ERR_EXISTS;
        goto out;
    }
    rc = take_lock(st->dirfd, dir, opts ? opts->holder : NULL, &st->lockfd, NULL, 0);
    if (rc != EA_OK)
        goto out;
    if (exists_at(st->dirfd, OBJECTS_DIR)) { /* created while we waited for the lock */
        rc = EA_ERR_EXISTS;
        goto out;
    }
    rc = crypto_init(st);
    if (rc != EA_OK)
        goto out;
    if (RAND_bytes_ex(st->lib, st->chip_id, CHIP_ID_LEN, 0) != 1) {
        rc = EA_ERR_CRYPTO;
        goto out;
    }

    if (env && *env) {
        size_t n = sizeof secret;
        rc = ea_hex_decode(env, secret, &n);
        if (rc != EA_OK || n != sizeof secret)
            rc = EA_ERR_MALFORMED;
    } else {
        if (opts && opts->key_path)
            rc = (size_t)snprintf(keypath, sizeof keypath, "%s", opts->key_path) < sizeof keypath
                     ? EA_OK
                     : EA_ERR_ARG;
        else
            rc = (size_t)snprintf(keypath, sizeof keypath, "%s/seal.key", dir) < sizeof keypath
                     ? EA_OK
                     : EA_ERR_ARG;
        if (rc == EA_OK && opts && opts->key_path && exists_at(AT_FDCWD, keypath)) {
            /* An existing key file named by the caller is shared, not
             * replaced: several chips may be sealed under one secret (the
             * chip id still keeps their keys apart). */
            uint8_t *kb = NULL;
            size_t kl = 0;
            rc = ea_file_read(keypath, 160, &kb, &kl);
            if (rc == EA_OK)
                rc = parse_secret_file(kb, kl, secret);
            if (kb) {
                ea_cleanse(kb, kl);
                free(kb);
            }
        } else {
            if (rc == EA_OK && RAND_bytes_ex(st->lib, secret, sizeof secret, 256) != 1)
                rc = EA_ERR_CRYPTO;
            if (rc == EA_OK)
                rc = write_secret_file(keypath, secret);
            wrote_key = rc == EA_OK;
        }
    }
    if (rc == EA_OK)
        rc = derive_keys(st, secret);
    ea_cleanse(secret, sizeof secret);
    if (rc == EA_OK)
        rc = create_objects(st);
    /* Nothing is sealed under a key we just made if the objects did not
     * land: remove it so that a retry can start over. */
    if (rc != EA_OK && wrote_key)
        unlink(keypath);
out:
    ea_store_close(st);
    return rc;
}

/* ---- objects ----------------------------------------------------------- */

ea_err ea_store_foreach(ea_store *st, ea_store_visit_fn *fn, void *ctx)
{
    char why[200];
    uint32_t next = 0;

    if (!st || !fn)
        return EA_ERR_ARG;
    /* Walk by id rather than by position so that a callback may put or
     * delete objects without us skipping or repeating one. */
    for (;;) {
        size_t i = lower_bound(st, next);
        ea_store_rec rec = { 0 };
        blob b;
        ea_err status, r;

        if (i >= st->n)
            break;
        entry e = st->ents[i];
        status = blob_load(st, &e, &b, why, sizeof why);
        if (status == EA_ERR_NO_MEMORY)
            return status;
        rec.id = e.id;
        if (status == EA_OK) {
            rec.meta = b.meta;
            rec.meta_len = b.meta_len;
            rec.value = b.value;
            rec.value_len = b.value_len;
        }
        r = fn(ctx, status, &rec);
        blob_free(&b);
        if (r != EA_OK)
            return r;
        if (e.id == UINT32_MAX)
            break;
        next = e.id + 1;
    }
    return EA_OK;
}

ea_err ea_store_put(ea_store *st, const ea_store_rec *rec)
{
    uint8_t *buf = NULL;
    char name[BLOB_NAME_LEN + 1];
    size_t len = 0, i, n;
    entry *ents;
    uint64_t gen, old_gen = 0;
    bool replace, renamed = false;
    ea_err rc = EA_ERR_INTERNAL;

    if (!st || !rec || rec->meta_len > EA_STORE_META_MAX || rec->value_len > EA_STORE_VALUE_MAX ||
        (rec->meta_len && !rec->meta) || (rec->value_len && !rec->value))
        return EA_ERR_ARG;
    i = lower_bound(st, rec->id);
    replace = i < st->n && st->ents[i].id == rec->id;
    if (!replace && st->n >= MAX_OBJECTS)
        return EA_ERR_FULL;
    if (st->epoch == UINT64_MAX)
        return EA_ERR_FULL;
    /* Spent even if this put fails, so two contents never share a
     * generation. */
    gen = ++st->epoch;

    n = st->n + (replace ? 0 : 1);
    ents = malloc(n * sizeof *ents);
    if (!ents)
        return EA_ERR_NO_MEMORY;
    memcpy(ents, st->ents, i * sizeof *ents);
    ents[i].id = rec->id;
    ents[i].gen = gen;
    if (replace) {
        old_gen = st->ents[i].gen;
        memcpy(ents + i + 1, st->ents + i + 1, (st->n - i - 1) * sizeof *ents);
    } else {
        memcpy(ents + i + 1, st->ents + i, (st->n - i) * sizeof *ents);
    }

    rc = blob_seal(st, rec, gen, &buf, &len);
    if (rc != EA_OK) {
        free(ents);
        return rc;
    }
    blob_name(name, rec->id, gen);
    rc = write_at(st->objfd, name, buf, len);
    free(buf);
    /* The blob's name must be durable before an index can point at it. */
    if (rc == EA_OK && fsync_retry(st->objfd) != 0)
        rc = EA_ERR_IO;
    if (rc != EA_OK) {
        free(ents);
        unlinkat(st->objfd, name, 0);
        return rc;
    }
    rc = commit_entries(st, ents, n, gen, &renamed);
    if (!renamed)
        unlinkat(st->objfd, name, 0);
    /* Keep the old blob unless the commit is surely durable: if the
     * directory fsync failed, a power cut may still bring the old index
     * back, and it needs the old blob. */
    else if (rc == EA_OK && replace)
        unlink_blob(st, rec->id, old_gen);
    return rc;
}

ea_err ea_store_del(ea_store *st, uint32_t id)
{
    size_t i;
    entry *ents, gone;
    bool renamed = false;
    ea_err rc;

    if (!st)
        return EA_ERR_ARG;
    i = lower_bound(st, id);
    if (i >= st->n || st->ents[i].id != id)
        return EA_ERR_NOT_FOUND;
    if (st->epoch == UINT64_MAX)
        return EA_ERR_FULL;
    gone = st->ents[i];
    ents = malloc(st->n > 1 ? (st->n - 1) * sizeof *ents : 1);
    if (!ents)
        return EA_ERR_NO_MEMORY;
    memcpy(ents, st->ents, i * sizeof *ents);
    memcpy(ents + i, st->ents + i + 1, (st->n - i - 1) * sizeof *ents);
    rc = commit_entries(st, ents, st->n - 1, ++st->epoch, &renamed);
    if (rc == EA_OK)
        unlink_blob(st, gone.id, gone.gen);
    return rc;
}

ea_err ea_store_del_where(ea_store *st, int (*keep)(void *ctx, uint32_t id), void *ctx)
{
    entry *ents, *gone;
    size_t n = 0, ng = 0;
    bool renamed = false;
    ea_err rc;

    if (!st || !keep)
        return EA_ERR_ARG;
    ents = malloc(st->n ? st->n * sizeof *ents : 1);
    gone = malloc(st->n ? st->n * sizeof *gone : 1);
    if (!ents || !gone) {
        free(ents);
        free(gone);
        return EA_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < st->n; i++) {
        if (keep(ctx, st->ents[i].id))
            ents[n++] = st->ents[i];
        else
            gone[ng++] = st->ents[i];
    }
    if (ng == 0) {
        free(ents);
        free(gone);
        return EA_OK; /* nothing to remove: no need for a commit */
    }
    if (st->epoch == UINT64_MAX) {
        free(ents);
        free(gone);
        return EA_ERR_FULL;
    }
    rc = commit_entries(st, ents, n, ++st->epoch, &renamed);
    if (rc == EA_OK)
        for (size_t i = 0; i < ng; i++)
            unlink_blob(st, gone[i].id, gone[i].gen);
    free(gone);
    return rc;
}

/* ---- check ------------------------------------------------------------- */

ea_err ea_store_check(const char *dir, const ea_store_opts *opts,
                      void (*report)(void *ctx, const char *line), void *ctx)
{
    char err[512], why[200], line[512], name[BLOB_NAME_LEN + 1];
    ea_store *st = NULL;
    ea_err rc, worst = EA_OK;

    /* Read-only: strays are reported as notes, not removed, so that a check
     * never changes the chip it looks at. */
    rc = store_open(dir, opts, false, report, ctx, &st, err, sizeof err);
    if (rc != EA_OK) {
        if (report)
            report(ctx, err[0] ? err : ea_err_str(rc));
        return rc;
    }
    for (size_t i = 0; i < st->n; i++) {
        blob b;
        ea_err r;

        why[0] = '\0';
        r = blob_load(st, &st->ents[i], &b, why, sizeof why);
        blob_free(&b);
        if (r == EA_OK)
            continue;
        /* Damage is CORRUPT; an I/O or memory failure says nothing about
         * the data and wins, so the caller does not call it damage. */
        if (worst == EA_OK || worst == EA_ERR_CORRUPT)
            worst = r;
        blob_name(name, st->ents[i].id, st->ents[i].gen);
        snprintf(line, sizeof line, "object 0x%08" PRIX32 ": %s (%s/%s)", st->ents[i].id,
                 why[0] ? why : ea_err_str(r), OBJECTS_DIR, name);
        if (report)
            report(ctx, line);
    }
    ea_store_close(st);
    return worst;
}
