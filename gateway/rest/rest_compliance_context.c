/*
 * gateway/rest/rest_compliance_context.c — gathering a check's context (see rest_compliance_context.h).
 *
 * One walk, over a batch of subjects (cx_gather is a batch of one). Every resource it meets becomes a
 * cx_item: its text, its key and the followed references in it, parsed once (fhir/json.h) and kept in the
 * cx_cache, which owns the items; a subject's set copies the texts. Search results come back for the whole
 * batch and go to the subjects whose reference the result's element (`path` of the table) names.
 */
#include "gateway/rest/rest_compliance_context.h"

#include <json-c/linkhash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/reference.h"
#include "gateway/rest/answer.h"

/* The searches per subject type: resources of `type` whose `param` names what the subject's element
 * `via` refers to ("" = the subject itself); `path` is the element of `type` that param indexes. */
typedef struct cx_search {
    const char *subject, *type, *param, *via, *path;
} cx_search;

static const cx_search SEARCHES[] = {
    {"CarePlan", "Coverage", "beneficiary", "subject", "beneficiary"},
    {"CarePlan", "Encounter", "subject", "subject", "subject"},
    {"Encounter", "Task", "encounter", "", "encounter"},
    {"Encounter", "Contract", "subject", "serviceProvider", "subject"},
    {"Encounter", "Coverage", "beneficiary", "subject", "beneficiary"},
    {"Organization", "Contract", "subject", "", "subject"},
    {"Organization", "Encounter", "service-provider", "", "serviceProvider"},
};

/* The types whose references are followed: what a rule may look at. */
static const char *const FOLLOWED[] = {"Patient",  "Organization", "CareTeam",    "PractitionerRole",
                                       "Goal",     "Location",     "Task",        "Encounter",
                                       "Coverage", "Contract",     "Practitioner"};

/* Rounds of following references: the subject's, then those of what they brought. */
#define CX_ROUNDS 2

static bool followed(const char *type, size_t len)
{
    for (size_t i = 0; i < sizeof FOLLOWED / sizeof *FOLLOWED; i++)
        if (strlen(FOLLOWED[i]) == len && !memcmp(FOLLOWED[i], type, len))
            return true;
    return false;
}

/* ---- the set ------------------------------------------------------------------------- */

void cx_set_free(cx_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        if (set->owned[i])
            free(set->json[i]);
    free(set->json);
    free(set->len);
    free(set->key);
    free(set->owned);
    memset(set, 0, sizeof *set);
}

static bool has(const cx_set *set, const char *key)
{
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->key[i], key))
            return true;
    return false;
}

/*
 * Add a resource's text under its key: copied, or borrowed (the cache's, NUL-terminated); false when already
 * there, the set is full or out of memory.
 */
static bool add_keyed(cx_set *set, const char *key, const char *json, size_t len, bool borrow)
{
    if (has(set, key))
        return false;
    if (set->count >= (size_t)LIM(compliance_context_max)) {
        set->truncated = true;
        return false;
    }
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        char **j = realloc(set->json, cap * sizeof *j);
        if (j)
            set->json = j;
        size_t *l = realloc(set->len, cap * sizeof *l);
        if (l)
            set->len = l;
        char(*k)[sizeof *set->key] = realloc(set->key, cap * sizeof *k);
        if (k)
            set->key = k;
        bool *o = realloc(set->owned, cap * sizeof *o);
        if (o)
            set->owned = o;
        if (!j || !l || !k || !o)
            return false;
        set->cap = cap;
    }
    char *copy = borrow ? (char *)json : malloc(len + 1);
    if (!copy)
        return false;
    if (!borrow) {
        memcpy(copy, json, len);
        copy[len] = '\0';
    }
    set->owned[set->count] = !borrow;
    set->json[set->count] = copy;
    set->len[set->count] = len;
    snprintf(set->key[set->count], sizeof *set->key, "%s", key);
    set->count++;
    return true;
}

/* ---- items: a resource parsed once ------------------------------------------------------ */

#define KEY_SIZE (2 * ST_ID_MAX + 2) /* "Type/id", as cx_set.key */
#define CACHE_MAX 8192               /* past this many items, what the last batch did not use goes */

