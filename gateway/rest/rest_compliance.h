/*
 * gateway/rest/rest_compliance.h — the compliance operations of issue #12 over HTTPS (prefix
 * rest_compliance_; the handlers are in handlers.h, the endpoints in docs/rules.md):
 *
 *   POST [base]/CarePlan/$gzsp-check              a posted CarePlan or Bundle with its context, checked,
 *                                                 never stored
 *   GET  [base]/CarePlan/{id}/$compliance         a stored plan with its stored context; with provider=URA
 *   GET  [base]/Encounter/{id}/$compliance        the plan or stay as that provider holds it (pull mode)
 *   POST [base]/Organization/$contract-check      the caller's own Organization against the minimum
 *                                                 contract requirements of ?kind=ELV|GRZ|GZSP[&variant=]
 *
 * Every answer is the report of rules/report.c (FHIR Parameters: status, checked, pack, and the
 * findings as an OperationOutcome's issues) or an OperationOutcome. The rule engine is
 * rest_options.rules; the context comes from the store or the provider's endpoint
 * (rest_compliance_context.h, rest_compliance_pull.h) and is checked by rules/bundle.c's
 * context, the same as a posted Bundle.
 *
 * rest_compliance_report is the one way to make a stored (or pulled) subject's report, for the
 * handlers here and for views elsewhere (the insurer's list of reports).
 *
 * Memory: the report text is malloc'd, the caller's.
 */
#ifndef GATEWAY_REST_COMPLIANCE_H
#define GATEWAY_REST_COMPLIANCE_H

#include "gateway/rest/rest_compliance_context.h"
#include "gateway/rest/rest_internal.h"

#define REST_COMPLIANCE_MESSAGE_MAX 512

/*
 * The report of type/id (CarePlan or Encounter) checked on date ("YYYY-MM-DD"; NULL: today, by the
 * app's clock). provider NULL: the subject and its context from the store; a URA: as that provider
 * holds it: the store's copy when that provider owns one, else pulled from its endpoint.
 * 200 with *json (FHIR Parameters, malloc'd), or an HTTP status with msg (400 bad date, 404 not
 * there, 422, 502/504 pull failures, 503 no rule pack). Decides no access: the caller has.
 */
int rest_compliance_report(rest_app *app, const char *type, const char *id, const char *date, const char *provider,
                           char **json, size_t *len, char *msg, size_t msglen);

/* The insurer a report is for: its UZOVI (from the registry) and URA. */
typedef struct rest_insurer_scope {
    const char *uzovi, *ura;
} rest_insurer_scope;

/*
 * rest_compliance_report for an insurer (NULL: no scoping): 404, as for a subject that is not there, unless
 * the subject's patient is that insurer's insured on the date checked: by the store's Coverages for a stored
 * subject (gateway/rest/insured.h), by the Coverages its provider sent for a pulled one.
 */
int rest_compliance_report_for(rest_app *app, const char *type, const char *id, const char *date, const char *provider,
                               const rest_insurer_scope *insurer, char **json, size_t *len, char *msg, size_t msglen);

/* rest_compliance_report of a CarePlan. */
int rest_compliance_for_plan(rest_app *app, const char *plan_id, const char *date, const char *provider, char **json,
                             size_t *len, char *msg, size_t msglen);

/* One stored subject of rest_compliance_reports: its text in, its report out. */
typedef struct rest_compliance_job {
    const char *json; /* the subject as stored (borrowed); NULL: not to be checked */
    size_t len;
    const char *patient;     /* with an insurer: the subject's patient reference as written (borrowed) */
    int64_t insured_on_ms;   /* ... and the day the patient must be its insured on */
    bool insurer_model;      /* the report as the insurer's InsurerComplianceReport (what the shipped map
                            * compliance-report makes of the Parameters, written directly), not the Parameters */
    int status;              /* 200: *report; 0: left out (not the insurer's insured); else the status, msg says why */
    char *report;            /* the report's Parameters or InsurerComplianceReport (malloc'd: the caller's) */
    const char *status_code; /* with 200: compliant, non-compliant or needs-review (static) */
    size_t report_len;
    char msg[REST_COMPLIANCE_MESSAGE_MAX];
} rest_compliance_job;

/*
 * rest_compliance_report of n stored subjects of `type` at once, for an insurer's pull: their contexts
 * gathered in bulk (rest_compliance_context.h: cx_gather_many, with the caller's cache kept across calls, or
 * NULL), each checked alone as rest_compliance_report checks one. With insurer, a subject whose patient is
 * not its insured on the job's insured_on_ms (insured.h, by the batch's own Coverage search) is left out.
 * 0, or the status (400 bad date, 5xx the store failed) with msg for the whole batch; each job's own outcome
 * in its status.
 */
int rest_compliance_reports(rest_app *app, cx_cache *cache, const char *type, const char *date,
                            const rest_insurer_scope *insurer, rest_compliance_job *jobs, size_t n, char *msg,
                            size_t msglen);

/*
 * rest_compliance_reports in two halves, so that a caller can gather the next batch while this one is checked
 * (the insurer's NDJSON pull keeps both cores busy so):
 *   rest_compliance_gather  reads the contexts on the caller's thread (the store, the cache) and starts a
 *                           thread checking them. 0 with *batch, or the status with msg as for
 *                           rest_compliance_reports (*batch NULL).
 *   rest_compliance_finish  checks alongside that thread until every subject is done, joins it and frees the
 *                           batch; then the jobs hold their outcomes. NULL is a no-op.
 * Between the two the jobs belong to the batch: the caller reads and frees none of them. The batch borrows the
 * cache's texts: the caller may gather one more batch with that cache meanwhile (the cache keeps what the last
 * batch used, rest_compliance_context.h), but must finish this one before the batch after that, and before
 * freeing the cache. It needs the subjects' own texts (jobs[i].json, .patient) only during gather.
 */
typedef struct rest_compliance_batch rest_compliance_batch;
int rest_compliance_gather(rest_app *app, cx_cache *cache, const char *type, const char *date,
                           const rest_insurer_scope *insurer, rest_compliance_job *jobs, size_t n,
                           rest_compliance_batch **batch, char *msg, size_t msglen);
void rest_compliance_finish(rest_compliance_batch *batch);

#endif
