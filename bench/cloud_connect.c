/* Benchmark client for the OEM cloud (scripts/bench_cloud.sh runs it):
 * mutual-TLS MQTT 3.1.1 connects per second against two brokers, and the
 * broker's memory per idle connected device.
 *
 * One connect = TCP connect to 127.0.0.1 (TCP_NODELAY), TLS handshake with
 * the device's client certificate (file key), MQTT CONNECT (client id = the
 * device id = the certificate's CN, clean session), wait for CONNACK (must
 * be 0), DISCONNECT, wait for the broker to close, close. MQTT bytes are
 * written by hand (no libmosquitto). "resumed": the SSL_SESSION of the
 * previous connection of the same device is offered with SSL_set_session
 * (the share actually resumed is reported).
 *
 *   bench_cloud_connect rate --ca ROOT.pem --devdir DIR --devices K
 *        --port NAME=PORT [--port NAME=PORT]... [-n CONNECTS] [-r ROUNDS] [-P PROCS]
 *     K devices DIR/dev-0001.{pem,key}... used round robin; for every round
 *     every (broker x TLS 1.3/1.2 x full/resumed) cell runs N connects, the
 *     cell order rotating per round; with -P 2 each cell runs in 2 forked
 *     clients at once (each N connects, devices split between them).
 *     Prints one line per cell with the median rate and all rounds.
 *
 *   bench_cloud_connect mem --ca ROOT.pem --devdir DIR --devices K
 *        --port NAME=PORT --pid BROKER_PID [--settle S]
 *     Reads VmRSS of BROKER_PID, opens K TLS 1.3 + MQTT connections
 *     (keepalive 600) and keeps them idle, waits S seconds (default 3),
 *     reads VmRSS again, prints before/after/KiB per connection, then
 *     disconnects them all.
 *
 * Build without sanitizers for meaningful numbers (the release build). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MAX_PORTS 4
#define MAX_ROUNDS 101
#define MAX_PROCS 8

typedef struct {
    char id[80];
    X509 *cert;
    EVP_PKEY *key;
    SSL_SESSION *sess[MAX_PORTS][2]; /* per broker and TLS version */
} device;

static device *devs;
static int ndev;
static SSL_CTX *ctx[2]; /* 0: TLS 1.3, 1: TLS 1.2 */
static const char *vname[2] = { "TLS1.3", "TLS1.2" };

