/*
 * tests/rest_harness.c — see rest_harness.h.
 */
#define _GNU_SOURCE /* strcasestr */
#include "tests/rest_harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "fhir/validate.h"
#include "gateway/relay/notify.h"
#include "gateway/rest/directory.h"
#include "gateway/util/conformance.h"
#include "tests/handover_body.h"
#include "tests/run_pki.h"

rh_fixture rh;

static atomic_size_t invalid_bodies;
static pthread_mutex_t first_invalid_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_invalid[1024];
static pthread_t test_thread;   /* the thread that runs the test (set up in rh_setup_with) */
static size_t invalid_reported; /* of invalid_bodies, how many a failed expectation already names */
static pf_registry *guide;      /* rh_guide's, for the test process */

/* ---- fixture ---- */

/* The test's own PKI in rh.dir/pki (a copy of the run's), and its organisations.tsv beside it. */
static void run_pki(void)
{
    char cmd[1024], pki[300];
    snprintf(pki, sizeof pki, "%s/pki", rh.dir);
    rp_copy(pki);
    if (rh.opt.keep_gzsp)
        snprintf(cmd, sizeof cmd, "cp '%s/organisations.tsv' '%s/organisations.tsv'", pki, rh.dir);
    else /* gzsp's certificate stays valid, but the gateway does not know it: 401 */
        snprintf(cmd, sizeof cmd, "grep -v '^gzsp' '%s/organisations.tsv' > '%s/organisations.tsv'", pki, rh.dir);
    cr_assert_eq(system(cmd), 0);
}

static pthread_mutex_t seal_failure_lock = PTHREAD_MUTEX_INITIALIZER;
static char seal_failure[512];

static void note_seal_failure(void *arg, const char *message)
{
    (void)arg;
    pthread_mutex_lock(&seal_failure_lock);
    snprintf(seal_failure, sizeof seal_failure, "%s", message);
    pthread_mutex_unlock(&seal_failure_lock);
}

void rh_last_seal_failure(char *out, size_t size)
{
    pthread_mutex_lock(&seal_failure_lock);
    snprintf(out, size, "%s", seal_failure);
    pthread_mutex_unlock(&seal_failure_lock);
}

