/* edgeauth_cloud.so: the Mosquitto 2.0 (plugin API v5) plugin of the OEM
 * cloud. Entry points, options, callback registration, and the periodic
 * work done on MOSQ_EVT_TICK: live revocation, trust reload, last_seen.
 *
 *   plugin edgeauth_cloud.so
 *   plugin_opt_ca_file           trust anchors (PEM)                    required
 *   plugin_opt_intermediate_file OEM intermediate(s) (PEM)
 *   plugin_opt_crl_file          CRLs of every CA in the chain (PEM)
 *   plugin_opt_registry          the device registry (SQLite)          required
 *   plugin_opt_audit_file        JSON-line audit events
 *   plugin_opt_broker_log        the broker's log_dest file (TLS refusals)
 *   plugin_opt_backend_file      certificates of backend applications (PEM)
 *   plugin_opt_auto_register     true|false (default false)
 *   plugin_opt_poll_ms           10..1000 (default 50)
 *   plugin_opt_verify_cache      verdict cache slots, 0 = off (default 16384)
 *   plugin_opt_verify_cache_ttl  seconds a verdict is reused (default 60)
 *
 * MOSQ_EVT_TICK is only delivered when per_listener_settings is false
 * (plugin.c of Mosquitto 2.0.11: "FIXME - iterate over all listeners"), and
 * the broker's loop wakes at least every 100 ms (epoll_wait timeout), so a
 * revocation written to the registry is acted on within about
 * poll_ms + 100 ms. docs/CLOUD.md has the measurements. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "cloud/cloud_int.h"

#define EXPORT __attribute__((visibility("default")))

#define POLL_MS_DEFAULT 50u
#define FLUSH_MS 1000
#define CRL_CHECK_MS 60000
#define CRL_WARN_EVERY_MS (3600 * 1000)
#define CRL_WARN_AHEAD_S (7 * 24 * 3600)
#define SEEN_MAX 65536u
#define CACHE_SIZE_DEFAULT 16384u /* ~0.8 MB */
#define CACHE_TTL_DEFAULT_S 60u

/* The broker gives us this id at init and needs it back at cleanup; the
 * plugin API has nowhere else to keep it. The only file-scope variable in
 * cloud/. */
static mosquitto_plugin_id_t *plugin_id;

static int on_tick(int event, void *event_data, void *userdata);
static int on_reload(int event, void *event_data, void *userdata);

static const struct callback {
    int event;
    MOSQ_FUNC_generic_callback fn;
} callbacks[] = {
    { MOSQ_EVT_BASIC_AUTH, cloud_on_basic_auth },
    { MOSQ_EVT_ACL_CHECK, cloud_on_acl_check },
    { MOSQ_EVT_DISCONNECT, cloud_on_disconnect },
    { MOSQ_EVT_TICK, on_tick },
    { MOSQ_EVT_RELOAD, on_reload },
};

/* ---- helpers shared by the plugin's files ---------------------------------- */

int64_t cloud_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool cloud_is_backend(const cloud_ctx *c, const char *id)
{
    for (size_t i = 0; id && i < c->n_backend; i++)
        if (!strcmp(c->backend[i].id, id))
            return true;
    return false;
}

bool cloud_is_backend_cert(const cloud_ctx *c, const char *fingerprint)
{
    for (size_t i = 0; fingerprint && i < c->n_backend; i++)
        if (!strcasecmp(c->backend[i].fingerprint, fingerprint))
            return true;
    return false;
}

void cloud_seen(cloud_ctx *c, const char *id)
{
    if (c->n_seen == c->cap_seen) {
        size_t cap = c->cap_seen ? c->cap_seen * 2 : 64;
        void *n = cap <= SEEN_MAX ? realloc(c->seen, cap * sizeof *c->seen) : NULL;
        if (!n)
            return; /* last_seen is informative: losing one under pressure is fine */
        c->seen = n;
        c->cap_seen = cap;
    }
    snprintf(c->seen[c->n_seen].id, sizeof c->seen[c->n_seen].id, "%s", id);
    c->seen[c->n_seen].when = (int64_t)time(NULL);
    c->n_seen++;
}

