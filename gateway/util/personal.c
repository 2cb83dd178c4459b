/*
 * gateway/util/personal.c — the personal-data search parameters (see personal.h).
 *
 * Names, identifiers, addresses (without address-use, which only says
 * "home" or "work"), telecom and birth/death dates; not gender, active or
 * the references between them, which say nothing about a person without
 * the rows listed here.
 */
#include "gateway/util/personal.h"

#include <stdlib.h>
#include <string.h>

#define ADDRESS(type)                                                                                   \
    {type, "address"}, {type, "address-city"}, {type, "address-country"}, {type, "address-postalcode"}, \
    {                                                                                                   \
        type, "address-state"                                                                           \
    }
#define TELECOM(type)                 \
    {type, "email"}, {type, "phone"}, \
    {                                 \
        type, "telecom"               \
    }

/* Sorted by (type, param) with strcmp: pd_is_personal searches it. */
const pd_param pd_params[] = {
    {"Patient", "address"},
    {"Patient", "address-city"},
    {"Patient", "address-country"},
    {"Patient", "address-postalcode"},
    {"Patient", "address-state"},
    {"Patient", "birthdate"},
    {"Patient", "death-date"},
    {"Patient", "email"},
    {"Patient", "family"},
    {"Patient", "given"},
    {"Patient", "identifier"},
    {"Patient", "name"},
    {"Patient", "phone"},
    {"Patient", "phonetic"},
    {"Patient", "telecom"},
    ADDRESS("Person"),
    {"Person", "birthdate"},
    {"Person", "email"},
    {"Person", "identifier"},
    {"Person", "name"},
    {"Person", "phone"},
    {"Person", "phonetic"},
    {"Person", "telecom"},
    ADDRESS("Practitioner"),
    {"Practitioner", "email"},
    {"Practitioner", "family"},
    {"Practitioner", "given"},
    {"Practitioner", "identifier"},
    {"Practitioner", "name"},
    {"Practitioner", "phone"},
    {"Practitioner", "phonetic"},
    {"Practitioner", "telecom"},
    TELECOM("PractitionerRole"),
    ADDRESS("RelatedPerson"),
    {"RelatedPerson", "birthdate"},
    {"RelatedPerson", "email"},
    {"RelatedPerson", "identifier"},
    {"RelatedPerson", "name"},
    {"RelatedPerson", "phone"},
    {"RelatedPerson", "phonetic"},
    {"RelatedPerson", "telecom"},
};
const size_t pd_param_count = sizeof pd_params / sizeof *pd_params;

static int compare(const void *a, const void *b)
{
    const pd_param *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : strcmp(x->param, y->param);
}

bool pd_is_personal(const char *type, const char *param)
{
    if (!type || !param)
        return false;
    pd_param key = {type, param};
    return bsearch(&key, pd_params, pd_param_count, sizeof key, compare) != NULL;
}
