/*
 * gateway/rest/rest_insurer.c — the insurer's views, in the insurer's model
 * (issue #11; docs/mappings.md has the endpoints, docs/access.md who may):
 *
 *   GET  /insurer/providers/{URA}                  InsurerProvider of a care provider
 *   GET  /insurer/stays?provider=URA[&from=&to=]   InsurerStay of the provider's stays, own insured only
 *   GET  /insurer/plans?provider=URA               InsurerTreatmentPlan of its care plans, own insured only
 *   GET  /insurer/contracts?provider=URA           InsurerContract of the caller's contracts with it
 *   POST /insurer/contracts                        an InsurerContract, stored as a FHIR Contract
 *   GET  /insurer/compliance?provider=URA[&date=&status=]
 *                                                  InsurerComplianceReport of each of the provider's plans,
 *                                                  own insured only; Accept: application/x-ndjson streams
 *                                                  them all, one report a line
 *
 * Each answer is the result of the shipped maps (rest_transform.h) over
 * stored resources: application/json, not FHIR. Lists are pages
 *   {"items": [...], "next": "<cursor>", "notMapped": [{"resource": "Encounter/x", "diagnostics": "..."}]}
 * with `next` only when more may follow (pass it back as ?cursor=) and
 * `notMapped` only when a stored resource could not be mapped, so nothing is
 * left out silently. A cursor holds the first page's snapshot and the place
 * after the last resource looked at: later pages see the resources as they
 * were then (the store's keyset paging), so writes in between neither
 * repeat nor skip anything.
 *
 * Whose records: the provider's are the resources the provider wrote (their
 * owner, the gateway's own fact), and only the resources they refer to that
 * the provider wrote too go into a map's source. Stays and plans are shown
 * only when their patient is the caller's insured on the stay's admission or
 * the plan's start (insured.h); contracts only those the caller stored.
 * Every resource a view discloses is an audit entry of the request.
 *
 * Memory: per request; the page's pieces are freed before returning.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/datetime.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/insured.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_compliance.h"
#include "gateway/rest/rest_audit.h"
#include "gateway/rest/rest_bundle.h"
#include "gateway/rest/rest_transform.h"
#include "gateway/rest/rest_write.h"

#define MAPS "https://fhirgw.nl/fhir/StructureMap/"
#define MAX_GATHERED 32 /* resources referred to that go into one source Bundle at most */

/* One list view: what it lists, by which map, and what goes into the map's source. */
typedef struct view {
    const char *type;                  /* the resources listed */
    const char *map;                   /* the shipped map that makes one item */
    bool insured_only;                 /* scoped by the patient's insurance (insured.h) */
    const char *const *gathered_types; /* types of the referred resources put into the source Bundle */
    bool date_filter;                  /* from/to on the "date" parameter */
} view;

static const char *const STAY_GATHER[] = {"Patient", NULL};
static const char *const PLAN_GATHER[] = {"Patient", "CareTeam", "Goal", "PractitionerRole", NULL};
static const char *const NONE[] = {NULL};

static const view STAYS = {"Encounter", MAPS "encounter-to-stay", true, STAY_GATHER, true};
static const view PLANS = {"CarePlan", MAPS "careplan-to-treatment-plan", true, PLAN_GATHER, false};
static const view CONTRACTS = {"Contract", MAPS "contract-to-insurer", false, NONE, false};
/* the report of rules/ on the plan with its stored context (rest_compliance.h), mapped to the insurer's model */
static const view COMPLIANCE = {"CarePlan", MAPS "compliance-report", true, NONE, false};

/* The parameters of a list request. */
typedef struct list_params {
    char provider[9];
    char *from, *to; /* decoded, or NULL */
    int64_t from_lo, from_hi, to_lo, to_hi;
    bool has_cursor;
    int64_t snapshot, key_ms, rid;
    size_t count;
    char date[11];   /* COMPLIANCE: the date checked (YYYY-MM-DD); empty: today */
    char status[16]; /* COMPLIANCE: only reports of this status; empty: all */
    cx_cache *cache; /* COMPLIANCE: what the pull has read, kept from chunk to chunk (NULL: none) */
    fj_buf *lines;   /* COMPLIANCE stream: the reports as NDJSON lines here rather than into items (NULL: items) */
} list_params;

/* ---- the gate: insurers, with a UZOVI ---- */

static bool insurer_gate(rq *q, char uzovi[INS_UZOVI_SIZE])
{
    if (!(q->caller.roles & AZ_ROLE_INSURER)) {
        rest_record_decision(q, AZ_READ, NULL, AZ_FORBIDDEN, 403, "not an insurer", NULL);
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "the /insurer views are for insurers only");
        return false;
    }
    if (!rest_maps_ready(q))
        return false;
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = ins_caller_uzovi(q, uzovi, &issues);
    if (status)
        rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
    return status == 0;
}

/* ---- parameters ---- */

static bool parse_cursor(const char *s, list_params *p)
{
    char tail;
    long long snap, key, rid;
    if (sscanf(s, "%llx-%llx-%llx%c", &snap, &key, &rid, &tail) != 3 || snap <= 0 || rid <= 0)
        return false;
    p->has_cursor = true;
    p->snapshot = snap, p->key_ms = key, p->rid = rid;
    return true;
}

static bool parse_date(const char *s, int64_t *lo, int64_t *hi)
{
    fdt_value v;
    if (fdt_parse(FDT_FORM_DATETIME, s, strlen(s), &v))
        return false;
    fdt_range(&v, lo, hi);
    return true;
}

