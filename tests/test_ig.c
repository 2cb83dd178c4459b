/*
 * tests/test_ig.c — the implementation guide's build (ig/tools, `fhirgw ig`), run on the guide
 * itself (ig/) and on a miniature guide (tests/ig-mini/) that has one of everything, so every
 * check means something whatever ig/ holds at the time:
 *   the package builds, twice to the same bytes (folder and .tgz); package.json and .index.json
 *   list every resource; every example and fixture (Bundles too) validates against the built
 *   package, loaded as serve and validate load it; every negative case gives its expected error;
 *   every «quote» of a seeds mapping and every requirement and rule definition is verbatim in a seed text
 *   (FHIRGW_SEEDS_DIR; skipped when absent); every insurer mapping names a model field; the
 *   committed JSON Schemas and pages are not stale;
 *   serve finds the package next to the binary; `fhirgw ig` exit statuses.
 * Memory: every test frees what it allocates; the temporary folder is removed by the fixture.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fhir/validate.h"
#include "gateway/cli/cli.h"
#include "gateway/util/conformance.h"
#include "ig/tools/package.h"

#define GUIDE TESTS_DIR "/../ig"
#define MINI TESTS_DIR "/ig-mini"
#define PACK_TGZ TESTS_DIR "/../ig/tools/pack-tgz"

static const char *const sources[] = {GUIDE, MINI};
static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fhirgw-ig-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(ig, .init = setup, .fini = teardown, .timeout = 120);

/* Run a shell command; its exit status, its output (stdout and stderr) in *out when out is given. */
static int sh(char **out, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0)
        if ((len += n) + 1024 > cap)
            buf = realloc(buf, cap *= 2);
    buf[len] = '\0';
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *short_name(const char *source)
{
    return strcmp(source, MINI) ? "ig" : "ig-mini";
}

/* Build SOURCE's package into tmpdir/<tag> (folder and .tgz); the out folder in out. */
static void build(const char *source, const char *tag, char *out, size_t size)
{
    snprintf(out, size, "%s/%s-%s", tmpdir, short_name(source), tag);
    igp_package p;
    oo_list issues;
    oo_list_init(&issues, 0);
    cr_assert(igp_load(source, &p, &issues), "%s cannot be read", source);
    char *log;
    int status = sh(&log, "'%s' ig build --source '%s' --out '%s'", FHIRGW_BIN, source, out);
    cr_assert_eq(status, 0, "fhirgw ig build --source %s: exit %d\n%s", source, status, log);
    free(log);
    status = sh(&log, "'%s' '%s' '%s-%s'", PACK_TGZ, out, p.name, p.version);
    cr_assert_eq(status, 0, "pack-tgz: %s", log);
    free(log);
    igp_free(&p);
    oo_list_free(&issues);
}

Test(ig, package_builds_and_is_reproducible)
{
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        char a[512], b[512], *diff;
        build(sources[s], "a", a, sizeof a);
        build(sources[s], "b", b, sizeof b);
        /* the folder names differ, the contents may not: every file, the .tgz bytes included */
        int status = sh(&diff, "cd '%s' && diff -r package '%s/package' && cmp *.tgz '%s'/*.tgz", a, b, b);
        cr_expect_eq(status, 0, "%s: two builds differ:\n%s", sources[s], diff);
        free(diff);
        status = sh(&diff, "cd '%s' && tar -tzf *.tgz | head -1 && tar --numeric-owner -tvzf *.tgz | head -1", a);
        cr_expect(strstr(diff, "package/") && strstr(diff, "0/0") && strstr(diff, "1970-01-01"),
                  "tgz entries: package/, owner 0/0, time 0:\n%s", diff);
        free(diff);
    }
}

static json_object *read_json(const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    json_object *o = json_object_from_file(path);
    cr_assert_not_null(o, "%s is not JSON", path);
    return o;
}

