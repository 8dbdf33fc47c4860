/* edgeauth — the device agent: an MQTT client whose TLS key stays in the SE.
 *
 * The agent is the device half of figure 1 of AN12400. It reads its
 * certificate and chain from the secure element (0xF0000101 device
 * certificate, 0x7B000101 OEM intermediate, 0x7B000102 root), builds its own
 * SSL_CTX in its own OSSL_LIB_CTX (default provider first, then edgeauth),
 * takes the private key 0xF0000100 through the provider's se05x: store, and
 * hands the context to libmosquitto with MOSQ_OPT_SSL_CTX and
 * MOSQ_OPT_SSL_CTX_WITH_DEFAULTS = 0. libmosquitto then checks nothing about
 * the server, so the agent does: ea_pki_verify_chain (role SERVER, host name
 * or IP) runs as the context's certificate verification callback.
 *
 * Then it publishes telemetry to devices/<id>/telemetry (QoS 1), listens on
 * devices/<id>/commands (QoS 1), reconnects with capped exponential backoff
 * and jitter, and resumes the last TLS session on each reconnect.
 *
 * Usage: ea_agent_new (reads the SE, builds the TLS context; nothing goes on
 * the network), ea_agent_run (until count messages are acknowledged, *stop
 * becomes non-zero, or a fatal error), ea_agent_free. One agent per thread;
 * the agent is not safe to share between threads. docs/DEVICE.md has the
 * whole story. */
#ifndef EA_DEVICE_AGENT_H
#define EA_DEVICE_AGENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "edgeauth/err.h"

#define EA_AGENT_KEY_ID 0xF0000100u
#define EA_AGENT_CERT_ID 0xF0000101u
#define EA_AGENT_INTERMEDIATE_ID 0x7B000101u
#define EA_AGENT_ROOT_ID 0x7B000102u

typedef struct ea_agent ea_agent;

typedef struct ea_agent_opts {
    const char *se_uri;      /* the SE; NULL = EDGEAUTH_SE, else the host library default */
    const char *broker;      /* "mqtts://HOST[:PORT]" (port 8883 by default); required */
    const char *device_id;   /* NULL = the CN of the device certificate; else must equal it */
    const char *ca_file;     /* PEM trust anchors; NULL = the root certificate in the SE */
    const char *server_name; /* expected DNS name or IP of the cloud; NULL = the broker host */
    int tls_version;         /* 0 = TLS 1.2 and 1.3; TLS1_2_VERSION or TLS1_3_VERSION to pin one */
    const char *tls_offload; /* "random,ecdhe,prf" or a subset (docs/DEVICE.md); NULL/"" = the SE only signs */
    unsigned interval_ms;    /* between telemetry messages; 0 = 1000 */
    unsigned long count;     /* messages to publish (and see acknowledged), then return; 0 = forever */
    unsigned retry_min_ms;   /* first reconnect delay; 0 = 500 */
    unsigned retry_max_ms;   /* cap of the backoff; 0 = 30000 */
    unsigned max_attempts;   /* consecutive failed connection attempts before giving up; 0 = never */
    unsigned keepalive_s;    /* MQTT keepalive; 0 = 60 */
    unsigned queue_max;      /* unacknowledged messages kept while offline; 0 = 1000 */
    bool no_resume;          /* always a full handshake (never offer the saved session) */
    bool trace;              /* print the handshake phases with their timings */
    bool json;               /* one JSON object per line instead of text */
    FILE *out;               /* events and trace; NULL = stdout */
    FILE *err;               /* failures; NULL = stderr */
    const volatile sig_atomic_t *stop; /* polled about every 100 ms; may be NULL */
} ea_agent_opts;

/* What happened so far (for tests and benchmarks). */
typedef struct ea_agent_stats {
    unsigned long attempts;         /* connection attempts */
    unsigned long failures;         /* attempts or sessions that ended in an error */
    unsigned long handshakes;       /* completed TLS handshakes */
    unsigned long resumed;          /* ... of which resumed a previous session */
    unsigned long connacks;         /* accepted MQTT sessions */
    unsigned long published;        /* telemetry messages handed to the client library */
    unsigned long acked;            /* ... acknowledged by the broker (PUBACK) */
    unsigned long denied;           /* ... acknowledged with a failure reason code */
    unsigned long dropped;          /* samples not queued because the offline queue was full */
    unsigned long commands;         /* messages received on devices/<id>/commands */
    double last_handshake_ms;       /* duration of the last completed handshake */
    double last_sign_ms;            /* SE CertificateVerify interval of the last full handshake */
} ea_agent_stats;

/* Read the certificates from the SE, load the key through the provider,
 * build the TLS context and the MQTT client. Nothing is sent to the broker.
 * On failure *out is NULL and err says what is missing (e.g. "no device
 * certificate in the SE (object 0xF0000101): run `edgeauth provision`
 * first"). Errors: EA_ERR_ARG (options), EA_ERR_IO / EA_ERR_TIMEOUT (SE
 * unreachable), EA_ERR_NOT_FOUND (object missing), EA_ERR_AUTH (the
 * certificate does not match the key, or the device id does not match the
 * CN), EA_ERR_CRYPTO, EA_ERR_NO_MEMORY. */
ea_err ea_agent_new(const ea_agent_opts *opts, ea_agent **out, char *err, size_t errlen);

/* Connect and run. Returns EA_OK when count messages were acknowledged or
 * *stop was set (after a clean MQTT disconnect). A broker that cannot be
 * reached or that drops the session is retried with backoff forever, or
 * max_attempts times in a row; then EA_ERR_IO. A server certificate refused
 * by ea_pki_verify_chain is not retried: EA_ERR_AUTH with the reason in err
 * ("server certificate refused: name_mismatch: ..."). */
ea_err ea_agent_run(ea_agent *a, char *err, size_t errlen);

/* Free everything (the TLS session, the context, the provider). NULL: no-op. */
void ea_agent_free(ea_agent *a);

void ea_agent_get_stats(const ea_agent *a, ea_agent_stats *out);
const char *ea_agent_device_id(const ea_agent *a);
/* The TLS context built by ea_agent_new (borrowed; valid until ea_agent_free),
 * for benchmarks that drive handshakes themselves. */
SSL_CTX *ea_agent_ssl_ctx(const ea_agent *a);

#endif
