/*
 * gateway/rest_internal.h — what the rest_*.c files share: the app, the
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
#include "gateway/authz.h"
#include "gateway/indexer.h"
#include "gateway/ratelimit.h"
#include "gateway/rest.h"
#include "gateway/route.h"
#include "gateway/search.h"

#define REST_MAX_TAGS 8
#define REST_MAX_INCLUDED 100 /* included resources per searchset page at most (_include, _revinclude) */

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
void rq_respond_outcome(rq *q, int status, oo_severity sev, const char *code, const char *expression,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void rq_respond_issues(rq *q, int status, const oo_list *issues);
void rq_set_version_headers(rq *q, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                            bool location);
void rq_finish(rq *q);   /* frees the context (after srv_respond) */
int rest_status_of(st_status s);
const char *rest_code_of(st_status s);
fp_arena *rest_arena(rest_app *app);
int64_t rest_now_ms(const rest_app *app);

/* ---- writes (rest_write.c) ---- */
/* Parse, validate against the schema and profiles; on failure fills issues and returns the HTTP status (400/422). */
int rest_write_parse(rq *q, rest_write *w, const char *body, size_t len, const char *expect_type, oo_list *issues);
/* Fill w->op (rows, tags, render) for a create/update/delete of w->type/w->id. */
bool rest_write_prepare(rq *q, rest_write *w, st_op_kind kind, oo_list *issues);
void rest_write_free(rest_write *w);
char *rest_render(void *arg, int64_t version, const char *last_updated, size_t *len);
/* The write interactions return true when q was handed to the store (the commit callback answers and frees it). */
bool rest_create(rq *q);
bool rest_update(rq *q);
bool rest_delete(rq *q);
void rest_validate_op(rq *q);
bool rest_may(rq *q, const st_resource *r, az_action action);
/* sq_query -> the store's query; visible only to the caller unless the type is a shared directory.
 * References under base_url are taken as relative ones. */
bool rest_to_st_query(const sq_query *sq, const az_caller *caller, const char *base_url, rest_stq *out);
void rest_stq_free(rest_stq *s);
/* Conditional create: the If-None-Exist query of w (type w->type); false with issues when it is malformed. */
bool rest_write_if_none_exist(rq *q, rest_write *w, const char *query, oo_list *issues);
/* A fresh logical id (a UUID, lower case). */
void rest_new_id(char out[ST_ID_MAX + 1]);

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

/* ---- search and history (rest_search.c) ---- */
void rest_search(rq *q);
void rest_history(rq *q);

/* ---- batch and transaction (rest_batch.c) ---- */
bool rest_batch(rq *q);

#endif
