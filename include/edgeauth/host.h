/* edgeauth — host library: drive an SE05x (emulated or real) through one API.
 *
 * A session (ea_host) is opened on a URI that selects the transport:
 *   emu:DIR                 the emulator in-process (the embedded default)
 *   tcp://HOST:PORT         JRCP_v1 over TCP (edgeauth-se serve, NXP JRCP_v1 servers)
 *   unix:PATH               JRCP_v1 over a Unix socket
 *   t1-tcp://HOST:PORT      T=1 over I2C frames (UM11225) carried over TCP
 *   i2c:/dev/i2c-N[@0xADDR] T=1 over I2C on Linux i2c-dev (default address 0x48)
 * With uri NULL the environment variable EDGEAUTH_SE is used; without it,
 * emu: on a per-user state directory ($XDG_DATA_HOME/edgeauth/se or
 * ~/.local/share/edgeauth/se), created with a new chip on first use.
 *
 * Platform SCP03 (spec se05x-apdu.md §7): append ?scp03=KEYS to any URI, or
 * set EDGEAUTH_SE_SCP03=KEYS, where KEYS is a key file ("ENC <hex>",
 * "MAC <hex>", "DEK <hex>", mode 0600, as written by edgeauth-se init
 * --scp03-keys-out) or default:VARIANT (NXP's published keys). The session
 * then authenticates the chip after SELECT (and again after every
 * reconnect) and wraps every command (C-MAC + C-DEC) and response (R-MAC +
 * R-ENC). A response that fails its MAC, or a broken counter, ends the
 * channel with EA_ERR_AUTH: unauthenticated data is never returned. The
 * session keys live only in the ea_host and are wiped on close.
 *
 * Every function returns an ea_err. When the secure element answers a status
 * word other than 90 00, the function returns the matching error (6985 ->
 * EA_ERR_CONDITIONS, 6986 -> EA_ERR_DENIED, 6A80 -> EA_ERR_WRONG_DATA,
 * 6A84 -> EA_ERR_FULL, others -> EA_ERR_CARD) and ea_host_last_sw() gives
 * the raw status word; ea_host_last_error() gives a one-line message naming
 * the command, the object and the reason. No message ever contains key
 * material.
 *
 * A session is safe to use from several threads: each exchange holds the
 * session lock. A transport failure (daemon gone, broken socket, timeout)
 * returns EA_ERR_IO / EA_ERR_TIMEOUT; the next call reconnects and selects
 * the applet again. A failed command is never retried automatically (it
 * may not be idempotent).
 *
 * Buffers follow one rule: on entry *out_len is the capacity of out; on
 * EA_OK it is the number of bytes written; on EA_ERR_BUF_TOO_SMALL it is
 * the size needed and out is untouched. */
#ifndef EDGEAUTH_HOST_H
#define EDGEAUTH_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"
#include "edgeauth/se05x.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ea_host ea_host;

typedef struct ea_host_opts {
    int timeout_ms;         /* per exchange; 0 = 10000 */
    const char *scp03_keys; /* Platform SCP03 keys (see above); overrides
                             * ?scp03= and EDGEAUTH_SE_SCP03; NULL: those */
} ea_host_opts;

/* Open a session: connect, reset the link, select the applet. opts may be
 * NULL. On failure *out is NULL and, if errbuf is not NULL, it holds the
 * reason (e.g. "tcp://127.0.0.1:8050: connection refused"). */
ea_err ea_host_open(const char *uri, const ea_host_opts *opts, ea_host **out, char *errbuf,
                    size_t errlen);
/* Close the session (transient objects on the chip are lost). NULL: no-op. */
void ea_host_close(ea_host *h);

const char *ea_host_uri(const ea_host *h);       /* the URI in use */
const char *ea_host_transport(const ea_host *h); /* "emu", "jrcp-tcp", "jrcp-unix", "t1-tcp", "t1-i2c" */
uint16_t ea_host_last_sw(const ea_host *h);      /* 0 when the last failure had no SW */
/* Is the session protected by Platform SCP03? */
bool ea_host_secure(const ea_host *h);
const char *ea_host_last_error(const ea_host *h);

/* The default URI (EDGEAUTH_SE or the per-user emu: directory). */
ea_err ea_host_default_uri(char *out, size_t cap);

/* Watch every APDU of the session: dir 0 = C-APDU sent, 1 = R-APDU
 * received. The bytes are raw: an import carries the key it imports, so a
 * trace must never be enabled where secrets are handled in production. */
