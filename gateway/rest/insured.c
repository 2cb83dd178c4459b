/*
 * gateway/rest/insured.c — who is insured by whom (see insured.h).
 */
#include "gateway/rest/insured.h"

#include <stdio.h>
#include <string.h>

#include "fhir/datetime.h"

#define PAGE 50

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                             : NULL;
}

/* Does an identifier array (or single identifier) carry the UZOVI? */
static bool has_uzovi(json_object *ids, const char *uzovi)
{
    if (json_object_is_type(ids, json_type_object)) {
        const char *sys = jstr(ids, "system"), *val = jstr(ids, "value");
        return sys && val && !strcmp(sys, INS_UZOVI_SYSTEM) && !strcmp(val, uzovi);
    }
    size_t n = json_object_is_type(ids, json_type_array) ? json_object_array_length(ids) : 0;
    for (size_t i = 0; i < n; i++)
        if (has_uzovi(json_object_array_get_idx(ids, i), uzovi))
            return true;
    return false;
}

/*
 * Does one payor Reference carry the UZOVI: its own identifier, or the
 * Organization it names here: a registered insurer's directory entry by the
 * registry's UZOVI, any other by its identifiers?
 */
static bool payor_carries(const ins_facts *f, json_object *payor, const char *uzovi)
{
    if (has_uzovi(json_object_object_get(payor, "identifier"), uzovi))
        return true;
    const char *ref = jstr(payor, "reference");
    if (!ref || strncmp(ref, "Organization/", 13) || strchr(ref + 13, '/'))
        return false;
    st_resource org;
    st_error err;
    if (st_read(f->store, "Organization", ref + 13, &org, &err) != ST_OK)
        return false;
    const char *ura = !strncmp(org.id, "ura-", 4) ? org.id + 4 : NULL;
    const id_entry *e = ura && !strcmp(org.owner, ura) ? id_lookup_ura(f->organisations, ura) : NULL;
    char registered[INS_UZOVI_SIZE];
    bool yes;
    if (e && ins_registry_uzovi(e, registered)) {
        yes = !strcmp(registered, uzovi);
    } else {
        json_object *o = json_tokener_parse(org.json);
        yes = o && has_uzovi(json_object_object_get(o, "identifier"), uzovi);
        json_object_put(o);
    }
    st_resource_free(&org);
    return yes;
}

static bool paid_by(const ins_facts *f, json_object *coverage, const char *uzovi)
{
    json_object *payors = json_object_object_get(coverage, "payor");
    size_t n = json_object_is_type(payors, json_type_array) ? json_object_array_length(payors) : 0;
    for (size_t i = 0; i < n; i++)
        if (payor_carries(f, json_object_array_get_idx(payors, i), uzovi))
            return true;
    return false;
}

/* The instants a date or dateTime covers; false when s is not one. */
static bool range_of(const char *s, int64_t *lo, int64_t *hi)
{
    fdt_value v;
    if (!s || fdt_parse(FDT_FORM_DATETIME, s, strlen(s), &v))
        return false;
    fdt_range(&v, lo, hi);
    return true;
}

/* Active, and its period (open ends allowed) covers the instant. */
static bool in_force(json_object *coverage, int64_t at_ms)
{
    const char *status = jstr(coverage, "status");
    if (!status || strcmp(status, "active"))
        return false;
    json_object *period = json_object_object_get(coverage, "period");
    int64_t lo, hi;
    if (range_of(jstr(period, "start"), &lo, &hi) && at_ms < lo)
        return false;
    if (range_of(jstr(period, "end"), &lo, &hi) && at_ms > hi)
        return false;
    return true;
}

/* Every current resource of query, page by page at the first page's snapshot; fn false stops. */
typedef bool (*each_fn)(void *arg, const st_resource *r);

static st_status walk(st_store *store, st_query *query, each_fn fn, void *arg, st_error *err)
{
    st_cursor cursor;
    query->count = PAGE;
    for (;;) {
        st_list page = {0};
        st_status s = st_search(store, query, &page, err);
        if (s != ST_OK)
            return s;
        bool go = true;
        for (size_t i = 0; go && i < page.count; i++)
            go = fn(arg, &page.items[i]);
        bool more = go && page.more && page.count;
        cursor = (st_cursor){page.last_key_ms, page.last_rid, false};
        query->snapshot = page.snapshot;
        query->cursor = &cursor;
        st_list_free(&page);
        if (!more)
            return ST_OK;
    }
}

