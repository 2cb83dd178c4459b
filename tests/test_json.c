/*
 * tests/test_json.c — fhir/json.c: the strict JSON parser (fj_).
 *
 * Every input is copied into a heap buffer of exactly its length (no NUL
 * terminator), so ASan reports any read past the end of the document.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json.h"

typedef struct parsed {
    char *buf;
    size_t len;
    fj_doc doc;
    fj_error err;
    bool ok;
} parsed;

static parsed parse_lim(const char *s, size_t n, const fj_limits *lim)
{
    parsed p = {0};
    p.buf = malloc(n ? n : 1);
    cr_assert(p.buf != NULL);
    memcpy(p.buf, s, n);
    p.len = n;
    p.ok = fj_parse(p.buf, n, lim, &p.doc, &p.err);
    return p;
}

static void release(parsed *p)
{
    fj_doc_free(&p->doc);
    free(p->buf);
}

/* String literals may contain NUL bytes, so take their length from sizeof. */
#define PARSE(lit) parse_lim((lit), sizeof(lit) - 1, NULL)

static const fj_node *N(const parsed *p, uint32_t i)
{
    cr_assert_lt(i, p->doc.count, "node %u out of range (count %u)", i, p->doc.count);
    return fj_node_at(&p->doc, i);
}

/* Parse that must succeed. */
static parsed ok_n(const char *s, size_t n)
{
    parsed p = parse_lim(s, n, NULL);
    cr_assert(p.ok, "unexpected error at %u:%u: %s", p.err.line, p.err.column, p.err.message);
    return p;
}
#define OK(lit) ok_n((lit), sizeof(lit) - 1)

/* Parse that must fail at line:col with a message containing `msg`. */
static void fails_n(const char *s, size_t n, const fj_limits *lim, unsigned line, unsigned col, const char *msg)
{
    parsed p = parse_lim(s, n, lim);
    cr_assert(!p.ok, "expected failure for input of %zu bytes", n);
    cr_expect_eq(p.err.line, line, "line: got %u, want %u (%s)", p.err.line, line, p.err.message);
    cr_expect_eq(p.err.column, col, "column: got %u, want %u (%s)", p.err.column, col, p.err.message);
    cr_expect(strstr(p.err.message, msg) != NULL, "message \"%s\" lacks \"%s\"", p.err.message, msg);
    /* A failed parse leaves the doc empty. */
    cr_expect_eq(p.doc.nodes, NULL);
    cr_expect_eq(p.doc.count, 0);
    release(&p);
}
#define FAILS(lit, line, col, msg) fails_n((lit), sizeof(lit) - 1, NULL, (line), (col), (msg))

/* Decoded bytes of string node i equal the given bytes. */
static void expect_bytes(const parsed *p, uint32_t i, const char *want, size_t n)
{
    cr_assert_eq(N(p, i)->type, FJ_STRING);
    cr_assert_eq(N(p, i)->len, n, "decoded length %u, want %zu", N(p, i)->len, n);
    cr_assert(memcmp(fj_str(&p->doc, i), want, n) == 0, "decoded bytes differ");
}
#define EXPECT_STR(p, i, lit) expect_bytes((p), (i), (lit), sizeof(lit) - 1)

/*
 * Structural invariants of any successful parse: subtree sizes add up,
 * container lengths match their children, object children alternate
 * string key / value, positions increase in document order.
 */
static uint32_t check_subtree(const fj_doc *d, uint32_t i)
{
    const fj_node *n = &d->nodes[i];
    cr_assert_geq(n->size, 1);
    cr_assert_leq(i + (uint64_t)n->size, d->count);
    cr_assert_lt(n->pos, d->text_len);
    if (n->type != FJ_ARRAY && n->type != FJ_OBJECT) {
        cr_assert_eq(n->size, 1);
        return 1;
    }
    uint32_t children = 0, end = i + n->size;
    for (uint32_t c = i + 1; c < end; c = fj_next(d, c)) {
        cr_assert_gt(d->nodes[c].pos, n->pos);
        if (n->type == FJ_OBJECT && children % 2 == 0)
            cr_assert_eq(d->nodes[c].type, FJ_STRING, "object child %u is not a key", children);
        check_subtree(d, c);
        children++;
    }
    cr_assert_eq(children, n->type == FJ_OBJECT ? 2 * n->len : n->len);
    return n->size;
}

static void check_invariants(const parsed *p)
{
    cr_assert_gt(p->doc.count, 0);
    cr_assert_eq(N(p, 0)->size, p->doc.count);
    check_subtree(&p->doc, 0);
    for (uint32_t i = 1; i < p->doc.count; i++)
        cr_assert_gt(N(p, i)->pos, N(p, i - 1)->pos);
}

/* ------------------------------------------------------------------------ */

