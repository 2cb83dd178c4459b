/*
 * gateway/rest/rest_internal.h — the REST layer's context: the app, the
 * per-request state and the few helpers every module of gateway/rest uses
 * (rest_context.c). Not for other rooms.
 *
 * The modules of gateway/rest and what each may call (an arrow: "uses";
 * every module also uses this context). The graph is acyclic: a module
 * includes only the headers of the modules below it, and tests/test_rest.c
 * checks the includes against this list.
 *
 *   rest.c          the entry point: identity, rate limit, format, type-level authorisation
 *     -> operations, capability, rest_access, rest_transform, answer
 *   operations      the table of interactions and $operations, and dispatch through it
 *     -> handlers (rest_read, rest_write, rest_patch, rest_search, rest_batch, rest_validate, rest_audit_read,
 *        rest_handover, rest_subscription, rest_transform, rest_insurer, rest_compliance),
 *        answer
 *   rest_transform  the app's insurer maps, StructureMap/$transform
 *                   -> handlers, rest_write, rest_access, answer
 *   rest_insurer    the insurer's views (/insurer/...) in its model
 *     -> handlers, insured, rest_transform, rest_write, rest_access, rest_audit, rest_compliance, rest_bundle,
 *        answer
 *   insured         is a patient insured by a UZOVI (the insurer views' scope); uses no other module
 *   rest_batch      batch and transaction Bundles, and transactions the gateway builds (rest_batch.h)
 *     -> rest_write, rest_query, rest_bundle, rest_access, rest_audit, answer
 *   rest_handover   $handover: documents + Task as one transaction -> rest_batch, rest_write, rest_access, answer
 *   rest_subscription  the virtual Subscription/handover-<URA> with the backport's $status and $events
 *                   (docs/handover.md) -> gateway/relay (its notification parts), handlers, rest_audit, answer
 *   rest_retention  the purge of ended handovers' documents and its thread (rest.c starts and stops it through
 *                   the two functions declared in this header) -> rest_access
 *   rest_patch      PATCH -> rest_write, rest_query, rest_access, answer
 *   rest_validate   $validate -> rest_write, rest_access, answer
 *   rest_compliance $gzsp-check, $compliance, $contract-check: the compliance report (rest_compliance.h)
 *     -> handlers, insured, rest_compliance_context, rest_compliance_pull, rest_access, rest_write, answer
 *   rest_compliance_pull  pull mode: a subject and its context from a provider's endpoint -> rest_compliance_context
 *   rest_compliance_context  a check's context gathered from a source (the store, a provider) -> answer
 *   rest_search     searchset and history pages -> rest_query, rest_bundle, rest_access, rest_audit, answer
 *   rest_read       read, vread, metadata -> rest_access, answer
 *   rest_write      create, update, delete; parsing, preparing and submitting one write
 *     -> rest_query, rest_access, rest_audit, answer
 *   rest_bundle     writing Bundles -> answer
 *   rest_query      search parameters -> the store's query; conditional searches -> answer
 *   rest_access     the one enforcement point -> rest_audit, answer
 *   rest_audit_read GET /AuditEvent[/id]: the audit trail as AuditEvent -> handlers, answer
 *   directory       the registered organisations' own entries, written as they would write them
 *     -> rest_write
 *   answer          answering a request: JSON, outcomes, version headers, status mapping -> rest_audit
 *   rest_audit      the request's audit entries: noting, attaching them to write transactions, committing
 *                   them before an answer leaves (answer holds it until then)
 *   rest_context    (this header) -> route
 *   route, capability: pure, no state (route.h, capability.h)
 *
 * handlers.h declares what the operations table names; each handler is
 * implemented by the module listed with it there.
 */
#ifndef GATEWAY_REST_INTERNAL_H
#define GATEWAY_REST_INTERNAL_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>

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

/* Limits of the REST layer (values in gateway/util/limits.h). Each says what happens past it:
 * nothing is cut silently. */
#define REST_MAX_TAGS \
    LIM(access_tags_max) /* a write naming a ninth organisation is refused: 422 too-long at
                                             * the addressing element (rest_access.c) */
#define REST_MAX_GRANTS \
    LIM(grants_max) /* a seventeenth granted resource is refused: 422 too-long at the
                                             * granting element (rest_access.c) */
