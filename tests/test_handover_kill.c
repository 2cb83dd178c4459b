/*
 * tests/test_handover_kill.c — durability of $handover under SIGKILL (issue
 * #13 part 5, docs/handover.md): nothing acknowledged is ever lost, and
 * nothing is there twice.
 *
 * The real binary (`fhirgw serve --dev`, its own test PKI, SQLite in WAL
 * mode) takes TOTAL handovers from THREADS client threads (libcurl over
 * mutual TLS, one connection each, as hospital-a to elv-a). Once KILL_AFTER
 * of them were acknowledged, the test SIGKILLs the gateway: the submissions
 * in flight get no answer. It restarts the gateway on the same folder and
 * checks, through the API only:
 *   - every acknowledged handover (201 or 200 seen by a client) has exactly
 *     one Task and one document Bundle for its Bundle.identifier, and the
 *     receiver reads the document (the Task is in-progress: no advance
 *     notice);
 *   - no identifier has two Tasks or two documents, answered or not;
 *   - resubmitting every unacknowledged one answers 201 or 200, after which
 *     every identifier has exactly one Task and one document.
 * The figures (acknowledged before the kill, found afterwards, times) go to
 * stderr (a Criterion warning would fail the run).
 *
 * A backup is the other way back from a lost disk: `fhirgw backup` taken in
 * the middle of the same load and put back with `fhirgw restore` (refused
 * while the gateway serves; its audit trail verified) serves every handover
 * acknowledged before the backup began, exactly once, documents readable.
 *
 * Memory: responses are freed where read; the server's folder is removed at
 * the end. Threads: client threads share only atomics.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <dirent.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/child_gateway.h"
#include "tests/handover_body.h"

#define TOTAL 1000
#define THREADS 32
#define KILL_AFTER 300 /* acknowledged submissions before the SIGKILL */
#define READERS 8      /* client threads of the checks after the restart */
#define URA_ELV_A "90000301"
#define IDENT_FORMAT "5e1f0000-0000-4000-8000-%012d"

static char dir[64];
static unsigned port;
static _Atomic int answered[TOTAL]; /* the HTTP status a client saw; 0: no answer */
static atomic_int next_index, acknowledged;
static atomic_bool killed;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the gateway and its clients (tests/child_gateway.h) ---- */

/* `fhirgw serve --dev DIR/dev` (the test PKI made at the first start, kept after); waits until it serves. */
static cg_gateway start_gateway(int run)
{
    char cfg[128], log[128], dev[128], err[8192];
    snprintf(dev, sizeof dev, "%s/dev", dir);
    snprintf(cfg, sizeof cfg, "%s/fhirgw.conf", dir);
    snprintf(log, sizeof log, "%s/server-%d.log", dir, run);
    cg_options o = {.fhirgw = FHIRGW_BIN,
                    .dev_dir = dev,
                    .port = port,
                    .config = cfg,
                    .log = log,
                    .pki_script = TESTS_DIR "/../certs/make-test-pki",
                    .wait_ms = 90000}; /* the first start makes a PKI, under the sanitizers */
    cg_gateway g;
    cr_assert(cg_start(&g, &o, err, sizeof err), "%s", err);
    return g;
}

/* What the start of run `run` says of its reclaim of the document log (its log line): whether it checked the
 * log, the documents it kept and the bytes it freed, and whether it could not. */
typedef struct reclaim_line {
    bool ran, failed;
    long long documents, freed, ms;
} reclaim_line;

static reclaim_line reclaim_at_start(int run)
{
    char path[128], line[2048];
    snprintf(path, sizeof path, "%s/server-%d.log", dir, run);
    FILE *f = fopen(path, "r");
    reclaim_line r = {0};
    while (f && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, "checked the document log against its ");
        if (at && sscanf(at, "checked the document log against its %lld documents in %lld ms and freed %lld bytes",
                         &r.documents, &r.ms, &r.freed) == 3)
            r.ran = true;
        r.failed |= strstr(line, "unused records stay until the next start") != NULL;
    }
    if (f)
        fclose(f);
    return r;
}

static void stop_gateway(cg_gateway *g, int sig)
{
    char err[256];
    cr_assert(cg_stop(g, sig, NULL, err, sizeof err), "%s", err);
}

static void client_open(cg_client *c, const char *who)
{
    char dev[128], err[256];
    snprintf(dev, sizeof dev, "%s/dev", dir);
    cr_assert(cg_client_open(c, dev, who, port, 60, err, sizeof err), "%s", err);
}

