/*
 * gateway/rest/rest_internal.h — what the rest_*.c files share: the app, the
 * per-request context and the answering helpers. Not for other modules.
 */
#ifndef GATEWAY_REST_INTERNAL_H
#define GATEWAY_REST_INTERNAL_H

#include <json-c/json.h>
#include <pthread.h>

#include "fhir/fhirpath.h"
#include "fhir/json_write.h"
#include "fhir/outcome.h"
#include "fhir/validate.h"
#include "gateway/auth/authz.h"
#include "gateway/search/indexer.h"
#include "gateway/auth/ratelimit.h"
#include "gateway/rest/rest.h"
#include "gateway/rest/route.h"
#include "gateway/search/search.h"

#define REST_MAX_TAGS LIM(access_tags_max)
#define REST_MAX_GRANTS LIM(grants_max)       /* resources one Task may grant its receiver (for, focus, encounter, inputs) */
#define REST_MAX_INCLUDED LIM(included_max) /* included resources per searchset page at most (_include, _revinclude) */

struct rest_app {
    rest_options opt;
    const fs_schema *schema;
    ix_indexer *indexer;
    rl_limiter *limiter;
    char *capability;        /* the CapabilityStatement JSON, built once */
    size_t capability_len;
    pthread_key_t arena_key; /* a FHIRPath arena per worker thread */
    pthread_key_t caller_key; /* per worker thread: the last certificate seen and who it was */
};

/* A search as the store takes it, with the arrays it points to. */
typedef struct rest_stq {
    st_query q;
    st_condition *conditions;
    st_value *values;
    st_link *links;
    const char *visible[1];
    st_visibility linked;     /* what chains and includes may reach: as a direct read */
    const char *shared[16];   /* the directory types */
    const char *readable[16]; /* insurers: the only types they read */
    st_sort sort;
    st_cursor cursor;
    st_include includes[SQ_MAX_INCLUDES];
} rest_stq;

/* The caller's visibility for linked resources (chains, _has, includes), as a direct read would allow. */
void rest_linked_visibility(const az_caller *caller, rest_stq *out);

/* One write: the parsed resource and everything its st_op points to (kept until the commit callback). */
typedef struct rest_write {
    const char *type;
    char id[ST_ID_MAX + 1];
    char *body;              /* mutable copy of the JSON (fj_parse decodes in place) */
    fj_doc doc;              /* owned when has_doc */
    fj_doc *docp;            /* the document the resource is in: &doc, or a transaction Bundle's */
    uint32_t root;           /* the resource's node in *docp */
    bool has_doc;
    char *meta_extra;        /* the client's meta members other than versionId/lastUpdated */
    const fj_write_hooks *hooks; /* extra rewriting (transactions: urn:uuid: references) */
    char *stored;            /* the JSON the store wrote, copied for the answer */
    size_t stored_len;
    ix_rows ix;
    st_index_row *rows;
    size_t row_count;
    char tag_text[REST_MAX_TAGS][9];
    const char *tags[REST_MAX_TAGS];
    size_t tag_count;
    bool tags_overflow;      /* addressed to more organisations than REST_MAX_TAGS: refused */
    st_grant grants[REST_MAX_GRANTS]; /* a Task: what it lets its receiver read */
    char grant_ids[REST_MAX_GRANTS][ST_ID_MAX + 1];
    size_t grant_count;
    st_resource current;     /* update/delete: the version the access decision was made on */
    bool has_current;
    bool conditional_update; /* a conditional update that found nothing and creates (If-None-Exist semantics) */
    sq_query if_none_sq;     /* conditional create */
    rest_stq if_none;
    bool has_if_none;
    st_op op;
} rest_write;

/* The state of one request. Heap-allocated; freed after the answer. */
typedef struct rq {
    rest_app *app;
    srv_request *req;
    az_caller caller;
    char org_name[ID_NAME_MAX];
    rt_route route;
    rt_return prefer;
    rest_write write;        /* single-resource writes */
} rq;

/* ---- answering (rest.c) ---- */
void rq_respond_json(rq *q, int status, char *body, size_t len); /* takes body (malloc'd) */
/* 200 with a body streamed by produce (see srv_respond_stream). q->req is gone afterwards, and q too when release
 * frees it (release may run before this returns): do not touch q after the call. */
