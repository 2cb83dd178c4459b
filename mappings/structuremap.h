/*
 * mappings/structuremap.h — a StructureMap in executable form (prefix sm_).
 *
 * What it is for: the engine (mappings/engine.h) runs maps; this module
 * turns a StructureMap resource (from fml_parse, or loaded as JSON) into C
 * structures once, checking everything that can be checked before a run:
 * - every group named by `then group(...)` and `extends` exists (in the map
 *   or in a map it imports, given in sm_options) and gets as many arguments
 *   as it has inputs;
 * - every variable a source or target names as its context, and every
 *   argument, is in scope (the group's inputs, the variables of enclosing
 *   rules, earlier sources and targets of the same rule);
 * - transform names and parameter counts; list modes;
 * - every FHIRPath expression (where, check, log, evaluate) compiles, with
 *   the caller's host functions. A variable in scope may be written bare
 *   (`where (c.system = 'x')`) or as %c; bare names are rewritten to %c
 *   before compiling.
 *
 * Memory: sm_load returns a map owning copies of everything (and the
 * compiled expressions); sm_free releases it. The json-c input is not kept
 * except contained ConceptMaps, which the map holds a reference to. A loaded
 * map is immutable (but for the engine's per-target memos, each written once
 * atomically): any number of runs may share it from any thread. Maps
 * given as imports must outlive the maps that import them.
 *
 * Errors are values: sm_load returns NULL and appends issues (with the
 * group and rule names) to the caller's oo_list.
 */
#ifndef MAPPINGS_STRUCTUREMAP_H
#define MAPPINGS_STRUCTUREMAP_H

#include <json-c/json.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/fhirpath.h"
#include "fhir/outcome.h"

typedef enum sm_transform {
    SM_TR_NONE, /* no transform: create the element's type (or the default type-to-type mapping) */
    SM_TR_CREATE,
    SM_TR_COPY,
    SM_TR_TRUNCATE,
    SM_TR_ESCAPE,
    SM_TR_CAST,
    SM_TR_APPEND,
    SM_TR_TRANSLATE,
    SM_TR_REFERENCE,
    SM_TR_DATEOP,
    SM_TR_UUID,
    SM_TR_POINTER,
    SM_TR_EVALUATE,
    SM_TR_CC,
    SM_TR_C,
    SM_TR_QTY,
    SM_TR_ID,
    SM_TR_CP
} sm_transform;

typedef enum sm_source_list {
    SM_SRC_ALL,
    SM_SRC_FIRST,
    SM_SRC_NOT_FIRST,
    SM_SRC_LAST,
    SM_SRC_NOT_LAST,
    SM_SRC_ONLY_ONE
} sm_source_list;

enum { SM_TGT_FIRST = 1, SM_TGT_LAST = 2, SM_TGT_SHARE = 4, SM_TGT_COLLATE = 8 }; /* target list modes (bits) */

typedef enum sm_value_kind { SM_V_NONE, SM_V_ID, SM_V_STRING, SM_V_INTEGER, SM_V_DECIMAL, SM_V_BOOLEAN } sm_value_kind;

/* A parameter or default value. An id is a variable, optionally followed by a path (`src.name.given`). */
typedef struct sm_value {
    sm_value_kind kind;
    char *text; /* id, string, or the decimal's text; NULL for integer/boolean */
    int64_t integer;
    bool boolean;
    fp_expr *path; /* an id with a path: the path compiled (the variable is its focus); else NULL */
} sm_value;

/*
 * A where/check of the form `name = 'text'` or `$this = 'text'` (the test
 * most maps make: an extension's url, an identifier's system), or `$this is
 * Type` (which resource a Bundle entry holds), or `$this` among a few texts
 * (`in (...)`, its `.not()`, `=` joined by `or`), recognised at load so the
 * engine can test it on the source JSON without running FHIRPath. The
 * engine falls back to the compiled expression whenever the source does not
 * have the plain shape that makes both give the same answer.
 */
/*
 * A where/check over a short member path, recognised at load like
 * sm_equals: `a.b = 'text'`, `a.b != 'text'` (the path's values against one
 * text), `a.b.where(m = 'x' and n = 'y').exists()` and `.empty()` (one or two
 * conditions). The engine answers on the JSON only when every element on the
 * way is known to the schema, single-typed, not a choice, and the texts
 * compared are plain strings; otherwise FHIRPath decides.
 */
typedef struct sm_pathtest {
    char *step[2]; /* the path from $this: one or two element names */
    size_t step_len[2], steps;
    char *member[2]; /* where(): the members compared; conds 0 = compare the path's values */
    size_t member_len[2], conds;
    char *text[2]; /* text[i]: what member[i] (or, without conditions, the values) must equal */
    size_t text_len[2];
    bool negate; /* `!=`, `.empty()` */
} sm_pathtest;

