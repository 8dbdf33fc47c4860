/* edgeauth-se: create, serve and check an emulated SE05x chip.
 *
 *   edgeauth-se init  --state DIR [--vendor-ca DIR] [--seal-key FILE] [--preprovision] [--force]
 *                     [--scp03-keys-out FILE] [--scp03-keys default:VARIANT|FILE]
 *   edgeauth-se serve --state DIR [--listen URI]... [--allow-remote] [--seal-key FILE]
 *                     [--pidfile FILE] [--timing se050|none] [--apdu-log FILE] [-v]
 *   edgeauth-se check --state DIR [--seal-key FILE]
 *
 * Exit status: 0 success, 1 failure, 2 usage error. Messages go to stderr
 * as "edgeauth-se: ...". Nothing secret is ever printed. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "edgeauth/emu.h"
#include "edgeauth/err.h"
#include "emu/server.h"
#include "emu/store.h"

#ifndef EA_VERSION
#define EA_VERSION "0.1.0"
#endif

#define PROG "edgeauth-se"
#define EXIT_USAGE 2

/* The signal handler has no context argument: this is the only way it can
 * reach the running server. Written with the stop signals blocked, so the
 * handler never sees it half-set. The only file-scope variable in cli/. */
static ea_serve *volatile running_server;

typedef int cmd_fn(int argc, char **argv);
static cmd_fn cmd_init, cmd_serve, cmd_check;

static const struct subcommand {
    const char *name;
    cmd_fn *fn;
    const char *usage;
    const char *desc;
} subcommands[] = {
    { "init", cmd_init,
      "init --state DIR [--vendor-ca DIR] [--seal-key FILE] [--preprovision] [--force] "
      "[--scp03-keys-out FILE] [--scp03-keys default:VARIANT|FILE]",
      "create a new chip in DIR" },
    { "serve", cmd_serve,
      "serve --state DIR [--listen URI]... [--allow-remote] [--seal-key FILE] [--pidfile FILE] "
      "[--timing se050|none] [--apdu-log FILE] [-v]",
      "serve the chip over JRCP_v1 (default " EA_SERVE_DEFAULT_URI ")" },
    { "check", cmd_check, "check --state DIR [--seal-key FILE]",
      "verify that every stored object authenticates" },
};

static const struct subcommand *find_subcommand(const char *name)
{
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        if (strcmp(subcommands[i].name, name) == 0)
            return &subcommands[i];
    }
    return NULL;
}

static void usage_all(FILE *f)
{
    fprintf(f, "usage: " PROG " COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-6s %s\n", subcommands[i].name, subcommands[i].desc);
    fprintf(f, "\n" PROG " COMMAND --help shows the options of COMMAND.\n"
               PROG " --version prints the version.\n");
}

static int usage_error(const char *cmd, const char *what)
{
    const struct subcommand *sc = find_subcommand(cmd);

    fprintf(stderr, PROG ": %s\n", what);
    if (sc != NULL)
        fprintf(stderr, "usage: " PROG " %s\n", sc->usage);
    return EXIT_USAGE;
}

/* getopt_long has printed its own complaint already. */
static int usage_short(const char *cmd)
{
    const struct subcommand *sc = find_subcommand(cmd);

    if (sc != NULL)
        fprintf(stderr, "usage: " PROG " %s\n", sc->usage);
    return EXIT_USAGE;
}

static int help(const char *cmd, const char *details)
{
    const struct subcommand *sc = find_subcommand(cmd);

    printf("usage: " PROG " %s\n\n%s.\n\n%s", sc->usage, sc->desc, details);
    return 0;
}

static void print_failure(const char *what, const char *dir, ea_err rc, const char *err)
{
    fprintf(stderr, PROG ": %s %s: %s%s%s\n", what, dir, ea_err_str(rc), *err ? ": " : "", err);
}

