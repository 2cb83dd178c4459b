/*
 * gateway/rest/rest_compliance.c — $gzsp-check, $compliance and $contract-check (see rest_compliance.h).
 *
 * Each handler brings its subject and context into one document (the posted body, or a
 * collection Bundle gathered from the store or a provider), checks it with the rule engine over
 * rules/bundle.c's context, and answers the report's Parameters. The checks run on the worker
 * thread: they read the store and compute; pull mode also waits for the provider (bounded by
 * the outbound client's timeouts, see docs/rules.md).
 */
#include "gateway/rest/rest_compliance.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fhir/array.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/insured.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_compliance_context.h"
#include "gateway/rest/rest_compliance_pull.h"
#include "gateway/rest/rest_write.h"
#include "gateway/util/thread_name.h"
#include "rules/bundle.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define CARE_OFFERED "https://fhirgw.nl/fhir/StructureDefinition/care-offered"

/* ---- inputs ---------------------------------------------------------------------------- */

/* The query parameter `name`, decoded (malloc'd), or NULL when absent. */
static char *query_value(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p; p += strcspn(p, "&"), p += *p == '&') {
        if (!strncmp(p, name, n) && p[n] == '=')
            return sq_url_decode(p + n + 1, strcspn(p + n + 1, "&"));
    }
    return NULL;
}

/* The date checked: text "YYYY-MM-DD", or today by the app's clock when NULL. False when malformed. */
static bool date_checked(rest_app *app, const char *text, fdt_value *out)
{
    char today[ST_INSTANT_LEN];
    if (!text) {
        st_format_instant(rest_now_ms(app), today);
        today[10] = '\0';
        text = today;
    }
    return strlen(text) == 10 && fdt_parse(FDT_FORM_DATE, text, 10, out) == NULL;
}

/* ---- checking one document -------------------------------------------------------------- */

/* What a finding filter keeps: rules whose id starts with prefix (NULL: all). */
static void keep_rules(rl_report *rep, const char *prefix)
{
    if (!prefix)
        return;
    size_t kept = 0, n = strlen(prefix);
    rep->errors = rep->warnings = 0;
    for (size_t i = 0; i < rep->count; i++) {
        rl_finding *f = &rep->items[i];
        if (strncmp(f->rule->id, prefix, n) != 0) {
            free(f->location);
            free(f->detail);
            continue;
        }
        rep->errors += f->error;
        rep->warnings += !f->error;
        rep->items[kept++] = *f;
    }
    rep->count = kept;
}

/* ---- the report in the insurer's model ------------------------------------------------------ */

#define RULE_SYSTEM "https://fhirgw.nl/fhir/CodeSystem/rule"

/* text, and " (detail)" when there is one: the finding's message as rules/report.c writes it */
static void message_string(fj_buf *b, const char *text, const char *detail)
{
    if (!detail) {
        fj_buf_string(b, text, strlen(text));
        return;
    }
    size_t n = strlen(text) + strlen(detail) + 4;
    char *m = malloc(n);
    if (!m) {
        b->failed = true;
        return;
    }
    snprintf(m, n, "%s (%s)", text, detail);
    fj_buf_string(b, m, strlen(m));
    free(m);
}

/*
 * The report as the insurer's InsurerComplianceReport, written directly: what the shipped map
 * compliance-report (mappings/maps/<year>/compliance-report.map) makes of rl_report_parameters' Parameters,
 * member for member and in the same order (subject, rulePackVersion, checked, status, and findings only when
 * there are any: ruleId, message, severity, source, location when the finding has one), without the round
 * trip through json-c, text, the parser and the map engine, which cost a pull more than the check itself.
 * tests/test_compliance_rest.c holds the two to the same bytes. NULL when out of memory.
 */
