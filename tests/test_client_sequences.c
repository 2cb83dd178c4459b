/*
 * tests/test_client_sequences.c — the gateway driven the way real clients
 * drive it, several organisations at once (issue 7): conditional creates
 * repeated, read-modify-write loops with If-Match, transactions re-sent,
 * and after each step a check of what each organisation can and cannot
 * see. Every body the server sends is validated by the harness.
 *
 * Client threads record what went wrong in their own struct; the test
 * thread asserts on it after joining them.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/rest_harness.h"

TestSuite(sequences, .init = rh_setup, .fini = rh_teardown, .timeout = 240);

static const char *const ORGS[] = {"hospital-a", "hospital-b", "gp"};
enum { ORG_COUNT = 3, ROUNDS = 5 };

typedef struct client {
    const char *who;
    int index;
    char patient[80];
    char problems[2048];
    size_t problem_len;
} client;

static void problem(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->problems + c->problem_len, sizeof c->problems - c->problem_len, fmt, ap);
    va_end(ap);
    if (n > 0 && c->problem_len + (size_t)n + 2 < sizeof c->problems) {
        c->problem_len += (size_t)n;
        c->problems[c->problem_len++] = ';';
        c->problems[c->problem_len] = '\0';
    }
}

static json_object *parse(const rh_response *r)
{
    return r->body ? json_tokener_parse(r->body) : NULL;
}

static const char *get(json_object *o, const char *path)
{
    return o ? rh_str(o, path) : NULL;
}

/* The identifier each client's Patient carries. */
static void mrn(const client *c, char *out, size_t size)
{
    snprintf(out, size, "seq-%s", c->who);
}

static void conditional_creates(client *c)
{
    char id_value[64], body[400], header[200];
    mrn(c, id_value, sizeof id_value);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://x.org/mrn\",\"value\":\"%s\"}],"
             "\"name\":[{\"family\":\"%s\"}]}",
             id_value, c->who);
    snprintf(header, sizeof header, "If-None-Exist: identifier=http://x.org/mrn|%s", id_value);
    const char *h[] = {header, NULL};
    for (int i = 0; i < 3; i++) {
        rh_response r = rh_request(c->who, "POST", "/Patient", body, h);
        if (r.status != (i ? 200 : 201))
            problem(c, "conditional create %d: %ld", i, r.status);
        char loc[300];
        if (rh_header(&r, "Location", loc, sizeof loc)) {
            const char *p = strstr(loc, "/Patient/");
            char id[80];
            snprintf(id, sizeof id, "%.*s", p ? (int)strcspn(p + 9, "/") : 0, p ? p + 9 : "");
            if (!i)
                snprintf(c->patient, sizeof c->patient, "%s", id);
            else if (strcmp(id, c->patient))
                problem(c, "conditional create %d pointed at %s, not %s", i, id, c->patient);
        }
        rh_response_free(&r);
    }
}

/* Read, change, PUT back with If-Match: every round one version more, nothing else changed. */
static void read_modify_write(client *c)
{
    char path[160];
    snprintf(path, sizeof path, "/Patient/%s", c->patient);
    for (int round = 0; round < ROUNDS; round++) {
        rh_response r = rh_request(c->who, "GET", path, NULL, NULL);
        json_object *o = parse(&r);
        char etag[64] = "", if_match[96];
        rh_header(&r, "ETag", etag, sizeof etag);
        rh_response_free(&r);
        if (!o) {
            problem(c, "read %d failed", round);
            return;
        }
        char birth[32];
        snprintf(birth, sizeof birth, "19%02d-0%d-1%d", 40 + c->index, 1 + round % 9, round % 9);
        json_object_object_add(o, "birthDate", json_object_new_string(birth));
        snprintf(if_match, sizeof if_match, "If-Match: %s", etag);
        const char *h[] = {if_match, NULL};
        r = rh_request(c->who, "PUT", path, json_object_to_json_string(o), h);
        json_object_put(o);
        json_object *u = parse(&r);
        char want[8];
        snprintf(want, sizeof want, "%d", round + 2);
        if (r.status != 200 || !get(u, "meta.versionId") || strcmp(get(u, "meta.versionId"), want) ||
            !get(u, "name.0.family") || strcmp(get(u, "name.0.family"), c->who))
            problem(c, "rmw %d: %ld %.200s", round, r.status, r.body ? r.body : "");
        json_object_put(u);
        rh_response_free(&r);
    }
}