/* ---- init ---------------------------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
    static const struct option lo[] = {
        { "state", required_argument, NULL, 's' },
        { "vendor-ca", required_argument, NULL, 'V' },
        { "seal-key", required_argument, NULL, 'k' },
        { "preprovision", no_argument, NULL, 'p' },
        { "force", no_argument, NULL, 'f' },
        { "scp03-keys-out", required_argument, NULL, 'O' },
        { "scp03-keys", required_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ea_emu_init_opts io = { 0 };
    const char *state = NULL;
    char err[512] = "";
    const char *env_key = getenv("EDGEAUTH_SE_SEAL_KEY");
    ea_err rc;
    int o;

    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 's': state = optarg; break;
        case 'V': io.vendor_ca_dir = optarg; break;
        case 'k': io.seal_key_path = optarg; break;
        case 'p': io.preprovision = 1; break;
        case 'f': io.force = 1; break;
        case 'O': io.scp03_keys_out = optarg; break;
        case 'K': io.scp03_keys = optarg; break;
        case 'h':
            return help("init",
                        "  --state DIR       the chip's state directory (created, mode 0700)\n"
                        "  --vendor-ca DIR   SE vendor CA that certifies the attestation key\n"
                        "                    (default DIR/vendor, created on first use)\n"
                        "  --seal-key FILE   write the sealing secret here instead of "
                        "DIR/seal.key\n"
                        "  --preprovision    also create device key F0000100 + cert F0000101\n"
                        "  --force           wipe an existing chip in DIR first\n"
                        "  --scp03-keys-out FILE  export the chip's Platform SCP03 keys (ENC, MAC,\n"
                        "                    DEK) to FILE, mode 0600, for the host's ?scp03=FILE;\n"
                        "                    this is the only time the chip gives them out\n"
                        "  --scp03-keys default:VARIANT|FILE  use NXP's published default keys of\n"
                        "                    VARIANT (e.g. SE050C1; compatibility tests only: they\n"
                        "                    are public) or the keys in FILE instead of fresh\n"
                        "                    random ones\n");
        default: return usage_short("init");
        }
    }
    if (optind < argc)
        return usage_error("init", "unexpected argument");
    if (state == NULL)
        return usage_error("init", "--state DIR is required");

    rc = ea_emu_init(state, &io, err, sizeof err);
    if (rc == EA_ERR_EXISTS && !io.force) {
        fprintf(stderr, PROG ": %s already holds a chip; pass --force to wipe it and create a "
                        "new one\n", state);
        return 1;
    }
    if (rc != EA_OK) {
        print_failure("cannot create a chip in", state, rc, err);
        return 1;
    }
    printf(PROG ": created chip in %s%s\n", state, io.force ? " (old chip wiped)" : "");
    printf("  unique id        7FFF0206\n");
    printf("  attestation key  F0000012, certificate F0000013 (vendor CA: ");
    if (io.vendor_ca_dir != NULL)
        printf("%s)\n", io.vendor_ca_dir);
    else
        printf("%s/vendor)\n", state);
    if (io.preprovision)
        printf("  device key       F0000100, certificate F0000101\n");
    printf("  platform SCP03   key version 0B, %s%s%s\n",
           io.scp03_keys ? (strncmp(io.scp03_keys, "default:", 8) ? "keys from the given file" : "PUBLISHED default keys (not secret)")
                         : "random keys",
           io.scp03_keys_out ? ", exported to " : (io.scp03_keys ? "" : ", not exported"),
           io.scp03_keys_out ? io.scp03_keys_out : "");
    if (env_key != NULL && *env_key != '\0')
        printf("  sealing secret   from EDGEAUTH_SE_SEAL_KEY (not stored)\n");
    else if (io.seal_key_path != NULL)
        printf("  sealing secret   %s (mode 0600)\n", io.seal_key_path);
    else
        printf("  sealing secret   %s/seal.key (mode 0600)\n", state);
    return 0;
}

/* ---- serve --------------------------------------------------------------------- */

static void on_stop_signal(int sig)
{
    (void)sig;
    ea_serve_stop(running_server); /* async-signal-safe: one write() */
}