static char *insurer_report(const rl_report *rep, size_t *len)
{
    fj_buf b = {0};
    const char *slash = strchr(rep->subject, '/');
    fj_buf_puts(&b, "{\"resourceType\":\"InsurerComplianceReport\",\"subject\":{");
    if (slash && slash > rep->subject) {
        fj_buf_puts(&b, "\"type\":");
        fj_buf_string(&b, rep->subject, (size_t)(slash - rep->subject));
        fj_buf_puts(&b, ",");
    }
    fj_buf_puts(&b, "\"reference\":");
    fj_buf_string(&b, rep->subject, strlen(rep->subject));
    fj_buf_puts(&b, "},\"rulePackVersion\":");
    fj_buf_string(&b, rep->pack ? rep->pack : "", rep->pack ? strlen(rep->pack) : 0);
    fj_buf_printf(&b, ",\"checked\":\"%s\",\"status\":\"%s\"", rep->checked, rl_status_code(rl_report_status(rep)));
    for (size_t i = 0; i < rep->count; i++) {
        const rl_finding *f = &rep->items[i];
        fj_buf_puts(&b, i ? ",{\"ruleId\":" : ",\"findings\":[{\"ruleId\":");
        fj_buf_string(&b, f->rule->id, strlen(f->rule->id));
        fj_buf_puts(&b, ",\"message\":");
        message_string(&b, f->rule->message_en, f->detail);
        fj_buf_puts(&b, f->error ? ",\"severity\":\"error\",\"source\":" : ",\"severity\":\"warning\",\"source\":");
        fj_buf_string(&b, f->rule->source, strlen(f->rule->source));
        if (*f->location) {
            fj_buf_puts(&b, ",\"location\":");
            fj_buf_string(&b, f->location, strlen(f->location));
        }
        fj_buf_puts(&b, "}");
    }
    fj_buf_puts(&b, rep->count ? "]}" : "}");
    return fj_buf_take(&b, len);
}

/* The report's text in the form asked for: the Parameters, or the insurer's model. */
static char *report_text(const rl_report *rep, bool insurer_model, size_t *len)
{
    if (insurer_model)
        return insurer_report(rep, len);
    json_object *p = rl_report_parameters(rep);
    const char *s = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *json = strdup(s);
    *len = strlen(s);
    json_object_put(p);
    return json;
}

/*
 * Check the document text[0..len) (a Bundle with the subject first among the pack's subject types, or a
 * lone resource) whose subject must be of type `want`. 200 with the report's Parameters (insurer_model: the
 * InsurerComplianceReport) in *json and its status code in *status_code (unless NULL), or a status with msg.
 * text is parsed in place. only: keep the findings of rules starting with it (NULL: all).
 */
static int check_text(rest_app *app, char *text, size_t len, const char *want, fdt_value date, const char *only,
                      bool insurer_model, char **json, size_t *jlen, const char **status_code, char *msg, size_t msglen)
{
    const rl_engine *engine = app->opt.rules;
    if (!engine) {
        snprintf(msg, msglen, "no rule pack is loaded on this gateway");
        return 503;
    }
    int year = rl_engine_pack(engine)->contract_year;
    if (date.year != year) {
        snprintf(msg, msglen, "the rule pack loaded is for contract year %d; there is none for %d", year, date.year);
        return 422;
    }
    fj_doc doc;
    fj_error err;
    if (!fj_parse(text, len, NULL, &doc, &err)) {
        snprintf(msg, msglen, "invalid JSON at line %u: %s", err.line, err.message);
        fj_doc_free(&doc);
        return 400;
    }
    rl_bundle b;
    rl_res subject = {&doc, RL_NO_NODE};
    if (rl_bundle_init(&b, &doc))
        subject = rl_bundle_subject(&b, &want, 1);
    int status = 200;
    if (subject.node == RL_NO_NODE) {
        snprintf(msg, msglen, "no %s to check: send a %s, or a Bundle with the %s first and its context", want, want,
                 want);
        status = 422;
    } else {
        rl_report rep;
        rl_context ctx = rl_bundle_context(&b, subject, date);
        if (!rl_check(engine, &ctx, &rep, msg, msglen)) {
            status = 422;
        } else {
            keep_rules(&rep, only);
            *json = report_text(&rep, insurer_model, jlen);
            if (status_code)
                *status_code = rl_status_code(rl_report_status(&rep));
            if (!*json) {
                snprintf(msg, msglen, "out of memory");
                status = 503;
            }
        }
        rl_report_free(&rep);
    }
    rl_bundle_free(&b);
    fj_doc_free(&doc);
    return status;
}

