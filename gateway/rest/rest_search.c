/*
 * gateway/rest/rest_search.c — search and history: the interactions that answer
 * with a searchset or history Bundle (see handlers.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_audit.h"
#include "gateway/rest/rest_bundle.h"
#include "gateway/rest/rest_query.h"

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

/* ---- streamed pages (search and history) ----
 *
 * A page is answered with srv_respond_stream: the head (id, type, total), then
 * the entries as the connection drains, read from the store in chunks of about
 * PAGE_CHUNK_BYTES (st_search/st_history pages continued by cursor or offset
 * at the first chunk's snapshot), then the outcome entries, the links and the
 * closing brace. The links come last because the next link depends on where
 * the page ended: a page stops before the match that would take it past
 * page_max_bytes (it always holds one); a searchset says so in an
 * informational OperationOutcome entry (search.mode outcome, as for ignored
 * parameters, which clients already skip), a history Bundle cannot (bdl-2:
 * no search element outside searchsets) and is just shorter. Either way the
 * next link continues right after the last entry written. So a huge page
 * neither blocks its worker nor sits in memory whole: at most a chunk plus
 * the server's stream window.
 */

#define PAGE_CHUNK_BYTES ((size_t)1024 * 1024) /* resource bytes read from the store at once, roughly */
#define PAGE_FIRST_ROWS 16u                    /* the first chunk's rows (no sizes known yet) */
#define PAGE_MAX_ROWS 256u                     /* rows per chunk at most (small resources) */

typedef enum page_step { PAGE_MATCHES, PAGE_INCLUDES, PAGE_TAIL, PAGE_DONE } page_step;

typedef struct page {
    rq *q; /* owned: freed with the page */
    bool history;
    /* search */
    char *params; /* the search parameters (links repeat them) */
    sq_query sq;
    rest_stq stq;          /* the query; count, cursor, snapshot and offset move chunk by chunk */
    st_cursor next_cursor; /* where the next chunk starts (keyset order) */
    bool keyset;           /* default order: chunks continue by cursor, else by offset */
    /* history */
    st_history_query h;
    const char *visible[1];
    char *query;    /* the request's query string (links repeat it) */
    char path[200]; /* "Patient/1/_history": type and id are bounded (ST_TYPE_MAX, ST_ID_MAX), so it fits */
    /* both */
    st_list chunk;    /* the rows being written; included resources with it (one chunk then) */
    size_t next;      /* the next item of chunk to write */
    size_t start;     /* offset of the page's first row */
    size_t remaining; /* rows of the page not read yet */
    bool store_more;  /* the store has rows after the chunk (keyset: within or beyond the page) */
    bool first_more;  /* the first chunk's st_list.more (a `before` page: more before it) */
    int64_t total, snapshot;
    size_t matches, entries;                                /* matches written; entries written (for the commas) */
    int64_t first_key_ms, first_rid, last_key_ms, last_rid; /* of the first and last match written */
    size_t bytes;                                           /* Bundle bytes handed to the server so far */
    bool cut;                                               /* stopped by page_max_bytes */
    page_step step;
    bool head_written;
    fj_buf out, entry; /* the piece being produced; one rendered entry */
} page;
_Static_assert(sizeof((page *)0)->path >= ST_TYPE_MAX + ST_ID_MAX + sizeof "//_history", "a history path fits");

/* Frees the page and q (unless p->q was set to NULL after an error answer: the caller frees q then). */
static void page_free(page *p)
{
    st_list_free(&p->chunk);
    if (!p->history) {
        rest_stq_free(&p->stq);
        sq_free(&p->sq);
    }
    free(p->params);
    free(p->query);
    fj_buf_free(&p->out);
    fj_buf_free(&p->entry);
    if (p->q)
        rq_finish(p->q);
    free(p);
}

static void page_release(void *arg)
{
    page_free(arg);
}

/* Rows for the next chunk: about PAGE_CHUNK_BYTES at the average size of the chunk just written. */
static size_t chunk_rows(const page *p)
{
    size_t rows = PAGE_FIRST_ROWS, bytes = 0;
    for (size_t i = 0; i < p->chunk.count; i++)
        bytes += p->chunk.items[i].json_len + 1;
    if (p->chunk.count && bytes)
        rows = PAGE_CHUNK_BYTES / (bytes / p->chunk.count + 1);
    rows = rows < 1 ? 1 : rows > PAGE_MAX_ROWS ? PAGE_MAX_ROWS : rows;
    return rows < p->remaining ? rows : p->remaining;
}

