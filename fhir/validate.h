/*
 * fhir/validate.h — structural validation of FHIR R4 JSON resources (prefix fv_).
 *
 * Checks, for every resource type in the schema: JSON well-formedness
 * (via fhir/json.h: syntax, UTF-8, duplicate keys, limits), empty values,
 * resourceType, unknown properties and choice suffixes, cardinality, array
 * versus single value, primitive JSON types and lexical formats, primitive
 * extensions (`_name`), required bindings the package can expand, reference
 * syntax, contained resources, Bundle entries (recursively) and, in
 * transaction and document Bundles, that references between entries resolve;
 * then every invariant (constraint) of the core StructureDefinitions at the
 * severity it defines, evaluated with FHIRPath (ele-1 and ext-1 natively).
 *
 * Problems are appended to an oo_list with a FHIRPath `expression`
 * (e.g. "CarePlan.activity[0].detail.status") and the source line/column.
 * Nothing is allocated that outlives a call except what the oo_list owns.
 * Thread-safe: the schema is immutable and all state lives on the call.
 */
#ifndef FHIR_VALIDATE_H
#define FHIR_VALIDATE_H

#include <stddef.h>

#include "fhir/json.h"
#include "fhir/outcome.h"
#include "fhir/profile.h"
#include "fhir/schema.h"

/* The most children any element has in R4 is 54; the walk keeps per-object state for this many. */
#define FV_MAX_CHILDREN 128

/*
 * What the caller wants of one resource inside the one validated (a Bundle entry's, a contained one, a
 * Parameters.parameter.resource): `node` is its node in the doc given to fv_validate_doc or fv_validate_node.
 */
typedef struct fv_resource_rule {
    uint32_t node;
    const pf_profile *profile; /* with opts.profiles: it must also conform, as if its meta.profile named it last */
    bool skip;                 /* leave it out altogether (it is validated on its own): no issue from inside it */
} fv_resource_rule;

typedef struct fv_options {
    const fs_schema *schema;       /* NULL = fs_r4() */
    fj_limits limits;              /* zero fields = fj defaults */
    size_t max_issues;             /* per validation; 0 = OO_DEFAULT_MAX_ISSUES */
    const pf_registry *profiles;   /* when set: meta.profile of every resource, and known extensions, are checked */
    const pf_profile *profile;     /* when set: the root resource must also conform to this profile */
    bool skip_invariants;          /* leave out the core invariants (FHIRPath), e.g. to measure their cost */
    bool security_checks;          /* HTML or script links in strings and markdown are errors, not hints/warnings */
    const fv_resource_rule *rules; /* sorted by node, one per node: for any resource the walk meets */
    size_t rule_count;
} fv_options;

/*
 * Parse and validate buf[0..len) as one FHIR resource. buf is modified in
 * place (JSON string unescaping). opts may be NULL. Issues are appended to
 * *out (initialise it with oo_list_init). Returns the number of errors
 * (fatal + error) this call added.
 */
size_t fv_validate_buffer(char *buf, size_t len, const fv_options *opts, oo_list *out);

/* Validate a parsed document whose root is a resource. Returns errors added. */
size_t fv_validate_doc(fj_doc *doc, const fv_options *opts, oo_list *out);

/*
 * Validate the subtree at `node` (< doc->count) of a parsed document as one resource, as fv_validate_buffer
 * would validate that subtree's text alone: the same issues, expressions starting at its resource type
 * ("Bundle.entry[0]..."); line and column are those of doc's text. opts->limits do not apply (doc is parsed).
 * Nothing is copied: the walk reads doc's nodes in place and does not change doc, so threads may validate
 * nodes of one doc at once. Rules name nodes of doc. Returns errors added.
 */
size_t fv_validate_node(const fj_doc *doc, uint32_t node, const fv_options *opts, oo_list *out);

#endif
