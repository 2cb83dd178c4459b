/*
 * bench/map.c — how fast are the insurer maps, measured against parsing the
 * same input in the same run (machines are noisy, so only ratios within one
 * run mean much).
 *
 *   bench-map SOURCE_DIR [MAP]  (the repository: ig/, mappings/maps/2026, tests/maps;
 *                                MAP: time only the maps whose file name contains it, no scale
 *                                run: for profiling one map)
 *   bench-map SOURCE_DIR --dump DIR  (no timing: write each map's result and issues, and the
 *                                report map's over 1,000 findings, to DIR/NAME.out, to compare
 *                                two engines' outputs byte for byte)
 *   bench-map SOURCE_DIR MAP --runs N  (no timing: parse and run the matching maps N times each,
 *                                for `perf record`: a profile of the map without the parse-only
 *                                rounds that make up half of a timed run)
 *
 * 1. Per map (each direction): one realistic input built from the guide's
 *    fixtures (the way back: what the map there produced). Resources mapped
 *    per second on one core (parse + run, unmapped elements reported, result
 *    freed), and the cost of the run alone as a multiple of parsing the input
 *    alone (targets: >= 20,000/s, <= 3x).
 * 2. The compliance-report map over one OperationOutcome of 1,000 and of
 *    100,000 issues: cost per item at both sizes (target: within 1.5x).
 * Each timing is the best of five rounds of at least 0.2 s.
 *
 * Memory: everything is freed before exit (the benchmark runs clean under ASan).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/json.h"
#include "fhir/json_write.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "mappings/mapset.h"

static const char *root;

/* CPU time of this thread: the figures are per core, and other processes on a shared machine do not count. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *slurp(const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *t = files_read(path, len);
    if (!t) {
        fprintf(stderr, "bench-map: cannot read %s\n", path);
        exit(1);
    }
    return t;
}

/* A collection Bundle of the given fixture files (relative to ig/fixtures). */
static char *bundle_of(const char *const *files, size_t n)
{
    json_object *b = json_object_new_object(), *entries = json_object_new_array();
    json_object_object_add(b, "resourceType", json_object_new_string("Bundle"));
    json_object_object_add(b, "type", json_object_new_string("collection"));
    for (size_t i = 0; i < n; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "ig/fixtures/%s", files[i]);
        size_t len;
        char *t = slurp(rel, &len);
        json_object *r = json_tokener_parse(t);
        free(t);
        json_object *e = json_object_new_object();
        const char *rt = json_object_get_string(json_object_object_get(r, "resourceType"));
        const char *id = json_object_get_string(json_object_object_get(r, "id"));
        char url[300];
        snprintf(url, sizeof url, "https://fhirgw.nl/fhir/%s/%s", rt, id);
        json_object_object_add(e, "fullUrl", json_object_new_string(url));
        json_object_object_add(e, "resource", r);
        json_object_array_add(entries, e);
    }
    json_object_object_add(b, "entry", entries);
    char *s = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
    json_object_put(b);
    return s;
}

typedef struct timing {
    double parse, run; /* seconds per resource */
    double write;      /* seconds to write the result's JSON text alone, from its parsed index */
} timing;

/* Best-of-five seconds per iteration of parse alone and of parse + run. */
static timing measure(const mps_set *set, const sm_map *m, const char *text)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    timing best = {1e9, 1e9, 0};
    mpe_options o = {0};
    for (int round = 0; round < 5; round++) {
        for (int what = 0; what < 2; what++) {
            /* the clock is read once per batch: reading the thread's CPU time is a system call (on the
               shared VM about 2 us, as much as parsing a small record), so one read per iteration would
               inflate the parse baseline and hide the map's share */
            long n = 0, batch = 1;
            double t0 = now(), t;
            do {
                for (long b = 0; b < batch; b++) {
                    memcpy(buf, text, len + 1);
                    fj_doc doc;
                    fj_error err;
                    if (!fj_parse(buf, len, NULL, &doc, &err)) {
                        fprintf(stderr, "bench-map: bad input: %s\n", err.message);
                        exit(1);
                    }
                    if (what) {
                        oo_list issues;
                        oo_list_init(&issues, 0);
                        json_object *out = NULL;
                        if (!mps_run(set, m, &doc, UINT32_MAX, &o, &out, &issues)) {
                            fprintf(stderr, "bench-map: the map failed: %s\n", issues.items[0].message);
                            exit(1);
                        }
                        json_object_put(out);
                        oo_list_free(&issues);
                    }
                    fj_doc_free(&doc);
                }
                n += batch;
                t = now() - t0;
                if (t < 0.01)
                    batch *= 2; /* batches of up to ~10 ms: the clock's cost vanishes, rounds stay near 0.2 s */
            } while (t < 0.2);
            double per = t / (double)n;
            if (what ? per < best.run : per < best.parse)
                *(what ? &best.run : &best.parse) = per;
        }
    }
    free(buf);
    return best;
}

