/*
 * gateway/http/server.c — the HTTPS front: listeners, workers, TLS, connections,
 * requests and answers (see server.h for the contract).
 *
 * Shape
 *   Each worker thread runs its own libevent event_base and owns everything
 *   attached to it: its listening socket (SO_REUSEPORT: the kernel spreads new
 *   connections over the workers' sockets, so no accept lock and no hand-off),
 *   its connections, and the requests its handlers hold. Worker 0 also owns
 *   the ops listener. No libevent object is ever touched by two threads, so
 *   libevent runs without its own locking.
 *
 *   The only ways into a worker from outside are its notify pipe and its two
 *   queues: srv_respond from a foreign thread appends the request to the done
 *   queue and srv_post a function to the posted queue (one mutex for both),
 *   writing one byte to the pipe when both were empty; srv_stop sets a flag
 *   and writes one byte (both async-signal-safe).
 *
 * Connection states
 *
 *   HANDSHAKE -> IDLE -> HEAD -> BODY -> HANDLER -> WRITING -> IDLE ...
 *                                  \       \     \            \-> close
 *                                   \       \     `-> STREAMING -> WRITING (srv_respond_stream)
 *                                    `-------`-> (error answer) WRITING -> LINGER -> close
 *
 *   One timer per connection: request_timeout in HANDSHAKE, HEAD and BODY
 *   (armed at accept and at the first byte of a request, never pushed back,
 *   so a slow client cannot keep it alive by trickling bytes), idle_timeout
 *   in IDLE, a short linger after error answers. WRITING is bounded by the
 *   bufferevent's write timeout. HANDLER has no timer: the handler's time.
 *   STREAMING is bounded by the write timeout too: the producer is only asked
 *   for more when the client has read what was queued.
 *
 * Memory budget
 *   srv_server.inflight counts request body capacity (grown as bytes arrive)
 *   and answer bytes queued on output buffers (given back by the buffers'
 *   cleanup callbacks once the kernel has them); see server.h.
 *
 * Request lifetime
 *   A request belongs to its connection while it is being read, to the
 *   handler from dispatch until srv_respond, and is freed once the answer is
 *   queued. If the connection dies while a handler holds the request, the
 *   connection only clears req->conn; the request lives on the worker's
 *   `live` list until it is answered (the answer is then dropped) or srv_free.
 *   req->conn is read and written on the worker thread only.
 */
#include "gateway/http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fhir/array.h"
#include "fhir/datetime.h"
#include "fhir/outcome.h"
#include "gateway/auth/identity.h"
#include "gateway/http/server_internal.h"
#include "gateway/util/log.h"
#include "gateway/util/thread_name.h"

/* Fixed limits (gateway/util/limits.h says what each bounds). */
#define LISTEN_BACKLOG LIM(listen_backlog)
#define OVERLOAD_GRACE LIM(overload_grace)
#define LINGER_MS LIM(linger_ms)
#define CHUNK_LINE_MAX LIM(chunk_line_max)
#define PAUSE_INPUT_BYTES LIM(pause_input_bytes)
#define BODY_INITIAL LIM(body_initial_bytes)
#define ACCEPT_RETRY_MS LIM(accept_retry_ms)
#define ORG_MAX ID_NAME_MAX

typedef enum conn_state { C_HANDSHAKE, C_IDLE, C_HEAD, C_BODY, C_HANDLER, C_STREAMING, C_WRITING, C_LINGER } conn_state;
typedef enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER } chunk_state;
/* STEP_AGAIN: progress was made, keep going (the chunked decoder's inner steps). */
typedef enum step { STEP_MORE, STEP_DONE, STEP_FAILED, STEP_AGAIN } step;

typedef struct worker worker;
typedef struct conn conn;

/* A function srv_post hands to a worker. */
typedef struct posted {
    void (*fn)(void *arg);
    void *arg;
    struct posted *next;
} posted;

struct srv_request {
    srv_server *srv;
    worker *w;
    conn *conn;               /* NULL once the client is gone (worker thread only) */
    srv_request *prev, *next; /* worker's live list while a handler holds it */
    srv_request *queue_next;  /* worker's done queue */

    char *head; /* the request head, parsed in place */
    http_head parsed;
    http_header *headers;
    char *path;
    const char *query;
    unsigned char *body;
    size_t body_len, body_cap; /* body_cap bytes are counted in the memory budget */
    X509 *peer;
    char id[SRV_REQUEST_ID_MAX + 1];
    const char *id_refused;   /* why the client's X-Request-ID was not echoed (static), NULL when it was */
    struct timespec received; /* realtime, head complete */
    struct timespec started;  /* monotonic, first byte */
    const char *tls_version;
    bool keep_alive, head_only;

    int status;
    char *resp_body;
    size_t resp_len;
    bool resp_borrowed;   /* resp_body belongs to the caller (srv_respond_static): never freed here */
    char *resp_headers;   /* "Name: value\r\n" ... */
    srv_producer produce; /* a streamed answer; NULL once released */
    srv_release release;
    void *stream_arg;
    bool stream_chunked; /* chunked coding (HTTP/1.1) or close-delimited (HTTP/1.0) */
    size_t streamed;     /* body bytes produced so far */
    size_t resp_headers_len, resp_headers_cap;
    char route[SRV_ROUTE_MAX + 1];
    char org[ORG_MAX];
    char ura[ID_URA_LEN + 1];
};

struct conn {
    worker *w;
    struct bufferevent *bev;
    SSL *ssl; /* NULL on the ops port; freed with bev */
    conn *prev, *next;
    conn_state state;
    struct event *timer;
    srv_request *req;
    bool ops, over_limit, close_after, linger;
    size_t scanned; /* input bytes already searched for the end of the head */
    uint64_t body_remaining;
    bool chunked;
    chunk_state chunk;
    size_t trailer_bytes;
    const char *tls_version;
};

struct worker {
    srv_server *srv;
    unsigned index;
    struct event_base *base;
    struct evconnlistener *listener, *ops_listener;
    struct event *notify_event, *drain_timer, *accept_retry;
    int notify[2];
    pthread_t thread;
    bool initialised, started, draining;
    conn *conns;
    size_t conn_count;
    srv_request *live;
    pthread_mutex_t lock; /* done and posted queues, exited */
    srv_request *done_head, *done_tail;
    posted *posted_head, *posted_tail;
    bool exited; /* the loop has ended: srv_post runs fn on the caller's thread */
    time_t date_second;
    char date[FDT_HTTP_DATE_LEN];
};

struct srv_server {
    srv_config cfg; /* limits resolved; file name pointers not kept */
    SSL_CTX *ssl_ctx;
    worker *workers;
    unsigned worker_count;
    unsigned port, ops_port;
    atomic_uint connections; /* open connections on the FHIR port */
    atomic_bool stopping;
    atomic_size_t inflight; /* the memory budget's counter (bytes) */
    lg_logger access_log;   /* on cfg.access_log_fd (borrowed) */
    mx_registry *metrics;
    bool owns_metrics;
    struct {
        mx_family *requests, *duration, *handshake_failures;
        mx_metric *handshakes, *connections, *rejected, *dropped, *body_bytes, *inflight, *budget_refusals;
    } mx;
};

/* What a producer writes into: the connection whose answer it makes. */
struct srv_stream {
    conn *c;
    bool wrote;
};

static _Thread_local worker *current_worker;

static void process_input(conn *c);
static void conn_close(conn *c);
static void finish(conn *c, srv_request *req);
static void stream_pump(conn *c);
static void answer_sent(conn *c);

/* ---- Small helpers ----------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *openssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, len);
    return buf;
}

static struct timeval ms_to_timeval(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static void arm_timer(conn *c, unsigned ms)
{
    struct timeval tv = ms_to_timeval(ms);
    event_add(c->timer, &tv);
}

static int64_t elapsed_us(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000000 + (now.tv_nsec - since->tv_nsec) / 1000;
}

/* ---- Configuration ------------------------------------------------------------- */

/* Every limit at its default (the limits table's row of the same name) where it is zero. */
static void default_limits(srv_config *c)
{
#define DEFAULT_IF_ZERO(field) \
    if (!c->field)             \
    c->field = LIM(field)
    DEFAULT_IF_ZERO(max_header_bytes);
    DEFAULT_IF_ZERO(max_headers);
    DEFAULT_IF_ZERO(max_body_bytes);
    DEFAULT_IF_ZERO(max_connections);
    DEFAULT_IF_ZERO(request_timeout_ms);
    DEFAULT_IF_ZERO(idle_timeout_ms);
    DEFAULT_IF_ZERO(write_timeout_ms);
    DEFAULT_IF_ZERO(drain_timeout_ms);
    DEFAULT_IF_ZERO(max_inflight_bytes);
#undef DEFAULT_IF_ZERO
}

