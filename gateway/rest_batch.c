/*
 * gateway/rest_batch.c — batch and transaction Bundles (see rest.h).
 *
 * Transactions are one store transaction: every write entry becomes an
 * st_op of a single st_submit, so all commit or none does. urn:uuid: fullUrls
 * of created entries are replaced by "Type/newid" wherever the Bundle
 * refers to them (in the stored JSON and in the search rows). Batches submit
 * each write entry on its own; the answer is assembled when the last one is
 * committed. In both, a failing entry is named by its index in the client's
 * Bundle (Bundle.entry[i]).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest_internal.h"

/* ---- batch and transaction ---- */

typedef struct bentry {
    int index;             /* in the client's Bundle */
    uint32_t entry;        /* node of the entry */
    char method[8];
    char url[512];
    const fs_type *type;
    char id[ST_ID_MAX + 1];
    bool is_write;
    rest_write w;
    /* the answer for this entry */
    int status;
    char location[640];
    char etag[32];
    char last_modified[ST_INSTANT_LEN];
    char *outcome;         /* OperationOutcome JSON for a failed entry */
    char *resource;        /* resource JSON to include */
} bentry;

typedef struct urn_map {
    char *urn;      /* "urn:uuid:..." */
    char *target;   /* "Type/newid" */
} urn_map;

typedef struct batch {
    rq *q;
    bool transaction;
    char *body;
    fj_doc doc;
    bentry *entries;
    size_t count;
    urn_map *urns;
    size_t urn_count;
    fj_write_hooks hooks;
    st_op *ops;            /* transaction: one per write entry */
    size_t op_count;
    atomic_int pending;    /* batch: submitted writes not yet committed, plus one for the submitter */
} batch;

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        rest_write_free(&b->entries[i].w);
        free(b->entries[i].outcome);
        free(b->entries[i].resource);
    }
    free(b->entries);
    for (size_t i = 0; i < b->urn_count; i++) {
        free(b->urns[i].urn);
        free(b->urns[i].target);
    }
    free(b->urns);
    free(b->ops);
    fj_doc_free(&b->doc);
    free(b->body);
    free(b);
}

static const char *map_urn(const batch *b, const char *s, size_t len)
{
    if (len < 9 || memcmp(s, "urn:uuid:", 9))
        return NULL;
    for (size_t i = 0; i < b->urn_count; i++)
        if (strlen(b->urns[i].urn) == len && !memcmp(b->urns[i].urn, s, len))
            return b->urns[i].target;
    return NULL;
}

/* Writer hook: references to urn:uuid: fullUrls of this transaction become Type/id. */
static const char *replace_urn(void *ctx, const fj_doc *doc, uint32_t node, size_t *len)
{
    const char *t = map_urn(ctx, fj_str(doc, node), doc->nodes[node].len);
    if (t)
        *len = strlen(t);
    return t;
}

