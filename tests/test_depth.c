/*
 * tests/test_depth.c — the depth corpus (tests/depth/): mutations of
 * official R4 examples with one defect each, of the kinds the validator
 * once let through (issue #14): narrative, strings and markdown,
 * extensions by definition, Bundles, references and attachments.
 *
 * For every entry of tests/depth/manifest.json the validator must report
 * each expected issue (severity, code, FHIRPath expression, and a part of
 * the message where given) and, beside them, no other error. Warnings are
 * listed when the reference reports the defect as a warning. The test
 * prints, per kind, how many files are caught.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"
#include "tests/manifest_check.h"

#define DEPTH_DIR TESTS_DIR "/depth"
#define MAX_KINDS 16

Test(depth, corpus)
{
    json_object *manifest = json_object_from_file(DEPTH_DIR "/manifest.json");
    cr_assert_not_null(manifest, "cannot read tests/depth/manifest.json");
    const char *kinds[MAX_KINDS];
    size_t caught[MAX_KINDS] = {0}, total[MAX_KINDS] = {0}, nkinds = 0, all = 0;
    size_t count = json_object_array_length(manifest);
    for (size_t i = 0; i < count; i++) {
        json_object *entry = json_object_array_get_idx(manifest, i);
        const char *kind = mc_field(entry, "kind");
        size_t k = 0;
        while (k < nkinds && strcmp(kinds[k], kind))
            k++;
        cr_assert_lt(k, MAX_KINDS);
        if (k == nkinds)
            kinds[nkinds++] = kind;
        total[k]++;
        bool ok = mc_check_entry(DEPTH_DIR, entry);
        caught[k] += ok;
        all += ok;
    }
    for (size_t k = 0; k < nkinds; k++)
        fprintf(stderr, "depth corpus: %-12s %3zu of %3zu caught as expected\n", kinds[k], caught[k], total[k]);
    fprintf(stderr, "depth corpus: %-12s %3zu of %3zu\n", "all", all, count);
    cr_expect_eq(all, count, "%zu of %zu depth cases did not behave as expected", count - all, count);
    json_object_put(manifest);
}

/* With security checks on, what the reference only hints at or warns about in strings and markdown is an error. */
Test(depth, security_checks_make_markup_in_strings_errors)
{
    char patient[] = "{\"resourceType\": \"Patient\", \"name\": [{\"text\": \"<b onclick=\\\"x()\\\">Jim</b>\"}]}";
    oo_list issues;
    oo_list_init(&issues, 0);
    cr_expect_eq(fv_validate_buffer(patient, strlen(patient), NULL, &issues), 0);
    oo_list_free(&issues);
    char again[] = "{\"resourceType\": \"Patient\", \"name\": [{\"text\": \"<b onclick=\\\"x()\\\">Jim</b>\"}]}";
    fv_options opts = {0};
    opts.security_checks = true;
    oo_list_init(&issues, 0);
    cr_expect_eq(fv_validate_buffer(again, strlen(again), &opts, &issues), 1);
    cr_expect(issues.count && !strcmp(issues.items[0].expression, "Patient.name[0].text"));
    oo_list_free(&issues);
}