/*
 * Best-of-five seconds to write `result` (a map's output) as compact JSON
 * from its parsed index: no engine can hand over its result faster than it
 * writes these bytes, so this floor, beside the input's parse, says which
 * ratios a map can reach at all (a map whose result is eight times its input
 * spends more than 3x the parse on the writing alone).
 */
static double measure_write(const char *result)
{
    size_t len = strlen(result);
    char *buf = malloc(len + 1);
    memcpy(buf, result, len + 1);
    fj_doc doc;
    fj_error err;
    if (!fj_parse(buf, len, NULL, &doc, &err)) {
        fprintf(stderr, "bench-map: the result does not parse: %s\n", err.message);
        exit(1);
    }
    double best = 1e9;
    fj_buf out = {0};
    for (int round = 0; round < 5; round++) {
        long n = 0, batch = 1;
        double t0 = now(), t;
        do {
            for (long b = 0; b < batch; b++) {
                out.len = 0;
                fj_write(&doc, 0, NULL, &out);
            }
            n += batch;
            t = now() - t0;
            if (t < 0.01)
                batch *= 2;
        } while (t < 0.2);
        if (t / (double)n < best)
            best = t / (double)n;
    }
    fj_buf_free(&out);
    fj_doc_free(&doc);
    free(buf);
    return best;
}

static const char *dump_dir; /* --dump DIR: each map's result and issues are written there */
static long fixed_runs;      /* --runs N: run each timed map N times, untimed */

/* Parse and run the map n times (for profiling, not timing). */
static void run_n(const mps_set *set, const sm_map *m, const char *text, long n)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    mpe_options o = {0};
    for (long i = 0; i < n; i++) {
        memcpy(buf, text, len + 1);
        fj_doc doc;
        fj_error err;
        oo_list issues;
        oo_list_init(&issues, 0);
        json_object *out = NULL;
        if (!fj_parse(buf, len, NULL, &doc, &err) || !mps_run(set, m, &doc, UINT32_MAX, &o, &out, &issues)) {
            fprintf(stderr, "bench-map: the map failed\n");
            exit(1);
        }
        json_object_put(out);
        oo_list_free(&issues);
        fj_doc_free(&doc);
    }
    free(buf);
}

/* Write a run's result and issues to dump_dir/NAME.out, for comparing engines byte for byte. */
static void dump(const char *name, const char *result, const oo_list *issues)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.out", dump_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench-map: cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "%s\n", result);
    for (size_t i = 0; i < issues->count; i++)
        fprintf(f, "%s %s %s\n", issues->items[i].code, issues->items[i].expression ? issues->items[i].expression : "-",
                issues->items[i].message);
    fclose(f);
}

/* Run once and return the result as text (the input of the way back). */
static char *run_once(const mps_set *set, const sm_map *m, const char *text, const char *name)
{
    char *buf = strdup(text);
    fj_doc doc;
    fj_error err;
    fj_parse(buf, strlen(buf), NULL, &doc, &err);
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = NULL;
    if (!mps_run(set, m, &doc, UINT32_MAX, NULL, &out, &issues)) {
        fprintf(stderr, "bench-map: the map failed: %s\n", issues.count ? issues.items[0].message : "?");
        exit(1);
    }
    char *s = strdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    if (dump_dir)
        dump(name, s, &issues);
    json_object_put(out);
    oo_list_free(&issues);
    fj_doc_free(&doc);
    free(buf);
    return s;
}

