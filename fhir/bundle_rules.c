/*
 * fhir/bundle_rules.c — the Bundle-type rules (see bundle_rules.h).
 *
 * Three passes over the Bundle's JSON, none allocating: the entries
 * (fullUrl, id, PUT), the links, and for a searchset its search modes.
 * Severities are the HL7 Java validator's (BundleValidator.java): its
 * `rule` is an error here, `warning` a warning, `hint` information.
 */
#include "fhir/bundle_rules.h"

#include <stdbool.h>
#include <string.h>

#include "fhir/reference.h"

#define NO_NODE UINT32_MAX
#define MAX_SEARCH_TYPES 16
#define BUSINESS_RULE "business-rule"

typedef struct br_ctx {
    const fs_schema *s;
    fj_doc *doc;
    rp_reporter *rep;
    uint32_t bundle, entries, links; /* the Bundle, its entry and link arrays (NO_NODE when absent) */
} br_ctx;

/* A string member of an object, or NO_NODE. */
static uint32_t str_member(const br_ctx *c, uint32_t obj, const char *key)
{
    if (obj == NO_NODE || c->doc->nodes[obj].type != FJ_OBJECT)
        return NO_NODE;
    uint32_t v = fj_get(c->doc, obj, key);
    return v != NO_NODE && c->doc->nodes[v].type == FJ_STRING ? v : NO_NODE;
}

static uint32_t obj_member(const br_ctx *c, uint32_t obj, const char *key)
{
    if (obj == NO_NODE || c->doc->nodes[obj].type != FJ_OBJECT)
        return NO_NODE;
    uint32_t v = fj_get(c->doc, obj, key);
    return v != NO_NODE && c->doc->nodes[v].type == FJ_OBJECT ? v : NO_NODE;
}

static bool is(const br_ctx *c, uint32_t node, const char *s)
{
    return node != NO_NODE && fj_str_eq(c->doc, node, s);
}

static bool equals(const br_ctx *c, uint32_t node, const char *s, size_t len)
{
    return node != NO_NODE && c->doc->nodes[node].len == len && !memcmp(fj_str(c->doc, node), s, len);
}

static bool same(const br_ctx *c, uint32_t a, uint32_t b)
{
    return equals(c, b, fj_str(c->doc, a), c->doc->nodes[a].len);
}

#define TEXT(c, node) (int)(c)->doc->nodes[node].len, fj_str((c)->doc, node)

static bool known_resource(const br_ctx *c, const char *name, size_t len)
{
    const fs_type *t = fs_type_by_name(c->s, name, len);
    return t && t->kind == FS_RESOURCE && !t->is_abstract;
}

/* ---- entries ------------------------------------------------------------------ */

/*
 * A fullUrl that looks like a RESTful server URL ("http://x/Patient/1")
 * names the resource: the same type (error), the same id (a warning: three
 * official Bundles, Bundle-lri-example among them, disagree so; the reference
 * makes it an error since 2023), and then the resource has an id (error,
 * BUNDLE_ENTRY_URL_MATCHES_NO_ID). A urn: names nothing.
 */
static void check_restful_full_url(br_ctx *c, uint32_t u, uint32_t res, const char *type, size_t tlen)
{
    const char *url = fj_str(c->doc, u);
    size_t len = c->doc->nodes[u].len;
    fr_parts p;
    if (!fr_is_absolute(url, len) || !strncmp(url, "urn:", 4) || !fr_parse(url, len, &p) ||
        !known_resource(c, p.type, p.type_len))
        return;
    uint32_t id = str_member(c, res, "id");
    size_t at = rp_push(c->rep, ".fullUrl");
    if (p.type_len != tlen || memcmp(p.type, type, tlen))
        rp_report(c->rep, u, OO_ERROR, OO_VALUE, "the fullUrl names a %.*s but the entry holds a %.*s", (int)p.type_len,
                  p.type, (int)tlen, type);
    else if (id == NO_NODE)
        rp_report(c->rep, u, OO_ERROR, OO_VALUE,
                  "the fullUrl '%.*s' looks like a RESTful server URL, but the resource has no id", (int)len, url);
    else if (!equals(c, id, p.id, p.id_len))
        rp_report(c->rep, u, OO_WARNING, OO_VALUE, "the fullUrl names the id '%.*s' but the resource's id is '%.*s'",
                  (int)p.id_len, p.id, TEXT(c, id));
    rp_pop(c->rep, at);
}

