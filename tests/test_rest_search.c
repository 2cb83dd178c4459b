/*
 * tests/test_rest_search.c — search as FHIR clients (HAPI, Firely) use it,
 * end to end: the real server over mutual TLS (tests/rest_harness.h), every
 * response body validated by the project's validator.
 *
 * Covers _count=0 (search and history), chained parameters and _has under
 * the caller's authorisation, stable paging while others write, quantity and
 * number ranges, references to the server's own base, _include and
 * _revinclude, and what the CapabilityStatement says about them; pages cut
 * by their byte limit (page_max_bytes) and walked whole, and a huge page
 * streamed while its worker serves others.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/rest_harness.h"

/*
 * Referential integrity off: these tests build data no client could write
 * today (an Observation of hospital-b pointing at hospital-a's Patient, as
 * data from before, or a grant that ended, leaves behind) to prove that
 * chains, _has and includes never reach through what the caller may not read.
 */
static void setup_with_dangling_references(void)
{
    rh_options opt = {0};
    opt.allow_dangling = true;
    rh_setup_with(&opt);
}

TestSuite(rest_search, .init = setup_with_dangling_references, .fini = rh_teardown, .timeout = 180);

/* GET path as who, expecting 200; returns the Bundle (caller puts it). */
static json_object *get_bundle(const char *who, const char *path)
{
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld %.*s", path, r.status, (int)(r.len > 400 ? 400 : r.len),
                 r.body ? r.body : "");
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    return o;
}

static int total_of(json_object *bundle)
{
    const char *t = rh_str(bundle, "total");
    return t ? atoi(t) : -1;
}

/* The url of the link with this relation, or NULL. */
static const char *link_of(json_object *bundle, const char *relation)
{
    json_object *links = json_object_object_get(bundle, "link");
    for (size_t i = 0; links && i < json_object_array_length(links); i++) {
        json_object *l = json_object_array_get_idx(links, i);
        if (!strcmp(json_object_get_string(json_object_object_get(l, "relation")), relation))
            return json_object_get_string(json_object_object_get(l, "url"));
    }
    return NULL;
}

/* Entries with this search.mode ("match", "include", "outcome"). */
static size_t entries_with_mode(json_object *bundle, const char *mode)
{
    json_object *entries = json_object_object_get(bundle, "entry");
    size_t n = 0;
    for (size_t i = 0; entries && i < json_object_array_length(entries); i++) {
        const char *m = rh_str(json_object_array_get_idx(entries, i), "search.mode");
        n += m && !strcmp(m, mode);
    }
    return n;
}

/* Is there an entry of this mode whose resource is type/id? */
static bool has_entry(json_object *bundle, const char *mode, const char *type, const char *id)
{
    json_object *entries = json_object_object_get(bundle, "entry");
    for (size_t i = 0; entries && i < json_object_array_length(entries); i++) {
        json_object *e = json_object_array_get_idx(entries, i);
        const char *m = rh_str(e, "search.mode"), *t = rh_str(e, "resource.resourceType"),
                   *d = rh_str(e, "resource.id");
        if (m && t && d && !strcmp(m, mode) && !strcmp(t, type) && !strcmp(d, id))
            return true;
    }
    return false;
}

/* The path part (from the first '/' after the host) of a link. */
static const char *path_of(const char *url)
{
    const char *p = strstr(url, "://");
    return p ? strchr(p + 3, '/') : url;
}

/* ---- 1. _count=0 ---- */

Test(rest_search, count_zero_is_the_total_only_without_next_link)
{
    for (int i = 0; i < 3; i++)
        rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Nul\"}]}");
    json_object *o = get_bundle("hospital-a", "/Patient?family=nul&_count=0");
    cr_expect_eq(total_of(o), 3);
    cr_expect_null(json_object_object_get(o, "entry"));
    cr_expect_null(link_of(o, "next"), "a next link equal to self makes clients page forever");
    json_object_put(o);

    o = get_bundle("hospital-a", "/Patient/_history?_count=0");
    cr_expect_eq(total_of(o), 3);
    cr_expect_null(json_object_object_get(o, "entry"));
    cr_expect_null(link_of(o, "next"));
    json_object_put(o);
}

/* ---- 4. number and quantity ranges ---- */

static void observation_quantity(const char *value, const char *system, const char *code)
{
    char body[600];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"dose\"},"
             "\"valueQuantity\":{\"value\":%s,\"system\":\"%s\",\"code\":\"%s\"}}",
             value, system, code);
    rh_create("hospital-a", "Observation", body);
}