void srv_config_defaults(srv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->address = GW_DEFAULT_HOST;
    cfg->port = GW_DEFAULT_PORT;
    cfg->require_client_cert = true;
    cfg->ops_enabled = true;
    cfg->ops_address = GW_DEFAULT_HOST;
    cfg->ops_port = GW_DEFAULT_OPS_PORT;
    cfg->access_log_fd = -1;
    default_limits(cfg);
}

/* Zero limits mean "the default"; the worker count defaults to the cores. */
static void resolve_limits(srv_config *c)
{
    default_limits(c);
    if (!c->workers) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = cores > 0 ? (unsigned)cores : 1;
    }
    if (c->workers > SRV_MAX_WORKERS)
        c->workers = SRV_MAX_WORKERS;
    if (!c->address)
        c->address = GW_DEFAULT_HOST;
    if (!c->ops_address)
        c->ops_address = GW_DEFAULT_HOST;
}

/* ---- TLS ------------------------------------------------------------------------ */

static bool load_client_verification(SSL_CTX *ctx, const srv_config *cfg, char *err, size_t errlen)
{
    if (!cfg->ca_file) {
        if (cfg->require_client_cert) {
            set_err(err, errlen, "client certificates are required but no CA file is configured");
            return false;
        }
        return true;
    }
    char detail[256];
    X509_STORE *store = id_store_load(cfg->ca_file, cfg->crl_file, detail, sizeof detail);
    if (!store) {
        set_err(err, errlen, "%s", detail);
        return false;
    }
    SSL_CTX_set_cert_store(ctx, store); /* the context owns it now */
    /* Tell clients which CAs we accept, so one holding several certificates picks the right one. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
    if (cfg->require_client_cert)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, LIM(tls_verify_depth));
    return true;
}

static SSL_CTX *make_tls_context(const srv_config *cfg, char *err, size_t errlen)
{
    char detail[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        set_err(err, errlen, "cannot create a TLS context: %s", openssl_reason(detail, sizeof detail));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* No renegotiation (a DoS lever), no compression (CRIME), server picks
     * the suite; an EOF without close_notify is an ordinary EOF. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle connections give their 2 x 17 KB record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* No session resumption: a resumed session skips certificate verification, so a
     * certificate revoked since would keep working until the session expired. Every new
     * connection is verified against the CRL; keep-alive makes the full handshakes rare. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid_context[] = "fhirgw";
    SSL_CTX_set_session_id_context(ctx, sid_context, sizeof sid_context - 1);
    if (SSL_CTX_set_cipher_list(ctx, SRV_TLS12_CIPHERS) != 1) {
        set_err(err, errlen, "cannot set the TLS 1.2 cipher list: %s", openssl_reason(detail, sizeof detail));
        goto fail;
    }
    if (!cfg->cert_file || !cfg->key_file) {
        set_err(err, errlen, "a server certificate and key are required");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, errlen, "cannot load %s / %s: %s", cfg->cert_file, cfg->key_file,
                openssl_reason(detail, sizeof detail));
        goto fail;
    }
    if (!load_client_verification(ctx, cfg, err, errlen))
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Why a handshake failed, as a short metric label. */
static const char *handshake_failure_reason(conn *c, short events)
{
    if (events & BEV_EVENT_TIMEOUT)
        return "timeout";
    long verify = SSL_get_verify_result(c->ssl);
    switch (verify) {
    case X509_V_OK: break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return "certificate_expired";
    case X509_V_ERR_CERT_REVOKED: return "certificate_revoked";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "certificate_untrusted";
    default: return "certificate_invalid";
    }
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    switch (ERR_GET_REASON(e)) {
    case 0: return (events & BEV_EVENT_EOF) ? "closed" : "io_error";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: return "no_certificate";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE: return "protocol";
    case SSL_R_HTTP_REQUEST: return "plain_http";
    default: return "other";
    }
}

/* ---- Metrics --------------------------------------------------------------------- */

static bool register_metrics(srv_server *s)
{
    mx_registry *r = s->metrics;
    s->mx.requests = mx_counter(r, "fhirgw_http_requests_total", "HTTP requests answered, by route and status.",
                                "route,status");
    s->mx.duration = mx_histogram(r, "fhirgw_http_request_duration_seconds",
                                  "Time from the first byte of a request to its answer being queued.", "route",
                                  MX_LATENCY_BUCKETS, MX_LATENCY_BUCKET_COUNT);
    s->mx.handshake_failures = mx_counter(r, "fhirgw_tls_handshake_failures_total",
                                          "TLS handshakes that failed, by reason.", "reason");
    s->mx.handshakes = mx_series(mx_counter(r, "fhirgw_tls_handshakes_total", "TLS handshakes completed.", NULL), NULL);
    s->mx.connections = mx_series(mx_gauge(r, "fhirgw_connections_open", "Open connections on the FHIR port.", NULL),
                                  NULL);
    s->mx.rejected = mx_series(mx_counter(r, "fhirgw_connections_rejected_total",
                                          "Connections refused or answered 503 over the connection limit.", NULL),
                               NULL);
    s->mx.dropped = mx_series(mx_counter(r, "fhirgw_http_answers_dropped_total",
                                         "Answers dropped because the client had gone.", NULL),
                              NULL);
    s->mx.body_bytes = mx_series(mx_counter(r, "fhirgw_http_response_body_bytes_total",
                                            "Response body bytes queued for sending.", NULL),
                                 NULL);
    s->mx.inflight = mx_series(mx_gauge(r, "fhirgw_http_inflight_bytes",
                                        "Request and answer bytes held in memory (the budget is max_inflight_bytes).",
                                        NULL),
                               NULL);
    s->mx.budget_refusals = mx_series(mx_counter(r, "fhirgw_http_budget_refusals_total",
                                                 "Requests answered 503 because the memory budget was spent.", NULL),
                                      NULL);
    return s->mx.requests && s->mx.duration && s->mx.handshake_failures && s->mx.handshakes && s->mx.connections &&
           s->mx.rejected && s->mx.dropped && s->mx.body_bytes && s->mx.inflight && s->mx.budget_refusals;
}

/* ---- Memory budget ----------------------------------------------------------------- */

/* Take n bytes of the budget for bytes not yet in memory; false (and nothing
 * taken) when that would pass it. Concurrent takers may see each other's
 * passing reservations and refuse a little early: harmless. */
static bool budget_take(srv_server *s, size_t n)
{
    size_t before = atomic_fetch_add(&s->inflight, n);
    if (before + n > s->cfg.max_inflight_bytes) {
        atomic_fetch_sub(&s->inflight, n);
        return false;
    }
    mx_gauge_add(s->mx.inflight, (int64_t)n);
    return true;
}

/* Count bytes that are in memory already (an answer): never refused. */
static void budget_force(srv_server *s, size_t n)
{
    atomic_fetch_add(&s->inflight, n);
    mx_gauge_add(s->mx.inflight, (int64_t)n);
}

static void budget_give(srv_server *s, size_t n)
{
    atomic_fetch_sub(&s->inflight, n);
    mx_gauge_add(s->mx.inflight, -(int64_t)n);
}

static bool budget_spent(srv_server *s)
{
    return atomic_load(&s->inflight) >= s->cfg.max_inflight_bytes;
}

/* evbuffer cleanup of an answer buffer: free it and give its bytes back. */
static void release_answer_bytes(const void *data, size_t len, void *arg)
{
    free((void *)data);
    budget_give(arg, len);
}

/* Queue a malloc'd buffer on the output, counted until sent; takes ownership
 * (freed on failure too). */
static bool queue_owned(conn *c, char *buf, size_t n)
{
    srv_server *s = c->w->srv;
    budget_force(s, n);
    if (evbuffer_add_reference(bufferevent_get_output(c->bev), buf, n, release_answer_bytes, s) != 0) {
        release_answer_bytes(buf, n, s);
        return false;
    }
    return true;
}

static void count_request(srv_server *s, const srv_request *req)
{
    char status[12];
    snprintf(status, sizeof status, "%d", req->status);
    const char *route = req->route[0] ? req->route : "other";
    mx_inc(mx_series(s->mx.requests, (const char *[]){route, status}));
    mx_observe(mx_series(s->mx.duration, (const char *[]){route}), (double)elapsed_us(&req->started) / 1e6);
}

/* ---- Access log ------------------------------------------------------------------- */

static void access_log(const srv_request *req, size_t bytes, bool delivered)
{
    const lg_logger *log = &req->srv->access_log;
    if (log->fd < 0)
        return;
    int64_t received_ms = (int64_t)req->received.tv_sec * 1000 + req->received.tv_nsec / 1000000;
    lg_field fields[12];
    size_t n = 0;
    fields[n++] = LG_STR("request_id", req->id);
    if (req->id_refused) /* the client's own id was not echoed: say why, never what it was */
        fields[n++] = LG_STR("request_id_refused", req->id_refused);
    fields[n++] = LG_UINT("worker", req->w->index);
    fields[n++] = LG_STR("method", req->parsed.method ? req->parsed.method : "");
    fields[n++] = LG_STR("path", req->path ? req->path : "");
    fields[n++] = LG_INT("status", req->status);
    fields[n++] = LG_UINT("bytes", bytes);
    fields[n++] = LG_INT("duration_us", elapsed_us(&req->started));
    fields[n++] = LG_STR("tls", req->tls_version ? req->tls_version : "");
    fields[n++] = LG_STR("org", req->org);
    fields[n++] = LG_STR("ura", req->ura);
    if (!delivered)
        fields[n++] = LG_BOOL("client_gone", true);
    lg_write_at(log, received_ms, LG_INFO, fields, n);
}

/* ---- Requests ------------------------------------------------------------------------ */

static srv_request *request_new(conn *c)
{
    srv_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->srv = c->w->srv;
    req->w = c->w;
    req->conn = c;
    req->tls_version = c->tls_version;
    http_random_id(req->id);
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    clock_gettime(CLOCK_REALTIME, &req->received);
    return req;
}

/* Drop the response body, unless the caller lent it. */
static void release_body(srv_request *req)
{
    if (!req->resp_borrowed)
        free(req->resp_body);
    req->resp_body = NULL;
    req->resp_borrowed = false;
}

/* A streamed answer's producer is done with: call its release once. */
static void stream_release(srv_request *req)
{
    if (!req->produce)
        return;
    req->produce = NULL;
    if (req->release)
        req->release(req->stream_arg);
}

static void request_free(srv_request *req)
{
    if (!req)
        return;
    stream_release(req);
    free(req->head);
    free(req->headers);
    free(req->path);
    free(req->body);
    if (req->body_cap)
        budget_give(req->srv, req->body_cap);
    release_body(req);
    free(req->resp_headers);
    X509_free(req->peer);
    free(req);
}

static void live_insert(worker *w, srv_request *req)
{
    req->prev = NULL;
    req->next = w->live;
    if (w->live)
        w->live->prev = req;
    w->live = req;
}

static void live_remove(worker *w, srv_request *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else if (w->live == req)
        w->live = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

/* On the worker thread: the handler has answered. */
static void complete_request(srv_request *req)
{
    live_remove(req->w, req);
    if (req->conn) {
        finish(req->conn, req);
        return;
    }
    /* The client left while the handler worked: count, log, forget. */
    mx_inc(req->srv->mx.dropped);
    count_request(req->srv, req);
    access_log(req, 0, false);
    request_free(req);
}

/* ---- Answers ------------------------------------------------------------------------- */

static const char *http_date(worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_second) {
        fdt_format_http_date((int64_t)now * 1000, w->date);
        w->date_second = now;
    }
    return w->date;
}

static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/*
 * Status line and headers, followed by the body when it is small: one buffer
 * becomes one TLS record and one write(2), where head and body apart would
 * cost two of each (bufferevent_openssl writes each buffer chain on its own).
 * Large bodies are added by reference, without a copy.
 */
#define COALESCE_MAX LIM(coalesce_max_bytes) /* body bytes that share the head's record */

/* How the end of the body is shown: its length, chunked coding, or none
 * (no body, or an HTTP/1.0 stream that ends with the connection). */
typedef enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_NONE } framing;

