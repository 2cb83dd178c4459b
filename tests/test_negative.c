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
#include "gateway/util/files.h"

#define NEGATIVE_DIR TESTS_DIR "/negative"

static const char *field(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static int int_field(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : 0;
}

static bool matches(const oo_issue *is, json_object *want)
{
    const char *sev = field(want, "severity"), *code = field(want, "code"), *expr = field(want, "expression");
    if (strcmp(oo_severity_name(is->severity), sev) || strcmp(is->code, code))
        return false;
    if (expr && (!is->expression || strcmp(expr, is->expression)))
        return false;
    int line = int_field(want, "line"), column = int_field(want, "column");
    if (line && (unsigned)line != is->line)
        return false;
    if (column && (unsigned)column != is->column)
        return false;
    return true;
}

/* Returns true when the file behaves as the manifest says; logs why not. */
static bool check_entry(json_object *entry)
{
    const char *file = field(entry, "file");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", NEGATIVE_DIR, file);
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
    size_t expected_errors = json_object_array_length(wanted);
    bool ok = true;
    for (size_t w = 0; w < expected_errors; w++) {
        json_object *want = json_object_array_get_idx(wanted, w);
        bool found = false;
        for (size_t i = 0; i < issues.count && !found; i++)
            found = matches(&issues.items[i], want);
        if (!found) {
            cr_log_error("%s: expected %s %s at %s (line %d, col %d) — not reported", file, field(want, "severity"),
                         field(want, "code"), field(want, "expression") ? field(want, "expression") : "-",
                         int_field(want, "line"), int_field(want, "column"));
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

Test(negative, corpus)
{
    json_object *manifest = json_object_from_file(NEGATIVE_DIR "/manifest.json");
    cr_assert_not_null(manifest, "cannot read tests/negative/manifest.json");
    size_t count = json_object_array_length(manifest), passed = 0;
    json_object *checks = json_object_new_object(); /* files per check, printed for the record */
    for (size_t i = 0; i < count; i++) {
        json_object *entry = json_object_array_get_idx(manifest, i);
        passed += check_entry(entry);
        const char *check = field(entry, "check");
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