Test(rest_search, quantity_units_and_half_open_ranges)
{
    observation_quantity("5.35", "http://unitsofmeasure.org", "mg");
    observation_quantity("5.45", "http://unitsofmeasure.org", "mg");
    observation_quantity("5.4", "http://example.org/units", "mg");
    json_object *o = get_bundle("hospital-a", "/Observation?value-quantity=5.4%7Chttp://unitsofmeasure.org%7Cmg");
    cr_expect_eq(total_of(o), 1, "5.4 is [5.35, 5.45) and the unit system counts");
    cr_expect_str_eq(rh_str(o, "entry.0.resource.valueQuantity.value"), "5.35");
    json_object_put(o);
    o = get_bundle("hospital-a", "/Observation?value-quantity=5.4%7C%7Cmg");
    cr_expect_eq(total_of(o), 2, "no system: any system with that code");
    json_object_put(o);
    o = get_bundle("hospital-a", "/Observation?value-quantity=5.45%7Chttp://unitsofmeasure.org%7Cmg");
    cr_expect_eq(total_of(o), 1);
    json_object_put(o);

    const char *fmt = "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":"
                      "\"Patient/p\"},\"prediction\":[{\"probabilityDecimal\":%s}]}";
    char body[300];
    snprintf(body, sizeof body, fmt, "0.35");
    rh_create("hospital-a", "RiskAssessment", body);
    snprintf(body, sizeof body, fmt, "0.45");
    rh_create("hospital-a", "RiskAssessment", body);
    o = get_bundle("hospital-a", "/RiskAssessment?probability=0.4");
    cr_expect_eq(total_of(o), 1, "number: 0.4 is [0.35, 0.45)");
    json_object_put(o);
}

/* ---- 5. references to our own base ---- */

Test(rest_search, absolute_references_to_our_own_base_are_relative)
{
    const char *pid = rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}");
    char p[80], body[400], path[300];
    snprintf(p, sizeof p, "%s", pid);
    const char *fmt = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
                      "\"subject\":{\"reference\":\"%s%s\"}}";
    snprintf(body, sizeof body, fmt, "https://127.0.0.1/Patient/", p);
    rh_create("hospital-a", "Observation", body);
    snprintf(body, sizeof body, fmt, "Patient/", p);
    rh_create("hospital-a", "Observation", body);
    snprintf(body, sizeof body, fmt, "https://other.example.org/fhir/Patient/", p);
    rh_create("hospital-a", "Observation", body);

    snprintf(path, sizeof path, "/Observation?subject=Patient/%s", p);
    json_object *o = get_bundle("hospital-a", path);
    cr_expect_eq(total_of(o), 2, "our base counts as relative; another server's Patient is not ours");
    json_object_put(o);
    snprintf(path, sizeof path, "/Observation?subject=https://127.0.0.1/Patient/%s", p);
    o = get_bundle("hospital-a", path);
    cr_expect_eq(total_of(o), 2);
    json_object_put(o);
    snprintf(path, sizeof path, "/Observation?subject=https://other.example.org/fhir/Patient/%s", p);
    o = get_bundle("hospital-a", path);
    cr_expect_eq(total_of(o), 1, "another server's reference matches by its URL");
    json_object_put(o);

    /* a Task addressed to elv-a's Organization by its absolute URL reaches elv-a as well */
    char org[80], task[600];
    snprintf(org, sizeof org, "%s",
             rh_create("elv-a", "Organization",
                       "{\"resourceType\":\"Organization\",\"identifier\":[{\"system\":"
                       "\"http://fhir.nl/fhir/NamingSystem/ura\",\"value\":\"90000301\"}],\"name\":\"ELV A\"}"));
    snprintf(task, sizeof task,
             "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"owner\":{\"reference\":"
             "\"https://127.0.0.1/Organization/%s\"}}",
             org);
    rh_create("hospital-a", "Task", task);
    o = get_bundle("elv-a", "/Task?status=requested");
    cr_expect_eq(total_of(o), 1, "the receiver's access tag comes from our own absolute URL too");
    json_object_put(o);
    snprintf(path, sizeof path, "/Task?owner=Organization/%s", org);
    o = get_bundle("elv-a", path);
    cr_expect_eq(total_of(o), 1);
    json_object_put(o);
}

/* ---- 2. chains and _has ---- */

static char org_id[80], pa[80], pb[80];

/* A directory Organization; Patient pa (hospital-a) and pb (hospital-b), both "Chainy"; Observations of
 * hospital-a about each (pb is hospital-b's: hospital-a may not see it). */
static void chain_fixture(void)
{
    snprintf(org_id, sizeof org_id, "%s",
             rh_create("hospital-a", "Organization", "{\"resourceType\":\"Organization\",\"name\":\"Zorghuis\"}"));
    char body[500];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Chainy\"}],"
             "\"managingOrganization\":{\"reference\":\"Organization/%s\"}}",
             org_id);
    snprintf(pa, sizeof pa, "%s", rh_create("hospital-a", "Patient", body));
    snprintf(pb, sizeof pb, "%s",
             rh_create("hospital-b", "Patient", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Chainy\"}]}"));
    const char *fmt = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
                      "\"http://loinc.org\",\"code\":\"1234-5\"}]},\"subject\":{\"reference\":\"Patient/%s\"}}";
    snprintf(body, sizeof body, fmt, pa);
    rh_create("hospital-a", "Observation", body);
    snprintf(body, sizeof body, fmt, pb);
    rh_create("hospital-a", "Observation", body);
}

