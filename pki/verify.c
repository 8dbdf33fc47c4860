/* Chain verification: one function for the device (checking the cloud),
 * the cloud (checking devices) and the tools.
 *
 * OpenSSL's X509_verify_cert does the path building and the RFC 5280 checks
 * (signatures, validity, basicConstraints/pathlen, key usage, name
 * constraints, EKU by purpose, CRLs, host/IP); on top of it we apply our
 * profile to the chain it built: every key EC P-256 or P-384, every
 * signature ecdsa-with-SHA256/384. The trust anchors are exactly
 * opts->trusted: no default paths, and no X509_V_FLAG_PARTIAL_CHAIN (a
 * trusted intermediate does not end a chain; its root must be trusted
 * too), so trusting a CA means trusting its whole path. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "pki/pki_int.h"

static const char *const reason_str[] = {
    [EA_VERIFY_OK] = "ok",
    [EA_VERIFY_UNKNOWN_CA] = "unknown_ca",
    [EA_VERIFY_EXPIRED] = "expired",
    [EA_VERIFY_NOT_YET_VALID] = "not_yet_valid",
    [EA_VERIFY_REVOKED] = "revoked",
    [EA_VERIFY_NAME_CONSTRAINT] = "name_constraint",
    [EA_VERIFY_BAD_PURPOSE] = "bad_purpose",
    [EA_VERIFY_NAME_MISMATCH] = "name_mismatch",
    [EA_VERIFY_BAD_SIGNATURE] = "bad_signature",
    [EA_VERIFY_POLICY] = "policy",
    [EA_VERIFY_MALFORMED] = "malformed",
    [EA_VERIFY_OTHER] = "other",
};

const char *ea_verify_reason_str(ea_verify_reason r)
{
    if ((unsigned)r >= sizeof reason_str / sizeof reason_str[0] || !reason_str[r])
        return "unknown";
    return reason_str[r];
}

/* X509_V_ERR_* -> our reasons. Anything not listed is EA_VERIFY_OTHER. */
static const struct {
    int code;
    ea_verify_reason reason;
} err_map[] = {
    { X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_CERT_UNTRUSTED, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_CERT_REJECTED, EA_VERIFY_UNKNOWN_CA },
    { X509_V_ERR_CERT_HAS_EXPIRED, EA_VERIFY_EXPIRED },
    { X509_V_ERR_CERT_NOT_YET_VALID, EA_VERIFY_NOT_YET_VALID },
    { X509_V_ERR_CERT_REVOKED, EA_VERIFY_REVOKED },
    { X509_V_ERR_PERMITTED_VIOLATION, EA_VERIFY_NAME_CONSTRAINT },
    { X509_V_ERR_EXCLUDED_VIOLATION, EA_VERIFY_NAME_CONSTRAINT },
    { X509_V_ERR_SUBTREE_MINMAX, EA_VERIFY_NAME_CONSTRAINT },
    { X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE, EA_VERIFY_NAME_CONSTRAINT },
    { X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX, EA_VERIFY_NAME_CONSTRAINT },
    { X509_V_ERR_UNSUPPORTED_NAME_SYNTAX, EA_VERIFY_NAME_CONSTRAINT },
    { X509_V_ERR_INVALID_PURPOSE, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_INVALID_CA, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_PATH_LENGTH_EXCEEDED, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_KEYUSAGE_NO_CERTSIGN, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_KEYUSAGE_NO_CRL_SIGN, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_INVALID_NON_CA, EA_VERIFY_BAD_PURPOSE },
    { X509_V_ERR_HOSTNAME_MISMATCH, EA_VERIFY_NAME_MISMATCH },
    { X509_V_ERR_IP_ADDRESS_MISMATCH, EA_VERIFY_NAME_MISMATCH },
    { X509_V_ERR_EMAIL_MISMATCH, EA_VERIFY_NAME_MISMATCH },
    { X509_V_ERR_CERT_SIGNATURE_FAILURE, EA_VERIFY_BAD_SIGNATURE },
    { X509_V_ERR_CRL_SIGNATURE_FAILURE, EA_VERIFY_BAD_SIGNATURE },
    { X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE, EA_VERIFY_BAD_SIGNATURE },
    { X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE, EA_VERIFY_BAD_SIGNATURE },
    { X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY, EA_VERIFY_BAD_SIGNATURE },
    { X509_V_ERR_CERT_CHAIN_TOO_LONG, EA_VERIFY_POLICY },
    { X509_V_ERR_EE_KEY_TOO_SMALL, EA_VERIFY_POLICY },
    { X509_V_ERR_CA_KEY_TOO_SMALL, EA_VERIFY_POLICY },
    { X509_V_ERR_CA_MD_TOO_WEAK, EA_VERIFY_POLICY },
    { X509_V_ERR_SUITE_B_INVALID_ALGORITHM, EA_VERIFY_POLICY },
    { X509_V_ERR_SUITE_B_INVALID_CURVE, EA_VERIFY_POLICY },
    { X509_V_ERR_SUITE_B_INVALID_SIGNATURE_ALGORITHM, EA_VERIFY_POLICY },
    { X509_V_ERR_EC_KEY_EXPLICIT_PARAMS, EA_VERIFY_POLICY },
    { X509_V_ERR_NO_EXPLICIT_POLICY, EA_VERIFY_POLICY },
    { X509_V_ERR_INVALID_POLICY_EXTENSION, EA_VERIFY_POLICY },
    { X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD, EA_VERIFY_MALFORMED },
    { X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD, EA_VERIFY_MALFORMED },
    { X509_V_ERR_INVALID_EXTENSION, EA_VERIFY_MALFORMED },
    { X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, EA_VERIFY_MALFORMED },
    { X509_V_ERR_AKID_SKID_MISMATCH, EA_VERIFY_MALFORMED },
    { X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH, EA_VERIFY_MALFORMED },
    /* The X509_V_FLAG_X509_STRICT checks: a certificate RFC 5280 forbids. */
    { X509_V_ERR_CA_BCONS_NOT_CRITICAL, EA_VERIFY_MALFORMED },
    { X509_V_ERR_CA_CERT_MISSING_KEY_USAGE, EA_VERIFY_MALFORMED },
    { X509_V_ERR_EXTENSIONS_REQUIRE_VERSION_3, EA_VERIFY_MALFORMED },
    { X509_V_ERR_EMPTY_SUBJECT_ALT_NAME, EA_VERIFY_MALFORMED },
    { X509_V_ERR_EMPTY_SUBJECT_SAN_NOT_CRITICAL, EA_VERIFY_MALFORMED },
    { X509_V_ERR_ISSUER_NAME_EMPTY, EA_VERIFY_MALFORMED },
    { X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER, EA_VERIFY_MALFORMED },
    { X509_V_ERR_MISSING_SUBJECT_KEY_IDENTIFIER, EA_VERIFY_MALFORMED },
    { X509_V_ERR_PATHLEN_INVALID_FOR_NON_CA, EA_VERIFY_MALFORMED },
    { X509_V_ERR_PATHLEN_WITHOUT_KU_KEY_CERT_SIGN, EA_VERIFY_MALFORMED },
    { X509_V_ERR_KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA, EA_VERIFY_MALFORMED },
    { X509_V_ERR_AUTHORITY_KEY_IDENTIFIER_CRITICAL, EA_VERIFY_MALFORMED },
    { X509_V_ERR_SUBJECT_KEY_IDENTIFIER_CRITICAL, EA_VERIFY_MALFORMED },
    { X509_V_ERR_SIGNATURE_ALGORITHM_INCONSISTENCY, EA_VERIFY_MALFORMED },
    { X509_V_ERR_SIGNATURE_ALGORITHM_MISMATCH, EA_VERIFY_MALFORMED },
    /* CRL trouble is its own failure, not a revocation: the detail says
     * which (an expired CRL must raise an alarm, spec §6.3). */
    { X509_V_ERR_UNABLE_TO_GET_CRL, EA_VERIFY_OTHER },
    { X509_V_ERR_CRL_HAS_EXPIRED, EA_VERIFY_OTHER },
    { X509_V_ERR_CRL_NOT_YET_VALID, EA_VERIFY_OTHER },
};

