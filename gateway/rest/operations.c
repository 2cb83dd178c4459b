/*
 * gateway/rest/operations.c — the table of interactions and $operations, and
 * dispatch through it (see operations.h).
 */
#include "gateway/rest/operations.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"

#define VALIDATE_DEFINITION "http://hl7.org/fhir/OperationDefinition/Resource-validate"
#define HANDOVER_DEFINITION "https://fhirgw.nl/fhir/OperationDefinition/handover"
#define TRANSFORM_DEFINITION "http://hl7.org/fhir/OperationDefinition/StructureMap-transform"
#define GZSP_CHECK_DEFINITION "https://fhirgw.nl/fhir/OperationDefinition/gzsp-check"
#define COMPLIANCE_DEFINITION "https://fhirgw.nl/fhir/OperationDefinition/compliance"
#define CONTRACT_CHECK_DEFINITION "https://fhirgw.nl/fhir/OperationDefinition/contract-check"

/* The audit trail is read through its own rows (rest_audit_read.c) and written by the gateway only. */
static const char *const AUDIT_EVENT[] = {"AuditEvent", NULL};
/* Subscriptions are virtual, one per notified organisation (rest_subscription.c): read and the backport's
 * operations only; the generic rows leave them out */
static const char *const SUBSCRIPTION[] = {"Subscription", NULL};
static const char *const NOT_STORED[] = {"AuditEvent", "Subscription", NULL};
#define STATUS_DEFINITION \
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"
#define EVENTS_DEFINITION \
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"
static const char *const STRUCTURE_MAP[] = {"StructureMap", NULL};
/* The compliance operations' subjects (rest_compliance.c). */
static const char *const CARE_PLAN[] = {"CarePlan", NULL};
static const char *const PLAN_OR_STAY[] = {"CarePlan", "Encounter", NULL};
static const char *const ORGANIZATION[] = {"Organization", NULL};

/*
 * Rows in the order the CapabilityStatement lists their interaction codes
 * (resource types: read .. search-type; system: transaction, batch,
 * history-system). Conditional update, patch and delete are type-level URLs
 * of the instance interactions (the query names the resource).
 */