/*
 * An insurer's question: is the subject's patient its insured on the day checked? A stored subject by the
 * gateway's own facts (insured.h); a pulled one by the Coverages its provider sent with it (the provider's
 * record is all there is of it). The subject is the set's first resource.
 */
static bool insured_subject(rest_app *app, const cx_set *set, bool from_store, const rest_insurer_scope *who,
                            int64_t day_ms)
{
    json_object *subject = set->count ? json_tokener_parse(set->json[0]) : NULL;
    json_object *patient = json_object_object_get(subject, "subject");
    const char *ref = json_object_get_string(json_object_object_get(patient, "reference"));
    bool yes = false;
    ins_facts facts = {app->opt.store, app->opt.organisations};
    if (ref && from_store) {
        st_error err;
        yes = ins_is_insured(&facts, ref, who->uzovi, day_ms, &err) == INS_YES;
    } else if (ref) {
        for (size_t i = 1; i < set->count && !yes; i++) {
            if (strncmp(set->key[i], "Coverage/", 9))
                continue;
            json_object *c = json_tokener_parse(set->json[i]);
            yes = ins_coverage_insures(&facts, c, ref, who->uzovi, day_ms);
            json_object_put(c);
        }
    }
    json_object_put(subject);
    return yes;
}

int rest_compliance_report(rest_app *app, const char *type, const char *id, const char *date, const char *provider,
                           char **json, size_t *len, char *msg, size_t msglen)
{
    return rest_compliance_report_for(app, type, id, date, provider, NULL, json, len, msg, msglen);
}

int rest_compliance_report_for(rest_app *app, const char *type, const char *id, const char *date, const char *provider,
                               const rest_insurer_scope *insurer, char **json, size_t *len, char *msg, size_t msglen)
{
    fdt_value day;
    msg[0] = '\0';
    if (!date_checked(app, date, &day)) {
        snprintf(msg, msglen, "date must be YYYY-MM-DD");
        return 400;
    }
    /* the store's copy when there is no provider, or when that provider owns the stored one */
    bool from_store = !provider;
    if (provider) {
        st_resource r;
        st_error err;
        if (st_read(app->opt.store, type, id, &r, &err) == ST_OK) {
            from_store = !r.deleted && !strcmp(r.owner, provider);
            st_resource_free(&r);
        }
    }
    cx_set set;
    cx_source store = cx_store_source(app->opt.store);
    int s = from_store ? cx_gather(&store, type, id, &set, msg, msglen)
                       : rest_pull_gather(app, provider, type, id, &set, msg, msglen);
    if (s == 0 && insurer) {
        int64_t lo, hi;
        fdt_range(&day, &lo, &hi);
        if (!insured_subject(app, &set, from_store, insurer, lo))
            s = 404; /* not the caller's insured: answered as if there were no such plan */
    }
    if (s == 404 && !msg[0])
        snprintf(msg, msglen, "%s/%s is not known", type, id);
    if (s == 0) {
        size_t blen;
        char *bundle = cx_bundle(&set, &blen);
        s = bundle ? check_text(app, bundle, blen, type, day, NULL, false, json, len, NULL, msg, msglen) : 503;
        free(bundle);
    }
    cx_set_free(&set);
    return s;
}

int rest_compliance_for_plan(rest_app *app, const char *plan_id, const char *date, const char *provider, char **json,
                             size_t *len, char *msg, size_t msglen)
{
    return rest_compliance_report(app, "CarePlan", plan_id, date, provider, json, len, msg, msglen);
}

/* ---- many stored subjects at once ------------------------------------------------------ */