static size_t format_head(char *head, size_t cap, conn *c, const srv_request *req, framing frame)
{
    int n = snprintf(head, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\n", req->status, srv_status_reason(req->status),
                     http_date(c->w));
    if (frame == FRAME_LENGTH)
        n += snprintf(head + n, cap - (size_t)n, "Content-Length: %zu\r\n", req->resp_len);
    else if (frame == FRAME_CHUNKED)
        n += snprintf(head + n, cap - (size_t)n, "Transfer-Encoding: chunked\r\n");
    n += snprintf(head + n, cap - (size_t)n, "X-Request-ID: %s\r\n", req->id);
    if (c->close_after)
        n += snprintf(head + n, cap - (size_t)n, "Connection: close\r\n");
    else if (req->parsed.minor_version == 0)
        n += snprintf(head + n, cap - (size_t)n, "Connection: keep-alive\r\n");
    if (req->resp_headers_len)
        memcpy(head + n, req->resp_headers, req->resp_headers_len);
    n += (int)req->resp_headers_len;
    memcpy(head + n, "\r\n", 2);
    return (size_t)n + 2;
}

/* Queue head and body on the output buffer; false on out of memory. Owned
 * bytes count in the memory budget until the output buffer lets them go. */
static bool write_answer(conn *c, srv_request *req, framing frame, bool send_body)
{
    bool coalesce = send_body && req->resp_len <= COALESCE_MAX;
    size_t cap = 256 + strlen(req->id) + req->resp_headers_len + (coalesce ? req->resp_len : 0);
    char *buf = malloc(cap);
    if (!buf)
        return false;
    size_t n = format_head(buf, cap, c, req, frame);
    if (coalesce) {
        memcpy(buf + n, req->resp_body, req->resp_len);
        n += req->resp_len;
    }
    if (!queue_owned(c, buf, n))
        return false;
    if (!send_body || coalesce)
        return true;
    char *body = req->resp_body;
    req->resp_body = NULL; /* the output buffer frees it once sent (a lent body stays the caller's) */
    if (req->resp_borrowed) {
        req->resp_borrowed = false;
        return evbuffer_add_reference(bufferevent_get_output(c->bev), body, req->resp_len, NULL, NULL) == 0;
    }
    return queue_owned(c, body, req->resp_len);
}

/* Is there a received byte this connection has not processed yet: in its
 * input buffer, decrypted inside OpenSSL, or still in the kernel? While
 * stopping, such a connection holds a request that must be answered. */
static bool conn_has_input(conn *c)
{
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        return true;
    if (c->ssl && SSL_pending(c->ssl) > 0)
        return true;
    int pending = 0;
    return ioctl(bufferevent_getfd(c->bev), FIONREAD, &pending) == 0 && pending > 0;
}

/* Count and log a finished request, and let go of it. */
static void retire(conn *c, srv_request *req, size_t sent, bool delivered)
{
    mx_add(c->w->srv->mx.body_bytes, sent);
    count_request(c->w->srv, req);
    access_log(req, sent, delivered);
    c->req = NULL;
    request_free(req);
}

/* Begin a streamed answer: the head now, the body from the producer as the
 * output drains (stream_pump). */
static void start_stream(conn *c, srv_request *req, bool body_allowed)
{
    req->stream_chunked = req->parsed.minor_version == 1;
    if (body_allowed && !req->stream_chunked)
        c->close_after = true; /* HTTP/1.0 has no chunks: the body ends with the connection */
    framing frame = !body_allowed ? FRAME_NONE : req->stream_chunked ? FRAME_CHUNKED : FRAME_NONE;
    event_del(c->timer);
    req->resp_len = 0;
    bool ok = write_answer(c, req, frame, false);
    if (!ok || !body_allowed || req->head_only) {
        retire(c, req, 0, ok);
        c->state = C_WRITING;
        if (!ok)
            conn_close(c);
        return;
    }
    c->state = C_STREAMING;
    bufferevent_setwatermark(c->bev, EV_WRITE, SRV_STREAM_LOW_WATER, 0);
    stream_pump(c);
}