void rq_respond_stream(rq *q, srv_producer produce, srv_release release, void *arg);
void rq_respond_outcome(rq *q, int status, oo_severity sev, const char *code, const char *expression,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void rq_respond_issues(rq *q, int status, const oo_list *issues);
void rq_set_version_headers(rq *q, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                            bool location);
void rq_finish(rq *q);   /* frees the context (after srv_respond) */
int rest_status_of(st_status s);
const char *rest_code_of(st_status s);
fp_arena *rest_arena(rest_app *app);
/* Does the client's copy still match r (304)? If-None-Match's ETag list, else the If-Modified-Since instant
 * (epoch ms; HTTP headers and Bundle entries spell it differently); either may be NULL. Whole seconds. */
bool rest_not_modified(const char *if_none_match, const int64_t *since_ms, const st_resource *r);
int64_t rest_now_ms(const rest_app *app);

/* ---- the enforcement point (rest_access.c) ---- */
/* Decide (and record) whether the caller may do `action` on type (r NULL) or on stored resource r.
 * where: "Bundle.entry[3]" inside a Bundle, else NULL. Does not answer. */
az_decision rest_decide(rq *q, az_action action, const char *type, const st_resource *r, const char *where);
/* Record a decision made elsewhere (401 before any type is known). */
void rest_record_decision(rq *q, az_action action, const char *type, az_decision d, int status, const char *why,
                          const char *where);
/* rest_decide on r, answering 404 (hidden, the same text as a missing resource) or 403; true when allowed. */
bool rest_may(rq *q, const st_resource *r, az_action action);
/* 404 "Type/id[/_history/v] is not known": one text for missing, missing version and not yours. */
void rest_answer_not_known(rq *q, const char *type, const char *id, const char *version);
/* Is r a registered organisation's own directory entry (its Organization with its URA)? Never deleted. */
bool rest_is_directory_entry(rq *q, const st_resource *r);
/* What a write may contain and change, and whom it addresses (fills w's tags); 0 or the HTTP status with issues. */
int rest_access_check_write(rq *q, rest_write *w, st_op_kind kind, const st_resource *current, oo_list *issues);

/* ---- writes (rest_write.c) ---- */
/* Parse, validate against the schema and profiles; on failure fills issues and returns the HTTP status (400/422). */
int rest_write_parse(rq *q, rest_write *w, const char *body, size_t len, const char *expect_type, oo_list *issues);
/* Fill w->op (rows, tags, render) for a create/update/delete of w->type/w->id, after the access checks of the write
 * against `current` (the stored version it replaces; NULL for a create). 0, or the HTTP status with issues. */
int rest_write_prepare(rq *q, rest_write *w, st_op_kind kind, const st_resource *current, oo_list *issues);
void rest_write_free(rest_write *w);
char *rest_render(void *arg, int64_t version, const char *last_updated, size_t *len);
/* The write interactions return true when q was handed to the store (the commit callback answers and frees it). */
bool rest_create(rq *q);
bool rest_update(rq *q);
bool rest_delete(rq *q);
void rest_validate_op(rq *q);
/* sq_query -> the store's query; visible only to the caller unless the type is a shared directory.
 * References under base_url are taken as relative ones. */
bool rest_to_st_query(const sq_query *sq, const az_caller *caller, const char *base_url, rest_stq *out);
void rest_stq_free(rest_stq *s);
/* The length of "<base>/" when ref starts with our own base URL (base_url in rest_options), else 0. */
size_t rest_own_base_length(const char *base, const char *ref);
/* Conditional create: the If-None-Exist query of w (type w->type); false with issues when it is malformed. */
bool rest_write_if_none_exist(rq *q, rest_write *w, const char *query, oo_list *issues);
/* If-Match -> the version to expect (W/"0" becomes REST_NO_VERSION, which no version matches); false: malformed. */
#define REST_NO_VERSION INT64_MAX
bool rest_if_match(const char *etag, int64_t *version);
/* The caller-visible resources of `type` matching `query` (at most 2); 0, or the HTTP status with issues. */
int rest_conditional_search(rq *q, const fs_type *type, const char *query, st_list *found, oo_list *issues);
/* The same, answering the request on failure (false). */
bool rest_conditional_match(rq *q, const fs_type *type, const char *query, st_list *found);
/* A fresh logical id (a UUID, lower case). */
void rest_new_id(char out[ST_ID_MAX + 1]);
/* Submit q->write (prepared; op adjusted by the caller); the commit callback answers like an update. False after answering 503. */
bool rest_write_submit(rq *q);

/* ---- patch (rest_patch.c) ---- */
bool rest_patch(rq *q);

/* ---- writing Bundles (rest_bundle.c) ---- */
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
void rest_bundle_outcome_entry(fj_buf *b, const char *severity, const char *code, const char *message,
                               size_t *written);

/* ---- search and history (rest_search.c) ---- */
/* Both answer with a streamed Bundle (true: q then belongs to the stream, which frees it) or an
 * error at once (false: the caller frees q). Pages are bounded by _count and by page_max_bytes. */
bool rest_search(rq *q);
bool rest_history(rq *q);

/* ---- batch and transaction (rest_batch.c) ---- */
bool rest_batch(rq *q);

#endif