static const sm_map *load_map(mps_set *set, const char *name)
{
    char rel[300];
    snprintf(rel, sizeof rel, "mappings/maps/2026/%s", name);
    size_t len;
    char *t = slurp(rel, &len);
    oo_list issues;
    oo_list_init(&issues, 0);
    const sm_map *m = mps_add_map(set, t, len, name, &issues);
    if (!m) {
        fprintf(stderr, "bench-map: %s: %s\n", name, issues.count ? issues.items[0].message : "?");
        exit(1);
    }
    oo_list_free(&issues);
    free(t);
    return m;
}

static void report(const char *name, const char *text, const char *result, timing t)
{
    double map_only = t.run - t.parse;
    t.write = measure_write(result);
    printf("%-36s %6zu B %6zu B %8.0f /s  parse %5.1f us  map %5.1f us  map/parse %5.2fx  write/parse %5.2fx\n", name,
           strlen(text), strlen(result), 1.0 / t.run, t.parse * 1e6, map_only * 1e6, map_only / t.parse,
           t.write / t.parse);
}

/* A Parameters report with n findings. */
static char *report_of(size_t n)
{
    size_t cap = 256 + n * 400;
    char *s = malloc(cap), *p = s;
    p += sprintf(p, "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"subject\",\"valueReference\":"
                    "{\"reference\":\"CarePlan/x\"}},{\"name\":\"rulePack\",\"valueString\":\"2026.1.0\"},"
                    "{\"name\":\"checked\",\"valueDate\":\"2026-03-15\"},{\"name\":\"status\",\"valueCode\":"
                    "\"non-compliant\"},{\"name\":\"outcome\",\"resource\":{\"resourceType\":\"OperationOutcome\","
                    "\"issue\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p,
                     "%s{\"extension\":[{\"url\":\"https://fhirgw.nl/fhir/StructureDefinition/finding-source\","
                     "\"valueString\":\"ZN §7\"}],\"severity\":\"error\",\"code\":\"business-rule\",\"details\":"
                     "{\"coding\":[{\"system\":\"https://fhirgw.nl/fhir/CodeSystem/rule\",\"code\":\"GZSP-EVAL\"}],"
                     "\"text\":\"finding %zu\"},\"expression\":[\"CarePlan.extension[%zu]\"]}",
                     i ? "," : "", i, i);
    strcpy(p, "]}}]}");
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[2], "--dump"))
        dump_dir = argv[3];
    else if (argc == 5 && !strcmp(argv[3], "--runs") && atol(argv[4]) > 0)
        fixed_runs = atol(argv[4]);
    else if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: bench-map SOURCE_DIR [MAP [--runs N] | --dump DIR]\n");
        return 2;
    }
    root = argv[1];
    const char *only = argc == 3 || fixed_runs ? argv[2] : NULL;
    char dirs[4][1024];
    const char *dp[4];
    const char *sub[4] = {"ig/profiles", "ig/extensions", "ig/terminology", "ig/models"};
    for (int i = 0; i < 4; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", root, sub[i]);
        dp[i] = dirs[i];
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_registry *reg = conf_load(dp, 4, &issues);
    mpn_key key;
    char err[128];
    const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    mpn_key_from_hex(hex, strlen(hex), &key, err, sizeof err);
    mps_set *set = mps_new(reg, &key, &issues);
    static const char *cms[] = {"care-kind-to-insurer",     "insurer-to-care-kind",   "care-variant-to-insurer-kind",
                                "discipline-to-insurer",    "insurer-to-discipline",  "legal-form-to-insurer",
                                "insurer-to-legal-form",    "origin-to-insurer",      "insurer-to-origin",
                                "destination-to-insurer",   "insurer-to-destination", "exit-criterion-to-insurer",
                                "insurer-to-exit-criterion"};
    for (size_t i = 0; i < sizeof cms / sizeof *cms; i++) {
        char rel[300];
        size_t len;
        snprintf(rel, sizeof rel, "mappings/maps/2026/conceptmaps/ConceptMap-%s.json", cms[i]);
        char *t = slurp(rel, &len);
        mps_add_conceptmap(set, t, len, cms[i], &issues);
        free(t);
    }
    static const char *org[] = {"parties/Organization-ura-90000303.json", "parties/Location-loc-grz-c-1.json"};
    static const char *stay[] = {"stays/Encounter-stay-05.json", "parties/Patient-patient-05.json"};
    static const char *plan[] = {"gzsp/CarePlan-cp-gzsp-kwetsbaar-1.json",
                                 "gzsp/CareTeam-ct-gzsp-kwetsbaar-1.json",
                                 "gzsp/PractitionerRole-prr-gzsp-so-1.json",
                                 "gzsp/PractitionerRole-prr-gzsp-fysio-1.json",
                                 "gzsp/PractitionerRole-prr-gzsp-ergo-1.json",
                                 "gzsp/PractitionerRole-prr-gzsp-actbeg-1.json",
                                 "gzsp/Goal-goal-gzsp-1a.json",
                                 "gzsp/Goal-goal-gzsp-1b.json",
                                 "gzsp/Coverage-cov-gzsp-zvw-01.json",
                                 "parties/Patient-patient-01.json"};
    static const char *contract[] = {"contracts/Contract-contract-2026-grz-90000302.json",
                                     "parties/Organization-ura-90000501.json"};
    struct {
        const char *to, *back;
        char *input;
    } cases[] = {
        {"organization-to-provider.map", "provider-to-organization.map", bundle_of(org, 2)},
        {"encounter-to-stay.map", "stay-to-encounter.map", bundle_of(stay, 2)},
        {"careplan-to-treatment-plan.map", "treatment-plan-to-careplan.map", bundle_of(plan, 10)},
        {"contract-to-insurer.map", "insurer-to-contract.map", bundle_of(contract, 2)},
        {"compliance-report.map", "compliance-report-to-parameters.map", NULL},
    };
    size_t len;
    cases[4].input = slurp("tests/maps/Parameters-report-cp-gzsp-huntington-2.json", &len);
    if (!dump_dir && !fixed_runs)
        printf("bench-map: resources mapped per second on one core (parse + map, unmapped reported), and the map's\n"
               "cost as a multiple of parsing its input, best of 5 rounds (targets: >= 20,000/s, map/parse <= 3x);\n"
               "write/parse: writing the result's JSON alone, from its parsed index, against the same parse\n\n"
               "map                                   input  result     rate\n");
    const sm_map *report_map = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const sm_map *to = load_map(set, cases[i].to), *back = load_map(set, cases[i].back);
        if (i == 4)
            report_map = to;
        char *rec = run_once(set, to, cases[i].input, cases[i].to);
        if (fixed_runs && strstr(cases[i].to, only))
            run_n(set, to, cases[i].input, fixed_runs);
        else if (!dump_dir && (!only || strstr(cases[i].to, only)))
            report(cases[i].to, cases[i].input, rec, measure(set, to, cases[i].input));
        char *home = run_once(set, back, rec, cases[i].back);
        if (fixed_runs && strstr(cases[i].back, only))
            run_n(set, back, rec, fixed_runs);
        else if (!dump_dir && !fixed_runs && (!only || strstr(cases[i].back, only)))
            report(cases[i].back, rec, home, measure(set, back, rec));
        free(home);
        free(rec);
        free(cases[i].input);
    }
    if (dump_dir) {
        char *r = report_of(1000);
        free(run_once(set, report_map, r, "compliance-report-1000"));
        free(r);
    }
    if (only || dump_dir) {
        oo_list_free(&issues);
        mps_free(set);
        pf_registry_free(reg);
        return 0;
    }
    printf("\nscale: compliance-report.map over one list of findings\n");
    double per_item[2];
    size_t sizes[2] = {1000, 100000};
    for (int k = 0; k < 2; k++) {
        char *r = report_of(sizes[k]);
        timing t = measure(set, report_map, r);
        per_item[k] = (t.run - t.parse) / (double)sizes[k];
        printf("  %6zu items: %8.1f ms a run, %6.0f ns per item (map only), parse %6.0f ns per item\n", sizes[k],
               t.run * 1e3, per_item[k] * 1e9, t.parse / (double)sizes[k] * 1e9);
        free(r);
    }
    printf("  per-item cost at 100,000 / at 1,000: %.2fx (target <= 1.5x)\n", per_item[1] / per_item[0]);
    oo_list_free(&issues);
    mps_free(set);
    pf_registry_free(reg);
    return 0;
}