/* What one Coverage said for one day (the text is the set's, alive for the batch). */
typedef struct coverage_answer {
    const char *json;
    int64_t day_ms;
    bool yes;
} coverage_answer;

typedef struct batch_scope {
    rest_app *app;
    const rest_insurer_scope *insurer;
    rest_compliance_job *jobs;
    const size_t *job_of; /* the job of each subject handed to cx_gather_many */
    int status;           /* the store failed in the fallback below */
    char *msg;
    size_t msglen;
    coverage_answer *answers; /* the batch's Coverages as judged so far: the plans of one patient share them */
    size_t answer_count, answer_cap;
} batch_scope;

/* Does the Coverage text json insure for the insurer on day_ms? Judged once per text and day in a batch. */
static bool coverage_insures(batch_scope *b, const char *json, int64_t day_ms)
{
    for (size_t i = 0; i < b->answer_count; i++)
        if (b->answers[i].json == json && b->answers[i].day_ms == day_ms)
            return b->answers[i].yes;
    ins_facts facts = {b->app->opt.store, b->app->opt.organisations};
    json_object *c = json_tokener_parse(json);
    bool yes = ins_coverage_insures(&facts, c, NULL, b->insurer->uzovi, day_ms);
    json_object_put(c);
    if (fa_reserve(&b->answers, &b->answer_cap, b->answer_count + 1, sizeof *b->answers))
        b->answers[b->answer_count++] = (coverage_answer){json, day_ms, yes};
    return yes;
}

/*
 * Is subject i's patient the insurer's insured on its day? By the Coverages the batch's search brought (the
 * same search ins_is_insured makes, one for the whole batch), unless that search may have been cut short:
 * then by ins_is_insured itself.
 */
static bool insured_in_set(void *arg, size_t i, const cx_set *set)
{
    batch_scope *b = arg;
    rest_compliance_job *job = &b->jobs[b->job_of[i]];
    if (!job->patient || strncmp(job->patient, "Patient/", 8))
        return false;
    ins_facts facts = {b->app->opt.store, b->app->opt.organisations};
    size_t coverages = 0;
    for (size_t k = 1; k < set->count; k++)
        coverages += !strncmp(set->key[k], "Coverage/", 9);
    if (set->truncated || coverages + 1 >= (size_t)LIM(compliance_context_max)) {
        st_error err;
        ins_answer a = ins_is_insured(&facts, job->patient, b->insurer->uzovi, job->insured_on_ms, &err);
        if (a == INS_FAILED && !b->status) {
            b->status = 500;
            snprintf(b->msg, b->msglen, "the store failed: %s", err.message);
        }
        return a == INS_YES;
    }
    bool yes = false;
    for (size_t k = 1; k < set->count && !yes; k++) {
        if (!strncmp(set->key[k], "Coverage/", 9))
            yes = coverage_insures(b, set->json[k], job->insured_on_ms);
    }
    return yes;
}

/*
 * A gathered batch being checked. The sets borrow the cache's texts, which stay valid while the caller gathers
 * the next batch (rest_compliance_context.h); each subject's Bundle text is made, checked and freed by the thread
 * that claimed it. The subjects are claimed one at a time (next) by the batch's thread and, in
 * rest_compliance_finish, by the caller's: whichever is free takes the next, so neither waits while the other
 * has work left. Each job is written by the one thread that claimed it and read after the join.
 */
struct rest_compliance_batch {
    rest_app *app;
    const char *type;
    fdt_value day;
    rest_compliance_job *jobs;
    size_t *job_of; /* subject k -> its job */
    cx_set *sets;   /* subject k's context (empty: left out, not the insurer's insured) */
    size_t count;
    atomic_size_t next; /* the next subject to claim */
    pthread_t thread;
    bool thread_started;
};

/* A handful of plans is not worth a thread. */
#define CHECK_THREAD_MIN 8

