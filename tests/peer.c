/*
 * tests/peer.c — see peer.h.
 */
#include "tests/peer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/http/metrics.h"
#include "gateway/http/server.h"

#define PEER_PREFIX "/fhir"

typedef struct stored {
    char *type, *id, *json;
} stored;

typedef struct recorded {
    char *method, *path, *query, *body;
    size_t body_len;
} recorded;

struct peer {
    peer_options opt;
    char pki[512];
    char base[64];
    unsigned port;
    srv_server *srv;
    mx_registry *metrics; /* the servers' (one per restart) counters, kept across restarts */
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t idle;  /* delayed == 0 */
    peer_mode mode;
    int post_status;
    stored *items;
    size_t count, cap;
    recorded *reqs;
    size_t nreq, capreq;
    unsigned delayed; /* answers held back by PEER_SLOW, not sent yet */
};

static char *dup_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

static char *dup(const char *s)
{
    return dup_n(s, strlen(s));
}

/* ---- answers ----------------------------------------------------------------------- */

static void respond_text(srv_request *req, int status, const char *type, char *body)
{
    srv_set_header(req, "Content-Type", type);
    srv_respond(req, status, body, strlen(body));
}

/* A query value with its %XX escapes decoded, in place ('+' stays: the gateway encodes spaces as %20). */
static void percent_decode(char *v)
{
    char *out = v;
    for (const char *in = v; *in; in++) {
        unsigned c;
        if (in[0] == '%' && in[1] && in[2] && sscanf(in + 1, "%2x", &c) == 1) {
            *out++ = (char)c;
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = 0;
}

static char *searchset(peer *p, const char *type, const char *query)
{
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    len += (size_t)snprintf(out, cap, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"");
    bool first = true;
    for (size_t i = 0; i < p->count; i++) {
        if (strcmp(p->items[i].type, type) != 0)
            continue;
        bool match = true;
        char *q = dup(query);
        for (char *save = NULL, *part = strtok_r(q, "&", &save); part && match; part = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(part, '=');
            if (part[0] == '_' || !eq)
                continue;
            percent_decode(eq + 1); /* "Patient%2Fp1" is searched as it is written, "Patient/p1" */
            match = strstr(p->items[i].json, eq + 1) != NULL;
        }
        free(q);
        if (!match)
            continue;
        size_t need = len + strlen(p->items[i].json) + 32;
        if (need + 8 > cap) {
            while (need + 8 > cap)
                cap *= 2;
            out = realloc(out, cap);
        }
        len += (size_t)snprintf(out + len, cap - len, "%s{\"resource\":%s}", first ? ",\"entry\":[" : ",",
                                p->items[i].json);
        first = false;
    }
    snprintf(out + len, cap - len, "%s}", first ? "" : "]"); /* no matches: no entry array (FHIR has no empty ones) */
    return out;
}

static void answer_get(peer *p, srv_request *req, peer_mode mode)
{
    if (mode == PEER_GARBAGE) {
        respond_text(req, 200, "application/fhir+json", dup("<html>this is not { JSON"));
        return;
    }
    if (mode == PEER_OVERSIZE) {
        size_t n = p->opt.oversize_bytes ? p->opt.oversize_bytes : 2u << 20;
        char *body = malloc(n + 1);
        memset(body, ' ', n);
        memcpy(body, "{\"resourceType\":\"Basic\"", 23);
        body[n - 1] = '}';
        body[n] = '\0';
        srv_set_header(req, "Content-Type", "application/fhir+json");
        srv_respond(req, 200, body, n);
        return;
    }
    const char *path = srv_req_path(req) + strlen(PEER_PREFIX);
    char type[64] = "", id[128] = "";
    const char *slash = strchr(path + 1, '/');
    size_t tlen = slash ? (size_t)(slash - path - 1) : strlen(path + 1);
    if (tlen >= sizeof type) {
        srv_respond_outcome(req, 404, "not-found", "no such type");
        return;
    }
    memcpy(type, path + 1, tlen);
    if (slash)
        snprintf(id, sizeof id, "%s", slash + 1);
    pthread_mutex_lock(&p->lock);
    if (!id[0]) {
        char *bundle = searchset(p, type, srv_req_query(req));
        pthread_mutex_unlock(&p->lock);
        respond_text(req, 200, "application/fhir+json", bundle);
        return;
    }
    char *body = NULL;
    for (size_t i = 0; i < p->count && !body; i++)
        if (!strcmp(p->items[i].type, type) && !strcmp(p->items[i].id, id))
            body = dup(p->items[i].json);
    pthread_mutex_unlock(&p->lock);
    if (!body) {
        srv_respond_outcome(req, 404, "not-found", "no such resource here");
        return;
    }
    if (mode == PEER_INVALID) {
        free(body);
        char buf[256];
        snprintf(buf, sizeof buf, "{\"resourceType\":\"%s\",\"id\":\"%s\",\"status\":42,\"noSuchElement\":true}", type,
                 id);
        body = dup(buf);
    }
    respond_text(req, 200, "application/fhir+json", body);
}

static void answer(peer *p, srv_request *req, peer_mode mode)
{
    if (mode == PEER_500) {
        srv_respond_outcome(req, 500, "exception", "the peer is playing a server error");
        return;
    }
    if (strncmp(srv_req_path(req), PEER_PREFIX "/", strlen(PEER_PREFIX) + 1) != 0) {
        srv_respond_outcome(req, 404, "not-found", "the peer serves under " PEER_PREFIX);
        return;
    }
    if (!strcmp(srv_req_method(req), "POST")) {
        pthread_mutex_lock(&p->lock);
        int status = p->post_status;
        pthread_mutex_unlock(&p->lock);
        srv_respond_outcome(req, status, "informational", "received");
        return;
    }
    answer_get(p, req, mode);
}

typedef struct delayed {
    peer *p;
    srv_request *req;
} delayed;

static void *answer_later(void *arg)
{
    delayed *d = arg;
    struct timespec ts = {.tv_sec = d->p->opt.slow_ms / 1000, .tv_nsec = (long)(d->p->opt.slow_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    answer(d->p, d->req, PEER_UP);
    pthread_mutex_lock(&d->p->lock);
    if (--d->p->delayed == 0)
        pthread_cond_broadcast(&d->p->idle);
    pthread_mutex_unlock(&d->p->lock);
    free(d);
    return NULL;
}

static void record(peer *p, srv_request *req)
{
    size_t blen = 0;
    const unsigned char *body = srv_req_body(req, &blen);
    if (p->nreq == p->capreq) {
        p->capreq = p->capreq ? p->capreq * 2 : 16;
        p->reqs = realloc(p->reqs, p->capreq * sizeof *p->reqs);
    }
    recorded *r = &p->reqs[p->nreq++];
    r->method = dup(srv_req_method(req));
    r->path = dup(srv_req_path(req));
    r->query = dup(srv_req_query(req));
    r->body = dup_n(body ? (const char *)body : "", body ? blen : 0);
    r->body_len = body ? blen : 0;
}

static void handle(srv_request *req, void *arg)
{
    peer *p = arg;
    pthread_mutex_lock(&p->lock);
    record(p, req);
    peer_mode mode = p->mode;
    if (mode == PEER_SLOW)
        p->delayed++;
    pthread_mutex_unlock(&p->lock);
    if (mode != PEER_SLOW) {
        answer(p, req, mode);
        return;
    }
    delayed *d = malloc(sizeof *d);
    d->p = p;
    d->req = req;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, answer_later, d);
    pthread_attr_destroy(&attr);
}

/* ---- the server -------------------------------------------------------------------- */

static bool serve(peer *p, bool foreign, char *err, size_t errlen)
{
    char cert[600], key[600], ca[600];
    snprintf(cert, sizeof cert, "%s/%s", p->pki, foreign ? "foreign/server.crt" : "server.crt");
    snprintf(key, sizeof key, "%s/%s", p->pki, foreign ? "foreign/server.key" : "server.key");
    snprintf(ca, sizeof ca, "%s/ca-bundle.pem", p->pki);
    srv_config cfg;
    srv_config_defaults(&cfg);
    cfg.address = "127.0.0.1";
    cfg.port = p->port;
    cfg.workers = 2;
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.ca_file = ca;
    cfg.crl_file = NULL;
    cfg.ops_enabled = false;
    cfg.handler = handle;
    cfg.handler_arg = p;
    cfg.metrics = p->metrics;
    if (p->opt.idle_timeout_ms)
        cfg.idle_timeout_ms = p->opt.idle_timeout_ms;
    p->srv = srv_new(&cfg, err, errlen);
    if (!p->srv)
        return false;
    if (!srv_start(p->srv, err, errlen)) {
        srv_free(p->srv);
        p->srv = NULL;
        return false;
    }
    p->port = srv_port(p->srv);
    return true;
}

static void wait_delayed(peer *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->delayed)
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

static void unserve(peer *p)
{
    if (!p->srv)
        return;
    wait_delayed(p);
    srv_stop(p->srv);
    srv_wait(p->srv);
    srv_free(p->srv);
    p->srv = NULL;
}

peer *peer_start(const peer_options *opt, char *err, size_t errlen)
{
    peer *p = calloc(1, sizeof *p);
    p->opt = *opt;
    if (!p->opt.slow_ms)
        p->opt.slow_ms = 3000;
    snprintf(p->pki, sizeof p->pki, "%s", opt->pki_dir);
    p->opt.pki_dir = p->pki;
    p->post_status = 200;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->metrics = mx_registry_new();
    if (!p->metrics) {
        snprintf(err, errlen, "peer: out of memory");
        peer_free(p);
        return NULL;
    }
    if (!serve(p, false, err, errlen)) {
        peer_free(p);
        return NULL;
    }
    snprintf(p->base, sizeof p->base, "https://127.0.0.1:%u" PEER_PREFIX, p->port);
    return p;
}

void peer_free(peer *p)
{
    if (!p)
        return;
    unserve(p);
    for (size_t i = 0; i < p->count; i++) {
        free(p->items[i].type);
        free(p->items[i].id);
        free(p->items[i].json);
    }
    free(p->items);
    for (size_t i = 0; i < p->nreq; i++) {
        free(p->reqs[i].method);
        free(p->reqs[i].path);
        free(p->reqs[i].query);
        free(p->reqs[i].body);
    }
    free(p->reqs);
    mx_registry_free(p->metrics); /* after the last server that counted into it */
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->idle);
    free(p);
}

unsigned peer_port(const peer *p)
{
    return p->port;
}

const char *peer_base(const peer *p)
{
    return p->base;
}

bool peer_set_mode(peer *p, peer_mode mode, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->lock);
    peer_mode old = p->mode;
    p->mode = mode;
    pthread_mutex_unlock(&p->lock);
    bool was_foreign = old == PEER_FOREIGN, foreign = mode == PEER_FOREIGN;
    bool listening = p->srv != NULL;
    if (mode == PEER_DOWN) {
        unserve(p);
        return true;
    }
    if (listening && was_foreign == foreign)
        return true;
    unserve(p);
    return serve(p, foreign, err, errlen);
}

/* JSON as a FHIR server writes it: "/" not escaped (json-c writes "\/"), so a search matches "Patient/p1". */
static char *unescaped_slashes(const char *json)
{
    char *out = dup(json), *w = out;
    for (const char *r = json; *r; r++)
        if (!(r[0] == '\\' && r[1] == '/'))
            *w++ = *r;
    *w = 0;
    return out;
}

void peer_put(peer *p, const char *type, const char *id, const char *json_as_given)
{
    char *json = unescaped_slashes(json_as_given);
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->count; i++)
        if (!strcmp(p->items[i].type, type) && !strcmp(p->items[i].id, id)) {
            free(p->items[i].json);
            p->items[i].json = json;
            pthread_mutex_unlock(&p->lock);
            return;
        }
    if (p->count == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->items = realloc(p->items, p->cap * sizeof *p->items);
    }
    p->items[p->count++] = (stored){dup(type), dup(id), json};
    pthread_mutex_unlock(&p->lock);
}

