/*
 * tests/test_fhirpath_engine.c — the FHIRPath engine's API beyond the
 * conformance suite: compile errors with positions, run-time type errors,
 * resolve() in a Bundle and to contained resources, extension(url) on
 * primitives, memberOf against the schema's value sets, ofType on choice
 * elements, a pinned now(), variables, evaluation from an inner node with
 * a known type, the cache, arena reuse, and functions the host registers
 * (a translate()-like map, a function that fails, the registration rules,
 * one registry shared by threads).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fhir/fhirpath.h"

/* A parsed document kept for the duration of one test. */
typedef struct doc_holder {
    char *text;
    fj_doc doc;
} doc_holder;

static doc_holder parse(const char *json)
{
    doc_holder h = {strdup(json), {0}};
    fj_error err;
    cr_assert(fj_parse(h.text, strlen(h.text), NULL, &h.doc, &err), "bad test JSON: %s", err.message);
    return h;
}

static void release(doc_holder *h)
{
    fj_doc_free(&h->doc);
    free(h->text);
}

/* Evaluate expr on the doc's root (doc may be NULL); returns the result as JSON (malloc'd) or NULL on error. */
static char *eval_env(const char *expr, const fp_env *env, fp_error *err)
{
    fp_expr *e = fp_compile(expr, NULL, err);
    if (!e)
        return NULL;
    fp_arena *a = fp_arena_new();
    fp_collection out;
    char *json = NULL;
    if (fp_evaluate_node(e, env, env->doc ? 0 : FP_NO_NODE, NULL, NULL, a, &out, err))
        json = fp_collection_json(&out);
    fp_arena_free(a);
    fp_expr_free(e);
    return json;
}

static char *eval(const char *expr, const fj_doc *doc, fp_error *err)
{
    fp_env env;
    fp_env_init(&env, doc);
    return eval_env(expr, &env, err);
}

static void expect_result(const char *expr, const fj_doc *doc, const char *want)
{
    fp_error err;
    char *got = eval(expr, doc, &err);
    cr_expect_not_null(got, "%s: error at %d: %s", expr, err.position, err.message);
    if (got)
        cr_expect_str_eq(got, want, "%s", expr);
    free(got);
}

static void expect_error(const char *expr, const fj_doc *doc, int position, const char *fragment)
{
    fp_error err;
    char *got = eval(expr, doc, &err);
    cr_expect_null(got, "%s: expected an error, got %s", expr, got ? got : "");
    free(got);
    if (position >= 0)
        cr_expect_eq(err.position, position, "%s: error position %d, want %d (%s)", expr, err.position, position,
                     err.message);
    cr_expect_not_null(strstr(err.message, fragment), "%s: message '%s' lacks '%s'", expr, err.message, fragment);
}

Test(fhirpath_compile, syntax_errors_have_positions)
{
    expect_error("name.given.", NULL, 11, "expected a name");
    expect_error("1 + ", NULL, 4, "expression expected");
    expect_error("(1 + 2", NULL, 6, "expected ')'");
    expect_error("name.frobnicate()", NULL, 5, "unknown function 'frobnicate'");
    expect_error("name.where()", NULL, 5, "where() takes 1 argument");
    expect_error("value.ofType(Quantit)", NULL, 13, "unknown type 'Quantit'");
    expect_error("'open", NULL, 0, "string not closed");
    expect_error("1 /* never closed", NULL, 2, "comment not closed");
    expect_error("x.matches('(')", NULL, 10, "invalid regular expression");
    expect_error("@2015-13", NULL, 5, "only a time quantity"); /* no month 13: the Date @2015 minus 13 */
}

Test(fhirpath_compile, positions_count_characters_not_bytes)
{
    fp_error err;
    fp_expr *e = fp_compile("'é' + ", NULL, &err);
    cr_assert_null(e);
    cr_expect_eq(err.position, 6, "position %d", err.position);
}

