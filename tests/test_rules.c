/*
 * tests/test_rules.c — the rule engine and the 2026 rule pack (issue #12).
 *
 * - For every one of the 32 rule ids a passing and a failing case, each a
 *   Bundle with context from tests/rules/ (the failing one the same Bundle
 *   changed by a JSON Patch), asserting the exact rule id, severity and
 *   FHIRPath location; boundaries (evaluation gap of 6 months and a day more,
 *   treatment share 50% and just under, day-parts of 2 h and 4 h and just
 *   outside, GRZ stays of 6 months and a day more, triage 14 and 15 days, GRZ
 *   admission 48 h and 49 h after the go-ahead).
 * - The realistic GZSP set (all four forms) with the findings its README names.
 * - The pack against the guide's rule CodeSystem and the seed texts; the
 *   report's Parameters valid for the project's validator; missing context.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/patch.h"
#include "fhir/validate.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "rules/bundle.h"
#include "rules/check.h"

#define RULES TESTS_DIR "/rules/"
#define PACK TESTS_DIR "/../rules/packs/2026/pack.json"
#define IG TESTS_DIR "/../ig/"

static pf_registry *reg;
static rl_pack *pack;
static rl_engine *engine;

static void setup(void)
{
    const char *dirs[] = {IG "profiles", IG "extensions", IG "terminology"};
    oo_list issues;
    oo_list_init(&issues, 0);
    reg = conf_load(dirs, 3, &issues);
    cr_assert_not_null(reg);
    size_t len;
    char *buf = files_read(PACK, &len);
    cr_assert_not_null(buf);
    pack = rl_pack_load(buf, len, PACK, &issues);
    free(buf);
    cr_assert_not_null(pack, "%s", issues.count ? issues.items[0].message : "");
    engine = rl_engine_new(pack, reg, &issues);
    cr_assert_not_null(engine, "%s", issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
}

static void teardown(void)
{
    rl_engine_free(engine);
    rl_pack_free(pack);
    pf_registry_free(reg);
}

TestSuite(rules, .init = setup, .fini = teardown);

static fdt_value day(const char *s)
{
    fdt_value v;
    cr_assert_null(fdt_parse(FDT_FORM_DATE, s, strlen(s), &v), "%s", s);
    return v;
}

/* The file (patched when patch is not NULL) as a malloc'd buffer. */
static char *load(const char *file, const char *patch, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", RULES, file);
    char *text = files_read(path, len);
    cr_assert_not_null(text, "%s", path);
    if (!patch)
        return text;
    fj_doc doc, pd;
    fj_error e;
    char *ptext = strdup(patch);
    cr_assert(fj_parse(text, *len, NULL, &doc, &e), "%s: %s", path, e.message);
    cr_assert(fj_parse(ptext, strlen(ptext), NULL, &pd, &e), "patch: %s", e.message);
    fpatch_error pe;
    char *out = fpatch_json_patch(&doc, &pd, len, &pe);
    cr_assert_not_null(out, "patch %s on %s: %s", patch, file, pe.message);
    fj_doc_free(&doc);
    fj_doc_free(&pd);
    free(ptext);
    free(text);
    return out;
}

/* Check text on date into *rep (the caller frees rep and text). */
static void check_text(char *text, size_t len, const char *date, rl_report *rep)
{
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(text, len, NULL, &doc, &e), "%s", e.message);
    rl_bundle b;
    cr_assert(rl_bundle_init(&b, &doc));
    size_t n;
    const char *const *types = rl_engine_subject_types(engine, &n);
    rl_res subject = rl_bundle_subject(&b, types, n);
    cr_assert_neq(subject.node, RL_NO_NODE);
    rl_context ctx = rl_bundle_context(&b, subject, day(date));
    char err[200];
    cr_assert(rl_check(engine, &ctx, rep, err, sizeof err), "%s", err);
    rl_bundle_free(&b);
    fj_doc_free(&doc);
}

static void dump(const rl_report *rep)
{
    char *t = rl_report_text(rep);
    cr_log_info("%s", t);
    free(t);
}

