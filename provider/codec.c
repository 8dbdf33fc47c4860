/* The key-reference PEM (-----BEGIN EDGEAUTH SE KEY-----: object id and
 * optionally the SE URI, no secret) in both directions, and a text view of
 * an SE key. Programs that only read key *files* (curl --key, mosquitto
 * keyfile, openssl s_time) reach SE keys through the decoder. */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "provider/prov.h"

static OSSL_FUNC_decoder_newctx_fn dec_newctx;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_decode_fn dec_decode;
static OSSL_FUNC_decoder_export_object_fn dec_export_object;
static OSSL_FUNC_encoder_newctx_fn enc_newctx;
static OSSL_FUNC_encoder_freectx_fn enc_freectx;
static OSSL_FUNC_encoder_does_selection_fn enc_does_selection;
static OSSL_FUNC_encoder_encode_fn pem_encode;
static OSSL_FUNC_encoder_encode_fn text_encode;

static void *dec_newctx(void *provctx)
{
    return provctx; /* no per-call state */
}

static void dec_freectx(void *ctx)
{
    (void)ctx;
}

static int dec_decode(void *ctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb, void *data_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    ea_prov *p = ctx;
    BIO *in = BIO_new_from_core_bio(p->libctx, cin);
    char *name = NULL, *header = NULL, uri[EA_PROV_URI_MAX];
    unsigned char *der = NULL;
    long len = 0;
    uint32_t id;
    int ok = 1; /* "not mine" is not an error: the next decoder gets a turn */
    (void)selection;
    (void)pw_cb;
    (void)pw_cbarg;

    if (!in)
        return 0;
    if (PEM_read_bio(in, &name, &header, &der, &len) != 1 || strcmp(name, EA_PROV_PEM_NAME) != 0)
        goto out;
    if (!ea_prov_keyref_decode(der, (size_t)len, &id, uri, sizeof uri)) {
        ea_prov_raise(p, EA_ERR_MALFORMED, "malformed " EA_PROV_PEM_NAME " PEM");
        ok = 0;
        goto out;
    }
    ea_prov_key *k = ea_prov_key_load(p, uri, id);
    if (!k) {
        ok = 0;
        goto out;
    }
    ea_prov_ref ref = { EA_PROV_REF_MAGIC, 1, k, 0 };
    int type = OSSL_OBJECT_PKEY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, "EC", 0),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof ref),
        OSSL_PARAM_construct_end(),
    };
    ok = data_cb(params, data_cbarg);
    ea_prov_key_free(k);
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(in);
    return ok;
}

/* A reference never leaves for another provider's keymgmt (it would get the
 * public half only and then fail to sign). */
static int dec_export_object(void *ctx, const void *objref, size_t objref_sz, OSSL_CALLBACK *export_cb,
                             void *export_cbarg)
{
    (void)ctx, (void)objref, (void)objref_sz, (void)export_cb, (void)export_cbarg;
    return 0;
}

const OSSL_DISPATCH ea_prov_keyref_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode },
    { OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object },
    { 0, NULL },
};

/* ---- encoders ------------------------------------------------------------------ */

static void *enc_newctx(void *provctx)
{
    return provctx;
}

static void enc_freectx(void *ctx)
{
    (void)ctx;
}

static int enc_does_selection(void *provctx, int selection)
{
    (void)provctx;
    /* The reference stands for the key pair (and so for its public half). */
    return (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
}

static int pem_encode(void *ctx, OSSL_CORE_BIO *cout, const void *obj_raw, const OSSL_PARAM obj_abstract[],
                      int selection, OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    ea_prov *p = ctx;
    const ea_prov_key *k = obj_raw;
    uint8_t *der = NULL;
    size_t n = 0;
    int ok = 0;
    (void)obj_abstract;
    (void)cb;
    (void)cbarg;

    if (!k || !k->id || !(selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)) {
        ea_prov_raise(p, EA_ERR_UNSUPPORTED, "only an SE key (by reference) can be written as " EA_PROV_PEM_NAME);
        return 0;
    }
    if (k->eph) {
        /* A transient key dies with its session and its id is reused: a
         * reference to it would later name someone else's key. */
        ea_prov_raise(p, EA_ERR_UNSUPPORTED, "0x%08X is an ephemeral (transient) key: it cannot be saved; "
                                             "generate a persistent one with -pkeyopt se05x-id:0x...", k->id);
        return 0;
    }
    BIO *out = BIO_new_from_core_bio(p->libctx, cout);
    if (out && ea_prov_keyref_encode(k, &der, &n))
        ok = PEM_write_bio(out, EA_PROV_PEM_NAME, "", der, (long)n) > 0;
    OPENSSL_free(der);
    BIO_free(out);
    return ok;
}

static int text_encode(void *ctx, OSSL_CORE_BIO *cout, const void *obj_raw, const OSSL_PARAM obj_abstract[],
                       int selection, OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    ea_prov *p = ctx;
    const ea_prov_key *k = obj_raw;
    BIO *out = BIO_new_from_core_bio(p->libctx, cout);
    int ok = out != NULL;
    (void)obj_abstract;
    (void)cb;
    (void)cbarg;

    if (ok && k->id && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY))
        ok = BIO_printf(out, "Private-Key: (%d bit), held in the secure element as object 0x%08X%s%s\n"
                             "    (not exportable: the private scalar never leaves the SE)\n",
                        ea_prov_curve_bits(k->curve), k->id, k->uri[0] ? " of " : "", k->uri) > 0;
    else if (ok)
        ok = BIO_printf(out, "Public-Key: (%d bit)\n", ea_prov_curve_bits(k->curve)) > 0;
    if (ok)
        ok = BIO_printf(out, "pub:\n") > 0;
    for (size_t i = 0; ok && i < k->pub_len; i++)
        ok = BIO_printf(out, "%s%02x%s", i % 15 == 0 ? "    " : "", k->pub[i],
                        i + 1 == k->pub_len ? "\n" : i % 15 == 14 ? ":\n" : ":") > 0;
    if (ok)
        ok = BIO_printf(out, "ASN1 OID: %s\nNIST CURVE: %s\n", ea_prov_curve_name(k->curve),
                        k->curve == EA_CURVE_NIST_P256 ? "P-256" : "P-384") > 0;
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH ea_prov_keyref_pem_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))pem_encode },
    { 0, NULL },
};

const OSSL_DISPATCH ea_prov_text_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))text_encode },
    { 0, NULL },
};
