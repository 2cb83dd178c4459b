/*
 * tests/test_rest.c — the FHIR REST API end to end: the real server on
 * loopback over mutual TLS, a test PKI made in a temporary directory, the
 * SQLite store, and libcurl as the client with each organisation's
 * certificate.
 *
 * Covers every status code the API produces, the identity and authorisation
 * matrix, versioning, search and history paging, batch and transaction
 * Bundles, conditional create under 32 concurrent clients, and durability
 * across a restart.
 */
#define _GNU_SOURCE /* strcasestr */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/json_compare.h"
#include "tests/rest_harness.h"

TestSuite(rest, .init = rh_setup, .fini = rh_teardown, .timeout = 120);

#define PATIENT "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Jansen\"}],\"gender\":\"female\"}"

/* ---- statuses ---- */

Test(rest, crud_versions_and_statuses)
{
    rh_response r = rh_request("hospital-a", "GET", "/metadata", NULL, NULL);
    cr_expect_eq(r.status, 200);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "CapabilityStatement");
    json_object_put(o);
    rh_response_free(&r);

    const char *created = rh_create("hospital-a", "Patient", PATIENT);
    char id[80], path[160], etag[64];
    snprintf(id, sizeof id, "%s", created);
    snprintf(path, sizeof path, "/Patient/%s", id);

    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(rh_header(&r, "ETag", etag, sizeof etag), "W/\"1\"");
    rh_response_free(&r);

    /* update with the right and the wrong If-Match */
    char body[512];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"name\":[{\"family\":\"Jansen\"}],\"gender\":\"other\"}",
             id);
    const char *match1[] = {"If-Match: W/\"1\"", NULL};
    r = rh_request("hospital-a", "PUT", path, body, match1);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(rh_header(&r, "ETag", etag, sizeof etag), "W/\"2\"");
    rh_response_free(&r);
    r = rh_request("hospital-a", "PUT", path, body, match1);
    rh_expect_outcome(&r, 412, "conflict");
    rh_response_free(&r);

    /* vread of version 1 still has the old gender */
    char vpath[200];
    snprintf(vpath, sizeof vpath, "%s/_history/1", path);
    r = rh_request("hospital-a", "GET", vpath, NULL, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_not_null(strstr(r.body, "\"female\""));
    rh_response_free(&r);

    /* delete, then 410 on read, history keeps three versions */
    r = rh_request("hospital-a", "DELETE", path, NULL, NULL);
    rh_expect_outcome(&r, 200, "informational");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 410, "deleted");
    rh_response_free(&r);
    snprintf(vpath, sizeof vpath, "%s/_history", path);
    r = rh_request("hospital-a", "GET", vpath, NULL, NULL);
    cr_expect_eq(r.status, 200);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "type"), "history");
    cr_expect_str_eq(rh_str(o, "total"), "3");
    cr_expect_str_eq(rh_str(o, "entry.0.request.method"), "DELETE");
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, client_errors)
{
    int n;
    const char *xml[] = {"Accept: application/fhir+xml", NULL};
    rh_response r = rh_request("hospital-a", "GET", "/metadata", NULL, xml);
    rh_expect_outcome(&r, 406, "not-supported");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient?_format=xml", NULL, NULL);
    rh_expect_outcome(&r, 406, "not-supported");
    rh_response_free(&r);

    r = rh_request("hospital-a", "POST", "/Patient", "{\"resourceType\":\"Patient\",", NULL);
    rh_expect_outcome(&r, 400, "structure");
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/Patient", "{\"resourceType\":\"Patient\",\"gender\":\"mal\"}", NULL);
    rh_expect_outcome(&r, 422, "code-invalid");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Patient.gender");
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/Patient", "{\"resourceType\":\"Practitioner\"}", NULL);
    rh_expect_outcome(&r, 400, "structure");
    rh_response_free(&r);
    const char *text[] = {"Content-Type: text/plain", NULL};
    r = rh_request("hospital-a", "POST", "/Patient", PATIENT, text);
    rh_expect_outcome(&r, 415, "not-supported");
    rh_response_free(&r);

    r = rh_request("hospital-a", "GET", "/Patient/does-not-exist", NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patientt/1", NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/Patient/1", "{}", NULL);
    rh_expect_outcome(&r, 405, "not-supported");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient/bad_id!", NULL, NULL);
    rh_expect_outcome(&r, 400, NULL);
    rh_response_free(&r);

    /* a 10,000-character id is not echoed whole */
    char *long_path = malloc(10000 + 16);
    strcpy(long_path, "/Patient/");
    memset(long_path + 9, 'a', 10000);
    long_path[10009] = '\0';
    r = rh_request("hospital-a", "GET", long_path, NULL, NULL);
    rh_expect_outcome(&r, 400, NULL);
    cr_expect_lt(r.len, 400, "the error quotes at most 64 bytes of the path: %zu bytes", r.len);
    cr_expect(strstr(r.body, "\u2026"), "%s", r.body);
    rh_response_free(&r);
    free(long_path);

    /* JSON nested deeper than the parser's limit is malformed (400), not too large (413) */
    char *deep = malloc(2 * 200 + 64);
    n = sprintf(deep, "{\"resourceType\":\"Patient\",\"x\":");
    for (int i = 0; i < 200; i++)
        deep[n++] = '[';
    for (int i = 0; i < 200; i++)
        deep[n++] = ']';
    strcpy(deep + n, "}");
    r = rh_request("hospital-a", "POST", "/Patient", deep, NULL);
    rh_expect_outcome(&r, 400, NULL);
    cr_expect(strstr(r.body, "nesting deeper than"), "%s", r.body);
    rh_response_free(&r);
    free(deep);

    /* the body limit of the server */
    size_t big = 300 * 1024;
    char *huge = malloc(big + 64);
    n = sprintf(huge, "{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"");
    memset(huge + n, 'a', big);
    strcpy(huge + n + big, "\"}]}");
    r = rh_request("hospital-a", "POST", "/Patient", huge, NULL);
    rh_expect_outcome(&r, 413, NULL);
    rh_response_free(&r);
    free(huge);

    /* X-Request-ID is echoed */
    const char *rid[] = {"X-Request-ID: test-request-42", NULL};
    r = rh_request("hospital-a", "GET", "/metadata", NULL, rid);
    char value[80];
    cr_expect_str_eq(rh_header(&r, "X-Request-ID", value, sizeof value), "test-request-42");
    rh_response_free(&r);
}

/* ---- identity and authorisation ---- */

Test(rest, identity_and_authorisation_matrix)
{
    /* certificates the TLS layer refuses: no HTTP at all */
    const char *refused[] = {"expired", "revoked", "foreign"};
    for (size_t i = 0; i < 3; i++) {
        rh_response r = rh_request(refused[i], "GET", "/metadata", NULL, NULL);
        cr_expect_neq(r.curl, CURLE_OK, "%s must be refused in the handshake", refused[i]);
        rh_response_free(&r);
    }
    rh_response r = rh_request("no-such-client", "GET", "/metadata", NULL, NULL);
    cr_expect_neq(r.curl, CURLE_OK, "no client certificate, no handshake");
    rh_response_free(&r);
    /* a valid certificate of an organisation the gateway does not know */
    r = rh_request("gzsp", "GET", "/metadata", NULL, NULL);
    rh_expect_outcome(&r, 401, "login");
    rh_response_free(&r);

    char id[80], path[160];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", id);
    /* the owner reads; other care providers do not learn it exists; the insurer gets no clinical data */
    struct {
        const char *who;
        long read, search_total;
    } matrix[] = {{"hospital-a", 200, 1}, {"hospital-b", 404, 0}, {"gp", 404, 0}, {"elv-a", 404, 0}, {"elv-b", 404, 0}};
    for (size_t i = 0; i < sizeof matrix / sizeof *matrix; i++) {
        r = rh_request(matrix[i].who, "GET", path, NULL, NULL);
        cr_expect_eq(r.status, matrix[i].read, "%s read: %ld", matrix[i].who, r.status);
        rh_response_free(&r);
        r = rh_request(matrix[i].who, "GET", "/Patient", NULL, NULL);
        json_object *o = rh_json(&r);
        cr_expect_eq(atoi(rh_str(o, "total")), matrix[i].search_total, "%s search", matrix[i].who);
        json_object_put(o);
        rh_response_free(&r);
        r = rh_request(matrix[i].who, "DELETE", path, NULL, NULL);
        if (matrix[i].read == 404)
            rh_expect_outcome(&r, 404, "not-found");
        rh_response_free(&r);
    }
    const char *insurer_paths[] = {"/Patient", "/CarePlan", "/Encounter", "/Task", "/Bundle", "/Goal", "/CareTeam"};
    for (size_t i = 0; i < sizeof insurer_paths / sizeof *insurer_paths; i++) {
        r = rh_request("insurer", "GET", insurer_paths[i], NULL, NULL);
        rh_expect_outcome(&r, 403, "forbidden");
        rh_response_free(&r);
    }
    r = rh_request("insurer", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request("insurer", "POST", "/Patient", PATIENT, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    /* the organisation directory is shared */
    r = rh_request("insurer", "GET", "/Organization", NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
}

/*
 * Every role against every interaction, on a clinical resource (a Patient of
 * hospital-a), a directory resource (elv-a's Organization) and a financial
 * one (the insurer's Coverage). Expected statuses by caller; the owner's
 * delete comes last.
 */
typedef struct matrix_row {
    const char *who;
    long read, vread, search, history, type_history, update, create, validate;
} matrix_row;

static void run_matrix(const char *type, const char *id, const char *body_fmt, const matrix_row *rows, size_t n)
{
    char path[200], vpath[240], hpath[240], tpath[120], search[120], validate[160], body[1200];
    snprintf(path, sizeof path, "/%s/%s", type, id);
    snprintf(vpath, sizeof vpath, "%s/_history/1", path);
    snprintf(hpath, sizeof hpath, "%s/_history", path);
    snprintf(tpath, sizeof tpath, "/%s/_history", type);
    snprintf(search, sizeof search, "/%s", type);
    snprintf(validate, sizeof validate, "/%s/$validate", type);
    for (size_t i = 0; i < n; i++) {
        const matrix_row *m = &rows[i];
        struct {
            const char *method, *p;
            long want;
            bool body;
        } calls[] = {
            {"GET", path, m->read, false},          {"GET", vpath, m->vread, false},
            {"GET", search, m->search, false},      {"GET", hpath, m->history, false},
            {"GET", tpath, m->type_history, false}, {"PUT", path, m->update, true},
            {"POST", search, m->create, true},      {"POST", validate, m->validate, true},
        };
        for (size_t k = 0; k < sizeof calls / sizeof *calls; k++) {
            snprintf(body, sizeof body, body_fmt, calls[k].method[1] == 'U' ? id : "x");
            rh_response r = rh_request(m->who, calls[k].method, calls[k].p, calls[k].body ? body : NULL, NULL);
            cr_expect_eq(r.status, calls[k].want, "%s %s %s: expected %ld, got %ld %s", m->who, calls[k].method,
                         calls[k].p, calls[k].want, r.status, r.body ? r.body : "");
            if (r.status >= 400)
                rh_expect_outcome(&r, r.status, NULL);
            rh_response_free(&r);
        }
    }
}

Test(rest, authorisation_matrix_every_role_every_interaction)
{
    char patient[80], org[80], coverage[80];
    snprintf(patient, sizeof patient, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(org, sizeof org, "%s",
             rh_create("elv-a", "Organization",
                       "{\"resourceType\":\"Organization\",\"name\":\"ELV A\",\"identifier\":[{\"system\":"
                       "\"http://fhir.nl/fhir/NamingSystem/ura\",\"value\":\"90000301\"}]}"));
    /* the insurer reads no Patient: its Coverage names the beneficiary by BSN (referential integrity) */
    const char *coverage_fmt = "{\"resourceType\":\"Coverage\",\"id\":\"%s\",\"status\":\"active\","
                               "\"beneficiary\":{\"identifier\":{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\","
                               "\"value\":\"999911120\"}},\"payor\":[{\"display\":\"Verzekeraar\"}]}";
    char cov_body[400];
    snprintf(cov_body, sizeof cov_body, coverage_fmt, "x");
    snprintf(coverage, sizeof coverage, "%s", rh_create("insurer", "Coverage", cov_body));

    const char *patient_fmt = "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"}";
    matrix_row clinical[] = {
        {"hospital-a", 200, 200, 200, 200, 200, 200, 201, 200}, {"hospital-b", 404, 404, 200, 404, 200, 404, 201, 200},
        {"gp", 404, 404, 200, 404, 200, 404, 201, 200},         {"elv-a", 404, 404, 200, 404, 200, 404, 201, 200},
        {"insurer", 403, 403, 403, 403, 403, 403, 403, 403},
    };
    run_matrix("Patient", patient, patient_fmt, clinical, sizeof clinical / sizeof *clinical);

    const char *org_fmt = "{\"resourceType\":\"Organization\",\"id\":\"%s\",\"name\":\"ELV A\"}";
    matrix_row directory[] = {
        {"elv-a", 200, 200, 200, 200, 200, 200, 201, 200},
        {"hospital-a", 200, 200, 200, 200, 200, 403, 201, 200},
        {"gp", 200, 200, 200, 200, 200, 403, 201, 200},
        {"insurer", 200, 200, 200, 200, 200, 403, 403, 200},
    };
    run_matrix("Organization", org, org_fmt, directory, sizeof directory / sizeof *directory);

    matrix_row financial[] = {
        {"insurer", 200, 200, 200, 200, 200, 200, 201, 200},
        {"hospital-a", 404, 404, 200, 404, 200, 404, 201, 200},
    };
    run_matrix("Coverage", coverage, coverage_fmt, financial, sizeof financial / sizeof *financial);

    /* delete, last: the owner may, others do not see it, the insurer may not touch clinical data */
    char path[160];
    snprintf(path, sizeof path, "/Patient/%s", patient);
    rh_response r = rh_request("insurer", "DELETE", path, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request("gp", "DELETE", path, NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("hospital-a", "DELETE", path, NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/metadata", NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    r = rh_request("insurer", "GET", "/metadata", NULL, NULL);
    cr_expect_eq(r.status, 200, "the CapabilityStatement is for everyone");
    rh_response_free(&r);
}

Test(rest, denials_are_logged_without_patient_data)
{
    char id[80], path[160], log[300];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s?name=Jansen", id);
    snprintf(log, sizeof log, "%s/errors.log", rh.dir);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *f = fopen(log, "w");
    dup2(fileno(f), STDERR_FILENO);
    rh_response r = rh_request("gp", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 404);
    rh_response_free(&r);
    r = rh_request("insurer", "GET", "/CarePlan", NULL, NULL);
    cr_expect_eq(r.status, 403);
    rh_response_free(&r);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    fclose(f);
    size_t len;
    FILE *in = fopen(log, "r");
    char text[4096] = "";
    len = fread(text, 1, sizeof text - 1, in);
    text[len] = '\0';
    fclose(in);
    cr_expect_not_null(strstr(text, "\"event\":\"denied\",\"decision\":\"hidden\",\"status\":404"), "%s", text);
    cr_expect_not_null(strstr(text, "\"ura\":\"90000201\""), "%s", text);
    cr_expect_not_null(strstr(text, "\"status\":403"), "%s", text);
    cr_expect_null(strstr(text, id), "no resource ids in the log: %s", text);
    cr_expect_null(strstr(text, "Jansen"), "no query strings or content in the log: %s", text);
}

/* Bad input never crashes or corrupts: mutated bodies get 4xx (or 2xx when still valid), and the server stays well. */
Test(rest, mutated_bodies_never_crash_the_server)
{
    const char *seeds[] = {
        "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Jansen\",\"given\":[\"A\"]}],\"birthDate\":\"1940-02-01\"}",
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"fullUrl\":\"urn:uuid:11111111-1111-4111-8111-"
        "111111111111\",\"resource\":{\"resourceType\":\"Patient\"},\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
        "{\"resource\":{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\",\"subject\":{\"reference\":"
        "\"urn:uuid:11111111-1111-4111-8111-111111111111\"}},\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}}]}",
    };
    const char *paths[] = {"/Patient", "/"};
    unsigned seed = 12345;
    const char alphabet[] = "{}[]\",:\\0123456789abcdefghijklmnopqrstuvwxyz-_ \x01\xc3\xff";
    int counts[6] = {0};
    for (int round = 0; round < 120; round++) {
        int which = round % 2;
        size_t len = strlen(seeds[which]);
        char *body = malloc(len + 1);
        memcpy(body, seeds[which], len + 1);
        int edits = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 4;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 20) % 5 == 0)
                body[at] = '\0', len = at ? at : 1; /* truncate */
            else
                body[at] = alphabet[(seed >> 12) % (sizeof alphabet - 1)];
        }
        rh_response r = rh_request("hospital-a", "POST", paths[which], body, NULL);
        cr_expect(r.curl == CURLE_OK, "round %d: the connection failed (%d)", round, r.curl);
        cr_expect((r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500),
                  "round %d: status %ld for %s", round, r.status, body);
        if (r.status >= 400)
            rh_expect_outcome(&r, r.status, NULL);
        counts[r.status / 100]++;
        rh_response_free(&r);
        free(body);
    }
    cr_log_info("mutated bodies: %d answered 2xx, %d answered 4xx", counts[2], counts[4]);
    cr_expect_gt(counts[4], 60, "most mutations are refused");
    rh_response r = rh_request("hospital-a", "GET", "/metadata", NULL, NULL);
    cr_expect_eq(r.status, 200, "still serving");
    rh_response_free(&r);
}

/* No TLS session is resumed: every connection's certificate is verified again (revocation takes effect).
 * TLS 1.2 session ids are what s_client -reconnect resumes reliably; tickets are off as well. */
Test(rest, tls_sessions_are_not_resumed)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%u -tls1_2 -reconnect -cert '%s/pki/clients/hospital-a.crt' "
             "-key '%s/pki/clients/hospital-a.key' -CAfile '%s/pki/ca.pem' </dev/null 2>/dev/null | "
             "grep -E '^(New|Reused),' | sort | uniq -c",
             rh.port, rh.dir, rh.dir, rh.dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[512] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    pclose(p);
    cr_expect_not_null(strstr(out, "New,"), "the handshakes happened: %s", out);
    cr_expect_null(strstr(out, "Reused,"), "no session may be resumed: %s", out);
}

Test(rest, task_addressed_to_the_receiver)
{
    /* the receiving ELV provider's Organization (what the gateway registers for it) */
    char org[600];
    snprintf(org, sizeof org,
             "{\"resourceType\":\"Organization\",\"identifier\":[{\"system\":"
             "\"http://fhir.nl/fhir/NamingSystem/ura\",\"value\":\"90000301\"}],\"name\":\"ELV A\"}");
    char org_id[80];
    snprintf(org_id, sizeof org_id, "%s", rh_create("elv-a", "Organization", org));
    char task[800];
    snprintf(task, sizeof task,
             "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"code\":{\"coding\":[{"
             "\"system\":\"http://snomed.info/sct\",\"code\":\"308292007\"}]},\"owner\":{\"reference\":"
             "\"Organization/%s\"}}",
             org_id);
    char id[80], path[160];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Task", task));
    snprintf(path, sizeof path, "/Task/%s", id);
    rh_response r = rh_request("elv-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200, "the addressed receiver reads the Task: %s", r.body);
    rh_response_free(&r);
    r = rh_request("elv-b", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("elv-a", "GET", "/Task?status=requested", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1");
    json_object_put(o);
    rh_response_free(&r);
    /* the receiver accepts it (updates status) but may not delete it */
    char accepted[900];
    snprintf(accepted, sizeof accepted,
             "{\"resourceType\":\"Task\",\"id\":\"%s\",\"status\":\"accepted\",\"intent\":\"order\",\"code\":{"
             "\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"308292007\"}]},\"owner\":"
             "{\"reference\":\"Organization/%s\"}}",
             id, org_id);
    r = rh_request("elv-a", "PUT", path, accepted, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    r = rh_request("elv-a", "DELETE", path, NULL, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    /* the directory entry of a registered organisation cannot be deleted while others address it */
    char org_path[160];
    snprintf(org_path, sizeof org_path, "/Organization/%s", org_id);
    r = rh_request("elv-a", "DELETE", org_path, NULL, NULL);
    rh_expect_outcome(&r, 409, "conflict");
    rh_response_free(&r);
}

/* ---- search and paging ---- */

Test(rest, search_paging_and_prefer)
{
    for (int i = 0; i < 12; i++) {
        char body[300];
        snprintf(body, sizeof body,
                 "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://x.org/mrn\",\"value\":\"%d\"}],"
                 "\"name\":[{\"family\":\"Müller\"}],\"birthDate\":\"19%02d-01-01\"}",
                 i, 40 + i);
        rh_create("hospital-a", "Patient", body);
    }
    rh_response r = rh_request("hospital-a", "GET", "/Patient?family=muller&_count=5", NULL, NULL);
    cr_expect_eq(r.status, 200);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "type"), "searchset");
    cr_expect_str_eq(rh_str(o, "total"), "12");
    cr_expect_eq(json_object_array_length(json_object_object_get(o, "entry")), 5);
    const char *next = rh_str(o, "link.1.url");
    cr_assert_not_null(next);
    cr_expect_str_eq(rh_str(o, "link.1.relation"), "next");
    char next_path[512];
    snprintf(next_path, sizeof next_path, "%s", strstr(next, "/Patient"));
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", next_path, NULL, NULL);
    o = rh_json(&r);
    cr_expect_eq(json_object_array_length(json_object_object_get(o, "entry")), 5);
    json_object_put(o);
    rh_response_free(&r);

    r = rh_request("hospital-a", "GET", "/Patient?identifier=http://x.org/mrn|7", NULL, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1");
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient?birthdate=ge1950-01-01", NULL, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "2", "1950 and 1951");
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient?birthdate=2024-13", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);

    const char *minimal[] = {"Prefer: return=minimal", NULL};
    r = rh_request("hospital-a", "POST", "/Patient", PATIENT, minimal);
    cr_expect_eq(r.status, 201);
    cr_expect_eq(r.len, 0, "return=minimal: no body");
    char loc[300];
    cr_expect_not_null(rh_header(&r, "Location", loc, sizeof loc));
    rh_response_free(&r);
    const char *outcome[] = {"Prefer: return=OperationOutcome", NULL};
    r = rh_request("hospital-a", "POST", "/Patient", PATIENT, outcome);
    rh_expect_outcome(&r, 201, "informational");
    rh_response_free(&r);
}

/* ---- Bundles ---- */

Test(rest, transaction_rewrites_urns_and_names_failing_entries)
{
    const char *txn = "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
                      "{\"fullUrl\":\"urn:uuid:11111111-1111-4111-8111-111111111111\",\"resource\":"
                      "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Bakker\"}]},"
                      "\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
                      "{\"fullUrl\":\"urn:uuid:22222222-2222-4222-8222-222222222222\",\"resource\":"
                      "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                      "\"subject\":{\"reference\":\"urn:uuid:11111111-1111-4111-8111-111111111111\"}},"
                      "\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}}]}";
    rh_response r = rh_request("hospital-a", "POST", "/", txn, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "type"), "transaction-response");
    cr_expect_str_eq(rh_str(o, "entry.0.response.status"), "201 Created");
    const char *patient_id = rh_str(o, "entry.0.resource.id");
    cr_assert_not_null(patient_id);
    char want[120];
    snprintf(want, sizeof want, "Patient/%s", patient_id);
    cr_expect_str_eq(rh_str(o, "entry.1.resource.subject.reference"), want, "the urn:uuid: reference is rewritten");
    char search[200];
    snprintf(search, sizeof search, "/CarePlan?subject=%s", want);
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", search, NULL, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1", "the search rows use the rewritten reference");
    json_object_put(o);
    rh_response_free(&r);

    /* one bad entry: nothing is written, the entry is named */
    const char *bad =
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"Patient\"},\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
        "{\"request\":{\"method\":\"DELETE\",\"url\":\"Patient/nope\"}}]}";
    r = rh_request("hospital-a", "POST", "/", bad, NULL);
    cr_expect_geq(r.status, 400);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "OperationOutcome");
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Bundle.entry[1]", "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient", NULL, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1", "the failed transaction wrote nothing");
    json_object_put(o);
    rh_response_free(&r);

    /* an invalid resource inside a transaction: 422 with the entry's path */
    const char *invalid = "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"resource\":{"
                          "\"resourceType\":\"Patient\",\"gender\":\"mal\"},\"request\":{\"method\":\"POST\",\"url\":"
                          "\"Patient\"}}]}";
    r = rh_request("hospital-a", "POST", "/", invalid, NULL);
    rh_expect_outcome(&r, 422, "code-invalid");
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Bundle.entry[0].resource.gender");
    json_object_put(o);
    rh_response_free(&r);
}

/*
 * Links in a narrative to other entries are rewritten as references are (transaction processing in the
 * spec: <a href> and <img src> too). Forty names, so the batch's name table grows while they are added;
 * an apostrophe in the text before a link must not hide it; an attribute that only contains a name, and
 * a name in the text, stay as written.
 */
Test(rest, transaction_rewrites_links_in_narratives_among_many_names)
{
    char *txn = NULL;
    size_t txn_len = 0;
    FILE *f = open_memstream(&txn, &txn_len);
    fputs("{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[", f);
    for (int i = 0; i < 40; i++)
        fprintf(f,
                "{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000004%02d\",\"resource\":{\"resourceType\":"
                "\"Patient\",\"name\":[{\"family\":\"Visser%d\"}]},\"request\":{\"method\":\"POST\",\"url\":"
                "\"Patient\"}},",
                i, i);
    fputs("{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000499\",\"resource\":{\"resourceType\":"
          "\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\",\"text\":{\"status\":\"generated\",\"div\":"
          "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\"><p>The patient's plan, see "
          "<a href=\\\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000437\\\">the patient</a> and "
          "<a title='x urn:uuid:6f1c2f1e-0000-4000-8000-000000000401' href='urn:uuid:6f1c2f1e-0000-4000-8000-"
          "000000000403'>another</a>; not urn:uuid:6f1c2f1e-0000-4000-8000-000000000437 in the text.</p></div>\"},"
          "\"subject\":{\"reference\":\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000437\"}},"
          "\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}}]}",
          f);
    fclose(f);
    rh_response r = rh_request("hospital-a", "POST", "/", txn, NULL);
    free(txn);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    char p37[120], p03[120];
    snprintf(p37, sizeof p37, "href=\"Patient/%s\"", rh_str(o, "entry.37.resource.id"));
    snprintf(p03, sizeof p03, "href='Patient/%s'", rh_str(o, "entry.3.resource.id"));
    const char *div = rh_str(o, "entry.40.resource.text.div");
    cr_assert_not_null(div, "%s", r.body);
    cr_expect(strstr(div, p37), "the double-quoted link after an apostrophe is rewritten: %s", div);
    cr_expect(strstr(div, p03), "the single-quoted link is rewritten: %s", div);
    cr_expect(strstr(div, "title='x urn:uuid:6f1c2f1e-0000-4000-8000-000000000401'"),
              "an attribute that only contains a name is kept: %s", div);
    cr_expect(strstr(div, "not urn:uuid:6f1c2f1e-0000-4000-8000-000000000437 in the text"),
              "a name in the text is kept: %s", div);
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, batch_entries_succeed_or_fail_on_their_own)
{
    const char *batch =
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"Patient\"},\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
        "{\"request\":{\"method\":\"GET\",\"url\":\"Patient/nope\"}},"
        "{\"resource\":{\"resourceType\":\"Goal\",\"lifecycleStatus\":\"active\",\"description\":{\"text\":"
        "\"walk\"},\"subject\":{\"reference\":\"Patient/p\"}},\"request\":{\"method\":\"POST\",\"url\":\"Goal\"}},"
        "{\"resource\":{\"resourceType\":\"Patient\",\"gender\":\"mal\"},\"request\":{\"method\":\"POST\","
        "\"url\":\"Patient\"}}]}";
    rh_response r = rh_request("hospital-a", "POST", "/", batch, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "type"), "batch-response");
    cr_expect_str_eq(rh_str(o, "entry.0.response.status"), "201 Created");
    cr_expect_str_eq(rh_str(o, "entry.1.response.status"), "404 Not Found");
    cr_expect_str_eq(rh_str(o, "entry.1.response.outcome.issue.0.expression.0"), "Bundle.entry[1]");
    /* a reference to a Patient that does not exist fails its entry alone (referential integrity) */
    cr_expect_str_eq(rh_str(o, "entry.2.response.status"), "422 Unprocessable Content");
    cr_expect_str_eq(rh_str(o, "entry.2.response.outcome.issue.0.expression.0"), "Goal.subject.reference");
    /* an invalid entry fails alone (issue 7, defect 10), with its location */
    cr_expect_str_eq(rh_str(o, "entry.3.response.status"), "422 Unprocessable Content");
    cr_expect_str_eq(rh_str(o, "entry.3.response.outcome.issue.0.expression.0"), "Bundle.entry[3].resource.gender");
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, validate_operation)
{
    rh_response r = rh_request("hospital-a", "POST", "/Patient/$validate",
                               "{\"resourceType\":\"Patient\",\"gender\":\"mal\"}", NULL);
    rh_expect_outcome(&r, 200, "code-invalid");
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/Patient/$validate", PATIENT, NULL);
    rh_expect_outcome(&r, 200, NULL);
    cr_expect_null(strstr(r.body, "\"error\""), "a valid Patient: warnings at most (dom-6): %s", r.body);
    rh_response_free(&r);
    /* mode: create, update and profile validate alike */
    const char *modes[] = {"/Patient/$validate?mode=create", "/Patient/$validate?mode=profile"};
    for (size_t i = 0; i < 2; i++) {
        r = rh_request("hospital-a", "POST", modes[i], "{\"resourceType\":\"Patient\",\"gender\":\"mal\"}", NULL);
        rh_expect_outcome(&r, 200, "code-invalid");
        rh_response_free(&r);
    }
    /* delete asks whether a DELETE would be carried out (test_access has the cases): of an id never used, 404 */
    r = rh_request("hospital-a", "POST", "/Patient/x/$validate",
                   "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"mode\",\"valueCode\":\"delete\"}]}",
                   NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/Patient/$validate?mode=create", "{\"resourceType\":", NULL);
    rh_expect_outcome(&r, 200, "structure"); /* the JSON's own fault, reported as the validation's finding */
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/Patient/$validate?mode=sideways", PATIENT, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    /* only a parameter named profile is the profile (not xprofile) */
    r = rh_request("hospital-a", "POST",
                   "/Patient/$validate?xprofile=http://hl7.org/fhir/StructureDefinition/Observation", PATIENT, NULL);
    rh_expect_outcome(&r, 200, NULL);
    cr_expect_null(strstr(r.body, "is for Observation"), "%s", r.body);
    rh_response_free(&r);
}

/* ---- concurrency and durability ---- */

typedef struct racer {
    int status;
    char id[80];
} racer;

static void *conditional_create(void *arg)
{
    racer *me = arg;
    const char *cond[] = {"If-None-Exist: identifier=http://x.org/mrn|race-1", NULL};
    rh_response r =
        rh_request("hospital-a", "POST", "/Patient",
                   "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://x.org/mrn\",\"value\":"
                   "\"race-1\"}]}",
                   cond);
    me->status = (int)r.status;
    char loc[300];
    if (rh_header(&r, "Location", loc, sizeof loc)) {
        const char *p = strstr(loc, "/Patient/");
        snprintf(me->id, sizeof me->id, "%.*s", (int)strcspn(p + 9, "/"), p + 9);
    }
    rh_response_free(&r);
    return NULL;
}

Test(rest, conditional_create_under_32_concurrent_clients)
{
    pthread_t t[32];
    racer racers[32] = {0};
    for (int i = 0; i < 32; i++)
        pthread_create(&t[i], NULL, conditional_create, &racers[i]);
    for (int i = 0; i < 32; i++)
        pthread_join(t[i], NULL);
    int created = 0, existing = 0;
    for (int i = 0; i < 32; i++) {
        created += racers[i].status == 201;
        existing += racers[i].status == 200;
        cr_expect_str_eq(racers[i].id, racers[0].id, "every client is pointed at the one resource");
    }
    cr_expect_eq(created, 1);
    cr_expect_eq(existing, 31);
    rh_response r = rh_request("hospital-a", "GET", "/Patient?identifier=http://x.org/mrn|race-1", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1");
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, durable_across_restart)
{
    char id[80], path[160];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", id);
    rh_stop_server();
    rh_start_server();
    rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200, "acknowledged before the restart, there after it");
    rh_response_free(&r);
}

typedef struct throttled {
    rh_response r;
} throttled;

static void *get_page_as_b(void *arg)
{
    throttled *t = arg;
    t->r = rh_request("hospital-b", "GET", "/Patient?_count=1", NULL, NULL);
    return NULL;
}

Test(rest, rate_limit_answers_429)
{
    rh_stop_server();
    /* a burst of 3, then one request per 5 s: slow sanitizer builds cannot refill the bucket in between */
    rh.opt.rate = 0.2;
    rh.opt.burst = 3;
    rh_start_server();
    /* all at once: one after the other, each with its own TLS handshake, they took
     * more than 1/3 s apiece under the sanitizers on a busy machine, and the bucket
     * refilled as fast as it was drained */
    enum { N = 8 };
    throttled t[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, get_page_as_b, &t[i]);
    int limited = 0;
    char retry[16] = "";
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (t[i].r.status == 429) {
            limited++;
            rh_header(&t[i].r, "Retry-After", retry, sizeof retry);
            rh_expect_outcome(&t[i].r, 429, "throttled");
        }
        rh_response_free(&t[i].r);
    }
    cr_expect_geq(limited, 4);
    cr_expect_geq(atoi(retry), 1);
    /* another organisation is not affected */
    rh_response r = rh_request("hospital-a", "GET", "/metadata", NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
}

/* ---- what every client does (issue 7) ---- */

/* Read, change a field, PUT back what was read (meta included): the stored resource stays valid JSON. */
Test(rest, read_modify_write_keeps_the_resource_intact)
{
    char id[80], path[160];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", id);
    for (int round = 0; round < 3; round++) {
        rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200);
        json_object *o = rh_json(&r);
        json_object_object_add(o, "gender", json_object_new_string(round % 2 ? "female" : "male"));
        rh_response_free(&r);
        r = rh_request("hospital-a", "PUT", path, json_object_to_json_string(o), NULL);
        cr_expect_eq(r.status, 200, "%s", r.body);
        rh_response_free(&r);
        json_object_put(o);
        r = rh_request("hospital-a", "GET", path, NULL, NULL);
        o = rh_json(&r);
        char version[8];
        snprintf(version, sizeof version, "%d", round + 2);
        cr_expect_str_eq(rh_str(o, "meta.versionId"), version);
        cr_expect_eq(json_object_object_length(json_object_object_get(o, "meta")), 2, "%s", r.body);
        json_object_put(o);
        rh_response_free(&r);
    }
    /* a create whose meta holds only versionId: the server's own meta replaces it */
    rh_response r = rh_request("hospital-a", "POST", "/Patient",
                               "{\"resourceType\":\"Patient\",\"meta\":{\"versionId\":\"7\"}}", NULL);
    cr_expect_eq(r.status, 201, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "meta.versionId"), "1");
    json_object_put(o);
    rh_response_free(&r);
    /* search and history Bundles that contain them stay valid (the harness validates every body) */
    r = rh_request("hospital-a", "GET", "/Patient", NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    snprintf(path, sizeof path, "/Patient/%s/_history", id);
    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    cr_expect_eq(rh_invalid_bodies(), 0);
}

/* If-Match: only a well-formed ETag of the current version applies the update (defect 9). */
Test(rest, if_match_is_enforced_for_every_value)
{
    char id[80], path[160], body[512];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", id);
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"other\"}", id);
    struct {
        const char *header;
        long status;
    } cases[] = {
        {"If-Match: W/\"abc\"", 400}, {"If-Match: W/\"1abc\"", 400}, {"If-Match: W/\"-1\"", 400},
        {"If-Match: 1", 400},         {"If-Match: W/\"0\"", 412},    {"If-Match: W/\"2\"", 412},
        {"If-Match: \"1\"", 200},     {"If-Match: W/\"1\"", 412},    {"If-Match: W/\"2\"", 200},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *h[] = {cases[i].header, NULL};
        rh_response r = rh_request("hospital-a", "PUT", path, body, h);
        cr_expect_eq(r.status, cases[i].status, "%s: %ld %s", cases[i].header, r.status, r.body);
        rh_response_free(&r);
    }
    /* a malformed If-Match on delete is refused too; the resource stays */
    const char *bad[] = {"If-Match: W/\"x\"", NULL};
    rh_response r = rh_request("hospital-a", "DELETE", path, NULL, bad);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
}

/* If-None-Match and If-Modified-Since answer 304 when the client's copy is current. */
Test(rest, conditional_read_answers_304)
{
    char id[80], path[160], etag[64], modified[64];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", id);
    rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_assert_not_null(rh_header(&r, "ETag", etag, sizeof etag));
    cr_assert_not_null(rh_header(&r, "Last-Modified", modified, sizeof modified));
    rh_response_free(&r);
    char h1[128], h2[128];
    snprintf(h1, sizeof h1, "If-None-Match: %s", etag);
    snprintf(h2, sizeof h2, "If-Modified-Since: %s", modified);
    const char *same[] = {h1, NULL}, *since[] = {h2, NULL};
    const char *other[] = {"If-None-Match: W/\"7\", W/\"8\"", NULL};
    const char *old[] = {"If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT", NULL};
    r = rh_request("hospital-a", "GET", path, NULL, same);
    cr_expect_eq(r.status, 304);
    cr_expect_eq(r.len, 0);
    cr_expect_not_null(rh_header(&r, "ETag", etag, sizeof etag));
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, since);
    cr_expect_eq(r.status, 304);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, other);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, old);
    cr_expect_eq(r.status, 200);
    rh_response_free(&r);
    /* someone who may not see it learns nothing from a conditional read */
    r = rh_request("hospital-b", "GET", path, NULL, same);
    cr_expect_eq(r.status, 404);
    rh_response_free(&r);
}

