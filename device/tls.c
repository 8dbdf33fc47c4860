/* The agent's TLS context: everything the device proves and everything it
 * checks comes from the secure element.
 *
 *   device certificate   0xF0000101 (binary object, DER)  -> SSL_CTX_use_certificate
 *   OEM intermediate     0x7B000101 (binary object, DER)  -> SSL_CTX_add1_chain_cert
 *   root (trust anchor)  0x7B000102 (binary object, DER)  -> ea_pki_verify_chain, unless --ca
 *   private key          0xF0000100 via the provider's store "se05x:0xF0000100?se=URI"
 *
 * The context lives in its own OSSL_LIB_CTX with the default provider loaded
 * first and edgeauth second, no property query (spec openssl-provider.md
 * §2.3): generic fetches (ECDHE, hashes, the server's signature) stay in the
 * default provider and only the CertificateVerify signature reaches the SE.
 *
 * libmosquitto gets the context with MOSQ_OPT_SSL_CTX_WITH_DEFAULTS off, so it
 * verifies nothing itself (spec cloud-and-provisioning.md §2.4-2.5). The
 * server's chain and name are checked here by ea_pki_verify_chain, run as
 * the context's certificate verification callback, so the cloud is held to
 * our profile and a refusal carries our reason.
 *
 * Resumption: libmosquitto creates a new SSL for every connection and calls
 * SSL_connect itself, so there is no moment between SSL_new and the
 * ClientHello where the application holds the SSL. The info callback's
 * SSL_CB_HANDSHAKE_START fires inside SSL_connect before the ClientHello is
 * built; there the saved session is set (on the non-const SSL that
 * mosquitto_ssl_get returns for the same object). The session itself comes
 * from the new-session callback (client cache mode, no internal store):
 * each TLS 1.2 session or TLS 1.3 ticket replaces the previous one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/store.h>

#include "device/device_int.h"
#include "edgeauth/host.h"
#include "edgeauth/provider.h"

#define CERT_STACK_BUF 4096u
#define CERT_MAX 0x7FFFu /* the largest binary file a chip holds */

/* ---- errors ------------------------------------------------------------------ */

/* The deepest OpenSSL error with its data ("key values mismatch"), then clear. */
static void ossl_reason(char *out, size_t cap)
{
    const char *data = NULL, *reason;
    int flags = 0;
    unsigned long e, last = 0;
    const char *last_data = NULL;

    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        last = e;
        last_data = (flags & ERR_TXT_STRING) && data && *data ? data : NULL;
    }
    if (!last) {
        snprintf(out, cap, "no detail from OpenSSL");
        return;
    }
    reason = ERR_reason_error_string(last);
    if (last_data)
        snprintf(out, cap, "%s (%s)", reason ? reason : "error", last_data);
    else
        snprintf(out, cap, "%s", reason ? reason : "unknown OpenSSL error");
}

/* ---- reading the SE ------------------------------------------------------------ */

static const struct se_object {
    uint32_t id;
    const char *what;
} se_objects[] = {
    { EA_AGENT_CERT_ID, "device certificate" },
    { EA_AGENT_INTERMEDIATE_ID, "OEM intermediate CA certificate" },
    { EA_AGENT_ROOT_ID, "root CA certificate" },
};

static ea_err read_cert(ea_agent *a, ea_host *h, const struct se_object *obj, X509 **out, char *err,
                        size_t errlen)
{
    uint8_t stackbuf[CERT_STACK_BUF], *buf = stackbuf, *big = NULL;
    size_t len = sizeof stackbuf;
    const uint8_t *p;
    bool exists = false;
    ea_err rc = EA_ERR_INTERNAL;
    X509 *x = NULL;

    if ((rc = ea_host_exists(h, obj->id, &exists)) != EA_OK) {
        snprintf(err, errlen, "cannot ask the SE %s for object 0x%08X: %s", a->se_uri, obj->id,
                 ea_host_last_error(h));
        return rc;
    }
    if (!exists) {
        snprintf(err, errlen, "no %s in the SE %s (object 0x%08X): run `edgeauth provision` first", obj->what,
                 a->se_uri, obj->id);
        return EA_ERR_NOT_FOUND;
    }
    rc = ea_host_read_object(h, obj->id, buf, &len);
    if (rc == EA_ERR_BUF_TOO_SMALL && len <= CERT_MAX) {
        if (!(big = malloc(len)))
            return EA_ERR_NO_MEMORY;
        buf = big;
        rc = ea_host_read_object(h, obj->id, buf, &len);
    }
    if (rc != EA_OK) {
        snprintf(err, errlen, "cannot read the %s (object 0x%08X) from the SE: %s", obj->what, obj->id,
                 ea_host_last_error(h));
        goto out;
    }
    p = buf;
    if (!(x = X509_new_ex(a->libctx, NULL))) {
        rc = EA_ERR_NO_MEMORY;
        goto out;
    }
    if (!d2i_X509(&x, &p, (long)len) || p != buf + len) {
        snprintf(err, errlen, "object 0x%08X in the SE does not hold a DER certificate (the %s)", obj->id,
                 obj->what);
        ERR_clear_error();
        rc = EA_ERR_MALFORMED;
        goto out;
    }
    *out = x;
    x = NULL;
    rc = EA_OK;
out:
    X509_free(x);
    free(big);
    return rc;
}

