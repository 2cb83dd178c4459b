/*
 * tests/test_access.c — access control under races and tricks (issue 8):
 * the real server over mutual TLS, several organisations at once.
 *
 * Each test reproduces one way an organisation could read or change what is
 * not its own: racing creates, rewriting the directory, a receiver
 * rewriting a Task, probing for ids, addressing a Task to no one; and a
 * concurrency test in which organisations race on the same Tasks and every
 * stored version is checked to come from one allowed to write it.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/rest_harness.h"

TestSuite(access, .init = rh_setup, .fini = rh_teardown, .timeout = 240);

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define URA_HOSPITAL_A "90000101"
#define URA_HOSPITAL_B "90000102"
#define URA_ELV_A "90000301"
#define URA_ELV_B "90000302"

/* An organisation publishes its own directory entry (an Organization with its URA); returns its id. */
static void directory_entry(const char *who, const char *ura, char *id, size_t size)
{
    char body[300];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Organization\",\"name\":\"%s\",\"identifier\":[{\"system\":\"" URA_SYSTEM
             "\",\"value\":\"%s\"}]}",
             who, ura);
    snprintf(id, size, "%s", rh_create(who, "Organization", body));
}

static void task_body(char *out, size_t size, const char *id, const char *status, const char *owner_ref,
                      const char *description)
{
    snprintf(out, size,
             "{\"resourceType\":\"Task\",%s%s%s\"status\":\"%s\",\"intent\":\"order\",\"description\":\"%s\","
             "\"code\":{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"308292007\"}]},"
             "\"owner\":{\"reference\":\"%s\"}}",
             id ? "\"id\":\"" : "", id ? id : "", id ? "\"," : "", status, description, owner_ref);
}

static long status_of(const char *who, const char *method, const char *path, const char *body)
{
    rh_response r = rh_request(who, method, path, body, NULL);
    long s = r.status;
    rh_response_free(&r);
    return s;
}

/* The diagnostics of an OperationOutcome answer with the ids blanked, to compare two answers. */
static void diagnostics(const char *who, const char *method, const char *path, const char *body, const char *id,
                        char *out, size_t size, long *status)
{
    rh_response r = rh_request(who, method, path, body, NULL);
    *status = r.status;
    json_object *o = rh_json(&r);
    const char *d = rh_str(o, "issue.0.diagnostics");
    snprintf(out, size, "%s", d ? d : "");
    char *at;
    while (id && *id && (at = strstr(out, id)))
        memset(at, '#', strlen(id));
    json_object_put(o);
    rh_response_free(&r);
}

/* Defects 1 and 6: PUT creates nothing, so a new id cannot be raced for, squatted, or probed. */
Test(access, put_never_creates_so_ids_cannot_be_raced_squatted_or_probed)
{
    char mine[80], body[400], path[160];
    snprintf(mine, sizeof mine, "%s", rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}"));
    /* someone else's id and an id that does not exist answer alike */
    char a[300], b[300];
    long sa, sb;
    snprintf(path, sizeof path, "/Patient/%s", mine);
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\"}", mine);
    diagnostics("hospital-b", "PUT", path, body, mine, a, sizeof a, &sa);
    const char *fresh = "f0f0f0f0-aaaa-4bbb-8ccc-123456789abc";
    snprintf(path, sizeof path, "/Patient/%s", fresh);
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\"}", fresh);
    diagnostics("hospital-b", "PUT", path, body, fresh, b, sizeof b, &sb);
    cr_expect_eq(sa, 404);
    cr_expect_eq(sb, 404);
    cr_expect_str_eq(a, b, "PUT reveals nothing about an id's existence");
    /* vread: a missing version of one's own resource and a version of someone else's read alike */
    snprintf(path, sizeof path, "/Patient/%s/_history/9", mine);
    diagnostics("hospital-a", "GET", path, NULL, mine, a, sizeof a, &sa);
    snprintf(path, sizeof path, "/Patient/%s/_history/1", mine);
    diagnostics("hospital-b", "GET", path, NULL, mine, b, sizeof b, &sb);
    cr_expect_eq(sa, 404);
    cr_expect_eq(sb, 404);
    b[strlen(b) - 1 - strlen(" is not known")] = '9'; /* the version number differs, nothing else */
    cr_expect_str_eq(a, b);
    /* two organisations PUT the same new id at once: neither creates it */
    const char *race = "race-1234567";
    snprintf(path, sizeof path, "/Patient/%s", race);
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"name\":[{\"family\":\"%s\"}]}", race,
                 i ? "hospital-b" : "hospital-a");
        cr_expect_eq(status_of(i ? "hospital-b" : "hospital-a", "PUT", path, body), 404);
    }
    cr_expect_eq(status_of("hospital-a", "GET", path, NULL), 404);
}