#define MRN_PATIENT(value, gender)                                                                              \
    "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://x.org/mrn\",\"value\":\"" value "\"}]," \
    "\"gender\":\"" gender "\"}"

Test(rest, conditional_update_and_delete)
{
    const char *path = "/Patient?identifier=http://x.org/mrn|c-1";
    rh_response r = rh_request("hospital-a", "PUT", path, MRN_PATIENT("c-1", "male"), NULL);
    cr_expect_eq(r.status, 201, "no match: created: %s", r.body);
    json_object *o = rh_json(&r);
    char id[80];
    snprintf(id, sizeof id, "%s", rh_str(o, "id"));
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "PUT", path, MRN_PATIENT("c-1", "female"), NULL);
    cr_expect_eq(r.status, 200, "one match: updated: %s", r.body);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "id"), id);
    cr_expect_str_eq(rh_str(o, "meta.versionId"), "2");
    json_object_put(o);
    rh_response_free(&r);
    /* an id in the body that is not the match's */
    r = rh_request("hospital-a", "PUT", path,
                   "{\"resourceType\":\"Patient\",\"id\":\"other\",\"identifier\":[{\"system\":\"http://x.org/mrn\","
                   "\"value\":\"c-1\"}]}",
                   NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    /* another organisation's conditional update does not see hospital-a's Patient: it creates its own */
    r = rh_request("hospital-b", "PUT", path, MRN_PATIENT("c-1", "other"), NULL);
    cr_expect_eq(r.status, 201, "%s", r.body);
    rh_response_free(&r);
    /* two matches: 412 */
    rh_create("hospital-a", "Patient", MRN_PATIENT("c-1", "unknown"));
    r = rh_request("hospital-a", "PUT", path, MRN_PATIENT("c-1", "male"), NULL);
    rh_expect_outcome(&r, 412, "multiple-matches");
    rh_response_free(&r);
    r = rh_request("hospital-a", "DELETE", path, NULL, NULL);
    rh_expect_outcome(&r, 412, "multiple-matches");
    rh_response_free(&r);
    /* no parameters: refused, never "everything" */
    r = rh_request("hospital-a", "DELETE", "/Patient", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    /* a conditional delete of exactly one */
    char one[200];
    snprintf(one, sizeof one, "/Patient?_id=%s", id);
    r = rh_request("hospital-a", "DELETE", one, NULL, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    char read[160];
    snprintf(read, sizeof read, "/Patient/%s", id);
    r = rh_request("hospital-a", "GET", read, NULL, NULL);
    cr_expect_eq(r.status, 410);
    rh_response_free(&r);
    r = rh_request("hospital-a", "DELETE", "/Patient?identifier=http://x.org/mrn|nobody", NULL, NULL);
    rh_expect_outcome(&r, 200, "informational");
    rh_response_free(&r);
}

/* HEAD is GET without the body (RFC 9110 9.3.2), wherever GET is answered: the same status and headers. */
Test(rest, head_answers_as_get_does_without_the_body)
{
    char id[80], paths[8][200];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    const char *const formats[] = {"/metadata",
                                   "/Patient/%s",
                                   "/Patient/%s/_history/1",
                                   "/Patient/%s/_history",
                                   "/Patient?_id=%s",
                                   "/Patient/_search?_id=%s",
                                   "/_history?_count=1",
                                   "/Patient/nothing-%.4s"};
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++) {
        snprintf(paths[i], sizeof paths[i], formats[i], id);
        rh_response get = rh_request("hospital-a", "GET", paths[i], NULL, NULL);
        rh_response head = rh_request("hospital-a", "HEAD", paths[i], NULL, NULL);
        cr_expect_eq(head.curl, CURLE_OK, "HEAD %s: %s", paths[i], curl_easy_strerror(head.curl));
        cr_expect_eq(head.status, get.status, "HEAD %s: %ld, GET %ld", paths[i], head.status, get.status);
        cr_expect_eq(head.len, 0, "HEAD %s sent %zu body bytes", paths[i], head.len);
        cr_expect_gt(get.len, 0, "GET %s has a body", paths[i]);
        const char *const same[] = {"Content-Type", "ETag", "Last-Modified", "Location"};
        for (size_t h = 0; h < sizeof same / sizeof *same; h++) {
            char a[256], b[256];
            const char *g = rh_header(&get, same[h], a, sizeof a), *x = rh_header(&head, same[h], b, sizeof b);
            cr_expect((!g && !x) || (g && x && !strcmp(g, x)), "HEAD %s: %s %s, GET's %s", paths[i], same[h],
                      x ? x : "(none)", g ? g : "(none)");
        }
        /* an answer of known length announces the length GET sends (a streamed one is chunked in both) */
        char lg[32], lh[32];
        const char *length_get = rh_header(&get, "Content-Length", lg, sizeof lg);
        const char *length_head = rh_header(&head, "Content-Length", lh, sizeof lh);
        if (length_get)
            cr_expect(length_head && strtoul(length_head, NULL, 10) == get.len,
                      "HEAD %s: Content-Length %s, GET sent %zu", paths[i], length_head ? length_head : "(none)",
                      get.len);
        else
            cr_expect_null(length_head, "HEAD %s: a length GET did not announce", paths[i]);
        rh_response_free(&get);
        rh_response_free(&head);
    }
    /* the same access as GET: an insurer reads no Patient, another provider finds none */
    rh_response r = rh_request("insurer", "HEAD", paths[1], NULL, NULL);
    cr_expect_eq(r.status, 403);
    cr_expect_eq(r.len, 0);
    rh_response_free(&r);
    r = rh_request("elv-b", "HEAD", paths[1], NULL, NULL);
    cr_expect_eq(r.status, 404);
    rh_response_free(&r);
    /* where GET is not answered, neither is HEAD; every Allow with GET has HEAD */
    r = rh_request("hospital-a", "HEAD", "/Patient/$validate", NULL, NULL);
    cr_expect_eq(r.status, 405);
    char allow[64];
    cr_expect_str_eq(rh_header(&r, "Allow", allow, sizeof allow), "POST");
    rh_response_free(&r);
    r = rh_request("hospital-a", "DELETE", "/Patient/_search", NULL, NULL);
    cr_expect_eq(r.status, 405);
    cr_expect_str_eq(rh_header(&r, "Allow", allow, sizeof allow), "GET, HEAD, POST");
    rh_response_free(&r);
}

/* The members of a JSON object, in order, comma-separated. */
static void member_names(json_object *o, char *out, size_t size)
{
    out[0] = '\0';
    json_object_object_foreach(o, k, v)
    {
        (void)v;
        snprintf(out + strlen(out), size - strlen(out), "%s%s", out[0] ? "," : "", k);
    }
}

/* _summary and _elements on a read and on a search's matches (fhir/subset.h); every body is validated by the
 * harness, so a subset that is not valid R4 fails here too. */
Test(rest, summary_and_elements_cut_what_is_answered)
{
    const char *patient = "{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":"
                          "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">Jansen</div>\"},\"name\":[{\"family\":"
                          "\"Jansen\"}],\"gender\":\"female\",\"maritalStatus\":{\"text\":\"M\"},\"contact\":[{"
                          "\"name\":{\"family\":\"Smit\"}}],\"managingOrganization\":{\"reference\":"
                          "\"Organization/ura-90000101\"}}";
    char id[80], path[300], names[300];
    rh_publish_directory(); /* the Organization the Patient refers to, for _include */
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", patient));
    struct {
        const char *query, *members;
    } reads[] = {
        {"_elements=name", "resourceType,id,meta,name"},
        {"_summary=true", "resourceType,id,meta,name,gender,managingOrganization"},
        {"_summary=text", "resourceType,id,meta,text"},
        {"_summary=data", "resourceType,id,meta,name,gender,maritalStatus,contact,managingOrganization"},
    };
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++) {
        snprintf(path, sizeof path, "/Patient/%s?%s", id, reads[i].query);
        rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
        cr_expect_eq(r.status, 200, "%s: %s", path, r.body);
        json_object *o = rh_json(&r);
        member_names(o, names, sizeof names);
        cr_expect_str_eq(names, reads[i].members, "%s", path);
        cr_expect(tj_has_tag(o, "SUBSETTED"), "%s: tagged SUBSETTED", path);
        json_object_put(o);
        rh_response_free(&r);
    }
    /* _summary=false, and no parameter: the resource whole, untagged */
    snprintf(path, sizeof path, "/Patient/%s?_summary=false", id);
    rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_not_null(json_object_object_get(o, "contact"));
    cr_expect_not(tj_has_tag(o, "SUBSETTED"));
    json_object_put(o);
    rh_response_free(&r);

    /* a search cuts its matches, not what _include brings */
    snprintf(path, sizeof path, "/Patient?_id=%s&_elements=gender&_include=Patient:organization", id);
    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    o = rh_json(&r);
    json_object *entries = json_object_object_get(o, "entry");
    size_t matches = 0, included = 0;
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        json_object *e = json_object_array_get_idx(entries, i), *res = json_object_object_get(e, "resource");
        const char *mode = rh_str(e, "search.mode");
        cr_expect_str_neq(mode, "outcome", "_elements is applied, not reported as ignored");
        if (!strcmp(mode, "match")) {
            matches++;
            member_names(res, names, sizeof names);
            cr_expect_str_eq(names, "resourceType,id,meta,gender");
            cr_expect(tj_has_tag(res, "SUBSETTED"));
        } else {
            included++;
            cr_expect_not(tj_has_tag(res, "SUBSETTED"), "an included %s is whole", rh_str(res, "resourceType"));
        }
    }
    cr_expect_eq(matches, 1);
    cr_expect_eq(included, 1, "the managing Organization");
    json_object_put(o);
    rh_response_free(&r);

    /* paging keeps the cut: the next page's match is cut too, while another organisation writes between */
    const char *paged = "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Paged\"}],\"gender\":\"male\"}";
    rh_create("hospital-a", "Patient", paged);
    rh_create("hospital-a", "Patient", paged);
    snprintf(path, sizeof path, "/Patient?family=Paged&_elements=gender&_count=1");
    for (int page = 0; page < 2; page++) {
        r = rh_request("hospital-a", "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
        o = rh_json(&r);
        json_object *match = json_object_array_get_idx(json_object_object_get(o, "entry"), 0);
        member_names(json_object_object_get(match, "resource"), names, sizeof names);
        cr_expect_str_eq(names, "resourceType,id,meta,gender", "page %d", page + 1);
        json_object *links = json_object_object_get(o, "link");
        const char *next = NULL;
        for (size_t i = 0; i < json_object_array_length(links); i++)
            if (!strcmp(rh_str(json_object_array_get_idx(links, i), "relation"), "next"))
                next = rh_str(json_object_array_get_idx(links, i), "url");
        if (page == 0) {
            cr_assert_not_null(next, "two matches at one a page: a next page");
            snprintf(path, sizeof path, "%s", strstr(next, "/Patient?"));
            rh_create("hospital-b", "Patient", paged); /* another organisation writes between the pages */
        }
        json_object_put(o);
        rh_response_free(&r);
    }

    /* values it does not understand: 400 naming the parameter, for a read and a search */
    const char *bad[] = {"/Patient/%s?_summary=short", "/Patient?_id=%s&_summary=short",
                         "/Patient?_id=%s&_summary=true&_elements=name", "/Patient/%s?_elements=name,%%3Cb%%3E"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, bad[i], id);
        r = rh_request("hospital-a", "GET", path, NULL, NULL);
        rh_expect_outcome(&r, 400, "invalid");
        rh_response_free(&r);
    }
}

