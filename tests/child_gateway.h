/*
 * tests/child_gateway.h — the real gateway as a child process, and an HTTPS
 * client as an organisation of the test PKI: what the benchmarks
 * (bench/pull.c, bench/handover.c) and the tests that run the binary
 * (tests/test_handover_kill.c, tests/test_server.c) share. No Criterion here:
 * every call returns false (or status 0) with a message, and a test wraps it
 * in cr_assert.
 *
 *   cg_make_pki      certs/make-test-pki DIR
 *   cg_start         `fhirgw serve --dev DIR --port P [--config FILE]`, its
 *                    output to a log file, and waits until it serves
 *   cg_kill/cg_reap  a signal, and waiting for the exit (cg_stop: both)
 *   cg_client_*      one keep-alive libcurl handle with mutual TLS as
 *                    DIR/clients/<who>.crt, trusting DIR/ca.pem
 *
 * The port is the caller's choice and not 0: `serve` logs its configured base
 * URL, so an ephemeral port could not be learned from the log.
 *
 * Memory: cg_gateway and cg_client live where the caller puts them; the
 * strings of cg_options are borrowed for the call only. A client owns its
 * curl handle, its header lists and the body of the last answer (c->body,
 * NUL-terminated or NULL, valid until the next request or cg_client_close).
 * curl_global_init is the caller's, before the first client.
 */
#ifndef TESTS_CHILD_GATEWAY_H
#define TESTS_CHILD_GATEWAY_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- the test PKI ---- */

/* Runs `script dir` (certs/make-test-pki), its output discarded. */
bool cg_make_pki(const char *script, const char *dir, char *err, size_t errlen);

/* ---- the gateway ---- */

typedef struct cg_options {
    const char *fhirgw;     /* the binary */
    const char *dev_dir;    /* serve --dev DIR: the PKI (made by serve when absent) and the database */
    unsigned port;          /* --port, not 0 */
    const char *config;     /* --config FILE, or NULL */
    const char *log;        /* the child's stderr, truncated first */
    bool stdout_to_null;    /* stdout to /dev/null; else to the log as well */
    const char *pki_script; /* FHIRGW_PKI_SCRIPT in the child's environment, or NULL */
    const char *ready_as;   /* NULL: ready when the log says "serving"; else when GET /metadata answers 200
                               to this organisation (dev_dir/clients/<ready_as>.crt) */
    int wait_ms;            /* how long to wait for it */
} cg_options;

typedef struct cg_gateway {
    pid_t pid; /* -1: not running (or reaped) */
    unsigned port;
} cg_gateway;

/* Starts the gateway and waits until it serves. On false it has been killed and reaped (g->pid is -1) and err
 * says why, with as much of the log as fits when it exited. */
bool cg_start(cg_gateway *g, const cg_options *o, char *err, size_t errlen);

/* Sends sig to the running gateway. */
bool cg_kill(const cg_gateway *g, int sig, char *err, size_t errlen);

/* Waits for the gateway's exit: up to timeout_ms (< 0: for as long as it takes). Its wait status in *status
 * (may be NULL); g->pid becomes -1. False when it did not exit in time (it is left running). */
bool cg_reap(cg_gateway *g, int timeout_ms, int *status, char *err, size_t errlen);

/* cg_kill and an unbounded cg_reap; true at once when nothing runs. */
bool cg_stop(cg_gateway *g, int sig, int *status, char *err, size_t errlen);

/* CPU seconds (user + system, all threads) the running gateway has used so far, from /proc/PID/stat; -1 when
 * unknown. For benchmarks that set the gateway's work beside their own. */
double cg_cpu_seconds(const cg_gateway *g);

/* CPU seconds of the running gateway's threads by role (gateway/util/thread_name.h: "http-0" and "http-1" count
 * as "http"), from /proc/PID/task/N/schedstat: at most max roles into roles, sorted by name; the count (0 when
 * unknown). A thread that has exited is not counted. */
typedef struct cg_role_cpu {
    char role[16];
    double seconds;
} cg_role_cpu;
size_t cg_role_cpu_seconds(const cg_gateway *g, cg_role_cpu *roles, size_t max);

/* ---- an organisation's HTTPS client ---- */

typedef struct cg_client {
    CURL *curl;
    struct curl_slist *headers; /* sent with a body: Content-Type, and what cg_client_header added */
    char base[48];              /* https://127.0.0.1:PORT */
    const char *accept;         /* an Accept header for the next requests, or NULL (libcurl's default) */
    char *body;                 /* the last answer's body, NUL-terminated; NULL when it had none */
    size_t len;
    size_t lines; /* newlines in it: the NDJSON lines of a streamed answer */
} cg_client;

/* A client as organisation `who` of the PKI in pki_dir, to https://127.0.0.1:port; requests time out after
 * timeout_s. */
bool cg_client_open(cg_client *c, const char *pki_dir, const char *who, unsigned port, long timeout_s, char *err,
                    size_t errlen);

/* One more header line sent with request bodies (e.g. "Expect:" against the 100-continue round trip). */
bool cg_client_header(cg_client *c, const char *line);

/* One request to a path ("/metadata") or a full URL (http:// for the operations port); body NULL for none, len 0 for strlen(body). The HTTP
 * status, 0 when no answer came (refused, cut, timed out); the answer in c->body. */
long cg_request(cg_client *c, const char *method, const char *path_or_url, const char *body, size_t len);

void cg_client_close(cg_client *c);

#endif