static ea_verify_reason map_error(int code)
{
    for (size_t i = 0; i < sizeof err_map / sizeof err_map[0]; i++)
        if (err_map[i].code == code)
            return err_map[i].reason;
    return EA_VERIFY_OTHER;
}

static void subject_of(X509 *x, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n;
    out[0] = '\0';
    if (!b)
        return;
    if (x && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
        (n = BIO_read(b, out, (int)cap - 1)) > 0)
        out[n] = '\0';
    else
        snprintf(out, cap, "%s", x ? "(unprintable subject)" : "(no certificate)");
    BIO_free(b);
    /* One line, printable: a subject is attacker-chosen text. */
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7F)
            *p = '?';
}

static void set_detail(char *detail, size_t len, const char *what, int depth, X509 *x)
{
    char subj[256];
    if (!detail || !len)
        return;
    subject_of(x, subj, sizeof subj);
    if (depth >= 0)
        snprintf(detail, len, "%s (depth %d: %s)", what, depth, subj);
    else
        snprintf(detail, len, "%s", what);
}

/* ---- our profile, on the chain OpenSSL built ----------------------------------
 *
 * OpenSSL 3.0 accepts some certificates RFC 5280 or the CA/Browser Forum
 * baseline requirements forbid (x509-limbo shows which); what our system
 * never issues, it need not accept. Each rule is one small function in a
 * table: it returns NULL, or why the certificate fails and with which
 * reason. depth 0 is the leaf, the last one the trust anchor. */

