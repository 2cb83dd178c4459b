/*
 * fhir/schema.h — the FHIR R4 type system as compact, immutable tables
 * (prefix fs_).
 *
 * fhir/schemagen/schemagen.c reads the official StructureDefinitions,
 * ValueSets and CodeSystems of hl7.fhir.r4.examples@4.0.1 at build time and
 * writes these tables as C source (build/generated/fhir_schema_r4.c), so the
 * validator starts with no loading at all. Everything here is static const
 * data: shared between threads without locks, never freed.
 *
 * Shape: every type (primitive, complex, resource) has a root element; an
 * element's children sit contiguously in `elements`, sorted by JSON name, so
 * a property is found by binary search. A child element either has inline
 * children of its own (BackboneElement, or a contentReference resolved at
 * generation time) or takes its children from its single type's root.
 * A choice element ("value[x]") is stored once, under its stem ("value"),
 * with all allowed types; fs_child() resolves "valueQuantity" to it.
 *
 * Reference targets: an element with the type Reference also lists the
 * resource types it may point to (its targetProfile in the spec), as type
 * indices in `target_refs`. "Any resource" (Reference(Any), i.e. no
 * targetProfile or the profile Resource) is stored as the one type Resource,
 * the abstract root every resource type derives from; so a Reference element
 * always has at least one target, and an element without the type Reference
 * has none.
 */
#ifndef FHIR_SCHEMA_H
#define FHIR_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/primitive.h"

#define FS_UNBOUNDED UINT32_MAX
#define FS_NONE (-1)

typedef enum fs_kind { FS_PRIMITIVE, FS_COMPLEX, FS_RESOURCE } fs_kind;

typedef enum fs_strength {
    FS_BIND_NONE,
    FS_BIND_EXAMPLE,
    FS_BIND_PREFERRED,
    FS_BIND_EXTENSIBLE,
    FS_BIND_REQUIRED
} fs_strength;

enum {
    FS_EL_CHOICE = 1 << 0,   /* name is a choice stem: JSON key = name + TypeName */
    FS_EL_NO_EXT = 1 << 1,   /* XML attribute in the spec (Element.id, Extension.url): no "_name" companion */
    FS_EL_INLINE = 1 << 2,   /* children are inline (backbone / contentReference), not the type's */
    FS_EL_MODIFIER = 1 << 3, /* isModifier */
    FS_EL_SUMMARY = 1 << 4   /* isSummary */
};

typedef struct fs_element {
    const char *name;    /* JSON property name; the stem for a choice element */
    const char *path;    /* e.g. "CarePlan.activity.detail.status" (choice: "Observation.value[x]") */
    uint32_t min, max;   /* max == FS_UNBOUNDED for '*' */
    uint16_t type_first; /* allowed types: schema->type_refs[type_first .. +type_count) */
    uint16_t type_count;
    int32_t child_first; /* children: elements[child_first .. +child_count), sorted by name; FS_NONE if none */
    uint16_t child_count;
    uint8_t flags;             /* FS_EL_* */
    uint8_t binding_strength;  /* fs_strength */
    int32_t valueset;          /* index into schema->valuesets for an expandable binding, else FS_NONE */
    uint16_t constraint_first; /* invariants: schema->constraint_refs[constraint_first .. +constraint_count) */
    uint16_t constraint_count;
    uint16_t target_first; /* Reference targets: schema->target_refs[target_first .. +target_count) */
    uint16_t target_count; /* 0 unless a type is Reference; {Resource} = any (see fs_reference_targets) */
} fs_element;

/* An invariant (StructureDefinition element.constraint), shared by every element that lists it. */
typedef struct fs_constraint {
    const char *key;        /* "dom-3", "ele-1", "cpl-3" */
    bool is_error;          /* severity "error"; otherwise "warning" */
    const char *human;      /* the spec's description */
    const char *expression; /* FHIRPath */
    const char *source;     /* the type whose definition introduced it, e.g. "DomainResource" */
} fs_constraint;

typedef struct fs_type {
    const char *name; /* "Patient", "CodeableConcept", "dateTime" */
    fs_kind kind;
    bool is_abstract; /* Resource, DomainResource, Element, BackboneElement, ... */
    fprim_kind prim;  /* FPRIM_NONE unless kind == FS_PRIMITIVE */
    int32_t base;     /* type index of the base type, FS_NONE at the top */
    int32_t root;     /* element index of the root element */
} fs_type;

typedef struct fs_code {
    const char *system;
    const char *code;
} fs_code;

typedef struct fs_valueset {
    const char *url;     /* canonical without |version */
    uint32_t code_first; /* codes[code_first .. +code_count), sorted by code then system */
    uint32_t code_count;
} fs_valueset;

typedef enum fs_search_kind {
    FS_SEARCH_NUMBER,
    FS_SEARCH_DATE,
    FS_SEARCH_STRING,
    FS_SEARCH_TOKEN,
    FS_SEARCH_REFERENCE,
    FS_SEARCH_COMPOSITE,
    FS_SEARCH_QUANTITY,
    FS_SEARCH_URI,
    FS_SEARCH_SPECIAL
} fs_search_kind;

