/*
 * tests/test_audit.c — the NEN 7513 audit trail (docs/audit.md) end to end:
 * the real server over mutual TLS (tests/rest_harness.h) writes one entry
 * per access, refusals included; a failing audit append refuses the request
 * and leaves no write; AuditEvents validate and are only the accessing
 * organisation's to read; `fhirgw audit verify` finds each kind of tampering
 * made directly in SQLite; concurrent writers leave a valid chain.
 *
 * Memory: each test runs in its own process (Criterion); lists read from the
 * store are freed where read.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rest_harness.h"

#define PATIENT "{\"resourceType\":\"Patient\",\"gender\":\"female\"}"

/* ---- reading the trail ---- */

typedef struct trail {
    st_audit_row *rows;
    size_t count;
} trail;

static trail read_trail(void)
{
    trail t = {0};
    st_audit_query q = {.ascending = true, .count = 100000};
    st_error err;
    cr_assert_eq(st_audit_list(rh.store, &q, &t.rows, &t.count, &err), ST_OK, "%s", err.message);
    return t;
}

/* The entries after seq `after` with this interaction (and type, id when given). */
static size_t count_entries(const trail *t, int64_t after, const char *interaction, const char *type, const char *id,
                            const au_entry **last)
{
    size_t n = 0;
    for (size_t i = 0; i < t->count; i++) {
        const au_entry *e = &t->rows[i].entry;
        if (e->seq <= after || strcmp(e->interaction, interaction) || (type && strcmp(e->type, type)) ||
            (id && strcmp(e->id, id)))
            continue;
        n++;
        if (last)
            *last = e;
    }
    return n;
}

static int64_t head_seq(void)
{
    trail t = read_trail();
    int64_t seq = t.count ? t.rows[t.count - 1].entry.seq : 0;
    free(t.rows);
    return seq;
}

static void expect(const char *who, const char *method, const char *path, const char *body, long status)
{
    rh_response r = rh_request(who, method, path, body, NULL);
    cr_assert_eq(r.status, status, "%s %s: %ld, not %ld: %.300s", method, path, r.status, status, r.body);
    rh_response_free(&r);
}

/* ---- every interaction writes its entry ---- */