/* Queue the answer on the connection, account for it, and free the request. */
static void finish(conn *c, srv_request *req)
{
    worker *w = c->w;
    /* while stopping, a connection stays open only for requests it has already received */
    if (!req->keep_alive || c->over_limit || (w->draining && !conn_has_input(c)))
        c->close_after = true;
    bool body_allowed = status_has_body(req->status);
    if (req->produce) {
        start_stream(c, req, body_allowed);
        return;
    }
    bool send_body = body_allowed && !req->head_only && req->resp_len > 0;
    bool ok = write_answer(c, req, body_allowed ? FRAME_LENGTH : FRAME_NONE, send_body);
    retire(c, req, send_body ? req->resp_len : 0, ok);
    c->state = C_WRITING;
    event_del(c->timer);
    if (!ok)
        conn_close(c);
}

/* An answer the server makes itself: an OperationOutcome, then close. */
static void fail_request(conn *c, int status, const char *issue_type, const char *message, bool linger)
{
    if (!c->req && !(c->req = request_new(c))) {
        conn_close(c);
        return;
    }
    srv_request *req = c->req;
    c->close_after = true;
    c->linger = linger;
    if (!req->route[0])
        srv_set_route(req, "invalid");
    req->status = status;
    release_body(req);
    req->resp_body = http_outcome_body(issue_type, message, &req->resp_len);
    if (!req->resp_body)
        req->resp_len = 0;
    srv_set_header(req, "Content-Type", "application/fhir+json");
    if (status == 503)
        srv_set_header(req, "Retry-After", "1");
    finish(c, req);
}

/* ---- Reading a request ------------------------------------------------------------------ */

/* False when out of memory (the connection is then closed and gone). */
static bool start_request(conn *c)
{
    if (!(c->req = request_new(c))) {
        conn_close(c);
        return false;
    }
    c->state = C_HEAD;
    c->scanned = 0;
    c->trailer_bytes = 0;
    arm_timer(c, c->w->srv->cfg.request_timeout_ms);
    return true;
}

/* Blank lines before a request line are allowed (RFC 9112 2.2). */
static void skip_leading_crlf(struct evbuffer *in)
{
    unsigned char two[2];
    while (evbuffer_copyout(in, two, 2) == 2 && two[0] == '\r' && two[1] == '\n')
        evbuffer_drain(in, 2);
}

static size_t count_lines(const char *head, size_t len)
{
    size_t n = 0;
    for (const char *p = head; (p = memchr(p, '\n', len - (size_t)(p - head))) != NULL; p++)
        n++;
    return n;
}

/* Take the head off the input once it is complete; STEP_FAILED when answered. */
static step take_head(conn *c)
{
    const srv_config *cfg = &c->w->srv->cfg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->scanned == 0)
        skip_leading_crlf(in);
    size_t len = evbuffer_get_length(in);
    struct evbuffer_ptr from;
    evbuffer_ptr_set(in, &from, c->scanned, EVBUFFER_PTR_SET);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, &from);
    if (end.pos < 0 || (size_t)end.pos + 4 > cfg->max_header_bytes) {
        if (len > cfg->max_header_bytes) {
            fail_request(c, 431, OO_TOO_LONG, "request line and headers exceed the size limit", true);
            return STEP_FAILED;
        }
        c->scanned = len > 3 ? len - 3 : 0;
        return STEP_MORE;
    }
    size_t head_len = (size_t)end.pos + 4;
    srv_request *req = c->req;
    if (!(req->head = malloc(head_len + 1))) {
        fail_request(c, 500, OO_EXCEPTION, "out of memory", true);
        return STEP_FAILED;
    }
    evbuffer_remove(in, req->head, head_len);
    req->head[head_len] = '\0';
    return STEP_DONE;
}

static step parse_head(conn *c)
{
    const srv_config *cfg = &c->w->srv->cfg;
    srv_request *req = c->req;
    size_t head_len = strlen(req->head);
    size_t slots = count_lines(req->head, head_len);
    if (slots > cfg->max_headers)
        slots = cfg->max_headers;
    if (!(req->headers = calloc(slots ? slots : 1, sizeof *req->headers))) {
        fail_request(c, 500, OO_EXCEPTION, "out of memory", true);
        return STEP_FAILED;
    }
    const char *why;
    int status = http_parse_head(req->head, head_len, &req->parsed, req->headers, cfg->max_headers, &why);
    if (status == 431 || (status == 0 && req->parsed.header_count > slots)) {
        fail_request(c, 431, OO_TOO_LONG, "too many header fields", true);
        return STEP_FAILED;
    }
    if (status) {
        fail_request(c, status, OO_STRUCTURE, why, true);
        return STEP_FAILED;
    }
    return STEP_DONE;
}

static const char *header(const srv_request *req, const char *name)
{
    return http_header_find(req->headers, req->parsed.header_count, name);
}

/* Path, query, id, keep-alive, peer: what the handler reads. */
static step describe_request(conn *c)
{
    srv_request *req = c->req;
    const char *id = header(req, "X-Request-ID");
    req->id_refused = http_request_id_refusal(id);
    if (id && !req->id_refused)
        memcpy(req->id, id, strlen(id) + 1); /* it fits: the refusal checked its length */
    const char *target = req->parsed.target;
    const char *question = strchr(target, '?');
    size_t path_len = question ? (size_t)(question - target) : strlen(target);
    req->query = question ? question + 1 : "";
    if (!(req->path = malloc(path_len + 1))) {
        fail_request(c, 500, OO_EXCEPTION, "out of memory", true);
        return STEP_FAILED;
    }
    const char *why;
    if (http_decode_path(target, path_len, req->path, &why)) {
        req->path[0] = '\0'; /* never log what could not be decoded */
        fail_request(c, 400, OO_STRUCTURE, why, true);
        return STEP_FAILED;
    }
    bool http11 = req->parsed.minor_version == 1;
    const char *connection = header(req, "Connection");
    req->keep_alive = http11 ? !http_has_token(connection, "close") : http_has_token(connection, "keep-alive");
    req->head_only = strcmp(req->parsed.method, "HEAD") == 0;
    if (http11 && http_header_count(req->headers, req->parsed.header_count, "Host") != 1) {
        fail_request(c, 400, OO_STRUCTURE, "HTTP/1.1 requires exactly one Host header", true);
        return STEP_FAILED;
    }
    if (c->ssl)
        req->peer = SSL_get1_peer_certificate(c->ssl);
    clock_gettime(CLOCK_REALTIME, &req->received);
    return STEP_DONE;
}

/* Decide how the body is framed; STEP_DONE means "no body". */
static step frame_body(conn *c)
{
    const srv_config *cfg = &c->w->srv->cfg;
    srv_request *req = c->req;
    const char *te = header(req, "Transfer-Encoding");
    size_t cl_count = http_header_count(req->headers, req->parsed.header_count, "Content-Length");
    c->chunked = false;
    c->body_remaining = 0;
    if (te) {
        if (cl_count || req->parsed.minor_version == 0) {
            fail_request(c, 400, OO_STRUCTURE, "Transfer-Encoding with Content-Length or in HTTP/1.0", true);
            return STEP_FAILED;
        }
        const char *why;
        int status = http_transfer_coding(req->headers, req->parsed.header_count, &why);
        if (status) {
            fail_request(c, status, status == 501 ? OO_NOT_SUPPORTED : OO_STRUCTURE, why, true);
            return STEP_FAILED;
        }
        c->chunked = true;
        c->chunk = CH_SIZE;
    } else if (cl_count) {
        uint64_t length;
        if (cl_count > 1 || !http_parse_content_length(header(req, "Content-Length"), &length)) {
            fail_request(c, 400, OO_STRUCTURE, "invalid Content-Length", true);
            return STEP_FAILED;
        }
        if (length > cfg->max_body_bytes) {
            fail_request(c, 413, OO_TOO_LONG, "request body exceeds the size limit", true);
            return STEP_FAILED;
        }
        c->body_remaining = length;
    }
    if (!c->chunked && c->body_remaining == 0)
        return STEP_DONE;
    /* No buffer yet: it grows as bytes arrive (reserve_body), so a declared
     * length costs nothing until the bytes are really sent. */
    if (req->parsed.minor_version == 1 && http_has_token(header(req, "Expect"), "100-continue"))
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return STEP_MORE;
}

/* The memory budget is spent: answer 503 (Retry-After comes with it). */
static void refuse_over_budget(conn *c)
{
    mx_inc(c->w->srv->mx.budget_refusals);
    fail_request(c, 503, OO_EXCEPTION,
                 "the server holds as many request and answer bytes as its memory budget allows; retry later", true);
}

