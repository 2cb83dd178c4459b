/*
 * mappings/engine.c — the StructureMap interpreter (see engine.h).
 *
 * A run keeps a stack of variables: source variables hold FHIRPath items
 * (nodes of the source doc, or System values from defaults and literals),
 * target variables hold json-c objects of the result together with what is
 * known of their type (a core element of the schema, or an element path of
 * a logical model). Rules bind sources by walking the JSON natively (no
 * FHIRPath for plain navigation); FHIRPath runs for where/check/log,
 * evaluate() and parameter paths, in one arena reset before each use.
 *
 * Reading is tracked per source node (one byte per node): a bound source
 * marks its node, a copied value marks its whole subtree. After the run the
 * tree is walked and every topmost subtree without a mark is reported.
 *
 * Memory: the context owns its tables (logical models point into the
 * registry's definitions, which outlive it) and references to ConceptMaps.
 * A target's record (sm_target.engine_memo, written once by the first run
 * that needs it) is owned by the map and freed by sm_free. Each thread keeps
 * one FHIRPath arena between runs, freed by a thread key's destructor.
 * A run owns the result until it succeeds; objects made by a target without
 * a context are owned by the run's `loose` array and released at the end.
 */
#include "mappings/engine.h"

#include "fhir/array.h"
#include "fhir/json_write.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SD_PREFIX "http://hl7.org/fhir/StructureDefinition/"

/* ---- logical models ------------------------------------------------------ */

typedef struct lm_element {
    const char *path; /* "InsurerProvider.address.line" (choice: "...value[x]") */
    const char *name; /* last segment without [x] */
    size_t name_len;
    bool choice;
    uint32_t max; /* FS_UNBOUNDED for '*' */
    const char **types;
    const fs_type **fs_types; /* the schema's type of each (NULL: not a schema type), found once at load for fits() */
    size_t type_count;
} lm_element;

typedef struct lm_model {
    const char *url;
    const char *type;         /* the root element path: the instances' resourceType */
    size_t url_len, type_len; /* compared first: most names looked up are not models */
    lm_element *els;
    size_t count;
} lm_model;

/*
 * A ConceptMap group indexed for translate(): the codes sorted, each with the
 * first target its elements map it to (in document order), so a translation
 * is a binary search rather than a walk over json-c objects. Strings point
 * into the ConceptMap (the context holds a reference to it).
 */
typedef struct cm_code {
    const char *code, *target, *display;
    size_t order; /* the element's position: among equal codes the first wins */
} cm_code;

typedef struct cm_group {
    const char *source, *target;
    const char *unmapped_mode, *unmapped_code, *unmapped_display;
    cm_code *codes; /* sorted by code, one per code */
    size_t count;
} cm_group;

typedef struct conceptmap_entry {
    const char *url;
    size_t url_len;
    json_object *cm; /* reference held */
    cm_group *groups;
    size_t group_count;
    bool indexed; /* groups complete (else translate walks the JSON) */
} conceptmap_entry;

struct mpe_context {
    uint64_t id; /* unique in this process, never reused (the memos key on it) */
    const fs_schema *schema;
    lm_model *models;
    size_t model_count;
    conceptmap_entry *cms;
    size_t cm_count, cm_cap;
};

static const char *jstr(const json_object *o, const char *key)
{
    json_object *v = json_object_object_get(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static size_t jlen(const json_object *o, const char *key)
{
    json_object *v = json_object_object_get(o, key);
    return v && json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
}

static json_object *jat(const json_object *o, const char *key, size_t i)
{
    return json_object_array_get_idx(json_object_object_get(o, key), i);
}

static const char *strip_sd(const char *name)
{
    return name && !strncmp(name, SD_PREFIX, strlen(SD_PREFIX)) ? name + strlen(SD_PREFIX) : name;
}

static void load_model(lm_model *m, const json_object *sd, const fs_schema *schema)
{
    m->url = jstr(sd, "url");
    m->type = jstr(sd, "type");
    json_object *view = json_object_object_get(sd, "snapshot");
    if (!jlen(view, "element"))
        view = json_object_object_get(sd, "differential");
    m->count = jlen(view, "element");
    m->els = m->count ? calloc(m->count, sizeof *m->els) : NULL;
    if (m->count && !m->els)
        abort();
    for (size_t i = 0; i < m->count; i++) {
        json_object *el = jat(view, "element", i);
        lm_element *e = &m->els[i];
        e->path = jstr(el, "path") ? jstr(el, "path") : "";
        const char *dot = strrchr(e->path, '.');
        e->name = dot ? dot + 1 : e->path;
        e->name_len = strlen(e->name);
        if (e->name_len > 3 && !strcmp(e->name + e->name_len - 3, "[x]")) {
            e->choice = true;
            e->name_len -= 3;
        }
        const char *max = jstr(el, "max");
        e->max = !max || !strcmp(max, "*") ? FS_UNBOUNDED : (uint32_t)atoi(max);
        if (!max && !dot)
            e->max = 1;
        e->type_count = jlen(el, "type");
        e->types = e->type_count ? calloc(e->type_count, sizeof *e->types) : NULL;
        e->fs_types = e->type_count ? calloc(e->type_count, sizeof *e->fs_types) : NULL;
        if (e->type_count && (!e->types || !e->fs_types))
            abort();
        for (size_t k = 0; k < e->type_count; k++) {
            e->types[k] = strip_sd(jstr(jat(el, "type", k), "code"));
            e->fs_types[k] = e->types[k] ? fs_type_by_name(schema, e->types[k], strlen(e->types[k])) : NULL;
        }
        if (!m->type && !dot)
            m->type = e->path;
    }
    if (!m->type)
        m->type = jstr(sd, "name");
    m->url_len = m->url ? strlen(m->url) : 0;
    m->type_len = m->type ? strlen(m->type) : 0;
}

mpe_context *mpe_context_new(const fs_schema *schema, const pf_registry *models)
{
    mpe_context *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    static _Atomic uint64_t next_id = 1;
    c->id = atomic_fetch_add(&next_id, 1);
    c->schema = schema ? schema : fs_r4();
    size_t n = models ? pf_logical_count(models) : 0;
    c->models = n ? calloc(n, sizeof *c->models) : NULL;
    for (size_t i = 0; i < n && c->models; i++)
        load_model(&c->models[c->model_count++], pf_logical_definition(pf_logical_at(models, i)), c->schema);
    return c;
}

void mpe_context_free(mpe_context *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->model_count; i++) {
        for (size_t k = 0; k < c->models[i].count; k++) {
            free(c->models[i].els[k].types);
            free(c->models[i].els[k].fs_types);
        }
        free(c->models[i].els);
    }
    for (size_t i = 0; i < c->cm_count; i++) {
        for (size_t g = 0; g < c->cms[i].group_count; g++)
            free(c->cms[i].groups[g].codes);
        free(c->cms[i].groups);
        json_object_put(c->cms[i].cm);
    }
    free(c->cms);
    free(c->models);
    free(c);
}

static bool maps_to(const char *equivalence);

static int code_cmp(const void *a, const void *b)
{
    return strcmp(((const cm_code *)a)->code, ((const cm_code *)b)->code);
}

static int code_order(const void *a, const void *b)
{
    const cm_code *x = a, *y = b;
    int c = strcmp(x->code, y->code);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* One group's codes: the first target that maps each element (as translate_one would find it), sorted. */
static bool index_group(json_object *grp, cm_group *out)
{
    json_object *unmapped = json_object_object_get(grp, "unmapped");
    *out = (cm_group){.source = jstr(grp, "source"),
                      .target = jstr(grp, "target"),
                      .unmapped_mode = jstr(unmapped, "mode"),
                      .unmapped_code = jstr(unmapped, "code"),
                      .unmapped_display = jstr(unmapped, "display")};
    size_t n = jlen(grp, "element");
    out->codes = n ? malloc(n * sizeof *out->codes) : NULL;
    if (n && !out->codes)
        return false;
    for (size_t e = 0; e < n; e++) {
        json_object *el = jat(grp, "element", e);
        const char *code = jstr(el, "code");
        for (size_t k = 0; code && k < jlen(el, "target"); k++) {
            json_object *tg = jat(el, "target", k);
            if (maps_to(jstr(tg, "equivalence")) && jstr(tg, "code")) {
                out->codes[out->count++] = (cm_code){code, jstr(tg, "code"), jstr(tg, "display"), e};
                break;
            }
        }
    }
    qsort(out->codes, out->count, sizeof *out->codes, code_order);
    size_t kept = 0; /* equal codes: keep the first in document order */
    for (size_t i = 0; i < out->count; i++)
        if (!kept || strcmp(out->codes[kept - 1].code, out->codes[i].code))
            out->codes[kept++] = out->codes[i];
    out->count = kept;
    return true;
}

static bool index_conceptmap(conceptmap_entry *e)
{
    size_t n = jlen(e->cm, "group");
    e->groups = n ? calloc(n, sizeof *e->groups) : NULL;
    if (n && !e->groups)
        return false;
    for (; e->group_count < n; e->group_count++)
        if (!index_group(jat(e->cm, "group", e->group_count), &e->groups[e->group_count]))
            return false;
    e->indexed = true;
    return true;
}

bool mpe_add_conceptmap(mpe_context *c, json_object *cm, oo_list *issues)
{
    const char *url = jstr(cm, "url");
    bool taken = false;
    for (size_t i = 0; url && i < c->cm_count; i++)
        taken |= !strcmp(c->cms[i].url, url);
    if (!url || taken) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "a ConceptMap for the engine needs a url of its own%s%s",
               url ? ": taken: " : "", url ? url : "");
        return false;
    }
    if (!fa_reserve(&c->cms, &c->cm_cap, c->cm_count + 1, sizeof *c->cms))
        return false;
    conceptmap_entry *e = &c->cms[c->cm_count++];
    *e = (conceptmap_entry){.url = url, .url_len = strlen(url), .cm = json_object_get(cm)};
    if (!index_conceptmap(e)) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "out of memory");
        return false; /* the entry stays (freed with the context) but has no index: translate uses the JSON */
    }
    return true;
}

/* ---- types of targets ---------------------------------------------------- */

/* What the engine knows of a target object's type: a core element or a logical-model element path. */
typedef struct ttype {
    const fs_element *cel; /* core: the element whose children apply (a type's root or an inline backbone) */
    const lm_model *model; /* logical: the model and the element path whose children apply */
    const char *lpath;
    const char *name; /* the type name (for create() and messages); NULL = unknown */
    bool resource;    /* core: cel is the root of a resource type (known when resolved, not searched per instance) */
} ttype;

/* A child element of a ttype, resolved. */
typedef struct elinfo {
    bool known;
    bool many;
    bool choice;
    size_t type_count;  /* its types: ei_type(r, ei, 0 .. type_count-1), read from cel or lel, never copied */
    const char *chosen; /* a choice given with its suffix ("valueString"): that type */
    const fs_element *cel;
    const lm_model *model;
    const lm_element *lel;
    /* a target's element (target_element): child_type(child_for), found once per map and context; child_for is
       its single type (a schema or model string, never freed while the context lives) or NULL */
    const char *child_for;
    ttype child_tt;
    bool name_checked;   /* target_element: name_is_static below is known for the target's element name */
    bool name_is_static; /* put_key_opts' test for that name (the key when no choice suffix is added) */
} elinfo;

typedef struct run run;
static bool resolve_type(const run *r, const char *name, ttype *out);

/*
 * Memos of type and element resolution, one set per thread, kept across
 * runs: a map's targets resolve the same few types and elements in every
 * run, and the uncached lookups compare strings against every `uses` line,
 * logical model and schema type. Two-way; an entry is keyed by the name's
 * text (its slot comes from the pointer, see memo_slot, but a hit compares
 * the text: some names are freed during a run) and by the ids of the context
 * and map it was computed for (ids are never reused, so an entry of a freed
 * context or map can never match). Per thread, so runs on different threads
 * share nothing.
 */
#define MEMO_SLOTS 128 /* even: slots 2k and 2k+1 are the two ways of a set */
#define MEMO_KEY 48

typedef struct type_memo {
    uint64_t ctx, map; /* 0 = empty slot */
    char name[MEMO_KEY];
    bool ok;
    ttype tt;
} type_memo;

typedef struct elinfo_memo {
    uint64_t ctx;      /* 0 = empty slot */
    const void *scope; /* the ttype's cel or lpath */
    char name[MEMO_KEY];
    bool ok;
    elinfo ei;
} elinfo_memo;

static _Thread_local type_memo type_memos[MEMO_SLOTS];
static _Thread_local elinfo_memo elinfo_memos[MEMO_SLOTS];

/*
 * The FHIRPath arena of a run: one per thread, kept between runs. Made per
 * run, its first 16 KB block was malloc'd on the first evaluation, and a
 * request that large makes glibc consolidate every small block freed so far:
 * on every run that evaluates FHIRPath. Taken out of its slot while a run
 * uses it (a run nested in another makes its own); one grown past 1 MB is
 * freed rather than kept; the thread's key destructor frees it when the
 * thread exits.
 */
#define ARENA_KEEP_MAX (1u << 20)

static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static bool arena_key_made;

static void arena_destroy(void *a)
{
    fp_arena_free(a);
}

static void arena_key_init(void)
{
    arena_key_made = pthread_key_create(&arena_key, arena_destroy) == 0;
}

static fp_arena *take_arena(void)
{
    pthread_once(&arena_once, arena_key_init);
    fp_arena *a = arena_key_made ? pthread_getspecific(arena_key) : NULL;
    if (a && pthread_setspecific(arena_key, NULL) == 0)
        return a;
    return fp_arena_new();
}

static void give_arena(fp_arena *a)
{
    if (a && arena_key_made && fp_arena_capacity(a) <= ARENA_KEEP_MAX && !pthread_getspecific(arena_key) &&
        pthread_setspecific(arena_key, a) == 0) {
        fp_arena_reset(a);
        return;
    }
    fp_arena_free(a);
}

/* ---- the run ------------------------------------------------------------- */

typedef struct var {
    const char *name; /* NULL: a source bound without a variable (keeps positions simple) */
    bool target;
    fp_item item;     /* source */
    json_object *obj; /* target (borrowed: owned by the result tree or the run's loose list) */
    ttype tt;
} var;

/*
 * Memos of schema children and of target elements, per thread and kept
 * across runs like the type memos: sources and where-clauses ask fs_child
 * the same question for every item of a list (each of 25 extensions: its
 * `url`), targets look up their element per value. Keyed by pointers the
 * map owns (a source's element name, a target) with the map's id (never
 * reused, so a pointer of a freed map can never match), and the scope (an
 * element of the static schema tables, or a logical model's path).
 */
#define CHILD_SLOTS 256 /* even: two ways (child_way) */
#define TARGET_SLOTS 256

typedef struct child_memo {
    uint64_t map; /* 0 = empty */
    const char *name;
    const fs_element *scope, *el;
    const fs_type *ct;
    char key[32]; /* a choice's key as the source has it ("valueCoding"); "" = the name itself */
} child_memo;

typedef struct target_memo {
    uint64_t ctx, map; /* 0 = empty */
    const sm_target *t;
    const void *scope;
    bool ok;
    elinfo ei;
} target_memo;

