/*
 * gateway/rest/rest_write.c — create, update, delete: one write parsed, checked,
 * indexed and submitted (see rest_write.h).
 *
 * A write is parsed and validated on the worker thread, its search index
 * rows and access tags computed there, and its members rendered there too,
 * then submitted to the store. The store calls rest_render on its commit
 * thread with the version and lastUpdated it assigned, which puts them in
 * front of the members; the JSON written there is what every later read
 * serves. The commit thread is the one serial stage of every write, so it
 * only splices (a 50 KB handover document rendered there took an eighth of
 * its time). The commit callback keeps the result and posts the answer back
 * to the worker (srv_post), which answers the client: only then is the write
 * durable.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/rest_write.h"

#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_audit.h"
#include "gateway/rest/rest_query.h"

/* ---- parsing and validation ---- */

int rest_write_parse(rq *q, rest_write *w, const char *body, size_t len, const char *expect_type, oo_list *issues)
{
    w->body = malloc(len + 1);
    if (!w->body) {
        oo_add(issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        return 503;
    }
    memcpy(w->body, body, len);
    w->body[len] = '\0';
    fj_error err;
    if (!fj_parse(w->body, len, NULL, &w->doc, &err)) {
        oo_add(issues, OO_FATAL, err.limit ? OO_TOO_LONG : OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s",
               err.message);
        fj_doc_free(&w->doc);
        return err.limit && len > fj_default_limits().max_bytes ? 413 : 400; /* too deep is malformed, not large */
    }
    w->has_doc = true;
    w->docp = &w->doc;
    w->root = 0;
    uint32_t rt = w->doc.nodes[0].type == FJ_OBJECT ? fj_get(&w->doc, 0, "resourceType") : UINT32_MAX;
    if (expect_type && (rt == UINT32_MAX || !fj_str_eq(&w->doc, rt, expect_type))) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, "resourceType", 0, 0, "the body must be a %s resource", expect_type);
        return 400;
    }
    fv_options opts = {0};
    opts.profiles = q->app->opt.profiles;
    if (fv_validate_doc(&w->doc, &opts, issues))
        return 422;
    w->type = expect_type;
    return 0;
}

/* ---- rendering the stored JSON ---- */

typedef struct render_hooks {
    fj_write_hooks hooks;
    const rest_write *w;
} render_hooks;

/* At the resource root: resourceType, id and meta are written by rest_render itself. */
static bool skip_root_members(void *ctx, const fj_doc *doc, uint32_t obj, uint32_t key)
{
    const render_hooks *h = ctx;
    if (obj == h->w->root &&
        (fj_str_eq(doc, key, "resourceType") || fj_str_eq(doc, key, "id") || fj_str_eq(doc, key, "meta")))
        return true;
    const fj_write_hooks *extra = h->w->hooks;
    return extra && extra->skip_member && extra->skip_member(extra->ctx, doc, obj, key);
}

static const char *replace_strings(void *ctx, const fj_doc *doc, uint32_t node, size_t *len)
{
    const render_hooks *h = ctx;
    const fj_write_hooks *extra = h->w->hooks;
    return extra && extra->replace_string ? extra->replace_string(extra->ctx, doc, node, len) : NULL;
}

/* The root's members but resourceType, id and meta, each string rewritten by w->hooks; appended to out, with a
 * comma before them when there are any. */
static void render_members(const rest_write *w, fj_buf *out)
{
    render_hooks h = {{skip_root_members, replace_strings, NULL}, w};
    h.hooks.ctx = &h;
    const fj_doc *doc = w->docp;
    if (!doc || doc->nodes[w->root].type != FJ_OBJECT)
        return;
    size_t mark = out->len;
    fj_buf_puts(out, ",");
    if (!fj_write_members(doc, w->root, &h.hooks, out) && !out->failed) {
        out->len = mark; /* none: no comma */
        out->data[mark] = '\0';
    }
}

