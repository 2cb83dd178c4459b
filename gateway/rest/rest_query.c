/*
 * gateway/rest/rest_query.c — search parameters as the store's query, and the
 * conditional searches of conditional interactions (see rest_query.h).
 */
#include "gateway/rest/rest_query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/answer.h"

/* ---- search parameters -> the store's query ---- */

static st_prefix st_prefix_of(sq_prefix p)
{
    return (st_prefix)p;
}

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

static void convert_value(const sq_param *p, const sq_value *v, const char *base_url, st_value *o)
{
    memset(o, 0, sizeof *o);
    o->prefix = st_prefix_of(v->prefix);
    switch (p->def->kind) {
    case FS_SEARCH_DATE:
        o->v.date.low_ms = v->lo_ms;
        o->v.date.high_ms = v->hi_ms;
        break;
    case FS_SEARCH_NUMBER:
    case FS_SEARCH_QUANTITY:
        o->v.number.value = v->number;
        sq_number_range(v, &o->v.number.low, &o->v.number.high);
        o->v.number.system = v->unit_system;
        o->v.number.code = v->unit;
        break;
    case FS_SEARCH_TOKEN:
        o->v.token.system = v->system;
        o->v.token.code = v->code;
        break;
    case FS_SEARCH_REFERENCE:
        if (rest_foreign_url(base_url, v->text) || (v->text && !v->ref_type && strchr(v->text, ':'))) { /* urn:uuid: */
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

void rest_linked_visibility(const az_caller *caller, rest_stq *out)
{
    out->visible[0] = caller->ura;
    out->linked.orgs = out->visible;
    out->linked.org_count = 1;
    size_t n = az_types_of(AZ_ADMINISTRATIVE, out->shared, sizeof out->shared / sizeof *out->shared);
    out->linked.shared_types = out->shared;
    out->linked.shared_type_count = n;
    if (!(caller->roles & AZ_CARE_ROLES)) { /* insurers read no clinical type, so reach none either */
        memcpy(out->readable, out->shared, n * sizeof *out->shared);
        n += az_types_of(AZ_FINANCIAL, out->readable + n, sizeof out->readable / sizeof *out->readable - n);
        out->linked.types = out->readable;
        out->linked.type_count = n;
    }
}

static void convert_chain(const sq_param *p, st_link *links, st_condition *c)
{
    for (size_t k = 0; k < p->chain_len; k++)
        links[k] = (st_link){p->chain[k].ref->code, p->chain[k].type, p->chain[k].reverse};
    c->chain = links;
    c->chain_len = p->chain_len;
}

bool rest_to_st_query(const sq_query *sq, const az_caller *caller, const char *base_url, rest_stq *out)
{
    memset(out, 0, sizeof *out);
    size_t values = 0, links = 0;
    for (size_t i = 0; i < sq->param_count; i++)
        values += sq->params[i].value_count, links += sq->params[i].chain_len;
    out->conditions = calloc(sq->param_count ? sq->param_count : 1, sizeof *out->conditions);
    out->values = calloc(values ? values : 1, sizeof *out->values);
    out->links = calloc(links ? links : 1, sizeof *out->links);
    if (!out->conditions || !out->values || !out->links)
        return false;
    rest_linked_visibility(caller, out);
    out->q.linked = &out->linked;
    size_t at = 0, link_at = 0;
    for (size_t i = 0; i < sq->param_count; i++) {
        const sq_param *p = &sq->params[i];
        st_condition *c = &out->conditions[i];
        convert_chain(p, &out->links[link_at], c);
        link_at += p->chain_len;
        c->param = p->def->code;
        c->kind = search_st_kind(p->def->kind);
        c->modifier = st_modifier_of(p->modifier);
        c->values = &out->values[at];
        if (p->modifier == SQ_MOD_MISSING) {
            c->missing = p->value_count && p->values[0].missing;
            continue;
        }
        for (size_t k = 0; k < p->value_count; k++)
            convert_value(p, &p->values[k], base_url, &out->values[at++]);
        c->value_count = p->value_count;
    }
    out->q.type = sq->type->name;
    out->q.conditions = out->conditions;
    out->q.condition_count = sq->param_count;
    if (az_category_of(sq->type->name) != AZ_ADMINISTRATIVE) {
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
    out->q.snapshot = sq->snapshot;
    for (size_t i = 0; i < sq->include_count; i++) {
        const sq_include *in = &sq->includes[i];
        out->includes[i] = (st_include){in->source_type, in->ref ? in->ref->code : NULL, in->target_type, in->reverse,
                                        in->iterate};
    }
    out->q.includes = out->includes;
    out->q.include_count = sq->include_count;
    out->q.max_included = REST_MAX_INCLUDED;
    if (sq->has_cursor) {
        out->cursor = (st_cursor){sq->cursor_ms, sq->cursor_rid, sq->cursor_before};
        out->q.cursor = &out->cursor;
    }
    return true;
}

/* ---- conditional interactions: the query names the resource ---- */

/*
 * The caller-visible resources of `type` matching `query` (at most two are
 * fetched: none, one or "several" is all a conditional interaction needs).
 * Returns 0, or the HTTP status (400, 5xx) with issues saying why.
 */
int rest_conditional_search(rq *q, const fs_type *type, const char *query, st_list *found, oo_list *issues)
{
    memset(found, 0, sizeof *found);
    if (!query || !*query) {
        oo_add(issues, OO_ERROR, "invalid", NULL, 0, 0,
               "a conditional interaction needs search parameters that name the resource (%s?identifier=...)",
               type->name);
        return 400;
    }
    sq_limits lim = {2, 2, SQ_MAX_PARAMS, SQ_MAX_VALUES};
    sq_query sq;
    rest_stq stq;
    if (!sq_parse(q->app->schema, type, query, true, &lim, rest_search_kind_supported, &sq, issues))
        return 400;
    if (!sq.param_count) { /* "_count=1" alone would match everything */
        sq_free(&sq);
        oo_add(issues, OO_ERROR, "invalid", NULL, 0, 0,
               "a conditional interaction needs search parameters, not only %s", query);
        return 400;
    }
    st_error err;
    st_status s = rest_to_st_query(&sq, &q->caller, q->app->opt.base_url, &stq)
                      ? st_search(q->app->opt.store, &stq.q, found, &err)
                      : ST_INTERNAL;
    if (s != ST_OK)
        oo_add(issues, OO_ERROR, rest_code_of(s), NULL, 0, 0, "the conditional search failed: %s",
               s == ST_INTERNAL ? "internal error" : err.message);
    rest_stq_free(&stq);
    sq_free(&sq);
    return s == ST_OK ? 0 : rest_status_of(s);
}

bool rest_conditional_match(rq *q, const fs_type *type, const char *query, st_list *found)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = rest_conditional_search(q, type, query, found, &issues);
    if (status)
        rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
    return status == 0;
}
