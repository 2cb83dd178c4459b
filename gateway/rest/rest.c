/*
 * gateway/rest/rest.c — the REST entry point: the app, identity, limits,
 * format negotiation, type-level authorisation and dispatch (see rest.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/rest/answer.h"
#include "gateway/rest/capability.h"
#include "gateway/rest/operations.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_transform.h"

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

static void free_arena(void *a)
{
    fp_arena_free(a);
}

/*
 * Who a certificate is, remembered per worker thread: a keep-alive
 * connection sends the same certificate with every request, and decoding its
 * subjectAltName (and hashing it for the audit trail) each time costs more
 * than the rest of a read. A worker serves the connections of several
 * organisations at once, interleaved, so it remembers the last few
 * certificates, not one (test_access's matrix of six organisations on two
 * workers goes through the replacement). Each entry holds a reference to its
 * certificate and is matched by X509_cmp (the certificate's own digest), so a
 * new connection never inherits an old identity by pointer reuse.
 */
enum { CALLER_CACHE_SLOTS = 4 };

typedef struct caller_cache {
    X509 *cert[CALLER_CACHE_SLOTS];
    id_identity who[CALLER_CACHE_SLOTS];
    unsigned next; /* the slot replaced next: round robin */
} caller_cache;

static void free_caller_cache(void *p)
{
    caller_cache *cc = p;
    for (unsigned i = 0; i < CALLER_CACHE_SLOTS; i++)
        X509_free(cc->cert[i]);
    free(cc);
}

static void resolve_caller(rest_app *app, X509 *cert, id_identity *who)
{
    caller_cache *cc = pthread_getspecific(app->caller_key);
    for (unsigned i = 0; cc && cert && i < CALLER_CACHE_SLOTS; i++)
        if (cc->cert[i] && X509_cmp(cc->cert[i], cert) == 0) {
            *who = cc->who[i];
            return;
        }
    id_resolve(cert, app->opt.organisations, who);
    if (!cert)
        return;
    if (!cc && (cc = calloc(1, sizeof *cc)))
        pthread_setspecific(app->caller_key, cc);
    if (cc && X509_up_ref(cert)) {
        unsigned slot = cc->next++ % CALLER_CACHE_SLOTS;
        X509_free(cc->cert[slot]);
        cc->cert[slot] = cert;
        cc->who[slot] = *who;
    }
}

static bool build_capability(rest_app *app)
{
    char start[ST_INSTANT_LEN];
    st_format_instant(rest_now_ms(app), start);
    cap_info info = {"0.1.0", app->opt.base_url,
                     start,   rest_search_kind_supported,
                     NULL,    NULL,
                     0,       !app->opt.allow_dangling_references,
                     NULL,    0};
    cap_row *rows = rest_capability_rows(&info.row_count);
    if (!rows)
        return false;
    info.rows = rows; /* what the operations table dispatches, nothing else */
    json_object *cs = cap_build(app->schema, &info);
    free(rows);
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
        app->opt.page_size_default = REST_DEFAULT_PAGE_SIZE;
    if (app->opt.page_size_max <= 0)
        app->opt.page_size_max = REST_DEFAULT_PAGE_SIZE_MAX;
    if (!app->opt.page_max_bytes)
        app->opt.page_max_bytes = REST_DEFAULT_PAGE_MAX_BYTES;
    pthread_key_create(&app->arena_key, free_arena);
    pthread_key_create(&app->caller_key, free_caller_cache);
    char ix_err[256] = "";
    app->indexer = ix_new(app->schema, rest_search_kind_supported, ix_err, sizeof ix_err);
    app->limiter = rl_new(opts->rate_per_second, opts->rate_burst);
    if (!app->indexer || !app->limiter || !build_capability(app) || !rest_retention_start(app)) {
        snprintf(err, errlen, "cannot set up the REST layer%s%s", *ix_err ? ": " : "", ix_err);
        rest_app_free(app);
        return NULL;
    }
    char map_err[512];
    if (opts->maps_dir &&
        !(app->maps = rest_maps_load(opts->maps_dir, opts->profiles, opts->pseudonym_key, map_err, sizeof map_err))) {
        snprintf(err, errlen, "the insurer maps in %s: %s", opts->maps_dir, map_err);
        rest_app_free(app);
        return NULL;
    }
    return app;
}

size_t rest_answers_off_worker(rest_app *app)
{
    return atomic_load(&app->answers_off_worker);
}

void rest_app_free(rest_app *app)
{
    if (!app)
        return;
    rest_retention_stop(app);
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
    rest_maps_free(app->maps);
    free(app->capability);
    free(app);
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
    memcpy(q->audit.cert_fp, who.fingerprint, sizeof q->audit.cert_fp); /* the audit trail's access point */
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
    rq_respond_outcome(q, 429, OO_ERROR, "throttled", NULL,
                       "too many requests from this organisation; retry after %u s", retry);
    return false;
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
    if (fmt == RT_FORMAT_NDJSON && q->route.interaction == RT_INSURER &&
        !strcmp(q->route.operation, "insurer/compliance")) {
        q->ndjson = true;
        return true;
    }
    rq_respond_outcome(q, 406, OO_ERROR, OO_NOT_SUPPORTED, NULL,
                       "only application/fhir+json is served (see _format and Accept)");
    return false;
}

/*
 * The check by type that comes before the handler (403 for a type the caller
 * may not use at all). A typed route no row answers (an unknown operation, a
 * method the path does not take) is checked as the mildest action, validate,
 * so such a type still answers 403 before 404 or 405; false after answering.
 */
static bool type_allowed(rq *q, const rest_op *row)
{
    if (!q->route.type || (row && row->access != REST_ACCESS_TYPE))
        return true;
    az_decision d = rest_decide(q, row ? row->action : AZ_VALIDATE, q->route.type->name, NULL, NULL);
    if (d == AZ_ALLOW)
        return true;
    rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "this organisation has no access to %s resources",
                       q->route.type->name);
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
    q->worker = pthread_self();
    rt_parse(q->app->schema, srv_req_method(req), srv_req_path(req), &q->route);
    srv_set_route(req, rt_name(q->route.interaction));
    q->prefer = rt_prefer_return(srv_req_header(req, "Prefer"));
    if (!identify(q) || !within_rate(q) || !negotiate(q)) {
        rq_finish(q);
        return;
    }
    const rest_op *row = rest_op_for(&q->route);
    if (!type_allowed(q, row)) {
        rq_finish(q);
        return;
    }
    /* a write handed to the store is answered and freed by its commit callback, maybe already now;
     * a streamed page frees q when the stream is released */
    if (!rest_dispatch(q, row))
        rq_finish(q);
}