Test(audit, every_interaction_writes_its_entry, .init = rh_setup, .fini = rh_teardown)
{
    const char *pid = rh_create("hospital-a", "Patient", PATIENT);
    char patient[96], path[160], body[512];
    snprintf(patient, sizeof patient, "%s", pid);
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"weight\"},"
             "\"subject\":{\"reference\":\"Patient/%s\"}}",
             patient);
    char obs[96];
    snprintf(obs, sizeof obs, "%s", rh_create("hospital-a", "Observation", body));
    snprintf(path, sizeof path, "/Observation/%s", obs);
    expect("hospital-a", "GET", path, NULL, 200);
    snprintf(path, sizeof path, "/Observation/%s/_history/1", obs);
    expect("hospital-a", "GET", path, NULL, 200);
    expect("hospital-a", "GET", "/Observation?status=final", NULL, 200);
    snprintf(path, sizeof path, "/Observation/%s/_history", obs);
    expect("hospital-a", "GET", path, NULL, 200);
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"}", patient);
    snprintf(path, sizeof path, "/Patient/%s", patient);
    expect("hospital-a", "PUT", path, body, 200);
    const char *patch_headers[] = {"Content-Type: application/json-patch+json", NULL};
    rh_response r = rh_request("hospital-a", "PATCH", path,
                               "[{\"op\":\"replace\",\"path\":\"/gender\",\"value\":\"other\"}]", patch_headers);
    cr_assert_eq(r.status, 200, "%.300s", r.body);
    rh_response_free(&r);
    expect("hospital-a", "POST", "/",
           "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"resource\":" PATIENT
           ",\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}}]}",
           200);
    expect("hospital-a", "POST", "/",
           "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"resource\":" PATIENT
           ",\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}}]}",
           200);
    snprintf(path, sizeof path, "/Observation/%s", obs);
    expect("hospital-a", "DELETE", path, NULL, 200);

    trail t = read_trail();
    const au_entry *e = NULL;
    cr_expect_eq(count_entries(&t, 0, "create", "Observation", obs, &e), 1);
    cr_expect_eq(e->action, 'C');
    cr_expect_eq(e->status, 201);
    cr_expect_eq(e->version, 1);
    cr_expect_str_eq(e->ura, "90000101");
    cr_expect_eq(strlen(e->cert_fp), 64);
    cr_expect_eq(strlen(e->patient), AU_PSEUDONYM_LEN, "the Observation's patient, as a pseudonym");
    char expected[AU_PSEUDONYM_LEN + 1], ref[128];
    snprintf(ref, sizeof ref, "Patient/%s", patient);
    cr_assert(au_pseudonym(rh.audit_keys, NULL, ref, expected));
    cr_expect_str_eq(e->patient, expected);
    cr_expect_null(strstr(e->patient, patient), "never the reference itself");
    cr_expect_eq(count_entries(&t, 0, "read", "Observation", obs, &e), 1);
    cr_expect_eq(e->status, 200);
    cr_expect_eq(count_entries(&t, 0, "vread", "Observation", obs, NULL), 1);
    cr_expect_eq(count_entries(&t, 0, "search-type", "Observation", "", NULL), 1, "the search itself");
    cr_expect_eq(count_entries(&t, 0, "search-type", "Observation", obs, NULL), 1, "and what it returned");
    cr_expect_eq(count_entries(&t, 0, "history-instance", "Observation", obs, NULL), 2, "the query and the version");
    cr_expect_eq(count_entries(&t, 0, "update", "Patient", patient, &e), 1);
    cr_expect_eq(e->action, 'U');
    cr_expect_eq(e->version, 2);
    cr_expect_eq(count_entries(&t, 0, "patch", "Patient", patient, &e), 1);
    cr_expect_eq(e->version, 3);
    cr_expect_eq(count_entries(&t, 0, "batch", "Patient", NULL, &e), 2, "one per entry: transaction and batch");
    cr_expect_str_eq(e->where, "Bundle.entry[0]");
    cr_expect_eq(count_entries(&t, 0, "delete", "Observation", obs, &e), 1);
    cr_expect_eq(e->action, 'D');
    for (size_t i = 0; i < t.count; i++)
        cr_expect_eq(t.rows[i].entry.seq, (int64_t)i + 1, "the chain has no gaps");
    free(t.rows);
}

/* ---- refusals ---- */

Test(audit, refusals_are_audited_with_their_status, .init = rh_setup, .fini = rh_teardown)
{
    char pid[96], path[160];
    snprintf(pid, sizeof pid, "%s", rh_create("hospital-a", "Patient", PATIENT));
    int64_t before = head_seq();
    snprintf(path, sizeof path, "/Patient/%s", pid);
    expect("hospital-b", "GET", path, NULL, 404);                   /* someone else's: hidden */
    expect("hospital-b", "GET", "/Patient/nonexistent", NULL, 404); /* missing: the same answer, audited too */
    expect("insurer", "GET", path, NULL, 403);                      /* refused by type */
    trail t = read_trail();
    const au_entry *e = NULL;
    cr_expect_eq(count_entries(&t, before, "read", "Patient", pid, &e), 1);
    cr_expect_str_eq(e->decision, "hidden");
    cr_expect_eq(e->status, 404);
    cr_expect_str_eq(e->ura, "90000102");
    cr_expect_eq(count_entries(&t, before, "read", "Patient", "nonexistent", &e), 1);
    cr_expect_eq(e->status, 404);
    size_t refused = 0;
    for (size_t i = 0; i < t.count; i++)
        refused += t.rows[i].entry.seq > before && !strcmp(t.rows[i].entry.decision, "forbidden") &&
                   t.rows[i].entry.status == 403;
    cr_expect_eq(refused, 1, "the insurer's refusal by type");
    free(t.rows);
}

/* ---- a failing audit append refuses the access ---- */

