/*
 * gateway/rest/rest_access.c — the one place where the REST layer decides who
 * may do what, and records it (see docs/access.md for the model).
 *
 * Every access decision goes through rest_decide: plain interactions, each
 * entry of a batch or transaction, each version of a history and a vread,
 * conditional interactions. It takes the final facts (the stored resource's
 * owner and access tags, read on the worker), asks the pure rules in
 * authz.c, and writes one JSON line per decision: always for refusals,
 * and for allowances too when rest_options.log_allowed is set. Each decision
 * on a stored resource, and each refusal, is also noted as a NEN 7513 audit
 * entry (rest_audit.h), which is committed before the answer leaves.
 *
 * Writes: the decision is made on a version of the resource, and the write
 * is pinned to that version (st_op.expected_version), so the commit, where
 * writes are serialised, applies it only if nothing changed in between: a
 * concurrent change gives 409 instead of a write decided on stale facts.
 * No resource is created by PUT (update as create), so ids cannot be
 * squatted and a PUT answers the same 404 for "does not exist" and "not
 * yours": nothing leaks through status codes or messages.
 *
 * Addressing: the organisations a resource is addressed to (its access
 * tags: a Task's owner, a Communication's recipient, ...) are taken from the
 * gateway's own facts, never from what a caller wrote: a reference to
 * Organization/<id> addresses the organisation that owns that directory
 * entry in the store (and is registered); a logical reference by URA
 * identifier addresses that URA if it is registered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/reference.h"
#include "fhir/walk.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_audit.h"
#include "gateway/relay/notify.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"

/* ---- recording ---- */

static const char *action_name(az_action a)
{
    static const char *const names[] = {"read", "search", "history", "create", "update", "delete", "validate"};
    return names[a];
}

static const char *decision_name(az_decision d)
{
    return d == AZ_ALLOW ? "allowed" : d == AZ_HIDDEN ? "hidden" : "forbidden";
}

/*
 * One JSON line per decision in the error log (gateway/util/log.h): who, which action on
 * which type, where in a Bundle, the decision and why. No ids, no query
 * strings: nothing that identifies a patient.
 */
static void log_decision(rq *q, az_action action, const char *type, az_decision d, int status, const char *why,
                         const char *where)
{
    if (d == AZ_ALLOW && !q->app->opt.log_allowed)
        return;
    const lg_logger *log = q->app->opt.log ? q->app->opt.log : lg_stderr();
    lg_write_at(log, rest_now_ms(q->app), d == AZ_ALLOW ? LG_INFO : LG_WARNING,
                LG_FIELDS(LG_STR("event", d == AZ_ALLOW ? "allowed" : "denied"), LG_STR("decision", decision_name(d)),
                          LG_INT("status", status), LG_STR("request_id", srv_req_id(q->req)),
                          LG_STR("ura", q->caller.ura), LG_STR("interaction", rt_name(q->route.interaction)),
                          LG_STR("action", action_name(action)), LG_STR("type", type ? type : ""),
                          LG_STR("where", where ? where : ""), LG_STR("reason", why)));
}

/* A decision made elsewhere: a refusal of a named type is an audited access too (the id is the route's). */
void rest_record_decision(rq *q, az_action action, const char *type, az_decision d, int status, const char *why,
                          const char *where)
{
    log_decision(q, action, type, d, status, why, where);
    if (type && d != AZ_ALLOW)
        rest_audit_note(q, action, type, where ? NULL : q->route.id, 0, NULL, d, status, where);
}

/* ---- decisions ---- */

az_decision rest_decide(rq *q, az_action action, const char *type, const st_resource *r, const char *where)
{
    az_decision d = r ? az_check_resource(&q->caller, type, action, r->owner, (const char *const *)r->access_tags,
                                          r->access_tag_count)
                      : az_check_type(&q->caller, type, action);
    const char *why = d == AZ_ALLOW    ? (r ? "owner or addressee" : "type allowed")
                      : d == AZ_HIDDEN ? "not owner or addressee"
                      : r              ? "not allowed to change"
                                       : "no access to this type";
    int status = d == AZ_ALLOW ? 200 : d == AZ_HIDDEN ? 404 : 403;
    log_decision(q, action, type, d, status, why, where);
    /* audited: every decision on a stored resource, and a refusal by type (allowed by type is not yet an access) */
    if (r)
        rest_audit_note_resource(q, action, r, d, status, where);
    else if (d != AZ_ALLOW)
        rest_audit_note(q, action, type, NULL, 0, NULL, d, status, where);
    return d;
}

bool rest_may(rq *q, const st_resource *r, az_action action)
{
    az_decision d = rest_decide(q, action, r->type, r, NULL);
    if (d == AZ_ALLOW)
        return true;
    if (d == AZ_HIDDEN)
        rest_answer_not_known(q, r->type, r->id, q->route.version);
    else
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "this organisation may not %s %s/%s",
                           action == AZ_DELETE ? "delete" : "change", r->type, r->id);
    return false;
}

/* ---- addressing: access tags from the gateway's own facts ---- */

