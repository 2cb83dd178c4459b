/*
 * bench/loadgen.c — a closed-loop HTTPS load generator that presents a client
 * certificate (wrk cannot), for bench/server.sh.
 *
 *   bench-loadgen --port N --cert F --key F --ca F [--host 127.0.0.1]
 *                 [--connections 64] [--threads 1] [--duration 10]
 *                 [--path /] [--method GET] [--body FILE] [--tls13-only]
 *   bench-loadgen --idle N --hold SECONDS ...   open N TLS connections, keep
 *                 them idle for SECONDS, then close (memory measurements)
 *
 * Each connection sends one request, waits for the whole answer (Content-
 * Length framing), records the latency and sends the next, over one
 * keep-alive TLS connection, until the duration ends. Handshakes happen
 * before the clock starts. Latencies go into a 1-microsecond-resolution
 * histogram up to MAX_LATENCY_US (slower answers count as that), so p50/p99
 * are exact. Loopback only by intent: the host must be a numeric address.
 *
 * Output, one line: requests=… errors=… non2xx=… seconds=… rps=… p50_us=…
 * p90_us=… p99_us=… max_us=… connections=…
 */
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/tls_loop.h"

#define MAX_LATENCY_US 2000000u /* histogram range: 2 s */
#define MAX_CONNECTIONS 20000u
#define MAX_THREADS 64u
#define MAX_DURATION_S 600u

typedef struct options {
    const char *host, *cert, *key, *ca, *path, *method, *body_file;
    unsigned port, connections, threads, duration_s, idle, hold_s;
    bool tls13_only;
} options;

typedef struct thread_ctx {
    const options *opt;
    const char *request;
    size_t request_len;
    tl_client *clients;
    unsigned count;
    uint32_t *histogram; /* MAX_LATENCY_US + 1 counters */
    uint64_t requests, errors, non2xx, max_us;
    pthread_t thread;
} thread_ctx;

static void die(const char *what)
{
    fprintf(stderr, "bench-loadgen: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* ---- Requests and answers (tls_loop.h drives the connections) ---------------------- */

static bool same_request(void *arg, tl_client *c, const char **request, size_t *len)
{
    (void)c;
    thread_ctx *t = arg;
    *request = t->request, *len = t->request_len;
    return true;
}

static void record(void *arg, tl_client *c, int status, const char *body, size_t body_len, uint64_t us)
{
    (void)c, (void)body, (void)body_len;
    thread_ctx *t = arg;
    if (us > MAX_LATENCY_US)
        us = MAX_LATENCY_US;
    t->histogram[us]++;
    if (us > t->max_us)
        t->max_us = us;
    t->requests++;
    if (status < 200 || status > 299)
        t->non2xx++;
}

static void *run_thread(void *arg)
{
    thread_ctx *t = arg;
    tl_handlers h = {same_request, record, t};
    t->errors += tl_run(t->clients, t->count, &h, tl_now() + t->opt->duration_s, NULL);
    return NULL;
}

static char *build_request(const options *o, size_t *len)
{
    char *body = NULL;
    size_t body_len = 0;
    if (o->body_file) {
        FILE *f = fopen(o->body_file, "rb");
        if (!f)
            die("cannot read --body");
        fseek(f, 0, SEEK_END);
        body_len = (size_t)ftell(f);
        rewind(f);
        body = malloc(body_len + 1);
        if (!body || fread(body, 1, body_len, f) != body_len)
            die("cannot read --body");
        fclose(f);
    }
    size_t cap = 512 + strlen(o->path) + body_len;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/fhir+json\r\n%s%s%.0zu%s\r\n",
                     o->method, o->path, body ? "Content-Type: application/fhir+json\r\n" : "",
                     body ? "Content-Length: " : "", body ? body_len : 0, body ? "\r\n" : "");
    if (body) {
        memcpy(req + n, body, body_len);
        n += (int)body_len;
    }
    free(body);
    *len = (size_t)n;
    return req;
}

/* ---- Report -------------------------------------------------------------------------- */

static uint64_t percentile(const uint64_t *hist, uint64_t total, double p)
{
    uint64_t rank = (uint64_t)(p * (double)total + 0.5), seen = 0;
    if (rank == 0)
        rank = 1;
    for (uint64_t us = 0; us <= MAX_LATENCY_US; us++)
        if ((seen += hist[us]) >= rank)
            return us;
    return MAX_LATENCY_US;
}

static void report(thread_ctx *threads, unsigned count, double seconds, unsigned connections)
{
    uint64_t *hist = calloc(MAX_LATENCY_US + 1, sizeof *hist);
    uint64_t requests = 0, errors = 0, non2xx = 0, max_us = 0;
    for (unsigned i = 0; i < count; i++) {
        for (uint64_t us = 0; us <= MAX_LATENCY_US; us++)
            hist[us] += threads[i].histogram[us];
        requests += threads[i].requests, errors += threads[i].errors, non2xx += threads[i].non2xx;
        if (threads[i].max_us > max_us)
            max_us = threads[i].max_us;
    }
    printf("requests=%llu errors=%llu non2xx=%llu seconds=%.2f rps=%.0f p50_us=%llu p90_us=%llu p99_us=%llu "
           "max_us=%llu connections=%u\n",
           (unsigned long long)requests, (unsigned long long)errors, (unsigned long long)non2xx, seconds,
           (double)requests / seconds, (unsigned long long)percentile(hist, requests, 0.50),
           (unsigned long long)percentile(hist, requests, 0.90), (unsigned long long)percentile(hist, requests, 0.99),
           (unsigned long long)max_us, connections);
    free(hist);
}

/* ---- Main ------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: bench-loadgen --port N --cert F --key F --ca F [--host IP] [--connections N] "
                    "[--threads N] [--duration S] [--path P] [--method M] [--body FILE] [--tls13-only] "
                    "[--idle N --hold S]\n");
    exit(2);
}

static void parse_args(int argc, char **argv, options *o)
{
    *o =
        (options){.host = "127.0.0.1", .path = "/", .method = "GET", .connections = 64, .threads = 1, .duration_s = 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--tls13-only") == 0) {
            o->tls13_only = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--host") == 0)
            o->host = v;
        else if (strcmp(a, "--port") == 0)
            o->port = (unsigned)atoi(v);
        else if (strcmp(a, "--cert") == 0)
            o->cert = v;
        else if (strcmp(a, "--key") == 0)
            o->key = v;
        else if (strcmp(a, "--ca") == 0)
            o->ca = v;
        else if (strcmp(a, "--connections") == 0)
            o->connections = (unsigned)atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o->threads = (unsigned)atoi(v);
        else if (strcmp(a, "--duration") == 0)
            o->duration_s = (unsigned)atoi(v);
        else if (strcmp(a, "--path") == 0)
            o->path = v;
        else if (strcmp(a, "--method") == 0)
            o->method = v;
        else if (strcmp(a, "--body") == 0)
            o->body_file = v;
        else if (strcmp(a, "--idle") == 0)
            o->idle = (unsigned)atoi(v);
        else if (strcmp(a, "--hold") == 0)
            o->hold_s = (unsigned)atoi(v);
        else
            usage();
    }
    if (!o->port || !o->cert || !o->key || !o->ca)
        usage();
    /* bounded by design: this tool must stop by itself and stay small */
    if (o->connections < 1 || o->connections > MAX_CONNECTIONS || o->idle > MAX_CONNECTIONS || o->threads < 1 ||
        o->threads > MAX_THREADS || o->duration_s > MAX_DURATION_S || o->hold_s > MAX_DURATION_S)
        usage();
    if (o->threads > o->connections)
        o->threads = o->connections;
}