Test(audit, a_failing_audit_append_refuses_and_writes_nothing, .init = rh_setup, .fini = rh_teardown)
{
    char pid[96], path[160];
    snprintf(pid, sizeof pid, "%s", rh_create("hospital-a", "Patient", PATIENT));
    int64_t before = head_seq();
    st_test_fail_audit(rh.store, true);
    rh_response r = rh_request("hospital-a", "POST", "/Observation",
                               "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}",
                               NULL);
    rh_expect_outcome(&r, 500, "exception");
    rh_response_free(&r);
    snprintf(path, sizeof path, "/Patient/%s", pid);
    r = rh_request("hospital-a", "PUT", path, "{\"resourceType\":\"Patient\",\"id\":\"x\"}", NULL);
    rh_response_free(&r);
    char body[200];
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"}", pid);
    r = rh_request("hospital-a", "PUT", path, body, NULL);
    rh_expect_outcome(&r, 500, "exception");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    rh_expect_outcome(&r, 500, "exception");
    cr_expect_null(strstr(r.body, "female"), "no patient data leaves unrecorded");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/Patient", NULL, NULL);
    rh_expect_outcome(&r, 500, "exception");
    rh_response_free(&r);
    st_test_fail_audit(rh.store, false);

    cr_expect_eq(head_seq(), before, "nothing was appended");
    r = rh_request("hospital-a", "GET", "/Observation", NULL, NULL);
    json_object *b = rh_json(&r);
    cr_expect_str_eq(rh_str(b, "total"), "0", "the create did not happen");
    json_object_put(b);
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_not_null(strstr(r.body, "\"female\""), "the update did not happen");
    cr_expect_not_null(strstr(r.body, "\"versionId\":\"1\""));
    rh_response_free(&r);
}

/* ---- AuditEvent ---- */