/* One name=value of the query; false with an issue. */
static bool take_param(rq *q, const view *v, const char *name, size_t nlen, char *value, list_params *p,
                       oo_list *issues)
{
#define IS(word) (nlen == sizeof word - 1 && !memcmp(name, word, nlen))
    bool ok = true;
    if (IS("provider"))
        ok = id_is_ura(value) && snprintf(p->provider, sizeof p->provider, "%s", value) > 0;
    else if (IS("cursor"))
        ok = parse_cursor(value, p);
    else if (IS("_count"))
        ok = strspn(value, "0123456789") == strlen(value) && *value && strlen(value) < 6 &&
             (p->count = (size_t)atoi(value)) > 0;
    else if (IS("from") && v->date_filter)
        ok = parse_date(value, &p->from_lo, &p->from_hi) && (p->from = strdup(value));
    else if (IS("to") && v->date_filter)
        ok = parse_date(value, &p->to_lo, &p->to_hi) && (p->to = strdup(value));
    else if (IS("date") && v == &COMPLIANCE) {
        int64_t lo, hi;
        ok = strlen(value) == 10 && parse_date(value, &lo, &hi) && snprintf(p->date, sizeof p->date, "%s", value);
    } else if (IS("status") && v == &COMPLIANCE)
        ok = (!strcmp(value, "compliant") || !strcmp(value, "non-compliant") || !strcmp(value, "needs-review")) &&
             snprintf(p->status, sizeof p->status, "%s", value);
    else {
        oo_add(issues, OO_ERROR, OO_NOT_SUPPORTED, NULL, 0, 0,
               "unknown parameter '%.*s': this view takes provider, %scursor and _count", (int)(nlen < 40 ? nlen : 40),
               name,
               v->date_filter     ? "from, to, "
               : v == &COMPLIANCE ? "date, status, "
                                  : "");
        return false;
    }
#undef IS
    if (!ok)
        oo_add(issues, OO_ERROR, "invalid", NULL, 0, 0, "%.*s: %s", (int)(nlen < 40 ? nlen : 40), name,
               name[0] == 'p'   ? "a URA of 8 digits"
               : name[0] == 'c' ? "not a cursor this gateway gave out"
               : name[0] == '_' ? "a positive number"
               : name[0] == 's' ? "compliant, non-compliant or needs-review"
               : name[0] == 'd' ? "a date (2026-03-01)"
                                : "a date or dateTime (2026-03-01)");
    return ok;
}

static bool read_params(rq *q, const view *v, list_params *p, oo_list *issues)
{
    p->count = (size_t)q->app->opt.page_size_default;
    const char *query = srv_req_query(q->req);
    for (const char *s = query; s && *s; s += *s == '&') {
        size_t len = strcspn(s, "&"), nlen = strcspn(s, "=&");
        char *value = nlen < len ? sq_url_decode(s + nlen + 1, len - nlen - 1) : strdup("");
        bool ok = value && take_param(q, v, s, nlen, value, p, issues);
        free(value);
        if (!ok)
            return false;
        s += len;
    }
    if (p->count > (size_t)q->app->opt.page_size_max)
        p->count = (size_t)q->app->opt.page_size_max;
    if (!p->provider[0]) {
        oo_add(issues, OO_ERROR, "required", NULL, 0, 0, "provider=<URA> is required");
        return false;
    }
    return true;
}

/* ---- a map's source: the resource and what it refers to ---- */

typedef struct source {
    fj_buf bundle;
    char refs[MAX_GATHERED][ST_TYPE_MAX + ST_ID_MAX + 2];
    st_resource read[MAX_GATHERED];
    size_t ref_count, read_count;
} source;

static bool wanted(const char *const *types, const char *ref)
{
    size_t n = strcspn(ref, "/");
    for (const char *const *t = types; *t; t++)
        if (strlen(*t) == n && !strncmp(*t, ref, n) && ref[n] == '/' && !strchr(ref + n + 1, '/'))
            return true;
    return false;
}

/* Every relative reference in o to a wanted type, once. */
static void collect_refs(json_object *o, const char *const *types, source *s)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            collect_refs(json_object_array_get_idx(o, i), types, s);
        return;
    }
    if (!json_object_is_type(o, json_type_object))
        return;
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "reference") || !json_object_is_type(val, json_type_string)) {
            collect_refs(val, types, s);
            continue;
        }
        const char *ref = json_object_get_string(val);
        bool seen = strlen(ref) >= sizeof s->refs[0] || !wanted(types, ref);
        for (size_t i = 0; !seen && i < s->ref_count; i++)
            seen = !strcmp(s->refs[i], ref);
        if (!seen && s->ref_count < MAX_GATHERED)
            snprintf(s->refs[s->ref_count++], sizeof s->refs[0], "%s", ref);
    }
}

/* Read the referred resources the provider wrote; each read adds the references of what it read (a CareTeam's
 * members). */
static void gather(rq *q, const char *provider, const char *const *types, source *s)
{
    for (size_t i = 0; i < s->ref_count && s->read_count < MAX_GATHERED; i++) {
        char type[ST_TYPE_MAX + 1];
        size_t n = strcspn(s->refs[i], "/");
        snprintf(type, sizeof type, "%.*s", (int)n, s->refs[i]);
        st_resource *r = &s->read[s->read_count];
        st_error err;
        st_status st = st_read(q->app->opt.store, type, s->refs[i] + n + 1, r, &err);
        if (st == ST_GONE)
            st_resource_free(r);
        if (st != ST_OK)
            continue;
        if (strcmp(r->owner, provider)) {
            st_resource_free(r);
            continue;
        }
        s->read_count++;
        json_object *o = json_tokener_parse(r->json);
        collect_refs(o, types, s);
        json_object_put(o);
    }
}

