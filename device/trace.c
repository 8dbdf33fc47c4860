/* The handshake trace: the phases of AN12400's TLS figure with the time each
 * took, measured from libssl's own callbacks.
 *
 * The message callback fires for a received handshake message when it has
 * been read, before it is processed, and for a sent message once it has been
 * built and written. So the interval that ends when a message is *received*
 * covers the processing of everything before it (e.g. the server chain check
 * ends at the message after the server's Certificate), and the interval that
 * ends when a message is *sent* covers its construction: the CertificateVerify
 * interval (from our Certificate, or in TLS 1.2 from our ClientKeyExchange,
 * to our CertificateVerify) is the SE signature plus hashing the transcript
 * on the host. The phases are consecutive, so they add up to the total. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "device/device_int.h"

#define TX true
#define RX false

void ea_agent_trace_event(ea_agent *a, bool tx, int type, int detail)
{
    dev_trace *t = &a->tr;
    /* After the handshake only alerts matter (a TLS 1.3 server refuses our
     * certificate after we think we are done). */
    if (t->start_ns == 0 || (t->done_ns != 0 && type != DEV_EV_ALERT) || t->n >= DEV_TRACE_EVENTS)
        return;
    t->ev[t->n++] = (dev_event){ ea_agent_now_ns(), tx, type, detail };
}

void ea_agent_trace_random(ea_agent *a, const uint8_t *random32)
{
    if (a->tr.have_random)
        return; /* a second ClientHello (after HelloRetryRequest) keeps the random */
    memcpy(a->tr.client_random, random32, sizeof a->tr.client_random);
    a->tr.have_random = true;
}

/* The ClientHello random is RAND_bytes_ex on the context's public DRBG. Ask
 * that DRBG which provider implements it. */
void ea_agent_random_source(ea_agent *a, char *out, size_t cap, bool *from_se)
{
    EVP_RAND_CTX *r = RAND_get0_public(a->libctx);
    EVP_RAND *alg = r ? EVP_RAND_CTX_get0_rand(r) : NULL;
    const OSSL_PROVIDER *p = alg ? EVP_RAND_get0_provider(alg) : NULL;
    const char *pname = p ? OSSL_PROVIDER_get0_name(p) : "unknown";
    const char *aname = alg ? EVP_RAND_get0_name(alg) : "unknown DRBG";

    *from_se = strcmp(pname, "edgeauth") == 0;
    if (*from_se)
        snprintf(out, cap, "from the SE (%s of provider %s)", aname, pname);
    else
        snprintf(out, cap, "host DRBG (%s of provider %s), not the SE (--tls-offload random moves it there)",
                 aname, pname);
}

static const char *msg_name(int type)
{
    static const struct {
        int type;
        const char *name;
    } names[] = {
        { SSL3_MT_CLIENT_HELLO, "ClientHello" },
        { SSL3_MT_SERVER_HELLO, "ServerHello" },
        { SSL3_MT_NEWSESSION_TICKET, "NewSessionTicket" },
        { SSL3_MT_ENCRYPTED_EXTENSIONS, "EncryptedExtensions" },
        { SSL3_MT_CERTIFICATE, "Certificate" },
        { SSL3_MT_SERVER_KEY_EXCHANGE, "ServerKeyExchange" },
        { SSL3_MT_CERTIFICATE_REQUEST, "CertificateRequest" },
        { SSL3_MT_SERVER_DONE, "ServerHelloDone" },
        { SSL3_MT_CERTIFICATE_VERIFY, "CertificateVerify" },
        { SSL3_MT_CLIENT_KEY_EXCHANGE, "ClientKeyExchange" },
        { SSL3_MT_FINISHED, "Finished" },
        { SSL3_MT_KEY_UPDATE, "KeyUpdate" },
        { DEV_EV_ALERT, "alert" },
        { DEV_EV_DONE, "done" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].type == type)
            return names[i].name;
    return "handshake message";
}

/* ---- phases -------------------------------------------------------------------- */

enum phase_key { PH_HELLO, PH_SERVER_HELLO, PH_KEX, PH_CHAIN, PH_SERVER_SIG, PH_CLIENT_CERT, PH_SE_SIGN, PH_FINISHED };

typedef struct phase_def {
    enum phase_key key;
    const char *id;   /* JSON */
    const char *name; /* text */
    bool tx;          /* the boundary that ends the phase */
    int type;
} phase_def;

