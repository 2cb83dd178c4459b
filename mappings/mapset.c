/*
 * mappings/mapset.c — maps, ConceptMaps and host functions as one set
 * (see mapset.h).
 *
 * Memory: the set owns its maps (sm_free), its FML texts' line lookup is
 * done while loading and nothing of the texts is kept; ConceptMaps are held
 * by the engine context (a reference each).
 */
#include "mappings/mapset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/fhirpath.h"
#include "fhir/validate.h"
#include "mappings/fml_parse.h"

typedef struct named_map {
    sm_map *map;
    char *name;
} named_map;

struct mps_set {
    const pf_registry *registry;
    mpe_context *ctx;
    fp_functions *fns;
    named_map *maps;
    size_t map_count, map_cap;
};

mps_set *mps_new(const pf_registry *registry, const mpn_key *key, oo_list *issues)
{
    mps_set *s = calloc(1, sizeof *s);
    if (!s || !(s->ctx = mpe_context_new(NULL, registry)) || !(s->fns = fp_functions_new())) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        mps_free(s);
        return NULL;
    }
    s->registry = registry;
    fp_error err = {0};
    if (key && !mpn_register(s->fns, key, &err)) {
        oo_add(issues, OO_ERROR, OO_PROCESSING, NULL, 0, 0, "%s", err.message);
        mps_free(s);
        return NULL;
    }
    return s;
}

void mps_free(mps_set *s)
{
    if (!s)
        return;
    for (size_t i = s->map_count; i-- > 0;) { /* importers before the maps they import */
        sm_free(s->maps[i].map);
        free(s->maps[i].name);
    }
    free(s->maps);
    mpe_context_free(s->ctx);
    fp_functions_free(s->fns);
    free(s);
}

bool mps_add_conceptmap(mps_set *s, const char *text, size_t len, const char *name, oo_list *issues)
{
    json_tokener *tok = json_tokener_new();
    json_object *cm = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    json_tokener_free(tok);
    const char *rt = cm ? json_object_get_string(json_object_object_get(cm, "resourceType")) : NULL;
    if (!rt || strcmp(rt, "ConceptMap")) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: not a ConceptMap in JSON", name);
        json_object_put(cm);
        return false;
    }
    bool ok = mpe_add_conceptmap(s->ctx, cm, issues);
    json_object_put(cm);
    if (!ok)
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: the ConceptMap was not added", name);
    return ok;
}

json_object *mps_compile(const char *text, size_t len, const char *name, oo_list *issues)
{
    fml_error err;
    json_object *sm = fml_parse(text, len, name, &err);
    if (!sm) {
        char buf[512];
        fml_error_format(&err, buf, sizeof buf);
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s", buf);
    }
    return sm;
}

/* The 1-based line of the first occurrence of needle in text[0..len), 0 when absent. */
static unsigned line_of(const char *text, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    unsigned line = 1;
    for (size_t i = 0; i + n <= len; i++) {
        if (!memcmp(text + i, needle, n))
            return line;
        line += text[i] == '\n';
    }
    return 0;
}

/* The line in the FML text that a load issue names: its rule ("rule 'r'") or else its group ("group g"). */
static unsigned issue_line(const char *text, size_t len, const char *message)
{
    char needle[160];
    const char *r = strstr(message, "rule '"), *g = strstr(message, "group ");
    if (r) {
        const char *end = strchr(r + 6, '\'');
        if (end && end - (r + 6) < 150) {
            snprintf(needle, sizeof needle, "\"%.*s\"", (int)(end - (r + 6)), r + 6);
            unsigned line = line_of(text, len, needle);
            if (line)
                return line;
        }
    }
    if (g) {
        size_t n = strcspn(g + 6, ",:( ");
        if (n && n < 150) {
            snprintf(needle, sizeof needle, "group %.*s", (int)n, g + 6);
            return line_of(text, len, needle);
        }
    }
    return 0;
}

