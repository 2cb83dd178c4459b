/*
 * gateway/rest_search.c — search and history: the interactions that answer
 * with a searchset or history Bundle (see rest.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest_internal.h"

/* ---- search ---- */

static bool strict_handling(rq *q)
{
    const char *prefer = srv_req_header(q->req, "Prefer");
    return prefer && strstr(prefer, "handling=strict");
}

/* The search parameters: the query string, plus a form-encoded body for POST _search. */
static char *search_parameters(rq *q)
{
    const char *query = srv_req_query(q->req);
    size_t blen = 0;
    const unsigned char *body = strcmp(srv_req_method(q->req), "POST") ? NULL : srv_req_body(q->req, &blen);
    fj_buf all = {0};
    fj_buf_puts(&all, query);
    if (body && blen) {
        if (*query)
            fj_buf_append(&all, "&", 1);
        fj_buf_append(&all, (const char *)body, blen);
    }
    return fj_buf_take(&all, NULL);
}

/* One link with _snapshot and, when cursor is not NULL, _cursor=<cursor>.<key>.<rid>. */
static void paging_link(fj_buf *b, rq *q, const char *relation, const char *params, long offset, int64_t snapshot,
                        const char *cursor, int64_t key, int64_t rid)
{
    char extra[160];
    int n = snprintf(extra, sizeof extra, "_snapshot=%lld", (long long)snapshot);
    if (cursor)
        snprintf(extra + n, sizeof extra - (size_t)n, "&_cursor=%s.%lld.%lld", cursor, (long long)key, (long long)rid);
    fj_buf_puts(b, ",");
    rest_bundle_link(b, q, relation, q->route.type->name, params, offset, extra);
}

/*
 * self, next, previous, first. Later pages read at the first page's
 * snapshot (_snapshot), so writes in between do not shift them; in the
 * default order (lastUpdated) they page by a cursor over the sort key and
 * row of the page's last (next) or first (previous) entry, with an
 * explicit _sort by offset. _count=0 asks for the total only: no next link, which
 * would be this page again.
 */
static void search_links(fj_buf *b, rq *q, const sq_query *sq, const char *params, const st_list *list)
{
    char self_extra[160] = "";
    int n = sq->snapshot ? snprintf(self_extra, sizeof self_extra, "_snapshot=%lld", (long long)sq->snapshot) : 0;
    if (sq->has_cursor)
        snprintf(self_extra + n, sizeof self_extra - (size_t)n, "%s_cursor=%c.%lld.%lld", n ? "&" : "",
                 sq->cursor_before ? 'b' : 'a', (long long)sq->cursor_ms, (long long)sq->cursor_rid);
    fj_buf_puts(b, ",\"link\":[");
    rest_bundle_link(b, q, "self", q->route.type->name, params, sq->offset, *self_extra ? self_extra : NULL);
    bool pages = !sq->summary_count && sq->count > 0;
    int64_t snap = list->snapshot;
    if (pages && !sq->sort && list->count) { /* keyset */
        if (sq->cursor_before || list->more)
            paging_link(b, q, "next", params, 0, snap, "a", list->last_key_ms, list->last_rid);
        if (sq->has_cursor && (!sq->cursor_before || list->more))
            paging_link(b, q, "previous", params, 0, snap, "b", list->first_key_ms, list->first_rid);
    } else if (pages && sq->sort) {
        if ((int64_t)sq->offset + sq->count < list->total)
            paging_link(b, q, "next", params, sq->offset + sq->count, snap, NULL, 0, 0);
        if (sq->offset > 0)
            paging_link(b, q, "previous", params, sq->offset > sq->count ? sq->offset - sq->count : 0, snap, NULL, 0,
                        0);
    }
    paging_link(b, q, "first", params, 0, snap, NULL, 0, 0);
    fj_buf_puts(b, "]");
}

