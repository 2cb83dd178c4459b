/*
 * gateway/util/conformance.h — loads the conformance resources (profiles,
 * extension definitions, value sets, code systems) from folders into a
 * profile registry (prefix conf_).
 *
 * Memory: the caller owns the returned registry (pf_registry_free).
 */
#ifndef GATEWAY_CONFORMANCE_H
#define GATEWAY_CONFORMANCE_H

#include <stddef.h>

#include "fhir/outcome.h"
#include "fhir/profile.h"

/* Every *.json below each folder, except a FHIR package's package.json and example/ folder (so
 * a package folder such as the guide's build/ig/package loads as it is). NULL only when a
 * folder cannot be read; problems with single resources are appended to issues (the registry
 * still holds the others). */
pf_registry *conf_load(const char *const *dirs, size_t dir_count, oo_list *issues);

#endif
