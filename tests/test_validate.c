/*
 * tests/test_validate.c — the validator and schema on small in-memory
 * resources: what must pass, what must fail and where, the OperationOutcome
 * shape, limits, and the generated schema's invariants.
 * (The file-based negative corpus is tests/test_negative.c.)
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"

/* Validate a C string (copied: the parser decodes in place). */
static oo_list run_validation(const char *json)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    char *copy = strdup(json);
    fv_validate_buffer(copy, strlen(copy), NULL, &issues);
    free(copy);
    return issues;
}

/* Is there an issue with this severity, code and expression? */
static bool has_issue(const oo_list *l, oo_severity sev, const char *code, const char *expression)
{
    for (size_t i = 0; i < l->count; i++) {
        const oo_issue *is = &l->items[i];
        if (is->severity == sev && !strcmp(is->code, code) &&
            ((!expression && !is->expression) || (expression && is->expression && !strcmp(expression, is->expression))))
            return true;
    }
    return false;
}

static void dump(const oo_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        char line[2048];
        oo_issue_format(&l->items[i], line, sizeof line);
        cr_log_info("  %s", line);
    }
}

#define EXPECT_CLEAN(json)                                             \
    do {                                                               \
        oo_list l_ = run_validation(json);                             \
        if (l_.errors)                                                 \
            dump(&l_);                                                 \
        cr_expect_eq(l_.errors, 0, "expected no errors for %s", json); \
        oo_list_free(&l_);                                             \
    } while (0)

#define EXPECT_ONE(json, sev, code, expr)                                                  \
    do {                                                                                   \
        oo_list l_ = run_validation(json);                                                 \
        bool found_ = has_issue(&l_, sev, code, expr);                                     \
        if (!found_ || l_.errors != 1)                                                     \
            dump(&l_);                                                                     \
        cr_expect(found_, "expected %s at %s for %s", code, expr ? expr : "(none)", json); \
        cr_expect_eq(l_.errors, 1, "expected exactly one error for %s", json);             \
        oo_list_free(&l_);                                                                 \
    } while (0)

/* ---- schema ---- */

Test(schema, types_and_children)
{
    const fs_schema *s = fs_r4();
    cr_assert_str_eq(s->fhir_version, "4.0.1");
    cr_expect_gt(s->type_count, 200);
    const fs_type *cp = fs_type_by_name(s, "CarePlan", 8);
    cr_assert_not_null(cp);
    cr_expect_eq(cp->kind, FS_RESOURCE);
    cr_expect_null(fs_type_by_name(s, "Careplan", 8));
    const fs_type *dr = fs_type_by_name(s, "DomainResource", 14);
    cr_assert_not_null(dr);
    cr_expect(dr->is_abstract);
    const fs_type *dt = fs_type_by_name(s, "dateTime", 8);
    cr_assert_not_null(dt);
    cr_expect_eq(dt->prim, FPRIM_DATETIME);

    const fs_type *choice;
    const fs_element *status = fs_child(s, &s->elements[cp->root], "status", 6, &choice);
    cr_assert_not_null(status);
    cr_expect_str_eq(status->path, "CarePlan.status");
    cr_expect_eq(status->min, 1);
    cr_expect_eq(status->binding_strength, FS_BIND_REQUIRED);
    cr_expect_neq(status->valueset, FS_NONE);
    cr_expect_null(choice);

    const fs_type *obs = fs_type_by_name(s, "Observation", 11);
    const fs_element *value = fs_child(s, &s->elements[obs->root], "valueQuantity", 13, &choice);
    cr_assert_not_null(value);
    cr_assert_not_null(choice);
    cr_expect_str_eq(choice->name, "Quantity");
    value = fs_child(s, &s->elements[obs->root], "valueDateTime", 13, &choice);
    cr_assert_not_null(value);
    cr_expect_str_eq(choice->name, "dateTime");
    cr_expect_null(fs_child(s, &s->elements[obs->root], "valueMoney", 10, &choice));
    cr_expect_null(fs_child(s, &s->elements[obs->root], "value", 5, &choice), "a bare choice stem is no property");
    cr_expect_null(fs_child(s, &s->elements[obs->root], "valuedateTime", 13, &choice));
}

Test(schema, content_reference_children)
{
    const fs_schema *s = fs_r4();
    const fs_type *q = fs_type_by_name(s, "Questionnaire", 13);
    const fs_type *choice;
    const fs_element *item = fs_child(s, &s->elements[q->root], "item", 4, &choice);
    cr_assert_not_null(item);
    const fs_element *nested = fs_child(s, item, "item", 4, &choice);
    cr_assert_not_null(nested, "Questionnaire.item.item takes its children from #Questionnaire.item");
    cr_expect_not_null(fs_child(s, nested, "linkId", 6, &choice));
}

Test(schema, every_element_fits_the_walk)
{
    const fs_schema *s = fs_r4();
    for (uint32_t i = 0; i < s->element_count; i++) {
        const fs_element *e = &s->elements[i];
        cr_assert_leq(e->child_count, FV_MAX_CHILDREN, "%s has too many children", e->path);
        cr_assert(e->type_count > 0, "%s has no type", e->path);
    }
}

Test(schema, valuesets)
{
    const fs_schema *s = fs_r4();
    const fs_valueset *g = fs_valueset_by_url(s, "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1");
    cr_assert_not_null(g);
    cr_expect(fs_valueset_contains(s, g, NULL, 0, "female", 6));
    cr_expect(fs_valueset_contains(s, g, "http://hl7.org/fhir/administrative-gender", 41, "unknown", 7));
    cr_expect_not(fs_valueset_contains(s, g, "http://example.org", 18, "unknown", 7));
    cr_expect_not(fs_valueset_contains(s, g, NULL, 0, "fem", 3));
    cr_expect_null(fs_valueset_by_url(s, "http://hl7.org/fhir/ValueSet/no-such-set"));
}

/* ---- valid resources ---- */

Test(valid, minimal_resources)
{
    EXPECT_CLEAN("{\"resourceType\":\"Patient\"}");
    EXPECT_CLEAN("{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                 "\"subject\":{\"reference\":\"Patient/p1\"}}");
    EXPECT_CLEAN(
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
        "\"valueQuantity\":{\"value\":1.50,\"unit\":\"kg\"},\"effectiveDateTime\":\"2024-02-29T10:00:00+01:00\"}");
}

Test(valid, primitive_extensions_aligned)
{
    EXPECT_CLEAN("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\",null],"
                 "\"_given\":[null,{\"extension\":[{\"url\":\"http://x.org/e\",\"valueString\":\"y\"}]}]}],"
                 "\"birthDate\":\"1970\",\"_birthDate\":{\"id\":\"b1\"}}");
}

Test(valid, contained_and_references)
{
    EXPECT_CLEAN(
        "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
        "\"contained\":[{\"resourceType\":\"Patient\",\"id\":\"p\"}],"
        "\"subject\":{\"reference\":\"#p\"},\"author\":{\"reference\":\"http://example.org/fhir/Practitioner/1\"},"
        "\"careTeam\":[{\"reference\":\"CareTeam/ct-1/_history/2\"},{\"reference\":\"urn:uuid:"
        "b7e3b8a2-3c1f-4a0e-9d1c-2f7a9c3e4b5d\"}]}");
}

