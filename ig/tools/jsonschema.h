/*
 * ig/tools/jsonschema.h — a JSON Schema (draft 2020-12) for each logical model of the guide,
 * from its snapshot (prefix ijs_).
 *
 * Each element becomes a property: FHIR primitives map to JSON types (date and dateTime are
 * strings with FHIR's regex as pattern; a code bound to a value set of the package that lists
 * or includes whole code systems of the package gets an enum), BackboneElements to nested
 * objects, max "*" to arrays; min >= 1 makes the property required; every object refuses
 * other properties; descriptions are the definitions. Properties keep the snapshot's order and
 * the output is serialised with igp_serialise, so a run gives the same bytes every time.
 *
 * Memory: ijs_schema returns a json-c object the caller puts (json_object_put).
 */
#ifndef IG_TOOLS_JSONSCHEMA_H
#define IG_TOOLS_JSONSCHEMA_H

#include <json-c/json.h>
#include <stdbool.h>

#include "fhir/outcome.h"
#include "ig/tools/package.h"

/* The schema of one logical model of the package; NULL (issues added) when it has no snapshot. */
json_object *ijs_schema(const igp_package *p, const igp_resource *model, oo_list *issues);

/* OUT/<id>.schema.json for every logical model of the package. False on I/O problems. */
bool ijs_write_all(const igp_package *p, const char *out, oo_list *issues);

/* The codes of a value set of the package when it is fully enumerable there, as a new JSON array of
 * strings (sorted, unique); NULL otherwise. Docgen uses it too. */
json_object *ijs_value_set_codes(const igp_package *p, const char *url);

#endif