/*
 * A canonical resource whose url is its fullUrl: then that url is a RESTful
 * one ending in Type/id with the resource's id (BUNDLE_BUNDLE_ENTRY_MISMATCHIDURL;
 * the old v2 and v3 code system URLs excepted, as the reference has them).
 * The reference also limits the characters of the base; any http(s) base does here.
 */
static void check_canonical_full_url(br_ctx *c, uint32_t u, uint32_t res, const char *type, size_t tlen)
{
    uint32_t url = str_member(c, res, "url");
    if (url == NO_NODE || !same(c, u, url))
        return;
    const char *s = fj_str(c->doc, url);
    size_t len = c->doc->nodes[url].len;
    if (!strncmp(s, "http://hl7.org/fhir/v3/", 23) || !strncmp(s, "http://hl7.org/fhir/v2/", 23))
        return;
    fr_parts p;
    bool restful = (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) && fr_parse(s, len, &p) && !p.version &&
                   known_resource(c, p.type, p.type_len);
    uint32_t id = str_member(c, res, "id");
    if (restful && id != NO_NODE && equals(c, id, p.id, p.id_len))
        return;
    size_t at = rp_push(c->rep, ".fullUrl");
    rp_report(c->rep, u, OO_ERROR, OO_INVALID,
              "the %.*s's canonical url is its fullUrl '%.*s', so it must be a RESTful URL ending in /%.*s/%.*s",
              (int)tlen, type, (int)len, s, (int)tlen, type, id != NO_NODE ? (int)c->doc->nodes[id].len : 4,
              id != NO_NODE ? fj_str(c->doc, id) : "[id]");
    rp_pop(c->rep, at);
}

/* A transaction or batch PUT Type/id carries a resource of that type with that id (http.html#update). */
static void check_put(br_ctx *c, uint32_t entry, uint32_t res, const char *type, size_t tlen)
{
    uint32_t req = obj_member(c, entry, "request");
    uint32_t url = is(c, str_member(c, req, "method"), "PUT") ? str_member(c, req, "url") : NO_NODE;
    fr_parts p;
    if (url == NO_NODE || memchr(fj_str(c->doc, url), '?', c->doc->nodes[url].len) ||
        !fr_parse(fj_str(c->doc, url), c->doc->nodes[url].len, &p) || p.version)
        return;
    uint32_t id = str_member(c, res, "id");
    size_t at = rp_push(c->rep, ".request.url");
    if (p.type_len != tlen || memcmp(p.type, type, tlen))
        rp_report(c->rep, url, OO_ERROR, OO_VALUE, "PUT %.*s carries a %.*s", TEXT(c, url), (int)tlen, type);
    else if (id == NO_NODE)
        rp_report(c->rep, url, OO_ERROR, OO_VALUE,
                  "PUT %.*s: the resource's id must be '%.*s' (http.html#update), found none", TEXT(c, url),
                  (int)p.id_len, p.id);
    else if (!equals(c, id, p.id, p.id_len))
        rp_report(c->rep, url, OO_ERROR, OO_VALUE,
                  "PUT %.*s: the resource's id must be '%.*s' (http.html#update), found '%.*s'", TEXT(c, url),
                  (int)p.id_len, p.id, TEXT(c, id));
    rp_pop(c->rep, at);
}

/*
 * Ids: the reference asks for none beyond the RESTful fullUrl rule above and
 * the searchset rules below (its IdStatus is OPTIONAL for every Bundle entry),
 * and forbids none (POST would be PROHIBITED, but it keeps it OPTIONAL).
 * fullUrl: documents and messages resolve their references by it, so every
 * entry has one (documents.html, messaging.html); the reference's newer rule
 * that all but transaction and batch entries have one is R5's bdl-15, which
 * the official R4 searchset Bundle-bundle-search-warning does not meet.
 */