/* ---- per rule: a passing and a failing case ------------------------------------------ */

typedef struct rcase {
    const char *rule, *file, *date, *patch; /* patch NULL: the passing case */
    bool error;                             /* the failing case's severity */
    const char *location;
} rcase;

#define CP "/entry/0/resource"
#define PASS(rule, file, date)              \
    {                                       \
        rule, file, date, NULL, false, NULL \
    }
#define FAIL(rule, file, date, patch, loc) \
    {                                      \
        rule, file, date, patch, true, loc \
    }
#define WARN(rule, file, date, patch, loc)  \
    {                                       \
        rule, file, date, patch, false, loc \
    }
#define REPL(path, value) "{\"op\":\"replace\",\"path\":\"" path "\",\"value\":" value "}"
#define REMOVE(path) "{\"op\":\"remove\",\"path\":\"" path "\"}"
#define ADD(path, value) "{\"op\":\"add\",\"path\":\"" path "\",\"value\":" value "}"
#define LAPSE(i) "[" REPL(CP "/extension/" #i "/extension/2/valueDate", "\"2026-05-31\"") "]"
#define GZ "gzsp-plan.json"
#define EG "provider-elv-grz.json"
#define GP "provider-gzsp.json"
#define RR "provider-grz-remote.json"
#define SE "stay-elv.json"
#define SG "stay-grz.json"
#define ST "stay-triage.json"
#define D0 "2026-01-15"
#define D1 "2026-06-01"
#define HOSPITAL_STAY                                                                                                  \
    "{\"fullUrl\":\"https://fhir.example/fhir/Encounter/hosp-1\",\"resource\":{\"resourceType\":\"Encounter\",\"id\":" \
    "\"hosp-1\",\"status\":\"finished\",\"class\":{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\","   \
    "\"code\":\"IMP\"},\"subject\":{\"reference\":\"Patient/patient-01\"},\"period\":{\"start\":\"2025-12-10\","       \
    "\"end\":\"2025-12-20\"}}}"
#define COVERAGE(kind, start)                                                                                     \
    "{\"fullUrl\":\"https://fhir.example/fhir/Coverage/c-" kind "\",\"resource\":{\"resourceType\":\"Coverage\"," \
    "\"id\":\"c-" kind "\",\"status\":\"active\",\"type\":{\"coding\":[{\"system\":\"https://fhirgw.nl/fhir/"     \
    "CodeSystem/coverage-kind\",\"code\":\"" kind "\"}]},\"beneficiary\":{\"reference\":\"Patient/patient-01\"}," \
    "\"period\":{\"start\":\"" start "\"},\"payor\":[{\"display\":\"payor\"}]}}"
#define EVAL_DONE "[" ADD(CP "/extension/1/extension/-", "{\"url\":\"performed\",\"valueDate\":\"2026-02-27\"}") "]"
#define ACT(i, what, v) REPL(CP "/activity/" #i "/detail/scheduledTiming/repeat/" what, v)
#define DAYPARTS(v) REPL(CP "/extension/0/valuePositiveInt", v)

