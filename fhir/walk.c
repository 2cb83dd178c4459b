/*
 * fhir/walk.c — typed walk over a resource (see walk.h).
 *
 * One walker serves both entry points: fw_walk_resource sets `visit`
 * (primitives), fw_walk_references sets `visit_ref` (Reference objects);
 * the other callback is NULL and skipped.
 */
#include "fhir/walk.h"

#include <string.h>

typedef struct walker {
    const fs_schema *s;
    const fj_doc *doc;
    fw_visit_fn visit;         /* may be NULL */
    fw_visit_ref_fn visit_ref; /* may be NULL */
    void *ctx;
    bool companions; /* walk primitive extensions ("_status"): they may hold References */
} walker;

static void walk_object(const walker *w, uint32_t obj, const fs_element *parent);
static bool walk_resource(const walker *w, uint32_t resource);

bool fw_is_literal_reference(const fs_element *element)
{
    return element && !strcmp(element->path, "Reference.reference");
}

/* A value of `element` (of `type`): recurse into objects, visit primitives. */
static void walk_value(const walker *w, uint32_t v, const fs_element *element, const fs_type *type)
{
    uint8_t jt = w->doc->nodes[v].type;
    if (jt == FJ_ARRAY || jt == FJ_NULL)
        return;
    if (type && type->kind == FS_PRIMITIVE) {
        if (jt != FJ_OBJECT && w->visit)
            w->visit(w->ctx, w->doc, v, element, type);
        return;
    }
    if (jt != FJ_OBJECT)
        return;
    if (type && type->kind == FS_RESOURCE) { /* contained, Bundle.entry.resource, Parameters.parameter.resource */
        walk_resource(w, v);
        return;
    }
    /* Before its members: a Reference can hold another (identifier.assigner, extensions). */
    if (type && w->visit_ref && !strcmp(type->name, "Reference"))
        w->visit_ref(w->ctx, w->doc, v, element);
    /* a backbone element has its children inline; a data type takes its type's */
    const fs_element *parent = (element->flags & FS_EL_INLINE) || !type ? element : &w->s->elements[type->root];
    walk_object(w, v, parent);
}

/*
 * A primitive's companion ("_status": {"extension": [...]}, or an array of
 * them beside a repeating primitive, null where an item has none): Element
 * content, walked from the primitive type's root (children id, extension).
 */
static void walk_companion(const walker *w, uint32_t key, const fs_element *parent)
{
    const fs_type *choice = NULL;
    const fs_element *child = fs_child(w->s, parent, fj_str(w->doc, key) + 1, w->doc->nodes[key].len - 1, &choice);
    const fs_type *type = choice ? choice : child && child->type_count == 1 ? fs_element_type(w->s, child, 0) : NULL;
    if (!type || type->kind != FS_PRIMITIVE)
        return;
    const fs_element *root = &w->s->elements[type->root];
    uint32_t v = key + 1;
    bool array = w->doc->nodes[v].type == FJ_ARRAY;
    uint32_t count = array ? w->doc->nodes[v].len : 1, item = array ? v + 1 : v;
    for (uint32_t i = 0; i < count; i++, item = fj_next(w->doc, item))
        if (w->doc->nodes[item].type == FJ_OBJECT)
            walk_object(w, item, root);
}

static void walk_member(const walker *w, uint32_t key, const fs_element *parent)
{
    const char *name = fj_str(w->doc, key);
    size_t len = w->doc->nodes[key].len;
    if (len && name[0] == '_') {
        /* primitive extensions: Element content, no primitive values of their own */
        if (w->companions && len > 1)
            walk_companion(w, key, parent);
        return;
    }
    const fs_type *choice = NULL;
    const fs_element *child = fs_child(w->s, parent, name, len, &choice);
    if (!child)
        return;
    const fs_type *type = choice ? choice : child->type_count == 1 ? fs_element_type(w->s, child, 0) : NULL;
    uint32_t v = key + 1;
    if (w->doc->nodes[v].type != FJ_ARRAY) {
        walk_value(w, v, child, type);
        return;
    }
    uint32_t item = v + 1;
    for (uint32_t i = 0; i < w->doc->nodes[v].len; i++, item = fj_next(w->doc, item))
        walk_value(w, item, child, type);
}

static void walk_object(const walker *w, uint32_t obj, const fs_element *parent)
{
    uint32_t key = obj + 1;
    for (uint32_t m = 0; m < w->doc->nodes[obj].len; m++, key = fj_next(w->doc, key + 1))
        walk_member(w, key, parent);
}

static bool walk_resource(const walker *w, uint32_t resource)
{
    const fj_doc *doc = w->doc;
    if (doc->nodes[resource].type != FJ_OBJECT)
        return false;
    uint32_t rt = fj_get(doc, resource, "resourceType");
    if (rt == UINT32_MAX || doc->nodes[rt].type != FJ_STRING)
        return false;
    const fs_type *t = fs_type_by_name(w->s, fj_str(doc, rt), doc->nodes[rt].len);
    if (!t || t->kind != FS_RESOURCE)
        return false;
    walk_object(w, resource, &w->s->elements[t->root]);
    return true;
}

bool fw_walk_resource(const fs_schema *s, const fj_doc *doc, uint32_t resource, fw_visit_fn visit, void *ctx)
{
    walker w = {s, doc, visit, NULL, ctx, false};
    return walk_resource(&w, resource);
}

bool fw_walk_references(const fs_schema *s, const fj_doc *doc, uint32_t resource, fw_visit_ref_fn visit_ref, void *ctx)
{
    walker w = {s, doc, NULL, visit_ref, ctx, true};
    return walk_resource(&w, resource);
}