static long submit(cg_client *c, int i)
{
    char ident[64];
    snprintf(ident, sizeof ident, IDENT_FORMAT, i);
    char *body = hb_parameters(ident, NULL, URA_ELV_A);
    long status = body ? cg_request(c, "POST", "/$handover", body, 0) : 0;
    free(body);
    return status;
}

static void *sender(void *arg)
{
    (void)arg;
    cg_client c;
    client_open(&c, "hospital-a");
    for (int i; !atomic_load(&killed) && (i = atomic_fetch_add(&next_index, 1)) < TOTAL;) {
        long status = submit(&c, i);
        atomic_store(&answered[i], (int)status);
        if (status == 200 || status == 201)
            atomic_fetch_add(&acknowledged, 1);
    }
    cg_client_close(&c);
    return NULL;
}

/* ---- what the restarted gateway has ---- */

/* The index of an identifier value "urn:uuid:<IDENT_FORMAT>"; -1 for another. */
static int index_of(const char *value)
{
    int i = -1;
    char again[80];
    if (value && sscanf(value, "urn:uuid:5e1f0000-0000-4000-8000-%12d", &i) == 1) {
        snprintf(again, sizeof again, "urn:uuid:" IDENT_FORMAT, i);
        if (!strcmp(again, value) && i >= 0 && i < TOTAL)
            return i;
    }
    return -1;
}

/* Every `type` hospital-a may read, through the searchset's next links: per index how many, and for Tasks the
 * document each names (docs[i], "Bundle/<id>"). */
static void count_all(cg_client *c, const char *type, int counts[TOTAL], char (*docs)[80])
{
    memset(counts, 0, TOTAL * sizeof *counts);
    char url[1024];
    snprintf(url, sizeof url, "/%s?_count=200", type);
    for (int pages = 0; url[0] && pages < 100; pages++) {
        long status = cg_request(c, "GET", url, NULL, 0);
        cr_assert_eq(status, 200, "GET %s: %ld %s", url, status, c->body ? c->body : "");
        json_object *page = json_tokener_parse(c->body);
        cr_assert_not_null(page);
        url[0] = '\0';
        json_object *links = json_object_object_get(page, "link"), *entries = json_object_object_get(page, "entry");
        for (size_t l = 0; links && l < json_object_array_length(links); l++) {
            json_object *link = json_object_array_get_idx(links, l);
            if (!strcmp(json_object_get_string(json_object_object_get(link, "relation")), "next"))
                snprintf(url, sizeof url, "%s", json_object_get_string(json_object_object_get(link, "url")));
        }
        for (size_t e = 0; entries && e < json_object_array_length(entries); e++) {
            json_object *r = json_object_object_get(json_object_array_get_idx(entries, e), "resource");
            json_object *ident = json_object_object_get(r, "identifier");
            if (json_object_is_type(ident, json_type_array))
                ident = json_object_array_get_idx(ident, 0);
            int i = index_of(json_object_get_string(json_object_object_get(ident, "value")));
            if (i < 0)
                continue;
            counts[i]++;
            json_object *inputs = docs ? json_object_object_get(r, "input") : NULL;
            json_object *input = json_object_is_type(inputs, json_type_array) ? json_object_array_get_idx(inputs, 0)
                                                                              : NULL;
            json_object *ref = json_object_object_get(json_object_object_get(input, "valueReference"), "reference");
            if (ref)
                snprintf(docs[i], sizeof docs[i], "%s", json_object_get_string(ref));
        }
        json_object_put(page);
    }
}

static char documents[TOTAL][80];
static atomic_int next_read, unreadable;

/* The receiver reads the document of every acknowledged handover (and finds the patient in it). */
static void *receiver(void *arg)
{
    (void)arg;
    cg_client c;
    client_open(&c, "elv-a");
    for (int i; (i = atomic_fetch_add(&next_read, 1)) < TOTAL;) {
        int seen = atomic_load(&answered[i]);
        if (seen != 200 && seen != 201)
            continue;
        char path[96];
        snprintf(path, sizeof path, "/%s", documents[i]);
        long status = documents[i][0] ? cg_request(&c, "GET", path, NULL, 0) : 0;
        if (status != 200 || !memmem(c.body, c.len, HB_SECRET, strlen(HB_SECRET)))
            atomic_fetch_add(&unreadable, 1);
    }
    cg_client_close(&c);
    return NULL;
}

static int committed[TOTAL]; /* Tasks found after the restart, before any resubmission */
static atomic_int next_resend, resent, resent_wrong;

