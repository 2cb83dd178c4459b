/*
 * gateway/rest/rest_batch.c — batch and transaction Bundles (see handlers.h).
 *
 * A transaction is one store transaction: every write entry becomes an
 * st_op of a single st_submit, so all commit or none does. It is processed
 * in the order R4 prescribes (DELETE, POST, PUT, then GET after the commit),
 * with conditional creates first among the POSTs. References are rewritten
 * where the Bundle names a resource it creates or resolves:
 *   - the urn:uuid: fullUrl of a POST (or PUT) entry -> "Type/id";
 *   - a conditional reference "Patient?identifier=..." -> the one match;
 * and only in elements that hold references (Reference.reference, uri-like
 * types, narrative links), never in an Identifier.value that happens to be
 * equal (fhir/walk.h gives each string its element and type). When a
 * conditional create (ifNoneExist) matches at commit time, the store tells
 * us before the later operations are rendered and indexed, and the name is
 * pointed at the resource that matched: a re-sent transfer never leaves
 * dangling references. A transaction that touches the same resource twice
 * fails, as the spec requires.
 *
 * A batch submits each write entry on its own; the answer is assembled when
 * the last one is committed, and an invalid entry fails alone.
 *
 * In both, request.ifMatch / ifNoneMatch / ifModifiedSince / ifNoneExist
 * are honoured, vread entries read the version asked for, and a failing
 * entry is named by its index in the client's Bundle (Bundle.entry[i]).
 */
#define _GNU_SOURCE /* memmem */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/reference.h"
#include "fhir/walk.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_audit.h"
#include "gateway/rest/rest_batch.h"
#include "gateway/rest/rest_bundle.h"
#include "gateway/rest/rest_query.h"
#include "gateway/rest/rest_write.h"

/* ---- the state of one Bundle ---- */

#define NAME_PREFIX 4
#define NAME_PREFIXES 8

/* A name in the Bundle that stands for a resource: a urn:uuid: fullUrl or a conditional reference. */
typedef struct ref_name {
    char *from; /* "urn:uuid:..." or "Patient?identifier=..." */
    size_t from_len;
    char target[ST_TYPE_MAX + ST_ID_MAX + 2]; /* "Type/id"; the id part may be rewritten in place (see above) */
    size_t id_at;                             /* where the id starts in target */
    bool *moved;                              /* the batch's names_moved: set when a match rewrites target */
} ref_name;

typedef struct bentry {
    int index;         /* in the client's Bundle */
    uint32_t entry;    /* node of the entry */
    char method[8];    /* GET, HEAD, POST, PUT, DELETE, PATCH; a longer one is refused, never cut */
    char *url;         /* request.url, whole (owned) */
    const char *query; /* after '?' in url, or NULL */
    rt_route route;
    const fs_type *type;
    char id[ST_ID_MAX + 1];
    bool is_write;
    bool conditional_create; /* POST with ifNoneExist, or a conditional PUT that matched nothing */
    int64_t pinned;          /* the version a conditional PUT/DELETE matched, or ifMatch (0: any) */
    ref_name *name;          /* the name other entries use for this one, if any */
    rest_write w;
    /* the answer for this entry */
    int status;
    char *location; /* base/Type/id/_history/version of a write (owned) */
    char etag[32];
    char last_modified[ST_INSTANT_LEN];
    st_op_result result; /* batch: the store's result, copied on the commit thread, answered on the worker */
    bool has_result;
    char *outcome;  /* OperationOutcome JSON for a failed or informational entry */
    char *resource; /* resource JSON to include */
} bentry;

typedef struct batch {
    rq *q;
    bool transaction;
    bool validated; /* built by the gateway from resources it has validated (rest_transaction_run_validated) */
    char *body;
    fj_doc doc;
    bentry *entries;
    size_t count;
    ref_name *names;
    size_t name_count, name_cap;
    /* Finding a name: an open-addressing table of name indexes + 1 (0: empty slot), and which lengths
     * below NAME_LENGTHS occur, so that a narrative's many quoted attributes are mostly passed over by
     * their length alone. A transaction of n entries looks up about as many strings as it has
     * references: with a linear search that was O(n^2). */
    uint32_t *name_slots;
    size_t slot_count; /* a power of two, at least twice name_count; 0 before the first name */
    uint64_t name_lengths[4];
    bool long_name; /* some name is NAME_LENGTHS bytes or longer */
    /* The names' distinct first NAME_PREFIX bytes ("urn:", "Pati"): a narrative that contains none of them
     * links to no name and is not scanned. Unused (any_prefix) past NAME_PREFIXES of them or a shorter name. */
    char prefixes[NAME_PREFIXES][NAME_PREFIX];
    size_t prefix_count;
    bool any_prefix;
    uint8_t *rewritable; /* per node: 0 keep, 1 a reference-like string, 2 narrative (links inside) */
    char **replaced;     /* narrative texts with links rewritten (freed with the batch) */
    size_t replaced_count, replaced_cap;
    fj_write_hooks hooks;
    bool names_moved;    /* a conditional create matched at commit time (point_name_at_match; commit thread) */
    st_op *ops;          /* transaction: one per write entry, in processing order */
    bentry **op_entries; /* the entry of each op */
    size_t op_count;
    st_op_result *results; /* transaction: the store's results (op_count), copied on the commit thread */
    st_status txn_status;  /* ... its status and failing op */
    size_t failed_op;
    atomic_int pending;     /* batch: submitted writes not yet committed, plus one for the submitter */
    oo_list validation;     /* what validating the Bundle found (a batch spreads errors over its entries) */
    rest_txn_answer answer; /* rest_transaction_run_validated: answers instead of the transaction-response */
    void *answer_arg;
    const char *keep_type; /* ... with the written versions of this type (rest_txn_written.stored) */
} batch;

enum { KEEP = 0, REFERENCE_LIKE = 1, NARRATIVE = 2 };

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        rest_write_free(&b->entries[i].w);
        free(b->entries[i].url);
        free(b->entries[i].location);
        free(b->entries[i].outcome);
        free(b->entries[i].resource);
    }
    free(b->entries);
    for (size_t i = 0; i < b->name_count; i++)
        free(b->names[i].from);
    free(b->names);
    free(b->name_slots);
    for (size_t i = 0; i < b->replaced_count; i++)
        free(b->replaced[i]);
    free(b->replaced);
    free(b->rewritable);
    free(b->ops);
    free(b->op_entries);
    free(b->results);
    oo_list_free(&b->validation);
    fj_doc_free(&b->doc);
    free(b->body);
    free(b);
}