/*
 * Audit: every resource a chunk brings (and every included one the caller
 * may read) is an access. The first chunk's entries are committed before
 * the page's head leaves (answer.c holds it); a later chunk's are committed
 * here before it is written, waiting on the worker for that commit, and a
 * chunk whose entries cannot be committed cuts the page.
 */
static void note_chunk(page *p)
{
    az_action action = p->history ? AZ_HISTORY : AZ_SEARCH;
    for (size_t i = 0; i < p->chunk.count; i++)
        rest_audit_note_resource(p->q, action, &p->chunk.items[i], AZ_ALLOW, 0, NULL);
    for (size_t i = 0; i < p->chunk.included_count; i++) {
        const st_resource *r = &p->chunk.included[i];
        if (az_check_resource(&p->q->caller, r->type, AZ_READ, r->owner, r->access_tags, r->access_tag_count) ==
            AZ_ALLOW)
            rest_audit_note_resource(p->q, AZ_READ, r, AZ_ALLOW, 0, NULL);
    }
}

/* Read the next chunk into p->chunk (the one before is freed). The first read (first: it also notes the total
 * and the snapshot the later ones read at) runs in the handler, so its failure still gets a status; a later
 * one that fails can only cut the stream. */
static st_status page_read(page *p, bool first, st_error *err)
{
    size_t rows = chunk_rows(p);
    st_list_free(&p->chunk);
    memset(&p->chunk, 0, sizeof p->chunk);
    p->next = 0;
    st_status s;
    if (p->history) {
        p->h.count = rows;
        p->h.offset = p->start + p->matches; /* a chunk is read once the one before is written */
        s = st_history(p->q->app->opt.store, &p->h, &p->chunk, err);
        p->store_more = s == ST_OK && p->chunk.count == rows && p->remaining > p->chunk.count;
    } else {
        st_query *sq = &p->stq.q;
        sq->count = rows;
        if (!first) {
            sq->want_total = false;
            if (p->keyset)
                sq->cursor = &p->next_cursor, sq->offset = 0;
            else
                sq->offset = p->start + p->matches;
        }
        s = st_search(p->q->app->opt.store, sq, &p->chunk, err);
        p->store_more = s == ST_OK && (p->keyset ? p->chunk.more : p->chunk.count == rows);
        if (s == ST_OK && p->chunk.count)
            p->next_cursor = (st_cursor){p->chunk.last_key_ms, p->chunk.last_rid, false};
    }
    if (s != ST_OK)
        return s;
    note_chunk(p);
    if (!first && !rest_audit_flush_wait(p->q))
        return ST_IO;
    p->remaining -= p->chunk.count < p->remaining ? p->chunk.count : p->remaining;
    if (first) {
        p->total = p->chunk.total;
        p->snapshot = p->chunk.snapshot;
        p->first_more = p->chunk.more;
        p->h.upto = p->snapshot;
        p->stq.q.snapshot = p->snapshot;
    }
    return ST_OK;
}

/* One entry; a match cut down as _summary or _elements asks (subset: NULL for an included resource). */
static void search_entry(fj_buf *b, rq *q, const st_resource *r, const char *mode, const fsub_spec *subset)
{
    fj_buf_printf(b, "{\"fullUrl\":\"%s/%s/%s\",\"resource\":", q->app->opt.base_url, r->type, r->id);
    if (!fsub_cuts(subset) || !fsub_write(q->app->schema, subset, r->json, r->json_len, b))
        fj_buf_append(b, r->json, r->json_len);
    fj_buf_printf(b, ",\"search\":{\"mode\":\"%s\"}}", mode);
}

static void history_entry(fj_buf *b, rq *q, const st_resource *r);

/* One link with _snapshot and, when cursor is not NULL, _cursor=<cursor>.<key>.<rid>. */
static void paging_link(fj_buf *b, rq *q, const char *path, const char *relation, const char *params, long offset,
                        int64_t snapshot, const char *cursor, int64_t key, int64_t rid)
{
    char extra[160];
    int n = snprintf(extra, sizeof extra, "_snapshot=%lld", (long long)snapshot);
    if (cursor)
        snprintf(extra + n, sizeof extra - (size_t)n, "&_cursor=%s.%lld.%lld", cursor, (long long)key, (long long)rid);
    fj_buf_puts(b, ",");
    rest_bundle_link(b, q, relation, path, params, offset, extra);
}

