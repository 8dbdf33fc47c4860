/* Internal: the edgeauth subcommands. */
#ifndef EA_CLI_H
#define EA_CLI_H

#ifndef EA_VERSION
#define EA_VERSION "0.1.0"
#endif

/* Options given before the subcommand (`edgeauth [--se URI] COMMAND ...`). */
typedef struct cli_global {
    const char *se_uri; /* --se URI; NULL = EDGEAUTH_SE, else the library default */
} cli_global;

int cmd_demo(int argc, char **argv);

/* `edgeauth se ...`; argv[0] is "se". */
int cmd_se(const cli_global *g, int argc, char **argv);

#endif
