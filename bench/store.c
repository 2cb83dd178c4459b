/*
 * bench/store.c — how many durable writes and reads per second the store
 * (gateway/store/store.h, SQLite backend) sustains, and how well group commit
 * batches.
 *
 *   bench-store [DIR [SECONDS [RECLAIM_DOCUMENTS]]]
 *
 * DIR is where the database goes (default: a fresh directory under /tmp,
 * removed afterwards); use the disk the server will use, since the sync is
 * what is measured. SECONDS per phase, default 3.
 *
 * Writes are creates of a ~1 KB Patient with 8 index rows and an access tag,
 * durable (synchronous=FULL): each one counts only after its completion
 * callback. Phases: 1, 8 and 64 threads each waiting for its own write
 * (st_submit_wait), and one thread keeping 256 writes in flight through
 * callbacks, the way an event-loop server submits. Each line gives
 * writes/s, commits per write (group commit: lower is better, 1.0 = one
 * sync per write) and the mean commit time. Reads are st_read of random
 * existing resources from 1, 2 and 8 threads, and a token search.
 *
 * The target for the whole server: 5,000 durable writes/s on 2 cores.
 *
 * Last, sealed 50 KB documents as a handover stores them (sealed early on the
 * writing thread, st_seal_early, with an identifier and an access tag), from
 * 64 threads: kept in their rows and in the document log (doc_log.h), each
 * twice in turn on a fresh database, with the process's CPU time per write
 * (sealing included, the same in both) and the bytes written to files.
 *
 * Then the start after an unclean stop: a store of RECLAIM_DOCUMENTS (default
 * 100,000) small sealed documents in the log, one record in a hundred without
 * a row, opened as the serving gateway opens it after a clean stop and after
 * its marker was removed (doc_log.h, "Dead space"): how long the reclaim takes
 * and what it frees.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/store/doc_log.h"
#include "gateway/store/seal.h"
#include "gateway/store/store.h"

#include <sys/resource.h>

#define IN_FLIGHT 256

static st_store *store;
static int seconds = 3;
static long reclaim_documents = 100000; /* the reclaim phase's store: the third argument */
static _Atomic bool stop;
static _Atomic uint64_t ids_issued, writes_done;

static const char BODY[] =
    "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\","
    "\"value\":\"999911120\"}],\"active\":true,\"name\":[{\"use\":\"official\",\"family\":\"Jansen\","
    "\"given\":[\"Pieter\",\"Jan\"],\"prefix\":[\"dhr.\"]}],\"telecom\":[{\"system\":\"phone\","
    "\"value\":\"+31 20 555 0100\",\"use\":\"home\"},{\"system\":\"email\",\"value\":\"p.jansen@example.nl\"}],"
    "\"gender\":\"male\",\"birthDate\":\"1957-03-14\",\"address\":[{\"use\":\"home\",\"line\":[\"Kerkstraat 12\"],"
    "\"city\":\"Utrecht\",\"postalCode\":\"3511 AB\",\"country\":\"NL\"}],\"generalPractitioner\":[{\"reference\":"
    "\"Practitioner/gp-0042\",\"display\":\"Huisartsenpraktijk De Linde\"}],\"managingOrganization\":{"
    "\"reference\":\"Organization/org-17\"},\"communication\":[{\"language\":{\"coding\":[{\"system\":"
    "\"urn:ietf:bcp:47\",\"code\":\"nl\",\"display\":\"Dutch\"}]},\"preferred\":true}],\"extension\":[{\"url\":"
    "\"http://example.org/fhir/StructureDefinition/remark\",\"valueString\":\"a realistic amount of padding so "
    "that the document is about one kilobyte, which is what a typical Patient or Task weighs on the wire here\"}]}";