static _Thread_local child_memo child_memos[CHILD_SLOTS];

/*
 * A memo of type_index's pointer search, per thread: Extension.value[x]
 * allows ~50 types, searched in order for each value put into an extension
 * (Coding is the 25th). Keyed by the element (schema or model) and the type
 * name's pointer; an entry is used only while the element's k-th type is
 * still that very pointer.
 */
#define CHOICE_SLOTS 64

typedef struct choice_memo {
    const void *el; /* NULL = empty */
    const char *name;
    size_t k;
} choice_memo;

static _Thread_local choice_memo choice_memos[CHOICE_SLOTS];
static _Thread_local target_memo target_memos[TARGET_SLOTS];

static size_t pointer_slot(const void *a, uintptr_t b, size_t slots)
{
    uint64_t h = ((uint64_t)(uintptr_t)a * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)b * 0xc2b2ae3d27d4eb4full);
    return (size_t)(h >> 40) % slots;
}

struct run {
    const mpe_context *ctx;
    const sm_map *map;
    const mpe_options *opts;
    const fs_schema *schema;
    const fj_doc *doc;
    uint8_t *read; /* per source node: read by a rule */
    /* mpe_run's local array (local_vars), or malloc'd when a run binds more. Grown from nothing on the heap, the
       stack's reallocs past 1 KB each made glibc merge every small block freed so far (malloc_consolidate), a
       seventh of treatment-plan-to-careplan's time. */
    var *vars, *local_vars;
    size_t var_count, var_cap;
    size_t frame; /* first variable of the running group */
    fp_arena *arena;
    fp_env env;
    oo_list *issues;
    bool failed;
    json_object *loose;
    unsigned depth, max_depth;
    uint32_t *parents; /* built on the first error that needs a path */
};

/*
 * The memo slot of a name: by its pointer, not a hash of its text (hashing
 * every name was a tenth of the memo's cost). The entry still keeps the text
 * and a hit compares it, so a name at a new address only misses once (the
 * same few type names come from the schema's and the map's tables), and a
 * freed name's address reused for other text can never match.
 */
static size_t memo_slot(const char *name, uintptr_t salt)
{
    return pointer_slot(name, salt, MEMO_SLOTS);
}

/* ---- source paths -------------------------------------------------------- */

static bool build_parents(run *r)
{
    const fj_doc *d = r->doc;
    r->parents = malloc((size_t)d->count * sizeof *r->parents);
    if (!r->parents)
        return false;
    for (uint32_t i = 0; i < d->count; i++)
        r->parents[i] = UINT32_MAX;
    for (uint32_t i = 0; i < d->count; i++) {
        const fj_node *n = &d->nodes[i];
        if (n->type != FJ_OBJECT && n->type != FJ_ARRAY)
            continue;
        for (uint32_t j = i + 1; j < i + n->size; j = fj_next(d, j))
            r->parents[j] = i;
    }
    return true;
}

/* The FHIRPath-style location of source node idx into b: Patient.name[0].given[1]. */
static void node_path(run *r, uint32_t idx, fj_buf *b)
{
    if (!r->parents && !build_parents(r))
        return;
    uint32_t chain[160];
    size_t n = 0;
    for (uint32_t i = idx; i != UINT32_MAX && n < 160; i = r->parents[i])
        chain[n++] = i;
    const fj_doc *d = r->doc;
    uint32_t root = chain[n - 1];
    uint32_t rt = d->nodes[root].type == FJ_OBJECT ? fj_get(d, root, "resourceType") : UINT32_MAX;
    if (rt != UINT32_MAX && d->nodes[rt].type == FJ_STRING)
        fj_buf_append(b, fj_str(d, rt), d->nodes[rt].len);
    else
        fj_buf_puts(b, "$this");
    for (size_t k = n - 1; k-- > 0;) {
        uint32_t parent = chain[k + 1], me = chain[k];
        if (d->nodes[parent].type == FJ_ARRAY) {
            uint32_t pos = 0;
            for (uint32_t j = parent + 1; j < me; j = fj_next(d, j))
                pos++;
            fj_buf_printf(b, "[%u]", pos);
        } else {
            uint32_t key = me - 1; /* a member's value follows its key node */
            fj_buf_puts(b, ".");
            fj_buf_append(b, fj_str(d, key), d->nodes[key].len);
        }
    }
}

/* The innermost bound source node, for locations in messages. */
static uint32_t current_node(const run *r)
{
    for (size_t i = r->var_count; i-- > 0;)
        if (!r->vars[i].target && r->vars[i].item.kind == FP_NODE && r->vars[i].item.u.node.doc == r->doc &&
            r->vars[i].item.u.node.index != FP_NO_NODE)
            return r->vars[i].item.u.node.index;
    return UINT32_MAX;
}

static bool fail(run *r, const sm_rule *rule, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(run *r, const sm_rule *rule, const char *fmt, ...)
{
    if (r->failed)
        return false;
    r->failed = true;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fj_buf path = {0};
    uint32_t node = current_node(r);
    if (node != UINT32_MAX)
        node_path(r, node, &path);
    oo_add(r->issues, OO_ERROR, OO_PROCESSING, path.data, 0, 0, "%s%s%s", rule ? rule->where : "", rule ? ": " : "",
           msg);
    fj_buf_free(&path);
    return false;
}

static void mark(run *r, const fp_item *it)
{
    if (it->kind == FP_NODE && it->u.node.doc == r->doc && it->u.node.index != FP_NO_NODE)
        r->read[it->u.node.index] = 1;
}

static void mark_tree(run *r, const fp_item *it)
{
    if (it->kind == FP_NODE && it->u.node.doc == r->doc && it->u.node.index != FP_NO_NODE)
        memset(r->read + it->u.node.index, 1, r->doc->nodes[it->u.node.index].size);
}

/* ---- variables ----------------------------------------------------------- */

/*
 * A new variable slot, not yet set: the callers write its fields in place.
 * (A cleared slot written again, or a variable built in a temporary and
 * copied, was a `rep stos` or a store-forwarding stall per bound item.)
 */
static var *push_var(run *r)
{
    if (r->var_count == r->var_cap) {
        /* the stack starts in mpe_run's frame (local_vars); past that, on the heap */
        size_t cap = r->var_cap * 2;
        var *grown = r->vars == r->local_vars ? malloc(cap * sizeof *grown) : realloc(r->vars, cap * sizeof *grown);
        if (!grown)
            return NULL;
        if (r->vars == r->local_vars)
            memcpy(grown, r->local_vars, r->var_count * sizeof *grown);
        r->vars = grown;
        r->var_cap = cap;
    }
    return &r->vars[r->var_count++];
}

/* Names are interned per map (sm_map.names) and a frame's variables all come from its group's map: pointers decide. */
static var *find_var(run *r, const char *name)
{
    for (size_t i = r->var_count; i-- > r->frame;)
        if (r->vars[i].name == name && name)
            return &r->vars[i];
    return NULL;
}

/* ---- FHIRPath ------------------------------------------------------------ */

/* Evaluate e with focus (NULL = empty) and the source variables in scope. Results live until the next call. */
static bool eval(run *r, const sm_rule *rule, const char *what, const fp_expr *e, const fp_item *focus,
                 fp_collection *out)
{
    fp_arena_reset(r->arena);
    size_t n = 0;
    for (size_t i = r->frame; i < r->var_count; i++)
        n += r->vars[i].name && !r->vars[i].target;
    fp_var *vars = n ? fp_arena_alloc(r->arena, n * sizeof *vars) : NULL;
    if (n && !vars)
        return fail(r, rule, "out of memory");
    size_t k = 0;
    /* innermost first: the engine searches variables in order, so a nearer binding hides an outer one */
    for (size_t i = r->var_count; i-- > r->frame;)
        if (r->vars[i].name && !r->vars[i].target)
            vars[k++] = (fp_var){.name = r->vars[i].name, .value = {.items = &r->vars[i].item, .count = 1}};
    fp_env env = r->env;
    env.vars = vars;
    env.var_count = n;
    fp_collection input = {.items = (fp_item *)focus, .count = focus ? 1 : 0};
    fp_error err;
    if (!fp_evaluate(e, &env, &input, r->arena, out, &err))
        return fail(r, rule, "%s (%s): %s", what, fp_expr_source(e), err.message);
    return true;
}

/* ---- JSON out of the source ---------------------------------------------- */

static json_object *number_json(const char *text, size_t len, bool integral)
{
    char buf[64];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, text, len);
    buf[len] = 0;
    if (integral && len < 18)
        return json_object_new_int64(strtoll(buf, NULL, 10));
    return json_object_new_double_s(strtod(buf, NULL), buf);
}

static json_object *node_json(const fj_doc *d, uint32_t i)
{
    const fj_node *n = &d->nodes[i];
    switch ((fj_type)n->type) {
    case FJ_NULL: return NULL;
    case FJ_FALSE: return json_object_new_boolean(0);
    case FJ_TRUE: return json_object_new_boolean(1);
    case FJ_NUMBER: return number_json(fj_str(d, i), n->len, n->flags & FJ_FLAG_NUMBER_INTEGRAL);
    case FJ_STRING: return json_object_new_string_len(fj_str(d, i), (int)n->len);
    case FJ_ARRAY: {
        json_object *a = json_object_new_array_ext((int)n->len);
        for (uint32_t j = i + 1; j < i + n->size; j = fj_next(d, j))
            json_object_array_add(a, node_json(d, j));
        return a;
    }
    case FJ_OBJECT: {
        json_object *o = json_object_new_object();
        for (uint32_t j = i + 1; j < i + n->size; j = fj_next(d, j + 1)) {
            char *key = strndup(fj_str(d, j), d->nodes[j].len);
            if (!key)
                abort();
            json_object_object_add(o, key, node_json(d, j + 1));
            free(key);
        }
        return o;
    }
    }
    return NULL;
}

/* ---- values -------------------------------------------------------------- */

/* A value for a target: json (a reference the holder owns), its FHIR type name and, for objects, its ttype. */
typedef struct mval {
    json_object *json;
    const char *type;
    ttype tt;
} mval;

static const char *system_type(const fp_item *it)
{
    switch ((fp_kind)it->kind) {
    case FP_BOOLEAN: return "boolean";
    case FP_INTEGER: return "integer";
    case FP_DECIMAL: return "decimal";
    case FP_STRING: return "string";
    case FP_DATE: return "date";
    case FP_DATETIME: return "dateTime";
    case FP_TIME: return "time";
    case FP_QUANTITY: return "Quantity";
    default: return NULL;
    }
}

/* The item's text as toString() gives it, malloc'd; NULL when it has none (an object). */
static char *item_text(run *r, const fp_item *it)
{
    fp_item v;
    if (!fp_system_value(r->schema, it, &v))
        return NULL;
    size_t n = fp_item_text(&v, NULL, 0);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    fp_item_text(&v, s, n + 1);
    s[n] = 0;
    return s;
}

/* An item as a value to put in a target (copy semantics); marks what it reads. */
static bool item_value(run *r, const sm_rule *rule, const fp_item *it, mval *out)
{
    *out = (mval){0};
    if (it->kind == FP_NODE) {
        if (it->u.node.index == FP_NO_NODE)
            return fail(r, rule, "cannot copy a primitive that has only extensions");
        mark_tree(r, it);
        out->json = node_json(it->u.node.doc, it->u.node.index);
        const fj_node *n = &it->u.node.doc->nodes[it->u.node.index];
        out->type = it->u.node.type                             ? it->u.node.type->name
                    : n->type == FJ_STRING                      ? "string"
                    : n->type == FJ_NUMBER                      ? "decimal"
                    : n->type == FJ_TRUE || n->type == FJ_FALSE ? "boolean"
                                                                : NULL;
        if (it->u.node.type && it->u.node.type->kind != FS_PRIMITIVE)
            resolve_type(r, it->u.node.type->name, &out->tt);
        return true;
    }
    out->type = system_type(it);
    if (!out->type)
        return fail(r, rule, "a type cannot be put into a target");
    if (it->kind == FP_STRING && !memchr(it->u.string, 0, it->len)) {
        /* a String's text is itself (item_text would copy it twice): most values put are map literals */
        out->json = json_object_new_string_len(it->u.string, (int)it->len);
        return true;
    }
    char *text = item_text(r, it);
    if (!text)
        return fail(r, rule, "out of memory");
    switch ((fp_kind)it->kind) {
    case FP_BOOLEAN: out->json = json_object_new_boolean(it->u.boolean); break;
    case FP_INTEGER: out->json = json_object_new_int64(it->u.integer); break;
    case FP_DECIMAL: out->json = json_object_new_double_s((double)it->u.decimal, text); break;
    case FP_QUANTITY:
        out->json = json_object_new_object();
        {
            char num[64];
            snprintf(num, sizeof num, "%.*Lf", it->scale > 0 ? it->scale : 0, it->u.quantity.value);
            json_object_object_add(out->json, "value", json_object_new_double_s((double)it->u.quantity.value, num));
            json_object_object_add(out->json, "unit", json_object_new_string_len(it->u.quantity.unit, (int)it->len));
        }
        resolve_type(r, "Quantity", &out->tt);
        break;
    default: out->json = json_object_new_string(text); break;
    }
    free(text);
    return true;
}

static mval string_value(const char *s, const char *type)
{
    return (mval){.json = json_object_new_string(s), .type = type};
}

/* ---- types --------------------------------------------------------------- */

static const lm_model *model_by(const run *r, const char *name)
{
    size_t len = name ? strlen(name) : 0;
    for (size_t i = 0; name && i < r->ctx->model_count; i++) {
        const lm_model *m = &r->ctx->models[i];
        if ((m->url_len == len && !strcmp(m->url, name)) || (m->type_len == len && !strcmp(m->type, name)))
            return m;
    }
    return NULL;
}

static bool core_type(const run *r, const char *name, ttype *out)
{
    const fs_type *t = name ? fs_type_by_name(r->schema, name, strlen(name)) : NULL;
    if (!t)
        return false;
    *out = (ttype){.cel = &r->schema->elements[t->root], .name = t->name, .resource = t->kind == FS_RESOURCE};
    return true;
}

/* A type name as a map writes it: an alias or url of a `uses` line, a logical model, a core type. */
static bool resolve_type_uncached(const run *r, const char *name, ttype *out)
{
    *out = (ttype){0};
    const char *url = sm_structure_url(r->map, name);
    const lm_model *m = model_by(r, url ? url : name);
    if (!m && !url && strip_sd(name) != name)
        m = model_by(r, strip_sd(name));
    if (m) {
        *out = (ttype){.model = m, .lpath = m->type, .name = m->type};
        return true;
    }
    return core_type(r, strip_sd(url ? url : name), out);
}

