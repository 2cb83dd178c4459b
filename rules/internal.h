/*
 * rules/internal.h — what the files of rules/ share: the named checks'
 * table, findings, and small readers of FHIR JSON nodes (prefix rl_).
 * Not for use outside rules/.
 */
#ifndef RULES_INTERNAL_H
#define RULES_INTERNAL_H

#include <stdarg.h>

#include "rules/check.h"

/* What a named check gets: the context, its rule (and the rule's data), and the report to add to. */
typedef struct rl_env {
    const rl_context *ctx;
    const rl_rule *rule;
    rl_report *out;
} rl_env;

typedef void (*rl_check_fn)(const rl_env *env);

struct rl_check_def {
    const char *name;
    rl_check_fn run;
};

/* The named check called name, or NULL. */
const rl_check_def *rl_check_find(const char *name);

/* Add a finding (error or warning) at location; detail printf-style, may be NULL. */
void rl_add(rl_report *r, const rl_rule *rule, bool error, const char *location, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- reading FHIR JSON ---------------------------------------------------- */

#define RL_URL "https://fhirgw.nl/fhir/StructureDefinition/"
#define RL_CS "https://fhirgw.nl/fhir/CodeSystem/"

/* Member key of object obj (RL_NO_NODE when obj is RL_NO_NODE, not an object, or key absent). */
uint32_t rl_get(const fj_doc *d, uint32_t obj, const char *key);
/* Element i of array arr (a single value counts as an array of one), or RL_NO_NODE. */
uint32_t rl_at(const fj_doc *d, uint32_t arr, size_t i);
/* Elements of arr (0 when absent; 1 for a single value). */
size_t rl_len(const fj_doc *d, uint32_t arr);
bool rl_is(const fj_doc *d, uint32_t str, const char *s);
bool rl_starts(const fj_doc *d, uint32_t str, const char *prefix);
/* A string node as a NUL-terminated copy in buf (truncated); "" when not a string. */
const char *rl_text(const fj_doc *d, uint32_t str, char *buf, size_t size);
/* Does CodeableConcept (or Coding) node cc carry system|code (system NULL: any)? */
bool rl_has_code(const fj_doc *d, uint32_t cc, const char *system, const char *code);
/* The code of the first coding of CodeableConcept/Coding cc in system, or RL_NO_NODE. */
uint32_t rl_code_in(const fj_doc *d, uint32_t cc, const char *system);
/* Index (in obj.extension) of the n-th extension with url, or -1; *node set to it. */
int rl_ext(const fj_doc *d, uint32_t obj, const char *url, int n, uint32_t *node);
/* The value[x] node of an extension (valueX member), or RL_NO_NODE. */
uint32_t rl_ext_value(const fj_doc *d, uint32_t ext);
/* The value of the first part `url` of a complex extension, and its index (or -1). */
uint32_t rl_part(const fj_doc *d, uint32_t ext, const char *url, int *index);

/* ---- dates --------------------------------------------------------------- */

/* A date or dateTime string node; false when absent or invalid. */
bool rl_date(const fj_doc *d, uint32_t str, fdt_value *out);
/* The calendar day of a value as days since 1970-01-01 (its own wall clock). */
int64_t rl_day(const fdt_value *v);
/* The day `months` calendar months after v's day (clamped to the month's end: Aug 31 + 6 = Feb 28). */
int64_t rl_day_plus_months(const fdt_value *v, int months);
/* YYYY-MM-DD of a day number into buf[11]. */
const char *rl_day_text(int64_t day, char buf[11]);
/* Does a Period node cover the day (absent start/end: open)? An absent period covers everything. */
bool rl_period_covers(const fj_doc *d, uint32_t period, int64_t day);

/* ---- the provider ---------------------------------------------------------- */

/*
 * Does Organization org offer care kind or variant `code` (extension
 * care-offered)? With `location` set, writes the FHIRPath of the offering
 * element (Organization.extension[i].extension[j]).
 */
bool rl_offers(const fj_doc *d, uint32_t org, const char *code, char *location, size_t size);
/* Has org a remote-region exception for care kind `code`, in force on day? */
bool rl_has_exception(const fj_doc *d, uint32_t org, const char *code, int64_t day);
/* Does `when` of a pack's demands apply to org ("grz", "elv-triage", "exception:grz")? */
bool rl_when(const rl_context *c, uint32_t org, const char *when, char *location, size_t size);

#endif
