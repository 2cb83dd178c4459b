/*
 * tests/test_store.c — the store (gateway/store/store.h) on SQLite: versions,
 * If-Match, delete and history, search on every value kind, paging,
 * conditional create under concurrency, group commit, per-transaction
 * rollback inside a shared batch, durability across reopen and across a
 * killed process.
 *
 * Every test gets a fresh mkdtemp directory, removed afterwards. The clock is
 * pinned (tests set `now`), except where real concurrency is measured.
 */
#include "gateway/store/doc_log.h"
#include "gateway/store/seal.h"
#include "gateway/store/store.h"
#include "gateway/store/store_backend.h" /* the SQLite dialect, to read its statements' plans */
#include "gateway/store/store_sql.h"     /* the shared SQL, internal to the store: tested here with a second dialect */
#include "gateway/util/limits.h"         /* backup_event_jump */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1714557600000LL /* 2024-05-01T10:00:00.000Z */

static char dir[64];
static char db_path[128];
static st_store *S;
static _Atomic int64_t now = T0;
static _Atomic unsigned commits_seen, largest_batch, failed_in_batches;

static int64_t pinned_clock(void *arg)
{
    (void)arg;
    return atomic_load(&now);
}

/* group_commit_batches_concurrent_writers: the first commit waits (on the commit thread, before its writers are
 * answered) until this many writers are in it or queued behind it; 0: no waiting. */
static _Atomic unsigned hold_first_commit_for;

static void hold_until_queued(unsigned n)
{
    for (int waited_ms = 0; n && waited_ms < 30000; waited_ms++) {
        st_counters c;
        st_counters_get(S, &c);
        if (c.queued >= n)
            return;
        usleep(1000);
    }
}

static void count_commits(void *arg, const st_commit_stats *stats)
{
    (void)arg;
    unsigned hold = atomic_exchange(&hold_first_commit_for, 0);
    if (hold > stats->transactions)
        hold_until_queued(hold - (unsigned)stats->transactions);
    if (stats->ok)
        atomic_fetch_add(&commits_seen, 1);
    if (stats->transactions > atomic_load(&largest_batch))
        atomic_store(&largest_batch, (unsigned)stats->transactions);
    atomic_fetch_add(&failed_in_batches, (unsigned)stats->failed);
}

static st_store *open_store(bool real_clock)
{
    st_config config = {
        .path = db_path,
        .clock = real_clock ? NULL : pinned_clock,
        .on_commit = count_commits,
    };
    st_error err = {{0}};
    st_store *store = st_open(&config, &err);
    cr_assert_not_null(store, "st_open: %s", err.message);
    return store;
}

static void setup(void)
{
    strcpy(dir, "/tmp/test_store.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(db_path, sizeof db_path, "%s/fhir.db", dir);
    S = open_store(false);
}

/* Removes folder and what it holds, the document log's folder included. */
static void remove_tree(const char *folder)
{
    DIR *d = opendir(folder);
    if (!d)
        return;
    struct dirent *e;
    char path[400];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
            if (unlink(path) != 0)
                remove_tree(path);
        }
    closedir(d);
    rmdir(folder);
}

static void remove_dir(void)
{
    remove_tree(dir);
}

static void teardown(void)
{
    st_close(S);
    S = NULL;
    remove_dir();
}

TestSuite(store, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------------------------- */

static st_op_result submit1(st_op op)
{
    st_op_result r;
    memset(&r, 0, sizeof r);
    st_submit_wait(S, &op, 1, &r);
    return r;
}

static st_op create_op(const char *type, const char *id, const char *json)
{
    return (st_op){.kind = ST_OP_CREATE, .type = type, .id = id, .owner = "11111111", .json = json};
}

static st_op_result create(const char *type, const char *id, const char *json)
{
    return submit1(create_op(type, id, json));
}

static st_op_result update(const char *type, const char *id, const char *json, int64_t expected)
{
    return submit1((st_op){.kind = ST_OP_UPDATE, .type = type, .id = id, .json = json, .expected_version = expected});
}

static st_op_result delete (const char *type, const char *id, int64_t expected)
{
    return submit1((st_op){.kind = ST_OP_DELETE, .type = type, .id = id, .expected_version = expected});
}

static st_status read_json(const char *type, const char *id, char *out, size_t len, int64_t *version)
{
    st_resource r;
    st_status s = st_read(S, type, id, &r, NULL);
    if (out)
        snprintf(out, len, "%s", r.json ? r.json : "");
    if (version)
        *version = r.version;
    st_resource_free(&r);
    return s;
}

/* ---- Versions ------------------------------------------------------------------------------- */

Test(store, create_read_update_vread)
{
    st_op_result r = create("Patient", "p1", "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"active\":true}");
    cr_assert_eq(r.status, ST_OK, "%s %s", st_status_name(r.status), r.message);
    cr_expect_eq(r.version, 1);
    cr_expect_str_eq(r.last_updated, "2024-05-01T10:00:00.000Z");

    char json[512];
    int64_t version;
    cr_assert_eq(read_json("Patient", "p1", json, sizeof json, &version), ST_OK);
    cr_expect_str_eq(json, "{\"meta\":{\"versionId\":\"1\",\"lastUpdated\":\"2024-05-01T10:00:00.000Z\"},"
                           "\"resourceType\":\"Patient\",\"id\":\"p1\",\"active\":true}");
    cr_expect_eq(version, 1);

    atomic_store(&now, T0 + 1500);
    r = update("Patient", "p1", "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"active\":false}", 0);
    cr_assert_eq(r.status, ST_OK);
    cr_expect_eq(r.version, 2);
    cr_expect_not(r.created);
    cr_expect_str_eq(r.last_updated, "2024-05-01T10:00:01.500Z");

    st_resource v;
    cr_assert_eq(st_vread(S, "Patient", "p1", 1, &v, NULL), ST_OK);
    cr_expect(strstr(v.json, "\"active\":true"));
    cr_expect_eq(v.last_updated_ms, T0);
    cr_expect_str_eq(v.owner, "11111111");
    cr_expect_eq(v.method, ST_METHOD_CREATE);
    st_resource_free(&v);
    cr_expect_eq(st_vread(S, "Patient", "p1", 3, &v, NULL), ST_NOT_FOUND);
    cr_expect_eq(st_read(S, "Patient", "nope", &v, NULL), ST_NOT_FOUND);

    /* create with an existing id; update of a missing one, with and without update-as-create */
    cr_expect_eq(create("Patient", "p1", "{}").status, ST_CONFLICT);
    cr_expect_eq(update("Patient", "p2", "{}", 0).status, ST_NOT_FOUND);
    r = submit1((st_op){.kind = ST_OP_UPDATE, .type = "Patient", .id = "p2", .json = "{}", .create_if_missing = true});
    cr_expect_eq(r.status, ST_OK);
    cr_expect(r.created);
    cr_expect_eq(r.version, 1);
}

/* ---- Sealed at rest: at commit, or early on the caller's thread (st_seal_early) ---- */

/* S closed and opened again on the same database, sealing with keys k. */
static void reopen_sealing(const sl_keyring *k)
{
    st_close(S);
    st_config config = {.path = db_path, .clock = pinned_clock, .seal_keys = k};
    st_error e = {{0}};
    S = st_open(&config, &e);
    cr_assert_not_null(S, "%s", e.message);
}

static sl_keyring *sealing_store(void)
{
    char keys[160], err[256] = "";
    snprintf(keys, sizeof keys, "%s/seal.key", dir);
    FILE *f = fopen(keys, "w");
    cr_assert_not_null(f);
    fputs("k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", f);
    fclose(f);
    sl_keyring *k = sl_keyring_load(keys, err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    reopen_sealing(k);
    return k;
}

/* The stored body of type/id's version 1, as bytes, into out. */
static size_t stored_body(const char *type, const char *id, char *out, size_t size)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT json FROM resource_version WHERE type = ?1 AND id = ?2", -1, &stmt,
                                    NULL),
                 SQLITE_OK);
    sqlite3_bind_text(stmt, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW);
    size_t n = (size_t)sqlite3_column_bytes(stmt, 0);
    cr_assert_lt(n, size);
    memcpy(out, sqlite3_column_blob(stmt, 0), n);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
}

/* The document log's record that a row's locator names (malloc'd, NUL-terminated), and whether its bytes are all
 * zeros (a freed record reads so). */
static char *logged_record(const char *locator, size_t len, bool *zeros)
{
    dl_locator loc;
    cr_assert(dl_parse(locator, len, &loc), "%.*s", (int)len, locator);
    char path[256];
    snprintf(path, sizeof path, "%s" DL_SUFFIX "/segment-00000001", db_path);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *out = calloc(1, loc.length + 1);
    cr_assert_not_null(out);
    cr_assert_eq(fseek(f, (long)loc.offset, SEEK_SET), 0);
    size_t got = fread(out, 1, loc.length, f);
    fclose(f);
    cr_assert_eq(got, loc.length, "the record is in the file whole");
    bool all_zero = true;
    for (size_t i = 0; i < got && all_zero; i++)
        all_zero = out[i] == 0;
    if (zeros)
        *zeros = all_zero;
    return out;
}

typedef struct early {
    const char *plain; /* sealed by the callback, or NULL: it gives nothing */
    const char *id;
    char given[DL_LOCATOR_MAX]; /* what the callback handed over when it was a locator */
} early;

static char *seal_it_early(void *arg, int64_t version, size_t *len)
{
    early *e = arg;
    char *sealed = e->plain && version == 1 ? st_seal_early(S, "Bundle", e->id, e->plain, strlen(e->plain), len) : NULL;
    if (sealed && dl_is_locator(sealed, *len))
        snprintf(e->given, sizeof e->given, "%.*s", (int)*len, sealed);
    return sealed;
}

static st_op_result create_sealed(const char *id, const char *plain)
{
    early e = {plain, id, ""};
    st_op op = create_op("Bundle", id, "{\"resourceType\":\"Bundle\",\"type\":\"document\"}");
    op.sealed = seal_it_early, op.render_arg = &e;
    return submit1(op);
}

/* Retention's purge of Bundle/id (ST_OP_PURGE). */
static st_op_result purge_document(const char *id)
{
    st_op purge = create_op("Bundle", id, "{}");
    purge.kind = ST_OP_PURGE;
    return submit1(purge);
}

Test(store, a_body_sealed_early_reads_as_one_sealed_at_commit)
{
    sl_keyring *k = sealing_store();
    char body[1024], json[1024];
    /* at commit: rendered, then sealed */
    cr_assert_eq(create("Bundle", "b1", "{\"resourceType\":\"Bundle\",\"type\":\"document\"}").status, ST_OK);
    stored_body("Bundle", "b1", body, sizeof body);
    cr_expect(!memcmp(body, SL_PREFIX "k1.", strlen(SL_PREFIX "k1.")), "sealed at commit");
    cr_assert_eq(read_json("Bundle", "b1", json, sizeof json, NULL), ST_OK);
    cr_expect_str_eq(json, "{\"meta\":{\"versionId\":\"1\",\"lastUpdated\":\"2024-05-01T10:00:00.000Z\"},"
                           "\"resourceType\":\"Bundle\",\"type\":\"document\"}");
    /* early: the caller's plaintext lacks the version's meta; reads put it first in the meta object */
    atomic_store(&now, T0 + 250);
    cr_assert_eq(create_sealed("b2", "{\"resourceType\":\"Bundle\",\"id\":\"b2\",\"meta\":{\"profile\":[\"x\"]},"
                                     "\"type\":\"document\"}")
                     .status,
                 ST_OK);
    size_t n = stored_body("Bundle", "b2", body, sizeof body);
    cr_expect(!memcmp(body, DL_PREFIX, strlen(DL_PREFIX)), "the row names a record of the document log");
    char *record = logged_record(body, n, NULL);
    cr_expect(!memcmp(record, SL_PREFIX_EARLY "k1.", strlen(SL_PREFIX_EARLY "k1.")),
              "stored as the callback sealed it");
    free(record);
    cr_assert_eq(read_json("Bundle", "b2", json, sizeof json, NULL), ST_OK);
    cr_expect_str_eq(json, "{\"resourceType\":\"Bundle\",\"id\":\"b2\",\"meta\":{\"versionId\":\"1\",\"lastUpdated\":"
                           "\"2024-05-01T10:00:00.250Z\",\"profile\":[\"x\"]},\"type\":\"document\"}");
    cr_assert_eq(create_sealed("b3", "{\"resourceType\":\"Bundle\",\"id\":\"b3\",\"meta\":{},\"type\":\"collection\"}")
                     .status,
                 ST_OK);
    cr_assert_eq(read_json("Bundle", "b3", json, sizeof json, NULL), ST_OK);
    cr_expect_str_eq(json, "{\"resourceType\":\"Bundle\",\"id\":\"b3\",\"meta\":{\"versionId\":\"1\",\"lastUpdated\":"
                           "\"2024-05-01T10:00:00.250Z\"},\"type\":\"collection\"}");
    /* a callback that gives nothing: rendered and sealed at commit */
    cr_assert_eq(create_sealed("b4", NULL).status, ST_OK);
    stored_body("Bundle", "b4", body, sizeof body);
    cr_expect(!memcmp(body, SL_PREFIX "k1.", strlen(SL_PREFIX "k1.")));
    /* sealed early for another row: does not open there */
    early other = {"{\"resourceType\":\"Bundle\",\"id\":\"b5\",\"meta\":{},\"type\":\"collection\"}", "b6", ""};
    st_op op = create_op("Bundle", "b5", "{}");
    op.sealed = seal_it_early, op.render_arg = &other;
    cr_assert_eq(submit1(op).status, ST_OK);
    st_resource r;
    cr_expect_eq(st_read(S, "Bundle", "b5", &r, NULL), ST_INTERNAL);
    st_resource_free(&r);
    /* nothing seals early without keys or for a type that is not sealed */
    size_t len = 0;
    cr_expect_null(st_seal_early(S, "Patient", "p1", "{\"meta\":{}}", 11, &len));
    st_close(S);
    S = open_store(false);
    sl_keyring_free(k);
    cr_expect_null(st_seal_early(S, "Bundle", "b9", "{\"meta\":{}}", 11, &len));
}

/* ---- Documents sealed early, kept in the document log (doc_log.h) ---- */

#define DOC_PLAIN(id) "{\"resourceType\":\"Bundle\",\"id\":\"" id "\",\"meta\":{},\"type\":\"document\"}"

static uint64_t document_syncs(void)
{
    st_counters c;
    st_counters_get(S, &c);
    return c.document_log_syncs;
}

/* The record that Bundle/id's row names: whether it still holds its bytes. */
static bool record_of_row_is_kept(const char *id)
{
    char body[256];
    size_t n = stored_body("Bundle", id, body, sizeof body);
    bool zeros = true;
    free(logged_record(body, n, &zeros));
    return !zeros;
}