static void check_claimed(rest_compliance_batch *b)
{
    for (size_t k; (k = atomic_fetch_add(&b->next, 1)) < b->count;) {
        rest_compliance_job *job = &b->jobs[b->job_of[k]];
        if (!b->sets[k].count)
            continue;
        size_t len;
        char *bundle = cx_bundle(&b->sets[k], &len);
        if (!bundle) {
            job->status = 503;
            snprintf(job->msg, sizeof job->msg, "out of memory making the context");
            continue;
        }
        job->status = check_text(b->app, bundle, len, b->type, b->day, NULL, job->insurer_model, &job->report,
                                 &job->report_len, &job->status_code, job->msg, sizeof job->msg);
        free(bundle);
    }
}

static void *check_thread(void *arg)
{
    check_claimed(arg);
    return NULL;
}

static void batch_free(rest_compliance_batch *b)
{
    if (!b)
        return;
    for (size_t k = 0; b->sets && k < b->count; k++)
        cx_set_free(&b->sets[k]);
    free(b->sets);
    free(b->job_of);
    free(b);
}

int rest_compliance_gather(rest_app *app, cx_cache *cache, const char *type, const char *date,
                           const rest_insurer_scope *insurer, rest_compliance_job *jobs, size_t n,
                           rest_compliance_batch **batch, char *msg, size_t msglen)
{
    *batch = NULL;
    msg[0] = '\0';
    fdt_value day;
    if (!date_checked(app, date, &day)) {
        snprintf(msg, msglen, "date must be YYYY-MM-DD");
        return 400;
    }
    rest_compliance_batch *b = calloc(1, sizeof *b);
    const char **texts = calloc(n ? n : 1, sizeof *texts);
    size_t *lens = calloc(n ? n : 1, sizeof *lens), m = 0;
    int s = b && texts && lens ? 0 : 503;
    if (!s) {
        *b = (rest_compliance_batch){.app = app, .type = type, .day = day, .jobs = jobs};
        b->job_of = calloc(n ? n : 1, sizeof *b->job_of);
        b->sets = calloc(n ? n : 1, sizeof *b->sets);
        s = b->job_of && b->sets ? 0 : 503;
    }
    for (size_t i = 0; !s && i < n; i++) {
        jobs[i].status = 0, jobs[i].report = NULL, jobs[i].report_len = 0, jobs[i].status_code = NULL;
        jobs[i].msg[0] = '\0';
        if (jobs[i].json)
            texts[m] = jobs[i].json, lens[m] = jobs[i].len, b->job_of[m++] = i;
    }
    batch_scope scope = {app, insurer, jobs, b ? b->job_of : NULL, 0, msg, msglen, NULL, 0, 0};
    cx_source store = cx_store_source(app->opt.store);
    if (!s)
        s = cx_gather_many(&store, cache, type, texts, lens, m, insurer ? insured_in_set : NULL, &scope, b->sets, msg,
                           msglen);
    if (!s)
        s = scope.status;
    if (b)
        b->count = m; /* the sets to free */
    free(texts);
    free(lens);
    free(scope.answers);
    if (s) {
        batch_free(b);
        if (!msg[0])
            snprintf(msg, msglen, "out of memory");
        return s;
    }
    atomic_init(&b->next, 0);
    b->thread_started = m > CHECK_THREAD_MIN && pthread_create(&b->thread, NULL, check_thread, b) == 0;
    if (b->thread_started)
        tn_name(b->thread, "rules-check");
    *batch = b;
    return 0;
}

void rest_compliance_finish(rest_compliance_batch *batch)
{
    if (!batch)
        return;
    check_claimed(batch);
    if (batch->thread_started)
        pthread_join(batch->thread, NULL);
    batch_free(batch);
}

int rest_compliance_reports(rest_app *app, cx_cache *cache, const char *type, const char *date,
                            const rest_insurer_scope *insurer, rest_compliance_job *jobs, size_t n, char *msg,
                            size_t msglen)
{
    rest_compliance_batch *batch;
    int s = rest_compliance_gather(app, cache, type, date, insurer, jobs, n, &batch, msg, msglen);
    rest_compliance_finish(batch);
    return s;
}

/* ---- answering ------------------------------------------------------------------------- */

