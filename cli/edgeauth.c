/* edgeauth — the command line for everything but the emulator daemon.
 * Subcommands come from a table; each lives in its own file. Options that
 * apply to every subcommand (--se URI) come before the subcommand's name. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int run_demo(const cli_global *g, int argc, char **argv)
{
    (void)g; /* the demo makes its own chip */
    return cmd_demo(argc, argv);
}

static const struct subcommand {
    const char *name;
    int (*fn)(const cli_global *g, int argc, char **argv);
    const char *help;
} subcommands[] = {
    { "se", cmd_se, "drive the secure element: info, list, keygen, sign, attest..." },
    { "provision", cmd_provision, "factory station: key in the SE, CSR, certificate, chain, registry" },
    { "onboard", cmd_onboard, "accept vendor-provisioned chips from a vendor manifest" },
    { "ca", cmd_ca, "the OEM CA: init, server-cert, revoke, crl, audit" },
    { "device", cmd_device, "the device agent: mutual TLS to the cloud with the key in the SE" },
    { "cloud", cmd_cloud, "the OEM cloud: broker config, devices, revocation" },
    { "demo", run_demo, "create a chip and hold a narrated conversation with it" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: edgeauth [--se URI] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(f, "\noptions:\n"
               "  --se URI   the secure element: emu:DIR, tcp://HOST:PORT, unix:PATH,\n"
               "             t1-tcp://HOST:PORT or i2c:/dev/i2c-N[@0xADDR]\n"
               "             (default: $EDGEAUTH_SE, else a per-user emulated chip)\n"
               "\nedgeauth COMMAND --help shows the options of COMMAND.\n");
}

static int dispatch(const cli_global *g, int argc, char **argv)
{
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[0], subcommands[i].name))
            return subcommands[i].fn(g, argc, argv);
    fprintf(stderr, "edgeauth: unknown command '%s'\n", argv[0]);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "se", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    cli_global g = { 0 };
    int o, rc;

    argv[0] = "edgeauth"; /* getopt_long's messages start with it */
    /* "+": stop at the subcommand; its options are its own. */
    while ((o = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        switch (o) {
        case 's':
            if (!*optarg) {
                fprintf(stderr, "edgeauth: --se needs a URI\n");
                return 2;
            }
            g.se_uri = optarg;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("edgeauth %s\n", EA_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    rc = dispatch(&g, argc - optind, argv + optind);
    /* A full disk or a closed pipe must not pass for success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "edgeauth: cannot write the output\n");
        return rc ? rc : 1;
    }
    return rc;
}
