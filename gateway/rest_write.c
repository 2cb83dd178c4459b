/*
 * gateway/rest_write.c — create, update, delete and $validate (see rest.h).
 *
 * A write is parsed and validated on the worker thread, its search index
 * rows and access tags computed there, then submitted to the store. The
 * store calls rest_render on its commit thread with the version and
 * lastUpdated it assigned; the JSON written there is what every later read
 * serves. The commit callback answers the client: only then is the write
 * durable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "gateway/rest_internal.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"

void rest_new_id(char out[ST_ID_MAX + 1])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

void rest_write_free(rest_write *w)
{
    free(w->body);
    if (w->has_doc)
        fj_doc_free(&w->doc);
    free(w->meta_extra);
    free(w->stored);
    ix_rows_free(&w->ix);
    free(w->rows);
    if (w->has_if_none) {
        sq_free(&w->if_none_sq);
        rest_stq_free(&w->if_none);
    }
    memset(w, 0, sizeof *w);
}

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
        oo_add(issues, OO_FATAL, err.limit ? OO_TOO_LONG : OO_STRUCTURE, NULL, err.line, err.column,
               "invalid JSON: %s", err.message);
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
    if (obj == h->w->root && (fj_str_eq(doc, key, "resourceType") || fj_str_eq(doc, key, "id") ||
                              fj_str_eq(doc, key, "meta")))
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

char *rest_render(void *arg, int64_t version, const char *last_updated, size_t *len)
{
    rest_write *w = arg;
    render_hooks h = {{skip_root_members, replace_strings, NULL}, w};
    h.hooks.ctx = &h;
    fj_buf out = {0};
    fj_buf_puts(&out, "{\"resourceType\":");
    fj_buf_string(&out, w->type, strlen(w->type));
    fj_buf_puts(&out, ",\"id\":");
    fj_buf_string(&out, w->id, strlen(w->id));
    fj_buf_printf(&out, ",\"meta\":{\"versionId\":\"%lld\",\"lastUpdated\":\"%s\"%s%s}", (long long)version,
                  last_updated, w->meta_extra && *w->meta_extra ? "," : "", w->meta_extra ? w->meta_extra : "");
    const fj_doc *doc = w->docp;
    if (doc && doc->nodes[w->root].type == FJ_OBJECT) {
        fj_buf members = {0};
        if (fj_write_members(doc, w->root, &h.hooks, &members))
            fj_buf_puts(&out, ",");
        fj_buf_append(&out, members.data ? members.data : "", members.len);
        fj_buf_free(&members);
    }
    fj_buf_puts(&out, "}");
    char *json = fj_buf_take(&out, len);
    /* the answer repeats what was stored: keep a copy (the store frees `json`) */
    free(w->stored);
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
static bool convert_rows(rest_write *w)
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
        switch (r->kind) {
        case IX_STRING: o->v.string.text = r->text; break;
        case IX_TOKEN: o->v.token.system = r->system, o->v.token.code = r->code; break;
        case IX_REFERENCE:
            o->v.reference.type = r->ref_type;
            o->v.reference.id = r->ref_id;
            o->v.reference.url = r->ref_type ? NULL : r->text;
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

static void add_tag(rest_write *w, const char *ura, size_t len)
{
    if (len != 8 || w->tag_count == REST_MAX_TAGS)
        return;
    for (size_t i = 0; i < w->tag_count; i++)
        if (!strncmp(w->tag_text[i], ura, 8))
            return;
    memcpy(w->tag_text[w->tag_count], ura, 8);
    w->tag_text[w->tag_count][8] = '\0';
    w->tags[w->tag_count] = w->tag_text[w->tag_count];
    w->tag_count++;
}

/* Calls found(ctx, ura) for each URA identifier of an Organization's JSON. */
static void each_ura(const char *json, size_t len, void (*found)(void *ctx, const char *ura, size_t len), void *ctx)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, json, len + 1);
    fj_doc doc;
    fj_error e;
    if (fj_parse(copy, len, NULL, &doc, &e)) {
        uint32_t ids = fj_get(&doc, 0, "identifier");
        if (ids != UINT32_MAX && doc.nodes[ids].type == FJ_ARRAY) {
            uint32_t it = ids + 1;
            for (uint32_t i = 0; i < doc.nodes[ids].len; i++, it = fj_next(&doc, it)) {
                uint32_t sys = fj_get(&doc, it, "system"), val = fj_get(&doc, it, "value");
                if (sys != UINT32_MAX && val != UINT32_MAX && fj_str_eq(&doc, sys, URA_SYSTEM) &&
                    doc.nodes[val].type == FJ_STRING)
                    found(ctx, fj_str(&doc, val), doc.nodes[val].len);
            }
        }
    }
    fj_doc_free(&doc);
    free(copy);
}