#define REST_MAX_INCLUDED \
    LIM(included_max) /* the rest are left out and a warning outcome entry says so
                                             * (rest_search.c) */

struct rest_app {
    rest_options opt;
    const fs_schema *schema;
    ix_indexer *indexer;
    rl_limiter *limiter;
    char *capability; /* the CapabilityStatement JSON, built once */
    size_t capability_len;
    pthread_key_t arena_key;          /* a FHIRPath arena per worker thread */
    pthread_key_t caller_key;         /* per worker thread: the last certificate seen and who it was */
    atomic_size_t answers_off_worker; /* answers built on another thread than the request's worker (stays 0) */
    struct rest_maps *maps;           /* the shipped insurer maps (rest_transform.h); NULL when none were loaded */
    /* the handover retention purge (rest_retention.c): its thread, woken to stop */
    pthread_mutex_t purge_lock;
    pthread_cond_t purge_wake;
    pthread_t purge_thread;
    bool purge_inited, purge_started, purge_stop;
    /* ended handover Tasks with lastUpdated up to this were dealt with by an earlier pass (0: none yet);
     * read and moved only by whoever runs the passes, one at a time */
    int64_t purge_watermark_ms;
    long purge_tasks_examined; /* by the last pass */
};

/* rest_retention.c: start the purge thread when retention is on (false: it could not start); stop and join it. */
bool rest_retention_start(rest_app *app);
void rest_retention_stop(rest_app *app);

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

/* One write: the parsed resource and everything its st_op points to (kept until the commit callback). */
typedef struct rest_write {
    const char *type;
    char id[ST_ID_MAX + 1];
    char *body;    /* mutable copy of the JSON (fj_parse decodes in place) */
    fj_doc doc;    /* owned when has_doc */
    fj_doc *docp;  /* the document the resource is in: &doc, or a transaction Bundle's */
    uint32_t root; /* the resource's node in *docp */
    bool has_doc;
    char *meta_extra;            /* the client's meta members other than versionId/lastUpdated */
    const fj_write_hooks *hooks; /* extra rewriting (transactions: urn:uuid: references) */
    /* The resource's members other than resourceType, id and meta, rendered on the worker by
     * rest_write_prepare, so that the commit thread only splices them after the meta it assigns; NULL: the
     * commit thread renders them (out of memory). Stale once *names_moved (a transaction's conditional create
     * matched at commit time and a name now means another resource): then the commit thread renders again. */
    char *members;
    size_t members_len;
    const bool *names_moved; /* NULL: no name of this write can move */
    char *stored;            /* the JSON the store wrote, copied for the answer */
    size_t stored_len;
    bool no_stored; /* nothing answers with it: rest_render keeps no copy (commit thread time) */
    /* A create of a sealed type that nothing answers with: the body sealed on the worker (st_seal_early), for
     * the commit thread to store as it is (rest_sealed); NULL: rendered and sealed at commit. */
    char *sealed;
    size_t sealed_len;
    st_store *sealed_by; /* the store that sealed it: a body left over is discarded there (st_discard_early) */
    ix_rows ix;
    st_index_row *rows;
    size_t row_count;
    char tag_text[REST_MAX_TAGS][9];
    const char *tags[REST_MAX_TAGS];
    size_t tag_count;
    bool tags_overflow;               /* addressed to more organisations than REST_MAX_TAGS: refused */
    st_grant grants[REST_MAX_GRANTS]; /* a Task: what it lets its receiver read */
    char grant_ids[REST_MAX_GRANTS][ST_ID_MAX + 1];
    size_t grant_count;
    st_op_result result; /* the store's result, copied by the commit callback for the worker's answer */
    st_resource current; /* update/delete: the version the access decision was made on */
    bool has_current;
    bool conditional_update; /* a conditional update that found nothing and creates (If-None-Exist semantics) */
    sq_query if_none_sq;     /* conditional create */
    rest_stq if_none;
    bool has_if_none;
    st_op op;
    /* handover notifications (docs/handover.md "Notifications"): whom this write's commit notifies
     * (rest_access.c plans them; rest_audit_attach queues them as ST_OP_NOTIFY in the same transaction) */
    bool status_moved; /* a handover Task's status changed (check_handover_change) */
    bool gateway_mark; /* the gateway itself records a delivery outcome: businessStatus may change */
    const char *notify_event;
    char notify_ura[REST_MAX_TAGS + 1][ST_URA_MAX + 1];
    size_t notify_count;
} rest_write;

