/*
 * gateway/cmd_validate.c — `fhirgw validate`: validate FHIR R4 JSON files.
 *
 *   fhirgw validate [--format text|ndjson] [--quiet] PATH...
 *
 * PATHs are files or directories; directories are walked recursively in
 * name order and every *.json below them is validated. Text output lists
 * each file's issues (and "OK" for clean files unless --quiet); ndjson
 * prints one line per file: {"file","errors","warnings","outcome"}.
 * On a terminal a progress line shows how far a long run is.
 * Exit status: 0 no errors, 1 errors found, 2 usage or I/O problem.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fhir/validate.h"
#include "gateway/cli.h"

typedef enum { FORMAT_TEXT, FORMAT_NDJSON } out_format;

typedef struct run {
    out_format format;
    bool quiet;
    bool progress;      /* stderr is a terminal */
    char **files;       /* collected paths, owned */
    size_t file_count, file_capacity;
    size_t files_with_errors, errors, warnings;
    bool io_failed;
    struct timespec last_progress;
} run;

static void usage(FILE *to)
{
    fprintf(to, "usage: fhirgw validate [--format text|ndjson] [--quiet] PATH...\n"
                "  --format text    issues as lines (default)\n"
                "  --format ndjson  one JSON line per file: {\"file\",\"errors\",\"warnings\",\"outcome\"}\n"
                "  --quiet          print only files with issues, no progress or summary\n"
                "exit status: 0 no errors, 1 errors found, 2 usage or I/O problem\n");
}

static bool add_file(run *r, const char *path)
{
    if (r->file_count == r->file_capacity) {
        size_t cap = r->file_capacity ? r->file_capacity * 2 : 256;
        char **files = realloc(r->files, cap * sizeof *files);
        if (!files)
            return false;
        r->files = files;
        r->file_capacity = cap;
    }
    r->files[r->file_count] = strdup(path);
    return r->files[r->file_count++] != NULL;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with_json(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && !strcmp(name + n - 5, ".json");
}

/* Collect *.json below dir, in name order (reproducible runs). */
static bool collect_dir(run *r, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fhirgw validate: cannot open %s: %s\n", dir, strerror(errno));
        return false;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[count++] = strdup(ent->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, name_cmp);
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            ok = collect_dir(r, path) && ok;
        else if (ends_with_json(names[i]))
            ok = add_file(r, path) && ok;
        free(names[i]);
    }
    free(names);
    return ok;
}

static bool collect(run *r, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fhirgw validate: %s: %s\n", path, strerror(errno));
        return false;
    }
    if (S_ISDIR(st.st_mode))
        return collect_dir(r, path);
    return add_file(r, path);
}

/* Whole file into a malloc'd buffer; NULL with errno on failure. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (cap - size < 65536) {
            cap = cap ? cap * 2 : 131072;
            char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + size, 1, cap - size, f);
        size += n;
        if (n == 0)
            break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = size;
    return buf;
}

static void print_text(const char *file, const oo_list *issues, bool quiet)
{
    if (!issues->errors && !issues->warnings) {
        if (!quiet)
            printf("%s: OK\n", file);
        return;
    }
    printf("%s: %zu error%s, %zu warning%s\n", file, issues->errors, issues->errors == 1 ? "" : "s",
           issues->warnings, issues->warnings == 1 ? "" : "s");
    for (size_t i = 0; i < issues->count; i++) {
        const oo_issue *is = &issues->items[i];
        if (is->severity == OO_INFORMATION)
            continue;
        printf("  %-7s %-12s %s", oo_severity_name(is->severity), is->code, is->expression ? is->expression : "");
        if (is->line)
            printf("%s(line %u, col %u)", is->expression ? " " : "", is->line, is->column);
        printf(": %s\n", is->message ? is->message : "");
    }
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
    if (ms < 100 && done + 1 < r->file_count)
        return;
    r->last_progress = now;
    fprintf(stderr, "\r\033[K[%zu/%zu] %.60s", done + 1, r->file_count, file);
    fflush(stderr);
}

static void validate_one(run *r, const char *file)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    size_t len = 0;
    char *buf = read_file(file, &len);
    if (!buf) {
        oo_add(&issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "cannot read the file: %s", strerror(errno));
        r->io_failed = true;
    } else {
        fv_validate_buffer(buf, len, NULL, &issues);
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

int cmd_validate(int argc, char **argv)
{
    run r = {0};
    int first_path = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            const char *f = argv[++i];
            if (!strcmp(f, "text"))
                r.format = FORMAT_TEXT;
            else if (!strcmp(f, "ndjson"))
                r.format = FORMAT_NDJSON;
            else {
                fprintf(stderr, "fhirgw validate: unknown format '%s'\n", f);
                usage(stderr);
                return 2;
            }
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            r.quiet = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "fhirgw validate: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            first_path = first_path ? first_path : i;
            if (!collect(&r, argv[i]))
                r.io_failed = true;
        }
    }
    if (!first_path) {
        usage(stderr);
        return 2;
    }
    r.progress = !r.quiet && r.file_count > 1 && isatty(STDERR_FILENO);
    for (size_t i = 0; i < r.file_count; i++) {
        if (r.progress)
            show_progress(&r, i, r.files[i]);
        validate_one(&r, r.files[i]);
        fflush(stdout);
    }
    if (r.progress)
        fputs("\r\033[K", stderr);
    if (!r.quiet && r.format == FORMAT_TEXT)
        fprintf(stderr, "%zu file%s validated: %zu with errors (%zu errors, %zu warnings)\n", r.file_count,
                r.file_count == 1 ? "" : "s", r.files_with_errors, r.errors, r.warnings);
    for (size_t i = 0; i < r.file_count; i++)
        free(r.files[i]);
    free(r.files);
    if (r.io_failed)
        return 2;
    return r.errors ? 1 : 0;
}