Test(json, scalars)
{
    struct {
        const char *text;
        fj_type type;
        const char *name;
    } cases[] = {
        {"null", FJ_NULL, "null"},   {"true", FJ_TRUE, "boolean"},   {"false", FJ_FALSE, "boolean"},
        {"42", FJ_NUMBER, "number"}, {"\"x\"", FJ_STRING, "string"}, {"[]", FJ_ARRAY, "array"},
        {"{}", FJ_OBJECT, "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed p = ok_n(cases[i].text, strlen(cases[i].text));
        cr_assert_eq(p.doc.count, 1);
        cr_assert_eq(N(&p, 0)->type, cases[i].type);
        cr_assert_eq(N(&p, 0)->size, 1);
        cr_assert_eq(N(&p, 0)->pos, 0);
        cr_assert_eq(N(&p, 0)->len, cases[i].type == FJ_NUMBER ? 2 : cases[i].type == FJ_STRING ? 1 : 0);
        cr_assert_str_eq(fj_type_name((fj_type)N(&p, 0)->type), cases[i].name);
        cr_assert_eq(p.doc.text, p.buf);
        cr_assert_eq(p.doc.text_len, p.len);
        release(&p);
    }
}

Test(json, type_names)
{
    cr_assert_str_eq(fj_type_name(FJ_NULL), "null");
    cr_assert_str_eq(fj_type_name(FJ_FALSE), "boolean");
    cr_assert_str_eq(fj_type_name(FJ_TRUE), "boolean");
    cr_assert_str_eq(fj_type_name(FJ_NUMBER), "number");
    cr_assert_str_eq(fj_type_name(FJ_STRING), "string");
    cr_assert_str_eq(fj_type_name(FJ_ARRAY), "array");
    cr_assert_str_eq(fj_type_name(FJ_OBJECT), "object");
}

Test(json, whitespace_around_value)
{
    parsed p = OK(" \t\r\n [ 1 , \"a\" ]\r\n\t ");
    cr_assert_eq(p.doc.count, 3);
    cr_assert_eq(N(&p, 0)->pos, 5);
    cr_assert_eq(N(&p, 1)->pos, 7);
    cr_assert_eq(N(&p, 2)->pos, 11);
    release(&p);
}

Test(json, nested_structure_sizes_and_positions)
{
    /*            0         1         2         3
     *            0123456789012345678901234567890123456 */
    parsed p = OK("{\"a\":[1,{\"b\":null},[]],\"c\":\"x\",\"d\":{}}");
    struct {
        fj_type type;
        uint32_t len, size, pos;
    } want[] = {
        {FJ_OBJECT, 3, 12, 0}, /* root */
        {FJ_STRING, 1, 1, 1},  /* "a" */
        {FJ_ARRAY, 3, 6, 5},   /* [1,{"b":null},[]] */
        {FJ_NUMBER, 1, 1, 6},  /* 1 */
        {FJ_OBJECT, 1, 3, 8},  /* {"b":null} */
        {FJ_STRING, 1, 1, 9},  /* "b" */
        {FJ_NULL, 0, 1, 13},   /* null */
        {FJ_ARRAY, 0, 1, 19},  /* [] */
        {FJ_STRING, 1, 1, 23}, /* "c" */
        {FJ_STRING, 1, 1, 27}, /* "x" */
        {FJ_STRING, 1, 1, 31}, /* "d" */
        {FJ_OBJECT, 0, 1, 35}, /* {} */
    };
    cr_assert_eq(p.doc.count, 12);
    for (uint32_t i = 0; i < 12; i++) {
        cr_expect_eq(N(&p, i)->type, want[i].type, "node %u type", i);
        cr_expect_eq(N(&p, i)->len, want[i].len, "node %u len", i);
        cr_expect_eq(N(&p, i)->size, want[i].size, "node %u size", i);
        cr_expect_eq(N(&p, i)->pos, want[i].pos, "node %u pos", i);
        cr_expect_eq(N(&p, i)->flags, want[i].type == FJ_NUMBER ? FJ_FLAG_NUMBER_INTEGRAL : 0, "node %u flags", i);
    }
    /* Sibling navigation: the root's members. */
    uint32_t k = fj_first_child(0);
    cr_assert_eq(k, 1);
    k = fj_next(&p.doc, fj_next(&p.doc, k));
    cr_assert_eq(k, 8);
    k = fj_next(&p.doc, fj_next(&p.doc, k));
    cr_assert_eq(k, 10);
    cr_assert_eq(fj_next(&p.doc, fj_next(&p.doc, k)), 12);
    /* The array's elements. */
    uint32_t e = fj_first_child(2);
    cr_assert_eq(N(&p, e)->type, FJ_NUMBER);
    e = fj_next(&p.doc, e);
    cr_assert_eq(N(&p, e)->type, FJ_OBJECT);
    e = fj_next(&p.doc, e);
    cr_assert_eq(N(&p, e)->type, FJ_ARRAY);
    cr_assert_eq(fj_next(&p.doc, e), fj_next(&p.doc, 2));
    check_invariants(&p);
    release(&p);
}

Test(json, object_children_alternate_key_value)
{
    parsed p = OK("{\"k1\": \"v1\", \"k2\": 2, \"k3\": [true], \"k4\": {\"k5\": false}}");
    cr_assert_eq(N(&p, 0)->len, 4);
    const char *keys[] = {"k1", "k2", "k3", "k4"};
    fj_type types[] = {FJ_STRING, FJ_NUMBER, FJ_ARRAY, FJ_OBJECT};
    uint32_t k = 1;
    for (int m = 0; m < 4; m++) {
        cr_assert(fj_str_eq(&p.doc, k, keys[m]), "key %d", m);
        cr_assert_eq(N(&p, k + 1)->type, types[m]);
        k = fj_next(&p.doc, k + 1);
    }
    cr_assert_eq(k, p.doc.count);
    check_invariants(&p);
    release(&p);
}

Test(json, deep_array_nesting_sizes)
{
    parsed p = OK("[[[[[\"deep\"]]]],0]");
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(N(&p, i)->type, FJ_ARRAY);
    cr_assert_eq(N(&p, 0)->size, 7);
    cr_assert_eq(N(&p, 0)->len, 2);
    cr_assert_eq(N(&p, 1)->size, 5);
    cr_assert_eq(N(&p, 4)->size, 2);
    cr_assert_eq(fj_next(&p.doc, 1), 6);
    cr_assert_eq(N(&p, 6)->type, FJ_NUMBER);
    check_invariants(&p);
    release(&p);
}

/* ------------------------------------------------------------------------ */

Test(json, simple_escapes_decoded_in_place)
{
    parsed p = OK("[\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\", 7]");
    EXPECT_STR(&p, 1, "a\"b\\c/d\be\ff\ng\rh\ti");
    /* Decoding in place does not move later values. */
    cr_assert_eq(N(&p, 2)->pos, 30);
    cr_assert(memcmp(fj_str(&p.doc, 2), "7", 1) == 0);
    /* The string's bytes start right after its opening quote. */
    cr_assert_eq(fj_str(&p.doc, 1), p.buf + 2);
    release(&p);
}

Test(json, unicode_escapes)
{
    parsed p = OK("[\"\\u0041\", \"\\u00e9\", \"\\u20AC\", \"\\uD83D\\uDE00\", \"\\u0000\", \"x\\uFFFFy\", "
                  "\"\\uDBFF\\uDFFF\", \"\\u007f\\u0080\\u07FF\\u0800\"]");
    EXPECT_STR(&p, 1, "A");
    EXPECT_STR(&p, 2, "\xC3\xA9");
    EXPECT_STR(&p, 3, "\xE2\x82\xAC");
    EXPECT_STR(&p, 4, "\xF0\x9F\x98\x80");
    EXPECT_STR(&p, 5, "\0");
    EXPECT_STR(&p, 6, "x\xEF\xBF\xBFy");
    EXPECT_STR(&p, 7, "\xF4\x8F\xBF\xBF");
    EXPECT_STR(&p, 8, "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80");
    check_invariants(&p);
    release(&p);
}

Test(json, escapes_mixed_with_plain_runs_and_utf8)
{
    /* Long plain runs around escapes exercise the 16-byte scanner on both paths. */
    parsed p = OK("{\"div\": \"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">\\n\\t<p>caf\xC3\xA9 \\u2014 "
                  "\xE2\x82\xAC 5</p>\\n</div>\"}");
    EXPECT_STR(&p, 2,
               "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n\t<p>caf\xC3\xA9 \xE2\x80\x94 \xE2\x82\xAC "
               "5</p>\n</div>");
    release(&p);
}

Test(json, raw_utf8_accepted)
{
    parsed p = OK("[\"\xC3\xA9\", \"\xE2\x82\xAC\", \"\xF0\x9F\x98\x80\", \"\xF4\x8F\xBF\xBF\", \"\xEF\xBF\xBF\", "
                  "\"\xED\x9F\xBF\", \"\xEE\x80\x80\", \"\xC2\x80\", \"\xF0\x90\x80\x80\"]");
    EXPECT_STR(&p, 1, "\xC3\xA9");
    EXPECT_STR(&p, 3, "\xF0\x9F\x98\x80");
    EXPECT_STR(&p, 4, "\xF4\x8F\xBF\xBF");
    cr_assert_eq(N(&p, 0)->len, 9);
    release(&p);
}

Test(json, string_lengths_and_keys)
{
    parsed p = OK("{\"\": \"\", \"a\\u0062c\": \"\\\\\\\\\"}");
    EXPECT_STR(&p, 1, "");
    EXPECT_STR(&p, 2, "");
    EXPECT_STR(&p, 3, "abc");
    EXPECT_STR(&p, 4, "\\\\");
    cr_assert(fj_str_eq(&p.doc, 3, "abc"));
    cr_assert_eq(fj_get(&p.doc, 0, "abc"), 4);
    cr_assert_eq(fj_get(&p.doc, 0, ""), 2);
    release(&p);
}

/* ------------------------------------------------------------------------ */

Test(json, numbers)
{
    parsed p = OK("[0, -0, 42, -7, 1.5, 1e5, 1E-2, 1.50, -0.0e+00, 12345678901234567890, 123456789.000000000001]");
    struct {
        const char *text;
        bool integral;
    } want[] = {{"0", true},
                {"-0", true},
                {"42", true},
                {"-7", true},
                {"1.5", false},
                {"1e5", false},
                {"1E-2", false},
                {"1.50", false},
                {"-0.0e+00", false},
                {"12345678901234567890", true},
                {"123456789.000000000001", false}};
    cr_assert_eq(N(&p, 0)->len, 11);
    for (uint32_t i = 0; i < 11; i++) {
        const fj_node *n = N(&p, i + 1);
        cr_assert_eq(n->type, FJ_NUMBER);
        cr_assert_eq(n->len, strlen(want[i].text), "number %u length", i);
        cr_assert(memcmp(fj_str(&p.doc, i + 1), want[i].text, n->len) == 0, "number %u text", i);
        cr_assert_eq((n->flags & FJ_FLAG_NUMBER_INTEGRAL) != 0, want[i].integral, "number %u integral flag", i);
    }
    release(&p);
}

Test(json, number_at_end_of_input)
{
    /* A number that ends the buffer must not read past it. */
    const char *cases[] = {"7", "-0", "1.25", "3e7", "10E+2"};
    for (size_t i = 0; i < 5; i++) {
        parsed p = ok_n(cases[i], strlen(cases[i]));
        cr_assert_eq(N(&p, 0)->len, strlen(cases[i]));
        release(&p);
    }
}

/* ------------------------------------------------------------------------ */

Test(json, errors_empty_and_whitespace)
{
    FAILS("", 1, 1, "expected a value, found end of input");
    FAILS("  \n ", 2, 2, "expected a value, found end of input");
    fj_doc d;
    fj_error e;
    cr_assert(!fj_parse(NULL, 0, NULL, &d, &e));
    cr_assert_eq(e.line, 1);
}

Test(json, errors_comments)
{
    FAILS("// hi\n1", 1, 1, "comments are not allowed");
    FAILS("[1, /* c */ 2]", 1, 5, "comments are not allowed");
    FAILS("{\"a\": 1 // c\n}", 1, 9, "expected ',' or '}' after object member, found '/'");
}

Test(json, errors_trailing_commas)
{
    FAILS("[1,2,]", 1, 6, "trailing comma before ']'");
    FAILS("{\"a\":1,}", 1, 8, "trailing comma before '}'");
    FAILS("[\n  1,\n]", 3, 1, "trailing comma before ']'");
    FAILS("[,1]", 1, 2, "expected a value, found ','");
    FAILS("{,}", 1, 2, "expected '\"' to start an object key, found ','");
    FAILS("[1,,2]", 1, 4, "expected a value, found ','");
}

Test(json, errors_numbers)
{
    FAILS("01", 1, 1, "leading zeros are not allowed");
    FAILS("[-012]", 1, 3, "leading zeros are not allowed");
    FAILS("00", 1, 1, "leading zeros");
    FAILS("-", 1, 2, "expected a digit after '-', found end of input");
    FAILS("[-a]", 1, 3, "expected a digit after '-', found 'a'");
    FAILS("1.", 1, 3, "expected a digit after '.' in number");
    FAILS("[1.e5]", 1, 4, "expected a digit after '.' in number, found 'e'");
    FAILS("1e", 1, 3, "expected a digit in the exponent");
    FAILS("1e+", 1, 4, "expected a digit in the exponent");
    FAILS("[1E-x]", 1, 5, "expected a digit in the exponent");
    FAILS(".5", 1, 1, "numbers must have a digit before '.'");
    FAILS("+1", 1, 1, "numbers must not start with '+'");
    FAILS("[0x10]", 1, 3, "expected ',' or ']' after array element, found 'x'");
    FAILS("1 2", 1, 3, "expected end of input after the top-level value, found '2'");
}

Test(json, errors_nan_infinity)
{
    FAILS("NaN", 1, 1, "NaN and Infinity are not allowed");
    FAILS("[Infinity]", 1, 2, "NaN and Infinity are not allowed");
    FAILS("{\"a\": -Infinity}", 1, 8, "NaN and Infinity are not allowed");
}

Test(json, errors_single_quotes)
{
    FAILS("'a'", 1, 1, "strings must use double quotes");
    FAILS("{'a': 1}", 1, 2, "strings must use double quotes");
    FAILS("{\"a\": 'b'}", 1, 7, "strings must use double quotes");
}

Test(json, errors_literals)
{
    FAILS("tru", 1, 1, "invalid literal, expected 'true'");
    FAILS("[nul]", 1, 2, "invalid literal, expected 'null'");
    FAILS("fals", 1, 1, "invalid literal, expected 'false'");
    FAILS("True", 1, 1, "expected a value, found 'T'");
    FAILS("nullx", 1, 5, "expected end of input after the top-level value, found 'x'");
    FAILS("[truefalse]", 1, 6, "expected ',' or ']' after array element, found 'f'");
}

Test(json, errors_structure)
{
    FAILS("{\"a\" 1}", 1, 6, "expected ':' after object key, found '1'");
    FAILS("{\"a\"", 1, 5, "expected ':' after object key, found end of input");
    FAILS("{\"a\":", 1, 6, "expected a value, found end of input");
    FAILS("{\"a\":}", 1, 6, "expected a value, found '}'");
    FAILS("{\"a\":1 \"b\":2}", 1, 8, "expected ',' or '}' after object member, found '\"'");
    FAILS("[1 2]", 1, 4, "expected ',' or ']' after array element, found '2'");
    FAILS("[1", 1, 3, "expected ',' or ']' after array element, found end of input");
    FAILS("[", 1, 2, "expected a value, found end of input");
    FAILS("{", 1, 2, "expected '\"' to start an object key, found end of input");
    FAILS("{1:2}", 1, 2, "expected '\"' to start an object key, found '1'");
    FAILS("[}", 1, 2, "expected a value, found '}'");
    FAILS("{]", 1, 2, "expected '\"' to start an object key, found ']'");
    FAILS("[1}", 1, 3, "expected ',' or ']' after array element, found '}'");
    FAILS("{\"a\":1]", 1, 7, "expected ',' or '}' after object member, found ']'");
    FAILS("]", 1, 1, "expected a value, found ']'");
    FAILS("{}{}", 1, 3, "expected end of input after the top-level value, found '{'");
    FAILS("[] x", 1, 4, "expected end of input after the top-level value");
    FAILS("\x01", 1, 1, "expected a value, found byte 0x01");
    FAILS("[1,\x7f]", 1, 4, "expected a value, found byte 0x7F");
    FAILS("[\xC2\xA0 1]", 1, 2, "expected a value, found byte 0xC2"); /* NBSP is not JSON whitespace */
    FAILS("\"a\"\0", 1, 4, "expected end of input after the top-level value, found byte 0x00");
}

Test(json, errors_strings)
{
    FAILS("\"abc", 1, 5, "unterminated string, found end of input");
    FAILS("[\"abc\\", 1, 7, "unterminated string");
    FAILS("[\"a\\n\\nb", 1, 9, "unterminated string");
    FAILS("\"a\tb\"", 1, 3, "unescaped control character 0x09 in string");
    FAILS("[\"a\nb\"]", 1, 4, "unescaped control character 0x0A in string");
    FAILS("\"\x1f\"", 1, 2, "unescaped control character 0x1F");
    FAILS("\"a\0\"", 1, 3, "unescaped control character 0x00");
    FAILS("\"\\x\"", 1, 2, "invalid escape '\\' followed by 'x' in string");
    FAILS("\"ab\\'\"", 1, 4, "invalid escape '\\' followed by '''");
    FAILS("\"\\U0041\"", 1, 2, "invalid escape '\\' followed by 'U'");
    FAILS("\"\\u12\"", 1, 2, "expected 4 hex digits after \\u");
    FAILS("\"\\u12G4\"", 1, 2, "expected 4 hex digits after \\u");
    FAILS("\"\\u12", 1, 2, "expected 4 hex digits after \\u");
}

Test(json, errors_surrogates)
{
    FAILS("\"\\uD800\"", 1, 2, "unpaired surrogate \\uD800 in string");
    FAILS("\"ab\\uDC00\"", 1, 4, "unpaired surrogate \\uDC00 in string");
    FAILS("\"\\uD83D\\u0041\"", 1, 2, "unpaired surrogate \\uD83D");
    FAILS("\"\\uD83D\\uD83D\"", 1, 2, "unpaired surrogate \\uD83D");
    FAILS("\"\\uD83Dx\"", 1, 2, "unpaired surrogate \\uD83D");
    FAILS("\"\\uD83D\\n\"", 1, 2, "unpaired surrogate \\uD83D");
    FAILS("\"\\uDBFF", 1, 2, "unpaired surrogate \\uDBFF");
    FAILS("\"\\uDE00\\uD83D\"", 1, 2, "unpaired surrogate \\uDE00"); /* pair in the wrong order */
}

Test(json, errors_invalid_utf8)
{
    FAILS("\"\xC3\"", 1, 2, "invalid UTF-8 byte 0xC3 in string");             /* truncated by the quote */
    FAILS("\"ab\xC3", 1, 4, "invalid UTF-8 byte 0xC3 in string");             /* truncated by end of input */
    FAILS("\"\xE2\x82\"", 1, 2, "invalid UTF-8 byte 0xE2 in string");         /* 3-byte, one missing */
    FAILS("\"\xF0\x9F\x98\"", 1, 2, "invalid UTF-8 byte 0xF0 in string");     /* 4-byte, one missing */
    FAILS("\"\xC0\x80\"", 1, 2, "invalid UTF-8 byte 0xC0 in string");         /* overlong NUL */
    FAILS("\"\xC1\xBF\"", 1, 2, "invalid UTF-8 byte 0xC1 in string");         /* overlong */
    FAILS("\"\xE0\x80\xAF\"", 1, 2, "invalid UTF-8 byte 0xE0 in string");     /* overlong '/' */
    FAILS("\"\xF0\x80\x80\xAF\"", 1, 2, "invalid UTF-8 byte 0xF0 in string"); /* overlong */
    FAILS("\"\xED\xA0\x80\"", 1, 2, "invalid UTF-8 byte 0xED in string");     /* encoded surrogate D800 */
    FAILS("\"\xED\xBF\xBF\"", 1, 2, "invalid UTF-8 byte 0xED in string");     /* encoded surrogate DFFF */
    FAILS("\"\xF4\x90\x80\x80\"", 1, 2, "invalid UTF-8 byte 0xF4 in string"); /* U+110000 */
    FAILS("\"\xF5\x80\x80\x80\"", 1, 2, "invalid UTF-8 byte 0xF5 in string"); /* lead byte beyond U+10FFFF */
    FAILS("\"\xFF\"", 1, 2, "invalid UTF-8 byte 0xFF in string");
    FAILS("\"\x80\"", 1, 2, "invalid UTF-8 byte 0x80 in string");         /* lone continuation */
    FAILS("\"\xC3\xA9\xA9\"", 1, 4, "invalid UTF-8 byte 0xA9 in string"); /* extra continuation */
    FAILS("\"\xE9t\xE9\"", 1, 2, "invalid UTF-8 byte 0xE9 in string");    /* Latin-1 text */
    /* Also after an escape, on the decoding path, and in keys. */
    FAILS("\"\\n\xC3(\"", 1, 4, "invalid UTF-8 byte 0xC3 in string");
    FAILS("{\"k\xFE\": 1}", 1, 4, "invalid UTF-8 byte 0xFE in string");
    /* A long plain run before the bad byte (vector scanner). */
    FAILS("\"0123456789abcdefghijklmnopqrstuvwxyz\xC0\"", 1, 38, "invalid UTF-8 byte 0xC0");
}

Test(json, error_positions_multiline)
{
    FAILS("{\n  \"a\": 1,\n  \"b\" 2\n}", 3, 7, "expected ':' after object key");
    FAILS("[\r\n  1,\r\n  x\r\n]", 3, 3, "expected a value, found 'x'");
    FAILS("[\n\n\n", 4, 1, "expected a value, found end of input");
    /* Escaped newlines decode to real '\n' bytes in the buffer; they must not count as lines. */
    FAILS("[\"a\\nb\\nc\", \"\\n\\n\",\n  x]", 2, 3, "expected a value, found 'x'");
    /* An error inside a string after escapes: column of the original byte. */
    FAILS("[\n \"a\\n\\n\\x\"]", 2, 8, "invalid escape");
    FAILS("[\n \"\\n\\u00e9\\t\x01\"]", 2, 13, "unescaped control character 0x01");
    FAILS("{\"k\\n\": \"v\\n\",\n\"k2\\n\\n\": [\"\\n\",\n tru]}", 3, 2, "invalid literal");
}

/* ------------------------------------------------------------------------ */

Test(json, duplicate_keys)
{
    parsed p = OK("{\"a\":1,\"b\":2,\"a\":3,\"c\":{\"a\":4,\"c\":5},\"b\":6}");
    cr_assert_eq(N(&p, 1)->flags, 0);                      /* first "a" */
    cr_assert_eq(N(&p, 3)->flags, 0);                      /* first "b" */
    cr_assert_eq(N(&p, 5)->flags, FJ_FLAG_DUPLICATE_KEY);  /* second "a" */
    cr_assert_eq(N(&p, 7)->flags, 0);                      /* "c" */
    cr_assert_eq(N(&p, 9)->flags, 0);                      /* nested "a": another object */
    cr_assert_eq(N(&p, 11)->flags, 0);                     /* nested "c" */
    cr_assert_eq(N(&p, 13)->flags, FJ_FLAG_DUPLICATE_KEY); /* second "b" */
    /* fj_get finds the first occurrence. */
    cr_assert_eq(fj_get(&p.doc, 0, "a"), 2);
    release(&p);
}

Test(json, duplicate_keys_compare_decoded_bytes)
{
    parsed p = OK("{\"a\": 1, \"\\u0061\": 2, \"\\/\": 3, \"/\": 4, \"ab\": 5, \"a\\u0000\": 6, \"a\": 7}");
    cr_assert_eq(N(&p, 1)->flags, 0);
    cr_assert_eq(N(&p, 3)->flags, FJ_FLAG_DUPLICATE_KEY);
    cr_assert_eq(N(&p, 5)->flags, 0);
    cr_assert_eq(N(&p, 7)->flags, FJ_FLAG_DUPLICATE_KEY);
    cr_assert_eq(N(&p, 9)->flags, 0);  /* "ab": prefix is not equal */
    cr_assert_eq(N(&p, 11)->flags, 0); /* "a\0": embedded NUL differs */
    cr_assert_eq(N(&p, 13)->flags, FJ_FLAG_DUPLICATE_KEY);
    release(&p);
}

Test(json, duplicate_keys_in_sibling_objects_are_independent)
{
    parsed p = OK("[{\"id\":1,\"x\":{}},{\"id\":2,\"x\":[]},{\"id\":3,\"id\":4}]");
    for (uint32_t i = 0; i < p.doc.count; i++) {
        bool dup = (N(&p, i)->flags & FJ_FLAG_DUPLICATE_KEY) != 0;
        cr_assert_eq(dup, i == 14, "node %u", i);
    }
    release(&p);
}

/* Build {"k0":0,"k1":1,...} with n keys; keys listed in dups repeat earlier ones. */
static char *object_with_keys(uint32_t n, const uint32_t *dup_at, const uint32_t *dup_of, size_t ndup, size_t *len)
{
    size_t cap = (size_t)n * 32 + 16, o = 0;
    char *s = malloc(cap);
    cr_assert(s != NULL);
    s[o++] = '{';
    for (uint32_t i = 0; i < n; i++) {
        uint32_t name = i;
        for (size_t d = 0; d < ndup; d++)
            if (dup_at[d] == i)
                name = dup_of[d];
        /* Alternate escaped and plain spelling so decoding is part of the comparison. */
        o += (size_t)snprintf(s + o, cap - o, i % 3 == 0 ? "%s\"\\u006b%u\":%u" : "%s\"k%u\":%u", i ? "," : "", name,
                              i);
    }
    s[o++] = '}';
    *len = o;
    return s;
}

static void check_large_object(uint32_t n, const uint32_t *dup_at, const uint32_t *dup_of, size_t ndup)
{
    size_t len;
    char *s = object_with_keys(n, dup_at, dup_of, ndup, &len);
    parsed p = ok_n(s, len);
    free(s);
    cr_assert_eq(N(&p, 0)->len, n);
    uint32_t k = 1;
    for (uint32_t i = 0; i < n; i++, k = fj_next(&p.doc, k + 1)) {
        bool want = false;
        for (size_t d = 0; d < ndup; d++)
            want |= dup_at[d] == i;
        bool got = (N(&p, k)->flags & FJ_FLAG_DUPLICATE_KEY) != 0;
        cr_assert_eq(got, want, "key %u of %u: duplicate flag %d, want %d", i, n, got, want);
    }
    release(&p);
}

Test(json, duplicate_keys_large_objects)
{
    /* Around the switch from linear scan to sorting, and well beyond it. */
    uint32_t sizes[] = {31, 32, 33, 34, 64, 100, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t n = sizes[s];
        check_large_object(n, NULL, NULL, 0);
        uint32_t at[] = {n - 1}, of[] = {0};
        check_large_object(n, at, of, 1);
        uint32_t at2[] = {5, n / 2 + 1, n - 2, n - 1}, of2[] = {0, 6, 3, 3};
        check_large_object(n, at2, of2, 4);
    }
}

Test(json, duplicate_keys_many_keys_is_fast, .timeout = 20)
{
    /* 200k distinct keys in one object: quadratic checking would take minutes. */
    uint32_t at[] = {199999}, of[] = {123456};
    check_large_object(200000, at, of, 1);
}

/* ------------------------------------------------------------------------ */

static char *nested(unsigned depth, char open, char close, size_t *len)
{
    char *s = malloc(2 * (size_t)depth + 1);
    cr_assert(s != NULL);
    for (unsigned i = 0; i < depth; i++) {
        s[i] = open;
        s[2 * depth - i] = close;
    }
    s[depth] = '1';
    *len = 2 * (size_t)depth + 1;
    return s;
}

Test(json, depth_limit)
{
    fj_limits lim = {0, 3};
    parsed p = parse_lim("[[[1]]]", 7, &lim);
    cr_assert(p.ok);
    release(&p);
    fails_n("[[[[1]]]]", 9, &lim, 1, 4, "nesting deeper than 3 levels");
    fails_n("{\"a\":{\"b\":[{}]}}", 16, &lim, 1, 12, "nesting deeper than 3 levels");
    fails_n("[\n [\n  [\n   [", 13, &lim, 4, 4, "nesting deeper than 3 levels");

    /* The default is 128 levels. */
    size_t len;
    char *s = nested(128, '[', ']', &len);
    p = ok_n(s, len);
    cr_assert_eq(p.doc.count, 129);
    cr_assert_eq(N(&p, 127)->size, 2);
    release(&p);
    free(s);
    s = nested(129, '[', ']', &len);
    fails_n(s, len, NULL, 1, 129, "nesting deeper than 128 levels");
    free(s);

    /* A large explicit limit (the stack is then allocated). */
    fj_limits deep = {0, 100000};
    s = nested(50000, '[', ']', &len);
    p = parse_lim(s, len, &deep);
    cr_assert(p.ok);
    cr_assert_eq(N(&p, 0)->size, 50001);
    release(&p);
    free(s);
}

Test(json, size_limit)
{
    fj_limits lim = {10, 0};
    parsed p = parse_lim("[1,2,3,45]", 10, &lim);
    cr_assert(p.ok);
    release(&p);
    fails_n("[1,2,3,456]", 11, &lim, 1, 1, "document larger than the 10 bytes limit");
    lim.max_bytes = 64 * 1024;
    char big[64 * 1024 + 1];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    fails_n(big, sizeof big, &lim, 1, 1, "document larger than the 64 KiB limit");

    /* Refused before parsing: the buffer is never read, so it may be tiny. */
    char tiny[1] = {'1'};
    fj_doc d;
    fj_error e;
    cr_assert(!fj_parse(tiny, FJ_DEFAULT_MAX_BYTES + 1, NULL, &d, &e));
    cr_assert_str_eq(e.message, "document larger than the 512 MiB limit");
    cr_assert_eq(d.nodes, NULL);
    if (sizeof(size_t) > 4) {
        fj_limits huge = {SIZE_MAX, 0};
        cr_assert(!fj_parse(tiny, (size_t)UINT32_MAX + 1, &huge, &d, &e));
        cr_assert(strstr(e.message, "4 GiB") != NULL, "%s", e.message);
    }
}

Test(json, default_limits)
{
    fj_limits l = fj_default_limits();
    cr_assert_eq(l.max_bytes, FJ_DEFAULT_MAX_BYTES);
    cr_assert_eq(l.max_depth, FJ_DEFAULT_MAX_DEPTH);
    /* Zero fields mean "default". */
    fj_limits z = {0, 0};
    size_t len;
    char *s = nested(128, '[', ']', &len);
    parsed p = parse_lim(s, len, &z);
    cr_assert(p.ok);
    release(&p);
    free(s);
}

/* ------------------------------------------------------------------------ */

Test(json, bom)
{
    parsed p = OK("\xEF\xBB\xBF{\"a\": true}");
    cr_assert_eq(N(&p, 0)->pos, 3);
    cr_assert_eq(fj_get(&p.doc, 0, "a"), 2);
    unsigned line, col;
    fj_line_col(&p.doc, N(&p, 0)->pos, &line, &col);
    cr_assert_eq(line, 1);
    cr_assert_eq(col, 1); /* columns count from after the BOM, as an editor shows them */
    release(&p);

    p = OK("\xEF\xBB\xBF \n 1");
    cr_assert_eq(N(&p, 0)->pos, 6);
    release(&p);

    FAILS("\xEF\xBB\xBF", 1, 1, "expected a value, found end of input");
    FAILS("\xEF\xBB\xBF[1,]", 1, 4, "trailing comma before ']'");
    FAILS("\xEF\xBB\xBF\xEF\xBB\xBF{}", 1, 1, "expected a value, found byte 0xEF"); /* only one BOM */
    FAILS("\xEF\xBB{}", 1, 1, "expected a value, found byte 0xEF");
    FAILS(" \xEF\xBB\xBF{}", 1, 2, "expected a value, found byte 0xEF"); /* BOM only at the very start */
    FAILS("[\xEF\xBB\xBF]", 1, 2, "expected a value, found byte 0xEF");
}

/* ------------------------------------------------------------------------ */

Test(json, fj_get_and_str_eq)
{
    parsed p = OK("{\"resourceType\": \"Patient\", \"id\": \"x1\", \"name\": [{\"family\": \"Doe\"}], "
                  "\"active\": true, \"multipleBirthInteger\": 2, \"nul\\u0000l\": null}");
    uint32_t rt = fj_get(&p.doc, 0, "resourceType");
    cr_assert_neq(rt, UINT32_MAX);
    cr_assert(fj_str_eq(&p.doc, rt, "Patient"));
    cr_assert(!fj_str_eq(&p.doc, rt, "Patien"));
    cr_assert(!fj_str_eq(&p.doc, rt, "Patients"));
    cr_assert(!fj_str_eq(&p.doc, rt, ""));
    uint32_t name = fj_get(&p.doc, 0, "name");
    cr_assert_eq(N(&p, name)->type, FJ_ARRAY);
    uint32_t family = fj_get(&p.doc, fj_first_child(name), "family");
    cr_assert(fj_str_eq(&p.doc, family, "Doe"));
    cr_assert_eq(N(&p, fj_get(&p.doc, 0, "active"))->type, FJ_TRUE);
    uint32_t mb = fj_get(&p.doc, 0, "multipleBirthInteger");
    cr_assert_eq(N(&p, mb)->type, FJ_NUMBER);
    cr_assert(!fj_str_eq(&p.doc, mb, "2")); /* numbers are not strings */
    cr_assert_eq(fj_get(&p.doc, 0, "missing"), UINT32_MAX);
    cr_assert_eq(fj_get(&p.doc, 0, "Patient"), UINT32_MAX);   /* values are not keys */
    cr_assert_eq(fj_get(&p.doc, 0, "nul"), UINT32_MAX);       /* key with embedded NUL */
    cr_assert_eq(fj_get(&p.doc, name, "family"), UINT32_MAX); /* not an object */
    cr_assert_eq(fj_get(&p.doc, rt, "x"), UINT32_MAX);
    cr_assert_eq(fj_get(&p.doc, p.doc.count, "x"), UINT32_MAX); /* out of range */
    release(&p);

    p = OK("{}");
    cr_assert_eq(fj_get(&p.doc, 0, "a"), UINT32_MAX);
    release(&p);
}

Test(json, line_col)
{
    const char text[] = "{\n"                            /* line 1 */
                        "  \"a\": \"x\\ny\\nz\",\n"      /* line 2: escaped newlines */
                        "  \"b\": [1,\r\n"               /* line 3: CRLF */
                        "\t2],\n"                        /* line 4 */
                        "\n"                             /* line 5 */
                        "  \"\\n\\n\\n\": \"\\u000a\"\n" /* line 6 */
                        "}";                             /* line 7 */
    parsed p = OK(text);
    EXPECT_STR(&p, 2, "x\ny\nz");
    struct {
        uint32_t node;
        unsigned line, col;
    } want[] = {{0, 1, 1}, {1, 2, 3}, {2, 2, 8}, {3, 3, 3}, {4, 3, 8}, {5, 3, 9}, {6, 4, 2}, {7, 6, 3}, {8, 6, 13}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        unsigned line = 0, col = 0;
        fj_line_col(&p.doc, N(&p, want[i].node)->pos, &line, &col);
        cr_expect_eq(line, want[i].line, "node %u: line %u, want %u", want[i].node, line, want[i].line);
        cr_expect_eq(col, want[i].col, "node %u: column %u, want %u", want[i].node, col, want[i].col);
    }
    cr_assert_neq(p.doc.line_starts, NULL);
    cr_assert_eq(p.doc.line_count, 7);
    /* The end of the document, and offsets beyond it, are on the last line. */
    unsigned line, col;
    fj_line_col(&p.doc, p.len - 1, &line, &col);
    cr_assert_eq(line, 7);
    cr_assert_eq(col, 1);
    fj_line_col(&p.doc, p.len + 100, &line, &col);
    cr_assert_eq(line, 7);
    cr_assert_eq(col, 2);
    /* A newline byte belongs to the line it ends. */
    fj_line_col(&p.doc, 1, &line, &col);
    cr_assert_eq(line, 1);
    cr_assert_eq(col, 2);
    release(&p);
}

Test(json, line_col_on_empty_doc)
{
    fj_doc d = {0};
    unsigned line, col;
    fj_line_col(&d, 0, &line, &col);
    cr_assert_eq(line, 1);
    cr_assert_eq(col, 1);
}

Test(json, doc_free_is_safe)
{
    fj_doc d = {0};
    fj_doc_free(&d);
    fj_doc_free(&d);
    parsed p = OK("[1]");
    unsigned line, col;
    fj_line_col(&p.doc, 1, &line, &col);
    fj_doc_free(&p.doc);
    cr_assert_eq(p.doc.nodes, NULL);
    cr_assert_eq(p.doc.line_starts, NULL);
    cr_assert_eq(p.doc.count, 0);
    cr_assert_eq(p.doc.text, NULL);
    fj_doc_free(&p.doc);
    free(p.buf);

    p = PARSE("[1,]");
    cr_assert(!p.ok);
    fj_doc_free(&p.doc);
    free(p.buf);
}

/* ------------------------------------------------------------------------ */

/* A pretty-printed array of n small resources, as a generator would write them. */
static char *generate(uint32_t n, size_t *len)
{
    size_t cap = (size_t)n * 192 + 16, o = 0;
    char *s = malloc(cap);
    cr_assert(s != NULL);
    o += (size_t)snprintf(s + o, cap - o, "[\n");
    for (uint32_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o,
                              "  {\n    \"resourceType\": \"Observation\",\n    \"id\": \"obs-%u\",\n"
                              "    \"valueQuantity\": {\"value\": %u.5, \"unit\": \"m\\u00b2\"},\n"
                              "    \"note\": [\"line\\n%u\", null, %s]\n  }%s\n",
                              i, i, i, i % 2 ? "true" : "false", i + 1 < n ? "," : "");
    o += (size_t)snprintf(s + o, cap - o, "]\n");
    *len = o;
    return s;
}

Test(json, large_generated_document, .timeout = 30)
{
    const uint32_t n = 100000;
    size_t len;
    char *s = generate(n, &len);
    parsed p = ok_n(s, len);
    free(s);
    /* Each resource: object, 4 keys, 2 strings, valueQuantity object with 2 keys, 2 values,
     * note array with 3 elements = 1 + 4 + 2 + 1 + 2 + 2 + 1 + 3 = 16 nodes. */
    cr_assert_eq(p.doc.count, 1 + 16 * n);
    cr_assert_eq(N(&p, 0)->len, n);
    uint32_t i = 0, e = fj_first_child(0);
    char want[32];
    for (; e < p.doc.count; e = fj_next(&p.doc, e), i++) {
        cr_assert_eq(N(&p, e)->type, FJ_OBJECT);
        cr_assert_eq(N(&p, e)->size, 16);
        cr_assert(fj_str_eq(&p.doc, fj_get(&p.doc, e, "resourceType"), "Observation"));
        snprintf(want, sizeof want, "obs-%u", i);
        cr_assert(fj_str_eq(&p.doc, fj_get(&p.doc, e, "id"), want), "id of resource %u", i);
        uint32_t vq = fj_get(&p.doc, e, "valueQuantity");
        cr_assert(fj_str_eq(&p.doc, fj_get(&p.doc, vq, "unit"), "m\xC2\xB2"));
        uint32_t v = fj_get(&p.doc, vq, "value");
        snprintf(want, sizeof want, "%u.5", i);
        cr_assert_eq(N(&p, v)->len, strlen(want));
        cr_assert(memcmp(fj_str(&p.doc, v), want, strlen(want)) == 0);
        uint32_t note = fj_get(&p.doc, e, "note");
        snprintf(want, sizeof want, "line\n%u", i);
        cr_assert(fj_str_eq(&p.doc, fj_first_child(note), want));
        if (i % 1000 == 0) {
            unsigned line, col;
            fj_line_col(&p.doc, N(&p, e)->pos, &line, &col);
            cr_assert_eq(line, 2 + 6 * i, "resource %u at line %u", i, line);
            cr_assert_eq(col, 3);
        }
    }
    cr_assert_eq(i, n);
    check_invariants(&p);
    release(&p);
}

/* ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Du) >> 32);
}

static const char *fuzz_seeds[] = {
    ("{\"resourceType\": \"Patient\", \"id\": \"ex\\u00e9\", \"name\": [{\"given\": [\"A\\\"b\", \"\\uD83D\\uDE00\"]}],"
     " \"birthDate\": \"1970-01-01\", \"n\": -12.5e+3, \"b\": [true, false, null, {}, []]}"),
    "[0, -0, 1.5, 1e5, \"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\", {\"a\": {\"a\": {\"a\": [[[]]]}}}]",
    "\xEF\xBB\xBF{\n  \"k\": \"v\\n\\t\\\\\",\n  \"k\": 1\n}\n",
    "\"0123456789abcdef0123456789abcdef\\u0041\\/0123456789abcdef\"",
};

/* Parse a mutated copy; on success the tree must be well-formed. */
static void fuzz_one(const char *s, size_t n)
{
    parsed p = parse_lim(s, n, NULL);
    if (p.ok) {
        check_invariants(&p);
        unsigned line, col;
        fj_line_col(&p.doc, n, &line, &col);
        cr_assert_geq(line, 1);
    } else {
        cr_assert_leq(p.err.offset, n);
        cr_assert_geq(p.err.line, 1);
        cr_assert_geq(p.err.column, 1);
        cr_assert_gt(strlen(p.err.message), 0);
    }
    release(&p);
}

Test(json, fuzz_truncated_inputs)
{
    for (size_t s = 0; s < sizeof fuzz_seeds / sizeof fuzz_seeds[0]; s++) {
        size_t n = strlen(fuzz_seeds[s]);
        for (size_t cut = 0; cut <= n; cut++)
            fuzz_one(fuzz_seeds[s], cut);
    }
    /* Every proper prefix of an object or array document is an error. */
    size_t n = strlen(fuzz_seeds[0]);
    for (size_t cut = 0; cut < n; cut++) {
        parsed p = parse_lim(fuzz_seeds[0], cut, NULL);
        cr_assert(!p.ok, "prefix of %zu bytes parsed", cut);
        release(&p);
    }
}

Test(json, fuzz_byte_flips, .timeout = 60)
{
    static const char interesting[] = "\"\\{}[],:0-+.eEu \n\t\x01\x7f\x80\xbf\xc0\xc3\xe0\xed\xf0\xf4\xff";
    char buf[512];
    for (int iter = 0; iter < 30000; iter++) {
        const char *seed = fuzz_seeds[rnd() % (sizeof fuzz_seeds / sizeof fuzz_seeds[0])];
        size_t n = strlen(seed);
        memcpy(buf, seed, n);
        int flips = 1 + (int)(rnd() % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = rnd() % n;
            buf[at] = rnd() % 2 ? (char)rnd() : interesting[rnd() % (sizeof interesting - 1)];
        }
        if (rnd() % 4 == 0)
            n = rnd() % (n + 1);
        fuzz_one(buf, n);
    }
}

Test(json, fuzz_random_bytes)
{
    static const char alphabet[] = "{}[]\",:\\ 0123456789-.eEtrufalsn\n\xC3\xA9";
    char buf[64];
    for (int iter = 0; iter < 30000; iter++) {
        size_t n = rnd() % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = alphabet[rnd() % (sizeof alphabet - 1)];
        fuzz_one(buf, n);
    }
}

/* ---- writing back (fhir/json_write.h) ---- */
#include "fhir/json_write.h"

static bool skip_meta(void *ctx, const fj_doc *doc, uint32_t obj, uint32_t key)
{
    (void)ctx;
    return obj == 0 && fj_str_eq(doc, key, "meta");
}

static const char *rewrite_urn(void *ctx, const fj_doc *doc, uint32_t node, size_t *len)
{
    (void)ctx;
    if (!fj_str_eq(doc, node, "urn:uuid:1"))
        return NULL;
    *len = 11;
    return "Patient/new";
}

Test(json_write, round_trip_escapes_and_hooks)
{
    char src[] =
        "{ \"resourceType\" : \"Patient\", \"meta\": {\"versionId\": \"3\"},\n"
        "  \"name\": [ {\"text\": \"a \\\"q\\\" \\\\ \\n \\u0001 \\u00e9\"} ], \"x\": [1.50, -0, true, false, null],"
        "  \"ref\": {\"reference\": \"urn:uuid:1\"}, \"empty\": {} }";
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(src, strlen(src), NULL, &doc, &err), "%s", err.message);
    fj_buf out = {0};
    fj_write_hooks hooks = {skip_meta, rewrite_urn, NULL};
    fj_write(&doc, 0, &hooks, &out);
    size_t len;
    char *json = fj_buf_take(&out, &len);
    cr_assert_not_null(json);
    cr_expect_str_eq(json,
                     "{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"a \\\"q\\\" \\\\ \\n \\u0001 \xc3\xa9\"}],"
                     "\"x\":[1.50,-0,true,false,null],\"ref\":{\"reference\":\"Patient/new\"},\"empty\":{}}");
    cr_expect_eq(len, strlen(json));
    /* what is written parses again to the same tree */
    fj_doc again;
    cr_assert(fj_parse(json, len, NULL, &again, &err), "%s", err.message);
    cr_expect_eq(again.count, doc.count - 4, "the meta key, its object, and versionId with its value left out");
    fj_doc_free(&again);
    free(json);
    fj_doc_free(&doc);
}