Test(store, documents_sealed_early_are_kept_in_the_document_log_across_restarts)
{
    sl_keyring *k = sealing_store();
    cr_assert_eq(create_sealed("d1", DOC_PLAIN("d1")).status, ST_OK);
    cr_expect_geq(document_syncs(), 1, "the COMMIT waited for a sync of the log");
    cr_expect(record_of_row_is_kept("d1"));
    reopen_sealing(k);
    cr_assert_eq(create_sealed("d2", DOC_PLAIN("d2")).status, ST_OK);
    char json[512], body1[128], body2[128];
    const char *ids[] = {"d1", "d2"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(read_json("Bundle", ids[i], json, sizeof json, NULL), ST_OK, "%s after a restart", ids[i]);
        cr_expect(strstr(json, "\"type\":\"document\"") && strstr(json, "\"versionId\":\"1\""), "%s", json);
    }
    dl_locator l1, l2;
    cr_assert(dl_parse(body1, stored_body("Bundle", "d1", body1, sizeof body1), &l1));
    cr_assert(dl_parse(body2, stored_body("Bundle", "d2", body2, sizeof body2), &l2));
    cr_expect_geq(l2.offset, l1.offset + l1.length, "the reopened log appends after what it held");
    cr_expect_eq(l2.offset % DL_ALIGN, 0);
    st_close(S);
    S = open_store(false);
    cr_expect_eq(st_read(S, "Bundle", "d1", &(st_resource){0}, NULL), ST_INTERNAL,
                 "without the seal keys the log is not opened, and its rows do not read");
    sl_keyring_free(k);
}

Test(store, a_document_rolled_back_or_never_stored_gives_its_blocks_back)
{
    sl_keyring *k = sealing_store();
    cr_assert_eq(create("Patient", "p1", "{\"resourceType\":\"Patient\"}").status, ST_OK);
    /* the document's row is written, then the transaction rolls back: a second create of Patient/p1 */
    early e = {DOC_PLAIN("d1"), "d1", ""};
    st_op ops[2] = {create_op("Bundle", "d1", "{}"), create_op("Patient", "p1", "{\"resourceType\":\"Patient\"}")};
    ops[0].sealed = seal_it_early, ops[0].render_arg = &e;
    st_op_result r[2];
    st_submit_wait(S, ops, 2, r);
    cr_expect_eq(r[1].status, ST_CONFLICT);
    cr_assert(*e.given, "the document went to the log");
    bool zeros = false;
    free(logged_record(e.given, strlen(e.given), &zeros));
    cr_expect(zeros, "the record of a row rolled back is freed");
    /* sealed, but no operation took it */
    size_t len = 0;
    char *left = st_seal_early(S, "Bundle", "d2", DOC_PLAIN("d2"), strlen(DOC_PLAIN("d2")), &len);
    cr_assert_not_null(left);
    free(logged_record(left, len, &zeros));
    cr_expect_not(zeros);
    st_discard_early(S, left, len);
    free(logged_record(left, len, &zeros));
    cr_expect(zeros, "a discarded record is freed");
    free(left);
    sl_keyring_free(k);
}

Test(store, a_purge_frees_the_documents_records_once_durable)
{
    sl_keyring *k = sealing_store();
    cr_assert_eq(create_sealed("d1", DOC_PLAIN("d1")).status, ST_OK);
    cr_assert_eq(create_sealed("d2", DOC_PLAIN("d2")).status, ST_OK);
    char body[128];
    size_t n = stored_body("Bundle", "d1", body, sizeof body);
    /* a purge rolled back with its transaction keeps the record */
    st_op ops[2] = {create_op("Bundle", "d1", "{}"), create_op("Bundle", "d2", "{}")};
    ops[0].kind = ST_OP_PURGE;
    st_op_result r[2];
    st_submit_wait(S, ops, 2, r);
    cr_expect_eq(r[1].status, ST_CONFLICT);
    cr_expect(record_of_row_is_kept("d1"), "the purge was rolled back: the record stays");
    cr_assert_eq(purge_document("d1").status, ST_OK);
    bool zeros = false;
    free(logged_record(body, n, &zeros));
    cr_expect(zeros, "the purged document's record is freed");
    cr_expect(record_of_row_is_kept("d2"), "the other document's record stays");
    st_resource res;
    cr_expect_eq(st_read(S, "Bundle", "d1", &res, NULL), ST_GONE);
    st_resource_free(&res);
    cr_expect_eq(st_read(S, "Bundle", "d2", &res, NULL), ST_OK);
    st_resource_free(&res);
    sl_keyring_free(k);
}

Test(store, a_failed_sync_of_the_document_log_fails_the_commit_and_breaks_the_store)
{
    sl_keyring *k = sealing_store();
    st_test_fail_next_document_sync(S);
    cr_expect_eq(create_sealed("d1", DOC_PLAIN("d1")).status, ST_IO, "no row names a record that may be lost");
    st_op later = create_op("Patient", "p1", "{\"resourceType\":\"Patient\"}");
    st_op_result r;
    cr_expect_eq(st_submit_wait(S, &later, 1, &r), ST_IO, "the store is broken: nothing more is taken");
    reopen_sealing(k);
    st_resource res;
    cr_expect_eq(st_read(S, "Bundle", "d1", &res, NULL), ST_NOT_FOUND, "after a restart: the commit never happened");
    st_resource_free(&res);
    cr_assert_eq(create_sealed("d1", DOC_PLAIN("d1")).status, ST_OK, "and the document can be sent again");
    sl_keyring_free(k);
}

/* ---- One gateway per database (st_config.exclusive) ---- */

Test(store, a_second_gateway_on_one_database_is_refused_and_tools_are_not)
{
    st_close(S);
    st_config serving = {.path = db_path, .clock = pinned_clock, .exclusive = true};
    st_error e = {{0}};
    S = st_open(&serving, &e);
    cr_assert_not_null(S, "%s", e.message);
    st_store *second = st_open(&serving, &e);
    cr_expect_null(second, "two gateways would append over each other's documents and fork the audit chain");
    st_close(second);
    char want[64];
    snprintf(want, sizeof want, "in use by another gateway (pid %ld,", (long)getpid());
    cr_expect(strstr(e.message, want), "%s", e.message);
    st_config tool = {.path = db_path, .clock = pinned_clock}; /* audit verify opens it beside the gateway */
    st_store *verify = st_open(&tool, &e);
    cr_expect_not_null(verify, "%s", e.message);
    st_close(verify);
    st_close(S);
    S = st_open(&serving, &e);
    cr_expect_not_null(S, "the lock goes with the store that held it: %s", e.message);
}

/* ---- Backups (st_backup) ---- */

/* create_sealed of DOC_PLAIN for an id known only at run time. */
static st_op_result create_numbered_document(const char *id)
{
    char plain[128];
    snprintf(plain, sizeof plain, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{},\"type\":\"document\"}", id);
    return create_sealed(id, plain);
}

/* Documents d<from> .. d<to - 1>. */
static void create_documents(int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        cr_assert_eq(create_numbered_document(id).status, ST_OK);
    }
}

#define BACKUP_WRITES 300

static atomic_int backup_writes_done; /* creates acknowledged so far by the writer below */
static atomic_bool backup_writer_failed;

/* Documents w0, w1, ... sealed early, one after the other, while the backup runs. */
static void *backup_writer(void *arg)
{
    (void)arg;
    for (int i = 0; i < BACKUP_WRITES; i++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", i);
        if (create_numbered_document(id).status != ST_OK)
            atomic_store(&backup_writer_failed, true);
        atomic_fetch_add(&backup_writes_done, 1);
    }
    return NULL;
}

/* Bundle/id read from store s: its status, and whether the body is its document. */
static st_status read_document(st_store *s, const char *id, bool *whole)
{
    st_resource r;
    st_error e;
    st_status status = st_read(s, "Bundle", id, &r, &e);
    char want[40];
    snprintf(want, sizeof want, "\"id\":\"%s\"", id);
    *whole = status == ST_OK && r.json && strstr(r.json, want) && strstr(r.json, "\"type\":\"document\"");
    st_resource_free(&r);
    return status;
}

Test(store, a_backup_taken_while_documents_are_written_holds_every_one_written_before_it)
{
    sl_keyring *k = sealing_store();
    create_documents(0, 20);
    cr_assert_eq(purge_document("d0").status, ST_OK);

    char to[160];
    snprintf(to, sizeof to, "%s/backup", dir);
    pthread_t writer;
    cr_assert_eq(pthread_create(&writer, NULL, backup_writer, NULL), 0);
    while (atomic_load(&backup_writes_done) < BACKUP_WRITES / 3)
        sched_yield();
    int before = atomic_load(&backup_writes_done);
    st_config config = {.path = db_path};
    st_backup_report report;
    st_error e = {{0}};
    cr_assert_eq(st_backup(&config, to, &report, &e), ST_OK, "%s", e.message);
    int after = atomic_load(&backup_writes_done);
    pthread_join(writer, NULL);
    cr_assert_not(atomic_load(&backup_writer_failed));
    cr_expect_gt(report.database_bytes, 0);
    cr_expect_gt(report.document_data, 0);
    cr_expect_lt(report.document_data, report.document_bytes, "the purged record is a hole in the copy too");
    cr_expect_eq(st_backup(&config, to, &report, &e), ST_CONFLICT, "a backup never overwrites another");

    /* the copy, opened as a store of its own */
    char copy[200];
    snprintf(copy, sizeof copy, "%s/fhir.db", to);
    st_config restored = {.path = copy, .clock = pinned_clock, .seal_keys = k};
    st_store *R = st_open(&restored, &e);
    cr_assert_not_null(R, "%s", e.message);
    bool whole = false;
    cr_expect_eq(read_document(R, "d0", &whole), ST_GONE, "purged before the backup: purged in it");
    for (int i = 1; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        cr_expect(read_document(R, id, &whole) == ST_OK && whole, "%s, written before the backup", id);
    }
    int found = 0;
    for (int i = 0; i < BACKUP_WRITES; i++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", i);
        st_status status = read_document(R, id, &whole);
        cr_expect(status == ST_NOT_FOUND || (status == ST_OK && whole), "%s: %d, or its body does not open", id,
                  status);
        cr_expect(i >= before || status == ST_OK, "%s was acknowledged before the backup began, and is not in it", id);
        found += status == ST_OK;
    }
    cr_expect_leq(found, after, "nothing acknowledged only after the backup ended is in it: %d of %d", found, after);
    st_close(R);

    /* a record freed under a copy made by hand reads as zeros: an error naming it, not its locator as the body */
    char body[128];
    size_t n = stored_body("Bundle", "d5", body, sizeof body);
    dl_locator loc;
    cr_assert(dl_parse(body, n, &loc));
    char segment[260];
    snprintf(segment, sizeof segment, "%s" DL_SUFFIX "/segment-00000001", copy);
    FILE *f = fopen(segment, "r+b");
    cr_assert_not_null(f);
    char *zeros = calloc(1, loc.length);
    cr_assert(fseek(f, (long)loc.offset, SEEK_SET) == 0 && fwrite(zeros, 1, loc.length, f) == loc.length);
    fclose(f);
    free(zeros);
    R = st_open(&restored, &e);
    cr_assert_not_null(R, "%s", e.message);
    cr_expect_eq(st_read(R, "Bundle", "d5", &(st_resource){0}, &e), ST_INTERNAL);
    cr_expect(strstr(e.message, "holds no sealed document"), "%s", e.message);
    st_close(R);
    fprintf(stderr, "backup test: %d of %d documents written before the backup began, %d in it, %d when it ended\n",
            before, BACKUP_WRITES, found, after);
    sl_keyring_free(k);
}

/* Replaces a file of a backup by a folder of the same name: opening it works, reading it fails (EISDIR), as a
 * disk error would halfway through a restore. */
static void break_backup_file(const char *backup, const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", backup, name);
    cr_assert_eq(unlink(path), 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(mkdir(path, 0700), 0);
}

/* Every document d0..d<n-1> reads whole from S. */
static void expect_documents(int n, const char *when)
{
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        bool whole = false;
        cr_expect(read_document(S, id, &whole) == ST_OK && whole, "%s: %s does not read whole", when, id);
    }
}

Test(store, a_restore_that_fails_halfway_leaves_the_store_as_it_was)
{
    sl_keyring *k = sealing_store();
    create_documents(0, 5);
    st_config config = {.path = db_path};
    st_backup_report report;
    st_error e = {{0}};
    const char *const broken[] = {"fhir.db" DL_SUFFIX "/segment-00000001", "fhir.db"};
    for (int round = 0; round < 2; round++) {
        char backup[160], aside[160];
        snprintf(backup, sizeof backup, "%s/backup%d", dir, round);
        snprintf(aside, sizeof aside, "%s/aside%d", dir, round);
        cr_assert_eq(st_backup(&config, backup, &report, &e), ST_OK, "%s", e.message);
        create_documents(5 + round, 6 + round); /* after the backup: only the live store has it */
        break_backup_file(backup, broken[round]);
        st_close(S);
        S = NULL;

        uint64_t copied = 1;
        cr_expect_eq(st_restore(&config, backup, aside, &copied, &e), ST_IO, "round %d", round);
        cr_expect(strstr(e.message, "the store is as it was"), "round %d: %s", round, e.message);
        cr_expect_eq(copied, 0);
        cr_expect(access(aside, F_OK) != 0, "round %d: the folder for the replaced files is gone again", round);
        reopen_sealing(k);
        expect_documents(6 + round, round ? "the database's copy failed" : "the log's copy failed");
    }
    sl_keyring_free(k);
}

/* Reopens S as the serving gateway does (the serving lock: the document log is its own to reclaim); what its
 * reclaim did. */
static st_reclaim reopen_owning_or_not(const sl_keyring *k)
{
    st_close(S);
    st_config config = {.path = db_path, .clock = pinned_clock, .seal_keys = k, .exclusive = true};
    st_error e = {{0}};
    S = st_open(&config, &e);
    cr_assert_not_null(S, "the store opens whatever its reclaim does: %s", e.message);
    st_reclaim r;
    st_reclaim_report(S, &r);
    return r;
}

/* The same, where the start must reclaim (the last stop was not clean) and can: the bytes it freed. */
static uint64_t reopen_owning(const sl_keyring *k)
{
    st_reclaim r = reopen_owning_or_not(k);
    cr_expect(r.ran, "no clean-stop marker: the start checks the log");
    cr_expect_null(r.error, "%s", r.error);
    return r.freed;
}

/* Whether the record a locator names reads as zeros now. */
static bool record_freed(const char *locator, size_t len)
{
    bool zeros = false;
    free(logged_record(locator, len, &zeros));
    return zeros;
}

/* A document sealed and appended to the log, whose transaction never commits (as when the process dies
 * before it): its locator into out. */
static size_t orphan_record(const char *id, char *out, size_t size)
{
    const char *plain = "{\"resourceType\":\"Bundle\",\"type\":\"document\"}";
    size_t len = 0;
    char *locator = st_seal_early(S, "Bundle", id, plain, strlen(plain), &len);
    cr_assert(locator && dl_is_locator(locator, len) && len < size);
    memcpy(out, locator, len);
    free(locator);
    return len;
}

/* A new store has no marker yet, but nothing to check either: its first start reports no reclaim. */
Test(store, a_new_store_has_nothing_to_reclaim)
{
    sl_keyring *k = sealing_store();
    st_reclaim first = reopen_owning_or_not(k);
    cr_expect_not(first.ran, "an empty document log: no unclean stop to recover from");
    create_documents(0, 1);
    st_close(S);
    S = NULL;
    char marker[200];
    snprintf(marker, sizeof marker, "%s" DL_SUFFIX "/" DL_CLEAN_STOP, db_path);
    cr_expect_eq(access(marker, F_OK), 0, "its clean stop leaves the marker");
    cr_assert_eq(unlink(marker), 0, "%s", strerror(errno)); /* as if the process had died */
    st_reclaim after_crash = reopen_owning_or_not(k);
    cr_expect(after_crash.ran, "with a document in the log, a start without the marker checks it");
    cr_expect_eq(after_crash.documents, 1);
    sl_keyring_free(k);
}

