/*
 * gateway/rest/rest.c — the REST entry point: identity, limits, routing,
 * dispatch, reads and the answering helpers (see rest.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/rest/capability.h"
#include "gateway/rest/rest_internal.h"

#define CONTENT_TYPE "application/fhir+json; charset=utf-8"

/* ---- the app ---- */

bool rest_search_kind_supported(fs_search_kind kind)
{
    return kind != FS_SEARCH_COMPOSITE && kind != FS_SEARCH_SPECIAL;
}

static int64_t real_clock_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rest_now_ms(const rest_app *app) { return app->opt.clock_ms(app->opt.clock_arg); }

static void free_arena(void *a) { fp_arena_free(a); }

/*
 * Who a certificate is, remembered per worker thread: a keep-alive
 * connection sends the same certificate with every request, and decoding its
 * subjectAltName each time costs more than the rest of a read. The cache
 * holds a reference to the certificate and compares by X509_cmp (the
 * certificate's own digest), so a new connection never inherits an old
 * identity by pointer reuse.
 */
typedef struct caller_cache {
    X509 *cert;
    id_identity who;
} caller_cache;

static void free_caller_cache(void *p)
{
    caller_cache *cc = p;
    X509_free(cc->cert);
    free(cc);
}

static void resolve_caller(rest_app *app, X509 *cert, id_identity *who)
{
    caller_cache *cc = pthread_getspecific(app->caller_key);
    if (cc && cert && cc->cert && X509_cmp(cc->cert, cert) == 0) {
        *who = cc->who;
        return;
    }
    id_resolve(cert, app->opt.organisations, who);
    if (!cert)
        return;
    if (!cc && (cc = calloc(1, sizeof *cc)))
        pthread_setspecific(app->caller_key, cc);
    if (cc && X509_up_ref(cert)) {
        X509_free(cc->cert);
        cc->cert = cert;
        cc->who = *who;
    }
}

fp_arena *rest_arena(rest_app *app)
{
    fp_arena *a = pthread_getspecific(app->arena_key);
    if (!a) {
        a = fp_arena_new();
        pthread_setspecific(app->arena_key, a);
    }
    return a;
}

