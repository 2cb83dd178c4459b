/*
 * gateway/cli/cmd_ig.c — `fhirgw ig`: the implementation guide's build tooling (ig/tools/).
 *
 *   fhirgw ig build   [--source DIR] [--out DIR]   check the guide, validate its examples with
 *                                                 the package itself, write OUT/package/
 *   fhirgw ig schemas [--source DIR] [--out DIR]   JSON Schemas of the logical models
 *   fhirgw ig docs    [--source DIR] [--out DIR]   the Markdown pages (docs/ig/)
 *
 * SOURCE defaults to ./ig; OUT to ./build/ig, SOURCE/schemas and SOURCE/../docs/ig. The .tgz
 * is made from OUT/package by ig/tools/pack-tgz (CMake runs both; see README.md).
 * Problems are printed one a line with the file and the FHIRPath location; nothing is
 * written when there are any. Exit status: 0 ok, 1 problems found, 2 usage or I/O problem.
 *
 * Memory: everything is freed before returning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cli/cli.h"
#include "ig/tools/docgen.h"
#include "ig/tools/jsonschema.h"
#include "ig/tools/package.h"

typedef enum { IG_BUILD, IG_SCHEMAS, IG_DOCS } ig_action;

static void usage(FILE *to)
{
    fprintf(to, "usage: fhirgw ig build   [--source DIR] [--out DIR]   check the guide, write OUT/package/\n"
                "       fhirgw ig schemas [--source DIR] [--out DIR]   JSON Schemas of the logical models\n"
                "       fhirgw ig docs    [--source DIR] [--out DIR]   Markdown pages of the guide\n"
                "  --source DIR   the guide's source folder (default ./ig)\n"
                "  --out DIR      build: ./build/ig; schemas: SOURCE/schemas; docs: SOURCE/../docs/ig\n"
                "exit status: 0 ok, 1 problems found, 2 usage or I/O problem\n");
}

static void print_issues(const oo_list *issues)
{
    for (size_t i = 0; i < issues->count; i++) {
        char line[1024];
        size_t n = oo_issue_format(&issues->items[i], line, sizeof line);
        char *big = n < sizeof line ? NULL : malloc(n + 1);
        if (big)
            oo_issue_format(&issues->items[i], big, n + 1);
        printf("%s\n", big ? big : line);
        free(big);
    }
    if (issues->dropped)
        printf("... %zu more issues not shown\n", issues->dropped);
}

/* Check the package and validate its examples with it; the errors found. */
static size_t check_package(const igp_package *p, oo_list *issues)
{
    pf_registry *r = igp_registry(p, issues);
    if (r)
        igp_validate_examples(p, r, issues);
    pf_registry_free(r);
    return issues->errors;
}

static bool write_output(ig_action action, const igp_package *p, const char *out, oo_list *issues)
{
    switch (action) {
    case IG_BUILD: return igp_write(p, out, issues);
    case IG_SCHEMAS: return ijs_write_all(p, out, issues);
    case IG_DOCS: return igd_write_all(p, out, issues);
    }
    return false;
}

static int run_action(ig_action action, const char *source, const char *out)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    igp_package p;
    bool io_ok = igp_load(source, &p, &issues);
    int status = 2;
    if (io_ok && check_package(&p, &issues) == 0)
        status = write_output(action, &p, out, &issues) ? 0 : 2;
    else if (io_ok)
        status = 1;
    print_issues(&issues);
    if (status == 0)
        fprintf(stderr, "fhirgw ig: %s written (%s %s, %zu resources)\n", out, p.name, p.version, p.count);
    else
        fprintf(stderr, "fhirgw ig: %zu problem%s, nothing written\n", issues.errors, issues.errors == 1 ? "" : "s");
    igp_free(&p);
    oo_list_free(&issues);
    return status;
}

int cmd_ig(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    ig_action action;
    if (!strcmp(argv[1], "build"))
        action = IG_BUILD;
    else if (!strcmp(argv[1], "schemas"))
        action = IG_SCHEMAS;
    else if (!strcmp(argv[1], "docs"))
        action = IG_DOCS;
    else {
        fprintf(stderr, "fhirgw ig: unknown action '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const char *source = "ig", *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--source") && i + 1 < argc)
            source = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else {
            fprintf(stderr, "fhirgw ig: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char fallback[4096];
    if (!out) {
        const char *tail[] = {NULL, "/schemas", "/../docs/ig"};
        if (action == IG_BUILD)
            snprintf(fallback, sizeof fallback, "build/ig");
        else
            snprintf(fallback, sizeof fallback, "%s%s", source, tail[action]);
        out = fallback;
    }
    return run_action(action, source, out);
}