Test(store, records_no_row_names_are_freed_at_the_next_start_after_an_unclean_stop)
{
    sl_keyring *k = sealing_store();
    reopen_owning_or_not(k);
    create_documents(0, 5);
    char purged[128], orphan[128], marker[200], docs[160], why[256] = "";
    size_t purged_len = stored_body("Bundle", "d1", purged, sizeof purged);
    size_t orphan_len = orphan_record("o1", orphan, sizeof orphan);
    snprintf(docs, sizeof docs, "%s" DL_SUFFIX, db_path);
    snprintf(marker, sizeof marker, "%s/" DL_CLEAN_STOP, docs);

    /* a purge held back by a backup when the gateway stops: no marker is left, the next start frees it */
    int lock = dl_backup_lock(docs, why, sizeof why);
    cr_assert_geq(lock, 0, "%s", why);
    cr_assert_eq(purge_document("d1").status, ST_OK);
    st_close(S);
    S = NULL;
    dl_backup_unlock(lock);
    cr_expect_neq(access(marker, F_OK), 0, "a stop with a record held back is not clean");
    cr_expect_not(record_freed(purged, purged_len), "held back while the backup ran");
    cr_expect_not(record_freed(orphan, orphan_len));
    st_reclaim first = reopen_owning_or_not(k);
    cr_expect(first.ran && !first.error, "%s", first.error ? first.error : "did not run");
    cr_expect_eq(first.documents, 4, "d0, d2, d3 and d4 keep their records; d1's was purged: %" PRIu64,
                 first.documents);
    uint64_t freed = first.freed;
    cr_expect_gt(freed, DL_ALIGN, "%" PRIu64 " bytes freed: a record's blocks, and the last one's bytes", freed);
    cr_expect(record_freed(purged, purged_len), "the purged document's record is gone");
    cr_expect(record_freed(orphan, orphan_len), "the record no transaction committed is gone");
    expect_documents(1, "after the reclaim");
    for (int i = 2; i < 5; i++) {
        char id[16];
        bool whole = false;
        snprintf(id, sizeof id, "d%d", i);
        cr_expect(read_document(S, id, &whole) == ST_OK && whole, "%s survives the reclaim", id);
    }

    /* a start while a backup copies the log cannot reclaim: the dead space waits for a start after it */
    orphan_len = orphan_record("o3", orphan, sizeof orphan);
    create_documents(6, 7);
    st_close(S);
    S = NULL;
    cr_assert_eq(unlink(marker), 0, "%s", strerror(errno)); /* as if the process had died */
    lock = dl_backup_lock(docs, why, sizeof why);
    cr_assert_geq(lock, 0, "%s", why);
    st_reclaim refused = reopen_owning_or_not(k);
    cr_expect(refused.ran);
    cr_expect_eq(refused.freed, 0);
    cr_expect(refused.error && strstr(refused.error, "backup"), "%s", refused.error ? refused.error : "(no error)");
    dl_backup_unlock(lock);
    st_close(S);
    S = NULL;
    cr_expect_neq(access(marker, F_OK), 0, "the stop after a reclaim that could not run is not clean");
    cr_expect_not(record_freed(orphan, orphan_len));
    cr_expect_geq(reopen_owning(k), DL_ALIGN);
    cr_expect(record_freed(orphan, orphan_len), "freed at the start after the backup");

    /* a clean stop leaves the marker: the next start has nothing to look at */
    st_close(S);
    S = NULL;
    cr_expect_eq(access(marker, F_OK), 0, "a clean stop leaves its marker");
    st_reclaim after_clean = reopen_owning_or_not(k);
    cr_expect_not(after_clean.ran, "after a clean stop the start has nothing to check");
    cr_expect_eq(after_clean.freed, 0);
    cr_expect_neq(access(marker, F_OK), 0, "taken away while the gateway runs");

    /* a crash (the marker never written) after a record was appended and never committed */
    orphan_len = orphan_record("o2", orphan, sizeof orphan);
    create_documents(5, 6);
    st_close(S);
    S = NULL;
    cr_assert_eq(unlink(marker), 0, "%s", strerror(errno)); /* as if the process had died */
    reopen_sealing(k); /* a tool's open, not the serving gateway's: it reclaims nothing */
    cr_expect_not(record_freed(orphan, orphan_len));
    freed = reopen_owning(k);
    cr_expect_geq(freed, DL_ALIGN);
    cr_expect(record_freed(orphan, orphan_len));
    expect_documents(1, "after the second reclaim");
    bool whole = false;
    cr_expect(read_document(S, "d5", &whole) == ST_OK && whole, "written just before the crash");
    sl_keyring_free(k);
}

Test(store, a_purge_during_a_backup_keeps_its_records_until_the_backup_is_done)
{
    sl_keyring *k = sealing_store();
    cr_assert_eq(create_sealed("d1", DOC_PLAIN("d1")).status, ST_OK);
    cr_assert_eq(create_sealed("d2", DOC_PLAIN("d2")).status, ST_OK);
    char body1[128], body2[128], docs[160], why[256] = "";
    size_t n1 = stored_body("Bundle", "d1", body1, sizeof body1), n2 = stored_body("Bundle", "d2", body2, sizeof body2);
    snprintf(docs, sizeof docs, "%s" DL_SUFFIX, db_path);
    /* a backup (another process, as fhirgw backup is) between its database copy and its log copy */
    int lock = dl_backup_lock(docs, why, sizeof why);
    cr_assert_geq(lock, 0, "%s", why);
    cr_assert_eq(purge_document("d1").status, ST_OK);
    bool zeros = true;
    free(logged_record(body1, n1, &zeros));
    cr_expect_not(zeros, "the backup's database copy may name the purged record: it stays until the log is copied");
    st_resource res;
    cr_expect_eq(st_read(S, "Bundle", "d1", &res, NULL), ST_GONE, "the purge itself is done");
    st_resource_free(&res);
    dl_backup_unlock(lock);
    /* the first commit after the backup frees what was held back */
    cr_assert_eq(create("Patient", "p1", "{\"resourceType\":\"Patient\"}").status, ST_OK);
    free(logged_record(body1, n1, &zeros));
    cr_expect(zeros, "held back until the backup was done, then freed");
    free(logged_record(body2, n2, &zeros));
    cr_expect_not(zeros, "the other document's record stays");
    cr_assert_eq(purge_document("d2").status, ST_OK);
    free(logged_record(body2, n2, &zeros));
    cr_expect(zeros, "with no backup running a purge frees at once");
    sl_keyring_free(k);
}

/* ---- The document log alone ---- */

Test(doc_log, locators_are_read_strictly)
{
    dl_locator l;
    cr_expect(dl_parse("fgdoc1.1.4096.10", 16, &l) && l.segment == 1 && l.offset == 4096 && l.length == 10);
    const char *bad[] = {"fgdoc1.1.4097.10",      "fgdoc1.1.4096.0",
                         "fgdoc1.1.4096",         "fgdoc1.1.4096.10x",
                         "fgdoc1.4294967296.0.1", "fgdoc1..4096.1",
                         "fgdoc2.1.0.1",          "fgdoc1.1.0.4294967296",
                         "fgdoc1.1.-4096.1",      "{\"resourceType\":\"Bundle\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_expect_not(dl_parse(bad[i], strlen(bad[i]), &l), "%s", bad[i]);
}

Test(doc_log, records_are_appended_aligned_read_back_and_freed)
{
    char folder[64] = "/tmp/test_doc_log.XXXXXX", err[256] = "";
    cr_assert_not_null(mkdtemp(folder));
    char logdir[128];
    snprintf(logdir, sizeof logdir, "%s/docs", folder);
    dl_log *log = dl_open(logdir, true, err, sizeof err);
    cr_assert_not_null(log, "%s", err);
    char loc1[DL_LOCATOR_MAX], loc2[DL_LOCATOR_MAX];
    uint64_t end1, end2;
    cr_assert(dl_append(log, "first record", 12, loc1, &end1, err, sizeof err), "%s", err);
    cr_assert(dl_append(log, "second", 6, loc2, &end2, err, sizeof err), "%s", err);
    cr_expect_str_eq(loc1, "fgdoc1.1.0.12");
    cr_expect_str_eq(loc2, "fgdoc1.1.4096.6");
    cr_expect_eq(end2, 4102);
    cr_expect_eq(dl_written(log), 4102);
    cr_expect(dl_wait_durable(log, end2));
    cr_expect_geq(dl_syncs(log), 1);
    dl_locator l1, l2;
    cr_assert(dl_parse(loc1, strlen(loc1), &l1) && dl_parse(loc2, strlen(loc2), &l2));
    char *back = dl_read(log, &l1, err, sizeof err);
    cr_expect_str_eq(back, "first record");
    free(back);
    cr_expect(dl_release(log, &l1, err, sizeof err), "%s", err);
    back = dl_read(log, &l1, err, sizeof err);
    cr_expect(back && !memcmp(back, "\0\0\0\0\0\0\0\0\0\0\0\0", 12), "a freed record reads as zeros");
    free(back);
    l2.length = 5000; /* past the end of the file */
    cr_expect_null(dl_read(log, &l2, err, sizeof err));
    cr_expect(strstr(err, "ends inside a record"), "%s", err);
    dl_close(log);
    log = dl_open(logdir, true, err, sizeof err);
    cr_assert_not_null(log, "%s", err);
    cr_expect_eq(dl_written(log), 8192, "reopened, it appends at the next aligned place after the file's end");
    cr_assert(dl_append(log, "third", 5, loc1, &end1, err, sizeof err));
    cr_expect_str_eq(loc1, "fgdoc1.1.8192.5");
    dl_test_fail_next_sync(log);
    cr_expect_not(dl_wait_durable(log, end1), "a failed sync is reported");
    cr_expect_not(dl_wait_durable(log, end1), "and stays failed");
    dl_close(log);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
    cr_expect_eq(system(cmd), 0);
}

/* ---- The directory read from memory (read_cache.h) ---- */

static uint64_t cache_hits(void)
{
    st_counters c;
    st_counters_get(S, &c);
    return c.read_cache_hits;
}

Test(store, the_directory_is_read_from_memory_until_it_is_written)
{
    const char *tags[] = {"22222222", "33333333"};
    st_op op = create_op("Organization", "o1", "{\"resourceType\":\"Organization\",\"name\":\"A\"}");
    op.access_tags = tags, op.access_tag_count = 2;
    cr_assert_eq(submit1(op).status, ST_OK);
    st_resource r;
    cr_assert_eq(st_read(S, "Organization", "o1", &r, NULL), ST_OK);
    st_resource_free(&r);
    cr_expect_eq(cache_hits(), 0, "the first read is the store's");
    cr_assert_eq(st_read(S, "Organization", "o1", &r, NULL), ST_OK);
    cr_expect_eq(cache_hits(), 1, "the second is answered from memory");
    cr_expect(strstr(r.json, "\"name\":\"A\"") && strstr(r.json, "\"versionId\":\"1\""), "%s", r.json);
    cr_expect_eq(r.version, 1);
    cr_expect_eq(r.last_updated_ms, T0);
    cr_expect_str_eq(r.owner, "11111111");
    cr_assert_eq(r.access_tag_count, 2);
    cr_expect_str_eq(r.access_tags[0], "22222222");
    cr_expect_str_eq(r.access_tags[1], "33333333");
    cr_expect_null(r.access_tags[2]);
    st_resource_free(&r);

    /* a write makes what was kept stale: the next read is the store's, with the new version */
    cr_assert_eq(update("Organization", "o1", "{\"resourceType\":\"Organization\",\"name\":\"B\"}", 0).status, ST_OK);
    cr_assert_eq(st_read(S, "Organization", "o1", &r, NULL), ST_OK);
    cr_expect_eq(cache_hits(), 1);
    cr_expect(strstr(r.json, "\"name\":\"B\""), "%s", r.json);
    cr_expect_eq(r.version, 2);
    cr_expect_eq(r.access_tag_count, 0, "an update replaces the tags");
    st_resource_free(&r);
    cr_assert_eq(st_read(S, "Organization", "o1", &r, NULL), ST_OK);
    cr_expect_eq(cache_hits(), 2);
    cr_expect_eq(r.version, 2);
    st_resource_free(&r);

    /* a deletion is seen at once, and never kept */
    cr_assert_eq(delete ("Organization", "o1", 0).status, ST_OK);
    cr_expect_eq(st_read(S, "Organization", "o1", &r, NULL), ST_GONE);
    st_resource_free(&r);
    cr_expect_eq(st_read(S, "Organization", "o1", &r, NULL), ST_GONE);
    st_resource_free(&r);
    cr_expect_eq(st_read(S, "Organization", "nope", &r, NULL), ST_NOT_FOUND);
    st_resource_free(&r);
    /* other types are always the store's */
    cr_assert_eq(create("Patient", "p1", "{\"resourceType\":\"Patient\"}").status, ST_OK);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(st_read(S, "Patient", "p1", &r, NULL), ST_OK);
        st_resource_free(&r);
    }
    cr_expect_eq(cache_hits(), 2);
}

/* Readers racing one writer: a read begun after an update was acknowledged never answers an older version,
 * and the body is always the version's own. Fails when a commit's invalidation comes before the commit is
 * visible (a reader then keeps the old row under the new generation) or not at all. */
#define RACE_VERSIONS 300
static _Atomic int64_t acknowledged = 1;
static atomic_bool race_failed;

static void *race_reader(void *arg)
{
    (void)arg;
    while (atomic_load(&acknowledged) < RACE_VERSIONS && !atomic_load(&race_failed)) {
        int64_t floor = atomic_load(&acknowledged);
        st_resource r;
        if (st_read(S, "Endpoint", "e1", &r, NULL) != ST_OK) {
            atomic_store(&race_failed, true);
            break;
        }
        char own[32];
        snprintf(own, sizeof own, "\"v\":%lld}", (long long)r.version);
        if (r.version < floor || !strstr(r.json, own))
            atomic_store(&race_failed, true);
        st_resource_free(&r);
    }
    return NULL;
}

Test(store, directory_reads_never_go_back_behind_an_acknowledged_write)
{
    atomic_store(&acknowledged, 1);
    atomic_store(&race_failed, false);
    cr_assert_eq(create("Endpoint", "e1", "{\"resourceType\":\"Endpoint\",\"v\":1}").status, ST_OK);
    pthread_t readers[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&readers[i], NULL, race_reader, NULL);
    for (int v = 2; v <= RACE_VERSIONS && !atomic_load(&race_failed); v++) {
        char json[64];
        snprintf(json, sizeof json, "{\"resourceType\":\"Endpoint\",\"v\":%d}", v);
        cr_assert_eq(update("Endpoint", "e1", json, 0).status, ST_OK);
        atomic_store(&acknowledged, v);
    }
    atomic_store(&acknowledged, RACE_VERSIONS);
    for (int i = 0; i < 3; i++)
        pthread_join(readers[i], NULL);
    cr_expect_not(atomic_load(&race_failed), "a read answered a version older than one acknowledged, or a mixed one");
    cr_expect_gt(cache_hits(), 0, "some reads were answered from memory");
}

Test(store, lastUpdated_never_goes_backwards)
{
    create("Patient", "a", "{}");
    atomic_store(&now, T0 - 60000); /* the wall clock stepped back */
    st_op_result r = update("Patient", "a", "{}", 0);
    cr_expect_eq(r.last_updated_ms, T0);
}