typedef void ea_host_trace_fn(void *ctx, int dir, const uint8_t *apdu, size_t len);
void ea_host_set_trace(ea_host *h, ea_host_trace_fn *fn, void *ctx);

/* Raw exchange of one C-APDU (no interpretation of the SW). Under SCP03 the
 * APDU is wrapped and the answer unwrapped like every other command. */
ea_err ea_host_transceive(ea_host *h, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen);

/* ---- policies ---------------------------------------------------------- */
#define EA_POLICY_MAX_RULES 4u
typedef struct ea_policy {
    size_t n;
    struct {
        uint32_t auth_id; /* 0 = everyone / no session */
        uint32_t ar;      /* OR of EA_POL_* */
    } rule[EA_POLICY_MAX_RULES];
} ea_policy;
/* A policy of one rule for everyone. */
ea_policy ea_policy_everyone(uint32_t ar);

/* ---- management ------------------------------------------------------- */
typedef struct ea_se_version {
    uint8_t major, minor, patch;
    uint16_t features;
    uint16_t securebox;
} ea_se_version;
ea_err ea_host_get_version(ea_host *h, ea_se_version *v);
ea_err ea_host_get_random(ea_host *h, uint8_t *out, size_t n);
/* SetPlatformSCPRequest: required = true makes the chip refuse every
 * command outside Platform SCP03 (SELECT and the handshake excepted),
 * persistently; false lifts it. The emulator accepts it only through an
 * SCP03 session (a real SE05x wants the PLATFORM_SCP UserID session). */
ea_err ea_host_set_platform_scp(ea_host *h, bool required);
/* memtype: EA_MEM_PERSISTENT / EA_MEM_TRANSIENT_RESET / EA_MEM_TRANSIENT_DESELECT.
 * 0x7FFF means "at least 32 KiB". */
ea_err ea_host_free_memory(ea_host *h, uint8_t memtype, uint16_t *free_bytes);
ea_err ea_host_get_timestamp(ea_host *h, uint8_t ts[EA_TIMESTAMP_LEN]);
ea_err ea_host_unique_id(ea_host *h, uint8_t uid[EA_UNIQUE_ID_LEN]);
ea_err ea_host_exists(ea_host *h, uint32_t id, bool *exists);
ea_err ea_host_delete(ea_host *h, uint32_t id);
ea_err ea_host_delete_all(ea_host *h);
/* All ids (paging done here), in the chip's order. filter 0xFF = all types. */
ea_err ea_host_list(ea_host *h, uint8_t filter, uint32_t *ids, size_t *n);
ea_err ea_host_read_type(ea_host *h, uint32_t id, uint8_t *type, bool *transient);
ea_err ea_host_read_size(ea_host *h, uint32_t id, uint16_t *size);

/* ---- objects ---------------------------------------------------------- */
/* Generate an EC key pair inside the chip. policy NULL = the chip's default. */
ea_err ea_host_ec_generate(ea_host *h, uint32_t id, uint8_t curve, const ea_policy *policy, bool transient);
/* The same for an id the caller knows to be free (no existence probe: one
 * APDU, e.g. an ephemeral ECDHE key per TLS handshake). On an existing
 * object the SE regenerates its key or refuses; never use it on a key that
 * matters. */
ea_err ea_host_ec_generate_new(ea_host *h, uint32_t id, uint8_t curve, const ea_policy *policy, bool transient);
/* Import: priv (raw scalar) and/or pub (04||X||Y); either may be NULL. */
ea_err ea_host_ec_import(ea_host *h, uint32_t id, uint8_t curve, const uint8_t *priv, size_t priv_len,
                         const uint8_t *pub, size_t pub_len, const ea_policy *policy, bool transient);
ea_err ea_host_read_pubkey(ea_host *h, uint32_t id, uint8_t *out, size_t *out_len);
/* kind: EA_P1_AES or EA_P1_HMAC. */
ea_err ea_host_write_symm(ea_host *h, uint32_t id, uint8_t kind, const uint8_t *key, size_t len,
                          const ea_policy *policy, bool transient);
/* The same for an object the caller knows to be new (no existence probe:
 * one APDU less, e.g. per TLS handshake). With a policy, an existing object
 * makes the SE refuse (EA_ERR_CONDITIONS) instead of being overwritten. */
