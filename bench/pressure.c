/*
 * bench/pressure.c — hostile clients for bench/pressure.sh: many stalled
 * uploads, or a few clients asking for huge answers, over mutual TLS on
 * loopback. Bounded: every connection is closed after --hold seconds (or
 * when its answer is complete), and the whole run never exceeds --hold plus
 * --timeout seconds.
 *
 *   bench-pressure --port N --cert F --key F --ca F uploads
 *                  [--connections 64] [--declare BYTES] [--send BYTES] [--hold SECONDS]
 *       Each connection sends a POST head declaring --declare body bytes, then
 *       --send bytes of the body, and stalls for --hold seconds (the script
 *       samples the server's memory meanwhile). Prints how many were answered
 *       early (503 over the memory budget, 413, ...) and how many were held.
 *
 *   bench-pressure --port N --cert F --key F --ca F answers --path /Binary?_count=400
 *                  [--connections 4] [--timeout SECONDS]
 *       Each connection sends GET --path at the same time and reads the whole
 *       answer (Content-Length or chunked framing). Prints status and bytes of
 *       each answer.
 *
 * Loopback only by intent: the host is always 127.0.0.1.
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 1024
#define MAX_SECONDS 600

typedef struct options {
    const char *cert, *key, *ca, *mode, *path;
    unsigned port, connections, hold_s, timeout_s;
    size_t declare, send;
} options;

typedef struct tls_conn {
    SSL *ssl;
    int fd;
} tls_conn;

static SSL_CTX *ctx;

static void usage(void)
{
    fprintf(stderr, "usage: bench-pressure --port N --cert F --key F --ca F uploads|answers [options]\n"
                    "  uploads: --connections 64 --declare 16777216 --send 65536 --hold 5\n"
                    "  answers: --connections 4 --path /Binary?_count=400 --timeout 60\n");
    exit(2);
}

static size_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K')
        v *= 1024;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024;
    return (size_t)v;
}

static options parse_args(int argc, char **argv)
{
    options o =
        {.connections = 0, .hold_s = 5, .timeout_s = 60, .declare = 16u << 20, .send = 64u << 10, .path = "/metadata"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "uploads") || !strcmp(a, "answers")) {
            o.mode = a;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--port"))
            o.port = (unsigned)atoi(v);
        else if (!strcmp(a, "--cert"))
            o.cert = v;
        else if (!strcmp(a, "--key"))
            o.key = v;
        else if (!strcmp(a, "--ca"))
            o.ca = v;
        else if (!strcmp(a, "--path"))
            o.path = v;
        else if (!strcmp(a, "--connections"))
            o.connections = (unsigned)atoi(v);
        else if (!strcmp(a, "--hold"))
            o.hold_s = (unsigned)atoi(v);
        else if (!strcmp(a, "--timeout"))
            o.timeout_s = (unsigned)atoi(v);
        else if (!strcmp(a, "--declare"))
            o.declare = parse_size(v);
        else if (!strcmp(a, "--send"))
            o.send = parse_size(v);
        else
            usage();
    }
    if (!o.mode || !o.port || !o.cert || !o.key || !o.ca)
        usage();
    if (!o.connections)
        o.connections = !strcmp(o.mode, "uploads") ? 64 : 4;
    if (o.connections > MAX_CONNECTIONS || o.hold_s > MAX_SECONDS || o.timeout_s > MAX_SECONDS || o.send > o.declare)
        usage();
    return o;
}

static bool tls_open(tls_conn *c, unsigned port)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return false;
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    return SSL_connect(c->ssl) == 1;
}

static void tls_close(tls_conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

static bool write_all(tls_conn *c, const char *data, size_t len)
{
    while (len) {
        int n = SSL_write(c->ssl, data, len > (1u << 30) ? 1 << 30 : (int)len);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* ---- uploads ------------------------------------------------------------------ */