Test(valid, transaction_references_resolve)
{
    EXPECT_CLEAN(
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"fullUrl\":\"urn:uuid:11111111-1111-4111-8111-111111111111\",\"resource\":{\"resourceType\":\"Patient\"},"
        "\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
        "{\"fullUrl\":\"urn:uuid:22222222-2222-4222-8222-222222222222\",\"resource\":{\"resourceType\":\"CarePlan\","
        "\"status\":\"active\",\"intent\":\"plan\",\"subject\":{\"reference\":\"urn:uuid:11111111-1111-4111-8111-111111111111\"}},"
        "\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}}]}");
}

/* A relative reference in a document Bundle resolves against the base of its entry's fullUrl. */
Test(valid, document_references_resolve_against_the_full_url_base)
{
    oo_list l = run_validation(
        "{\"resourceType\":\"Bundle\",\"type\":\"document\",\"entry\":["
        "{\"fullUrl\":\"http://example.org/fhir/Composition/c1\",\"resource\":{\"resourceType\":\"Composition\","
        "\"id\":\"c1\",\"status\":\"final\",\"type\":{\"text\":\"x\"},\"date\":\"2024-05-01\",\"title\":\"t\","
        "\"author\":[{\"reference\":\"Practitioner/p1\"}],\"subject\":{\"reference\":\"Patient/missing\"}}},"
        "{\"fullUrl\":\"http://example.org/fhir/Practitioner/p1\",\"resource\":{\"resourceType\":\"Practitioner\","
        "\"id\":\"p1\"}}]}");
    cr_expect(!has_issue(&l, OO_WARNING, OO_NOT_FOUND, "Bundle.entry[0].resource.author[0].reference"),
              "Practitioner/p1 is http://example.org/fhir/Practitioner/p1");
    /* an error since #14: what a document's Composition points to must travel in the document */
    cr_expect(has_issue(&l, OO_ERROR, OO_NOT_FOUND, "Bundle.entry[0].resource.subject.reference"));
    oo_list_free(&l);
}

/* Literal references: each malformed kind with the reason it gets. */
Test(invalid, relative_reference_messages)
{
    static const struct {
        const char *ref, *why;
    } cases[] = {
        {"Patient", "expected 'Type/id'"},
        {"Patientt/1", "known resource type"},
        {"Patient/", "the id part is not a valid id"},
        {"Patient//1", "the id part is not a valid id"},
        {"Patient/a_b", "the id part is not a valid id"},
        {"Patient/_history/2", "the id part is not a valid id"},
        {"Patient/1/2", "only '/_history/versionId' may follow"},
        {"Patient/1/Observation/2", "only '/_history/versionId' may follow"},
        {"Patient/1/_history/", "only '/_history/versionId' may follow"},
        {"Patient/1/_history/2/x", "only '/_history/versionId' may follow"},
        {"Patient/1/_history/a_b", "only '/_history/versionId' may follow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[300];
        snprintf(json, sizeof json,
                 "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                 "\"subject\":{\"reference\":\"%s\"}}",
                 cases[i].ref);
        oo_list l = run_validation(json);
        cr_expect_eq(l.errors, 1, "%s", cases[i].ref);
        bool found = false;
        for (size_t k = 0; k < l.count; k++)
            found |= l.items[k].expression && !strcmp(l.items[k].expression, "CarePlan.subject.reference") &&
                     strstr(l.items[k].message, cases[i].why) != NULL;
        if (!found)
            dump(&l);
        cr_expect(found, "%s: expected \"%s\"", cases[i].ref, cases[i].why);
        oo_list_free(&l);
    }
    EXPECT_CLEAN("{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                 "\"subject\":{\"reference\":\"Patient/p-1.x/_history/7\"}}");
}

/* ---- invalid resources, one defect each ---- */

Test(invalid, missing_required_in_backbone)
{
    /* The location example of the issue: a detail without its required status. */
    EXPECT_ONE("{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
               "\"subject\":{\"reference\":\"Patient/p1\"},\"activity\":[{\"detail\":{\"kind\":\"Task\"}}]}",
               OO_ERROR, OO_REQUIRED, "CarePlan.activity[0].detail.status");
}

Test(invalid, choice_locations)
{
    EXPECT_ONE("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
               "\"valueQuantity\":{\"value\":\"1\"}}",
               OO_ERROR, OO_VALUE, "Observation.value.ofType(Quantity).value");
    EXPECT_ONE("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueQuanty\":{}}",
               OO_ERROR, OO_STRUCTURE, "Observation.valueQuanty");
    EXPECT_ONE("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
               "\"valueString\":\"a\",\"valueBoolean\":true}",
               OO_ERROR, OO_STRUCTURE, "Observation.value");
}

Test(invalid, bundle_entries_and_resolution)
{
    EXPECT_ONE(
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"Patient\"}},{\"resource\":{\"resourceType\":\"Patient\",\"foo\":1}}]}",
        OO_ERROR, OO_STRUCTURE, "Bundle.entry[1].resource.foo");
    EXPECT_ONE(
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"fullUrl\":\"urn:uuid:22222222-2222-4222-8222-222222222222\",\"resource\":{\"resourceType\":\"CarePlan\","
        "\"status\":\"active\",\"intent\":\"plan\",\"subject\":{\"reference\":\"urn:uuid:11111111-1111-4111-8111-111111111111\"}},"
        "\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}}]}",
        OO_ERROR, OO_NOT_FOUND, "Bundle.entry[0].resource.subject.reference");
    /* A Bundle inside a Bundle keeps its own fullUrl scope. */
    EXPECT_ONE("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":"
               "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"fullUrl\":\"urn:uuid:not-a-uuid\","
               "\"resource\":{\"resourceType\":\"Patient\"}}]}}]}",
               OO_ERROR, OO_VALUE, "Bundle.entry[0].resource.entry[0].fullUrl");
}

Test(invalid, resource_type_problems)
{
    EXPECT_ONE("{\"id\":\"x\"}", OO_ERROR, OO_STRUCTURE, "$this");
    EXPECT_ONE("{\"resourceType\":\"Patientt\"}", OO_ERROR, OO_STRUCTURE, "resourceType");
    EXPECT_ONE("{\"resourceType\":\"DomainResource\"}", OO_ERROR, OO_STRUCTURE, "resourceType");
    EXPECT_ONE("{\"resourceType\":\"HumanName\"}", OO_ERROR, OO_STRUCTURE, "resourceType");
    EXPECT_ONE("[1,2]", OO_ERROR, OO_STRUCTURE, "$this");
}

Test(invalid, json_syntax_has_line_and_column)
{
    oo_list l = run_validation("{\n  \"resourceType\": \"Patient\",\n  \"active\": tru\n}");
    cr_assert_eq(l.count, 1);
    cr_expect_eq(l.items[0].severity, OO_FATAL);
    cr_expect_str_eq(l.items[0].code, OO_STRUCTURE);
    cr_expect_null(l.items[0].expression);
    cr_expect_eq(l.items[0].line, 3);
    oo_list_free(&l);
}

Test(invalid, depth_limit)
{
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"resourceType\":\"Patient\",\"extension\":");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "[");
    buf[n] = '\0';
    oo_list l = run_validation(buf);
    cr_assert_eq(l.count, 1);
    cr_expect_eq(l.items[0].severity, OO_FATAL);
    cr_expect_str_eq(l.items[0].code, OO_TOO_LONG);
    oo_list_free(&l);
}