/* Defect 2: the identifiers access rests on come from the gateway's registry and its own records. */
Test(access, the_directory_cannot_redirect_or_share_handovers)
{
    char elv_a[80], body[900], path[160];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    /* elv-a may not put another registered organisation's URA on its entry */
    snprintf(path, sizeof path, "/Organization/%s", elv_a);
    snprintf(
        body, sizeof body,
        "{\"resourceType\":\"Organization\",\"id\":\"%s\",\"name\":\"ELV A\",\"identifier\":[{\"system\":\"" URA_SYSTEM
        "\",\"value\":\"" URA_HOSPITAL_B "\"}]}",
        elv_a);
    rh_response r = rh_request("elv-a", "PUT", path, body, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Organization.identifier[0].value");
    json_object_put(o);
    rh_response_free(&r);
    /* nor may hospital-b publish an Organization carrying other organisations' URAs */
    r = rh_request("hospital-b", "POST", "/Organization",
                   "{\"resourceType\":\"Organization\",\"name\":\"Everyone\",\"identifier\":[{\"system\":\"" URA_SYSTEM
                   "\",\"value\":\"" URA_ELV_A "\"},{\"system\":\"" URA_SYSTEM "\",\"value\":\"" URA_ELV_B "\"}]}",
                   NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    /* an Organization hospital-b publishes addresses hospital-b, whatever it says */
    char fake[80], ref[120];
    snprintf(fake, sizeof fake, "%s",
             rh_create("hospital-b", "Organization",
                       "{\"resourceType\":\"Organization\",\"name\":\"ELV A (really)\"}"));
    snprintf(ref, sizeof ref, "Organization/%s", fake);
    task_body(body, sizeof body, NULL, "requested", ref, "transfer");
    char task[80];
    snprintf(task, sizeof task, "%s", rh_create("hospital-a", "Task", body));
    snprintf(path, sizeof path, "/Task/%s", task);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 404);
    cr_expect_eq(status_of("hospital-b", "GET", path, NULL), 200);
    /* a batch cannot delete a registered organisation's directory entry either */
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"request\":{\"method\":\"DELETE\",\"url\":"
             "\"Organization/%s\"}}]}",
             elv_a);
    r = rh_request("elv-a", "POST", "/", body, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.0.response.status"), "409 Conflict", "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
    snprintf(path, sizeof path, "/Organization/%s", elv_a);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 200);
}

/* Defect 3: the receiver changes the workflow's members of a Task, nothing else. */
Test(access, the_receiver_changes_only_the_workflow)
{
    char elv_a[80], elv_b[80], ref[120], body[900], path[160], task[80];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    directory_entry("elv-b", URA_ELV_B, elv_b, sizeof elv_b);
    snprintf(ref, sizeof ref, "Organization/%s", elv_a);
    task_body(body, sizeof body, NULL, "requested", ref, "transfer of mevrouw J.");
    snprintf(task, sizeof task, "%s", rh_create("hospital-a", "Task", body));
    snprintf(path, sizeof path, "/Task/%s", task);
    /* forwarding to elv-b, or changing the description: refused, and elv-b never sees it */
    char other[120];
    snprintf(other, sizeof other, "Organization/%s", elv_b);
    task_body(body, sizeof body, task, "requested", other, "transfer of mevrouw J.");
    rh_response r = rh_request("elv-a", "PUT", path, body, NULL);
    rh_expect_outcome(&r, 403, "forbidden");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Task.owner");
    json_object_put(o);
    rh_response_free(&r);
    cr_expect_eq(status_of("elv-b", "GET", path, NULL), 404);
    task_body(body, sizeof body, task, "accepted", ref, "something else");
    cr_expect_eq(status_of("elv-a", "PUT", path, body), 403);
    /* PATCH likewise: the owner is the sender's, the status the receiver's */
    const char *json_patch[] = {"Content-Type: application/json-patch+json", NULL};
    char patch[300];
    snprintf(patch, sizeof patch, "[{\"op\":\"replace\",\"path\":\"/owner/reference\",\"value\":\"%s\"}]", other);
    r = rh_request("elv-a", "PATCH", path, patch, json_patch);
    rh_expect_outcome(&r, 403, "forbidden");
    rh_response_free(&r);
    r = rh_request("elv-a", "PATCH", path, "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"received\"}]",
                   json_patch);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
    /* the status alone: accepted */
    task_body(body, sizeof body, task, "accepted", ref, "transfer of mevrouw J.");
    cr_expect_eq(status_of("elv-a", "PUT", path, body), 200);
    /* the sender may re-address its own Task */
    task_body(body, sizeof body, task, "accepted", other, "transfer of mevrouw J.");
    cr_expect_eq(status_of("hospital-a", "PUT", path, body), 200);
    cr_expect_eq(status_of("elv-b", "GET", path, NULL), 200);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 404);
}