Test(rest_search, chains_follow_references_the_caller_may_read)
{
    chain_fixture();
    const char *strict[] = {"Prefer: handling=strict", NULL};
    const char *paths[] = {"/Observation?subject:Patient.name=chainy", "/Observation?subject.name=chainy",
                           "/Observation?patient.family=chainy", "/Observation?subject:Patient.organization.name=zorg"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        json_object *o = get_bundle("hospital-a", paths[i]);
        cr_expect_eq(total_of(o), 1, "%s: only through the Patient hospital-a may read", paths[i]);
        json_object_put(o);
        rh_response r = rh_request("hospital-a", "GET", paths[i], NULL, strict);
        cr_expect_eq(r.status, 200, "%s under handling=strict", paths[i]);
        o = rh_json(&r);
        cr_expect_eq(total_of(o), 1, "%s under handling=strict", paths[i]);
        json_object_put(o);
        rh_response_free(&r);
    }
    json_object *o = get_bundle("hospital-a", "/Observation?subject:Patient.name=nobody");
    cr_expect_eq(total_of(o), 0);
    json_object_put(o);
    rh_response r = rh_request("hospital-a", "GET", "/Observation?subject:Patient.nosuch=x", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Observation?subject:Nonsense.name=x", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Observation?code.name=x", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
}

Test(rest_search, has_follows_references_backwards_the_caller_may_read)
{
    chain_fixture();
    json_object *o = get_bundle("hospital-a", "/Patient?_has:Observation:patient:code=1234-5");
    cr_expect_eq(total_of(o), 1);
    cr_expect(has_entry(o, "match", "Patient", pa));
    json_object_put(o);
    /* hospital-b's Patient is pointed at only by hospital-a's Observation, which hospital-b may not read */
    o = get_bundle("hospital-b", "/Patient?_has:Observation:patient:code=1234-5");
    cr_expect_eq(total_of(o), 0, "_has must not match through a resource the caller cannot see");
    json_object_put(o);
    o = get_bundle("hospital-b", "/Patient?name=chainy");
    cr_expect_eq(total_of(o), 1);
    json_object_put(o);
    /* nested: the Organization of a Patient some Observation is about */
    o = get_bundle("hospital-a", "/Organization?_has:Patient:organization:_has:Observation:patient:code=1234-5");
    cr_expect_eq(total_of(o), 1);
    cr_expect(has_entry(o, "match", "Organization", org_id));
    json_object_put(o);
    o = get_bundle("hospital-b", "/Organization?_has:Patient:organization:_has:Observation:patient:code=1234-5");
    cr_expect_eq(total_of(o), 0, "the Patient is hospital-a's");
    json_object_put(o);
    rh_response r = rh_request("hospital-a", "GET", "/Patient?_has:Observation:code=1", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
}

/* ---- 3. stable paging while others write ---- */

#define TASK_FMT "{\"resourceType\":\"Task\",%s\"status\":\"requested\",\"intent\":\"order\",\"description\":\"%s\"}"

static volatile bool writers_stop;

/* Keeps writing requested Tasks as `who` (new ones) until told to stop. */
static void *task_writer(void *arg)
{
    const char *who = arg;
    char body[300];
    for (int i = 0; !writers_stop && i < 200; i++) {
        snprintf(body, sizeof body, TASK_FMT, "", "written while paging");
        rh_response r = rh_request(who, "POST", "/Task", body, NULL);
        cr_expect_eq(r.status, 201);
        rh_response_free(&r);
    }
    return NULL;
}

/* The ids of the match entries of a page, appended to ids (n of them). */
static void collect_ids(json_object *bundle, char ids[][80], size_t *n, size_t max)
{
    json_object *entries = json_object_object_get(bundle, "entry");
    for (size_t i = 0; entries && i < json_object_array_length(entries) && *n < max; i++) {
        json_object *e = json_object_array_get_idx(entries, i);
        const char *mode = rh_str(e, "search.mode");
        if (mode && !strcmp(mode, "match"))
            snprintf(ids[(*n)++], 80, "%s", rh_str(e, "resource.id"));
    }
}

static bool contains(char ids[][80], size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ids[i], id))
            return true;
    return false;
}

