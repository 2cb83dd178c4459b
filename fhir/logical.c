/*
 * fhir/logical.c — validating instances of logical models (see logical.h).
 *
 * The model's elements are a flat list of paths ("InsurerProvider",
 * "InsurerProvider.locations", "InsurerProvider.locations.name"). An object
 * at path P is checked by two passes: every member must name an element
 * P.member, and every element directly below P must have its cardinality.
 * Values are then checked by their element's first type: BackboneElement
 * (or Element) recurses with the child path, primitives are checked by the
 * same lexical rules as FHIR primitives (fhir/primitive.h), codes against a
 * required binding of the registry.
 */
#include "fhir/logical.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/primitive.h"
#include "fhir/report.h"

#define NO_NODE UINT32_MAX

typedef struct lctx {
    const pf_registry *r;
    fj_doc *doc;
    json_object *elements; /* the model's snapshot (or differential) elements, borrowed */
    rp_reporter rep;
    int depth;
} lctx;

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* The model's element list: the snapshot when it has one, else the differential. */
static json_object *model_elements(const pf_logical *m)
{
    json_object *sd = (json_object *)pf_logical_definition(m);
    json_object *list = jget(jget(sd, "snapshot"), "element");
    return list ? list : jget(jget(sd, "differential"), "element");
}

const pf_logical *fl_model_for_type(const pf_registry *r, const char *type, size_t len)
{
    for (size_t i = 0; r && i < pf_logical_count(r); i++) {
        const pf_logical *m = pf_logical_at(r, i);
        const char *t = jstr((json_object *)pf_logical_definition(m), "type");
        if (t && strlen(t) == len && !memcmp(t, type, len))
            return m;
    }
    return NULL;
}

/* The element at exactly parent + "." + name[0..len), or NULL. */
static json_object *child_element(const lctx *c, const char *parent, const char *name, size_t len)
{
    size_t plen = strlen(parent);
    for (size_t i = 0; i < json_object_array_length(c->elements); i++) {
        json_object *el = json_object_array_get_idx(c->elements, i);
        const char *path = jstr(el, "path");
        if (path && !strncmp(path, parent, plen) && path[plen] == '.' && strlen(path + plen + 1) == len &&
            !memcmp(path + plen + 1, name, len))
            return el;
    }
    return NULL;
}

static bool is_many(json_object *el)
{
    const char *max = jstr(el, "max");
    return max && (!strcmp(max, "*") || strtoul(max, NULL, 10) > 1);
}

static const char *first_type(json_object *el)
{
    json_object *types = jget(el, "type");
    return types && json_object_array_length(types) ? jstr(json_object_array_get_idx(types, 0), "code") : NULL;
}

static const char *json_kind(uint8_t type)
{
    static const char *names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    return type < sizeof names / sizeof *names ? names[type] : "?";
}

static void check_object(lctx *c, const char *path, uint32_t obj, bool root);

static void check_code_binding(lctx *c, json_object *el, uint32_t v)
{
    json_object *binding = jget(el, "binding");
    const char *strength = jstr(binding, "strength"), *url = jstr(binding, "valueSet");
    if (!url || !strength || strcmp(strength, "required"))
        return;
    const fj_node *n = fj_node_at(c->doc, v);
    int in = pf_code_in_valueset(c->r, url, NULL, 0, fj_str(c->doc, v), n->len);
    if (in == 0)
        rp_report(&c->rep, v, OO_ERROR, OO_CODE_INVALID, "'%.*s' is not in the required value set %s",
                  (int)(n->len > 64 ? 64 : n->len), fj_str(c->doc, v), url);
    else if (in < 0)
        rp_report(&c->rep, v, OO_WARNING, OO_NOT_FOUND, "value set %s is not available: binding not checked", url);
}

static void check_primitive(lctx *c, json_object *el, const char *type, fprim_kind kind, uint32_t v)
{
    const fj_node *n = fj_node_at(c->doc, v);
    fprim_json want = fprim_json_type(kind);
    bool json_ok = want == FPRIM_JSON_STRING   ? n->type == FJ_STRING
                   : want == FPRIM_JSON_NUMBER ? n->type == FJ_NUMBER
                                               : n->type == FJ_TRUE || n->type == FJ_FALSE;
    if (!json_ok) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "a %s is written as %s, found %s", type,
                  want == FPRIM_JSON_STRING   ? "a string"
                  : want == FPRIM_JSON_NUMBER ? "a number"
                                              : "true or false",
                  json_kind(n->type));
        return;
    }
    if (want != FPRIM_JSON_BOOLEAN) {
        const char *problem = fprim_check(kind, fj_str(c->doc, v), n->len);
        if (problem) {
            rp_report(&c->rep, v, OO_ERROR, OO_VALUE, "invalid %s: %s", type, problem);
            return;
        }
    }
    if (kind == FPRIM_CODE)
        check_code_binding(c, el, v);
}