/* A transfer re-sent: the Patient matched by ifNoneExist, a new Encounter each time, both pointing at it. */
static void resent_transactions(client *c)
{
    char id_value[64], body[1500];
    mrn(c, id_value, sizeof id_value);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
             "{\"fullUrl\":\"urn:uuid:0c1d2e3f-0000-4000-8000-00000000000%d\",\"resource\":{\"resourceType\":"
             "\"Patient\",\"identifier\":[{\"system\":\"http://x.org/mrn\",\"value\":\"%s\"}]},\"request\":{"
             "\"method\":\"POST\",\"url\":\"Patient\",\"ifNoneExist\":\"identifier=http://x.org/mrn|%s\"}},"
             "{\"resource\":{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"IMP\"},"
             "\"subject\":{\"reference\":\"urn:uuid:0c1d2e3f-0000-4000-8000-00000000000%d\"}},\"request\":{"
             "\"method\":\"POST\",\"url\":\"Encounter\"}}]}",
             c->index, id_value, id_value, c->index);
    char want[120];
    snprintf(want, sizeof want, "Patient/%s", c->patient);
    for (int i = 0; i < 2; i++) {
        rh_response r = rh_request(c->who, "POST", "/", body, NULL);
        json_object *o = parse(&r);
        if (r.status != 200 || !get(o, "entry.0.response.status") ||
            strncmp(get(o, "entry.0.response.status"), "200", 3))
            problem(c, "transaction %d: %ld %.200s", i, r.status, r.body ? r.body : "");
        json_object_put(o);
        rh_response_free(&r);
    }
    char search[200];
    snprintf(search, sizeof search, "/Encounter?subject=%s", want);
    rh_response r = rh_request(c->who, "GET", search, NULL, NULL);
    json_object *o = parse(&r);
    if (!get(o, "total") || strcmp(get(o, "total"), "2"))
        problem(c, "encounters of %s: %s", want, r.body ? r.body : "");
    json_object_put(o);
    rh_response_free(&r);
}

static void *run_client(void *arg)
{
    client *c = arg;
    conditional_creates(c);
    if (c->patient[0]) {
        read_modify_write(c);
        resent_transactions(c);
    }
    return NULL;
}

/* What each organisation sees of the others' Patients: nothing. */
static void check_visibility(client *clients)
{
    for (int i = 0; i < ORG_COUNT; i++)
        for (int k = 0; k < ORG_COUNT; k++) {
            char path[200], id_value[64];
            snprintf(path, sizeof path, "/Patient/%s", clients[k].patient);
            rh_response r = rh_request(clients[i].who, "GET", path, NULL, NULL);
            cr_expect_eq(r.status, i == k ? 200 : 404, "%s reads %s's Patient: %ld", clients[i].who, clients[k].who,
                         r.status);
            rh_response_free(&r);
            mrn(&clients[k], id_value, sizeof id_value);
            snprintf(path, sizeof path, "/Patient?identifier=http://x.org/mrn|%s", id_value);
            r = rh_request(clients[i].who, "GET", path, NULL, NULL);
            json_object *o = rh_json(&r);
            cr_expect_str_eq(rh_str(o, "total"), i == k ? "1" : "0", "%s searches %s's Patient", clients[i].who,
                             clients[k].who);
            json_object_put(o);
            rh_response_free(&r);
            snprintf(path, sizeof path, "/Encounter?subject=Patient/%s", clients[k].patient);
            r = rh_request(clients[i].who, "GET", path, NULL, NULL);
            o = rh_json(&r);
            cr_expect_str_eq(rh_str(o, "total"), i == k ? "2" : "0", "%s searches %s's Encounters", clients[i].who,
                             clients[k].who);
            json_object_put(o);
            rh_response_free(&r);
        }
}

Test(sequences, several_organisations_as_real_clients)
{
    client clients[ORG_COUNT];
    pthread_t t[ORG_COUNT];
    for (int i = 0; i < ORG_COUNT; i++) {
        memset(&clients[i], 0, sizeof clients[i]);
        clients[i].who = ORGS[i];
        clients[i].index = i;
        pthread_create(&t[i], NULL, run_client, &clients[i]);
    }
    for (int i = 0; i < ORG_COUNT; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < ORG_COUNT; i++) {
        cr_expect_str_empty(clients[i].problems, "%s: %s", clients[i].who, clients[i].problems);
        cr_assert_str_not_empty(clients[i].patient, "%s has no Patient", clients[i].who);
    }
    check_visibility(clients);
    /* the history of each Patient: create + the read-modify-write rounds, nothing lost, nothing extra */
    for (int i = 0; i < ORG_COUNT; i++) {
        char path[200];
        snprintf(path, sizeof path, "/Patient/%s/_history", clients[i].patient);
        rh_response r = rh_request(clients[i].who, "GET", path, NULL, NULL);
        json_object *o = rh_json(&r);
        cr_expect_eq(atoi(rh_str(o, "total")), 1 + ROUNDS);
        json_object_put(o);
        rh_response_free(&r);
    }
}
