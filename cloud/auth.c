/* MOSQ_EVT_BASIC_AUTH: the identity is the certificate.
 *
 * The broker calls this for every CONNECT (the listener does not set
 * use_identity_as_username, which would skip this hook), and again for
 * every client on SIGHUP (mosquitto_security_apply), which is how a reload
 * drops sessions that no longer pass. Username and password from the
 * CONNECT are ignored: there is no password path.
 *
 * Order of the checks, each with its reason token in the audit event:
 * a certificate at all (no_certificate); its chain under our profile, with
 * the CRLs of the whole chain (ea_pki_verify_chain: unknown_ca, expired,
 * revoked, name_constraint, bad_purpose, ...); one usable CN (bad_identity);
 * client id == CN (clientid_mismatch); then, for devices, the registry
 * (not_registered, revoked, cert_mismatch, registry_error). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "cloud/cloud_int.h"

typedef struct verdict {
    const char *reason; /* NULL = accepted */
    char detail[320];
    char id[EA_JAIL_ID_MAX + 1];
    bool backend;
    bool registered; /* auto-registered just now */
} verdict;

__attribute__((format(printf, 3, 4))) static void refuse(verdict *v, const char *reason, const char *fmt, ...)
{
    va_list ap;

    v->reason = reason;
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof v->detail, fmt, ap);
    va_end(ap);
}

/* The single CN of the subject, as the certificate states it. */
static bool common_name(X509 *x, char *out, size_t cap, const char **why)
{
    const X509_NAME *nm = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    const ASN1_STRING *s;
    int len;

    if (i < 0) {
        *why = "the subject has no CN";
        return false;
    }
    if (X509_NAME_get_index_by_NID(nm, NID_commonName, i) >= 0) {
        *why = "the subject has more than one CN";
        return false;
    }
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i));
    len = s ? ASN1_STRING_length(s) : -1;
    /* ea_jail_id_ok sees the stated length, so an embedded NUL is caught. */
    if (len <= 0 || (size_t)len >= cap ||
        !ea_jail_id_ok((const char *)ASN1_STRING_get0_data(s), (size_t)len)) {
        *why = "the CN is not a usable identity (1-64 printable ASCII, no + # / NUL or leading $)";
        return false;
    }
    memcpy(out, ASN1_STRING_get0_data(s), (size_t)len);
    out[len] = '\0';
    return true;
}

/* The registry's word on a device that passed the certificate checks. */
static void check_registry(cloud_ctx *c, const cloud_certinfo *ci, verdict *v)
{
    ea_registry_device d;
    ea_err rc = ea_registry_get(c->reg, v->id, &d);

    /* A re-check (SIGHUP) judges a session that exists; it does not
     * register anything: a client that was let in as something else (a
     * backend whose certificate was withdrawn) must not turn into a device. */
    if (rc == EA_ERR_NOT_FOUND && c->opt.auto_register && !c->rechecking) {
        memset(&d, 0, sizeof d);
        snprintf(d.device_id, sizeof d.device_id, "%s", v->id);
        snprintf(d.serial, sizeof d.serial, "%s", ci->serial);
        snprintf(d.fingerprint, sizeof d.fingerprint, "%s", ci->fingerprint);
        snprintf(d.source, sizeof d.source, "auto-registered");
        if ((rc = ea_registry_add(c->reg, &d, NULL)) != EA_OK) {
            refuse(v, "registry_error", "cannot auto-register: %s", ea_registry_error(c->reg));
            return;
        }
        v->registered = true;
        return;
    }
    if (rc == EA_ERR_NOT_FOUND) {
        refuse(v, "not_registered", "%s is not in the registry (auto_register is off)", v->id);
        return;
    }
    if (rc != EA_OK) {
        /* Fail closed: a registry we cannot read admits nobody. */
        refuse(v, "registry_error", "%s", ea_registry_error(c->reg));
        return;
    }
    if (d.status != EA_REGISTRY_ACTIVE) {
        refuse(v, "revoked", "%s is revoked in the registry", v->id);
        return;
    }
    /* The registry binds the id to one certificate when it knows it: an
     * older (or a second) certificate for the same id does not get in. */
    if ((d.fingerprint[0] && strcasecmp(d.fingerprint, ci->fingerprint) != 0) ||
        (!d.fingerprint[0] && d.serial[0] && strcasecmp(d.serial, ci->serial) != 0))
        refuse(v, "cert_mismatch", "the registry holds another certificate for %s", v->id);
}

/* The same certificate verified under the same trust material moments
 * ago, and still within its own validity period: the verdict stands. */
static bool verified_recently(cloud_ctx *c, X509 *cert, const cloud_certinfo *ci)
{
    if (!ci->fingerprint[0] || !cloud_vcache_hit(&c->vcache, ci->digest, c->trust_gen, cloud_now_ms()))
        return false;
    return X509_cmp_current_time(X509_get0_notBefore(cert)) < 0 && X509_cmp_current_time(X509_get0_notAfter(cert)) > 0;
}

