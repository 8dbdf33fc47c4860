/* `edgeauth cloud ...`: the OEM cloud — a Mosquitto 2.0 broker with mutual
 * TLS and our plugin (edgeauth_cloud.so), and its device registry.
 *
 *   edgeauth cloud init --dir CLOUD --pki PKI [--plugin PATH] [--port N] [--bind ADDR]
 *                       [--server-cert PEM --server-key PEM] [--backend-cert PEM]...
 *                       [--auto-register] [--force]
 *   edgeauth cloud start|stop|status [--dir CLOUD]
 *   edgeauth cloud devices [--dir CLOUD]
 *   edgeauth cloud revoke [--dir CLOUD] DEVICE-ID
 *   edgeauth cloud import [--dir CLOUD] FILE | --manifest FILE --signer PEM [--trust PEM]
 *
 * CLOUD defaults to $EDGEAUTH_CLOUD, else ./cloud. Every command takes
 * --json (one JSON object on stdout). Errors go to stderr as "edgeauth
 * cloud CMD: <reason>"; exit status 1 for a failure, 2 for a usage error,
 * and `status` exits 3 when the broker is not running (as LSB init scripts
 * do). docs/CLOUD.md explains the configuration this writes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"
#include "cloud/audit.h"
#include "cloud/jail.h"
#include "cloud/registry.h"
#include "common/util.h"
#include "edgeauth/manifest.h"
#include "edgeauth/pki.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_NOT_RUNNING 3

#define PATH_LEN 4096
#define ERR_LEN (PATH_LEN + 512) /* messages name paths */
#define CONF_MAX (256u * 1024u)
#define IMPORT_MAX (256u * 1024u * 1024u)
#define MANIFEST_MAX (256u * 1024u * 1024u)
#define BACKENDS_MAX 16
#define DEFAULT_PORT 8883u
#define DEFAULT_BIND "127.0.0.1"
#define DEFAULT_MOSQUITTO "/usr/sbin/mosquitto"
#define START_TIMEOUT_S 10u
#define STOP_TIMEOUT_S 10u

#ifndef EA_CLOUD_PLUGIN_INSTALLED
#define EA_CLOUD_PLUGIN_INSTALLED "/usr/local/lib/edgeauth/edgeauth_cloud.so"
#endif

enum {
    O_DIR = 1u << 0,
    O_PKI = 1u << 1,
    O_PLUGIN = 1u << 2,
    O_PORT = 1u << 3,
    O_BIND = 1u << 4,
    O_SERVER_CERT = 1u << 5,
    O_SERVER_KEY = 1u << 6,
    O_BACKEND = 1u << 7,
    O_AUTO = 1u << 8,
    O_FORCE = 1u << 9,
    O_MOSQUITTO = 1u << 10,
    O_TIMEOUT = 1u << 11,
    O_MANIFEST = 1u << 12,
    O_SIGNER = 1u << 13,
    O_TRUST = 1u << 14,
    O_TRUST_CA = 1u << 15,
};
#define OPT_CODE0 256

static const struct opt_def {
    const char *name;
    int has_arg;
    const char *arg;
    const char *help;
} opt_defs[] = { /* index i has bit 1u << i */
    { "dir", required_argument, "CLOUD", "the cloud's directory (default $EDGEAUTH_CLOUD, else ./cloud)" },
    { "pki", required_argument, "PKI", "the OEM PKI: root.pem, intermediate.pem and, if present, crl.pem" },
    { "plugin", required_argument, "PATH", "edgeauth_cloud.so (default: next to this program, else installed)" },
    { "port", required_argument, "N", "listener port (default 8883)" },
    { "bind", required_argument, "ADDR", "listener address (default 127.0.0.1)" },
    { "server-cert", required_argument, "PEM", "the broker's certificate (default: issued from PKI by edgeauth ca)" },
    { "server-key", required_argument, "PEM", "its private key" },
    { "backend-cert", required_argument, "PEM", "certificate of a backend application (repeatable)" },
    { "auto-register", no_argument, NULL, "register unknown devices with a valid chain on first connect" },
    { "force", no_argument, NULL, "rewrite the configuration of an existing CLOUD (the registry is kept)" },
    { "mosquitto", required_argument, "PATH", "the broker program (default /usr/sbin/mosquitto)" },
    { "timeout", required_argument, "S", "seconds to wait for the broker (default 10)" },
    { "manifest", required_argument, "FILE", "a signed manifest (JWS entries) instead of a registry file" },
    { "signer", required_argument, "PEM", "the manifest signer's certificate" },
    { "trust", required_argument, "PEM", "anchors for the manifest's device chains (default: the cloud's CA file)" },
    { "trust-ca", required_argument, "PEM", "another trust anchor for devices, e.g. a chip vendor's CA (repeatable)" },
};

typedef struct cloud_args {
    unsigned seen;
    const char *dir, *pki, *plugin, *bind, *server_cert, *server_key, *mosquitto, *manifest, *signer, *trust;
    const char *backend[BACKENDS_MAX];
    size_t n_backend;
    const char *extra_ca[BACKENDS_MAX];
    size_t n_extra_ca;
    unsigned port, timeout;
    const char *positional;
    bool json;
} cloud_args;

typedef struct cloud_cmd cloud_cmd;
typedef int cloud_fn(const cloud_cmd *cmd, cloud_args *a);
static cloud_fn c_init, c_start, c_stop, c_status, c_devices, c_revoke, c_import;

struct cloud_cmd {
    const char *name;
    cloud_fn *fn;
    unsigned opts, need;
    int positional; /* 0 none, 1 required, -1 optional */
    const char *usage;
    const char *desc;
};

static const cloud_cmd cloud_cmds[] = {
    { "init", c_init,
      O_DIR | O_PKI | O_PLUGIN | O_PORT | O_BIND | O_SERVER_CERT | O_SERVER_KEY | O_BACKEND | O_AUTO | O_FORCE |
          O_TRUST_CA,
      O_PKI, 0,
      "init --dir CLOUD --pki PKI [--plugin PATH] [--port N] [--bind ADDR]\n"
      "          [--server-cert PEM --server-key PEM] [--backend-cert PEM]... [--trust-ca PEM]...\n"
      "          [--auto-register] [--force]",
      "write CLOUD/mosquitto.conf (mutual TLS, our plugin) and create the device registry" },
    { "start", c_start, O_DIR | O_MOSQUITTO | O_TIMEOUT, 0, 0, "start [--dir CLOUD] [--mosquitto PATH] [--timeout S]",
      "start the broker in the background and wait until it listens" },
    { "stop", c_stop, O_DIR | O_TIMEOUT, 0, 0, "stop [--dir CLOUD] [--timeout S]", "stop the broker (SIGTERM)" },
    { "status", c_status, O_DIR, 0, 0, "status [--dir CLOUD]", "broker pid, listener and device counts" },
    { "devices", c_devices, O_DIR, 0, 0, "devices [--dir CLOUD]", "the device registry" },
    { "revoke", c_revoke, O_DIR, 0, 1, "revoke [--dir CLOUD] DEVICE-ID",
      "revoke a device: refused from now on, its live session dropped within a second" },
    { "import", c_import, O_DIR | O_MANIFEST | O_SIGNER | O_TRUST, 0, -1,
      "import [--dir CLOUD] FILE | --manifest FILE --signer PEM [--trust PEM]",
      "add devices from a registry file (JSON lines from provisioning) or a signed manifest" },
};

