/*
 * tests/test_primitive.c — lexical checks of the FHIR R4 primitives
 * (fhir/primitive.h).
 *
 * Table-driven: for each kind a table of values that must pass and a table
 * of values that must fail, each failing value with a fragment of the
 * message we expect, so a value rejected for the wrong reason is caught
 * too. Values are given with explicit lengths (the API takes bytes, not C
 * strings), which also lets a table hold embedded NULs. Valid tables include
 * values copied from the official R4 examples (hl7.fhir.r4.examples 4.0.1).
 */
#include "fhir/primitive.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

typedef struct bad_case {
    const char *s;
    size_t n;
    const char *why; /* fragment of the expected message */
} bad_case;

typedef struct ok_case {
    const char *s;
    size_t n;
} ok_case;

#define OK(lit)              \
    {                        \
        lit, sizeof(lit) - 1 \
    }
#define BAD(lit, why)             \
    {                             \
        lit, sizeof(lit) - 1, why \
    }
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void expect_valid(fprim_kind k, const ok_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const char *msg = fprim_check(k, cases[i].s, cases[i].n);
        cr_expect_null(msg, "%s \"%.*s\" should be valid, got: %s", fprim_name(k), (int)cases[i].n, cases[i].s, msg);
    }
}

static void expect_invalid(fprim_kind k, const bad_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const char *msg = fprim_check(k, cases[i].s, cases[i].n);
        cr_expect_not_null(msg, "%s \"%.*s\" should be invalid", fprim_name(k), (int)cases[i].n, cases[i].s);
        if (msg)
            cr_expect(strstr(msg, cases[i].why) != NULL, "%s \"%.*s\": message \"%s\" lacks \"%s\"", fprim_name(k),
                      (int)cases[i].n, cases[i].s, msg, cases[i].why);
    }
}

#define CHECK_VALID(k, t) expect_valid(k, t, COUNT(t))
#define CHECK_INVALID(k, t) expect_invalid(k, t, COUNT(t))

/* ---- names and JSON types ------------------------------------------------- */

static const char *const all_names[] = {
    "boolean",  "integer", "string", "decimal", "uri", "url",      "canonical",   "base64Binary", "instant", "date",
    "dateTime", "time",    "code",   "oid",     "id",  "markdown", "unsignedInt", "positiveInt",  "uuid",    "xhtml",
};

Test(primitive_names, every_kind_round_trips)
{
    cr_assert_eq(COUNT(all_names), (size_t)FPRIM_COUNT - 1);
    for (size_t i = 0; i < COUNT(all_names); i++) {
        fprim_kind k = fprim_from_name(all_names[i]);
        cr_expect_neq(k, FPRIM_NONE, "%s not recognised", all_names[i]);
        cr_expect_str_eq(fprim_name(k), all_names[i]);
    }
    for (int k = FPRIM_NONE + 1; k < FPRIM_COUNT; k++)
        cr_expect_eq(fprim_from_name(fprim_name((fprim_kind)k)), (fprim_kind)k);
}

Test(primitive_names, specific_mappings)
{
    cr_expect_eq(fprim_from_name("dateTime"), FPRIM_DATETIME);
    cr_expect_eq(fprim_from_name("base64Binary"), FPRIM_BASE64BINARY);
    cr_expect_eq(fprim_from_name("positiveInt"), FPRIM_POSITIVEINT);
    cr_expect_eq(fprim_from_name("unsignedInt"), FPRIM_UNSIGNEDINT);
    cr_expect_eq(fprim_from_name("xhtml"), FPRIM_XHTML);
    cr_expect_eq(fprim_from_name("canonical"), FPRIM_CANONICAL);
}

Test(primitive_names, unknown_names)
{
    static const char *const unknown[] = {"",          "DateTime", "datetime", "Boolean",   "String",
                                          "integer64", "Patient",  "Quantity", "dateTime ", "base64binary"};
    for (size_t i = 0; i < COUNT(unknown); i++)
        cr_expect_eq(fprim_from_name(unknown[i]), FPRIM_NONE, "\"%s\"", unknown[i]);
    cr_expect_eq(fprim_from_name(NULL), FPRIM_NONE);
    cr_expect_null(fprim_name(FPRIM_NONE));
    cr_expect_null(fprim_name(FPRIM_COUNT));
}

