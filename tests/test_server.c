/*
 * tests/test_server.c — the HTTPS front (gateway/http/server.c) end to end: the
 * real server on loopback with ephemeral ports, a test PKI made by
 * certs/make-test-pki, libcurl and raw OpenSSL clients.
 *
 * The PKI is made once per run in a mkdtemp directory by a report hook in the
 * runner process and handed to the test workers in the environment, as in
 * test_identity.c. Each test starts its own server (2 workers, short
 * timeouts) with a small handler:
 *
 *   /echo            JSON with method, path, query, body length, peer CN
 *   /async?ms=N      answered after N ms from another thread
 *   /slow?ms=N       answered after N ms on the worker itself (a slow handler)
 *   /stream?mib=N    N MiB streamed with srv_respond_stream, 64 KiB a piece
 *   anything else    404 OperationOutcome
 *
 * Timeouts are 1 s so that the slow-client test stays short.
 */
#define _GNU_SOURCE /* strcasestr */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* Under ASan and TSan malloc is the sanitizer's: glibc's counters stay at zero. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_HEAP 1
#endif
#endif
#ifndef SANITIZER_HEAP
#include <malloc.h>
#endif

#include "gateway/http/server.h"
#include "tests/child_gateway.h"
#include "tests/run_pki.h"

#define REQUEST_TIMEOUT_MS 1000
#define MAX_BODY (64 * 1024)
#define MAX_HEADER_BYTES (8 * 1024)

/* ---- The shared PKI: the run's (tests/run_pki.h) ------------------------------------------------- */

static void pki_path(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", rp_dir(), rel);
}

/* ---- The test handler ----------------------------------------------------------- */

#define MAX_ASYNC 16

static pthread_t async_threads[MAX_ASYNC];
static atomic_uint async_count;
static atomic_bool not_ready;

typedef struct async_job {
    srv_request *req;
    unsigned delay_ms;
} async_job;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void *answer_later(void *arg)
{
    async_job *job = arg;
    sleep_ms(job->delay_ms);
    char *body = strdup("{\"async\":true}");
    srv_set_header(job->req, "Content-Type", "application/json");
    srv_respond(job->req, 200, body, strlen(body));
    free(job);
    return NULL;
}

static void handle_echo(srv_request *req)
{
    size_t body_len;
    srv_req_body(req, &body_len);
    char cn[256] = "";
    X509 *peer = srv_req_peer_cert(req);
    if (peer)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    const char *test_header = srv_req_header(req, "x-TEST");
    char *body = malloc(1024);
    int n = snprintf(body, 1024,
                     "{\"method\":\"%s\",\"path\":\"%s\",\"query\":\"%s\",\"body\":%zu,\"cn\":\"%s\","
                     "\"x_test\":\"%s\",\"worker\":%u,\"tls\":\"%s\"}",
                     srv_req_method(req), srv_req_path(req), srv_req_query(req), body_len, cn,
                     test_header ? test_header : "", srv_req_worker(req), srv_req_tls_version(req));
    srv_set_route(req, "echo");
    srv_set_caller(req, "Test Org", "90000201");
    srv_set_header(req, "Content-Type", "application/json");
    srv_respond(req, 200, body, (size_t)n);
}

static void handle_async(srv_request *req)
{
    async_job *job = malloc(sizeof *job);
    job->req = req;
    job->delay_ms = (unsigned)atoi(srv_req_query(req) + 3); /* "ms=N" */
    srv_set_route(req, "async");
    unsigned slot = atomic_fetch_add(&async_count, 1);
    cr_assert_lt(slot, MAX_ASYNC);
    pthread_create(&async_threads[slot], NULL, answer_later, job);
    /* req now belongs to the thread: not a byte more here */
}

/* Blocks its worker, as a handler doing heavy work on it would. */
static void handle_slow(srv_request *req)
{
    sleep_ms((unsigned)atoi(srv_req_query(req) + 3)); /* "ms=N" */
    char *body = strdup("{\"slow\":true}");
    srv_set_route(req, "slow");
    srv_respond(req, 200, body, strlen(body));
}

/* The streaming producer: a known pattern, 64 KiB per call. The counters
 * let a test see how far the producer is while a client reads. */
#define STREAM_PIECE (64u * 1024)
static atomic_size_t stream_produced;
static atomic_uint stream_releases;

typedef struct stream_job {
    size_t total, done;
} stream_job;

static char stream_byte(size_t offset)
{
    return (char)('a' + offset % 26);
}

static srv_stream_status produce_pattern(srv_stream *out, void *arg)
{
    stream_job *job = arg;
    char piece[STREAM_PIECE];
    size_t n = job->total - job->done < sizeof piece ? job->total - job->done : sizeof piece;
    for (size_t i = 0; i < n; i++)
        piece[i] = stream_byte(job->done + i);
    if (!srv_stream_write(out, piece, n))
        return SRV_STREAM_ERROR;
    job->done += n;
    atomic_store(&stream_produced, job->done);
    return job->done == job->total ? SRV_STREAM_DONE : SRV_STREAM_MORE;
}

static void release_pattern(void *arg)
{
    free(arg);
    atomic_fetch_add(&stream_releases, 1);
}

static void handle_stream(srv_request *req)
{
    stream_job *job = calloc(1, sizeof *job);
    job->total = (size_t)atoi(srv_req_query(req) + 4) * 1024 * 1024; /* "mib=N" */
    srv_set_route(req, "stream");
    srv_set_header(req, "Content-Type", "text/plain");
    srv_respond_stream(req, 200, produce_pattern, release_pattern, job);
}

static void test_handler(srv_request *req, void *arg)
{
    (void)arg;
    const char *path = srv_req_path(req);
    if (strcmp(path, "/echo") == 0 || strncmp(path, "/echo/", 6) == 0)
        handle_echo(req);
    else if (strcmp(path, "/async") == 0)
        handle_async(req);
    else if (strcmp(path, "/slow") == 0)
        handle_slow(req);
    else if (strcmp(path, "/stream") == 0)
        handle_stream(req);
    else
        srv_respond_outcome(req, 404, "not-found", "no such test resource");
}

static bool test_ready(void *arg)
{
    (void)arg;
    return !atomic_load(&not_ready);
}

/* ---- Server fixture ---------------------------------------------------------------- */

static srv_server *srv;
static unsigned port, ops_port;
static char log_path[64];
static int log_fd = -1;

static void start_server_with(void (*adjust)(srv_config *))
{
    char cert[512], key[512], ca[512], crl[512], err[512];
    pki_path(cert, sizeof cert, "server.crt");
    pki_path(key, sizeof key, "server.key");
    pki_path(ca, sizeof ca, "ca-bundle.pem");
    pki_path(crl, sizeof crl, "crl.pem");
    strcpy(log_path, "/tmp/fhirgw-srv-log-XXXXXX");
    log_fd = mkstemp(log_path);
    cr_assert_geq(log_fd, 0);
    srv_config cfg;
    srv_config_defaults(&cfg);
    cfg.port = 0;
    cfg.ops_port = 0;
    cfg.workers = 2;
    cfg.cert_file = cert, cfg.key_file = key, cfg.ca_file = ca, cfg.crl_file = crl;
    cfg.max_body_bytes = MAX_BODY;
    cfg.max_header_bytes = MAX_HEADER_BYTES;
    cfg.request_timeout_ms = REQUEST_TIMEOUT_MS;
    cfg.idle_timeout_ms = 5000;
    cfg.drain_timeout_ms = 3000;
    cfg.handler = test_handler;
    cfg.ready = test_ready;
    cfg.access_log_fd = log_fd;
    if (adjust)
        adjust(&cfg);
    srv = srv_new(&cfg, err, sizeof err);
    cr_assert_not_null(srv, "srv_new: %s", err);
    cr_assert(srv_start(srv, err, sizeof err), "srv_start: %s", err);
    port = srv_port(srv);
    ops_port = srv_ops_port(srv);
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    start_server_with(NULL);
}

