/*
 * rules/bundle.h — the rule context over one parsed document (prefix rl_bundle_):
 * a Bundle whose entries are the subject and its context, or a single
 * resource with no context. The posted Bundle, a file and one line of an
 * NDJSON bulk file all use it.
 *
 * The subject is the first entry whose resourceType the rule pack checks
 * (CarePlan, Encounter, Organization: rl_bundle_subject with the pack's
 * subject types), so that a provider's Bundle lists the Organization first
 * and its stays after it.
 *
 * References resolve by fullUrl (urn:uuid:, absolute URLs) and by Type/id
 * against each entry's resourceType and id. Related resources are the
 * entries of that kind whose reference to the `of` resource resolves to it
 * (or, when `of` is not in the Bundle, is written as of_ref).
 *
 * Memory: the index is malloc'd (rl_bundle_free); the document is borrowed.
 */
#ifndef RULES_BUNDLE_H
#define RULES_BUNDLE_H

#include "rules/context.h"

typedef struct rl_entry {
    uint32_t node; /* the resource */
    const char *type, *id, *full_url;
    size_t type_len, id_len, full_url_len;
} rl_entry;

typedef struct rl_bundle {
    const fj_doc *doc;
    rl_entry *entries;
    size_t count;
} rl_bundle;

/* Index the document's root (a Bundle or one resource). False when the root is not a resource. */
bool rl_bundle_init(rl_bundle *b, const fj_doc *doc);
void rl_bundle_free(rl_bundle *b);

/*
 * The first entry whose resourceType is one of types[0..n) (NULL-free), or
 * node RL_NO_NODE when there is none.
 */
rl_res rl_bundle_subject(const rl_bundle *b, const char *const *types, size_t n);

/* A context over b for subject, checked on date. */
rl_context rl_bundle_context(const rl_bundle *b, rl_res subject, fdt_value date);

#endif