void rh_start_server(void)
{
    static char path[512]; /* the store keeps the path it was opened with */
    char err[512];
    snprintf(path, sizeof path, "%s/organisations.tsv", rh.dir);
    rh.orgs = id_table_load(path, err, sizeof err);
    cr_assert_not_null(rh.orgs, "%s", err);
    /* the audit keys make-test-pki wrote (docs/audit.md); checkpoints beside the store */
    char keyfile[512], signkey[512];
    static char checkpoints[512];
    snprintf(keyfile, sizeof keyfile, "%s/pki/audit.key", rh.dir);
    snprintf(signkey, sizeof signkey, "%s/pki/audit-checkpoint.pem", rh.dir);
    snprintf(checkpoints, sizeof checkpoints, "%s/audit-checkpoints", rh.dir);
    if (!rh.audit_keys)
        rh.audit_keys = au_keyring_load(keyfile, err, sizeof err);
    cr_assert_not_null(rh.audit_keys, "%s", err);
    if (!rh.audit_signer)
        rh.audit_signer = au_signer_load(signkey, err, sizeof err);
    cr_assert_not_null(rh.audit_signer, "%s", err);
    snprintf(keyfile, sizeof keyfile, "%s/pki/seal.key", rh.dir); /* read at each start: tests rotate it */
    rh.seal_keys = sl_keyring_load(keyfile, err, sizeof err);
    cr_assert_not_null(rh.seal_keys, "%s", err);
    snprintf(path, sizeof path, "%s/store.db", rh.dir);
    st_config sc = {0};
    sc.path = path;
    sc.audit_keys = rh.audit_keys;
    sc.audit_signer = rh.audit_signer;
    sc.audit_checkpoint_path = checkpoints;
    sc.audit_checkpoint_entries = rh.opt.audit_checkpoint_entries;
    sc.seal_keys = rh.seal_keys;
    sc.on_seal_failure = note_seal_failure;
    sc.clock = rh.opt.clock_ms;
    sc.clock_arg = rh.opt.clock_arg;
    st_error serr;
    rh.store = st_open(&sc, &serr);
    cr_assert_not_null(rh.store, "%s", serr.message);
    rest_options ro = {0};
    ro.store = rh.store;
    ro.organisations = rh.orgs;
    ro.base_url = "https://127.0.0.1";
    ro.page_size_default = 10;
    ro.page_size_max = 50;
    ro.page_max_bytes = rh.opt.page_max_bytes;
    ro.rate_per_second = rh.opt.rate;
    ro.rate_burst = rh.opt.burst > 0 ? rh.opt.burst : rh.opt.rate;
    ro.allow_dangling_references = rh.opt.allow_dangling;
    ro.profiles = rh.opt.profiles;
    ro.maps_dir = rh.opt.maps_dir;
    ro.pseudonym_key = rh.opt.pseudonym_key;
    ro.audit_keys = rh.audit_keys;
    ro.rules = rh.opt.rules;
    ro.outbound = rh.opt.outbound;
    ro.clock_ms = rh.opt.clock_ms;
    ro.clock_arg = rh.opt.clock_arg;
    ro.handover_retention_days = rh.opt.handover_retention_days;
    ro.purge_interval_ms = rh.opt.purge_interval_ms;
    rh.app = rest_app_new(&ro, err, sizeof err);
    cr_assert_not_null(rh.app, "%s", err);
    srv_config cfg;
    srv_config_defaults(&cfg);
    char cert[512], key[512], ca[512], crl[512];
    snprintf(cert, sizeof cert, "%s/pki/server.crt", rh.dir);
    snprintf(key, sizeof key, "%s/pki/server.key", rh.dir);
    snprintf(ca, sizeof ca, "%s/pki/ca-bundle.pem", rh.dir);
    snprintf(crl, sizeof crl, "%s/pki/crl.pem", rh.dir);
    cfg.port = 0;
    cfg.ops_port = 0;
    cfg.workers = rh.opt.workers ? rh.opt.workers : 2;
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.ca_file = ca;
    cfg.crl_file = crl;
    cfg.max_body_bytes = 256 * 1024;
    cfg.send_buffer_bytes = rh.opt.send_buffer_bytes;
    cfg.write_timeout_ms = rh.opt.write_timeout_ms;
    cfg.handler = rest_handle;
    cfg.handler_arg = rh.app;
    rh.srv = srv_new(&cfg, err, sizeof err);
    cr_assert_not_null(rh.srv, "%s", err);
    cr_assert(srv_start(rh.srv, err, sizeof err), "%s", err);
    rh.port = srv_port(rh.srv);
}

void rh_stop_server(void)
{
    srv_stop(rh.srv);
    srv_wait(rh.srv);
    srv_free(rh.srv);
    rest_app_free(rh.app);
    st_close(rh.store);
    id_table_free(rh.orgs);
    sl_keyring_free(rh.seal_keys);
    rh.seal_keys = NULL;
    rh.srv = NULL;
}

void rh_publish_directory(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/organisations.tsv", rh.dir);
    cr_assert(dir_publish_registered(rh.app, path), "the directory entries could not be published");
}

void rh_setup_with(const rh_options *opt)
{
    memset(&rh, 0, sizeof rh);
    test_thread = pthread_self();
    if (opt)
        rh.opt = *opt;
    snprintf(rh.dir, sizeof rh.dir, "/tmp/fhirgw-rest-XXXXXX");
    cr_assert_not_null(mkdtemp(rh.dir));
    run_pki();
    rh_start_server();
}

void rh_setup(void)
{
    rh_setup_with(NULL);
}

void rh_teardown(void)
{
    if (rh.srv)
        rh_stop_server();
    au_keyring_free(rh.audit_keys);
    au_signer_free(rh.audit_signer);
    rh.audit_keys = NULL;
    rh.audit_signer = NULL;
    pf_registry_free(guide);
    guide = NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rh.dir);
    cr_expect_eq(system(cmd), 0);
    rh_expect_valid_bodies();
}

