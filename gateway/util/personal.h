/*
 * gateway/util/personal.h — which search index rows hold personal data (prefix pd_).
 *
 * One data table of (resource type, search parameter) pairs whose values
 * identify or describe a person: names, person identifiers (BSN, ...),
 * addresses, telecom, birth and death dates of Patient, Practitioner,
 * RelatedPerson and Person, and the contact details of PractitionerRole.
 * The indexer (gateway/search) marks every row of such a parameter as
 * personal when it makes it; the store (gateway/store) records the mark
 * and marks the rows it already held when its schema gained the column.
 * Encryption at rest is to cover exactly the rows so marked.
 *
 * Changing the table: the indexer follows at once; rows already stored
 * keep their mark until rewritten, so a pair added later needs a store
 * migration that marks existing rows again (sql_migration: the marking is
 * idempotent and uses this table as it then is). See docs/schema.md.
 *
 * Memory: static data; nothing to free. Thread-safe.
 */
#ifndef GATEWAY_PERSONAL_H
#define GATEWAY_PERSONAL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pd_param {
    const char *type;  /* resource type: "Patient" */
    const char *param; /* search parameter code: "name" */
} pd_param;

/* The table, sorted by (type, param). */
extern const pd_param pd_params[];
extern const size_t pd_param_count;

/* Do the rows of search parameter `param` of resource type `type` hold personal data? */
bool pd_is_personal(const char *type, const char *param);

#endif
