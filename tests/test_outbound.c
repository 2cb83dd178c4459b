/*
 * tests/test_outbound.c — gateway/net/outbound.h against a real HTTPS peer on loopback
 * (tests/peer.h): mutual TLS, each error kind, retries and their limits, POST, threads, and
 * connection reuse (counted with peer_connections: the TLS connections the peer accepted).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/net/outbound.h"
#include "tests/peer.h"
#include "tests/run_pki.h"

static char dir[256];
static peer *pr;

static void path_of(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/pki/%s", dir, name);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/fhirgw-outbound-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char pki[300], err[256];
    snprintf(pki, sizeof pki, "%s/pki", dir);
    rp_copy(pki);
    peer_options po = {.pki_dir = pki, .slow_ms = 1200, .oversize_bytes = 64 * 1024};
    pr = peer_start(&po, err, sizeof err);
    cr_assert_not_null(pr, "%s", err);
    peer_put(pr, "Patient", "p1", "{\"resourceType\":\"Patient\",\"id\":\"p1\"}");
}

static void teardown(void)
{
    peer_free(pr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(outbound, .init = setup, .fini = teardown, .timeout = 60);

static char cert[320], key[320], ca[320];

/* A client with the gateway's outbound certificate; retries and timeouts short for the test. */
static ob_client *client(unsigned retries, unsigned timeout_ms)
{
    path_of(cert, sizeof cert, "outbound.crt");
    path_of(key, sizeof key, "outbound.key");
    path_of(ca, sizeof ca, "ca-bundle.pem");
    ob_config oc = ob_config_default();
    oc.cert_file = cert;
    oc.key_file = key;
    oc.ca_file = ca;
    oc.retries = retries;
    oc.backoff_ms = 10;
    oc.timeout_ms = timeout_ms;
    oc.connect_timeout_ms = timeout_ms;
    oc.max_bytes = 32 * 1024;
    ob_error err;
    ob_client *c = ob_client_new(&oc, &err);
    cr_assert_not_null(c, "%s", err.message);
    return c;
}

static char url[256];
static const char *at(const char *rest)
{
    snprintf(url, sizeof url, "%s%s", peer_base(pr), rest);
    return url;
}

static const char *const ACCEPT[] = {"Accept: application/fhir+json", NULL};

Test(outbound, get_over_mutual_tls)
{
    ob_client *c = client(2, 5000);
    ob_response r;
    ob_error err;
    cr_assert(ob_get(c, at("/Patient/p1"), ACCEPT, &r, &err), "%s", err.message);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"id\":\"p1\""), "%s", r.body);
    cr_expect(strstr(r.content_type, "application/fhir+json"), "%s", r.content_type);
    cr_expect_eq(err.attempts, 1);
    peer_request q;
    cr_assert(peer_request_at(pr, 0, &q));
    cr_expect_str_eq(q.method, "GET");
    cr_expect_str_eq(q.path, "/fhir/Patient/p1");
    ob_response_free(&r);
    ob_client_free(c);
}

Test(outbound, a_4xx_is_an_http_status_and_not_retried)
{
    ob_client *c = client(3, 5000);
    ob_response r;
    ob_error err;
    cr_assert_not(ob_get(c, at("/Patient/none"), ACCEPT, &r, &err));
    cr_expect_eq(err.kind, OB_HTTP_STATUS);
    cr_expect_eq(err.status, 404);
    cr_expect_eq(r.status, 404);
    cr_expect(r.body && strstr(r.body, "OperationOutcome"));
    cr_expect_eq(err.attempts, 1);
    cr_expect_eq(peer_request_count(pr), 1);
    cr_expect(strstr(err.message, "404"), "%s", err.message);
    ob_response_free(&r);
    ob_client_free(c);
}

Test(outbound, a_post_that_reached_the_peer_is_not_repeated)
{
    ob_client *c = client(2, 5000);
    char err_text[256];
    cr_assert(peer_set_mode(pr, PEER_500, err_text, sizeof err_text), "%s", err_text);
    ob_response r;
    ob_error err;
    const char *body = "{\"resourceType\":\"Parameters\"}";
    cr_assert_not(ob_post(c, at("/Task/$notify"), ACCEPT, body, strlen(body), &r, &err));
    cr_expect_eq(err.attempts, 1);
    cr_expect_eq(peer_request_count(pr), 1);
    ob_response_free(&r);
    ob_client_free(c);
}