static const phase_def tls13_full[] = {
    { PH_HELLO, "client_hello", "ClientHello sent", TX, SSL3_MT_CLIENT_HELLO },
    { PH_SERVER_HELLO, "server_hello", "ServerHello received (network + cloud)", RX, SSL3_MT_SERVER_HELLO },
    { PH_KEX, "key_exchange", "key exchange (ECDHE on the host)", RX, SSL3_MT_ENCRYPTED_EXTENSIONS },
    { PH_CHAIN, "server_chain", "server certificate chain verified", RX, SSL3_MT_CERTIFICATE_VERIFY },
    { PH_SERVER_SIG, "server_signature", "server CertificateVerify checked", RX, SSL3_MT_FINISHED },
    { PH_CLIENT_CERT, "client_certificate", "client Certificate sent (chain from the SE)", TX, SSL3_MT_CERTIFICATE },
    { PH_SE_SIGN, "se_sign", "CertificateVerify signed in the SE", TX, SSL3_MT_CERTIFICATE_VERIFY },
    { PH_FINISHED, "finished", "Finished", TX, DEV_EV_DONE },
};

static const phase_def tls12_full[] = {
    { PH_HELLO, "client_hello", "ClientHello sent", TX, SSL3_MT_CLIENT_HELLO },
    { PH_SERVER_HELLO, "server_hello", "ServerHello received (network + cloud)", RX, SSL3_MT_SERVER_HELLO },
    { PH_CHAIN, "server_chain", "server certificate chain verified", RX, SSL3_MT_SERVER_KEY_EXCHANGE },
    { PH_SERVER_SIG, "server_signature", "ServerKeyExchange signature checked", RX, SSL3_MT_SERVER_DONE },
    { PH_CLIENT_CERT, "client_certificate", "client Certificate sent (chain from the SE)", TX, SSL3_MT_CERTIFICATE },
    { PH_KEX, "key_exchange", "key exchange (ECDHE on the host)", TX, SSL3_MT_CLIENT_KEY_EXCHANGE },
    { PH_SE_SIGN, "se_sign", "CertificateVerify signed in the SE", TX, SSL3_MT_CERTIFICATE_VERIFY },
    { PH_FINISHED, "finished", "Finished (ours, then the server's)", TX, DEV_EV_DONE },
};

static const phase_def tls13_resumed[] = {
    { PH_HELLO, "client_hello", "ClientHello sent (with the saved ticket)", TX, SSL3_MT_CLIENT_HELLO },
    { PH_SERVER_HELLO, "server_hello", "ServerHello received (network + cloud)", RX, SSL3_MT_SERVER_HELLO },
    { PH_KEX, "key_exchange", "key exchange (PSK + ECDHE on the host)", RX, SSL3_MT_ENCRYPTED_EXTENSIONS },
    { PH_FINISHED, "finished", "Finished", TX, DEV_EV_DONE },
};

static const phase_def tls12_resumed[] = {
    { PH_HELLO, "client_hello", "ClientHello sent (with the saved session)", TX, SSL3_MT_CLIENT_HELLO },
    { PH_SERVER_HELLO, "server_hello", "ServerHello received (network + cloud)", RX, SSL3_MT_SERVER_HELLO },
    { PH_FINISHED, "finished", "Finished", TX, DEV_EV_DONE },
};

typedef struct phase_out {
    const phase_def *def;
    double ms;
} phase_out;

static double ms_between(uint64_t from, uint64_t to)
{
    return to > from ? (double)(to - from) / 1e6 : 0.0;
}

static const dev_event *find_event(const dev_trace *t, bool tx, int type)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->ev[i].tx == tx && t->ev[i].type == type)
            return &t->ev[i];
    return NULL;
}

/* Cut the handshake at each boundary that happened. A missing boundary
 * (e.g. no CertificateRequest) merges its phase into the next one. */
static size_t cut_phases(const dev_trace *t, const phase_def *defs, size_t ndefs, phase_out *out)
{
    uint64_t prev = t->start_ns;
    size_t n = 0;
    for (size_t i = 0; i < ndefs; i++) {
        uint64_t at = 0;
        if (defs[i].type == DEV_EV_DONE) {
            at = t->done_ns;
        } else {
            const dev_event *e = find_event(t, defs[i].tx, defs[i].type);
            at = e ? e->t_ns : 0;
        }
        if (at == 0 || at < prev)
            continue;
        out[n++] = (phase_out){ &defs[i], ms_between(prev, at) };
        prev = at;
    }
    return n;
}