typedef struct chk {
    X509 *x;
    int depth, last; /* last = depth of the trust anchor */
    ea_verify_role role;
    STACK_OF(X509) *chain;
    ea_verify_reason reason;
} chk;

typedef const char *check_fn(chk *c);

/* A host name: LDH labels of 1-63, 253 at most, no trailing dot; with
 * wildcard, the leftmost label may be exactly "*". */
static bool dns_ok(const unsigned char *s, size_t n, bool wildcard)
{
    size_t label = 0;
    if (n == 0 || n > 253)
        return false;
    if (wildcard && n > 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return false;
        if (ch == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && s[n - 1] != '-';
}

static const char *chk_key(chk *c)
{
    c->reason = EA_VERIFY_POLICY;
    return pki_key_is_ec(X509_get0_pubkey(c->x), 0) ? NULL : "key outside the profile (EC P-256 or P-384 only)";
}

static const char *chk_sigalg(chk *c)
{
    int nid = X509_get_signature_nid(c->x);
    c->reason = EA_VERIFY_POLICY;
    return nid == NID_ecdsa_with_SHA256 || nid == NID_ecdsa_with_SHA384
               ? NULL
               : "signature algorithm outside the profile (ecdsa-with-SHA256/384 only)";
}

/* RFC 5280 §4.1.2.2: positive, at most 20 octets. */
static const char *chk_serial(chk *c)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(c->x);
    const unsigned char *p = ASN1_STRING_get0_data(sn);
    int n = ASN1_STRING_length(sn);
    bool zero = true;
    c->reason = EA_VERIFY_MALFORMED;
    if (ASN1_STRING_type(sn) != V_ASN1_INTEGER)
        return "serial number is not positive";
    for (int i = 0; i < n; i++)
        zero = zero && p[i] == 0;
    if (zero)
        return "serial number is zero";
    return n > 20 ? "serial number longer than 20 octets" : NULL;
}

/* Every extension OpenSSL knows must decode; some must not be empty. */
static const char *chk_extensions(chk *c)
{
    c->reason = EA_VERIFY_MALFORMED;
    for (int i = 0; i < X509_get_ext_count(c->x); i++) {
        X509_EXTENSION *e = X509_get_ext(c->x, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e));
        const X509V3_EXT_METHOD *m = X509V3_EXT_get(e);
        if (!m)
            continue;
        void *v = X509V3_EXT_d2i(e);
        if (!v)
            return "an extension does not decode";
        const char *bad = NULL;
        if (nid == NID_info_access && sk_ACCESS_DESCRIPTION_num(v) < 1)
            bad = "authorityInfoAccess is empty";
        else if (nid == NID_authority_key_identifier && !((AUTHORITY_KEYID *)v)->keyid)
            bad = "authorityKeyIdentifier without keyIdentifier";
        if (m->it)
            ASN1_item_free(v, ASN1_ITEM_ptr(m->it));
        else if (m->ext_free)
            m->ext_free(v);
        if (bad)
            return bad;
    }
    return NULL;
}

