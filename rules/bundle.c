/*
 * rules/bundle.c — the rule context over one parsed Bundle or resource
 * (rules/bundle.h). The entry index is the only allocation.
 */
#include <stdlib.h>
#include <string.h>

#include "fhir/reference.h"
#include "rules/bundle.h"
#include "rules/internal.h"

static void str_of(const fj_doc *d, uint32_t n, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    if (n != RL_NO_NODE && d->nodes[n].type == FJ_STRING) {
        *s = fj_str(d, n);
        *len = d->nodes[n].len;
    }
}

static bool add_entry(rl_bundle *b, uint32_t res, uint32_t full_url, size_t *cap)
{
    if (rl_get(b->doc, res, "resourceType") == RL_NO_NODE)
        return true;
    if (b->count == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        rl_entry *e = realloc(b->entries, *cap * sizeof *e);
        if (!e)
            return false;
        b->entries = e;
    }
    rl_entry *e = &b->entries[b->count++];
    e->node = res;
    str_of(b->doc, rl_get(b->doc, res, "resourceType"), &e->type, &e->type_len);
    str_of(b->doc, rl_get(b->doc, res, "id"), &e->id, &e->id_len);
    str_of(b->doc, full_url, &e->full_url, &e->full_url_len);
    return true;
}

bool rl_bundle_init(rl_bundle *b, const fj_doc *doc)
{
    memset(b, 0, sizeof *b);
    b->doc = doc;
    size_t cap = 0;
    if (!doc->count || rl_get(doc, 0, "resourceType") == RL_NO_NODE)
        return false;
    if (!rl_is(doc, rl_get(doc, 0, "resourceType"), "Bundle"))
        return add_entry(b, 0, RL_NO_NODE, &cap);
    uint32_t entries = rl_get(doc, 0, "entry");
    for (size_t i = 0; i < rl_len(doc, entries); i++) {
        uint32_t e = rl_at(doc, entries, i);
        if (!add_entry(b, rl_get(doc, e, "resource"), rl_get(doc, e, "fullUrl"), &cap))
            return false;
    }
    return true;
}

void rl_bundle_free(rl_bundle *b)
{
    free(b->entries);
    b->entries = NULL;
    b->count = 0;
}

static bool eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return a && b && alen == blen && !memcmp(a, b, alen);
}

rl_res rl_bundle_subject(const rl_bundle *b, const char *const *types, size_t n)
{
    for (size_t i = 0; i < b->count; i++)
        for (size_t t = 0; t < n; t++)
            if (eq(b->entries[i].type, b->entries[i].type_len, types[t], strlen(types[t])))
                return (rl_res){b->doc, b->entries[i].node};
    return (rl_res){b->doc, RL_NO_NODE};
}

static const rl_entry *find(const rl_bundle *b, const char *ref, size_t len)
{
    for (size_t i = 0; i < b->count; i++)
        if (eq(b->entries[i].full_url, b->entries[i].full_url_len, ref, len))
            return &b->entries[i];
    fr_parts p;
    if (!fr_parse(ref, len, &p))
        return NULL;
    for (size_t i = 0; i < b->count; i++)
        if (eq(b->entries[i].type, b->entries[i].type_len, p.type, p.type_len) &&
            eq(b->entries[i].id, b->entries[i].id_len, p.id, p.id_len))
            return &b->entries[i];
    return NULL;
}

static bool resolve(const void *self, rl_res from, const char *ref, size_t len, rl_res *out)
{
    const rl_bundle *b = self;
    (void)from;
    const rl_entry *e = find(b, ref, len);
    if (!e)
        return false;
    *out = (rl_res){b->doc, e->node};
    return true;
}

/* Does the Reference object ref (in b's doc) point at `of` (or read of_ref)? */
static bool points_at(const rl_bundle *b, uint32_t ref, rl_res of, const char *of_ref)
{
    const char *s;
    size_t len;
    str_of(b->doc, rl_get(b->doc, ref, "reference"), &s, &len);
    if (!s)
        return false;
    const rl_entry *e = find(b, s, len);
    if (e && of.node != RL_NO_NODE)
        return e->node == of.node;
    if (!of_ref)
        return false;
    fr_parts a, o;
    if (eq(s, len, of_ref, strlen(of_ref)))
        return true;
    return fr_parse(s, len, &a) && fr_parse(of_ref, strlen(of_ref), &o) && eq(a.type, a.type_len, o.type, o.type_len) &&
           eq(a.id, a.id_len, o.id, o.id_len);
}

/* Does any reference of resource res at element `path` (a member, list or single) point at of? */
static bool refers(const rl_bundle *b, uint32_t res, const char *member, rl_res of, const char *of_ref)
{
    uint32_t v = rl_get(b->doc, res, member);
    for (size_t i = 0; i < rl_len(b->doc, v); i++)
        if (points_at(b, rl_at(b->doc, v, i), of, of_ref))
            return true;
    return false;
}

/* Is Task t named by a handover extension of the stay `of`? */
static bool handover_of(const rl_bundle *b, const rl_entry *t, rl_res of)
{
    if (of.node == RL_NO_NODE)
        return false;
    uint32_t ext;
    for (int n = 0; rl_ext(of.doc, of.node, RL_URL "handover", n, &ext) >= 0; n++) {
        const char *s;
        size_t len;
        str_of(of.doc, rl_get(of.doc, rl_ext_value(of.doc, ext), "reference"), &s, &len);
        const rl_entry *e = s ? find(b, s, len) : NULL;
        if (e == t)
            return true;
    }
    return false;
}

static const char *const kind_type[RL_KIND_COUNT] = {"Coverage", "Encounter", "CareTeam", "PractitionerRole",
                                                     "Goal",     "Location",  "Task",     "Contract"};

static bool related_one(const rl_bundle *b, rl_kind kind, const rl_entry *e, rl_res of, const char *of_ref)
{
    switch (kind) {
    case RL_COVERAGE: return refers(b, e->node, "beneficiary", of, of_ref);
    case RL_ENCOUNTER:
        return refers(b, e->node, "subject", of, of_ref) || refers(b, e->node, "serviceProvider", of, of_ref);
    case RL_TASK: return handover_of(b, e, of) || refers(b, e->node, "encounter", of, of_ref);
    case RL_CONTRACT: return refers(b, e->node, "subject", of, of_ref);
    default: return true; /* reached by reference: every one of the kind */
    }
}

static void related(const void *self, rl_kind kind, rl_res of, const char *of_ref, rl_each_fn fn, void *arg)
{
    const rl_bundle *b = self;
    const char *type = kind_type[kind];
    for (size_t i = 0; i < b->count; i++) {
        const rl_entry *e = &b->entries[i];
        if (e->node == of.node || !eq(e->type, e->type_len, type, strlen(type)))
            continue;
        if (related_one(b, kind, e, of, of_ref) && !fn(arg, (rl_res){b->doc, e->node}))
            return;
    }
}

static const rl_context_ops bundle_ops = {resolve, related};

rl_context rl_bundle_context(const rl_bundle *b, rl_res subject, fdt_value date)
{
    return (rl_context){&bundle_ops, b, subject, date};
}
