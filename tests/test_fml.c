/*
 * tests/test_fml.c — mappings/: the FML parser (structure, round trips,
 * syntax errors with line and column), the StructureMap loader's checks, and
 * the engine on maps written here: a Patient to a small logical model and
 * back, groups and dependent rules, list modes, translate, evaluate, the
 * transforms, extends, default type-to-type groups, unmapped elements,
 * errors, host functions, the per-target memos (two types, two contexts,
 * four threads sharing a map) and a 100,000-item list.
 *
 * Memory: each test frees what it makes; the shared registry and engine
 * context live for the whole process (made in setup, freed in teardown).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json_write.h"
#include "mappings/engine.h"
#include "mappings/fml_parse.h"
#include "mappings/structuremap.h"
#include "json_compare.h"

/* ---- fixtures ------------------------------------------------------------ */

/* A tiny logical model: the insurer's view of a patient. */
static const char *MODEL =
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://example.org/sd/PatientRecord\","
    "\"name\":\"PatientRecord\",\"status\":\"draft\",\"kind\":\"logical\",\"abstract\":false,"
    "\"type\":\"PatientRecord\",\"derivation\":\"specialization\","
    "\"baseDefinition\":\"http://hl7.org/fhir/StructureDefinition/Element\","
    "\"differential\":{\"element\":["
    "{\"path\":\"PatientRecord\",\"min\":0,\"max\":\"*\"},"
    "{\"path\":\"PatientRecord.bsn\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"string\"}]},"
    "{\"path\":\"PatientRecord.family\",\"min\":1,\"max\":\"1\",\"type\":[{\"code\":\"string\"}]},"
    "{\"path\":\"PatientRecord.given\",\"min\":0,\"max\":\"*\",\"type\":[{\"code\":\"string\"}]},"
    "{\"path\":\"PatientRecord.sex\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"code\"}]},"
    "{\"path\":\"PatientRecord.born\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"date\"}]},"
    "{\"path\":\"PatientRecord.deceased\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"boolean\"}]},"
    "{\"path\":\"PatientRecord.address\",\"min\":0,\"max\":\"*\",\"type\":[{\"code\":\"BackboneElement\"}]},"
    "{\"path\":\"PatientRecord.address.street\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"string\"}]},"
    "{\"path\":\"PatientRecord.address.city\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"string\"}]},"
    "{\"path\":\"PatientRecord.note\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"string\"}]},"
    "{\"path\":\"PatientRecord.value[x]\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":\"string\"},{\"code\":\"Quantity\"}]},"
    "{\"path\":\"PatientRecord.item\",\"min\":0,\"max\":\"*\",\"type\":[{\"code\":\"string\"}]}"
    "]}}";

static pf_registry *registry;
static mpe_context *ctx;

static unsigned uuid_counter;
static void fixed_uuid(void *c, char out[37])
{
    (void)c;
    snprintf(out, 37, "00000000-0000-4000-8000-%012u", ++uuid_counter);
}

static void setup(void)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    registry = pf_registry_new(NULL);
    cr_assert(pf_registry_add(registry, MODEL, strlen(MODEL), "PatientRecord.json", &issues));
    cr_assert(pf_registry_finish(registry, &issues));
    ctx = mpe_context_new(NULL, registry);
    cr_assert_not_null(ctx);
    oo_list_free(&issues);
    uuid_counter = 0;
}

static void teardown(void)
{
    mpe_context_free(ctx);
    pf_registry_free(registry);
}

TestSuite(fml, .init = setup, .fini = teardown);

static void print_issues(const oo_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        char buf[700];
        oo_issue_format(&l->items[i], buf, sizeof buf);
        fprintf(stderr, "  %s\n", buf);
    }
}

static json_object *parse_ok(const char *fml)
{
    fml_error err;
    json_object *sm = fml_parse(fml, strlen(fml), "test.map", &err);
    char buf[400];
    if (!sm)
        fml_error_format(&err, buf, sizeof buf);
    cr_assert_not_null(sm, "parse failed: %s", buf);
    return sm;
}

static fml_error parse_fails(const char *fml)
{
    fml_error err = {0};
    json_object *sm = fml_parse(fml, strlen(fml), "bad.map", &err);
    cr_assert_null(sm, "parsed: %s", sm ? json_object_to_json_string(sm) : "");
    return err;
}

static sm_map *load_with(const char *fml, const fp_functions *fns)
{
    json_object *sm = parse_ok(fml);
    oo_list issues;
    oo_list_init(&issues, 0);
    sm_options o = {.functions = fns};
    sm_map *m = sm_load(sm, &o, &issues);
    if (!m)
        print_issues(&issues);
    cr_assert_not_null(m, "the map did not load");
    oo_list_free(&issues);
    json_object_put(sm);
    return m;
}

static sm_map *load(const char *fml)
{
    return load_with(fml, NULL);
}

/* sm_load refuses the map with `words` in an issue. */
static void load_fails(const char *fml, const char *words)
{
    json_object *sm = parse_ok(fml);
    oo_list issues;
    oo_list_init(&issues, 0);
    sm_map *m = sm_load(sm, NULL, &issues);
    cr_expect_null(m);
    sm_free(m);
    bool found = false;
    for (size_t i = 0; i < issues.count; i++)
        found |= strstr(issues.items[i].message, words) != NULL;
    if (!found)
        print_issues(&issues);
    cr_expect(found, "no issue says '%s'", words);
    oo_list_free(&issues);
    json_object_put(sm);
}

/* Run m over source JSON; issues collected in *issues (initialised here). */
static json_object *run_map(const sm_map *m, const char *source, oo_list *issues)
{
    char *text = strdup(source);
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &e), "bad test source: %s", e.message);
    oo_list_init(issues, 0);
    mpe_options o = {.uuid = fixed_uuid};
    json_object *out = NULL;
    bool ok = mpe_run(ctx, m, &doc, 0, &o, &out, issues);
    cr_expect_eq(ok, out != NULL);
    fj_doc_free(&doc);
    free(text);
    return out;
}

static void expect_json(json_object *got, const char *want)
{
    json_object *w = json_tokener_parse(want);
    cr_assert_not_null(w, "bad expected JSON: %s", want);
    cr_expect(tj_same(got, w), "got  %s\nwant %s", json_object_to_json_string(got), json_object_to_json_string(w));
    json_object_put(w);
}

/* Run and compare; no errors expected. */
static void expect_run(const sm_map *m, const char *source, const char *want)
{
    oo_list issues;
    json_object *out = run_map(m, source, &issues);
    if (!out)
        print_issues(&issues);
    cr_assert_not_null(out, "the run failed");
    expect_json(out, want);
    json_object_put(out);
    oo_list_free(&issues);
}

/* Run; it must fail with `words` in the error (and the location `where`, when given). */
static void expect_run_error(const sm_map *m, const char *source, const char *words, const char *where)
{
    oo_list issues;
    json_object *out = run_map(m, source, &issues);
    cr_expect_null(out, "the run succeeded: %s", out ? json_object_to_json_string(out) : "");
    json_object_put(out);
    bool found = false;
    for (size_t i = 0; i < issues.count; i++)
        if (issues.items[i].severity == OO_ERROR && strstr(issues.items[i].message, words) &&
            (!where || (issues.items[i].expression && !strcmp(issues.items[i].expression, where))))
            found = true;
    if (!found)
        print_issues(&issues);
    cr_expect(found, "no error says '%s' at %s", words, where ? where : "(any)");
    oo_list_free(&issues);
}

static bool has_issue(const oo_list *l, oo_severity sev, const char *message)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].severity == sev && !strcmp(l->items[i].message, message))
            return true;
    return false;
}

static const char *jget_str(json_object *o, const char *path)
{
    /* a/b/0/c */
    char buf[200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "/"); tok && o; tok = strtok(NULL, "/")) {
        if (json_object_is_type(o, json_type_array))
            o = json_object_array_get_idx(o, (size_t)atoi(tok));
        else
            o = json_object_object_get(o, tok);
    }
    return o ? json_object_get_string(o) : NULL;
}

/* ---- parser -------------------------------------------------------------- */

