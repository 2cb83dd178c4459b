/*
 * bench/handover.c — durable $handover acceptances per second and the time
 * from acceptance to the receiver's notification, end to end, beside the
 * store's raw durable commit rate in the same run (issue #13 part 9; target:
 * 2,000 handovers/s on 2 cores, p99 acceptance-to-notification under 50 ms
 * with the receivers up).
 *
 *   bench-handover [--seconds N] [--senders N] [--receivers N] [--kb N] [--raw-seconds N]
 *                  [--set NAME=VALUE]... [--source DIR] [--fhirgw PATH] [--keep]
 *
 * Defaults: 10 s of load, 64 sender connections, 2 receivers (elv-a, elv-b; up to
 * 4: then gzsp and gp too), documents of about 50 KB, 5 s of the raw phase;
 * the source folder and fhirgw are the ones this binary was built with.
 * --set adds a line "NAME VALUE" to the gateway's config (a setting to
 * compare, e.g. --set worker_nice=0), up to 8 of them.
 *
 * 1. Raw store phase: the store (gateway/store/store.h, SQLite, synchronous
 *    FULL, the gateway's defaults) in the run's folder; 64 threads each
 *    committing, and waiting for, one transaction at a time of what a
 *    handover writes at the least: the ~50 KB document as a Bundle and a
 *    ~1 KB Task. Transactions per second is the ceiling the gateway works
 *    under (no HTTP, TLS, validation, sealing or audit).
 * 2. A test PKI (certs/make-test-pki) and the real gateway, `fhirgw serve
 *    --dev DIR` on a loopback port as a child process (rate limit and access
 *    log off), plus a receiver: an HTTPS server of this process
 *    (gateway/http's, mutual TLS with the PKI's server certificate) that
 *    notes, per Task named as a notification's focus, when it arrived.
 * 3. Each receiver attests its ELV-HANDOVER agreements (ELV only), registers
 *    an Endpoint pointing at the receiver and names it on its directory entry.
 * 4. SENDERS keep-alive TLS connections (hospital-a and hospital-b
 *    alternately), all driven by one thread (bench/tls_loop.h: a client
 *    thread per connection cost this 2-core machine about a fifth of its
 *    CPU, taken from the gateway it measures), post distinct handovers (the guide's example
 *    document with a fresh identifier, its medication and care-needs
 *    narrative grown to the size asked) for the duration, round-robin over
 *    the receivers; the time a 201 arrives is noted with the Task's id.
 * 5. After the senders stop, up to 30 s for the last notifications. Then the
 *    figures: handovers/s, the POST's own latency, acceptance-to-notification
 *    p50/p99/max (negative when the notification beat the 201 to the
 *    client: both are measured on this process's clock), errors, lost and
 *    duplicate notifications, CPU seconds of the gateway and of this
 *    process, the gateway's CPU per handover by thread role (http workers,
 *    store-commit, store-ckpt, relay, ...: where the two cores went), how
 *    the cores were shared (the gateway, this process, idle) and the rate
 *    the gateway's CPU alone would allow on them (an upper bound: here the
 *    senders take their share of the same cores), and the ratio to the raw
 *    commit rate. Beside them, the machine's speed before and after the
 *    load (one core parsing the request with json-c, per CPU second): a
 *    core of this shared machine is at times 40% slower for the same work,
 *    and the line says whether a run began or ended in such a phase.
 *
 * Everything (folder, gateway) is removed or stopped at exit unless --keep.
 * Memory: the tables are allocated once in main and freed at exit; the
 * senders' bodies are per thread.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/http/server.h"
#include "gateway/store/store.h"
#include "tests/child_gateway.h"
#include "tests/handover_body.h"
#include "bench/tls_loop.h"

#define IDENT_FORMAT "b3c0%04x-0000-4000-8000-%012llx" /* sender thread, sequence */
#define IDENT_LEN 36
#define TABLE_BITS 20 /* room for a million handovers in one run */
#define MAX_RECEIVERS 4
#define DRAIN_SECONDS 30

static const struct party {
    const char *who, *ura;
    bool elv;
} receivers[MAX_RECEIVERS] = {{"elv-a", "90000301", true},
                              {"elv-b", "90000302", true},
                              {"gzsp", "90000401", false},
                              {"gp", "90000201", false}};
static const char *const senders_who[] = {"hospital-a", "hospital-b"};

#define MAX_SETTINGS 8

static struct {
    int seconds, senders, receivers, kb, raw_seconds;
    const char *source, *fhirgw;
    bool keep;
    const char *settings[MAX_SETTINGS]; /* NAME=VALUE: extra lines of the gateway's config */
    int setting_count;
} opt = {10, 64, 2, 50, 5, SOURCE_DIR, FHIRGW_BIN, false, {0}, 0};