Test(fhirpath_eval, type_errors_have_positions)
{
    expect_error("'1' + 1", NULL, 4, "cannot combine String and Integer");
    expect_error("(1 | 2).not()", NULL, 8, "single");
    expect_error("1 < 'a'", NULL, 2, "cannot compare");
    expect_error("(1 | 2) + 3", NULL, 8, "single item");
    expect_error("'abc'.substring('x')", NULL, 16, "must be an Integer");
    expect_error("%nope", NULL, 0, "unknown variable %nope");
}

Test(fhirpath_eval, three_valued_logic)
{
    expect_result("{} and false", NULL, "[false]");
    expect_result("{} and true", NULL, "[]");
    expect_result("{} or true", NULL, "[true]");
    expect_result("{} implies false", NULL, "[]");
    expect_result("false implies {}", NULL, "[true]");
    expect_result("true xor {}", NULL, "[]");
}

Test(fhirpath_eval, output_formats)
{
    expect_result("@2014-01 | @2014-01-01T10:30:00.000+02:00 | @T10:30", NULL,
                  "[\"2014-01\",\"2014-01-01T10:30:00.000+02:00\",\"10:30\"]");
    expect_result("1.50 'mg' | 3 weeks | 1.0 | 2 | 'a\"b' | true", NULL,
                  "[\"1.50 'mg'\",\"3 week\",1.0,2,\"a\\\"b\",true]");
    expect_result("1.type() | Patient.type()", NULL, "[{\"namespace\":\"System\",\"name\":\"Integer\"}]");
}

static const char *bundle_json =
    "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
    "{\"fullUrl\":\"http://example.org/fhir/Patient/p1\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\","
    "\"gender\":\"female\",\"birthDate\":\"1950-01-01\",\"_birthDate\":{\"extension\":[{\"url\":\"http://hl7.org/fhir/"
    "StructureDefinition/patient-birthTime\",\"valueDateTime\":\"1950-01-01T08:00:00+01:00\"}]}}},"
    "{\"fullUrl\":\"urn:uuid:0b3f7a2e-7c1a-4d1e-9c7e-1b2f3a4b5c6d\",\"resource\":{\"resourceType\":\"Observation\","
    "\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"29463-7\"}]},"
    "\"subject\":{\"reference\":\"Patient/p1\"},\"performer\":[{\"reference\":\"#pr\"}],"
    "\"contained\":[{\"resourceType\":\"Practitioner\",\"id\":\"pr\",\"name\":[{\"family\":\"Jansen\"}]}],"
    "\"valueQuantity\":{\"value\":72.5,\"unit\":\"kg\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"kg\"}}},"
    "{\"fullUrl\":\"urn:uuid:1c2d\",\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o2\",\"status\":\"final\","
    "\"code\":{\"text\":\"x\"},\"subject\":{\"reference\":\"http://example.org/fhir/Patient/p1\"},"
    "\"hasMember\":[{\"reference\":\"urn:uuid:0b3f7a2e-7c1a-4d1e-9c7e-1b2f3a4b5c6d\"}],\"valueString\":\"text\"}}]}";

Test(fhirpath_fhir, resolve_in_bundle_and_contained)
{
    doc_holder h = parse(bundle_json);
    /* relative, absolute and urn references between entries */
    expect_result("entry.resource.ofType(Observation).subject.resolve().id", &h.doc, "[\"p1\",\"p1\"]");
    expect_result("entry[2].resource.hasMember.resolve().id", &h.doc, "[\"o1\"]");
    expect_result("entry.resource.where(id='o1').subject.resolve() is Patient", &h.doc, "[true]");
    expect_result("Bundle.entry.all(fullUrl.exists())", &h.doc, "[true]");
    release(&h);
}

