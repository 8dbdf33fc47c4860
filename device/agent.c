/* The device agent's MQTT side: connection attempts with capped exponential
 * backoff and jitter, telemetry, commands. The TLS context (tls.c) and the
 * handshake trace (trace.c) are set up once and reused for every connection.
 *
 * One thread drives everything with mosquitto_loop(): no libmosquitto thread,
 * so the callbacks below run inside ea_agent_run and need no locking.
 *
 * Telemetry samples are produced on schedule whether or not the broker is
 * reachable. They wait in our own queue until a session is up, and only then
 * go to libmosquitto, at most DEV_INFLIGHT at a time; a message handed over
 * but not yet acknowledged when the link drops stays with libmosquitto, which
 * sends it again after the next CONNACK (QoS 1: at least once). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/rand.h>

#include "device/device_int.h"
#include "edgeauth/host.h"

#define DEFAULT_PORT 8883
#define LOOP_SLICE_MS 100u

/* ---- small helpers ---------------------------------------------------------------- */

uint64_t ea_agent_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ea_agent_say(ea_agent *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(a->out, fmt, ap);
    va_end(ap);
    fputc('\n', a->out);
    fflush(a->out);
}

void ea_agent_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7F)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* A received payload for a terminal: printable ASCII kept, the rest \xNN. */
static void print_payload(FILE *f, const uint8_t *p, size_t n)
{
    size_t shown = n > 512 ? 512 : n;
    for (size_t i = 0; i < shown; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7F && p[i] != '\\')
            fputc(p[i], f);
        else
            fprintf(f, "\\x%02x", p[i]);
    }
    if (shown < n)
        fprintf(f, "... (%zu bytes)", n);
}

/* Same, as a JSON string (bytes outside ASCII as \u00NN). */
static void json_payload(FILE *f, const uint8_t *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\')
            fprintf(f, "\\%c", p[i]);
        else if (p[i] >= 0x20 && p[i] < 0x7F)
            fputc(p[i], f);
        else
            fprintf(f, "\\u%04x", p[i]);
    }
    fputc('"', f);
}

static bool stopped(const ea_agent *a)
{
    return a->o.stop && *a->o.stop;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
    nanosleep(&ts, NULL); /* a signal cuts it short: the caller looks at the stop flag */
}

/* ---- options ------------------------------------------------------------------------ */

/* "mqtts://HOST[:PORT]", HOST may be [IPv6]. */
static ea_err parse_broker(ea_agent *a, const char *url, char *err, size_t errlen)
{
    const char *p, *end, *colon;
    size_t hl;
    long port = DEFAULT_PORT;

    if (!strncmp(url, "mqtt://", 7) || !strncmp(url, "tcp://", 6)) {
        snprintf(err, errlen, "--broker %.200s: the agent only speaks TLS; use mqtts://HOST[:PORT]", url);
        return EA_ERR_ARG;
    }
    if (strncmp(url, "mqtts://", 8) != 0) {
        snprintf(err, errlen, "--broker %.200s: expected mqtts://HOST[:PORT]", url);
        return EA_ERR_ARG;
    }
    p = url + 8;
    if (*p == '[') {
        if (!(end = strchr(p, ']'))) {
            snprintf(err, errlen, "--broker %.200s: unclosed [", url);
            return EA_ERR_ARG;
        }
        hl = (size_t)(end - p - 1);
        p++;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon)
            goto bad;
    } else {
        colon = strchr(p, ':');
        hl = colon ? (size_t)(colon - p) : strlen(p);
    }
    if (hl == 0 || hl >= sizeof a->host)
        goto bad;
    memcpy(a->host, p, hl);
    a->host[hl] = '\0';
    if (strchr(a->host, '/'))
        goto bad;
    if (colon) {
        char *e;
        errno = 0;
        port = strtol(colon + 1, &e, 10);
        if (errno || e == colon + 1 || (*e && strcmp(e, "/") != 0) || port < 1 || port > 65535)
            goto bad;
    }
    a->port = (int)port;
    return EA_OK;
bad:
    snprintf(err, errlen, "--broker %.200s: expected mqtts://HOST[:PORT]", url);
    return EA_ERR_ARG;
}