Test(store, meta_splice_positions)
{
    struct {
        const char *json;
        size_t at;
        const char *extra;
        const char *want;
    } cases[] = {
        {"{}", 0, NULL, "{\"meta\":{\"versionId\":\"1\",\"lastUpdated\":\"2024-05-01T10:00:00.000Z\"}}"},
        {"{\"resourceType\":\"Basic\",\"id\":\"x\",\"code\":{}}", 33, NULL,
         "{\"resourceType\":\"Basic\",\"id\":\"x\",\"meta\":{\"versionId\":\"1\",\"lastUpdated\":"
         "\"2024-05-01T10:00:00.000Z\"},\"code\":{}}"},
        {"{\"resourceType\":\"Basic\",\"id\":\"x\" }", 32, "\"profile\":[\"http://x/p\"]",
         "{\"resourceType\":\"Basic\",\"id\":\"x\",\"meta\":{\"versionId\":\"1\",\"lastUpdated\":"
         "\"2024-05-01T10:00:00.000Z\",\"profile\":[\"http://x/p\"]} }"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char id[8];
        snprintf(id, sizeof id, "b%zu", i);
        st_op op = create_op("Basic", id, cases[i].json);
        op.meta_at = cases[i].at;
        op.meta_extra = cases[i].extra;
        cr_assert_eq(submit1(op).status, ST_OK);
        char json[512];
        read_json("Basic", id, json, sizeof json, NULL);
        cr_expect_str_eq(json, cases[i].want, "case %zu", i);
    }
}

static char *render_fixed(void *arg, int64_t version, const char *last_updated, size_t *len)
{
    char *out = malloc(128);
    *len = (size_t)snprintf(out, 128, "{\"%s\":%lld,\"at\":\"%s\"}", (const char *)arg, (long long)version,
                            last_updated);
    return out;
}

Test(store, render_callback)
{
    st_op op = create_op("Basic", "r", NULL);
    op.render = render_fixed;
    op.render_arg = "v";
    cr_assert_eq(submit1(op).status, ST_OK);
    char json[128];
    read_json("Basic", "r", json, sizeof json, NULL);
    cr_expect_str_eq(json, "{\"v\":1,\"at\":\"2024-05-01T10:00:00.000Z\"}");
}

Test(store, if_match)
{
    create("Patient", "p", "{}");
    update("Patient", "p", "{}", 1);
    st_op_result r = update("Patient", "p", "{}", 1);
    cr_expect_eq(r.status, ST_VERSION_CONFLICT);
    cr_expect_eq(r.version, 2, "reports the current version");
    cr_expect_eq(update("Patient", "p", "{}", 2).status, ST_OK);
    cr_expect_eq(delete ("Patient", "p", 2).status, ST_VERSION_CONFLICT);
    cr_expect_eq(delete ("Patient", "p", 3).status, ST_OK);
    cr_expect_eq(update("Patient", "missing", "{}", 1).status, ST_VERSION_CONFLICT);
}

/* ---- Delete and history ------------------------------------------------------------------- */

Test(store, delete_then_gone_history_keeps_versions)
{
    create("Patient", "p", "{\"v\":1}");
    atomic_store(&now, T0 + 1000);
    update("Patient", "p", "{\"v\":2}", 0);
    atomic_store(&now, T0 + 2000);
    st_op_result r = delete ("Patient", "p", 0);
    cr_assert_eq(r.status, ST_OK);
    cr_expect_eq(r.version, 3);

    st_resource v;
    cr_expect_eq(st_read(S, "Patient", "p", &v, NULL), ST_GONE);
    cr_expect_eq(v.version, 3);
    cr_expect(v.deleted);
    cr_expect_null(v.json);
    cr_expect_eq(v.last_updated_ms, T0 + 2000);
    st_resource_free(&v);
    cr_expect_eq(st_vread(S, "Patient", "p", 3, &v, NULL), ST_GONE);
    st_resource_free(&v);
    cr_expect_eq(st_vread(S, "Patient", "p", 2, &v, NULL), ST_OK);
    st_resource_free(&v);

    st_list h;
    st_history_query q = {.type = "Patient", .id = "p", .since_ms = INT64_MIN, .count = 10};
    cr_assert_eq(st_history(S, &q, &h, NULL), ST_OK);
    cr_assert_eq(h.count, 3);
    cr_expect_eq(h.total, 3);
    cr_expect_eq(h.items[0].method, ST_METHOD_DELETE);
    cr_expect_eq(h.items[1].method, ST_METHOD_UPDATE);
    cr_expect_eq(h.items[2].method, ST_METHOD_CREATE);
    cr_expect_str_eq(h.items[2].json, "{\"meta\":{\"versionId\":\"1\",\"lastUpdated\":\"2024-05-01T10:00:00.000Z\"},"
                                      "\"v\":1}");
    st_list_free(&h);

    /* deleting again changes nothing; deleting what never was is not found */
    r = delete ("Patient", "p", 0);
    cr_expect_eq(r.status, ST_OK);
    cr_expect(r.unchanged);
    cr_expect_eq(r.version, 3);
    cr_expect_eq(delete ("Patient", "never", 0).status, ST_NOT_FOUND);
    cr_expect_eq(update("Patient", "p", "{}", 0).status, ST_GONE);

    /* update-as-create brings it back as version 4 */
    r = submit1((st_op){.kind = ST_OP_UPDATE, .type = "Patient", .id = "p", .json = "{}", .create_if_missing = true});
    cr_expect_eq(r.status, ST_OK);
    cr_expect_eq(r.version, 4);
    cr_expect(r.created);
    cr_expect_eq(read_json("Patient", "p", NULL, 0, NULL), ST_OK);
}

Test(store, deleted_resources_are_not_found_by_search)
{
    st_index_row row = st_row_token("identifier", "urn:x", "1");
    st_op op = create_op("Patient", "p", "{}");
    op.rows = &row, op.row_count = 1;
    submit1(op);
    st_value v = {.v.token = {"urn:x", "1"}};
    st_condition c = {.param = "identifier", .kind = ST_KIND_TOKEN, .values = &v, .value_count = 1};
    st_query q = {.type = "Patient", .conditions = &c, .condition_count = 1, .count = 10, .want_total = true};
    st_list l;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 1);
    st_list_free(&l);
    delete ("Patient", "p", 0);
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 0);
    cr_expect_eq(l.count, 0);
    st_list_free(&l);
}

Test(store, history_levels_paging_since_snapshot)
{
    /* 6 Patients and 4 Observations, one second apart; then 2 updates */
    char id[16];
    for (int i = 0; i < 10; i++) {
        atomic_store(&now, T0 + i * 1000);
        snprintf(id, sizeof id, "r%d", i);
        create(i < 6 ? "Patient" : "Observation", id, "{}");
    }
    atomic_store(&now, T0 + 20000);
    update("Patient", "r0", "{}", 0);
    update("Observation", "r9", "{}", 0);

    st_list l;
    st_history_query q = {.since_ms = INT64_MIN, .count = 5};
    cr_assert_eq(st_history(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 12);
    cr_assert_eq(l.count, 5);
    cr_expect_str_eq(l.items[0].id, "r9");
    cr_expect_eq(l.items[0].version, 2);
    cr_expect_str_eq(l.items[1].id, "r0");
    int64_t snapshot = l.snapshot;
    st_list_free(&l);

    /* type level, paged */
    q = (st_history_query){.type = "Patient", .since_ms = INT64_MIN, .count = 4};
    cr_assert_eq(st_history(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 7);
    cr_expect_eq(l.count, 4);
    st_list_free(&l);
    q.offset = 4;
    cr_assert_eq(st_history(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.count, 3);
    cr_expect_str_eq(l.items[2].id, "r0");
    cr_expect_eq(l.items[2].version, 1);
    st_list_free(&l);

    /* _since: at or after the instant */
    q = (st_history_query){.type = "Observation", .since_ms = T0 + 8000, .count = 10};
    cr_assert_eq(st_history(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 3); /* r8, r9 v1, r9 v2 */
    st_list_free(&l);

    /* a later page read at the first page's snapshot does not shift when new versions arrive */
    create("Patient", "late", "{}");
    q = (st_history_query){.since_ms = INT64_MIN, .count = 5, .offset = 5, .upto = snapshot};
    cr_assert_eq(st_history(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 12);
    cr_expect_str_eq(l.items[0].id, "r6");
    st_list_free(&l);

    q = (st_history_query){.type = "Patient", .id = "none", .since_ms = INT64_MIN};
    cr_expect_eq(st_history(S, &q, &l, NULL), ST_NOT_FOUND);
}

/* ---- Search ------------------------------------------------------------------------------ */

typedef struct fixture_resource {
    const char *id;
    const char *owner;
    const char *tag;
    st_index_row rows[8];
    size_t row_count;
} fixture_resource;

/* epoch ms of a UTC date */
static int64_t day(int y, int m, int d)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    return (int64_t)timegm(&tm) * 1000;
}

static void load_search_fixture(void)
{
    fixture_resource rs[] = {
        {"a",
         "11111111",
         NULL,
         {
             st_row_string("name", "Ĳsbrand Müller"),
             st_row_token("identifier", "urn:bsn", "123"),
             st_row_reference("general-practitioner", "Practitioner", "gp1", NULL),
             st_row_date("birthdate", day(1980, 3, 1), day(1980, 3, 2) - 1),
             st_row_number("weight", 80.5),
             st_row_quantity("dose", 5, "http://unitsofmeasure.org", "mg"),
             st_row_uri("profile", "http://example.org/p1"),
         },
         7},
        {"b",
         "22222222",
         "11111111",
         {
             st_row_string("name", "Jan de Vries"),
             st_row_token("identifier", "urn:bsn", "456"),
             st_row_token("gender", NULL, "male"),
             st_row_reference("general-practitioner", NULL, NULL, "https://other.example/Practitioner/9"),
             st_row_date("birthdate", day(1990, 1, 1), day(1991, 1, 1) - 1),
             st_row_number("weight", 100),
             st_row_quantity("dose", 500, "http://unitsofmeasure.org", "ug"),
         },
         7},
        {"c",
         "22222222",
         NULL,
         {
             st_row_string("name", "Muller"),
             st_row_token("identifier", "urn:other", "123"),
             st_row_token("gender", "http://hl7.org/fhir/administrative-gender", "female"),
             st_row_reference("general-practitioner", "Practitioner", "gp2", NULL),
             st_row_date("birthdate", day(2000, 6, 15), day(2000, 6, 16) - 1),
         },
         5},
    };
    for (size_t i = 0; i < sizeof rs / sizeof *rs; i++) {
        atomic_store(&now, T0 + (int64_t)i * 1000);
        st_op op = create_op("Patient", rs[i].id, "{}");
        op.owner = rs[i].owner;
        op.rows = rs[i].rows, op.row_count = rs[i].row_count;
        op.access_tags = &rs[i].tag, op.access_tag_count = rs[i].tag ? 1 : 0;
        cr_assert_eq(submit1(op).status, ST_OK);
    }
    /* another type with a same-named parameter must not leak into Patient searches */
    st_index_row other = st_row_string("name", "Muller Practice");
    st_op op = create_op("Organization", "o", "{}");
    op.rows = &other, op.row_count = 1;
    submit1(op);
}

/* The ids a query finds, in order, joined by commas; and the total. */
static const char *found(const st_query *q, int64_t *total)
{
    static char ids[256];
    st_list l;
    st_error err = {{0}};
    st_status s = st_search(S, q, &l, &err);
    if (s != ST_OK) {
        snprintf(ids, sizeof ids, "!%s", st_status_name(s));
        return ids;
    }
    ids[0] = '\0';
    for (size_t i = 0; i < l.count; i++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%s", i ? "," : "", l.items[i].id);
    if (total)
        *total = l.total;
    st_list_free(&l);
    return ids;
}

/* One condition with one value over Patients, results sorted by id. */
static const char *find1(const char *param, st_kind kind, st_modifier modifier, st_value value)
{
    st_condition c = {.param = param, .kind = kind, .modifier = modifier, .values = &value, .value_count = 1};
    st_sort by_id = {.param = "_id"};
    st_query q =
        {.type = "Patient", .conditions = &c, .condition_count = 1, .sort = &by_id, .sort_count = 1, .count = 50};
    return found(&q, NULL);
}

#define STR(t) ((st_value){.v.string = {t}})
#define TOK(s, c) ((st_value){.v.token = {s, c}})
#define DATE(p, lo, hi) ((st_value){.prefix = p, .v.date = {lo, hi}})
#define NUM(p, x) ((st_value){.prefix = p, .v.number = {x, 0, 0, NULL, NULL}})

Test(store, search_strings)
{
    load_search_fixture();
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_NONE, STR("mul")), "c");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_NONE, STR("ijs")), "a");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_NONE, STR("JAN")), "b");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_CONTAINS, STR("MÜLL")), "a,c");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_CONTAINS, STR("vri")), "b");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_EXACT, STR("Muller")), "c");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_EXACT, STR("muller")), "");
    cr_expect_str_eq(find1("name", ST_KIND_STRING, ST_MOD_NOT, STR("x")), "!invalid");
}

Test(store, search_tokens)
{
    load_search_fixture();
    cr_expect_str_eq(find1("identifier", ST_KIND_TOKEN, 0, TOK(NULL, "123")), "a,c");
    cr_expect_str_eq(find1("identifier", ST_KIND_TOKEN, 0, TOK("urn:bsn", "123")), "a");
    cr_expect_str_eq(find1("identifier", ST_KIND_TOKEN, 0, TOK("urn:bsn", NULL)), "a,b");
    cr_expect_str_eq(find1("gender", ST_KIND_TOKEN, 0, TOK("", "male")), "b");
    cr_expect_str_eq(find1("gender", ST_KIND_TOKEN, 0, TOK("", "female")), "");
    cr_expect_str_eq(find1("gender", ST_KIND_TOKEN, ST_MOD_NOT, TOK(NULL, "male")), "a,c");
    cr_expect_str_eq(find1("_id", ST_KIND_TOKEN, 0, TOK(NULL, "b")), "b");
    cr_expect_str_eq(find1("_id", ST_KIND_TOKEN, ST_MOD_NOT, TOK(NULL, "b")), "a,c");

    st_condition missing = {.param = "gender", .kind = ST_KIND_TOKEN, .modifier = ST_MOD_MISSING, .missing = true};
    st_query q = {.type = "Patient", .conditions = &missing, .condition_count = 1, .count = 10};
    cr_expect_str_eq(found(&q, NULL), "a");
    missing.missing = false;
    st_sort by_id = {.param = "_id", .descending = true};
    q.sort = &by_id, q.sort_count = 1;
    cr_expect_str_eq(found(&q, NULL), "c,b");

    /* OR within a condition, AND across conditions */
    st_value either[] = {TOK(NULL, "456"), TOK("urn:other", "123")};
    st_value female = TOK(NULL, "female");
    st_condition both[] = {
        {.param = "identifier", .kind = ST_KIND_TOKEN, .values = either, .value_count = 2},
        {.param = "gender", .kind = ST_KIND_TOKEN, .values = &female, .value_count = 1},
    };
    q = (st_query){.type = "Patient",
                   .conditions = both,
                   .condition_count = 1,
                   .sort = &by_id,
                   .sort_count = 1,
                   .count = 10};
    cr_expect_str_eq(found(&q, NULL), "c,b");
    q.condition_count = 2;
    cr_expect_str_eq(found(&q, NULL), "c");
}

Test(store, search_references_and_uris)
{
    load_search_fixture();
    st_value gp1 = {.v.reference = {"Practitioner", "gp1", NULL}};
    st_value any_gp2 = {.v.reference = {NULL, "gp2", NULL}};
    st_value wrong_type = {.v.reference = {"Organization", "gp2", NULL}};
    st_value url = {.v.reference = {NULL, NULL, "https://other.example/Practitioner/9"}};
    cr_expect_str_eq(find1("general-practitioner", ST_KIND_REFERENCE, 0, gp1), "a");
    cr_expect_str_eq(find1("general-practitioner", ST_KIND_REFERENCE, 0, any_gp2), "c");
    cr_expect_str_eq(find1("general-practitioner", ST_KIND_REFERENCE, 0, wrong_type), "");
    cr_expect_str_eq(find1("general-practitioner", ST_KIND_REFERENCE, 0, url), "b");
    st_value uri = {.v.uri = {"http://example.org/p1"}};
    cr_expect_str_eq(find1("profile", ST_KIND_URI, 0, uri), "a");
}