/* A search parameter of the core spec, one row per base resource type ("Resource" for _id etc.). */
typedef struct fs_search_param {
    const char *resource; /* base type: "CarePlan", or "Resource" for the ones every type has */
    const char *code;     /* the name in a query: "status", "_lastUpdated" */
    fs_search_kind kind;
    const char *expression; /* FHIRPath, reduced to the union parts that apply to `resource` */
    const char *url;        /* canonical of the SearchParameter */
} fs_search_param;

/*
 * A core extension definition (StructureDefinition of type Extension),
 * reduced to what fhir/profile.c reads (url, context, differential without
 * its prose), as JSON: the validator loads them into a registry on first use.
 */
typedef struct fs_extension_def {
    const char *url;
    const char *definition; /* JSON */
} fs_extension_def;

typedef struct fs_schema {
    const char *fhir_version;
    const fs_type *types; /* sorted by name */
    uint32_t type_count;
    const fs_element *elements;
    uint32_t element_count;
    const uint16_t *type_refs;
    uint32_t type_ref_count;
    const fs_valueset *valuesets; /* sorted by url */
    uint32_t valueset_count;
    const fs_code *codes;
    uint32_t code_count;
    const fs_constraint *constraints; /* unique (key, expression, severity) */
    uint32_t constraint_count;
    const uint16_t *constraint_refs;
    uint32_t constraint_ref_count;
    const fs_search_param *search_params; /* sorted by (resource, code) */
    uint32_t search_param_count;
    const uint16_t *target_refs; /* type indices, sorted within each element's run; runs are shared */
    uint32_t target_ref_count;
    const fs_extension_def *extension_defs; /* sorted by url */
    uint32_t extension_def_count;
} fs_schema;

/* The generated FHIR R4 (4.0.1) schema. */
const fs_schema *fs_r4(void);

/* Type by name (exact, case-sensitive), or NULL. */
const fs_type *fs_type_by_name(const fs_schema *s, const char *name, size_t len);
/* Type of an element's i-th allowed type. */
static inline const fs_type *fs_element_type(const fs_schema *s, const fs_element *e, unsigned i)
{
    return &s->types[s->type_refs[e->type_first + i]];
}

/* The children of an element (inline, or those of its single type); count set in *n. */
const fs_element *fs_children(const fs_schema *s, const fs_element *e, unsigned *n);

/*
 * The child of `parent` that JSON property key[0..len) names. For a choice
 * element the type the suffix selects is returned in *choice_type (else NULL).
 * Returns NULL for an unknown property (including a wrong choice suffix).
 */
const fs_element *fs_child(const fs_schema *s, const fs_element *parent, const char *key, size_t len,
                           const fs_type **choice_type);

/* The same lookup in a block of sibling elements (as fs_children returns them). */
const fs_element *fs_lookup(const fs_schema *s, const fs_element *kids, unsigned n, const char *key, size_t len,
                            const fs_type **choice_type);

/*
 * The resource types a Reference element (or a choice element with the type
 * Reference, e.g. Extension.value[x]) may point to: *n indices into
 * s->types, sorted by name, pointing into the static tables (never freed).
 * "Any" is the single index of the abstract type Resource. An element
 * without the type Reference gives NULL and *n == 0. For messages:
 * s->types[targets[i]].name spells "Reference(Patient | Group)".
 */
const uint16_t *fs_reference_targets(const fs_schema *s, const fs_element *e, unsigned *n);

/* Does a Reference element accept any resource type (Reference(Any))? False when it is not a Reference element. */
bool fs_reference_allows_any(const fs_schema *s, const fs_element *e);

/*
 * May element `e` refer to a resource of type type_name[0..len) (e.g. the
 * type of a literal reference "Patient/1")? True when the name is a
 * concrete resource type and `e` lists it, or lists a type it derives from
 * (Resource: any). False for an unknown, abstract or non-resource type name
 * even when `e` allows any, and for an element that is not a Reference.
 */
bool fs_reference_target_allowed(const fs_schema *s, const fs_element *e, const char *type_name, size_t len);

/* The search parameter `code` of resource type `resource` (or of every resource), or NULL. */
const fs_search_param *fs_search_param_find(const fs_schema *s, const char *resource, const char *code);
/* All search parameters of a resource type: *n rows starting at the returned one (those of "Resource" not included). */
const fs_search_param *fs_search_params_of(const fs_schema *s, const char *resource, unsigned *n);

/* Value set by canonical URL (a "|version" suffix is ignored), or NULL. */
const fs_valueset *fs_valueset_by_url(const fs_schema *s, const char *url);
/* Membership: system may be NULL (a bare `code` element: any system matches). */
bool fs_valueset_contains(const fs_schema *s, const fs_valueset *vs, const char *system, size_t system_len,
                          const char *code, size_t code_len);

#endif
