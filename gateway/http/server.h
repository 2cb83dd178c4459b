/*
 * gateway/http/server.h — the HTTPS front: TLS with client certificates, HTTP/1.1,
 * one event loop per worker thread, plus a plain-HTTP ops listener
 * (prefix srv_).
 *
 * The server accepts mutually authenticated TLS connections (TLS 1.2 and 1.3
 * only), reads HTTP/1.1 requests within explicit limits and hands each one to
 * a handler callback on the worker thread that owns the connection. The
 * handler answers with srv_respond, at once or later from any thread. Every
 * error the server produces itself (400, 404, 405, 408, 413, 431, 500, 501,
 * 503) is a FHIR OperationOutcome (application/fhir+json).
 *
 *     srv_config cfg;
 *     srv_config_defaults(&cfg);
 *     cfg.cert_file = "server.crt"; cfg.key_file = "server.key";
 *     cfg.ca_file = "ca-bundle.pem"; cfg.crl_file = "crl.pem";
 *     cfg.handler = my_handler;
 *     srv_server *s = srv_new(&cfg, err, sizeof err);
 *     srv_start(s);          ... srv_stop(s) from a signal handler ...
 *     srv_wait(s);           drains, closes, joins the workers
 *     srv_free(s);
 *
 * Threads
 *   - srv_new, srv_start, srv_wait and srv_free are for the controlling thread.
 *   - srv_stop is async-signal-safe and may be called from any thread or from
 *     a signal handler, any number of times.
 *   - The handler runs on a worker thread; one worker never runs two handlers
 *     at once, different workers do. It must not block for long: slow work
 *     belongs on another thread, which then calls srv_respond.
 *   - srv_respond and the srv_set_* functions may be called from any thread,
 *     but for one request only by one thread at a time (whoever holds it).
 *   - The readiness callback runs on worker 0 (which also serves the ops port).
 *
 * Request lifetime (the rule that makes late answers safe)
 *   A srv_request is handed to the handler and stays valid, with everything it
 *   points to (headers, body, peer certificate), until srv_respond returns
 *   for it — even if the client disconnects meanwhile; the answer is then
 *   dropped quietly. Every request must be answered exactly once, and never
 *   touched after srv_respond. Requests still unanswered when the drain
 *   timeout ends have their connections closed; they remain valid until
 *   answered or until srv_free, which frees them. So: stop every thread that
 *   may still call srv_respond before srv_free.
 *
 * Memory
 *   srv_new copies nothing it does not need: file names are read in srv_new,
 *   and the config's pointers (handler_arg, metrics registry, readiness arg)
 *   must outlive the server. Response bodies passed to srv_respond must come
 *   from malloc; the server frees them. Header names/values are copied.
 *
 * Limits (all in srv_config, defaults in gateway/util/limits.h): header block bytes,
 * header count, body bytes, total connections, request time (headers+body
 * must arrive within it; also bounds the TLS handshake), keep-alive idle time,
 * write time (a client that does not read its answer), drain time on stop,
 * and the memory budget below.
 *
 * Memory budget (max_inflight_bytes)
 *   One counter for the whole server of the bytes it holds for requests and
 *   answers: request bodies as they are buffered (a body grows as its bytes
 *   arrive, never to its declared Content-Length up front, so a client that
 *   declares 16 MiB and sends nothing costs a few KiB), and answer bodies from
 *   srv_respond/srv_respond_stream until the kernel has taken them (bodies
 *   lent with srv_respond_static are shared and not counted). A request that
 *   arrives while the counter is at the budget, or whose body would take it
 *   past the budget, is answered 503 with Retry-After and an OperationOutcome
 *   and its connection closed. Answers are never refused: a handler's body is
 *   already in memory when it reaches the server; it counts, and new requests
 *   wait. The ops port is exempt (health checks must answer under pressure).
 *   /metrics: fhirgw_http_inflight_bytes (gauge) and
 *   fhirgw_http_budget_refusals_total. A body larger than the budget can
 *   never be accepted: keep max_body_bytes well below it.
 *
 * Stopping (srv_stop)
 *   Listeners close at once (new connections are refused by the kernel).
 *   Every request whose bytes reached the server before the stop is read and
 *   answered, also when its connection looked idle because its worker was busy
 *   in another handler, and so are pipelined requests already received; slow
 *   handlers may take up to drain_timeout_ms. Idle connections with nothing
 *   received are closed. Answers given while stopping carry
 *   `Connection: close` unless more received requests follow on the same
 *   connection.
 *
 * Access log: one JSON line per request, written by the project's logger
 * (gateway/util/log.h: every field escaped, nothing cut, one write(2) per line,
 * so O_APPEND keeps lines whole across workers) to access_log_fd:
 *   {"ts":"2025-06-01T12:00:00.123Z","level":"info","request_id":"…","worker":0,
 *    "method":"GET","path":"/CarePlan/1","status":200,"bytes":1234,"duration_us":812,
 *    "tls":"TLSv1.3","org":"Ziekenhuis Aa (test)","ura":"90000101"}
 * ts is when the request head was complete; "client_gone":true is added when
 * the client left before its answer.
 * Never the query string, never a body, never header values other than the
 * request id: the path of a FHIR read holds a logical id, not patient data.
 */