Test(rest_search, paging_is_stable_while_others_write)
{
    enum { INITIAL = 20 };
    char initial[INITIAL][80];
    char body[300];
    for (int i = 0; i < INITIAL; i++) {
        snprintf(body, sizeof body, TASK_FMT, "", "initial");
        snprintf(initial[i], sizeof initial[i], "%s", rh_create("hospital-a", "Task", body));
    }
    json_object *page = get_bundle("hospital-a", "/Task?status=requested&_count=4");
    cr_expect_eq(total_of(page), INITIAL);
    cr_assert_not_null(link_of(page, "first"));
    cr_expect_null(link_of(page, "previous"));

    writers_stop = false;
    pthread_t same, other;
    pthread_create(&same, NULL, task_writer, "hospital-a");
    pthread_create(&other, NULL, task_writer, "hospital-b");

    static char seen[400][80];
    size_t n = 0;
    collect_ids(page, seen, &n, 400);
    char second_page_path[600] = "";
    for (int pages = 1; pages < 50; pages++) {
        const char *next = link_of(page, "next");
        if (!next)
            break;
        /* meanwhile hospital-a also updates a Task not seen yet: with offsets over live data it would
         * jump to the top and be missed */
        for (int i = INITIAL - 1; i >= 0; i--)
            if (!contains(seen, n, initial[i])) {
                char path[120];
                snprintf(path, sizeof path, "/Task/%s", initial[i]);
                snprintf(body, sizeof body, TASK_FMT, "", "updated while paging");
                char with_id[400];
                snprintf(with_id, sizeof with_id, "{\"resourceType\":\"Task\",\"id\":\"%s\",%s", initial[i],
                         body + strlen("{\"resourceType\":\"Task\","));
                rh_response r = rh_request("hospital-a", "PUT", path, with_id, NULL);
                cr_expect_eq(r.status, 200);
                rh_response_free(&r);
                break;
            }
        char path[600];
        snprintf(path, sizeof path, "%s", path_of(next));
        if (pages == 1)
            snprintf(second_page_path, sizeof second_page_path, "%s", path);
        json_object_put(page);
        page = get_bundle("hospital-a", path);
        cr_expect_eq(total_of(page), INITIAL, "the total as of the first page");
        collect_ids(page, seen, &n, 400);
    }
    json_object_put(page);
    writers_stop = true;
    pthread_join(same, NULL);
    pthread_join(other, NULL);

    cr_expect_eq(n, INITIAL, "every page together: the Tasks that existed at page 1, once each");
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            cr_expect_str_neq(seen[i], seen[k], "a duplicate across pages");
    for (int i = 0; i < INITIAL; i++)
        cr_expect(contains(seen, n, initial[i]), "missed %s", initial[i]);

    /* the second page's previous link leads back to the first page */
    cr_assert(second_page_path[0]);
    page = get_bundle("hospital-a", second_page_path);
    const char *prev = link_of(page, "previous");
    cr_assert_not_null(prev);
    json_object *back = get_bundle("hospital-a", path_of(prev));
    size_t m = 0;
    static char first_ids[10][80];
    collect_ids(back, first_ids, &m, 10);
    cr_expect_eq(m, 4);
    for (size_t i = 0; i < m; i++)
        cr_expect_str_eq(first_ids[i], seen[i], "previous of page 2 is page 1, in order");
    cr_expect_null(link_of(back, "previous"));
    json_object_put(back);
    json_object_put(page);
}

/* ---- 6. _include and _revinclude ---- */

static const char *careplan_about(const char *who, const char *patient)
{
    char body[300];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\",\"subject\":{\"reference\":"
             "\"Patient/%s\"}}",
             patient);
    return rh_create(who, "CarePlan", body);
}