/* .index.json of one package folder against the files in it. */
static void check_index(const char *dir, size_t expected)
{
    json_object *index = read_json("%s/.index.json", dir);
    cr_expect_eq(json_object_get_int(igp_get(index, "index-version")), 1);
    json_object *files = igp_get(index, "files");
    cr_expect_eq(igp_len(files), expected, "%s/.index.json lists %zu files, the source has %zu", dir, igp_len(files),
                 expected);
    const char *last = "";
    for (size_t i = 0; i < igp_len(files); i++) {
        json_object *f = json_object_array_get_idx(files, i);
        const char *name = igp_str(f, "filename");
        cr_assert_not_null(name);
        cr_expect_gt(strcmp(name, last), 0, "%s: files sorted by name", dir);
        last = name;
        json_object *r = read_json("%s/%s", dir, name);
        const char *keys[] = {"resourceType", "id", "url", "version", "kind", "type"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            const char *want = igp_str(r, keys[k]), *have = igp_str(f, keys[k]);
            cr_expect(want ? have && !strcmp(want, have) : !have, "%s/%s: index %s", dir, name, keys[k]);
        }
        json_object_put(r);
    }
    json_object_put(index);
    igp_paths listed = {0};
    cr_assert(igp_list_json(dir, false, &listed));
    size_t resources = 0;
    for (size_t i = 0; i < listed.count; i++) {
        const char *rel = listed.paths[i] + strlen(dir) + 1; /* files of this folder, not of example/ */
        resources += !strchr(rel, '/') && strcmp(rel, "package.json");
    }
    cr_expect_eq(resources, expected, "%s holds %zu resource files, expected %zu", dir, resources, expected);
    igp_paths_free(&listed);
}

Test(ig, manifest_and_index_list_every_resource)
{
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        char out[512];
        build(sources[s], "index", out, sizeof out);
        igp_package p;
        oo_list issues;
        oo_list_init(&issues, 0);
        cr_assert(igp_load(sources[s], &p, &issues));
        size_t examples = 0;
        for (size_t i = 0; i < p.count; i++)
            examples += p.items[i].example;
        json_object *manifest = read_json("%s/package/package.json", out);
        const char *keys[] = {"name", "version", "canonical", "type"};
        for (size_t k = 0; k < 4; k++)
            cr_expect_str_eq(igp_str(manifest, keys[k]), igp_str(p.manifest, keys[k]));
        cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(igp_get(manifest, "fhirVersions"), 0)),
                         "4.0.1");
        cr_expect_str_eq(igp_str(igp_get(manifest, "dependencies"), "hl7.fhir.r4.core"), "4.0.1");
        json_object_put(manifest);
        char dir[600];
        snprintf(dir, sizeof dir, "%s/package", out);
        check_index(dir, p.count - examples);
        snprintf(dir, sizeof dir, "%s/package/example", out);
        check_index(dir, examples);
        igp_free(&p);
        oo_list_free(&issues);
    }
}

/* Every profile of the source has an example that names it (and so at least as many examples). */
Test(ig, every_profile_has_an_example)
{
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        igp_package p;
        oo_list issues;
        oo_list_init(&issues, 0);
        cr_assert(igp_load(sources[s], &p, &issues));
        size_t profiles = 0, examples = 0;
        for (size_t i = 0; i < p.count; i++) {
            const igp_resource *r = &p.items[i];
            examples += r->example;
            /* profiles on resources: a data-type profile (nl-bsn on Identifier) is shown inside them */
            if (r->example || strcmp(r->resource_type, "StructureDefinition") || !strstr(r->source, "/profiles/") ||
                !r->kind || strcmp(r->kind, "resource"))
                continue;
            profiles++;
            bool shown = false;
            for (size_t k = 0; k < p.count && !shown; k++) {
                json_object *named = igp_get(igp_get(p.items[k].json, "meta"), "profile");
                for (size_t j = 0; p.items[k].example && j < igp_len(named); j++)
                    shown = shown || !strcmp(json_object_get_string(json_object_array_get_idx(named, j)), r->url);
            }
            cr_expect(shown, "%s: no example in examples/ names profile %s", sources[s], r->id);
        }
        cr_expect_geq(examples, profiles, "%s: %zu examples for %zu profiles", sources[s], examples, profiles);
        igp_free(&p);
        oo_list_free(&issues);
    }
}

