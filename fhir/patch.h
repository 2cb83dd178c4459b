/*
 * fhir/patch.h — the FHIR `patch` interaction's two patch formats, applied to
 * a parsed resource (prefix fpatch_). No I/O.
 *
 *   JSON Patch (RFC 6902, application/json-patch+json): an array of
 *   operations add, remove, replace, move, copy, test addressed by JSON
 *   Pointers (RFC 6901: `~0` is '~', `~1` is '/', `-` appends to an array).
 *
 *   FHIRPath Patch (FHIR R4, http://hl7.org/fhir/R4/fhirpatch.html): a
 *   Parameters resource with one `operation` parameter per change, whose
 *   parts are type (add, insert, delete, replace, move), path (FHIRPath),
 *   name, value (value[x], or nested parts for a complex value), index,
 *   source and destination. Paths are evaluated with the project's FHIRPath
 *   engine; a path that must select one element and selects several is an
 *   error, and so is one that selects nothing, except for delete, where
 *   nothing to delete is no change (as R5 and the common servers read it).
 *
 * Both are all-or-nothing: the operations apply in order to a working copy,
 * and the result is returned only when every one succeeded. The result is
 * compact JSON in which empty arrays and objects (other than the root) are
 * dropped, e.g. a list whose last element was removed: FHIR JSON has none,
 * an element without content is absent. Between operations they stay, as
 * RFC 6902 has them. Nothing checks the result against FHIR: the caller
 * validates it like any write.
 *
 * Why text in between: the parsed tree (fj_doc) is immutable and flat, so
 * each operation writes the document anew with its change, and the next
 * operation reads that text. Patches are short and resources small, so the
 * simplicity is worth more than the copies.
 *
 * Memory: the returned JSON is malloc'd and owned by the caller. The
 * resource and patch docs are only read. The FHIRPath arena is the caller's
 * (one per thread) and is reset by these calls.
 */
#ifndef FHIR_PATCH_H
#define FHIR_PATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "fhir/fhirpath.h"
#include "fhir/json.h"
#include "fhir/schema.h"

/*
 * Limits, so that a small request cannot make the server copy gigabytes
 * (each JSON Patch copy may double the document): a patch has at most
 * FPATCH_MAX_OPERATIONS operations, and no step may make the document more
 * than FPATCH_MAX_GROWTH bytes larger than the resource was. Both are far
 * beyond what a client changing a Task or a CarePlan sends.
 */
#define FPATCH_MAX_OPERATIONS 1000u
#define FPATCH_MAX_GROWTH ((size_t)1024 * 1024)

/* Why a patch was not applied. */
typedef struct fpatch_error {
    /*
     * true: the patch document itself is wrong (not an array of operations,
     * an unknown op, a malformed pointer or FHIRPath): HTTP 400.
     * false: a well-formed operation could not be applied to this resource
     * (path missing, index out of range, test failed): HTTP 422.
     */
    bool malformed;
    int op;            /* 0-based index of the failing operation; -1 when the document as a whole is wrong */
    char op_name[16];  /* "replace", "test", ...; "" when unknown */
    char path[256];    /* the operation's path (JSON Pointer or FHIRPath); "" when none */
    char message[256]; /* what went wrong */
} fpatch_error;

/*
 * Apply the JSON Patch `patch` (root node: the array of operations) to the
 * root of `resource`. Returns the new document (malloc'd, *len bytes, NUL
 * terminated) or NULL with *err filled.
 */
char *fpatch_json_patch(const fj_doc *resource, const fj_doc *patch, size_t *len, fpatch_error *err);

/*
 * Apply the FHIRPath Patch `patch` (root node: a Parameters resource) to the
 * root of `resource`. schema NULL = fs_r4(); it decides which elements are
 * lists and how choice elements are named. arena: the caller's (reset here).
 * Returns the new resource (malloc'd, *len bytes, NUL terminated) or NULL
 * with *err filled.
 */
char *fpatch_fhirpath(const fj_doc *resource, const fj_doc *patch, const fs_schema *schema, fp_arena *arena,
                      size_t *len, fpatch_error *err);

#endif
