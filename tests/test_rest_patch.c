/*
 * tests/test_rest_patch.c — the patch interaction end to end (real server,
 * mutual TLS, libcurl; every response body validated by the harness):
 * JSON Patch and FHIRPath Patch of a Task's status by its receiver, a patch
 * that would make the Task invalid (422, nothing stored), bad patch
 * documents (400/422 naming the operation), If-Match (412 when stale),
 * concurrent patches by two organisations (no lost update), someone else's
 * resource (404), the wrong Content-Type (415) and the conditional patch.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/rest_harness.h"

TestSuite(rest_patch, .init = rh_setup, .fini = rh_teardown, .timeout = 120);

/* A Task from hospital-a to elv-a (its owner, by URA): elv-a is the receiver who may update it. */
#define TASK                                                                                           \
    "{\"resourceType\":\"Task\",\"identifier\":[{\"system\":\"http://x.org/task\",\"value\":\"%s\"}]," \
    "\"status\":\"requested\",\"intent\":\"order\",\"owner\":{\"identifier\":{\"system\":"             \
    "\"http://fhir.nl/fhir/NamingSystem/ura\",\"value\":\"90000301\"}},\"note\":[{\"text\":\"start\"}]}"

static const char *const JSON_PATCH[] = {"Content-Type: application/json-patch+json", NULL};

/* Create a Task as hospital-a with this identifier value; its path into out. */
static void make_task(const char *ident, char *path, size_t size)
{
    char body[800];
    snprintf(body, sizeof body, TASK, ident);
    snprintf(path, size, "/Task/%s", rh_create("hospital-a", "Task", body));
}

/* The stored Task (asserts 200); caller puts it. */
static json_object *read_task(const char *path)
{
    rh_response r = rh_request("elv-a", "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    return o;
}

static void expect_task(const char *path, const char *status, const char *version)
{
    json_object *o = read_task(path);
    cr_expect_str_eq(rh_str(o, "status"), status);
    cr_expect_str_eq(rh_str(o, "meta.versionId"), version);
    json_object_put(o);
}

Test(rest_patch, json_patch_of_a_task_status)
{
    char path[160], header[300];
    make_task("jp-1", path, sizeof path);
    rh_response r = rh_request("elv-a", "PATCH", path,
                               "[{\"op\":\"test\",\"path\":\"/status\",\"value\":\"requested\"},"
                               "{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"accepted\"}]",
                               JSON_PATCH);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "status"), "accepted");
    cr_expect_str_eq(rh_str(o, "intent"), "order", "the rest is kept");
    cr_expect_str_eq(rh_str(o, "meta.versionId"), "2");
    json_object_put(o);
    cr_expect_str_eq(rh_header(&r, "ETag", header, sizeof header), "W/\"2\"");
    cr_expect_not_null(rh_header(&r, "Location", header, sizeof header));
    cr_expect_not_null(strstr(header, "/_history/2"), "%s", header);
    rh_response_free(&r);
    expect_task(path, "accepted", "2");

    /* Prefer: return=minimal answers without a body */
    const char *minimal[] = {"Content-Type: application/json-patch+json", "Prefer: return=minimal", NULL};
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"in-progress\"}]",
                   minimal);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_eq(r.len, 0);
    cr_expect_str_eq(rh_header(&r, "ETag", header, sizeof header), "W/\"3\"");
    rh_response_free(&r);
    expect_task(path, "in-progress", "3");
}

Test(rest_patch, fhirpath_patch_of_a_task_status)
{
    char path[160];
    make_task("fp-1", path, sizeof path);
    rh_response r =
        rh_request("elv-a", "PATCH", path,
                   "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"operation\",\"part\":["
                   "{\"name\":\"type\",\"valueCode\":\"replace\"},{\"name\":\"path\",\"valueString\":\"Task.status\"},"
                   "{\"name\":\"value\",\"valueCode\":\"accepted\"}]},{\"name\":\"operation\",\"part\":["
                   "{\"name\":\"type\",\"valueCode\":\"add\"},{\"name\":\"path\",\"valueString\":\"Task\"},"
                   "{\"name\":\"name\",\"valueString\":\"businessStatus\"},{\"name\":\"value\",\"part\":["
                   "{\"name\":\"text\",\"valueString\":\"bed reserved\"}]}]}]}",
                   NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "status"), "accepted");
    cr_expect_str_eq(rh_str(o, "businessStatus.text"), "bed reserved");
    json_object_put(o);
    rh_response_free(&r);
    expect_task(path, "accepted", "2");
}

