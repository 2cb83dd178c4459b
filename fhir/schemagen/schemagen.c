/*
 * fhir/schemagen/schemagen.c — turns the official FHIR R4 definitions into
 * the C tables described in fhir/schema.h.
 *
 *   fhir-schemagen PACKAGE_DIR OUT.c
 *
 * Input: the unpacked hl7.fhir.r4.examples@4.0.1 package/ folder. Read:
 *   - StructureDefinition-*.json that define a type (derivation
 *     "specialization", or the abstract roots Resource and Element); profiles
 *     (derivation "constraint") and logical models are left out;
 *   - the ValueSets of required bindings and the CodeSystems they draw from,
 *     expanded here once so the validator only does lookups.
 *
 * Output is reproducible: types sorted by name, children sorted by name,
 * codes sorted, no timestamps, so the same package always yields the same
 * bytes (docs/schema.md).
 *
 * This is a build tool: on malformed input it prints why and exits 1.
 * It does not free what it allocates; the process is short-lived.
 */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNBOUNDED UINT32_MAX

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fhir-schemagen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        die("out of memory");
    return d;
}

/* A growable array of pointers. */
typedef struct vec {
    void **items;
    size_t n, cap;
} vec;

/* qsort that accepts an empty (NULL) array. */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

static void vec_push(vec *v, void *item)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->items = xrealloc(v->items, v->cap * sizeof *v->items);
    }
    v->items[v->n++] = item;
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

static json_object *load_json(const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_object *o = json_object_from_file(path);
    if (!o)
        die("cannot parse %s", path);
    return o;
}

/* ---- the definitions read from the package --------------------------- */

typedef struct gnode {
    char *name; /* JSON name or choice stem */
    char *path;
    uint32_t min, max;
    vec type_names;   /* char* */
    vec target_names; /* char*: resource types a Reference may point to; {"Resource"} = any */
    unsigned flags;
    int strength;
    char *valueset_url; /* required bindings only */
    char *content_ref;  /* "#Path" */
    vec children;       /* gnode* */
    struct gnode *ref_target;
    vec constraints; /* gconstraint*, shared */
    long index;      /* position in the emitted element table */
} gnode;

typedef struct gconstraint {
    char *key, *human, *expression, *source;
    bool is_error;
    long index;
} gconstraint;

static vec g_constraints; /* unique gconstraint* in first-seen order */

typedef struct gsearch {
    char *resource, *code, *kind, *expression, *url;
} gsearch;

static vec g_search; /* gsearch*, one per (base type, code) */

static void write_search_params(FILE *out);
static void write_extension_definitions(FILE *out);
static vec g_extensions;         /* gextension*: the core extension definitions, sorted by url before writing */
static vec g_extension_bindings; /* char*: value sets of their required bindings, expanded like the elements' */
static size_t unique_search_count(void);

/* The shared constraint for (key, expression, severity), created on first sight. */
static gconstraint *intern_constraint(json_object *c)
{
    const char *key = jstr(c, "key"), *expr = jstr(c, "expression"), *sev = jstr(c, "severity");
    if (!key || !expr)
        return NULL; /* xpath-only constraints: nothing the validator can evaluate */
    bool is_error = sev && !strcmp(sev, "error");
    for (size_t i = 0; i < g_constraints.n; i++) {
        gconstraint *g = g_constraints.items[i];
        if (!strcmp(g->key, key) && !strcmp(g->expression, expr) && g->is_error == is_error)
            return g;
    }
    gconstraint *g = calloc(1, sizeof *g);
    if (!g)
        die("out of memory");
    g->key = xstrdup(key);
    g->expression = xstrdup(expr);
    g->human = xstrdup(jstr(c, "human"));
    const char *source = jstr(c, "source");
    g->source = xstrdup(source && strrchr(source, '/') ? strrchr(source, '/') + 1 : (source ? source : ""));
    g->is_error = is_error;
    g->index = (long)g_constraints.n;
    vec_push(&g_constraints, g);
    return g;
}

typedef struct gtype {
    char *name;
    char *kind; /* primitive-type, complex-type, resource */
    bool is_abstract;
    char *base;
    gnode *root;
    long root_index;
} gtype;

/* flags, as in fhir/schema.h */
enum { EL_CHOICE = 1, EL_NO_EXT = 2, EL_INLINE = 4, EL_MODIFIER = 8, EL_SUMMARY = 16 };
enum { BIND_NONE, BIND_EXAMPLE, BIND_PREFERRED, BIND_EXTENSIBLE, BIND_REQUIRED };

static vec g_types;     /* gtype* */
static vec g_valuesets; /* expanded value sets */

static int strength_of(const char *s)
{
    if (!s)
        return BIND_NONE;
    if (!strcmp(s, "required"))
        return BIND_REQUIRED;
    if (!strcmp(s, "extensible"))
        return BIND_EXTENSIBLE;
    if (!strcmp(s, "preferred"))
        return BIND_PREFERRED;
    return BIND_EXAMPLE;
}