static int install_stop_handlers(sigset_t *old)
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
    struct sigaction sa;
    sigset_t block;

    sigemptyset(&block);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&block, sigs[i]);
    /* Keep them pending until the server exists; the handler then finds it. */
    if (sigprocmask(SIG_BLOCK, &block, old) != 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_mask = block;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -1;
    }
    /* Sockets use MSG_NOSIGNAL; this covers stderr on a closed pipe. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int write_pidfile(const char *path)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    ea_err rc = ea_file_write_atomic(path, buf, (size_t)n, 0644);

    if (rc != EA_OK) {
        fprintf(stderr, PROG ": cannot write pid file %s: %s\n", path, ea_err_str(rc));
        return -1;
    }
    return 0;
}

static void announce(const char *state, const ea_serve *srv)
{
    fprintf(stderr, PROG ": serving %s on", state);
    for (size_t i = 0; i < ea_serve_count(srv); i++)
        fprintf(stderr, " %s", ea_serve_uri(srv, i));
    fputc('\n', stderr);
    fflush(stderr);
}

static int cmd_serve(int argc, char **argv)
{
    static const struct option lo[] = {
        { "state", required_argument, NULL, 's' },
        { "listen", required_argument, NULL, 'l' },
        { "allow-remote", no_argument, NULL, 'R' },
        { "seal-key", required_argument, NULL, 'k' },
        { "pidfile", required_argument, NULL, 'P' },
        { "allow-factory-reset", no_argument, NULL, 'F' },
        { "timing", required_argument, NULL, 'T' },
        { "apdu-log", required_argument, NULL, 'L' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *listen[EA_SERVE_MAX_LISTEN];
    ea_serve_opts so = { 0 };
    ea_emu_opts eo = { 0 };
    const char *state = NULL, *pidfile = NULL;
    ea_emu *emu = NULL;
    ea_serve *srv = NULL;
    sigset_t old;
    char err[512] = "";
    ea_err rc;
    int o, status = 1;
    bool pid_written = false;

    while ((o = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (o) {
        case 's': state = optarg; break;
        case 'l':
            if (so.n_listen >= EA_SERVE_MAX_LISTEN)
                return usage_error("serve", "too many --listen options");
            listen[so.n_listen++] = optarg;
            break;
        case 'R': so.allow_remote = 1; break;
        case 'k': eo.seal_key_path = optarg; break;
        case 'P': pidfile = optarg; break;
        case 'F': eo.allow_factory_reset = 1; break;
        case 'T':
            if (strcmp(optarg, "se050") && strcmp(optarg, "none"))
                return usage_error("serve", "--timing takes se050 or none");
            eo.timing = optarg;
            break;
        case 'L': eo.apdu_log = optarg; break;
        case 'v': so.verbose = 1; break;
        case 'h':
            return help("serve",
                        "  --state DIR       the chip's state directory (see init)\n"
                        "  --listen URI      tcp://HOST:PORT (port 0: any free port), t1-tcp://HOST:PORT (T=1 over I2C frames), or "
                        "unix:PATH;\n"
                        "                    repeat for several; default " EA_SERVE_DEFAULT_URI
                        "\n"
                        "  --allow-remote    allow non-loopback tcp addresses (JRCP_v1 has no\n"
                        "                    authentication: anyone who connects drives the "
                        "chip)\n"
                        "  --seal-key FILE   sealing secret (default DIR/seal.key; the\n"
                        "                    environment variable EDGEAUTH_SE_SEAL_KEY wins)\n"
                        "  --pidfile FILE    write the process id here once listening\n"
                        "  --allow-factory-reset  accept DeleteAll (a real SE05x wants a\n"
                        "                    FACTORY_RESET session, not emulated; off: 69 82)\n"
                        "  --timing MODEL    se050: delay every command by what NXP measured on\n"
                        "                    an SE050 over I2C (the SCP03 figure for wrapped\n"
                        "                    commands), to see hardware timings before the\n"
                        "                    board exists; none (default): full speed\n"
                        "  --apdu-log FILE   append one line per command: time, channel, header,\n"
                        "                    name, plain/scp03, lengths, status word, duration\n"
                        "                    (never any data)\n"
                        "  -v, --verbose     log connections on stderr (never APDU bytes)\n"
                        "\nOnce listening, prints \"" PROG ": serving DIR on URI...\" on stderr.\n"
                        "SIGTERM, SIGINT or SIGHUP stop the server cleanly (exit status 0).\n");
        default: return usage_short("serve");
        }
    }
    if (optind < argc)
        return usage_error("serve", "unexpected argument");
    if (state == NULL)
        return usage_error("serve", "--state DIR is required");
    so.listen = listen;

    if (install_stop_handlers(&old) != 0) {
        fprintf(stderr, PROG ": cannot install signal handlers: %s\n", strerror(errno));
        return 1;
    }
    eo.holder = PROG " serve";
    rc = ea_emu_open(state, &eo, &emu, err, sizeof err);
    if (rc != EA_OK) {
        print_failure("cannot open chip", state, rc, err);
        goto out;
    }
    rc = ea_serve_new(emu, &so, &srv, err, sizeof err);
    if (rc != EA_OK) {
        fprintf(stderr, PROG ": cannot listen: %s\n", err);
        goto out;
    }
    if (pidfile != NULL) {
        if (write_pidfile(pidfile) != 0)
            goto out;
        pid_written = true;
    }
    running_server = srv; /* the stop signals are still blocked here */
    announce(state, srv);
    sigprocmask(SIG_SETMASK, &old, NULL); /* a pending SIGTERM lands now */
    rc = ea_serve_run(srv);
    if (rc != EA_OK) {
        fprintf(stderr, PROG ": server loop failed: %s\n", ea_err_str(rc));
        goto out;
    }
    if (so.verbose)
        fprintf(stderr, PROG ": stopping\n");
    status = 0;