/* Defect 5: a Task is addressed to someone, or refused; absolute references to this server count. */
Test(access, tasks_are_delivered_or_refused)
{
    char elv_a[80], ref[200], body[900], path[160], task[80];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    snprintf(ref, sizeof ref, "https://127.0.0.1/Organization/%s", elv_a); /* the harness's base URL */
    task_body(body, sizeof body, NULL, "requested", ref, "transfer");
    snprintf(task, sizeof task, "%s", rh_create("hospital-a", "Task", body));
    snprintf(path, sizeof path, "/Task/%s", task);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 200, "an absolute reference to our own base addresses");
    /* addressed to nothing the gateway knows: refused, never stored unseen */
    task_body(body, sizeof body, NULL, "requested", "Organization/nobody", "transfer");
    rh_response r = rh_request("hospital-a", "POST", "/Task", body, NULL);
    rh_expect_outcome(&r, 422, "processing");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Task.owner");
    json_object_put(o);
    rh_response_free(&r);
    task_body(body, sizeof body, NULL, "requested", "https://elsewhere.example/fhir/Organization/x", "transfer");
    cr_expect_eq(status_of("hospital-a", "POST", "/Task", body), 422);
    /* by URA identifier: a registered URA addresses */
    r = rh_request("hospital-a", "POST", "/Task",
                   "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"owner\":{\"identifier\":"
                   "{\"system\":\"" URA_SYSTEM "\",\"value\":\"" URA_ELV_B "\"}}}",
                   NULL);
    cr_expect_eq(r.status, 201, "%s", r.body);
    o = rh_json(&r);
    snprintf(path, sizeof path, "/Task/%s", rh_str(o, "id"));
    json_object_put(o);
    rh_response_free(&r);
    cr_expect_eq(status_of("elv-b", "GET", path, NULL), 200);
    /* a transaction that creates the receiving Organization: the Task is the sender's own (it owns that entry) */
    r = rh_request("hospital-a", "POST", "/",
                   "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
                   "{\"fullUrl\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000000aa\",\"resource\":{\"resourceType\":"
                   "\"Organization\",\"name\":\"ward 3\"},\"request\":{\"method\":\"POST\",\"url\":\"Organization\"}},"
                   "{\"resource\":{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"owner\":{"
                   "\"reference\":\"urn:uuid:6f1c2f1e-0000-4000-8000-0000000000aa\"}},\"request\":{\"method\":\"POST\","
                   "\"url\":\"Task\"}}]}",
                   NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    rh_response_free(&r);
}

/*
 * Organisations race on the same Tasks: the sender updates them, the
 * receiver accepts, two others try to overwrite. After every round, every
 * version of every Task came from an organisation allowed to write it.
 */
typedef struct racer {
    const char *who;
    const char *description; /* what this organisation writes into the Task */
    const char *status;
    char (*tasks)[80];
    int task_count;
    const char *owner_ref;
    int ok, refused;
} racer;

static void *race(void *arg)
{
    racer *me = arg;
    for (int i = 0; i < me->task_count; i++) {
        char path[160], body[900];
        snprintf(path, sizeof path, "/Task/%s", me->tasks[i]);
        task_body(body, sizeof body, me->tasks[i], me->status, me->owner_ref, me->description);
        long s = status_of(me->who, "PUT", path, body);
        if (s == 200)
            me->ok++;
        else
            me->refused++;
    }
    return NULL;
}

Test(access, concurrent_writers_never_write_what_they_may_not)
{
    char elv_a[80], ref[120], body[900];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    snprintf(ref, sizeof ref, "Organization/%s", elv_a);
    enum { TASKS = 6 };
    char tasks[TASKS][80];
    for (int i = 0; i < TASKS; i++) {
        task_body(body, sizeof body, NULL, "requested", ref, "from hospital-a");
        snprintf(tasks[i], sizeof tasks[i], "%s", rh_create("hospital-a", "Task", body));
    }
    for (int round = 0; round < 3; round++) {
        racer racers[] = {
            {"hospital-a", "from hospital-a", "requested", tasks, TASKS, ref, 0, 0},
            {"elv-a", "from hospital-a", "accepted", tasks, TASKS, ref, 0, 0},
            {"hospital-b", "from hospital-b", "requested", tasks, TASKS, ref, 0, 0},
            {"elv-b", "from elv-b", "accepted", tasks, TASKS, ref, 0, 0},
        };
        enum { N = sizeof racers / sizeof *racers };
        pthread_t t[N];
        for (int i = 0; i < N; i++)
            pthread_create(&t[i], NULL, race, &racers[i]);
        for (int i = 0; i < N; i++)
            pthread_join(t[i], NULL);
        cr_expect_eq(racers[2].ok, 0, "hospital-b wrote a Task it does not own");
        cr_expect_eq(racers[3].ok, 0, "elv-b wrote a Task not addressed to it");
        for (int i = 0; i < TASKS; i++) {
            char path[200];
            snprintf(path, sizeof path, "/Task/%.79s/_history?_count=50", tasks[i]);
            rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
            json_object *o = rh_json(&r);
            json_object *entries = json_object_object_get(o, "entry");
            for (size_t k = 0; k < json_object_array_length(entries); k++) {
                json_object *e = json_object_array_get_idx(entries, k);
                cr_expect_str_eq(rh_str(e, "resource.description"), "from hospital-a");
                cr_expect_str_eq(rh_str(e, "resource.owner.reference"), ref);
            }
            json_object_put(o);
            rh_response_free(&r);
        }
    }
}

/* The total of a search or history Bundle as `who` sees it. */
static int total_of(const char *who, const char *path)
{
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    if (r.status != 200) {
        long s = r.status;
        rh_response_free(&r);
        return -(int)s;
    }
    json_object *o = rh_json(&r);
    int total = rh_str(o, "total") ? atoi(rh_str(o, "total")) : -1;
    json_object_put(o);
    rh_response_free(&r);
    return total;
}