static char dir[256];
static cg_gateway gateway = {.pid = -1};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cleanup(void)
{
    cg_stop(&gateway, SIGTERM, NULL, NULL, 0);
    if (*dir && !opt.keep) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench-handover: could not remove %s\n", dir);
    }
}

static void die(const char *what)
{
    fprintf(stderr, "bench-handover: %s (gateway log: %s/gateway.log)\n", what, dir);
    opt.keep = true;
    cleanup();
    exit(1);
}

/* ---- per handover: when the 201 arrived, when its notification did (one table, by Task id) ---- */

typedef struct mark {
    char task[ST_ID_MAX + 1];  /* "" = free slot */
    double accepted, notified; /* 0 = not yet */
    unsigned notifications;    /* more than 1: a duplicate */
} mark;

static mark *table;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The slot of the Task (made when new); NULL when the table is full. Under table_lock. */
static mark *slot_of(const char *task, size_t len)
{
    size_t mask = ((size_t)1 << TABLE_BITS) - 1;
    if (len > ST_ID_MAX)
        return NULL;
    for (size_t i = hash(task, len) & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
        if (!table[i].task[0]) {
            memcpy(table[i].task, task, len);
            table[i].task[len] = 0;
            return &table[i];
        }
        if (strlen(table[i].task) == len && !memcmp(table[i].task, task, len))
            return &table[i];
    }
    return NULL;
}

static void note(const char *task, size_t len, bool accepted, double t)
{
    pthread_mutex_lock(&table_lock);
    mark *m = slot_of(task, len);
    if (m && accepted)
        m->accepted = t;
    else if (m && !m->notifications++)
        m->notified = t;
    pthread_mutex_unlock(&table_lock);
}

/* ---- the receiver: an HTTPS endpoint noting each focus it is told about ---- */

static atomic_uint_fast64_t posts_received, focus_seen;

#define FOCUS_MARK "\"name\":\"focus\",\"valueReference\":{\"reference\":\""

static void receive(srv_request *req, void *arg)
{
    (void)arg;
    double t = now_s();
    size_t len = 0;
    const char *body = (const char *)srv_req_body(req, &len);
    atomic_fetch_add(&posts_received, 1);
    /* every event of the Bundle names its focus as <base>/Task/<id> */
    for (const char *at = body ? strstr(body, FOCUS_MARK) : NULL; at; at = strstr(at, FOCUS_MARK)) {
        at += strlen(FOCUS_MARK);
        const char *end = strchr(at, '"'), *task = end ? memmem(at, (size_t)(end - at), "/Task/", 6) : NULL;
        if (!task)
            continue;
        task += 6;
        note(task, (size_t)(end - task), false, t);
        atomic_fetch_add(&focus_seen, 1);
    }
    srv_respond_static(req, 200, "", 0);
}

static srv_server *start_receiver(char *err, size_t errlen)
{
    char cert[512], key[512], ca[512];
    snprintf(cert, sizeof cert, "%s/dev/server.crt", dir);
    snprintf(key, sizeof key, "%s/dev/server.key", dir);
    snprintf(ca, sizeof ca, "%s/dev/ca-bundle.pem", dir);
    srv_config cfg;
    srv_config_defaults(&cfg);
    cfg.address = "127.0.0.1";
    cfg.port = 0;
    cfg.workers = 1;
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.ca_file = ca;
    cfg.crl_file = NULL;
    cfg.ops_enabled = false;
    cfg.handler = receive;
    srv_server *s = srv_new(&cfg, err, errlen);
    if (s && !srv_start(s, err, errlen)) {
        srv_free(s);
        s = NULL;
    }
    return s;
}

/* ---- HTTPS as an organisation of the test PKI (tests/child_gateway.h) ---- */

/* A keep-alive client as `who`; exits when it cannot be made. */
static void client_open(cg_client *c, const char *who)
{
    char dev[512], err[256] = "cannot add a header";
    snprintf(dev, sizeof dev, "%s/dev", dir);
    if (!cg_client_open(c, dev, who, gateway.port, 60, err, sizeof err) ||
        !cg_client_header(c, "Expect:")) /* no 100-continue round trip before the body */
        die(err);
}

/* ---- the gateway ---- */

static void make_pki(void)
{
    char script[512], dev[512], err[256];
    snprintf(script, sizeof script, "%s/certs/make-test-pki", opt.source);
    snprintf(dev, sizeof dev, "%s/dev", dir);
    if (!cg_make_pki(script, dev, err, sizeof err))
        die(err);
}