Test(fml, parse_header_and_group)
{
    json_object *sm = parse_ok("map \"http://example.org/map/a\" = \"A\"\n"
                               "uses \"http://hl7.org/fhir/StructureDefinition/Patient\" alias P as source\n"
                               "uses \"http://example.org/sd/PatientRecord\" alias R as target\n"
                               "imports \"http://example.org/map/common*\"\n"
                               "group main(source src : P, target tgt : R) {\n"
                               "  src.gender as g -> tgt.sex = g;\n"
                               "}\n");
    cr_expect_str_eq(jget_str(sm, "resourceType"), "StructureMap");
    cr_expect_str_eq(jget_str(sm, "url"), "http://example.org/map/a");
    cr_expect_str_eq(jget_str(sm, "name"), "A");
    cr_expect_str_eq(jget_str(sm, "status"), "draft");
    cr_expect_str_eq(jget_str(sm, "structure/1/alias"), "R");
    cr_expect_str_eq(jget_str(sm, "structure/1/mode"), "target");
    cr_expect_str_eq(jget_str(sm, "import/0"), "http://example.org/map/common*");
    cr_expect_str_eq(jget_str(sm, "group/0/name"), "main");
    cr_expect_str_eq(jget_str(sm, "group/0/typeMode"), "none");
    cr_expect_str_eq(jget_str(sm, "group/0/input/0/mode"), "source");
    cr_expect_str_eq(jget_str(sm, "group/0/input/1/type"), "R");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/name"), "gender");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/transform"), "copy");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/parameter/0/valueId"), "g");
    json_object_put(sm);
}

Test(fml, parse_source_clauses)
{
    json_object *sm = parse_ok("map \"u\" = \"n\"\n"
                               "group g(source src, target tgt) {\n"
                               "  src.value : Quantity 0..1 default 'none' first as v where (v.value > 0 and "
                               "v.unit = ')') check (v.unit.exists()) log (v.unit) -> tgt.x = v \"r1\";\n"
                               "}\n");
    json_object *s = json_object_array_get_idx(
        json_object_object_get(json_object_array_get_idx(
                                   json_object_object_get(json_object_array_get_idx(json_object_object_get(sm, "group"),
                                                                                    0),
                                                          "rule"),
                                   0),
                               "source"),
        0);
    cr_expect_str_eq(jget_str(s, "context"), "src");
    cr_expect_str_eq(jget_str(s, "element"), "value");
    cr_expect_str_eq(jget_str(s, "type"), "Quantity");
    cr_expect_str_eq(jget_str(s, "min"), "0");
    cr_expect_str_eq(jget_str(s, "max"), "1");
    cr_expect_str_eq(jget_str(s, "defaultValueString"), "none");
    cr_expect_str_eq(jget_str(s, "listMode"), "first");
    cr_expect_str_eq(jget_str(s, "variable"), "v");
    cr_expect_str_eq(jget_str(s, "condition"), "v.value > 0 and v.unit = ')'");
    cr_expect_str_eq(jget_str(s, "check"), "v.unit.exists()");
    cr_expect_str_eq(jget_str(s, "logMessage"), "v.unit");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/name"), "r1");
    json_object_put(sm);
}

Test(fml, parse_targets_and_transforms)
{
    json_object *sm = parse_ok("map \"u\" = \"n\"\n"
                               "group g(source src, target tgt) {\n"
                               "  src -> tgt.a = create('HumanName') as n first, tgt.b = 'lit', tgt.c = 12, "
                               "tgt.d = 1.50, tgt.e = true, tgt.f = src.name.family, tgt.g = (src.id + 'x') share, "
                               "tgt.h = evaluate(src, name.where(use = 'official').family) last, "
                               "tgt.i = translate(src, '#cm', 'code') collate, uuid() as u \"t\";\n"
                               "}\n");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/transform"), "create");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/parameter/0/valueString"), "HumanName");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/variable"), "n");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/listMode/0"), "first");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/0/contextType"), "variable");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/1/parameter/0/valueString"), "lit");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/2/parameter/0/valueInteger"), "12");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/3/parameter/0/valueDecimal"), "1.50");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/4/parameter/0/valueBoolean"), "true");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/5/parameter/0/valueId"), "src.name.family");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/6/transform"), "evaluate");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/6/parameter/0/valueString"), "src.id + 'x'");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/7/parameter/1/valueString"),
                     "name.where(use = 'official').family");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/8/parameter/1/valueString"), "#cm");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/8/listMode/0"), "collate");
    cr_expect_null(jget_str(sm, "group/0/rule/0/target/9/context"));
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/target/9/transform"), "uuid");
    json_object_put(sm);
}

Test(fml, parse_dependents_types_extends)
{
    json_object *sm = parse_ok("map \"u\" = \"n\"\n"
                               "group a(source s : Patient, target t : Patient) extends b <<types>> {\n"
                               "  s.name as n -> t.name as m then copyName(n, m), other(n, m) \"names\";\n"
                               "  s.address as a -> t.address as b then {\n"
                               "    a.city as c -> b.city = c;\n"
                               "  } \"addr\";\n"
                               "}\n"
                               "group b(source s, target t) <<type+>> { s.id as i -> t.id = i; }\n");
    cr_expect_str_eq(jget_str(sm, "group/0/extends"), "b");
    cr_expect_str_eq(jget_str(sm, "group/0/typeMode"), "types");
    cr_expect_str_eq(jget_str(sm, "group/1/typeMode"), "type-and-types");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/dependent/0/name"), "copyName");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/dependent/1/variable/1"), "m");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/1/name"), "addr");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/1/rule/0/target/0/element"), "city");
    json_object_put(sm);
}

Test(fml, parse_conceptmap)
{
    json_object *sm = parse_ok("map \"u\" = \"n\"\n"
                               "conceptmap \"sex\" {\n"
                               "  prefix s = \"http://hl7.org/fhir/administrative-gender\"\n"
                               "  prefix t = \"http://example.org/cs/sex\"\n"
                               "  s:male - t:M\n"
                               "  s:female == t:F\n"
                               "  s:\"other\" <= t:\"O\"\n"
                               "  s:unknown -- t:U\n"
                               "}\n"
                               "group g(source src, target tgt) { src -> tgt.x = 'y'; }\n");
    cr_expect_str_eq(jget_str(sm, "contained/0/resourceType"), "ConceptMap");
    cr_expect_str_eq(jget_str(sm, "contained/0/id"), "sex");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/source"), "http://hl7.org/fhir/administrative-gender");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/target"), "http://example.org/cs/sex");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/element/0/target/0/equivalence"), "relatedto");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/element/1/target/0/code"), "F");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/element/1/target/0/equivalence"), "equivalent");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/element/2/code"), "other");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/element/2/target/0/equivalence"), "wider");
    cr_expect_str_eq(jget_str(sm, "contained/0/group/0/element/3/target/0/equivalence"), "unmatched");
    json_object_put(sm);
}

Test(fml, parse_documentation_comments)
{
    json_object *sm = parse_ok("// Maps patients\n// for the insurer\n"
                               "map \"u\" = \"n\"\n\n"
                               "// the entry group\n"
                               "group g(source src, target tgt) {\n"
                               "  src.id as i -> tgt.id = i; // keeps the id\n"
                               "  /* block */ src.gender as x -> tgt.gender = x;\n"
                               "}\n");
    cr_expect_str_eq(jget_str(sm, "description"), "Maps patients\nfor the insurer");
    cr_expect_str_eq(jget_str(sm, "group/0/documentation"), "the entry group");
    cr_expect_str_eq(jget_str(sm, "group/0/rule/0/documentation"), "keeps the id");
    cr_expect_null(jget_str(sm, "group/0/rule/1/documentation"));
    json_object_put(sm);
}

static const char *FULL_MAP =
    "// round trip\n"
    "map \"http://example.org/map/full\" = \"Full\"\n"
    "uses \"http://hl7.org/fhir/StructureDefinition/Patient\" alias P as source\n"
    "uses \"http://example.org/sd/PatientRecord\" alias R as target\n"
    "conceptmap \"sex\" {\n"
    "  prefix s = \"http://hl7.org/fhir/administrative-gender\"\n"
    "  prefix t = \"http://example.org/cs/sex\"\n"
    "  s:male == t:M\n"
    "  s:female ~ t:F\n"
    "}\n"
    "// main group\n"
    "group main(source src : P, target tgt : R) extends base <<type+>> {\n"
    "  src.gender as g -> tgt.sex = translate(g, '#sex', 'code') \"sex\"; // sex\n"
    "  src.name : HumanName 0..* first as n where (n.family.exists()) -> tgt.family = n.family, tgt.x = "
    "evaluate(n, given.first()) share then {\n"
    "    n.given as gv not_first -> tgt.given = gv;\n"
    "  } \"name\";\n"
    "  src.birthDate as b default '2000' log (b) -> tgt.born = b, tgt.y = (b.toString()), "
    "tgt.z = truncate(b, 4) as q then sub(b, q) \"born\";\n"
    "}\n"
    "group base(source s, target t) { s.id as i -> t.id = cast(i, 'string'); }\n"
    "group sub(source s, target t) { s -> t.v = 1.25, t.w = false, t.u = -1 as z collate; }\n";