/* ---- OperationOutcome ---- */

Test(outcome, shape_and_limit)
{
    oo_list l;
    oo_list_init(&l, 2);
    oo_add(&l, OO_ERROR, OO_REQUIRED, "CarePlan.status", 3, 7, "missing %s", "status");
    oo_add(&l, OO_WARNING, OO_NOT_FOUND, NULL, 0, 0, "w");
    oo_add(&l, OO_ERROR, OO_VALUE, "X", 0, 0, "dropped");
    cr_expect_eq(l.errors, 2);
    cr_expect_eq(l.warnings, 1);
    cr_expect_eq(l.count, 2);
    cr_expect_eq(l.dropped, 1);
    json_object *oo = oo_to_json(&l);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(oo, "resourceType")), "OperationOutcome");
    json_object *issues = json_object_object_get(oo, "issue");
    cr_assert_eq(json_object_array_length(issues), 3, "two issues plus the 'not listed' note");
    json_object *first = json_object_array_get_idx(issues, 0);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(first, "severity")), "error");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(first, "code")), "required");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(first, "diagnostics")), "missing status");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(json_object_object_get(first, "expression"), 0)),
                     "CarePlan.status");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(json_object_object_get(first, "location"), 0)),
                     "Line 3, Col 7");
    json_object_put(oo);
    oo_list_free(&l);

    oo_list empty;
    oo_list_init(&empty, 0);
    oo = oo_to_json(&empty);
    issues = json_object_object_get(oo, "issue");
    cr_assert_eq(json_object_array_length(issues), 1, "an OperationOutcome has at least one issue");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(issues, 0), "severity")),
                     "information");
    json_object_put(oo);
    oo_list_free(&empty);
}

/* The OperationOutcome the validator produces validates itself. */
Test(outcome, validates_as_fhir)
{
    oo_list l = run_validation("{\"resourceType\":\"Patient\",\"gender\":\"mal\",\"foo\":1}");
    cr_assert_eq(l.errors, 2);
    json_object *oo = oo_to_json(&l);
    const char *text = json_object_to_json_string_ext(oo, JSON_C_TO_STRING_PLAIN);
    EXPECT_CLEAN(text);
    json_object_put(oo);
    oo_list_free(&l);
}

/* The one-line text of an issue: padded severity and code, location, position, message. */
Test(outcome, issue_text)
{
    oo_list l;
    oo_list_init(&l, 0);
    oo_add(&l, OO_ERROR, OO_VALUE, "Patient.birthDate", 3, 17, "invalid date '%s'", "2023-02-29");
    oo_add(&l, OO_FATAL, OO_STRUCTURE, NULL, 1, 9, "invalid JSON");
    oo_add(&l, OO_WARNING, OO_INVARIANT, "Patient", 0, 0, "dom-6");
    oo_add(&l, OO_INFORMATION, OO_INFORMATIONAL, NULL, 0, 0, "fine");
    static const char *const want[] = {
        "error   value        Patient.birthDate (line 3, col 17): invalid date '2023-02-29'",
        "fatal   structure    (line 1, col 9): invalid JSON",
        "warning invariant    Patient: dom-6",
        "information informational : fine",
    };
    for (size_t i = 0; i < l.count; i++) {
        char line[200];
        size_t n = oo_issue_format(&l.items[i], line, sizeof line);
        cr_expect_str_eq(line, want[i]);
        cr_expect_eq(n, strlen(want[i]));
    }
    char small[10];
    cr_expect_eq(oo_issue_format(&l.items[0], small, sizeof small), strlen(want[0]), "the length it needs");
    cr_expect_str_eq(small, "error   v");
    oo_list_free(&l);
}

/* Invariants are carried into the schema, shared between elements. */
static bool element_has_constraint(const fs_schema *s, const fs_element *e, const char *key)
{
    for (unsigned i = 0; i < e->constraint_count; i++)
        if (!strcmp(s->constraints[s->constraint_refs[e->constraint_first + i]].key, key))
            return true;
    return false;
}

Test(schema, invariants)
{
    const fs_schema *s = fs_r4();
    cr_expect_gt(s->constraint_count, 200);
    const fs_type *cp = fs_type_by_name(s, "CarePlan", 8);
    const fs_element *root = &s->elements[cp->root];
    cr_expect(element_has_constraint(s, root, "dom-3"));
    cr_expect(element_has_constraint(s, root, "dom-6"));
    const fs_type *period = fs_type_by_name(s, "Period", 6);
    cr_expect(element_has_constraint(s, &s->elements[period->root], "per-1"));
    const fs_type *choice;
    const fs_element *status = fs_child(s, root, "status", 6, &choice);
    cr_expect(element_has_constraint(s, status, "ele-1"));
    cr_expect_not(element_has_constraint(s, status, "dom-3"));
    for (uint32_t i = 0; i < s->constraint_count; i++) {
        cr_expect_not_null(s->constraints[i].expression);
        cr_expect_gt(strlen(s->constraints[i].expression), 0, "%s has no expression", s->constraints[i].key);
    }
}

/* Search parameters of the core spec, reduced per base type. */
Test(schema, search_parameters)
{
    const fs_schema *s = fs_r4();
    const fs_search_param *status = fs_search_param_find(s, "CarePlan", "status");
    cr_assert_not_null(status);
    cr_expect_eq(status->kind, FS_SEARCH_TOKEN);
    cr_expect_str_eq(status->expression, "CarePlan.status");
    const fs_search_param *patient = fs_search_param_find(s, "CarePlan", "patient");
    cr_assert_not_null(patient);
    cr_expect_eq(patient->kind, FS_SEARCH_REFERENCE);
    cr_expect_str_eq(patient->expression, "CarePlan.subject.where(resolve() is Patient)",
                     "only the CarePlan part of the shared clinical-patient expression");
    const fs_search_param *updated = fs_search_param_find(s, "Task", "_lastUpdated");
    cr_assert_not_null(updated, "parameters of Resource apply to every type");
    cr_expect_eq(updated->kind, FS_SEARCH_DATE);
    cr_expect_not_null(fs_search_param_find(s, "Task", "owner"));
    cr_expect_null(fs_search_param_find(s, "Task", "no-such-parameter"));
    unsigned n;
    const fs_search_param *all = fs_search_params_of(s, "Encounter", &n);
    cr_assert_not_null(all);
    cr_expect_gt(n, 20);
    for (unsigned i = 0; i < n; i++)
        cr_expect_str_eq(all[i].resource, "Encounter");
}

/* Literal references split into type, id and version. */
#include "fhir/reference.h"

