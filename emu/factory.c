/* Factory state of a new chip: unique id, attestation key and certificate
 * from the SE vendor CA, optionally a vendor-provisioned device identity. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"
#include "emu/emu_int.h"

#define VENDOR_CA_CERT "vendor-ca.pem"
#define VENDOR_CA_KEY "vendor-ca.key.pem"
#define VENDOR_ORG "edgeauth SE vendor"

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

/* Build and sign one certificate. issuer NULL = self-signed by key. */
static X509 *make_cert(ea_emu *emu, EVP_PKEY *subject_key, const char *cn, X509 *issuer,
                       EVP_PKEY *issuer_key, bool ca, const char *eku)
{
    X509 *x = X509_new_ex(emu->libctx, NULL);
    X509_NAME *name = X509_NAME_new();
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    uint8_t serial[16];
    BIGNUM *sn = NULL;
    ASN1_INTEGER *asn = NULL;
    bool ok = false;

    if (!x || !name || !mc || RAND_bytes_ex(emu->libctx, serial, sizeof serial, 0) != 1)
        goto out;
    serial[0] &= 0x7F; /* positive */
    serial[0] |= 0x40; /* and full length */
    if (!(sn = BN_bin2bn(serial, sizeof serial, NULL)) || !(asn = BN_to_ASN1_INTEGER(sn, NULL)))
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, asn) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)VENDOR_ORG, -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        /* IEEE 802.1AR: a device identity that does not expire. */
        !ASN1_TIME_set_string_X509(X509_getm_notAfter(x), "99991231235959Z") ||
        !X509_set_pubkey(x, subject_key))
        goto out;
    X509 *iss = issuer ? issuer : x;
    if (!add_ext(x, iss, NID_basic_constraints, ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE") ||
        !add_ext(x, iss, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") ||
        !add_ext(x, iss, NID_subject_key_identifier, "hash") ||
        !add_ext(x, iss, NID_authority_key_identifier, "keyid:always") ||
        (eku && !add_ext(x, iss, NID_ext_key_usage, eku)))
        goto out;
    if (EVP_DigestSignInit_ex(mc, NULL, "SHA256", emu->libctx, NULL, issuer_key, NULL) != 1 ||
        X509_sign_ctx(x, mc) <= 0)
        goto out;
    ok = true;
out:
    ASN1_INTEGER_free(asn);
    BN_free(sn);
    EVP_MD_CTX_free(mc);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Load the vendor CA from dir, creating it on first use. */
static ea_err vendor_ca(ea_emu *emu, const char *dir, X509 **cert, EVP_PKEY **key, char *err,
                        size_t errlen)
{
    char cpath[1100], kpath[1100];
    BIO *b = NULL;
    ea_err rc = EA_ERR_IO;

    if (ea_mkdir_p(dir, 0700) != EA_OK) {
        ea_seterr(err, errlen, "cannot create vendor CA directory %s", dir);
        return EA_ERR_IO;
    }
    snprintf(cpath, sizeof cpath, "%s/%s", dir, VENDOR_CA_CERT);
    snprintf(kpath, sizeof kpath, "%s/%s", dir, VENDOR_CA_KEY);
    if (access(cpath, F_OK) == 0) {
        if ((b = BIO_new_file(kpath, "r")) != NULL)
            *key = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, emu->libctx, NULL);
        BIO_free(b);
        if ((b = BIO_new_file(cpath, "r")) != NULL)
            *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        if (!*key || !*cert || X509_check_private_key(*cert, *key) != 1) {
            ea_seterr(err, errlen, "vendor CA in %s is unreadable or inconsistent", dir);
            return EA_ERR_CORRUPT;
        }
        return EA_OK;
    }
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(emu->libctx, "EC", NULL);
    if (!kc || EVP_PKEY_keygen_init(kc) <= 0 || EVP_PKEY_CTX_set_group_name(kc, "P-256") <= 0 ||
        EVP_PKEY_generate(kc, key) <= 0) {
        EVP_PKEY_CTX_free(kc);
        return EA_ERR_CRYPTO;
    }
    EVP_PKEY_CTX_free(kc);
    if (!(*cert = make_cert(emu, *key, "edgeauth SE vendor root CA", NULL, *key, true, NULL)))
        return EA_ERR_CRYPTO;
    /* Key first, 0600, so a crash never leaves a certificate without its key. */
    BIO *mem = BIO_new(BIO_s_secmem());
    char *p;
    long n;
    if (mem && PEM_write_bio_PrivateKey(mem, *key, NULL, NULL, 0, NULL, NULL) &&
        (n = BIO_get_mem_data(mem, &p)) > 0)
        rc = ea_file_write_atomic(kpath, p, (size_t)n, 0600);
    BIO_free(mem);
    if (rc != EA_OK) {
        ea_seterr(err, errlen, "cannot write the vendor CA key in %s", dir);
        return rc;
    }
    mem = BIO_new(BIO_s_mem());
    rc = EA_ERR_IO;
    if (mem && PEM_write_bio_X509(mem, *cert) && (n = BIO_get_mem_data(mem, &p)) > 0)
        rc = ea_file_write_atomic(cpath, p, (size_t)n, 0644);
    BIO_free(mem);
    if (rc != EA_OK)
        ea_seterr(err, errlen, "cannot write the vendor CA certificate in %s", dir);
    return rc;
}

static ea_err put_obj(apdu_ctx *c, uint32_t id, obj_kind kind, uint8_t curve, uint32_t ar,
                      const uint8_t *v, size_t n)
{
    ea_obj *o = obj_new(id);
    if (!o)
        return EA_ERR_NO_MEMORY;
    o->kind = (uint8_t)kind;
    o->curve = curve;
    o->origin = EA_ORIGIN_PROVISIONED;
    o->has_policy = true;
    o->policy[0] = 8;
    ea_put_be32(o->policy + 1, 0);
    ea_put_be32(o->policy + 5, ar);
    o->policy_len = 9;
    ea_err rc = obj_set_value(o, v, n);
    if (rc != EA_OK) {
        obj_free(o);
        return rc;
    }
    return obj_insert(c, o);
}

/* Generate a P-256 key in the chip and certify it with the vendor CA. */
static ea_err key_and_cert(apdu_ctx *c, uint32_t key_id, uint32_t cert_id, uint32_t key_ar,
                           const char *cn, const char *eku, X509 *ca, EVP_PKEY *ca_key)
{
    uint8_t kv[3 * 32 + 1], *der = NULL;
    ea_err rc;
    EVP_PKEY *pk;
    X509 *x = NULL;
    int dl;

    if ((rc = ec_generate(c->emu, EA_CURVE_NIST_P256, kv, kv + 32)) != EA_OK ||
        (rc = put_obj(c, key_id, KIND_EC_PAIR, EA_CURVE_NIST_P256, key_ar, kv, sizeof kv)) != EA_OK)
        goto out;
    ea_obj *o = obj_find(c, key_id);
    rc = EA_ERR_CRYPTO;
    if (!o || ec_pkey(c->emu, o, &pk) != EA_OK || !(x = make_cert(c->emu, pk, cn, ca, ca_key, false, eku)) ||
        (dl = i2d_X509(x, &der)) <= 0)
        goto out;
    rc = put_obj(c, cert_id, KIND_BINARY, 0, EA_POL_ALLOW_READ, der, (size_t)dl);
out:
    ea_cleanse(kv, sizeof kv);
    OPENSSL_free(der);
    X509_free(x);
    return rc;
}

ea_err factory_populate(ea_emu *emu, const ea_emu_init_opts *o, const ea_scp03_keys *scp,
                        const char *dir, char *err, size_t errlen)
{
    char vdir[1024], cn[128], hex[2 * EA_UNIQUE_ID_LEN + 1];
    uint8_t uid[EA_UNIQUE_ID_LEN] = { 0x04, 0x00, 0x50, 0x01 };
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    ea_emu_chan *ch = NULL;
    ea_err rc;

    if (o && o->vendor_ca_dir)
        snprintf(vdir, sizeof vdir, "%s", o->vendor_ca_dir);
    else
        snprintf(vdir, sizeof vdir, "%s/vendor", dir);
    if ((rc = vendor_ca(emu, vdir, &ca, &ca_key, err, errlen)) != EA_OK)
        goto out;
    if ((rc = sd_provision(emu, scp)) != EA_OK)
        goto out;
    if ((rc = ea_emu_chan_open(emu, &ch)) != EA_OK)
        goto out;
    apdu_ctx c = { .emu = emu, .ch = ch };
    if (RAND_bytes_ex(emu->libctx, uid + 4, sizeof uid - 4, 0) != 1) {
        rc = EA_ERR_CRYPTO;
        goto out;
    }
    ea_hex_encode(uid, sizeof uid, hex);
    if ((rc = put_obj(&c, EA_OBJ_UNIQUE_ID, KIND_BINARY, 0, EA_POL_ALLOW_READ, uid, sizeof uid)) != EA_OK)
        goto out;
    snprintf(cn, sizeof cn, "SE attestation %s", hex);
    if ((rc = key_and_cert(&c, EA_OBJ_ATTEST_KEY, EA_OBJ_ATTEST_CERT,
                           EA_POL_ALLOW_ATTESTATION | EA_POL_ALLOW_READ, cn, NULL, ca, ca_key)) != EA_OK)
        goto out;
    if (o && o->preprovision) {
        snprintf(cn, sizeof cn, "%s", hex);
        rc = key_and_cert(&c, EA_OBJ_DEVICE_KEY, EA_OBJ_DEVICE_CERT,
                          EA_POL_ALLOW_SIGN | EA_POL_ALLOW_READ, cn, "clientAuth", ca, ca_key);
    }
out:
    if (rc != EA_OK && err && errlen && !err[0])
        snprintf(err, errlen, "cannot create the factory objects: %s", ea_err_str(rc));
    ea_emu_chan_close(ch);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}

static void rmtree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            if (unlink(sub) != 0 && errno == EISDIR)
                rmtree(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* Remove the store files of an old chip (after making sure nobody uses it). */
static ea_err wipe_chip(const char *dir, const ea_emu_init_opts *o, char *err, size_t errlen)
{
    ea_store *st = NULL;
    ea_store_opts so = { .key_path = o->seal_key_path, .holder = "edgeauth-se init --force" };
    ea_err rc = ea_store_open(dir, &so, &st, err, errlen);
    if (rc == EA_ERR_LOCKED)
        return rc;
    ea_store_close(st);
    if (err && errlen)
        err[0] = '\0';
    /* Whatever state it was in, the old chip's files go. */
    char path[1024];
    snprintf(path, sizeof path, "%s/objects", dir);
    rmtree(path);
    if (!o->seal_key_path) {
        snprintf(path, sizeof path, "%s/seal.key", dir);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/lock", dir);
    unlink(path);
    return EA_OK;
}

/* The chip's Platform SCP03 keys: given (defaults or a file) or random. */
static ea_err scp03_keys_for(const ea_emu_init_opts *o, ea_scp03_keys *k, char *err, size_t errlen)
{
    if (o->scp03_keys)
        return ea_scp03_keys_load(o->scp03_keys, k, err, errlen);
    if (RAND_bytes(k->enc, sizeof k->enc) != 1 || RAND_bytes(k->mac, sizeof k->mac) != 1 ||
        RAND_bytes(k->dek, sizeof k->dek) != 1) {
        ea_seterr(err, errlen, "cannot draw the Platform SCP03 keys");
        return EA_ERR_CRYPTO;
    }
    return EA_OK;
}

static ea_err scp03_keys_export(const char *path, const ea_scp03_keys *k, char *err, size_t errlen)
{
    char text[128];
    ea_err rc = ea_scp03_keys_format(k, text, sizeof text);
    if (rc == EA_OK)
        rc = ea_file_write_atomic(path, text, strlen(text), 0600);
    ea_cleanse(text, sizeof text);
    if (rc != EA_OK)
        ea_seterr(err, errlen, "cannot write the Platform SCP03 keys to %s: %s", path, ea_err_str(rc));
    return rc;
}

ea_err ea_emu_init(const char *dir, const ea_emu_init_opts *opts, char *err, size_t errlen)
{
    ea_emu_init_opts none = { 0 };
    const ea_emu_init_opts *o = opts ? opts : &none;
    ea_store_opts so = { .key_path = o->seal_key_path, .holder = "edgeauth-se init" };
    ea_emu_opts eo = { .seal_key_path = o->seal_key_path, .holder = "edgeauth-se init" };
    ea_emu *emu = NULL;
    ea_scp03_keys scp;
    ea_err rc;

    if (!dir)
        return EA_ERR_ARG;
    if (err && errlen)
        err[0] = '\0';
    /* Bad key options are refused before anything is created. */
    if ((rc = scp03_keys_for(o, &scp, err, errlen)) != EA_OK)
        return rc;
    rc = ea_store_create(dir, &so);
    if (rc == EA_ERR_EXISTS && o->force) {
        if ((rc = wipe_chip(dir, o, err, errlen)) != EA_OK)
            goto out;
        rc = ea_store_create(dir, &so);
    }
    if (rc == EA_ERR_EXISTS) {
        ea_seterr(err, errlen, "%s already holds a chip (use --force to replace it)", dir);
        goto out;
    }
    if (rc != EA_OK) {
        ea_seterr(err, errlen, "cannot create a chip in %s", dir);
        goto out;
    }
    if ((rc = ea_emu_open(dir, &eo, &emu, err, errlen)) != EA_OK)
        goto out;
    rc = factory_populate(emu, o, &scp, dir, err, errlen);
    ea_emu_close(emu);
    if (rc == EA_OK && o->scp03_keys_out)
        rc = scp03_keys_export(o->scp03_keys_out, &scp, err, errlen);
out:
    ea_scp03_keys_wipe(&scp);
    return rc;
}