static void answer(rq *q, int status, char *json, size_t len, const char *msg)
{
    if (status == 200) {
        rq_respond_json(q, 200, json, len);
        return;
    }
    free(json);
    const char *code = status == 404   ? OO_NOT_FOUND
                       : status == 403 ? "forbidden"
                       : status == 504 ? "timeout"
                       : status == 502 ? "transient"
                       : status == 503 ? "transient"
                       : status == 400 ? "invalid"
                                       : "processing";
    rq_respond_outcome(q, status, OO_ERROR, code, NULL, "%s", msg);
}

/* ---- GET /CarePlan/{id}/$compliance, GET /Encounter/{id}/$compliance ------------------------- */

/* provider=URA: insurers (the report is what they may know of a plan) and the provider itself. */
static bool may_ask_provider(rq *q, const char *provider)
{
    if ((q->caller.roles & AZ_ROLE_INSURER) || !strcmp(q->caller.ura, provider)) {
        rest_record_decision(q, AZ_READ, q->route.type->name, AZ_ALLOW, 200, "compliance report only", NULL);
        return true;
    }
    rest_record_decision(q, AZ_READ, q->route.type->name, AZ_FORBIDDEN, 403,
                         "provider= is for insurers and the provider itself", NULL);
    rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL,
                       "only insurers and provider %s itself may ask for the report of its %s", provider,
                       q->route.type->name);
    return false;
}

/* Without provider=: the same read access as GET [base]/Type/id (404 for what the caller may not read). */
static bool may_read_stored(rq *q)
{
    const char *type = q->route.type->name;
    if (rest_decide(q, AZ_READ, type, NULL, NULL) != AZ_ALLOW) {
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "this organisation has no access to %s resources",
                           type);
        return false;
    }
    st_resource r;
    st_error err;
    st_status s = st_read(q->app->opt.store, type, q->route.id, &r, &err);
    if (s == ST_NOT_FOUND || s == ST_GONE) {
        if (s == ST_GONE)
            st_resource_free(&r);
        rest_record_decision(q, AZ_READ, type, AZ_HIDDEN, 404, "no such resource", NULL);
        rest_answer_not_known(q, type, q->route.id, NULL);
        return false;
    }
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    bool ok = rest_may(q, &r, AZ_READ);
    st_resource_free(&r);
    return ok;
}

bool rest_compliance_op(rq *q)
{
    const char *query = srv_req_query(q->req);
    char *provider = query_value(query, "provider"), *date = query_value(query, "date");
    char msg[REST_COMPLIANCE_MESSAGE_MAX] = "";
    char *json = NULL;
    size_t len = 0;
    if (provider && !id_is_ura(provider)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "provider must be a URA (8 digits)");
    } else if (provider ? may_ask_provider(q, provider) : may_read_stored(q)) {
        /* an insurer asking learns only of its own insured (insured.h); the provider itself of all its plans */
        char uzovi[INS_UZOVI_SIZE];
        oo_list issues;
        oo_list_init(&issues, 0);
        bool insurer = provider && strcmp(q->caller.ura, provider);
        int status = insurer ? ins_caller_uzovi(q, uzovi, &issues) : 0;
        if (status) {
            rq_respond_issues(q, status, &issues);
        } else {
            rest_insurer_scope who = {uzovi, q->caller.ura};
            int s = rest_compliance_report_for(q->app, q->route.type->name, q->route.id, date, provider,
                                               insurer ? &who : NULL, &json, &len, msg, sizeof msg);
            answer(q, s, json, len, msg);
        }
        oo_list_free(&issues);
    }
    free(provider);
    free(date);
    return false;
}

/* ---- POST /CarePlan/$gzsp-check, POST /Organization/$contract-check ------------------------- */

/*
 * The posted document as text to check: the body, or a Parameters' `resource` (and `date`, valueDate,
 * which *date takes when the query gave none). NULL after answering 400/415.
 */