static const rcase cases[] = {
    /* GZSP, on the plan of cp-gzsp-kwetsbaar-1 and its context */
    PASS("GZSP-FORM", GZ, D0),
    FAIL("GZSP-FORM", GZ, D0, "[" REPL(CP "/category/0/coding/0/code", "\"gzsp-overig\"") "]", "CarePlan"),
    PASS("GZSP-GOAL", GZ, D0),
    FAIL("GZSP-GOAL", GZ, D0, "[" REMOVE(CP "/goal") "]", "CarePlan"),
    PASS("GZSP-NODIAG", GZ, D0),
    FAIL("GZSP-NODIAG", GZ, D0,
         "[" REPL(CP "/activity/1/detail/extension/0/valueCoding/code", "\"diagnostiek-primair\"") "]", "CarePlan"),
    PASS("GZSP-LOCATION", GZ, D0),
    FAIL("GZSP-LOCATION", GZ, D0, "[" REPL(CP "/activity/1/detail/location/reference", "\"Location/loc-gzsp-3\"") "]",
         "CarePlan.activity[1].detail.location"),
    WARN("GZSP-LOCATION", GZ, D0, "[" REMOVE("/entry/8") "]", "CarePlan.activity[0].detail.location"),
    PASS("GZSP-MULTI", GZ, D0),
    FAIL("GZSP-MULTI", GZ, D0,
         "[" REMOVE("/entry/1/resource/participant/2") "," REMOVE("/entry/1/resource/participant/1") "]",
         "CarePlan.careTeam[0].resolve()"),
    PASS("GZSP-LEAD", GZ, D0),
    FAIL("GZSP-LEAD", GZ, D0, "[" REPL("/entry/1/resource/participant/0/role/1/coding/0/code", "\"90.000\"") "]",
         "CarePlan.careTeam[0].resolve()"),
    FAIL("GZSP-LEAD", GZ, D0, "[" REMOVE("/entry/2/resource/identifier") "]",
         "CarePlan.careTeam[0].resolve().participant[0].member"),
    PASS("GZSP-COTREAT", GZ, D0),
    FAIL("GZSP-COTREAT", GZ, D0, "[" REMOVE("/entry/1/resource/participant/1/role/1") "]",
         "CarePlan.careTeam[0].resolve()"),
    /* GZSP-EVAL: stated (invariant); the gap: start 2025-09-01 + 6 months = 2026-03-01 */
    FAIL("GZSP-EVAL", GZ, D0, "[" REMOVE(CP "/extension/1") "]", "CarePlan"),
    PASS("GZSP-EVAL", GZ, "2026-03-01"),
    FAIL("GZSP-EVAL", GZ, "2026-03-02", "[]", "CarePlan.period.start"),
    /* performed 2026-02-27: the next is due by 2026-08-27 */
    {"GZSP-EVAL", GZ, "2026-08-27", EVAL_DONE, false, "pass"},
    FAIL("GZSP-EVAL", GZ, "2026-08-28", EVAL_DONE, "CarePlan.extension[1]"),
    /* GZSP-DAYPARTS: 2 h and 4 h pass, 1.9 h and 4.1 h fail */
    {"GZSP-DAYPARTS", GZ, D0, "[" ACT(0, "duration", "2") "]", false, "pass"},
    {"GZSP-DAYPARTS", GZ, D0, "[" ACT(0, "duration", "4") "]", false, "pass"},
    FAIL("GZSP-DAYPARTS", GZ, D0, "[" ACT(0, "duration", "1.9") "]", "CarePlan"),
    FAIL("GZSP-DAYPARTS", GZ, D0, "[" ACT(0, "duration", "4.1") "]", "CarePlan"),
    /* GZSP-TREATSHARE: 50 of 100 day-parts pass, 49 of 99 fail */
    {"GZSP-TREATSHARE", GZ, D0, "[" ACT(0, "frequency", "50") "," ACT(1, "frequency", "50") "," DAYPARTS("100") "]",
     false, "pass"},
    FAIL("GZSP-TREATSHARE", GZ, D0, "[" ACT(0, "frequency", "49") "," ACT(1, "frequency", "50") "," DAYPARTS("99") "]",
         "CarePlan"),
    PASS("GZSP-ACTGOAL", GZ, D0),
    FAIL("GZSP-ACTGOAL", GZ, D0, "[" REPL(CP "/activity/0/detail/goal/0/reference", "\"Goal/goal-gzsp-2a\"") "]",
         "CarePlan"),
    PASS("GZSP-EXIT", GZ, D0),
    FAIL("GZSP-EXIT", GZ, D0, "[" REPL(CP "/status", "\"completed\"") "]", "CarePlan"),
    WARN("GZSP-EXIT", GZ, D0, "[" ADD("/entry/-", HOSPITAL_STAY) "]", "CarePlan.status"),
    {"GZSP-WLZ", GZ, D0, "[" ADD("/entry/-", COVERAGE("wmo-dagbesteding", "2025-10-01")) "]", false, "pass"},
    {"GZSP-WLZ", GZ, D0, "[" ADD("/entry/-", COVERAGE("wlz-indicatie", "2026-01-16")) "]", false, "pass"},
    FAIL("GZSP-WLZ", GZ, D0, "[" ADD("/entry/-", COVERAGE("wlz-indicatie", "2026-01-15")) "]", "CarePlan.subject"),
    /* provider rules: ELV and GRZ at ura-90000302, every requirement attested until 2027-06-30 */
    PASS("ELV-BASE", EG, D1),
    FAIL("ELV-BASE", EG, D1, LAPSE(20), "Organization.extension[20].extension[2]"),
    WARN("ELV-BASE", EG, D1, "[" REMOVE(CP "/extension/21") "]", "Organization.extension"),
    PASS("ELV-HANDOVER", EG, D1),
    FAIL("ELV-HANDOVER", EG, D1, LAPSE(22), "Organization.extension[22].extension[2]"),
    PASS("ELV-COORD", EG, D1),
    FAIL("ELV-COORD", EG, D1, "[" REMOVE(CP "/extension/3") "]", "Organization"),
    FAIL("ELV-COORD", EG, D1, LAPSE(25), "Organization.extension[25].extension[2]"),
    PASS("ELV-HIGH", EG, D1),
    FAIL("ELV-HIGH", EG, D1, "[" REMOVE(CP "/extension/2") "]", "Organization"),
    FAIL("ELV-HIGH", EG, D1, LAPSE(27), "Organization.extension[27].extension[2]"),
    PASS("ELV-PALLIATIVE", EG, D1),
    FAIL("ELV-PALLIATIVE", EG, D1, "[" REMOVE(CP "/extension/8") "]", "Organization"),
    FAIL("ELV-PALLIATIVE", EG, D1, LAPSE(33), "Organization.extension[33].extension[2]"),
    PASS("ELV-TRIAGE", EG, D1),
    FAIL("ELV-TRIAGE", EG, D1, "[" REMOVE("/entry/2") "]", "Organization.extension[1].extension[3]"),
    FAIL("ELV-TRIAGE", EG, "2027-01-04", "[]", "Organization.extension[1].extension[3]"),
    PASS("GRZ-BASE", EG, D1),
    FAIL("GRZ-BASE", EG, D1, LAPSE(48), "Organization.extension[48].extension[2]"),
    /* GRZ-ADMIT48 over the provider's stays: stay-05 admitted 2026-03-03T16:30+01:00 */
    {"GRZ-ADMIT48", EG, D1,
     "[" REPL("/entry/3/resource/extension/0/valueDateTime", "\"2026-03-01T16:30:00+01:00\"") "]", false, "pass"},
    WARN("GRZ-ADMIT48", EG, D1,
         "[" REPL("/entry/3/resource/extension/0/valueDateTime", "\"2026-03-01T15:30:00+01:00\"") "]", "Organization"),
    FAIL("GRZ-ADMIT48", EG, D1, LAPSE(54), "Organization.extension[54].extension[2]"),
    PASS("GRZ-VOLUME", RR, D1),
    FAIL("GRZ-VOLUME", RR, D1, "[" REMOVE(CP "/extension/4") "]", "Organization"),
    FAIL("GRZ-VOLUME", RR, D1, LAPSE(23), "Organization.extension[23].extension[2]"),
    PASS("GRZ-CVA", EG, D1),
    FAIL("GRZ-CVA", EG, D1, "[" REMOVE(CP "/extension/4") "]", "Organization"),
    PASS("GZSP-BASE", GP, D1),
    FAIL("GZSP-BASE", GP, D1, LAPSE(18), "Organization.extension[18].extension[2]"),
    PASS("GZSP-SGLVG", GP, D1),
    FAIL("GZSP-SGLVG", GP, D1, "[" REMOVE(CP "/extension/2") "]", "Organization"),
    PASS("GZSP-NETWORK", GP, D1),
    FAIL("GZSP-NETWORK", GP, D1, "[" REMOVE(CP "/extension/6") "]", "Organization.extension[1].extension[3]"),
    /* stays: GRZ 2026-03-03 to 2026-09-03 (6 months), go-ahead 48 h before; triage 14 days */
    PASS("STAY-GRZ-MAX", SG, "2026-10-01"),
    FAIL("STAY-GRZ-MAX", SG, "2026-10-01", "[" REPL(CP "/period/end", "\"2026-09-04T10:00:00+02:00\"") "]",
         "Encounter"),
    PASS("STAY-GRZ-48H", SG, "2026-10-01"),
    FAIL("STAY-GRZ-48H", SG, "2026-10-01",
         "[" REPL(CP "/extension/0/valueDateTime", "\"2026-03-01T15:30:00+01:00\"") "]", "Encounter"),
    {"GRZ-MAXSTAY", SG, "2026-09-03",
     "[" REMOVE(CP "/period/end") "," REPL(CP "/status", "\"in-progress\"") "," REMOVE(
         CP "/hospitalization/dischargeDisposition") "]",
     false, "pass"},
    FAIL("GRZ-MAXSTAY", SG, "2026-09-04",
         "[" REMOVE(CP "/period/end") "," REPL(CP "/status", "\"in-progress\"") "," REMOVE(
             CP "/hospitalization/dischargeDisposition") "]",
         "Encounter.period"),
    PASS("STAY-TRIAGE-MAX", ST, "2026-11-01"),
    FAIL("STAY-TRIAGE-MAX", ST, "2026-11-01", "[" REPL(CP "/period/end", "\"2026-10-16T10:00:00+02:00\"") "]",
         "Encounter"),
    {"STAY-TRIAGE-MAX", ST, "2026-10-15",
     "[" REMOVE(CP "/period/end") "," REPL(CP "/status", "\"in-progress\"") "," REMOVE(
         CP "/hospitalization/dischargeDisposition") "]",
     false, "pass"},
    FAIL("STAY-TRIAGE-MAX", ST, "2026-10-16",
         "[" REMOVE(CP "/period/end") "," REPL(CP "/status", "\"in-progress\"") "," REMOVE(
             CP "/hospitalization/dischargeDisposition") "]",
         "Encounter.period"),
    PASS("STAY-ELV-HANDOVER", SE, D1),
    PASS("STAY-ELV-HANDOVER", ST, D1),
    FAIL("STAY-ELV-HANDOVER", SE, D1, "[" REMOVE("/entry/1") "]", "Encounter.hospitalization.admitSource"),
    WARN("STAY-ELV-HANDOVER", SE, D1, "[" REMOVE("/entry/1") "]", "Encounter.extension[0]"),
    FAIL("STAY-ELV-HANDOVER", SE, D1, "[" REMOVE("/entry/2") "]", "Encounter.hospitalization.dischargeDisposition"),
    FAIL("STAY-ELV-HANDOVER", ST, D1, "[" REMOVE("/entry/1") "," REMOVE(CP "/extension") "]",
         "Encounter.hospitalization.admitSource"),
    PASS("STAY-HIGH-CONTRACT", SE, D1),
    PASS("STAY-HIGH-CONTRACT", ST, D1),
    FAIL("STAY-HIGH-CONTRACT", SE, D1, "[" REMOVE("/entry/5") "]", "Encounter.serviceProvider"),
    FAIL("STAY-HIGH-CONTRACT", ST, D1, "[" REMOVE("/entry/3/resource/subType/2") "]", "Encounter.serviceProvider"),
};