/* Resubmits every handover no client had an answer to: 200 (the first had committed) or 201 (it had not). */
static void *resender(void *arg)
{
    (void)arg;
    cg_client c;
    client_open(&c, "hospital-a");
    for (int i; (i = atomic_fetch_add(&next_resend, 1)) < TOTAL;) {
        int seen = atomic_load(&answered[i]);
        if (seen == 200 || seen == 201)
            continue;
        long status = submit(&c, i);
        atomic_fetch_add(&resent, 1);
        if (status != (committed[i] ? 200 : 201)) {
            fprintf(stderr, "resubmission %d: %ld (first %s committed) %s\n", i, status,
                    committed[i] ? "had" : "had not", c.body ? c.body : "");
            atomic_fetch_add(&resent_wrong, 1);
        }
    }
    cg_client_close(&c);
    return NULL;
}

/* elv-a attests its ELV-HANDOVER agreements in its directory entry, as a receiver must before handovers reach it. */
static void attest_agreements(void)
{
    cg_client c;
    client_open(&c, "elv-a");
    cr_assert_eq(cg_request(&c, "GET", "/Organization/ura-" URA_ELV_A, NULL, 0), 200);
    char *body = hb_with_agreements(c.body, "2099-12-31");
    cr_assert_not_null(body);
    long status = cg_request(&c, "PUT", "/Organization/ura-" URA_ELV_A, body, 0);
    free(body);
    cr_assert_eq(status, 200, "elv-a attests its agreements: %s", c.body ? c.body : "");
    cg_client_close(&c);
}

/* The value of an unlabelled series in a Prometheus text page, or -1 when it is not there. */
static double metric_value(const char *page, const char *name)
{
    char line[160];
    snprintf(line, sizeof line, "\n%s ", name);
    const char *at = page ? strstr(page, line) : NULL;
    return at ? strtod(at + strlen(line), NULL) : -1;
}

static void run_threads(void *(*fn)(void *), int n)
{
    pthread_t t[THREADS];
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, fn, NULL), 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/fhirgw-kill-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/fhirgw.conf", dir);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    /* no rate limit: one sender sends everything; no access log: the test reads the error log only; audit
       checkpoints every 100 entries: a backup taken after a few hundred handovers holds some */
    fputs("rate_limit_per_second 0\naccess_log\naudit_checkpoint_entries 100\n", f);
    fclose(f);
    srand((unsigned)getpid());
    port = 10000 + (unsigned)rand() % 20000; /* below the ephemeral range, as test_server */
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* THREADS senders started (t), back once KILL_AFTER handovers are acknowledged (or all were sent). */
static void send_until_acknowledged(pthread_t t[THREADS])
{
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, sender, NULL), 0);
    for (int waited = 0; atomic_load(&acknowledged) < KILL_AFTER && atomic_load(&next_index) < TOTAL && waited < 120000;
         waited += 5)
        sleep_ms(5);
}

/* A client as hospital-a (c), and the Tasks (with the documents they name) and Bundles it reads, per handover. */
static void count_handovers(cg_client *c, int tasks[TOTAL], int bundles[TOTAL])
{
    client_open(c, "hospital-a");
    count_all(c, "Task", tasks, documents);
    count_all(c, "Bundle", bundles, NULL);
}

/* Whether a thread of process pid is named `name` (gateway/util/thread_name.h), as ps -L and top -H show it. */
static bool thread_named(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        char comm[320], text[32] = "";
        snprintf(comm, sizeof comm, "/proc/%d/task/%s/comm", (int)pid, e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(comm, "r") : NULL;
        if (f && fgets(text, sizeof text, f))
            found = !strncmp(text, name, strlen(name)) && text[strlen(name)] == '\n';
        if (f)
            fclose(f);
    }
    closedir(d);
    return found;
}

/* No .timeout (test_server says why: Criterion leaks with one under ASan); every wait is bounded. */
TestSuite(kill, .init = setup);