typedef struct sm_equals {
    char *literal; /* the text compared with; NULL = not `x = 'text'` */
    size_t literal_len;
    char *member; /* the element compared; NULL = $this */
    size_t member_len;
    const fs_type *is_type; /* `$this is Type`: the schema's type; NULL = not this form */
    /* `$this in ('a' | 'b')`, `($this in (...)).not()`, `$this = 'a' or $this = 'b'`: the texts */
    char **alts; /* NULL = not this form */
    size_t *alt_lens, alt_count;
    bool negate;       /* .not(): true when $this is none of them */
    sm_pathtest *path; /* the path forms above; NULL = none */
} sm_equals;

typedef struct sm_source {
    char *context, *element, *type, *variable; /* element, type, variable may be NULL */
    int min;                                   /* -1 = none */
    long max;                                  /* -1 = none, -2 = '*' */
    sm_value default_value;                    /* kind SM_V_NONE = none */
    sm_source_list list_mode;
    fp_expr *condition, *check, *log; /* NULL = none */
    sm_equals condition_eq, check_eq; /* condition and check when they are `x = 'text'` */
    size_t element_len;               /* strlen(element) (0 when none) */
} sm_source;

typedef struct sm_target {
    char *context, *element, *variable; /* each may be NULL */
    unsigned list_modes;                /* SM_TGT_* */
    sm_transform transform;
    sm_value *params;
    size_t param_count;
    fp_expr *expression; /* evaluate: the compiled FHIRPath; else NULL */
    /* the engine's memo of the target's element (engine.c; opaque here): NULL until a run first needs it, then
       set once by an atomic compare-and-swap and never changed, so runs on any thread share the map; sm_free
       frees it */
    _Atomic(void *) engine_memo;
} sm_target;

typedef struct sm_group sm_group;

typedef struct sm_dependent {
    char *name;
    char **vars;
    size_t var_count;
    const sm_group *group; /* resolved at load */
} sm_dependent;

typedef struct sm_rule {
    char *name;
    char *documentation; /* may be NULL */
    char *where;         /* "group g, rule r" for messages */
    sm_source *sources;
    size_t source_count;
    sm_target *targets;
    size_t target_count;
    struct sm_rule *rules; /* nested rules (then { ... }) */
    size_t rule_count;
    sm_dependent *dependents;
    size_t dependent_count;
} sm_rule;

typedef enum sm_type_mode { SM_TYPES_NONE, SM_TYPES_TYPES, SM_TYPES_TYPE_AND_TYPES } sm_type_mode;

typedef struct sm_input {
    char *name;
    char *type; /* as written (an alias, a type name); NULL = untyped */
    bool target;
} sm_input;

struct sm_group {
    char *name;
    char *extends;        /* NULL = none */
    const sm_group *base; /* resolved */
    sm_type_mode type_mode;
    sm_input *inputs;
    size_t input_count;
    sm_rule *rules;
    size_t rule_count;
    const struct sm_map *map; /* the map the group belongs to (for its aliases) */
};

typedef struct sm_structure {
    char *url, *alias; /* alias may be NULL */
    char *mode;        /* source, target, queried, produced */
} sm_structure;

typedef struct sm_map {
    uint64_t id; /* unique per load in this process, never reused: what caches of a map's lookups key on */
    char *url, *name;
    sm_structure *structures;
    size_t structure_count;
    sm_group *groups;
    size_t group_count;
    json_object **conceptmaps; /* contained ConceptMaps (references held) */
    size_t conceptmap_count;
    const struct sm_map **imports; /* resolved imports (not owned) */
    size_t import_count;
    /* Variable names (sources' and targets' contexts and variables, group inputs, arguments, parameter
       variables) are interned at load: equal names are one pointer, owned here, so the engine finds a
       variable by comparing pointers. */
    char **names;
    size_t name_count;
} sm_map;

typedef struct sm_options {
    const fs_schema *schema;       /* NULL = fs_r4() */
    const fp_functions *functions; /* host functions the map's FHIRPath may call; must outlive the map */
    const sm_map *const *imports;  /* maps `imports` may name (by url; '*' wildcards at the end allowed) */
    size_t import_count;
} sm_options;

/* Load a StructureMap (json-c, not kept). NULL with issues appended when it is not valid. */
sm_map *sm_load(const json_object *structure_map, const sm_options *opts, oo_list *issues);
/* Parse JSON text and load it. */
sm_map *sm_load_json(const char *text, size_t len, const sm_options *opts, oo_list *issues);
void sm_free(sm_map *m);

/* The group named name[0..len) in m or (then) in its imports, or NULL. */
const sm_group *sm_find_group(const sm_map *m, const char *name);
/* The url of the structure that alias (or url) `type` names in m, or NULL when no `uses` line names it. */
const char *sm_structure_url(const sm_map *m, const char *type);
const char *sm_transform_name(sm_transform t);

#endif
