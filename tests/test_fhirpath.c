/*
 * tests/test_fhirpath.c — the FHIRPath R4 conformance suite (935 cases,
 * tests/fhirpath/tests-fhir-r4.json, a copy of the fhirpath.js keepers'
 * fhir-r4 cases; format in tests/fhirpath/README.md) against fhir/fhirpath.
 *
 * Every case not marked `disable` runs: parse its input resource, compile,
 * evaluate, compare with `result` (JSON values; dates, times and quantities
 * as FHIRPath literal text) or expect an error where `error` is true.
 * tests/fhirpath/known-failures.tsv lists the cases we knowingly fail
 * (expression or desc <TAB> reason). The test asserts both ways: every case
 * not listed passes, and every listed case still fails, so the list cannot
 * go stale. The run prints "fhirpath conformance: N passed / M run (...)".
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath.h"
#include "fhir/json.h"
#include "gateway/util/files.h"

#define SUITE_DIR TESTS_DIR "/fhirpath"

typedef struct known {
    char *key;
    char *reason;
    bool used;
} known;

typedef struct known_list {
    known *items;
    size_t count;
} known_list;

/* known-failures.tsv: "key<TAB>reason" lines; '#' starts a comment. Keys may contain \n \r \t escapes. */
static known_list load_known(void)
{
    known_list list = {0};
    size_t len;
    char *text = files_read(SUITE_DIR "/known-failures.tsv", &len);
    if (!text)
        return list;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        if (line[0] == '#' || !tab)
            continue;
        *tab = '\0';
        /* unescape the key */
        char *key = strdup(line), *o = key;
        for (const char *p = line; *p; p++) {
            if (*p == '\\' && (p[1] == 'n' || p[1] == 'r' || p[1] == 't' || p[1] == '\\')) {
                p++;
                *o++ = *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p == 't' ? '\t' : '\\';
            } else {
                *o++ = *p;
            }
        }
        *o = '\0';
        list.items = realloc(list.items, (list.count + 1) * sizeof *list.items);
        list.items[list.count++] = (known){key, strdup(tab + 1), false};
    }
    free(text);
    return list;
}

static known *find_known(known_list *k, const char *expr, const char *desc)
{
    for (size_t i = 0; i < k->count; i++)
        if (!strcmp(k->items[i].key, expr) || (desc && !strcmp(k->items[i].key, desc)))
            return &k->items[i];
    return NULL;
}

/* Does our item match one expected JSON value? */
static bool item_matches(const fp_item *it, json_object *want, char *why, size_t why_len)
{
    char text[512];
    fp_item_text(it, text, sizeof text);
    switch (json_object_get_type(want)) {
    case json_type_boolean: {
        bool b = json_object_get_boolean(want);
        bool ok = (it->kind == FP_BOOLEAN && it->u.boolean == b) ||
                  (it->kind == FP_NODE && !strcmp(text, b ? "true" : "false"));
        if (!ok)
            snprintf(why, why_len, "expected %s, got %s", b ? "true" : "false", text);
        return ok;
    }
    case json_type_int:
    case json_type_double: {
        double w = json_object_get_double(want);
        char *end;
        double got = strtod(text, &end);
        bool numeric = it->kind == FP_INTEGER || it->kind == FP_DECIMAL || it->kind == FP_NODE;
        bool ok = numeric && *text && !*end && fabs(got - w) <= 1e-9 * (fabs(w) > 1 ? fabs(w) : 1);
        if (!ok)
            snprintf(why, why_len, "expected %s, got %s", json_object_to_json_string(want), text);
        return ok;
    }
    case json_type_string: {
        const char *w = json_object_get_string(want);
        bool ok = it->kind != FP_BOOLEAN && it->kind != FP_INTEGER && it->kind != FP_DECIMAL && !strcmp(text, w);
        if (!ok)
            snprintf(why, why_len, "expected \"%s\", got %s", w, text);
        return ok;
    }
    default: snprintf(why, why_len, "expected value of unsupported JSON type"); return false;
    }
}

typedef struct doc_cache {
    char *name;
    char *text; /* the parsed (decoded in place) text */
    fj_doc doc;
} doc_cache;

static doc_cache docs[64];
static size_t doc_count;

static const fj_doc *input_doc(const char *name)
{
    for (size_t i = 0; i < doc_count; i++)
        if (!strcmp(docs[i].name, name))
            return &docs[i].doc;
    if (doc_count == sizeof docs / sizeof *docs)
        return NULL;
    char path[512];
    snprintf(path, sizeof path, SUITE_DIR "/resources/%s", name);
    size_t len;
    char *text = files_read(path, &len);
    if (!text)
        return NULL;
    doc_cache *d = &docs[doc_count];
    fj_error err;
    if (!fj_parse(text, len, NULL, &d->doc, &err)) {
        free(text);
        return NULL;
    }
    d->name = strdup(name);
    d->text = text;
    doc_count++;
    return &d->doc;
}

static void free_docs(void)
{
    for (size_t i = 0; i < doc_count; i++) {
        fj_doc_free(&docs[i].doc);
        free(docs[i].text);
        free(docs[i].name);
    }
    doc_count = 0;
}

