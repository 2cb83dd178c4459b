/*
 * rules/checks.c — the named checks: the rules (or parts of rules) that
 * FHIRPath on one resource cannot decide, because they depend on the date
 * checked, on other resources of the context, or on attestations' validity.
 * One short function per check, registered by name in the table at the end;
 * a rule pack names them. Each adds findings to env->out; missing context
 * gives a warning (needs review). Nothing allocated but findings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

#define LOC 256
#define SNOMED "http://snomed.info/sct"

static const fj_doc *D(const rl_env *e)
{
    return e->ctx->subject.doc;
}

static uint32_t S(const rl_env *e)
{
    return e->ctx->subject.node;
}

static int64_t today(const rl_env *e)
{
    return rl_day(&e->ctx->date);
}

/* "Type/id" of a resource node into buf. */
static const char *ref_of(const fj_doc *d, uint32_t res, char *buf, size_t size)
{
    char t[64], id[128];
    snprintf(buf, size, "%s/%s", rl_text(d, rl_get(d, res, "resourceType"), t, sizeof t),
             rl_text(d, rl_get(d, res, "id"), id, sizeof id));
    return buf;
}

/* The subject's reference member (subject, serviceProvider) as written, and resolved. */
static const char *ref_text(const fj_doc *d, uint32_t ref_obj, char *buf, size_t size)
{
    return rl_text(d, rl_get(d, ref_obj, "reference"), buf, size);
}

/* ---- GZSP-LOCATION ---------------------------------------------------------- */

static void gzsp_location(const rl_env *e)
{
    const fj_doc *d = D(e);
    uint32_t acts = rl_get(d, S(e), "activity");
    for (size_t i = 0; i < rl_len(d, acts); i++) {
        uint32_t loc = rl_get(d, rl_get(d, rl_at(d, acts, i), "detail"), "location");
        if (loc == RL_NO_NODE)
            continue; /* the profile's cardinality says so */
        char where[LOC], ref[160];
        snprintf(where, sizeof where, "CarePlan.activity[%zu].detail.location", i);
        rl_res l;
        if (!rl_resolve_ref(e->ctx, e->ctx->subject, loc, &l)) {
            rl_add(e->out, e->rule, false, where, "%s not in the context", ref_text(d, loc, ref, sizeof ref));
            continue;
        }
        bool climate = false;
        uint32_t types = rl_get(l.doc, l.node, "type");
        for (size_t t = 0; t < rl_len(l.doc, types) && !climate; t++)
            climate = rl_has_code(l.doc, rl_at(l.doc, types, t), RL_CS "location-kind", "behandelklimaat");
        if (!climate)
            rl_add(e->out, e->rule, e->rule->error, where, "%s is not of kind behandelklimaat",
                   ref_text(d, loc, ref, sizeof ref));
    }
}

/* ---- GZSP-LEAD: the lead's BIG registration ---------------------------------- */

static bool has_big(const fj_doc *d, uint32_t role, int64_t day, bool *lapsed)
{
    uint32_t ids = rl_get(d, role, "identifier");
    for (size_t i = 0; i < rl_len(d, ids); i++) {
        uint32_t id = rl_at(d, ids, i);
        if (rl_is(d, rl_get(d, id, "system"), "http://fhir.nl/fhir/NamingSystem/big") &&
            rl_get(d, id, "value") != RL_NO_NODE) {
            if (rl_period_covers(d, rl_get(d, id, "period"), day))
                return true;
            *lapsed = true;
        }
    }
    return false;
}