Test(primitive_names, json_types)
{
    for (int k = FPRIM_NONE + 1; k < FPRIM_COUNT; k++) {
        fprim_json want = FPRIM_JSON_STRING;
        if (k == FPRIM_BOOLEAN)
            want = FPRIM_JSON_BOOLEAN;
        else if (k == FPRIM_INTEGER || k == FPRIM_DECIMAL || k == FPRIM_UNSIGNEDINT || k == FPRIM_POSITIVEINT)
            want = FPRIM_JSON_NUMBER;
        cr_expect_eq(fprim_json_type((fprim_kind)k), want, "%s", fprim_name((fprim_kind)k));
    }
}

/* ---- dispatch edge cases -------------------------------------------------- */

Test(primitive_check, boolean_is_not_checked)
{
    cr_expect_null(fprim_check(FPRIM_BOOLEAN, "true", 4));
    cr_expect_null(fprim_check(FPRIM_BOOLEAN, NULL, 0));
}

Test(primitive_check, unknown_kind)
{
    cr_expect_not_null(fprim_check(FPRIM_NONE, "x", 1));
    cr_expect_not_null(fprim_check(FPRIM_COUNT, "x", 1));
}

Test(primitive_check, empty_is_invalid_for_every_kind)
{
    for (int k = FPRIM_NONE + 1; k < FPRIM_COUNT; k++) {
        if (k == FPRIM_BOOLEAN)
            continue;
        cr_expect_not_null(fprim_check((fprim_kind)k, "", 0), "%s", fprim_name((fprim_kind)k));
        cr_expect_not_null(fprim_check((fprim_kind)k, NULL, 0), "%s", fprim_name((fprim_kind)k));
    }
}

Test(primitive_check, length_is_respected)
{
    /* Only the first len bytes count: what follows must not be looked at. */
    cr_expect_null(fprim_check(FPRIM_DATE, "2020-01-01garbage", 10));
    cr_expect_null(fprim_check(FPRIM_INTEGER, "12x", 2));
    cr_expect_not_null(fprim_check(FPRIM_DATE, "2020-01-01", 9));
}

/* ---- integer, unsignedInt, positiveInt ------------------------------------ */

Test(primitive_integer, valid)
{
    static const ok_case t[] = {
        OK("0"),           OK("-0"),      OK("1"),           OK("-1"), OK("42"),  OK("2147483647"),
        OK("-2147483648"), OK("1000000"), OK("-2147483647"), OK("8"),  OK("250"), /* from examples */
    };
    CHECK_VALID(FPRIM_INTEGER, t);
}

Test(primitive_integer, invalid)
{
    static const bad_case t[] = {
        BAD("2147483648", "32-bit range"),
        BAD("-2147483649", "32-bit range"),
        BAD("99999999999999999999999", "32-bit range"),
        BAD("-99999999999999999999999", "32-bit range"),
        BAD("01", "leading zeros"),
        BAD("-01", "leading zeros"),
        BAD("00", "leading zeros"),
        BAD("1.0", "whole number"),
        BAD("1.5", "whole number"),
        BAD("1e3", "whole number"),
        BAD("1E3", "whole number"),
        BAD("+1", "not a valid integer"),
        BAD("-", "not a valid integer"),
        BAD("--1", "not a valid integer"),
        BAD(" 1", "not a valid integer"),
        BAD("1 ", "not a valid integer"),
        BAD("0x10", "not a valid integer"),
        BAD("one", "not a valid integer"),
        BAD("12a", "not a valid integer"),
    };
    CHECK_INVALID(FPRIM_INTEGER, t);
}

Test(primitive_unsignedint, valid)
{
    static const ok_case t[] = {OK("0"), OK("1"), OK("10"), OK("2147483647"), OK("5")};
    CHECK_VALID(FPRIM_UNSIGNEDINT, t);
}

Test(primitive_unsignedint, invalid)
{
    static const bad_case t[] = {
        BAD("-1", "sign"),          BAD("-0", "sign"),          BAD("+1", "not a valid unsignedInt"),
        BAD("2147483648", "range"), BAD("4294967295", "range"), BAD("007", "leading zeros"),
        BAD("1.0", "whole number"), BAD("1e2", "whole number"), BAD("x", "not a valid unsignedInt"),
    };
    CHECK_INVALID(FPRIM_UNSIGNEDINT, t);
}

Test(primitive_positiveint, valid)
{
    static const ok_case t[] = {OK("1"), OK("2"), OK("99"), OK("2147483647")};
    CHECK_VALID(FPRIM_POSITIVEINT, t);
}

Test(primitive_positiveint, invalid)
{
    static const bad_case t[] = {
        BAD("0", "range"),          BAD("-1", "sign"),
        BAD("-0", "sign"),          BAD("2147483648", "range"),
        BAD("01", "leading zeros"), BAD("1.0", "whole number"),
        BAD("1E1", "whole number"), BAD("+5", "not a valid positiveInt"),
    };
    CHECK_INVALID(FPRIM_POSITIVEINT, t);
}