#ifndef GATEWAY_SERVER_H
#define GATEWAY_SERVER_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gateway/http/metrics.h"
#include "gateway/util/limits.h"

/* The numbers (limits, timeouts, watermarks) are rows of gateway/util/limits.h; these names are theirs. */
#define SRV_STREAM_LOW_WATER LIM(stream_low_water)   /* a stream's producer is asked for more below this */
#define SRV_STREAM_HIGH_WATER LIM(stream_high_water) /* ... and no more once this much is queued */
#define SRV_MAX_WORKERS LIM(max_workers)
#define SRV_REQUEST_ID_MAX LIM(request_id_max) /* longest X-Request-ID echoed */
#define SRV_ROUTE_MAX LIM(route_label_max)     /* longest route label (srv_set_route) */

/* TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 uses OpenSSL's
 * default suites (all AEAD). */
#define SRV_TLS12_CIPHERS                                                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct srv_server srv_server;
typedef struct srv_request srv_request;

/* Called on a worker thread for each complete request; must lead to exactly
 * one srv_respond(req, ...), now or later, from any thread. */
typedef void (*srv_handler)(srv_request *req, void *arg);

/* Readiness for /readyz: true = ready (200), false = 503. */
typedef bool (*srv_ready_fn)(void *arg);

typedef struct srv_config {
    /* FHIR port (TLS). */
    const char *address;      /* numeric IPv4/IPv6; default GW_DEFAULT_HOST */
    unsigned port;            /* 0 = ephemeral (see srv_port); default GW_DEFAULT_PORT */
    unsigned workers;         /* threads, each with its own event loop; 0 = number of cores */
    const char *cert_file;    /* server certificate chain (PEM), required */
    const char *key_file;     /* its private key (PEM), required */
    const char *ca_file;      /* trust anchors for client certificates (PEM) */
    const char *crl_file;     /* CRLs (PEM); NULL turns revocation checking OFF */
    bool require_client_cert; /* default true: no certificate, no handshake */

    /* Ops port (plain HTTP): /healthz, /readyz, /metrics. */
    bool ops_enabled;        /* default true */
    const char *ops_address; /* default GW_DEFAULT_HOST */
    unsigned ops_port;       /* 0 = ephemeral (see srv_ops_port); default GW_DEFAULT_OPS_PORT */
    srv_ready_fn ready;      /* NULL = ready while running */
    void *ready_arg;

    /* Limits (0 = the default: the row of the same name in gateway/util/limits.h). */
    size_t max_header_bytes;
    size_t max_headers;
    size_t max_body_bytes;
    unsigned max_connections;
    unsigned request_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned write_timeout_ms;
    unsigned drain_timeout_ms;
    size_t max_inflight_bytes; /* the memory budget (see "Memory budget") */
    size_t send_buffer_bytes;  /* SO_SNDBUF of client connections; 0 (the default) = the kernel's, autotuned */

    srv_handler handler; /* required */
    void *handler_arg;

    int access_log_fd;    /* -1 = no access log (the default) */
    mx_registry *metrics; /* NULL = the server makes (and frees) its own */
} srv_config;

/* Fill in every default (addresses, ports, limits, require_client_cert, ops). */
void srv_config_defaults(srv_config *cfg);

/* Load TLS material, bind both listeners. NULL with a sentence in err on failure.
 * Binding happens here, so a port conflict is reported before threads start. */
srv_server *srv_new(const srv_config *cfg, char *err, size_t errlen);