typedef struct cx_item {
    char key[KEY_SIZE]; /* resourceType/id (a read that found nothing: the reference asked for) */
    char *json;         /* NULL: not there */
    size_t len;
    char (*refs)[KEY_SIZE]; /* the followed relative references in it, in document order */
    size_t ref_count, ref_cap;
    unsigned stamp; /* the batch that last used it */
} cx_item;

struct cx_cache {
    struct lh_table *items; /* key -> cx_item */
    unsigned stamp;
};

static void item_free(cx_item *it)
{
    if (it) {
        free(it->json);
        free(it->refs);
        free(it);
    }
}

static void entry_free(struct lh_entry *e)
{
    item_free(lh_entry_v(e));
}

cx_cache *cx_cache_new(void)
{
    cx_cache *c = calloc(1, sizeof *c);
    if (c && !(c->items = lh_kchar_table_new(256, entry_free))) {
        free(c);
        c = NULL;
    }
    return c;
}

void cx_cache_free(cx_cache *cache)
{
    if (cache) {
        lh_table_free(cache->items);
        free(cache);
    }
}

/*
 * Before a batch: when the cache has grown past CACHE_MAX, what the last batch did not use goes. What it used
 * stays, whatever the count (at most what one batch can gather): its sets may still be in use while this batch
 * is gathered (a pull checks one batch while it gathers the next).
 */
static void cache_trim(cx_cache *c)
{
    if (lh_table_length(c->items) <= CACHE_MAX)
        return;
    struct lh_entry *e, *tmp;
    lh_foreach_safe(c->items, e, tmp)
    {
        const cx_item *it = lh_entry_v(e);
        if (it->stamp != c->stamp)
            lh_table_delete_entry(c->items, e);
    }
}

static cx_item *cache_get(cx_cache *c, const char *key)
{
    void *v = NULL;
    if (!lh_table_lookup_ex(c->items, key, &v))
        return NULL;
    cx_item *it = v;
    it->stamp = c->stamp;
    return it;
}

/*
 * Keep it under its key (the cache owns it from here). What the cache holds already stays (the resources as
 * first read: the sets of this batch may point at it) and is answered instead, unless it is a read that
 * found nothing. NULL when out of memory.
 */
static cx_item *cache_put(cx_cache *c, cx_item *it)
{
    cx_item *old = cache_get(c, it->key);
    if (old && old->json) {
        item_free(it);
        return old;
    }
    if (old)
        lh_table_delete(c->items, it->key);
    it->stamp = c->stamp;
    if (lh_table_insert(c->items, it->key, it) != 0) {
        item_free(it);
        return NULL;
    }
    return it;
}

/* A relative reference "Type/id" (no URL, no fragment, no history) of a followed type: its parts. */
static bool relative(const char *ref, const char **type, size_t *tlen, const char **id, size_t *idlen)
{
    const char *slash = strchr(ref, '/');
    if (!slash || strchr(slash + 1, '/') || strchr(ref, ':') || ref[0] == '#')
        return false;
    *type = ref;
    *tlen = (size_t)(slash - ref);
    *id = slash + 1;
    *idlen = strlen(slash + 1);
    return followed(*type, *tlen);
}

/* A reference a walk may read: relative, of a followed type, type and id of a size a key holds. */
static bool fetchable(const char *ref)
{
    const char *type, *id;
    size_t tlen, idlen;
    return relative(ref, &type, &tlen, &id, &idlen) && tlen < 64 && idlen && idlen <= ST_ID_MAX;
}

static void add_ref(cx_item *it, const char *s, size_t len)
{
    char ref[KEY_SIZE];
    if (len >= sizeof ref)
        return;
    memcpy(ref, s, len);
    ref[len] = '\0';
    if (!fetchable(ref))
        return;
    if (it->ref_count == it->ref_cap) {
        size_t cap = it->ref_cap ? 2 * it->ref_cap : 8;
        char(*r)[KEY_SIZE] = realloc(it->refs, cap * sizeof *r);
        if (!r)
            return;
        it->refs = r, it->ref_cap = cap;
    }
    memcpy(it->refs[it->ref_count++], ref, len + 1);
}