static void start_gateway(void)
{
    char cfg[512], log[512], dev[512], err[8192];
    snprintf(cfg, sizeof cfg, "%s/fhirgw.conf", dir);
    snprintf(log, sizeof log, "%s/gateway.log", dir);
    snprintf(dev, sizeof dev, "%s/dev", dir);
    FILE *f = fopen(cfg, "w");
    if (!f)
        die("cannot write the gateway's config");
    /* the senders are two organisations sending as fast as they can: no rate limit; no access log */
    fputs("rate_limit_per_second 0\naccess_log\n", f);
    for (int i = 0; i < opt.setting_count; i++) {
        const char *eq = strchr(opt.settings[i], '=');
        fprintf(f, "%.*s %s\n", (int)(eq - opt.settings[i]), opt.settings[i], eq + 1);
    }
    fclose(f);
    cg_options o = {.fhirgw = opt.fhirgw,
                    .dev_dir = dev,
                    .port = 10000u + (unsigned)getpid() % 20000u, /* below the ephemeral range, as the tests */
                    .config = cfg,
                    .log = log,
                    .ready_as = "hospital-a",
                    .wait_ms = 60000};
    if (!cg_start(&gateway, &o, err, sizeof err))
        die(err);
}

static double own_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- the receivers' registration ---- */

static char *create_endpoint(cg_client *c, unsigned receiver_port, const char *ura)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Endpoint\",\"status\":\"active\",\"connectionType\":{\"system\":"
             "\"http://terminology.hl7.org/CodeSystem/endpoint-connection-type\",\"code\":\"hl7-fhir-rest\"},"
             "\"payloadType\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/"
             "endpoint-payload-type\",\"code\":\"any\"}]}],\"address\":\"https://127.0.0.1:%u/fhir/notify/%s\"}",
             receiver_port, ura);
    if (cg_request(c, "POST", "/Endpoint", body, strlen(body)) != 201)
        return NULL;
    json_object *o = json_tokener_parse(c->body);
    const char *id = json_object_get_string(json_object_object_get(o, "id"));
    char *ref = NULL;
    if (id && asprintf(&ref, "Endpoint/%s", id) < 0)
        ref = NULL;
    json_object_put(o);
    return ref;
}

/* The receiver's Endpoint, and (ELV) its agreements, on its directory entry. */
static void register_receiver(const struct party *r, unsigned receiver_port)
{
    cg_client c;
    client_open(&c, r->who);
    char *endpoint = create_endpoint(&c, receiver_port, r->ura), path[64];
    snprintf(path, sizeof path, "/Organization/ura-%s", r->ura);
    if (!endpoint || cg_request(&c, "GET", path, NULL, 0) != 200)
        die("a receiver's Endpoint or directory entry failed");
    char *entry = r->elv ? hb_with_agreements(c.body, "2099-12-31") : strdup(c.body);
    json_object *o = entry ? json_tokener_parse(entry) : NULL;
    free(entry);
    if (!o)
        die("a receiver's directory entry is not JSON");
    json_object_object_del(o, "meta");
    json_object *refs = json_object_new_array(), *ref = json_object_new_object();
    json_object_object_add(ref, "reference", json_object_new_string(endpoint));
    json_object_array_add(refs, ref);
    json_object_object_add(o, "endpoint", refs);
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    long status = cg_request(&c, "PUT", path, text, strlen(text));
    if (status != 200) {
        fprintf(stderr, "PUT %s: %ld %s\n", path, status, c.body ? c.body : "");
        die("a receiver's directory entry was refused");
    }
    json_object_put(o);
    free(endpoint);
    cg_client_close(&c);
}

/* ---- the documents ---- */

/* Lines of a medication list and care needs, as a discharge letter has them: valid narrative that adds bulk. */
static void grow_narrative(json_object *section, const char *kind, size_t bytes)
{
    json_object *text = json_object_object_get(section, "text");
    const char *div = json_object_get_string(json_object_object_get(text, "div"));
    const char *close = div ? strstr(div, "</div>") : NULL;
    if (!close)
        return;
    size_t cap = strlen(div) + bytes + 1024, len = (size_t)(close - div);
    char *grown = malloc(cap);
    memcpy(grown, div, len);
    len += (size_t)snprintf(grown + len, cap - len, "<table><tbody>");
    for (unsigned i = 1; len + 300 < cap - 64 && len < bytes; i++)
        len += (size_t)snprintf(grown + len, cap - len,
                                !strcmp(kind, "medication")
                                    ? "<tr><td>%u</td><td>Metoprolol 50 mg tablet</td><td>1x daags 1 stuk, "
                                      "oraal</td><td>sinds 2024-03-1%u, doorgaan na ontslag</td></tr>"
                                    : "<tr><td>%u</td><td>Hulp bij wassen en aankleden</td><td>ochtend en avond, "
                                      "1 persoon; valrisico (score %u)</td></tr>",
                                i, i % 10);
    snprintf(grown + len, cap - len, "</tbody></table></div>");
    json_object_object_add(text, "div", json_object_new_string(grown));
    free(grown);
}