/* resolve_type_uncached through the thread's memo. */
static bool resolve_type(const run *r, const char *name, ttype *out)
{
    *out = (ttype){0};
    if (!name)
        return false;
    size_t slot = memo_slot(name, (uintptr_t)r->map->id);
    for (size_t way = 0; way < 2; way++) {
        const type_memo *t = &type_memos[slot ^ way];
        if (t->ctx == r->ctx->id && t->map == r->map->id && !strcmp(t->name, name)) {
            *out = t->tt;
            return t->ok;
        }
    }
    bool ok = resolve_type_uncached(r, name, out);
    size_t len = strlen(name);
    if (len < MEMO_KEY) {
        type_memos[slot ^ 1] = type_memos[slot]; /* two ways: the newest first */
        type_memos[slot] = (type_memo){.ctx = r->ctx->id, .map = r->map->id, .ok = ok, .tt = *out};
        memcpy(type_memos[slot].name, name, len + 1);
    }
    return ok;
}

static bool is_resource(const run *r, const ttype *tt)
{
    if (tt->model)
        return tt->lpath == tt->model->type;
    (void)r;
    return tt->resource;
}

static json_object *new_instance(const run *r, const ttype *tt)
{
    json_object *o = json_object_new_object();
    if (o && tt->name && is_resource(r, tt))
        json_object_object_add_ex(o, "resourceType", json_object_new_string(tt->name),
                                  JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_ADD_CONSTANT_KEY);
    return o;
}

static bool same_type_name(const char *a, const char *b, size_t blen)
{
    return strlen(a) == blen && !strncasecmp(a, b, 1) && !strncmp(a + 1, b + 1, blen - 1);
}

static bool lookup_logical(const run *r, const ttype *tt, const char *name, elinfo *ei)
{
    (void)r;
    size_t plen = strlen(tt->lpath), nlen = strlen(name);
    for (size_t i = 0; i < tt->model->count; i++) {
        const lm_element *e = &tt->model->els[i];
        if (strncmp(e->path, tt->lpath, plen) || e->path[plen] != '.' || strchr(e->path + plen + 1, '.'))
            continue;
        bool exact = e->name_len == nlen && !strncmp(e->name, name, nlen);
        bool suffixed = e->choice && nlen > e->name_len && !strncmp(e->name, name, e->name_len) &&
                        isupper((unsigned char)name[e->name_len]);
        if (!exact && !suffixed)
            continue;
        *ei = (elinfo){.known = true,
                       .many = e->max > 1,
                       .choice = e->choice,
                       .model = tt->model,
                       .lel = e,
                       .type_count = e->type_count};
        for (size_t k = 0; suffixed && k < e->type_count; k++)
            if (same_type_name(e->types[k], name + e->name_len, nlen - e->name_len))
                ei->chosen = e->types[k];
        if (suffixed && !ei->chosen)
            continue;
        return true;
    }
    return false;
}

static bool lookup_core(const run *r, const ttype *tt, const char *name, elinfo *ei)
{
    const fs_type *choice = NULL;
    const fs_element *el = fs_child(r->schema, tt->cel, name, strlen(name), &choice);
    if (!el) {
        /* a choice element named by its stem ("value"): the type is chosen by the value */
        unsigned n = 0;
        const fs_element *kids = fs_children(r->schema, tt->cel, &n);
        for (unsigned i = 0; i < n && !el; i++)
            if ((kids[i].flags & FS_EL_CHOICE) && !strcmp(kids[i].name, name))
                el = &kids[i];
        if (!el)
            return false;
    }
    *ei = (elinfo){.known = true,
                   .many = el->max == FS_UNBOUNDED || el->max > 1,
                   .choice = (el->flags & FS_EL_CHOICE) != 0,
                   .cel = el,
                   .chosen = choice ? choice->name : NULL,
                   .type_count = el->type_count               ? el->type_count
                                 : (el->flags & FS_EL_INLINE) ? 1
                                                              : 0};
    return true;
}

/* The k-th type of a resolved element (k < ei->type_count). */
static const char *ei_type(const run *r, const elinfo *ei, size_t k)
{
    if (ei->lel)
        return ei->lel->types[k];
    if (!ei->cel->type_count)
        return "BackboneElement"; /* an inline element without a declared type */
    return fs_element_type(r->schema, ei->cel, (unsigned)k)->name;
}

/* The element `name` of a target of type tt; ei->known false when the type is unknown. */
static bool lookup_element_uncached(const run *r, const ttype *tt, const char *name, elinfo *ei)
{
    *ei = (elinfo){0};
    if (tt->model)
        return lookup_logical(r, tt, name, ei);
    if (tt->cel)
        return lookup_core(r, tt, name, ei);
    return true; /* untyped: anything goes, as a single value */
}

/* lookup_element_uncached through the thread's memo, keyed by the context, the type's scope and the name. */
static bool lookup_element(const run *r, const ttype *tt, const char *name, elinfo *ei)
{
    const void *scope = tt->model ? (const void *)tt->lpath : (const void *)tt->cel;
    if (!scope)
        return lookup_element_uncached(r, tt, name, ei);
    size_t slot = memo_slot(name, (uintptr_t)scope);
    for (size_t way = 0; way < 2; way++) {
        const elinfo_memo *m = &elinfo_memos[slot ^ way];
        if (m->ctx == r->ctx->id && m->scope == scope && !strcmp(m->name, name)) {
            *ei = m->ei;
            return m->ok;
        }
    }
    bool ok = lookup_element_uncached(r, tt, name, ei);
    size_t len = strlen(name);
    if (len < MEMO_KEY) {
        elinfo_memos[slot ^ 1] = elinfo_memos[slot]; /* two ways: the newest first */
        elinfo_memos[slot] = (elinfo_memo){.ctx = r->ctx->id, .scope = scope, .ok = ok, .ei = *ei};
        memcpy(elinfo_memos[slot].name, name, len + 1);
    }
    return ok;
}

/* The ttype of a child element holding a value of type `type`. */
static ttype child_type(const run *r, const elinfo *ei, const char *type)
{
    if (type && type == ei->child_for)
        return ei->child_tt; /* the very string it was found for: same text, same answer */
    ttype tt = {0};
    if (ei->cel && (ei->cel->flags & FS_EL_INLINE)) {
        tt = (ttype){.cel = ei->cel, .name = "BackboneElement"};
    } else if (ei->lel && (!type || !strcmp(type, "BackboneElement") || !strcmp(type, "Element"))) {
        tt = (ttype){.model = ei->model, .lpath = ei->lel->path, .name = ei->lel->path};
    } else if (type) {
        resolve_type(r, type, &tt);
    }
    return tt;
}

/* The single type of an element, or NULL (a choice, or unknown). */
static const char *single_type(const run *r, const elinfo *ei)
{
    if (ei->chosen)
        return ei->chosen;
    return ei->type_count == 1 && !ei->choice ? ei_type(r, ei, 0) : NULL;
}

static bool is_primitive_name(const run *r, const char *type)
{
    if (type && !islower((unsigned char)type[0]))
        return false; /* FHIR's complex types, resources and models are capitalised; skip the schema search */
    const fs_type *t = type ? fs_type_by_name(r->schema, type, strlen(type)) : NULL;
    return t ? t->kind == FS_PRIMITIVE : (type && islower((unsigned char)type[0]));
}

/* The JSON kind a primitive of kind k is written as. */
static json_type primitive_json_kind(fprim_kind k)
{
    if (k == FPRIM_NONE)
        return json_type_string;
    switch (fprim_json_type(k)) {
    case FPRIM_JSON_BOOLEAN: return json_type_boolean;
    case FPRIM_JSON_NUMBER: return json_type_double; /* a number: integer or double */
    default: return json_type_string;
    }
}

/* The JSON kind a primitive type is written as. */
static json_type primitive_json(const char *type)
{
    return primitive_json_kind(fprim_from_name(type));
}

static bool json_kind_fits(json_type want, json_object *v)
{
    json_type have = json_object_get_type(v);
    if (want == json_type_double)
        return have == json_type_int || have == json_type_double;
    return have == want;
}

/* The schema's type of an element's k-th allowed type, or NULL (a logical model's element, an inline element). */
static const fs_type *ei_fs_type(const run *r, const elinfo *ei, size_t k)
{
    return ei->cel && ei->cel->type_count ? fs_element_type(r->schema, ei->cel, (unsigned)k) : NULL;
}

/* The schema's type of an element's k-th allowed type for fits(): a logical model's too (found at load). */
static const fs_type *ei_fits_type(const run *r, const elinfo *ei, size_t k)
{
    return ei->lel ? ei->lel->fs_types[k] : ei_fs_type(r, ei, k);
}

/*
 * Does a value of type vtype (JSON v) fit type `allowed`? known: the schema's
 * type named `allowed` when the caller has it (saves searching the schema), or NULL.
 */
static bool fits(const run *r, const char *allowed, const fs_type *known, const char *vtype, json_object *v)
{
    /* an object of the very type (names are mostly the schema's own strings): what the tests below conclude */
    if (allowed == vtype && !islower((unsigned char)allowed[0]) && json_object_is_type(v, json_type_object))
        return true;
    switch (allowed[0]) { /* the first letter first: most types are none of these */
    case 'B':
        if (!strcmp(allowed, "BackboneElement"))
            return true;
        break;
    case 'E':
        if (!strcmp(allowed, "Element"))
            return true;
        break;
    case 'R':
        if (!strcmp(allowed, "Resource"))
            return true;
        break;
    case '*':
        if (!allowed[1])
            return true;
        break;
    default: break;
    }
    if (islower((unsigned char)allowed[0])) {
        /* a primitive (is_primitive_name): the schema's type says which JSON kind it is written as */
        const fs_type *t = known ? known : fs_type_by_name(r->schema, allowed, strlen(allowed));
        if (!t || t->kind == FS_PRIMITIVE) {
            json_type want = t ? primitive_json_kind(t->prim) : primitive_json(allowed);
            return !json_object_is_type(v, json_type_object) && !json_object_is_type(v, json_type_array) &&
                   json_kind_fits(want, v);
        }
    }
    if (!json_object_is_type(v, json_type_object))
        return false;
    if (!vtype)
        return true;
    if (allowed == vtype || !strcmp(allowed, vtype))
        return true;
    /* a resource fits Resource / DomainResource-typed elements; a logical model by url or name */
    const lm_model *m = model_by(r, allowed);
    return m && m->type && !strcmp(m->type, vtype);
}

/*
 * The index of type `name` among an element's allowed types, or SIZE_MAX. The
 * names usually are the very strings of the schema's (or model's) type
 * table, so pointers are compared first: Extension.value[x] allows ~50 types.
 */
static size_t type_index(const run *r, const elinfo *ei, const char *name)
{
    /* the thread's memo of the answer by pointer (checked: the memo's k still names this very string) */
    const void *el = ei->lel ? (const void *)ei->lel : (const void *)ei->cel;
    choice_memo *m = &choice_memos[pointer_slot(el, (uintptr_t)name, CHOICE_SLOTS)];
    if (el && m->el == el && m->name == name && m->k < ei->type_count && ei_type(r, ei, m->k) == name)
        return m->k;
    for (size_t k = 0; k < ei->type_count; k++)
        if (ei_type(r, ei, k) == name) {
            *m = (choice_memo){.el = el, .name = name, .k = k};
            return k;
        }
    if (ei_fs_type(r, ei, 0)) {
        /* a core element's types are schema types, whose names are unique: find the name's one pointer */
        const fs_type *t = fs_type_by_name(r->schema, name, strlen(name));
        for (size_t k = 0; t && k < ei->type_count; k++)
            if (ei_fs_type(r, ei, k) == t)
                return k;
        return SIZE_MAX;
    }
    for (size_t k = 0; k < ei->type_count; k++)
        if (!strcmp(ei_type(r, ei, k), name))
            return k;
    return SIZE_MAX;
}

/* For a choice: the index of the allowed type a value takes (its own type, or the first its JSON fits), or SIZE_MAX. */
static size_t choose_type(const run *r, const elinfo *ei, const mval *v)
{
    size_t own = v->type ? type_index(r, ei, v->type) : SIZE_MAX;
    if (own != SIZE_MAX)
        return own;
    /* a System string into code/uri/...: the first string-like type the value fits */
    for (size_t k = 0; v->type && k < ei->type_count; k++)
        if (is_primitive_name(r, v->type) && fits(r, ei_type(r, ei, k), ei_fits_type(r, ei, k), v->type, v->json))
            return k;
    return SIZE_MAX;
}

/* ---- putting values into targets ----------------------------------------- */

/*
 * How put_value adds `key` to its target: the key is new when the target has
 * no such member (spares json-c a second hash lookup), and constant (not
 * copied: one malloc and free less per value) when it is the element's own
 * name in the generated R4 tables, which are static and never freed, so the
 * result may outlive the map and its context. Other schemas' names are
 * copied: their lifetime is not known here.
 */
static bool key_is_static(const run *r, const elinfo *ei, const char *key)
{
    return ei->known && ei->cel && r->schema == fs_r4() && !strcmp(ei->cel->name, key);
}

/* is_name: key is the target's element name, whose answer target_element may have kept (name_is_static) */
static unsigned put_key_opts(const run *r, const elinfo *ei, const char *key, bool present, bool is_name)
{
    unsigned opts = present ? 0 : JSON_C_OBJECT_ADD_KEY_IS_NEW;
    if (is_name && ei->name_checked ? ei->name_is_static : key_is_static(r, ei, key))
        opts |= JSON_C_OBJECT_ADD_CONSTANT_KEY;
    return opts;
}

/* key = name + want with its first letter upper-cased ("value" + "coding"), cut to fit like snprintf; no
   snprintf: it was a tenth of put_value's cost, once per value put into an extension */
static void choice_key(char *key, size_t cap, const char *name, const char *want)
{
    size_t n = strnlen(name, cap - 1);
    memcpy(key, name, n);
    if (n < cap - 1 && want[0]) {
        key[n++] = (char)toupper((unsigned char)want[0]);
        size_t m = strnlen(want + 1, cap - 1 - n);
        memcpy(key + n, want + 1, m);
        n += m;
    }
    key[n] = 0;
}

/*
 * A member of a target object, looked up once: json_object_object_get_ex and
 * then json_object_object_add_ex hashed the key twice (and measured it with
 * strlen twice) for every value put; json-c's hash table API takes the hash.
 */
typedef struct member {
    struct lh_table *table;
    unsigned long hash;
    struct lh_entry *entry; /* NULL: the object has no such key */
} member;

static member find_member(json_object *obj, const char *key)
{
    member m = {.table = json_object_get_object(obj)};
    m.hash = lh_get_hash(m.table, key);
    /* most values go into an object just made: an empty table has no such key */
    m.entry = json_object_object_length(obj) ? lh_table_lookup_entry_w_hash(m.table, key, m.hash) : NULL;
    return m;
}

/* json_object_object_add_ex(obj, key, val, opts) for the member m found by key's text (called once per find). */
static void set_member(member *m, const char *key, json_object *val, unsigned opts)
{
    if (m->entry) {
        json_object_put(lh_entry_v(m->entry)); /* replaced, as json-c does: the key stays */
        lh_entry_set_val(m->entry, val);
        return;
    }
    const char *k = (opts & JSON_C_OBJECT_ADD_CONSTANT_KEY) ? key : strdup(key);
    if (!k || lh_table_insert_w_hash(m->table, k, val, m->hash, opts) != 0)
        abort(); /* out of memory, as where node_json copies keys */
}

