/*
 * gateway/search/indexer.h — search index rows from a resource, by the FHIRPath
 * expressions of the core SearchParameter definitions (prefix ix_).
 *
 * For every search parameter of the resource's type (and those of every
 * resource: _id, _lastUpdated, _tag, ...) whose kind the store can answer,
 * the expression is evaluated and each value it yields becomes rows:
 *
 *   string     HumanName/Address parts or a string   -> the text
 *   token      Coding, CodeableConcept, Identifier,   -> system + code
 *              ContactPoint, code/boolean/string
 *   reference  Reference, canonical, uri              -> target type + id, or URL
 *   date       date, dateTime, instant, Period,       -> [lo, hi] epoch ms
 *              Timing events
 *   number     integer, decimal                       -> number
 *   quantity   Quantity (and Age, Duration, ...)      -> number + system + code
 *   uri        uri, url, canonical                    -> text
 *
 * `X.where(resolve() is T)` cannot resolve outside a Bundle, so it is read
 * as "the reference names a T" (ix_rewrite_resolve), as servers commonly do.
 *
 * Personal data: every row of a parameter the table in
 * gateway/util/personal.h lists (Patient.name, Patient.identifier,
 * Practitioner.telecom, ...) is marked `personal`, decided once per
 * parameter in ix_new; the store keeps the mark with the row.
 *
 * Threads: an indexer is immutable after ix_new and serves any number of
 * threads; each thread brings its own fp_arena. Rows own their strings
 * (ix_rows_free).
 */
#ifndef GATEWAY_INDEXER_H
#define GATEWAY_INDEXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/fhirpath.h"
#include "fhir/json.h"
#include "fhir/schema.h"

typedef enum ix_kind { IX_STRING, IX_TOKEN, IX_REFERENCE, IX_DATE, IX_NUMBER, IX_QUANTITY, IX_URI } ix_kind;

typedef struct ix_row {
    const char *param; /* the parameter's code (static, from the schema) */
    ix_kind kind;
    char *text;     /* string: as written (the store normalises for search); uri: the URI; reference: as written */
    char *system;   /* token, quantity: NULL when none */
    char *code;     /* token, quantity: NULL when none */
    char *ref_type; /* reference: target type, NULL for URLs it cannot tell */
    char *ref_id;   /* reference: target id */
    int64_t lo_ms, hi_ms; /* date: inclusive range; INT64_MIN/INT64_MAX for open ends */
    double number;        /* number, quantity */
    bool personal;        /* its value identifies or describes a person (gateway/util/personal.h) */
} ix_row;

typedef struct ix_rows {
    ix_row *rows;
    size_t count, capacity;
} ix_rows;

typedef struct ix_indexer ix_indexer;

/* Compile the expressions of every parameter whose kind `supported` accepts (NULL = all but composite/special). */
ix_indexer *ix_new(const fs_schema *s, bool (*supported)(fs_search_kind), char *err, size_t errlen);
void ix_free(ix_indexer *ix);

/* Rows for the resource at `node` of doc (a resource of type `type`). Appends to out. */
bool ix_extract(const ix_indexer *ix, fp_arena *arena, const fj_doc *doc, uint32_t node, const char *type, ix_rows *out,
                char *err, size_t errlen);
void ix_rows_free(ix_rows *rows);

/* "X.where(resolve() is T)" -> a test on the reference text (malloc'd; the caller frees). */
char *ix_rewrite_resolve(const char *expression);

#endif