/* The Parameters of a handover of about kb KB to receiver ura, identifier IDENT (to be overwritten in place). */
static char *parameters_template(const char *ident, const char *ura, size_t kb, size_t *ident_at)
{
    size_t size = (kb + 64) * 1024;
    char *doc = malloc(size), *out = NULL;
    hb_document(doc, size, ident, "http://snomed.info/sct", "371535009");
    json_object *o = doc[0] ? json_tokener_parse(doc) : NULL;
    free(doc);
    if (!o)
        return NULL;
    json_object *sections =
        json_object_object_get(json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0),
                                                      "resource"),
                               "section");
    size_t base = strlen(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    size_t want = kb * 1024 > base ? kb * 1024 - base : 0;
    for (size_t i = 0; i < json_object_array_length(sections); i++) {
        json_object *s = json_object_array_get_idx(sections, i);
        const char *title = json_object_get_string(json_object_object_get(s, "title"));
        if (title && !strcmp(title, "Medicatie"))
            grow_narrative(s, "medication", want / 2);
        else if (title && !strcmp(title, "Zorgbehoefte"))
            grow_narrative(s, "care", want / 2);
    }
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (asprintf(&out,
                 "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"document\",\"resource\":%s},"
                 "{\"name\":\"receiver\",\"valueReference\":{\"identifier\":{\"system\":\"" HB_URA_SYSTEM
                 "\",\"value\":\"%s\"}}}]}",
                 text, ura) < 0)
        out = NULL;
    json_object_put(o);
    const char *at = out ? strstr(out, ident) : NULL;
    *ident_at = at ? (size_t)(at - out) : 0;
    if (out && !at) {
        free(out);
        out = NULL;
    }
    return out;
}

/* ---- the senders: keep-alive TLS connections on one thread (bench/tls_loop.h) ---- */

static atomic_uint_fast64_t accepted, answered_200, refused, failed;
static double *post_latency; /* per accepted handover: POST to 201, seconds */
static atomic_size_t post_latency_count;
static size_t post_latency_cap;

static char *templates[MAX_RECEIVERS];
static size_t template_len[MAX_RECEIVERS], template_ident_at[MAX_RECEIVERS];

/* One sender: a connection's requests, one per receiver (head and Parameters), and where each names its
 * document's identifier, rewritten per handover. */
typedef struct sender {
    char *request[MAX_RECEIVERS];
    size_t request_len[MAX_RECEIVERS], ident_at[MAX_RECEIVERS];
    unsigned long long seq;
} sender;

static sender *senders;

static char *make_request(int r, size_t *len, size_t *ident_at)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /$handover HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                     "Accept: application/fhir+json\r\nContent-Length: %zu\r\n\r\n",
                     template_len[r]);
    char *req = malloc((size_t)n + template_len[r]);
    if (!req)
        die("out of memory");
    memcpy(req, head, (size_t)n);
    memcpy(req + n, templates[r], template_len[r]);
    *len = (size_t)n + template_len[r];
    *ident_at = (size_t)n + template_ident_at[r];
    return req;
}

/* The next handover of a sender: round-robin over the receivers, a fresh identifier. */
static bool next_handover(void *arg, tl_client *c, const char **request, size_t *len)
{
    (void)arg;
    sender *s = &senders[c->index];
    int r = (int)((s->seq + c->index) % (unsigned)opt.receivers);
    char ident[IDENT_LEN + 1];
    snprintf(ident, sizeof ident, IDENT_FORMAT, c->index, s->seq++);
    memcpy(s->request[r] + s->ident_at[r], ident, IDENT_LEN);
    *request = s->request[r], *len = s->request_len[r];
    return true;
}

/* The Task's id in a 201's body: the server writes "resourceType" and then "id" first. */
static const char *task_id(const char *body, size_t len, size_t *id_len)
{
    const char *at = len > 64 ? memmem(body, len < 200 ? len : 200, "\"id\":\"", 6) : NULL;
    const char *end = at ? memchr(at + 6, '"', len - (size_t)(at + 6 - body)) : NULL;
    *id_len = end ? (size_t)(end - at - 6) : 0;
    return end ? at + 6 : NULL;
}