/* The built package as `serve` and `validate --conformance` load it. */
static pf_registry *load_built(const char *source, const char *tag)
{
    char out[512], dir[600];
    build(source, tag, out, sizeof out);
    snprintf(dir, sizeof dir, "%s/package", out);
    oo_list issues;
    oo_list_init(&issues, 0);
    const char *dirs[] = {dir};
    pf_registry *r = conf_load(dirs, 1, &issues);
    cr_assert_not_null(r);
    for (size_t i = 0; i < issues.count; i++)
        cr_expect_gt(issues.items[i].severity, OO_ERROR, "loading %s: %s", dir, issues.items[i].message);
    oo_list_free(&issues);
    return r;
}

static void print_errors(const char *file, const oo_list *issues)
{
    for (size_t i = 0; i < issues->count; i++)
        if (issues->items[i].severity <= OO_ERROR)
            cr_log_error("%s: %s: %s", file, issues->items[i].expression ? issues->items[i].expression : "",
                         issues->items[i].message);
}

static size_t validate_file(const pf_registry *r, const char *path, oo_list *issues)
{
    size_t len;
    char *text = igp_read_text(path, &len);
    cr_assert_not_null(text, "cannot read %s", path);
    fv_options options = {0};
    options.profiles = r;
    size_t errors = fv_validate_buffer(text, len, &options, issues);
    free(text);
    return errors;
}

Test(ig, examples_and_fixtures_validate_against_the_package)
{
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        pf_registry *r = load_built(sources[s], "valid");
        const char *folders[] = {"examples", "fixtures"};
        for (size_t f = 0; f < 2; f++) {
            char dir[512];
            snprintf(dir, sizeof dir, "%s/%s", sources[s], folders[f]);
            igp_paths files = {0};
            cr_assert(igp_list_json(dir, true, &files));
            for (size_t i = 0; i < files.count; i++) {
                oo_list issues;
                oo_list_init(&issues, 0);
                size_t errors = validate_file(r, files.paths[i], &issues);
                print_errors(files.paths[i], &issues);
                cr_expect_eq(errors, 0, "%s: %zu errors (logged above)", files.paths[i], errors);
                oo_list_free(&issues);
            }
            igp_paths_free(&files);
        }
        pf_registry_free(r);
    }
}

