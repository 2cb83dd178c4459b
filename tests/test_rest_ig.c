/*
 * tests/test_rest_ig.c — the server enforces the implementation guide it
 * loads: a provider's GZSP care plan that conforms is stored; one that
 * breaks a structural constraint of the guide is refused with 422 at its
 * location; and one that breaks a catalogue rule the guide encodes as an
 * invariant is stored (a contracting rule broken is not invalid FHIR,
 * ig/README.md), with $validate naming the rule id as a warning at the
 * FHIRPath location of the fault, the same answer `fhirgw validate
 * --conformance` gives (tests/test_ig.c checks that one).
 * The guide is the package the build made (IG_PACKAGE_DIR), loaded the way
 * `serve` loads it (conf_load).
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "rest_harness.h"

#define NEGATIVE_DIR IG_SOURCE_DIR "/negative/gzsp-careplan"

static void setup(void)
{
    rh_options opt = {.keep_gzsp = true, .allow_dangling = true, .profiles = rh_guide()};
    rh_setup_with(&opt); /* the directory is not needed here */
}

TestSuite(rest_ig, .init = setup, .fini = rh_teardown, .timeout = 120);

/* A file's resource without its id, ready to POST; the caller frees it. */
static char *postable(const char *path)
{
    size_t len;
    char *text = files_read(path, &len);
    cr_assert_not_null(text, "%s", path);
    json_object *o = json_tokener_parse(text);
    free(text);
    cr_assert_not_null(o, "%s", path);
    json_object_object_del(o, "id");
    char *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return body;
}

/* Does the OperationOutcome have an issue of `severity` at `expression` whose diagnostics contain `needle`? */
static bool has_issue(json_object *oo, const char *severity, const char *expression, const char *needle)
{
    json_object *issues = json_object_object_get(oo, "issue");
    for (size_t i = 0; i < json_object_array_length(issues); i++) {
        json_object *issue = json_object_array_get_idx(issues, i);
        json_object *exprs = json_object_object_get(issue, "expression");
        const char *diag = json_object_get_string(json_object_object_get(issue, "diagnostics"));
        if (strcmp(json_object_get_string(json_object_object_get(issue, "severity")), severity) || !diag ||
            !strstr(diag, needle))
            continue;
        for (size_t k = 0; k < json_object_array_length(exprs); k++)
            if (!strcmp(json_object_get_string(json_object_array_get_idx(exprs, k)), expression))
                return true;
    }
    return false;
}

Test(rest_ig, a_conforming_gzsp_plan_is_stored)
{
    char *body = postable(IG_SOURCE_DIR "/examples/CarePlan-gzsp-careplan-example.json");
    rh_response r = rh_request("gzsp", "POST", "/CarePlan", body, NULL);
    cr_expect_eq(r.status, 201, "%.*s", (int)r.len, r.body);
    rh_response_free(&r);
    free(body);
}

/* Each row of the CarePlan profile's negative cases: is its rule a catalogue rule (GZSP-...)? */
typedef void (*negative_fn)(const char *file, const char *rule, const char *expression, const char *needle,
                            size_t *checked);

static void each_negative(bool catalogue, negative_fn fn, size_t *checked)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/expect.tsv", NEGATIVE_DIR);
    FILE *tsv = fopen(path, "r");
    cr_assert_not_null(tsv, "%s", path);
    char line[2048];
    while (fgets(line, sizeof line, tsv)) {
        line[strcspn(line, "\r\n")] = 0;
        char *file = strtok(line, "\t"), *rule = strtok(NULL, "\t"), *expression = strtok(NULL, "\t");
        char *needle = strtok(NULL, "\t");
        if (!file || !rule || !expression || !needle || !strcmp(file, "file"))
            continue;
        if (!strncmp(rule, "GZSP-", 5) == catalogue)
            fn(file, rule, expression, needle, checked);
    }
    fclose(tsv);
}

static void stored_and_named_by_validate(const char *file, const char *rule, const char *expression, const char *needle,
                                         size_t *checked)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NEGATIVE_DIR, file);
    char *body = postable(path);
    rh_response r = rh_request("gzsp", "POST", "/CarePlan", body, NULL);
    cr_expect_eq(r.status, 201, "%s (%s): stored: %.*s", file, rule, (int)r.len, r.body);
    rh_response_free(&r);
    r = rh_request("gzsp", "POST", "/CarePlan/$validate", body, NULL);
    cr_expect_eq(r.status, 200, "%s: $validate: %ld", file, r.status);
    json_object *oo = rh_json(&r);
    cr_expect(has_issue(oo, "warning", expression, needle), "%s: a warning at %s naming %s: %.*s", file, expression,
              needle, (int)r.len, r.body);
    json_object_put(oo);
    rh_response_free(&r);
    free(body);
    (*checked)++;
}

Test(rest_ig, a_plan_breaking_a_catalogue_rule_is_stored_and_validate_names_the_rule)
{
    size_t checked = 0;
    each_negative(true, stored_and_named_by_validate, &checked);
    cr_expect_geq(checked, 9, "every GZSP rule the CarePlan profile encodes has a negative case (%zu)", checked);
}

static void refused_at_its_location(const char *file, const char *rule, const char *expression, const char *needle,
                                    size_t *checked)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NEGATIVE_DIR, file);
    char *body = postable(path);
    rh_response r = rh_request("gzsp", "POST", "/CarePlan", body, NULL);
    cr_expect_eq(r.status, 422, "%s (%s): %ld", file, rule, r.status);
    json_object *oo = rh_json(&r);
    cr_expect(has_issue(oo, "error", expression, needle), "%s: an error at %s naming %s: %.*s", file, expression,
              needle, (int)r.len, r.body);
    json_object_put(oo);
    rh_response_free(&r);
    free(body);
    (*checked)++;
}

Test(rest_ig, a_plan_breaking_a_structural_constraint_is_refused_at_its_location)
{
    size_t checked = 0;
    each_negative(false, refused_at_its_location, &checked);
    cr_expect_geq(checked, 1, "the CarePlan profile has structural negative cases (%zu)", checked);
}