static void judge(cloud_ctx *c, struct mosquitto *client, X509 *cert, const cloud_certinfo *ci, verdict *v)
{
    ea_verify_reason r;
    const char *why = NULL, *client_id;

    if (!verified_recently(c, cert, ci)) {
        if (!cloud_trust_verify(&c->trust, cert, &r, v->detail, sizeof v->detail)) {
            v->reason = ea_verify_reason_str(r);
            return;
        }
        cloud_vcache_put(&c->vcache, ci->digest, c->trust_gen,
                         cloud_now_ms() + (int64_t)c->opt.cache_ttl_s * 1000);
    }
    if (!common_name(cert, v->id, sizeof v->id, &why)) {
        refuse(v, "bad_identity", "%s", why);
        return;
    }
    client_id = mosquitto_client_id(client);
    if (!client_id || strcmp(client_id, v->id) != 0) {
        v->reason = "clientid_mismatch";
        snprintf(v->detail, sizeof v->detail, "client id '%.64s' is not the certificate's CN '%s'",
                 client_id ? client_id : "", v->id);
        return;
    }
    v->backend = cloud_is_backend_cert(c, ci->fingerprint);
    if (v->backend)
        return;
    /* A backend's name is reserved: a device certificate that carries it
     * would otherwise be jailed as... nothing, and served as a backend. */
    if (cloud_is_backend(c, v->id)) {
        refuse(v, "bad_identity", "%s is the name of a backend application", v->id);
        return;
    }
    check_registry(c, ci, v);
}

static void audit_verdict(cloud_ctx *c, struct mosquitto *client, const cloud_certinfo *ci, const verdict *v)
{
    ea_audit_line l;

    if (c->rechecking)
        cloud_event_begin(&l, "kick", "dropped", v->reason, client, NULL);
    else
        cloud_event_begin(&l, "connect", v->reason ? "refused" : "accepted", v->reason ? v->reason : "ok", client,
                          NULL);
    ea_audit_str(&l, "stage", "mqtt");
    ea_audit_str(&l, "device_id", v->id[0] ? v->id : NULL);
    ea_audit_str(&l, "role", v->backend ? "backend" : "device");
    cloud_event_cert(&l, ci);
    if (v->registered)
        ea_audit_bool(&l, "auto_registered", true);
    if (v->reason)
        ea_audit_str(&l, "detail", v->detail);
    cloud_emit(c, &l);
    if (v->reason)
        mosquitto_log_printf(MOSQ_LOG_NOTICE, CLOUD_LOG_PREFIX "%s %s from %s: %s (%s)",
                             c->rechecking ? "dropped" : "refused", v->id[0] ? v->id : "(no identity)",
                             mosquitto_client_address(client) ? mosquitto_client_address(client) : "?", v->reason,
                             v->detail);
}

/* Record an accepted client; takes cert whatever happens. */
static int accept_client(cloud_ctx *c, struct mosquitto *client, X509 *cert, const verdict *v)
{
    cloud_session s = { .client = client, .backend = v->backend, .since_ms = cloud_now_ms() };
    cloud_session *old = cloud_sessions_get(&c->sessions, client);

    if (c->rechecking && old) {
        /* Still good after a reload: nothing changes for the session. */
        X509_free(cert);
        return MOSQ_ERR_SUCCESS;
    }
    /* Our own copy of the id: the broker's username string (which
     * event_data->username aliases) is freed by mosquitto_set_username. */
    if (mosquitto_set_username(client, v->id) != MOSQ_ERR_SUCCESS) {
        X509_free(cert);
        return MOSQ_ERR_NOMEM;
    }
    snprintf(s.id, sizeof s.id, "%s", v->id);
    snprintf(s.peer, sizeof s.peer, "%s", mosquitto_client_address(client) ? mosquitto_client_address(client) : "");
    s.cert = cert;
    if (!cloud_sessions_put(&c->sessions, &s)) {
        X509_free(cert);
        return MOSQ_ERR_NOMEM;
    }
    if (!v->backend)
        cloud_seen(c, v->id);
    return MOSQ_ERR_SUCCESS;
}

int cloud_on_basic_auth(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = event_data;
    cloud_ctx *c = userdata;
    X509 *cert;
    cloud_certinfo ci;
    verdict v = { 0 };
    int rc;

    (void)event;
    cert = mosquitto_client_certificate(ed->client);
    if (!cert && c->rechecking) {
        /* A reload re-checks offline persistent sessions too: they have no
         * TLS session to judge now, and are judged when they reconnect. */
        return MOSQ_ERR_SUCCESS;
    }
    cloud_certinfo_get(cert, &ci);
    if (!cert)
        refuse(&v, "no_certificate", "%s", "the client sent no certificate");
    else
        judge(c, ed->client, cert, &ci, &v);
    if (!v.reason) {
        rc = accept_client(c, ed->client, cert, &v); /* takes cert */
        cert = NULL;
        if (rc != MOSQ_ERR_SUCCESS)
            refuse(&v, "internal", "%s", "out of memory");
    }
    if (!c->rechecking || v.reason)
        audit_verdict(c, ed->client, &ci, &v);
    X509_free(cert);
    return v.reason ? MOSQ_ERR_AUTH : MOSQ_ERR_SUCCESS;
}
