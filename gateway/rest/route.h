/*
 * gateway/rest/route.h — FHIR RESTful URLs and headers, parsed into values
 * (prefix rt_). No I/O, no allocation: results point into the caller's
 * strings or into fixed buffers of the result struct.
 *
 *   GET    /metadata                       -> RT_CAPABILITIES
 *   GET    /Patient/123                    -> RT_READ
 *   GET    /Patient/123/_history/2         -> RT_VREAD
 *   PUT    /Patient/123                    -> RT_UPDATE
 *   DELETE /Patient/123                    -> RT_DELETE
 *   PUT    /Patient?identifier=..          -> RT_UPDATE with id "" (conditional update)
 *   DELETE /Patient?identifier=..          -> RT_DELETE with id "" (conditional delete)
 *   PATCH  /Patient/123, PATCH /Patient?identifier=x (conditional) -> RT_PATCH
 *   POST   /Patient                        -> RT_CREATE
 *   GET    /Patient?name=x, POST /Patient/_search -> RT_SEARCH
 *   GET    /Patient/123/_history, /Patient/_history, /_history -> RT_HISTORY_*
 *   POST   /                               -> RT_BATCH (batch or transaction Bundle)
 *   POST   /Patient/$validate, /Patient/123/$validate -> RT_OPERATION
 *   POST   /$name (system level)           -> RT_OPERATION with type NULL
 *   (any "$name" is routed; which operations exist is the REST layer's table, operations.h)
 *   GET    /insurer/providers/90000301     -> RT_INSURER "insurer/providers", id "90000301"
 *   GET    /insurer/stays, /insurer/plans, GET or POST /insurer/contracts -> RT_INSURER "insurer/<view>"
 *   (the insurer's model, not FHIR: docs/mappings.md; "insurer" is no resource type, so nothing is shadowed)
 *
 * What is not a FHIR URL gets RT_UNKNOWN with the HTTP status it deserves
 * (404 unknown type, 405 method not allowed on a known path, 400 bad id).
 */
#ifndef GATEWAY_ROUTE_H
#define GATEWAY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/schema.h"
#include "gateway/util/limits.h"

typedef enum rt_interaction {
    RT_UNKNOWN = 0,
    RT_CAPABILITIES,
    RT_READ,
    RT_VREAD,
    RT_UPDATE,
    RT_DELETE,
    RT_CREATE,
    RT_SEARCH,
    RT_HISTORY_INSTANCE,
    RT_HISTORY_TYPE,
    RT_HISTORY_SYSTEM,
    RT_BATCH,
    RT_OPERATION,
    RT_PATCH,
    RT_INSURER /* the insurer's views (not FHIR): /insurer/<view>[/<id>], the view in `operation`, an id in `id` */
} rt_interaction;

typedef struct rt_route {
    rt_interaction interaction;
    const fs_type *type; /* resource type, NULL for system-level */
    char id[65];         /* logical id, "" when none */
    char version[65];    /* version id for vread, "" when none */
    char operation[64];  /* "validate" for $validate (the name without "$"); a longer name is kept cut and
                          * marked "…", which no operation matches */
    int error_status;    /* with RT_UNKNOWN: 400, 404 or 405 */
    const char *error;   /* with RT_UNKNOWN: why (static) */
    const char *allow;   /* with 405: the methods the path accepts, for the Allow header (static) */
} rt_route;

/* The interaction a method + path (no query string) names. */
void rt_parse(const fs_schema *s, const char *method, const char *path, rt_route *out);

/* The name of an interaction for logs and metrics ("read", "search-type"). */
const char *rt_name(rt_interaction i);

/* Response formats (_format parameter or Accept header). */
typedef enum rt_format { RT_FORMAT_JSON, RT_FORMAT_UNSUPPORTED } rt_format;

/*
 * JSON is the only format served: application/fhir+json, application/json,
 * json, * / * and the like are accepted; XML, turtle and others are not
 * (406). `format_param` is the _format value (or NULL), `accept` the
 * Accept header (or NULL).
 */
rt_format rt_negotiate(const char *format_param, const char *accept);

/* Is a request Content-Type acceptable for a FHIR JSON body? (NULL = absent = no) */
bool rt_content_type_ok(const char *content_type);

/* Prefer: return=minimal | representation | OperationOutcome. */
typedef enum rt_return { RT_RETURN_REPRESENTATION, RT_RETURN_MINIMAL, RT_RETURN_OUTCOME } rt_return;
rt_return rt_prefer_return(const char *prefer);

/*
 * The version an ETag names, as sent in If-Match / If-None-Match: W/"3" or
 * "3" -> 3. Only a quoted run of digits is one of ours; anything else
 * (W/"abc", W/"1abc", W/"-1", 7 without quotes) is malformed: false (400).
 * "0" is well-formed but names no version (a mismatch: 412).
 */
bool rt_etag_version(const char *etag, int64_t *version);

/* Does an If-None-Match list ("*", or ETags separated by commas) name this version? */
bool rt_etag_list_matches(const char *list, int64_t version);

/* An HTTP date ("Wed, 01 May 2024 12:34:56 GMT", If-Modified-Since) as epoch milliseconds; false if malformed. */
bool rt_http_date(const char *text, int64_t *epoch_ms);

/* A logical id: [A-Za-z0-9\-\.]{1,64}. */
bool rt_valid_id(const char *id, size_t len);

/*
 * What an error message may quote of a request (a path, an id, a parameter):
 * at most RT_ECHO_MAX bytes, cut at a UTF-8 character boundary and followed
 * by "…" when cut, so a 10,000-character id is not sent back whole (nor
 * logged whole). Writes into out (RT_ECHO_SIZE bytes) and returns it.
 */
#define RT_ECHO_MAX LIM(echo_max)
#define RT_ECHO_SIZE (RT_ECHO_MAX + sizeof "\u2026")
const char *rt_echo(const char *s, char out[RT_ECHO_SIZE]);

#endif
