/*
 * bench/fhirpath.c — evaluations per second of FHIRPath expressions typical
 * of invariants and rules, compiled once, over the official R4 instance
 * examples (the conformance resources of the package are left out).
 *
 *   bench-fhirpath [PACKAGE_DIR]     (default ~/.cache/fhirgw/hl7.fhir.r4.examples-4.0.1/package)
 *
 * Each expression runs on its context: every example resource, every Period
 * in them, or every element in them (as ele-1 is checked). One arena is
 * reset between evaluations, as the validator will do; the table shows the
 * evaluations per second, the nanoseconds per evaluation, how many results
 * were non-empty (a sanity check that the expressions find something) and
 * the arena's size at the end.
 *
 * Then the cost of the core invariants: every JSON file of the package
 * validated with and without them, best of three, in the same run
 * (target: invariants add at most 50%). Prints only; not a test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/array.h"
#include "fhir/fhirpath.h"
#include "fhir/validate.h"
#include "gateway/util/files.h"

/* A benchmark cannot go on without its corpus: stop when memory runs out. */
static void grow(void *items_ptr, size_t *capacity, size_t needed, size_t element_size)
{
    if (!fa_reserve(items_ptr, capacity, needed, element_size)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

#define MIN_SECONDS 0.25 /* each expression runs at least this long */

typedef enum context { ON_RESOURCE, ON_PERIOD, ON_ELEMENT } context;

static const struct bench_expr {
    context on;
    const char *source;
} exprs[] = {
    {ON_RESOURCE, "name.exists() or telecom.exists()"},
    {ON_RESOURCE, "contained.contained.empty()"},
    {ON_RESOURCE,
     "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical)"
     " | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants()"
     ".where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists()).not())"
     ".trace('unmatched', id).empty()"},
    {ON_RESOURCE, "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"},
    {ON_RESOURCE, "text.`div`.exists()"},
    {ON_RESOURCE, "Bundle.entry.all(fullUrl.exists())"},
    {ON_RESOURCE, "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId)"
                  ".isDistinct()"},
    {ON_RESOURCE, "status = 'active' and period.start <= now()"},
    {ON_RESOURCE, "activity.detail.where(status='completed').count() > 1"},
    {ON_PERIOD, "(start.hasValue().not() or end.hasValue().not()) or (start <= end)"},
    {ON_ELEMENT, "hasValue() or (children().count() > id.count())"},
    {ON_RESOURCE, "identifier.where(system = 'urn:oid:2.16.840.1.113883.2.4.6.3').value.matches('^[0-9]{9}$')"},
    {ON_RESOURCE, "Observation.value.ofType(Quantity).where(value > 100 and code = 'mm[Hg]').exists()"},
    {ON_RESOURCE, "birthDate < today() - 18 years"},
    {ON_RESOURCE, "gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')"},
    {ON_RESOURCE, "meta.profile.exists() implies meta.profile.all($this.startsWith('http'))"},
    {ON_RESOURCE, "name.where(use = 'official').family.first().upper()"},
    {ON_RESOURCE, "descendants().ofType(Reference).reference.where($this.startsWith('#')).count()"},
    {ON_RESOURCE, "effective.ofType(dateTime) >= @2010-01-01 or issued > @2013-01-01T00:00:00Z"},
    {ON_RESOURCE, "entry.resource.ofType(Observation).subject.resolve().exists()"},
};

typedef struct example {
    char *text;
    fj_doc doc;
} example;

typedef struct corpus {
    example *docs;
    size_t count, cap;
    fp_item *periods, *elements; /* nodes found in the examples (items point into docs) */
    size_t period_count, element_count;
    size_t bytes;
} corpus;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Conformance resources are definitions, not data: the rules never run on them. */
static bool is_instance(const fj_doc *d)
{
    static const char *const skip[] = {"SearchParameter",     "ValueSet",
                                       "CodeSystem",          "StructureDefinition",
                                       "ConceptMap",          "OperationDefinition",
                                       "CapabilityStatement", "ImplementationGuide",
                                       "NamingSystem",        "CompartmentDefinition",
                                       "StructureMap",        "GraphDefinition",
                                       "MessageDefinition",   "TerminologyCapabilities"};
    uint32_t rt = fj_get(d, 0, "resourceType");
    if (rt == UINT32_MAX)
        return false;
    for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
        if (fj_str_eq(d, rt, skip[i]))
            return false;
    return true;
}

static void load(corpus *c, const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        perror(dir);
        exit(2);
    }
    struct dirent *ent;
    while ((ent = readdir(dh))) {
        size_t n = strlen(ent->d_name);
        if (n < 6 || strcmp(ent->d_name + n - 5, ".json") || !strcmp(ent->d_name, "package.json") ||
            ent->d_name[0] == '.')
            continue;
        char path[8192];
        if ((size_t)snprintf(path, sizeof path, "%.4000s/%.1000s", dir, ent->d_name) >= sizeof path)
            continue;
        size_t len = 0;
        char *text = files_read(path, &len);
        if (!text)
            continue;
        example ex = {text, {0}};
        fj_error err;
        if (!fj_parse(text, len, NULL, &ex.doc, &err) || ex.doc.nodes[0].type != FJ_OBJECT || !is_instance(&ex.doc)) {
            fj_doc_free(&ex.doc);
            free(text);
            continue;
        }
        grow(&c->docs, &c->cap, c->count + 1, sizeof *c->docs);
        c->docs[c->count++] = ex;
        c->bytes += len;
    }
    closedir(dh);
}

/* Every element of every example (descendants() of each resource), and the Periods among them. */
static void collect_nodes(corpus *c)
{
    fp_error err;
    fp_expr *e = fp_compile("descendants()", NULL, &err);
    fp_arena *a = fp_arena_new();
    size_t pcap = 0, ecap = 0;
    for (size_t i = 0; i < c->count; i++) {
        fp_env env;
        fp_env_init(&env, &c->docs[i].doc);
        fp_collection out;
        fp_arena_reset(a);
        if (!fp_evaluate_node(e, &env, 0, NULL, NULL, a, &out, &err))
            continue;
        for (size_t k = 0; k < out.count; k++) {
            const fp_item *it = &out.items[k];
            grow(&c->elements, &ecap, c->element_count + 1, sizeof *c->elements);
            c->elements[c->element_count++] = *it;
            if (it->u.node.type && !strcmp(it->u.node.type->name, "Period")) {
                grow(&c->periods, &pcap, c->period_count + 1, sizeof *c->periods);
                c->periods[c->period_count++] = *it;
            }
        }
    }
    fp_arena_free(a);
    fp_expr_free(e);
}

typedef struct result {
    size_t evals, non_empty, errors;
    double seconds;
} result;

/* One pass of expression e over its contexts. */
static void one_pass(const corpus *c, const fp_expr *e, context on, fp_arena *a, result *r)
{
    fp_error err;
    fp_collection out;
    if (on == ON_RESOURCE) {
        for (size_t i = 0; i < c->count; i++) {
            fp_env env;
            fp_env_init(&env, &c->docs[i].doc);
            env.lenient = true; /* as the validator will evaluate the core invariants */
            fp_arena_reset(a);
            bool ok = fp_evaluate_node(e, &env, 0, NULL, NULL, a, &out, &err);
            r->evals++;
            r->errors += !ok;
            r->non_empty += ok && out.count > 0;
        }
        return;
    }
    const fp_item *items = on == ON_PERIOD ? c->periods : c->elements;
    size_t n = on == ON_PERIOD ? c->period_count : c->element_count;
    for (size_t i = 0; i < n; i++) {
        fp_env env;
        fp_env_init(&env, items[i].u.node.doc);
        env.lenient = true;
        fp_arena_reset(a);
        fp_collection in = {(fp_item *)&items[i], 1};
        bool ok = fp_evaluate(e, &env, &in, a, &out, &err);
        r->evals++;
        r->errors += !ok;
        r->non_empty += ok && out.count > 0;
    }
}

/* Every *.json of the package, as raw text (validation parses itself). */
typedef struct raw_file {
    char *text;
    size_t len;
} raw_file;

/* The conformance resources of the package, as opposed to the instance examples. */
static bool is_conformance_file(const char *name)
{
    static const char *const prefixes[] = {"StructureDefinition-",
                                           "ValueSet-",
                                           "CodeSystem-",
                                           "SearchParameter-",
                                           "ConceptMap-",
                                           "OperationDefinition-",
                                           "CapabilityStatement-",
                                           "ImplementationGuide-",
                                           "CompartmentDefinition-",
                                           "NamingSystem-",
                                           "StructureMap-",
                                           "ig-r4",
                                           "Bundle-dataelements",
                                           "Bundle-resources",
                                           "Bundle-types",
                                           "Bundle-valuesets",
                                           "Bundle-conceptmaps",
                                           "Bundle-searchParams",
                                           "Bundle-extensions",
                                           "Bundle-profiles-",
                                           "Bundle-v2-",
                                           "Bundle-v3-",
                                           "Bundle-valueset-expansions"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

static size_t load_raw(const char *dir, bool examples_only, raw_file **out, size_t *bytes)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    *out = NULL;
    *bytes = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len < 6 || strcmp(ent->d_name + len - 5, ".json") || !strcmp(ent->d_name, "package.json"))
            continue;
        if (examples_only && is_conformance_file(ent->d_name))
            continue;
        char path[5200];
        snprintf(path, sizeof path, "%.4000s/%.1000s", dir, ent->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        if (n == cap)
            *out = realloc(*out, (cap = cap ? cap * 2 : 1024) * sizeof **out);
        (*out)[n].text = malloc((size_t)size + 1);
        (*out)[n].len = fread((*out)[n].text, 1, (size_t)size, f);
        *bytes += (*out)[n].len;
        n++;
        fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/* Best of three passes of validating every file; scratch buffers restored outside the timing. */
static double time_validation(const raw_file *files, size_t n, bool invariants, size_t *warnings)
{
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double total = 0;
        *warnings = 0;
        for (size_t i = 0; i < n; i++) {
            char *copy = malloc(files[i].len + 1);
            memcpy(copy, files[i].text, files[i].len);
            fv_options opts = {0};
            opts.skip_invariants = !invariants;
            oo_list issues;
            oo_list_init(&issues, 1);
            double t0 = now_seconds();
            fv_validate_buffer(copy, files[i].len, &opts, &issues);
            total += now_seconds() - t0;
            *warnings += issues.warnings;
            oo_list_free(&issues);
            free(copy);
        }
        if (total < best)
            best = total;
    }
    return best;
}

static void invariant_cost(const char *dir, bool examples_only)
{
    raw_file *files;
    size_t bytes;
    size_t n = load_raw(dir, examples_only, &files, &bytes);
    size_t w_without, w_with;
    double without = time_validation(files, n, false, &w_without);
    double with = time_validation(files, n, true, &w_with);
    printf("\nvalidating %s (%zu files, %.1f MB):\n",
           examples_only ? "the instance examples of the package"
                         : "every file of the package, conformance resources included",
           n, (double)bytes / 1e6);
    printf("  without invariants %8.3f s  %7.1f MB/s\n", without, (double)bytes / 1e6 / without);
    printf("  with invariants    %8.3f s  %7.1f MB/s  (%zu invariant warnings such as dom-6)\n", with,
           (double)bytes / 1e6 / with, w_with - w_without);
    printf("  invariants add %.0f%% to validation time (target <= 50%%: %s)\n", (with / without - 1) * 100,
           with / without <= 1.5 ? "met" : "MISSED");
    for (size_t i = 0; i < n; i++)
        free(files[i].text);
    free(files);
}

int main(int argc, char **argv)
{
    char dir[4096];
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else
        snprintf(dir, sizeof dir, "%s/.cache/fhirgw/hl7.fhir.r4.examples-4.0.1/package",
                 getenv("HOME") ? getenv("HOME") : ".");
    corpus c = {0};
    double t0 = now_seconds();
    load(&c, dir);
    collect_nodes(&c);
    printf("fhirpath bench: %zu example resources (%.1f MB), %zu elements, %zu Periods; loaded in %.2f s\n\n", c.count,
           (double)c.bytes / 1e6, c.element_count, c.period_count, now_seconds() - t0);
    if (c.count == 0)
        return 2;

    fp_arena *a = fp_arena_new();
    printf("%-9s %12s %9s %9s  %s\n", "context", "evals/s", "ns/eval", "nonempty", "expression");
    double total_seconds = 0;
    size_t total_evals = 0;
    for (size_t k = 0; k < sizeof exprs / sizeof *exprs; k++) {
        fp_error err;
        fp_expr *e = fp_compile(exprs[k].source, NULL, &err);
        if (!e) {
            printf("compile error at %d: %s: %s\n", err.position, err.message, exprs[k].source);
            continue;
        }
        result r = {0}, pass = {0};
        one_pass(&c, e, exprs[k].on, a, &pass); /* warm-up; also gives the per-pass counts */
        double start = now_seconds();
        do
            one_pass(&c, e, exprs[k].on, a, &r);
        while ((r.seconds = now_seconds() - start) < MIN_SECONDS);
        static const char *const names[] = {"resource", "Period", "element"};
        printf("%-9s %12.0f %9.0f %4zu/%-5zu %.90s%s\n", names[exprs[k].on], (double)r.evals / r.seconds,
               r.seconds * 1e9 / (double)r.evals, pass.non_empty, pass.evals, exprs[k].source,
               strlen(exprs[k].source) > 90 ? "..." : "");
        if (pass.errors)
            printf("          (%zu of %zu evaluations failed)\n", pass.errors, pass.evals);
        total_seconds += r.seconds;
        total_evals += r.evals;
        fp_expr_free(e);
    }
    printf("\nall: %.0f evaluations/s on average; arena %zu KB after the run\n", (double)total_evals / total_seconds,
           fp_arena_capacity(a) / 1024);
    fp_arena_free(a);
    invariant_cost(dir, true);
    invariant_cost(dir, false);
    for (size_t i = 0; i < c.count; i++) {
        fj_doc_free(&c.docs[i].doc);
        free(c.docs[i].text);
    }
    free(c.docs);
    free(c.periods);
    free(c.elements);
    return 0;
}
