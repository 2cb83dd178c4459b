/*
 * fhir/bundle_rules.h — what a Bundle's type asks of its entries and links
 * (prefix br_), beside the invariants bdl-1..12 (FHIRPath, or native in
 * validate.c) and the resolution of references inside the Bundle (validate.c).
 *
 *   every type       a RESTful fullUrl ("http://x/Patient/1") names the entry's
 *                    type and id, and then the resource has an id; a canonical
 *                    url that is the fullUrl is such a RESTful URL
 *   document/message every entry has a fullUrl
 *   transaction/batch a PUT Type/id carries a resource of that type and id
 *   searchset        a self link; search.mode on the entries; match and include
 *                    results have ids; matches are of the searched type; outcome
 *                    entries are OperationOutcomes
 *   Bundle.link      paging relations only in searchsets and histories, and no
 *                    relation twice; a document's stylesheet link
 *
 * The rules and their severities follow the HL7 Java validator
 * (BundleValidator): never stricter than it where it is lenient (see
 * docs/validator.md, section 4).
 *
 * Memory: nothing is allocated; the doc and the reporter belong to the caller.
 */
#ifndef FHIR_BUNDLE_RULES_H
#define FHIR_BUNDLE_RULES_H

#include <stdint.h>

#include "fhir/json.h"
#include "fhir/report.h"
#include "fhir/schema.h"

/*
 * Checks the Bundle object `bundle` of `doc`. Issues go to `rep`, at
 * locations below its current one, which must be the Bundle's own
 * ("Bundle", "Bundle.entry[2].resource").
 */
void br_check(const fs_schema *s, fj_doc *doc, uint32_t bundle, rp_reporter *rep);

#endif