/* RFC 5280 §4.2.1.10: only in CA certificates, critical, not empty, and
 * DNS names without a leading period. */
static const char *chk_name_constraints(chk *c)
{
    int crit = -1;
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(c->x, NID_name_constraints, &crit, NULL);
    const char *bad = NULL;
    c->reason = EA_VERIFY_NAME_CONSTRAINT;
    if (!nc)
        return NULL;
    if (!(X509_get_extension_flags(c->x) & EXFLAG_CA))
        bad = "name constraints in a certificate that is not a CA";
    else if (!crit)
        bad = "name constraints not marked critical";
    else if (sk_GENERAL_SUBTREE_num(nc->permittedSubtrees) <= 0 && sk_GENERAL_SUBTREE_num(nc->excludedSubtrees) <= 0)
        bad = "name constraints with no subtree";
    for (int k = 0; !bad && k < 2; k++) {
        STACK_OF(GENERAL_SUBTREE) *sts = k ? nc->excludedSubtrees : nc->permittedSubtrees;
        for (int i = 0; !bad && i < sk_GENERAL_SUBTREE_num(sts); i++) {
            GENERAL_NAME *g = sk_GENERAL_SUBTREE_value(sts, i)->base;
            if (g->type == GEN_DNS && ASN1_STRING_length(g->d.dNSName) > 0 &&
                !dns_ok(ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName), false))
                bad = "a DNS name constraint is not a host name (leading period?)";
        }
    }
    NAME_CONSTRAINTS_free(nc);
    return bad;
}

/* CABF 7.1.2.1.2: a root carries no extKeyUsage. */
static const char *chk_anchor_eku(chk *c)
{
    c->reason = EA_VERIFY_BAD_PURPOSE;
    if (c->depth != c->last)
        return NULL;
    return X509_get_ext_by_NID(c->x, NID_ext_key_usage, -1) >= 0 ? "the trust anchor has an extKeyUsage" : NULL;
}

/* The leaf: not a CA; EKU present, not critical, naming the role's purpose
 * and not anyExtendedKeyUsage. */
static const char *chk_leaf_purpose(chk *c)
{
    int crit = -1;
    c->reason = EA_VERIFY_BAD_PURPOSE;
    if (c->depth != 0)
        return NULL;
    if (X509_get_extension_flags(c->x) & EXFLAG_CA)
        return "a CA certificate as end entity";
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(c->x, NID_ext_key_usage, &crit, NULL);
    if (!eku)
        return "the end entity has no extKeyUsage";
    int want = c->role == EA_VERIFY_SERVER ? NID_server_auth : NID_client_auth;
    bool found = false;
    bool any = false;
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));
        found = found || nid == want;
        any = any || nid == NID_anyExtendedKeyUsage;
    }
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    if (crit)
        return "the end entity's extKeyUsage is critical";
    if (any)
        return "the end entity's extKeyUsage allows any purpose";
    return found ? NULL
                 : (c->role == EA_VERIFY_SERVER ? "extKeyUsage lacks serverAuth" : "extKeyUsage lacks clientAuth");
}