static void handover_answered(void *arg, tl_client *c, int status, const char *body, size_t body_len, uint64_t us)
{
    (void)arg, (void)c;
    double t = now_s();
    size_t id_len = 0;
    const char *task = status == 201 ? task_id(body, body_len, &id_len) : NULL;
    if (task && id_len <= ST_ID_MAX) {
        atomic_fetch_add(&accepted, 1);
        note(task, id_len, true, t);
        size_t i = atomic_fetch_add(&post_latency_count, 1);
        if (i < post_latency_cap)
            post_latency[i] = (double)us / 1e6;
        return;
    }
    if (status == 200) {
        atomic_fetch_add(&answered_200, 1);
        return;
    }
    if (atomic_fetch_add(&refused, 1) < 3) /* a 201 without a Task's id counts here too */
        fprintf(stderr, "bench-handover: $handover answered %d: %.*s\n", status, (int)(body_len < 500 ? body_len : 500),
                body_len ? body : "");
}

/* Opens the senders' connections (hospital-a and hospital-b alternately), sends for the duration, closes. */
static void run_senders(void)
{
    SSL_CTX *ctx[2];
    char err[256];
    for (int i = 0; i < 2; i++) {
        char cert[512], key[512], ca[512];
        snprintf(cert, sizeof cert, "%s/dev/clients/%s.crt", dir, senders_who[i]);
        snprintf(key, sizeof key, "%s/dev/clients/%s.key", dir, senders_who[i]);
        snprintf(ca, sizeof ca, "%s/dev/ca.pem", dir);
        if (!(ctx[i] = tl_context(cert, key, ca, false, err, sizeof err)))
            die(err);
    }
    tl_client *clients = calloc((size_t)opt.senders, sizeof *clients);
    senders = calloc((size_t)opt.senders, sizeof *senders);
    if (!clients || !senders)
        die("out of memory");
    for (int i = 0; i < opt.senders; i++) {
        clients[i].index = (unsigned)i;
        if (!tl_open(&clients[i], ctx[i % 2], "127.0.0.1", gateway.port))
            die("cannot connect a sender to the gateway");
        for (int r = 0; r < opt.receivers; r++)
            senders[i].request[r] = make_request(r, &senders[i].request_len[r], &senders[i].ident_at[r]);
    }
    tl_handlers h = {next_handover, handover_answered, NULL};
    atomic_fetch_add(&failed, tl_run(clients, (unsigned)opt.senders, &h, tl_now() + opt.seconds, NULL));
    for (int i = 0; i < opt.senders; i++) {
        tl_close(&clients[i]);
        for (int r = 0; r < opt.receivers; r++)
            free(senders[i].request[r]);
    }
    free(clients);
    free(senders);
    SSL_CTX_free(ctx[0]);
    SSL_CTX_free(ctx[1]);
}

/* ---- the raw store phase ---- */

static st_store *raw_store;
static atomic_bool raw_stop;
static atomic_uint_fast64_t raw_done, raw_ids;
static const char *raw_document;
static size_t raw_document_len;

static const char RAW_TASK[] =
    "{\"resourceType\":\"Task\",\"identifier\":[{\"system\":\"urn:ietf:rfc:3986\",\"value\":\"urn:uuid:b3c00000-"
    "0000-4000-8000-000000000000\"}],\"instantiatesCanonical\":\"https://fhirgw.nl/fhir/OperationDefinition/"
    "handover\",\"status\":\"in-progress\",\"intent\":\"order\",\"code\":{\"coding\":[{\"system\":\"http://"
    "snomed.info/sct\",\"code\":\"308292007\",\"display\":\"Transfer of care\"}]},\"authoredOn\":\"2026-01-05T10:"
    "00:00.000Z\",\"requester\":{\"type\":\"Organization\",\"identifier\":{\"system\":\"http://fhir.nl/fhir/"
    "NamingSystem/ura\",\"value\":\"90000101\"}},\"owner\":{\"reference\":\"Organization/ura-90000301\"},\"input\":"
    "[{\"type\":{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"371535009\",\"display\":\"Transfer "
    "of care summary\"}]},\"valueReference\":{\"reference\":\"Bundle/raw\"}}]}";

