/*
 * ig/tools/jsonschema.c — JSON Schemas of the guide's logical models (see jsonschema.h).
 * Builds json-c trees the caller owns; writes files through package.h's igp_write_text.
 */
#include "ig/tools/jsonschema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FHIR R4's own regexes for date and dateTime (datatypes.html), anchored. */
#define DATE_RE "([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
#define TIME_RE \
    "T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
#define DATETIME_RE \
    "([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(" TIME_RE ")?)?)?"

/* ---- value sets ---------------------------------------------------------------------------
 * The same expansion the profile registry makes (fhir/profile.c): listed concepts, whole code
 * systems of the package, a concept is-a / descendent-of filter over one, other value sets of
 * the package; then compose.exclude's listed concepts out. Codes are kept as "system|code" until
 * the end, so an exclude takes out only its own system's code. */

static void add_code(json_object *codes, const char *system, const char *code)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s|%s", system, code);
    json_object_array_add(codes, json_object_new_string(buf));
}

static void add_concept_codes(const char *system, json_object *concepts, json_object *codes)
{
    for (size_t i = 0; i < igp_len(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        if (igp_str(c, "code"))
            add_code(codes, system, igp_str(c, "code"));
        add_concept_codes(system, igp_get(c, "concept"), codes);
    }
}

static json_object *find_concept(json_object *concepts, const char *code)
{
    for (size_t i = 0; i < igp_len(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        json_object *below = igp_get(c, "concept");
        if (igp_str(c, "code") && !strcmp(igp_str(c, "code"), code))
            return c;
        if ((below = find_concept(below, code)))
            return below;
    }
    return NULL;
}

static bool expand_into(const igp_package *p, const char *url, json_object *codes, int depth);

/* One filter "concept is-a X" or "descendent-of X" over a code system of the package. */
static bool filtered_codes(const char *system, json_object *cs, json_object *filters, json_object *codes)
{
    json_object *f = json_object_array_get_idx(filters, 0);
    const char *property = igp_str(f, "property"), *op = igp_str(f, "op"), *value = igp_str(f, "value");
    bool is_a = op && !strcmp(op, "is-a"), below = op && !strcmp(op, "descendent-of");
    json_object *top = value ? find_concept(igp_get(cs, "concept"), value) : NULL;
    if (igp_len(filters) != 1 || !property || strcmp(property, "concept") || !(is_a || below) || !top)
        return false;
    if (is_a)
        add_code(codes, system, value);
    add_concept_codes(system, igp_get(top, "concept"), codes);
    return true;
}

/* One compose.include into codes; false when it is not enumerable from the package. */
static bool include_codes(const igp_package *p, json_object *inc, json_object *codes, int depth)
{
    const char *system = igp_str(inc, "system");
    json_object *sets = igp_get(inc, "valueSet");
    if (!system) {
        for (size_t i = 0; i < igp_len(sets); i++)
            if (!expand_into(p, json_object_get_string(json_object_array_get_idx(sets, i)), codes, depth + 1))
                return false;
        return igp_len(sets) > 0;
    }
    if (sets)
        return false;
    if (igp_get(inc, "concept") && !igp_get(inc, "filter")) {
        add_concept_codes(system, igp_get(inc, "concept"), codes);
        return true;
    }
    const igp_resource *cs = igp_find(p, system);
    if (!cs || strcmp(cs->resource_type, "CodeSystem") || igp_get(inc, "concept"))
        return false;
    if (igp_get(inc, "filter"))
        return filtered_codes(system, cs->json, igp_get(inc, "filter"), codes);
    add_concept_codes(system, igp_get(cs->json, "concept"), codes);
    return true;
}

static void exclude_codes(json_object *excludes, json_object *codes)
{
    json_object *out = json_object_new_array();
    json_object *gone = json_object_new_array();
    for (size_t i = 0; i < igp_len(excludes); i++) {
        json_object *ex = json_object_array_get_idx(excludes, i);
        if (igp_str(ex, "system"))
            add_concept_codes(igp_str(ex, "system"), igp_get(ex, "concept"), gone);
    }
    for (size_t i = 0; i < igp_len(codes); i++) {
        json_object *code = json_object_array_get_idx(codes, i);
        bool keep = true;
        for (size_t k = 0; keep && k < igp_len(gone); k++)
            keep = strcmp(json_object_get_string(code), json_object_get_string(json_object_array_get_idx(gone, k)));
        if (keep)
            json_object_array_add(out, json_object_get(code));
    }
    json_object_array_del_idx(codes, 0, igp_len(codes));
    for (size_t i = 0; i < igp_len(out); i++)
        json_object_array_add(codes, json_object_get(json_object_array_get_idx(out, i)));
    json_object_put(out);
    json_object_put(gone);
}

static bool expand_into(const igp_package *p, const char *url, json_object *codes, int depth)
{
    const igp_resource *vs = url && depth < 8 ? igp_find(p, url) : NULL;
    json_object *compose = vs && !strcmp(vs->resource_type, "ValueSet") ? igp_get(vs->json, "compose") : NULL;
    json_object *includes = igp_get(compose, "include");
    json_object *mine = json_object_new_array();
    bool ok = igp_len(includes) > 0;
    for (size_t i = 0; ok && i < igp_len(includes); i++)
        ok = include_codes(p, json_object_array_get_idx(includes, i), mine, depth);
    if (ok)
        exclude_codes(igp_get(compose, "exclude"), mine);
    for (size_t i = 0; ok && i < igp_len(mine); i++)
        json_object_array_add(codes, json_object_get(json_object_array_get_idx(mine, i)));
    json_object_put(mine);
    return ok;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(json_object_get_string(*(json_object *const *)a), json_object_get_string(*(json_object *const *)b));
}

json_object *ijs_value_set_codes(const igp_package *p, const char *url)
{
    json_object *codes = json_object_new_array();
    bool ok = expand_into(p, url, codes, 0);
    json_object *out = NULL;
    for (size_t i = 0; ok && i < igp_len(codes); i++) { /* "system|code" -> "code" */
        const char *s = json_object_get_string(json_object_array_get_idx(codes, i));
        json_object_array_put_idx(codes, i, json_object_new_string(strrchr(s, '|') + 1));
    }
    if (ok && igp_len(codes)) {
        json_object_array_sort(codes, by_string);
        out = json_object_new_array();
        const char *last = NULL;
        for (size_t i = 0; i < igp_len(codes); i++) {
            const char *code = json_object_get_string(json_object_array_get_idx(codes, i));
            if (!last || strcmp(last, code))
                json_object_array_add(out, json_object_new_string(code));
            last = code;
        }
    }
    json_object_put(codes);
    return out;
}

/* ---- elements ---------------------------------------------------------------------------- */

static void set_string(json_object *o, const char *key, const char *value)
{
    json_object_object_add(o, key, json_object_new_string(value));
}

/* The JSON Schema of a primitive FHIR type; a code bound to an enumerable value set gets an enum. */
static json_object *primitive_schema(const igp_package *p, const char *type, json_object *binding)
{
    json_object *s = json_object_new_object();
    static const struct {
        const char *fhir, *json;
        int minimum; /* -1: none */
    } numbers[] = {{"decimal", "number", -1},
                   {"integer", "integer", -1},
                   {"positiveInt", "integer", 1},
                   {"unsignedInt", "integer", 0},
                   {"boolean", "boolean", -1}};
    for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++)
        if (!strcmp(type, numbers[i].fhir)) {
            set_string(s, "type", numbers[i].json);
            if (numbers[i].minimum >= 0)
                json_object_object_add(s, "minimum", json_object_new_int(numbers[i].minimum));
            return s;
        }
    set_string(s, "type", "string");
    const char *vs = igp_str(binding, "valueSet");
    json_object *codes = !strcmp(type, "code") && vs ? ijs_value_set_codes(p, vs) : NULL;
    if (codes)
        json_object_object_add(s, "enum", codes);
    else if (!strcmp(type, "date"))
        set_string(s, "pattern", "^" DATE_RE "$");
    else if (!strcmp(type, "dateTime"))
        set_string(s, "pattern", "^" DATETIME_RE "$");
    else if (!strcmp(type, "code"))
        set_string(s, "pattern", "^[^\\s]+( [^\\s]+)*$");
    else if (!strcmp(type, "uri"))
        set_string(s, "pattern", "^\\S*$");
    else
        json_object_object_add(s, "minLength", json_object_new_int(1));
    if (!codes && vs) {
        char comment[512];
        snprintf(comment, sizeof comment, "required binding to %s (not enumerable from this package)", vs);
        set_string(s, "$comment", comment);
    }
    return s;
}

static json_object *object_schema(const igp_package *p, json_object *elements, const char *path);

/* One element's property: title and description, then its type (an array when it repeats). */
static json_object *property_schema(const igp_package *p, json_object *elements, json_object *el)
{
    const char *type = igp_str(json_object_array_get_idx(igp_get(el, "type"), 0), "code");
    const char *path = igp_str(el, "path");
    json_object *item = type && !strcmp(type, "BackboneElement")
                            ? object_schema(p, elements, path)
                            : primitive_schema(p, type ? type : "string", igp_get(el, "binding"));
    const char *max = igp_str(el, "max");
    int min = json_object_get_int(igp_get(el, "min"));
    json_object *prop = json_object_new_object();
    if (igp_str(el, "short"))
        set_string(prop, "title", igp_str(el, "short"));
    if (igp_str(el, "definition"))
        set_string(prop, "description", igp_str(el, "definition"));
    if (max && strcmp(max, "1") && strcmp(max, "0")) {
        set_string(prop, "type", "array");
        json_object_object_add(prop, "items", item);
        if (min > 0)
            json_object_object_add(prop, "minItems", json_object_new_int(min));
        if (strcmp(max, "*"))
            json_object_object_add(prop, "maxItems", json_object_new_int(atoi(max)));
        return prop;
    }
    json_object_object_foreach(item, key, value) json_object_object_add(prop, key, json_object_get(value));
    json_object_put(item);
    return prop;
}

/* The direct children of `path` as an object schema, in snapshot order. */
static json_object *object_schema(const igp_package *p, json_object *elements, const char *path)
{
    json_object *s = json_object_new_object(), *props = json_object_new_object(), *required = json_object_new_array();
    size_t n = strlen(path);
    for (size_t i = 0; i < igp_len(elements); i++) {
        json_object *el = json_object_array_get_idx(elements, i);
        const char *child = igp_str(el, "path");
        if (!child || strncmp(child, path, n) || child[n] != '.' || strchr(child + n + 1, '.'))
            continue;
        json_object_object_add(props, child + n + 1, property_schema(p, elements, el));
        if (json_object_get_int(igp_get(el, "min")) >= 1)
            json_object_array_add(required, json_object_new_string(child + n + 1));
    }
    set_string(s, "type", "object");
    json_object_object_add(s, "properties", props);
    if (igp_len(required))
        json_object_object_add(s, "required", required);
    else
        json_object_put(required);
    json_object_object_add(s, "additionalProperties", json_object_new_boolean(0));
    return s;
}

json_object *ijs_schema(const igp_package *p, const igp_resource *model, oo_list *issues)
{
    json_object *elements = igp_get(igp_get(model->json, "snapshot"), "element");
    const char *root = igp_str(json_object_array_get_idx(elements, 0), "path");
    if (!root || !model->url) {
        oo_add(issues, OO_ERROR, OO_REQUIRED, "StructureDefinition.snapshot", 0, 0,
               "%s: a logical model needs a url and a snapshot for its JSON Schema", model->source);
        return NULL;
    }
    json_object *s = json_object_new_object();
    set_string(s, "$schema", "https://json-schema.org/draft/2020-12/schema");
    char id[1024];
    snprintf(id, sizeof id, "%s.schema.json", model->url);
    set_string(s, "$id", id);
    const char *title = igp_str(model->json, "title");
    set_string(s, "title", title ? title : root);
    const char *description = igp_str(model->json, "description");
    if (description)
        set_string(s, "description", description);
    json_object *body = object_schema(p, elements, root);
    json_object_object_foreach(body, key, value) json_object_object_add(s, key, json_object_get(value));
    json_object_put(body);
    return s;
}

bool ijs_write_all(const igp_package *p, const char *out, oo_list *issues)
{
    bool ok = true;
    for (size_t i = 0; ok && i < p->count; i++) {
        const igp_resource *r = &p->items[i];
        if (r->example || !r->kind || strcmp(r->kind, "logical"))
            continue;
        json_object *schema = ijs_schema(p, r, issues);
        if (!schema)
            continue;
        char *text = igp_serialise(schema);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.schema.json", out, r->id);
        ok = igp_write_text(path, text, issues);
        free(text);
        json_object_put(schema);
    }
    return ok;
}
