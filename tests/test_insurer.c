/*
 * tests/test_insurer.c — the insurer's side of issue #11 over real TLS:
 * StructureMap/$transform with a shipped and a stored map, the /insurer
 * views scoped to each insurer's own insured, paging by cursor while a
 * provider writes, an InsurerContract stored and read back by the provider
 * as FHIR, and bad input answered with an OperationOutcome and nothing
 * stored.
 *
 * Parties: two care providers (elv-a 90000301, elv-b 90000302) and two
 * insurers: `insurer` (90000501, UZOVI 9901) and a second one played by the
 * gzsp certificate (90000401), which this suite registers with the insurer
 * role (UZOVI 9902): the test PKI has one insurer certificate, and gzsp's
 * is the one the other suites leave unregistered. Each insurer's UZOVI is
 * a role token of the registry (insured.h), as docs/access.md says. The
 * server loads the guide's package (the logical models) and the shipped
 * maps; the pseudonym key is made at random for each run.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json_write.h"
#include "gateway/rest/insured.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "mappings/mapset.h"
#include "mappings/pseudonym.h"
#include "rules/check.h"
#include "rules/pack.h"
#include "rest_harness.h"

#define INSURER_A "insurer"
#define INSURER_B "gzsp" /* registered as an insurer by this suite */
#define URA_A "90000301"
#define URA_B "90000302"
#define UZOVI_SYSTEM "http://fhir.nl/fhir/NamingSystem/uzovi"
#define MAPS "https://fhirgw.nl/fhir/StructureMap/"

static mpn_key key;
static rl_pack *pack; /* the compliance reports of /insurer/compliance */
static rl_engine *engine;

/* The registry's roles of the two insurers (their UZOVI as a role token), and a restart with that table. */
static void register_insurers(const char *roles_a, const char *roles_b)
{
    rh_set_roles(INSURER_A, roles_a);
    rh_set_roles(INSURER_B, roles_b);
    rh_stop_server();
    rh_start_server();
}

static void setup(void)
{
    unsigned char bytes[32];
    char hex[65], err[256];
    cr_assert_eq(RAND_bytes(bytes, sizeof bytes), 1);
    for (size_t i = 0; i < sizeof bytes; i++)
        sprintf(hex + 2 * i, "%02x", bytes[i]);
    cr_assert(mpn_key_from_hex(hex, 64, &key, err, sizeof err), "%s", err);
    size_t len;
    char *text = files_read(PACK_FILE, &len);
    cr_assert_not_null(text, "%s", PACK_FILE);
    oo_list issues;
    oo_list_init(&issues, 0);
    pack = rl_pack_load(text, len, PACK_FILE, &issues);
    free(text);
    cr_assert_not_null(pack);
    engine = rl_engine_new(pack, rh_guide(), &issues);
    cr_assert_not_null(engine, "%s", issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
    rh_options opt = {.keep_gzsp = true,
                      .allow_dangling = true,
                      .profiles = rh_guide(),
                      .maps_dir = MAPS_DIR,
                      .pseudonym_key = &key,
                      .rules = engine};
    rh_setup_with(&opt);
    register_insurers("insurer,uzovi-9901", "insurer,uzovi-9902");
    rh_publish_directory(); /* with the roles the suite gave */
}

static void teardown(void)
{
    rh_teardown();
    rl_engine_free(engine);
    rl_pack_free(pack);
}

TestSuite(insurer, .init = setup, .fini = teardown, .timeout = 180);

/* ---- data, written through the API as the providers write it ---- */

/* A Patient with a BSN, a name, an address and a birth date (none of which may reach an insurer). */
static const char *patient(const char *who, const char *bsn, const char *family)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\","
             "\"value\":\"%s\"}],\"name\":[{\"family\":\"%s\",\"given\":[\"Jantje\"]}],\"birthDate\":\"1941-05-17\","
             "\"address\":[{\"line\":[\"Dorpsstraat 12\"],\"city\":\"Sappemeer\"}]}",
             bsn, family);
    return rh_create(who, "Patient", body);
}

/* Insurance: payor by the insurer's directory entry (A) or by its UZOVI identifier (B). */
static void coverage(const char *who, const char *patient_id, const char *uzovi, const char *start)
{
    char body[1024], payor[256];
    if (!strcmp(uzovi, "9901"))
        snprintf(payor, sizeof payor, "{\"reference\":\"Organization/ura-90000501\"}");
    else
        snprintf(payor, sizeof payor, "{\"identifier\":{\"system\":\"" UZOVI_SYSTEM "\",\"value\":\"%s\"}}", uzovi);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Coverage\",\"status\":\"active\",\"beneficiary\":{\"reference\":\"Patient/%s\"},"
             "\"period\":{\"start\":\"%s\"},\"payor\":[%s]}",
             patient_id, start, payor);
    rh_create(who, "Coverage", body);
}