Test(outbound, post_sends_headers_and_body)
{
    ob_client *c = client(0, 5000);
    ob_response r;
    ob_error err;
    const char *body = "{\"resourceType\":\"Parameters\",\"parameter\":[]}";
    const char *const headers[] = {"Content-Type: application/fhir+json", NULL};
    cr_assert(ob_post(c, at("/Task/$notify"), headers, body, strlen(body), &r, &err), "%s", err.message);
    cr_expect_eq(r.status, 200);
    peer_request q;
    cr_assert(peer_request_at(pr, 0, &q));
    cr_expect_str_eq(q.method, "POST");
    cr_expect_str_eq(q.body, body);
    cr_expect_eq(q.body_len, strlen(body));
    ob_response_free(&r);
    ob_client_free(c);
}

/* The failures of a call: the peer's mode, the client's retries and timeout, the error kind, the attempts
 * made, the requests the peer saw (ANY: not checked), and a text the message must hold. */
typedef struct failure {
    peer_mode mode;
    unsigned retries, timeout_ms;
    ob_error_kind kind;
    unsigned attempts;
    size_t requests;
    const char *says;
} failure;

#define ANY SIZE_MAX /* requests the peer saw: not checked */

static const failure FAILURES[] = {
    {PEER_500, 2, 5000, OB_HTTP_STATUS, 3, 3, "answered 500 after 3 attempts"}, /* retried, a bounded number */
    {PEER_DOWN, 1, 2000, OB_UNREACHABLE, 2, 0, "127.0.0.1"},                    /* connection refused */
    {PEER_SLOW, 0, 300, OB_TIMEOUT, 1, ANY, "300 ms"}, /* the request may or may not have arrived in time */
    {PEER_OVERSIZE, 2, 5000, OB_TOO_LARGE, 1, 1, "larger than 32768 bytes"}, /* aborted, not retried */
    {PEER_FOREIGN, 2, 5000, OB_TLS, 1, 0, "TLS"},                            /* refused in the handshake */
};

Test(outbound, each_failure_has_its_kind_and_bounds)
{
    char err_text[256];
    for (size_t i = 0; i < sizeof FAILURES / sizeof *FAILURES; i++) {
        const failure *f = &FAILURES[i];
        ob_client *c = client(f->retries, f->timeout_ms);
        cr_assert(peer_set_mode(pr, f->mode, err_text, sizeof err_text), "%s", err_text);
        size_t before = peer_request_count(pr);
        ob_response r;
        ob_error err;
        cr_expect_not(ob_get(c, at("/Patient/p1"), ACCEPT, &r, &err));
        cr_expect_eq(err.kind, f->kind, "mode %d: %s: %s", (int)f->mode, ob_error_kind_name(err.kind), err.message);
        cr_expect_eq(err.attempts, f->attempts, "mode %d: %s", (int)f->mode, err.message);
        cr_expect(f->requests == ANY || peer_request_count(pr) - before == f->requests, "mode %d", (int)f->mode);
        cr_expect(strstr(err.message, f->says), "mode %d: %s", (int)f->mode, err.message);
        cr_expect(f->kind != OB_HTTP_STATUS || (err.status == 500 && r.status == 500 && r.body), "mode %d",
                  (int)f->mode);
        cr_expect(f->kind == OB_HTTP_STATUS || !r.body, "mode %d: no body after a failed transfer", (int)f->mode);
        ob_response_free(&r);
        ob_client_free(c);
    }
    /* and back up on the same port */
    cr_assert(peer_set_mode(pr, PEER_UP, err_text, sizeof err_text), "%s", err_text);
    ob_client *c = client(0, 5000);
    ob_response r;
    ob_error err;
    cr_expect(ob_get(c, at("/Patient/p1"), ACCEPT, &r, &err), "%s", err.message);
    ob_response_free(&r);
    ob_client_free(c);
}

