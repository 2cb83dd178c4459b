/*
 * gateway/rest/operations.h — everything the REST layer does, as one table
 * (operations.c): each interaction and each $operation is a row saying
 * where it applies (level, method, resource types), what access it needs,
 * what the CapabilityStatement says about it, and which handler runs it.
 * rest_handle dispatches every request through this table, and the
 * CapabilityStatement's interactions and operations are generated from it,
 * so the statement lists exactly what is dispatched.
 *
 * A new operation ($transform, $gzsp-check, $compliance, ...) is a new row
 * and a handler (handlers.h); the router already names any "$name" at the
 * system, type and instance level, and a name no row claims for the
 * request's level, type and method is answered here: 404 not-supported
 * ("operation $name is not supported"), or 405 with Allow for a method the
 * row does not take.
 *
 * The table is static data; nothing here allocates except
 * rest_capability_rows, whose array the caller frees.
 */
#ifndef GATEWAY_REST_OPERATIONS_H
#define GATEWAY_REST_OPERATIONS_H

#include "gateway/rest/capability.h"
#include "gateway/rest/rest_internal.h"

/* Where a row applies: [base]/$op, [base]/Type/$op, [base]/Type/id/$op (interactions likewise). */
typedef enum rest_level { REST_SYSTEM = 1u << 0, REST_TYPE = 1u << 1, REST_INSTANCE = 1u << 2 } rest_level;

/*
 * The access a row needs before its handler runs. Every handler still
 * decides on each stored resource it touches (rest_access.h); this is the
 * check by type that comes first (403 for a type the caller may not use).
 */
typedef enum rest_access {
    REST_ACCESS_TYPE,    /* rest_decide(action) on the route's type (type and instance level) */
    REST_ACCESS_HANDLER, /* system level: the handler decides per entry or resource (batch, history) */
    REST_ACCESS_NONE     /* nothing to protect (the CapabilityStatement) */
} rest_access;

typedef struct rest_op {
    rt_interaction interaction; /* what the router names; RT_OPERATION for every $operation */
    const char *name;           /* an operation's name with its "$" ("$validate"); NULL for an interaction */
    unsigned levels;            /* rest_level bits */
    const char *methods;        /* the methods it takes, as an Allow header lists them ("GET, HEAD") */
    const char *const *types;   /* the resource types it applies to (NULL-ended); NULL: every type */
    rest_access access;         /* who checks access before the handler runs */
    az_action action;           /* with REST_ACCESS_TYPE: the action checked against the route's type */
    const char *codes[3];       /* CapabilityStatement interaction codes (NULL-ended); none for operations */
    const char *definition;     /* an operation's OperationDefinition (canonical URL), for the statement */
    bool (*handler)(rq *q);     /* see handlers.h: true when q was handed on */
    const char *const *except;  /* types it does not apply to (NULL-ended; NULL: none): AuditEvent has its own */
} rest_op;

/* The row that answers this route, or NULL (a route error, or an operation no row claims here). */
const rest_op *rest_op_for(const rt_route *route);

/* Answer q through its row (a route error, an unknown operation or a method the row does not take
 * are answered here). True when q was handed on (the store or a stream frees it); false: answered. */
bool rest_dispatch(rq *q, const rest_op *row);

/* The table as the CapabilityStatement lists it (cap_info.rows): malloc'd, *count rows; NULL when out of memory. */
cap_row *rest_capability_rows(size_t *count);

#endif