static void check_entries(br_ctx *c, uint32_t type)
{
    bool needs_full_url = is(c, type, "document") || is(c, type, "message");
    bool is_transaction = is(c, type, "transaction") || is(c, type, "batch");
    uint32_t entry = fj_first_child(c->entries);
    for (uint32_t k = 0; k < c->doc->nodes[c->entries].len; k++, entry = fj_next(c->doc, entry)) {
        if (c->doc->nodes[entry].type != FJ_OBJECT)
            continue;
        uint32_t res = obj_member(c, entry, "resource"), u = str_member(c, entry, "fullUrl");
        uint32_t rt = str_member(c, res, "resourceType");
        size_t old = rp_push(c->rep, ".entry[%u]", k);
        if (u == NO_NODE && needs_full_url && rt != NO_NODE)
            rp_report(c->rep, entry, OO_ERROR, OO_REQUIRED, "every entry of a %.*s Bundle has a fullUrl",
                      TEXT(c, type));
        if (rt != NO_NODE && u != NO_NODE) {
            check_restful_full_url(c, u, res, fj_str(c->doc, rt), c->doc->nodes[rt].len);
            check_canonical_full_url(c, u, res, fj_str(c->doc, rt), c->doc->nodes[rt].len);
        }
        if (rt != NO_NODE && is_transaction)
            check_put(c, entry, res, fj_str(c->doc, rt), c->doc->nodes[rt].len);
        rp_pop(c->rep, old);
    }
}

/* ---- links -------------------------------------------------------------------- */

static bool is_paging(const br_ctx *c, uint32_t rel)
{
    return is(c, rel, "first") || is(c, rel, "previous") || is(c, rel, "next") || is(c, rel, "last");
}

/* True when a link before the k-th has the same relation (the reference complains once, at the later one). */
static bool relation_seen_before(const br_ctx *c, uint32_t rel, uint32_t k)
{
    uint32_t link = fj_first_child(c->links);
    for (uint32_t i = 0; i < k; i++, link = fj_next(c->doc, link)) {
        uint32_t other = str_member(c, link, "relation");
        if (other != NO_NODE && same(c, rel, other))
            return true;
    }
    return false;
}

/* The entry whose resource is Type/id `url`, as a document's relative stylesheet link names it. */
static bool entry_is(const br_ctx *c, const char *url, size_t len)
{
    const char *slash = memchr(url, '/', len);
    if (!slash || c->entries == NO_NODE)
        return false;
    size_t tlen = (size_t)(slash - url);
    uint32_t entry = fj_first_child(c->entries);
    for (uint32_t k = 0; k < c->doc->nodes[c->entries].len; k++, entry = fj_next(c->doc, entry)) {
        uint32_t res = obj_member(c, entry, "resource");
        if (equals(c, str_member(c, res, "resourceType"), url, tlen) &&
            equals(c, str_member(c, res, "id"), slash + 1, len - tlen - 1))
            return true;
    }
    return false;
}

/* A document's stylesheet: the FHIR one, or one in the Bundle; others are warned about. */
static void check_stylesheet(br_ctx *c, uint32_t link)
{
    uint32_t url = str_member(c, link, "url");
    if (url == NO_NODE)
        return;
    const char *s = fj_str(c->doc, url);
    size_t len = c->doc->nodes[url].len;
    size_t at = rp_push(c->rep, ".url");
    if (!fr_is_absolute(s, len)) {
        if (!entry_is(c, s, len))
            rp_report(c->rep, url, OO_ERROR, OO_NOT_FOUND, "the stylesheet '%.*s' is not in this Bundle", (int)len, s);
    } else if (!equals(c, url, "https://hl7.org/fhir/fhir.css", 29)) {
        rp_report(c->rep, url, OO_WARNING, BUSINESS_RULE,
                  "external stylesheets other than https://hl7.org/fhir/fhir.css SHOULD not be used");
        if (!strncmp(s, "http://", 7))
            rp_report(c->rep, url, OO_WARNING, BUSINESS_RULE, "the stylesheet reference is not secure (http:)");
    }
    rp_pop(c->rep, at);
}

/*
 * Bundle.link: first/previous/next/last belong to searchsets and histories
 * (there no relation of those and self twice, reported at the link); other
 * types may not page, nor have two self links (reported at the relation).
 */
static void check_links(br_ctx *c, uint32_t type)
{
    bool paged = is(c, type, "searchset") || is(c, type, "history");
    bool document = is(c, type, "document");
    uint32_t link = fj_first_child(c->links);
    for (uint32_t k = 0; k < c->doc->nodes[c->links].len; k++, link = fj_next(c->doc, link)) {
        uint32_t rel = str_member(c, link, "relation");
        if (rel == NO_NODE)
            continue;
        size_t old = rp_push(c->rep, ".link[%u]", k);
        bool counted = is_paging(c, rel) || is(c, rel, "self");
        if (paged && counted && relation_seen_before(c, rel, k)) {
            rp_report(c->rep, link, OO_ERROR, OO_INVALID, "the link relation '%.*s' can only occur once", TEXT(c, rel));
        } else if (!paged && type != NO_NODE) {
            size_t at = rp_push(c->rep, ".relation");
            if (is_paging(c, rel))
                rp_report(c->rep, rel, OO_ERROR, OO_INVALID,
                          "the link relation '%.*s' is for searchset and history Bundles, not a %.*s", TEXT(c, rel),
                          TEXT(c, type));
            else if (is(c, rel, "self") && relation_seen_before(c, rel, k))
                rp_report(c->rep, rel, OO_ERROR, OO_INVALID, "the link relation 'self' can only occur once");
            rp_pop(c->rep, at);
            if (document && is(c, rel, "stylesheet"))
                check_stylesheet(c, link);
        }
        rp_pop(c->rep, old);
    }
}

