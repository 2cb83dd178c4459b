/*
 * tests/test_handover.c — the relay of medical-policy handovers (issue #13,
 * docs/handover.md): POST /$handover, the Task's state machine, who reads
 * the documents in which status, and idempotent resubmission. The real
 * server over mutual TLS on loopback, each party with its own certificate;
 * every body the server sends is validated by the harness.
 *
 * Memory: responses and JSON are freed in each test; the request bodies are
 * stack buffers.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway/store/doc_log.h"
#include "gateway/util/conformance.h"
#include "tests/handover_body.h"
#include "tests/rest_harness.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define URA_ELV_B "90000302"
#define URA_HOSPITAL_A "90000101"
#define URA_ELV_A "90000301"
#define URA_GP "90000201"
#define SECRET HB_SECRET

/* The receiver `who` (URA ura) attests its ELV-HANDOVER agreements, valid until `until`, in its directory entry. */
static void attest_agreements(const char *who, const char *ura, const char *until)
{
    rh_attest_agreements(who, ura, until);
}

/* The server with the guide (the handover profiles), the directory published, elv-a's agreements attested. */
static void start_with(rh_options *opt)
{
    rh_setup_with_guide(opt);
    attest_agreements("elv-a", URA_ELV_A, "2099-12-31");
}

static void setup(void)
{
    start_with(NULL);
}

static void teardown(void)
{
    rh_teardown();
}

TestSuite(handover, .init = setup, .fini = teardown, .timeout = 240);

/* A handover task: its id, and the ids of the advance notice and the handover Bundles. */
typedef struct sent {
    char task[80], notice[80], doc[80];
    long status;
} sent;

static void read_inputs(json_object *task, sent *s)
{
    json_object *inputs = json_object_object_get(task, "input");
    for (size_t i = 0; inputs && i < json_object_array_length(inputs); i++) {
        json_object *in = json_object_array_get_idx(inputs, i);
        const char *code = rh_str(in, "type.coding.0.code");
        const char *ref = rh_str(in, "valueReference.reference");
        cr_assert(ref && !strncmp(ref, "Bundle/", 7), "input %zu refers to %s", i, ref ? ref : "nothing");
        snprintf(code && !strcmp(code, "57830-2") ? s->notice : s->doc, sizeof s->doc, "%s", ref + 7);
    }
}

static sent send_handover(const char *who, const char *ident, const char *notice_ident, const char *receiver)
{
    char *body = hb_parameters(ident, notice_ident, receiver);
    rh_response r = rh_request(who, "POST", "/$handover", body, NULL);
    free(body);
    sent s = {.status = r.status};
    if (r.status == 200 || r.status == 201) {
        json_object *o = rh_json(&r);
        cr_assert_str_eq(rh_str(o, "resourceType"), "Task");
        snprintf(s.task, sizeof s.task, "%s", rh_str(o, "id"));
        read_inputs(o, &s);
        json_object_put(o);
    } else {
        cr_log_info("$handover answered %ld: %.*s", r.status, (int)r.len, r.body);
    }
    rh_response_free(&r);
    return s;
}

static long status_of(const char *who, const char *method, const char *path, const char *body)
{
    rh_response r = rh_request(who, method, path, body, NULL);
    long s = r.status;
    if (s >= 400 && r.len)
        rh_expect_outcome(&r, s, NULL);
    rh_response_free(&r);
    return s;
}

static long read_bundle(const char *who, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/Bundle/%s", id);
    return status_of(who, "GET", path, NULL);
}

/* PUT the Task as read, with its status changed (and, when extra is not NULL, a member added). */
static long put_status(const char *who, const char *reader, const char *task, const char *to, const char *extra)
{
    char path[128];
    snprintf(path, sizeof path, "/Task/%s", task);
    rh_response r = rh_request(reader, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s cannot read Task/%s (%ld)", reader, task, r.status);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    json_object_object_del(o, "meta");
    json_object_object_add(o, "status", json_object_new_string(to));
    if (extra)
        json_object_object_add(o, "description", json_object_new_string(extra));
    long s = status_of(who, "PUT", path, json_object_to_json_string(o));
    json_object_put(o);
    return s;
}

static long patch_status(const char *who, const char *task, const char *to)
{
    char path[128], body[160];
    snprintf(path, sizeof path, "/Task/%s", task);
    snprintf(body, sizeof body, "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"%s\"}]", to);
    const char *extra[] = {"Content-Type: application/json-patch+json", NULL};
    rh_response r = rh_request(who, "PATCH", path, body, extra);
    long s = r.status;
    if (s >= 400)
        rh_expect_outcome(&r, s, NULL);
    if (s >= 400)
        cr_log_info("PATCH %s -> %s: %.*s", task, to, (int)r.len, r.body);
    rh_response_free(&r);
    return s;
}

/*
 * A whole handover from hospital-a to `receiver` (URA ura), with an advance notice: the Task as the receiver
 * reads it, polling, what it may read in each status, and the history both parties read. `outsider` is a
 * provider that is not the receiver: it reads nothing at any point.
 */
static void walk_handover(const char *ident, const char *notice_ident, const char *receiver, const char *ura,
                          const char *outsider)
{
    sent s = send_handover("hospital-a", ident, notice_ident, ura);
    cr_assert_eq(s.status, 201);
    cr_assert(s.notice[0] && s.doc[0], "the Task names both documents");
    /* the Task: requested, owned by the receiver's directory entry, no personal data */
    char path[160], owner[40];
    snprintf(path, sizeof path, "/Task/%s", s.task);
    snprintf(owner, sizeof owner, "Organization/ura-%s", ura);
    rh_response r = rh_request(receiver, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "status"), "requested");
    cr_expect_str_eq(rh_str(o, "code.coding.0.code"), "308292007");
    cr_expect_str_eq(rh_str(o, "owner.reference"), owner);
    cr_expect_str_eq(rh_str(o, "requester.identifier.value"), URA_HOSPITAL_A);
    cr_expect_null(strstr(json_object_to_json_string(o), SECRET), "the Task carries no personal data");
    json_object_put(o);
    rh_response_free(&r);
    /* the receiver polls for new handovers */
    snprintf(path, sizeof path, "/Task?owner=%s&status=requested", owner);
    r = rh_request(receiver, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.0.resource.id"), s.task);
    json_object_put(o);
    rh_response_free(&r);
    /* requested: the advance notice only */
    cr_expect_eq(read_bundle(receiver, s.notice), 200);
    cr_expect_eq(read_bundle(receiver, s.doc), 404);
    cr_expect_eq(put_status(receiver, receiver, s.task, "accepted", NULL), 200);
    cr_expect_eq(read_bundle(receiver, s.notice), 200);
    cr_expect_eq(read_bundle(receiver, s.doc), 404);
    /* the sender starts the handover (PATCH): now the handover itself, for the receiver only */
    cr_expect_eq(patch_status("hospital-a", s.task, "in-progress"), 200);
    cr_expect_eq(read_bundle(receiver, s.doc), 200);
    cr_expect_eq(read_bundle(outsider, s.doc), 404, "%s is not the receiver", outsider);
    cr_expect_eq(patch_status(receiver, s.task, "completed"), 200);
    /* completed: nothing more for the receiver; the sender reads its own */
    cr_expect_eq(read_bundle(receiver, s.doc), 404);
    cr_expect_eq(read_bundle(receiver, s.notice), 404);
    cr_expect_eq(read_bundle("hospital-a", s.doc), 200);
    cr_expect_eq(read_bundle("hospital-a", s.notice), 200);
    /* both read the Task's history: requested, accepted, in-progress, completed */
    snprintf(path, sizeof path, "/Task/%s/_history", s.task);
    const char *parties[] = {receiver, "hospital-a"};
    for (int i = 0; i < 2; i++) {
        r = rh_request(parties[i], "GET", path, NULL, NULL);
        cr_expect_eq(r.status, 200);
        o = rh_json(&r);
        cr_expect_eq(json_object_get_int(json_object_object_get(o, "total")), 4);
        json_object_put(o);
        rh_response_free(&r);
    }
}

Test(handover, hospital_to_elv_happy_path_with_access_by_status)
{
    walk_handover("1c6d7e5e-0001-4000-8000-000000000001", "1c6d7e5e-0001-4000-8000-0000000000a1", "elv-a", URA_ELV_A,
                  "elv-b");
}

/* Discharge home: the hospital hands the medical policy to the patient's GP. A GP needs no ELV-HANDOVER
 * agreement (the rule is an ELV's); access follows the Task's status as for any receiver. */
Test(handover, discharge_home_to_the_gp)
{
    walk_handover("1c6d7e5e-0011-4000-8000-000000000001", "1c6d7e5e-0011-4000-8000-0000000000a1", "gp", URA_GP,
                  "elv-a");
}

/* The parameter `name`'s resource of the Parameters text, without id and meta (the store sets them). */
static json_object *sent_resource(const char *parameters, const char *name)
{
    json_object *o = json_tokener_parse(parameters), *found = NULL;
    json_object *params = json_object_object_get(o, "parameter");
    for (size_t i = 0; params && i < json_object_array_length(params); i++) {
        json_object *p = json_object_array_get_idx(params, i);
        if (!strcmp(rh_str(p, "name"), name))
            found = json_object_get(json_object_object_get(p, "resource"));
    }
    json_object_put(o);
    cr_assert(found, "the Parameters has %s", name);
    json_object_object_del(found, "id");
    json_object_object_del(found, "meta");
    return found;
}

/* Bundle/id as `who` reads it, without id and meta. */
static json_object *stored_bundle(const char *who, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/Bundle/%s", id);
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s reads %s (%ld)", who, path, r.status);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    json_object_object_del(o, "id");
    json_object_object_del(o, "meta");
    return o;
}

Test(handover, stores_each_document_as_sent)
{
    char *body = hb_parameters("1c6d7e5e-0001-4000-8000-0000000000b1", "1c6d7e5e-0001-4000-8000-0000000000b2",
                               URA_ELV_A);
    rh_response r = rh_request("hospital-a", "POST", "/$handover", body, NULL);
    cr_assert_eq(r.status, 201, "$handover answered %ld: %.*s", r.status, (int)r.len, r.body);
    json_object *task = rh_json(&r);
    rh_response_free(&r);
    sent s = {0};
    read_inputs(task, &s);
    json_object_put(task);
    const struct {
        const char *name, *id, *reader;
    } docs[] = {{"document", s.doc, "hospital-a"}, {"advanceNotice", s.notice, "elv-a"}};
    for (size_t i = 0; i < 2; i++) {
        json_object *want = sent_resource(body, docs[i].name), *got = stored_bundle(docs[i].reader, docs[i].id);
        cr_expect(json_object_equal(want, got), "%s is stored as sent: %s", docs[i].name,
                  json_object_to_json_string(got));
        json_object_put(want);
        json_object_put(got);
    }
    free(body);
}

Test(handover, without_advance_notice_starts_in_progress)
{
    sent s = send_handover("gp", "1c6d7e5e-0002-4000-8000-000000000001", NULL, URA_ELV_A);
    cr_assert_eq(s.status, 201);
    char path[128];
    snprintf(path, sizeof path, "/Task/%s", s.task);
    rh_response r = rh_request("elv-a", "GET", path, NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "status"), "in-progress");
    json_object_put(o);
    rh_response_free(&r);
    cr_expect_eq(read_bundle("elv-a", s.doc), 200);
}

