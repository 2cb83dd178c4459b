/*
 * tests/test_negative.c — the negative corpus (tests/negative/): files with
 * one defect each, written by the project from official examples. For every
 * entry of tests/negative/manifest.json the validator must report each
 * expected issue (severity, code, FHIRPath expression, and line/column
 * where given) and no other error.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"
#include "tests/manifest_check.h"

#define NEGATIVE_DIR TESTS_DIR "/negative"

Test(negative, corpus)
{
    json_object *manifest = json_object_from_file(NEGATIVE_DIR "/manifest.json");
    cr_assert_not_null(manifest, "cannot read tests/negative/manifest.json");
    size_t count = json_object_array_length(manifest), passed = 0;
    json_object *checks = json_object_new_object(); /* files per check, printed for the record */
    for (size_t i = 0; i < count; i++) {
        json_object *entry = json_object_array_get_idx(manifest, i);
        passed += mc_check_entry(NEGATIVE_DIR, entry);
        const char *check = mc_field(entry, "check");
        json_object *n = json_object_object_get(checks, check);
        json_object_object_add(checks, check, json_object_new_int(n ? json_object_get_int(n) + 1 : 1));
    }
    cr_log_info("negative corpus: %zu/%zu files behave as expected; per check: %s", passed, count,
                json_object_to_json_string_ext(checks, JSON_C_TO_STRING_PLAIN));
    cr_expect_geq(count, 333, "the corpus holds 333 files; only %zu were found", count);
    cr_expect_eq(passed, count, "%zu of %zu negative files did not behave as expected", count - passed, count);
    json_object_put(checks);
    json_object_put(manifest);
}
