/* Internal to the broker plugin (edgeauth_cloud.so): the plugin context and
 * the functions its files share. Nothing outside cloud/ includes this file,
 * and only the plugin's files do (the CLI uses registry.h, audit.h, jail.h).
 *
 *   plugin.c    entry points, options, callback registration, tick, reload
 *   auth.c      MOSQ_EVT_BASIC_AUTH: certificate -> identity -> verdict
 *   acl.c       MOSQ_EVT_ACL_CHECK: the topic jail; MOSQ_EVT_DISCONNECT
 *   trust.c     trust anchors, intermediates and CRLs, reloaded on change
 *   sessions.c  the sessions we accepted, by client pointer
 *   vcache.c    recent chain verdicts, so a reconnect does not re-verify
 *   tlslog.c    TLS refusals, read back from the broker's own log
 */
#ifndef EA_CLOUD_INT_H
#define EA_CLOUD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/x509.h>

#include "cloud/audit.h"
#include "cloud/jail.h"
#include "cloud/registry.h"
#include "edgeauth/pki.h"

struct mosquitto;

#define CLOUD_LOG_PREFIX "edgeauth: "
#define CLOUD_PEER_MAX 64u
#define CLOUD_NAME_MAX 256u /* subject / issuer as printed */

/* ---- trust.c ------------------------------------------------------------- */

/* What identifies one version of a file: a change of any field means the
 * file was rewritten or replaced. */
typedef struct cloud_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool present;
} cloud_stamp;

typedef struct cloud_trust {
    STACK_OF(X509) *roots;       /* trust anchors (plugin_opt_ca_file) */
    STACK_OF(X509) *inters;      /* OEM intermediates (plugin_opt_intermediate_file), may be empty */
    STACK_OF(X509_CRL) *crls;    /* NULL when no CRL file is configured */
    time_t crl_next_update;      /* earliest nextUpdate of the CRLs, 0 = none */
    cloud_stamp st[3];           /* ca, intermediate, crl: as last loaded (or last tried) */
} cloud_trust;

/* Load the files (inter_file and crl_file may be NULL). On failure err
 * says which file and why, and *t is left as it was. */
bool cloud_trust_load(cloud_trust *t, const char *ca_file, const char *inter_file, const char *crl_file, char *err,
                      size_t errlen);
#define CLOUD_TRUST_CA 1u
#define CLOUD_TRUST_INTER 2u
#define CLOUD_TRUST_CRL 4u
/* Which files changed since they were last loaded or tried (CLOUD_TRUST_* bits)? */
unsigned cloud_trust_changes(const cloud_trust *t, const char *ca_file, const char *inter_file, const char *crl_file);
/* Is leaf, or the intermediate of t that issued it, listed in t's CRLs?
 * A cheap pre-filter (no path building) for re-checking live sessions. */
bool cloud_trust_listed(const cloud_trust *t, X509 *leaf);
void cloud_trust_free(cloud_trust *t);
/* ea_pki_verify_chain of a client certificate against t. */
bool cloud_trust_verify(const cloud_trust *t, X509 *leaf, ea_verify_reason *reason, char *detail, size_t detail_len);

/* ---- vcache.c ------------------------------------------------------------- */

typedef struct cloud_vcache {
    struct cloud_vcache_slot {
        uint8_t fpr[32];  /* SHA-256 of the certificate */
        uint64_t gen;     /* trust generation it was verified under (0 = empty) */
        int64_t until_ms; /* CLOCK_MONOTONIC */
    } *slot;
    size_t cap;           /* power of two; 0 = caching off */
    uint64_t hits, misses;
} cloud_vcache;

bool cloud_vcache_init(cloud_vcache *v, size_t cap);
void cloud_vcache_free(cloud_vcache *v);
/* Was this certificate verified valid under generation gen, recently enough? */
bool cloud_vcache_hit(cloud_vcache *v, const uint8_t fpr[32], uint64_t gen, int64_t now_ms);
void cloud_vcache_put(cloud_vcache *v, const uint8_t fpr[32], uint64_t gen, int64_t until_ms);

/* ---- sessions.c ----------------------------------------------------------- */

typedef struct cloud_session {
    const struct mosquitto *client; /* the key: compared, never dereferenced */
    char id[EA_JAIL_ID_MAX + 1];
    char peer[CLOUD_PEER_MAX];
    X509 *cert;                     /* our reference (X509_free on removal) */
    bool backend;
    int64_t since_ms;               /* CLOCK_MONOTONIC */
} cloud_session;

typedef struct cloud_sessions {
    cloud_session *slot; /* open addressing; client NULL = empty, TOMBSTONE = deleted */
    size_t cap, used, live;
} cloud_sessions;

