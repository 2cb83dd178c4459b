/*
 * bench/tls_loop.c — see tls_loop.h.
 */
#define _GNU_SOURCE /* memmem */
#include "bench/tls_loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ANSWER_MAX (64u * 1024 * 1024) /* a longer answer breaks the connection */
#define HEAD_MAX 65536u

double tl_now(void)
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

SSL_CTX *tl_context(const char *cert, const char *key, const char *ca, bool tls13_only, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *why = !ctx ? "SSL_CTX_new failed"
                      : SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                              SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1
                          ? "cannot load the client certificate or key"
                      : SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ? "cannot load the CA file"
                                                                          : NULL;
    if (why) {
        snprintf(err, errlen, "%s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

bool tl_open(tl_client *c, SSL_CTX *ctx, const char *host, unsigned port)
{
    unsigned index = c->index;
    memset(c, 0, sizeof *c);
    c->index = index;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    c->fd = inet_pton(AF_INET, host, &sa.sin_addr) == 1 ? socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
    if (c->fd < 0)
        return false;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ssl = connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? SSL_new(ctx) : NULL;
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, "localhost") ||
        !SSL_set1_host(c->ssl, "localhost") || SSL_connect(c->ssl) != 1) {
        ERR_clear_error();
        tl_close(c);
        return false;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->cap = 64 * 1024;
    c->buf = malloc(c->cap);
    if (!c->buf) {
        tl_close(c);
        return false;
    }
    return true;
}

void tl_close(tl_client *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    unsigned index = c->index;
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->index = index;
}

/* ---- one client's request and answer ---- */

static void want(int ep, tl_client *c, bool write)
{
    struct epoll_event ev = {.events = EPOLLIN | (write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes (the rest of) the request; false on a broken connection. */
static bool send_more(int ep, tl_client *c)
{
    int n = SSL_write(c->ssl, c->request + c->sent, (int)(c->request_len - c->sent));
    if (n > 0) {
        c->sent += (size_t)n;
        if (c->sent == c->request_len) {
            c->writing = false;
            want(ep, c, false);
        }
        return true;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        want(ep, c, true);
        return true;
    }
    return false;
}

/* Starts c's next request; false when the caller has none (the client stops). */
static bool start_next(const tl_handlers *h, tl_client *c)
{
    if (!h->next(h->arg, c, &c->request, &c->request_len))
        return false;
    c->sent = 0;
    c->writing = true;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    return true;
}

/* Length of a complete answer at the start of buf (its body at *body), 0 if incomplete, -1 if broken. */
static long complete_answer(const char *buf, size_t len, int *status, size_t *body_at, size_t *body_len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len > HEAD_MAX ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4, body = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1)
        return -1;
    for (const char *p = buf; p < end; p++)
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
            body = strtoul(p + 15, NULL, 10);
            break;
        }
    if (*status == 100) /* 100 Continue: skip it, the real answer follows */
        return (long)head;
    if (body > ANSWER_MAX)
        return -1;
    *body_at = head, *body_len = body;
    return head + body <= len ? (long)(head + body) : 0;
}

typedef enum { GOING, STOPPED, BROKEN } client_state;

/* Reads what is there; each complete answer goes to the handler and the next request out. */
static client_state receive(const tl_handlers *h, int ep, tl_client *c)
{
    for (;;) {
        if (c->len == c->cap) {
            if (c->cap >= ANSWER_MAX)
                return BROKEN;
            char *grown = realloc(c->buf, c->cap * 2);
            if (!grown)
                return BROKEN;
            c->buf = grown, c->cap *= 2;
        }
        int n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            return BROKEN;
        }
        c->len += (size_t)n;
    }
    int status = 0;
    size_t body_at = 0, body_len = 0;
    long used;
    while ((used = complete_answer(c->buf, c->len, &status, &body_at, &body_len)) > 0) {
        if (status != 100) {
            h->answered(h->arg, c, status, c->buf + body_at, body_len, since_us(&c->started));
            if (!start_next(h, c))
                return STOPPED;
            if (!send_more(ep, c))
                return BROKEN;
        }
        memmove(c->buf, c->buf + used, c->len - (size_t)used);
        c->len -= (size_t)used;
    }
    return used < 0 ? BROKEN : GOING;
}

uint64_t tl_run(tl_client *clients, unsigned count, const tl_handlers *h, double deadline, const atomic_bool *stop)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t broken = 0;
    unsigned active = 0;
    for (unsigned i = 0; i < count; i++) {
        tl_client *c = &clients[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (!c->ssl || !start_next(h, c))
            continue;
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        active++;
        if (!send_more(ep, c)) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            tl_close(c);
            broken++, active--;
        }
    }
    struct epoll_event events[256];
    while (active && (!deadline || tl_now() < deadline) && !(stop && atomic_load(stop))) {
        int n = epoll_wait(ep, events, 256, 50);
        for (int i = 0; i < n; i++) {
            tl_client *c = events[i].data.ptr;
            client_state s = GOING;
            if ((events[i].events & EPOLLOUT) && c->writing && !send_more(ep, c))
                s = BROKEN;
            if (s == GOING && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                s = receive(h, ep, c);
            if (s == GOING)
                continue;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            active--;
            if (s == BROKEN)
                tl_close(c), broken++;
        }
    }
    close(ep);
    return broken;
}
