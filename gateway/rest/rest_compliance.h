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

/* rest_compliance_report of a CarePlan. */
int rest_compliance_for_plan(rest_app *app, const char *plan_id, const char *date, const char *provider, char **json,
                             size_t *len, char *msg, size_t msglen);

#endif