/* Defect 4: each version is shown to whom that version was addressed, also after re-addressing. */
Test(access, history_follows_each_version)
{
    char elv_a[80], elv_b[80], ref_a[120], ref_b[120], body[900], path[200], task[80];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    directory_entry("elv-b", URA_ELV_B, elv_b, sizeof elv_b);
    snprintf(ref_a, sizeof ref_a, "Organization/%s", elv_a);
    snprintf(ref_b, sizeof ref_b, "Organization/%s", elv_b);
    task_body(body, sizeof body, NULL, "requested", ref_a, "transfer");
    snprintf(task, sizeof task, "%s", rh_create("hospital-a", "Task", body));
    snprintf(path, sizeof path, "/Task/%s", task);
    task_body(body, sizeof body, task, "accepted", ref_a, "transfer");
    cr_assert_eq(status_of("elv-a", "PUT", path, body), 200); /* v2, elv-a accepts */
    task_body(body, sizeof body, task, "requested", ref_b, "transfer");
    cr_assert_eq(status_of("hospital-a", "PUT", path, body), 200); /* v3, to elv-b */
    snprintf(path, sizeof path, "/Task/%s/_history", task);
    cr_expect_eq(total_of("hospital-a", path), 3);
    cr_expect_eq(total_of("elv-a", path), 2, "the old addressee keeps the versions that were sent to it");
    cr_expect_eq(total_of("elv-b", path), 1, "the new addressee sees only what was sent to it");
    cr_expect_eq(total_of("gp", path), -404);
    snprintf(path, sizeof path, "/Task/%s/_history/1", task);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 200);
    cr_expect_eq(status_of("elv-b", "GET", path, NULL), 404);
    snprintf(path, sizeof path, "/Task/%s/_history/3", task);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 404);
    cr_expect_eq(status_of("elv-b", "GET", path, NULL), 200);
    cr_expect_eq(total_of("elv-a", "/Task/_history"), 2);
    cr_expect_eq(total_of("elv-b", "/_history"), 1 + 1, "its own directory entry and the version sent to it");
}

/* Defect 7: a Task lets its receiver open what it refers to, while its status allows. */
Test(access, a_task_grants_its_receiver_what_it_refers_to)
{
    char elv_a[80], ref[120], patient[80], encounter[80], doc[80], body[1400], path[160], task[80];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    snprintf(ref, sizeof ref, "Organization/%s", elv_a);
    snprintf(patient, sizeof patient, "%s",
             rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Jansen\"}]}"));
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"IMP\"},\"subject\":{"
             "\"reference\":\"Patient/%s\"}}",
             patient);
    snprintf(encounter, sizeof encounter, "%s", rh_create("hospital-a", "Encounter", body));
    snprintf(
        body, sizeof body,
        "{\"resourceType\":\"DocumentReference\",\"status\":\"current\",\"subject\":{\"reference\":\"Patient/%s\"},"
        "\"content\":[{\"attachment\":{\"contentType\":\"text/plain\",\"data\":\"b3ZlcmRyYWNodA==\"}}]}",
        patient);
    snprintf(doc, sizeof doc, "%s", rh_create("hospital-a", "DocumentReference", body));
    /* someone else's Patient in the same Task is not granted: hospital-a cannot share what is not its own */
    char foreign[80];
    snprintf(foreign, sizeof foreign, "%s", rh_create("hospital-b", "Patient", "{\"resourceType\":\"Patient\"}"));
    const char *task_fmt =
        "{\"resourceType\":\"Task\",%s\"status\":\"%s\",\"intent\":\"order\",\"for\":{\"reference\":\"Patient/%s\"},"
        "\"encounter\":{\"reference\":\"Encounter/%s\"},\"owner\":{\"reference\":\"%s\"},\"input\":[{\"type\":{"
        "\"text\":\"overdracht\"},\"valueReference\":{\"reference\":\"DocumentReference/%s\"}},{\"type\":{\"text\":"
        "\"other\"},\"valueReference\":{\"reference\":\"Patient/%s\"}}]}";
    snprintf(body, sizeof body, task_fmt, "", "requested", patient, encounter, ref, doc, foreign);
    rh_response refused = rh_request("hospital-a", "POST", "/Task", body, NULL);
    rh_expect_outcome(&refused, 422, "processing"); /* it may not even refer to what it cannot read */
    rh_response_free(&refused);
    snprintf(body, sizeof body, task_fmt, "", "requested", patient, encounter, ref, doc, patient);
    snprintf(task, sizeof task, "%s", rh_create("hospital-a", "Task", body));
    char p_path[160], e_path[160], d_path[160], f_path[160];
    snprintf(p_path, sizeof p_path, "/Patient/%s", patient);
    snprintf(e_path, sizeof e_path, "/Encounter/%s", encounter);
    snprintf(d_path, sizeof d_path, "/DocumentReference/%s", doc);
    snprintf(f_path, sizeof f_path, "/Patient/%s", foreign);
    cr_expect_eq(status_of("elv-a", "GET", p_path, NULL), 200);
    cr_expect_eq(status_of("elv-a", "GET", e_path, NULL), 200);
    cr_expect_eq(status_of("elv-a", "GET", d_path, NULL), 200);
    cr_expect_eq(status_of("elv-a", "GET", f_path, NULL), 404);
    cr_expect_eq(status_of("elv-b", "GET", p_path, NULL), 404);
    cr_expect_eq(total_of("elv-a", "/Patient"), 1, "search finds the granted Patient");
    /* reading is all a grant gives */
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"}", patient);
    cr_expect_eq(status_of("elv-a", "PUT", p_path, body), 403);
    /* when the Task ends, so does the grant */
    char id_member[120];
    snprintf(id_member, sizeof id_member, "\"id\":\"%s\",", task);
    snprintf(body, sizeof body, task_fmt, id_member, "completed", patient, encounter, ref, doc, patient);
    snprintf(path, sizeof path, "/Task/%s", task);
    cr_expect_eq(status_of("elv-a", "PUT", path, body), 200);
    cr_expect_eq(status_of("elv-a", "GET", p_path, NULL), 404);
    cr_expect_eq(status_of("elv-a", "GET", d_path, NULL), 404);
    cr_expect_eq(total_of("elv-a", "/Patient"), 0);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 200, "the Task itself stays the receiver's to read");
}