static bool is_pass(const rcase *c)
{
    return !c->patch || (c->location && !strcmp(c->location, "pass"));
}

static void run_case(const rcase *c)
{
    size_t len;
    char *text = load(c->file, is_pass(c) && !c->patch ? NULL : c->patch, &len);
    rl_report rep;
    check_text(text, len, c->date, &rep);
    const rl_finding *hit = NULL;
    size_t of_rule = 0;
    for (size_t i = 0; i < rep.count; i++) {
        if (strcmp(rep.items[i].rule->id, c->rule))
            continue;
        of_rule++;
        if (!is_pass(c) && !strcmp(rep.items[i].location, c->location) && rep.items[i].error == c->error)
            hit = &rep.items[i];
    }
    if (is_pass(c)) {
        cr_expect_eq(of_rule, 0, "%s on %s (%s): expected no finding", c->rule, c->file, c->date);
    } else {
        cr_expect_not_null(hit, "%s on %s (%s) patched %s: expected %s at %s", c->rule, c->file, c->date, c->patch,
                           c->error ? "an error" : "a warning", c->location);
    }
    if (is_pass(c) ? of_rule != 0 : hit == NULL)
        dump(&rep);
    rl_report_free(&rep);
    free(text);
}

Test(rules, every_rule_passes_and_fails_at_its_location)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(&cases[i]);
}

