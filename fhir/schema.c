/*
 * fhir/schema.c — lookups over the generated FHIR R4 tables (see schema.h).
 * All functions are pure reads of static data.
 */
#include "fhir/schema.h"

#include <string.h>

/* strcmp between a NUL-terminated name and a counted key. Written out rather than strncmp: the names are
 * short and most compares of a binary search end at the first byte, where a library call costs more than
 * the compare (the validator looks up every member of every document this way). */
static inline int name_cmp(const char *name, const char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)name[i], b = (unsigned char)key[i];
        if (a != b)
            return a < b ? -1 : 1; /* a NUL in name ends it first: name sorts before the longer key */
    }
    return name[len] ? 1 : 0;
}

const fs_type *fs_type_by_name(const fs_schema *s, const char *name, size_t len)
{
    uint32_t lo = 0, hi = s->type_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(s->types[mid].name, name, len);
        if (c == 0)
            return &s->types[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const fs_element *fs_children(const fs_schema *s, const fs_element *e, unsigned *n)
{
    if (!(e->flags & FS_EL_INLINE) && e->child_first == FS_NONE && e->type_count == 1) {
        /* A data-type element: its children are those of the type's root. */
        const fs_element *root = &s->elements[fs_element_type(s, e, 0)->root];
        if (root != e)
            return fs_children(s, root, n);
    }
    if (e->child_first == FS_NONE) {
        *n = 0;
        return NULL;
    }
    *n = e->child_count;
    return &s->elements[e->child_first];
}

/*
 * A choice key is stem + type name with its first letter upper-cased:
 * "valueQuantity", "valueDateTime", "deceasedBoolean".
 */
static const fs_type *choice_suffix_type(const fs_schema *s, const fs_element *e, const char *suffix, size_t len)
{
    if (len == 0 || suffix[0] < 'A' || suffix[0] > 'Z')
        return NULL;
    for (unsigned i = 0; i < e->type_count; i++) {
        const fs_type *t = fs_element_type(s, e, i);
        const char *name = t->name;
        if (strlen(name) != len)
            continue;
        char first = (char)(name[0] >= 'a' && name[0] <= 'z' ? name[0] - 32 : name[0]);
        if (first == suffix[0] && !strncmp(name + 1, suffix + 1, len - 1))
            return t;
    }
    return NULL;
}

const fs_element *fs_child(const fs_schema *s, const fs_element *parent, const char *key, size_t len,
                           const fs_type **choice_type)
{
    unsigned n;
    const fs_element *kids = fs_children(s, parent, &n);
    return fs_lookup(s, kids, n, key, len, choice_type);
}

const fs_element *fs_lookup(const fs_schema *s, const fs_element *kids, unsigned n, const char *key, size_t len,
                            const fs_type **choice_type)
{
    *choice_type = NULL;
    /* Exact name first (binary search: children are sorted by name). */
    unsigned lo = 0, hi = n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        int c = name_cmp(kids[mid].name, key, len);
        if (c == 0)
            return (kids[mid].flags & FS_EL_CHOICE) ? NULL : &kids[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* A choice stem is a strict prefix of the key: it sorts just before where the key would be. */
    for (unsigned i = lo; i-- > 0;) {
        size_t stem = strlen(kids[i].name);
        if (stem >= len || strncmp(kids[i].name, key, stem)) {
            if (kids[i].name[0] != key[0])
                break;
            continue;
        }
        if (!(kids[i].flags & FS_EL_CHOICE))
            continue;
        const fs_type *t = choice_suffix_type(s, &kids[i], key + stem, len - stem);
        if (t) {
            *choice_type = t;
            return &kids[i];
        }
    }
    return NULL;
}

const uint16_t *fs_reference_targets(const fs_schema *s, const fs_element *e, unsigned *n)
{
    *n = e->target_count;
    return e->target_count ? &s->target_refs[e->target_first] : NULL;
}

/* Is the type at index `type` among an element's targets? The runs are short (at most a dozen): a linear scan. */
static bool targets_list(const fs_schema *s, const fs_element *e, int32_t type)
{
    unsigned n;
    const uint16_t *targets = fs_reference_targets(s, e, &n);
    for (unsigned i = 0; i < n; i++)
        if (targets[i] == type)
            return true;
    return false;
}

bool fs_reference_allows_any(const fs_schema *s, const fs_element *e)
{
    const fs_type *resource = fs_type_by_name(s, "Resource", 8);
    return resource && targets_list(s, e, (int32_t)(resource - s->types));
}

bool fs_reference_target_allowed(const fs_schema *s, const fs_element *e, const char *type_name, size_t len)
{
    const fs_type *t = fs_type_by_name(s, type_name, len);
    if (!t || t->kind != FS_RESOURCE || t->is_abstract)
        return false;
    /* A listed base type admits its descendants: Resource (any), and DomainResource should a list name it. */
    for (int32_t i = (int32_t)(t - s->types); i != FS_NONE; i = s->types[i].base)
        if (targets_list(s, e, i))
            return true;
    return false;
}

const fs_valueset *fs_valueset_by_url(const fs_schema *s, const char *url)
{
    size_t len = strcspn(url, "|");
    uint32_t lo = 0, hi = s->valueset_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(s->valuesets[mid].url, url, len);
        if (c == 0)
            return &s->valuesets[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool fs_valueset_contains(const fs_schema *s, const fs_valueset *vs, const char *system, size_t system_len,
                          const char *code, size_t code_len)
{
    const fs_code *codes = &s->codes[vs->code_first];
    uint32_t lo = 0, hi = vs->code_count;
    while (lo < hi) { /* first entry with this code */
        uint32_t mid = lo + (hi - lo) / 2;
        if (name_cmp(codes[mid].code, code, code_len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i < vs->code_count && name_cmp(codes[i].code, code, code_len) == 0; i++)
        if (!system || name_cmp(codes[i].system, system, system_len) == 0)
            return true;
    return false;
}

static int search_cmp(const fs_search_param *p, const char *resource, const char *code)
{
    int c = strcmp(p->resource, resource);
    return c ? c : (code ? strcmp(p->code, code) : 0);
}

/* First row with p->resource >= resource (and code >= code when given). */
static uint32_t search_lower_bound(const fs_schema *s, const char *resource, const char *code)
{
    uint32_t lo = 0, hi = s->search_param_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->search_params[mid].resource, resource);
        if (!c && code)
            c = strcmp(s->search_params[mid].code, code);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const fs_search_param *fs_search_param_find(const fs_schema *s, const char *resource, const char *code)
{
    const char *bases[2] = {resource, "Resource"};
    for (int b = 0; b < 2; b++) {
        uint32_t i = search_lower_bound(s, bases[b], code);
        if (i < s->search_param_count && search_cmp(&s->search_params[i], bases[b], code) == 0)
            return &s->search_params[i];
    }
    return NULL;
}

const fs_search_param *fs_search_params_of(const fs_schema *s, const char *resource, unsigned *n)
{
    uint32_t first = search_lower_bound(s, resource, NULL), last = first;
    while (last < s->search_param_count && !strcmp(s->search_params[last].resource, resource))
        last++;
    *n = last - first;
    return *n ? &s->search_params[first] : NULL;
}
