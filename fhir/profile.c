/*
 * fhir/profile.c — run-time profiles, extensions and terminology (see profile.h).
 *
 * Loading turns each StructureDefinition's differential into a tree keyed by
 * element id segments ("Patient.identifier:bsn.system" -> Patient >
 * identifier:bsn > system): a sliced element and its slices are siblings
 * with the same name. Validation walks that tree over the instance:
 *
 *   apply_children  for each constrained child: select the instance values,
 *                   check cardinality, check each value, recurse; for a
 *                   sliced element, sort its values into slices by the
 *                   discriminators and check each slice the same way
 *   check_value     fixed / pattern, type restriction, targetProfile,
 *                   required binding, invariants (FHIRPath)
 *
 * Extensions anywhere in a resource whose URL the registry defines are then
 * checked against their definition (check_extensions), once per resource.
 *
 * pf_check_invariants walks the same tree with a pf_invariants set: only the
 * elements that lead to a chosen invariant, and at each only those
 * invariants, so that its issues are pf_validate's for those keys.
 */
#include "fhir/profile.h"

#include <json-c/json.h>

#include "fhir/array.h"
#include "fhir/fhirpath.h"
#include "fhir/reference.h"
#include "fhir/report.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_NODE UINT32_MAX

/* ---- loaded definitions -------------------------------------------------- */

typedef struct pf_discriminator {
    char *type; /* "value", "pattern" (others are reported unsupported at load) */
    char *path; /* "system", "url", "coding.system", "$this" */
} pf_discriminator;

typedef struct pf_constraint {
    char *key, *human, *expression;
    bool is_error;
} pf_constraint;

typedef struct pf_elem {
    char *name;  /* id segment name: "identifier", "value[x]", "valueQuantity" */
    char *slice; /* slice name, NULL for the element itself */
    char *id;
    bool has_min, has_max;
    uint32_t min, max;
    char **types; /* allowed type codes, when the profile restricts them */
    size_t type_count, type_capacity;
    char **type_profiles; /* type.profile: for Extension, the extension's URL */
    size_t type_profile_count, type_profile_capacity;
    char **target_profiles; /* Reference targetProfile URLs */
    size_t target_count, target_capacity;
    json_object *fixed, *pattern; /* owned references */
    char *binding_valueset;       /* required bindings only */
    pf_discriminator *discriminators;
    size_t discriminator_count, discriminator_capacity;
    bool closed;
    pf_constraint *constraints;
    size_t constraint_count, constraint_capacity;
    struct pf_elem **children;
    size_t child_count, child_capacity;
} pf_elem;

struct pf_profile {
    char *url;
    char *type;             /* the constrained core type */
    char *base_url;         /* baseDefinition */
    const pf_profile *base; /* resolved base profile, NULL when the base is core */
    bool is_extension;
    bool is_modifier; /* an extension whose root says isModifier: it belongs in modifierExtension */
    char *contexts;   /* an extension's context of use: "type expression" lines, "" when none is given */
    pf_elem *root;
};

typedef struct pf_code {
    char *system, *code;
} pf_code;

typedef struct pf_valueset {
    char *url;
    json_object *definition; /* owned */
    pf_code *codes;
    size_t code_count, code_capacity;
    bool expanded;
} pf_valueset;

typedef struct pf_codesystem {
    char *url;
    json_object *definition; /* owned */
} pf_codesystem;

/* A logical model (kind "logical"): held for the tools that read it (JSON Schema, mappings), not a profile. */
struct pf_logical {
    char *url;
    json_object *definition; /* owned */
};

struct pf_registry {
    const fs_schema *schema;
    pf_profile **profiles;
    size_t profile_count, profile_capacity;
    bool sorted; /* profiles sorted by url (pf_registry_finish): pf_find searches by halves */
    pf_valueset **valuesets;
    size_t valueset_count, valueset_capacity;
    pf_codesystem **codesystems;
    size_t codesystem_count, codesystem_capacity;
    pf_logical **logicals;
    size_t logical_count, logical_capacity;
    fp_cache *expressions; /* the profiles' invariants, compiled on first use (thread-safe) */
};

/* Append item to a growable array (fhir/array.h). */
#define PUSH(arr, count, cap, item)                                                                     \
    do {                                                                                                \
        if (!fa_reserve(&(arr), &(cap), (count) + 1, sizeof *(arr)))                                    \
            abort(); /* out of memory while loading configuration: nothing sensible to continue with */ \
        (arr)[(count)++] = (item);                                                                      \
    } while (0)

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v;
    return (o && json_object_object_get_ex(o, key, &v)) ? v : NULL;
}

static size_t jlen(json_object *a)
{
    return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

/* Canonical URL without "|version". */
static char *canonical(const char *url)
{
    char *c = strdup(url);
    if (c)
        c[strcspn(c, "|")] = '\0';
    return c;
}

/* ---- registry ------------------------------------------------------------- */

pf_registry *pf_registry_new(const fs_schema *schema)
{
    pf_registry *r = calloc(1, sizeof *r);
    if (r) {
        r->schema = schema ? schema : fs_r4();
        r->expressions = fp_cache_new(r->schema);
    }
    return r;
}

static void free_elem(pf_elem *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->child_count; i++)
        free_elem(e->children[i]);
    free(e->children);
    for (size_t i = 0; i < e->type_count; i++)
        free(e->types[i]);
    free(e->types);
    for (size_t i = 0; i < e->type_profile_count; i++)
        free(e->type_profiles[i]);
    free(e->type_profiles);
    for (size_t i = 0; i < e->target_count; i++)
        free(e->target_profiles[i]);
    free(e->target_profiles);
    for (size_t i = 0; i < e->discriminator_count; i++) {
        free(e->discriminators[i].type);
        free(e->discriminators[i].path);
    }
    free(e->discriminators);
    for (size_t i = 0; i < e->constraint_count; i++) {
        free(e->constraints[i].key);
        free(e->constraints[i].human);
        free(e->constraints[i].expression);
    }
    free(e->constraints);
    json_object_put(e->fixed);
    json_object_put(e->pattern);
    free(e->binding_valueset);
    free(e->name);
    free(e->slice);
    free(e->id);
    free(e);
}

void pf_registry_free(pf_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->profile_count; i++) {
        pf_profile *p = r->profiles[i];
        free_elem(p->root);
        free(p->url);
        free(p->type);
        free(p->base_url);
        free(p->contexts);
        free(p);
    }
    free(r->profiles);
    for (size_t i = 0; i < r->valueset_count; i++) {
        pf_valueset *v = r->valuesets[i];
        for (size_t k = 0; k < v->code_count; k++) {
            free(v->codes[k].system);
            free(v->codes[k].code);
        }
        free(v->codes);
        json_object_put(v->definition);
        free(v->url);
        free(v);
    }
    free(r->valuesets);
    for (size_t i = 0; i < r->codesystem_count; i++) {
        json_object_put(r->codesystems[i]->definition);
        free(r->codesystems[i]->url);
        free(r->codesystems[i]);
    }
    free(r->codesystems);
    for (size_t i = 0; i < r->logical_count; i++) {
        json_object_put(r->logicals[i]->definition);
        free(r->logicals[i]->url);
        free(r->logicals[i]);
    }
    free(r->logicals);
    fp_cache_free(r->expressions);
    free(r);
}

size_t pf_registry_count(const pf_registry *r)
{
    return r->profile_count;
}
const char *pf_profile_url(const pf_profile *p)
{
    return p->url;
}
const char *pf_profile_type(const pf_profile *p)
{
    return p->type;
}

const char *pf_extension_contexts(const pf_profile *p)
{
    return p->contexts ? p->contexts : "";
}

bool pf_extension_is_modifier(const pf_profile *p)
{
    return p->is_modifier;
}

uint32_t pf_extension_max(const pf_profile *p)
{
    for (; p; p = p->base)
        if (p->root && p->root->has_max)
            return p->root->max;
    return UINT32_MAX;
}

static pf_registry *core_extensions;
static pthread_once_t core_extensions_once = PTHREAD_ONCE_INIT;

static void load_core_extensions(void)
{
    const fs_schema *s = fs_r4();
    pf_registry *r = pf_registry_new(s);
    oo_list issues;
    oo_list_init(&issues, 1);
    for (uint32_t i = 0; r && i < s->extension_def_count; i++)
        pf_registry_add(r, s->extension_defs[i].definition, strlen(s->extension_defs[i].definition),
                        s->extension_defs[i].url, &issues);
    if (r)
        pf_registry_finish(r, &issues);
    oo_list_free(&issues); /* a definition the checker cannot read is left out, not fatal */
    core_extensions = r;
}

const pf_registry *pf_core_extensions(void)
{
    pthread_once(&core_extensions_once, load_core_extensions);
    return core_extensions;
}

/* url[0..len) against a profile's url, in strcmp order. */
static int url_cmp(const char *url, size_t len, const pf_profile *p)
{
    int c = strncmp(url, p->url, len);
    return c ? c : p->url[len] ? -1 : 0;
}