/* On the worker: the members, for rest_render to splice. fj_buf_take gives "" when there are none and NULL only
 * when out of memory: then rest_render renders them itself. */
static void prerender_members(rest_write *w)
{
    free(w->members);
    fj_buf out = {0};
    render_members(w, &out);
    w->members = fj_buf_take(&out, &w->members_len);
}

/* The resource as rest_render writes it, up to its meta: {"resourceType":T,"id":I,"meta":{ */
static void render_head(const rest_write *w, fj_buf *out)
{
    fj_buf_puts(out, "{\"resourceType\":");
    fj_buf_string(out, w->type, strlen(w->type));
    fj_buf_puts(out, ",\"id\":");
    fj_buf_string(out, w->id, strlen(w->id));
    fj_buf_puts(out, ",\"meta\":{");
}

/*
 * On the worker: a create of a sealed type (a handover's documents) that nothing answers with is sealed here,
 * without the version's meta (st_seal_early), so that the commit thread, the store's serial stage, neither
 * renders nor encrypts it: for a 50 KB document that was a tenth of its time.
 */
static void preseal(rq *q, rest_write *w, st_op_kind kind)
{
    if (kind != ST_OP_CREATE || !w->no_stored || !w->members || !st_sealed_type(w->type))
        return;
    fj_buf out = {0};
    render_head(w, &out);
    fj_buf_puts(&out, w->meta_extra ? w->meta_extra : "");
    fj_buf_puts(&out, "}");
    fj_buf_append(&out, w->members, w->members_len);
    fj_buf_puts(&out, "}");
    size_t len = 0;
    char *plain = fj_buf_take(&out, &len);
    if (!plain)
        return;
    w->sealed = st_seal_early(q->app->opt.store, w->type, w->id, plain, len, &w->sealed_len);
    w->sealed_by = q->app->opt.store;
    OPENSSL_cleanse(plain, len);
    free(plain);
}

/* st_op.sealed: the body sealed on the worker, for version 1, unless a name it holds has moved since. Handed
 * over, not copied (the store frees it): an operation is applied once, and the copy was 50 KB on the commit
 * thread. */
static char *rest_sealed(void *arg, int64_t version, size_t *len)
{
    rest_write *w = arg;
    if (version != 1 || !w->sealed || (w->names_moved && *w->names_moved))
        return NULL;
    char *sealed = w->sealed;
    *len = w->sealed_len;
    w->sealed = NULL;
    return sealed;
}

char *rest_render(void *arg, int64_t version, const char *last_updated, size_t *len)
{
    rest_write *w = arg;
    fj_buf out = {0};
    render_head(w, &out);
    fj_buf_printf(&out, "\"versionId\":\"%lld\",\"lastUpdated\":\"%s\"%s%s}", (long long)version, last_updated,
                  w->meta_extra && *w->meta_extra ? "," : "", w->meta_extra ? w->meta_extra : "");
    if (w->members && !(w->names_moved && *w->names_moved))
        fj_buf_append(&out, w->members, w->members_len);
    else
        render_members(w, &out);
    fj_buf_puts(&out, "}");
    char *json = fj_buf_take(&out, len);
    free(w->stored);
    w->stored = NULL;
    if (w->no_stored)
        return json;
    /* the answer repeats what was stored: keep a copy (the store frees `json`) */
    w->stored = json ? malloc(*len + 1) : NULL;
    if (w->stored) {
        memcpy(w->stored, json, *len + 1);
        w->stored_len = *len;
    }
    return json;
}

/* ---- index rows and access tags ---- */

static bool skip_version_meta(void *ctx, const fj_doc *doc, uint32_t obj, uint32_t key)
{
    (void)ctx;
    (void)obj;
    return fj_str_eq(doc, key, "versionId") || fj_str_eq(doc, key, "lastUpdated");
}