static const st_index_row ROWS[] = {
    {.param = "identifier", .kind = ST_KIND_TOKEN, .v.token = {"http://fhir.nl/fhir/NamingSystem/bsn", "999911120"}},
    {.param = "family", .kind = ST_KIND_STRING, .v.string = {"Jansen"}},
    {.param = "given", .kind = ST_KIND_STRING, .v.string = {"Pieter"}},
    {.param = "given", .kind = ST_KIND_STRING, .v.string = {"Jan"}},
    {.param = "gender", .kind = ST_KIND_TOKEN, .v.token = {"http://hl7.org/fhir/administrative-gender", "male"}},
    {.param = "birthdate", .kind = ST_KIND_DATE, .v.date = {-403315200000LL, -403228800001LL}},
    {.param = "general-practitioner", .kind = ST_KIND_REFERENCE, .v.reference = {"Practitioner", "gp-0042", NULL}},
    {.param = "organization", .kind = ST_KIND_REFERENCE, .v.reference = {"Organization", "org-17", NULL}},
};
static const char *const TAGS[] = {"90000380"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define ROW_COUNT (sizeof ROWS / sizeof *ROWS)

/* A write with a fresh id, which is also its identifier; id and rows must live until it completes. */
static st_op make_write(char id[32], st_index_row rows[ROW_COUNT])
{
    snprintf(id, 32, "p%llu", (unsigned long long)atomic_fetch_add(&ids_issued, 1));
    memcpy(rows, ROWS, sizeof ROWS);
    rows[0].v.token.code = id;
    return (st_op){.kind = ST_OP_CREATE,
                   .type = "Patient",
                   .id = id,
                   .owner = "90000380",
                   .json = BODY,
                   .json_len = sizeof BODY - 1,
                   .meta_at = 26,
                   .rows = rows,
                   .row_count = ROW_COUNT,
                   .access_tags = TAGS,
                   .access_tag_count = 1};
}

static void *sync_writer(void *arg)
{
    (void)arg;
    char id[32];
    st_index_row rows[ROW_COUNT];
    while (!atomic_load(&stop)) {
        st_op op = make_write(id, rows);
        st_op_result r;
        if (st_submit_wait(store, &op, 1, &r) != ST_OK) {
            fprintf(stderr, "write failed: %s %s\n", st_status_name(r.status), r.message);
            exit(1);
        }
        atomic_fetch_add(&writes_done, 1);
    }
    return NULL;
}

/* ---- one thread, IN_FLIGHT writes outstanding through callbacks ---- */

typedef struct slot {
    char id[32];
    st_index_row rows[ROW_COUNT];
    st_op op;
} slot;

static pthread_mutex_t window_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t window_freed = PTHREAD_COND_INITIALIZER;
static slot *free_slots[IN_FLIGHT];
static int free_count;

static void async_done(void *arg, const st_txn_result *r)
{
    if (r->status != ST_OK) {
        fprintf(stderr, "write failed: %s\n", st_status_name(r->status));
        exit(1);
    }
    atomic_fetch_add(&writes_done, 1);
    pthread_mutex_lock(&window_lock);
    free_slots[free_count++] = arg;
    pthread_cond_signal(&window_freed);
    pthread_mutex_unlock(&window_lock);
}

static void *async_writer(void *arg)
{
    (void)arg;
    static slot slots[IN_FLIGHT];
    free_count = 0;
    for (int i = 0; i < IN_FLIGHT; i++)
        free_slots[free_count++] = &slots[i];
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&window_lock);
        while (free_count == 0)
            pthread_cond_wait(&window_freed, &window_lock);
        slot *s = free_slots[--free_count];
        pthread_mutex_unlock(&window_lock);
        s->op = make_write(s->id, s->rows);
        if (st_submit(store, &s->op, 1, async_done, s) != ST_OK) {
            fprintf(stderr, "submit refused\n");
            exit(1);
        }
    }
    pthread_mutex_lock(&window_lock); /* drain: every slot back */
    while (free_count < IN_FLIGHT)
        pthread_cond_wait(&window_freed, &window_lock);
    pthread_mutex_unlock(&window_lock);
    return NULL;
}

static void write_phase(const char *label, int threads, void *(*body)(void *))
{
    st_counters before, after;
    st_counters_get(store, &before);
    atomic_store(&writes_done, 0);
    atomic_store(&stop, false);
    pthread_t tids[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, body, NULL);
    sleep((unsigned)seconds);
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    double elapsed = now_s() - t0;
    st_counters_get(store, &after);
    uint64_t writes = atomic_load(&writes_done), commits = after.commits - before.commits;
    printf("  %-28s %9.0f writes/s  %6.3f commits/write  %7.2f ms/commit  (%llu writes)\n", label,
           (double)writes / elapsed, writes ? (double)commits / (double)writes : 0,
           commits ? (double)(after.commit_us_total - before.commit_us_total) / (double)commits / 1000 : 0,
           (unsigned long long)writes);
}

/* ---- sealed documents: in their rows, or in the document log ---- */

static char *document; /* a ~50 KB Bundle with an empty meta object, as st_seal_early wants it */
static size_t document_len;