/* ---- entry outcomes ---- */

static void entry_fail_issues(bentry *e, int status, const oo_list *issues)
{
    json_object *oo = oo_to_json(issues);
    free(e->outcome);
    e->outcome = strdup(json_object_to_json_string_ext(oo, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(oo);
    e->status = status;
}

/* The entry failed (or answered informationally, status < 400) with one issue at Bundle.entry[i]
 * (member: further in, "request.method"). detail is quoted as an error message quotes what the client sent:
 * at most RT_ECHO_MAX bytes (route.h). */
static void entry_fail_at(bentry *e, int status, const char *code, const char *member, const char *fmt,
                          const char *detail)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    char expr[96], quoted[RT_ECHO_SIZE];
    snprintf(expr, sizeof expr, "Bundle.entry[%d]%s%s", e->index, member ? "." : "", member ? member : "");
    oo_add(&issues, status < 400 ? OO_INFORMATION : OO_ERROR, code, expr, 0, 0, fmt, rt_echo(detail, quoted));
    entry_fail_issues(e, status, &issues);
    oo_list_free(&issues);
}

static void entry_fail(bentry *e, int status, const char *code, const char *fmt, const char *detail)
{
    entry_fail_at(e, status, code, NULL, fmt, detail);
}

/* ---- names: urn:uuid: fullUrls and conditional references ---- */

#define NAME_LENGTHS 256

static uint64_t name_hash(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static bool may_be_name_length(const batch *b, size_t len)
{
    return len < NAME_LENGTHS ? (b->name_lengths[len / 64] >> (len % 64)) & 1 : b->long_name;
}

static ref_name *find_name(const batch *b, const char *s, size_t len)
{
    if (!b->slot_count || !may_be_name_length(b, len))
        return NULL;
    size_t mask = b->slot_count - 1;
    for (size_t at = name_hash(s, len) & mask; b->name_slots[at]; at = (at + 1) & mask) {
        ref_name *n = &b->names[b->name_slots[at] - 1];
        if (n->from_len == len && !memcmp(n->from, s, len))
            return n;
    }
    return NULL;
}

static void slot_name(batch *b, size_t index)
{
    const ref_name *n = &b->names[index];
    size_t mask = b->slot_count - 1, at = name_hash(n->from, n->from_len) & mask;
    while (b->name_slots[at])
        at = (at + 1) & mask;
    b->name_slots[at] = (uint32_t)index + 1;
}

/* Room in the table for one more name, kept at most half full; false when out of memory. */
static bool reserve_name_slot(batch *b)
{
    if (2 * (b->name_count + 1) <= b->slot_count)
        return true;
    size_t count = b->slot_count ? 2 * b->slot_count : 16;
    uint32_t *slots = calloc(count, sizeof *slots);
    if (!slots)
        return false;
    free(b->name_slots);
    b->name_slots = slots;
    b->slot_count = count;
    for (size_t i = 0; i < b->name_count; i++)
        slot_name(b, i);
    return true;
}

static void note_prefix(batch *b, const char *name, size_t len)
{
    if (b->any_prefix)
        return;
    for (size_t i = 0; len >= NAME_PREFIX && i < b->prefix_count; i++)
        if (!memcmp(b->prefixes[i], name, NAME_PREFIX))
            return;
    if (len < NAME_PREFIX || b->prefix_count == NAME_PREFIXES) {
        b->any_prefix = true;
        return;
    }
    memcpy(b->prefixes[b->prefix_count++], name, NAME_PREFIX);
}

/* Could the text hold a name? False when it contains none of the names' first bytes. */
static bool may_hold_a_name(const batch *b, const char *s, size_t len)
{
    if (b->any_prefix)
        return true;
    for (size_t i = 0; i < b->prefix_count; i++)
        if (memmem(s, len, b->prefixes[i], NAME_PREFIX))
            return true;
    return false;
}

static ref_name *add_name(batch *b, const char *from, size_t len, const char *type, const char *id)
{
    if (b->name_count == b->name_cap) {
        /* entries point at their names: remember where they were, to move those pointers along */
        uintptr_t old = (uintptr_t)b->names;
        if (!fa_reserve(&b->names, &b->name_cap, b->name_count + 1, sizeof *b->names))
            return NULL;
        for (size_t i = 0; i < b->count; i++)
            if (b->entries[i].name)
                b->entries[i].name = b->names + ((uintptr_t)b->entries[i].name - old) / sizeof *b->names;
    }
    if (b->name_count >= UINT32_MAX - 1 || !reserve_name_slot(b))
        return NULL;
    ref_name *n = &b->names[b->name_count];
    n->from = strndup(from, len);
    if (!n->from)
        return NULL;
    n->from_len = len;
    snprintf(n->target, sizeof n->target, "%s/%s", type, id);
    n->id_at = strlen(type) + 1;
    n->moved = &b->names_moved;
    slot_name(b, b->name_count);
    b->name_count++;
    if (len < NAME_LENGTHS)
        b->name_lengths[len / 64] |= 1ull << (len % 64);
    else
        b->long_name = true;
    note_prefix(b, from, len);
    return n;
}

/*
 * A conditional create matched at commit time: the name now means the
 * resource that matched. The store's on_applied hook, so it runs on the
 * commit thread, before the later operations of the transaction are
 * rendered and indexed (they read the name); it only rewrites the id in the
 * name's own buffer: no store read, no allocation, no answer.
 */
static void point_name_at_match(void *arg, const st_op_result *r)
{
    ref_name *n = arg;
    if (r->status == ST_EXISTS) {
        snprintf(n->target + n->id_at, sizeof n->target - n->id_at, "%s", r->id);
        *n->moved = true; /* what the workers rendered with the name before is stale (rest_render renders again) */
    }
}

/*
 * A narrative with every link to a name rewritten (<a href="urn:uuid:...">, <img src='...'>, any attribute
 * whose whole value is a name), or NULL when it names none. Owned by the batch. Only attribute values are
 * read: the narrative has passed the XHTML check, so outside a tag there is no '<' and text is passed over
 * with memchr (a document's narrative is tens of KB), and an apostrophe in the text ("patient's") opens
 * no quote.
 */
static const char *rewrite_narrative(batch *b, const char *s, size_t len, size_t *out_len)
{
    if (!b->name_count || !may_hold_a_name(b, s, len))
        return NULL;
    fj_buf out = {0};
    bool changed = false;
    size_t from = 0; /* what is not yet copied to out */
    for (const char *tag = memchr(s, '<', len); tag; tag = memchr(tag, '<', len - (size_t)(tag - s))) {
        size_t i = (size_t)(tag - s) + 1;
        while (i < len && s[i] != '>') {
            if (s[i] != '"' && s[i] != '\'') {
                i++;
                continue;
            }
            const char *close = memchr(s + i + 1, s[i], len - i - 1);
            if (!close) {
                i = len;
                break;
            }
            size_t end = (size_t)(close - s);
            ref_name *n = find_name(b, s + i + 1, end - i - 1);
            if (n) {
                fj_buf_append(&out, s + from, i + 1 - from);
                fj_buf_puts(&out, n->target);
                from = end;
                changed = true;
            }
            i = end + 1;
        }
        if (i >= len)
            break;
        tag = s + i;
    }
    if (!changed) {
        fj_buf_free(&out);
        return NULL;
    }
    fj_buf_append(&out, s + from, len - from);
    char *text = fj_buf_take(&out, out_len);
    if (!text || !fa_reserve(&b->replaced, &b->replaced_cap, b->replaced_count + 1, sizeof *b->replaced)) {
        free(text);
        return NULL;
    }
    b->replaced[b->replaced_count++] = text;
    return text;
}

/* Writer hook: strings that hold references to names of this Bundle become Type/id. */
static const char *replace_names(void *ctx, const fj_doc *doc, uint32_t node, size_t *len)
{
    batch *b = ctx;
    if (!b->rewritable || b->rewritable[node] == KEEP)
        return NULL;
    const char *s = fj_str(doc, node);
    if (b->rewritable[node] == NARRATIVE)
        return rewrite_narrative(b, s, doc->nodes[node].len, len);
    ref_name *n = find_name(b, s, doc->nodes[node].len);
    if (!n)
        return NULL;
    *len = strlen(n->target);
    return n->target;
}

/* ---- the typed walk: which strings are references ---- */

typedef struct walk_ctx {
    batch *b;
    uint32_t *conditional; /* nodes of conditional references found */
    size_t conditional_count, conditional_cap;
} walk_ctx;

static bool is_uri_like(const fs_type *t)
{
    static const char *const names[] = {"uri", "url", "canonical", "oid", "uuid"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(t->name, names[i]))
            return true;
    return false;
}

/* "Patient?identifier=..." (a type, then a query) */
static bool is_conditional_reference(const fj_doc *doc, uint32_t node)
{
    const char *s = fj_str(doc, node);
    size_t len = doc->nodes[node].len, q = 0;
    while (q < len && s[q] != '?' && s[q] != '/')
        q++;
    return q > 0 && q < len && s[q] == '?' && s[0] >= 'A' && s[0] <= 'Z';
}

static void mark_literal_reference(walk_ctx *w, const fj_doc *doc, uint32_t node)
{
    w->b->rewritable[node] = REFERENCE_LIKE;
    if (is_conditional_reference(doc, node)) {
        if (!fa_reserve(&w->conditional, &w->conditional_cap, w->conditional_count + 1, sizeof *w->conditional))
            return;
        w->conditional[w->conditional_count++] = node;
    }
}

/* uri-like primitives and narrative (their links); literal references come from the reference walk */
static void mark_uri_like(void *ctx, const fj_doc *doc, uint32_t node, const fs_element *el, const fs_type *t)
{
    walk_ctx *w = ctx;
    (void)el;
    if (doc->nodes[node].type != FJ_STRING)
        return;
    if (!strcmp(t->name, "xhtml"))
        w->b->rewritable[node] = NARRATIVE;
    else if (is_uri_like(t))
        w->b->rewritable[node] = REFERENCE_LIKE;
}

/* Every Reference's literal reference, also those in the extensions of primitives (which the other walk skips). */
static void mark_reference(void *ctx, const fj_doc *doc, uint32_t ref, const fs_element *el)
{
    (void)el;
    uint32_t r = fj_get(doc, ref, "reference");
    if (r != UINT32_MAX && doc->nodes[r].type == FJ_STRING)
        mark_literal_reference(ctx, doc, r);
}

/* Resolve a conditional reference to its one match; false with the entry failed (412/400). */
static bool resolve_conditional_reference(batch *b, bentry *e, uint32_t node)
{
    const char *s = fj_str(&b->doc, node);
    size_t len = b->doc.nodes[node].len;
    if (find_name(b, s, len))
        return true;
    size_t q = strcspn(s, "?");
    const fs_type *type = fs_type_by_name(b->q->app->schema, s, q);
    char *query = strndup(s + q + 1, len - q - 1);
    oo_list issues;
    oo_list_init(&issues, 0);
    st_list found;
    int status = type && query ? rest_conditional_search(b->q, type, query, &found, &issues) : 400;
    if (!status && found.count == 1 && add_name(b, s, len, type->name, found.items[0].id))
        status = 0;
    else if (!status)
        status = 412;
    if (status) {
        char *text = strndup(s, len), what[RT_ECHO_SIZE];
        rt_echo(text ? text : "", what); /* quoted as messages quote the request: at most RT_ECHO_MAX bytes */
        free(text);
        if (!issues.count)
            oo_add(&issues, OO_ERROR, status == 412 ? "multiple-matches" : "invalid", NULL, 0, 0,
                   "the conditional reference %s matches %s", what,
                   status == 412 ? (found.count ? "more than one resource" : "no resource") : "nothing usable");
        entry_fail_issues(e, status, &issues);
    }
    if (type && query)
        st_list_free(&found);
    free(query);
    oo_list_free(&issues);
    return status == 0;
}

/* Mark the reference-like strings of every entry resource and resolve conditional references. */
static bool find_references(batch *b, bentry **failed)
{
    b->rewritable = calloc(b->doc.count ? b->doc.count : 1, 1);
    if (!b->rewritable)
        return false;
    for (size_t i = 0; i < b->count; i++) {
        bentry *e = &b->entries[i];
        uint32_t res = fj_get(&b->doc, e->entry, "resource");
        if (res == UINT32_MAX || !e->is_write)
            continue;
        walk_ctx w = {b, NULL, 0, 0};
        fw_walk_resource(b->q->app->schema, &b->doc, res, mark_uri_like, &w);
        fw_walk_references(b->q->app->schema, &b->doc, res, mark_reference, &w);
        bool ok = true;
        for (size_t k = 0; k < w.conditional_count && ok; k++)
            ok = resolve_conditional_reference(b, e, w.conditional[k]);
        free(w.conditional);
        if (!ok) {
            *failed = e;
            return false;
        }
    }
    return true;
}

/* ---- reading the entries ---- */

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
    e->url = strndup(fj_str(d, u), d->nodes[u].len);
    char *path = e->url ? malloc(strlen(e->url) + 2) : NULL;
    if (!path) {
        entry_fail(e, 503, "transient", "%s", "out of memory");
        return false;
    }
    if (d->nodes[m].len >= sizeof e->method) {
        char *method = strndup(fj_str(d, m), d->nodes[m].len);
        entry_fail_at(e, 400, "invalid", "request.method", "request.method %s is not an HTTP method FHIR uses",
                      method ? method : "");
        free(method);
        free(path);
        return false;
    }
    snprintf(e->method, sizeof e->method, "%.*s", (int)d->nodes[m].len, fj_str(d, m));
    size_t plen = strcspn(e->url, "?");
    path[0] = '/';
    memcpy(path + 1, e->url, plen);
    path[plen + 1] = '\0';
    e->query = e->url[plen] == '?' ? e->url + plen + 1 : NULL;
    rt_parse(b->q->app->schema, e->method, path, &e->route);
    free(path);
    rt_interaction i = e->route.interaction;
    bool conditional = (i == RT_UPDATE || i == RT_DELETE) && !e->route.id[0];
    bool ok = i == RT_READ || i == RT_VREAD || i == RT_CREATE || i == RT_UPDATE || i == RT_DELETE;
    if (!ok) {
        entry_fail(e, e->route.error_status ? e->route.error_status : 400, OO_NOT_SUPPORTED,
                   "%s: only read, vread, create, update and delete (also conditional) are supported in a Bundle",
                   e->url);
        return false;
    }
    if (conditional && !e->query) {
        entry_fail(e, 400, "invalid", "%s: a conditional update or delete needs search parameters", e->url);
        return false;
    }
    e->type = e->route.type;
    snprintf(e->id, sizeof e->id, "%s", e->route.id);
    e->is_write = i == RT_CREATE || i == RT_UPDATE || i == RT_DELETE;
    return true;
}

/* A string member of the entry's request, or NULL. Points into the doc (not NUL-terminated: copy it). */
static char *request_member(const batch *b, const bentry *e, const char *name)
{
    uint32_t req = fj_get(&b->doc, e->entry, "request");
    uint32_t v = req != UINT32_MAX ? fj_get(&b->doc, req, name) : UINT32_MAX;
    if (v == UINT32_MAX || b->doc.nodes[v].type != FJ_STRING)
        return NULL;
    return strndup(fj_str(&b->doc, v), b->doc.nodes[v].len);
}

/*
 * Authorisation of one entry against the stored resource (PUT/DELETE/GET),
 * through the one enforcement point; the version decided on is kept in
 * found (found_status ST_OK or ST_GONE). True when allowed; else the entry
 * is failed with the same 404 for "missing" and "not yours".
 */
static bool entry_allowed(batch *b, bentry *e, az_action action, st_resource *found, st_status *found_status)
{
    rq *q = b->q;
    char where[48];
    snprintf(where, sizeof where, "Bundle.entry[%d]", e->index);
    *found_status = ST_NOT_FOUND;
    if (!strcmp(e->type->name, "AuditEvent") && action != AZ_READ) { /* written by the gateway only */
        entry_fail(e, 405, OO_NOT_SUPPORTED, "%s: AuditEvents are written by the gateway itself", e->url);
        return false;
    }
    if (rest_decide(q, action, e->type->name, NULL, where) != AZ_ALLOW) {
        entry_fail(e, 403, "forbidden", "this organisation has no access to %s resources", e->type->name);
        return false;
    }
    if (action == AZ_CREATE)
        return true;
    st_error err;
    *found_status = st_read(q->app->opt.store, e->type->name, e->id, found, &err);
    if (*found_status == ST_NOT_FOUND && action == AZ_READ)
        return true; /* answered 404 by the read itself */
    if (*found_status != ST_OK && *found_status != ST_GONE) {
        rest_record_decision(q, action, e->type->name, AZ_HIDDEN, 404, "no such resource", where);
        entry_fail(e, 404, OO_NOT_FOUND, "%s is not known", e->url);
        *found_status = ST_NOT_FOUND;
        return false;
    }
    az_decision d = rest_decide(q, action, found->type, found, where);
    if (d != AZ_ALLOW) {
        entry_fail(e, d == AZ_HIDDEN ? 404 : 403, d == AZ_HIDDEN ? OO_NOT_FOUND : "forbidden",
                   d == AZ_HIDDEN ? "%s is not known" : "this organisation may not change %s", e->url);
        st_resource_free(found);
        *found_status = ST_NOT_FOUND;
        return false;
    }
    return true;
}

/*
 * A conditional PUT or DELETE: which resource its query names. PUT with no
 * match creates (conditionally, at commit); DELETE with none does nothing.
 * False with the entry failed (several matches: 412).
 */
static bool resolve_conditional_entry(batch *b, bentry *e)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    st_list found;
    int status = rest_conditional_search(b->q, e->type, e->query, &found, &issues);
    if (status) {
        entry_fail_issues(e, status, &issues);
        oo_list_free(&issues);
        return false;
    }
    oo_list_free(&issues);
    bool ok = true;
    if (found.count > 1) {
        entry_fail(e, 412, "multiple-matches", "%s matches more than one resource", e->url);
        ok = false;
    } else if (found.count == 1) {
        snprintf(e->id, sizeof e->id, "%s", found.items[0].id);
        e->pinned = found.items[0].version;
    } else if (e->route.interaction == RT_UPDATE) {
        rest_new_id(e->id);
        e->conditional_create = true;
    } else {
        e->is_write = false; /* nothing to delete */
        entry_fail(e, 204, OO_INFORMATIONAL, "%s matches nothing: nothing was deleted", e->url);
    }
    st_list_free(&found);
    return ok;
}