/* Every "reference" string under node, in document order (as cx_gather has always followed them). */
static void collect_refs(const fj_doc *d, uint32_t node, cx_item *it)
{
    const fj_node *n = &d->nodes[node];
    if (n->type == FJ_ARRAY) {
        for (uint32_t c = node + 1; c < node + n->size; c = fj_next(d, c))
            collect_refs(d, c, it);
    } else if (n->type == FJ_OBJECT) {
        for (uint32_t k = node + 1; k < node + n->size; k = fj_next(d, k + 1)) {
            uint32_t v = k + 1;
            if (d->nodes[k].len == 9 && !memcmp(fj_str(d, k), "reference", 9) && d->nodes[v].type == FJ_STRING)
                add_ref(it, fj_str(d, v), d->nodes[v].len);
            else
                collect_refs(d, v, it);
        }
    }
}

/* A string member of the root into out; false when absent, not a string or too long. */
static bool root_string(const fj_doc *d, const char *member, char *out, size_t size)
{
    uint32_t v = fj_get(d, 0, member);
    if (v == UINT32_MAX || d->nodes[v].type != FJ_STRING || d->nodes[v].len >= size)
        return false;
    memcpy(out, fj_str(d, v), d->nodes[v].len);
    out[d->nodes[v].len] = '\0';
    return true;
}

/*
 * The item of a resource's text (copied), keyed by its resourceType/id; NULL when the text is not a
 * resource (or out of memory). doc: when not NULL, the parsed copy is kept there (the caller frees it and
 * *scratch, the decoded text it points into), for a look at the members of the root.
 */
static cx_item *item_parse(const char *json, size_t len, fj_doc *doc, char **scratch)
{
    cx_item *it = calloc(1, sizeof *it);
    char *copy = malloc(len + 1);
    fj_doc d = {0};
    fj_error err;
    char type[64], id[ST_ID_MAX + 1];
    bool ok = it && copy;
    if (ok) {
        memcpy(copy, json, len);
        copy[len] = '\0';
        ok = fj_parse(copy, len, NULL, &d, &err) && d.nodes[0].type == FJ_OBJECT &&
             root_string(&d, "resourceType", type, sizeof type) && root_string(&d, "id", id, sizeof id) &&
             snprintf(it->key, sizeof it->key, "%s/%s", type, id) < (int)sizeof it->key;
    }
    if (ok && (it->json = malloc(len + 1))) {
        memcpy(it->json, json, len);
        it->json[len] = '\0';
        it->len = len;
        collect_refs(&d, 0, it);
    }
    ok = ok && it->json;
    if (ok && doc) {
        *doc = d;
        *scratch = copy;
    } else {
        fj_doc_free(&d);
        free(copy);
    }
    if (!ok) {
        item_free(it);
        return NULL;
    }
    return it;
}

/* ---- gathering ----------------------------------------------------------------------- */

/* One subject of the batch: its set, the items of its set entries, and what its searches ask for. */
typedef struct subject {
    cx_set *set;
    cx_item *own;          /* the subject's own item (subjects are not cached: a plan is pulled once) */
    const cx_item **items; /* parallel to set->json */
    size_t item_cap;
    /* per search: the reference it asks for ("": none); one small block per subject, so that a batch frees
     * no block large enough to make malloc consolidate its free lists */
    char (*via)[KEY_SIZE];
    bool dropped;
    bool borrow; /* the set borrows the cached items' texts (the caller's cache outlives the set's use) */
} subject;

typedef struct walk {
    const cx_source *src;
    cx_cache *cache;
    const char *type;
    subject *subjects;
    size_t n;
    int status;
    char *msg;
    size_t msglen;
} walk;

