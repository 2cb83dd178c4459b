/*
 * tests/test_indexer.c — search index rows extracted with the core
 * SearchParameter expressions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/search/indexer.h"
#include "gateway/search/search.h"
#include "gateway/util/personal.h"

static ix_indexer *ix;
static fp_arena *arena;

static void setup(void)
{
    char err[256] = "";
    ix = ix_new(fs_r4(), NULL, err, sizeof err);
    cr_assert_not_null(ix);
    arena = fp_arena_new();
}

static void teardown(void)
{
    ix_free(ix);
    fp_arena_free(arena);
}

TestSuite(indexer, .init = setup, .fini = teardown);

static ix_rows extract(const char *json, const char *type)
{
    char *copy = strdup(json);
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(copy, strlen(copy), NULL, &doc, &e), "%s", e.message);
    ix_rows rows = {0};
    char err[256] = "";
    cr_assert(ix_extract(ix, arena, &doc, 0, type, &rows, err, sizeof err), "%s", err);
    /* rows own their strings: the document may go */
    fj_doc_free(&doc);
    free(copy);
    return rows;
}

static const ix_row *find(const ix_rows *r, const char *param, size_t nth)
{
    for (size_t i = 0; i < r->count; i++)
        if (!strcmp(r->rows[i].param, param) && nth-- == 0)
            return &r->rows[i];
    return NULL;
}

static size_t count(const ix_rows *r, const char *param)
{
    size_t n = 0;
    for (size_t i = 0; i < r->count; i++)
        n += !strcmp(r->rows[i].param, param);
    return n;
}

Test(indexer, careplan)
{
    ix_rows r =
        extract("{\"resourceType\":\"CarePlan\",\"id\":\"cp1\",\"meta\":{\"lastUpdated\":\"2024-05-01T10:00:00Z\"},"
                "\"status\":\"active\",\"intent\":\"plan\",\"subject\":{\"reference\":\"Patient/p1\"},"
                "\"identifier\":[{\"system\":\"http://x.org\",\"value\":\"42\"}],"
                "\"period\":{\"start\":\"2024-01-01\"},"
                "\"category\":[{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"736271009\"},"
                "{\"system\":\"http://x.org/c\",\"code\":\"gzsp\"}]}]}",
                "CarePlan");
    const ix_row *status = find(&r, "status", 0);
    cr_assert_not_null(status);
    cr_expect_eq(status->kind, IX_TOKEN);
    cr_expect_str_eq(status->code, "active");
    const ix_row *subject = find(&r, "subject", 0);
    cr_assert_not_null(subject);
    cr_expect_str_eq(subject->ref_type, "Patient");
    cr_expect_str_eq(subject->ref_id, "p1");
    const ix_row *patient = find(&r, "patient", 0);
    cr_assert_not_null(patient, "where(resolve() is Patient) reads the reference's type");
    cr_expect_str_eq(patient->ref_id, "p1");
    const ix_row *ident = find(&r, "identifier", 0);
    cr_assert_not_null(ident);
    cr_expect_str_eq(ident->system, "http://x.org");
    cr_expect_str_eq(ident->code, "42");
    cr_expect_eq(count(&r, "category"), 2);
    const ix_row *date = find(&r, "date", 0);
    cr_assert_not_null(date);
    int64_t lo, hi;
    cr_assert(sq_date_range("2024-01-01", 10, &lo, &hi));
    cr_expect_eq(date->lo_ms, lo);
    cr_expect_eq(date->hi_ms, INT64_MAX, "an open period runs on");
    const ix_row *id = find(&r, "_id", 0);
    cr_assert_not_null(id);
    cr_expect_str_eq(id->code, "cp1");
    cr_expect_not_null(find(&r, "_lastUpdated", 0));
    ix_rows_free(&r);
}

Test(indexer, patient_strings_and_group_subject)
{
    ix_rows r =
        extract("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Müller\",\"given\":[\"Ánna\",\"B\"]}],"
                "\"birthDate\":\"1940-02\",\"telecom\":[{\"system\":\"phone\",\"value\":\"0612345678\"}],"
                "\"generalPractitioner\":[{\"reference\":\"http://other.org/fhir/Practitioner/gp1/_history/3\"}]}",
                "Patient");
    const ix_row *family = find(&r, "family", 0);
    cr_assert_not_null(family);
    cr_expect_str_eq(family->text, "Müller");
    cr_expect_eq(count(&r, "name"), 3, "family and two given names");
    cr_expect_eq(count(&r, "given"), 2);
    const ix_row *birth = find(&r, "birthdate", 0);
    cr_assert_not_null(birth);
    cr_expect_eq(birth->hi_ms - birth->lo_ms + 1, 29LL * 86400000);
    const ix_row *gp = find(&r, "general-practitioner", 0);
    cr_assert_not_null(gp);
    cr_expect_str_eq(gp->ref_type, "Practitioner");
    cr_expect_str_eq(gp->ref_id, "gp1");
    cr_expect_not_null(find(&r, "phone", 0));
    ix_rows_free(&r);

    r = extract("{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                "\"subject\":{\"reference\":\"Group/g1\"}}",
                "CarePlan");
    cr_expect_null(find(&r, "patient", 0), "a Group subject is no patient");
    cr_expect_not_null(find(&r, "subject", 0));
    ix_rows_free(&r);
}