/* ---- output ------------------------------------------------------------------ */

static const char *cmd_name = "cloud";

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "edgeauth cloud %s: ", cmd_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A JSON object built as text, printed on one line. */
typedef struct jout {
    char buf[65536];
    size_t len;
    bool overflow;
} jout;

__attribute__((format(printf, 2, 3))) static void jraw(jout *j, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (j->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof j->buf - j->len)
        j->overflow = true;
    else
        j->len += (size_t)n;
}

static void jstr(jout *j, const char *key, const char *val)
{
    if (j->overflow)
        return;
    jraw(j, "%s\"%s\":", j->len && j->buf[j->len - 1] != '{' && j->buf[j->len - 1] != '[' ? "," : "", key);
    if (!val)
        jraw(j, "null");
    else if (!ea_audit_json_string(j->buf, sizeof j->buf, &j->len, val, 4096))
        j->overflow = true;
}

static void jnum(jout *j, const char *key, long long v)
{
    jraw(j, "%s\"%s\":%lld", j->len && j->buf[j->len - 1] != '{' ? "," : "", key, v);
}

static void jbool(jout *j, const char *key, bool v)
{
    jraw(j, "%s\"%s\":%s", j->len && j->buf[j->len - 1] != '{' ? "," : "", key, v ? "true" : "false");
}

static void jbegin(jout *j, bool ok)
{
    j->len = 0;
    j->overflow = false;
    jraw(j, "{\"ok\":%s", ok ? "true" : "false");
    jraw(j, ",\"command\":\"cloud %s\"", cmd_name);
}

static void jprint(jout *j)
{
    if (j->overflow) {
        printf("{\"ok\":false,\"command\":\"cloud %s\",\"error\":\"output too large for one object\"}\n", cmd_name);
        return;
    }
    printf("%.*s}\n", (int)j->len, j->buf);
}

/* A failure: on stderr, and with --json also as {"ok":false,...} on stdout. */
__attribute__((format(printf, 2, 3))) static int failj(const cloud_args *a, const char *fmt, ...)
{
    char msg[ERR_LEN + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail("%s", msg);
    if (a->json) {
        jout *j = calloc(1, sizeof *j);
        if (j) {
            jbegin(j, false);
            jstr(j, "error", msg);
            jprint(j);
            free(j);
        }
    }
    return EXIT_FAIL;
}

static void fmt_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!t || !gmtime_r(&tt, &tm)) {
        snprintf(out, 32, "-");
        return;
    }
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- paths and the configuration we wrote --------------------------------------- */

static const char *cloud_dir(const cloud_args *a)
{
    const char *env = getenv("EDGEAUTH_CLOUD");
    return a->dir ? a->dir : env && *env ? env : "cloud";
}

static bool join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

/* What `start`, `status`, `revoke`... need from CLOUD/mosquitto.conf. */
typedef struct conf {
    char path[PATH_LEN];
    char pid_file[PATH_LEN], log_file[PATH_LEN], registry[PATH_LEN], audit[PATH_LEN], ca_file[PATH_LEN];
    char bind[64];
    unsigned port;
} conf;

static void conf_value(const char *text, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = text;

    out[0] = '\0';
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > klen && !strncmp(p, key, klen) && p[klen] == ' ') {
            size_t vlen = len - klen - 1;
            if (vlen < cap) {
                memcpy(out, p + klen + 1, vlen);
                out[vlen] = '\0';
            }
            return;
        }
        p = eol ? eol + 1 : NULL;
    }
}

static bool load_conf(const char *dir, conf *c, char *err, size_t errlen)
{
    uint8_t *text = NULL;
    size_t len = 0;
    char listener[128], *sp;
    ea_err rc;

    memset(c, 0, sizeof *c);
    if (!join(c->path, sizeof c->path, dir, "mosquitto.conf")) {
        snprintf(err, errlen, "path too long");
        return false;
    }
    if ((rc = ea_file_read(c->path, CONF_MAX, &text, &len)) != EA_OK) {
        snprintf(err, errlen, "cannot read %s (%s): run `edgeauth cloud init` first", c->path, ea_err_str(rc));
        return false;
    }
    char *t = realloc(text, len + 1);
    if (!t) {
        free(text);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    t[len] = '\0';
    conf_value(t, "pid_file", c->pid_file, sizeof c->pid_file);
    conf_value(t, "log_dest file", c->log_file, sizeof c->log_file);
    conf_value(t, "plugin_opt_registry", c->registry, sizeof c->registry);
    conf_value(t, "plugin_opt_audit_file", c->audit, sizeof c->audit);
    conf_value(t, "plugin_opt_ca_file", c->ca_file, sizeof c->ca_file);
    conf_value(t, "listener", listener, sizeof listener);
    free(t);
    c->port = DEFAULT_PORT;
    snprintf(c->bind, sizeof c->bind, "%s", DEFAULT_BIND);
    if (listener[0]) {
        c->port = (unsigned)strtoul(listener, NULL, 10);
        if ((sp = strchr(listener, ' ')))
            snprintf(c->bind, sizeof c->bind, "%s", sp + 1);
    }
    if (!c->pid_file[0] || !c->registry[0]) {
        snprintf(err, errlen, "%s was not written by `edgeauth cloud init` (no pid_file or plugin_opt_registry)",
                 c->path);
        return false;
    }
    return true;
}

static ea_registry *open_registry(const cloud_args *a, conf *c)
{
    char err[ERR_LEN];
    ea_registry *r = NULL;

    if (!load_conf(cloud_dir(a), c, err, sizeof err)) {
        failj(a, "%s", err);
        return NULL;
    }
    if (ea_registry_open(c->registry, 0, &r, err, sizeof err) != EA_OK) {
        failj(a, "cannot open the registry %s: %s", c->registry, err);
        return NULL;
    }
    return r;
}

/* An operator's action, in the same audit trail as the broker's events. */
static void audit_operator(const conf *c, ea_audit_line *l)
{
    ea_audit *au = NULL;

    if (!c->audit[0])
        return;
    if (ea_audit_open(c->audit, &au, NULL, 0) != EA_OK || ea_audit_write(au, l) != EA_OK)
        fprintf(stderr, "edgeauth cloud %s: warning: cannot append to %s\n", cmd_name, c->audit);
    ea_audit_close(au);
}

/* ---- the broker process ---------------------------------------------------------- */

static pid_t read_pid(const char *pid_file)
{
    uint8_t *text = NULL;
    size_t len = 0;
    long v = 0;
    char buf[32];

    if (ea_file_read(pid_file, 64, &text, &len) != EA_OK)
        return 0;
    snprintf(buf, sizeof buf, "%.*s", (int)len, (const char *)text);
    free(text);
    v = strtol(buf, NULL, 10);
    return v > 1 && v < INT_MAX ? (pid_t)v : 0;
}

/* Is pid a live (not zombie) mosquitto? A stale pid file may name another program. */
static bool is_broker(pid_t pid)
{
    char path[64], stat[512];
    FILE *f;
    size_t n;
    char *rp;

    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "re")))
        return false;
    n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    /* "pid (comm) S ..." — comm may hold spaces and parentheses: use the last ')'. */
    if (!(rp = strrchr(stat, ')')) || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X')
        return false;
    return strstr(stat, "(mosquitto)") != NULL;
}