static bool build_capability(rest_app *app)
{
    char start[ST_INSTANT_LEN];
    st_format_instant(rest_now_ms(app), start);
    cap_info info = {"0.1.0", app->opt.base_url, start, rest_search_kind_supported, NULL, NULL, 0,
                     !app->opt.allow_dangling_references};
    json_object *cs = cap_build(app->schema, &info);
    const char *text = json_object_to_json_string_ext(cs, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    app->capability_len = strlen(text);
    app->capability = strdup(text);
    json_object_put(cs);
    return app->capability != NULL;
}

rest_app *rest_app_new(const rest_options *opts, char *err, size_t errlen)
{
    rest_app *app = calloc(1, sizeof *app);
    if (!app) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->opt = *opts;
    app->schema = opts->schema ? opts->schema : fs_r4();
    if (!app->opt.clock_ms)
        app->opt.clock_ms = real_clock_ms;
    if (app->opt.page_size_default <= 0)
        app->opt.page_size_default = 50;
    if (app->opt.page_size_max <= 0)
        app->opt.page_size_max = 500;
    if (!app->opt.page_max_bytes)
        app->opt.page_max_bytes = REST_DEFAULT_PAGE_MAX_BYTES;
    pthread_key_create(&app->arena_key, free_arena);
    pthread_key_create(&app->caller_key, free_caller_cache);
    char ix_err[256] = "";
    app->indexer = ix_new(app->schema, rest_search_kind_supported, ix_err, sizeof ix_err);
    app->limiter = rl_new(opts->rate_per_second, opts->rate_burst);
    if (!app->indexer || !app->limiter || !build_capability(app)) {
        snprintf(err, errlen, "cannot set up the REST layer%s%s", *ix_err ? ": " : "", ix_err);
        rest_app_free(app);
        return NULL;
    }
    return app;
}

void rest_app_free(rest_app *app)
{
    if (!app)
        return;
    fp_arena *a = pthread_getspecific(app->arena_key);
    if (a) {
        fp_arena_free(a);
        pthread_setspecific(app->arena_key, NULL);
    }
    pthread_key_delete(app->arena_key);
    caller_cache *cc = pthread_getspecific(app->caller_key);
    if (cc) {
        free_caller_cache(cc);
        pthread_setspecific(app->caller_key, NULL);
    }
    pthread_key_delete(app->caller_key);
    ix_free(app->indexer);
    rl_free(app->limiter);
    free(app->capability);
    free(app);
}

/* ---- answering ---- */

void rq_finish(rq *q)
{
    rest_write_free(&q->write);
    free(q);
}

void rq_respond_json(rq *q, int status, char *body, size_t len)
{
    if (body)
        srv_set_header(q->req, "Content-Type", CONTENT_TYPE);
    srv_respond(q->req, status, body, len);
    q->req = NULL;
}

void rq_respond_stream(rq *q, srv_producer produce, srv_release release, void *arg)
{
    srv_request *req = q->req;
    q->req = NULL; /* before answering: release (which may free q) can run inside srv_respond_stream */
    srv_set_header(req, "Content-Type", CONTENT_TYPE);
    srv_respond_stream(req, 200, produce, release, arg);
}

static char *outcome_text(const oo_list *issues, size_t *len)
{
    json_object *oo = oo_to_json(issues);
    const char *text = json_object_to_json_string_ext(oo, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    *len = strlen(text);
    char *copy = strdup(text);
    json_object_put(oo);
    return copy;
}

void rq_respond_issues(rq *q, int status, const oo_list *issues)
{
    size_t len;
    char *body = outcome_text(issues, &len);
    rq_respond_json(q, status, body, body ? len : 0);
}

void rq_respond_outcome(rq *q, int status, oo_severity sev, const char *code, const char *expression,
                        const char *fmt, ...)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    va_list ap;
    va_start(ap, fmt);
    oo_vadd(&issues, sev, code, expression, 0, 0, fmt, ap);
    va_end(ap);
    rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
}

void rq_set_version_headers(rq *q, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                            bool location)
{
    char buf[640];
    snprintf(buf, sizeof buf, "W/\"%lld\"", (long long)version);
    srv_set_header(q->req, "ETag", buf);
    char date[30];
    st_format_http_date(last_updated_ms, date);
    srv_set_header(q->req, "Last-Modified", date);
    if (location) {
        snprintf(buf, sizeof buf, "%s/%s/%s/_history/%lld", q->app->opt.base_url, type, id, (long long)version);
        srv_set_header(q->req, "Location", buf);
        srv_set_header(q->req, "Content-Location", buf);
    }
}

int rest_status_of(st_status s)
{
    switch (s) {
    case ST_OK: return 200;
    case ST_EXISTS: return 200;
    case ST_NOT_FOUND: return 404;
    case ST_GONE: return 410;
    case ST_VERSION_CONFLICT: return 412;
    case ST_CONFLICT: return 409;
    case ST_MULTIPLE_MATCHES: return 412;
    case ST_ABORTED: return 409;
    case ST_INVALID: return 400;
    case ST_BUSY: return 503;
    case ST_CLOSED: return 503;
    default: return 500;
    }
}

const char *rest_code_of(st_status s)
{
    switch (s) {
    case ST_NOT_FOUND: return OO_NOT_FOUND;
    case ST_GONE: return "deleted";
    case ST_VERSION_CONFLICT: return "conflict";
    case ST_CONFLICT: return "duplicate";
    case ST_MULTIPLE_MATCHES: return "multiple-matches";
    case ST_ABORTED: return "conflict";
    case ST_INVALID: return "invalid";
    case ST_BUSY: return "transient";
    case ST_CLOSED: return "transient";
    default: return OO_EXCEPTION;
    }
}


/* ---- identity and limits ---- */

/* Who is calling; false (after answering 401) when no registered organisation is behind the certificate. */
static bool identify(rq *q)
{
    id_identity who;
    resolve_caller(q->app, srv_req_peer_cert(q->req), &who);
    const id_entry *entry = who.ura[0] ? id_lookup_ura(q->app->opt.organisations, who.ura) : NULL;
    if (!entry) {
        rest_record_decision(q, AZ_READ, NULL, AZ_FORBIDDEN, 401, "no registered organisation", NULL);
        rq_respond_outcome(q, 401, OO_ERROR, "login", NULL,
                           "the client certificate is valid but names no registered organisation%s%s",
                           who.ura[0] ? " (URA " : "", who.ura[0] ? who.ura : "");
        return false;
    }
    snprintf(q->caller.ura, sizeof q->caller.ura, "%s", entry->ura);
    q->caller.roles = az_parse_roles(entry->role);
    snprintf(q->org_name, sizeof q->org_name, "%s", entry->name);
    srv_set_caller(q->req, entry->name, entry->ura);
    return true;
}

static bool within_rate(rq *q)
{
    unsigned retry = 1;
    if (rl_take(q->app->limiter, q->caller.ura, rest_now_ms(q->app), &retry))
        return true;
    char value[16];
    snprintf(value, sizeof value, "%u", retry);
    srv_set_header(q->req, "Retry-After", value);
    rq_respond_outcome(q, 429, OO_ERROR, "throttled", NULL, "too many requests from this organisation; retry after %u s",
                       retry);
    return false;
}

/* ---- reads ---- */

static az_action action_of(rt_interaction i)
{
    switch (i) {
    case RT_READ:
    case RT_VREAD: return AZ_READ;
    case RT_SEARCH: return AZ_SEARCH;
    case RT_HISTORY_INSTANCE:
    case RT_HISTORY_TYPE:
    case RT_HISTORY_SYSTEM: return AZ_HISTORY;
    case RT_CREATE: return AZ_CREATE;
    case RT_UPDATE: return AZ_UPDATE;
    case RT_DELETE: return AZ_DELETE;
    case RT_PATCH: return AZ_UPDATE;
    default: return AZ_VALIDATE;
    }
}


/*
 * A conditional read (If-None-Match, else If-Modified-Since) the client's
 * copy satisfies: 304 without a body. HTTP dates have whole seconds, so the
 * comparison is in seconds too.
 */
bool rest_not_modified(const char *if_none_match, const int64_t *since_ms, const st_resource *r)
{
    if (if_none_match)
        return rt_etag_list_matches(if_none_match, r->version);
    return since_ms && r->last_updated_ms / 1000 <= *since_ms / 1000;
}

static bool not_modified(rq *q, const st_resource *r)
{
    int64_t since;
    bool has_since = rt_http_date(srv_req_header(q->req, "If-Modified-Since"), &since);
    return rest_not_modified(srv_req_header(q->req, "If-None-Match"), has_since ? &since : NULL, r);
}

static void read_resource(rq *q)
{
    const char *type = q->route.type->name;
    st_resource r;
    st_error err;
    st_status s = q->route.interaction == RT_VREAD
                      ? st_vread(q->app->opt.store, type, q->route.id, strtoll(q->route.version, NULL, 10), &r, &err)
                      : st_read(q->app->opt.store, type, q->route.id, &r, &err);
    if (s != ST_OK && s != ST_GONE) {
        if (s == ST_NOT_FOUND)
            rest_answer_not_known(q, type, q->route.id, q->route.version);
        else
            rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s",
                               err.message);
        return;
    }
    if (!rest_may(q, &r, AZ_READ)) {
        st_resource_free(&r);
        return;
    }
    if (s == ST_GONE) {
        rq_set_version_headers(q, type, q->route.id, r.version, r.last_updated_ms, false);
        rq_respond_outcome(q, 410, OO_ERROR, "deleted", NULL, "%s/%s was deleted (version %lld)", type, q->route.id,
                           (long long)r.version);
    } else if (not_modified(q, &r)) {
        rq_set_version_headers(q, type, q->route.id, r.version, r.last_updated_ms, false);
        rq_respond_json(q, 304, NULL, 0);
    } else {
        rq_set_version_headers(q, type, q->route.id, r.version, r.last_updated_ms, false);
        char *body = malloc(r.json_len + 1);
        if (body)
            memcpy(body, r.json, r.json_len + 1);
        rq_respond_json(q, 200, body, body ? r.json_len : 0);
    }
    st_resource_free(&r);
}

