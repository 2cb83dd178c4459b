/*
 * bench/check.c — care plans checked per second per core with full context,
 * beside structural validation of the same input, in the same run (machines
 * are noisy, so only the ratio within one run means much).
 *
 *   bench-check SOURCE_DIR [SECONDS] [check|validate]
 *
 * The third argument runs one side only (for a profiler such as perf); the
 * ratio is then not printed.
 * Input: the realistic GZSP set of SOURCE_DIR/tests/rules/gzsp-set (nine plans,
 * all four forms, each a Bundle with its team, roles, goals, locations,
 * patient, coverages and provider). One thread, each pass over the set:
 *   validate  copy + parse + fv_validate_doc with the guide's profiles (every
 *             entry, its meta.profile and extensions, core invariants)
 *   check     copy + parse + rl_check with the 2026 pack (the plan's profile
 *             invariants, the CareTeam's, the named checks over the context)
 * Targets (issue #12): check >= 20,000 plans/s per core, and cheaper than
 * validating the same input. Each figure is the best of several rounds, timed
 * in the thread's CPU time: "per core" is per CPU-second, and the machine's
 * other work (this bench often shares its cores) does not count against it.
 * Memory: everything is freed before exit.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/validate.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "rules/bundle.h"
#include "rules/check.h"

#define MAX_PLANS 64
#define ROUNDS 5

typedef struct plan {
    char *data, *work;
    size_t len;
} plan;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t load_plans(const char *dir, plan *plans)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; d && (e = readdir(d)) && n < MAX_PLANS;) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%.1000s/%.1000s", dir, e->d_name);
        plans[n].data = files_read(path, &plans[n].len);
        if (plans[n].data) {
            plans[n].work = malloc(plans[n].len + 1);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

typedef struct setup {
    pf_registry *reg;
    rl_pack *pack;
    rl_engine *engine;
} setup;

static bool one_validate(const setup *s, plan *p)
{
    memcpy(p->work, p->data, p->len);
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options o = {.profiles = s->reg};
    size_t errors = fv_validate_buffer(p->work, p->len, &o, &issues);
    oo_list_free(&issues);
    return errors == 0;
}

static bool one_check(const setup *s, plan *p, const fdt_value *date)
{
    memcpy(p->work, p->data, p->len);
    fj_doc doc;
    fj_error e;
    bool ok = fj_parse(p->work, p->len, NULL, &doc, &e);
    rl_bundle b = {0};
    if (ok && rl_bundle_init(&b, &doc)) {
        size_t n;
        const char *const *types = rl_engine_subject_types(s->engine, &n);
        rl_context ctx = rl_bundle_context(&b, rl_bundle_subject(&b, types, n), *date);
        rl_report rep;
        char err[200];
        ok = rl_check(s->engine, &ctx, &rep, err, sizeof err);
        rl_report_free(&rep);
    }
    rl_bundle_free(&b);
    fj_doc_free(&doc);
    return ok;
}

/* Best plans per CPU-second over ROUNDS rounds of about `seconds` of CPU time each. */
static double measure(const setup *s, plan *plans, size_t n, double seconds, bool check, const fdt_value *date)
{
    double best = 0;
    for (int r = 0; r < ROUNDS; r++) {
        size_t done = 0;
        double t0 = now_seconds(), t;
        do {
            for (size_t i = 0; i < n; i++)
                if (!(check ? one_check(s, &plans[i], date) : one_validate(s, &plans[i])))
                    fprintf(stderr, "bench-check: plan %zu did not %s\n", i, check ? "check" : "validate");
            done += n;
        } while ((t = now_seconds() - t0) < seconds / ROUNDS);
        if (done / t > best)
            best = (double)done / t;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-check SOURCE_DIR [SECONDS] [check|validate]\n");
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 5.0;
    char dirs[3][1024], set[1024], pack_path[1024];
    const char *names[] = {"profiles", "extensions", "terminology"}, *dp[3];
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/ig/%s", argv[1], names[i]);
        dp[i] = dirs[i];
    }
    snprintf(set, sizeof set, "%s/tests/rules/gzsp-set", argv[1]);
    snprintf(pack_path, sizeof pack_path, "%s/rules/packs/2026/pack.json", argv[1]);
    setup s = {0};
    oo_list issues;
    oo_list_init(&issues, 0);
    s.reg = conf_load(dp, 3, &issues);
    size_t len;
    char *buf = files_read(pack_path, &len);
    s.pack = buf ? rl_pack_load(buf, len, pack_path, &issues) : NULL;
    free(buf);
    s.engine = s.pack && s.reg ? rl_engine_new(s.pack, s.reg, &issues) : NULL;
    oo_list_free(&issues);
    plan plans[MAX_PLANS];
    size_t n = load_plans(set, plans);
    if (!s.engine || !n) {
        fprintf(stderr, "bench-check: cannot load the guide, the pack or the plans under %s\n", argv[1]);
        return 1;
    }
    fdt_value date;
    fdt_parse(FDT_FORM_DATE, "2026-02-01", 10, &date);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += plans[i].len;
    printf("input: %zu care plans with full context, %.1f KB a Bundle on average\n", n, (double)bytes / n / 1024);
    const char *only = argc > 3 ? argv[3] : "";
    double v = strcmp(only, "check") ? measure(&s, plans, n, seconds, false, &date) : 0;
    double c = strcmp(only, "validate") ? measure(&s, plans, n, seconds, true, &date) : 0;
    if (v > 0)
        printf("validate (parse + structure + profiles): %10.0f plans/s per core\n", v);
    if (c > 0)
        printf("check    (parse + rules, full context):  %10.0f plans/s per core (target >= 20,000)\n", c);
    if (v > 0 && c > 0)
        printf("check / validate time:                   %10.2f (target < 1)\n", v / c);
    for (size_t i = 0; i < n; i++) {
        free(plans[i].data);
        free(plans[i].work);
    }
    rl_engine_free(s.engine);
    rl_pack_free(s.pack);
    pf_registry_free(s.reg);
    return 0;
}
