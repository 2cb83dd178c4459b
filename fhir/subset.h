/*
 * fhir/subset.h — a resource cut down for `_summary` and `_elements`
 * (prefix fsub_), as search.html#summary and #elements describe them.
 *
 *   _summary=true   the elements the base definition marks isSummary, and
 *                   those with min > 0; backbone elements are cut the same way
 *                   inside, data types are kept whole
 *   _summary=text   text, id, meta and the top-level elements with min > 0
 *   _summary=data   everything but text
 *   _summary=false  everything (count: the search's business, nothing to cut)
 *   _elements=a,b   the named top-level elements (a choice by its stem:
 *                   `value` keeps valueQuantity), and those with min > 0
 *
 * resourceType, id and meta are always kept, and meta gets the tag
 * SUBSETTED (http://terminology.hl7.org/CodeSystem/v3-ObservationValue), so
 * a client does not take the subset for the whole. Keys the schema does not
 * know are left out (kept by data). A primitive's `_name` companion goes with
 * its value. An object or array left empty is left out, not written as {}.
 *
 * Pure: no I/O; fsub_spec holds its names itself (no allocation);
 * fsub_write appends to the caller's buffer and allocates only a copy of the
 * input for parsing, freed before it returns.
 */
#ifndef FHIR_SUBSET_H
#define FHIR_SUBSET_H

#include <stdbool.h>
#include <stddef.h>

#include "fhir/json_write.h"
#include "fhir/schema.h"

typedef enum fsub_mode { FSUB_ALL, FSUB_SUMMARY, FSUB_TEXT, FSUB_DATA, FSUB_ELEMENTS } fsub_mode;

#define FSUB_NAMES_MAX 32
#define FSUB_TEXT_MAX 512

typedef struct fsub_spec {
    fsub_mode mode;
    size_t count;                      /* names in _elements */
    const char *names[FSUB_NAMES_MAX]; /* point into text */
    char text[FSUB_TEXT_MAX];          /* _elements, split in place */
} fsub_spec;

/*
 * The values of _summary and _elements (NULL: absent) as a spec. False with
 * the reason in err when a value is not one of those above, a name is not an
 * element name, there are too many, or both parameters are given (the
 * specification does not define them together).
 */
bool fsub_parse(const char *summary, const char *elements, fsub_spec *out, char *err, size_t errlen);

/* Does the spec cut anything? (FSUB_ALL does not: serve the resource as it is.) */
static inline bool fsub_cuts(const fsub_spec *spec)
{
    return spec && spec->mode != FSUB_ALL;
}

/*
 * Append the subset of the resource json[0..len) to out. False, with out
 * unchanged, when json is not an object of a resource type the schema knows
 * (then serve it whole).
 */
bool fsub_write(const fs_schema *s, const fsub_spec *spec, const char *json, size_t len, fj_buf *out);

#endif