static const phase_def *pick_defs(const SSL *ssl, size_t *n)
{
    bool v13 = ssl && SSL_version(ssl) >= TLS1_3_VERSION;
    bool resumed = ssl && SSL_session_reused(ssl);
#define PICK(tbl) (*n = sizeof tbl / sizeof tbl[0], tbl)
    if (v13)
        return resumed ? PICK(tls13_resumed) : PICK(tls13_full);
    return resumed ? PICK(tls12_resumed) : PICK(tls12_full);
#undef PICK
}

/* ---- notes per phase ------------------------------------------------------------- */

static void note_for(ea_agent *a, const SSL *ssl, enum phase_key k, char *out, size_t cap)
{
    const dev_trace *t = &a->tr;
    int nid = NID_undef;
    out[0] = '\0';
    switch (k) {
    case PH_HELLO: {
        char src[200];
        bool se = false;
        ea_agent_random_source(a, src, sizeof src, &se);
        if (t->have_random)
            snprintf(out, cap, "random %02x%02x%02x%02x...: %s", t->client_random[0], t->client_random[1],
                     t->client_random[2], t->client_random[3], src);
        break;
    }
    case PH_KEX:
        if (ssl && (nid = (int)SSL_get_negotiated_group((SSL *)ssl)) != NID_undef) {
            const char *g = SSL_group_to_name((SSL *)ssl, nid);
            snprintf(out, cap, "group %s", g ? g : OBJ_nid2sn(nid));
        }
        break;
    case PH_CHAIN:
        if (t->verified)
            snprintf(out, cap, "ea_pki_verify_chain %.2f ms: %s, %s %s, %s", ms_between(0, t->verify_ns),
                     ea_verify_reason_str(t->verify_reason), a->peer_is_ip ? "IP" : "name", a->peer_name,
                     t->peer_subject);
        break;
    case PH_SE_SIGN:
        if (ssl && SSL_get_signature_nid((SSL *)ssl, &nid))
            snprintf(out, cap, "key 0x%08X, ECDSA with %s", EA_AGENT_KEY_ID, OBJ_nid2sn(nid));
        else
            snprintf(out, cap, "key 0x%08X", EA_AGENT_KEY_ID);
        break;
    case PH_FINISHED:
        if (ssl)
            snprintf(out, cap, "%s %s", SSL_get_version(ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
        break;
    default:
        break;
    }
}

/* ---- output ---------------------------------------------------------------------- */

static void timeline_text(ea_agent *a)
{
    const dev_trace *t = &a->tr;
    fprintf(a->out, "trace:   messages:");
    for (size_t i = 0; i < t->n; i++) {
        const dev_event *e = &t->ev[i];
        fprintf(a->out, " %s%s", e->tx ? ">" : "<", msg_name(e->type));
        if (e->type == DEV_EV_ALERT)
            fprintf(a->out, "(%s)", SSL_alert_desc_string_long(e->detail & 0xFF));
        fprintf(a->out, "@%.2f", ms_between(t->start_ns, e->t_ns));
    }
    fprintf(a->out, " (ms)\n");
}

static void report_text(ea_agent *a, const SSL *ssl, const phase_out *ph, size_t n, const char *why)
{
    const dev_trace *t = &a->tr;
    char note[400];
    double total = ms_between(t->start_ns, t->done_ns ? t->done_ns : ea_agent_now_ns());

    if (ssl)
        fprintf(a->out, "trace: TLS handshake #%lu with %s:%d: %s, %s, %s\n", a->hs_count, a->host, a->port,
                SSL_session_reused(ssl) ? "resumed session" : "full handshake", SSL_get_version(ssl),
                SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    else
        fprintf(a->out, "trace: TLS handshake #%lu with %s:%d failed: %s\n", a->hs_count, a->host, a->port, why);
    fprintf(a->out, "trace:   %-52s %8.2f ms\n", "TCP connect", ms_between(t->attempt_ns, t->start_ns));
    for (size_t i = 0; i < n; i++) {
        note_for(a, ssl, ph[i].def->key, note, sizeof note);
        const char *name = ph[i].def->name, *host = strstr(name, "on the host");
        char moved[80];
        if (ph[i].def->key == PH_KEX && host && (a->offload & EA_AGENT_OFFLOAD_ECDHE)) {
            /* --tls-offload ecdhe: the ephemeral key and ECDH are the SE's. */
            snprintf(moved, sizeof moved, "%.*sin the SE%s", (int)(host - name), name, host + strlen("on the host"));
            name = moved;
        }
        fprintf(a->out, "trace:   %zu %-50s %8.2f ms%s%s\n", i + 1, name, ph[i].ms, note[0] ? "  " : "", note);
    }
    if (ssl && SSL_session_reused(ssl))
        fprintf(a->out, "trace:   (resumed: no certificates and no CertificateVerify; the SE was not used, "
                        "the chain was verified on the full handshake)\n");
    else if (ssl && t->offered_session)
        fprintf(a->out, "trace:   (the saved session was offered but the server did a full handshake)\n");
    fprintf(a->out, "trace:   %-52s %8.2f ms\n", ssl ? "handshake total" : "until the failure", total);
    timeline_text(a);
}

static void report_json(ea_agent *a, const SSL *ssl, const phase_out *ph, size_t n, const char *why)
{
    const dev_trace *t = &a->tr;
    char src[200];
    bool se = false;
    FILE *f = a->out;

    ea_agent_random_source(a, src, sizeof src, &se);
    fprintf(f, "{\"event\":\"handshake\",\"n\":%lu,\"ok\":%s", a->hs_count, ssl ? "true" : "false");
    if (ssl) {
        int nid = (int)SSL_get_negotiated_group((SSL *)ssl);
        const char *g = nid != NID_undef ? SSL_group_to_name((SSL *)ssl, nid) : NULL;
        fprintf(f, ",\"resumed\":%s,\"version\":\"%s\",\"cipher\":\"%s\",\"group\":", SSL_session_reused(ssl) ? "true" : "false",
                SSL_get_version(ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
        ea_agent_json_str(f, g ? g : "");
    } else {
        fprintf(f, ",\"error\":");
        ea_agent_json_str(f, why);
    }
    fprintf(f, ",\"tcp_ms\":%.3f,\"random_from_se\":%s,\"phases\":[", ms_between(t->attempt_ns, t->start_ns),
            se ? "true" : "false");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s{\"phase\":\"%s\",\"ms\":%.3f}", i ? "," : "", ph[i].def->id, ph[i].ms);
    fprintf(f, "]");
    if (t->verified) {
        fprintf(f, ",\"verify_ms\":%.3f,\"verify\":\"%s\"", ms_between(0, t->verify_ns),
                ea_verify_reason_str(t->verify_reason));
    }
    fprintf(f, ",\"total_ms\":%.3f}\n", ms_between(t->start_ns, t->done_ns ? t->done_ns : ea_agent_now_ns()));
}

void ea_agent_trace_report(ea_agent *a, const SSL *ssl, const char *why)
{
    phase_out ph[8];
    size_t ndefs = 0, n;
    const phase_def *defs;

    if (a->tr.reported || a->tr.start_ns == 0)
        return;
    a->tr.reported = true;
    a->hs_count++;
    defs = pick_defs(ssl, &ndefs);
    n = cut_phases(&a->tr, defs, ndefs, ph);
    if (ssl) {
        a->st.last_handshake_ms = ms_between(a->tr.start_ns, a->tr.done_ns);
        for (size_t i = 0; i < n; i++)
            if (ph[i].def->key == PH_SE_SIGN)
                a->st.last_sign_ms = ph[i].ms;
    }
    if (!a->o.trace)
        return;
    if (a->o.json)
        report_json(a, ssl, ph, n, why ? why : "");
    else
        report_text(a, ssl, ph, n, why ? why : "");
    fflush(a->out);
}

void ea_agent_trace_connack(ea_agent *a)
{
    if (!a->o.trace || a->tr.done_ns == 0)
        return;
    if (a->o.json)
        fprintf(a->out, "{\"event\":\"connack_timing\",\"after_handshake_ms\":%.3f,\"since_connect_ms\":%.3f}\n",
                ms_between(a->tr.done_ns, a->connack_ns), ms_between(a->tr.attempt_ns, a->connack_ns));
    else
        fprintf(a->out, "trace: MQTT CONNACK %.2f ms after the handshake (%.2f ms after the TCP connect began)\n",
                ms_between(a->tr.done_ns, a->connack_ns), ms_between(a->tr.attempt_ns, a->connack_ns));
}