static void *raw_writer(void *arg)
{
    (void)arg;
    while (!atomic_load(&raw_stop)) {
        char doc_id[32], task_id[32];
        unsigned long long n = atomic_fetch_add(&raw_ids, 1);
        snprintf(doc_id, sizeof doc_id, "d%llu", n);
        snprintf(task_id, sizeof task_id, "t%llu", n);
        const char *tags[] = {"90000101"};
        st_op ops[2] = {{.kind = ST_OP_CREATE,
                         .type = "Bundle",
                         .id = doc_id,
                         .owner = "90000101",
                         .json = raw_document,
                         .json_len = raw_document_len,
                         .meta_at = 1,
                         .access_tags = tags,
                         .access_tag_count = 1},
                        {.kind = ST_OP_CREATE,
                         .type = "Task",
                         .id = task_id,
                         .owner = "90000101",
                         .json = RAW_TASK,
                         .json_len = sizeof RAW_TASK - 1,
                         .meta_at = 1,
                         .access_tags = tags,
                         .access_tag_count = 1}};
        st_op_result results[2];
        if (st_submit_wait(raw_store, ops, 2, results) != ST_OK) {
            fprintf(stderr, "bench-handover: raw write failed: %s %s\n", st_status_name(results[0].status),
                    results[0].message);
            exit(1);
        }
        atomic_fetch_add(&raw_done, 1);
    }
    return NULL;
}

typedef struct raw_result {
    double per_second, per_commit, commit_ms;
} raw_result;

static raw_result raw_phase(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/raw.db", dir);
    st_config config = {.path = path};
    st_error err;
    raw_store = st_open(&config, &err);
    if (!raw_store)
        die(err.message);
    pthread_t t[64];
    double t0 = now_s();
    for (int i = 0; i < 64; i++)
        pthread_create(&t[i], NULL, raw_writer, NULL);
    sleep((unsigned)opt.raw_seconds);
    atomic_store(&raw_stop, true);
    for (int i = 0; i < 64; i++)
        pthread_join(t[i], NULL);
    double elapsed = now_s() - t0;
    st_counters c;
    st_counters_get(raw_store, &c);
    st_close(raw_store);
    raw_result r = {(double)atomic_load(&raw_done) / elapsed,
                    c.commits ? (double)c.transactions / (double)c.commits : 0,
                    c.commits ? (double)c.commit_us_total / (double)c.commits / 1000 : 0};
    return r;
}

/* ---- the figures ---- */

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (!n)
        return NAN;
    size_t i = (size_t)ceil(p * (double)n) - (p > 0);
    return sorted[i < n ? i : n - 1];
}

typedef struct outcome {
    size_t notified, unnotified, duplicates, early;
    double p50, p99, max;
} outcome;

static outcome acceptance_to_notification(void)
{
    outcome o = {0};
    size_t cap = (size_t)1 << TABLE_BITS;
    double *lat = malloc(cap * sizeof *lat);
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < cap; i++) {
        const mark *m = &table[i];
        if (!m->task[0] || !m->accepted) /* notified but no 201 seen: not a handover of this run's senders */
            continue;
        if (!m->notifications) {
            o.unnotified++;
            continue;
        }
        o.duplicates += m->notifications > 1;
        o.early += m->notified < m->accepted;
        lat[o.notified++] = (m->notified - m->accepted) * 1000;
    }
    pthread_mutex_unlock(&table_lock);
    qsort(lat, o.notified, sizeof *lat, by_value);
    o.p50 = percentile(lat, o.notified, 0.50);
    o.p99 = percentile(lat, o.notified, 0.99);
    o.max = o.notified ? lat[o.notified - 1] : NAN;
    free(lat);
    return o;
}

static size_t notified_count(void)
{
    size_t n = 0, cap = (size_t)1 << TABLE_BITS;
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < cap; i++)
        n += table[i].task[0] && table[i].accepted && table[i].notifications;
    pthread_mutex_unlock(&table_lock);
    return n;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: bench-handover [--seconds N] [--senders N] [--receivers 1-4] [--kb N] [--raw-seconds N]\n"
                    "                      [--set NAME=VALUE]... [--source DIR] [--fhirgw PATH] [--keep]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--keep")) {
            opt.keep = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--seconds"))
            opt.seconds = atoi(v);
        else if (!strcmp(a, "--senders"))
            opt.senders = atoi(v);
        else if (!strcmp(a, "--receivers"))
            opt.receivers = atoi(v);
        else if (!strcmp(a, "--kb"))
            opt.kb = atoi(v);
        else if (!strcmp(a, "--raw-seconds"))
            opt.raw_seconds = atoi(v);
        else if (!strcmp(a, "--set") && strchr(v, '=') && opt.setting_count < MAX_SETTINGS)
            opt.settings[opt.setting_count++] = v;
        else if (!strcmp(a, "--source"))
            opt.source = v;
        else if (!strcmp(a, "--fhirgw"))
            opt.fhirgw = v;
        else
            usage();
    }
    if (opt.seconds < 1 || opt.senders < 1 || opt.receivers < 1 || opt.receivers > MAX_RECEIVERS || opt.kb < 1 ||
        opt.raw_seconds < 1)
        usage();
}