static void name_of(const X509_NAME *nm, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n;

    out[0] = '\0';
    /* RFC 2253 with non-ASCII escaped: one printable line. */
    if (b && X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253) >= 0 && (n = BIO_read(b, out, (int)cap - 1)) > 0)
        out[n] = '\0';
    BIO_free(b);
}

void cloud_certinfo_get(X509 *x, cloud_certinfo *ci)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    BIGNUM *bn;
    char *hex;

    memset(ci, 0, sizeof *ci);
    if (!x)
        return;
    name_of(X509_get_subject_name(x), ci->subject, sizeof ci->subject);
    name_of(X509_get_issuer_name(x), ci->issuer, sizeof ci->issuer);
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) && (hex = BN_bn2hex(bn))) {
        snprintf(ci->serial, sizeof ci->serial, "%s", hex);
        OPENSSL_free(hex);
    }
    BN_free(bn);
    if (X509_digest(x, EVP_sha256(), md, &n) == 1 && n == 32) {
        static const char digits[] = "0123456789abcdef";
        memcpy(ci->digest, md, 32);
        for (unsigned i = 0; i < n; i++) {
            ci->fingerprint[2 * i] = digits[md[i] >> 4];
            ci->fingerprint[2 * i + 1] = digits[md[i] & 15];
        }
        ci->fingerprint[2 * n] = '\0';
    }
}

static const char *protocol_name(const struct mosquitto *client)
{
    switch (mosquitto_client_protocol_version(client)) {
    case 3: return "mqtt31";
    case 4: return "mqtt311";
    case 5: return "mqtt5";
    default: return NULL;
    }
}

void cloud_event_begin(ea_audit_line *l, const char *event, const char *result, const char *reason,
                       const struct mosquitto *client, const char *peer)
{
    ea_audit_begin(l, event);
    ea_audit_str(l, "result", result);
    ea_audit_str(l, "reason", reason);
    ea_audit_str(l, "peer", peer ? peer : client ? mosquitto_client_address(client) : NULL);
    if (client) {
        ea_audit_str(l, "client_id", mosquitto_client_id(client));
        ea_audit_str(l, "protocol", protocol_name(client));
    }
}

void cloud_event_cert(ea_audit_line *l, const cloud_certinfo *ci)
{
    ea_audit_str(l, "serial", ci->serial[0] ? ci->serial : NULL);
    ea_audit_str(l, "issuer", ci->issuer[0] ? ci->issuer : NULL);
    ea_audit_str(l, "subject", ci->subject[0] ? ci->subject : NULL);
    ea_audit_str(l, "fingerprint", ci->fingerprint[0] ? ci->fingerprint : NULL);
}

void cloud_emit(cloud_ctx *c, ea_audit_line *l)
{
    if (c->audit && ea_audit_write(c->audit, l) != EA_OK)
        mosquitto_log_printf(MOSQ_LOG_WARNING, CLOUD_LOG_PREFIX "cannot append to %s: %s", c->opt.audit,
                             strerror(errno));
}

static void plugin_event(cloud_ctx *c, const char *event, const char *result, const char *detail)
{
    ea_audit_line l;

    ea_audit_begin(&l, event);
    ea_audit_str(&l, "result", result);
    if (detail)
        ea_audit_str(&l, "detail", detail);
    cloud_emit(c, &l);
}

/* ---- options ---------------------------------------------------------------- */

static bool set_str(char **dst, const char *v)
{
    free(*dst);
    return (*dst = strdup(v)) != NULL;
}

static bool parse_num(const char *k, const char *v, unsigned long min, unsigned long max, unsigned *out, char *err,
                      size_t errlen)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);

    if (!*v || *v == '-' || *end || x < min || x > max) {
        snprintf(err, errlen, "plugin_opt_%s: %lu to %lu, not '%.32s'", k, min, max, v);
        return false;
    }
    *out = (unsigned)x;
    return true;
}