static void add_tag_cb(void *ctx, const char *ura, size_t len) { add_tag(ctx, ura, len); }

/* The URA of a stored Organization (its identifier with the URA system). */
static void tag_from_organization(rq *q, rest_write *w, const char *id)
{
    st_resource r;
    st_error err;
    if (st_read(q->app->opt.store, "Organization", id, &r, &err) != ST_OK)
        return;
    each_ura(r.json, r.json_len, add_tag_cb, w);
    st_resource_free(&r);
}

typedef struct registered_check {
    const id_table *table;
    bool registered;
} registered_check;

static void check_registered(void *ctx, const char *ura, size_t len)
{
    registered_check *c = ctx;
    char text[9];
    if (len != 8)
        return;
    memcpy(text, ura, 8);
    text[8] = '\0';
    c->registered |= id_lookup_ura(c->table, text) != NULL;
}

/* One addressing Reference: "Organization/<id>" of a stored Organization, or a logical URA identifier. */
static void tag_from_reference(rq *q, rest_write *w, const fj_doc *d, uint32_t ref)
{
    uint32_t r = fj_get(d, ref, "reference");
    if (r != UINT32_MAX && d->nodes[r].type == FJ_STRING) {
        const char *s = fj_str(d, r);
        size_t len = d->nodes[r].len;
        if (len > 13 && !memcmp(s, "Organization/", 13) && len - 13 <= ST_ID_MAX) {
            char id[ST_ID_MAX + 1];
            memcpy(id, s + 13, len - 13);
            id[len - 13] = '\0';
            tag_from_organization(q, w, id);
        }
    }
    uint32_t ident = fj_get(d, ref, "identifier");
    if (ident != UINT32_MAX && d->nodes[ident].type == FJ_OBJECT) {
        uint32_t sys = fj_get(d, ident, "system"), val = fj_get(d, ident, "value");
        if (sys != UINT32_MAX && val != UINT32_MAX && fj_str_eq(d, sys, URA_SYSTEM) && d->nodes[val].type == FJ_STRING)
            add_tag(w, fj_str(d, val), d->nodes[val].len);
    }
}

/* Access tags: the organisations the resource is addressed to (authz.c says by which elements). */
static void compute_tags(rq *q, rest_write *w)
{
    const char *const *paths = az_addressing_paths(w->type);
    const fj_doc *d = w->docp;
    for (; *paths; paths++) {
        /* "Task.restriction.recipient": walk the members, arrays included */
        uint32_t frontier[64];
        size_t n = 1, next_n;
        frontier[0] = w->root;
        const char *seg = strchr(*paths, '.') + 1;
        while (seg && *seg && n) {
            size_t len = strcspn(seg, ".");
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)len, seg);
            uint32_t next[64];
            next_n = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t v = d->nodes[frontier[i]].type == FJ_OBJECT ? fj_get(d, frontier[i], key) : UINT32_MAX;
                if (v == UINT32_MAX)
                    continue;
                if (d->nodes[v].type == FJ_ARRAY) {
                    uint32_t it = v + 1;
                    for (uint32_t k = 0; k < d->nodes[v].len && next_n < 64; k++, it = fj_next(d, it))
                        next[next_n++] = it;
                } else if (next_n < 64) {
                    next[next_n++] = v;
                }
            }
            memcpy(frontier, next, next_n * sizeof *next);
            n = next_n;
            seg = seg[len] ? seg + len + 1 : NULL;
        }
        for (size_t i = 0; i < n; i++)
            if (d->nodes[frontier[i]].type == FJ_OBJECT)
                tag_from_reference(q, w, d, frontier[i]);
    }
}

