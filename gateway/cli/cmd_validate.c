/*
 * gateway/cli/cmd_validate.c — `fhirgw validate`: validate FHIR R4 JSON files.
 *
 *   fhirgw validate [--format text|ndjson] [--quiet] [--conformance DIR]... [--profile URL] PATH...
 *
 * PATHs are files or directories; directories are walked recursively in
 * name order and every *.json below them is validated. Text output lists
 * each file's issues (and "OK" for clean files unless --quiet); ndjson
 * prints one line per file: {"file","errors","warnings","outcome"}.
 * On a terminal a progress line shows how far a long run is.
 * --conformance loads profiles, extensions and terminology from a folder:
 * then every resource's meta.profile is checked, and --profile URL names a
 * profile every file must conform to.
 * Exit status: 0 no errors, 1 errors found, 2 usage or I/O problem.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fhir/validate.h"
#include "gateway/cli/cli.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"

#define MAX_CONFORMANCE_DIRS 16

typedef enum { FORMAT_TEXT, FORMAT_NDJSON } out_format;

typedef struct run {
    out_format format;
    bool quiet;
    bool progress; /* stderr is a terminal */
    file_list files;
    fv_options options;
    size_t files_with_errors, errors, warnings;
    bool io_failed;
    struct timespec last_progress;
} run;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: fhirgw validate [--format text|ndjson] [--quiet] [--conformance DIR]... [--profile URL] PATH...\n"
            "  --format text      issues as lines (default)\n"
            "  --format ndjson    one JSON line per file: {\"file\",\"errors\",\"warnings\",\"outcome\"}\n"
            "  --quiet            print only files with issues, no progress or summary\n"
            "  --conformance DIR  load profiles, extensions, value sets and code systems (*.json) from DIR;\n"
            "                     then meta.profile and known extensions are checked\n"
            "  --profile URL      every file must also conform to this profile (from --conformance)\n"
            "exit status: 0 no errors, 1 errors found, 2 usage or I/O problem\n");
}

/* One issue, indented, in the text form fhir/outcome gives it (long messages included). */
static void print_issue(const oo_issue *is)
{
    char line[512];
    size_t n = oo_issue_format(is, line, sizeof line);
    char *big = n < sizeof line ? NULL : malloc(n + 1);
    if (big)
        oo_issue_format(is, big, n + 1);
    printf("  %s\n", big ? big : line); /* no memory for a long one: it is cut short */
    free(big);
}

static void print_text(const char *file, const oo_list *issues, bool quiet)
{
    if (!issues->errors && !issues->warnings) {
        if (!quiet)
            printf("%s: OK\n", file);
        return;
    }
    printf("%s: %zu error%s, %zu warning%s\n", file, issues->errors, issues->errors == 1 ? "" : "s", issues->warnings,
           issues->warnings == 1 ? "" : "s");
    for (size_t i = 0; i < issues->count; i++)
        if (issues->items[i].severity != OO_INFORMATION)
            print_issue(&issues->items[i]);
    if (issues->dropped)
        printf("  ... %zu more issues not shown\n", issues->dropped);
}

static void print_ndjson(const char *file, const oo_list *issues)
{
    json_object *line = json_object_new_object();
    json_object_object_add(line, "file", json_object_new_string(file));
    json_object_object_add(line, "errors", json_object_new_int64((int64_t)issues->errors));
    json_object_object_add(line, "warnings", json_object_new_int64((int64_t)issues->warnings));
    json_object_object_add(line, "outcome", oo_to_json(issues));
    puts(json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(line);
}

static void show_progress(run *r, size_t done, const char *file)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - r->last_progress.tv_sec) * 1000 + (now.tv_nsec - r->last_progress.tv_nsec) / 1000000;
    if (ms < 100 && done + 1 < r->files.count)
        return;
    r->last_progress = now;
    fprintf(stderr, "\r\033[K[%zu/%zu] %.60s", done + 1, r->files.count, file);
    fflush(stderr);
}