/* ---- searchsets ----------------------------------------------------------------- */

typedef struct search_types {
    const char *name[MAX_SEARCH_TYPES];
    size_t len[MAX_SEARCH_TYPES];
    unsigned count;
} search_types;

static void add_type(search_types *t, const char *name, size_t len)
{
    if (len && t->count < MAX_SEARCH_TYPES) {
        t->name[t->count] = name;
        t->len[t->count++] = len;
    }
}

/* What the self link searched: ".../Patient?..." is Patient; "...?_type=A,B" is A and B. */
static void searched_types(const br_ctx *c, const char *url, size_t len, search_types *out)
{
    out->count = 0;
    const char *q = memchr(url, '?', len), *end = q ? q : url + len;
    const char *seg = end;
    while (seg > url && seg[-1] != '/')
        seg--;
    if (known_resource(c, seg, (size_t)(end - seg))) {
        add_type(out, seg, (size_t)(end - seg));
        return;
    }
    for (const char *p = q; p && p < url + len;) {
        const char *amp = memchr(p + 1, '&', (size_t)(url + len - p - 1)), *stop = amp ? amp : url + len;
        if ((size_t)(stop - p) > 7 && !memcmp(p + 1, "_type=", 6))
            for (const char *t = p + 7; t < stop;) {
                const char *comma = memchr(t, ',', (size_t)(stop - t)), *tend = comma ? comma : stop;
                add_type(out, t, (size_t)(tend - t));
                t = tend + 1;
            }
        p = amp;
    }
}

static bool searched(const search_types *t, uint32_t rt, const br_ctx *c)
{
    for (unsigned i = 0; i < t->count; i++)
        if (equals(c, rt, t->name[i], t->len[i]))
            return true;
    return false;
}

static uint32_t search_mode(const br_ctx *c, uint32_t entry)
{
    return str_member(c, obj_member(c, entry, "search"), "mode");
}

/* Entries with search modes: each has one (warning); match and include results have ids, outcomes are OperationOutcomes. */
static void check_moded_entry(br_ctx *c, uint32_t entry, uint32_t res, const search_types *types)
{
    uint32_t mode = search_mode(c, entry), rt = str_member(c, res, "resourceType");
    if (mode == NO_NODE)
        rp_report(c->rep, entry, OO_WARNING, OO_INVALID, "searchset Bundles should have search modes on the entries");
    if (mode == NO_NODE || rt == NO_NODE)
        return;
    size_t at = rp_push(c->rep, ".resource");
    bool has_id = str_member(c, res, "id") != NO_NODE;
    if ((is(c, mode, "match") || is(c, mode, "include")) && !has_id)
        rp_report(c->rep, res, OO_ERROR, OO_INVALID, "search results must have ids (search.mode %.*s)", TEXT(c, mode));
    if (is(c, mode, "match") && types->count && !searched(types, rt, c))
        rp_report(c->rep, res, OO_ERROR, OO_INVALID,
                  "a %.*s is not a match for the search of the self link (expecting %.*s%s)", TEXT(c, rt),
                  (int)types->len[0], types->name[0], types->count > 1 ? ", ..." : "");
    if (is(c, mode, "outcome") && !is(c, rt, "OperationOutcome"))
        rp_report(c->rep, res, OO_ERROR, OO_INVALID,
                  "an entry of search.mode outcome holds an OperationOutcome, not a %.*s", TEXT(c, rt));
    rp_pop(c->rep, at);
}

static void warn_no_id(br_ctx *c, uint32_t res, uint32_t rt)
{
    if (is(c, rt, "OperationOutcome") || str_member(c, res, "id") != NO_NODE)
        return;
    size_t at = rp_push(c->rep, ".resource");
    rp_report(c->rep, res, OO_WARNING, OO_INVALID, "search results must have ids");
    rp_pop(c->rep, at);
}