/* Add item to subject s's set (when not there and there is room). */
static void add_item(subject *s, const cx_item *it)
{
    if (!it || !it->json || s->dropped)
        return;
    size_t at = s->set->count;
    if (!add_keyed(s->set, it->key, it->json, it->len, s->borrow && it != s->own))
        return;
    if (at >= s->item_cap) {
        size_t cap = s->item_cap ? 2 * s->item_cap : 16;
        const cx_item **items = realloc(s->items, cap * sizeof *items);
        if (!items) {
            if (s->set->owned[at])
                free(s->set->json[at]);
            s->set->count = at;
            return;
        }
        s->items = items, s->item_cap = cap;
    }
    s->items[at] = it;
}

/* The reference the subject's element `via` holds ("" = the subject itself) into out; false when none. */
static bool reference_via(const fj_doc *d, const char *key, const char *via, char *out, size_t size)
{
    if (!via[0])
        return snprintf(out, size, "%s", key) < (int)size;
    uint32_t el = fj_get(d, 0, via);
    uint32_t ref = el != UINT32_MAX && d->nodes[el].type == FJ_OBJECT ? fj_get(d, el, "reference") : UINT32_MAX;
    if (ref == UINT32_MAX || d->nodes[ref].type != FJ_STRING || d->nodes[ref].len >= size)
        return false;
    memcpy(out, fj_str(d, ref), d->nodes[ref].len);
    out[d->nodes[ref].len] = '\0';
    const char *type, *id;
    size_t tlen, idlen;
    return relative(out, &type, &tlen, &id, &idlen);
}

/* The subjects' own items and what their searches ask for. */
static void begin_subjects(walk *w, const char *const *json, const size_t *len)
{
    for (size_t i = 0; i < w->n; i++) {
        subject *s = &w->subjects[i];
        fj_doc d;
        char *scratch = NULL;
        cx_item *it = item_parse(json[i], len[i], &d, &scratch);
        s->via = calloc(sizeof SEARCHES / sizeof *SEARCHES, sizeof *s->via);
        s->dropped = it == NULL || !s->via;
        if (s->dropped) {
            if (it) {
                fj_doc_free(&d);
                free(scratch);
            }
            item_free(it);
            continue;
        }
        for (size_t k = 0; k < sizeof SEARCHES / sizeof *SEARCHES; k++)
            if (strcmp(SEARCHES[k].subject, w->type) ||
                !reference_via(&d, it->key, SEARCHES[k].via, s->via[k], sizeof s->via[k]))
                s->via[k][0] = '\0';
        fj_doc_free(&d);
        free(scratch);
        s->own = it;
        add_item(s, it);
        s->dropped = !s->set->count;
    }
}

/* ---- the searches -------------------------------------------------------------------- */

#define MANY_MAX 400 /* ids or references in one bulk call at most */

/* Where search results go: to the subjects asking for `ref` (NULL: for whichever reference they hold at the
 * search's element, read from the result itself). */
typedef struct finding {
    walk *w;
    size_t row;
    const char *ref;
    size_t *taken; /* per subject: results of this search so far */
} finding;

/* Does the Reference object at node ref point at want ("Type/id"), written relative or absolute? */
static bool points_at(const fj_doc *d, uint32_t ref, const char *want)
{
    uint32_t r = d->nodes[ref].type == FJ_OBJECT ? fj_get(d, ref, "reference") : UINT32_MAX;
    fr_parts a, b;
    if (r == UINT32_MAX || d->nodes[r].type != FJ_STRING || !fr_parse(fj_str(d, r), d->nodes[r].len, &a) ||
        !fr_parse(want, strlen(want), &b))
        return false;
    return a.type_len == b.type_len && a.id_len == b.id_len && !memcmp(a.type, b.type, a.type_len) &&
           !memcmp(a.id, b.id, a.id_len);
}

/* Does the result's element `path` (a Reference, or a list of them) point at want? */
static bool result_for(const fj_doc *d, const char *path, const char *want)
{
    uint32_t el = fj_get(d, 0, path);
    if (el == UINT32_MAX)
        return false;
    if (d->nodes[el].type != FJ_ARRAY)
        return points_at(d, el, want);
    for (uint32_t c = el + 1; c < el + d->nodes[el].size; c = fj_next(d, c))
        if (points_at(d, c, want))
            return true;
    return false;
}

