/*
 * tests/test_capability.c — the generated CapabilityStatement is valid FHIR
 * and lists what the server implements.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"
#include "gateway/rest/capability.h"
#include "gateway/rest/operations.h"

static bool no_composite(fs_search_kind k)
{
    return k != FS_SEARCH_COMPOSITE && k != FS_SEARCH_SPECIAL;
}

static json_object *find_resource(json_object *cs, const char *type)
{
    json_object *rest = json_object_array_get_idx(json_object_object_get(cs, "rest"), 0);
    json_object *resources = json_object_object_get(rest, "resource");
    for (size_t i = 0; i < json_object_array_length(resources); i++) {
        json_object *r = json_object_array_get_idx(resources, i);
        if (!strcmp(json_object_get_string(json_object_object_get(r, "type")), type))
            return r;
    }
    return NULL;
}

static bool has_search_param(json_object *res, const char *name)
{
    json_object *params = json_object_object_get(res, "searchParam");
    for (size_t i = 0; i < json_object_array_length(params); i++)
        if (!strcmp(json_object_get_string(json_object_object_get(json_object_array_get_idx(params, i), "name")), name))
            return true;
    return false;
}

static bool has_string(json_object *res, const char *key, const char *value)
{
    json_object *list = json_object_object_get(res, key);
    for (size_t i = 0; list && i < json_object_array_length(list); i++)
        if (!strcmp(json_object_get_string(json_object_array_get_idx(list, i)), value))
            return true;
    return false;
}

static const char *param_documentation(json_object *res, const char *name)
{
    json_object *params = json_object_object_get(res, "searchParam");
    for (size_t i = 0; i < json_object_array_length(params); i++) {
        json_object *p = json_object_array_get_idx(params, i);
        if (!strcmp(json_object_get_string(json_object_object_get(p, "name")), name))
            return json_object_get_string(json_object_object_get(p, "documentation"));
    }
    return NULL;
}

Test(capability, valid_and_complete)
{
    const char *urls[] = {"http://example.org/p"}, *types[] = {"CarePlan"};
    cap_info info =
        {"0.1.0", "https://127.0.0.1:8443", "2026-11-23T10:00:00Z", no_composite, urls, types, 1, false, NULL, 0};
    cap_row *rows = rest_capability_rows(&info.row_count); /* the REST layer's table, as the server builds it */
    cr_assert_not_null(rows);
    info.rows = rows;
    json_object *cs = cap_build(fs_r4(), &info);
    free(rows);
    const char *text = json_object_to_json_string_ext(cs, JSON_C_TO_STRING_PLAIN);
    char *copy = strdup(text);
    oo_list issues;
    oo_list_init(&issues, 0);
    size_t errors = fv_validate_buffer(copy, strlen(copy), NULL, &issues);
    for (size_t i = 0; i < issues.count && errors; i++)
        cr_log_error("%s: %s", issues.items[i].expression, issues.items[i].message);
    cr_expect_eq(errors, 0, "the CapabilityStatement must itself be valid FHIR");
    oo_list_free(&issues);
    free(copy);

    const char *required[] = {"Organization", "Patient", "Practitioner", "PractitionerRole",
                              "CareTeam",     "Goal",    "Coverage",     "CarePlan",
                              "Encounter",    "Task",    "Bundle",       "Endpoint"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        cr_expect_not_null(find_resource(cs, required[i]), "%s missing", required[i]);
    json_object *cp = find_resource(cs, "CarePlan");
    cr_assert_not_null(cp);
    cr_expect(has_search_param(cp, "status"));
    cr_expect(has_search_param(cp, "_id"));
    cr_expect(has_search_param(cp, "_lastUpdated"));
    cr_expect(has_search_param(cp, "patient"));
    cr_expect_not_null(json_object_object_get(cp, "supportedProfile"));
    json_object *obs = find_resource(cs, "Observation");
    cr_expect_not(has_search_param(obs, "code-value-quantity"), "composite parameters are not offered");
    cr_expect_null(find_resource(cs, "DomainResource"));
    /* the patch interaction, in both formats */
    json_object *task = find_resource(cs, "Task"), *codes = json_object_object_get(task, "interaction");
    bool patch = false;
    for (size_t i = 0; i < json_object_array_length(codes); i++)
        patch |= !strcmp(json_object_get_string(json_object_object_get(json_object_array_get_idx(codes, i), "code")),
                         "patch");
    cr_expect(patch, "Task lists the patch interaction");
    /* the interactions and operations are the table's, in its order */
    const char *codes_want[] = {"read",         "vread",      "update", "patch", "delete", "create", "history-instance",
                                "history-type", "search-type"};
    cr_assert_eq(json_object_array_length(codes), sizeof codes_want / sizeof *codes_want);
    for (size_t i = 0; i < sizeof codes_want / sizeof *codes_want; i++)
        cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(codes, i), "code")),
                         codes_want[i]);
    json_object *ops = json_object_object_get(task, "operation");
    cr_assert_eq(json_object_array_length(ops), 1, "only the operations implemented: $validate");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(ops, 0), "name")),
                     "validate");
    json_object *rest = json_object_array_get_idx(json_object_object_get(cs, "rest"), 0);
    json_object *system = json_object_object_get(rest, "interaction");
    const char *system_want[] = {"transaction", "batch", "history-system"};
    cr_assert_eq(json_object_array_length(system), 3);
    for (size_t i = 0; i < 3; i++)
        cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(system, i), "code")),
                         system_want[i]);
    json_object *sysops = json_object_object_get(rest, "operation");
    cr_assert_eq(json_object_array_length(sysops), 1, "the one system-level operation: $handover");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(sysops, 0), "name")),
                     "handover");
    json_object *formats = json_object_object_get(cs, "patchFormat");
    cr_assert_eq(json_object_array_length(formats), 2);
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(formats, 0)), "application/json-patch+json");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(formats, 1)), "application/fhir+json");
    /* conditional interactions as implemented (tests/test_rest.c exercises each); PUT never creates */
    cr_expect_not(json_object_get_boolean(json_object_object_get(task, "updateCreate")));
    cr_expect(json_object_get_boolean(json_object_object_get(task, "conditionalUpdate")));
    cr_expect(json_object_get_boolean(json_object_object_get(task, "conditionalCreate")));
    cr_expect_str_eq(json_object_get_string(json_object_object_get(task, "conditionalRead")), "full-support");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(task, "conditionalDelete")), "single");
    json_object *policy = json_object_object_get(task, "referencePolicy");
    cr_expect_eq(json_object_array_length(policy), 2, "enforced only when the gateway enforces it");

    /* search: includes, reverse includes, chaining and _has, as implemented */
    cr_expect(has_string(cp, "searchInclude", "CarePlan:subject"));
    cr_expect(has_string(cp, "searchInclude", "*"));
    cr_expect_not(has_string(cp, "searchInclude", "CarePlan:status"), "status is no reference");
    json_object *patient = find_resource(cs, "Patient");
    cr_expect(has_string(patient, "searchRevInclude", "Observation:patient"));
    cr_expect(has_string(patient, "searchRevInclude", "CarePlan:patient"));
    cr_expect_not(has_string(patient, "searchRevInclude", "Observation:encounter"));
    cr_expect(has_search_param(patient, "_has"));
    cr_expect_not_null(strstr(param_documentation(cp, "subject"), "name:Type.param"), "chaining is documented");
    cr_expect_null(param_documentation(cp, "status"), "only reference parameters chain");
    json_object_put(cs);
}