Test(fhirpath_fhir, resolve_contained_from_the_resource)
{
    doc_holder h = parse(bundle_json);
    /* %resource is the Observation when evaluation starts there (as a validator does per entry). */
    uint32_t obs = UINT32_MAX;
    for (uint32_t i = 0; i < h.doc.count; i++)
        if (h.doc.nodes[i].type == FJ_STRING && h.doc.nodes[i].len == 2 && !memcmp(fj_str(&h.doc, i), "o1", 2))
            obs = i;
    cr_assert_neq(obs, UINT32_MAX);
    /* walk back to the object that holds id "o1": the nearest object start before the key */
    uint32_t res = obs;
    while (res > 0 && !(h.doc.nodes[res].type == FJ_OBJECT && res + h.doc.nodes[res].size > obs &&
                        fj_get(&h.doc, res, "resourceType") != UINT32_MAX))
        res--;
    fp_env env;
    fp_env_init(&env, &h.doc);
    env.resource = res;
    env.root_resource = 0;
    fp_error err;
    fp_expr *e = fp_compile("performer.resolve().name.family | subject.resolve().gender", NULL, &err);
    cr_assert_not_null(e, "%s", err.message);
    fp_arena *a = fp_arena_new();
    fp_collection out;
    cr_assert(fp_evaluate_node(e, &env, res, NULL, NULL, a, &out, &err), "%s", err.message);
    char *json = fp_collection_json(&out);
    cr_expect_str_eq(json, "[\"Jansen\",\"female\"]");
    free(json);
    fp_arena_free(a);
    fp_expr_free(e);
    release(&h);
}

Test(fhirpath_fhir, extension_on_primitives_and_choice_types)
{
    doc_holder h = parse(bundle_json);
    expect_result("entry[0].resource.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime')"
                  ".value",
                  &h.doc, "[\"1950-01-01T08:00:00+01:00\"]");
    expect_result("entry[0].resource.birthDate.extension(%`ext-patient-birthTime`).value is dateTime", &h.doc,
                  "[true]");
    expect_result("entry[0].resource.birthDate.hasValue()", &h.doc, "[true]");
    expect_result("entry.resource.ofType(Observation).value.ofType(Quantity).value", &h.doc, "[72.5]");
    expect_result("entry.resource.ofType(Observation).value.ofType(string)", &h.doc, "[\"text\"]");
    expect_result("entry.resource.ofType(Observation).value.ofType(FHIR.Period)", &h.doc, "[]");
    expect_result("entry[1].resource.value > 70 'kg' and entry[1].resource.value < 73000 'g'", &h.doc, "[true]");
    release(&h);
}

Test(fhirpath_fhir, member_of_expanded_value_sets)
{
    doc_holder h = parse(bundle_json);
    expect_result("entry[0].resource.gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')", &h.doc,
                  "[true]");
    expect_result("'unknown'.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')", NULL, "[true]");
    expect_result("'femme'.memberOf(%`vs-administrative-gender`)", NULL, "[false]");
    expect_result("'x'.memberOf('http://example.org/not-known')", NULL, "[]");
    expect_result("entry[1].resource.status.memberOf('http://hl7.org/fhir/ValueSet/observation-status')", &h.doc,
                  "[true]");
    release(&h);
}

Test(fhirpath_fhir, conforms_to_core_types)
{
    doc_holder h = parse(bundle_json);
    expect_result("conformsTo('http://hl7.org/fhir/StructureDefinition/Bundle')", &h.doc, "[true]");
    expect_result("conformsTo('http://hl7.org/fhir/StructureDefinition/Resource')", &h.doc, "[true]");
    expect_result("conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')", &h.doc, "[false]");
    expect_error("conformsTo('http://example.org/x')", &h.doc, 11, "unknown profile");
    release(&h);
}