/* The body of a GRZ stay (profile stay-encounter) of the provider for the patient, admitted on date. */
static void stay_body(char *body, size_t size, const char *ura, const char *patient_id, const char *start)
{
    snprintf(body, size,
             "{\"resourceType\":\"Encounter\",\"meta\":{\"profile\":[\"https://fhirgw.nl/fhir/StructureDefinition/"
             "stay-encounter\"]},\"extension\":[{\"url\":\"https://fhirgw.nl/fhir/StructureDefinition/"
             "specialist-go-ahead\",\"valueDateTime\":\"%sT11:00:00+01:00\"}],\"status\":\"in-progress\","
             "\"class\":{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"IMP\"},"
             "\"type\":[{\"coding\":[{\"system\":\"https://fhirgw.nl/fhir/CodeSystem/care-kind\",\"code\":\"grz-cva\","
             "\"display\":\"GRZ CVA\"}]}],\"subject\":{\"reference\":\"Patient/%s\"},"
             "\"period\":{\"start\":\"%sT16:30:00+01:00\"},\"hospitalization\":{\"admitSource\":{\"coding\":[{"
             "\"system\":\"http://terminology.hl7.org/CodeSystem/admit-source\",\"code\":\"hosp-trans\"}]}},"
             "\"serviceProvider\":{\"reference\":\"Organization/ura-%s\"}}",
             start, patient_id, start, ura);
}

static const char *stay(const char *who, const char *ura, const char *patient_id, const char *start)
{
    char body[2048];
    stay_body(body, sizeof body, ura, patient_id, start);
    return rh_create(who, "Encounter", body);
}

/* The guide's plan-creating transaction, for this provider, patient and payor. */
static void plan(const char *who, const char *ura, const char *patient_id, const char *payor_ura)
{
    size_t len;
    char *text = files_read(IG_SOURCE_DIR "/fixtures/gzsp/Bundle-gzsp-plan-create-1.json", &len);
    cr_assert_not_null(text);
    fj_buf out = {0};
    char provider[32], pat[96], payor[32];
    snprintf(provider, sizeof provider, "ura-%s", ura);
    snprintf(pat, sizeof pat, "Patient/%s", patient_id);
    snprintf(payor, sizeof payor, "ura-%s", payor_ura);
    for (const char *p = text; *p;) {
        if (!strncmp(p, "ura-90000401", 12))
            fj_buf_puts(&out, provider), p += 12;
        else if (!strncmp(p, "ura-90000501", 12))
            fj_buf_puts(&out, payor), p += 12;
        else if (!strncmp(p, "Patient/patient-09", 18))
            fj_buf_puts(&out, pat), p += 18;
        else
            fj_buf_append(&out, p++, 1);
    }
    free(text);
    size_t n;
    char *body = fj_buf_take(&out, &n);
    rh_response r = rh_request(who, "POST", "/", body, NULL);
    cr_assert_eq(r.status, 200, "the plan transaction: %s", r.body);
    rh_response_free(&r);
    free(body);
}

static char *pseudonym(const char *bsn)
{
    static char hex[65];
    cr_assert(mpn_pseudonym(&key, bsn, strlen(bsn), hex));
    return hex;
}

/* GET as who, expecting 200 application/json; the page's JSON. */
static json_object *get_page(const char *who, const char *path)
{
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
    char type[128];
    cr_expect_str_eq(rh_header(&r, "Content-Type", type, sizeof type), "application/json; charset=utf-8");
    cr_expect_null(strstr(r.body, "Jantje"), "a name reached the insurer: %s", r.body);
    cr_expect_null(strstr(r.body, "1941-05-17"), "a birth date reached the insurer");
    cr_expect_null(strstr(r.body, "Dorpsstraat"), "an address reached the insurer");
    static const char *const bsns[] = {"999990081", "999990160", "999990238", "999990317", "999990391"};
    for (size_t i = 0; i < sizeof bsns / sizeof *bsns; i++)
        cr_expect_null(strstr(r.body, bsns[i]), "a BSN reached the insurer: %s", r.body);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    return o;
}

static size_t items(json_object *page)
{
    return json_object_array_length(json_object_object_get(page, "items"));
}

/* ---- $transform ---- */

