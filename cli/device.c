/* `edgeauth device run`: the device agent (device/agent.h) from the command
 * line. Parses the options, installs SIGINT/SIGTERM handlers that ask the
 * agent to stop, and maps the agent's result to an exit status:
 * 0 done (count reached, or stopped by a signal), 1 failure (the message
 * says which: SE, certificate, broker, TLS), 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "device/agent.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* Set by the signal handler, read by the agent's loop: a handler has no
 * other way to reach the agent. The only mutable file-scope variable here. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void device_usage(FILE *f)
{
    fprintf(f,
            "usage: edgeauth [--se URI] device run --broker mqtts://HOST[:PORT] [options]\n"
            "\n"
            "The device agent: mutual TLS to the cloud's MQTT broker with the key in the SE\n"
            "(0xF0000100, through the edgeauth provider) and the certificate chain read from\n"
            "the SE (0xF0000101 device, 0x7B000101 intermediate, 0x7B000102 root). Publishes\n"
            "telemetry to devices/<id>/telemetry (QoS 1) and prints what arrives on\n"
            "devices/<id>/commands.\n"
            "\n"
            "options:\n"
            "  --broker URL         mqtts://HOST[:PORT] (port 8883 by default); required\n"
            "  --se URI             the secure element (also before `device`; default $EDGEAUTH_SE)\n"
            "  --device-id ID       expected device id; must equal the certificate's CN\n"
            "  --interval TIME      between telemetry messages: 1s (default), 250ms, 2m\n"
            "  --count N            publish N messages, wait for their PUBACKs, exit (0 = run until\n"
            "                       SIGINT/SIGTERM; default 0)\n"
            "  --ca FILE            trust anchors (PEM) for the cloud instead of the SE's root\n"
            "  --server-name NAME   DNS name or IP the cloud's certificate must carry\n"
            "                       (default: the broker host)\n"
            "  --tls 1.2|1.3        allow only this TLS version (default: both)\n"
            "  --retry-min TIME     first reconnect delay (default 500ms)\n"
            "  --retry-max TIME     longest reconnect delay (default 30s)\n"
            "  --max-attempts N     give up after N failed connections in a row (default 0 = never)\n"
            "  --keepalive SECONDS  MQTT keepalive (default 60)\n"
            "  --tls-offload PARTS  let the SE do more of the handshake: random,ecdhe,prf or a\n"
            "                       subset (client random, ECDHE, PRF/key schedule; docs/DEVICE.md)\n"
            "  --no-resume          never resume the last TLS session (every reconnect is a\n"
            "                       full handshake with a signature in the SE)\n"
            "  --trace              print the TLS handshake phases with their timings\n"
            "  --json               one JSON object per line instead of text\n"
            "\n"
            "exit status: 0 done, 1 failure, 2 usage error\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "edgeauth device run: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: edgeauth [--se URI] device run --broker mqtts://HOST[:PORT] [options] "
                    "(--help for all)\n");
    return EXIT_USAGE;
}

/* "1s", "250ms", "2m", "1.5s", plain number = seconds. */
static bool parse_duration_ms(const char *s, unsigned *out)
{
    char *end;
    double v, scale;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return false;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        scale = 1000.0;
    else if (!strcmp(end, "ms"))
        scale = 1.0;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        scale = 60000.0;
    else if (!strcmp(end, "h"))
        scale = 3600000.0;
    else
        return false;
    v *= scale;
    if (v < 1.0 || v > 86400000.0) /* 1 ms .. 1 day */
        return false;
    *out = (unsigned)v;
    return true;
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+')
        return false;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max)
        return false;
    *out = v;
    return true;
}

enum { O_BROKER = 256, O_SE, O_ID, O_INTERVAL, O_COUNT, O_CA, O_NAME, O_TLS, O_RMIN, O_RMAX, O_MAXATT, O_KEEP,
       O_TRACE, O_JSON, O_NORESUME, O_OFFLOAD };