/* Start the worker threads. False (err filled) if a thread could not start;
 * the server is then stopped and only srv_wait/srv_free remain valid.
 * Sets SIGPIPE to SIG_IGN for the process (OpenSSL writes with write(2), and
 * a client's reset must not kill the gateway). */
bool srv_start(srv_server *srv, char *err, size_t errlen);

/* Begin a graceful stop: stop accepting, close idle connections, let
 * in-flight requests finish for up to drain_timeout_ms, then close the rest.
 * Async-signal-safe; returns at once. */
void srv_stop(srv_server *srv);

/* Wait until every worker has finished (after srv_stop). */
void srv_wait(srv_server *srv);

/* Free everything, unanswered requests included. After srv_wait (or without srv_start). */
void srv_free(srv_server *srv);

/* The bound ports (useful with port 0). */
unsigned srv_port(const srv_server *srv);
unsigned srv_ops_port(const srv_server *srv);

/* The registry the server counts into (the config's, or its own). */
mx_registry *srv_metrics(srv_server *srv);

/* ---- The request view (valid until srv_respond; see "Request lifetime") ---- */

const char *srv_req_method(const srv_request *req); /* "GET", as sent (methods are case-sensitive) */
const char *srv_req_path(const srv_request *req);   /* percent-decoded, no query; always starts with '/' */
const char *srv_req_query(const srv_request *req);  /* raw, after '?', not decoded; "" when none */
const char *srv_req_header(const srv_request *req, const char *name); /* case-insensitive; first; NULL if absent */
size_t srv_req_header_count(const srv_request *req);
bool srv_req_header_at(const srv_request *req, size_t i, const char **name, const char **value);
const unsigned char *srv_req_body(const srv_request *req, size_t *len); /* NUL-terminated for convenience */
X509 *srv_req_peer_cert(const srv_request *req); /* verified; NULL on the ops port; do not free */
/* The request id: the client's X-Request-ID when it is 1..SRV_REQUEST_ID_MAX of [A-Za-z0-9._:-], else 32
 * random hex digits. An id that is longer or has other characters is not echoed at all (never cut or cleaned
 * up into a different id that might match another request's); the access log line says
 * "request_id_refused":"too-long" or "malformed". */
const char *srv_req_id(const srv_request *req);
unsigned srv_req_worker(const srv_request *req);          /* 0 .. workers-1 */
struct timespec srv_req_received(const srv_request *req); /* CLOCK_REALTIME when the head was complete */
const char *srv_req_tls_version(const srv_request *req);  /* "TLSv1.3", or "" on the ops port */

/* ---- Answering ----------------------------------------------------------------- */

/* Add a response header (copied). False for names that are not tokens, values
 * with CR, LF or NUL (header injection), or the headers the server writes
 * itself: Content-Length, Transfer-Encoding, Connection, Date, X-Request-ID. */
bool srv_set_header(srv_request *req, const char *name, const char *value);

/* Route label for metrics (copied; "other" when unset). Use a small fixed
 * vocabulary such as the interaction name, never an id. A label longer than
 * SRV_ROUTE_MAX bytes is refused (false; the label stays as it was), never cut. */
bool srv_set_route(srv_request *req, const char *route);

/* Who called, for the access log (copied; either may be NULL). An organisation
 * longer than organisation_name_max bytes (gateway/util/limits.h) or a URA longer than 8 is refused
 * (false; nothing is set), never cut. */
bool srv_set_caller(srv_request *req, const char *organisation, const char *ura);

/* Send the answer and release the request. body must come from malloc (or be
 * NULL with len 0); the server owns it from now on, also on failure. For HEAD
 * the body is counted in Content-Length but not sent. Any thread. */
void srv_respond(srv_request *req, int status, char *body, size_t len);

/* The same with a body the server does not own and never frees: it must stay
 * valid and unchanged until the server is freed (a prebuilt answer such as the
 * CapabilityStatement, sent without copying it per request). Any thread. */
void srv_respond_static(srv_request *req, int status, const char *body, size_t len);

