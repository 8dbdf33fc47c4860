/* edgeauth — the command line for everything but the emulator daemon.
 * Subcommands come from a table; each lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} subcommands[] = {
    { "demo", cmd_demo, "create a chip and hold a narrated conversation with it" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: edgeauth <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("edgeauth %s\n", EA_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name))
            return subcommands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "edgeauth: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