static void stop_server(void)
{
    if (!srv)
        return;
    srv_stop(srv);
    srv_wait(srv);
    /* every thread that may call srv_respond must be done before srv_free */
    for (unsigned i = 0; i < atomic_load(&async_count); i++)
        pthread_join(async_threads[i], NULL);
    atomic_store(&async_count, 0);
    srv_free(srv);
    srv = NULL;
}

static void teardown(void)
{
    stop_server();
    if (log_fd >= 0) {
        close(log_fd);
        unlink(log_path);
        log_fd = -1;
    }
    curl_global_cleanup();
}

TestSuite(server, .init = setup, .fini = teardown, .timeout = 60); /* the 64 MiB stream under ASan on a busy machine */

/* ---- libcurl client ----------------------------------------------------------------- */

typedef struct answer {
    CURLcode rc;
    long status;
    char *body;
    size_t body_len;
    char headers[8192];
    size_t headers_len;
    long connects; /* new connections this transfer opened */
} answer;

static size_t collect_body(char *data, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    char *grown = realloc(a->body, a->body_len + size * n + 1);
    if (!grown)
        return 0;
    a->body = grown;
    memcpy(a->body + a->body_len, data, size * n);
    a->body_len += size * n;
    a->body[a->body_len] = '\0';
    return size * n;
}

static size_t collect_header(char *data, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    size_t room = sizeof a->headers - a->headers_len - 1;
    size_t take = size * n < room ? size * n : room;
    memcpy(a->headers + a->headers_len, data, take);
    a->headers_len += take;
    a->headers[a->headers_len] = '\0';
    return size * n;
}

/* An easy handle for the FHIR port with a client certificate (NULL = none). */
static CURL *client(const char *cert_name)
{
    CURL *h = curl_easy_init();
    char ca[512], cert[512], key[512], rel[128];
    pki_path(ca, sizeof ca, "ca-bundle.pem");
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    if (cert_name) {
        snprintf(rel, sizeof rel, "clients/%s.crt", cert_name);
        pki_path(cert, sizeof cert, rel);
        snprintf(rel, sizeof rel, "clients/%s.key", cert_name);
        pki_path(key, sizeof key, rel);
        curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    return h;
}

static void perform(CURL *h, const char *url, answer *a)
{
    free(a->body);
    memset(a, 0, sizeof *a);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    a->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &a->connects);
}

static void fhir_url(char *out, size_t len, const char *path)
{
    snprintf(out, len, "https://localhost:%u%s", port, path);
}

static void ops_url(char *out, size_t len, const char *path)
{
    snprintf(out, len, "http://127.0.0.1:%u%s", ops_port, path);
}

/* GET a path on the FHIR port as `cert_name`. */
static void get(const char *cert_name, const char *path, answer *a)
{
    char url[512];
    fhir_url(url, sizeof url, path);
    CURL *h = client(cert_name);
    perform(h, url, a);
    curl_easy_cleanup(h);
}

static void get_ops(const char *path, answer *a)
{
    char url[512];
    ops_url(url, sizeof url, path);
    CURL *h = curl_easy_init();
    perform(h, url, a);
    curl_easy_cleanup(h);
}

static void assert_outcome(const answer *a, long status)
{
    cr_assert_eq(a->rc, CURLE_OK, "curl: %s", curl_easy_strerror(a->rc));
    cr_assert_eq(a->status, status, "status %ld, expected %ld: %s", a->status, status, a->body ? a->body : "");
    cr_assert(strcasestr(a->headers, "Content-Type: application/fhir+json") != NULL, "headers: %s", a->headers);
    cr_assert_not_null(a->body);
    cr_assert(strstr(a->body, "\"resourceType\":\"OperationOutcome\"") != NULL, "body: %s", a->body);
    cr_assert(strcasestr(a->headers, "X-Request-ID: ") != NULL);
}

/* The server counts asynchronously from the client's view: poll the metrics. */
static bool metrics_contain(const char *needle)
{
    for (int i = 0; i < 100; i++) {
        size_t len;
        char *text = mx_render(srv_metrics(srv), &len);
        bool found = text && strstr(text, needle);
        free(text);
        if (found)
            return true;
        sleep_ms(10);
    }
    return false;
}

/* ---- Raw TLS client (for what curl will not do) ------------------------------------------ */

static int tcp_connect(unsigned to_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

typedef struct raw_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
} raw_tls;

/* Connect with a client certificate; max_version 0 = any. True if the handshake completed. */
static bool raw_connect(raw_tls *t, const char *cert_name, int max_version)
{
    char cert[512], key[512], rel[128];
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (max_version) {
        SSL_CTX_set_min_proto_version(t->ctx, 0);
        SSL_CTX_set_max_proto_version(t->ctx, max_version);
        SSL_CTX_set_cipher_list(t->ctx, "DEFAULT:@SECLEVEL=0"); /* let the client offer old versions */
    }
    snprintf(rel, sizeof rel, "clients/%s.crt", cert_name);
    pki_path(cert, sizeof cert, rel);
    snprintf(rel, sizeof rel, "clients/%s.key", cert_name);
    pki_path(key, sizeof key, rel);
    SSL_CTX_use_certificate_chain_file(t->ctx, cert);
    SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM);
    t->fd = tcp_connect(port);
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, t->fd);
    bool ok = SSL_connect(t->ssl) == 1;
    ERR_clear_error();
    return ok;
}

static void raw_close(raw_tls *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
}

/* Read until the peer closes or `ms` pass; returns bytes read into buf. */
static size_t raw_read_all(raw_tls *t, char *buf, size_t cap, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t len = 0;
    int n;
    while (len + 1 < cap && (n = SSL_read(t->ssl, buf + len, (int)(cap - len - 1))) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    ERR_clear_error();
    return len;
}

/* Read one answer (head + Content-Length body) on a keep-alive connection. */
static size_t raw_read_answer(raw_tls *t, char *buf, size_t cap, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t len = 0;
    int n;
    buf[0] = '\0';
    while (len + 1 < cap && (n = SSL_read(t->ssl, buf + len, (int)(cap - len - 1))) > 0) {
        len += (size_t)n;
        buf[len] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "Content-Length: ");
        if (end && cl && len >= (size_t)(end + 4 - buf) + (size_t)atol(cl + 16))
            break;
    }
    ERR_clear_error();
    return len;
}