/* ---- Streaming answers ----------------------------------------------------------- *
 *
 * For answers too large to build in one piece (a search page of thousands of
 * resources, an export): the handler gives a producer instead of a body, and
 * the server asks it for the next piece whenever the connection's output has
 * drained below SRV_STREAM_LOW_WATER, until SRV_STREAM_HIGH_WATER is queued.
 * Between pieces the worker serves its other connections, and at most about
 * SRV_STREAM_HIGH_WATER bytes of the answer are in memory at any time (a slow
 * reader slows the producer down instead of growing a buffer). The body goes
 * out with chunked transfer coding (HTTP/1.1), or close-delimited to an
 * HTTP/1.0 client; HEAD, 204 and 304 get the head only.
 *
 *     typedef struct page { st_cursor *cur; int state; } page;   // the handler's own
 *
 *     static srv_stream_status produce(srv_stream *out, void *arg)
 *     {
 *         page *p = arg;
 *         if (p->state == 0) { srv_stream_write(out, "{\"resourceType\":\"Bundle\",...,\"entry\":[", n); p->state = 1; }
 *         // one resource (or a few) per call keeps each call short
 *         if (next_row(p->cur, &json, &len)) { srv_stream_write(out, json, len); return SRV_STREAM_MORE; }
 *         srv_stream_write(out, "]}", 2);
 *         return SRV_STREAM_DONE;
 *     }
 *     static void release(void *arg) { page *p = arg; st_cursor_close(p->cur); free(p); }
 *
 *     // in the handler, after the query has been planned and authorised:
 *     srv_set_header(req, "Content-Type", "application/fhir+json");
 *     srv_respond_stream(req, 200, produce, release, p);
 *
 * Search and history (gateway/rest/rest_search.c) work this way: the handler
 * parses, authorises and reads the page's first chunk of rows (so a failing
 * query still gets its status), the producer writes the Bundle's opening (id,
 * type, total), then entries from the stored JSON, reading the next chunk
 * from the store as one runs out, and finishes with the links and the
 * closing brackets. Everything that can fail before the first byte
 * (parameters, authorisation, the count) must be decided before
 * srv_respond_stream: once the head is sent the status cannot change, and a
 * failure later can only cut the body short.
 *
 * Contract
 *   - srv_respond_stream answers the request like srv_respond (exactly once,
 *     from any thread; the request must not be touched afterwards).
 *   - produce and release run on the worker thread that owns the connection,
 *     which is the thread that ran the handler: per-thread resources (a read
 *     connection to the store) may be used in them.
 *   - produce appends with srv_stream_write (copied; any size, but keep one
 *     call to about SRV_STREAM_LOW_WATER so other connections are not kept
 *     waiting) and returns SRV_STREAM_MORE (call me again), SRV_STREAM_DONE
 *     (the body is complete) or SRV_STREAM_ERROR (give up: the connection is
 *     closed without the final chunk, so the client sees a truncated answer,
 *     never a complete-looking wrong one). SRV_STREAM_MORE without having
 *     written anything counts as SRV_STREAM_ERROR (nothing would ever wake the
 *     producer again).
 *   - release(arg) is called exactly once after the last produce call, also
 *     when produce is never called (client gone, HEAD, 204/304, the server
 *     stopping or freed). arg must stay valid until then. release may be NULL.
 *   - The bytes written count against the memory budget until sent.
 */
typedef struct srv_stream srv_stream;
typedef enum srv_stream_status { SRV_STREAM_MORE, SRV_STREAM_DONE, SRV_STREAM_ERROR } srv_stream_status;
typedef srv_stream_status (*srv_producer)(srv_stream *out, void *arg);
typedef void (*srv_release)(void *arg);

void srv_respond_stream(srv_request *req, int status, srv_producer produce, srv_release release, void *arg);

/* Append body bytes (copied) from inside a producer. False on out of memory:
 * the producer should then return SRV_STREAM_ERROR. */
bool srv_stream_write(srv_stream *out, const void *data, size_t len);

/*
 * Run fn(arg) on the worker thread that owns req's connection, from its event
 * loop, soon after the call; from any thread. For work that finishes on
 * another thread (a store commit) but belongs on the worker: building the
 * answer, reading with the worker's resources. req must still be unanswered
 * (fn is expected to lead to its srv_respond). Posted functions run in the
 * order posted. Once the worker has stopped (after srv_stop's drain), or
 * when no memory is left for the hand-off, fn runs at once on the calling
 * thread instead: it always runs exactly once.
 */
void srv_post(srv_request *req, void (*fn)(void *arg), void *arg);

/* Answer with an OperationOutcome holding one issue (issue_type is an OO_*
 * code from fhir/outcome.h, e.g. "not-found"). Any thread. */
void srv_respond_outcome(srv_request *req, int status, const char *issue_type, const char *message);

/* The standard reason phrase of a status ("Not Found"), "Unknown" otherwise. */
const char *srv_status_reason(int status);

#endif