static void make_templates(void)
{
    char ident[IDENT_LEN + 1];
    snprintf(ident, sizeof ident, IDENT_FORMAT, 0u, 0ull);
    for (int r = 0; r < opt.receivers; r++) {
        templates[r] = parameters_template(ident, receivers[r].ura, (size_t)opt.kb, &template_ident_at[r]);
        if (!templates[r])
            die("cannot build the handover documents (ig/examples)");
        template_len[r] = strlen(templates[r]);
    }
    /* the raw phase stores the same document: the Parameters' resource */
    const char *start = strstr(templates[0], "\"resource\":") + strlen("\"resource\":");
    const char *end = strstr(templates[0], "},{\"name\":\"receiver\"");
    raw_document = start;
    raw_document_len = (size_t)(end - start);
}

/* The size of a file of the gateway's folder in MB (0: none). */
static double file_mb(const char *rel)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return stat(path, &st) == 0 ? (double)st.st_size / 1048576 : 0;
}

#define ROLES_MAX 16 /* thread roles of the gateway (gateway/util/thread_name.h) */

/* The gateway's CPU per handover by thread role during the load, largest first: where the two cores went. */
static void print_roles(const cg_role_cpu *before, size_t nb, cg_role_cpu *after, size_t na, uint64_t handovers)
{
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (!strcmp(after[i].role, before[j].role))
                after[i].seconds -= before[j].seconds;
    for (size_t i = 1; i < na; i++) /* largest first (a few entries: insertion sort) */
        for (size_t j = i; j > 0 && after[j].seconds > after[j - 1].seconds; j--) {
            cg_role_cpu t = after[j];
            after[j] = after[j - 1];
            after[j - 1] = t;
        }
    printf("gateway cpu per handover by thread:");
    for (size_t i = 0; i < na && handovers; i++)
        if (after[i].seconds * 1000 / (double)handovers >= 0.005)
            printf("%s %s %.3f ms", i ? "," : "", after[i].role, after[i].seconds * 1000 / (double)handovers);
    printf("\n");
}

/*
 * The machine's speed at the moment: how many times one core parses a handover's request (json-c) per second of
 * its own CPU time, over about 0.3 s. This machine's cores run at different speeds from one minute to the next
 * (shared hosts), and the gateway's rate follows them; taken before and after the load, it says which phase a
 * run met, and handovers/s per parse/s compares runs across phases.
 */