Test(outbound, only_https_and_readable_files)
{
    ob_client *c = client(0, 5000);
    ob_response r;
    ob_error err;
    cr_assert_not(ob_get(c, "http://127.0.0.1:1/x", ACCEPT, &r, &err));
    cr_expect_eq(err.kind, OB_INVALID);
    ob_response_free(&r);
    ob_client_free(c);
    ob_config oc = ob_config_default();
    oc.ca_file = "/nonexistent/ca.pem";
    cr_expect_null(ob_client_new(&oc, &err));
    cr_expect(strstr(err.message, "/nonexistent/ca.pem"), "%s", err.message);
    oc.ca_file = ca;
    oc.cert_file = cert; /* without its key */
    cr_expect_null(ob_client_new(&oc, &err));
}

static void *fetch_many(void *arg)
{
    ob_client *c = arg;
    size_t ok = 0;
    for (int i = 0; i < 5; i++) {
        ob_response r;
        ob_error err;
        char u[256];
        snprintf(u, sizeof u, "%s/Patient/p1", peer_base(pr));
        ok += ob_get(c, u, ACCEPT, &r, &err) && r.status == 200;
        ob_response_free(&r);
    }
    return (void *)ok;
}

Test(outbound, one_client_shared_by_threads)
{
    ob_client *c = client(0, 5000);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, fetch_many, c);
    size_t total = 0;
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        total += (size_t)ok;
    }
    cr_expect_eq(total, 20);
    cr_expect_eq(peer_request_count(pr), 20);
    ob_client_free(c);
}

/* ---- connection reuse ---------------------------------------------------------------- */

static const char *const JSON[] = {"Content-Type: application/fhir+json", NULL};
static const char NOTE[] = "{\"resourceType\":\"Parameters\"}";

static bool get_p1(const ob_client *c, const peer *p, ob_error *err)
{
    char u[256];
    snprintf(u, sizeof u, "%s/Patient/p1", peer_base(p));
    ob_response r;
    bool ok = ob_get(c, u, ACCEPT, &r, err) && r.status == 200;
    ob_response_free(&r);
    return ok;
}

static bool post_note(const ob_client *c, const peer *p, bool idempotent, ob_error *err)
{
    char u[256];
    snprintf(u, sizeof u, "%s/Task/$notify", peer_base(p));
    ob_request rq =
        {.method = "POST", .url = u, .headers = JSON, .body = NOTE, .body_len = strlen(NOTE), .idempotent = idempotent};
    ob_response r;
    bool ok = ob_send(c, &rq, &r, err) && r.status == 200;
    ob_response_free(&r);
    return ok;
}

/* A second peer on the same test PKI; idle_ms: it closes idle connections after that (0: its default). */
static peer *other_peer(unsigned idle_ms)
{
    char pki[300], err[256];
    snprintf(pki, sizeof pki, "%s/pki", dir);
    peer_options po = {.pki_dir = pki, .idle_timeout_ms = idle_ms};
    peer *p = peer_start(&po, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    peer_put(p, "Patient", "p1", "{\"resourceType\":\"Patient\",\"id\":\"p1\"}");
    return p;
}

Test(outbound, sequential_calls_take_one_connection)
{
    ob_client *c = client(0, 5000);
    ob_error err;
    for (int i = 0; i < 5; i++)
        cr_assert(get_p1(c, pr, &err), "call %d: %s", i, err.message);
    for (int i = 0; i < 3; i++)
        cr_assert(post_note(c, pr, true, &err), "post %d: %s", i, err.message);
    cr_expect_eq(peer_request_count(pr), 8);
    cr_expect_eq(peer_connections(pr), 1, "8 calls, %zu connections", peer_connections(pr));
    ob_client_free(c);
}

Test(outbound, a_post_that_may_not_be_repeated_gets_a_fresh_connection)
{
    ob_client *c = client(0, 5000);
    ob_error err;
    cr_assert(get_p1(c, pr, &err), "%s", err.message);
    cr_assert(post_note(c, pr, false, &err), "%s", err.message);
    cr_expect_eq(peer_connections(pr), 2, "%zu connections", peer_connections(pr));
    /* the connection it opened is kept: the next calls need no new one */
    cr_assert(get_p1(c, pr, &err), "%s", err.message);
    cr_assert(get_p1(c, pr, &err), "%s", err.message);
    cr_expect_eq(peer_connections(pr), 2, "%zu connections", peer_connections(pr));
    ob_client_free(c);
}

Test(outbound, threads_reuse_connections)
{
    ob_client *c = client(0, 5000);
    for (int round = 0; round < 2; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, fetch_many, c);
        size_t total = 0;
        for (int i = 0; i < 4; i++) {
            void *ok;
            pthread_join(t[i], &ok);
            total += (size_t)ok;
        }
        cr_expect_eq(total, 20, "round %d", round);
    }
    cr_expect_eq(peer_request_count(pr), 40);
    /* at most one connection per call running at once (4), not one per call (40) */
    size_t n = peer_connections(pr);
    cr_expect(n >= 1 && n <= 4, "40 calls from 4 threads, %zu connections", n);
    ob_client_free(c);
}