static const rest_op table[] = {
    {RT_CAPABILITIES,
     NULL,
     REST_SYSTEM,
     "GET, HEAD",
     NULL,
     REST_ACCESS_NONE,
     AZ_READ,
     {NULL},
     NULL,
     rest_capabilities,
     NULL},
    /* AuditEvent: each organisation reads the entries of its own accesses (docs/audit.md) */
    {RT_READ,
     NULL,
     REST_INSTANCE,
     "GET, HEAD",
     AUDIT_EVENT,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {"read"},
     NULL,
     rest_audit_event_read,
     NULL},
    {RT_SEARCH,
     NULL,
     REST_TYPE,
     "GET, HEAD",
     AUDIT_EVENT,
     REST_ACCESS_HANDLER,
     AZ_SEARCH,
     {"search-type"},
     NULL,
     rest_audit_event_search,
     NULL},
    {RT_READ,
     NULL,
     REST_INSTANCE,
     "GET, HEAD",
     SUBSCRIPTION,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {"read"},
     NULL,
     rest_subscription_read,
     NULL},
    {RT_READ, NULL, REST_INSTANCE, "GET, HEAD", NULL, REST_ACCESS_TYPE, AZ_READ, {"read"}, NULL, rest_read, NOT_STORED},
    {RT_VREAD,
     NULL,
     REST_INSTANCE,
     "GET, HEAD",
     NULL,
     REST_ACCESS_TYPE,
     AZ_READ,
     {"vread"},
     NULL,
     rest_read,
     NOT_STORED},
    {RT_UPDATE,
     NULL,
     REST_INSTANCE | REST_TYPE,
     "PUT",
     NULL,
     REST_ACCESS_TYPE,
     AZ_UPDATE,
     {"update"},
     NULL,
     rest_update,
     NOT_STORED},
    {RT_PATCH,
     NULL,
     REST_INSTANCE | REST_TYPE,
     "PATCH",
     NULL,
     REST_ACCESS_TYPE,
     AZ_UPDATE,
     {"patch"},
     NULL,
     rest_patch,
     NOT_STORED},
    {RT_DELETE,
     NULL,
     REST_INSTANCE | REST_TYPE,
     "DELETE",
     NULL,
     REST_ACCESS_TYPE,
     AZ_DELETE,
     {"delete"},
     NULL,
     rest_delete,
     NOT_STORED},
    {RT_CREATE, NULL, REST_TYPE, "POST", NULL, REST_ACCESS_TYPE, AZ_CREATE, {"create"}, NULL, rest_create, NOT_STORED},
    {RT_HISTORY_INSTANCE,
     NULL,
     REST_INSTANCE,
     "GET, HEAD",
     NULL,
     REST_ACCESS_TYPE,
     AZ_HISTORY,
     {"history-instance"},
     NULL,
     rest_history,
     NOT_STORED},
    {RT_HISTORY_TYPE,
     NULL,
     REST_TYPE,
     "GET, HEAD",
     NULL,
     REST_ACCESS_TYPE,
     AZ_HISTORY,
     {"history-type"},
     NULL,
     rest_history,
     NOT_STORED},
    {RT_SEARCH,
     NULL,
     REST_TYPE,
     "GET, HEAD, POST",
     NULL,
     REST_ACCESS_TYPE,
     AZ_SEARCH,
     {"search-type"},
     NULL,
     rest_search,
     NOT_STORED},
    {RT_BATCH,
     NULL,
     REST_SYSTEM,
     "POST",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_CREATE,
     {"transaction", "batch"},
     NULL,
     rest_batch,
     NULL},
    {RT_HISTORY_SYSTEM,
     NULL,
     REST_SYSTEM,
     "GET, HEAD",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_HISTORY,
     {"history-system"},
     NULL,
     rest_history,
     NOT_STORED},
    /* $operations: a future one is a row here and a handler in handlers.h */
    {RT_OPERATION,
     "$validate",
     REST_TYPE | REST_INSTANCE,
     "POST",
     NULL,
     REST_ACCESS_TYPE,
     AZ_VALIDATE,
     {NULL},
     VALIDATE_DEFINITION,
     rest_validate_op,
     AUDIT_EVENT},
    /* the R4 Subscriptions Backport on each organisation's virtual subscription (docs/handover.md) */
    {RT_OPERATION,
     "$status",
     REST_INSTANCE,
     "GET, HEAD, POST",
     SUBSCRIPTION,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     STATUS_DEFINITION,
     rest_subscription_status_op,
     NULL},
    {RT_OPERATION,
     "$events",
     REST_INSTANCE,
     "GET, HEAD, POST",
     SUBSCRIPTION,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     EVENTS_DEFINITION,
     rest_subscription_events_op,
     NULL},
    /* the relay of a medical-policy handover: documents + Task in one transaction (docs/handover.md) */
    {RT_OPERATION,
     "$handover",
     REST_SYSTEM,
     "POST",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_CREATE,
     {NULL},
     HANDOVER_DEFINITION,
     rest_handover_op,
     NULL},
    /* the insurer maps over posted content; the handler decides who runs which map (docs/access.md) */
    {RT_OPERATION,
     "$transform",
     REST_TYPE | REST_INSTANCE,
     "POST",
     STRUCTURE_MAP,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     TRANSFORM_DEFINITION,
     rest_transform_op,
     NULL},
    /* the insurer's views (docs/mappings.md): not FHIR, so not in the CapabilityStatement; the handlers admit
     * insurers only and scope by insured (insured.h) */
    {RT_INSURER,
     "/insurer/providers",
     REST_SYSTEM,
     "GET, HEAD",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     NULL,
     rest_insurer_provider,
     NULL},
    {RT_INSURER,
     "/insurer/stays",
     REST_SYSTEM,
     "GET, HEAD",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     NULL,
     rest_insurer_stays,
     NULL},
    {RT_INSURER,
     "/insurer/plans",
     REST_SYSTEM,
     "GET, HEAD",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     NULL,
     rest_insurer_plans,
     NULL},
    {RT_INSURER,
     "/insurer/contracts",
     REST_SYSTEM,
     "GET, HEAD, POST",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     NULL,
     rest_insurer_contracts,
     NULL},
    /* every report of a provider's plans, own insured only (rest_insurer.c); NDJSON streams them all */
    {RT_INSURER,
     "/insurer/compliance",
     REST_SYSTEM,
     "GET, HEAD",
     NULL,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     NULL,
     rest_insurer_compliance,
     NULL},
    /* the compliance report (issue #12, docs/rules.md): a posted plan checked, never stored */
    {RT_OPERATION,
     "$gzsp-check",
     REST_TYPE,
     "POST",
     CARE_PLAN,
     REST_ACCESS_TYPE,
     AZ_VALIDATE,
     {NULL},
     GZSP_CHECK_DEFINITION,
     rest_gzsp_check_op,
     NULL},
    /* ... a stored plan or stay (read access as GET), or one pulled from its provider (provider=URA) */
    {RT_OPERATION,
     "$compliance",
     REST_INSTANCE,
     "GET, HEAD",
     PLAN_OR_STAY,
     REST_ACCESS_HANDLER,
     AZ_READ,
     {NULL},
     COMPLIANCE_DEFINITION,
     rest_compliance_op,
     NULL},
    /* ... the caller's own Organization against the minimum contract requirements of a care kind */
    {RT_OPERATION,
     "$contract-check",
     REST_TYPE,
     "POST",
     ORGANIZATION,
     REST_ACCESS_TYPE,
     AZ_VALIDATE,
     {NULL},
     CONTRACT_CHECK_DEFINITION,
     rest_contract_check_op,
     NULL},
};

