/*
 * gateway/rest/rest_compliance_context.h — the context of a compliance check, gathered from a
 * source of resources into one collection Bundle (prefix cx_).
 *
 * The rules (rules/context.h) see a subject and the resources around it. The gateway has two
 * places to find them: its own store, and a provider's FHIR endpoint (pull mode). Both are a
 * cx_source: read one resource by type and id, and search resources of a type by one reference
 * search parameter. cx_gather walks the same way over either, driven by two tables:
 *
 *   - searches by subject type: a CarePlan's patient's Coverages and Encounters, a stay's
 *     handover Tasks (Task.encounter), its provider's Contracts and the patient's Coverages, an
 *     Organization's Contracts and stays (Encounter.service-provider);
 *   - references followed: every relative reference "Type/id" of a type a rule may look at
 *     (Patient, Organization, CareTeam, PractitionerRole, Goal, Location, Task, Encounter,
 *     Coverage, Contract, Practitioner) in the subject and what the searches found, and once more
 *     in what that brought (a CarePlan's CareTeam, then its PractitionerRoles).
 *
 * What is missing is left out (a rule that needs it says "needs review"); what fails (the
 * source's own error: a provider down, an invalid answer) stops the gathering with the status
 * and message of the source. At most LIM(compliance_context_max) resources are gathered;
 * cx_set.truncated says when more were left out.
 *
 * The result, cx_bundle, is a collection Bundle whose first entry is the subject: rules/bundle.c
 * is the rl_context over it, so the store, pull mode and a posted Bundle are checked by one
 * implementation.
 *
 * Many subjects at once (an insurer's pull of thousands of plans): cx_gather_many walks a batch
 * of subjects in lockstep, so that each search and each round of references costs one bulk call
 * of the source per resource type for the whole batch (read_many, search_many; a source without
 * them is asked one resource at a time), and a cx_cache keeps what was read, parsed once, for
 * the next batch: the provider's CareTeams, PractitionerRoles, Locations and Organization, which
 * every plan refers to. Each subject's set is the same, in the same order, as cx_gather of it
 * alone would gather (the walk is the same: cx_gather is a batch of one). The cache is bounded
 * (what the last batch did not use goes first) and holds the resources as first read: a pull
 * sees a resource changed during it as it was when the pull first read it.
 *
 * Memory: a cx_set owns its resources' texts (cx_set_free), except that the sets of cx_gather_many
 * with a cache borrow the cached resources' texts (all but the subject's): they stay valid through
 * the next cx_gather_many with that cache (which keeps what the batch before it used, so a caller
 * may check one batch on another thread while it gathers the next) and until the one after that or
 * cx_cache_free. cx_bundle's text is malloc'd; a cx_cache owns its copies (cx_cache_free).
 */
#ifndef GATEWAY_REST_COMPLIANCE_CONTEXT_H
#define GATEWAY_REST_COMPLIANCE_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/rest/rest_internal.h"

#define CX_MESSAGE_MAX 256

/* Called by a search for each resource found (its JSON text, copied by the callee). */
typedef void (*cx_add_fn)(void *arg, const char *json, size_t len);

typedef struct cx_source {
    /*
     * One resource. 0: found, *json malloc'd (the caller frees); 404: not there (no message needed);
     * any other status: the source failed, msg says why (the gathering stops with it).
     */
    int (*read)(void *self, const char *type, const char *id, char **json, size_t *len, char *msg, size_t msglen);
    /* The resources of `type` whose reference search parameter `param` names `ref` ("Patient/p1"): add each.
     * 0, or a status with msg as for read. */
    int (*search)(void *self, const char *type, const char *param, const char *ref, cx_add_fn add, void *arg, char *msg,
                  size_t msglen);
    void *self;
    /*
     * Optional bulk forms (NULL: read and search one at a time). read_many: every current resource of `type`
     * among ids[0..n), added in any order (the missing ones are not). search_many: the resources of `type` whose
     * `param` names any of refs[0..n), at most `limit`, in the order search gives each ref's. 0, or a status
     * with msg as for read.
     */
    int (*read_many)(void *self, const char *type, const char *const *ids, size_t n, cx_add_fn add, void *arg,
                     char *msg, size_t msglen);
    int (*search_many)(void *self, const char *type, const char *param, const char *const *refs, size_t n, size_t limit,
                       cx_add_fn add, void *arg, char *msg, size_t msglen);
} cx_source;

typedef struct cx_set {
    char **json;
    size_t *len;
    char (*key)[2 * ST_ID_MAX + 2]; /* "Type/id" */
    bool *owned;                    /* owned[i]: json[i] is the set's; else the cx_cache's (see Memory) */
    size_t count, cap;
    bool truncated; /* more than LIM(compliance_context_max) were found */
} cx_set;

/*
 * The subject type/id and its context from src into set. 0 when gathered; 404 when the subject is
 * not there; another status (with msg) when the source failed.
 */
int cx_gather(const cx_source *src, const char *type, const char *id, cx_set *set, char *msg, size_t msglen);
void cx_set_free(cx_set *set);

/* What a batch has read, parsed, for the next batch (see above). */
typedef struct cx_cache cx_cache;
cx_cache *cx_cache_new(void); /* NULL when out of memory */
void cx_cache_free(cx_cache *cache);

/*
 * Whether subject i goes on to have its references followed, asked once the searches are in its set (the
 * subject first, then what each search found): an insurer's pull drops the plans of others' insured here.
 */
typedef bool (*cx_keep_fn)(void *arg, size_t i, const cx_set *set);

/*
 * The contexts of n subjects of `type`, given as their JSON texts (json[i], len[i]), from src into sets[0..n)
 * (each as cx_gather would gather it; a subject keep() drops, or whose text is not a resource, gets an empty
 * set). cache NULL: none kept beyond the call; keep NULL: all kept. 0, or the source's failure (with msg):
 * then every set is empty.
 */
int cx_gather_many(const cx_source *src, cx_cache *cache, const char *type, const char *const *json, const size_t *len,
                   size_t n, cx_keep_fn keep, void *keep_arg, cx_set *sets, char *msg, size_t msglen);

/* The set as a collection Bundle, subject first (malloc'd; NULL when out of memory). */
char *cx_bundle(const cx_set *set, size_t *len);

/* The store as a source: every current resource, whoever owns it (the rules see the context, the
 * caller sees only the report; the subject's own access is decided before). It reads and searches in
 * bulk (one st_search per call: _id in the ids, the reference parameter in the refs). */
cx_source cx_store_source(st_store *store);

#endif