Test(rules, every_rule_id_has_a_passing_and_a_failing_case)
{
    cr_assert_eq(pack->count, 32);
    for (size_t r = 0; r < pack->count; r++) {
        bool pass = false, fail = false;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            if (!strcmp(cases[i].rule, pack->rules[r].id)) {
                pass |= is_pass(&cases[i]);
                fail |= !is_pass(&cases[i]) && cases[i].error;
            }
        cr_expect(pass && fail, "%s: passing %d, failing %d", pack->rules[r].id, pass, fail);
    }
}

/* The bases are compliant on their dates. */
Test(rules, the_bases_are_compliant)
{
    static const char *const bases[][2] = {{GZ, D0}, {EG, D1},           {GP, D1},          {RR, D1},
                                           {SE, D1}, {SG, "2026-10-01"}, {ST, "2026-11-01"}};
    for (size_t i = 0; i < sizeof bases / sizeof *bases; i++) {
        size_t len;
        char *text = load(bases[i][0], NULL, &len);
        rl_report rep;
        check_text(text, len, bases[i][1], &rep);
        cr_expect_eq(rl_report_status(&rep), RL_COMPLIANT, "%s", bases[i][0]);
        if (rep.count)
            dump(&rep);
        rl_report_free(&rep);
        free(text);
    }
}