static void add_tag(rest_write *w, const char *ura)
{
    if (!id_is_ura(ura)) /* owners and callers: URAs the gateway itself resolved */
        return;
    for (size_t i = 0; i < w->tag_count; i++)
        if (!strcmp(w->tag_text[i], ura))
            return;
    if (w->tag_count == REST_MAX_TAGS) {
        w->tags_overflow = true;
        return;
    }
    memcpy(w->tag_text[w->tag_count], ura, 9);
    w->tags[w->tag_count] = w->tag_text[w->tag_count];
    w->tag_count++;
}

static bool registered(rq *q, const char *ura)
{
    return id_lookup_ura(q->app->opt.organisations, ura) != NULL;
}

/* "https://our.base/Organization/x" -> "Organization/x"; other absolute URLs are someone else's. */
static const char *strip_own_base(rq *q, const char *s, size_t *len)
{
    size_t skip = rest_own_base_length(q->app->opt.base_url, s, *len);
    *len -= skip;
    return s + skip;
}

/*
 * The Organizations the checks of one write read: its addressees (the
 * tags), the targets of its references, the parties its notifications go
 * to. A Task names its receiver's directory entry for all three, and each
 * was a read transaction of its own; now each Organization is read once per
 * write, so the checks also decide on one version of it; the one the
 * handler read for the request (rq.entry_read: $handover's receiver) is not
 * read again. It lives for one rest_access_check_write only, never across
 * writes or requests: a change to a directory entry counts from the next
 * write on, as before.
 */
typedef struct org_read {
    char id[ST_ID_MAX + 1];
    st_status status; /* of st_read; r holds the version (or the deletion, ST_GONE) */
    st_resource r;
} org_read;

typedef struct org_reads {
    rq *q;
    org_read **items; /* each its own allocation: a pointer handed out stays valid as more are read */
    size_t count, cap;
} org_reads;

/* Organization/id as this write's checks see it (the request's entry_read when it is that one): ST_OK (*out the
 * version), ST_GONE (*out the deletion), or the read's failure (*out NULL). *out lives as long as reads. */
static st_status read_org(org_reads *reads, const char *id, const st_resource **out)
{
    const st_resource *lent = &reads->q->entry_read;
    if (lent->id && !strcmp(lent->type, "Organization") && !strcmp(lent->id, id)) {
        *out = lent;
        return lent->deleted ? ST_GONE : ST_OK;
    }
    *out = NULL;
    for (size_t i = 0; i < reads->count; i++)
        if (!strcmp(reads->items[i]->id, id)) {
            org_read *o = reads->items[i];
            *out = o->status == ST_OK || o->status == ST_GONE ? &o->r : NULL;
            return o->status;
        }
    org_read *o = calloc(1, sizeof *o);
    if (!o || !fa_reserve(&reads->items, &reads->cap, reads->count + 1, sizeof *reads->items)) {
        free(o);
        return ST_INTERNAL; /* out of memory: as a failed read, nothing is addressed or allowed by it */
    }
    st_error err;
    snprintf(o->id, sizeof o->id, "%s", id);
    o->status = st_read(reads->q->app->opt.store, "Organization", id, &o->r, &err);
    reads->items[reads->count++] = o;
    *out = o->status == ST_OK || o->status == ST_GONE ? &o->r : NULL;
    return o->status;
}

static void org_reads_free(org_reads *reads)
{
    for (size_t i = 0; i < reads->count; i++) {
        st_resource_free(&reads->items[i]->r);
        free(reads->items[i]);
    }
    free(reads->items);
}

/*
 * One addressing Reference: Organization/<id> (relative, against our own
 * base, or a urn:uuid: of a transaction entry) addresses the registered
 * organisation that owns that entry; an identifier with the URA system
 * addresses that URA when it is registered. Returns how many it added.
 */
static size_t tag_from_reference(org_reads *reads, rest_write *w, const fj_doc *d, uint32_t ref)
{
    rq *q = reads->q;
    size_t before = w->tag_count;
    uint32_t r = fj_get(d, ref, "reference");
    if (r != UINT32_MAX && d->nodes[r].type == FJ_STRING) {
        size_t len = d->nodes[r].len;
        const char *s = fj_str(d, r);
        const char *named = w->hooks && w->hooks->replace_string ? w->hooks->replace_string(w->hooks->ctx, d, r, &len)
                                                                 : NULL;
        s = strip_own_base(q, named ? named : s, &len);
        fr_parts parts;
        if (fr_parse(s, len, &parts) && parts.type_len == 12 && !memcmp(parts.type, "Organization", 12) &&
            parts.type == s && parts.id_len <= ST_ID_MAX) {
            char id[ST_ID_MAX + 1];
            memcpy(id, parts.id, parts.id_len);
            id[parts.id_len] = '\0';
            const st_resource *org;
            if (read_org(reads, id, &org) == ST_OK) {
                if (registered(q, org->owner))
                    add_tag(w, org->owner);
            } else if (named) {
                add_tag(w, q->caller.ura); /* created by this transaction: owned by the writer */
            }
        }
    }
    uint32_t ident = fj_get(d, ref, "identifier");
    if (ident != UINT32_MAX && d->nodes[ident].type == FJ_OBJECT) {
        uint32_t sys = fj_get(d, ident, "system"), val = fj_get(d, ident, "value");
        if (sys != UINT32_MAX && val != UINT32_MAX && fj_str_eq(d, sys, URA_SYSTEM) &&
            d->nodes[val].type == FJ_STRING && d->nodes[val].len == 8) {
            char ura[9];
            memcpy(ura, fj_str(d, val), 8);
            ura[8] = '\0';
            if (registered(q, ura))
                add_tag(w, ura);
        }
    }
    return w->tag_count - before;
}