/* A catalogue rule id (GZSP-, ELV-, GRZ-, STAY-): its invariant is a warning (ig/README.md), all else an error. */
static bool is_catalogue_rule(const char *rule)
{
    static const char *const prefixes[] = {"GZSP-", "ELV-", "GRZ-", "STAY-"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(rule, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/*
 * One line of expect.tsv: the file must give an issue at `expression` whose message holds `needle`: a warning
 * for a catalogue rule, an error for anything else.
 */
static void check_negative(const pf_registry *r, const char *dir, char *line, size_t *checked)
{
    char *fields[4], *save = NULL;
    size_t n = 0;
    for (char *f = strtok_r(line, "\t", &save); f && n < 4; f = strtok_r(NULL, "\t", &save))
        fields[n++] = f;
    cr_assert_eq(n, 4, "%s/expect.tsv: a line needs file, rule, expression, needle", dir);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, fields[0]);
    oo_list issues;
    oo_list_init(&issues, 0);
    validate_file(r, path, &issues);
    bool found = false, warning = is_catalogue_rule(fields[1]);
    for (size_t i = 0; i < issues.count && !found; i++) {
        const oo_issue *is = &issues.items[i];
        found = (warning ? is->severity == OO_WARNING : is->severity <= OO_ERROR) && is->expression &&
                !strcmp(is->expression, fields[2]) && strstr(is->message, fields[3]);
    }
    if (!found)
        for (size_t i = 0; i < issues.count; i++)
            cr_log_error("%s: got %s: %s", path, issues.items[i].expression ? issues.items[i].expression : "",
                         issues.items[i].message);
    cr_expect(found, "%s (%s): no %s at %s containing '%s' (what it gave is logged above)", path, fields[1],
              warning ? "warning" : "error", fields[2], fields[3]);
    oo_list_free(&issues);
    (*checked)++;
}

static void check_negative_folder(const pf_registry *r, const char *dir, size_t *checked)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/expect.tsv", dir);
    char *text = igp_read_text(path, NULL);
    cr_assert_not_null(text, "%s has no expect.tsv", dir);
    char *save = NULL, *listed = strdup(text);
    size_t before = *checked;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line[strcspn(line, "\r")] = '\0';
        if (*line && strncmp(line, "file\t", 5))
            check_negative(r, dir, line, checked);
    }
    free(text);
    cr_expect_gt(*checked, before, "%s/expect.tsv lists no case", dir);
    igp_paths files = {0};
    cr_assert(igp_list_json(dir, false, &files));
    for (size_t i = 0; i < files.count; i++) { /* every invalid file is listed (at line start) */
        const char *name = files.paths[i] + strlen(dir) + 1;
        char *at = strstr(listed, name);
        while (at && ((at != listed && at[-1] != '\n') || at[strlen(name)] != '\t'))
            at = strstr(at + 1, name);
        cr_expect_not_null(at, "%s: %s is not listed in expect.tsv", dir, name);
    }
    igp_paths_free(&files);
    free(listed);
}

Test(ig, negative_cases_give_their_expected_errors)
{
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        pf_registry *r = load_built(sources[s], "negative");
        char dir[512];
        snprintf(dir, sizeof dir, "%s/negative", sources[s]);
        DIR *d = opendir(dir);
        size_t checked = 0;
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.')
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            check_negative_folder(r, sub, &checked);
        }
        if (d)
            closedir(d);
        if (!strcmp(sources[s], MINI))
            cr_expect_eq(checked, 2, "the miniature guide's two negative cases");
        pf_registry_free(r);
    }
}

/* ---- the Dutch quotes are verbatim ------------------------------------------------------- */

/* Runs of white space (ASCII and no-break spaces) as one space, trimmed: a new string. */
static char *collapse(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    bool space = false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        bool ws = *c == ' ' || (*c >= '\t' && *c <= '\r') || (c[0] == 0xc2 && c[1] == 0xa0);
        if (ws) {
            c += c[0] == 0xc2;
            space = o != out;
            continue;
        }
        if (space)
            *o++ = ' ';
        space = false;
        *o++ = (char)*c;
    }
    *o = '\0';
    return out;
}

static char *read_seeds(void)
{
    DIR *d = opendir(FHIRGW_SEEDS_DIR);
    if (!d)
        return NULL;
    size_t len = 0;
    char *all = calloc(1, 1);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", FHIRGW_SEEDS_DIR, e->d_name);
        char *text = igp_read_text(path, NULL);
        if (!text)
            continue;
        char *c = collapse(text);
        all = realloc(all, len + strlen(c) + 3);
        len += (size_t)sprintf(all + len, "\n%s\n", c);
        free(c);
        free(text);
    }
    closedir(d);
    return all;
}

static void expect_verbatim(const char *seeds, const char *text, const char *where)
{
    char *c = collapse(text);
    cr_expect_not_null(strstr(seeds, c), "%s: «%s» is not verbatim in the seed texts", where, c);
    free(c);
}

/* Every «...» of a seeds mapping comment; a comment must quote at least once. */
static void check_comment(const char *seeds, const char *comment, const char *where)
{
    size_t quotes = 0;
    for (const char *open = strstr(comment, "\xc2\xab"); open; open = strstr(open, "\xc2\xab")) {
        open += 2;
        const char *close = strstr(open, "\xc2\xbb");
        cr_assert_not_null(close, "%s: « without »", where);
        char *quote = strndup(open, (size_t)(close - open));
        expect_verbatim(seeds, quote, where);
        free(quote);
        quotes++;
    }
    cr_expect_gt(quotes, 0, "%s: a seeds comment quotes its source between « and »: %s", where, comment);
}

