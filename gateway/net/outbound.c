/*
 * gateway/net/outbound.c — outbound HTTPS with libcurl (see outbound.h).
 *
 * Connection reuse. A client keeps a small pool of curl easy handles. A call
 * takes one (or makes one), resets its options, sets them for this call, and
 * puts it back afterwards; an easy handle keeps its connection cache across
 * curl_easy_reset and across transfers, so the next call to the same peer
 * finds the connection still open and skips the TCP and TLS handshakes. Each
 * handle is used by one thread at a time (what libcurl requires of an easy
 * handle), handed from thread to thread under the pool's mutex.
 *
 * Why a pool and not one connection cache shared through CURLSH
 * (CURL_LOCK_DATA_CONNECT): libcurl's maintainers describe the shared
 * connection pool as needing more work when several threads use it at once
 * (curl-library, March 2021); a handle per concurrent call stays inside what
 * libcurl documents as safe. What is shared through a CURLSH, with one mutex
 * per kind of data as curl_share_setopt asks, is the DNS cache and the TLS
 * session cache: a handle that has to open a new connection to a peer another
 * handle already talked to resumes that TLS session (a shorter handshake).
 *
 * Which connection is reused is curl's decision: it only picks a cached
 * connection with the same scheme, host and port and the same TLS settings
 * (CA file, client certificate and key, verification): see its
 * ConnectionExists and Curl_ssl_config_matches. Here every ob_client has a
 * pool and a share of its own as well, so nothing crosses from a client with
 * one certificate or CA to another.
 *
 * Memory: the pool's handles (and their open connections) and the share are
 * the client's; ob_client_free closes and frees them (no call may be running).
 */
#include "gateway/net/outbound.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Easy handles kept idle per client: more calls than this at once make handles that are freed afterwards. */
#define POOL_MAX 8
/* Open connections kept per handle (curl closes the least recently used past it). */
#define CONNS_PER_HANDLE 4L
/* A connection idle longer than this is closed rather than reused: a peer may have dropped it already,
 * and an idle connection should not hold the peer's resources for long. */
#define IDLE_MAX_S 60L

/* The mutable part of a client, behind a pointer so ob_send can take a const ob_client. */
typedef struct pool {
    pthread_mutex_t lock; /* idle, n */
    CURL *idle[POOL_MAX];
    size_t n;
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST]; /* one per kind of shared data */
} pool;

struct ob_client {
    char *cert_file, *key_file, *ca_file;
    ob_config cfg; /* its strings point at the copies above */
    pool *pool;
};

/* ---- set-up ------------------------------------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static bool global_ok;

static void global_init(void)
{
    global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

bool ob_global_init(void)
{
    pthread_once(&global_once, global_init);
    return global_ok;
}

ob_config ob_config_default(void)
{
    ob_config c = {0};
    c.connect_timeout_ms = LIM(outbound_connect_timeout_ms);
    c.timeout_ms = LIM(outbound_timeout_ms);
    c.max_bytes = LIM(outbound_max_bytes);
    c.retries = LIM(outbound_retries);
    c.backoff_ms = LIM(outbound_backoff_ms);
    return c;
}

ob_config ob_config_from(const gw_config *c)
{
    ob_config o = ob_config_default();
    o.cert_file = c->outbound_cert[0] ? c->outbound_cert : NULL;
    o.key_file = c->outbound_key[0] ? c->outbound_key : NULL;
    o.ca_file = c->outbound_ca;
    o.connect_timeout_ms = (unsigned)c->outbound_connect_timeout_ms;
    o.timeout_ms = (unsigned)c->outbound_timeout_ms;
    o.max_bytes = (size_t)c->outbound_max_bytes;
    o.retries = (unsigned)c->outbound_retries;
    o.backoff_ms = (unsigned)c->outbound_backoff_ms;
    return o;
}

static void set_error(ob_error *err, ob_error_kind kind, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(ob_error *err, ob_error_kind kind, long status, const char *fmt, ...)
{
    err->kind = kind;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static bool readable(const char *path)
{
    return path && access(path, R_OK) == 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- the pool ---------------------------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    (void)h;
    (void)access; /* shared or single: a plain mutex serves both */
    pool *p = arg;
    if ((unsigned)data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&p->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    (void)h;
    pool *p = arg;
    if ((unsigned)data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&p->share_locks[data]);
}

