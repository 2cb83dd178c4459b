/*
 * ig/tools/docgen.h — the guide's Markdown pages, generated from its resources (prefix igd_).
 *
 *   OUT/<id>.md   per profile and extension: title, description, base, the differential as a
 *                 table (path, cardinality, types and profiles, binding, short and definition,
 *                 invariants with their human text, the `seeds` mapping (source paragraph and
 *                 the quoted Dutch sentence), the `insurer` mapping), then the packaged example;
 *                 per logical model: its fields (type, cardinality, binding, definition) and a
 *                 link to its JSON Schema (ig/schemas/<id>.schema.json)
 *   OUT/README.md the overview: per source paragraph of the seed texts, the items and rules
 *                 (seeds mappings and the `requirement` code system's concepts), the FHIR element
 *                 that carries each and the insurer field it feeds; then every profile,
 *                 extension, code system, value set and model
 *
 * Pages are committed under docs/ig/; the output depends only on the package, so a test can
 * regenerate them and compare bytes. Links are relative to docs/ig/.
 *
 * Memory: nothing returned is owned by the caller.
 */
#ifndef IG_TOOLS_DOCGEN_H
#define IG_TOOLS_DOCGEN_H

#include <stdbool.h>

#include "fhir/outcome.h"
#include "ig/tools/package.h"

/* Write every page into OUT (created when missing). False on I/O problems. */
bool igd_write_all(const igp_package *p, const char *out, oo_list *issues);

#endif