Test(reference, parts)
{
    struct {
        const char *text, *type, *id, *version;
    } cases[] = {
        {"Patient/123", "Patient", "123", NULL},
        {"Patient/123/_history/2", "Patient", "123", "2"},
        {"https://example.org/fhir/Patient/p.1", "Patient", "p.1", NULL},
        {"https://example.org/fhir/Practitioner/gp1/_history/3", "Practitioner", "gp1", "3"},
        {"#p1", NULL, NULL, NULL},
        {"urn:uuid:11111111-1111-4111-8111-111111111111", NULL, NULL, NULL},
        {"123", NULL, NULL, NULL},
        {"Patient/", NULL, NULL, NULL},
        {"patient/123", NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fr_parts p;
        bool ok = fr_parse(cases[i].text, strlen(cases[i].text), &p);
        cr_expect_eq(ok, cases[i].type != NULL, "%s", cases[i].text);
        if (!ok || !cases[i].type)
            continue;
        cr_expect(p.type_len == strlen(cases[i].type) && !memcmp(p.type, cases[i].type, p.type_len), "%s",
                  cases[i].text);
        cr_expect(p.id_len == strlen(cases[i].id) && !memcmp(p.id, cases[i].id, p.id_len), "%s", cases[i].text);
        if (cases[i].version)
            cr_expect(p.version && p.version_len == strlen(cases[i].version) &&
                          !memcmp(p.version, cases[i].version, p.version_len),
                      "%s", cases[i].text);
        else
            cr_expect_null(p.version, "%s", cases[i].text);
    }
}

/* ---- the typed walk (fhir/walk.h) ---- */

#include "fhir/walk.h"

typedef struct seen {
    char what[16][80];
    int n;
} seen;

static void note_uri_like(void *ctx, const fj_doc *doc, uint32_t node, const fs_element *el, const fs_type *type)
{
    seen *s = ctx;
    const char *kind = fw_is_literal_reference(el)    ? "ref"
                       : !strcmp(type->name, "uri")   ? "uri"
                       : !strcmp(type->name, "xhtml") ? "xhtml"
                                                      : NULL;
    if (kind && s->n < 16)
        snprintf(s->what[s->n++], 80, "%s %s=%.*s", kind, el->path, (int)doc->nodes[node].len, fj_str(doc, node));
}

Test(walk, primitives_come_with_their_element_and_type)
{
    char text[] = "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"fullUrl\":\"urn:uuid:p\","
                  "\"resource\":{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"<div "
                  "xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x</div>\"},"
                  "\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\",\"partOf\":{\"reference\":"
                  "\"urn:uuid:c\"}}],"
                  "\"extension\":[{\"url\":\"http://x.org/e\",\"valueReference\":{\"reference\":\"urn:uuid:e\"}}],"
                  "\"identifier\":[{\"system\":\"urn:ietf:rfc:3986\",\"value\":\"urn:uuid:p\"}],"
                  "\"managingOrganization\":{\"reference\":\"urn:uuid:m\"},\"_gender\":{\"id\":\"g\"}},"
                  "\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}}]}";
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &err), "%s", err.message);
    seen s = {0};
    cr_assert(fw_walk_resource(fs_r4(), &doc, 0, note_uri_like, &s));
    const char *want[] = {
        "uri Bundle.entry.fullUrl=urn:uuid:p",
        "xhtml Narrative.div=<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>",
        "ref Reference.reference=urn:uuid:c",
        "uri Extension.url=http://x.org/e",
        "ref Reference.reference=urn:uuid:e",
        "uri Identifier.system=urn:ietf:rfc:3986",
        "ref Reference.reference=urn:uuid:m",
        "uri Bundle.entry.request.url=Patient",
    };
    cr_assert_eq(s.n, (int)(sizeof want / sizeof *want), "visited %d", s.n);
    for (int i = 0; i < s.n; i++)
        cr_expect_str_eq(s.what[i], want[i]);
    fj_doc_free(&doc);
}

/* Conditional references ("Patient?identifier=...") are legal in transaction and batch entries only. */
Test(walk, conditional_references_only_in_transactions_and_batches)
{
    const char *types[] = {"transaction", "batch", "collection"};
    for (int i = 0; i < 3; i++) {
        char text[600];
        snprintf(text, sizeof text,
                 "{\"resourceType\":\"Bundle\",\"type\":\"%s\",\"entry\":[{\"fullUrl\":\"urn:uuid:%s\",\"resource\":{"
                 "\"resourceType\":\"Encounter\",\"status\":\"planned\",\"class\":{\"code\":\"IMP\"},\"subject\":{"
                 "\"reference\":\"Patient?identifier=http://x.org/mrn|1\"}}%s}]}",
                 types[i], "6f1c2f1e-0000-4000-8000-000000000009",
                 i < 2 ? ",\"request\":{\"method\":\"POST\",\"url\":\"Encounter\"}" : "");
        oo_list issues;
        oo_list_init(&issues, 0);
        size_t errors = fv_validate_buffer(text, strlen(text), NULL, &issues);
        cr_expect_eq(errors, i < 2 ? 0u : 1u, "%s: %zu errors, first: %s", types[i], errors,
                     issues.count ? issues.items[0].message : "");
        oo_list_free(&issues);
    }
}

/* ---- Reference targets (fhir/schema.h fs_reference_*) ---- */

#include "fhir/reference.h"

/* The element reached from a type's root by dot-separated JSON keys ("input.valueReference"), or NULL. */
static const fs_element *element_at(const char *type, const char *keys)
{
    const fs_schema *s = fs_r4();
    const fs_type *t = fs_type_by_name(s, type, strlen(type));
    if (!t)
        return NULL;
    const fs_element *e = &s->elements[t->root];
    while (e && *keys) {
        size_t len = strcspn(keys, ".");
        const fs_type *choice;
        e = fs_child(s, e, keys, len, &choice);
        keys += len + (keys[len] == '.');
    }
    return e;
}

static bool allowed(const fs_element *e, const char *type)
{
    return fs_reference_target_allowed(fs_r4(), e, type, strlen(type));
}

/* The targets as the spec writes them: "Group | Patient" (sorted by name). */
static void target_names(const fs_element *e, char *buf, size_t size)
{
    const fs_schema *s = fs_r4();
    unsigned n;
    const uint16_t *targets = fs_reference_targets(s, e, &n);
    size_t len = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? " | " : "", s->types[targets[i]].name);
}

Test(schema_targets, careplan_subject_is_patient_or_group)
{
    const fs_element *e = element_at("CarePlan", "subject");
    cr_assert_not_null(e);
    char names[256];
    target_names(e, names, sizeof names);
    cr_expect_str_eq(names, "Group | Patient");
    cr_expect(allowed(e, "Patient"));
    cr_expect(allowed(e, "Group"));
    cr_expect_not(allowed(e, "Practitioner"));
    cr_expect_not(fs_reference_allows_any(fs_r4(), e));
    /* the length bounds the name: "Patient/1" given with len 7 is Patient */
    cr_expect(fs_reference_target_allowed(fs_r4(), e, "Patient/1", 7));
    cr_expect_not(fs_reference_target_allowed(fs_r4(), e, "Patient/1", 6));
}

