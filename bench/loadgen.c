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
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LATENCY_US 2000000u /* histogram range: 2 s */
#define MAX_CONNECTIONS 20000u
#define MAX_THREADS 64u
#define MAX_DURATION_S 600u
#define RESPONSE_MAX (64u * 1024 * 1024)

typedef struct options {
    const char *host, *cert, *key, *ca, *path, *method, *body_file;
    unsigned port, connections, threads, duration_s, idle, hold_s;
    bool tls13_only;
} options;

typedef struct client {
    SSL *ssl;
    int fd;
    char *buf;
    size_t len, cap;
    size_t sent; /* bytes of the request written so far */
    bool writing;
    struct timespec started;
} client;

typedef struct thread_ctx {
    const options *opt;
    SSL_CTX *ctx;
    const char *request;
    size_t request_len;
    client *clients;
    unsigned count;
    uint32_t *histogram; /* MAX_LATENCY_US + 1 counters */
    uint64_t requests, errors, non2xx, max_us;
    pthread_t thread;
} thread_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t since_us(const struct timespec *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)((ts.tv_sec - t->tv_sec) * 1000000 + (ts.tv_nsec - t->tv_nsec) / 1000);
}

static void die(const char *what)
{
    fprintf(stderr, "bench-loadgen: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* ---- Connections ------------------------------------------------------------- */

static SSL_CTX *make_ctx(const options *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, o->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1)
        die("cannot load the client certificate/key");
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1)
        die("cannot load the CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

/* Blocking connect and handshake; then the socket turns non-blocking. */
static bool open_client(const options *o, SSL_CTX *ctx, client *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1)
        die("--host must be a numeric IPv4 address");
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return false;
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    SSL_set1_host(c->ssl, "localhost");
    if (SSL_connect(c->ssl) != 1) {
        ERR_clear_error();
        return false;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->cap = 64 * 1024;
    c->buf = malloc(c->cap);
    return c->buf != NULL;
}

static void close_client(client *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* ---- Requests and answers ------------------------------------------------------ */

static void set_events(int ep, client *c, bool want_write)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write (the rest of) the request; false on a broken connection. */
static bool send_request(thread_ctx *t, int ep, client *c)
{
    if (!c->writing) {
        c->writing = true;
        c->sent = 0;
        clock_gettime(CLOCK_MONOTONIC, &c->started);
    }
    int n = SSL_write(c->ssl, t->request + c->sent, (int)(t->request_len - c->sent));
    if (n > 0) {
        c->sent += (size_t)n;
        if (c->sent == t->request_len) {
            c->writing = false;
            set_events(ep, c, false);
        }
        return true;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        set_events(ep, c, true);
        return true;
    }
    return false;
}

/* Length of a complete answer at the start of buf, 0 if incomplete, -1 if broken. */
static long complete_answer(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len > 65536 ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4;
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1)
        return -1;
    size_t body = 0;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
            body = strtoul(p + 15, NULL, 10);
            break;
        }
    }
    if (*status == 100) /* 100 Continue: skip it, the real answer follows */
        return (long)head;
    return head + body <= len ? (long)(head + body) : 0;
}

static void record(thread_ctx *t, uint64_t us, int status)
{
    if (us > MAX_LATENCY_US)
        us = MAX_LATENCY_US;
    t->histogram[us]++;
    if (us > t->max_us)
        t->max_us = us;
    t->requests++;
    if (status < 200 || status > 299)
        t->non2xx++;
}

/* Read what is there; on each complete answer record it and send the next request. */
static bool receive(thread_ctx *t, int ep, client *c, bool running)
{
    for (;;) {
        if (c->len == c->cap) {
            if (c->cap >= RESPONSE_MAX)
                return false;
            c->cap *= 2;
            char *grown = realloc(c->buf, c->cap);
            if (!grown)
                return false;
            c->buf = grown;
        }
        int n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            return false;
        }
        c->len += (size_t)n;
    }
    int status = 0;
    long used;
    while ((used = complete_answer(c->buf, c->len, &status)) > 0) {
        memmove(c->buf, c->buf + used, c->len - (size_t)used);
        c->len -= (size_t)used;
        if (status == 100)
            continue;
        record(t, since_us(&c->started), status);
        if (running && !send_request(t, ep, c))
            return false;
    }
    return used >= 0;
}

/* ---- Threads ----------------------------------------------------------------------- */

static void *run_thread(void *arg)
{
    thread_ctx *t = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (unsigned i = 0; i < t->count; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->clients[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, t->clients[i].fd, &ev);
        if (!send_request(t, ep, &t->clients[i]))
            t->errors++;
    }
    double stop_at = now_s() + t->opt->duration_s;
    unsigned active = t->count;
    struct epoll_event events[256];
    while (active && now_s() < stop_at) {
        int n = epoll_wait(ep, events, 256, 50);
        for (int i = 0; i < n; i++) {
            client *c = events[i].data.ptr;
            bool ok = true;
            if ((events[i].events & EPOLLOUT) && c->writing)
                ok = send_request(t, ep, c);
            if (ok && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                ok = receive(t, ep, c, true);
            if (!ok) {
                t->errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close_client(c);
                active--;
            }
        }
    }
    close(ep);
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
    client *clients = calloc(o->idle, sizeof *clients);
    unsigned opened = 0;
    for (unsigned i = 0; i < o->idle; i++) {
        clients[i].fd = -1;
        if (open_client(o, ctx, &clients[i]))
            opened++;
        free(clients[i].buf); /* the idle connection needs no read buffer */
        clients[i].buf = NULL;
    }
    printf("idle_connections=%u\n", opened);
    fflush(stdout);
    sleep(o->hold_s);
    for (unsigned i = 0; i < o->idle; i++)
        close_client(&clients[i]);
    free(clients);
    return opened == o->idle ? 0 : 1;
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = make_ctx(&o);
    if (o.idle) {
        int rc = run_idle(&o, ctx);
        SSL_CTX_free(ctx);
        return rc;
    }
    size_t request_len;
    char *request = build_request(&o, &request_len);
    client *clients = calloc(o.connections, sizeof *clients);
    thread_ctx *threads = calloc(o.threads, sizeof *threads);
    for (unsigned i = 0; i < o.connections; i++) {
        clients[i].fd = -1;
        if (!open_client(&o, ctx, &clients[i]))
            die("cannot connect (is the server up, and the certificate accepted?)");
    }
    for (unsigned i = 0, first = 0; i < o.threads; i++) {
        thread_ctx *t = &threads[i];
        t->opt = &o, t->ctx = ctx, t->request = request, t->request_len = request_len;
        t->count = o.connections / o.threads + (i < o.connections % o.threads);
        t->clients = clients + first;
        first += t->count;
        t->histogram = calloc(MAX_LATENCY_US + 1, sizeof *t->histogram);
    }
    double start = now_s();
    for (unsigned i = 0; i < o.threads; i++)
        pthread_create(&threads[i].thread, NULL, run_thread, &threads[i]);
    for (unsigned i = 0; i < o.threads; i++)
        pthread_join(threads[i].thread, NULL);
    report(threads, o.threads, now_s() - start, o.connections);
    for (unsigned i = 0; i < o.connections; i++)
        if (clients[i].ssl)
            close_client(&clients[i]);
    for (unsigned i = 0; i < o.threads; i++)
        free(threads[i].histogram);
    free(threads);
    free(clients);
    free(request);
    SSL_CTX_free(ctx);
    return 0;
}