Test(rest_patch, an_invalid_result_is_refused_and_nothing_stored)
{
    char path[160];
    make_task("bad-1", path, sizeof path);
    /* not a Task status code */
    rh_response r = rh_request("elv-a", "PATCH", path,
                               "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"bogus\"}]", JSON_PATCH);
    rh_expect_outcome(&r, 422, "code-invalid");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Task.status");
    cr_expect_null(rh_str(o, "issue.0.location.0"), "no line and column of a text the client never saw");
    json_object_put(o);
    rh_response_free(&r);
    /* a required element removed */
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"remove\",\"path\":\"/intent\"}]", JSON_PATCH);
    rh_expect_outcome(&r, 422, NULL);
    rh_response_free(&r);
    /* the id and the type stay */
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"replace\",\"path\":\"/id\",\"value\":\"other\"}]", JSON_PATCH);
    rh_expect_outcome(&r, 422, "processing");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"replace\",\"path\":\"/resourceType\",\"value\":\"Patient\"}]",
                   JSON_PATCH);
    rh_expect_outcome(&r, 422, "processing");
    rh_response_free(&r);
    expect_task(path, "requested", "1");
}

Test(rest_patch, bad_patch_documents_name_the_operation)
{
    char path[160];
    make_task("doc-1", path, sizeof path);
    rh_response r = rh_request("elv-a", "PATCH", path,
                               "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"accepted\"},"
                               "{\"op\":\"test\",\"path\":\"/status\",\"value\":\"requested\"}]",
                               JSON_PATCH);
    rh_expect_outcome(&r, 422, "processing");
    json_object *o = rh_json(&r);
    const char *diag = rh_str(o, "issue.0.diagnostics");
    cr_expect(diag && strstr(diag, "operation 1 (test /status)") && strstr(diag, "test failed"), "%s", diag);
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"remove\",\"path\":\"/note/5\"}]", JSON_PATCH);
    rh_expect_outcome(&r, 422, "processing");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"jump\",\"path\":\"/status\"}]", JSON_PATCH);
    rh_expect_outcome(&r, 400, "structure");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":", JSON_PATCH);
    rh_expect_outcome(&r, 400, "structure");
    rh_response_free(&r);
    /* FHIRPath Patch: the expression names the path */
    r = rh_request("elv-a", "PATCH", path,
                   "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"operation\",\"part\":["
                   "{\"name\":\"type\",\"valueCode\":\"delete\"},{\"name\":\"path\",\"valueString\":\"Task.identifier "
                   "| Task.note\"}]}]}",
                   NULL);
    rh_expect_outcome(&r, 422, "processing");
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Task.identifier | Task.note");
    json_object_put(o);
    rh_response_free(&r);
    expect_task(path, "requested", "1");
}

Test(rest_patch, if_match)
{
    char path[160];
    make_task("im-1", path, sizeof path);
    const char *stale[] = {"Content-Type: application/json-patch+json", "If-Match: W/\"2\"", NULL};
    const char *current[] = {"Content-Type: application/json-patch+json", "If-Match: W/\"1\"", NULL};
    const char *body = "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"accepted\"}]";
    rh_response r = rh_request("elv-a", "PATCH", path, body, stale);
    rh_expect_outcome(&r, 412, "conflict");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, body, current);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, body, current);
    rh_expect_outcome(&r, 412, "conflict");
    rh_response_free(&r);
    expect_task(path, "accepted", "2");
}

/* ---- concurrency ---- */

typedef struct patcher {
    const char *path;
    int n;
    long status;
} patcher;

static void *append_note(void *arg)
{
    patcher *p = arg;
    char body[200];
    snprintf(body, sizeof body, "[{\"op\":\"add\",\"path\":\"/note/-\",\"value\":{\"text\":\"client-%d\"}}]", p->n);
    /* two organisations: the sender (owner) and the receiver */
    rh_response r = rh_request(p->n % 2 ? "elv-a" : "hospital-a", "PATCH", p->path, body, JSON_PATCH);
    p->status = r.status;
    rh_response_free(&r);
    return NULL;
}