static bool parse_opts(cloud_opts *o, struct mosquitto_opt *opts, int n, char *err, size_t errlen)
{
    o->poll_ms = POLL_MS_DEFAULT;
    o->cache_size = CACHE_SIZE_DEFAULT;
    o->cache_ttl_s = CACHE_TTL_DEFAULT_S;
    for (int i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].value ? opts[i].value : "";
        bool ok = true;

        if (!strcmp(k, "ca_file"))
            ok = set_str(&o->ca_file, v);
        else if (!strcmp(k, "intermediate_file"))
            ok = set_str(&o->inter_file, v);
        else if (!strcmp(k, "crl_file"))
            ok = set_str(&o->crl_file, v);
        else if (!strcmp(k, "registry"))
            ok = set_str(&o->registry, v);
        else if (!strcmp(k, "audit_file"))
            ok = set_str(&o->audit, v);
        else if (!strcmp(k, "broker_log"))
            ok = set_str(&o->broker_log, v);
        else if (!strcmp(k, "backend_file"))
            ok = set_str(&o->backend_file, v);
        else if (!strcmp(k, "auto_register")) {
            if (!strcmp(v, "true"))
                o->auto_register = true;
            else if (!strcmp(v, "false"))
                o->auto_register = false;
            else {
                snprintf(err, errlen, "plugin_opt_auto_register: true or false, not '%.32s'", v);
                return false;
            }
        } else if (!strcmp(k, "poll_ms")) {
            if (!parse_num(k, v, 10, 1000, &o->poll_ms, err, errlen))
                return false;
        } else if (!strcmp(k, "verify_cache")) {
            if (!parse_num(k, v, 0, 1u << 24, &o->cache_size, err, errlen))
                return false;
        } else if (!strcmp(k, "verify_cache_ttl")) {
            if (!parse_num(k, v, 1, 86400, &o->cache_ttl_s, err, errlen))
                return false;
        } else {
            /* A misspelt option (crlfile for crl_file) must not silently
             * turn a check off: refuse to start. */
            snprintf(err, errlen, "unknown option plugin_opt_%.64s", k);
            return false;
        }
        if (!ok) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
    }
    if (!o->ca_file || !o->registry) {
        snprintf(err, errlen, "plugin_opt_ca_file and plugin_opt_registry are required");
        return false;
    }
    return true;
}

static void free_opts(cloud_opts *o)
{
    free(o->ca_file);
    free(o->inter_file);
    free(o->crl_file);
    free(o->registry);
    free(o->audit);
    free(o->broker_log);
    free(o->backend_file);
    memset(o, 0, sizeof *o);
}

/* The backend certificates: each pinned by fingerprint, named by its CN. */
static bool load_backends(cloud_ctx *c, char *err, size_t errlen)
{
    STACK_OF(X509_INFO) *infos = NULL;
    cloud_backend *list = NULL;
    size_t n = 0;
    BIO *b;

    if (!c->opt.backend_file) {
        free(c->backend);
        c->backend = NULL;
        c->n_backend = 0;
        return true;
    }
    if (!(b = BIO_new_file(c->opt.backend_file, "r")) || !(infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL))) {
        snprintf(err, errlen, "cannot read the backend certificates %s", c->opt.backend_file);
        BIO_free(b);
        return false;
    }
    BIO_free(b);
    if (!(list = calloc((size_t)sk_X509_INFO_num(infos) + 1, sizeof *list)))
        goto oom;
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509 *x = sk_X509_INFO_value(infos, i)->x509;
        const X509_NAME *nm = x ? X509_get_subject_name(x) : NULL;
        int k = nm ? X509_NAME_get_index_by_NID(nm, NID_commonName, -1) : -1;
        const ASN1_STRING *cn = k >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, k)) : NULL;
        cloud_certinfo ci;

        if (!x)
            continue;
        if (!cn || !ea_jail_id_ok((const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn))) {
            snprintf(err, errlen, "%s: certificate %d has no usable CN", c->opt.backend_file, i + 1);
            goto fail;
        }
        cloud_certinfo_get(x, &ci);
        memcpy(list[n].id, ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
        snprintf(list[n].fingerprint, sizeof list[n].fingerprint, "%s", ci.fingerprint);
        n++;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    free(c->backend);
    c->backend = list;
    c->n_backend = n;
    return true;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(list);
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    return false;
}

/* ---- periodic work ------------------------------------------------------------ */