static void check_definitions(const char *seeds, json_object *concepts, const char *source)
{
    for (size_t i = 0; i < igp_len(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        char where[512];
        snprintf(where, sizeof where, "%s: requirement concept %s", source, igp_str(c, "code"));
        cr_expect_not_null(igp_str(c, "definition"), "%s has no definition", where);
        const char *definition = igp_str(c, "definition");
        if (definition && !strncmp(definition, "\xc2\xab", 2)) /* «...»: the quote itself */
            check_comment(seeds, definition, where);
        else if (definition)
            expect_verbatim(seeds, definition, where);
        check_definitions(seeds, igp_get(c, "concept"), source);
    }
}

static void check_quotes(const char *seeds, const igp_package *p)
{
    for (size_t i = 0; i < p->count; i++) {
        const igp_resource *r = &p->items[i];
        if (!r->example && !strcmp(r->resource_type, "CodeSystem") &&
            (!strcmp(r->id, "requirement") || !strcmp(r->id, "rule")))
            check_definitions(seeds, igp_get(r->json, "concept"), r->source);
        json_object *els = r->example ? NULL : igp_get(igp_get(r->json, "differential"), "element");
        for (size_t e = 0; e < igp_len(els); e++) {
            json_object *maps = igp_get(json_object_array_get_idx(els, e), "mapping");
            for (size_t m = 0; m < igp_len(maps); m++) {
                json_object *map = json_object_array_get_idx(maps, m);
                if (!igp_str(map, "identity") || strcmp(igp_str(map, "identity"), "seeds"))
                    continue;
                char where[512];
                snprintf(where, sizeof where, "%s: %s", r->source, igp_str(json_object_array_get_idx(els, e), "id"));
                check_comment(seeds, igp_str(map, "comment") ? igp_str(map, "comment") : "", where);
            }
        }
    }
}

Test(ig, quotes_are_verbatim_in_the_seed_texts)
{
    char *seeds = read_seeds();
    if (!seeds)
        cr_skip_test("the seed texts are not at %s (set FHIRGW_SEEDS_DIR when configuring): quotes not checked",
                     FHIRGW_SEEDS_DIR);
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        igp_package p;
        oo_list issues;
        oo_list_init(&issues, 0);
        cr_assert(igp_load(sources[s], &p, &issues));
        check_quotes(seeds, &p);
        igp_free(&p);
        oo_list_free(&issues);
    }
    free(seeds);
}

/* Every `insurer` mapping of a profile or extension names a field of a logical model. */
Test(ig, insurer_mappings_name_model_fields)
{
    for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
        igp_package p;
        oo_list issues;
        oo_list_init(&issues, 0);
        cr_assert(igp_load(sources[s], &p, &issues));
        json_object *fields = json_object_new_object();
        for (size_t i = 0; i < p.count; i++) {
            json_object *els = p.items[i].kind && !strcmp(p.items[i].kind, "logical")
                                   ? igp_get(igp_get(p.items[i].json, "snapshot"), "element")
                                   : NULL;
            for (size_t e = 0; e < igp_len(els); e++)
                json_object_object_add(fields, igp_str(json_object_array_get_idx(els, e), "path"), NULL);
        }
        for (size_t i = 0; i < p.count; i++) {
            const igp_resource *r = &p.items[i];
            json_object *els = r->example ? NULL : igp_get(igp_get(r->json, "differential"), "element");
            for (size_t e = 0; e < igp_len(els); e++) {
                json_object *maps = igp_get(json_object_array_get_idx(els, e), "mapping");
                for (size_t m = 0; m < igp_len(maps); m++) {
                    json_object *map = json_object_array_get_idx(maps, m);
                    const char *id = igp_str(map, "identity"), *target = igp_str(map, "map");
                    if (id && !strcmp(id, "insurer"))
                        cr_expect(target && json_object_object_get_ex(fields, target, NULL),
                                  "%s: %s maps to '%s', which no logical model has", r->source,
                                  igp_str(json_object_array_get_idx(els, e), "id"), target ? target : "");
                }
            }
        }
        json_object_put(fields);
        igp_free(&p);
        oo_list_free(&issues);
    }
}