static bool is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static ea_err take_options(ea_agent *a, const ea_agent_opts *o, char *err, size_t errlen)
{
    ea_err rc;

    a->o = *o;
    a->out = o->out ? o->out : stdout;
    a->err = o->err ? o->err : stderr;
    if (!a->o.interval_ms)
        a->o.interval_ms = 1000;
    if (!a->o.retry_min_ms)
        a->o.retry_min_ms = 500;
    if (!a->o.retry_max_ms)
        a->o.retry_max_ms = 30000;
    if (a->o.retry_max_ms < a->o.retry_min_ms)
        a->o.retry_max_ms = a->o.retry_min_ms;
    if (!a->o.keepalive_s)
        a->o.keepalive_s = 60;
    if (!a->o.queue_max)
        a->o.queue_max = 1000;
    if (a->o.tls_version && a->o.tls_version != TLS1_2_VERSION && a->o.tls_version != TLS1_3_VERSION) {
        snprintf(err, errlen, "TLS version must be 1.2 or 1.3");
        return EA_ERR_ARG;
    }
    if (!o->broker) {
        snprintf(err, errlen, "no broker: --broker mqtts://HOST[:PORT]");
        return EA_ERR_ARG;
    }
    if ((rc = parse_broker(a, o->broker, err, errlen)) != EA_OK)
        return rc;
    if (o->se_uri && *o->se_uri) {
        if (strlen(o->se_uri) >= sizeof a->se_uri) {
            snprintf(err, errlen, "SE URI too long");
            return EA_ERR_ARG;
        }
        snprintf(a->se_uri, sizeof a->se_uri, "%s", o->se_uri);
    } else if (ea_host_default_uri(a->se_uri, sizeof a->se_uri) != EA_OK) {
        snprintf(err, errlen, "no SE: give --se URI or set EDGEAUTH_SE");
        return EA_ERR_ARG;
    }
    const char *name = o->server_name && *o->server_name ? o->server_name : a->host;
    if (strlen(name) >= sizeof a->peer_name) {
        snprintf(err, errlen, "server name too long");
        return EA_ERR_ARG;
    }
    snprintf(a->peer_name, sizeof a->peer_name, "%s", name);
    a->peer_is_ip = is_ip(name);
    return EA_OK;
}

/* ---- telemetry queue ------------------------------------------------------------------ */