static int profile_url_cmp(const void *a, const void *b)
{
    return strcmp((*(pf_profile *const *)a)->url, (*(pf_profile *const *)b)->url);
}

const pf_profile *pf_find(const pf_registry *r, const char *url)
{
    size_t len = strcspn(url, "|");
    if (r->sorted) { /* every extension of every resource is looked up here: 393 core definitions */
        size_t lo = 0, hi = r->profile_count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = url_cmp(url, len, r->profiles[mid]);
            if (!c)
                return r->profiles[mid];
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        return NULL;
    }
    for (size_t i = 0; i < r->profile_count; i++)
        if (strlen(r->profiles[i]->url) == len && !strncmp(r->profiles[i]->url, url, len))
            return r->profiles[i];
    return NULL;
}

const pf_logical *pf_find_logical(const pf_registry *r, const char *url)
{
    size_t len = strcspn(url, "|");
    for (size_t i = 0; i < r->logical_count; i++)
        if (strlen(r->logicals[i]->url) == len && !strncmp(r->logicals[i]->url, url, len))
            return r->logicals[i];
    return NULL;
}

size_t pf_logical_count(const pf_registry *r)
{
    return r->logical_count;
}

const char *pf_logical_url(const pf_logical *m)
{
    return m->url;
}

const pf_logical *pf_logical_at(const pf_registry *r, size_t i)
{
    return i < r->logical_count ? r->logicals[i] : NULL;
}

const json_object *pf_logical_definition(const pf_logical *m)
{
    return m->definition;
}

static pf_valueset *find_valueset(const pf_registry *r, const char *url)
{
    size_t len = strcspn(url, "|");
    for (size_t i = 0; i < r->valueset_count; i++)
        if (strlen(r->valuesets[i]->url) == len && !strncmp(r->valuesets[i]->url, url, len))
            return r->valuesets[i];
    return NULL;
}

static json_object *find_codesystem(const pf_registry *r, const char *url)
{
    for (size_t i = 0; i < r->codesystem_count; i++)
        if (!strcmp(r->codesystems[i]->url, url))
            return r->codesystems[i]->definition;
    return NULL;
}

/* ---- loading a StructureDefinition ----------------------------------------- */

/* The child of parent with this (name, slice), created when missing. */
static pf_elem *elem_child(pf_elem *parent, const char *name, size_t name_len, const char *slice, size_t slice_len)
{
    for (size_t i = 0; i < parent->child_count; i++) {
        pf_elem *c = parent->children[i];
        bool same_slice = slice ? (c->slice && strlen(c->slice) == slice_len && !strncmp(c->slice, slice, slice_len))
                                : c->slice == NULL;
        if (strlen(c->name) == name_len && !strncmp(c->name, name, name_len) && same_slice)
            return c;
    }
    pf_elem *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->name = strndup(name, name_len);
    c->slice = slice ? strndup(slice, slice_len) : NULL;
    PUSH(parent->children, parent->child_count, parent->child_capacity, c);
    return c;
}

/* Walk (creating) the tree along an element id: "Patient.identifier:bsn.system". */
static pf_elem *elem_for_id(pf_elem *root, const char *id)
{
    const char *dot = strchr(id, '.');
    if (!dot)
        return root;
    pf_elem *e = root;
    const char *seg = dot + 1;
    while (*seg) {
        size_t len = strcspn(seg, ".");
        const char *colon = memchr(seg, ':', len);
        size_t name_len = colon ? (size_t)(colon - seg) : len;
        const char *slice = colon ? colon + 1 : NULL;
        size_t slice_len = colon ? len - name_len - 1 : 0;
        /* re-slices ("a:b/c") are kept as their own slice name */
        e = elem_child(e, seg, name_len, slice, slice_len);
        seg += len;
        if (*seg == '.')
            seg++;
    }
    return e;
}

/* The value of the first property named prefix + "<Type>" (fixedUri, patternCodeableConcept). */
static json_object *prefixed_value(json_object *el, const char *prefix)
{
    size_t n = strlen(prefix);
    json_object_object_foreach(el, key, val)
    {
        if (!strncmp(key, prefix, n) && key[n] >= 'A' && key[n] <= 'Z')
            return json_object_get(val);
    }
    return NULL;
}

static void load_types(pf_elem *e, json_object *types)
{
    for (size_t i = 0; i < jlen(types); i++) {
        json_object *t = json_object_array_get_idx(types, i);
        const char *code = jstr(t, "code");
        if (!code)
            continue;
        PUSH(e->types, e->type_count, e->type_capacity, strdup(code));
        json_object *profiles = jget(t, "profile");
        for (size_t k = 0; k < jlen(profiles); k++) {
            PUSH(e->type_profiles, e->type_profile_count, e->type_profile_capacity,
                 canonical(json_object_get_string(json_object_array_get_idx(profiles, k))));
        }
        json_object *targets = jget(t, "targetProfile");
        for (size_t k = 0; k < jlen(targets); k++) {
            PUSH(e->target_profiles, e->target_count, e->target_capacity,
                 canonical(json_object_get_string(json_object_array_get_idx(targets, k))));
        }
    }
}

static bool load_slicing(pf_elem *e, json_object *slicing, const char *origin, oo_list *issues)
{
    json_object *discs = jget(slicing, "discriminator");
    const char *rules = jstr(slicing, "rules");
    e->closed = rules && !strcmp(rules, "closed");
    for (size_t i = 0; i < jlen(discs); i++) {
        json_object *d = json_object_array_get_idx(discs, i);
        const char *type = jstr(d, "type"), *path = jstr(d, "path");
        if (!type || !path)
            continue;
        if (strcmp(type, "value") && strcmp(type, "pattern")) {
            oo_add(issues, OO_ERROR, OO_NOT_SUPPORTED, e->id, 0, 0,
                   "%s: slicing discriminator type '%s' is not supported (value and pattern are)", origin, type);
            return false;
        }
        PUSH(e->discriminators, e->discriminator_count, e->discriminator_capacity,
             ((pf_discriminator){strdup(type), strdup(path)}));
    }
    return true;
}

static void load_constraints(pf_elem *e, json_object *constraints)
{
    for (size_t i = 0; i < jlen(constraints); i++) {
        json_object *c = json_object_array_get_idx(constraints, i);
        const char *key = jstr(c, "key"), *expr = jstr(c, "expression");
        if (!key || !expr)
            continue;
        const char *sev = jstr(c, "severity");
        PUSH(e->constraints, e->constraint_count, e->constraint_capacity,
             ((pf_constraint){strdup(key), dup_or_null(jstr(c, "human")), strdup(expr),
                              !sev || !strcmp(sev, "error")}));
    }
}

static bool load_element(pf_elem *root, json_object *el, const char *origin, oo_list *issues)
{
    const char *id = jstr(el, "id");
    if (!id)
        id = jstr(el, "path");
    if (!id) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: a differential element has neither id nor path",
               origin);
        return false;
    }
    pf_elem *e = elem_for_id(root, id);
    free(e->id);
    e->id = strdup(id);
    json_object *min = jget(el, "min");
    if (min) {
        e->has_min = true;
        e->min = (uint32_t)json_object_get_int(min);
    }
    const char *max = jstr(el, "max");
    if (max) {
        e->has_max = true;
        e->max = !strcmp(max, "*") ? UINT32_MAX : (uint32_t)strtoul(max, NULL, 10);
    }
    load_types(e, jget(el, "type"));
    e->fixed = prefixed_value(el, "fixed");
    e->pattern = prefixed_value(el, "pattern");
    json_object *binding = jget(el, "binding");
    const char *strength = jstr(binding, "strength");
    if (strength && !strcmp(strength, "required") && jstr(binding, "valueSet"))
        e->binding_valueset = canonical(jstr(binding, "valueSet"));
    load_constraints(e, jget(el, "constraint"));
    json_object *slicing = jget(el, "slicing");
    return !slicing || load_slicing(e, slicing, origin, issues);
}

/* A logical model is held as it is; its url must be new among the logical models. Takes ownership of sd. */
static bool add_logical_model(pf_registry *r, json_object *sd, const char *origin, oo_list *issues)
{
    const char *url = jstr(sd, "url");
    if (!url || pf_find_logical(r, url)) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: a logical model needs a url of its own", origin);
        json_object_put(sd);
        return false;
    }
    pf_logical *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->url = canonical(url);
    m->definition = sd;
    PUSH(r->logicals, r->logical_count, r->logical_capacity, m);
    return true;
}