/*
 * One audit entry of a request (rest_audit.c). Each is its own allocation, so
 * that the store may hold a pointer to its entry while more are noted.
 */
typedef struct rest_audit_item {
    au_entry e;
    bool handed;                 /* in a transaction given to the store: the commit thread settles e */
    const struct rest_write *w;  /* the write it records, or NULL */
    int op_index;                /* that write's operation in its transaction; -1: none */
    bool if_match;               /* the write came with If-Match (a version conflict answers 412, else 409) */
    int (*status_of)(st_status); /* the HTTP status of a store failure (answer.c's mapping) */
} rest_audit_item;

/* A request's audit entries, and an answer held until they are committed. */
typedef struct rest_audit_state {
    rest_audit_item **items;
    size_t count, cap;
    st_op **txns; /* operation arrays handed to the store (freed with the request) */
    size_t txn_count, txn_cap;
    bool lost;                    /* an entry could not even be noted (out of memory): nothing is answered but 503 */
    bool ids_known;               /* cert_fp and request_id taken from the request */
    char cert_fp[65];             /* of the client certificate, for every entry (set by identify) */
    char request_id[AU_TEXT_MAX]; /* X-Request-ID, likewise */
    srv_request *req;             /* the request whose answer is held */
    bool holding;                 /* an answer waits for its entries' commit */
    bool finish_wanted;           /* rq_finish came while holding: free once answered */
    bool failed;                  /* an entry could not be committed: the answer becomes 500/503 */
    bool barrier;                 /* held for a barrier (no entries): failed means the store could not sync */
    int failed_status;
    int status; /* the held answer */
    char *body;
    size_t len;
    srv_producer produce;
    srv_release release;
    void *arg;
} rest_audit_state;

/* The state of one request. Heap-allocated; freed after the answer. */
typedef struct rq {
    rest_app *app;
    srv_request *req;
    pthread_t worker; /* the thread that runs the handler and owns the connection: answers are built here */
    az_caller caller;
    char org_name[ID_NAME_MAX];
    rt_route route;
    rt_return prefer;
    bool ndjson;      /* the client asked for NDJSON (only /insurer/compliance serves it; rest.c) */
    rest_write write; /* single-resource writes */
    rest_audit_state audit;
    const char *content_type; /* of a successful answer; NULL: application/fhir+json (the insurer's model is
                               * application/json: it is not FHIR) */
    /* An Organization the handler has read and decided on (rest_handover: the receiver's directory entry), which
     * the checks of the request's writes (rest_access) take instead of reading it again; only for a request that
     * does not write it. id NULL: none. Freed by rq_finish. */
    st_resource entry_read;
    /* The answer is a write's, built after its commit became durable (write_answer, transaction_answer,
     * batch_answer): what the request read before it submitted is covered by that sync, so the answer needs
     * no barrier of its own (rest_audit_hold). */
    bool after_own_commit;
} rq;

/* Frees the context and its write (after the answer). */
void rq_finish(rq *q);
void rest_write_free(rest_write *w);
void rest_stq_free(rest_stq *s);

/* The worker thread's FHIRPath arena (made on first use, freed with the thread or the app). */
fp_arena *rest_arena(rest_app *app);
/* The app's clock (rest_options.clock_ms), epoch milliseconds. */
int64_t rest_now_ms(const rest_app *app);
/* A fresh logical id (a UUID, lower case). */
void rest_new_id(char out[ST_ID_MAX + 1]);
/* The length of "<base>/" when ref (len bytes, no NUL needed) starts with our own base URL (base_url in
 * rest_options), else 0. */
size_t rest_own_base_length(const char *base, const char *ref, size_t len);
/*
 * Is ref an absolute URL? Those name a resource by URL only, except URLs
 * under our own base, which are the relative reference written out in
 * full: "https://<base>/Patient/1" is "Patient/1".
 */
bool rest_foreign_url(const char *base, const char *ref);

#endif