static void found(void *arg, const char *json, size_t len)
{
    finding *f = arg;
    walk *w = f->w;
    fj_doc d;
    char *scratch = NULL;
    cx_item *it = item_parse(json, len, f->ref ? NULL : &d, &scratch);
    if (!it)
        return;
    bool *to = calloc(w->n, sizeof *to);
    for (size_t i = 0; to && i < w->n; i++) {
        const char *via = w->subjects[i].via ? w->subjects[i].via[f->row] : "";
        to[i] = via[0] && (f->ref ? !strcmp(via, f->ref) : result_for(&d, SEARCHES[f->row].path, via));
    }
    if (!f->ref) {
        fj_doc_free(&d);
        free(scratch);
    }
    it = cache_put(w->cache, it);
    for (size_t i = 0; it && to && i < w->n; i++)
        if (to[i] && f->taken[i]++ < (size_t)LIM(compliance_context_max))
            add_item(&w->subjects[i], it);
    free(to);
}

/* One search of the table for every subject that asks it: in bulk, or one reference at a time. */
static bool search_row(walk *w, size_t row)
{
    const cx_search *s = &SEARCHES[row];
    const char **refs = calloc(w->n, sizeof *refs);
    size_t *taken = calloc(w->n, sizeof *taken), m = 0;
    bool ok = refs && taken;
    for (size_t i = 0; ok && i < w->n; i++) {
        const char *via = w->subjects[i].via ? w->subjects[i].via[row] : "";
        bool seen = !via[0] || w->subjects[i].dropped;
        for (size_t k = 0; !seen && k < m; k++)
            seen = !strcmp(refs[k], via);
        if (!seen)
            refs[m++] = via;
    }
    if (!ok)
        w->status = 503;
    size_t limit = (size_t)LIM(compliance_context_max);
    for (size_t k = 0; ok && k < m;) {
        finding f = {w, row, w->src->search_many ? NULL : refs[k], taken};
        size_t batch = w->src->search_many ? (m - k < MANY_MAX ? m - k : MANY_MAX) : 1;
        int st = w->src->search_many
                     ? w->src->search_many(w->src->self, s->type, s->param, refs + k, batch, batch * limit, found, &f,
                                           w->msg, w->msglen)
                     : w->src->search(w->src->self, s->type, s->param, refs[k], found, &f, w->msg, w->msglen);
        if (st != 0) {
            w->status = st;
            ok = false;
        }
        k += batch;
    }
    free(refs);
    free(taken);
    return ok;
}

static bool search_all(walk *w)
{
    for (size_t row = 0; row < sizeof SEARCHES / sizeof *SEARCHES; row++)
        if (!strcmp(SEARCHES[row].subject, w->type) && !search_row(w, row))
            return false;
    return true;
}

/* ---- following references ------------------------------------------------------------- */

/* A list of references ("Type/id"). */
typedef struct reflist {
    char (*at)[KEY_SIZE];
    size_t count, cap;
} reflist;

static bool refs_has(const reflist *r, const char *key)
{
    for (size_t i = 0; i < r->count; i++)
        if (!strcmp(r->at[i], key))
            return true;
    return false;
}

static bool refs_add(reflist *r, const char *key)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        char(*at)[KEY_SIZE] = realloc(r->at, cap * sizeof *at);
        if (!at)
            return false;
        r->at = at, r->cap = cap;
    }
    snprintf(r->at[r->count++], KEY_SIZE, "%s", key);
    return true;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* A read that found nothing, kept so that it is not asked again. */
static void note_missing(walk *w, const char *key)
{
    if (cache_get(w->cache, key))
        return;
    cx_item *it = calloc(1, sizeof *it);
    if (it) {
        snprintf(it->key, sizeof it->key, "%s", key);
        cache_put(w->cache, it);
    }
}

static void read_found(void *arg, const char *json, size_t len)
{
    walk *w = arg;
    cx_item *it = item_parse(json, len, NULL, NULL);
    if (it)
        cache_put(w->cache, it);
}