/* Insert or replace the session of s->client (takes s->cert). */
bool cloud_sessions_put(cloud_sessions *t, const cloud_session *s);
cloud_session *cloud_sessions_get(cloud_sessions *t, const struct mosquitto *client);
/* Remove (frees the cert). */
void cloud_sessions_del(cloud_sessions *t, cloud_session *s);
/* The live session whose id is id, or NULL (a linear walk: for revocations). */
cloud_session *cloud_sessions_find_id(cloud_sessions *t, const char *id);
/* Walk: *i starts at 0; NULL at the end. */
cloud_session *cloud_sessions_next(cloud_sessions *t, size_t *i);
void cloud_sessions_free(cloud_sessions *t);

/* ---- tlslog.c ------------------------------------------------------------ */

typedef struct cloud_tlslog {
    char *path;
    int fd;            /* -1 until the log exists */
    off_t off;         /* bytes consumed */
    ino_t ino;
    char part[1024];   /* an incomplete last line */
    size_t part_len;
    bool part_skip;    /* the current line is too long: drop it */
    /* OpenSSL errors seen and not yet attributed to a connection */
    char errors[512];
    char from[CLOUD_PEER_MAX]; /* peer named by "Client connection from X failed" */
    bool pending;
} cloud_tlslog;

void cloud_tlslog_init(cloud_tlslog *l, const char *path); /* path NULL: disabled */
/* Read what the broker logged since the last call. */
void cloud_tlslog_poll(cloud_tlslog *l);
/* Take the pending TLS failure, if any: its reason token and detail. */
bool cloud_tlslog_take(cloud_tlslog *l, const char **reason, char *detail, size_t detail_len, char *from,
                       size_t from_len);
void cloud_tlslog_free(cloud_tlslog *l);

/* ---- the plugin context ----------------------------------------------------- */

typedef struct cloud_opts {
    char *ca_file, *inter_file, *crl_file; /* trust */
    char *registry, *audit, *broker_log;
    char *backend_file;    /* certificates of backend applications (not jailed to one device) */
    bool auto_register;
    unsigned poll_ms;      /* registry / file poll period */
    unsigned cache_size;   /* verdict cache slots (0 = off) */
    unsigned cache_ttl_s;  /* how long a verdict is reused */
} cloud_opts;

/* A backend application: pinned by its certificate, named by its CN. */
typedef struct cloud_backend {
    char id[EA_JAIL_ID_MAX + 1];
    char fingerprint[EA_REGISTRY_FPR_MAX + 1];
} cloud_backend;

typedef struct cloud_ctx {
    cloud_opts opt;
    cloud_trust trust;
    uint64_t trust_gen;      /* +1 at every successful trust reload (starts at 1) */
    cloud_vcache vcache;     /* chain verdicts under trust_gen */
    ea_registry *reg;
    uint64_t rev_seq;        /* position in the registry's revocation sequence */
    ea_audit *audit;
    cloud_sessions sessions;
    cloud_tlslog tlslog;
    cloud_backend *backend;
    size_t n_backend;
    struct cloud_seen { char id[EA_JAIL_ID_MAX + 1]; int64_t when; } *seen; /* last_seen not yet written */
    size_t n_seen, cap_seen;
    int64_t next_poll_ms, next_flush_ms, next_crl_warn_ms;
    bool rechecking;         /* between MOSQ_EVT_RELOAD and the next tick: BASIC_AUTH re-checks live clients */
} cloud_ctx;

/* auth.c */
int cloud_on_basic_auth(int event, void *event_data, void *userdata);
/* acl.c */
int cloud_on_acl_check(int event, void *event_data, void *userdata);
int cloud_on_disconnect(int event, void *event_data, void *userdata);

/* plugin.c: shared helpers */
int64_t cloud_now_ms(void);           /* CLOCK_MONOTONIC */
/* Is id the name of a backend application? */
bool cloud_is_backend(const cloud_ctx *c, const char *id);
/* Is this certificate (its SHA-256 fingerprint) a pinned backend certificate? */
bool cloud_is_backend_cert(const cloud_ctx *c, const char *fingerprint);
/* Queue a last_seen update (written on a later tick). */
void cloud_seen(cloud_ctx *c, const char *id);
/* Certificate facts for events (each "" when absent). */
typedef struct cloud_certinfo {
    char subject[CLOUD_NAME_MAX], issuer[CLOUD_NAME_MAX];
    char serial[EA_REGISTRY_SERIAL_MAX + 1], fingerprint[EA_REGISTRY_FPR_MAX + 1];
    uint8_t digest[32]; /* the fingerprint's bytes */
} cloud_certinfo;
void cloud_certinfo_get(X509 *x, cloud_certinfo *ci);
/* Start an audit line with the fields every client event has. */
void cloud_event_begin(ea_audit_line *l, const char *event, const char *result, const char *reason,
                       const struct mosquitto *client, const char *peer);
void cloud_event_cert(ea_audit_line *l, const cloud_certinfo *ci);
void cloud_emit(cloud_ctx *c, ea_audit_line *l);

#endif