/* Idle mode: hold N handshaken connections, print how many opened. */
static int run_idle(const options *o, SSL_CTX *ctx)
{
    tl_client *clients = calloc(o->idle, sizeof *clients);
    unsigned opened = 0;
    for (unsigned i = 0; i < o->idle; i++) {
        if (tl_open(&clients[i], ctx, o->host, o->port))
            opened++;
        free(clients[i].buf); /* the idle connection needs no read buffer */
        clients[i].buf = NULL;
    }
    printf("idle_connections=%u\n", opened);
    fflush(stdout);
    sleep(o->hold_s);
    for (unsigned i = 0; i < o->idle; i++)
        tl_close(&clients[i]);
    free(clients);
    return opened == o->idle ? 0 : 1;
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    char err[128];
    SSL_CTX *ctx = tl_context(o.cert, o.key, o.ca, o.tls13_only, err, sizeof err);
    if (!ctx)
        die(err);
    if (o.idle) {
        int rc = run_idle(&o, ctx);
        SSL_CTX_free(ctx);
        return rc;
    }
    size_t request_len;
    char *request = build_request(&o, &request_len);
    tl_client *clients = calloc(o.connections, sizeof *clients);
    thread_ctx *threads = calloc(o.threads, sizeof *threads);
    for (unsigned i = 0; i < o.connections; i++)
        if (!tl_open(&clients[i], ctx, o.host, o.port))
            die("cannot connect (is the server up, and the certificate accepted?)");
    for (unsigned i = 0, first = 0; i < o.threads; i++) {
        thread_ctx *t = &threads[i];
        t->opt = &o, t->request = request, t->request_len = request_len;
        t->count = o.connections / o.threads + (i < o.connections % o.threads);
        t->clients = clients + first;
        first += t->count;
        t->histogram = calloc(MAX_LATENCY_US + 1, sizeof *t->histogram);
    }
    double start = tl_now();
    for (unsigned i = 0; i < o.threads; i++)
        pthread_create(&threads[i].thread, NULL, run_thread, &threads[i]);
    for (unsigned i = 0; i < o.threads; i++)
        pthread_join(threads[i].thread, NULL);
    report(threads, o.threads, tl_now() - start, o.connections);
    for (unsigned i = 0; i < o.connections; i++)
        if (clients[i].ssl)
            tl_close(&clients[i]);
    for (unsigned i = 0; i < o.threads; i++)
        free(threads[i].histogram);
    free(threads);
    free(clients);
    free(request);
    SSL_CTX_free(ctx);
    return 0;
}