static void make_sample(ea_agent *a, dev_msg *m)
{
    struct timespec now;
    struct tm tm;
    char when[32] = "1970-01-01T00:00:00";
    unsigned phase = (unsigned)(m->seq % 40u);
    /* A slow triangle wave around 21 °C: easy to recognise in a plot. */
    double temp = 20.0 + 0.1 * (phase < 20u ? phase : 40u - phase);
    unsigned long long up = (unsigned long long)((ea_agent_now_ns() - a->start_ns) / 1000000u);
    int n;

    clock_gettime(CLOCK_REALTIME, &now);
    if (gmtime_r(&now.tv_sec, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    /* device_id was checked to be [A-Za-z0-9._-]: no JSON escaping needed. */
    n = snprintf(m->body, sizeof m->body,
                 "{\"device\":\"%s\",\"seq\":%lu,\"time\":\"%s.%03ldZ\",\"uptime_ms\":%llu,\"temperature_c\":%.1f}",
                 a->device_id, m->seq, when, now.tv_nsec / 1000000L, up, temp);
    m->len = n > 0 && (size_t)n < sizeof m->body ? (size_t)n : 0;
}

static void produce(ea_agent *a, uint64_t now)
{
    while (now >= a->next_sample_ns && (!a->o.count || a->seq < a->o.count)) {
        a->next_sample_ns += (uint64_t)a->o.interval_ms * 1000000u;
        a->seq++;
        if (a->q_len == a->q_cap) {
            a->st.dropped++;
            fprintf(a->err, "agent: offline queue full (%zu): sample #%lu dropped\n", a->q_cap, a->seq);
            continue;
        }
        dev_msg *m = &a->queue[(a->q_head + a->q_len) % a->q_cap];
        m->seq = a->seq;
        make_sample(a, m);
        a->q_len++;
    }
}

static dev_inflight *inflight_slot(ea_agent *a, int mid)
{
    for (size_t i = 0; i < DEV_INFLIGHT; i++)
        if (a->inflight_tab[i].mid == mid)
            return &a->inflight_tab[i];
    return NULL;
}

static void flush_queue(ea_agent *a)
{
    while (a->session_up && a->q_len > 0 && a->inflight < DEV_INFLIGHT) {
        dev_msg *m = &a->queue[a->q_head];
        int mid = 0;
        int rc = mosquitto_publish_v5(a->mosq, &mid, a->topic_telemetry, (int)m->len, m->body, 1, false, NULL);
        switch (rc) {
        case MOSQ_ERR_INVAL:
        case MOSQ_ERR_NOMEM:
        case MOSQ_ERR_PROTOCOL:
        case MOSQ_ERR_PAYLOAD_SIZE:
        case MOSQ_ERR_MALFORMED_UTF8:
        case MOSQ_ERR_QOS_NOT_SUPPORTED:
        case MOSQ_ERR_OVERSIZE_PACKET:
            /* Refused before it was queued: it will never go out. */
            fprintf(a->err, "agent: telemetry #%lu not published: %s\n", m->seq, mosquitto_strerror(rc));
            a->st.dropped++;
            break;
        default: {
            /* Queued inside libmosquitto, even when the write itself failed
             * (the link just dropped): it is sent again after the CONNACK. */
            dev_inflight *s = inflight_slot(a, 0);
            if (s)
                *s = (dev_inflight){ mid, m->seq };
            a->inflight++;
            a->st.published++;
            break;
        }
        }
        a->q_head = (a->q_head + 1) % a->q_cap;
        a->q_len--;
    }
}

/* ---- libmosquitto callbacks ---------------------------------------------------------- */

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *line)
{
    ea_agent *a = obj;
    size_t len = strlen(a->last_log);
    const char *p;
    (void)mosq;
    if (!(level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) || len + 8 >= sizeof a->last_log)
        return;
    /* libmosquitto logs the OpenSSL queue oldest first ("OpenSSL
     * Error[0]: error:...:reason"): the first is the cause (the provider's
     * message, when the SE failed), the last what libssl made of it. */
    if (!strncmp(line, "OpenSSL Error[", 14) && (p = strstr(line, "]: ")) != NULL)
        line = p + 3;
    if (strstr(a->last_log, line))
        return;
    snprintf(a->last_log + len, sizeof a->last_log - len, "%s%s", len ? " / " : "", line);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
    ea_agent *a = obj;
    SSL *ssl = mosquitto_ssl_get(mosq);
    (void)flags;
    (void)props;
    a->connack_rc = rc;
    a->connack_ns = ea_agent_now_ns();
    if (rc != MQTT_RC_SUCCESS)
        return; /* the loop reports it when the link goes down */
    a->session_up = true;
    a->consecutive_failures = 0;
    a->st.connacks++;
    if (a->o.json) {
        fprintf(a->out, "{\"event\":\"connected\",\"broker\":");
        ea_agent_json_str(a->out, a->o.broker);
        fprintf(a->out, ",\"device\":\"%s\",\"tls\":\"%s\",\"cipher\":\"%s\",\"resumed\":%s,\"handshake_ms\":%.3f}\n",
                a->device_id, ssl ? SSL_get_version(ssl) : "?",
                ssl ? SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)) : "?",
                ssl && SSL_session_reused(ssl) ? "true" : "false", a->st.last_handshake_ms);
    } else {
        fprintf(a->out, "connected to %s:%d as %s: %s %s, %s handshake %.1f ms, MQTT session up\n", a->host,
                a->port, a->device_id, ssl ? SSL_get_version(ssl) : "?",
                ssl ? SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)) : "?",
                ssl && SSL_session_reused(ssl) ? "resumed" : "full", a->st.last_handshake_ms);
    }
    ea_agent_trace_connack(a);
    fflush(a->out);
    int src = mosquitto_subscribe_v5(mosq, NULL, a->topic_commands, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        fprintf(a->err, "agent: cannot subscribe to %s: %s\n", a->topic_commands, mosquitto_strerror(src));
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
    ea_agent *a = obj;
    (void)mosq;
    (void)props;
    a->session_up = false;
    a->disconnected = true;
    a->disconnect_rc = rc;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason, const mosquitto_property *props)
{
    ea_agent *a = obj;
    dev_inflight *s = inflight_slot(a, mid);
    unsigned long seq = s ? s->seq : 0;
    (void)mosq;
    (void)props;
    if (s)
        s->mid = 0;
    if (a->inflight)
        a->inflight--;
    a->st.acked++;
    if (reason >= 0x80) {
        a->st.denied++;
        if (a->o.json)
            fprintf(a->out, "{\"event\":\"publish_refused\",\"seq\":%lu,\"reason\":%d,\"text\":\"%s\"}\n", seq,
                    reason, mosquitto_reason_string(reason));
        else
            fprintf(a->err, "agent: the broker refused telemetry #%lu on %s: %s (reason %d)\n", seq,
                    a->topic_telemetry, mosquitto_reason_string(reason), reason);
        return;
    }
    if (a->o.json)
        fprintf(a->out, "{\"event\":\"published\",\"seq\":%lu,\"topic\":\"%s\",\"qos\":1}\n", seq,
                a->topic_telemetry);
    else
        fprintf(a->out, "published telemetry #%lu to %s (acknowledged)\n", seq, a->topic_telemetry);
    fflush(a->out);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    ea_agent *a = obj;
    (void)mosq;
    (void)props;
    if (!msg->topic || strcmp(msg->topic, a->topic_commands) != 0)
        return;
    a->st.commands++;
    if (a->o.json) {
        fprintf(a->out, "{\"event\":\"command\",\"topic\":\"%s\",\"payload\":", a->topic_commands);
        json_payload(a->out, msg->payload, (size_t)msg->payloadlen);
        fprintf(a->out, "}\n");
    } else {
        fprintf(a->out, "command on %s: ", a->topic_commands);
        print_payload(a->out, msg->payload, (size_t)msg->payloadlen);
        fputc('\n', a->out);
    }
    fflush(a->out);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    ea_agent *a = obj;
    (void)mosq;
    (void)mid;
    (void)props;
    if (n >= 1 && granted[0] >= 0x80)
        fprintf(a->err, "agent: the broker refused the subscription to %s: %s\n", a->topic_commands,
                mosquitto_reason_string(granted[0]));
    else if (!a->o.json)
        fprintf(a->out, "listening for commands on %s\n", a->topic_commands);
}

