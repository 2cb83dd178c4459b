/*
 * gateway/cli/cmd_map.c — `fhirgw map`: run an FML map over a JSON resource.
 *
 *   fhirgw map --map FILE [--map FILE]... [--conformance DIR]... [--conceptmaps DIR]...
 *              [--key-file FILE | --config FILE] [--unmapped] INPUT
 *   fhirgw map --compile FILE.map
 *
 * A map is FML text or StructureMap JSON; maps given later may import those
 * given earlier, and the first group of the first map is the entry. The
 * result is printed as JSON and validated against its StructureDefinition
 * (a FHIR type with the profiles in its meta.profile, or a logical model of
 * the conformance folders). INPUT is a file or '-'. When INPUT is a Bundle
 * and the entry group takes another resource type, the first entry of that
 * type is the source and the Bundle stays around it for resolve().
 * ConceptMaps (*.json with resourceType ConceptMap) are loaded from every
 * --conceptmaps DIR and from the folder `conceptmaps/` beside each map.
 * Conformance folders default to the implementation guide's package next
 * to the binary. pseudonym() gets its key from --key-file or from the
 * pseudonym_key_file setting of --config.
 * --unmapped lists the source elements no rule read (on stderr).
 * --compile prints the StructureMap JSON of an FML file.
 * Exit status: 0 ok, 1 the map ran but the result is invalid, 2 an unusable
 * map, key or input (the error names the map file and line, or the element).
 *
 * Memory: everything loaded lives until the command returns.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fhir/json.h"
#include "gateway/cli/cli.h"
#include "gateway/util/config.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "mappings/mapset.h"

#define MAX_ITEMS 32

typedef struct options {
    const char *maps[MAX_ITEMS], *conformance[MAX_ITEMS], *conceptmaps[MAX_ITEMS];
    size_t map_count, conformance_count, conceptmap_count;
    const char *key_file, *config, *compile, *input;
    bool unmapped;
} options;

static void usage(FILE *to)
{
    fprintf(to, "usage: fhirgw map --map FILE [--map FILE]... [--conformance DIR]... [--conceptmaps DIR]...\n"
                "                  [--key-file FILE | --config FILE] [--unmapped] INPUT\n"
                "       fhirgw map --compile FILE.map\n"
                "  --map FILE          an FML map or StructureMap JSON; the first group of the first is the entry\n"
                "  --conformance DIR   profiles, logical models, terminology (default: the guide's package)\n"
                "  --conceptmaps DIR   ConceptMaps for translate() (also read: conceptmaps/ beside each map)\n"
                "  --key-file FILE     the pseudonym key (hex); or --config FILE with pseudonym_key_file\n"
                "  --unmapped          also list the source elements no rule read (stderr)\n"
                "  --compile FILE.map  print the StructureMap JSON of an FML map\n"
                "exit status: 0 ok, 1 the result is invalid, 2 unusable map, key or input\n");
}

static void print_issues(const oo_list *l, oo_severity worst_shown)
{
    for (size_t i = 0; i < l->count; i++) {
        if (l->items[i].severity > worst_shown)
            continue;
        if (l->items[i].severity == OO_INFORMATION) { /* "unmapped: Encounter.status" */
            fprintf(stderr, "fhirgw map: %s\n", l->items[i].message);
            continue;
        }
        size_t n = oo_issue_format(&l->items[i], NULL, 0);
        char *buf = malloc(n + 1);
        if (buf) {
            oo_issue_format(&l->items[i], buf, n + 1);
            fprintf(stderr, "fhirgw map: %s\n", buf);
            free(buf);
        }
    }
}