Test(indexer, rewrite)
{
    char *s = ix_rewrite_resolve("CarePlan.subject.where(resolve() is Patient)");
    cr_expect_str_eq(s,
                     "CarePlan.subject.where((reference.startsWith('Patient/') or reference.contains('/Patient/')))");
    free(s);
}

/* Many short type names: the rewritten text grows past three times the expression, and is still whole. */
Test(indexer, rewrite_of_many_resolves_is_whole)
{
    char expression[512] = "X";
    for (int i = 0; i < 12; i++)
        strcat(expression, "|(resolve() is T)");
    char *s = ix_rewrite_resolve(expression);
    cr_assert_not_null(s);
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, "reference.contains('/T/')")) != NULL; p++)
        n++;
    cr_expect_eq(n, 12, "%s", s);
    cr_expect(strlen(s) > 3 * strlen(expression));
    cr_expect_str_eq(s + strlen(s) - strlen("reference.contains('/T/')))"), "reference.contains('/T/')))");
    free(s);
}

/* A number is indexed whole, however many digits it is written with (not cut to a smaller value). */
Test(indexer, long_numbers_are_read_whole)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
             "\"valueQuantity\":{\"value\":%s,\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"}}",
             "1234567890123456789012345678901234567890123456789012345678901234567890");
    ix_rows r = extract(json, "Observation");
    const ix_row *q = find(&r, "value-quantity", 0);
    cr_assert_not_null(q);
    cr_expect_eq(q->kind, IX_QUANTITY);
    cr_expect(q->number > 1.2e69 && q->number < 1.3e69, "%g", q->number);
    cr_expect_str_eq(q->code, "mg");
    ix_rows_free(&r);
}

/* Rows of personal-data parameters are marked when made; others are not (gateway/util/personal.h). */
Test(indexer, personal_data_rows_are_marked)
{
    ix_rows r =
        extract("{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\","
                "\"value\":\"999999990\"}],\"name\":[{\"family\":\"Jansen\",\"given\":[\"Anna\"]}],"
                "\"gender\":\"female\",\"birthDate\":\"1950-01-01\",\"address\":[{\"city\":\"Utrecht\"}],"
                "\"generalPractitioner\":[{\"reference\":\"Practitioner/gp1\"}]}",
                "Patient");
    const char *personal[] = {"identifier", "name", "family", "given", "birthdate", "address", "address-city"};
    for (size_t i = 0; i < sizeof personal / sizeof *personal; i++) {
        const ix_row *row = find(&r, personal[i], 0);
        cr_assert_not_null(row, "%s", personal[i]);
        for (size_t nth = 0; (row = find(&r, personal[i], nth)) != NULL; nth++)
            cr_expect(row->personal, "Patient.%s is personal data", personal[i]);
    }
    const ix_row *identifier = find(&r, "identifier", 0);
    cr_expect_str_eq(identifier->code, "999999990");
    cr_expect_not(find(&r, "gender", 0)->personal, "gender alone identifies no one");
    cr_expect_not(find(&r, "general-practitioner", 0)->personal);
    ix_rows_free(&r);

    r = extract("{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                "\"subject\":{\"reference\":\"Patient/p1\"}}",
                "CarePlan");
    const ix_row *status = find(&r, "status", 0);
    cr_assert_not_null(status);
    cr_expect_not(status->personal, "a CarePlan's status is no personal data");
    for (size_t i = 0; i < r.count; i++)
        cr_expect_not(r.rows[i].personal, "CarePlan.%s", r.rows[i].param);
    ix_rows_free(&r);
}

/* The table names parameters that exist (a typo would silently mark nothing) and is sorted for its search. */
Test(indexer, personal_data_table_names_real_parameters)
{
    for (size_t i = 0; i < pd_param_count; i++) {
        cr_expect_not_null(fs_search_param_find(fs_r4(), pd_params[i].type, pd_params[i].param), "%s.%s",
                           pd_params[i].type, pd_params[i].param);
        cr_expect(pd_is_personal(pd_params[i].type, pd_params[i].param), "%s.%s", pd_params[i].type,
                  pd_params[i].param);
        if (i) {
            int c = strcmp(pd_params[i - 1].type, pd_params[i].type);
            cr_expect(c < 0 || (c == 0 && strcmp(pd_params[i - 1].param, pd_params[i].param) < 0),
                      "%s.%s is out of order", pd_params[i].type, pd_params[i].param);
        }
    }
    cr_expect_not(pd_is_personal("CarePlan", "status"));
    cr_expect_not(pd_is_personal("Patient", "gender"));
    cr_expect_not(pd_is_personal(NULL, "name"));
}