/* ---- the realistic GZSP set -------------------------------------------------------- */

Test(rules, the_gzsp_set_has_the_findings_its_readme_names)
{
    static const struct {
        const char *plan, *rule, *location;
    } expect[] = {
        {"cp-gzsp-huntington-1", NULL, NULL},
        {"cp-gzsp-huntington-2", "GZSP-EVAL", "CarePlan.period.start"},
        {"cp-gzsp-kwetsbaar-1", NULL, NULL},
        {"cp-gzsp-kwetsbaar-2", NULL, NULL},
        {"cp-gzsp-kwetsbaar-3", "GZSP-LOCATION", "CarePlan.activity[0].detail.location"},
        {"cp-gzsp-lgnah-1", "GZSP-LEAD", "CarePlan.careTeam[0].resolve().participant[0].member"},
        {"cp-gzsp-lgnah-2", "GZSP-WLZ", "CarePlan.subject"},
        {"cp-gzsp-sglvg-1", NULL, NULL},
        {"cp-gzsp-sglvg-2", NULL, NULL},
    };
    const char *forms[] = {"gzsp-kwetsbare-patienten", "gzsp-lg-nah", "gzsp-huntington", "gzsp-sglvg"};
    bool seen[4] = {0};
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) {
        char file[128];
        snprintf(file, sizeof file, "gzsp-set/%s.json", expect[i].plan);
        size_t len;
        char *text = load(file, NULL, &len);
        for (size_t f = 0; f < 4; f++)
            seen[f] |= strstr(text, forms[f]) != NULL;
        rl_report rep;
        check_text(text, len, "2026-02-01", &rep);
        if (!expect[i].rule) {
            cr_expect_eq(rep.count, 0, "%s: expected compliant", expect[i].plan);
        } else {
            cr_expect_eq(rl_report_status(&rep), RL_NON_COMPLIANT, "%s", expect[i].plan);
            bool hit = false;
            for (size_t k = 0; k < rep.count; k++)
                hit |= !strcmp(rep.items[k].rule->id, expect[i].rule) &&
                       !strcmp(rep.items[k].location, expect[i].location);
            cr_expect(hit, "%s: expected %s at %s", expect[i].plan, expect[i].rule, expect[i].location);
            for (size_t k = 0; k < rep.count; k++)
                cr_expect_str_eq(rep.items[k].rule->id, expect[i].rule, "%s: only %s", expect[i].plan, expect[i].rule);
        }
        if (rep.count && !expect[i].rule)
            dump(&rep);
        rl_report_free(&rep);
        free(text);
    }
    for (size_t f = 0; f < 4; f++)
        cr_expect(seen[f], "the set has a plan of form %s", forms[f]);
}