static int parse_run(const cli_global *g, int argc, char **argv, ea_agent_opts *o)
{
    static const struct option lo[] = {
        { "broker", required_argument, NULL, O_BROKER },
        { "se", required_argument, NULL, O_SE },
        { "device-id", required_argument, NULL, O_ID },
        { "interval", required_argument, NULL, O_INTERVAL },
        { "count", required_argument, NULL, O_COUNT },
        { "ca", required_argument, NULL, O_CA },
        { "server-name", required_argument, NULL, O_NAME },
        { "tls", required_argument, NULL, O_TLS },
        { "retry-min", required_argument, NULL, O_RMIN },
        { "retry-max", required_argument, NULL, O_RMAX },
        { "max-attempts", required_argument, NULL, O_MAXATT },
        { "keepalive", required_argument, NULL, O_KEEP },
        { "trace", no_argument, NULL, O_TRACE },
        { "no-resume", no_argument, NULL, O_NORESUME },
        { "tls-offload", required_argument, NULL, O_OFFLOAD },
        { "json", no_argument, NULL, O_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    int c;

    o->se_uri = g ? g->se_uri : NULL;
    optind = 0; /* a fresh scan: main's scan stopped at the subcommand */
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'h': device_usage(stdout); return -1;
        case O_BROKER: o->broker = optarg; break;
        case O_SE:
            if (!*optarg)
                return usage_error("--se needs a URI");
            o->se_uri = optarg;
            break;
        case O_ID: o->device_id = optarg; break;
        case O_CA: o->ca_file = optarg; break;
        case O_NAME: o->server_name = optarg; break;
        case O_TRACE: o->trace = true; break;
        case O_NORESUME: o->no_resume = true; break;
        case O_OFFLOAD: o->tls_offload = optarg; break;
        case O_JSON: o->json = true; break;
        case O_INTERVAL:
            if (!parse_duration_ms(optarg, &o->interval_ms))
                return usage_error("--interval: '%s' is not a duration (1s, 250ms, 2m)", optarg);
            break;
        case O_RMIN:
            if (!parse_duration_ms(optarg, &o->retry_min_ms))
                return usage_error("--retry-min: '%s' is not a duration", optarg);
            break;
        case O_RMAX:
            if (!parse_duration_ms(optarg, &o->retry_max_ms))
                return usage_error("--retry-max: '%s' is not a duration", optarg);
            break;
        case O_COUNT:
            if (!parse_ulong(optarg, 1000000000ul, &o->count))
                return usage_error("--count: '%s' is not a number of messages", optarg);
            break;
        case O_MAXATT:
            if (!parse_ulong(optarg, 1000000ul, &v))
                return usage_error("--max-attempts: '%s' is not a number", optarg);
            o->max_attempts = (unsigned)v;
            break;
        case O_KEEP:
            if (!parse_ulong(optarg, 65535ul, &v) || v < 5)
                return usage_error("--keepalive: '%s' is not 5..65535 seconds", optarg);
            o->keepalive_s = (unsigned)v;
            break;
        case O_TLS:
            if (!strcmp(optarg, "1.2"))
                o->tls_version = TLS1_2_VERSION;
            else if (!strcmp(optarg, "1.3"))
                o->tls_version = TLS1_3_VERSION;
            else
                return usage_error("--tls: '%s' is not 1.2 or 1.3", optarg);
            break;
        default: return usage_error("unknown option");
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->broker)
        return usage_error("--broker mqtts://HOST[:PORT] is required");
    return 0;
}

static int device_run(const cli_global *g, int argc, char **argv)
{
    ea_agent_opts o = { 0 };
    ea_agent *a = NULL;
    char err[1024] = "";
    struct sigaction sa;
    ea_err rc;
    int st = parse_run(g, argc, argv, &o);

    if (st)
        return st < 0 ? 0 : st;
    /* No SA_RESTART: a signal must cut a blocking connect() short. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    o.stop = &stop_requested;

    if ((rc = ea_agent_new(&o, &a, err, sizeof err)) != EA_OK) {
        fprintf(stderr, "edgeauth device run: %s\n", err[0] ? err : ea_err_str(rc));
        return rc == EA_ERR_ARG ? EXIT_USAGE : EXIT_FAIL;
    }
    rc = ea_agent_run(a, err, sizeof err);
    ea_agent_free(a);
    if (rc != EA_OK) {
        fprintf(stderr, "edgeauth device run: %s\n", err[0] ? err : ea_err_str(rc));
        return EXIT_FAIL;
    }
    return 0;
}

int cmd_device(const cli_global *g, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        device_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "run"))
        return device_run(g, argc - 1, argv + 1);
    fprintf(stderr, "edgeauth device: unknown command '%s' (only `run`)\n", argv[1]);
    return EXIT_USAGE;
}