Test(handover, others_see_nothing_not_even_that_it_exists)
{
    sent s = send_handover("hospital-a", "1c6d7e5e-0003-4000-8000-000000000001", "1c6d7e5e-0003-4000-8000-0000000000a1",
                           URA_ELV_A);
    cr_assert_eq(s.status, 201);
    const char *others[] = {"elv-b", "hospital-b", "gp"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        cr_expect_eq(read_bundle(others[i], s.notice), 404, "%s", others[i]);
        cr_expect_eq(read_bundle(others[i], s.doc), 404, "%s", others[i]);
        snprintf(path, sizeof path, "/Task/%s", s.task);
        cr_expect_eq(status_of(others[i], "GET", path, NULL), 404, "%s", others[i]);
        cr_expect_eq(patch_status(others[i], s.task, "accepted"), 404, "%s", others[i]);
    }
    /* a missing Bundle answers alike */
    cr_expect_eq(read_bundle("elv-b", "no-such-bundle"), 404);
}

Test(handover, illegal_transitions_and_changes_are_refused)
{
    sent s = send_handover("hospital-a", "1c6d7e5e-0004-4000-8000-000000000001", "1c6d7e5e-0004-4000-8000-0000000000a1",
                           URA_ELV_A);
    cr_assert_eq(s.status, 201);
    /* from requested: the receiver may not start or complete it, nor the sender accept it */
    cr_expect_eq(patch_status("elv-a", s.task, "in-progress"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "completed"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "cancelled"), 409);
    cr_expect_eq(patch_status("hospital-a", s.task, "accepted"), 409);
    cr_expect_eq(patch_status("hospital-a", s.task, "in-progress"), 409);
    cr_expect_eq(patch_status("hospital-a", s.task, "completed"), 409);
    /* only the status changes, for either party */
    cr_expect_eq(put_status("elv-a", "elv-a", s.task, "accepted", "anders"), 422);
    cr_expect_eq(put_status("hospital-a", "hospital-a", s.task, "requested", "anders"), 422);
    cr_expect_eq(put_status("elv-a", "elv-a", s.task, "accepted", NULL), 200);
    /* from accepted */
    cr_expect_eq(patch_status("elv-a", s.task, "in-progress"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "rejected"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "completed"), 409);
    cr_expect_eq(patch_status("hospital-a", s.task, "completed"), 409);
    cr_expect_eq(patch_status("hospital-a", s.task, "in-progress"), 200);
    /* from in-progress */
    cr_expect_eq(patch_status("hospital-a", s.task, "completed"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "accepted"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "completed"), 200);
    /* completed is final */
    cr_expect_eq(patch_status("hospital-a", s.task, "cancelled"), 409);
    cr_expect_eq(patch_status("elv-a", s.task, "in-progress"), 409);

    /* rejected and cancelled end it too; on-hold may only be cancelled */
    sent t = send_handover("hospital-a", "1c6d7e5e-0004-4000-8000-000000000002", "1c6d7e5e-0004-4000-8000-0000000000a2",
                           URA_ELV_A);
    cr_expect_eq(patch_status("elv-a", t.task, "on-hold"), 200);
    cr_expect_eq(read_bundle("elv-a", t.notice), 200);
    cr_expect_eq(patch_status("elv-a", t.task, "accepted"), 409);
    cr_expect_eq(patch_status("hospital-a", t.task, "cancelled"), 200);
    cr_expect_eq(read_bundle("elv-a", t.notice), 404);
    cr_expect_eq(patch_status("hospital-a", t.task, "requested"), 409);
    sent u = send_handover("hospital-a", "1c6d7e5e-0004-4000-8000-000000000003", "1c6d7e5e-0004-4000-8000-0000000000a3",
                           URA_ELV_A);
    cr_expect_eq(patch_status("elv-a", u.task, "rejected"), 200);
    cr_expect_eq(read_bundle("elv-a", u.notice), 404);
    cr_expect_eq(patch_status("elv-a", u.task, "accepted"), 409);
}