/* Is a socket listening on the port? Read from the kernel's table rather
 * than by connecting: a probe connection would reach the broker as a
 * failed TLS handshake and land in the audit trail. */
static bool port_listens(unsigned port)
{
    static const char *const tables[] = { "/proc/net/tcp", "/proc/net/tcp6" };
    char line[512];

    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        FILE *f = fopen(tables[i], "re");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            unsigned lport, state;
            /* "  0: 0100007F:4A33 00000000:0000 0A ..." */
            if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", &lport, &state) == 2 && lport == port &&
                state == 0x0A) {
                fclose(f);
                return true;
            }
        }
        fclose(f);
    }
    return false;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return path[0] && stat(path, &st) == 0 ? st.st_size : 0;
}

/* The lines a log gained since offset `from` that say what went wrong (at
 * most the last 8). */
static void print_log_errors(const char *path, off_t from)
{
    uint8_t *text = NULL;
    size_t len = 0;
    const char *lines[8];
    size_t n = 0;

    if (!path[0] || ea_file_read(path, 4u << 20, &text, &len) != EA_OK)
        return;
    char *t = realloc(text, len + 1);
    if (!t) {
        free(text);
        return;
    }
    t[len] = '\0';
    for (char *p = strtok(t + ((size_t)from <= len ? (size_t)from : len), "\n"); p; p = strtok(NULL, "\n"))
        if (strstr(p, "rror") || strstr(p, "edgeauth:") || strstr(p, "nable"))
            lines[n++ % 8] = p;
    for (size_t i = n > 8 ? n - 8 : 0; i < n; i++)
        fprintf(stderr, "  %s: %s\n", path, lines[i % 8]);
    free(t);
}

/* ---- init -------------------------------------------------------------------- */

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* An absolute path for the configuration (the broker may run elsewhere). */
static bool absolute(const char *in, char *out, size_t cap)
{
    char *r = realpath(in, NULL);
    bool ok = r && strlen(r) < cap;
    if (ok)
        snprintf(out, cap, "%s", r);
    free(r);
    return ok;
}

/* Concatenate PEM files into one (atomically, mode given). */
static bool concat_files(const char *out, const char *const *in, size_t n, unsigned mode, char *err, size_t errlen)
{
    uint8_t *all = NULL;
    size_t len = 0;
    bool ok = false;

    for (size_t i = 0; i < n; i++) {
        uint8_t *part = NULL;
        size_t plen = 0;
        if (ea_file_read(in[i], 16u << 20, &part, &plen) != EA_OK) {
            snprintf(err, errlen, "cannot read %s", in[i]);
            goto out;
        }
        uint8_t *grown = realloc(all, len + plen + 1);
        if (!grown) {
            free(part);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        all = grown;
        memcpy(all + len, part, plen);
        len += plen;
        if (plen && all[len - 1] != '\n')
            all[len++] = '\n';
        ea_cleanse(part, plen); /* one of them may be a key */
        free(part);
    }
    if (ea_file_write_atomic(out, all, len, mode) != EA_OK) {
        snprintf(err, errlen, "cannot write %s: %s", out, strerror(errno));
        goto out;
    }
    ok = true;
out:
    if (all)
        ea_cleanse(all, len);
    free(all);
    return ok;
}

/* The first certificate of a PEM file, or NULL. */
static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "re");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return x;
}

/* Every certificate of a PEM file. */
static STACK_OF(X509) *read_certs(const char *path)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    FILE *f = fopen(path, "re");
    X509 *x;

    if (!sk || !f) {
        sk_X509_free(sk);
        if (f)
            fclose(f);
        return NULL;
    }
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)))
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            break;
        }
    fclose(f);
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
}

/* The broker's certificate file: the leaf, then the intermediate(s) of
 * inter_file that issued it (not the PKI's other lines), so a device that
 * trusts only the root can verify the broker. */
static bool write_server_chain(const char *out, X509 *leaf, const char *inter_file, char *err, size_t errlen)
{
    STACK_OF(X509) *inters = read_certs(inter_file);
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm = NULL;
    bool ok = b && PEM_write_bio_X509(b, leaf) == 1;

    for (int i = 0; ok && i < sk_X509_num(inters); i++) {
        X509 *ca = sk_X509_value(inters, i);
        if (X509_check_issued(ca, leaf) == X509_V_OK)
            ok = PEM_write_bio_X509(b, ca) == 1;
    }
    if (ok && BIO_get_mem_ptr(b, &bm) == 1 && ea_file_write_atomic(out, bm->data, bm->length, 0644) == EA_OK) {
        ok = true;
    } else {
        snprintf(err, errlen, "cannot write %s", out);
        ok = false;
    }
    BIO_free(b);
    sk_X509_pop_free(inters, X509_free);
    return ok;
}

/* A server certificate for the broker, from the PKI's own CA (edgeauth ca). */
static bool issue_server_cert(const char *pki, const char *bind_addr, const char *key_path, const char *leaf_path,
                              char *err, size_t errlen)
{
    char json[PATH_LEN], san[160], cerr[512] = "";
    ea_ca *ca = NULL;
    ea_err rc;

    if (!join(json, sizeof json, pki, "ca.json") || !file_exists(json)) {
        snprintf(err, errlen, "%s was not made by `edgeauth ca init`: give --server-cert and --server-key", pki);
        return false;
    }
    if (!strcmp(bind_addr, "0.0.0.0") || !strcmp(bind_addr, "127.0.0.1"))
        snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1");
    else
        snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1,IP:%s", bind_addr);
    if ((rc = ea_ca_open(pki, &ca, cerr, sizeof cerr)) != EA_OK) {
        snprintf(err, errlen, "cannot open the CA %s: %s", pki, cerr[0] ? cerr : ea_err_str(rc));
        return false;
    }
    rc = ea_ca_issue_server(ca, "localhost", san, key_path, leaf_path, cerr, sizeof cerr);
    ea_ca_close(ca);
    if (rc != EA_OK) {
        snprintf(err, errlen, "cannot issue the server certificate: %s", cerr[0] ? cerr : ea_err_str(rc));
        return false;
    }
    return true;
}