/* ---- decimal -------------------------------------------------------------- */

Test(primitive_decimal, valid)
{
    static const ok_case t[] = {
        OK("0"),
        OK("-0"),
        OK("0.0"),
        OK("1"),
        OK("-1"),
        OK("3.14159"),
        OK("-0.001"),
        OK("10.50"),
        OK("1e10"),
        OK("1E10"),
        OK("1e+10"),
        OK("1e-10"),
        OK("-1.5E-3"),
        OK("0e0"),
        OK("123456789012345678901234567890.123456789012345678901234567890"),
        /* Observation/decimal, the official edge-case example */
        OK("1.0"),
        OK("1.00"),
        OK("1E-22"),
        OK("1000000000000000000"),
        OK("1.000000000000000000E-245"),
        OK("-1.000000000000000000E+245"),
        OK("0.92"),
        OK("44.3"),
        OK("1400.0"),
        /* the ends of the double range, and zero with any exponent */
        OK("1.7976931348623157e308"),
        OK("-1.7976931348623157E+308"),
        OK("179.76931348623157e306"),
        OK("4.9406564584124654e-324"),
        OK("-0.049406564584124654e-322"),
        OK("0e-99999"),
        OK("0.000e400"),
        OK("1e308"),
        OK("2.2250738585072014e-308"),
    };
    CHECK_VALID(FPRIM_DECIMAL, t);
}

Test(primitive_decimal, invalid)
{
    static const bad_case t[] = {
        BAD("01", "leading zeros"),
        BAD("-01.5", "leading zeros"),
        BAD("1.", "after the '.'"),
        BAD("1.e5", "after the '.'"),
        BAD(".5", "not a valid decimal"),
        BAD("-.5", "not a valid decimal"),
        BAD("+1", "not a valid decimal"),
        BAD("1e", "exponent"),
        BAD("1e+", "exponent"),
        BAD("1E-", "exponent"),
        BAD("1.5.2", "not a valid decimal"),
        BAD("NaN", "not a valid decimal"),
        BAD("Infinity", "not a valid decimal"),
        BAD("1,5", "not a valid decimal"),
        BAD(" 1", "not a valid decimal"),
        BAD("1 ", "not a valid decimal"),
        BAD("-", "not a valid decimal"),
        BAD("0x1p3", "not a valid decimal"),
        /* outside the double range: search could not compare them */
        BAD("1e400", "larger in magnitude than 1.7976931348623157e308"),
        BAD("-1e400", "larger in magnitude"),
        BAD("1.7976931348623158e308", "larger in magnitude"),
        BAD("1000e306", "larger in magnitude"),
        BAD("1e99999999999999999999", "larger in magnitude"),
        BAD("1e-400", "smaller in magnitude than 4.9406564584124654e-324"),
        BAD("-0.0001e-321", "smaller in magnitude"),
        BAD("4.9406564584124653e-324", "smaller in magnitude"),
    };
    CHECK_INVALID(FPRIM_DECIMAL, t);
}

/* ---- string, markdown ----------------------------------------------------- */

static const ok_case string_ok[] = {
    OK("a"),
    OK(" "),
    OK("hello world"),
    OK("line 1\nline 2\r\n\tindented"),
    OK("  leading and trailing  "),
    OK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), /* UTF-8: é € 😀 */
    OK("\x7f"),                                      /* DEL is not below U+0020 */
    OK("Peter James Chalmers"),
    OK("Generated Narrative with Details"),
};

static const bad_case string_bad[] = {
    BAD("\0", "control character"),     BAD("a\0b", "control character"),        BAD("\x01", "control character"),
    BAD("bell\a", "control character"), BAD("back\bspace", "control character"), BAD("vt\v", "control character"),
    BAD("ff\f", "control character"),   BAD("\x1b[0m", "control character"),     BAD("\x1f", "control character"),
};

Test(primitive_string, valid)
{
    CHECK_VALID(FPRIM_STRING, string_ok);
}
Test(primitive_string, invalid)
{
    CHECK_INVALID(FPRIM_STRING, string_bad);
}
Test(primitive_markdown, valid)
{
    CHECK_VALID(FPRIM_MARKDOWN, string_ok);
}
Test(primitive_markdown, invalid)
{
    CHECK_INVALID(FPRIM_MARKDOWN, string_bad);
}