/* The leaf's SAN: critical only with an empty subject; DNS names well formed;
 * no wildcard that could stand for a name a CA above excludes. The subject
 * CN is not looked at: names come from the SAN only. */
static bool wildcard_reaches(const unsigned char *w, size_t wn, const unsigned char *x, size_t xn)
{
    /* "*.B" stands for any "L.B" with one label L: does it cover x? */
    if (wn < 3 || w[0] != '*' || w[1] != '.' || xn <= wn - 1)
        return false;
    size_t bn = wn - 2, ln = xn - bn - 1;
    if (x[ln] != '.' || OPENSSL_strncasecmp((const char *)x + ln + 1, (const char *)w + 2, bn) != 0)
        return false;
    return memchr(x, '.', ln) == NULL && ln > 0;
}

static const char *chk_leaf_names(chk *c)
{
    int crit = -1;
    const char *bad = NULL;
    X509_NAME *subj = X509_get_subject_name(c->x);
    if (c->depth != 0)
        return NULL;
    GENERAL_NAMES *san = X509_get_ext_d2i(c->x, NID_subject_alt_name, &crit, NULL);
    c->reason = EA_VERIFY_MALFORMED;
    if (san && crit && X509_NAME_entry_count(subj) > 0)
        bad = "subjectAltName is critical although the subject is not empty";
    for (int i = 0; !bad && san && i < sk_GENERAL_NAME_num(san); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
        if (g->type == GEN_DNS &&
            !dns_ok(ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName), true))
            bad = "a subjectAltName DNS name is not a host name";
    }
    /* Wildcards against excluded DNS subtrees of every CA above. */
    for (int d = 1; !bad && san && d < sk_X509_num(c->chain); d++) {
        NAME_CONSTRAINTS *nc = X509_get_ext_d2i(sk_X509_value(c->chain, d), NID_name_constraints, NULL, NULL);
        for (int j = 0; nc && !bad && j < sk_GENERAL_SUBTREE_num(nc->excludedSubtrees); j++) {
            GENERAL_NAME *ex = sk_GENERAL_SUBTREE_value(nc->excludedSubtrees, j)->base;
            for (int i = 0; ex->type == GEN_DNS && !bad && i < sk_GENERAL_NAME_num(san); i++) {
                GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
                if (g->type == GEN_DNS &&
                    wildcard_reaches(ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName),
                                     ASN1_STRING_get0_data(ex->d.dNSName), (size_t)ASN1_STRING_length(ex->d.dNSName))) {
                    bad = "a wildcard subjectAltName covers a name a CA excludes";
                    c->reason = EA_VERIFY_NAME_CONSTRAINT;
                }
            }
        }
        NAME_CONSTRAINTS_free(nc);
    }
    GENERAL_NAMES_free(san);
    return bad;
}

static check_fn *const checks[] = {
    chk_key, chk_sigalg, chk_serial, chk_extensions, chk_name_constraints, chk_anchor_eku, chk_leaf_purpose,
    chk_leaf_names,
};

static bool profile_ok(STACK_OF(X509) *chain, ea_verify_role role, int *bad_depth, const char **why,
                       ea_verify_reason *reason)
{
    chk c = { .chain = chain, .role = role, .last = sk_X509_num(chain) - 1 };
    for (c.depth = 0; c.depth <= c.last; c.depth++) {
        c.x = sk_X509_value(chain, c.depth);
        for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
            const char *w = checks[i](&c);
            if (w) {
                *bad_depth = c.depth;
                *why = w;
                *reason = c.reason;
                return false;
            }
        }
    }
    return true;
}

