/*
 * tests/peer.h — a real HTTPS FHIR endpoint on loopback for tests (prefix peer_): the other side
 * of the gateway's outbound calls (gateway/net/outbound.h): a provider's own FHIR server in pull
 * mode, a receiver of notifications.
 *
 * It is gateway/http's server (mutual TLS: it asks for a client certificate chaining to the test
 * PKI's CA) with a handler of its own:
 *   - GET  {base}/Type/id          the resource put there with peer_put, else 404
 *   - GET  {base}/Type?name=value  a searchset Bundle of the resources of Type put there whose JSON
 *                                  text contains every value (a reference "Patient/p1" matches the
 *                                  resources that mention it); _-parameters are ignored
 *   - POST {base}/anything         recorded and answered 200 with an OperationOutcome (or a
 *                                  status set with peer_set_post_status), so it can play a receiver
 * where base is peer_base() (https://127.0.0.1:PORT/fhir). Every request is recorded (method,
 * path, query, body) and can be read back with peer_request_at.
 *
 * Modes (peer_set_mode, any time between requests):
 *   PEER_UP        as above
 *   PEER_DOWN      the listener is closed: connections are refused (the port stays reserved for
 *                  PEER_UP again)
 *   PEER_SLOW      every answer is held back slow_ms (on a thread of its own), then sent as in
 *                  PEER_UP
 *   PEER_500       every request: 500 with an OperationOutcome
 *   PEER_GARBAGE   every GET: 200 application/fhir+json whose body is not JSON
 *   PEER_INVALID   every GET of a resource: 200 with JSON that is not valid FHIR (an unknown
 *                  element, a resourceType that does not exist)
 *   PEER_OVERSIZE  every GET: 200 with a syntactically valid body of oversize_bytes
 *   PEER_FOREIGN   as PEER_UP, but served with a certificate of the foreign test CA (valid for
 *                  127.0.0.1, not signed by the CA the gateway trusts)
 *
 * Connections: peer_connections counts the TLS connections the peer accepted (handshakes completed)
 * since peer_start, across restarts; idle_timeout_ms makes the peer close a keep-alive connection
 * idle that long, as a real server does between a client's calls.
 *
 * Threads: the peer serves on its own worker threads; peer_set_mode, peer_put and the readers
 * are safe to call from the test while it serves. peer_free waits for delayed answers.
 *
 * Memory: the peer copies what it is given; peer_request_at's strings are owned by the peer
 * and valid until peer_free.
 */
#ifndef TESTS_PEER_H
#define TESTS_PEER_H

#include <stdbool.h>
#include <stddef.h>

typedef enum peer_mode {
    PEER_UP,
    PEER_DOWN,
    PEER_SLOW,
    PEER_500,
    PEER_GARBAGE,
    PEER_INVALID,
    PEER_OVERSIZE,
    PEER_FOREIGN
} peer_mode;

typedef struct peer_options {
    const char *pki_dir;      /* a folder made by certs/make-test-pki (required) */
    unsigned slow_ms;         /* PEER_SLOW's delay; 0 = 3000 */
    size_t oversize_bytes;    /* PEER_OVERSIZE's body; 0 = 2 MiB */
    unsigned idle_timeout_ms; /* an idle keep-alive connection is closed after this; 0 = the server's default */
} peer_options;

typedef struct peer peer;

typedef struct peer_request {
    const char *method, *path, *query, *body; /* query "" when none; body "" when none */
    size_t body_len;
} peer_request;

/* Start serving; NULL with a reason in err. */
peer *peer_start(const peer_options *opt, char *err, size_t errlen);
void peer_free(peer *p);

unsigned peer_port(const peer *p);
/* "https://127.0.0.1:PORT/fhir" (valid until peer_free). */
const char *peer_base(const peer *p);

/* Switch mode; false (with err) when the server could not be restarted. */
bool peer_set_mode(peer *p, peer_mode mode, char *err, size_t errlen);
/* Serve json at {base}/type/id (replacing an earlier one). */
void peer_put(peer *p, const char *type, const char *id, const char *json);
/* The status POSTs are answered with (default 200). */
void peer_set_post_status(peer *p, int status);

size_t peer_request_count(peer *p);
/* Request i (in arrival order); false when there is none. */
bool peer_request_at(peer *p, size_t i, peer_request *out);
/* Requests so far whose path is path (or starts with it when prefix). */
size_t peer_count_path(peer *p, const char *path, bool prefix);
/* TLS connections accepted (handshakes completed) since peer_start. */
size_t peer_connections(peer *p);

#endif