Test(store, search_dates_with_prefixes)
{
    load_search_fixture();
    int64_t y1990 = day(1990, 1, 1), y1990_end = day(1991, 1, 1) - 1;
    int64_t mar80 = day(1980, 3, 1), mar80_end = day(1980, 4, 1) - 1;
    /* b's birthdate is all of 1990; a's is 1980-03-01; c's 2000-06-15 */
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_EQ, mar80, mar80_end)), "a");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_EQ, y1990, y1990_end)), "b");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_EQ, day(1990, 5, 1), day(1990, 6, 1) - 1)), "",
                     "a month does not contain the whole year");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_NE, y1990, y1990_end)), "a,c");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_GT, y1990, y1990_end)), "c");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_GE, y1990, y1990_end)), "b,c");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_LT, y1990, y1990_end)), "a");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_LE, y1990, y1990_end)), "a,b");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_GT, day(1990, 6, 1), day(1990, 6, 2) - 1)), "b,c",
                     "a year reaching past the value counts as greater");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_SA, day(1990, 6, 1), day(1990, 6, 2) - 1)), "c",
                     "but it does not start after it");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_EB, day(1990, 6, 1), day(1990, 6, 2) - 1)), "a");
    cr_expect_str_eq(find1("birthdate", ST_KIND_DATE, 0, DATE(ST_AP, day(1990, 6, 1), day(1990, 6, 2) - 1)), "b");

    /* _lastUpdated: a at T0, b at T0+1s, c at T0+2s */
    cr_expect_str_eq(find1("_lastUpdated", ST_KIND_DATE, 0, DATE(ST_GE, T0 + 1000, T0 + 1000)), "b,c");
    cr_expect_str_eq(find1("_lastUpdated", ST_KIND_DATE, 0, DATE(ST_LT, T0 + 1000, T0 + 1999)), "a");
    cr_expect_str_eq(find1("_lastUpdated", ST_KIND_DATE, 0, DATE(ST_EQ, T0 + 1000, T0 + 1999)), "b");
}

Test(store, search_numbers_and_quantities)
{
    load_search_fixture();
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_EQ, 100)), "b");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0,
                           (st_value){.prefix = ST_EQ, .v.number = {81, 80.5, 81.5, NULL, NULL}}),
                     "a", "81 means [80.5, 81.5)");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0,
                           (st_value){.prefix = ST_EQ, .v.number = {80, 79.5, 80.5, NULL, NULL}}),
                     "", "80 means [79.5, 80.5): the upper bound is not in it");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0,
                           (st_value){.prefix = ST_NE, .v.number = {80, 79.5, 80.5, NULL, NULL}}),
                     "a,b");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_NE, 100)), "a");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_GT, 80.5)), "b");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_GE, 80.5)), "a,b");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_LT, 100)), "a");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_LE, 100)), "a,b");
    cr_expect_str_eq(find1("weight", ST_KIND_NUMBER, 0, NUM(ST_AP, 95)), "b", "within 10%% of 95");
    st_value mg = {.prefix = ST_GT, .v.number = {1, 0, 0, "http://unitsofmeasure.org", "mg"}};
    cr_expect_str_eq(find1("dose", ST_KIND_QUANTITY, 0, mg), "a");
    st_value any_unit = {.prefix = ST_GT, .v.number = {1, 0, 0, NULL, NULL}};
    cr_expect_str_eq(find1("dose", ST_KIND_QUANTITY, 0, any_unit), "a,b");
    st_value ug = {.prefix = ST_EQ, .v.number = {500, 0, 0, NULL, "ug"}};
    cr_expect_str_eq(find1("dose", ST_KIND_QUANTITY, 0, ug), "b");
}

Test(store, search_sorting_and_type_isolation)
{
    load_search_fixture();
    st_sort by_name = {.param = "name", .kind = ST_KIND_STRING};
    st_query q = {.type = "Patient", .sort = &by_name, .sort_count = 1, .count = 10};
    cr_expect_str_eq(found(&q, NULL), "a,b,c"); /* ijsbrand, jan, muller */
    by_name.descending = true;
    cr_expect_str_eq(found(&q, NULL), "c,b,a");
    st_sort by_birth = {.param = "birthdate", .kind = ST_KIND_DATE, .descending = true};
    q.sort = &by_birth;
    cr_expect_str_eq(found(&q, NULL), "c,b,a");
    st_sort by_weight = {.param = "weight", .kind = ST_KIND_NUMBER};
    q.sort = &by_weight;
    cr_expect_str_eq(found(&q, NULL), "a,b,c", "no weight sorts last");
    q.sort = NULL, q.sort_count = 0;
    cr_expect_str_eq(found(&q, NULL), "c,b,a", "default: newest first");

    st_value muller = STR("muller");
    st_condition c = {.param = "name", .kind = ST_KIND_STRING, .values = &muller, .value_count = 1};
    q = (st_query){.type = NULL, .conditions = &c, .condition_count = 1, .count = 10};
    cr_expect_str_eq(found(&q, NULL), "o,c", "all types");
}

Test(store, search_visibility_by_owner_and_access_tags)
{
    load_search_fixture();
    st_sort by_id = {.param = "_id"};
    const char *org1[] = {"11111111"};
    const char *org2[] = {"22222222"};
    const char *stranger[] = {"99999999"};
    st_query q = {.type = "Patient", .sort = &by_id, .sort_count = 1, .count = 10, .visible_to_count = 1};
    q.visible_to = org1;
    cr_expect_str_eq(found(&q, NULL), "a,b", "owns a, b is addressed to it");
    q.visible_to = org2;
    cr_expect_str_eq(found(&q, NULL), "b,c");
    q.visible_to = stranger;
    cr_expect_str_eq(found(&q, NULL), "");

    st_history_query h = {.since_ms = INT64_MIN, .visible_to = org1, .visible_to_count = 1, .count = 10};
    st_list l;
    cr_assert_eq(st_history(S, &h, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 3, "a, b and o (owned by 11111111)");
    st_list_free(&l);

    st_resource r;
    cr_assert_eq(st_read(S, "Patient", "b", &r, NULL), ST_OK);
    cr_expect_str_eq(r.owner, "22222222");
    cr_assert_eq(r.access_tag_count, 1);
    cr_expect_str_eq(r.access_tags[0], "11111111");
    cr_expect_null(r.access_tags[1]);
    st_resource_free(&r);
}

Test(store, search_paging_and_totals)
{
    char id[16];
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "p%02d", i);
        st_index_row row = st_row_token("active", NULL, i % 5 ? "true" : "false");
        st_op op = create_op("Patient", id, "{}");
        op.rows = &row, op.row_count = 1;
        atomic_store(&now, T0 + i);
        cr_assert_eq(submit1(op).status, ST_OK);
    }
    st_value t = TOK(NULL, "true");
    st_condition active = {.param = "active", .kind = ST_KIND_TOKEN, .values = &t, .value_count = 1};
    st_sort by_id = {.param = "_id"};
    st_query q = {.type = "Patient", .sort = &by_id, .sort_count = 1, .count = 10, .want_total = true};
    char seen[3][256];
    for (int page = 0; page < 3; page++) {
        int64_t total = -1;
        q.offset = (size_t)page * 10;
        snprintf(seen[page], sizeof seen[page], "%s", found(&q, &total));
        cr_expect_eq(total, 25);
    }
    cr_expect(strncmp(seen[0], "p00,p01", 7) == 0);
    cr_expect(strncmp(seen[1], "p10,", 4) == 0);
    cr_expect_str_eq(seen[2], "p20,p21,p22,p23,p24");

    q.conditions = &active, q.condition_count = 1, q.offset = 15;
    int64_t total = -1;
    cr_expect_str_eq(found(&q, &total), "p19,p21,p22,p23,p24");
    cr_expect_eq(total, 20);

    q.count = 0; /* _summary=count */
    st_list l;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.count, 0);
    cr_expect_eq(l.total, 20);
    st_list_free(&l);
}

/* ---- Conditional create ------------------------------------------------------------------- */

static st_op conditional(const char *id, const st_index_row *row, const st_query *if_none)
{
    st_op op = create_op("Patient", id, "{}");
    op.rows = row, op.row_count = 1;
    op.if_none_exist = if_none;
    return op;
}

typedef struct racer {
    int n;
    st_op_result result;
} racer;

static st_index_row race_row;
static st_value race_value;
static st_condition race_condition;
static st_query race_query;

static void *race(void *arg)
{
    racer *r = arg;
    char id[16];
    snprintf(id, sizeof id, "race-%d", r->n);
    st_op op = conditional(id, &race_row, &race_query);
    st_submit_wait(S, &op, 1, &r->result);
    return NULL;
}

Test(store, conditional_create_32_concurrent)
{
    race_row = st_row_token("identifier", "urn:bsn", "999");
    race_value = TOK("urn:bsn", "999");
    race_condition =
        (st_condition){.param = "identifier", .kind = ST_KIND_TOKEN, .values = &race_value, .value_count = 1};
    race_query = (st_query){.type = "Patient", .conditions = &race_condition, .condition_count = 1};

    enum { N = 32 };
    racer racers[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        racers[i] = (racer){.n = i};
        pthread_create(&threads[i], NULL, race, &racers[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);

    int created = 0, exists = 0;
    const char *winner = NULL;
    for (int i = 0; i < N; i++) {
        if (racers[i].result.status == ST_OK) {
            created++;
            winner = racers[i].result.id;
        } else if (racers[i].result.status == ST_EXISTS) {
            exists++;
        }
    }
    cr_assert_eq(created, 1);
    cr_assert_eq(exists, N - 1);
    for (int i = 0; i < N; i++)
        if (racers[i].result.status == ST_EXISTS) {
            cr_expect_str_eq(racers[i].result.id, winner, "every loser is told the winner");
            cr_expect_eq(racers[i].result.version, 1);
        }
    st_query all = race_query;
    all.want_total = true;
    int64_t total = -1;
    found(&all, &total);
    cr_expect_eq(total, 1);
}

Test(store, conditional_create_multiple_matches)
{
    st_index_row row = st_row_token("family", NULL, "jansen");
    create("Patient", "x", "{}");
    st_value v = TOK(NULL, "jansen");
    st_condition c = {.param = "family", .kind = ST_KIND_TOKEN, .values = &v, .value_count = 1};
    st_query q = {.type = "Patient", .conditions = &c, .condition_count = 1};
    st_op plain1 = create_op("Patient", "j1", "{}"), plain2 = create_op("Patient", "j2", "{}");
    plain1.rows = plain2.rows = &row, plain1.row_count = plain2.row_count = 1;
    submit1(plain1);
    submit1(plain2);
    st_op_result r = submit1(conditional("j3", &row, &q));
    cr_expect_eq(r.status, ST_MULTIPLE_MATCHES);
    /* nothing matches: created; an id that exists: conflict, not a second resource */
    v = TOK(NULL, "nobody");
    cr_expect_eq(submit1(conditional("j4", &row, &q)).status, ST_OK);
    v = TOK(NULL, "nobody-else");
    cr_expect_eq(submit1(conditional("x", &row, &q)).status, ST_CONFLICT);
}

/* ---- Transactions and group commit --------------------------------------------------------- */

typedef struct async_done {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int remaining;
    st_txn_result results[4];
    st_op_result ops[4][4];
} async_done;

static async_done done_state;

static void record_done(void *arg, const st_txn_result *r)
{
    int slot = (int)(intptr_t)arg;
    pthread_mutex_lock(&done_state.lock);
    done_state.results[slot] = *r;
    memcpy(done_state.ops[slot], r->ops, r->op_count * sizeof *r->ops);
    done_state.results[slot].ops = done_state.ops[slot];
    done_state.remaining--;
    pthread_cond_signal(&done_state.cond);
    pthread_mutex_unlock(&done_state.lock);
}

static _Atomic bool blocker_running;

/* Runs on the commit thread: holds it so that what is submitted meanwhile forms one batch. */
static char *slow_render(void *arg, int64_t version, const char *last_updated, size_t *len)
{
    (void)arg, (void)version, (void)last_updated;
    atomic_store(&blocker_running, true);
    usleep(100000);
    *len = 2;
    return strdup("{}");
}

Test(store, failing_operation_rolls_back_only_its_transaction)
{
    pthread_mutex_init(&done_state.lock, NULL);
    pthread_cond_init(&done_state.cond, NULL);
    done_state.remaining = 4;

    st_op blocker = create_op("Basic", "blocker", NULL);
    blocker.render = slow_render;
    st_op t1[] = {create_op("Patient", "a", "{}"), create_op("Patient", "b", "{}")};
    st_op t2[] = {create_op("Patient", "c", "{}"),
                  {.kind = ST_OP_UPDATE, .type = "Patient", .id = "missing", .json = "{}"},
                  create_op("Patient", "d", "{}")};
    st_op t3[] = {create_op("Patient", "e", "{}")};
    cr_assert_eq(st_submit(S, &blocker, 1, record_done, (void *)0), ST_OK);
    while (!atomic_load(&blocker_running)) /* the commit thread is inside the blocker's batch */
        usleep(1000);
    cr_assert_eq(st_submit(S, t1, 2, record_done, (void *)1), ST_OK);
    cr_assert_eq(st_submit(S, t2, 3, record_done, (void *)2), ST_OK);
    cr_assert_eq(st_submit(S, t3, 1, record_done, (void *)3), ST_OK);
    pthread_mutex_lock(&done_state.lock);
    while (done_state.remaining > 0)
        pthread_cond_wait(&done_state.cond, &done_state.lock);
    pthread_mutex_unlock(&done_state.lock);

    cr_expect_eq(atomic_load(&largest_batch), 3, "t1, t2 and t3 shared one commit");
    cr_expect_eq(atomic_load(&failed_in_batches), 1);
    cr_expect_eq(done_state.results[1].status, ST_OK);
    cr_expect_eq(done_state.results[3].status, ST_OK);
    cr_expect_eq(done_state.results[2].status, ST_NOT_FOUND);
    cr_expect_eq(done_state.results[2].failed_op, 1);
    cr_expect_eq(done_state.ops[2][0].status, ST_ABORTED);
    cr_expect_eq(done_state.ops[2][2].status, ST_ABORTED);
    cr_expect_eq(read_json("Patient", "a", NULL, 0, NULL), ST_OK);
    cr_expect_eq(read_json("Patient", "b", NULL, 0, NULL), ST_OK);
    cr_expect_eq(read_json("Patient", "e", NULL, 0, NULL), ST_OK);
    cr_expect_eq(read_json("Patient", "c", NULL, 0, NULL), ST_NOT_FOUND, "rolled back with its transaction");
    cr_expect_eq(read_json("Patient", "d", NULL, 0, NULL), ST_NOT_FOUND);
    /* a transaction may touch one resource twice: each operation sees the ones before it */
    st_op twice[] = {create_op("Patient", "f", "{}"),
                     {.kind = ST_OP_UPDATE, .type = "Patient", .id = "f", .json = "{}", .expected_version = 1}};
    st_op_result r[2];
    cr_expect_eq(st_submit_wait(S, twice, 2, r), ST_OK);
    cr_expect_eq(r[1].version, 2);
    pthread_cond_destroy(&done_state.cond);
    pthread_mutex_destroy(&done_state.lock);
}

/* n threads running writer(i) at once; how many of them failed (returned non-NULL). */
static int run_writers(int n, void *(*writer)(void *))
{
    pthread_t threads[64];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++)
        pthread_create(&threads[i], NULL, writer, (void *)(intptr_t)i);
    int failures = 0;
    for (int i = 0; i < n; i++) {
        void *rv;
        pthread_join(threads[i], &rv);
        failures += rv != NULL;
    }
    return failures;
}

/* SQLite's temporary files (sub-journals, spilled sorts) open in this process: their names start "etilqs_". */
static int open_temporary_files(void)
{
    DIR *fds = opendir("/proc/self/fd");
    if (!fds)
        return -1;
    int count = 0;
    struct dirent *e;
    char link[300], target[512];
    while ((e = readdir(fds))) {
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            count += strstr(target, "etilqs_") != NULL;
        }
    }
    closedir(fds);
    return count;
}