/* The value of obj's member named key (len bytes), or UINT32_MAX (also when obj is no object). */
static uint32_t member(const fj_doc *d, uint32_t obj, const char *key, size_t len)
{
    uint32_t k = obj + 1, v = UINT32_MAX;
    for (uint32_t m = 0; d->nodes[obj].type == FJ_OBJECT && m < d->nodes[obj].len; m++, k = fj_next(d, k + 1))
        if (d->nodes[k].len == len && !memcmp(fj_str(d, k), key, len))
            v = k + 1;
    return v;
}

/* Nodes a path reaches: a growable array (fhir/array.h) its user frees. */
typedef struct reached {
    uint32_t *nodes;
    size_t count, cap;
} reached;

static bool push(reached *r, uint32_t node)
{
    if (!fa_reserve(&r->nodes, &r->cap, r->count + 1, sizeof *r->nodes))
        return false;
    r->nodes[r->count++] = node;
    return true;
}

/* The members one step `seg` (len bytes) reaches from each node of from (array items each), appended to to. */
static bool step(const fj_doc *d, const reached *from, const char *seg, size_t len, reached *to)
{
    bool ok = true;
    for (size_t i = 0; ok && i < from->count; i++) {
        uint32_t v = member(d, from->nodes[i], seg, len);
        if (v == UINT32_MAX)
            continue;
        if (d->nodes[v].type != FJ_ARRAY) {
            ok = push(to, v);
            continue;
        }
        uint32_t it = v + 1;
        for (uint32_t j = 0; ok && j < d->nodes[v].len; j++, it = fj_next(d, it))
            ok = push(to, it);
    }
    return ok;
}

/*
 * Every node a path like "Task.restriction.recipient" reaches in the
 * resource, through arrays; all of them, however many (a resource cannot
 * hide an addressee or a grant behind a count). False when out of memory
 * (out is then empty).
 */
static bool reach(const fj_doc *d, uint32_t root, const char *path, reached *out)
{
    reached cur = {0}, next = {0};
    bool ok = push(&cur, root);
    for (const char *seg = strchr(path, '.') + 1; ok && seg && *seg && cur.count;) {
        size_t len = strcspn(seg, ".");
        next.count = 0;
        ok = step(d, &cur, seg, len, &next);
        reached t = cur;
        cur = next;
        next = t;
        seg = seg[len] ? seg + len + 1 : NULL;
    }
    free(next.nodes);
    if (!ok) {
        free(cur.nodes);
        cur = (reached){0};
    }
    *out = cur;
    return ok;
}

static int out_of_memory(oo_list *issues)
{
    oo_add(issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "out of memory");
    return 503;
}

/*
 * The access tags of a write (authz.c says which elements address whom).
 * A Task whose owner addresses no registered organisation is refused: it
 * would be stored where no receiver can ever see it.
 */
static int compute_tags(org_reads *reads, rest_write *w, oo_list *issues)
{
    const char *const *paths = az_addressing_paths(w->type);
    const fj_doc *d = w->docp;
    for (; *paths; paths++) {
        reached found;
        if (!reach(d, w->root, *paths, &found))
            return out_of_memory(issues);
        size_t n = found.count, added = 0;
        for (size_t i = 0; i < n; i++)
            if (d->nodes[found.nodes[i]].type == FJ_OBJECT)
                added += tag_from_reference(reads, w, d, found.nodes[i]);
        free(found.nodes);
        if (w->tags_overflow) { /* said where: the element that named one organisation too many */
            oo_add(issues, OO_ERROR, OO_TOO_LONG, *paths, 0, 0,
                   "%s: more than %d addressees; a resource may be addressed to at most %d registered "
                   "organisations (REST_MAX_TAGS)",
                   *paths, REST_MAX_TAGS, REST_MAX_TAGS);
            return 422;
        }
        if (n && !added && !strcmp(*paths, "Task.owner")) {
            oo_add(issues, OO_ERROR, OO_PROCESSING, "Task.owner", 0, 0,
                   "Task.owner names no registered organisation: refer to its directory entry (Organization/<id>) "
                   "or to its URA (identifier system %s)",
                   URA_SYSTEM);
            return 422;
        }
    }
    return 0;
}

/* ---- handovers (docs/handover.md): a Task with code SNOMED 308292007, transfer of care ---- */

static bool handover_member(const char *key, size_t len);
static bool gateway_mark_member(const char *key, size_t len);
static const char *first_change(const fj_doc *old, uint32_t oi, const fj_doc *new, uint32_t ni,
                                bool (*may)(const char *, size_t), char *buf, size_t size);

#define SNOMED "http://snomed.info/sct"
#define HANDOVER_DEFINITION "https://fhirgw.nl/fhir/OperationDefinition/handover"
#define LOINC "http://loinc.org"