/* The CapabilityStatement is built once and lent to the server for every answer (it is large). */
static void capabilities(rq *q)
{
    srv_set_header(q->req, "Content-Type", CONTENT_TYPE);
    srv_respond_static(q->req, 200, q->app->capability, q->app->capability_len);
    q->req = NULL;
}

/* ---- dispatch ---- */

static bool negotiate(rq *q)
{
    const char *query = srv_req_query(q->req);
    char *format = NULL;
    const char *f = strstr(query, "_format=");
    if (f && (f == query || f[-1] == '&'))
        format = sq_url_decode(f + 8, strcspn(f + 8, "&"));
    /* "_format=application/fhir+json" sent unencoded decodes '+' to a space; no media type has one */
    for (char *c = format; c && *c; c++)
        if (*c == ' ')
            *c = '+';
    rt_format fmt = rt_negotiate(format, srv_req_header(q->req, "Accept"));
    free(format);
    if (fmt == RT_FORMAT_JSON)
        return true;
    rq_respond_outcome(q, 406, OO_ERROR, OO_NOT_SUPPORTED, NULL,
                       "only application/fhir+json is served (see _format and Accept)");
    return false;
}

/* Returns true when q was handed on: to the store (the commit callback frees it) or to a streamed
 * answer (its release frees it). */