static _Atomic int temporaries_seen;

/* Runs on the commit thread inside its transaction's savepoint, after the document before it. */
static char *render_counting_temporaries(void *arg, int64_t version, const char *last_updated, size_t *len)
{
    (void)arg, (void)version, (void)last_updated;
    int open = open_temporary_files();
    if (open > atomic_load(&temporaries_seen))
        atomic_store(&temporaries_seen, open);
    static const char task[] = "{\"resourceType\":\"Task\"}";
    *len = sizeof task - 1;
    return strdup(task);
}

static char *big_body(size_t size, char fill)
{
    static const char head[] = "{\"resourceType\":\"Bundle\",\"type\":\"document\",\"language\":\"";
    char *json = malloc(size + 1);
    cr_assert_not_null(json);
    memset(json, fill, size);
    memcpy(json, head, sizeof head - 1);
    memcpy(json + size - 2, "\"}", 2);
    json[size] = '\0';
    return json;
}

enum { JOURNAL_WRITERS = 32, JOURNAL_TXNS_EACH = 8, JOURNAL_BODY = 50 * 1024 };
static char *journal_body;

/* A handover's transaction at the least: a document and a Task, concurrently with others. */
static void *write_documents(void *arg)
{
    int n = (int)(intptr_t)arg;
    const char *tags[] = {"90000101"};
    for (int i = 0; i < JOURNAL_TXNS_EACH; i++) {
        char doc_id[32], task_id[32];
        snprintf(doc_id, sizeof doc_id, "d%d-%d", n, i);
        snprintf(task_id, sizeof task_id, "t%d-%d", n, i);
        st_op ops[2] = {create_op("Bundle", doc_id, journal_body), create_op("Task", task_id, NULL)};
        ops[1].render = render_counting_temporaries;
        for (int k = 0; k < 2; k++)
            ops[k].access_tags = tags, ops[k].access_tag_count = 1;
        st_op_result results[2];
        if (st_submit_wait(S, ops, 2, results) != ST_OK)
            return (void *)1;
    }
    return NULL;
}

/*
 * Each transaction of a batch runs in a savepoint, whose journal keeps what it changes of the
 * pages that existed before it (those of the batch's earlier transactions too), for a rollback
 * of that transaction alone. That journal is kept in memory: on a file it cost two write(2)
 * calls per page, once it outgrew 64 KiB.
 */
Test(store, savepoint_journals_stay_in_memory)
{
    st_close(S);
    S = open_store(true);
    journal_body = big_body(JOURNAL_BODY, 'a');
    cr_assert_eq(run_writers(JOURNAL_WRITERS, write_documents), 0);
    cr_expect_eq(atomic_load(&temporaries_seen), 0, "%d temporary files open inside a savepoint",
                 atomic_load(&temporaries_seen));
    char *read_back = malloc(JOURNAL_BODY + 256);
    cr_assert_eq(read_json("Bundle", "d7-7", read_back, JOURNAL_BODY + 256, NULL), ST_OK);
    cr_expect(strstr(read_back, "aaaaaaaa") != NULL, "the document is stored");
    free(read_back);
    free(journal_body);
}

enum { WRITERS = 32, WRITES_EACH = 16 };

static void *write_many(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < WRITES_EACH; i++) {
        char id[32];
        snprintf(id, sizeof id, "w%d-%d", n, i);
        st_index_row row = st_row_string("name", id);
        st_op op = create_op("Patient", id, "{\"resourceType\":\"Patient\"}");
        op.rows = &row, op.row_count = 1;
        st_op_result r;
        if (st_submit_wait(S, &op, 1, &r) != ST_OK)
            return (void *)1;
    }
    return NULL;
}

/*
 * Writers that queue while a commit is under way go together in the next one. The first commit is held until
 * every other writer has queued (what a slow sync does), so the next batch must hold them all: that part does
 * not depend on the machine's speed. How many commits the rest take does (a loaded machine schedules the
 * writers late and batches shrink: 143 commits for 512 writes once, 42-71 usually), so it is only bounded far
 * from what no group commit would take (one commit per write).
 */
Test(store, group_commit_batches_concurrent_writers)
{
    st_close(S);
    S = open_store(true);
    atomic_store(&commits_seen, 0);
    atomic_store(&largest_batch, 0);
    atomic_store(&hold_first_commit_for, WRITERS);
    cr_assert_eq(run_writers(WRITERS, write_many), 0);
    st_counters c;
    st_counters_get(S, &c);
    unsigned writes = WRITERS * WRITES_EACH;
    cr_expect_eq(c.transactions, writes);
    cr_expect_eq(c.commits, atomic_load(&commits_seen), "the hook and the counters agree");
    /* the held commit had k writers and the next the other WRITERS - k: one of them had at least half */
    cr_expect_geq(atomic_load(&largest_batch), WRITERS / 2, "the writers queued behind the held commit went together");
    cr_expect_eq(c.queued, 0u, "nothing left queued");
    cr_expect_lt(c.commits, writes / 2, "%llu commits for %u writes", (unsigned long long)c.commits, writes);
    cr_log_info("group commit: %llu commits for %u writes, largest batch %llu", (unsigned long long)c.commits, writes,
                (unsigned long long)c.max_batch_seen);
}

/* ---- Durability -------------------------------------------------------------------------- */

Test(store, durable_across_close_and_reopen)
{
    create("Patient", "p", "{\"a\":1}");
    update("Patient", "p", "{\"a\":2}", 0);
    create("Patient", "q", "{}");
    delete ("Patient", "q", 0);
    st_close(S);
    S = open_store(false);
    int64_t version;
    char json[256];
    cr_expect_eq(read_json("Patient", "p", json, sizeof json, &version), ST_OK);
    cr_expect_eq(version, 2);
    cr_expect(strstr(json, "\"a\":2"));
    cr_expect_eq(read_json("Patient", "q", NULL, 0, NULL), ST_GONE);
    cr_expect_eq(update("Patient", "p", "{}", 2).version, 3, "versions continue");

    /* the schema is recorded, and a newer one than we know is refused */
    st_close(S);
    S = NULL;
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "INSERT INTO schema_version VALUES (99)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    st_config config = {.path = db_path};
    st_error err = {{0}};
    cr_expect_null(st_open(&config, &err));
    cr_expect(strstr(err.message, "99"), "%s", err.message);
}

/*
 * A child process writes from four threads and reports every acknowledged
 * (callback ST_OK) id through a pipe; the parent kills it with SIGKILL
 * mid-stream, reopens the database and finds every acknowledged write.
 */
static void *crash_writer(void *arg)
{
    int fd = (int)(intptr_t)arg >> 8, n = (int)(intptr_t)arg & 0xFF;
    for (int i = 0;; i++) {
        char id[32];
        snprintf(id, sizeof id, "k%d-%d", n, i);
        st_op op = create_op("Patient", id, "{\"resourceType\":\"Patient\"}");
        st_op_result r;
        if (st_submit_wait(S, &op, 1, &r) == ST_OK) {
            char line[40];
            int len = snprintf(line, sizeof line, "%s\n", id);
            if (write(fd, line, (size_t)len) != len)
                return NULL;
        }
    }
    return NULL;
}

static void crash_child(int fd)
{
    st_config config = {.path = db_path};
    st_error err;
    S = st_open(&config, &err);
    if (!S)
        _exit(2);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, crash_writer, (void *)(intptr_t)((fd << 8) | i));
    pthread_join(threads[0], NULL);
    _exit(0);
}

Test(store, acknowledged_writes_survive_sigkill)
{
    st_close(S);
    S = NULL;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        crash_child(fds[1]);
    }
    close(fds[1]);
    FILE *acks = fdopen(fds[0], "r");
    enum { WANT = 300 };
    static char ids[WANT][32];
    int n = 0;
    while (n < WANT && fgets(ids[n], sizeof ids[n], acks)) {
        ids[n][strcspn(ids[n], "\n")] = '\0';
        n++;
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    fclose(acks);
    cr_assert_eq(n, WANT, "the child acknowledged %d writes", n);
    cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    S = open_store(false);
    int missing = 0;
    for (int i = 0; i < n; i++)
        if (read_json("Patient", ids[i], NULL, 0, NULL) != ST_OK)
            missing++;
    cr_expect_eq(missing, 0, "%d of %d acknowledged writes lost", missing, n);
}

/* ---- Helpers -------------------------------------------------------------------------------- */

Test(store, normalize_and_format)
{
    char *n = st_normalize("Ĳsbrand MÜLLER-Lüdenscheidt, Ærø Straße, e\xcc\x81te, Øster, Łódź, 東京");
    cr_expect_str_eq(n, "ijsbrand muller-ludenscheidt, aero strasse, ete, oster, lodz, 東京");
    free(n);
    char instant[ST_INSTANT_LEN], http[30];
    st_format_instant(T0 + 7, instant);
    cr_expect_str_eq(instant, "2024-05-01T10:00:00.007Z");
    st_format_instant(-1, instant);
    cr_expect_str_eq(instant, "1969-12-31T23:59:59.999Z");
    st_format_http_date(T0, http);
    cr_expect_str_eq(http, "Wed, 01 May 2024 10:00:00 GMT");
    cr_expect_str_eq(st_status_name(ST_VERSION_CONFLICT), "version-conflict");
}

Test(store, invalid_requests_are_refused_up_front)
{
    st_op no_id = {.kind = ST_OP_CREATE, .type = "Patient", .json = "{}"};
    cr_expect_eq(st_submit_wait(S, &no_id, 1, NULL), ST_INVALID);
    st_query other_type = {.type = "Observation"};
    st_op wrong = create_op("Patient", "x", "{}");
    wrong.if_none_exist = &other_type;
    cr_expect_eq(st_submit_wait(S, &wrong, 1, NULL), ST_INVALID);
    st_op not_json = create_op("Patient", "y", "no object");
    cr_expect_eq(submit1(not_json).status, ST_INVALID);
}

Test(store, history_count_zero_is_the_total_only)
{
    create("Patient", "a", "{}");
    create("Patient", "b", "{}");
    st_list l;
    st_history_query q = {.type = "Patient", .since_ms = INT64_MIN, .count = 0};
    cr_assert_eq(st_history(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.total, 2);
    cr_expect_eq(l.count, 0, "count 0 is the total only, as in search");
    st_list_free(&l);
}

Test(store, chains_reach_only_visible_resources_of_readable_types)
{
    load_search_fixture();
    /* a Coverage of insurer 33333333 whose beneficiary is Patient a (owned by 11111111, tagged to no one) */
    st_index_row rows[] = {st_row_reference("beneficiary", "Patient", "a", NULL)};
    st_op op = create_op("Coverage", "cov", "{}");
    op.owner = "33333333", op.rows = rows, op.row_count = 1;
    cr_assert_eq(submit1(op).status, ST_OK);

    st_link to_patient = {.param = "beneficiary", .type = "Patient"};
    st_value ijs = STR("ijsbrand");
    st_condition c = {.chain = &to_patient,
                      .chain_len = 1,
                      .param = "name",
                      .kind = ST_KIND_STRING,
                      .values = &ijs,
                      .value_count = 1};
    st_query q = {.type = "Coverage", .conditions = &c, .condition_count = 1, .count = 10};
    cr_expect_str_eq(found(&q, NULL), "cov", "no restriction: the chain reaches Patient a");

    const char *insurer[] = {"33333333"}, *owner[] = {"11111111"}, *shared[] = {"Organization"};
    const char *readable[] = {"Organization", "Coverage"};
    st_visibility v = {.orgs = insurer, .org_count = 1, .shared_types = shared, .shared_type_count = 1};
    q.linked = &v;
    cr_expect_str_eq(found(&q, NULL), "", "Patient a is neither the insurer's nor addressed to it");
    v.orgs = owner;
    cr_expect_str_eq(found(&q, NULL), "cov", "a is 11111111's");
    v.types = readable, v.type_count = 2;
    cr_expect_str_eq(found(&q, NULL), "", "a type outside `types` is never reached, owned or not");

    /* reverse: the Patients some Coverage points at */
    st_link from_coverage = {.param = "beneficiary", .type = "Coverage", .reverse = true};
    st_value any = {.v.token = {NULL, "cov"}};
    st_condition h = {.chain = &from_coverage,
                      .chain_len = 1,
                      .param = "_id",
                      .kind = ST_KIND_TOKEN,
                      .values = &any,
                      .value_count = 1};
    st_query p = {.type = "Patient", .conditions = &h, .condition_count = 1, .count = 10};
    cr_expect_str_eq(found(&p, NULL), "a");
    v = (st_visibility){.orgs = owner, .org_count = 1};
    p.linked = &v;
    cr_expect_str_eq(found(&p, NULL), "", "the Coverage is 33333333's");
    v.orgs = insurer;
    cr_expect_str_eq(found(&p, NULL), "a");
}

/* The ids of a list, joined by commas. */
static const char *ids_of(const st_list *l)
{
    static char ids[256];
    ids[0] = '\0';
    for (size_t i = 0; i < l->count; i++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%s", i ? "," : "", l->items[i].id);
    return ids;
}

Test(store, keyset_pages_do_not_shift_when_data_changes)
{
    char id[16];
    for (int i = 0; i < 10; i++) {
        atomic_store(&now, T0 + i * 1000);
        snprintf(id, sizeof id, "p%d", i);
        create("Patient", id, "{}");
    }
    st_query q = {.type = "Patient", .count = 3, .want_total = true};
    st_list l;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_str_eq(ids_of(&l), "p9,p8,p7", "newest first");
    cr_expect(l.more);
    cr_expect_eq(l.total, 10);
    cr_expect_eq(l.last_key_ms, T0 + 7000);
    int64_t snapshot = l.snapshot, p7 = l.last_rid;
    cr_expect_gt(p7, 0);
    cr_expect_gt(snapshot, 0);
    st_list_free(&l);

    /* meanwhile: p5 is updated (now the newest), p10 created, p3 deleted */
    atomic_store(&now, T0 + 20000);
    update("Patient", "p5", "{}", 0);
    create("Patient", "p10", "{}");
    delete ("Patient", "p3", 0);

    st_cursor after = {.key_ms = T0 + 7000, .rid = p7};
    q.snapshot = snapshot, q.cursor = &after;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_str_eq(ids_of(&l), "p6,p5,p4", "p5 keeps its place; p10 is not in this search");
    cr_expect(l.more);
    cr_expect_eq(l.total, 9, "as of the snapshot, less the deleted p3");
    cr_expect_eq(l.first_key_ms, T0 + 6000);
    cr_expect_eq(l.last_key_ms, T0 + 4000, "p4's key");
    int64_t p6 = l.first_rid, p4 = l.last_rid;
    st_list_free(&l);

    st_cursor last = {.key_ms = T0 + 4000, .rid = p4};
    q.cursor = &last;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_str_eq(ids_of(&l), "p2,p1,p0", "p3 is gone without shifting the others");
    cr_expect_not(l.more);
    st_list_free(&l);

    st_cursor before = {.key_ms = T0 + 6000, .rid = p6, .before = true};
    q.cursor = &before;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_str_eq(ids_of(&l), "p9,p8,p7", "the previous page, in display order");
    cr_expect_not(l.more, "nothing before the first page");
    st_list_free(&l);

    /* ascending by _lastUpdated pages the other way */
    st_sort oldest = {.param = "_lastUpdated"};
    st_cursor from = {.key_ms = T0 + 1000, .rid = p7 - 6}; /* p1: rows are numbered in creation order */
    q = (st_query){.type = "Patient",
                   .count = 2,
                   .sort = &oldest,
                   .sort_count = 1,
                   .snapshot = snapshot,
                   .cursor = &from};
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_str_eq(ids_of(&l), "p2,p4");
    st_list_free(&l);
}

Test(store, includes_follow_references_round_by_round)
{
    load_search_fixture();
    st_index_row gp_rows[] = {st_row_reference("organization", "Organization", "o", NULL)};
    st_op op = create_op("Practitioner", "gp1", "{}");
    op.rows = gp_rows, op.row_count = 1;
    cr_assert_eq(submit1(op).status, ST_OK);

    st_value a = TOK(NULL, "a");
    st_condition id_a = {.param = "_id", .kind = ST_KIND_TOKEN, .values = &a, .value_count = 1};
    st_include incs[] = {{.type = "Patient", .param = "general-practitioner"},
                         {.type = "Practitioner", .param = "organization", .iterate = true}};
    st_query q = {.type = "Patient",
                  .conditions = &id_a,
                  .condition_count = 1,
                  .count = 10,
                  .includes = incs,
                  .include_count = 2};
    st_list l;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_assert_eq(l.count, 1);
    cr_assert_eq(l.included_count, 2, "gp1, then (iterate) its Organization");
    cr_expect_str_eq(l.included[0].id, "gp1");
    cr_expect_str_eq(l.included[1].id, "o");
    cr_expect_not(l.included_truncated);
    st_list_free(&l);

    incs[1].iterate = false;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.included_count, 1, "without iterate only from the matches");
    st_list_free(&l);

    incs[1].iterate = true;
    q.max_included = 1;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.included_count, 1);
    cr_expect(l.included_truncated);
    st_list_free(&l);

    /* reverse: the Patients pointing at gp1; a match is never included again */
    st_value gp1 = TOK(NULL, "gp1");
    st_condition id_gp1 = {.param = "_id", .kind = ST_KIND_TOKEN, .values = &gp1, .value_count = 1};
    st_include rev[] = {{.type = "Patient", .param = "general-practitioner", .reverse = true, .iterate = true},
                        {.type = "Patient", .param = "general-practitioner", .iterate = true}};
    q = (st_query){.type = "Practitioner",
                   .conditions = &id_gp1,
                   .condition_count = 1,
                   .count = 10,
                   .includes = rev,
                   .include_count = 2};
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_assert_eq(l.included_count, 1);
    cr_expect_str_eq(l.included[0].id, "a");
    st_list_free(&l);

    /* visibility: a stranger is shown no included resource */
    const char *stranger[] = {"99999999"};
    st_visibility v = {.orgs = stranger, .org_count = 1};
    q.linked = &v;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.included_count, 0);
    st_list_free(&l);
}