/* RFC 5280 §4.1.2.5: the validity period includes notAfter; OpenSSL 3.0
 * calls a certificate expired at its notAfter second. */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CERT_HAS_EXPIRED) {
        X509 *x = X509_STORE_CTX_get_current_cert(ctx);
        X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
        time_t t = (X509_VERIFY_PARAM_get_flags(p) & X509_V_FLAG_USE_CHECK_TIME) ? X509_VERIFY_PARAM_get_time(p)
                                                                                  : time(NULL);
        if (x && ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), t) == 0) {
            X509_STORE_CTX_set_error(ctx, X509_V_OK);
            return 1;
        }
    }
    return ok;
}

/* RFC 5280 path length: intermediates that are not self-issued. OpenSSL's
 * own depth limit counts every certificate, so it is not used for this. */
static int logical_intermediates(STACK_OF(X509) *chain)
{
    int n = 0;
    for (int i = 1; i < sk_X509_num(chain) - 1; i++) {
        X509 *x = sk_X509_value(chain, i);
        if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) != 0)
            n++;
    }
    return n;
}

typedef struct attempt {
    ea_verify_reason reason;
    char detail[384];
    X509 *drop; /* an untrusted certificate of the failed path, worth leaving out */
} attempt;

static X509 *untrusted_in_chain(STACK_OF(X509) *chain, STACK_OF(X509) *untrusted, int from)
{
    for (int d = from < 1 ? 1 : from; d < sk_X509_num(chain); d++)
        for (int i = 0; i < sk_X509_num(untrusted); i++)
            if (sk_X509_value(untrusted, i) == sk_X509_value(chain, d))
                return sk_X509_value(untrusted, i);
    return NULL;
}

/* One X509_verify_cert and our profile over one set of intermediates. */
static ea_err verify_once(X509_STORE *store, X509 *leaf, STACK_OF(X509) *untrusted, const ea_verify_opts *o,
                          unsigned long flags, attempt *a)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_VERIFY_PARAM *param;
    ea_err rc = EA_ERR_INTERNAL;
    int depth = -1;
    const char *why = NULL;

    a->reason = EA_VERIFY_OTHER;
    a->drop = NULL;
    a->detail[0] = '\0';
    if (!ctx || !X509_STORE_CTX_init(ctx, store, leaf, untrusted))
        goto out;
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
    param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(param, flags);
    if (!X509_STORE_CTX_set_purpose(ctx, o->role == EA_VERIFY_SERVER ? X509_PURPOSE_SSL_SERVER
                                                                     : X509_PURPOSE_SSL_CLIENT))
        goto out;
    if (o->at)
        X509_VERIFY_PARAM_set_time(param, o->at);
    if (o->role == EA_VERIFY_SERVER) {
        /* Names come from the SAN only: the subject CN is never a host name. */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                   X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        if (o->peer_dns && !X509_VERIFY_PARAM_set1_host(param, o->peer_dns, 0)) {
            set_detail(a->detail, sizeof a->detail, "the expected DNS name is not valid", -1, NULL);
            rc = EA_ERR_ARG;
            goto out;
        }
        if (o->peer_ip && !X509_VERIFY_PARAM_set1_ip_asc(param, o->peer_ip)) {
            set_detail(a->detail, sizeof a->detail, "the expected IP address is not valid", -1, NULL);
            rc = EA_ERR_ARG;
            goto out;
        }
    }

    ERR_set_mark();
    int ok = X509_verify_cert(ctx);
    ERR_pop_to_mark();
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    if (ok != 1) {
        int code = X509_STORE_CTX_get_error(ctx);
        if (code == X509_V_OK) { /* an internal failure, not a verdict */
            set_detail(a->detail, sizeof a->detail, "verification could not run", -1, NULL);
            goto out;
        }
        int ed = X509_STORE_CTX_get_error_depth(ctx);
        a->reason = map_error(code);
        set_detail(a->detail, sizeof a->detail, X509_verify_cert_error_string(code), ed,
                   X509_STORE_CTX_get_current_cert(ctx));
        if (chain && untrusted)
            a->drop = untrusted_in_chain(chain, untrusted, ed);
        rc = EA_ERR_AUTH;
        goto out;
    }
    if (!profile_ok(chain, o->role, &depth, &why, &a->reason)) {
        set_detail(a->detail, sizeof a->detail, why, depth, sk_X509_value(chain, depth));
        if (untrusted)
            a->drop = untrusted_in_chain(chain, untrusted, depth);
        rc = EA_ERR_AUTH;
        goto out;
    }
    if (o->max_depth > 0 && logical_intermediates(chain) > o->max_depth) {
        a->reason = EA_VERIFY_POLICY;
        snprintf(a->detail, sizeof a->detail, "%d intermediates, more than max_depth %d", logical_intermediates(chain),
                 o->max_depth);
        rc = EA_ERR_AUTH;
        goto out;
    }
    a->reason = EA_VERIFY_OK;
    rc = EA_OK;