/* An empty buffer hands over "" (a terminated string), never an unwritten block (issue 7, defect 1). */
Test(json_write, take_of_an_empty_buffer_is_an_empty_string)
{
    for (int i = 0; i < 16; i++) {
        fj_buf out = {0};
        size_t len = 99;
        char *s = fj_buf_take(&out, &len);
        cr_assert_not_null(s);
        cr_expect_eq(len, 0);
        cr_expect_eq(s[0], '\0');
        cr_expect_eq(strlen(s), 0);
        memset(s, 'x', 255); /* the next block malloc hands out may be this one, dirty */
        s[255] = '\0';
        free(s);
    }
}

/* The escaping of one byte, written out the plain way: what fj_buf_string must produce for it. */
static void reference_escape(fj_buf *b, unsigned char c)
{
    const char *named = c == '"'    ? "\\\""
                        : c == '\\' ? "\\\\"
                        : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t"
                                    : NULL;
    if (named)
        fj_buf_puts(b, named);
    else if (c < 0x20)
        fj_buf_printf(b, "\\u%04x", c);
    else
        fj_buf_append(b, (const char *)&c, 1);
}

Test(json_write, every_byte_at_every_place_of_a_word_escapes_as_byte_by_byte)
{
    /* fj_buf_string scans eight bytes at a time: each byte value at each offset of two words and a tail */
    char s[21];
    for (int c = 1; c < 256; c++)
        for (size_t at = 0; at < sizeof s; at++) {
            memset(s, 'a', sizeof s);
            s[at] = (char)c;
            s[(at + 9) % sizeof s] = (char)0xc3; /* a UTF-8 lead byte: never escaped */
            fj_buf got = {0}, want = {0};
            fj_buf_string(&got, s, sizeof s);
            fj_buf_puts(&want, "\"");
            for (size_t i = 0; i < sizeof s; i++)
                reference_escape(&want, (unsigned char)s[i]);
            fj_buf_puts(&want, "\"");
            cr_assert_eq(got.len, want.len, "byte 0x%02x at %zu", c, at);
            cr_assert(!memcmp(got.data, want.data, got.len), "byte 0x%02x at %zu: %s", c, at, got.data);
            fj_buf_free(&got);
            fj_buf_free(&want);
        }
}