Test(fml, render_round_trip)
{
    fml_error err;
    /* `-1` is not a literal FML has: the first map of the text fails, the rest round-trips */
    cr_expect_null(fml_parse(FULL_MAP, strlen(FULL_MAP), "full.map", &err));
    char *fixed = strdup(FULL_MAP);
    char *minus = strstr(fixed, "-1");
    minus[0] = ' ';
    json_object *first = parse_ok(fixed);
    char *text = fml_render(first);
    cr_assert_not_null(text);
    json_object *second = parse_ok(text);
    cr_expect(json_object_equal(first, second), "render:\n%s\nfirst  %s\nsecond %s", text,
              json_object_to_json_string(first), json_object_to_json_string(second));
    char *again = fml_render(second);
    cr_expect_str_eq(text, again);
    free(again);
    free(text);
    free(fixed);
    json_object_put(first);
    json_object_put(second);
}

Test(fml, error_missing_semicolon)
{
    fml_error e = parse_fails("map \"u\" = \"n\"\n"
                              "group g(source src, target tgt) {\n"
                              "  src.a as a -> tgt.a = a\n"
                              "  src.b as b -> tgt.b = b;\n"
                              "}\n");
    cr_expect_str_eq(e.file, "bad.map");
    cr_expect_eq(e.line, 4);
    cr_expect_eq(e.column, 3);
    cr_expect(strstr(e.message, "expected ';'") != NULL, "%s", e.message);
    char buf[400];
    fml_error_format(&e, buf, sizeof buf);
    cr_expect(!strncmp(buf, "bad.map:4:3: expected", 21), "%s", buf);
}

Test(fml, error_unknown_transform)
{
    fml_error e = parse_fails("map \"u\" = \"n\"\n"
                              "group g(source src, target tgt) {\n"
                              "  src.a as a -> tgt.a = frobnicate(a);\n"
                              "}\n");
    cr_expect_eq(e.line, 3);
    cr_expect_eq(e.column, 25);
    cr_expect(strstr(e.message, "unknown transform 'frobnicate'") != NULL, "%s", e.message);
}

Test(fml, error_unterminated_string_and_where)
{
    fml_error e = parse_fails("map \"u\" = \"n\"\ngroup g(source src, target tgt) {\n  src.a -> tgt.a = 'abc;\n}\n");
    cr_expect_eq(e.line, 3);
    cr_expect_eq(e.column, 20);
    cr_expect(strstr(e.message, "unterminated string") != NULL, "%s", e.message);
    e = parse_fails("map \"u\" = \"n\"\ngroup g(source src, target tgt) {\n  src.a as a where a.b -> tgt.a = a;\n}\n");
    cr_expect_eq(e.line, 3);
    cr_expect_eq(e.column, 20);
    cr_expect(strstr(e.message, "'(' and a FHIRPath expression after 'where'") != NULL, "%s", e.message);
}

Test(fml, error_header_and_conceptmap)
{
    fml_error e = parse_fails("group g(source src, target tgt) { src -> tgt.a = 'x'; }\n");
    cr_expect_eq(e.line, 1);
    cr_expect(strstr(e.message, "expected 'map") != NULL, "%s", e.message);
    e = parse_fails("map \"u\" = \"n\"\nconceptmap \"c\" {\n  prefix s = \"x\"\n  s:a - q:b\n}\n"
                    "group g(source src, target tgt) { src -> tgt.a = 'x'; }\n");
    cr_expect_eq(e.line, 4);
    cr_expect_eq(e.column, 9);
    cr_expect(strstr(e.message, "unknown prefix") != NULL, "%s", e.message);
    e = parse_fails("map \"u\" = \"n\"\ngroup g(source src, target tgt) {\n  src.a as a -> tgt.a = a;\n");
    cr_expect_eq(e.line, 4);
    cr_expect(strstr(e.message, "the end of the map") != NULL, "%s", e.message);
    e = parse_fails("map \"u\" = \"n\"\ngroup g(input src) { }\n");
    cr_expect_eq(e.line, 2);
    cr_expect_eq(e.column, 9);
    cr_expect(strstr(e.message, "'source' or 'target'") != NULL, "%s", e.message);
}

/* ---- loader -------------------------------------------------------------- */

Test(fml, load_checks_groups_and_arguments)
{
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) { s.a as a -> t.a as b then nowhere(a, b); }\n",
               "then nowhere(): no group of that name");
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) { s.a as a -> t.a as b then h(a); }\n"
               "group h(source x, target y) { x -> y.z = 'q'; }\n",
               "the group has 2 inputs, given 1 arguments");
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) extends zz { s -> t.a = 'x'; }\n",
               "extends zz: no group of that name");
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) extends h { s -> t.a = 'x'; }\n"
               "group h(source s, target t) extends g { s -> t.a = 'x'; }\n",
               "circle");
}

Test(fml, load_checks_scope_and_fhirpath)
{
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) { s.a as a -> t.a = b; }\n",
               "group g, rule 'a': copy(): 'b' is not a variable in scope");
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) { q.a as a -> t.a = a; }\n",
               "source context 'q' is not a variable in scope");
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) { s.a as a where (a.nosuchfn()) -> t.a = a \"r\"; }\n",
               "group g, rule 'r': where (a.nosuchfn())");
    load_fails("map \"u\" = \"n\"\ngroup g(source s, target t) { s.a as a -> t.a = truncate(a); }\n",
               "truncate() takes 2 to 2 parameters, not 1");
}

Test(fml, load_from_structuremap_json)
{
    const char *json =
        "{\"resourceType\":\"StructureMap\",\"url\":\"http://example.org/map/j\",\"name\":\"J\",\"status\":\"draft\","
        "\"group\":[{\"name\":\"g\",\"typeMode\":\"none\",\"input\":[{\"name\":\"src\",\"type\":\"Patient\","
        "\"mode\":\"source\"},{\"name\":\"tgt\",\"type\":\"PatientRecord\",\"mode\":\"target\"}],"
        "\"rule\":[{\"name\":\"fam\",\"source\":[{\"context\":\"src\",\"element\":\"name\",\"variable\":\"n\"}],"
        "\"rule\":[{\"name\":\"f\",\"source\":[{\"context\":\"n\",\"element\":\"family\",\"variable\":\"f\"}],"
        "\"target\":[{\"context\":\"tgt\",\"contextType\":\"variable\",\"element\":\"family\",\"transform\":\"copy\","
        "\"parameter\":[{\"valueId\":\"f\"}]}]}]}]}]}";
    oo_list issues;
    oo_list_init(&issues, 0);
    sm_map *m = sm_load_json(json, strlen(json), NULL, &issues);
    if (!m)
        print_issues(&issues);
    cr_assert_not_null(m);
    oo_list_free(&issues);
    expect_run(m, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Jansen\"}]}",
               "{\"resourceType\":\"PatientRecord\",\"family\":\"Jansen\"}");
    sm_free(m);
}

/* ---- engine: Patient <-> logical model ----------------------------------- */

static const char *PATIENT =
    "{\"resourceType\":\"Patient\",\"id\":\"p1\","
    "\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999911120\"},"
    "{\"system\":\"urn:other\",\"value\":\"x\"}],"
    "\"name\":[{\"family\":\"Jansen\",\"given\":[\"Piet\",\"Jan\"]}],"
    "\"gender\":\"male\",\"birthDate\":\"1970-03-04\",\"deceasedBoolean\":false,"
    "\"address\":[{\"line\":[\"Kerkstraat 1\"],\"city\":\"Utrecht\"},{\"line\":[\"Dorpsweg 2\"],\"city\":\"Ede\"}]}";

static const char *TO_RECORD = "map \"http://example.org/map/patient-to-record\" = \"PatientToRecord\"\n"
                               "uses \"http://hl7.org/fhir/StructureDefinition/Patient\" alias Patient as source\n"
                               "uses \"http://example.org/sd/PatientRecord\" alias Record as target\n"
                               "conceptmap \"sex\" {\n"
                               "  prefix s = \"http://hl7.org/fhir/administrative-gender\"\n"
                               "  prefix t = \"http://example.org/cs/sex\"\n"
                               "  s:male == t:M\n"
                               "  s:female == t:F\n"
                               "}\n"
                               "group main(source src : Patient, target tgt : Record) {\n"
                               "  src.id -> tgt.note = 'from Patient';\n"
                               "  src.identifier as i where (system = 'http://fhir.nl/fhir/NamingSystem/bsn') then {\n"
                               "    i.system;\n"
                               "    i.value as v -> tgt.bsn = v;\n"
                               "  } \"bsn\";\n"
                               "  src.name as n first then {\n"
                               "    n.family as f -> tgt.family = f;\n"
                               "    n.given as g -> tgt.given = g;\n"
                               "  } \"name\";\n"
                               "  src.gender as g -> tgt.sex = translate(g, '#sex', 'code') \"sex\";\n"
                               "  src.birthDate as b -> tgt.born = b;\n"
                               "  src.deceased : boolean as d -> tgt.deceased = d;\n"
                               "  src.address as a -> tgt.address as ta then address(a, ta) \"address\";\n"
                               "}\n"
                               "group address(source a : Address, target ta) {\n"
                               "  a.line as l first -> ta.street = l;\n"
                               "  a.city as c -> ta.city = c;\n"
                               "}\n";