static void pool_free(pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        curl_easy_cleanup(p->idle[i]); /* closes its connections */
    if (p->share)
        curl_share_cleanup(p->share); /* after every handle that used it */
    for (unsigned i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&p->share_locks[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static pool *pool_new(void)
{
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    for (unsigned i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&p->share_locks[i], NULL);
    p->share = curl_share_init();
    if (!p->share || curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_USERDATA, p) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        pool_free(p);
        return NULL;
    }
    return p;
}

/* An idle handle of the pool (its connections still open), or a new one; NULL when out of memory. */
static CURL *pool_take(pool *p)
{
    CURL *h = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->n)
        h = p->idle[--p->n];
    pthread_mutex_unlock(&p->lock);
    if (h)
        return h;
    h = curl_easy_init();
    if (h && curl_easy_setopt(h, CURLOPT_SHARE, p->share) != CURLE_OK) {
        curl_easy_cleanup(h);
        h = NULL;
    }
    return h;
}

/* Back into the pool after a call, whatever its outcome: curl has already closed a connection that
 * cannot serve another request (an aborted transfer, a peer that said Connection: close). The reset
 * drops every option, so no pointer into the finished call (headers, body, sink, error buffer) stays
 * in the handle; its connections, the share, DNS and TLS sessions stay. */
static void pool_give(pool *p, CURL *h)
{
    curl_easy_reset(h);
    pthread_mutex_lock(&p->lock);
    bool kept = p->n < POOL_MAX;
    if (kept)
        p->idle[p->n++] = h;
    pthread_mutex_unlock(&p->lock);
    if (!kept)
        curl_easy_cleanup(h);
}

void ob_client_free(ob_client *c)
{
    if (!c)
        return;
    pool_free(c->pool);
    free(c->cert_file);
    free(c->key_file);
    free(c->ca_file);
    free(c);
}

ob_client *ob_client_new(const ob_config *cfg, ob_error *err)
{
    memset(err, 0, sizeof *err);
    if (!ob_global_init()) {
        set_error(err, OB_INVALID, 0, "outbound: curl_global_init failed");
        return NULL;
    }
    if (!readable(cfg->ca_file)) {
        set_error(err, OB_INVALID, 0, "outbound: the CA file %s cannot be read",
                  cfg->ca_file ? cfg->ca_file : "(none)");
        return NULL;
    }
    if (!cfg->cert_file != !cfg->key_file) {
        set_error(err, OB_INVALID, 0, "outbound: a client certificate needs its key, and a key its certificate");
        return NULL;
    }
    if (cfg->cert_file && (!readable(cfg->cert_file) || !readable(cfg->key_file))) {
        set_error(err, OB_INVALID, 0, "outbound: the client certificate %s or its key %s cannot be read",
                  cfg->cert_file, cfg->key_file);
        return NULL;
    }
    ob_client *c = calloc(1, sizeof *c);
    if (!c) {
        set_error(err, OB_INVALID, 0, "outbound: out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    c->ca_file = strdup(cfg->ca_file);
    c->cert_file = dup_or_null(cfg->cert_file);
    c->key_file = dup_or_null(cfg->key_file);
    c->pool = pool_new();
    if (!c->ca_file || !c->pool || (cfg->cert_file && (!c->cert_file || !c->key_file))) {
        ob_client_free(c);
        set_error(err, OB_INVALID, 0, "outbound: out of memory");
        return NULL;
    }
    c->cfg.ca_file = c->ca_file;
    c->cfg.cert_file = c->cert_file;
    c->cfg.key_file = c->key_file;
    return c;
}

void ob_response_free(ob_response *r)
{
    if (!r)
        return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *ob_error_kind_name(ob_error_kind kind)
{
    static const char *const names[] = {
        [OB_OK] = "ok",
        [OB_UNREACHABLE] = "unreachable",
        [OB_TIMEOUT] = "timeout",
        [OB_TOO_LARGE] = "too-large",
        [OB_HTTP_STATUS] = "http-status",
        [OB_TLS] = "tls",
        [OB_INVALID] = "invalid",
    };
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "invalid";
}

/* ---- one attempt ------------------------------------------------------------------- */

/* The body as it arrives, refused past the limit. */
typedef struct sink {
    char *data;
    size_t len, cap, max;
    bool too_large;
    bool oom;
} sink;

static size_t on_body(char *ptr, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    size_t add = size * n;
    if (add > s->max - s->len) {
        s->too_large = true;
        return 0; /* curl aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (s->len + add + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 16384;
        while (cap < s->len + add + 1)
            cap *= 2;
        char *p = realloc(s->data, cap);
        if (!p) {
            s->oom = true;
            return 0;
        }
        s->data = p;
        s->cap = cap;
    }
    memcpy(s->data + s->len, ptr, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

/* What the error message names: scheme, host and port of the URL (never path or query). */
static void url_origin(const char *url, char *out, size_t size)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    size_t n = strcspn(host, "/?#");
    snprintf(out, size, "https://%.*s", (int)(n < 200 ? n : 200), host);
}

/* How a curl failure reads as a kind. */
static ob_error_kind kind_of(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return OB_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED: return OB_TOO_LARGE;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED: return OB_TLS;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT: return OB_INVALID;
    default: return OB_UNREACHABLE; /* refused, resolve, reset, empty reply, partial body */
    }
}

typedef struct attempt {
    ob_error_kind kind;
    bool sent; /* the request may have reached the peer */
    long status;
    char detail[160];
} attempt;

static struct curl_slist *header_list(const char *const *headers, bool *ok)
{
    struct curl_slist *list = NULL;
    *ok = true;
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *next = curl_slist_append(list, headers[i]);
        if (!next) {
            *ok = false;
            break;
        }
        list = next;
    }
    /* no "Expect: 100-continue" round trip before a POST body */
    struct curl_slist *next = curl_slist_append(list, "Expect:");
    if (next)
        list = next;
    else
        *ok = false;
    return list;
}

static void configure(CURL *h, const ob_client *c, const ob_request *rq, struct curl_slist *headers, sink *s)
{
    const ob_config *cfg = &c->cfg;
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for name resolution timeouts */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL); /* only our anchors, not the system's */
    if (cfg->cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, cfg->cert_file);
        curl_easy_setopt(h, CURLOPT_SSLKEY, cfg->key_file);
    }
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_bytes);
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, CONNS_PER_HANDLE);
    curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, IDLE_MAX_S);
    /*
     * A cached connection may have been closed by the peer since the last call. curl checks it before use
     * and opens a new one when it sees it closed; when the close is only noticed after the request went out
     * on it and nothing at all came back, curl sends the request again, once, on a fresh connection (its
     * Curl_retry_request), also a POST whose body was already written. The peer may have received that first
     * copy (it closed after reading, before answering), so for a POST that may not be repeated that would be
     * exactly the unsafe retry outbound.h rules out: such a POST gets a fresh connection of its own
     * (FRESH_CONNECT), where a connection that dies is an error (CURLE_GOT_NOTHING, CURLE_SEND_ERROR, ...)
     * that ob_send does not retry because the request may have been sent, as before this pool. GETs and
     * POSTs marked idempotent (the relay's notifications) take the cached connection: a resend is safe.
     * The connection a fresh-connect POST opens is kept for later calls. curl 7.88 has no option to turn
     * the resend off (CURLOPT_FORBID_RETRY_ON_REUSE came with 8.16).
     */
    if (!strcmp(rq->method, "POST") && !rq->idempotent)
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "fhirgw");
    if (!strcmp(rq->method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
}

/* One try; the answer (any status) into *out when the peer answered. */
static void try_once(const ob_client *c, const ob_request *rq, ob_response *out, attempt *a)
{
    memset(a, 0, sizeof *a);
    CURL *h = pool_take(c->pool);
    bool ok;
    struct curl_slist *headers = header_list(rq->headers, &ok);
    if (!h || !ok) {
        if (h)
            pool_give(c->pool, h);
        curl_slist_free_all(headers);
        a->kind = OB_INVALID;
        snprintf(a->detail, sizeof a->detail, "out of memory");
        return;
    }
    sink s = {.max = c->cfg.max_bytes};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    configure(h, c, rq, headers, &s);
    CURLcode rc = curl_easy_perform(h);
    long connected = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &connected);
    a->sent = connected > 0 || a->status > 0;
    if (rc == CURLE_OK) {
        out->status = a->status;
        out->body = s.data;
        out->len = s.len;
        s.data = NULL;
        const char *ct = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            snprintf(out->content_type, sizeof out->content_type, "%s", ct);
        a->kind = a->status >= 200 && a->status < 300 ? OB_OK : OB_HTTP_STATUS;
    } else if (s.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        a->kind = OB_TOO_LARGE;
    } else if (s.oom) {
        a->kind = OB_INVALID;
        snprintf(a->detail, sizeof a->detail, "out of memory");
    } else {
        a->kind = kind_of(rc);
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        snprintf(a->detail, sizeof a->detail, "%.*s", (int)(sizeof a->detail - 1), why); /* cut, not overflowed */
    }
    free(s.data);
    curl_slist_free_all(headers);
    pool_give(c->pool, h);
}

