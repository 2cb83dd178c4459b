/*
 * gateway/net/outbound.h — the gateway as an HTTPS client of other parties' endpoints (prefix ob_).
 *
 * Every outbound HTTP call of the gateway goes through here: pulling a care
 * plan from a provider's FHIR endpoint (pull mode, docs/rules.md), notifying
 * a receiver of a handover, anything later. libcurl does the work; this module
 * fixes how it is used, once:
 *
 *   - HTTPS only, mutual TLS: the gateway presents its client certificate
 *     (cert_file, key_file) and verifies the peer's server certificate against
 *     ca_file, name included. No redirects are followed.
 *   - Limits: a connect timeout (TCP plus TLS handshake), a total timeout per
 *     attempt, and a response size limit: the transfer is aborted as soon as
 *     the body would pass max_bytes (also when Content-Length announces it).
 *   - Retries with backoff: an attempt that could not connect, timed out, or
 *     got a 5xx is tried again up to `retries` more times, after backoff_ms,
 *     2*backoff_ms, ... A request is only retried when repeating it is safe:
 *     GET always; POST only when the connection failed before anything was
 *     sent, unless the caller marks it idempotent. 4xx, TLS failures and
 *     too-large answers are never retried (the next attempt would fail alike).
 *     The worst case of one call is therefore about
 *     (retries + 1) * timeout_ms + backoff_ms * (2^retries - 1).
 *   - One error value: a kind (unreachable, timeout, too-large, http-status,
 *     tls, invalid) and a message that says what failed and where (the URL's
 *     scheme, host and port; never its query, which may hold a patient
 *     reference, and never a body).
 *
 *     ob_config oc = ob_config_default();
 *     oc.cert_file = "outbound.crt"; oc.key_file = "outbound.key"; oc.ca_file = "ca-bundle.pem";
 *     ob_client *c = ob_client_new(&oc, &err);
 *     ob_response r;
 *     if (ob_get(c, "https://ehr.example/fhir/CarePlan/1", (const char *[]){"Accept: application/fhir+json", NULL},
 *                &r, &err))
 *         ... r.status (2xx), r.body (NUL-terminated), r.len ...
 *     else
 *         ... err.kind, err.message; for OB_HTTP_STATUS also r.status and r.body ...
 *     ob_response_free(&r);
 *     ob_client_free(c);
 *
 * Connections are kept alive between calls: a client keeps a small pool of
 * curl easy handles (each used by one call at a time) with their open
 * connections, and shares its DNS and TLS session caches among them; a call
 * to a host and port the client talked to recently takes an open connection
 * instead of a new TCP and TLS handshake. curl only reuses a connection for
 * the same host, port and TLS settings (CA, client certificate, key), and no
 * client shares anything with another. An idle connection is closed after
 * 60 s, or when the handle holding it needs room (4 per handle, 8 idle
 * handles per client); ob_client_free closes them all. A connection the peer
 * closed meanwhile costs no error: curl opens a new one, and when it only
 * notices after sending, sends the request again once on a new connection;
 * that is why a POST not marked idempotent always gets a new connection of
 * its own, so it is never sent twice (outbound.c says more).
 *
 * Threads: an ob_client may be shared by any number of threads calling
 * ob_get/ob_post/ob_send at once (its settings are immutable; the pool of
 * handles is locked, and as many calls as run at once each have a handle and
 * a connection of their own). curl_global_init runs once
 * per process, on the first ob_client_new (pthread_once); ob_global_init may
 * be called earlier from main while the process is still single-threaded,
 * which libcurl prefers. Calls block the calling thread for up to the worst
 * case above: do not call them on an HTTP worker thread of gateway/http
 * without accepting that its other connections wait (or call them from a
 * thread of your own and answer with srv_respond from there).
 *
 * Memory: ob_client_new copies the config's strings; the caller keeps its own.
 * An ob_response owns its body (ob_response_free, also after a failed call:
 * it is then empty or holds the refused answer of an OB_HTTP_STATUS).
 * ob_error is a value with a fixed-size message; nothing to free.
 */