/*
 * self, next, previous, first. Later pages read at the first page's
 * snapshot (_snapshot), so writes in between do not shift them; in the
 * default order (lastUpdated) they page by a cursor over the sort key and
 * row of the last match written (next) or the first (previous), with an
 * explicit _sort by offset. _count=0 asks for the total only: no next link, which
 * would be this page again.
 */
static void search_links(fj_buf *b, const page *p)
{
    rq *q = p->q;
    const sq_query *sq = &p->sq;
    const char *type = q->route.type->name;
    char self_extra[160] = "";
    int n = sq->snapshot ? snprintf(self_extra, sizeof self_extra, "_snapshot=%lld", (long long)sq->snapshot) : 0;
    if (sq->has_cursor)
        snprintf(self_extra + n, sizeof self_extra - (size_t)n, "%s_cursor=%c.%lld.%lld", n ? "&" : "",
                 sq->cursor_before ? 'b' : 'a', (long long)sq->cursor_ms, (long long)sq->cursor_rid);
    fj_buf_puts(b, ",\"link\":[");
    rest_bundle_link(b, q, "self", type, p->params, sq->offset, *self_extra ? self_extra : NULL);
    bool pages = !sq->summary_count && sq->count > 0;
    if (pages && p->keyset && p->matches) {
        /* a `before` page was read in one piece: first_more says whether more lie before it */
        if (sq->cursor_before || p->cut || p->store_more)
            paging_link(b, q, type, "next", p->params, 0, p->snapshot, "a", p->last_key_ms, p->last_rid);
        if (sq->has_cursor && (!sq->cursor_before || p->first_more))
            paging_link(b, q, type, "previous", p->params, 0, p->snapshot, "b", p->first_key_ms, p->first_rid);
    } else if (pages && !p->keyset) {
        if ((int64_t)(p->start + p->matches) < p->total)
            paging_link(b, q, type, "next", p->params, (long)(p->start + p->matches), p->snapshot, NULL, 0, 0);
        if (sq->offset > 0)
            paging_link(b, q, type, "previous", p->params, sq->offset > sq->count ? sq->offset - sq->count : 0,
                        p->snapshot, NULL, 0, 0);
    }
    paging_link(b, q, type, "first", p->params, 0, p->snapshot, NULL, 0, 0);
    fj_buf_puts(b, "]");
}

/* self and, while versions remain, next (at the first page's snapshot, after the last entry written). */
static void history_links(fj_buf *b, const page *p)
{
    fj_buf_puts(b, ",\"link\":[");
    rest_bundle_link(b, p->q, "self", p->path, p->query, (long)p->start, NULL);
    if (p->h.count > 0 && (int64_t)(p->start + p->matches) < p->total) {
        char snap[48];
        snprintf(snap, sizeof snap, "_snapshot=%lld", (long long)p->snapshot);
        fj_buf_puts(b, ",");
        rest_bundle_link(b, p->q, "next", p->path, p->query, (long)(p->start + p->matches), snap);
    }
    fj_buf_puts(b, "]");
}

/* The next match into p->out, unless it would take the page past page_max_bytes (then the page ends);
 * false when a chunk could not be read or the entry not rendered. */
static bool page_match(page *p)
{
    if (p->next == p->chunk.count) {
        st_error err;
        if (!p->store_more || !p->remaining) {
            p->step = PAGE_INCLUDES;
            return true;
        }
        return page_read(p, false, &err) == ST_OK;
    }
    const st_resource *r = &p->chunk.items[p->next];
    p->entry.len = 0;
    if (p->history)
        history_entry(&p->entry, p->q, r);
    else
        search_entry(&p->entry, p->q, r, "match", &p->sq.subset);
    if (p->entry.failed)
        return false; /* out of memory: cut the answer rather than send a wrong one */
    if (p->matches && p->bytes + p->out.len + p->entry.len > p->q->app->opt.page_max_bytes) {
        p->cut = true;
        p->step = PAGE_INCLUDES;
        return true;
    }
    rest_bundle_entry_open(&p->out, &p->entries);
    fj_buf_append(&p->out, p->entry.data, p->entry.len);
    if (!p->matches++)
        p->first_key_ms = r->key_ms, p->first_rid = r->rid;
    p->last_key_ms = r->key_ms, p->last_rid = r->rid;
    p->next++;
    return true;
}