static int uploads(const options *o)
{
    tls_conn *c = calloc(o->connections, sizeof *c);
    char *body = malloc(o->send ? o->send : 1);
    memset(body, 'x', o->send);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      o->declare);
    unsigned opened = 0, sent_ok = 0;
    for (unsigned i = 0; i < o->connections; i++) {
        c[i].fd = -1;
        if (!tls_open(&c[i], o->port)) {
            tls_close(&c[i]);
            continue;
        }
        opened++;
        if (write_all(&c[i], head, (size_t)hn) && write_all(&c[i], body, o->send))
            sent_ok++;
    }
    fprintf(stderr, "bench-pressure: %u connections open, %u sent their %zu of %zu bytes; holding %u s\n", opened,
            sent_ok, o->send, o->declare, o->hold_s);
    printf("ready\n");
    fflush(stdout);
    sleep(o->hold_s);
    unsigned answered = 0, refused = 0, held = 0;
    for (unsigned i = 0; i < o->connections; i++) {
        if (!c[i].ssl)
            continue;
        struct pollfd p = {.fd = c[i].fd, .events = POLLIN};
        char buf[4096] = "";
        int n = 0;
        if (SSL_pending(c[i].ssl) > 0 || poll(&p, 1, 0) > 0)
            n = SSL_read(c[i].ssl, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = '\0';
            answered++;
            refused += strncmp(buf, "HTTP/1.1 503 ", 13) == 0;
        } else {
            held++;
        }
        tls_close(&c[i]);
    }
    printf("uploads=%u opened=%u answered_early=%u refused_503=%u held=%u\n", o->connections, opened, answered, refused,
           held);
    free(body);
    free(c);
    return 0;
}

/* ---- answers ------------------------------------------------------------------ */

typedef struct fetch {
    const options *o;
    int status;
    size_t bytes;
    double seconds;
} fetch;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read the whole answer; framing by Content-Length, chunked end, or close. Counts body bytes only roughly
 * for chunked (framing included): enough for a memory benchmark. */
static void *do_fetch(void *arg)
{
    fetch *f = arg;
    tls_conn c = {.fd = -1};
    double start = now_s();
    if (!tls_open(&c, f->o->port)) {
        tls_close(&c);
        return NULL;
    }
    char req[1024];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", f->o->path);
    struct timeval tv = {.tv_sec = f->o->timeout_s};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!write_all(&c, req, strlen(req))) {
        tls_close(&c);
        return NULL;
    }
    static _Thread_local char buf[1 << 16];
    char head[4096];
    size_t head_len = 0, total = 0;
    int n;
    while ((n = SSL_read(c.ssl, buf, sizeof buf)) > 0 && now_s() - start < f->o->timeout_s) {
        if (head_len < sizeof head - 1) {
            size_t take = (size_t)n < sizeof head - 1 - head_len ? (size_t)n : sizeof head - 1 - head_len;
            memcpy(head + head_len, buf, take);
            head_len += take;
            head[head_len] = '\0';
        }
        total += (size_t)n;
    }
    ERR_clear_error();
    f->status = head_len > 12 ? atoi(head + 9) : 0;
    const char *end = strstr(head, "\r\n\r\n");
    f->bytes = end ? total - (size_t)(end + 4 - head) : 0;
    f->seconds = now_s() - start;
    tls_close(&c);
    return NULL;
}

static int answers(const options *o)
{
    pthread_t th[MAX_CONNECTIONS];
    fetch *f = calloc(o->connections, sizeof *f);
    for (unsigned i = 0; i < o->connections; i++) {
        f[i].o = o;
        pthread_create(&th[i], NULL, do_fetch, &f[i]);
    }
    for (unsigned i = 0; i < o->connections; i++) {
        pthread_join(th[i], NULL);
        printf("answer %u: status=%d bytes=%zu seconds=%.2f\n", i, f[i].status, f[i].bytes, f[i].seconds);
    }
    free(f);
    return 0;
}

int main(int argc, char **argv)
{
    options o = parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o.key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1) {
        fprintf(stderr, "bench-pressure: cannot load the client certificate, key or CA\n");
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int rc = !strcmp(o.mode, "uploads") ? uploads(&o) : answers(&o);
    SSL_CTX_free(ctx);
    return rc;
}