Test(rest_search, include_and_revinclude_leave_out_what_the_caller_may_not_read)
{
    chain_fixture();
    char cp[80], cp2[80];
    snprintf(cp, sizeof cp, "%s", careplan_about("hospital-a", pa));
    snprintf(cp2, sizeof cp2, "%s", careplan_about("hospital-a", pb));

    json_object *o = get_bundle("hospital-a", "/CarePlan?_include=CarePlan:subject");
    cr_expect_eq(total_of(o), 2, "included resources do not count in the total");
    cr_expect_eq(entries_with_mode(o, "match"), 2);
    cr_expect_eq(entries_with_mode(o, "include"), 1, "hospital-b's Patient is never included");
    cr_expect(has_entry(o, "include", "Patient", pa));
    cr_expect_not(has_entry(o, "include", "Patient", pb));
    json_object_put(o);

    o = get_bundle("hospital-a", "/CarePlan?_include=CarePlan:subject:Practitioner");
    cr_expect_eq(entries_with_mode(o, "include"), 0, "the target type narrows");
    json_object_put(o);

    o = get_bundle("hospital-a", "/Patient?_revinclude=Observation:subject");
    cr_expect_eq(entries_with_mode(o, "match"), 1);
    cr_expect_eq(entries_with_mode(o, "include"), 1, "the Observation about pa");
    json_object_put(o);
    o = get_bundle("hospital-b", "/Patient?_revinclude=Observation:subject&_revinclude=CarePlan:subject");
    cr_expect(has_entry(o, "match", "Patient", pb));
    cr_expect_eq(entries_with_mode(o, "include"), 0, "hospital-a's Observation and CarePlan about pb stay hidden");
    json_object_put(o);

    /* :iterate follows from the included Patient to its Organization; * follows every reference */
    char path[300];
    snprintf(path, sizeof path, "/CarePlan?_id=%s&_include=CarePlan:subject&_include:iterate=Patient:organization", cp);
    o = get_bundle("hospital-a", path);
    cr_expect(has_entry(o, "include", "Patient", pa));
    cr_expect(has_entry(o, "include", "Organization", org_id));
    json_object_put(o);
    snprintf(path, sizeof path, "/CarePlan?_id=%s&_include=CarePlan:subject&_include=Patient:organization", cp);
    o = get_bundle("hospital-a", path);
    cr_expect_not(has_entry(o, "include", "Organization", org_id), "without :iterate only from the matches");
    json_object_put(o);
    snprintf(path, sizeof path, "/Observation?subject=Patient/%s&_include=*", pa);
    o = get_bundle("hospital-a", path);
    cr_expect_eq(entries_with_mode(o, "include"), 1, "subject and patient point at pa: included once");
    json_object_put(o);

    rh_response r = rh_request("hospital-a", "GET", "/CarePlan?_include=CarePlan:status", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
}

Test(rest_search, included_resources_are_bounded)
{
    const char *pid = rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}");
    char p[80];
    snprintf(p, sizeof p, "%s", pid);
    size_t cap = 110 * 300;
    char *bundle = malloc(cap);
    size_t len = (size_t)snprintf(bundle, cap, "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[");
    for (int i = 0; i < 101; i++)
        len += (size_t)snprintf(bundle + len, cap - len,
                                "%s{\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":"
                                "{\"text\":\"x\"},\"subject\":{\"reference\":\"Patient/%s\"}},\"request\":{\"method\":"
                                "\"POST\",\"url\":\"Observation\"}}",
                                i ? "," : "", p);
    snprintf(bundle + len, cap - len, "]}");
    rh_response r = rh_request("hospital-a", "POST", "/", bundle, NULL);
    cr_assert_eq(r.status, 200);
    rh_response_free(&r);
    free(bundle);
    char path[200];
    snprintf(path, sizeof path, "/Patient?_id=%s&_revinclude=Observation:subject", p);
    json_object *o = get_bundle("hospital-a", path);
    cr_expect_eq(entries_with_mode(o, "include"), 100, "at most 100 included resources per page");
    cr_expect_eq(entries_with_mode(o, "outcome"), 1, "and a warning that the rest were left out");
    json_object_put(o);
}

/* ---- 7. the CapabilityStatement says so ---- */

Test(rest_search, capability_statement_states_includes_chains_and_has)
{
    json_object *cs = get_bundle("hospital-a", "/metadata");
    json_object *resources = json_object_object_get(json_object_array_get_idx(json_object_object_get(cs, "rest"), 0),
                                                    "resource");
    json_object *careplan = NULL, *patient = NULL;
    for (size_t i = 0; i < json_object_array_length(resources); i++) {
        json_object *r = json_object_array_get_idx(resources, i);
        if (!strcmp(rh_str(r, "type"), "CarePlan"))
            careplan = r;
        if (!strcmp(rh_str(r, "type"), "Patient"))
            patient = r;
    }
    cr_assert_not_null(careplan);
    cr_assert_not_null(patient);
    const char *text = json_object_to_json_string(careplan);
    cr_expect_not_null(strstr(text, "\"searchInclude\""));
    cr_expect_not_null(strstr(text, "\"CarePlan:subject\""));
    cr_expect_not_null(strstr(text, "\"_has\""));
    cr_expect_not_null(strstr(text, "Chained"));
    text = json_object_to_json_string(patient);
    cr_expect_not_null(strstr(text, "\"searchRevInclude\""));
    cr_expect_not_null(strstr(text, "\"Observation:patient\""));
    json_object_put(cs);
}

Test(rest_search, insurers_chain_through_no_clinical_resource)
{
    /* the insurer's own directory entry (published by the gateway, as serve does), and its Coverage */
    char org[80] = "ura-90000501", cov[80], body[700];
    rh_publish_directory();
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Coverage\",\"status\":\"active\",\"beneficiary\":{\"reference\":\"Patient/x\"},"
             "\"payor\":[{\"reference\":\"Organization/%s\"}]}",
             org);
    snprintf(cov, sizeof cov, "%s", rh_create("insurer", "Coverage", body));
    /* a hospital's Task about the Coverage, addressed to the insurer: tagged with its URA, yet clinical */
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"focus\":{\"reference\":"
             "\"Coverage/%s\"},\"owner\":{\"reference\":\"Organization/%s\"}}",
             cov, org);
    rh_create("hospital-a", "Task", body);

    json_object *o = get_bundle("insurer", "/Coverage?payor.name=insurer");
    cr_expect_eq(total_of(o), 1, "through the directory");
    json_object_put(o);
    o = get_bundle("insurer", "/Coverage?_has:Task:focus:status=requested");
    cr_expect_eq(total_of(o), 0, "insurers read no Task, so they cannot match through one either");
    json_object_put(o);
    o = get_bundle("insurer", "/Coverage?_revinclude=Task:focus&_include=Coverage:payor");
    cr_expect_eq(entries_with_mode(o, "include"), 1, "the payor Organization, never the Task");
    cr_expect(has_entry(o, "include", "Organization", org));
    json_object_put(o);
}