/* ---- missing context: warnings, never silence --------------------------------------- */

Test(rules, a_plan_without_its_context_needs_review)
{
    size_t len;
    char *text = files_read(TESTS_DIR "/../ig/fixtures/gzsp/CarePlan-cp-gzsp-kwetsbaar-1.json", &len);
    cr_assert_not_null(text);
    rl_report rep;
    check_text(text, len, D0, &rep);
    cr_expect_eq(rl_report_status(&rep), RL_NEEDS_REVIEW);
    const char *undecided[] = {"GZSP-LOCATION", "GZSP-MULTI", "GZSP-LEAD", "GZSP-COTREAT"};
    for (size_t u = 0; u < 4; u++) {
        bool hit = false;
        for (size_t k = 0; k < rep.count; k++)
            hit |= !strcmp(rep.items[k].rule->id, undecided[u]) && !rep.items[k].error;
        cr_expect(hit, "%s: a warning when its context is missing", undecided[u]);
    }
    rl_report_free(&rep);
    free(text);
}

/* ---- the report ------------------------------------------------------------------------- */

Test(rules, the_report_is_valid_fhir_in_the_guides_shape)
{
    size_t len;
    char *text = load(GZ, "[" REPL(CP "/activity/1/detail/location/reference", "\"Location/loc-gzsp-3\"") "]", &len);
    rl_report rep;
    check_text(text, len, "2026-03-02", &rep);
    json_object *p = rl_report_parameters(&rep);
    const char *json = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
    char *copy = strdup(json);
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options o = {.profiles = reg};
    cr_expect_eq(fv_validate_buffer(copy, strlen(copy), &o, &issues), 0, "%s",
                 issues.count ? issues.items[0].message : "");
    cr_expect_not_null(strstr(json, "{\"name\":\"status\",\"valueCode\":\"non-compliant\"}"), "%s", json);
    cr_expect_not_null(strstr(json, "{\"name\":\"rulePack\",\"valueString\":\"2026.1.0\"}"), "%s", json);
    cr_expect_not_null(strstr(json, "{\"name\":\"checked\",\"valueDate\":\"2026-03-02\"}"), "%s", json);
    cr_expect_not_null(strstr(json, "\"reference\":\"CarePlan\\/cp-gzsp-kwetsbaar-1\""), "%s", json);
    cr_expect_not_null(
        strstr(json, "{\"system\":\"https:\\/\\/fhirgw.nl\\/fhir\\/CodeSystem\\/rule\",\"code\":\"GZSP-EVAL\"}"), "%s",
        json);
    cr_expect_not_null(strstr(json, "\"valueString\":\"ZN §2 noot 1\""), "%s", json);
    cr_expect_not_null(strstr(json, "\"expression\":[\"CarePlan.activity[1].detail.location\"]"), "%s", json);
    cr_expect_not_null(strstr(json, "\"code\":\"business-rule\""), "%s", json);
    char *page = rl_report_text(&rep);
    cr_expect_not_null(strstr(page, "NOT COMPLIANT"), "%s", page);
    cr_expect_not_null(strstr(page, "GZSP-LOCATION (ZN §2 noot 1)"), "%s", page);
    free(page);
    oo_list_free(&issues);
    free(copy);
    json_object_put(p);
    rl_report_free(&rep);
    free(text);
}

/* ---- the pack against the guide and the seeds --------------------------------------------- */

