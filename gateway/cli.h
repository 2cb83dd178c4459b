/*
 * gateway/cli.h — the fhirgw subcommands. main.c dispatches on argv[1];
 * each command gets the remaining arguments and returns the exit status.
 */
#ifndef GATEWAY_CLI_H
#define GATEWAY_CLI_H

/* fhirgw validate [--format text|ndjson] [--quiet] PATH... (exit 0 clean, 1 errors, 2 usage/I/O) */
int cmd_validate(int argc, char **argv);

#endif