/* Put v (reference taken over) as element `name` of target variable t; *stored is the object now in the tree. */
static bool put_value(run *r, const sm_rule *rule, const sm_target *tg, var *t, const char *name, const elinfo *known,
                      mval *v, json_object **stored, ttype *stored_tt)
{
    elinfo looked;
    const elinfo *ei = known ? known : &looked; /* the caller's, when it looked it up (not copied: 120 bytes) */
    if (!known && !lookup_element(r, &t->tt, name, &looked)) {
        json_object_put(v->json);
        return fail(r, rule, "%s has no element '%s'", t->tt.name ? t->tt.name : "the target", name);
    }
    char key[160];
    bool suffixed = false; /* key is name + a type: not the target's element name */
    size_t name_len = strnlen(name, sizeof key - 1);
    memcpy(key, name, name_len);
    key[name_len] = 0;
    const char *type = v->type;
    if (ei->known) {
        const char *want = ei->chosen;
        size_t chosen = SIZE_MAX; /* want's index when choose_type picked it: no second search */
        if (!want && ei->choice) {
            chosen = choose_type(r, ei, v);
            want = chosen != SIZE_MAX ? ei_type(r, ei, chosen) : NULL;
            if (!want) {
                json_object_put(v->json);
                return fail(r, rule, "%s.%s[x]: no allowed type for a value of type %s", t->tt.name, name,
                            v->type ? v->type : "(unknown)");
            }
            choice_key(key, sizeof key, name, want);
            suffixed = true;
        }
        bool ok = false;
        if (want) {
            /* a name listed twice fits alike: one to try */
            size_t k = chosen != SIZE_MAX ? chosen : type_index(r, ei, want);
            ok = k != SIZE_MAX && fits(r, ei_type(r, ei, k), ei_fits_type(r, ei, k), v->type, v->json);
        }
        for (size_t k = 0; !want && k < ei->type_count && !ok; k++)
            ok = fits(r, ei_type(r, ei, k), ei_fits_type(r, ei, k), v->type, v->json);
        if (!ok && ei->type_count) {
            json_object_put(v->json);
            return fail(r, rule, "type mismatch: %s.%s takes %s%s, not %s", t->tt.name, key,
                        want ? want : ei_type(r, ei, 0),
                        !want && ei->type_count > 1 ? " (or another allowed type)" : "",
                        v->type ? v->type : json_type_to_name(json_object_get_type(v->json)));
        }
        if (want)
            type = want;
        else if (!type)
            type = single_type(r, ei);
    }
    if (json_object_is_type(v->json, json_type_object) && (ei->known || !v->tt.name))
        v->tt = ei->known ? child_type(r, ei, type ? type : single_type(r, ei)) : v->tt;
    *stored_tt = v->tt;
    member m = find_member(t->obj, key);
    json_object *existing = m.entry ? lh_entry_v(m.entry) : NULL;
    unsigned add_opts = put_key_opts(r, ei, key, m.entry != NULL, !suffixed);
    const char *add_key = (add_opts & JSON_C_OBJECT_ADD_CONSTANT_KEY) ? ei->cel->name : key;
    unsigned modes = tg ? tg->list_modes : 0;
    if (ei->many || (!ei->known && existing && json_object_is_type(existing, json_type_array))) {
        if (!existing) {
            existing = json_object_new_array();
            set_member(&m, add_key, existing, add_opts);
        }
        size_t n = json_object_array_length(existing);
        if ((modes & (SM_TGT_SHARE | SM_TGT_COLLATE)) && n) {
            json_object_put(v->json);
            *stored = json_object_array_get_idx(existing, (modes & SM_TGT_COLLATE) ? 0 : n - 1);
            return true;
        }
        if ((modes & SM_TGT_FIRST) && n) {
            /* insert at the front: the one O(n) list mode, by R4's meaning of `first` */
            json_object_array_add(existing, NULL);
            for (size_t i = n; i > 0; i--)
                json_object_array_put_idx(existing, i, json_object_get(json_object_array_get_idx(existing, i - 1)));
            json_object_array_put_idx(existing, 0, v->json);
        } else {
            json_object_array_add(existing, v->json);
        }
        *stored = v->json;
        return true;
    }
    if (existing && (modes & (SM_TGT_SHARE | SM_TGT_COLLATE)) && json_object_is_type(existing, json_type_object)) {
        json_object_put(v->json);
        *stored = existing;
        return true;
    }
    set_member(&m, add_key, v->json, add_opts);
    *stored = v->json;
    return true;
}

/* ---- transforms ---------------------------------------------------------- */

/* A parameter resolved: one item, a target variable, or nothing (an empty path). */
typedef struct pval {
    bool empty;
    var *target;
    fp_item item;
} pval;

static bool param(run *r, const sm_rule *rule, const sm_target *t, size_t i, pval *out)
{
    /* not `*out = (pval){0}`: the item is written below (cleared only where it is not), not twice per value */
    out->empty = false;
    out->target = NULL;
    out->item.kind = FP_NODE; /* every success below sets the whole item; this tells the compiler so */
    if (i >= t->param_count)
        return fail(r, rule, "%s(): parameter %zu is missing", sm_transform_name(t->transform), i + 1);
    const sm_value *v = &t->params[i];
    switch (v->kind) {
    case SM_V_STRING: out->item = fp_string(v->text, strlen(v->text)); return true;
    case SM_V_INTEGER: out->item = fp_integer(v->integer); return true;
    case SM_V_BOOLEAN: out->item = fp_boolean(v->boolean); return true;
    case SM_V_DECIMAL: {
        const char *dot = strchr(v->text, '.');
        out->item = (fp_item){.kind = FP_DECIMAL, .scale = (int16_t)(dot ? strlen(dot + 1) : 0)};
        out->item.u.decimal = strtold(v->text, NULL);
        return true;
    }
    case SM_V_ID: break;
    case SM_V_NONE: return fail(r, rule, "a parameter has no value");
    }
    var *x = find_var(r, v->text);
    if (!x)
        return fail(r, rule, "%s(): variable '%s' is not bound", sm_transform_name(t->transform), v->text);
    if (x->target) {
        if (v->path)
            return fail(r, rule, "%s(): a path on the target variable '%s' is not supported",
                        sm_transform_name(t->transform), v->text);
        out->target = x;
        out->item = (fp_item){0};
        return true;
    }
    if (!v->path) {
        out->item = x->item;
        return true;
    }
    fp_collection c;
    if (!eval(r, rule, "parameter path", v->path, &x->item, &c))
        return false;
    if (c.count > 1)
        return fail(r, rule, "%s(): the path on '%s' gives %zu values, expected one", sm_transform_name(t->transform),
                    v->text, c.count);
    out->empty = c.count == 0;
    out->item = c.count ? c.items[0] : (fp_item){0};
    return true;
}

/* Release a param_text result: a literal's text is the map's own, not a copy. */
static void free_param(const sm_target *t, char *s)
{
    for (size_t i = 0; s && i < t->param_count; i++)
        if (s == t->params[i].text)
            return;
    free(s);
}

/*
 * Parameter i as text, to be released with free_param; *out NULL for an empty
 * path. A string literal is given as the map's own text (item_text would copy
 * it unchanged: a malloc and free per translate() url and output, per c() system).
 */
static bool param_text(run *r, const sm_rule *rule, const sm_target *t, size_t i, char **out)
{
    *out = NULL;
    if (i < t->param_count && t->params[i].kind == SM_V_STRING) {
        *out = t->params[i].text;
        return true;
    }
    pval p;
    if (!param(r, rule, t, i, &p))
        return false;
    if (p.empty)
        return true;
    if (p.target)
        return fail(r, rule, "%s(): parameter %zu is a target object, expected a value",
                    sm_transform_name(t->transform), i + 1);
    mark(r, &p.item);
    *out = item_text(r, &p.item);
    if (!*out)
        return fail(r, rule, "%s(): parameter %zu has no text value (an object?)", sm_transform_name(t->transform),
                    i + 1);
    return true;
}

static void set_string(json_object *o, const char *key, const char *value)
{
    if (value) /* key: a string literal, so json-c need not copy it */
        json_object_object_add_ex(o, key, json_object_new_string(value), JSON_C_OBJECT_ADD_CONSTANT_KEY);
}

static void make_uuid(run *r, char out[37])
{
    if (r->opts->uuid) {
        r->opts->uuid(r->opts->uuid_ctx, out);
        return;
    }
    unsigned char b[16] = {0};
    if (RAND_bytes(b, sizeof b) != 1)
        abort(); /* no randomness: no identifier can be trusted to be unique */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Collected values of one transform (evaluate may give several). */
/* A target's values: most targets make one, kept in `local` (no allocation); more go to the heap. */
typedef struct mvals {
    mval *items; /* NULL (none yet), local, or malloc'd */
    size_t count, cap;
    mval local[2];
} mvals;

static void mvals_free(mvals *l)
{
    if (l->items != l->local)
        free(l->items);
}

/* emit's slow path: the list is full (out->count == out->cap); false when out of memory. */
static bool mvals_grow(mvals *out)
{
    if (!out->items) {
        out->items = out->local;
        out->cap = sizeof out->local / sizeof *out->local;
        return true;
    }
    size_t cap = out->cap * 2;
    mval *grown = out->items == out->local ? malloc(cap * sizeof *grown) : realloc(out->items, cap * sizeof *grown);
    if (!grown)
        return false;
    if (out->items == out->local)
        memcpy(grown, out->local, sizeof out->local);
    out->items = grown;
    out->cap = cap;
    return true;
}

/* Always inlined: passed by value to a call, the 56-byte mval was copied with a slow `rep movs` per value. */
static inline __attribute__((always_inline)) bool emit(mvals *out, mval v)
{
    if (!v.json)
        return true; /* a JSON null: nothing to put */
    if (out->count == out->cap && !mvals_grow(out)) {
        json_object_put(v.json);
        return false;
    }
    out->items[out->count++] = v;
    return true;
}

/*
 * item_value written straight into out's next slot: built in a temporary and
 * then emitted, the 56-byte value was written in pieces and read back whole,
 * a store-forwarding stall per value put.
 */
static bool emit_item(run *r, const sm_rule *rule, const fp_item *it, mvals *out)
{
    if (out->count == out->cap && !mvals_grow(out))
        return fail(r, rule, "out of memory");
    mval *v = &out->items[out->count];
    if (!item_value(r, rule, it, v))
        return false;
    if (v->json)
        out->count++; /* a JSON null: nothing to put (as emit) */
    return true;
}

static bool tr_create(run *r, const sm_rule *rule, const sm_target *t, const elinfo *ei, mvals *out)
{
    char *name = NULL;
    if (t->param_count && !param_text(r, rule, t, 0, &name))
        return false;
    const char *type = name ? name : ei ? single_type(r, ei) : NULL;
    ttype tt = {0};
    if (!type) {
        free_param(t, name);
        return fail(r, rule, "create(): which type? The element has %s; say create('Type')",
                    ei && ei->type_count ? "several" : "no known type");
    }
    if (ei && ei->known && !name)
        tt = child_type(r, ei, type);
    else
        resolve_type(r, type, &tt);
    if (!tt.cel && !tt.model) {
        fail(r, rule, "create('%s'): no such type (not a FHIR type, nor a logical model the engine knows)", type);
        free_param(t, name);
        return false;
    }
    if (is_primitive_name(r, tt.name)) {
        fail(r, rule, "create('%s'): a primitive type cannot be created; use a value", type);
        free_param(t, name);
        return false;
    }
    mval v = {.json = new_instance(r, &tt), .type = tt.name, .tt = tt};
    free_param(t, name);
    return emit(out, v) || fail(r, rule, "out of memory");
}

static bool tr_copy(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    pval p;
    if (!param(r, rule, t, 0, &p))
        return false;
    if (p.empty)
        return true;
    if (p.target) {
        mval v = {.json = NULL, .type = p.target->tt.name, .tt = p.target->tt};
        if (json_object_deep_copy(p.target->obj, &v.json, NULL) != 0)
            return fail(r, rule, "copy(): could not copy the target object");
        return emit(out, v) || fail(r, rule, "out of memory");
    }
    return emit_item(r, rule, &p.item, out);
}

static bool tr_truncate(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    char *s = NULL, *n = NULL;
    bool ok = param_text(r, rule, t, 0, &s) && param_text(r, rule, t, 1, &n);
    if (ok && s && n) {
        long max = atol(n), chars = 0;
        size_t i = 0;
        for (; s[i]; i++) {
            if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == max)
                break;
        }
        s[i] = 0;
        ok = emit(out, string_value(s, "string"));
    }
    free_param(t, s);
    free_param(t, n);
    return ok;
}

static bool cast_text(run *r, const sm_rule *rule, const char *s, const char *type, mvals *out)
{
    char *end = NULL;
    if (!strcmp(type, "string"))
        return emit(out, string_value(s, "string"));
    if (!strcmp(type, "integer")) {
        long long v = strtoll(s, &end, 10);
        if (!*s || *end)
            return fail(r, rule, "cast(): '%s' is not an integer", s);
        return emit(out, (mval){.json = json_object_new_int64(v), .type = "integer"});
    }
    if (!strcmp(type, "decimal")) {
        double v = strtod(s, &end);
        if (!*s || *end || fprim_check(FPRIM_DECIMAL, s, strlen(s)))
            return fail(r, rule, "cast(): '%s' is not a decimal", s);
        return emit(out, (mval){.json = json_object_new_double_s(v, s), .type = "decimal"});
    }
    if (!strcmp(type, "boolean")) {
        if (strcmp(s, "true") && strcmp(s, "false"))
            return fail(r, rule, "cast(): '%s' is not a boolean", s);
        return emit(out, (mval){.json = json_object_new_boolean(!strcmp(s, "true")), .type = "boolean"});
    }
    if (!strcmp(type, "date") || !strcmp(type, "dateTime")) {
        fprim_kind k = !strcmp(type, "date") ? FPRIM_DATE : FPRIM_DATETIME;
        if (fprim_check(k, s, strlen(s)))
            return fail(r, rule, "cast(): '%s' is not a %s", s, type);
        return emit(out, string_value(s, !strcmp(type, "date") ? "date" : "dateTime"));
    }
    return fail(r, rule, "cast(): cannot cast to '%s' (string, integer, decimal, boolean, date, dateTime)", type);
}

static bool tr_cast(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    char *s = NULL, *type = NULL;
    bool ok = param_text(r, rule, t, 0, &s) && (t->param_count < 2 || param_text(r, rule, t, 1, &type));
    if (ok && s)
        ok = cast_text(r, rule, s, type ? type : "string", out);
    free_param(t, s);
    free_param(t, type);
    return ok;
}

static bool tr_append(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    fj_buf b = {0};
    for (size_t i = 0; i < t->param_count; i++) {
        char *s = NULL;
        if (!param_text(r, rule, t, i, &s)) {
            fj_buf_free(&b);
            return false;
        }
        if (s)
            fj_buf_puts(&b, s);
        free_param(t, s);
    }
    fj_buf_puts(&b, "");
    mval v = string_value(b.data ? b.data : "", "string");
    fj_buf_free(&b);
    return emit(out, v);
}

/* ---- translate ----------------------------------------------------------- */