/* A message longer than store_message_max is cut at a character boundary and says so ("..."), never silently. */
Test(store, long_messages_are_cut_visibly)
{
    char path[600];
    /* a missing folder with a long, multi-byte name: opening fails with the path in the message */
    int n = snprintf(path, sizeof path, "%s/missing-", dir);
    for (int i = 0; i < 120; i++)
        n += snprintf(path + n, sizeof path - (size_t)n, "\xc3\xa9"); /* é */
    snprintf(path + n, sizeof path - (size_t)n, "/fhir.db");
    st_config config = {.path = path};
    st_error err = {{0}};
    cr_assert_null(st_open(&config, &err));
    size_t len = strlen(err.message);
    cr_expect_leq(len, (size_t)LIM(store_message_max));
    cr_expect_str_eq(err.message + len - 3, "...", "%s", err.message);
    /* the cut falls between characters: what precedes the dots is whole UTF-8 */
    cr_expect_neq((unsigned char)err.message[len - 4], 0xc3, "%s", err.message);
    cr_expect(!strncmp(err.message, dir, strlen(dir)), "it starts with the path: %s", err.message);

    /* a short message is left alone */
    config.path = "/nonexistent-folder/fhir.db";
    memset(&err, 0, sizeof err);
    cr_assert_null(st_open(&config, &err));
    cr_expect_null(strstr(err.message, "..."), "%s", err.message);
}

/* ---- The shared SQL (store_sql.h) in a second dialect ----------------------------------------------- */

/* A PostgreSQL-like dialect: what a second backend would bring. */
static const sql_dialect PG_LIKE = {
    .name = "pg-like",
    .placeholder = '$',
    .begin_write = "BEGIN",
    .int_type = "BIGINT",
    .row_id = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    .real_type = "DOUBLE PRECISION",
    .without_rowid = "",
    .insert_ignore = "INSERT INTO",
    .on_conflict_ignore = " ON CONFLICT DO NOTHING",
    .string_agg = "string_agg",
    .unit_separator = "chr(31)",
    .find_text = "strpos",
    .byte_order = " COLLATE \"C\"",
    .no_index = "",
    .true_literal = "TRUE",
    .false_literal = "FALSE",
    .returning = true,
};

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

Test(store_sql, a_second_dialect_gets_its_own_sql_from_the_same_text)
{
    char *sql = sql_fixed_text(&PG_LIKE, SQL_INSERT_TAG);
    cr_expect_str_eq(sql, "INSERT INTO access_tag (tag, rid) VALUES ($2, $1) ON CONFLICT DO NOTHING");
    free(sql);
    sql = sql_fixed_text(&PG_LIKE, SQL_INSERT_VERSION);
    cr_expect_not_null(strstr(sql,
                              "coalesce($8, (SELECT string_agg(t.tag, chr(31)) FROM access_tag t WHERE t.rid = $1))"),
                       "%s", sql);
    cr_expect_str_eq(sql + strlen(sql) - strlen(" RETURNING seq"), " RETURNING seq");
    free(sql);
    sql = sql_fixed_text(&PG_LIKE, SQL_BEGIN_BATCH);
    cr_expect_str_eq(sql, "BEGIN");
    free(sql);
    for (int step = 1; step <= SQL_SCHEMA_VERSION; step++) {
        sql = sql_migration(&PG_LIKE, step);
        cr_assert_not_null(sql);
        cr_expect_null(strchr(sql, '{'), "every token rendered: %s", sql);
        cr_expect_null(strstr(sql, "WITHOUT ROWID"));
        cr_expect_null(strstr(sql, "group_concat"));
        if (step == 1) {
            cr_expect_not_null(strstr(sql, "rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"), "%s", sql);
            cr_expect_not_null(strstr(sql, "value DOUBLE PRECISION NOT NULL"), "%s", sql);
        }
        free(sql);
    }

    /* a search: numbered placeholders, one per value; booleans, text search and byte order of the dialect */
    st_value names[] = {STR("jan"), STR("piet")};
    st_value part = STR("ans");
    st_value active = TOK("http://hl7.org/fhir/ValueSet/x", "active");
    st_condition conds[] = {
        {.param = "name", .kind = ST_KIND_STRING, .values = names, .value_count = 2},
        {.param = "family", .kind = ST_KIND_STRING, .modifier = ST_MOD_CONTAINS, .values = &part, .value_count = 1},
        {.param = "status", .kind = ST_KIND_TOKEN, .values = &active, .value_count = 1},
        {.param = "birthdate", .kind = ST_KIND_DATE, .modifier = ST_MOD_MISSING, .missing = false},
    };
    const char *orgs[] = {"90000101"};
    st_query q = {.type = "Patient",
                  .conditions = conds,
                  .condition_count = 4,
                  .visible_to = orgs,
                  .visible_to_count = 1,
                  .count = 10};
    sql_builder b;
    sql_builder_init(&b, &PG_LIKE);
    cr_assert_eq(sql_build_search_page(&b, &q), ST_OK);
    cr_expect_null(strchr(b.text, '?'), "%s", b.text);
    char last[16];
    snprintf(last, sizeof last, "$%zu", b.bind_count);
    cr_expect_not_null(strstr(b.text, last), "the last value is %s: %s", last, b.text);
    cr_expect_not_null(strstr(b.text, "strpos(x.normalized, "), "%s", b.text);
    cr_expect_not_null(strstr(b.text, " COLLATE \"C\""), "%s", b.text);
    cr_expect_not_null(strstr(b.text, "(TRUE AND x.system = "), "%s", b.text);
    cr_expect_eq(count_of(b.text, "+r.type"), 0, "no SQLite planner hint: %s", b.text);
    cr_expect_not_null(strstr(b.text, ") AS u)"), "the tags subquery has its alias: %s", b.text);
    sql_builder_free(&b);
}

/* ---- Personal data in index rows -------------------------------------------------------------------- */