static void source_free(source *s)
{
    for (size_t i = 0; i < s->read_count; i++)
        st_resource_free(&s->read[i]);
    fj_buf_free(&s->bundle);
}

/* A collection Bundle: r first, then what it refers to (resolve() finds them by Type/id). */
static void build_bundle(const st_resource *r, source *s)
{
    fj_buf_printf(&s->bundle, "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":%s}",
                  r->json);
    for (size_t i = 0; i < s->read_count; i++)
        fj_buf_printf(&s->bundle, ",{\"resource\":%s}", s->read[i].json);
    fj_buf_puts(&s->bundle, "]}");
}

/* Map r (with its gathered sources) into items, or note it in notMapped; audited as disclosed when mapped. */
static void map_one(rq *q, const view *v, const char *provider, const st_resource *r, json_object *items,
                    json_object *not_mapped)
{
    source s = {0};
    json_object *o = json_tokener_parse(r->json);
    collect_refs(o, v->gathered_types, &s);
    json_object_put(o);
    gather(q, provider, v->gathered_types, &s);
    build_bundle(r, &s);
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = NULL;
    size_t len = 0;
    char *text = fj_buf_take(&s.bundle, &len);
    fj_doc doc;
    fj_error jerr;
    bool parsed = text && fj_parse(text, len, NULL, &doc, &jerr);
    int status = parsed ? rest_maps_run(q->app->maps, v->map, &doc, UINT32_MAX, &out, &issues) : 500;
    if (!status) {
        json_object_array_add(items, out);
        rest_audit_note_resource(q, AZ_READ, r, AZ_ALLOW, 200, NULL);
        for (size_t i = 0; i < s.read_count; i++)
            rest_audit_note_resource(q, AZ_READ, &s.read[i], AZ_ALLOW, 200, NULL);
    } else {
        json_object *n = json_object_new_object();
        char ref[ST_TYPE_MAX + ST_ID_MAX + 2];
        snprintf(ref, sizeof ref, "%s/%s", r->type, r->id);
        json_object_object_add(n, "resource", json_object_new_string(ref));
        const char *why = "the source could not be read";
        for (size_t i = 0; i < issues.count; i++)
            if (issues.items[i].severity <= OO_ERROR) {
                why = issues.items[i].message;
                break;
            }
        json_object_object_add(n, "diagnostics", json_object_new_string(why));
        json_object_array_add(not_mapped, n);
    }
    if (parsed)
        fj_doc_free(&doc);
    free(text);
    oo_list_free(&issues);
    source_free(&s);
}

/* A plan's item that could not be made: into notMapped, with why. */
static void not_mapped_item(json_object *not_mapped, const st_resource *r, const char *why)
{
    json_object *n = json_object_new_object();
    char ref[ST_TYPE_MAX + ST_ID_MAX + 2];
    snprintf(ref, sizeof ref, "%s/%s", r->type, r->id);
    json_object_object_add(n, "resource", json_object_new_string(ref));
    json_object_object_add(n, "diagnostics", json_object_new_string(why));
    json_object_array_add(not_mapped, n);
}

/*
 * The compliance report of plan r (its stored context, on the date asked) in the insurer's model (written
 * directly by rest_compliance_reports: what the compliance-report map makes of it) added to items, or as a
 * line to p->lines when the stream asks for lines, when its status is the one asked for. True when it was
 * taken (added, or noted as not mapped); false when the status filter left it out. The report carries rule
 * ids, locations and messages, never the plan's clinical content; the plan read for it is an audit entry of
 * the request.
 */
static bool report_one(rq *q, const list_params *p, const st_resource *r, rest_compliance_job *job, json_object *items,
                       json_object *not_mapped)
{
    char *json = job->report;
    job->report = NULL;
    bool taken = true;
    json_object *o = NULL;
    if (job->status != 200)
        not_mapped_item(not_mapped, r, job->msg);
    else if (p->status[0] && strcmp(job->status_code, p->status))
        taken = false;
    else if (!p->lines && !(o = json_tokener_parse(json)))
        not_mapped_item(not_mapped, r, "the report could not be read");
    else {
        if (o)
            json_object_array_add(items, o);
        else
            fj_buf_append(p->lines, json, job->report_len), fj_buf_puts(p->lines, "\n");
        rest_audit_note_resource(q, AZ_READ, r, AZ_ALLOW, 200, NULL);
    }
    free(json);
    return taken;
}

/* The date the patient must be insured on: a stay's admission, a plan's start; else now. */
static int64_t scope_date(rq *q, json_object *o)
{
    json_object *period = json_object_object_get(o, "period");
    json_object *start = period ? json_object_object_get(period, "start") : NULL;
    int64_t lo, hi;
    if (start && parse_date(json_object_get_string(start), &lo, &hi))
        return lo;
    return rest_now_ms(q->app);
}

/* Is r's patient the caller's insured? INS_FAILED when the store failed. */
static ins_answer in_scope(rq *q, const char *uzovi, const st_resource *r, st_error *err)
{
    json_object *o = json_tokener_parse(r->json);
    json_object *subject = o ? json_object_object_get(o, "subject") : NULL;
    json_object *ref = subject ? json_object_object_get(subject, "reference") : NULL;
    ins_facts facts = {q->app->opt.store, q->app->opt.organisations};
    ins_answer a = ref ? ins_is_insured(&facts, json_object_get_string(ref), uzovi, scope_date(q, o), err) : INS_NO;
    json_object_put(o);
    return a;
}

