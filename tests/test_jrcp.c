/* End-to-end tests of edgeauth-se and its JRCP_v1 server (spec se05x-apdu.md
 * §6.4): the real binary, real processes, real sockets. Every wait is
 * bounded, so a hang fails the test instead of blocking the run. */
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "emu/server.h"

#define IO_TIMEOUT_MS 15000    /* one JRCP exchange (generous: ASan builds) */
#define START_TIMEOUT_MS 30000 /* a server printing its "serving" line */
#define EXIT_TIMEOUT_MS 30000  /* a short command, or a server after SIGTERM */
#define RATE_ROUNDS 2000

/* The ATR of spec §6.1, 35 bytes. */
static const char ATR_HEX[] = "00A0000003960403E800FE020B03E80801000000006400000A4A434F5034204154504F";
static const char SELECT_HEX[] = "00A4040010A0000003965453000000010300000000" "00";
static const char GETVERSION_HEX[] = "80040020";
static const char GEN_TRANSIENT_HEX[] = "808161000941047B000426420103";
static const char EXISTS_HEX[] = "800400270641047B000426";

/* ---- time and files ------------------------------------------------------------ */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Whole file as a string ("" if missing); caller frees. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n = 0, cap = 4096;

    buf = malloc(cap);
    assert_non_null(buf);
    if (f != NULL) {
        size_t r;
        while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
            n += r;
            if (cap - n - 1 == 0) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
        }
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

