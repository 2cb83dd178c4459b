/*
 * gateway/cli/cmd_check.c — `fhirgw check`: the compliance rules over files.
 *
 *   fhirgw check [--date YYYY-MM-DD] [--format json|text] [--pack DIR] [--conformance DIR]... FILE...
 *
 * A FILE is one resource, a Bundle with its context (the first CarePlan,
 * Encounter or Organization entry is the subject, the rest its context), or
 * NDJSON (*.ndjson: one such Bundle or resource a line) for bulk checks.
 * The date checked is --date, else today (UTC): the rules get it as an input.
 * The rule pack is --pack DIR (its pack.json), else the contract year's
 * folder rules/packs/<year of the date> beside the binary (build tree) or in
 * share/fhirgw (installed); the guide's profiles come from --conformance,
 * else the guide's package beside the binary.
 * Output: json prints the report's FHIR Parameters (one subject: indented;
 * several: one line each), text a page per subject for a person.
 * Exit status: 0 compliant (or needs review), 1 a subject is not compliant,
 * 2 usage, unusable input, or no pack or guide.
 * Memory: everything read is freed before returning.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/cli/cli.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "rules/bundle.h"
#include "rules/check.h"

#define MAX_CONFORMANCE_DIRS 16

typedef struct check_run {
    bool text, several;
    fdt_value date;
    const rl_engine *engine;
    size_t subjects, non_compliant, unusable;
} check_run;

static void usage(FILE *to)
{
    fprintf(to, "usage: fhirgw check [--date YYYY-MM-DD] [--format json|text] [--pack DIR] [--conformance DIR]... "
                "FILE...\n"
                "  FILE               a resource, a Bundle with its context (the first CarePlan, Encounter or\n"
                "                     Organization is the subject), or *.ndjson with one such a line\n"
                "  --date DATE        the date checked (default: today, UTC)\n"
                "  --format json      the report as FHIR Parameters (default); text: a page for a person\n"
                "  --pack DIR         the rule pack's folder (default: rules/packs/<year of the date>)\n"
                "  --conformance DIR  the guide's profiles (default: the guide's package beside the binary)\n"
                "exit status: 0 compliant or needs review, 1 not compliant, 2 usage or unusable input\n");
}

/* Check one parsed document; name says where it came from in messages. */
static void check_doc(check_run *r, fj_doc *doc, const char *name)
{
    rl_bundle b;
    size_t ntypes;
    const char *const *types = rl_engine_subject_types(r->engine, &ntypes);
    rl_res subject = {doc, RL_NO_NODE};
    if (rl_bundle_init(&b, doc))
        subject = rl_bundle_subject(&b, types, ntypes);
    char err[256] = "no CarePlan, Encounter or Organization to check";
    rl_report rep;
    rl_context ctx = rl_bundle_context(&b, subject, r->date);
    if (subject.node == RL_NO_NODE || !rl_check(r->engine, &ctx, &rep, err, sizeof err)) {
        fprintf(stderr, "fhirgw check: %s: %s\n", name, err);
        r->unusable++;
        if (subject.node != RL_NO_NODE)
            rl_report_free(&rep);
        rl_bundle_free(&b);
        return;
    }
    r->subjects++;
    r->non_compliant += rl_report_status(&rep) == RL_NON_COMPLIANT;
    if (r->text) {
        char *page = rl_report_text(&rep);
        printf("%s%s", r->subjects > 1 ? "\n" : "", page);
        free(page);
    } else {
        json_object *p = rl_report_parameters(&rep);
        puts(json_object_to_json_string_ext(p, (r->several ? JSON_C_TO_STRING_PLAIN : JSON_C_TO_STRING_PRETTY) |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(p);
    }
    rl_report_free(&rep);
    rl_bundle_free(&b);
}

static void check_text(check_run *r, char *text, size_t len, const char *name)
{
    fj_doc doc;
    fj_error e;
    if (!fj_parse(text, len, NULL, &doc, &e)) {
        fprintf(stderr, "fhirgw check: %s (line %u, col %u): invalid JSON: %s\n", name, e.line, e.column, e.message);
        r->unusable++;
    } else {
        check_doc(r, &doc, name);
    }
    fj_doc_free(&doc);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static void check_file(check_run *r, const char *path)
{
    size_t len = 0;
    char *buf = files_read(path, &len);
    if (!buf) {
        fprintf(stderr, "fhirgw check: %s: %s\n", path, strerror(errno));
        r->unusable++;
        return;
    }
    if (!ends_with(path, ".ndjson")) {
        check_text(r, buf, len, path);
    } else {
        size_t line = 0;
        for (char *s = buf, *end; s < buf + len; s = end + 1) {
            end = memchr(s, '\n', (size_t)(buf + len - s));
            end = end ? end : buf + len;
            line++;
            if (end - s < 2) /* an empty line (or a lone CR) */
                continue;
            char name[PATH_MAX + 32];
            snprintf(name, sizeof name, "%s:%zu", path, line);
            check_text(r, s, (size_t)(end - s), name);
        }
    }
    free(buf);
}

/* <exe dir>/<rel> if it exists (rel starting with '/'), into out. */
static bool beside_binary(const char *rel, char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    const char *const where[] = {"", "/" FHIRGW_DATADIR_FROM_BIN};
    for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
        int written = snprintf(out, size, "%s%s%s", exe, where[i], rel);
        if (written > 0 && (size_t)written < size && access(out, R_OK) == 0)
            return true;
    }
    return false;
}

rl_pack *cli_load_pack(const char *dir, int year)
{
    char path[PATH_MAX], rel[64];
    if (dir) {
        snprintf(path, sizeof path, "%s/pack.json", dir);
    } else {
        snprintf(rel, sizeof rel, "/rules/packs/%d/pack.json", year);
        if (!beside_binary(rel, path, sizeof path)) {
            fprintf(stderr, "fhirgw check: no rule pack for contract year %d (rules/packs/%d): use --pack DIR\n", year,
                    year);
            return NULL;
        }
    }
    size_t len = 0;
    char *buf = files_read(path, &len);
    if (!buf) {
        fprintf(stderr, "fhirgw check: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    rl_pack *p = rl_pack_load(buf, len, path, &issues);
    for (size_t i = 0; i < issues.count; i++)
        fprintf(stderr, "fhirgw check: %s\n", issues.items[i].message);
    oo_list_free(&issues);
    free(buf);
    return p;
}

static pf_registry *load_guide(const char *const *dirs, size_t count)
{
    char package[PATH_MAX];
    const char *guide = package;
    if (!count) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        if (n <= 0 || !cli_guide_package(exe, package, sizeof package)) {
            fprintf(stderr, "fhirgw check: the guide's package is not beside the binary: use --conformance DIR\n");
            return NULL;
        }
        dirs = &guide;
        count = 1;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_registry *reg = conf_load(dirs, count, &issues);
    for (size_t i = 0; i < issues.count; i++)
        fprintf(stderr, "fhirgw check: %s: %s\n", oo_severity_name(issues.items[i].severity), issues.items[i].message);
    bool ok = reg && !issues.errors;
    oo_list_free(&issues);
    if (!ok) {
        pf_registry_free(reg);
        return NULL;
    }
    return reg;
}

static bool today_utc(fdt_value *out)
{
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm))
        return false;
    char s[16];
    snprintf(s, sizeof s, "%04d-%02d-%02d", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100);
    return !fdt_parse(FDT_FORM_DATE, s, strlen(s), out);
}

/* Run the checks over the files; the exit status. */
static int run_checks(check_run *r, char **files, size_t nfiles, const char *pack_dir, const char *const *conf,
                      size_t nconf)
{
    rl_pack *pack = cli_load_pack(pack_dir, r->date.year);
    pf_registry *reg = pack ? load_guide(conf, nconf) : NULL;
    oo_list issues;
    oo_list_init(&issues, 0);
    rl_engine *engine = reg ? rl_engine_new(pack, reg, &issues) : NULL;
    for (size_t i = 0; i < issues.count; i++)
        fprintf(stderr, "fhirgw check: %s\n", issues.items[i].message);
    oo_list_free(&issues);
    int status = 2;
    if (engine) {
        r->engine = engine;
        r->several = nfiles > 1 || ends_with(files[0], ".ndjson");
        for (size_t i = 0; i < nfiles; i++) {
            check_file(r, files[i]);
            fflush(stdout);
        }
        status = r->unusable ? 2 : r->non_compliant ? 1 : 0;
    }
    rl_engine_free(engine);
    pf_registry_free(reg);
    rl_pack_free(pack);
    return status;
}

int cmd_check(int argc, char **argv)
{
    check_run r = {0};
    const char *pack_dir = NULL, *conf[MAX_CONFORMANCE_DIRS];
    size_t nconf = 0, nfiles = 0;
    char **files = calloc((size_t)argc, sizeof *files);
    bool bad = false, dated = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--date") && i + 1 < argc) {
            const char *d = argv[++i];
            dated = true;
            if (strlen(d) != 10 || fdt_parse(FDT_FORM_DATE, d, strlen(d), &r.date)) {
                fprintf(stderr, "fhirgw check: --date wants YYYY-MM-DD, not '%s'\n", d);
                bad = true;
            }
        } else if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            const char *f = argv[++i];
            r.text = !strcmp(f, "text");
            if (!r.text && strcmp(f, "json")) {
                fprintf(stderr, "fhirgw check: unknown format '%s'\n", f);
                bad = true;
            }
        } else if (!strcmp(argv[i], "--pack") && i + 1 < argc) {
            pack_dir = argv[++i];
        } else if (!strcmp(argv[i], "--conformance") && i + 1 < argc) {
            if (nconf < MAX_CONFORMANCE_DIRS)
                conf[nconf++] = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            free(files);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "fhirgw check: unknown option '%s'\n", argv[i]);
            bad = true;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (!bad && !dated && !today_utc(&r.date))
        bad = true;
    int status = 2;
    if (bad || !nfiles)
        usage(stderr);
    else
        status = run_checks(&r, files, nfiles, pack_dir, conf, nconf);
    free(files);
    return status;
}
