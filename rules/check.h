/*
 * rules/check.h — running a rule pack over a subject and its context, and
 * the compliance report (prefix rl_).
 *
 *   rl_engine *e = rl_engine_new(pack, registry, &issues);   once: profiles found
 *   rl_report rep; rl_check(e, &ctx, &rep, err, sizeof err); per subject
 *   json_object *p = rl_report_parameters(&rep);             the FHIR Parameters of ig/README.md
 *   char *page = rl_report_text(&rep);                       the same for a person
 *   rl_report_free(&rep);
 *
 * Invariant rules are evaluated by running the guide profile's invariants
 * whose key is a rule id (and only those: pf_check_invariants) on the subject
 * or on the resources an element of it refers to; named checks are C functions.
 * A rule that cannot be decided because its context is missing gives a
 * warning (needs review), never silence.
 *
 * Memory and threads: the engine borrows the pack and the registry (both
 * immutable), so one engine serves many threads; each call owns its report.
 */
#ifndef RULES_CHECK_H
#define RULES_CHECK_H

#include <json-c/json.h>

#include "fhir/fhirpath.h"
#include "fhir/outcome.h"
#include "fhir/profile.h"
#include "rules/context.h"
#include "rules/pack.h"

typedef struct rl_engine rl_engine;

typedef enum rl_status { RL_COMPLIANT, RL_NON_COMPLIANT, RL_NEEDS_REVIEW } rl_status;

typedef struct rl_finding {
    const rl_rule *rule;
    bool error;     /* error (not compliant) or warning (must be looked at) */
    char *location; /* FHIRPath of the element at fault, from the subject */
    char *detail;   /* language-neutral particulars (codes, dates, references); may be NULL */
} rl_finding;

typedef struct rl_report {
    char subject[256]; /* "CarePlan/cp-1" */
    char checked[11];  /* YYYY-MM-DD */
    const char *pack;  /* the pack version (borrowed from the pack) */
    rl_finding *items;
    size_t count, capacity;
    size_t errors, warnings;
} rl_report;

/* NULL (issues appended) when a profile the pack names is not in the registry. */
rl_engine *rl_engine_new(const rl_pack *pack, const pf_registry *registry, oo_list *issues);
void rl_engine_free(rl_engine *e);
const rl_pack *rl_engine_pack(const rl_engine *e);
/* The resource types the pack checks (subjects), and how many. */
const char *const *rl_engine_subject_types(const rl_engine *e, size_t *n);

/*
 * Check ctx->subject. False with err filled when it cannot be checked (no
 * rules for its type); the report is then empty but safe to free.
 */
bool rl_check(const rl_engine *e, const rl_context *ctx, rl_report *out, char *err, size_t err_size);

rl_status rl_report_status(const rl_report *r);
const char *rl_status_code(rl_status s); /* compliant, non-compliant, needs-review */
void rl_report_free(rl_report *r);

/* The report as the Parameters of ig/README.md (caller: json_object_put). */
json_object *rl_report_parameters(const rl_report *r);
/* The report as a page for a person (malloc'd, caller frees). */
char *rl_report_text(const rl_report *r);

#endif
