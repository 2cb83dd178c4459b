/*
 * gateway/rest/rest_batch.h — transactions built by the gateway itself
 * (rest_batch.c), for $operations that write several resources at once
 * (rest_handover: the documents and the Task of a handover).
 *
 * The transaction goes through the path of a client's transaction Bundle
 * (the caller has validated its resources): the access checks of every entry (rest_access),
 * conditional creates evaluated on the commit thread, urn:uuid: names
 * rewritten, one store transaction with the audit entries of every write.
 * Only the answer differs: the caller's `answer` builds it from what each
 * write entry did.
 *
 * Memory: rest_transaction_run_validated takes text and doc. `written`
 * lives during the call of answer only; its strings and its `stored`
 * resources too (borrowed: never st_resource_free them).
 */
#ifndef GATEWAY_REST_BATCH_H
#define GATEWAY_REST_BATCH_H

#include "gateway/rest/rest_internal.h"

/* What one write entry did: status 201 (created) or 200 (a conditional create that matched), the resource. */
typedef struct rest_txn_written {
    int status;
    const char *type, *id;
    int64_t version; /* the version written, or the current one a conditional create matched */
    int64_t last_updated_ms;
    /*
     * An entry of the type the caller asked to keep (keep_type below) that wrote a version: that version as a
     * read of it right after the commit gives it (body, owner, access tags), so that the answer needs no read
     * transaction. NULL for the other entries and for a conditional create that matched: what matched may have
     * changed since, only a read tells.
     */
    const st_resource *stored;
} rest_txn_written;

/* Runs on the request's worker after the commit; must answer q (rq_respond_*); q is finished after it. */
typedef void (*rest_txn_answer)(rq *q, void *arg, const rest_txn_written *written, size_t count);

/*
 * Run a transaction Bundle the caller has built and parsed (doc, its nodes in text; both taken) from resources
 * it has validated already (core and profiles, as $handover does with its documents): not parsed nor
 * validated a second time (for a 50 KB document that second validation was a fifth of the request's CPU,
 * writing it out and parsing it again most of the rest). Failures (refused entry, rollback) are answered as
 * for a client's transaction. keep_type: NULL, or the type whose written versions answer gets as `stored`
 * (the commit thread copies each rendered body for it: name small resources, not the documents). Returns as
 * a handler does (handlers.h): true when q was handed on.
 */
bool rest_transaction_run_validated(rq *q, char *text, fj_doc *doc, const char *keep_type, rest_txn_answer answer,
                                    void *arg);

#endif
