/*
 * rules/check.c — the engine: a pack's rules over one subject (rules/check.h).
 *
 * Invariant rules: the rules of one subject type, profile and `on` form a
 * group; at engine creation each group gets the profile's invariants with its
 * rule keys (pf_invariants: compiled once, with the elements that lead to
 * them). Per subject, the group's invariants alone are evaluated on the
 * subject (or each resource its element `on` refers to), not the rest of the
 * profile, and each failure becomes a finding at the validator's FHIRPath
 * location: the issues are pf_validate's for those keys. The key is read from
 * the issue: profile.c writes an invariant failure as code "invariant" and
 * message "<key>: <human>". The profile says warning (breaking a
 * contracting rule leaves the resource valid FHIR, ig/README.md); the finding
 * takes the pack's severity. Other profile issues (cardinality, fgw-* format
 * checks) are the validator's business, not findings.
 * Named checks: the C functions of rules/checks.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

#define MAX_TYPES 8

/*
 * The rules of one subject type whose invariants sit in one profile and are
 * evaluated on one element (the subject itself, or the resources its `on`
 * element refers to): one walk of the profile answers them all.
 */
typedef struct rl_group {
    const char *type, *on; /* on: "" for the subject */
    const pf_profile *profile;
    pf_invariants *invariants; /* the group's rule keys, compiled once */
} rl_group;

struct rl_engine {
    const rl_pack *pack;
    const pf_registry *registry;
    const pf_profile **profiles; /* per rule: its invariant's profile, or NULL */
    rl_group *groups;
    size_t group_count;
    const char *types[MAX_TYPES];
    size_t type_count;
};

static const char *on_of(const rl_rule *r)
{
    return r->invariant_on ? r->invariant_on : "";
}

static bool in_group(const rl_engine *e, size_t i, const rl_group *g)
{
    return e->profiles[i] == g->profile && !strcmp(e->pack->rules[i].subject, g->type) &&
           !strcmp(on_of(&e->pack->rules[i]), g->on);
}

/* One group per (subject type, profile, on), in the order of the group's first rule. */
static bool make_groups(rl_engine *e)
{
    e->groups = calloc(e->pack->count ? e->pack->count : 1, sizeof *e->groups);
    if (!e->groups)
        return false;
    for (size_t i = 0; i < e->pack->count; i++) {
        const rl_rule *r = &e->pack->rules[i];
        bool known = !e->profiles[i];
        for (size_t g = 0; g < e->group_count && !known; g++)
            known = in_group(e, i, &e->groups[g]);
        if (known)
            continue;
        rl_group *g = &e->groups[e->group_count++];
        *g = (rl_group){r->subject, on_of(r), e->profiles[i], NULL};
        const char **keys = malloc((e->pack->count - i) * sizeof *keys);
        size_t n = 0;
        for (size_t k = i; keys && k < e->pack->count; k++)
            if (in_group(e, k, g))
                keys[n++] = e->pack->rules[k].invariant_key;
        g->invariants = keys ? pf_invariants_new(e->registry, g->profile, keys, n) : NULL;
        free(keys);
        if (!g->invariants)
            return false;
    }
    return true;
}

rl_engine *rl_engine_new(const rl_pack *pack, const pf_registry *registry, oo_list *issues)
{
    rl_engine *e = calloc(1, sizeof *e);
    e->pack = pack;
    e->registry = registry;
    e->profiles = calloc(pack->count ? pack->count : 1, sizeof *e->profiles);
    bool ok = true;
    for (size_t i = 0; i < pack->count; i++) {
        const rl_rule *r = &pack->rules[i];
        if (r->invariant_profile && !(e->profiles[i] = registry ? pf_find(registry, r->invariant_profile) : NULL)) {
            oo_add(issues, OO_ERROR, OO_NOT_FOUND, NULL, 0, 0, "rule %s: profile %s is not loaded", r->id,
                   r->invariant_profile);
            ok = false;
        }
        bool known = false;
        for (size_t t = 0; t < e->type_count; t++)
            known |= !strcmp(e->types[t], r->subject);
        if (!known && e->type_count < MAX_TYPES)
            e->types[e->type_count++] = r->subject;
    }
    if (!ok || !make_groups(e)) {
        rl_engine_free(e);
        return NULL;
    }
    return e;
}

void rl_engine_free(rl_engine *e)
{
    if (!e)
        return;
    for (size_t g = 0; g < e->group_count; g++)
        pf_invariants_free(e->groups[g].invariants);
    free(e->groups);
    free(e->profiles);
    free(e);
}

const rl_pack *rl_engine_pack(const rl_engine *e)
{
    return e->pack;
}

const char *const *rl_engine_subject_types(const rl_engine *e, size_t *n)
{
    *n = e->type_count;
    return e->types;
}