static void lead_of_team(const rl_env *e, rl_res team, size_t t)
{
    uint32_t parts = rl_get(team.doc, team.node, "participant");
    for (size_t p = 0; p < rl_len(team.doc, parts); p++) {
        uint32_t part = rl_at(team.doc, parts, p), roles = rl_get(team.doc, part, "role");
        bool lead = false;
        for (size_t r = 0; r < rl_len(team.doc, roles); r++)
            lead |= rl_has_code(team.doc, rl_at(team.doc, roles, r), RL_CS "team-role", "regiebehandelaar");
        if (!lead)
            continue;
        char where[LOC], ref[160];
        snprintf(where, sizeof where, "CarePlan.careTeam[%zu].resolve().participant[%zu].member", t, p);
        uint32_t member = rl_get(team.doc, part, "member");
        rl_res role;
        bool lapsed = false;
        if (!rl_resolve_ref(e->ctx, team, member, &role))
            rl_add(e->out, e->rule, false, where, "%s not in the context: BIG registration not checked",
                   ref_text(team.doc, member, ref, sizeof ref));
        else if (!has_big(role.doc, role.node, today(e), &lapsed))
            rl_add(e->out, e->rule, e->rule->error, where,
                   lapsed ? "%s: BIG registration not valid on the date checked" : "%s has no BIG number",
                   ref_text(team.doc, member, ref, sizeof ref));
    }
}

static void gzsp_lead_big(const rl_env *e)
{
    const fj_doc *d = D(e);
    uint32_t teams = rl_get(d, S(e), "careTeam");
    for (size_t t = 0; t < rl_len(d, teams); t++) {
        rl_res team;
        if (rl_resolve_ref(e->ctx, e->ctx->subject, rl_at(d, teams, t), &team))
            lead_of_team(e, team, t); /* a team not in the context: the invariant's warning says so */
    }
}

/* ---- GZSP-EVAL: no gap of more than six months ---------------------------------- */

typedef struct eval_day {
    int64_t day;
    fdt_value v;
    int ext; /* index in CarePlan.extension, -1 for period.start */
} eval_day;

static int by_day(const void *a, const void *b)
{
    int64_t x = ((const eval_day *)a)->day, y = ((const eval_day *)b)->day;
    return x < y ? -1 : x > y;
}

static void where_of(const eval_day *ev, char *buf, size_t size)
{
    if (ev->ext < 0)
        snprintf(buf, size, "CarePlan.period.start");
    else
        snprintf(buf, size, "CarePlan.extension[%d]", ev->ext);
}

static void gzsp_eval_gap(const rl_env *e)
{
    const fj_doc *d = D(e);
    uint32_t period = rl_get(d, S(e), "period");
    eval_day days[64];
    size_t n = 0;
    if (!rl_date(d, rl_get(d, period, "start"), &days[0].v))
        return; /* the profile requires the start */
    days[0].day = rl_day(&days[0].v);
    days[0].ext = -1;
    n = 1;
    int64_t end = today(e);
    fdt_value v;
    if (rl_date(d, rl_get(d, period, "end"), &v) && rl_day(&v) < end)
        end = rl_day(&v);
    uint32_t ext;
    for (int k = 0; n < 64; k++) {
        int i = rl_ext(d, S(e), RL_URL "gzsp-evaluation", k, &ext);
        if (i < 0)
            break;
        uint32_t multi = rl_part(d, ext, "multidisciplinary", NULL);
        if (rl_date(d, rl_part(d, ext, "performed", NULL), &days[n].v) &&
            !(multi != RL_NO_NODE && d->nodes[multi].type == FJ_FALSE) && rl_day(&days[n].v) <= end) {
            days[n].day = rl_day(&days[n].v);
            days[n++].ext = i;
        }
    }
    qsort(days + 1, n - 1, sizeof *days, by_day);
    char where[LOC], a[11], b[11];
    for (size_t i = 0; i < n; i++) {
        int64_t next = i + 1 < n ? days[i + 1].day : end, limit = rl_day_plus_months(&days[i].v, 6);
        if (next > limit) {
            where_of(&days[i], where, sizeof where);
            rl_add(e->out, e->rule, e->rule->error, where, "no multidisciplinary evaluation from %s to %s (due by %s)",
                   rl_day_text(days[i].day, a), rl_day_text(next, b), rl_day_text(limit, (char[11]){0}));
        }
    }
}