static void raw_send(raw_tls *t, const char *text)
{
    cr_assert_eq(SSL_write(t->ssl, text, (int)strlen(text)), (int)strlen(text));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Mutual TLS ------------------------------------------------------------------------------ */

Test(server, valid_client_is_served)
{
    answer a = {0};
    get("hospital-a", "/echo/Patient%201?_count=5&x=%20", &a);
    cr_assert_eq(a.rc, CURLE_OK, "curl: %s", curl_easy_strerror(a.rc));
    cr_assert_eq(a.status, 200);
    cr_assert(strstr(a.body, "\"method\":\"GET\""), "%s", a.body);
    cr_assert(strstr(a.body, "\"path\":\"/echo/Patient 1\""), "path is percent-decoded: %s", a.body);
    cr_assert(strstr(a.body, "\"query\":\"_count=5&x=%20\""), "query is raw: %s", a.body);
    cr_assert(strstr(a.body, "\"cn\":\"hospital-a.fhirgw.test\""), "peer certificate: %s", a.body);
    cr_assert(strstr(a.body, "\"tls\":\"TLSv1.3\""), "%s", a.body);
    cr_assert(strcasestr(a.headers, "Content-Type: application/json"));
    cr_assert(strcasestr(a.headers, "Date: "));
    free(a.body);
    cr_assert(metrics_contain("fhirgw_tls_handshakes_total 1\n"));
}

static void expect_refused(const char *cert_name, const char *reason)
{
    answer a = {0};
    get(cert_name, "/echo", &a);
    cr_assert_neq(a.rc, CURLE_OK, "%s must be refused, got HTTP %ld", cert_name ? cert_name : "no certificate",
                  a.status);
    free(a.body);
    char needle[128];
    snprintf(needle, sizeof needle, "fhirgw_tls_handshake_failures_total{reason=\"%s\"} 1", reason);
    cr_assert(metrics_contain(needle), "metrics should count %s", needle);
}

Test(server, no_certificate_is_refused)
{
    expect_refused(NULL, "no_certificate");
}

Test(server, expired_certificate_is_refused)
{
    expect_refused("expired", "certificate_expired");
}

Test(server, revoked_certificate_is_refused)
{
    expect_refused("revoked", "certificate_revoked");
}

Test(server, foreign_ca_is_refused)
{
    expect_refused("foreign", "certificate_untrusted");
}

Test(server, tls_1_1_is_refused)
{
    raw_tls t;
    cr_assert_not(raw_connect(&t, "gp", TLS1_1_VERSION), "a TLS 1.1 handshake must fail");
    raw_close(&t);
    cr_assert(metrics_contain("fhirgw_tls_handshake_failures_total{reason=\"protocol\"} 1"));
}

Test(server, tls_1_2_is_accepted)
{
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", TLS1_2_VERSION));
    cr_assert_str_eq(SSL_get_version(t.ssl), "TLSv1.2");
    const char *cipher = SSL_get_cipher_name(t.ssl);
    cr_assert(strstr(cipher, "ECDHE") && (strstr(cipher, "GCM") || strstr(cipher, "CHACHA20")), "%s", cipher);
    raw_close(&t);
}

/* ---- HTTP ------------------------------------------------------------------------------------- */

Test(server, keep_alive_reuses_the_connection)
{
    char url[256];
    fhir_url(url, sizeof url, "/echo");
    CURL *h = client("gp");
    answer a = {0};
    perform(h, url, &a);
    cr_assert_eq(a.status, 200);
    cr_assert_eq(a.connects, 1);
    for (int i = 0; i < 3; i++) {
        perform(h, url, &a);
        cr_assert_eq(a.status, 200);
        cr_assert_eq(a.connects, 0, "request %d should reuse the connection", i + 2);
    }
    free(a.body);
    curl_easy_cleanup(h);
    cr_assert(metrics_contain("fhirgw_tls_handshakes_total 1\n"));
    cr_assert(metrics_contain("fhirgw_http_requests_total{route=\"echo\",status=\"200\"} 4"));
}

Test(server, request_id_is_echoed_or_generated)
{
    CURL *h = client("gp");
    char url[256];
    fhir_url(url, sizeof url, "/echo");
    struct curl_slist *hdrs = curl_slist_append(NULL, "X-Request-ID: trace-42.a_b:c");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    answer a = {0};
    perform(h, url, &a);
    cr_assert(strstr(a.headers, "X-Request-ID: trace-42.a_b:c\r\n"), "%s", a.headers);
    curl_slist_free_all(hdrs);

    hdrs = curl_slist_append(NULL, "X-Request-ID: not sane <script>");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    perform(h, url, &a);
    const char *id = strstr(a.headers, "X-Request-ID: ");
    cr_assert_not_null(id);
    id += strlen("X-Request-ID: ");
    cr_assert_eq(strspn(id, "0123456789abcdef"), 32, "a generated id is 32 hex digits: %s", a.headers);
    curl_slist_free_all(hdrs);
    free(a.body);
    curl_easy_cleanup(h);
}

/* An X-Request-ID too long (or malformed) to echo is not cut to fit: a fresh id, and the access log says why. */
Test(server, request_id_too_long_is_replaced_and_logged)
{
    CURL *h = client("gp");
    char url[256], header[128];
    fhir_url(url, sizeof url, "/echo");
    snprintf(header, sizeof header, "X-Request-ID: %0*d", SRV_REQUEST_ID_MAX + 1, 7);
    struct curl_slist *hdrs = curl_slist_append(NULL, header);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    answer a = {0};
    perform(h, url, &a);
    cr_assert_eq(a.status, 200);
    const char *id = strstr(a.headers, "X-Request-ID: ");
    cr_assert_not_null(id);
    id += strlen("X-Request-ID: ");
    cr_expect_eq(strspn(id, "0123456789abcdef"), 32, "a generated id, not the first 64 bytes: %s", a.headers);
    char log[8192] = "";
    FILE *f = fopen(log_path, "r");
    size_t n = fread(log, 1, sizeof log - 1, f);
    log[n] = '\0';
    fclose(f);
    cr_expect_not_null(strstr(log, "\"request_id_refused\":\"too-long\""), "%s", log);
    curl_slist_free_all(hdrs);
    free(a.body);
    curl_easy_cleanup(h);
}

Test(server, post_body_plain_and_chunked)
{
    CURL *h = client("gp");
    char url[256];
    fhir_url(url, sizeof url, "/echo");
    char *payload = malloc(40000);
    memset(payload, 'x', 40000);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 40000L);
    answer a = {0};
    perform(h, url, &a);
    cr_assert_eq(a.status, 200);
    cr_assert(strstr(a.body, "\"body\":40000"), "%s", a.body);

    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    perform(h, url, &a);
    cr_assert_eq(a.status, 200);
    cr_assert(strstr(a.body, "\"body\":40000"), "chunked: %s", a.body);
    curl_slist_free_all(hdrs);
    free(a.body);
    free(payload);
    curl_easy_cleanup(h);
}

Test(server, body_over_the_limit_is_413)
{
    CURL *h = client("gp");
    char url[256];
    fhir_url(url, sizeof url, "/echo");
    size_t size = MAX_BODY + 1;
    char *payload = malloc(size);
    memset(payload, 'x', size);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)size);
    answer a = {0};
    perform(h, url, &a);
    assert_outcome(&a, 413);
    cr_assert(strcasestr(a.headers, "Connection: close"));

    /* chunked: the limit holds on the decoded size too */
    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    perform(h, url, &a);
    assert_outcome(&a, 413);
    curl_slist_free_all(hdrs);
    free(a.body);
    free(payload);
    curl_easy_cleanup(h);
}

