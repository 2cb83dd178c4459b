/*
 * fhir/outcome.h — issue lists and the one OperationOutcome builder (prefix oo_).
 *
 * Every check in the project reports problems as oo_issue values appended
 * to an oo_list; nothing prints or exits. oo_to_json turns a list into a
 * FHIR OperationOutcome (json-c object, owned by the caller: json_object_put).
 *
 * Memory: the list owns its issues and their strings (oo_list_free). A list
 * keeps at most `max_issues` issues (0 = OO_DEFAULT_MAX_ISSUES); later ones are
 * counted but not stored, and the outcome says how many were dropped.
 */
#ifndef FHIR_OUTCOME_H
#define FHIR_OUTCOME_H

#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum oo_severity { OO_FATAL, OO_ERROR, OO_WARNING, OO_INFORMATION } oo_severity;

/* IssueType codes used by the project (http://hl7.org/fhir/issue-type). */
#define OO_STRUCTURE "structure"
#define OO_REQUIRED "required"
#define OO_VALUE "value"
#define OO_CODE_INVALID "code-invalid"
#define OO_NOT_FOUND "not-found"
#define OO_TOO_LONG "too-long"
#define OO_NOT_SUPPORTED "not-supported"
#define OO_PROCESSING "processing"
#define OO_EXCEPTION "exception"
#define OO_INVARIANT "invariant"
#define OO_INFORMATIONAL "informational"
#define OO_INVALID "invalid" /* content not valid for its kind (XHTML narrative, as the HL7 validator says) */

#define OO_DEFAULT_MAX_ISSUES 1000u

typedef struct oo_issue {
    oo_severity severity;
    const char *code; /* one of the OO_* codes (static) */
    char *message;    /* owned */
    char *expression; /* owned; FHIRPath location, NULL when the problem has none (JSON syntax) */
    unsigned line;    /* 1-based source position, 0 when unknown */
    unsigned column;
} oo_issue;

typedef struct oo_list {
    oo_issue *items;
    size_t count, capacity;
    size_t errors;   /* fatal + error, including dropped ones */
    size_t warnings; /* including dropped ones */
    size_t dropped;  /* issues beyond max_issues */
    size_t max_issues;
} oo_list;

void oo_list_init(oo_list *l, size_t max_issues);
void oo_list_free(oo_list *l);

/* Append an issue; expression may be NULL; line 0 = no position. printf-style message. */
void oo_add(oo_list *l, oo_severity sev, const char *code, const char *expression, unsigned line, unsigned column,
            const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void oo_vadd(oo_list *l, oo_severity sev, const char *code, const char *expression, unsigned line, unsigned column,
             const char *fmt, va_list ap);
/* oo_add of the message prefix followed by text (no position), without printf: for callers adding issues by the
   dozen, such as the map engine's unmapped-element report, where formatting was most of the cost. */
void oo_add_text(oo_list *l, oo_severity sev, const char *code, const char *expression, const char *prefix,
                 const char *text);

const char *oo_severity_name(oo_severity s);

/*
 * The one-line text form of an issue, as `fhirgw validate` prints it and the
 * tests log it: severity and code padded to columns, the FHIRPath location
 * and the source position when known, then the message:
 *
 *   error   value        Patient.birthDate (line 3, col 17): invalid date '2023-02-29': ...
 *   fatal   structure    (line 1, col 9): invalid JSON: ...
 *
 * snprintf-style: writes at most cap bytes into buf (NUL-terminated when cap
 * > 0) and returns the length of the whole line, so a caller whose buffer was
 * too small can allocate that plus one and call again.
 */
size_t oo_issue_format(const oo_issue *is, char *buf, size_t cap);

/* The list as an OperationOutcome. An empty list yields one "informational" issue (FHIR requires 1..*). */
json_object *oo_to_json(const oo_list *l);

#endif
