/* The plugin's trust material: anchors, the OEM intermediates and the CRLs,
 * read from PEM files and read again when a file changes (a CA that
 * revokes a device or an intermediate just rewrites its crl.pem).
 *
 * A reload is all or nothing: when one file does not parse (a writer caught
 * half way, a typo), the previous material stays in force and the failure
 * is reported; the new version is tried again when the file changes again. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cloud/cloud_int.h"

#define PEM_MAX_OBJECTS 1024

static cloud_stamp stamp_of(const char *path)
{
    cloud_stamp s = { 0 };
    struct stat st;

    if (path && stat(path, &st) == 0) {
        s.present = true;
        s.dev = st.st_dev;
        s.ino = st.st_ino;
        s.size = st.st_size;
        s.mtime = st.st_mtim;
    }
    return s;
}

static bool same_stamp(const cloud_stamp *a, const cloud_stamp *b)
{
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

unsigned cloud_trust_changes(const cloud_trust *t, const char *ca_file, const char *inter_file, const char *crl_file)
{
    const char *paths[3] = { ca_file, inter_file, crl_file };
    unsigned mask = 0;

    for (int i = 0; i < 3; i++) {
        if (!paths[i])
            continue;
        cloud_stamp s = stamp_of(paths[i]);
        if (!same_stamp(&s, &t->st[i]))
            mask |= 1u << i;
    }
    return mask;
}

static bool in_crls(const cloud_trust *t, X509 *x)
{
    for (int i = 0; i < sk_X509_CRL_num(t->crls); i++) {
        X509_REVOKED *r = NULL;
        /* 1: listed; 2: listed as removeFromCRL (a delta CRL's undo), not revoked. */
        if (X509_CRL_get0_by_cert(sk_X509_CRL_value(t->crls, i), &r, x) == 1)
            return true;
    }
    return false;
}

bool cloud_trust_listed(const cloud_trust *t, X509 *leaf)
{
    if (!t->crls || !leaf)
        return false;
    if (in_crls(t, leaf))
        return true;
    for (int i = 0; i < sk_X509_num(t->inters); i++) {
        X509 *ca = sk_X509_value(t->inters, i);
        if (X509_check_issued(ca, leaf) == X509_V_OK && in_crls(t, ca))
            return true;
    }
    return false;
}

/* Every certificate (or CRL) of a PEM file. need_one: an empty file is an error. */
static bool read_pem(const char *path, STACK_OF(X509) **certs, STACK_OF(X509_CRL) **crls, bool need_one, char *err,
                     size_t errlen)
{
    STACK_OF(X509_INFO) *infos = NULL;
    BIO *b = BIO_new_file(path, "r");
    bool ok = false;
    int n = 0;

    if (!b) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    ERR_set_mark();
    infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
    ERR_pop_to_mark();
    BIO_free(b);
    if (!infos) {
        snprintf(err, errlen, "%s: not a PEM file of certificates or CRLs", path);
        return false;
    }
    if (certs && !(*certs = sk_X509_new_null()))
        goto out;
    if (crls && !(*crls = sk_X509_CRL_new_null()))
        goto out;
    for (int i = 0; i < sk_X509_INFO_num(infos) && i < PEM_MAX_OBJECTS; i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);
        if (certs && xi->x509) {
            if (!sk_X509_push(*certs, xi->x509))
                goto out;
            xi->x509 = NULL;
            n++;
        }
        if (crls && xi->crl) {
            if (!sk_X509_CRL_push(*crls, xi->crl))
                goto out;
            xi->crl = NULL;
            n++;
        }
    }
    if (need_one && n == 0) {
        snprintf(err, errlen, "%s holds no %s", path, certs ? "certificate" : "CRL");
        goto out;
    }
    ok = true;
out:
    if (!ok && err[0] == '\0')
        snprintf(err, errlen, "%s: out of memory", path);
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    if (!ok) {
        if (certs) {
            sk_X509_pop_free(*certs, X509_free);
            *certs = NULL;
        }
        if (crls) {
            sk_X509_CRL_pop_free(*crls, X509_CRL_free);
            *crls = NULL;
        }
    }
    return ok;
}

static time_t asn1_time(const ASN1_TIME *a)
{
    struct tm tm;
    if (!a || ASN1_TIME_to_tm(a, &tm) != 1)
        return 0;
    return timegm(&tm);
}

