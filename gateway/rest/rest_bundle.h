/*
 * gateway/rest/rest_bundle.h — writing the Bundles the REST layer answers with
 * (searchset, history, batch-response, transaction-response): the head,
 * paging links, the entry list and the answer itself (rest_bundle.c).
 *
 * FHIR JSON has no empty arrays: an entry list is opened by its first entry
 * (rest_bundle_entry_open) and closed only when one was written.
 * Uses answer. Memory: the fj_buf is the caller's.
 */
#ifndef GATEWAY_REST_BUNDLE_H
#define GATEWAY_REST_BUNDLE_H

#include "gateway/rest/rest_internal.h"

/* {"resourceType":"Bundle","id":..,"meta":..,"type":type[,"total":total] (total < 0: none); no closing brace. */
void rest_bundle_head(fj_buf *b, rq *q, const char *type, int64_t total);
/* One link object {"relation":..,"url":base/path?query[&_getpagesoffset=offset][&extra]}. */
void rest_bundle_link(fj_buf *b, rq *q, const char *relation, const char *path, const char *query, long offset,
                      const char *extra);
/* Before each entry: opens ,"entry":[ at the first, a comma after; *written counts them. */
void rest_bundle_entry_open(fj_buf *b, size_t *written);
/* Closes the entry list when one was opened (FHIR JSON has no empty arrays). */
void rest_bundle_entries_close(fj_buf *b, size_t written);
/* Answers 200 with the Bundle in b (taken), or 503 when building it ran out of memory. */
void rest_bundle_respond(rq *q, fj_buf *b);
/* Streamed Bundles: hand b's bytes to out and empty b (kept for reuse); false when b failed or out refused. */
bool rest_bundle_flush(srv_stream *out, fj_buf *b);
/* A search.mode outcome entry (entry_open included): an OperationOutcome with one issue. */
void rest_bundle_outcome_entry(fj_buf *b, const char *severity, const char *code, const char *message, size_t *written);

#endif