/* ---- GZSP-EXIT: an exit criterion occurred during an active plan --------------- */

typedef struct admit_scan {
    const rl_env *e;
    int64_t from, to;
} admit_scan;

static bool admission(void *arg, rl_res r)
{
    admit_scan *s = arg;
    uint32_t cls = rl_get(r.doc, r.node, "class");
    if (!rl_is(r.doc, rl_get(r.doc, cls, "code"), "IMP") && !rl_is(r.doc, rl_get(r.doc, cls, "code"), "ACUTE") &&
        !rl_is(r.doc, rl_get(r.doc, cls, "code"), "NONAC"))
        return true;
    fdt_value v;
    if (!rl_date(r.doc, rl_get(r.doc, rl_get(r.doc, r.node, "period"), "start"), &v))
        return true;
    int64_t day = rl_day(&v);
    if (day >= s->from && day <= s->to) {
        char ref[160], t[11];
        rl_add(s->e->out, s->e->rule, false, "CarePlan.status", "clinical admission %s on %s during the active plan",
               ref_of(r.doc, r.node, ref, sizeof ref), rl_day_text(day, t));
    }
    return true;
}

static void gzsp_exit_occurred(const rl_env *e)
{
    const fj_doc *d = D(e);
    if (!rl_is(d, rl_get(d, S(e), "status"), "active") && !rl_is(d, rl_get(d, S(e), "status"), "on-hold"))
        return;
    fdt_value start;
    if (!rl_date(d, rl_get(d, rl_get(d, S(e), "period"), "start"), &start))
        return;
    admit_scan s = {e, rl_day(&start), today(e)};
    uint32_t subj = rl_get(d, S(e), "subject");
    rl_res patient = {d, RL_NO_NODE};
    rl_resolve_ref(e->ctx, e->ctx->subject, subj, &patient);
    char ref[160];
    rl_related(e->ctx, RL_ENCOUNTER, patient, ref_text(d, subj, ref, sizeof ref), admission, &s);
}

/* ---- GZSP-WLZ: a Wlz indication during the plan ---------------------------------- */

static bool wlz(void *arg, rl_res r)
{
    admit_scan *s = arg;
    if (!rl_has_code(r.doc, rl_get(r.doc, r.node, "type"), RL_CS "coverage-kind", "wlz-indicatie") ||
        rl_is(r.doc, rl_get(r.doc, r.node, "status"), "cancelled") ||
        rl_is(r.doc, rl_get(r.doc, r.node, "status"), "entered-in-error"))
        return true;
    uint32_t period = rl_get(r.doc, r.node, "period");
    fdt_value v;
    int64_t from = rl_date(r.doc, rl_get(r.doc, period, "start"), &v) ? rl_day(&v) : INT64_MIN;
    int64_t to = rl_date(r.doc, rl_get(r.doc, period, "end"), &v) ? rl_day(&v) : INT64_MAX;
    if (from <= s->to && to >= s->from) {
        char ref[160], t[11];
        rl_add(s->e->out, s->e->rule, s->e->rule->error, "CarePlan.subject", "%s: Wlz indication from %s",
               ref_of(r.doc, r.node, ref, sizeof ref), from == INT64_MIN ? "?" : rl_day_text(from, t));
    }
    return true;
}

static void gzsp_wlz(const rl_env *e)
{
    const fj_doc *d = D(e);
    uint32_t period = rl_get(d, S(e), "period");
    fdt_value v;
    admit_scan s = {e, rl_date(d, rl_get(d, period, "start"), &v) ? rl_day(&v) : INT64_MIN, today(e)};
    if (rl_date(d, rl_get(d, period, "end"), &v) && rl_day(&v) < s.to)
        s.to = rl_day(&v);
    uint32_t subj = rl_get(d, S(e), "subject");
    rl_res patient = {d, RL_NO_NODE};
    rl_resolve_ref(e->ctx, e->ctx->subject, subj, &patient);
    char ref[160];
    rl_related(e->ctx, RL_COVERAGE, patient, ref_text(d, subj, ref, sizeof ref), wlz, &s);
}