/* {"identifier":{"system":URA,"value":"<ura>"}} for each URA, comma separated, into out. */
static void ura_references(const char *const *uras, size_t n, char *out, size_t size)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(out + at, size - at,
                               "%s{\"identifier\":{\"system\":\"" URA_SYSTEM "\",\"value\":\"%s\"}}", i ? "," : "",
                               uras[i]);
}

/* Issue 9: a ninth addressee is refused with the element and the limit named, never dropped silently. */
Test(access, a_ninth_addressee_is_refused_not_dropped)
{
    /* the nine registered organisations of the test PKI (gzsp is not registered) */
    static const char *const uras[] = {URA_ELV_A,  URA_HOSPITAL_A, URA_HOSPITAL_B, "90000201", URA_ELV_B,
                                       "90000501", "90000901",     "90000902",     "90000903"};
    char recipients[2000], body[2600];
    /* owner + 7 recipients: 8 addressees, the limit, is stored and every one of them reads it */
    ura_references(uras + 1, 7, recipients, sizeof recipients);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"owner\":{\"identifier\":{"
             "\"system\":\"" URA_SYSTEM "\",\"value\":\"%s\"}},\"restriction\":{\"recipient\":[%s]}}",
             uras[0], recipients);
    char path[160];
    snprintf(path, sizeof path, "/Task/%s", rh_create("hospital-a", "Task", body));
    cr_expect_eq(status_of("elv-b", "GET", path, NULL), 200, "the eighth addressee reads it");
    /* owner + 8 recipients: the ninth is refused, at the element that named it */
    ura_references(uras + 1, 8, recipients, sizeof recipients);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"owner\":{\"identifier\":{"
             "\"system\":\"" URA_SYSTEM "\",\"value\":\"%s\"}},\"restriction\":{\"recipient\":[%s]}}",
             uras[0], recipients);
    rh_response r = rh_request("hospital-a", "POST", "/Task", body, NULL);
    rh_expect_outcome(&r, 422, "too-long");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Task.restriction.recipient");
    cr_expect_not_null(strstr(rh_str(o, "issue.0.diagnostics"), "more than 8 addressees"), "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
    /* the same for any addressing element: nine Communication recipients */
    ura_references(uras, 9, recipients, sizeof recipients);
    snprintf(body, sizeof body, "{\"resourceType\":\"Communication\",\"status\":\"completed\",\"recipient\":[%s]}",
             recipients);
    r = rh_request("hospital-a", "POST", "/Communication", body, NULL);
    rh_expect_outcome(&r, 422, "too-long");
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Communication.recipient");
    json_object_put(o);
    rh_response_free(&r);
}

/* Issue 9: a Task that would grant more than 16 resources is refused, not granted in part. */
Test(access, a_seventeenth_grant_is_refused_not_dropped)
{
    char elv_a[80], owner[120], inputs[6000], body[7000], first[80] = "";
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    snprintf(owner, sizeof owner, "Organization/%s", elv_a);
    size_t at = 0, sixteen = 0;
    for (int i = 0; i < 17; i++) {
        char id[80];
        snprintf(id, sizeof id, "%s", rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}"));
        if (!i)
            snprintf(first, sizeof first, "%s", id);
        at += (size_t)snprintf(inputs + at, sizeof inputs - at,
                               "%s{\"type\":{\"text\":\"bijlage\"},\"valueReference\":{\"reference\":\"Patient/%s\"}}",
                               i ? "," : "", id);
        if (i == 15)
            sixteen = at;
    }
    const char *fmt = "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"for\":{"
                      "\"reference\":\"Patient/%s\"},\"owner\":{\"reference\":\"%s\"},\"input\":[%s]}";
    snprintf(body, sizeof body, fmt, first, owner, inputs);
    rh_response r = rh_request("hospital-a", "POST", "/Task", body, NULL);
    rh_expect_outcome(&r, 422, "too-long");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Task.input.valueReference");
    cr_expect_not_null(strstr(rh_str(o, "issue.0.diagnostics"), "more than 16"), "%s", r.body);
    json_object_put(o);
    rh_response_free(&r);
    /* sixteen inputs, the first also named by Task.for: sixteen grants, within the limit */
    inputs[sixteen] = '\0';
    snprintf(body, sizeof body, fmt, first, owner, inputs);
    r = rh_request("hospital-a", "POST", "/Task", body, NULL);
    cr_expect_eq(r.status, 201, "%s", r.body);
    rh_response_free(&r);
    char path[160];
    snprintf(path, sizeof path, "/Patient/%s", first);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 200, "granted");
}

/* The total of a search as `who`, and the first match's member (into out) when asked for. */
static long search_first(const char *who, const char *path, const char *member, char *out, size_t size)
{
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
    json_object *o = rh_json(&r);
    long total = atol(rh_str(o, "total") ? rh_str(o, "total") : "-1");
    if (member)
        snprintf(out, size, "%s", rh_str(o, member) ? rh_str(o, member) : "");
    json_object_put(o);
    rh_response_free(&r);
    return total;
}