/* The misses of one type, misses->at[from..to) (sorted), in bulk calls; false when the source failed. */
static bool read_type(walk *w, reflist *misses, size_t from, size_t to)
{
    size_t tlen = strcspn(misses->at[from], "/");
    char type[64];
    snprintf(type, sizeof type, "%.*s", (int)tlen, misses->at[from]);
    const char **ids = calloc(MANY_MAX, sizeof *ids);
    if (!ids) {
        w->status = 503;
        return false;
    }
    for (size_t k = from; k < to;) {
        size_t n = 0;
        for (; k < to && n < MANY_MAX; k++)
            ids[n++] = misses->at[k] + tlen + 1;
        int st = w->src->read_many(w->src->self, type, ids, n, read_found, w, w->msg, w->msglen);
        if (st != 0) {
            w->status = st;
            free(ids);
            return false;
        }
    }
    free(ids);
    for (size_t k = from; k < to; k++)
        note_missing(w, misses->at[k]);
    return true;
}

/* One at a time, in the order met (a provider's endpoint sees the requests cx_gather has always made). */
static bool read_each(walk *w, const char *key)
{
    size_t tlen = strcspn(key, "/");
    char type[64];
    snprintf(type, sizeof type, "%.*s", (int)tlen, key);
    char *json = NULL;
    size_t len = 0;
    int s = w->src->read(w->src->self, type, key + tlen + 1, &json, &len, w->msg, w->msglen);
    if (s == 0)
        read_found(w, json, len);
    free(json);
    if (s != 0 && s != 404) {
        w->status = s;
        return false;
    }
    note_missing(w, key);
    return true;
}

/* Read what the cache does not have of misses; false when the source failed. */
static bool read_misses(walk *w, reflist *misses)
{
    if (!w->src->read_many) {
        for (size_t k = 0; k < misses->count; k++)
            if (!read_each(w, misses->at[k]))
                return false;
        return true;
    }
    if (misses->count)
        qsort(misses->at, misses->count, sizeof *misses->at, by_key);
    for (size_t from = 0, to; from < misses->count; from = to) {
        size_t tlen = strcspn(misses->at[from], "/");
        for (to = from + 1; to < misses->count && !strncmp(misses->at[to], misses->at[from], tlen + 1); to++)
            ;
        if (!read_type(w, misses, from, to))
            return false;
    }
    return true;
}

static void key_free(struct lh_entry *e)
{
    free((void *)lh_entry_k(e));
}

/*
 * One round: the references of each subject's entries [from[i], set count), in order, read (what the cache
 * lacks, for the whole batch at once) and added to that subject's set. from[i] moves to the end.
 */
static bool follow_round(walk *w, size_t *from)
{
    reflist *wanted = calloc(w->n, sizeof *wanted), misses = {0};
    struct lh_table *asked = lh_kchar_table_new(64, key_free); /* the misses' keys, copied (the lists move) */
    bool ok = wanted && asked;
    for (size_t i = 0; ok && i < w->n; i++) {
        subject *s = &w->subjects[i];
        for (size_t e = from[i]; !s->dropped && e < s->set->count; e++)
            for (size_t r = 0; r < s->items[e]->ref_count; r++) {
                const char *key = s->items[e]->refs[r];
                if (has(s->set, key) || refs_has(&wanted[i], key))
                    continue;
                refs_add(&wanted[i], key);
                if (cache_get(w->cache, key) || lh_table_lookup_ex(asked, key, NULL))
                    continue; /* at hand, or asked for already */
                char *copy = strdup(key);
                if (copy && lh_table_insert(asked, copy, NULL) == 0)
                    refs_add(&misses, key);
                else
                    free(copy);
            }
        from[i] = s->set->count;
    }
    if (asked)
        lh_table_free(asked);
    ok = ok && read_misses(w, &misses);
    for (size_t i = 0; ok && i < w->n; i++)
        for (size_t k = 0; k < wanted[i].count; k++)
            add_item(&w->subjects[i], cache_get(w->cache, wanted[i].at[k]));
    for (size_t i = 0; wanted && i < w->n; i++)
        free(wanted[i].at);
    free(wanted);
    free(misses.at);
    if (!ok && !w->status)
        w->status = 503;
    return ok;
}