/* Included resources (the page was read in one chunk when it has includes): a few per call. */
static void page_includes(page *p)
{
    while (p->next < p->chunk.included_count && p->out.len < SRV_STREAM_LOW_WATER) {
        const st_resource *r = &p->chunk.included[p->next++];
        /* the store already left out what the caller may not see; this is the direct read's own check */
        if (az_check_resource(&p->q->caller, r->type, AZ_READ, r->owner, r->access_tags, r->access_tag_count) ==
            AZ_ALLOW) {
            rest_bundle_entry_open(&p->out, &p->entries);
            search_entry(&p->out, p->q, r, "include", NULL);
        }
    }
    if (p->next >= p->chunk.included_count)
        p->step = PAGE_TAIL;
}

/* The outcome entries, the end of the entry list, the links, the closing brace. */
static void page_tail(page *p)
{
    if (!p->history && p->sq.ignored) {
        fj_buf msg = {0}; /* every parameter named, however many */
        fj_buf_printf(&msg, "search parameters not applied: %s", p->sq.ignored);
        if (msg.data && !msg.failed)
            rest_bundle_outcome_entry(&p->out, "warning", "not-supported", msg.data, &p->entries);
        else
            p->out.failed = true; /* out of memory: cut the answer rather than hide what was ignored */
        fj_buf_free(&msg);
    }
    if (p->chunk.included_truncated) {
        char msg[160];
        snprintf(msg, sizeof msg, "more than %d resources to include; the rest were left out", REST_MAX_INCLUDED);
        rest_bundle_outcome_entry(&p->out, "warning", "too-costly", msg, &p->entries);
    }
    if (p->cut && !p->history) { /* a history Bundle has no search entries (bdl-2): its next link says enough */
        char msg[200];
        snprintf(msg, sizeof msg,
                 "page ended after %zu entries at the page size limit of %zu bytes; the next link "
                 "continues after the last entry",
                 p->matches, p->q->app->opt.page_max_bytes);
        rest_bundle_outcome_entry(&p->out, "information", "informational", msg, &p->entries);
    }
    rest_bundle_entries_close(&p->out, p->entries);
    if (p->history)
        history_links(&p->out, p);
    else
        search_links(&p->out, p);
    fj_buf_puts(&p->out, "}");
    p->step = PAGE_DONE;
}

/* The producer: about SRV_STREAM_LOW_WATER bytes per call (or one large entry). */
static srv_stream_status page_produce(srv_stream *out, void *arg)
{
    page *p = arg;
    if (!p->head_written) {
        rest_bundle_head(&p->out, p->q, p->history ? "history" : "searchset", p->total);
        p->head_written = true;
    }
    while (p->step != PAGE_DONE && p->out.len < SRV_STREAM_LOW_WATER) {
        if (p->step == PAGE_MATCHES) {
            if (!page_match(p))
                return SRV_STREAM_ERROR; /* a chunk could not be read: the client sees a cut answer */
            if (p->step == PAGE_INCLUDES)
                p->next = 0;
        } else if (p->step == PAGE_INCLUDES) {
            page_includes(p);
        } else {
            page_tail(p);
        }
    }
    size_t len = p->out.len;
    if (!rest_bundle_flush(out, &p->out))
        return SRV_STREAM_ERROR;
    p->bytes += len;
    return p->step == PAGE_DONE ? SRV_STREAM_DONE : SRV_STREAM_MORE;
}

/* Allocate a page owning q; NULL after answering 503. */
static page *page_new(rq *q, bool history)
{
    page *p = calloc(1, sizeof *p);
    if (!p)
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
    else
        p->q = q, p->history = history;
    return p;
}

/* Stream the page whose first chunk has been read; q now belongs to the stream. */
static bool page_respond(page *p)
{
    rq_respond_stream(p->q, page_produce, page_release, p);
    return true;
}