const pf_registry *rh_guide(void)
{
    if (guide)
        return guide;
    oo_list issues;
    oo_list_init(&issues, 0);
    const char *dirs[] = {IG_PACKAGE_DIR};
    guide = conf_load(dirs, 1, &issues);
    size_t errors = issues.errors;
    char first[512];
    snprintf(first, sizeof first, "%s", issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
    cr_assert_not_null(guide, "the guide's package at %s", IG_PACKAGE_DIR);
    cr_assert_eq(errors, 0, "the guide's package at %s: %s", IG_PACKAGE_DIR, first);
    return guide;
}

void rh_setup_with_guide(const rh_options *opt)
{
    rh_options o = opt ? *opt : (rh_options){0};
    o.profiles = rh_guide();
    rh_setup_with(&o);
    rh_publish_directory();
}

void rh_attest_agreements(const char *who, const char *ura, const char *until)
{
    char path[64];
    snprintf(path, sizeof path, "/Organization/ura-%s", ura);
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s reads its directory entry", who);
    char *body = hb_with_agreements(r.body, until);
    rh_response_free(&r);
    cr_assert_not_null(body);
    r = rh_request(who, "PUT", path, body, NULL);
    free(body);
    cr_assert_eq(r.status, 200, "%s attests its agreements: %ld %.*s", who, r.status, (int)r.len, r.body);
    rh_response_free(&r);
}

void rh_register_endpoint(const char *who, const char *ura, const char *url, const char *payload_code)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"resourceType\":\"Endpoint\",\"status\":\"active\",\"connectionType\":{\"system\":"
             "\"http://terminology.hl7.org/CodeSystem/endpoint-connection-type\",\"code\":\"hl7-fhir-rest\"},"
             "\"payloadType\":[{\"coding\":[{\"system\":\"%s\",\"code\":\"%s\"}]}],\"address\":\"%s\"}",
             payload_code ? RLY_PAYLOAD_SYSTEM : "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
             payload_code ? payload_code : "any", url);
    char endpoint[80];
    snprintf(endpoint, sizeof endpoint, "Endpoint/%s", rh_create(who, "Endpoint", body));
    char path[64];
    snprintf(path, sizeof path, "/Organization/ura-%s", ura);
    rh_response r = rh_request(who, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s reads its directory entry", who);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    json_object_object_del(o, "meta");
    json_object *refs = json_object_new_array(), *ref = json_object_new_object();
    json_object_object_add(ref, "reference", json_object_new_string(endpoint));
    json_object_array_add(refs, ref);
    json_object_object_add(o, "endpoint", refs);
    r = rh_request(who, "PUT", path, json_object_to_json_string(o), NULL);
    json_object_put(o);
    cr_assert_eq(r.status, 200, "%s names its Endpoint: %ld %.*s", who, r.status, (int)r.len, r.body);
    rh_response_free(&r);
}

ob_client *rh_outbound_client(ob_config limits)
{
    char cert[320], key[320], ca[320];
    snprintf(cert, sizeof cert, "%s/pki/outbound.crt", rh.dir);
    snprintf(key, sizeof key, "%s/pki/outbound.key", rh.dir);
    snprintf(ca, sizeof ca, "%s/pki/ca-bundle.pem", rh.dir);
    limits.cert_file = cert;
    limits.key_file = key;
    limits.ca_file = ca;
    ob_error err;
    ob_client *c = ob_client_new(&limits, &err);
    cr_assert_not_null(c, "%s", err.message);
    return c;
}

void rh_set_roles(const char *who, const char *roles)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sed -i -e 's/^%s\\t\\([0-9]*\\)\\t[a-z0-9,-]*/%s\\t\\1\\t%s/' '%s/organisations.tsv'",
             who, who, roles, rh.dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* ---- validating what the server sends ---- */