static void take_meta_extra(rest_write *w)
{
    uint32_t meta = fj_get(w->docp, w->root, "meta");
    if (meta == UINT32_MAX || w->docp->nodes[meta].type != FJ_OBJECT)
        return;
    fj_write_hooks hooks = {skip_version_meta, NULL, NULL};
    fj_buf out = {0};
    fj_write_members(w->docp, meta, &hooks, &out);
    w->meta_extra = fj_buf_take(&out, NULL);
}

static st_kind st_kind_of(ix_kind k)
{
    switch (k) {
    case IX_STRING: return ST_KIND_STRING;
    case IX_TOKEN: return ST_KIND_TOKEN;
    case IX_REFERENCE: return ST_KIND_REFERENCE;
    case IX_DATE: return ST_KIND_DATE;
    case IX_NUMBER: return ST_KIND_NUMBER;
    case IX_QUANTITY: return ST_KIND_QUANTITY;
    default: return ST_KIND_URI;
    }
}
/* The indexer's rows as the store's; _id and _lastUpdated are the store's own. */
static bool convert_rows(rest_write *w, const char *base_url)
{
    w->rows = calloc(w->ix.count ? w->ix.count : 1, sizeof *w->rows);
    if (!w->rows)
        return false;
    for (size_t i = 0; i < w->ix.count; i++) {
        const ix_row *r = &w->ix.rows[i];
        if (!strcmp(r->param, "_id") || !strcmp(r->param, "_lastUpdated"))
            continue;
        st_index_row *o = &w->rows[w->row_count++];
        o->param = r->param;
        o->kind = st_kind_of(r->kind);
        o->personal = r->personal; /* names, BSNs, addresses: for encryption at rest */
        switch (r->kind) {
        case IX_STRING: o->v.string.text = r->text; break;
        case IX_TOKEN: o->v.token.system = r->system, o->v.token.code = r->code; break;
        case IX_REFERENCE:
            if (r->ref_type && !rest_foreign_url(base_url, r->text)) {
                o->v.reference.type = r->ref_type;
                o->v.reference.id = r->ref_id;
            } else { /* another server's resource, urn:uuid:, ... */
                o->v.reference.url = r->text;
            }
            break;
        case IX_DATE: o->v.date.low_ms = r->lo_ms, o->v.date.high_ms = r->hi_ms; break;
        case IX_NUMBER:
        case IX_QUANTITY:
            o->v.number.value = r->number;
            o->v.number.system = r->system;
            o->v.number.code = r->code;
            break;
        default: o->v.uri.uri = r->text; break;
        }
    }
    return true;
}

