/*
 * cli.h - the subcommands of nvsrelay beside `watch` (main.c): the admin
 * socket's client (ctl.c) and the mongoexport importer (import.c).  Each
 * takes argv with argv[0] set to the subcommand and returns an exit code.
 */
#ifndef NVSRELAY_CLI_H
#define NVSRELAY_CLI_H

#include <stdbool.h>

int ctl_main(int argc, char **argv);
/* Whether s names a subcommand ctl_main runs. */
bool ctl_is_command(const char *s);
int import_main(int argc, char **argv);

#endif
