/*
 * mappings/engine.h — running a StructureMap over a source resource (prefix mpe_).
 *
 * What it is for: translating a provider's FHIR resource into the insurer's
 * model (a logical model) or another FHIR resource, and back, by the R4
 * StructureMap semantics:
 * - groups run with their inputs bound; `extends` runs the base group's
 *   rules first; `then group(a, b)` and `then { ... }` run dependent rules;
 * - sources bind variables (element, type filter, cardinality check,
 *   default, list modes, where/check/log in FHIRPath over the source);
 * - targets create and set elements, typed from the StructureDefinitions:
 *   core types through the schema (max "*" -> JSON array, else a single
 *   value; a choice element gets its type suffix), logical models through
 *   the profile registry (instances carry `resourceType` = the model's type
 *   name, its root element path);
 * - a rule without dependent rules whose target has no transform maps by
 *   default: primitives are copied; complex values go through a group of
 *   the map declared `<<types>>`/`<<type+>>` for the two types, else are
 *   copied when source and target have the same type;
 * - transforms: create, copy, truncate, cast, append, translate, reference,
 *   uuid, pointer, evaluate, cc, c, qty, id, cp. escape and dateOp are
 *   refused with an error naming them (see mappings/README.md).
 *
 * After a successful run every source element no rule read is reported as
 * an information issue "unmapped: Patient.name[0].given[1]" (FHIRPath-style
 * path of the topmost element of which nothing was read).
 *
 * Life cycle and threads:
 *   mpe_context *c = mpe_context_new(schema, models);        setup, one thread
 *   mpe_add_conceptmap(c, cm, &issues); ...                    ConceptMaps for translate()
 *   sm_map *m = sm_load(json, &(sm_options){.functions = f}, &issues);
 *   mpe_run(c, m, &doc, 0, NULL, &out, &issues);               any thread, many times
 * The context and maps are read-only during runs, so runs in parallel share
 * them. A run allocates its own state and frees it before returning; what
 * it learns of target types and elements stays in a small fixed-size memo
 * per thread (static thread-local storage, no heap), keyed by the context's
 * and map's ids, for the next run on that thread.
 *
 * Memory: the registry `models` must outlive the context. *out (json-c) is
 * the caller's (json_object_put). The source doc is only read.
 *
 * Errors are values: a failed run returns false, sets *out to NULL (never a
 * partial result) and appends an error naming the rule ("group g, rule
 * 'r'") and the source element being mapped (issue expression, a FHIRPath
 * location). Unmapped elements are only reported after a successful run.
 */
#ifndef MAPPINGS_ENGINE_H
#define MAPPINGS_ENGINE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "fhir/fhirpath.h"
#include "fhir/json.h"
#include "fhir/outcome.h"
#include "fhir/profile.h"
#include "mappings/structuremap.h"

typedef struct mpe_context mpe_context;

/* schema NULL = fs_r4(); models (logical models) may be NULL. */
mpe_context *mpe_context_new(const fs_schema *schema, const pf_registry *models);
void mpe_context_free(mpe_context *c);

/*
 * Add a ConceptMap for translate() by its url (a reference to cm is taken).
 * False with an issue when it has no url or the url is taken. Maps' own
 * contained ConceptMaps ("#id") need no adding.
 */
bool mpe_add_conceptmap(mpe_context *c, json_object *cm, oo_list *issues);

/* A uuid generator for uuid(), reference() and pointer(): writes 36 characters and a NUL. */
typedef void (*mpe_uuid_fn)(void *ctx, char out[37]);

typedef struct mpe_options {
    const char *group;      /* the group to start with; NULL = the map's first group */
    const fp_datetime *now; /* now()/today() in FHIRPath; NULL = the clock */
    mpe_uuid_fn uuid;       /* NULL = random version 4 uuids (OpenSSL) */
    void *uuid_ctx;
    bool skip_unmapped; /* do not report unread source elements */
    unsigned max_depth; /* nesting of group calls; 0 = MPE_DEFAULT_MAX_DEPTH */
} mpe_options;

#define MPE_DEFAULT_MAX_DEPTH 64u

/*
 * Run map over the resource at node `node` of doc (0: the root). The start
 * group must have one source and one target input; the target is created
 * from the target input's type (a resource type or a logical model: by the
 * map's `uses` alias, url or type name). opts may be NULL.
 * True with *out set, or false with *out NULL and an error appended.
 */
bool mpe_run(const mpe_context *c, const sm_map *map, const fj_doc *doc, uint32_t node, const mpe_options *opts,
             json_object **out, oo_list *issues);

#endif