Test(kill, every_acknowledged_handover_survives_a_sigkill_exactly_once)
{
    int64_t t0 = now_ms();
    cg_gateway gw = start_gateway(1);
    attest_agreements();
    int64_t t_started = now_ms();
    pthread_t t[THREADS];
    send_until_acknowledged(t);
    stop_gateway(&gw, SIGKILL);
    int acked_at_kill = atomic_load(&acknowledged);
    atomic_store(&killed, true);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    int64_t t_killed = now_ms();
    int acked = atomic_load(&acknowledged), sent = atomic_load(&next_index);
    cr_assert_geq(acked, KILL_AFTER, "the gateway was killed before %d handovers were acknowledged", KILL_AFTER);
    cr_assert_lt(acked, TOTAL, "everything was acknowledged before the kill: the test proves nothing");

    gw = start_gateway(2);
    reclaim_line reclaim = reclaim_at_start(2);
    cr_expect(reclaim.ran && !reclaim.failed,
              "the start after the kill checks the document log and frees the records no row names (server-2.log)");
    long long reclaimed = reclaim.freed;
    cg_client c;
    static int tasks[TOTAL], bundles[TOTAL];
    count_handovers(&c, tasks, bundles);
    int committed_unanswered = 0, stored_documents = 0;
    for (int i = 0; i < TOTAL; i++) {
        int seen = atomic_load(&answered[i]);
        bool ok = seen == 200 || seen == 201;
        cr_expect(!ok || (tasks[i] == 1 && bundles[i] == 1),
                  "handover %d was acknowledged (%d): %d Tasks, %d documents", i, seen, tasks[i], bundles[i]);
        cr_expect(tasks[i] <= 1 && bundles[i] <= 1 && tasks[i] == bundles[i],
                  "handover %d: %d Tasks, %d documents (one transaction: both or neither)", i, tasks[i], bundles[i]);
        committed_unanswered += !ok && tasks[i];
        stored_documents += bundles[i];
    }
    cr_expect_eq(reclaim.documents, stored_documents, "the reclaim kept the records of the %d stored documents",
                 stored_documents);
    run_threads(receiver, READERS);
    cr_expect_eq(atomic_load(&unreadable), 0, "the receiver reads every acknowledged handover's document");

    /* the senders try again with everything they had no answer to, on as many connections as before */
    memcpy(committed, tasks, sizeof committed);
    run_threads(resender, THREADS);
    int resubmitted = atomic_load(&resent);
    cr_expect_eq(atomic_load(&resent_wrong), 0,
                 "every resubmission answers 201, or 200 when the first had committed without an answer");
    count_all(&c, "Task", tasks, NULL);
    count_all(&c, "Bundle", bundles, NULL);
    for (int i = 0; i < TOTAL; i++)
        cr_expect(tasks[i] == 1 && bundles[i] == 1, "handover %d: %d Tasks, %d documents after resubmission", i,
                  tasks[i], bundles[i]);
    /* an operator tells the threads apart (top -H, ps -L) */
    const char *roles[] = {"store-commit", "store-sync", "store-ckpt", "doclog-sync", "http-0", "relay-0", "purge"};
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        cr_expect(thread_named(gw.pid, roles[i]), "the gateway has a thread named %s", roles[i]);
    /* the store's own counters reach /metrics on the operations port (the FHIR port + 1) */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", port + 1);
    cr_expect_eq(cg_request(&c, "GET", url, NULL, 0), 200);
    cr_expect_gt(metric_value(c.body, "fhirgw_store_document_log_syncs_total"), 0, "the documents went to the log");
    cr_expect_gt(metric_value(c.body, "fhirgw_store_document_log_bytes"), 1000 * 4096.0,
                 "a record of 4 KiB blocks or more for each handover");
    cr_expect_eq(metric_value(c.body, "fhirgw_store_document_log_reclaimed_bytes"), (double)reclaimed,
                 "what the start freed, as its log line says");
    cr_expect_gt(metric_value(c.body, "fhirgw_store_read_cache_hits_total"), 0,
                 "the receivers' directory entries were read from memory");
    cg_client_close(&c);
    stop_gateway(&gw, SIGTERM);
    fprintf(stderr,
            "kill test figures: %d of %d submitted handovers acknowledged when SIGKILL came (%d at the signal), %d "
            "committed without an answer, %d resubmitted; the restart checked the log against %lld documents in %lld "
            "ms and freed %lld bytes no row named; start %.1f s, submissions %.1f s, whole test %.1f s\n",
            acked, sent < TOTAL ? sent : TOTAL, acked_at_kill, committed_unanswered, resubmitted, reclaim.documents,
            reclaim.ms, reclaimed, (double)(t_started - t0) / 1000, (double)(t_killed - t_started) / 1000,
            (double)(now_ms() - t0) / 1000);
    teardown();
}

/* `fhirgw ARGS` with its output appended to DIR/commands.log; its exit status (-1: it did not run or exit; 124:
 * still running after 2 minutes, and stopped). */