/* StructureDefinition.context as "type expression" lines (malloc'd; "" when there is none). */
static char *contexts_of(json_object *sd)
{
    json_object *list = jget(sd, "context");
    size_t cap = 1;
    for (size_t i = 0; i < jlen(list); i++) {
        json_object *c = json_object_array_get_idx(list, i);
        cap += strlen(jstr(c, "type") ? jstr(c, "type") : "") +
               strlen(jstr(c, "expression") ? jstr(c, "expression") : "") + 2;
    }
    char *out = malloc(cap);
    if (!out)
        abort();
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < jlen(list); i++) {
        json_object *c = json_object_array_get_idx(list, i);
        const char *type = jstr(c, "type"), *expr = jstr(c, "expression");
        if (type && expr)
            len += (size_t)snprintf(out + len, cap - len, "%s %s\n", type, expr);
    }
    return out;
}

static bool add_structure_definition(pf_registry *r, json_object *sd, const char *origin, oo_list *issues)
{
    const char *url = jstr(sd, "url"), *type = jstr(sd, "type"), *derivation = jstr(sd, "derivation");
    const char *base = jstr(sd, "baseDefinition");
    if (!url || !type || !base || !derivation || strcmp(derivation, "constraint")) {
        oo_add(issues, OO_ERROR, OO_NOT_SUPPORTED, NULL, 0, 0,
               "%s: only profiles (derivation 'constraint' with url, type and baseDefinition) can be loaded", origin);
        return false;
    }
    if (pf_find(r, url)) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: a profile with url %s is already loaded", origin, url);
        return false;
    }
    if (!fs_type_by_name(r->schema, type, strlen(type))) {
        oo_add(issues, OO_ERROR, OO_NOT_SUPPORTED, NULL, 0, 0, "%s: unknown type '%s'", origin, type);
        return false;
    }
    json_object *elements = jget(jget(sd, "differential"), "element");
    if (!jlen(elements)) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: the profile has no differential", origin);
        return false;
    }
    pf_profile *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->url = canonical(url);
    p->type = strdup(type);
    p->base_url = canonical(base);
    p->is_extension = !strcmp(type, "Extension");
    p->contexts = contexts_of(sd);
    json_object *first = json_object_array_get_idx(elements, 0);
    p->is_modifier = p->is_extension && jget(first, "isModifier") && json_object_get_boolean(jget(first, "isModifier"));
    p->root = calloc(1, sizeof *p->root);
    p->root->name = strdup(type);
    p->root->id = strdup(type);
    bool ok = true;
    for (size_t i = 0; i < jlen(elements); i++)
        ok = load_element(p->root, json_object_array_get_idx(elements, i), origin, issues) && ok;
    PUSH(r->profiles, r->profile_count, r->profile_capacity, p);
    r->sorted = false;
    return ok;
}

bool pf_registry_add(pf_registry *r, const char *json, size_t len, const char *origin, oo_list *issues)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    json_tokener_free(tok);
    const char *rt = jstr(o, "resourceType");
    if (!o || !rt) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: not a FHIR resource", origin);
        json_object_put(o);
        return false;
    }
    bool ok = true;
    const char *kind = jstr(o, "kind");
    if (!strcmp(rt, "StructureDefinition") && kind && !strcmp(kind, "logical")) {
        ok = add_logical_model(r, o, origin, issues);
    } else if (!strcmp(rt, "StructureDefinition")) {
        ok = add_structure_definition(r, o, origin, issues);
        json_object_put(o);
    } else if (!strcmp(rt, "ValueSet") && jstr(o, "url")) {
        pf_valueset *v = calloc(1, sizeof *v);
        v->url = canonical(jstr(o, "url"));
        v->definition = o;
        PUSH(r->valuesets, r->valueset_count, r->valueset_capacity, v);
    } else if (!strcmp(rt, "CodeSystem") && jstr(o, "url")) {
        pf_codesystem *c = calloc(1, sizeof *c);
        c->url = canonical(jstr(o, "url"));
        c->definition = o;
        PUSH(r->codesystems, r->codesystem_count, r->codesystem_capacity, c);
    } else {
        json_object_put(o); /* other conformance resources are not used */
    }
    return ok;
}

/* ---- finishing: bases and expansions ------------------------------------------- */

static void add_code(pf_valueset *v, const char *system, const char *code)
{
    PUSH(v->codes, v->code_count, v->code_capacity, ((pf_code){strdup(system), strdup(code)}));
}

