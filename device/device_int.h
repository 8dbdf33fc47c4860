/* Internal: the device agent's state, shared by agent.c (MQTT, reconnects,
 * telemetry), tls.c (the TLS context: SE objects, provider key, server
 * verification, session resumption) and trace.c (handshake timings). */
#ifndef EA_DEVICE_INT_H
#define EA_DEVICE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "device/agent.h"
#include "edgeauth/pki.h"

struct mosquitto;

#define DEV_URI_MAX 1024u
#define DEV_HOST_MAX 256u
#define DEV_ID_MAX 65u      /* 64 characters + NUL */
#define DEV_TOPIC_MAX 128u
#define DEV_MSG_MAX 256u    /* one telemetry payload */
#define DEV_DETAIL_MAX 512u
#define DEV_TRACE_EVENTS 48u

/* Boundary kinds beyond the TLS handshake message types (0..255). */
#define DEV_EV_DONE 0x100 /* SSL_CB_HANDSHAKE_DONE */
#define DEV_EV_ALERT 0x101

typedef struct dev_event {
    uint64_t t_ns; /* CLOCK_MONOTONIC */
    bool tx;       /* sent by us */
    int type;      /* handshake message type, or DEV_EV_* */
    int detail;    /* alert: level << 8 | description */
} dev_event;

/* One handshake, from SSL_CB_HANDSHAKE_START to DONE (or failure). */
typedef struct dev_trace {
    uint64_t attempt_ns;  /* when the TCP connect began */
    uint64_t start_ns;    /* SSL_CB_HANDSHAKE_START; 0 = not started */
    uint64_t done_ns;     /* SSL_CB_HANDSHAKE_DONE; 0 = not done */
    size_t n;
    dev_event ev[DEV_TRACE_EVENTS];
    uint8_t client_random[32];
    bool have_random;
    bool offered_session; /* a saved session was set on this connection */
    bool verified;        /* the verify callback ran */
    uint64_t verify_ns;   /* time inside ea_pki_verify_chain */
    ea_verify_reason verify_reason;
    char verify_detail[DEV_DETAIL_MAX];
    char peer_subject[256];
    char local_error[DEV_DETAIL_MAX]; /* why we aborted (the first OpenSSL error, with its data) */
    bool reported;        /* the report for this handshake was printed */
} dev_trace;

/* A telemetry payload waiting for the session. */
typedef struct dev_msg {
    unsigned long seq;
    size_t len;
    char body[DEV_MSG_MAX];
} dev_msg;

#define DEV_INFLIGHT 20u /* libmosquitto's own default in-flight window */

/* mid -> seq for the messages libmosquitto holds, to name them on PUBACK. */
typedef struct dev_inflight {
    int mid; /* 0 = free */
    unsigned long seq;
} dev_inflight;

/* --tls-offload parts (the provider checked the words). */
#define EA_AGENT_OFFLOAD_RANDOM 0x1u
#define EA_AGENT_OFFLOAD_ECDHE 0x2u
#define EA_AGENT_OFFLOAD_PRF 0x4u

struct ea_agent {
    ea_agent_opts o;
    unsigned offload; /* EA_AGENT_OFFLOAD_* */
    FILE *out, *err;
    char se_uri[DEV_URI_MAX];       /* resolved: never NULL or "" */
    char host[DEV_HOST_MAX];
    int port;
    char peer_name[DEV_HOST_MAX];   /* what the server certificate must name */
    bool peer_is_ip;
    char device_id[DEV_ID_MAX];
    char topic_telemetry[DEV_TOPIC_MAX];
    char topic_commands[DEV_TOPIC_MAX];

    /* TLS (tls.c) */
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *prov_default, *prov_ea;
    SSL_CTX *ctx;
    EVP_PKEY *key;
    X509 *cert;
    X509 *intermediate;
    STACK_OF(X509) *trusted;
    SSL_SESSION *session;  /* the last session the server gave us */
    bool refused;          /* ea_pki_verify_chain said no: do not retry */
    char refusal[DEV_DETAIL_MAX];
    dev_trace tr;
    unsigned long hs_count;
    bool tls13;            /* the last completed handshake was TLS 1.3 */

    /* MQTT (agent.c) */
    struct mosquitto *mosq;
    bool mosq_lib;            /* mosquitto_lib_init done */
    bool mosq_connected_once; /* mosquitto_connect done; later attempts use reconnect */
    bool link_up;             /* a socket exists (handshake, CONNECT, or session) */
    bool session_up;          /* CONNACK success seen */
    int connack_rc;           /* last CONNACK reason (-1: none on this link) */
    bool disconnected;        /* on_disconnect ran for this link */
    int disconnect_rc;        /* its code: >= 0x80 is the broker's DISCONNECT reason */
    uint64_t connack_ns;
    char last_log[DEV_DETAIL_MAX]; /* error/warning lines of libmosquitto on this link */
    char last_failure[DEV_DETAIL_MAX + 128]; /* why the last attempt or session ended */
    unsigned consecutive_failures;
    uint64_t next_attempt_ns;
    uint64_t next_sample_ns;
    uint64_t start_ns;
    unsigned long seq;        /* samples produced */
    dev_msg *queue;           /* ring of samples not yet handed to libmosquitto */
    size_t q_head, q_len, q_cap;
    unsigned long inflight;   /* handed over, not yet acknowledged */
    dev_inflight inflight_tab[DEV_INFLIGHT];
    ea_agent_stats st;
};

uint64_t ea_agent_now_ns(void);

/* tls.c */
ea_err ea_agent_tls_setup(ea_agent *a, char *err, size_t errlen);
void ea_agent_tls_free(ea_agent *a);
/* The next connection starts: forget the last verdict and trace. */
void ea_agent_tls_new_attempt(ea_agent *a);

/* trace.c */
void ea_agent_trace_event(ea_agent *a, bool tx, int type, int detail);
void ea_agent_trace_random(ea_agent *a, const uint8_t *random32);
/* The handshake finished (ssl non-NULL) or failed (ssl NULL, why set). */
void ea_agent_trace_report(ea_agent *a, const SSL *ssl, const char *why);
/* The MQTT session is up: print the CONNACK time. */
void ea_agent_trace_connack(ea_agent *a);
/* Where the ClientHello random came from, in words. */
void ea_agent_random_source(ea_agent *a, char *out, size_t cap, bool *from_se);

/* agent.c: output helpers. */
void ea_agent_say(ea_agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ea_agent_json_str(FILE *f, const char *s);

#endif