static void make_document(void)
{
    static const char HEAD[] = "{\"resourceType\":\"Bundle\",\"meta\":{},\"type\":\"document\",\"entry\":[";
    static const char ENTRY[] = "{\"fullUrl\":\"urn:uuid:0\",\"resource\":{\"resourceType\":\"Observation\","
                                "\"status\":\"final\",\"code\":{\"text\":\"a finding of about two hundred "
                                "bytes, so that fifty thousand of them make a handover's document\"}}},";
    size_t entries = 50000 / (sizeof ENTRY - 1);
    document = malloc(sizeof HEAD + entries * (sizeof ENTRY - 1) + 3);
    size_t n = sizeof HEAD - 1;
    memcpy(document, HEAD, n);
    for (size_t i = 0; i < entries; i++, n += sizeof ENTRY - 1)
        memcpy(document + n, ENTRY, sizeof ENTRY - 1);
    memcpy(document + n - 1, "]}", 3); /* the last entry's comma */
    document_len = n + 1;
}

typedef struct presealed {
    char *bytes; /* st_seal_early's, until the store takes them */
    size_t len;
} presealed;

/* st_op.sealed: the bytes sealed on the writing thread, handed over (the store frees them). */
static char *hand_over(void *arg, int64_t version, size_t *len)
{
    presealed *p = arg;
    char *bytes = version == 1 ? p->bytes : NULL;
    if (bytes) {
        *len = p->len;
        p->bytes = NULL;
    }
    return bytes;
}