/* Does CodeableConcept cc (UINT32_MAX: absent) carry system|code? */
static bool has_coding(const fj_doc *d, uint32_t cc, const char *system, const char *code)
{
    uint32_t codings = cc != UINT32_MAX ? fj_get(d, cc, "coding") : UINT32_MAX;
    if (codings == UINT32_MAX || d->nodes[codings].type != FJ_ARRAY)
        return false;
    uint32_t c = codings + 1;
    for (uint32_t i = 0; i < d->nodes[codings].len; i++, c = fj_next(d, c)) {
        uint32_t sy = fj_get(d, c, "system"), co = fj_get(d, c, "code");
        if (sy != UINT32_MAX && co != UINT32_MAX && fj_str_eq(d, sy, system) && fj_str_eq(d, co, code))
            return true;
    }
    return false;
}

/*
 * A Task of the relay: transfer of care, instantiating the $handover
 * definition (rest_handover.c writes both). Other Tasks, also with that
 * code, follow the general rules of docs/access.md. The mark cannot be
 * dropped later: it is not the status, so changing it is refused.
 */
bool rest_is_handover_task(const fj_doc *d, uint32_t task)
{
    uint32_t inst = fj_get(d, task, "instantiatesCanonical");
    return inst != UINT32_MAX && fj_str_eq(d, inst, HANDOVER_DEFINITION) &&
           has_coding(d, fj_get(d, task, "code"), SNOMED, "308292007");
}

static bool status_is(const fj_doc *d, uint32_t task, const char *status)
{
    uint32_t st = fj_get(d, task, "status");
    return st != UINT32_MAX && fj_str_eq(d, st, status);
}

/*
 * Who moves a handover Task from which status to which (Nuts eOverdracht):
 * the receiver accepts, rejects, puts on hold and completes; the sender
 * starts the handover once accepted and may cancel until the Task ends.
 */
static const struct handover_move {
    const char *from, *to;
    bool by_receiver;
} handover_moves[] = {
    {"requested", "accepted", true},    {"requested", "rejected", true},    {"requested", "on-hold", true},
    {"in-progress", "completed", true}, {"accepted", "in-progress", false}, {"requested", "cancelled", false},
    {"accepted", "cancelled", false},   {"on-hold", "cancelled", false},    {"in-progress", "cancelled", false},
};

static bool handover_move_allowed(const char *from, size_t from_len, const char *to, size_t to_len, bool receiver)
{
    for (size_t i = 0; i < sizeof handover_moves / sizeof *handover_moves; i++) {
        const struct handover_move *m = &handover_moves[i];
        if (m->by_receiver == receiver && strlen(m->from) == from_len && !memcmp(m->from, from, from_len) &&
            strlen(m->to) == to_len && !memcmp(m->to, to, to_len))
            return true;
    }
    return false;
}

/* The status change old -> new of a handover Task (both parsed): 0, or 409 with an issue. */
static int check_handover_status(rq *q, const fj_doc *old, const fj_doc *new, uint32_t root, bool receiver,
                                 oo_list *issues)
{
    (void)q;
    uint32_t os = fj_get(old, 0, "status"), ns = fj_get(new, root, "status");
    if (os == UINT32_MAX || ns == UINT32_MAX)
        return 0; /* status is required: the validator has said so */
    size_t ol = old->nodes[os].len, nl = new->nodes[ns].len;
    const char *o = fj_str(old, os), *n = fj_str(new, ns);
    if (ol == nl && !memcmp(o, n, ol))
        return 0;
    if (handover_move_allowed(o, ol, n, nl, receiver))
        return 0;
    oo_add(issues, OO_ERROR, "business-rule", "Task.status", 0, 0,
           "the %s of a handover may not move it from %.*s to %.*s (receiver: requested -> accepted, rejected or "
           "on-hold, in-progress -> completed; sender: accepted -> in-progress, or cancel)",
           receiver ? "receiver" : "sender", (int)ol, o, (int)nl, n);
    return 409;
}

/*
 * A handover Task changes only by the moves above, and only its status:
 * anything else is 422. Created in status requested (with an advance
 * notice) or in-progress (without).
 */
static int check_handover_change(rq *q, rest_write *w, const st_resource *current, bool *status_only, oo_list *issues)
{
    if (strcmp(w->type, "Task"))
        return 0;
    if (!current || current->deleted) {
        if (!rest_is_handover_task(w->docp, w->root) || status_is(w->docp, w->root, "requested") ||
            status_is(w->docp, w->root, "in-progress"))
            return 0;
        oo_add(issues, OO_ERROR, "business-rule", "Task.status", 0, 0,
               "a handover Task starts as requested (with an advance notice) or in-progress (without one)");
        return 422;
    }
    char *copy = strndup(current->json, current->json_len);
    fj_doc old;
    fj_error err;
    int status = 0;
    if (!copy || !fj_parse(copy, current->json_len, NULL, &old, &err)) {
        oo_add(issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "the stored Task cannot be read back");
        status = 500;
    } else if (rest_is_handover_task(&old, 0)) {
        char where[80];
        const char *changed = first_change(&old, 0, w->docp, w->root,
                                           w->gateway_mark ? gateway_mark_member : handover_member, where,
                                           sizeof where);
        if (changed) {
            oo_add(issues, OO_ERROR, "business-rule", changed, 0, 0,
                   "a handover Task changes only its status (and lastModified); %s may not change", changed);
            status = 422;
        } else {
            status = check_handover_status(q, &old, w->docp, w->root, strcmp(current->owner, q->caller.ura) != 0,
                                           issues);
            uint32_t os = fj_get(&old, 0, "status"), ns = fj_get(w->docp, w->root, "status");
            w->status_moved = !status && os != UINT32_MAX && ns != UINT32_MAX &&
                              !fj_equal(&old, os, w->docp, ns, FJ_NUMBERS_BY_TEXT);
            *status_only = true;
        }
    }
    fj_doc_free(&old);
    free(copy);
    return status;
}

