/*
 * gateway/rest/rest_audit.c — the audit entries of a request: noted where
 * access is decided, attached to write transactions, committed before any
 * other answer leaves (see rest_audit.h and docs/audit.md).
 *
 * Memory: each item is malloc'd and kept in q->audit (rq_finish frees them
 * and the operation arrays handed to the store). A held answer's body is
 * kept there too until it is sent.
 */
#include "gateway/rest/rest_audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/reference.h"

/* The members whose Patient reference says whom a resource concerns (Observation.subject, Task.for, ...). */
static const char *const PATIENT_MEMBERS[] = {"subject", "patient", "for", "beneficiary"};

static char action_code(az_action a)
{
    switch (a) {
    case AZ_CREATE: return 'C';
    case AZ_UPDATE: return 'U';
    case AZ_DELETE: return 'D';
    case AZ_VALIDATE: return 'E';
    default: return 'R';
    }
}

static const char *decision_text(az_decision d)
{
    return d == AZ_ALLOW ? "allowed" : d == AZ_HIDDEN ? "hidden" : "forbidden";
}

/* ---- the patient ---- */

/* "Patient/<id>" from a reference text (relative, or under our own base); false for anything else. */
static bool patient_reference(rq *q, const char *s, size_t len, char *out, size_t size)
{
    size_t skip = rest_own_base_length(q->app->opt.base_url, s, len);
    s += skip, len -= skip;
    fr_parts parts;
    if (!fr_parse(s, len, &parts) || parts.type != s || parts.type_len != 7 || memcmp(s, "Patient", 7) ||
        !parts.id_len || parts.id_len > ST_ID_MAX)
        return false;
    snprintf(out, size, "Patient/%.*s", (int)parts.id_len, parts.id);
    return true;
}

bool rest_audit_patient_of(rq *q, const char *type, const char *id, const fj_doc *d, uint32_t root, char *out,
                           size_t size)
{
    if (type && id && *id && !strcmp(type, "Patient")) {
        snprintf(out, size, "Patient/%s", id);
        return true;
    }
    if (!d || d->nodes[root].type != FJ_OBJECT)
        return false;
    for (size_t i = 0; i < sizeof PATIENT_MEMBERS / sizeof *PATIENT_MEMBERS; i++) {
        uint32_t m = fj_get(d, root, PATIENT_MEMBERS[i]);
        uint32_t ref = m != UINT32_MAX && d->nodes[m].type == FJ_OBJECT ? fj_get(d, m, "reference") : UINT32_MAX;
        if (ref != UINT32_MAX && d->nodes[ref].type == FJ_STRING &&
            patient_reference(q, fj_str(d, ref), d->nodes[ref].len, out, size))
            return true;
    }
    return false;
}

/* The patient of a stored version (its JSON parsed from a copy); false when none. */
static bool patient_of_json(rq *q, const char *type, const char *id, const char *json, size_t len, char *out,
                            size_t size)
{
    if (!strcmp(type, "Patient"))
        return rest_audit_patient_of(q, type, id, NULL, 0, out, size);
    char *copy = json ? strndup(json, len) : NULL;
    fj_doc d;
    fj_error err;
    bool found = false;
    if (copy && fj_parse(copy, len, NULL, &d, &err)) {
        found = rest_audit_patient_of(q, type, id, &d, 0, out, size);
        fj_doc_free(&d);
    }
    free(copy);
    return found;
}

/* ---- noting ---- */

/* Who is asking, for every entry: the first note takes it from the request (which is gone once answered). */
static void caller_fields(rq *q, au_entry *e)
{
    rest_audit_state *a = &q->audit;
    if (!a->ids_known && q->req) {
        X509 *cert = srv_req_peer_cert(q->req);
        if (!a->cert_fp[0] && (!cert || !id_fingerprint(cert, a->cert_fp))) /* identify() usually gave it */
            a->cert_fp[0] = '\0';
        AU_SET(a->request_id, srv_req_id(q->req));
        a->ids_known = true;
    }
    AU_SET(e->ura, q->caller.ura);
    AU_SET(e->org_name, q->org_name);
    AU_SET(e->cert_fp, a->cert_fp);
    AU_SET(e->request_id, a->request_id);
    AU_SET(e->interaction, rt_name(q->route.interaction));
}

