/*
 * bench/tls_loop.h — closed-loop HTTPS clients on one epoll thread, the load
 * side of the benchmarks (bench-loadgen, bench-handover).
 *
 * Each client is one keep-alive TLS connection with a client certificate. It
 * sends a request, waits for the whole answer (Content-Length framing; a 100
 * Continue is passed over), hands it to `answered` and asks `next` for the
 * following request, until `next` says stop, the connection breaks, the
 * deadline passes or *stop is set. One thread drives any number of clients,
 * so a load of 64 connections costs the benchmark's machine a fraction of
 * what 64 blocking client threads cost: on a 2-core machine the load
 * generator shares the cores with the server it measures.
 *
 * Memory: a client owns its SSL, socket and read buffer (tl_close frees
 * them); a request belongs to the caller and must stay unchanged until its
 * answer has been handed to `answered`. The body passed to `answered` lives
 * until the callback returns.
 */
#ifndef BENCH_TLS_LOOP_H
#define BENCH_TLS_LOOP_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct tl_client {
    SSL *ssl;
    int fd;
    char *buf; /* what has arrived and is not yet an answer */
    size_t len, cap;
    const char *request; /* the request being sent or answered */
    size_t request_len, sent;
    bool writing;
    struct timespec started; /* when its first byte went out */
    unsigned index;          /* the caller's: which client this is */
} tl_client;

typedef struct tl_handlers {
    /* The next request of c (head and body, as bytes on the wire), or false to stop this client. */
    bool (*next)(void *arg, tl_client *c, const char **request, size_t *len);
    /* The whole answer to c's request, and the microseconds since its first byte was written. */
    void (*answered)(void *arg, tl_client *c, int status, const char *body, size_t body_len, uint64_t us);
    void *arg;
} tl_handlers;

/* A client context presenting cert/key and trusting ca; NULL with err filled. */
SSL_CTX *tl_context(const char *cert, const char *key, const char *ca, bool tls13_only, char *err, size_t errlen);

/* Connects to host (a numeric IPv4 address) and port and shakes hands, blocking; then the socket turns
 * non-blocking. False when it cannot (c is then closed). */
bool tl_open(tl_client *c, SSL_CTX *ctx, const char *host, unsigned port);

void tl_close(tl_client *c);

/* Drives the clients until each has stopped, deadline (CLOCK_MONOTONIC seconds, 0: none) has passed or
 * *stop (may be NULL) is set. A request in flight then is dropped, unanswered. Returns how many
 * connections broke (those clients are closed). */
uint64_t tl_run(tl_client *clients, unsigned count, const tl_handlers *h, double deadline, const atomic_bool *stop);

/* CLOCK_MONOTONIC in seconds. */
double tl_now(void);

#endif