typedef struct insured_check {
    const ins_facts *facts;
    const char *uzovi;
    int64_t at_ms;
    bool yes;
} insured_check;

bool ins_coverage_insures(const ins_facts *f, json_object *coverage, const char *patient_ref, const char *uzovi,
                          int64_t at_ms)
{
    const char *beneficiary = jstr(json_object_object_get(coverage, "beneficiary"), "reference");
    if (patient_ref && (!beneficiary || strcmp(beneficiary, patient_ref)))
        return false;
    return coverage && uzovi && *uzovi && in_force(coverage, at_ms) && paid_by(f, coverage, uzovi);
}

static bool check_one(void *arg, const st_resource *r)
{
    insured_check *c = arg;
    json_object *cov = json_tokener_parse(r->json);
    c->yes = ins_coverage_insures(c->facts, cov, NULL, c->uzovi, c->at_ms);
    json_object_put(cov);
    return !c->yes;
}

ins_answer ins_is_insured(const ins_facts *f, const char *patient_ref, const char *uzovi, int64_t date_ms,
                          st_error *err)
{
    if (!patient_ref || strncmp(patient_ref, "Patient/", 8) || !uzovi || !*uzovi)
        return INS_NO;
    st_value v = {0};
    v.v.reference.type = "Patient";
    v.v.reference.id = patient_ref + 8;
    st_condition c = {.param = "beneficiary", .kind = ST_KIND_REFERENCE, .values = &v, .value_count = 1};
    st_query q = {.type = "Coverage", .conditions = &c, .condition_count = 1};
    insured_check check = {f, uzovi, date_ms, false};
    if (walk(f->store, &q, check_one, &check, err) != ST_OK)
        return INS_FAILED;
    return check.yes ? INS_YES : INS_NO;
}

typedef struct each_coverage {
    const ins_facts *facts;
    const char *uzovi;
    ins_coverage_fn fn;
    void *arg;
} each_coverage;

static bool visit_coverage(void *arg, const st_resource *r)
{
    each_coverage *e = arg;
    json_object *cov = json_tokener_parse(r->json);
    bool go = true;
    if (cov && paid_by(e->facts, cov, e->uzovi))
        go = e->fn(e->arg, jstr(json_object_object_get(cov, "beneficiary"), "reference"), r);
    json_object_put(cov);
    return go;
}

st_status ins_each_coverage(const ins_facts *f, const char *uzovi, ins_coverage_fn fn, void *arg, st_error *err)
{
    st_query q = {.type = "Coverage"};
    each_coverage e = {f, uzovi, fn, arg};
    return walk(f->store, &q, visit_coverage, &e, err);
}

/* ---- the calling insurer ---- */

bool ins_registry_uzovi(const id_entry *e, char uzovi[INS_UZOVI_SIZE])
{
    for (const char *p = e ? e->role : ""; *p; p += strspn(p, ",")) {
        size_t n = strcspn(p, ",");
        if (n > 6 && n - 6 < INS_UZOVI_SIZE && !strncmp(p, "uzovi-", 6)) {
            snprintf(uzovi, INS_UZOVI_SIZE, "%.*s", (int)(n - 6), p + 6);
            return true;
        }
        p += n;
    }
    return false;
}

int ins_caller_uzovi(rq *q, char uzovi[INS_UZOVI_SIZE], oo_list *issues)
{
    const id_entry *e = id_lookup_ura(q->app->opt.organisations, q->caller.ura);
    if (ins_registry_uzovi(e, uzovi))
        return 0;
    oo_add(issues, OO_ERROR, "forbidden", NULL, 0, 0,
           "the gateway's registry gives this insurer (URA %s) no UZOVI (a role token uzovi-<UZOVI>): the insurer "
           "views need it",
           q->caller.ura);
    return 403;
}
