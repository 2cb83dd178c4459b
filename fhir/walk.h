/*
 * fhir/walk.h — visit every primitive value of a resource with its FHIR
 * element and type (prefix fw_).
 *
 * The JSON alone does not say what a string is: "urn:uuid:1" may be a
 * Reference.reference, a uri, or an Identifier.value that merely looks like
 * one. Code that rewrites or checks values by their meaning (transaction
 * reference rewriting, referential integrity) walks the resource with the
 * schema beside it and gets, for each primitive, the element that defines
 * it and its type. Contained resources and Bundle entry resources are
 * walked as the resources they are (by their resourceType); choice
 * elements (valueReference) by the type their suffix names; primitive
 * extensions (`_given`) and unknown members are not visited.
 *
 * Pure: no allocation, no I/O; the visitor gets nodes of the caller's doc.
 */
#ifndef FHIR_WALK_H
#define FHIR_WALK_H

#include <stdbool.h>
#include <stdint.h>

#include "fhir/json.h"
#include "fhir/schema.h"

/* One primitive value: `node` (a string, number or boolean; an array item when repeating) defined by `element`. */
typedef void (*fw_visit_fn)(void *ctx, const fj_doc *doc, uint32_t node, const fs_element *element,
                            const fs_type *type);

/* Walk the resource at `resource` (an object with resourceType). False when its type is unknown. */
bool fw_walk_resource(const fs_schema *s, const fj_doc *doc, uint32_t resource, fw_visit_fn visit, void *ctx);

/* Is `element` Reference.reference (the literal reference of a Reference)? */
bool fw_is_literal_reference(const fs_element *element);

#endif