/*
 * Each rule's sentence is the rule CodeSystem's definition of it; tests/test_ig.c checks every
 * definition of that CodeSystem word for word against the seed texts, so the pack quotes them too.
 */
Test(rules, the_pack_matches_the_rule_code_system)
{
    json_object *cs = json_object_from_file(IG "terminology/CodeSystem-rule.json"), *concepts;
    cr_assert_not_null(cs);
    cr_assert(json_object_object_get_ex(cs, "concept", &concepts));
    cr_expect_eq(json_object_array_length(concepts), pack->count);
    for (size_t i = 0; i < json_object_array_length(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i), *v;
        json_object_object_get_ex(c, "code", &v);
        const rl_rule *r = rl_pack_find(pack, json_object_get_string(v));
        cr_assert_not_null(r, "%s is not in the pack", json_object_get_string(v));
        json_object_object_get_ex(c, "definition", &v);
        cr_expect_str_eq(r->sentence, json_object_get_string(v), "%s", r->id);
        json_object *props;
        json_object_object_get_ex(c, "property", &props);
        for (size_t k = 0; k < json_object_array_length(props); k++) {
            json_object *p = json_object_array_get_idx(props, k), *code, *val;
            json_object_object_get_ex(p, "code", &code);
            if (!strcmp(json_object_get_string(code), "source") && json_object_object_get_ex(p, "valueString", &val))
                cr_expect_str_eq(r->source, json_object_get_string(val), "%s", r->id);
            if (!strcmp(json_object_get_string(code), "severity") && json_object_object_get_ex(p, "valueCode", &val))
                cr_expect_str_eq(r->error ? "error" : "warning", json_object_get_string(val), "%s", r->id);
        }
    }
    json_object_put(cs);
}

/* Every requirement item a provider attests (subject organization) is demanded by the rules it serves. */
Test(rules, the_pack_demands_every_attested_requirement_item)
{
    json_object *cs = json_object_from_file(IG "terminology/CodeSystem-requirement.json"), *concepts;
    cr_assert_not_null(cs);
    cr_assert(json_object_object_get_ex(cs, "concept", &concepts));
    for (size_t i = 0; i < json_object_array_length(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i), *v, *props;
        json_object_object_get_ex(c, "code", &v);
        const char *code = json_object_get_string(v);
        json_object_object_get_ex(c, "property", &props);
        bool organization = false;
        for (size_t k = 0; k < json_object_array_length(props); k++) {
            json_object *p = json_object_array_get_idx(props, k), *pc, *pv;
            json_object_object_get_ex(p, "code", &pc);
            organization |= !strcmp(json_object_get_string(pc), "subject") &&
                            json_object_object_get_ex(p, "valueCode", &pv) &&
                            !strcmp(json_object_get_string(pv), "organization");
        }
        for (size_t k = 0; organization && k < json_object_array_length(props); k++) {
            json_object *p = json_object_array_get_idx(props, k), *pc, *pv;
            json_object_object_get_ex(p, "code", &pc);
            if (strcmp(json_object_get_string(pc), "rule") || !json_object_object_get_ex(p, "valueCode", &pv))
                continue;
            const rl_rule *r = rl_pack_find(pack, json_object_get_string(pv));
            cr_assert_not_null(r);
            if (strcmp(r->subject, "Organization"))
                continue; /* an item of a stay rule, attested for the provider rule beside it */
            if (!strncmp(code, "grz-volume-", 11))
                continue; /* the volumes are reported in the grz-volume extension: GRZ-VOLUME's invariant */
            bool demanded = false;
            for (size_t g = 0; g < r->attest_count; g++)
                for (size_t d = 0; d < r->attest[g].count; d++) {
                    const char *item = r->attest[g].items[d], *at = strstr(item, code);
                    size_t n = strlen(code);
                    demanded |= at && (at == item || at[-1] == '|' || at[-1] == '+') &&
                                (at[n] == '\0' || at[n] == '|' || at[n] == '+');
                }
            cr_expect(demanded, "%s: requirement %s is not demanded", r->id, code);
        }
    }
    json_object_put(cs);
}