Test(fml, patient_to_logical_model)
{
    sm_map *m = load(TO_RECORD);
    oo_list issues;
    json_object *out = run_map(m, PATIENT, &issues);
    if (!out)
        print_issues(&issues);
    cr_assert_not_null(out);
    expect_json(out, "{\"resourceType\":\"PatientRecord\",\"note\":\"from Patient\",\"bsn\":\"999911120\","
                     "\"family\":\"Jansen\",\"given\":[\"Piet\",\"Jan\"],\"sex\":\"M\",\"born\":\"1970-03-04\","
                     "\"deceased\":false,\"address\":[{\"street\":\"Kerkstraat 1\",\"city\":\"Utrecht\"},"
                     "{\"street\":\"Dorpsweg 2\",\"city\":\"Ede\"}]}");
    /* the other identifier is filtered out by `where`: reported, not dropped silently */
    cr_expect(has_issue(&issues, OO_INFORMATION, "unmapped: Patient.identifier[1]"));
    cr_expect_eq(issues.errors, 0);
    json_object_put(out);
    oo_list_free(&issues);
    sm_free(m);
}

Test(fml, logical_model_back_to_patient)
{
    sm_map *m = load("map \"http://example.org/map/record-to-patient\" = \"RecordToPatient\"\n"
                     "uses \"http://example.org/sd/PatientRecord\" alias Record as source\n"
                     "uses \"http://hl7.org/fhir/StructureDefinition/Patient\" alias Patient as target\n"
                     "group main(source src : Record, target tgt : Patient) {\n"
                     "  src.bsn as b -> tgt.identifier = id('http://fhir.nl/fhir/NamingSystem/bsn', b) \"bsn\";\n"
                     "  src -> tgt.name as n then {\n"
                     "    src.family as f -> n.family = f;\n"
                     "    src.given as g -> n.given = g;\n"
                     "  } \"name\";\n"
                     "  src.sex as s where (s = 'M') -> tgt.gender = 'male' \"male\";\n"
                     "  src.sex as s where (s = 'F') -> tgt.gender = 'female' \"female\";\n"
                     "  src.born as b -> tgt.birthDate = b;\n"
                     "  src.deceased as d -> tgt.deceased = d;\n"
                     "  src.address as a -> tgt.address as ta then {\n"
                     "    a.street as s -> ta.line = s;\n"
                     "    a.city as c -> ta.city = c;\n"
                     "  } \"address\";\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"PatientRecord\",\"bsn\":\"999911120\",\"family\":\"Jansen\","
               "\"given\":[\"Piet\",\"Jan\"],\"sex\":\"M\",\"born\":\"1970-03-04\",\"deceased\":true,"
               "\"address\":[{\"street\":\"Kerkstraat 1\",\"city\":\"Utrecht\"}]}",
               "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\","
               "\"value\":\"999911120\"}],\"name\":[{\"family\":\"Jansen\",\"given\":[\"Piet\",\"Jan\"]}],"
               "\"gender\":\"male\",\"birthDate\":\"1970-03-04\",\"deceasedBoolean\":true,"
               "\"address\":[{\"line\":[\"Kerkstraat 1\"],\"city\":\"Utrecht\"}]}");
    sm_free(m);
}

/* ---- engine: groups and rules -------------------------------------------- */

Test(fml, nested_groups_and_dependent_rules)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Patient) {\n"
                     "  src.contact as c -> tgt.contact as tc then contact(c, tc) \"contact\";\n"
                     "}\n"
                     "group contact(source c : BackboneElement, target tc) {\n"
                     "  c.name as n -> tc.name as tn then name(n, tn) \"cname\";\n"
                     "  c.telecom as t -> tc.telecom as tt then {\n"
                     "    t.value as v -> tt.value = v, tt.system = 'phone';\n"
                     "  } \"tel\";\n"
                     "}\n"
                     "group name(source n, target tn) {\n"
                     "  n.family as f -> tn.family = f;\n"
                     "  n.given as g -> tn.given = g;\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"Patient\",\"contact\":[{\"name\":{\"family\":\"A\",\"given\":[\"B\"]},"
               "\"telecom\":[{\"value\":\"123\"},{\"value\":\"456\"}]}]}",
               "{\"resourceType\":\"Patient\",\"contact\":[{\"name\":{\"family\":\"A\",\"given\":[\"B\"]},"
               "\"telecom\":[{\"value\":\"123\",\"system\":\"phone\"},{\"value\":\"456\",\"system\":\"phone\"}]}]}");
    sm_free(m);
}

Test(fml, source_list_modes)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.name as n first -> tgt.family = (n.family) \"first\";\n"
                     "  src.name as n last then { n.given as g -> tgt.given = g; } \"last\";\n"
                     "  src.name as n not_first then { n.family as f -> tgt.item = f; } \"not_first\";\n"
                     "  src.name as n not_last then { n.family as f -> tgt.item = f; } \"not_last\";\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"A\",\"given\":[\"x\"]},{\"family\":\"B\"},"
               "{\"family\":\"C\",\"given\":[\"y\",\"z\"]}]}",
               "{\"resourceType\":\"PatientRecord\",\"family\":\"A\",\"given\":[\"y\",\"z\"],"
               "\"item\":[\"B\",\"C\",\"A\",\"B\"]}");
    sm_free(m);
    m = load("map \"u\" = \"n\"\n"
             "group main(source src : Patient, target tgt : PatientRecord) {\n"
             "  src.name as n only_one -> tgt.family = (n.family) \"one\";\n"
             "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"A\"},{\"family\":\"B\"}]}",
                     "group main, rule 'one': src.name: only_one, but 2 values", NULL);
    sm_free(m);
}

Test(fml, target_list_modes)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.name as n -> tgt.item = (n.family) \"all\";\n"
                     "  src.id as i -> tgt.item = i first \"front\";\n"
                     "  src.address as a -> tgt.address as ta share then { a.city as c -> ta.city = c; } \"s1\";\n"
                     "  src.address as a -> tgt.address as ta share then { a.line as l -> ta.street = l; } \"s2\";\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"Patient\",\"id\":\"z\",\"name\":[{\"family\":\"A\"},{\"family\":\"B\"}],"
               "\"address\":[{\"city\":\"Ede\",\"line\":[\"Weg 1\"]}]}",
               "{\"resourceType\":\"PatientRecord\",\"item\":[\"z\",\"A\",\"B\"],"
               "\"address\":[{\"city\":\"Ede\",\"street\":\"Weg 1\"}]}");
    sm_free(m);
}

Test(fml, group_extends_runs_base_first)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) extends common {\n"
                     "  src.gender as g -> tgt.sex = g;\n"
                     "}\n"
                     "group common(source s, target t) {\n"
                     "  s.id as i -> t.item = i;\n"
                     "  s.gender as g -> t.item = g;\n"
                     "}\n");
    expect_run(m, "{\"resourceType\":\"Patient\",\"id\":\"a\",\"gender\":\"female\"}",
               "{\"resourceType\":\"PatientRecord\",\"item\":[\"a\",\"female\"],\"sex\":\"female\"}");
    sm_free(m);
}

Test(fml, default_type_groups_and_copies)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Patient) {\n"
                     "  src.name -> tgt.name;\n"
                     "  src.telecom -> tgt.telecom;\n"
                     "  src.birthDate -> tgt.birthDate;\n"
                     "}\n"
                     "group hn(source s : HumanName, target t : HumanName) <<types>> {\n"
                     "  s.family as f -> t.family = append(f, '!');\n"
                     "}\n");
    oo_list issues;
    json_object *out = run_map(m,
                               "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"A\",\"given\":[\"g\"]}],"
                               "\"telecom\":[{\"system\":\"phone\",\"value\":\"1\"}],\"birthDate\":\"2001\"}",
                               &issues);
    cr_assert_not_null(out);
    /* HumanName through the <<types>> group; ContactPoint copied (same type); the date copied */
    expect_json(out, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"A!\"}],"
                     "\"telecom\":[{\"system\":\"phone\",\"value\":\"1\"}],\"birthDate\":\"2001\"}");
    cr_expect(has_issue(&issues, OO_INFORMATION, "unmapped: Patient.name[0].given"));
    json_object_put(out);
    oo_list_free(&issues);
    sm_free(m);
}

/* ---- engine: transforms -------------------------------------------------- */