size_t rh_validate_text(const char *text, size_t len, char *msg, size_t msglen)
{
    char *copy = malloc(len + 1); /* the parser decodes in place */
    memcpy(copy, text, len);
    copy[len] = '\0';
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options opts = {0};
    size_t errors = fv_validate_buffer(copy, len, &opts, &issues);
    if (msg && msglen) {
        msg[0] = '\0';
        for (size_t i = 0; i < issues.count; i++)
            if (issues.items[i].severity <= OO_ERROR) {
                snprintf(msg, msglen, "%s: %s", issues.items[i].expression ? issues.items[i].expression : "",
                         issues.items[i].message);
                break;
            }
    }
    oo_list_free(&issues);
    free(copy);
    return errors;
}

size_t rh_invalid_bodies(void)
{
    return atomic_load(&invalid_bodies);
}

void rh_expect_valid_bodies(void)
{
    size_t seen = atomic_load(&invalid_bodies);
    if (seen == invalid_reported)
        return;
    invalid_reported = seen;
    pthread_mutex_lock(&first_invalid_lock);
    cr_expect(false, "the server sent %zu invalid bodies; the first: %s", seen, first_invalid);
    pthread_mutex_unlock(&first_invalid_lock);
}

static void check_body(const rh_response *r, const char *method, const char *path)
{
    if (!r->body || !r->len || !strcasestr(r->headers, "application/fhir+json"))
        return;
    char msg[600];
    if (!rh_validate_text(r->body, r->len, msg, sizeof msg))
        return;
    atomic_fetch_add(&invalid_bodies, 1);
    pthread_mutex_lock(&first_invalid_lock);
    if (!first_invalid[0])
        snprintf(first_invalid, sizeof first_invalid, "%s %s -> %ld: %s in %.300s", method, path, r->status, msg,
                 r->body);
    pthread_mutex_unlock(&first_invalid_lock);
    /* only the test's own thread reports to Criterion (its messaging deadlocked when a client thread did);
     * what client threads saw is reported by the test thread's next request, and at teardown */
    if (pthread_equal(pthread_self(), test_thread))
        rh_expect_valid_bodies();
}

/* ---- client ---- */

/* Where curl's body pieces go: the response, after the optional pacing callback. */
typedef struct body_sink {
    rh_response *r;
    rh_pace_fn pace;
    void *pace_arg;
} body_sink;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    body_sink *sink = arg;
    rh_response *r = sink->r;
    if (sink->pace && !sink->pace(r->len + size * n, sink->pace_arg))
        return 0; /* the client hangs up */
    r->body = realloc(r->body, r->len + size * n + 1);
    memcpy(r->body + r->len, data, size * n);
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    rh_response *r = arg;
    size_t len = size * n;
    if (r->hlen + len < sizeof r->headers) {
        memcpy(r->headers + r->hlen, data, len);
        r->hlen += len;
        r->headers[r->hlen] = '\0';
    }
    return len;
}

/* A paced reader's socket takes little before its reader does (SO_RCVBUF before connect: a small window, not
 * grown by the kernel), so that the gateway feels the stall soon, as it would from a slow link. */
static int small_receive_buffer(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    (void)arg;
    int bytes = 4096;
    if (purpose == CURLSOCKTYPE_IPCXN)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    return CURL_SOCKOPT_OK;
}