/* Only names that are safe as one MQTT topic level and as a client id. */
static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= DEV_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

static ea_err device_id_from_cert(ea_agent *a, char *err, size_t errlen)
{
    X509_NAME *nm = X509_get_subject_name(a->cert);
    int idx = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    unsigned char *cn = NULL;
    int n;

    if (idx < 0 || X509_NAME_get_index_by_NID(nm, NID_commonName, idx) >= 0) {
        snprintf(err, errlen, "the device certificate (0x%08X) must have exactly one subject CN",
                 EA_AGENT_CERT_ID);
        return EA_ERR_MALFORMED;
    }
    n = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx)));
    if (n < 0 || memchr(cn, 0, (size_t)n) || !id_ok((const char *)cn)) {
        snprintf(err, errlen, "the CN of the device certificate (0x%08X) is not a usable device id "
                              "(letters, digits, '.', '_', '-'; at most 64)", EA_AGENT_CERT_ID);
        OPENSSL_free(cn);
        return EA_ERR_MALFORMED;
    }
    snprintf(a->device_id, sizeof a->device_id, "%s", (const char *)cn);
    OPENSSL_free(cn);
    if (a->o.device_id && strcmp(a->o.device_id, a->device_id) != 0) {
        snprintf(err, errlen, "--device-id %.64s does not match the device certificate in the SE (CN=%s)",
                 a->o.device_id, a->device_id);
        return EA_ERR_AUTH;
    }
    return EA_OK;
}

/* The certificates, through one host session that is closed again: an
 * emu: chip is locked by whichever session holds it, and the provider opens
 * its own session for the key. */
static ea_err read_se(ea_agent *a, char *err, size_t errlen)
{
    char herr[256] = "";
    ea_host *h = NULL;
    bool exists = false;
    X509 *root = NULL;
    ea_err rc = ea_host_open(a->se_uri, NULL, &h, herr, sizeof herr);

    if (rc != EA_OK) {
        snprintf(err, errlen, "cannot reach the SE %s: %s", a->se_uri, herr[0] ? herr : ea_err_str(rc));
        return rc;
    }
    if ((rc = ea_host_exists(h, EA_AGENT_KEY_ID, &exists)) != EA_OK) {
        snprintf(err, errlen, "cannot ask the SE %s for the device key: %s", a->se_uri, ea_host_last_error(h));
        goto out;
    }
    if (!exists) {
        snprintf(err, errlen, "no device key in the SE %s (object 0x%08X): run `edgeauth provision` first",
                 a->se_uri, EA_AGENT_KEY_ID);
        rc = EA_ERR_NOT_FOUND;
        goto out;
    }
    if ((rc = read_cert(a, h, &se_objects[0], &a->cert, err, errlen)) != EA_OK)
        goto out;
    /* A chip provisioned by its vendor holds only its leaf (issued straight
     * by the vendor CA) and no OEM chain: with --ca it presents the leaf
     * alone. A chip provisioned by the OEM must have its intermediate. */
    bool have_inter = true;
    if (a->o.ca_file && (rc = ea_host_exists(h, se_objects[1].id, &have_inter)) != EA_OK) {
        snprintf(err, errlen, "cannot ask the SE %s for object 0x%08X: %s", a->se_uri, se_objects[1].id,
                 ea_host_last_error(h));
        goto out;
    }
    if (have_inter && (rc = read_cert(a, h, &se_objects[1], &a->intermediate, err, errlen)) != EA_OK)
        goto out;
    if (!a->o.ca_file) {
        if ((rc = read_cert(a, h, &se_objects[2], &root, err, errlen)) != EA_OK)
            goto out;
        if (!sk_X509_push(a->trusted, root)) {
            X509_free(root);
            rc = EA_ERR_NO_MEMORY;
            goto out;
        }
    }
    rc = device_id_from_cert(a, err, errlen);
out:
    ea_host_close(h);
    return rc;
}