static bool follow_all(walk *w)
{
    size_t *from = calloc(w->n, sizeof *from);
    bool ok = from != NULL;
    /* each round follows the references of what the previous one brought */
    for (size_t round = 0; ok && round < CX_ROUNDS; round++)
        ok = follow_round(w, from);
    free(from);
    return ok;
}

int cx_gather_many(const cx_source *src, cx_cache *cache, const char *type, const char *const *json, const size_t *len,
                   size_t n, cx_keep_fn keep, void *keep_arg, cx_set *sets, char *msg, size_t msglen)
{
    msg[0] = '\0';
    memset(sets, 0, n * sizeof *sets);
    cx_cache *own = cache ? NULL : cx_cache_new();
    walk w = {src, cache ? cache : own, type, calloc(n ? n : 1, sizeof *w.subjects), n, 0, msg, msglen};
    bool ok = w.cache && w.subjects;
    if (ok) {
        cache_trim(w.cache); /* the last batch's sets are done with what goes */
        w.cache->stamp++;
        for (size_t i = 0; i < n; i++)
            w.subjects[i].set = &sets[i], w.subjects[i].borrow = cache != NULL;
        begin_subjects(&w, json, len);
        ok = search_all(&w);
    }
    for (size_t i = 0; ok && keep && i < n; i++)
        if (!w.subjects[i].dropped && !keep(keep_arg, i, &sets[i]))
            w.subjects[i].dropped = true;
    ok = ok && follow_all(&w);
    for (size_t i = 0; w.subjects && i < n; i++) {
        if (!ok || w.subjects[i].dropped)
            cx_set_free(&sets[i]);
        free(w.subjects[i].items);
        free(w.subjects[i].via);
        item_free(w.subjects[i].own);
    }
    free(w.subjects);
    cx_cache_free(own);
    if (!ok && !w.status) {
        snprintf(msg, msglen, "out of memory gathering the context");
        w.status = 503;
    }
    return ok ? 0 : w.status;
}

int cx_gather(const cx_source *src, const char *type, const char *id, cx_set *set, char *msg, size_t msglen)
{
    memset(set, 0, sizeof *set);
    msg[0] = '\0';
    char *json = NULL;
    size_t len = 0;
    int s = src->read(src->self, type, id, &json, &len, msg, msglen);
    if (s != 0)
        return s;
    const char *texts[] = {json};
    s = cx_gather_many(src, NULL, type, texts, &len, 1, NULL, NULL, set, msg, msglen);
    free(json);
    if (s == 0 && !set->count) {
        snprintf(msg, msglen, "%s/%s is not a resource with that type and id", type, id);
        return 502;
    }
    return s;
}

#define BUNDLE_HEAD "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
#define ENTRY_HEAD "{\"resource\":"

/* Written into one allocation of the exact size: a pull makes one per plan, of some 20 KB, and growing a buffer
 * by doubling copied each twice and touched fresh pages. */
char *cx_bundle(const cx_set *set, size_t *len)
{
    size_t size = sizeof BUNDLE_HEAD - 1 + 2; /* and "]}" */
    for (size_t i = 0; i < set->count; i++)
        size += (i > 0) + sizeof ENTRY_HEAD - 1 + set->len[i] + 1; /* [,]{"resource":...} */
    char *out = malloc(size + 1), *at = out;
    if (!out)
        return NULL;
    memcpy(at, BUNDLE_HEAD, sizeof BUNDLE_HEAD - 1), at += sizeof BUNDLE_HEAD - 1;
    for (size_t i = 0; i < set->count; i++) {
        if (i > 0)
            *at++ = ',';
        memcpy(at, ENTRY_HEAD, sizeof ENTRY_HEAD - 1), at += sizeof ENTRY_HEAD - 1;
        memcpy(at, set->json[i], set->len[i]), at += set->len[i];
        *at++ = '}';
    }
    memcpy(at, "]}", 3), at += 2;
    *len = (size_t)(at - out);
    return out;
}

/* ---- the store as a source ----------------------------------------------------------- */