static void *sealed_writer(void *arg)
{
    (void)arg;
    char id[32];
    st_index_row rows[1] = {{.param = "identifier", .kind = ST_KIND_TOKEN, .v.token = {"urn:ietf:rfc:3986", id}}};
    while (!atomic_load(&stop)) {
        snprintf(id, sizeof id, "d%llu", (unsigned long long)atomic_fetch_add(&ids_issued, 1));
        presealed p = {0};
        p.bytes = st_seal_early(store, "Bundle", id, document, document_len, &p.len);
        st_op op = {.kind = ST_OP_CREATE,
                    .type = "Bundle",
                    .id = id,
                    .owner = "90000380",
                    .json = document,
                    .json_len = document_len,
                    .rows = rows,
                    .row_count = 1,
                    .access_tags = TAGS,
                    .access_tag_count = 1,
                    .sealed = hand_over,
                    .render_arg = &p};
        st_op_result r;
        if (!p.bytes || st_submit_wait(store, &op, 1, &r) != ST_OK || r.status != ST_OK) {
            fprintf(stderr, "sealed write failed: %s %s\n", st_status_name(r.status), r.message);
            exit(1);
        }
        st_discard_early(store, p.bytes, p.len);
        free(p.bytes);
        atomic_fetch_add(&writes_done, 1);
    }
    return NULL;
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* Bytes this process has written to files and sockets (/proc/self/io: wchar), 0 when unknown. */
static unsigned long long bytes_written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    unsigned long long n = 0;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %llu", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

typedef struct sealed_figures {
    double writes_per_s, cpu_ms_per_write, kb_per_write;
} sealed_figures;

static sealed_figures sealed_phase(const char *dir, const sl_keyring *keys, bool in_log, int round)
{
    char path[320];
    snprintf(path, sizeof path, "%s/sealed-%s-%d.db", dir, in_log ? "log" : "rows", round);
    st_config config = {.path = path, .seal_keys = keys, .document_log_off = !in_log};
    st_error err;
    if (!(store = st_open(&config, &err))) {
        fprintf(stderr, "st_open: %s\n", err.message);
        exit(1);
    }
    atomic_store(&writes_done, 0);
    atomic_store(&stop, false);
    pthread_t tids[64];
    double t0 = now_s(), c0 = cpu_s();
    unsigned long long w0 = bytes_written();
    for (int i = 0; i < 64; i++)
        pthread_create(&tids[i], NULL, sealed_writer, NULL);
    sleep((unsigned)seconds);
    atomic_store(&stop, true);
    for (int i = 0; i < 64; i++)
        pthread_join(tids[i], NULL);
    st_close(store); /* the checkpoint at close counts: it is the rows' second copy of each document */
    double writes = (double)atomic_load(&writes_done);
    sealed_figures f = {writes / (now_s() - t0), (cpu_s() - c0) * 1000 / writes,
                        (double)(bytes_written() - w0) / 1024 / writes};
    printf("  %-28s %9.0f writes/s  %6.3f ms CPU/write  %6.1f KB written/write\n",
           in_log ? "in the document log" : "in their rows", f.writes_per_s, f.cpu_ms_per_write, f.kb_per_write);
    return f;
}

/* ---- the document log's reclaim at a start after an unclean stop ---- */

#define RECLAIM_BATCH 500 /* documents per transaction while filling the store */

static double open_seconds(st_config *config, st_reclaim *r)
{
    st_error err;
    double t0 = now_s();
    if (!(store = st_open(config, &err))) {
        fprintf(stderr, "st_open: %s\n", err.message);
        exit(1);
    }
    double t = now_s() - t0;
    st_reclaim_report(store, r);
    return t;
}

/* `documents` small sealed documents in the log, one in a hundred appended without a row (as a transaction
 * that died with the process leaves it); then the start after a clean stop against the start without one. */
static void reclaim_phase(const char *dir, const sl_keyring *keys, long documents)
{
    char path[320], marker[400];
    snprintf(path, sizeof path, "%s/reclaim.db", dir);
    snprintf(marker, sizeof marker, "%s" DL_SUFFIX "/" DL_CLEAN_STOP, path);
    st_config config = {.path = path, .seal_keys = keys, .exclusive = true};
    st_reclaim r;
    open_seconds(&config, &r);
    static const char DOC[] = "{\"resourceType\":\"Bundle\",\"meta\":{},\"type\":\"document\"}";
    static st_op ops[RECLAIM_BATCH];
    static st_op_result results[RECLAIM_BATCH];
    static presealed sealed[RECLAIM_BATCH];
    static char ids[RECLAIM_BATCH][32];
    double t0 = now_s();
    long orphans = 0;
    for (long done = 0; done < documents;) {
        size_t n = 0;
        for (; n < RECLAIM_BATCH && done < documents; n++, done++) {
            snprintf(ids[n], sizeof ids[n], "r%ld", done);
            sealed[n].bytes = st_seal_early(store, "Bundle", ids[n], DOC, sizeof DOC - 1, &sealed[n].len);
            ops[n] = (st_op){.kind = ST_OP_CREATE,
                             .type = "Bundle",
                             .id = ids[n],
                             .owner = "90000380",
                             .json = DOC,
                             .json_len = sizeof DOC - 1,
                             .access_tags = TAGS,
                             .access_tag_count = 1,
                             .sealed = hand_over,
                             .render_arg = &sealed[n]};
            if (done % 100 == 99) {
                size_t len;
                free(st_seal_early(store, "Bundle", "orphan", DOC, sizeof DOC - 1, &len));
                orphans++;
            }
        }
        if (st_submit_wait(store, ops, n, results) != ST_OK || results[0].status != ST_OK) {
            fprintf(stderr, "reclaim fill: %s\n", results[0].message);
            exit(1);
        }
        for (size_t i = 0; i < n; i++)
            free(sealed[i].bytes);
    }
    double fill = now_s() - t0;
    st_close(store);
    double clean = open_seconds(&config, &r);
    st_close(store);
    unlink(marker); /* as if the process had died */
    double unclean = open_seconds(&config, &r);
    st_close(store);
    printf("reclaim: %ld documents in the log (filled in %.1f s), %ld records without a row\n", documents, fill,
           orphans);
    printf("  start after a clean stop    %8.3f s\n", clean);
    printf("  start after an unclean stop %8.3f s: checked against %llu documents in %.3f s, freed %.1f MB%s%s\n",
           unclean, (unsigned long long)r.documents, (double)r.micros / 1e6, (double)r.freed / 1048576,
           r.error ? ": " : "", r.error ? r.error : "");
    printf("  the reclaim's share: %.2fx the clean start, %.2f us per document\n", unclean / clean,
           (double)r.micros / (double)(r.documents ? r.documents : 1));
}

static void sealed_phases(const char *dir)
{
    char key_path[320], err[256];
    snprintf(key_path, sizeof key_path, "%s/seal.key", dir);
    FILE *k = fopen(key_path, "w");
    if (!k) {
        perror(key_path);
        exit(1);
    }
    fputs("bench 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", k);
    fclose(k);
    sl_keyring *keys = sl_keyring_load(key_path, err, sizeof err);
    if (!keys) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    make_document();
    printf("sealed %zu-byte documents, 64 threads, in turn\n", document_len);
    sealed_figures rows = {0}, log = {0};
    for (int round = 0; round < 2; round++) {
        sealed_figures r = sealed_phase(dir, keys, false, round), l = sealed_phase(dir, keys, true, round);
        rows.writes_per_s += r.writes_per_s / 2, rows.cpu_ms_per_write += r.cpu_ms_per_write / 2;
        log.writes_per_s += l.writes_per_s / 2, log.cpu_ms_per_write += l.cpu_ms_per_write / 2;
    }
    printf("  the log against the rows: %.2fx the writes/s, %.2fx the CPU per write\n",
           log.writes_per_s / rows.writes_per_s, log.cpu_ms_per_write / rows.cpu_ms_per_write);
    reclaim_phase(dir, keys, reclaim_documents);
    sl_keyring_free(keys);
    free(document);
}

/* ---- reads ---- */

static _Atomic uint64_t reads_done;

static void *reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    uint64_t n = atomic_load(&ids_issued), local = 0;
    char id[32];
    while (!atomic_load(&stop)) {
        snprintf(id, sizeof id, "p%llu", (unsigned long long)(rand_r(&seed) % n));
        st_resource r;
        st_status s = st_read(store, "Patient", id, &r, NULL);
        if (s == ST_OK)
            local++;
        st_resource_free(&r);
    }
    atomic_fetch_add(&reads_done, local);
    return NULL;
}