Test(schema_targets, encounter_subject_and_task_owner)
{
    const fs_element *subject = element_at("Encounter", "subject");
    cr_assert_not_null(subject);
    cr_expect(allowed(subject, "Patient") && allowed(subject, "Group"));
    cr_expect_not(allowed(subject, "Practitioner"));

    const fs_element *owner = element_at("Task", "owner");
    cr_assert_not_null(owner);
    char names[512];
    target_names(owner, names, sizeof names);
    cr_expect_str_eq(names, "CareTeam | Device | HealthcareService | Organization | Patient | Practitioner | "
                            "PractitionerRole | RelatedPerson");
    const char *yes[] = {"Practitioner",      "PractitionerRole", "Organization", "CareTeam",
                         "HealthcareService", "Patient",          "Device",       "RelatedPerson"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        cr_expect(allowed(owner, yes[i]), "%s", yes[i]);
    cr_expect_not(allowed(owner, "Group"));
    cr_expect_not(allowed(owner, "Location"));
}

/* Reference(Any): no targetProfile (Extension.value[x], Task.input.value[x]) or the profile Resource (Provenance.target). */
Test(schema_targets, any_is_the_type_resource)
{
    const char *any[][2] = {{"Extension", "valueReference"},
                            {"Task", "input.valueReference"},
                            {"Task", "output.valueReference"},
                            {"Provenance", "target"}};
    for (size_t i = 0; i < sizeof any / sizeof *any; i++) {
        const fs_element *e = element_at(any[i][0], any[i][1]);
        cr_assert_not_null(e, "%s.%s", any[i][0], any[i][1]);
        cr_expect(fs_reference_allows_any(fs_r4(), e), "%s", e->path);
        char names[64];
        target_names(e, names, sizeof names);
        cr_expect_str_eq(names, "Resource", "%s", e->path);
        cr_expect(allowed(e, "Patient") && allowed(e, "Practitioner") && allowed(e, "Bundle"), "%s", e->path);
        /* "any" means any concrete resource type, not any name */
        cr_expect_not(allowed(e, "Resource"), "%s", e->path);
        cr_expect_not(allowed(e, "DomainResource"), "%s", e->path);
        cr_expect_not(allowed(e, "HumanName"), "%s", e->path);
        cr_expect_not(allowed(e, "Patients"), "%s", e->path);
    }
    /* a choice element is one element: valueString resolves to the same one, its targets those of the Reference */
    cr_expect_eq(element_at("Extension", "valueString"), element_at("Extension", "valueReference"));
}

Test(schema_targets, data_types_and_non_references)
{
    const fs_element *assigner = element_at("Identifier", "assigner");
    cr_assert_not_null(assigner);
    cr_expect(allowed(assigner, "Organization"));
    cr_expect_not(allowed(assigner, "Patient"));
    /* Media.device lists Device twice in the spec: stored once */
    char names[128];
    target_names(element_at("Media", "device"), names, sizeof names);
    cr_expect_str_eq(names, "Device | DeviceMetric");
    /* not Reference elements: no targets, nothing allowed, not "any" */
    const char *none[][2] = {{"Patient", "name"},
                             {"Bundle", "entry.resource"},
                             {"Reference", "reference"},
                             {"CarePlan", "instantiatesCanonical"}};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
        const fs_element *e = element_at(none[i][0], none[i][1]);
        cr_assert_not_null(e, "%s.%s", none[i][0], none[i][1]);
        unsigned n = 99;
        cr_expect_null(fs_reference_targets(fs_r4(), e, &n), "%s", e->path);
        cr_expect_eq(n, 0u, "%s", e->path);
        cr_expect_not(allowed(e, "Patient"), "%s", e->path);
        cr_expect_not(fs_reference_allows_any(fs_r4(), e), "%s", e->path);
    }
}

/* Every element with the type Reference has targets, sorted resource types; no other element has any. */
Test(schema_targets, table_invariants)
{
    const fs_schema *s = fs_r4();
    const fs_type *reference = fs_type_by_name(s, "Reference", 9);
    cr_assert_not_null(reference);
    unsigned with_targets = 0;
    for (uint32_t i = 0; i < s->element_count; i++) {
        const fs_element *e = &s->elements[i];
        bool is_reference = false;
        for (unsigned k = 0; k < e->type_count; k++)
            is_reference |= fs_element_type(s, e, k) == reference;
        unsigned n;
        const uint16_t *targets = fs_reference_targets(s, e, &n);
        cr_expect_eq(n > 0, is_reference && e != &s->elements[reference->root], "%s", e->path);
        cr_assert_leq(e->target_first + n, s->target_ref_count, "%s", e->path);
        for (unsigned k = 0; k < n; k++) {
            cr_assert_lt(targets[k], s->type_count, "%s", e->path);
            cr_expect_eq(s->types[targets[k]].kind, FS_RESOURCE, "%s", e->path);
            if (k)
                cr_expect_lt(targets[k - 1], targets[k], "%s: sorted and unique", e->path);
        }
        with_targets += n > 0;
    }
    cr_expect_gt(with_targets, 700u, "%u Reference elements", with_targets);
}

typedef struct refs_seen {
    char what[16][96];
    int n;
} refs_seen;

/* "element=reference verdict": ok / refused by the element's targets, "-" when the reference names no type. */
static void note_reference(void *ctx, const fj_doc *doc, uint32_t node, const fs_element *el)
{
    refs_seen *r = ctx;
    uint32_t ref = fj_get(doc, node, "reference");
    const char *text = ref == UINT32_MAX ? "" : fj_str(doc, ref);
    size_t len = ref == UINT32_MAX ? 0 : doc->nodes[ref].len;
    fr_parts parts;
    const char *verdict = !fr_parse(text, len, &parts)                                           ? "-"
                          : fs_reference_target_allowed(fs_r4(), el, parts.type, parts.type_len) ? "ok"
                                                                                                 : "refused";
    if (r->n < 16)
        snprintf(r->what[r->n++], 96, "%s=%.*s %s", el->path, (int)len, text, verdict);
}