static void search_entry(fj_buf *b, rq *q, const st_resource *r, const char *mode, size_t *written)
{
    rest_bundle_entry_open(b, written);
    fj_buf_printf(b, "{\"fullUrl\":\"%s/%s/%s\",\"resource\":", q->app->opt.base_url, r->type, r->id);
    fj_buf_append(b, r->json, r->json_len);
    fj_buf_printf(b, ",\"search\":{\"mode\":\"%s\"}}", mode);
}

/* A warning OperationOutcome entry (search.mode outcome). */
static void outcome_entry(fj_buf *b, const char *code, const char *message, size_t *written)
{
    rest_bundle_entry_open(b, written);
    fj_buf_printf(b, "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
                     "\"warning\",\"code\":\"%s\",\"diagnostics\":",
                  code);
    fj_buf_string(b, message, strlen(message));
    fj_buf_puts(b, "}]},\"search\":{\"mode\":\"outcome\"}}");
}

void rest_search(rq *q)
{
    const fs_type *type = q->route.type;
    sq_limits lim = {q->app->opt.page_size_default, q->app->opt.page_size_max, 16, 32};
    oo_list issues;
    oo_list_init(&issues, 0);
    sq_query sq;
    char *params = search_parameters(q);
    if (!sq_parse(q->app->schema, type, params ? params : "", strict_handling(q), &lim, rest_search_kind_supported,
                  &sq, &issues)) {
        rq_respond_issues(q, 400, &issues);
        oo_list_free(&issues);
        free(params);
        return;
    }
    rest_stq stq;
    st_list list = {0};
    st_error err;
    st_status s = rest_to_st_query(&sq, &q->caller, q->app->opt.base_url, &stq)
                      ? st_search(q->app->opt.store, &stq.q, &list, &err)
                      : ST_INTERNAL;
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "search failed: %s",
                           s == ST_INTERNAL ? "internal error" : err.message);
    } else {
        fj_buf b = {0};
        rest_bundle_head(&b, q, "searchset", list.total);
        search_links(&b, q, &sq, params, &list);
        size_t written = 0;
        for (size_t i = 0; i < list.count; i++)
            search_entry(&b, q, &list.items[i], "match", &written);
        for (size_t i = 0; i < list.included_count; i++) {
            const st_resource *r = &list.included[i];
            /* the store already left out what the caller may not see; this is the direct read's own check */
            if (az_check_resource(&q->caller, r->type, AZ_READ, r->owner, r->access_tags, r->access_tag_count) ==
                AZ_ALLOW)
                search_entry(&b, q, r, "include", &written);
        }
        if (sq.ignored) {
            char msg[600];
            snprintf(msg, sizeof msg, "search parameters not applied: %s", sq.ignored);
            outcome_entry(&b, "not-supported", msg, &written);
        }
        if (list.included_truncated) {
            char msg[160];
            snprintf(msg, sizeof msg, "more than %d resources to include; the rest were left out", REST_MAX_INCLUDED);
            outcome_entry(&b, "too-costly", msg, &written);
        }
        rest_bundle_entries_close(&b, written);
        fj_buf_puts(&b, "}");
        rest_bundle_respond(q, &b);
    }
    st_list_free(&list);
    rest_stq_free(&stq);
    sq_free(&sq);
    oo_list_free(&issues);
    free(params);
}

/* ---- history ---- */

/* A query parameter's decoded value (malloc'd) or NULL. */
static char *query_param(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        size_t len = strcspn(p, "&");
        if (len > n && !strncmp(p, name, n) && p[n] == '=')
            return sq_url_decode(p + n + 1, len - n - 1);
        p += len + (p[len] == '&');
    }
    return NULL;
}

static long long_param(const char *query, const char *name, long fallback, long max)
{
    char *v = query_param(query, name);
    long n = v ? strtol(v, NULL, 10) : fallback;
    free(v);
    return n < 0 ? 0 : n > max ? max : n;
}

static const char *method_name(st_method m) { return m == ST_METHOD_CREATE ? "POST" : m == ST_METHOD_DELETE ? "DELETE" : "PUT"; }
static const char *method_status(st_method m) { return m == ST_METHOD_CREATE ? "201 Created" : m == ST_METHOD_DELETE ? "204 No Content" : "200 OK"; }