ea_err ea_host_write_symm_new(ea_host *h, uint32_t id, uint8_t kind, const uint8_t *key, size_t len,
                              const ea_policy *policy, bool transient);
/* Create (when absent) or update a binary file with data, in chunks. A new
 * file gets length len. */
ea_err ea_host_write_binary(ea_host *h, uint32_t id, const uint8_t *data, size_t len,
                            const ea_policy *policy);
/* Read a whole binary file (chunked), or a public key. */
ea_err ea_host_read_object(ea_host *h, uint32_t id, uint8_t *out, size_t *out_len);

/* ---- crypto ------------------------------------------------------------ */
/* algo: EA_SIG_ECDSA_SHA256 / _SHA384 ...; digest length must match. sig is DER. */
ea_err ea_host_ecdsa_sign(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *digest, size_t dlen,
                          uint8_t *sig, size_t *sig_len);
ea_err ea_host_ecdsa_verify(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *digest, size_t dlen,
                            const uint8_t *sig, size_t sig_len, bool *valid);
/* ECDH: the shared x coordinate returned, or (target != 0) stored in the
 * HMAC key object target (then out may be NULL). */
ea_err ea_host_ecdh(ea_host *h, uint32_t id, const uint8_t *peer, size_t peer_len, uint32_t target,
                    uint8_t *out, size_t *out_len);
ea_err ea_host_digest(ea_host *h, uint8_t mode, const uint8_t *data, size_t len, uint8_t *out,
                      size_t *out_len);
typedef struct ea_hkdf_args {
    uint32_t ikm_id;   /* HMAC key object holding the IKM (the PRK for expand-only) */
    uint8_t digest;    /* EA_DIGEST_SHA256 ... */
    bool expand_only;
    const uint8_t *salt; /* or the IV for expand-only; <= 64 bytes */
    size_t salt_len;
    uint32_t salt_id;  /* salt from an HMAC key object instead (0 = none) */
    const uint8_t *info; /* <= 80 bytes */
    size_t info_len;
    uint32_t target;   /* store the output in this HMAC key (0 = return it) */
} ea_hkdf_args;
ea_err ea_host_hkdf(ea_host *h, const ea_hkdf_args *a, uint8_t *out, size_t len);
ea_err ea_host_tls_random(ea_host *h, uint8_t out[32]);
/* TLSCalculatePreMasterSecret into HMAC key target (psk_id/kp_id 0 = unused). */
ea_err ea_host_tls_pms(ea_host *h, uint32_t psk_id, uint32_t kp_id, uint32_t target,
                       const uint8_t *peer, size_t peer_len);
/* TLSPerformPRF; p2 = EA_P2_TLS_PRF_*; random is 32 bytes (64 for BOTH). */
ea_err ea_host_tls_prf(ea_host *h, uint8_t p2, uint32_t secret_id, uint8_t digest, const char *label,
                       const uint8_t *random, size_t random_len, uint8_t *out, size_t len);
/* mode: EA_CIPHER_AES_*; iv NULL for ECB. out holds len bytes. */
ea_err ea_host_cipher(ea_host *h, uint32_t id, uint8_t mode, bool encrypt, const uint8_t *iv,
                      const uint8_t *in, size_t len, uint8_t *out);
ea_err ea_host_mac(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *data, size_t len, uint8_t *tag,
                   size_t *tag_len);
ea_err ea_host_mac_verify(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *data, size_t len,
                          const uint8_t *tag, size_t tag_len, bool *valid);

/* ---- attestation ------------------------------------------------------- */
/* An attested read (applet 7.2 layout). The pointers point into buf. */
typedef struct ea_attestation {
    uint8_t buf[2048];
    const uint8_t *data; size_t data_len;   /* absent (NULL) when not readable */
    const uint8_t *uid; size_t uid_len;
    const uint8_t *attrs; size_t attrs_len;
    uint16_t size;
    const uint8_t *timestamp; size_t timestamp_len;
    const uint8_t *sig; size_t sig_len;
    uint8_t apdu_hash[32];   /* SHA-256 of the C-APDU without Le */
    uint8_t signed_hash[64]; /* hash of what the signature covers */
    size_t signed_hash_len;
    uint8_t algo;
} ea_attestation;
ea_err ea_host_read_attested(ea_host *h, uint32_t id, uint32_t attest_key, uint8_t algo,
                             const uint8_t freshness[EA_FRESHNESS_LEN], ea_attestation *out);

#ifdef __cplusplus
}
#endif
#endif