Test(walk, references_come_with_the_referencing_element)
{
    char text[] =
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"fullUrl\":\"urn:uuid:c\",\"resource\":{\"resourceType\":\"CarePlan\",\"status\":\"active\","
        "\"intent\":\"plan\","
        "\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\",\"partOf\":{\"reference\":\"Organization/p\"}}],"
        "\"extension\":[{\"url\":\"http://x.org/e\",\"valueReference\":{\"reference\":\"#o\"}}],"
        "\"subject\":{\"reference\":\"Patient/1\",\"identifier\":{\"value\":\"1\",\"assigner\":{\"reference\":"
        "\"Patient/9\"}}},"
        "\"activity\":[{\"detail\":{\"status\":\"scheduled\",\"performer\":[{\"reference\":\"Practitioner/1\"},"
        "{\"display\":\"someone\"}]}}]},"
        "\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}},"
        "{\"resource\":{\"resourceType\":\"Encounter\",\"status\":\"planned\",\"class\":{\"code\":\"IMP\"},"
        "\"subject\":{\"reference\":\"Practitioner/2\"},\"_status\":{\"extension\":[{\"url\":\"http://x.org/s\","
        "\"valueReference\":{\"reference\":\"Device/1\"}}]}},"
        "\"request\":{\"method\":\"POST\",\"url\":\"Encounter\"}}]}";
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &err), "%s", err.message);
    refs_seen r = {0};
    cr_assert(fw_walk_references(fs_r4(), &doc, 0, note_reference, &r));
    const char *want[] = {
        "Organization.partOf=Organization/p ok",                /* contained: the contained resource's element */
        "Extension.value[x]=#o -",                              /* choice valueReference */
        "CarePlan.subject=Patient/1 ok",                        /* Bundle entry resource */
        "Identifier.assigner=Patient/9 refused",                /* a Reference inside a Reference, after it */
        "CarePlan.activity.detail.performer=Practitioner/1 ok", /* nested backbone, array */
        "CarePlan.activity.detail.performer= -",                /* a Reference without a literal reference */
        "Encounter.subject=Practitioner/2 refused",             /* second entry */
        "Extension.value[x]=Device/1 ok",                       /* in a primitive's extension (`_status`) */
    };
    cr_assert_eq(r.n, (int)(sizeof want / sizeof *want), "visited %d", r.n);
    for (int i = 0; i < r.n; i++)
        cr_expect_str_eq(r.what[i], want[i]);
    fj_doc_free(&doc);
}

Test(walk, references_of_an_unknown_type_are_not_walked)
{
    char text[] = "{\"resourceType\":\"Patientx\",\"managingOrganization\":{\"reference\":\"Organization/1\"}}";
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &err), "%s", err.message);
    refs_seen r = {0};
    cr_expect_not(fw_walk_references(fs_r4(), &doc, 0, note_reference, &r));
    cr_expect_eq(r.n, 0);
    fj_doc_free(&doc);
}

/* Extensions of primitives may hold References too: `_given` beside a repeating primitive, `_valueString` of a choice. */
Test(walk, references_in_primitive_extensions)
{
    char text[] = "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\",\"b\"],\"_given\":[null,{\"extension\":[{"
                  "\"url\":\"http://x.org/g\",\"valueReference\":{\"reference\":\"Patient/2\"}}]}]}],"
                  "\"extension\":[{\"url\":\"http://x.org/e\",\"valueString\":\"s\",\"_valueString\":{\"extension\":[{"
                  "\"url\":\"http://x.org/f\",\"valueReference\":{\"reference\":\"Group/3\"}}]}}],"
                  "\"_gender\":\"not an object\",\"_unknown\":{\"extension\":[{\"url\":\"http://x.org/u\","
                  "\"valueReference\":{\"reference\":\"Patient/4\"}}]}}";
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &err), "%s", err.message);
    refs_seen r = {0};
    cr_assert(fw_walk_references(fs_r4(), &doc, 0, note_reference, &r));
    const char *want[] = {"Extension.value[x]=Patient/2 ok", "Extension.value[x]=Group/3 ok"};
    cr_assert_eq(r.n, 2, "visited %d", r.n);
    for (int i = 0; i < r.n; i++)
        cr_expect_str_eq(r.what[i], want[i]);
    fj_doc_free(&doc);
}

/* ---- a node of a parsed document, with rules for the resources in it (fv_validate_node, fv_options.rules) ---- */

#include <dirent.h>

/* A profile on Patient that requires birthDate. */
#define BORN_PATIENT                                                                                \
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/born\",\"type\":\"Patient\","     \
    "\"kind\":\"resource\",\"baseDefinition\":\"http://hl7.org/fhir/StructureDefinition/Patient\"," \
    "\"derivation\":\"constraint\",\"differential\":{\"element\":[{\"id\":\"Patient.birthDate\","   \
    "\"path\":\"Patient.birthDate\",\"min\":1}]}}"

/* A Parameters whose one parameter holds a collection Bundle: two Patients without birthDate, then a Patient
 * with a bad gender; one entry a line, so an issue's line says which entry it is in. */
#define NODE_PARAMETERS                                                                              \
    "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"p\",\"resource\":\n"                \
    "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[\n"                             \
    "{\"fullUrl\":\"urn:uuid:0b8a5f2e-0000-4000-8000-000000000001\",\"resource\":{\"resourceType\":" \
    "\"Patient\",\"active\":true}},\n"                                                               \
    "{\"fullUrl\":\"urn:uuid:0b8a5f2e-0000-4000-8000-000000000002\",\"resource\":{\"resourceType\":" \
    "\"Patient\",\"active\":true}},\n"                                                               \
    "{\"fullUrl\":\"urn:uuid:0b8a5f2e-0000-4000-8000-000000000003\",\"resource\":{\"resourceType\":" \
    "\"Patient\",\"gender\":\"fine\"}}]}}]}"

/* The resource node of entry k of the Bundle at node bundle. */
static uint32_t entry_resource_node(const fj_doc *d, uint32_t bundle, uint32_t k)
{
    uint32_t e = fj_first_child(fj_get(d, bundle, "entry"));
    for (uint32_t i = 0; i < k; i++)
        e = fj_next(d, e);
    return fj_get(d, e, "resource");
}

static uint32_t first_parameter_resource(const fj_doc *d)
{
    return fj_get(d, fj_first_child(fj_get(d, 0, "parameter")), "resource");
}

/* How many issues of severity sev sit at expression. */
static size_t issues_at(const oo_list *l, oo_severity sev, const char *expression)
{
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++)
        n += l->items[i].severity == sev && l->items[i].expression && !strcmp(l->items[i].expression, expression);
    return n;
}

Test(node, a_rule_adds_its_profile_to_that_resource_only)
{
    pf_registry *r = pf_registry_new(NULL);
    oo_list load;
    oo_list_init(&load, 0);
    cr_assert(pf_registry_add(r, BORN_PATIENT, strlen(BORN_PATIENT), "born", &load));
    cr_assert(pf_registry_finish(r, &load));
    oo_list_free(&load);
    char *text = strdup(NODE_PARAMETERS);
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &err), "%s", err.message);
    uint32_t bundle = first_parameter_resource(&doc);
    fv_resource_rule rules[] = {{.node = entry_resource_node(&doc, bundle, 0), .profile = pf_find(r, "http://x/born")}};
    fv_options opts = {.profiles = r, .rules = rules, .rule_count = 1};
    oo_list l;
    oo_list_init(&l, 0);
    fv_validate_node(&doc, bundle, &opts, &l);
    dump(&l);
    /* the profile's error at entry 0, located in the Parameters' text (line 3); not at entry 1 */
    cr_expect_eq(issues_at(&l, OO_ERROR, "Bundle.entry[0].resource.birthDate"), 1);
    cr_expect_eq(issues_at(&l, OO_ERROR, "Bundle.entry[1].resource.birthDate"), 0);
    for (size_t i = 0; i < l.count; i++)
        if (l.items[i].expression && strstr(l.items[i].expression, "entry[0]") && l.items[i].severity == OO_ERROR) {
            cr_expect(strstr(l.items[i].message, "http://x/born"), "%s", l.items[i].message);
            cr_expect_eq(l.items[i].line, 3, "line %u", l.items[i].line);
        }
    /* the core error of entry 2, as anywhere: expressions from the Bundle, the node validated */
    cr_expect_eq(issues_at(&l, OO_ERROR, "Bundle.entry[2].resource.gender"), 1);
    cr_expect_eq(l.errors, 2);
    oo_list_free(&l);
    /* without the rule no profile applies; a skipped entry says nothing */
    fv_resource_rule skip[] = {{.node = entry_resource_node(&doc, bundle, 2), .skip = true}};
    opts.rules = skip;
    oo_list_init(&l, 0);
    fv_validate_node(&doc, bundle, &opts, &l);
    cr_expect_eq(l.errors, 0);
    oo_list_free(&l);
    /* the Parameters with its resource skipped: nothing of the Bundle is validated */
    fv_resource_rule skip_bundle[] = {{.node = bundle, .skip = true}};
    opts.rules = skip_bundle;
    oo_list_init(&l, 0);
    fv_validate_node(&doc, 0, &opts, &l);
    cr_expect_eq(l.errors, 0);
    oo_list_free(&l);
    opts.rules = NULL;
    oo_list_init(&l, 0);
    fv_validate_node(&doc, 0, &opts, &l);
    cr_expect_eq(issues_at(&l, OO_ERROR, "Parameters.parameter[0].resource.entry[2].resource.gender"), 1);
    oo_list_free(&l);
    fj_doc_free(&doc);
    free(text);
    pf_registry_free(r);
}