Test(insurer, transform_with_a_shipped_map)
{
    /* a provider previews what the insurer will see of a stay: the Encounter and its Patient in a Bundle */
    const char *body =
        "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"source\",\"valueUri\":\"" MAPS
        "encounter-to-stay\"},{\"name\":\"content\",\"resource\":{\"resourceType\":\"Bundle\",\"type\":\"collection\","
        "\"entry\":[{\"resource\":{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"system\":"
        "\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"IMP\"},\"type\":[{\"coding\":[{\"system\":"
        "\"https://fhirgw.nl/fhir/CodeSystem/care-kind\",\"code\":\"grz-cva\"}]}],\"subject\":{\"reference\":"
        "\"Patient/p1\"},\"period\":{\"start\":\"2026-03-03T16:30:00+01:00\"},\"serviceProvider\":{\"reference\":"
        "\"Organization/ura-90000301\"}}},{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\",\"identifier\":"
        "[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999990081\"}]}}]}}]}";
    rh_response r = rh_request("elv-a", "POST", "/StructureMap/$transform", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "InsurerStay");
    cr_expect_str_eq(rh_str(o, "provider"), URA_A);
    cr_expect_str_eq(rh_str(o, "careKind"), "PR-GRZ");
    cr_expect_str_eq(rh_str(o, "patientPseudonym"), pseudonym("999990081"));
    cr_expect_null(strstr(r.body, "999990081"));
    json_object_put(o);
    rh_response_free(&r);

    /* the insurer turns its own record into FHIR (source as a query parameter, the record as the body) */
    const char *record = "{\"resourceType\":\"InsurerContract\",\"insurer\":\"9901\",\"provider\":\"" URA_A
                         "\",\"careKind\":\"PR-ELV\",\"contractYear\":2026,\"period\":{\"start\":\"2026-01-01\"},"
                         "\"status\":\"executed\"}";
    const char *hdr[] = {"Content-Type: application/json", NULL};
    r = rh_request(INSURER_A, "POST", "/StructureMap/$transform?source=" MAPS "insurer-to-contract", record, hdr);
    cr_assert_eq(r.status, 200, "%s", r.body);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "Contract");
    cr_expect_str_eq(rh_str(o, "subject.0.reference"), "Organization/ura-" URA_A);
    json_object_put(o);
    rh_response_free(&r);

    /* but the insurer is no pseudonym oracle: maps from FHIR are not for it */
    r = rh_request(INSURER_A, "POST", "/StructureMap/$transform", body, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);

    /* the CapabilityStatement lists $transform on StructureMap, and no /insurer view */
    r = rh_request("elv-a", "GET", "/metadata", NULL, NULL);
    cr_expect_not_null(strstr(r.body, "StructureMap-transform"));
    cr_expect_null(strstr(r.body, "insurer/"));
    rh_response_free(&r);
}

/* A stored StructureMap: the shipped contract map compiled to JSON by the gateway's own FML compiler. */
static char *stored_map_json(const char *url)
{
    size_t len;
    char *fml = files_read(MAPS_DIR "/contract-to-insurer.map", &len);
    cr_assert_not_null(fml);
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *sm = mps_compile(fml, len, "contract-to-insurer.map", &issues);
    cr_assert_not_null(sm);
    oo_list_free(&issues);
    free(fml);
    json_object_object_add(sm, "url", json_object_new_string(url));
    json_object_object_add(sm, "status", json_object_new_string("active"));
    char *text = strdup(json_object_to_json_string_ext(sm, JSON_C_TO_STRING_PLAIN));
    json_object_put(sm);
    return text;
}