static int run_fhirgw(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' %s >>'%s/commands.log' 2>&1", FHIRGW_BIN, args, dir);
    int status = system(cmd);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whether DIR/commands.log (run_fhirgw's output) holds text. */
static bool commands_log_has(const char *text)
{
    char path[128], buf[65536];
    snprintf(path, sizeof path, "%s/commands.log", dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

Test(kill, a_backup_taken_under_load_restores_every_handover_acknowledged_before_it)
{
    cg_gateway gw = start_gateway(1);
    attest_agreements();
    char args[512];
    snprintf(args, sizeof args, "serve --dev '%s/dev' --port %u", dir, port + 2);
    cr_expect_neq(run_fhirgw(args), 0, "a second gateway on the same folder is refused (see commands.log)");
    cr_expect(commands_log_has("in use by another gateway"), "the second gateway says why it stopped");
    pthread_t t[THREADS];
    send_until_acknowledged(t);
    static bool before[TOTAL]; /* acknowledged when the backup began */
    int acked_before = 0;
    for (int i = 0; i < TOTAL; i++) {
        int seen = atomic_load(&answered[i]);
        before[i] = seen == 200 || seen == 201;
        acked_before += before[i];
    }
    snprintf(args, sizeof args, "backup --dev '%s/dev' --to '%s/backup'", dir, dir);
    int64_t t_backup = now_ms();
    cr_assert_eq(run_fhirgw(args), 0, "fhirgw backup under load (see commands.log)");
    t_backup = now_ms() - t_backup;
    int acked_after = atomic_load(&acknowledged);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_lt(acked_before, TOTAL, "everything was acknowledged before the backup: the test proves nothing");
    cr_expect_eq(run_fhirgw(args), 2, "a second backup into the same folder is refused");
    char checkpoints[160];
    snprintf(checkpoints, sizeof checkpoints, "%s/backup/audit-checkpoints", dir);
    struct stat st;
    cr_expect(stat(checkpoints, &st) == 0 && st.st_size > 0, "the backup holds the audit checkpoints made before it");
    snprintf(args, sizeof args, "restore --dev '%s/dev' --from '%s/backup'", dir, dir);
    cr_expect_eq(run_fhirgw(args), 2, "no restore under a serving gateway");
    stop_gateway(&gw, SIGTERM);

    /* the restore in place, as an operator makes it: the gateway stopped, the backup put back, its trail verified */
    cr_assert_eq(run_fhirgw(args), 0, "fhirgw restore, and audit verify of what it restored (see commands.log)");
    char kept[160];
    snprintf(kept, sizeof kept, "%s/dev/fhirgw.db.before-restore-*/fhirgw.db", dir);
    char probe[300];
    snprintf(probe, sizeof probe, "ls %s >/dev/null 2>&1", kept);
    cr_expect_eq(system(probe), 0, "the replaced database is kept, not deleted");

    gw = start_gateway(2);
    reclaim_line reclaim = reclaim_at_start(2);
    cr_expect(reclaim.ran && !reclaim.failed,
              "the first start after the restore checks the log and frees the records no row names (server-2.log)");
    long long reclaimed = reclaim.freed;
    cg_client c;
    static int tasks[TOTAL], bundles[TOTAL];
    count_handovers(&c, tasks, bundles);
    int restored = 0;
    for (int i = 0; i < TOTAL; i++) {
        cr_expect(!before[i] || (tasks[i] == 1 && bundles[i] == 1),
                  "handover %d was acknowledged before the backup: %d Tasks, %d documents in it", i, tasks[i],
                  bundles[i]);
        cr_expect(tasks[i] <= 1 && tasks[i] == bundles[i], "handover %d: %d Tasks, %d documents", i, tasks[i],
                  bundles[i]);
        restored += tasks[i];
        /* the receiver below reads those acknowledged before the backup, which must all be there */
        if (!before[i])
            atomic_store(&answered[i], 0);
    }
    cr_expect_eq(reclaim.documents, restored, "the reclaim kept the records of the %d restored documents", restored);
    run_threads(receiver, READERS);
    cr_expect_eq(atomic_load(&unreadable), 0, "the receiver reads every document of the restored store");
    cg_client_close(&c);
    stop_gateway(&gw, SIGTERM);
    fprintf(stderr,
            "backup test figures: %d handovers acknowledged when the backup began, %d when it ended (%.2f s), %d in "
            "the store restored from it; %lld bytes of its log that no row named freed at the start\n",
            acked_before, acked_after, (double)t_backup / 1000, restored, reclaimed);
    teardown();
}