static void validate_one(run *r, const char *file)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    size_t len = 0;
    char *buf = files_read(file, &len);
    if (!buf) {
        oo_add(&issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "cannot read the file: %s", strerror(errno));
        r->io_failed = true;
    } else {
        fv_validate_buffer(buf, len, &r->options, &issues);
        free(buf);
    }
    if (r->progress)
        fputs("\r\033[K", stderr);
    if (r->format == FORMAT_NDJSON)
        print_ndjson(file, &issues);
    else
        print_text(file, &issues, r->quiet);
    r->errors += issues.errors;
    r->warnings += issues.warnings;
    r->files_with_errors += issues.errors > 0;
    oo_list_free(&issues);
}

/* Load the conformance folders; false (after printing why) when they cannot be used. */
static bool load_profiles(run *r, const char *const *dirs, size_t dir_count, const char *profile_url)
{
    if (!dir_count) {
        if (profile_url)
            fprintf(stderr, "fhirgw validate: --profile needs --conformance DIR to load the profile from\n");
        return profile_url == NULL;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_registry *reg = conf_load(dirs, dir_count, &issues);
    for (size_t i = 0; i < issues.count; i++)
        fprintf(stderr, "fhirgw validate: %s: %s\n", oo_severity_name(issues.items[i].severity),
                issues.items[i].message);
    bool ok = reg && issues.errors == 0;
    oo_list_free(&issues);
    r->options.profiles = reg;
    if (ok && profile_url) {
        r->options.profile = pf_find(reg, profile_url);
        if (!r->options.profile) {
            fprintf(stderr, "fhirgw validate: profile %s is not in the conformance folders\n", profile_url);
            ok = false;
        }
    }
    return ok;
}

int cmd_validate(int argc, char **argv)
{
    run r = {0};
    const char *conformance[MAX_CONFORMANCE_DIRS];
    size_t conformance_count = 0;
    const char *profile_url = NULL;
    int path_count = 0;
    bool usage_error = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            const char *f = argv[++i];
            if (!strcmp(f, "text"))
                r.format = FORMAT_TEXT;
            else if (!strcmp(f, "ndjson"))
                r.format = FORMAT_NDJSON;
            else {
                fprintf(stderr, "fhirgw validate: unknown format '%s'\n", f);
                usage_error = true;
            }
        } else if (!strcmp(argv[i], "--conformance") && i + 1 < argc) {
            if (conformance_count < MAX_CONFORMANCE_DIRS)
                conformance[conformance_count++] = argv[++i];
        } else if (!strcmp(argv[i], "--profile") && i + 1 < argc) {
            profile_url = argv[++i];
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            r.quiet = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "fhirgw validate: unknown option '%s'\n", argv[i]);
            usage_error = true;
        } else {
            path_count++;
            if (!files_collect(&r.files, argv[i], "fhirgw validate"))
                r.io_failed = true;
        }
    }
    if (usage_error || !path_count) {
        usage(stderr);
        files_list_free(&r.files);
        return 2;
    }
    int status = 2;
    if (load_profiles(&r, conformance, conformance_count, profile_url)) {
        r.progress = !r.quiet && r.files.count > 1 && isatty(STDERR_FILENO);
        for (size_t i = 0; i < r.files.count; i++) {
            if (r.progress)
                show_progress(&r, i, r.files.paths[i]);
            validate_one(&r, r.files.paths[i]);
            fflush(stdout);
        }
        if (r.progress)
            fputs("\r\033[K", stderr);
        if (!r.quiet && r.format == FORMAT_TEXT)
            fprintf(stderr, "%zu file%s validated: %zu with errors (%zu errors, %zu warnings)\n", r.files.count,
                    r.files.count == 1 ? "" : "s", r.files_with_errors, r.errors, r.warnings);
        status = r.io_failed ? 2 : r.errors ? 1 : 0;
    }
    pf_registry_free((pf_registry *)r.options.profiles);
    files_list_free(&r.files);
    return status;
}