/* ---- provider attestations ---------------------------------------------------- */

typedef enum { ATT_MISSING, ATT_LAPSED, ATT_VALID } att_state;

/* The state of requirement code[0..len) among org's attestations; where = the lapsed one's validUntil. */
static att_state attested(const fj_doc *d, uint32_t org, const char *code, size_t len, int64_t day, char *where,
                          size_t size)
{
    att_state best = ATT_MISSING;
    uint32_t ext;
    for (int n = 0;; n++) {
        int i = rl_ext(d, org, RL_URL "attestation", n, &ext);
        if (i < 0)
            return best;
        uint32_t c = rl_get(d, rl_part(d, ext, "requirement", NULL), "code");
        if (c == RL_NO_NODE || d->nodes[c].len != len || memcmp(fj_str(d, c), code, len))
            continue;
        int vi;
        fdt_value v;
        if (rl_date(d, rl_part(d, ext, "validUntil", &vi), &v) && rl_day(&v) >= day)
            return ATT_VALID;
        if (best == ATT_MISSING)
            snprintf(where, size, "Organization.extension[%d].extension[%d]", i, vi < 0 ? 0 : vi);
        best = ATT_LAPSED;
    }
}

/* One demand "a|b+c": satisfied, else the finding it gives. */
static void demand(const rl_env *e, const char *item)
{
    const fj_doc *d = D(e);
    char lapsed_at[LOC] = "";
    const char *lapsed_code = NULL;
    size_t lapsed_len = 0;
    for (const char *alt = item; alt;) {
        const char *bar = strchr(alt, '|'), *end = bar ? bar : alt + strlen(alt);
        bool all = true;
        for (const char *c = alt; c < end;) {
            const char *plus = memchr(c, '+', (size_t)(end - c)), *ce = plus ? plus : end;
            char at[LOC];
            att_state st = attested(d, S(e), c, (size_t)(ce - c), today(e), at, sizeof at);
            if (st != ATT_VALID) {
                all = false;
                if (st == ATT_LAPSED && !lapsed_code) {
                    snprintf(lapsed_at, sizeof lapsed_at, "%s", at);
                    lapsed_code = c;
                    lapsed_len = (size_t)(ce - c);
                }
            }
            c = plus ? plus + 1 : end;
        }
        if (all)
            return;
        alt = bar ? bar + 1 : NULL;
    }
    if (lapsed_code)
        rl_add(e->out, e->rule, e->rule->error, lapsed_at, "attestation %.*s lapsed before the date checked",
               (int)lapsed_len, lapsed_code);
    else
        rl_add(e->out, e->rule, false, "Organization.extension", "not attested: %s", item);
}

static void attestations(const rl_env *e)
{
    for (size_t g = 0; g < e->rule->attest_count; g++)
        if (rl_when(e->ctx, S(e), e->rule->attest[g].when, NULL, 0))
            for (size_t i = 0; i < e->rule->attest[g].count; i++)
                demand(e, e->rule->attest[g].items[i]);
}

/* ---- GZSP-NETWORK ---------------------------------------------------------------- */

static bool member_of(const fj_doc *d, uint32_t org, const char *network, int64_t day)
{
    uint32_t ext;
    for (int n = 0; rl_ext(d, org, RL_URL "membership", n, &ext) >= 0; n++)
        if (rl_is(d, rl_get(d, rl_part(d, ext, "network", NULL), "code"), network) &&
            rl_period_covers(d, rl_part(d, ext, "period", NULL), day))
            return true;
    return false;
}