static char *posted_subject(rq *q, size_t *len, char **date)
{
    const unsigned char *body;
    size_t blen;
    if (!rest_json_body(q, &body, &blen))
        return NULL;
    json_object *o = json_tokener_parse((const char *)body), *params;
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "the body is not a JSON object");
        return NULL;
    }
    json_object *rt;
    bool is_params = json_object_object_get_ex(o, "resourceType", &rt) &&
                     !strcmp(json_object_get_string(rt), "Parameters");
    json_object *resource = is_params ? NULL : o;
    if (is_params && json_object_object_get_ex(o, "parameter", &params))
        for (size_t i = 0; i < json_object_array_length(params); i++) {
            json_object *p = json_object_array_get_idx(params, i), *name, *v;
            if (!json_object_object_get_ex(p, "name", &name))
                continue;
            if (!strcmp(json_object_get_string(name), "resource") && json_object_object_get_ex(p, "resource", &v))
                resource = v;
            if (!strcmp(json_object_get_string(name), "date") && json_object_object_get_ex(p, "valueDate", &v) &&
                !*date)
                *date = strdup(json_object_get_string(v));
        }
    char *text = NULL;
    if (!resource)
        rq_respond_outcome(q, 400, OO_ERROR, "required", "Parameters.parameter", "the Parameters have no resource");
    else
        text = strdup(
            json_object_to_json_string_ext(resource, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    *len = text ? strlen(text) : 0;
    json_object_put(o);
    return text;
}

/* Core FHIR validation of what was posted (the guide's profiles are the rules' business): false after 422. */
static bool valid_posted(rq *q, const char *text, size_t len)
{
    char *copy = strndup(text, len);
    oo_list issues;
    oo_list_init(&issues, 0);
    size_t errors = copy ? fv_validate_buffer(copy, len, NULL, &issues) : 1;
    if (errors)
        rq_respond_issues(q, 422, &issues);
    oo_list_free(&issues);
    free(copy);
    return errors == 0;
}

/* Check what was posted; `want` the subject type, only the rule prefix kept (NULL: all). */
static void check_posted(rq *q, char *text, size_t len, const char *date, const char *want, const char *only)
{
    fdt_value day;
    char msg[REST_COMPLIANCE_MESSAGE_MAX] = "";
    char *json = NULL;
    size_t jlen = 0;
    if (!date_checked(q->app, date, &day)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "date must be YYYY-MM-DD");
        return;
    }
    int s = check_text(q->app, text, len, want, day, only, false, &json, &jlen, NULL, msg, sizeof msg);
    answer(q, s, json, jlen, msg);
}

bool rest_gzsp_check_op(rq *q)
{
    char *date = query_value(srv_req_query(q->req), "date");
    size_t len;
    char *text = posted_subject(q, &len, &date);
    if (text && valid_posted(q, text, len))
        check_posted(q, text, len, date, "CarePlan", NULL);
    free(text);
    free(date);
    return false;
}

/* The care kinds of $contract-check: the query's name, the care-kind code, the prefix of its rule ids. */
typedef struct care_kind {
    const char *name, *code, *rules;
} care_kind;

static const care_kind KINDS[] = {{"ELV", "elv", "ELV-"}, {"GRZ", "grz", "GRZ-"}, {"GZSP", "gzsp", "GZSP-"}};

static const care_kind *kind_named(const char *name)
{
    for (size_t i = 0; name && i < sizeof KINDS / sizeof *KINDS; i++)
        if (!strcasecmp(KINDS[i].name, name))
            return &KINDS[i];
    return NULL;
}

/* The Organization to check: the posted one, or the first Organization entry of a posted Bundle. */
static json_object *posted_organization(json_object *doc)
{
    json_object *rt, *entries;
    if (!json_object_object_get_ex(doc, "resourceType", &rt))
        return NULL;
    if (!strcmp(json_object_get_string(rt), "Organization"))
        return doc;
    if (strcmp(json_object_get_string(rt), "Bundle") != 0 || !json_object_object_get_ex(doc, "entry", &entries))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        json_object *res;
        if (json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &res) &&
            json_object_object_get_ex(res, "resourceType", &rt) && !strcmp(json_object_get_string(rt), "Organization"))
            return res;
    }
    return NULL;
}