static void add_concepts(pf_valueset *v, const char *system, json_object *concepts)
{
    for (size_t i = 0; i < jlen(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        if (jstr(c, "code"))
            add_code(v, system, jstr(c, "code"));
        add_concepts(v, system, jget(c, "concept"));
    }
}

/* The concept with this code in a CodeSystem's concept tree, or NULL. */
static json_object *find_concept(json_object *concepts, const char *code)
{
    for (size_t i = 0; i < jlen(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        const char *have = jstr(c, "code");
        if (have && !strcmp(have, code))
            return c;
        json_object *below = find_concept(jget(c, "concept"), code);
        if (below)
            return below;
    }
    return NULL;
}

static bool expand(pf_registry *r, pf_valueset *v, oo_list *issues, int depth);

/* include.valueSet: the union of other value sets of the registry, expanded first. */
static bool include_valuesets(pf_registry *r, pf_valueset *v, json_object *urls, oo_list *issues, int depth)
{
    for (size_t i = 0; i < jlen(urls); i++) {
        const char *url = json_object_get_string(json_object_array_get_idx(urls, i));
        pf_valueset *other = url ? find_valueset(r, url) : NULL;
        if (!other || other == v || depth > 8 || (!other->expanded && !expand(r, other, issues, depth + 1))) {
            oo_add(issues, OO_WARNING, OO_NOT_FOUND, NULL, 0, 0,
                   "value set %s: included value set %s is not loaded or not expandable", v->url, url ? url : "?");
            return false;
        }
        for (size_t k = 0; k < other->code_count; k++)
            add_code(v, other->codes[k].system, other->codes[k].code);
    }
    return true;
}

/* include.filter: "concept is-a X" (X and below) or "descendent-of X" (below only) over a loaded CodeSystem. */
static bool include_filtered(pf_valueset *v, const char *system, json_object *cs, json_object *filters, oo_list *issues)
{
    json_object *f = json_object_array_get_idx(filters, 0);
    const char *property = jstr(f, "property"), *op = jstr(f, "op"), *value = jstr(f, "value");
    bool is_a = op && !strcmp(op, "is-a"), below = op && !strcmp(op, "descendent-of");
    json_object *top = value ? find_concept(jget(cs, "concept"), value) : NULL;
    if (jlen(filters) != 1 || !property || strcmp(property, "concept") || !(is_a || below) || !top) {
        oo_add(issues, OO_WARNING, OO_NOT_SUPPORTED, NULL, 0, 0,
               "value set %s: only one 'concept is-a' or 'descendent-of' filter on a known code is expanded", v->url);
        return false;
    }
    if (is_a)
        add_code(v, system, value);
    add_concepts(v, system, jget(top, "concept"));
    return true;
}

/* compose.exclude: listed concepts are taken out again. */
static void exclude_concepts(pf_valueset *v, json_object *excludes)
{
    for (size_t i = 0; i < jlen(excludes); i++) {
        json_object *ex = json_object_array_get_idx(excludes, i);
        const char *system = jstr(ex, "system");
        json_object *concepts = jget(ex, "concept");
        for (size_t k = 0; system && k < jlen(concepts); k++) {
            const char *code = jstr(json_object_array_get_idx(concepts, k), "code");
            for (size_t j = 0; code && j < v->code_count; j++)
                if (!strcmp(v->codes[j].system, system) && !strcmp(v->codes[j].code, code)) {
                    free(v->codes[j].system);
                    free(v->codes[j].code);
                    v->codes[j--] = v->codes[--v->code_count];
                }
        }
    }
}

/*
 * Expand from compose.include: listed concepts, a whole CodeSystem of the
 * registry, a concept is-a / descendent-of filter over one, or other value
 * sets of the registry; then compose.exclude's listed concepts are removed.
 */
static bool expand(pf_registry *r, pf_valueset *v, oo_list *issues, int depth)
{
    json_object *compose = jget(v->definition, "compose");
    json_object *includes = jget(compose, "include");
    for (size_t i = 0; i < jlen(includes); i++) {
        json_object *inc = json_object_array_get_idx(includes, i);
        const char *system = jstr(inc, "system");
        if (!system && jget(inc, "valueSet")) {
            if (!include_valuesets(r, v, jget(inc, "valueSet"), issues, depth))
                return false;
            continue;
        }
        if (!system || jget(inc, "valueSet")) {
            oo_add(issues, OO_WARNING, OO_NOT_SUPPORTED, NULL, 0, 0,
                   "value set %s: an include needs a system (or value sets alone) to be expanded", v->url);
            return false;
        }
        if (jget(inc, "concept") && !jget(inc, "filter")) {
            add_concepts(v, system, jget(inc, "concept"));
            continue;
        }
        json_object *cs = find_codesystem(r, system);
        if (!cs) {
            oo_add(issues, OO_WARNING, OO_NOT_FOUND, NULL, 0, 0,
                   "value set %s: code system %s is not loaded; the value set is not expanded", v->url, system);
            return false;
        }
        if (jget(inc, "filter")) {
            if (jget(inc, "concept") || !include_filtered(v, system, cs, jget(inc, "filter"), issues))
                return false;
            continue;
        }
        add_concepts(v, system, jget(cs, "concept"));
    }
    exclude_concepts(v, jget(compose, "exclude"));
    v->expanded = true;
    return true;
}

static pf_elem *find_child(const pf_elem *e, const char *name, const char *slice)
{
    for (size_t i = 0; i < e->child_count; i++) {
        pf_elem *c = e->children[i];
        if (!strcmp(c->name, name) && (slice ? c->slice && !strcmp(c->slice, slice) : !c->slice))
            return c;
    }
    return NULL;
}

/*
 * A derived profile may constrain slices its base defined ("identifier:bsn"
 * 1..1) without repeating the slicing: take the discriminators from the
 * base's element with the same id, creating the sliced element if needed.
 */
static void inherit_slicing(pf_elem *e, const pf_elem *base)
{
    for (size_t i = 0; i < e->child_count; i++) {
        pf_elem *c = e->children[i];
        if (c->slice && !find_child(e, c->name, NULL)) {
            pf_elem *sliced = elem_child(e, c->name, strlen(c->name), NULL, 0);
            (void)sliced; /* filled in by the loop below, which also visits it */
        }
    }
    for (size_t i = 0; i < e->child_count; i++) {
        pf_elem *c = e->children[i];
        const pf_elem *b = find_child(base, c->name, c->slice);
        if (!b)
            continue;
        if (!c->slice && !c->discriminator_count && b->discriminator_count) {
            c->discriminators = calloc(b->discriminator_count, sizeof *c->discriminators);
            for (size_t d = 0; d < b->discriminator_count; d++)
                c->discriminators[d] = (pf_discriminator){strdup(b->discriminators[d].type),
                                                          strdup(b->discriminators[d].path)};
            c->discriminator_count = c->discriminator_capacity = b->discriminator_count;
            c->closed = b->closed;
            if (!c->id)
                c->id = dup_or_null(b->id);
        }
        /* the fixed discriminator values of a slice live in the base too */
        if (c->slice)
            for (size_t k = 0; k < b->child_count; k++) {
                const pf_elem *bk = b->children[k];
                if ((bk->fixed || bk->pattern) && !find_child(c, bk->name, bk->slice)) {
                    pf_elem *copy = elem_child(c, bk->name, strlen(bk->name), NULL, 0);
                    copy->fixed = bk->fixed ? json_object_get(bk->fixed) : NULL;
                    copy->pattern = bk->pattern ? json_object_get(bk->pattern) : NULL;
                    copy->id = dup_or_null(bk->id);
                }
            }
        if (!c->type_profile_count && b->type_profile_count) {
            c->type_profiles = calloc(b->type_profile_count, sizeof *c->type_profiles);
            for (size_t k = 0; k < b->type_profile_count; k++)
                c->type_profiles[k] = strdup(b->type_profiles[k]);
            c->type_profile_count = c->type_profile_capacity = b->type_profile_count;
        }
        inherit_slicing(c, b);
    }
}

/*
 * Every extension and modifierExtension element is sliced by url in the base
 * definitions (Element.extension: discriminator value url, open). A
 * differential that names slices (Extension.extension:code) without
 * repeating the slicing still means that one: supply it.
 */
static void default_extension_slicing(pf_elem *e, int depth)
{
    if (depth > 32)
        return;
    for (size_t i = 0; i < e->child_count; i++) {
        pf_elem *s = e->children[i];
        if (!s->slice || (strcmp(s->name, "extension") && strcmp(s->name, "modifierExtension")))
            continue;
        pf_elem *sliced = elem_child(e, s->name, strlen(s->name), NULL, 0);
        if (!sliced->discriminator_count)
            PUSH(sliced->discriminators, sliced->discriminator_count, sliced->discriminator_capacity,
                 ((pf_discriminator){strdup("value"), strdup("url")}));
    }
    for (size_t i = 0; i < e->child_count; i++)
        default_extension_slicing(e->children[i], depth + 1);
}

bool pf_registry_finish(pf_registry *r, oo_list *issues)
{
    if (r->profile_count)
        qsort(r->profiles, r->profile_count, sizeof *r->profiles, profile_url_cmp);
    r->sorted = true;
    for (size_t i = 0; i < r->profile_count; i++)
        default_extension_slicing(r->profiles[i]->root, 0);
    bool ok = true;
    for (size_t i = 0; i < r->valueset_count; i++)
        if (!r->valuesets[i]->expanded)
            expand(r, r->valuesets[i], issues, 0);
    for (size_t i = 0; i < r->profile_count; i++) {
        pf_profile *p = r->profiles[i];
        const fs_type *core = fs_type_by_name(r->schema, strrchr(p->base_url, '/') + 1,
                                              strlen(strrchr(p->base_url, '/') + 1));
        bool core_base = !strncmp(p->base_url, "http://hl7.org/fhir/StructureDefinition/", 40) && core;
        if (core_base)
            continue;
        p->base = pf_find(r, p->base_url);
        if (!p->base || p->base == p) {
            oo_add(issues, OO_ERROR, OO_NOT_FOUND, NULL, 0, 0, "profile %s: base %s is neither core nor loaded", p->url,
                   p->base_url);
            p->base = NULL;
            ok = false;
        }
    }
    /* inherit slicing along base chains: one round per level of derivation (chains deeper than 4 are not expected) */
    for (int round = 0; round < 4; round++)
        for (size_t i = 0; i < r->profile_count; i++)
            if (r->profiles[i]->base)
                inherit_slicing(r->profiles[i]->root, r->profiles[i]->base->root);
    return ok;
}

/* ---- validation ------------------------------------------------------------------- */

typedef struct vctx {
    const pf_registry *r;
    fj_doc *doc;
    rp_reporter rep; /* the FHIRPath location of the walk, and where issues go */
    uint32_t resource;
    const char *profile_url;
    const char *profile_type; /* the type the profile being applied constrains: invariants start there */
    int depth;                /* guards against profiles whose extensions refer to each other */
    fp_arena *arena;          /* for invariants, made on first use */
    uint64_t *seen;           /* hashes of the issues reported so far: a constraint reached twice is reported once */
    size_t seen_count, seen_capacity;
    const pf_invariants *only; /* pf_check_invariants: these invariants alone, nothing else of the profile */
} vctx;

static const fj_node *N(const vctx *c, uint32_t i)
{
    return &c->doc->nodes[i];
}

/* ".name" onto the location (a dot even at its start, as the profile's paths are written); the mark for rp_pop. */
static size_t push_member(vctx *c, const char *name, size_t len)
{
    size_t mark = rp_push_text(&c->rep, ".", 1);
    rp_push_text(&c->rep, name, len);
    return mark;
}
static const char *S(const vctx *c, uint32_t i)
{
    return fj_str(c->doc, i);
}

/* An issue at the current location; every profile issue says which profile found it. */
static void report(vctx *c, uint32_t node, oo_severity sev, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void report(vctx *c, uint32_t node, oo_severity sev, const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* a derived profile that restates its base's slice reaches the same data-type profile twice */
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)node << 8) ^ (uint64_t)sev;
    for (const char *p = message; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = c->profile_url; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = rp_path(&c->rep); *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (size_t i = 0; i < c->seen_count; i++)
        if (c->seen[i] == h)
            return;
    PUSH(c->seen, c->seen_count, c->seen_capacity, h);
    rp_report(&c->rep, node, sev, code, "%s (profile %s)", message, c->profile_url);
}

/* ---- comparing instance values with fixed[x] / pattern[x] ---- */

static bool matches_json(const vctx *c, uint32_t node, json_object *want, bool exact);

static bool matches_object(const vctx *c, uint32_t node, json_object *want, bool exact)
{
    if (N(c, node)->type != FJ_OBJECT)
        return false;
    size_t want_count = 0;
    json_object_object_foreach(want, key, val)
    {
        want_count++;
        uint32_t got = fj_get(c->doc, node, key);
        if (got == NO_NODE || !matches_json(c, got, val, exact))
            return false;
    }
    return !exact || want_count == N(c, node)->len;
}

/* A pattern array matches when every wanted item is matched by some instance item. */
static bool matches_array(const vctx *c, uint32_t node, json_object *want, bool exact)
{
    if (N(c, node)->type != FJ_ARRAY)
        return false;
    size_t want_len = json_object_array_length(want);
    if (exact && want_len != N(c, node)->len)
        return false;
    for (size_t w = 0; w < want_len; w++) {
        json_object *wi = json_object_array_get_idx(want, w);
        bool found = false;
        uint32_t item = fj_first_child(node);
        for (uint32_t k = 0; k < N(c, node)->len && !found; k++, item = fj_next(c->doc, item))
            found = (!exact || k == w) && matches_json(c, item, wi, exact);
        if (!found)
            return false;
    }
    return true;
}

static bool matches_json(const vctx *c, uint32_t node, json_object *want, bool exact)
{
    const fj_node *n = N(c, node);
    switch (json_object_get_type(want)) {
    case json_type_object: return matches_object(c, node, want, exact);
    case json_type_array: return matches_array(c, node, want, exact);
    case json_type_string: {
        const char *w = json_object_get_string(want);
        return n->type == FJ_STRING && n->len == strlen(w) && !memcmp(S(c, node), w, n->len);
    }
    case json_type_boolean:
        return (n->type == FJ_TRUE && json_object_get_boolean(want)) ||
               (n->type == FJ_FALSE && !json_object_get_boolean(want));
    case json_type_int:
    case json_type_double: {
        if (n->type != FJ_NUMBER)
            return false;
        char text[64];
        snprintf(text, sizeof text, "%.*s", (int)(n->len < 63 ? n->len : 63), S(c, node));
        return strtod(text, NULL) == json_object_get_double(want);
    }
    default: return n->type == FJ_NULL;
    }
}

/* ---- selecting instance values ---- */

typedef struct selection {
    uint32_t items[256];  /* value nodes (array elements flattened) */
    uint32_t index[256];  /* position in the JSON array, or UINT32_MAX for a single value */
    const char *key[256]; /* the JSON key they came from */
    uint32_t key_len[256];
    uint32_t count;
    uint32_t companions; /* `_name` objects without a value beside them: primitives given by extensions alone */
    bool truncated;
} selection;

static bool choice_key_matches(const char *stem, size_t stem_len, const char *key, size_t len)
{
    return len > stem_len && !memcmp(key, stem, stem_len) && key[stem_len] >= 'A' && key[stem_len] <= 'Z';
}

static bool has_key(const vctx *c, uint32_t obj, const char *name, size_t len)
{
    uint32_t key = fj_first_child(obj);
    for (uint32_t m = 0; m < N(c, obj)->len; m++, key = fj_next(c->doc, key + 1))
        if (N(c, key)->len == len && !memcmp(S(c, key), name, len))
            return true;
    return false;
}

/* The values of obj whose key is `name` (a "[x]" name selects every choice variant). */
static void select_values(const vctx *c, uint32_t obj, const char *name, selection *sel)
{
    sel->count = 0;
    sel->companions = 0;
    sel->truncated = false;
    if (N(c, obj)->type != FJ_OBJECT)
        return;
    size_t name_len = strlen(name);
    bool choice = name_len > 3 && !strcmp(name + name_len - 3, "[x]");
    size_t stem_len = choice ? name_len - 3 : name_len;
    uint32_t key = fj_first_child(obj);
    for (uint32_t m = 0; m < N(c, obj)->len; m++, key = fj_next(c->doc, key + 1)) {
        const char *k = S(c, key);
        size_t len = N(c, key)->len;
        if (len > 1 && k[0] == '_' && N(c, key + 1)->type == FJ_OBJECT &&
            (choice ? choice_key_matches(name, stem_len, k + 1, len - 1)
                    : (len - 1 == name_len && !memcmp(k + 1, name, name_len))) &&
            !has_key(c, obj, k + 1, len - 1)) {
            sel->companions++; /* "_valueString": {"extension": [...]} is a value (ele-1 allows it) */
            continue;
        }
        bool hit = choice ? choice_key_matches(name, stem_len, k, len) : (len == name_len && !memcmp(k, name, len));
        if (!hit)
            continue;
        uint32_t val = key + 1;
        if (N(c, val)->type == FJ_ARRAY) {
            uint32_t item = fj_first_child(val);
            for (uint32_t i = 0; i < N(c, val)->len; i++, item = fj_next(c->doc, item)) {
                if (sel->count == 256) {
                    sel->truncated = true;
                    return;
                }
                sel->items[sel->count] = item;
                sel->index[sel->count] = i;
                sel->key[sel->count] = k;
                sel->key_len[sel->count++] = (uint32_t)len;
            }
        } else if (sel->count < 256) {
            sel->items[sel->count] = val;
            sel->index[sel->count] = UINT32_MAX;
            sel->key[sel->count] = k;
            sel->key_len[sel->count++] = (uint32_t)len;
        }
    }
}

/* The core type a choice key's suffix names ("DateTime" -> dateTime, "Quantity" -> Quantity). */
static const fs_type *suffix_type(const vctx *c, const char *suffix, size_t len)
{
    const fs_type *t = fs_type_by_name(c->r->schema, suffix, len);
    if (t || len == 0 || len > 63)
        return t;
    char lower[64];
    memcpy(lower, suffix, len);
    lower[0] = (char)(lower[0] | 0x20);
    return fs_type_by_name(c->r->schema, lower, len);
}

/* Path of a selected value: ".name[i]", or ".stem.ofType(type)" for a choice ("[x]") element. */
static size_t push_item(vctx *c, const pf_elem *e, const selection *sel, uint32_t i)
{
    size_t name_len = strlen(e->name);
    if (name_len > 3 && !strcmp(e->name + name_len - 3, "[x]")) {
        size_t stem = name_len - 3;
        const fs_type *t = suffix_type(c, sel->key[i] + stem, sel->key_len[i] - stem);
        if (t)
            return rp_push(&c->rep, ".%.*s.ofType(%s)", (int)stem, e->name, t->name);
    }
    size_t old = push_member(c, sel->key[i], sel->key_len[i]);
    if (sel->index[i] != UINT32_MAX)
        rp_push_index(&c->rep, sel->index[i]);
    return old;
}

/* ---- per-value checks ---- */

static bool code_in_registry_valueset(const pf_valueset *v, const char *system, size_t system_len, const char *code,
                                      size_t code_len)
{
    for (size_t i = 0; i < v->code_count; i++)
        if (strlen(v->codes[i].code) == code_len && !memcmp(v->codes[i].code, code, code_len) &&
            (!system || (strlen(v->codes[i].system) == system_len && !memcmp(v->codes[i].system, system, system_len))))
            return true;
    return false;
}

/* 1 in, 0 not in, -1 when the value set is neither in the registry nor in the core package. */
static int registry_code_in_valueset(const pf_registry *r, const char *url, const char *system, size_t system_len,
                                     const char *code, size_t code_len)
{
    const pf_valueset *v = find_valueset(r, url);
    if (v && v->expanded)
        return code_in_registry_valueset(v, system, system_len, code, code_len);
    const fs_valueset *core = fs_valueset_by_url(r->schema, url);
    if (core)
        return fs_valueset_contains(r->schema, core, system, system_len, code, code_len);
    return -1;
}

int pf_code_in_valueset(const pf_registry *r, const char *url, const char *system, size_t system_len, const char *code,
                        size_t code_len)
{
    return registry_code_in_valueset(r, url, system, system_len, code, code_len);
}

static int code_in_valueset(const vctx *c, const char *url, const char *system, size_t system_len, const char *code,
                            size_t code_len)
{
    return registry_code_in_valueset(c->r, url, system, system_len, code, code_len);
}

/* memberOf() in the profiles' invariants sees the registry's value sets, so a rule names its value set once. */
static int member_of_registry(void *registry, const char *url, const char *system, size_t system_len, const char *code,
                              size_t code_len)
{
    return registry_code_in_valueset(registry, url, system, system_len, code, code_len);
}

static int coding_in_valueset(const vctx *c, const char *url, uint32_t coding)
{
    uint32_t code = fj_get(c->doc, coding, "code"), system = fj_get(c->doc, coding, "system");
    if (code == NO_NODE || N(c, code)->type != FJ_STRING)
        return 0;
    bool has_system = system != NO_NODE && N(c, system)->type == FJ_STRING;
    return code_in_valueset(c, url, has_system ? S(c, system) : NULL, has_system ? N(c, system)->len : 0, S(c, code),
                            N(c, code)->len);
}

static void check_binding(vctx *c, const pf_elem *e, uint32_t v)
{
    const char *url = e->binding_valueset;
    int in = -1;
    const fj_node *n = N(c, v);
    if (n->type == FJ_STRING) {
        in = code_in_valueset(c, url, NULL, 0, S(c, v), n->len);
    } else if (n->type == FJ_OBJECT && fj_get(c->doc, v, "coding") != NO_NODE) {
        uint32_t codings = fj_get(c->doc, v, "coding");
        in = 0;
        if (N(c, codings)->type == FJ_ARRAY) {
            uint32_t item = fj_first_child(codings);
            for (uint32_t k = 0; k < N(c, codings)->len && in != 1; k++, item = fj_next(c->doc, item))
                in = coding_in_valueset(c, url, item);
        }
    } else if (n->type == FJ_OBJECT && fj_get(c->doc, v, "code") != NO_NODE) {
        in = coding_in_valueset(c, url, v);
    } else {
        return;
    }
    if (in == 0)
        report(c, v, OO_ERROR, OO_CODE_INVALID, "the code is not in the required value set %s", url);
    else if (in < 0)
        report(c, v, OO_WARNING, OO_NOT_FOUND, "value set %s is not available: binding not checked", url);
}

/* The resource type a profile URL stands for: a core type, or a loaded profile's type. */
static const char *target_type(const vctx *c, const char *url)
{
    const pf_profile *p = pf_find(c->r, url);
    if (p)
        return p->type;
    const char *slash = strrchr(url, '/');
    return slash ? slash + 1 : url;
}

/* A core resource type's definition, or a profile of the registry. */
static bool target_known(const vctx *c, const char *url)
{
    if (pf_find(c->r, url))
        return true;
    const char *core = "http://hl7.org/fhir/StructureDefinition/";
    size_t n = strlen(core);
    return !strncmp(url, core, n) && fs_type_by_name(c->r->schema, url + n, strlen(url + n));
}

static void check_target(vctx *c, const pf_elem *e, uint32_t v)
{
    uint32_t ref = N(c, v)->type == FJ_OBJECT ? fj_get(c->doc, v, "reference") : NO_NODE;
    if (ref == NO_NODE || N(c, ref)->type != FJ_STRING || S(c, ref)[0] == '#')
        return; /* contained or logical references carry no type to check here */
    fr_parts parts;
    if (!fr_parse(S(c, ref), N(c, ref)->len, &parts))
        return; /* urn:uuid: and the like: resolved elsewhere */
    const char *type_start = parts.type;
    size_t type_len = parts.type_len;
    for (size_t i = 0; i < e->target_count; i++) {
        if (!target_known(c, e->target_profiles[i])) {
            report(c, v, OO_WARNING, OO_NOT_FOUND, "target profile %s is not known: reference not checked",
                   e->target_profiles[i]);
            return;
        }
    }
    for (size_t i = 0; i < e->target_count; i++) {
        const char *want = target_type(c, e->target_profiles[i]);
        if (strlen(want) == type_len && !memcmp(want, type_start, type_len))
            return;
        if (!strcmp(want, "Resource"))
            return;
    }
    size_t old = rp_push(&c->rep, ".reference");
    report(c, ref, OO_ERROR, OO_STRUCTURE, "a reference to %.*s is not allowed here (allowed: %s%s)", (int)type_len,
           type_start, target_type(c, e->target_profiles[0]), e->target_count > 1 ? ", ..." : "");
    rp_pop(&c->rep, old);
}

/* For a choice element restricted by the profile: is the type the key names allowed? */
static void check_choice_type(vctx *c, const pf_elem *e, const char *key, size_t key_len, uint32_t v)
{
    size_t stem = strlen(e->name) - 3;
    const char *suffix = key + stem;
    size_t suffix_len = key_len - stem;
    for (size_t i = 0; i < e->type_count; i++) {
        const char *t = e->types[i];
        if (strlen(t) == suffix_len && (t[0] & ~0x20) == suffix[0] && !memcmp(t + 1, suffix + 1, suffix_len - 1))
            return;
    }
    const fs_type *t = suffix_type(c, suffix, suffix_len);
    report(c, v, OO_ERROR, OO_STRUCTURE, "the profile does not allow the type %.*s for %s", (int)suffix_len,
           t ? t->name : suffix, e->id);
}

/*
 * The FHIR type and schema element of a profile element, from its id
 * ("CarePlan.activity:x.detail" -> CarePlan > activity > detail; slice names
 * do not change the type), so that invariants on inner elements see typed
 * values (memberOf on a CodeableConcept, ofType, is). NULL type when the
 * element is a choice the profile does not narrow to one type.
 */
static void element_context(const fs_schema *schema, const char *profile_type, const pf_elem *e, const fs_type **type,
                            const fs_element **element)
{
    const fs_schema *s = schema ? schema : fs_r4();
    const fs_type *t = profile_type ? fs_type_by_name(s, profile_type, strlen(profile_type)) : NULL;
    const fs_element *el = t && t->root >= 0 ? &s->elements[t->root] : NULL;
    const char *seg = e->id ? strchr(e->id, '.') : NULL;
    while (seg && el) {
        seg++;
        size_t len = strcspn(seg, ".:");
        unsigned n;
        const fs_element *kids = fs_children(s, el, &n);
        const fs_type *choice = NULL;
        bool stem = len > 3 && !memcmp(seg + len - 3, "[x]", 3);
        el = kids ? fs_lookup(s, kids, n, seg, stem ? len - 3 : len, &choice) : NULL;
        if (stem && !el)
            for (unsigned k = 0; kids && k < n && !el; k++)
                if (strlen(kids[k].name) == len - 3 && !memcmp(kids[k].name, seg, len - 3))
                    el = &kids[k];
        t = choice                       ? choice
            : stem && e->type_count == 1 ? fs_type_by_name(s, e->types[0], strlen(e->types[0]))
            : el && el->type_count == 1  ? fs_element_type(s, el, 0)
                                         : NULL;
        seg = strchr(seg, '.');
    }
    *type = el ? t : NULL;
    *element = el;
}

/* ---- a subset of the invariants (pf_check_invariants) ---- */

/* One invariant of the subset: compiled, with the typed context it starts from, at creation. */
typedef struct pf_inv_entry {
    const pf_constraint *k;
    const fp_expr *expr; /* NULL: it does not compile (err says why) */
    fp_error err;
    const fs_type *type;
    const fs_element *element;
} pf_inv_entry;

struct pf_invariants {
    const pf_registry *r;
    const pf_profile *p;
    pf_inv_entry *entries;
    size_t entry_count, entry_capacity;
    const pf_elem **relevant; /* elements with a chosen invariant at or below them: the walk skips the rest */
    size_t relevant_count, relevant_capacity;
};

static const pf_inv_entry *inv_entry(const pf_invariants *s, const pf_constraint *k)
{
    for (size_t i = 0; i < s->entry_count; i++)
        if (s->entries[i].k == k)
            return &s->entries[i];
    return NULL;
}

static bool inv_relevant(const pf_invariants *s, const pf_elem *e)
{
    for (size_t i = 0; i < s->relevant_count; i++)
        if (s->relevant[i] == e)
            return true;
    return false;
}

static void inv_mark(pf_invariants *s, const pf_elem *e)
{
    if (!inv_relevant(s, e))
        PUSH(s->relevant, s->relevant_count, s->relevant_capacity, e);
}

static bool inv_key_chosen(const char *key, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(keys[i], key))
            return true;
    return false;
}

static bool inv_collect_profile(pf_invariants *s, const pf_profile *p, const char *const *keys, size_t n, int depth);

/* Collect the chosen invariants at and below e (of a profile on type `ptype`); true when there are any. */
static bool inv_collect(pf_invariants *s, const pf_elem *e, const char *ptype, const char *const *keys, size_t n,
                        int depth)
{
    bool any = false;
    for (size_t i = 0; i < e->constraint_count; i++) {
        const pf_constraint *k = &e->constraints[i];
        if (!inv_key_chosen(k->key, keys, n))
            continue;
        any = true;
        if (inv_entry(s, k))
            continue; /* a data-type profile reached from two elements */
        pf_inv_entry en = {.k = k};
        en.expr = fp_cache_get(s->r->expressions, k->expression, &en.err);
        element_context(s->r->schema, ptype, e, &en.type, &en.element);
        PUSH(s->entries, s->entry_count, s->entry_capacity, en);
    }
    for (size_t i = 0; i < e->child_count; i++) {
        const pf_elem *child = e->children[i];
        if (!inv_collect(s, child, ptype, keys, n, depth))
            continue;
        any = true;
        for (size_t j = 0; child->slice && j < e->child_count; j++) /* a slice is reached through its sliced element */
            if (!e->children[j]->slice && !strcmp(e->children[j]->name, child->name))
                inv_mark(s, e->children[j]);
    }
    bool is_extension = e->type_count && !strcmp(e->types[0], "Extension");
    for (size_t i = 0; i < e->type_profile_count && !is_extension; i++) {
        const pf_profile *tp = pf_find(s->r, e->type_profiles[i]);
        if (tp && !tp->is_extension && inv_collect_profile(s, tp, keys, n, depth + 1))
            any = true;
    }
    if (any)
        inv_mark(s, e);
    return any;
}

static bool inv_collect_profile(pf_invariants *s, const pf_profile *p, const char *const *keys, size_t n, int depth)
{
    if (depth > 8)
        return false; /* as apply_profile: profiles that refer to each other */
    bool base = p->base && inv_collect_profile(s, p->base, keys, n, depth + 1);
    return inv_collect(s, p->root, p->type, keys, n, depth) || base;
}

pf_invariants *pf_invariants_new(const pf_registry *r, const pf_profile *p, const char *const *keys, size_t n)
{
    pf_invariants *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->r = r;
    s->p = p;
    inv_collect_profile(s, p, keys, n, 0);
    return s;
}

void pf_invariants_free(pf_invariants *s)
{
    if (!s)
        return;
    free(s->entries);
    free(s->relevant);
    free(s);
}

size_t pf_invariants_count(const pf_invariants *s)
{
    return s->entry_count;
}

/* ---- invariants ---- */

/* Evaluate one invariant at v and report it when it fails; false when memory runs out. */
static bool check_one_constraint(vctx *c, const pf_constraint *k, const fp_expr *expr, const fp_error *compile_err,
                                 const fs_type *type, const fs_element *element, uint32_t v)
{
    if (!expr) {
        report(c, v, OO_ERROR, OO_PROCESSING, "invariant %s does not compile: %s", k->key, compile_err->message);
        return true;
    }
    if (!c->arena && !(c->arena = fp_arena_new()))
        return false;
    fp_env env;
    fp_env_init(&env, c->doc);
    env.schema = c->r->schema;
    env.member_of = member_of_registry;
    env.member_of_ctx = (void *)c->r;
    env.lenient = true;
    env.resource = c->resource;
    fp_collection out;
    fp_error err;
    if (!fp_evaluate_node(expr, &env, v, type, element, c->arena, &out, &err)) {
        report(c, v, OO_ERROR, OO_PROCESSING, "invariant %s could not be evaluated: %s", k->key, err.message);
    } else if (fp_truth_of(&out) == FP_FALSE) {
        report(c, v, k->is_error ? OO_ERROR : OO_WARNING, OO_INVARIANT, "%s: %s", k->key,
               k->human ? k->human : k->expression);
    }
    fp_arena_reset(c->arena);
    return true;
}

static void check_constraints(vctx *c, const pf_elem *e, uint32_t v)
{
    if (c->only) { /* compiled and typed when the subset was made */
        for (size_t i = 0; i < e->constraint_count; i++) {
            const pf_inv_entry *en = inv_entry(c->only, &e->constraints[i]);
            if (en && !check_one_constraint(c, en->k, en->expr, &en->err, en->type, en->element, v))
                return;
        }
        return;
    }
    const fs_type *type = NULL;
    const fs_element *element = NULL;
    if (e->constraint_count)
        element_context(c->r->schema, c->profile_type, e, &type, &element);
    for (size_t i = 0; i < e->constraint_count; i++) {
        const pf_constraint *k = &e->constraints[i];
        fp_error err;
        const fp_expr *expr = fp_cache_get(c->r->expressions, k->expression, &err);
        if (!check_one_constraint(c, k, expr, &err, type, element, v))
            return;
    }
}

static void apply_children(vctx *c, const pf_elem *e, uint32_t obj);
static void apply_profile(vctx *c, const pf_profile *p, uint32_t node);

/*
 * type.profile on an element that is not an extension names a data-type
 * profile (a profile on Identifier): the value must conform to it. Extension
 * profiles are checked by URL wherever the extension appears (check_extensions).
 */
static void apply_type_profiles(vctx *c, const pf_elem *e, uint32_t v)
{
    bool is_extension = e->type_count && !strcmp(e->types[0], "Extension");
    for (size_t i = 0; i < e->type_profile_count && !is_extension; i++) {
        const pf_profile *p = pf_find(c->r, e->type_profiles[i]);
        if (p && !p->is_extension)
            apply_profile(c, p, v);
        else if (!p)
            report(c, v, OO_WARNING, OO_NOT_FOUND, "data-type profile %s is not known: not checked",
                   e->type_profiles[i]);
    }
}

static void check_value(vctx *c, const pf_elem *e, const selection *sel, uint32_t i)
{
    uint32_t v = sel->items[i];
    if (c->only) { /* the chosen invariants alone: none of the value checks */
        check_constraints(c, e, v);
        if (N(c, v)->type == FJ_OBJECT) {
            apply_children(c, e, v);
            apply_type_profiles(c, e, v);
        }
        return;
    }
    size_t name_len = strlen(e->name);
    if (e->type_count && name_len > 3 && !strcmp(e->name + name_len - 3, "[x]"))
        check_choice_type(c, e, sel->key[i], sel->key_len[i], v);
    if (e->fixed && !matches_json(c, v, e->fixed, true))
        report(c, v, OO_ERROR, OO_VALUE, "the value must be exactly %s",
               json_object_to_json_string_ext(e->fixed, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    if (e->pattern && !matches_json(c, v, e->pattern, false))
        report(c, v, OO_ERROR, OO_VALUE, "the value must match the pattern %s",
               json_object_to_json_string_ext(e->pattern, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    if (e->binding_valueset)
        check_binding(c, e, v);
    if (e->target_count)
        check_target(c, e, v);
    check_constraints(c, e, v);
    if (N(c, v)->type == FJ_OBJECT) {
        apply_children(c, e, v);
        apply_type_profiles(c, e, v);
    }
}

/* ---- slicing ---- */

/* The element a discriminator path names below a slice ("system", "coding.system"). */
static const pf_elem *descend(const pf_elem *e, const char *path)
{
    while (e && *path) {
        size_t len = strcspn(path, ".");
        const pf_elem *next = NULL;
        for (size_t i = 0; i < e->child_count && !next; i++)
            if (!e->children[i]->slice && strlen(e->children[i]->name) == len &&
                !strncmp(e->children[i]->name, path, len))
                next = e->children[i];
        e = next;
        path += len;
        if (*path == '.')
            path++;
    }
    return e;
}

/* Does any value at `path` below node match `want`? Arrays on the way match if any item does. */
static bool value_at_path_matches(const vctx *c, uint32_t node, const char *path, json_object *want, bool exact)
{
    if (!*path || !strcmp(path, "$this"))
        return matches_json(c, node, want, exact);
    if (N(c, node)->type == FJ_ARRAY) {
        uint32_t item = fj_first_child(node);
        for (uint32_t k = 0; k < N(c, node)->len; k++, item = fj_next(c->doc, item))
            if (value_at_path_matches(c, item, path, want, exact))
                return true;
        return false;
    }
    if (N(c, node)->type != FJ_OBJECT)
        return false;
    size_t len = strcspn(path, ".");
    uint32_t child = fj_get_n(c->doc, node, path, len);
    const char *rest = path + len + (path[len] == '.');
    return child != NO_NODE && value_at_path_matches(c, child, rest, want, exact);
}

/* Does value v belong to slice s of the sliced element e? */
static bool in_slice(const vctx *c, const pf_elem *sliced, const pf_elem *s, uint32_t v)
{
    for (size_t d = 0; d < sliced->discriminator_count; d++) {
        const pf_discriminator *disc = &sliced->discriminators[d];
        bool exact = !strcmp(disc->type, "value");
        if (!strcmp(disc->path, "url") && s->type_profile_count) {
            /* extension slices are discriminated by the URL of their definition */
            uint32_t url = fj_get(c->doc, v, "url");
            if (url == NO_NODE || !fj_str_eq(c->doc, url, s->type_profiles[0]))
                return false;
            continue;
        }
        const pf_elem *target = descend(s, strcmp(disc->path, "$this") ? disc->path : "");
        json_object *want = target ? (target->fixed ? target->fixed : target->pattern) : NULL;
        if (!want)
            return false; /* a slice that does not fix the discriminator matches nothing */
        if (!value_at_path_matches(c, v, disc->path, want, exact && target->fixed != NULL))
            return false;
    }
    return true;
}

static bool cardinality_fits(const pf_elem *e, uint32_t count)
{
    return !(e->has_min && count < e->min) && !(e->has_max && count > e->max);
}

static void check_cardinality(vctx *c, uint32_t obj, const pf_elem *e, uint32_t count, const char *what)
{
    if (c->only)
        return;
    if (e->has_min && count < e->min) {
        size_t old = push_member(c, e->name, strlen(e->name));
        report(c, obj, OO_ERROR, OO_REQUIRED, "%s requires at least %u value%s, found %u", what, e->min,
               e->min == 1 ? "" : "s", count);
        rp_pop(&c->rep, old);
    }
    if (e->has_max && count > e->max) {
        size_t old = push_member(c, e->name, strlen(e->name));
        report(c, obj, OO_ERROR, OO_STRUCTURE, "%s allows at most %u value%s, found %u", what, e->max,
               e->max == 1 ? "" : "s", count);
        rp_pop(&c->rep, old);
    }
}

static void apply_slices(vctx *c, const pf_elem *parent, const pf_elem *sliced, uint32_t obj, const selection *sel)
{
    bool matched[256] = {false};
    for (size_t i = 0; i < parent->child_count; i++) {
        const pf_elem *s = parent->children[i];
        if (!s->slice || strcmp(s->name, sliced->name))
            continue;
        uint32_t count = 0;
        for (uint32_t k = 0; k < sel->count; k++) {
            if (matched[k] || !in_slice(c, sliced, s, sel->items[k]))
                continue;
            matched[k] = true;
            count++;
            if (c->only && !inv_relevant(c->only, s))
                continue; /* sorted into its slice all the same: the slices after it see the rest */
            size_t old = push_item(c, s, sel, k);
            check_value(c, s, sel, k);
            rp_pop(&c->rep, old);
        }
        if (c->only || cardinality_fits(s, count))
            continue;
        char what[200]; /* only for the message: formatting it for every slice of every value was 0.2% of a handover */
        snprintf(what, sizeof what, "slice '%s' of %s", s->slice, sliced->id ? sliced->id : sliced->name);
        check_cardinality(c, obj, s, count, what);
    }
    if (!sliced->closed || c->only)
        return;
    for (uint32_t k = 0; k < sel->count; k++)
        if (!matched[k]) {
            size_t old = push_item(c, sliced, sel, k);
            report(c, sel->items[k], OO_ERROR, OO_STRUCTURE,
                   "the value matches no slice of %s, and its slicing is closed", sliced->id);
            rp_pop(&c->rep, old);
        }
}

static void apply_children(vctx *c, const pf_elem *e, uint32_t obj)
{
    for (size_t i = 0; i < e->child_count; i++) {
        const pf_elem *child = e->children[i];
        if (child->slice)
            continue; /* handled with the sliced element */
        if (c->only && !inv_relevant(c->only, child))
            continue;
        selection sel;
        select_values(c, obj, child->name, &sel);
        check_cardinality(c, obj, child, sel.count + sel.companions, child->id ? child->id : child->name);
        for (uint32_t k = 0; k < sel.count; k++) {
            size_t old = push_item(c, child, &sel, k);
            check_value(c, child, &sel, k);
            rp_pop(&c->rep, old);
        }
        if (child->discriminator_count)
            apply_slices(c, e, child, obj, &sel);
    }
}

static void apply_profile(vctx *c, const pf_profile *p, uint32_t node)
{
    if (c->depth > 8)
        return;
    c->depth++;
    if (p->base)
        apply_profile(c, p->base, node);
    if (c->only && !inv_relevant(c->only, p->root)) {
        c->depth--;
        return;
    }
    const char *saved = c->profile_url, *saved_type = c->profile_type;
    c->profile_url = p->url;
    c->profile_type = p->type;
    check_constraints(c, p->root, node);
    apply_children(c, p->root, node);
    c->profile_url = saved;
    c->profile_type = saved_type;
    c->depth--;
}

/* Every extension below node whose URL the registry defines, checked against its definition. */
static void check_extensions(vctx *c, uint32_t node)
{
    const fj_node *n = N(c, node);
    if (n->type == FJ_ARRAY) {
        uint32_t item = fj_first_child(node);
        for (uint32_t k = 0; k < n->len; k++, item = fj_next(c->doc, item)) {
            size_t old = rp_push_index(&c->rep, k);
            check_extensions(c, item);
            rp_pop(&c->rep, old);
        }
        return;
    }
    if (n->type != FJ_OBJECT)
        return;
    /* nested resources (contained, Bundle entries) are checked when the validator reaches them */
    if (node != c->resource && fj_get(c->doc, node, "resourceType") != NO_NODE)
        return;
    uint32_t key = fj_first_child(node);
    for (uint32_t m = 0; m < n->len; m++, key = fj_next(c->doc, key + 1)) {
        uint32_t val = key + 1;
        if (N(c, val)->type != FJ_OBJECT && N(c, val)->type != FJ_ARRAY)
            continue;
        const char *k = S(c, key);
        size_t len = N(c, key)->len;
        bool is_ext = (len == 9 && !memcmp(k, "extension", 9)) || (len == 17 && !memcmp(k, "modifierExtension", 17));
        size_t old = push_member(c, k[0] == '_' ? k + 1 : k, k[0] == '_' ? len - 1 : len);
        if (is_ext && N(c, val)->type == FJ_ARRAY) {
            uint32_t item = fj_first_child(val);
            for (uint32_t i = 0; i < N(c, val)->len; i++, item = fj_next(c->doc, item)) {
                uint32_t url = N(c, item)->type == FJ_OBJECT ? fj_get(c->doc, item, "url") : NO_NODE;
                if (url == NO_NODE || N(c, url)->type != FJ_STRING)
                    continue;
                char url_text[512];
                snprintf(url_text, sizeof url_text, "%.*s", (int)(N(c, url)->len < 511 ? N(c, url)->len : 511),
                         S(c, url));
                const pf_profile *def = pf_find(c->r, url_text);
                size_t before = rp_push_index(&c->rep, i);
                if (def && def->is_extension)
                    apply_profile(c, def, item);
                rp_pop(&c->rep, before);
            }
        }
        check_extensions(c, val);
        rp_pop(&c->rep, old);
    }
}

static void ctx_init(vctx *c, const pf_registry *r, fj_doc *doc, uint32_t resource, const char *base_path, oo_list *out)
{
    memset(c, 0, sizeof *c);
    c->r = r;
    c->doc = doc;
    rp_init(&c->rep, doc, out);
    c->resource = resource;
    if (base_path && *base_path) {
        rp_push(&c->rep, "%s", base_path);
    } else {
        uint32_t rt = fj_get(doc, resource, "resourceType");
        if (rt != NO_NODE && doc->nodes[rt].type == FJ_STRING)
            rp_push(&c->rep, "%.*s", (int)doc->nodes[rt].len, fj_str(doc, rt));
    }
}

size_t pf_validate(const pf_registry *r, const pf_profile *p, fj_doc *doc, uint32_t resource, const char *base_path,
                   oo_list *out)
{
    size_t before = out->errors;
    vctx c;
    ctx_init(&c, r, doc, resource, base_path, out);
    c.profile_url = p->url;
    uint32_t rt = fj_get(doc, resource, "resourceType");
    if (!p->is_extension && (rt == NO_NODE || !fj_str_eq(doc, rt, p->type))) {
        report(&c, resource, OO_ERROR, OO_STRUCTURE, "the profile constrains %s, not this resource", p->type);
        free(c.seen);
        return out->errors - before;
    }
    apply_profile(&c, p, resource);
    fp_arena_free(c.arena);
    free(c.seen);
    return out->errors - before;
}

size_t pf_check_invariants(const pf_invariants *s, fj_doc *doc, uint32_t resource, const char *base_path, oo_list *out)
{
    size_t before = out->errors;
    vctx c;
    ctx_init(&c, s->r, doc, resource, base_path, out);
    c.profile_url = s->p->url;
    c.only = s;
    uint32_t rt = fj_get(doc, resource, "resourceType");
    if (!s->p->is_extension && (rt == NO_NODE || !fj_str_eq(doc, rt, s->p->type))) {
        report(&c, resource, OO_ERROR, OO_STRUCTURE, "the profile constrains %s, not this resource", s->p->type);
        free(c.seen);
        return out->errors - before;
    }
    if (s->entry_count)
        apply_profile(&c, s->p, resource);
    fp_arena_free(c.arena);
    free(c.seen);
    return out->errors - before;
}

size_t pf_validate_declared(const pf_registry *r, fj_doc *doc, uint32_t resource, const char *base_path, oo_list *out)
{
    return pf_validate_declared_plus(r, doc, resource, base_path, NULL, out);
}

size_t pf_validate_declared_plus(const pf_registry *r, fj_doc *doc, uint32_t resource, const char *base_path,
                                 const pf_profile *extra, oo_list *out)
{
    size_t before = out->errors;
    vctx c;
    ctx_init(&c, r, doc, resource, base_path, out);
    uint32_t meta = fj_get(doc, resource, "meta");
    uint32_t profiles = meta != NO_NODE && doc->nodes[meta].type == FJ_OBJECT ? fj_get(doc, meta, "profile") : NO_NODE;
    if (profiles != NO_NODE && doc->nodes[profiles].type == FJ_ARRAY) {
        uint32_t item = fj_first_child(profiles);
        for (uint32_t k = 0; k < doc->nodes[profiles].len; k++, item = fj_next(doc, item)) {
            if (doc->nodes[item].type != FJ_STRING)
                continue;
            char url[512];
            snprintf(url, sizeof url, "%.*s", (int)(doc->nodes[item].len < 511 ? doc->nodes[item].len : 511),
                     fj_str(doc, item));
            const pf_profile *p = pf_find(r, url);
            if (p) {
                c.profile_url = p->url;
                apply_profile(&c, p, resource);
            } else {
                size_t old = rp_push(&c.rep, ".meta.profile[%u]", k);
                rp_report(&c.rep, RP_NO_NODE, OO_WARNING, OO_NOT_FOUND, "profile %s is not known: not checked", url);
                rp_pop(&c.rep, old);
            }
        }
    }
    if (extra) { /* as if meta.profile named it last: one ctx, so what a declared profile reported is not repeated */
        c.profile_url = extra->url;
        apply_profile(&c, extra, resource);
    }
    c.profile_url = "(extension definitions)";
    check_extensions(&c, resource);
    fp_arena_free(c.arena);
    free(c.seen);
    return out->errors - before;
}
