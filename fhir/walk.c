/*
 * fhir/walk.c — typed walk over a resource (see walk.h).
 */
#include "fhir/walk.h"

#include <string.h>

static void walk_object(const fs_schema *s, const fj_doc *doc, uint32_t obj, const fs_element *parent,
                        fw_visit_fn visit, void *ctx);

bool fw_is_literal_reference(const fs_element *element)
{
    return element && !strcmp(element->path, "Reference.reference");
}

/* A value of `element` (of `type`): recurse into objects, visit primitives. */
static void walk_value(const fs_schema *s, const fj_doc *doc, uint32_t v, const fs_element *element,
                       const fs_type *type, fw_visit_fn visit, void *ctx)
{
    uint8_t jt = doc->nodes[v].type;
    if (jt == FJ_ARRAY || jt == FJ_NULL)
        return;
    if (type && type->kind == FS_PRIMITIVE) {
        if (jt != FJ_OBJECT)
            visit(ctx, doc, v, element, type);
        return;
    }
    if (jt != FJ_OBJECT)
        return;
    if (type && type->kind == FS_RESOURCE) { /* contained, Bundle.entry.resource, Parameters.parameter.resource */
        fw_walk_resource(s, doc, v, visit, ctx);
        return;
    }
    /* a backbone element has its children inline; a data type takes its type's */
    const fs_element *parent = (element->flags & FS_EL_INLINE) || !type ? element : &s->elements[type->root];
    walk_object(s, doc, v, parent, visit, ctx);
}

static void walk_member(const fs_schema *s, const fj_doc *doc, uint32_t key, const fs_element *parent,
                        fw_visit_fn visit, void *ctx)
{
    const char *name = fj_str(doc, key);
    size_t len = doc->nodes[key].len;
    if (len && name[0] == '_')
        return; /* primitive extensions: Element content, no values of their own */
    const fs_type *choice = NULL;
    const fs_element *child = fs_child(s, parent, name, len, &choice);
    if (!child)
        return;
    const fs_type *type = choice ? choice : child->type_count == 1 ? fs_element_type(s, child, 0) : NULL;
    uint32_t v = key + 1;
    if (doc->nodes[v].type != FJ_ARRAY) {
        walk_value(s, doc, v, child, type, visit, ctx);
        return;
    }
    uint32_t item = v + 1;
    for (uint32_t i = 0; i < doc->nodes[v].len; i++, item = fj_next(doc, item))
        walk_value(s, doc, item, child, type, visit, ctx);
}

static void walk_object(const fs_schema *s, const fj_doc *doc, uint32_t obj, const fs_element *parent,
                        fw_visit_fn visit, void *ctx)
{
    uint32_t key = obj + 1;
    for (uint32_t m = 0; m < doc->nodes[obj].len; m++, key = fj_next(doc, key + 1))
        walk_member(s, doc, key, parent, visit, ctx);
}

bool fw_walk_resource(const fs_schema *s, const fj_doc *doc, uint32_t resource, fw_visit_fn visit, void *ctx)
{
    if (doc->nodes[resource].type != FJ_OBJECT)
        return false;
    uint32_t rt = fj_get(doc, resource, "resourceType");
    if (rt == UINT32_MAX || doc->nodes[rt].type != FJ_STRING)
        return false;
    const fs_type *t = fs_type_by_name(s, fj_str(doc, rt), doc->nodes[rt].len);
    if (!t || t->kind != FS_RESOURCE)
        return false;
    walk_object(s, doc, resource, &s->elements[t->root], visit, ctx);
    return true;
}