Test(handover, wrong_receivers_and_documents_are_refused)
{
    /* an unregistered URA, an insurer */
    cr_expect_eq(send_handover("hospital-a", "1c6d7e5e-0005-4000-8000-000000000001", NULL, "99999999").status, 422);
    cr_expect_eq(send_handover("hospital-a", "1c6d7e5e-0005-4000-8000-000000000002", NULL, "90000501").status, 422);
    /* a document of the wrong type: the advance notice's Composition type as the handover */
    char doc[HB_DOCUMENT_MAX], body[HB_DOCUMENT_MAX + 256];
    hb_document(doc, sizeof doc, "1c6d7e5e-0005-4000-8000-000000000003", "http://loinc.org", "57830-2");
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"document\",\"resource\":%s},{\"name\":"
             "\"receiver\",\"valueReference\":{\"identifier\":{\"system\":\"" URA_SYSTEM "\",\"value\":\"" URA_ELV_A
             "\"}}}]}",
             doc);
    cr_expect_eq(status_of("hospital-a", "POST", "/$handover", body), 422);
    /* invalid FHIR inside the document */
    char *bad = hb_parameters("1c6d7e5e-0005-4000-8000-000000000004", NULL, URA_ELV_A);
    char *at = strstr(bad, "\"final\"");
    cr_assert_not_null(at);
    memcpy(at, "\"fine\" ", 7);
    cr_expect_eq(status_of("hospital-a", "POST", "/$handover", bad), 422);
    free(bad);
    /* nothing was stored */
    rh_response r = rh_request("hospital-a", "GET", "/Task", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_eq(json_object_get_int(json_object_object_get(o, "total")), 0);
    json_object_put(o);
    rh_response_free(&r);
}

static long count_tasks(const char *who, const char *ident)
{
    char path[256];
    snprintf(path, sizeof path, "/Task?identifier=urn:ietf:rfc:3986%%7Curn:uuid:%s", ident);
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    json_object *o = rh_json(&r);
    long n = json_object_get_int(json_object_object_get(o, "total"));
    json_object_put(o);
    rh_response_free(&r);
    return n;
}

Test(handover, resubmission_gives_the_same_task)
{
    const char *ident = "1c6d7e5e-0006-4000-8000-000000000001";
    sent a = send_handover("hospital-a", ident, "1c6d7e5e-0006-4000-8000-0000000000a1", URA_ELV_A);
    sent b = send_handover("hospital-a", ident, "1c6d7e5e-0006-4000-8000-0000000000a1", URA_ELV_A);
    cr_assert_eq(a.status, 201);
    cr_assert_eq(b.status, 200);
    cr_expect_str_eq(a.task, b.task);
    cr_expect_str_eq(a.doc, b.doc);
    cr_expect_str_eq(a.notice, b.notice);
    cr_expect_eq(count_tasks("hospital-a", ident), 1);
}

/* The answer's header `name` into out ("" when absent). */
static const char *header_of(const rh_response *r, const char *name, char *out, size_t size)
{
    if (!rh_header(r, name, out, size))
        out[0] = '\0';
    return out;
}

/* A $handover's answer (201 or 200) is the Task as a GET of it gives it right after: the same bytes, ETag and
 * Last-Modified; Location and Content-Location name that version. */
static void expect_answer_is_the_task(const rh_response *answer, const char *who, const char *version)
{
    json_object *o = rh_json(answer);
    char path[128], url[256], a[256], b[256];
    snprintf(path, sizeof path, "/Task/%s", rh_str(o, "id"));
    cr_expect_str_eq(rh_str(o, "meta.versionId"), version);
    json_object_put(o);
    rh_response read = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(read.status, 200);
    cr_expect(answer->len == read.len && !memcmp(answer->body, read.body, read.len),
              "the answer is the stored Task byte for byte:\n%.*s\nGET:\n%.*s", (int)answer->len, answer->body,
              (int)read.len, read.body);
    cr_expect_str_eq(header_of(answer, "ETag", a, sizeof a), header_of(&read, "ETag", b, sizeof b));
    snprintf(url, sizeof url, "W/\"%s\"", version);
    cr_expect_str_eq(a, url);
    cr_expect_str_eq(header_of(answer, "Last-Modified", a, sizeof a), header_of(&read, "Last-Modified", b, sizeof b));
    snprintf(url, sizeof url, "%s/_history/%s", path, version);
    const char *location = header_of(answer, "Location", a, sizeof a);
    cr_expect(strlen(location) > strlen(url) && !strcmp(location + strlen(location) - strlen(url), url),
              "Location %s names %s", location, url);
    cr_expect_str_eq(header_of(answer, "Content-Location", b, sizeof b), location);
    rh_response_free(&read);
}

static rh_response post_handover(const char *who, const char *ident, const char *notice_ident, const char *receiver)
{
    char *body = hb_parameters(ident, notice_ident, receiver);
    rh_response r = rh_request(who, "POST", "/$handover", body, NULL);
    free(body);
    return r;
}

/* The 201 is made from what the transaction wrote (no read of the Task after the commit): it must be exactly what
 * the store holds, as a read gives it. */
Test(handover, the_201_is_the_task_as_stored)
{
    rh_response r = post_handover("hospital-a", "1c6d7e5e-0011-4000-8000-000000000001",
                                  "1c6d7e5e-0011-4000-8000-0000000000a1", URA_ELV_A);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.len, r.body);
    expect_answer_is_the_task(&r, "hospital-a", "1");
    rh_response_free(&r);
}

/* A resubmission answers the Task as it is now, not as the first submission wrote it: its receiver may have moved
 * it since. */
Test(handover, a_resubmission_answers_the_task_as_it_is_now)
{
    const char *ident = "1c6d7e5e-0012-4000-8000-000000000001", *notice = "1c6d7e5e-0012-4000-8000-0000000000a1";
    sent a = send_handover("hospital-a", ident, notice, URA_ELV_A);
    cr_assert_eq(a.status, 201);
    cr_assert_eq(put_status("elv-a", "elv-a", a.task, "accepted", NULL), 200);
    rh_response r = post_handover("hospital-a", ident, notice, URA_ELV_A);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "id"), a.task);
    cr_expect_str_eq(rh_str(o, "status"), "accepted", "the receiver's move shows");
    json_object_put(o);
    expect_answer_is_the_task(&r, "hospital-a", "2");
    rh_response_free(&r);
}