/* ifMatch of a PUT/DELETE entry; false with the entry failed (malformed: 400). */
static bool read_if_match(batch *b, bentry *e)
{
    char *if_match = request_member(b, e, "ifMatch");
    if (!if_match)
        return true;
    int64_t version;
    bool ok = rest_if_match(if_match, &version);
    if (!ok)
        entry_fail(e, 400, "invalid", "request.ifMatch must be an ETag such as W/\"3\", not %s", if_match);
    else if (e->pinned && e->pinned != version)
        e->pinned = REST_NO_VERSION; /* a conditional match and ifMatch that disagree: nothing matches */
    else
        e->pinned = version;
    free(if_match);
    return ok;
}

/* Prepare a write entry's st_op; false with the entry marked failed. */
static bool prepare_entry(batch *b, bentry *e)
{
    rq *q = b->q;
    rest_write *w = &e->w;
    st_op_kind kind = e->route.interaction == RT_CREATE || e->conditional_create ? ST_OP_CREATE
                      : e->route.interaction == RT_UPDATE                        ? ST_OP_UPDATE
                                                                                 : ST_OP_DELETE;
    st_resource found;
    st_status found_status = ST_NOT_FOUND;
    az_action action = kind == ST_OP_CREATE ? AZ_CREATE : kind == ST_OP_UPDATE ? AZ_UPDATE : AZ_DELETE;
    if (!read_if_match(b, e) || !entry_allowed(b, e, action, &found, &found_status))
        return false;
    if (found_status == ST_OK || found_status == ST_GONE) {
        w->current = found; /* the write is pinned to the version decided on */
        w->has_current = true;
        if (!e->pinned)
            e->pinned = found.version;
    }
    w->type = e->type->name;
    w->docp = &b->doc;
    w->hooks = &b->hooks;
    w->names_moved = &b->names_moved;
    /* record_write_result answers with the stored JSON only for return=representation, and a caller's answer
     * (rest_transaction_run_validated) only for the type it keeps: for the others the commit thread copies nothing */
    w->no_stored = b->answer ? !b->keep_type || strcmp(b->keep_type, e->type->name)
                             : q->prefer != RT_RETURN_REPRESENTATION;
    snprintf(w->id, sizeof w->id, "%s", e->id);
    if (kind != ST_OP_DELETE) {
        uint32_t res = fj_get(&b->doc, e->entry, "resource");
        uint32_t rt = res != UINT32_MAX ? fj_get(&b->doc, res, "resourceType") : UINT32_MAX;
        if (rt == UINT32_MAX || !fj_str_eq(&b->doc, rt, e->type->name)) {
            entry_fail(e, 400, "invalid", "the entry's resource must be a %s", e->type->name);
            return false;
        }
        uint32_t id = fj_get(&b->doc, res, "id");
        if (e->route.interaction == RT_UPDATE && e->route.id[0] &&
            (id == UINT32_MAX || !fj_str_eq(&b->doc, id, e->route.id))) {
            entry_fail(e, 400, "invalid", "the resource's id must be the id in request.url (%s)", e->route.id);
            return false;
        }
        w->root = res;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = rest_write_prepare(q, w, kind, w->has_current ? &w->current : NULL, &issues);
    bool ok = status == 0;
    w->op.expected_version = e->pinned;
    if (ok && kind == ST_OP_CREATE) {
        char *cond = e->conditional_create && e->route.interaction == RT_UPDATE ? strdup(e->query)
                                                                                : request_member(b, e, "ifNoneExist");
        if (cond) {
            ok = rest_write_if_none_exist(q, w, cond, &issues);
            e->conditional_create = ok;
        }
        free(cond);
    }
    if (!ok) {
        status = status ? status : 400;
        if (issues.count)
            entry_fail_issues(e, status, &issues);
        else
            entry_fail(e, status, "invalid", "%s", "the entry cannot be written");
    }
    oo_list_free(&issues);
    /* search rows must name the rewritten targets too (they point into the name, so a match moves them along) */
    for (size_t i = 0; ok && i < w->row_count; i++) {
        st_index_row *row = &w->rows[i];
        ref_name *n;
        if (row->kind == ST_KIND_REFERENCE && row->v.reference.url &&
            (n = find_name(b, row->v.reference.url, strlen(row->v.reference.url)))) {
            /* the type, which needs its own NUL, is the schema's name */
            const fs_type *tt = fs_type_by_name(q->app->schema, n->target, n->id_at - 1);
            row->v.reference.type = tt ? tt->name : NULL;
            row->v.reference.id = n->target + n->id_at;
            row->v.reference.url = NULL;
        }
    }
    if (ok && e->conditional_create && e->name) {
        w->op.on_applied = point_name_at_match;
        w->op.on_applied_arg = e->name;
    }
    return ok;
}

/* The ids of POST entries (and conditional PUTs that create), and the urn:uuid: names that map to them. */
static bool assign_ids(batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        bentry *e = &b->entries[i];
        if (!e->is_write || e->outcome)
            continue;
        if (e->route.interaction == RT_CREATE)
            rest_new_id(e->id);
        uint32_t full = fj_get(&b->doc, e->entry, "fullUrl");
        if (e->route.interaction == RT_DELETE || full == UINT32_MAX || b->doc.nodes[full].len <= 9 ||
            memcmp(fj_str(&b->doc, full), "urn:uuid:", 9))
            continue;
        e->name = add_name(b, fj_str(&b->doc, full), b->doc.nodes[full].len, e->type->name, e->id);
        if (!e->name)
            return false;
    }
    return true;
}