/* What a handover Task lets its receiver read in its status: the advance notice, the handover, or nothing. */
static const char *handover_input_wanted(const fj_doc *d, uint32_t task, const char **system)
{
    if (status_is(d, task, "requested") || status_is(d, task, "accepted") || status_is(d, task, "on-hold")) {
        *system = LOINC;
        return "57830-2";
    }
    if (status_is(d, task, "in-progress")) {
        *system = SNOMED;
        return "371535009";
    }
    return NULL;
}

/* ---- grants: a Task lets its receiver read what it refers to ---- */

/* Task statuses in which the receiver may still open what the Task refers to (eOverdracht: until it ends). */
static const char *const granting_statuses[] = {"requested", "received", "accepted", "ready", "in-progress", "on-hold"};

static bool task_grants(const fj_doc *d, uint32_t task)
{
    uint32_t st = fj_get(d, task, "status");
    for (size_t i = 0; st != UINT32_MAX && i < sizeof granting_statuses / sizeof *granting_statuses; i++)
        if (fj_str_eq(d, st, granting_statuses[i]))
            return true;
    return false;
}

static bool granted(const rest_write *w, const char *type, const char *id)
{
    for (size_t i = 0; i < w->grant_count; i++)
        if (!strcmp(w->grants[i].type, type) && !strcmp(w->grants[i].id, id))
            return true;
    return false;
}

/*
 * One reference a Task grants: a resource of the Task's owner (the sender:
 * nobody grants what is not theirs), not itself a Task (grants are for
 * reading, and a Task's addressee may change Tasks), or one created by the
 * same transaction. The same resource named twice (for and focus) is one
 * grant. 0, or 422 when the Task would grant more than REST_MAX_GRANTS:
 * refused rather than granting some and silently not the rest.
 */
static int grant_reference(rq *q, rest_write *w, const fj_doc *d, uint32_t ref, const char *task_owner,
                           const char *path, oo_list *issues)
{
    uint32_t r = fj_get(d, ref, "reference");
    if (r == UINT32_MAX || d->nodes[r].type != FJ_STRING)
        return 0;
    size_t len = d->nodes[r].len;
    const char *named = w->hooks && w->hooks->replace_string ? w->hooks->replace_string(w->hooks->ctx, d, r, &len)
                                                             : NULL;
    const char *s = strip_own_base(q, named ? named : fj_str(d, r), &len);
    fr_parts parts;
    if (!fr_parse(s, len, &parts) || parts.type != s || parts.id_len > ST_ID_MAX)
        return 0;
    const fs_type *t = fs_type_by_name(q->app->schema, parts.type, parts.type_len);
    if (!t || t->kind != FS_RESOURCE || !strcmp(t->name, "Task"))
        return 0;
    char id[ST_ID_MAX + 1];
    memcpy(id, parts.id, parts.id_len);
    id[parts.id_len] = '\0';
    st_resource target;
    st_error err;
    bool theirs = named && !strcmp(task_owner, q->caller.ura);
    if (!theirs && st_read(q->app->opt.store, t->name, id, &target, &err) == ST_OK) {
        theirs = !strcmp(target.owner, task_owner);
        st_resource_free(&target);
    }
    if (!theirs || granted(w, t->name, id))
        return 0;
    if (w->grant_count == REST_MAX_GRANTS) {
        oo_add(issues, OO_ERROR, OO_TOO_LONG, path, 0, 0,
               "%s: the Task would let its receiver read more than %d resources (REST_MAX_GRANTS); refer to at most "
               "%d of the sender's resources from Task.for, focus, encounter and input",
               path, REST_MAX_GRANTS, REST_MAX_GRANTS);
        return 422;
    }
    /* a name of this transaction: point into it, so a conditional create that matches moves the grant along */
    const char *kept = named ? parts.id : w->grant_ids[w->grant_count];
    if (!named)
        memcpy(w->grant_ids[w->grant_count], id, parts.id_len + 1);
    w->grants[w->grant_count++] = (st_grant){t->name, kept};
    return 0;
}