static void gzsp_networks(const rl_env *e)
{
    for (size_t g = 0; g < e->rule->network_count; g++) {
        const rl_demands *nw = &e->rule->networks[g];
        char where[LOC];
        if (!rl_when(e->ctx, S(e), nw->when, where, sizeof where))
            continue;
        bool any = false;
        for (size_t i = 0; i < nw->count && !any; i++)
            any = member_of(D(e), S(e), nw->items[i], today(e));
        if (!any)
            rl_add(e->out, e->rule, e->rule->error, where, "offers %s without membership of %s%s", nw->when,
                   nw->items[0], nw->count > 1 ? " or another fitting network" : "");
    }
}

/* ---- contracts ---------------------------------------------------------------- */

typedef struct contract_scan {
    const char *kind, *variant;
    int64_t day;
    bool found;
} contract_scan;

static bool contract(void *arg, rl_res r)
{
    contract_scan *s = arg;
    uint32_t st = rl_get(r.doc, r.node, "status");
    if (!rl_is(r.doc, st, "executed") && !rl_is(r.doc, st, "renewed") && !rl_is(r.doc, st, "amended"))
        return true;
    if (!rl_has_code(r.doc, rl_get(r.doc, r.node, "type"), RL_CS "care-kind", s->kind) ||
        !rl_period_covers(r.doc, rl_get(r.doc, r.node, "applies"), s->day))
        return true;
    if (s->variant) {
        uint32_t subs = rl_get(r.doc, r.node, "subType");
        bool has = false;
        for (size_t i = 0; i < rl_len(r.doc, subs) && !has; i++)
            has = rl_has_code(r.doc, rl_at(r.doc, subs, i), RL_CS "care-kind", s->variant);
        if (!has)
            return true;
    }
    s->found = true;
    return false;
}

/* Is the provider (org, as written: org_ref) contracted for kind (and variant) on day? */
static bool contracted(const rl_context *c, rl_res org, const char *org_ref, const char *kind, const char *variant,
                       int64_t day)
{
    contract_scan s = {kind, variant, day, false};
    rl_related(c, RL_CONTRACT, org, org_ref, contract, &s);
    return s.found;
}

static void triage_contracts(const rl_env *e)
{
    char where[LOC], ref[160];
    if (!rl_offers(D(e), S(e), "elv-triage", where, sizeof where))
        return;
    ref_of(D(e), S(e), ref, sizeof ref);
    bool elv = contracted(e->ctx, e->ctx->subject, ref, "elv", "elv-triage", today(e));
    bool grz = contracted(e->ctx, e->ctx->subject, ref, "grz", NULL, today(e));
    if (!elv || !grz)
        rl_add(e->out, e->rule, e->rule->error, where, "triage beds without a contract in force for %s",
               !elv && !grz ? "ELV (triage) and GRZ"
               : !elv       ? "ELV (triage)"
                            : "GRZ");
}

static void stay_high_contract(const rl_env *e)
{
    const fj_doc *d = D(e);
    uint32_t type = rl_at(d, rl_get(d, S(e), "type"), 0);
    const char *variant = rl_has_code(d, type, RL_CS "care-kind", "elv-hoogcomplex") ? "elv-hoogcomplex"
                          : rl_has_code(d, type, RL_CS "care-kind", "elv-triage")    ? "elv-triage"
                                                                                     : NULL;
    fdt_value start;
    if (!variant || !rl_date(d, rl_get(d, rl_get(d, S(e), "period"), "start"), &start))
        return;
    uint32_t sp = rl_get(d, S(e), "serviceProvider");
    char ref[160];
    rl_res org = {d, RL_NO_NODE};
    rl_resolve_ref(e->ctx, e->ctx->subject, sp, &org);
    ref_text(d, sp, ref, sizeof ref);
    bool elv = contracted(e->ctx, org, ref, "elv", variant, rl_day(&start));
    bool grz = contracted(e->ctx, org, ref, "grz", NULL, rl_day(&start));
    if (!elv || !grz)
        rl_add(e->out, e->rule, e->rule->error, "Encounter.serviceProvider", "%s: no contract in force for %s on %s",
               ref,
               !elv && !grz ? "ELV and GRZ"
               : !elv       ? "ELV"
                            : "GRZ",
               rl_day_text(rl_day(&start), (char[11]){0}));
}