bool rest_write_prepare(rq *q, rest_write *w, st_op_kind kind, oo_list *issues)
{
    st_op *op = &w->op;
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->type = w->type;
    op->id = w->id;
    op->owner = q->caller.ura;
    if (kind == ST_OP_DELETE)
        return true;
    take_meta_extra(w);
    char err[256] = "";
    if (!ix_extract(q->app->indexer, rest_arena(q->app), w->docp, w->root, w->type, &w->ix, err, sizeof err)) {
        oo_add(issues, OO_ERROR, OO_PROCESSING, NULL, 0, 0, "cannot index the resource: %s", err);
        return false;
    }
    if (!convert_rows(w)) {
        oo_add(issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        return false;
    }
    compute_tags(q, w);
    op->render = rest_render;
    op->render_arg = w;
    op->rows = w->rows;
    op->row_count = w->row_count;
    op->access_tags = w->tags;
    op->access_tag_count = w->tag_count;
    op->create_if_missing = kind == ST_OP_UPDATE;
    return true;
}

/* ---- conditional create ---- */

bool rest_write_if_none_exist(rq *q, rest_write *w, const char *query, oo_list *issues)
{
    const fs_type *t = fs_type_by_name(q->app->schema, w->type, strlen(w->type));
    sq_limits lim = {q->app->opt.page_size_default, q->app->opt.page_size_max, 16, 32};
    const char *qs = strchr(query, '?') ? strchr(query, '?') + 1 : query;
    if (!sq_parse(q->app->schema, t, qs, true, &lim, rest_search_kind_supported, &w->if_none_sq, issues))
        return false;
    w->has_if_none = true;
    if (!rest_to_st_query(&w->if_none_sq, &q->caller, &w->if_none))
        return false;
    w->op.if_none_exist = &w->if_none.q;
    return true;
}

/* ---- answers from the commit thread ---- */

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
        rq_respond_outcome(q, 412, OO_ERROR, "conflict", NULL, "%s/%s is at version %lld, not the one If-Match names",
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

static void write_done(void *arg, const st_txn_result *result)
{
    rq *q = arg;
    rest_write *w = &q->write;
    const st_op_result *r = &result->ops[0];
    if (r->status == ST_EXISTS) {
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

/* Submit q->write; false (after answering) when the store would not take it. */
static bool submit(rq *q)
{
    st_status s = st_submit(q->app->opt.store, &q->write.op, 1, write_done, q);
    if (s == ST_OK)
        return true;
    if (s == ST_BUSY)
        srv_set_header(q->req, "Retry-After", "1");
    rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "the store cannot take the write now (%s)",
                       st_status_name(s));
    return false;
}

/* ---- the interactions ---- */

/* Content-Type and a body present; false after answering 415/400. */
static bool body_ok(rq *q, const unsigned char **body, size_t *len)
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
    if (!body_ok(q, &body, &len))
        return false;
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = rest_write_parse(q, &q->write, (const char *)body, len, q->route.type->name, &issues);
    if (status)
        rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
    return status == 0;
}

static bool prepare_and_submit(rq *q, st_op_kind kind)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    bool ok = rest_write_prepare(q, &q->write, kind, &issues);
    if (ok && kind == ST_OP_CREATE) {
        const char *cond = srv_req_header(q->req, "If-None-Exist");
        if (cond && !rest_write_if_none_exist(q, &q->write, cond, &issues)) {
            rq_respond_issues(q, 400, &issues);
            oo_list_free(&issues);
            return false;
        }
    }
    if (!ok) {
        rq_respond_issues(q, 500, &issues);
        oo_list_free(&issues);
        return false;
    }
    oo_list_free(&issues);
    const char *if_match = srv_req_header(q->req, "If-Match");
    if (if_match && kind != ST_OP_CREATE) {
        char v[65];
        if (!rt_etag_version(if_match, v)) {
            rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "If-Match must be an ETag such as W/\"3\"");
            return false;
        }
        q->write.op.expected_version = strtoll(v, NULL, 10);
    }
    return submit(q);
}