/* ---- lists ---- */

typedef struct list_query {
    st_condition conditions[3];
    st_value values[3];
    size_t count;
    const char *visible[1];
    char subject[24];
    st_cursor cursor;
    st_query q;
} list_query;

static void build_query(rq *q, const view *v, const list_params *p, list_query *lq)
{
    if (v == &CONTRACTS) { /* the caller's own contracts with the provider */
        snprintf(lq->subject, sizeof lq->subject, "ura-%s", p->provider);
        lq->values[0].v.reference.type = "Organization";
        lq->values[0].v.reference.id = lq->subject;
        lq->conditions[lq->count++] =
            (st_condition){.param = "subject", .kind = ST_KIND_REFERENCE, .values = &lq->values[0], .value_count = 1};
        lq->visible[0] = q->caller.ura;
    } else { /* what the provider wrote */
        lq->visible[0] = p->provider;
    }
    if (p->from) {
        st_value *val = &lq->values[lq->count];
        *val = (st_value){.prefix = ST_GE};
        val->v.date.low_ms = p->from_lo, val->v.date.high_ms = p->from_hi;
        lq->conditions[lq->count++] =
            (st_condition){.param = "date", .kind = ST_KIND_DATE, .values = val, .value_count = 1};
    }
    if (p->to) {
        st_value *val = &lq->values[lq->count];
        *val = (st_value){.prefix = ST_LE};
        val->v.date.low_ms = p->to_lo, val->v.date.high_ms = p->to_hi;
        lq->conditions[lq->count++] =
            (st_condition){.param = "date", .kind = ST_KIND_DATE, .values = val, .value_count = 1};
    }
    lq->q = (st_query){.type = v->type,
                       .conditions = lq->conditions,
                       .condition_count = lq->count,
                       .visible_to = lq->visible,
                       .visible_to_count = 1,
                       .count = p->count};
    if (p->has_cursor) {
        lq->cursor = (st_cursor){p->key_ms, p->rid, false};
        lq->q.snapshot = p->snapshot;
        lq->q.cursor = &lq->cursor;
    }
}

/* Only what its writer owns (visible_to also admits what is addressed to it): the caller's contracts, the
 * provider's stays and plans. */
static bool listed(rq *q, const view *v, const char *provider, const st_resource *r)
{
    return !strcmp(r->owner, v == &CONTRACTS ? q->caller.ura : provider);
}

/* ---- the reports of a chunk of plans ---- */

/* The compliance reports of a chunk's plans: jobs[i] for page item i (status 0: not listed). */
typedef struct chunk_reports {
    rest_compliance_job *jobs;
    char (*patients)[128]; /* each plan's subject reference (the jobs borrow; a longer one is no Patient/<id>) */
    size_t n;
} chunk_reports;

static void chunk_free(chunk_reports *c)
{
    for (size_t i = 0; c->jobs && i < c->n; i++)
        free(c->jobs[i].report);
    free(c->jobs);
    free(c->patients);
    memset(c, 0, sizeof *c);
}

/* The string at obj.member (a member of the root when obj is 0) of d into out; false when there is none. */
static bool member_text(const fj_doc *d, uint32_t obj, const char *member, char *out, size_t size)
{
    uint32_t v = obj != UINT32_MAX && d->nodes[obj].type == FJ_OBJECT ? fj_get(d, obj, member) : UINT32_MAX;
    if (v == UINT32_MAX || d->nodes[v].type != FJ_STRING || d->nodes[v].len >= size)
        return false;
    memcpy(out, fj_str(d, v), d->nodes[v].len);
    out[d->nodes[v].len] = '\0';
    return true;
}

/* A plan's patient reference and the day it must be insured on (in_scope's and scope_date's, read with the
 * fast parser: a pull reads thousands). */
static void plan_scope(rq *q, const st_resource *r, rest_compliance_job *job, char patient[128])
{
    job->insured_on_ms = rest_now_ms(q->app);
    char *copy = strndup(r->json, r->json_len), start[64];
    fj_doc d = {0};
    fj_error err;
    int64_t lo, hi;
    if (copy && fj_parse(copy, r->json_len, NULL, &d, &err) && d.nodes[0].type == FJ_OBJECT) {
        if (member_text(&d, fj_get(&d, 0, "subject"), "reference", patient, 128))
            job->patient = patient;
        if (member_text(&d, fj_get(&d, 0, "period"), "start", start, sizeof start) && parse_date(start, &lo, &hi))
            job->insured_on_ms = lo;
    }
    fj_doc_free(&d);
    free(copy);
}

/* A job for each plan of the page that the view lists (with its patient and day); false with an issue. */
static bool chunk_jobs(rq *q, const list_params *p, const st_list *page, chunk_reports *c, oo_list *issues)
{
    c->n = page->count;
    c->jobs = calloc(c->n ? c->n : 1, sizeof *c->jobs);
    c->patients = calloc(c->n ? c->n : 1, sizeof *c->patients);
    if (!c->jobs || !c->patients) {
        oo_add(issues, OO_ERROR, "transient", NULL, 0, 0, "out of memory");
        return false;
    }
    for (size_t i = 0; i < c->n; i++) {
        const st_resource *r = &page->items[i];
        if (!listed(q, &COMPLIANCE, p->provider, r))
            continue;
        c->jobs[i].json = r->json;
        c->jobs[i].insurer_model = true;
        c->jobs[i].len = r->json_len;
        plan_scope(q, r, &c->jobs[i], c->patients[i]);
    }
    return true;
}