static void check_value(lctx *c, json_object *el, uint32_t v)
{
    const char *type = first_type(el);
    const char *path = jstr(el, "path");
    fprim_kind kind = type ? fprim_from_name(type) : FPRIM_NONE;
    if (kind != FPRIM_NONE) {
        check_primitive(c, el, type, kind, v);
    } else if (fj_node_at(c->doc, v)->type != FJ_OBJECT) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s is a group of elements (an object), found %s", path,
                  json_kind(fj_node_at(c->doc, v)->type));
    } else if (!type || !strcmp(type, "BackboneElement") || !strcmp(type, "Element")) {
        check_object(c, path, v, false);
    } else {
        rp_report(&c->rep, v, OO_WARNING, OO_NOT_SUPPORTED, "the content of a %s in a logical model is not checked",
                  type);
    }
}

/* One member's value(s): array versus single as the element's max says, then each value. */
static void check_member(lctx *c, json_object *el, uint32_t v)
{
    const fj_node *n = fj_node_at(c->doc, v);
    if (!is_many(el)) {
        if (n->type == FJ_ARRAY)
            rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s takes one value, found an array", jstr(el, "path"));
        else
            check_value(c, el, v);
        return;
    }
    if (n->type != FJ_ARRAY) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s repeats: write it as an array, found %s", jstr(el, "path"),
                  json_kind(n->type));
        return;
    }
    if (n->len == 0)
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "an empty array: leave %s out instead", jstr(el, "path"));
    uint32_t item = fj_first_child(v);
    for (uint32_t i = 0; i < n->len; i++, item = fj_next(c->doc, item)) {
        size_t mark = rp_push(&c->rep, "[%u]", i);
        check_value(c, el, item);
        rp_pop(&c->rep, mark);
    }
}

/* Every element directly below path: present at least min and at most max times. */
static void check_cardinality(lctx *c, const char *path, uint32_t obj)
{
    size_t plen = strlen(path);
    for (size_t i = 0; i < json_object_array_length(c->elements); i++) {
        json_object *el = json_object_array_get_idx(c->elements, i);
        const char *p = jstr(el, "path");
        if (!p || strncmp(p, path, plen) || p[plen] != '.' || strchr(p + plen + 1, '.'))
            continue;
        const char *name = p + plen + 1;
        uint32_t v = fj_get(c->doc, obj, name);
        uint32_t count = v == NO_NODE ? 0 : fj_node_at(c->doc, v)->type == FJ_ARRAY ? fj_node_at(c->doc, v)->len : 1;
        json_object *min = jget(el, "min");
        if (min && count < (uint32_t)json_object_get_int(min)) {
            size_t mark = rp_push(&c->rep, ".%s", name);
            rp_report(&c->rep, obj, OO_ERROR, OO_REQUIRED, "missing required element %s (min %d)", p,
                      json_object_get_int(min));
            rp_pop(&c->rep, mark);
        }
        const char *max = jstr(el, "max");
        if (max && strcmp(max, "*") && count > strtoul(max, NULL, 10) && count > 1) {
            size_t mark = rp_push(&c->rep, ".%s", name);
            rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s allows at most %s values, found %u", p, max, count);
            rp_pop(&c->rep, mark);
        }
    }
}

static void check_resource_type(lctx *c, const char *type, uint32_t v)
{
    size_t mark = rp_push(&c->rep, ".resourceType");
    if (fj_node_at(c->doc, v)->type != FJ_STRING || !fj_str_eq(c->doc, v, type))
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "resourceType must be '%s'", type);
    rp_pop(&c->rep, mark);
}

static void check_object(lctx *c, const char *path, uint32_t obj, bool root)
{
    if (++c->depth > 32) {
        rp_report(&c->rep, obj, OO_ERROR, OO_STRUCTURE, "nested too deeply for the model");
        c->depth--;
        return;
    }
    const fj_node *n = fj_node_at(c->doc, obj);
    uint32_t key = fj_first_child(obj);
    for (uint32_t m = 0; m < n->len; m++, key = fj_next(c->doc, key + 1)) {
        const char *name = fj_str(c->doc, key);
        size_t len = fj_node_at(c->doc, key)->len;
        uint32_t v = key + 1;
        if (root && len == 12 && !memcmp(name, "resourceType", 12)) {
            check_resource_type(c, path, v);
            continue;
        }
        size_t mark = rp_push(&c->rep, ".%.*s", (int)len, name);
        json_object *el = child_element(c, path, name, len);
        if (!el)
            rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "unknown element '%.*s': %s has no such element",
                      (int)(len > 64 ? 64 : len), name, path);
        else
            check_member(c, el, v);
        rp_pop(&c->rep, mark);
    }
    check_cardinality(c, path, obj);
    c->depth--;
}

size_t fl_validate(const pf_registry *r, const pf_logical *m, fj_doc *doc, uint32_t node, const char *base_path,
                   oo_list *out)
{
    size_t before = out->errors;
    lctx c = {.r = r, .doc = doc, .elements = model_elements(m)};
    const char *type = jstr((json_object *)pf_logical_definition(m), "type");
    rp_init(&c.rep, doc, out);
    rp_push(&c.rep, "%s", base_path && *base_path ? base_path : type ? type : "?");
    if (!c.elements || !type) {
        rp_report(&c.rep, node, OO_ERROR, OO_PROCESSING, "logical model %s has no elements", pf_logical_url(m));
    } else if (fj_node_at(doc, node)->type != FJ_OBJECT) {
        rp_report(&c.rep, node, OO_ERROR, OO_STRUCTURE, "an instance of %s is a JSON object", type);
    } else {
        check_object(&c, type, node, true);
    }
    return out->errors - before;
}