/* ---- reads (GET entries) ---- */

/* A GET entry, answered from the store: read or vread, with ifNoneMatch / ifModifiedSince. */
static void read_entry(batch *b, bentry *e)
{
    st_resource r;
    st_status s = ST_NOT_FOUND;
    if (!entry_allowed(b, e, AZ_READ, &r, &s))
        return;
    if (s == ST_OK && e->route.interaction == RT_VREAD) {
        /* allowed on the current version; now the version asked for */
        st_resource_free(&r);
        st_error err;
        s = st_vread(b->q->app->opt.store, e->type->name, e->id, strtoll(e->route.version, NULL, 10), &r, &err);
        if (s != ST_OK && s != ST_GONE)
            s = ST_NOT_FOUND;
    }
    if (s != ST_OK) {
        if (s == ST_GONE)
            st_resource_free(&r);
        entry_fail(e, s == ST_GONE ? 410 : 404, s == ST_GONE ? "deleted" : OO_NOT_FOUND, "%s is not available", e->url);
        return;
    }
    char *if_none_match = request_member(b, e, "ifNoneMatch");
    char *if_modified_since = request_member(b, e, "ifModifiedSince");
    int64_t since_ms, until_ms;
    bool since_ok = if_modified_since &&
                    sq_date_range(if_modified_since, strlen(if_modified_since), &since_ms, &until_ms);
    bool unchanged = rest_not_modified(if_none_match, since_ok ? &since_ms : NULL, &r);
    free(if_none_match);
    free(if_modified_since);
    e->status = unchanged ? 304 : 200;
    snprintf(e->etag, sizeof e->etag, "W/\\\"%lld\\\"", (long long)r.version);
    snprintf(e->last_modified, sizeof e->last_modified, "%s", r.last_updated);
    if (!unchanged)
        e->resource = strndup(r.json, r.json_len);
    st_resource_free(&r);
}