/*
 * Issue 9: the registered organisations' own entries are written like a
 * client's write (json-c, validation, the indexer, the access checks), so
 * they are found by any search parameter and stay valid JSON whatever their
 * names hold.
 */
/* The answer to `$validate` mode=delete on path: its status, and the first issue's code and severity. */
static long ask_delete(const char *who, const char *path, const char *body, char *code, size_t size)
{
    rh_response r = rh_request(who, "POST", path, body, NULL);
    long status = r.status;
    json_object *o = rh_json(&r); /* validated by the harness */
    cr_expect_str_eq(rh_str(o, "resourceType"), "OperationOutcome", "%s", r.body);
    snprintf(code, size, "%s/%s", rh_str(o, "issue.0.severity") ? rh_str(o, "issue.0.severity") : "",
             rh_str(o, "issue.0.code") ? rh_str(o, "issue.0.code") : "");
    json_object_put(o);
    rh_response_free(&r);
    return status;
}

/* $validate mode=delete says what a DELETE by the caller would do, with the DELETE's own checks, and deletes nothing. */
Test(access, validate_mode_delete_answers_as_the_delete_would)
{
    static const char *const ONLY_MODE =
        "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"mode\",\"valueCode\":\"delete\"}]}";
    char elv_a[80], ref[120], body[900], path[200], code[80];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    snprintf(ref, sizeof ref, "Organization/%s", elv_a);
    task_body(body, sizeof body, NULL, "requested", ref, "transfer");
    char task[80];
    snprintf(task, sizeof task, "%s", rh_create("hospital-a", "Task", body));

    /* the sender may delete its Task: asked in the query with no body, or in a Parameters body */
    snprintf(path, sizeof path, "/Task/%s/$validate?mode=delete", task);
    cr_expect_eq(ask_delete("hospital-a", path, NULL, code, sizeof code), 200);
    cr_expect_str_eq(code, "information/informational");
    snprintf(path, sizeof path, "/Task/%s/$validate", task);
    cr_expect_eq(ask_delete("hospital-a", path, ONLY_MODE, code, sizeof code), 200);
    cr_expect_str_eq(code, "information/informational");
    /* its receiver reads it but may not delete it: an error, where the DELETE answers 403 */
    cr_expect_eq(ask_delete("elv-a", path, ONLY_MODE, code, sizeof code), 200);
    cr_expect_str_eq(code, "error/forbidden");
    snprintf(path, sizeof path, "/Task/%s", task);
    cr_expect_eq(status_of("elv-a", "DELETE", path, NULL), 403);
    /* for anyone else it does not exist, as for a read; nor does an id never used */
    snprintf(path, sizeof path, "/Task/%s/$validate", task);
    cr_expect_eq(ask_delete("hospital-b", path, ONLY_MODE, code, sizeof code), 404);
    cr_expect_eq(ask_delete("hospital-a", "/Task/no-such-task/$validate", ONLY_MODE, code, sizeof code), 404);
    /* a registered organisation's directory entry stays: a conflict, where the DELETE answers 409 */
    snprintf(path, sizeof path, "/Organization/%s/$validate", elv_a);
    cr_expect_eq(ask_delete("elv-a", path, ONLY_MODE, code, sizeof code), 200);
    cr_expect_str_eq(code, "error/conflict");
    snprintf(path, sizeof path, "/Organization/%s", elv_a);
    cr_expect_eq(status_of("elv-a", "DELETE", path, NULL), 409);
    /* it asks about one resource: not at the type level */
    cr_expect_eq(ask_delete("hospital-a", "/Task/$validate?mode=delete", ONLY_MODE, code, sizeof code), 400);
    cr_expect_str_eq(code, "error/invalid");

    /* nothing was deleted by asking; the receiver's question is in its audit trail, as a validate of the Task */
    snprintf(path, sizeof path, "/Task/%s", task);
    cr_expect_eq(status_of("elv-a", "GET", path, NULL), 200);
    rh_response r = rh_request("elv-a", "GET", "/AuditEvent?_count=50", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *events = rh_json(&r);
    bool found = false;
    for (int i = 0; i < 50 && !found; i++) {
        char at[80];
        snprintf(at, sizeof at, "entry.%d.resource.entity.0.what.reference", i);
        const char *what = rh_str(events, at);
        snprintf(at, sizeof at, "entry.%d.resource.action", i);
        const char *action = rh_str(events, at);
        found = what && strstr(what, task) && action && !strcmp(action, "E");
    }
    cr_expect(found, "an E (execute) entry for the Task: %.2000s", r.body);
    json_object_put(events);
    rh_response_free(&r);

    /* once deleted, the answer says a DELETE would change nothing */
    cr_expect_eq(status_of("hospital-a", "DELETE", path, NULL), 200);
    snprintf(path, sizeof path, "/Task/%s/$validate?mode=delete", task);
    cr_expect_eq(ask_delete("hospital-a", path, NULL, code, sizeof code), 200);
    cr_expect_str_eq(code, "information/informational");
}

Test(access, directory_entries_are_written_through_the_write_path)
{
    static const char *const name = "Zorg \"De Brug\" \\ Noord";
    char path[512], got[200];
    rh_stop_server();
    snprintf(path, sizeof path, "%s/organisations.tsv", rh.dir);
    FILE *f = fopen(path, "a");
    cr_assert_not_null(f);
    fprintf(f, "%s\t90000777\telv\tclients/none.crt\t%s\n", name,
            "abababababababababababababababababababababababababababababababab");
    fclose(f);
    rh_start_server();
    rh_publish_directory();

    rh_response r = rh_request("hospital-a", "GET", "/Organization/ura-90000777", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r); /* parsed, and validated by the harness */
    cr_expect_str_eq(rh_str(o, "name"), name, "the name as registered, quotes and backslash included");
    cr_expect_str_eq(rh_str(o, "meta.versionId"), "1");
    json_object_put(o);
    rh_response_free(&r);
    /* found by the URA, as everyone looks an organisation up */
    cr_expect_eq(search_first("hospital-a", "/Organization?identifier=" URA_SYSTEM "|90000777", "entry.0.resource.id",
                              got, sizeof got),
                 1);
    cr_expect_str_eq(got, "ura-90000777");
    cr_expect_eq(search_first("elv-b", "/Organization?identifier=" URA_SYSTEM "|" URA_ELV_A, "entry.0.resource.id", got,
                              sizeof got),
                 1);
    cr_expect_str_eq(got, "ura-" URA_ELV_A);
    /* and by the parameters the indexer derives, which a hand-made row list left out */
    cr_expect_eq(search_first("hospital-a", "/Organization?active=true&name=zorg", NULL, NULL, 0), 1);
    /* it is its registered organisation's entry: nobody else changes or deletes it */
    r = rh_request("hospital-a", "DELETE", "/Organization/ura-" URA_ELV_A, NULL, NULL);
    cr_expect_eq(r.status, 403, "%s", r.body);
    rh_response_free(&r);
    /* published again (every start in dev mode): left as it is */
    rh_publish_directory();
    r = rh_request("hospital-a", "GET", "/Organization/ura-90000777", NULL, NULL);
    o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "meta.versionId"), "1");
    json_object_put(o);
    rh_response_free(&r);
}