const sm_map *mps_add_map(mps_set *s, const char *text, size_t len, const char *name, oo_list *issues)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    bool fml = i >= len || text[i] != '{';
    json_object *sm = NULL;
    if (fml) {
        sm = mps_compile(text, len, name, issues);
    } else {
        json_tokener *tok = json_tokener_new();
        sm = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
        json_tokener_free(tok);
        if (!sm)
            oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: not valid JSON", name);
    }
    if (!sm)
        return NULL;
    const sm_map *imports[64];
    size_t n = 0;
    for (size_t k = 0; k < s->map_count && n < 64; k++)
        imports[n++] = s->maps[k].map;
    sm_options o = {.functions = s->fns, .imports = imports, .import_count = n};
    oo_list load;
    oo_list_init(&load, 0);
    sm_map *m = sm_load(sm, &o, &load);
    json_object_put(sm);
    for (size_t k = 0; k < load.count; k++) {
        const oo_issue *is = &load.items[k];
        unsigned line = fml ? issue_line(text, len, is->message) : 0;
        char where[300];
        if (line)
            snprintf(where, sizeof where, "%s:%u", name, line);
        else
            snprintf(where, sizeof where, "%s", name);
        oo_add(issues, is->severity, is->code, is->expression, 0, 0, "%s: %s", where, is->message);
    }
    oo_list_free(&load);
    if (!m)
        return NULL;
    if (!fa_reserve(&s->maps, &s->map_cap, s->map_count + 1, sizeof *s->maps) || !(name = strdup(name))) {
        sm_free(m);
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        return NULL;
    }
    s->maps[s->map_count++] = (named_map){m, (char *)name};
    return m;
}

const char *mps_map_name(const mps_set *s, const sm_map *map)
{
    for (size_t i = 0; i < s->map_count; i++)
        if (s->maps[i].map == map)
            return s->maps[i].name;
    return NULL;
}

const char *mps_source_type(const sm_map *map)
{
    if (!map->group_count || !map->groups[0].input_count || map->groups[0].inputs[0].target)
        return NULL;
    const char *type = map->groups[0].inputs[0].type;
    if (!type)
        return NULL;
    static const char core[] = "http://hl7.org/fhir/StructureDefinition/";
    const char *url = sm_structure_url(map, type);
    if (url && !strncmp(url, core, sizeof core - 1))
        return url + sizeof core - 1;
    return type;
}

static bool span_is(const fj_doc *d, uint32_t v, const char *s)
{
    return v != UINT32_MAX && d->nodes[v].type == FJ_STRING && d->nodes[v].len == strlen(s) &&
           !memcmp(fj_str(d, v), s, d->nodes[v].len);
}

/* The node to start at: the root, or the first Bundle entry of the map's source type. */
static uint32_t pick_source(const sm_map *map, const fj_doc *doc)
{
    const char *type = mps_source_type(map);
    if (!type || doc->nodes[0].type != FJ_OBJECT || span_is(doc, fj_get(doc, 0, "resourceType"), type) ||
        !span_is(doc, fj_get(doc, 0, "resourceType"), "Bundle"))
        return 0;
    uint32_t entries = fj_get(doc, 0, "entry");
    if (entries == UINT32_MAX || doc->nodes[entries].type != FJ_ARRAY)
        return 0;
    for (uint32_t e = entries + 1; e < fj_next(doc, entries); e = fj_next(doc, e)) {
        uint32_t r = doc->nodes[e].type == FJ_OBJECT ? fj_get(doc, e, "resource") : UINT32_MAX;
        if (r != UINT32_MAX && doc->nodes[r].type == FJ_OBJECT && span_is(doc, fj_get(doc, r, "resourceType"), type))
            return r;
    }
    return 0;
}

bool mps_run(const mps_set *s, const sm_map *map, const fj_doc *doc, uint32_t node, const mpe_options *opts,
             json_object **out, oo_list *issues)
{
    if (node == UINT32_MAX)
        node = pick_source(map, doc);
    size_t first = issues->count;
    bool ok = mpe_run(s->ctx, map, doc, node, opts, out, issues);
    const char *name = mps_map_name(s, map);
    for (size_t i = first; !ok && name && i < issues->count; i++) {
        oo_issue *is = &issues->items[i];
        if (is->severity > OO_ERROR)
            continue;
        size_t n = strlen(name) + strlen(is->message) + 3;
        char *msg = malloc(n);
        if (msg) {
            snprintf(msg, n, "%s: %s", name, is->message);
            free(is->message);
            is->message = msg;
        }
    }
    return ok;
}

size_t mps_validate(const mps_set *s, const json_object *result, oo_list *issues)
{
    const char *text = json_object_to_json_string_ext((json_object *)result, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    if (!buf) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        return 1;
    }
    memcpy(buf, text, len + 1);
    fv_options o = {.profiles = s->registry};
    size_t errors = fv_validate_buffer(buf, len, &o, issues);
    free(buf);
    return errors;
}