/* ---- 9. pages bounded in bytes, streamed ---- */

/* A page byte limit of a few resources' worth, so pages are cut long before _count. */
#define SMALL_PAGE_BYTES (6u * 1024)

static void setup_small_pages(void)
{
    rh_options o = {.page_max_bytes = SMALL_PAGE_BYTES};
    rh_setup_with(&o);
}

TestSuite(rest_pages, .init = setup_small_pages, .fini = rh_teardown, .timeout = 180);

/* A Patient of about 1 KiB, findable by family "Bulk". */
static const char *bulky_patient(void)
{
    static char body[1400];
    char pad[1001];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Bulk\",\"text\":\"%s\"}]}", pad);
    return rh_create("hospital-a", "Patient", body);
}

/* Does the Bundle say (an informational outcome entry) that the page was cut by its byte limit? */
static bool says_cut(json_object *bundle)
{
    json_object *entries = json_object_object_get(bundle, "entry");
    for (size_t i = 0; entries && i < json_object_array_length(entries); i++) {
        json_object *e = json_object_array_get_idx(entries, i);
        const char *m = rh_str(e, "search.mode"), *code = rh_str(e, "resource.issue.0.code");
        if (m && !strcmp(m, "outcome") && code && !strcmp(code, "informational"))
            return true;
    }
    return false;
}

/* Follow next links from path, collecting the match ids; every page is cut and says so, except maybe the last.
 * While paging, one Patient not seen yet is updated per page (it must keep its place: the snapshot). */
static size_t walk_pages(const char *path, char ids[][80], size_t max, int expect_total, char created[][80],
                         size_t created_n)
{
    size_t n = 0;
    char next_path[800];
    snprintf(next_path, sizeof next_path, "%s", path);
    for (int pages = 0; pages < 100 && next_path[0]; pages++) {
        json_object *page = get_bundle("hospital-a", next_path);
        cr_expect_eq(total_of(page), expect_total, "the total as of the first page");
        size_t before = n;
        collect_ids(page, ids, &n, max);
        cr_expect_gt(n, before, "every page has at least one match");
        cr_expect_leq(n - before, SMALL_PAGE_BYTES / 1000, "a page stays within its byte limit");
        const char *next = link_of(page, "next");
        if (next)
            cr_expect(says_cut(page), "a page cut short says so: %s", next_path);
        snprintf(next_path, sizeof next_path, "%s", next ? path_of(next) : "");
        json_object_put(page);
        for (size_t i = 0; i < created_n; i++)
            if (!contains(ids, n, created[i])) {
                char with_id[1500], target[120];
                snprintf(target, sizeof target, "/Patient/%.79s", created[i]);
                snprintf(with_id, sizeof with_id,
                         "{\"resourceType\":\"Patient\",\"id\":\"%.79s\",\"name\":[{\"family\":\"Bulk\"}]}",
                         created[i]);
                rh_response r = rh_request("hospital-a", "PUT", target, with_id, NULL);
                cr_expect_eq(r.status, 200);
                rh_response_free(&r);
                break;
            }
    }
    return n;
}

static void expect_each_once(char ids[][80], size_t n, char created[][80], size_t created_n)
{
    cr_expect_eq(n, created_n, "every page together: each match once");
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            cr_expect_str_neq(ids[i], ids[k], "a duplicate across pages");
    for (size_t i = 0; i < created_n; i++)
        cr_expect(contains(ids, n, created[i]), "missed %s", created[i]);
}

Test(rest_pages, pages_cut_by_bytes_continue_after_the_last_entry)
{
    enum { N = 30 };
    static char created[N][80], ids[200][80];
    for (int i = 0; i < N; i++)
        snprintf(created[i], sizeof created[i], "%s", bulky_patient());

    /* default order: keyset cursors from the last entry written */
    size_t n = walk_pages("/Patient?family=bulk&_count=50", ids, 200, N, created, N);
    expect_each_once(ids, n, created, N);

    /* an explicit _sort pages by offset: the next offset is the entries written, not _count */
    n = walk_pages("/Patient?family=bulk&_count=50&_sort=_id", ids, 200, N, created, N);
    expect_each_once(ids, n, created, N);

    /* a single resource larger than the limit still makes a page of one */
    json_object *one = get_bundle("hospital-a", "/Patient?family=bulk&_count=1");
    cr_expect_eq(entries_with_mode(one, "match"), 1);
    json_object_put(one);
}