static double parses_per_cpu_second(void)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    unsigned n = 0;
    double spent = 0;
    do {
        for (int i = 0; i < 16; i++, n++)
            json_object_put(json_tokener_parse(templates[0]));
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        spent = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    } while (spent < 0.3);
    return n / spent;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/bench-handover.XXXXXX");
    if (!mkdtemp(dir)) {
        *dir = 0;
        die("cannot make a temporary folder");
    }
    signal(SIGPIPE, SIG_IGN);
    table = calloc((size_t)1 << TABLE_BITS, sizeof *table);
    post_latency_cap = (size_t)1 << TABLE_BITS;
    post_latency = malloc(post_latency_cap * sizeof *post_latency);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_templates();
    printf("bench-handover: %d senders, %d receiver(s), documents of %zu bytes (Parameters %zu), %d s of load, %ld "
           "cores\n",
           opt.senders, opt.receivers, raw_document_len, template_len[0], opt.seconds, sysconf(_SC_NPROCESSORS_ONLN));
    fflush(stdout);

    double speed_before = parses_per_cpu_second();
    raw_result raw = raw_phase();
    printf("raw store: %.0f durable transactions/s (document + Task, 64 threads), %.1f per commit, %.2f ms per "
           "commit\n",
           raw.per_second, raw.per_commit, raw.commit_ms);
    fflush(stdout);

    make_pki();
    char err[256];
    srv_server *receiver = start_receiver(err, sizeof err);
    if (!receiver)
        die(err);
    start_gateway();
    for (int r = 0; r < opt.receivers; r++)
        register_receiver(&receivers[r], srv_port(receiver));
    printf("gateway: pid %d, https://127.0.0.1:%u, folder %s\n", (int)gateway.pid, gateway.port, dir);
    fflush(stdout);

    cg_role_cpu roles0[ROLES_MAX], roles1[ROLES_MAX];
    size_t nroles0 = cg_role_cpu_seconds(&gateway, roles0, ROLES_MAX);
    double cpu_gw0 = cg_cpu_seconds(&gateway), cpu_own0 = own_cpu_s(), t0 = now_s();
    run_senders();
    double elapsed = now_s() - t0, cpu_gw = cg_cpu_seconds(&gateway) - cpu_gw0, cpu_own = own_cpu_s() - cpu_own0;
    size_t nroles1 = cg_role_cpu_seconds(&gateway, roles1, ROLES_MAX);
    uint64_t acc = atomic_load(&accepted);
    double wal_mb = file_mb("dev/fhirgw.db-wal"), db_mb = file_mb("dev/fhirgw.db"),
           log_mb = file_mb("dev/fhirgw.db-documents/segment-00000001");
    double drained = now_s();
    while (notified_count() < acc && now_s() - drained < DRAIN_SECONDS)
        usleep(10000);
    drained = now_s() - drained;
    outcome o = acceptance_to_notification();

    double rate = (double)acc / elapsed;
    size_t nl = atomic_load(&post_latency_count);
    nl = nl < post_latency_cap ? nl : post_latency_cap;
    qsort(post_latency, nl, sizeof *post_latency, by_value);
    printf("handovers: %llu accepted (201) in %.1f s = %.0f/s; POST to 201 p50 %.1f ms, p99 %.1f ms\n",
           (unsigned long long)acc, elapsed, rate, percentile(post_latency, nl, 0.5) * 1000,
           percentile(post_latency, nl, 0.99) * 1000);
    printf("errors: %llu other answers, %llu without an answer, %llu answered 200 (resubmission)\n",
           (unsigned long long)atomic_load(&refused), (unsigned long long)atomic_load(&failed),
           (unsigned long long)atomic_load(&answered_200));
    printf("acceptance -> notification: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%zu notified, %zu before the 201 "
           "arrived, %zu never within %d s after the load, %zu twice; %llu POSTs carried %llu events; %.1f s to "
           "drain)\n",
           o.p50, o.p99, o.max, o.notified, o.early, o.unnotified, DRAIN_SECONDS, o.duplicates,
           (unsigned long long)atomic_load(&posts_received), (unsigned long long)atomic_load(&focus_seen), drained);
    printf("cpu during the load: gateway %.1f s (%.0f%% of a core, %.2f ms per handover), this process %.1f s "
           "(%.0f%%)\n",
           cpu_gw, 100 * cpu_gw / elapsed, acc ? 1000 * cpu_gw / (double)acc : 0, cpu_own, 100 * cpu_own / elapsed);
    print_roles(roles0, nroles0, roles1, nroles1, atomic_load(&accepted));
    /* The senders share the gateway's cores here; in service they run elsewhere. What the gateway's own CPU
       would allow is an upper bound beside the measured rate, not a measurement of it. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double per_handover_s = acc ? cpu_gw / (double)acc : 0;
    printf("cores: the gateway %.0f%%, the senders and receivers %.0f%%, idle %.0f%% of %ld; its CPU alone bounds it "
           "at %.0f handovers/s on them (%ld cores / %.2f ms)\n",
           100 * cpu_gw / elapsed / (double)cores, 100 * cpu_own / elapsed / (double)cores,
           100 * (1 - (cpu_gw + cpu_own) / elapsed / (double)cores), cores,
           per_handover_s > 0 ? (double)cores / per_handover_s : 0, cores, 1000 * per_handover_s);
    printf("store files at the end of the load: WAL %.0f MB, database %.0f MB, document log %.0f MB (a WAL that "
           "grows from run to run is checkpoint work left for after the load)\n",
           wal_mb, db_mb, log_mb);
    double speed_after = parses_per_cpu_second();
    printf("machine: one core parses the request (json-c) %.0f times per CPU second before the load, %.0f after; "
           "handovers/s per 1000 parses/s: %.0f\n",
           speed_before, speed_after, 1000 * rate / ((speed_before + speed_after) / 2));
    printf("ratio: handovers/s / raw transactions/s = %.2f; targets: >= 2000 handovers/s (%s), p99 < 50 ms (%s)\n",
           raw.per_second > 0 ? rate / raw.per_second : 0, rate >= 2000 ? "met" : "missed",
           o.p99 < 50 ? "met" : "missed");

    cleanup();
    srv_stop(receiver);
    srv_wait(receiver);
    srv_free(receiver);
    for (int r = 0; r < opt.receivers; r++)
        free(templates[r]);
    free(table);
    free(post_latency);
    curl_global_cleanup();
    return 0;
}