static bool file_has(const char *path, const char *needle)
{
    char *s = slurp(path);
    bool yes = strstr(s, needle) != NULL;
    free(s);
    return yes;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- child processes ------------------------------------------------------------ */

/* Start build/bin/edgeauth-se with args (NULL-terminated); stdout and
 * stderr go to logpath. */
static pid_t spawn_se(const char *logpath, const char *const *args)
{
    char bin[512];
    const char *argv[32];
    size_t n = 0;
    pid_t pid;

    tu_bin("edgeauth-se", bin, sizeof bin);
    argv[n++] = bin;
    for (; *args != NULL && n < 31; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd < 0 || nul < 0)
            _exit(126);
        dup2(nul, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Wait up to ms for pid to exit; true and *status if it did. */
static bool wait_exit(pid_t pid, long ms, int *status)
{
    long long end = now_ms() + ms;

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        if (now_ms() >= end)
            return false;
        sleep_ms(10);
    }
}

/* Stop a child whatever state it is in (teardown). */
static void reap_child(pid_t *pid)
{
    int st;

    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    if (!wait_exit(*pid, 10000, &st)) {
        kill(*pid, SIGKILL);
        waitpid(*pid, &st, 0);
    }
    *pid = 0;
}

/* Run edgeauth-se to completion; returns its exit status (the test fails
 * if it hangs or dies from a signal). Output in logpath. */
static int run_se(const char *logpath, const char *const *args)
{
    pid_t pid = spawn_se(logpath, args);
    int st = 0;

    if (!wait_exit(pid, EXIT_TIMEOUT_MS, &st)) {
        reap_child(&pid);
        fail_msg("edgeauth-se %s did not finish in %d ms", args[0], EXIT_TIMEOUT_MS);
    }
    if (!WIFEXITED(st)) {
        char *log = slurp(logpath);
        print_message("%s", log);
        free(log);
        fail_msg("edgeauth-se %s died from signal %d", args[0], WTERMSIG(st));
    }
    return WEXITSTATUS(st);
}

static void dump_log(const char *logpath)
{
    char *log = slurp(logpath);
    print_message("--- %s ---\n%s--- end ---\n", logpath, log);
    free(log);
}

/* ---- a chip + server fixture ----------------------------------------------------- */

typedef struct fixture {
    char *tmp;       /* everything lives below this directory */
    char state[512]; /* TMP/chip */
    char sock[512];  /* TMP/se.sock */
    char log[512];   /* TMP/serve.log */
    pid_t pid;       /* the server, 0 if none */
    int port;        /* its tcp port */
} fixture;

static void fx_paths(fixture *f, const char *tag)
{
    memset(f, 0, sizeof *f);
    f->tmp = tu_tmpdir(tag);
    snprintf(f->state, sizeof f->state, "%s/chip", f->tmp);
    snprintf(f->sock, sizeof f->sock, "%s/se.sock", f->tmp);
    snprintf(f->log, sizeof f->log, "%s/serve.log", f->tmp);
}

static int fx_init(fixture *f)
{
    char log[600];
    const char *args[] = { "init", "--state", f->state, NULL };
    int rc;

    snprintf(log, sizeof log, "%s/init.log", f->tmp);
    rc = run_se(log, args);
    if (rc != 0)
        dump_log(log);
    return rc;
}

/* Wait for the "serving" line; parse the tcp port from it. */
static bool fx_wait_ready(fixture *f)
{
    long long end = now_ms() + START_TIMEOUT_MS;
    int st;

    while (now_ms() < end) {
        char *log = slurp(f->log);
        char *line = strstr(log, "edgeauth-se: serving ");
        if (line != NULL && strchr(line, '\n') != NULL) {
            char *tcp = strstr(line, "tcp://127.0.0.1:");
            f->port = tcp != NULL ? atoi(tcp + strlen("tcp://127.0.0.1:")) : 0;
            free(log);
            return true;
        }
        free(log);
        if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
            f->pid = 0;
            return false;
        }
        sleep_ms(20);
    }
    return false;
}

/* serve on tcp://127.0.0.1:0 and unix:TMP/se.sock, plus extra args. */
static bool fx_serve(fixture *f, const char *const *extra)
{
    char unix_uri[600];
    const char *args[24] = { "serve", "--state", f->state, "--listen", "tcp://127.0.0.1:0",
                             "--listen", unix_uri };
    size_t n = 7;

    snprintf(unix_uri, sizeof unix_uri, "unix:%s", f->sock);
    for (; extra != NULL && *extra != NULL && n < 23; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    f->pid = spawn_se(f->log, args);
    if (!fx_wait_ready(f)) {
        dump_log(f->log);
        reap_child(&f->pid);
        return false;
    }
    return true;
}

static void fx_free(fixture *f)
{
    reap_child(&f->pid);
    if (f->tmp != NULL) {
        tu_rmrf(f->tmp);
        free(f->tmp);
    }
    memset(f, 0, sizeof *f);
}

/* ---- a JRCP_v1 client -------------------------------------------------------------- */

static int jc_tcp(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect 127.0.0.1:%d: %s", port, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void sun_set(struct sockaddr_un *a, const char *path)
{
    size_t n = strlen(path);

    assert_true(n < sizeof a->sun_path);
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, path, n + 1);
}

static int jc_unix(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sun_set(&a, path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect %s: %s", path, strerror(errno));
    return fd;
}

static void send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    long long end = now_ms() + IO_TIMEOUT_MS;

    while (n > 0) {
        struct pollfd pf = { .fd = fd, .events = POLLOUT };
        ssize_t w;
        int left = (int)(end - now_ms());
        if (left <= 0)
            fail_msg("send timed out with %zu bytes left", n);
        if (poll(&pf, 1, left) <= 0)
            continue;
        w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (w < 0)
            fail_msg("send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* Read exactly n bytes: 0 ok, -1 EOF or error, -2 timeout. */
static int recv_exact(int fd, uint8_t *buf, size_t n, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;

    while (n > 0) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        ssize_t r;
        int left = (int)(end - now_ms());
        if (left <= 0)
            return -2;
        if (poll(&pf, 1, left) <= 0)
            continue;
        r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

static void jc_send(int fd, uint8_t mty, const uint8_t *p, size_t n)
{
    uint8_t *m = malloc(4 + n);

    assert_non_null(m);
    assert_true(n <= 0xFFFF);
    m[0] = mty;
    m[1] = 0;
    m[2] = (uint8_t)(n >> 8);
    m[3] = (uint8_t)n;
    if (n > 0)
        memcpy(m + 4, p, n);
    send_all(fd, m, 4 + n);
    free(m);
}

/* One message; asserts it arrives in time. Returns the payload length. */
static size_t jc_recv(int fd, uint8_t *mty, uint8_t *buf, size_t cap)
{
    uint8_t h[4];
    size_t n;

    if (recv_exact(fd, h, 4, IO_TIMEOUT_MS) != 0)
        fail_msg("no JRCP header from the server");
    assert_int_equal(h[1], 0x00); /* NAD */
    n = ((size_t)h[2] << 8) | h[3];
    assert_true(n <= cap);
    if (n > 0 && recv_exact(fd, buf, n, IO_TIMEOUT_MS) != 0)
        fail_msg("JRCP payload of %zu bytes did not arrive", n);
    *mty = h[0];
    return n;
}

/* Expect the peer to close (EOF) within the timeout. */
static void jc_expect_eof(int fd)
{
    uint8_t b;
    int r = recv_exact(fd, &b, 1, IO_TIMEOUT_MS);
    if (r == -2)
        fail_msg("server kept the connection open");
    assert_int_equal(r, -1);
}

static void jc_atr(int fd)
{
    static const uint8_t wait4card[4] = { 0x00, 0x00, 0x01, 0x00 }; /* 256 ms */
    uint8_t rsp[64], mty;
    size_t n, alen;
    uint8_t *atr = tu_hex(ATR_HEX, &alen);

    jc_send(fd, 0x00, wait4card, sizeof wait4card);
    n = jc_recv(fd, &mty, rsp, sizeof rsp);
    assert_int_equal(mty, 0x00);
    assert_int_equal(alen, 35);
    assert_int_equal(n, alen);
    assert_memory_equal(rsp, atr, alen);
    free(atr);
}

/* Send a C-APDU (hex); returns the SW, data part to out/out_len. */
static unsigned jc_apdu_bytes(int fd, const uint8_t *a, size_t alen, uint8_t *out, size_t *out_len)
{
    uint8_t r[EA_EMU_APDU_MAX], mty;
    size_t n;

    jc_send(fd, 0x01, a, alen);
    n = jc_recv(fd, &mty, r, sizeof r);
    assert_int_equal(mty, 0x01);
    assert_true(n >= 2);
    if (out != NULL) {
        assert_true(n - 2 <= *out_len);
        memcpy(out, r, n - 2);
        *out_len = n - 2;
    }
    return ((unsigned)r[n - 2] << 8) | r[n - 1];
}

static unsigned jc_apdu(int fd, const char *hex, uint8_t *out, size_t *out_len)
{
    size_t n;
    uint8_t *a = tu_hex(hex, &n);
    unsigned sw = jc_apdu_bytes(fd, a, n, out, out_len);
    free(a);
    return sw;
}

/* ATR, SELECT; the 7 version bytes into ver. */
static void jc_open(int fd, uint8_t ver[7])
{
    uint8_t v[64];
    size_t vl = sizeof v;

    jc_atr(fd);
    assert_int_equal(jc_apdu(fd, SELECT_HEX, v, &vl), 0x9000);
    assert_int_equal(vl, 7);
    if (ver != NULL)
        memcpy(ver, v, 7);
}

/* CheckObjectExists 7B000426: 1 present, 2 absent. */
static int jc_exists(int fd)
{
    uint8_t r[16];
    size_t rl = sizeof r;

    assert_int_equal(jc_apdu(fd, EXISTS_HEX, r, &rl), 0x9000);
    assert_int_equal(rl, 3);
    assert_int_equal(r[0], 0x41);
    assert_int_equal(r[1], 0x01);
    return r[2];
}

/* ---- tests against one running server ---------------------------------------------- */

static int served_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    if (f == NULL)
        return -1;
    fx_paths(f, "jrcp");
    if (fx_init(f) != 0 || !fx_serve(f, NULL) || f->port <= 0) {
        fx_free(f);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int served_teardown(void **state)
{
    fixture *f = *state;
    int st = 0;

    if (f == NULL)
        return 0;
    /* The server must still be alive after everything the tests threw at it. */
    if (f->pid > 0 && waitpid(f->pid, &st, WNOHANG) == f->pid) {
        f->pid = 0;
        dump_log(f->log);
        print_message("server died during the tests (status 0x%x)\n", st);
        fx_free(f);
        free(f);
        return -1;
    }
    fx_free(f);
    free(f);
    return 0;
}

static void test_atr_tcp(void **state)
{
    fixture *f = *state;
    int fd = jc_tcp(f->port);

    jc_atr(fd);
    jc_atr(fd); /* a second WAIT_FOR_CARD is a reset, not an error */
    close(fd);
}

static void test_select_and_version(void **state)
{
    fixture *f = *state;
    uint8_t ver[7], r[64];
    size_t rl = sizeof r;
    int fd = jc_tcp(f->port);

    jc_open(fd, ver);
    assert_int_equal(jc_apdu(fd, GETVERSION_HEX, r, &rl), 0x9000);
    assert_int_equal(rl, 11);
    assert_int_equal(r[0], 0x41);
    assert_int_equal(r[1], 0x82);
    assert_int_equal(r[2], 0x00);
    assert_int_equal(r[3], 0x07);
    assert_memory_equal(r + 4, ver, 7);
    close(fd);
}

static void test_unix_socket(void **state)
{
    fixture *f = *state;
    struct stat st;
    uint8_t r[64];
    size_t rl = sizeof r;
    int fd;

    assert_int_equal(lstat(f->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    fd = jc_unix(f->sock);
    jc_open(fd, NULL);
    assert_int_equal(jc_apdu(fd, GETVERSION_HEX, r, &rl), 0x9000);
    assert_int_equal(rl, 11);
    close(fd);
}

static void test_clients_isolated(void **state)
{
    fixture *f = *state;
    int a = jc_tcp(f->port), b = jc_tcp(f->port), c = jc_unix(f->sock);

    jc_open(a, NULL);
    jc_open(b, NULL);
    assert_int_equal(jc_apdu(a, GEN_TRANSIENT_HEX, NULL, NULL), 0x9000);
    assert_int_equal(jc_exists(a), 0x01);
    assert_int_equal(jc_exists(b), 0x02);
    jc_open(c, NULL);
    assert_int_equal(jc_exists(c), 0x02);
    assert_int_equal(jc_exists(a), 0x01);
    close(a);
    /* A's transient object went with A's channel. */
    a = jc_tcp(f->port);
    jc_open(a, NULL);
    assert_int_equal(jc_exists(a), 0x02);
    close(a);
    close(b);
    close(c);
}

static void test_close_message(void **state)
{
    fixture *f = *state;
    uint8_t r[16], mty;
    int fd = jc_tcp(f->port);

    jc_atr(fd);
    jc_send(fd, 0x03, NULL, 0);
    assert_int_equal(jc_recv(fd, &mty, r, sizeof r), 0);
    assert_int_equal(mty, 0x03);
    jc_expect_eof(fd);
    close(fd);
}

static void test_info_and_lock(void **state)
{
    static const uint8_t types[] = { 0x04, 0x07, 0x30, 0x31 };
    fixture *f = *state;
    uint8_t r[16], mty;
    int fd = jc_unix(f->sock);

    for (size_t i = 0; i < sizeof types; i++) {
        jc_send(fd, types[i], NULL, 0);
        assert_int_equal(jc_recv(fd, &mty, r, sizeof r), 0);
        assert_int_equal(mty, types[i]);
    }
    jc_atr(fd);
    close(fd);
}

static void test_unknown_type_keeps_link(void **state)
{
    static const uint8_t junk[2] = { 0xAB, 0xCD };
    fixture *f = *state;
    uint8_t r[256], mty;
    size_t n;
    int fd = jc_tcp(f->port);

    jc_send(fd, 0x42, junk, sizeof junk);
    n = jc_recv(fd, &mty, r, sizeof r);
    assert_int_equal(mty, 0x03);
    assert_true(n > 0); /* a text saying why */
    jc_open(fd, NULL);
    close(fd);
}

static void test_bad_nad_closes(void **state)
{
    static const uint8_t bad[4] = { 0x01, 0x55, 0x00, 0x00 };
    fixture *f = *state;
    uint8_t r[256], mty;
    int fd = jc_tcp(f->port);

    send_all(fd, bad, sizeof bad);
    assert_true(jc_recv(fd, &mty, r, sizeof r) > 0);
    assert_int_equal(mty, 0x03);
    jc_expect_eof(fd);
    close(fd);
}

static void test_stalled_client(void **state)
{
    static const uint8_t half_hdr[2] = { 0x01, 0x00 };
    static const uint8_t half_msg[6] = { 0x00, 0x00, 0x00, 0x04, 0x00, 0x00 };
    static const uint8_t rest_msg[2] = { 0x01, 0x00 };
    fixture *f = *state;
    uint8_t r[64], mty;
    size_t rl = sizeof r, alen, n;
    uint8_t *atr = tu_hex(ATR_HEX, &alen);
    int s1 = jc_tcp(f->port), s2 = jc_unix(f->sock), b = jc_tcp(f->port);
    long long t0;

    /* s1 stalls inside a header, s2 inside a payload. */
    send_all(s1, half_hdr, sizeof half_hdr);
    send_all(s2, half_msg, sizeof half_msg);
    sleep_ms(100);
    t0 = now_ms();
    jc_open(b, NULL);
    assert_int_equal(jc_apdu(b, GETVERSION_HEX, r, &rl), 0x9000);
    assert_true(now_ms() - t0 < IO_TIMEOUT_MS);
    /* s2 finishes its WAIT_FOR_CARD and gets the ATR: its state was kept. */
    send_all(s2, rest_msg, sizeof rest_msg);
    n = jc_recv(s2, &mty, r, sizeof r);
    assert_int_equal(mty, 0x00);
    assert_int_equal(n, alen);
    assert_memory_equal(r, atr, alen);
    free(atr);
    close(s1);
    close(s2);
    close(b);
}

/* Send a JRCP APDU_DATA message of len junk bytes. */
static void send_junk_apdu(int fd, size_t len)
{
    uint8_t *m = malloc(4 + len);

    assert_non_null(m);
    m[0] = 0x01;
    m[1] = 0x00;
    m[2] = (uint8_t)(len >> 8);
    m[3] = (uint8_t)len;
    for (size_t i = 0; i < len; i++)
        m[4 + i] = (uint8_t)(i * 7u + 0x80u);
    send_all(fd, m, 4 + len);
    free(m);
}

static void test_oversized(void **state)
{
    static const size_t lens[] = { 0xFFFF, EA_EMU_APDU_MAX + 1 };
    fixture *f = *state;
    uint8_t r[EA_EMU_APDU_MAX], mty;
    size_t n;
    int fd = jc_tcp(f->port);

    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        send_junk_apdu(fd, lens[i]);
        n = jc_recv(fd, &mty, r, sizeof r);
        assert_int_equal(mty, 0x01);
        assert_int_equal(n, 2);
        assert_int_equal(r[0], 0x67);
        assert_int_equal(r[1], 0x00);
    }
    /* The largest accepted length reaches the applet: any R-APDU will do. */
    send_junk_apdu(fd, EA_EMU_APDU_MAX);
    n = jc_recv(fd, &mty, r, sizeof r);
    assert_int_equal(mty, 0x01);
    assert_true(n >= 2);
    /* Empty and too-short APDUs get a status word too. */
    send_junk_apdu(fd, 0);
    assert_int_equal(jc_recv(fd, &mty, r, sizeof r) >= 2, 1);
    send_junk_apdu(fd, 1);
    assert_int_equal(jc_recv(fd, &mty, r, sizeof r) >= 2, 1);
    /* The link is still in step. */
    jc_open(fd, NULL);
    close(fd);
}

static void test_many_clients(void **state)
{
    fixture *f = *state;
    int fds[20];

    for (size_t i = 0; i < 20; i++)
        fds[i] = i % 2 ? jc_tcp(f->port) : jc_unix(f->sock);
    for (size_t i = 0; i < 20; i++)
        jc_atr(fds[19 - i]);
    for (size_t i = 0; i < 20; i++)
        close(fds[i]);
}

static void test_second_serve_locked(void **state)
{
    fixture *f = *state;
    char log[600];
    const char *args[] = { "serve", "--state", f->state, "--listen", "tcp://127.0.0.1:0", NULL };
    int fd;

    snprintf(log, sizeof log, "%s/second.log", f->tmp);
    assert_int_equal(run_se(log, args), 1);
    /* The message names the holder that the store wrote in the lock. */
    if (!file_has(log, "edgeauth-se serve")) {
        dump_log(log);
        fail_msg("the refusal does not name the lock holder");
    }
    fd = jc_tcp(f->port); /* the first server is unharmed */
    jc_atr(fd);
    close(fd);
}

static double rate(int fd, const char *what)
{
    uint8_t r[64];
    long long t0, dt;

    jc_open(fd, NULL);
    t0 = now_ms();
    for (int i = 0; i < RATE_ROUNDS; i++) {
        size_t rl = sizeof r;
        assert_int_equal(jc_apdu(fd, GETVERSION_HEX, r, &rl), 0x9000);
    }
    dt = now_ms() - t0;
    if (dt <= 0)
        dt = 1;
    print_message("GetVersion over %s: %d round trips in %lld ms = %.0f/s\n", what, RATE_ROUNDS,
                  dt, RATE_ROUNDS * 1000.0 / (double)dt);
    return RATE_ROUNDS * 1000.0 / (double)dt;
}

static void test_round_trip_rate(void **state)
{
    fixture *f = *state;
    int fd = jc_tcp(f->port);

    assert_true(rate(fd, "tcp loopback") > 0);
    close(fd);
    fd = jc_unix(f->sock);
    assert_true(rate(fd, "unix socket") > 0);
    close(fd);
}

/* ---- tests with their own chip ------------------------------------------------------- */

static int own_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    if (f == NULL)
        return -1;
    fx_paths(f, "jrcp1");
    *state = f;
    return 0;
}

static int own_teardown(void **state)
{
    fixture *f = *state;

    fx_free(f);
    free(f);
    return 0;
}

static void test_sigterm_clean_exit(void **state)
{
    fixture *f = *state;
    char pidfile[600];
    const char *extra[] = { "--pidfile", pidfile, NULL };
    int st = 0, fd;
    pid_t pid;

    snprintf(pidfile, sizeof pidfile, "%s/se.pid", f->tmp);
    assert_int_equal(fx_init(f), 0);
    assert_true(fx_serve(f, extra));
    assert_true(exists(f->sock));
    assert_true(exists(pidfile));
    fd = jc_unix(f->sock); /* an open client must not hold the shutdown up */
    jc_atr(fd);
    pid = f->pid;
    assert_int_equal(kill(pid, SIGTERM), 0);
    if (!wait_exit(pid, EXIT_TIMEOUT_MS, &st)) {
        dump_log(f->log);
        fail_msg("server still running %d ms after SIGTERM", EXIT_TIMEOUT_MS);
    }
    f->pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        dump_log(f->log);
        fail_msg("server exit status 0x%x after SIGTERM, want exit 0", st);
    }
    assert_false(exists(f->sock));
    assert_false(exists(pidfile));
    jc_expect_eof(fd);
    close(fd);
}

static void test_remote_refused(void **state)
{
    fixture *f = *state;
    char log[600];
    const char *args[] = { "serve", "--state", f->state, "--listen", "tcp://0.0.0.0:0", NULL };

    snprintf(log, sizeof log, "%s/remote.log", f->tmp);
    assert_int_equal(fx_init(f), 0);
    assert_int_equal(run_se(log, args), 1);
    if (!file_has(log, "0.0.0.0") || !file_has(log, "--allow-remote")) {
        dump_log(log);
        fail_msg("the refusal does not say what and why");
    }
}

/* A sealed blob of the store: the largest regular file under objects/ whose
 * name does not look like the index, the lock or a temp file. */
static bool pick_blob(const char *state, char *out, size_t cap)
{
    char dir[600];
    DIR *d;
    struct dirent *e;
    off_t best = -1;

    snprintf(dir, sizeof dir, "%s/objects", state);
    d = opendir(dir);
    if (d == NULL)
        return false;
    while ((e = readdir(d)) != NULL) {
        char p[1200];
        struct stat st;
        if (e->d_name[0] == '.' || strstr(e->d_name, "index") != NULL ||
            strstr(e->d_name, "lock") != NULL || strstr(e->d_name, "tmp") != NULL)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= best)
            continue;
        best = st.st_size;
        snprintf(out, cap, "%s", p);
    }
    closedir(d);
    return best > 0;
}

static void flip_byte(const char *path)
{
    struct stat st;
    uint8_t b;
    off_t at;
    int fd = open(path, O_RDWR);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    at = st.st_size / 2;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void test_check(void **state)
{
    fixture *f = *state;
    char log[600], blob[1200];
    const char *args[] = { "check", "--state", f->state, NULL };

    snprintf(log, sizeof log, "%s/check.log", f->tmp);
    assert_int_equal(fx_init(f), 0);
    if (run_se(log, args) != 0) {
        dump_log(log);
        fail_msg("check fails on a fresh chip");
    }
    if (!pick_blob(f->state, blob, sizeof blob))
        fail_msg("no sealed blob under %s/objects", f->state);
    flip_byte(blob);
    if (run_se(log, args) != 1) {
        dump_log(log);
        fail_msg("check does not notice a flipped byte in %s", blob);
    }
}

static void test_init_refuses_existing(void **state)
{
    fixture *f = *state;
    char log[600];
    const char *again[] = { "init", "--state", f->state, NULL };
    const char *force[] = { "init", "--state", f->state, "--force", NULL };
    const char *check[] = { "check", "--state", f->state, NULL };

    snprintf(log, sizeof log, "%s/init2.log", f->tmp);
    assert_int_equal(fx_init(f), 0);
    assert_int_equal(run_se(log, again), 1);
    if (!file_has(log, "--force")) {
        dump_log(log);
        fail_msg("the refusal does not mention --force");
    }
    assert_int_equal(run_se(log, force), 0);
    assert_int_equal(run_se(log, check), 0);
}

static void test_stale_unix_socket(void **state)
{
    fixture *f = *state;
    struct sockaddr_un a;
    char log[600];
    char uri[600];
    const char *args[] = { "serve", "--state", f->state, "--listen", uri, NULL };
    int fd, st = 0;

    assert_int_equal(fx_init(f), 0);
    /* A socket file nobody accepts on: what a killed server leaves. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    sun_set(&a, f->sock);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
    assert_true(fx_serve(f, NULL));
    fd = jc_unix(f->sock);
    jc_atr(fd);
    close(fd);
    kill(f->pid, SIGINT);
    assert_true(wait_exit(f->pid, EXIT_TIMEOUT_MS, &st));
    f->pid = 0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_false(exists(f->sock));

    /* A regular file at the path is not ours to delete. */
    fd = open(f->sock, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(uri, sizeof uri, "unix:%s", f->sock);
    snprintf(log, sizeof log, "%s/notsock.log", f->tmp);
    assert_int_equal(run_se(log, args), 1);
    assert_true(exists(f->sock));
    assert_true(file_has(log, "not a socket"));
}

static void test_usage(void **state)
{
    fixture *f = *state;
    char log[600];
    const char *none[] = { NULL };
    const char *bogus[] = { "bogus", NULL };
    const char *nostate[] = { "serve", NULL };
    const char *badopt[] = { "check", "--nope", NULL };
    const char *badlisten[] = { "serve", "--state", f->state, "--listen", "udp://x", NULL };
    const char *version[] = { "--version", NULL };
    const char *help[] = { "--help", NULL };
    const char *shelp[] = { "serve", "--help", NULL };

    snprintf(log, sizeof log, "%s/usage.log", f->tmp);
    assert_int_equal(run_se(log, none), 2);
    assert_int_equal(run_se(log, bogus), 2);
    assert_true(file_has(log, "bogus"));
    assert_int_equal(run_se(log, nostate), 2);
    assert_true(file_has(log, "--state"));
    assert_int_equal(run_se(log, badopt), 2);
    assert_int_equal(run_se(log, version), 0);
    assert_true(file_has(log, "edgeauth-se "));
    assert_int_equal(run_se(log, help), 0);
    assert_true(file_has(log, "serve"));
    assert_int_equal(run_se(log, shelp), 0);
    assert_true(file_has(log, "--listen"));
    assert_int_equal(fx_init(f), 0);
    assert_int_equal(run_se(log, badlisten), 1);
    assert_true(file_has(log, "udp://x"));
}

/* ---- the server API, embedded in this process --------------------------------------- */

typedef struct embedded {
    tu_chip chip;
    ea_serve *srv;
    ea_serve_opts o;
    volatile sig_atomic_t stop;
    atomic_int ready, done;
    ea_err rc;
    char err[256];
} embedded;

static void *serve_run_thread(void *arg)
{
    embedded *e = arg;
    e->rc = ea_serve_run(e->srv);
    atomic_store(&e->done, 1);
    return NULL;
}

static void on_ready(void *ctx)
{
    embedded *e = ctx;
    atomic_store(&e->ready, 1);
}

static void *emu_serve_thread(void *arg)
{
    embedded *e = arg;
    e->rc = ea_emu_serve(e->chip.emu, &e->o, e->err, sizeof e->err);
    atomic_store(&e->done, 1);
    return NULL;
}

static bool wait_flag(atomic_int *flag, long ms)
{
    long long end = now_ms() + ms;
    while (!atomic_load(flag)) {
        if (now_ms() >= end)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* max_clients, stall_ms, ea_serve_stop from another thread. */
static void test_embedded_limits_and_stop(void **state)
{
    static const uint8_t half[2] = { 0x01, 0x00 };
    const char *uris[] = { "tcp://127.0.0.1:0" };
    embedded *e = calloc(1, sizeof *e);
    pthread_t th;
    uint8_t r[256], mty;
    const char *uri;
    long long t0;
    int a, b, c, port;

    (void)state;
    assert_non_null(e);
    tu_chip_new(&e->chip, 0);
    e->o.listen = uris;
    e->o.n_listen = 1;
    e->o.max_clients = 2;
    e->o.stall_ms = 300;
    if (ea_serve_new(e->chip.emu, &e->o, &e->srv, e->err, sizeof e->err) != EA_OK)
        fail_msg("ea_serve_new: %s", e->err);
    assert_int_equal(ea_serve_count(e->srv), 1);
    assert_null(ea_serve_uri(e->srv, 1));
    uri = ea_serve_uri(e->srv, 0);
    assert_non_null(uri);
    assert_int_equal(strncmp(uri, "tcp://127.0.0.1:", 16), 0);
    port = atoi(uri + 16);
    assert_true(port > 0);
    assert_int_equal(pthread_create(&th, NULL, serve_run_thread, e), 0);

    a = jc_tcp(port);
    b = jc_tcp(port);
    jc_atr(a);
    jc_atr(b);
    c = jc_tcp(port); /* one too many: told why, then closed */
    assert_true(jc_recv(c, &mty, r, sizeof r) > 0);
    assert_int_equal(mty, 0x03);
    jc_expect_eof(c);
    close(c);

    /* a stalls mid-header and is dropped after stall_ms; b, idle, is not. */
    send_all(a, half, sizeof half);
    t0 = now_ms();
    jc_expect_eof(a);
    assert_true(now_ms() - t0 >= 250);
    close(a);
    sleep_ms(400);
    jc_atr(b);
    c = jc_tcp(port); /* a's slot is free again */
    jc_atr(c);
    close(c);

    ea_serve_stop(e->srv);
    if (!wait_flag(&e->done, IO_TIMEOUT_MS))
        fail_msg("ea_serve_run did not return after ea_serve_stop");
    pthread_join(th, NULL);
    assert_int_equal(e->rc, EA_OK);
    ea_serve_free(e->srv); /* closes b */
    jc_expect_eof(b);
    close(b);
    tu_chip_free(&e->chip);
    free(e);
}

/* ea_emu_serve: ready callback, *stop flag, unix socket removed at the end. */
static void test_embedded_stop_flag(void **state)
{
    fixture *f = *state;
    char uri[600];
    const char *uris[] = { uri };
    embedded *e = calloc(1, sizeof *e);
    pthread_t th;
    int fd;

    assert_non_null(e);
    snprintf(uri, sizeof uri, "unix://%s", f->sock);
    tu_chip_new(&e->chip, 0);
    e->o.listen = uris;
    e->o.n_listen = 1;
    e->o.stop = &e->stop;
    e->o.ready = on_ready;
    e->o.ready_ctx = e;
    assert_int_equal(pthread_create(&th, NULL, emu_serve_thread, e), 0);
    if (!wait_flag(&e->ready, START_TIMEOUT_MS))
        fail_msg("ea_emu_serve never became ready: %s", e->err);
    fd = jc_unix(f->sock);
    jc_open(fd, NULL);
    e->stop = 1;
    if (!wait_flag(&e->done, IO_TIMEOUT_MS))
        fail_msg("ea_emu_serve did not return after *stop was set");
    pthread_join(th, NULL);
    assert_int_equal(e->rc, EA_OK);
    assert_false(exists(f->sock));
    jc_expect_eof(fd);
    close(fd);
    tu_chip_free(&e->chip);
    free(e);
}

static void test_embedded_bad_uris(void **state)
{
    static const char *const bad[] = {
        "tcp://", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:x", "tcp://::1:80",
        "tcp://[::1", "unix:", "udp://127.0.0.1:1", "tcp://0.0.0.0:0", "tcp://[::]:0",
    };
    tu_chip chip;
    char err[256];
    ea_serve *s = NULL;

    (void)state;
    tu_chip_new(&chip, 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ea_serve_opts o = { .listen = &bad[i], .n_listen = 1 };
        err[0] = '\0';
        assert_int_not_equal(ea_serve_new(chip.emu, &o, &s, err, sizeof err), EA_OK);
        assert_null(s);
        if (strstr(err, bad[i]) == NULL)
            fail_msg("error for %s does not name it: %s", bad[i], err);
    }
    tu_chip_free(&chip);
}

int main(void)
{
    const struct CMUnitTest served[] = {
        cmocka_unit_test(test_atr_tcp),
        cmocka_unit_test(test_select_and_version),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_clients_isolated),
        cmocka_unit_test(test_close_message),
        cmocka_unit_test(test_info_and_lock),
        cmocka_unit_test(test_unknown_type_keeps_link),
        cmocka_unit_test(test_bad_nad_closes),
        cmocka_unit_test(test_stalled_client),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_many_clients),
        cmocka_unit_test(test_second_serve_locked),
        cmocka_unit_test(test_round_trip_rate),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test_setup_teardown(test_sigterm_clean_exit, own_setup, own_teardown),
        cmocka_unit_test_setup_teardown(test_remote_refused, own_setup, own_teardown),
        cmocka_unit_test_setup_teardown(test_check, own_setup, own_teardown),
        cmocka_unit_test_setup_teardown(test_init_refuses_existing, own_setup, own_teardown),
        cmocka_unit_test_setup_teardown(test_stale_unix_socket, own_setup, own_teardown),
        cmocka_unit_test_setup_teardown(test_usage, own_setup, own_teardown),
        cmocka_unit_test(test_embedded_limits_and_stop),
        cmocka_unit_test_setup_teardown(test_embedded_stop_flag, own_setup, own_teardown),
        cmocka_unit_test(test_embedded_bad_uris),
    };
    int failed = 0;

    unsetenv("EDGEAUTH_SE_SEAL_KEY"); /* the chips here keep their key in DIR */
    signal(SIGPIPE, SIG_IGN);
    failed += cmocka_run_group_tests_name("jrcp_served", served, served_setup, served_teardown);
    failed += cmocka_run_group_tests_name("jrcp_own_chip", own, NULL, NULL);
    return failed != 0;
}
