/*
 * gateway/rest/rest_transform.h — the insurer maps on the server
 * (rest_transform.c): the map set the app loads at start, running a shipped
 * map by its canonical URL, and POST StructureMap/$transform
 * (rest_transform_op, handlers.h; docs/mappings.md).
 *
 * The set: every *.map of rest_options.maps_dir (mappings/maps/2026) in name
 * order, with the ConceptMaps of its conceptmaps/ folder, the guide's
 * logical models (rest_options.profiles) and pseudonym() under
 * rest_options.pseudonym_key: what `fhirgw map` loads (gateway/cli/cmd_map.c),
 * through the same mapset (mappings/mapset.h). A stored StructureMap runs in
 * a set of its own made for the request, with the same ConceptMaps and
 * host functions, so nothing a client stores changes the shared set.
 *
 * Errors: a run that fails, or whose result is not valid against its
 * StructureDefinition or logical model, is 422 with issues that name the
 * map (file name, and the FML line where there is one) and the element.
 *
 * Uses handlers, rest_write (the body), rest_access, answer.
 * Memory: rest_maps_load returns a set the app owns (rest_maps_free); the
 * kept ConceptMap texts live with it. A result of rest_maps_run is the
 * caller's (json_object_put).
 * Threads: loaded on one thread before serving; afterwards runs from any
 * worker at once (the set is read-only).
 */
#ifndef GATEWAY_REST_TRANSFORM_H
#define GATEWAY_REST_TRANSFORM_H

#include "gateway/rest/rest_internal.h"
#include "mappings/mapset.h"

typedef struct rest_maps rest_maps;

/* Load dir's maps and ConceptMaps; NULL with the first problem in err (the map file and line). */
rest_maps *rest_maps_load(const char *dir, const pf_registry *registry, const mpn_key *key, char *err, size_t errlen);
void rest_maps_free(rest_maps *m);

/* The shipped map whose StructureMap.url is url, or NULL. */
const sm_map *rest_maps_find(const rest_maps *m, const char *url);

/*
 * Run the shipped map `url` over node `node` of doc (UINT32_MAX: the root,
 * or a Bundle's first entry of the map's source type, as mps_run) and
 * validate the result. 0 with *out set, or the HTTP status (422; 500 for a
 * url that names no shipped map) with issues.
 */
int rest_maps_run(const rest_maps *m, const char *url, const fj_doc *doc, uint32_t node, json_object **out,
                  oo_list *issues);

/* Is this JSON (a map's result) a FHIR resource rather than an instance of the insurer's model? */
bool rest_maps_is_fhir(const rest_app *app, const json_object *result);
/* Answer result (a map's result, or a page of them): application/fhir+json when it is a FHIR resource, else
 * application/json (the insurer's model is not FHIR). */
void rest_maps_answer(rq *q, int status, const json_object *result);
/* Are the maps loaded? False after answering 503 (the gateway was started without maps_dir). */
bool rest_maps_ready(rq *q);

#endif