int rest_write_prepare(rq *q, rest_write *w, st_op_kind kind, const st_resource *current, oo_list *issues)
{
    st_op *op = &w->op;
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->type = w->type;
    op->id = w->id;
    op->owner = q->caller.ura;
    int status = rest_access_check_write(q, w, kind, current, issues);
    if (status || kind == ST_OP_DELETE)
        return status;
    take_meta_extra(w);
    char err[256] = "";
    if (!ix_extract(q->app->indexer, rest_arena(q->app), w->docp, w->root, w->type, &w->ix, err, sizeof err)) {
        oo_add(issues, OO_ERROR, OO_PROCESSING, NULL, 0, 0, "cannot index the resource: %s", err);
        return 422;
    }
    if (!convert_rows(w, q->app->opt.base_url)) {
        oo_add(issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        return 503;
    }
    prerender_members(w);
    preseal(q, w, kind);
    op->render = rest_render;
    op->render_arg = w;
    op->sealed = rest_sealed;
    op->rows = w->rows;
    op->row_count = w->row_count;
    op->access_tags = w->tags;
    op->access_tag_count = w->tag_count;
    op->grants = w->grants;
    op->grant_count = w->grant_count;
    /* PUT creates nothing new (ids cannot be squatted), but brings back what its owner deleted */
    op->create_if_missing = kind == ST_OP_UPDATE && current && current->deleted;
    return 0;
}

/* ---- conditional create ---- */

bool rest_write_if_none_exist(rq *q, rest_write *w, const char *query, oo_list *issues)
{
    const fs_type *t = fs_type_by_name(q->app->schema, w->type, strlen(w->type));
    sq_limits lim = {q->app->opt.page_size_default, q->app->opt.page_size_max, SQ_MAX_PARAMS, SQ_MAX_VALUES};
    const char *qs = strchr(query, '?') ? strchr(query, '?') + 1 : query;
    if (!sq_parse(q->app->schema, t, qs, true, &lim, rest_search_kind_supported, &w->if_none_sq, issues))
        return false;
    w->has_if_none = true;
    if (!rest_to_st_query(&w->if_none_sq, &q->caller, q->app->opt.base_url, &w->if_none))
        return false;
    w->op.if_none_exist = &w->if_none.q;
    return true;
}

bool rest_if_match(const char *etag, int64_t *version)
{
    if (!rt_etag_version(etag, version))
        return false;
    if (*version == 0)
        *version = REST_NO_VERSION; /* well-formed, but no version 0 exists: never matches */
    return true;
}

/* ---- answers, on the worker once the commit is done ---- */

static void answer_with_resource(rq *q, int status, rest_write *w, const char *prefix_message)
{
    if (q->prefer == RT_RETURN_MINIMAL) {
        rq_respond_json(q, status, NULL, 0);
    } else if (q->prefer == RT_RETURN_OUTCOME) {
        rq_respond_outcome(q, status, OO_INFORMATION, OO_INFORMATIONAL, NULL, "%s %s/%s", prefix_message, w->type,
                           w->id);
    } else {
        char *body = w->stored;
        size_t len = w->stored_len;
        w->stored = NULL;
        rq_respond_json(q, status, body, body ? len : 0);
    }
}

/* An existing resource as the answer to a conditional create that matched it. */
static void answer_existing(rq *q, const st_op_result *r)
{
    rest_write *w = &q->write;
    rq_set_version_headers(q, w->type, r->id, r->version, r->last_updated_ms, true);
    st_resource res;
    st_error err;
    if (q->prefer == RT_RETURN_REPRESENTATION && st_read(q->app->opt.store, w->type, r->id, &res, &err) == ST_OK) {
        char *body = malloc(res.json_len + 1);
        if (body)
            memcpy(body, res.json, res.json_len + 1);
        rq_respond_json(q, 200, body, body ? res.json_len : 0);
        st_resource_free(&res);
        return;
    }
    rq_respond_outcome(q, 200, OO_INFORMATION, OO_INFORMATIONAL, NULL,
                       "If-None-Exist matched %s/%s: nothing was created", w->type, r->id);
}

static void answer_failure(rq *q, const st_op_result *r)
{
    const rest_write *w = &q->write;
    switch (r->status) {
    case ST_VERSION_CONFLICT:
        if (srv_req_header(q->req, "If-Match"))
            rq_respond_outcome(q, 412, OO_ERROR, "conflict", NULL,
                               "%s/%s is at version %lld, not the one If-Match names", w->type, w->id,
                               (long long)r->version);
        else /* the version the access decision was made on is no longer current */
            rq_respond_outcome(q, 409, OO_ERROR, "conflict", NULL,
                               "%s/%s changed while this request was being checked (now version %lld); send it again",
                               w->type, w->id, (long long)r->version);
        break;
    case ST_MULTIPLE_MATCHES:
        rq_respond_outcome(q, 412, OO_ERROR, "multiple-matches", NULL, "If-None-Exist matches more than one %s",
                           w->type);
        break;
    case ST_NOT_FOUND:
        rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_FOUND, NULL, "%s/%s is not known", w->type, w->id);
        break;
    default:
        rq_respond_outcome(q, rest_status_of(r->status), OO_ERROR, rest_code_of(r->status), NULL, "%s: %s",
                           st_status_name(r->status), r->message[0] ? r->message : "the write failed");
        break;
    }
}

