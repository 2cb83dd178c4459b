/*
 * gateway/rest/rest_write.h — one write, from the request body to the store
 * (rest_write.c): parse and validate, the access checks of the write, index
 * rows, the st_op, submitting it and answering from its commit callback.
 * The create, update and delete handlers (handlers.h) are built from these,
 * and patch, batch and transaction use them for their own writes.
 *
 * Uses rest_access, rest_query and answer.
 * Memory: everything a write needs lives in its rest_write (freed with
 * rest_write_free, or with the request by rq_finish).
 */
#ifndef GATEWAY_REST_WRITE_H
#define GATEWAY_REST_WRITE_H

#include "gateway/rest/rest_internal.h"

/* Parse, validate against the schema and profiles; on failure fills issues and returns the HTTP status (400/422). */
int rest_write_parse(rq *q, rest_write *w, const char *body, size_t len, const char *expect_type, oo_list *issues);
/* Fill w->op (rows, tags, render) for a create/update/delete of w->type/w->id, after the access checks of the write
 * against `current` (the stored version it replaces; NULL for a create). 0, or the HTTP status with issues. */
int rest_write_prepare(rq *q, rest_write *w, st_op_kind kind, const st_resource *current, oo_list *issues);
/* The st_render_fn of a prepared write: the stored JSON with versionId and lastUpdated (kept in w->stored too,
 * unless w->no_stored: nothing answers with it). */
char *rest_render(void *arg, int64_t version, const char *last_updated, size_t *len);
/* Conditional create: the If-None-Exist query of w (type w->type); false with issues when it is malformed. */
bool rest_write_if_none_exist(rq *q, rest_write *w, const char *query, oo_list *issues);
/* If-Match -> the version to expect (W/"0" becomes REST_NO_VERSION, which no version matches); false: malformed. */
#define REST_NO_VERSION INT64_MAX
bool rest_if_match(const char *etag, int64_t *version);
/* Submit q->write (prepared; op adjusted by the caller); the commit callback answers like an update. False after answering 503. */
bool rest_write_submit(rq *q);
/* The request's body as FHIR JSON: its Content-Type acceptable and a body present; false after answering 415/400. */
bool rest_json_body(rq *q, const unsigned char **body, size_t *len);

#endif