/* identifier=<one of them>&gender=male, with the total: an index lookup, not a scan */
static void *searcher(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    uint64_t n = atomic_load(&ids_issued), local = 0;
    char id[32];
    st_value v[2] = {{.v.token = {"http://fhir.nl/fhir/NamingSystem/bsn", id}}, {.v.token = {NULL, "male"}}};
    st_condition c[2] = {{.param = "identifier", .kind = ST_KIND_TOKEN, .values = &v[0], .value_count = 1},
                         {.param = "gender", .kind = ST_KIND_TOKEN, .values = &v[1], .value_count = 1}};
    st_query q = {.type = "Patient", .conditions = c, .condition_count = 2, .count = 10, .want_total = true};
    while (!atomic_load(&stop)) {
        snprintf(id, sizeof id, "p%llu", (unsigned long long)(rand_r(&seed) % n));
        st_list l;
        if (st_search(store, &q, &l, NULL) == ST_OK && l.count == 1)
            local++;
        st_list_free(&l);
    }
    atomic_fetch_add(&reads_done, local);
    return NULL;
}

static void read_phase(const char *label, int threads, void *(*body)(void *))
{
    atomic_store(&reads_done, 0);
    atomic_store(&stop, false);
    pthread_t tids[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, body, (void *)(uintptr_t)(i + 1));
    sleep((unsigned)seconds);
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    printf("  %-28s %9.0f /s\n", label, (double)atomic_load(&reads_done) / (now_s() - t0));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) != 0)
                remove_tree(path); /* a document log's folder */
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    char dir[256] = "/tmp/bench-store.XXXXXX";
    bool own_dir = argc < 2;
    if (own_dir ? !mkdtemp(dir) : snprintf(dir, sizeof dir, "%s", argv[1]) >= (int)sizeof dir) {
        perror("directory");
        return 1;
    }
    if (argc > 2)
        seconds = atoi(argv[2]) > 0 ? atoi(argv[2]) : 3;
    if (argc > 3)
        reclaim_documents = atol(argv[3]) > 0 ? atol(argv[3]) : reclaim_documents;
    char path[300];
    snprintf(path, sizeof path, "%s/bench-store.db", dir);

    st_config config = {.path = path};
    st_error err;
    store = st_open(&config, &err);
    if (!store) {
        fprintf(stderr, "st_open: %s\n", err.message);
        return 1;
    }
    printf("bench-store: %s, %d s per phase, %zu-byte Patients with %zu index rows, synchronous=FULL\n", path, seconds,
           sizeof BODY - 1, sizeof ROWS / sizeof *ROWS);
    printf("durable writes\n");
    write_phase("1 thread, waits each", 1, sync_writer);
    write_phase("8 threads, wait each", 8, sync_writer);
    write_phase("64 threads, wait each", 64, sync_writer);
    write_phase("1 thread, 256 in flight", 1, async_writer);
    printf("reads (%llu resources)\n", (unsigned long long)atomic_load(&ids_issued));
    read_phase("read, 1 thread", 1, reader);
    read_phase("read, 2 threads", 2, reader);
    read_phase("read, 8 threads", 8, reader);
    read_phase("search, 1 thread", 1, searcher);
    read_phase("search, 2 threads", 2, searcher);

    st_counters c;
    st_counters_get(store, &c);
    printf("totals: %llu commits, %llu transactions, largest batch %llu, slowest commit %.2f ms\n",
           (unsigned long long)c.commits, (unsigned long long)c.transactions, (unsigned long long)c.max_batch_seen,
           (double)c.commit_us_max / 1000);
    st_close(store);
    sealed_phases(dir);
    if (own_dir)
        remove_tree(dir);
    else {
        unlink(path);
        char side[320];
        snprintf(side, sizeof side, "%s-wal", path), unlink(side);
        snprintf(side, sizeof side, "%s-shm", path), unlink(side);
    }
    return 0;
}