Test(rest_pages, history_pages_cut_by_bytes_list_every_version_once)
{
    enum { N = 12 };
    for (int i = 0; i < N; i++)
        bulky_patient();
    static char seen[100][120];
    size_t n = 0;
    char path[800] = "/Patient/_history?_count=50";
    int pages_read = 0;
    for (int pages = 0; pages < 50 && path[0]; pages++) {
        json_object *page = get_bundle("hospital-a", path);
        cr_expect_eq(total_of(page), N);
        json_object *entries = json_object_object_get(page, "entry");
        size_t versions = 0;
        for (size_t i = 0; entries && i < json_object_array_length(entries); i++) {
            json_object *e = json_object_array_get_idx(entries, i);
            const char *id = rh_str(e, "resource.id"), *etag = rh_str(e, "response.etag");
            if (!id || !etag)
                continue; /* the outcome entry */
            cr_assert_lt(n, 100);
            snprintf(seen[n++], sizeof seen[0], "%s %s", id, etag);
            versions++;
        }
        cr_expect_geq(versions, 1);
        cr_expect_leq(versions, SMALL_PAGE_BYTES / 1000, "a page stays within its byte limit");
        const char *next = link_of(page, "next");
        cr_expect_not(says_cut(page), "a history Bundle has no search entries (bdl-2)");
        snprintf(path, sizeof path, "%s", next ? path_of(next) : "");
        json_object_put(page);
        pages_read++;
    }
    cr_expect_gt(pages_read, 1, "12 KiB of versions do not fit one 6 KiB page");
    cr_expect_eq(n, N);
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            cr_expect_str_neq(seen[i], seen[k], "a version listed twice");
}

/* ---- 10. a huge page is streamed: its worker keeps serving others ---- */

static void setup_one_worker(void)
{
    rh_options o = {.workers = 1};
    rh_setup_with(&o);
}

TestSuite(rest_stream, .init = setup_one_worker, .fini = rh_teardown, .timeout = 240);

/* The big client: stops reading after its first bytes until `resume` (bounded), like a slow reader. */
typedef struct slow_reader {
    atomic_bool started, resume;
    rh_response r;
} slow_reader;

static bool pause_reading(size_t received, void *arg)
{
    (void)received;
    slow_reader *s = arg;
    atomic_store(&s->started, true);
    for (int i = 0; i < 2000 && !atomic_load(&s->resume); i++)
        usleep(10000);
    return true;
}

static void *read_big_page(void *arg)
{
    slow_reader *s = arg;
    s->r = rh_get_paced("hospital-a", "/Binary?_count=50", NULL, pause_reading, s);
    return NULL;
}

/* The server's fhirgw_http_inflight_bytes: answer bytes it holds that the kernel has not taken yet. */
static size_t inflight_bytes(void)
{
    size_t len;
    char *text = mx_render(srv_metrics(rh.srv), &len);
    const char *p = text ? strstr(text, "\nfhirgw_http_inflight_bytes ") : NULL;
    size_t v = p ? (size_t)strtoull(p + strlen("\nfhirgw_http_inflight_bytes "), NULL, 10) : SIZE_MAX;
    free(text);
    return v;
}

/*
 * One worker; a client asks for a 12 MiB page and stops reading. The same
 * worker answers other searches meanwhile, and holds only a small part of the
 * big page (a page built whole would hold what the kernel has not taken:
 * most of it). No timing thresholds: the reader waits for the test.
 */
Test(rest_stream, big_page_streams_while_the_worker_serves_others)
{
    enum { N = 50, DATA = 240 * 1024 };
    char *body = malloc(DATA + 200);
    int len = snprintf(body, DATA + 200,
                       "{\"resourceType\":\"Binary\",\"contentType\":\"application/octet-stream\","
                       "\"data\":\"");
    memset(body + len, 'A', DATA);
    snprintf(body + len + DATA, 200, "\"}");
    static char created[N][80];
    for (int i = 0; i < N; i++)
        snprintf(created[i], sizeof created[i], "%s", rh_create("hospital-a", "Binary", body));
    free(body);
    rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Small\"}]}");

    static slow_reader big;
    pthread_t t;
    pthread_create(&t, NULL, read_big_page, &big);
    for (int i = 0; i < 3000 && !atomic_load(&big.started); i++)
        usleep(10000);
    cr_assert(atomic_load(&big.started), "the big page never started");

    for (int i = 0; i < 10; i++) {
        json_object *small = get_bundle("gp", "/Patient?family=small");
        cr_expect_eq(total_of(small), 0, "gp does not see hospital-a's Patient");
        json_object_put(small);
        json_object *mine = get_bundle("hospital-a", "/Patient?family=small");
        cr_expect_eq(total_of(mine), 1);
        json_object_put(mine);
        size_t held = inflight_bytes();
        cr_expect_lt(held, (size_t)2 * 1024 * 1024, "the big page is held whole, not streamed: %zu bytes", held);
    }
    atomic_store(&big.resume, true);
    pthread_join(t, NULL);
    rh_expect_valid_bodies();

    cr_assert_eq(big.r.status, 200, "%ld", big.r.status);
    json_object *page = rh_json(&big.r); /* the harness validated the whole body already */
    cr_expect_eq(total_of(page), N);
    static char ids[N + 10][80];
    size_t n = 0;
    collect_ids(page, ids, &n, N + 10);
    expect_each_once(ids, n, created, N);
    cr_expect_null(link_of(page, "next"));
    json_object_put(page);
    rh_response_free(&big.r);
}

