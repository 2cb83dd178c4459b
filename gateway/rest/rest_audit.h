/*
 * gateway/rest/rest_audit.h — the NEN 7513 audit entries of a request
 * (rest_audit.c; the design is docs/audit.md).
 *
 * Every access to patient data is noted here as one entry per resource
 * touched, allowed or refused: rest_access notes every decision on a stored
 * resource and every refusal; the write paths note what they write; search
 * and history note the query and every resource they return. Entries then
 * reach the store in one of two ways:
 *   - with a write: rest_audit_attach puts the request's pending entries into
 *     the write's own transaction (ST_OP_AUDIT), settled on the commit thread
 *     with the write's outcome, so an entry commits with its write or the
 *     write does not happen;
 *   - before any other answer: answer.c calls rest_audit_hold, which submits
 *     them as a transaction of their own through the same group commit and
 *     holds the answer until it has committed; if it fails, the client gets
 *     500/503 instead of the data.
 *
 * Memory: items belong to q (freed by rq_finish); operation arrays handed
 * to the store too. Threads: notes and holds run on the request's worker;
 * the commit thread settles only items marked handed.
 */
#ifndef GATEWAY_REST_AUDIT_H
#define GATEWAY_REST_AUDIT_H

#include "gateway/rest/rest_internal.h"

/* One access: action on type/id (id NULL: the type), version (0: none), the patient reference it concerns ("Patient/1"
 * or NULL), the decision and, for a refusal, its status (0: the answer's, filled in when it is known). */
void rest_audit_note(rq *q, az_action action, const char *type, const char *id, int64_t version,
                     const char *patient_ref, az_decision d, int status, const char *where);
/* An access to stored resource r (its patient found in its JSON). */
void rest_audit_note_resource(rq *q, az_action action, const st_resource *r, az_decision d, int status,
                              const char *where);
/* The write w (kind, where in a Bundle or NULL) is about to be submitted: its entry, merged with the decision's. */
void rest_audit_note_write(rq *q, rest_write *w, st_op_kind kind, const char *where);

/* The patient reference a resource concerns ("Patient/<id>": itself, or its subject/patient/for/beneficiary),
 * into out (size bytes); false when none. */
bool rest_audit_patient_of(rq *q, const char *type, const char *id, const fj_doc *d, uint32_t root, char *out,
                           size_t size);

/*
 * The transaction to submit: the n write operations (copied) followed by
 * every pending entry (only those noted with `where`, when where is not
 * NULL), each settled by its write's outcome. ws[i] is the rest_write of
 * ops[i]; status_of maps a store failure to its HTTP status. Malloc'd and
 * kept by q; *total operations. NULL when out of memory.
 */
st_op *rest_audit_attach(rq *q, const st_op *ops, const rest_write *const *ws, size_t n, const char *where,
                         int (*status_of)(st_status), size_t *total);
/* After the commit (on any thread): did every audit operation of the transaction (those after its `writes`
 * write operations) succeed? If not, *status is the one to answer (500, or 503 for a busy or closing store). */
bool rest_audit_committed(const st_txn_result *result, size_t writes, int *status);

/* answer.c: hold this answer until the pending entries have committed (true: held; q->req is taken). */
bool rest_audit_hold(rq *q, int status, char *body, size_t len, srv_producer produce, srv_release release, void *arg);
/* For a streamed page's later chunks, on the worker: commit the pending entries now, waiting; false if that failed. */
bool rest_audit_flush_wait(rq *q);
/*
 * rest_audit_flush_wait without the wait, so that a stream makes its next page while this one's entries commit:
 * 1 when they were submitted (done then runs once on the commit thread: rest_audit_committed(result, 0, ...)
 * says whether they were recorded; q must outlive it), 0 when none were pending (done does not run), -1 when
 * they could not be submitted.
 */
int rest_audit_flush_start(rq *q, st_done_fn done, void *arg);

#endif