static void record_write_result(batch *b, bentry *e, const st_op_result *r)
{
    rq *q = b->q;
    if (r->status != ST_OK && r->status != ST_EXISTS) {
        entry_fail(e, rest_status_of(r->status), rest_code_of(r->status), "%s",
                   r->message[0] ? r->message : st_status_name(r->status));
        return;
    }
    bool created = e->w.op.kind == ST_OP_CREATE ? r->status == ST_OK : r->created;
    e->status = e->w.op.kind == ST_OP_DELETE ? 204 : created ? 201 : 200;
    const char *id = r->status == ST_EXISTS ? r->id : e->w.id;
    fj_buf location = {0};
    fj_buf_printf(&location, "%s/%s/%s/_history/%lld", q->app->opt.base_url, e->type->name, id, (long long)r->version);
    free(e->location);
    e->location = fj_buf_take(&location, NULL);
    snprintf(e->etag, sizeof e->etag, "W/\\\"%lld\\\"", (long long)r->version);
    snprintf(e->last_modified, sizeof e->last_modified, "%s", r->last_updated);
    /* a caller's answer has the stored JSON through rest_txn_written.stored: it stays with the entry */
    if (!b->answer && q->prefer == RT_RETURN_REPRESENTATION && r->status == ST_OK && e->w.stored) {
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
        if (e->location) {
            fj_buf_puts(&out, ",\"location\":");
            fj_buf_string(&out, e->location, strlen(e->location));
        }
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

/*
 * The version entry e wrote as st_read would give it: the body rendered on the commit thread (kept when its type is
 * the caller's keep_type), the owner (a create's, or the one the resource keeps), the access tags written with it.
 * Borrows from e; false when nothing was kept (another type, a matched conditional create, out of memory).
 */
static bool written_resource(const bentry *e, const st_op_result *r, st_resource *out)
{
    const rest_write *w = &e->w;
    if (r->status != ST_OK || !w->stored || w->op.kind == ST_OP_DELETE)
        return false;
    *out = (st_resource){.type = e->type->name,
                         .id = w->id,
                         .version = r->version,
                         .last_updated_ms = r->last_updated_ms,
                         .method = w->op.kind == ST_OP_CREATE ? ST_METHOD_CREATE : ST_METHOD_UPDATE,
                         .json = w->stored,
                         .json_len = w->stored_len,
                         .owner = w->has_current ? w->current.owner
                                  : w->op.owner  ? w->op.owner
                                                 : "",
                         .access_tags = w->tags,
                         .access_tag_count = w->tag_count};
    memcpy(out->last_updated, r->last_updated, sizeof out->last_updated);
    return true;
}

/* rest_transaction_run_validated's caller answers, from what each write entry did (in the Bundle's order). */
static void answer_written(batch *b)
{
    size_t n = b->count ? b->count : 1;
    rest_txn_written *w = calloc(n, sizeof *w);
    st_resource *stored = b->keep_type ? calloc(n, sizeof *stored) : NULL;
    if (!w || (b->keep_type && !stored)) {
        free(w);
        free(stored);
        rq_respond_outcome(b->q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return;
    }
    for (size_t op = 0; op < b->op_count; op++) {
        const bentry *e = b->op_entries[op];
        const st_op_result *r = &b->results[op];
        bool kept = stored && written_resource(e, r, &stored[e->index]);
        w[e->index] = (rest_txn_written){e->status,  e->type->name,      r->status == ST_EXISTS ? r->id : e->w.id,
                                         r->version, r->last_updated_ms, kept ? &stored[e->index] : NULL};
    }
    b->answer(b->q, b->answer_arg, w, b->count);
    free(stored);
    free(w);
}

/* On the request's worker (posted by transaction_done): the answer, from the results it kept. */
static void transaction_answer(void *arg)
{
    batch *b = arg;
    rq *q = b->q;
    q->after_own_commit = true;
    if (q->audit.failed) { /* rolled back with its audit entries */
        rq_respond_outcome(q, q->audit.failed_status, OO_ERROR, OO_EXCEPTION, NULL,
                           "the transaction could not be recorded in the audit trail, so it was not applied; try "
                           "again");
    } else if (b->txn_status != ST_OK) {
        bentry *failed = b->failed_op < b->op_count ? b->op_entries[b->failed_op] : NULL;
        const st_op_result *r = &b->results[b->failed_op < b->op_count ? b->failed_op : 0];
        char expr[64];
        snprintf(expr, sizeof expr, "Bundle.entry[%d]", failed ? failed->index : 0);
        const char *why = r->status == ST_VERSION_CONFLICT ? "the version is not the one ifMatch names"
                          : r->message[0]                  ? r->message
                                                           : st_status_name(r->status);
        char url[RT_ECHO_SIZE];
        rq_respond_outcome(q, rest_status_of(r->status), OO_ERROR, rest_code_of(r->status), expr,
                           "the transaction was rolled back: entry %d (%s %s) failed: %s", failed ? failed->index : -1,
                           failed ? failed->method : "", rt_echo(failed ? failed->url : NULL, url), why);
    } else {
        for (size_t op = 0; op < b->op_count; op++)
            record_write_result(b, b->op_entries[op], &b->results[op]);
        if (b->answer) {
            answer_written(b);
        } else {
            for (size_t i = 0; i < b->count; i++)
                if (!b->entries[i].is_write && !b->entries[i].status)
                    read_entry(b, &b->entries[i]); /* reads come last and see the transaction's writes */
            respond_entries(b);
        }
    }
    batch_free(b);
    rq_finish(q);
}

/*
 * The store's completion callback, on its commit thread: copy the results
 * (they live during this call only; the array was allocated before the
 * submit, so nothing here can fail) and hand the answer to the worker,
 * where the entries are rendered and the GET entries read.
 */
static void transaction_done(void *arg, const st_txn_result *result)
{
    batch *b = arg;
    b->txn_status = result->status;
    b->failed_op = result->failed_op;
    memcpy(b->results, result->ops, b->op_count * sizeof *b->results);
    b->q->audit.failed = !rest_audit_committed(result, b->op_count, &b->q->audit.failed_status);
    srv_post(b->q->req, transaction_answer, b);
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
    /* where inside the entry, when the entry's own issue says (request.method, resource.gender, ...) */
    json_object *where = issue ? json_object_object_get(issue, "expression") : NULL;
    json_object *at = json_object_is_type(where, json_type_array) ? json_object_array_get_idx(where, 0) : NULL;
    char url[RT_ECHO_SIZE];
    oo_add(&issues, OO_ERROR, code, at ? json_object_get_string(at) : expr, 0, 0,
           "the transaction was not applied: entry %d (%s %s): %s", e->index, e->method, rt_echo(e->url, url), msg);
    rq_respond_issues(q, e->status >= 400 ? e->status : 400, &issues);
    json_object_put(oo);
    oo_list_free(&issues);
}

/* Two entries that write the same resource: the spec makes that an error. */
static const bentry *touched_twice(const batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        const bentry *e = &b->entries[i];
        if (!e->is_write || e->route.interaction == RT_CREATE)
            continue;
        for (size_t k = 0; k < i; k++) {
            const bentry *o = &b->entries[k];
            if (o->is_write && o->type == e->type && !strcmp(o->id, e->id))
                return e;
        }
    }
    return NULL;
}

/* Processing order (R4): DELETE, then POST (conditional creates first: later entries may name them), then PUT. */
static int processing_rank(const bentry *e)
{
    if (e->route.interaction == RT_DELETE)
        return 0;
    if (e->route.interaction == RT_CREATE)
        return e->conditional_create ? 1 : 2;
    return e->conditional_create ? 1 : 3;
}

static bool run_transaction(batch *b)
{
    bentry *failed = NULL;
    for (size_t i = 0; i < b->count && !failed; i++) {
        bentry *e = &b->entries[i];
        if (e->is_write && e->query && e->route.interaction != RT_CREATE && !resolve_conditional_entry(b, e))
            failed = e;
        /* POST's ifNoneExist marks it before ordering */
        char *cond = e->route.interaction == RT_CREATE ? request_member(b, e, "ifNoneExist") : NULL;
        e->conditional_create |= cond != NULL;
        free(cond);
    }
    const bentry *twice = failed ? NULL : touched_twice(b);
    if (twice) {
        failed = (bentry *)twice;
        entry_fail(failed, 400, "invalid", "%s: the transaction already changes this resource", failed->url);
    }
    if (failed || !assign_ids(b) || !find_references(b, &failed)) {
        if (failed)
            transaction_refuse(b, failed);
        else
            rq_respond_outcome(b->q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return false;
    }
    b->hooks = (fj_write_hooks){NULL, replace_names, b};
    b->ops = calloc(b->count ? b->count : 1, sizeof *b->ops);
    b->op_entries = calloc(b->count ? b->count : 1, sizeof *b->op_entries);
    for (int rank = 0; rank <= 3; rank++)
        for (size_t i = 0; i < b->count; i++) {
            bentry *e = &b->entries[i];
            if (!e->is_write || processing_rank(e) != rank)
                continue;
            if (!prepare_entry(b, e)) {
                transaction_refuse(b, e);
                return false;
            }
            b->op_entries[b->op_count] = e;
            b->ops[b->op_count++] = e->w.op;
        }
    if (!b->op_count) { /* reads only */
        for (size_t i = 0; i < b->count; i++)
            if (!b->entries[i].status)
                read_entry(b, &b->entries[i]);
        respond_entries(b);
        return false;
    }
    b->results = calloc(b->op_count, sizeof *b->results);
    /* every write's audit entry (and the decisions' before it) commits in the transaction itself */
    const rest_write **ws = calloc(b->op_count, sizeof *ws);
    for (size_t i = 0; ws && i < b->op_count; i++) {
        char where[48];
        snprintf(where, sizeof where, "Bundle.entry[%d]", b->op_entries[i]->index);
        ws[i] = &b->op_entries[i]->w;
        rest_audit_note_write(b->q, &b->op_entries[i]->w, b->ops[i].kind, where);
    }
    size_t total = 0;
    st_op *ops = ws ? rest_audit_attach(b->q, b->ops, ws, b->op_count, NULL, rest_status_of, &total) : NULL;
    free(ws);
    st_status s = b->results && ops ? st_submit(b->q->app->opt.store, ops, total, transaction_done, b) : ST_BUSY;
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

/* On the request's worker, once every write has committed: the entries' answers and the Bundle. */
static void batch_answer(void *arg)
{
    batch *b = arg;
    rq *q = b->q;
    q->after_own_commit = true;
    for (size_t i = 0; i < b->count; i++)
        if (b->entries[i].has_result)
            record_write_result(b, &b->entries[i], &b->entries[i].result);
    respond_entries(b);
    batch_free(b);
    rq_finish(q);
}

/* One count done; whoever reaches zero answers: the submitter at once (it is the worker), the commit
 * thread by posting to the worker. */
static void batch_finish_one(batch *b, bool on_worker)
{
    if (atomic_fetch_sub(&b->pending, 1) != 1)
        return;
    if (on_worker)
        batch_answer(b);
    else
        srv_post(b->q->req, batch_answer, b);
}

/* The store's completion callback for one entry, on its commit thread: keep the result for the worker. */
static void batch_entry_done(void *arg, const st_txn_result *result)
{
    batch_write *bw = arg;
    batch *b = bw->b;
    bw->e->result = result->ops[0];
    int status;
    if (!rest_audit_committed(result, 1, &status)) { /* rolled back with its audit entry: not written */
        memset(&bw->e->result, 0, sizeof bw->e->result);
        bw->e->result.status = status == 503 ? ST_BUSY : ST_IO;
        snprintf(bw->e->result.message, sizeof bw->e->result.message,
                 "the write could not be recorded in the audit trail, so it was not made");
    }
    bw->e->has_result = true;
    free(bw);
    batch_finish_one(b, false);
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
        if (e->query && e->route.interaction != RT_CREATE && !resolve_conditional_entry(b, e))
            continue;
        if (!e->is_write) /* a conditional delete that matched nothing */
            continue;
        if (e->route.interaction == RT_CREATE)
            rest_new_id(e->id);
        if (!prepare_entry(b, e))
            continue;
        batch_write *bw = malloc(sizeof *bw);
        if (!bw) {
            entry_fail(e, 503, "transient", "%s", "out of memory");
            continue;
        }
        *bw = (batch_write){b, e};
        atomic_fetch_add(&b->pending, 1);
        char where[48];
        snprintf(where, sizeof where, "Bundle.entry[%d]", e->index);
        rest_audit_note_write(b->q, &e->w, e->w.op.kind, where);
        const rest_write *ws[1] = {&e->w};
        size_t total = 0;
        st_op *ops = rest_audit_attach(b->q, &e->w.op, ws, 1, where, rest_status_of, &total);
        if (!ops || st_submit(b->q->app->opt.store, ops, total, batch_entry_done, bw) != ST_OK) {
            atomic_fetch_sub(&b->pending, 1);
            free(bw);
            entry_fail(e, 503, "transient", "%s", "the store cannot take the write now");
        }
    }
    batch_finish_one(b, true); /* the submitter's own count: whoever reaches zero answers */
    return true;
}

/* ---- entry point ---- */

/* The entry index an issue's expression names ("Bundle.entry[3].resource..."), or -1. */
static int issue_entry(const oo_issue *issue)
{
    const char *x = issue->expression;
    if (!x || strncmp(x, "Bundle.entry[", 13))
        return -1;
    return atoi(x + 13);
}

/*
 * A batch's entries are independent: validation errors inside an entry fail
 * that entry (422) and the others go on. Errors of the Bundle itself fail
 * the request. False after answering.
 */
static bool spread_batch_issues(rq *q, batch *b, const oo_list *issues)
{
    for (size_t k = 0; k < issues->count; k++)
        if (issues->items[k].severity <= OO_ERROR && issue_entry(&issues->items[k]) < 0) {
            rq_respond_issues(q, 422, issues);
            return false;
        }
    for (size_t i = 0; i < b->count; i++) {
        oo_list mine;
        oo_list_init(&mine, 0);
        for (size_t k = 0; k < issues->count; k++) {
            const oo_issue *it = &issues->items[k];
            if (it->severity <= OO_ERROR && issue_entry(it) == b->entries[i].index)
                oo_add(&mine, it->severity, it->code, it->expression, it->line, it->column, "%s", it->message);
        }
        if (mine.count)
            entry_fail_issues(&b->entries[i], 422, &mine);
        oo_list_free(&mine);
    }
    return true;
}

/* A parsed Bundle (b->doc): a batch or transaction, validated unless b->validated. False after answering. */
static bool check_bundle(rq *q, batch *b)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    uint32_t rt = fj_get(&b->doc, 0, "resourceType"), type = fj_get(&b->doc, 0, "type");
    if (rt == UINT32_MAX || !fj_str_eq(&b->doc, rt, "Bundle") || type == UINT32_MAX ||
        (!fj_str_eq(&b->doc, type, "batch") && !fj_str_eq(&b->doc, type, "transaction"))) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL,
                           "POST to the base URL takes a batch or transaction Bundle");
        oo_list_free(&issues);
        return false;
    }
    b->transaction = fj_str_eq(&b->doc, type, "transaction");
    fv_options opts = {0};
    opts.profiles = q->app->opt.profiles;
    if (!b->validated && fv_validate_doc(&b->doc, &opts, &issues) && b->transaction) {
        rq_respond_issues(q, 422, &issues);
        oo_list_free(&issues);
        return false;
    }
    b->validation = issues;
    return true;
}

