/*
 * rules/pack.h — a versioned rule pack, loaded from data (prefix rl_).
 *
 * A pack (rules/packs/<contract year>/pack.json) lists per rule id: the
 * subject it is checked on (CarePlan, Organization, Encounter), severity,
 * source paragraph, the Dutch source sentence, messages in Dutch and English,
 * and its encoding: an invariant of a guide profile (profile url + key, on
 * the subject or on the resources an element of it refers to: "on":
 * "careTeam") and/or named checks (rules/checks.c, by name) with their data
 * (attestation demands, knowledge networks). Next contract year is a new
 * folder, not new code.
 *
 * The caller reads the file (rules/ does no I/O) and passes the buffer.
 * Memory: the pack owns everything (rl_pack_free); immutable once loaded.
 */
#ifndef RULES_PACK_H
#define RULES_PACK_H

#include <stdbool.h>
#include <stddef.h>

#include "fhir/outcome.h"

typedef struct rl_check_def rl_check_def; /* a named check: rules/checks.c */

/* Demands that apply when the provider offers care kind `when` (or has a remote-region exception: "exception:grz"). */
typedef struct rl_demands {
    char *when;
    char **items; /* attest: "a", or alternatives "a|b+c" (b and c together); networks: any one of them */
    size_t count;
} rl_demands;

typedef struct rl_rule {
    char *id, *subject, *source, *sentence, *message_nl, *message_en;
    bool error;                              /* severity: error (true) or warning */
    char *invariant_profile, *invariant_key; /* NULL when not an invariant */
    char *invariant_on;                      /* NULL: the subject; else an element of References */
    const rl_check_def *checks[4];
    size_t check_count;
    rl_demands *attest, *networks;
    size_t attest_count, network_count;
} rl_rule;

typedef struct rl_pack {
    char *version; /* "2026.1.0" */
    int contract_year;
    rl_rule *rules;
    size_t count;
} rl_pack;

/* Parse a pack from JSON. NULL (issues appended) when it is malformed or names an unknown check. */
rl_pack *rl_pack_load(const char *json, size_t len, const char *origin, oo_list *issues);
void rl_pack_free(rl_pack *p);
const rl_rule *rl_pack_find(const rl_pack *p, const char *id);

#endif