static const char *last_segment(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/*
 * The FHIR type of one element.type entry. Elements that are XML attributes
 * in the spec (Element.id, Extension.url) and the value of primitives are
 * typed "http://hl7.org/fhirpath/System.String" etc.; the extension
 * structuredefinition-fhir-type names the FHIR type they carry.
 */
static const char *fhir_type_code(json_object *type, bool *is_system)
{
    const char *code = jstr(type, "code");
    *is_system = code && !strncmp(code, "http://hl7.org/fhirpath/System.", 31);
    if (!*is_system)
        return code;
    json_object *exts = jget(type, "extension");
    for (size_t i = 0; exts && i < json_object_array_length(exts); i++) {
        json_object *ext = json_object_array_get_idx(exts, i);
        const char *url = jstr(ext, "url");
        if (url && !strcmp(url, "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"))
            return jstr(ext, "valueUrl");
    }
    return "string";
}

static gnode *find_node(vec *all, const char *path)
{
    for (size_t i = 0; i < all->n; i++) {
        gnode *n = all->items[i];
        if (!strcmp(n->path, path))
            return n;
    }
    return NULL;
}

static uint32_t parse_max(const char *max)
{
    if (!max || !strcmp(max, "*"))
        return UNBOUNDED;
    return (uint32_t)strtoul(max, NULL, 10);
}

#define CORE_SD "http://hl7.org/fhir/StructureDefinition/"

/*
 * The resource types one Reference type entry allows (its targetProfile).
 * Only core profiles occur in the base definitions; each names a type
 * (checked when the tables are written). No targetProfile, or one naming
 * Resource, allows any type: that is recorded as the single name
 * "Resource", so every Reference element has at least one target.
 */
static void add_reference_targets(gnode *n, json_object *type)
{
    json_object *profiles = jget(type, "targetProfile");
    size_t count = profiles ? json_object_array_length(profiles) : 0;
    for (size_t i = 0; i < count; i++) {
        const char *url = json_object_get_string(json_object_array_get_idx(profiles, i));
        if (!url || strncmp(url, CORE_SD, strlen(CORE_SD)))
            die("%s: targetProfile %s is not a core type", n->path, url ? url : "(null)");
        if (!strcmp(url + strlen(CORE_SD), "Resource")) {
            count = 0;
            break;
        }
        vec_push(&n->target_names, xstrdup(url + strlen(CORE_SD)));
    }
    if (!count) {
        n->target_names.n = 0;
        vec_push(&n->target_names, xstrdup("Resource"));
    }
}

static gnode *node_from_element(json_object *el, const char *type_kind, bool is_root)
{
    gnode *n = calloc(1, sizeof *n);
    if (!n)
        die("out of memory");
    const char *path = jstr(el, "path");
    n->path = xstrdup(path);
    n->name = xstrdup(last_segment(path));
    size_t len = strlen(n->name);
    if (len > 3 && !strcmp(n->name + len - 3, "[x]")) {
        n->name[len - 3] = '\0';
        n->flags |= EL_CHOICE;
    }
    json_object *min = jget(el, "min");
    n->min = min ? (uint32_t)json_object_get_int(min) : 0;
    n->max = parse_max(jstr(el, "max"));
    if (is_root) {
        n->min = 0;
        n->max = 1;
    }
    json_object *modifier = jget(el, "isModifier");
    if (modifier && json_object_get_boolean(modifier))
        n->flags |= EL_MODIFIER;
    json_object *summary = jget(el, "isSummary");
    if (summary && json_object_get_boolean(summary))
        n->flags |= EL_SUMMARY;

    json_object *types = jget(el, "type");
    for (size_t i = 0; types && i < json_object_array_length(types); i++) {
        bool is_system;
        const char *code = fhir_type_code(json_object_array_get_idx(types, i), &is_system);
        if (!code)
            die("%s: type without code", path);
        /* Resource.id is an `id` (resource.html#id); the snapshot types it
         * System.String like the attribute Element.id, which it is not. */
        bool resource_id = is_system && !strcmp(type_kind, "resource") && !strcmp(n->name, "id") &&
                           strchr(path, '.') == strrchr(path, '.');
        if (resource_id)
            code = "id";
        else if (is_system)
            n->flags |= EL_NO_EXT;
        vec_push(&n->type_names, xstrdup(code));
        if (!strcmp(code, "Reference"))
            add_reference_targets(n, json_object_array_get_idx(types, i));
    }
    const char *cref = jstr(el, "contentReference");
    if (cref)
        n->content_ref = xstrdup(cref);

    json_object *constraints = jget(el, "constraint");
    for (size_t i = 0; constraints && i < json_object_array_length(constraints); i++) {
        gconstraint *g = intern_constraint(json_object_array_get_idx(constraints, i));
        if (g)
            vec_push(&n->constraints, g);
    }

    json_object *binding = jget(el, "binding");
    n->strength = strength_of(jstr(binding, "strength"));
    const char *vs = jstr(binding, "valueSet");
    if (vs && n->strength == BIND_REQUIRED) {
        n->valueset_url = xstrdup(vs);
        char *bar = strchr(n->valueset_url, '|');
        if (bar)
            *bar = '\0';
    }
    return n;
}

/* Build one type's element tree from its snapshot. */
static gtype *type_from_sd(json_object *sd)
{
    gtype *t = calloc(1, sizeof *t);
    if (!t)
        die("out of memory");
    t->name = xstrdup(jstr(sd, "type"));
    t->kind = xstrdup(jstr(sd, "kind"));
    json_object *abs = jget(sd, "abstract");
    t->is_abstract = abs && json_object_get_boolean(abs);
    const char *base = jstr(sd, "baseDefinition");
    t->base = base ? xstrdup(strrchr(base, '/') + 1) : NULL;

    json_object *elements = jget(jget(sd, "snapshot"), "element");
    if (!elements || !json_object_array_length(elements))
        die("%s: no snapshot", t->name);
    vec all = {0};
    bool primitive = !strcmp(t->kind, "primitive-type");
    for (size_t i = 0; i < json_object_array_length(elements); i++) {
        json_object *el = json_object_array_get_idx(elements, i);
        if (jstr(el, "sliceName"))
            continue; /* slices belong to profiles; a base type defines none that matter here */
        const char *path = jstr(el, "path");
        const char *dot = strrchr(path, '.');
        /* A primitive's `value` is the JSON value itself, not a property. */
        if (primitive && dot && !strcmp(dot + 1, "value"))
            continue;
        gnode *n = node_from_element(el, t->kind, dot == NULL);
        if (!dot) {
            t->root = n;
        } else {
            char parent_path[1024];
            snprintf(parent_path, sizeof parent_path, "%.*s", (int)(dot - path), path);
            gnode *parent = find_node(&all, parent_path);
            if (!parent)
                die("%s: element %s has no parent", t->name, path);
            vec_push(&parent->children, n);
        }
        vec_push(&all, n);
    }
    /* Resolve contentReference ("#Questionnaire.item") within the same type. */
    for (size_t i = 0; i < all.n; i++) {
        gnode *n = all.items[i];
        if (!n->content_ref)
            continue;
        gnode *target = find_node(&all, n->content_ref + 1);
        if (!target)
            die("%s: unresolved contentReference %s", n->path, n->content_ref);
        n->ref_target = target;
        for (size_t k = 0; k < target->type_names.n; k++)
            vec_push(&n->type_names, target->type_names.items[k]);
        for (size_t k = 0; k < target->target_names.n; k++)
            vec_push(&n->target_names, target->target_names.items[k]);
        n->flags |= EL_INLINE;
    }
    for (size_t i = 0; i < all.n; i++) {
        gnode *n = all.items[i];
        if (n->children.n && n != t->root)
            n->flags |= EL_INLINE;
    }
    if (!t->root)
        die("%s: snapshot has no root element", t->name);
    t->root->type_names.n = 0;
    vec_push(&t->root->type_names, t->name);
    free(all.items);
    return t;
}

/* ---- value set expansion ------------------------------------------------ */

typedef struct code_entry {
    char *system;
    char *code;
} code_entry;

typedef struct gvalueset {
    char *url;
    code_entry *codes;
    size_t n, cap;
} gvalueset;

typedef struct url_index {
    vec urls;  /* char* */
    vec files; /* json_object* */
} url_index;

static url_index g_vs_index, g_cs_index;

static json_object *index_lookup(url_index *ix, const char *url)
{
    for (size_t i = 0; i < ix->urls.n; i++)
        if (!strcmp(ix->urls.items[i], url))
            return ix->files.items[i];
    return NULL;
}

static void add_code(gvalueset *vs, const char *system, const char *code)
{
    if (vs->n == vs->cap) {
        vs->cap = vs->cap ? vs->cap * 2 : 32;
        vs->codes = xrealloc(vs->codes, vs->cap * sizeof *vs->codes);
    }
    vs->codes[vs->n].system = xstrdup(system);
    vs->codes[vs->n].code = xstrdup(code);
    vs->n++;
}

static void add_concepts(gvalueset *vs, const char *system, json_object *concepts)
{
    for (size_t i = 0; concepts && i < json_object_array_length(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        const char *code = jstr(c, "code");
        if (code)
            add_code(vs, system, code);
        add_concepts(vs, system, jget(c, "concept")); /* nested (hierarchical) concepts */
    }
}

static bool expand_into(gvalueset *vs, const char *url, int depth);

/* One compose.include: explicit concepts, a whole complete CodeSystem, or other value sets. */
static bool expand_include(gvalueset *vs, json_object *inc, int depth)
{
    if (jget(inc, "filter"))
        return false; /* filters (is-a, regex...) are not expanded here */
    json_object *vsets = jget(inc, "valueSet");
    for (size_t i = 0; vsets && i < json_object_array_length(vsets); i++)
        if (!expand_into(vs, json_object_get_string(json_object_array_get_idx(vsets, i)), depth + 1))
            return false;
    const char *system = jstr(inc, "system");
    if (!system)
        return vsets != NULL;
    json_object *concepts = jget(inc, "concept");
    if (concepts) {
        add_concepts(vs, system, concepts);
        return true;
    }
    json_object *cs = index_lookup(&g_cs_index, system);
    const char *content = jstr(cs, "content");
    if (!cs || !content || strcmp(content, "complete"))
        return false;
    add_concepts(vs, system, jget(cs, "concept"));
    return true;
}

static bool expand_into(gvalueset *vs, const char *url, int depth)
{
    char clean[1024];
    snprintf(clean, sizeof clean, "%s", url);
    char *bar = strchr(clean, '|');
    if (bar)
        *bar = '\0';
    json_object *def = index_lookup(&g_vs_index, clean);
    if (!def || depth > 8)
        return false;
    json_object *compose = jget(def, "compose");
    json_object *includes = jget(compose, "include");
    if (!includes)
        return false;
    for (size_t i = 0; i < json_object_array_length(includes); i++)
        if (!expand_include(vs, json_object_array_get_idx(includes, i), depth))
            return false;
    /* Excludes: expand them separately and drop their codes. */
    json_object *excludes = jget(compose, "exclude");
    if (excludes) {
        gvalueset ex = {0};
        for (size_t i = 0; i < json_object_array_length(excludes); i++)
            if (!expand_include(&ex, json_object_array_get_idx(excludes, i), depth))
                return false;
        size_t kept = 0;
        for (size_t i = 0; i < vs->n; i++) {
            bool drop = false;
            for (size_t k = 0; k < ex.n && !drop; k++)
                drop = !strcmp(vs->codes[i].code, ex.codes[k].code) && !strcmp(vs->codes[i].system, ex.codes[k].system);
            if (!drop)
                vs->codes[kept++] = vs->codes[i];
        }
        vs->n = kept;
    }
    return true;
}

static int code_cmp(const void *a, const void *b)
{
    const code_entry *x = a, *y = b;
    int c = strcmp(x->code, y->code);
    return c ? c : strcmp(x->system, y->system);
}

/* Index of the expanded value set for url, expanding it on first use; -1 if not expandable. */
static long valueset_index(const char *url)
{
    for (size_t i = 0; i < g_valuesets.n; i++) {
        gvalueset *vs = g_valuesets.items[i];
        if (!strcmp(vs->url, url))
            return vs->n ? (long)i : -1;
    }
    gvalueset *vs = calloc(1, sizeof *vs);
    if (!vs)
        die("out of memory");
    vs->url = xstrdup(url);
    if (!expand_into(vs, url, 0))
        vs->n = 0; /* not expandable from the package: recorded empty, never checked */
    sort(vs->codes, vs->n, sizeof *vs->codes, code_cmp);
    size_t unique = 0;
    for (size_t i = 0; i < vs->n; i++)
        if (!unique || code_cmp(&vs->codes[unique - 1], &vs->codes[i]))
            vs->codes[unique++] = vs->codes[i];
    vs->n = unique;
    vec_push(&g_valuesets, vs);
    return vs->n ? (long)g_valuesets.n - 1 : -1;
}

/* Index among the emitted (non-empty, url-sorted) value sets; -1 when not expandable. */
static long emitted_valueset_index(const char *url)
{
    long index = 0;
    for (size_t i = 0; i < g_valuesets.n; i++) {
        gvalueset *vs = g_valuesets.items[i];
        if (!strcmp(vs->url, url))
            return vs->n ? index : -1;
        if (vs->n)
            index++;
    }
    return -1;
}

/* ---- emission ------------------------------------------------------------ */

static vec g_emitted; /* gnode* in element-table order */

static int node_name_cmp(const void *a, const void *b)
{
    const gnode *x = *(gnode *const *)a, *y = *(gnode *const *)b;
    return strcmp(x->name, y->name);
}

/* Lay out n's children contiguously (sorted), then recurse into inline ones. */
static void emit_children(gnode *n)
{
    sort(n->children.items, n->children.n, sizeof(void *), node_name_cmp);
    for (size_t i = 0; i < n->children.n; i++) {
        gnode *c = n->children.items[i];
        c->index = (long)g_emitted.n;
        vec_push(&g_emitted, c);
    }
    for (size_t i = 0; i < n->children.n; i++)
        emit_children(n->children.items[i]);
}

static int type_name_cmp(const void *a, const void *b)
{
    const gtype *x = *(gtype *const *)a, *y = *(gtype *const *)b;
    return strcmp(x->name, y->name);
}

static long type_index(const char *name)
{
    for (size_t i = 0; i < g_types.n; i++)
        if (!strcmp(((gtype *)g_types.items[i])->name, name))
            return (long)i;
    return -1;
}

static void put_cstring(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\%03o", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static const char *kind_enum(const char *kind)
{
    if (!strcmp(kind, "primitive-type"))
        return "FS_PRIMITIVE";
    if (!strcmp(kind, "resource"))
        return "FS_RESOURCE";
    return "FS_COMPLEX";
}

static void prim_enum(char *buf, size_t size, const gtype *t)
{
    if (strcmp(t->kind, "primitive-type")) {
        snprintf(buf, size, "FPRIM_NONE");
        return;
    }
    size_t k = (size_t)snprintf(buf, size, "FPRIM_");
    for (const char *p = t->name; *p && k + 1 < size; p++)
        buf[k++] = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    buf[k] = '\0';
}

static int long_cmp(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Where the run want[0..n) first occurs in refs, or refs->n when it does not. */
static size_t find_run(const vec *refs, const long *want, size_t n)
{
    for (size_t at = 0; at + n <= refs->n; at++) {
        size_t k = 0;
        while (k < n && (long)(intptr_t)refs->items[at + k] == want[k])
            k++;
        if (k == n)
            return at;
    }
    return refs->n;
}

/*
 * Place one element's Reference targets in the shared array `refs` as type
 * indices, sorted and unique (Media.device lists Device twice). Most lists
 * recur (Reference(Patient | Group), the single "Resource" of any), so a
 * run already present is reused instead of appended: that keeps the table a
 * fraction of the per-element total, and depends only on element order, so
 * the output stays reproducible. Returns the run's start; *count its length.
 */
static size_t place_targets(vec *refs, const gnode *n, size_t *count)
{
    long *want = xrealloc(NULL, n->target_names.n * sizeof *want);
    size_t len = 0;
    for (size_t k = 0; k < n->target_names.n; k++) {
        long ti = type_index(n->target_names.items[k]);
        if (ti < 0 || strcmp(((gtype *)g_types.items[ti])->kind, "resource"))
            die("%s: Reference target %s is not a resource type", n->path, (char *)n->target_names.items[k]);
        want[len++] = ti;
    }
    sort(want, len, sizeof *want, long_cmp);
    size_t unique = 0;
    for (size_t k = 0; k < len; k++)
        if (!unique || want[unique - 1] != want[k])
            want[unique++] = want[k];
    size_t at = find_run(refs, want, unique);
    if (at == refs->n)
        for (size_t k = 0; k < unique; k++)
            vec_push(refs, (void *)(intptr_t)want[k]);
    free(want);
    *count = unique;
    return unique ? at : 0;
}

/* The Reference targets of every emitted element; first[i], count[i] locate element i's run. */
static vec write_target_refs(FILE *out, uint16_t *first, uint16_t *count)
{
    vec refs = {0};
    for (size_t i = 0; i < g_emitted.n; i++) {
        size_t n;
        size_t at = place_targets(&refs, g_emitted.items[i], &n);
        if (at + n > UINT16_MAX)
            die("too many Reference targets for uint16 indices");
        first[i] = (uint16_t)at;
        count[i] = (uint16_t)n;
    }
    fputs("static const uint16_t target_refs[] = {", out);
    for (size_t i = 0; i < refs.n; i++)
        fprintf(out, "%s%ld", i == 0 ? "\n    " : i % 24 ? "," : ",\n    ", (long)(intptr_t)refs.items[i]);
    fputs("\n};\n\n", out);
    return refs;
}

static void write_output(const char *out_path)
{
    FILE *out = fopen(out_path, "w");
    if (!out)
        die("cannot write %s: %s", out_path, strerror(errno));
    fputs("/* Generated by fhir-schemagen from hl7.fhir.r4.examples@4.0.1. Do not edit. */\n"
          "#include \"fhir/schema.h\"\n\n",
          out);

    /* type refs, element by element */
    vec refs = {0};
    uint16_t *first = xrealloc(NULL, g_emitted.n * sizeof *first);
    for (size_t i = 0; i < g_emitted.n; i++) {
        gnode *n = g_emitted.items[i];
        first[i] = (uint16_t)refs.n;
        for (size_t k = 0; k < n->type_names.n; k++) {
            long ti = type_index(n->type_names.items[k]);
            if (ti < 0)
                die("%s: unknown type %s", n->path, (char *)n->type_names.items[k]);
            vec_push(&refs, (void *)(intptr_t)ti);
        }
    }
    if (refs.n > UINT16_MAX)
        die("too many type references for uint16 indices");
    fputs("static const uint16_t type_refs[] = {", out);
    for (size_t i = 0; i < refs.n; i++)
        fprintf(out, "%s%ld", i == 0 ? "\n    " : i % 24 ? "," : ",\n    ", (long)(intptr_t)refs.items[i]);
    fputs("\n};\n\n", out);

    /* constraint refs, element by element */
    vec crefs = {0};
    uint16_t *cfirst = xrealloc(NULL, g_emitted.n * sizeof *cfirst);
    for (size_t i = 0; i < g_emitted.n; i++) {
        gnode *n = g_emitted.items[i];
        cfirst[i] = (uint16_t)crefs.n;
        for (size_t k = 0; k < n->constraints.n; k++)
            vec_push(&crefs, (void *)(intptr_t)((gconstraint *)n->constraints.items[k])->index);
    }
    if (crefs.n > UINT16_MAX)
        die("too many constraint references for uint16 indices");
    fputs("static const uint16_t constraint_refs[] = {", out);
    for (size_t i = 0; i < crefs.n; i++)
        fprintf(out, "%s%ld", i == 0 ? "\n    " : i % 24 ? "," : ",\n    ", (long)(intptr_t)crefs.items[i]);
    fputs("\n};\n\n", out);

    uint16_t *tfirst = xrealloc(NULL, g_emitted.n * sizeof *tfirst);
    uint16_t *tcount = xrealloc(NULL, g_emitted.n * sizeof *tcount);
    vec trefs = write_target_refs(out, tfirst, tcount);

    fputs("static const fs_constraint constraints[] = {\n", out);
    for (size_t i = 0; i < g_constraints.n; i++) {
        gconstraint *g = g_constraints.items[i];
        fputs("    {", out);
        put_cstring(out, g->key);
        fprintf(out, ",%s,", g->is_error ? "true" : "false");
        put_cstring(out, g->human);
        fputc(',', out);
        put_cstring(out, g->expression);
        fputc(',', out);
        put_cstring(out, g->source);
        fputs("},\n", out);
    }
    fputs("};\n\n", out);

    fputs("static const fs_element elements[] = {\n", out);
    for (size_t i = 0; i < g_emitted.n; i++) {
        gnode *n = g_emitted.items[i];
        gnode *kids = n->ref_target ? n->ref_target : n;
        long child_first = kids->children.n ? ((gnode *)kids->children.items[0])->index : -1;
        long vs = n->valueset_url ? emitted_valueset_index(n->valueset_url) : -1;
        fputs("    {", out);
        put_cstring(out, n->name);
        fputc(',', out);
        put_cstring(out, n->path);
        fprintf(out, ",%uu,%uu,%u,%zu,%ld,%zu,%u,%d,%ld,%u,%zu,%u,%u},\n", n->min, n->max, first[i], n->type_names.n,
                child_first, kids->children.n, n->flags, n->strength, vs, cfirst[i], n->constraints.n, tfirst[i],
                tcount[i]);
    }
    fputs("};\n\n", out);

    fputs("static const fs_type types[] = {\n", out);
    for (size_t i = 0; i < g_types.n; i++) {
        gtype *t = g_types.items[i];
        char prim[64];
        prim_enum(prim, sizeof prim, t);
        fputs("    {", out);
        put_cstring(out, t->name);
        fprintf(out, ",%s,%s,%s,%ld,%ld},\n", kind_enum(t->kind), t->is_abstract ? "true" : "false", prim,
                t->base ? type_index(t->base) : -1, t->root_index);
    }
    fputs("};\n\n", out);

    /* value sets actually used (non-empty), sorted by url, with their codes */
    vec used = {0};
    for (size_t i = 0; i < g_valuesets.n; i++)
        if (((gvalueset *)g_valuesets.items[i])->n)
            vec_push(&used, g_valuesets.items[i]);
    fputs("static const fs_code codes[] = {\n", out);
    size_t code_total = 0;
    for (size_t i = 0; i < used.n; i++) {
        gvalueset *vs = used.items[i];
        for (size_t k = 0; k < vs->n; k++) {
            fputs("    {", out);
            put_cstring(out, vs->codes[k].system);
            fputc(',', out);
            put_cstring(out, vs->codes[k].code);
            fputs("},\n", out);
        }
        code_total += vs->n;
    }
    fputs("};\n\nstatic const fs_valueset valuesets[] = {\n", out);
    size_t offset = 0;
    for (size_t i = 0; i < used.n; i++) {
        gvalueset *vs = used.items[i];
        fputs("    {", out);
        put_cstring(out, vs->url);
        fprintf(out, ",%zu,%zu},\n", offset, vs->n);
        offset += vs->n;
    }
    fputs("};\n\n", out);
    write_search_params(out);
    write_extension_definitions(out);
    fprintf(out,
            "static const fs_schema schema = {\n"
            "    \"4.0.1\", types, %zu, elements, %zu, type_refs, %zu, valuesets, %zu, codes, %zu,\n"
            "    constraints, %zu, constraint_refs, %zu, search_params, %zu, target_refs, %zu,\n"
            "    extension_defs, %zu};\n\n"
            "const fs_schema *fs_r4(void) { return &schema; }\n",
            g_types.n, g_emitted.n, refs.n, used.n, code_total, g_constraints.n, crefs.n, unique_search_count(),
            trefs.n, g_extensions.n);
    if (fclose(out))
        die("cannot write %s", out_path);
}

/* ---- search parameters ----------------------------------------------------- */

/*
 * The union parts of a multi-base expression that apply to one base:
 * "AllergyIntolerance.patient | CarePlan.subject.where(...)" for CarePlan
 * keeps "CarePlan.subject.where(...)". Splits on top-level '|' only.
 */
static char *expression_for(const char *expression, const char *base)
{
    size_t cap = strlen(expression) + 1, len = 0;
    char *out = xrealloc(NULL, cap);
    out[0] = '\0';
    const char *part = expression;
    int depth = 0;
    for (const char *p = expression;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        if (*p && !(*p == '|' && depth == 0))
            continue;
        const char *a = part, *b = p;
        while (a < b && (*a == ' ' || *a == '('))
            a++;
        size_t blen = strlen(base);
        if ((size_t)(b - a) > blen && !strncmp(a, base, blen) && (a[blen] == '.' || a[blen] == ' ')) {
            const char *start = part;
            while (start < b && *start == ' ')
                start++;
            const char *end = b;
            while (end > start && end[-1] == ' ')
                end--;
            len += (size_t)snprintf(out + len, cap - len, "%s%.*s", len ? " | " : "", (int)(end - start), start);
        }
        if (!*p)
            break;
        part = p + 1;
    }
    if (!len) { /* no part names the base explicitly (e.g. "Resource.id"): keep it whole */
        free(out);
        return xstrdup(expression);
    }
    return out;
}

static void add_search_parameter(json_object *sp)
{
    const char *code = jstr(sp, "code"), *kind = jstr(sp, "type"), *expr = jstr(sp, "expression");
    const char *url = jstr(sp, "url");
    json_object *bases = jget(sp, "base");
    if (!code || !kind || !expr || !url || strncmp(url, "http://hl7.org/fhir/SearchParameter/", 36))
        return; /* extension search parameters and those without an expression are not core */
    for (size_t i = 0; i < json_object_array_length(bases); i++) {
        const char *base = json_object_get_string(json_object_array_get_idx(bases, i));
        if (type_index(base) < 0)
            continue;
        gsearch *g = calloc(1, sizeof *g);
        if (!g)
            die("out of memory");
        g->resource = xstrdup(base);
        g->code = xstrdup(code);
        g->kind = xstrdup(kind);
        g->expression = expression_for(expr, base);
        g->url = xstrdup(url);
        vec_push(&g_search, g);
    }
}

static int search_cmp(const void *a, const void *b)
{
    const gsearch *x = *(gsearch *const *)a, *y = *(gsearch *const *)b;
    int c = strcmp(x->resource, y->resource);
    return c ? c : strcmp(x->code, y->code);
}

/* Sort order with a tie-break on the URL, so that which duplicate comes first is reproducible. */
static int search_sort_cmp(const void *a, const void *b)
{
    int c = search_cmp(a, b);
    return c ? c : strcmp((*(gsearch *const *)a)->url, (*(gsearch *const *)b)->url);
}

static void write_search_params(FILE *out)
{
    static const char *const kinds[][2] = {{"number", "FS_SEARCH_NUMBER"},       {"date", "FS_SEARCH_DATE"},
                                           {"string", "FS_SEARCH_STRING"},       {"token", "FS_SEARCH_TOKEN"},
                                           {"reference", "FS_SEARCH_REFERENCE"}, {"composite", "FS_SEARCH_COMPOSITE"},
                                           {"quantity", "FS_SEARCH_QUANTITY"},   {"uri", "FS_SEARCH_URI"},
                                           {"special", "FS_SEARCH_SPECIAL"}};
    fputs("static const fs_search_param search_params[] = {\n", out);
    for (size_t i = 0; i < g_search.n; i++) {
        gsearch *g = g_search.items[i];
        if (i > 0 && !search_cmp(&g_search.items[i - 1], &g_search.items[i]))
            continue; /* the same (base, code) defined twice: keep the first */
        const char *kind = "FS_SEARCH_SPECIAL";
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
            if (!strcmp(g->kind, kinds[k][0]))
                kind = kinds[k][1];
        fputs("    {", out);
        put_cstring(out, g->resource);
        fputc(',', out);
        put_cstring(out, g->code);
        fprintf(out, ",%s,", kind);
        put_cstring(out, g->expression);
        fputc(',', out);
        put_cstring(out, g->url);
        fputs("},\n", out);
    }
    fputs("};\n\n", out);
}

static size_t unique_search_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < g_search.n; i++)
        n += !(i > 0 && !search_cmp(&g_search.items[i - 1], &g_search.items[i]));
    return n;
}

/* ---- main ------------------------------------------------------------------ */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The package's file names, sorted so the output never depends on readdir order. */
static vec list_files(const char *dir)
{
    vec files = {0};
    DIR *d = opendir(dir);
    if (!d)
        die("cannot open %s: %s", dir, strerror(errno));
    struct dirent *ent;
    while ((ent = readdir(d)))
        if (strstr(ent->d_name, ".json"))
            vec_push(&files, xstrdup(ent->d_name));
    closedir(d);
    sort(files.items, files.n, sizeof(void *), str_cmp);
    return files;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* Keep the outputs' value sets in url order (fs_valueset_by_url bsearches). */
static int vs_url_cmp(const void *a, const void *b)
{
    const gvalueset *x = *(gvalueset *const *)a, *y = *(gvalueset *const *)b;
    return strcmp(x->url, y->url);
}

/* ---- core extension definitions ---------------------------------------------- */

/*
 * Each extension StructureDefinition of the package, reduced to what the
 * profile checker (fhir/profile.c) reads: url, type, derivation, base,
 * context, and the differential without its prose. The validator loads
 * them into a registry on first use, so core extensions are checked like a
 * guide's (value type, cardinality, nested extensions, context of use).
 */
typedef struct gextension {
    const char *url;
    char *json;
} gextension;

static void add_extension_definition(json_object *sd)
{
    static const char *const kept[] = {"resourceType",   "url",     "name",
                                       "type",           "kind",    "derivation",
                                       "baseDefinition", "context", "contextInvariant"};
    static const char *const prose[] = {"short",   "definition", "comment",          "requirements", "alias",
                                        "mapping", "meaning",    "isModifierReason", "example"};
    const char *url = jstr(sd, "url");
    json_object *elements = jget(jget(sd, "differential"), "element");
    if (!url || !elements)
        return;
    json_object *out = json_object_new_object();
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        json_object *v = jget(sd, kept[i]);
        if (v)
            json_object_object_add(out, kept[i], json_object_get(v));
    }
    json_object *diff = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(elements); i++) {
        json_object *el = json_object_array_get_idx(elements, i), *copy = json_object_new_object();
        json_object *binding = jget(el, "binding");
        const char *vs = jstr(binding, "valueSet");
        if (vs && strength_of(jstr(binding, "strength")) == BIND_REQUIRED) {
            char *url_only = xstrdup(vs), *bar = strchr(url_only, '|');
            if (bar)
                *bar = '\0';
            vec_push(&g_extension_bindings, url_only);
        }
        json_object_object_foreach(el, key, val)
        {
            bool drop = false;
            for (size_t k = 0; k < sizeof prose / sizeof *prose && !drop; k++)
                drop = !strcmp(key, prose[k]);
            if (!drop)
                json_object_object_add(copy, key, json_object_get(val));
        }
        json_object_array_add(diff, copy);
    }
    json_object *differential = json_object_new_object();
    json_object_object_add(differential, "element", diff);
    json_object_object_add(out, "differential", differential);
    gextension *g = calloc(1, sizeof *g);
    if (!g)
        die("out of memory");
    g->url = xstrdup(url);
    g->json = xstrdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(out);
    vec_push(&g_extensions, g);
}

static int extension_url_cmp(const void *a, const void *b)
{
    return strcmp((*(gextension *const *)a)->url, (*(gextension *const *)b)->url);
}

static void write_extension_definitions(FILE *out)
{
    sort(g_extensions.items, g_extensions.n, sizeof(void *), extension_url_cmp);
    fputs("static const fs_extension_def extension_defs[] = {\n", out);
    for (size_t i = 0; i < g_extensions.n; i++) {
        gextension *g = g_extensions.items[i];
        fputs("    {", out);
        put_cstring(out, g->url);
        fputs(",\n     ", out);
        put_cstring(out, g->json);
        fputs("},\n", out);
    }
    fputs("};\n\n", out);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fhir-schemagen PACKAGE_DIR OUT.c\n");
        return 2;
    }
    const char *dir = argv[1];
    vec files = list_files(dir);
    for (size_t i = 0; i < files.n; i++) {
        const char *f = files.items[i];
        if (has_prefix(f, "ValueSet-") || has_prefix(f, "CodeSystem-")) {
            json_object *o = load_json(dir, f);
            const char *url = jstr(o, "url");
            url_index *ix = has_prefix(f, "ValueSet-") ? &g_vs_index : &g_cs_index;
            if (url) {
                vec_push(&ix->urls, (void *)url);
                vec_push(&ix->files, o);
            }
        } else if (has_prefix(f, "StructureDefinition-")) {
            json_object *sd = load_json(dir, f);
            const char *kind = jstr(sd, "kind");
            const char *derivation = jstr(sd, "derivation");
            if (!kind || !strcmp(kind, "logical"))
                continue;
            if (derivation && !strcmp(derivation, "constraint") && jstr(sd, "type") &&
                !strcmp(jstr(sd, "type"), "Extension")) {
                add_extension_definition(sd);
                continue;
            }
            if (derivation ? strcmp(derivation, "specialization") != 0 : !jget(sd, "abstract"))
                continue;
            vec_push(&g_types, type_from_sd(sd));
        }
    }
    sort(g_types.items, g_types.n, sizeof(void *), type_name_cmp);
    /* search parameters need the sorted types (to skip bases that are not types) */
    for (size_t i = 0; i < files.n; i++) {
        const char *f = files.items[i];
        if (has_prefix(f, "SearchParameter-"))
            add_search_parameter(load_json(dir, f));
    }
    sort(g_search.items, g_search.n, sizeof(void *), search_sort_cmp);
    for (size_t i = 0; i < g_types.n; i++) {
        gtype *t = g_types.items[i];
        t->root_index = (long)g_emitted.n;
        t->root->index = t->root_index;
        vec_push(&g_emitted, t->root);
        emit_children(t->root);
    }
    /* Expand every required binding first so value set indices are final and sorted. */
    for (size_t i = 0; i < g_emitted.n; i++) {
        gnode *n = g_emitted.items[i];
        if (n->valueset_url)
            valueset_index(n->valueset_url);
    }
    for (size_t i = 0; i < g_extension_bindings.n; i++) /* the profile checker finds them by url */
        valueset_index(g_extension_bindings.items[i]);
    sort(g_valuesets.items, g_valuesets.n, sizeof(void *), vs_url_cmp);
    write_output(argv[2]);
    size_t expanded = 0;
    for (size_t i = 0; i < g_valuesets.n; i++)
        expanded += ((gvalueset *)g_valuesets.items[i])->n > 0;
    fprintf(stderr,
            "fhir-schemagen: %zu types, %zu elements, %zu of %zu required value sets expanded, %zu invariants, "
            "%zu search parameters, %zu extension definitions\n",
            g_types.n, g_emitted.n, expanded, g_valuesets.n, g_constraints.n, unique_search_count(), g_extensions.n);
    return 0;
}