static ea_err read_ca_file(ea_agent *a, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(a->o.ca_file, "r");
    X509 *x;

    if (!b) {
        snprintf(err, errlen, "cannot open --ca %.400s", a->o.ca_file);
        ERR_clear_error();
        return EA_ERR_IO;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(a->trusted, x)) {
            X509_free(x);
            BIO_free(b);
            return EA_ERR_NO_MEMORY;
        }
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(b);
    if (sk_X509_num(a->trusted) == 0) {
        snprintf(err, errlen, "--ca %.400s holds no PEM certificate", a->o.ca_file);
        return EA_ERR_MALFORMED;
    }
    return EA_OK;
}

/* ---- the key, through the provider ------------------------------------------------ */

static ea_err load_key(ea_agent *a, char *err, size_t errlen)
{
    char uri[DEV_URI_MAX + 32], why[256];
    OSSL_STORE_CTX *sc;
    OSSL_STORE_INFO *info;

    snprintf(uri, sizeof uri, "se05x:0x%08X?se=%s", EA_AGENT_KEY_ID, a->se_uri);
    sc = OSSL_STORE_open_ex(uri, a->libctx, NULL, NULL, NULL, NULL, NULL, NULL);
    if (!sc) {
        ossl_reason(why, sizeof why);
        snprintf(err, errlen, "cannot open the key se05x:0x%08X: %s", EA_AGENT_KEY_ID, why);
        return EA_ERR_CRYPTO;
    }
    OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
    while (!a->key && !OSSL_STORE_eof(sc) && (info = OSSL_STORE_load(sc)) != NULL) {
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            a->key = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(sc);
    if (!a->key) {
        ossl_reason(why, sizeof why);
        snprintf(err, errlen, "cannot load the key se05x:0x%08X from the SE: %s", EA_AGENT_KEY_ID, why);
        return EA_ERR_CRYPTO;
    }
    return EA_OK;
}

/* ---- verification of the cloud ------------------------------------------------------ */

/* Our reasons as X509_V_ERR codes, so libssl sends the matching alert. */
static int x509_code(ea_verify_reason r)
{
    static const int codes[] = {
        [EA_VERIFY_OK] = X509_V_OK,
        [EA_VERIFY_UNKNOWN_CA] = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        [EA_VERIFY_EXPIRED] = X509_V_ERR_CERT_HAS_EXPIRED,
        [EA_VERIFY_NOT_YET_VALID] = X509_V_ERR_CERT_NOT_YET_VALID,
        [EA_VERIFY_REVOKED] = X509_V_ERR_CERT_REVOKED,
        [EA_VERIFY_NAME_CONSTRAINT] = X509_V_ERR_PERMITTED_VIOLATION,
        [EA_VERIFY_BAD_PURPOSE] = X509_V_ERR_INVALID_PURPOSE,
        [EA_VERIFY_NAME_MISMATCH] = X509_V_ERR_HOSTNAME_MISMATCH,
        [EA_VERIFY_BAD_SIGNATURE] = X509_V_ERR_CERT_SIGNATURE_FAILURE,
        [EA_VERIFY_POLICY] = X509_V_ERR_APPLICATION_VERIFICATION,
        [EA_VERIFY_MALFORMED] = X509_V_ERR_INVALID_EXTENSION,
        [EA_VERIFY_OTHER] = X509_V_ERR_UNSPECIFIED,
    };
    if ((unsigned)r >= sizeof codes / sizeof codes[0] || r == EA_VERIFY_OK)
        return X509_V_ERR_UNSPECIFIED; /* only called for a refusal */
    return codes[r];
}

static void subject_line(X509 *x, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n = 0;
    out[0] = '\0';
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        n = BIO_read(b, out, (int)cap - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
    for (char *p = out; *p; p++) /* a subject is the peer's text: one printable line */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7F)
            *p = '?';
}

/* SSL_CTX_set_cert_verify_callback: replaces X509_verify_cert for the
 * server's chain. The peer's chain plus our own intermediate are the
 * untrusted pool; the trust anchors are the SE's root (or --ca). */
static int verify_server(X509_STORE_CTX *xs, void *arg)
{
    ea_agent *a = arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    STACK_OF(X509) *peer = X509_STORE_CTX_get0_untrusted(xs);
    STACK_OF(X509) *pool = peer ? sk_X509_dup(peer) : sk_X509_new_null();
    ea_verify_reason reason = EA_VERIFY_OTHER;
    char detail[DEV_DETAIL_MAX] = "";
    uint64_t t0;
    ea_err rc;

    if (!pool || (a->intermediate && !sk_X509_push(pool, a->intermediate))) {
        sk_X509_free(pool);
        X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
        return 0;
    }
    ea_verify_opts vo = {
        .trusted = a->trusted,
        .untrusted = pool,
        .role = EA_VERIFY_SERVER,
        .peer_dns = a->peer_is_ip ? NULL : a->peer_name,
        .peer_ip = a->peer_is_ip ? a->peer_name : NULL,
    };
    t0 = ea_agent_now_ns();
    rc = leaf ? ea_pki_verify_chain(leaf, &vo, &reason, detail, sizeof detail) : EA_ERR_ARG;
    a->tr.verify_ns = ea_agent_now_ns() - t0;
    a->tr.verified = true;
    a->tr.verify_reason = rc == EA_OK ? EA_VERIFY_OK : reason;
    snprintf(a->tr.verify_detail, sizeof a->tr.verify_detail, "%s", detail);
    if (leaf)
        subject_line(leaf, a->tr.peer_subject, sizeof a->tr.peer_subject);
    sk_X509_free(pool);
    if (rc != EA_OK) {
        a->refused = true;
        snprintf(a->refusal, sizeof a->refusal, "%s: %s (expected %s %s)",
                 ea_verify_reason_str(a->tr.verify_reason), detail[0] ? detail : ea_err_str(rc),
                 a->peer_is_ip ? "IP" : "name", a->peer_name);
        X509_STORE_CTX_set_error(xs, x509_code(a->tr.verify_reason));
        return 0;
    }
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

/* ---- callbacks: sessions and the trace ------------------------------------------------- */

static ea_agent *agent_of(const SSL *ssl)
{
    return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* Called for each new session (TLS 1.2) or ticket (TLS 1.3). Returning 1
 * keeps the reference: the agent owns the last one. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    ea_agent *a = agent_of(ssl);
    SSL_SESSION_free(a->session);
    a->session = sess;
    if (a->o.trace && !a->o.json)
        fprintf(a->out, "trace: %s stored for the next connection (lifetime %ld s)\n",
                SSL_version(ssl) >= TLS1_3_VERSION ? "session ticket" : "session", SSL_SESSION_get_timeout(sess));
    return 1;
}

/* The oldest error in the queue, "library: reason (data)", without taking it. */
static void first_error(char *out, size_t cap)
{
    const char *data = NULL, *lib, *reason;
    int flags = 0;
    unsigned long e = ERR_peek_error_all(NULL, NULL, NULL, &data, &flags);

    if (!e)
        return;
    lib = ERR_lib_error_string(e);
    reason = ERR_reason_error_string(e);
    snprintf(out, cap, "%s%s%s%s%s%s", lib ? lib : "", lib ? ": " : "", reason ? reason : "error",
             (flags & ERR_TXT_STRING) && data && *data ? " (" : "", (flags & ERR_TXT_STRING) && data ? data : "",
             (flags & ERR_TXT_STRING) && data && *data ? ")" : "");
}

static void on_info(const SSL *ssl, int where, int ret)
{
    ea_agent *a = agent_of(ssl);
    if (where & SSL_CB_HANDSHAKE_START) {
        if (a->tr.start_ns != 0) /* renegotiation is off; a TLS 1.3 key update is no new handshake */
            return;
        a->tr.start_ns = ea_agent_now_ns();
        /* Same object as ssl, but not const: libmosquitto owns it. */
        SSL *s = a->mosq ? mosquitto_ssl_get(a->mosq) : NULL;
        if (s == ssl && !a->o.no_resume && a->session && SSL_SESSION_is_resumable(a->session) &&
            SSL_set_session(s, a->session))
            a->tr.offered_session = true;
    }
    /* We are about to send a fatal alert: the error queue still holds the
     * cause with its detail (libmosquitto prints it later without the
     * detail). Peek only; the queue belongs to libssl and libmosquitto. */
    if ((where & SSL_CB_WRITE_ALERT) == SSL_CB_WRITE_ALERT && (ret >> 8) == SSL3_AL_FATAL &&
        !a->tr.local_error[0])
        first_error(a->tr.local_error, sizeof a->tr.local_error);
    if ((where & SSL_CB_HANDSHAKE_DONE) && a->tr.done_ns == 0 && a->tr.start_ns != 0) {
        a->tr.done_ns = ea_agent_now_ns();
        a->tls13 = SSL_version(ssl) >= TLS1_3_VERSION;
        a->st.handshakes++;
        if (SSL_session_reused((SSL *)ssl))
            a->st.resumed++;
        ea_agent_trace_report(a, ssl, NULL);
    }
}

static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
    ea_agent *a = arg;
    const uint8_t *p = buf;
    (void)version;
    (void)ssl;
    if (content_type == SSL3_RT_HANDSHAKE && len >= 1) {
        /* type(1) length(3) legacy_version(2) random(32) */
        if (write_p && p[0] == SSL3_MT_CLIENT_HELLO && len >= 38)
            ea_agent_trace_random(a, p + 6);
        ea_agent_trace_event(a, write_p != 0, p[0], 0);
    } else if (content_type == SSL3_RT_ALERT && len >= 2) {
        ea_agent_trace_event(a, write_p != 0, DEV_EV_ALERT, p[0] << 8 | p[1]);
    }
}

/* ---- the context ------------------------------------------------------------------ */

static ea_err build_ctx(ea_agent *a, char *err, size_t errlen)
{
    char why[256];
    int min = a->o.tls_version ? a->o.tls_version : TLS1_2_VERSION;
    int max = a->o.tls_version ? a->o.tls_version : TLS1_3_VERSION;

    /* TLS offload: the provider's ECDH, KDFs and TLS groups win libssl's
     * fetches only under this query; without offload, none are offered. */
    bool kx = (a->offload & EA_AGENT_OFFLOAD_ECDHE) != 0, prf = (a->offload & EA_AGENT_OFFLOAD_PRF) != 0;
    if (!(a->ctx = SSL_CTX_new_ex(a->libctx, kx || prf ? EA_PROVIDER_OFFLOAD_PROPQ : NULL, TLS_client_method())))
        goto ossl;
    if (!SSL_CTX_set_min_proto_version(a->ctx, min) || !SSL_CTX_set_max_proto_version(a->ctx, max))
        goto ossl;
    SSL_CTX_set_options(a->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* The SE does ECDH on P-256 and P-384 only: offer no x25519 share. */
    if (kx && !SSL_CTX_set1_groups_list(a->ctx, "P-256:P-384"))
        goto ossl;
    /* TLSPerformPRF computes the master secret from the two randoms only:
     * the extended master secret (RFC 7627, seeded by the session hash) does
     * not fit it. With the premaster in the SE (ecdhe + prf) TLS 1.2 runs
     * without it; with prf alone the premaster is on the host and the
     * provider computes the extended master secret there (docs/DEVICE.md). */
    if (prf && kx)
        SSL_CTX_set_options(a->ctx, SSL_OP_NO_EXTENDED_MASTER_SECRET);
    SSL_CTX_set_mode(a->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_use_certificate(a->ctx, a->cert))
        goto ossl;
    if (!SSL_CTX_use_PrivateKey(a->ctx, a->key)) {
        ossl_reason(why, sizeof why);
        snprintf(err, errlen, "the device certificate in the SE (0x%08X) does not belong to the key 0x%08X: %s",
                 EA_AGENT_CERT_ID, EA_AGENT_KEY_ID, why);
        return EA_ERR_AUTH;
    }
    if (a->intermediate && !SSL_CTX_add1_chain_cert(a->ctx, a->intermediate))
        goto ossl;
    /* The SE signs a SHA-256 digest with the P-256 key; offer nothing else
     * for our CertificateVerify (TLS 1.2 would otherwise allow SHA-512). */
    if (!SSL_CTX_set1_client_sigalgs_list(a->ctx, "ECDSA+SHA256"))
        goto ossl;
    SSL_CTX_set_verify(a->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(a->ctx, verify_server, a);
    SSL_CTX_set_session_cache_mode(a->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(a->ctx, on_new_session);
    SSL_CTX_set_info_callback(a->ctx, on_info);
    SSL_CTX_set_msg_callback(a->ctx, on_msg);
    SSL_CTX_set_msg_callback_arg(a->ctx, a);
    if (!SSL_CTX_set_app_data(a->ctx, a))
        goto ossl;
    return EA_OK;
ossl:
    ossl_reason(why, sizeof why);
    snprintf(err, errlen, "cannot build the TLS context: %s", why);
    return EA_ERR_CRYPTO;
}

/* The parts named in --tls-offload, once the provider has accepted the list. */
static unsigned offload_bits(const char *s)
{
    static const struct {
        const char *word;
        unsigned bits;
    } words[] = {
        { "random", EA_AGENT_OFFLOAD_RANDOM },
        { "ecdhe", EA_AGENT_OFFLOAD_ECDHE },
        { "prf", EA_AGENT_OFFLOAD_PRF },
        { "all", EA_AGENT_OFFLOAD_RANDOM | EA_AGENT_OFFLOAD_ECDHE | EA_AGENT_OFFLOAD_PRF },
    };
    unsigned bits = 0;
    char buf[128], *save = NULL;
    if (!s || strlen(s) >= sizeof buf)
        return 0;
    strcpy(buf, s);
    for (char *w = strtok_r(buf, ", ", &save); w; w = strtok_r(NULL, ", ", &save))
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            if (!strcmp(w, words[i].word))
                bits |= words[i].bits;
    return bits;
}

ea_err ea_agent_tls_setup(ea_agent *a, char *err, size_t errlen)
{
    ea_err rc = EA_ERR_INTERNAL;
    char why[256];

    if (!(a->libctx = OSSL_LIB_CTX_new()) || !(a->trusted = sk_X509_new_null()))
        return EA_ERR_NO_MEMORY;
    if (!(a->prov_default = OSSL_PROVIDER_load(a->libctx, "default"))) {
        ossl_reason(why, sizeof why);
        snprintf(err, errlen, "cannot load OpenSSL's default provider: %s", why);
        return EA_ERR_CRYPTO;
    }
    ea_provider_opts po = { .offload = a->o.tls_offload, .se = a->se_uri };
    if ((rc = ea_provider_load_ex(a->libctx, &po, &a->prov_ea)) != EA_OK) {
        ossl_reason(why, sizeof why);
        if (rc == EA_ERR_ARG)
            snprintf(err, errlen, "--tls-offload %s: expected words from random,ecdhe,prf", a->o.tls_offload);
        else
            snprintf(err, errlen, "cannot load the edgeauth provider: %s: %s", ea_err_str(rc), why);
        return rc;
    }
    a->offload = offload_bits(a->o.tls_offload);
    /* Random offload: every random byte of this context, the ClientHello
     * random included, comes from the SE (one GetRandom, or
     * TLSGenerateRandom for a 32-byte request). Must precede the first
     * random byte drawn in the context. */
    if ((a->offload & EA_AGENT_OFFLOAD_RANDOM) &&
        !RAND_set_DRBG_type(a->libctx, "EDGEAUTH-SE-RNG", "provider=edgeauth", NULL, NULL)) {
        ossl_reason(why, sizeof why);
        snprintf(err, errlen, "--tls-offload random: cannot make the SE the random generator: %s", why);
        return EA_ERR_CRYPTO;
    }
    if (a->o.ca_file && (rc = read_ca_file(a, err, errlen)) != EA_OK)
        return rc;
    if ((rc = read_se(a, err, errlen)) != EA_OK || (rc = load_key(a, err, errlen)) != EA_OK)
        return rc;
    return build_ctx(a, err, errlen);
}

void ea_agent_tls_new_attempt(ea_agent *a)
{
    memset(&a->tr, 0, sizeof a->tr);
    a->tr.attempt_ns = ea_agent_now_ns();
    a->refused = false;
    a->refusal[0] = '\0';
}

void ea_agent_tls_free(ea_agent *a)
{
    SSL_SESSION_free(a->session);
    a->session = NULL;
    SSL_CTX_free(a->ctx);
    a->ctx = NULL;
    EVP_PKEY_free(a->key);
    a->key = NULL;
    X509_free(a->cert);
    X509_free(a->intermediate);
    a->cert = a->intermediate = NULL;
    sk_X509_pop_free(a->trusted, X509_free);
    a->trusted = NULL;
    /* The provider closes its SE session when unloaded. */
    if (a->prov_ea)
        OSSL_PROVIDER_unload(a->prov_ea);
    if (a->prov_default)
        OSSL_PROVIDER_unload(a->prov_default);
    a->prov_ea = a->prov_default = NULL;
    OSSL_LIB_CTX_free(a->libctx);
    a->libctx = NULL;
}