/* personal of the rows of (table, param) as stored: "1,1" (in rowid order), "" when none. */
static void stored_marks(const char *table, const char *param, char *out, size_t size)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT personal FROM %s WHERE param = ?1 ORDER BY rowid", table);
    sqlite3_stmt *stmt;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_bind_text(stmt, 1, param, -1, SQLITE_STATIC);
    size_t n = 0;
    out[0] = '\0';
    while (sqlite3_step(stmt) == SQLITE_ROW)
        n += (size_t)snprintf(out + n, size - n, "%s%d", n ? "," : "", sqlite3_column_int(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

Test(store, personal_marks_of_index_rows_are_recorded)
{
    st_index_row patient[] = {st_row_string("family", "Jansen"), st_row_token("identifier", "urn:bsn", "999999990"),
                              st_row_date("birthdate", 0, 86399999), st_row_token("gender", NULL, "female")};
    patient[0].personal = patient[1].personal = patient[2].personal = true;
    st_op op = create_op("Patient", "p1", "{\"resourceType\":\"Patient\"}");
    op.rows = patient, op.row_count = 4;
    cr_assert_eq(submit1(op).status, ST_OK);
    st_index_row careplan[] = {st_row_token("status", NULL, "active")};
    op = create_op("CarePlan", "c1", "{\"resourceType\":\"CarePlan\"}");
    op.rows = careplan, op.row_count = 1;
    cr_assert_eq(submit1(op).status, ST_OK);

    char marks[64];
    stored_marks("index_string", "family", marks, sizeof marks);
    cr_expect_str_eq(marks, "1");
    stored_marks("index_token", "identifier", marks, sizeof marks);
    cr_expect_str_eq(marks, "1");
    stored_marks("index_date", "birthdate", marks, sizeof marks);
    cr_expect_str_eq(marks, "1");
    stored_marks("index_token", "gender", marks, sizeof marks);
    cr_expect_str_eq(marks, "0");
    stored_marks("index_token", "status", marks, sizeof marks);
    cr_expect_str_eq(marks, "0");

    /* the rows of a new version replace the old ones, marks included; search still finds them */
    patient[1].personal = false;
    op = (st_op){.kind = ST_OP_UPDATE,
                 .type = "Patient",
                 .id = "p1",
                 .json = "{\"resourceType\":\"Patient\"}",
                 .rows = patient,
                 .row_count = 2};
    cr_assert_eq(submit1(op).status, ST_OK);
    stored_marks("index_token", "identifier", marks, sizeof marks);
    cr_expect_str_eq(marks, "0");
    st_value family = STR("jans");
    st_condition c = {.param = "family", .kind = ST_KIND_STRING, .values = &family, .value_count = 1};
    st_query q = {.type = "Patient", .conditions = &c, .condition_count = 1, .count = 10};
    st_list l;
    cr_assert_eq(st_search(S, &q, &l, NULL), ST_OK);
    cr_expect_eq(l.count, 1);
    st_list_free(&l);
}

/* SQLite's dialect as store_sqlite.c has it, to build a store of an older schema version here. */
static const sql_dialect SQLITE_AS_BUILT = {
    .name = "sqlite",
    .placeholder = '?',
    .begin_write = "BEGIN IMMEDIATE",
    .int_type = "INTEGER",
    .row_id = "INTEGER PRIMARY KEY",
    .real_type = "REAL",
    .without_rowid = " WITHOUT ROWID",
    .insert_ignore = "INSERT OR IGNORE INTO",
    .on_conflict_ignore = "",
    .string_agg = "group_concat",
    .unit_separator = "char(31)",
    .find_text = "instr",
    .byte_order = "",
    .no_index = "+",
    .true_literal = "1",
    .false_literal = "0",
    .returning = false,
};

/* A store of schema version 2 (before the personal marks) opens, and its personal rows are marked then. */
Test(store, a_version_2_store_is_migrated_and_its_personal_rows_marked)
{
    st_close(S);
    S = NULL;
    unlink(db_path);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, SQL_SCHEMA_VERSION_TABLE, NULL, NULL, NULL), SQLITE_OK);
    for (int step = 1; step <= 2; step++) {
        char *sql = sql_migration(&SQLITE_AS_BUILT, step), *record = sql_schema_version_record(step);
        cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
        cr_assert_eq(sqlite3_exec(db, record, NULL, NULL, NULL), SQLITE_OK);
        free(sql);
        free(record);
    }
    /* rows as version 2 wrote them: no personal column */
    const char *rows =
        "INSERT INTO resource VALUES (1, 'Patient', 'p1', 1, 0, 0, '11111111', 1);"
        "INSERT INTO resource_version VALUES (1, 1, 'Patient', 'p1', 1, 0, 1, '{\"resourceType\":\"Patient\"}', '');"
        "INSERT INTO resource VALUES (2, 'CarePlan', 'c1', 1, 0, 0, '11111111', 2);"
        "INSERT INTO resource_version VALUES (2, 2, 'CarePlan', 'c1', 1, 0, 1, '{\"resourceType\":\"CarePlan\"}', '');"
        "INSERT INTO index_string VALUES (1, 'Patient', 'name', 'jansen', 'Jansen');"
        "INSERT INTO index_token VALUES (1, 'Patient', 'identifier', 'urn:bsn', '999999990');"
        "INSERT INTO index_token VALUES (1, 'Patient', 'gender', NULL, 'female');"
        "INSERT INTO index_date VALUES (1, 'Patient', 'birthdate', 0, 86399999);"
        "INSERT INTO index_token VALUES (2, 'CarePlan', 'status', NULL, 'active');";
    cr_assert_eq(sqlite3_exec(db, rows, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);

    S = open_store(false);
    char marks[64];
    stored_marks("index_string", "name", marks, sizeof marks);
    cr_expect_str_eq(marks, "1");
    stored_marks("index_token", "identifier", marks, sizeof marks);
    cr_expect_str_eq(marks, "1");
    stored_marks("index_date", "birthdate", marks, sizeof marks);
    cr_expect_str_eq(marks, "1");
    stored_marks("index_token", "gender", marks, sizeof marks);
    cr_expect_str_eq(marks, "0");
    stored_marks("index_token", "status", marks, sizeof marks);
    cr_expect_str_eq(marks, "0");
    /* and the store works on as before */
    int64_t version;
    cr_expect_eq(read_json("Patient", "p1", NULL, 0, &version), ST_OK);
    cr_expect_eq(version, 1);
    cr_expect_eq(update("Patient", "p1", "{\"resourceType\":\"Patient\"}", 1).version, 2);
}

/* Queues a notification for `receiver` of a new Task/<prefix><i>; returns its seq. */
static int64_t queue_notification(const char *receiver, const char *prefix, int i)
{
    char task_id[16];
    snprintf(task_id, sizeof task_id, "%s%d", prefix, i);
    st_notify n = {.receiver = receiver, .event = "created", .of_op = 0};
    st_op ops[] = {create_op("Task", task_id, "{}"), {.kind = ST_OP_NOTIFY, .notify = &n}};
    st_op_result r[2];
    cr_assert_eq(st_submit_wait(S, ops, 2, r), ST_OK);
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query q = {.receiver = receiver, .from_event = r[1].version, .to_event = r[1].version};
    cr_assert_eq(st_notify_list(S, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 1);
    int64_t seq = rows[0].seq;
    free(rows);
    return seq;
}

/* A receiver's events by number range and newest first: what $events and $status read (rest_subscription.c). */
Test(store, notifications_of_a_receiver_by_event_range)
{
    for (int i = 0; i < 5; i++)
        queue_notification(i == 2 ? "22222222" : "33333333", "t", i);
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    /* 33333333 has events 1..4 (t0, t1, t3, t4) */
    st_notify_query q = {.receiver = "33333333", .from_event = 2, .to_event = 3};
    cr_assert_eq(st_notify_list(S, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 2);
    cr_expect_eq(rows[0].event_number, 2);
    cr_expect_str_eq(rows[0].focus_id, "t1");
    cr_expect_eq(rows[1].event_number, 3);
    cr_expect_str_eq(rows[1].focus_id, "t3");
    free(rows);
    st_notify_query latest = {.receiver = "33333333", .newest_first = true, .count = 1};
    cr_assert_eq(st_notify_list(S, &latest, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 1);
    cr_expect_eq(rows[0].event_number, 4);
    cr_expect_str_eq(rows[0].focus_id, "t4");
    free(rows);
    st_notify_query open_end = {.receiver = "33333333", .from_event = 4};
    cr_assert_eq(st_notify_list(S, &open_end, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_expect_eq(count, 1);
    free(rows);
    st_notify_query other = {.receiver = "22222222"};
    cr_assert_eq(st_notify_list(S, &other, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_expect_eq(count, 1);
    cr_expect_eq(rows[0].event_number, 1, "numbered per receiver");
    free(rows);
}

static void mark_delivered(int64_t seq, int64_t keep_ms)
{
    st_notify n = {.seq = seq, .state = ST_NOTIFY_DELIVERED, .keep_delivered_ms = keep_ms};
    st_op op = {.kind = ST_OP_NOTIFY_UPDATE, .notify = &n};
    st_op_result r;
    cr_assert_eq(st_submit_wait(S, &op, 1, &r), ST_OK);
}

/* The event numbers still queued for receiver: first and how many. */
static size_t queued_events(const char *receiver, int64_t *first)
{
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query q = {.receiver = receiver};
    cr_assert_eq(st_notify_list(S, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    *first = count ? rows[0].event_number : 0;
    free(rows);
    return count;
}

/*
 * A delivered mark prunes only among the receiver's oldest delivered rows, a few per mark: its cost does
 * not grow with how many delivered rows the receiver has kept (all of them were read on every mark).
 */
Test(store, a_restored_backup_never_numbers_an_event_as_one_issued_after_the_backup)
{
    for (int i = 0; i < 3; i++)
        queue_notification("33333333", "t", i); /* events 1..3 */
    char to[160], copy[200];
    snprintf(to, sizeof to, "%s/backup", dir);
    snprintf(copy, sizeof copy, "%s/fhir.db", to);
    st_config config = {.path = db_path};
    st_backup_report report;
    st_error e = {{0}};
    cr_assert_eq(st_backup(&config, to, &report, &e), ST_OK, "%s", e.message);
    for (int i = 3; i < 5; i++)
        queue_notification("33333333", "t", i); /* 4 and 5, after the backup: the restore has neither */
    st_store *live = S;
    st_config restored = {.path = copy, .clock = pinned_clock};
    S = st_open(&restored, &e);
    cr_assert_not_null(S, "%s", e.message);
    queue_notification("33333333", "r", 0);
    st_notification *rows = NULL;
    size_t count = 0;
    st_notify_query q = {.receiver = "33333333"};
    cr_assert_eq(st_notify_list(S, &q, &rows, &count, &e), ST_OK, "%s", e.message);
    cr_assert_eq(count, 4, "the three queued before the backup, and the new one");
    cr_expect_eq(rows[2].event_number, 3);
    cr_expect_eq(rows[3].event_number, 3 + LIM(backup_event_jump) + 1,
                 "past every number the live gateway can have issued since: a gap, not a number used twice");
    cr_expect_str_eq(rows[3].focus_id, "r0");
    free(rows);
    st_close(S);
    S = live;
}

Test(store, a_delivered_mark_prunes_the_oldest_few)
{
    enum { OLD = 2 * ST_NOTIFY_PRUNE_BATCH + 4 };
    const char *receiver = "44444444";
    int64_t seqs[OLD + 2];
    for (int i = 0; i < OLD; i++) {
        seqs[i] = queue_notification(receiver, "p", i);
        mark_delivered(seqs[i], 0); /* delivered at T0, nothing pruned */
    }
    atomic_store(&now, T0 + 10000);
    seqs[OLD] = queue_notification(receiver, "p", OLD);
    mark_delivered(seqs[OLD], 5000); /* events 1..OLD were delivered longer than 5 s ago */
    int64_t first = 0;
    size_t left = queued_events(receiver, &first);
    cr_expect_eq(first, ST_NOTIFY_PRUNE_BATCH + 1, "the oldest %d went", ST_NOTIFY_PRUNE_BATCH);
    cr_expect_eq(left, OLD + 1 - ST_NOTIFY_PRUNE_BATCH);
    seqs[OLD + 1] = queue_notification(receiver, "p", OLD + 1);
    mark_delivered(seqs[OLD + 1], 5000);
    left = queued_events(receiver, &first);
    cr_expect_eq(first, 2 * ST_NOTIFY_PRUNE_BATCH + 1, "the next mark takes the next few");
    cr_expect_eq(left, OLD + 2 - 2 * ST_NOTIFY_PRUNE_BATCH);
    /* what is left of the old ones goes with the next marks; the two recent ones stay */
    for (int i = 0; i < 2; i++)
        mark_delivered(queue_notification(receiver, "p", OLD + 2 + i), 5000);
    left = queued_events(receiver, &first);
    cr_expect_eq(first, OLD + 1, "only the ones delivered at T0 + 10 s are left");
    cr_expect_eq(left, 4);
}

/* Every line of SQLite's plan for sql, joined with " | " into out. */
static bool query_plan(sqlite3 *db, const char *sql, char *out, size_t size)
{
    char *explain = malloc(strlen(sql) + 32);
    sprintf(explain, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, explain, -1, &stmt, NULL);
    free(explain);
    if (rc != SQLITE_OK)
        return false;
    size_t at = 0;
    out[0] = '\0';
    while (sqlite3_step(stmt) == SQLITE_ROW && at < size)
        at += (size_t)snprintf(out + at, size - at, "%s%s", at ? " | " : "",
                               (const char *)sqlite3_column_text(stmt, 3));
    sqlite3_finalize(stmt);
    return true;
}

/* An open-ended range of an index ("SEARCH t USING INDEX i (a=? AND b<?)"): every row on one side of b. */
static bool searches_an_open_range(const char *plan)
{
    for (const char *p = plan; (p = strstr(p, "SEARCH ")) != NULL; p += 7) {
        const char *open = strchr(p, '('), *end = strstr(p, " | ");
        if (!open || (end && open > end))
            continue;
        const char *close = strchr(open, ')');
        bool below = false, above = false;
        for (const char *c = open; close && c < close; c++)
            below |= *c == '<', above |= *c == '>';
        if (below != above) /* one bound only; "b>? AND b<?" is a closed range */
            return true;
    }
    return false;
}

/*
 * Does a plan read a whole table, or all of an index on one side of a bound? "SCAN t" is one, unless t is
 * a subquery of the statement itself ("CO-ROUTINE t"); so is an open-ended range. A LIMIT in the scan's
 * own order (no sort) stops either early: the newest audit entry, the first queued notifications.
 */
static bool scans_a_table(const char *sql, const char *plan)
{
    if (searches_an_open_range(plan) && !(strstr(sql, " LIMIT ") && !strstr(plan, "TEMP B-TREE FOR ORDER BY")))
        return true;
    for (const char *p = plan; (p = strstr(p, "SCAN ")) != NULL; p += 5) {
        char name[64] = "", coroutine[80];
        sscanf(p + 5, "%63[A-Za-z_0-9]", name);
        snprintf(coroutine, sizeof coroutine, "CO-ROUTINE %s", name);
        if (strstr(plan, coroutine))
            continue;
        if (strstr(sql, " LIMIT ") && !strstr(plan, "TEMP B-TREE FOR ORDER BY"))
            continue;
        return true;
    }
    return false;
}

/*
 * The statements the store runs (writes on the commit thread, reads on every request) find their rows by
 * an index: none reads a whole table, whose cost would grow with everything ever stored. A delivered mark
 * once read every delivered notification kept (14 days of them) on the commit thread.
 */
Test(store, no_statement_reads_a_whole_table)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char plan[4096];
    int checked = 0;
    for (int i = 0; i < SQL_FIXED_COUNT; i++) {
        char *sql = sql_fixed_text(&st_sqlite_dialect, (sql_fixed)i);
        cr_assert_not_null(sql);
        if (query_plan(db, sql, plan, sizeof plan)) { /* BEGIN, COMMIT, SAVEPOINT have none */
            checked++;
            if (i == SQL_ALL_LOGGED) /* by design all of them, once at a start after an unclean stop: from */
                cr_expect(strstr(plan, "COVERING INDEX version_in_log"), "%s\n  plan: %s", sql, plan); /* its index */
            else
                cr_expect_not(scans_a_table(sql, plan), "%s\n  plan: %s", sql, plan);
        }
        free(sql);
    }
    for (int i = 0; i < SQL_NOTIFY_COUNT; i++) {
        char *sql = sql_notify_text(&st_sqlite_dialect, (sql_notify_stmt)i);
        cr_assert_not_null(sql);
        cr_assert(query_plan(db, sql, plan, sizeof plan), "%s: %s", sql, sqlite3_errmsg(db));
        checked++;
        /* by design every row: the queue's counts per state for /metrics (once per scrape, on a reader), and a
           backup's jump of every receiver's counter (once per backup, on its copy) */
        if (i != SQL_NOTIFY_COUNTS && i != SQL_NOTIFY_JUMP)
            cr_expect_not(scans_a_table(sql, plan), "%s\n  plan: %s", sql, plan);
        free(sql);
    }
    cr_expect_gt(checked, 40, "%d statements checked", checked);
    sqlite3_close(db);
}

/* ---- The sync stage: commits are visible before they are durable, and nothing says so too early ---- */

static void count_done(void *arg, const st_txn_result *result)
{
    (void)result;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

static void keep_status(void *arg, const st_txn_result *result)
{
    atomic_store((_Atomic int *)arg, (int)result->status + 1); /* 0: not yet */
}

/* Waits up to 10 s for the commit thread to have committed type/id (readers see it before its sync). */
static bool committed_soon(const char *type, const char *id)
{
    for (int waited_ms = 0; waited_ms < 10000; waited_ms++) {
        if (read_json(type, id, NULL, 0, NULL) == ST_OK)
            return true;
        usleep(1000);
    }
    return false;
}

static bool becomes(_Atomic int *value, int expected)
{
    for (int waited_ms = 0; waited_ms < 10000 && atomic_load(value) != expected; waited_ms++)
        usleep(1000);
    return atomic_load(value) == expected;
}

Test(store, a_commit_is_acknowledged_only_once_its_sync_returned)
{
    st_test_hold_sync(S, true);
    _Atomic int written = 0, barrier = 0;
    st_op op = create_op("Patient", "p1", "{\"resourceType\":\"Patient\"}");
    cr_assert_eq(st_submit(S, &op, 1, count_done, &written), ST_OK);
    cr_assert(committed_soon("Patient", "p1"), "the commit thread committed it");
    cr_assert_eq(st_submit_barrier(S, count_done, &barrier), ST_OK);
    usleep(100 * 1000);
    cr_expect_eq(atomic_load(&written), 0, "no acknowledgement while the sync is held");
    cr_expect_eq(atomic_load(&barrier), 0, "nor the barrier behind it");
    cr_expect_not(st_durable_now(S), "a read could see what is not durable");
    cr_expect_eq(atomic_load(&commits_seen), 0, "on_commit (the relay's wake) waits for the sync too");
    st_test_hold_sync(S, false);
    cr_expect(becomes(&written, 1));
    cr_expect(becomes(&barrier, 1));
    cr_expect(st_durable_now(S));
    cr_expect_geq(atomic_load(&commits_seen), 1);
}

Test(store, notifications_of_a_commit_not_yet_durable_are_not_listed)
{
    queue_notification("33333333", "t", 0); /* event 1, durable */
    st_test_hold_sync(S, true);
    st_notify n = {.receiver = "33333333", .event = "created", .of_op = 0};
    st_op ops[] = {create_op("Task", "t1", "{}"), {.kind = ST_OP_NOTIFY, .notify = &n}};
    _Atomic int done = 0;
    cr_assert_eq(st_submit(S, ops, 2, count_done, &done), ST_OK);
    cr_assert(committed_soon("Task", "t1"));

    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query all = {.receiver = "33333333"}, heads = {.due_heads = true};
    cr_assert_eq(st_notify_list(S, &all, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_expect_eq(count, 1, "event 2 is committed, not durable: not listed");
    free(rows);
    st_notify_query latest = {.receiver = "33333333", .newest_first = true, .count = 1};
    cr_assert_eq(st_notify_list(S, &latest, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 1, "the latest durable event instead");
    cr_expect_eq(rows[0].event_number, 1);
    free(rows);
    cr_assert_eq(st_notify_list(S, &heads, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 1);
    cr_expect_str_eq(rows[0].focus_id, "t0");
    free(rows);

    st_test_hold_sync(S, false);
    cr_assert(becomes(&done, 1));
    cr_assert_eq(st_notify_list(S, &latest, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_assert_eq(count, 1);
    cr_expect_eq(rows[0].event_number, 2, "listed once durable");
    free(rows);
}

Test(store, a_failed_sync_breaks_the_store)
{
    cr_assert_eq(create("Patient", "before", "{\"resourceType\":\"Patient\"}").status, ST_OK);
    st_test_fail_next_sync(S);
    _Atomic int status = 0;
    st_op op = create_op("Patient", "lost", "{\"resourceType\":\"Patient\"}");
    cr_assert_eq(st_submit(S, &op, 1, keep_status, &status), ST_OK);
    cr_assert(becomes(&status, ST_IO + 1), "the write is not acknowledged: its sync failed");
    cr_expect_eq(st_submit(S, &op, 1, keep_status, &status), ST_IO, "no write after it");
    st_resource r;
    st_error err = {{0}};
    cr_expect_eq(st_read(S, "Patient", "before", &r, &err), ST_IO, "nor any read: what it sees may be gone");
    cr_expect(strstr(err.message, "sync") != NULL, "%s", err.message);
}
