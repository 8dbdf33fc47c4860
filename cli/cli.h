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

/* `edgeauth provision ...` and `edgeauth onboard ...` (cli/provision.c). */
int cmd_provision(const cli_global *g, int argc, char **argv);
int cmd_onboard(const cli_global *g, int argc, char **argv);

/* `edgeauth ca ...`; argv[0] is "ca". */
int cmd_ca(const cli_global *g, int argc, char **argv);

/* `edgeauth device run ...` (cli/device.c); argv[0] is "device". */
int cmd_device(const cli_global *g, int argc, char **argv);

/* `edgeauth cloud ...` (cli/cloud.c); argv[0] is "cloud". */
int cmd_cloud(const cli_global *g, int argc, char **argv);

#endif