/* ---- the node path against the copy it replaces: the guide's handover profiles on bad documents ---- */

#define IG_DIR TESTS_DIR "/../ig"
#define GUIDE_BASE "https://fhirgw.nl/fhir/StructureDefinition/"

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    fclose(f);
    if (text)
        text[n] = '\0';
    *len = text ? (size_t)n : 0;
    return text;
}

/* The guide's conformance resources (profiles, extensions, terminology). */
static pf_registry *load_ig(void)
{
    pf_registry *r = pf_registry_new(NULL);
    oo_list issues;
    oo_list_init(&issues, 0);
    const char *dirs[] = {"profiles", "extensions", "terminology"};
    for (size_t k = 0; k < 3; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", IG_DIR, dirs[k]);
        DIR *d = opendir(dir);
        cr_assert_not_null(d, "%s", dir);
        for (struct dirent *ent; (ent = readdir(d));) {
            if (!strstr(ent->d_name, ".json"))
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
            size_t len;
            char *json = read_text(path, &len);
            cr_assert_not_null(json, "%s", path);
            cr_assert(pf_registry_add(r, json, len, ent->d_name, &issues), "%s refused", ent->d_name);
            free(json);
        }
        closedir(d);
    }
    cr_assert(pf_registry_finish(r, &issues), "%s", issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
    return r;
}

/* Append url to the meta.profile of resource o (made when missing): what the copy of the document declared. */
static void declare_profile(json_object *o, const char *url)
{
    json_object *meta = json_object_object_get(o, "meta");
    if (!meta) {
        meta = json_object_new_object();
        json_object_object_add(o, "meta", meta);
    }
    json_object *profiles = json_object_object_get(meta, "profile");
    if (!profiles) {
        profiles = json_object_new_array();
        json_object_object_add(meta, "profile", profiles);
    }
    json_object_array_add(profiles, json_object_new_string(url));
}

/* The resource of entry k of a document Bundle (json-c). */
static json_object *entry_json(json_object *bundle, size_t k)
{
    return json_object_object_get(json_object_array_get_idx(json_object_object_get(bundle, "entry"), k), "resource");
}

/* The way it was: a copy of the document declaring the Composition's and the Patients' profiles, validated alone. */
static oo_list issues_of_copy(const pf_registry *r, const char *document, const char *composition_profile)
{
    json_object *b = json_tokener_parse(document);
    cr_assert_not_null(b);
    size_t n = json_object_array_length(json_object_object_get(b, "entry"));
    for (size_t k = 0; k < n; k++) {
        json_object *res = entry_json(b, k);
        const char *type = json_object_get_string(json_object_object_get(res, "resourceType"));
        if (k == 0 && !strcmp(type, "Composition"))
            declare_profile(res, composition_profile);
        else if (!strcmp(type, "Patient"))
            declare_profile(res, GUIDE_BASE "nl-patient");
    }
    char *copy = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
    json_object_put(b);
    fv_options opts = {.profiles = r, .profile = pf_find(r, GUIDE_BASE "handover-document")};
    oo_list l;
    oo_list_init(&l, 0);
    fv_validate_buffer(copy, strlen(copy), &opts, &l);
    free(copy);
    return l;
}

/* The way it is: the document inside its Parameters, parsed once, its node validated with rules. */
static oo_list issues_of_node(const pf_registry *r, const char *document, const char *composition_profile)
{
    size_t size = strlen(document) + 128;
    char *text = malloc(size);
    snprintf(text, size, "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"document\",\"resource\":%s}]}",
             document);
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &err), "%s", err.message);
    uint32_t bundle = first_parameter_resource(&doc);
    uint32_t entries = fj_get(&doc, bundle, "entry");
    fv_resource_rule rules[16];
    size_t n = 0;
    for (uint32_t k = 0; k < doc.nodes[entries].len && n < 16; k++) {
        uint32_t res = entry_resource_node(&doc, bundle, k);
        uint32_t type = fj_get(&doc, res, "resourceType");
        if (k == 0 && fj_str_eq(&doc, type, "Composition"))
            rules[n++] = (fv_resource_rule){.node = res, .profile = pf_find(r, composition_profile)};
        else if (fj_str_eq(&doc, type, "Patient"))
            rules[n++] = (fv_resource_rule){.node = res, .profile = pf_find(r, GUIDE_BASE "nl-patient")};
    }
    fv_options opts = {.profiles = r,
                       .profile = pf_find(r, GUIDE_BASE "handover-document"),
                       .rules = rules,
                       .rule_count = n};
    oo_list l;
    oo_list_init(&l, 0);
    fv_validate_node(&doc, bundle, &opts, &l);
    fj_doc_free(&doc);
    free(text);
    return l;
}

/* Does b hold a's issue i (severity, code, expression, message) as often as a does? Lines differ: texts do. */
static size_t count_like(const oo_list *l, const oo_issue *x)
{
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++) {
        const oo_issue *y = &l->items[i];
        n += y->severity == x->severity && !strcmp(y->code, x->code) && !strcmp(y->message, x->message) &&
             ((!y->expression && !x->expression) ||
              (y->expression && x->expression && !strcmp(y->expression, x->expression)));
    }
    return n;
}

static void expect_same_issues(const oo_list *old, const oo_list *now, const char *what)
{
    cr_expect_eq(old->count, now->count, "%s: %zu issues from the copy, %zu from the node", what, old->count,
                 now->count);
    cr_expect_eq(old->errors, now->errors, "%s: errors", what);
    for (size_t i = 0; i < old->count; i++)
        cr_expect_eq(count_like(old, &old->items[i]), count_like(now, &old->items[i]), "%s: %s at %s", what,
                     old->items[i].message, old->items[i].expression ? old->items[i].expression : "-");
}