/* ---- connection attempts ---------------------------------------------------------------- */

static unsigned backoff_ms(const ea_agent *a)
{
    unsigned shift = a->consecutive_failures > 0 ? a->consecutive_failures - 1 : 0;
    uint64_t d = a->o.retry_min_ms;
    uint32_t r = 0;

    while (shift-- > 0 && d < a->o.retry_max_ms)
        d *= 2;
    if (d > a->o.retry_max_ms)
        d = a->o.retry_max_ms;
    /* Half fixed, half random: a fleet that lost the broker together does
     * not come back in lockstep, and no device waits less than half. */
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint32_t)ea_agent_now_ns();
    return (unsigned)(d / 2 + r % (d / 2 + 1));
}

/* The last alert the broker sent on this connection, or NULL. */
static const dev_event *peer_alert(const ea_agent *a)
{
    const dev_event *alert = NULL;
    for (size_t i = 0; i < a->tr.n; i++)
        if (a->tr.ev[i].type == DEV_EV_ALERT && !a->tr.ev[i].tx)
            alert = &a->tr.ev[i];
    return alert;
}

/* Why the last attempt or session ended, in words. */
static void describe_failure(ea_agent *a, int mrc, int err_no, char *out, size_t cap)
{
    const dev_trace *t = &a->tr;
    const dev_event *alert = peer_alert(a);
    bool fatal_alert = alert && (alert->detail >> 8) == SSL3_AL_FATAL;
    const char *sys = mrc == MOSQ_ERR_ERRNO ? strerror(err_no) : mosquitto_strerror(mrc);

    if (a->refused) {
        snprintf(out, cap, "server certificate refused: %s", a->refusal);
    } else if (mrc == MOSQ_ERR_ERRNO && t->start_ns == 0) {
        snprintf(out, cap, "broker %s:%d unreachable: %s", a->host, a->port, strerror(err_no));
    } else if (mrc == MOSQ_ERR_EAI) {
        snprintf(out, cap, "cannot resolve %s: %s", a->host, gai_strerror(err_no));
    } else if (a->disconnected && a->disconnect_rc >= 0x80) {
        snprintf(out, cap, "the broker closed the session: %s (reason %d)", mosquitto_reason_string(a->disconnect_rc),
                 a->disconnect_rc);
    } else if (fatal_alert) {
        /* In TLS 1.3 the server judges our certificate after we sent our
         * Finished: its refusal arrives after "our" handshake is done. */
        snprintf(out, cap, "the broker refused the TLS connection with alert '%s'%s",
                 SSL_alert_desc_string_long(alert->detail & 0xFF),
                 t->done_ns ? " after the handshake (it did not accept our certificate)" : "");
    } else if (t->local_error[0]) {
        snprintf(out, cap, "TLS handshake failed on our side: %s", t->local_error);
    } else if (t->start_ns && !t->done_ns) {
        snprintf(out, cap, "TLS handshake failed: %s", a->last_log[0] ? a->last_log : sys);
    } else if (a->connack_rc > 0) {
        snprintf(out, cap, "the broker refused the MQTT session: %s (reason %d)",
                 mosquitto_reason_string(a->connack_rc), a->connack_rc);
    } else if (alert) { /* close_notify */
        snprintf(out, cap, "%s: the broker closed the connection", a->connack_rc < 0 ? "closed before CONNACK"
                                                                                      : "connection lost");
    } else if (a->connack_rc < 0 && t->done_ns) {
        /* A TLS 1.3 broker judges our certificate after our Finished; its
         * alert can be lost when it resets the connection at once. */
        snprintf(out, cap, "closed before CONNACK: %s%s", a->last_log[0] ? a->last_log : sys,
                 a->tls13 ? " (this is how a TLS 1.3 broker that refuses our certificate may end the connection)"
                          : "");
    } else {
        snprintf(out, cap, "%s: %s", a->connack_rc < 0 ? "closed before CONNACK" : "connection lost", sys);
    }
}

