/*
 * tests/test_examples.c — every JSON file of the official FHIR R4 package
 * (conformance resources and instance examples, ~5,300 files) validates
 * without errors, except the short list in official-examples-excluded.tsv,
 * each of which must still fail (the list cannot silently go stale).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"
#include "gateway/util/files.h"

#define MAX_EXCLUDED 64

static char *excluded[MAX_EXCLUDED];
static size_t excluded_count;

static void load_exclusions(void)
{
    FILE *f = fopen(TESTS_DIR "/official-examples-excluded.tsv", "r");
    cr_assert_not_null(f, "cannot open official-examples-excluded.tsv");
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *tab = strchr(line, '\t');
        cr_assert_not_null(tab, "exclusion line without a reason: %s", line);
        *tab = '\0';
        cr_assert_lt(excluded_count, MAX_EXCLUDED);
        excluded[excluded_count++] = strdup(line);
    }
    fclose(f);
}

static bool is_excluded(const char *name)
{
    for (size_t i = 0; i < excluded_count; i++)
        if (!strcmp(excluded[i], name))
            return true;
    return false;
}

Test(examples, official_package_validates)
{
    load_exclusions();
    DIR *d = opendir(FHIR_PACKAGE_DIR);
    cr_assert_not_null(d, "cannot open the FHIR package at %s", FHIR_PACKAGE_DIR);
    size_t validated = 0, failed = 0, excluded_failing = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        size_t n = strlen(ent->d_name);
        if (n < 6 || strcmp(ent->d_name + n - 5, ".json") || !strcmp(ent->d_name, "package.json"))
            continue; /* package.json is npm metadata, not a FHIR resource */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", FHIR_PACKAGE_DIR, ent->d_name);
        size_t len;
        char *buf = files_read(path, &len);
        cr_assert_not_null(buf, "cannot read %s", path);
        oo_list issues;
        oo_list_init(&issues, 5);
        size_t errors = fv_validate_buffer(buf, len, NULL, &issues);
        free(buf);
        validated++;
        if (is_excluded(ent->d_name)) {
            cr_expect_gt(errors, 0, "%s is listed as invalid but validates clean: drop it from the list", ent->d_name);
            excluded_failing += errors > 0;
        } else if (errors) {
            failed++;
            char first[2048];
            oo_issue_format(&issues.items[0], first, sizeof first);
            cr_log_error("%s: %zu errors; first: %s", ent->d_name, errors, first);
        }
        oo_list_free(&issues);
    }
    closedir(d);
    cr_log_info("validated %zu official files: %zu excluded as really invalid, %zu unexpected failures", validated,
                excluded_failing, failed);
    /* a missing or shrunken package must fail, not pass with less validated */
    cr_expect_geq(validated, 5306, "the package has 5,306 files to validate; only %zu were found", validated);
    cr_expect_eq(excluded_failing, excluded_count, "every excluded file must exist and fail");
    cr_expect_eq(failed, 0, "%zu official files failed validation", failed);
    for (size_t i = 0; i < excluded_count; i++)
        free(excluded[i]);
}
