/*
 * fhir/reference.h — the parts of a literal reference (prefix fr_).
 *
 *   "Patient/123"                               type Patient, id 123
 *   "Patient/123/_history/2"                    type Patient, id 123, version 2
 *   "https://example.org/fhir/Patient/123"      the same, with a base URL
 *   "#p1", "urn:uuid:...", "urn:oid:..."        no type and id (contained, or named by a URI)
 *
 * Pure, no allocation: the parts point into the caller's text.
 */
#ifndef FHIR_REFERENCE_H
#define FHIR_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fr_parts {
    const char *type, *id, *version; /* NULL when absent */
    size_t type_len, id_len, version_len;
} fr_parts;

/* True when text[0..len) ends in Type/id (optionally /_history/version) with an upper-case type. */
bool fr_parse(const char *text, size_t len, fr_parts *out);

/* True when text[0..len) starts with a URI scheme and a colon ("http:", "urn:"): an absolute URI. */
bool fr_is_absolute(const char *text, size_t len);

/* The length of text[0..len) without a trailing "/_history/version" (len itself when there is none). */
size_t fr_unversioned_len(const char *text, size_t len);

#endif