bool rest_search(rq *q)
{
    const fs_type *type = q->route.type;
    sq_limits lim = {q->app->opt.page_size_default, q->app->opt.page_size_max, SQ_MAX_PARAMS, SQ_MAX_VALUES};
    oo_list issues;
    oo_list_init(&issues, 0);
    page *p = page_new(q, false);
    if (!p)
        return false;
    p->params = search_parameters(q);
    if (!sq_parse(q->app->schema, type, p->params ? p->params : "", strict_handling(q), &lim,
                  rest_search_kind_supported, &p->sq, &issues)) {
        rq_respond_issues(q, 400, &issues);
        oo_list_free(&issues);
        free(p->params);
        free(p);
        return false;
    }
    oo_list_free(&issues);
    st_error err;
    st_status s = ST_INTERNAL;
    /* the search itself is audited (not its parameters, which may name a patient), then what it returns */
    rest_audit_note(q, AZ_SEARCH, type->name, NULL, 0, NULL, AZ_ALLOW, 0, NULL);
    if (rest_to_st_query(&p->sq, &q->caller, q->app->opt.base_url, &p->stq)) {
        p->keyset = !p->sq.sort;
        p->start = p->stq.q.offset;
        p->remaining = p->stq.q.count;
        /* includes are computed over the page's matches, and a `before` page is read backwards: both in one
         * chunk; _count=0 and _summary=count read the total only */
        bool whole = p->stq.q.include_count || (p->stq.q.cursor && p->stq.q.cursor->before) || !p->remaining;
        if (whole) {
            s = st_search(q->app->opt.store, &p->stq.q, &p->chunk, &err);
            if (s == ST_OK) {
                note_chunk(p);
                p->total = p->chunk.total, p->snapshot = p->chunk.snapshot, p->first_more = p->chunk.more;
                p->store_more = p->chunk.more;
                p->remaining = 0;
            }
        } else {
            s = page_read(p, true, &err);
        }
    }
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "search failed: %s",
                           s == ST_INTERNAL ? "internal error" : err.message);
        p->q = NULL; /* answered: the caller frees q */
        page_free(p);
        return false;
    }
    return page_respond(p);
}

/* ---- history ---- */