/* On the request's worker (posted by write_done): the answer, from the result write_done kept. */
static void write_answer(void *arg)
{
    rq *q = arg;
    rest_write *w = &q->write;
    const st_op_result *r = &w->result;
    q->after_own_commit = true;
    if (q->audit.failed) { /* the transaction was rolled back with its audit entries: nothing was written */
        rq_respond_outcome(q, q->audit.failed_status, OO_ERROR, OO_EXCEPTION, NULL,
                           "the write could not be recorded in the audit trail, so it was not made; try again");
    } else if (r->status == ST_EXISTS && w->conditional_update) {
        rq_respond_outcome(q, 412, OO_ERROR, "conflict", NULL,
                           "a concurrent write created a %s the conditional update matches (%s): nothing was written; "
                           "send it again to update that one",
                           w->type, r->id);
    } else if (r->status == ST_EXISTS) {
        answer_existing(q, r);
    } else if (r->status != ST_OK) {
        answer_failure(q, r);
    } else if (w->op.kind == ST_OP_DELETE) {
        rq_set_version_headers(q, w->type, w->id, r->version, r->last_updated_ms, false);
        rq_respond_outcome(q, 200, OO_INFORMATION, OO_INFORMATIONAL, NULL, "%s/%s %s", w->type, w->id,
                           r->unchanged ? "was already deleted" : "deleted");
    } else {
        bool created = w->op.kind == ST_OP_CREATE || r->created;
        rq_set_version_headers(q, w->type, w->id, r->version, r->last_updated_ms, true);
        answer_with_resource(q, created ? 201 : 200, w, created ? "created" : "updated");
    }
    rq_finish(q);
}

/*
 * The store's completion callback, on its thread: keep the result
 * (it lives during this call only) and hand the answer to the request's
 * worker, so no answer is built, and no store read made, on the commit
 * thread. rest_render has left the stored JSON in w->stored already.
 */
static void write_done(void *arg, const st_txn_result *result)
{
    rq *q = arg;
    q->write.result = result->ops[0];
    q->audit.failed = !rest_audit_committed(result, 1, &q->audit.failed_status);
    srv_post(q->req, write_answer, q);
}

/* Submit q->write with its audit entries, in one transaction; false (after answering) when the store would not
 * take it. */
static bool submit(rq *q)
{
    rest_write *w = &q->write;
    rest_audit_note_write(q, w, w->op.kind, NULL);
    const rest_write *ws[1] = {w};
    size_t n = 0;
    st_op *ops = rest_audit_attach(q, &w->op, ws, 1, NULL, rest_status_of, &n);
    st_status s = ops ? st_submit(q->app->opt.store, ops, n, write_done, q) : ST_INTERNAL;
    if (s == ST_OK)
        return true;
    if (s == ST_BUSY)
        srv_set_header(q->req, "Retry-After", "1");
    rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "the store cannot take the write now (%s)",
                       st_status_name(s));
    return false;
}

/* ---- the interactions ---- */

bool rest_json_body(rq *q, const unsigned char **body, size_t *len)
{
    if (!rt_content_type_ok(srv_req_header(q->req, "Content-Type"))) {
        rq_respond_outcome(q, 415, OO_ERROR, OO_NOT_SUPPORTED, NULL,
                           "send the resource as application/fhir+json (Content-Type)");
        return false;
    }
    *body = srv_req_body(q->req, len);
    if (!*body || !*len) {
        rq_respond_outcome(q, 400, OO_ERROR, "required", NULL, "the request has no body");
        return false;
    }
    return true;
}

/* Parse and validate the body as a resource of the route's type; false after answering. */
static bool parse_body(rq *q)
{
    const unsigned char *body;
    size_t len;
    if (!rest_json_body(q, &body, &len))
        return false;
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = rest_write_parse(q, &q->write, (const char *)body, len, q->route.type->name, &issues);
    if (status)
        rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
    return status == 0;
}