Test(fhirpath_eval, pinned_now_and_variables)
{
    fp_datetime now = {.year = 2024,
                       .month = 2,
                       .day = 29,
                       .hour = 23,
                       .minute = 30,
                       .precision = FP_PREC_MS,
                       .has_tz = true,
                       .tz_minutes = 60};
    fp_item names[2] = {fp_string("Jansen", 6), fp_string("de Vries", 8)};
    fp_var vars[] = {{"names", {names, 2}}, {"limit", {&(fp_item){.kind = FP_INTEGER, .u.integer = 1}, 1}}};
    fp_env env;
    fp_env_init(&env, NULL);
    env.now = &now;
    env.vars = vars;
    env.var_count = 2;
    fp_error err;
    const char *cases[][2] = {
        {"now()", "[\"2024-02-29T23:30:00.000+01:00\"]"},
        {"today()", "[\"2024-02-29\"]"},
        {"today() + 1 year", "[\"2025-02-28\"]"},
        {"now() > @2024-02-29T22:00:00Z", "[true]"},
        {"%names.count() > %limit", "[true]"},
        {"%names.where($this.startsWith('de'))", "[\"de Vries\"]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = eval_env(cases[i][0], &env, &err);
        cr_expect_not_null(got, "%s: %s", cases[i][0], err.message);
        if (got)
            cr_expect_str_eq(got, cases[i][1], "%s", cases[i][0]);
        free(got);
    }
}

Test(fhirpath_eval, start_at_an_inner_node_with_known_type)
{
    doc_holder h = parse("{\"resourceType\":\"Patient\",\"contact\":[{\"name\":{\"family\":\"Smit\"},"
                         "\"period\":{\"start\":\"2020-01-01\",\"end\":\"2019-01-01\"}}]}");
    const fs_schema *s = fs_r4();
    uint32_t period = fj_get(&h.doc, fj_get(&h.doc, 0, "contact") + 1, "period");
    cr_assert_neq(period, UINT32_MAX);
    fp_error err;
    fp_expr *e = fp_compile("(start.hasValue().not() or end.hasValue().not()) or (start <= end)", NULL, &err);
    cr_assert_not_null(e);
    fp_env env;
    fp_env_init(&env, &h.doc);
    fp_arena *a = fp_arena_new();
    fp_collection out;
    cr_assert(fp_evaluate_node(e, &env, period, fs_type_by_name(s, "Period", 6), NULL, a, &out, &err), "%s",
              err.message);
    cr_expect_eq(fp_truth_of(&out), FP_FALSE);
    /* The same compiled expression, many evaluations: the arena stops growing after the first. */
    fp_arena_reset(a);
    cr_assert(fp_evaluate_node(e, &env, period, fs_type_by_name(s, "Period", 6), NULL, a, &out, &err));
    size_t cap = fp_arena_capacity(a);
    for (int i = 0; i < 1000; i++) {
        fp_arena_reset(a);
        cr_assert(fp_evaluate_node(e, &env, period, fs_type_by_name(s, "Period", 6), NULL, a, &out, &err));
    }
    cr_expect_eq(fp_arena_capacity(a), cap);
    fp_arena_free(a);
    fp_expr_free(e);
    release(&h);
}

Test(fhirpath_cache, compiles_once_and_remembers_errors)
{
    fp_cache *c = fp_cache_new(NULL);
    fp_error err;
    const fp_expr *a = fp_cache_get(c, "name.exists()", &err);
    const fp_expr *b = fp_cache_get(c, "name.exists()", &err);
    cr_expect_not_null(a);
    cr_expect_eq(a, b);
    cr_expect_null(fp_cache_get(c, "name.(", &err));
    cr_expect_eq(err.position, 5);
    err.position = -1;
    cr_expect_null(fp_cache_get(c, "name.(", &err));
    cr_expect_eq(err.position, 5);
    char src[32];
    for (int i = 0; i < 200; i++) { /* growth */
        snprintf(src, sizeof src, "%d + 1", i);
        cr_expect_not_null(fp_cache_get(c, src, &err));
    }
    cr_expect_eq(fp_cache_get(c, "name.exists()", &err), a);
    cr_expect_eq(fp_cache_count(c), 202);
    fp_cache_free(c);
}

Test(fhirpath_eval, quantities_and_dates)
{
    expect_result("1 'kg' = 1000 'g'", NULL, "[true]");
    expect_result("1 'L' = 1000 'mL'", NULL, "[true]");
    expect_result("2 'h' < 121 'min'", NULL, "[true]");
    expect_result("1 year = 1 'a'", NULL, "[]");
    expect_result("1 '[lb_av]' > 450 'g'", NULL, "[true]");
    expect_result("10 'mg/dL' = 100 'mg/L'", NULL, "[true]");
    expect_result("@2024-01-31 + 1 month", NULL, "[\"2024-02-29\"]");
    expect_result("@2024-03-01T00:30:00+01:00 = @2024-02-29T23:30:00Z", NULL, "[true]");
    expect_result("@2024-03 < @2024-03-15", NULL, "[]");
}

/* `fhirgw fhirpath ARGS`: exit status, stdout+stderr in *out (malloc'd). */
static int run_cli(const char *args, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' fhirpath %s 2>&1", FHIRGW_BIN, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 65536, len = 0, n;
    char *buf = malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0)
        len += n;
    buf[len] = '\0';
    int status = pclose(p);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(fhirpath_cli, prints_json_and_exit_statuses)
{
    char *out;
    cr_expect_eq(run_cli("\"1 + 1 | @2014-01 | 3 'mg' | 'x'\"", &out), 0);
    cr_expect_str_eq(out, "[2,\"2014-01\",\"3 'mg'\",\"x\"]\n");
    free(out);
    cr_expect_eq(run_cli("\"name.given.first()\" '" TESTS_DIR "/fhirpath/resources/patient-example.json'", &out), 0);
    cr_expect_str_eq(out, "[\"Peter\"]\n");
    free(out);
    cr_expect_eq(run_cli("--now 2024-05-01T12:00:00Z \"today()\"", &out), 0);
    cr_expect_str_eq(out, "[\"2024-05-01\"]\n");
    free(out);
    cr_expect_eq(run_cli("\"name.(\"", &out), 1);
    cr_expect_not_null(strstr(out, "at character 5"), "%s", out);
    free(out);
    cr_expect_eq(run_cli("\"'a' - 1\"", &out), 1);
    cr_expect_not_null(strstr(out, "at character 4"), "%s", out);
    free(out);
    cr_expect_eq(run_cli("\"name\" /nonexistent/file.json", &out), 2);
    free(out);
    cr_expect_eq(run_cli("", &out), 2);
    free(out);
}

Test(fhirpath_fhir, lenient_mode_for_core_invariants)
{
    doc_holder h = parse("{\"resourceType\":\"Questionnaire\",\"status\":\"draft\",\"url\":\"http://x.org/q\","
                         "\"item\":[{\"linkId\":\"1\",\"type\":\"boolean\",\"enableWhen\":[{\"question\":\"0\","
                         "\"operator\":\"exists\",\"answerBoolean\":true}]}]}");
    fp_env env;
    fp_env_init(&env, &h.doc);
    fp_error err;
    /* strict FHIRPath: as() on several items is an error, a FHIR boolean is not a System.Boolean */
    cr_expect_null(eval_env("descendants().as(uri)", &env, &err));
    char *got = eval_env("item.enableWhen.all(operator = 'exists' implies (answer is Boolean))", &env, &err);
    cr_expect_str_eq(got, "[false]");
    free(got);
    env.lenient = true; /* as the core invariants (dom-3, que-7) are written */
    got = eval_env("descendants().as(uri)", &env, &err);
    cr_expect_str_eq(got, "[\"http://x.org/q\"]");
    free(got);
    got = eval_env("item.enableWhen.all(operator = 'exists' implies (answer is Boolean))", &env, &err);
    cr_expect_str_eq(got, "[true]");
    free(got);
    release(&h);
}

/* ---- host functions ---- */

/* A toy terminology map, as the mapping engine's translate() will have. */
typedef struct code_map {
    const char *name;
    const char *from[4], *to[4];
} code_map;

static const code_map maps[] = {
    {"v2-sex", {"male", "female", "other", "unknown"}, {"M", "F", "O", "U"}},
    {"nl-sex", {"male", "female", NULL, NULL}, {"man", "vrouw", NULL, NULL}},
};

static const char *map_code(const code_map *m, const char *code, size_t len)
{
    for (size_t i = 0; i < 4 && m->from[i]; i++)
        if (strlen(m->from[i]) == len && !memcmp(m->from[i], code, len))
            return m->to[i];
    return NULL;
}

/* translate(mapName): each input code through the named map; codes the map lacks are left out. */
static bool toy_translate(void *user_arg, const fp_host_call *call, fp_collection *out, fp_error *err)
{
    const code_map *all = user_arg;
    fp_item name;
    if (call->args[0].count != 1 || !fp_system_value(call->schema, &call->args[0].items[0], &name) ||
        name.kind != FP_STRING) {
        snprintf(err->message, sizeof err->message, "the map name must be one string");
        return false;
    }
    const code_map *m = NULL;
    for (size_t i = 0; i < sizeof maps / sizeof *maps; i++)
        if (strlen(all[i].name) == name.len && !memcmp(all[i].name, name.u.string, name.len))
            m = &all[i];
    if (!m) {
        snprintf(err->message, sizeof err->message, "no map named '%.*s'", (int)name.len, name.u.string);
        return false;
    }
    out->items = fp_arena_alloc(call->arena, (call->input->count ? call->input->count : 1) * sizeof *out->items);
    if (!out->items)
        return false;
    out->count = 0;
    for (size_t i = 0; i < call->input->count; i++) {
        fp_item code;
        const char *to = fp_system_value(call->schema, &call->input->items[i], &code) && code.kind == FP_STRING
                             ? map_code(m, code.u.string, code.len)
                             : NULL;
        if (to)
            out->items[out->count++] = fp_string(to, strlen(to)); /* static text outlives the result */
    }
    return true;
}

/* A function that always fails, as a pseudonym function without its key would. */
static bool toy_fail(void *user_arg, const fp_host_call *call, fp_collection *out, fp_error *err)
{
    snprintf(err->message, sizeof err->message, "%s (%zu argument%s)", (const char *)user_arg, call->argc,
             call->argc == 1 ? "" : "s");
    return false;
}

/* Counts its input, to check what a host function receives. */
static bool toy_count_args(void *user_arg, const fp_host_call *call, fp_collection *out, fp_error *err)
{
    out->items = fp_arena_alloc(call->arena, sizeof *out->items);
    if (!out->items)
        return false;
    int64_t total = (int64_t)call->input->count * 100;
    for (size_t k = 0; k < call->argc; k++)
        total += (int64_t)call->args[k].count;
    out->items[0] = fp_integer(total);
    out->count = 1;
    return true;
}

static fp_functions *toy_registry(void)
{
    fp_functions *fns = fp_functions_new();
    fp_error err;
    cr_assert(fp_functions_add(fns, "translate", 1, 1, toy_translate, (void *)maps, &err), "%s", err.message);
    cr_assert(fp_functions_add(fns, "pseudonym", 0, 1, toy_fail, "no pseudonym key configured", &err), "%s",
              err.message);
    cr_assert(fp_functions_add(fns, "countArgs", 0, 3, toy_count_args, NULL, &err), "%s", err.message);
    return fns;
}

static char *eval_with(const fp_functions *fns, const char *expr, const fj_doc *doc, fp_error *err)
{
    fp_compile_options opts = {.functions = fns};
    fp_expr *e = fp_compile_with(expr, &opts, err);
    if (!e)
        return NULL;
    fp_env env;
    fp_env_init(&env, doc);
    fp_arena *a = fp_arena_new();
    fp_collection out;
    char *json = NULL;
    if (fp_evaluate_node(e, &env, doc ? 0 : FP_NO_NODE, NULL, NULL, a, &out, err))
        json = fp_collection_json(&out);
    fp_arena_free(a);
    fp_expr_free(e);
    return json;
}

static void expect_host_result(const fp_functions *fns, const char *expr, const fj_doc *doc, const char *want)
{
    fp_error err;
    char *got = eval_with(fns, expr, doc, &err);
    cr_expect_not_null(got, "%s: error at %d: %s", expr, err.position, err.message);
    if (got)
        cr_expect_str_eq(got, want, "%s", expr);
    free(got);
}

Test(fhirpath_host, translate_like_function)
{
    fp_functions *fns = toy_registry();
    cr_expect_eq(fp_functions_count(fns), 3);
    doc_holder h = parse("{\"resourceType\":\"Patient\",\"gender\":\"female\","
                         "\"contact\":[{\"gender\":\"male\"},{\"gender\":\"other\"}]}");
    expect_host_result(fns, "gender.translate('v2-sex')", &h.doc, "[\"F\"]");
    expect_host_result(fns, "contact.gender.translate('nl-sex')", &h.doc, "[\"man\"]");
    expect_host_result(fns, "(gender | contact.gender).translate('v2-sex').join(',')", &h.doc, "[\"F,M,O\"]");
    expect_host_result(fns, "translate('v2-sex')", &h.doc, "[]"); /* the Patient itself is no code */
    expect_host_result(fns, "'unknown'.translate('v2-sex') = 'U'", NULL, "[true]");
    /* arguments are evaluated in the caller's scope: $this is the outer focus, not each input item */
    expect_host_result(fns, "contact.gender.countArgs(gender, contact, %resource)", &h.doc, "[204]");
    expect_host_result(fns, "countArgs()", NULL, "[0]");
    /* run-time errors of the callback, at the call's position */
    fp_error err;
    cr_expect_null(eval_with(fns, "gender.translate('loinc')", &h.doc, &err));
    cr_expect_eq(err.position, 7);
    cr_expect_str_eq(err.message, "translate(): no map named 'loinc'");
    release(&h);
    fp_functions_free(fns);
}

Test(fhirpath_host, function_that_errors)
{
    fp_functions *fns = toy_registry();
    fp_error err;
    cr_expect_null(eval_with(fns, "'x'.pseudonym()", NULL, &err));
    cr_expect_eq(err.position, 4);
    cr_expect_str_eq(err.message, "pseudonym(): no pseudonym key configured (0 arguments)");
    /* the error ends the whole evaluation, also inside other functions and operators */
    cr_expect_null(eval_with(fns, "('a' | 'b').where($this.pseudonym('k') = 'x').exists()", NULL, &err));
    cr_expect_not_null(strstr(err.message, "(1 argument)"), "%s", err.message);
    /* but only when it is evaluated: the left side decides */
    expect_host_result(fns, "false and 'x'.pseudonym().exists()", NULL, "[false]");
    fp_functions_free(fns);
}

Test(fhirpath_host, resolved_at_compile_time)
{
    fp_functions *fns = toy_registry();
    fp_error err;
    /* without the registry the name is unknown, as any unknown function */
    cr_expect_null(fp_compile("gender.translate('v2-sex')", NULL, &err));
    cr_expect_eq(err.position, 7);
    cr_expect_str_eq(err.message, "unknown function 'translate'");
    fp_compile_options opts = {.functions = fns};
    cr_expect_null(fp_compile_with("gender.translat('v2-sex')", &opts, &err));
    cr_expect_str_eq(err.message, "unknown function 'translat'");
    cr_expect_null(fp_compile_with("gender.translate()", &opts, &err));
    cr_expect_str_eq(err.message, "translate() takes 1 argument, not 0");
    cr_expect_null(fp_compile_with("pseudonym(1, 2)", &opts, &err));
    cr_expect_str_eq(err.message, "pseudonym() takes 0 to 1 arguments, not 2");
    /* built-ins are unchanged by a registry */
    fp_expr *e = fp_compile_with("name.where(use = 'official').exists()", &opts, &err);
    cr_expect_not_null(e, "%s", err.message);
    fp_expr_free(e);
    /* the cache compiles with the registry too */
    fp_cache *cache = fp_cache_new_with(&opts);
    cr_expect_not_null(fp_cache_get(cache, "gender.translate('v2-sex')", &err), "%s", err.message);
    fp_cache_free(cache);
    fp_functions_free(fns);
}

Test(fhirpath_host, registration_rules)
{
    fp_functions *fns = toy_registry();
    fp_error err;
    cr_expect_not(fp_functions_add(fns, "where", 1, 1, toy_translate, NULL, &err), "a built-in cannot be shadowed");
    cr_expect_str_eq(err.message, "where() is a built-in function: a host function cannot replace it");
    cr_expect_not(fp_functions_add(fns, "resolve", 0, 0, toy_translate, NULL, &err));
    cr_expect_not(fp_functions_add(fns, "translate", 1, 2, toy_translate, NULL, &err));
    cr_expect_str_eq(err.message, "translate() is already registered");
    cr_expect_not(fp_functions_add(fns, "2fa", 0, 0, toy_translate, NULL, &err));
    cr_expect_not(fp_functions_add(fns, "my-fn", 0, 0, toy_translate, NULL, &err));
    cr_expect_not(fp_functions_add(fns, "", 0, 0, toy_translate, NULL, &err));
    cr_expect_not(fp_functions_add(fns, "many", 2, 1, toy_translate, NULL, &err));
    cr_expect_not(fp_functions_add(fns, "many", 0, FP_MAX_ARGS + 1, toy_translate, NULL, &err));
    cr_expect_not(fp_functions_add(fns, "nothing", 0, 0, NULL, NULL, &err));
    cr_expect_eq(fp_functions_count(fns), 3, "refused names leave the registry unchanged");
    cr_expect(fp_functions_add(fns, "_private2", 0, FP_MAX_ARGS, toy_count_args, NULL, &err), "%s", err.message);
    fp_functions_free(fns);
    fp_functions_free(NULL);
}

/* One registry and one compiled expression, evaluated by several threads at once. */
typedef struct host_thread {
    const fp_expr *e;
    const fj_doc *doc;
    int mismatches;
} host_thread;

static void *host_worker(void *arg)
{
    host_thread *t = arg;
    fp_arena *a = fp_arena_new();
    fp_env env;
    fp_env_init(&env, t->doc);
    for (int i = 0; i < 2000; i++) {
        fp_collection out;
        fp_error err;
        if (!fp_evaluate_node(t->e, &env, 0, NULL, NULL, a, &out, &err) || out.count != 2 || out.items[0].len != 1 ||
            out.items[0].u.string[0] != 'F' || out.items[1].u.string[0] != 'M')
            t->mismatches++;
        fp_arena_reset(a);
    }
    fp_arena_free(a);
    return NULL;
}

Test(fhirpath_host, shared_by_threads)
{
    fp_functions *fns = toy_registry();
    doc_holder h = parse("{\"resourceType\":\"Patient\",\"gender\":\"female\",\"contact\":[{\"gender\":\"male\"}]}");
    fp_compile_options opts = {.functions = fns};
    fp_error err;
    fp_expr *e = fp_compile_with("(gender | contact.gender).translate('v2-sex')", &opts, &err);
    cr_assert_not_null(e, "%s", err.message);
    pthread_t threads[4];
    host_thread work[4];
    for (int i = 0; i < 4; i++) {
        work[i] = (host_thread){e, &h.doc, 0};
        cr_assert_eq(pthread_create(&threads[i], NULL, host_worker, &work[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        cr_expect_eq(work[i].mismatches, 0, "thread %d", i);
    }
    fp_expr_free(e);
    release(&h);
    fp_functions_free(fns);
}