/* The peer down and up again: every connection the client keeps to it is closed. */
static void restart(peer *p)
{
    char err[256];
    cr_assert(peer_set_mode(p, PEER_DOWN, err, sizeof err), "%s", err);
    cr_assert(peer_set_mode(p, PEER_UP, err, sizeof err), "%s", err);
}

Test(outbound, a_peer_restarted_between_calls_still_gets_the_next_call)
{
    ob_client *c = client(0, 5000); /* no retries of ob_send: a dead cached connection must not cost the call */
    ob_error err;
    cr_assert(get_p1(c, pr, &err), "%s", err.message);
    cr_assert(post_note(c, pr, true, &err), "%s", err.message);
    restart(pr);
    cr_expect(get_p1(c, pr, &err), "GET after the restart: %s", err.message);
    cr_expect_eq(err.attempts, 1);
    restart(pr);
    cr_expect(post_note(c, pr, true, &err), "POST after the restart: %s", err.message);
    cr_expect_eq(err.attempts, 1);
    cr_expect_eq(peer_count_path(pr, "/fhir/Task/$notify", false), 2, "each POST arrived once");
    cr_expect_eq(peer_connections(pr), 3, "%zu connections", peer_connections(pr));
    ob_client_free(c);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

Test(outbound, a_peer_that_closed_an_idle_connection_still_gets_the_next_call)
{
    peer *quick = other_peer(200);
    ob_client *c = client(0, 5000);
    ob_error err;
    for (int i = 0; i < 3; i++) {
        cr_assert(get_p1(c, quick, &err), "GET %d: %s", i, err.message);
        sleep_ms(700); /* the peer closes the idle connection meanwhile */
        cr_expect(post_note(c, quick, true, &err), "POST %d: %s", i, err.message);
        cr_expect_eq(err.attempts, 1);
        sleep_ms(700);
    }
    cr_expect_eq(peer_count_path(quick, "/fhir/Task/$notify", false), 3, "each POST arrived once");
    cr_expect_eq(peer_connections(quick), 6, "%zu connections", peer_connections(quick));
    ob_client_free(c);
    peer_free(quick);
}

Test(outbound, another_peer_gets_its_own_connection)
{
    peer *second = other_peer(0);
    ob_client *c = client(0, 5000);
    ob_error err;
    for (int i = 0; i < 3; i++) {
        cr_assert(get_p1(c, pr, &err), "%s", err.message);
        cr_assert(get_p1(c, second, &err), "%s", err.message);
        cr_assert(post_note(c, second, true, &err), "%s", err.message);
    }
    cr_expect_eq(peer_request_count(pr), 3);
    cr_expect_eq(peer_request_count(second), 6);
    cr_expect_eq(peer_connections(pr), 1, "%zu connections", peer_connections(pr));
    cr_expect_eq(peer_connections(second), 1, "%zu connections", peer_connections(second));
    ob_client_free(c);
    peer_free(second);
}

Test(outbound, clients_do_not_share_connections)
{
    ob_client *a = client(0, 5000), *b = client(0, 5000);
    ob_error err;
    for (int i = 0; i < 3; i++) {
        cr_assert(get_p1(a, pr, &err), "%s", err.message);
        cr_assert(get_p1(b, pr, &err), "%s", err.message);
    }
    cr_expect_eq(peer_connections(pr), 2, "%zu connections", peer_connections(pr));
    ob_client_free(a);
    ob_client_free(b);
}