bool cloud_trust_load(cloud_trust *t, const char *ca_file, const char *inter_file, const char *crl_file, char *err,
                      size_t errlen)
{
    cloud_trust n = { 0 };
    const char *paths[3] = { ca_file, inter_file, crl_file };

    err[0] = '\0';
    /* Remember what we tried, loaded or not, so a broken file is not
     * re-read on every tick but again as soon as it changes. */
    for (int i = 0; i < 3; i++)
        t->st[i] = stamp_of(paths[i]);
    if (!ca_file || !read_pem(ca_file, &n.roots, NULL, true, err, errlen))
        goto fail;
    if (inter_file && !read_pem(inter_file, &n.inters, NULL, false, err, errlen))
        goto fail;
    if (!inter_file && !(n.inters = sk_X509_new_null()))
        goto fail;
    if (crl_file) {
        if (!read_pem(crl_file, NULL, &n.crls, true, err, errlen))
            goto fail;
        for (int i = 0; i < sk_X509_CRL_num(n.crls); i++) {
            time_t next = asn1_time(X509_CRL_get0_nextUpdate(sk_X509_CRL_value(n.crls, i)));
            if (next && (!n.crl_next_update || next < n.crl_next_update))
                n.crl_next_update = next;
        }
    }
    for (int i = 0; i < 3; i++)
        n.st[i] = t->st[i];
    cloud_trust_free(t);
    *t = n;
    return true;
fail:
    if (!err[0])
        snprintf(err, errlen, "out of memory");
    sk_X509_pop_free(n.roots, X509_free);
    sk_X509_pop_free(n.inters, X509_free);
    sk_X509_CRL_pop_free(n.crls, X509_CRL_free);
    return false;
}

void cloud_trust_free(cloud_trust *t)
{
    sk_X509_pop_free(t->roots, X509_free);
    sk_X509_pop_free(t->inters, X509_free);
    sk_X509_CRL_pop_free(t->crls, X509_CRL_free);
    t->roots = t->inters = NULL;
    t->crls = NULL;
    t->crl_next_update = 0;
}

static bool has_crl(const cloud_trust *t, X509 *ca)
{
    for (int i = 0; i < sk_X509_CRL_num(t->crls); i++)
        if (!X509_NAME_cmp(X509_CRL_get_issuer(sk_X509_CRL_value(t->crls, i)), X509_get_subject_name(ca)))
            return true;
    return false;
}

/* The CA of t (intermediate or anchor) that issued x, or NULL. */
static X509 *issuer_of(const cloud_trust *t, X509 *x)
{
    for (int i = 0; i < sk_X509_num(t->inters); i++)
        if (X509_check_issued(sk_X509_value(t->inters, i), x) == X509_V_OK)
            return sk_X509_value(t->inters, i);
    for (int i = 0; i < sk_X509_num(t->roots); i++)
        if (X509_check_issued(sk_X509_value(t->roots, i), x) == X509_V_OK)
            return sk_X509_value(t->roots, i);
    return NULL;
}

/* Which CRLs apply to leaf's hierarchy. CRL checking covers the whole
 * chain (X509_V_FLAG_CRL_CHECK_ALL), so every CA on the path needs a CRL
 * of its own. A hierarchy that publishes none (a chip vendor's CA, trusted
 * next to the OEM's) is checked without; one with CRLs for some of its CAs
 * only is checked with all of them and fails — a CRL went missing, and
 * that must not pass for "not revoked". */
static STACK_OF(X509_CRL) *crls_for(const cloud_trust *t, X509 *leaf)
{
    X509 *x = leaf, *ca;
    int with = 0, without = 0;

    if (!t->crls)
        return NULL;
    for (int depth = 0; depth < 8 && (ca = issuer_of(t, x)); depth++) {
        if (has_crl(t, ca))
            with++;
        else
            without++;
        if (ca == x || X509_check_issued(ca, ca) == X509_V_OK)
            break; /* self-signed: the anchor */
        x = ca;
    }
    return with == 0 && without > 0 ? NULL : t->crls;
}

bool cloud_trust_verify(const cloud_trust *t, X509 *leaf, ea_verify_reason *reason, char *detail, size_t detail_len)
{
    ea_verify_opts o = {
        .trusted = t->roots,
        .untrusted = t->inters,
        .crls = crls_for(t, leaf),
        .role = EA_VERIFY_CLIENT,
    };

    if (!t->roots) {
        *reason = EA_VERIFY_OTHER;
        snprintf(detail, detail_len, "no trust anchors loaded");
        return false;
    }
    return ea_pki_verify_chain(leaf, &o, reason, detail, detail_len) == EA_OK;
}