Test(primitive_markdown, markdown_syntax)
{
    static const ok_case t[] = {OK("# Title\n\n* item\n* **bold** `code`\n\n> quote"), OK("[link](http://x)")};
    CHECK_VALID(FPRIM_MARKDOWN, t);
}

/* The spec limit is 1 MB = 1024*1024 characters. */
Test(primitive_string, one_megabyte_limit)
{
    const size_t max = (size_t)1024 * 1024;
    char *buf = malloc(2 * max + 2);
    cr_assert_not_null(buf);

    memset(buf, 'a', max + 1);
    cr_expect_null(fprim_check(FPRIM_STRING, buf, max));
    const char *msg = fprim_check(FPRIM_STRING, buf, max + 1);
    cr_expect(msg && strstr(msg, "1 MB"), "got %s", msg);
    cr_expect_not_null(fprim_check(FPRIM_MARKDOWN, buf, max + 1));

    /* 1048576 two-byte characters: 2 MB of bytes but exactly the limit. */
    for (size_t i = 0; i < max + 1; i++)
        memcpy(buf + 2 * i, "\xc3\xa9", 2);
    cr_expect_null(fprim_check(FPRIM_STRING, buf, 2 * max));
    cr_expect_not_null(fprim_check(FPRIM_STRING, buf, 2 * max + 2));
    free(buf);
}

/* ---- code ----------------------------------------------------------------- */

Test(primitive_code, valid)
{
    static const ok_case t[] = {
        OK("a"),
        OK("final"),
        OK("entered-in-error"),
        OK("38126-9"),
        OK("_MississippiValley"),
        OK("text/plain; charset=UTF-8, image/png"), /* a real valueCode from the examples */
        OK("a b"),
        OK("a\tb"),
        OK("a\nb"),
        OK("one two three"),
        OK("http://loinc.org|1234-5"),
        OK("caf\xc3\xa9"),
        OK("<"),
        OK("%"),
    };
    CHECK_VALID(FPRIM_CODE, t);
}

Test(primitive_code, invalid)
{
    static const bad_case t[] = {
        BAD(" a", "start or end"),   BAD("a ", "start or end"),    BAD(" ", "start or end"),
        BAD("\ta", "start or end"),  BAD("a\n", "start or end"),   BAD("a  b", "consecutive"),
        BAD("a \tb", "consecutive"), BAD("a\r\nb", "consecutive"), BAD("a   b c", "consecutive"),
        BAD("a\x01", "control"),     BAD("a\0b", "control"),       BAD("a\vb", "control"),
    };
    CHECK_INVALID(FPRIM_CODE, t);
}

/* ---- id ------------------------------------------------------------------- */

Test(primitive_id, valid)
{
    static const ok_case t[] = {
        OK("a"),
        OK("1"),
        OK("-"),
        OK("."),
        OK("example"),
        OK("ABC-123.def"),
        OK("1234567890123456789012345678901234567890123456789012345678901234"), /* 64 */
        /* from the examples */
        OK("blood-tubes-supply"),
        OK("p2"),
        OK("4.3.55"),
        OK("hla-1"),
        OK("R3500"),
        OK("o24-18"),
        OK("ElementDefinition.type.versioning"),
        OK("de-MeasureReport.evaluatedResource"),
        OK("77654"),
    };
    CHECK_VALID(FPRIM_ID, t);
}

Test(primitive_id, invalid)
{
    static const bad_case t[] = {
        BAD("12345678901234567890123456789012345678901234567890123456789012345", "longer than 64"),
        BAD("a_b", "not a valid id"),
        BAD("a b", "not a valid id"),
        BAD("a/b", "not a valid id"),
        BAD("Patient/123", "not a valid id"),
        BAD("caf\xc3\xa9", "not a valid id"),
        BAD(" a", "not a valid id"),
        BAD("a:b", "not a valid id"),
        BAD("id#1", "not a valid id"),
    };
    CHECK_INVALID(FPRIM_ID, t);
}

/* ---- uri, url, canonical -------------------------------------------------- */

static const ok_case uri_ok[] = {
    OK("http://hl7.org/fhir"),
    OK("urn:oid:1.2.3"),
    OK("urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7"),
    OK("Patient/123"),
    OK("#contained"),
    OK("mailto:a@b.org"),
    OK("http://x/%20y"),
    OK("http://hl7.org/fhir/StructureDefinition/servicerequest-genetics"),
    OK("http://terminology.hl7.org/CodeSystem/chromosome-human|4.0.1"),
    OK("http://example.org/fhir/\xc3\xa9"), /* IRIs: non-ASCII is not whitespace */
};

