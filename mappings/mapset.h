/*
 * mappings/mapset.h — a set of maps ready to run: the engine context, the
 * host functions (pseudonym()), the ConceptMaps and the loaded maps, with
 * validation of what a run produces (prefix mps_).
 *
 * What it is for: the CLI (`fhirgw map`), the tests and the benchmark all
 * need the same steps: parse each map (FML text or StructureMap JSON),
 * load it with the set's host functions and the maps loaded before it as
 * imports, register ConceptMaps, run a map over a source, and validate the
 * result against its StructureDefinition (a core type and the profiles in
 * its meta.profile, or a logical model: fhir/validate.h validates both).
 * Errors name the map by the name the caller gave (a file name) and, for
 * FML, the line: a syntax error's line, or the line of the group or rule
 * that a load error names.
 *
 * Layering: mappings/ knows no disk: callers read files and pass texts.
 *
 * Memory: mps_new keeps pointers to `registry` and `key`, which must outlive
 * the set. Maps returned by mps_add_map belong to the set (freed by
 * mps_free). A result of mps_run is the caller's (json_object_put).
 * Threads: set up on one thread; afterwards mps_run and mps_validate may run
 * concurrently.
 */
#ifndef MAPPINGS_MAPSET_H
#define MAPPINGS_MAPSET_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "fhir/outcome.h"
#include "fhir/profile.h"
#include "mappings/engine.h"
#include "mappings/pseudonym.h"
#include "mappings/structuremap.h"

typedef struct mps_set mps_set;

/* registry: logical models and profiles (may be NULL); key: for pseudonym() (NULL = no pseudonym()). */
mps_set *mps_new(const pf_registry *registry, const mpn_key *key, oo_list *issues);
void mps_free(mps_set *s);

/* A ConceptMap as JSON text, for translate() by its url. name: for messages. */
bool mps_add_conceptmap(mps_set *s, const char *text, size_t len, const char *name, oo_list *issues);

/*
 * A map as FML text or StructureMap JSON (text whose first non-blank
 * character is '{'). Maps added earlier can be imported by it. NULL with an
 * error naming `name` (and the line for FML) when it does not parse or load.
 */
const sm_map *mps_add_map(mps_set *s, const char *text, size_t len, const char *name, oo_list *issues);

/* FML text to StructureMap JSON (the caller's), or NULL with an error "name:line:col: ...". */
json_object *mps_compile(const char *text, size_t len, const char *name, oo_list *issues);

/*
 * Run map over doc. node: the source; SIZE_MAX-like UINT32_MAX = choose: the
 * root, or when the root is a Bundle and the map's start group takes another
 * resource type, the first entry of that type (the Bundle stays the document,
 * so resolve() finds the other entries). On failure *out is NULL and the
 * errors name the map.
 */
bool mps_run(const mps_set *s, const sm_map *map, const fj_doc *doc, uint32_t node, const mpe_options *opts,
             json_object **out, oo_list *issues);

/* Validate a result against its type, its meta.profile profiles or its logical model. Returns the errors added. */
size_t mps_validate(const mps_set *s, const json_object *result, oo_list *issues);

/* The start group's source type name as written (an alias resolved to the type), or NULL. */
const char *mps_source_type(const sm_map *map);
/* The name given when the map was added (NULL when not from this set). */
const char *mps_map_name(const mps_set *s, const sm_map *map);

#endif
