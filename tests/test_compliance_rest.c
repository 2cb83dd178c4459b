/*
 * tests/test_compliance_rest.c — the compliance operations over HTTPS (issue #12, docs/rules.md):
 * $gzsp-check, $compliance of stored plans and stays, $contract-check, and pull mode against a
 * real provider endpoint (tests/peer.h) reached with the gateway's outbound client over mutual TLS.
 *
 * The fixtures are the rule engine's (tests/rules/, built from ig/fixtures): a passing case and the
 * same with one change that fails a rule, asserting the rule id and the FHIRPath location of the
 * finding. Stored fixtures are written as a transaction by the provider that owns them (new ids,
 * references rewritten by the server); the peer serves them with their own ids.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "mappings/pseudonym.h"
#include "tests/peer.h"
#include "tests/rest_harness.h"

#define RULES TESTS_DIR "/rules/"
#define PACK TESTS_DIR "/../rules/packs/2026/pack.json"
#define IG TESTS_DIR "/../ig/"
#define PLAN "cp-gzsp-kwetsbaar-1"
#define D0 "2026-01-15"
#define D1 "2026-06-01"
#define GZSP_URA "90000401"

static pf_registry *reg;
static rl_pack *pack;
static rl_engine *engine;
static ob_client *outbound;
static peer *pr;

static void load_rules(void)
{
    const char *dirs[] = {IG "profiles", IG "extensions", IG "terminology"};
    oo_list issues;
    oo_list_init(&issues, 0);
    reg = conf_load(dirs, 3, &issues);
    cr_assert_not_null(reg);
    size_t len;
    char *buf = files_read(PACK, &len);
    cr_assert_not_null(buf);
    pack = rl_pack_load(buf, len, PACK, &issues);
    free(buf);
    cr_assert_not_null(pack);
    engine = rl_engine_new(pack, reg, &issues);
    cr_assert_not_null(engine, "%s", issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
}

static void setup(void)
{
    load_rules();
    rh_options o = {.keep_gzsp = true, .allow_dangling = true, .rules = engine};
    rh_setup_with(&o);
    rh_publish_directory();
}

static void teardown(void)
{
    rh_teardown();
    rl_engine_free(engine);
    rl_pack_free(pack);
    pf_registry_free(reg);
}

TestSuite(compliance, .init = setup, .fini = teardown, .timeout = 120);

/* ---- fixtures ------------------------------------------------------------------------- */

static json_object *fixture(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", RULES, file);
    json_object *o = json_object_from_file(path);
    cr_assert_not_null(o, "%s", path);
    return o;
}

static json_object *entry_resource(json_object *bundle, size_t i)
{
    json_object *entries, *res;
    cr_assert(json_object_object_get_ex(bundle, "entry", &entries));
    cr_assert(json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &res));
    return res;
}

