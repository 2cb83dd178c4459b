/*
 * tests/test_search.c — parsing FHIR search requests.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/search/search.h"

static const sq_limits limits = {50, 500, 16, 32};

static bool simple_kinds(fs_search_kind k)
{
    return k != FS_SEARCH_COMPOSITE && k != FS_SEARCH_SPECIAL;
}

static bool parse(const char *type, const char *query, bool strict, sq_query *q, oo_list *issues)
{
    const fs_type *t = fs_type_by_name(fs_r4(), type, strlen(type));
    cr_assert_not_null(t);
    oo_list_init(issues, 0);
    return sq_parse(fs_r4(), t, query, strict, &limits, simple_kinds, q, issues);
}

Test(search, tokens_dates_references)
{
    sq_query q;
    oo_list issues;
    cr_assert(parse("CarePlan",
                    "status=active,on-hold&date=ge2024-01&subject=Patient/p1&identifier=http://x.org/ids|42"
                    "&category=|plain&_count=20&_sort=-_lastUpdated",
                    false, &q, &issues));
    cr_assert_eq(q.param_count, 5);
    cr_expect_eq(q.count, 20);
    cr_expect(q.sort_descending);
    cr_expect_null(q.sort);
    sq_param *status = &q.params[0];
    cr_expect_str_eq(status->def->code, "status");
    cr_assert_eq(status->value_count, 2);
    cr_expect_str_eq(status->values[1].code, "on-hold");
    cr_expect_null(status->values[1].system);
    sq_param *date = &q.params[1];
    cr_expect_eq(date->values[0].prefix, SQ_GE);
    int64_t lo, hi;
    cr_assert(sq_date_range("2024-01", 7, &lo, &hi));
    cr_expect_eq(date->values[0].lo_ms, lo);
    cr_expect_eq(date->values[0].hi_ms, hi);
    sq_param *subject = &q.params[2];
    cr_expect_str_eq(subject->values[0].ref_type, "Patient");
    cr_expect_str_eq(subject->values[0].ref_id, "p1");
    sq_param *ident = &q.params[3];
    cr_expect_str_eq(ident->values[0].system, "http://x.org/ids");
    cr_expect_str_eq(ident->values[0].code, "42");
    cr_expect_str_eq(q.params[4].values[0].system, "");
    cr_expect_str_eq(q.params[4].values[0].code, "plain");
    sq_free(&q);
    oo_list_free(&issues);
}

Test(search, date_ranges)
{
    int64_t lo, hi;
    cr_assert(sq_date_range("2024", 4, &lo, &hi));
    cr_expect_eq(lo, 1704067200000LL); /* 2024-01-01T00:00:00Z */
    cr_expect_eq(hi, 1704067200000LL + 366LL * 86400000 - 1);
    cr_assert(sq_date_range("2024-02", 7, &lo, &hi));
    cr_expect_eq(hi - lo + 1, 29LL * 86400000);
    cr_assert(sq_date_range("2024-03-01T10:00:00+01:00", 25, &lo, &hi));
    cr_expect_eq(lo, 1709283600000LL); /* 09:00Z */
    cr_expect_eq(hi, lo + 999);
    cr_assert(sq_date_range("2024-03-01T10:00:00.25Z", 23, &lo, &hi));
    cr_expect_eq(lo % 1000, 250);
    cr_expect_not(sq_date_range("2023-02-29", 10, &lo, &hi));
    cr_expect_not(sq_date_range("2024-13", 7, &lo, &hi));
    cr_expect_not(sq_date_range("24-01-01", 8, &lo, &hi));
    cr_expect_not(sq_date_range("2024-01-01T10", 13, &lo, &hi));
}

Test(search, modifiers_escapes_and_missing)
{
    sq_query q;
    oo_list issues;
    cr_assert(parse("Patient",
                    "name:contains=van%20der&gender:not=male&birthdate:missing=true"
                    "&family:exact=a\\,b&general-practitioner:Practitioner=p1",
                    false, &q, &issues));
    cr_assert_eq(q.param_count, 5);
    cr_expect_eq(q.params[0].modifier, SQ_MOD_CONTAINS);
    cr_expect_str_eq(q.params[0].values[0].text, "van der");
    cr_expect_eq(q.params[1].modifier, SQ_MOD_NOT);
    cr_expect_eq(q.params[2].modifier, SQ_MOD_MISSING);
    cr_expect(q.params[2].values[0].missing);
    cr_expect_eq(q.params[3].value_count, 1, "an escaped comma does not split");
    cr_expect_str_eq(q.params[3].values[0].text, "a,b");
    cr_expect_eq(q.params[4].modifier, SQ_MOD_TYPE);
    cr_expect_str_eq(q.params[4].target_type, "Practitioner");
    sq_free(&q);
    oo_list_free(&issues);
}

Test(search, lenient_and_strict)
{
    sq_query q;
    oo_list issues;
    cr_assert(parse("Task", "owner=Organization/o1&foo=bar&_elements=id&_include=Task:owner", false, &q, &issues));
    cr_expect_eq(q.param_count, 1);
    cr_expect_str_eq(q.ignored, "foo");
    cr_expect_eq(q.subset.mode, FSUB_ELEMENTS, "_elements is applied now");
    cr_assert_eq(q.subset.count, 1);
    cr_expect_str_eq(q.subset.names[0], "id");
    cr_assert_eq(q.include_count, 1, "_include is applied now");
    cr_expect_str_eq(q.includes[0].source_type, "Task");
    cr_expect_str_eq(q.includes[0].ref->code, "owner");
    cr_expect_not(q.includes[0].reverse);
    sq_free(&q);
    oo_list_free(&issues);
    cr_expect_not(parse("Task", "owner=Organization/o1&foo=bar", true, &q, &issues));
    cr_assert_eq(issues.count, 1);
    cr_expect_str_eq(issues.items[0].expression, "foo");
    oo_list_free(&issues);
}