static rest_audit_item *new_item(rq *q)
{
    rest_audit_state *a = &q->audit;
    rest_audit_item *it = calloc(1, sizeof *it);
    if (!it || !fa_reserve(&a->items, &a->cap, a->count + 1, sizeof *a->items)) {
        free(it);
        a->lost = true; /* an access that cannot be noted cannot be answered (rest_audit_hold) */
        return NULL;
    }
    it->op_index = -1;
    a->items[a->count++] = it;
    caller_fields(q, &it->e);
    return it;
}

void rest_audit_note(rq *q, az_action action, const char *type, const char *id, int64_t version,
                     const char *patient_ref, az_decision d, int status, const char *where)
{
    rest_audit_item *it = new_item(q);
    if (!it)
        return;
    au_entry *e = &it->e;
    e->action = action_code(action);
    AU_SET(e->type, type);
    AU_SET(e->id, id);
    e->version = version;
    AU_SET(e->where, where);
    AU_SET(e->decision, decision_text(d));
    e->status = d == AZ_ALLOW ? 0 : status;
    if (patient_ref && q->app->opt.audit_keys && !au_pseudonym(q->app->opt.audit_keys, NULL, patient_ref, e->patient))
        e->patient[0] = '\0';
}

void rest_audit_note_resource(rq *q, az_action action, const st_resource *r, az_decision d, int status,
                              const char *where)
{
    char patient[ST_ID_MAX + 16];
    bool known = patient_of_json(q, r->type, r->id, r->json, r->json_len, patient, sizeof patient);
    rest_audit_note(q, action, r->type, r->id, r->version, known ? patient : NULL, d, status, where);
}