/*
 * No entry has a mode: results should have ids (warning). Whether modes are
 * missing shows in the types: one not searched, two different ones, or no
 * searched type known at all (returns true: then the missing modes are a warning).
 */
static bool check_unmoded_entry(br_ctx *c, uint32_t entry, uint32_t res, const search_types *types, uint32_t *first)
{
    uint32_t rt = str_member(c, res, "resourceType");
    if (rt == NO_NODE)
        return false;
    warn_no_id(c, res, rt);
    if (!types->count)
        return true;
    if (!searched(types, rt, c)) {
        rp_report(c->rep, entry, OO_WARNING, OO_INVALID,
                  "a %.*s is not a match for the search of the self link (is a search mode needed?)", TEXT(c, rt));
        return true;
    }
    if (is(c, rt, "OperationOutcome"))
        return false;
    if (*first == NO_NODE)
        *first = rt;
    return !same(c, *first, rt);
}

/*
 * A searchset: a self link saying what was searched (warning), search.mode on
 * all entries or none (warning per entry without), a resource in each entry
 * (error), then the mode's rules.
 */
static void check_searchset(br_ctx *c)
{
    uint32_t self = NO_NODE, link = c->links != NO_NODE ? fj_first_child(c->links) : NO_NODE;
    for (uint32_t k = 0; self == NO_NODE && c->links != NO_NODE && k < c->doc->nodes[c->links].len;
         k++, link = fj_next(c->doc, link))
        if (is(c, str_member(c, link, "relation"), "self"))
            self = link;
    search_types types = {0};
    uint32_t url = str_member(c, self, "url");
    if (self == NO_NODE)
        rp_report(c->rep, c->bundle, OO_WARNING, OO_INVALID,
                  "searchset Bundles should have a self link that says what the search was");
    else if (url != NO_NODE)
        searched_types(c, fj_str(c->doc, url), c->doc->nodes[url].len, &types);
    if (self != NO_NODE && !types.count)
        rp_report(c->rep, c->bundle, OO_INFORMATION, OO_INVALID,
                  "no resource type can be read from the self link, so the results' types are not checked");
    if (c->entries == NO_NODE)
        return;
    bool any_mode = false;
    uint32_t entry = fj_first_child(c->entries), n = c->doc->nodes[c->entries].len;
    for (uint32_t k = 0; k < n; k++, entry = fj_next(c->doc, entry))
        any_mode = any_mode || search_mode(c, entry) != NO_NODE;
    bool type_problem = false;
    uint32_t first = NO_NODE;
    entry = fj_first_child(c->entries);
    for (uint32_t k = 0; k < n; k++, entry = fj_next(c->doc, entry)) {
        if (c->doc->nodes[entry].type != FJ_OBJECT)
            continue;
        size_t old = rp_push(c->rep, ".entry[%u]", k);
        uint32_t res = obj_member(c, entry, "resource");
        if (any_mode)
            check_moded_entry(c, entry, res, &types);
        else if (res != NO_NODE)
            type_problem = check_unmoded_entry(c, entry, res, &types, &first) || type_problem;
        if (res == NO_NODE)
            rp_report(c->rep, entry, OO_ERROR, OO_INVALID, "searchset Bundle entries must have resources");
        rp_pop(c->rep, old);
    }
    if (!any_mode && n)
        rp_report(c->rep, c->bundle, type_problem ? OO_WARNING : OO_INFORMATION, OO_INVALID,
                  "searchset Bundles should have search modes on the entries");
}

/* ---- entry point ------------------------------------------------------------------ */

void br_check(const fs_schema *s, fj_doc *doc, uint32_t bundle, rp_reporter *rep)
{
    br_ctx c = {s, doc, rep, bundle, NO_NODE, NO_NODE};
    if (doc->nodes[bundle].type != FJ_OBJECT)
        return;
    uint32_t type = str_member(&c, bundle, "type");
    uint32_t entries = fj_get(doc, bundle, "entry"), links = fj_get(doc, bundle, "link");
    if (entries != NO_NODE && doc->nodes[entries].type == FJ_ARRAY)
        c.entries = entries;
    if (links != NO_NODE && doc->nodes[links].type == FJ_ARRAY)
        c.links = links;
    if (c.entries != NO_NODE)
        check_entries(&c, type);
    if (c.links != NO_NODE)
        check_links(&c, type);
    if (is(&c, type, "searchset"))
        check_searchset(&c);
}