/* History takes _count and _since; with handling=strict anything else is refused, leniently it is left out
 * (a history Bundle has no place for an OperationOutcome entry). */
Test(rest_search, history_refuses_what_it_does_not_apply_when_strict)
{
    char id[80], path[200];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}"));
    const char *strict[] = {"Prefer: handling=strict", NULL};
    const char *queries[] = {"_list=x", "foo=bar"};
    for (size_t i = 0; i < sizeof queries / sizeof *queries; i++) {
        snprintf(path, sizeof path, "/Patient/%s/_history?%s", id, queries[i]);
        rh_response r = rh_request("hospital-a", "GET", path, NULL, strict);
        rh_expect_outcome(&r, 400, "not-supported");
        cr_expect(strstr(r.body, "history does not take"), "%s: %s", path, r.body);
        rh_response_free(&r);
        r = rh_request("hospital-a", "GET", path, NULL, NULL);
        cr_expect_eq(r.status, 200, "%s, lenient: %s", path, r.body);
        rh_response_free(&r);
    }
    snprintf(path, sizeof path, "/Patient/%s/_history?_count=5&_since=2020-01-01T00:00:00Z&_format=json", id);
    rh_response r = rh_request("hospital-a", "GET", path, NULL, strict);
    cr_expect_eq(r.status, 200, "%s: %s", path, r.body);
    json_object *o = rh_json(&r);
    cr_expect_eq(total_of(o), 1);
    json_object_put(o);
    rh_response_free(&r);
}

/* The lastUpdated of each version of Patient/id, oldest first, into lu[3]. */
static void version_times(const char *id, char lu[3][40])
{
    char path[200];
    snprintf(path, sizeof path, "/Patient/%s/_history", id);
    json_object *o = get_bundle("hospital-a", path), *entries = json_object_object_get(o, "entry");
    cr_assert_eq(json_object_array_length(entries), 3);
    for (size_t i = 0; i < 3; i++) /* newest first */
        snprintf(lu[2 - i], sizeof lu[0], "%s",
                 rh_str(json_object_array_get_idx(entries, i), "resource.meta.lastUpdated"));
    json_object_put(o);
}

/* The versionIds a history answers, newest first ("3,2"). */
static void versions_at(const char *path, char *out, size_t size)
{
    json_object *o = get_bundle("hospital-a", path), *entries = json_object_object_get(o, "entry");
    out[0] = '\0';
    for (size_t i = 0; json_object_is_type(entries, json_type_array) && i < json_object_array_length(entries); i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "",
                 rh_str(json_object_array_get_idx(entries, i), "resource.meta.versionId"));
    json_object_put(o);
}

/* _at: the versions that were current at some moment of the span it names. */
Test(rest_search, history_at_gives_the_versions_current_then)
{
    char id[80], path[300], body[200], got[64], lu[3][40];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}"));
    for (int v = 2; v <= 3; v++) {
        usleep(20000); /* versions in different milliseconds */
        snprintf(path, sizeof path, "/Patient/%s", id);
        snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"active\":%s}", id,
                 v == 2 ? "true" : "false");
        rh_response r = rh_request("hospital-a", "PUT", path, body, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        rh_response_free(&r);
    }
    version_times(id, lu);
    const char *want[3] = {"1", "2", "3"}; /* at the instant a version was written, it alone was current */
    for (int v = 0; v < 3; v++) {
        snprintf(path, sizeof path, "/Patient/%s/_history?_at=%s", id, lu[v]);
        versions_at(path, got, sizeof got);
        cr_expect_str_eq(got, want[v], "_at=%s", lu[v]);
    }
    snprintf(path, sizeof path, "/Patient/%s/_history?_at=%.4s", id, lu[0]); /* the year: all three */
    versions_at(path, got, sizeof got);
    cr_expect_str_eq(got, "3,2,1");
    versions_at("/Patient/_history?_at=1999", got, sizeof got);
    cr_expect_str_eq(got, "", "nothing was current in 1999");
    /* narrowed to nothing, a resource the caller reads has an empty history, not a 404; one it may not
       read stays 404 */
    const char *narrowed[] = {"_at=1999", "_since=2999-01-01T00:00:00Z"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/Patient/%s/_history?%s", id, narrowed[i]);
        versions_at(path, got, sizeof got);
        cr_expect_str_eq(got, "", "%s", path);
        rh_response r = rh_request("elv-b", "GET", path, NULL, NULL);
        cr_expect_eq(r.status, 404, "%s for another organisation", path);
        rh_response_free(&r);
    }
    const char *bad[] = {"_at=ge2026", "_at=soon"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/Patient/%s/_history?%s", id, bad[i]);
        rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
        rh_expect_outcome(&r, 400, "invalid");
        rh_response_free(&r);
    }
}