/* ---- generated files are not stale -------------------------------------------------------- */

/* Every file of `committed` (with that suffix) equals the regenerated one, and no file is missing. */
static void expect_same_files(const char *committed, const char *regenerated, const char *suffix, const char *how)
{
    char *out;
    int status = sh(&out,
                    "cd '%s' && for f in *%s; do cmp \"$f\" '%s'/\"$f\" || exit 1; done && cd '%s' && "
                    "for f in *%s; do [ -f '%s'/\"$f\" ] || { echo \"$f is not committed\"; exit 1; }; done",
                    regenerated, suffix, committed, regenerated, suffix, committed);
    cr_expect_eq(status, 0, "%s is stale: regenerate it with `%s` (from the source folder)\n%s", committed, how, out);
    free(out);
    status = sh(&out, "cd '%s' && for f in *%s; do [ -f '%s'/\"$f\" ] || { echo \"$f\"; exit 1; }; done", committed,
                suffix, regenerated);
    cr_expect_eq(status, 0, "%s holds a file no longer generated (remove it): %s", committed, out);
    free(out);
}

Test(ig, json_schemas_are_reproducible_and_not_stale)
{
    char *out;
    for (int round = 0; round < 2; round++) {
        int status = sh(&out, "'%s' ig schemas --source '%s' --out '%s/schemas-%d'", FHIRGW_BIN, GUIDE, tmpdir, round);
        cr_assert_eq(status, 0, "%s", out);
        free(out);
    }
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/schemas-0", tmpdir);
    snprintf(b, sizeof b, "%s/schemas-1", tmpdir);
    expect_same_files(b, a, ".schema.json", "fhirgw ig schemas");
    expect_same_files(GUIDE "/schemas", a, ".schema.json", "build/fhirgw ig schemas");
}

Test(ig, json_schemas_follow_the_models)
{
    char *out;
    cr_assert_eq(sh(&out, "'%s' ig schemas --source '%s' --out '%s/s'", FHIRGW_BIN, MINI, tmpdir), 0, "%s", out);
    free(out);
    json_object *s = read_json("%s/s/mini-model.schema.json", tmpdir);
    cr_expect_str_eq(igp_str(s, "$schema"), "https://json-schema.org/draft/2020-12/schema");
    cr_expect_str_eq(igp_str(s, "$id"), "https://fhirgw.nl/fhir/StructureDefinition/mini-model.schema.json");
    cr_expect_str_eq(igp_str(s, "title"), "Mini model");
    cr_expect_eq(json_object_get_boolean(igp_get(s, "additionalProperties")), 0);
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(igp_get(s, "required"), 0)), "kind");
    json_object *props = igp_get(s, "properties");
    json_object *kind_enum = igp_get(igp_get(props, "kind"), "enum");
    cr_expect_eq(igp_len(kind_enum), 2, "the requirement value set has two codes (one nested)");
    cr_expect_str_eq(igp_str(igp_get(props, "kind"), "description"), "A code.");
    cr_expect_str_eq(igp_str(igp_get(props, "when"), "type"), "array");
    cr_expect_not_null(igp_str(igp_get(igp_get(props, "when"), "items"), "pattern"), "a date has FHIR's pattern");
    json_object *part = igp_get(igp_get(props, "parts"), "items");
    cr_expect_str_eq(igp_str(igp_get(igp_get(part, "properties"), "share"), "type"), "number");
    cr_expect_eq(json_object_get_boolean(igp_get(part, "additionalProperties")), 0);
    json_object_put(s);
}