/*
 * The reports of the page's plans that the view lists and whose patient is the caller's insured on the plan's
 * start (as in_scope decides it), checked in one batch (rest_compliance_reports). 0, or the status with an
 * issue (the store failed).
 */
static int chunk_check(rq *q, const list_params *p, const char *uzovi, const st_list *page, chunk_reports *c,
                       oo_list *issues)
{
    if (!chunk_jobs(q, p, page, c, issues))
        return 503;
    rest_insurer_scope who = {uzovi, q->caller.ura};
    char msg[REST_COMPLIANCE_MESSAGE_MAX];
    int s = rest_compliance_reports(q->app, p->cache, COMPLIANCE.type, p->date[0] ? p->date : NULL, &who, c->jobs, c->n,
                                    msg, sizeof msg);
    if (s)
        oo_add(issues, OO_ERROR, s == 400 ? "invalid" : OO_EXCEPTION, NULL, 0, 0, "%s", msg);
    return s;
}

/*
 * Fill a page: store chunks after the cursor, filtered by scope, until the
 * page is full or the store has no more. *next is set to the place after
 * the last resource looked at while more may follow. 0 or the status.
 */
static int fill_page(rq *q, const view *v, const char *uzovi, const list_params *p, json_object *items,
                     json_object *not_mapped, char next[64], oo_list *issues)
{
    list_query lq = {0};
    build_query(q, v, p, &lq);
    next[0] = '\0';
    size_t taken = 0;
    for (;;) {
        st_list page = {0};
        st_error err;
        st_status s = st_search(q->app->opt.store, &lq.q, &page, &err);
        if (s != ST_OK) {
            oo_add(issues, OO_ERROR, rest_code_of(s), NULL, 0, 0, "the store failed: %s", err.message);
            return rest_status_of(s);
        }
        /* the compliance reports of the whole chunk at once (their contexts in bulk); taken in order below */
        chunk_reports reports = {0};
        int cs = v == &COMPLIANCE ? chunk_check(q, p, uzovi, &page, &reports, issues) : 0;
        if (cs) {
            chunk_free(&reports);
            st_list_free(&page);
            return cs;
        }
        size_t i = 0;
        for (; i < page.count && taken < p->count; i++) {
            const st_resource *r = &page.items[i];
            if (v == &COMPLIANCE) {
                if (reports.jobs[i].status) /* listed, and the caller's insured */
                    taken += report_one(q, p, r, &reports.jobs[i], items, not_mapped);
                lq.cursor = (st_cursor){r->key_ms, r->rid, false};
                continue;
            }
            ins_answer a = v->insured_only ? in_scope(q, uzovi, r, &err) : INS_YES;
            if (a == INS_FAILED) {
                chunk_free(&reports);
                st_list_free(&page);
                oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "the store failed: %s", err.message);
                return 500;
            }
            if (a == INS_YES && listed(q, v, p->provider, r))
                map_one(q, v, p->provider, r, items, not_mapped), taken++;
            lq.cursor = (st_cursor){r->key_ms, r->rid, false};
        }
        chunk_free(&reports);
        if (v == &COMPLIANCE) /* the next chunk: only as many plans as the page still lacks are checked */
            lq.q.count = p->count - taken;
        bool more = i < page.count || page.more;
        lq.q.snapshot = page.snapshot;
        lq.q.cursor = &lq.cursor;
        st_list_free(&page);
        if (more && i)
            snprintf(next, 64, "%llx-%llx-%llx", (long long)lq.q.snapshot, (long long)lq.cursor.key_ms,
                     (long long)lq.cursor.rid);
        else if (!more)
            next[0] = '\0'; /* the store is done: an earlier chunk's place must not become a next page */
        if (!more || taken == p->count || !i)
            return 0;
    }
}

static bool list_view(rq *q, const view *v)
{
    char uzovi[INS_UZOVI_SIZE];
    if (!insurer_gate(q, uzovi))
        return false;
    list_params p = {0};
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *items = json_object_new_array(), *not_mapped = json_object_new_array();
    char next[64];
    int status = read_params(q, v, &p, &issues) ? fill_page(q, v, uzovi, &p, items, not_mapped, next, &issues) : 400;
    if (status) {
        rq_respond_issues(q, status, &issues);
        json_object_put(items);
        json_object_put(not_mapped);
    } else {
        json_object *page = json_object_new_object();
        json_object_object_add(page, "items", items);
        if (next[0])
            json_object_object_add(page, "next", json_object_new_string(next));
        if (json_object_array_length(not_mapped))
            json_object_object_add(page, "notMapped", not_mapped);
        else
            json_object_put(not_mapped);
        rest_maps_answer(q, 200, page);
        json_object_put(page);
    }
    oo_list_free(&issues);
    free(p.from);
    free(p.to);
    return false;
}

bool rest_insurer_stays(rq *q)
{
    return list_view(q, &STAYS);
}

bool rest_insurer_plans(rq *q)
{
    return list_view(q, &PLANS);
}