static void entry_fail(bentry *e, int status, const char *code, const char *fmt, const char *detail)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    char expr[64];
    snprintf(expr, sizeof expr, "Bundle.entry[%d]", e->index);
    oo_add(&issues, OO_ERROR, code, expr, 0, 0, fmt, detail);
    json_object *oo = oo_to_json(&issues);
    free(e->outcome);
    e->outcome = strdup(json_object_to_json_string_ext(oo, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(oo);
    oo_list_free(&issues);
    e->status = status;
}

/* request.method and request.url of an entry: the interaction it stands for. */
static bool read_request(batch *b, bentry *e)
{
    const fj_doc *d = &b->doc;
    uint32_t req = fj_get(d, e->entry, "request");
    uint32_t m = req != UINT32_MAX ? fj_get(d, req, "method") : UINT32_MAX;
    uint32_t u = req != UINT32_MAX ? fj_get(d, req, "url") : UINT32_MAX;
    if (m == UINT32_MAX || u == UINT32_MAX) {
        entry_fail(e, 400, "required", "%s", "the entry needs request.method and request.url");
        return false;
    }
    snprintf(e->method, sizeof e->method, "%.*s", (int)d->nodes[m].len, fj_str(d, m));
    snprintf(e->url, sizeof e->url, "%.*s", (int)d->nodes[u].len, fj_str(d, u));
    char path[520];
    snprintf(path, sizeof path, "/%.*s", (int)strcspn(e->url, "?"), e->url);
    rt_route r;
    rt_parse(b->q->app->schema, e->method, path, &r);
    bool ok = r.interaction == RT_READ || r.interaction == RT_VREAD || r.interaction == RT_CREATE ||
              r.interaction == RT_UPDATE || r.interaction == RT_DELETE;
    if (!ok) {
        entry_fail(e, r.error_status ? r.error_status : 400, OO_NOT_SUPPORTED,
                   "%s: only read, create, update and delete are supported in a Bundle", e->url);
        return false;
    }
    e->type = r.type;
    snprintf(e->id, sizeof e->id, "%s", r.id);
    e->is_write = r.interaction == RT_CREATE || r.interaction == RT_UPDATE || r.interaction == RT_DELETE;
    return true;
}

/* Authorisation of one entry against the stored resource (PUT/DELETE/GET); true when allowed. */
static bool entry_allowed(batch *b, bentry *e, az_action action, st_resource *found, st_status *found_status)
{
    rq *q = b->q;
    if (az_check_type(&q->caller, e->type->name, action) != AZ_ALLOW) {
        entry_fail(e, 403, "forbidden", "this organisation has no access to %s resources", e->type->name);
        return false;
    }
    if (action == AZ_CREATE)
        return true;
    st_error err;
    *found_status = st_read(q->app->opt.store, e->type->name, e->id, found, &err);
    if (*found_status != ST_OK && *found_status != ST_GONE)
        return true; /* not there: create-on-update, or a 404 for read/delete later */
    az_decision d = az_check_resource(&q->caller, found->type, action, found->owner,
                                      (const char *const *)found->access_tags, found->access_tag_count);
    if (d != AZ_ALLOW) {
        entry_fail(e, d == AZ_HIDDEN ? 404 : 403, d == AZ_HIDDEN ? OO_NOT_FOUND : "forbidden", "%s is not available",
                   e->url);
        st_resource_free(found);
        *found_status = ST_NOT_FOUND;
        return false;
    }
    return true;
}

/* Prepare a write entry's st_op; false with the entry marked failed. */
static bool prepare_entry(batch *b, bentry *e)
{
    rq *q = b->q;
    rest_write *w = &e->w;
    st_op_kind kind = !strcmp(e->method, "POST") ? ST_OP_CREATE : !strcmp(e->method, "PUT") ? ST_OP_UPDATE : ST_OP_DELETE;
    st_resource found;
    st_status found_status = ST_NOT_FOUND;
    az_action action = kind == ST_OP_CREATE ? AZ_CREATE : kind == ST_OP_UPDATE ? AZ_UPDATE : AZ_DELETE;
    if (!entry_allowed(b, e, action, &found, &found_status))
        return false;
    if (found_status == ST_OK || found_status == ST_GONE)
        st_resource_free(&found);
    w->type = e->type->name;
    w->docp = &b->doc;
    w->hooks = &b->hooks;
    if (kind == ST_OP_CREATE)
        snprintf(w->id, sizeof w->id, "%s", e->id[0] ? e->id : "");
    else
        snprintf(w->id, sizeof w->id, "%s", e->id);
    if (kind != ST_OP_DELETE) {
        uint32_t res = fj_get(&b->doc, e->entry, "resource");
        uint32_t rt = res != UINT32_MAX ? fj_get(&b->doc, res, "resourceType") : UINT32_MAX;
        if (rt == UINT32_MAX || !fj_str_eq(&b->doc, rt, e->type->name)) {
            entry_fail(e, 400, "invalid", "the entry's resource must be a %s", e->type->name);
            return false;
        }
        w->root = res;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    bool ok = rest_write_prepare(q, w, kind, &issues);
    if (ok && kind == ST_OP_CREATE) {
        uint32_t req = fj_get(&b->doc, e->entry, "request");
        uint32_t cond = fj_get(&b->doc, req, "ifNoneExist");
        if (cond != UINT32_MAX && b->doc.nodes[cond].type == FJ_STRING) {
            char *text = strndup(fj_str(&b->doc, cond), b->doc.nodes[cond].len);
            ok = rest_write_if_none_exist(q, w, text, &issues);
            free(text);
        }
    }
    if (!ok)
        entry_fail(e, 400, "invalid", "%s", issues.count ? issues.items[0].message : "the entry cannot be written");
    oo_list_free(&issues);
    /* search rows must name the rewritten targets too */
    for (size_t i = 0; ok && i < w->row_count; i++) {
        st_index_row *row = &w->rows[i];
        const char *t;
        if (row->kind == ST_KIND_REFERENCE && row->v.reference.url &&
            (t = map_urn(b, row->v.reference.url, strlen(row->v.reference.url)))) {
            const char *slash = strchr(t, '/');
            /* the id points into the map's "Type/id"; the type, which needs its own NUL, is the schema's name */
            const fs_type *tt = fs_type_by_name(q->app->schema, t, (size_t)(slash - t));
            row->v.reference.type = tt ? tt->name : NULL;
            row->v.reference.id = slash + 1;
            row->v.reference.url = NULL;
        }
    }
    return ok;
}

/* The id every POST entry will get, and the urn:uuid: names that map to it. */
static void assign_ids(batch *b)
{
    b->urns = calloc(b->count ? b->count : 1, sizeof *b->urns);
    for (size_t i = 0; i < b->count; i++) {
        bentry *e = &b->entries[i];
        if (!e->type || strcmp(e->method, "POST"))
            continue;
        rest_new_id(e->id);
        uint32_t full = fj_get(&b->doc, e->entry, "fullUrl");
        if (full != UINT32_MAX && b->doc.nodes[full].len > 9 && !memcmp(fj_str(&b->doc, full), "urn:uuid:", 9)) {
            urn_map *m = &b->urns[b->urn_count++];
            m->urn = strndup(fj_str(&b->doc, full), b->doc.nodes[full].len);
            size_t tlen = strlen(e->type->name) + strlen(e->id) + 2;
            m->target = malloc(tlen);
            snprintf(m->target, tlen, "%s/%s", e->type->name, e->id);
        }
    }
}

/* A GET entry, answered from the store. */
static void read_entry(batch *b, bentry *e)
{
    st_resource r;
    st_status s = ST_NOT_FOUND;
    if (!entry_allowed(b, e, AZ_READ, &r, &s))
        return;
    if (s != ST_OK) {
        if (s == ST_GONE)
            st_resource_free(&r);
        entry_fail(e, s == ST_GONE ? 410 : 404, s == ST_GONE ? "deleted" : OO_NOT_FOUND, "%s is not available", e->url);
        return;
    }
    e->status = 200;
    snprintf(e->etag, sizeof e->etag, "W/\\\"%lld\\\"", (long long)r.version);
    snprintf(e->last_modified, sizeof e->last_modified, "%s", r.last_updated);
    e->resource = strndup(r.json, r.json_len);
    st_resource_free(&r);
}

static void record_write_result(batch *b, bentry *e, const st_op_result *r)
{
    rq *q = b->q;
    if (r->status != ST_OK && r->status != ST_EXISTS) {
        entry_fail(e, rest_status_of(r->status), rest_code_of(r->status), "%s", st_status_name(r->status));
        return;
    }
    bool created = e->w.op.kind == ST_OP_CREATE ? r->status == ST_OK : r->created;
    e->status = e->w.op.kind == ST_OP_DELETE ? 204 : created ? 201 : 200;
    const char *id = r->status == ST_EXISTS ? r->id : e->w.id;
    snprintf(e->location, sizeof e->location, "%s/%s/%s/_history/%lld", q->app->opt.base_url, e->type->name, id,
             (long long)r->version);
    snprintf(e->etag, sizeof e->etag, "W/\\\"%lld\\\"", (long long)r->version);
    snprintf(e->last_modified, sizeof e->last_modified, "%s", r->last_updated);
    if (q->prefer == RT_RETURN_REPRESENTATION && r->status == ST_OK && e->w.stored) {
        e->resource = e->w.stored;
        e->w.stored = NULL;
    }
}

static void respond_entries(batch *b)
{
    rq *q = b->q;
    fj_buf out = {0};
    rest_bundle_head(&out, q, b->transaction ? "transaction-response" : "batch-response", -1);
    size_t written = 0;
    for (size_t i = 0; i < b->count; i++) {
        bentry *e = &b->entries[i];
        rest_bundle_entry_open(&out, &written);
        fj_buf_puts(&out, "{");
        if (e->resource) {
            fj_buf_puts(&out, "\"resource\":");
            fj_buf_puts(&out, e->resource);
            fj_buf_puts(&out, ",");
        }
        fj_buf_printf(&out, "\"response\":{\"status\":\"%d %s\"", e->status, srv_status_reason(e->status));
        if (e->location[0])
            fj_buf_printf(&out, ",\"location\":\"%s\"", e->location);
        if (e->etag[0])
            fj_buf_printf(&out, ",\"etag\":\"%s\",\"lastModified\":\"%s\"", e->etag, e->last_modified);
        if (e->outcome)
            fj_buf_printf(&out, ",\"outcome\":%s", e->outcome);
        fj_buf_puts(&out, "}}");
    }
    rest_bundle_entries_close(&out, written);
    fj_buf_puts(&out, "}");
    rest_bundle_respond(q, &out);
}

/* ---- transaction ---- */

static void transaction_done(void *arg, const st_txn_result *result)
{
    batch *b = arg;
    rq *q = b->q;
    if (result->status != ST_OK) {
        /* which entry: the failing op's */
        size_t op = result->failed_op, seen = 0;
        bentry *failed = NULL;
        for (size_t i = 0; i < b->count && !failed; i++)
            if (b->entries[i].is_write && seen++ == op)
                failed = &b->entries[i];
        const st_op_result *r = &result->ops[op];
        char expr[64];
        snprintf(expr, sizeof expr, "Bundle.entry[%d]", failed ? failed->index : 0);
        rq_respond_outcome(q, rest_status_of(r->status), OO_ERROR, rest_code_of(r->status), expr,
                           "the transaction was rolled back: entry %d (%s %s) failed: %s", failed ? failed->index : -1,
                           failed ? failed->method : "", failed ? failed->url : "",
                           r->message[0] ? r->message : st_status_name(r->status));
    } else {
        size_t op = 0;
        for (size_t i = 0; i < b->count; i++) {
            bentry *e = &b->entries[i];
            if (e->is_write)
                record_write_result(b, e, &result->ops[op++]);
            else
                read_entry(b, e); /* reads see the transaction's writes */
        }
        respond_entries(b);
    }
    batch_free(b);
    rq_finish(q);
}

/* Fails the whole transaction for entry e (nothing was written). */
static void transaction_refuse(batch *b, const bentry *e)
{
    rq *q = b->q;
    char expr[64];
    snprintf(expr, sizeof expr, "Bundle.entry[%d]", e->index);
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *oo = e->outcome ? json_tokener_parse(e->outcome) : NULL;
    json_object *issue = oo ? json_object_array_get_idx(json_object_object_get(oo, "issue"), 0) : NULL;
    const char *msg = issue ? json_object_get_string(json_object_object_get(issue, "diagnostics")) : "failed";
    const char *code = issue ? json_object_get_string(json_object_object_get(issue, "code")) : "processing";
    oo_add(&issues, OO_ERROR, code, expr, 0, 0, "the transaction was not applied: entry %d (%s %s): %s", e->index,
           e->method, e->url, msg);
    rq_respond_issues(q, e->status ? e->status : 400, &issues);
    json_object_put(oo);
    oo_list_free(&issues);
}

static bool run_transaction(batch *b)
{
    assign_ids(b);
    b->hooks = (fj_write_hooks){NULL, replace_urn, b};
    b->ops = calloc(b->count ? b->count : 1, sizeof *b->ops);
    for (size_t i = 0; i < b->count; i++) {
        bentry *e = &b->entries[i];
        if (!e->is_write)
            continue;
        if (!prepare_entry(b, e)) {
            transaction_refuse(b, e);
            return false;
        }
        b->ops[b->op_count++] = e->w.op;
    }
    if (!b->op_count) { /* reads only */
        for (size_t i = 0; i < b->count; i++)
            read_entry(b, &b->entries[i]);
        respond_entries(b);
        return false;
    }
    st_status s = st_submit(b->q->app->opt.store, b->ops, b->op_count, transaction_done, b);
    if (s == ST_OK)
        return true;
    rq_respond_outcome(b->q, 503, OO_ERROR, "transient", NULL, "the store cannot take the transaction now (%s)",
                       st_status_name(s));
    return false;
}

/* ---- batch ---- */

typedef struct batch_write {
    batch *b;
    bentry *e;
} batch_write;

static void batch_finish_one(batch *b)
{
    if (atomic_fetch_sub(&b->pending, 1) != 1)
        return;
    rq *q = b->q;
    respond_entries(b);
    batch_free(b);
    rq_finish(q);
}

static void batch_entry_done(void *arg, const st_txn_result *result)
{
    batch_write *bw = arg;
    batch *b = bw->b;
    record_write_result(b, bw->e, &result->ops[0]);
    free(bw);
    batch_finish_one(b);
}

static bool run_batch(batch *b)
{
    b->hooks = (fj_write_hooks){NULL, NULL, NULL};
    atomic_store(&b->pending, 1);
    for (size_t i = 0; i < b->count; i++) {
        bentry *e = &b->entries[i];
        if (!e->type || e->outcome)
            continue;
        if (!e->is_write) {
            read_entry(b, e);
            continue;
        }
        if (!strcmp(e->method, "POST"))
            rest_new_id(e->id);
        if (!prepare_entry(b, e))
            continue;
        batch_write *bw = malloc(sizeof *bw);
        *bw = (batch_write){b, e};
        atomic_fetch_add(&b->pending, 1);
        if (st_submit(b->q->app->opt.store, &e->w.op, 1, batch_entry_done, bw) != ST_OK) {
            atomic_fetch_sub(&b->pending, 1);
            free(bw);
            entry_fail(e, 503, "transient", "%s", "the store cannot take the write now");
        }
    }
    batch_finish_one(b); /* the submitter's own count: whoever reaches zero answers */
    return true;
}

/* ---- entry point ---- */

static bool parse_bundle(rq *q, batch *b)
{
    if (!rt_content_type_ok(srv_req_header(q->req, "Content-Type"))) {
        rq_respond_outcome(q, 415, OO_ERROR, OO_NOT_SUPPORTED, NULL, "send the Bundle as application/fhir+json");
        return false;
    }
    size_t len;
    const unsigned char *body = srv_req_body(q->req, &len);
    if (!body || !len) {
        rq_respond_outcome(q, 400, OO_ERROR, "required", NULL, "POST to the base URL needs a batch or transaction Bundle");
        return false;
    }
    b->body = malloc(len + 1);
    memcpy(b->body, body, len + 1);
    fj_error err;
    oo_list issues;
    oo_list_init(&issues, 0);
    if (!fj_parse(b->body, len, NULL, &b->doc, &err)) {
        oo_add(&issues, OO_FATAL, OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s", err.message);
        rq_respond_issues(q, 400, &issues);
        oo_list_free(&issues);
        return false;
    }
    uint32_t rt = fj_get(&b->doc, 0, "resourceType"), type = fj_get(&b->doc, 0, "type");
    if (rt == UINT32_MAX || !fj_str_eq(&b->doc, rt, "Bundle") || type == UINT32_MAX ||
        (!fj_str_eq(&b->doc, type, "batch") && !fj_str_eq(&b->doc, type, "transaction"))) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "POST to the base URL takes a batch or transaction Bundle");
        oo_list_free(&issues);
        return false;
    }
    b->transaction = fj_str_eq(&b->doc, type, "transaction");
    fv_options opts = {0};
    opts.profiles = q->app->opt.profiles;
    if (fv_validate_doc(&b->doc, &opts, &issues)) {
        rq_respond_issues(q, 422, &issues);
        oo_list_free(&issues);
        return false;
    }
    oo_list_free(&issues);
    return true;
}

bool rest_batch(rq *q)
{
    batch *b = calloc(1, sizeof *b);
    b->q = q;
    if (!parse_bundle(q, b)) {
        batch_free(b);
        return false;
    }
    uint32_t entries = fj_get(&b->doc, 0, "entry");
    size_t n = entries != UINT32_MAX ? b->doc.nodes[entries].len : 0;
    b->entries = calloc(n ? n : 1, sizeof *b->entries);
    uint32_t e = entries != UINT32_MAX ? entries + 1 : 0;
    for (size_t i = 0; i < n; i++, e = fj_next(&b->doc, e)) {
        bentry *be = &b->entries[b->count++];
        be->index = (int)i;
        be->entry = e;
        if (!read_request(b, be) && b->transaction) {
            transaction_refuse(b, be);
            batch_free(b);
            return false;
        }
    }
    bool handed_over = b->transaction ? run_transaction(b) : run_batch(b);
    if (!handed_over)
        batch_free(b);
    return handed_over;
}