static bool parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--map") && more && o->map_count < MAX_ITEMS)
            o->maps[o->map_count++] = argv[++i];
        else if (!strcmp(a, "--conformance") && more && o->conformance_count < MAX_ITEMS)
            o->conformance[o->conformance_count++] = argv[++i];
        else if (!strcmp(a, "--conceptmaps") && more && o->conceptmap_count < MAX_ITEMS)
            o->conceptmaps[o->conceptmap_count++] = argv[++i];
        else if (!strcmp(a, "--key-file") && more)
            o->key_file = argv[++i];
        else if (!strcmp(a, "--config") && more)
            o->config = argv[++i];
        else if (!strcmp(a, "--compile") && more)
            o->compile = argv[++i];
        else if (!strcmp(a, "--unmapped"))
            o->unmapped = true;
        else if ((a[0] != '-' || !strcmp(a, "-")) && !o->input)
            o->input = a;
        else {
            fprintf(stderr, "fhirgw map: unexpected argument '%s'\n", a);
            return false;
        }
    }
    return o->compile ? !o->input && !o->map_count : o->map_count && o->input;
}

static int compile(const char *file)
{
    size_t len = 0;
    char *text = files_read(file, &len);
    if (!text) {
        fprintf(stderr, "fhirgw map: %s: %s\n", file, strerror(errno));
        return 2;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *sm = mps_compile(text, len, file, &issues);
    free(text);
    print_issues(&issues, OO_ERROR);
    oo_list_free(&issues);
    if (!sm)
        return 2;
    puts(json_object_to_json_string_ext(sm, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(sm);
    return 0;
}

/* The pseudonym key from --key-file or the config's pseudonym_key_file; true when none was asked for. */
static bool load_key(const options *o, mpn_key *key, bool *have)
{
    *have = false;
    char path[PATH_MAX];
    if (o->key_file) {
        snprintf(path, sizeof path, "%s", o->key_file);
    } else if (o->config) {
        static gw_config c; /* large: not on the stack */
        char err[512];
        cfg_defaults(&c);
        if (!cfg_load(&c, o->config, err, sizeof err)) {
            fprintf(stderr, "fhirgw map: %s\n", err);
            return false;
        }
        snprintf(path, sizeof path, "%s", c.pseudonym_key_file);
    } else {
        return true;
    }
    size_t len = 0;
    char *text = files_read(path, &len);
    if (!text) {
        fprintf(stderr, "fhirgw map: the pseudonym key %s: %s\n", path, strerror(errno));
        return false;
    }
    char err[256];
    bool ok = mpn_key_from_hex(text, len, key, err, sizeof err);
    memset(text, 0, len);
    free(text);
    if (!ok)
        fprintf(stderr, "fhirgw map: %s: %s\n", path, err);
    *have = ok;
    return ok;
}

static pf_registry *load_registry(const options *o)
{
    const char *dirs[MAX_ITEMS];
    size_t n = 0;
    char guide[PATH_MAX];
    for (size_t i = 0; i < o->conformance_count; i++)
        dirs[n++] = o->conformance[i];
    if (!n) {
        char exe[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[len > 0 ? len : 0] = '\0';
        if (len > 0 && cli_guide_package(exe, guide, sizeof guide))
            dirs[n++] = guide;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_registry *reg = n ? conf_load(dirs, n, &issues) : pf_registry_new(NULL);
    if (reg && !n)
        pf_registry_finish(reg, &issues);
    print_issues(&issues, OO_ERROR);
    if (reg && issues.errors) {
        pf_registry_free(reg);
        reg = NULL;
    }
    oo_list_free(&issues);
    return reg;
}

/* Every *.json ConceptMap in dir; a missing folder is fine when it is only the default beside a map. */
static bool load_conceptmaps(mps_set *set, const char *dir, bool must_exist, oo_list *issues)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (must_exist)
            fprintf(stderr, "fhirgw map: %s: %s\n", dir, strerror(errno));
        return !must_exist;
    }
    bool ok = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *text = files_read(path, &len);
        if (!text) {
            fprintf(stderr, "fhirgw map: %s: %s\n", path, strerror(errno));
            ok = false;
            continue;
        }
        ok &= mps_add_conceptmap(set, text, len, path, issues);
        free(text);
    }
    closedir(d);
    return ok;
}

/* The folder conceptmaps/ beside a map file, into buf. */
static const char *beside(const char *map, char *buf, size_t size)
{
    const char *slash = strrchr(map, '/');
    snprintf(buf, size, "%.*sconceptmaps", slash ? (int)(slash - map + 1) : 0, map);
    return buf;
}

/* ConceptMaps, then the maps in order; false when any is unusable. */
static bool load_maps(const options *o, mps_set *set, const sm_map **entry, oo_list *issues)
{
    bool ok = true;
    for (size_t i = 0; i < o->conceptmap_count; i++)
        ok &= load_conceptmaps(set, o->conceptmaps[i], true, issues);
    for (size_t i = 0; i < o->map_count; i++) {
        char dir[PATH_MAX], prev[PATH_MAX];
        beside(o->maps[i], dir, sizeof dir);
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(beside(o->maps[k], prev, sizeof prev), dir);
        if (!seen)
            ok &= load_conceptmaps(set, dir, false, issues);
    }
    for (size_t i = 0; ok && i < o->map_count; i++) {
        size_t len = 0;
        char *text = files_read(o->maps[i], &len);
        if (!text) {
            fprintf(stderr, "fhirgw map: %s: %s\n", o->maps[i], strerror(errno));
            return false;
        }
        const sm_map *m = mps_add_map(set, text, len, o->maps[i], issues);
        free(text);
        if (!m)
            return false;
        if (!i)
            *entry = m;
    }
    return ok;
}

static int run_map(const options *o, mps_set *set, const sm_map *entry)
{
    size_t len = 0;
    char *text = strcmp(o->input, "-") ? files_read(o->input, &len) : files_read("/dev/stdin", &len);
    if (!text) {
        fprintf(stderr, "fhirgw map: %s: %s\n", o->input, strerror(errno));
        return 2;
    }
    fj_doc doc;
    fj_error jerr;
    if (!fj_parse(text, len, NULL, &doc, &jerr)) {
        fprintf(stderr, "fhirgw map: %s:%u:%u: %s\n", o->input, jerr.line, jerr.column, jerr.message);
        free(text);
        return 2;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = NULL;
    mpe_options mo = {.skip_unmapped = !o->unmapped};
    int status = 2;
    if (mps_run(set, entry, &doc, UINT32_MAX, &mo, &out, &issues)) {
        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        oo_list invalid;
        oo_list_init(&invalid, 0);
        status = mps_validate(set, out, &invalid) ? 1 : 0;
        for (size_t i = 0; i < invalid.count; i++)
            if (invalid.items[i].severity <= OO_ERROR)
                fprintf(stderr, "fhirgw map: the result is invalid: %s%s%s\n", invalid.items[i].message,
                        invalid.items[i].expression ? " at " : "",
                        invalid.items[i].expression ? invalid.items[i].expression : "");
        oo_list_free(&invalid);
    }
    print_issues(&issues, o->unmapped ? OO_INFORMATION : OO_WARNING);
    json_object_put(out);
    oo_list_free(&issues);
    fj_doc_free(&doc);
    free(text);
    return status;
}

int cmd_map(int argc, char **argv)
{
    options o = {0};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    if (!parse_args(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (o.compile)
        return compile(o.compile);
    mpn_key key;
    bool have_key;
    if (!load_key(&o, &key, &have_key))
        return 2;
    pf_registry *reg = load_registry(&o);
    if (!reg)
        return 2;
    oo_list issues;
    oo_list_init(&issues, 0);
    mps_set *set = mps_new(reg, have_key ? &key : NULL, &issues);
    const sm_map *entry = NULL;
    int status = 2;
    if (set && load_maps(&o, set, &entry, &issues))
        status = run_map(&o, set, entry);
    print_issues(&issues, OO_ERROR);
    for (size_t i = 0; !have_key && i < issues.count; i++)
        if (strstr(issues.items[i].message, "pseudonym")) {
            fprintf(stderr, "fhirgw map: pseudonym() needs a key: --key-file FILE, or --config FILE with "
                            "pseudonym_key_file\n");
            break;
        }
    oo_list_free(&issues);
    mps_free(set);
    pf_registry_free(reg);
    memset(&key, 0, sizeof key);
    return status;
}