Test(fml, translate_inline_and_registry)
{
    json_object *cm = json_tokener_parse(
        "{\"resourceType\":\"ConceptMap\",\"url\":\"http://example.org/cm/status\",\"status\":\"draft\","
        "\"group\":[{\"source\":\"http://hl7.org/fhir/administrative-gender\",\"target\":\"http://example.org/g\","
        "\"element\":[{\"code\":\"male\",\"target\":[{\"code\":\"x\",\"equivalence\":\"disjoint\"},"
        "{\"code\":\"1\",\"display\":\"Man\",\"equivalence\":\"narrower\"}]},"
        "{\"code\":\"female\",\"target\":[{\"code\":\"2\",\"equivalence\":\"equal\"}]}]}]}");
    oo_list issues;
    oo_list_init(&issues, 0);
    cr_assert(mpe_add_conceptmap(ctx, cm, &issues));
    cr_expect_not(mpe_add_conceptmap(ctx, cm, &issues), "the url is taken");
    json_object_put(cm);
    oo_list_free(&issues);
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Observation) {\n"
                     "  src.gender as g -> tgt.code = translate(g, 'http://example.org/cm/status', "
                     "'CodeableConcept') \"code\";\n"
                     "  src.gender as g -> tgt.status = translate(g, 'http://example.org/cm/status', 'code');\n"
                     "}\n");
    expect_run(m, "{\"resourceType\":\"Patient\",\"gender\":\"male\"}",
               "{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://example.org/g\","
               "\"code\":\"1\",\"display\":\"Man\"}]},\"status\":\"1\"}");
    sm_free(m);
    m = load(TO_RECORD);
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"A\"}],\"gender\":\"other\"}",
                     "group main, rule 'sex': translate(): no mapping for code 'other'", "Patient.gender");
    sm_free(m);
}

Test(fml, evaluate_fhirpath)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src -> tgt.family = evaluate(src, name.where(use = 'official').family) \"official\";\n"
                     "  src.name as n -> tgt.item = (n.given.count().toString()) \"count\";\n"
                     "  src.name as n where (%n.use = 'usual') -> tgt.note = evaluate(n, given.join(' ')) \"join\";\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"Patient\",\"name\":[{\"use\":\"usual\",\"family\":\"X\",\"given\":[\"a\",\"b\"]},"
               "{\"use\":\"official\",\"family\":\"Y\"}]}",
               "{\"resourceType\":\"PatientRecord\",\"family\":\"Y\",\"item\":[\"2\",\"0\"],\"note\":\"a b\"}");
    sm_free(m);
}

Test(fml, create_intermediate_objects_and_choice)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Observation) {\n"
                     "  src -> tgt.status = 'final', tgt.code = create('CodeableConcept') as cc, "
                     "cc.coding = create('Coding') as c, c.system = 'http://loinc.org', c.code = '8302-2' \"code\";\n"
                     "  src.birthDate as b -> tgt.effective = b \"eff\";\n"
                     "  src -> tgt.value = qty('180 \\'cm\\'') \"value\";\n"
                     "  src -> tgt.component as comp, comp.value = 'txt' \"comp\";\n"
                     "}\n");
    expect_run(m, "{\"resourceType\":\"Patient\",\"birthDate\":\"1990-01-01\"}",
               "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
               "\"http://loinc.org\",\"code\":\"8302-2\"}]},\"effectiveDateTime\":\"1990-01-01\","
               "\"valueQuantity\":{\"value\":180,\"unit\":\"cm\",\"system\":\"http://unitsofmeasure.org\","
               "\"code\":\"cm\"},\"component\":[{\"valueString\":\"txt\"}]}");
    sm_free(m);
}

Test(fml, cast_append_truncate)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.name as n, n.family as f -> tgt.family = truncate(f, 3) \"trunc\";\n"
                     "  src.name as n, n.given as g -> tgt.note = append(g, ' ', n.family) \"append\";\n"
                     "  src.multipleBirth as mb -> tgt.item = cast(mb, 'string') \"cast\";\n"
                     "  src.id as i -> tgt.deceased = cast(i, 'boolean') \"bool\";\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"Patient\",\"id\":\"true\",\"name\":[{\"family\":\"Émilie\",\"given\":[\"A\"]}],"
               "\"multipleBirthInteger\":2}",
               "{\"resourceType\":\"PatientRecord\",\"family\":\"Émi\",\"note\":\"A Émilie\",\"item\":[\"2\"],"
               "\"deceased\":true}");
    sm_free(m);
    m = load("map \"u\" = \"n\"\n"
             "group main(source src : Patient, target tgt : PatientRecord) {\n"
             "  src.id as i -> tgt.item = cast(i, 'integer') \"int\";\n"
             "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"id\":\"abc\"}", "cast(): 'abc' is not an integer",
                     "Patient.id");
    sm_free(m);
}

Test(fml, cc_c_qty_id_cp)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Observation) {\n"
                     "  src -> tgt.code = cc('http://loinc.org', '1234-5', 'Thing') \"cc\";\n"
                     "  src -> tgt.category = cc('just text') \"cctext\";\n"
                     "  src -> tgt.identifier = id('urn:sys', 'v1', 'MR') \"id\";\n"
                     "  src -> tgt.value = qty('5.0', 'mg', 'http://unitsofmeasure.org', 'mg') \"qty\";\n"
                     "  src -> tgt.extension as e, e.url = 'http://x', e.value = c('urn:s', 'k') \"c\";\n"
                     "}\n"
                     "group second(source src : Patient, target tgt : Patient) {\n"
                     "  src.id as i -> tgt.telecom = cp('a@b.nl'), tgt.telecom = cp('phone', '0612'), "
                     "tgt.telecom = cp('https://x.nl') \"cp\";\n"
                     "}\n");
    expect_run(m, "{\"resourceType\":\"Patient\"}",
               "{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
               "\"code\":\"1234-5\",\"display\":\"Thing\"}]},\"category\":[{\"text\":\"just text\"}],"
               "\"identifier\":[{\"type\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v2-0203\","
               "\"code\":\"MR\"}]},\"system\":\"urn:sys\",\"value\":\"v1\"}],"
               "\"valueQuantity\":{\"value\":5.0,\"unit\":\"mg\",\"system\":\"http://unitsofmeasure.org\","
               "\"code\":\"mg\"},\"extension\":[{\"url\":\"http://x\",\"valueCoding\":{\"system\":\"urn:s\","
               "\"code\":\"k\"}}]}");
    char *text = strdup("{\"resourceType\":\"Patient\",\"id\":\"q\"}");
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &e));
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = NULL;
    mpe_options o = {.group = "second"};
    cr_assert(mpe_run(ctx, m, &doc, 0, &o, &out, &issues));
    expect_json(out, "{\"resourceType\":\"Patient\",\"telecom\":[{\"system\":\"email\",\"value\":\"a@b.nl\"},"
                     "{\"system\":\"phone\",\"value\":\"0612\"},{\"system\":\"url\",\"value\":\"https://x.nl\"}]}");
    json_object_put(out);
    oo_list_free(&issues);
    fj_doc_free(&doc);
    free(text);
    sm_free(m);
}

Test(fml, uuid_reference_pointer)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Bundle) {\n"
                     "  src -> tgt.id = uuid(), tgt.type = 'collection' \"head\";\n"
                     "  src -> tgt.entry as e, e.resource = create('Patient') as p, p.active = true, "
                     "tgt.entry as e2, e2.fullUrl = pointer(p), e2.resource = create('Observation') as o, "
                     "o.subject as s, s.reference = reference(p), o.status = 'final' \"entries\";\n"
                     "}\n");
    expect_run(m, "{\"resourceType\":\"Patient\"}",
               "{\"resourceType\":\"Bundle\",\"id\":\"00000000-0000-4000-8000-000000000001\",\"type\":\"collection\","
               "\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"active\":true,"
               "\"id\":\"00000000-0000-4000-8000-000000000002\"}},"
               "{\"fullUrl\":\"urn:uuid:00000000-0000-4000-8000-000000000002\",\"resource\":{\"resourceType\":"
               "\"Observation\",\"subject\":{\"reference\":\"Patient/00000000-0000-4000-8000-000000000002\"},"
               "\"status\":\"final\"}}]}");
    sm_free(m);
}

Test(fml, escape_and_dateop_are_refused_clearly)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.id as i -> tgt.note = escape(i, 'json', 'xml') \"esc\";\n"
                     "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"id\":\"a\"}", "escape() is not supported", "Patient.id");
    sm_free(m);
    m = load("map \"u\" = \"n\"\n"
             "group main(source src : Patient, target tgt : PatientRecord) {\n"
             "  src.birthDate as b -> tgt.born = dateOp(b, 'add', '1 year') \"dop\";\n"
             "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"birthDate\":\"2000\"}", "dateOp() is not supported", NULL);
    sm_free(m);
}