Test(audit, audit_events_validate_and_are_the_accessors_only, .init = rh_setup, .fini = rh_teardown)
{
    char pid[96], path[160];
    snprintf(pid, sizeof pid, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", pid);
    expect("hospital-a", "GET", path, NULL, 200);
    expect("hospital-b", "GET", path, NULL, 404);
    trail t = read_trail();
    const au_entry *a = NULL, *b = NULL;
    cr_assert_eq(count_entries(&t, 0, "read", "Patient", pid, NULL), 2);
    for (size_t i = 0; i < t.count; i++) {
        if (!strcmp(t.rows[i].entry.interaction, "read") && !strcmp(t.rows[i].entry.ura, "90000101"))
            a = &t.rows[i].entry;
        if (!strcmp(t.rows[i].entry.interaction, "read") && !strcmp(t.rows[i].entry.ura, "90000102"))
            b = &t.rows[i].entry;
    }
    cr_assert(a && b);
    char apath[64], bpath[64];
    snprintf(apath, sizeof apath, "/AuditEvent/%lld", (long long)a->seq);
    snprintf(bpath, sizeof bpath, "/AuditEvent/%lld", (long long)b->seq);
    free(t.rows);

    rh_response r = rh_request("hospital-a", "GET", apath, NULL, NULL); /* validated by the harness */
    cr_assert_eq(r.status, 200, "%.300s", r.body);
    json_object *ev = rh_json(&r);
    cr_expect_str_eq(rh_str(ev, "resourceType"), "AuditEvent");
    cr_expect_str_eq(rh_str(ev, "type.code"), "rest");
    cr_expect_str_eq(rh_str(ev, "subtype.0.code"), "read");
    cr_expect_str_eq(rh_str(ev, "action"), "R");
    cr_expect_str_eq(rh_str(ev, "outcome"), "0");
    cr_expect_str_eq(rh_str(ev, "agent.0.who.identifier.value"), "90000101");
    cr_expect_not_null(rh_str(ev, "agent.1.who.display"), "the server agent");
    cr_expect_not_null(strstr(rh_str(ev, "entity.0.what.reference"), pid));
    cr_expect_str_eq(rh_str(ev, "entity.1.role.code"), "1", "the patient, as a pseudonym");
    cr_expect_null(strstr(rh_str(ev, "entity.1.what.identifier.value"), pid), "a pseudonym, not the reference");
    cr_expect_str_eq(rh_str(ev, "entity.2.type.code"), "XrequestId");
    json_object_put(ev);
    rh_response_free(&r);

    expect("hospital-a", "GET", bpath, NULL, 404); /* someone else's access: as if it did not exist */
    expect("hospital-b", "GET", apath, NULL, 404);
    expect("hospital-b", "GET", bpath, NULL, 200);
    r = rh_request("hospital-b", "GET", "/AuditEvent?_count=100", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_expect_null(strstr(r.body, "90000101"), "no entry of hospital-a's in hospital-b's search");
    cr_expect_not_null(strstr(r.body, "90000102"));
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/AuditEvent?_count=2", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_object *bundle = rh_json(&r);
    cr_expect_str_eq(rh_str(bundle, "link.1.relation"), "next");
    json_object_put(bundle);
    rh_response_free(&r);
    r = rh_request("hospital-a", "POST", "/AuditEvent", "{\"resourceType\":\"AuditEvent\"}", NULL);
    cr_expect_eq(r.status, 405, "clients write no AuditEvents");
    rh_response_free(&r);
    r = rh_request("hospital-a", "GET", "/metadata", NULL, NULL);
    json_object *cs = rh_json(&r);
    json_object *resources = json_object_object_get(json_object_array_get_idx(json_object_object_get(cs, "rest"), 0),
                                                    "resource");
    for (size_t i = 0; i < json_object_array_length(resources); i++) {
        json_object *res = json_object_array_get_idx(resources, i);
        if (strcmp(json_object_get_string(json_object_object_get(res, "type")), "AuditEvent"))
            continue;
        const char *text = json_object_to_json_string(json_object_object_get(res, "interaction"));
        cr_expect_not_null(strstr(text, "\"read\""));
        cr_expect_not_null(strstr(text, "\"search-type\""));
        cr_expect_null(strstr(text, "\"create\""), "%s", text);
        cr_expect_null(strstr(text, "\"update\""), "%s", text);
        cr_expect_null(json_object_object_get(res, "searchParam"), "only paging works: no search parameters listed");
        cr_expect_null(json_object_object_get(res, "versioning"), "entries have no versions");
    }
    json_object_put(cs);
    rh_response_free(&r);
}

/* ---- audit verify and tampering ---- */

static void write_config(char *config, size_t size)
{
    snprintf(config, size, "%s/verify.conf", rh.dir);
    FILE *f = fopen(config, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "store_path %s/store.db\naudit_key_file %s/pki/audit.key\naudit_checkpoint_key %s/pki/"
            "audit-checkpoint.pem\naudit_checkpoint_file %s/audit-checkpoints\n",
            rh.dir, rh.dir, rh.dir, rh.dir);
    fclose(f);
}

/* Runs fhirgw audit verify on the fixture's files: its exit status, its first line in out. */
static int run_verify(char *out, size_t size)
{
    char config[512], cmd[1024];
    write_config(config, sizeof config);
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=1 '%s' audit verify --config '%s' 2>&1", FHIRGW_BIN, config);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)size, p))
        out[0] = '\0';
    char rest[512];
    while (fgets(rest, sizeof rest, p))
        ;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Twelve entries, the server stopped (its last checkpoint written), then sql run on the store. */
static void tamper(const char *sql)
{
    for (int i = 0; i < 4; i++) {
        char path[160];
        snprintf(path, sizeof path, "/Patient/%s", rh_create("hospital-a", "Patient", PATIENT));
        expect("hospital-a", "GET", path, NULL, 200);
    }
    rh_stop_server();
    char out[512];
    cr_assert_eq(run_verify(out, sizeof out), 0, "before: %s", out);
    if (!sql)
        return;
    char db[512];
    snprintf(db, sizeof db, "%s/store.db", rh.dir);
    sqlite3 *s;
    cr_assert_eq(sqlite3_open(db, &s), SQLITE_OK);
    char *err = NULL;
    cr_assert_eq(sqlite3_exec(s, sql, NULL, NULL, &err), SQLITE_OK, "%s", err ? err : "");
    sqlite3_close(s);
}

static void expect_problem(const char *kind, const char *seq)
{
    char out[512], want[64];
    cr_expect_eq(run_verify(out, sizeof out), 1, "%s", out);
    snprintf(want, sizeof want, "%s: seq %s:", kind, seq);
    cr_expect_eq(strncmp(out, want, strlen(want)), 0, "expected '%s...', got %s", want, out);
}

static void setup_small_checkpoints(void)
{
    rh_options o = {.audit_checkpoint_entries = 4};
    rh_setup_with(&o);
}

Test(audit_verify, an_intact_trail_verifies, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper(NULL);
    char out[512];
    cr_expect_eq(run_verify(out, sizeof out), 0, "%s", out);
    cr_expect_eq(strncmp(out, "ok: ", 4), 0, "%s", out);
}

Test(audit_verify, an_altered_field, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper("UPDATE audit_entry SET ura = '90000102' WHERE seq = 6");
    expect_problem("altered", "6");
}

Test(audit_verify, a_removed_middle_entry, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper("DELETE FROM audit_entry WHERE seq = 5");
    expect_problem("removed", "5");
}

Test(audit_verify, an_inserted_entry, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    /* a copy of entry 3 put in at 4, the later ones renumbered to hide the gap */
    tamper("UPDATE audit_entry SET seq = -(seq + 1) WHERE seq >= 4;"
           "UPDATE audit_entry SET seq = -seq WHERE seq < 0;"
           "INSERT INTO audit_entry SELECT 4, time_ms, key_id, ura, org_name, cert_fp, on_behalf, request_id,"
           " interaction, action, type, res_id, version, patient, bundle_where, decision, status, mac"
           " FROM audit_entry WHERE seq = 3");
    expect_problem("inserted", "4");
}

Test(audit_verify, an_entry_appended_at_the_end, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper("INSERT INTO audit_entry SELECT seq + 100, time_ms, key_id, ura, org_name, cert_fp, on_behalf,"
           " request_id, interaction, action, type, res_id, version, patient, bundle_where, decision, status, mac"
           " FROM audit_entry WHERE seq = (SELECT max(seq) FROM audit_entry)");
    char out[512];
    cr_expect_eq(run_verify(out, sizeof out), 1, "%s", out);
}

Test(audit_verify, two_entries_swapped, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper("UPDATE audit_entry SET seq = -1 WHERE seq = 3;"
           "UPDATE audit_entry SET seq = 3 WHERE seq = 7;"
           "UPDATE audit_entry SET seq = 7 WHERE seq = -1");
    expect_problem("reordered", "3");
}

Test(audit_verify, a_cut_off_tail, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper("DELETE FROM audit_entry WHERE seq > (SELECT max(seq) - 3 FROM audit_entry)");
    char out[512];
    cr_expect_eq(run_verify(out, sizeof out), 1, "%s", out);
    cr_expect_eq(strncmp(out, "truncated: ", 11), 0, "%s", out);
    st_config sc = {0};
    char db[512], cp[512];
    snprintf(db, sizeof db, "%s/store.db", rh.dir);
    snprintf(cp, sizeof cp, "%s/audit-checkpoints", rh.dir);
    sc.path = db;
    sc.audit_keys = rh.audit_keys;
    sc.audit_signer = rh.audit_signer;
    sc.audit_checkpoint_path = cp;
    st_error err;
    st_store *s = st_open(&sc, &err);
    cr_expect_null(s, "the gateway does not write on after a cut-off tail");
    cr_expect_not_null(strstr(err.message, "entries were removed"), "%s", err.message);
    st_close(s);
}

Test(audit_verify, an_edited_checkpoint, .init = setup_small_checkpoints, .fini = rh_teardown)
{
    tamper(NULL);
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/audit-checkpoints", rh.dir);
    /* the first checkpoint's seq 4 made 3: its signature no longer verifies */
    snprintf(cmd, sizeof cmd, "sed -i '1s/^v1 4 /v1 3 /' '%s'", path);
    cr_assert_eq(system(cmd), 0);
    char out[512];
    cr_expect_eq(run_verify(out, sizeof out), 1, "%s", out);
    cr_expect_eq(strncmp(out, "checkpoint-forged: ", 19), 0, "%s", out);
    cr_expect_not_null(strstr(out, "line 1"), "%s", out);
}

/* ---- concurrency ---- */

static void *writer(void *arg)
{
    const char *who = arg;
    for (int i = 0; i < 8; i++) {
        rh_response r = rh_request(who, "POST", "/Patient", PATIENT, NULL);
        rh_response_free(&r);
    }
    return NULL;
}

Test(audit, concurrent_writers_chain_in_commit_order, .init = rh_setup, .fini = rh_teardown)
{
    static const char *const who[] = {"hospital-a", "hospital-b", "gp", "elv-a"};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, writer, (void *)who[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    rh_expect_valid_bodies();
    trail tr = read_trail();
    cr_expect_eq(count_entries(&tr, 0, "create", "Patient", NULL, NULL), 32);
    free(tr.rows);
    rh_stop_server();
    char out[512];
    cr_expect_eq(run_verify(out, sizeof out), 0, "%s", out);
}

/* ---- answers wait for the sync of what they read (store.h: reads may see a commit before it is durable) ---- */

typedef struct call {
    const char *who, *method, *path, *body;
    rh_response r;
    atomic_bool answered;
} call;

static void *make_call(void *arg)
{
    call *c = arg;
    c->r = rh_request(c->who, c->method, c->path, c->body, NULL);
    atomic_store(&c->answered, true);
    return NULL;
}

static int64_t stored_version(const char *type, const char *id)
{
    st_resource r;
    st_error err;
    int64_t v = st_read(rh.store, type, id, &r, &err) == ST_OK ? r.version : 0;
    st_resource_free(&r);
    return v;
}

Test(audit, an_answer_waits_for_the_sync_of_what_it_read, .init = rh_setup, .fini = rh_teardown)
{
    char pid[96], path[160], body[240];
    snprintf(pid, sizeof pid, "%s", rh_create("hospital-a", "Patient", PATIENT));
    snprintf(path, sizeof path, "/Patient/%s", pid);
    snprintf(body, sizeof body, "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"gender\":\"male\"}", pid);
    int64_t durable_head = head_seq();

    st_test_hold_sync(rh.store, true);
    call update = {"hospital-a", "PUT", path, body, {0}, false};
    pthread_t ut, rt;
    pthread_create(&ut, NULL, make_call, &update);
    for (int ms = 0; ms < 10000 && stored_version("Patient", pid) < 2; ms++)
        usleep(1000);
    cr_assert_eq(stored_version("Patient", pid), 2, "committed, so readers see it");
    call read = {"hospital-a", "GET", path, NULL, {0}, false};
    pthread_create(&rt, NULL, make_call, &read);

    /* the store's own lists hold back what is not durable: the update's audit entry is not listed */
    st_audit_row *rows = NULL;
    size_t count = 0;
    st_error err;
    st_audit_query newest = {.count = 1};
    cr_assert_eq(st_audit_list(rh.store, &newest, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 1);
    cr_expect_eq(rows[0].entry.seq, durable_head, "the newest durable entry, not the update's");
    free(rows);
    /* an answer that read nothing goes out at once */
    expect("gp", "GET", "/metadata", NULL, 200);

    usleep(300 * 1000);
    cr_expect_not(atomic_load(&update.answered), "the update is not acknowledged before its sync");
    cr_expect_not(atomic_load(&read.answered), "nor is a read of it answered: a power loss could take it back");
    st_test_hold_sync(rh.store, false);
    pthread_join(ut, NULL);
    pthread_join(rt, NULL);
    cr_expect_eq(update.r.status, 200, "%.300s", update.r.body);
    cr_expect_eq(read.r.status, 200, "%.300s", read.r.body);
    cr_expect_not_null(strstr(read.r.body, "\"male\""));
    rh_response_free(&update.r);
    rh_response_free(&read.r);
    rh_expect_valid_bodies();
}