static void die(const char *what)
{
    fprintf(stderr, "bench_cloud_connect: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double t[MAX_ROUNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static void load_devices(const char *dir, int k)
{
    devs = calloc((size_t)k, sizeof *devs);
    if (!devs)
        die("out of memory");
    for (int i = 0; i < k; i++) {
        char path[4096];
        FILE *f;
        snprintf(devs[i].id, sizeof devs[i].id, "dev-%04d", i + 1);
        snprintf(path, sizeof path, "%s/%s.pem", dir, devs[i].id);
        if (!(f = fopen(path, "r")) || !(devs[i].cert = PEM_read_X509(f, NULL, NULL, NULL)))
            die(path);
        fclose(f);
        snprintf(path, sizeof path, "%s/%s.key", dir, devs[i].id);
        if (!(f = fopen(path, "r")) || !(devs[i].key = PEM_read_PrivateKey(f, NULL, NULL, NULL)))
            die(path);
        fclose(f);
    }
    ndev = k;
}

static void make_ctx(const char *ca)
{
    for (int v = 0; v < 2; v++) {
        SSL_CTX *c = SSL_CTX_new(TLS_client_method());
        int ver = v == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
        if (!c || !SSL_CTX_set_min_proto_version(c, ver) || !SSL_CTX_set_max_proto_version(c, ver) ||
            SSL_CTX_load_verify_locations(c, ca, NULL) != 1)
            die("SSL_CTX setup");
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        /* client-side cache off: we hold the sessions ourselves */
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        ctx[v] = c;
    }
}

static int tcp_connect(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { .tv_sec = 10 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool read_n(SSL *s, unsigned char *b, int n)
{
    int got = 0;
    while (got < n) {
        int r = SSL_read(s, b + got, n - got);
        if (r <= 0)
            return false;
        got += r;
    }
    return true;
}

/* TLS + MQTT CONNECT/CONNACK. Returns the SSL (fd inside) or NULL. */
static SSL *mqtt_open(device *d, int v, int slot, int port, bool resume, unsigned keepalive, bool *reused)
{
    unsigned char pkt[160], ack[4];
    size_t idl = strlen(d->id), n = 0;
    int fd = tcp_connect(port);
    SSL *s;
    if (fd < 0)
        return NULL;
    if (!(s = SSL_new(ctx[v]))) {
        close(fd);
        return NULL;
    }
    SSL_set_fd(s, fd);
    SSL_set_tlsext_host_name(s, "localhost");
    SSL_use_certificate(s, d->cert);
    SSL_use_PrivateKey(s, d->key);
    if (resume && d->sess[slot][v])
        SSL_set_session(s, d->sess[slot][v]);
    if (SSL_connect(s) != 1)
        goto fail;
    if (reused)
        *reused = SSL_session_reused(s);
    pkt[n++] = 0x10;
    pkt[n++] = (unsigned char)(10 + 2 + idl);
    memcpy(pkt + n, "\0\4MQTT\4\2", 8);
    n += 8;
    pkt[n++] = (unsigned char)(keepalive >> 8);
    pkt[n++] = (unsigned char)keepalive;
    pkt[n++] = 0;
    pkt[n++] = (unsigned char)idl;
    memcpy(pkt + n, d->id, idl);
    n += idl;
    if (SSL_write(s, pkt, (int)n) != (int)n)
        goto fail;
    if (!read_n(s, ack, 4) || ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0) {
        fprintf(stderr, "bench_cloud_connect: %s: no CONNACK 0 (got %02x %02x %02x %02x)\n", d->id, ack[0], ack[1],
                ack[2], ack[3]);
        goto fail;
    }
    if (resume) { /* keep this connection's session for the next one */
        SSL_SESSION *ss = SSL_get1_session(s);
        if (d->sess[slot][v])
            SSL_SESSION_free(d->sess[slot][v]);
        d->sess[slot][v] = ss;
    }
    return s;
fail:
    ERR_print_errors_fp(stderr);
    SSL_free(s);
    close(fd);
    return NULL;
}

static void mqtt_close(SSL *s)
{
    static const unsigned char disc[2] = { 0xE0, 0 };
    unsigned char b[64];
    int fd = SSL_get_fd(s);
    if (SSL_write(s, disc, 2) == 2) {
        /* wait for the broker to close (bounded by SO_RCVTIMEO): the broker
         * side then holds TIME_WAIT, and the cycle is complete */
        for (int i = 0; i < 64 && SSL_read(s, b, sizeof b) > 0; i++)
            ;
    }
    /* MQTT DISCONNECT is the orderly end: keep the session resumable (SSL_free
     * of an SSL that was not shut down marks its session not resumable) */
    SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(s);
    close(fd);
    ERR_clear_error();
}

/* n connects on port; devices first..first+cnt-1 round robin. Returns
 * connects/s (or -1); *res_out counts resumed handshakes. */
static double run_cell(int slot, int port, int v, bool resume, int n, int first, int cnt, int *res_out)
{
    int res = 0;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        device *d = &devs[first + i % cnt];
        bool reused = false;
        SSL *s = mqtt_open(d, v, slot, port, resume, 60, &reused);
        if (!s)
            return -1;
        res += reused;
        mqtt_close(s);
    }
    *res_out = res;
    return n / (now_s() - t0);
}

static int parse_port(const char *arg, char *name, size_t nl)
{
    const char *eq = strchr(arg, '=');
    if (!eq || (size_t)(eq - arg) >= nl)
        die("--port NAME=PORT");
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = 0;
    return atoi(eq + 1);
}

static long vmrss_kib(long pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    const char *ca = NULL, *dir = NULL, *mode;
    char pname[MAX_PORTS][32];
    int port[MAX_PORTS], np = 0, k = 0, n = 200, rounds = 5, procs = 1, settle = 3;
    long pid = 0;

    if (argc < 2)
        die("usage: bench_cloud_connect rate|mem --ca ROOT --devdir DIR --devices K --port NAME=PORT ...");
    mode = argv[1];
    /* Options come in pairs: OPTION VALUE. */
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val)
            die("option without value");
        if (!strcmp(a, "--ca"))
            ca = val;
        else if (!strcmp(a, "--devdir"))
            dir = val;
        else if (!strcmp(a, "--devices"))
            k = atoi(val);
        else if (!strcmp(a, "--port") && np < MAX_PORTS) {
            port[np] = parse_port(val, pname[np], sizeof pname[np]);
            np++;
        } else if (!strcmp(a, "-n"))
            n = atoi(val);
        else if (!strcmp(a, "-r"))
            rounds = atoi(val);
        else if (!strcmp(a, "-P"))
            procs = atoi(val);
        else if (!strcmp(a, "--pid"))
            pid = atol(val);
        else if (!strcmp(a, "--settle"))
            settle = atoi(val);
        else
            die("unknown option");
    }
    if (!ca || !dir || k < 1 || np < 1 || n < 1 || rounds < 1 || rounds > MAX_ROUNDS || procs < 1 ||
        procs > MAX_PROCS || k < procs)
        die("bad arguments");
    signal(SIGPIPE, SIG_IGN);
    load_devices(dir, k);
    make_ctx(ca);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (!strcmp(mode, "mem")) {
        SSL **open_ = calloc((size_t)k, sizeof *open_);
        long before, after;
        double t0;
        if (!open_ || pid <= 0)
            die("mem needs --pid");
        before = vmrss_kib(pid);
        t0 = now_s();
        for (int i = 0; i < k; i++)
            if (!(open_[i] = mqtt_open(&devs[i], 0, 0, port[0], false, 600, NULL))) {
                fprintf(stderr, "bench_cloud_connect: connection %d of %d failed\n", i + 1, k);
                exit(1);
            }
        double t_open = now_s() - t0;
        sleep((unsigned)settle);
        after = vmrss_kib(pid);
        printf("mem %s conns=%d rss_before_kib=%ld rss_after_kib=%ld kib_per_conn=%.2f open_s=%.3f\n", pname[0], k,
               before, after, (double)(after - before) / k, t_open);
        for (int i = 0; i < k; i++)
            mqtt_close(open_[i]);
        return 0;
    }
    if (strcmp(mode, "rate"))
        die("mode must be rate or mem");

    /* cells: port x version x resume */
    int ncell = np * 4;
    static double rate[MAX_PORTS * 4][MAX_ROUNDS], resfrac[MAX_PORTS * 4][MAX_ROUNDS];
    /* warm-up: one connect per device per cell kind (fills the resumption sessions,
     * the broker's and plugin's caches) */
    for (int c = 0; c < ncell; c++) {
        int r;
        if (run_cell(c / 4, port[c / 4], (c / 2) % 2, c % 2, k, 0, k, &r) < 0)
            die("warm-up connect failed");
    }
    for (int r = 0; r < rounds; r++) {
        for (int j = 0; j < ncell; j++) {
            int c = (j + r) % ncell, p = c / 4, v = (c / 2) % 2;
            bool resume = c % 2;
            if (procs == 1) {
                int res = 0;
                double x = run_cell(p, port[p], v, resume, n, 0, k, &res);
                if (x < 0)
                    die("connect failed");
                rate[c][r] = x;
                resfrac[c][r] = (double)res / n;
            } else {
                int fds[MAX_PROCS][2];
                pid_t kids[MAX_PROCS];
                double t0 = now_s(), tot_res = 0;
                bool ok = true;
                for (int q = 0; q < procs; q++) {
                    if (pipe(fds[q]) != 0 || (kids[q] = fork()) < 0)
                        die("fork");
                    if (kids[q] == 0) {
                        int per = k / procs, res = 0;
                        double x = run_cell(p, port[p], v, resume, n, q * per, per, &res);
                        double out[2] = { x, res };
                        if (write(fds[q][1], out, sizeof out) != sizeof out)
                            _exit(1);
                        _exit(x < 0);
                    }
                    close(fds[q][1]);
                }
                for (int q = 0; q < procs; q++) {
                    double out[2] = { -1, 0 };
                    int st;
                    if (read(fds[q][0], out, sizeof out) != sizeof out || out[0] < 0)
                        ok = false;
                    tot_res += out[1];
                    close(fds[q][0]);
                    waitpid(kids[q], &st, 0);
                }
                if (!ok)
                    die("connect failed in a child");
                rate[c][r] = (double)n * procs / (now_s() - t0);
                resfrac[c][r] = tot_res / ((double)n * procs);
            }
        }
    }
    for (int c = 0; c < ncell; c++) {
        printf("cell %s %s %s procs=%d median=%.1f resumed=%.2f rounds=", pname[c / 4], vname[(c / 2) % 2],
               c % 2 ? "resumed" : "full", procs, median(rate[c], rounds), median(resfrac[c], rounds));
        for (int r = 0; r < rounds; r++)
            printf("%s%.1f", r ? "," : "", rate[c][r]);
        printf("\n");
    }
    return 0;
}
