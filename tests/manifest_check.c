/*
 * tests/manifest_check.c — see manifest_check.h.
 */
#include "tests/manifest_check.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"
#include "gateway/util/files.h"

const char *mc_field(json_object *o, const char *key)
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
    const char *expr = mc_field(want, "expression"), *part = mc_field(want, "message");
    if (strcmp(oo_severity_name(is->severity), mc_field(want, "severity")) || strcmp(is->code, mc_field(want, "code")))
        return false;
    if (expr && (!is->expression || strcmp(expr, is->expression)))
        return false;
    if (part && !strstr(is->message, part))
        return false;
    int line = int_field(want, "line"), column = int_field(want, "column");
    return (!line || (unsigned)line == is->line) && (!column || (unsigned)column == is->column);
}

/* Whether a wanted issue counts as an error of the file (the others may come and go beside it). */
static bool is_error(json_object *want)
{
    const char *sev = mc_field(want, "severity");
    return !strcmp(sev, "error") || !strcmp(sev, "fatal");
}

/* Every wanted issue was reported (logs the ones that were not); the errors wanted into *errors. */
static bool all_reported(const char *file, const oo_list *issues, json_object *wanted, size_t *errors)
{
    bool ok = true;
    *errors = 0;
    for (size_t w = 0; w < json_object_array_length(wanted); w++) {
        json_object *want = json_object_array_get_idx(wanted, w);
        *errors += is_error(want);
        bool found = false;
        for (size_t i = 0; i < issues->count && !found; i++)
            found = matches(&issues->items[i], want);
        if (!found) {
            const char *expr = mc_field(want, "expression"), *part = mc_field(want, "message");
            cr_log_error("%s: expected %s %s at %s (\"%s\", line %d, col %d) — not reported", file,
                         mc_field(want, "severity"), mc_field(want, "code"), expr ? expr : "-", part ? part : "",
                         int_field(want, "line"), int_field(want, "column"));
            ok = false;
        }
    }
    return ok;
}

bool mc_check_entry(const char *dir, json_object *entry)
{
    const char *file = mc_field(entry, "file");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
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
    size_t expected_errors;
    bool ok = all_reported(file, &issues, json_object_object_get(entry, "issues"), &expected_errors);
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