/* The ConceptMap of a url; *entry its indexed entry when it is one of the context's (NULL: a contained one). */
static const json_object *find_conceptmap(const run *r, const char *url, const conceptmap_entry **entry)
{
    *entry = NULL;
    if (url[0] == '#') {
        for (size_t i = 0; i < r->map->conceptmap_count; i++) {
            const char *id = jstr(r->map->conceptmaps[i], "id");
            if (id && !strcmp(id, url + 1))
                return r->map->conceptmaps[i];
        }
        return NULL;
    }
    size_t n = strcspn(url, "|");
    for (size_t i = 0; i < r->ctx->cm_count; i++)
        if (r->ctx->cms[i].url_len == n && !strncmp(r->ctx->cms[i].url, url, n)) {
            *entry = &r->ctx->cms[i];
            return r->ctx->cms[i].cm;
        }
    return NULL;
}

static bool maps_to(const char *equivalence)
{
    return !equivalence || (strcmp(equivalence, "unmatched") && strcmp(equivalence, "disjoint"));
}

typedef struct coded {
    const char *system, *code, *display;
} coded;

/* $translate for one system+code: the first target of a matching element, or the group's unmapped rule. */
static bool translate_one(const json_object *cm, const char *system, const char *code, coded *out)
{
    for (size_t g = 0; g < jlen(cm, "group"); g++) {
        json_object *grp = jat(cm, "group", g);
        const char *src = jstr(grp, "source");
        if (system && src && strcmp(src, system))
            continue;
        for (size_t e = 0; e < jlen(grp, "element"); e++) {
            json_object *el = jat(grp, "element", e);
            if (!jstr(el, "code") || strcmp(jstr(el, "code"), code))
                continue;
            for (size_t k = 0; k < jlen(el, "target"); k++) {
                json_object *tg = jat(el, "target", k);
                if (maps_to(jstr(tg, "equivalence")) && jstr(tg, "code")) {
                    *out = (coded){jstr(grp, "target"), jstr(tg, "code"), jstr(tg, "display")};
                    return true;
                }
            }
        }
        json_object *unmapped = json_object_object_get(grp, "unmapped");
        const char *mode = jstr(unmapped, "mode");
        if (mode && !strcmp(mode, "provided")) {
            *out = (coded){jstr(grp, "target"), code, NULL};
            return true;
        }
        if (mode && !strcmp(mode, "fixed") && jstr(unmapped, "code")) {
            *out = (coded){jstr(grp, "target"), jstr(unmapped, "code"), jstr(unmapped, "display")};
            return true;
        }
    }
    return false;
}

/* translate_one over the entry's index: the same answer by binary search. */
static bool translate_indexed(const conceptmap_entry *e, const char *system, const char *code, coded *out)
{
    for (size_t g = 0; g < e->group_count; g++) {
        const cm_group *grp = &e->groups[g];
        if (system && grp->source && strcmp(grp->source, system))
            continue;
        cm_code key = {.code = code};
        const cm_code *hit = bsearch(&key, grp->codes, grp->count, sizeof *grp->codes, code_cmp);
        if (hit) {
            *out = (coded){grp->target, hit->target, hit->display};
            return true;
        }
        const char *mode = grp->unmapped_mode;
        if (mode && !strcmp(mode, "provided")) {
            *out = (coded){grp->target, code, NULL};
            return true;
        }
        if (mode && !strcmp(mode, "fixed") && grp->unmapped_code) {
            *out = (coded){grp->target, grp->unmapped_code, grp->unmapped_display};
            return true;
        }
    }
    return false;
}

/* The codes of an item: a code/string, a Coding, or each Coding of a CodeableConcept. */
static size_t codes_of(run *r, const fp_item *it, coded *out, size_t cap, char **owned)
{
    *owned = NULL;
    if (it->kind == FP_NODE && it->u.node.index != FP_NO_NODE &&
        it->u.node.doc->nodes[it->u.node.index].type == FJ_OBJECT) {
        const fj_doc *d = it->u.node.doc;
        uint32_t o = it->u.node.index, codings = fj_get(d, o, "coding");
        size_t n = 0;
        if (codings != UINT32_MAX && d->nodes[codings].type == FJ_ARRAY) {
            for (uint32_t j = codings + 1; j < fj_next(d, codings) && n < cap; j = fj_next(d, j))
                if (fj_get(d, j, "code") != UINT32_MAX)
                    out[n++] = (coded){.system = (const char *)(uintptr_t)j};
        } else if (fj_get(d, o, "code") != UINT32_MAX) {
            out[n++] = (coded){.system = (const char *)(uintptr_t)o};
        }
        return n; /* node indices for the caller to read (see translate_item) */
    }
    *owned = item_text(r, it);
    if (!*owned)
        return 0;
    out[0] = (coded){.system = NULL, .code = *owned};
    return 1;
}

/*
 * The string member `key` of object obj as text: in buf (cap bytes) when it
 * fits, else malloc'd into *owned (freed by the caller; NULL when unused);
 * NULL when there is no such string. Codes and systems fit: a translate no
 * longer copies both to the heap per coding.
 */
static const char *node_string(const fj_doc *d, uint32_t obj, const char *key, char *buf, size_t cap, char **owned)
{
    *owned = NULL;
    uint32_t v = fj_get(d, obj, key);
    if (v == UINT32_MAX || d->nodes[v].type != FJ_STRING)
        return NULL;
    size_t n = d->nodes[v].len;
    char *out = n < cap ? buf : (*owned = malloc(n + 1));
    if (!out)
        return NULL;
    memcpy(out, fj_str(d, v), n);
    out[n] = 0;
    return out;
}

static json_object *coding_json(const coded *c)
{
    json_object *o = json_object_new_object();
    set_string(o, "system", c->system);
    set_string(o, "code", c->code);
    set_string(o, "display", c->display);
    return o;
}

static bool typed_emit(run *r, mvals *out, json_object *o, const char *type)
{
    ttype tt;
    resolve_type(r, type, &tt);
    /* the schema's own name when it is this one: later type checks then compare pointers */
    return emit(out, (mval){.json = o, .type = tt.name && !strcmp(tt.name, type) ? tt.name : type, .tt = tt});
}

static bool translate_output(run *r, const sm_rule *rule, const coded *c, const char *output, mvals *out)
{
    if (!strcmp(output, "code"))
        return emit(out, string_value(c->code, "code"));
    if (!strcmp(output, "system"))
        return c->system ? emit(out, string_value(c->system, "uri")) : true;
    if (!strcmp(output, "display"))
        return c->display ? emit(out, string_value(c->display, "string")) : true;
    if (!strcmp(output, "Coding") || !strcmp(output, "coding")) {
        return typed_emit(r, out, coding_json(c), "Coding");
    }
    if (!strcmp(output, "CodeableConcept") || !strcmp(output, "codeableConcept")) {
        json_object *cc = json_object_new_object(), *arr = json_object_new_array();
        json_object_array_add(arr, coding_json(c));
        json_object_object_add(cc, "coding", arr);
        return typed_emit(r, out, cc, "CodeableConcept");
    }
    return fail(r, rule, "translate(): unknown output '%s' (code, system, display, Coding, CodeableConcept)", output);
}

static bool translate_item(run *r, const sm_rule *rule, const fp_item *it, const char *url, const char *output,
                           mvals *out)
{
    const conceptmap_entry *entry;
    const json_object *cm = find_conceptmap(r, url, &entry);
    if (!cm)
        return fail(r, rule, "translate(): no ConceptMap '%s'", url);
    coded codes[16];
    char *owned = NULL;
    size_t n = codes_of(r, it, codes, 16, &owned);
    mark_tree(r, it);
    bool nodes = owned == NULL, ok = false, found = false;
    const char *last_code = NULL, *last_system = NULL;
    char code_buf[128], system_buf[256], *code_heap = NULL, *system_heap = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        const char *system = codes[i].system, *code = codes[i].code;
        if (nodes) {
            uint32_t o = (uint32_t)(uintptr_t)codes[i].system;
            free(code_heap), free(system_heap);
            last_code = node_string(it->u.node.doc, o, "code", code_buf, sizeof code_buf, &code_heap);
            last_system = node_string(it->u.node.doc, o, "system", system_buf, sizeof system_buf, &system_heap);
            system = last_system, code = last_code;
        }
        coded res;
        if (code && (entry && entry->indexed ? translate_indexed(entry, system, code, &res)
                                             : translate_one(cm, system, code, &res))) {
            found = true;
            ok = translate_output(r, rule, &res, output, out);
        }
    }
    if (!found)
        fail(r, rule, "translate(): no mapping for code '%s'%s%s in ConceptMap %s",
             owned       ? owned
             : last_code ? last_code
                         : "(none)",
             last_system ? " of system " : "", last_system ? last_system : "", url);
    free(owned), free(code_heap), free(system_heap);
    return found && ok;
}

static bool tr_translate(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    pval p;
    char *url = NULL, *output = NULL;
    bool ok = param(r, rule, t, 0, &p);
    if (ok && p.target)
        ok = fail(r, rule, "translate(): the source is a target object; translate a source value");
    ok = ok && param_text(r, rule, t, 1, &url) && param_text(r, rule, t, 2, &output);
    if (ok && !p.empty && url && output)
        ok = translate_item(r, rule, &p.item, url, output, out);
    free_param(t, url);
    free_param(t, output);
    return ok;
}

/* ---- reference, pointer, uuid -------------------------------------------- */

static bool tr_reference(run *r, const sm_rule *rule, const sm_target *t, bool pointer, mvals *out)
{
    pval p;
    if (!param(r, rule, t, 0, &p))
        return false;
    if (p.empty)
        return true;
    char buf[300];
    if (p.target) {
        const char *rt = jstr(p.target->obj, "resourceType"), *id = jstr(p.target->obj, "id");
        if (!rt)
            return fail(r, rule, "%s(): the target object is not a resource", pointer ? "pointer" : "reference");
        char fresh[37];
        if (!id) {
            make_uuid(r, fresh);
            json_object_object_add(p.target->obj, "id", json_object_new_string(fresh));
            id = fresh;
        }
        if (pointer)
            snprintf(buf, sizeof buf, "urn:uuid:%s", id);
        else
            snprintf(buf, sizeof buf, "%s/%s", rt, id);
        return emit(out, string_value(buf, "string"));
    }
    if (p.item.kind != FP_NODE || r->doc->nodes[p.item.u.node.index].type != FJ_OBJECT)
        return fail(r, rule, "%s(): the parameter is not a resource", pointer ? "pointer" : "reference");
    char rt_buf[128], id_buf[128], *rt_heap, *id_heap;
    const char *rt = node_string(p.item.u.node.doc, p.item.u.node.index, "resourceType", rt_buf, sizeof rt_buf,
                                 &rt_heap);
    const char *id = node_string(p.item.u.node.doc, p.item.u.node.index, "id", id_buf, sizeof id_buf, &id_heap);
    bool ok = rt && id;
    if (ok && pointer)
        snprintf(buf, sizeof buf, "urn:uuid:%s", id);
    else if (ok)
        snprintf(buf, sizeof buf, "%s/%s", rt, id);
    free(rt_heap), free(id_heap);
    if (!ok)
        return fail(r, rule, "reference(): the source resource has no resourceType and id");
    return emit(out, string_value(buf, "string"));
}

/* ---- evaluate ------------------------------------------------------------ */

static bool tr_evaluate(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    fp_item focus;
    bool have = false;
    if (t->param_count == 2) {
        pval p;
        if (!param(r, rule, t, 0, &p))
            return false;
        if (p.target)
            return fail(r, rule, "evaluate(): FHIRPath runs over source values, '%s' is a target", t->params[0].text);
        if (p.empty)
            return true;
        focus = p.item;
        have = true;
    }
    fp_collection c;
    if (!eval(r, rule, "evaluate()", t->expression, have ? &focus : NULL, &c))
        return false;
    for (size_t i = 0; i < c.count; i++)
        if (!emit_item(r, rule, &c.items[i], out))
            return false;
    return true;
}

/* ---- cc, c, qty, id, cp -------------------------------------------------- */

/* Up to n parameters as text (missing ones NULL); all freed by free_texts. */
static bool texts(run *r, const sm_rule *rule, const sm_target *t, char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s[i] = NULL;
    for (size_t i = 0; i < n && i < t->param_count; i++)
        if (!param_text(r, rule, t, i, &s[i]))
            return false;
    return true;
}

static void free_texts(const sm_target *t, char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free_param(t, s[i]);
}

static bool tr_cc_c(run *r, const sm_rule *rule, const sm_target *t, bool cc, mvals *out)
{
    char *s[3];
    bool ok = texts(r, rule, t, s, 3);
    if (ok) {
        json_object *o;
        if (cc && t->param_count == 1) {
            o = json_object_new_object();
            set_string(o, "text", s[0]);
        } else {
            coded c = {s[0], s[1], s[2]};
            o = coding_json(&c);
            if (cc) {
                json_object *wrap = json_object_new_object(), *arr = json_object_new_array();
                json_object_array_add(arr, o);
                json_object_object_add(wrap, "coding", arr);
                o = wrap;
            }
        }
        ok = typed_emit(r, out, o, cc ? "CodeableConcept" : "Coding");
    }
    free_texts(t, s, 3);
    return ok;
}

/* "[comparator]value unit" (unit may be quoted UCUM: '10 'mg'') into a Quantity. */
static bool parse_qty(run *r, const sm_rule *rule, const char *text, json_object *o)
{
    const char *p = text;
    while (*p == ' ')
        p++;
    const char *comparators[] = {"<=", ">=", "<", ">"};
    for (size_t i = 0; i < 4; i++)
        if (!strncmp(p, comparators[i], strlen(comparators[i]))) {
            set_string(o, "comparator", comparators[i]);
            p += strlen(comparators[i]);
            break;
        }
    size_t n = strspn(p, "+-0123456789.");
    char num[64];
    snprintf(num, sizeof num, "%.*s", (int)(n < 63 ? n : 63), p);
    if (!n || fprim_check(FPRIM_DECIMAL, num, strlen(num)))
        return fail(r, rule, "qty(): '%s' does not start with a number", text);
    json_object_object_add(o, "value", json_object_new_double_s(strtod(num, NULL), num));
    p += n;
    while (*p == ' ')
        p++;
    if (!*p)
        return true;
    bool ucum = *p == '\'';
    char unit[128];
    snprintf(unit, sizeof unit, "%s", ucum ? p + 1 : p);
    if (ucum && strchr(unit, '\''))
        *strchr(unit, '\'') = 0;
    set_string(o, "unit", unit);
    if (ucum) {
        set_string(o, "system", "http://unitsofmeasure.org");
        set_string(o, "code", unit);
    }
    return true;
}

static bool tr_qty(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    char *s[4];
    bool ok = texts(r, rule, t, s, 4);
    json_object *o = json_object_new_object();
    if (ok && t->param_count == 1) {
        ok = parse_qty(r, rule, s[0], o);
    } else if (ok) {
        if (!s[0] || fprim_check(FPRIM_DECIMAL, s[0], strlen(s[0])))
            ok = fail(r, rule, "qty(): '%s' is not a number", s[0]);
        else
            json_object_object_add(o, "value", json_object_new_double_s(strtod(s[0], NULL), s[0]));
        set_string(o, "unit", s[1]);
        set_string(o, "system", s[2]);
        set_string(o, "code", s[3]);
    }
    free_texts(t, s, 4);
    if (!ok) {
        json_object_put(o);
        return false;
    }
    return typed_emit(r, out, o, "Quantity");
}