/* ---- stays ---------------------------------------------------------------------- */

static bool is_kind(const fj_doc *d, uint32_t enc, const char *prefix)
{
    uint32_t types = rl_get(d, enc, "type");
    for (size_t t = 0; t < rl_len(d, types); t++)
        if (rl_starts(d, rl_code_in(d, rl_at(d, types, t), RL_CS "care-kind"), prefix))
            return true;
    return false;
}

/* An ongoing stay of kind prefix that started more than `months`/`days` before the date checked. */
static void ongoing_limit(const rl_env *e, const char *prefix, int months, int days, bool exception_counts)
{
    const fj_doc *d = D(e);
    uint32_t period = rl_get(d, S(e), "period");
    fdt_value start;
    if (!is_kind(d, S(e), prefix) || rl_get(d, period, "end") != RL_NO_NODE ||
        !rl_date(d, rl_get(d, period, "start"), &start))
        return;
    uint32_t ext;
    if (exception_counts && rl_ext(d, S(e), RL_URL "stay-exception-approved", 0, &ext) >= 0 &&
        d->nodes[rl_ext_value(d, ext)].type == FJ_TRUE)
        return;
    int64_t limit = months ? rl_day_plus_months(&start, months) : rl_day(&start) + days;
    if (today(e) > limit) {
        char a[11], b[11];
        rl_add(e->out, e->rule, e->rule->error, "Encounter.period", "admitted %s, still in progress on %s (limit %s)",
               rl_day_text(rl_day(&start), a), rl_day_text(today(e), b), rl_day_text(limit, (char[11]){0}));
    }
}

static void grz_maxstay_ongoing(const rl_env *e)
{
    ongoing_limit(e, "grz-", 6, 0, true);
}

static void triage_ongoing(const rl_env *e)
{
    if (is_kind(D(e), S(e), "elv-triage"))
        ongoing_limit(e, "elv-triage", 0, 14, false);
}

typedef struct handover_scan {
    rl_res provider;
    const char *provider_ref;
    bool in, out;
} handover_scan;

/* Does Reference ref (in r) name the provider? */
static bool names(const rl_context *c, rl_res r, uint32_t ref, const handover_scan *s)
{
    rl_res t;
    if (s->provider.node != RL_NO_NODE && rl_resolve_ref(c, r, ref, &t))
        return t.node == s->provider.node && t.doc == s->provider.doc;
    char buf[160];
    return s->provider_ref && !strcmp(ref_text(r.doc, ref, buf, sizeof buf), s->provider_ref);
}

typedef struct handover_ctx {
    const rl_context *c;
    handover_scan *s;
} handover_ctx;

static bool handover(void *arg, rl_res r)
{
    handover_ctx *h = arg;
    uint32_t st = rl_get(r.doc, r.node, "status");
    if (!rl_has_code(r.doc, rl_get(r.doc, r.node, "code"), SNOMED, "308292007") || rl_is(r.doc, st, "cancelled") ||
        rl_is(r.doc, st, "rejected") || rl_is(r.doc, st, "entered-in-error"))
        return true;
    if (names(h->c, r, rl_get(r.doc, r.node, "owner"), h->s))
        h->s->in = true;
    else if (names(h->c, r, rl_get(r.doc, r.node, "requester"), h->s))
        h->s->out = true;
    return true;
}