static const bad_case uri_bad[] = {
    BAD("http://a b", "whitespace"), BAD(" http://a", "whitespace"), BAD("http://a ", "whitespace"),
    BAD("a\tb", "whitespace"),       BAD("a\nb", "whitespace"),      BAD("a\rb", "whitespace"),
    BAD("a\x01", "control"),         BAD("a\0b", "control"),         BAD("a\x7f", "control"),
};

Test(primitive_uri, valid)
{
    CHECK_VALID(FPRIM_URI, uri_ok);
}
Test(primitive_uri, invalid)
{
    CHECK_INVALID(FPRIM_URI, uri_bad);
}
Test(primitive_url, valid)
{
    CHECK_VALID(FPRIM_URL, uri_ok);
}
Test(primitive_url, invalid)
{
    CHECK_INVALID(FPRIM_URL, uri_bad);
}
Test(primitive_canonical, valid)
{
    CHECK_VALID(FPRIM_CANONICAL, uri_ok);
}
Test(primitive_canonical, invalid)
{
    CHECK_INVALID(FPRIM_CANONICAL, uri_bad);
}

/* ---- oid ------------------------------------------------------------------ */

Test(primitive_oid, valid)
{
    static const ok_case t[] = {
        OK("urn:oid:0.0"),
        OK("urn:oid:1.2"),
        OK("urn:oid:2.0"),
        OK("urn:oid:1.2.3.0.10"),
        OK("urn:oid:1.2.840.10008.1.2.1"),
        OK("urn:oid:2.999999999999999999999"),
        /* from the examples */
        OK("urn:oid:2.16.840.1.113883.4.642.3.739"),
        OK("urn:oid:2.16.840.1.113883.5.31"),
        OK("urn:oid:2.16.840.1.113883.1.11.10879"),
        OK("urn:oid:2.16.840.1.113883.18.370"),
    };
    CHECK_VALID(FPRIM_OID, t);
}

Test(primitive_oid, invalid)
{
    static const bad_case t[] = {
        BAD("urn:oid:1", "at least two arcs"),  BAD("urn:oid:3.1", "arc 0, 1 or 2"),
        BAD("urn:oid:9.1", "arc 0, 1 or 2"),    BAD("urn:oid:", "arc 0, 1 or 2"),
        BAD("urn:oid:1.02", "leading zeros"),   BAD("urn:oid:1.2.00", "leading zeros"),
        BAD("urn:oid:1.", "not a valid oid"),   BAD("urn:oid:1..2", "not a valid oid"),
        BAD("urn:oid:1.2.", "not a valid oid"), BAD("urn:oid:.1.2", "arc 0, 1 or 2"),
        BAD("urn:oid:12.3", "not a valid oid"), BAD("urn:oid:1.2a", "not a valid oid"),
        BAD("urn:oid:1.2 ", "not a valid oid"), BAD("1.2.840.10008", "not a valid oid"),
        BAD("URN:OID:1.2", "not a valid oid"),  BAD("urn:oid1.2", "not a valid oid"),
    };
    CHECK_INVALID(FPRIM_OID, t);
}

/* ---- uuid ----------------------------------------------------------------- */

Test(primitive_uuid, valid)
{
    static const ok_case t[] = {
        OK("urn:uuid:00000000-0000-0000-0000-000000000000"),
        OK("urn:uuid:ffffffff-ffff-ffff-ffff-ffffffffffff"),
        /* from the examples */
        OK("urn:uuid:f8742192-860b-473d-affb-6074d9c5adaf"),
        OK("urn:uuid:299bcf3c-d9b5-445b-8617-3bc1b2a0f074"),
        OK("urn:uuid:531b4f79-c09f-45c9-be2e-6f187b2a2cda"),
        OK("urn:uuid:e3c2f947-f990-4404-8c2f-9fa7e8106726"),
        OK("urn:uuid:7e5376ff-85d1-4a98-824c-3295e684416e"),
    };
    CHECK_VALID(FPRIM_UUID, t);
}

Test(primitive_uuid, invalid)
{
    static const bad_case t[] = {
        BAD("urn:uuid:F8742192-860B-473D-AFFB-6074D9C5ADAF", "lowercase"),
        BAD("urn:uuid:f8742192-860b-473d-affb-6074d9c5adaF", "lowercase"),
        BAD("URN:UUID:f8742192-860b-473d-affb-6074d9c5adaf", "not a valid uuid"),
        BAD("f8742192-860b-473d-affb-6074d9c5adaf", "not a valid uuid"),
        BAD("urn:uuid:f8742192860b473daffb6074d9c5adaf", "not a valid uuid"),
        BAD("urn:uuid:f8742192-860b-473d-affb-6074d9c5ada", "not a valid uuid"),
        BAD("urn:uuid:f8742192-860b-473d-affb-6074d9c5adaf0", "not a valid uuid"),
        BAD("urn:uuid:f8742192-860b-473d-affb6-074d9c5adaf", "not a valid uuid"),
        BAD("urn:uuid:g8742192-860b-473d-affb-6074d9c5adaf", "not a valid uuid"),
        BAD("urn:uuid:{f8742192-860b-473d-affb-6074d9c5ada}", "not a valid uuid"),
        BAD("urn:uuid:", "not a valid uuid"),
    };
    CHECK_INVALID(FPRIM_UUID, t);
}

