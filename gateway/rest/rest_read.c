/*
 * gateway/rest/rest_read.c — the interactions answered from one stored
 * resource or from memory: read, vread and GET /metadata (see handlers.h).
 * Reads run on the worker thread (the store's read connections, WAL).
 */
#include <stdlib.h>
#include <string.h>

#include "fhir/subset.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/search/search.h"

static bool not_modified(rq *q, const st_resource *r)
{
    int64_t since;
    bool has_since = rt_http_date(srv_req_header(q->req, "If-Modified-Since"), &since);
    return rest_not_modified(srv_req_header(q->req, "If-None-Match"), has_since ? &since : NULL, r);
}

/* _summary and _elements of a read (search.html#summary applies to reads too); false with 400 answered when
 * their values are not understood. */
static bool read_subset(rq *q, fsub_spec *subset)
{
    const char *query = srv_req_query(q->req);
    char *summary = sq_query_param(query, "_summary"), *elements = sq_query_param(query, "_elements"), why[200];
    bool ok = fsub_parse(summary, elements, subset, why, sizeof why);
    if (!ok)
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", summary ? "_summary" : "_elements", "%s", why);
    free(summary);
    free(elements);
    return ok;
}

/* 200 with the stored JSON, or with the subset of it that was asked for. */
static void answer_resource(rq *q, const st_resource *r, const fsub_spec *subset)
{
    fj_buf out = {0};
    if (fsub_cuts(subset) && fsub_write(q->app->schema, subset, r->json, r->json_len, &out)) {
        size_t len = 0;
        char *body = fj_buf_take(&out, &len);
        rq_respond_json(q, 200, body, body ? len : 0);
        return;
    }
    fj_buf_free(&out);
    char *body = malloc(r->json_len + 1);
    if (body)
        memcpy(body, r->json, r->json_len + 1);
    rq_respond_json(q, 200, body, body ? r->json_len : 0);
}

bool rest_read(rq *q)
{
    const char *type = q->route.type->name;
    fsub_spec subset;
    if (!read_subset(q, &subset))
        return false;
    st_resource r;
    st_error err;
    st_status s = q->route.interaction == RT_VREAD
                      ? st_vread(q->app->opt.store, type, q->route.id, strtoll(q->route.version, NULL, 10), &r, &err)
                      : st_read(q->app->opt.store, type, q->route.id, &r, &err);
    if (s != ST_OK && s != ST_GONE) {
        if (s == ST_NOT_FOUND) { /* audited like a hidden one: the client cannot tell them apart */
            rest_record_decision(q, AZ_READ, type, AZ_HIDDEN, 404, "no such resource", NULL);
            rest_answer_not_known(q, type, q->route.id, q->route.version);
        } else
            rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s",
                               err.message);
        return false;
    }
    if (!rest_may(q, &r, AZ_READ)) {
        st_resource_free(&r);
        return false;
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
        answer_resource(q, &r, &subset);
    }
    st_resource_free(&r);
    return false;
}

/* The CapabilityStatement is built once and lent to the server for every answer (it is large). */
bool rest_capabilities(rq *q)
{
    rq_respond_static(q, q->app->capability, q->app->capability_len);
    return false;
}