static bool tr_id(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    char *s[3];
    bool ok = texts(r, rule, t, s, 3);
    if (ok) {
        json_object *o = json_object_new_object();
        if (s[2]) {
            coded c = {"http://terminology.hl7.org/CodeSystem/v2-0203", s[2], NULL};
            json_object *type = json_object_new_object(), *arr = json_object_new_array();
            json_object_array_add(arr, coding_json(&c));
            json_object_object_add(type, "coding", arr);
            json_object_object_add(o, "type", type);
        }
        set_string(o, "system", s[0]);
        set_string(o, "value", s[1]);
        ok = typed_emit(r, out, o, "Identifier");
    }
    free_texts(t, s, 3);
    return ok;
}

static bool tr_cp(run *r, const sm_rule *rule, const sm_target *t, mvals *out)
{
    char *s[2];
    bool ok = texts(r, rule, t, s, 2);
    if (ok) {
        const char *value = t->param_count == 2 ? s[1] : s[0], *system = t->param_count == 2 ? s[0] : NULL;
        if (!system && value)
            system = strchr(value, '@') ? "email" : !strncmp(value, "http", 4) ? "url" : "phone";
        json_object *o = json_object_new_object();
        set_string(o, "system", system);
        set_string(o, "value", value);
        ok = typed_emit(r, out, o, "ContactPoint");
    }
    free_texts(t, s, 2);
    return ok;
}

static bool transform(run *r, const sm_rule *rule, const sm_target *t, const elinfo *ei, mvals *out)
{
    switch (t->transform) {
    case SM_TR_CREATE: return tr_create(r, rule, t, ei, out);
    case SM_TR_COPY: return tr_copy(r, rule, t, out);
    case SM_TR_TRUNCATE: return tr_truncate(r, rule, t, out);
    case SM_TR_CAST: return tr_cast(r, rule, t, out);
    case SM_TR_APPEND: return tr_append(r, rule, t, out);
    case SM_TR_TRANSLATE: return tr_translate(r, rule, t, out);
    case SM_TR_REFERENCE: return tr_reference(r, rule, t, false, out);
    case SM_TR_POINTER: return tr_reference(r, rule, t, true, out);
    case SM_TR_UUID: {
        char id[37];
        make_uuid(r, id);
        return emit(out, string_value(id, "id"));
    }
    case SM_TR_EVALUATE: return tr_evaluate(r, rule, t, out);
    case SM_TR_CC: return tr_cc_c(r, rule, t, true, out);
    case SM_TR_C: return tr_cc_c(r, rule, t, false, out);
    case SM_TR_QTY: return tr_qty(r, rule, t, out);
    case SM_TR_ID: return tr_id(r, rule, t, out);
    case SM_TR_CP: return tr_cp(r, rule, t, out);
    case SM_TR_ESCAPE:
        return fail(r, rule,
                    "escape() is not supported: R4 leaves its formats undefined; use evaluate() with "
                    "FHIRPath's replace() or encode()");
    case SM_TR_DATEOP:
        return fail(r, rule,
                    "dateOp() is not supported: R4 defines no parameters for it; use evaluate() with "
                    "FHIRPath date arithmetic (birthDate + 1 year)");
    case SM_TR_NONE: break;
    }
    return fail(r, rule, "no transform");
}

/* ---- rules --------------------------------------------------------------- */

static bool run_group(run *r, const sm_group *g, const var *args);
static bool exec_rule(run *r, const sm_rule *rule);

static const char *item_type_name(const fp_item *it)
{
    if (it->kind == FP_NODE)
        return it->u.node.type ? it->u.node.type->name : NULL;
    return system_type(it);
}

static bool is_primitive_item(const run *r, const fp_item *it)
{
    if (it->kind != FP_NODE)
        return true;
    return it->u.node.index != FP_NO_NODE && r->doc->nodes[it->u.node.index].type != FJ_OBJECT;
}

static bool type_matches(const run *r, const char *written, const char *type)
{
    if (!written || !type)
        return false;
    ttype tt;
    if (resolve_type(r, written, &tt) && tt.name)
        return !strcmp(tt.name, type);
    return !strcmp(written, type);
}

/* A group of the map (or its imports) declared <<types>> mapping source type st to target type tt. */
static const sm_group *type_group(const run *r, const sm_map *m, const char *st, const char *tt, int depth)
{
    for (size_t i = 0; i < m->group_count; i++) {
        const sm_group *g = &m->groups[i];
        if (g->type_mode == SM_TYPES_NONE || g->input_count != 2 || g->inputs[0].target || !g->inputs[1].target)
            continue;
        if (type_matches(r, g->inputs[0].type, st) && type_matches(r, g->inputs[1].type, tt))
            return g;
    }
    for (size_t i = 0; depth < 8 && i < m->import_count; i++) {
        const sm_group *g = type_group(r, m->imports[i], st, tt, depth + 1);
        if (g)
            return g;
    }
    return NULL;
}

/* A rule's only target without a transform and without dependent rules: the default mapping of the source. */
static bool default_mapping(run *r, const sm_rule *rule, const sm_target *t, var *ctx, const fp_item *src,
                            const elinfo *ei, mvals *out, const sm_group **then)
{
    *then = NULL;
    if (is_primitive_item(r, src))
        return emit_item(r, rule, src, out);
    const char *st = item_type_name(src), *tt = single_type(r, ei);
    const sm_group *g = st && tt ? type_group(r, r->map, st, tt, 0) : NULL;
    if (g) {
        mark(r, src);
        ttype type = child_type(r, ei, tt);
        *then = g;
        return emit(out, (mval){.json = new_instance(r, &type), .type = tt, .tt = type});
    }
    if (!tt || !st || !strcmp(st, tt) || !ei->known)
        return emit_item(r, rule, src, out);
    (void)ctx;
    return fail(r, rule, "%s.%s: no group maps %s to %s (declare one with <<types>>, or give a transform)",
                ctx->tt.name ? ctx->tt.name : "target", t->element, st, tt);
}

/* Bind the value(s) to t's variable (the last one stored), or keep a context-free value in the loose list. */
static bool store_values(run *r, const sm_rule *rule, const sm_target *t, size_t ctx_index, const elinfo *ei,
                         mvals *vals, const sm_group *then, const fp_item *src)
{
    /* by index: a group run for an earlier value may grow (move) the variable stack */
    json_object *stored = NULL;
    ttype stored_tt = {0};
    bool ok = true;
    size_t i = 0;
    for (; i < vals->count && ok; i++) {
        mval *v = &vals->items[i];
        if (ctx_index != SIZE_MAX) {
            ok = put_value(r, rule, t, &r->vars[ctx_index], t->element, ei, v, &stored, &stored_tt);
        } else {
            json_object_array_add(r->loose, v->json);
            stored = v->json;
            stored_tt = v->tt;
        }
        if (ok && then) {
            var args[2] = {{.item = *src}, {.target = true, .obj = stored, .tt = stored_tt}};
            ok = run_group(r, then, args);
        }
    }
    for (; i < vals->count; i++)
        json_object_put(vals->items[i].json);
    vals->count = 0;
    if (!ok)
        return false;
    if (t->variable) {
        if (!stored)
            return true; /* nothing was made (an empty evaluate): the variable stays unbound */
        var *v = push_var(r);
        if (!v)
            return fail(r, rule, "out of memory");
        v->name = t->variable;
        v->target = true;
        v->item = (fp_item){0};
        v->obj = stored;
        v->tt = stored_tt;
    }
    return true;
}

/*
 * A target's element as its first run found it, kept in the target itself
 * (sm_target.engine_memo): the thread memos are direct-mapped, and a map's
 * two hundred target look-ups a run collided there, a tenth of them missing
 * on every run. Written once (compare-and-swap) and then only read, so runs
 * on any thread may share it; a target reached with another context, map or
 * scope than the first uses the thread memo.
 */
typedef struct target_record {
    uint64_t ctx, map;
    const void *scope;
    bool ok;
    elinfo ei;
} target_record;

static void keep_target_record(run *r, const sm_target *t, const void *scope, const target_memo *m)
{
    target_record *rec = malloc(sizeof *rec);
    if (!rec)
        return; /* only a memo: the thread memo still answers */
    *rec = (target_record){.ctx = r->ctx->id, .map = r->map->id, .scope = scope, .ok = m->ok, .ei = m->ei};
    void *expected = NULL;
    /* the map is shared read-only but for this slot: const is cast away for the one atomic write */
    if (!atomic_compare_exchange_strong((_Atomic(void *) *)&t->engine_memo, &expected, rec))
        free(rec); /* another thread kept its record first */
}

/*
 * lookup_element of a target's element in its context's type tt, through the
 * target's record or the thread's memo: *ei points into the record (which
 * lives as long as the map, unchanged: not copied) or at buf (a copy: the
 * thread memo's entry may be replaced by the groups the target's values run).
 */
static bool target_element(run *r, const sm_target *t, const ttype *tt, elinfo *buf, const elinfo **ei)
{
    *ei = buf;
    const void *scope = tt->model ? (const void *)tt->lpath : (const void *)tt->cel;
    if (!scope)
        return lookup_element(r, tt, t->element, buf);
    const target_record *rec = atomic_load_explicit(&t->engine_memo, memory_order_acquire);
    if (rec && rec->ctx == r->ctx->id && rec->map == r->map->id && rec->scope == scope) {
        *ei = &rec->ei;
        return rec->ok;
    }
    target_memo *m = &target_memos[pointer_slot(t, (uintptr_t)scope, TARGET_SLOTS)];
    if (m->ctx != r->ctx->id || m->map != r->map->id || m->t != t || m->scope != scope) {
        *m = (target_memo){.ctx = r->ctx->id, .map = r->map->id, .t = t, .scope = scope};
        m->ok = lookup_element(r, tt, t->element, &m->ei);
        /* the type of what is made or put there: child_type resolved it (by name, through a memo) per value */
        const char *type = m->ok && m->ei.known ? single_type(r, &m->ei) : NULL;
        if (type) {
            m->ei.child_tt = child_type(r, &m->ei, type);
            m->ei.child_for = type;
        }
        m->ei.name_is_static = m->ok && key_is_static(r, &m->ei, t->element);
        m->ei.name_checked = m->ok;
    }
    if (!rec)
        keep_target_record(r, t, scope, m);
    *buf = m->ei;
    return m->ok;
}

static bool apply_target(run *r, const sm_rule *rule, const sm_target *t, const fp_item *src)
{
    static const elinfo none = {0}; /* no context */
    var *ctx = NULL;
    elinfo buf; /* not `= {0}`: a `rep stos` per target */
    const elinfo *ei = &none;
    if (t->context) {
        ctx = find_var(r, t->context);
        if (!ctx || !ctx->target)
            return fail(r, rule, "target context '%s' is %s", t->context, ctx ? "a source variable" : "not bound");
        if (!t->element)
            return fail(r, rule, "target '%s' names no element", t->context);
        if (!target_element(r, t, &ctx->tt, &buf, &ei))
            return fail(r, rule, "%s has no element '%s'", ctx->tt.name ? ctx->tt.name : "the target", t->element);
    }
    fp_arena_reset(r->arena);
    mvals vals; /* not `= {0}`: that clears the local array too, a `rep stos` on every target */
    vals.items = NULL;
    vals.count = vals.cap = 0;
    const sm_group *then = NULL;
    bool ok;
    bool simple = rule->target_count == 1 && !rule->rule_count && !rule->dependent_count && src;
    if (t->transform != SM_TR_NONE) {
        ok = transform(r, rule, t, ctx ? ei : NULL, &vals);
    } else if (simple) {
        ok = default_mapping(r, rule, t, ctx, src, ei, &vals, &then);
    } else {
        const char *type = single_type(r, ei);
        if (!type || is_primitive_name(r, type)) {
            ok = fail(r, rule, "%s.%s: no transform, and %s", ctx->tt.name ? ctx->tt.name : "target", t->element,
                      type ? "the element is a primitive (give a value)"
                           : "the element's type is not known or a choice (use create('Type'))");
        } else {
            ttype tt = child_type(r, ei, type);
            ok = emit(&vals, (mval){.json = new_instance(r, &tt), .type = type, .tt = tt});
        }
    }
    ok = ok && store_values(r, rule, t, ctx ? (size_t)(ctx - r->vars) : SIZE_MAX, ctx ? ei : NULL, &vals, then, src);
    for (size_t i = 0; i < vals.count; i++)
        json_object_put(vals.items[i].json);
    mvals_free(&vals);
    return ok;
}

static bool run_dependents(run *r, const sm_rule *rule)
{
    for (size_t i = 0; i < rule->dependent_count; i++) {
        const sm_dependent *d = &rule->dependents[i];
        var args[16];
        if (d->var_count > 16)
            return fail(r, rule, "then %s(): more than 16 arguments", d->name);
        for (size_t k = 0; k < d->var_count; k++) {
            var *v = find_var(r, d->vars[k]);
            if (!v)
                return fail(r, rule, "then %s(): variable '%s' is not bound", d->name, d->vars[k]);
            if (v->target != d->group->inputs[k].target)
                return fail(r, rule, "then %s(): '%s' is a %s variable but input '%s' is a %s", d->name, d->vars[k],
                            v->target ? "target" : "source", d->group->inputs[k].name,
                            d->group->inputs[k].target ? "target" : "source");
            args[k] = *v;
        }
        if (!run_group(r, d->group, args))
            return false;
    }
    return true;
}

/* Targets, nested rules and dependent rules for one binding of the sources. */
static bool apply_binding(run *r, const sm_rule *rule, const fp_item *first)
{
    size_t mark_vars = r->var_count;
    bool ok = true;
    for (size_t i = 0; ok && i < rule->target_count; i++)
        ok = apply_target(r, rule, &rule->targets[i], first);
    for (size_t i = 0; ok && i < rule->rule_count; i++)
        ok = exec_rule(r, &rule->rules[i]);
    ok = ok && run_dependents(r, rule);
    r->var_count = mark_vars;
    return ok;
}

/* ---- sources ------------------------------------------------------------- */

/* A source's values: most sources have a few, kept in `local` (no allocation); more go to the heap. */
typedef struct items {
    fp_item *items; /* local, or malloc'd */
    size_t count, cap;
    fp_item local[32]; /* 32: an Organization's ~25 extensions fit without malloc and realloc */
} items;

static void items_init(items *l)
{
    l->items = l->local;
    l->count = 0;
    l->cap = sizeof l->local / sizeof *l->local;
}

static void items_free(items *l)
{
    if (l->items != l->local)
        free(l->items);
}

/* A new last item, not yet set (filled in place: see child_item); NULL when out of memory. */
static fp_item *new_item(items *l)
{
    if (l->count == l->cap) {
        size_t cap = l->cap * 2;
        fp_item *grown = l->items == l->local ? malloc(cap * sizeof *grown) : realloc(l->items, cap * sizeof *grown);
        if (!grown)
            return false;
        if (l->items == l->local)
            memcpy(grown, l->local, sizeof l->local);
        l->items = grown;
        l->cap = cap;
    }
    return &l->items[l->count++];
}