/* ---- the call ---------------------------------------------------------------------- */

static bool retryable(const ob_request *rq, const attempt *a)
{
    bool repeatable = strcmp(rq->method, "POST") != 0 || rq->idempotent || !a->sent;
    switch (a->kind) {
    case OB_UNREACHABLE:
    case OB_TIMEOUT: return repeatable;
    case OB_HTTP_STATUS: return a->status >= 500 && repeatable;
    default: return false;
    }
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void describe(ob_error *err, const ob_client *c, const ob_request *rq, const attempt *a, unsigned attempts)
{
    char origin[256];
    url_origin(rq->url, origin, sizeof origin);
    const char *tries = attempts == 1 ? "attempt" : "attempts";
    switch (a->kind) {
    case OB_TIMEOUT:
        set_error(err, OB_TIMEOUT, 0, "%s %s: no answer within %u ms (connect %u ms) after %u %s", rq->method, origin,
                  c->cfg.timeout_ms, c->cfg.connect_timeout_ms, attempts, tries);
        break;
    case OB_TOO_LARGE:
        set_error(err, OB_TOO_LARGE, 0, "%s %s: the answer is larger than %zu bytes", rq->method, origin,
                  c->cfg.max_bytes);
        break;
    case OB_HTTP_STATUS:
        set_error(err, OB_HTTP_STATUS, a->status, "%s %s: the peer answered %ld after %u %s", rq->method, origin,
                  a->status, attempts, tries);
        break;
    case OB_TLS: set_error(err, OB_TLS, 0, "%s %s: TLS failed: %s", rq->method, origin, a->detail); break;
    case OB_UNREACHABLE:
        set_error(err, OB_UNREACHABLE, 0, "%s %s: unreachable after %u %s: %s", rq->method, origin, attempts, tries,
                  a->detail);
        break;
    default: set_error(err, a->kind, 0, "%s %s: %s", rq->method, origin, a->detail); break;
    }
}

bool ob_send(const ob_client *c, const ob_request *rq, ob_response *out, ob_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    if (!rq->url || strncasecmp(rq->url, "https://", 8) != 0) {
        set_error(err, OB_INVALID, 0, "outbound: only https:// URLs are called");
        return false;
    }
    if (!rq->method || (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "POST") != 0)) {
        set_error(err, OB_INVALID, 0, "outbound: only GET and POST are made");
        return false;
    }
    attempt a;
    unsigned backoff = c->cfg.backoff_ms;
    for (unsigned n = 1;; n++) {
        ob_response_free(out);
        try_once(c, rq, out, &a);
        if (a.kind == OB_OK) {
            err->attempts = n;
            return true;
        }
        if (n > c->cfg.retries || !retryable(rq, &a)) {
            describe(err, c, rq, &a, n);
            err->attempts = n;
            return false;
        }
        pause_ms(backoff);
        backoff = backoff > 60000 ? backoff : backoff * 2;
    }
}

bool ob_get(const ob_client *c, const char *url, const char *const *headers, ob_response *out, ob_error *err)
{
    ob_request rq = {.method = "GET", .url = url, .headers = headers};
    return ob_send(c, &rq, out, err);
}

bool ob_post(const ob_client *c, const char *url, const char *const *headers, const char *body, size_t len,
             ob_response *out, ob_error *err)
{
    ob_request rq = {.method = "POST", .url = url, .headers = headers, .body = body, .body_len = len};
    return ob_send(c, &rq, out, err);
}
