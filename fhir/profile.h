/*
 * fhir/profile.h — profiles, extension definitions and terminology loaded at
 * run time from conformance resources (prefix pf_).
 *
 * A registry holds the project's own StructureDefinitions (derivation
 * "constraint": profiles on resources and data types, and extension
 * definitions), ValueSets and CodeSystems, added as JSON buffers (the caller
 * reads the files: fhir/ does no I/O). A new profile is data, not code.
 *
 * What a profile adds on top of the core validation (fhir/validate.h):
 *   - tightened cardinality (min/max) of elements, and of slices;
 *   - fixed[x] (exact) and pattern[x] (contains) values;
 *   - type restrictions of choice elements, and targetProfile of References;
 *   - slicing with discriminators of type value and pattern (e.g.
 *     identifier.system, coding.system, extension url), open or closed;
 *   - extensions by URL checked against their own definition (simple
 *     value[x] extensions and complex ones with nested extensions);
 *   - data-type profiles named in type.profile (an identifier slice whose
 *     type is a profile on Identifier): the value must conform to it;
 *   - required bindings to the registry's value sets (or core ones);
 *   - the profile's own invariants, evaluated with FHIRPath (fhir/fhirpath.h);
 *     each expression is compiled once, on first use, into the registry.
 * The differential of each profile is applied over its base; the base is a
 * core type or another profile in the registry (applied too).
 *
 * Memory: the registry owns everything loaded into it; free it with
 * pf_registry_free. After loading, it is immutable and may be shared by
 * threads. Issues are appended to the caller's oo_list.
 */
#ifndef FHIR_PROFILE_H
#define FHIR_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/json.h"
#include "fhir/outcome.h"
#include "fhir/schema.h"

typedef struct pf_registry pf_registry;
typedef struct pf_profile pf_profile;
typedef struct pf_logical pf_logical;

pf_registry *pf_registry_new(const fs_schema *schema);
void pf_registry_free(pf_registry *r);

/*
 * Add one conformance resource (StructureDefinition: profile, extension or
 * logical model; ValueSet, CodeSystem; other resource types are ignored) from a JSON buffer. `origin` names it in
 * messages (a file name). Returns false and appends issues when it cannot be
 * used (malformed, unsupported derivation, duplicate URL).
 */
bool pf_registry_add(pf_registry *r, const char *json, size_t len, const char *origin, oo_list *issues);

/*
 * Resolve what was added: base profiles, value set expansions. Call once
 * after the last pf_registry_add; returns false and appends issues for
 * dangling bases or unexpandable value sets.
 */
bool pf_registry_finish(pf_registry *r, oo_list *issues);

/* A profile or extension definition by canonical URL ("|version" ignored), or NULL. */
const pf_profile *pf_find(const pf_registry *r, const char *url);
const char *pf_profile_url(const pf_profile *p);
/*
 * An extension definition's context of use (StructureDefinition.context), one
 * "type expression" a line ("element Patient\nextension http://...\n"), ""
 * when it names none; and whether its root is isModifier.
 */
const char *pf_extension_contexts(const pf_profile *p);
bool pf_extension_is_modifier(const pf_profile *p);
/* How often the extension may appear on one element (its root's max; UINT32_MAX for "*"). */
uint32_t pf_extension_max(const pf_profile *p);
/*
 * The core extension definitions of the R4 package (fs_r4()->extension_defs)
 * as one registry, loaded on first use; shared and immutable (never freed).
 * NULL when memory runs out.
 */
const pf_registry *pf_core_extensions(void);
/* The core type the profile constrains ("Patient", "Extension"). */
const char *pf_profile_type(const pf_profile *p);
size_t pf_registry_count(const pf_registry *r);

/*
 * Logical models (StructureDefinitions of kind "logical", such as an
 * insurer's record layout) are held by url, not used as profiles: the tools
 * that read them (JSON Schema, mappings) find them here.
 */
const pf_logical *pf_find_logical(const pf_registry *r, const char *url);
const char *pf_logical_url(const pf_logical *m);
size_t pf_logical_count(const pf_registry *r);

/*
 * Is code (of system, NULL = any system) in value set url? The registry's
 * expanded value sets first, then the core package's. 1 yes, 0 no, -1 when
 * the value set is not available.
 */
int pf_code_in_valueset(const pf_registry *r, const char *url, const char *system, size_t system_len, const char *code,
                        size_t code_len);
/* The i-th logical model (0 <= i < pf_logical_count), in the order added. */
const pf_logical *pf_logical_at(const pf_registry *r, size_t i);
/* The model's StructureDefinition as loaded (owned by the registry, read-only). */
const json_object *pf_logical_definition(const pf_logical *m);

/*
 * Validate the resource at doc node `resource` against profile p (and its
 * base profiles). The resource is assumed to have passed (or been reported
 * by) the core validation. Extensions are checked against their own
 * definitions by pf_validate_declared, not here. `base_path` is the FHIRPath
 * prefix of the resource ("" at the root: the resource type is used).
 * Returns the number of errors added.
 */
size_t pf_validate(const pf_registry *r, const pf_profile *p, fj_doc *doc, uint32_t resource, const char *base_path,
                   oo_list *out);

/*
 * Some of a profile's invariants, chosen by key, without the rest of the
 * profile: for a caller that wants only their verdicts (the rules engine's
 * rule-keyed invariants). Made once: the expressions are compiled and the
 * elements that lead to them are found here, so a check walks only those
 * elements and evaluates only those invariants. pf_check_invariants reports
 * exactly the issues pf_validate would report for those invariants (same
 * location, code, message); cardinality, fixed values, bindings, other
 * invariants are not looked at. Keys that the profile (with its bases and
 * data-type profiles) does not have are ignored (pf_invariants_count says
 * how many were found). Memory: the set borrows the registry and the profile
 * (the keys are read only while it is made); it is immutable and may be
 * shared by threads; free it with pf_invariants_free.
 */
typedef struct pf_invariants pf_invariants;
pf_invariants *pf_invariants_new(const pf_registry *r, const pf_profile *p, const char *const *keys, size_t n);
void pf_invariants_free(pf_invariants *s);
size_t pf_invariants_count(const pf_invariants *s);
/* The chosen invariants of s over the resource at doc node `resource`, as pf_validate. Returns errors added. */
size_t pf_check_invariants(const pf_invariants *s, fj_doc *doc, uint32_t resource, const char *base_path, oo_list *out);

/*
 * Validate a resource against every profile its meta.profile names, and
 * every extension anywhere in it whose URL the registry defines. Profiles
 * that the registry does not know give a warning. Returns errors added.
 */
size_t pf_validate_declared(const pf_registry *r, fj_doc *doc, uint32_t resource, const char *base_path, oo_list *out);
/*
 * pf_validate_declared with one more profile (NULL: none), applied as if meta.profile named it last: the
 * caller's requirement on the resource, without writing a copy of it that declares it.
 */
size_t pf_validate_declared_plus(const pf_registry *r, fj_doc *doc, uint32_t resource, const char *base_path,
                                 const pf_profile *extra, oo_list *out);

#endif