static ea_err kick_revoked(void *ctx, const ea_registry_device *d)
{
    cloud_ctx *c = ctx;
    cloud_session *s = cloud_sessions_find_id(&c->sessions, d->device_id);
    ea_audit_line l;

    if (!s || s->backend)
        return EA_OK;
    cloud_event_begin(&l, "kick", "dropped", "revoked", NULL, s->peer);
    ea_audit_str(&l, "client_id", s->id);
    ea_audit_str(&l, "device_id", s->id);
    ea_audit_str(&l, "detail", "revoked in the registry while connected");
    cloud_emit(c, &l);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, CLOUD_LOG_PREFIX "%s revoked: dropping its session", s->id);
    /* Fires MOSQ_EVT_DISCONNECT at once, which removes s: do not touch it after. */
    mosquitto_kick_client_by_clientid(d->device_id, false);
    return EA_OK;
}

static void poll_registry(cloud_ctx *c)
{
    bool changed = false;

    /* data_version moves only when another process committed: the CLI. */
    if (ea_registry_changed(c->reg, &changed) != EA_OK || !changed)
        return;
    if (ea_registry_revoked_since(c->reg, &c->rev_seq, kick_revoked, c) != EA_OK)
        mosquitto_log_printf(MOSQ_LOG_WARNING, CLOUD_LOG_PREFIX "registry: %s", ea_registry_error(c->reg));
}

/* After new trust material: drop every session that no longer verifies
 * (an intermediate revoked by CRL takes its whole branch with it). When
 * only the CRLs changed, a session is verified again only if its
 * certificate or its intermediate is now listed: a full verification per
 * live session would stall the broker's single thread on a large fleet,
 * and a CRL that is merely broken (a CA missing) should refuse new
 * connections, not drop the whole fleet at once. */
static void reverify_sessions(cloud_ctx *c, bool full)
{
    char (*drop)[EA_JAIL_ID_MAX + 1] = NULL;
    size_t n = 0, i = 0;
    cloud_session *s;

    if (c->sessions.live && !(drop = calloc(c->sessions.live, sizeof *drop)))
        return;
    while ((s = cloud_sessions_next(&c->sessions, &i))) {
        ea_verify_reason r;
        char detail[320];
        ea_audit_line l;
        cloud_certinfo ci;

        if (!full && !cloud_trust_listed(&c->trust, s->cert))
            continue;
        if (cloud_trust_verify(&c->trust, s->cert, &r, detail, sizeof detail))
            continue;
        cloud_certinfo_get(s->cert, &ci);
        cloud_event_begin(&l, "kick", "dropped", ea_verify_reason_str(r), NULL, s->peer);
        ea_audit_str(&l, "client_id", s->id);
        ea_audit_str(&l, "device_id", s->id);
        cloud_event_cert(&l, &ci);
        ea_audit_str(&l, "detail", detail);
        cloud_emit(c, &l);
        mosquitto_log_printf(MOSQ_LOG_NOTICE, CLOUD_LOG_PREFIX "%s no longer verifies (%s): dropping its session",
                             s->id, detail);
        snprintf(drop[n++], sizeof *drop, "%s", s->id);
    }
    /* Kick after the walk: each kick removes an entry from the table. */
    for (size_t k = 0; k < n; k++)
        mosquitto_kick_client_by_clientid(drop[k], false);
    free(drop);
}

/* reverify: 0 none (SIGHUP: the broker re-checks everyone itself), else
 * the CLOUD_TRUST_* bits of the files that changed. */
static void reload_trust(cloud_ctx *c, unsigned reverify)
{
    char err[512];

    if (!cloud_trust_load(&c->trust, c->opt.ca_file, c->opt.inter_file, c->opt.crl_file, err, sizeof err)) {
        mosquitto_log_printf(MOSQ_LOG_WARNING, CLOUD_LOG_PREFIX "keeping the previous trust material: %s", err);
        plugin_event(c, "trust", "failed", err);
        return;
    }
    mosquitto_log_printf(MOSQ_LOG_NOTICE, CLOUD_LOG_PREFIX "trust material reloaded (%d anchor(s), %d intermediate(s), %d CRL(s))",
                         sk_X509_num(c->trust.roots), sk_X509_num(c->trust.inters),
                         c->trust.crls ? sk_X509_CRL_num(c->trust.crls) : 0);
    plugin_event(c, "trust", "reloaded", NULL);
    c->trust_gen++; /* every cached verdict is stale now */
    c->next_crl_warn_ms = 0;
    if (reverify)
        reverify_sessions(c, (reverify & (CLOUD_TRUST_CA | CLOUD_TRUST_INTER)) != 0);
}