/* The rule of group g whose key starts issue message msg ("KEY: ..."), or NULL. */
static const rl_rule *rule_of_issue(const rl_engine *e, const rl_group *g, const oo_issue *is)
{
    if (strcmp(is->code, OO_INVARIANT) || !is->message)
        return NULL;
    for (size_t i = 0; i < e->pack->count; i++) {
        const rl_rule *r = &e->pack->rules[i];
        size_t n = r->invariant_key ? strlen(r->invariant_key) : 0;
        if (in_group(e, i, g) && !strncmp(is->message, r->invariant_key, n) && is->message[n] == ':')
            return r;
    }
    return NULL;
}

/* The group's invariants over res (base path); each failure becomes a finding. */
static void invariants_of(const rl_engine *e, const rl_group *g, rl_res res, const char *base, rl_report *out)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_check_invariants(g->invariants, (fj_doc *)res.doc, res.node, base, &issues);
    for (size_t i = 0; i < issues.count; i++) {
        const oo_issue *is = &issues.items[i];
        const rl_rule *r = rule_of_issue(e, g, is);
        if (r)
            rl_add(out, r, r->error, is->expression ? is->expression : base, NULL); /* the pack's severity */
    }
    oo_list_free(&issues);
}

/* Every rule of the group gets a warning: the resource at where is not in the context. */
static void undecided(const rl_engine *e, const rl_group *g, const char *where, const char *ref, rl_report *out)
{
    for (size_t i = 0; i < e->pack->count; i++)
        if (in_group(e, i, g))
            rl_add(out, &e->pack->rules[i], false, where, "%s not in the context", ref);
}

/* The invariants of one group. */
static void run_group(const rl_engine *e, const rl_context *ctx, const rl_group *g, rl_report *out)
{
    if (!*g->on) {
        invariants_of(e, g, ctx->subject, "", out);
        return;
    }
    const fj_doc *d = ctx->subject.doc;
    uint32_t refs = rl_get(d, ctx->subject.node, g->on);
    for (size_t i = 0; i < rl_len(d, refs); i++) {
        char base[256], ref[160];
        snprintf(base, sizeof base, "%s.%s[%zu]", g->type, g->on, i);
        rl_res target;
        uint32_t r = rl_at(d, refs, i);
        if (!rl_resolve_ref(ctx, ctx->subject, r, &target)) {
            undecided(e, g, base, rl_text(d, rl_get(d, r, "reference"), ref, sizeof ref), out);
            continue;
        }
        snprintf(base, sizeof base, "%s.%s[%zu].resolve()", g->type, g->on, i);
        invariants_of(e, g, target, base, out);
    }
}

static void run_invariants(const rl_engine *e, const rl_context *ctx, const char *type, rl_report *out)
{
    for (size_t g = 0; g < e->group_count; g++)
        if (!strcmp(e->groups[g].type, type))
            run_group(e, ctx, &e->groups[g], out);
}

/* Findings in pack order, then by location: the report reads the same every run. */
static int by_rule(const void *a, const void *b)
{
    const rl_finding *x = a, *y = b;
    if (x->rule != y->rule)
        return x->rule < y->rule ? -1 : 1;
    return strcmp(x->location, y->location);
}

bool rl_check(const rl_engine *e, const rl_context *ctx, rl_report *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    out->pack = e->pack->version;
    const fj_doc *d = ctx->subject.doc;
    char type[64] = "", id[160] = "";
    if (ctx->subject.node != RL_NO_NODE) {
        rl_text(d, rl_get(d, ctx->subject.node, "resourceType"), type, sizeof type);
        rl_text(d, rl_get(d, ctx->subject.node, "id"), id, sizeof id);
    }
    snprintf(out->subject, sizeof out->subject, "%s%s%s", type, *id ? "/" : "", id);
    rl_day_text(rl_day(&ctx->date), out->checked);
    size_t applied = 0;
    for (size_t i = 0; i < e->pack->count; i++)
        applied += !strcmp(e->pack->rules[i].subject, type);
    if (!applied) {
        snprintf(err, err_size, "no rules of pack %s check a %s", e->pack->version, *type ? type : "non-resource");
        return false;
    }
    run_invariants(e, ctx, type, out);
    for (size_t i = 0; i < e->pack->count; i++) {
        const rl_rule *r = &e->pack->rules[i];
        if (strcmp(r->subject, type))
            continue;
        rl_env env = {ctx, r, out};
        for (size_t c = 0; c < r->check_count; c++)
            r->checks[c]->run(&env);
    }
    if (out->count)
        qsort(out->items, out->count, sizeof *out->items, by_rule);
    return true;
}

rl_status rl_report_status(const rl_report *r)
{
    return r->errors ? RL_NON_COMPLIANT : r->warnings ? RL_NEEDS_REVIEW : RL_COMPLIANT;
}

const char *rl_status_code(rl_status s)
{
    return s == RL_NON_COMPLIANT ? "non-compliant" : s == RL_NEEDS_REVIEW ? "needs-review" : "compliant";
}

void rl_report_free(rl_report *r)
{
    for (size_t i = 0; i < r->count; i++) {
        free(r->items[i].location);
        free(r->items[i].detail);
    }
    free(r->items);
    memset(r, 0, sizeof *r);
}