/* The audit trail's entries for Task/id by organisation ura with this action: how many. */
static size_t task_entries(const char *id, const char *ura, char action)
{
    st_audit_row *rows = NULL;
    size_t count = 0, n = 0;
    st_error err;
    st_audit_query q = {.ura = ura, .count = 1000};
    cr_assert_eq(st_audit_list(rh.store, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    for (size_t i = 0; i < count; i++)
        n += !strcmp(rows[i].entry.type, "Task") && !strcmp(rows[i].entry.id, id) && rows[i].entry.action == action;
    free(rows);
    return n;
}

/*
 * A 201 answers with the Task this request wrote: its create entry, committed with it, records what the sender
 * learns, and no read entry is added (which would cost a second durable commit before the 201). A resubmission's
 * 200 shows the Task as it is now: a read, recorded as one.
 */
Test(handover, the_201_is_recorded_by_its_create_a_resubmission_by_a_read)
{
    const char *ident = "1c6d7e5e-0013-4000-8000-000000000001";
    sent a = send_handover("hospital-a", ident, NULL, URA_ELV_A);
    cr_assert_eq(a.status, 201);
    cr_expect_eq(task_entries(a.task, URA_HOSPITAL_A, 'C'), 1);
    cr_expect_eq(task_entries(a.task, URA_HOSPITAL_A, 'R'), 0, "the 201 adds no read of the Task it created");
    rh_response r = post_handover("hospital-a", ident, NULL, URA_ELV_A);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
    rh_response_free(&r);
    cr_expect_eq(task_entries(a.task, URA_HOSPITAL_A, 'R'), 1, "the resubmission read the Task");
}

/* The notifications the store queued for receiver ura. */
static size_t queued_for(const char *ura)
{
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query q = {.receiver = ura};
    cr_assert_eq(st_notify_list(rh.store, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    free(rows);
    return count;
}

/* Each handover's checks read the receiver's directory entry and Endpoint once, for that handover only: an
 * Endpoint registered or retired counts from the next handover on (nothing is remembered across requests). */
Test(handover, each_handover_plans_on_the_receivers_endpoint_as_it_is_then)
{
    cr_assert_eq(send_handover("hospital-a", "1c6d7e5e-0013-4000-8000-000000000001", NULL, URA_ELV_A).status, 201);
    cr_expect_eq(queued_for(URA_ELV_A), 0, "no Endpoint: elv-a polls");
    rh_register_endpoint("elv-a", URA_ELV_A, "https://127.0.0.1:1/notify-elv-a", NULL);
    cr_assert_eq(send_handover("hospital-a", "1c6d7e5e-0013-4000-8000-000000000002", NULL, URA_ELV_A).status, 201);
    cr_expect_eq(queued_for(URA_ELV_A), 1, "the Endpoint registered just before counts");
    /* elv-a retires its Endpoint */
    rh_response r = rh_request("elv-a", "GET", "/Organization/ura-" URA_ELV_A, NULL, NULL);
    json_object *o = rh_json(&r);
    char path[128];
    snprintf(path, sizeof path, "/%s", rh_str(o, "endpoint.0.reference"));
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("elv-a", "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    o = rh_json(&r);
    rh_response_free(&r);
    json_object_object_del(o, "meta");
    json_object_object_add(o, "status", json_object_new_string("off"));
    cr_assert_eq(status_of("elv-a", "PUT", path, json_object_to_json_string(o)), 200);
    json_object_put(o);
    cr_assert_eq(send_handover("hospital-a", "1c6d7e5e-0013-4000-8000-000000000003", NULL, URA_ELV_A).status, 201);
    cr_expect_eq(queued_for(URA_ELV_A), 1, "the Endpoint retired just before counts: nothing more is queued");
}

#define RACERS 8

typedef struct racer {
    const char *ident;
    sent result;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    char *body = hb_parameters(r->ident, "1c6d7e5e-0007-4000-8000-0000000000a1", URA_ELV_A);
    rh_response resp = rh_request("hospital-a", "POST", "/$handover", body, NULL);
    free(body);
    r->result.status = resp.status;
    json_object *o = resp.body ? json_tokener_parse(resp.body) : NULL;
    json_object *id = o ? json_object_object_get(o, "id") : NULL;
    snprintf(r->result.task, sizeof r->result.task, "%s", id ? json_object_get_string(id) : "");
    json_object_put(o);
    rh_response_free(&resp);
    return NULL;
}

Test(handover, concurrent_resubmissions_give_one_task)
{
    const char *ident = "1c6d7e5e-0007-4000-8000-000000000001";
    pthread_t threads[RACERS];
    racer racers[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer){.ident = ident};
        cr_assert_eq(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    rh_expect_valid_bodies();
    int created = 0;
    for (int i = 0; i < RACERS; i++) {
        cr_expect(racers[i].result.status == 201 || racers[i].result.status == 200, "racer %d: %ld", i,
                  racers[i].result.status);
        created += racers[i].result.status == 201;
        cr_expect_str_eq(racers[i].result.task, racers[0].result.task);
    }
    cr_expect_eq(created, 1);
    cr_expect_eq(count_tasks("hospital-a", ident), 1);
}

/* Does the caller's audit trail hold an entry on `what` ("Bundle/<id>") with this interaction and decision? */
static bool audited(const char *who, const char *what, const char *interaction, const char *outcome_desc)
{
    rh_response r = rh_request(who, "GET", "/AuditEvent?_count=50", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_object *o = rh_json(&r);
    json_object *entries = json_object_object_get(o, "entry");
    bool found = false;
    for (size_t i = 0; entries && i < json_object_array_length(entries) && !found; i++) {
        json_object *ev = json_object_object_get(json_object_array_get_idx(entries, i), "resource");
        const char *ref = rh_str(ev, "entity.0.what.reference");
        const char *sub = rh_str(ev, "subtype.0.code");
        const char *desc = rh_str(ev, "outcomeDesc");
        found = ref && !strncmp(ref, what, strlen(what)) && sub && !strcmp(sub, interaction) && desc &&
                strstr(desc, outcome_desc);
    }
    if (!found)
        cr_log_info("%s: %.600s", what, r.body);
    json_object_put(o);
    rh_response_free(&r);
    return found;
}

Test(handover, every_access_is_audited)
{
    sent s = send_handover("hospital-a", "1c6d7e5e-0008-4000-8000-000000000001", "1c6d7e5e-0008-4000-8000-0000000000a1",
                           URA_ELV_A);
    cr_assert_eq(s.status, 201);
    char what[128];
    snprintf(what, sizeof what, "Bundle/%s", s.doc);
    cr_expect(audited("hospital-a", what, "operation", "201"), "the sender's write of the handover is audited");
    snprintf(what, sizeof what, "Task/%s", s.task);
    cr_expect(audited("hospital-a", what, "operation", "201"), "the sender's write of the Task is audited");
    cr_expect_eq(read_bundle("elv-a", s.notice), 200);
    cr_expect_eq(read_bundle("elv-a", s.doc), 404);
    cr_expect_eq(read_bundle("elv-b", s.notice), 404);
    snprintf(what, sizeof what, "Bundle/%s", s.notice);
    cr_expect(audited("elv-a", what, "read", "200"), "the receiver's read of the advance notice is audited");
    cr_expect(audited("elv-b", what, "read", "hidden"), "another's attempt is audited as hidden");
    snprintf(what, sizeof what, "Bundle/%s", s.doc);
    cr_expect(audited("elv-a", what, "read", "hidden"), "a read before in-progress is audited as hidden");
}

/* A receiver shows the narrative in its EHR: a section whose narrative carries a script is refused (422, at the
 * div, by the validator's XHTML check) and nothing is stored. */
Test(handover, a_document_whose_narrative_carries_a_script_is_refused)
{
    char *body = hb_parameters("1c6d7e5e-0013-4000-8000-000000000001", NULL, URA_ELV_A);
    cr_assert_not_null(body);
    const char *end = strstr(body, "</div>");
    cr_assert_not_null(end, "the example has narrative");
    const char *script = "<script>alert(1)</script>";
    size_t at = (size_t)(end - body), len = strlen(body);
    char *bad = malloc(len + strlen(script) + 1);
    memcpy(bad, body, at);
    strcpy(bad + at, script);
    strcpy(bad + at + strlen(script), body + at);
    free(body);
    rh_response r = rh_request("hospital-a", "POST", "/$handover", bad, NULL);
    free(bad);
    cr_expect_eq(r.status, 422, "%.*s", (int)r.len, r.body);
    cr_expect_not_null(strstr(r.body, "script"), "the refusal names the script: %.*s", (int)r.len, r.body);
    cr_expect_not_null(strstr(r.body, ".div"), "at the narrative's div: %.*s", (int)r.len, r.body);
    rh_response_free(&r);
    r = rh_request("elv-a", "GET", "/Task?owner=Organization/ura-" URA_ELV_A, NULL, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_null(strstr(r.body, "\"entry\""), "no Task was stored: %.*s", (int)r.len, r.body);
    rh_response_free(&r);
}

/* ---- The handover profiles (ig/profiles: handover-document, handover-composition, advance-notice-composition) */

/* $handover of the example handover without its section of code drop_code: 422 with an error at `expression`
 * whose text holds needle. */
static void expect_profile_refusal(const char *drop_code, const char *expression, const char *needle)
{
    char *body = hb_parameters("1c6d7e5e-0011-4000-8000-000000000001", NULL, URA_ELV_A);
    json_object *p = json_tokener_parse(body);
    free(body);
    json_object *param = json_object_array_get_idx(json_object_object_get(p, "parameter"), 0);
    json_object *composition = json_object_object_get(
        json_object_array_get_idx(json_object_object_get(json_object_object_get(param, "resource"), "entry"), 0),
        "resource");
    json_object *sections = json_object_object_get(composition, "section");
    for (size_t i = 0; i < json_object_array_length(sections); i++)
        if (!strcmp(rh_str(json_object_array_get_idx(sections, i), "code.coding.0.code"), drop_code)) {
            json_object_array_del_idx(sections, i, 1);
            break;
        }
    rh_response r = rh_request("hospital-a", "POST", "/$handover", json_object_to_json_string(p), NULL);
    json_object_put(p);
    cr_expect_eq(r.status, 422, "%.*s", (int)r.len, r.body);
    json_object *o = rh_json(&r);
    json_object *issues = json_object_object_get(o, "issue");
    bool found = false;
    for (size_t i = 0; i < json_object_array_length(issues) && !found; i++) {
        json_object *is = json_object_array_get_idx(issues, i);
        const char *at = rh_str(is, "expression.0"), *text = rh_str(is, "diagnostics");
        found = at && text && !strcmp(at, expression) && strstr(text, needle);
    }
    cr_expect(found, "an error at %s saying '%s': %.*s", expression, needle, (int)r.len, r.body);
    json_object_put(o);
    rh_response_free(&r);
}

Test(handover, a_handover_without_a_required_section_is_refused_at_the_section)
{
    expect_profile_refusal("10160-0", "Parameters.parameter[0].resource.entry[0].resource.section",
                           "slice 'medication' of Composition.section requires at least 1 value");
    expect_profile_refusal("42348-3", "Parameters.parameter[0].resource.entry[0].resource.section",
                           "slice 'treatmentLimitations'");
    cr_expect_eq(count_tasks("hospital-a", "1c6d7e5e-0011-4000-8000-000000000001"), 0, "nothing was stored");
}

Test(handover, an_advance_notice_carries_no_full_medical_content)
{
    /* the handover's medication section copied into the advance notice: its slicing is closed */
    char *body = hb_parameters("1c6d7e5e-0012-4000-8000-000000000001", "1c6d7e5e-0012-4000-8000-000000000002",
                               URA_ELV_A);
    json_object *p = json_tokener_parse(body);
    free(body);
    json_object *params = json_object_object_get(p, "parameter");
    json_object *entry0[2];
    for (int i = 0; i < 2; i++)
        entry0[i] = json_object_object_get(
            json_object_array_get_idx(
                json_object_object_get(json_object_object_get(json_object_array_get_idx(params, (size_t)i), "resource"),
                                       "entry"),
                0),
            "resource");
    json_object *medication = json_object_array_get_idx(json_object_object_get(entry0[1], "section"), 2);
    json_object_array_add(json_object_object_get(entry0[0], "section"), json_object_get(medication));
    rh_response r = rh_request("hospital-a", "POST", "/$handover", json_object_to_json_string(p), NULL);
    json_object_put(p);
    cr_expect_eq(r.status, 422);
    cr_expect(r.body && strstr(r.body, "Parameters.parameter[0].resource.entry[0].resource.section[4]") &&
                  strstr(r.body, "slicing is closed"),
              "%.*s", (int)r.len, r.body);
    rh_response_free(&r);
}

/* The resource of entry k of the document in parameter i of a $handover Parameters (json-c). */
static json_object *document_entry(json_object *parameters, size_t i, size_t k)
{
    json_object *param = json_object_array_get_idx(json_object_object_get(parameters, "parameter"), i);
    json_object *entries = json_object_object_get(json_object_object_get(param, "resource"), "entry");
    return json_object_object_get(json_object_array_get_idx(entries, k), "resource");
}

/* POST p to $handover: 422, with the errors whose expression is `expression` counted, and those whose text also
 * holds needle (NULL: any); returns how many issues the answer has in all. */
static size_t post_refused(json_object *p, const char *expression, const char *needle, size_t *at, size_t *named)
{
    rh_response r = rh_request("hospital-a", "POST", "/$handover", json_object_to_json_string(p), NULL);
    cr_expect_eq(r.status, 422, "%.*s", (int)r.len, r.body);
    json_object *o = rh_json(&r);
    json_object *issues = json_object_object_get(o, "issue");
    size_t n = json_object_array_length(issues);
    *at = *named = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *is = json_object_array_get_idx(issues, i);
        const char *where = rh_str(is, "expression.0"), *text = rh_str(is, "diagnostics");
        bool here = where && !strcmp(where, expression);
        *at += here;
        *named += here && text && (!needle || strstr(text, needle));
    }
    if (!*named)
        cr_log_info("no error at %s: %.*s", expression, (int)r.len, r.body);
    json_object_put(o);
    rh_response_free(&r);
    return n;
}

/* nl-patient applies to the document's Patient whether or not it declares the profile. */
Test(handover, a_patient_without_a_bsn_is_refused_at_the_patient)
{
    char *body = hb_parameters("1c6d7e5e-0014-4000-8000-000000000001", NULL, URA_ELV_A);
    json_object *p = json_tokener_parse(body);
    free(body);
    json_object *patient = document_entry(p, 0, 1);
    cr_assert_str_eq(rh_str(patient, "resourceType"), "Patient");
    json_object_object_del(patient, "meta");
    json_object_object_del(patient, "identifier");
    size_t at, named;
    post_refused(p, "Parameters.parameter[0].resource.entry[1].resource.identifier", "nl-patient", &at, &named);
    json_object_put(p);
    cr_expect_eq(named, 1, "one error of nl-patient at the Patient's identifier");
    cr_expect_eq(count_tasks("hospital-a", "1c6d7e5e-0014-4000-8000-000000000001"), 0, "nothing was stored");
}

/* The document is validated as sent: a malformed meta.profile of its Patient is refused (the copy that added
 * nl-patient to it wrote a well-formed one in its place, and the Patient passed). */
Test(handover, a_patient_whose_meta_profile_is_not_a_list_is_refused)
{
    char *body = hb_parameters("1c6d7e5e-0016-4000-8000-000000000001", NULL, URA_ELV_A);
    json_object *p = json_tokener_parse(body);
    free(body);
    json_object *meta = json_object_object_get(document_entry(p, 0, 1), "meta");
    json_object_object_add(meta, "profile",
                           json_object_new_string("https://fhirgw.nl/fhir/StructureDefinition/nl-patient"));
    size_t at, named;
    post_refused(p, "Parameters.parameter[0].resource.entry[1].resource.meta.profile", "must be an array", &at, &named);
    json_object_put(p);
    cr_expect_eq(named, 1, "refused at the Patient's meta.profile");
    cr_expect_eq(count_tasks("hospital-a", "1c6d7e5e-0016-4000-8000-000000000001"), 0, "nothing was stored");
}

/* The Parameters is checked without its documents: an error of its own is reported alone, at its place, and one
 * inside a document is not reported by that check (the document's own check comes after it passes). */
Test(handover, an_invalid_parameter_is_refused_at_its_place)
{
    char *body = hb_parameters("1c6d7e5e-0015-4000-8000-000000000001", NULL, URA_ELV_A);
    json_object *p = json_tokener_parse(body);
    free(body);
    json_object_object_add(document_entry(p, 0, 1), "gender", json_object_new_string("fine"));
    json_object *receiver = json_object_array_get_idx(json_object_object_get(p, "parameter"), 1);
    json_object_object_add(json_object_object_get(receiver, "valueReference"), "display", json_object_new_string(""));
    size_t at, named;
    size_t n = post_refused(p, "Parameters.parameter[1].value.ofType(Reference).display", NULL, &at, &named);
    cr_expect_eq(at, 1, "the empty display is refused at its place");
    cr_expect_eq(n, 1, "and nothing else: the document is not validated as part of the Parameters");
    /* the Parameters fine: the document's error, at its place in the Parameters */
    json_object_object_del(json_object_object_get(receiver, "valueReference"), "display");
    n = post_refused(p, "Parameters.parameter[0].resource.entry[1].resource.gender", NULL, &at, &named);
    cr_expect_eq(at, 1, "the bad gender is refused at its place");
    json_object_put(p);
}

/* ---- ELV-HANDOVER: the receiver's attested agreements ---- */

/* The first issue's text of a 422 answer to $handover, which must name the rule. */
static void expect_rule_refusal(const char *who, const char *ident, const char *receiver, const char *needle)
{
    char *body = hb_parameters(ident, NULL, receiver);
    rh_response r = rh_request(who, "POST", "/$handover", body, NULL);
    free(body);
    rh_expect_outcome(&r, 422, "business-rule");
    json_object *o = rh_json(&r);
    const char *text = rh_str(o, "issue.0.diagnostics");
    const char *where = rh_str(o, "issue.0.expression.0");
    cr_expect(text && strstr(text, "ELV-HANDOVER") && strstr(text, needle), "the outcome names the rule: %s",
              text ? text : "(none)");
    cr_expect(where && !strcmp(where, "Parameters.parameter[1].valueReference"), "at the receiver: %s",
              where ? where : "(none)");
    json_object_put(o);
    rh_response_free(&r);
}

Test(handover, an_elv_without_an_attested_agreement_is_refused)
{
    expect_rule_refusal("hospital-a", "1c6d7e5e-0009-4000-8000-000000000001", URA_ELV_B, "no attested agreement");
    /* GPs and hospitals are separate agreements: elv-b attests only the one with hospitals */
    rh_response r = rh_request("elv-b", "GET", "/Organization/ura-" URA_ELV_B, NULL, NULL);
    char *body = hb_with_agreements(r.body, "2099-12-31");
    rh_response_free(&r);
    json_object *org = json_tokener_parse(body);
    free(body);
    json_object_array_del_idx(json_object_object_get(org, "extension"), 1, 1); /* drop elv-overdracht-huisarts */
    r = rh_request("elv-b", "PUT", "/Organization/ura-" URA_ELV_B, json_object_to_json_string(org), NULL);
    json_object_put(org);
    cr_assert_eq(r.status, 200);
    rh_response_free(&r);
    cr_expect_eq(send_handover("hospital-a", "1c6d7e5e-0009-4000-8000-000000000002", NULL, URA_ELV_B).status, 201);
    expect_rule_refusal("gp", "1c6d7e5e-0009-4000-8000-000000000003", URA_ELV_B, "elv-overdracht-huisarts");
}

Test(handover, an_expired_agreement_is_refused_naming_the_rule)
{
    attest_agreements("elv-a", URA_ELV_A, "2024-12-31");
    expect_rule_refusal("hospital-a", "1c6d7e5e-0010-4000-8000-000000000001", URA_ELV_A, "lapsed on 2024-12-31");
    cr_expect_eq(count_tasks("hospital-a", "1c6d7e5e-0010-4000-8000-000000000001"), 0, "nothing was stored");
    attest_agreements("elv-a", URA_ELV_A, "2099-12-31");
    cr_expect_eq(send_handover("hospital-a", "1c6d7e5e-0010-4000-8000-000000000001", NULL, URA_ELV_A).status, 201);
}

/* ---- Protection at rest (part 6): sealed documents, rotation, moved ciphertexts, purge ---- */

static _Atomic int64_t pinned_ms; /* the clock of the at_rest tests: real time at start, moved by the tests */

static int64_t pinned_clock(void *arg)
{
    (void)arg;
    return atomic_load(&pinned_ms);
}

static void setup_at_rest(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store(&pinned_ms, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    /* the purge thread waits an hour: tests run passes themselves, except the one that restarts it sooner */
    rh_options opt = {.clock_ms = pinned_clock, .handover_retention_days = 7, .purge_interval_ms = 3600000};
    start_with(&opt);
}

TestSuite(at_rest, .init = setup_at_rest, .fini = teardown, .timeout = 240);

/* How many times the file holds the bytes of needle (a missing file holds nothing). */
static size_t occurrences(const char *file, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", rh.dir, file);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *bytes = malloc((size_t)size + 1);
    cr_assert_not_null(bytes);
    size_t got = fread(bytes, 1, (size_t)size, f), n = 0;
    fclose(f);
    for (const char *at = bytes; (at = memmem(at, got - (size_t)(at - bytes), needle, strlen(needle))); at++)
        n++;
    free(bytes);
    return n;
}

static bool file_holds(const char *file, const char *needle)
{
    return occurrences(file, needle) > 0;
}

static bool database_holds(const char *needle)
{
    return file_holds("store.db", needle) || file_holds("store.db-wal", needle);
}

#define DOCUMENT_LOG "store.db" DL_SUFFIX "/segment-00000001"

/* Anywhere the store keeps anything: the database, its WAL and the document log (doc_log.h). */
static bool store_holds(const char *needle)
{
    return database_holds(needle) || file_holds(DOCUMENT_LOG, needle);
}

/* The body of GET path as who: its status, and whether it contains needle. */
static long get_holding(const char *who, const char *path, const char *needle, bool *holds)
{
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    long s = r.status;
    *holds = r.body && memmem(r.body, r.len, needle, strlen(needle)) != NULL;
    if (s >= 400)
        rh_expect_outcome(&r, s, NULL);
    rh_response_free(&r);
    return s;
}

/* One SQL statement on the stopped server's database. */
static void run_sql(const char *sql)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store.db", rh.dir);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(db);
}

/* On the stopped server's database: Bundle/to's stored body replaced by Bundle/from's, as someone with the
 * database file but not the key could do. */
static void move_body(const char *from, const char *to)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE resource_version SET json = (SELECT json FROM resource_version WHERE type = 'Bundle' AND "
             "id = '%s') WHERE type = 'Bundle' AND id = '%s'",
             from, to);
    run_sql(sql);
}

Test(at_rest, the_database_never_holds_a_document_in_the_clear)
{
    sent s = send_handover("hospital-a", "7e0d5a1c-1111-4a4a-9c9c-000000000001", "7e0d5a1c-1111-4a4a-9c9c-000000000002",
                           URA_ELV_A);
    cr_assert_eq(s.status, 201);
    char path[128];
    bool holds = false;
    snprintf(path, sizeof path, "/Bundle/%s", s.notice);
    cr_expect_eq(get_holding("elv-a", path, SECRET, &holds), 200);
    cr_expect(holds, "the receiver reads the advance notice in the clear");
    snprintf(path, sizeof path, "/Bundle/%s", s.doc);
    cr_expect_eq(get_holding("hospital-a", path, SECRET, &holds), 200);
    cr_expect(holds, "the sender reads the handover in the clear");
    /* while running (the WAL) and after the checkpoint at close (the main file) */
    for (int pass = 0; pass < 2; pass++) {
        cr_expect_not(store_holds(SECRET), "pass %d: the patient's name is in the database file", pass);
        cr_expect_not(store_holds("Overdracht medisch beleid"), "pass %d: the document's title is there", pass);
        cr_expect(database_holds("7e0d5a1c-1111-4a4a-9c9c-000000000001"), "the identifier (searched) is indexed");
        cr_expect(file_holds(DOCUMENT_LOG, SL_PREFIX_EARLY "dev-1."), "the documents are sealed early with dev-1");
        cr_expect(database_holds(DL_PREFIX) && !database_holds(SL_PREFIX_EARLY),
                  "and kept in the document log, which their rows name");
        if (pass == 0)
            rh_stop_server();
    }
    rh_start_server();
}

/* A re-sent handover is sealed and appended again before the commit finds the first one: that copy is freed, so
 * the document log keeps one record per document. */
Test(at_rest, a_resent_handover_leaves_no_second_copy_in_the_document_log)
{
    sent first = send_handover("hospital-a", "7e0d5a1c-8888-4a4a-9c9c-000000000001",
                               "7e0d5a1c-8888-4a4a-9c9c-000000000002", URA_ELV_A);
    cr_assert_eq(first.status, 201);
    size_t records = occurrences(DOCUMENT_LOG, SL_PREFIX_EARLY);
    cr_expect_eq(records, 2, "the advance notice and the handover, one record each");
    sent again = send_handover("hospital-a", "7e0d5a1c-8888-4a4a-9c9c-000000000001",
                               "7e0d5a1c-8888-4a4a-9c9c-000000000002", URA_ELV_A);
    cr_assert_eq(again.status, 200);
    cr_expect_str_eq(again.task, first.task);
    cr_expect_eq(occurrences(DOCUMENT_LOG, SL_PREFIX_EARLY), records, "the resubmission's copies were freed");
    bool holds = false;
    char path[128];
    snprintf(path, sizeof path, "/Bundle/%s", first.doc);
    cr_expect_eq(get_holding("hospital-a", path, SECRET, &holds), 200);
    cr_expect(holds, "the first copy still reads");
}

/* A document sealed on the worker, before its version existed, is served with the version's meta where a
 * commit-time render puts it (first in meta, the sender's profile kept after it), as its ETag says. */
Test(at_rest, a_document_sealed_early_is_served_with_its_version)
{
    sent s = send_handover("hospital-a", "7e0d5a1c-7777-4a4a-9c9c-000000000001", NULL, URA_ELV_A);
    cr_assert_eq(s.status, 201);
    char path[128], want[256], etag[64], modified[64];
    snprintf(path, sizeof path, "/Bundle/%s", s.doc);
    rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    snprintf(want, sizeof want,
             "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"versionId\":\"1\",\"lastUpdated\":\"", s.doc);
    cr_expect(!strncmp(r.body, want, strlen(want)), "%.200s", r.body);
    json_object *o = rh_json(&r);
    const char *updated = rh_str(o, "meta.lastUpdated");
    cr_assert_not_null(updated);
    cr_expect_eq(strlen(updated), 24, "%s", updated);
    cr_expect_str_eq(rh_str(o, "meta.profile.0"), "https://fhirgw.nl/fhir/StructureDefinition/handover-document");
    cr_expect_str_eq(rh_header(&r, "ETag", etag, sizeof etag), "W/\"1\"");
    cr_expect_not_null(rh_header(&r, "Last-Modified", modified, sizeof modified));
    json_object_put(o);
    rh_response_free(&r);
}

/* Appends a key line to the seal key file (ids dev-2, ...): rotation, taking effect at the next start. */
static void append_seal_key(const char *id)
{
    char cmd[768];
    snprintf(cmd, sizeof cmd, "printf '%s %%s\\n' \"$(openssl rand -hex 32)\" >> '%s/pki/seal.key'", id, rh.dir);
    cr_assert_eq(system(cmd), 0);
}

Test(at_rest, rotation_keeps_older_documents_readable)
{
    sent a = send_handover("hospital-a", "7e0d5a1c-2222-4a4a-9c9c-000000000001", NULL, URA_ELV_A);
    cr_assert_eq(a.status, 201);
    rh_stop_server();
    append_seal_key("dev-2");
    rh_start_server();
    sent b = send_handover("hospital-a", "7e0d5a1c-2222-4a4a-9c9c-000000000002", NULL, URA_ELV_A);
    cr_assert_eq(b.status, 201);
    char path[128];
    bool holds = false;
    const char *docs[2] = {a.doc, b.doc};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/Bundle/%s", docs[i]);
        cr_expect_eq(get_holding("elv-a", path, SECRET, &holds), 200, "document %d", i);
        cr_expect(holds);
    }
    cr_expect(store_holds(SL_PREFIX_EARLY "dev-1.") && store_holds(SL_PREFIX_EARLY "dev-2."),
              "each row names the key that sealed it");
    /* dropping the old key makes exactly its documents unreadable: an error, never ciphertext */
    rh_stop_server();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sed -i '/^dev-1 /d' '%s/pki/seal.key'", rh.dir);
    cr_assert_eq(system(cmd), 0);
    rh_start_server();
    snprintf(path, sizeof path, "/Bundle/%s", a.doc);
    cr_expect_eq(get_holding("elv-a", path, "fgseal", &holds), 500);
    cr_expect_not(holds, "no ciphertext is served");
    char failure[512];
    rh_last_seal_failure(failure, sizeof failure);
    cr_expect(strstr(failure, a.doc) && strstr(failure, "dev-1"), "the error log names the row and key: %s", failure);
    snprintf(path, sizeof path, "/Bundle/%s", b.doc);
    cr_expect_eq(get_holding("elv-a", path, SECRET, &holds), 200);
}

Test(at_rest, a_ciphertext_moved_to_another_row_does_not_open)
{
    sent a = send_handover("hospital-a", "7e0d5a1c-3333-4a4a-9c9c-000000000001", NULL, URA_ELV_A);
    sent b = send_handover("hospital-b", "7e0d5a1c-3333-4a4a-9c9c-000000000002", NULL, URA_ELV_A);
    cr_assert(a.status == 201 && b.status == 201);
    rh_stop_server();
    move_body(a.doc, b.doc);
    rh_start_server();
    char path[128];
    bool holds = false;
    snprintf(path, sizeof path, "/Bundle/%s", b.doc);
    cr_expect_eq(get_holding("hospital-b", path, SECRET, &holds), 500);
    cr_expect_not(holds, "hospital-a's document is not served to hospital-b");
    char failure[512];
    rh_last_seal_failure(failure, sizeof failure);
    cr_expect(strstr(failure, b.doc) && strstr(failure, "does not open"), "logged: %s", failure);
    snprintf(path, sizeof path, "/Bundle/%s", a.doc);
    cr_expect_eq(get_holding("hospital-a", path, SECRET, &holds), 200, "the original row still opens");
    cr_expect(holds);
}

/* The first row of a query on the server's database, read-only: the statement stepped to it (*db to close). */
static sqlite3_stmt *first_row(const char *sql, sqlite3 **db)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store.db", rh.dir);
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq(sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(*db, sql, -1, &stmt, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW, "%s", sql);
    return stmt;
}

/* The body Bundle/id's version 1 row holds (malloc'd text): with the document log, a locator. */
static char *row_body(const char *id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT json FROM resource_version WHERE type = 'Bundle' AND id = '%s' AND version = 1",
             id);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = first_row(sql, &db);
    char *body = strndup((const char *)sqlite3_column_text(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return body;
}

/* How many of the bytes of the document log's record that locator names are not zero (a freed record has none). */
static size_t record_bytes_left(const char *locator)
{
    dl_locator loc;
    cr_assert(dl_parse(locator, strlen(locator), &loc), "%s", locator);
    char path[512];
    snprintf(path, sizeof path, "%s/" DOCUMENT_LOG, rh.dir);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (long)loc.offset, SEEK_SET), 0);
    size_t left = 0;
    for (uint32_t i = 0; i < loc.length; i++) {
        int c = fgetc(f);
        left += c != 0 && c != EOF;
    }
    fclose(f);
    return left;
}

/* Rows of the document's versions that still have a body. */
static int bodies_left(const char *id)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM resource_version WHERE type = 'Bundle' AND id = '%s' AND json "
             "IS NOT NULL",
             id);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = first_row(sql, &db);
    int n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
}

#define DAY_MS INT64_C(86400000)

/* Whether the audit trail records the purge of Bundle/id. */
static bool purge_audited(const char *id)
{
    st_audit_row *rows = NULL;
    size_t count = 0;
    st_error err;
    st_audit_query q = {.count = 1000};
    cr_assert_eq(st_audit_list(rh.store, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    bool found = false;
    for (size_t i = 0; i < count && !found; i++)
        found = !strcmp(rows[i].entry.interaction, "purge") && !strcmp(rows[i].entry.id, id) &&
                !strcmp(rows[i].entry.type, "Bundle") && rows[i].entry.action == 'D';
    free(rows);
    return found;
}

Test(at_rest, documents_are_purged_days_after_the_handover_ended)
{
    sent s = send_handover("hospital-a", "7e0d5a1c-4444-4a4a-9c9c-000000000001", NULL, URA_ELV_A);
    sent open = send_handover("hospital-a", "7e0d5a1c-4444-4a4a-9c9c-000000000002", NULL, URA_ELV_A);
    cr_assert(s.status == 201 && open.status == 201);
    char *record = row_body(s.doc);
    cr_expect_gt(record_bytes_left(record), 1000, "the document is in the log: %s", record);
    cr_expect_eq(patch_status("elv-a", s.task, "completed"), 200);
    char err[256] = "";
    atomic_fetch_add(&pinned_ms, 7 * DAY_MS - 60000); /* a minute short of the retention */
    cr_expect_eq(rest_handover_purge(rh.app, err, sizeof err), 0, "%s", err);
    cr_expect_eq(read_bundle("hospital-a", s.doc), 200);
    cr_expect_eq(rest_handover_purge_examined(rh.app), 0, "a Task not yet due is not read");
    atomic_fetch_add(&pinned_ms, 120000);
    cr_expect_eq(rest_handover_purge(rh.app, err, sizeof err), 1, "%s", err);
    cr_expect_eq(rest_handover_purge_examined(rh.app), 1);
    cr_expect_eq(rest_handover_purge(rh.app, err, sizeof err), 0, "a second pass finds nothing left");
    cr_expect_eq(rest_handover_purge_examined(rh.app), 0, "nor reads the Task the pass before dealt with");
    cr_expect_eq(read_bundle("hospital-a", s.doc), 410, "the sender learns that the content is gone");
    cr_expect_eq(read_bundle("elv-a", s.doc), 404, "the receiver's access had ended: nothing changes for it");
    char path[128];
    snprintf(path, sizeof path, "/Bundle/%s/_history/1", s.doc);
    cr_expect_eq(status_of("hospital-a", "GET", path, NULL), 410, "older versions are purged too");
    snprintf(path, sizeof path, "/Task/%s", s.task);
    cr_expect_eq(status_of("hospital-a", "GET", path, NULL), 200, "the Task stays");
    cr_expect_eq(read_bundle("elv-a", open.doc), 200, "a handover still going on keeps its documents");
    cr_expect_eq(bodies_left(s.doc), 0);
    cr_expect_eq(record_bytes_left(record), 0, "its record in the document log is freed: the disk has it no more");
    free(record);
    cr_expect(purge_audited(s.doc), "the purge is in the audit trail");
    /* a Task that ends later is read by the pass that finds it due, and only by that one */
    cr_expect_eq(patch_status("hospital-a", open.task, "cancelled"), 200);
    atomic_fetch_add(&pinned_ms, 7 * DAY_MS);
    cr_expect_eq(rest_handover_purge(rh.app, err, sizeof err), 1, "%s", err);
    cr_expect_eq(rest_handover_purge_examined(rh.app), 1, "the Task that ended since, not the first one again");
    cr_expect_eq(read_bundle("hospital-a", open.doc), 410);
}

Test(at_rest, the_server_purges_by_itself)
{
    sent s = send_handover("hospital-a", "7e0d5a1c-5555-4a4a-9c9c-000000000001", NULL, URA_ELV_A);
    cr_assert_eq(s.status, 201);
    cr_expect_eq(patch_status("hospital-a", s.task, "cancelled"), 200);
    rh_stop_server();
    rh.opt.purge_interval_ms = 1000;
    rh_start_server();
    atomic_fetch_add(&pinned_ms, 8 * DAY_MS);
    long status = 200;
    for (int i = 0; i < 100 && status == 200; i++) { /* the purge thread looks every second */
        usleep(100 * 1000);
        status = read_bundle("hospital-a", s.doc);
    }
    cr_expect_eq(status, 410);
}

Test(at_rest, a_missing_seal_key_file_refuses_startup)
{
    char conf[512], cmd[1536], out[512];
    snprintf(conf, sizeof conf, "%s/missing-seal.conf", rh.dir);
    snprintf(out, sizeof out, "%s/missing-seal.err", rh.dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "organisations %s/organisations.tsv\naudit_key_file %s/pki/audit.key\naudit_checkpoint_key "
            "%s/pki/audit-checkpoint.pem\naudit_checkpoint_file %s/other-checkpoints\nstore_path %s/other.db\n"
            "seal_key_file %s/pki/no-such-seal.key\naccess_log\n",
            rh.dir, rh.dir, rh.dir, rh.dir, rh.dir, rh.dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' serve --config '%s' >/dev/null 2>'%s'", FHIRGW_BIN, conf, out);
    int rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) != 0, "serve started without its seal key file");
    cr_expect(file_holds("missing-seal.err", "seal_key_file") && file_holds("missing-seal.err", "no-such-seal.key"),
              "the error names the setting and the file");
    cr_expect_not(file_holds("other.db", "Bundle"), "nothing was stored");
}

/*
 * Bodies sealed before 2026-12-05 are base64 text (SL_PREFIX_TEXT, seal.h) of a whole version, meta
 * included; new ones are binary blobs, a handover's documents sealed early, without the version's meta
 * (SL_PREFIX_EARLY). Writes a document's row in the old form, made here as the older gateway made it and
 * independent of the code under test: the AES key derived from the dev-1 master key (HMAC-SHA-256 with the
 * label), AES-256-GCM over the version as served, bound to "Bundle/<id>/_history/1".
 */
#include <openssl/evp.h> /* here rather than on top: the old form's AES-GCM and base64 */
#include <openssl/hmac.h>
#include <openssl/rand.h>

static void dev1_aes_key(unsigned char aes[32])
{
    char path[512], line[256];
    snprintf(path, sizeof path, "%s/pki/seal.key", rh.dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    unsigned char master[32];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        if (!strncmp(line, "dev-1 ", 6)) {
            for (int i = 0; i < 32; i++)
                cr_assert_eq(sscanf(line + 6 + 2 * i, "%2hhx", &master[i]), 1);
            found = true;
        }
    fclose(f);
    cr_assert(found, "the key file has dev-1");
    unsigned int n = 0;
    const char *label = "fhirgw document seal v1";
    cr_assert_not_null(HMAC(EVP_sha256(), master, 32, (const unsigned char *)label, strlen(label), aes, &n));
}

static void rewrite_as_text(const char *doc_id, const char *plain, size_t plain_len)
{
    unsigned char aes[32], raw[12 + 16 + 65536];
    cr_assert_lt(plain_len, 65536);
    dev1_aes_key(aes);
    char aad[128];
    snprintf(aad, sizeof aad, "Bundle/%s/_history/1", doc_id);
    cr_assert_eq(RAND_bytes(raw, 12), 1);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    cr_assert(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, aes, raw) == 1 &&
              EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
              EVP_EncryptUpdate(c, raw + 28, &n, (const unsigned char *)plain, (int)plain_len) == 1 &&
              EVP_EncryptFinal_ex(c, raw + 28 + n, &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, raw + 12) == 1);
    EVP_CIPHER_CTX_free(c);
    size_t raw_len = 28 + plain_len;
    char *text = malloc(strlen(SL_PREFIX_TEXT "dev-1.") + 4 * ((raw_len + 2) / 3) + 1);
    cr_assert_not_null(text);
    size_t head = (size_t)sprintf(text, "%sdev-1.", SL_PREFIX_TEXT);
    int b64 = EVP_EncodeBlock((unsigned char *)text + head, raw, (int)raw_len);

    char path[512], sql[256];
    snprintf(path, sizeof path, "%s/store.db", rh.dir);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE resource_version SET json = ?1 WHERE type = 'Bundle' AND id = '%s'", doc_id);
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, text, (int)head + b64, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_DONE);
    cr_expect_eq(sqlite3_changes(db), 1);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    free(text);
}

Test(at_rest, a_body_sealed_as_base64_text_before_still_opens)
{
    sent a = send_handover("hospital-a", "7e0d5a1c-6666-4a4a-9c9c-000000000001", NULL, URA_ELV_A);
    sent b = send_handover("hospital-b", "7e0d5a1c-6666-4a4a-9c9c-000000000002", NULL, URA_ELV_A);
    cr_assert(a.status == 201 && b.status == 201);
    char path[128];
    bool holds = false;
    snprintf(path, sizeof path, "/Bundle/%s", a.doc);
    rh_response before = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_assert_eq(before.status, 200);
    rh_stop_server();
    rewrite_as_text(a.doc, before.body, strlen(before.body));
    cr_expect(database_holds(SL_PREFIX_TEXT "dev-1."), "the text form is in the database");
    rh_start_server();
    rh_response after = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(after.status, 200, "the text form opens");
    cr_expect_str_eq(after.body, before.body, "and serves the same version");
    rh_response_free(&before);
    rh_response_free(&after);
    snprintf(path, sizeof path, "/Bundle/%s", b.doc);
    cr_expect_eq(get_holding("hospital-b", path, SECRET, &holds), 200, "the binary form beside it opens");
    cr_expect(holds);
    /* the text form is bound to its row as the binary one is */
    rh_stop_server();
    move_body(a.doc, b.doc);
    rh_start_server();
    snprintf(path, sizeof path, "/Bundle/%s", b.doc);
    cr_expect_eq(get_holding("hospital-b", path, SECRET, &holds), 500);
    cr_expect_not(holds);
}