/* A handover Task grants only the input its status opens (handover_input_wanted); the rest of the Task nothing. */
static int compute_handover_grants(rq *q, rest_write *w, const char *task_owner, oo_list *issues)
{
    const fj_doc *d = w->docp;
    const char *system = NULL;
    const char *code = handover_input_wanted(d, w->root, &system);
    uint32_t inputs = fj_get(d, w->root, "input");
    if (!code || inputs == UINT32_MAX || d->nodes[inputs].type != FJ_ARRAY)
        return 0;
    int status = 0;
    uint32_t in = inputs + 1;
    for (uint32_t i = 0; i < d->nodes[inputs].len && !status; i++, in = fj_next(d, in)) {
        uint32_t ref = fj_get(d, in, "valueReference");
        if (ref != UINT32_MAX && has_coding(d, fj_get(d, in, "type"), system, code))
            status = grant_reference(q, w, d, ref, task_owner, "Task.input.valueReference", issues);
    }
    return status;
}

static int compute_grants(rq *q, rest_write *w, const st_resource *current, oo_list *issues)
{
    const fj_doc *d = w->docp;
    w->grant_count = 0;
    if (strcmp(w->type, "Task") || !task_grants(d, w->root))
        return 0;
    const char *task_owner = current ? current->owner : q->caller.ura;
    if (rest_is_handover_task(d, w->root))
        return compute_handover_grants(q, w, task_owner, issues);
    static const char *const paths[] = {"Task.for", "Task.focus", "Task.encounter", "Task.input.valueReference"};
    int status = 0;
    for (size_t p = 0; p < sizeof paths / sizeof *paths && !status; p++) {
        reached found;
        if (!reach(d, w->root, paths[p], &found))
            return out_of_memory(issues);
        for (size_t i = 0; i < found.count && !status; i++)
            if (d->nodes[found.nodes[i]].type == FJ_OBJECT)
                status = grant_reference(q, w, d, found.nodes[i], task_owner, paths[p], issues);
        free(found.nodes);
    }
    return status;
}

/* ---- referential integrity: what a write refers to exists, may be seen, and fits ---- */

typedef struct ref_check {
    rq *q;
    org_reads *reads;
    rest_write *w;
    oo_list *issues;
    int status;
} ref_check;

/* "CarePlan.subject" may refer to "Reference(Patient | Group)": the whole list, for a message (malloc'd). */
static char *allowed_targets(const fs_schema *s, const fs_element *el)
{
    unsigned n;
    const uint16_t *t = fs_reference_targets(s, el, &n);
    fj_buf out = {0};
    for (unsigned i = 0; i < n; i++)
        fj_buf_printf(&out, "%s%s", i ? " | " : "", s->types[t[i]].name);
    return fj_buf_take(&out, NULL);
}

/* The reference text as messages quote it: "Type/id", at most RT_ECHO_MAX bytes (route.h), cut visibly. */
static void quote_reference(const fr_parts *parts, char out[RT_ECHO_SIZE])
{
    fj_buf text = {0};
    fj_buf_printf(&text, "%.*s/%.*s", (int)parts->type_len, parts->type, (int)parts->id_len, parts->id);
    rt_echo(text.data ? text.data : "", out);
    fj_buf_free(&text);
}

static void refuse_reference(ref_check *c, const fs_element *el, const char *fmt, const char *what, const char *more)
{
    fj_buf where = {0};
    fj_buf_printf(&where, "%s.reference", el->path);
    oo_add(c->issues, OO_ERROR, OO_PROCESSING, where.data ? where.data : el->path, 0, 0, fmt, what, more ? more : "");
    fj_buf_free(&where);
    c->status = 422;
}

/*
 * One Reference of the resource being written. Checked: a literal reference
 * to a resource on this server (relative, or under our base) must name a
 * type the element allows and a resource the writer can see. The same text
 * answers "does not exist" and "not yours", so existence does not leak.
 * Contained ("#id"), other servers' URLs, urn: names and logical
 * references (identifier only) are not resolvable here and pass; names of
 * the same transaction are checked for type only (they exist after it).
 */
static void check_reference(void *ctx, const fj_doc *d, uint32_t ref, const fs_element *el)
{
    ref_check *c = ctx;
    uint32_t r = fj_get(d, ref, "reference");
    if (c->status || r == UINT32_MAX || d->nodes[r].type != FJ_STRING || !d->nodes[r].len)
        return;
    rq *q = c->q;
    size_t len = d->nodes[r].len;
    const char *named = c->w->hooks && c->w->hooks->replace_string
                            ? c->w->hooks->replace_string(c->w->hooks->ctx, d, r, &len)
                            : NULL;
    const char *s = named ? named : fj_str(d, r);
    if (s[0] == '#' || !strncmp(s, "urn:", 4))
        return;
    s = strip_own_base(q, s, &len);
    fr_parts parts;
    if (memchr(s, ':', len) || !fr_parse(s, len, &parts) || parts.type != s || parts.id_len > ST_ID_MAX)
        return; /* someone else's server, or not a literal reference at all (the validator says so) */
    char text[RT_ECHO_SIZE], id[ST_ID_MAX + 1];
    quote_reference(&parts, text);
    if (!fs_reference_target_allowed(q->app->schema, el, parts.type, parts.type_len)) {
        char *allowed = allowed_targets(q->app->schema, el);
        refuse_reference(c, el, "%s is not a resource this element may refer to (Reference(%s))", text,
                         allowed ? allowed : "");
        free(allowed);
        return;
    }
    if (named)
        return;
    const fs_type *type = fs_type_by_name(q->app->schema, parts.type, parts.type_len);
    memcpy(id, parts.id, parts.id_len);
    id[parts.id_len] = '\0';
    st_resource read = {0};
    const st_resource *target = &read;
    st_error err;
    st_status found = !type                                 ? ST_NOT_FOUND
                      : !strcmp(type->name, "Organization") ? read_org(c->reads, id, &target)
                                                            : st_read(q->app->opt.store, type->name, id, &read, &err);
    bool visible = found == ST_OK &&
                   az_check_resource(&q->caller, target->type, AZ_READ, target->owner,
                                     (const char *const *)target->access_tags, target->access_tag_count) == AZ_ALLOW;
    st_resource_free(&read); /* a deletion too */
    if (!visible)            /* missing, deleted or not the writer's to see: one answer */
        refuse_reference(c, el, "%s is not known%s", text,
                         ": refer only to resources that exist and that this organisation may read");
}

