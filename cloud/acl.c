/* MOSQ_EVT_ACL_CHECK: the per-device topic jail; MOSQ_EVT_DISCONNECT: the
 * end of a session (and of a refused TLS handshake).
 *
 * How a violation is answered depends on what the protocol can say:
 *  - MQTT 5: MOSQ_ERR_ACL_DENIED; the broker answers PUBACK/PUBREC or
 *    SUBACK with reason code 135 (not authorized).
 *  - MQTT 3.1.1 / 3.1: a refused QoS 1/2 PUBLISH would still get a PUBACK
 *    that looks like success (there is no failure code), so we return
 *    MOSQ_ERR_AUTH instead. Mosquitto 2.0.11 passes any other code than
 *    SUCCESS/ACL_DENIED up from handle__publish/handle__subscribe, and the
 *    event loop then disconnects the client ("disconnected, not
 *    authorised") — the disconnection MQTT-3.3.5-2 allows, done by the
 *    broker itself rather than by kicking a client from inside its own
 *    packet handler. Subscriptions get the same treatment, so one rule
 *    holds for 3.1.1: step outside the jail and the connection is closed.
 *  - Deliveries (MOSQ_ACL_READ) are only ever refused quietly: returning
 *    anything but ACL_DENIED there would abort the delivery loop.
 *
 * The identity used here is the username, which auth.c set to the
 * certificate's CN and which the broker keeps (and persists) with offline
 * sessions, so queued QoS 1 messages for an offline device pass the check. */
#include <stdio.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "cloud/cloud_int.h"

static const char *access_name(int access)
{
    switch (access) {
    case MOSQ_ACL_READ: return "read";
    case MOSQ_ACL_WRITE: return "publish";
    case MOSQ_ACL_SUBSCRIBE: return "subscribe";
    case MOSQ_ACL_UNSUBSCRIBE: return "unsubscribe";
    default: return "other";
    }
}

static bool allowed(const cloud_ctx *c, const char *id, int access, const char *topic)
{
    bool backend = cloud_is_backend(c, id);

    if (access == MOSQ_ACL_SUBSCRIBE)
        return backend ? ea_jail_backend_ok(topic) : ea_jail_filter_ok(id, topic);
    return backend ? ea_jail_backend_ok(topic) : ea_jail_topic_ok(id, topic);
}

int cloud_on_acl_check(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_acl_check *ed = event_data;
    cloud_ctx *c = userdata;
    const char *user = mosquitto_client_username(ed->client), *id = mosquitto_client_id(ed->client);
    bool v5, ok;
    ea_audit_line l;

    (void)event;
    if (ed->access == MOSQ_ACL_UNSUBSCRIBE)
        return MOSQ_ERR_SUCCESS; /* leaving a subscription never widens access */
    /* auth.c makes them equal; anything else did not pass through it. */
    ok = user && id && !strcmp(user, id) && ed->topic && allowed(c, user, ed->access, ed->topic);
    if (ok)
        return MOSQ_ERR_SUCCESS;
    if (ed->access == MOSQ_ACL_READ)
        return MOSQ_ERR_ACL_DENIED;

    v5 = mosquitto_client_protocol_version(ed->client) == 5;
    cloud_event_begin(&l, "acl", v5 ? "denied" : "disconnected", "acl_denied", ed->client, NULL);
    ea_audit_str(&l, "device_id", user);
    ea_audit_str(&l, "access", access_name(ed->access));
    ea_audit_str(&l, "topic", ed->topic);
    if (ed->access == MOSQ_ACL_WRITE)
        ea_audit_int(&l, "qos", ed->qos);
    ea_audit_str(&l, "answer", v5 ? "reason code 135 (not authorized)" : "connection closed (MQTT 3.1.1 cannot refuse)");
    cloud_emit(c, &l);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, CLOUD_LOG_PREFIX "%s %s to '%.200s' outside devices/%s/: %s",
                         user ? user : "(unauthenticated)", access_name(ed->access), ed->topic ? ed->topic : "",
                         user ? user : "?", v5 ? "refused (135)" : "disconnecting");
    return v5 ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_AUTH;
}

/* A connection that ended before its CONNECT reached us: if the broker
 * just logged OpenSSL errors, its TLS handshake was refused. */
static void tls_refusal(cloud_ctx *c, struct mosquitto *client)
{
    const char *reason;
    char detail[512], from[CLOUD_PEER_MAX];
    ea_audit_line l;

    cloud_tlslog_poll(&c->tlslog);
    if (!cloud_tlslog_take(&c->tlslog, &reason, detail, sizeof detail, from, sizeof from))
        return;
    cloud_event_begin(&l, "connect", "refused", reason, client, NULL);
    ea_audit_str(&l, "stage", "tls");
    ea_audit_str(&l, "detail", detail);
    ea_audit_str(&l, "note", "refused by the broker's TLS layer: the certificate never reached the plugin");
    cloud_emit(c, &l);
}

int cloud_on_disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ed = event_data;
    cloud_ctx *c = userdata;
    cloud_session *s = cloud_sessions_get(&c->sessions, ed->client);
    ea_audit_line l;

    (void)event;
    if (s) {
        cloud_event_begin(&l, "disconnect", "closed", "ok", ed->client, s->peer);
        ea_audit_str(&l, "device_id", s->id);
        ea_audit_str(&l, "role", s->backend ? "backend" : "device");
        ea_audit_int(&l, "duration_ms", (long long)(cloud_now_ms() - s->since_ms));
        cloud_emit(c, &l);
        if (!s->backend)
            cloud_seen(c, s->id);
        cloud_sessions_del(&c->sessions, s);
        return MOSQ_ERR_SUCCESS;
    }
    if (!mosquitto_client_id(ed->client)) {
        X509 *x = mosquitto_client_certificate(ed->client);
        /* With a certificate, TLS succeeded: we refused the CONNECT (and
         * said so already) or the client left before sending one. */
        if (!x)
            tls_refusal(c, ed->client);
        X509_free(x);
    }
    return MOSQ_ERR_SUCCESS;
}