static int store_read(void *self, const char *type, const char *id, char **json, size_t *len, char *msg, size_t msglen)
{
    st_resource r;
    st_error err;
    st_status s = st_read(self, type, id, &r, &err);
    if (s == ST_NOT_FOUND || s == ST_GONE || (s == ST_OK && r.deleted)) {
        if (s != ST_NOT_FOUND)
            st_resource_free(&r);
        return 404;
    }
    if (s != ST_OK) {
        snprintf(msg, msglen, "the store failed reading %s/%s: %s", type, id, err.message);
        return rest_status_of(s);
    }
    *json = malloc(r.json_len + 1);
    if (*json) {
        memcpy(*json, r.json, r.json_len + 1);
        *len = r.json_len;
    }
    st_resource_free(&r);
    return *json ? 0 : 503;
}

/* Run q and add every current match; 0, or the status with msg (what: the search, for the message). */
static int store_run(st_store *store, const st_query *q, const char *what, cx_add_fn add, void *arg, char *msg,
                     size_t msglen)
{
    st_list list;
    st_error err;
    st_status s = st_search(store, q, &list, &err);
    if (s != ST_OK) {
        snprintf(msg, msglen, "the store failed %s: %s", what, err.message);
        return rest_status_of(s);
    }
    for (size_t i = 0; i < list.count; i++)
        if (!list.items[i].deleted && list.items[i].json)
            add(arg, list.items[i].json, list.items[i].json_len);
    st_list_free(&list);
    return 0;
}

static int store_search_many(void *self, const char *type, const char *param, const char *const *refs, size_t n,
                             size_t limit, cx_add_fn add, void *arg, char *msg, size_t msglen)
{
    st_value *v = calloc(n ? n : 1, sizeof *v);
    char(*types)[64] = calloc(n ? n : 1, sizeof *types);
    size_t m = 0;
    for (size_t i = 0; v && types && i < n; i++) {
        const char *slash = strchr(refs[i], '/');
        if (!slash || (size_t)(slash - refs[i]) >= sizeof *types)
            continue;
        memcpy(types[m], refs[i], (size_t)(slash - refs[i]));
        types[m][slash - refs[i]] = '\0';
        v[m] = (st_value){.prefix = ST_EQ};
        v[m].v.reference.type = types[m];
        v[m].v.reference.id = slash + 1;
        m++;
    }
    int status = v && types ? 0 : 503;
    if (!status && m) {
        st_condition c = {.param = param, .kind = ST_KIND_REFERENCE, .values = v, .value_count = m};
        st_query q = {.type = type, .conditions = &c, .condition_count = 1, .count = limit};
        char what[2 * ST_ID_MAX + 96];
        snprintf(what, sizeof what, "searching %s?%s=%s%s", type, param, refs[0], m > 1 ? ",..." : "");
        status = store_run(self, &q, what, add, arg, msg, msglen);
    }
    free(v);
    free(types);
    return status;
}

static int store_search(void *self, const char *type, const char *param, const char *ref, cx_add_fn add, void *arg,
                        char *msg, size_t msglen)
{
    return store_search_many(self, type, param, &ref, 1, (size_t)LIM(compliance_context_max), add, arg, msg, msglen);
}

static int store_read_many(void *self, const char *type, const char *const *ids, size_t n, cx_add_fn add, void *arg,
                           char *msg, size_t msglen)
{
    st_value *v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return 503;
    for (size_t i = 0; i < n; i++)
        v[i].v.token.code = ids[i];
    st_condition c = {.param = "_id", .kind = ST_KIND_TOKEN, .values = v, .value_count = n};
    st_query q = {.type = type, .conditions = &c, .condition_count = 1, .count = n};
    char what[ST_ID_MAX + 96];
    snprintf(what, sizeof what, "reading %s/%s%s", type, n ? ids[0] : "", n > 1 ? ",..." : "");
    int status = n ? store_run(self, &q, what, add, arg, msg, msglen) : 0;
    free(v);
    return status;
}

cx_source cx_store_source(st_store *store)
{
    return (cx_source){store_read, store_search, store, store_read_many, store_search_many};
}