/* The insurer's models name the patient only by pseudonym: no BSN, name or address field. */
Test(ig, models_carry_no_patient_identity)
{
    const char *models[] = {"insurer-stay", "insurer-treatment-plan"};
    for (size_t m = 0; m < 2; m++) {
        char path[512];
        snprintf(path, sizeof path, "%s/schemas/%s.schema.json", GUIDE, models[m]);
        char *text = igp_read_text(path, NULL);
        cr_assert_not_null(text, "%s", path);
        json_object *s = json_tokener_parse(text);
        json_object *props = igp_get(s, "properties");
        cr_expect_not_null(igp_get(props, "patientPseudonym"), "%s", path);
        json_object_object_foreach(props, key, value)
        {
            (void)value;
            char lower[128];
            size_t n = 0;
            for (; key[n] && n + 1 < sizeof lower; n++)
                lower[n] = (char)tolower((unsigned char)key[n]);
            lower[n] = '\0';
            cr_expect(!strstr(lower, "bsn") && !strstr(lower, "address") && strcmp(lower, "name"), "%s: %s", path, key);
        }
        json_object_put(s);
        free(text);
    }
}

Test(ig, docs_are_reproducible_and_not_stale)
{
    char *out;
    for (int round = 0; round < 2; round++) {
        int status = sh(&out, "'%s' ig docs --source '%s' --out '%s/docs-%d'", FHIRGW_BIN, GUIDE, tmpdir, round);
        cr_assert_eq(status, 0, "%s", out);
        free(out);
    }
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/docs-0", tmpdir);
    snprintf(b, sizeof b, "%s/docs-1", tmpdir);
    expect_same_files(b, a, ".md", "fhirgw ig docs");
    expect_same_files(TESTS_DIR "/../docs/ig", a, ".md", "build/fhirgw ig docs");
}

Test(ig, docs_trace_sources_to_elements)
{
    char *out;
    cr_assert_eq(sh(&out, "'%s' ig docs --source '%s' --out '%s/d'", FHIRGW_BIN, MINI, tmpdir), 0, "%s", out);
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/d/README.md", tmpdir);
    char *readme = igp_read_text(path, NULL);
    cr_assert_not_null(readme);
    cr_expect_not_null(strstr(readme, "### ZN §2"), "%s", readme);
    cr_expect_not_null(strstr(readme, "| `MINI-GOAL` | «Geneeskundige zorg (dus behandeldoel).» | "
                                      "[mini-patient](mini-patient.md) `Patient.gender` | `MiniModel.kind` |"),
                       "%s", readme);
    cr_expect_not_null(strstr(readme, "| `behandelklimaat / GZSP-LOCATION` |"), "%s", readme);
    cr_expect_not_null(strstr(readme, "[mini-model](mini-model.md)"), "%s", readme);
    free(readme);
    snprintf(path, sizeof path, "%s/d/mini-patient.md", tmpdir);
    char *page = igp_read_text(path, NULL);
    cr_assert_not_null(page);
    cr_expect_not_null(strstr(page, "`mini-1` (error): The patient record is active"), "%s", page);
    cr_expect_not_null(strstr(page, "The administrative gender \\| always given."), "pipes escaped: %s", page);
    cr_expect_not_null(strstr(page, "```json\n{\n  \"resourceType\": \"Patient\""), "%s", page);
    free(page);
    snprintf(path, sizeof path, "%s/d/mini-model.md", tmpdir);
    char *model = igp_read_text(path, NULL);
    cr_assert_not_null(model);
    cr_expect_not_null(strstr(model, "(../../ig/schemas/mini-model.schema.json)"), "%s", model);
    free(model);
}

/* ---- the CLI and serve's default --------------------------------------------------------- */