static int check_references(org_reads *reads, rest_write *w, oo_list *issues)
{
    rq *q = reads->q;
    if (q->app->opt.allow_dangling_references)
        return 0;
    ref_check c = {q, reads, w, issues, 0};
    fw_walk_references(q->app->schema, w->docp, w->root, check_reference, &c);
    return c.status;
}

/* ---- what a write may contain and change ---- */

/* An Organization may carry the URA of a registered organisation only when that organisation writes it. */
static int check_organization_uras(rq *q, rest_write *w, oo_list *issues)
{
    const fj_doc *d = w->docp;
    uint32_t ids = fj_get(d, w->root, "identifier");
    if (strcmp(w->type, "Organization") || ids == UINT32_MAX || d->nodes[ids].type != FJ_ARRAY)
        return 0;
    uint32_t it = ids + 1;
    for (uint32_t i = 0; i < d->nodes[ids].len; i++, it = fj_next(d, it)) {
        uint32_t sys = fj_get(d, it, "system"), val = fj_get(d, it, "value");
        if (sys == UINT32_MAX || val == UINT32_MAX || !fj_str_eq(d, sys, URA_SYSTEM) || d->nodes[val].len != 8)
            continue;
        char ura[9];
        memcpy(ura, fj_str(d, val), 8);
        ura[8] = '\0';
        if (strcmp(ura, q->caller.ura) && registered(q, ura)) {
            char where[64];
            snprintf(where, sizeof where, "Organization.identifier[%u].value", i);
            oo_add(issues, OO_ERROR, "forbidden", where, 0, 0,
                   "URA %s belongs to another registered organisation; only it publishes Organizations with its URA",
                   ura);
            return 403;
        }
    }
    return 0;
}

/* Members of a Task its receiver may change (the notified-pull workflow); everything else is the sender's. */
static const char *const receiver_may_change[] = {"id",           "meta",   "status", "businessStatus",
                                                  "statusReason", "output", "note",   "lastModified"};

static bool receiver_member(const char *key, size_t len)
{
    for (size_t i = 0; i < sizeof receiver_may_change / sizeof *receiver_may_change; i++)
        if (strlen(receiver_may_change[i]) == len && !memcmp(receiver_may_change[i], key, len))
            return true;
    return false;
}

/* Members of a handover Task that change at all: its status (docs/handover.md); id and meta are the store's. */
static bool handover_member(const char *key, size_t len)
{
    static const char *const may[] = {"id", "meta", "status", "lastModified"};
    for (size_t i = 0; i < sizeof may / sizeof *may; i++)
        if (strlen(may[i]) == len && !memcmp(may[i], key, len))
            return true;
    return false;
}

/* ... and what the gateway itself changes when a notification is undeliverable (rest_handover_mark_undelivered):
 * the businessStatus, no client may write it */
static bool gateway_mark_member(const char *key, size_t len)
{
    return handover_member(key, len) || (len == 14 && !memcmp(key, "businessStatus", 14));
}

/* The first member not allowed to change (by `may`) that differs between old (object oi) and new (ni), or NULL. */
static const char *first_change(const fj_doc *old, uint32_t oi, const fj_doc *new, uint32_t ni,
                                bool (*may)(const char *, size_t), char *buf, size_t size)
{
    for (int pass = 0; pass < 2; pass++) {
        const fj_doc *a = pass ? old : new, *b = pass ? new : old;
        uint32_t ai = pass ? oi : ni, bi = pass ? ni : oi, k = ai + 1;
        for (uint32_t m = 0; m < a->nodes[ai].len; m++, k = fj_next(a, k + 1)) {
            const char *key = fj_str(a, k);
            size_t len = a->nodes[k].len;
            if (may(key, len))
                continue;
            uint32_t other = member(b, bi, key, len);
            if (other == UINT32_MAX || !fj_equal(a, k + 1, b, other, FJ_NUMBERS_BY_TEXT)) {
                /* a validated Task has only R4's element names, all far shorter than the buffer */
                snprintf(buf, size, "Task.%.*s", (int)len, key);
                return buf;
            }
        }
    }
    return NULL;
}