out:
    /* Block the stop signals again before the server goes away, so a late
     * signal cannot reach a freed server. */
    {
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGHUP);
        sigprocmask(SIG_BLOCK, &block, NULL);
    }
    running_server = NULL;
    ea_serve_free(srv);
    ea_emu_close(emu);
    if (pid_written)
        unlink(pidfile);
    return status;
}

/* ---- check --------------------------------------------------------------------- */

static void report_problem(void *ctx, const char *line)
{
    unsigned *n = ctx;

    (*n)++;
    printf("%s\n", line);
}

static int cmd_check(int argc, char **argv)
{
    static const struct option lo[] = {
        { "state", required_argument, NULL, 's' },
        { "seal-key", required_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ea_store_opts so = { 0 };
    const char *state = NULL;
    unsigned problems = 0;
    ea_err rc;
    int o;

    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 's': state = optarg; break;
        case 'k': so.key_path = optarg; break;
        case 'h':
            return help("check",
                        "  --state DIR       the chip's state directory\n"
                        "  --seal-key FILE   sealing secret (default DIR/seal.key; the\n"
                        "                    environment variable EDGEAUTH_SE_SEAL_KEY wins)\n"
                        "\nPrints one line per damaged or missing object. Exit status 0 when\n"
                        "every object authenticates, 1 otherwise. Needs the chip's lock, so it\n"
                        "fails while a server has the chip open.\n");
        default: return usage_short("check");
        }
    }
    if (optind < argc)
        return usage_error("check", "unexpected argument");
    if (state == NULL)
        return usage_error("check", "--state DIR is required");

    so.holder = PROG " check";
    rc = ea_store_check(state, &so, report_problem, &problems);
    fflush(stdout);
    if (rc == EA_OK) {
        printf(PROG ": %s: every object authenticates\n", state);
        return 0;
    }
    if (rc == EA_ERR_CORRUPT)
        fprintf(stderr, PROG ": %s: %u problem(s) found\n", state, problems);
    else
        fprintf(stderr, PROG ": cannot check %s: %s\n", state, ea_err_str(rc));
    return 1;
}

/* ---- main ----------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static char argv0[32];
    const struct subcommand *sc;

    if (argc < 2) {
        usage_all(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_all(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf(PROG " " EA_VERSION "\n");
        return 0;
    }
    sc = find_subcommand(argv[1]);
    if (sc == NULL) {
        fprintf(stderr, PROG ": unknown command '%s'\n", argv[1]);
        usage_all(stderr);
        return EXIT_USAGE;
    }
    /* The subcommand parses its own options; getopt_long's messages then
     * start with "edgeauth-se COMMAND:". */
    snprintf(argv0, sizeof argv0, PROG " %s", sc->name);
    argv[1] = argv0;
    return sc->fn(argc - 1, argv + 1);
}