/* Is org the caller's own (id ura-<URA> or its URA identifier)? */
static bool own_organization(rq *q, json_object *org)
{
    json_object *id, *ids;
    char own[16];
    snprintf(own, sizeof own, "ura-%s", q->caller.ura);
    if (json_object_object_get_ex(org, "id", &id) && !strcmp(json_object_get_string(id), own))
        return true;
    if (json_object_object_get_ex(org, "identifier", &ids))
        for (size_t i = 0; i < json_object_array_length(ids); i++) {
            json_object *sys, *val, *ident = json_object_array_get_idx(ids, i);
            if (json_object_object_get_ex(ident, "system", &sys) && !strcmp(json_object_get_string(sys), URA_SYSTEM) &&
                json_object_object_get_ex(ident, "value", &val) && !strcmp(json_object_get_string(val), q->caller.ura))
                return true;
        }
    return false;
}

/* Does the Organization offer code (a care kind or a variant) in a care-offered extension? */
static bool offers(json_object *org, const char *code)
{
    json_object *exts;
    if (!json_object_object_get_ex(org, "extension", &exts))
        return false;
    for (size_t i = 0; i < json_object_array_length(exts); i++) {
        json_object *ext = json_object_array_get_idx(exts, i), *url, *parts;
        if (!json_object_object_get_ex(ext, "url", &url) || strcmp(json_object_get_string(url), CARE_OFFERED) != 0 ||
            !json_object_object_get_ex(ext, "extension", &parts))
            continue;
        for (size_t j = 0; j < json_object_array_length(parts); j++) {
            json_object *coding, *c;
            if (json_object_object_get_ex(json_object_array_get_idx(parts, j), "valueCoding", &coding) &&
                json_object_object_get_ex(coding, "code", &c) && !strcmp(json_object_get_string(c), code))
                return true;
        }
    }
    return false;
}

/* The kind, variant and ownership demands of $contract-check; false after answering. */
static bool contract_check_allowed(rq *q, const char *text, const care_kind *kind, const char *variant)
{
    json_object *doc = json_tokener_parse(text);
    json_object *org = doc ? posted_organization(doc) : NULL;
    bool ok = false;
    if (!org)
        rq_respond_outcome(q, 422, OO_ERROR, "required", NULL,
                           "no Organization to check: send it, or a Bundle with it first and its Contracts and stays");
    else if (!own_organization(q, org))
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", "Organization",
                           "an organisation checks its own Organization only (id ura-%s or its URA identifier)",
                           q->caller.ura);
    else if (!offers(org, kind->code) || (variant && !offers(org, variant)))
        rq_respond_outcome(q, 422, OO_ERROR, "business-rule", "Organization.extension",
                           "the Organization does not offer %s%s%s (extension care-offered): nothing to check",
                           kind->code, variant ? " variant " : "", variant ? variant : "");
    else
        ok = true;
    json_object_put(doc);
    return ok;
}

bool rest_contract_check_op(rq *q)
{
    const char *query = srv_req_query(q->req);
    char *kind_text = query_value(query, "kind"), *variant = query_value(query, "variant");
    char *date = query_value(query, "date");
    const care_kind *kind = kind_named(kind_text);
    char *text = NULL;
    size_t len = 0;
    if (!kind)
        rq_respond_outcome(q, 400, OO_ERROR, "required", NULL, "kind must be ELV, GRZ or GZSP");
    else if (variant && strncmp(variant, kind->code, strlen(kind->code)) != 0)
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "variant must be a care-kind code of %s (%s-...)",
                           kind->name, kind->code);
    else if ((text = posted_subject(q, &len, &date)) && valid_posted(q, text, len) &&
             contract_check_allowed(q, text, kind, variant))
        check_posted(q, text, len, date, "Organization", kind->rules);
    free(text);
    free(kind_text);
    free(variant);
    free(date);
    return false;
}