static bool default_plugin(char *out, size_t cap)
{
    char exe[PATH_LEN], cand[PATH_LEN + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *env = getenv("EDGEAUTH_CLOUD_PLUGIN");

    if (env && *env)
        return absolute(env, out, cap);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            /* The build tree and a plain install: BIN/../lib/edgeauth_cloud.so */
            snprintf(cand, sizeof cand, "%s/../lib/edgeauth_cloud.so", exe);
            if (file_exists(cand))
                return absolute(cand, out, cap);
        }
    }
    if (file_exists(EA_CLOUD_PLUGIN_INSTALLED))
        return absolute(EA_CLOUD_PLUGIN_INSTALLED, out, cap);
    return false;
}

typedef struct init_paths {
    char dir[PATH_LEN], pki[PATH_LEN], plugin[PATH_LEN];
    char root[PATH_LEN], inter[PATH_LEN], crl[PATH_LEN], anchors[PATH_LEN];
    char bundle[PATH_LEN], cert[PATH_LEN], key[PATH_LEN], leaf[PATH_LEN], backends[PATH_LEN];
    char registry[PATH_LEN], audit[PATH_LEN], log[PATH_LEN], pid[PATH_LEN], conf[PATH_LEN];
    bool have_crl, have_backends;
} init_paths;

static bool write_conf(const cloud_args *a, const init_paths *p, char *err, size_t errlen)
{
    struct passwd *pw = getpwuid(geteuid());
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    time_t now = time(NULL);
    char when[32];
    bool ok;

    if (!f) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    fmt_time((int64_t)now, when);
    fprintf(f,
            "# Written by `edgeauth cloud init` on %s; docs/CLOUD.md explains every line.\n"
            "# Rewrite it with `edgeauth cloud init --force` rather than by hand.\n\n"
            "# Global security settings. Our plugin needs MOSQ_EVT_TICK (live revocation),\n"
            "# which Mosquitto 2.0.11 delivers only when per_listener_settings is false.\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            "# TLS 1.3 + Nagle holds the CONNACK ~40 ms behind the session tickets (spec §3.2).\n"
            "set_tcp_nodelay true\n"
            "# Run as the user who wrote this file: the broker writes its database,\n"
            "# log and pid file here and opens the registry read-write.\n"
            "user %s\n"
            "pid_file %s\n"
            "persistence true\n"
            "persistence_location %s/\n"
            "autosave_interval 60\n"
            "log_dest file %s\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "log_timestamp true\n"
            "connection_messages true\n\n",
            when, pw ? pw->pw_name : "root", p->pid, p->dir, p->log);
    fprintf(f,
            "# Identity, topic jail, registry, revocation and audit: edgeauth_cloud.so.\n"
            "plugin %s\n"
            "plugin_opt_ca_file %s\n"
            "plugin_opt_intermediate_file %s\n",
            p->plugin, p->anchors[0] ? p->anchors : p->root, p->inter);
    if (p->have_crl)
        fprintf(f, "plugin_opt_crl_file %s\n", p->crl);
    fprintf(f,
            "plugin_opt_registry %s\n"
            "plugin_opt_audit_file %s\n"
            "plugin_opt_broker_log %s\n",
            p->registry, p->audit, p->log);
    if (p->have_backends)
        fprintf(f, "plugin_opt_backend_file %s\n", p->backends);
    fprintf(f, "plugin_opt_auto_register %s\n\n", (a->seen & O_AUTO) ? "true" : "false");
    fprintf(f,
            "# Devices: mutual TLS only. The broker checks the chain against cafile (root\n"
            "# and intermediate, so a device may send its leaf alone); the plugin then\n"
            "# applies our profile and the CRLs of the whole chain. No crlfile here: the\n"
            "# broker's checks only the leaf and only on SIGHUP; the plugin's is live.\n"
            "# use_identity_as_username stays off: it would skip the plugin's identity check.\n"
            "listener %u %s\n"
            "certfile %s\n"
            "keyfile %s\n"
            "cafile %s\n"
            "require_certificate true\n"
            "# The minimum: TLS 1.2 and 1.3 are accepted.\n"
            "tls_version tlsv1.2\n",
            a->port ? a->port : DEFAULT_PORT, a->bind ? a->bind : DEFAULT_BIND, p->cert, p->key, p->bundle);
    ok = fflush(f) == 0 && !ferror(f);
    fclose(f);
    if (ok && ea_file_write_atomic(p->conf, text, len, 0640) != EA_OK) {
        snprintf(err, errlen, "cannot write %s: %s", p->conf, strerror(errno));
        ok = false;
    } else if (!ok) {
        snprintf(err, errlen, "out of memory");
    }
    free(text);
    return ok;
}