static void schedule_retry(ea_agent *a, const char *why)
{
    unsigned wait = backoff_ms(a);

    if (a->o.max_attempts && a->consecutive_failures >= a->o.max_attempts) {
        /* No retry: ea_agent_run gives up with this reason. */
        if (a->o.json) {
            fprintf(a->out, "{\"event\":\"disconnected\",\"attempt\":%lu,\"reason\":", a->st.attempts);
            ea_agent_json_str(a->out, why);
            fprintf(a->out, "}\n");
        } else {
            fprintf(a->err, "agent: %s\n", why);
        }
        return;
    }
    a->next_attempt_ns = ea_agent_now_ns() + (uint64_t)wait * 1000000u;
    if (a->o.json) {
        fprintf(a->out, "{\"event\":\"disconnected\",\"attempt\":%lu,\"reason\":", a->st.attempts);
        ea_agent_json_str(a->out, why);
        fprintf(a->out, ",\"retry_in_ms\":%u}\n", wait);
        fflush(a->out);
    } else {
        fprintf(a->err, "agent: %s; retrying in %.1f s\n", why, wait / 1000.0);
    }
}

/* The link is gone (or never came up): say why, plan the next attempt. */
static void link_down(ea_agent *a, int mrc, int err_no)
{
    char why[DEV_DETAIL_MAX + 128];

    if (a->tr.start_ns && !a->tr.done_ns)
        ea_agent_trace_report(a, NULL, a->refused ? a->refusal : "handshake did not complete");
    describe_failure(a, mrc, err_no, why, sizeof why);
    snprintf(a->last_failure, sizeof a->last_failure, "%s", why);
    a->link_up = false;
    a->session_up = false;
    a->st.failures++;
    a->consecutive_failures++;
    if (a->refused) {
        fprintf(a->err, "agent: %s\n", why);
        return; /* ea_agent_run stops: retrying cannot change our verdict */
    }
    schedule_retry(a, why);
}

static void attempt(ea_agent *a)
{
    int mrc;

    ea_agent_tls_new_attempt(a);
    a->last_log[0] = '\0';
    a->connack_rc = -1;
    a->disconnected = false;
    a->disconnect_rc = 0;
    a->st.attempts++;
    if (!a->o.json)
        fprintf(a->out, "connecting to %s:%d (attempt %lu)\n", a->host, a->port, a->st.attempts);
    fflush(a->out);
    errno = 0;
    if (!a->mosq_connected_once)
        mrc = mosquitto_connect(a->mosq, a->host, a->port, (int)a->o.keepalive_s);
    else
        mrc = mosquitto_reconnect(a->mosq);
    if (mrc != MOSQ_ERR_SUCCESS) {
        link_down(a, mrc, errno);
        return;
    }
    a->mosq_connected_once = true;
    a->link_up = true;
}