static bool dispatch(rq *q)
{
    switch (q->route.interaction) {
    case RT_CAPABILITIES: capabilities(q); return false;
    case RT_READ:
    case RT_VREAD: read_resource(q); return false;
    case RT_CREATE: return rest_create(q);
    case RT_UPDATE: return rest_update(q);
    case RT_DELETE: return rest_delete(q);
    case RT_PATCH: return rest_patch(q);
    case RT_SEARCH: return rest_search(q);
    case RT_HISTORY_INSTANCE:
    case RT_HISTORY_TYPE:
    case RT_HISTORY_SYSTEM: return rest_history(q);
    case RT_BATCH: return rest_batch(q);
    case RT_OPERATION:
        if (!strcmp(q->route.operation, "validate")) {
            rest_validate_op(q);
            return false;
        }
        rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_SUPPORTED, NULL, "operation $%s is not supported",
                           q->route.operation);
        return false;
    default: break;
    }
    int status = q->route.error_status ? q->route.error_status : 404;
    if (status == 405 && q->route.allow)
        srv_set_header(q->req, "Allow", q->route.allow);
    char method[RT_ECHO_SIZE], path[RT_ECHO_SIZE]; /* a 10,000-character id is not echoed whole */
    rq_respond_outcome(q, status, OO_ERROR,
                       status == 405 ? OO_NOT_SUPPORTED : status == 400 ? "invalid" : OO_NOT_FOUND, NULL, "%s %s: %s",
                       rt_echo(srv_req_method(q->req), method), rt_echo(srv_req_path(q->req), path),
                       q->route.error ? q->route.error : "not found");
    return false;
}

void rest_handle(srv_request *req, void *arg)
{
    rq *q = calloc(1, sizeof *q);
    if (!q) {
        srv_respond_outcome(req, 503, "transient", "out of memory");
        return;
    }
    q->app = arg;
    q->req = req;
    rt_parse(q->app->schema, srv_req_method(req), srv_req_path(req), &q->route);
    srv_set_route(req, rt_name(q->route.interaction));
    q->prefer = rt_prefer_return(srv_req_header(req, "Prefer"));
    if (!identify(q) || !within_rate(q) || !negotiate(q)) {
        rq_finish(q);
        return;
    }
    if (q->route.type) {
        az_decision d = rest_decide(q, action_of(q->route.interaction), q->route.type->name, NULL, NULL);
        if (d != AZ_ALLOW) {
            rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "this organisation has no access to %s resources",
                               q->route.type->name);
            rq_finish(q);
            return;
        }
    }
    /* a write handed to the store is answered and freed by its commit callback, maybe already now;
     * a streamed page frees q when the stream is released */
    if (!dispatch(q))
        rq_finish(q);
}