#define TABLE_SIZE (sizeof table / sizeof *table)

static unsigned level_of(const rt_route *r)
{
    return !r->type ? REST_SYSTEM : r->id[0] ? REST_INSTANCE : REST_TYPE;
}

static bool applies_to_type(const rest_op *row, const fs_type *type)
{
    for (const char *const *t = row->except; type && t && *t; t++)
        if (!strcmp(*t, type->name))
            return false;
    if (!row->types)
        return true;
    for (const char *const *t = row->types; type && *t; t++)
        if (!strcmp(*t, type->name))
            return true;
    return false;
}

const rest_op *rest_op_for(const rt_route *route)
{
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        const rest_op *row = &table[i];
        if (row->interaction != route->interaction)
            continue;
        if (route->interaction != RT_OPERATION && route->interaction != RT_INSURER) {
            if (applies_to_type(row, route->type))
                return row; /* the router has placed the interaction already */
            continue;
        }
        if (!strcmp(row->name + 1, route->operation) && (row->levels & level_of(route)) &&
            applies_to_type(row, route->type))
            return row;
    }
    return NULL;
}

/* Is method one of the row's ("GET, HEAD")? */
static bool takes(const rest_op *row, const char *method)
{
    size_t n = strlen(method);
    for (const char *m = row->methods; *m; m += strspn(m, ", ")) {
        size_t len = strcspn(m, ", ");
        if (len == n && !memcmp(m, method, n))
            return true;
        m += len;
    }
    return false;
}

/* What the router could not place: its status (404, 405 with Allow, 400) and why. */
static void answer_route_error(rq *q)
{
    int status = q->route.error_status ? q->route.error_status : 404;
    if (status == 405 && q->route.allow)
        srv_set_header(q->req, "Allow", q->route.allow);
    char method[RT_ECHO_SIZE], path[RT_ECHO_SIZE]; /* a 10,000-character id is not echoed whole */
    rq_respond_outcome(q, status, OO_ERROR,
                       status == 405   ? OO_NOT_SUPPORTED
                       : status == 400 ? "invalid"
                                       : OO_NOT_FOUND,
                       NULL, "%s %s: %s", rt_echo(srv_req_method(q->req), method), rt_echo(srv_req_path(q->req), path),
                       q->route.error ? q->route.error : "not found");
}

bool rest_dispatch(rq *q, const rest_op *row)
{
    if (!row && q->route.interaction == RT_OPERATION) {
        rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_SUPPORTED, NULL, "operation $%s is not supported",
                           q->route.operation);
        return false;
    }
    if (!row && q->route.type && !strcmp(q->route.type->name, "AuditEvent")) {
        rq_respond_outcome(q, 405, OO_ERROR, OO_NOT_SUPPORTED, NULL,
                           "AuditEvents are written by the gateway itself and only read and searched");
        return false;
    }
    if (!row && q->route.type && !strcmp(q->route.type->name, "Subscription") && !q->route.error_status) {
        srv_set_header(q->req, "Allow", "GET, HEAD");
        rq_respond_outcome(q, 405, OO_ERROR, OO_NOT_SUPPORTED, NULL,
                           "Subscriptions are virtual (Subscription/handover-<URA>, docs/handover.md): read, $status "
                           "and $events only");
        return false;
    }
    if (!row) {
        answer_route_error(q);
        return false;
    }
    if (!takes(row, srv_req_method(q->req))) {
        srv_set_header(q->req, "Allow", row->methods);
        rq_respond_outcome(q, 405, OO_ERROR, OO_NOT_SUPPORTED, NULL, "%s takes %s",
                           row->name ? row->name : rt_name(row->interaction), row->methods);
        return false;
    }
    return row->handler(q);
}

/* ---- the CapabilityStatement's view ---- */

static size_t capability_rows(cap_row *out)
{
    size_t n = 0;
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        const rest_op *row = &table[i];
        bool system = row->levels & REST_SYSTEM, typed = row->levels & (REST_TYPE | REST_INSTANCE);
        for (size_t c = 0; c < sizeof row->codes / sizeof *row->codes && row->codes[c]; c++, n++)
            if (out)
                out[n] = (cap_row){row->codes[c], NULL, system && !typed, row->types, row->except};
        if (!row->name || row->interaction == RT_INSURER)
            continue; /* the insurer's views are not FHIR operations */
        /* an operation at the system level and on types is listed in both places */
        if (system && out)
            out[n] = (cap_row){row->name + 1, row->definition, true, NULL, NULL};
        n += system;
        if (typed && out)
            out[n] = (cap_row){row->name + 1, row->definition, false, row->types, row->except};
        n += typed;
    }
    return n;
}

cap_row *rest_capability_rows(size_t *count)
{
    *count = capability_rows(NULL);
    cap_row *rows = calloc(*count ? *count : 1, sizeof *rows);
    if (rows)
        capability_rows(rows);
    return rows;
}