out:
    X509_STORE_CTX_free(ctx);
    return rc;
}

/* OpenSSL builds one path and does not backtrack: when that path fails on an
 * intermediate the peer offered, we try again without it, a few times.
 * Leaving certificates out can only remove paths, so any success is a path
 * OpenSSL itself accepts; a failure reports the first path's reason. */
#define MAX_RETRIES 4

ea_err ea_pki_verify_chain(X509 *leaf, const ea_verify_opts *o, ea_verify_reason *reason, char *detail,
                           size_t detail_len)
{
    X509_STORE *store = NULL;
    STACK_OF(X509) *untrusted = NULL;
    attempt first = { .reason = EA_VERIFY_OTHER }, a;
    ea_err rc = EA_ERR_INTERNAL, first_rc = EA_ERR_INTERNAL;
    unsigned long flags = X509_V_FLAG_X509_STRICT;

    if (reason)
        *reason = EA_VERIFY_OTHER;
    if (detail && detail_len)
        detail[0] = '\0';
    if (!leaf || !o || !o->trusted || sk_X509_num(o->trusted) == 0 ||
        (o->role != EA_VERIFY_CLIENT && o->role != EA_VERIFY_SERVER)) {
        set_detail(detail, detail_len, "no leaf, or no trust anchor", -1, NULL);
        return EA_ERR_ARG;
    }
    if (!(store = X509_STORE_new()))
        goto out;
    for (int i = 0; i < sk_X509_num(o->trusted); i++)
        if (!X509_STORE_add_cert(store, sk_X509_value(o->trusted, i)))
            goto out;
    if (o->crls) {
        for (int i = 0; i < sk_X509_CRL_num(o->crls); i++)
            if (!X509_STORE_add_crl(store, sk_X509_CRL_value(o->crls, i)))
                goto out;
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    }
    if (o->untrusted && !(untrusted = sk_X509_dup(o->untrusted)))
        goto out;
    for (int n = 0; n <= MAX_RETRIES; n++) {
        rc = verify_once(store, leaf, untrusted, o, flags, &a);
        if (n == 0) {
            first = a;
            first_rc = rc;
        }
        if (rc != EA_ERR_AUTH || !a.drop)
            break;
        (void)sk_X509_delete_ptr(untrusted, a.drop);
    }
    if (rc != EA_OK) {
        rc = first_rc;
        a = first;
    }
out:
    if (rc == EA_ERR_INTERNAL)
        set_detail(detail, detail_len, "out of memory or OpenSSL failure", -1, NULL);
    else if (detail && detail_len && rc != EA_OK)
        snprintf(detail, detail_len, "%s", a.detail);
    if (reason)
        *reason = rc == EA_OK ? EA_VERIFY_OK : rc == EA_ERR_AUTH ? a.reason : EA_VERIFY_OTHER;
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    return rc;
}