static bool add_item(items *l, fp_item it)
{
    fp_item *slot = new_item(l);
    if (slot)
        *slot = it;
    return slot != NULL;
}

/* The schema element whose children apply to a node item, or NULL (unknown type). */
static const fs_element *item_scope(const run *r, const fp_item *it)
{
    const fs_element *el = it->u.node.element;
    if (el && (el->flags & FS_EL_INLINE))
        return el;
    if (it->u.node.type)
        return &r->schema->elements[it->u.node.type->root];
    return NULL;
}

/*
 * The memo entry for a look-up: the slot's two ways (slots 2k and 2k+1, the
 * newest first) are searched; on a miss the older way is dropped and the
 * newer slot returned cleared (map 0) for the caller to fill. Two ways: the
 * two dozen names a map's sources read collided in a direct-mapped table, a
 * few missing on every run.
 */
static child_memo *child_way(const run *r, size_t slot, const char *name, const fs_element *scope, const char *key,
                             size_t len)
{
    for (size_t way = 0; way < 2; way++) {
        child_memo *m = &child_memos[slot ^ way];
        if (m->map == r->map->id && m->name == name && m->scope == scope &&
            (key ? !strncmp(m->key, key, len) && !m->key[len] : !m->key[0]))
            return m;
    }
    child_memos[slot ^ 1] = child_memos[slot];
    child_memos[slot].map = 0;
    return &child_memos[slot];
}

/* fs_child for a name the map owns, through the thread's memo. */
static const fs_element *scope_child(run *r, const fs_element *scope, const char *name, size_t len, const fs_type **ct)
{
    child_memo *m = child_way(r, pointer_slot(name, (uintptr_t)scope, CHILD_SLOTS), name, scope, NULL, 0);
    if (!m->map) {
        const fs_type *found = NULL; /* not into *m: the compound literal below would clear it */
        const fs_element *el = fs_child(r->schema, scope, name, len, &found);
        *m = (child_memo){.map = r->map->id, .name = name, .scope = scope, .el = el, .ct = found};
    }
    *ct = m->ct;
    return m->el;
}

/*
 * fs_child for a source's key that extends its element name (a choice:
 * `value` read as "valueCoding"), through the thread's memo: the key is the
 * document's, so its text is kept and compared (keys of 32 bytes and more
 * are looked up every time).
 */
static const fs_element *choice_child(run *r, const fs_element *scope, const char *name, const char *key, size_t len,
                                      const fs_type **ct)
{
    if (len >= sizeof((child_memo *)0)->key)
        return fs_child(r->schema, scope, key, len, ct);
    child_memo *m =
        child_way(r, pointer_slot(name, (uintptr_t)scope + len * 131 + (unsigned char)key[len - 1], CHILD_SLOTS), name,
                  scope, key, len);
    if (!m->map) {
        const fs_type *found = NULL;
        const fs_element *el = fs_child(r->schema, scope, key, len, &found);
        *m = (child_memo){.map = r->map->id, .name = name, .scope = scope, .el = el, .ct = found};
        memcpy(m->key, key, len);
        m->key[len] = 0;
    }
    *ct = m->ct;
    return m->el;
}

static bool key_matches(const char *key, size_t len, const char *name, size_t n, bool *suffixed)
{
    *suffixed = false;
    if (len < n || (n && key[0] != name[0]))
        return false; /* most keys differ at once: no memcmp call per key */
    if (len == n && !memcmp(key, name, n))
        return true;
    if (len > n && !memcmp(key, name, n) && isupper((unsigned char)key[n])) {
        *suffixed = true;
        return true;
    }
    return false;
}

/*
 * Append fp_node(r->schema, d, i, type, el) to out, written in place when
 * fp_node would not look for a resourceType (a value of a known type that is
 * not a resource, or not an object). An item built in a temporary and copied
 * is written in pieces and read back whole at once, a store-forwarding stall
 * on each of the dozens of items a source lists (a tenth of
 * organization-to-provider's time).
 */
static bool add_child(run *r, items *out, const fj_doc *d, uint32_t i, const fs_type *type, const fs_element *el)
{
    fp_item *it = new_item(out);
    if (!it)
        return false;
    if (d->nodes[i].type == FJ_OBJECT && (!type || type->kind == FS_RESOURCE)) {
        *it = fp_node(r->schema, d, i, type, el);
        return true;
    }
    it->kind = FP_NODE;
    it->calendar = 0;
    it->scale = 0;
    it->len = 0;
    it->u.node.doc = d;
    it->u.node.index = i;
    it->u.node.ext = FP_NO_NODE;
    it->u.node.type = type;
    it->u.node.element = el;
    return true;
}

/* The values of element `name` of item it (a choice by its stem too), each a typed node item. */
static bool children(run *r, const fp_item *it, const char *name, size_t name_len, items *out)
{
    if (it->kind != FP_NODE || it->u.node.index == FP_NO_NODE)
        return true;
    const fj_doc *d = it->u.node.doc;
    uint32_t o = it->u.node.index;
    if (d->nodes[o].type != FJ_OBJECT)
        return true;
    const fs_element *scope = item_scope(r, it);
    for (uint32_t k = o + 1; k < fj_next(d, o); k = fj_next(d, k + 1)) {
        const char *key = fj_str(d, k);
        size_t len = d->nodes[k].len;
        bool suffixed;
        if (!key_matches(key, len, name, name_len, &suffixed))
            continue;
        const fs_type *ct = NULL;
        const fs_element *el = !scope     ? NULL
                               : suffixed ? choice_child(r, scope, name, key, len, &ct)
                                          : scope_child(r, scope, name, name_len, &ct);
        if (scope && (!el || (suffixed && !(el->flags & FS_EL_CHOICE))))
            continue;
        if (!ct && el && el->type_count == 1)
            ct = fs_element_type(r->schema, el, 0);
        uint32_t v = k + 1;
        if (d->nodes[v].type == FJ_ARRAY) {
            for (uint32_t j = v + 1; j < fj_next(d, v); j = fj_next(d, j))
                if (d->nodes[j].type != FJ_NULL && !add_child(r, out, d, j, ct, el))
                    return false;
        } else if (d->nodes[v].type != FJ_NULL && !add_child(r, out, d, v, ct, el)) {
            return false;
        }
    }
    return true;
}

static bool item_has_type(const run *r, const fp_item *it, const char *type)
{
    const char *name = item_type_name(it);
    if (name && type_matches(r, type, name))
        return true;
    /* an untyped JSON value: by its JSON kind */
    if (!name && it->kind == FP_NODE && it->u.node.index != FP_NO_NODE) {
        fj_type k = (fj_type)r->doc->nodes[it->u.node.index].type;
        if (k == FJ_STRING)
            return !strcmp(type, "string");
        if (k == FJ_TRUE || k == FJ_FALSE)
            return !strcmp(type, "boolean");
        if (k == FJ_NUMBER)
            return !strcmp(type, "integer") || !strcmp(type, "decimal");
    }
    return false;
}

static fp_item default_item(const sm_value *v)
{
    switch (v->kind) {
    case SM_V_INTEGER: return fp_integer(v->integer);
    case SM_V_BOOLEAN: return fp_boolean(v->boolean);
    case SM_V_DECIMAL: {
        fp_item it = {.kind = FP_DECIMAL};
        it.u.decimal = strtold(v->text, NULL);
        const char *dot = strchr(v->text, '.');
        it.scale = (int16_t)(dot ? strlen(dot + 1) : 0);
        return it;
    }
    default: return fp_string(v->text, strlen(v->text));
    }
}

/* The candidate items of a source, before its where clause. */
static bool source_items(run *r, const sm_rule *rule, const sm_source *s, items *out)
{
    var *ctx = find_var(r, s->context);
    if (!ctx)
        return fail(r, rule, "source context '%s' is not bound", s->context);
    if (ctx->target)
        return fail(r, rule, "source context '%s' is a target variable (reading targets is not supported)", s->context);
    bool ok = s->element ? children(r, &ctx->item, s->element, s->element_len, out) : add_item(out, ctx->item);
    if (ok && s->type) {
        size_t kept = 0;
        for (size_t i = 0; i < out->count; i++)
            if (item_has_type(r, &out->items[i], s->type))
                out->items[kept++] = out->items[i];
        out->count = kept;
    }
    if (!ok)
        return fail(r, rule, "out of memory");
    if (!out->count && s->default_value.kind != SM_V_NONE && s->default_value.kind != SM_V_ID)
        ok = add_item(out, default_item(&s->default_value));
    if (s->min >= 0 && out->count < (size_t)s->min)
        return fail(r, rule, "%s%s%s: %zu values, at least %d required", s->context, s->element ? "." : "",
                    s->element ? s->element : "", out->count, s->min);
    if (s->max >= 0 && out->count > (size_t)s->max)
        return fail(r, rule, "%s%s%s: %zu values, at most %ld allowed", s->context, s->element ? "." : "",
                    s->element ? s->element : "", out->count, s->max);
    if (s->list_mode == SM_SRC_ONLY_ONE && out->count > 1)
        return fail(r, rule, "%s.%s: only_one, but %zu values", s->context, s->element ? s->element : "", out->count);
    return ok;
}

static bool check_truth(run *r, const sm_rule *rule, const char *what, const fp_expr *e, const fp_item *it,
                        fp_truth *truth)
{
    fp_collection c;
    if (!eval(r, rule, what, e, it, &c))
        return false;
    *truth = fp_truth_of(&c);
    if (*truth == FP_NOT_BOOLEAN)
        return fail(r, rule, "%s (%s) did not give a boolean", what, fp_expr_source(e));
    return true;
}

/* Is a string node of this type a FHIRPath String (not a date or time, which compare as such)? */
static bool plain_string(const fp_item *it)
{
    fprim_kind k = it->u.node.type ? it->u.node.type->prim : FPRIM_NONE;
    return k != FPRIM_DATE && k != FPRIM_DATETIME && k != FPRIM_INSTANT && k != FPRIM_TIME;
}

/*
 * `x = 'text'` (recognised at load) on the JSON: 1 true, 0 false or empty,
 * -1 when FHIRPath must decide (not one plain string value, a choice, an
 * element the schema does not know). Both answers agree wherever this one is
 * given: FHIRPath compares a FHIR string-like primitive as a String.
 */
static int quick_equals(run *r, const sm_equals *q, const fp_item *it)
{
    if (it->kind != FP_NODE || it->u.node.index == FP_NO_NODE)
        return -1;
    const fj_doc *d = it->u.node.doc;
    uint32_t v = it->u.node.index;
    if (q->is_type) {
        /* an object of a known type is the type or one it derives from (FHIRPath `is` on a node) */
        const fs_schema *sc = r->schema;
        if (d->nodes[v].type != FJ_OBJECT || !it->u.node.type || q->is_type < sc->types ||
            q->is_type >= sc->types + sc->type_count)
            return -1; /* not an object of a known type, or the map was loaded with another schema */
        for (const fs_type *t = it->u.node.type; t; t = t->base == FS_NONE ? NULL : &r->schema->types[t->base])
            if (t == q->is_type)
                return 1;
        return 0;
    }
    if (q->alts) {
        if (d->nodes[v].type != FJ_STRING || !plain_string(it))
            return -1;
        bool in = false;
        for (size_t i = 0; i < q->alt_count && !in; i++)
            in = d->nodes[v].len == q->alt_lens[i] && !memcmp(fj_str(d, v), q->alts[i], q->alt_lens[i]);
        return in != q->negate;
    }
    if (q->member) {
        if (d->nodes[v].type != FJ_OBJECT)
            return -1;
        const fs_element *scope = item_scope(r, it), *el = NULL;
        const fs_type *ct = NULL;
        if (scope && (!(el = scope_child(r, scope, q->member, q->member_len, &ct)) || (el->flags & FS_EL_CHOICE) ||
                      el->type_count != 1))
            return -1;
        uint32_t found = UINT32_MAX;
        for (uint32_t k = v + 1; k < fj_next(d, v); k = fj_next(d, k + 1)) {
            size_t len = d->nodes[k].len;
            const char *key = fj_str(d, k);
            if (len < q->member_len || (q->member_len && key[0] != q->member[0]) ||
                memcmp(key, q->member, q->member_len))
                continue;
            if (len > q->member_len || found != UINT32_MAX)
                return -1; /* a choice-like key, or the key twice */
            found = k + 1;
        }
        if (found == UINT32_MAX)
            return 0; /* no value: the comparison is empty */
        fp_item m = {.kind = FP_NODE};
        m.u.node.doc = d;
        m.u.node.index = found;
        m.u.node.type = el ? fs_element_type(r->schema, el, 0) : NULL;
        it = &m;
        v = found;
        if (d->nodes[v].type != FJ_STRING || !plain_string(it))
            return -1;
    } else if (d->nodes[v].type != FJ_STRING || !plain_string(it)) {
        return -1;
    }
    return d->nodes[v].len == q->literal_len && !memcmp(fj_str(d, v), q->literal, q->literal_len);
}

/*
 * The element `name` of the objects of scope: known, not a choice, of one
 * type; *next the scope of its values (NULL for a primitive); false when
 * FHIRPath must decide.
 */
static bool plain_element(run *r, const fs_element *scope, const char *name, size_t len, const fs_element **el,
                          const fs_type **type)
{
    const fs_type *ct;
    if (!scope || !(*el = scope_child(r, scope, name, len, &ct)) || ((*el)->flags & FS_EL_CHOICE) ||
        (*el)->type_count > 1 || (!(*el)->type_count && !((*el)->flags & FS_EL_INLINE)))
        return false;
    *type = (*el)->type_count ? fs_element_type(r->schema, *el, 0) : NULL;
    return true;
}

/* The scope of an element's values (an inline backbone's own children, else its type's). */
static const fs_element *value_scope(const run *r, const fs_element *el, const fs_type *type)
{
    if (el->flags & FS_EL_INLINE)
        return el;
    return type && type->kind != FS_PRIMITIVE ? &r->schema->elements[type->root] : NULL;
}

/*
 * The value nodes of member `name` of object o (arrays flattened) appended to
 * out; false when the JSON has a shape FHIRPath reads differently: `_name`
 * (an extension on a primitive), a key that extends the name, null in a list.
 */
static bool member_values(const fj_doc *d, uint32_t o, const char *name, size_t len, uint32_t *out, size_t cap,
                          size_t *n)
{
    for (uint32_t k = o + 1; k < fj_next(d, o); k = fj_next(d, k + 1)) {
        const char *key = fj_str(d, k);
        size_t kl = d->nodes[k].len;
        bool under = kl == len + 1 && key[0] == '_' && !memcmp(key + 1, name, len);
        bool lead = !len || (kl && key[0] == name[0]); /* most keys differ at once: no memcmp call */
        if (under || (kl > len && lead && !memcmp(key, name, len)))
            return false;
        if (kl != len || !lead || memcmp(key, name, len))
            continue;
        uint32_t v = k + 1;
        uint32_t first = d->nodes[v].type == FJ_ARRAY ? v + 1 : v, end = fj_next(d, v);
        for (uint32_t j = first; j < end; j = fj_next(d, j)) {
            if (d->nodes[j].type == FJ_NULL || *n == cap)
                return false;
            out[(*n)++] = j;
        }
    }
    return true;
}