/* ---- base64Binary --------------------------------------------------------- */

Test(primitive_base64, valid)
{
    static const ok_case t[] = {
        OK("QUJD"),
        OK("QQ=="),
        OK("QUI="),
        OK("AAAA"),
        OK("ab+/"),
        OK("++//"),
        OK("QUJD\nREVG"),
        OK("  QUJD  "),
        OK("QU JD"),
        OK("QUJD\r\nRA=="),
        OK("QUJDRA= ="),
        /* from the examples */
        OK("SGVsbG8="),
        OK("dG9vIGJpZyB0b28gaW5jbHVkZSB0aGUgd2hvbGU="),
        OK("cGRmSW5CYXNlNjRCaW5hcnk="),
        OK("YXNkYXNkYXNkYXNkYXNk"),
        OK("Li4u"),
        OK("2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
        OK("571ef9c5655840f324e679072ed62b1b95eef8a0"),
    };
    CHECK_VALID(FPRIM_BASE64BINARY, t);
}

Test(primitive_base64, invalid)
{
    static const bad_case t[] = {
        BAD("QUJ", "multiple of 4"),        BAD("QUJDR", "multiple of 4"),  BAD("Q", "multiple of 4"),
        BAD("QQ=", "multiple of 4"),        BAD("Q===", "too much"),        BAD("====", "too much"),
        BAD("QQ==QQ==", "only at the end"), BAD("Q=QQ", "only at the end"), BAD("=QUJ", "only at the end"),
        BAD("QUJD!", "only A-Z"),           BAD("QU-D", "only A-Z"),        BAD("QU_D", "only A-Z"),
        BAD("QUJ\xc3\xa9", "only A-Z"),     BAD("QU\0D", "only A-Z"),       BAD("   ", "only whitespace"),
        BAD("\n", "only whitespace"),
    };
    CHECK_INVALID(FPRIM_BASE64BINARY, t);
}

/* ---- date ----------------------------------------------------------------- */

Test(primitive_date, valid)
{
    static const ok_case t[] = {
        OK("2020"),
        OK("0001"),
        OK("9999"),
        OK("2020-01"),
        OK("2020-12"),
        OK("2020-01-31"),
        OK("2020-02-29"),
        OK("2000-02-29"),
        OK("1600-02-29"),
        OK("2021-02-28"),
        OK("2021-04-30"),
        OK("1999-12-31"),
        OK("0001-01-01"),
        /* from the examples */
        OK("1955-01-06"),
        OK("1975-12-07"),
        OK("1982-08-02"),
        OK("2016-05-18"),
        OK("1974-12-25"),
        OK("2014-02"),
        OK("1999-05"),
    };
    CHECK_VALID(FPRIM_DATE, t);
}

Test(primitive_date, invalid)
{
    static const bad_case t[] = {
        BAD("0000", "year must be 0001 to 9999"),
        BAD("0000-01-01", "year must be 0001 to 9999"),
        BAD("2020-00", "month must be 01 to 12"),
        BAD("2020-13", "month must be 01 to 12"),
        BAD("2020-01-00", "day must be 01 to 31"),
        BAD("2020-01-32", "day must be 01 to 31"),
        BAD("2021-02-29", "leap years"),
        BAD("1900-02-29", "leap years"),
        BAD("2100-02-29", "leap years"),
        BAD("2020-02-30", "does not exist"),
        BAD("2020-04-31", "does not exist"),
        BAD("2020-06-31", "does not exist"),
        BAD("2020-09-31", "does not exist"),
        BAD("2020-11-31", "does not exist"),
        BAD("2020-01-01T10:00:00Z", "must not have a time"),
        BAD("20", "not a valid date"),
        BAD("202", "not a valid date"),
        BAD("20201", "not a valid date"),
        BAD("2020-1", "not a valid date"),
        BAD("2020-1-01", "not a valid date"),
        BAD("2020-01-1", "not a valid date"),
        BAD("2020-01-011", "not a valid date"),
        BAD("2020-", "not a valid date"),
        BAD("2020-01-", "not a valid date"),
        BAD("2020/01/01", "not a valid date"),
        BAD("20200101", "not a valid date"),
        BAD("-2020", "not a valid date"),
        BAD("2020-01-01 ", "not a valid date"),
        BAD(" 2020", "not a valid date"),
        BAD("01-01-2020", "not a valid date"),
        BAD("2020-01-01Z", "not a valid date"),
    };
    CHECK_INVALID(FPRIM_DATE, t);
}

/* ---- dateTime ------------------------------------------------------------- */

Test(primitive_datetime, valid)
{
    static const ok_case t[] = {
        OK("2020"),
        OK("2020-06"),
        OK("2020-06-15"),
        OK("2020-06-15T10:30:00Z"),
        OK("2020-06-15T00:00:00+00:00"),
        OK("2020-06-15T23:59:59-00:00"),
        OK("2020-06-15T10:30:00.1Z"),
        OK("2020-06-15T10:30:00.123456789Z"),
        OK("2020-06-15T10:30:00+14:00"),
        OK("2020-06-15T10:30:00-14:00"),
        OK("2020-06-15T10:30:00+13:59"),
        OK("2020-06-15T10:30:00+05:30"),
        OK("2020-06-15T10:30:00-09:45"),
        OK("2016-12-31T23:59:60Z"),
        OK("2020-02-29T12:00:00Z"),
        /* from the examples */
        OK("2015-02-07T13:28:17-05:00"),
        OK("2004-12-23T08:00:00+10:00"),
        OK("2013-05-08T09:33:27+07:00"),
        OK("2016-06-10T11:01:10-08:00"),
        OK("2015-02-09T11:04:15.817-05:00"),
        OK("2017-01-29T12:34:56+00:00"),
        OK("2012-11-25T22:17:00+11:00"),
        OK("2016-11-10"),
        OK("2011-01"),
    };
    CHECK_VALID(FPRIM_DATETIME, t);
}

Test(primitive_datetime, invalid)
{
    static const bad_case t[] = {
        BAD("2020-06-15T10:30:00", "timezone"),
        BAD("2020-06-15T10:30:00.5", "timezone"),
        BAD("2020-06-15T10:30Z", "not a valid dateTime"),
        BAD("2020-06-15T10Z", "not a valid dateTime"),
        BAD("2020-06-15T", "not a valid dateTime"),
        BAD("2020-06T10:30:00Z", "full date"),
        BAD("2020T10:30:00Z", "full date"),
        BAD("2020-06-15T24:00:00Z", "hour must be 00 to 23"),
        BAD("2020-06-15T25:00:00Z", "hour must be 00 to 23"),
        BAD("2020-06-15T10:60:00Z", "minute must be 00 to 59"),
        BAD("2020-06-15T10:30:61Z", "second must be 00 to 60"),
        BAD("2020-06-15T10:30:00.Z", "fraction"),
        BAD("2020-06-15T10:30:00,5Z", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00+15:00", "between -14:00 and +14:00"),
        BAD("2020-06-15T10:30:00+14:01", "between -14:00 and +14:00"),
        BAD("2020-06-15T10:30:00+14:30", "between -14:00 and +14:00"),
        BAD("2020-06-15T10:30:00-15:00", "between -14:00 and +14:00"),
        BAD("2020-06-15T10:30:00+99:00", "between -14:00 and +14:00"),
        BAD("2020-06-15T10:30:00+05:60", "timezone minutes"),
        BAD("2020-06-15T10:30:00+0530", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00+05", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00+5:30", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00z", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00 Z", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00ZZ", "not a valid dateTime"),
        BAD("2020-06-15T10:30:00Z ", "not a valid dateTime"),
        BAD("2020-06-15t10:30:00Z", "not a valid dateTime"),
        BAD("2020-06-15 10:30:00Z", "not a valid dateTime"),
        BAD("2020-06-15T1:30:00Z", "not a valid dateTime"),
        BAD("2020-06-15T10:3:00Z", "not a valid dateTime"),
        BAD("2020-06-15T10:30:0Z", "not a valid dateTime"),
        BAD("2021-02-29T10:30:00Z", "leap years"),
        BAD("2020-13-01T10:30:00Z", "month must be 01 to 12"),
        BAD("0000-01-01T10:30:00Z", "year must be 0001 to 9999"),
        BAD("2020-06-31", "does not exist"),
        BAD("June 2020", "not a valid dateTime"),
    };
    CHECK_INVALID(FPRIM_DATETIME, t);
}

/* ---- instant -------------------------------------------------------------- */

Test(primitive_instant, valid)
{
    static const ok_case t[] = {
        OK("2020-06-15T10:30:00Z"),
        OK("2020-06-15T10:30:00.000Z"),
        OK("2020-06-15T10:30:00.123456+02:00"),
        OK("0001-01-01T00:00:00Z"),
        OK("9999-12-31T23:59:59.999-14:00"),
        OK("2016-12-31T23:59:60Z"),
        OK("2020-06-15T10:30:00+14:00"),
        /* from the examples */
        OK("2018-11-12T05:42:49.445Z"),
        OK("2017-06-27T00:52:51Z"),
        OK("2014-11-13T11:41:00+11:00"),
        OK("2018-08-12T00:00:00.000+10:00"),
        OK("2019-11-01T09:29:23.356+11:00"),
        OK("2012-05-29T23:45:32Z"),
        OK("2016-12-15T14:15:30-06:00"),
        OK("2013-04-04T14:34:00+01:00"),
    };
    CHECK_VALID(FPRIM_INSTANT, t);
}

Test(primitive_instant, invalid)
{
    static const bad_case t[] = {
        BAD("2020", "needs date, time and timezone"),
        BAD("2020-06", "needs date, time and timezone"),
        BAD("2020-06-15", "needs date, time and timezone"),
        BAD("2020-06T10:30:00Z", "needs date, time and timezone"),
        BAD("2020-06-15T10:30:00", "timezone"),
        BAD("2020-06-15T10:30:00.123", "timezone"),
        BAD("2020-06-15T10:30Z", "not a valid instant"),
        BAD("2020-06-15 10:30:00Z", "not a valid instant"),
        BAD("2020-06-15T24:00:00Z", "hour must be 00 to 23"),
        BAD("2020-06-15T10:30:00+15:00", "between -14:00 and +14:00"),
        BAD("2020-06-15T10:30:00+14:15", "between -14:00 and +14:00"),
        BAD("2020-02-30T10:30:00Z", "does not exist"),
        BAD("2020-06-15T10:30:00.Z", "fraction"),
        BAD("2020-06-15T10:30:00Zjunk", "not a valid instant"),
    };
    CHECK_INVALID(FPRIM_INSTANT, t);
}

/* ---- time ----------------------------------------------------------------- */

Test(primitive_time, valid)
{
    static const ok_case t[] = {
        OK("00:00:00"),   OK("23:59:59"),        OK("12:00:00"), OK("23:59:60"),
        OK("10:30:00.5"), OK("10:30:00.000001"), OK("05:30:00"), OK("16:30:00"), /* last two from the examples */
    };
    CHECK_VALID(FPRIM_TIME, t);
}

Test(primitive_time, invalid)
{
    static const bad_case t[] = {
        BAD("24:00:00", "hour must be 00 to 23"),
        BAD("25:00:00", "hour must be 00 to 23"),
        BAD("12:60:00", "minute must be 00 to 59"),
        BAD("12:00:61", "second must be 00 to 60"),
        BAD("12:00:00Z", "must not have a timezone"),
        BAD("12:00:00+01:00", "must not have a timezone"),
        BAD("12:00:00-05:00", "must not have a timezone"),
        BAD("12:00:00.", "fraction"),
        BAD("12:00", "not a valid time"),
        BAD("12", "not a valid time"),
        BAD("1:00:00", "not a valid time"),
        BAD("12:0:00", "not a valid time"),
        BAD("12:00:0", "not a valid time"),
        BAD("12.00.00", "not a valid time"),
        BAD("T12:00:00", "not a valid time"),
        BAD("12:00:00 ", "not a valid time"),
        BAD("2012-01-04T09:10:14Z", "not a valid time"),
    };
    CHECK_INVALID(FPRIM_TIME, t);
}

/* ---- xhtml ---------------------------------------------------------------- */

Test(primitive_xhtml, valid)
{
    static const ok_case t[] = {
        OK("<div xmlns=\"http://www.w3.org/1999/xhtml\">Hello</div>"),
        OK("  \n<div/>"),
        OK("<"),
    };
    CHECK_VALID(FPRIM_XHTML, t);
}

Test(primitive_xhtml, invalid)
{
    static const bad_case t[] = {
        BAD("   ", "blank"),
        BAD("\n\t", "blank"),
        BAD("Hello", "must start with '<'"),
        BAD(" x<div/>", "must start with '<'"),
        BAD("&lt;div&gt;", "must start with '<'"),
    };
    CHECK_INVALID(FPRIM_XHTML, t);
}