/* Every value evaluate() gives is put; they are copies (the <<types>> group serves rules without a transform). */
Test(fml, evaluate_many_values_fill_a_list)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : Patient) {\n"
                     "  src -> tgt.name as n, n.given = evaluate(src, name.given) \"all\";\n"
                     "  src -> tgt.identifier = evaluate(src, identifier) \"ids\";\n"
                     "}\n"
                     "group ident(source s : Identifier, target t : Identifier) <<types>> {\n"
                     "  s.value as v -> t.value = append('x', v);\n"
                     "}\n");
    expect_run(m,
               "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"1\"},{\"value\":\"2\"}],"
               "\"name\":[{\"given\":[\"a\",\"b\"]},{\"given\":[\"c\"]}]}",
               "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\",\"b\",\"c\"]}],"
               "\"identifier\":[{\"value\":\"1\"},{\"value\":\"2\"}]}");
    sm_free(m);
}

/* ---- engine: where, check, defaults -------------------------------------- */

Test(fml, where_check_default_log)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.telecom as t where (system = 'email') check (value.contains('@')) log (value) -> "
                     "tgt.item = (t.value) \"mail\";\n"
                     "  src.gender default 'unknown' as g -> tgt.sex = g \"sex\";\n"
                     "}\n");
    oo_list issues;
    json_object *out = run_map(m,
                               "{\"resourceType\":\"Patient\",\"telecom\":[{\"system\":\"phone\",\"value\":\"1\"},"
                               "{\"system\":\"email\",\"value\":\"a@b\"}]}",
                               &issues);
    cr_assert_not_null(out);
    expect_json(out, "{\"resourceType\":\"PatientRecord\",\"item\":[\"a@b\"],\"sex\":\"unknown\"}");
    cr_expect(has_issue(&issues, OO_INFORMATION, "group main, rule 'mail': log: [\"a@b\"]"));
    cr_expect(has_issue(&issues, OO_INFORMATION, "unmapped: Patient.telecom[0]"));
    json_object_put(out);
    oo_list_free(&issues);
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"telecom\":[{\"system\":\"email\",\"value\":\"nope\"}]}",
                     "group main, rule 'mail': check failed: value.contains('@')", "Patient.telecom[0]");
    sm_free(m);
}

/* ---- engine: unmapped and errors ----------------------------------------- */

Test(fml, unmapped_elements_are_reported)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : CarePlan, target tgt : CarePlan) {\n"
                     "  src.status as s -> tgt.status = s;\n"
                     "  src.intent as i -> tgt.intent = i;\n"
                     "  src.activity as a -> tgt.activity as ta then {\n"
                     "    a.detail as d -> ta.detail as td then {\n"
                     "      d.status as s -> td.status = s;\n"
                     "    } \"detail\";\n"
                     "  } \"activity\";\n"
                     "}\n");
    oo_list issues;
    json_object *out = run_map(m,
                               "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                               "\"subject\":{\"reference\":\"Patient/1\"},\"activity\":["
                               "{\"detail\":{\"status\":\"scheduled\"}},{\"detail\":{\"status\":\"scheduled\"}},"
                               "{\"detail\":{\"status\":\"scheduled\",\"description\":\"walk daily\"}}]}",
                               &issues);
    cr_assert_not_null(out);
    cr_expect(has_issue(&issues, OO_INFORMATION, "unmapped: CarePlan.activity[2].detail.description"));
    cr_expect(has_issue(&issues, OO_INFORMATION, "unmapped: CarePlan.subject"));
    size_t unmapped = 0;
    for (size_t i = 0; i < issues.count; i++)
        unmapped += !strncmp(issues.items[i].message, "unmapped: ", 10);
    cr_expect_eq(unmapped, 2, "unmapped issues: %zu", unmapped);
    for (size_t i = 0; i < issues.count; i++)
        if (!strcmp(issues.items[i].message, "unmapped: CarePlan.subject"))
            cr_expect_str_eq(issues.items[i].expression, "CarePlan.subject");
    json_object_put(out);
    oo_list_free(&issues);
    sm_free(m);
}

Test(fml, type_mismatch_and_unknown_element_are_errors)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.name as n -> tgt.deceased = (n.family) \"dec\";\n"
                     "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"A\"}]}",
                     "group main, rule 'dec': type mismatch: PatientRecord.deceased takes boolean, not string",
                     "Patient.name[0]");
    sm_free(m);
    m = load("map \"u\" = \"n\"\n"
             "group main(source src : Patient, target tgt : PatientRecord) {\n"
             "  src.gender as g -> tgt.gender = g \"g\";\n"
             "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"gender\":\"male\"}",
                     "group main, rule 'g': PatientRecord has no element 'gender'", "Patient.gender");
    sm_free(m);
}

Test(fml, fhirpath_errors_and_failed_runs_give_no_result)
{
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.id as i -> tgt.note = i \"ok\";\n"
                     "  src.name as n -> tgt.family = (n.given.single()) \"single\";\n"
                     "}\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\",\"id\":\"x\",\"name\":[{\"given\":[\"a\",\"b\"]}]}",
                     "group main, rule 'single': evaluate() (%n.given.single())", "Patient.name[0]");
    sm_free(m);
}

Test(fml, unknown_start_group_and_target_type)
{
    sm_map *m = load("map \"u\" = \"n\"\ngroup main(source src, target tgt : NoSuchModel) { src -> tgt.a = 'x'; }\n");
    expect_run_error(m, "{\"resourceType\":\"Patient\"}", "target type 'NoSuchModel' is neither", NULL);
    char *text = strdup("{}");
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(text, strlen(text), NULL, &doc, &e));
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = (json_object *)1;
    mpe_options o = {.group = "nope"};
    cr_expect_not(mpe_run(ctx, m, &doc, 0, &o, &out, &issues));
    cr_expect_null(out);
    cr_expect(strstr(issues.items[0].message, "no group 'nope'") != NULL);
    oo_list_free(&issues);
    fj_doc_free(&doc);
    free(text);
    sm_free(m);
}

/* ---- host functions ------------------------------------------------------ */

static bool shout(void *arg, const fp_host_call *call, fp_collection *out, fp_error *err)
{
    (void)arg;
    out->count = 0;
    out->items = fp_arena_alloc(call->arena, call->input->count * sizeof(fp_item) + 1);
    for (size_t i = 0; i < call->input->count; i++) {
        char buf[128];
        size_t n = fp_item_text(&call->input->items[i], buf, sizeof buf);
        if (n >= sizeof buf) {
            snprintf(err->message, sizeof err->message, "too long");
            return false;
        }
        char *s = fp_arena_alloc(call->arena, n + 2);
        for (size_t k = 0; k < n; k++)
            s[k] = (char)(buf[k] >= 'a' && buf[k] <= 'z' ? buf[k] - 32 : buf[k]);
        s[n] = '!';
        out->items[out->count++] = fp_string(s, n + 1);
    }
    return true;
}

Test(fml, host_functions_through_evaluate)
{
    fp_functions *fns = fp_functions_new();
    fp_error err;
    cr_assert(fp_functions_add(fns, "shout", 0, 0, shout, NULL, &err));
    sm_map *m = load_with("map \"u\" = \"n\"\n"
                          "group main(source src : Patient, target tgt : PatientRecord) {\n"
                          "  src.name as n -> tgt.family = evaluate(n, family.shout()) \"shout\";\n"
                          "}\n",
                          fns);
    expect_run(m, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"jansen\"}]}",
               "{\"resourceType\":\"PatientRecord\",\"family\":\"JANSEN!\"}");
    sm_free(m);
    /* without the registry the map does not load: host functions resolve at load time */
    load_fails("map \"u\" = \"n\"\n"
               "group main(source src : Patient, target tgt : PatientRecord) {\n"
               "  src.name as n -> tgt.family = evaluate(n, family.shout()) \"shout\";\n"
               "}\n",
               "group main, rule 'shout': evaluate()");
    fp_functions_free(fns);
}

/* ---- where x = 'text' without FHIRPath ---------------------------------- */

/* The map of the test below, its where clauses as written (recognised: tested on the JSON) or in parentheses. */
static sm_map *equals_map(bool parenthesised)
{
    const char *o = parenthesised ? "(" : "", *c = parenthesised ? ")" : "";
    char fml[1600];
    snprintf(fml, sizeof fml,
             "map \"u\" = \"n\"\n"
             "group main(source src : Patient, target tgt : PatientRecord) {\n"
             "  src.identifier as i where (%ssystem = 'a'%s) then { i.value as v -> tgt.item = v \"v\"; } \"a\";\n"
             "  src.extension as e where (%svalue = 'x'%s) -> tgt.note = 'choice' \"choice\";\n"
             "  src.birthDate as b where (%s$this = '2020-01-01'%s) -> tgt.bsn = 'dated' \"date\";\n"
             "  src.name as n where (%sfamily = 'jansen'%s) -> tgt.given = 'plain' \"plain\";\n"
             "  src.name as n where (%sgiven = 'jan'%s) -> tgt.given = 'list' \"list\";\n"
             "  src.gender as g check (%s$this = 'female'%s) -> tgt.sex = g \"sex\";\n"
             "  src.contained as r where (%s$this is Organization%s) -> tgt.address as a, a.city = 'org' \"is\";\n"
             "  src.contained as r where (%s$this is DomainResource%s) -> tgt.item = 'dr' \"base\";\n"
             "}\n",
             o, c, o, c, o, c, o, c, o, c, o, c, o, c, o, c);
    return load(fml);
}