/* Spec §6.3: an expired CRL refuses the whole fleet; say so loudly, and
 * early, rather than let it happen silently. */
static void check_crl_age(cloud_ctx *c, int64_t now)
{
    time_t wall = time(NULL), next = c->trust.crl_next_update;
    char msg[160];

    if (!next || now < c->next_crl_warn_ms)
        return;
    c->next_crl_warn_ms = now + CRL_CHECK_MS;
    if (wall < next - CRL_WARN_AHEAD_S)
        return;
    if (wall >= next)
        snprintf(msg, sizeof msg, "a CRL in %s expired %lld s ago: every device is refused until a fresh CRL is installed",
                 c->opt.crl_file, (long long)(wall - next));
    else
        snprintf(msg, sizeof msg, "a CRL in %s expires in %lld h: publish a fresh one", c->opt.crl_file,
                 (long long)((next - wall) / 3600));
    mosquitto_log_printf(MOSQ_LOG_WARNING, CLOUD_LOG_PREFIX "%s", msg);
    plugin_event(c, "crl", wall >= next ? "expired" : "expiring", msg);
    c->next_crl_warn_ms = now + CRL_WARN_EVERY_MS;
}

static void flush_seen(cloud_ctx *c)
{
    ea_registry_seen *v;

    if (!c->n_seen)
        return;
    if (!(v = calloc(c->n_seen, sizeof *v)))
        return;
    for (size_t i = 0; i < c->n_seen; i++)
        v[i] = (ea_registry_seen){ c->seen[i].id, c->seen[i].when };
    /* Busy (the CLI is writing): keep them for the next flush. */
    if (ea_registry_touch(c->reg, v, c->n_seen) == EA_OK)
        c->n_seen = 0;
    free(v);
}

/* TLS refusals that no disconnect claimed (SSL_accept failing at once). */
static void flush_tls_refusals(cloud_ctx *c)
{
    const char *reason;
    char detail[512], from[CLOUD_PEER_MAX];
    ea_audit_line l;

    cloud_tlslog_poll(&c->tlslog);
    while (cloud_tlslog_take(&c->tlslog, &reason, detail, sizeof detail, from, sizeof from)) {
        cloud_event_begin(&l, "connect", "refused", reason, NULL, from[0] ? from : NULL);
        ea_audit_str(&l, "stage", "tls");
        ea_audit_str(&l, "detail", detail);
        cloud_emit(c, &l);
    }
}

static int on_tick(int event, void *event_data, void *userdata)
{
    cloud_ctx *c = userdata;
    int64_t now = cloud_now_ms();

    (void)event;
    (void)event_data; /* 2.0.11 leaves its fields zero */
    c->rechecking = false;
    if (now < c->next_poll_ms)
        return MOSQ_ERR_SUCCESS;
    c->next_poll_ms = now + c->opt.poll_ms;
    poll_registry(c);
    unsigned changed = cloud_trust_changes(&c->trust, c->opt.ca_file, c->opt.inter_file, c->opt.crl_file);
    if (changed)
        reload_trust(c, changed);
    flush_tls_refusals(c);
    check_crl_age(c, now);
    if (now >= c->next_flush_ms) {
        c->next_flush_ms = now + FLUSH_MS;
        flush_seen(c);
    }
    return MOSQ_ERR_SUCCESS;
}

/* SIGHUP. Mosquitto then re-runs BASIC_AUTH for every client
 * (mosquitto_security_apply) before the next tick: auth.c treats those
 * calls as re-checks. */
static int on_reload(int event, void *event_data, void *userdata)
{
    cloud_ctx *c = userdata;
    char err[512];

    (void)event;
    (void)event_data; /* 2.0.11 passes no options on reload */
    c->rechecking = true;
    reload_trust(c, 0);
    if (!load_backends(c, err, sizeof err))
        mosquitto_log_printf(MOSQ_LOG_WARNING, CLOUD_LOG_PREFIX "keeping the previous backends: %s", err);
    if (c->audit)
        (void)ea_audit_reopen(c->audit); /* log rotation */
    /* DEFER lets any other plugin's reload callback run too. */
    return MOSQ_ERR_PLUGIN_DEFER;
}

/* ---- entry points ------------------------------------------------------------- */

