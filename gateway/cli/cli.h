/*
 * gateway/cli/cli.h — the fhirgw subcommands. main.c dispatches on argv[1];
 * each command gets the remaining arguments and returns the exit status.
 */
#ifndef GATEWAY_CLI_H
#define GATEWAY_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* fhirgw validate [--format text|ndjson] [--quiet] PATH... (exit 0 clean, 1 errors, 2 usage/I/O) */
int cmd_validate(int argc, char **argv);

/* fhirgw check [--date YYYY-MM-DD] [--format json|text] [--pack DIR] FILE... (exit 0 compliant, 1 not compliant, 2
 * usage or unusable input) */
int cmd_check(int argc, char **argv);

/* The rule pack in DIR (its pack.json), else rules/packs/<year>/ beside the binary or in share/fhirgw
 * (cmd_check.c; serve loads the current contract year's for the compliance operations). NULL (why on
 * stderr) when there is none or it does not load. */
struct rl_pack;
struct rl_pack *cli_load_pack(const char *dir, int year);

/* fhirgw fhirpath [--now DATETIME] EXPRESSION [FILE|-] (exit 0 evaluated, 1 expression error, 2 usage/I/O) */
int cmd_fhirpath(int argc, char **argv);

/* fhirgw serve --config FILE | --dev DIR [--port N] (exit 0 after a graceful stop) */
int cmd_serve(int argc, char **argv);

/*
 * The implementation guide's package folder that `serve` loads when the conformance setting is
 * empty, found from the binary's path: <exe dir>/ig/package (a build tree) or
 * <exe dir>/../share/fhirgw/ig/package (installed). False when neither has a package.json.
 */
bool cli_guide_package(const char *exe, char *out, size_t size);
/* <exe dir>/<rel>, or the installed data folder's <rel>, if it exists (rel starting with '/'), into out. */
bool cli_beside_binary(const char *rel, char *out, size_t size);

/* fhirgw config [FILE]: every setting with its documentation (and FILE's values) */
int cmd_config(int argc, char **argv);

/* fhirgw ig build|schemas|docs [--source DIR] [--out DIR] (exit 0 ok, 1 problems found, 2 usage/I/O) */
int cmd_ig(int argc, char **argv);

/* fhirgw map --map FILE... [--conformance DIR] [--key-file FILE] [--unmapped] INPUT | --compile FILE
 * (exit 0 ok, 1 the result is invalid, 2 unusable map, key or input) */
int cmd_map(int argc, char **argv);

/* fhirgw audit verify --config FILE | --dev DIR (exit 0 intact, 1 a problem found, 2 usage/I/O) */
int cmd_audit(int argc, char **argv);

/* The settings `serve --dev DIR` implies (cmd_serve.c; audit verify --dev uses them too); false (logged) when a
 * path would not fit. */
struct gw_config;
bool cli_dev_config(struct gw_config *c, const char *dir, unsigned port, unsigned ops_port);
/* The settings of `--config FILE` (flag "--config", value FILE) or `--dev DIR`, as serve reads them, for the
 * commands that work on a gateway's files (audit verify, backup); false (why on stderr, after `who`) when the
 * file does not load or flag is neither. */
bool cli_settings(const char *who, const char *flag, const char *value, struct gw_config *c);

/* fhirgw backup --config FILE | --dev DIR --to DIR (exit 0 backed up, 2 usage, configuration or I/O) */
int cmd_backup(int argc, char **argv);
/* fhirgw restore --config FILE | --dev DIR --from DIR (exit 0 restored and its audit trail verified, 1 restored
 * but the trail does not verify, 2 refused, usage, configuration or I/O) */
int cmd_restore(int argc, char **argv);
/* audit verify of the gateway c configures, its verdict on stdout: 0 intact, 1 a problem found, 2 I/O */
int cli_audit_verify(const struct gw_config *c);

#endif