static int c_init(const cloud_cmd *cmd, cloud_args *a)
{
    init_paths *p = calloc(1, sizeof *p);
    const char *dir = cloud_dir(a);
    char err[ERR_LEN] = "", tmp[PATH_LEN];
    ea_registry *reg = NULL;
    int rc = EXIT_FAIL;
    X509 *srv = NULL;

    (void)cmd;
    if (!p)
        return failj(a, "out of memory");
    if ((a->seen & O_SERVER_CERT) != ((a->seen & O_SERVER_KEY) ? O_SERVER_CERT : 0)) {
        fail("--server-cert and --server-key go together");
        free(p);
        return EXIT_USAGE;
    }
    if (ea_mkdir_p(dir, 0750) != EA_OK || !absolute(dir, p->dir, sizeof p->dir)) {
        rc = failj(a, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    if (!join(p->conf, sizeof p->conf, p->dir, "mosquitto.conf"))
        goto toolong;
    if (file_exists(p->conf) && !(a->seen & O_FORCE)) {
        rc = failj(a, "%s exists: use --force to rewrite the configuration (the registry is kept)", p->conf);
        goto out;
    }
    if (!absolute(a->pki, p->pki, sizeof p->pki)) {
        rc = failj(a, "no PKI directory %s", a->pki);
        goto out;
    }
    if (!join(p->root, sizeof p->root, p->pki, "root.pem") || !join(p->inter, sizeof p->inter, p->pki, "intermediate.pem") ||
        !join(p->crl, sizeof p->crl, p->pki, "crl.pem") || !join(p->bundle, sizeof p->bundle, p->dir, "trust-bundle.pem") ||
        !join(p->cert, sizeof p->cert, p->dir, "server.pem") || !join(p->key, sizeof p->key, p->dir, "server.key") ||
        !join(p->leaf, sizeof p->leaf, p->dir, "server-leaf.pem") ||
        !join(p->backends, sizeof p->backends, p->dir, "backends.pem") ||
        !join(p->registry, sizeof p->registry, p->dir, "registry.db") ||
        !join(p->audit, sizeof p->audit, p->dir, "audit.jsonl") || !join(p->log, sizeof p->log, p->dir, "mosquitto.log") ||
        !join(p->pid, sizeof p->pid, p->dir, "mosquitto.pid"))
        goto toolong;
    if (!file_exists(p->root) || !file_exists(p->inter)) {
        rc = failj(a, "%s needs root.pem and intermediate.pem", p->pki);
        goto out;
    }
    p->have_crl = file_exists(p->crl);
    if (a->plugin ? !absolute(a->plugin, p->plugin, sizeof p->plugin) : !default_plugin(p->plugin, sizeof p->plugin)) {
        rc = failj(a, "cannot find the plugin %s: give --plugin PATH to edgeauth_cloud.so",
                   a->plugin ? a->plugin : "edgeauth_cloud.so");
        goto out;
    }
    /* Other anchors (a chip vendor's CA): one anchors file for the plugin. */
    if (a->n_extra_ca) {
        const char *in[BACKENDS_MAX + 1] = { p->root };
        for (size_t i = 0; i < a->n_extra_ca; i++) {
            X509 *x = read_cert(a->extra_ca[i]);
            if (!x) {
                rc = failj(a, "--trust-ca %s holds no PEM certificate", a->extra_ca[i]);
                goto out;
            }
            X509_free(x);
            in[i + 1] = a->extra_ca[i];
        }
        if (!join(p->anchors, sizeof p->anchors, p->dir, "anchors.pem"))
            goto toolong;
        if (!concat_files(p->anchors, in, a->n_extra_ca + 1, 0644, err, sizeof err)) {
            rc = failj(a, "%s", err);
            goto out;
        }
    }
    /* The broker's trust: anchors + intermediates, so a leaf sent alone verifies. */
    {
        const char *in[2] = { p->anchors[0] ? p->anchors : p->root, p->inter };
        if (!concat_files(p->bundle, in, 2, 0644, err, sizeof err)) {
            rc = failj(a, "%s", err);
            goto out;
        }
    }
    /* The broker's own certificate, sent with the intermediate above it. */
    if (a->server_cert) {
        const char *in[1] = { a->server_key };
        if (!concat_files(p->key, in, 1, 0600, err, sizeof err)) {
            rc = failj(a, "%s", err);
            goto out;
        }
        snprintf(tmp, sizeof tmp, "%s", a->server_cert);
    } else {
        if (!issue_server_cert(p->pki, a->bind ? a->bind : DEFAULT_BIND, p->key, p->leaf, err, sizeof err)) {
            rc = failj(a, "%s", err);
            goto out;
        }
        snprintf(tmp, sizeof tmp, "%s", p->leaf);
    }
    if (!(srv = read_cert(tmp))) {
        rc = failj(a, "%s holds no PEM certificate", tmp);
        goto out;
    }
    if (!write_server_chain(p->cert, srv, p->inter, err, sizeof err)) {
        rc = failj(a, "%s", err);
        goto out;
    }
    if (a->n_backend) {
        for (size_t i = 0; i < a->n_backend; i++) {
            X509 *x = read_cert(a->backend[i]);
            if (!x) {
                rc = failj(a, "--backend-cert %s holds no PEM certificate", a->backend[i]);
                goto out;
            }
            X509_free(x);
        }
        if (!concat_files(p->backends, a->backend, a->n_backend, 0644, err, sizeof err)) {
            rc = failj(a, "%s", err);
            goto out;
        }
        p->have_backends = true;
    }
    if (ea_registry_open(p->registry, EA_REGISTRY_CREATE, &reg, err, sizeof err) != EA_OK) {
        rc = failj(a, "cannot create the registry %s: %s", p->registry, err);
        goto out;
    }
    if (!write_conf(a, p, err, sizeof err)) {
        rc = failj(a, "%s", err);
        goto out;
    }
    if (a->json) {
        jout *j = calloc(1, sizeof *j);
        if (j) {
            jbegin(j, true);
            jstr(j, "dir", p->dir);
            jstr(j, "conf", p->conf);
            jstr(j, "plugin", p->plugin);
            jstr(j, "registry", p->registry);
            jstr(j, "audit", p->audit);
            jnum(j, "port", a->port ? a->port : DEFAULT_PORT);
            jstr(j, "bind", a->bind ? a->bind : DEFAULT_BIND);
            jbool(j, "crl", p->have_crl);
            jbool(j, "auto_register", (a->seen & O_AUTO) != 0);
            jprint(j);
            free(j);
        }
    } else {
        printf("cloud configured in %s\n", p->dir);
        printf("  broker config   %s (listener %s:%u, mutual TLS 1.2/1.3)\n", p->conf, a->bind ? a->bind : DEFAULT_BIND,
               a->port ? a->port : DEFAULT_PORT);
        printf("  plugin          %s\n", p->plugin);
        printf("  trust           %s + %s%s\n", p->anchors[0] ? p->anchors : p->root, p->inter,
               p->have_crl ? " + crl.pem (watched)" : " (no CRL)");
        printf("  registry        %s\n", p->registry);
        printf("  audit events    %s\n", p->audit);
        printf("  auto-register   %s\n", (a->seen & O_AUTO) ? "on" : "off");
        printf("next: edgeauth cloud import --dir %s FILE, then edgeauth cloud start --dir %s\n", dir, dir);
    }
    rc = 0;
    goto out;
toolong:
    rc = failj(a, "path too long under %s", dir);
out:
    X509_free(srv);
    ea_registry_close(reg);
    free(p);
    return rc;
}

/* ---- start / stop / status ---------------------------------------------------------- */

static int c_start(const cloud_cmd *cmd, cloud_args *a)
{
    conf c;
    char err[ERR_LEN], errlog[PATH_LEN];
    const char *mosq = a->mosquitto ? a->mosquitto : DEFAULT_MOSQUITTO;
    unsigned timeout = (a->seen & O_TIMEOUT) ? a->timeout : START_TIMEOUT_S;
    pid_t pid, child;
    int64_t t0 = mono_ms(), deadline;
    int status;
    off_t log_at;

    (void)cmd;
    if (!load_conf(cloud_dir(a), &c, err, sizeof err))
        return failj(a, "%s", err);
    log_at = file_size(c.log_file);
    if ((pid = read_pid(c.pid_file)) && is_broker(pid)) {
        if (a->json) {
            jout j;
            jbegin(&j, true);
            jnum(&j, "pid", pid);
            jbool(&j, "already_running", true);
            jprint(&j);
        } else {
            printf("cloud already running (pid %d)\n", (int)pid);
        }
        return 0;
    }
    if (port_listens(c.port))
        return failj(a, "something else listens on %s:%u", c.bind, c.port);
    unlink(c.pid_file); /* stale */
    if (!join(errlog, sizeof errlog, cloud_dir(a), "mosquitto.stderr"))
        return failj(a, "path too long");
    fflush(NULL);
    if ((child = fork()) < 0)
        return failj(a, "fork: %s", strerror(errno));
    if (child == 0) {
        /* The broker's early errors (before its log is open) go to a file;
         * it must not hold our stdout, which may be a pipe someone reads. */
        int in = open("/dev/null", O_RDONLY), out = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0640);
        if (in >= 0)
            dup2(in, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        execl(mosq, "mosquitto", "-c", c.path, "-d", (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", mosq, strerror(errno));
        _exit(127);
    }
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail("%s exited with status %d", mosq, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        print_log_errors(errlog, 0);
        print_log_errors(c.log_file, log_at);
        return failj(a, "the broker did not start");
    }
    /* -d returns before the broker has loaded the plugin and opened the
     * listener: wait for both (the pid file, then the port). */
    deadline = t0 + (int64_t)timeout * 1000;
    for (;;) {
        pid = read_pid(c.pid_file);
        if (pid && is_broker(pid) && port_listens(c.port))
            break;
        if (mono_ms() > deadline || (pid && !is_broker(pid))) {
            print_log_errors(errlog, 0);
            print_log_errors(c.log_file, log_at);
            if (pid && !is_broker(pid))
                return failj(a, "the broker exited while starting (see %s)", c.log_file);
            return failj(a, "the broker did not listen on port %u within %u s (see %s)", c.port, timeout, c.log_file);
        }
        sleep_ms(20);
    }
    if (a->json) {
        jout j;
        jbegin(&j, true);
        jnum(&j, "pid", pid);
        jstr(&j, "listener", c.bind);
        jnum(&j, "port", c.port);
        jnum(&j, "ms", mono_ms() - t0);
        jprint(&j);
    } else {
        printf("cloud started: pid %d, listening on %s:%u (%lld ms)\n", (int)pid, c.bind, c.port,
               (long long)(mono_ms() - t0));
    }
    return 0;
}

static int c_stop(const cloud_cmd *cmd, cloud_args *a)
{
    conf c;
    char err[ERR_LEN];
    unsigned timeout = (a->seen & O_TIMEOUT) ? a->timeout : STOP_TIMEOUT_S;
    int64_t t0 = mono_ms();
    pid_t pid;

    (void)cmd;
    if (!load_conf(cloud_dir(a), &c, err, sizeof err))
        return failj(a, "%s", err);
    pid = read_pid(c.pid_file);
    if (!pid || !is_broker(pid)) {
        if (a->json) {
            jout j;
            jbegin(&j, true);
            jbool(&j, "was_running", false);
            jprint(&j);
        } else {
            printf("cloud not running\n");
        }
        return 0;
    }
    if (kill(pid, SIGTERM) != 0)
        return failj(a, "cannot signal pid %d: %s", (int)pid, strerror(errno));
    /* The broker saves its persistence database on the way out: wait for it. */
    while (is_broker(pid)) {
        if (mono_ms() - t0 > (int64_t)timeout * 1000)
            return failj(a, "pid %d still running after %u s", (int)pid, timeout);
        sleep_ms(20);
    }
    if (a->json) {
        jout j;
        jbegin(&j, true);
        jbool(&j, "was_running", true);
        jnum(&j, "pid", pid);
        jnum(&j, "ms", mono_ms() - t0);
        jprint(&j);
    } else {
        printf("cloud stopped (pid %d, %lld ms)\n", (int)pid, (long long)(mono_ms() - t0));
    }
    return 0;
}

static int c_status(const cloud_cmd *cmd, cloud_args *a)
{
    conf c;
    char err[ERR_LEN];
    ea_registry *r = NULL;
    size_t active = 0, revoked = 0;
    bool running, listening, counted = false;
    pid_t pid;

    (void)cmd;
    if (!load_conf(cloud_dir(a), &c, err, sizeof err))
        return failj(a, "%s", err);
    pid = read_pid(c.pid_file);
    running = pid && is_broker(pid);
    listening = running && port_listens(c.port);
    if (ea_registry_open(c.registry, 0, &r, err, sizeof err) == EA_OK)
        counted = ea_registry_count(r, &active, &revoked) == EA_OK;
    ea_registry_close(r);
    if (a->json) {
        jout j;
        jbegin(&j, true);
        jbool(&j, "running", running);
        if (running)
            jnum(&j, "pid", pid);
        jstr(&j, "listener", c.bind);
        jnum(&j, "port", c.port);
        jbool(&j, "listening", listening);
        if (counted) {
            jnum(&j, "devices_active", (long long)active);
            jnum(&j, "devices_revoked", (long long)revoked);
        }
        jstr(&j, "conf", c.path);
        jprint(&j);
    } else {
        if (running)
            printf("broker    running, pid %d\n", (int)pid);
        else
            printf("broker    not running\n");
        printf("listener  %s:%u (%s)\n", c.bind, c.port, listening ? "listening" : "not listening");
        if (counted)
            printf("devices   %zu active, %zu revoked\n", active, revoked);
        else
            printf("devices   registry unreadable: %s\n", err);
        printf("config    %s\n", c.path);
    }
    return running ? 0 : EXIT_NOT_RUNNING;
}

/* ---- devices / revoke / import ------------------------------------------------------ */

typedef struct list_ctx {
    jout *j;
    bool json;
    size_t n;
} list_ctx;

static ea_err print_device(void *ctx, const ea_registry_device *d)
{
    list_ctx *l = ctx;
    char first[32], last[32], added[32];

    fmt_time(d->first_seen, first);
    fmt_time(d->last_seen, last);
    fmt_time(d->added_at, added);
    if (l->json) {
        jout *j = l->j;
        jraw(j, "%s{", l->n ? "," : "");
        jstr(j, "device_id", d->device_id);
        jstr(j, "status", ea_registry_status_str(d->status));
        jstr(j, "source", d->source);
        jstr(j, "unique_id", d->unique_id[0] ? d->unique_id : NULL);
        jstr(j, "serial", d->serial[0] ? d->serial : NULL);
        jstr(j, "fingerprint", d->fingerprint[0] ? d->fingerprint : NULL);
        jstr(j, "added", added);
        jstr(j, "first_seen", d->first_seen ? first : NULL);
        jstr(j, "last_seen", d->last_seen ? last : NULL);
        if (d->status == EA_REGISTRY_REVOKED) {
            char rv[32];
            fmt_time(d->revoked_at, rv);
            jstr(j, "revoked_at", d->revoked_at ? rv : NULL);
        }
        jraw(j, "}");
    } else {
        printf("%-24s %-8s %-16s %-18.18s %-21s %s\n", d->device_id, ea_registry_status_str(d->status), d->source,
               d->serial[0] ? d->serial : "-", first, last);
    }
    l->n++;
    return EA_OK;
}

static int c_devices(const cloud_cmd *cmd, cloud_args *a)
{
    conf c;
    ea_registry *r;
    list_ctx l = { .json = a->json };
    ea_err rc;

    (void)cmd;
    if (!(r = open_registry(a, &c)))
        return EXIT_FAIL;
    if (a->json) {
        /* Large registries: the JSON object is built in memory, bounded. */
        if (!(l.j = calloc(1, sizeof *l.j))) {
            ea_registry_close(r);
            return failj(a, "out of memory");
        }
        jbegin(l.j, true);
        jraw(l.j, ",\"devices\":[");
    } else {
        printf("%-24s %-8s %-16s %-18s %-21s %s\n", "DEVICE", "STATUS", "SOURCE", "SERIAL", "FIRST SEEN", "LAST SEEN");
    }
    rc = ea_registry_list(r, print_device, &l);
    if (rc != EA_OK) {
        int e = failj(a, "cannot list the registry: %s", ea_registry_error(r));
        free(l.j);
        ea_registry_close(r);
        return e;
    }
    if (a->json) {
        jraw(l.j, "]");
        jnum(l.j, "count", (long long)l.n);
        jprint(l.j);
        free(l.j);
    } else if (l.n == 0) {
        printf("(no devices: edgeauth cloud import FILE adds them)\n");
    }
    ea_registry_close(r);
    return 0;
}

static int c_revoke(const cloud_cmd *cmd, cloud_args *a)
{
    conf c;
    ea_registry *r;
    bool changed = false;
    ea_err rc;
    ea_audit_line l;

    (void)cmd;
    if (!(r = open_registry(a, &c)))
        return EXIT_FAIL;
    rc = ea_registry_set_status(r, a->positional, EA_REGISTRY_REVOKED, &changed);
    if (rc != EA_OK) {
        int e = rc == EA_ERR_NOT_FOUND ? failj(a, "device '%.64s' is not registered", a->positional)
                                       : failj(a, "cannot revoke: %s", ea_registry_error(r));
        ea_registry_close(r);
        return e;
    }
    ea_registry_close(r);
    ea_audit_begin(&l, "revoke");
    ea_audit_str(&l, "result", changed ? "revoked" : "already_revoked");
    ea_audit_str(&l, "device_id", a->positional);
    ea_audit_str(&l, "by", "edgeauth cloud revoke");
    audit_operator(&c, &l);
    if (a->json) {
        jout j;
        jbegin(&j, true);
        jstr(&j, "device_id", a->positional);
        jbool(&j, "changed", changed);
        jprint(&j);
    } else if (changed) {
        printf("revoked %s: refused from now on; a live session is dropped within a second\n", a->positional);
    } else {
        printf("%s was already revoked\n", a->positional);
    }
    return 0;
}

typedef struct import_ctx {
    ea_registry *r;
    size_t added, updated, unchanged;
    char err[300];
} import_ctx;

static ea_err import_one(import_ctx *ic, const ea_registry_device *d)
{
    ea_registry_change ch;
    ea_err rc = ea_registry_add(ic->r, d, &ch);

    if (rc != EA_OK) {
        snprintf(ic->err, sizeof ic->err, "%s: %s", d->device_id, ea_registry_error(ic->r));
        return rc;
    }
    if (ch == EA_REGISTRY_ADDED)
        ic->added++;
    else if (ch == EA_REGISTRY_UPDATED)
        ic->updated++;
    else
        ic->unchanged++;
    return EA_OK;
}

/* A registry file: every line is checked before any is imported. */
static int import_lines(const cloud_args *a, import_ctx *ic, const char *path)
{
    uint8_t *text = NULL;
    size_t len = 0, n = 0, cap = 0, lineno = 0;
    ea_registry_device *v = NULL;
    char err[300];
    ea_err rc;
    int ret = EXIT_FAIL;

    if ((rc = ea_file_read(path, IMPORT_MAX, &text, &len)) != EA_OK)
        return failj(a, "cannot read %s: %s", path, ea_err_str(rc));
    for (size_t off = 0; off < len;) {
        const char *line = (const char *)text + off;
        const char *nl = memchr(line, '\n', len - off);
        size_t ll = nl ? (size_t)(nl - line) : len - off;
        off += ll + (nl ? 1 : 0);
        lineno++;
        bool blank = true;
        for (size_t i = 0; i < ll; i++)
            if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
                blank = false;
        if (blank)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            ea_registry_device *g = realloc(v, nc * sizeof *v);
            if (!g) {
                ret = failj(a, "out of memory");
                goto out;
            }
            v = g;
            cap = nc;
        }
        if (ea_registry_parse_line(line, ll, &v[n], err, sizeof err) != EA_OK) {
            ret = failj(a, "%s line %zu: %s (nothing imported)", path, lineno, err);
            goto out;
        }
        n++;
    }
    for (size_t i = 0; i < n; i++)
        if (import_one(ic, &v[i]) != EA_OK) {
            ret = failj(a, "%s", ic->err);
            goto out;
        }
    ret = 0;
out:
    free(v);
    free(text);
    return ret;
}

static ea_err manifest_entry(void *ctx, const ea_manifest_entry *e)
{
    import_ctx *ic = ctx;
    ea_registry_device d = { 0 };
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(e->cert), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    bool ok = hex && strlen(hex) <= EA_REGISTRY_SERIAL_MAX && strlen(e->device_id) <= EA_REGISTRY_ID_MAX &&
              strlen(e->unique_id) <= EA_REGISTRY_UID_MAX &&
              X509_digest(e->cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32;

    if (ok) {
        snprintf(d.device_id, sizeof d.device_id, "%s", e->device_id);
        snprintf(d.unique_id, sizeof d.unique_id, "%s", e->unique_id);
        snprintf(d.serial, sizeof d.serial, "%s", hex);
        ea_hex_encode(md, 32, d.fingerprint);
        snprintf(d.source, sizeof d.source, "manifest");
        ok = ea_jail_id_ok(d.device_id, strlen(d.device_id));
    }
    OPENSSL_free(hex);
    BN_free(bn);
    if (!ok) {
        snprintf(ic->err, sizeof ic->err, "entry %zu: device id or certificate outside what the registry holds",
                 e->index);
        return EA_ERR_MALFORMED;
    }
    return import_one(ic, &d);
}

static int import_manifest(const cloud_args *a, const conf *c, import_ctx *ic)
{
    uint8_t *json = NULL;
    size_t len = 0, count = 0;
    const char *trust = a->trust ? a->trust : c->ca_file;
    X509 *signer = read_cert(a->signer);
    STACK_OF(X509) *anchors = trust[0] ? read_certs(trust) : NULL;
    char err[ERR_LEN] = "";
    ea_err rc;
    int ret = EXIT_FAIL;

    if (!signer)
        ret = failj(a, "--signer %s holds no PEM certificate", a->signer);
    else if (!anchors)
        ret = failj(a, "no trust anchors in %s", trust[0] ? trust : "(none configured)");
    else if ((rc = ea_file_read(a->manifest, MANIFEST_MAX, &json, &len)) != EA_OK)
        ret = failj(a, "cannot read %s: %s", a->manifest, ea_err_str(rc));
    else {
        ea_manifest_verify_opts o = { .signer = signer, .trusted = anchors };
        rc = ea_manifest_verify((const char *)json, len, &o, manifest_entry, ic, &count, err, sizeof err);
        if (rc != EA_OK)
            ret = failj(a, "%s: %s", a->manifest, ic->err[0] ? ic->err : err[0] ? err : ea_err_str(rc));
        else
            ret = 0;
    }
    free(json);
    X509_free(signer);
    sk_X509_pop_free(anchors, X509_free);
    return ret;
}

static int c_import(const cloud_cmd *cmd, cloud_args *a)
{
    conf c;
    import_ctx ic = { 0 };
    ea_audit_line l;
    int rc;

    (void)cmd;
    if (!!a->positional == !!a->manifest || (a->manifest && !a->signer) || (a->signer && !a->manifest) ||
        (a->trust && !a->manifest)) {
        fail("give FILE, or --manifest FILE --signer PEM [--trust PEM]");
        return EXIT_USAGE;
    }
    if (!(ic.r = open_registry(a, &c)))
        return EXIT_FAIL;
    rc = a->manifest ? import_manifest(a, &c, &ic) : import_lines(a, &ic, a->positional);
    ea_registry_close(ic.r);
    if (rc != 0)
        return rc;
    ea_audit_begin(&l, "import");
    ea_audit_str(&l, "result", "ok");
    ea_audit_str(&l, "file", a->manifest ? a->manifest : a->positional);
    ea_audit_str(&l, "kind", a->manifest ? "manifest" : "registry");
    ea_audit_int(&l, "added", (long long)ic.added);
    ea_audit_int(&l, "updated", (long long)ic.updated);
    ea_audit_int(&l, "unchanged", (long long)ic.unchanged);
    audit_operator(&c, &l);
    if (a->json) {
        jout j;
        jbegin(&j, true);
        jnum(&j, "added", (long long)ic.added);
        jnum(&j, "updated", (long long)ic.updated);
        jnum(&j, "unchanged", (long long)ic.unchanged);
        jprint(&j);
    } else {
        printf("imported %s: %zu added, %zu updated, %zu unchanged\n", a->manifest ? a->manifest : a->positional,
               ic.added, ic.updated, ic.unchanged);
    }
    return 0;
}

/* ---- arguments and dispatch ----------------------------------------------------------- */

static void cloud_usage(FILE *f)
{
    fprintf(f, "usage: edgeauth cloud <command> [options] [--json]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cloud_cmds / sizeof cloud_cmds[0]; i++)
        fprintf(f, "  %-8s %s\n", cloud_cmds[i].name, cloud_cmds[i].desc);
    fprintf(f, "\nedgeauth cloud COMMAND --help shows the options of COMMAND.\n");
}

static void cmd_usage(FILE *f, const cloud_cmd *c)
{
    fprintf(f, "usage: edgeauth cloud %s [--json]\n%s\n\noptions:\n", c->usage, c->desc);
    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++) {
        if (!(c->opts & (1u << i)))
            continue;
        char left[48];
        snprintf(left, sizeof left, "--%s%s%s", opt_defs[i].name, opt_defs[i].arg ? " " : "",
                 opt_defs[i].arg ? opt_defs[i].arg : "");
        fprintf(f, "  %-24s %s\n", left, opt_defs[i].help);
    }
    fprintf(f, "  %-24s %s\n", "--json", "one JSON object on stdout");
}

static bool parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;
    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

/* 0 = go on; >0 = exit status; <0 = done (help printed). */
static int parse_args(const cloud_cmd *c, int argc, char **argv, cloud_args *a)
{
    struct option lo[sizeof opt_defs / sizeof opt_defs[0] + 3];
    size_t n = 0;
    int o;

    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
        if (c->opts & (1u << i))
            lo[n++] = (struct option){ opt_defs[i].name, opt_defs[i].has_arg, NULL, OPT_CODE0 + (int)i };
    lo[n++] = (struct option){ "json", no_argument, NULL, 'j' };
    lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    lo[n] = (struct option){ NULL, 0, NULL, 0 };

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (o == 'h') {
            cmd_usage(stdout, c);
            return -1;
        }
        if (o == 'j') {
            a->json = true;
            continue;
        }
        if (o < OPT_CODE0) {
            cmd_usage(stderr, c);
            return EXIT_USAGE;
        }
        unsigned bit = 1u << (o - OPT_CODE0);
        bool ok = true;
        a->seen |= bit;
        switch (bit) {
        case O_DIR: a->dir = optarg; break;
        case O_PKI: a->pki = optarg; break;
        case O_PLUGIN: a->plugin = optarg; break;
        case O_PORT: ok = parse_uint(optarg, 1, 65535, &a->port); break;
        case O_BIND: {
            struct in_addr ia;
            ok = inet_pton(AF_INET, optarg, &ia) == 1;
            a->bind = optarg;
            break;
        }
        case O_SERVER_CERT: a->server_cert = optarg; break;
        case O_SERVER_KEY: a->server_key = optarg; break;
        case O_BACKEND:
            ok = a->n_backend < BACKENDS_MAX;
            if (ok)
                a->backend[a->n_backend++] = optarg;
            break;
        case O_TRUST_CA:
            ok = a->n_extra_ca < BACKENDS_MAX;
            if (ok)
                a->extra_ca[a->n_extra_ca++] = optarg;
            break;
        case O_MOSQUITTO: a->mosquitto = optarg; break;
        case O_TIMEOUT: ok = parse_uint(optarg, 1, 3600, &a->timeout); break;
        case O_MANIFEST: a->manifest = optarg; break;
        case O_SIGNER: a->signer = optarg; break;
        case O_TRUST: a->trust = optarg; break;
        default: break; /* flags */
        }
        if (!ok) {
            fail("bad value for --%s: '%.64s'", opt_defs[o - OPT_CODE0].name, optarg ? optarg : "");
            return EXIT_USAGE;
        }
    }
    if ((a->seen & c->need) != c->need) {
        for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
            if ((c->need & (1u << i)) && !(a->seen & (1u << i)))
                fail("--%s is required", opt_defs[i].name);
        cmd_usage(stderr, c);
        return EXIT_USAGE;
    }
    if (optind < argc)
        a->positional = argv[optind++];
    if (optind < argc || (c->positional == 1 && !a->positional) || (c->positional == 0 && a->positional)) {
        cmd_usage(stderr, c);
        return EXIT_USAGE;
    }
    return 0;
}

int cmd_cloud(const cli_global *g, int argc, char **argv)
{
    (void)g; /* the cloud has no secure element */
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        cloud_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof cloud_cmds / sizeof cloud_cmds[0]; i++) {
        if (strcmp(argv[1], cloud_cmds[i].name) != 0)
            continue;
        cloud_args a = { 0 };
        int rc;
        cmd_name = cloud_cmds[i].name;
        if ((rc = parse_args(&cloud_cmds[i], argc - 1, argv + 1, &a)) != 0)
            return rc < 0 ? 0 : rc;
        return cloud_cmds[i].fn(&cloud_cmds[i], &a);
    }
    fprintf(stderr, "edgeauth cloud: unknown command '%s'\n", argv[1]);
    cloud_usage(stderr);
    return EXIT_USAGE;
}