/* Parses and validates b->body (len bytes): a batch or transaction Bundle. False after answering. */
static bool parse_bundle_text(rq *q, batch *b, size_t len)
{
    fj_error err;
    oo_list issues;
    oo_list_init(&issues, 0);
    if (!fj_parse(b->body, len, NULL, &b->doc, &err)) {
        oo_add(&issues, OO_FATAL, OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s", err.message);
        rq_respond_issues(q, 400, &issues);
        oo_list_free(&issues);
        return false;
    }
    oo_list_free(&issues);
    return check_bundle(q, b);
}

static bool parse_bundle(rq *q, batch *b)
{
    if (!rt_content_type_ok(srv_req_header(q->req, "Content-Type"))) {
        rq_respond_outcome(q, 415, OO_ERROR, OO_NOT_SUPPORTED, NULL, "send the Bundle as application/fhir+json");
        return false;
    }
    size_t len;
    const unsigned char *body = srv_req_body(q->req, &len);
    if (!body || !len) {
        rq_respond_outcome(q, 400, OO_ERROR, "required", NULL,
                           "POST to the base URL needs a batch or transaction Bundle");
        return false;
    }
    b->body = malloc(len + 1);
    if (!b->body) {
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return false;
    }
    memcpy(b->body, body, len);
    b->body[len] = '\0';
    return parse_bundle_text(q, b, len);
}

/* The entries of a parsed Bundle, then the batch or transaction run. */
static bool run_parsed(rq *q, batch *b)
{
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
    bool go = b->transaction || spread_batch_issues(q, b, &b->validation);
    bool handed_over = go && (b->transaction ? run_transaction(b) : run_batch(b));
    if (!handed_over)
        batch_free(b);
    return handed_over;
}

bool rest_batch(rq *q)
{
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return false;
    }
    b->q = q;
    if (!parse_bundle(q, b)) {
        batch_free(b);
        return false;
    }
    return run_parsed(q, b);
}

bool rest_transaction_run_validated(rq *q, char *text, fj_doc *doc, const char *keep_type, rest_txn_answer answer,
                                    void *arg)
{
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        free(text);
        fj_doc_free(doc);
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return false;
    }
    b->q = q;
    b->validated = true;
    b->body = text;
    b->answer = answer;
    b->answer_arg = arg;
    b->keep_type = keep_type;
    b->doc = *doc;
    memset(doc, 0, sizeof *doc);
    if (!check_bundle(q, b) || !b->transaction) {
        if (q->req)
            rq_respond_outcome(q, 500, OO_ERROR, OO_EXCEPTION, NULL, "the gateway built no transaction");
        batch_free(b);
        return false;
    }
    return run_parsed(q, b);
}