Test(insurer, transform_with_a_stored_structure_map)
{
    char *sm = stored_map_json("https://elv-a.example/StructureMap/contract");
    const char *id = rh_create("elv-a", "StructureMap", sm);
    char path[128];
    snprintf(path, sizeof path, "/StructureMap/%s/$transform", id);
    const char *contract =
        "{\"resourceType\":\"Contract\",\"status\":\"executed\",\"subject\":[{\"reference\":\"Organization/ura-" URA_A
        "\"}],\"authority\":[{\"identifier\":{\"system\":\"" UZOVI_SYSTEM "\",\"value\":\"9901\"}}],"
        "\"applies\":{\"start\":\"2026-01-01\"},\"extension\":[{\"url\":\"https://fhirgw.nl/fhir/StructureDefinition/"
        "contract-year\",\"valuePositiveInt\":2026}],\"type\":{\"coding\":[{\"system\":\"https://fhirgw.nl/fhir/"
        "CodeSystem/care-kind\",\"code\":\"elv\"}]}}";
    rh_response r = rh_request("elv-a", "POST", path, contract, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "InsurerContract");
    cr_expect_str_eq(rh_str(o, "insurer"), "9901");
    cr_expect_str_eq(rh_str(o, "careKind"), "PR-ELV");
    json_object_put(o);
    rh_response_free(&r);
    /* by its url too */
    r = rh_request("elv-a", "POST", "/StructureMap/$transform?source=https://elv-a.example/StructureMap/contract",
                   contract, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    /* another provider does not learn it exists */
    r = rh_request("elv-b", "POST", path, contract, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    free(sm);
}

Test(insurer, transform_bad_input_is_an_outcome_and_stores_nothing)
{
    /* no such map */
    rh_response r = rh_request("elv-a", "POST", "/StructureMap/$transform?source=https://nowhere.example/map",
                               "{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"IMP\"}}",
                               NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    /* no source at all */
    r = rh_request("elv-a", "POST", "/StructureMap/$transform", "{\"resourceType\":\"Basic\",\"code\":{}}", NULL);
    rh_expect_outcome(&r, 400, "required");
    rh_response_free(&r);
    /* a source that does not fit the map: a Patient for the stay map */
    r = rh_request("elv-a", "POST", "/StructureMap/$transform?source=" MAPS "encounter-to-stay",
                   "{\"resourceType\":\"Patient\",\"active\":true}", NULL);
    cr_expect_eq(r.status, 422, "%s", r.body);
    cr_expect_not_null(strstr(r.body, "encounter-to-stay.map"), "the map is named: %s", r.body);
    rh_response_free(&r);
    /* a code with no mapping names the element */
    r = rh_request("elv-a", "POST", "/StructureMap/$transform?source=" MAPS "contract-to-insurer",
                   "{\"resourceType\":\"Contract\",\"status\":\"executed\",\"subject\":[{\"reference\":"
                   "\"Organization/ura-90000301\"}],\"authority\":[{\"identifier\":{\"system\":\"" UZOVI_SYSTEM
                   "\",\"value\":\"9901\"}}],\"type\":{\"coding\":[{\"system\":\"https://fhirgw.nl/fhir/CodeSystem/"
                   "care-kind\",\"code\":\"no-such-kind\"}]}}",
                   NULL);
    rh_expect_outcome(&r, 422, NULL);
    cr_expect_not_null(strstr(r.body, "no-such-kind"), "%s", r.body);
    cr_expect_not_null(strstr(r.body, "contract-to-insurer.map"), "%s", r.body);
    rh_response_free(&r);
    /* a stored map that does not load (a FHIRPath error): 422 naming it, and no result */
    char *sm = stored_map_json("https://elv-a.example/StructureMap/broken");
    char *bad = strstr(sm, "resolve()");
    cr_assert_not_null(bad);
    memcpy(bad, "resolve((", 9); /* an unbalanced parenthesis: the expression no longer parses */
    const char *id = rh_create("elv-a", "StructureMap", sm);
    char path[128];
    snprintf(path, sizeof path, "/StructureMap/%s/$transform", id);
    r = rh_request("elv-a", "POST", path, "{\"resourceType\":\"Contract\",\"status\":\"executed\"}", NULL);
    rh_expect_outcome(&r, 422, NULL);
    char name[96];
    snprintf(name, sizeof name, "StructureMap/%s", id);
    cr_expect_not_null(strstr(r.body, name), "the stored map is named: %s", r.body);
    rh_response_free(&r);
    free(sm);
    /* invalid JSON */
    r = rh_request("elv-a", "POST", "/StructureMap/$transform?source=" MAPS "encounter-to-stay", "{\"resource", NULL);
    rh_expect_outcome(&r, 400, NULL);
    rh_response_free(&r);
    /* $transform stores nothing: no Contract and no InsurerStay exists anywhere */
    r = rh_request("elv-a", "GET", "/Contract", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_null(json_object_object_get(o, "entry"), "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
}

/* ---- the views ---- */

/* Two providers, two insurers: each provider has a patient of each insurer, or (elv-b) one of A only. */
typedef struct landscape {
    char p1[80], p2[80], p3[80];
    char s1[80]; /* p1's stay */
} landscape;

static void build_landscape(landscape *l)
{
    snprintf(l->p1, sizeof l->p1, "%s", patient("elv-a", "999990081", "Aalders"));
    coverage("elv-a", l->p1, "9901", "2026-01-01");
    snprintf(l->p2, sizeof l->p2, "%s", patient("elv-a", "999990160", "Bakker"));
    coverage("elv-a", l->p2, "9902", "2026-01-01");
    snprintf(l->p3, sizeof l->p3, "%s", patient("elv-b", "999990238", "Claassen"));
    coverage("elv-b", l->p3, "9901", "2026-01-01");
    snprintf(l->s1, sizeof l->s1, "%s", stay("elv-a", URA_A, l->p1, "2026-03-03"));
    stay("elv-a", URA_A, l->p2, "2026-03-04");
    stay("elv-b", URA_B, l->p3, "2026-03-05");
}

Test(insurer, stays_are_scoped_to_each_insurers_insured)
{
    landscape l;
    build_landscape(&l);
    json_object *page = get_page(INSURER_A, "/insurer/stays?provider=" URA_A);
    cr_assert_eq(items(page), 1, "%s", json_object_to_json_string(page));
    cr_expect_str_eq(rh_str(page, "items.0.resourceType"), "InsurerStay");
    cr_expect_str_eq(rh_str(page, "items.0.patientPseudonym"), pseudonym("999990081"));
    cr_expect_str_eq(rh_str(page, "items.0.provider"), URA_A);
    cr_expect_null(json_object_object_get(page, "next"));
    json_object_put(page);
    /* what the insurer saw is in its audit trail, the stay and its patient */
    rh_response audit = rh_request(INSURER_A, "GET", "/AuditEvent?_count=50", NULL, NULL);
    cr_expect_eq(audit.status, 200, "%s", audit.body);
    char ref[128];
    snprintf(ref, sizeof ref, "Encounter/%s", l.s1);
    cr_expect_not_null(strstr(audit.body, ref), "the stay shown is audited: %.2000s", audit.body);
    snprintf(ref, sizeof ref, "Patient/%s", l.p1);
    cr_expect_not_null(strstr(audit.body, ref), "and its patient");
    rh_response_free(&audit);
    page = get_page(INSURER_B, "/insurer/stays?provider=" URA_A);
    cr_assert_eq(items(page), 1);
    cr_expect_str_eq(rh_str(page, "items.0.patientPseudonym"), pseudonym("999990160"));
    json_object_put(page);
    page = get_page(INSURER_A, "/insurer/stays?provider=" URA_B);
    cr_expect_eq(items(page), 1);
    cr_expect_str_eq(rh_str(page, "items.0.patientPseudonym"), pseudonym("999990238"));
    json_object_put(page);
    page = get_page(INSURER_B, "/insurer/stays?provider=" URA_B);
    cr_expect_eq(items(page), 0);
    json_object_put(page);
    /* from/to: a stay admitted on 2026-03-03 is not in April */
    page = get_page(INSURER_A, "/insurer/stays?provider=" URA_A "&from=2026-04-01");
    cr_expect_eq(items(page), 1, "an open stay overlaps April");
    json_object_put(page);
    page = get_page(INSURER_A, "/insurer/stays?provider=" URA_A "&to=2026-02-28");
    cr_expect_eq(items(page), 0);
    json_object_put(page);
    /* not for providers, not without a provider, not with unknown parameters */
    rh_response r = rh_request("elv-a", "GET", "/insurer/stays?provider=" URA_A, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request(INSURER_A, "GET", "/insurer/stays", NULL, NULL);
    rh_expect_outcome(&r, 400, "required");
    rh_response_free(&r);
    r = rh_request(INSURER_A, "GET", "/insurer/stays?provider=" URA_A "&bsn=999990081", NULL, NULL);
    rh_expect_outcome(&r, 400, NULL);
    rh_response_free(&r);
    r = rh_request(INSURER_A, "GET", "/insurer/stays?provider=" URA_A "&cursor=zz", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request(INSURER_A, "DELETE", "/insurer/stays", NULL, NULL);
    rh_expect_outcome(&r, 405, NULL);
    rh_response_free(&r);
    r = rh_request(INSURER_A, "GET", "/insurer/nothing", NULL, NULL);
    rh_expect_outcome(&r, 404, NULL);
    rh_response_free(&r);
    /* the insurer still gets no clinical FHIR */
    r = rh_request(INSURER_A, "GET", "/Encounter", NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
}

Test(insurer, plans_are_scoped_to_each_insurers_insured)
{
    landscape l;
    build_landscape(&l);
    plan("elv-a", URA_A, l.p1, "90000501");
    plan("elv-b", URA_B, l.p3, "90000401"); /* the plan's own Coverage: insured by B from 2026 */
    json_object *page = get_page(INSURER_A, "/insurer/plans?provider=" URA_A);
    cr_assert_eq(items(page), 1, "%s", json_object_to_json_string(page));
    cr_expect_str_eq(rh_str(page, "items.0.resourceType"), "InsurerTreatmentPlan");
    cr_expect_str_eq(rh_str(page, "items.0.patientPseudonym"), pseudonym("999990081"));
    cr_expect_null(json_object_object_get(page, "notMapped"), "%s", json_object_to_json_string(page));
    json_object_put(page);
    page = get_page(INSURER_B, "/insurer/plans?provider=" URA_A);
    cr_expect_eq(items(page), 0);
    json_object_put(page);
    page = get_page(INSURER_B, "/insurer/plans?provider=" URA_B);
    cr_expect_eq(items(page), 1, "%s", json_object_to_json_string(page));
    json_object_put(page);
}

/* ---- the compliance pull (issue #12) ---- */

Test(insurer, compliance_reports_are_scoped_paged_and_filtered)
{
    landscape l;
    build_landscape(&l);
    plan("elv-a", URA_A, l.p1, "90000501"); /* insured by A (the plan's Coverage too) */
    plan("elv-a", URA_A, l.p2, "90000401"); /* by B */
    json_object *page = get_page(INSURER_A, "/insurer/compliance?provider=" URA_A "&date=2026-04-01");
    cr_assert_eq(items(page), 1, "only the insurer's own insured: %s", json_object_to_json_string(page));
    cr_expect_str_eq(rh_str(page, "items.0.resourceType"), "InsurerComplianceReport");
    cr_expect_str_eq(rh_str(page, "items.0.checked"), "2026-04-01");
    cr_expect_str_eq(rh_str(page, "items.0.subject.type"), "CarePlan");
    cr_expect_null(json_object_object_get(page, "notMapped"), "%s", json_object_to_json_string(page));
    const char *status = rh_str(page, "items.0.status");
    cr_assert_not_null(status);
    char wanted[64], other[64];
    snprintf(wanted, sizeof wanted, "&status=%s", status);
    snprintf(other, sizeof other, "&status=%s", strcmp(status, "compliant") ? "compliant" : "non-compliant");
    json_object_put(page);
    char path[256];
    snprintf(path, sizeof path, "/insurer/compliance?provider=" URA_A "&date=2026-04-01%s", wanted);
    page = get_page(INSURER_A, path);
    cr_expect_eq(items(page), 1, "the status it has");
    json_object_put(page);
    snprintf(path, sizeof path, "/insurer/compliance?provider=" URA_A "&date=2026-04-01%s", other);
    page = get_page(INSURER_A, path);
    cr_expect_eq(items(page), 0, "not another status");
    json_object_put(page);
    page = get_page(INSURER_B, "/insurer/compliance?provider=" URA_A "&_count=1");
    cr_expect_eq(items(page), 1, "B's insured, by B: %s", json_object_to_json_string(page));
    json_object_put(page);
    rh_response r = rh_request(INSURER_A, "GET", "/insurer/compliance?provider=" URA_A "&status=fine", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request(INSURER_A, "GET", "/insurer/compliance?provider=" URA_A "&date=April", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request("elv-a", "GET", "/insurer/compliance?provider=" URA_A, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
}

Test(insurer, compliance_reports_stream_as_ndjson)
{
    landscape l;
    build_landscape(&l);
    /* one page of the stream (NDJSON_PAGE, 256); test_compliance_rest streams 600 plans across pages */
    enum { PLANS = 70 };
    for (int i = 0; i < PLANS; i++) /* half for A's insured, half for B's */
        plan("elv-a", URA_A, i % 2 ? l.p1 : l.p2, i % 2 ? "90000501" : "90000401");
    const char *const ndjson[] = {"Accept: application/x-ndjson", NULL};
    rh_response r = rh_request(INSURER_A, "GET", "/insurer/compliance?provider=" URA_A "&date=2026-04-01", NULL,
                               ndjson);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char type[128];
    cr_expect_str_eq(rh_header(&r, "Content-Type", type, sizeof type), "application/x-ndjson");
    size_t lines = 0;
    static char seen[PLANS][96];
    for (char *line = r.body, *end; line && *line; line = end + 1, lines++) {
        end = strchr(line, '\n');
        cr_assert_not_null(end, "every line ends in a newline");
        *end = 0;
        json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "line %zu is JSON: %.200s", lines, line);
        cr_expect_str_eq(rh_str(o, "resourceType"), "InsurerComplianceReport", "%.300s", line);
        cr_expect_str_eq(rh_str(o, "subject.type"), "CarePlan", "%.300s", line);
        for (size_t k = 0; k < lines && k < PLANS; k++)
            cr_expect_str_neq(seen[k], rh_str(o, "subject.reference"), "each plan once (line %zu)", lines);
        if (lines < PLANS)
            snprintf(seen[lines], sizeof seen[lines], "%s", rh_str(o, "subject.reference"));
        json_object_put(o);
        cr_expect_null(strstr(line, "999990081"), "no BSN in a report");
    }
    cr_expect_eq(lines, PLANS / 2, "one report per plan of A's insured (only those), across pages: %zu", lines);
    rh_response_free(&r);
    /* NDJSON nowhere else */
    r = rh_request(INSURER_A, "GET", "/insurer/plans?provider=" URA_A, NULL, ndjson);
    rh_expect_outcome(&r, 406, NULL);
    rh_response_free(&r);
}

Test(insurer, a_provider_record)
{
    size_t len;
    char *org = files_read(IG_SOURCE_DIR "/fixtures/parties/Organization-ura-90000301.json", &len);
    cr_assert_not_null(org);
    rh_response r = rh_request("elv-a", "PUT", "/Organization/ura-90000301", org, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    free(org);
    json_object *p = get_page(INSURER_B, "/insurer/providers/" URA_A);
    cr_expect_str_eq(rh_str(p, "resourceType"), "InsurerProvider");
    cr_expect_str_eq(rh_str(p, "ura"), URA_A);
    json_object_put(p);
    r = rh_request(INSURER_A, "GET", "/insurer/providers/90000999", NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    /* a malformed URA is the client's mistake, as in provider=; one digit too many names no other provider */
    const char *malformed[] = {"/insurer/providers/abc", "/insurer/providers/" URA_A "1"};
    for (size_t i = 0; i < 2; i++) {
        r = rh_request(INSURER_A, "GET", malformed[i], NULL, NULL);
        rh_expect_outcome(&r, 400, "invalid");
        cr_expect(strstr(r.body, "a URA of 8 digits"), "%s", r.body);
        rh_response_free(&r);
    }
    r = rh_request("elv-b", "GET", "/insurer/providers/" URA_A, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
}

/* ---- paging while a provider writes ---- */

/* The provider writing on its own thread: stays admitted in June, of A's insured and of B's. */
typedef struct writer {
    const char *insured_a, *insured_b;
    atomic_bool stop;
    atomic_int written, failed;
} writer;

static void *write_stays(void *arg)
{
    writer *w = arg;
    for (int i = 1; i <= 28 && !atomic_load(&w->stop); i++) {
        char body[2048], date[16];
        snprintf(date, sizeof date, "2026-06-%02d", i);
        stay_body(body, sizeof body, URA_A, i % 2 ? w->insured_a : w->insured_b, date);
        rh_response r = rh_request("elv-a", "POST", "/Encounter", body, NULL);
        atomic_fetch_add(r.status == 201 ? &w->written : &w->failed, 1);
        rh_response_free(&r);
    }
    return NULL;
}

Test(insurer, paging_by_cursor_while_a_provider_writes)
{
    char pid[80], other_id[80]; /* rh_create's buffer is overwritten by the next call */
    snprintf(pid, sizeof pid, "%s", patient("elv-a", "999990317", "Dekker"));
    coverage("elv-a", pid, "9901", "2026-01-01");
    snprintf(other_id, sizeof other_id, "%s", patient("elv-a", "999990391", "Evers"));
    coverage("elv-a", other_id, "9902", "2026-01-01");
    for (int i = 1; i <= 7; i++) { /* A's stays (February) interleaved with B's, which A's pages skip */
        char date[16];
        snprintf(date, sizeof date, "2026-02-%02d", i);
        stay("elv-a", URA_A, pid, date);
        stay("elv-a", URA_A, other_id, date);
    }
    json_object *first = get_page(INSURER_A, "/insurer/stays?provider=" URA_A "&_count=3");
    writer w = {pid, other_id, false, 0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, write_stays, &w), 0);
    char seen[64][40];
    size_t n = 0;
    json_object *page = first;
    for (int round = 0; page && round < 20; round++) {
        for (size_t i = 0; i < items(page); i++) {
            char at[64];
            snprintf(at, sizeof at, "items.%zu.patientPseudonym", i);
            cr_expect_str_eq(rh_str(page, at), pseudonym("999990317"), "only A's insured");
            snprintf(at, sizeof at, "items.%zu.admission", i);
            cr_assert_lt(n, 64);
            snprintf(seen[n++], sizeof seen[0], "%s", rh_str(page, at));
        }
        const char *next = rh_str(page, "next");
        char path[512];
        if (next)
            snprintf(path, sizeof path, "/insurer/stays?provider=" URA_A "&_count=3&cursor=%s", next);
        json_object_put(page);
        page = next ? get_page(INSURER_A, path) : NULL;
    }
    json_object_put(page);
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);
    rh_expect_valid_bodies();
    cr_expect_eq(atomic_load(&w.failed), 0);
    /* the first page's snapshot: each February stay exactly once, none written while paging */
    cr_expect_eq(n, 7, "%zu stays seen", n);
    for (int i = 1; i <= 7; i++) {
        char date[40];
        snprintf(date, sizeof date, "2026-02-%02dT16:30:00+01:00", i);
        size_t times = 0;
        for (size_t k = 0; k < n; k++)
            times += !strcmp(seen[k], date);
        cr_expect_eq(times, 1, "%s seen %zu times", date, times);
    }
    /* a fresh first page sees what was written meanwhile (A's half of it) */
    page = get_page(INSURER_A, "/insurer/stays?provider=" URA_A "&_count=50");
    cr_expect_eq(items(page), 7 + (size_t)(atomic_load(&w.written) + 1) / 2, "%s", json_object_to_json_string(page));
    json_object_put(page);
}

/* ---- contracts ---- */

Test(insurer, a_contract_posted_by_the_insurer_is_read_by_the_provider_as_fhir)
{
    const char *hdr[] = {"Content-Type: application/json", NULL};
    const char *record = "{\"resourceType\":\"InsurerContract\",\"insurer\":\"9901\",\"provider\":\"" URA_A
                         "\",\"careKind\":\"PR-ELV\",\"variants\":[\"PR-ELV-LC\"],\"contractYear\":2026,"
                         "\"period\":{\"start\":\"2026-01-01\",\"end\":\"2026-12-31\"},\"status\":\"executed\"}";
    rh_response r = rh_request(INSURER_A, "POST", "/insurer/contracts", record, hdr);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "Contract");
    json_object_put(o);
    rh_response_free(&r);
    /* the provider reads it as FHIR */
    r = rh_request("elv-a", "GET", "/Contract?subject=Organization/ura-" URA_A, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.0.resource.type.coding.0.code"), "elv", "%s", r.body);
    cr_expect_str_eq(rh_str(o, "entry.0.resource.authority.0.identifier.value"), "9901");
    json_object_put(o);
    rh_response_free(&r);
    /* another provider does not */
    r = rh_request("elv-b", "GET", "/Contract?subject=Organization/ura-" URA_A, NULL, NULL);
    o = rh_json(&r);
    cr_expect_null(json_object_object_get(o, "entry"), "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
    /* the insurer lists it in its model; the other insurer does not see it */
    json_object *page = get_page(INSURER_A, "/insurer/contracts?provider=" URA_A);
    cr_expect_eq(items(page), 1);
    cr_expect_str_eq(rh_str(page, "items.0.careKind"), "PR-ELV");
    cr_expect_str_eq(rh_str(page, "items.0.insurer"), "9901");
    json_object_put(page);
    page = get_page(INSURER_B, "/insurer/contracts?provider=" URA_A);
    cr_expect_eq(items(page), 0);
    json_object_put(page);
}

Test(insurer, a_bad_contract_stores_nothing)
{
    const char *hdr[] = {"Content-Type: application/json", NULL};
    /* a code with no mapping */
    rh_response r =
        rh_request(INSURER_A, "POST", "/insurer/contracts",
                   "{\"resourceType\":\"InsurerContract\",\"insurer\":\"9901\",\"provider\":\"" URA_A
                   "\",\"careKind\":\"PR-NOPE\",\"contractYear\":2026,\"period\":{\"start\":\"2026-01-01\"},"
                   "\"status\":\"executed\"}",
                   hdr);
    rh_expect_outcome(&r, 422, NULL);
    cr_expect_not_null(strstr(r.body, "insurer-to-contract.map"), "%s", r.body);
    rh_response_free(&r);
    /* another insurer's contract */
    r = rh_request(INSURER_B, "POST", "/insurer/contracts",
                   "{\"resourceType\":\"InsurerContract\",\"insurer\":\"9901\",\"provider\":\"" URA_A
                   "\",\"careKind\":\"PR-ELV\",\"contractYear\":2026,\"period\":{\"start\":\"2026-01-01\"},"
                   "\"status\":\"executed\"}",
                   hdr);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    /* not a contract at all, and not JSON */
    r = rh_request(INSURER_A, "POST", "/insurer/contracts", "{\"resourceType\":\"InsurerStay\"}", hdr);
    rh_expect_outcome(&r, 422, NULL);
    rh_response_free(&r);
    r = rh_request(INSURER_A, "POST", "/insurer/contracts", "[1,", hdr);
    rh_expect_outcome(&r, 400, NULL);
    rh_response_free(&r);
    /* a provider may not post the insurer's contracts */
    r = rh_request("elv-a", "POST", "/insurer/contracts", "{}", hdr);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    /* nothing was stored */
    r = rh_request(INSURER_A, "GET", "/Contract", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_null(json_object_object_get(o, "entry"), "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
}

/* insured.h as the compliance pull will use it: the rule by date, and enumerating an insurer's insured. */
static bool count_coverage(void *arg, const char *beneficiary, const st_resource *coverage)
{
    (void)coverage;
    cr_expect_not_null(beneficiary);
    (*(size_t *)arg)++;
    return true;
}

Test(insurer, insured_rule_and_enumeration)
{
    landscape l;
    build_landscape(&l);
    ins_facts f = {rh.store, rh.orgs};
    char ref[96];
    st_error err;
    int64_t march = 1772539200000; /* 2026-03-03T12:00Z */
    snprintf(ref, sizeof ref, "Patient/%s", l.p1);
    cr_expect_eq(ins_is_insured(&f, ref, "9901", march, &err), INS_YES, "by the payor's directory entry");
    cr_expect_eq(ins_is_insured(&f, ref, "9902", march, &err), INS_NO);
    cr_expect_eq(ins_is_insured(&f, ref, "9901", 1735689600000 /* 2025-01-01 */, &err), INS_NO, "before it starts");
    snprintf(ref, sizeof ref, "Patient/%s", l.p2);
    cr_expect_eq(ins_is_insured(&f, ref, "9902", march, &err), INS_YES, "by the payor's UZOVI identifier");
    cr_expect_eq(ins_is_insured(&f, "Patient/nobody", "9901", march, &err), INS_NO);
    cr_expect_eq(ins_is_insured(&f, "Organization/x", "9901", march, &err), INS_NO);
    size_t a = 0, b = 0;
    cr_expect_eq(ins_each_coverage(&f, "9901", count_coverage, &a, &err), ST_OK);
    cr_expect_eq(ins_each_coverage(&f, "9902", count_coverage, &b, &err), ST_OK);
    cr_expect_eq(a, 2);
    cr_expect_eq(b, 1);
}

/* An insurer the registry gives no UZOVI sees no insured at all; what clients write does not decide it. */
Test(insurer, no_uzovi_in_the_registry_no_view)
{
    landscape l;
    build_landscape(&l);
    register_insurers("insurer,uzovi-9901", "insurer");
    rh_response r = rh_request(INSURER_B, "GET", "/insurer/stays?provider=" URA_A, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    json_object *page = get_page(INSURER_A, "/insurer/stays?provider=" URA_A);
    cr_expect_eq(items(page), 1);
    json_object_put(page);
}