static rh_response perform(const char *who, const char *method, const char *path, const char *body,
                           const char *const *extra, rh_pace_fn pace, void *pace_arg)
{
    if (pthread_equal(pthread_self(), test_thread))
        rh_expect_valid_bodies(); /* what client threads saw since */
    rh_response r = {0};
    body_sink sink = {&r, pace, pace_arg};
    CURL *c = curl_easy_init();
    char url[4096], cert[512], key[512], ca[512];
    snprintf(url, sizeof url, "https://127.0.0.1:%u%s", rh.port, path);
    snprintf(cert, sizeof cert, "%s/pki/clients/%s.crt", rh.dir, who);
    snprintf(key, sizeof key, "%s/pki/clients/%s.key", rh.dir, who);
    snprintf(ca, sizeof ca, "%s/pki/ca.pem", rh.dir);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* the answer's headers announce a body that never comes */
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    /* a paced reader stalls on purpose (its pace callback bounds each stall): only a dead transfer ends it */
    curl_easy_setopt(c, CURLOPT_TIMEOUT, pace ? 0L : 30L);
    if (pace) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, small_receive_buffer);
    }
    struct curl_slist *h = NULL;
    bool has_type = false;
    for (const char *const *e = extra; e && *e; e++) {
        h = curl_slist_append(h, *e);
        has_type |= !strncasecmp(*e, "Content-Type:", 13);
    }
    if (body) {
        if (!has_type)
            h = curl_slist_append(h, "Content-Type: application/fhir+json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    r.curl = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    check_body(&r, method, path);
    return r;
}

rh_response rh_request(const char *who, const char *method, const char *path, const char *body,
                       const char *const *extra)
{
    return perform(who, method, path, body, extra, NULL, NULL);
}

rh_response rh_get_paced(const char *who, const char *path, const char *const *extra, rh_pace_fn pace, void *arg)
{
    return perform(who, "GET", path, NULL, extra, pace, arg);
}

void rh_response_free(rh_response *r)
{
    free(r->body);
    r->body = NULL;
}

json_object *rh_json(const rh_response *r)
{
    json_object *o = r->body ? json_tokener_parse(r->body) : NULL;
    cr_assert_not_null(o, "not JSON (status %ld): %s", r->status, r->body ? r->body : "(no body)");
    return o;
}

const char *rh_str(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg && o; seg = strtok_r(NULL, ".", &save))
        o = (*seg >= '0' && *seg <= '9') ? json_object_array_get_idx(o, (size_t)atoi(seg))
                                         : json_object_object_get(o, seg);
    return o ? json_object_get_string(o) : NULL;
}

void rh_expect_outcome(const rh_response *r, long status, const char *code)
{
    cr_expect_eq(r->status, status, "expected %ld, got %ld: %s", status, r->status, r->body ? r->body : "");
    json_object *o = rh_json(r);
    cr_expect_str_eq(rh_str(o, "resourceType"), "OperationOutcome");
    if (code)
        cr_expect_str_eq(rh_str(o, "issue.0.code"), code, "%s", r->body);
    json_object_put(o);
    cr_expect_not_null(strcasestr(r->headers, "application/fhir+json"), "%s", r->headers);
}

json_object *rh_named(json_object *o, const char *list, const char *name)
{
    json_object *items = json_object_object_get(o, list);
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *item = json_object_array_get_idx(items, i);
        const char *n = json_object_get_string(json_object_object_get(item, "name"));
        if (n && !strcmp(n, name))
            return item;
    }
    return NULL;
}

bool rh_wait_notify_state(st_notify_state state, int64_t n, int timeout_ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int64_t counts[ST_NOTIFY_STATES];
        st_error err;
        if (st_notify_counts(rh.store, counts, &err) == ST_OK && counts[state] >= n)
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= timeout_ms)
            return false;
        usleep(10 * 1000); /* the condition is in the database: look again shortly */
    }
}

const char *rh_header(const rh_response *r, const char *name, char *out, size_t size)
{
    const char *p = r->headers;
    size_t n = strlen(name);
    while ((p = strcasestr(p, name))) {
        if ((p == r->headers || p[-1] == '\n') && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, "\r\n");
            snprintf(out, size, "%.*s", (int)len, p);
            return out;
        }
        p += n;
    }
    return NULL;
}

const char *rh_create(const char *who, const char *type, const char *json)
{
    static char id[80];
    char path[128];
    snprintf(path, sizeof path, "/%s", type);
    rh_response r = rh_request(who, "POST", path, json, NULL);
    cr_assert_eq(r.status, 201, "create %s: %ld %s", type, r.status, r.body);
    json_object *o = rh_json(&r);
    snprintf(id, sizeof id, "%s", rh_str(o, "id"));
    json_object_put(o);
    rh_response_free(&r);
    return id;
}