Test(rest_patch, concurrent_patches_lose_no_update)
{
    char path[160];
    make_task("race-1", path, sizeof path);
    enum { N = 8 };
    pthread_t t[N];
    patcher p[N];
    for (int i = 0; i < N; i++) {
        p[i] = (patcher){path, i, 0};
        pthread_create(&t[i], NULL, append_note, &p[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    json_object *o = read_task(path);
    json_object *notes = json_object_object_get(o, "note");
    int ok = 0;
    for (int i = 0; i < N; i++) {
        /* no If-Match was sent: a patch computed on a version that changed meanwhile is 409, never applied */
        cr_expect(p[i].status == 200 || p[i].status == 409, "client %d: %ld", i, p[i].status);
        if (p[i].status != 200)
            continue;
        ok++;
        char want[32];
        snprintf(want, sizeof want, "client-%d", i);
        bool found = false;
        for (size_t k = 0; k < json_object_array_length(notes); k++)
            found |= !strcmp(json_object_get_string(
                                 json_object_object_get(json_object_array_get_idx(notes, k), "text")),
                             want);
        cr_expect(found, "the change of client %d (answered 200) is in the stored Task", i);
    }
    cr_log_info("%d of %d concurrent patches applied, the others refused", ok, N);
    cr_expect_geq(ok, 1);
    cr_expect_eq(json_object_array_length(notes), (size_t)(1 + ok), "every note is an accepted patch's");
    char version[16];
    snprintf(version, sizeof version, "%d", 1 + ok);
    cr_expect_str_eq(rh_str(o, "meta.versionId"), version);
    json_object_put(o);
}

/* ---- who and how ---- */

Test(rest_patch, refusals)
{
    char path[160];
    make_task("ref-1", path, sizeof path);
    const char *body = "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"accepted\"}]";
    /* someone else's Task does not exist for them */
    rh_response r = rh_request("elv-b", "PATCH", path, body, JSON_PATCH);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("gp", "PATCH", path, body, JSON_PATCH);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    /* insurers get no clinical resources at all */
    r = rh_request("insurer", "PATCH", path, body, JSON_PATCH);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", "/Task/no-such-task", body, JSON_PATCH);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    const char *text[] = {"Content-Type: text/plain", NULL};
    r = rh_request("elv-a", "PATCH", path, body, text);
    rh_expect_outcome(&r, 415, "not-supported");
    rh_response_free(&r);
    const char *xml[] = {"Content-Type: application/fhir+xml", NULL};
    r = rh_request("elv-a", "PATCH", path, body, xml);
    rh_expect_outcome(&r, 415, "not-supported");
    rh_response_free(&r);
    /* a JSON Patch sent as FHIR JSON is not a Parameters resource */
    r = rh_request("elv-a", "PATCH", path, body, NULL);
    rh_expect_outcome(&r, 400, "structure");
    rh_response_free(&r);
    /* plain application/json: the body tells */
    const char *plain[] = {"Content-Type: application/json", NULL};
    r = rh_request("elv-a", "PATCH", path, body, plain);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    /* a deleted resource */
    char other[160];
    make_task("ref-2", other, sizeof other);
    r = rh_request("hospital-a", "DELETE", other, NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    r = rh_request("hospital-a", "PATCH", other, body, JSON_PATCH);
    rh_expect_outcome(&r, 410, "deleted");
    rh_response_free(&r);
}

Test(rest_patch, conditional_patch)
{
    char path[160];
    make_task("cond-1", path, sizeof path);
    make_task("cond-2", path, sizeof path);
    make_task("cond-2", path, sizeof path);
    const char *body = "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"accepted\"}]";
    rh_response r = rh_request("elv-a", "PATCH", "/Task?identifier=http://x.org/task|cond-1", body, JSON_PATCH);
    cr_expect_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "identifier.0.value"), "cond-1");
    cr_expect_str_eq(rh_str(o, "status"), "accepted");
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", "/Task?identifier=http://x.org/task|cond-2", body, JSON_PATCH);
    rh_expect_outcome(&r, 412, "multiple-matches");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", "/Task?identifier=http://x.org/task|none", body, JSON_PATCH);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    /* elv-b sees none of them */
    r = rh_request("elv-b", "PATCH", "/Task?identifier=http://x.org/task|cond-1", body, JSON_PATCH);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", "/Task", body, JSON_PATCH);
    rh_expect_outcome(&r, 400, NULL);
    rh_response_free(&r);
}
