/*
 * fhir/report.h — where a check is in a resource, and reporting an issue
 * there (prefix rp_).
 *
 * The validator (fhir/validate.c) and the profile checker (fhir/profile.c)
 * walk a parsed resource and report problems at a FHIRPath location
 * ("CarePlan.activity[0].detail.status") with the line and column of the
 * JSON node. An rp_reporter keeps that location as a buffer that grows and
 * shrinks with the walk:
 *
 *     size_t mark = rp_push(&rep, ".%s", name);   // before descending
 *     ... rp_report(&rep, node, OO_ERROR, OO_VALUE, "...", ...) ...
 *     rp_pop(&rep, mark);                          // after
 *
 * so nothing is formatted until an issue is actually found. An empty
 * location is reported as "$this". Locations longer than RP_PATH_CAPACITY
 * end in "..." (and pushes beyond that are ignored until popped).
 *
 * Memory: the reporter lives on the caller's stack and owns nothing; the
 * doc and the oo_list belong to the caller and must outlive it. One
 * reporter per walk (not shared between threads).
 */
#ifndef FHIR_REPORT_H
#define FHIR_REPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/json.h"
#include "fhir/outcome.h"

#define RP_PATH_CAPACITY 1024
#define RP_NO_NODE UINT32_MAX /* an issue without a source position */

typedef struct rp_reporter {
    fj_doc *doc;  /* for line and column (built on first use, hence not const) */
    oo_list *out; /* issues are appended here */
    size_t len;   /* of path */
    char path[RP_PATH_CAPACITY];
} rp_reporter;

void rp_init(rp_reporter *r, fj_doc *doc, oo_list *out);

/* Append printf-style text to the location; returns the mark rp_pop restores. */
size_t rp_push(rp_reporter *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ".name", or "name" at the start of an empty location. */
size_t rp_push_name(rp_reporter *r, const char *name, size_t len);
/* "[index]". */
size_t rp_push_index(rp_reporter *r, unsigned index);
/* text[0..len) as it is. rp_push_name, rp_push_index and rp_push_text format nothing: the walks' hot path. */
size_t rp_push_text(rp_reporter *r, const char *text, size_t len);
void rp_pop(rp_reporter *r, size_t mark);

/* The current location, NUL-terminated ("" at the start). Valid until the next push or pop. */
const char *rp_path(const rp_reporter *r);

/* An issue at the current location and at node's position (RP_NO_NODE: none). */
void rp_report(rp_reporter *r, uint32_t node, oo_severity sev, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void rp_vreport(rp_reporter *r, uint32_t node, oo_severity sev, const char *code, const char *fmt, va_list ap);
/* The same at a location recorded earlier (e.g. a reference resolved at the end of a Bundle). */
void rp_report_at(rp_reporter *r, const char *path, uint32_t node, oo_severity sev, const char *code, const char *fmt,
                  ...) __attribute__((format(printf, 6, 7)));

#endif
