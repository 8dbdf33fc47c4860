/* edgeauth — the OpenSSL 3 provider, in-process.
 *
 * The provider ships as the module edgeauth.so (loaded by name, e.g.
 * `openssl ... -provider default -provider edgeauth` or openssl.cnf), and the
 * same code is linked into libedgeauth so a program can use it without a
 * module file:
 *
 *     OSSL_PROVIDER_load(libctx, "default");         // default first
 *     ea_provider_load(libctx, &prov);               // then edgeauth
 *     OSSL_STORE_open_ex("se05x:0xF0000100?se=unix:/run/se.sock", libctx, ...)
 *
 * The SE is taken from the key's URI (?se=), else EDGEAUTH_SE, else the host
 * library's default (see host.h). Load the default provider first and set
 * no global property query: generic fetches then stay with the default
 * provider and only SE keys come here (docs/PROVIDER.md). */
#ifndef EDGEAUTH_PROVIDER_H
#define EDGEAUTH_PROVIDER_H

#include <openssl/core.h>
#include <openssl/provider.h>

#include "edgeauth/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The provider's init function (what edgeauth.so exports as
 * OSSL_provider_init), for OSSL_PROVIDER_add_builtin. */
int ea_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
                     void **provctx);

/* Register the built-in provider under the name "edgeauth" in libctx (NULL =
 * the default library context) and load it. */
ea_err ea_provider_load(OSSL_LIB_CTX *libctx, OSSL_PROVIDER **out);

/* The provider parameter (openssl.cnf `offload = random,ecdhe,prf`, and
 * OSSL_PROVIDER_get_params) naming the TLS offload parts that are on. */
#define EA_PROVIDER_PARAM_OFFLOAD "offload"

/* Options of the built-in provider, as its openssl.cnf section would give
 * them. Zero-initialise and set what you need. */
typedef struct ea_provider_opts {
    /* TLS offload (docs/PROVIDER.md "TLS offload"): any of "random", "ecdhe",
     * "prf", comma-separated ("all" for the three); NULL or "" = off, then
     * the provider offers no key exchange, KDF or TLS group at all. The
     * offload algorithms win a fetch only under the property query
     * "?edgeauth.offload=yes" (EA_PROVIDER_OFFLOAD_PROPQ). */
    const char *offload;
    /* The SE the provider uses when nothing names one (the `se` of its
     * openssl.cnf section): ephemeral ECDHE keys, the RNG, KDF secrets and
     * se05x: URIs without ?se=. NULL: EDGEAUTH_SE or the host library's
     * default. Set it to the SE that holds the key, or the offload work goes
     * to another chip. */
    const char *se;
} ea_provider_opts;

#define EA_PROVIDER_OFFLOAD_PROPQ "?edgeauth.offload=yes"

/* ea_provider_load with options (opts NULL = none, as ea_provider_load).
 * EA_ERR_ARG for an unknown offload word; EA_ERR_CONDITIONS when the provider
 * is already loaded in libctx with another offload set (its algorithms are
 * fixed at load). */
ea_err ea_provider_load_ex(OSSL_LIB_CTX *libctx, const ea_provider_opts *opts, OSSL_PROVIDER **out);

#ifdef __cplusplus
}
#endif
#endif
