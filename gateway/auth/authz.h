/*
 * gateway/auth/authz.h — who may do what through the generic FHIR REST API
 * (prefix az_). Pure decisions over values: no I/O, no state.
 *
 * The model:
 *   - every caller is an organisation (URA) with roles: hospital, gp, elv,
 *     grz, gzsp, insurer;
 *   - every stored resource has an owner (the organisation that created it)
 *     and access tags: the URAs it is addressed to (a Task's owner, a
 *     Communication's recipient, ...), computed when it is written;
 *   - an organisation reads what it owns or what is addressed to it, and
 *     changes only what it owns; the receiver of a Task may also update it
 *     (accept, reject, complete: the notified-pull workflow);
 *   - insurers get no clinical resources through this API at all (403):
 *     the compliance views of later issues give them what a decision needs.
 *   - someone else's resource is answered as if it did not exist (404), so
 *     that ids reveal nothing; a type an organisation may never touch is 403.
 */
#ifndef GATEWAY_AUTHZ_H
#define GATEWAY_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

enum {
    AZ_ROLE_HOSPITAL = 1 << 0,
    AZ_ROLE_GP = 1 << 1,
    AZ_ROLE_ELV = 1 << 2,
    AZ_ROLE_GRZ = 1 << 3,
    AZ_ROLE_GZSP = 1 << 4,
    AZ_ROLE_INSURER = 1 << 5,
};

#define AZ_CARE_ROLES (AZ_ROLE_HOSPITAL | AZ_ROLE_GP | AZ_ROLE_ELV | AZ_ROLE_GRZ | AZ_ROLE_GZSP)

typedef enum az_action { AZ_READ, AZ_SEARCH, AZ_HISTORY, AZ_CREATE, AZ_UPDATE, AZ_DELETE, AZ_VALIDATE } az_action;

typedef enum az_decision {
    AZ_ALLOW = 0,
    AZ_FORBIDDEN, /* 403: this organisation may never do this */
    AZ_HIDDEN     /* 404: not yours, and its existence is not revealed */
} az_decision;

typedef enum az_category { AZ_CLINICAL, AZ_ADMINISTRATIVE, AZ_FINANCIAL } az_category;

typedef struct az_caller {
    char ura[9];
    unsigned roles; /* AZ_ROLE_* */
} az_caller;

/* Roles from "elv,grz" (unknown words are ignored); 0 when none is known. */
unsigned az_parse_roles(const char *text);

/* Which kind of information a resource type carries. */
az_category az_category_of(const char *type);

/* The types of category `cat` (clinical: none, being every other type) into out[0..max); returns how many. */
size_t az_types_of(az_category cat, const char **out, size_t max);

/* May the caller use this interaction on this type at all? (type-level check, before any lookup) */
az_decision az_check_type(const az_caller *caller, const char *type, az_action action);

/*
 * May the caller use this interaction on this stored resource? `owner` is
 * its owner's URA; `tags` its access tags (URAs it is addressed to).
 */
az_decision az_check_resource(const az_caller *caller, const char *type, az_action action, const char *owner,
                              const char *const *tags, size_t tag_count);

/*
 * The elements whose references address a resource to an organisation
 * (FHIRPath from the resource root), for computing access tags at write
 * time; NULL-terminated, empty for types that address no one.
 */
const char *const *az_addressing_paths(const char *type);

#endif