/*
 * The whole matrix: organisation x interaction x kind of resource (own,
 * addressed, someone else's, re-addressed, directory, granted), with the
 * exact status for each. Rows run in order; writes are made so that every
 * row sees the state the rows before it left.
 */
typedef enum target { T1, T1_V1, T1_HISTORY, T2, T2_V1, T2_V2, T2_HISTORY, ORG, PATIENT, TASKS } target;

typedef enum body_kind { NO_BODY, T1_ACCEPTED, T1_REWORDED, ORG_RENAMED, PATIENT_CHANGED } body_kind;

typedef struct matrix_step {
    const char *who;
    const char *method;
    target what;
    body_kind body;
    long want;
} matrix_step;

Test(access, matrix_of_organisations_interactions_and_kinds_of_resource)
{
    char elv_a[80], elv_b[80], ref_a[120], ref_b[120], body[1200], t1[80], t2[80], patient[80];
    directory_entry("elv-a", URA_ELV_A, elv_a, sizeof elv_a);
    directory_entry("elv-b", URA_ELV_B, elv_b, sizeof elv_b);
    snprintf(ref_a, sizeof ref_a, "Organization/%s", elv_a);
    snprintf(ref_b, sizeof ref_b, "Organization/%s", elv_b);
    snprintf(patient, sizeof patient, "%s", rh_create("hospital-a", "Patient", "{\"resourceType\":\"Patient\"}"));
    const char *t1_fmt = "{\"resourceType\":\"Task\",%s\"status\":\"%s\",\"intent\":\"order\",\"description\":\"%s\","
                         "\"for\":{\"reference\":\"Patient/%s\"},\"owner\":{\"reference\":\"%s\"}}";
    snprintf(body, sizeof body, t1_fmt, "", "requested", "transfer", patient, ref_a);
    snprintf(t1, sizeof t1, "%s", rh_create("hospital-a", "Task", body));
    task_body(body, sizeof body, NULL, "requested", ref_a, "second");
    snprintf(t2, sizeof t2, "%s", rh_create("hospital-a", "Task", body));
    char t2_path[160];
    snprintf(t2_path, sizeof t2_path, "/Task/%s", t2);
    task_body(body, sizeof body, t2, "requested", ref_b, "second");
    cr_assert_eq(status_of("hospital-a", "PUT", t2_path, body), 200); /* T2 re-addressed: v1 elv-a, v2 elv-b */

    static const matrix_step steps[] = {
        /* T1: hospital-a's, addressed to elv-a, granting the Patient */
        {"hospital-a", "GET", T1, NO_BODY, 200},
        {"elv-a", "GET", T1, NO_BODY, 200},
        {"elv-b", "GET", T1, NO_BODY, 404},
        {"hospital-b", "GET", T1, NO_BODY, 404},
        {"gp", "GET", T1, NO_BODY, 404},
        {"insurer", "GET", T1, NO_BODY, 403},
        {"elv-a", "GET", T1_V1, NO_BODY, 200},
        {"hospital-b", "GET", T1_V1, NO_BODY, 404},
        {"elv-a", "GET", T1_HISTORY, NO_BODY, 200},
        {"hospital-b", "GET", T1_HISTORY, NO_BODY, 404},
        {"insurer", "GET", T1_HISTORY, NO_BODY, 403},
        {"hospital-b", "PUT", T1, T1_ACCEPTED, 404},
        {"elv-b", "PUT", T1, T1_ACCEPTED, 404},
        {"elv-a", "PUT", T1, T1_REWORDED, 403},
        {"elv-a", "PUT", T1, T1_ACCEPTED, 200},
        {"hospital-a", "PUT", T1, T1_REWORDED, 200},
        {"elv-a", "DELETE", T1, NO_BODY, 403},
        {"hospital-b", "DELETE", T1, NO_BODY, 404},
        {"insurer", "DELETE", T1, NO_BODY, 403},
        /* the Patient: hospital-a's, granted to elv-a by T1 */
        {"elv-a", "GET", PATIENT, NO_BODY, 200},
        {"elv-b", "GET", PATIENT, NO_BODY, 404},
        {"elv-a", "PUT", PATIENT, PATIENT_CHANGED, 403},
        {"hospital-b", "PUT", PATIENT, PATIENT_CHANGED, 404},
        {"hospital-a", "PUT", PATIENT, PATIENT_CHANGED, 200},
        {"elv-a", "DELETE", PATIENT, NO_BODY, 403},
        /* T2, re-addressed from elv-a to elv-b */
        {"elv-a", "GET", T2, NO_BODY, 404},
        {"elv-b", "GET", T2, NO_BODY, 200},
        {"elv-a", "GET", T2_V1, NO_BODY, 200},
        {"elv-a", "GET", T2_V2, NO_BODY, 404},
        {"elv-b", "GET", T2_V1, NO_BODY, 404},
        {"elv-b", "GET", T2_V2, NO_BODY, 200},
        {"elv-a", "GET", T2_HISTORY, NO_BODY, 200},
        {"elv-b", "GET", T2_HISTORY, NO_BODY, 200},
        {"gp", "GET", T2_HISTORY, NO_BODY, 404},
        /* the directory: elv-a's own entry */
        {"hospital-b", "GET", ORG, NO_BODY, 200},
        {"insurer", "GET", ORG, NO_BODY, 200},
        {"hospital-a", "PUT", ORG, ORG_RENAMED, 403},
        {"insurer", "PUT", ORG, ORG_RENAMED, 403},
        {"elv-a", "PUT", ORG, ORG_RENAMED, 200},
        {"hospital-a", "DELETE", ORG, NO_BODY, 403},
        {"elv-a", "DELETE", ORG, NO_BODY, 409},
        {"elv-a", "GET", ORG, NO_BODY, 200},
        /* searches see exactly what reads see */
        {"elv-a", "GET", TASKS, NO_BODY, 200},
        /* finally the owner deletes T1 */
        {"hospital-a", "DELETE", T1, NO_BODY, 200},
        {"elv-a", "GET", T1, NO_BODY, 410},
        {"hospital-b", "GET", T1, NO_BODY, 404},
    };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        const matrix_step *m = &steps[i];
        char path[200];
        switch (m->what) {
        case T1: snprintf(path, sizeof path, "/Task/%s", t1); break;
        case T1_V1: snprintf(path, sizeof path, "/Task/%s/_history/1", t1); break;
        case T1_HISTORY: snprintf(path, sizeof path, "/Task/%s/_history", t1); break;
        case T2: snprintf(path, sizeof path, "/Task/%s", t2); break;
        case T2_V1: snprintf(path, sizeof path, "/Task/%s/_history/1", t2); break;
        case T2_V2: snprintf(path, sizeof path, "/Task/%s/_history/2", t2); break;
        case T2_HISTORY: snprintf(path, sizeof path, "/Task/%s/_history", t2); break;
        case ORG: snprintf(path, sizeof path, "/Organization/%s", elv_a); break;
        case PATIENT: snprintf(path, sizeof path, "/Patient/%s", patient); break;
        case TASKS: snprintf(path, sizeof path, "/Task?_count=50"); break;
        }
        char id_member[120];
        switch (m->body) {
        case T1_ACCEPTED:
        case T1_REWORDED:
            snprintf(id_member, sizeof id_member, "\"id\":\"%s\",", t1);
            snprintf(body, sizeof body, t1_fmt, id_member, "accepted",
                     m->body == T1_REWORDED ? "transfer, reworded" : "transfer", patient, ref_a);
            break;
        case ORG_RENAMED:
            snprintf(body, sizeof body,
                     "{\"resourceType\":\"Organization\",\"id\":\"%s\",\"name\":\"ELV A renamed\",\"identifier\":[{"
                     "\"system\":\"" URA_SYSTEM "\",\"value\":\"" URA_ELV_A "\"}]}",
                     elv_a);
            break;
        case PATIENT_CHANGED:
            snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"female\"}", patient);
            break;
        default: break;
        }
        rh_response r = rh_request(m->who, m->method, path, m->body == NO_BODY ? NULL : body, NULL);
        cr_expect_eq(r.status, m->want, "step %zu: %s %s %s: expected %ld, got %ld %s", i, m->who, m->method, path,
                     m->want, r.status, r.body ? r.body : "");
        if (m->what == TASKS && r.status == 200) {
            json_object *o = rh_json(&r);
            cr_expect_str_eq(rh_str(o, "total"), "1", "elv-a finds T1 only (T2 went to elv-b): %s", r.body);
            json_object_put(o);
        }
        rh_response_free(&r);
    }
}