static bool same_text(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

void rest_audit_note_write(rq *q, rest_write *w, st_op_kind kind, const char *where)
{
    rest_audit_state *a = &q->audit;
    rest_audit_item *it = NULL;
    /* the decision on the version written (update, delete) is this write's entry */
    for (size_t i = a->count; i-- > 0 && !it;) {
        rest_audit_item *c = a->items[i];
        if (!c->handed && !c->w && !c->e.status && !strcmp(c->e.type, w->type) && !strcmp(c->e.id, w->id) &&
            same_text(c->e.where, where))
            it = c;
    }
    if (!it) {
        rest_audit_note(q,
                        kind == ST_OP_CREATE   ? AZ_CREATE
                        : kind == ST_OP_DELETE ? AZ_DELETE
                                               : AZ_UPDATE,
                        w->type, w->id, 0, NULL, AZ_ALLOW, 0, where);
        it = a->count && !a->lost ? a->items[a->count - 1] : NULL;
        if (!it)
            return;
    }
    it->e.action = kind == ST_OP_CREATE ? 'C' : kind == ST_OP_DELETE ? 'D' : 'U';
    it->w = w;
    it->if_match = !where && q->req && srv_req_header(q->req, "If-Match");
    char patient[ST_ID_MAX + 16];
    bool known = kind == ST_OP_DELETE
                     ? w->has_current && patient_of_json(q, w->type, w->id, w->current.json, w->current.json_len,
                                                         patient, sizeof patient)
                     : rest_audit_patient_of(q, w->type, w->id, w->docp, w->root, patient, sizeof patient);
    if (known && q->app->opt.audit_keys && !au_pseudonym(q->app->opt.audit_keys, NULL, patient, it->e.patient))
        it->e.patient[0] = '\0';
}

/* ---- settling on the commit thread ---- */

/* The status the write's answer will have (rest_write.c answers the same). */
static int write_status(const rest_audit_item *it, const st_op_result *r, const st_txn_result *all)
{
    const rest_write *w = it->w;
    switch (r->status) {
    case ST_OK:
        if (w->op.kind == ST_OP_DELETE)
            return it->e.where[0] ? 204 : 200; /* a Bundle entry answers 204, DELETE itself 200 with an outcome */
        return w->op.kind == ST_OP_CREATE || r->created ? 201 : 200;
    case ST_EXISTS: return w->conditional_update ? 412 : 200;
    case ST_VERSION_CONFLICT: return it->if_match || it->e.where[0] ? 412 : 409;
    case ST_MULTIPLE_MATCHES: return 412;
    case ST_NOT_FOUND: return 404;
    case ST_ABORTED: return it->status_of(all->status);
    default: return it->status_of(r->status);
    }
}

/* audit_settle: the outcome of what the entry records, once the transaction's writes have run. */
static void settle(void *arg, const st_txn_result *others, au_entry *e)
{
    const rest_audit_item *it = arg;
    if (e->status) /* a refusal, or an answer already known */
        return;
    if (it->op_index < 0 || (size_t)it->op_index >= others->op_count) {
        e->status = others->status == ST_OK ? 200 : it->status_of(others->status);
        return;
    }
    const st_op_result *r = &others->ops[it->op_index];
    if (r->status == ST_OK || r->status == ST_EXISTS) {
        e->version = r->version;
        if (r->id[0])
            AU_SET(e->id, r->id); /* a conditional create that matched: the resource it found */
    }
    e->status = write_status(it, r, others);
}

/* ---- into the store ---- */

static bool pending(const rest_audit_item *it, const char *where)
{
    return !it->handed && (!where || same_text(it->e.where, where));
}

/* How many handover notifications the writes queue (rest_access.c planned them). */
static size_t notifications_of(const rest_write *const *ws, size_t n)
{
    size_t count = 0;
    for (size_t w = 0; ws && w < n; w++)
        count += ws[w] ? ws[w]->notify_count : 0;
    return count;
}

/* After the writes: one ST_OP_NOTIFY per planned notification, reporting its write (docs/handover.md). The
 * st_notify rows live in `notes`, in the same allocation as the operations. */
static size_t attach_notifications(st_op *all, size_t at, st_notify *notes, const rest_write *const *ws, size_t n)
{
    size_t k = 0;
    for (size_t w = 0; ws && w < n; w++)
        for (size_t j = 0; ws[w] && j < ws[w]->notify_count; j++, k++) {
            notes[k] = (st_notify){.receiver = ws[w]->notify_ura[j], .event = ws[w]->notify_event, .of_op = w};
            all[at++] = (st_op){.kind = ST_OP_NOTIFY, .notify = &notes[k]};
        }
    return at;
}

st_op *rest_audit_attach(rq *q, const st_op *ops, const rest_write *const *ws, size_t n, const char *where,
                         int (*status_of)(st_status), size_t *total)
{
    rest_audit_state *a = &q->audit;
    size_t k = 0, notes = notifications_of(ws, n);
    for (size_t i = 0; i < a->count; i++)
        k += pending(a->items[i], where);
    size_t slots = n + notes + k ? n + notes + k : 1;
    st_op *all = calloc(1, slots * sizeof *all + notes * sizeof(st_notify));
    if (!all || !fa_reserve(&a->txns, &a->txn_cap, a->txn_count + 1, sizeof *a->txns)) {
        free(all);
        return NULL;
    }
    a->txns[a->txn_count++] = all;
    if (n)
        memcpy(all, ops, n * sizeof *ops);
    size_t at = attach_notifications(all, n, (st_notify *)(void *)(all + slots), ws, n);
    for (size_t i = 0; i < a->count; i++) {
        rest_audit_item *it = a->items[i];
        if (!pending(it, where))
            continue;
        it->handed = true;
        it->status_of = status_of;
        for (size_t w = 0; w < n && it->w; w++)
            if (ws[w] == it->w)
                it->op_index = (int)w;
        all[at++] = (st_op){.kind = ST_OP_AUDIT, .audit = &it->e, .audit_settle = settle, .audit_settle_arg = it};
    }
    *total = at;
    return all;
}

static int failure_status(st_status s)
{
    return s == ST_BUSY || s == ST_CLOSED ? 503 : 500;
}

bool rest_audit_committed(const st_txn_result *result, size_t writes, int *status)
{
    /* ST_ABORTED: an operation (a notification) left undone because a write failed; that write has the status */
    for (size_t i = writes; i < result->op_count; i++)
        if (result->ops[i].status != ST_OK && result->ops[i].status != ST_ABORTED) {
            *status = failure_status(result->ops[i].status);
            return false;
        }
    return true;
}

/* ---- holding an answer until its entries have committed ---- */

static int held_status_of(st_status s)
{
    return failure_status(s);
}

#define CONTENT_TYPE "application/fhir+json; charset=utf-8"
#define UNRECORDED "the access could not be recorded in the audit trail, so it is not answered; try again"
#define UNSYNCED "the store could not make what this answer read durable, so it is not answered; try again"

/* On the worker (posted by hold_done): the held answer, or 500/503 when its entries did not commit. */
static void hold_answer(void *arg)
{
    rq *q = arg;
    rest_audit_state *a = &q->audit;
    srv_request *req = a->req;
    bool stream = a->produce != NULL, finish = a->finish_wanted;
    a->holding = false;
    a->req = NULL;
    if (a->failed) {
        free(a->body);
        a->body = NULL;
        srv_respond_outcome(req, a->failed_status, OO_EXCEPTION, a->barrier ? UNSYNCED : UNRECORDED);
        if (stream)
            a->release(a->arg); /* frees the page and q */
        else if (finish)
            rq_finish(q);
        return;
    }
    if (stream) {
        srv_set_header(req, "Content-Type", q->content_type ? q->content_type : CONTENT_TYPE);
        srv_respond_stream(req, 200, a->produce, a->release, a->arg); /* q belongs to the stream now */
        return;
    }
    if (a->body)
        srv_set_header(req, "Content-Type", q->content_type ? q->content_type : CONTENT_TYPE);
    srv_respond(req, a->status, a->body, a->len);
    a->body = NULL;
    if (finish)
        rq_finish(q);
}

/* The store's completion callback, on its thread. A barrier has no operations: its batch's status says. */
static void hold_done(void *arg, const st_txn_result *result)
{
    rq *q = arg;
    if (result->op_count == 0 && result->status != ST_OK) {
        q->audit.failed = true;
        q->audit.failed_status = failure_status(result->status);
    } else {
        q->audit.failed = !rest_audit_committed(result, 0, &q->audit.failed_status);
    }
    srv_post(q->audit.req, hold_answer, q);
}

/*
 * An answer without entries of its own may still carry what a read saw of a
 * commit not yet durable (store.h): unless it is a write's, answered after
 * its own commit, it waits for a barrier then.
 */
static bool needs_barrier(rq *q)
{
    return !q->after_own_commit && !st_durable_now(q->app->opt.store);
}

bool rest_audit_hold(rq *q, int status, char *body, size_t len, srv_producer produce, srv_release release, void *arg)
{
    rest_audit_state *a = &q->audit;
    size_t k = 0;
    for (size_t i = 0; i < a->count; i++)
        if (!a->items[i]->handed) {
            k++;
            if (!a->items[i]->e.status)
                a->items[i]->e.status = status; /* the answer is what the access got */
        }
    bool barrier = !k && !a->lost;
    if (barrier && !needs_barrier(q))
        return false;
    a->req = q->req;
    q->req = NULL; /* the caller must not touch q after a hold: the stream's release may free it */
    a->status = status, a->body = body, a->len = len;
    a->produce = produce, a->release = release, a->arg = arg;
    a->holding = true;
    a->barrier = barrier;
    size_t total = 0;
    st_op *ops = a->lost || barrier ? NULL : rest_audit_attach(q, NULL, NULL, 0, NULL, held_status_of, &total);
    st_status s = barrier ? st_submit_barrier(q->app->opt.store, hold_done, q)
                  : ops   ? st_submit(q->app->opt.store, ops, total, hold_done, q)
                          : ST_INTERNAL;
    if (s != ST_OK) { /* nothing was queued: answered at once, as unrecorded */
        a->failed = true;
        a->failed_status = failure_status(s);
        hold_answer(q);
    }
    return true;
}

/* A streamed page's pending entries, answered 200 by the stream's head; how many there are. */
static size_t mark_streamed(rest_audit_state *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->count; i++)
        if (!a->items[i]->handed) {
            k++;
            if (!a->items[i]->e.status)
                a->items[i]->e.status = 200; /* a streamed page: its head said 200 */
        }
    return k;
}

bool rest_audit_flush_wait(rq *q)
{
    rest_audit_state *a = &q->audit;
    size_t k = mark_streamed(a);
    if (a->lost)
        return false;
    if (!k)
        return true;
    size_t total = 0;
    st_op *ops = rest_audit_attach(q, NULL, NULL, 0, NULL, held_status_of, &total);
    st_op_result *results = ops ? calloc(total, sizeof *results) : NULL;
    bool ok = results && st_submit_wait(q->app->opt.store, ops, total, results) == ST_OK;
    free(results);
    return ok;
}

int rest_audit_flush_start(rq *q, st_done_fn done, void *arg)
{
    rest_audit_state *a = &q->audit;
    size_t k = mark_streamed(a);
    if (a->lost)
        return -1;
    if (!k)
        return 0;
    size_t total = 0;
    st_op *ops = rest_audit_attach(q, NULL, NULL, 0, NULL, held_status_of, &total);
    return ops && st_submit(q->app->opt.store, ops, total, done, arg) == ST_OK ? 1 : -1;
}