/* ---- the compliance pull (issue #12) ----
 *
 * Paged like the other lists, or, with Accept: application/x-ndjson, every
 * report of the provider's plans in one response: one InsurerComplianceReport
 * a line ({"notMapped": {...}} for a plan whose report could not be made),
 * produced page by page as the connection drains, each page's audit entries
 * committed before its lines are sent (the first page's by the answer's own
 * hold, later ones by rest_audit_flush_wait), so an insurer's year-end pull of
 * thousands of plans neither sits in memory whole nor goes unrecorded.
 *
 * Three things overlap in a pull, on three threads: the worker reads and
 * gathers chunk n+1 (the store's page, the contexts in bulk) while a thread of
 * the batch checks chunk n (rest_compliance_gather/finish; the worker joins in
 * when it is done), and the commit thread records chunk n-1's audit entries.
 * At most two chunks of plans and their contexts are in memory.
 */

#define NDJSON_PAGE 256 /* plans per page of the stream: one batch of contexts read in bulk, one audit commit */

/*
 * One chunk of the stream: the next NDJSON_PAGE plans of the store after the cursor, their reports being
 * checked on a thread (rest_compliance_gather) while the worker reads and gathers the chunk after it. The rows
 * own the plans' texts; the reports' jobs belong to the batch until rest_compliance_finish.
 */
typedef struct pull_chunk {
    st_list rows;
    chunk_reports reports;
    rest_compliance_batch *batch; /* being checked; NULL once finished (or when nothing is) */
    bool made;                    /* rows and reports are this chunk's */
} pull_chunk;

/*
 * A page's audit entries commit on the store's commit thread while the next page is made (the commit was a
 * fifth of a pull's time when waited for); its lines are sent only once they have committed.
 */
typedef struct pull {
    rq *q;
    list_params p;
    char uzovi[INS_UZOVI_SIZE];
    list_query lq;    /* the provider's plans, from the cursor on, one snapshot for the whole stream */
    bool store_done;  /* the store has no plan after lq's cursor */
    pull_chunk ahead; /* the next chunk, made and being checked while the one before is sent */
    fj_buf out;       /* lines not yet handed to the stream */
    fj_buf page;      /* the page being made */
    fj_buf flight;    /* the page before: its lines wait for its audit entries */
    bool done;        /* no page is left to make */
    bool flying;      /* flight's entries are being committed */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool landed, recorded; /* set on the commit thread: the commit is over; the entries are in the trail */
} pull;