bool rest_create(rq *q)
{
    if (!parse_body(q))
        return false;
    rest_new_id(q->write.id);
    return prepare_and_submit(q, ST_OP_CREATE);
}

/* The current version of the route's resource, checked for `action`; false after answering. */
static bool may_change(rq *q, az_action action, bool *exists)
{
    st_resource r;
    st_error err;
    st_status s = st_read(q->app->opt.store, q->route.type->name, q->route.id, &r, &err);
    *exists = s == ST_OK || s == ST_GONE;
    if (s == ST_NOT_FOUND)
        return true;
    if (!*exists) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    bool ok = rest_may(q, &r, action);
    st_resource_free(&r);
    return ok;
}

bool rest_update(rq *q)
{
    if (!parse_body(q))
        return false;
    rest_write *w = &q->write;
    uint32_t id = fj_get(w->docp, w->root, "id");
    if (id == UINT32_MAX || !fj_str_eq(w->docp, id, q->route.id)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", "id", "the resource's id must be the id in the URL (%s)",
                           q->route.id);
        return false;
    }
    bool exists;
    if (!may_change(q, AZ_UPDATE, &exists))
        return false;
    snprintf(w->id, sizeof w->id, "%s", q->route.id);
    return prepare_and_submit(q, ST_OP_UPDATE);
}

/* The directory entry of a registered organisation: others address Tasks to it, so it stays (409). */
static bool is_registered_organisation(rq *q)
{
    if (strcmp(q->route.type->name, "Organization"))
        return false;
    st_resource r;
    st_error err;
    if (st_read(q->app->opt.store, "Organization", q->route.id, &r, &err) != ST_OK)
        return false;
    registered_check c = {q->app->opt.organisations, false};
    each_ura(r.json, r.json_len, check_registered, &c);
    st_resource_free(&r);
    return c.registered;
}

bool rest_delete(rq *q)
{
    bool exists;
    if (!may_change(q, AZ_DELETE, &exists))
        return false;
    if (exists && is_registered_organisation(q)) {
        rq_respond_outcome(q, 409, OO_ERROR, "conflict", NULL,
                           "Organization/%s is the directory entry of a registered organisation; it cannot be deleted",
                           q->route.id);
        return false;
    }
    if (!exists) {
        rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_FOUND, NULL, "%s/%s is not known", q->route.type->name,
                           q->route.id);
        return false;
    }
    rest_write *w = &q->write;
    w->type = q->route.type->name;
    snprintf(w->id, sizeof w->id, "%s", q->route.id);
    return prepare_and_submit(q, ST_OP_DELETE);
}

/* ---- $validate ---- */

/* The resource to validate: the body, or the `resource` parameter of a Parameters body. */
static uint32_t validate_target(const fj_doc *d, const char **profile, size_t *profile_len)
{
    uint32_t rt = fj_get(d, 0, "resourceType");
    if (rt == UINT32_MAX || !fj_str_eq(d, rt, "Parameters"))
        return 0;
    uint32_t params = fj_get(d, 0, "parameter"), target = UINT32_MAX;
    if (params == UINT32_MAX || d->nodes[params].type != FJ_ARRAY)
        return UINT32_MAX;
    uint32_t p = params + 1;
    for (uint32_t i = 0; i < d->nodes[params].len; i++, p = fj_next(d, p)) {
        uint32_t name = fj_get(d, p, "name");
        if (name != UINT32_MAX && fj_str_eq(d, name, "resource"))
            target = fj_get(d, p, "resource");
        if (name != UINT32_MAX && fj_str_eq(d, name, "profile")) {
            uint32_t v = fj_get(d, p, "valueUri");
            if (v == UINT32_MAX)
                v = fj_get(d, p, "valueCanonical");
            if (v != UINT32_MAX && d->nodes[v].type == FJ_STRING) {
                *profile = fj_str(d, v);
                *profile_len = d->nodes[v].len;
            }
        }
    }
    return target;
}