#ifndef GATEWAY_NET_OUTBOUND_H
#define GATEWAY_NET_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/util/config.h"
#include "gateway/util/limits.h"

typedef enum ob_error_kind {
    OB_OK = 0,
    OB_UNREACHABLE, /* no connection: refused, no route, name not resolved, the peer hung up */
    OB_TIMEOUT,     /* the connect or the whole attempt took longer than allowed */
    OB_TOO_LARGE,   /* the answer's body would pass max_bytes */
    OB_HTTP_STATUS, /* the peer answered, with a status outside 2xx (ob_response holds it) */
    OB_TLS,         /* the handshake failed: the peer's certificate, ours, or the protocol */
    OB_INVALID      /* the call itself: not an https URL, a missing file, out of memory */
} ob_error_kind;

typedef struct ob_error {
    ob_error_kind kind;
    long status;       /* OB_HTTP_STATUS: the peer's status; otherwise 0 */
    unsigned attempts; /* attempts made (1 + retries used) */
    char message[LIM(outbound_message_max) + 1];
} ob_error;

typedef struct ob_config {
    const char *cert_file; /* the gateway's client certificate (PEM); NULL = none is presented */
    const char *key_file;  /* its private key (PEM) */
    const char *ca_file;   /* trust anchors for the peer's server certificate (PEM); required */
    unsigned connect_timeout_ms;
    unsigned timeout_ms; /* per attempt */
    size_t max_bytes;    /* answer body at most */
    unsigned retries;    /* further attempts at most */
    unsigned backoff_ms; /* pause before the first retry; doubles */
} ob_config;

typedef struct ob_response {
    long status;
    char *body; /* NUL-terminated (not counted in len); NULL when there was none */
    size_t len;
    char content_type[128]; /* the answer's Content-Type, "" when absent (cut if longer) */
} ob_response;

typedef struct ob_client ob_client;

/* The defaults of gateway/util/limits.h; no files set. */
ob_config ob_config_default(void);
/* The settings of the config file (outbound_cert, outbound_key, outbound_ca and the outbound_* limits).
 * The config's strings are pointed at, not copied: keep c alive until ob_client_new. */
ob_config ob_config_from(const gw_config *c);

/* curl_global_init, once per process (later calls do nothing); false if it failed. */
bool ob_global_init(void);

/* A client with these settings; NULL with err (OB_INVALID) when ca_file is missing, a file cannot be read,
 * or cert_file and key_file are not given together. */
ob_client *ob_client_new(const ob_config *cfg, ob_error *err);
void ob_client_free(ob_client *c);

typedef struct ob_request {
    const char *method;         /* "GET" or "POST" */
    const char *url;            /* https:// only */
    const char *const *headers; /* "Name: value" lines, NULL-ended; NULL = none */
    const char *body;           /* POST: the body (may be NULL with body_len 0) */
    size_t body_len;
    bool idempotent; /* POST: may be repeated after it was sent (GET always may) */
} ob_request;

/*
 * Make the call with retries. True when the final answer has a 2xx status: *out
 * then holds it. False otherwise, with err set; for OB_HTTP_STATUS *out holds
 * the peer's answer (status, body) as well. *out must be freed in both cases.
 */
bool ob_send(const ob_client *c, const ob_request *rq, ob_response *out, ob_error *err);
bool ob_get(const ob_client *c, const char *url, const char *const *headers, ob_response *out, ob_error *err);
bool ob_post(const ob_client *c, const char *url, const char *const *headers, const char *body, size_t len,
             ob_response *out, ob_error *err);

void ob_response_free(ob_response *r);

/* "unreachable", "timeout", "too-large", "http-status", "tls", "invalid" ("ok" for OB_OK). */
const char *ob_error_kind_name(ob_error_kind kind);

#endif
