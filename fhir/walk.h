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
 * extensions (`_given`) are not visited (except by fw_walk_references),
 * unknown members never.
 *
 * A primitive is reported with the element that defines it, so the string
 * of a Reference is reported as Reference.reference whatever holds the
 * Reference. Which element that is (CarePlan.subject, and so which target
 * types are allowed: fs_reference_target_allowed) is what
 * fw_walk_references reports instead: each Reference object with the
 * element that holds it.
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

/*
 * One Reference object: `reference` (an object node; an array item when
 * repeating) held by `element`, the element whose type is Reference: e.g.
 * CarePlan.subject, Annotation.author[x], or Extension.value[x] for a
 * valueReference. fs_reference_targets(s, element, ...) lists what it may
 * point to; the literal reference is fj_get(doc, reference, "reference").
 */
typedef void (*fw_visit_ref_fn)(void *ctx, const fj_doc *doc, uint32_t reference, const fs_element *element);

/*
 * Walk the resource at `resource` as fw_walk_resource does, calling
 * `visit_ref` for every Reference object instead of for primitives: in
 * arrays, choice elements (valueReference), contained resources and Bundle
 * entry resources (nested to any depth), References inside a Reference
 * (identifier.assigner), the outer one first, and the extensions of
 * primitives ("_status": {"extension": [{"valueReference": ...}]}), which
 * fw_walk_resource skips but which may point anywhere too. Document order. The
 * element of a Reference in a contained or entry resource is that
 * resource's own (Organization.partOf), not the container's. False when the
 * resource's type is unknown (nothing visited).
 */
bool fw_walk_references(const fs_schema *s, const fj_doc *doc, uint32_t resource, fw_visit_ref_fn visit_ref, void *ctx);

/* Is `element` Reference.reference (the literal reference of a Reference)? */
bool fw_is_literal_reference(const fs_element *element);

#endif
