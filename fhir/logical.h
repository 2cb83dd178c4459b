/*
 * fhir/logical.h — validating instances of logical models (prefix fl_).
 *
 * A logical model (a StructureDefinition of kind "logical", held by the
 * profile registry: fhir/profile.h) describes a record that is not a FHIR
 * resource, such as an insurer's provider record. Its instances are written
 * in JSON as the HL7 tools write them: an object whose `resourceType` is the
 * model's type name (its root element path, "InsurerProvider"), with one
 * member per element of the model, arrays for elements whose max is "*".
 *
 * What is checked, against the model's snapshot (or its differential when
 * it has none): resourceType; unknown members; cardinality and array versus
 * single value; the JSON type and lexical form of every primitive (string,
 * code, date, dateTime, decimal, integer, positiveInt, boolean, uri, ...);
 * required bindings of codes to the registry's value sets; nested
 * BackboneElement groups recursively. An element of another complex type is
 * only checked to be an object (a warning says so).
 *
 * fv_validate_* (fhir/validate.h) calls this for a resourceType that is not
 * a core type but the type of a logical model in its registry, so instances
 * validate like resources, also inside Bundles.
 *
 * Memory: nothing is kept; issues are appended to the caller's oo_list.
 */
#ifndef FHIR_LOGICAL_H
#define FHIR_LOGICAL_H

#include <stddef.h>
#include <stdint.h>

#include "fhir/json.h"
#include "fhir/outcome.h"
#include "fhir/profile.h"

/* The logical model whose type name is type[0..len), or NULL. */
const pf_logical *fl_model_for_type(const pf_registry *r, const char *type, size_t len);

/*
 * Validate the object at doc node `node` as an instance of model m.
 * `base_path` is its FHIRPath location (NULL or "" = the model's type name).
 * Returns the number of errors added.
 */
size_t fl_validate(const pf_registry *r, const pf_logical *m, fj_doc *doc, uint32_t node, const char *base_path,
                   oo_list *out);

#endif