Test(fml, where_equals_agrees_with_fhirpath)
{
    /* plain strings, a missing value, a value with only `_system`, a choice, a date, a list; types */
    const char *src = "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"a\",\"value\":\"1\"},"
                      "{\"system\":\"b\",\"value\":\"2\"},{\"value\":\"3\"},{\"_system\":{\"extension\":"
                      "[{\"url\":\"x\",\"valueString\":\"a\"}]},\"value\":\"4\"},{\"system\":\"a\",\"value\":\"5\"}],"
                      "\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}],\"birthDate\":\"2020-01-01\","
                      "\"gender\":\"female\",\"name\":[{\"family\":\"jansen\",\"given\":[\"jan\"]}],"
                      "\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\"},"
                      "{\"resourceType\":\"Practitioner\",\"id\":\"p\"}]}";
    sm_map *quick = equals_map(false), *slow = equals_map(true);
    cr_assert(quick->groups[0].rules[0].sources[0].condition_eq.literal, "system = 'a' is recognised");
    cr_assert_null(slow->groups[0].rules[0].sources[0].condition_eq.literal, "(system = 'a') is not");
    oo_list qi, si;
    json_object *q = run_map(quick, src, &qi), *s = run_map(slow, src, &si);
    cr_assert(q && s);
    cr_expect(tj_same(q, s), "quick %s\nFHIRPath %s", json_object_to_json_string(q), json_object_to_json_string(s));
    expect_json(json_object_object_get(q, "item"), "[\"1\",\"5\",\"dr\",\"dr\"]");
    expect_json(json_object_object_get(q, "address"), "[{\"city\":\"org\"}]");
    cr_expect_not_null(quick->groups[0].rules[6].sources[0].condition_eq.is_type, "$this is X is recognised");
    cr_expect_str_eq(jget_str(q, "note"), "choice");
    expect_json(json_object_object_get(q, "given"), "[\"plain\",\"list\"]");
    cr_expect_str_eq(jget_str(q, "sex"), "female");
    json_object_put(q), json_object_put(s);
    oo_list_free(&qi), oo_list_free(&si);
    /* a failed check is the same error either way */
    const char *male = "{\"resourceType\":\"Patient\",\"gender\":\"male\"}";
    expect_run_error(quick, male, "check failed: $this = 'female'", "Patient.gender");
    expect_run_error(slow, male, "check failed: ($this = 'female')", "Patient.gender");
    sm_free(quick);
    sm_free(slow);
}

/* The set forms of the test below: `in`, its `.not()`, `=` joined by `or`; parenthesised: FHIRPath decides. */
static sm_map *sets_map(bool parenthesised)
{
    const char *o = parenthesised ? "(" : "", *c = parenthesised ? ")" : "";
    char fml[1600];
    snprintf(
        fml, sizeof fml,
        "map \"u\" = \"n\"\n"
        "group main(source src : Patient, target tgt : PatientRecord) {\n"
        "  src.name as n then { n.given as g where (%s$this in ('jan' | 'piet')%s) -> tgt.item = g \"in\"; } \"a\";\n"
        "  src.name as n then { n.given as g where (%s($this in ('jan' | 'kees')).not()%s) -> tgt.given = g \"not\"; }"
        " \"b\";\n"
        "  src.name as n then { n.family as f where (%s$this = 'x' or $this = 'jansen'%s) -> tgt.note = f \"or\"; }"
        " \"c\";\n"
        "  src.birthDate as b where (%s$this in ('2020-01-01' | 'x')%s) -> tgt.bsn = 'dated' \"date\";\n"
        "  src.gender as g where (%s$this = 'male' or $this = 'other'%s) -> tgt.sex = g \"none\";\n"
        "}\n",
        o, c, o, c, o, c, o, c, o, c);
    return load(fml);
}

Test(fml, where_sets_agree_with_fhirpath)
{
    const char *src = "{\"resourceType\":\"Patient\",\"birthDate\":\"2020-01-01\",\"gender\":\"female\","
                      "\"name\":[{\"family\":\"jansen\",\"given\":[\"jan\",\"kees\",\"piet\",\"klaas\"]},"
                      "{\"family\":\"pietersen\",\"given\":[\"jan\"]}]}";
    sm_map *quick = sets_map(false), *slow = sets_map(true);
    const sm_equals *in = &quick->groups[0].rules[0].rules[0].sources[0].condition_eq;
    cr_assert_eq(in->alt_count, 2, "$this in (...) is recognised");
    cr_expect_not(in->negate);
    cr_expect(quick->groups[0].rules[1].rules[0].sources[0].condition_eq.negate, ".not() is recognised");
    cr_expect_eq(quick->groups[0].rules[2].rules[0].sources[0].condition_eq.alt_count, 2, "or is recognised");
    cr_expect_null(slow->groups[0].rules[0].rules[0].sources[0].condition_eq.alts, "parenthesised: not");
    oo_list qi, si;
    json_object *q = run_map(quick, src, &qi), *s = run_map(slow, src, &si);
    cr_assert(q && s);
    cr_expect(tj_same(q, s), "quick %s\nFHIRPath %s", json_object_to_json_string(q), json_object_to_json_string(s));
    expect_json(json_object_object_get(q, "item"), "[\"jan\",\"piet\",\"jan\"]");
    expect_json(json_object_object_get(q, "given"), "[\"piet\",\"klaas\"]");
    cr_expect_str_eq(jget_str(q, "note"), "jansen");
    /* a date is no String: FHIRPath decides, and a date is not among texts */
    cr_expect_null(json_object_object_get(q, "bsn"));
    cr_expect_null(json_object_object_get(q, "sex"));
    json_object_put(q), json_object_put(s);
    oo_list_free(&qi), oo_list_free(&si);
    /* near misses stay with FHIRPath */
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.gender as g where ($this = 'a' or $this = 'b' and true) -> tgt.sex = g \"and\";\n"
                     "  src.gender as g where ($this in ('a' | 'b') or true) -> tgt.sex = g \"or\";\n"
                     "  src.gender as g where ($this = 'a' or family = 'b') -> tgt.sex = g \"mixed\";\n"
                     "}\n");
    for (size_t i = 0; i < 3; i++)
        cr_expect_null(m->groups[0].rules[i].sources[0].condition_eq.alts, "rule %zu", i);
    sm_free(m);
    sm_free(quick);
    sm_free(slow);
}

/* The path forms (sm_pathtest) of the test below, as written or (parenthesised) for FHIRPath. */
static sm_map *paths_map(bool parenthesised)
{
    static const char *const tests[] = {
        "identifier.where(system = 'a' and value = '1').exists()", /* r1: true */
        "identifier.where(system = 'a' and value = '2').exists()", /* false */
        "identifier.where(system = 'c').empty()",                  /* r3: true */
        "name.family = 'jansen'",                                  /* two values: false */
        "name.family != 'jansen'",                                 /* r5: true */
        "maritalStatus.coding.where(system = 'x').exists()",       /* r6: true */
        "telecom.system = 'phone'",                                /* r7: true */
        "contact.where(gender = 'male').empty()",                  /* r8: true */
        "name.where(family = 'jansen').exists()",                  /* r9: true */
        "gender != 'female'",                                      /* false */
        "identifier.system != 'z'",                                /* r11: true (two values) */
    };
    char fml[4000];
    size_t n = (size_t)snprintf(fml, sizeof fml,
                                "map \"u\" = \"n\"\n"
                                "group main(source src : Patient, target tgt : PatientRecord) {\n");
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        n += (size_t)snprintf(fml + n, sizeof fml - n, "  src where (%s%s%s) -> tgt.item = 'r%zu' \"r%zu\";\n",
                              parenthesised ? "(" : "", tests[i], parenthesised ? ")" : "", i + 1, i + 1);
    snprintf(fml + n, sizeof fml - n, "}\n");
    return load(fml);
}