/* The guide's example handover, changed by `change` (json-c), as text. */
static char *changed_example(void (*change)(json_object *bundle))
{
    size_t len;
    char *text = read_text(IG_DIR "/examples/Bundle-handover-document-example.json", &len);
    cr_assert_not_null(text);
    json_object *b = json_tokener_parse(text);
    free(text);
    cr_assert_not_null(b);
    change(b);
    char *out = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PRETTY));
    json_object_put(b);
    return out;
}

/* The examples declare their profiles; without it only the caller's rules make the profiles apply. */
static void undeclared(json_object *b)
{
    json_object_object_del(entry_json(b, 0), "meta");
    json_object_object_del(entry_json(b, 1), "meta");
}

static void no_medication_section(json_object *b)
{
    json_object *sections = json_object_object_get(entry_json(b, 0), "section");
    for (size_t i = 0; i < json_object_array_length(sections); i++) {
        json_object *code = json_object_array_get_idx(
            json_object_object_get(json_object_object_get(json_object_array_get_idx(sections, i), "code"), "coding"),
            0);
        if (!strcmp(json_object_get_string(json_object_object_get(code, "code")), "10160-0")) {
            json_object_array_del_idx(sections, i, 1);
            return;
        }
    }
    cr_assert_fail("the example has a medication section");
}

static void undeclared_no_medication_section(json_object *b)
{
    undeclared(b);
    no_medication_section(b);
}

/* The Patient without its BSN (nl-patient's bsn slice, the document profile's invariant) and a bad gender. */
static void bad_patient(json_object *b)
{
    json_object *patient = entry_json(b, 1);
    json_object_object_del(patient, "identifier");
    json_object_object_add(patient, "gender", json_object_new_string("fine"));
}

static void undeclared_bad_patient(json_object *b)
{
    undeclared(b);
    bad_patient(b);
}

static void script_in_narrative(json_object *b)
{
    json_object *section = json_object_array_get_idx(json_object_object_get(entry_json(b, 0), "section"), 0);
    json_object *text = json_object_object_get(section, "text");
    const char *div = json_object_get_string(json_object_object_get(text, "div"));
    cr_assert_not_null(div, "the example's first section has narrative");
    const char *end = strstr(div, "</div>");
    cr_assert_not_null(end);
    char bad[16384];
    snprintf(bad, sizeof bad, "%.*s<script>alert(1)</script>%s", (int)(end - div), div, end);
    json_object_object_add(text, "div", json_object_new_string(bad));
}

Test(node, gives_the_issues_the_copy_declaring_the_profiles_gave)
{
    pf_registry *r = load_ig();
    static const struct {
        const char *what;
        void (*change)(json_object *);
        const char *composition;
        const char *needle, *at; /* an error whose message holds needle, at expression `at` */
    } cases[] = {
        {"no medication section", no_medication_section, GUIDE_BASE "handover-composition",
         "profile " GUIDE_BASE "handover-composition", "Bundle.entry[0].resource.section"},
        {"no medication section, profiles not declared", undeclared_no_medication_section,
         GUIDE_BASE "handover-composition", "profile " GUIDE_BASE "handover-composition",
         "Bundle.entry[0].resource.section"},
        {"bad patient", bad_patient, GUIDE_BASE "handover-composition", "profile " GUIDE_BASE "nl-patient",
         "Bundle.entry[1].resource.identifier"},
        {"bad patient, profiles not declared", undeclared_bad_patient, GUIDE_BASE "handover-composition",
         "profile " GUIDE_BASE "nl-patient", "Bundle.entry[1].resource.identifier"},
        {"script in narrative", script_in_narrative, GUIDE_BASE "handover-composition", "script",
         "Bundle.entry[0].resource.section[0].text.div"},
        {"a handover as advance notice", undeclared, GUIDE_BASE "advance-notice-composition",
         "profile " GUIDE_BASE "advance-notice-composition", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *doc = changed_example(cases[i].change);
        oo_list old = issues_of_copy(r, doc, cases[i].composition);
        oo_list now = issues_of_node(r, doc, cases[i].composition);
        cr_expect_gt(now.errors, 0, "%s: the document is bad", cases[i].what);
        bool named = false;
        for (size_t k = 0; k < now.count && !named; k++)
            named = now.items[k].severity <= OO_ERROR && strstr(now.items[k].message, cases[i].needle) &&
                    (!cases[i].at || (now.items[k].expression && !strcmp(now.items[k].expression, cases[i].at)));
        cr_expect(named, "%s: an error at %s naming %s", cases[i].what, cases[i].at ? cases[i].at : "-",
                  cases[i].needle);
        expect_same_issues(&old, &now, cases[i].what);
        if (old.count != now.count) {
            cr_log_info("copy:");
            dump(&old);
            cr_log_info("node:");
            dump(&now);
        }
        oo_list_free(&old);
        oo_list_free(&now);
        free(doc);
    }
    pf_registry_free(r);
}

/* ---- locations (fhir/report.h): the unformatted pushes give what rp_push formats, cut included ---- */

#include "fhir/report.h"

static void push_both(rp_reporter *fast, rp_reporter *slow, const char *name, unsigned index)
{
    size_t a = rp_push_name(fast, name, strlen(name)), b = rp_push(slow, "%s%s", slow->len ? "." : "", name);
    cr_assert_eq(a, b, "the marks of %s", name);
    a = rp_push_index(fast, index), b = rp_push(slow, "[%u]", index);
    cr_assert_eq(a, b, "the marks of [%u]", index);
    a = rp_push_text(fast, ".x", 2), b = rp_push(slow, ".x");
    cr_assert_eq(a, b);
    cr_assert_eq(fast->len, slow->len);
    cr_assert_str_eq(rp_path(fast), rp_path(slow));
}

Test(report, unformatted_pushes_match_rp_push_up_to_and_past_the_cut)
{
    static rp_reporter fast, slow;
    rp_init(&fast, NULL, NULL);
    rp_init(&slow, NULL, NULL);
    const char *names[] = {"CarePlan", "activity", "detail", "a", "valueCodeableConcept", "extension"};
    unsigned indexes[] = {0, 9, 10, 4294967295u, 123, 7};
    /* deep enough to pass RP_PATH_CAPACITY: cuts of every length occur on the way */
    int cuts = 0;
    for (int step = 0; step < 400; step++) {
        push_both(&fast, &slow, names[step % 6], indexes[step % 6] + (unsigned)step);
        if (fast.len == RP_PATH_CAPACITY - 1) {
            cuts++;
            cr_assert_str_eq(rp_path(&fast) + fast.len - 3, "...");
        }
        if (step % 5 == 4) { /* pop back a little, as the walks do; past a cut, into the text before it */
            size_t mark = fast.len > 7 ? fast.len - 7 : 0;
            rp_pop(&fast, mark);
            rp_pop(&slow, mark);
        }
    }
    cr_expect_gt(cuts, 20, "the location was cut %d times", cuts);
    rp_pop(&fast, 0);
    rp_pop(&slow, 0);
    push_both(&fast, &slow, "Patient", 3); /* an empty location takes the name without a dot */
    cr_expect_str_eq(rp_path(&fast), "Patient[3].x");
}
