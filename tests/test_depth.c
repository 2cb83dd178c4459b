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
#include "gateway/util/files.h"

#define DEPTH_DIR TESTS_DIR "/depth"
#define MAX_KINDS 16

static const char *field(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static bool matches(const oo_issue *is, json_object *want)
{
    const char *sev = field(want, "severity"), *code = field(want, "code"), *expr = field(want, "expression");
    const char *part = field(want, "message");
    if (strcmp(oo_severity_name(is->severity), sev) || strcmp(is->code, code))
        return false;
    if (!is->expression || strcmp(expr, is->expression))
        return false;
    return !part || strstr(is->message, part);
}

/* True when the file draws exactly what the manifest says; logs why not. */
static bool check_entry(json_object *entry)
{
    const char *file = field(entry, "file");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", DEPTH_DIR, file);
    size_t len;
    char *buf = files_read(path, &len);
    if (!buf) {
        cr_log_error("%s: cannot read", file);
        return false;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_validate_buffer(buf, len, NULL, &issues);
    free(buf);
    json_object *wanted = json_object_object_get(entry, "issues");
    size_t expected_errors = 0;
    bool ok = true;
    for (size_t w = 0; w < json_object_array_length(wanted); w++) {
        json_object *want = json_object_array_get_idx(wanted, w);
        const char *sev = field(want, "severity");
        expected_errors += !strcmp(sev, "error") || !strcmp(sev, "fatal");
        bool found = false;
        for (size_t i = 0; i < issues.count && !found; i++)
            found = matches(&issues.items[i], want);
        if (!found) {
            cr_log_error("%s: expected %s %s at %s (\"%s\") — not reported", file, sev, field(want, "code"),
                         field(want, "expression"), field(want, "message") ? field(want, "message") : "");
            ok = false;
        }
    }
    if (issues.errors != expected_errors) {
        cr_log_error("%s: expected %zu errors, got %zu", file, expected_errors, issues.errors);
        ok = false;
    }
    for (size_t i = 0; !ok && i < issues.count; i++) {
        char line[2048];
        oo_issue_format(&issues.items[i], line, sizeof line);
        cr_log_error("    got %s", line);
    }
    oo_list_free(&issues);
    return ok;
}

Test(depth, corpus)
{
    json_object *manifest = json_object_from_file(DEPTH_DIR "/manifest.json");
    cr_assert_not_null(manifest, "cannot read tests/depth/manifest.json");
    const char *kinds[MAX_KINDS];
    size_t caught[MAX_KINDS] = {0}, total[MAX_KINDS] = {0}, nkinds = 0, all = 0;
    size_t count = json_object_array_length(manifest);
    for (size_t i = 0; i < count; i++) {
        json_object *entry = json_object_array_get_idx(manifest, i);
        const char *kind = field(entry, "kind");
        size_t k = 0;
        while (k < nkinds && strcmp(kinds[k], kind))
            k++;
        cr_assert_lt(k, MAX_KINDS);
        if (k == nkinds)
            kinds[nkinds++] = kind;
        total[k]++;
        bool ok = check_entry(entry);
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