/* Run one case; true when it behaves as the suite says. *why explains a failure. */
static bool run_case(json_object *t, fp_arena *arena, char *why, size_t why_len)
{
    json_object *jexpr, *jinput, *jresult, *jerror;
    json_object_object_get_ex(t, "expression", &jexpr);
    const char *expr = json_object_get_string(jexpr);
    bool expect_error = json_object_object_get_ex(t, "error", &jerror) && json_object_get_boolean(jerror);
    const fj_doc *doc = NULL;
    if (json_object_object_get_ex(t, "inputfile", &jinput)) {
        doc = input_doc(json_object_get_string(jinput));
        if (!doc) {
            snprintf(why, why_len, "cannot load input %s", json_object_get_string(jinput));
            return false;
        }
    }
    fp_error err;
    fp_expr *e = fp_compile(expr, NULL, &err);
    if (!e) {
        if (!expect_error)
            snprintf(why, why_len, "compile error at %d: %s", err.position, err.message);
        return expect_error;
    }
    fp_env env;
    fp_env_init(&env, doc);
    fp_arena_reset(arena);
    fp_collection out;
    bool ok = fp_evaluate_node(e, &env, doc ? 0 : FP_NO_NODE, NULL, NULL, arena, &out, &err);
    bool pass;
    if (!ok) {
        pass = expect_error;
        if (!pass)
            snprintf(why, why_len, "evaluation error at %d: %s", err.position, err.message);
    } else if (expect_error) {
        char *json = fp_collection_json(&out);
        snprintf(why, why_len, "expected an error, got %s", json ? json : "?");
        free(json);
        pass = false;
    } else {
        json_object_object_get_ex(t, "result", &jresult);
        size_t n = jresult ? json_object_array_length(jresult) : 0;
        pass = n == out.count;
        if (!pass) {
            char *json = fp_collection_json(&out);
            snprintf(why, why_len, "expected %s, got %s", json_object_to_json_string(jresult), json ? json : "?");
            free(json);
        }
        for (size_t i = 0; pass && i < n; i++)
            pass = item_matches(&out.items[i], json_object_array_get_idx(jresult, i), why, why_len);
    }
    fp_expr_free(e);
    return pass;
}

static char *one_line(const char *s)
{
    static char buf[300];
    size_t o = 0;
    for (; *s && o + 3 < sizeof buf; s++) {
        if (*s == '\n' || *s == '\r' || *s == '\t') {
            buf[o++] = '\\';
            buf[o++] = *s == '\n' ? 'n' : *s == '\r' ? 'r' : 't';
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

Test(fhirpath_conformance, r4_suite)
{
    json_object *suite = json_object_from_file(SUITE_DIR "/tests-fhir-r4.json");
    cr_assert_not_null(suite, "cannot read %s", SUITE_DIR "/tests-fhir-r4.json");
    json_object *tests;
    cr_assert(json_object_object_get_ex(suite, "tests", &tests));
    known_list known_failures = load_known();
    fp_arena *arena = fp_arena_new();
    size_t total = json_object_array_length(tests), run = 0, passed = 0, disabled = 0, known_failed = 0;
    size_t disabled_passing = 0;
    for (size_t i = 0; i < total; i++) {
        json_object *t = json_object_array_get_idx(tests, i), *jd, *je, *jdesc;
        if (json_object_object_get_ex(t, "disable", &jd) && json_object_get_boolean(jd)) {
            /* the suite's keepers left these out; run them anyway, for the record only */
            char ignored[700];
            disabled++;
            disabled_passing += run_case(t, arena, ignored, sizeof ignored);
            continue;
        }
        json_object_object_get_ex(t, "expression", &je);
        const char *expr = json_object_get_string(je);
        const char *desc = json_object_object_get_ex(t, "desc", &jdesc) ? json_object_get_string(jdesc) : NULL;
        char why[700] = "";
        bool ok = run_case(t, arena, why, sizeof why);
        run++;
        known *k = find_known(&known_failures, expr, desc);
        if (k)
            k->used = true;
        if (ok) {
            passed++;
            cr_expect(!k, "listed in known-failures.tsv but passes now: %s (remove it from the list)", one_line(expr));
        } else if (k) {
            known_failed++;
        } else {
            cr_expect(false, "FAILED %s [%s]: %s", one_line(expr), desc ? desc : "", why);
        }
    }
    for (size_t i = 0; i < known_failures.count; i++)
        cr_expect(known_failures.items[i].used, "known-failures.tsv names a case that is not in the suite: %s",
                  known_failures.items[i].key);
    /* an empty or truncated suite must fail, not pass with nothing run */
    cr_expect_geq(run, 899, "the R4 suite has 899 enabled cases; only %zu ran", run);
    fprintf(stderr,
            "fhirpath conformance: %zu passed / %zu run (%zu disabled, of which %zu pass anyway; %zu known failures)\n",
            passed, run, disabled, disabled_passing, known_failed);
    printf("fhirpath conformance: %zu passed / %zu run (%zu disabled, of which %zu pass anyway; %zu known failures)\n",
           passed, run, disabled, disabled_passing, known_failed);
    for (size_t i = 0; i < known_failures.count; i++) {
        free(known_failures.items[i].key);
        free(known_failures.items[i].reason);
    }
    free(known_failures.items);
    fp_arena_free(arena);
    free_docs();
    json_object_put(suite);
}