/* A non-negative whole-number parameter into *out (fallback when absent); false when it is not one. */
static bool number_param(const char *query, const char *name, int64_t fallback, int64_t *out)
{
    char *v = sq_query_param(query, name);
    if (!v) {
        *out = fallback;
        return true;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    bool ok = *v && !*end && n >= 0 && errno != ERANGE;
    free(v);
    *out = n;
    return ok;
}

/*
 * _count, _getpagesoffset and _snapshot of a history page; false after
 * answering 400 for one that is not a non-negative whole number (it used to
 * be read as 0 or clamped, which served another page than the one asked
 * for). A _count above page_size_max is served page_size_max at a time, as
 * FHIR lets a server do: the next link continues.
 */
static bool history_paging(rq *q, const char *query, page *p)
{
    static const char *const names[] = {"_count", "_getpagesoffset", "_snapshot"};
    int64_t v[3];
    for (size_t i = 0; i < 3; i++)
        if (!number_param(query, names[i], i == 0 ? q->app->opt.page_size_default : 0, &v[i])) {
            rq_respond_outcome(q, 400, OO_ERROR, "invalid", names[i], "%s must be a non-negative whole number",
                               names[i]);
            return false;
        }
    p->remaining = (size_t)(v[0] > q->app->opt.page_size_max ? q->app->opt.page_size_max : v[0]);
    p->start = (size_t)v[1];
    p->h.upto = v[2];
    return true;
}

static const char *method_name(st_method m)
{
    return m == ST_METHOD_CREATE ? "POST" : m == ST_METHOD_DELETE ? "DELETE" : "PUT";
}
static const char *method_status(st_method m)
{
    return m == ST_METHOD_CREATE ? "201 Created" : m == ST_METHOD_DELETE ? "204 No Content" : "200 OK";
}

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

/*
 * With Prefer: handling=strict, a history parameter it does not apply is 400 (as a search's is): _list is
 * R4's but not done here. Lenient, they are left out silently: a history Bundle has no place for
 * the OperationOutcome a searchset carries. False with the 400 answered.
 */
static bool history_parameters_known(rq *q, const char *query)
{
    static const char *const known[] = {"_count",    "_since",  "_at",    "_getpagesoffset",
                                        "_snapshot", "_format", "_pretty"};
    if (!strict_handling(q))
        return true;
    for (const char *p = query; p && *p;) {
        size_t len = strcspn(p, "&"), name_len = strcspn(p, "=&");
        bool ok = name_len == 0;
        for (size_t i = 0; i < sizeof known / sizeof *known && !ok; i++)
            ok = strlen(known[i]) == name_len && !strncmp(p, known[i], name_len);
        if (!ok) {
            char *name = sq_url_decode(p, name_len);
            rq_respond_outcome(q, 400, OO_ERROR, "not-supported", name, "history does not take %s%s",
                               name ? name : "that parameter",
                               name && !strcmp(name, "_list")
                                   ? " (an R4 history parameter this server does not support)"
                                   : "");
            free(name);
            return false;
        }
        p += len + (p[len] == '&');
    }
    return true;
}

/* Does the caller see any version of the instance at all? A history narrowed by _since or _at can be empty for
 * a resource it reads: that is an empty page, not the 404 of a resource it may not know. */
static bool instance_visible(rq *q, const st_history_query *h)
{
    st_history_query all = *h;
    all.since_ms = INT64_MIN;
    all.at = false;
    all.count = 0;
    all.offset = 0;
    st_list l = {0};
    st_error err;
    bool seen = st_history(q->app->opt.store, &all, &l, &err) == ST_OK && l.total > 0;
    st_list_free(&l);
    return seen;
}

bool rest_history(rq *q)
{
    const char *query = srv_req_query(q->req);
    if (!history_parameters_known(q, query))
        return false;
    const fs_type *type = q->route.type;
    bool care_provider = q->caller.roles & AZ_CARE_ROLES;
    if (!type && !care_provider) {
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "insurers read history per resource type");
        return false;
    }
    int64_t lo = INT64_MIN, hi;
    char *since = sq_query_param(query, "_since");
    if (since && !sq_date_range(since, strlen(since), &lo, &hi)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", "_since", "_since must be an instant");
        free(since);
        return false;
    }
    free(since);
    /* _at: the versions current at some moment of that date's span (a day, a second, ...), prefixes not taken */
    int64_t at_lo = 0, at_hi = 0;
    char *at = sq_query_param(query, "_at");
    bool at_ok = !at || (at[0] >= '0' && at[0] <= '9' && sq_date_range(at, strlen(at), &at_lo, &at_hi));
    if (!at_ok)
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", "_at", "_at must be a date or an instant, without a prefix");
    bool has_at = at != NULL;
    free(at);
    if (!at_ok)
        return false;
    page *p = page_new(q, true);
    if (!p)
        return false;
    st_history_query *h = &p->h;
    h->type = type ? type->name : NULL;
    h->id = q->route.interaction == RT_HISTORY_INSTANCE ? q->route.id : NULL;
    h->since_ms = lo;
    h->at = has_at;
    h->at_lo_ms = at_lo;
    h->at_hi_ms = at_hi;
    if (!history_paging(q, query, p)) {
        p->q = NULL; /* answered: the caller frees q */
        page_free(p);
        return false;
    }
    /* each version is shown to whom that version was addressed (the store filters by the version's tags) */
    p->visible[0] = q->caller.ura;
    if (!type || az_category_of(type->name) != AZ_ADMINISTRATIVE) {
        h->visible_to = p->visible;
        h->visible_to_count = 1;
    }
    snprintf(p->path, sizeof p->path, "%s%s%s%s_history", type ? type->name : "", type ? "/" : "", h->id ? h->id : "",
             h->id ? "/" : "");
    p->query = strdup(query); /* the request is gone once the stream starts */
    rest_audit_note(q, AZ_HISTORY, type ? type->name : NULL, h->id, 0, NULL, AZ_ALLOW, 0, NULL);
    st_error err;
    /* _count=0 reads no rows: the total only */
    st_status s = p->query ? page_read(p, true, &err) : ST_INTERNAL;
    bool narrowed = h->since_ms != INT64_MIN || h->at;
    if (h->id && (s == ST_NOT_FOUND || (s == ST_OK && p->total == 0 && (!narrowed || !instance_visible(q, h))))) {
        /* unknown, or no version of it was ever this organisation's to see: the same answer */
        rest_record_decision(q, AZ_HISTORY, type->name, AZ_HIDDEN, 404, "no version visible", NULL);
        rest_answer_not_known(q, type->name, h->id, NULL);
    } else if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "history failed: %s",
                           s == ST_INTERNAL ? "internal error" : err.message);
    } else {
        return page_respond(p);
    }
    p->q = NULL; /* answered: the caller frees q */
    page_free(p);
    return false;
}
