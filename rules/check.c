/*
 * rules/check.c — the engine: a pack's rules over one subject (rules/check.h).
 *
 * Invariant rules: the subject (or each resource its element `on` refers to)
 * is validated against the rule's profile once per profile, and each
 * invariant failure whose key is the rule id becomes a finding at the
 * validator's FHIRPath location. The key is read from the issue: profile.c
 * writes an invariant failure as code "invariant" and message "<key>: <human>",
 * and only keys the pack names are kept. The profile says warning (breaking a
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

struct rl_engine {
    const rl_pack *pack;
    const pf_registry *registry;
    const pf_profile **profiles; /* per rule: its invariant's profile, or NULL */
    const char *types[MAX_TYPES];
    size_t type_count;
};

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
    if (!ok) {
        rl_engine_free(e);
        return NULL;
    }
    return e;
}

void rl_engine_free(rl_engine *e)
{
    if (!e)
        return;
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

/* The rule of this subject type and profile whose key starts issue message msg ("KEY: ..."), or NULL. */
static const rl_rule *rule_of_issue(const rl_engine *e, const char *type, const pf_profile *p, const char *on,
                                    const oo_issue *is)
{
    if (strcmp(is->code, OO_INVARIANT) || !is->message)
        return NULL;
    for (size_t i = 0; i < e->pack->count; i++) {
        const rl_rule *r = &e->pack->rules[i];
        size_t n = r->invariant_key ? strlen(r->invariant_key) : 0;
        if (e->profiles[i] == p && !strcmp(r->subject, type) && !strcmp(r->invariant_on ? r->invariant_on : "", on) &&
            !strncmp(is->message, r->invariant_key, n) && is->message[n] == ':')
            return r;
    }
    return NULL;
}

/* Validate res against p (base path) and turn its rule-keyed invariant failures into findings. */
static void invariants_of(const rl_engine *e, const char *type, const pf_profile *p, const char *on, rl_res res,
                          const char *base, rl_report *out)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_validate(e->registry, p, (fj_doc *)res.doc, res.node, base, &issues);
    for (size_t i = 0; i < issues.count; i++) {
        const oo_issue *is = &issues.items[i];
        const rl_rule *r = rule_of_issue(e, type, p, on, is);
        if (r)
            rl_add(out, r, r->error, is->expression ? is->expression : base, NULL); /* the pack's severity */
    }
    oo_list_free(&issues);
}

/* Every rule of (type, profile, on) gets a warning: the resource at where is not in the context. */
static void undecided(const rl_engine *e, const char *type, const pf_profile *p, const char *on, const char *where,
                      const char *ref, rl_report *out)
{
    for (size_t i = 0; i < e->pack->count; i++) {
        const rl_rule *r = &e->pack->rules[i];
        if (e->profiles[i] == p && !strcmp(r->subject, type) && r->invariant_on && !strcmp(r->invariant_on, on))
            rl_add(out, r, false, where, "%s not in the context", ref);
    }
}

/* The invariants of one (profile, on) group. */
static void run_group(const rl_engine *e, const rl_context *ctx, const char *type, const pf_profile *p, const char *on,
                      rl_report *out)
{
    if (!*on) {
        invariants_of(e, type, p, on, ctx->subject, "", out);
        return;
    }
    const fj_doc *d = ctx->subject.doc;
    uint32_t refs = rl_get(d, ctx->subject.node, on);
    for (size_t i = 0; i < rl_len(d, refs); i++) {
        char base[256], ref[160];
        snprintf(base, sizeof base, "%s.%s[%zu]", type, on, i);
        rl_res target;
        uint32_t r = rl_at(d, refs, i);
        if (!rl_resolve_ref(ctx, ctx->subject, r, &target)) {
            undecided(e, type, p, on, base, rl_text(d, rl_get(d, r, "reference"), ref, sizeof ref), out);
            continue;
        }
        snprintf(base, sizeof base, "%s.%s[%zu].resolve()", type, on, i);
        invariants_of(e, type, p, on, target, base, out);
    }
}

static void run_invariants(const rl_engine *e, const rl_context *ctx, const char *type, rl_report *out)
{
    for (size_t i = 0; i < e->pack->count; i++) {
        const rl_rule *r = &e->pack->rules[i];
        if (!e->profiles[i] || strcmp(r->subject, type))
            continue;
        bool first = true; /* the first rule of its (profile, on) group runs the group */
        const char *on = r->invariant_on ? r->invariant_on : "";
        for (size_t k = 0; k < i && first; k++)
            first = !(e->profiles[k] == e->profiles[i] && !strcmp(e->pack->rules[k].subject, type) &&
                      !strcmp(e->pack->rules[k].invariant_on ? e->pack->rules[k].invariant_on : "", on));
        if (first)
            run_group(e, ctx, type, e->profiles[i], on, out);
    }
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
