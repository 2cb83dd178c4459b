/*
 * rules/context.h — what a rule may see besides its subject (prefix rl_).
 *
 * A check gets one rl_context: the subject (a CarePlan, an Organization or an
 * Encounter), the date checked (an input: rules never read the clock), and an
 * interface to the resources around the subject: references resolved, and
 * lists of related resources by kind (the patient's Coverages and Encounters,
 * a provider's Contracts and stays, a stay's handover Tasks, ...). Today one
 * implementation of rl_context_ops serves every source: rl_bundle
 * (rules/bundle.h), over a posted Bundle, and over the collection Bundle the
 * gateway gathers from its store or pulls from a provider
 * (gateway/rest/rest_compliance_context.h). Another source would be another
 * implementation of the same ops; the rules would not change.
 *
 * Memory: a context only borrows. The documents its resources live in belong
 * to the caller and must outlive every rl_res handed out.
 */
#ifndef RULES_CONTEXT_H
#define RULES_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/datetime.h"
#include "fhir/json.h"

#define RL_NO_NODE UINT32_MAX

/* One resource: a node of a parsed document (node RL_NO_NODE: none). */
typedef struct rl_res {
    const fj_doc *doc;
    uint32_t node;
} rl_res;

/* The kinds of related resources a rule may ask for. */
typedef enum rl_kind {
    RL_COVERAGE,          /* the patient's Coverages (Wlz indication, Wmo day care): of = the Patient */
    RL_ENCOUNTER,         /* Encounters: of = a Patient (its admissions) or an Organization (its stays) */
    RL_CARETEAM,          /* CareTeams (usually reached by reference from the plan) */
    RL_PRACTITIONER_ROLE, /* PractitionerRoles of the team */
    RL_GOAL,              /* Goals of the plan */
    RL_LOCATION,          /* Locations of the provider */
    RL_TASK,              /* the handover Tasks relayed for a stay: of = the Encounter */
    RL_CONTRACT,          /* the insurer's Contracts with a provider: of = the Organization */
    RL_KIND_COUNT
} rl_kind;

/* Called once per related resource; return false to stop early. */
typedef bool (*rl_each_fn)(void *arg, rl_res r);

typedef struct rl_context_ops {
    /*
     * Resolve the literal reference ref[0..len) written in resource `from`
     * ("Type/id", an absolute URL, "urn:uuid:..."). False when the resource is
     * not in the context.
     */
    bool (*resolve)(const void *self, rl_res from, const char *ref, size_t len, rl_res *out);
    /*
     * Call fn for each resource of `kind` related to the resource `of` (whose
     * reference as written in the subject is of_ref, "Patient/p1"; either may
     * be unknown: of.node RL_NO_NODE, of_ref NULL).
     */
    void (*related)(const void *self, rl_kind kind, rl_res of, const char *of_ref, rl_each_fn fn, void *arg);
} rl_context_ops;

typedef struct rl_context {
    const rl_context_ops *ops;
    const void *self;
    rl_res subject;
    fdt_value date; /* the date checked (precision day) */
} rl_context;

/* Convenience wrappers over ops. */
bool rl_resolve(const rl_context *c, rl_res from, const char *ref, size_t len, rl_res *out);
/* Resolve the Reference object at node ref_obj of from.doc (its "reference" member). */
bool rl_resolve_ref(const rl_context *c, rl_res from, uint32_t ref_obj, rl_res *out);
void rl_related(const rl_context *c, rl_kind kind, rl_res of, const char *of_ref, rl_each_fn fn, void *arg);

#endif