/*
 * Room for `more` body bytes and the terminating NUL. The buffer doubles
 * (from BODY_INITIAL) up to the body's known final size, and every byte of
 * growth is taken from the memory budget first (so it is grown here rather
 * than with fa_reserve: the capacity must be known before the allocation). False when answered (503
 * over the budget, 500 out of memory). Once a quarter of a body of known size has arrived, the buffer
 * takes its whole size at once: a 50 KB document that arrives in TLS records of 16 KB is then copied
 * once, not through two reallocations, and an upload that stalls still holds at most four times what
 * it sent (or BODY_INITIAL).
 */
static bool reserve_body(conn *c, size_t more)
{
    srv_server *s = c->w->srv;
    srv_request *req = c->req;
    size_t needed = req->body_len + more + 1;
    if (needed <= req->body_cap)
        return true;
    size_t ceiling = c->chunked ? s->cfg.max_body_bytes + 1 : req->body_len + (size_t)c->body_remaining + 1;
    size_t cap = req->body_cap ? req->body_cap * 2 : BODY_INITIAL;
    if (cap < needed)
        cap = needed;
    if (!c->chunked && ceiling / 4 <= needed)
        cap = ceiling;
    if (cap > ceiling && ceiling >= needed)
        cap = ceiling;
    size_t growth = cap - req->body_cap;
    if (c->ops)
        budget_force(s, growth); /* health checks are never refused */
    else if (!budget_take(s, growth)) {
        refuse_over_budget(c);
        return false;
    }
    unsigned char *grown = realloc(req->body, cap);
    if (!grown) {
        budget_give(s, growth);
        fail_request(c, 500, OO_EXCEPTION, "out of memory", true);
        return false;
    }
    req->body = grown;
    req->body_cap = cap;
    return true;
}

/* Move what has arrived of the body (or chunk) into the request; false when answered. */
static bool take_body_bytes(conn *c, struct evbuffer *in)
{
    srv_request *req = c->req;
    size_t avail = evbuffer_get_length(in);
    size_t take = avail < c->body_remaining ? avail : (size_t)c->body_remaining;
    if (take == 0)
        return true;
    if (!reserve_body(c, take))
        return false;
    evbuffer_remove(in, req->body + req->body_len, take);
    req->body_len += take;
    c->body_remaining -= take;
    return true;
}

static step chunk_size_line(conn *c, struct evbuffer *in)
{
    const srv_config *cfg = &c->w->srv->cfg;
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT);
    if (!line) {
        if (evbuffer_get_length(in) > CHUNK_LINE_MAX) {
            fail_request(c, 400, OO_STRUCTURE, "chunk-size line too long", true);
            return STEP_FAILED;
        }
        return STEP_MORE;
    }
    uint64_t size;
    bool ok = n <= CHUNK_LINE_MAX && strlen(line) == n && http_parse_chunk_size(line, &size); /* no NUL */
    free(line);
    if (!ok) {
        fail_request(c, 400, OO_STRUCTURE, "malformed chunk size", true);
        return STEP_FAILED;
    }
    if (size > cfg->max_body_bytes - c->req->body_len) {
        fail_request(c, 413, OO_TOO_LONG, "request body exceeds the size limit", true);
        return STEP_FAILED;
    }
    c->body_remaining = size; /* room is made as the chunk's bytes arrive */
    c->chunk = size ? CH_DATA : CH_TRAILER;
    return STEP_DONE;
}

static step chunk_trailer_line(conn *c, struct evbuffer *in)
{
    size_t max = c->w->srv->cfg.max_header_bytes, n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT);
    if (!line || (c->trailer_bytes += n + 2) > max) {
        free(line);
        if (c->trailer_bytes > max || evbuffer_get_length(in) > max) {
            fail_request(c, 431, OO_TOO_LONG, "trailer fields exceed the size limit", true);
            return STEP_FAILED;
        }
        return STEP_MORE;
    }
    /* trailer fields are ignored, once they are known to be fields: a bare LF in one could
     * end the message early for a lenient parser in front of us */
    bool ok = n == 0 || http_is_field_line(line, n);
    free(line);
    if (!ok) {
        fail_request(c, 400, OO_STRUCTURE, "malformed trailer field", true);
        return STEP_FAILED;
    }
    return n == 0 ? STEP_DONE : STEP_AGAIN;
}

/* The chunked decoder: one state step per iteration until input runs out. */
static step read_chunked(conn *c, struct evbuffer *in)
{
    for (;;) {
        step s;
        switch (c->chunk) {
        case CH_SIZE:
            if ((s = chunk_size_line(c, in)) != STEP_DONE)
                return s;
            break;
        case CH_DATA:
            if (!take_body_bytes(c, in))
                return STEP_FAILED;
            if (c->body_remaining)
                return STEP_MORE;
            c->chunk = CH_DATA_END;
            break;
        case CH_DATA_END: {
            unsigned char crlf[2];
            if (evbuffer_copyout(in, crlf, 2) < 2)
                return STEP_MORE;
            if (crlf[0] != '\r' || crlf[1] != '\n') {
                fail_request(c, 400, OO_STRUCTURE, "chunk data not followed by CRLF", true);
                return STEP_FAILED;
            }
            evbuffer_drain(in, 2);
            c->chunk = CH_SIZE;
            break;
        }
        case CH_TRAILER:
            if ((s = chunk_trailer_line(c, in)) != STEP_AGAIN)
                return s;
            break; /* a trailer line was consumed; look for the next */
        }
    }
}

static step read_body(conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    step s;
    if (c->chunked) {
        s = read_chunked(c, in);
    } else {
        s = !take_body_bytes(c, in) ? STEP_FAILED : c->body_remaining ? STEP_MORE : STEP_DONE;
    }
    if (s == STEP_DONE) {
        if (!reserve_body(c, 0)) /* an empty chunked body has no buffer yet */
            return STEP_FAILED;
        c->req->body[c->req->body_len] = '\0';
    }
    return s;
}

/* ---- Handing requests over ----------------------------------------------------------------- */

static void ops_handle(srv_request *req);

static void dispatch(conn *c)
{
    srv_server *s = c->w->srv;
    srv_request *req = c->req;
    event_del(c->timer);
    if (c->over_limit) {
        fail_request(c, 503, OO_EXCEPTION, "the server is at its connection limit; retry later", false);
        return;
    }
    c->state = C_HANDLER;
    live_insert(c->w, req);
    /* From here the handler holds req; it may already be answered (and
     * freed) when the call returns, so nothing below may touch it. */
    if (c->ops)
        ops_handle(req);
    else
        s->cfg.handler(req, s->cfg.handler_arg);
}

/* Advance the request being read; returns when input runs out or it is dispatched. */
static void read_request(conn *c)
{
    step s = STEP_MORE;
    if (c->state == C_HEAD) {
        if ((s = take_head(c)) != STEP_DONE || (s = parse_head(c)) != STEP_DONE ||
            (s = describe_request(c)) != STEP_DONE)
            return;
        if (!c->ops && budget_spent(c->w->srv)) {
            refuse_over_budget(c);
            return;
        }
        if ((s = frame_body(c)) == STEP_FAILED)
            return;
        c->state = C_BODY;
    }
    if (s != STEP_DONE && (s = read_body(c)) != STEP_DONE)
        return;
    dispatch(c);
}

static void process_input(conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    switch (c->state) {
    case C_IDLE:
        if (evbuffer_get_length(in) == 0)
            return;
        if (!start_request(c))
            return;
        /* fall through */
    case C_HEAD:
    case C_BODY: read_request(c); return;
    case C_HANDLER:
    case C_STREAMING:
    case C_WRITING:
        /* Pipelined requests wait; past a bound, stop reading (backpressure). */
        if (evbuffer_get_length(in) > PAUSE_INPUT_BYTES)
            bufferevent_disable(c->bev, EV_READ);
        return;
    case C_LINGER: evbuffer_drain(in, evbuffer_get_length(in)); return;
    case C_HANDSHAKE: return;
    }
}

/* ---- Connection events ------------------------------------------------------------------------ */

static void on_read(struct bufferevent *bev, void *arg)
{
    process_input(arg);
}

/*
 * After an error answer to a request we did not read to the end: say we are
 * done (close_notify, then FIN) but keep reading and discarding for a
 * moment. Closing at once with unread input makes the kernel send a reset,
 * which can destroy the answer before the client has read it.
 */