static void ctx_free(cloud_ctx *c)
{
    if (!c)
        return;
    if (c->reg)
        flush_seen(c);
    cloud_sessions_free(&c->sessions);
    cloud_trust_free(&c->trust);
    cloud_vcache_free(&c->vcache);
    cloud_tlslog_free(&c->tlslog);
    ea_registry_close(c->reg);
    ea_audit_close(c->audit);
    free(c->seen);
    free(c->backend);
    free_opts(&c->opt);
    free(c);
}

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                                 int option_count)
{
    cloud_ctx *c = calloc(1, sizeof *c);
    char err[512] = "";
    uint64_t seq = 0;
    bool changed;

    if (!c)
        return MOSQ_ERR_NOMEM;
    plugin_id = identifier;
    if (!parse_opts(&c->opt, options, option_count, err, sizeof err))
        goto fail;
    if (!cloud_trust_load(&c->trust, c->opt.ca_file, c->opt.inter_file, c->opt.crl_file, err, sizeof err))
        goto fail;
    c->trust_gen = 1;
    if (c->opt.cache_size && !cloud_vcache_init(&c->vcache, c->opt.cache_size)) {
        snprintf(err, sizeof err, "out of memory for the verdict cache");
        goto fail;
    }
    if (!load_backends(c, err, sizeof err))
        goto fail;
    if (ea_registry_open(c->opt.registry, EA_REGISTRY_CREATE | EA_REGISTRY_BROKER, &c->reg, err, sizeof err) != EA_OK)
        goto fail;
    /* Revocations made before we started: BASIC_AUTH refuses those devices;
     * the sequence only needs to start from now. */
    if (ea_registry_revoked_since(c->reg, &seq, NULL, NULL) != EA_OK ||
        ea_registry_changed(c->reg, &changed) != EA_OK) {
        snprintf(err, sizeof err, "%s", ea_registry_error(c->reg));
        goto fail;
    }
    c->rev_seq = seq;
    if (c->opt.audit && ea_audit_open(c->opt.audit, &c->audit, err, sizeof err) != EA_OK)
        goto fail;
    cloud_tlslog_init(&c->tlslog, c->opt.broker_log);
    for (size_t i = 0; i < sizeof callbacks / sizeof callbacks[0]; i++) {
        if (mosquitto_callback_register(plugin_id, callbacks[i].event, callbacks[i].fn, NULL, c) != MOSQ_ERR_SUCCESS) {
            snprintf(err, sizeof err, "cannot register callback for event %d", callbacks[i].event);
            for (size_t k = 0; k < i; k++)
                mosquitto_callback_unregister(plugin_id, callbacks[k].event, callbacks[k].fn, NULL);
            goto fail;
        }
    }
    snprintf(err, sizeof err, "registry %s, %d anchor(s), %d intermediate(s), %d CRL(s), %zu backend(s), auto_register %s",
             c->opt.registry, sk_X509_num(c->trust.roots), sk_X509_num(c->trust.inters),
             c->trust.crls ? sk_X509_CRL_num(c->trust.crls) : 0, c->n_backend, c->opt.auto_register ? "on" : "off");
    mosquitto_log_printf(MOSQ_LOG_NOTICE, CLOUD_LOG_PREFIX "ready: %s", err);
    plugin_event(c, "start", "ok", err);
    *userdata = c;
    return MOSQ_ERR_SUCCESS;
fail:
    /* A broker without its checks must not start: a non-zero return stops it. */
    mosquitto_log_printf(MOSQ_LOG_ERR, CLOUD_LOG_PREFIX "cannot start: %s", err);
    ctx_free(c);
    return MOSQ_ERR_INVAL;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    cloud_ctx *c = userdata;

    (void)options;
    (void)option_count;
    if (!c)
        return MOSQ_ERR_SUCCESS;
    for (size_t i = 0; i < sizeof callbacks / sizeof callbacks[0]; i++)
        mosquitto_callback_unregister(plugin_id, callbacks[i].event, callbacks[i].fn, NULL);
    {
        char stats[128];
        snprintf(stats, sizeof stats, "verdict cache: %llu hits, %llu misses", (unsigned long long)c->vcache.hits,
                 (unsigned long long)c->vcache.misses);
        plugin_event(c, "stop", "ok", stats);
    }
    ctx_free(c);
    return MOSQ_ERR_SUCCESS;
}