/*
 * Prepare q->write and submit it. `if_none_exist`: a create only when that
 * query still matches nothing at commit time. `pinned`: the version a
 * conditional interaction matched (0: none), which must still be current.
 */
static bool prepare_and_submit_with(rq *q, st_op_kind kind, const char *if_none_exist, int64_t pinned)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    rest_write *w = &q->write;
    int status = rest_write_prepare(q, w, kind, w->has_current ? &w->current : NULL, &issues);
    w->op.expected_version = pinned;
    if (!status && kind == ST_OP_CREATE && if_none_exist && !rest_write_if_none_exist(q, w, if_none_exist, &issues))
        status = 400;
    if (status) {
        rq_respond_issues(q, status, &issues);
        oo_list_free(&issues);
        return false;
    }
    oo_list_free(&issues);
    const char *if_match = srv_req_header(q->req, "If-Match");
    if (if_match && kind != ST_OP_CREATE) {
        int64_t version;
        if (!rest_if_match(if_match, &version)) {
            rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "If-Match must be an ETag such as W/\"3\"");
            return false;
        }
        /* a conditional update/delete already pinned the matched version: both must agree */
        if (q->write.op.expected_version && q->write.op.expected_version != version)
            version = REST_NO_VERSION;
        q->write.op.expected_version = version;
    }
    return submit(q);
}

static bool prepare_and_submit(rq *q, st_op_kind kind)
{
    return prepare_and_submit_with(q, kind, kind == ST_OP_CREATE ? srv_req_header(q->req, "If-None-Exist") : NULL, 0);
}

static bool prepare_and_submit_pinned(rq *q, st_op_kind kind, int64_t version)
{
    return prepare_and_submit_with(q, kind, NULL, version);
}

static bool prepare_and_submit_conditional_create(rq *q, const char *query)
{
    q->write.conditional_update = true;
    return prepare_and_submit_with(q, ST_OP_CREATE, query, 0);
}

bool rest_create(rq *q)
{
    if (!parse_body(q))
        return false;
    rest_new_id(q->write.id);
    return prepare_and_submit(q, ST_OP_CREATE);
}

/* The current version of the route's resource, checked for `action`; false after answering. */
/*
 * The current version of the route's resource, checked for `action`, kept
 * in q->write.current (the write is pinned to it); false after answering.
 * A resource that does not exist is answered as one that is not the
 * caller's: 404 with the same text, and nothing is created by PUT.
 */
static bool may_change(rq *q, az_action action)
{
    rest_write *w = &q->write;
    st_error err;
    st_status s = st_read(q->app->opt.store, q->route.type->name, q->route.id, &w->current, &err);
    if (s == ST_NOT_FOUND) {
        rest_record_decision(q, action, q->route.type->name, AZ_HIDDEN, 404, "no such resource", NULL);
        rest_answer_not_known(q, q->route.type->name, q->route.id, NULL);
        return false;
    }
    if (s != ST_OK && s != ST_GONE) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    w->has_current = true;
    return rest_may(q, &w->current, action);
}

/* An update of the resource the URL names (update as create when it does not exist). */
static bool update_by_id(rq *q)
{
    rest_write *w = &q->write;
    uint32_t id = fj_get(w->docp, w->root, "id");
    if (id == UINT32_MAX || !fj_str_eq(w->docp, id, q->route.id)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", "id", "the resource's id must be the id in the URL (%s)",
                           q->route.id);
        return false;
    }
    if (!may_change(q, AZ_UPDATE))
        return false;
    snprintf(w->id, sizeof w->id, "%s", q->route.id);
    return prepare_and_submit_pinned(q, ST_OP_UPDATE, w->current.version);
}

/* More than one match: 412, as the spec says for conditional update and delete. */
static void answer_several(rq *q, const char *what)
{
    rq_respond_outcome(q, 412, OO_ERROR, "multiple-matches", NULL,
                       "the conditional %s matches more than one %s: nothing was changed; narrow the search", what,
                       q->route.type->name);
}