/* On the commit thread: flight's entries are committed (or not). */
static void flight_done(void *arg, const st_txn_result *result)
{
    pull *pl = arg;
    int status;
    bool ok = rest_audit_committed(result, 0, &status);
    pthread_mutex_lock(&pl->mu);
    pl->recorded = ok;
    pl->landed = true;
    pthread_cond_signal(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

/* Wait for the page in flight; its lines into pl->out once its entries are recorded. False when they were not. */
static bool land(pull *pl)
{
    if (!pl->flying)
        return true;
    pthread_mutex_lock(&pl->mu);
    while (!pl->landed)
        pthread_cond_wait(&pl->cv, &pl->mu);
    bool ok = pl->recorded;
    pl->landed = false;
    pthread_mutex_unlock(&pl->mu);
    pl->flying = false;
    if (ok && pl->flight.len)
        fj_buf_append(&pl->out, pl->flight.data, pl->flight.len);
    pl->flight.len = 0;
    return ok;
}

/* The page just made goes into flight: the one before lands, this one's entries are submitted. 0 or 503. */
static int take_off(pull *pl)
{
    if (!land(pl))
        return 503; /* the entries of what that page discloses could not be recorded: not sent */
    fj_buf t = pl->flight;
    pl->flight = pl->page, pl->page = t;
    pl->page.len = 0;
    int started = rest_audit_flush_start(pl->q, flight_done, pl);
    if (started < 0)
        return 503;
    pl->flying = started > 0;
    if (!pl->flying && pl->flight.len) /* nothing disclosed (no line is a report): its lines go as they are */
        fj_buf_append(&pl->out, pl->flight.data, pl->flight.len), pl->flight.len = 0;
    return 0;
}

/* Wait for the chunk's checks (helping with them), then free it. */
static void chunk_drop(pull_chunk *c)
{
    rest_compliance_finish(c->batch);
    chunk_free(&c->reports);
    st_list_free(&c->rows);
    memset(c, 0, sizeof *c);
}

/*
 * Make the next chunk: the store's next plans after the cursor (moved past them), their scope, their contexts
 * gathered and their checks started. 0 (an empty chunk when the store is done), or the status with an issue.
 */
static int chunk_make(pull *pl, pull_chunk *c, oo_list *issues)
{
    memset(c, 0, sizeof *c);
    c->made = true;
    if (pl->store_done)
        return 0;
    st_error err;
    st_status s = st_search(pl->q->app->opt.store, &pl->lq.q, &c->rows, &err);
    if (s != ST_OK) {
        oo_add(issues, OO_ERROR, rest_code_of(s), NULL, 0, 0, "the store failed: %s", err.message);
        return rest_status_of(s);
    }
    if (c->rows.count) {
        const st_resource *last = &c->rows.items[c->rows.count - 1];
        pl->lq.cursor = (st_cursor){last->key_ms, last->rid, false};
    }
    pl->lq.q.snapshot = c->rows.snapshot;
    pl->lq.q.cursor = &pl->lq.cursor;
    pl->store_done = !c->rows.more || !c->rows.count;
    if (!chunk_jobs(pl->q, &pl->p, &c->rows, &c->reports, issues))
        return 503;
    rest_insurer_scope who = {pl->uzovi, pl->q->caller.ura};
    char msg[REST_COMPLIANCE_MESSAGE_MAX];
    int cs = rest_compliance_gather(pl->q->app, pl->p.cache, COMPLIANCE.type, pl->p.date[0] ? pl->p.date : NULL, &who,
                                    c->reports.jobs, c->reports.n, &c->batch, msg, sizeof msg);
    if (cs)
        oo_add(issues, OO_ERROR, cs == 400 ? "invalid" : OO_EXCEPTION, NULL, 0, 0, "%s", msg);
    return cs;
}

/* The chunk's reports as lines into pl->page, once checked (its plans' reads noted for the audit trail). */
static void chunk_lines(pull *pl, pull_chunk *c)
{
    rest_compliance_finish(c->batch);
    c->batch = NULL;
    json_object *not_mapped = json_object_new_array();
    pl->p.lines = &pl->page;
    for (size_t i = 0; i < c->rows.count; i++)
        if (c->reports.jobs[i].status) /* listed, and the caller's insured */
            report_one(pl->q, &pl->p, &c->rows.items[i], &c->reports.jobs[i], NULL, not_mapped);
    for (size_t i = 0; i < json_object_array_length(not_mapped); i++)
        fj_buf_printf(&pl->page, "{\"notMapped\":%s}\n",
                      json_object_to_json_string_ext(json_object_array_get_idx(not_mapped, i),
                                                     JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(not_mapped);
}

/*
 * The next chunk's reports as lines: the first chunk's into pl->out (the answer's own hold commits its entries),
 * a later one's into flight (take_off). While the worker makes the chunk after it (the store's reads, the
 * contexts), a thread checks this one: the two halves of a pull on the two cores. 0, or the status when the
 * store failed (issues say how, for the first chunk's answer).
 */
static int pull_page(pull *pl, bool first, oo_list *issues)
{
    int status = pl->ahead.made ? 0 : chunk_make(pl, &pl->ahead, issues);
    pull_chunk current = pl->ahead;
    pl->ahead = (pull_chunk){0};
    if (!status && !pl->store_done)
        status = chunk_make(pl, &pl->ahead, issues);
    pl->page.len = 0;
    if (!status)
        chunk_lines(pl, &current);
    chunk_drop(&current);
    if (!status && pl->page.failed)
        status = 503;
    if (!status && first && pl->page.len)
        fj_buf_append(&pl->out, pl->page.data, pl->page.len);
    else if (!status && !first)
        status = take_off(pl);
    pl->done = status || !pl->ahead.made;
    return status;
}

static srv_stream_status pull_produce(srv_stream *out, void *arg)
{
    pull *pl = arg;
    while (pl->out.len < SRV_STREAM_LOW_WATER && (!pl->done || pl->flying)) {
        oo_list issues;
        oo_list_init(&issues, 0);
        bool failed = !pl->done ? pull_page(pl, false, &issues) != 0 : !land(pl);
        oo_list_free(&issues);
        if (failed)
            return SRV_STREAM_ERROR; /* the client sees a cut answer */
    }
    if (!rest_bundle_flush(out, &pl->out))
        return SRV_STREAM_ERROR;
    return pl->done && !pl->flying ? SRV_STREAM_DONE : SRV_STREAM_MORE;
}

static void pull_release(void *arg)
{
    pull *pl = arg;
    land(pl);               /* the commit thread must be done with pl (and q's entries) first */
    chunk_drop(&pl->ahead); /* and its check thread with the chunk ahead */
    fj_buf_free(&pl->out);
    fj_buf_free(&pl->page);
    fj_buf_free(&pl->flight);
    free(pl->p.from);
    free(pl->p.to);
    cx_cache_free(pl->p.cache);
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->cv);
    if (pl->q)
        rq_finish(pl->q);
    free(pl);
}

static bool stream_reports(rq *q, const char *uzovi)
{
    pull *pl = calloc(1, sizeof *pl);
    if (!pl) {
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return false;
    }
    pl->q = q;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->cv, NULL);
    snprintf(pl->uzovi, sizeof pl->uzovi, "%s", uzovi);
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = read_params(q, &COMPLIANCE, &pl->p, &issues) ? 0 : 400;
    if (status) {
        rq_respond_issues(q, status, &issues);
        oo_list_free(&issues);
        pl->q = NULL;
        pull_release(pl);
        return false;
    }
    pl->p.count = NDJSON_PAGE;
    pl->p.cache = cx_cache_new(); /* NULL: each chunk reads all it needs */
    build_query(q, &COMPLIANCE, &pl->p, &pl->lq);
    if ((status = pull_page(pl, true, &issues))) {
        rq_respond_issues(q, status, &issues);
        oo_list_free(&issues);
        fj_buf_free(&pl->out);
        pl->q = NULL;
        pull_release(pl);
        return false;
    }
    oo_list_free(&issues);
    q->content_type = "application/x-ndjson";
    rq_respond_stream(q, pull_produce, pull_release, pl); /* q belongs to the stream now */
    return true;
}

bool rest_insurer_compliance(rq *q)
{
    if (!q->ndjson)
        return list_view(q, &COMPLIANCE);
    char uzovi[INS_UZOVI_SIZE];
    if (!insurer_gate(q, uzovi))
        return false;
    return stream_reports(q, uzovi);
}

/* ---- one provider ---- */

bool rest_insurer_provider(rq *q)
{
    char uzovi[INS_UZOVI_SIZE];
    if (!insurer_gate(q, uzovi))
        return false;
    if (!id_is_ura(q->route.id)) { /* as the list views answer provider=: a malformed URA names nobody to look for */
        char shown[RT_ECHO_SIZE];
        rt_echo(q->route.id, shown);
        rq_respond_outcome(q, 400, OO_ERROR, OO_INVALID, NULL, "/insurer/providers/%s: a URA of 8 digits", shown);
        return false;
    }
    char id[16];
    snprintf(id, sizeof id, "ura-%.*s", ID_URA_LEN, q->route.id); /* 8 digits, as checked */
    st_resource org;
    st_error err;
    st_status s = st_read(q->app->opt.store, "Organization", id, &org, &err);
    if (s == ST_GONE)
        st_resource_free(&org);
    if (s != ST_OK) {
        rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_FOUND, NULL,
                           "no care provider with URA %s in the directory (Organization/ura-<URA>)", q->route.id);
        return false;
    }
    /* the Organization and the Locations it manages, as the provider wrote them */
    st_value val = {0};
    val.v.reference.type = "Organization";
    val.v.reference.id = id;
    st_condition c = {.param = "organization", .kind = ST_KIND_REFERENCE, .values = &val, .value_count = 1};
    const char *visible[] = {org.owner};
    st_query lq = {.type = "Location",
                   .conditions = &c,
                   .condition_count = 1,
                   .visible_to = visible,
                   .visible_to_count = 1,
                   .count = MAX_GATHERED};
    source src = {0};
    st_list locations = {0};
    if (st_search(q->app->opt.store, &lq, &locations, &err) == ST_OK)
        for (size_t i = 0; i < locations.count && src.read_count < MAX_GATHERED; i++)
            if (!strcmp(locations.items[i].owner, org.owner))
                src.read[src.read_count++] = locations.items[i], locations.items[i] = (st_resource){0};
    build_bundle(&org, &src);
    size_t len = 0;
    char *text = fj_buf_take(&src.bundle, &len);
    fj_doc doc;
    fj_error jerr;
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = NULL;
    bool parsed = text && fj_parse(text, len, NULL, &doc, &jerr);
    int status = parsed ? rest_maps_run(q->app->maps, MAPS "organization-to-provider", &doc, UINT32_MAX, &out, &issues)
                        : 500;
    if (status) {
        rq_respond_issues(q, status == 422 ? 500 : status, &issues); /* stored data the shipped map cannot take */
    } else {
        rest_audit_note_resource(q, AZ_READ, &org, AZ_ALLOW, 200, NULL);
        rest_maps_answer(q, 200, out);
    }
    json_object_put(out);
    if (parsed)
        fj_doc_free(&doc);
    free(text);
    oo_list_free(&issues);
    source_free(&src);
    st_list_free(&locations);
    st_resource_free(&org);
    return false;
}

/* ---- contracts ---- */

/* POST: the InsurerContract as a FHIR Contract through the ordinary create (validated, audited, one commit). */
static bool store_contract(rq *q, const char *uzovi)
{
    const unsigned char *body;
    size_t len;
    if (!rest_json_body(q, &body, &len))
        return false;
    oo_list issues;
    oo_list_init(&issues, 0);
    char *text = strndup((const char *)body, len);
    fj_doc doc;
    fj_error jerr;
    bool parsed = text && fj_parse(text, len, NULL, &doc, &jerr);
    int status = parsed ? 0 : 400;
    if (!parsed)
        oo_add(&issues, OO_FATAL, OO_STRUCTURE, NULL, jerr.line, jerr.column, "invalid JSON: %s", jerr.message);
    uint32_t rt = parsed && doc.nodes[0].type == FJ_OBJECT ? fj_get(&doc, 0, "resourceType") : UINT32_MAX;
    uint32_t ins = parsed && doc.nodes[0].type == FJ_OBJECT ? fj_get(&doc, 0, "insurer") : UINT32_MAX;
    if (!status && (rt == UINT32_MAX || !fj_str_eq(&doc, rt, "InsurerContract"))) {
        oo_add(&issues, OO_ERROR, OO_STRUCTURE, "resourceType", 0, 0, "the body must be an InsurerContract");
        status = 422;
    } else if (!status && (ins == UINT32_MAX || !fj_str_eq(&doc, ins, uzovi))) {
        oo_add(&issues, OO_ERROR, "forbidden", "InsurerContract.insurer", 0, 0,
               "an insurer stores its own contracts: insurer must be its UZOVI %s", uzovi);
        status = 403;
    }
    json_object *contract = NULL;
    if (!status)
        status = rest_maps_run(q->app->maps, MAPS "insurer-to-contract", &doc, 0, &contract, &issues);
    if (!status && rest_decide(q, AZ_CREATE, "Contract", NULL, NULL) != AZ_ALLOW) {
        oo_add(&issues, OO_ERROR, "forbidden", NULL, 0, 0, "this organisation may not create Contracts");
        status = 403;
    }
    if (!status) {
        const char *fhir = json_object_to_json_string_ext(contract, JSON_C_TO_STRING_PLAIN);
        status = rest_write_parse(q, &q->write, fhir, strlen(fhir), "Contract", &issues);
    }
    if (!status) {
        rest_new_id(q->write.id);
        status = rest_write_prepare(q, &q->write, ST_OP_CREATE, NULL, &issues);
    }
    json_object_put(contract);
    if (parsed)
        fj_doc_free(&doc);
    free(text);
    if (status)
        rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
    return status ? false : rest_write_submit(q);
}

bool rest_insurer_contracts(rq *q)
{
    if (strcmp(srv_req_method(q->req), "POST"))
        return list_view(q, &CONTRACTS);
    char uzovi[INS_UZOVI_SIZE];
    if (!insurer_gate(q, uzovi))
        return false;
    return store_contract(q, uzovi);
}