Test(fml, where_paths_agree_with_fhirpath)
{
    const char *plain =
        "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"a\",\"value\":\"1\"},"
        "{\"system\":\"b\",\"value\":\"2\"},{\"value\":\"3\"}],\"name\":[{\"family\":\"jansen\"},"
        "{\"family\":\"pietersen\"}],\"maritalStatus\":{\"coding\":[{\"system\":\"x\",\"code\":\"M\"}]},"
        "\"telecom\":[{\"system\":\"phone\",\"value\":\"1\"}],\"gender\":\"female\","
        "\"contact\":[{\"name\":{\"family\":\"k\"}}]}";
    /* shapes FHIRPath reads otherwise: an extension on a primitive, a date */
    const char *odd = "{\"resourceType\":\"Patient\",\"identifier\":[{\"_system\":{\"extension\":[{\"url\":\"u\","
                      "\"valueString\":\"a\"}]},\"value\":\"1\"}],\"name\":[{\"family\":\"jansen\"}],"
                      "\"telecom\":[{\"system\":\"phone\"},{\"system\":\"email\"}],\"_gender\":{\"id\":\"g\"}}";
    sm_map *quick = paths_map(false), *slow = paths_map(true);
    for (size_t i = 0; i < 11; i++) {
        cr_assert_not_null(quick->groups[0].rules[i].sources[0].condition_eq.path, "rule %zu is recognised", i + 1);
        cr_assert_null(slow->groups[0].rules[i].sources[0].condition_eq.path, "parenthesised rule %zu is not", i + 1);
    }
    const char *srcs[] = {plain, odd};
    for (size_t k = 0; k < 2; k++) {
        oo_list qi, si;
        json_object *q = run_map(quick, srcs[k], &qi), *s = run_map(slow, srcs[k], &si);
        cr_assert(q && s);
        cr_expect(tj_same(q, s), "quick %s\nFHIRPath %s", json_object_to_json_string(q), json_object_to_json_string(s));
        if (k == 0)
            expect_json(json_object_object_get(q, "item"),
                        "[\"r1\",\"r3\",\"r5\",\"r6\",\"r7\",\"r8\",\"r9\",\"r11\"]");
        json_object_put(q), json_object_put(s);
        oo_list_free(&qi), oo_list_free(&si);
    }
    /* near misses stay with FHIRPath */
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src where (name.family.where(true).exists()) -> tgt.sex = 'a' \"a\";\n"
                     "  src where (identifier.where(system = 'a' or value = '1').exists()) -> tgt.sex = 'b' \"b\";\n"
                     "  src where (name.family = 'x' and true) -> tgt.sex = 'c' \"c\";\n"
                     "  src where (name.exists()) -> tgt.sex = 'd' \"d\";\n"
                     "  src where (a.b.c = 'x') -> tgt.sex = 'e' \"e\";\n"
                     "}\n");
    for (size_t i = 0; i < 5; i++)
        cr_expect_null(m->groups[0].rules[i].sources[0].condition_eq.path, "rule %zu", i);
    sm_free(m);
    sm_free(quick);
    sm_free(slow);
}

/* The engine remembers resolved types across runs; an alias means what its own map says. */
Test(fml, same_alias_in_two_maps)
{
    sm_map *to_record = load("map \"u1\" = \"n1\"\n"
                             "uses \"http://example.org/sd/PatientRecord\" alias Out as target\n"
                             "group main(source src : Patient, target tgt : Out) {\n"
                             "  src.gender as g -> tgt.sex = g \"sex\";\n"
                             "}\n");
    sm_map *to_patient = load("map \"u2\" = \"n2\"\n"
                              "uses \"http://hl7.org/fhir/StructureDefinition/Patient\" alias Out as target\n"
                              "group main(source src : Patient, target tgt : Out) {\n"
                              "  src.gender as g -> tgt.gender = g \"gender\";\n"
                              "}\n");
    const char *src = "{\"resourceType\":\"Patient\",\"gender\":\"male\"}";
    for (int i = 0; i < 2; i++) {
        expect_run(to_record, src, "{\"resourceType\":\"PatientRecord\",\"sex\":\"male\"}");
        expect_run(to_patient, src, "{\"resourceType\":\"Patient\",\"gender\":\"male\"}");
    }
    sm_free(to_record);
    sm_free(to_patient);
}

/* ---- the engine's per-target memos ---------------------------------------- */

/* One group whose target t.value is reached as an Identifier's element (a string) and an Extension's (a choice). */
static const char *LABEL_MAP = "map \"u\" = \"n\"\n"
                               "group main(source src : Patient, target tgt : Observation) {\n"
                               "  src -> tgt.identifier as i then label(src, i) \"identifier\";\n"
                               "  src -> tgt.extension as x then label(src, x) \"extension\";\n"
                               "}\n"
                               "group label(source src, target t) {\n"
                               "  src.gender as g -> t.value = g \"value\";\n"
                               "}\n";
static const char *LABEL_SOURCE = "{\"resourceType\":\"Patient\",\"gender\":\"male\"}";
static const char *LABEL_RESULT = "{\"resourceType\":\"Observation\",\"identifier\":[{\"value\":\"male\"}],"
                                  "\"extension\":[{\"valueCode\":\"male\"}]}";

/*
 * A target keeps the element its first run found (sm_target.engine_memo);
 * reached in another type it must look the element up again, not reuse the
 * first answer (which would write "value" into the Extension).
 */
Test(fml, one_target_in_two_types)
{
    sm_map *m = load(LABEL_MAP);
    for (int i = 0; i < 3; i++)
        expect_run(m, LABEL_SOURCE, LABEL_RESULT);
    sm_free(m);
}

/*
 * The kept element of a logical model's target points into the context's
 * models: a run with another context must not use one kept by a context
 * since freed (ASan would see the freed models read).
 */
Test(fml, a_kept_target_element_is_per_context)
{
    sm_map *m = load(TO_RECORD);
    const char *want = "{\"resourceType\":\"PatientRecord\",\"note\":\"from Patient\",\"bsn\":\"999911120\","
                       "\"family\":\"Jansen\",\"given\":[\"Piet\",\"Jan\"],\"sex\":\"M\",\"born\":\"1970-03-04\","
                       "\"deceased\":false,\"address\":[{\"street\":\"Kerkstraat 1\",\"city\":\"Utrecht\"},"
                       "{\"street\":\"Dorpsweg 2\",\"city\":\"Ede\"}]}";
    mpe_context *first = ctx;
    ctx = mpe_context_new(NULL, registry); /* runs first: its records are the ones kept */
    cr_assert_not_null(ctx);
    expect_run(m, PATIENT, want);
    mpe_context_free(ctx);
    ctx = first;
    expect_run(m, PATIENT, want);
    sm_free(m);
}

typedef struct label_runs {
    const sm_map *map;
    int mismatches;
} label_runs;

static void *run_labels(void *arg)
{
    label_runs *l = arg;
    for (int i = 0; i < 200; i++) {
        char *text = strdup(LABEL_SOURCE);
        fj_doc doc;
        fj_error e;
        oo_list issues;
        oo_list_init(&issues, 0);
        json_object *out = NULL, *want = json_tokener_parse(LABEL_RESULT);
        bool parsed = fj_parse(text, strlen(text), NULL, &doc, &e);
        if (!parsed || !mpe_run(ctx, l->map, &doc, 0, NULL, &out, &issues) || !tj_same(out, want))
            l->mismatches++;
        if (parsed)
            fj_doc_free(&doc);
        json_object_put(out);
        json_object_put(want);
        oo_list_free(&issues);
        free(text);
    }
    return NULL;
}

/* Runs on four threads share a fresh map: the first runs race to keep each target's record; all agree. */
Test(fml, a_map_shared_by_threads)
{
    sm_map *m = load(LABEL_MAP);
    pthread_t threads[4];
    label_runs runs[4];
    for (int i = 0; i < 4; i++) {
        runs[i] = (label_runs){.map = m};
        cr_assert_eq(pthread_create(&threads[i], NULL, run_labels, &runs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        cr_expect_eq(runs[i].mismatches, 0, "thread %d: %d runs gave another result", i, runs[i].mismatches);
    }
    sm_free(m);
}

/* ---- scale --------------------------------------------------------------- */

Test(fml, list_of_100000_items)
{
    enum { N = 100000 };
    fj_buf b = {0};
    fj_buf_puts(&b, "{\"resourceType\":\"Patient\",\"identifier\":[");
    for (int i = 0; i < N; i++)
        fj_buf_printf(&b, "%s{\"value\":\"v%d\"}", i ? "," : "", i);
    fj_buf_puts(&b, "]}");
    sm_map *m = load("map \"u\" = \"n\"\n"
                     "group main(source src : Patient, target tgt : PatientRecord) {\n"
                     "  src.identifier as i then { i.value as v -> tgt.item = v; } \"ids\";\n"
                     "}\n");
    oo_list issues;
    json_object *out = run_map(m, b.data, &issues);
    cr_assert_not_null(out);
    json_object *items = json_object_object_get(out, "item");
    cr_assert_eq(json_object_array_length(items), N);
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(items, 0)), "v0");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(items, 54321)), "v54321");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(items, N - 1)), "v99999");
    cr_expect_eq(issues.count, 0, "issues: %zu", issues.count);
    json_object_put(out);
    oo_list_free(&issues);
    fj_buf_free(&b);
    sm_free(m);
}