static void history_entry(fj_buf *b, rq *q, const st_resource *r)
{
    fj_buf_printf(b, "{\"fullUrl\":\"%s/%s/%s\"", q->app->opt.base_url, r->type, r->id);
    if (!r->deleted) {
        fj_buf_puts(b, ",\"resource\":");
        fj_buf_append(b, r->json, r->json_len);
    }
    fj_buf_printf(b, ",\"request\":{\"method\":\"%s\",\"url\":\"%s%s%s\"},", method_name(r->method), r->type,
                  r->method == ST_METHOD_CREATE ? "" : "/", r->method == ST_METHOD_CREATE ? "" : r->id);
    fj_buf_printf(b, "\"response\":{\"status\":\"%s\",\"etag\":\"W/\\\"%lld\\\"\",\"lastModified\":\"%s\"}}",
                  method_status(r->method), (long long)r->version, r->last_updated);
}

void rest_history(rq *q)
{
    const char *query = srv_req_query(q->req);
    const fs_type *type = q->route.type;
    bool care_provider = q->caller.roles & AZ_CARE_ROLES;
    if (!type && !care_provider) {
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "insurers read history per resource type");
        return;
    }
    st_history_query h = {0};
    h.type = type ? type->name : NULL;
    h.id = q->route.interaction == RT_HISTORY_INSTANCE ? q->route.id : NULL;
    h.since_ms = INT64_MIN;
    char *since = query_param(query, "_since");
    int64_t lo, hi;
    if (since && !sq_date_range(since, strlen(since), &lo, &hi)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", "_since", "_since must be an instant");
        free(since);
        return;
    }
    if (since)
        h.since_ms = lo;
    free(since);
    h.count = (size_t)long_param(query, "_count", q->app->opt.page_size_default, q->app->opt.page_size_max);
    h.offset = (size_t)long_param(query, "_getpagesoffset", 0, 1000000);
    h.upto = long_param(query, "_snapshot", 0, INT32_MAX);
    /* each version is shown to whom that version was addressed (the store filters by the version's tags) */
    const char *visible[1] = {q->caller.ura};
    if (!type || az_category_of(type->name) != AZ_ADMINISTRATIVE) {
        h.visible_to = visible;
        h.visible_to_count = 1;
    }
    st_list list = {0};
    st_error err;
    st_status s = st_history(q->app->opt.store, &h, &list, &err);
    if (h.id && (s == ST_NOT_FOUND || (s == ST_OK && list.total == 0))) {
        /* unknown, or no version of it was ever this organisation's to see: the same answer */
        rest_record_decision(q, AZ_HISTORY, type->name, AZ_HIDDEN, 404, "no version visible", NULL);
        st_list_free(&list);
        rest_answer_not_known(q, type->name, h.id, NULL);
        return;
    }
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "history failed: %s", err.message);
        return;
    }
    char path[200];
    snprintf(path, sizeof path, "%s%s%s%s_history", type ? type->name : "", type ? "/" : "", h.id ? h.id : "",
             h.id ? "/" : "");
    fj_buf b = {0};
    rest_bundle_head(&b, q, "history", list.total);
    fj_buf_puts(&b, ",\"link\":[");
    rest_bundle_link(&b, q, "self", path, query, (long)h.offset, NULL);
    if (h.count > 0 && (int64_t)(h.offset + list.count) < list.total) {
        char snap[48];
        snprintf(snap, sizeof snap, "_snapshot=%lld", (long long)list.snapshot);
        fj_buf_puts(&b, ",");
        rest_bundle_link(&b, q, "next", path, query, (long)(h.offset + h.count), snap);
    }
    fj_buf_puts(&b, "]");
    size_t written = 0;
    for (size_t i = 0; i < list.count; i++) {
        rest_bundle_entry_open(&b, &written);
        history_entry(&b, q, &list.items[i]);
    }
    rest_bundle_entries_close(&b, written);
    fj_buf_puts(&b, "}");
    st_list_free(&list);
    rest_bundle_respond(q, &b);
}