void rest_validate_op(rq *q)
{
    if (strcmp(srv_req_method(q->req), "POST")) {
        rq_respond_outcome(q, 405, OO_ERROR, OO_NOT_SUPPORTED, NULL, "$validate takes POST");
        return;
    }
    const unsigned char *body;
    size_t len;
    if (!body_ok(q, &body, &len))
        return;
    oo_list issues;
    oo_list_init(&issues, 0);
    char *copy = malloc(len + 1);
    memcpy(copy, body, len + 1);
    fj_doc doc;
    fj_error err;
    if (!fj_parse(copy, len, NULL, &doc, &err)) {
        oo_add(&issues, OO_FATAL, OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s", err.message);
    } else {
        const char *profile = NULL;
        size_t profile_len = 0;
        uint32_t target = validate_target(&doc, &profile, &profile_len);
        uint32_t rt = target != UINT32_MAX ? fj_get(&doc, target, "resourceType") : UINT32_MAX;
        if (rt == UINT32_MAX || !fj_str_eq(&doc, rt, q->route.type->name)) {
            oo_add(&issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "$validate on %s needs a %s resource",
                   q->route.type->name, q->route.type->name);
        } else {
            fv_options opts = {0};
            opts.profiles = q->app->opt.profiles;
            char url[512] = "";
            const char *qp = strstr(srv_req_query(q->req), "profile=");
            if (qp) {
                char *decoded = sq_url_decode(qp + 8, strcspn(qp + 8, "&"));
                snprintf(url, sizeof url, "%s", decoded ? decoded : "");
                free(decoded);
            } else if (profile) {
                snprintf(url, sizeof url, "%.*s", (int)profile_len, profile);
            }
            if (url[0]) {
                opts.profile = opts.profiles ? pf_find(opts.profiles, url) : NULL;
                if (!opts.profile)
                    oo_add(&issues, OO_ERROR, OO_NOT_SUPPORTED, NULL, 0, 0, "profile %s is not known", url);
            }
            if (target == 0) {
                fv_validate_doc(&doc, &opts, &issues);
            } else {
                /* a resource inside Parameters: validate its own text */
                fj_buf out = {0};
                fj_write(&doc, target, NULL, &out);
                size_t rlen;
                char *resource = fj_buf_take(&out, &rlen);
                if (resource)
                    fv_validate_buffer(resource, rlen, &opts, &issues);
                free(resource);
            }
        }
    }
    fj_doc_free(&doc);
    free(copy);
    rq_respond_issues(q, 200, &issues);
    oo_list_free(&issues);
}

/* ---- search query conversion (shared with rest_bundle.c) ---- */

static st_prefix st_prefix_of(sq_prefix p) { return (st_prefix)p; }

static st_modifier st_modifier_of(sq_modifier m)
{
    switch (m) {
    case SQ_MOD_EXACT: return ST_MOD_EXACT;
    case SQ_MOD_CONTAINS: return ST_MOD_CONTAINS;
    case SQ_MOD_MISSING: return ST_MOD_MISSING;
    case SQ_MOD_NOT: return ST_MOD_NOT;
    default: return ST_MOD_NONE;
    }
}

static st_kind search_st_kind(fs_search_kind k)
{
    switch (k) {
    case FS_SEARCH_NUMBER: return ST_KIND_NUMBER;
    case FS_SEARCH_DATE: return ST_KIND_DATE;
    case FS_SEARCH_STRING: return ST_KIND_STRING;
    case FS_SEARCH_TOKEN: return ST_KIND_TOKEN;
    case FS_SEARCH_REFERENCE: return ST_KIND_REFERENCE;
    case FS_SEARCH_QUANTITY: return ST_KIND_QUANTITY;
    default: return ST_KIND_URI;
    }
}

static void convert_value(const sq_param *p, const sq_value *v, st_value *o)
{
    memset(o, 0, sizeof *o);
    o->prefix = st_prefix_of(v->prefix);
    switch (p->def->kind) {
    case FS_SEARCH_DATE:
        o->v.date.low_ms = v->lo_ms;
        o->v.date.high_ms = v->hi_ms;
        break;
    case FS_SEARCH_NUMBER:
    case FS_SEARCH_QUANTITY: {
        double half = 0.5;
        for (int i = 0; i < v->scale; i++)
            half /= 10;
        o->v.number.value = v->number;
        o->v.number.low = v->number - half;
        o->v.number.high = v->number + half;
        o->v.number.code = v->unit;
        break;
    }
    case FS_SEARCH_TOKEN:
        o->v.token.system = v->system;
        o->v.token.code = v->code;
        break;
    case FS_SEARCH_REFERENCE:
        if (v->text && strstr(v->text, "://")) {
            o->v.reference.url = v->text;
        } else {
            o->v.reference.type = p->modifier == SQ_MOD_TYPE ? p->target_type : v->ref_type;
            o->v.reference.id = v->ref_id;
        }
        break;
    case FS_SEARCH_STRING: o->v.string.text = v->text; break;
    default: o->v.uri.uri = v->text; break;
    }
}

bool rest_to_st_query(const sq_query *sq, const az_caller *caller, rest_stq *out)
{
    memset(out, 0, sizeof *out);
    size_t values = 0;
    for (size_t i = 0; i < sq->param_count; i++)
        values += sq->params[i].value_count;
    out->conditions = calloc(sq->param_count ? sq->param_count : 1, sizeof *out->conditions);
    out->values = calloc(values ? values : 1, sizeof *out->values);
    if (!out->conditions || !out->values)
        return false;
    size_t at = 0;
    for (size_t i = 0; i < sq->param_count; i++) {
        const sq_param *p = &sq->params[i];
        st_condition *c = &out->conditions[i];
        c->param = p->def->code;
        c->kind = search_st_kind(p->def->kind);
        c->modifier = st_modifier_of(p->modifier);
        c->values = &out->values[at];
        if (p->modifier == SQ_MOD_MISSING) {
            c->missing = p->value_count && p->values[0].missing;
            continue;
        }
        for (size_t k = 0; k < p->value_count; k++)
            convert_value(p, &p->values[k], &out->values[at++]);
        c->value_count = p->value_count;
    }
    out->q.type = sq->type->name;
    out->q.conditions = out->conditions;
    out->q.condition_count = sq->param_count;
    if (az_category_of(sq->type->name) != AZ_ADMINISTRATIVE) {
        out->visible[0] = caller->ura;
        out->q.visible_to = out->visible;
        out->q.visible_to_count = 1;
    }
    out->sort.param = sq->sort ? sq->sort->code : "_lastUpdated";
    out->sort.kind = sq->sort ? search_st_kind(sq->sort->kind) : ST_KIND_DATE;
    out->sort.descending = sq->has_sort ? sq->sort_descending : true; /* newest first unless asked otherwise */
    out->q.sort = &out->sort;
    out->q.sort_count = 1;
    out->q.count = sq->summary_count ? 0 : (size_t)sq->count;
    out->q.offset = (size_t)sq->offset;
    out->q.want_total = true;
    return true;
}

void rest_stq_free(rest_stq *s)
{
    free(s->conditions);
    free(s->values);
    memset(s, 0, sizeof *s);
}