void peer_set_post_status(peer *p, int status)
{
    pthread_mutex_lock(&p->lock);
    p->post_status = status;
    pthread_mutex_unlock(&p->lock);
}

size_t peer_request_count(peer *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->nreq;
    pthread_mutex_unlock(&p->lock);
    return n;
}

bool peer_request_at(peer *p, size_t i, peer_request *out)
{
    pthread_mutex_lock(&p->lock);
    bool ok = i < p->nreq;
    if (ok) {
        recorded *r = &p->reqs[i];
        *out = (peer_request){r->method, r->path, r->query, r->body, r->body_len};
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

size_t peer_count_path(peer *p, const char *path, bool prefix)
{
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->nreq; i++)
        if (prefix ? !strncmp(p->reqs[i].path, path, strlen(path)) : !strcmp(p->reqs[i].path, path))
            n++;
    pthread_mutex_unlock(&p->lock);
    return n;
}

size_t peer_connections(peer *p)
{
    /* the server's own counter (gateway/http/server.c registers it; registering again finds it) */
    mx_family *f = mx_counter(p->metrics, "fhirgw_tls_handshakes_total", "TLS handshakes completed.", NULL);
    int64_t n = mx_value(mx_series(f, NULL));
    return n > 0 ? (size_t)n : 0;
}
