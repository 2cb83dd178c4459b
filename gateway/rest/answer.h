/*
 * gateway/rest/answer.h — answering a request: FHIR JSON bodies, streamed
 * and lent bodies, OperationOutcomes, version headers, and the mapping of
 * store statuses to HTTP statuses and issue codes (answer.c).
 *
 * Every module of gateway/rest answers through these and nothing here calls
 * an interaction module, so the modules above can all use it without a
 * cycle (see rest_internal.h for the graph).
 *
 * Memory: rq_respond_json takes its body (malloc'd); rest_outcome_json
 * returns a malloc'd string the caller frees. After any rq_respond_* the
 * request (q->req) is gone: it is set to NULL, and q itself stays the
 * caller's to free with rq_finish (a stream's release frees it instead).
 * An answer may be held until the request's audit entries have committed
 * (rest_audit.h); rq_finish then frees q only once it has been sent.
 */
#ifndef GATEWAY_REST_ANSWER_H
#define GATEWAY_REST_ANSWER_H

#include "gateway/rest/rest_internal.h"

void rq_respond_json(rq *q, int status, char *body, size_t len); /* takes body (malloc'd) */
/* 200 with a body streamed by produce (see srv_respond_stream). q->req is gone afterwards, and q too when release
 * frees it (release may run before this returns): do not touch q after the call. */
void rq_respond_stream(rq *q, srv_producer produce, srv_release release, void *arg);
/* 200 with a body the server does not copy or free (it must outlive the server): the CapabilityStatement. */
void rq_respond_static(rq *q, const char *body, size_t len);
void rq_respond_outcome(rq *q, int status, oo_severity sev, const char *code, const char *expression, const char *fmt,
                        ...) __attribute__((format(printf, 6, 7)));
void rq_respond_issues(rq *q, int status, const oo_list *issues);
/* ETag and Last-Modified; with location also Location and Content-Location (base/type/id/_history/version). */
void rq_set_version_headers(rq *q, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                            bool location);
/* 404 "Type/id[/_history/v] is not known": one text for missing, missing version and not yours. */
void rest_answer_not_known(rq *q, const char *type, const char *id, const char *version);

/* The OperationOutcome of issues as JSON text (malloc'd; NULL when out of memory), *len its length. */
char *rest_outcome_json(const oo_list *issues, size_t *len);
int rest_status_of(st_status s);
const char *rest_code_of(st_status s);
/* Does the client's copy still match r (304)? If-None-Match's ETag list, else the If-Modified-Since instant
 * (epoch ms; HTTP headers and Bundle entries spell it differently); either may be NULL. Whole seconds. */
bool rest_not_modified(const char *if_none_match, const int64_t *since_ms, const st_resource *r);

#endif