static char *text_of(json_object *o)
{
    return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* The GZSP plan with its second activity at the office that is not set up for treatment (GZSP-LOCATION). */
static void plan_at_office(json_object *bundle)
{
    json_object *acts, *detail, *loc;
    json_object *plan = entry_resource(bundle, 0);
    cr_assert(json_object_object_get_ex(plan, "activity", &acts));
    cr_assert(json_object_object_get_ex(json_object_array_get_idx(acts, 1), "detail", &detail));
    cr_assert(json_object_object_get_ex(detail, "location", &loc));
    json_object_object_add(loc, "reference", json_object_new_string("Location/loc-gzsp-3"));
}

/* The provider's attestation at extension i lapsed before D1 (ELV-BASE for i = 20). */
static void lapse(json_object *bundle, size_t i)
{
    json_object *exts, *parts;
    cr_assert(json_object_object_get_ex(entry_resource(bundle, 0), "extension", &exts));
    cr_assert(json_object_object_get_ex(json_object_array_get_idx(exts, i), "extension", &parts));
    json_object_object_add(json_object_array_get_idx(parts, 2), "valueDate", json_object_new_string("2026-05-31"));
}

/* Replace every occurrence of from in *text by to. */
static void replace_all(char **text, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    for (char *at = strstr(*text, from); at; at = strstr(*text, from)) {
        size_t off = (size_t)(at - *text), len = strlen(*text);
        char *n = malloc(len - fl + tl + 1);
        memcpy(n, *text, off);
        memcpy(n + off, to, tl);
        memcpy(n + off + tl, at + fl, len - off - fl + 1);
        free(*text);
        *text = n;
    }
}

/*
 * Store the Bundle's resources as `who` in one transaction (POST each, references between them as
 * urn:uuid:); the new id of the first entry into id.
 */
static void store_bundle(const char *who, json_object *bundle, char *id, size_t size)
{
    json_object *entries, *txn = json_object_new_object(), *out = json_object_new_array();
    cr_assert(json_object_object_get_ex(bundle, "entry", &entries));
    size_t n = json_object_array_length(entries);
    json_object_object_add(txn, "resourceType", json_object_new_string("Bundle"));
    json_object_object_add(txn, "type", json_object_new_string("transaction"));
    char(*refs)[128] = calloc(n, sizeof *refs);
    char first_type[64] = ""; /* the type of the first entry, whose new id is answered */
    for (size_t i = 0; i < n; i++) {
        json_object *res = NULL, *rt, *rid; /* a copy: the fixture keeps its ids */
        cr_assert_eq(json_object_deep_copy(entry_resource(bundle, i), &res, NULL), 0);
        cr_assert(json_object_object_get_ex(res, "resourceType", &rt) && json_object_object_get_ex(res, "id", &rid));
        if (!first_type[0])
            snprintf(first_type, sizeof first_type, "%s", json_object_get_string(rt));
        if (!strcmp(json_object_get_string(rt), "Organization") &&
            !strncmp(json_object_get_string(rid), "ura-", 4)) { /* a directory entry: its owner updates it */
            char path[64], *text = text_of(res);
            snprintf(path, sizeof path, "/Organization/%s", json_object_get_string(rid));
            rh_response r = rh_request(who, "PUT", path, text, NULL);
            cr_assert_eq(r.status, 200, "PUT %s: %s", path, r.body);
            rh_response_free(&r);
            free(text);
            json_object_put(res);
            continue;
        }
        json_object *e = json_object_new_object(), *req = json_object_new_object();
        snprintf(refs[i], sizeof refs[i], "%s/%s", json_object_get_string(rt), json_object_get_string(rid));
        char urn[64];
        snprintf(urn, sizeof urn, "urn:uuid:00000000-0000-4000-8000-%012zu", i + 1);
        json_object_object_add(e, "fullUrl", json_object_new_string(urn));
        json_object_object_add(req, "method", json_object_new_string("POST"));
        json_object_object_add(req, "url", json_object_new_string(json_object_get_string(rt)));
        json_object_object_del(res, "id");
        json_object_object_add(e, "resource", res);
        json_object_object_add(e, "request", req);
        json_object_array_add(out, e);
    }
    json_object_object_add(txn, "entry", out);
    char *text = text_of(txn);
    for (size_t i = 0; i < n; i++) {
        char from[160], to[160];
        if (!refs[i][0])
            continue;
        snprintf(from, sizeof from, "\"reference\":\"%s\"", refs[i]);
        snprintf(to, sizeof to, "\"reference\":\"urn:uuid:00000000-0000-4000-8000-%012zu\"", i + 1);
        replace_all(&text, from, to);
    }
    rh_response r = rh_request(who, "POST", "/", text, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *resp = rh_json(&r);
    const char *loc = rh_str(resp, "entry.0.response.location");
    cr_assert_not_null(loc);
    char type_slash[72], slashed[256];
    snprintf(type_slash, sizeof type_slash, "/%s/", first_type);
    snprintf(slashed, sizeof slashed, "/%s", loc); /* relative or absolute */
    const char *at = strstr(slashed, type_slash);
    cr_assert_not_null(at, "%s", loc);
    at += strlen(type_slash);
    snprintf(id, size, "%.*s", (int)strcspn(at, "/"), at);
    json_object_put(resp);
    rh_response_free(&r);
    free(text);
    free(refs);
    json_object_put(txn);
}

/* ---- reading reports ------------------------------------------------------------------ */

/* The report's status (compliant, non-compliant, needs-review); asserts the body is a report. */
static const char *status_of(json_object *report)
{
    cr_assert_str_eq(rh_str(report, "resourceType"), "Parameters");
    cr_assert_str_eq(rh_str(report, "parameter.3.name"), "status");
    return rh_str(report, "parameter.3.valueCode");
}

/* How many findings of rule at location (NULL: any) with this severity the report has. */
static size_t findings(json_object *report, const char *rule, const char *location, const char *severity)
{
    size_t n = 0;
    char path[128];
    for (size_t i = 0;; i++) {
        snprintf(path, sizeof path, "parameter.4.resource.issue.%zu.severity", i);
        const char *sev = rh_str(report, path);
        if (!sev)
            return n;
        snprintf(path, sizeof path, "parameter.4.resource.issue.%zu.details.coding.0.code", i);
        const char *id = rh_str(report, path);
        snprintf(path, sizeof path, "parameter.4.resource.issue.%zu.expression.0", i);
        const char *where = rh_str(report, path);
        n += id && !strcmp(id, rule) && !strcmp(sev, severity) && (!location || (where && !strcmp(where, location)));
    }
}

/* Any finding whose rule id starts with prefix? */
static bool any_rule_starting(json_object *report, const char *prefix)
{
    char path[128];
    for (size_t i = 0;; i++) {
        snprintf(path, sizeof path, "parameter.4.resource.issue.%zu.severity", i);
        if (!rh_str(report, path))
            return false;
        snprintf(path, sizeof path, "parameter.4.resource.issue.%zu.details.coding.0.code", i);
        const char *id = rh_str(report, path);
        if (id && !strncmp(id, prefix, strlen(prefix)))
            return true;
    }
}

/* A request that must answer a report (200); its JSON. */
static json_object *report_of(const char *who, const char *method, const char *path, const char *body)
{
    rh_response r = rh_request(who, method, path, body, NULL);
    cr_assert_eq(r.status, 200, "%s %s: %ld %s", method, path, r.status, r.body);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    return o;
}

/* ---- POST /CarePlan/$gzsp-check --------------------------------------------------------- */

Test(compliance, gzsp_check_passes_the_plan_with_its_context)
{
    json_object *b = fixture("gzsp-plan.json");
    char *text = text_of(b);
    json_object *rep = report_of("gzsp", "POST", "/CarePlan/$gzsp-check?date=" D0, text);
    cr_expect_str_eq(status_of(rep), "compliant");
    cr_expect_str_eq(rh_str(rep, "parameter.0.valueReference.reference"), "CarePlan/" PLAN);
    cr_expect_str_eq(rh_str(rep, "parameter.2.valueDate"), D0);
    json_object_put(rep);
    free(text);
    json_object_put(b);
}

Test(compliance, gzsp_check_finds_the_location_rule_where_it_fails)
{
    json_object *b = fixture("gzsp-plan.json");
    plan_at_office(b);
    char *text = text_of(b);
    json_object *rep = report_of("gzsp", "POST", "/CarePlan/$gzsp-check?date=" D0, text);
    cr_expect_str_eq(status_of(rep), "non-compliant");
    cr_expect_eq(findings(rep, "GZSP-LOCATION", "CarePlan.activity[1].detail.location", "error"), 1);
    json_object_put(rep);
    free(text);
    json_object_put(b);
}

Test(compliance, gzsp_check_takes_parameters_with_a_date)
{
    json_object *b = fixture("gzsp-plan.json");
    plan_at_office(b);
    char *bundle = text_of(b);
    size_t size = strlen(bundle) + 256;
    char *body = malloc(size);
    snprintf(body, size,
             "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"date\",\"valueDate\":\"" D0
             "\"},{\"name\":\"resource\",\"resource\":%s}]}",
             bundle);
    json_object *rep = report_of("gzsp", "POST", "/CarePlan/$gzsp-check", body);
    cr_expect_str_eq(rh_str(rep, "parameter.2.valueDate"), D0);
    cr_expect_eq(findings(rep, "GZSP-LOCATION", "CarePlan.activity[1].detail.location", "error"), 1);
    json_object_put(rep);
    free(body);
    free(bundle);
    json_object_put(b);
}

Test(compliance, gzsp_check_refuses_what_it_cannot_check)
{
    rh_response r = rh_request("insurer", "POST", "/CarePlan/$gzsp-check?date=" D0,
                               "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                               "\"subject\":{\"reference\":\"Patient/p\"}}",
                               NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request("gzsp", "POST", "/CarePlan/$gzsp-check?date=" D0, "{\"resourceType\":\"Patient\"}", NULL);
    rh_expect_outcome(&r, 422, NULL);
    cr_expect(strstr(r.body, "no CarePlan to check"), "%s", r.body);
    rh_response_free(&r);
    r = rh_request("gzsp", "POST", "/CarePlan/$gzsp-check?date=" D0, "{\"resourceType\":\"CarePlan\",\"status\":1}",
                   NULL);
    rh_expect_outcome(&r, 422, NULL);
    cr_expect(strstr(r.body, "CarePlan.status"), "%s", r.body);
    rh_response_free(&r);
    r = rh_request("gzsp", "POST", "/CarePlan/$gzsp-check", "not json {", NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request("gzsp", "POST", "/CarePlan/$gzsp-check?date=15-01-2026", "{\"resourceType\":\"Patient\"}", NULL);
    rh_expect_outcome(&r, 400, "invalid");
    cr_expect(strstr(r.body, "YYYY-MM-DD"), "%s", r.body);
    rh_response_free(&r);
    r = rh_request("gzsp", "POST", "/CarePlan/$gzsp-check?date=2031-01-01", "{\"resourceType\":\"Patient\"}", NULL);
    rh_expect_outcome(&r, 422, NULL);
    cr_expect(strstr(r.body, "contract year 2026"), "%s", r.body);
    rh_response_free(&r);
    r = rh_request("gzsp", "GET", "/CarePlan/$gzsp-check", NULL, NULL);
    cr_expect_eq(r.status, 405);
    rh_response_free(&r);
}

/* ---- GET /CarePlan/{id}/$compliance, GET /Encounter/{id}/$compliance ------------------------- */

Test(compliance, a_stored_plan_is_checked_with_its_stored_context)
{
    json_object *b = fixture("gzsp-plan.json");
    char id[80], path[160];
    store_bundle("gzsp", b, id, sizeof id);
    snprintf(path, sizeof path, "/CarePlan/%s/$compliance?date=" D0, id);
    json_object *rep = report_of("gzsp", "GET", path, NULL);
    cr_expect_str_eq(status_of(rep), "compliant");
    json_object_put(rep);
    json_object_put(b);
}

Test(compliance, a_stored_plan_that_fails_names_the_rule)
{
    json_object *b = fixture("gzsp-plan.json");
    plan_at_office(b);
    char id[80], path[160];
    store_bundle("gzsp", b, id, sizeof id);
    snprintf(path, sizeof path, "/CarePlan/%s/$compliance?date=" D0, id);
    json_object *rep = report_of("gzsp", "GET", path, NULL);
    cr_expect_str_eq(status_of(rep), "non-compliant");
    cr_expect_eq(findings(rep, "GZSP-LOCATION", "CarePlan.activity[1].detail.location", "error"), 1);
    json_object_put(rep);
    /* the same read access as GET: another provider does not learn that it exists */
    rh_response r = rh_request("elv-a", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    snprintf(path, sizeof path, "/CarePlan/%s", id);
    r = rh_request("elv-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 404);
    rh_response_free(&r);
    r = rh_request("gzsp", "GET", "/CarePlan/no-such-plan/$compliance?date=" D0, NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    snprintf(path, sizeof path, "/CarePlan/%s/$compliance?date=" D0, id);
    r = rh_request("insurer", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    json_object_put(b);
}

/* provider=URA with a plan that provider keeps here: the stored copy (this server has no outbound client, so
 * a pull would answer 503), for an insurer as the report only. */
Test(compliance, an_insurer_gets_the_report_of_a_stored_plan_of_the_provider)
{
    json_object *b = fixture("gzsp-plan.json");
    plan_at_office(b);
    char id[80], path[200];
    store_bundle("gzsp", b, id, sizeof id);
    snprintf(path, sizeof path, "/CarePlan/%s/$compliance?provider=" GZSP_URA "&date=" D0, id);
    json_object *rep = report_of("insurer", "GET", path, NULL);
    cr_expect_eq(findings(rep, "GZSP-LOCATION", "CarePlan.activity[1].detail.location", "error"), 1);
    cr_expect_null(strstr(json_object_to_json_string(rep), "activity\":"));
    json_object_put(rep);
    /* another provider's URA: not its plan, so a pull, which this gateway cannot make */
    snprintf(path, sizeof path, "/CarePlan/%s/$compliance?provider=90000301&date=" D0, id);
    rh_response r = rh_request("insurer", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 503, NULL);
    cr_expect(strstr(r.body, "pull mode is not configured"), "%s", r.body);
    rh_response_free(&r);
    json_object_put(b);
}

Test(compliance, a_stored_stay_is_checked)
{
    json_object *b = fixture("stay-elv.json");
    char id[80], path[160];
    store_bundle("elv-b", b, id, sizeof id);
    snprintf(path, sizeof path, "/Encounter/%s/$compliance?date=" D1, id);
    json_object *rep = report_of("elv-b", "GET", path, NULL);
    char subject[120];
    snprintf(subject, sizeof subject, "Encounter/%s", id);
    cr_expect_str_eq(rh_str(rep, "parameter.0.valueReference.reference"), subject);
    cr_expect_str_neq(status_of(rep), "non-compliant", "%s", json_object_to_json_string(rep));
    cr_expect_eq(findings(rep, "STAY-ELV-HANDOVER", NULL, "error"), 0);
    json_object_put(rep);
    rh_response r = rh_request("gzsp", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    /* the same stay without its admission handover Task stored: STAY-ELV-HANDOVER */
    json_object *entries;
    cr_assert(json_object_object_get_ex(b, "entry", &entries));
    json_object_array_del_idx(entries, 1, 1);
    store_bundle("elv-b", b, id, sizeof id);
    snprintf(path, sizeof path, "/Encounter/%s/$compliance?date=" D1, id);
    rep = report_of("elv-b", "GET", path, NULL);
    cr_expect_str_eq(status_of(rep), "non-compliant");
    cr_expect_eq(findings(rep, "STAY-ELV-HANDOVER", "Encounter.hospitalization.admitSource", "error"), 1);
    cr_expect_eq(findings(rep, "STAY-ELV-HANDOVER", "Encounter.extension[0]", "warning"), 1);
    json_object_put(rep);
    json_object_put(b);
}

/* ---- POST /Organization/$contract-check ------------------------------------------------ */

Test(compliance, contract_check_of_the_callers_own_organisation)
{
    json_object *b = fixture("provider-elv-grz.json");
    char *text = text_of(b);
    json_object *rep = report_of("elv-b", "POST", "/Organization/$contract-check?kind=ELV&date=" D1, text);
    cr_expect_str_eq(status_of(rep), "compliant", "%s", json_object_to_json_string(rep));
    json_object_put(rep);
    free(text);
    lapse(b, 20);
    text = text_of(b);
    rep = report_of("elv-b", "POST", "/Organization/$contract-check?kind=elv&variant=elv-hoogcomplex&date=" D1, text);
    cr_expect_str_eq(status_of(rep), "non-compliant");
    cr_expect_eq(findings(rep, "ELV-BASE", "Organization.extension[20].extension[2]", "error"), 1);
    json_object_put(rep);
    /* the GRZ requirements only: the lapsed ELV attestation is not among them */
    rep = report_of("elv-b", "POST", "/Organization/$contract-check?kind=GRZ&date=" D1, text);
    cr_expect_not(any_rule_starting(rep, "ELV-"));
    json_object_put(rep);
    free(text);
    json_object_put(b);
}

Test(compliance, contract_check_refusals)
{
    json_object *b = fixture("provider-elv-grz.json");
    char *text = text_of(b);
    rh_response r = rh_request("elv-a", "POST", "/Organization/$contract-check?kind=ELV&date=" D1, text, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request("elv-b", "POST", "/Organization/$contract-check?date=" D1, text, NULL);
    rh_expect_outcome(&r, 400, "required");
    rh_response_free(&r);
    r = rh_request("elv-b", "POST", "/Organization/$contract-check?kind=ELV&variant=grz-cva&date=" D1, text, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request("elv-b", "POST", "/Organization/$contract-check?kind=GZSP&date=" D1, text, NULL);
    rh_expect_outcome(&r, 422, "business-rule");
    cr_expect(strstr(r.body, "does not offer gzsp"), "%s", r.body);
    rh_response_free(&r);
    free(text);
    json_object_put(b);
}

/* ---- pull mode ------------------------------------------------------------------------- */

/* Start the provider's endpoint (the peer) with the plan and its context, a client for the gateway, and a
 * server with both; register the peer as the GZSP provider's Endpoint. */
static void pull_setup(void)
{
    load_rules();
    rh_options o = {.keep_gzsp = true, .allow_dangling = true, .rules = engine};
    rh_setup_with(&o);
    char pki[300], err[256];
    snprintf(pki, sizeof pki, "%s/pki", rh.dir);
    peer_options po = {.pki_dir = pki, .slow_ms = 2500, .oversize_bytes = 256 * 1024};
    pr = peer_start(&po, err, sizeof err);
    cr_assert_not_null(pr, "%s", err);
    json_object *b = fixture("gzsp-plan.json");
    json_object *entries;
    json_object_object_get_ex(b, "entry", &entries);
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        json_object *res = entry_resource(b, i), *rt, *id;
        json_object_object_get_ex(res, "resourceType", &rt);
        json_object_object_get_ex(res, "id", &id);
        peer_put(pr, json_object_get_string(rt), json_object_get_string(id), json_object_to_json_string(res));
    }
    json_object_put(b);
    /* the gateway again, now with an outbound client of the test PKI (short limits for the test) */
    rh_stop_server();
    ob_config oc = ob_config_default();
    oc.timeout_ms = 1000;
    oc.connect_timeout_ms = 1000;
    oc.retries = 1;
    oc.backoff_ms = 10;
    oc.max_bytes = 64 * 1024;
    outbound = rh_outbound_client(oc);
    rh.opt.outbound = outbound;
    rh_start_server();
    rh_publish_directory();
    rh_register_endpoint("gzsp", GZSP_URA, peer_base(pr), NULL);
}

static void pull_teardown(void)
{
    rh_teardown();
    peer_free(pr);
    ob_client_free(outbound);
    rl_engine_free(engine);
    rl_pack_free(pack);
    pf_registry_free(reg);
}

TestSuite(pull, .init = pull_setup, .fini = pull_teardown, .timeout = 120);

#define PULL_PATH "/CarePlan/" PLAN "/$compliance?provider=" GZSP_URA "&date=" D0

static void mode(peer_mode m)
{
    char err[256];
    cr_assert(peer_set_mode(pr, m, err, sizeof err), "%s", err);
}

Test(pull, an_insurer_gets_the_report_of_a_plan_the_gateway_does_not_hold)
{
    json_object *rep = report_of("insurer", "GET", PULL_PATH, NULL);
    cr_expect_str_eq(status_of(rep), "compliant");
    const char *text = json_object_to_json_string(rep);
    /* only the report: no resource of the plan or its context comes back */
    cr_expect_null(strstr(text, "\"CarePlan\""), "%s", text);
    cr_expect_null(strstr(text, "Patient"), "%s", text);
    cr_expect_null(strstr(text, "activity"), "%s", text);
    json_object_put(rep);
    cr_expect_eq(peer_count_path(pr, "/fhir/CarePlan/" PLAN, false), 1);
    cr_expect_geq(peer_count_path(pr, "/fhir/CareTeam/", true), 1);
    cr_expect_geq(peer_count_path(pr, "/fhir/PractitionerRole/", true), 4);
    cr_expect_geq(peer_count_path(pr, "/fhir/Coverage", false), 1); /* the search of the patient's Coverages */
    /* the provider itself may ask too; another provider may not */
    rep = report_of("gzsp", "GET", PULL_PATH, NULL);
    json_object_put(rep);
    rh_response r = rh_request("elv-a", "GET", PULL_PATH, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
}

/* An insurer learns only of its own insured: with the patient's Coverage paid by another insurer, the plan is
 * as unknown to it as one that does not exist; the provider itself still gets its report. */
Test(pull, an_insurer_gets_no_report_of_another_insurers_insured)
{
    json_object *b = fixture("gzsp-plan.json");
    json_object *entries = json_object_object_get(b, "entry");
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        json_object *res = entry_resource(b, i);
        if (strcmp(rh_str(res, "resourceType"), "Coverage"))
            continue;
        json_object *payor = json_tokener_parse("[{\"identifier\":{\"system\":\"http://fhir.nl/fhir/NamingSystem/"
                                                "uzovi\",\"value\":\"9999\"}}]");
        json_object_object_add(res, "payor", payor);
        peer_put(pr, "Coverage", rh_str(res, "id"), json_object_to_json_string(res));
    }
    json_object_put(b);
    rh_response r = rh_request("insurer", "GET", PULL_PATH, NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    json_object *rep = report_of("gzsp", "GET", PULL_PATH, NULL);
    json_object_put(rep);
}

Test(pull, a_failing_plan_at_the_provider_names_the_rule)
{
    json_object *b = fixture("gzsp-plan.json");
    plan_at_office(b);
    peer_put(pr, "CarePlan", PLAN, json_object_to_json_string(entry_resource(b, 0)));
    json_object_put(b);
    json_object *rep = report_of("insurer", "GET", PULL_PATH, NULL);
    cr_expect_str_eq(status_of(rep), "non-compliant");
    cr_expect_eq(findings(rep, "GZSP-LOCATION", "CarePlan.activity[1].detail.location", "error"), 1);
    json_object_put(rep);
}

/* How a provider's failures reach the caller: each mode of the peer, the status, the issue code (NULL: any), a
 * text the message must contain, and how many requests the peer must have seen (-1: any). */
typedef struct pull_failure {
    peer_mode mode;
    long status;
    const char *code, *says;
    int requests;
} pull_failure;

static const pull_failure FAILURES[] = {
    {PEER_DOWN, 502, NULL, "unreachable", 0},
    {PEER_SLOW, 504, "timeout", "1000 ms", -1},
    {PEER_500, 502, NULL, "answered 500 after 2 attempts", 2}, /* one retry, then given up */
    {PEER_GARBAGE, 502, NULL, "not JSON", 1},
    {PEER_INVALID, 502, NULL, "invalid FHIR for CarePlan/" PLAN, 1},
    {PEER_OVERSIZE, 502, NULL, "too-large", 1},
    {PEER_FOREIGN, 502, NULL, "TLS", 0}, /* refused in the handshake: no request reaches it */
};

Test(pull, the_providers_failures_are_told_apart)
{
    for (size_t i = 0; i < sizeof FAILURES / sizeof *FAILURES; i++) {
        const pull_failure *f = &FAILURES[i];
        mode(f->mode);
        size_t before = peer_request_count(pr);
        rh_response r = rh_request("insurer", "GET", PULL_PATH, NULL, NULL);
        rh_expect_outcome(&r, f->status, f->code);
        cr_expect(r.body && strstr(r.body, f->says), "mode %d: %s", (int)f->mode, r.body);
        cr_expect(r.body && strstr(r.body, GZSP_URA), "mode %d: the message names the provider: %s", (int)f->mode,
                  r.body);
        if (f->requests >= 0)
            cr_expect_eq(peer_request_count(pr) - before, (size_t)f->requests, "mode %d", (int)f->mode);
        rh_response_free(&r);
    }
}

Test(pull, what_the_provider_does_not_have_is_404)
{
    rh_response r = rh_request("insurer", "GET", "/CarePlan/not-there/$compliance?provider=" GZSP_URA "&date=" D0, NULL,
                               NULL);
    rh_expect_outcome(&r, 404, "not-found");
    cr_expect(strstr(r.body, "does not have CarePlan/not-there"), "%s", r.body);
    rh_response_free(&r);
}

Test(pull, a_provider_without_endpoint_is_422)
{
    rh_response r = rh_request("insurer", "GET", "/CarePlan/" PLAN "/$compliance?provider=90000301&date=" D0, NULL,
                               NULL);
    rh_expect_outcome(&r, 422, NULL);
    cr_expect(strstr(r.body, "no FHIR endpoint"), "%s", r.body);
    rh_response_free(&r);
    r = rh_request("insurer", "GET", "/CarePlan/" PLAN "/$compliance?provider=123&date=" D0, NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
}

Test(pull, the_operations_are_in_the_capability_statement)
{
    rh_response r = rh_request("insurer", "GET", "/metadata", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.body, "https://fhirgw.nl/fhir/OperationDefinition/gzsp-check"));
    cr_expect(strstr(r.body, "https://fhirgw.nl/fhir/OperationDefinition/compliance"));
    cr_expect(strstr(r.body, "https://fhirgw.nl/fhir/OperationDefinition/contract-check"));
    rh_response_free(&r);
}

/* ---- the insurer's streamed pull, more plans than one batch ----------------------------- */

#define STREAM_PLANS 600 /* more than two batches of the stream (gateway/rest/rest_insurer.c, NDJSON_PAGE) */

static mpn_key stream_key;  /* the insurer maps' pseudonyms (none reaches a compliance report) */
static pf_registry *models; /* the guide with its logical models, for the insurer maps */

static void stream_setup(void)
{
    load_rules();
    const char *dirs[] = {IG "profiles", IG "extensions", IG "terminology", IG "models"};
    oo_list issues;
    oo_list_init(&issues, 0);
    models = conf_load(dirs, 4, &issues);
    oo_list_free(&issues);
    cr_assert_not_null(models);
    char err[256];
    cr_assert(mpn_key_from_hex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64, &stream_key, err,
                               sizeof err),
              "%s", err);
    rh_options o = {.keep_gzsp = true,
                    .allow_dangling = true,
                    .rules = engine,
                    .profiles = models,
                    .maps_dir = TESTS_DIR "/../mappings/maps/2026",
                    .pseudonym_key = &stream_key};
    rh_setup_with(&o);
    rh_publish_directory();
}

static void stream_teardown(void)
{
    teardown();
    pf_registry_free(models);
}

TestSuite(stream, .init = stream_setup, .fini = stream_teardown, .timeout = 300);

/* POST copies of the stored plan as gzsp in transactions of 100: plan i refers to patient[i % 2] and, when
 * office(i), to the office not set up for treatment (GZSP-LOCATION). The new ids into ids[i]. */
static void post_copies(json_object *plan, const char *patients[2], const char *office_ref, bool (*office)(size_t),
                        char (*ids)[80], size_t n)
{
    for (size_t from = 0; from < n; from += 100) {
        json_object *txn = json_object_new_object(), *entries = json_object_new_array();
        json_object_object_add(txn, "resourceType", json_object_new_string("Bundle"));
        json_object_object_add(txn, "type", json_object_new_string("transaction"));
        for (size_t i = from; i < n && i < from + 100; i++) {
            json_object *copy = NULL, *e = json_object_new_object(), *req = json_object_new_object(), *acts, *detail;
            cr_assert_eq(json_object_deep_copy(plan, &copy, NULL), 0);
            json_object_object_del(copy, "id");
            json_object_object_del(copy, "meta");
            json_object *subject = json_object_new_object();
            json_object_object_add(subject, "reference", json_object_new_string(patients[i % 2]));
            json_object_object_add(copy, "subject", subject);
            if (office(i)) {
                cr_assert(json_object_object_get_ex(copy, "activity", &acts));
                cr_assert(json_object_object_get_ex(json_object_array_get_idx(acts, 1), "detail", &detail));
                json_object *loc = json_object_new_object();
                json_object_object_add(loc, "reference", json_object_new_string(office_ref));
                json_object_object_add(detail, "location", loc);
            }
            json_object_object_add(e, "resource", copy);
            json_object_object_add(req, "method", json_object_new_string("POST"));
            json_object_object_add(req, "url", json_object_new_string("CarePlan"));
            json_object_object_add(e, "request", req);
            json_object_array_add(entries, e);
        }
        json_object_object_add(txn, "entry", entries);
        char *text = text_of(txn);
        rh_response r = rh_request("gzsp", "POST", "/", text, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_object *resp = rh_json(&r);
        for (size_t i = from; i < n && i < from + 100; i++) {
            char path[64];
            snprintf(path, sizeof path, "entry.%zu.response.location", i - from);
            const char *loc = rh_str(resp, path), *at = loc ? strstr(loc, "CarePlan/") : NULL;
            cr_assert_not_null(at, "%s", path);
            snprintf(ids[i], sizeof ids[i], "%.*s", (int)strcspn(at + 9, "/"), at + 9);
        }
        json_object_put(resp);
        rh_response_free(&r);
        free(text);
        json_object_put(txn);
    }
}

static bool every_seventh(size_t i)
{
    return i % 7 == 3;
}

/*
 * The streamed pull checks plans in batches, their contexts read in bulk and cached from batch to batch: every
 * report of the insurer's insured comes exactly once, with the status a plan checked on its own has, and none
 * of the plans of a patient the insurer does not insure.
 */
/* The fixture's plan stored by gzsp (its id into id), as read back. */
static json_object *stored_plan(char id[80])
{
    json_object *b = fixture("gzsp-plan.json");
    char path[200];
    store_bundle("gzsp", b, id, 80);
    json_object_put(b);
    snprintf(path, sizeof path, "/CarePlan/%s", id);
    rh_response r = rh_request("gzsp", "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *plan = rh_json(&r);
    rh_response_free(&r);
    return plan;
}

/* The patient insured by the insurer with this UZOVI since before the plans start (2025-09-01): the view scopes
 * by the patient's insurance then. */
static void insure(const char *patient, const char *uzovi)
{
    char cov[768];
    snprintf(cov, sizeof cov,
             "{\"resourceType\":\"Coverage\",\"status\":\"active\",\"type\":{\"coding\":[{\"system\":"
             "\"https://fhirgw.nl/fhir/CodeSystem/coverage-kind\",\"code\":\"zvw\"}]},\"beneficiary\":{"
             "\"reference\":\"%s\"},\"period\":{\"start\":\"2025-01-01\",\"end\":\"2025-12-31\"},\"payor\":[{"
             "\"identifier\":{\"system\":\"http://fhir.nl/fhir/NamingSystem/uzovi\",\"value\":\"%s\"}}]}",
             patient, uzovi);
    rh_create("gzsp", "Coverage", cov);
}

/* A new Patient of gzsp's, nobody's insured until insure(): "Patient/<id>" into out. */
static void new_patient(char out[96])
{
    snprintf(out, 96, "Patient/%s", rh_create("gzsp", "Patient", "{\"resourceType\":\"Patient\",\"active\":true}"));
}

Test(stream, a_pull_of_more_plans_than_a_batch_reports_each_insured_plan_once)
{
    char id[80], path[200];
    json_object *plan = stored_plan(id);
    /* the stored plan's own patient is the insurer's (the fixture's Coverage); a new one is nobody's */
    char patient0[96], other[96], office[96], office_id[80];
    snprintf(patient0, sizeof patient0, "%s", rh_str(plan, "subject.reference"));
    new_patient(other);
    const char *patients[2] = {patient0, other};
    insure(patient0, "9901");
    /* the office not set up for treatment: as stored with the failing fixture (itself a plan reported too) */
    json_object *fb = fixture("gzsp-plan.json");
    plan_at_office(fb);
    store_bundle("gzsp", fb, office_id, sizeof office_id);
    json_object_put(fb);
    snprintf(path, sizeof path, "/CarePlan/%s", office_id);
    rh_response r = rh_request("gzsp", "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *at_office = rh_json(&r);
    rh_response_free(&r);
    snprintf(office, sizeof office, "%s", rh_str(at_office, "activity.1.detail.location.reference"));
    json_object_put(at_office);
    static char ids[STREAM_PLANS][80];
    post_copies(plan, patients, office, every_seventh, ids, STREAM_PLANS);
    json_object_put(plan);

    const char *const ndjson[] = {"Accept: application/x-ndjson", NULL};
    r = rh_request("insurer", "GET", "/insurer/compliance?provider=" GZSP_URA "&date=" D0, NULL, ndjson);
    cr_assert_eq(r.status, 200, "%s", r.body);
    static bool seen[STREAM_PLANS];
    size_t lines = 0;
    for (char *line = r.body, *end; line && *line; line = end + 1, lines++) {
        end = strchr(line, '\n');
        cr_assert_not_null(end, "every line ends in a newline");
        *end = 0;
        json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "line %zu: %.300s", lines, line);
        cr_assert_str_eq(rh_str(o, "resourceType"), "InsurerComplianceReport", "%.300s", line);
        const char *subject = rh_str(o, "subject.reference");
        cr_assert_not_null(subject, "%.300s", line);
        size_t k = 0;
        while (k < STREAM_PLANS && strcmp(subject + strcspn(subject, "/") + 1, ids[k]))
            k++;
        if (k == STREAM_PLANS) { /* the first stored fixture's own plan (the other's patient is not insured then) */
            cr_expect_str_eq(subject + strcspn(subject, "/") + 1, id, "%.300s", line);
        } else {
            cr_expect_eq(k % 2, 0, "only the insurer's insured: %s", subject);
            cr_expect_not(seen[k], "each plan once: %s", subject);
            seen[k] = true;
            cr_expect_str_eq(rh_str(o, "status"), every_seventh(k) ? "non-compliant" : "compliant", "%s", subject);
        }
        json_object_put(o);
    }
    cr_expect_eq(lines, STREAM_PLANS / 2 + 1, "one report per plan of the insurer's insured: %zu", lines);
    for (size_t k = 0; k < STREAM_PLANS; k += 2)
        cr_expect(seen[k], "plan %zu (%s) was reported", k, ids[k]);
    rh_response_free(&r);
    /* a plan checked on its own says the same */
    for (size_t k = 0; k < 14; k += 2) {
        snprintf(path, sizeof path, "/CarePlan/%.79s/$compliance?provider=" GZSP_URA "&date=" D0, ids[k]);
        json_object *rep = report_of("insurer", "GET", path, NULL);
        cr_expect_str_eq(status_of(rep), every_seventh(k) ? "non-compliant" : "compliant", "plan %zu", k);
        json_object_put(rep);
    }
}

/* ---- two insurers pulling the same provider's reports at once ---------------------------- */

#define SHARED_PLANS 600 /* of two patients, one of each insurer: each insurer's more than a batch */
#define PULLS 4          /* at once: each insurer twice */

/* One streamed pull on a thread of its own (no Criterion there: the answer is checked after the join). */
typedef struct pull {
    const char *who;
    rh_response r;
} pull;

/* A client that reads everything as it comes. */
static bool keep_reading(size_t received, void *arg)
{
    (void)received, (void)arg;
    return true;
}

/* A whole pull: paced (rh_get_paced), so that no total time limit cuts a long one short under valgrind; a stream
 * that stops moving still ends it. */
static void *pull_compliance(void *arg)
{
    pull *p = arg;
    const char *const ndjson[] = {"Accept: application/x-ndjson", NULL};
    p->r = rh_get_paced(p->who, "/insurer/compliance?provider=" GZSP_URA "&date=" D0, ndjson, keep_reading, NULL);
    return NULL;
}

static bool never(size_t i)
{
    (void)i;
    return false;
}

/* The pull's reports by plan: seen[k] counts the reports of plan ids[k]; those of no plan of ids (the fixture's
 * own, `own`) into *own_seen. The number of lines. */
static size_t tally(pull *p, char (*ids)[80], size_t n, const char *own, unsigned *seen, unsigned *own_seen)
{
    cr_assert_eq(p->r.status, 200, "%s: %ld %.300s", p->who, p->r.status, p->r.body);
    size_t lines = 0;
    for (char *line = p->r.body, *end; line && *line; line = end + 1, lines++) {
        end = strchr(line, '\n');
        cr_assert_not_null(end, "%s: every line ends in a newline (line %zu)", p->who, lines);
        *end = 0;
        json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "%s, line %zu: %.300s", p->who, lines, line);
        cr_assert_str_eq(rh_str(o, "resourceType"), "InsurerComplianceReport", "%.300s", line);
        const char *subject = rh_str(o, "subject.reference");
        cr_assert_not_null(subject, "%.300s", line);
        const char *plan = subject + strcspn(subject, "/") + 1;
        size_t k = 0;
        while (k < n && strcmp(plan, ids[k]))
            k++;
        if (k < n)
            seen[k]++;
        else
            cr_assert_str_eq(plan, own, "%s: a report of a plan not stored here: %s", p->who, subject);
        *own_seen += k == n;
        json_object_put(o);
    }
    return lines;
}

/*
 * Two insurers (insurer, UZOVI 9901; hospital-b registered as a second one, UZOVI 9902) pull the same provider's
 * compliance reports as NDJSON at the same time, each twice: every answer is complete and holds exactly the
 * reports of that insurer's insured, each once, whatever the other pulls run beside it.
 */
Test(stream, two_insurers_pulling_at_once_each_get_their_own_reports_once)
{
    rh_set_roles("hospital-b", "insurer,uzovi-9902");
    rh_stop_server();
    rh_start_server();
    char own[80];
    json_object *plan = stored_plan(own); /* its patient: the fixture's, insured by 9901 (the fixture's Coverage) */
    char patient_a[96], patient_b[96];
    snprintf(patient_a, sizeof patient_a, "%s", rh_str(plan, "subject.reference"));
    new_patient(patient_b);
    insure(patient_a, "9901");
    insure(patient_b, "9902");
    const char *patients[2] = {patient_a, patient_b};
    static char ids[SHARED_PLANS][80];
    post_copies(plan, patients, NULL, never, ids, SHARED_PLANS); /* plan k is patient k % 2's */
    json_object_put(plan);

    pull pulls[PULLS];
    pthread_t t[PULLS];
    for (size_t i = 0; i < PULLS; i++) {
        pulls[i] = (pull){.who = i % 2 ? "hospital-b" : "insurer"};
        cr_assert_eq(pthread_create(&t[i], NULL, pull_compliance, &pulls[i]), 0);
    }
    for (size_t i = 0; i < PULLS; i++)
        pthread_join(t[i], NULL);
    rh_expect_valid_bodies();
    for (size_t i = 0; i < PULLS; i++) {
        size_t mine = i % 2; /* the patient of this pull's insurer */
        static unsigned seen[SHARED_PLANS];
        unsigned own_seen = 0;
        memset(seen, 0, sizeof seen);
        size_t lines = tally(&pulls[i], ids, SHARED_PLANS, own, seen, &own_seen);
        size_t wrong = 0, twice = 0, missing = 0;
        for (size_t k = 0; k < SHARED_PLANS; k++) {
            wrong += k % 2 != mine && seen[k];
            twice += seen[k] > 1;
            missing += k % 2 == mine && !seen[k];
        }
        cr_expect_eq(wrong, 0, "pull %zu (%s): %zu reports of the other insurer's insured", i, pulls[i].who, wrong);
        cr_expect_eq(twice, 0, "pull %zu (%s): %zu plans reported more than once", i, pulls[i].who, twice);
        cr_expect_eq(missing, 0, "pull %zu (%s): %zu of its insured's plans not reported", i, pulls[i].who, missing);
        cr_expect_eq(own_seen, mine ? 0u : 1u, "pull %zu (%s): the fixture's own plan is 9901's", i, pulls[i].who);
        cr_expect_eq(lines, SHARED_PLANS / 2 + !mine, "pull %zu (%s): %zu lines", i, pulls[i].who, lines);
        rh_response_free(&pulls[i].r);
    }
}

/* The gateway restarted with a small send buffer (send_buffer_bytes), as a slow link would leave it: with a paced
 * client's small receive buffer (rh_get_paced), it makes a stream's batches as the client reads them, not all
 * at once into the kernel's buffers, which on loopback grow to megabytes. A client that stalls while the
 * provider writes takes none of the answer meanwhile: under valgrind that is longer than the default write
 * timeout (30 s), after which the gateway rightly closes the connection. */
static void slow_link(void)
{
    rh.opt.send_buffer_bytes = 16 * 1024;
    rh.opt.write_timeout_ms = 10 * 60 * 1000;
    rh_stop_server();
    rh_start_server();
}

/* The fixture's plan stored (its id into own), its patient insured by 9901, and n copies of it (their ids into
 * ids): returns the stored plan, for the caller to put. */
static json_object *insured_copies(char own[80], char (*ids)[80], size_t n)
{
    json_object *plan = stored_plan(own); /* its patient: the fixture's */
    const char *patient = rh_str(plan, "subject.reference"), *patients[2] = {patient, patient};
    insure(patient, "9901");
    post_copies(plan, patients, NULL, never, ids, n);
    return plan;
}

#define HANG_UP_PLANS 2500 /* ten batches; their reports (~500 KB) more than the gateway and the kernel hold */

/* The client of a pull that hangs up at the first piece of the answer. */
static bool hang_up(size_t received, void *arg)
{
    (void)received, (void)arg;
    return false;
}

/*
 * Insurers that hang up early in a pull of several batches leave the gateway serving, and the same insurer's
 * next pull is whole, each report once. Under the sanitizers, a batch not freed or a check thread left running
 * on a dropped pull's memory (rest_insurer.c makes the next batch while one is sent) fails it. Over the slow
 * link the gateway still has batches to make when the client hangs up, so the pull is dropped in the middle,
 * with a batch being checked and one ahead.
 */
Test(stream, an_insurer_hanging_up_mid_pull_leaves_the_next_pull_whole)
{
    slow_link();
    char own[80];
    static char ids[HANG_UP_PLANS][80];
    json_object_put(insured_copies(own, ids, HANG_UP_PLANS));
    const char *const ndjson[] = {"Accept: application/x-ndjson", NULL};
    for (int i = 0; i < 2; i++) {
        rh_response cut = rh_get_paced("insurer", "/insurer/compliance?provider=" GZSP_URA "&date=" D0, ndjson, hang_up,
                                       NULL);
        cr_expect_eq(cut.curl, CURLE_WRITE_ERROR, "the client hung up (curl %d)", (int)cut.curl);
        rh_response_free(&cut);
    }
    pull whole = {.who = "insurer"};
    pull_compliance(&whole);
    static unsigned seen[HANG_UP_PLANS];
    unsigned own_seen = 0;
    size_t lines = tally(&whole, ids, HANG_UP_PLANS, own, seen, &own_seen), twice = 0, missing = 0;
    for (size_t k = 0; k < HANG_UP_PLANS; k++)
        twice += seen[k] > 1, missing += !seen[k];
    cr_expect_eq(twice + missing, 0, "%zu plans twice, %zu missing", twice, missing);
    cr_expect_eq(own_seen, 1u);
    cr_expect_eq(lines, HANG_UP_PLANS + 1, "%zu lines", lines);
    rh_response_free(&whole.r);
}

/* ---- a streamed pull while the provider writes -------------------------------------------- */

#define WRITE_PLANS HANG_UP_PLANS
#define NEW_PLANS 20
static const size_t UPDATED[] = {3, 250, 520, 777, 1030, 1290, 1497};
static const size_t DELETED[] = {5, 600, 1200, 1490};

/* What the provider does while the insurer pulls: on a thread of its own (no Criterion there: the outcome is
 * checked after the join), started by the pull's first piece, which waits for it to finish. */
typedef struct provider_writes {
    char (*ids)[80];   /* the plans stored before the pull */
    json_object *plan; /* a stored plan, to copy */
    char new_ids[NEW_PLANS][80];
    char failed[256];       /* the first write that did not succeed, "" when all did */
    size_t received_before; /* bytes of the stream the insurer had when the writes began */
    bool started, done;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t finished;
} provider_writes;

static void write_failed(provider_writes *w, const char *what, const char *id, const rh_response *r)
{
    if (!w->failed[0])
        snprintf(w->failed, sizeof w->failed, "%s %s: %ld %.150s", what, id, r->status, r->body ? r->body : "");
}

static void *write_while_pulled(void *arg)
{
    provider_writes *w = arg;
    char path[128];
    for (size_t i = 0; i < sizeof UPDATED / sizeof *UPDATED; i++) { /* read, change, write back */
        snprintf(path, sizeof path, "/CarePlan/%s", w->ids[UPDATED[i]]);
        rh_response r = rh_request("gzsp", "GET", path, NULL, NULL);
        json_object *o = r.status == 200 ? json_tokener_parse(r.body) : NULL;
        if (o) {
            json_object_object_add(o, "description", json_object_new_string("changed while the insurer pulls"));
            char *text = text_of(o);
            rh_response u = rh_request("gzsp", "PUT", path, text, NULL);
            if (u.status != 200)
                write_failed(w, "PUT", path, &u);
            rh_response_free(&u);
            free(text);
            json_object_put(o);
        } else {
            write_failed(w, "GET", path, &r);
        }
        rh_response_free(&r);
    }
    for (size_t i = 0; i < sizeof DELETED / sizeof *DELETED; i++) {
        snprintf(path, sizeof path, "/CarePlan/%s", w->ids[DELETED[i]]);
        rh_response r = rh_request("gzsp", "DELETE", path, NULL, NULL);
        if (r.status != 200 && r.status != 204)
            write_failed(w, "DELETE", path, &r);
        rh_response_free(&r);
    }
    json_object *copy = NULL;
    json_object_deep_copy(w->plan, &copy, NULL);
    json_object_object_del(copy, "id");
    json_object_object_del(copy, "meta");
    char *text = text_of(copy);
    json_object_put(copy);
    for (size_t i = 0; i < NEW_PLANS; i++) {
        rh_response r = rh_request("gzsp", "POST", "/CarePlan", text, NULL);
        json_object *o = r.status == 201 ? json_tokener_parse(r.body) : NULL;
        const char *id = o ? rh_str(o, "id") : NULL;
        if (id)
            snprintf(w->new_ids[i], sizeof w->new_ids[i], "%s", id);
        else
            write_failed(w, "POST", "/CarePlan", &r);
        json_object_put(o);
        rh_response_free(&r);
    }
    free(text);
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->finished);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* The insurer's client: at the first piece of the stream, the provider writes; it reads on once they are done. */
static bool read_on_after_the_writes(size_t received, void *arg)
{
    provider_writes *w = arg;
    pthread_mutex_lock(&w->lock);
    if (!w->started) {
        w->started = true;
        w->received_before = received;
        if (pthread_create(&w->thread, NULL, write_while_pulled, w) != 0)
            w->done = true;
        while (!w->done)
            pthread_cond_wait(&w->finished, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return true;
}

static bool is_listed(size_t k, const size_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == k)
            return true;
    return false;
}

/*
 * The provider updates, deletes and creates plans while the insurer's NDJSON pull of several batches is under way:
 * the stream reads all its batches at the snapshot of its first, so every plan stored before the pull that the
 * provider did not delete is reported exactly once, whether it was changed before or after its batch was read
 * (a change moves a plan's lastUpdated past the stream's cursor: read at the current state, an updated plan not
 * yet reported would come twice or an early one again); a deleted plan at most once; a plan created during the
 * pull not at all. The client stalls at the first piece until the writes are done; the gateway's send buffer is
 * held small (send_buffer_bytes, and the client's receive buffer: rh_get_paced), as a slow link would, so that it
 * has made only the first batches by then: on loopback the kernel would otherwise take the whole stream.
 */
Test(stream, a_pull_while_the_provider_writes_reports_each_plan_of_its_snapshot_once)
{
    slow_link();
    char own[80];
    static char ids[WRITE_PLANS][80];
    json_object *plan = insured_copies(own, ids, WRITE_PLANS);

    provider_writes w = {.ids = ids, .plan = plan};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.finished, NULL);
    const char *const ndjson[] = {"Accept: application/x-ndjson", NULL};
    pull p = {.who = "insurer"};
    p.r = rh_get_paced("insurer", "/insurer/compliance?provider=" GZSP_URA "&date=" D0, ndjson,
                       read_on_after_the_writes, &w);
    if (w.started)
        pthread_join(w.thread, NULL);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.finished);
    cr_assert(w.started, "the stream had a first piece");
    cr_assert_str_empty(w.failed, "the provider's writes: %s", w.failed);
    cr_log_info("the writes came when the client had %zu of the stream's %zu bytes", w.received_before, p.r.len);

    static unsigned seen[WRITE_PLANS];
    unsigned own_seen = 0;
    size_t lines = tally(&p, ids, WRITE_PLANS, own, seen, &own_seen), twice = 0, missing = 0, deleted_twice = 0;
    for (size_t k = 0; k < WRITE_PLANS; k++) {
        bool deleted = is_listed(k, DELETED, sizeof DELETED / sizeof *DELETED);
        deleted_twice += deleted && seen[k] > 1;
        twice += !deleted && seen[k] > 1;
        missing += !deleted && !seen[k];
    }
    for (size_t i = 0; i < sizeof UPDATED / sizeof *UPDATED; i++)
        cr_expect_eq(seen[UPDATED[i]], 1u, "the plan changed during the pull (%zu) is reported once", UPDATED[i]);
    cr_expect_eq(twice + deleted_twice, 0, "%zu plans reported twice", twice + deleted_twice);
    cr_expect_eq(missing, 0, "%zu plans of the snapshot not reported", missing);
    cr_expect_eq(own_seen, 1u, "the first stored plan is reported once");
    /* tally() found every line's plan among those stored before the pull (or the first one): none is new */
    for (size_t i = 0; i < NEW_PLANS; i++)
        cr_expect(w.new_ids[i][0], "new plan %zu was stored", i);
    size_t deleted_seen = 0;
    for (size_t i = 0; i < sizeof DELETED / sizeof *DELETED; i++)
        deleted_seen += seen[DELETED[i]];
    cr_expect_eq(lines, WRITE_PLANS - sizeof DELETED / sizeof *DELETED + deleted_seen + 1, "%zu lines", lines);
    rh_response_free(&p.r);
    json_object_put(plan);

    /* the next pull sees the provider's plans as they are now: the new ones in, the deleted ones out */
    pull after = {.who = "insurer"};
    pull_compliance(&after);
    cr_assert_eq(after.r.status, 200);
    size_t new_seen = 0;
    for (size_t i = 0; i < NEW_PLANS; i++)
        new_seen += strstr(after.r.body, w.new_ids[i]) != NULL;
    cr_expect_eq(new_seen, NEW_PLANS, "the plans created during the first pull are in the next");
    for (size_t i = 0; i < sizeof DELETED / sizeof *DELETED; i++)
        cr_expect_null(strstr(after.r.body, ids[DELETED[i]]), "deleted plan %zu is not in the next pull", DELETED[i]);
    rh_response_free(&after.r);
}

/* Store the fixture (at the office not set up for treatment when at_office) with its patient insured. */
static void store_insured_plan(bool at_office)
{
    json_object *b = fixture("gzsp-plan.json");
    if (at_office)
        plan_at_office(b);
    char id[80], path[120];
    store_bundle("gzsp", b, id, sizeof id);
    json_object_put(b);
    snprintf(path, sizeof path, "/CarePlan/%s", id);
    json_object *plan = report_of("gzsp", "GET", path, NULL);
    insure(rh_str(plan, "subject.reference"), "9901");
    json_object_put(plan);
}

/*
 * The streamed pull writes each InsurerComplianceReport directly from the findings (rest_compliance.c): byte for
 * byte what the shipped map compliance-report makes of the plan's report Parameters ($compliance), with
 * findings and without.
 */
Test(stream, a_streamed_report_is_the_compliance_report_map_of_the_parameters)
{
    store_insured_plan(false);
    store_insured_plan(true);
    const char *const ndjson[] = {"Accept: application/x-ndjson", NULL};
    rh_response r = rh_request("insurer", "GET", "/insurer/compliance?provider=" GZSP_URA "&date=" D0, NULL, ndjson);
    cr_assert_eq(r.status, 200, "%s", r.body);
    size_t lines = 0, with_findings = 0;
    for (char *line = r.body, *end; line && *line; line = end + 1, lines++) {
        end = strchr(line, '\n');
        cr_assert_not_null(end);
        *end = 0;
        json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "%.300s", line);
        with_findings += json_object_object_get_ex(o, "findings", NULL);
        char path[200];
        snprintf(path, sizeof path, "/%s/$compliance?provider=" GZSP_URA "&date=" D0, rh_str(o, "subject.reference"));
        json_object_put(o);
        json_object *params = report_of("gzsp", "GET", path, NULL);
        char *report = text_of(params);
        json_object_put(params);
        size_t n = strlen(report) + 256;
        char *body = malloc(n);
        cr_assert_not_null(body);
        snprintf(body, n,
                 "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"source\",\"valueUri\":"
                 "\"https://fhirgw.nl/fhir/StructureMap/compliance-report\"},{\"name\":\"content\",\"resource\":%s}]}",
                 report);
        rh_response m = rh_request("gzsp", "POST", "/StructureMap/$transform", body, NULL);
        cr_assert_eq(m.status, 200, "%s", m.body);
        cr_expect_str_eq(line, m.body, "the streamed line and the map's output differ");
        rh_response_free(&m);
        free(body);
        free(report);
    }
    cr_expect_eq(lines, 2, "%zu", lines);
    cr_expect_eq(with_findings, 1, "one plan at the office: %zu with findings", with_findings);
    rh_response_free(&r);
}
