/*
 * tests/test_subset.c — _summary and _elements (fhir/subset.h): which members
 * each keeps, the SUBSETTED tag, backbones cut inside, empty parts left out,
 * and every subset still valid R4 (core) by the project's own validator.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/subset.h"
#include "tests/json_compare.h"
#include "fhir/validate.h"

#define PATIENT                                                                                                       \
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"meta\":{\"versionId\":\"2\",\"tag\":[{\"system\":\"http://x\","    \
    "\"code\":\"a\"}]},\"text\":{\"status\":\"generated\",\"div\":\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">" \
    "Jan</div>\"},\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999911120\"}],"    \
    "\"name\":[{\"family\":\"Jansen\"}],\"gender\":\"male\",\"birthDate\":\"1957-03-14\",\"_birthDate\":{"            \
    "\"extension\":[{\"url\":\"http://x/e\",\"valueString\":\"v\"}]},\"maritalStatus\":{\"text\":\"M\"},"             \
    "\"contact\":[{\"name\":{\"family\":\"Jansen\"}}],\"communication\":[{\"language\":{\"text\":\"nl\"},"            \
    "\"preferred\":true}],\"deceasedBoolean\":false}"

/* Observation: status and code are mandatory; component is a backbone with summary and other members. */
#define OBSERVATION                                                                                            \
    "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"text\":\"bp\"},"         \
    "\"note\":[{\"text\":\"n\"}],\"valueQuantity\":{\"value\":1},\"component\":[{\"code\":{\"text\":\"sys\"}," \
    "\"valueQuantity\":{\"value\":120},\"interpretation\":[{\"text\":\"high\"}]}]}"

/* The subset of json by (summary, elements), parsed; NULL when fsub_write refused. */
static json_object *subset(const char *json, const char *summary, const char *elements)
{
    fsub_spec spec;
    char err[160];
    cr_assert(fsub_parse(summary, elements, &spec, err, sizeof err), "%s", err);
    fj_buf out = {0};
    if (!fsub_write(fs_r4(), &spec, json, strlen(json), &out)) {
        fj_buf_free(&out);
        return NULL;
    }
    /* every subset is still valid R4 */
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options opts = {0};
    char *copy = strdup(out.data);
    size_t errors = fv_validate_buffer(copy, out.len, &opts, &issues);
    cr_expect_eq(errors, 0, "%s: %s", out.data, issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
    free(copy);
    json_object *o = json_tokener_parse(out.data);
    cr_assert_not_null(o, "not JSON: %s", out.data);
    fj_buf_free(&out);
    return o;
}

/* The object's keys, sorted, comma-separated. */
static char *keys_of(json_object *o)
{
    static char buf[512];
    const char *names[64];
    size_t n = 0;
    json_object_object_foreach(o, k, v)
    {
        (void)v;
        names[n++] = k;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "," : "", names[i]);
    return buf;
}

Test(subset, summary_true_keeps_the_summary_elements)
{
    json_object *o = subset(PATIENT, "true", NULL);
    cr_expect_str_eq(keys_of(o), "_birthDate,birthDate,deceasedBoolean,gender,id,identifier,meta,name,resourceType");
    cr_expect(tj_has_tag(o, "SUBSETTED"));
    json_object *meta = json_object_object_get(o, "meta");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(meta, "versionId")), "2");
    cr_expect_eq(json_object_array_length(json_object_object_get(meta, "tag")), 2, "the tag it had, and SUBSETTED");
    json_object_put(o);
}

Test(subset, summary_true_cuts_backbones_inside)
{
    json_object *o = subset(OBSERVATION, "true", NULL);
    cr_expect_str_eq(keys_of(o), "code,component,id,meta,resourceType,status,valueQuantity");
    json_object *c = json_object_array_get_idx(json_object_object_get(o, "component"), 0);
    cr_expect_str_eq(keys_of(c), "code,valueQuantity", "interpretation is not a summary element");
    json_object_put(o);
}

Test(subset, text_data_and_false)
{
    json_object *o = subset(PATIENT, "text", NULL);
    cr_expect_str_eq(keys_of(o), "id,meta,resourceType,text");
    json_object_put(o);
    o = subset(OBSERVATION, "text", NULL);
    cr_expect_str_eq(keys_of(o), "code,id,meta,resourceType,status", "mandatory elements stay");
    json_object_put(o);
    o = subset(PATIENT, "data", NULL);
    cr_expect_null(json_object_object_get(o, "text"));
    cr_expect_not_null(json_object_object_get(o, "contact"));
    cr_expect(tj_has_tag(o, "SUBSETTED"));
    json_object_put(o);
    fsub_spec spec;
    char err[160];
    cr_expect(fsub_parse("false", NULL, &spec, err, sizeof err) && !fsub_cuts(&spec));
    cr_expect(fsub_parse("count", NULL, &spec, err, sizeof err) && !fsub_cuts(&spec));
    cr_expect(fsub_parse(NULL, NULL, &spec, err, sizeof err) && !fsub_cuts(&spec));
}

Test(subset, elements_keeps_what_is_named_and_what_is_mandatory)
{
    json_object *o = subset(PATIENT, NULL, "name, birthDate");
    cr_expect_str_eq(keys_of(o), "_birthDate,birthDate,id,meta,name,resourceType");
    cr_expect(tj_has_tag(o, "SUBSETTED"));
    json_object_put(o);
    o = subset(OBSERVATION, NULL, "Observation.value");
    cr_expect_str_eq(keys_of(o), "code,id,meta,resourceType,status,valueQuantity", "a choice by its stem");
    json_object_put(o);
    /* a resource without meta gets one, with the tag alone */
    o = subset("{\"resourceType\":\"Patient\",\"gender\":\"male\",\"active\":true}", NULL, "active");
    cr_expect_str_eq(keys_of(o), "active,meta,resourceType");
    cr_expect_str_eq(keys_of(json_object_object_get(o, "meta")), "tag");
    json_object_put(o);
}

Test(subset, bad_parameters_are_refused_with_a_reason)
{
    fsub_spec spec;
    char err[160];
    cr_expect_not(fsub_parse("yes", NULL, &spec, err, sizeof err));
    cr_expect(strstr(err, "_summary must be"), "%s", err);
    cr_expect_not(fsub_parse("true", "name", &spec, err, sizeof err));
    cr_expect(strstr(err, "cannot be combined"), "%s", err);
    cr_expect_not(fsub_parse(NULL, "name,<script>", &spec, err, sizeof err));
    cr_expect(strstr(err, "not the name of an element"), "%s", err);
    cr_expect_not(fsub_parse(NULL, " , ", &spec, err, sizeof err));
    char many[400] = "a0";
    for (int i = 1; i <= FSUB_NAMES_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), ",a%d", i);
    cr_expect_not(fsub_parse(NULL, many, &spec, err, sizeof err));
    cr_expect(strstr(err, "more than"), "%s", err);
    /* not a resource the schema knows: the caller serves it whole */
    cr_assert(fsub_parse("true", NULL, &spec, err, sizeof err));
    fj_buf out = {0};
    cr_expect_not(fsub_write(fs_r4(), &spec, "{\"resourceType\":\"HumanName\"}", 28, &out));
    cr_expect_not(fsub_write(fs_r4(), &spec, "[1]", 3, &out));
    cr_expect_not(fsub_write(fs_r4(), &spec, "{", 1, &out));
    cr_expect_eq(out.len, 0);
    fj_buf_free(&out);
}