/* Does node v hold plain text equal to text (1), other plain text (0); -1: not plain text of this type. */
static int text_is(const fj_doc *d, uint32_t v, const fs_type *type, const char *text, size_t len)
{
    fp_item it = {.kind = FP_NODE};
    it.u.node.type = type;
    if (!type || type->kind != FS_PRIMITIVE || d->nodes[v].type != FJ_STRING || !plain_string(&it))
        return -1;
    return d->nodes[v].len == len && !memcmp(fj_str(d, v), text, len);
}

/* Does object o pass the where() conditions of t (1, 0), or -1: FHIRPath decides. */
static int conditions_hold(run *r, const fj_doc *d, uint32_t o, const fs_element *scope, const sm_pathtest *t)
{
    int all = 1;
    for (size_t i = 0; i < t->conds; i++) {
        const fs_element *el;
        const fs_type *type;
        uint32_t v[2];
        size_t n = 0;
        if (!plain_element(r, scope, t->member[i], t->member_len[i], &el, &type) ||
            !member_values(d, o, t->member[i], t->member_len[i], v, 2, &n) || n > 1)
            return -1;
        int eq = n ? text_is(d, v[0], type, t->text[i], t->text_len[i]) : 0; /* missing: empty, not true */
        if (eq < 0)
            return -1;
        all &= eq;
    }
    return all;
}

/* A sm_pathtest on the JSON: 1 true, 0 false or empty, -1 when FHIRPath must decide. */
static int quick_path(run *r, const sm_pathtest *t, const fp_item *it)
{
    if (it->kind != FP_NODE || it->u.node.index == FP_NO_NODE ||
        it->u.node.doc->nodes[it->u.node.index].type != FJ_OBJECT)
        return -1;
    const fj_doc *d = it->u.node.doc;
    uint32_t cur[32], next[32];
    size_t count = 1, n;
    cur[0] = it->u.node.index;
    const fs_element *scope = item_scope(r, it), *el = NULL;
    const fs_type *type = NULL;
    for (size_t s = 0; s < t->steps; s++) {
        if (!scope || !plain_element(r, scope, t->step[s], t->step_len[s], &el, &type))
            return -1;
        n = 0;
        for (size_t i = 0; i < count; i++)
            if (d->nodes[cur[i]].type != FJ_OBJECT ||
                !member_values(d, cur[i], t->step[s], t->step_len[s], next, 32, &n))
                return -1;
        memcpy(cur, next, n * sizeof *cur);
        count = n;
        scope = value_scope(r, el, type);
    }
    if (!t->conds) {
        /* path = 'text': one value equal to it; several values are not equal to one; none: empty */
        int eq = 0;
        for (size_t i = 0; i < count; i++) {
            int e = text_is(d, cur[i], type, t->text[0], t->text_len[0]);
            if (e < 0)
                return -1;
            eq = count == 1 && e;
        }
        return count ? eq != t->negate : 0;
    }
    int any = 0;
    for (size_t i = 0; i < count; i++) {
        if (d->nodes[cur[i]].type != FJ_OBJECT)
            return -1;
        int h = conditions_hold(r, d, cur[i], scope, t);
        if (h < 0)
            return -1;
        any |= h;
    }
    return any != t->negate;
}

/* A where or check: by quick_equals when it can answer, else by FHIRPath. */
static bool test(run *r, const sm_rule *rule, const char *what, const fp_expr *e, const sm_equals *q, const fp_item *it,
                 fp_truth *truth)
{
    int quick = q->literal || q->is_type || q->alts ? quick_equals(r, q, it)
                : q->path                           ? quick_path(r, q->path, it)
                                                    : -1;
    if (quick >= 0) {
        *truth = quick ? FP_TRUE : FP_FALSE;
        return true;
    }
    return check_truth(r, rule, what, e, it, truth);
}

static bool log_message(run *r, const sm_rule *rule, const sm_source *s, const fp_item *it)
{
    fp_collection c;
    if (!eval(r, rule, "log", s->log, it, &c))
        return false;
    char *text = fp_collection_json(&c);
    fj_buf path = {0};
    if (it->kind == FP_NODE && it->u.node.index != FP_NO_NODE)
        node_path(r, it->u.node.index, &path);
    oo_add(r->issues, OO_INFORMATION, OO_INFORMATIONAL, path.data, 0, 0, "%s: log: %s", rule->where,
           text ? text : "(out of memory)");
    fj_buf_free(&path);
    free(text);
    return true;
}

static bool bind_sources(run *r, const sm_rule *rule, size_t i, const fp_item *first);

/* One candidate item of source i: bind, filter, check, log, then the next source. */
static bool bind_item(run *r, const sm_rule *rule, size_t i, const fp_item *it, const fp_item *first)
{
    const sm_source *s = &rule->sources[i];
    var *v = push_var(r);
    if (!v)
        return fail(r, rule, "out of memory");
    v->name = s->variable;
    v->target = false;
    v->item = *it;
    v->obj = NULL;
    v->tt = (ttype){0};
    size_t mark_vars = r->var_count;
    fp_truth truth = FP_TRUE;
    bool ok = !s->condition || test(r, rule, "where", s->condition, &s->condition_eq, it, &truth);
    if (ok && truth == FP_TRUE) {
        mark(r, it);
        if (s->check && (ok = test(r, rule, "check", s->check, &s->check_eq, it, &truth)) && truth != FP_TRUE)
            ok = fail(r, rule, "check failed: %s", fp_expr_source(s->check));
        if (ok && s->log)
            ok = log_message(r, rule, s, it);
        ok = ok && bind_sources(r, rule, i + 1, first ? first : it);
    }
    r->var_count = mark_vars - 1;
    return ok;
}

static bool bind_sources(run *r, const sm_rule *rule, size_t i, const fp_item *first)
{
    if (i == rule->source_count)
        return apply_binding(r, rule, first);
    const sm_source *s = &rule->sources[i];
    items l;
    items_init(&l);
    bool ok = source_items(r, rule, s, &l);
    size_t lo = 0, hi = l.count;
    switch (s->list_mode) {
    case SM_SRC_FIRST: hi = l.count ? 1 : 0; break;
    case SM_SRC_NOT_FIRST: lo = l.count ? 1 : 0; break;
    case SM_SRC_LAST: lo = l.count ? l.count - 1 : 0; break;
    case SM_SRC_NOT_LAST: hi = l.count ? l.count - 1 : 0; break;
    default: break;
    }
    for (size_t k = lo; ok && k < hi; k++)
        ok = bind_item(r, rule, i, &l.items[k], first);
    items_free(&l);
    return ok;
}

static bool exec_rule(run *r, const sm_rule *rule)
{
    return bind_sources(r, rule, 0, NULL);
}

static bool run_group(run *r, const sm_group *g, const var *args)
{
    if (r->depth >= r->max_depth)
        return fail(r, NULL, "group %s: groups nest deeper than %u (do they call each other in a circle?)", g->name,
                    r->max_depth);
    r->depth++;
    size_t saved_frame = r->frame, saved_count = r->var_count;
    bool ok = !g->base || run_group(r, g->base, args);
    r->frame = r->var_count;
    for (size_t i = 0; ok && i < g->input_count; i++) {
        var *v = push_var(r);
        if (!v)
            ok = fail(r, NULL, "out of memory");
        else {
            *v = args[i];
            v->name = g->inputs[i].name;
        }
    }
    for (size_t i = 0; ok && i < g->rule_count; i++)
        ok = exec_rule(r, &g->rules[i]);
    r->var_count = saved_count;
    r->frame = saved_frame;
    r->depth--;
    return ok;
}

/* ---- unmapped ------------------------------------------------------------ */

typedef struct walk {
    run *r;
    uint32_t *prefix; /* prefix[i] = marks in nodes [0, i) */
    fj_buf path;
} walk;

static uint32_t marks_in(const walk *w, uint32_t node)
{
    return w->prefix[node + w->r->doc->nodes[node].size] - w->prefix[node];
}

static void report(walk *w, uint32_t node);

static void report_value(walk *w, uint32_t v)
{
    const fj_doc *d = w->r->doc;
    uint32_t marks = marks_in(w, v);
    if (marks == d->nodes[v].size)
        return;
    if (!marks) {
        oo_add_text(w->r->issues, OO_INFORMATION, OO_INFORMATIONAL, w->path.data, "unmapped: ", w->path.data);
        return;
    }
    if (d->nodes[v].type == FJ_OBJECT)
        report(w, v);
    else if (d->nodes[v].type == FJ_ARRAY) {
        uint32_t pos = 0;
        size_t len = w->path.len;
        for (uint32_t j = v + 1; j < fj_next(d, v); j = fj_next(d, j), pos++) {
            if (marks_in(w, j) == d->nodes[j].size)
                continue;                        /* all read: no path to build */
            char idx[16], *p = idx + sizeof idx; /* "[pos]" without printf: this runs per item */
            *--p = ']';
            uint32_t n = pos;
            do
                *--p = (char)('0' + n % 10);
            while (n /= 10);
            *--p = '[';
            fj_buf_append(&w->path, p, (size_t)(idx + sizeof idx - p));
            report_value(w, j);
            w->path.len = len;
            w->path.data[len] = 0;
        }
    }
}

static void report(walk *w, uint32_t node)
{
    const fj_doc *d = w->r->doc;
    for (uint32_t k = node + 1; k < fj_next(d, node); k = fj_next(d, k + 1)) {
        const char *key = fj_str(d, k);
        size_t len = d->nodes[k].len;
        if ((len == 12 && !memcmp(key, "resourceType", 12)) || marks_in(w, k + 1) == d->nodes[k + 1].size)
            continue; /* all read: no path to build */
        size_t saved = w->path.len;
        fj_buf_puts(&w->path, ".");
        fj_buf_append(&w->path, key[0] == '_' ? key + 1 : key, key[0] == '_' ? len - 1 : len);
        report_value(w, k + 1);
        w->path.len = saved;
        if (w->path.data)
            w->path.data[saved] = 0;
    }
}

static void report_unmapped(run *r, uint32_t root)
{
    const fj_doc *d = r->doc;
    if (d->nodes[root].type != FJ_OBJECT)
        return;
    walk w = {.r = r, .prefix = malloc(((size_t)d->count + 1) * sizeof(uint32_t))};
    if (!w.prefix)
        return;
    w.prefix[0] = 0;
    for (uint32_t i = 0; i < d->count; i++)
        w.prefix[i + 1] = w.prefix[i] + r->read[i];
    uint32_t rt = fj_get(d, root, "resourceType");
    if (rt != UINT32_MAX && d->nodes[rt].type == FJ_STRING)
        fj_buf_append(&w.path, fj_str(d, rt), d->nodes[rt].len);
    else
        fj_buf_puts(&w.path, "$this");
    r->read[root] = 1;
    report(&w, root);
    fj_buf_free(&w.path);
    free(w.prefix);
}

/* ---- entry --------------------------------------------------------------- */

/* A source that is a resource or a model instance must be of the type the start group takes. */
static bool source_fits(run *r, const sm_group *g, const ttype *src_tt, const fs_type *st, uint32_t node)
{
    const fj_doc *d = r->doc;
    bool resource_like = (st && st->kind == FS_RESOURCE && !st->is_abstract) || src_tt->model;
    uint32_t rt = d->nodes[node].type == FJ_OBJECT ? fj_get(d, node, "resourceType") : UINT32_MAX;
    if (!resource_like || !src_tt->name)
        return true;
    if (rt == UINT32_MAX || d->nodes[rt].type != FJ_STRING)
        return fail(r, NULL, "the source has no resourceType; group %s of map %s takes a %s", g->name,
                    r->map->url ? r->map->url : "(no url)", src_tt->name);
    size_t len = d->nodes[rt].len;
    if (strlen(src_tt->name) != len || memcmp(src_tt->name, fj_str(d, rt), len))
        return fail(r, NULL, "the source is a %.*s; group %s of map %s takes a %s", (int)len, fj_str(d, rt), g->name,
                    r->map->url ? r->map->url : "(no url)", src_tt->name);
    return true;
}

static bool start(run *r, const sm_group *g, uint32_t node, json_object **target)
{
    if (g->input_count != 2 || g->inputs[0].target || !g->inputs[1].target)
        return fail(r, NULL, "group %s: a map starts with a group of one source and one target input", g->name);
    ttype src_tt = {0}, tgt_tt = {0};
    const fs_type *st = NULL;
    if (resolve_type(r, g->inputs[0].type, &src_tt) && src_tt.cel && !src_tt.model)
        st = fs_type_by_name(r->schema, src_tt.name, strlen(src_tt.name));
    if (g->inputs[1].type && !resolve_type(r, g->inputs[1].type, &tgt_tt))
        return fail(r, NULL, "group %s: target type '%s' is neither a FHIR type nor a logical model the engine knows",
                    g->name, g->inputs[1].type);
    if (!source_fits(r, g, &src_tt, st, node))
        return false;
    *target = new_instance(r, &tgt_tt);
    if (!*target)
        return fail(r, NULL, "out of memory");
    var args[2] = {{.item = fp_node(r->schema, r->doc, node, st, NULL)},
                   {.target = true, .obj = *target, .tt = tgt_tt}};
    return run_group(r, g, args);
}

bool mpe_run(const mpe_context *c, const sm_map *map, const fj_doc *doc, uint32_t node, const mpe_options *opts,
             json_object **out, oo_list *issues)
{
    static const mpe_options defaults = {0};
    *out = NULL;
    run r = {.ctx = c, .map = map, .opts = opts ? opts : &defaults, .schema = c->schema, .doc = doc, .issues = issues};
    var local_vars[48]; /* not in `r`: its initialiser would clear them all (5 KB) every run */
    r.vars = r.local_vars = local_vars;
    r.var_cap = sizeof local_vars / sizeof *local_vars;
    r.max_depth = r.opts->max_depth ? r.opts->max_depth : MPE_DEFAULT_MAX_DEPTH;
    const sm_group *g = r.opts->group ? sm_find_group(map, r.opts->group) : &map->groups[0];
    if (!g) {
        oo_add(issues, OO_ERROR, OO_NOT_FOUND, NULL, 0, 0, "no group '%s' in map %s", r.opts->group, map->url);
        return false;
    }
    r.read = calloc(doc->count ? doc->count : 1, 1);
    r.arena = take_arena();
    r.loose = json_object_new_array();
    if (!r.read || !r.arena || !r.loose) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "out of memory");
    } else {
        fp_env_init(&r.env, doc);
        r.env.schema = r.schema;
        r.env.now = r.opts->now;
        r.env.resource = node;
        json_object *target = NULL;
        if (start(&r, g, node, &target)) {
            if (!r.opts->skip_unmapped)
                report_unmapped(&r, node);
            *out = target;
        } else {
            json_object_put(target);
        }
    }
    free(r.read);
    if (r.vars != r.local_vars)
        free(r.vars);
    free(r.parents);
    give_arena(r.arena);
    json_object_put(r.loose);
    return *out != NULL;
}