Test(server, oversized_headers_are_431)
{
    CURL *h = client("gp");
    char url[256];
    fhir_url(url, sizeof url, "/echo");
    char *big = malloc(MAX_HEADER_BYTES + 100);
    strcpy(big, "X-Big: ");
    memset(big + 7, 'a', MAX_HEADER_BYTES);
    big[MAX_HEADER_BYTES + 7] = '\0';
    struct curl_slist *hdrs = curl_slist_append(NULL, big);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    answer a = {0};
    perform(h, url, &a);
    assert_outcome(&a, 431);
    curl_slist_free_all(hdrs);
    free(big);
    free(a.body);
    curl_easy_cleanup(h);
}

Test(server, malformed_request_is_400)
{
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    const char *bad = "GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n";
    SSL_write(t.ssl, bad, (int)strlen(bad));
    char buf[4096];
    raw_read_all(&t, buf, sizeof buf, 2000);
    cr_assert(strncmp(buf, "HTTP/1.1 400 ", 13) == 0, "%s", buf);
    cr_assert(strstr(buf, "OperationOutcome"), "%s", buf);
    raw_close(&t);
}

/*
 * Request framing, as a table: each raw request on its own TLS connection,
 * with the status the server must answer. The smuggling cases (a body
 * length two parties could read differently) are refused, never guessed.
 */