Test(ig, cli_exit_statuses_and_problem_locations)
{
    char *out;
    cr_expect_eq(sh(&out, "'%s' ig", FHIRGW_BIN), 2);
    free(out);
    cr_expect_eq(sh(&out, "'%s' ig frobnicate", FHIRGW_BIN), 2);
    free(out);
    cr_expect_eq(sh(&out, "'%s' ig build --source '%s/nothing' --out '%s/o'", FHIRGW_BIN, tmpdir, tmpdir), 2);
    free(out);
    /* a copy of the miniature guide with a wrong url, version and file name, and a broken example */
    cr_assert_eq(sh(NULL, "cp -r '%s' '%s/bad'", MINI, tmpdir), 0);
    cr_assert_eq(sh(NULL,
                    "cd '%s/bad' && sed -i 's|CodeSystem/requirement\"|CodeSystem/requirements\"|; "
                    "s|\"0.0.1\"|\"0.0.2\"|' terminology/CodeSystem-requirement.json && "
                    "mv models/StructureDefinition-mini-model.json models/mini-model.json && "
                    "sed -i 's|\"female\"|\"feminine\"|' examples/Patient-mini-example.json",
                    tmpdir),
                 0);
    cr_expect_eq(sh(&out, "'%s' ig build --source '%s/bad' --out '%s/o'", FHIRGW_BIN, tmpdir, tmpdir), 1);
    const char *expected[] = {
        "CodeSystem.url: ",
        "terminology/CodeSystem-requirement.json: url is 'https://fhirgw.nl/fhir/CodeSystem/requirements'",
        "CodeSystem.version: ",
        "models/mini-model.json: the file should be named StructureDefinition-mini-model.json",
        "Patient.gender",
        "examples/Patient-mini-example.json: ",
    };
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++)
        cr_expect_not_null(strstr(out, expected[i]), "'%s' in:\n%s", expected[i], out);
    free(out);
    struct stat st;
    char written[512];
    snprintf(written, sizeof written, "%s/o/package", tmpdir);
    cr_expect_neq(stat(written, &st), 0, "nothing written when there are problems");
}

Test(ig, serve_finds_the_package_next_to_the_binary)
{
    char found[PATH_MAX], want[PATH_MAX];
    cr_assert(cli_guide_package(FHIRGW_BIN, found, sizeof found), "no ig/package next to %s", FHIRGW_BIN);
    snprintf(want, sizeof want, "%s", FHIRGW_BIN);
    snprintf(strrchr(want, '/'), sizeof want - (size_t)(strrchr(want, '/') - want), "/ig/package");
    cr_expect_str_eq(found, want);
    /* an installed tree: PREFIX/bin/fhirgw finds PREFIX/share/fhirgw/ig/package */
    char exe[PATH_MAX];
    snprintf(exe, sizeof exe, "%s/prefix/bin/fhirgw", tmpdir);
    cr_expect_not(cli_guide_package(exe, found, sizeof found), "nothing installed yet");
    cr_assert_eq(sh(NULL,
                    "mkdir -p '%s/prefix/bin' '%s/prefix/share/fhirgw/ig/package' && echo {} >"
                    "'%s/prefix/share/fhirgw/ig/package/package.json'",
                    tmpdir, tmpdir, tmpdir),
                 0);
    cr_assert(cli_guide_package(exe, found, sizeof found));
    snprintf(want, sizeof want, "%s/prefix/bin/../share/fhirgw/ig/package", tmpdir);
    cr_expect_str_eq(found, want);
}

/* `fhirgw validate --conformance <package>` takes the package folder as it is. */
Test(ig, validate_takes_the_package_folder)
{
    char out[512], *log;
    build(MINI, "cli", out, sizeof out);
    int status = sh(&log, "'%s' validate --conformance '%s/package' '%s/examples' '%s/fixtures'", FHIRGW_BIN, out, MINI,
                    MINI);
    cr_expect_eq(status, 0, "%s", log);
    cr_expect_null(strstr(log, "package.json"), "package.json is not loaded as a resource: %s", log);
    free(log);
    status = sh(&log, "'%s' validate --conformance '%s/package' '%s/negative/mini-patient/Patient-inactive.json'",
                FHIRGW_BIN, out, MINI);
    cr_expect_eq(status, 1, "%s", log);
    cr_expect_not_null(strstr(log, "mini-1"), "%s", log);
    free(log);
}