static void elv_stay_handover(const rl_env *e)
{
    const fj_doc *d = D(e);
    if (!is_kind(d, S(e), "elv-"))
        return;
    uint32_t sp = rl_get(d, S(e), "serviceProvider"), hosp = rl_get(d, S(e), "hospitalization");
    char ref[160];
    handover_scan s = {{d, RL_NO_NODE}, ref_text(d, sp, ref, sizeof ref), false, false};
    rl_resolve_ref(e->ctx, e->ctx->subject, sp, &s.provider);
    handover_ctx h = {e->ctx, &s};
    rl_related(e->ctx, RL_TASK, e->ctx->subject, NULL, handover, &h);
    uint32_t ext;
    for (int n = 0, i; (i = rl_ext(d, S(e), RL_URL "handover", n, &ext)) >= 0; n++) {
        rl_res t;
        if (!rl_resolve_ref(e->ctx, e->ctx->subject, rl_ext_value(d, ext), &t)) {
            char where[LOC], tr[160];
            snprintf(where, sizeof where, "Encounter.extension[%d]", i);
            rl_add(e->out, e->rule, false, where, "handover %s not in the context",
                   ref_text(d, rl_ext_value(d, ext), tr, sizeof tr));
        }
    }
    uint32_t src = rl_get(d, hosp, "admitSource");
    if (!s.in && (rl_has_code(d, src, NULL, "hosp-trans") || rl_has_code(d, src, NULL, "gp") ||
                  rl_has_code(d, src, NULL, "emd") || src == RL_NO_NODE))
        rl_add(e->out, e->rule, e->rule->error, "Encounter.hospitalization.admitSource",
               "no handover to %s at admission", ref);
    if (!s.out && rl_is(d, rl_get(d, S(e), "status"), "finished") &&
        rl_has_code(d, rl_get(d, hosp, "dischargeDisposition"), NULL, "home"))
        rl_add(e->out, e->rule, e->rule->error, "Encounter.hospitalization.dischargeDisposition",
               "no handover from %s to the GP at discharge home", ref);
}

/* ---- GRZ-ADMIT48 over the provider's stays --------------------------------------- */

static bool late_admission(void *arg, rl_res r)
{
    const rl_env *e = arg;
    uint32_t ext;
    fdt_value go, start;
    if (!is_kind(r.doc, r.node, "grz-") || rl_ext(r.doc, r.node, RL_URL "specialist-go-ahead", 0, &ext) < 0 ||
        !rl_date(r.doc, rl_ext_value(r.doc, ext), &go) ||
        !rl_date(r.doc, rl_get(r.doc, rl_get(r.doc, r.node, "period"), "start"), &start))
        return true;
    int64_t ms = fdt_to_epoch_ms(&start) - fdt_to_epoch_ms(&go);
    if (ms > 48LL * 3600 * 1000) {
        char ref[160];
        rl_add(e->out, e->rule, false, "Organization", "%s admitted %.1f h after the specialist's go-ahead",
               ref_of(r.doc, r.node, ref, sizeof ref), (double)ms / 3600000.0);
    }
    return true;
}

static void grz_admit48_stays(const rl_env *e)
{
    char ref[160];
    if (rl_offers(D(e), S(e), "grz", NULL, 0))
        rl_related(e->ctx, RL_ENCOUNTER, e->ctx->subject, ref_of(D(e), S(e), ref, sizeof ref), late_admission,
                   (void *)e);
}

/* ---- the table -------------------------------------------------------------------- */

static const rl_check_def checks[] = {
    {"gzsp-location", gzsp_location},
    {"gzsp-lead-big", gzsp_lead_big},
    {"gzsp-eval-gap", gzsp_eval_gap},
    {"gzsp-exit-occurred", gzsp_exit_occurred},
    {"gzsp-wlz", gzsp_wlz},
    {"attestations", attestations},
    {"gzsp-networks", gzsp_networks},
    {"triage-contracts", triage_contracts},
    {"grz-admit48-stays", grz_admit48_stays},
    {"grz-maxstay-ongoing", grz_maxstay_ongoing},
    {"triage-ongoing", triage_ongoing},
    {"elv-stay-handover", elv_stay_handover},
    {"stay-high-contract", stay_high_contract},
};

const rl_check_def *rl_check_find(const char *name)
{
    for (size_t i = 0; i < sizeof checks / sizeof *checks; i++)
        if (!strcmp(checks[i].name, name))
            return &checks[i];
    return NULL;
}