Test(server, request_framing_table)
{
    static const struct {
        const char *name, *request;
        int status;
    } cases[] = {
        {"plain GET", "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 200},
        {"Content-Length body", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 200},
        {"chunked body", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
         200},
        {"chunk extension",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\n\r\n", 200},
        {"CL and TE together (CL.TE / TE.CL smuggling)",
         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"two different Content-Lengths",
         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
        {"two equal Content-Lengths",
         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400},
        {"Content-Length with a sign", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}", 400},
        {"Content-Length list", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}", 400},
        {"Transfer-Encoding other than chunked",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
        {"Transfer-Encoding twice (chunked twice: not a coding we decode)",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         501},
        {"Transfer-Encoding in HTTP/1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"a bad chunk size",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400},
        {"obsolete header folding", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
        {"space before the colon", "GET /echo HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        {"no Host in HTTP/1.1", "GET /echo HTTP/1.1\r\n\r\n", 400},
        {"two Hosts", "GET /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
        {"HTTP/2 on the wire", "GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        {"a NUL in a header", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400},
        {"an encoded slash in the path", "GET /echo%2F..%2Fx HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"a dot segment", "GET /a/../echo HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    };
    size_t ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, ran++) {
        raw_tls t;
        cr_assert(raw_connect(&t, "gp", 0));
        /* the NUL case needs its length from the literal, not strlen */
        size_t len = strlen(cases[i].request);
        if (strstr(cases[i].name, "NUL"))
            len += 1 + strlen(cases[i].request + len + 1);
        SSL_write(t.ssl, cases[i].request, (int)len);
        char buf[8192] = "";
        raw_read_all(&t, buf, sizeof buf, 3000);
        char want[16];
        snprintf(want, sizeof want, "HTTP/1.1 %d", cases[i].status);
        cr_expect(!strncmp(buf, want, strlen(want)), "%s: expected %d, got %.40s", cases[i].name, cases[i].status, buf);
        raw_close(&t);
    }
    cr_assert_geq(ran, 21, "the table had 21 rows; %zu ran (tests/test_http_parse.c has the full tables)", ran);
}

Test(server, unknown_path_answered_by_the_handler)
{
    answer a = {0};
    get("gp", "/nothing-here", &a);
    assert_outcome(&a, 404);
    free(a.body);
}

Test(server, slow_client_is_cut_off)
{
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    const char *partial = "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    SSL_write(t.ssl, partial, (int)strlen(partial));
    double start = now_s();
    char buf[4096];
    raw_read_all(&t, buf, sizeof buf, 4000);
    double waited = now_s() - start;
    cr_assert(waited < REQUEST_TIMEOUT_MS / 1000.0 + 1.0, "cut off after %.2f s", waited);
    cr_assert(waited > REQUEST_TIMEOUT_MS / 1000.0 - 0.2, "not before the timeout: %.2f s", waited);
    cr_assert(strncmp(buf, "HTTP/1.1 408 ", 13) == 0, "%s", buf);
    cr_assert(strstr(buf, "OperationOutcome"), "%s", buf);
    raw_close(&t);
}

Test(server, trickling_bytes_does_not_extend_the_deadline)
{
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    const char *line = "GET /echo HTTP/1.1\r\n";
    SSL_write(t.ssl, line, (int)strlen(line));
    double start = now_s();
    /* one header byte every 200 ms: each is progress, none is enough */
    for (int i = 0; i < 12 && SSL_write(t.ssl, "X", 1) == 1; i++)
        sleep_ms(200);
    char buf[4096];
    raw_read_all(&t, buf, sizeof buf, 4000);
    double waited = now_s() - start;
    cr_assert(waited < REQUEST_TIMEOUT_MS / 1000.0 + 1.5, "cut off after %.2f s", waited);
    raw_close(&t);
}

/* ---- Answers from other threads ------------------------------------------------------------------ */

Test(server, async_answer_from_another_thread)
{
    answer a = {0};
    get("gp", "/async?ms=100", &a);
    cr_assert_eq(a.rc, CURLE_OK);
    cr_assert_eq(a.status, 200);
    cr_assert_str_eq(a.body, "{\"async\":true}");
    free(a.body);
}

Test(server, client_gone_before_async_answer)
{
    /* the client goes once the server holds its request, however long its handshake took (under valgrind, longer
       than any fixed client timeout would allow) */
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    unsigned before = atomic_load(&async_count);
    raw_send(&t, "GET /async?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 3000 && atomic_load(&async_count) == before; i++)
        sleep_ms(10);
    cr_assert_gt(atomic_load(&async_count), before, "the server took the request");
    raw_close(&t);
    /* the answer arrives for a connection that is gone: dropped, counted, no crash */
    cr_assert(metrics_contain("fhirgw_http_answers_dropped_total 1") ||
              metrics_contain("fhirgw_http_answers_dropped_total 1"));
    answer a = {0};
    get("gp", "/echo", &a);
    cr_assert_eq(a.status, 200, "still serving");
    free(a.body);
}

typedef struct pending_get {
    answer a;
    const char *path;
} pending_get;

static void *get_in_thread(void *arg)
{
    pending_get *p = arg;
    get("gp", p->path, &p->a);
    return NULL;
}

Test(server, graceful_stop_completes_in_flight_requests)
{
    pending_get p = {.path = "/async?ms=300"};
    pthread_t th;
    pthread_create(&th, NULL, get_in_thread, &p);
    /* wait until the request is in the handler's hands */
    cr_assert(metrics_contain("fhirgw_tls_handshakes_total 1"));
    sleep_ms(100);
    double start = now_s();
    srv_stop(srv);
    srv_wait(srv);
    double took = now_s() - start;
    pthread_join(th, NULL);
    cr_assert_eq(p.a.rc, CURLE_OK, "curl: %s", curl_easy_strerror(p.a.rc));
    cr_assert_eq(p.a.status, 200);
    cr_assert(strcasestr(p.a.headers, "Connection: close"));
    cr_assert(took < 2.0, "drain took %.2f s", took);
    free(p.a.body);
    /* nothing listens any more */
    answer a = {0};
    get("gp", "/echo", &a);
    cr_assert_eq(a.rc, CURLE_COULDNT_CONNECT);
    free(a.body);
}

/* ---- Stopping with requests in flight ---------------------------------------------------------------- */

static void long_drain(srv_config *cfg)
{
    cfg->drain_timeout_ms = 10000;
    cfg->request_timeout_ms = 10000;
}

static void restart_with(void (*adjust)(srv_config *))
{
    stop_server();
    close(log_fd);
    unlink(log_path);
    start_server_with(adjust);
}

/* True while TCP connections to the port are still accepted 2 s from now
 * (each worker closes its listener when it sees the stop, after the handler
 * it is running returns). */
static bool port_accepts(unsigned to_port)
{
    bool ok = true;
    for (int i = 0; i < 200 && ok; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to_port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            sleep_ms(10);
    }
    return ok;
}

#define IN_FLIGHT 8

/* The workers are busy in slow handlers when the other requests arrive and
 * when the stop comes: those requests wait, received, on connections that
 * look idle. Every one of them must be answered. */
Test(server, stop_answers_every_request_already_received)
{
    restart_with(long_drain);
    raw_tls t[IN_FLIGHT];
    int worker_of[IN_FLIGHT];
    bool blocker[IN_FLIGHT] = {false}, worker_blocked[2] = {false};
    char buf[8192];
    for (int i = 0; i < IN_FLIGHT; i++) {
        cr_assert(raw_connect(&t[i], "gp", 0));
        raw_send(&t[i], "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        raw_read_answer(&t[i], buf, sizeof buf, 3000);
        const char *w = strstr(buf, "\"worker\":");
        cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 && w, "%s", buf);
        worker_of[i] = atoi(w + 9);
        if (!worker_blocked[worker_of[i]])
            blocker[i] = worker_blocked[worker_of[i]] = true; /* the first connection of each worker */
    }
    for (int i = 0; i < IN_FLIGHT; i++)
        if (blocker[i])
            raw_send(&t[i], "GET /slow?ms=1000 HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep_ms(100); /* the workers sleep in their handlers now */
    for (int i = 0; i < IN_FLIGHT; i++)
        if (!blocker[i])
            raw_send(&t[i], "GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep_ms(100); /* received by the kernel, not yet read by the busy workers */
    srv_stop(srv);
    for (int i = 0; i < IN_FLIGHT; i++) {
        raw_read_all(&t[i], buf, sizeof buf, 9000);
        cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "request %d (worker %d) arrived before the stop: '%s'", i,
                  worker_of[i], buf);
        cr_assert(strstr(buf, "{\"slow\":true}"), "%s", buf);
        raw_close(&t[i]);
    }
    cr_assert_not(port_accepts(port), "new connections are refused while stopping");
    srv_wait(srv);
}

/* A stop also answers requests pipelined behind the one being handled. */
Test(server, stop_answers_pipelined_requests_already_received)
{
    restart_with(long_drain);
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    raw_send(&t, "GET /slow?ms=500 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/second HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep_ms(100);
    srv_stop(srv);
    char buf[8192];
    raw_read_all(&t, buf, sizeof buf, 5000);
    cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%s", buf);
    const char *second = strstr(buf + 1, "HTTP/1.1 200 ");
    cr_assert_not_null(second, "the pipelined request was received before the stop: %s", buf);
    cr_assert(strstr(second, "\"path\":\"/echo/second\""), "%s", second);
    cr_assert(strcasestr(second, "Connection: close\r\n"), "%s", second);
    raw_close(&t);
    srv_wait(srv);
}

/* ---- Streaming answers ------------------------------------------------------------------------------ */

static void one_worker(srv_config *cfg)
{
    cfg->workers = 1;
    cfg->request_timeout_ms = 10000;
}

/* Read from a raw connection until `want` bytes are in buf (grown as needed),
 * buf ends with `suffix` (when not NULL) or the connection ends. */
static void raw_read_until(raw_tls *t, char **buf, size_t *len, size_t *cap, size_t want, const char *suffix,
                           unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (*len < want) {
        if (*cap - *len < 64 * 1024) {
            *cap = *cap * 2 + 64 * 1024;
            *buf = realloc(*buf, *cap);
        }
        int n = SSL_read(t->ssl, *buf + *len, (int)(*cap - *len - 1));
        if (n <= 0)
            break;
        *len += (size_t)n;
        size_t sl = suffix ? strlen(suffix) : 0;
        if (suffix && *len >= sl && memcmp(*buf + *len - sl, suffix, sl) == 0)
            break;
    }
    (*buf)[*len] = '\0';
    ERR_clear_error();
}

/* Decode a chunked body in place; returns its length, or (size_t)-1 when malformed or unterminated. */
static size_t dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long size = strtoul(body + in, &end, 16);
        if (end == body + in || (size_t)(end - body) + 2 > len || strncmp(end, "\r\n", 2) != 0)
            return (size_t)-1;
        in = (size_t)(end - body) + 2;
        if (size == 0)
            return in + 2 <= len && strncmp(body + in, "\r\n", 2) == 0 ? out : (size_t)-1;
        if (in + size + 2 > len || strncmp(body + in + size, "\r\n", 2) != 0)
            return (size_t)-1;
        memmove(body + out, body + in, size);
        out += size;
        in += size + 2;
    }
}

#define BIG_MIB 64

/* While one client reads a 64 MiB streamed answer (slowly: it pauses), the
 * same worker keeps answering everybody else, and the producer is never
 * further ahead than the reader allows. No timing thresholds: the small
 * answers must come while the producer has not finished. */
Test(server, streamed_answer_leaves_the_worker_free)
{
    restart_with(one_worker);
    atomic_store(&stream_produced, 0);
    atomic_store(&stream_releases, 0);
    raw_tls big;
    cr_assert(raw_connect(&big, "gp", 0));
    char req[128];
    snprintf(req, sizeof req, "GET /stream?mib=%d HTTP/1.1\r\nHost: x\r\n\r\n", BIG_MIB);
    raw_send(&big, req);
    size_t cap = 1024 * 1024, len = 0, total = (size_t)BIG_MIB * 1024 * 1024;
    char *buf = malloc(cap);
    raw_read_until(&big, &buf, &len, &cap, 1024 * 1024, NULL, 5000);
    cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%.200s", buf);
    cr_assert(strcasestr(buf, "Transfer-Encoding: chunked\r\n"), "%.300s", buf);

    /* the big client pauses; the others are served by the same (only) worker */
    for (int i = 0; i < 10; i++) {
        answer a = {0};
        get("gp", "/echo", &a);
        cr_assert_eq(a.status, 200);
        free(a.body);
        size_t produced = atomic_load(&stream_produced);
        cr_assert_lt(produced, total, "small request %d answered only after the big answer was produced", i);
        cr_assert_lt(produced, (size_t)16 * 1024 * 1024, "the producer runs ahead of the reader: %zu bytes", produced);
    }

    raw_read_until(&big, &buf, &len, &cap, SIZE_MAX, "\r\n0\r\n\r\n", 20000); /* to the last chunk */
    char *body = strstr(buf, "\r\n\r\n") + 4;
    size_t body_len = dechunk(body, len - (size_t)(body - buf));
    cr_assert_eq(body_len, total, "a complete chunked body of %zu bytes", total);
    for (size_t i = 0; i < total; i++)
        if (body[i] != stream_byte(i))
            cr_assert_fail("byte %zu differs", i);
    free(buf);
    raw_close(&big);
    cr_assert(metrics_contain("fhirgw_http_requests_total{route=\"stream\",status=\"200\"} 1\n"));
    cr_assert_eq(atomic_load(&stream_releases), 1, "release runs once");
}

/* HTTP/1.0 has no chunks: the body ends with the connection. HEAD gets the head only. */
Test(server, streamed_answer_to_http10_and_head)
{
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    raw_send(&t, "GET /stream?mib=1 HTTP/1.0\r\n\r\n");
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    raw_read_until(&t, &buf, &len, &cap, SIZE_MAX, NULL, 5000);
    raw_close(&t);
    cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%.200s", buf);
    cr_assert_null(strcasestr(buf, "Transfer-Encoding"), "%.300s", buf);
    cr_assert(strcasestr(buf, "Connection: close\r\n"), "%.300s", buf);
    char *body = strstr(buf, "\r\n\r\n") + 4;
    cr_assert_eq(len - (size_t)(body - buf), 1024 * 1024);
    free(buf);

    cr_assert(raw_connect(&t, "gp", 0));
    raw_send(&t, "HEAD /stream?mib=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char head[4096];
    raw_read_all(&t, head, sizeof head, 3000);
    raw_close(&t);
    cr_assert(strncmp(head, "HTTP/1.1 200 ", 13) == 0, "%s", head);
    const char *end = strstr(head, "\r\n\r\n");
    cr_assert(end && end[4] == '\0', "no body after the head: %s", head);
    for (int i = 0; i < 100 && atomic_load(&stream_releases) < 2; i++)
        sleep_ms(10);
    cr_assert_eq(atomic_load(&stream_releases), 2, "release runs for HEAD too, without producing");
}

/* A client that leaves in the middle: the producer is released, nothing leaks. */
Test(server, streamed_answer_client_gone)
{
    atomic_store(&stream_releases, 0);
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    raw_send(&t, "GET /stream?mib=32 HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    raw_read_until(&t, &buf, &len, &cap, 128 * 1024, NULL, 5000);
    free(buf);
    raw_close(&t);
    for (int i = 0; i < 300 && atomic_load(&stream_releases) < 1; i++)
        sleep_ms(10);
    cr_assert_eq(atomic_load(&stream_releases), 1);
    cr_assert(metrics_contain("fhirgw_http_inflight_bytes 0\n"), "every queued byte given back");
}

/* ---- Memory budget ----------------------------------------------------------------------------------- */

/* Heap bytes in use (the sanitizer's allocator under ASan or TSan, glibc's otherwise). */
#ifdef SANITIZER_HEAP
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

static size_t vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = (size_t)atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

static int64_t metric_value(const char *name)
{
    size_t len;
    char *text = mx_render(srv_metrics(srv), &len);
    char needle[128];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *at = text ? strstr(text, needle) : NULL;
    int64_t v = at ? atoll(at + strlen(needle)) : -1;
    free(text);
    return v;
}

#define STALLED 64
#define DECLARED (8 * 1024 * 1024)

static void big_bodies(srv_config *cfg)
{
    cfg->max_body_bytes = DECLARED;
    cfg->request_timeout_ms = 20000;
}

/* 64 uploads that declare 8 MiB each and send 1 KiB: they cost what they sent. */
Test(server, stalled_uploads_cost_what_they_sent)
{
    restart_with(big_bodies);
    char head[256], kib[1024];
    memset(kib, 'x', sizeof kib);
    snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", DECLARED);
    size_t heap0 = heap_in_use(), rss0 = vm_rss_kib();
    raw_tls *t = calloc(STALLED, sizeof *t);
    for (int i = 0; i < STALLED; i++) {
        cr_assert(raw_connect(&t[i], "gp", 0));
        raw_send(&t[i], head);
        cr_assert_eq(SSL_write(t[i].ssl, kib, sizeof kib), (int)sizeof kib);
    }
    sleep_ms(300);
    size_t heap1 = heap_in_use(), rss1 = vm_rss_kib();
    int64_t inflight = metric_value("fhirgw_http_inflight_bytes");
    for (int i = 0; i < STALLED; i++)
        raw_close(&t[i]);
    free(t);
    cr_assert_lt(heap1 - heap0, (size_t)32 * 1024 * 1024, "%d stalled uploads hold %zu heap bytes", STALLED,
                 heap1 - heap0);
    /* RSS also holds both ends of 64 TLS connections (this process is client and server, under
     * ASan: about 100 MiB); what matters is that it is nowhere near 64 x 8 MiB. */
    cr_assert_lt(rss1 - rss0, (size_t)192 * 1024, "%d stalled uploads raised RSS by %zu KiB", STALLED, rss1 - rss0);
    cr_assert(inflight > 0 && inflight <= STALLED * 16 * 1024, "in-flight bytes in /metrics: %lld",
              (long long)inflight);
}

#define BUDGET (4 * 1024 * 1024)

static void small_budget(srv_config *cfg)
{
    big_bodies(cfg);
    cfg->max_inflight_bytes = BUDGET;
}

/* Past the budget: 503 with Retry-After and an OperationOutcome; the ops port still answers. */
Test(server, memory_budget_answers_503)
{
    restart_with(small_budget);
    enum { UPLOADS = 8, SENT = 1024 * 1024 };
    char head[256];
    snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 2 * SENT);
    char *payload = malloc(SENT);
    memset(payload, 'x', SENT);
    raw_tls t[UPLOADS];
    for (int i = 0; i < UPLOADS; i++) {
        cr_assert(raw_connect(&t[i], "gp", 0));
        raw_send(&t[i], head);
        SSL_write(t[i].ssl, payload, SENT); /* may fail once the server has refused and closed */
        ERR_clear_error();
    }
    free(payload);
    int refused = 0, held = 0;
    char buf[8192];
    for (int i = 0; i < UPLOADS; i++) {
        raw_read_all(&t[i], buf, sizeof buf, 300);
        if (strncmp(buf, "HTTP/1.1 503 ", 13) == 0) {
            cr_assert(strcasestr(buf, "Retry-After: "), "%s", buf);
            cr_assert(strstr(buf, "\"resourceType\":\"OperationOutcome\""), "%s", buf);
            cr_assert(strstr(buf, "memory budget"), "%s", buf);
            refused++;
        } else {
            cr_assert_eq(buf[0], '\0', "an upload in progress gets no answer yet: %s", buf);
            held++;
        }
    }
    cr_assert_geq(refused, 1, "8 MiB sent against a 4 MiB budget");
    cr_assert_geq(held, 1);
    int64_t inflight = metric_value("fhirgw_http_inflight_bytes");
    cr_assert(inflight > 0 && inflight <= BUDGET, "in flight: %lld", (long long)inflight);

    answer a = {0};
    if (inflight == BUDGET) { /* spent: even a request without a body waits */
        get("gp", "/echo", &a);
        assert_outcome(&a, 503);
        cr_assert(strcasestr(a.headers, "Retry-After: "), "%s", a.headers);
    }
    get_ops("/metrics", &a);
    cr_assert_eq(a.status, 200, "the ops port is exempt");
    cr_assert(strstr(a.body, "fhirgw_http_inflight_bytes "), "%s", a.body);
    cr_assert(strstr(a.body, "fhirgw_http_budget_refusals_total "), "%s", a.body);
    free(a.body);
    for (int i = 0; i < UPLOADS; i++)
        raw_close(&t[i]);
    cr_assert(metrics_contain("fhirgw_http_inflight_bytes 0\n"), "every byte given back");
}

/* ---- SIGTERM to `fhirgw serve` ---------------------------------------------------------------------- */

/* `fhirgw serve --dev` on one worker with the test PKI (tests/child_gateway.h). */
static cg_gateway start_fhirgw(char *dir, size_t dir_len, unsigned *fhir_port)
{
    snprintf(dir, dir_len, "/tmp/fhirgw-srv-bin-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cfg[512], log[512], dev[512], err[4096];
    snprintf(dev, sizeof dev, "%s/dev", dir);
    rp_copy(dev);
    snprintf(cfg, sizeof cfg, "%s/fhirgw.conf", dir);
    FILE *f = fopen(cfg, "w");
    fputs("workers 1\ndrain_timeout_ms 20s\nrate_limit_per_second 0\naccess_log\n", f);
    fclose(f);
    snprintf(log, sizeof log, "%s/server.log", dir);
    srand((unsigned)getpid());
    *fhir_port = 10000 + (unsigned)rand() % 20000; /* below the ephemeral range, as tests/fhirkit/run.sh */
    cg_options o = {.fhirgw = FHIRGW_BIN,
                    .dev_dir = dev,
                    .port = *fhir_port,
                    .config = cfg,
                    .log = log,
                    .wait_ms = 60000}; /* under the sanitizers */
    cg_gateway g;
    cr_assert(cg_start(&g, &o, err, sizeof err), "%s", err);
    return g;
}

/* A collection Bundle whose $validate keeps the only worker busy for a while. */
static char *busy_bundle(size_t entries, size_t *len)
{
    static const char entry[] = "{\"resource\":{\"resourceType\":\"Patient\",\"active\":true,\"gender\":\"female\","
                                "\"birthDate\":\"1950-01-01\"}}";
    char *b = malloc(64 + entries * sizeof entry);
    size_t n = (size_t)sprintf(b, "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[");
    for (size_t i = 0; i < entries; i++)
        n += (size_t)sprintf(b + n, "%s%s", i ? "," : "", entry);
    n += (size_t)sprintf(b + n, "]}");
    *len = n;
    return b;
}

#define BIN_CONNS 5

/* No .timeout here: with a .timeout on a test, or on this second suite,
 * Criterion 2.4's runner leaked 48 bytes each and LeakSanitizer failed the
 * run. Every wait below is bounded on its own. */

Test(serve, sigterm_answers_every_request_already_received)
{
    char dir[64];
    cg_gateway gw = start_fhirgw(dir, sizeof dir, &port);
    raw_tls t[BIN_CONNS];
    size_t cap = 1024 * 1024;
    char *buf = malloc(cap);
    for (int i = 0; i < BIN_CONNS; i++) {
        cr_assert(raw_connect(&t[i], "hospital-a", 0));
        raw_send(&t[i], "GET /Patient/none HTTP/1.1\r\nHost: x\r\n\r\n");
        raw_read_answer(&t[i], buf, cap, 10000);
        cr_assert(strncmp(buf, "HTTP/1.1 404 ", 13) == 0, "%s", buf);
    }
    size_t len;
    char *bundle = busy_bundle(10000, &len);
    char head[256];
    snprintf(head, sizeof head,
             "POST /Bundle/$validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
             "Content-Length: %zu\r\n\r\n",
             len);
    raw_send(&t[0], head);
    cr_assert_eq(SSL_write(t[0].ssl, bundle, (int)len), (int)len);
    free(bundle);
    sleep_ms(200); /* the worker validates */
    for (int i = 1; i < BIN_CONNS; i++)
        raw_send(&t[i], "GET /Patient?_count=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep_ms(100); /* received, waiting for the busy worker */
    char err[256];
    cr_assert(cg_kill(&gw, SIGTERM, err, sizeof err), "%s", err);
    for (int i = 0; i < BIN_CONNS; i++) {
        raw_read_all(&t[i], buf, cap, 20000);
        cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "request %d arrived before SIGTERM: '%.300s'", i, buf);
        raw_close(&t[i]);
    }
    free(buf);
    cr_assert_not(port_accepts(port), "no new connections after SIGTERM");
    int status = -1;
    bool reaped = cg_reap(&gw, 20000, &status, err, sizeof err);
    cr_assert(reaped && WIFEXITED(status) && WEXITSTATUS(status) == 0, "fhirgw serve stopped cleanly (status %d) %s",
              status, reaped ? "" : err);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- Connection limit ----------------------------------------------------------------------------- */

static void one_connection(srv_config *cfg)
{
    cfg->max_connections = 1;
}

Test(server, over_the_connection_limit_is_503)
{
    stop_server();
    close(log_fd);
    unlink(log_path);
    start_server_with(one_connection);
    raw_tls first;
    cr_assert(raw_connect(&first, "gp", 0));
    answer a = {0};
    get("gp", "/echo", &a);
    assert_outcome(&a, 503);
    cr_assert(strcasestr(a.headers, "Retry-After: 1"));
    free(a.body);
    raw_close(&first);
    cr_assert(metrics_contain("fhirgw_connections_rejected_total 1"));
}

/* ---- Ops port --------------------------------------------------------------------------------------- */

Test(server, ops_endpoints)
{
    answer a = {0};
    get_ops("/healthz", &a);
    cr_assert_eq(a.status, 200);
    cr_assert_str_eq(a.body, "ok\n");

    get_ops("/readyz", &a);
    cr_assert_eq(a.status, 200);
    atomic_store(&not_ready, true);
    get_ops("/readyz", &a);
    assert_outcome(&a, 503);
    atomic_store(&not_ready, false);

    get_ops("/nope", &a);
    assert_outcome(&a, 404);

    answer e = {0};
    get("gp", "/echo", &e);
    free(e.body);
    get_ops("/metrics", &a);
    cr_assert_eq(a.status, 200);
    cr_assert(strcasestr(a.headers, "Content-Type: text/plain; version=0.0.4"));
    cr_assert(strstr(a.body, "# HELP fhirgw_http_requests_total "));
    cr_assert(strstr(a.body, "# TYPE fhirgw_http_requests_total counter\n"));
    cr_assert(strstr(a.body, "fhirgw_http_requests_total{route=\"echo\",status=\"200\"} 1\n"), "%s", a.body);
    cr_assert(strstr(a.body, "# TYPE fhirgw_http_request_duration_seconds histogram\n"));
    cr_assert(strstr(a.body, "fhirgw_http_request_duration_seconds_bucket{route=\"echo\",le=\"+Inf\"} 1\n"));
    cr_assert(strstr(a.body, "fhirgw_http_request_duration_seconds_count{route=\"echo\"} 1\n"));
    cr_assert(strstr(a.body, "# TYPE fhirgw_connections_open gauge\n"));
    free(a.body);
}

/* Load balancers and kubelets often send `Connection: close` or HTTP/1.0. */
static void get_ops_closing(const char *path, bool http10, answer *a)
{
    char url[512];
    ops_url(url, sizeof url, path);
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = http10 ? NULL : curl_slist_append(NULL, "Connection: close");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (http10)
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_0);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    perform(h, url, a);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
}

Test(server, ops_port_answers_clients_that_close)
{
    answer a = {0};
    for (int http10 = 0; http10 < 2; http10++) {
        for (int i = 0; i < 50; i++) {
            get_ops_closing("/healthz", http10, &a);
            cr_assert_eq(a.rc, CURLE_OK, "%s request %d: %s", http10 ? "HTTP/1.0" : "Connection: close", i,
                         curl_easy_strerror(a.rc));
            cr_assert_eq(a.status, 200);
            cr_assert_str_eq(a.body, "ok\n");
        }
        get_ops_closing("/metrics", http10, &a);
        cr_assert_eq(a.status, 200);
        cr_assert(strstr(a.body, "fhirgw_http_requests_total"), "%s", a.body);
    }
    free(a.body);
}

/* ---- Access log ------------------------------------------------------------------------------------- */

Test(server, access_log_has_no_query_or_body)
{
    CURL *h = client("gp");
    char url[256];
    fhir_url(url, sizeof url, "/echo/x?name=Jansen&birthdate=1950-01-01");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{\"secret\":\"BSN 999999999\"}");
    struct curl_slist *hdrs = curl_slist_append(NULL, "X-Request-ID: log-test-1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    answer a = {0};
    perform(h, url, &a);
    cr_assert_eq(a.status, 200);
    free(a.body);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    stop_server(); /* every line written */

    char log[8192] = "";
    FILE *f = fopen(log_path, "r");
    size_t n = fread(log, 1, sizeof log - 1, f);
    log[n] = '\0';
    fclose(f);
    cr_assert(strstr(log, "\"request_id\":\"log-test-1\""), "%s", log);
    cr_assert(strstr(log, "\"method\":\"POST\",\"path\":\"/echo/x\",\"status\":200"), "%s", log);
    cr_assert(strstr(log, "\"org\":\"Test Org\",\"ura\":\"90000201\""), "%s", log);
    cr_assert(strstr(log, "\"tls\":\"TLSv1.3\""), "%s", log);
    cr_assert_null(strstr(log, "Jansen"), "no query string in the log");
    cr_assert_null(strstr(log, "999999999"), "no body in the log");
    cr_assert_eq(log[n - 1], '\n');
}

/* ---- Pipelining and HEAD ------------------------------------------------------------------------------ */

Test(server, pipelined_requests_and_head)
{
    raw_tls t;
    cr_assert(raw_connect(&t, "gp", 0));
    const char *two = "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /echo/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    SSL_write(t.ssl, two, (int)strlen(two));
    char buf[8192];
    raw_read_all(&t, buf, sizeof buf, 3000);
    cr_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%s", buf);
    /* HEAD: Content-Length of the body that GET would send, but no body */
    const char *second = strstr(buf + 1, "HTTP/1.1 200 ");
    cr_assert_not_null(second, "two answers expected: %s", buf);
    cr_assert_eq(strncmp(second - 4, "\r\n\r\n", 4), 0, "the HEAD answer carries no body: %s", buf);
    cr_assert(strstr(second, "\"path\":\"/echo/second\""), "%s", second);
    cr_assert(strstr(second, "Connection: close\r\n"), "%s", second);
    raw_close(&t);
}

/* ---- Metrics module -------------------------------------------------------------------------------------- */

Test(metrics, families_series_and_exposition)
{
    mx_registry *reg = mx_registry_new();
    mx_family *c = mx_counter(reg, "t_total", "A counter with \\ and\nnewline.", "a,b");
    cr_assert_not_null(c);
    cr_assert_eq(mx_counter(reg, "t_total", "again", "a,b"), c, "same shape: the same family");
    cr_assert_null(mx_gauge(reg, "t_total", "clash", NULL), "same name, other type");
    cr_assert_null(mx_counter(reg, "bad name", "", NULL));
    cr_assert_null(mx_counter(reg, "t2", "", "le,__x"));
    mx_metric *s = mx_series(c, (const char *[]){"x\"y", "2"});
    mx_inc(s);
    mx_add(s, 41);
    cr_assert_eq(mx_value(s), 42);
    cr_assert_eq(mx_series(c, (const char *[]){"x\"y", "2"}), s);
    mx_family *g = mx_gauge(reg, "t_gauge", "G.", NULL);
    mx_gauge_add(mx_series(g, NULL), 5);
    mx_gauge_add(mx_series(g, NULL), -7);
    static const double bounds[] = {0.1, 1};
    mx_family *h = mx_histogram(reg, "t_seconds", "H.", NULL, bounds, 2);
    mx_observe(mx_series(h, NULL), 0.05);
    mx_observe(mx_series(h, NULL), 0.5);
    mx_observe(mx_series(h, NULL), 5);
    char *text = mx_render(reg, NULL);
    cr_assert(strstr(text, "# HELP t_total A counter with \\\\ and\\nnewline.\n# TYPE t_total counter\n"), "%s", text);
    cr_assert(strstr(text, "t_total{a=\"x\\\"y\",b=\"2\"} 42\n"), "%s", text);
    cr_assert(strstr(text, "t_gauge -2\n"), "%s", text);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.1\"} 1\nt_seconds_bucket{le=\"1\"} 2\n"
                           "t_seconds_bucket{le=\"+Inf\"} 3\nt_seconds_sum 5.55\nt_seconds_count 3\n"),
              "%s", text);
    free(text);
    /* label values past the series limit share one overflow series */
    char v[16];
    for (int i = 0; i < MX_MAX_SERIES + 10; i++) {
        snprintf(v, sizeof v, "%d", i);
        mx_inc(mx_series(c, (const char *[]){v, v}));
    }
    text = mx_render(reg, NULL);
    cr_assert(strstr(text, "t_total{a=\"overflow\",b=\"overflow\"} 11\n"), "%s", text);
    free(text);
    mx_registry_free(reg);
}

/* ---- Start-up errors ---------------------------------------------------------------------------------- */

Test(server, port_in_use_and_bad_files_are_reported)
{
    char err[512] = "", cert[512], key[512], ca[512];
    srv_config cfg;
    srv_config_defaults(&cfg);
    cfg.handler = test_handler;
    cfg.port = 0;
    cfg.ops_port = 0;
    cfg.cert_file = "/nonexistent/server.crt";
    cfg.key_file = "/nonexistent/server.key";
    cr_assert_null(srv_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/server.crt"), "%s", err);

    /* the port the fixture's server holds: refused, never silently shared (SO_REUSEPORT) */
    pki_path(cert, sizeof cert, "server.crt");
    pki_path(key, sizeof key, "server.key");
    pki_path(ca, sizeof ca, "ca-bundle.pem");
    cfg.cert_file = cert, cfg.key_file = key, cfg.ca_file = ca;
    cfg.port = port;
    cr_assert_null(srv_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "cannot listen"), "%s", err);

    answer a = {0};
    get("gp", "/echo", &a);
    cr_assert_eq(a.status, 200, "the running server is untouched");
    free(a.body);
}