/* The receiver of a Task (not its owner) changes only the workflow's members. */
static int check_receiver_change(rq *q, rest_write *w, const st_resource *current, oo_list *issues)
{
    if (strcmp(w->type, "Task") || !current || current->deleted || !strcmp(current->owner, q->caller.ura))
        return 0;
    char *copy = strndup(current->json, current->json_len);
    fj_doc old;
    fj_error err;
    int status = 0;
    if (!copy || !fj_parse(copy, current->json_len, NULL, &old, &err)) {
        oo_add(issues, OO_FATAL, OO_EXCEPTION, NULL, 0, 0, "the stored Task cannot be read back");
        status = 500;
    } else {
        char where[80];
        const char *changed = first_change(&old, 0, w->docp, w->root, receiver_member, where, sizeof where);
        if (changed) {
            oo_add(issues, OO_ERROR, "forbidden", changed, 0, 0,
                   "the receiver of a Task may change only status, businessStatus, statusReason, output, note and "
                   "lastModified; %s is the sender's",
                   changed);
            status = 403;
        }
    }
    fj_doc_free(&old);
    free(copy);
    return status;
}

bool rest_is_directory_entry(rq *q, const st_resource *r)
{
    if (strcmp(r->type, "Organization") || r->deleted || !r->json || !registered(q, r->owner))
        return false;
    /* the Organization that carries its (registered) owner's own URA */
    char *copy = strndup(r->json, r->json_len);
    fj_doc d;
    fj_error err;
    bool entry = false;
    if (copy && fj_parse(copy, r->json_len, NULL, &d, &err)) {
        uint32_t ids = fj_get(&d, 0, "identifier");
        uint32_t it = ids != UINT32_MAX && d.nodes[ids].type == FJ_ARRAY ? ids + 1 : UINT32_MAX;
        for (uint32_t i = 0; it != UINT32_MAX && i < d.nodes[ids].len && !entry; i++, it = fj_next(&d, it)) {
            uint32_t sys = fj_get(&d, it, "system"), val = fj_get(&d, it, "value");
            entry = sys != UINT32_MAX && val != UINT32_MAX && fj_str_eq(&d, sys, URA_SYSTEM) &&
                    fj_str_eq(&d, val, r->owner);
        }
    }
    fj_doc_free(&d);
    free(copy);
    return entry;
}

/* ---- notifications: who hears of a handover Task's change (docs/handover.md "Notifications") ---- */

static void add_party(org_reads *reads, rest_write *w, const char *ura)
{
    rq *q = reads->q;
    if (!ura || !*ura || !strcmp(ura, q->caller.ura) || w->notify_count == sizeof w->notify_ura / sizeof *w->notify_ura)
        return; /* the party that made the change knows */
    for (size_t i = 0; i < w->notify_count; i++)
        if (!strcmp(w->notify_ura[i], ura))
            return;
    char id[ST_ID_MAX + 1];
    snprintf(id, sizeof id, "ura-%s", ura);
    const st_resource *entry;
    rly_endpoint ep;
    read_org(reads, id, &entry);
    if (rly_endpoint_in(q->app->opt.store, ura, entry, &ep) != ST_OK)
        return; /* no endpoint: that party polls */
    snprintf(w->notify_ura[w->notify_count++], sizeof *w->notify_ura, "%s", ura);
}

/*
 * A handover Task that is created, or whose status moves, notifies every
 * other party of it that has a notification Endpoint: on creation the
 * receiver (the Task's addressees); on a move by the receiver the sender
 * (its owner); on a move by the sender the receiver. The notifications are
 * queued with the write (rest_audit_attach), numbered at its commit.
 */
static void plan_notifications(org_reads *reads, rest_write *w, st_op_kind kind, const st_resource *current)
{
    rq *q = reads->q;
    w->notify_count = 0;
    bool created = kind != ST_OP_DELETE && (!current || current->deleted);
    if (strcmp(w->type, "Task") || kind == ST_OP_DELETE || w->gateway_mark || !(created || w->status_moved) ||
        !rest_is_handover_task(w->docp, w->root))
        return;
    w->notify_event = created ? "created" : "status";
    add_party(reads, w, current ? current->owner : q->caller.ura);
    for (size_t i = 0; i < w->tag_count; i++)
        add_party(reads, w, w->tags[i]);
}

int rest_access_check_write(rq *q, rest_write *w, st_op_kind kind, const st_resource *current, oo_list *issues)
{
    if (kind == ST_OP_DELETE) {
        if (current && rest_is_directory_entry(q, current)) {
            oo_add(issues, OO_ERROR, "conflict", NULL, 0, 0,
                   "Organization/%s is the directory entry of a registered organisation; it cannot be deleted",
                   current->id);
            return 409;
        }
        return 0;
    }
    int status = check_organization_uras(q, w, issues);
    /* a handover Task's status move keeps the references the sender wrote and the gateway checked then: the
     * receiver need not be able to read them all (the handover itself opens only with in-progress) */
    bool status_only = false;
    if (!status)
        status = check_handover_change(q, w, current, &status_only, issues);
    if (!status)
        status = check_receiver_change(q, w, current, issues);
    org_reads reads = {.q = q};
    if (!status)
        status = compute_tags(&reads, w, issues);
    if (!status && !status_only)
        status = check_references(&reads, w, issues);
    if (!status)
        status = compute_grants(q, w, current, issues);
    if (!status)
        plan_notifications(&reads, w, kind, current);
    org_reads_free(&reads);
    return status;
}