/* Submit the write to the one resource a conditional search found, pinned to the version found. */
static bool conditional_submit(rq *q, st_op_kind kind, st_list *found)
{
    rest_write *w = &q->write;
    w->current = found->items[0]; /* taken over: the list no longer frees it */
    w->has_current = true;
    found->count = 0;
    return prepare_and_submit_pinned(q, kind, w->current.version);
}

static bool conditional_update(rq *q)
{
    rest_write *w = &q->write;
    st_list found;
    if (!rest_conditional_match(q, q->route.type, srv_req_query(q->req), &found))
        return false;
    uint32_t id = fj_get(w->docp, w->root, "id");
    bool has_id = id != UINT32_MAX;
    bool handed = false;
    if (found.count > 1) {
        answer_several(q, "update");
    } else if (found.count == 1 && has_id && !fj_str_eq(w->docp, id, found.items[0].id)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", "id",
                           "the resource's id is not the id of the resource the conditional update matched");
    } else if (found.count == 1) {
        /* pinned to the version found: changed since the search gives 412, never a lost update */
        if (rest_may(q, &found.items[0], AZ_UPDATE)) {
            snprintf(w->id, sizeof w->id, "%s", found.items[0].id);
            handed = conditional_submit(q, ST_OP_UPDATE, &found);
        }
    } else if (has_id) {
        /* nothing matches, an id given: an update (as create) of that id, as the spec says */
        size_t len = w->docp->nodes[id].len;
        if (w->docp->nodes[id].type == FJ_STRING && rt_valid_id(fj_str(w->docp, id), len)) {
            memcpy(q->route.id, fj_str(w->docp, id), len);
            q->route.id[len] = '\0';
            handed = update_by_id(q);
        } else {
            rq_respond_outcome(q, 400, OO_ERROR, "invalid", "id", "the resource's id is not a valid id");
        }
    } else {
        /* nothing matches: create, unless a concurrent write created a match meanwhile (checked at commit) */
        rest_new_id(w->id);
        handed = prepare_and_submit_conditional_create(q, srv_req_query(q->req));
    }
    st_list_free(&found);
    return handed;
}

static bool conditional_delete(rq *q)
{
    st_list found;
    if (!rest_conditional_match(q, q->route.type, srv_req_query(q->req), &found))
        return false;
    bool handed = false;
    if (found.count > 1) {
        answer_several(q, "delete");
    } else if (found.count == 0) {
        rq_respond_outcome(q, 200, OO_INFORMATION, OO_INFORMATIONAL, NULL,
                           "nothing matches the conditional delete: nothing was deleted");
    } else if (rest_may(q, &found.items[0], AZ_DELETE)) {
        rest_write *w = &q->write;
        w->type = q->route.type->name;
        snprintf(w->id, sizeof w->id, "%s", found.items[0].id);
        handed = conditional_submit(q, ST_OP_DELETE, &found);
    }
    st_list_free(&found);
    return handed;
}

bool rest_update(rq *q)
{
    if (!parse_body(q))
        return false;
    return q->route.id[0] ? update_by_id(q) : conditional_update(q);
}

/* A delete of the resource the URL names, or a conditional one. What may stop it besides access (a registered
 * organisation's directory entry stays: 409) is rest_access_check_write's; $validate mode=delete asks the same. */
bool rest_delete(rq *q)
{
    if (!q->route.id[0])
        return conditional_delete(q);
    if (!may_change(q, AZ_DELETE))
        return false;
    rest_write *w = &q->write;
    w->type = q->route.type->name;
    snprintf(w->id, sizeof w->id, "%s", q->route.id);
    return prepare_and_submit_pinned(q, ST_OP_DELETE, w->current.version);
}

bool rest_write_submit(rq *q)
{
    return submit(q);
}