Test(search, bad_values)
{
    sq_query q;
    oo_list issues;
    const char *bad[] = {"date=2024-13",         "_count=x",  "_count=-1", "name=%zz", "date:exact=2024",
                         "status:missing=maybe", "_sort=nope"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_not(parse("CarePlan", bad[i], false, &q, &issues), "%s should be refused", bad[i]);
        cr_expect_geq(issues.errors, 1, "%s", bad[i]);
        oo_list_free(&issues);
    }
    cr_assert(parse("CarePlan", "_count=100000", false, &q, &issues));
    cr_expect_eq(q.count, 500, "clamped to the maximum");
    sq_free(&q);
    oo_list_free(&issues);
}

Test(search, quantity_system_and_number_ranges)
{
    sq_query q;
    oo_list issues;
    cr_assert(parse("Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg,3||kg,ge7", false, &q, &issues));
    sq_value *v = q.params[0].values;
    cr_expect_str_eq(v[0].unit_system, "http://unitsofmeasure.org");
    cr_expect_str_eq(v[0].unit, "mg");
    double lo, hi;
    sq_number_range(&v[0], &lo, &hi);
    cr_expect_eq(lo, 5.35, "the bounds are the decimals themselves, not 5.4 - 0.05");
    cr_expect_eq(hi, 5.45);
    cr_expect_null(v[1].unit_system, "an empty system: any");
    cr_expect_str_eq(v[1].unit, "kg");
    sq_number_range(&v[1], &lo, &hi);
    cr_expect_eq(lo, 2.5);
    cr_expect_eq(hi, 3.5);
    cr_expect_null(v[2].unit);
    sq_free(&q);
    oo_list_free(&issues);
}

Test(search, chains_and_has)
{
    sq_query q;
    oo_list issues;
    cr_assert(parse("Observation",
                    "subject:Patient.organization.name:exact=Zorg&subject.name=x&_has:Provenance:target:agent=y", true,
                    &q, &issues));
    cr_assert_eq(q.param_count, 3);
    sq_param *p = &q.params[0];
    cr_assert_eq(p->chain_len, 2);
    cr_expect_str_eq(p->chain[0].ref->code, "subject");
    cr_expect_str_eq(p->chain[0].type, "Patient");
    cr_expect_not(p->chain[0].reverse);
    cr_expect_str_eq(p->chain[1].ref->code, "organization");
    cr_expect_null(p->chain[1].type);
    cr_expect_str_eq(p->def->code, "name");
    cr_expect_eq(p->modifier, SQ_MOD_EXACT);
    cr_expect_str_eq(p->values[0].text, "Zorg");
    cr_expect_null(q.params[1].chain[0].type, "no type: any type with a name parameter");
    cr_expect_eq(q.params[1].def->kind, FS_SEARCH_STRING);
    p = &q.params[2];
    cr_assert_eq(p->chain_len, 1);
    cr_expect(p->chain[0].reverse);
    cr_expect_str_eq(p->chain[0].type, "Provenance");
    cr_expect_str_eq(p->chain[0].ref->code, "target");
    cr_expect_str_eq(p->def->code, "agent");
    sq_free(&q);
    oo_list_free(&issues);

    /* an unknown first name is an unknown parameter: ignored when lenient, refused when strict */
    cr_assert(parse("Observation", "nosuch.name=1", false, &q, &issues));
    cr_expect_str_eq(q.ignored, "nosuch.name");
    sq_free(&q);
    oo_list_free(&issues);
    cr_expect_not(parse("Observation", "nosuch.name=1", true, &q, &issues));
    oo_list_free(&issues);

    const char *bad[] = {"subject:Patient.nosuch=1", "code.name=1",
                         "_has:Nope:x:y=1",          "_has:Observation:code=1",
                         "subject.a.b.c.d=1",        "subject:Patient.organization.partof.partof.name=1",
                         "subject:Nope.name=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_not(parse("Observation", bad[i], false, &q, &issues), "%s", bad[i]);
        cr_expect_gt(issues.count, 0, "%s", bad[i]);
        oo_list_free(&issues);
    }
}

Test(search, includes)
{
    sq_query q;
    oo_list issues;
    cr_assert(parse("Patient",
                    "_revinclude=Observation:subject:Patient&_revinclude:iterate=Provenance:target&_include=*", true,
                    &q, &issues));
    cr_assert_eq(q.include_count, 3);
    cr_expect(q.includes[0].reverse);
    cr_expect_str_eq(q.includes[0].source_type, "Observation");
    cr_expect_str_eq(q.includes[0].target_type, "Patient");
    cr_expect(q.includes[1].iterate);
    cr_expect_null(q.includes[2].ref, "* : every reference parameter");
    cr_expect_null(q.includes[2].source_type);
    sq_free(&q);
    oo_list_free(&issues);
    const char *bad[] = {"_include=Patient:name", "_include=Nope:x", "_revinclude=*", "_include=Patient:link:Nope"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_not(parse("Patient", bad[i], false, &q, &issues), "%s", bad[i]);
        oo_list_free(&issues);
    }
}