static void enter_linger(conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* the output buffer is empty: nothing to overtake */
        ERR_clear_error();
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->state = C_LINGER;
    bufferevent_enable(c->bev, EV_READ);
    arm_timer(c, LINGER_MS);
    process_input(c);
}

/*
 * The output buffer drained to its low-water mark. A plain-socket
 * bufferevent with deferred callbacks also reports "drained" when the socket
 * became writable while the buffer was still empty: that report is queued,
 * and it runs after the read callback that queued an answer in the same loop
 * turn. Closing then would drop the answer unsent (the ops port's
 * `Connection: close` and HTTP/1.0 health checks), so only an empty buffer
 * counts as "the answer has left".
 */
static void on_write(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    if (c->state == C_STREAMING) {
        stream_pump(c);
        return;
    }
    if (c->state != C_WRITING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return; /* e.g. a 100 Continue went out, or a stale report */
    answer_sent(c);
}

/* The answer has left the output buffer: close, or read the next request. */
static void answer_sent(conn *c)
{
    if (c->close_after) {
        if (c->linger)
            enter_linger(c);
        else
            conn_close(c);
        return;
    }
    if (c->w->draining && !conn_has_input(c)) {
        conn_close(c);
        return;
    }
    c->state = C_IDLE;
    arm_timer(c, c->w->srv->cfg.idle_timeout_ms);
    bufferevent_enable(c->bev, EV_READ);
    process_input(c); /* a pipelined request may be waiting */
}

static void handshake_done(conn *c)
{
    c->tls_version = SSL_get_version(c->ssl);
    mx_inc(c->w->srv->mx.handshakes);
    c->state = C_IDLE;
    arm_timer(c, c->w->srv->cfg.idle_timeout_ms);
    process_input(c);
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
    conn *c = arg;
    if (events & BEV_EVENT_CONNECTED) {
        handshake_done(c);
        return;
    }
    if (c->state == C_HANDSHAKE) {
        const char *reason = handshake_failure_reason(c, events);
        mx_inc(mx_series(c->w->srv->mx.handshake_failures, (const char *[]){reason}));
    }
    conn_close(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    switch (c->state) {
    case C_HANDSHAKE:
        mx_inc(mx_series(c->w->srv->mx.handshake_failures, (const char *[]){"timeout"}));
        conn_close(c);
        return;
    case C_HEAD:
    case C_BODY:
        /* The client was too slow: it still gets an answer if it reads one. */
        fail_request(c, 408, OO_EXCEPTION, "the request was not received in time", false);
        return;
    case C_IDLE:
    case C_LINGER: conn_close(c); return;
    case C_HANDLER:
    case C_STREAMING:
    case C_WRITING: return;
    }
}

static void conn_close(conn *c)
{
    worker *w = c->w;
    if (c->req) {
        if (c->state == C_HANDLER)
            c->req->conn = NULL; /* the handler still holds it; the answer will be dropped */
        else
            request_free(c->req);
    }
    event_free(c->timer);
    bufferevent_free(c->bev); /* closes the socket and frees the SSL */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->conn_count--;
    if (!c->ops) {
        atomic_fetch_sub(&w->srv->connections, 1);
        mx_gauge_add(w->srv->mx.connections, -1);
    }
    free(c);
    if (w->draining && w->conn_count == 0)
        event_base_loopexit(w->base, NULL);
}

/* ---- Accepting -------------------------------------------------------------------------------- */

static conn *conn_new(worker *w, evutil_socket_t fd, bool ops)
{
    const srv_config *cfg = &w->srv->cfg;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->w = w;
    c->ops = ops;
    int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (ops) {
        c->bev = bufferevent_socket_new(w->base, fd, options);
        c->state = C_IDLE;
    } else if ((c->ssl = SSL_new(w->srv->ssl_ctx)) != NULL) {
        c->bev = bufferevent_openssl_socket_new(w->base, fd, c->ssl, BUFFEREVENT_SSL_ACCEPTING, options);
        if (!c->bev)
            SSL_free(c->ssl);
        c->state = C_HANDSHAKE;
    }
    c->timer = c->bev ? evtimer_new(w->base, on_timer, c) : NULL;
    if (!c->timer) {
        if (c->bev)
            bufferevent_free(c->bev);
        free(c);
        return NULL;
    }
    if (!ops)
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    struct timeval write_timeout = ms_to_timeval(cfg->write_timeout_ms);
    bufferevent_set_timeouts(c->bev, NULL, &write_timeout);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    arm_timer(c, ops ? cfg->idle_timeout_ms : cfg->request_timeout_ms);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    return c;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
    worker *w = arg;
    srv_server *s = w->srv;
    unsigned open = atomic_fetch_add(&s->connections, 1) + 1;
    if (open > s->cfg.max_connections + OVERLOAD_GRACE) {
        /* Far over the limit: even a 503 costs a handshake we cannot afford. */
        atomic_fetch_sub(&s->connections, 1);
        mx_inc(s->mx.rejected);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s->cfg.send_buffer_bytes) {
        int bytes = s->cfg.send_buffer_bytes < INT_MAX / 2 ? (int)s->cfg.send_buffer_bytes : INT_MAX / 2;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    }
    conn *c = conn_new(w, fd, false);
    if (!c) {
        atomic_fetch_sub(&s->connections, 1);
        close(fd);
        return;
    }
    mx_gauge_add(s->mx.connections, 1);
    if (open > s->cfg.max_connections) {
        c->over_limit = true; /* answered 503 on its first request */
        mx_inc(s->mx.rejected);
    }
}

static void on_ops_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
    if (!conn_new(arg, fd, true))
        close(fd);
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    if (w->listener && !w->draining)
        evconnlistener_enable(w->listener);
}

/* accept() failed (EMFILE, ENFILE, ENOMEM): pause instead of spinning on a
 * readable listener we cannot empty. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    worker *w = arg;
    evconnlistener_disable(l);
    struct timeval tv = ms_to_timeval(ACCEPT_RETRY_MS);
    event_add(w->accept_retry, &tv);
}

/* ---- Listening sockets ----------------------------------------------------------------------------- */

static int bind_socket(const char *address, unsigned port, bool reuseport, bool listening, unsigned *bound, char *err,
                       size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    int rc = getaddrinfo(address, service, &hints, &ai);
    if (rc != 0) {
        set_err(err, errlen, "bad listen address %s: %s", address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              (!reuseport || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) &&
              bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && (!listening || listen(fd, LISTEN_BACKLOG) == 0);
    freeaddrinfo(ai);
    if (!ok) {
        set_err(err, errlen, "cannot listen on %s:%u: %s", address, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/*
 * The FHIR port: one SO_REUSEPORT socket per worker. SO_REUSEPORT would also
 * let us join a port another fhirgw already serves and silently split its
 * traffic, so first bind a probe WITHOUT it: that fails if anybody listens
 * there, and with port 0 it picks the port the workers then share.
 */
static bool open_fhir_listeners(srv_server *s, char *err, size_t errlen)
{
    unsigned port;
    int probe = bind_socket(s->cfg.address, s->cfg.port, false, false, &port, err, errlen);
    if (probe < 0)
        return false;
    close(probe);
    s->port = port;
    for (unsigned i = 0; i < s->worker_count; i++) {
        worker *w = &s->workers[i];
        int fd = bind_socket(s->cfg.address, port, true, true, &port, err, errlen);
        if (fd < 0)
            return false;
        w->listener = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, 0, fd);
        if (!w->listener) {
            close(fd);
            set_err(err, errlen, "cannot watch the listening socket");
            return false;
        }
        evconnlistener_set_error_cb(w->listener, on_accept_error);
    }
    return true;
}

static bool open_ops_listener(srv_server *s, char *err, size_t errlen)
{
    worker *w = &s->workers[0];
    int fd = bind_socket(s->cfg.ops_address, s->cfg.ops_port, false, true, &s->ops_port, err, errlen);
    if (fd < 0)
        return false;
    w->ops_listener = evconnlistener_new(w->base, on_ops_accept, w, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!w->ops_listener) {
        close(fd);
        set_err(err, errlen, "cannot watch the ops socket");
        return false;
    }
    return true;
}

/* ---- Workers -------------------------------------------------------------------------------------- */

static void run_posted(posted *p)
{
    while (p) {
        posted *next = p->next;
        p->fn(p->arg);
        free(p);
        p = next;
    }
}

/* Answers given on other threads, then functions posted to this worker. exiting: the last time (later
 * posts run on their own threads). */
static void drain_queues(worker *w, bool exiting)
{
    pthread_mutex_lock(&w->lock);
    srv_request *req = w->done_head;
    posted *p = w->posted_head;
    w->done_head = w->done_tail = NULL;
    w->posted_head = w->posted_tail = NULL;
    w->exited |= exiting;
    pthread_mutex_unlock(&w->lock);
    while (req) {
        srv_request *next = req->queue_next;
        complete_request(req);
        req = next;
    }
    run_posted(p);
}

static void drain_done_queue(worker *w)
{
    drain_queues(w, false);
}

static void close_listeners(worker *w)
{
    if (w->listener)
        evconnlistener_free(w->listener);
    if (w->ops_listener)
        evconnlistener_free(w->ops_listener);
    w->listener = w->ops_listener = NULL;
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    while (w->conns)
        conn_close(w->conns);
    event_base_loopexit(w->base, NULL);
}

/* srv_stop reached this worker: stop accepting, close what is not busy. */
static void begin_drain(worker *w)
{
    w->draining = true;
    close_listeners(w);
    for (conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        /* "idle" with received bytes: its worker was busy when they came; serve them */
        bool idle = c->state == C_IDLE && !conn_has_input(c);
        if (idle || c->state == C_HANDSHAKE || c->state == C_LINGER)
            conn_close(c);
    }
    struct timeval tv = ms_to_timeval(w->srv->cfg.drain_timeout_ms);
    event_add(w->drain_timer, &tv);
    if (w->conn_count == 0)
        event_base_loopexit(w->base, NULL);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    drain_done_queue(w);
    if (atomic_load(&w->srv->stopping) && !w->draining)
        begin_drain(w);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    current_worker = w;
    event_base_dispatch(w->base);
    /* Answers and posts that arrived during the last loop turn still run here;
     * their connections are closed by now, so answers are dropped and freed.
     * Answers the posted functions give complete at once (this thread). */
    drain_queues(w, true);
    drain_done_queue(w);
    current_worker = NULL;
    return NULL;
}

static bool make_notify_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return false;
    for (int i = 0; i < 2; i++) {
        if (fcntl(fds[i], F_SETFL, O_NONBLOCK) != 0 || fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0)
            return false;
    }
    return true;
}

static bool worker_init(srv_server *s, worker *w, unsigned index, char *err, size_t errlen)
{
    w->srv = s;
    w->index = index;
    w->notify[0] = w->notify[1] = -1;
    pthread_mutex_init(&w->lock, NULL);
    w->initialised = true; /* from here worker_free can undo whatever follows */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK); /* one thread per base, by design */
    w->base = ec ? event_base_new_with_config(ec) : NULL;
    event_config_free(ec);
    if (!w->base || !make_notify_pipe(w->notify)) {
        set_err(err, errlen, "cannot create an event loop: %s", strerror(errno));
        return false;
    }
    w->notify_event = event_new(w->base, w->notify[0], EV_READ | EV_PERSIST, on_notify, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
    w->accept_retry = evtimer_new(w->base, resume_accepting, w);
    if (!w->notify_event || !w->drain_timer || !w->accept_retry || event_add(w->notify_event, NULL) != 0) {
        set_err(err, errlen, "cannot create worker events");
        return false;
    }
    return true;
}

static void worker_free(worker *w)
{
    if (!w->initialised)
        return;
    drain_queues(w, true); /* posts to a worker that never ran, answers given after the loop ended */
    drain_done_queue(w);
    while (w->conns)
        conn_close(w->conns);
    while (w->live) {
        srv_request *req = w->live;
        live_remove(w, req);
        request_free(req);
    }
    close_listeners(w);
    if (w->notify_event)
        event_free(w->notify_event);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->accept_retry)
        event_free(w->accept_retry);
    if (w->base)
        event_base_free(w->base);
    for (int i = 0; i < 2; i++)
        if (w->notify[i] >= 0)
            close(w->notify[i]);
    pthread_mutex_destroy(&w->lock);
}

/* Wake a worker; async-signal-safe (write(2) only). */
static void poke(worker *w)
{
    char byte = 1;
    ssize_t ignored = write(w->notify[1], &byte, 1); /* EAGAIN: it is awake already */
    (void)ignored;
}

/* ---- Lifecycle ---------------------------------------------------------------------------------------- */

srv_server *srv_new(const srv_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->handler) {
        set_err(err, errlen, "a handler is required");
        return NULL;
    }
    srv_server *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    resolve_limits(&s->cfg);
    lg_init(&s->access_log, s->cfg.access_log_fd);
    s->metrics = cfg->metrics;
    if (!s->metrics) {
        s->metrics = mx_registry_new();
        s->owns_metrics = true;
    }
    s->worker_count = s->cfg.workers;
    s->workers = calloc(s->worker_count, sizeof *s->workers);
    bool ok = s->metrics && s->workers;
    if (!ok)
        set_err(err, errlen, "out of memory");
    if (ok && !register_metrics(s)) {
        set_err(err, errlen, "cannot register the server's metrics (a name is taken with another shape)");
        ok = false;
    }
    ok = ok && (s->ssl_ctx = make_tls_context(&s->cfg, err, errlen)) != NULL;
    for (unsigned i = 0; ok && i < s->worker_count; i++)
        ok = worker_init(s, &s->workers[i], i, err, errlen);
    ok = ok && open_fhir_listeners(s, err, errlen);
    ok = ok && (!s->cfg.ops_enabled || open_ops_listener(s, err, errlen));
    /* the file names were for loading only; do not keep the caller's pointers */
    s->cfg.cert_file = s->cfg.key_file = s->cfg.ca_file = s->cfg.crl_file = NULL;
    s->cfg.address = s->cfg.ops_address = NULL;
    if (!ok) {
        srv_free(s);
        return NULL;
    }
    return s;
}

bool srv_start(srv_server *s, char *err, size_t errlen)
{
    /* A peer that resets a connection must not kill the process through SIGPIPE
     * (OpenSSL writes with write(2), not send(MSG_NOSIGNAL)). */
    signal(SIGPIPE, SIG_IGN);
    for (unsigned i = 0; i < s->worker_count; i++) {
        worker *w = &s->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            set_err(err, errlen, "cannot start worker %u: %s", i, strerror(rc));
            srv_stop(s);
            return false;
        }
        w->started = true;
        tn_name(w->thread, "http-%u", i);
    }
    return true;
}

void srv_stop(srv_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    for (unsigned i = 0; s->workers && i < s->worker_count; i++)
        if (s->workers[i].initialised && s->workers[i].notify[1] >= 0)
            poke(&s->workers[i]);
}

void srv_wait(srv_server *s)
{
    for (unsigned i = 0; s->workers && i < s->worker_count; i++) {
        worker *w = &s->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = false;
    }
}

void srv_free(srv_server *s)
{
    if (!s)
        return;
    srv_stop(s);
    srv_wait(s);
    for (unsigned i = 0; s->workers && i < s->worker_count; i++)
        worker_free(&s->workers[i]);
    free(s->workers);
    SSL_CTX_free(s->ssl_ctx);
    if (s->owns_metrics)
        mx_registry_free(s->metrics);
    free(s);
}

unsigned srv_port(const srv_server *s)
{
    return s->port;
}

unsigned srv_ops_port(const srv_server *s)
{
    return s->ops_port;
}

mx_registry *srv_metrics(srv_server *s)
{
    return s->metrics;
}

/* ---- Request view ------------------------------------------------------------------------------------------ */

const char *srv_req_method(const srv_request *req)
{
    return req->parsed.method ? req->parsed.method : "";
}

const char *srv_req_path(const srv_request *req)
{
    return req->path ? req->path : "/";
}

const char *srv_req_query(const srv_request *req)
{
    return req->query ? req->query : "";
}

const char *srv_req_header(const srv_request *req, const char *name)
{
    return header(req, name);
}

size_t srv_req_header_count(const srv_request *req)
{
    return req->parsed.header_count;
}

bool srv_req_header_at(const srv_request *req, size_t i, const char **name, const char **value)
{
    if (i >= req->parsed.header_count)
        return false;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return true;
}

const unsigned char *srv_req_body(const srv_request *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body ? req->body : (const unsigned char *)"";
}

X509 *srv_req_peer_cert(const srv_request *req)
{
    return req->peer;
}

const char *srv_req_id(const srv_request *req)
{
    return req->id;
}

unsigned srv_req_worker(const srv_request *req)
{
    return req->w->index;
}

struct timespec srv_req_received(const srv_request *req)
{
    return req->received;
}

const char *srv_req_tls_version(const srv_request *req)
{
    return req->tls_version ? req->tls_version : "";
}

/* ---- Answering ------------------------------------------------------------------------------------------------ */

static bool reserved_header(const char *name)
{
    static const char *const reserved[] = {"Content-Length", "Transfer-Encoding", "Connection", "Date", "X-Request-ID"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return true;
    return false;
}

bool srv_set_header(srv_request *req, const char *name, const char *value)
{
    if (!http_is_token(name) || !http_is_field_value(value) || reserved_header(name))
        return false;
    size_t add = strlen(name) + 2 + strlen(value) + 2;
    if (!fa_reserve(&req->resp_headers, &req->resp_headers_cap, req->resp_headers_len + add + 1, 1))
        return false;
    int n = sprintf(req->resp_headers + req->resp_headers_len, "%s: %s\r\n", name, value);
    req->resp_headers_len += (size_t)n;
    return true;
}

bool srv_set_route(srv_request *req, const char *route)
{
    route = route ? route : "";
    size_t n = strlen(route);
    if (n >= sizeof req->route)
        return false; /* a cut label would count under another label */
    memcpy(req->route, route, n + 1);
    return true;
}

bool srv_set_caller(srv_request *req, const char *organisation, const char *ura)
{
    organisation = organisation ? organisation : "";
    ura = ura ? ura : "";
    size_t org_len = strlen(organisation), ura_len = strlen(ura);
    if (org_len >= sizeof req->org || ura_len >= sizeof req->ura)
        return false; /* the log would name someone else, or half of someone */
    memcpy(req->org, organisation, org_len + 1);
    memcpy(req->ura, ura, ura_len + 1);
    return true;
}

/* The handler is done with req: complete it here on its worker, or queue it there. */
static void hand_back(srv_request *req)
{
    worker *w = req->w;
    if (current_worker == w) {
        complete_request(req);
        return;
    }
    pthread_mutex_lock(&w->lock);
    bool was_empty = w->done_head == NULL;
    req->queue_next = NULL;
    if (w->done_tail)
        w->done_tail->queue_next = req;
    else
        w->done_head = req;
    w->done_tail = req;
    pthread_mutex_unlock(&w->lock);
    if (was_empty)
        poke(w);
}

void srv_post(srv_request *req, void (*fn)(void *arg), void *arg)
{
    worker *w = req->w;
    posted *p = malloc(sizeof *p);
    pthread_mutex_lock(&w->lock);
    bool queued = p && !w->exited;
    bool was_empty = !w->done_head && !w->posted_head;
    if (queued) {
        *p = (posted){fn, arg, NULL};
        if (w->posted_tail)
            w->posted_tail->next = p;
        else
            w->posted_head = p;
        w->posted_tail = p;
    }
    pthread_mutex_unlock(&w->lock);
    if (!queued) {
        free(p);
        fn(arg); /* the worker has stopped (or no memory): here, now, rather than never */
    } else if (was_empty) {
        poke(w);
    }
}

/* Answer with body (owned, or lent when borrowed) from any thread. */
static void respond(srv_request *req, int status, char *body, size_t len, bool borrowed)
{
    release_body(req);
    req->status = status >= 100 && status <= 999 ? status : 500;
    req->resp_body = body;
    req->resp_borrowed = borrowed && body;
    req->resp_len = body ? len : 0;
    hand_back(req);
}

void srv_respond(srv_request *req, int status, char *body, size_t len)
{
    respond(req, status, body, len, false);
}

void srv_respond_stream(srv_request *req, int status, srv_producer produce, srv_release release, void *arg)
{
    if (!produce) {
        if (release)
            release(arg);
        srv_respond(req, status, NULL, 0);
        return;
    }
    release_body(req);
    req->status = status >= 100 && status <= 999 ? status : 500;
    req->resp_len = 0;
    req->produce = produce;
    req->release = release;
    req->stream_arg = arg;
    hand_back(req);
}

bool srv_stream_write(srv_stream *out, const void *data, size_t len)
{
    if (len == 0)
        return true;
    srv_request *req = out->c->req;
    char frame[24];
    size_t head = req->stream_chunked ? (size_t)snprintf(frame, sizeof frame, "%zx\r\n", len) : 0;
    size_t tail = req->stream_chunked ? 2 : 0;
    char *buf = malloc(head + len + tail);
    if (!buf)
        return false;
    memcpy(buf, frame, head);
    memcpy(buf + head, data, len);
    memcpy(buf + head + len, "\r\n", tail);
    if (!queue_owned(out->c, buf, head + len + tail))
        return false;
    req->streamed += len;
    out->wrote = true;
    return true;
}

/* The producer has finished (ok) or given up: end the body, account, release. */
static void stream_end(conn *c, bool ok)
{
    srv_request *req = c->req;
    stream_release(req);
    if (ok && req->stream_chunked) {
        char *last = strdup("0\r\n\r\n");
        ok = last && queue_owned(c, last, 5);
    }
    retire(c, req, req->streamed, ok);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (!ok) {
        conn_close(c); /* no last chunk: the client sees the answer was cut short */
        return;
    }
    c->state = C_WRITING;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        answer_sent(c); /* nothing left to write, so no write callback will come */
}

/* Ask the producer for more until SRV_STREAM_HIGH_WATER is queued; on the
 * worker thread, from start_stream and whenever the output drains below
 * SRV_STREAM_LOW_WATER. */
static void stream_pump(conn *c)
{
    srv_request *req = c->req;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < SRV_STREAM_HIGH_WATER) {
        srv_stream stream = {.c = c};
        srv_stream_status st = req->produce(&stream, req->stream_arg);
        if (st == SRV_STREAM_MORE && stream.wrote)
            continue;
        stream_end(c, st == SRV_STREAM_DONE);
        return;
    }
}

void srv_respond_static(srv_request *req, int status, const char *body, size_t len)
{
    respond(req, status, (char *)body, len, true);
}

void srv_respond_outcome(srv_request *req, int status, const char *issue_type, const char *message)
{
    size_t len = 0;
    char *body = http_outcome_body(issue_type ? issue_type : OO_PROCESSING, message ? message : "", &len);
    srv_set_header(req, "Content-Type", "application/fhir+json");
    srv_respond(req, status, body, len);
}

/* ---- Ops port ------------------------------------------------------------------------------------------------ */

static void respond_text(srv_request *req, int status, const char *content_type, const char *text)
{
    char *body = strdup(text);
    srv_set_header(req, "Content-Type", content_type);
    srv_set_header(req, "Cache-Control", "no-store");
    srv_respond(req, status, body, body ? strlen(text) : 0);
}

static void ops_metrics(srv_request *req)
{
    size_t len = 0;
    char *text = mx_render(req->srv->metrics, &len);
    if (!text) {
        srv_respond_outcome(req, 500, OO_EXCEPTION, "out of memory");
        return;
    }
    srv_set_header(req, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    srv_set_header(req, "Cache-Control", "no-store");
    srv_respond(req, 200, text, len);
}

static void ops_handle(srv_request *req)
{
    srv_server *s = req->srv;
    const char *path = srv_req_path(req);
    const char *method = srv_req_method(req);
    bool known = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0;
    srv_set_route(req, known ? path + 1 : "ops-unknown");
    if (!known) {
        srv_respond_outcome(req, 404, OO_NOT_FOUND, "no such ops endpoint: /healthz, /readyz and /metrics exist");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        srv_set_header(req, "Allow", "GET, HEAD");
        srv_respond_outcome(req, 405, OO_NOT_SUPPORTED, "only GET and HEAD are allowed here");
    } else if (strcmp(path, "/healthz") == 0) {
        respond_text(req, 200, "text/plain; charset=utf-8", "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        bool ready = !req->w->draining && (!s->cfg.ready || s->cfg.ready(s->cfg.ready_arg));
        if (ready)
            respond_text(req, 200, "text/plain; charset=utf-8", "ready\n");
        else
            srv_respond_outcome(req, 503, OO_EXCEPTION, "not ready");
    } else {
        ops_metrics(req);
    }
}