Test(rest, smaller_client_expectations)
{
    /* 405 says what is allowed */
    rh_response r = rh_request("hospital-a", "PUT", "/metadata", "{}", NULL);
    rh_expect_outcome(&r, 405, "not-supported");
    char allow[64];
    cr_expect_str_eq(rh_header(&r, "Allow", allow, sizeof allow), "GET, HEAD");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient/$validate", NULL, NULL);
    rh_expect_outcome(&r, 405, "not-supported");
    cr_expect_str_eq(rh_header(&r, "Allow", allow, sizeof allow), "POST");
    rh_response_free(&r);
    /* an invalid id is invalid, not "not found"; a huge one is not echoed whole */
    r = rh_request("hospital-a", "GET", "/Patient/bad_id!", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    char huge[2100] = "/Patient/";
    memset(huge + 9, 'a', 2000);
    huge[2009] = '\0';
    r = rh_request("hospital-a", "GET", huge, NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    cr_expect_lt(r.len, 600, "the id is not echoed whole: %zu bytes", r.len);
    rh_response_free(&r);
    /* _format with an unencoded '+' */
    r = rh_request("hospital-a", "GET", "/Patient?_format=application/fhir+json", NULL, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    /* $validate knows the core profiles */
    r = rh_request("hospital-a", "POST", "/Patient/$validate?profile=http://hl7.org/fhir/StructureDefinition/Patient",
                   PATIENT, NULL);
    cr_expect_eq(r.status, 200);
    json_object *o = rh_json(&r);
    cr_expect_str_neq((char *)rh_str(o, "issue.0.severity"), "error", "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST",
                   "/Patient/$validate?profile=http://hl7.org/fhir/StructureDefinition/Observation", PATIENT, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.severity"), "error", "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
}

/* The operations besides $validate (every type has that), and the tests that run them. */
static const struct {
    const char *type, *operation;
} type_operations[] = {
    {"StructureMap", "transform"},      /* rest_transform.c, test_insurer */
    {"CarePlan", "gzsp-check"},         /* rest_compliance.c, test_compliance_rest */
    {"CarePlan", "compliance"},         /* ... */
    {"Encounter", "compliance"},        /* ... */
    {"Organization", "contract-check"}, /* ... */
    {"Subscription", "status"},         /* on an instance: rest_subscription.c, test_subscription */
    {"Subscription", "events"},         /* ... */
};

static bool type_has_operation(const char *type, const char *operation)
{
    for (size_t i = 0; i < sizeof type_operations / sizeof *type_operations; i++)
        if (!strcmp(type_operations[i].type, type) && !strcmp(type_operations[i].operation, operation))
            return true;
    return false;
}

/* Every operation the CapabilityStatement lists is dispatched; any other name, at any level, is 404. */
Test(rest, operations_listed_are_the_operations_dispatched)
{
    rh_response r = rh_request("hospital-a", "GET", "/metadata", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_object *cs = rh_json(&r);
    json_object *rest = json_object_array_get_idx(json_object_object_get(cs, "rest"), 0);
    json_object *sysops = json_object_object_get(rest, "operation");
    cr_expect_eq(json_object_array_length(sysops), 1, "the one system-level operation is $handover");
    json_object *resources = json_object_object_get(rest, "resource");
    size_t listed = 0;
    for (size_t i = 0; i < json_object_array_length(resources); i++) {
        json_object *res = json_object_array_get_idx(resources, i);
        json_object *ops = json_object_object_get(res, "operation");
        for (size_t k = 0; ops && k < json_object_array_length(ops); k++, listed++) {
            const char *name = rh_str(json_object_array_get_idx(ops, k), "name");
            cr_expect(!strcmp(name, "validate") || type_has_operation(rh_str(res, "type"), name),
                      "%s lists $%s, which is not dispatched for it", rh_str(res, "type"), name);
        }
    }
    cr_expect_gt(listed, 100, "every resource type lists $validate");
    json_object_put(cs);
    rh_response_free(&r);
    /* ... and they are dispatched (this server has no rule pack: 503 saying so, not 404) */
    const char *const compliance_ops[] = {"/CarePlan/$gzsp-check", "/Organization/$contract-check?kind=ELV"};
    for (size_t i = 0; i < sizeof compliance_ops / sizeof *compliance_ops; i++) {
        r = rh_request("hospital-a", "POST", compliance_ops[i], "{\"resourceType\":\"Organization\"}", NULL);
        cr_expect_neq(r.status, 404, "%s: %s", compliance_ops[i], r.body);
        rh_response_free(&r);
    }
    r = rh_request("hospital-a", "POST", "/Patient/$validate", PATIENT, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    /* unknown operations, wherever they are asked for */
    const char *const unknown[] = {"/Patient/$everything", "/Patient/p1/$everything", "/$gzsp-check", "/Task/$validat"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        r = rh_request("hospital-a", "POST", unknown[i], PATIENT, NULL);
        rh_expect_outcome(&r, 404, "not-supported");
        json_object *o = rh_json(&r);
        cr_expect_not_null(strstr(rh_str(o, "issue.0.diagnostics"), "is not supported"), "%s", r.body);
        json_object_put(o);
        rh_response_free(&r);
    }
}

/* Issue 9: nothing the client sent is cut to a buffer: a long Bundle request.url works whole, its location is
 * whole, and what an error quotes is cut visibly. */
Test(rest, long_values_are_used_whole_or_refused)
{
    char value[701], body[2400];
    memset(value, '7', 700);
    value[700] = '\0';
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"resource\":{\"resourceType\":"
             "\"Patient\",\"identifier\":[{\"system\":\"http://example.org/mrn\",\"value\":\"%s\"}]},\"request\":{"
             "\"method\":\"PUT\",\"url\":\"Patient?identifier=http://example.org/mrn|%s\"}}]}",
             value, value);
    char location[2][300];
    for (int round = 0; round < 2; round++) { /* creates, then finds what it created by the same long url */
        rh_response r = rh_request("hospital-a", "POST", "/", body, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_object *o = rh_json(&r);
        cr_expect_str_eq(rh_str(o, "entry.0.response.status"), round ? "200 OK" : "201 Created", "%s", r.body);
        snprintf(location[round], sizeof location[round], "%s", rh_str(o, "entry.0.response.location"));
        json_object_put(o);
        rh_response_free(&r);
    }
    cr_expect_eq(strncmp(location[0], "https://127.0.0.1/Patient/", 26), 0, "%s", location[0]);
    cr_expect_eq(strncmp(location[0], location[1], strlen(location[0]) - 2), 0, "the same Patient");
    /* an entry that fails quotes at most RT_ECHO_MAX bytes of its url, cut visibly */
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"request\":{\"method\":\"GET\",\"url\":"
             "\"Patient/%s/$everything\"}}]}",
             value);
    rh_response r = rh_request("hospital-a", "POST", "/", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    const char *why = rh_str(o, "entry.0.response.outcome.issue.0.diagnostics");
    cr_assert_not_null(why, "%s", r.body);
    cr_expect_not_null(strstr(why, "\u2026"), "%s", why);
    cr_expect_lt(strlen(why), 300, "%s", why);
    json_object_put(o);
    rh_response_free(&r);
    /* history paging parameters that are not numbers are refused, not read as 0 */
    r = rh_request("hospital-a", "GET", "/Patient/_history?_count=ten", NULL, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "_count");
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/_history?_getpagesoffset=2000000", NULL, NULL);
    cr_expect_eq(r.status, 200, "an offset past the end is an empty page: %s", r.body);
    rh_response_free(&r);
}

/* ---- transactions as hospitals send them (issue 7, defects 2-4) ---- */

/* A discharge transfer: Patient (conditional on its BSN), Encounter and Task referring to it by urn:uuid. */
static const char *const TRANSFER =
    "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
    "{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000001\",\"resource\":{\"resourceType\":\"Patient\","
    "\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999911120\"},"
    "{\"system\":\"urn:ietf:rfc:3986\",\"value\":\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000001\"}]},"
    "\"request\":{\"method\":\"POST\",\"url\":\"Patient\",\"ifNoneExist\":"
    "\"identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120\"}},"
    "{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000002\",\"resource\":{\"resourceType\":\"Encounter\","
    "\"status\":\"finished\",\"class\":{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":"
    "\"IMP\"},\"subject\":{\"reference\":\"urn:uuid:6f1c2f1e-0000-4000-8000-000000000001\"}},"
    "\"request\":{\"method\":\"POST\",\"url\":\"Encounter\"}}]}";

static void reference_of(const char *who, const char *location_or_path, const char *member, char *out, size_t size)
{
    char path[300];
    const char *p = strstr(location_or_path, "/Encounter/");
    snprintf(path, sizeof path, "%.*s", (int)(strstr(p, "/_history") ? strstr(p, "/_history") - p : (long)strlen(p)),
             p);
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
    json_object *o = rh_json(&r);
    snprintf(out, size, "%s", rh_str(o, member) ? rh_str(o, member) : "");
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, resent_transaction_points_at_the_matched_patient)
{
    char patient[80] = "", subject[2][200];
    for (int round = 0; round < 2; round++) {
        rh_response r = rh_request("hospital-a", "POST", "/", TRANSFER, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_object *o = rh_json(&r);
        cr_expect_str_eq(rh_str(o, "entry.0.response.status"), round ? "200 OK" : "201 Created");
        const char *loc = rh_str(o, "entry.0.response.location");
        const char *p = strstr(loc, "/Patient/");
        if (!round)
            snprintf(patient, sizeof patient, "Patient/%.*s", (int)strcspn(p + 9, "/"), p + 9);
        reference_of("hospital-a", rh_str(o, "entry.1.response.location"), "subject.reference", subject[round],
                     sizeof subject[round]);
        json_object_put(o);
        rh_response_free(&r);
    }
    cr_expect_str_eq(subject[0], patient);
    cr_expect_str_eq(subject[1], patient, "the re-sent Encounter refers to the Patient that matched, not a fresh id");
    /* exactly one Patient, and its identifier that equals the fullUrl is data, not a reference: untouched */
    rh_response r = rh_request("hospital-a", "GET",
                               "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1");
    cr_expect_str_eq(rh_str(o, "entry.0.resource.identifier.1.value"), "urn:uuid:6f1c2f1e-0000-4000-8000-000000000001");
    json_object_put(o);
    rh_response_free(&r);
    /* the rewritten subject is searchable */
    char search[200];
    snprintf(search, sizeof search, "/Encounter?subject=%s", patient);
    r = rh_request("hospital-a", "GET", search, NULL, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "2");
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, transaction_conditions_on_entries)
{
    char id[80], body[1200];
    snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", PATIENT));
    /* a stale ifMatch: the whole transaction fails with 412, nothing written */
    snprintf(
        body, sizeof body,
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"},"
        "\"request\":{\"method\":\"PUT\",\"url\":\"Patient/%s\",\"ifMatch\":\"W/\\\"5\\\"\"}},"
        "{\"resource\":{\"resourceType\":\"Patient\",\"gender\":\"male\"},\"request\":{\"method\":\"POST\",\"url\":"
        "\"Patient\"}}]}",
        id, id);
    rh_response r = rh_request("hospital-a", "POST", "/", body, NULL);
    rh_expect_outcome(&r, 412, "conflict");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient", NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "total"), "1", "nothing of the failed transaction was written");
    json_object_put(o);
    rh_response_free(&r);
    /* the same resource twice: 400 */
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
             "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"},"
             "\"request\":{\"method\":\"PUT\",\"url\":\"Patient/%s\"}},"
             "{\"request\":{\"method\":\"DELETE\",\"url\":\"Patient/%s\"}}]}",
             id, id, id);
    r = rh_request("hospital-a", "POST", "/", body, NULL);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    /* a batch: ifMatch per entry, vread of version 1, ifNoneMatch answered 304 */
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
             "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"},"
             "\"request\":{\"method\":\"PUT\",\"url\":\"Patient/%s\",\"ifMatch\":\"W/\\\"1\\\"\"}},"
             "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"other\"},"
             "\"request\":{\"method\":\"PUT\",\"url\":\"Patient/%s\",\"ifMatch\":\"W/\\\"abc\\\"\"}}]}",
             id, id, id, id);
    r = rh_request("hospital-a", "POST", "/", body, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.0.response.status"), "200 OK", "%s", r.body);
    cr_expect_str_eq(rh_str(o, "entry.1.response.status"), "400 Bad Request");
    json_object_put(o);
    rh_response_free(&r);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
             "{\"request\":{\"method\":\"GET\",\"url\":\"Patient/%s/_history/1\"}},"
             "{\"request\":{\"method\":\"GET\",\"url\":\"Patient/%s\",\"ifNoneMatch\":\"W/\\\"2\\\"\"}},"
             "{\"request\":{\"method\":\"GET\",\"url\":\"Patient/%s\",\"ifNoneMatch\":\"W/\\\"1\\\"\"}}]}",
             id, id, id);
    r = rh_request("hospital-a", "POST", "/", body, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.0.resource.meta.versionId"), "1", "vread reads the version asked for");
    cr_expect_str_eq(rh_str(o, "entry.0.resource.gender"), "female");
    cr_expect_str_eq(rh_str(o, "entry.1.response.status"), "304 Not Modified");
    cr_expect_null(rh_str(o, "entry.1.resource"));
    cr_expect_str_eq(rh_str(o, "entry.2.response.status"), "200 OK");
    cr_expect_str_eq(rh_str(o, "entry.2.resource.gender"), "male");
    json_object_put(o);
    rh_response_free(&r);
}

Test(rest, conditional_references_and_updates_in_a_transaction)
{
    rh_create("hospital-a", "Patient", MRN_PATIENT("t-1", "female"));
    const char *tx =
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"Encounter\",\"status\":\"planned\",\"class\":{\"system\":"
        "\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"IMP\"},\"subject\":{\"reference\":"
        "\"Patient?identifier=http://x.org/mrn|t-1\"}},\"request\":{\"method\":\"POST\",\"url\":\"Encounter\"}},"
        "{\"resource\":{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://x.org/mrn\",\"value\":"
        "\"t-2\"}]},\"request\":{\"method\":\"PUT\",\"url\":\"Patient?identifier=http://x.org/mrn|t-2\"}}]}";
    rh_response r = rh_request("hospital-a", "POST", "/", tx, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.1.response.status"), "201 Created", "a conditional PUT with no match creates");
    char subject[200];
    reference_of("hospital-a", rh_str(o, "entry.0.response.location"), "subject.reference", subject, sizeof subject);
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient?identifier=http://x.org/mrn|t-1", NULL, NULL);
    o = rh_json(&r);
    char want[200];
    snprintf(want, sizeof want, "Patient/%s", rh_str(o, "entry.0.resource.id"));
    json_object_put(o);
    rh_response_free(&r);
    cr_expect_str_eq(subject, want, "the conditional reference is resolved to its one match");
    /* a conditional reference that matches nothing (or only what the caller may not see) fails the transaction */
    r = rh_request("hospital-b", "POST", "/", tx, NULL);
    rh_expect_outcome(&r, 412, NULL);
    rh_response_free(&r);
    /* the conditional PUT again: now it updates the one it created */
    r = rh_request("hospital-a", "POST", "/", tx, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.1.response.status"), "200 OK", "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
}

/* References must resolve here: to a resource that exists, that the writer may read, of an allowed type. */
Test(rest, referential_integrity_on_write)
{
    char mine[80], theirs[80], body[600];
    snprintf(mine, sizeof mine, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(theirs, sizeof theirs, "%s", rh_create("hospital-b", "Patient", PATIENT));
    const char *fmt = "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\",\"subject\":%s}";
    struct {
        const char *subject;
        long status;
    } cases[] = {
        {"{\"reference\":\"Patient/%s\"}", 201},                   /* mine */
        {"{\"reference\":\"https://127.0.0.1/Patient/%s\"}", 201}, /* mine, against our own base */
        {"{\"reference\":\"Patient/%s\"}", 422},                   /* hospital-b's: not known to hospital-a */
        {"{\"reference\":\"Patient/does-not-exist\"}", 422},       /* does not exist */
        {"{\"reference\":\"Practitioner/%s\"}", 422},              /* a type CarePlan.subject does not take */
        {"{\"reference\":\"https://elsewhere.example/fhir/Patient/1\"}", 201}, /* another server's */
        {"{\"identifier\":{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999911120\"}}", 201},
    };
    char first_unknown[300] = "";
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char subject[300];
        snprintf(subject, sizeof subject, cases[i].subject, i == 2 ? theirs : mine);
        snprintf(body, sizeof body, fmt, subject);
        rh_response r = rh_request("hospital-a", "POST", "/CarePlan", body, NULL);
        cr_expect_eq(r.status, cases[i].status, "case %zu: %ld %s", i, r.status, r.body);
        if (r.status == 422) {
            json_object *o = rh_json(&r);
            cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "CarePlan.subject.reference");
            const char *d = rh_str(o, "issue.0.diagnostics");
            if (i == 4)
                cr_expect_not_null(strstr(d, "Reference(Group | Patient)"), "%s", d);
            /* someone else's and a missing Patient read alike, ids aside */
            const char *after_id = strstr(d, " is not known");
            if (after_id && !first_unknown[0])
                snprintf(first_unknown, sizeof first_unknown, "%s", after_id);
            else if (after_id)
                cr_expect_str_eq(after_id, first_unknown);
            json_object_put(o);
        }
        rh_response_free(&r);
    }
    cr_expect_str_not_empty(first_unknown);
    /* in a transaction, a reference to an entry of the wrong type is refused too */
    rh_response r = rh_request("hospital-a", "POST", "/",
                               "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
                               "{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000000bb\",\"resource\":{"
                               "\"resourceType\":\"Practitioner\"},\"request\":{\"method\":\"POST\",\"url\":"
                               "\"Practitioner\"}},"
                               "{\"resource\":{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
                               "\"subject\":{\"reference\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000000bb\"}},"
                               "\"request\":{\"method\":\"POST\",\"url\":\"CarePlan\"}}]}",
                               NULL);
    rh_expect_outcome(&r, 422, NULL);
    json_object *o = rh_json(&r);
    /* refused by the validator (the entry it resolves to inside the Bundle) or by referential integrity */
    const char *why = rh_str(o, "issue.0.diagnostics");
    bool wrong_type = false;
    for (size_t i = 0; rh_str(o, "issue.0.severity") && i < 8; i++) {
        char path[64];
        snprintf(path, sizeof path, "issue.%zu.diagnostics", i);
        why = rh_str(o, path);
        wrong_type |= why && (strstr(why, "may refer to") || strstr(why, "may point to"));
    }
    cr_expect(wrong_type, "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
}

/* References inside the extensions of primitives are rewritten too. */
Test(rest, transaction_rewrites_references_in_primitive_extensions)
{
    rh_response r = rh_request(
        "hospital-a", "POST", "/",
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000000cc\",\"resource\":{\"resourceType\":\"Practitioner\"},"
        "\"request\":{\"method\":\"POST\",\"url\":\"Practitioner\"}},"
        "{\"resource\":{\"resourceType\":\"Patient\",\"gender\":\"female\",\"_gender\":{\"extension\":[{\"url\":"
        "\"http://x.org/recorded-by\",\"valueReference\":{\"reference\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000000cc\"}}]}},"
        "\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}}]}",
        NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    const char *practitioner = rh_str(o, "entry.0.response.location");
    const char *ref = rh_str(o, "entry.1.resource._gender.extension.0.valueReference.reference");
    cr_assert_not_null(ref, "%s", r.body);
    cr_expect_eq(strncmp(ref, "Practitioner/", 13), 0, "%s", ref);
    cr_expect_not_null(strstr(practitioner, ref + 13), "%s in %s", ref, practitioner);
    json_object_put(o);
    rh_response_free(&r);
}

/*
 * Issue 9: every answer is built on the worker that owns the connection,
 * writes included: the store's completion callbacks (commit thread) only
 * copy their result and post the answer back (srv_post). The REST layer
 * counts answers built on any other thread; after every kind of write the
 * count is still 0.
 */
Test(rest, writes_are_answered_on_the_worker_thread)
{
    char path[160], body[600];
    const char *id = rh_create("hospital-a", "Patient", PATIENT);
    snprintf(path, sizeof path, "/Patient/%s", id);
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"}", id);
    rh_response r = rh_request("hospital-a", "PUT", path, body, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    const char *json_patch[] = {"Content-Type: application/json-patch+json", NULL};
    r = rh_request("hospital-a", "PATCH", path, "[{\"op\":\"replace\",\"path\":\"/gender\",\"value\":\"female\"}]",
                   json_patch);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    /* a conditional create that finds the resource reads it for the answer: on the worker now */
    const char *if_none[] = {"If-None-Exist: identifier=http://example.org/mrn|w1", NULL};
    const char *mrn = "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://example.org/mrn\","
                      "\"value\":\"w1\"}]}";
    for (int i = 0; i < 2; i++) {
        r = rh_request("hospital-a", "POST", "/Patient", mrn, if_none);
        cr_expect_eq(r.status, i ? 200 : 201, "%s", r.body);
        rh_response_free(&r);
    }
    r = rh_request("hospital-a", "POST", "/", TRANSFER, NULL); /* a transaction with a conditional create */
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"resource\":%s,\"request\":{\"method\":"
             "\"POST\",\"url\":\"Patient\"}},{\"request\":{\"method\":\"GET\",\"url\":\"Patient/%s\"}}]}",
             PATIENT, id);
    r = rh_request("hospital-a", "POST", "/", body, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    r = rh_request("hospital-a", "DELETE", path, NULL, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    cr_expect_eq(rest_answers_off_worker(rh.app), 0, "answers built off the worker: %zu",
                 rest_answers_off_worker(rh.app));
}

/* ---- the module graph of gateway/rest (rest_internal.h) ---- */

/* Each module and the modules it may include; context (rest_internal.h), route and the public rest.h are for all. */
static const struct module_uses {
    const char *module;
    const char *uses[10];
} module_graph[] = {
    {"rest", {"operations", "capability", "rest_access", "rest_transform", "answer"}},
    {"rest_transform", {"handlers", "rest_write", "rest_access", "answer"}},
    {"rest_insurer",
     {"handlers", "insured", "rest_transform", "rest_write", "rest_access", "rest_audit", "rest_compliance",
      "rest_bundle", "answer"}},
    {"insured", {0}},
    {"operations", {"handlers", "capability", "answer"}},
    {"handlers", {0}},
    {"rest_batch", {"handlers", "rest_write", "rest_query", "rest_bundle", "rest_access", "rest_audit", "answer"}},
    {"rest_handover", {"handlers", "rest_batch", "rest_write", "rest_access", "answer"}},
    {"rest_subscription", {"handlers", "rest_audit", "answer"}},
    {"rest_retention", {"rest_access"}},
    {"rest_patch", {"handlers", "rest_write", "rest_query", "rest_access", "answer"}},
    {"rest_validate", {"handlers", "rest_write", "rest_access", "answer"}},
    {"rest_compliance",
     {"handlers", "insured", "rest_compliance_context", "rest_compliance_pull", "rest_access", "rest_write", "answer"}},
    {"rest_compliance_pull", {"rest_compliance_context"}},
    {"rest_compliance_context", {"answer"}},
    {"rest_search", {"handlers", "rest_query", "rest_bundle", "rest_access", "rest_audit", "answer"}},
    {"rest_read", {"handlers", "rest_access", "answer"}},
    {"rest_write", {"handlers", "rest_query", "rest_access", "rest_audit", "answer"}},
    {"rest_bundle", {"answer"}},
    {"rest_query", {"answer"}},
    {"rest_access", {"rest_audit", "answer"}},
    {"rest_audit_read", {"handlers", "answer"}},
    {"answer", {"rest_audit"}},
    {"rest_audit", {0}},
    {"directory", {"rest_write"}},
    {"capability", {0}},
    {"route", {0}},
    {"context", {0}},
};

static const struct module_uses *module_named(const char *name)
{
    for (size_t i = 0; i < sizeof module_graph / sizeof *module_graph; i++)
        if (!strcmp(module_graph[i].module, name))
            return &module_graph[i];
    return NULL;
}

/* "rest_write.c" -> "rest_write"; the context's files -> "context". */
static void module_of(const char *file, char *out, size_t size)
{
    snprintf(out, size, "%.*s", (int)strcspn(file, "."), file);
    if (!strcmp(out, "rest_internal") || !strcmp(out, "rest_context"))
        snprintf(out, size, "context");
}

static bool may_use(const char *module, const char *used)
{
    const struct module_uses *m = module_named(module);
    if (!strcmp(used, module) || !strcmp(used, "context") || !strcmp(used, "route") || !strcmp(used, "rest"))
        return true;
    for (size_t i = 0; m && i < sizeof m->uses / sizeof *m->uses && m->uses[i]; i++)
        if (!strcmp(m->uses[i], used))
            return true;
    return false;
}

/* Depth-first: does the declared graph reach `module` again from itself? */
static bool reaches(const char *from, const char *target, int depth)
{
    const struct module_uses *m = module_named(from);
    for (size_t i = 0; m && depth < 32 && i < 8 && m->uses[i]; i++)
        if (!strcmp(m->uses[i], target) || reaches(m->uses[i], target, depth + 1))
            return true;
    return false;
}

Test(rest_modules, includes_follow_the_acyclic_module_graph)
{
    for (size_t i = 0; i < sizeof module_graph / sizeof *module_graph; i++)
        cr_expect_not(reaches(module_graph[i].module, module_graph[i].module, 0), "%s is on a cycle",
                      module_graph[i].module);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd '%s/../gateway/rest' && grep -H '^#include \"gateway/rest/' *.c *.h", TESTS_DIR);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[512];
    size_t checked = 0;
    while (fgets(line, sizeof line, p)) {
        char file[128], header[128], module[128], used[128];
        if (sscanf(line, "%127[^:]:#include \"gateway/rest/%127[^\"]\"", file, header) != 2)
            continue;
        module_of(file, module, sizeof module);
        module_of(header, used, sizeof used);
        cr_expect_not_null(module_named(module), "%s: a module the graph does not list", file);
        cr_expect(may_use(module, used), "%s includes %s: %s may not use %s (rest_internal.h)", file, header, module,
                  used);
        checked++;
    }
    pclose(p);
    cr_expect_gt(checked, 20);
}

/* Index rows that describe a person are marked in the store when a client writes (for encryption at rest
 * later); the rows of a CarePlan's status are not. Read from the database itself: no API shows the mark. */
static int count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW);
    int n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return n;
}

Test(rest, personal_index_rows_are_marked_through_the_write_path)
{
    rh_create("hospital-a", "Patient",
              "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Jansen\"}],"
              "\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999999990\"}]}");
    rh_create("hospital-a", "CarePlan",
              "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\","
              "\"subject\":{\"display\":\"no reference\"}}");
    char path[300];
    snprintf(path, sizeof path, "%s/store.db", rh.dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_expect_gt(count_rows(db, "SELECT count(*) FROM index_string WHERE type='Patient' AND param='family'"), 0);
    cr_expect_eq(count_rows(db, "SELECT count(*) FROM index_string WHERE type='Patient' AND param='family' "
                                "AND personal=0"),
                 0, "a Patient's family name is personal");
    cr_expect_eq(count_rows(db, "SELECT count(*) FROM index_token WHERE type='Patient' AND param='identifier' "
                                "AND personal=1"),
                 1, "a Patient's BSN is personal");
    cr_expect_eq(count_rows(db, "SELECT count(*) FROM index_token WHERE type='CarePlan' AND param='status' "
                                "AND personal=0"),
                 1, "a CarePlan's status is not personal");
    sqlite3_close(db);
}