static bool all_done(const ea_agent *a)
{
    return a->o.count && a->seq >= a->o.count && a->q_len == 0 && a->inflight == 0 && a->st.acked >= a->o.count;
}

/* MQTT DISCONNECT and let it go out (at most about a second). */
static void say_goodbye(ea_agent *a)
{
    if (!a->link_up)
        return;
    mosquitto_disconnect_v5(a->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
    for (int i = 0; i < 10 && a->link_up; i++)
        if (mosquitto_loop(a->mosq, (int)LOOP_SLICE_MS, 1) != MOSQ_ERR_SUCCESS)
            a->link_up = false;
    a->link_up = false;
    a->session_up = false;
}

ea_err ea_agent_run(ea_agent *a, char *err, size_t errlen)
{
    ea_err rc = EA_ERR_INTERNAL;

    if (!a)
        return EA_ERR_ARG;
    a->next_attempt_ns = a->next_sample_ns = ea_agent_now_ns();
    for (;;) {
        uint64_t now = ea_agent_now_ns();
        if (stopped(a)) {
            rc = EA_OK;
            break;
        }
        if (a->refused) {
            snprintf(err, errlen, "server certificate refused: %s", a->refusal);
            rc = EA_ERR_AUTH;
            break;
        }
        if (all_done(a)) {
            rc = a->st.denied ? EA_ERR_DENIED : EA_OK;
            if (rc != EA_OK)
                snprintf(err, errlen, "the broker refused %lu of %lu telemetry messages", a->st.denied, a->st.acked);
            break;
        }
        produce(a, now);
        if (!a->link_up) {
            if (a->o.max_attempts && a->consecutive_failures >= a->o.max_attempts) {
                snprintf(err, errlen, "gave up after %u failed connection attempts in a row (last: %s)",
                         a->consecutive_failures, a->last_failure);
                rc = EA_ERR_IO;
                break;
            }
            if (now >= a->next_attempt_ns) {
                attempt(a);
                continue;
            }
            uint64_t until = a->next_attempt_ns;
            if ((!a->o.count || a->seq < a->o.count) && a->next_sample_ns < until)
                until = a->next_sample_ns;
            if (until > now + (uint64_t)LOOP_SLICE_MS * 1000000u)
                until = now + (uint64_t)LOOP_SLICE_MS * 1000000u;
            sleep_ns(until - now);
            continue;
        }
        flush_queue(a);
        unsigned slice = LOOP_SLICE_MS;
        if ((!a->o.count || a->seq < a->o.count) && a->next_sample_ns > now &&
            a->next_sample_ns - now < (uint64_t)slice * 1000000u)
            slice = (unsigned)((a->next_sample_ns - now) / 1000000u);
        errno = 0;
        int mrc = mosquitto_loop(a->mosq, (int)slice, 1);
        /* A DISCONNECT from the broker closes the socket but the loop
         * still returns success. */
        if (mrc != MOSQ_ERR_SUCCESS || a->disconnected)
            link_down(a, mrc != MOSQ_ERR_SUCCESS ? mrc : MOSQ_ERR_CONN_LOST, errno);
    }
    say_goodbye(a);
    if (!a->o.json)
        fprintf(a->out, "agent: %lu published, %lu acknowledged, %lu commands; %lu connections (%lu resumed), %lu failures\n",
                a->st.published, a->st.acked, a->st.commands, a->st.handshakes, a->st.resumed, a->st.failures);
    else
        fprintf(a->out,
                "{\"event\":\"summary\",\"published\":%lu,\"acked\":%lu,\"denied\":%lu,\"commands\":%lu,"
                "\"handshakes\":%lu,\"resumed\":%lu,\"failures\":%lu,\"dropped\":%lu}\n",
                a->st.published, a->st.acked, a->st.denied, a->st.commands, a->st.handshakes, a->st.resumed,
                a->st.failures, a->st.dropped);
    fflush(a->out);
    return rc;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static ea_err make_client(ea_agent *a, char *err, size_t errlen)
{
    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        snprintf(err, errlen, "libmosquitto did not initialise");
        return EA_ERR_INTERNAL;
    }
    a->mosq_lib = true;
    /* Clean start: the commands subscription is made again on every CONNACK. */
    if (!(a->mosq = mosquitto_new(a->device_id, true, a)))
        return EA_ERR_NO_MEMORY;
    if (mosquitto_int_option(a->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5) != MOSQ_ERR_SUCCESS ||
        mosquitto_void_option(a->mosq, MOSQ_OPT_SSL_CTX, a->ctx) != MOSQ_ERR_SUCCESS ||
        /* Off, or 2.0.11 refuses to connect without a cafile and, with one,
         * fails every server (spec cloud-and-provisioning.md §2.5). */
        mosquitto_int_option(a->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
        mosquitto_int_option(a->mosq, MOSQ_OPT_TCP_NODELAY, 1) != MOSQ_ERR_SUCCESS) {
        snprintf(err, errlen, "libmosquitto refused the TLS options");
        return EA_ERR_INTERNAL;
    }
    mosquitto_log_callback_set(a->mosq, on_log);
    mosquitto_connect_v5_callback_set(a->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(a->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(a->mosq, on_publish);
    mosquitto_message_v5_callback_set(a->mosq, on_message);
    mosquitto_subscribe_v5_callback_set(a->mosq, on_subscribe);
    return EA_OK;
}

ea_err ea_agent_new(const ea_agent_opts *opts, ea_agent **out, char *err, size_t errlen)
{
    ea_agent *a;
    ea_err rc = EA_ERR_INTERNAL;

    if (!out)
        return EA_ERR_ARG;
    *out = NULL;
    if (!opts) {
        snprintf(err, errlen, "no options");
        return EA_ERR_ARG;
    }
    if (!(a = calloc(1, sizeof *a)))
        return EA_ERR_NO_MEMORY;
    a->start_ns = ea_agent_now_ns();
    a->connack_rc = -1;
    if ((rc = take_options(a, opts, err, errlen)) != EA_OK || (rc = ea_agent_tls_setup(a, err, errlen)) != EA_OK)
        goto fail;
    snprintf(a->topic_telemetry, sizeof a->topic_telemetry, "devices/%s/telemetry", a->device_id);
    snprintf(a->topic_commands, sizeof a->topic_commands, "devices/%s/commands", a->device_id);
    a->q_cap = a->o.queue_max;
    a->queue = calloc(a->q_cap, sizeof(dev_msg));
    if (!a->queue) {
        rc = EA_ERR_NO_MEMORY;
        goto fail;
    }
    if ((rc = make_client(a, err, errlen)) != EA_OK)
        goto fail;
    if (!a->o.json)
        fprintf(a->out, "agent: device %s, key 0x%08X and certificates from the SE %s; broker %s:%d (TLS %s), "
                        "server checked as %s %s\n",
                a->device_id, EA_AGENT_KEY_ID, a->se_uri, a->host, a->port,
                a->o.tls_version == TLS1_2_VERSION ? "1.2" : a->o.tls_version == TLS1_3_VERSION ? "1.3" : "1.2-1.3",
                a->peer_is_ip ? "IP" : "name", a->peer_name);
    *out = a;
    return EA_OK;
fail:
    if (err && errlen && !err[0])
        snprintf(err, errlen, "%s", ea_err_str(rc));
    ea_agent_free(a);
    return rc;
}

void ea_agent_free(ea_agent *a)
{
    if (!a)
        return;
    if (a->mosq)
        mosquitto_destroy(a->mosq); /* drops its reference to the SSL_CTX */
    if (a->mosq_lib)
        mosquitto_lib_cleanup();
    ea_agent_tls_free(a);
    free(a->queue);
    free(a);
}

void ea_agent_get_stats(const ea_agent *a, ea_agent_stats *out)
{
    if (a && out)
        *out = a->st;
}

const char *ea_agent_device_id(const ea_agent *a)
{
    return a ? a->device_id : NULL;
}

SSL_CTX *ea_agent_ssl_ctx(const ea_agent *a)
{
    return a ? a->ctx : NULL;
}
