/* Internal: the edgeauth subcommands. */
#ifndef EA_CLI_H
#define EA_CLI_H

#ifndef EA_VERSION
#define EA_VERSION "0.1.0"
#endif

int cmd_demo(int argc, char **argv);

#endif
