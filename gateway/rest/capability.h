/*
 * gateway/rest/capability.h — the CapabilityStatement served at GET /metadata
 * (prefix cap_), generated from what the server implements: the resource
 * types of the schema, the interactions and operations the REST layer
 * dispatches (cap_info.rows, from its table), and the search parameters
 * whose kinds the search engine supports.
 *
 * Memory: cap_build returns a json-c object the caller releases
 * (json_object_put). Build it once at start; it is immutable afterwards.
 */
#ifndef GATEWAY_CAPABILITY_H
#define GATEWAY_CAPABILITY_H

#include <json-c/json.h>
#include <stdbool.h>

#include "fhir/schema.h"

/* One interaction or operation as the statement lists it (the REST layer's table gives them: operations.h). */
typedef struct cap_row {
    const char *code;          /* an interaction code ("read") or an operation's name without "$" ("validate") */
    const char *definition;    /* an operation's OperationDefinition; NULL for an interaction */
    bool system;               /* listed under rest (the system level), else under each resource type */
    const char *const *types;  /* per type: the types it applies to (NULL-ended); NULL: every type */
    const char *const *except; /* per type: types it does not apply to (NULL-ended); NULL: none */
} cap_row;

typedef struct cap_info {
    const char *software_version; /* "0.1.0" */
    const char *base_url;         /* implementation.url */
    const char *start_time;       /* dateTime the server started: CapabilityStatement.date */
    /* which search parameter kinds the search engine answers */
    bool (*search_kind_supported)(fs_search_kind kind);
    /* profiles loaded from the conformance folder, listed as supportedProfile of their type (may be NULL) */
    const char *const *profile_urls;
    const char *const *profile_types;
    size_t profile_count;
    bool references_enforced; /* referential integrity on write (referencePolicy "enforced") */
    /* the interactions and operations dispatched, in the order listed */
    const cap_row *rows;
    size_t row_count;
} cap_info;

json_object *cap_build(const fs_schema *s, const cap_info *info);

/* Is this resource type served (every concrete resource type is)? */
bool cap_type_supported(const fs_schema *s, const char *type);

#endif
